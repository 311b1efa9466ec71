//! Per-account storage keys, wrapped under the master key ([`crate::master_key`]) before they
//! reach the store, and the rotation of the master key that makes erasure physical.
//!
//! An erased account's wrapped key may survive in the store's old segments, dead tuples or
//! backups. A rotation makes generation G+1, re-wraps every stored key under it (compare-and-swap
//! per key, so it races safely with erasures), flushes the store, and only then removes every
//! older generation from the master-key file: the surviving copies then open nothing. A crash at
//! any point leaves every generation a stored key may be wrapped under in the file; the next
//! start sees more than one generation (or the file's "rotation due" flag) and rotates again.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use haven_protocol::SpaceId;
use tokio::sync::{Mutex, Notify, RwLock};
use tokio::task::JoinHandle;
use zeroize::Zeroizing;

use crate::clock::random_bytes;
use crate::master_key::{MasterKeyError, MasterKeys};
use crate::store::{AccountRecord, Cas, DeviceRecord, Store, StoreError, StoredKey, WrappedKey};

/// Keys per page when walking every stored key.
const PAGE: usize = 256;

/// Where the master key lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterKeySource {
    /// In memory only (in-memory stores, tests): nothing to shred on disk.
    Ephemeral,
    /// A file outside the store, created at first start.
    File(PathBuf),
}

/// How the background rotation paces itself.
#[derive(Debug, Clone, Copy)]
pub struct RotationPolicy {
    /// Wait after an erasure before rotating, so a burst of erasures costs one rotation.
    pub debounce: Duration,
    /// First wait after a failed rotation; doubles up to `retry_max`.
    pub retry_min: Duration,
    pub retry_max: Duration,
}

impl Default for RotationPolicy {
    fn default() -> Self {
        Self {
            debounce: Duration::from_secs(30),
            retry_min: Duration::from_secs(60),
            retry_max: Duration::from_secs(3600),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StorageKeyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Master(#[from] MasterKeyError),
    #[error(
        "none of the {0} wrapped storage keys in the store opens with this master key: the \
         master-key file does not belong to this store"
    )]
    Mismatch(usize),
}

/// What a rotation did (counts and generation numbers only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationReport {
    /// The generation every key is now wrapped under.
    pub generation: u32,
    /// Keys re-wrapped.
    pub rewrapped: usize,
    /// Generations removed from the master-key file.
    pub retired: Vec<u32>,
}

/// What the start-up check found.
#[derive(Debug, Default)]
struct Survey {
    wrapped: usize,
    failed: usize,
    legacy_wrapped: usize,
}

/// The storage keys of every account: created wrapped, opened on demand (never cached), and
/// re-wrapped by rotations.
#[derive(Debug)]
pub struct StorageKeys {
    store: Arc<dyn Store>,
    master: MasterKeys,
    /// Account creation holds it shared from wrapping to the store's write; a rotation takes it
    /// exclusively while it adds a generation, so no key can be written under an old generation
    /// after the rotation has started walking the store.
    switch: RwLock<()>,
    /// One rotation at a time.
    rotating: Mutex<()>,
    /// Erasures since start; a rotation that sees it change while running leaves one due.
    erasures: AtomicU64,
    wake: Notify,
}

impl StorageKeys {
    /// Opens (or, for a store without wrapped keys, creates) the master key, checks it against
    /// the store, and wraps any raw key written before master keys existed (once).
    pub async fn open(
        store: Arc<dyn Store>,
        source: &MasterKeySource,
    ) -> Result<Self, StorageKeyError> {
        let master = match source {
            MasterKeySource::Ephemeral => MasterKeys::ephemeral(),
            MasterKeySource::File(path) => {
                let may_create = !holds_wrapped_keys(&*store).await?;
                let (master, created) = MasterKeys::open(path, may_create).await?;
                if created {
                    tracing::info!(file = %path.display(), "created the master-key file");
                }
                master
            }
        };
        let keys = Self {
            store,
            master,
            switch: RwLock::new(()),
            rotating: Mutex::new(()),
            erasures: AtomicU64::new(0),
            wake: Notify::new(),
        };
        let survey = keys.survey_and_wrap_legacy().await?;
        if survey.wrapped > 0 && survey.failed == survey.wrapped {
            return Err(StorageKeyError::Mismatch(survey.wrapped));
        }
        if survey.failed > 0 {
            tracing::warn!(
                failed = survey.failed,
                "some stored storage keys do not open (damaged records)"
            );
        }
        if survey.legacy_wrapped > 0 {
            keys.store.flush().await?;
            tracing::info!(
                keys = survey.legacy_wrapped,
                "wrapped storage keys written before master keys existed"
            );
        }
        keys.publish_gauges();
        Ok(keys)
    }

    pub fn master(&self) -> &MasterKeys {
        &self.master
    }

    /// Creates the account with a fresh storage key, wrapped under the current generation,
    /// through `store`: the server's sealing store (`crate::account_seal`) over this one, so the
    /// record's secret fields are sealed from its very first write.
    pub async fn create_account(
        &self,
        store: &dyn Store,
        account: AccountRecord,
        first_device: DeviceRecord,
    ) -> Result<Cas<()>, StorageKeyError> {
        let _switch = self.switch.read().await;
        let raw = Zeroizing::new(random_bytes::<32>());
        let wrapped = self.master.wrap(&SpaceId::Private(account.space_id), &raw);
        Ok(store.create_account(account, first_device, wrapped).await?)
    }

    /// The usable storage key of a space; `None` for `public` and unknown spaces.
    pub async fn open_key(
        &self,
        space: &SpaceId,
    ) -> Result<Option<Zeroizing<[u8; 32]>>, StorageKeyError> {
        match self.store.storage_key(space).await? {
            None => Ok(None),
            Some(StoredKey::Legacy(raw)) => Ok(Some(raw)),
            Some(StoredKey::Wrapped(wrapped)) => Ok(Some(self.master.unwrap(space, &wrapped)?)),
        }
    }

    /// Records an erasure: a rotation is due (kept in the master-key file across restarts), and
    /// the background rotation, if running, is woken.
    pub async fn erased(&self) {
        self.erasures.fetch_add(1, Ordering::SeqCst);
        if let Err(error) = self.master.mark_rotation_due().await {
            // The rotation still happens in this process; only a crash before it would forget.
            tracing::warn!(%error, "could not record in the master-key file that a rotation is due");
            metrics::counter!("haven_master_key_errors_total").increment(1);
        }
        metrics::gauge!("haven_master_key_rotation_due").set(1.0);
        self.wake.notify_one();
    }

    /// Whether a rotation is due: an erasure since the last one, or several generations left by
    /// a rotation that did not finish.
    pub fn rotation_due(&self) -> bool {
        self.master.rotation_due() || self.master.generations().len() > 1
    }

    /// Rotates the master key: a new generation, every stored key re-wrapped under it, the
    /// store flushed, every older generation removed from the file.
    pub async fn rotate(&self) -> Result<RotationReport, StorageKeyError> {
        let _one = self.rotating.lock().await;
        let erasures_before = self.erasures.load(Ordering::SeqCst);
        let result = self.rotate_once(erasures_before).await;
        let outcome = if result.is_ok() { "ok" } else { "failed" };
        metrics::counter!("haven_master_key_rotations_total", "outcome" => outcome).increment(1);
        self.publish_gauges();
        result
    }

    async fn rotate_once(&self, erasures_before: u64) -> Result<RotationReport, StorageKeyError> {
        let generation = {
            let _switch = self.switch.write().await;
            self.master.add_generation().await?
        };
        let rewrapped = self.rewrap_all(generation).await?;
        self.store.flush().await?;
        let retired: Vec<u32> = self
            .master
            .generations()
            .into_iter()
            .filter(|old| *old != generation)
            .collect();
        let still_due = self.erasures.load(Ordering::SeqCst) != erasures_before;
        self.master.retire_all_but(generation, still_due).await?;
        metrics::counter!("haven_storage_keys_rewrapped_total").increment(rewrapped as u64);
        Ok(RotationReport {
            generation,
            rewrapped,
            retired,
        })
    }

    /// Re-wraps every stored key not under `target`, page by page.
    async fn rewrap_all(&self, target: u32) -> Result<usize, StorageKeyError> {
        let mut rewrapped = 0;
        let mut after: Option<SpaceId> = None;
        loop {
            let page = self.store.storage_keys(after.as_ref(), PAGE).await?;
            let full = page.len() == PAGE;
            after = page.last().map(|(space, _)| *space);
            for (space, stored) in page {
                if self.rewrap(&space, stored, target).await? {
                    rewrapped += 1;
                }
            }
            if !full {
                return Ok(rewrapped);
            }
        }
    }

    /// Re-wraps one key under `target` with compare-and-swap; `false` when there was nothing to
    /// do (already under it, or erased meanwhile).
    async fn rewrap(
        &self,
        space: &SpaceId,
        mut stored: StoredKey,
        target: u32,
    ) -> Result<bool, StorageKeyError> {
        loop {
            if stored.generation() == Some(target) {
                return Ok(false);
            }
            let raw = match &stored {
                StoredKey::Legacy(raw) => raw.clone(),
                StoredKey::Wrapped(wrapped) => self.master.unwrap(space, wrapped)?,
            };
            let new: WrappedKey = self.master.wrap(space, &raw);
            if new.generation != target {
                // Only a rotation adds generations, and this one holds the rotation lock.
                return Err(MasterKeyError::UnknownGeneration(target).into());
            }
            match self.store.replace_storage_key(space, &stored, new).await? {
                Cas::Done(()) => return Ok(true),
                Cas::Conflict => match self.store.storage_key(space).await? {
                    None => return Ok(false),
                    Some(current) => stored = current,
                },
            }
        }
    }

    /// Walks every stored key once at start: wraps legacy raw keys under the current generation,
    /// checks that wrapped ones open, refuses keys under generations the file does not hold.
    async fn survey_and_wrap_legacy(&self) -> Result<Survey, StorageKeyError> {
        let mut survey = Survey::default();
        let mut after: Option<SpaceId> = None;
        loop {
            let page = self.store.storage_keys(after.as_ref(), PAGE).await?;
            let full = page.len() == PAGE;
            after = page.last().map(|(space, _)| *space);
            for (space, stored) in page {
                match &stored {
                    StoredKey::Legacy(_) => {
                        if self.rewrap(&space, stored, self.master.current()).await? {
                            survey.legacy_wrapped += 1;
                        }
                    }
                    StoredKey::Wrapped(wrapped) => {
                        survey.wrapped += 1;
                        match self.master.unwrap(&space, wrapped) {
                            Ok(_) => {}
                            Err(MasterKeyError::Unwrap) => survey.failed += 1,
                            Err(error) => return Err(error.into()),
                        }
                    }
                }
            }
            if !full {
                return Ok(survey);
            }
        }
    }

    fn publish_gauges(&self) {
        metrics::gauge!("haven_master_key_generations").set(self.master.generations().len() as f64);
        metrics::gauge!("haven_master_key_rotation_due").set(if self.rotation_due() {
            1.0
        } else {
            0.0
        });
    }

    /// Runs rotations in the background whenever one is due: after an erasure (debounced), at
    /// start when the file says one is due or holds several generations, and again after a
    /// failure (with backoff). Logs carry counts and generation numbers only.
    pub fn spawn_rotations(self: &Arc<Self>, policy: RotationPolicy) -> JoinHandle<()> {
        let keys = Arc::clone(self);
        tokio::spawn(async move {
            let mut backoff = policy.retry_min;
            loop {
                if !keys.rotation_due() {
                    keys.wake.notified().await;
                }
                tokio::time::sleep(policy.debounce).await;
                match keys.rotate().await {
                    Ok(report) => {
                        tracing::info!(
                            generation = report.generation,
                            rewrapped = report.rewrapped,
                            retired = ?report.retired,
                            "master key rotated"
                        );
                        backoff = policy.retry_min;
                    }
                    Err(error) => {
                        tracing::warn!(%error, retry_in = ?backoff, "master-key rotation failed");
                        tokio::time::sleep(backoff).await;
                        backoff = backoff.saturating_mul(2).min(policy.retry_max);
                    }
                }
            }
        })
    }
}

/// Whether any stored key is wrapped (then the master-key file must exist already).
async fn holds_wrapped_keys(store: &dyn Store) -> Result<bool, StoreError> {
    let mut after: Option<SpaceId> = None;
    loop {
        let page = store.storage_keys(after.as_ref(), PAGE).await?;
        if page
            .iter()
            .any(|(_, key)| matches!(key, StoredKey::Wrapped(_)))
        {
            return Ok(true);
        }
        if page.len() < PAGE {
            return Ok(false);
        }
        after = page.last().map(|(space, _)| *space);
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use haven_protocol::HexId;

    use super::*;
    use crate::master_key::{FILE_NAME, read_generations};
    use crate::store::fixtures::{account, device};
    use crate::store::kv::{KvBatch, KvEngine as _, keys as kv_keys};
    use crate::store::memory::MemoryStore;

    fn space(n: u8) -> SpaceId {
        SpaceId::Private(account(n).space_id)
    }

    fn sled(dir: &Path) -> Arc<dyn Store> {
        Arc::new(crate::store::fixtures::reopen_sled(dir))
    }

    async fn open(store: &Arc<dyn Store>, dir: &Path) -> Result<StorageKeys, StorageKeyError> {
        StorageKeys::open(
            Arc::clone(store),
            &MasterKeySource::File(dir.join(FILE_NAME)),
        )
        .await
    }

    /// Creates accounts `ns` and returns their raw storage keys.
    async fn create(keys: &StorageKeys, ns: &[u8]) -> Vec<Zeroizing<[u8; 32]>> {
        let mut raw = Vec::new();
        for &n in ns {
            let created = keys
                .create_account(&*keys.store, account(n), device(n))
                .await
                .unwrap();
            assert_eq!(created, Cas::Done(()));
            raw.push(keys.open_key(&space(n)).await.unwrap().unwrap());
        }
        raw
    }

    async fn generation_of(store: &dyn Store, n: u8) -> Option<u32> {
        store
            .storage_key(&space(n))
            .await
            .unwrap()
            .unwrap()
            .generation()
    }

    #[tokio::test]
    async fn keys_are_stored_wrapped_and_open_to_the_same_key() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let keys = StorageKeys::open(Arc::clone(&store), &MasterKeySource::Ephemeral)
            .await
            .unwrap();
        let raw = create(&keys, &[1, 2]).await;
        assert_ne!(*raw[0], *raw[1]);
        let Some(StoredKey::Wrapped(wrapped)) = store.storage_key(&space(1)).await.unwrap() else {
            panic!("the store must hold a wrapped key");
        };
        assert_eq!(wrapped.generation, 1);
        assert!(!wrapped.sealed.windows(32).any(|w| w == raw[0].as_slice()));
        assert_eq!(keys.open_key(&SpaceId::Public).await.unwrap(), None);
        assert_eq!(keys.open_key(&space(9)).await.unwrap(), None);
    }

    #[tokio::test]
    async fn rotation_rewraps_every_key_and_retires_older_generations() {
        let dir = tempfile::tempdir().unwrap();
        let store = sled(dir.path());
        let keys = open(&store, dir.path()).await.unwrap();
        let raw = create(&keys, &[1, 2, 3]).await;
        store
            .erase_account(&account(2).user_id, None)
            .await
            .unwrap();
        keys.erased().await;
        assert!(keys.rotation_due());
        let old_master = read_generations(&dir.path().join(FILE_NAME)).unwrap()[&1].clone();

        let report = keys.rotate().await.unwrap();
        assert_eq!(
            report,
            RotationReport {
                generation: 2,
                rewrapped: 2,
                retired: vec![1],
            }
        );
        assert!(!keys.rotation_due());
        assert_eq!(keys.master().generations(), vec![2]);
        for (n, raw) in [(1, &raw[0]), (3, &raw[2])] {
            assert_eq!(generation_of(&*store, n).await, Some(2));
            assert_eq!(*keys.open_key(&space(n)).await.unwrap().unwrap(), **raw);
        }
        let on_disk = read_generations(&dir.path().join(FILE_NAME)).unwrap();
        assert_eq!(on_disk.keys().copied().collect::<Vec<_>>(), vec![2]);
        assert_ne!(on_disk[&2], old_master);
        // Creations after the rotation use the new generation.
        create(&keys, &[4]).await;
        assert_eq!(generation_of(&*store, 4).await, Some(2));
    }

    /// A crash between "generation G+1 added, some keys re-wrapped" and "G removed": every key
    /// still opens after a restart, and the next rotation finishes the job.
    #[tokio::test]
    async fn a_restart_in_the_middle_of_a_rotation_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let raw = {
            let store = sled(dir.path());
            let keys = open(&store, dir.path()).await.unwrap();
            let raw = create(&keys, &[1, 2, 3]).await;
            // The first steps of a rotation, by hand, then the process "dies".
            let target = keys.master().add_generation().await.unwrap();
            let stored = store.storage_key(&space(1)).await.unwrap().unwrap();
            assert!(keys.rewrap(&space(1), stored, target).await.unwrap());
            store.flush().await.unwrap();
            raw
        };
        let store = sled(dir.path());
        let keys = open(&store, dir.path()).await.unwrap();
        assert_eq!(keys.master().generations(), vec![1, 2]);
        assert!(keys.rotation_due());
        assert_eq!(generation_of(&*store, 1).await, Some(2));
        assert_eq!(generation_of(&*store, 2).await, Some(1));
        for (n, raw) in [1, 2, 3].into_iter().zip(&raw) {
            assert_eq!(*keys.open_key(&space(n)).await.unwrap().unwrap(), **raw);
        }
        let report = keys.rotate().await.unwrap();
        assert_eq!((report.generation, report.retired), (3, vec![1, 2]));
        assert_eq!(report.rewrapped, 3);
        drop(keys);
        drop(store);
        let store = sled(dir.path());
        let keys = open(&store, dir.path()).await.unwrap();
        assert_eq!(keys.master().generations(), vec![3]);
        assert!(!keys.rotation_due());
        for (n, raw) in [1, 2, 3].into_iter().zip(&raw) {
            assert_eq!(*keys.open_key(&space(n)).await.unwrap().unwrap(), **raw);
        }
    }

    #[tokio::test]
    async fn accounts_created_during_a_rotation_stay_readable() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let keys = Arc::new(
            StorageKeys::open(Arc::clone(&store), &MasterKeySource::Ephemeral)
                .await
                .unwrap(),
        );
        create(&keys, &(1..=40).collect::<Vec<_>>()).await;
        let creating = {
            let keys = Arc::clone(&keys);
            tokio::spawn(async move { create(&keys, &(41..=80).collect::<Vec<_>>()).await })
        };
        let rotations = {
            let keys = Arc::clone(&keys);
            tokio::spawn(async move {
                for _ in 0..3 {
                    keys.rotate().await.unwrap();
                    tokio::task::yield_now().await;
                }
            })
        };
        let raw = creating.await.unwrap();
        rotations.await.unwrap();
        assert_eq!(keys.master().generations(), vec![4]);
        for (n, raw) in (41..=80u8).zip(&raw) {
            assert_eq!(*keys.open_key(&space(n)).await.unwrap().unwrap(), **raw);
        }
        for n in 1..=80u8 {
            assert_eq!(generation_of(&*store, n).await, Some(4), "account {n}");
        }
    }

    /// Sled directories from before master keys hold raw keys: the first start creates the
    /// file and wraps them (once); the raw key still opens the same bodies.
    #[tokio::test]
    async fn raw_keys_of_an_older_data_directory_are_wrapped_at_start() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = sled(dir.path());
            let keys = StorageKeys::open(Arc::clone(&store), &MasterKeySource::Ephemeral)
                .await
                .unwrap();
            create(&keys, &[1, 2]).await;
        }
        // What the previous version wrote: raw 32-byte keys.
        {
            let store = crate::store::fixtures::reopen_sled(dir.path());
            let mut batch = KvBatch::new();
            for n in [1, 2] {
                batch.put(kv_keys::storage_key(&space(n)), vec![n; 32]);
            }
            store.engine().apply(batch).unwrap();
            store.flush().await.unwrap();
        }
        assert!(!dir.path().join(FILE_NAME).exists());
        let store = sled(dir.path());
        let keys = open(&store, dir.path()).await.unwrap();
        assert!(dir.path().join(FILE_NAME).exists());
        for n in [1, 2] {
            assert_eq!(generation_of(&*store, n).await, Some(1));
            assert_eq!(*keys.open_key(&space(n)).await.unwrap().unwrap(), [n; 32]);
        }
        // A second start finds nothing left to wrap.
        drop(keys);
        let keys = open(&store, dir.path()).await.unwrap();
        assert_eq!(keys.master().generations(), vec![1]);
    }

    /// How long a rotation and a start take with many accounts on sled (a measurement, not a
    /// check): `HAVEN_MEASURE_ACCOUNTS=10000 cargo test -p haven-server --release --lib
    /// rotation_cost -- --ignored --nocapture`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "a measurement, not a check; run by hand"]
    async fn rotation_cost_on_sled() {
        let accounts: u32 = std::env::var("HAVEN_MEASURE_ACCOUNTS")
            .ok()
            .and_then(|text| text.parse().ok())
            .unwrap_or(10_000);
        let dir = tempfile::tempdir().unwrap();
        let store = sled(dir.path());
        let keys = open(&store, dir.path()).await.unwrap();
        let started = std::time::Instant::now();
        for n in 0..accounts {
            let mut id = [0u8; 16];
            id[..4].copy_from_slice(&n.to_be_bytes());
            let mut record = account(1);
            record.user_id = HexId(id);
            let mut space_id = id;
            space_id[15] = 0xee;
            record.space_id = HexId(space_id);
            record.username_key[..4].copy_from_slice(&n.to_be_bytes());
            let mut first = device(1);
            first.user_id = record.user_id;
            let created = keys.create_account(&*keys.store, record, first).await;
            assert_eq!(created.unwrap(), Cas::Done(()));
        }
        store.flush().await.unwrap();
        println!("created {accounts} accounts in {:?}", started.elapsed());
        let started = std::time::Instant::now();
        let report = keys.rotate().await.unwrap();
        println!(
            "rotation: {} keys re-wrapped in {:?}",
            report.rewrapped,
            started.elapsed()
        );
        drop(keys);
        let started = std::time::Instant::now();
        open(&store, dir.path()).await.unwrap();
        println!("start-up walk of {accounts} keys: {:?}", started.elapsed());
    }

    #[tokio::test]
    async fn a_missing_or_foreign_master_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = sled(dir.path());
        let keys = open(&store, dir.path()).await.unwrap();
        create(&keys, &[1]).await;
        drop(keys);
        let file = dir.path().join(FILE_NAME);
        let kept = std::fs::read(&file).unwrap();
        std::fs::remove_file(&file).unwrap();
        let error = open(&store, dir.path()).await.unwrap_err();
        assert!(
            matches!(
                error,
                StorageKeyError::Master(MasterKeyError::Missing { .. })
            ),
            "{error}"
        );
        assert!(!file.exists(), "no new file may replace a lost one");
        // Another server's file (same generation number, another key) does not open the keys.
        let other = tempfile::tempdir().unwrap();
        MasterKeys::open(&other.path().join(FILE_NAME), true)
            .await
            .unwrap();
        std::fs::copy(other.path().join(FILE_NAME), &file).unwrap();
        let error = open(&store, dir.path()).await.unwrap_err();
        assert!(matches!(error, StorageKeyError::Mismatch(1)), "{error}");
        std::fs::write(&file, &kept).unwrap();
        open(&store, dir.path()).await.unwrap();
    }

    /// An erasure makes a rotation due, durably: a restart before the rotation still rotates,
    /// in the background.
    #[tokio::test]
    async fn a_due_rotation_survives_a_restart_and_runs_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = sled(dir.path());
            let keys = open(&store, dir.path()).await.unwrap();
            create(&keys, &[1, 2]).await;
            store
                .erase_account(&account(1).user_id, None)
                .await
                .unwrap();
            store.flush().await.unwrap();
            keys.erased().await;
        }
        let store = sled(dir.path());
        let keys = Arc::new(open(&store, dir.path()).await.unwrap());
        assert!(keys.rotation_due());
        let task = keys.spawn_rotations(RotationPolicy {
            debounce: Duration::ZERO,
            retry_min: Duration::from_millis(10),
            retry_max: Duration::from_millis(10),
        });
        let rotated = tokio::time::timeout(Duration::from_secs(10), async {
            while keys.master().generations() != vec![2] {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert!(rotated.is_ok(), "{:?}", keys.master().generations());
        assert!(!keys.rotation_due());
        assert_eq!(generation_of(&*store, 2).await, Some(2));
        // A later erasure wakes it again.
        keys.erased().await;
        let rotated = tokio::time::timeout(Duration::from_secs(10), async {
            while keys.master().generations() != vec![3] {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert!(rotated.is_ok(), "{:?}", keys.master().generations());
        task.abort();
    }
}
