//! What the client keeps in its local store, record by record. Every record is encrypted by the
//! store; these are the plaintext shapes (JSON, so a later version can add fields).

use haven_protocol::{Blob, DeviceId, DocId, Envelope, EnvelopeId, HexId, SpaceId};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::error::{HavenError, HavenResult};
use crate::local_store::{LocalStore, Table, WriteBatch};

/// Keys of the `Meta` table.
pub(crate) const META_PROFILE: &[u8] = b"profile";
/// Devices that joined the account since the person last looked (a list of `DeviceJoined`).
pub(crate) const META_DEVICE_ALERTS: &[u8] = b"device-alerts";
/// Keys of the `Keys` table.
pub(crate) const KEY_DEVICE: &[u8] = b"device";
pub(crate) const KEY_ROOT: &[u8] = b"root";
pub(crate) const KEY_BUNDLE: &[u8] = b"bundle";
pub(crate) const KEY_SESSION: &[u8] = b"session";
/// The local-only journal's singleton key (a profile with a journal and no account).
pub(crate) const KEY_LOCAL_JOURNAL: &[u8] = b"local-journal";
/// Key of the `Counters` table for the outbox's own order.
pub(crate) const COUNTER_OUTBOX: &[u8] = b"outbox";
/// Prefix of the `Counters` keys holding the counters applied per (space, device).
pub(crate) const SEEN_COUNTERS_PREFIX: &[u8] = b"seen-ctr/";

/// Current format of [`ProfileMeta`].
pub(crate) const PROFILE_FORMAT: u32 = 1;

/// Who this profile is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ProfileMeta {
    pub format: u32,
    pub device_id: DeviceId,
    pub account: Option<AccountMeta>,
    /// The highest key-bundle version this device accepted (rollback protection).
    pub bundle_min_version: u64,
    /// The highest manifest version accepted (rollback protection for public content).
    pub manifest_version: u64,
    /// Set once the bundled public content was loaded into this profile.
    pub bundled_content_loaded: bool,
    /// A journal kept on this device with no account: where its documents live. Registering or
    /// logging in moves it into the account.
    #[serde(default)]
    pub local_journal: Option<LocalJournalMeta>,
    /// With an account: the journal stays on this device for now (nothing is pushed or pulled;
    /// edits wait in the outbox until this is turned off).
    #[serde(default)]
    pub local_only: bool,
    /// Live sync waits a random time up to this long before pushing a local edit (0: pushes at
    /// once), so the moment of a push says less about the moment of writing.
    #[serde(default)]
    pub push_jitter_ms: u64,
}

/// The local-only journal of a profile without an account.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct LocalJournalMeta {
    /// A random space id that never leaves the device.
    pub space: SpaceId,
}

/// The account this profile is logged in to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AccountMeta {
    pub username: String,
    pub user_id: HexId,
    pub space: SpaceId,
    /// Set when the server said this device was revoked or the account erased: syncing stops.
    #[serde(default)]
    pub cut_off: Option<CutOff>,
    /// This device erased the account (it keeps its copy, whatever the account asked).
    #[serde(default)]
    pub erased_here: bool,
    /// The account was erased elsewhere, the erasure proved with the account's wipe token, and
    /// the account asked its devices to wipe themselves: the host wipes this profile.
    #[serde(default)]
    pub wipe_due: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum CutOff {
    DeviceRevoked,
    AccountErased,
}

/// The session's tokens.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct SessionTokens {
    pub access: String,
    pub refresh: String,
    /// Unix ms when the access token expires (per the server's `expires_in`).
    pub access_expires_at_ms: i64,
}

impl std::fmt::Debug for SessionTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionTokens")
            .field("access_expires_at_ms", &self.access_expires_at_ms)
            .finish_non_exhaustive()
    }
}

/// A document: which space it lives in, its type once known, and its last compacted save.
/// Changes since that save live in `DocumentChanges` under the same key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DocRecord {
    pub space: SpaceId,
    pub doc_type: Option<String>,
    pub saved: Blob,
}

/// A list-view summary, so that opening a profile reads no document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum SummaryRecord {
    Journal {
        title: String,
        excerpt: String,
        mood: Option<String>,
        tags: Vec<String>,
        created_at: i64,
        updated_at: i64,
    },
    Article {
        slug: String,
        title: String,
        summary: String,
        tags: Vec<String>,
        content_warnings: Vec<String>,
        language: String,
        published_at: i64,
        updated_at: i64,
        reading_minutes: u32,
    },
    ResourceList {
        slug: String,
        title: String,
        region: String,
        count: u32,
    },
}

/// A sealed envelope waiting for the server's ack.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct OutboxRecord {
    pub space: SpaceId,
    /// Once pushed, the bytes never change (a retry must be identical), unless the key epoch
    /// moved on and the server refused them.
    pub attempted: bool,
    pub envelope: Envelope,
}

/// Where the last pull of a space ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CursorRecord {
    pub seq: u64,
    pub id: Option<EnvelopeId>,
    /// The server's head at the last pull.
    pub head: u64,
}

/// The live envelopes of a document this device applied (or pushed and had acked): what a
/// snapshot of it must cover, and what they weigh.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SeenRecord {
    pub live: Vec<(u64, EnvelopeId)>,
    /// Sealed bytes of the last snapshot seen (0 before the first).
    #[serde(default)]
    pub snapshot_bytes: u64,
    /// Sealed bytes of the change envelopes seen since that snapshot.
    #[serde(default)]
    pub change_bytes: u64,
}

/// A document's changes must weigh at least this much before its first snapshot: below it, a
/// snapshot (a whole `save()`, padded to its bucket) is not smaller than what it replaces.
pub(crate) const SNAPSHOT_MIN_CHANGE_BYTES: u64 = 2 * 1024;
/// ... and a snapshot is made once this many envelopes are live, whatever they weigh: each one
/// costs a fresh device a separate apply.
pub(crate) const SNAPSHOT_AFTER_ENVELOPES: usize = 32;

impl SeenRecord {
    /// Whether a snapshot would now pay for itself: the changes since the last one outweigh it
    /// (so uploads and storage stay within about twice the document's size), or too many
    /// envelopes are live.
    pub(crate) fn snapshot_due(&self) -> bool {
        let by_size = self.live.len() >= 2
            && self.change_bytes >= self.snapshot_bytes.max(SNAPSHOT_MIN_CHANGE_BYTES);
        by_size || self.live.len() >= SNAPSHOT_AFTER_ENVELOPES
    }
}

pub(crate) fn encode<T: Serialize>(value: &T) -> HavenResult<Vec<u8>> {
    serde_json::to_vec(value)
        .map_err(|error| HavenError::Protocol(format!("encoding a record: {error}")))
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> HavenResult<T> {
    serde_json::from_slice(bytes)
        .map_err(|error| HavenError::Protocol(format!("the stored {what} is unreadable: {error}")))
}

/// Reads and decodes one record.
pub(crate) fn load<T: DeserializeOwned>(
    store: &LocalStore,
    table: Table,
    key: &[u8],
    what: &str,
) -> HavenResult<Option<T>> {
    match store.get(table, key)? {
        Some(bytes) => decode(&bytes, what).map(Some),
        None => Ok(None),
    }
}

/// Adds an encoded record to a batch.
pub(crate) fn put<T: Serialize>(
    batch: &mut WriteBatch,
    table: Table,
    key: &[u8],
    value: &T,
) -> HavenResult<()> {
    batch.put(table, key, &encode(value)?);
    Ok(())
}

/// The key of a space's records (`Cursors`, `Counters`).
pub(crate) fn space_key(space: &SpaceId) -> Vec<u8> {
    space.name().into_bytes()
}

/// The key of a document's records.
pub(crate) fn doc_key(doc: &DocId) -> &[u8] {
    doc.as_ref()
}

#[cfg(test)]
mod seen_record_tests {
    use super::*;

    fn record(changes: &[u64], snapshot: Option<u64>) -> SeenRecord {
        let mut record = SeenRecord::default();
        let mut seq = 0;
        if let Some(bytes) = snapshot {
            seq += 1;
            record.live.push((seq, EnvelopeId::from([0; 32])));
            record.snapshot_bytes = bytes;
        }
        for bytes in changes {
            seq += 1;
            let mut id = [0; 32];
            id[..8].copy_from_slice(&seq.to_be_bytes());
            record.live.push((seq, EnvelopeId::from(id)));
            record.change_bytes += bytes;
        }
        record
    }

    #[test]
    fn a_snapshot_is_due_once_the_changes_outweigh_it() {
        // A new entry and one edit: a snapshot would not be smaller.
        assert!(!record(&[1_300, 511], None).snapshot_due());
        // An entry with eight small envelopes (W1's shape): 4 KB of changes.
        assert!(record(&[511; 8], None).snapshot_due());
        // One large envelope alone is its own snapshot already.
        assert!(!record(&[40_000], None).snapshot_due());
        // After a 20 KB snapshot, small edits wait until they weigh as much ...
        assert!(!record(&[511; 30], Some(20_000)).snapshot_due());
        assert!(record(&[700; 29], Some(20_000)).snapshot_due());
        // ... unless so many are live that a fresh device would apply them one by one.
        assert!(record(&[256; SNAPSHOT_AFTER_ENVELOPES], Some(1_000_000)).snapshot_due());
    }

    #[test]
    fn records_written_before_the_weights_read_as_weightless() {
        let old: SeenRecord = decode(br#"{"live":[]}"#, "seen envelopes").unwrap();
        assert_eq!(old, SeenRecord::default());
    }
}
