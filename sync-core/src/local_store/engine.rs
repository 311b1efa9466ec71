//! The storage engine under the local store: an ordered key-value map of opaque bytes with atomic,
//! durable multi-operation commits. It sees only stored keys and sealed values (see `cipher`).
//!
//! Two implementations, one conformance suite (`tests.rs`, after matrix-rust-sdk's
//! `statestore_integration_tests!`): [`RedbEngine`](super::redb_engine::RedbEngine) on devices and
//! [`MemoryEngine`] for tests and the in-memory store.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// A record as the engine holds it: (stored key, stored value).
pub type StoredRecord = (Vec<u8>, Vec<u8>);

/// One write of a commit.
#[derive(Clone, PartialEq, Eq)]
pub enum Op {
    Put { key: Vec<u8>, value: Vec<u8> },
    Delete { key: Vec<u8> },
}

impl Op {
    /// Bytes this op carries, to bound the size of a group commit.
    pub(crate) fn size(&self) -> usize {
        match self {
            Op::Put { key, value } => key.len() + value.len(),
            Op::Delete { key } => key.len(),
        }
    }
}

impl fmt::Debug for Op {
    // Values are ciphertext, but there's no reason to print them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Put { key, value } => write!(
                f,
                "Put({} key bytes, {} value bytes)",
                key.len(),
                value.len()
            ),
            Op::Delete { key } => write!(f, "Delete({} key bytes)", key.len()),
        }
    }
}

/// Why an engine operation failed. `Clone`, because one failed group commit answers every
/// caller whose batch was in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// Another process, or another handle in this process, holds the database open.
    #[error("the database is already open elsewhere")]
    InUse,
    /// The database file failed its checksums.
    #[error("the database file is corrupted: {0}")]
    Corrupted(String),
    /// Any other failure of the backend (I/O, full disk, a closed database).
    #[error("storage engine failure: {0}")]
    Backend(String),
    /// A failure injected by a test through [`Engine::fail_commit_after`].
    #[error("injected commit failure")]
    Injected,
}

/// An ordered map of bytes with atomic, durable commits.
pub trait Engine: Send + Sync + fmt::Debug {
    /// The value stored under `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError>;

    /// Every record whose key starts with the byte `tag`, in key order.
    fn scan_table(&self, tag: u8) -> Result<Vec<StoredRecord>, EngineError>;

    /// Whether the map holds no record at all.
    fn is_empty(&self) -> Result<bool, EngineError>;

    /// Applies `ops` in order, all or nothing, and returns only once they are durable (for a
    /// persistent engine: fsynced). Later ops on the same key win.
    fn commit(&self, ops: Vec<Op>) -> Result<(), EngineError>;

    /// Makes everything committed so far durable. Commits already are; this is for callers that
    /// want an explicit barrier (and for engines that might buffer in future).
    fn flush(&self) -> Result<(), EngineError>;

    /// How many commits reached the medium: with redb, one fsync'd transaction each. Lets tests
    /// check that group commit merges, and the app report it.
    fn commits(&self) -> u64;

    /// Test hook: the next commit fails after applying `ops` of its operations (or all of them,
    /// if it has fewer) inside its transaction, as if the disk had failed there; it must leave
    /// nothing behind.
    fn fail_commit_after(&self, ops: usize);

    /// Releases the database, reporting errors that dropping it would swallow.
    fn close(self: Box<Self>) -> Result<(), EngineError>;
}

/// The range of stored keys of one table: `[tag, tag + 1)`.
pub(crate) fn table_range(tag: u8) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let end = match tag.checked_add(1) {
        Some(next) => Bound::Excluded(vec![next]),
        None => Bound::Unbounded,
    };
    (Bound::Included(vec![tag]), end)
}

/// A one-shot failure point shared by the engines (`usize::MAX` = disarmed).
#[derive(Debug)]
pub(crate) struct FailPoint(AtomicUsize);

impl Default for FailPoint {
    fn default() -> Self {
        Self(AtomicUsize::new(usize::MAX))
    }
}

impl FailPoint {
    pub(crate) fn arm(&self, after_ops: usize) {
        self.0.store(after_ops, Ordering::SeqCst);
    }

    /// Takes the armed value, disarming it: `Some(n)` means fail after `n` ops.
    pub(crate) fn take(&self) -> Option<usize> {
        match self.0.swap(usize::MAX, Ordering::SeqCst) {
            usize::MAX => None,
            n => Some(n),
        }
    }
}

/// A `BTreeMap` behind a mutex. Commits are atomic (staged, then applied under one lock) and
/// trivially "durable" for the life of the process.
#[derive(Debug, Default)]
pub struct MemoryEngine {
    map: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
    commits: AtomicU64,
    fail: FailPoint,
}

impl MemoryEngine {
    pub fn new() -> Self {
        Self::default()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<Vec<u8>, Vec<u8>>> {
        // A panic elsewhere cannot leave the map half-updated: commits mutate it only after
        // staging succeeded, in a loop that cannot panic.
        self.map.lock().unwrap_or_else(|poison| poison.into_inner())
    }
}

impl Engine for MemoryEngine {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        Ok(self.map().get(key).cloned())
    }

    fn scan_table(&self, tag: u8) -> Result<Vec<StoredRecord>, EngineError> {
        Ok(self
            .map()
            .range(table_range(tag))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn is_empty(&self) -> Result<bool, EngineError> {
        Ok(self.map().is_empty())
    }

    fn commit(&self, ops: Vec<Op>) -> Result<(), EngineError> {
        // The only failure here is an injected one, and it must leave the map untouched, as a
        // failed redb transaction does: fail before the first change.
        if self.fail.take().is_some() {
            return Err(EngineError::Injected);
        }
        let mut map = self.map();
        for op in ops {
            match op {
                Op::Put { key, value } => {
                    map.insert(key, value);
                }
                Op::Delete { key } => {
                    map.remove(&key);
                }
            }
        }
        self.commits.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn flush(&self) -> Result<(), EngineError> {
        Ok(())
    }

    fn commits(&self) -> u64 {
        self.commits.load(Ordering::SeqCst)
    }

    fn fail_commit_after(&self, ops: usize) {
        self.fail.arm(ops);
    }

    fn close(self: Box<Self>) -> Result<(), EngineError> {
        Ok(())
    }
}
