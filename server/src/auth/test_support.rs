//! TEST ONLY: a minimal in-memory fake of the [`Store`] methods the auth module uses, until the
//! real `MemoryStore` lands. Every other method fails loudly. Not a reference implementation of
//! the storage contract: the conformance suite is.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use haven_protocol::api::{KdfParams, KeyBundle};
use haven_protocol::{Blob, Bytes, DeviceId, DocId, Envelope, EnvelopeId, HexId, SpaceId, UserId};
use zeroize::Zeroizing;

use crate::store::{
    AccountRecord, AppendItem, AppendOutcome, Cas, DeviceRecord, Durability, JwtKeyRecord,
    JwtKeyState, LinkRecord, OneTimeToken, RateDecision, SessionRecord, Store, StoreError,
    StoreResult,
};

#[derive(Debug, Default)]
struct State {
    secrets: HashMap<String, Zeroizing<Vec<u8>>>,
    jwt_keys: Vec<JwtKeyRecord>,
    accounts: HashMap<UserId, AccountRecord>,
    devices: HashMap<(UserId, DeviceId), DeviceRecord>,
    sessions: HashMap<HexId, SessionRecord>,
    erased: HashSet<UserId>,
    /// key → (window start, count)
    rates: HashMap<Vec<u8>, (u64, u32)>,
}

#[derive(Debug, Default)]
pub(crate) struct FakeStore {
    state: Mutex<State>,
    jwt_key_loads: AtomicUsize,
    session_writes: AtomicUsize,
    /// When set, the next `update_session` answers `Conflict` (as if another instance won).
    conflict_next_update: AtomicBool,
}

fn unsupported<T>() -> StoreResult<T> {
    Err(StoreError::Engine(
        "not implemented by the auth test fake".into(),
    ))
}

impl FakeStore {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    pub(crate) fn jwt_secret(&self, kid: &str) -> [u8; 32] {
        *self
            .lock()
            .jwt_keys
            .iter()
            .find(|k| k.kid == kid)
            .unwrap()
            .secret
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

    /// An account with one device, as account creation would leave it.
    pub(crate) fn add_account(
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
                blob: Blob(Vec::new()),
            },
            auth_version: 1,
            revision: 0,
            created_day: "2027-01-15".into(),
        };
        self.put_account(account.clone());
        self.add_device(user, device);
        account
    }

    pub(crate) fn put_account(&self, account: AccountRecord) {
        self.lock().accounts.insert(account.user_id, account);
    }

    pub(crate) fn add_device(&self, user: UserId, device: DeviceId) {
        self.lock().devices.insert(
            (user, device),
            DeviceRecord {
                user_id: user,
                device_id: device,
                name: None,
                created_day: "2027-01-15".into(),
                last_seen_day: "2027-01-15".into(),
                revoked: false,
            },
        );
    }

    pub(crate) fn account_now(&self, user: &UserId) -> AccountRecord {
        self.lock().accounts[user].clone()
    }

    pub(crate) fn bump_auth_version(&self, user: &UserId) {
        let mut state = self.lock();
        let account = state.accounts.get_mut(user).unwrap();
        account.auth_version += 1;
        account.revision += 1;
    }

    pub(crate) fn revoke_device_now(&self, user: &UserId, device: &DeviceId) {
        let mut state = self.lock();
        state.devices.get_mut(&(*user, *device)).unwrap().revoked = true;
        for session in state.sessions.values_mut() {
            if session.user_id == *user && session.device_id == *device {
                session.revoked = true;
            }
        }
    }

    pub(crate) fn erase_now(&self, user: &UserId) {
        let mut state = self.lock();
        state.accounts.remove(user);
        state.devices.retain(|(owner, _), _| owner != user);
        state.sessions.retain(|_, s| s.user_id != *user);
        state.erased.insert(*user);
    }

    pub(crate) fn session_now(&self, id: &HexId) -> Option<SessionRecord> {
        self.lock().sessions.get(id).cloned()
    }
}

#[async_trait]
impl Store for FakeStore {
    async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }

    fn durability(&self) -> Durability {
        Durability::OnCommit
    }

    async fn flush(&self) -> StoreResult<()> {
        Ok(())
    }

    async fn secret_or_init(
        &self,
        name: &str,
        candidate: Zeroizing<Vec<u8>>,
    ) -> StoreResult<Zeroizing<Vec<u8>>> {
        Ok(self
            .lock()
            .secrets
            .entry(name.to_owned())
            .or_insert(candidate)
            .clone())
    }

    async fn jwt_keys(&self) -> StoreResult<Vec<JwtKeyRecord>> {
        self.jwt_key_loads.fetch_add(1, Ordering::SeqCst);
        Ok(self.lock().jwt_keys.clone())
    }

    async fn put_jwt_key(&self, key: JwtKeyRecord) -> StoreResult<()> {
        let mut state = self.lock();
        if key.state == JwtKeyState::Active {
            for other in &mut state.jwt_keys {
                if other.state == JwtKeyState::Active {
                    other.state = JwtKeyState::VerifyOnly;
                }
            }
        }
        state.jwt_keys.retain(|k| k.kid != key.kid);
        state.jwt_keys.push(key);
        Ok(())
    }

    async fn create_account(
        &self,
        _account: AccountRecord,
        _first_device: DeviceRecord,
        _storage_key: Zeroizing<[u8; 32]>,
    ) -> StoreResult<Cas<()>> {
        unsupported()
    }

    async fn account_by_username(&self, key: &[u8; 32]) -> StoreResult<Option<AccountRecord>> {
        Ok(self
            .lock()
            .accounts
            .values()
            .find(|a| a.username_key == *key)
            .cloned())
    }

    async fn account(&self, user: &UserId) -> StoreResult<Option<AccountRecord>> {
        Ok(self.lock().accounts.get(user).cloned())
    }

    async fn update_account(
        &self,
        expected_revision: u64,
        mut account: AccountRecord,
    ) -> StoreResult<Cas<AccountRecord>> {
        let mut state = self.lock();
        match state.accounts.get(&account.user_id) {
            Some(stored) if stored.revision == expected_revision => {
                account.revision = expected_revision + 1;
                state.accounts.insert(account.user_id, account.clone());
                Ok(Cas::Done(account))
            }
            _ => Ok(Cas::Conflict),
        }
    }

    async fn revoke_device(
        &self,
        _expected_revision: u64,
        _account: AccountRecord,
        _device: &DeviceId,
    ) -> StoreResult<Cas<Vec<HexId>>> {
        unsupported()
    }

    async fn erase_account(&self, _user: &UserId) -> StoreResult<()> {
        unsupported()
    }

    async fn is_erased(&self, user: &UserId) -> StoreResult<bool> {
        Ok(self.lock().erased.contains(user))
    }

    async fn devices(&self, _user: &UserId) -> StoreResult<Vec<DeviceRecord>> {
        unsupported()
    }

    async fn device(&self, user: &UserId, device: &DeviceId) -> StoreResult<Option<DeviceRecord>> {
        Ok(self.lock().devices.get(&(*user, *device)).cloned())
    }

    async fn put_device(&self, _device: DeviceRecord) -> StoreResult<()> {
        unsupported()
    }

    async fn create_session(&self, session: SessionRecord) -> StoreResult<()> {
        self.session_writes.fetch_add(1, Ordering::SeqCst);
        self.lock().sessions.insert(session.session_id, session);
        Ok(())
    }

    async fn session(&self, id: &HexId) -> StoreResult<Option<SessionRecord>> {
        Ok(self.lock().sessions.get(id).cloned())
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
        let mut state = self.lock();
        match state.sessions.get(&session.session_id) {
            Some(stored) if stored.generation == expected_generation && !stored.revoked => {
                state.sessions.insert(session.session_id, session);
                Ok(Cas::Done(()))
            }
            _ => Ok(Cas::Conflict),
        }
    }

    async fn revoke_session(&self, id: &HexId) -> StoreResult<()> {
        self.session_writes.fetch_add(1, Ordering::SeqCst);
        if let Some(session) = self.lock().sessions.get_mut(id) {
            session.revoked = true;
        }
        Ok(())
    }

    async fn revoke_sessions_of_user(
        &self,
        _user: &UserId,
        _keep: Option<&HexId>,
    ) -> StoreResult<Vec<HexId>> {
        unsupported()
    }

    async fn put_token(&self, _hash: &[u8; 32], _token: OneTimeToken) -> StoreResult<()> {
        unsupported()
    }

    async fn take_token(&self, _hash: &[u8; 32]) -> StoreResult<Option<OneTimeToken>> {
        unsupported()
    }

    async fn create_link(&self, _link: LinkRecord) -> StoreResult<()> {
        unsupported()
    }

    async fn put_link_payload(&self, _id: &HexId, _payload: Vec<u8>) -> StoreResult<Cas<()>> {
        unsupported()
    }

    async fn take_link(&self, _id: &HexId) -> StoreResult<Option<LinkRecord>> {
        unsupported()
    }

    async fn purge_expired(&self, _now: u64) -> StoreResult<usize> {
        unsupported()
    }

    async fn rate_limit_hit(
        &self,
        key: &[u8],
        now: u64,
        window_secs: u64,
        max_events: u32,
    ) -> StoreResult<RateDecision> {
        let window_secs = window_secs.max(1);
        let start = now - now % window_secs;
        let mut state = self.lock();
        let entry = state.rates.entry(key.to_vec()).or_insert((start, 0));
        if entry.0 != start {
            *entry = (start, 0);
        }
        entry.1 += 1;
        if entry.1 > max_events {
            Ok(RateDecision::Limited {
                retry_after: start + window_secs - now,
            })
        } else {
            Ok(RateDecision::Allowed)
        }
    }

    async fn space_exists(&self, _space: &SpaceId) -> StoreResult<bool> {
        unsupported()
    }

    async fn storage_key(&self, _space: &SpaceId) -> StoreResult<Option<Zeroizing<[u8; 32]>>> {
        unsupported()
    }

    async fn append(
        &self,
        _space: &SpaceId,
        _items: Vec<AppendItem>,
    ) -> StoreResult<Vec<AppendOutcome>> {
        unsupported()
    }

    async fn read(
        &self,
        _space: &SpaceId,
        _after: u64,
        _upto: u64,
        _limit: usize,
    ) -> StoreResult<Vec<(u64, Envelope)>> {
        unsupported()
    }

    async fn seq_of(&self, _space: &SpaceId, _id: &EnvelopeId) -> StoreResult<Option<u64>> {
        unsupported()
    }

    async fn head(&self, _space: &SpaceId) -> StoreResult<u64> {
        unsupported()
    }

    async fn epoch(&self, _space: &SpaceId) -> StoreResult<u32> {
        unsupported()
    }

    async fn live_ids(
        &self,
        _space: &SpaceId,
        _doc: &DocId,
    ) -> StoreResult<Vec<(u64, EnvelopeId)>> {
        unsupported()
    }
}
