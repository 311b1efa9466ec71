//! Group commit: concurrent `commit` calls share one engine transaction and one fsync.
//!
//! Leader/follower, as in LevelDB's writer queue: every caller appends its batch to a queue. If no
//! commit is running, the caller becomes the **leader**: it takes every queued batch (its own and
//! those of callers that queued meanwhile, up to a size cap), commits them as one transaction
//! with the lock released, publishes the result to each of their tickets, and wakes everyone.
//! Callers that find a leader at work wait; when it finishes, either their batch was in its group
//! (they return its result) or one of them becomes the next leader for everything that queued
//! during the last fsync. So a lone writer pays one fsync per commit, and under contention the
//! number of fsyncs grows with the number of fsync *periods*, not of callers.
//!
//! Every caller returns only once its own batch is durable (or failed). Batches are applied in
//! queue order, so the result is the same as committing them one by one in that order. A failed
//! group commit fails every batch in it: the engine error is an I/O failure that none of them
//! could have avoided, and none of their writes landed.

use std::collections::{HashMap, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard};

use super::engine::{Engine, EngineError, Op};

/// A group takes at most this many batches...
const MAX_GROUP_BATCHES: usize = 512;
/// ...and this many bytes (but always at least one batch), to bound a transaction's memory and
/// the latency of the callers in it.
const MAX_GROUP_BYTES: usize = 8 * 1024 * 1024;

struct Pending {
    ticket: u64,
    ops: Vec<Op>,
    size: usize,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Pending>,
    leader_active: bool,
    next_ticket: u64,
    results: HashMap<u64, Result<(), EngineError>>,
    batches: u64,
}

/// The queue and the condition variable its followers wait on.
#[derive(Default)]
pub(crate) struct GroupCommit {
    state: Mutex<State>,
    finished: Condvar,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit")
            .field("queued", &self.lock().queue.len())
            .finish_non_exhaustive()
    }
}

impl GroupCommit {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is only ever changed by short, non-panicking sections, and a panicking
        // leader is cleaned up by `LeaderGuard`, so a poisoned lock still holds consistent data.
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Commits `ops` atomically and durably, possibly together with other callers' batches.
    pub(crate) fn commit(&self, engine: &dyn Engine, ops: Vec<Op>) -> Result<(), EngineError> {
        let size = ops.iter().map(Op::size).sum();
        let mut state = self.lock();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.queue.push_back(Pending { ticket, ops, size });
        loop {
            if let Some(result) = state.results.remove(&ticket) {
                return result;
            }
            if state.leader_active {
                state = self
                    .finished
                    .wait(state)
                    .unwrap_or_else(|poison| poison.into_inner());
                continue;
            }
            state.leader_active = true;
            let group = take_group(&mut state.queue);
            state.batches += group.len() as u64;
            drop(state);

            let mut leader = LeaderGuard {
                group: self,
                tickets: group.iter().map(|pending| pending.ticket).collect(),
                done: false,
            };
            let merged: Vec<Op> = group.into_iter().flat_map(|pending| pending.ops).collect();
            let result = engine.commit(merged);
            leader.finish(result);

            state = self.lock();
        }
    }

    /// Batches handed to the engine so far (each caller's batch counts once).
    pub(crate) fn batches(&self) -> u64 {
        self.lock().batches
    }

    /// Batches waiting for a leader (tests use it to line up a group deterministically).
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        self.lock().queue.len()
    }
}

/// The front of the queue, within the group caps.
fn take_group(queue: &mut VecDeque<Pending>) -> Vec<Pending> {
    let mut group = Vec::new();
    let mut bytes = 0usize;
    while let Some(next) = queue.front() {
        let full =
            group.len() >= MAX_GROUP_BATCHES || bytes.saturating_add(next.size) > MAX_GROUP_BYTES;
        if full && !group.is_empty() {
            break;
        }
        bytes = bytes.saturating_add(next.size);
        match queue.pop_front() {
            Some(pending) => group.push(pending),
            None => break,
        }
    }
    group
}

/// Publishes the leader's result; if the leader unwinds instead (a panic inside the engine), it
/// still releases the leadership and fails the group, so no follower waits forever.
struct LeaderGuard<'a> {
    group: &'a GroupCommit,
    tickets: Vec<u64>,
    done: bool,
}

impl LeaderGuard<'_> {
    fn finish(&mut self, result: Result<(), EngineError>) {
        self.publish(&result);
        self.done = true;
    }

    fn publish(&self, result: &Result<(), EngineError>) {
        let mut state = self.group.lock();
        for ticket in &self.tickets {
            state.results.insert(*ticket, result.clone());
        }
        state.leader_active = false;
        drop(state);
        self.group.finished.notify_all();
    }
}

impl Drop for LeaderGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.publish(&Err(EngineError::Backend(
                "the storage engine panicked during a commit".into(),
            )));
        }
    }
}
