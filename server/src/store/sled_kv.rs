//! The embedded default engine: sled 0.34.7 (pinned; see docs/ARCHITECTURE.md).
//!
//! Durability (research/reliability-security.md (c)): a write is only known to survive a crash
//! after `flush_async` returns, so this engine reports [`Durability::AfterFlush`] and the sync
//! layer acknowledges envelopes only after a (group) flush. sled's own background flush still
//! runs every 500 ms; it narrows the window, it does not replace the explicit flush.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::kv::keys::record_kind;
use super::kv::{KvBatch, KvEngine, KvPair, KvStore};
use super::{Durability, StoreError, StoreResult};

/// sled's own default page cache is 1 GiB, far more than a small server should reserve.
pub const DEFAULT_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// A sled database used as one ordered keyspace (its default tree).
#[derive(Debug)]
pub struct SledKv {
    db: sled::Db,
    dir: PathBuf,
}

impl SledKv {
    /// Opens (or creates) the database in `dir` with a page cache of `cache_bytes`.
    pub fn open(dir: &Path, cache_bytes: u64) -> StoreResult<Self> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .open()
            .map_err(|error| open_error(dir, error))?;
        Ok(Self {
            db,
            dir: dir.to_path_buf(),
        })
    }

    /// The directory the database lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes every pair into a new database in `target` (which must not exist yet), flushes it
    /// and reads both back pair by pair. sled 0.34 never gives back the space of deleted or
    /// rewritten pages; a copy holds only what is live (`haven-server compact`).
    pub fn copy_into(&self, target: &Path, cache_bytes: u64) -> StoreResult<CopyReport> {
        if target.exists() {
            return Err(StoreError::Engine(format!(
                "{} exists already",
                target.display()
            )));
        }
        let copy = Self::open(target, cache_bytes)?;
        let mut report = CopyReport::default();
        let mut batch = sled::Batch::default();
        let mut batch_bytes = 0usize;
        for pair in self.db.iter() {
            let (key, value) = pair.map_err(engine_error)?;
            report.count(&key, &value);
            batch_bytes += key.len() + value.len();
            batch.insert(key, value);
            if batch_bytes >= COPY_BATCH_BYTES {
                copy.db
                    .apply_batch(std::mem::take(&mut batch))
                    .map_err(engine_error)?;
                batch_bytes = 0;
            }
        }
        copy.db.apply_batch(batch).map_err(engine_error)?;
        copy.db.flush().map_err(engine_error)?;
        let mut original = self.db.iter();
        let mut copied = copy.db.iter();
        loop {
            match (original.next(), copied.next()) {
                (None, None) => break,
                (Some(a), Some(b)) => {
                    let (a, b) = (a.map_err(engine_error)?, b.map_err(engine_error)?);
                    if a != b {
                        return Err(StoreError::Corrupt(
                            "the copy differs from the original".into(),
                        ));
                    }
                }
                _ => {
                    return Err(StoreError::Corrupt(
                        "the copy and the original hold different numbers of pairs".into(),
                    ));
                }
            }
        }
        Ok(report)
    }
}

/// Bytes of pairs written per batch while copying.
const COPY_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// What [`SledKv::copy_into`] copied.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CopyReport {
    pub pairs: u64,
    /// Keys and values, without sled's own overhead.
    pub bytes: u64,
    /// The same by record kind ([`record_kind`]), to see what a store's bytes are.
    pub by_kind: BTreeMap<&'static str, KindTally>,
}

impl CopyReport {
    fn count(&mut self, key: &[u8], value: &[u8]) {
        self.pairs += 1;
        self.bytes += (key.len() + value.len()) as u64;
        let tally = self.by_kind.entry(record_kind(key)).or_default();
        tally.pairs += 1;
        tally.key_bytes += key.len() as u64;
        tally.value_bytes += value.len() as u64;
    }
}

/// Pairs and their bytes of one record kind.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KindTally {
    pub pairs: u64,
    pub key_bytes: u64,
    pub value_bytes: u64,
}

/// sled refuses a second opener with an io error "could not acquire lock on …" (an exclusive
/// `flock` on its `db` file); say what that means for an operator.
fn open_error(dir: &Path, error: sled::Error) -> StoreError {
    match &error {
        sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
            StoreError::Engine(format!(
                "data directory {} is in use by another haven-server (sled: {io})",
                dir.display()
            ))
        }
        _ => StoreError::Engine(format!(
            "cannot open the data directory {}: {error}",
            dir.display()
        )),
    }
}

fn engine_error(error: sled::Error) -> StoreError {
    match error {
        sled::Error::Corruption { .. } => StoreError::Corrupt(format!("sled: {error}")),
        other => StoreError::Engine(format!("sled: {other}")),
    }
}

fn collect_pairs(
    iter: impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>,
) -> StoreResult<Vec<KvPair>> {
    iter.map(|pair| {
        pair.map(|(key, value)| (key.to_vec(), value.to_vec()))
            .map_err(engine_error)
    })
    .collect()
}

impl KvEngine for SledKv {
    fn get(&self, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        self.db
            .get(key)
            .map(|value| value.map(|value| value.to_vec()))
            .map_err(engine_error)
    }

    fn scan_prefix(&self, prefix: &[u8]) -> StoreResult<Vec<KvPair>> {
        collect_pairs(self.db.scan_prefix(prefix))
    }

    fn scan_prefix_keys(&self, prefix: &[u8]) -> StoreResult<Vec<Vec<u8>>> {
        self.db
            .scan_prefix(prefix)
            .keys()
            .map(|key| key.map(|key| key.to_vec()).map_err(engine_error))
            .collect()
    }

    fn scan_from(&self, prefix: &[u8], start: &[u8], limit: usize) -> StoreResult<Vec<KvPair>> {
        let start = start.max(prefix);
        collect_pairs(
            self.db
                .range(start..)
                .take_while(|pair| {
                    pair.as_ref()
                        .map_or(true, |(key, _)| key.starts_with(prefix))
                })
                .take(limit),
        )
    }

    fn apply(&self, batch: KvBatch) -> StoreResult<()> {
        let mut sled_batch = sled::Batch::default();
        for (key, value) in batch.into_writes() {
            match value {
                Some(value) => sled_batch.insert(key, value),
                None => sled_batch.remove(key),
            }
        }
        // `apply_batch` seals the batch in sled's log, so recovery restores all of it or none.
        self.db.apply_batch(sled_batch).map_err(engine_error)
    }

    async fn flush(&self) -> StoreResult<()> {
        self.db.flush_async().await.map(drop).map_err(engine_error)
    }

    fn durability(&self) -> Durability {
        Durability::AfterFlush
    }
}

/// The storage contract over sled.
pub type SledStore = KvStore<SledKv>;

impl KvStore<SledKv> {
    /// Opens (or creates) the store in `dir`; see [`SledKv::open`] and [`DEFAULT_CACHE_BYTES`].
    pub fn open(dir: &Path, cache_bytes: u64) -> StoreResult<Self> {
        SledKv::open(dir, cache_bytes).map(Self::with_engine)
    }
}
