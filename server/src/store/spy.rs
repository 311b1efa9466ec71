//! TEST ONLY: a real store (memory by default, or any other) behind a thin spy that counts what
//! tests assert on (session writes, key-set loads, flushes), can slow flushes down (to make group
//! commit visible) and can make the next session update lose its compare-and-swap (as if another
//! instance won). Every operation is the real store's.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use haven_protocol::api::{KdfParams, KeyBundle};
use haven_protocol::{Blob, Bytes, DeviceId, DocId, EnvelopeId, HexId, SpaceId, UserId};
use zeroize::Zeroizing;

use crate::store::memory::MemoryStore;
use crate::store::{
    AccountRecord, AppendItem, AppendOutcome, Cas, DeviceRecord, Durability, JwtKeyRecord,
    LinkRecord, OneTimeToken, RateDecision, SessionRecord, Store, StoreResult, StoredKey,
    WrappedKey,
};

#[derive(Debug)]
pub(crate) struct SpyStore {
    inner: Arc<dyn Store>,
    /// Secrets of the JWT keys written through this store, for tests that sign tokens by hand.
    jwt_secrets: Mutex<HashMap<String, [u8; 32]>>,
    jwt_key_loads: AtomicUsize,
    session_writes: AtomicUsize,
    /// When set, the next `update_session` answers `Conflict` (as if another instance won).
    conflict_next_update: AtomicBool,
    flushes: AtomicUsize,
    /// Added to every flush, so concurrent writers pile up behind one.
    flush_delay: std::time::Duration,
}

impl Default for SpyStore {
    fn default() -> Self {
        Self::over(Arc::new(MemoryStore::new()), std::time::Duration::ZERO)
    }
}

impl SpyStore {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A spy over another store, with a delay added to each flush.
    pub(crate) fn over(inner: Arc<dyn Store>, flush_delay: std::time::Duration) -> Self {
        Self {
            inner,
            jwt_secrets: Mutex::default(),
            jwt_key_loads: AtomicUsize::default(),
            session_writes: AtomicUsize::default(),
            conflict_next_update: AtomicBool::default(),
            flushes: AtomicUsize::default(),
            flush_delay,
        }
    }

    pub(crate) fn flushes(&self) -> usize {
        self.flushes.load(Ordering::SeqCst)
    }

    pub(crate) fn jwt_secret(&self, kid: &str) -> [u8; 32] {
        self.jwt_secrets.lock().unwrap()[kid]
    }

    pub(crate) fn jwt_key_loads(&self) -> usize {
        self.jwt_key_loads.load(Ordering::SeqCst)
    }

    /// Writes to sessions (create, update, revoke), to check "no side effects".
    pub(crate) fn session_writes(&self) -> usize {
        self.session_writes.load(Ordering::SeqCst)
    }

    pub(crate) fn conflict_next_update(&self) {
        self.conflict_next_update.store(true, Ordering::SeqCst);
    }

    /// An account with one device, as account creation leaves it.
    pub(crate) async fn add_account(
        &self,
        user: UserId,
        device: DeviceId,
        auth_hash: &str,
    ) -> AccountRecord {
        let account = AccountRecord {
            user_id: user,
            space_id: HexId([0xaa; 16]),
            username_key: [0; 32],
            auth_hash: auth_hash.to_owned(),
            recovery_hash: String::new(),
            kdf: KdfParams::recommended(Bytes([0; 16])),
            key_bundle: KeyBundle {
                version: 1,
                key_epoch: 0,
                blob: Blob(vec![1]),
            },
            auth_version: 1,
            revision: 0,
            created_day: "2027-01-15".into(),
        };
        let created = self
            .inner
            .create_account(
                account.clone(),
                device_record(user, device),
                // Never unwrapped: tests using this account do not touch its space's bodies.
                WrappedKey {
                    generation: 1,
                    sealed: [3; crate::store::WRAPPED_KEY_LEN],
                },
            )
            .await
            .unwrap();
        assert_eq!(created, Cas::Done(()));
        account
    }

    /// Replaces the stored account (whatever its revision).
    pub(crate) async fn put_account(&self, account: AccountRecord) {
        let stored = self.account_now(&account.user_id).await;
        let updated = self
            .inner
            .update_account(stored.revision, account)
            .await
            .unwrap();
        assert!(matches!(updated, Cas::Done(_)));
    }

    pub(crate) async fn add_device(&self, user: UserId, device: DeviceId) {
        self.inner
            .put_device(device_record(user, device))
            .await
            .unwrap();
    }

    pub(crate) async fn account_now(&self, user: &UserId) -> AccountRecord {
        self.inner.account(user).await.unwrap().unwrap()
    }

    pub(crate) async fn bump_auth_version(&self, user: &UserId) {
        let mut account = self.account_now(user).await;
        account.auth_version += 1;
        self.put_account(account).await;
    }

    pub(crate) async fn revoke_device_now(&self, user: &UserId, device: &DeviceId) {
        let account = self.account_now(user).await;
        let revision = account.revision;
        let revoked = self
            .inner
            .revoke_device(revision, account, device)
            .await
            .unwrap();
        assert!(matches!(revoked, Cas::Done(_)));
    }

    pub(crate) async fn erase_now(&self, user: &UserId) {
        self.inner.erase_account(user, None).await.unwrap();
    }

    pub(crate) async fn session_now(&self, id: &HexId) -> Option<SessionRecord> {
        self.inner.session(id).await.unwrap()
    }
}

fn device_record(user: UserId, device: DeviceId) -> DeviceRecord {
    DeviceRecord {
        user_id: user,
        device_id: device,
        name: None,
        created_day: "2027-01-15".into(),
        last_seen_day: "2027-01-15".into(),
        revoked: false,
    }
}

#[async_trait]
impl Store for SpyStore {
    async fn ping(&self) -> StoreResult<()> {
        self.inner.ping().await
    }

    fn durability(&self) -> Durability {
        self.inner.durability()
    }

    async fn flush(&self) -> StoreResult<()> {
        self.flushes.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.flush_delay).await;
        self.inner.flush().await
    }

    async fn secret_or_init(
        &self,
        name: &str,
        candidate: Zeroizing<Vec<u8>>,
    ) -> StoreResult<Zeroizing<Vec<u8>>> {
        self.inner.secret_or_init(name, candidate).await
    }

    async fn jwt_keys(&self) -> StoreResult<Vec<JwtKeyRecord>> {
        self.jwt_key_loads.fetch_add(1, Ordering::SeqCst);
        self.inner.jwt_keys().await
    }

    async fn put_jwt_key(&self, key: JwtKeyRecord) -> StoreResult<()> {
        self.jwt_secrets
            .lock()
            .unwrap()
            .insert(key.kid.clone(), *key.secret);
        self.inner.put_jwt_key(key).await
    }

    async fn create_account(
        &self,
        account: AccountRecord,
        first_device: DeviceRecord,
        storage_key: WrappedKey,
    ) -> StoreResult<Cas<()>> {
        self.inner
            .create_account(account, first_device, storage_key)
            .await
    }

    async fn account_by_username(&self, key: &[u8; 32]) -> StoreResult<Option<AccountRecord>> {
        self.inner.account_by_username(key).await
    }

    async fn account(&self, user: &UserId) -> StoreResult<Option<AccountRecord>> {
        self.inner.account(user).await
    }

    async fn update_account(
        &self,
        expected_revision: u64,
        account: AccountRecord,
    ) -> StoreResult<Cas<AccountRecord>> {
        self.inner.update_account(expected_revision, account).await
    }

    async fn revoke_device(
        &self,
        expected_revision: u64,
        account: AccountRecord,
        device: &DeviceId,
    ) -> StoreResult<Cas<Vec<HexId>>> {
        self.inner
            .revoke_device(expected_revision, account, device)
            .await
    }

    async fn erase_account(&self, user: &UserId, wipe_token: Option<[u8; 32]>) -> StoreResult<()> {
        self.inner.erase_account(user, wipe_token).await
    }

    async fn is_erased(&self, user: &UserId) -> StoreResult<bool> {
        self.inner.is_erased(user).await
    }

    async fn erased_wipe_token(&self, user: &UserId) -> StoreResult<Option<[u8; 32]>> {
        self.inner.erased_wipe_token(user).await
    }

    async fn devices(&self, user: &UserId) -> StoreResult<Vec<DeviceRecord>> {
        self.inner.devices(user).await
    }

    async fn device(&self, user: &UserId, device: &DeviceId) -> StoreResult<Option<DeviceRecord>> {
        self.inner.device(user, device).await
    }

    async fn put_device(&self, device: DeviceRecord) -> StoreResult<()> {
        self.inner.put_device(device).await
    }

    async fn create_session(&self, session: SessionRecord) -> StoreResult<()> {
        self.session_writes.fetch_add(1, Ordering::SeqCst);
        self.inner.create_session(session).await
    }

    async fn session(&self, id: &HexId) -> StoreResult<Option<SessionRecord>> {
        self.inner.session(id).await
    }

    async fn update_session(
        &self,
        expected_generation: u64,
        session: SessionRecord,
    ) -> StoreResult<Cas<()>> {
        self.session_writes.fetch_add(1, Ordering::SeqCst);
        if self.conflict_next_update.swap(false, Ordering::SeqCst) {
            return Ok(Cas::Conflict);
        }
        self.inner
            .update_session(expected_generation, session)
            .await
    }

    async fn revoke_session(&self, id: &HexId) -> StoreResult<()> {
        self.session_writes.fetch_add(1, Ordering::SeqCst);
        self.inner.revoke_session(id).await
    }

    async fn revoke_sessions_of_user(
        &self,
        user: &UserId,
        keep: Option<&HexId>,
    ) -> StoreResult<Vec<HexId>> {
        self.session_writes.fetch_add(1, Ordering::SeqCst);
        self.inner.revoke_sessions_of_user(user, keep).await
    }

    async fn put_token(&self, hash: &[u8; 32], token: OneTimeToken) -> StoreResult<()> {
        self.inner.put_token(hash, token).await
    }

    async fn take_token(&self, hash: &[u8; 32]) -> StoreResult<Option<OneTimeToken>> {
        self.inner.take_token(hash).await
    }

    async fn create_link(&self, link: LinkRecord) -> StoreResult<()> {
        self.inner.create_link(link).await
    }

    async fn put_link_payload(&self, id: &HexId, payload: Vec<u8>) -> StoreResult<Cas<()>> {
        self.inner.put_link_payload(id, payload).await
    }

    async fn take_link(&self, id: &HexId) -> StoreResult<Option<LinkRecord>> {
        self.inner.take_link(id).await
    }

    async fn purge_expired(&self, now: u64) -> StoreResult<usize> {
        self.inner.purge_expired(now).await
    }

    async fn rate_limit_hit(
        &self,
        key: &[u8],
        now: u64,
        window_secs: u64,
        max_events: u32,
    ) -> StoreResult<RateDecision> {
        self.inner
            .rate_limit_hit(key, now, window_secs, max_events)
            .await
    }

    async fn space_exists(&self, space: &SpaceId) -> StoreResult<bool> {
        self.inner.space_exists(space).await
    }

    async fn storage_key(&self, space: &SpaceId) -> StoreResult<Option<StoredKey>> {
        self.inner.storage_key(space).await
    }

    async fn storage_keys(
        &self,
        after: Option<&SpaceId>,
        limit: usize,
    ) -> StoreResult<Vec<(SpaceId, StoredKey)>> {
        self.inner.storage_keys(after, limit).await
    }

    async fn replace_storage_key(
        &self,
        space: &SpaceId,
        expected: &StoredKey,
        new: WrappedKey,
    ) -> StoreResult<Cas<()>> {
        self.inner.replace_storage_key(space, expected, new).await
    }

    async fn append(
        &self,
        space: &SpaceId,
        items: Vec<AppendItem>,
    ) -> StoreResult<Vec<AppendOutcome>> {
        self.inner.append(space, items).await
    }

    async fn read(
        &self,
        space: &SpaceId,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> StoreResult<Vec<(u64, haven_protocol::Envelope)>> {
        self.inner.read(space, after, upto, limit).await
    }

    async fn seq_of(&self, space: &SpaceId, id: &EnvelopeId) -> StoreResult<Option<u64>> {
        self.inner.seq_of(space, id).await
    }

    async fn head(&self, space: &SpaceId) -> StoreResult<u64> {
        self.inner.head(space).await
    }

    async fn epoch(&self, space: &SpaceId) -> StoreResult<u32> {
        self.inner.epoch(space).await
    }

    async fn live_ids(&self, space: &SpaceId, doc: &DocId) -> StoreResult<Vec<(u64, EnvelopeId)>> {
        self.inner.live_ids(space, doc).await
    }
}
