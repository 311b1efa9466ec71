//! The records (plain data) that cross the FFI. Ids are lowercase hex strings; times are Unix
//! milliseconds unless a field says otherwise; text positions are UTF-16 code units (what Kotlin
//! `String` / Android `Editable` / `NSString` / `NSRange` count). No Automerge type crosses.

use haven_core::client::backup::{JournalBackup as CoreBackup, RestoreReport as CoreRestore};
use haven_core::client::export::{ExportFormat as CoreExportFormat, ExportReport as CoreExport};
use haven_core::client::{
    ArticleSummary as CoreArticleSummary, DeviceSummary as CoreDeviceSummary,
    EntrySummary as CoreEntrySummary, SyncReport as CoreSyncReport, SyncState as CoreSyncState,
    SyncStatus as CoreSyncStatus,
};
use haven_core::documents::{
    Article as CoreArticle, ChangeInfo, JournalEntry as CoreJournalEntry,
    ReadingProgress as CoreReadingProgress, Resource as CoreResource,
    ResourceList as CoreResourceList, SavedResource as CoreSavedResource,
    SavedResources as CoreSavedResources, TrustedContact as CoreTrustedContact,
};
use haven_core::local_store::WipeReport as CoreWipeReport;

use crate::error::{FfiResult, HavenFfiError};
use crate::text;

/// How to open a profile.
#[derive(Debug, Clone, uniffi::Record)]
pub struct ClientConfig {
    /// The profile directory (created if missing). Android: `context.noBackupFilesDir` + a name;
    /// iOS: Application Support with `NSFileProtectionComplete`, excluded from backups.
    pub data_dir: String,
    /// The server, `https://host[:port][/prefix]` (`http://` only for loopback tests).
    pub server_url: String,
    /// Base64 Ed25519 public keys that public content must be signed by. Empty: the development
    /// key whose content ships with the library (fine for tests; set your own in production).
    #[uniffi(default = [])]
    pub content_keys: Vec<String>,
    /// Deadline of one HTTP request, in ms. `None`: 30 s.
    #[uniffi(default = None)]
    pub request_timeout_ms: Option<u64>,
}

/// An article as a list shows it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ArticleSummary {
    pub id: String,
    pub slug: String,
    pub title: String,
    pub summary: String,
    pub tags: Vec<String>,
    /// Show these before the article opens.
    pub content_warnings: Vec<String>,
    /// BCP 47 tag (`en`, `pt-BR`).
    pub language: String,
    pub published_at: i64,
    pub updated_at: i64,
    pub reading_minutes: u32,
}

impl From<CoreArticleSummary> for ArticleSummary {
    fn from(a: CoreArticleSummary) -> Self {
        Self {
            id: a.id.to_hex(),
            slug: a.slug,
            title: a.title,
            summary: a.summary,
            tags: a.tags,
            content_warnings: a.content_warnings,
            language: a.language,
            published_at: a.published_at,
            updated_at: a.updated_at,
            reading_minutes: a.reading_minutes,
        }
    }
}

/// A whole article.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Article {
    pub id: String,
    pub slug: String,
    pub title: String,
    pub summary: String,
    /// Markdown.
    pub body: String,
    pub author: String,
    pub tags: Vec<String>,
    pub content_warnings: Vec<String>,
    pub language: String,
    pub published_at: i64,
    pub updated_at: i64,
    pub reading_minutes: u32,
}

impl Article {
    pub(crate) fn from_core(id: String, a: CoreArticle) -> Self {
        Self {
            id,
            slug: a.slug,
            title: a.title,
            summary: a.summary,
            body: a.body,
            author: a.author,
            tags: a.tags,
            content_warnings: a.content_warnings,
            language: a.language,
            published_at: a.published_at,
            updated_at: a.updated_at,
            reading_minutes: a.reading_minutes,
        }
    }
}

/// A list of support services (hotlines, campus and city services) for one region.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ResourceList {
    pub slug: String,
    pub title: String,
    /// ISO country (`US`), `campus:<name>` or `city:<name>`.
    pub region: String,
    pub resources: Vec<Resource>,
}

/// One service. Facts carry their source and when they were verified.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Resource {
    pub name: String,
    pub description: String,
    /// E.164.
    pub phone: Option<String>,
    pub sms: Option<String>,
    pub chat_url: Option<String>,
    pub url: String,
    pub hours: String,
    /// Only services that really answer around the clock.
    pub is_24_7: bool,
    pub languages: Vec<String>,
    pub categories: Vec<String>,
    pub source_url: String,
    /// ISO date.
    pub verified_at: String,
}

impl From<CoreResourceList> for ResourceList {
    fn from(list: CoreResourceList) -> Self {
        Self {
            slug: list.slug,
            title: list.title,
            region: list.region,
            resources: list.resources.into_iter().map(Resource::from).collect(),
        }
    }
}

impl From<CoreResource> for Resource {
    fn from(r: CoreResource) -> Self {
        Self {
            name: r.name,
            description: r.description,
            phone: r.phone,
            sms: r.sms,
            chat_url: r.chat_url,
            url: r.url,
            hours: r.hours,
            is_24_7: r.is_24_7,
            languages: r.languages,
            categories: r.categories,
            source_url: r.source_url,
            verified_at: r.verified_at,
        }
    }
}

/// One device of the account.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Device {
    /// Hex.
    pub device_id: String,
    /// The name its user gave it (from the sealed key bundle; the server never sees it).
    pub name: String,
    /// `YYYY-MM-DD`: the server keeps days only.
    pub created_day: String,
    pub last_seen_day: String,
    pub revoked: bool,
    /// This device.
    pub current: bool,
    /// Listed in the account's key bundle.
    pub in_bundle: bool,
}

impl From<CoreDeviceSummary> for Device {
    fn from(d: CoreDeviceSummary) -> Self {
        Self {
            device_id: d.device_id.to_hex(),
            name: d.name,
            created_day: d.created_day,
            last_seen_day: d.last_seen_day,
            revoked: d.revoked,
            current: d.current,
            in_bundle: d.in_bundle,
        }
    }
}

/// A journal entry as a list shows it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct EntrySummary {
    pub id: String,
    pub title: String,
    /// The start of the body.
    pub excerpt: String,
    pub mood: Option<String>,
    pub tags: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<CoreEntrySummary> for EntrySummary {
    fn from(e: CoreEntrySummary) -> Self {
        Self {
            id: e.id.to_hex(),
            title: e.title,
            excerpt: e.excerpt,
            mood: e.mood,
            tags: e.tags,
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

/// A whole journal entry.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct JournalEntry {
    pub id: String,
    pub title: String,
    pub body: String,
    pub mood: Option<String>,
    pub tags: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl JournalEntry {
    pub(crate) fn from_core(id: String, e: CoreJournalEntry) -> Self {
        Self {
            id,
            title: e.title,
            body: e.body,
            mood: e.mood,
            tags: e.tags,
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

/// One edit in an entry's history.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct EntryChange {
    /// 64 hex characters.
    pub hash: String,
    /// The device that made it (hex), or the genesis actor.
    pub actor: String,
    /// Its number among that device's edits, from 1.
    pub seq: u64,
    /// When, in Unix **seconds**, by the editing device's clock (advisory).
    pub time_secs: i64,
    /// What was edited (`title`, `body`, `tags`, …), if known.
    pub message: Option<String>,
}

impl From<ChangeInfo> for EntryChange {
    fn from(c: ChangeInfo) -> Self {
        Self {
            hash: c.hash,
            actor: c.actor,
            seq: c.seq,
            time_secs: c.time_secs,
            message: c.message,
        }
    }
}

/// Saved public resources and personal trusted contacts (private, synced).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SavedResources {
    pub resources: Vec<SavedResource>,
    pub contacts: Vec<TrustedContact>,
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SavedResource {
    pub list_slug: String,
    pub resource_name: String,
    pub saved_at: i64,
}

/// Someone the person trusts. Sensitive: never log it.
#[derive(Clone, PartialEq, Eq, uniffi::Record)]
pub struct TrustedContact {
    pub id: String,
    pub name: String,
    pub phone: String,
    pub note: Option<String>,
}

impl std::fmt::Debug for TrustedContact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustedContact")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl From<CoreSavedResources> for SavedResources {
    fn from(s: CoreSavedResources) -> Self {
        Self {
            resources: s
                .resources
                .into_iter()
                .map(|r: CoreSavedResource| SavedResource {
                    list_slug: r.list_slug,
                    resource_name: r.resource_name,
                    saved_at: r.saved_at,
                })
                .collect(),
            contacts: s
                .contacts
                .into_iter()
                .map(|c: CoreTrustedContact| TrustedContact {
                    id: c.id.to_hex(),
                    name: c.name,
                    phone: c.phone,
                    note: c.note,
                })
                .collect(),
        }
    }
}

/// Bookmarks and read progress (private, synced).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ReadingState {
    /// Sorted by slug.
    pub bookmarks: Vec<Bookmark>,
    /// Sorted by slug.
    pub progress: Vec<ReadingProgress>,
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Bookmark {
    pub slug: String,
    pub added_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ReadingProgress {
    pub slug: String,
    /// 0 ..= 1_000_000: the share read, in parts per million.
    pub fraction_ppm: u32,
    /// Offset into the article body, in UTF-16 code units.
    pub position: u64,
    pub updated_at: i64,
}

impl ReadingProgress {
    /// `body`: the article's body, to convert the core's scalar offset to UTF-16 (`None`: the
    /// article is not here; the offset passes through).
    pub(crate) fn from_core(slug: String, p: &CoreReadingProgress, body: Option<&str>) -> Self {
        let position = match body {
            Some(body) => text::scalars_to_utf16(body, p.position),
            None => p.position,
        };
        Self {
            slug,
            fraction_ppm: p.fraction,
            position,
            updated_at: p.updated_at,
        }
    }
}

/// Where this device stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum SyncState {
    /// No account: public content only.
    LoggedOut,
    /// Everything local is on the server and the last pull was caught up.
    Synced,
    /// Local changes wait for the server (or no round has confirmed yet).
    Pending,
    /// The last round failed; see `last_error`. Nothing was lost.
    Error,
    /// Another device revoked this one; it keeps its data and stops syncing.
    Revoked,
    /// The account was erased; this device keeps its data and stops syncing.
    Erased,
    /// The journal stays on this device (no account yet, or switched to local-only): only
    /// public content syncs.
    LocalOnly,
}

/// The honest status a UI shows: never "synced" while anything is pending.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SyncStatus {
    pub state: SyncState,
    /// Changes waiting for the server.
    pub pending: u64,
    /// The private space's last seq this device has applied.
    pub last_confirmed_seq: u64,
    /// The private space's head at the last pull.
    pub server_head: u64,
    pub last_error: Option<String>,
    /// When the last round succeeded.
    pub last_synced_at: Option<i64>,
}

impl From<CoreSyncStatus> for SyncStatus {
    fn from(s: CoreSyncStatus) -> Self {
        Self {
            state: match s.state {
                CoreSyncState::LoggedOut => SyncState::LoggedOut,
                CoreSyncState::Synced => SyncState::Synced,
                CoreSyncState::Pending => SyncState::Pending,
                CoreSyncState::Error => SyncState::Error,
                CoreSyncState::Revoked => SyncState::Revoked,
                CoreSyncState::Erased => SyncState::Erased,
                CoreSyncState::LocalOnly => SyncState::LocalOnly,
            },
            pending: s.pending as u64,
            last_confirmed_seq: s.last_confirmed_seq,
            server_head: s.server_head,
            last_error: s.last_error,
            last_synced_at: s.last_synced_at,
        }
    }
}

/// What one sync round moved.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SyncReport {
    pub pushed: u64,
    pub pulled: u64,
    /// Documents that changed here because of the round.
    pub changed: Vec<String>,
    /// Documents deleted here because of the round.
    pub deleted: Vec<String>,
    /// Envelopes skipped (failed verification or decryption), with why.
    pub skipped: Vec<String>,
    /// Local changes the server refused for good (their content stays in the documents).
    pub refused: Vec<String>,
    pub snapshots: u64,
    /// The server had lost data (a restore) and this device uploaded what it holds again.
    pub healed: bool,
    /// Devices that joined the account since this one last looked (also in `device_alerts()`
    /// until dismissed): show them; if one is not the person's, offer to revoke it.
    pub devices_joined: Vec<DeviceJoined>,
}

impl From<&CoreSyncReport> for SyncReport {
    fn from(r: &CoreSyncReport) -> Self {
        Self {
            pushed: r.pushed as u64,
            pulled: r.pulled as u64,
            changed: r.changed.iter().map(|id| id.to_hex()).collect(),
            deleted: r.deleted.iter().map(|id| id.to_hex()).collect(),
            skipped: r.skipped.clone(),
            refused: r.refused.clone(),
            snapshots: r.snapshots as u64,
            healed: r.healed,
            devices_joined: r.devices_joined.iter().cloned().map(Into::into).collect(),
        }
    }
}

/// What a `ChangeListener` hears after a round that changed something.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ChangeSet {
    /// Ids of documents that changed (journal entries, articles, resource lists, settings).
    pub changed: Vec<String>,
    /// Ids of documents that were deleted.
    pub deleted: Vec<String>,
    /// A journal entry was created, edited or deleted: refresh the journal list.
    pub journal_changed: bool,
    /// The round ran as part of live sync (otherwise: a `sync_once`).
    pub live: bool,
    /// Devices that joined the account since this one last looked (see `device_alerts()`).
    pub devices_joined: Vec<DeviceJoined>,
}

/// A device that joined the account after this one. Whoever added it had the password or
/// another device to approve a link; if it is not the person's, they revoke it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct DeviceJoined {
    /// Hex.
    pub device_id: String,
    /// The name it was given (from the verified key bundle).
    pub name: String,
    /// When it was added, Unix ms, by the adding device's clock.
    pub added_at_ms: i64,
}

impl From<haven_core::client::DeviceJoined> for DeviceJoined {
    fn from(d: haven_core::client::DeviceJoined) -> Self {
        Self {
            device_id: d.device_id.to_hex(),
            name: d.name,
            added_at_ms: d.added_at_ms,
        }
    }
}

/// What `register` returns.
#[derive(Clone, uniffi::Record)]
pub struct Registration {
    /// The 24-word recovery phrase: show it once, never store it, never log it.
    pub recovery_words: Vec<String>,
    /// Word positions (0-based, ascending) to ask back before continuing; show them as
    /// position + 1.
    pub challenge: Vec<u32>,
}

/// What `link_start` returns on a new device: show `code` (as a QR code or text) and
/// `verification_code`; the approving device must show the same verification code.
#[derive(Debug, Clone, uniffi::Record)]
pub struct LinkOffer {
    pub code: String,
    pub verification_code: String,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration").finish_non_exhaustive()
    }
}

/// This device and its account.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct DeviceInfo {
    /// This install's device id (hex). A restored backup is a new device.
    pub device_id: String,
    /// The account's username, if this profile has one.
    pub username: Option<String>,
    /// The account's private space (hex), if logged in.
    pub space_id: Option<String>,
}

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum ExportFormat {
    /// One Markdown file per entry, readable by a person.
    Markdown,
    /// One `journal.json`.
    Json,
    /// One `<id>.automerge` per entry, loadable by any Automerge implementation.
    Automerge,
}

impl From<ExportFormat> for CoreExportFormat {
    fn from(format: ExportFormat) -> Self {
        match format {
            ExportFormat::Markdown => Self::Markdown,
            ExportFormat::Json => Self::Json,
            ExportFormat::Automerge => Self::Automerge,
        }
    }
}

/// The files an export wrote (plain text: warn first, see `plaintext_export_warning`).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ExportReport {
    pub files: Vec<String>,
    pub entries: u64,
}

impl From<CoreExport> for ExportReport {
    fn from(r: CoreExport) -> Self {
        Self {
            files: r
                .files
                .iter()
                .map(|path| path.to_string_lossy().into_owned())
                .collect(),
            entries: r.entries as u64,
        }
    }
}

/// An encrypted backup of the journal (see `backup_notice`): the file's bytes, ciphertext only,
/// safe to write anywhere the user chooses.
#[derive(Clone, PartialEq, Eq, uniffi::Record)]
pub struct JournalBackup {
    pub data: Vec<u8>,
    pub entries: u64,
}

impl std::fmt::Debug for JournalBackup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalBackup")
            .field("bytes", &self.data.len())
            .field("entries", &self.entries)
            .finish()
    }
}

impl From<CoreBackup> for JournalBackup {
    fn from(backup: CoreBackup) -> Self {
        Self {
            entries: backup.entries as u64,
            data: backup.file,
        }
    }
}

/// What `restore_backup` did. Restoring the same backup again gives only `unchanged` (and
/// `kept_deleted`).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct RestoreReport {
    /// Entries this device did not have, added (and queued for sync).
    pub added: u64,
    /// Entries both had, into which the backup brought edits this device lacked.
    pub merged: u64,
    /// Entries already here with everything the backup holds.
    pub unchanged: u64,
    /// Entries here that the backup records as deleted, deleted here too.
    pub deleted: u64,
    /// Entries of the backup that were deleted here: they stay deleted.
    pub kept_deleted: u64,
}

impl From<CoreRestore> for RestoreReport {
    fn from(report: CoreRestore) -> Self {
        Self {
            added: report.added as u64,
            merged: report.merged as u64,
            unchanged: report.unchanged as u64,
            deleted: report.deleted as u64,
            kept_deleted: report.kept_deleted as u64,
        }
    }
}

/// What a wipe did. A second wipe of the same profile reports zeros and succeeds.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct WipeReport {
    /// `KeyStore.delete` succeeded.
    pub keystore_key_deleted: bool,
    /// The wrapped data key file existed and was deleted.
    pub data_key_file_removed: bool,
    pub files_removed: u64,
    /// The profile directory existed and was deleted.
    pub dir_removed: bool,
}

impl From<CoreWipeReport> for WipeReport {
    fn from(r: CoreWipeReport) -> Self {
        Self {
            keystore_key_deleted: r.keystore_key_deleted,
            data_key_file_removed: r.data_key_file_removed,
            files_removed: r.files_removed as u64,
            dir_removed: r.dir_removed,
        }
    }
}

/// Parses an id as this API prints it (32 hex characters).
pub(crate) fn parse_id(id: &str) -> FfiResult<haven_protocol::DocId> {
    haven_protocol::Bytes::<16>::from_hex(id.trim()).ok_or_else(|| {
        HavenFfiError::invalid("an id is 32 hexadecimal characters, as this API returns them")
    })
}
