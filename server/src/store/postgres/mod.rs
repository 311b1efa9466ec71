//! [`Store`] on PostgreSQL, for several stateless server instances over one database
//! (DESIGN.md §7).
//!
//! Every rule of the contract runs inside one transaction per call, so instances need no
//! coordination of their own:
//! - a space's row in `spaces` is its seq counter: an append locks it (`FOR NO KEY UPDATE`),
//!   decides every item against the state read under that lock, writes the envelopes and the new
//!   head, and commits, so seqs are gap-free and ordered whichever instance writes;
//! - account CAS locks the account row; an erasure and the writes it must win against (devices,
//!   sessions) serialise on a per-account advisory lock;
//! - rate windows are one atomic upsert; `secret_or_init` is insert-if-absent then read.
//!
//! A commit is durable (`synchronous_commit` is the operator's choice), so the store is
//! [`Durability::OnCommit`]: acks follow the commit, and readers never see an uncommitted head.
//! Rows that do not decode (a wrong length, an unknown key state) are [`StoreError::Corrupt`].
//! Nothing here logs bodies, tokens, usernames or secrets; errors carry only the database's
//! message, never bound values.

mod append;
mod rows;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

use std::time::Duration;

use async_trait::async_trait;
use haven_protocol::{DeviceId, DocId, Envelope, EnvelopeId, HexId, SpaceId, UserId};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{Connection as _, Postgres, Row, Transaction};
use zeroize::Zeroizing;

use super::{
    AccountRecord, AppendItem, AppendOutcome, Cas, DeviceRecord, Durability, JwtKeyRecord,
    JwtKeyState, LinkRecord, OneTimeToken, RateDecision, SessionRecord, Store, StoreError,
    StoreResult, StoredKey, WRAPPED_KEY_LEN, WrappedKey,
};
pub(in crate::store) use rows::jwt_state_name;
use rows::{account_from_row, device_from_row, session_from_row, to_i64, to_u64};

/// The schema, embedded from server/migrations/ and applied by [`PgStore::connect`].
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// See [`PgStore::connect_with`].
const IDLE_IN_TRANSACTION_TIMEOUT: &str = "60s";

/// Class of the advisory locks taken per account (the other key is derived from the user id),
/// so they never meet sqlx's single-key migration lock.
const ACCOUNT_LOCK_CLASS: i32 = 0x4856_0001;

/// Pool settings.
#[derive(Debug, Clone, Copy)]
pub struct PgSettings {
    /// Connections per instance (at least 2: the live fan-out holds one); the database's
    /// `max_connections` bounds the sum over instances.
    pub max_connections: u32,
    /// How long a request waits for a free connection before failing.
    pub acquire_timeout: Duration,
    /// Announce each new head on [`HEADS_CHANNEL`] (`NOTIFY`, delivered at commit) for the live
    /// fan-out of other instances; off for engines without LISTEN/NOTIFY (they poll).
    pub notify_heads: bool,
}

/// The channel of new heads: payload `"{space} {head}"`.
pub const HEADS_CHANNEL: &str = "haven_heads";
/// The channel of revocations: payload `"user {hex}"` or `"sessions {hex} {hex} …"`.
pub const REVOCATIONS_CHANNEL: &str = "haven_revocations";

impl Default for PgSettings {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(10),
            notify_heads: true,
        }
    }
}

/// [`Store`] over a PostgreSQL connection pool.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    notify_heads: bool,
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match error {
            // A column that does not decode into its Rust type: the row is not what we wrote.
            sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
                StoreError::Corrupt(format!("postgres row: {error}"))
            }
            other => StoreError::Engine(format!("postgres: {other}")),
        }
    }
}

/// Whether the statement failed on a unique constraint (another writer won a race).
fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"))
}

/// Where a URL points, without its credentials (for messages).
pub fn describe_url(url: &str) -> String {
    match url.parse::<PgConnectOptions>() {
        Ok(options) => format!(
            "postgres://{}:{}/{}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or("")
        ),
        Err(_) => "an unparsable PostgreSQL URL".into(),
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://user:password@host:port/database?sslmode=…`) and applies
    /// the embedded migrations.
    pub async fn connect(url: &str, settings: PgSettings) -> StoreResult<Self> {
        let options: PgConnectOptions = url
            .parse()
            .map_err(|error| StoreError::Engine(format!("invalid PostgreSQL URL: {error}")))?;
        Self::connect_with(options, settings).await
    }

    pub async fn connect_with(
        options: PgConnectOptions,
        settings: PgSettings,
    ) -> StoreResult<Self> {
        // A transaction left open by an instance that hangs or loses the network would hold its
        // space's counter row, and so block that space on every instance, until TCP noticed;
        // the server ends such sessions instead (ours never idle inside a transaction).
        let options = options.application_name("haven-server").options([(
            "idle_in_transaction_session_timeout",
            IDLE_IN_TRANSACTION_TIMEOUT,
        )]);
        // One direct connection first: the pool would retry until its timeout and then report
        // only that, where this names the cause (refused, authentication, TLS).
        let probe = PgConnection::connect_with(&options).await?;
        probe.close().await?;
        let pool = PgPoolOptions::new()
            // The live fan-out keeps one connection for LISTEN; requests need at least another.
            .max_connections(settings.max_connections.max(2))
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await.map_err(|error| {
            StoreError::Engine(format!("applying the schema migrations: {error}"))
        })?;
        Ok(Self {
            pool,
            notify_heads: settings.notify_heads,
        })
    }

    /// The pool, for the live fan-out listener and the migration command.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Closes every connection (the store is unusable afterwards).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Takes the account's advisory lock for the rest of the transaction: exclusive for an erasure,
/// shared for the writes an erasure must not interleave with.
async fn lock_account(
    tx: &mut Transaction<'_, Postgres>,
    user: &UserId,
    exclusive: bool,
) -> StoreResult<()> {
    let key = i32::from_be_bytes([user.0[0], user.0[1], user.0[2], user.0[3]]);
    let sql = if exclusive {
        "SELECT pg_advisory_xact_lock($1, $2)"
    } else {
        "SELECT pg_advisory_xact_lock_shared($1, $2)"
    };
    sqlx::query(sql)
        .bind(ACCOUNT_LOCK_CLASS)
        .bind(key)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn is_erased_in(tx: &mut Transaction<'_, Postgres>, user: &UserId) -> StoreResult<bool> {
    let row = sqlx::query("SELECT 1 FROM erased_accounts WHERE user_id = $1")
        .bind(user.0)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(row.is_some())
}

/// The refusal of a private write (device, session) for an erased account, so nothing about
/// the account reappears after erasure.
fn erased() -> StoreError {
    StoreError::Engine("the account was erased".into())
}

const ACCOUNT_COLUMNS: &str = "user_id, space_id, username_key, auth_hash, recovery_hash, \
     kdf_salt, kdf_m_kib, kdf_t, kdf_p, bundle_version, bundle_epoch, bundle_blob, \
     auth_version, revision, created_day";

const DEVICE_COLUMNS: &str = "user_id, device_id, name, created_day, last_seen_day, revoked";

const SESSION_COLUMNS: &str = "session_id, user_id, device_id, created_at, last_used_at, \
     generation, current_hash, previous_hash, rotated_at, revoked";

/// Checks the account CAS under the row lock and writes the new record (revision + 1) and the
/// epoch rise. Returns the stored copy, or `None` for a conflict (nothing written).
async fn update_account_in(
    tx: &mut Transaction<'_, Postgres>,
    expected_revision: u64,
    mut account: AccountRecord,
) -> StoreResult<Option<AccountRecord>> {
    let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE user_id = $1 FOR UPDATE");
    let Some(row) = sqlx::query(&sql)
        .bind(account.user_id.0)
        .fetch_optional(&mut **tx)
        .await?
    else {
        return Ok(None);
    };
    let stored = account_from_row(&row)?;
    // A space cannot move to another account record; treat it as a lost race, not a write.
    if stored.revision != expected_revision || stored.space_id != account.space_id {
        return Ok(None);
    }
    if stored.username_key != account.username_key {
        let taken = sqlx::query("SELECT 1 FROM accounts WHERE username_key = $1")
            .bind(account.username_key)
            .fetch_optional(&mut **tx)
            .await?;
        if taken.is_some() {
            return Ok(None);
        }
    }
    account.revision = expected_revision.saturating_add(1);
    let result = sqlx::query(
        "UPDATE accounts SET username_key = $2, auth_hash = $3, recovery_hash = $4, \
         kdf_salt = $5, kdf_m_kib = $6, kdf_t = $7, kdf_p = $8, bundle_version = $9, \
         bundle_epoch = $10, bundle_blob = $11, auth_version = $12, revision = $13, \
         created_day = $14 WHERE user_id = $1",
    )
    .bind(account.user_id.0)
    .bind(account.username_key)
    .bind(&account.auth_hash)
    .bind(&account.recovery_hash)
    .bind(account.kdf.salt.0)
    .bind(i64::from(account.kdf.m_kib))
    .bind(i64::from(account.kdf.t))
    .bind(i64::from(account.kdf.p))
    .bind(to_i64(account.key_bundle.version, "key bundle version")?)
    .bind(i64::from(account.key_bundle.key_epoch))
    .bind(&account.key_bundle.blob.0)
    .bind(to_i64(account.auth_version, "auth version")?)
    .bind(to_i64(account.revision, "revision")?)
    .bind(&account.created_day)
    .execute(&mut **tx)
    .await;
    match result {
        Ok(_) => {}
        // Another account took the username key after our check.
        Err(error) if is_unique_violation(&error) => return Ok(None),
        Err(error) => return Err(error.into()),
    }
    // Epochs only rise: a lower epoch in the bundle leaves the space as it is.
    sqlx::query("UPDATE spaces SET epoch = $2 WHERE space = $1 AND epoch < $2")
        .bind(SpaceId::Private(account.space_id).name())
        .bind(i64::from(account.key_bundle.key_epoch))
        .execute(&mut **tx)
        .await?;
    Ok(Some(account))
}

#[async_trait]
impl Store for PgStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    fn durability(&self) -> Durability {
        Durability::OnCommit
    }

    async fn flush(&self) -> StoreResult<()> {
        // Every write returned after its commit.
        Ok(())
    }

    async fn secret_or_init(
        &self,
        name: &str,
        candidate: Zeroizing<Vec<u8>>,
    ) -> StoreResult<Zeroizing<Vec<u8>>> {
        // Insert-if-absent, then read what won: instances starting together agree on one value.
        sqlx::query("INSERT INTO secrets (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(name)
            .bind(candidate.as_slice())
            .execute(&self.pool)
            .await?;
        let row = sqlx::query("SELECT value FROM secrets WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        Ok(Zeroizing::new(row.try_get::<Vec<u8>, _>(0)?))
    }

    async fn jwt_keys(&self) -> StoreResult<Vec<JwtKeyRecord>> {
        let rows = sqlx::query("SELECT kid, secret, created_at, state FROM jwt_keys ORDER BY kid")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rows::jwt_key_from_row).collect()
    }

    async fn put_jwt_key(&self, key: JwtKeyRecord) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        // Serialises rotations of several instances, so exactly one key stays active; readers
        // are not blocked.
        sqlx::query("LOCK TABLE jwt_keys IN SHARE ROW EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
        if key.state == JwtKeyState::Active {
            sqlx::query("UPDATE jwt_keys SET state = $2 WHERE state = $3 AND kid <> $1")
                .bind(&key.kid)
                .bind(jwt_state_name(JwtKeyState::VerifyOnly))
                .bind(jwt_state_name(JwtKeyState::Active))
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO jwt_keys (kid, secret, created_at, state) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (kid) DO UPDATE SET secret = EXCLUDED.secret, \
             created_at = EXCLUDED.created_at, state = EXCLUDED.state",
        )
        .bind(&key.kid)
        .bind(key.secret.as_slice())
        .bind(to_i64(key.created_at, "jwt key created_at")?)
        .bind(jwt_state_name(key.state))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn create_account(
        &self,
        account: AccountRecord,
        first_device: DeviceRecord,
        storage_key: WrappedKey,
    ) -> StoreResult<Cas<()>> {
        let mut tx = self.pool.begin().await?;
        lock_account(&mut tx, &account.user_id, true).await?;
        // Ids are random, so an erased id or a taken space only trip on a bug; refusing beats
        // overwriting.
        if is_erased_in(&mut tx, &account.user_id).await? {
            tx.rollback().await?;
            return Ok(Cas::Conflict);
        }
        let inserted = insert_account(&mut tx, &account).await?;
        if !inserted {
            tx.rollback().await?;
            return Ok(Cas::Conflict);
        }
        let space = sqlx::query(
            "INSERT INTO spaces (space, head, epoch, storage_key, key_generation) \
             VALUES ($1, 0, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(SpaceId::Private(account.space_id).name())
        .bind(i64::from(account.key_bundle.key_epoch))
        .bind(storage_key.sealed.as_slice())
        .bind(i64::from(storage_key.generation))
        .execute(&mut *tx)
        .await?;
        if space.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(Cas::Conflict);
        }
        upsert_device(&mut tx, &first_device).await?;
        tx.commit().await?;
        Ok(Cas::Done(()))
    }

    async fn account_by_username(
        &self,
        username_key: &[u8; 32],
    ) -> StoreResult<Option<AccountRecord>> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE username_key = $1");
        sqlx::query(&sql)
            .bind(username_key)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(account_from_row)
            .transpose()
    }

    async fn account(&self, user: &UserId) -> StoreResult<Option<AccountRecord>> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE user_id = $1");
        sqlx::query(&sql)
            .bind(user.0)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(account_from_row)
            .transpose()
    }

    async fn update_account(
        &self,
        expected_revision: u64,
        account: AccountRecord,
    ) -> StoreResult<Cas<AccountRecord>> {
        let mut tx = self.pool.begin().await?;
        let Some(stored) = update_account_in(&mut tx, expected_revision, account).await? else {
            tx.rollback().await?;
            return Ok(Cas::Conflict);
        };
        tx.commit().await?;
        Ok(Cas::Done(stored))
    }

    async fn revoke_device(
        &self,
        expected_revision: u64,
        account: AccountRecord,
        device: &DeviceId,
    ) -> StoreResult<Cas<Vec<HexId>>> {
        let mut tx = self.pool.begin().await?;
        let Some(stored) = update_account_in(&mut tx, expected_revision, account).await? else {
            tx.rollback().await?;
            return Ok(Cas::Conflict);
        };
        sqlx::query("UPDATE devices SET revoked = true WHERE user_id = $1 AND device_id = $2")
            .bind(stored.user_id.0)
            .bind(device.0)
            .execute(&mut *tx)
            .await?;
        let rows = sqlx::query(
            "UPDATE sessions SET revoked = true \
             WHERE user_id = $1 AND device_id = $2 AND NOT revoked RETURNING session_id",
        )
        .bind(stored.user_id.0)
        .bind(device.0)
        .fetch_all(&mut *tx)
        .await?;
        let revoked = rows::session_ids(&rows)?;
        tx.commit().await?;
        Ok(Cas::Done(revoked))
    }

    async fn erase_account(&self, user: &UserId, wipe_token: Option<[u8; 32]>) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        lock_account(&mut tx, user, true).await?;
        let space: Option<[u8; 16]> =
            sqlx::query("DELETE FROM accounts WHERE user_id = $1 RETURNING space_id")
                .bind(user.0)
                .fetch_optional(&mut *tx)
                .await?
                .map(|row| row.try_get(0))
                .transpose()?;
        if let Some(space) = space {
            // Cascades to the log, its ids and tombstones; the storage key goes with the row.
            // An append waiting on the row finds it gone and is refused.
            sqlx::query("DELETE FROM spaces WHERE space = $1")
                .bind(SpaceId::Private(HexId(space)).name())
                .execute(&mut *tx)
                .await?;
        }
        for sql in [
            "DELETE FROM devices WHERE user_id = $1",
            "DELETE FROM sessions WHERE user_id = $1",
            // Reset and enrolment tokens of the account would outlive it otherwise.
            "DELETE FROM one_time_tokens WHERE user_id = $1",
        ] {
            sqlx::query(sql).bind(user.0).execute(&mut *tx).await?;
        }
        sqlx::query(
            "INSERT INTO erased_accounts (user_id, wipe_token) VALUES ($1, $2) \
             ON CONFLICT (user_id) DO UPDATE SET wipe_token = \
             COALESCE(erased_accounts.wipe_token, EXCLUDED.wipe_token)",
        )
        .bind(user.0)
        .bind(wipe_token.as_ref().map(|token| &token[..]))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn erased_wipe_token(&self, user: &UserId) -> StoreResult<Option<[u8; 32]>> {
        let row = sqlx::query("SELECT wipe_token FROM erased_accounts WHERE user_id = $1")
            .bind(user.0)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let token: Option<Vec<u8>> = row.try_get(0)?;
        token
            .map(|token| {
                <[u8; 32]>::try_from(token.as_slice())
                    .map_err(|_| StoreError::Corrupt("erased account's wipe token".into()))
            })
            .transpose()
    }

    async fn is_erased(&self, user: &UserId) -> StoreResult<bool> {
        let row = sqlx::query("SELECT 1 FROM erased_accounts WHERE user_id = $1")
            .bind(user.0)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    async fn devices(&self, user: &UserId) -> StoreResult<Vec<DeviceRecord>> {
        let sql =
            format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE user_id = $1 ORDER BY device_id");
        sqlx::query(&sql)
            .bind(user.0)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(device_from_row)
            .collect()
    }

    async fn device(&self, user: &UserId, device: &DeviceId) -> StoreResult<Option<DeviceRecord>> {
        let sql =
            format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE user_id = $1 AND device_id = $2");
        sqlx::query(&sql)
            .bind(user.0)
            .bind(device.0)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(device_from_row)
            .transpose()
    }

    async fn put_device(&self, device: DeviceRecord) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        lock_account(&mut tx, &device.user_id, false).await?;
        if is_erased_in(&mut tx, &device.user_id).await? {
            tx.rollback().await?;
            return Err(erased());
        }
        upsert_device(&mut tx, &device).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn create_session(&self, session: SessionRecord) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        lock_account(&mut tx, &session.user_id, false).await?;
        if is_erased_in(&mut tx, &session.user_id).await? {
            tx.rollback().await?;
            return Err(erased());
        }
        upsert_session(&mut tx, &session).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn session(&self, id: &HexId) -> StoreResult<Option<SessionRecord>> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE session_id = $1");
        sqlx::query(&sql)
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(session_from_row)
            .transpose()
    }

    async fn update_session(
        &self,
        expected_generation: u64,
        session: SessionRecord,
    ) -> StoreResult<Cas<()>> {
        // One statement: the CAS (generation, not revoked, same owner) and the write together.
        let updated = sqlx::query(
            "UPDATE sessions SET device_id = $3, created_at = $4, last_used_at = $5, \
             generation = $6, current_hash = $7, previous_hash = $8, rotated_at = $9, \
             revoked = $10 \
             WHERE session_id = $1 AND user_id = $2 AND generation = $11 AND NOT revoked",
        )
        .bind(session.session_id.0)
        .bind(session.user_id.0)
        .bind(session.device_id.0)
        .bind(to_i64(session.created_at, "session created_at")?)
        .bind(to_i64(session.last_used_at, "session last_used_at")?)
        .bind(to_i64(session.generation, "session generation")?)
        .bind(session.current_hash)
        .bind(session.previous_hash)
        .bind(to_i64(session.rotated_at, "session rotated_at")?)
        .bind(session.revoked)
        .bind(to_i64(expected_generation, "expected generation")?)
        .execute(&self.pool)
        .await?;
        Ok(if updated.rows_affected() == 0 {
            Cas::Conflict
        } else {
            Cas::Done(())
        })
    }

    async fn revoke_session(&self, id: &HexId) -> StoreResult<()> {
        sqlx::query("UPDATE sessions SET revoked = true WHERE session_id = $1 AND NOT revoked")
            .bind(id.0)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Returns the sessions this call revoked; ones revoked earlier are not repeated.
    async fn revoke_sessions_of_user(
        &self,
        user: &UserId,
        keep: Option<&HexId>,
    ) -> StoreResult<Vec<HexId>> {
        let rows = sqlx::query(
            "UPDATE sessions SET revoked = true WHERE user_id = $1 AND NOT revoked \
             AND session_id IS DISTINCT FROM $2 RETURNING session_id",
        )
        .bind(user.0)
        .bind(keep.map(|id| id.0))
        .fetch_all(&self.pool)
        .await?;
        rows::session_ids(&rows)
    }

    async fn put_token(&self, hash: &[u8; 32], token: OneTimeToken) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO one_time_tokens (hash, user_id, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (hash) DO UPDATE SET user_id = EXCLUDED.user_id, \
             expires_at = EXCLUDED.expires_at",
        )
        .bind(hash)
        .bind(token.user_id.0)
        .bind(to_i64(token.expires_at, "token expiry")?)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn take_token(&self, hash: &[u8; 32]) -> StoreResult<Option<OneTimeToken>> {
        let row = sqlx::query(
            "DELETE FROM one_time_tokens WHERE hash = $1 RETURNING user_id, expires_at",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(OneTimeToken {
                user_id: HexId(row.try_get(0)?),
                expires_at: to_u64(row.try_get(1)?, "token expiry")?,
            })
        })
        .transpose()
    }

    async fn create_link(&self, link: LinkRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO links (id, expires_at, payload) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET expires_at = EXCLUDED.expires_at, \
             payload = EXCLUDED.payload",
        )
        .bind(link.id.0)
        .bind(to_i64(link.expires_at, "link expiry")?)
        .bind(link.payload)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn put_link_payload(&self, id: &HexId, payload: Vec<u8>) -> StoreResult<Cas<()>> {
        let updated =
            sqlx::query("UPDATE links SET payload = $2 WHERE id = $1 AND payload IS NULL")
                .bind(id.0)
                .bind(payload)
                .execute(&self.pool)
                .await?;
        Ok(if updated.rows_affected() == 0 {
            Cas::Conflict
        } else {
            Cas::Done(())
        })
    }

    async fn take_link(&self, id: &HexId) -> StoreResult<Option<LinkRecord>> {
        let row = sqlx::query(
            "DELETE FROM links WHERE id = $1 AND payload IS NOT NULL \
             RETURNING id, expires_at, payload",
        )
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(LinkRecord {
                id: HexId(row.try_get(0)?),
                expires_at: to_u64(row.try_get(1)?, "link expiry")?,
                payload: row.try_get(2)?,
            })
        })
        .transpose()
    }

    /// A record is expired once `expires_at <= now`. Ended rate windows go in the same sweep
    /// but are not counted (as in the KV store).
    async fn purge_expired(&self, now: u64) -> StoreResult<usize> {
        // Stored times never exceed i64::MAX, so clamping `now` keeps every comparison exact.
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        let mut tx = self.pool.begin().await?;
        let links = sqlx::query("DELETE FROM links WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let tokens = sqlx::query("DELETE FROM one_time_tokens WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        // Written as a subtraction so that it cannot overflow.
        sqlx::query("DELETE FROM rate_windows WHERE window_start <= $1 - window_secs")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let purged = links.rows_affected().saturating_add(tokens.rows_affected());
        Ok(usize::try_from(purged).unwrap_or(usize::MAX))
    }

    async fn rate_limit_hit(
        &self,
        key: &[u8],
        now: u64,
        window_secs: u64,
        max_events: u32,
    ) -> StoreResult<RateDecision> {
        let window_secs = window_secs.max(1);
        let window_start = now - now % window_secs;
        let limited = RateDecision::Limited {
            retry_after: window_start
                .saturating_add(window_secs)
                .saturating_sub(now)
                .max(1),
        };
        if max_events == 0 {
            return Ok(limited);
        }
        // One atomic statement for every instance: a new window starts at 1; the current one
        // counts up to the limit; a refused event is not counted (no row comes back).
        let row = sqlx::query(
            "INSERT INTO rate_windows AS w (key, window_start, window_secs, count) \
             VALUES ($1, $2, $3, 1) \
             ON CONFLICT (key) DO UPDATE SET \
               count = CASE WHEN w.window_start = EXCLUDED.window_start \
                             AND w.window_secs = EXCLUDED.window_secs \
                            THEN w.count + 1 ELSE 1 END, \
               window_start = EXCLUDED.window_start, \
               window_secs = EXCLUDED.window_secs \
             WHERE NOT (w.window_start = EXCLUDED.window_start \
                        AND w.window_secs = EXCLUDED.window_secs AND w.count >= $4) \
             RETURNING count",
        )
        .bind(key)
        .bind(to_i64(window_start, "rate window start")?)
        .bind(to_i64(window_secs, "rate window length")?)
        .bind(i64::from(max_events))
        .fetch_optional(&self.pool)
        .await?;
        Ok(if row.is_some() {
            RateDecision::Allowed
        } else {
            limited
        })
    }

    async fn space_exists(&self, space: &SpaceId) -> StoreResult<bool> {
        if space.is_public() {
            return Ok(true);
        }
        let row = sqlx::query("SELECT 1 FROM spaces WHERE space = $1")
            .bind(space.name())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    async fn storage_key(&self, space: &SpaceId) -> StoreResult<Option<StoredKey>> {
        if space.is_public() {
            return Ok(None);
        }
        let row = sqlx::query("SELECT storage_key, key_generation FROM spaces WHERE space = $1")
            .bind(space.name())
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let bytes: Option<Vec<u8>> = row.try_get(0)?;
        let generation: Option<i64> = row.try_get(1)?;
        bytes
            .map(|bytes| stored_key_from_columns(Zeroizing::new(bytes), generation))
            .transpose()
    }

    async fn storage_keys(
        &self,
        after: Option<&SpaceId>,
        limit: usize,
    ) -> StoreResult<Vec<(SpaceId, StoredKey)>> {
        // `space` is COLLATE "C": hex names sort as the KV store's binary keys do.
        let rows = sqlx::query(
            "SELECT space, storage_key, key_generation FROM spaces \
             WHERE storage_key IS NOT NULL AND space > $1 ORDER BY space LIMIT $2",
        )
        .bind(after.map(SpaceId::name).unwrap_or_default())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let name: String = row.try_get(0)?;
                let space = name.parse::<SpaceId>().map_err(|_| {
                    StoreError::Corrupt("spaces: a name that is not a space".into())
                })?;
                let bytes: Vec<u8> = row.try_get(1)?;
                let generation: Option<i64> = row.try_get(2)?;
                Ok((
                    space,
                    stored_key_from_columns(Zeroizing::new(bytes), generation)?,
                ))
            })
            .collect()
    }

    async fn replace_storage_key(
        &self,
        space: &SpaceId,
        expected: &StoredKey,
        new: WrappedKey,
    ) -> StoreResult<Cas<()>> {
        let (expected_bytes, expected_generation) = stored_key_columns(expected);
        let updated = sqlx::query(
            "UPDATE spaces SET storage_key = $2, key_generation = $3 \
             WHERE space = $1 AND storage_key = $4 AND key_generation IS NOT DISTINCT FROM $5",
        )
        .bind(space.name())
        .bind(new.sealed.as_slice())
        .bind(i64::from(new.generation))
        .bind(expected_bytes.as_slice())
        .bind(expected_generation)
        .execute(&self.pool)
        .await?;
        Ok(if updated.rows_affected() == 1 {
            Cas::Done(())
        } else {
            Cas::Conflict
        })
    }

    async fn append(
        &self,
        space: &SpaceId,
        items: Vec<AppendItem>,
    ) -> StoreResult<Vec<AppendOutcome>> {
        append::append(&self.pool, space, items, self.notify_heads).await
    }

    async fn read(
        &self,
        space: &SpaceId,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> StoreResult<Vec<(u64, Envelope)>> {
        // Stored seqs never exceed i64::MAX: a bound past it reads the same as i64::MAX.
        let Ok(after) = i64::try_from(after) else {
            return Ok(Vec::new());
        };
        let upto = i64::try_from(upto).unwrap_or(i64::MAX);
        if after >= upto || limit == 0 {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT seq, envelope FROM envelopes WHERE space = $1 AND seq > $2 AND seq <= $3 \
             ORDER BY seq LIMIT $4",
        )
        .bind(space.name())
        .bind(after)
        .bind(upto)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let seq = to_u64(row.try_get(0)?, "envelope seq")?;
                let bytes: Vec<u8> = row.try_get(1)?;
                let envelope = Envelope::decode(&bytes).map_err(|error| {
                    StoreError::Corrupt(format!("envelope at seq {seq} of {space}: {error}"))
                })?;
                Ok((seq, envelope))
            })
            .collect()
    }

    async fn seq_of(&self, space: &SpaceId, id: &EnvelopeId) -> StoreResult<Option<u64>> {
        let row = sqlx::query("SELECT seq FROM envelope_ids WHERE space = $1 AND id = $2")
            .bind(space.name())
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| to_u64(row.try_get(0)?, "envelope id seq"))
            .transpose()
    }

    async fn head(&self, space: &SpaceId) -> StoreResult<u64> {
        let row = sqlx::query("SELECT head FROM spaces WHERE space = $1")
            .bind(space.name())
            .fetch_optional(&self.pool)
            .await?;
        row.map_or(Ok(0), |row| to_u64(row.try_get(0)?, "space head"))
    }

    async fn epoch(&self, space: &SpaceId) -> StoreResult<u32> {
        let row = sqlx::query("SELECT epoch FROM spaces WHERE space = $1")
            .bind(space.name())
            .fetch_optional(&self.pool)
            .await?;
        row.map_or(Ok(0), |row| rows::to_u32(row.try_get(0)?, "space epoch"))
    }

    async fn live_ids(&self, space: &SpaceId, doc: &DocId) -> StoreResult<Vec<(u64, EnvelopeId)>> {
        let rows =
            sqlx::query("SELECT seq, id FROM envelopes WHERE space = $1 AND doc = $2 ORDER BY seq")
                .bind(space.name())
                .bind(doc.0)
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|row| {
                let seq = to_u64(row.try_get(0)?, "envelope seq")?;
                let id: [u8; 32] = row.try_get(1)?;
                Ok((seq, id.into()))
            })
            .collect()
    }
}

/// Inserts an account unless its id, space or username key is taken; returns whether it did.
pub(in crate::store) async fn insert_account(
    tx: &mut Transaction<'_, Postgres>,
    account: &AccountRecord,
) -> StoreResult<bool> {
    let sql = format!(
        "INSERT INTO accounts ({ACCOUNT_COLUMNS}) VALUES \
         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
         ON CONFLICT DO NOTHING"
    );
    let inserted = sqlx::query(&sql)
        .bind(account.user_id.0)
        .bind(account.space_id.0)
        .bind(account.username_key)
        .bind(&account.auth_hash)
        .bind(&account.recovery_hash)
        .bind(account.kdf.salt.0)
        .bind(i64::from(account.kdf.m_kib))
        .bind(i64::from(account.kdf.t))
        .bind(i64::from(account.kdf.p))
        .bind(to_i64(account.key_bundle.version, "key bundle version")?)
        .bind(i64::from(account.key_bundle.key_epoch))
        .bind(&account.key_bundle.blob.0)
        .bind(to_i64(account.auth_version, "auth version")?)
        .bind(to_i64(account.revision, "revision")?)
        .bind(&account.created_day)
        .execute(&mut **tx)
        .await?;
    Ok(inserted.rows_affected() > 0)
}

/// Inserts or replaces a session (a session id reused for another user moves to that user).
pub(in crate::store) async fn upsert_session(
    tx: &mut Transaction<'_, Postgres>,
    session: &SessionRecord,
) -> StoreResult<()> {
    let sql = format!(
        "INSERT INTO sessions ({SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (session_id) DO UPDATE SET user_id = EXCLUDED.user_id, \
         device_id = EXCLUDED.device_id, created_at = EXCLUDED.created_at, \
         last_used_at = EXCLUDED.last_used_at, generation = EXCLUDED.generation, \
         current_hash = EXCLUDED.current_hash, previous_hash = EXCLUDED.previous_hash, \
         rotated_at = EXCLUDED.rotated_at, revoked = EXCLUDED.revoked"
    );
    sqlx::query(&sql)
        .bind(session.session_id.0)
        .bind(session.user_id.0)
        .bind(session.device_id.0)
        .bind(to_i64(session.created_at, "session created_at")?)
        .bind(to_i64(session.last_used_at, "session last_used_at")?)
        .bind(to_i64(session.generation, "session generation")?)
        .bind(session.current_hash)
        .bind(session.previous_hash)
        .bind(to_i64(session.rotated_at, "session rotated_at")?)
        .bind(session.revoked)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Inserts or replaces a device; a stored revocation wins over the given flag (revocation is
/// final, even against an update racing it).
pub(in crate::store) async fn upsert_device(
    tx: &mut Transaction<'_, Postgres>,
    device: &DeviceRecord,
) -> StoreResult<()> {
    let sql = format!(
        "INSERT INTO devices ({DEVICE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (user_id, device_id) DO UPDATE SET name = EXCLUDED.name, \
         created_day = EXCLUDED.created_day, last_seen_day = EXCLUDED.last_seen_day, \
         revoked = devices.revoked OR EXCLUDED.revoked"
    );
    sqlx::query(&sql)
        .bind(device.user_id.0)
        .bind(device.device_id.0)
        .bind(&device.name)
        .bind(&device.created_day)
        .bind(&device.last_seen_day)
        .bind(device.revoked)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// A storage key from its columns: a generation and 72 sealed bytes, or (written before master
/// keys) no generation and 32 raw bytes.
fn stored_key_from_columns(
    bytes: Zeroizing<Vec<u8>>,
    generation: Option<i64>,
) -> StoreResult<StoredKey> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("storage key: {what}"));
    match generation {
        None => Ok(StoredKey::Legacy(Zeroizing::new(
            bytes
                .as_slice()
                .try_into()
                .map_err(|_| corrupt("raw key not 32 bytes"))?,
        ))),
        Some(generation) => Ok(StoredKey::Wrapped(WrappedKey {
            generation: u32::try_from(generation)
                .map_err(|_| corrupt("generation out of range"))?,
            sealed: <[u8; WRAPPED_KEY_LEN]>::try_from(bytes.as_slice())
                .map_err(|_| corrupt("wrapped key of the wrong length"))?,
        })),
    }
}

/// The columns of a storage key (the inverse of [`stored_key_from_columns`]).
pub(in crate::store) fn stored_key_columns(key: &StoredKey) -> (Zeroizing<Vec<u8>>, Option<i64>) {
    match key {
        StoredKey::Wrapped(key) => (
            Zeroizing::new(key.sealed.to_vec()),
            Some(i64::from(key.generation)),
        ),
        StoredKey::Legacy(raw) => (Zeroizing::new(raw.to_vec()), None),
    }
}
