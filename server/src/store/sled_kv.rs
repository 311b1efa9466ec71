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
        // No background flusher: the copy flushes itself (`COPY_FLUSH_BYTES`) and is swapped in
        // only after its last flush. The setting is not stored in the directory.
        let copy = sled::Config::new()
            .path(target)
            .cache_capacity(cache_bytes)
            .flush_every_ms(None)
            .open()
            .map_err(|error| open_error(target, error))?;
        let copy = Self {
            db: copy,
            dir: target.to_path_buf(),
        };
        let mut report = CopyReport::default();
        let mut chunk = Vec::new();
        let mut chunk_bytes = 0usize;
        for pair in self.db.iter() {
            let (key, value) = pair.map_err(engine_error)?;
            report.count(&key, &value);
            chunk_bytes += key.len() + value.len();
            chunk.push((key, value));
            if chunk_bytes >= COPY_CHUNK_BYTES {
                copy.insert_spread(&chunk)?;
                chunk.clear();
                chunk_bytes = 0;
            }
        }
        copy.insert_spread(&chunk)?;
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

    /// Inserts `pairs` (ascending) in [`COPY_PASSES`] ascending passes over every
    /// `COPY_PASSES`-th pair, flushing every [`COPY_FLUSH_BYTES`]. Plain inserts rather than a
    /// batch: the copy needs no atomicity (it is swapped in only once flushed and checked), and
    /// a batch pins sled's log until it is sealed, which measured a larger copy.
    fn insert_spread(&self, pairs: &[(sled::IVec, sled::IVec)]) -> StoreResult<()> {
        let mut unflushed = 0usize;
        for pass in 0..COPY_PASSES {
            for (key, value) in pairs.iter().skip(pass).step_by(COPY_PASSES) {
                self.db.insert(key, value.clone()).map_err(engine_error)?;
                unflushed += key.len() + value.len();
                if unflushed >= COPY_FLUSH_BYTES {
                    self.db.flush().map_err(engine_error)?;
                    unflushed = 0;
                }
            }
        }
        Ok(())
    }
}

/// Bytes of pairs read ahead and written per round while copying (memory bound of a copy).
const COPY_CHUNK_BYTES: usize = 4 * 1024 * 1024;

/// Passes over each chunk while copying. In key order, sled writes each leaf page several
/// times as it fills and splits (small pairs, like the `l/S/i/` records, most of all), and the
/// dead versions stay in the log's segments. Spread over passes and flushed often (below), the
/// copy of the benchmark's directory came out about a third smaller (BENCHMARKS.md, S1).
const COPY_PASSES: usize = 16;

/// Bytes of pairs copied between two flushes. sled reuses a segment its cleaner emptied only
/// once the writes that moved its live pages are on disk; without flushes the copy grows the
/// file instead, by how much depends on thread timing (measured 7 to 11 MB for the same pairs).
const COPY_FLUSH_BYTES: usize = 64 * 1024;

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

#[cfg(test)]
mod tests {
    use haven_protocol::SpaceId;

    use super::*;
    use crate::store::kv::keys;

    #[test]
    fn a_copy_of_several_chunks_holds_every_pair_and_counts_them_by_kind() {
        let dirs = tempfile::tempdir().unwrap();
        let source = SledKv::open(&dirs.path().join("source"), 8 << 20).unwrap();
        // 2 KiB values: the copy reads more than one chunk, and the last one is partial.
        let count = COPY_CHUNK_BYTES * 5 / 2 / 2048;
        let mut batch = KvBatch::new();
        for i in 0..count {
            batch.put(
                format!("env/{i:06}").into_bytes(),
                vec![(i % 251) as u8; 2048],
            );
        }
        batch.put(keys::head(&SpaceId::Public), 7u64.to_be_bytes().to_vec());
        source.apply(batch).unwrap();
        let target = dirs.path().join("copy");
        let report = source.copy_into(&target, 8 << 20).unwrap();
        let pairs = u64::try_from(count).unwrap();
        assert_eq!(report.pairs, pairs + 1);
        assert_eq!(
            report.by_kind.get("other"),
            Some(&KindTally {
                pairs,
                key_bytes: pairs * 10,
                value_bytes: pairs * 2048,
            })
        );
        assert_eq!(
            report.by_kind.get("l/S/h").map(|tally| tally.pairs),
            Some(1)
        );
        let copy = crate::store::fixtures::reopen_sled(&target);
        assert_eq!(
            copy.engine().scan_prefix(b"").unwrap(),
            source.scan_prefix(b"").unwrap()
        );
    }
}
