//! The secret fields of an account record (its two Argon2id hashes and its key bundle) are
//! stored sealed under the account's storage key, so that they die with it: after an erasure and
//! a master-key rotation, copies of the record left in old store files cannot be opened, so they
//! are not open to offline password guessing either (docs/PRIVACY.md).
//!
//! [`SealedAccounts`] is a [`Store`] over another store that seals those fields on every account
//! write and opens them on every read; every other call passes through unchanged. The backends
//! therefore stay as they are (and keep passing the conformance suite): to them the sealed
//! fields are an ordinary string and blob. The username key, KDF parameters (the salt the
//! prelogin answers with), versions and days stay in clear: the store needs them for lookups and
//! rules, and none of them opens anything.
//!
//! A record is sealed when its `auth_hash` starts with [`SEALED_PREFIX`] (a PHC string starts
//! with `$argon2id$`); records written before this existed are read as they are and sealed at
//! their next write.

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use haven_protocol::api::KeyBundle;
use haven_protocol::{Blob, DeviceId, DocId, Envelope, EnvelopeId, HexId, SpaceId, UserId};
use zeroize::Zeroizing;

use crate::storage_keys::StorageKeys;
use crate::storage_seal::{open_with_aad, seal_with_aad};
use crate::store::{
    AccountRecord, AppendItem, AppendOutcome, Cas, DeviceRecord, Durability, JwtKeyRecord,
    LinkRecord, OneTimeToken, RateDecision, SessionRecord, Store, StoreError, StoreResult,
    StoredKey, WrappedKey,
};

/// Marks a sealed `auth_hash` / `recovery_hash`: `$haven-sealed$v1$` ‖ base64(nonce ‖ sealed).
pub const SEALED_PREFIX: &str = "$haven-sealed$v1$";
const DOMAIN: &[u8] = b"haven/account-field/v1\0";

/// Which field a sealed value is (bound into its AAD, so fields cannot be swapped).
#[derive(Debug, Clone, Copy)]
enum Field {
    AuthHash,
    RecoveryHash,
    KeyBundle,
}

impl Field {
    fn name(self) -> &'static [u8] {
        match self {
            Self::AuthHash => b"auth_hash",
            Self::RecoveryHash => b"recovery_hash",
            Self::KeyBundle => b"key_bundle",
        }
    }
}

/// AAD = domain ‖ user id ‖ space id ‖ field ‖ (for the bundle) version ‖ epoch, so a sealed
/// value only opens in its own record and field, and the clear bundle version and epoch the
/// store compares cannot be changed under it.
fn aad(account: &AccountRecord, field: Field) -> Vec<u8> {
    let mut aad = Vec::with_capacity(DOMAIN.len() + 16 + 16 + 16 + 12);
    aad.extend_from_slice(DOMAIN);
    aad.extend_from_slice(&account.user_id.0);
    aad.extend_from_slice(&account.space_id.0);
    aad.extend_from_slice(field.name());
    if let Field::KeyBundle = field {
        aad.push(0);
        aad.extend_from_slice(&account.key_bundle.version.to_be_bytes());
        aad.extend_from_slice(&account.key_bundle.key_epoch.to_be_bytes());
    }
    aad
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("account record: {what}"))
}

fn seal_text(
    key: &[u8; 32],
    account: &AccountRecord,
    field: Field,
    text: &str,
) -> StoreResult<String> {
    let sealed = seal_with_aad(key, &aad(account, field), text.as_bytes())
        .map_err(|_| StoreError::Engine("sealing an account field failed".into()))?;
    Ok(format!("{SEALED_PREFIX}{}", STANDARD.encode(sealed)))
}

fn open_text(
    key: &[u8; 32],
    account: &AccountRecord,
    field: Field,
    text: &str,
) -> StoreResult<String> {
    let encoded = text
        .strip_prefix(SEALED_PREFIX)
        .ok_or_else(|| corrupt("a field of a sealed record is not sealed"))?;
    let sealed = STANDARD
        .decode(encoded)
        .map_err(|_| corrupt("a sealed field is not base64"))?;
    let opened = open_with_aad(key, &aad(account, field), &sealed)
        .map_err(|_| corrupt("a sealed field does not open"))?;
    String::from_utf8(opened).map_err(|_| corrupt("a sealed field is not text"))
}

/// Whether the record's secret fields are sealed.
pub fn is_sealed(account: &AccountRecord) -> bool {
    account.auth_hash.starts_with(SEALED_PREFIX)
}

/// The record with its secret fields sealed under `key`.
fn seal_record(key: &[u8; 32], mut account: AccountRecord) -> StoreResult<AccountRecord> {
    if is_sealed(&account) {
        return Err(StoreError::Engine(
            "an account record to write is sealed already".into(),
        ));
    }
    let bundle = seal_with_aad(
        key,
        &aad(&account, Field::KeyBundle),
        &account.key_bundle.blob.0,
    )
    .map_err(|_| StoreError::Engine("sealing an account field failed".into()))?;
    account.auth_hash = seal_text(key, &account, Field::AuthHash, &account.auth_hash)?;
    account.recovery_hash = seal_text(key, &account, Field::RecoveryHash, &account.recovery_hash)?;
    account.key_bundle = KeyBundle {
        blob: Blob(bundle),
        ..account.key_bundle
    };
    Ok(account)
}

/// The record with its secret fields opened.
fn open_record(key: &[u8; 32], mut account: AccountRecord) -> StoreResult<AccountRecord> {
    let blob = open_with_aad(
        key,
        &aad(&account, Field::KeyBundle),
        &account.key_bundle.blob.0,
    )
    .map_err(|_| corrupt("the sealed key bundle does not open"))?;
    account.auth_hash = open_text(key, &account, Field::AuthHash, &account.auth_hash)?;
    account.recovery_hash = open_text(key, &account, Field::RecoveryHash, &account.recovery_hash)?;
    account.key_bundle.blob = Blob(blob);
    Ok(account)
}

/// A [`Store`] that seals account records' secret fields under the account's storage key.
#[derive(Debug)]
pub struct SealedAccounts {
    inner: Arc<dyn Store>,
    keys: Arc<StorageKeys>,
}

impl SealedAccounts {
    /// `keys` must open the storage keys of `inner`.
    pub fn new(inner: Arc<dyn Store>, keys: Arc<StorageKeys>) -> Self {
        Self { inner, keys }
    }

    /// The account's storage key; `None` when the space is gone (erased meanwhile).
    async fn key_of(&self, account: &AccountRecord) -> StoreResult<Option<Zeroizing<[u8; 32]>>> {
        self.keys
            .open_key(&SpaceId::Private(account.space_id))
            .await
            .map_err(|error| match error {
                crate::storage_keys::StorageKeyError::Store(error) => error,
                other => corrupt(&format!("its storage key does not open: {other}")),
            })
    }

    /// Opens a record read from the inner store. A sealed record whose key is gone belongs to
    /// an account erased between the two reads: it is gone.
    async fn opened(&self, account: Option<AccountRecord>) -> StoreResult<Option<AccountRecord>> {
        let Some(account) = account else {
            return Ok(None);
        };
        if !is_sealed(&account) {
            return Ok(Some(account));
        }
        match self.key_of(&account).await? {
            Some(key) => open_record(&key, account).map(Some),
            None => Ok(None),
        }
    }

    /// Seals a record about to be written; `None` when its account has no storage key (erased,
    /// or never created), which the write then answers as a conflict.
    async fn sealed(&self, account: AccountRecord) -> StoreResult<Option<AccountRecord>> {
        match self.key_of(&account).await? {
            Some(key) => seal_record(&key, account).map(Some),
            None => Ok(None),
        }
    }
}

#[async_trait]
impl Store for SealedAccounts {
    async fn ping(&self) -> StoreResult<()> {
        self.inner.ping().await
    }

    fn durability(&self) -> Durability {
        self.inner.durability()
    }

    async fn flush(&self) -> StoreResult<()> {
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
        self.inner.jwt_keys().await
    }

    async fn put_jwt_key(&self, key: JwtKeyRecord) -> StoreResult<()> {
        self.inner.put_jwt_key(key).await
    }

    async fn create_account(
        &self,
        account: AccountRecord,
        first_device: DeviceRecord,
        storage_key: WrappedKey,
    ) -> StoreResult<Cas<()>> {
        let space = SpaceId::Private(account.space_id);
        let key = self
            .keys
            .master()
            .unwrap(&space, &storage_key)
            .map_err(|error| StoreError::Engine(format!("the new storage key: {error}")))?;
        let account = seal_record(&key, account)?;
        self.inner
            .create_account(account, first_device, storage_key)
            .await
    }

    async fn account_by_username(
        &self,
        username_key: &[u8; 32],
    ) -> StoreResult<Option<AccountRecord>> {
        let account = self.inner.account_by_username(username_key).await?;
        self.opened(account).await
    }

    async fn account(&self, user: &UserId) -> StoreResult<Option<AccountRecord>> {
        let account = self.inner.account(user).await?;
        self.opened(account).await
    }

    async fn update_account(
        &self,
        expected_revision: u64,
        account: AccountRecord,
    ) -> StoreResult<Cas<AccountRecord>> {
        let Some(sealed) = self.sealed(account).await? else {
            return Ok(Cas::Conflict);
        };
        match self.inner.update_account(expected_revision, sealed).await? {
            Cas::Done(stored) => match self.opened(Some(stored)).await? {
                Some(opened) => Ok(Cas::Done(opened)),
                None => Ok(Cas::Conflict),
            },
            Cas::Conflict => Ok(Cas::Conflict),
        }
    }

    async fn revoke_device(
        &self,
        expected_revision: u64,
        account: AccountRecord,
        device: &DeviceId,
    ) -> StoreResult<Cas<Vec<HexId>>> {
        let Some(sealed) = self.sealed(account).await? else {
            return Ok(Cas::Conflict);
        };
        self.inner
            .revoke_device(expected_revision, sealed, device)
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
        self.inner
            .update_session(expected_generation, session)
            .await
    }

    async fn revoke_session(&self, id: &HexId) -> StoreResult<()> {
        self.inner.revoke_session(id).await
    }

    async fn revoke_sessions_of_user(
        &self,
        user: &UserId,
        keep: Option<&HexId>,
    ) -> StoreResult<Vec<HexId>> {
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
    ) -> StoreResult<Vec<(u64, Envelope)>> {
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

#[cfg(test)]
mod tests {

    use super::*;
    use crate::storage_keys::MasterKeySource;
    use crate::store::fixtures::{self, device};
    use crate::store::memory::MemoryStore;

    const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";

    /// An account whose secret fields look like the real ones, so a scan can find them.
    fn account(n: u8) -> AccountRecord {
        AccountRecord {
            auth_hash: format!("{HASH}{n}"),
            recovery_hash: format!("{HASH}recovery{n}"),
            key_bundle: KeyBundle {
                version: 1,
                key_epoch: 1,
                blob: Blob(b"the client's sealed key bundle".to_vec()),
            },
            ..fixtures::account(n)
        }
    }

    /// The raw store, and the sealing store over it with accounts 1 and 2.
    async fn stores() -> (Arc<dyn Store>, Arc<StorageKeys>, SealedAccounts) {
        let raw: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let keys = Arc::new(
            StorageKeys::open(Arc::clone(&raw), &MasterKeySource::Ephemeral)
                .await
                .unwrap(),
        );
        let sealed = SealedAccounts::new(Arc::clone(&raw), Arc::clone(&keys));
        for n in [1, 2] {
            let space = SpaceId::Private(account(n).space_id);
            let wrapped = keys.master().wrap(&space, &[n; 32]);
            let created = sealed
                .create_account(account(n), device(n), wrapped)
                .await
                .unwrap();
            assert_eq!(created, Cas::Done(()));
        }
        (raw, keys, sealed)
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack
            .windows(needle.len())
            .any(|window| window == needle)
    }

    #[tokio::test]
    async fn the_store_holds_the_secret_fields_sealed_and_readers_see_them_open() {
        let (raw, _keys, sealed) = stores().await;
        let user = account(1).user_id;
        let stored = raw.account(&user).await.unwrap().unwrap();
        assert!(is_sealed(&stored));
        let written = serde_json::to_vec(&stored).unwrap();
        for secret in [
            account(1).auth_hash.as_bytes(),
            account(1).recovery_hash.as_bytes(),
            b"aGFzaGhhc2hoYXNoaGFzaA",
            &account(1).key_bundle.blob.0,
        ] {
            assert!(!contains(&written, secret));
        }
        // What the store needs stays clear.
        assert_eq!(
            (stored.username_key, stored.kdf, stored.key_bundle.key_epoch),
            (account(1).username_key, account(1).kdf, 1)
        );
        assert_eq!(sealed.account(&user).await.unwrap(), Some(account(1)));
        assert_eq!(
            sealed.account_by_username(&[1; 32]).await.unwrap(),
            Some(account(1))
        );

        // Updates and revocations seal again; the stored copy comes back open.
        let mut changed = account(1);
        changed.auth_hash = format!("{HASH}new");
        changed.key_bundle.version = 2;
        changed.key_bundle.blob = Blob(b"a newer bundle".to_vec());
        let Cas::Done(updated) = sealed.update_account(0, changed.clone()).await.unwrap() else {
            panic!("the update applies");
        };
        assert_eq!(
            updated,
            AccountRecord {
                revision: 1,
                ..changed.clone()
            }
        );
        assert!(is_sealed(&raw.account(&user).await.unwrap().unwrap()));
        let revoked = sealed
            .revoke_device(1, updated.clone(), &device(1).device_id)
            .await
            .unwrap();
        assert!(matches!(revoked, Cas::Done(_)));
        let now = sealed.account(&user).await.unwrap().unwrap();
        assert_eq!(
            now,
            AccountRecord {
                revision: 2,
                ..changed
            }
        );
        assert!(is_sealed(&raw.account(&user).await.unwrap().unwrap()));
    }

    #[tokio::test]
    async fn sealed_fields_are_bound_to_their_record_and_field() {
        let (raw, _keys, sealed) = stores().await;
        let one = raw.account(&account(1).user_id).await.unwrap().unwrap();
        let two = raw.account(&account(2).user_id).await.unwrap().unwrap();
        // Fields swapped within a record, or copied from another record, do not open.
        let mut swapped = one.clone();
        std::mem::swap(&mut swapped.auth_hash, &mut swapped.recovery_hash);
        let mut foreign = two.clone();
        foreign.key_bundle.blob = one.key_bundle.blob.clone();
        let mut relabelled = one.clone();
        relabelled.key_bundle.key_epoch = 7;
        let mut truncated = one.clone();
        truncated.auth_hash.truncate(SEALED_PREFIX.len() + 10);
        for (n, planted) in [(1, swapped), (2, foreign), (1, relabelled), (1, truncated)] {
            let stored = raw.account(&account(n).user_id).await.unwrap().unwrap();
            let Cas::Done(_) = raw.update_account(stored.revision, planted).await.unwrap() else {
                panic!("planting applies");
            };
            let read = sealed.account(&account(n).user_id).await;
            assert!(matches!(read, Err(StoreError::Corrupt(_))), "{read:?}");
            let restore = if n == 1 { one.clone() } else { two.clone() };
            let stored = raw.account(&account(n).user_id).await.unwrap().unwrap();
            raw.update_account(stored.revision, restore).await.unwrap();
        }
        assert_eq!(
            sealed
                .account(&account(1).user_id)
                .await
                .unwrap()
                .map(|a| a.auth_hash),
            Some(account(1).auth_hash)
        );
    }

    #[tokio::test]
    async fn older_clear_records_are_read_and_sealed_at_their_next_write() {
        let (raw, _keys, sealed) = stores().await;
        let user = account(1).user_id;
        let stored = raw.account(&user).await.unwrap().unwrap();
        // What the previous version wrote.
        raw.update_account(stored.revision, account(1))
            .await
            .unwrap();
        assert!(!is_sealed(&raw.account(&user).await.unwrap().unwrap()));
        let read = sealed.account(&user).await.unwrap().unwrap();
        assert_eq!(read.auth_hash, account(1).auth_hash);
        sealed.update_account(read.revision, read).await.unwrap();
        assert!(is_sealed(&raw.account(&user).await.unwrap().unwrap()));
        assert_eq!(
            sealed.account(&user).await.unwrap().unwrap().auth_hash,
            account(1).auth_hash
        );
    }

    #[tokio::test]
    async fn an_erased_account_is_gone_and_cannot_be_written_back() {
        let (raw, _keys, sealed) = stores().await;
        let user = account(1).user_id;
        sealed.erase_account(&user, None).await.unwrap();
        assert_eq!(sealed.account(&user).await.unwrap(), None);
        assert_eq!(
            sealed.update_account(0, account(1)).await.unwrap(),
            Cas::Conflict
        );
        assert_eq!(raw.account(&user).await.unwrap(), None);
        // The other account is untouched.
        assert_eq!(
            sealed.account(&account(2).user_id).await.unwrap(),
            Some(account(2))
        );
    }
}
