//! The public client API: [`Haven`], one device's view of one account (or of no account).
//!
//! The FFI and the CLI are thin shells over this type. Reading and editing are synchronous and
//! work with no network (they touch only the encrypted local store); anything that talks to the
//! server is `async` and goes through a [`ServerApi`] given at open. Journal text never leaves
//! the device unencrypted, and nothing here logs it.

mod account;
pub mod backup;
mod counters;
mod credentials;
mod devices;
mod erasure_wipe;
mod error;
pub mod export;
mod linking;
mod live;
mod local_only;
mod records;
mod replica;
mod sync;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use ed25519_dalek::VerifyingKey;
use haven_protocol::{DocId, SpaceId};

pub use account::PendingRegistration;
pub use devices::{DeviceJoined, DeviceSummary};
pub use error::{HavenError, HavenResult};
pub use linking::MAX_LINK_WAIT;
pub use live::MAX_PUSH_JITTER;
pub use sync::{SyncReport, SyncState, SyncStatus};

use self::records::SummaryRecord;
use self::replica::Replica;
use crate::documents::{
    Article, DocType, JournalEntry, JournalEntryDoc, JournalIndex, JournalIndexDoc, ReadingState,
    ReadingStateDoc, ResourceList, SavedResources, SavedResourcesDoc, TrustedContact,
};
use crate::env::{Clock, OsRandom, Random, SystemClock};
use crate::local_store::{KeyStore, LocalStore, LocalStoreError, WriteBatch};
use crate::remote::ServerApi;

/// Decodes the payload of a private change envelope (framed Automerge changes) as a device does
/// after opening it; never panics on malformed input.
pub fn decode_change_payload(payload: &[u8]) -> Result<Vec<automerge::Change>, String> {
    replica::unframe_changes(payload)
}

/// How to open a profile.
#[derive(Debug, Clone)]
pub struct HavenConfig {
    /// The profile directory; `None` keeps everything in memory (tests).
    pub profile_dir: Option<PathBuf>,
    /// Content keys public content must be signed by. Empty: the development key whose content
    /// is bundled with this library.
    pub content_keys: Vec<VerifyingKey>,
    pub clock: Arc<dyn Clock>,
    pub random: Arc<dyn Random>,
}

impl HavenConfig {
    pub fn new(profile_dir: impl Into<PathBuf>) -> Self {
        Self {
            profile_dir: Some(profile_dir.into()),
            content_keys: Vec::new(),
            clock: Arc::new(SystemClock),
            random: Arc::new(OsRandom),
        }
    }

    pub fn in_memory() -> Self {
        Self {
            profile_dir: None,
            ..Self::new("")
        }
    }
}

/// A journal entry as a list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntrySummary {
    pub id: DocId,
    pub title: String,
    pub excerpt: String,
    pub mood: Option<String>,
    pub tags: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// An article as a list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArticleSummary {
    pub id: DocId,
    pub slug: String,
    pub title: String,
    pub summary: String,
    pub tags: Vec<String>,
    pub content_warnings: Vec<String>,
    pub language: String,
    pub published_at: i64,
    pub updated_at: i64,
    pub reading_minutes: u32,
}

/// One device's Haven. `Send + Sync`: share it behind an `Arc`.
#[derive(Debug)]
pub struct Haven {
    replica: Mutex<Replica>,
    remote: Arc<dyn ServerApi>,
    /// One sync round at a time.
    sync_lock: tokio::sync::Mutex<()>,
    /// One token refresh at a time (a refresh token works once).
    refresh_lock: tokio::sync::Mutex<()>,
    /// Wakes live sync when a local edit is waiting to be pushed.
    local_change: tokio::sync::Notify,
    status: Mutex<SyncStatus>,
}

impl Haven {
    /// Opens (or creates) a profile. Reads only the summary index, not the documents. A new
    /// profile gets the bundled public content, so articles and hotlines are there at first
    /// launch with no network.
    pub fn open(
        config: HavenConfig,
        keystore: Arc<dyn KeyStore>,
        remote: Arc<dyn ServerApi>,
    ) -> HavenResult<Self> {
        let store =
            match &config.profile_dir {
                Some(dir) => LocalStore::open(dir, keystore, Arc::clone(&config.random)).map_err(
                    |error| match error {
                        LocalStoreError::ProfileInUse { .. } => HavenError::ProfileInUse,
                        other => HavenError::Store(other),
                    },
                )?,
                None => LocalStore::open_in_memory(Arc::clone(&config.random)),
            };
        let pins = if config.content_keys.is_empty() {
            vec![crate::content::bundled_dev_content_key()]
        } else {
            config.content_keys
        };
        let mut replica = Replica::open(store, pins, config.clock, config.random)?;
        if !replica.meta.bundled_content_loaded {
            let bundle =
                crate::content::PublicBundle::from_bytes(crate::content::BUNDLED_PUBLIC_CONTENT)
                    .map_err(|error| {
                        HavenError::Protocol(format!("the bundled content: {error}"))
                    })?;
            replica.load_public(&bundle.envelopes)?;
        }
        let status = SyncStatus::initial(&mut replica)?;
        Ok(Self {
            replica: Mutex::new(replica),
            remote,
            sync_lock: tokio::sync::Mutex::new(()),
            refresh_lock: tokio::sync::Mutex::new(()),
            local_change: tokio::sync::Notify::new(),
            status: Mutex::new(status),
        })
    }

    fn replica(&self) -> MutexGuard<'_, Replica> {
        // A panic while holding the lock leaves the replica as the store last committed it.
        self.replica
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// This install's device id.
    pub fn device_id(&self) -> haven_protocol::DeviceId {
        self.replica().device_id()
    }

    /// The account's username, if this profile has one.
    pub fn username(&self) -> Option<String> {
        self.replica()
            .meta
            .account
            .as_ref()
            .map(|account| account.username.clone())
    }

    // ---- public content ---------------------------------------------------------------------

    /// Articles, newest first.
    pub fn articles(&self) -> Vec<ArticleSummary> {
        let mut out: Vec<ArticleSummary> = self
            .replica()
            .summaries_of(|summary| matches!(summary, SummaryRecord::Article { .. }))
            .into_iter()
            .filter_map(|(id, summary)| match summary {
                SummaryRecord::Article {
                    slug,
                    title,
                    summary,
                    tags,
                    content_warnings,
                    language,
                    published_at,
                    updated_at,
                    reading_minutes,
                } => Some(ArticleSummary {
                    id,
                    slug,
                    title,
                    summary,
                    tags,
                    content_warnings,
                    language,
                    published_at,
                    updated_at,
                    reading_minutes,
                }),
                _ => None,
            })
            .collect();
        out.sort_by(|a, b| {
            b.published_at
                .cmp(&a.published_at)
                .then_with(|| a.slug.cmp(&b.slug))
        });
        out
    }

    /// One article by id (hex) or slug.
    pub fn article(&self, id_or_slug: &str) -> HavenResult<Article> {
        let id = self
            .articles()
            .into_iter()
            .find(|article| article.slug == id_or_slug || article.id.to_hex() == id_or_slug)
            .map(|article| article.id)
            .ok_or_else(|| HavenError::NotFound {
                what: "article",
                id: id_or_slug.to_owned(),
            })?;
        self.replica()
            .read::<Article>(&id)?
            .ok_or_else(|| HavenError::NotFound {
                what: "article",
                id: id_or_slug.to_owned(),
            })
    }

    /// Resource lists, optionally only those of one region (`US`, `campus:<name>`, …).
    pub fn resources(&self, region: Option<&str>) -> HavenResult<Vec<ResourceList>> {
        let mut replica = self.replica();
        let ids: Vec<DocId> = replica
            .summaries_of(|summary| match summary {
                SummaryRecord::ResourceList {
                    region: list_region,
                    ..
                } => region.is_none_or(|wanted| wanted.eq_ignore_ascii_case(list_region)),
                _ => false,
            })
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        let mut lists = Vec::new();
        for id in ids {
            if let Some(list) = replica.read::<ResourceList>(&id)? {
                lists.push(list);
            }
        }
        lists.sort_by(|a, b| a.region.cmp(&b.region).then_with(|| a.slug.cmp(&b.slug)));
        Ok(lists)
    }

    // ---- the journal ------------------------------------------------------------------------

    /// Creates an entry (and records it in the journal index); returns its id.
    pub fn journal_create(&self, title: &str, body: &str) -> HavenResult<DocId> {
        let mut replica = self.replica();
        let id = replica.new_doc_id();
        let index = replica.singleton_id(DocType::JournalIndex)?;
        let device = replica.device_id();
        let now = replica.now_ms();
        let mut batch = WriteBatch::new();
        let entry = JournalEntryDoc::create(&device, now, title, body)?.into_doc();
        replica.stage_new_doc(id, entry, DocType::JournalEntry, &mut batch)?;
        replica.stage_edit::<JournalIndex, _>(
            index,
            Some(DocType::JournalIndex),
            |doc: &mut JournalIndexDoc, now| doc.add_entry(&id, now, now).map(|_| ()),
            &mut batch,
        )?;
        replica.commit(batch)?;
        drop(replica);
        self.note_local_change();
        Ok(id)
    }

    /// Applies one edit to an entry: one Automerge commit, one outbox envelope.
    fn edit_entry(
        &self,
        id: &DocId,
        edit: impl FnOnce(&mut JournalEntryDoc, i64) -> Result<(), crate::documents::DocumentError>,
    ) -> HavenResult<()> {
        self.ensure_entry(id)?;
        let changed = self.replica().edit::<JournalEntry, _>(*id, None, edit)?;
        if changed {
            self.note_local_change();
        }
        Ok(())
    }

    fn ensure_entry(&self, id: &DocId) -> HavenResult<()> {
        match self.replica().summaries.get(id) {
            Some(SummaryRecord::Journal { .. }) => Ok(()),
            _ => Err(HavenError::NotFound {
                what: "journal entry",
                id: id.to_hex(),
            }),
        }
    }

    /// Replaces the title (a diff: concurrent edits elsewhere merge).
    pub fn journal_set_title(&self, id: &DocId, title: &str) -> HavenResult<()> {
        self.edit_entry(id, |doc, now| doc.set_title(title, now).map(|_| ()))
    }

    /// Replaces the body (a diff: concurrent edits elsewhere merge).
    pub fn journal_set_body(&self, id: &DocId, body: &str) -> HavenResult<()> {
        self.edit_entry(id, |doc, now| doc.set_body(body, now).map(|_| ()))
    }

    /// Deletes `delete` characters at `position` of the body and inserts `insert` there
    /// (positions in Unicode scalar values).
    pub fn journal_splice_body(
        &self,
        id: &DocId,
        position: usize,
        delete: usize,
        insert: &str,
    ) -> HavenResult<()> {
        self.edit_entry(id, |doc, now| {
            doc.splice_body(position, delete, insert, now).map(|_| ())
        })
    }

    /// Splices the body at a range the caller computes from the current body, atomically: the
    /// body cannot change between reading and splicing (hosts that count positions in UTF-16
    /// units convert here). `locate` returns (position, delete) in Unicode scalar values, or
    /// `None` when the range is not in the body.
    pub fn journal_splice_body_located(
        &self,
        id: &DocId,
        insert: &str,
        locate: impl FnOnce(&str) -> Option<(usize, usize)>,
    ) -> HavenResult<()> {
        self.edit_entry(id, |doc, now| {
            let body = doc.read()?.body;
            let Some((position, delete)) = locate(&body) else {
                return Err(crate::documents::DocumentError::OutOfRange {
                    field: "body".into(),
                    position: 0,
                    delete: 0,
                    length: body.chars().count(),
                });
            };
            doc.splice_body(position, delete, insert, now).map(|_| ())
        })
    }

    pub fn journal_append_body(&self, id: &DocId, text: &str) -> HavenResult<()> {
        self.edit_entry(id, |doc, now| doc.append_body(text, now).map(|_| ()))
    }

    pub fn journal_set_mood(&self, id: &DocId, mood: Option<&str>) -> HavenResult<()> {
        self.edit_entry(id, |doc, now| doc.set_mood(mood, now).map(|_| ()))
    }

    pub fn journal_set_tags(&self, id: &DocId, tags: &[String]) -> HavenResult<()> {
        self.edit_entry(id, |doc, now| doc.set_tags(tags, now).map(|_| ()))
    }

    /// Deletes an entry on every device (journal index + sealed tombstone). Its changes still
    /// waiting in the outbox are dropped with it: they would only be deleted again.
    pub fn journal_delete(&self, id: &DocId) -> HavenResult<()> {
        self.ensure_entry(id)?;
        self.replica().delete_entry(*id)?;
        self.note_local_change();
        Ok(())
    }

    /// Purges an entry's history: its title, body, mood, tags and timestamps as they read now
    /// go into a new entry (a fresh document whose history is that one copy), and the old
    /// entry is deleted as [`Haven::journal_delete`] deletes, in one local commit. Returns the
    /// new entry's id.
    ///
    /// On this device the old document's saves, summary and envelopes still waiting in the
    /// outbox are deleted from the encrypted store at once (redb may keep the freed pages,
    /// still encrypted under the profile's data key, until it reuses them). Other devices
    /// forget the old document when they next sync (the index's deletion, the tombstone). The
    /// server, when it gets the tombstone, deletes the old document's envelopes from its log; it
    /// keeps the tombstone and, forever, each old envelope's id and digest (keyed hashes, for
    /// idempotency; no content). Until the storage engine compacts (sled reclaims segments,
    /// PostgreSQL vacuums; its backups keep what they hold), the deleted envelopes' ciphertext
    /// stays in its files, sealed under the account's epoch and storage keys (PRIVACY.md,
    /// known gaps).
    pub fn journal_purge_history(&self, id: &DocId) -> HavenResult<DocId> {
        self.ensure_entry(id)?;
        let copy = self.replica().purge_history(*id)?;
        self.note_local_change();
        Ok(copy)
    }

    /// Entries, most recently updated first.
    pub fn journal_list(&self) -> Vec<EntrySummary> {
        let mut out: Vec<EntrySummary> = self
            .replica()
            .summaries_of(|summary| matches!(summary, SummaryRecord::Journal { .. }))
            .into_iter()
            .filter_map(|(id, summary)| match summary {
                SummaryRecord::Journal {
                    title,
                    excerpt,
                    mood,
                    tags,
                    created_at,
                    updated_at,
                } => Some(EntrySummary {
                    id,
                    title,
                    excerpt,
                    mood,
                    tags,
                    created_at,
                    updated_at,
                }),
                _ => None,
            })
            .collect();
        out.sort_by(|a, b| {
            b.updated_at
                .cmp(&a.updated_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        out
    }

    /// One entry, whole.
    pub fn journal_get(&self, id: &DocId) -> HavenResult<JournalEntry> {
        self.ensure_entry(id)?;
        self.replica()
            .read::<JournalEntry>(id)?
            .ok_or_else(|| HavenError::NotFound {
                what: "journal entry",
                id: id.to_hex(),
            })
    }

    /// An entry's edit history, oldest first.
    pub fn journal_history(&self, id: &DocId) -> HavenResult<Vec<crate::documents::ChangeInfo>> {
        self.ensure_entry(id)?;
        self.replica()
            .history(id)?
            .ok_or_else(|| HavenError::NotFound {
                what: "journal entry",
                id: id.to_hex(),
            })
    }

    /// Parses an entry id as printed by this API (hex), or finds the one entry whose id starts
    /// with the given prefix (at least 6 characters).
    pub fn resolve_entry(&self, text: &str) -> HavenResult<DocId> {
        let text = text.trim().to_ascii_lowercase();
        if let Some(id) = haven_protocol::Bytes::<16>::from_hex(&text) {
            return Ok(id);
        }
        if text.len() >= 6 {
            let matches: Vec<DocId> = self
                .journal_list()
                .into_iter()
                .map(|entry| entry.id)
                .filter(|id| id.to_hex().starts_with(&text))
                .collect();
            if let [one] = matches.as_slice() {
                return Ok(*one);
            }
        }
        Err(HavenError::NotFound {
            what: "journal entry",
            id: text,
        })
    }

    // ---- saved resources and reading state -------------------------------------------------------

    pub fn saved_resources(&self) -> HavenResult<SavedResources> {
        let mut replica = self.replica();
        let id = replica.singleton_id(DocType::SavedResources)?;
        Ok(replica.read::<SavedResources>(&id)?.unwrap_or_default())
    }

    pub fn save_resource(&self, list_slug: &str, name: &str) -> HavenResult<()> {
        self.edit_singleton::<SavedResources>(
            DocType::SavedResources,
            |doc: &mut SavedResourcesDoc, now| doc.save_resource(list_slug, name, now).map(|_| ()),
        )
    }

    pub fn remove_saved_resource(&self, list_slug: &str, name: &str) -> HavenResult<()> {
        self.edit_singleton::<SavedResources>(
            DocType::SavedResources,
            |doc: &mut SavedResourcesDoc, now| {
                doc.remove_resource(list_slug, name, now).map(|_| ())
            },
        )
    }

    pub fn put_contact(&self, contact: &TrustedContact) -> HavenResult<()> {
        self.edit_singleton::<SavedResources>(
            DocType::SavedResources,
            |doc: &mut SavedResourcesDoc, now| doc.put_contact(contact, now).map(|_| ()),
        )
    }

    pub fn reading_state(&self) -> HavenResult<ReadingState> {
        let mut replica = self.replica();
        let id = replica.singleton_id(DocType::ReadingState)?;
        Ok(replica.read::<ReadingState>(&id)?.unwrap_or_default())
    }

    pub fn set_bookmark(&self, slug: &str, on: bool) -> HavenResult<()> {
        self.edit_singleton::<ReadingState>(
            DocType::ReadingState,
            |doc: &mut ReadingStateDoc, now| {
                if on {
                    doc.add_bookmark(slug, now)
                } else {
                    doc.remove_bookmark(slug, now)
                }
                .map(|_| ())
            },
        )
    }

    pub fn set_reading_progress(
        &self,
        slug: &str,
        fraction_ppm: u32,
        position: u64,
    ) -> HavenResult<()> {
        self.edit_singleton::<ReadingState>(
            DocType::ReadingState,
            |doc: &mut ReadingStateDoc, now| {
                doc.set_progress(slug, fraction_ppm, position, now)
                    .map(|_| ())
            },
        )
    }

    fn edit_singleton<T: crate::documents::Document>(
        &self,
        kind: DocType,
        edit: impl FnOnce(
            &mut crate::documents::DocHandle<T>,
            i64,
        ) -> Result<(), crate::documents::DocumentError>,
    ) -> HavenResult<()> {
        let mut replica = self.replica();
        let id = replica.singleton_id(kind)?;
        let changed = replica.edit::<T, _>(id, Some(kind), edit)?;
        drop(replica);
        if changed {
            self.note_local_change();
        }
        Ok(())
    }

    // ---- status -----------------------------------------------------------------------------

    /// The honest sync status: never "synced" while anything is pending.
    ///
    /// Pending work and the cursor are read afresh, so the status stays true even when a round
    /// was cut short (a host's timeout dropped it before it could report).
    pub fn status(&self) -> SyncStatus {
        let (pending, cursor) = {
            let mut replica = self.replica();
            let pending = replica.outbox_len().ok();
            let cursor = replica
                .private_space()
                .and_then(|space| replica.cursor(&space).ok());
            (pending, cursor)
        };
        let mut status = self
            .status
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone();
        if let Some(pending) = pending {
            status.pending = pending;
        }
        if let Some(cursor) = cursor {
            status.last_confirmed_seq = cursor.seq;
            status.server_head = cursor.head;
        }
        if status.state == SyncState::Synced
            && (status.pending > 0 || status.last_confirmed_seq < status.server_head)
        {
            status.state = SyncState::Pending;
        }
        status
    }

    fn note_local_change(&self) {
        // Live sync (if running) pushes it now; a stored permit covers an edit made mid-round.
        self.local_change.notify_one();
        let pending = self.replica().outbox_len().unwrap_or(0);
        let mut status = self
            .status
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        status.pending = pending;
        if pending > 0 && status.state == SyncState::Synced {
            status.state = SyncState::Pending;
        }
    }

    /// The private space, if logged in.
    pub fn space(&self) -> Option<SpaceId> {
        self.replica().private_space()
    }

    /// Closes the profile (flushes and releases its lock).
    pub fn close(self) -> HavenResult<()> {
        let replica = self
            .replica
            .into_inner()
            .unwrap_or_else(|poison| poison.into_inner());
        replica.store.close()?;
        Ok(())
    }

    /// Panic wipe: destroys the wrapped data key through the key store, then deletes every file
    /// of the profile. The `Haven` is consumed; nothing of the profile stays readable.
    pub fn wipe(self) -> HavenResult<crate::local_store::WipeReport> {
        let replica = self
            .replica
            .into_inner()
            .unwrap_or_else(|poison| poison.into_inner());
        replica
            .store
            .wipe()
            .map_err(|error| HavenError::Protocol(format!("wipe incomplete: {error}")))
    }
}
