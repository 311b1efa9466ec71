//! One sync round: push the outbox, pull each space until caught up, heal a server that lost its
//! tail, and snapshot documents whose envelopes pile up. Time-bounded by the caller's deadline.

use haven_protocol::api::PushResponse;
use haven_protocol::{DocId, Envelope, ErrorCode, Kind, SpaceId};

use super::Haven;
use super::error::{HavenError, HavenResult};
use super::records::{CursorRecord, CutOff, OutboxRecord, SeenRecord};
use super::replica::Replica;
use crate::local_store::WriteBatch;
use crate::remote::PullCursor;

/// Envelopes per push.
const PUSH_BATCH: usize = 500;
/// Changes per pull page (the contract's maximum).
const PULL_PAGE: u32 = 1000;
/// Bounds on one round, so a confused server cannot keep a device busy forever.
const MAX_PUSHES: usize = 10_000;
const MAX_PAGES: usize = 100_000;

/// Where a device stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncState {
    /// No account: public content only.
    LoggedOut,
    /// The journal stays on this device (no account yet, or switched to local-only): only
    /// public content syncs.
    LocalOnly,
    /// Everything local is on the server and the last pull was caught up.
    Synced,
    /// Local changes wait for the server.
    Pending,
    /// The last round failed; see `last_error`. Nothing was lost.
    Error,
    /// Another device revoked this one; it keeps its data and stops syncing.
    Revoked,
    /// The account was erased; this device keeps its data and stops syncing.
    Erased,
}

/// The honest status a UI shows: never "synced" while anything is pending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncStatus {
    pub state: SyncState,
    /// Envelopes in the outbox.
    pub pending: usize,
    /// The private space's last seq this device has applied.
    pub last_confirmed_seq: u64,
    /// The private space's head at the last pull.
    pub server_head: u64,
    pub last_error: Option<String>,
    /// Unix ms of the last successful round.
    pub last_synced_at: Option<i64>,
}

impl SyncStatus {
    pub(crate) fn initial(replica: &mut Replica) -> HavenResult<Self> {
        let pending = replica.outbox_len()?;
        let local_only = replica.is_local_only();
        let (state, cursor) = match replica.meta.account.clone() {
            None if local_only => (SyncState::LocalOnly, CursorRecord::default()),
            None => (SyncState::LoggedOut, CursorRecord::default()),
            Some(account) => {
                let cursor = replica.cursor(&account.space)?;
                let state = match account.cut_off {
                    Some(CutOff::DeviceRevoked) => SyncState::Revoked,
                    Some(CutOff::AccountErased) => SyncState::Erased,
                    None if local_only => SyncState::LocalOnly,
                    None if pending > 0 => SyncState::Pending,
                    // Not known to be synced until a round says so.
                    None => SyncState::Pending,
                };
                (state, cursor)
            }
        };
        Ok(Self {
            state,
            pending,
            last_confirmed_seq: cursor.seq,
            server_head: cursor.head,
            last_error: None,
            last_synced_at: None,
        })
    }
}

/// What one round moved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub pushed: usize,
    pub pulled: usize,
    /// Documents that changed here because of the round (for UI refresh).
    pub changed: Vec<DocId>,
    /// Documents deleted here because of the round.
    pub deleted: Vec<DocId>,
    /// Envelopes that failed verification or decryption and were skipped, with why.
    pub skipped: Vec<String>,
    /// Outbox entries the server refused for good (reported, dropped from the outbox; their
    /// content stays in the local documents and reaches other devices through a snapshot).
    pub refused: Vec<String>,
    pub snapshots: usize,
    /// The server had lost envelopes (restore); this device uploaded what it holds again.
    pub healed: bool,
    /// Devices that joined the account since this one last looked (also kept in
    /// [`Haven::device_alerts`] until dismissed).
    pub devices_joined: Vec<super::DeviceJoined>,
}

impl Haven {
    /// One sync round: with an account, this device's edits are pushed first; then public
    /// content (anonymously, even if the push failed), then the account's pull, heal and
    /// snapshots. Returns what moved; the status says where things stand.
    pub async fn sync_once(&self) -> HavenResult<SyncReport> {
        self.sync_round_locked(true).await
    }

    /// A round for a new head of the private space (live sync): the public space is left for
    /// the periodic full rounds, saving a round trip on the path a live edit takes.
    pub(crate) async fn sync_private_round(&self) -> HavenResult<SyncReport> {
        self.sync_round_locked(false).await
    }

    async fn sync_round_locked(&self, with_public: bool) -> HavenResult<SyncReport> {
        let _one_round = self.sync_lock.lock().await;
        let result = self.sync_round(with_public).await;
        if matches!(result, Err(HavenError::AccountErased)) {
            // Best effort: a notice that cannot be had now is asked for after the next round.
            let _ = self.check_erasure_notice().await;
        }
        self.finish_round(&result);
        result
    }

    async fn sync_round(&self, with_public: bool) -> HavenResult<SyncReport> {
        let mut report = SyncReport::default();
        let (account, local_only) = {
            let replica = self.replica();
            (replica.meta.account.clone(), replica.is_local_only())
        };
        // This device's edits leave first, so that they reach its other devices without waiting
        // for the round's pulls. Public content (the hotlines) still comes before the private
        // log, which is long on a fresh device, and is pulled even when the push failed.
        let pushing = account
            .as_ref()
            .filter(|account| account.cut_off.is_none() && !local_only)
            .map(|account| account.space);
        let pushed = match &pushing {
            Some(space) => self.push_outbox(space, &mut report).await,
            None => Ok(0),
        };
        if with_public || account.is_none() || local_only {
            self.pull_space(&SpaceId::Public, &mut report).await?;
        }
        pushed?;
        let Some(account) = account else {
            return Ok(report);
        };
        match account.cut_off {
            Some(CutOff::DeviceRevoked) => return Err(HavenError::DeviceRevoked),
            Some(CutOff::AccountErased) => return Err(HavenError::AccountErased),
            None => {}
        }
        if local_only {
            return Ok(report);
        }
        let space = account.space;
        self.pull_space(&space, &mut report).await?;
        if report.healed {
            self.push_outbox(&space, &mut report).await?;
        }
        let queued = self.queue_snapshots()?;
        if queued > 0 {
            self.push_outbox(&space, &mut report).await?;
            report.snapshots = queued;
        }
        if with_public {
            // A device joining changes only the key bundle, not the log: look at it on each
            // full round (live rounds for a new head leave it to the next full one).
            report.devices_joined = self.refresh_bundle().await?;
        }
        Ok(report)
    }

    /// Recomputes the status from the replica after an account change (register, login,
    /// logout), keeping the last round's error and time.
    pub(crate) fn refresh_status(&self) {
        let fresh = SyncStatus::initial(&mut self.replica());
        let mut status = self
            .status
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if let Ok(fresh) = fresh {
            *status = SyncStatus {
                last_error: status.last_error.clone(),
                last_synced_at: status.last_synced_at,
                ..fresh
            };
        }
    }

    fn finish_round(&self, result: &HavenResult<SyncReport>) {
        let mut replica = self.replica();
        let pending = replica.outbox_len().unwrap_or(usize::MAX);
        let cursor = replica
            .private_space()
            .and_then(|space| replica.cursor(&space).ok())
            .unwrap_or_default();
        let cut_off = replica.meta.account.as_ref().map(|account| account.cut_off);
        let logged_out = replica.meta.account.is_none();
        let local_only = replica.is_local_only();
        let now = replica.now_ms();
        drop(replica);
        let mut status = self
            .status
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        status.pending = pending;
        status.last_confirmed_seq = cursor.seq;
        status.server_head = cursor.head;
        status.state = match (cut_off, result) {
            (Some(Some(CutOff::DeviceRevoked)), _) => SyncState::Revoked,
            (Some(Some(CutOff::AccountErased)), _) => SyncState::Erased,
            _ if local_only => SyncState::LocalOnly,
            _ if logged_out => SyncState::LoggedOut,
            (_, Err(_)) => SyncState::Error,
            _ if pending > 0 || cursor.seq < cursor.head => SyncState::Pending,
            _ => SyncState::Synced,
        };
        match result {
            Ok(_) => {
                status.last_error = None;
                status.last_synced_at = Some(now);
            }
            Err(error) => status.last_error = Some(error.to_string()),
        }
    }

    /// Pushes the outbox in batches until it is empty. Returns how many envelopes were acked.
    async fn push_outbox(&self, space: &SpaceId, report: &mut SyncReport) -> HavenResult<usize> {
        let mut acked_total = 0;
        let mut epoch_retries = 0;
        for _ in 0..MAX_PUSHES {
            let batch = self.replica().outbox(PUSH_BATCH)?;
            let batch: Vec<(Vec<u8>, OutboxRecord)> = batch
                .into_iter()
                .filter(|(_, record)| record.space == *space)
                .collect();
            if batch.is_empty() {
                break;
            }
            let envelopes: Vec<Envelope> = batch
                .iter()
                .map(|(_, record)| record.envelope.clone())
                .collect();
            let answer: PushResponse = self
                .authed(|access| {
                    let envelopes = &envelopes;
                    async move { self.remote.push(Some(&access), space, envelopes).await }
                })
                .await?;
            let outcome = self.settle_push(&batch, &answer, report.healed)?;
            acked_total += outcome.acked;
            report.pushed += outcome.acked;
            report.refused.extend(outcome.refused);
            if outcome.epoch_stale {
                epoch_retries += 1;
                if epoch_retries > 2 {
                    return Err(HavenError::Protocol(
                        "the server keeps refusing our key epoch".into(),
                    ));
                }
                self.refresh_bundle().await?;
                self.reseal_outbox(space)?;
            } else if outcome.acked == 0 && outcome.removed == 0 {
                // Nothing moved: stop rather than spin; the next round retries.
                break;
            }
        }
        Ok(acked_total)
    }

    /// Applies a push answer to the outbox: acked entries go, permanently refused ones go (and
    /// are reported), the rest stay for the next round.
    fn settle_push(
        &self,
        batch: &[(Vec<u8>, OutboxRecord)],
        answer: &PushResponse,
        healing: bool,
    ) -> HavenResult<PushOutcome> {
        let mut replica = self.replica();
        let mut writes = WriteBatch::new();
        let mut outcome = PushOutcome::default();
        let mut seen = std::collections::HashMap::new();
        for ack in &answer.acks {
            if let Some((key, record)) = batch
                .iter()
                .find(|(_, record)| record.envelope.id == ack.id)
            {
                replica.stage_outbox_delete(key, &mut writes)?;
                replica.note_seen(&record.envelope.doc, ack.seq, &record.envelope, &mut seen)?;
                outcome.acked += 1;
            }
        }
        for error in &answer.errors {
            let Some((key, record)) = batch
                .iter()
                .find(|(_, record)| record.envelope.id == error.id)
            else {
                continue;
            };
            match error.code {
                ErrorCode::EpochStale => outcome.epoch_stale = true,
                // A restored server may hold our envelope under the same id with other bytes
                // (a fresh nonce): it has the content.
                ErrorCode::IdConflict if healing => {
                    replica.stage_outbox_delete(key, &mut writes)?;
                    outcome.removed += 1;
                }
                ErrorCode::DocDeleted => {
                    replica.stage_outbox_delete(key, &mut writes)?;
                    outcome.removed += 1;
                }
                // The snapshot missed envelopes: drop it; the next round pulls them and snapshots
                // again.
                ErrorCode::SnapshotStale => {
                    replica.stage_outbox_delete(key, &mut writes)?;
                    outcome.removed += 1;
                }
                ErrorCode::RateLimited | ErrorCode::Internal | ErrorCode::Unavailable => {}
                code => {
                    replica.stage_outbox_delete(key, &mut writes)?;
                    outcome.removed += 1;
                    outcome.refused.push(format!(
                        "{} envelope of document {} refused ({}): {}",
                        record.envelope.kind.as_str(),
                        record.envelope.doc.to_hex(),
                        code.as_str(),
                        error.message
                    ));
                }
            }
        }
        replica.stage_seen_records(&seen, &mut writes)?;
        replica.commit(writes)?;
        Ok(outcome)
    }

    /// After a key rotation: re-seal every outbox entry under the current epoch (new ids).
    pub(crate) fn reseal_outbox(&self, space: &SpaceId) -> HavenResult<()> {
        let mut replica = self.replica();
        let entries = replica.outbox(usize::MAX)?;
        let mut writes = WriteBatch::new();
        for (key, record) in entries {
            if record.space != *space {
                continue;
            }
            let keys = replica.keys.as_ref().ok_or(HavenError::NotLoggedIn)?;
            let payload =
                crate::crypto::open_private(keys.bundle.epoch_keys(), space, &record.envelope)
                    .map_err(|error| {
                        HavenError::Protocol(format!("an outbox entry does not open: {error}"))
                    })?;
            let content = match record.envelope.kind {
                Kind::Change => {
                    let changes =
                        super::replica::unframe_changes(&payload).map_err(HavenError::Protocol)?;
                    let hashes: Vec<[u8; 32]> =
                        changes.iter().map(|change| change.hash().0).collect();
                    crate::crypto::sorted_hashes_content(&hashes)
                }
                // A stale snapshot is simply dropped; the next round makes a fresh one.
                Kind::Snapshot => {
                    replica.stage_outbox_delete(&key, &mut writes)?;
                    continue;
                }
                Kind::Tombstone => b"tombstone".to_vec(),
            };
            replica.stage_outbox_delete(&key, &mut writes)?;
            replica.stage_sealed(
                space,
                &record.envelope.doc,
                record.envelope.kind,
                &content,
                &payload,
                None,
                &mut writes,
            )?;
        }
        replica.commit(writes)?;
        Ok(())
    }

    /// Pulls a space until caught up, applying each page with the cursor after it in one commit.
    async fn pull_space(&self, space: &SpaceId, report: &mut SyncReport) -> HavenResult<()> {
        let mut refreshed_keys = false;
        for _ in 0..MAX_PAGES {
            let cursor = self.replica().cursor(space)?;
            let request = PullCursor {
                after: cursor.seq,
                at: cursor.id,
                limit: PULL_PAGE,
            };
            let answer = if space.is_public() {
                self.remote.pull(None, space, request).await
            } else {
                match self
                    .authed(|access| async move {
                        self.remote.pull(Some(&access), space, request).await
                    })
                    .await
                {
                    Ok(answer) => Ok(answer),
                    Err(HavenError::Remote(error)) => Err(error),
                    Err(other) => return Err(other),
                }
            };
            let answer = match answer {
                Ok(answer) => answer,
                Err(error) if error.code() == Some(ErrorCode::CursorMismatch) => {
                    if report.healed {
                        return Err(error.into());
                    }
                    self.heal(space)?;
                    report.healed = true;
                    continue;
                }
                Err(error) => return Err(error.into()),
            };
            let applied = self.apply_page(space, &cursor, &answer, report)?;
            if applied {
                if refreshed_keys {
                    return Err(HavenError::Protocol(
                        "envelopes under a key epoch this device cannot get".into(),
                    ));
                }
                self.refresh_bundle().await?;
                refreshed_keys = true;
                continue;
            }
            if answer.caught_up {
                return Ok(());
            }
        }
        Err(HavenError::Protocol(
            "the server never said caught up".into(),
        ))
    }

    /// Applies one pulled page with the cursor after it, in one commit. Returns whether it stopped
    /// at an envelope of an unknown key epoch (the caller fetches the bundle and pulls again).
    fn apply_page(
        &self,
        space: &SpaceId,
        cursor: &CursorRecord,
        answer: &haven_protocol::api::PullResponse,
        report: &mut SyncReport,
    ) -> HavenResult<bool> {
        let mut replica = self.replica();
        let mut writes = WriteBatch::new();
        let (applied, last) = replica.stage_pulled(space, &answer.changes, &mut writes)?;
        report.pulled += applied.applied;
        report.changed.extend(applied.changed_docs.iter().copied());
        report.deleted.extend(applied.deleted_docs.iter().copied());
        report.skipped.extend(
            applied
                .skipped
                .iter()
                .map(|(seq, why)| format!("{space} seq {seq}: {why}")),
        );
        let next = match (applied.needs_keys_at, last) {
            (_, Some((seq, id))) => Some(CursorRecord {
                seq,
                id: Some(id),
                head: answer.head,
            }),
            (Some(_), None) => None,
            (None, None) => Some(CursorRecord {
                head: answer.head,
                ..*cursor
            }),
        };
        if let Some(next) = next {
            replica.stage_cursor(space, &next, &mut writes)?;
        }
        replica.commit(writes)?;
        Ok(applied.needs_keys_at.is_some())
    }

    /// The server lost or replaced its log (a restore): pull from the start, and upload again
    /// everything this device holds (DESIGN.md §3: devices are the source of truth for their
    /// writes).
    fn heal(&self, space: &SpaceId) -> HavenResult<()> {
        let mut replica = self.replica();
        let mut writes = WriteBatch::new();
        replica.stage_cursor(space, &CursorRecord::default(), &mut writes)?;
        if !space.is_public() {
            // What the device saw of the old log means nothing on the restored one.
            replica.stage_forget_server_view(&mut writes)?;
            replica.stage_reupload_all(&mut writes)?;
        }
        replica.commit(writes)?;
        Ok(())
    }

    /// Queues snapshots for documents whose live envelopes piled up. Returns how many.
    fn queue_snapshots(&self) -> HavenResult<usize> {
        let mut replica = self.replica();
        let candidates: Vec<(DocId, SeenRecord)> = replica.snapshot_candidates()?;
        let mut writes = WriteBatch::new();
        let mut queued = 0;
        for (doc, seen) in candidates {
            if replica.stage_snapshot(doc, &seen, &mut writes)? {
                queued += 1;
            }
        }
        if queued > 0 {
            replica.commit(writes)?;
        }
        Ok(queued)
    }
}

#[derive(Debug, Default)]
struct PushOutcome {
    acked: usize,
    removed: usize,
    epoch_stale: bool,
    refused: Vec<String>,
}
