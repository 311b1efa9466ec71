-- Haven's PostgreSQL schema (server/src/store/postgres). Applied at start by every instance
-- (sqlx serialises concurrent runs with an advisory lock).
--
-- Binary ids are bytea; u64 counters and Unix times are bigint (the store refuses values above
-- i64::MAX rather than wrapping); spaces are named as on the wire: 'public' or 32 hex digits.
-- Text keys compare bytewise (COLLATE "C"), so listings come out in the same order as sled's.

CREATE TABLE secrets (
    name  text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL
);

CREATE TABLE jwt_keys (
    kid        text COLLATE "C" PRIMARY KEY,
    secret     bytea NOT NULL,
    created_at bigint NOT NULL,
    state      text NOT NULL
);

CREATE TABLE accounts (
    user_id        bytea PRIMARY KEY,
    space_id       bytea NOT NULL UNIQUE,
    -- HMAC of the normalised username: usernames are never stored in clear.
    username_key   bytea NOT NULL UNIQUE,
    auth_hash      text NOT NULL,
    recovery_hash  text NOT NULL,
    kdf_salt       bytea NOT NULL,
    kdf_m_kib      bigint NOT NULL,
    kdf_t          bigint NOT NULL,
    kdf_p          bigint NOT NULL,
    bundle_version bigint NOT NULL,
    bundle_epoch   bigint NOT NULL,
    bundle_blob    bytea NOT NULL,
    auth_version   bigint NOT NULL,
    revision       bigint NOT NULL,
    created_day    text NOT NULL
);

-- Erased accounts leave only their id, so later writes for them are refused.
CREATE TABLE erased_accounts (
    user_id bytea PRIMARY KEY
);

CREATE TABLE devices (
    user_id       bytea NOT NULL,
    device_id     bytea NOT NULL,
    name          text,
    created_day   text NOT NULL,
    last_seen_day text NOT NULL,
    revoked       boolean NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

CREATE TABLE sessions (
    session_id    bytea PRIMARY KEY,
    user_id       bytea NOT NULL,
    device_id     bytea NOT NULL,
    created_at    bigint NOT NULL,
    last_used_at  bigint NOT NULL,
    generation    bigint NOT NULL,
    current_hash  bytea NOT NULL,
    previous_hash bytea,
    rotated_at    bigint NOT NULL,
    revoked       boolean NOT NULL
);
CREATE INDEX sessions_by_user ON sessions (user_id);

CREATE TABLE one_time_tokens (
    hash       bytea PRIMARY KEY,
    user_id    bytea NOT NULL,
    expires_at bigint NOT NULL
);
CREATE INDEX one_time_tokens_by_user ON one_time_tokens (user_id);
CREATE INDEX one_time_tokens_by_expiry ON one_time_tokens (expires_at);

CREATE TABLE links (
    id         bytea PRIMARY KEY,
    expires_at bigint NOT NULL,
    payload    bytea
);
CREATE INDEX links_by_expiry ON links (expires_at);

CREATE TABLE rate_windows (
    key          bytea PRIMARY KEY,
    window_start bigint NOT NULL,
    window_secs  bigint NOT NULL,
    count        bigint NOT NULL
);

-- One row per space: its head is the per-space counter that appends lock (FOR NO KEY UPDATE)
-- in the transaction that inserts their envelopes, so seqs stay gap-free across instances.
CREATE TABLE spaces (
    space       text COLLATE "C" PRIMARY KEY,
    head        bigint NOT NULL,
    epoch       bigint NOT NULL,
    -- Per-account storage key (NULL for public); erasing the account deletes it.
    storage_key bytea
);
INSERT INTO spaces (space, head, epoch) VALUES ('public', 0, 0);

-- Live envelopes (Envelope::encode); pruned and dropped ones are deleted.
CREATE TABLE envelopes (
    space    text COLLATE "C" NOT NULL REFERENCES spaces ON DELETE CASCADE,
    seq      bigint NOT NULL,
    doc      bytea NOT NULL,
    id       bytea NOT NULL,
    envelope bytea NOT NULL,
    PRIMARY KEY (space, seq)
);
CREATE INDEX envelopes_by_doc ON envelopes (space, doc, seq) INCLUDE (id);

-- Every id ever stored, with its seq and digest, kept after pruning so retries stay idempotent.
CREATE TABLE envelope_ids (
    space  text COLLATE "C" NOT NULL REFERENCES spaces ON DELETE CASCADE,
    id     bytea NOT NULL,
    seq    bigint NOT NULL,
    digest bytea NOT NULL,
    PRIMARY KEY (space, id)
);

CREATE TABLE tombstones (
    space text COLLATE "C" NOT NULL REFERENCES spaces ON DELETE CASCADE,
    doc   bytea NOT NULL,
    seq   bigint NOT NULL,
    PRIMARY KEY (space, doc)
);
