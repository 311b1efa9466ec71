//! Storage behind one trait, with one conformance suite run against every backend.
//!
//! [`Store`] is the contract: accounts, devices, sessions, shared server secrets, JWT keys,
//! mailboxes, rate-limit counters and the per-space envelope logs with their rules (DESIGN.md §3).
//! The rules of a log append (idempotency, tombstones, key epochs, snapshot compare-and-swap) are
//! part of the contract, because they must be atomic with the write: each backend enforces them
//! inside its own transaction. Backends:
//! - [`kv::KvStore`] over an ordered key-value engine with atomic batches: [`memory::MemoryKv`]
//!   (tests) and [`sled_kv::SledKv`] (the embedded default).
//! - [`postgres::PgStore`] implements [`Store`] directly with SQL, for several instances over
//!   one database.
//!
//! Envelope bodies of private spaces reach the store already sealed under the account's storage
//! key (see `crate::storage_seal`); the store never sees client ciphertext as uploaded. Storage
//! keys reach it wrapped under a master key kept outside the store ([`WrappedKey`],
//! `crate::storage_keys`), so the store never holds a usable key.

use async_trait::async_trait;
use haven_protocol::api::{KdfParams, KeyBundle};
use haven_protocol::{DeviceId, DocId, Envelope, EnvelopeId, HexId, SpaceId, UserId};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

pub mod kv;
pub mod memory;
pub mod migrate;
pub mod postgres;
pub mod sled_kv;

#[cfg(test)]
mod conformance;
#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
pub(crate) mod spy;

/// Failures of the storage engine itself. Rule outcomes (a conflict, a stale snapshot) are not
/// errors: they are values in the operations' results.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The engine failed (I/O, a full disk). Nothing was acknowledged.
    #[error("storage engine failed: {0}")]
    Engine(String),
    /// A stored record could not be decoded: the data is corrupt, and is not served.
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Length of [`WrappedKey::sealed`]: nonce (24) ‖ the 32-byte key encrypted (32) ‖ tag (16).
pub const WRAPPED_KEY_LEN: usize = 72;

/// A storage key sealed under the master key of `generation` (XChaCha20-Poly1305, AAD binding the
/// space and the generation; see `crate::master_key`). Useless without the master-key file.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedKey {
    pub generation: u32,
    pub sealed: [u8; WRAPPED_KEY_LEN],
}

impl std::fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WrappedKey")
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

/// Version byte of a wrapped key in byte-valued stores (sled): `1 ‖ generation (u32 BE) ‖ sealed`.
const WRAPPED_KEY_VERSION: u8 = 1;

/// What a store holds as a space's storage key.
#[derive(Clone, PartialEq, Eq)]
pub enum StoredKey {
    Wrapped(WrappedKey),
    /// A raw key written before master keys existed (32 bytes). The server wraps these at start
    /// (`StorageKeys::open`); they are still readable so that a store migrated later works.
    Legacy(Zeroizing<[u8; 32]>),
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Wrapped(key) => key.fmt(f),
            Self::Legacy(_) => f.write_str("StoredKey::Legacy(..)"),
        }
    }
}

impl StoredKey {
    /// The generation it is wrapped under; `None` for a legacy raw key.
    pub fn generation(&self) -> Option<u32> {
        match self {
            Self::Wrapped(key) => Some(key.generation),
            Self::Legacy(_) => None,
        }
    }

    /// The byte encoding of byte-valued stores: a legacy key is its 32 raw bytes (as written
    /// before), a wrapped one `1 ‖ generation ‖ sealed` (77 bytes), so the two never collide.
    pub(crate) fn encode(&self) -> Zeroizing<Vec<u8>> {
        match self {
            Self::Wrapped(key) => {
                let mut out = Vec::with_capacity(1 + 4 + WRAPPED_KEY_LEN);
                out.push(WRAPPED_KEY_VERSION);
                out.extend_from_slice(&key.generation.to_be_bytes());
                out.extend_from_slice(&key.sealed);
                Zeroizing::new(out)
            }
            Self::Legacy(raw) => Zeroizing::new(raw.to_vec()),
        }
    }

    pub(crate) fn decode(bytes: &[u8]) -> StoreResult<Self> {
        let corrupt = || StoreError::Corrupt("storage key: neither raw nor wrapped".into());
        if let Ok(raw) = <[u8; 32]>::try_from(bytes) {
            return Ok(Self::Legacy(Zeroizing::new(raw)));
        }
        let (&version, rest) = bytes.split_first().ok_or_else(corrupt)?;
        let (generation, sealed) = rest.split_first_chunk::<4>().ok_or_else(corrupt)?;
        if version != WRAPPED_KEY_VERSION {
            return Err(corrupt());
        }
        Ok(Self::Wrapped(WrappedKey {
            generation: u32::from_be_bytes(*generation),
            sealed: sealed.try_into().map_err(|_| corrupt())?,
        }))
    }
}

/// An account. `username_key` is a keyed hash of the normalised username: the store never holds
/// usernames in clear.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRecord {
    pub user_id: UserId,
    pub space_id: HexId,
    pub username_key: [u8; 32],
    /// PHC string of Argon2id(auth_secret).
    pub auth_hash: String,
    /// PHC string of Argon2id(recovery_auth).
    pub recovery_hash: String,
    pub kdf: KdfParams,
    pub key_bundle: KeyBundle,
    /// Bumped whenever the password changes or a device is revoked: access tokens carrying an
    /// older value are refused.
    pub auth_version: u64,
    /// Compare-and-swap counter, bumped by every update.
    pub revision: u64,
    /// `YYYY-MM-DD`.
    pub created_day: String,
}

/// A device of an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    pub user_id: UserId,
    pub device_id: DeviceId,
    /// Opaque (sealed by the client).
    pub name: Option<String>,
    pub created_day: String,
    pub last_seen_day: String,
    pub revoked: bool,
}

/// A refresh-token family: one login of one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub session_id: HexId,
    pub user_id: UserId,
    pub device_id: DeviceId,
    /// Unix seconds of the login (absolute lifetime).
    pub created_at: u64,
    /// Unix seconds of the last refresh (idle lifetime).
    pub last_used_at: u64,
    /// Generation of the current refresh token; +1 on each rotation.
    pub generation: u64,
    /// SHA-256 of the current refresh token.
    pub current_hash: [u8; 32],
    /// SHA-256 of the previous token, honoured once within a short grace after rotation.
    pub previous_hash: Option<[u8; 32]>,
    /// Unix seconds of the last rotation.
    pub rotated_at: u64,
    pub revoked: bool,
}

/// A JWT signing key of the shared key set.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwtKeyRecord {
    pub kid: String,
    /// Ed25519 secret key bytes.
    pub secret: Zeroizing<[u8; 32]>,
    /// Unix seconds.
    pub created_at: u64,
    pub state: JwtKeyState,
}

impl std::fmt::Debug for JwtKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKeyRecord")
            .field("kid", &self.kid)
            .field("created_at", &self.created_at)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// Lifecycle of a JWT signing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JwtKeyState {
    /// Signs new tokens (exactly one key) and verifies.
    Active,
    /// Verifies tokens it signed until they expire; signs nothing.
    VerifyOnly,
    /// Verifies nothing.
    Retired,
}

/// A device-linking mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkRecord {
    pub id: HexId,
    /// Unix seconds.
    pub expires_at: u64,
    /// Set once by the existing device; taken once by the new device.
    pub payload: Option<Vec<u8>>,
}

/// A one-time token (password reset after recovery, device enrolment), stored by its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OneTimeToken {
    pub user_id: UserId,
    /// Unix seconds.
    pub expires_at: u64,
}

/// A log append's input: the envelope as it will be stored and the digest of the envelope as the
/// client sent it (before storage sealing), which decides "same bytes" for idempotency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendItem {
    pub envelope: Envelope,
    pub digest: [u8; 32],
}

/// What happened to one item of an append, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Newly stored at `seq`.
    Stored { seq: u64 },
    /// The same id with the same digest was stored earlier at `seq` (a retry).
    Duplicate { seq: u64 },
    /// The same id was stored earlier with another digest.
    IdConflict,
    /// The document has a tombstone.
    DocDeleted,
    /// `key_epoch` is below the space's current epoch.
    EpochStale { current: u32 },
    /// `key_epoch` is above the space's current epoch.
    EpochAhead { current: u32 },
    /// A snapshot with `upto_seq` above the head.
    SnapshotAhead { head: u64 },
    /// A snapshot that misses live envelopes of its document up to `upto_seq`.
    SnapshotStale { missing: Vec<EnvelopeId> },
}

/// Outcome of a compare-and-swap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cas<T> {
    Done(T),
    /// The record changed (or is gone); the caller re-reads and decides.
    Conflict,
}

/// Outcome of counting one event against a fixed-window limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    Allowed,
    /// Over the limit; seconds until the window resets.
    Limited {
        retry_after: u64,
    },
}

/// How a backend makes writes durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// A returned write is durable (PostgreSQL commit, or memory, which promises nothing more).
    OnCommit,
    /// Writes are durable after [`Store::flush`] (sled): acks wait for a group flush.
    AfterFlush,
}

/// The storage contract. All methods are atomic; see each for its rules.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Answers when storage works (`/healthz`).
    async fn ping(&self) -> StoreResult<()>;

    fn durability(&self) -> Durability;

    /// Makes every write that returned before this call durable.
    async fn flush(&self) -> StoreResult<()>;

    // ---- secrets shared by every server instance --------------------------------------------

    /// Returns the secret stored under `name`, storing `candidate` first if there is none.
    /// Every instance therefore agrees on one value.
    async fn secret_or_init(
        &self,
        name: &str,
        candidate: Zeroizing<Vec<u8>>,
    ) -> StoreResult<Zeroizing<Vec<u8>>>;

    // ---- JWT key set -----------------------------------------------------------------------

    async fn jwt_keys(&self) -> StoreResult<Vec<JwtKeyRecord>>;

    /// Inserts or replaces the key with this `kid`. When `key.state` is `Active`, every other
    /// active key becomes `VerifyOnly` in the same write.
    async fn put_jwt_key(&self, key: JwtKeyRecord) -> StoreResult<()>;

    // ---- accounts and devices -------------------------------------------------------------

    /// Creates the account, its private space (empty log, epoch = `key_bundle.key_epoch`), its
    /// wrapped storage key and its first device. `Conflict` when the username key is taken.
    async fn create_account(
        &self,
        account: AccountRecord,
        first_device: DeviceRecord,
        storage_key: WrappedKey,
    ) -> StoreResult<Cas<()>>;

    async fn account_by_username(
        &self,
        username_key: &[u8; 32],
    ) -> StoreResult<Option<AccountRecord>>;

    async fn account(&self, user: &UserId) -> StoreResult<Option<AccountRecord>>;

    /// Replaces the account if its stored `revision` equals `expected_revision`; the stored copy
    /// gets `revision = expected_revision + 1`. When `key_bundle.key_epoch` rises, the space's
    /// epoch rises with it in the same write (later appends under older epochs are `EpochStale`).
    async fn update_account(
        &self,
        expected_revision: u64,
        account: AccountRecord,
    ) -> StoreResult<Cas<AccountRecord>>;

    /// Revokes a device in one write: the account update (as [`Store::update_account`]), the
    /// device marked revoked, and every session of that device revoked. Returns the revoked
    /// session ids.
    async fn revoke_device(
        &self,
        expected_revision: u64,
        account: AccountRecord,
        device: &DeviceId,
    ) -> StoreResult<Cas<Vec<HexId>>>;

    /// Erases everything of the account: account, username index, devices, sessions, the space
    /// log with its ids and the storage key; leaves a marker so [`Store::is_erased`] answers,
    /// holding the account's wipe token if the erasing device revealed one.
    async fn erase_account(&self, user: &UserId, wipe_token: Option<[u8; 32]>) -> StoreResult<()>;

    async fn is_erased(&self, user: &UserId) -> StoreResult<bool>;

    /// The wipe token kept with an erased account's marker: `None` when the account is not
    /// erased or no token was revealed.
    async fn erased_wipe_token(&self, user: &UserId) -> StoreResult<Option<[u8; 32]>>;

    async fn devices(&self, user: &UserId) -> StoreResult<Vec<DeviceRecord>>;

    async fn device(&self, user: &UserId, device: &DeviceId) -> StoreResult<Option<DeviceRecord>>;

    /// Inserts or replaces a device record. A stored revocation is never undone: the stored
    /// `revoked = true` wins over the given record's flag.
    async fn put_device(&self, device: DeviceRecord) -> StoreResult<()>;

    // ---- sessions ---------------------------------------------------------------------------

    async fn create_session(&self, session: SessionRecord) -> StoreResult<()>;

    async fn session(&self, id: &HexId) -> StoreResult<Option<SessionRecord>>;

    /// Replaces the session if its stored `generation` equals `expected_generation` and it is
    /// not revoked.
    async fn update_session(
        &self,
        expected_generation: u64,
        session: SessionRecord,
    ) -> StoreResult<Cas<()>>;

    /// Marks one session revoked (idempotent).
    async fn revoke_session(&self, id: &HexId) -> StoreResult<()>;

    /// Marks every session of the account revoked, except `keep`; returns the revoked ids.
    async fn revoke_sessions_of_user(
        &self,
        user: &UserId,
        keep: Option<&HexId>,
    ) -> StoreResult<Vec<HexId>>;

    // ---- one-time tokens and link mailboxes ----------------------------------------------------

    async fn put_token(&self, hash: &[u8; 32], token: OneTimeToken) -> StoreResult<()>;

    /// Removes and returns the token (single use), whatever its expiry: callers check it.
    async fn take_token(&self, hash: &[u8; 32]) -> StoreResult<Option<OneTimeToken>>;

    async fn create_link(&self, link: LinkRecord) -> StoreResult<()>;

    /// Sets the payload once. `Conflict` if it is gone or already has one.
    async fn put_link_payload(&self, id: &HexId, payload: Vec<u8>) -> StoreResult<Cas<()>>;

    /// Removes and returns the mailbox if it holds a payload; leaves an empty one in place.
    async fn take_link(&self, id: &HexId) -> StoreResult<Option<LinkRecord>>;

    /// Deletes expired mailboxes and one-time tokens; returns how many went.
    async fn purge_expired(&self, now: u64) -> StoreResult<usize>;

    // ---- rate limits shared by instances ------------------------------------------------------

    /// Counts one event for `key` in the fixed window of `window_secs` containing `now`.
    async fn rate_limit_hit(
        &self,
        key: &[u8],
        now: u64,
        window_secs: u64,
        max_events: u32,
    ) -> StoreResult<RateDecision>;

    // ---- space logs ---------------------------------------------------------------------------

    /// Whether the space exists (`public` always does).
    async fn space_exists(&self, space: &SpaceId) -> StoreResult<bool>;

    /// The account's stored (wrapped) storage key for a private space; `None` for `public` or an
    /// unknown space.
    async fn storage_key(&self, space: &SpaceId) -> StoreResult<Option<StoredKey>>;

    /// Storage keys of the spaces named after `after` (from the first when `None`), ascending by
    /// space name, at most `limit`: pages for re-wrapping every key under a new master key.
    async fn storage_keys(
        &self,
        after: Option<&SpaceId>,
        limit: usize,
    ) -> StoreResult<Vec<(SpaceId, StoredKey)>>;

    /// Replaces the space's storage key with `new` if it still is `expected`; `Conflict` when it
    /// changed or the space is gone (erased).
    async fn replace_storage_key(
        &self,
        space: &SpaceId,
        expected: &StoredKey,
        new: WrappedKey,
    ) -> StoreResult<Cas<()>>;

    /// Appends a batch, item by item in order, atomically as a whole. Per item, in this order:
    /// 1. an id already in the space (live, pruned or dropped): `Duplicate` when the digest is the
    ///    same, else `IdConflict`;
    /// 2. a document with a tombstone: `DocDeleted`;
    /// 3. `key_epoch` below / above the space's epoch: `EpochStale` / `EpochAhead`;
    /// 4. a snapshot: `SnapshotAhead` if `upto_seq` > head; `SnapshotStale` listing the live
    ///    envelopes of the document with seq ≤ `upto_seq` that `covers` lacks; otherwise it is
    ///    stored and the covered live envelopes of that document with seq ≤ `upto_seq` are
    ///    pruned (their id → seq stays);
    /// 5. a tombstone is stored and every other live envelope of its document is dropped
    ///    (their id → seq stays);
    /// 6. stored at head + 1 (gap-free).
    ///
    /// Rejected items do not consume a seq. Must only be called for existing spaces.
    async fn append(
        &self,
        space: &SpaceId,
        items: Vec<AppendItem>,
    ) -> StoreResult<Vec<AppendOutcome>>;

    /// Live envelopes with seq in `(after, upto]`, ascending, at most `limit`.
    async fn read(
        &self,
        space: &SpaceId,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> StoreResult<Vec<(u64, Envelope)>>;

    /// The seq an id was stored at, even after pruning.
    async fn seq_of(&self, space: &SpaceId, id: &EnvelopeId) -> StoreResult<Option<u64>>;

    /// The highest seq assigned (0 for an empty log).
    async fn head(&self, space: &SpaceId) -> StoreResult<u64>;

    /// The space's current key epoch (0 for `public`).
    async fn epoch(&self, space: &SpaceId) -> StoreResult<u32>;

    /// Live envelope ids of a document (for tests and snapshot planning), ascending by seq.
    async fn live_ids(&self, space: &SpaceId, doc: &DocId) -> StoreResult<Vec<(u64, EnvelopeId)>>;
}
