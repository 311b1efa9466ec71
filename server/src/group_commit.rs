//! Group commit: every ack waits for a durable flush, and concurrent writers share one.
//!
//! Writers send a waiter to one flusher task. The flusher takes every waiter queued so far, calls
//! [`Store::flush`] once, and answers them all; writers that arrive during a flush form the next
//! group. After a failed flush the server stops acknowledging writes (sled cannot promise what a
//! failed flush left behind) and `/healthz` reports the failure, so an orchestrator restarts it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use crate::store::{Durability, Store};

type Waiter = oneshot::Sender<bool>;

/// Handle to the flusher task.
#[derive(Debug, Clone)]
pub struct GroupCommit {
    queue: Option<mpsc::UnboundedSender<Waiter>>,
    failed: Arc<AtomicBool>,
}

/// The store failed to flush; nothing more is acknowledged until restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("storage flush failed; writes are refused until the server restarts")]
pub struct FlushFailed;

impl GroupCommit {
    /// Starts the flusher when the store needs one (sled); a no-op handle otherwise.
    pub fn start(store: Arc<dyn Store>) -> Self {
        let failed = Arc::new(AtomicBool::new(false));
        if store.durability() == Durability::OnCommit {
            return Self {
                queue: None,
                failed,
            };
        }
        let (queue, mut waiters) = mpsc::unbounded_channel::<Waiter>();
        let flag = Arc::clone(&failed);
        tokio::spawn(async move {
            while let Some(first) = waiters.recv().await {
                let mut group = vec![first];
                while let Ok(next) = waiters.try_recv() {
                    group.push(next);
                }
                let ok = !flag.load(Ordering::SeqCst) && {
                    let started = Instant::now();
                    let result = store.flush().await;
                    metrics::histogram!("haven_flush_seconds")
                        .record(started.elapsed().as_secs_f64());
                    metrics::histogram!("haven_flush_group_size").record(group.len() as f64);
                    match result {
                        Ok(()) => true,
                        Err(error) => {
                            tracing::error!(%error, "flush failed; refusing further writes");
                            flag.store(true, Ordering::SeqCst);
                            false
                        }
                    }
                };
                for waiter in group {
                    // A writer that gave up (its request was cancelled) is no concern of ours.
                    let _ = waiter.send(ok);
                }
            }
        });
        Self {
            queue: Some(queue),
            failed,
        }
    }

    /// Returns once every write that completed before this call is durable.
    pub async fn flush(&self) -> Result<(), FlushFailed> {
        if self.failed.load(Ordering::SeqCst) {
            return Err(FlushFailed);
        }
        let Some(queue) = &self.queue else {
            return Ok(());
        };
        let (waiter, done) = oneshot::channel();
        queue.send(waiter).map_err(|_| FlushFailed)?;
        match done.await {
            Ok(true) => Ok(()),
            _ => Err(FlushFailed),
        }
    }

    /// Whether a flush has failed since start.
    pub fn has_failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    /// Whether acks need a flush at all.
    pub fn needs_flush(&self) -> bool {
        self.queue.is_some()
    }
}

impl From<FlushFailed> for crate::error::ApiError {
    fn from(error: FlushFailed) -> Self {
        Self::new(haven_protocol::ErrorCode::Unavailable, error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::store::sled_kv::SledStore;
    use crate::store::spy::SpyStore;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writers_share_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let sled: Arc<dyn Store> = Arc::new(SledStore::open(dir.path(), 8 << 20).unwrap());
        let spy = Arc::new(SpyStore::over(sled, Duration::from_millis(20)));
        let commits = GroupCommit::start(Arc::clone(&spy) as Arc<dyn Store>);
        assert!(commits.needs_flush());
        let writers: Vec<_> = (0..32)
            .map(|_| {
                let commits = commits.clone();
                tokio::spawn(async move { commits.flush().await })
            })
            .collect();
        for writer in writers {
            writer.await.unwrap().unwrap();
        }
        let flushes = spy.flushes();
        assert!(
            (1..32).contains(&flushes),
            "32 writers took {flushes} flushes"
        );
    }

    #[tokio::test]
    async fn memory_stores_need_no_flush() {
        let commits = GroupCommit::start(Arc::new(crate::store::memory::MemoryStore::new()));
        assert!(!commits.needs_flush());
        commits.flush().await.unwrap();
    }
}
