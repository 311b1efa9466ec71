//! [`Store`] over any ordered key-value engine with atomic batches, so the rules of the contract
//! (idempotent appends, tombstones, key epochs, snapshot compare-and-swap, CAS on accounts and
//! sessions) are written once and every engine ([`super::memory::MemoryKv`],
//! [`super::sled_kv::SledKv`]) runs the same code.
//!
//! # Key layout
//!
//! One keyspace, short ASCII prefixes, binary ids. `S` is a space key: a tag byte (0 = public,
//! 1 = private) and 16 bytes, so every record of a space shares the prefix `l/S/` and erasing a
//! space is deleting that prefix. Integers are big-endian so that byte order is numeric order.
//!
//! | key                        | value                                           |
//! |----------------------------|-------------------------------------------------|
//! | `m/secret/{name}`          | raw secret bytes                                |
//! | `m/jwt/{kid}`              | JSON [`JwtKeyRecord`]                           |
//! | `a/u/{user}`               | JSON [`AccountRecord`]                          |
//! | `a/n/{username_key}`       | user id (16 bytes)                              |
//! | `a/x/{user}`               | erasure marker (one version byte, then the wipe token if one was revealed) |
//! | `d/{user}/{device}`        | JSON [`DeviceRecord`]                           |
//! | `s/{session}`              | JSON [`SessionRecord`]                          |
//! | `su/{user}/{session}`      | empty (index of a user's sessions)              |
//! | `t/{hash}`                 | JSON [`OneTimeToken`]                           |
//! | `k/S`                      | [`StoredKey::encode`]: the wrapped storage key  |
//! | `l/S/h`                    | head seq (u64)                                  |
//! | `l/S/p`                    | key epoch (u32); its presence = the space exists|
//! | `l/S/e/{seq}`              | [`Envelope::encode`] of a live envelope         |
//! | `l/S/i/{id}`               | seq (u64) ‖ digest (32 bytes), kept forever     |
//! | `l/S/d/{doc}`              | seq of the doc's tombstone (u64)                |
//! | `l/S/v/{doc}/{seq}`        | envelope id (live index of a document)          |
//! | `x/link/{id}`              | JSON [`LinkRecord`]                             |
//! | `x/rl/{key}`               | JSON rate window                                |
//!
//! # Concurrency
//!
//! Engines only promise that one batch applies atomically, so every read-modify-write runs under
//! a lock held from "read the state" to "apply the batch": a striped lock per space for log
//! writes (append, epoch changes, erasure of the log) and one lock for everything account-shaped
//! (accounts, devices, sessions, tokens, links, rate windows, secrets, JWT keys). When both are
//! needed the account lock is taken first; `append` takes only its space lock, so the order is
//! never inverted. Plain reads take no lock: each answers from records that batches keep
//! consistent.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Debug;
use std::future::Future;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};

use async_trait::async_trait;
use haven_protocol::{DeviceId, DocId, Envelope, EnvelopeId, HexId, Kind, SpaceId, UserId};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, MutexGuard};
use zeroize::Zeroizing;

use super::{
    AccountRecord, AppendItem, AppendOutcome, Cas, DeviceRecord, Durability, JwtKeyRecord,
    JwtKeyState, LinkRecord, OneTimeToken, RateDecision, SessionRecord, Store, StoreError,
    StoreResult, StoredKey, WrappedKey,
};

/// A set of writes applied all-or-nothing. A later write to a key replaces an earlier one in the
/// same batch, so callers can put a record and remove it again while deciding.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KvBatch {
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl KvBatch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.writes.insert(key, Some(value));
    }

    pub fn remove(&mut self, key: Vec<u8>) {
        self.writes.insert(key, None);
    }

    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    pub fn len(&self) -> usize {
        self.writes.len()
    }

    /// The writes in key order: `Some(value)` puts, `None` removes.
    pub fn into_writes(self) -> impl Iterator<Item = (Vec<u8>, Option<Vec<u8>>)> {
        self.writes.into_iter()
    }
}

/// A key and its value, as scans return them.
pub type KvPair = (Vec<u8>, Vec<u8>);

/// An ordered byte-key store. Reads are single-key or ascending scans; writes are only atomic
/// batches. Engines are expected to be memory-resident enough that the synchronous calls are
/// fast; only `flush` may wait on the disk.
pub trait KvEngine: Send + Sync + Debug + 'static {
    fn get(&self, key: &[u8]) -> StoreResult<Option<Vec<u8>>>;

    /// Every pair whose key starts with `prefix`, ascending.
    fn scan_prefix(&self, prefix: &[u8]) -> StoreResult<Vec<KvPair>>;

    /// Every key that starts with `prefix`, ascending (for deletions, without copying values).
    fn scan_prefix_keys(&self, prefix: &[u8]) -> StoreResult<Vec<Vec<u8>>>;

    /// At most `limit` pairs with keys ≥ `start` that start with `prefix`, ascending.
    fn scan_from(&self, prefix: &[u8], start: &[u8], limit: usize) -> StoreResult<Vec<KvPair>>;

    /// Applies every write of the batch, or none.
    fn apply(&self, batch: KvBatch) -> StoreResult<()>;

    /// Makes every applied batch durable.
    fn flush(&self) -> impl Future<Output = StoreResult<()>> + Send;

    fn durability(&self) -> Durability;
}

/// Number of space lock stripes. Bounded memory whatever the number of spaces; two spaces that
/// share a stripe only serialise their (sub-millisecond) read-decide-apply sections.
const SPACE_LOCK_STRIPES: usize = 64;

/// Version byte of the erasure marker; the marker holds nothing about the account.
const ERASED_MARKER: &[u8] = &[1];

/// [`Store`] over a [`KvEngine`].
pub struct KvStore<E: KvEngine> {
    engine: E,
    /// Serialises read-modify-writes of account-shaped records (see the module docs).
    account_lock: Mutex<()>,
    /// Serialises read-modify-writes of one space's log.
    space_locks: Box<[Mutex<()>]>,
}

impl<E: KvEngine> Debug for KvStore<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvStore")
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

impl<E: KvEngine> KvStore<E> {
    pub fn with_engine(engine: E) -> Self {
        Self {
            engine,
            account_lock: Mutex::new(()),
            space_locks: (0..SPACE_LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
        }
    }

    pub fn engine(&self) -> &E {
        &self.engine
    }

    async fn lock_space(&self, space: &SpaceId) -> MutexGuard<'_, ()> {
        // A fixed-key hasher is enough: space ids are chosen by the server, not by clients.
        let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(keys::space(space));
        let stripe = usize::try_from(hash % self.space_locks.len() as u64).unwrap_or(0);
        self.space_locks[stripe].lock().await
    }

    fn get_json<T: DeserializeOwned>(&self, key: &[u8], what: &str) -> StoreResult<Option<T>> {
        self.engine
            .get(key)?
            .map(|bytes| from_json(&bytes, what))
            .transpose()
    }

    fn is_erased_now(&self, user: &UserId) -> StoreResult<bool> {
        Ok(self.engine.get(&keys::erased(user))?.is_some())
    }

    /// The epoch of a space, or `None` when a private space does not exist.
    fn space_epoch(&self, space: &SpaceId) -> StoreResult<Option<u32>> {
        match space {
            SpaceId::Public => Ok(Some(0)),
            SpaceId::Private(_) => self
                .engine
                .get(&keys::epoch(space))?
                .map(|bytes| be_u32(&bytes, "space epoch"))
                .transpose(),
        }
    }

    fn space_head(&self, space: &SpaceId) -> StoreResult<u64> {
        self.engine
            .get(&keys::head(space))?
            .map_or(Ok(0), |bytes| be_u64(&bytes, "space head"))
    }

    /// Checks the account CAS and stages the new account record (and the username index if the
    /// username key changed). Returns the stored copy, or `None` for a conflict.
    fn stage_account_update(
        &self,
        batch: &mut KvBatch,
        expected_revision: u64,
        mut account: AccountRecord,
    ) -> StoreResult<Option<AccountRecord>> {
        let key = keys::account(&account.user_id);
        let Some(stored) = self.get_json::<AccountRecord>(&key, "account")? else {
            return Ok(None);
        };
        // A space cannot move to another account record; treat it as a lost race, not a write.
        if stored.revision != expected_revision || stored.space_id != account.space_id {
            return Ok(None);
        }
        if stored.username_key != account.username_key {
            let new_index = keys::username(&account.username_key);
            if self.engine.get(&new_index)?.is_some() {
                return Ok(None);
            }
            batch.remove(keys::username(&stored.username_key));
            batch.put(new_index, account.user_id.0.to_vec());
        }
        account.revision = expected_revision.saturating_add(1);
        batch.put(key, to_json(&account)?);
        Ok(Some(account))
    }

    /// Stages a rise of the space epoch to the account's key epoch. Caller holds the space lock.
    fn stage_epoch_rise(&self, batch: &mut KvBatch, account: &AccountRecord) -> StoreResult<()> {
        let space = SpaceId::Private(account.space_id);
        let current = self.space_epoch(&space)?;
        let wanted = account.key_bundle.key_epoch;
        // Epochs only rise: a lower epoch in the bundle leaves the space as it is. A missing
        // space is not created as a side effect.
        if let Some(current) = current
            && wanted > current
        {
            batch.put(keys::epoch(&space), wanted.to_be_bytes().to_vec());
        }
        Ok(())
    }

    /// Loads the sessions of a user, by its index.
    fn sessions_of(&self, user: &UserId) -> StoreResult<Vec<SessionRecord>> {
        let mut sessions = Vec::new();
        for key in self.engine.scan_prefix_keys(&keys::user_sessions(user))? {
            let id = key_suffix::<16>(&key, "session index")?;
            // An index entry without its session, or left behind by a session id reused for
            // another user, is ignored: only this user's sessions are ever returned.
            let session: Option<SessionRecord> =
                self.get_json(&keys::session(&HexId(id)), "session")?;
            if let Some(session) = session.filter(|session| session.user_id == *user) {
                sessions.push(session);
            }
        }
        Ok(sessions)
    }
}

#[async_trait]
impl<E: KvEngine> Store for KvStore<E> {
    async fn ping(&self) -> StoreResult<()> {
        self.engine.get(keys::PING).map(drop)
    }

    fn durability(&self) -> Durability {
        self.engine.durability()
    }

    async fn flush(&self) -> StoreResult<()> {
        self.engine.flush().await
    }

    async fn secret_or_init(
        &self,
        name: &str,
        candidate: Zeroizing<Vec<u8>>,
    ) -> StoreResult<Zeroizing<Vec<u8>>> {
        let _guard = self.account_lock.lock().await;
        let key = keys::secret(name);
        if let Some(stored) = self.engine.get(&key)? {
            return Ok(Zeroizing::new(stored));
        }
        let mut batch = KvBatch::new();
        batch.put(key, candidate.to_vec());
        self.engine.apply(batch)?;
        Ok(candidate)
    }

    async fn jwt_keys(&self) -> StoreResult<Vec<JwtKeyRecord>> {
        self.engine
            .scan_prefix(keys::JWT)?
            .into_iter()
            .map(|(_, value)| from_json(&Zeroizing::new(value), "jwt key"))
            .collect()
    }

    async fn put_jwt_key(&self, key: JwtKeyRecord) -> StoreResult<()> {
        let _guard = self.account_lock.lock().await;
        let mut batch = KvBatch::new();
        if key.state == JwtKeyState::Active {
            for (stored_key, value) in self.engine.scan_prefix(keys::JWT)? {
                let mut other: JwtKeyRecord = from_json(&Zeroizing::new(value), "jwt key")?;
                if other.kid != key.kid && other.state == JwtKeyState::Active {
                    other.state = JwtKeyState::VerifyOnly;
                    batch.put(stored_key, to_json(&other)?);
                }
            }
        }
        batch.put(keys::jwt(&key.kid), to_json(&key)?);
        self.engine.apply(batch)
    }

    async fn create_account(
        &self,
        account: AccountRecord,
        first_device: DeviceRecord,
        storage_key: WrappedKey,
    ) -> StoreResult<Cas<()>> {
        let _guard = self.account_lock.lock().await;
        let user = account.user_id;
        let space = SpaceId::Private(account.space_id);
        // Ids are random, so the last three only trip on a bug; refusing beats overwriting.
        if self
            .engine
            .get(&keys::username(&account.username_key))?
            .is_some()
            || self.engine.get(&keys::account(&user))?.is_some()
            || self.is_erased_now(&user)?
            || self.engine.get(&keys::epoch(&space))?.is_some()
        {
            return Ok(Cas::Conflict);
        }
        let mut batch = KvBatch::new();
        batch.put(keys::username(&account.username_key), user.0.to_vec());
        batch.put(
            keys::device(&first_device.user_id, &first_device.device_id),
            to_json(&first_device)?,
        );
        batch.put(
            keys::storage_key(&space),
            StoredKey::Wrapped(storage_key).encode().to_vec(),
        );
        batch.put(keys::head(&space), 0u64.to_be_bytes().to_vec());
        batch.put(
            keys::epoch(&space),
            account.key_bundle.key_epoch.to_be_bytes().to_vec(),
        );
        batch.put(keys::account(&user), to_json(&account)?);
        self.engine.apply(batch)?;
        Ok(Cas::Done(()))
    }

    async fn account_by_username(
        &self,
        username_key: &[u8; 32],
    ) -> StoreResult<Option<AccountRecord>> {
        let Some(user) = self.engine.get(&keys::username(username_key))? else {
            return Ok(None);
        };
        let user: [u8; 16] = user
            .try_into()
            .map_err(|_| StoreError::Corrupt("username index: not a user id".into()))?;
        // Unlocked read: an erasure between the two gets makes this `None`, which is the truth.
        self.get_json(&keys::account(&HexId(user)), "account")
    }

    async fn account(&self, user: &UserId) -> StoreResult<Option<AccountRecord>> {
        self.get_json(&keys::account(user), "account")
    }

    async fn update_account(
        &self,
        expected_revision: u64,
        account: AccountRecord,
    ) -> StoreResult<Cas<AccountRecord>> {
        let _guard = self.account_lock.lock().await;
        let space = SpaceId::Private(account.space_id);
        let _space_guard = self.lock_space(&space).await;
        let mut batch = KvBatch::new();
        let Some(stored) = self.stage_account_update(&mut batch, expected_revision, account)?
        else {
            return Ok(Cas::Conflict);
        };
        self.stage_epoch_rise(&mut batch, &stored)?;
        self.engine.apply(batch)?;
        Ok(Cas::Done(stored))
    }

    async fn revoke_device(
        &self,
        expected_revision: u64,
        account: AccountRecord,
        device: &DeviceId,
    ) -> StoreResult<Cas<Vec<HexId>>> {
        let _guard = self.account_lock.lock().await;
        let space = SpaceId::Private(account.space_id);
        let _space_guard = self.lock_space(&space).await;
        let mut batch = KvBatch::new();
        let Some(stored) = self.stage_account_update(&mut batch, expected_revision, account)?
        else {
            return Ok(Cas::Conflict);
        };
        self.stage_epoch_rise(&mut batch, &stored)?;
        let user = stored.user_id;
        let device_key = keys::device(&user, device);
        if let Some(mut record) = self.get_json::<DeviceRecord>(&device_key, "device")? {
            record.revoked = true;
            batch.put(device_key, to_json(&record)?);
        }
        let mut revoked = Vec::new();
        for mut session in self.sessions_of(&user)? {
            if session.device_id == *device && !session.revoked {
                session.revoked = true;
                batch.put(keys::session(&session.session_id), to_json(&session)?);
                revoked.push(session.session_id);
            }
        }
        self.engine.apply(batch)?;
        Ok(Cas::Done(revoked))
    }

    async fn erase_account(&self, user: &UserId, wipe_token: Option<[u8; 32]>) -> StoreResult<()> {
        let _guard = self.account_lock.lock().await;
        let account = self.get_json::<AccountRecord>(&keys::account(user), "account")?;
        let space = account
            .as_ref()
            .map(|account| SpaceId::Private(account.space_id));
        // Held until the batch is applied, so no append can write into the log being deleted
        // (later appends find the space gone and are refused).
        let _space_guard = match &space {
            Some(space) => Some(self.lock_space(space).await),
            None => None,
        };
        let mut batch = KvBatch::new();
        if let Some(account) = &account {
            batch.remove(keys::account(user));
            // Only drop the index if it still names this account.
            let index = keys::username(&account.username_key);
            if self.engine.get(&index)?.as_deref() == Some(&user.0[..]) {
                batch.remove(index);
            }
        }
        if let Some(space) = &space {
            for key in self.engine.scan_prefix_keys(&keys::log(space))? {
                batch.remove(key);
            }
            batch.remove(keys::storage_key(space));
        }
        for key in self.engine.scan_prefix_keys(&keys::devices(user))? {
            batch.remove(key);
        }
        for key in self.engine.scan_prefix_keys(&keys::user_sessions(user))? {
            let id = key_suffix::<16>(&key, "session index")?;
            batch.remove(keys::session(&HexId(id)));
            batch.remove(key);
        }
        // Reset and enrolment tokens of the account would outlive it otherwise.
        for (key, value) in self.engine.scan_prefix(keys::TOKENS)? {
            match from_json::<OneTimeToken>(&value, "one-time token") {
                Ok(token) if token.user_id == *user => batch.remove(key),
                Ok(_) => {}
                // Unreadable records of others must not block an erasure.
                Err(error) => tracing::warn!(%error, "skipping a corrupt token during erasure"),
            }
        }
        // A retried erasure keeps the first marker (and its token).
        if !self.is_erased_now(user)? {
            let mut marker = ERASED_MARKER.to_vec();
            marker.extend_from_slice(wipe_token.as_ref().map_or(&[][..], |token| &token[..]));
            batch.put(keys::erased(user), marker);
        }
        self.engine.apply(batch)
    }

    async fn is_erased(&self, user: &UserId) -> StoreResult<bool> {
        self.is_erased_now(user)
    }

    async fn erased_wipe_token(&self, user: &UserId) -> StoreResult<Option<[u8; 32]>> {
        let Some(marker) = self.engine.get(&keys::erased(user))? else {
            return Ok(None);
        };
        match marker.strip_prefix(ERASED_MARKER) {
            Some([]) => Ok(None),
            Some(token) => <[u8; 32]>::try_from(token)
                .map(Some)
                .map_err(|_| StoreError::Corrupt("erasure marker".into())),
            None => Err(StoreError::Corrupt("erasure marker".into())),
        }
    }

    async fn devices(&self, user: &UserId) -> StoreResult<Vec<DeviceRecord>> {
        self.engine
            .scan_prefix(&keys::devices(user))?
            .into_iter()
            .map(|(_, value)| from_json(&value, "device"))
            .collect()
    }

    async fn device(&self, user: &UserId, device: &DeviceId) -> StoreResult<Option<DeviceRecord>> {
        self.get_json(&keys::device(user, device), "device")
    }

    async fn put_device(&self, mut device: DeviceRecord) -> StoreResult<()> {
        let _guard = self.account_lock.lock().await;
        refuse_if_erased(self.is_erased_now(&device.user_id)?)?;
        let key = keys::device(&device.user_id, &device.device_id);
        let stored: Option<DeviceRecord> = self.get_json(&key, "device")?;
        // Revocation is final: an update racing a revocation must not undo it.
        device.revoked |= stored.is_some_and(|stored| stored.revoked);
        let mut batch = KvBatch::new();
        batch.put(key, to_json(&device)?);
        self.engine.apply(batch)
    }

    async fn create_session(&self, session: SessionRecord) -> StoreResult<()> {
        let _guard = self.account_lock.lock().await;
        refuse_if_erased(self.is_erased_now(&session.user_id)?)?;
        let mut batch = KvBatch::new();
        batch.put(
            keys::user_session(&session.user_id, &session.session_id),
            Vec::new(),
        );
        batch.put(keys::session(&session.session_id), to_json(&session)?);
        self.engine.apply(batch)
    }

    async fn session(&self, id: &HexId) -> StoreResult<Option<SessionRecord>> {
        self.get_json(&keys::session(id), "session")
    }

    async fn update_session(
        &self,
        expected_generation: u64,
        session: SessionRecord,
    ) -> StoreResult<Cas<()>> {
        let _guard = self.account_lock.lock().await;
        let key = keys::session(&session.session_id);
        let Some(stored) = self.get_json::<SessionRecord>(&key, "session")? else {
            return Ok(Cas::Conflict);
        };
        // A session never changes owner: the index under `su/` is keyed by the stored user.
        if stored.generation != expected_generation
            || stored.revoked
            || stored.user_id != session.user_id
        {
            return Ok(Cas::Conflict);
        }
        let mut batch = KvBatch::new();
        batch.put(key, to_json(&session)?);
        self.engine.apply(batch)?;
        Ok(Cas::Done(()))
    }

    async fn revoke_session(&self, id: &HexId) -> StoreResult<()> {
        let _guard = self.account_lock.lock().await;
        let key = keys::session(id);
        let Some(mut session) = self.get_json::<SessionRecord>(&key, "session")? else {
            return Ok(());
        };
        if session.revoked {
            return Ok(());
        }
        session.revoked = true;
        let mut batch = KvBatch::new();
        batch.put(key, to_json(&session)?);
        self.engine.apply(batch)
    }

    /// Returns the sessions this call revoked; ones revoked earlier are not repeated.
    async fn revoke_sessions_of_user(
        &self,
        user: &UserId,
        keep: Option<&HexId>,
    ) -> StoreResult<Vec<HexId>> {
        let _guard = self.account_lock.lock().await;
        let mut batch = KvBatch::new();
        let mut revoked = Vec::new();
        for mut session in self.sessions_of(user)? {
            if session.revoked || Some(&session.session_id) == keep {
                continue;
            }
            session.revoked = true;
            batch.put(keys::session(&session.session_id), to_json(&session)?);
            revoked.push(session.session_id);
        }
        if !batch.is_empty() {
            self.engine.apply(batch)?;
        }
        Ok(revoked)
    }

    async fn put_token(&self, hash: &[u8; 32], token: OneTimeToken) -> StoreResult<()> {
        let _guard = self.account_lock.lock().await;
        let mut batch = KvBatch::new();
        batch.put(keys::token(hash), to_json(&token)?);
        self.engine.apply(batch)
    }

    async fn take_token(&self, hash: &[u8; 32]) -> StoreResult<Option<OneTimeToken>> {
        let _guard = self.account_lock.lock().await;
        let key = keys::token(hash);
        let Some(token) = self.get_json::<OneTimeToken>(&key, "one-time token")? else {
            return Ok(None);
        };
        let mut batch = KvBatch::new();
        batch.remove(key);
        self.engine.apply(batch)?;
        Ok(Some(token))
    }

    async fn create_link(&self, link: LinkRecord) -> StoreResult<()> {
        let _guard = self.account_lock.lock().await;
        let mut batch = KvBatch::new();
        batch.put(keys::link(&link.id), to_json(&link)?);
        self.engine.apply(batch)
    }

    async fn put_link_payload(&self, id: &HexId, payload: Vec<u8>) -> StoreResult<Cas<()>> {
        let _guard = self.account_lock.lock().await;
        let key = keys::link(id);
        let Some(mut link) = self.get_json::<LinkRecord>(&key, "link")? else {
            return Ok(Cas::Conflict);
        };
        if link.payload.is_some() {
            return Ok(Cas::Conflict);
        }
        link.payload = Some(payload);
        let mut batch = KvBatch::new();
        batch.put(key, to_json(&link)?);
        self.engine.apply(batch)?;
        Ok(Cas::Done(()))
    }

    async fn take_link(&self, id: &HexId) -> StoreResult<Option<LinkRecord>> {
        let _guard = self.account_lock.lock().await;
        let key = keys::link(id);
        let Some(link) = self.get_json::<LinkRecord>(&key, "link")? else {
            return Ok(None);
        };
        if link.payload.is_none() {
            return Ok(None);
        }
        let mut batch = KvBatch::new();
        batch.remove(key);
        self.engine.apply(batch)?;
        Ok(Some(link))
    }

    /// A record is expired once `expires_at <= now`. Rate windows that have ended are dropped in
    /// the same sweep (they would otherwise pile up, one per address ever seen) but not counted:
    /// the count is of mailboxes and tokens, as the contract says.
    async fn purge_expired(&self, now: u64) -> StoreResult<usize> {
        let _guard = self.account_lock.lock().await;
        let mut batch = KvBatch::new();
        let mut purged = 0usize;
        for (key, value) in self.engine.scan_prefix(keys::LINKS)? {
            match from_json::<LinkRecord>(&value, "link") {
                Ok(link) if link.expires_at <= now => {
                    batch.remove(key);
                    purged += 1;
                }
                Ok(_) => {}
                // Never delete what cannot be read: leave it for an operator to look at.
                Err(error) => tracing::warn!(%error, "skipping a corrupt link during purge"),
            }
        }
        for (key, value) in self.engine.scan_prefix(keys::TOKENS)? {
            match from_json::<OneTimeToken>(&value, "one-time token") {
                Ok(token) if token.expires_at <= now => {
                    batch.remove(key);
                    purged += 1;
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "skipping a corrupt token during purge"),
            }
        }
        for (key, value) in self.engine.scan_prefix(keys::RATE)? {
            match from_json::<RateWindow>(&value, "rate window") {
                Ok(window) if window.resets_at() <= now => batch.remove(key),
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "skipping a corrupt rate window"),
            }
        }
        if !batch.is_empty() {
            self.engine.apply(batch)?;
        }
        Ok(purged)
    }

    async fn rate_limit_hit(
        &self,
        key: &[u8],
        now: u64,
        window_secs: u64,
        max_events: u32,
    ) -> StoreResult<RateDecision> {
        let _guard = self.account_lock.lock().await;
        let window_secs = window_secs.max(1);
        let window_start = now - now % window_secs;
        let record_key = keys::rate(key);
        let stored = self.get_json::<RateWindow>(&record_key, "rate window")?;
        let count = match stored {
            Some(window) if window.start == window_start && window.secs == window_secs => {
                window.count
            }
            _ => 0,
        };
        let window = RateWindow {
            start: window_start,
            secs: window_secs,
            count: count.saturating_add(1),
        };
        if window.count > max_events {
            // Refused events are not counted: the window's end is what matters, not the total.
            return Ok(RateDecision::Limited {
                retry_after: window.resets_at().saturating_sub(now).max(1),
            });
        }
        let mut batch = KvBatch::new();
        batch.put(record_key, to_json(&window)?);
        self.engine.apply(batch)?;
        Ok(RateDecision::Allowed)
    }

    async fn space_exists(&self, space: &SpaceId) -> StoreResult<bool> {
        Ok(self.space_epoch(space)?.is_some())
    }

    async fn storage_key(&self, space: &SpaceId) -> StoreResult<Option<StoredKey>> {
        if space.is_public() {
            return Ok(None);
        }
        self.engine
            .get(&keys::storage_key(space))?
            .map(|bytes| StoredKey::decode(&Zeroizing::new(bytes)))
            .transpose()
    }

    async fn storage_keys(
        &self,
        after: Option<&SpaceId>,
        limit: usize,
    ) -> StoreResult<Vec<(SpaceId, StoredKey)>> {
        // Keys sort by space tag then id bytes, which is the order of the spaces' hex names.
        let start = match after {
            Some(space) => [keys::storage_key(space).as_slice(), &[0]].concat(),
            None => keys::STORAGE_KEYS.to_vec(),
        };
        self.engine
            .scan_from(keys::STORAGE_KEYS, &start, limit)?
            .into_iter()
            .map(|(key, value)| {
                let space = keys::space_from_storage_key(&key)?;
                Ok((space, StoredKey::decode(&Zeroizing::new(value))?))
            })
            .collect()
    }

    async fn replace_storage_key(
        &self,
        space: &SpaceId,
        expected: &StoredKey,
        new: WrappedKey,
    ) -> StoreResult<Cas<()>> {
        // The space lock orders this against an erasure, which deletes the key under it.
        let _space_guard = self.lock_space(space).await;
        let key = keys::storage_key(space);
        let Some(stored) = self.engine.get(&key)? else {
            return Ok(Cas::Conflict);
        };
        if StoredKey::decode(&Zeroizing::new(stored))? != *expected {
            return Ok(Cas::Conflict);
        }
        let mut batch = KvBatch::new();
        batch.put(key, StoredKey::Wrapped(new).encode().to_vec());
        self.engine.apply(batch)?;
        Ok(Cas::Done(()))
    }

    async fn append(
        &self,
        space: &SpaceId,
        items: Vec<AppendItem>,
    ) -> StoreResult<Vec<AppendOutcome>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let _space_guard = self.lock_space(space).await;
        let Some(epoch) = self.space_epoch(space)? else {
            // The caller checked the space exists, but an erasure can win the race in between;
            // refusing (nothing is written or acknowledged) keeps an erased log from coming back.
            return Err(StoreError::Engine(format!(
                "append to space {space} which does not exist (erased?)"
            )));
        };
        let mut log = PendingAppend {
            engine: &self.engine,
            space: *space,
            head: self.space_head(space)?,
            epoch,
            new_ids: HashMap::new(),
            docs: HashMap::new(),
            batch: KvBatch::new(),
        };
        let start_head = log.head;
        let mut outcomes = Vec::with_capacity(items.len());
        for item in items {
            outcomes.push(log.decide(item)?);
        }
        if log.head != start_head {
            let mut batch = log.batch;
            batch.put(keys::head(space), log.head.to_be_bytes().to_vec());
            self.engine.apply(batch)?;
        }
        Ok(outcomes)
    }

    async fn read(
        &self,
        space: &SpaceId,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> StoreResult<Vec<(u64, Envelope)>> {
        let Some(first) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        if first > upto || limit == 0 {
            return Ok(Vec::new());
        }
        let prefix = keys::envelopes(space);
        let start = keys::envelope(space, first);
        let mut out = Vec::new();
        for (key, value) in self.engine.scan_from(&prefix, &start, limit)? {
            let seq = u64::from_be_bytes(key_suffix::<8>(&key, "envelope key")?);
            if seq > upto {
                break;
            }
            let envelope = Envelope::decode(&value).map_err(|error| {
                StoreError::Corrupt(format!("envelope at seq {seq} of {space}: {error}"))
            })?;
            out.push((seq, envelope));
        }
        Ok(out)
    }

    async fn seq_of(&self, space: &SpaceId, id: &EnvelopeId) -> StoreResult<Option<u64>> {
        self.engine
            .get(&keys::id(space, id))?
            .map(|bytes| decode_id_entry(&bytes).map(|entry| entry.seq))
            .transpose()
    }

    async fn head(&self, space: &SpaceId) -> StoreResult<u64> {
        self.space_head(space)
    }

    async fn epoch(&self, space: &SpaceId) -> StoreResult<u32> {
        Ok(self.space_epoch(space)?.unwrap_or(0))
    }

    async fn live_ids(&self, space: &SpaceId, doc: &DocId) -> StoreResult<Vec<(u64, EnvelopeId)>> {
        Ok(load_live(&self.engine, space, doc)?.into_iter().collect())
    }
}

/// A private write (device, session) for an account that was erased in the meantime: refused,
/// so no record about the account reappears after erasure.
fn refuse_if_erased(erased: bool) -> StoreResult<()> {
    if erased {
        Err(StoreError::Engine("the account was erased".into()))
    } else {
        Ok(())
    }
}

/// A fixed rate-limit window and its count.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct RateWindow {
    start: u64,
    secs: u64,
    count: u32,
}

impl RateWindow {
    fn resets_at(&self) -> u64 {
        self.start.saturating_add(self.secs)
    }
}

/// What the log knows about an id: where it was stored and the digest that decides "same bytes".
#[derive(Debug, Clone, Copy)]
struct IdEntry {
    seq: u64,
    digest: [u8; 32],
}

fn encode_id_entry(entry: IdEntry) -> Vec<u8> {
    let mut out = Vec::with_capacity(40);
    out.extend_from_slice(&entry.seq.to_be_bytes());
    out.extend_from_slice(&entry.digest);
    out
}

fn decode_id_entry(bytes: &[u8]) -> StoreResult<IdEntry> {
    let corrupt = || StoreError::Corrupt("id entry: not seq ‖ digest".into());
    let (seq, digest) = bytes.split_first_chunk::<8>().ok_or_else(corrupt)?;
    let digest: [u8; 32] = digest.try_into().map_err(|_| corrupt())?;
    Ok(IdEntry {
        seq: u64::from_be_bytes(*seq),
        digest,
    })
}

/// The log state of one document, as far as an append needs it.
#[derive(Debug, Default)]
struct DocState {
    tombstone: Option<u64>,
    /// Live envelopes: seq → id.
    live: BTreeMap<u64, EnvelopeId>,
}

fn load_live(
    engine: &impl KvEngine,
    space: &SpaceId,
    doc: &DocId,
) -> StoreResult<BTreeMap<u64, EnvelopeId>> {
    let mut live = BTreeMap::new();
    for (key, value) in engine.scan_prefix(&keys::live_doc(space, doc))? {
        let seq = u64::from_be_bytes(key_suffix::<8>(&key, "live index key")?);
        let id: [u8; 32] = value
            .try_into()
            .map_err(|_| StoreError::Corrupt("live index: not an envelope id".into()))?;
        live.insert(seq, id.into());
    }
    Ok(live)
}

/// An append being decided: the state read from the engine plus an overlay of this batch's own
/// effects, so each item sees the items before it, and the writes that will apply at once.
struct PendingAppend<'a, E: KvEngine> {
    engine: &'a E,
    space: SpaceId,
    head: u64,
    epoch: u32,
    /// Ids stored earlier in this batch.
    new_ids: HashMap<EnvelopeId, IdEntry>,
    /// Documents touched by this batch, loaded on first touch and kept current.
    docs: HashMap<DocId, DocState>,
    batch: KvBatch,
}

impl<E: KvEngine> PendingAppend<'_, E> {
    fn lookup_id(&self, id: &EnvelopeId) -> StoreResult<Option<IdEntry>> {
        if let Some(entry) = self.new_ids.get(id) {
            return Ok(Some(*entry));
        }
        self.engine
            .get(&keys::id(&self.space, id))?
            .map(|bytes| decode_id_entry(&bytes))
            .transpose()
    }

    /// Applies the rules of [`Store::append`] to one item, in the contract's order.
    fn decide(&mut self, item: AppendItem) -> StoreResult<AppendOutcome> {
        let AppendItem { envelope, digest } = item;
        if let Some(entry) = self.lookup_id(&envelope.id)? {
            return Ok(if entry.digest == digest {
                AppendOutcome::Duplicate { seq: entry.seq }
            } else {
                AppendOutcome::IdConflict
            });
        }
        let doc = match self.docs.entry(envelope.doc) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                let tombstone = self
                    .engine
                    .get(&keys::doc_state(&self.space, &envelope.doc))?
                    .map(|bytes| be_u64(&bytes, "doc tombstone"))
                    .transpose()?;
                let live = load_live(self.engine, &self.space, &envelope.doc)?;
                entry.insert(DocState { tombstone, live })
            }
        };
        if doc.tombstone.is_some() {
            return Ok(AppendOutcome::DocDeleted);
        }
        if envelope.key_epoch < self.epoch {
            return Ok(AppendOutcome::EpochStale {
                current: self.epoch,
            });
        }
        if envelope.key_epoch > self.epoch {
            return Ok(AppendOutcome::EpochAhead {
                current: self.epoch,
            });
        }
        let seq = self
            .head
            .checked_add(1)
            .ok_or_else(|| StoreError::Engine(format!("the log of {} is full", self.space)))?;
        match envelope.kind {
            Kind::Change => {}
            Kind::Snapshot => {
                // Validation guarantees both fields; absent ones would cover nothing.
                let upto = envelope.upto_seq.unwrap_or(0);
                if upto > self.head {
                    return Ok(AppendOutcome::SnapshotAhead { head: self.head });
                }
                let covers: HashSet<&EnvelopeId> = envelope.covers.iter().flatten().collect();
                let missing: Vec<EnvelopeId> = doc
                    .live
                    .range(..=upto)
                    .filter(|(_, id)| !covers.contains(id))
                    .map(|(_, id)| *id)
                    .collect();
                if !missing.is_empty() {
                    return Ok(AppendOutcome::SnapshotStale { missing });
                }
                // Every live envelope up to `upto` is covered: prune them all; ids stay.
                let pruned: Vec<u64> = doc.live.range(..=upto).map(|(seq, _)| *seq).collect();
                for old in pruned {
                    doc.live.remove(&old);
                    self.batch.remove(keys::envelope(&self.space, old));
                    self.batch
                        .remove(keys::live(&self.space, &envelope.doc, old));
                }
            }
            Kind::Tombstone => {
                for (old, _) in std::mem::take(&mut doc.live) {
                    self.batch.remove(keys::envelope(&self.space, old));
                    self.batch
                        .remove(keys::live(&self.space, &envelope.doc, old));
                }
                doc.tombstone = Some(seq);
                self.batch.put(
                    keys::doc_state(&self.space, &envelope.doc),
                    seq.to_be_bytes().to_vec(),
                );
            }
        }
        let entry = IdEntry { seq, digest };
        doc.live.insert(seq, envelope.id);
        self.batch
            .put(keys::envelope(&self.space, seq), envelope.encode());
        self.batch
            .put(keys::id(&self.space, &envelope.id), encode_id_entry(entry));
        self.batch.put(
            keys::live(&self.space, &envelope.doc, seq),
            envelope.id.0.to_vec(),
        );
        self.new_ids.insert(envelope.id, entry);
        self.head = seq;
        Ok(AppendOutcome::Stored { seq })
    }
}

fn to_json<T: Serialize>(value: &T) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(value)
        .map_err(|error| StoreError::Engine(format!("encoding a record: {error}")))
}

fn from_json<T: DeserializeOwned>(bytes: &[u8], what: &str) -> StoreResult<T> {
    serde_json::from_slice(bytes).map_err(|error| StoreError::Corrupt(format!("{what}: {error}")))
}

fn be_u64(bytes: &[u8], what: &str) -> StoreResult<u64> {
    let array: [u8; 8] = bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("{what}: not a u64")))?;
    Ok(u64::from_be_bytes(array))
}

fn be_u32(bytes: &[u8], what: &str) -> StoreResult<u32> {
    let array: [u8; 4] = bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("{what}: not a u32")))?;
    Ok(u32::from_be_bytes(array))
}

/// The last `N` bytes of a key (the binary id or seq that ends it).
fn key_suffix<const N: usize>(key: &[u8], what: &str) -> StoreResult<[u8; N]> {
    key.split_last_chunk::<N>()
        .map(|(_, tail)| *tail)
        .ok_or_else(|| StoreError::Corrupt(format!("{what}: key too short")))
}

/// Builders of the keys in the layout table of the module docs.
pub(crate) mod keys {
    use super::{DeviceId, DocId, EnvelopeId, HexId, SpaceId, StoreError, StoreResult, UserId};

    pub(crate) const PING: &[u8] = b"m/ping";
    pub(crate) const JWT: &[u8] = b"m/jwt/";
    pub(crate) const TOKENS: &[u8] = b"t/";
    pub(crate) const LINKS: &[u8] = b"x/link/";
    pub(crate) const RATE: &[u8] = b"x/rl/";
    pub(crate) const STORAGE_KEYS: &[u8] = b"k/";

    fn join(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    /// Tag byte (0 = public, 1 = private) ‖ 16 bytes.
    pub(crate) fn space(space: &SpaceId) -> [u8; 17] {
        let mut out = [0u8; 17];
        if let SpaceId::Private(id) = space {
            out[0] = 1;
            out[1..].copy_from_slice(&id.0);
        }
        out
    }

    pub(crate) fn secret(name: &str) -> Vec<u8> {
        join(&[b"m/secret/", name.as_bytes()])
    }

    pub(crate) fn jwt(kid: &str) -> Vec<u8> {
        join(&[JWT, kid.as_bytes()])
    }

    pub(crate) fn account(user: &UserId) -> Vec<u8> {
        join(&[b"a/u/", &user.0])
    }

    pub(crate) fn username(username_key: &[u8; 32]) -> Vec<u8> {
        join(&[b"a/n/", username_key])
    }

    pub(crate) fn erased(user: &UserId) -> Vec<u8> {
        join(&[b"a/x/", &user.0])
    }

    pub(crate) fn devices(user: &UserId) -> Vec<u8> {
        join(&[b"d/", &user.0, b"/"])
    }

    pub(crate) fn device(user: &UserId, device: &DeviceId) -> Vec<u8> {
        join(&[&devices(user), &device.0])
    }

    pub(crate) fn session(id: &HexId) -> Vec<u8> {
        join(&[b"s/", &id.0])
    }

    pub(crate) fn user_sessions(user: &UserId) -> Vec<u8> {
        join(&[b"su/", &user.0, b"/"])
    }

    pub(crate) fn user_session(user: &UserId, id: &HexId) -> Vec<u8> {
        join(&[&user_sessions(user), &id.0])
    }

    pub(crate) fn token(hash: &[u8; 32]) -> Vec<u8> {
        join(&[TOKENS, hash])
    }

    pub(crate) fn link(id: &HexId) -> Vec<u8> {
        join(&[LINKS, &id.0])
    }

    pub(crate) fn rate(key: &[u8]) -> Vec<u8> {
        join(&[RATE, key])
    }

    pub(crate) fn storage_key(space_id: &SpaceId) -> Vec<u8> {
        join(&[STORAGE_KEYS, &space(space_id)])
    }

    /// The space a `k/S` key names (only private spaces have storage keys).
    pub(crate) fn space_from_storage_key(key: &[u8]) -> StoreResult<SpaceId> {
        let corrupt = || StoreError::Corrupt("storage key record: not k/ ‖ private space".into());
        let tail = key.strip_prefix(STORAGE_KEYS).ok_or_else(corrupt)?;
        match tail.split_first() {
            Some((1, id)) => Ok(SpaceId::Private(HexId(
                id.try_into().map_err(|_| corrupt())?,
            ))),
            _ => Err(corrupt()),
        }
    }

    /// `l/S/`: every record of a space's log.
    pub(crate) fn log(space_id: &SpaceId) -> Vec<u8> {
        join(&[b"l/", &space(space_id), b"/"])
    }

    fn log_part(space_id: &SpaceId, part: &[u8]) -> Vec<u8> {
        join(&[&log(space_id), part])
    }

    pub(crate) fn head(space_id: &SpaceId) -> Vec<u8> {
        log_part(space_id, b"h")
    }

    pub(crate) fn epoch(space_id: &SpaceId) -> Vec<u8> {
        log_part(space_id, b"p")
    }

    pub(crate) fn envelopes(space_id: &SpaceId) -> Vec<u8> {
        log_part(space_id, b"e/")
    }

    pub(crate) fn envelope(space_id: &SpaceId, seq: u64) -> Vec<u8> {
        join(&[&envelopes(space_id), &seq.to_be_bytes()])
    }

    pub(crate) fn id(space_id: &SpaceId, id: &EnvelopeId) -> Vec<u8> {
        join(&[&log_part(space_id, b"i/"), &id.0])
    }

    pub(crate) fn doc_state(space_id: &SpaceId, doc: &DocId) -> Vec<u8> {
        join(&[&log_part(space_id, b"d/"), &doc.0])
    }

    pub(crate) fn live_doc(space_id: &SpaceId, doc: &DocId) -> Vec<u8> {
        join(&[&log_part(space_id, b"v/"), &doc.0, b"/"])
    }

    pub(crate) fn live(space_id: &SpaceId, doc: &DocId, seq: u64) -> Vec<u8> {
        join(&[&live_doc(space_id, doc), &seq.to_be_bytes()])
    }

    /// The kind of record `key` is, as the layout table names it (`l/S/e/` for every space's
    /// envelopes), or `other`; for reports of what a store's bytes are.
    pub(crate) fn record_kind(key: &[u8]) -> &'static str {
        const ACCOUNT_SHAPED: [&str; 13] = [
            "m/secret/",
            "m/jwt/",
            "m/ping",
            "a/u/",
            "a/n/",
            "a/x/",
            "d/",
            "su/",
            "s/",
            "t/",
            "k/",
            "x/link/",
            "x/rl/",
        ];
        const LOG_PARTS: [(&str, &str); 6] = [
            ("h", "l/S/h"),
            ("p", "l/S/p"),
            ("e/", "l/S/e/"),
            ("i/", "l/S/i/"),
            ("d/", "l/S/d/"),
            ("v/", "l/S/v/"),
        ];
        // `l/` ‖ space (17 bytes) ‖ `/` ‖ part.
        if let Some(part) = key.strip_prefix(b"l/").and_then(|rest| rest.get(18..)) {
            return LOG_PARTS
                .iter()
                .find(|(prefix, _)| part.starts_with(prefix.as_bytes()))
                .map_or("other", |(_, kind)| kind);
        }
        ACCOUNT_SHAPED
            .into_iter()
            .find(|prefix| key.starts_with(prefix.as_bytes()))
            .unwrap_or("other")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_keeps_the_last_write_per_key() {
        let mut batch = KvBatch::new();
        batch.put(b"a".to_vec(), b"1".to_vec());
        batch.remove(b"a".to_vec());
        batch.put(b"b".to_vec(), b"2".to_vec());
        let writes: Vec<_> = batch.into_writes().collect();
        assert_eq!(
            writes,
            vec![(b"a".to_vec(), None), (b"b".to_vec(), Some(b"2".to_vec()))]
        );
    }

    #[test]
    fn space_keys_do_not_collide_and_sort_by_seq() {
        let public = SpaceId::Public;
        let private = SpaceId::Private(HexId([0; 16]));
        assert_ne!(keys::log(&public), keys::log(&private));
        let doc = DocId::from([7; 16]);
        assert!(keys::envelope(&private, 255) < keys::envelope(&private, 256));
        assert!(keys::live(&private, &doc, 1).starts_with(&keys::log(&private)));
        assert!(keys::storage_key(&private) != keys::storage_key(&public));
        // `s/` (sessions) and `su/` (their index) must not be prefixes of each other.
        let id = HexId([b'/'; 16]);
        assert!(!keys::user_sessions(&id).starts_with(b"s/"));
    }

    #[test]
    fn record_kinds_name_the_layout_rows() {
        let space = SpaceId::Private(HexId([b'/'; 16]));
        let doc = DocId::from([b'i'; 16]);
        let user = HexId([b'/'; 16]);
        let kinds = [
            (keys::envelope(&space, 7), "l/S/e/"),
            (keys::id(&space, &EnvelopeId::from([b'e'; 32])), "l/S/i/"),
            (keys::live(&space, &doc, 7), "l/S/v/"),
            (keys::doc_state(&space, &doc), "l/S/d/"),
            (keys::head(&SpaceId::Public), "l/S/h"),
            (keys::epoch(&space), "l/S/p"),
            (keys::storage_key(&space), "k/"),
            (keys::account(&user), "a/u/"),
            (keys::erased(&user), "a/x/"),
            (keys::device(&user, &DeviceId::from([0; 16])), "d/"),
            (keys::user_session(&user, &user), "su/"),
            (keys::session(&user), "s/"),
            (keys::secret("jwt"), "m/secret/"),
            (b"env/1".to_vec(), "other"),
        ];
        for (key, kind) in kinds {
            assert_eq!(keys::record_kind(&key), kind, "{key:?}");
        }
    }

    #[test]
    fn id_entries_round_trip_and_refuse_garbage() {
        let entry = IdEntry {
            seq: 42,
            digest: [9; 32],
        };
        let decoded = decode_id_entry(&encode_id_entry(entry)).unwrap();
        assert_eq!((decoded.seq, decoded.digest), (42, [9; 32]));
        assert!(matches!(
            decode_id_entry(&[1, 2, 3]),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            decode_id_entry(&[0; 41]),
            Err(StoreError::Corrupt(_))
        ));
    }
}
