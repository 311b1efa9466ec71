//! The space-log service: validation, signatures of public content, storage sealing, the store's
//! append rules, group commit, durable-only reads and live fan-out, in one place for every
//! transport (HTTP handlers, first-start publishing, tests).

use std::collections::HashMap;
use std::sync::Arc;

use ed25519_dalek::{Signature, VerifyingKey};
use haven_protocol::api::{Ack, ItemError, PullResponse, PushResponse};
use haven_protocol::{
    Envelope, EnvelopeId, EnvelopeLimits, ErrorCode, Kind, SequencedEnvelope, SpaceId,
};
use tokio::sync::{Mutex, RwLock};

use crate::error::{ApiError, ApiResult};
use crate::group_commit::GroupCommit;
use crate::live_hub::LiveHub;
use crate::storage_keys::StorageKeys;
use crate::storage_seal;
use crate::store::{AppendItem, AppendOutcome, Store};

/// Limits on what a push and a pull may carry.
#[derive(Debug, Clone, Copy)]
pub struct LogLimits {
    pub envelope: EnvelopeLimits,
    pub max_batch: usize,
    pub max_page: u32,
}

impl Default for LogLimits {
    fn default() -> Self {
        Self {
            envelope: EnvelopeLimits::default(),
            max_batch: 1000,
            max_page: haven_protocol::api::MAX_PULL_LIMIT,
        }
    }
}

/// Per-process state of the space logs; shared through `Arc`.
#[derive(Debug)]
pub struct SpaceService {
    store: Arc<dyn Store>,
    /// Opens the account's wrapped storage key for each push and pull (never cached, so an
    /// erased account's key is gone from memory as soon as the request ends).
    keys: Arc<StorageKeys>,
    commits: GroupCommit,
    live: Arc<LiveHub>,
    limits: LogLimits,
    content_keys: Vec<VerifyingKey>,
    /// For stores that need a flush: the highest durable seq per space written to since start.
    /// A space is entered here before its first write, so an absent space has no unflushed
    /// writes and its stored head is durable.
    durable_heads: Mutex<HashMap<SpaceId, u64>>,
    /// Pruning (snapshots, tombstones) removes envelopes a reader could otherwise miss forever if
    /// the pruning were lost in a crash before its flush. Pruning appends hold a space's barrier
    /// exclusively until flushed; reads hold it shared.
    prune_barriers: std::sync::Mutex<HashMap<SpaceId, Arc<RwLock<()>>>>,
}

impl SpaceService {
    pub fn new(
        store: Arc<dyn Store>,
        keys: Arc<StorageKeys>,
        commits: GroupCommit,
        live: Arc<LiveHub>,
        limits: LogLimits,
        content_keys: Vec<VerifyingKey>,
    ) -> Self {
        Self {
            store,
            keys,
            commits,
            live,
            limits,
            content_keys,
            durable_heads: Mutex::new(HashMap::new()),
            prune_barriers: std::sync::Mutex::new(HashMap::new()),
        }
    }

    pub fn limits(&self) -> &LogLimits {
        &self.limits
    }

    pub fn live(&self) -> &Arc<LiveHub> {
        &self.live
    }

    /// Whether envelopes signed by this key are accepted in `public`.
    pub fn accepts_content_key(&self, key: &VerifyingKey) -> bool {
        self.content_keys.contains(key)
    }

    /// Appends a batch to a space that the caller is allowed to write, answering per item.
    pub async fn push(&self, space: &SpaceId, changes: Vec<Envelope>) -> ApiResult<PushResponse> {
        if changes.len() > self.limits.max_batch {
            return Err(ApiError::too_large(format!(
                "a push carries at most {} envelopes",
                self.limits.max_batch
            )));
        }
        let storage_key = self.storage_key(space).await?;
        let mut response = PushResponse::default();
        let mut items = Vec::with_capacity(changes.len());
        let mut prunes = false;
        for envelope in changes {
            if let Err(error) = self.check(space, &envelope) {
                response.errors.push(error);
                continue;
            }
            prunes |= matches!(envelope.kind, Kind::Snapshot | Kind::Tombstone);
            let digest = envelope.digest();
            let stored = match &storage_key {
                Some(key) => {
                    let body = storage_seal::seal(key, space, &envelope.id, &envelope.body.0)
                        .map_err(|error| ApiError::internal("sealing for storage", &error))?;
                    Envelope {
                        body: body.into(),
                        ..envelope
                    }
                }
                None => envelope,
            };
            items.push(AppendItem {
                envelope: stored,
                digest,
            });
        }
        if items.is_empty() {
            return Ok(response);
        }
        let ids: Vec<EnvelopeId> = items.iter().map(|item| item.envelope.id).collect();

        let barrier = (prunes && self.commits.needs_flush()).then(|| self.barrier(space));
        let _exclusive = match &barrier {
            Some(barrier) => Some(barrier.write().await),
            None => None,
        };
        self.track(space).await?;
        let outcomes = self.store.append(space, items).await?;

        let acked_max = outcomes
            .iter()
            .filter_map(|outcome| match outcome {
                AppendOutcome::Stored { seq } | AppendOutcome::Duplicate { seq } => Some(*seq),
                _ => None,
            })
            .max();
        if let Some(max_seq) = acked_max {
            if self.durable_head_cached(space).await < max_seq {
                self.commits.flush().await?;
                self.mark_durable(space, max_seq).await;
            }
            self.live.publish(space, max_seq);
        }
        metrics::counter!("haven_envelopes_pushed_total").increment(
            outcomes
                .iter()
                .filter(|outcome| matches!(outcome, AppendOutcome::Stored { .. }))
                .count() as u64,
        );

        for (id, outcome) in ids.into_iter().zip(outcomes) {
            match outcome {
                AppendOutcome::Stored { seq } | AppendOutcome::Duplicate { seq } => {
                    response.acks.push(Ack { id, seq });
                }
                rejected => response.errors.push(item_error(id, rejected)),
            }
        }
        Ok(response)
    }

    /// A page of durable envelopes after a cursor, checking the cursor against this log.
    pub async fn pull(
        &self,
        space: &SpaceId,
        after: u64,
        at: Option<EnvelopeId>,
        limit: u32,
    ) -> ApiResult<PullResponse> {
        let limit = limit.clamp(1, self.limits.max_page);
        let barrier = self.commits.needs_flush().then(|| self.barrier(space));
        let _shared = match &barrier {
            Some(barrier) => Some(barrier.read().await),
            None => None,
        };
        let head = self.visible_head(space).await?;
        if after > head {
            return Err(ApiError::cursor_mismatch(head));
        }
        if let Some(at) = at {
            // The id must sit at exactly `after` in this log: otherwise the server lost or
            // replaced its tail (a restore) and the client must re-upload what it holds.
            if self.store.seq_of(space, &at).await? != Some(after) {
                return Err(ApiError::cursor_mismatch(head));
            }
        }
        let rows = self
            .store
            .read(
                space,
                after,
                head,
                usize::try_from(limit).unwrap_or(usize::MAX),
            )
            .await?;
        let storage_key = self.storage_key(space).await?;
        let mut changes = Vec::with_capacity(rows.len());
        for (seq, mut envelope) in rows {
            if let Some(key) = &storage_key {
                let body = storage_seal::open(key, space, &envelope.id, &envelope.body.0).map_err(
                    |error| ApiError::internal("a stored envelope failed to open", &error),
                )?;
                envelope.body = body.into();
            }
            changes.push(SequencedEnvelope { seq, envelope });
        }
        // The entry at the head is always live (only a later append can prune or drop it), so a
        // page that stops short of `limit` ends exactly at the head.
        let next = changes.last().map_or(after, |change| change.seq);
        metrics::counter!("haven_envelopes_pulled_total").increment(changes.len() as u64);
        Ok(PullResponse {
            caught_up: next == head,
            changes,
            next,
            head,
        })
    }

    async fn storage_key(
        &self,
        space: &SpaceId,
    ) -> ApiResult<Option<zeroize::Zeroizing<[u8; 32]>>> {
        self.keys
            .open_key(space)
            .await
            .map_err(|error| ApiError::internal("opening the storage key", &error))
    }

    /// The highest seq a reader may see in this space.
    pub async fn visible_head(&self, space: &SpaceId) -> ApiResult<u64> {
        if !self.commits.needs_flush() {
            return Ok(self.store.head(space).await?);
        }
        let mut heads = self.durable_heads.lock().await;
        if let Some(head) = heads.get(space) {
            return Ok(*head);
        }
        let head = self.store.head(space).await?;
        heads.insert(*space, head);
        Ok(head)
    }

    /// Makes sure the space is tracked before any write to it (see `durable_heads`).
    async fn track(&self, space: &SpaceId) -> ApiResult<()> {
        if self.commits.needs_flush() {
            self.visible_head(space).await?;
        }
        Ok(())
    }

    async fn durable_head_cached(&self, space: &SpaceId) -> u64 {
        if !self.commits.needs_flush() {
            return u64::MAX;
        }
        self.durable_heads
            .lock()
            .await
            .get(space)
            .copied()
            .unwrap_or(0)
    }

    async fn mark_durable(&self, space: &SpaceId, seq: u64) {
        let mut heads = self.durable_heads.lock().await;
        let head = heads.entry(*space).or_insert(0);
        *head = (*head).max(seq);
    }

    fn barrier(&self, space: &SpaceId) -> Arc<RwLock<()>> {
        let mut barriers = self
            .prune_barriers
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        Arc::clone(barriers.entry(*space).or_default())
    }

    /// Shape rules, and for `public` a signature by a configured content key.
    fn check(&self, space: &SpaceId, envelope: &Envelope) -> Result<(), ItemError> {
        if let Err(error) = envelope.validate(space, &self.limits.envelope) {
            let code = if error.is_size() {
                ErrorCode::TooLarge
            } else {
                ErrorCode::Invalid
            };
            return Err(ItemError {
                id: envelope.id,
                code,
                message: error.to_string(),
                missing: None,
            });
        }
        if space.is_public() {
            let signed = envelope.signed_bytes(space);
            let signature = envelope.sig.map(|sig| Signature::from_bytes(&sig.0));
            let verified = signature.is_some_and(|signature| {
                self.content_keys
                    .iter()
                    .any(|key| key.verify_strict(&signed, &signature).is_ok())
            });
            if !verified {
                return Err(ItemError {
                    id: envelope.id,
                    code: ErrorCode::Unauthorized,
                    message: "not signed by a configured content key".into(),
                    missing: None,
                });
            }
        }
        Ok(())
    }
}

fn item_error(id: EnvelopeId, outcome: AppendOutcome) -> ItemError {
    let (code, message, missing) = match outcome {
        AppendOutcome::IdConflict => (
            ErrorCode::IdConflict,
            "this id was stored earlier with other bytes".to_string(),
            None,
        ),
        AppendOutcome::DocDeleted => (
            ErrorCode::DocDeleted,
            "the document was deleted".into(),
            None,
        ),
        AppendOutcome::EpochStale { current } => (
            ErrorCode::EpochStale,
            format!("sealed under an old key epoch; the current epoch is {current}"),
            None,
        ),
        AppendOutcome::EpochAhead { current } => (
            ErrorCode::Invalid,
            format!("key epoch is ahead of the space's current epoch {current}"),
            None,
        ),
        AppendOutcome::SnapshotAhead { head } => (
            ErrorCode::Invalid,
            format!("upto_seq is past the head ({head})"),
            None,
        ),
        AppendOutcome::SnapshotStale { missing } => (
            ErrorCode::SnapshotStale,
            "the snapshot misses envelopes of its document; merge them and retry".into(),
            Some(missing),
        ),
        AppendOutcome::Stored { .. } | AppendOutcome::Duplicate { .. } => {
            (ErrorCode::Internal, "not an error".into(), None)
        }
    };
    ItemError {
        id,
        code,
        message,
        missing,
    }
}
