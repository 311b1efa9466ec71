//! An in-memory [`KvEngine`] for tests and throwaway servers. It keeps nothing across restarts,
//! so it promises nothing beyond "a returned write is visible" ([`Durability::OnCommit`]).

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{PoisonError, RwLock};

use super::kv::{KvBatch, KvEngine, KvPair, KvStore};
use super::{Durability, StoreError, StoreResult};

/// A sorted map behind a lock. A batch applies under the write lock, so readers see all of it
/// or none of it.
#[derive(Debug, Default)]
pub struct MemoryKv {
    map: RwLock<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl MemoryKv {
    pub fn new() -> Self {
        Self::default()
    }
}

/// A panic while holding the lock could have left a batch half-applied, so a poisoned map is
/// an engine failure, not something to read through.
fn poisoned<T>(_: PoisonError<T>) -> StoreError {
    StoreError::Engine("the in-memory store's lock is poisoned".into())
}

impl KvEngine for MemoryKv {
    fn get(&self, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        Ok(self.map.read().map_err(poisoned)?.get(key).cloned())
    }

    fn scan_prefix(&self, prefix: &[u8]) -> StoreResult<Vec<KvPair>> {
        self.scan_from(prefix, prefix, usize::MAX)
    }

    fn scan_prefix_keys(&self, prefix: &[u8]) -> StoreResult<Vec<Vec<u8>>> {
        let map = self.map.read().map_err(poisoned)?;
        Ok(map
            .range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, _)| key.clone())
            .collect())
    }

    fn scan_from(&self, prefix: &[u8], start: &[u8], limit: usize) -> StoreResult<Vec<KvPair>> {
        // Starting below the prefix would only walk keys the filter drops.
        let start = start.max(prefix);
        let map = self.map.read().map_err(poisoned)?;
        Ok(map
            .range::<[u8], _>((Bound::Included(start), Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .take(limit)
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect())
    }

    fn apply(&self, batch: KvBatch) -> StoreResult<()> {
        let mut map = self.map.write().map_err(poisoned)?;
        for (key, value) in batch.into_writes() {
            match value {
                Some(value) => map.insert(key, value),
                None => map.remove(&key),
            };
        }
        Ok(())
    }

    async fn flush(&self) -> StoreResult<()> {
        Ok(())
    }

    fn durability(&self) -> Durability {
        Durability::OnCommit
    }
}

/// The storage contract in memory.
pub type MemoryStore = KvStore<MemoryKv>;

impl KvStore<MemoryKv> {
    /// An empty store.
    pub fn new() -> Self {
        Self::with_engine(MemoryKv::new())
    }
}

impl Default for KvStore<MemoryKv> {
    fn default() -> Self {
        Self::new()
    }
}
