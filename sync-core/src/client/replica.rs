//! The device's replica: its documents, summaries, keys and outbox, with no network.
//!
//! Every local edit is one Automerge commit that goes, in the same durable store commit, into the
//! document and into the outbox as a sealed envelope, so an edit is never only in memory and never
//! only on the server. Pulled envelopes are verified or opened, applied in any order (Automerge
//! queues missing dependencies), and committed together with the cursor that follows them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use automerge::{AutoCommit, Change, ChangeHash};
use ed25519_dalek::VerifyingKey;
use haven_protocol::api::KeyBundle;
use haven_protocol::{DeviceId, DocId, Envelope, EnvelopeId, Kind, SequencedEnvelope, SpaceId};

use super::counters::{Admission, SeenCounters};
use super::error::{HavenError, HavenResult};
use super::records::{
    self, COUNTER_OUTBOX, CursorRecord, DocRecord, KEY_BUNDLE, KEY_DEVICE, KEY_LOCAL_JOURNAL,
    KEY_ROOT, LocalJournalMeta, META_PROFILE, OutboxRecord, PROFILE_FORMAT, ProfileMeta,
    SEEN_COUNTERS_PREFIX, SeenRecord, SummaryRecord, doc_key, space_key,
};
use crate::content::{ManifestGuard, verify_public_envelope};
use crate::crypto::{
    BundleContents, DeviceKeys, OpenError, PrivateHeader, RootKey, envelope_id, open_private,
    seal_private, sorted_hashes_content,
};
use crate::documents::{
    Article, DocHandle, DocType, Document, JournalEntryDoc, JournalIndex, JournalIndexDoc,
    Manifest, ResourceList, doc_type, genesis_doc, load_doc, new_doc, singleton_doc_id,
};
use crate::env::{Clock, Random, random_array};
use crate::local_store::{LocalStore, Table, WriteBatch};

/// Changes folded into a document's compacted save once this many accumulate.
const COMPACT_AFTER_CHANGES: usize = 32;
/// ... or once their bytes pass this.
const COMPACT_AFTER_BYTES: usize = 16 * 1024;
/// The singletons every account has.
pub(crate) const SINGLETONS: [DocType; 3] = [
    DocType::JournalIndex,
    DocType::SavedResources,
    DocType::ReadingState,
];

/// The root key and the opened bundle of the logged-in account.
pub(crate) struct AccountKeys {
    pub rk: RootKey,
    pub bundle: BundleContents,
    pub sealed: KeyBundle,
}

impl std::fmt::Debug for AccountKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountKeys")
            .field("version", &self.sealed.version)
            .field("key_epoch", &self.sealed.key_epoch)
            .finish_non_exhaustive()
    }
}

/// A loaded document and what is not yet compacted.
struct CachedDoc {
    doc: AutoCommit,
    space: SpaceId,
    doc_type: Option<DocType>,
    /// Incremental saves since the compacted one, as stored in `DocumentChanges`.
    pending: Vec<u8>,
    pending_changes: usize,
    /// The heads the store holds (compacted save plus pending): the next incremental save is
    /// what came after them. Kept here rather than in automerge's own save cursor, which only
    /// a full save or incremental save can set, i.e. encoding every change after each load.
    saved_heads: Vec<ChangeHash>,
    /// A pulled snapshot this document was loaded from while empty, with its heads: stored as
    /// the compacted save as it is, when nothing changed since, instead of saving again.
    loaded_snapshot: Option<(Vec<ChangeHash>, Vec<u8>)>,
}

/// At most this many threads decode a page's snapshots ahead of applying it.
const MAX_DECODE_THREADS: usize = 4;
/// Below this many snapshots in a page, starting threads costs more than it saves.
const MIN_SNAPSHOTS_TO_SPREAD: usize = 16;

/// How many threads decode snapshots ahead: asked of the system once (on Linux that reads
/// cgroup files, which cost a live round a noticeable share of its time when asked every page).
fn decode_threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, std::num::NonZero::get)
            .min(MAX_DECODE_THREADS)
    })
}

/// A pulled snapshot opened and loaded into a new document ahead of the in-order pass.
struct DecodedSnapshot {
    doc: AutoCommit,
    payload: zeroize::Zeroizing<Vec<u8>>,
}

/// A summary computed off the applying thread (reading an entry's body is most of a summary),
/// valid for the document at `heads` only.
struct SummaryAhead {
    heads: Vec<ChangeHash>,
    doc_type: Option<DocType>,
    summary: Option<SummaryRecord>,
}

/// What the lists show of a document: its summary, if its type has one and it reads as that type.
fn summarize(doc: &AutoCommit, doc_type: Option<DocType>) -> Option<SummaryRecord> {
    match doc_type {
        Some(DocType::JournalEntry) => {
            match crate::documents::JournalSummary::of(doc) {
                Ok(summary) => Some(SummaryRecord::Journal {
                    excerpt: summary.excerpt,
                    title: summary.title,
                    mood: summary.mood,
                    tags: summary.tags,
                    created_at: summary.created_at,
                    updated_at: summary.updated_at,
                }),
                // Still waiting for its creating change: no summary yet.
                Err(_) => None,
            }
        }
        Some(DocType::Article) => {
            Article::hydrate(doc)
                .ok()
                .map(|article| SummaryRecord::Article {
                    slug: article.slug,
                    title: article.title,
                    summary: article.summary,
                    tags: article.tags,
                    content_warnings: article.content_warnings,
                    language: article.language,
                    published_at: article.published_at,
                    updated_at: article.updated_at,
                    reading_minutes: article.reading_minutes,
                })
        }
        Some(DocType::ResourceList) => {
            ResourceList::hydrate(doc)
                .ok()
                .map(|list| SummaryRecord::ResourceList {
                    count: u32::try_from(list.resources.len()).unwrap_or(u32::MAX),
                    slug: list.slug,
                    title: list.title,
                    region: list.region,
                })
        }
        _ => None,
    }
}

/// What applying a page of pulled envelopes did.
#[derive(Debug, Default)]
pub(crate) struct ApplyReport {
    pub applied: usize,
    /// Envelopes that failed verification or decryption, or were malformed: skipped, reported.
    pub skipped: Vec<(u64, String)>,
    /// The first envelope sealed under an epoch this device has no key for: the caller fetches
    /// the key bundle and applies from there again. Nothing at or after it was applied.
    pub needs_keys_at: Option<u64>,
    pub changed_docs: Vec<DocId>,
    pub deleted_docs: Vec<DocId>,
}

pub(crate) struct Replica {
    pub store: LocalStore,
    pub device: DeviceKeys,
    pub meta: ProfileMeta,
    pub keys: Option<AccountKeys>,
    /// The singleton key of the local-only journal, when the profile has one (no account).
    local_journal_key: Option<zeroize::Zeroizing<[u8; 32]>>,
    pub summaries: BTreeMap<DocId, SummaryRecord>,
    pub pins: Vec<VerifyingKey>,
    pub clock: Arc<dyn Clock>,
    pub random: Arc<dyn Random>,
    docs: HashMap<DocId, CachedDoc>,
    counters: HashMap<Vec<u8>, u64>,
    /// The outbox, mirrored in memory once read (listing it must not decrypt every record).
    outbox_cache: Option<BTreeMap<Vec<u8>, OutboxRecord>>,
    /// Documents with enough live envelopes to be worth a snapshot, once read.
    snapshot_due: Option<HashSet<DocId>>,
    /// The envelope counters applied per (private space, device), once read, to notice replays;
    /// those changed by the page being applied are staged with it.
    device_counters: HashMap<(SpaceId, DeviceId), SeenCounters>,
    counters_changed: HashSet<(SpaceId, DeviceId)>,
    manifest_guard: ManifestGuard,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("device", &self.meta.device_id)
            .field("documents", &self.summaries.len())
            .finish_non_exhaustive()
    }
}

impl Replica {
    /// Opens the replica on a store: reads the profile, the device keys, the account keys if any,
    /// and the summaries — no document.
    pub(crate) fn open(
        store: LocalStore,
        pins: Vec<VerifyingKey>,
        clock: Arc<dyn Clock>,
        random: Arc<dyn Random>,
    ) -> HavenResult<Self> {
        let (meta, device) =
            match records::load::<ProfileMeta>(&store, Table::Meta, META_PROFILE, "profile")? {
                Some(meta) => {
                    let bytes = store.get(Table::Keys, KEY_DEVICE)?.ok_or_else(|| {
                        HavenError::Protocol("the profile has no device keys".into())
                    })?;
                    let array = <[u8; crate::crypto::DEVICE_KEYS_LEN]>::try_from(bytes.as_slice())
                        .map_err(|_| {
                            HavenError::Protocol("the stored device keys are malformed".into())
                        })?;
                    (meta, DeviceKeys::from_secret_bytes(&array))
                }
                None => {
                    let device = DeviceKeys::generate(random.as_ref());
                    let meta = ProfileMeta {
                        format: PROFILE_FORMAT,
                        device_id: device.device_id(),
                        account: None,
                        bundle_min_version: 0,
                        manifest_version: 0,
                        bundled_content_loaded: false,
                        local_journal: None,
                        local_only: false,
                        push_jitter_ms: 0,
                    };
                    let mut batch = WriteBatch::new();
                    batch.put(Table::Keys, KEY_DEVICE, device.to_secret_bytes().as_slice());
                    records::put(&mut batch, Table::Meta, META_PROFILE, &meta)?;
                    store.commit(batch)?;
                    (meta, device)
                }
            };
        if meta.format > PROFILE_FORMAT {
            return Err(HavenError::Protocol(format!(
                "this profile was written by a newer version (format {}); update the app",
                meta.format
            )));
        }
        let keys = Self::load_account_keys(&store, &device, &meta)?;
        let local_journal_key = match meta.local_journal {
            None => None,
            Some(_) => {
                let bytes = store.get(Table::Keys, KEY_LOCAL_JOURNAL)?.ok_or_else(|| {
                    HavenError::Protocol("the local journal's key is missing".into())
                })?;
                let key = <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
                    HavenError::Protocol("the local journal's key is malformed".into())
                })?;
                Some(zeroize::Zeroizing::new(key))
            }
        };
        let summaries = Self::load_summaries(&store)?;
        let manifest_guard = if meta.manifest_version > 0 {
            ManifestGuard::with_last_accepted(meta.manifest_version)
        } else {
            ManifestGuard::new()
        };
        Ok(Self {
            store,
            device,
            meta,
            keys,
            local_journal_key,
            summaries,
            pins,
            clock,
            random,
            docs: HashMap::new(),
            counters: HashMap::new(),
            outbox_cache: None,
            snapshot_due: None,
            device_counters: HashMap::new(),
            counters_changed: HashSet::new(),
            manifest_guard,
        })
    }

    fn load_summaries(store: &LocalStore) -> HavenResult<BTreeMap<DocId, SummaryRecord>> {
        let mut summaries = BTreeMap::new();
        for (key, value) in store.scan(Table::Summaries)?.entries {
            let Ok(doc) = <[u8; 16]>::try_from(key.as_slice()) else {
                continue;
            };
            if let Ok(summary) = records::decode::<SummaryRecord>(&value, "summary") {
                summaries.insert(DocId::from(doc), summary);
            }
        }
        Ok(summaries)
    }

    fn load_account_keys(
        store: &LocalStore,
        device: &DeviceKeys,
        meta: &ProfileMeta,
    ) -> HavenResult<Option<AccountKeys>> {
        if meta.account.is_none() {
            return Ok(None);
        }
        let (Some(root), Some(sealed)) = (
            store.get(Table::Keys, KEY_ROOT)?,
            records::load::<KeyBundle>(store, Table::Keys, KEY_BUNDLE, "key bundle")?,
        ) else {
            return Err(HavenError::Protocol(
                "the account's keys are missing from this profile".into(),
            ));
        };
        let root = <[u8; 32]>::try_from(root.as_slice())
            .map_err(|_| HavenError::Protocol("the stored root key is malformed".into()))?;
        let trusted = RootKey::from_bytes(&root);
        let (rk, bundle) = BundleContents::open_with_device(&sealed, device, &trusted, 0)?;
        Ok(Some(AccountKeys { rk, bundle, sealed }))
    }

    pub(crate) fn device_id(&self) -> DeviceId {
        self.meta.device_id
    }

    pub(crate) fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The account's private space, if logged in.
    pub(crate) fn private_space(&self) -> Option<SpaceId> {
        self.meta.account.as_ref().map(|account| account.space)
    }

    fn require_keys(&self) -> HavenResult<&AccountKeys> {
        self.keys.as_ref().ok_or(HavenError::NotLoggedIn)
    }

    /// The space the journal lives in: the account's, or the local-only journal's.
    pub(crate) fn journal_space(&self) -> Option<SpaceId> {
        self.private_space()
            .or_else(|| self.meta.local_journal.map(|local| local.space))
    }

    /// Whether documents of `space` stay on this device (no envelopes are made for them).
    fn is_local_space(&self, space: &SpaceId) -> bool {
        self.meta
            .local_journal
            .is_some_and(|local| local.space == *space)
    }

    /// The key singleton ids derive from: the account's, or the local-only journal's.
    fn singleton_key(&self) -> HavenResult<&[u8; 32]> {
        match (&self.keys, &self.local_journal_key) {
            (Some(keys), _) => Ok(keys.bundle.constants().singleton_key()),
            (None, Some(local)) => Ok(local),
            (None, None) => Err(HavenError::NotLoggedIn),
        }
    }

    /// Whether the journal stays on this device: a journal without an account, or an account
    /// switched to local-only.
    pub(crate) fn is_local_only(&self) -> bool {
        match &self.meta.account {
            Some(_) => self.meta.local_only,
            None => self.meta.local_journal.is_some(),
        }
    }

    /// Starts a journal on a profile with no account: a random space id and singleton key that
    /// never leave the device; edits make no envelopes. Does nothing if there is one already.
    pub(crate) fn start_local_journal(&mut self) -> HavenResult<()> {
        if self.meta.account.is_some() {
            return Err(HavenError::AlreadyLoggedIn);
        }
        if self.meta.local_journal.is_some() {
            return Ok(());
        }
        let key = zeroize::Zeroizing::new(random_array::<32>(self.random.as_ref()));
        let space = SpaceId::Private(haven_protocol::HexId(random_array::<16>(
            self.random.as_ref(),
        )));
        let mut batch = WriteBatch::new();
        batch.put(Table::Keys, KEY_LOCAL_JOURNAL, key.as_slice());
        self.meta.local_journal = Some(LocalJournalMeta { space });
        self.local_journal_key = Some(key);
        self.stage_singletons(&mut batch)?;
        self.stage_meta(&mut batch)?;
        let committed = self.commit(batch);
        if committed.is_err() {
            self.meta.local_journal = None;
            self.local_journal_key = None;
        }
        committed
    }

    /// Moves the local-only journal into the account just staged (register or login, in the
    /// same batch): each entry is re-homed into the account's space with all its changes queued
    /// (everything uploads on the next round), and each local singleton (journal index, saved
    /// resources, reading state) is merged into the account's — they share the frozen genesis
    /// change, so Automerge merges them like two devices' copies — and then forgotten. Returns
    /// the number of entries moved.
    pub(crate) fn stage_adopt_local_journal(
        &mut self,
        batch: &mut WriteBatch,
    ) -> HavenResult<usize> {
        let (Some(local), Some(space)) = (self.meta.local_journal, self.private_space()) else {
            return Ok(0);
        };
        let Some(local_key) = self.local_journal_key.clone() else {
            return Err(HavenError::Protocol(
                "the local journal's key is missing".into(),
            ));
        };
        let mut forgotten = HashSet::new();
        for kind in SINGLETONS {
            let local_id = singleton_doc_id(&local_key, kind);
            let account_id = self.singleton_id(kind)?;
            forgotten.insert(local_id);
            let Some(mut source) = self.cached(&local_id)?.map(|cached| cached.doc.clone()) else {
                continue;
            };
            if self.cached(&account_id)?.is_none() {
                self.create_cached(account_id, space, Some(kind))?;
            }
            let target = self
                .docs
                .get_mut(&account_id)
                .ok_or_else(|| HavenError::Protocol("a singleton vanished".into()))?;
            let before = target.doc.get_heads();
            target.doc.merge(&mut source).map_err(|error| {
                HavenError::Protocol(format!("merging the local journal: {error}"))
            })?;
            let changes = target.doc.get_changes(&before);
            if !changes.is_empty() {
                self.stage_outbox_changes(&space, &account_id, &changes, batch)?;
            }
            self.stage_doc(&account_id, batch)?;
            self.stage_forget(&local_id, batch);
        }
        let mut moved = 0;
        for (key, value) in self.store.scan(Table::Documents)?.entries {
            let Ok(doc) = <[u8; 16]>::try_from(key.as_slice()) else {
                continue;
            };
            let doc = DocId::from(doc);
            let record: DocRecord = records::decode(&value, "document")?;
            if record.space != local.space || forgotten.contains(&doc) {
                continue;
            }
            let Some(cached) = self.cached(&doc)? else {
                continue;
            };
            cached.space = space;
            // The record names its space: rewrite it whole.
            cached.pending_changes = usize::MAX;
            let changes = cached.doc.get_changes(&[]);
            self.stage_outbox_changes(&space, &doc, &changes, batch)?;
            self.stage_doc(&doc, batch)?;
            moved += 1;
        }
        batch.delete(Table::Keys, KEY_LOCAL_JOURNAL);
        self.meta.local_journal = None;
        self.local_journal_key = None;
        Ok(moved)
    }

    /// Stores new account keys (after registration, login, or a bundle update) in a batch.
    pub(crate) fn stage_account_keys(
        &mut self,
        keys: AccountKeys,
        batch: &mut WriteBatch,
    ) -> HavenResult<()> {
        batch.put(Table::Keys, KEY_ROOT, keys.rk.expose_secret());
        records::put(batch, Table::Keys, KEY_BUNDLE, &keys.sealed)?;
        self.meta.bundle_min_version = self.meta.bundle_min_version.max(keys.sealed.version);
        self.keys = Some(keys);
        Ok(())
    }

    pub(crate) fn stage_meta(&self, batch: &mut WriteBatch) -> HavenResult<()> {
        records::put(batch, Table::Meta, META_PROFILE, &self.meta)
    }

    /// Commits a batch. The in-memory caches were updated while staging; if the commit fails,
    /// they are dropped and reread from the store, which holds exactly what was committed (the
    /// summaries at once, the rest when next needed).
    pub(crate) fn commit(&mut self, batch: WriteBatch) -> HavenResult<()> {
        let result = self.store.commit(batch);
        if result.is_err() {
            self.drop_caches();
        }
        Ok(result?)
    }

    // ---- documents --------------------------------------------------------------------------

    /// Loads a document into the cache (from the store if needed). `None` if unknown here.
    fn cached(&mut self, id: &DocId) -> HavenResult<Option<&mut CachedDoc>> {
        if !self.docs.contains_key(id) {
            let Some(record) =
                records::load::<DocRecord>(&self.store, Table::Documents, doc_key(id), "document")?
            else {
                return Ok(None);
            };
            let mut doc = if record.saved.is_empty() {
                new_doc(&self.meta.device_id)
            } else {
                load_doc(&record.saved.0, &self.meta.device_id)?
            };
            let pending = self
                .store
                .get(Table::DocumentChanges, doc_key(id))?
                .map(|bytes| bytes.to_vec())
                .unwrap_or_default();
            if !pending.is_empty() {
                doc.load_incremental(&pending).map_err(|error| {
                    HavenError::Protocol(format!("a stored document does not load: {error}"))
                })?;
            }
            let doc_type = record.doc_type.as_deref().and_then(DocType::parse);
            let saved_heads = doc.get_heads();
            self.docs.insert(
                *id,
                CachedDoc {
                    doc,
                    space: record.space,
                    doc_type,
                    pending,
                    pending_changes: 1,
                    saved_heads,
                    loaded_snapshot: None,
                },
            );
        }
        Ok(self.docs.get_mut(id))
    }

    /// Creates an empty (or genesis) document in the cache.
    fn create_cached(
        &mut self,
        id: DocId,
        space: SpaceId,
        doc_type: Option<DocType>,
    ) -> HavenResult<&mut CachedDoc> {
        let doc = match doc_type {
            Some(kind) if kind.is_singleton() => {
                let mut doc = genesis_doc(kind)?;
                doc.set_actor(crate::documents::actor_for_device(&self.meta.device_id));
                doc
            }
            _ => new_doc(&self.meta.device_id),
        };
        self.docs.insert(
            id,
            CachedDoc {
                doc,
                space,
                doc_type,
                pending: Vec::new(),
                pending_changes: usize::MAX,
                saved_heads: Vec::new(),
                loaded_snapshot: None,
            },
        );
        self.docs
            .get_mut(&id)
            .ok_or_else(|| HavenError::Protocol("cache insert failed".into()))
    }

    /// Puts a document's new state into a batch: an incremental save appended to its pending
    /// changes, or a fresh compacted save when those grow large.
    fn stage_doc(&mut self, id: &DocId, batch: &mut WriteBatch) -> HavenResult<()> {
        self.stage_doc_with(id, None, batch)
    }

    /// [`Replica::stage_doc`], given the changes the caller already collected since `after`
    /// (a local edit): when the store holds exactly `after`, those changes are the increment,
    /// and `save_after` would only collect and encode them a second time.
    fn stage_doc_with(
        &mut self,
        id: &DocId,
        collected: Option<(&[ChangeHash], &[Change])>,
        batch: &mut WriteBatch,
    ) -> HavenResult<()> {
        let Some(cached) = self.docs.get_mut(id) else {
            return Ok(());
        };
        let compact_now =
            cached.pending_changes == usize::MAX || cached.pending_changes >= COMPACT_AFTER_CHANGES;
        // `save()` below moves the incremental cursor too; encoding the increment first would
        // be thrown away (for a document a pull just created, it is every change).
        let incremental = if compact_now {
            Vec::new()
        } else {
            match collected {
                Some((after, changes)) if same_heads(after, &cached.saved_heads) => {
                    // What `save_after` returns: the changes' bytes, concatenated.
                    changes
                        .iter()
                        .flat_map(Change::raw_bytes)
                        .copied()
                        .collect()
                }
                _ => cached.doc.save_after(&cached.saved_heads),
            }
        };
        let heads = cached.doc.get_heads();
        let compact = compact_now || cached.pending.len() + incremental.len() > COMPACT_AFTER_BYTES;
        if compact {
            let saved = match cached.loaded_snapshot.take() {
                Some((loaded_heads, bytes)) if loaded_heads == heads => bytes,
                _ => cached.doc.save(),
            };
            let record = DocRecord {
                space: cached.space,
                doc_type: cached.doc_type.map(|kind| kind.as_str().to_owned()),
                saved: saved.into(),
            };
            records::put(batch, Table::Documents, doc_key(id), &record)?;
            batch.delete(Table::DocumentChanges, doc_key(id));
            cached.pending.clear();
            cached.pending_changes = 0;
        } else if !incremental.is_empty() {
            cached.pending.extend_from_slice(&incremental);
            cached.pending_changes += 1;
            batch.put(Table::DocumentChanges, doc_key(id), &cached.pending);
        }
        cached.saved_heads = heads;
        Ok(())
    }

    /// Forgets a document here (a deletion or tombstone).
    fn stage_forget(&mut self, id: &DocId, batch: &mut WriteBatch) {
        self.docs.remove(id);
        self.summaries.remove(id);
        if let Some(due) = self.snapshot_due.as_mut() {
            due.remove(id);
        }
        for table in [
            Table::Documents,
            Table::DocumentChanges,
            Table::Summaries,
            Table::Seen,
        ] {
            batch.delete(table, doc_key(id));
        }
    }

    /// Recomputes a document's summary after a change.
    fn stage_summary(&mut self, id: &DocId, batch: &mut WriteBatch) -> HavenResult<()> {
        let Some(cached) = self.docs.get_mut(id) else {
            return Ok(());
        };
        if cached.doc_type.is_none() {
            cached.doc_type = doc_type(&cached.doc).ok();
        }
        let summary = summarize(&cached.doc, cached.doc_type);
        self.put_summary(id, summary, batch)
    }

    /// Records a document's summary (or its absence) in the batch and in memory.
    fn put_summary(
        &mut self,
        id: &DocId,
        summary: Option<SummaryRecord>,
        batch: &mut WriteBatch,
    ) -> HavenResult<()> {
        match summary {
            Some(summary) => {
                records::put(batch, Table::Summaries, doc_key(id), &summary)?;
                self.summaries.insert(*id, summary);
            }
            None => {
                if self.summaries.remove(id).is_some() {
                    batch.delete(Table::Summaries, doc_key(id));
                }
            }
        }
        Ok(())
    }

    /// Reads a document as `T`.
    pub(crate) fn read<T: Document>(&mut self, id: &DocId) -> HavenResult<Option<T>> {
        match self.cached(id)? {
            Some(cached) => Ok(Some(T::hydrate(&cached.doc)?)),
            None => Ok(None),
        }
    }

    /// The change history of a journal entry (causal order).
    pub(crate) fn history(
        &mut self,
        id: &DocId,
    ) -> HavenResult<Option<Vec<crate::documents::ChangeInfo>>> {
        if self.cached(id)?.is_none() {
            return Ok(None);
        }
        let Some(CachedDoc {
            doc,
            space,
            doc_type,
            pending,
            pending_changes,
            saved_heads,
            loaded_snapshot,
        }) = self.docs.remove(id)
        else {
            return Ok(None);
        };
        // On an error the cache entry is dropped; the next access reloads it from the store.
        let mut handle = JournalEntryDoc::from_doc(doc)?;
        let history = handle.history();
        let doc = handle.into_doc();
        self.docs.insert(
            *id,
            CachedDoc {
                doc,
                space,
                doc_type,
                pending,
                pending_changes,
                saved_heads,
                loaded_snapshot,
            },
        );
        Ok(Some(history))
    }

    /// The raw Automerge bytes of a document (export).
    pub(crate) fn save_doc(&mut self, id: &DocId) -> HavenResult<Option<Vec<u8>>> {
        Ok(self.cached(id)?.map(|cached| cached.doc.save()))
    }

    // ---- local edits --------------------------------------------------------------------------

    /// Runs `edit` on a private document through a typed handle and commits the result: the
    /// document, its summary, and a sealed envelope of the new changes in the outbox, in one
    /// durable store commit. Returns whether anything changed.
    pub(crate) fn edit<T, F>(
        &mut self,
        id: DocId,
        create_as: Option<DocType>,
        edit: F,
    ) -> HavenResult<bool>
    where
        T: Document,
        F: FnOnce(&mut DocHandle<T>, i64) -> Result<(), crate::documents::DocumentError>,
    {
        let mut batch = WriteBatch::new();
        let changed = self.stage_edit(id, create_as, edit, &mut batch)?;
        if changed {
            self.commit(batch)?;
        }
        Ok(changed)
    }

    /// [`Replica::edit`] into a caller's batch, so several documents change in one commit.
    pub(crate) fn stage_edit<T, F>(
        &mut self,
        id: DocId,
        create_as: Option<DocType>,
        edit: F,
        batch: &mut WriteBatch,
    ) -> HavenResult<bool>
    where
        T: Document,
        F: FnOnce(&mut DocHandle<T>, i64) -> Result<(), crate::documents::DocumentError>,
    {
        let space = self.journal_space().ok_or(HavenError::NotLoggedIn)?;
        self.singleton_key()?;
        let now = self.now_ms();
        if self.cached(&id)?.is_none() {
            match create_as {
                Some(kind) => {
                    self.create_cached(id, space, Some(kind))?;
                }
                None => {
                    return Err(HavenError::NotFound {
                        what: "document",
                        id: id.to_hex(),
                    });
                }
            }
        }
        let Some(CachedDoc {
            mut doc,
            space: doc_space,
            doc_type,
            pending,
            pending_changes,
            saved_heads,
            loaded_snapshot,
        }) = self.docs.remove(&id)
        else {
            return Err(HavenError::NotFound {
                what: "document",
                id: id.to_hex(),
            });
        };
        let before = doc.get_heads();
        // On an error (e.g. an entry still missing its creating change) the cache entry is
        // dropped; the next access reloads it from the store, which holds every committed edit.
        let mut handle = DocHandle::<T>::from_doc(doc)?;
        let result = edit(&mut handle, now);
        let doc = handle.into_doc();
        let doc_type = doc_type.or(Some(T::TYPE));
        self.docs.insert(
            id,
            CachedDoc {
                doc,
                space: doc_space,
                doc_type,
                pending,
                pending_changes,
                saved_heads,
                loaded_snapshot,
            },
        );
        result?;
        let changes = self
            .docs
            .get_mut(&id)
            .map(|cached| cached.doc.get_changes(&before))
            .unwrap_or_default();
        if changes.is_empty() {
            return Ok(false);
        }
        self.stage_outbox_changes(&space, &id, &changes, batch)?;
        self.stage_doc_with(&id, Some((&before, &changes)), batch)?;
        self.stage_summary(&id, batch)?;
        Ok(true)
    }

    /// Adds a document made elsewhere (e.g. a new journal entry with its creating change) and
    /// queues all its changes.
    pub(crate) fn stage_new_doc(
        &mut self,
        id: DocId,
        mut doc: AutoCommit,
        kind: DocType,
        batch: &mut WriteBatch,
    ) -> HavenResult<()> {
        let space = self.journal_space().ok_or(HavenError::NotLoggedIn)?;
        let changes = doc.get_changes(&[]);
        self.docs.insert(
            id,
            CachedDoc {
                doc,
                space,
                doc_type: Some(kind),
                pending: Vec::new(),
                pending_changes: usize::MAX,
                saved_heads: Vec::new(),
                loaded_snapshot: None,
            },
        );
        self.stage_outbox_changes(&space, &id, &changes, batch)?;
        self.stage_doc(&id, batch)?;
        self.stage_summary(&id, batch)
    }

    /// Seals changes of one document into one envelope and puts it in the outbox.
    fn stage_outbox_changes(
        &mut self,
        space: &SpaceId,
        doc: &DocId,
        changes: &[Change],
        batch: &mut WriteBatch,
    ) -> HavenResult<()> {
        if self.is_local_space(space) {
            return Ok(());
        }
        let hashes: Vec<[u8; 32]> = changes.iter().map(|change| change.hash().0).collect();
        let payload = frame_changes(changes.iter().map(Change::raw_bytes));
        self.stage_sealed(
            space,
            doc,
            Kind::Change,
            &sorted_hashes_content(&hashes),
            &payload,
            None,
            batch,
        )
    }

    /// Seals a payload and queues it in the outbox, with the next counter of the space.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn stage_sealed(
        &mut self,
        space: &SpaceId,
        doc: &DocId,
        kind: Kind,
        id_content: &[u8],
        payload: &[u8],
        snapshot: Option<(Vec<EnvelopeId>, u64)>,
        batch: &mut WriteBatch,
    ) -> HavenResult<()> {
        let keys = self.require_keys()?;
        let epoch_key = keys.bundle.current_epoch_key()?;
        let id = envelope_id(
            keys.bundle.constants(),
            kind,
            doc,
            epoch_key.epoch(),
            id_content,
        );
        let ctr = self.next_counter(&space_key(space), batch)?;
        let (covers, upto_seq) = match snapshot {
            Some((covers, upto)) => (Some(covers), Some(upto)),
            None => (None, None),
        };
        let header = PrivateHeader {
            id,
            doc: *doc,
            kind,
            device: self.meta.device_id,
            ctr,
            covers,
            upto_seq,
        };
        let keys = self.require_keys()?;
        let epoch_key = keys.bundle.current_epoch_key()?;
        let envelope = seal_private(epoch_key, space, header, payload, self.random.as_ref())?;
        let position = self.next_counter(COUNTER_OUTBOX, batch)?;
        let record = OutboxRecord {
            space: *space,
            attempted: false,
            envelope,
        };
        let key = position.to_be_bytes().to_vec();
        records::put(batch, Table::Outbox, &key, &record)?;
        self.outbox_map()?.insert(key, record);
        Ok(())
    }

    /// The next value of a counter, staged in the batch (so a crash cannot reuse it).
    fn next_counter(&mut self, key: &[u8], batch: &mut WriteBatch) -> HavenResult<u64> {
        let current = match self.counters.get(key) {
            Some(value) => *value,
            None => match self.store.get(Table::Counters, key)? {
                Some(bytes) => {
                    u64::from_be_bytes(<[u8; 8]>::try_from(bytes.as_slice()).map_err(|_| {
                        HavenError::Protocol("a stored counter is malformed".into())
                    })?)
                }
                None => 0,
            },
        };
        let next = current + 1;
        self.counters.insert(key.to_vec(), next);
        batch.put(Table::Counters, key, &next.to_be_bytes());
        Ok(next)
    }

    /// Makes sure the account's singletons exist here (from their genesis change), so changes
    /// from other devices have their dependency.
    pub(crate) fn stage_singletons(&mut self, batch: &mut WriteBatch) -> HavenResult<()> {
        let (Some(space), Ok(key)) = (self.journal_space(), self.singleton_key()) else {
            return Ok(());
        };
        let ids: Vec<(DocId, DocType)> = SINGLETONS
            .iter()
            .map(|kind| (singleton_doc_id(key, *kind), *kind))
            .collect();
        for (id, kind) in ids {
            if self.cached(&id)?.is_none() {
                self.create_cached(id, space, Some(kind))?;
                self.stage_doc(&id, batch)?;
            }
        }
        Ok(())
    }

    pub(crate) fn singleton_id(&self, kind: DocType) -> HavenResult<DocId> {
        Ok(singleton_doc_id(self.singleton_key()?, kind))
    }

    /// A fresh random document id.
    pub(crate) fn new_doc_id(&self) -> DocId {
        DocId::from(random_array::<16>(self.random.as_ref()))
    }

    /// Deletes a journal entry everywhere: the index records the deletion (so every device
    /// applies it), a sealed tombstone tells the server to drop the entry's envelopes, and the
    /// entry goes from this device ([`Replica::stage_tombstone`]).
    pub(crate) fn delete_entry(&mut self, id: DocId) -> HavenResult<()> {
        if !matches!(self.summaries.get(&id), Some(SummaryRecord::Journal { .. }))
            && self.cached(&id)?.is_none()
        {
            return Err(HavenError::NotFound {
                what: "journal entry",
                id: id.to_hex(),
            });
        }
        let index = self.singleton_id(DocType::JournalIndex)?;
        let mut batch = WriteBatch::new();
        let staged = self
            .stage_edit::<JournalIndex, _>(
                index,
                Some(DocType::JournalIndex),
                |doc, now| {
                    let handle: &mut JournalIndexDoc = doc;
                    handle.delete_entry(&id, now).map(|_| ())
                },
                &mut batch,
            )
            .and_then(|_| self.stage_tombstone(id, &mut batch));
        self.commit_staged(staged, batch)
    }

    /// Replaces an entry by a copy with no past: a new document (new id) holding the entry as
    /// it reads now, in one change; the index lists the copy and deletes the original, whose
    /// tombstone is queued and whose every local trace goes ([`Replica::stage_tombstone`]). One
    /// commit: a crash leaves either the original or the copy, never both or neither.
    pub(crate) fn purge_history(&mut self, id: DocId) -> HavenResult<DocId> {
        let not_found = || HavenError::NotFound {
            what: "journal entry",
            id: id.to_hex(),
        };
        if !matches!(self.summaries.get(&id), Some(SummaryRecord::Journal { .. })) {
            return Err(not_found());
        }
        let entry = self
            .read::<crate::documents::JournalEntry>(&id)?
            .ok_or_else(not_found)?;
        let index = self.singleton_id(DocType::JournalIndex)?;
        let copy = self.new_doc_id();
        let doc =
            JournalEntryDoc::create_copy(&self.device_id(), &entry, self.now_ms())?.into_doc();
        let mut batch = WriteBatch::new();
        let staged = self
            .stage_new_doc(copy, doc, DocType::JournalEntry, &mut batch)
            .and_then(|()| {
                self.stage_edit::<JournalIndex, _>(
                    index,
                    Some(DocType::JournalIndex),
                    |doc, now| {
                        let handle: &mut JournalIndexDoc = doc;
                        handle.add_entry(&copy, entry.created_at, now)?;
                        handle.delete_entry(&id, now).map(|_| ())
                    },
                    &mut batch,
                )
            })
            .and_then(|_| self.stage_tombstone(id, &mut batch));
        self.commit_staged(staged, batch)?;
        Ok(copy)
    }

    /// Queues a sealed tombstone of a document and removes every trace of it here: its saves,
    /// summary and seen envelopes, and its changes still waiting in the outbox (the tombstone
    /// makes the server drop what it has of the document, so sending them would only put its
    /// past back on the server for a moment, and keeping them would keep it on this device).
    pub(crate) fn stage_tombstone(&mut self, id: DocId, batch: &mut WriteBatch) -> HavenResult<()> {
        let space = self.journal_space().ok_or(HavenError::NotLoggedIn)?;
        let waiting: Vec<Vec<u8>> = self
            .outbox_map()?
            .iter()
            .filter(|(_, record)| record.envelope.doc == id)
            .map(|(key, _)| key.clone())
            .collect();
        for key in waiting {
            self.stage_outbox_delete(&key, batch)?;
        }
        // A local-only journal makes no envelopes: nothing of the entry was ever sent.
        if !self.is_local_space(&space) {
            self.stage_sealed(
                &space,
                &id,
                Kind::Tombstone,
                b"tombstone",
                b"tombstone",
                None,
                batch,
            )?;
        }
        self.stage_forget(&id, batch);
        Ok(())
    }

    /// Commits `batch` if staging it succeeded; otherwise drops the in-memory caches the staging
    /// touched (they are reread from the store, which holds exactly what was committed).
    pub(crate) fn commit_staged(
        &mut self,
        staged: HavenResult<()>,
        batch: WriteBatch,
    ) -> HavenResult<()> {
        match staged {
            Ok(()) => self.commit(batch),
            Err(error) => {
                self.drop_caches();
                Err(error)
            }
        }
    }

    fn drop_caches(&mut self) {
        // Summaries are staged in memory too; if the store cannot be read now, the stale ones
        // stay (a read of a document they list then fails as not found, nothing worse).
        if let Ok(summaries) = Self::load_summaries(&self.store) {
            self.summaries = summaries;
        }
        self.docs.clear();
        self.counters.clear();
        self.device_counters.clear();
        self.counters_changed.clear();
        self.outbox_cache = None;
        self.snapshot_due = None;
    }

    /// Merges a journal entry's whole document (from a backup) into this device: a new entry is
    /// added under its id with every change queued in one envelope (as a created entry is); a
    /// known one gets only the changes it lacks, applied and queued in one envelope. Nothing
    /// is staged for a document that brings nothing new.
    pub(crate) fn stage_merge_entry(
        &mut self,
        id: DocId,
        incoming: AutoCommit,
        batch: &mut WriteBatch,
    ) -> HavenResult<MergeOutcome> {
        let space = self.journal_space().ok_or(HavenError::NotLoggedIn)?;
        let bad = |reason: String| {
            HavenError::Backup(crate::crypto::backup::BackupError::BadEntry {
                id: id.to_hex(),
                reason,
            })
        };
        let clash = || bad("its id belongs to another kind of document here".into());
        if self
            .summaries
            .get(&id)
            .is_some_and(|summary| !matches!(summary, SummaryRecord::Journal { .. }))
        {
            return Err(clash());
        }
        let Some(cached) = self.cached(&id)? else {
            self.stage_new_doc(id, incoming, DocType::JournalEntry, batch)?;
            return Ok(MergeOutcome::Added);
        };
        if cached.space != space
            || cached
                .doc_type
                .or_else(|| doc_type(&cached.doc).ok())
                .is_some_and(|kind| kind != DocType::JournalEntry)
        {
            return Err(clash());
        }
        let mut incoming = incoming;
        let missing: Vec<Change> = incoming
            .get_changes(&[])
            .into_iter()
            .filter(|change| cached.doc.get_change_by_hash(&change.hash()).is_none())
            .collect();
        if missing.is_empty() {
            return Ok(MergeOutcome::Unchanged);
        }
        cached
            .doc
            .apply_changes(missing.clone())
            .map_err(|error| bad(format!("its changes do not apply: {error}")))?;
        self.stage_outbox_changes(&space, &id, &missing, batch)?;
        self.stage_doc(&id, batch)?;
        self.stage_summary(&id, batch)?;
        Ok(MergeOutcome::Merged)
    }

    // ---- the outbox -------------------------------------------------------------------------

    fn outbox_map(&mut self) -> HavenResult<&mut BTreeMap<Vec<u8>, OutboxRecord>> {
        if self.outbox_cache.is_none() {
            let mut map = BTreeMap::new();
            for (key, value) in self.store.scan(Table::Outbox)?.entries {
                map.insert(
                    key,
                    records::decode::<OutboxRecord>(&value, "outbox entry")?,
                );
            }
            self.outbox_cache = Some(map);
        }
        self.outbox_cache
            .as_mut()
            .ok_or_else(|| HavenError::Protocol("outbox cache".into()))
    }

    /// The oldest outbox entries, up to `max` (in order).
    pub(crate) fn outbox(&mut self, max: usize) -> HavenResult<Vec<(Vec<u8>, OutboxRecord)>> {
        Ok(self
            .outbox_map()?
            .iter()
            .take(max)
            .map(|(key, record)| (key.clone(), record.clone()))
            .collect())
    }

    pub(crate) fn outbox_len(&mut self) -> HavenResult<usize> {
        Ok(self.outbox_map()?.len())
    }

    /// Documents with something waiting in the outbox.
    pub(crate) fn outbox_docs(&mut self) -> HavenResult<HashSet<DocId>> {
        Ok(self
            .outbox_map()?
            .values()
            .map(|record| record.envelope.doc)
            .collect())
    }

    /// Removes an outbox entry (acked, or refused for good) in a batch.
    pub(crate) fn stage_outbox_delete(
        &mut self,
        key: &[u8],
        batch: &mut WriteBatch,
    ) -> HavenResult<()> {
        batch.delete(Table::Outbox, key);
        self.outbox_map()?.remove(key);
        Ok(())
    }

    // ---- cursors and seen envelopes -----------------------------------------------------------

    pub(crate) fn cursor(&self, space: &SpaceId) -> HavenResult<CursorRecord> {
        Ok(
            records::load(&self.store, Table::Cursors, &space_key(space), "cursor")?
                .unwrap_or_default(),
        )
    }

    pub(crate) fn stage_cursor(
        &self,
        space: &SpaceId,
        cursor: &CursorRecord,
        batch: &mut WriteBatch,
    ) -> HavenResult<()> {
        records::put(batch, Table::Cursors, &space_key(space), cursor)
    }

    pub(crate) fn seen(&self, doc: &DocId) -> HavenResult<SeenRecord> {
        Ok(
            records::load(&self.store, Table::Seen, doc_key(doc), "seen envelopes")?
                .unwrap_or_default(),
        )
    }

    /// Records that an envelope of a document is live on the server at `seq`.
    pub(crate) fn note_seen(
        &mut self,
        doc: &DocId,
        seq: u64,
        envelope: &Envelope,
        pending: &mut HashMap<DocId, SeenRecord>,
    ) -> HavenResult<()> {
        let record = match pending.get_mut(doc) {
            Some(record) => record,
            None => {
                let loaded = self.seen(doc)?;
                pending.entry(*doc).or_insert(loaded)
            }
        };
        if record.live.iter().any(|(_, live)| *live == envelope.id) {
            return Ok(());
        }
        let sealed_bytes = envelope.body.0.len() as u64;
        match envelope.kind {
            // An accepted snapshot covered every live envelope of its document up to `upto_seq`:
            // on the server, those are pruned. (Changes after `upto_seq`, rare, are forgotten by
            // the weight count: it only decides when the next snapshot is worth making.)
            Kind::Snapshot => {
                let upto = envelope.upto_seq.unwrap_or(0);
                record.live.retain(|(live_seq, _)| *live_seq > upto);
                record.snapshot_bytes = sealed_bytes;
                record.change_bytes = 0;
            }
            Kind::Tombstone => {
                record.live.clear();
                record.change_bytes = 0;
            }
            Kind::Change => record.change_bytes = record.change_bytes.saturating_add(sealed_bytes),
        }
        record.live.push((seq, envelope.id));
        record.live.sort_unstable();
        let due = record.snapshot_due();
        if let Some(set) = self.snapshot_due.as_mut() {
            if due {
                set.insert(*doc);
            } else {
                set.remove(doc);
            }
        }
        Ok(())
    }

    /// Whether this envelope, at `seq`, is among its document's live envelopes this device
    /// already holds.
    fn already_seen(
        &self,
        seq: u64,
        envelope: &Envelope,
        pending: &HashMap<DocId, SeenRecord>,
        read: &mut HashMap<DocId, SeenRecord>,
    ) -> HavenResult<bool> {
        let held = |record: &SeenRecord| record.live.contains(&(seq, envelope.id));
        if let Some(record) = pending.get(&envelope.doc) {
            return Ok(held(record));
        }
        let record = match read.entry(envelope.doc) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                entry.insert(self.seen(&envelope.doc)?)
            }
        };
        Ok(held(record))
    }

    /// Writes the seen-envelope records noted with [`Replica::note_seen`], once per document.
    pub(crate) fn stage_seen_records(
        &self,
        pending: &HashMap<DocId, SeenRecord>,
        batch: &mut WriteBatch,
    ) -> HavenResult<()> {
        for (doc, record) in pending {
            records::put(batch, Table::Seen, doc_key(doc), record)?;
        }
        Ok(())
    }

    // ---- applying pulled envelopes ------------------------------------------------------------

    /// Applies a page of pulled envelopes into a batch (the caller adds the cursor and commits).
    /// Stops before the first envelope of an unknown key epoch.
    pub(crate) fn stage_pulled(
        &mut self,
        space: &SpaceId,
        page: &[SequencedEnvelope],
        batch: &mut WriteBatch,
    ) -> HavenResult<(ApplyReport, Option<(u64, EnvelopeId)>)> {
        let mut report = ApplyReport::default();
        let mut processed: HashSet<u64> = HashSet::new();
        let mut touched: HashSet<DocId> = HashSet::new();
        let mut seen_pending: HashMap<DocId, SeenRecord> = HashMap::new();
        // Records read only to recognise envelopes held already (not rewritten unless noted).
        let mut seen_read: HashMap<DocId, SeenRecord> = HashMap::new();
        let deleted = self.deleted_entries()?;
        if !space.is_public() {
            self.load_snapshot_due()?;
        }
        let mut queued: HashMap<DocId, Vec<Change>> = HashMap::new();
        let mut summaries_ahead: HashMap<DocId, SummaryAhead> = HashMap::new();
        // In log order, however the page arrived: whatever is applied before a stop (an unknown
        // epoch) is then exactly what the cursor moves past, so nothing is pulled twice.
        let mut in_order: Vec<&SequencedEnvelope> = page.iter().collect();
        in_order.sort_by_key(|item| item.seq);
        let mut decoded = if space.is_public() {
            HashMap::new()
        } else {
            self.decode_snapshots_ahead(space, &in_order, &deleted, &seen_pending, &mut seen_read)?
        };
        for item in in_order.iter().copied() {
            let envelope = &item.envelope;
            // An envelope this device pushed (and had acked) or applied before, at this same
            // place in the log, is already in its documents: the echo of its own pushes costs no
            // decryption, parsing or apply. (Served again under another seq, it is a replay, and
            // goes on to be refused and reported by its counter.)
            if !space.is_public()
                && self.already_seen(item.seq, envelope, &seen_pending, &mut seen_read)?
            {
                processed.insert(item.seq);
                continue;
            }
            if envelope.kind != Kind::Change
                && let Some(changes) = queued.remove(&envelope.doc)
            {
                // A snapshot or tombstone comes after the changes queued before it.
                self.apply_queued(envelope.doc, *space, changes, &mut report);
            }
            let (ahead, summary) = decoded.remove(&item.seq).unzip();
            match self.apply_one(space, envelope, &deleted, ahead) {
                Ok(applied @ (Applied::Changed | Applied::Queued(_))) => {
                    if let Applied::Queued(changes) = applied {
                        queued.entry(envelope.doc).or_default().extend(changes);
                    }
                    if let Some(summary) = summary {
                        summaries_ahead.insert(envelope.doc, summary);
                    }
                    touched.insert(envelope.doc);
                    report.applied += 1;
                    if !space.is_public() {
                        if let Some(record) = seen_read.remove(&envelope.doc) {
                            seen_pending.entry(envelope.doc).or_insert(record);
                        }
                        self.note_seen(&envelope.doc, item.seq, envelope, &mut seen_pending)?;
                    }
                }
                Ok(Applied::Deleted) => {
                    report.applied += 1;
                    report.deleted_docs.push(envelope.doc);
                    touched.remove(&envelope.doc);
                    queued.remove(&envelope.doc);
                    seen_pending.remove(&envelope.doc);
                    self.stage_forget(&envelope.doc, batch);
                }
                Ok(Applied::Ignored) => {}
                Err(Skip::UnknownEpoch) => {
                    report.needs_keys_at = Some(item.seq);
                    break;
                }
                Err(Skip::Bad(reason)) => report.skipped.push((item.seq, reason)),
            }
            processed.insert(item.seq);
        }
        for (doc, changes) in queued {
            self.apply_queued(doc, *space, changes, &mut report);
        }
        if space.is_public() {
            for doc in &touched {
                if let Err(reason) = self.check_manifest(doc) {
                    report.skipped.push((0, reason));
                }
            }
        }
        self.stage_seen_records(&seen_pending, batch)?;
        self.stage_counters(batch)?;
        // The cursor may only move past envelopes that were handled: up to the greatest seq of
        // this page below which everything was (a page may arrive in any order).
        let last = in_order
            .iter()
            .take_while(|item| processed.contains(&item.seq))
            .last()
            .map(|item| (item.seq, item.envelope.id));
        for id in &touched {
            // Same heads, same document: the summary read ahead is this one's.
            let ahead = summaries_ahead.remove(id).and_then(|ahead| {
                let cached = self.docs.get_mut(id)?;
                (cached.doc.get_heads() == ahead.heads).then(|| {
                    cached.doc_type = cached.doc_type.or(ahead.doc_type);
                    ahead.summary
                })
            });
            self.stage_doc(id, batch)?;
            match ahead {
                Some(summary) => self.put_summary(id, summary, batch)?,
                None => self.stage_summary(id, batch)?,
            }
        }
        report.changed_docs = touched.into_iter().collect();
        // Deletions recorded in the index reach every device, even without the tombstone.
        for id in self.deleted_entries()? {
            if self.summaries.contains_key(&id) || self.docs.contains_key(&id) {
                report.deleted_docs.push(id);
                self.stage_forget(&id, batch);
            }
        }
        self.stage_meta(batch)?;
        Ok((report, last))
    }

    fn counters_key(space: &SpaceId, device: &DeviceId) -> Vec<u8> {
        let mut key = SEEN_COUNTERS_PREFIX.to_vec();
        key.extend_from_slice(space.name().as_bytes());
        key.push(b'/');
        key.extend_from_slice(device.as_ref());
        key
    }

    /// Records an authentic envelope's counter; refuses it if that counter was applied before
    /// (the server served it again).
    fn admit_counter(&mut self, space: &SpaceId, envelope: &Envelope) -> Result<(), Skip> {
        let key = (*space, envelope.device);
        if !self.device_counters.contains_key(&key) {
            let stored: SeenCounters = records::load(
                &self.store,
                Table::Counters,
                &Self::counters_key(space, &envelope.device),
                "seen counters",
            )
            .map_err(|error| Skip::Bad(error.to_string()))?
            .unwrap_or_default();
            self.device_counters.insert(key, stored);
        }
        let seen = self.device_counters.entry(key).or_default();
        match seen.admit(envelope.ctr) {
            Admission::Replay => Err(Skip::Bad(format!(
                "replayed envelope: counter {} of device {} was applied before",
                envelope.ctr,
                envelope.device.to_hex()
            ))),
            Admission::Fresh | Admission::Late | Admission::Unchecked => {
                self.counters_changed.insert(key);
                Ok(())
            }
        }
    }

    fn stage_counters(&mut self, batch: &mut WriteBatch) -> HavenResult<()> {
        for key in std::mem::take(&mut self.counters_changed) {
            if let Some(seen) = self.device_counters.get(&key) {
                records::put(
                    batch,
                    Table::Counters,
                    &Self::counters_key(&key.0, &key.1),
                    seen,
                )?;
            }
        }
        Ok(())
    }

    /// Forgets what this device knew of the server's log (after the server lost its tail): the
    /// live envelopes per document and the counters seen per device.
    pub(crate) fn stage_forget_server_view(&mut self, batch: &mut WriteBatch) -> HavenResult<()> {
        for (key, _) in self.store.scan(Table::Seen)?.entries {
            batch.delete(Table::Seen, &key);
        }
        for (key, _) in self.store.scan(Table::Counters)?.entries {
            if key.starts_with(SEEN_COUNTERS_PREFIX) {
                batch.delete(Table::Counters, &key);
            }
        }
        self.device_counters.clear();
        self.counters_changed.clear();
        self.snapshot_due = Some(HashSet::new());
        Ok(())
    }

    /// Applies a document's queued changes in one call; if the batch fails (a change that parsed
    /// but does not apply), each change alone, skipping and reporting the bad ones.
    fn apply_queued(
        &mut self,
        doc: DocId,
        space: SpaceId,
        changes: Vec<Change>,
        report: &mut ApplyReport,
    ) {
        let cached = match self.cached_or_create(doc, space) {
            Ok(cached) => cached,
            Err(error) => {
                report.skipped.push((0, error.to_string()));
                return;
            }
        };
        if cached.doc.apply_changes(changes.clone()).is_ok() {
            return;
        }
        for change in changes {
            if let Err(error) = cached.doc.apply_changes([change]) {
                report.skipped.push((
                    0,
                    format!("cannot apply a change to {}: {error}", doc.to_hex()),
                ));
            }
        }
    }

    /// Opens and decodes the page's snapshots on several cores before the page is applied in
    /// order: a fresh device's pull is mostly snapshots, each an Automerge load. Only successes
    /// are returned; anything else is opened again in order, where it is reported (or, for an
    /// unknown epoch, stops the page).
    fn decode_snapshots_ahead(
        &self,
        space: &SpaceId,
        page: &[&SequencedEnvelope],
        deleted: &HashSet<DocId>,
        seen_pending: &HashMap<DocId, SeenRecord>,
        seen_read: &mut HashMap<DocId, SeenRecord>,
    ) -> HavenResult<HashMap<u64, (DecodedSnapshot, SummaryAhead)>> {
        let workers = decode_threads();
        let Some(keys) = self.keys.as_ref().filter(|_| workers >= 2) else {
            return Ok(HashMap::new());
        };
        let mut snapshots: Vec<&SequencedEnvelope> = Vec::new();
        for item in page.iter().copied() {
            let envelope = &item.envelope;
            // This device's own snapshots coming back are skipped by the in-order pass (which
            // finds their seen records read here).
            if envelope.kind == Kind::Snapshot
                && !deleted.contains(&envelope.doc)
                && !self.already_seen(item.seq, envelope, seen_pending, seen_read)?
            {
                snapshots.push(item);
            }
        }
        if snapshots.len() < MIN_SNAPSHOTS_TO_SPREAD {
            return Ok(HashMap::new());
        }
        let keyring = keys.bundle.epoch_keys();
        let device = self.meta.device_id;
        // Workers take the next snapshot from a shared cursor rather than a fixed half each: on
        // a shared phone (or machine) one thread is often descheduled, and a fixed split then
        // leaves the other core idle while the slow half finishes.
        let next = AtomicUsize::new(0);
        let decode = |item: &SequencedEnvelope| {
            let payload = open_private(keyring, space, &item.envelope).ok()?;
            let mut doc = new_doc(&device);
            crate::documents::untrusted::load_snapshot(&mut doc, &payload).ok()?;
            let doc_type = doc_type(&doc).ok();
            let summary = SummaryAhead {
                heads: doc.get_heads(),
                doc_type,
                summary: summarize(&doc, doc_type),
            };
            Some((item.seq, (DecodedSnapshot { doc, payload }, summary)))
        };
        std::thread::scope(|scope| {
            let running: Vec<_> = (0..workers.min(snapshots.len()))
                .map(|_| {
                    scope.spawn(|| {
                        let mut decoded = Vec::new();
                        // Bounded: each pass takes a distinct index below `snapshots.len()`.
                        while let Some(item) = snapshots.get(next.fetch_add(1, Ordering::Relaxed)) {
                            decoded.extend(decode(item));
                        }
                        decoded
                    })
                })
                .collect();
            // A worker that failed leaves its snapshots to the in-order pass.
            Ok(running
                .into_iter()
                .filter_map(|worker| worker.join().ok())
                .flatten()
                .collect())
        })
    }

    fn apply_one(
        &mut self,
        space: &SpaceId,
        envelope: &Envelope,
        deleted: &HashSet<DocId>,
        decoded: Option<DecodedSnapshot>,
    ) -> Result<Applied, Skip> {
        if space.is_public() {
            let change = verify_public_envelope(envelope, &self.pins)
                .map_err(|error| Skip::Bad(error.to_string()))?;
            return Ok(Applied::Queued(vec![change]));
        }
        if deleted.contains(&envelope.doc) {
            return Ok(Applied::Ignored);
        }
        let keys = self
            .keys
            .as_ref()
            .ok_or_else(|| Skip::Bad("no account keys".into()))?;
        let (payload, decoded_doc) = match decoded {
            // Opened with the same keys ahead of this pass.
            Some(DecodedSnapshot { doc, payload }) => (payload, Some(doc)),
            None => match open_private(keys.bundle.epoch_keys(), space, envelope) {
                Ok(payload) => (payload, None),
                Err(OpenError::UnknownEpoch { .. }) => return Err(Skip::UnknownEpoch),
                Err(error) => return Err(Skip::Bad(error.to_string())),
            },
        };
        // Only now: the counter is authentic (it is in the AAD), so a forgery cannot spend it.
        self.admit_counter(space, envelope)?;
        match envelope.kind {
            Kind::Tombstone => Ok(Applied::Deleted),
            Kind::Snapshot => {
                let cached = self
                    .cached_or_create(envelope.doc, *space)
                    .map_err(|error| Skip::Bad(error.to_string()))?;
                let was_empty = cached.doc.get_heads().is_empty();
                match decoded_doc {
                    // Made like `cached_or_create` makes an empty document (same actor and
                    // text encoding), so it can take its place.
                    Some(doc) if was_empty => cached.doc = doc,
                    _ => crate::documents::untrusted::load_snapshot(&mut cached.doc, &payload)
                        .map_err(Skip::Bad)?,
                }
                if was_empty {
                    cached.loaded_snapshot = Some((cached.doc.get_heads(), payload.to_vec()));
                }
                Ok(Applied::Changed)
            }
            Kind::Change => {
                let changes = unframe_changes(&payload).map_err(Skip::Bad)?;
                let hashes: Vec<[u8; 32]> = changes.iter().map(|change| change.hash().0).collect();
                let keys = self
                    .keys
                    .as_ref()
                    .ok_or_else(|| Skip::Bad("no account keys".into()))?;
                let expected = envelope_id(
                    keys.bundle.constants(),
                    Kind::Change,
                    &envelope.doc,
                    envelope.key_epoch,
                    &sorted_hashes_content(&hashes),
                );
                if expected != envelope.id {
                    return Err(Skip::Bad(
                        "the envelope id does not match its changes".into(),
                    ));
                }
                Ok(Applied::Queued(changes))
            }
        }
    }

    fn cached_or_create(&mut self, id: DocId, space: SpaceId) -> HavenResult<&mut CachedDoc> {
        if self.cached(&id)?.is_none() {
            self.create_cached(id, space, None)?;
        }
        self.docs
            .get_mut(&id)
            .ok_or_else(|| HavenError::Protocol("cache lookup failed".into()))
    }

    /// Refuses a manifest whose version goes backwards; remembers the newest accepted.
    fn check_manifest(&mut self, doc: &DocId) -> Result<(), String> {
        let Some(cached) = self.docs.get(doc) else {
            return Ok(());
        };
        if doc_type(&cached.doc).ok() != Some(DocType::Manifest) {
            return Ok(());
        }
        let Ok(manifest) = Manifest::hydrate(&cached.doc) else {
            return Ok(());
        };
        self.manifest_guard
            .accept(&manifest)
            .map_err(|error| error.to_string())?;
        self.meta.manifest_version = self
            .manifest_guard
            .last_accepted()
            .unwrap_or(self.meta.manifest_version);
        Ok(())
    }

    /// Entry ids the journal index records as deleted.
    pub(crate) fn deleted_entries(&mut self) -> HavenResult<HashSet<DocId>> {
        let Ok(index) = self.singleton_id(DocType::JournalIndex) else {
            return Ok(HashSet::new());
        };
        // Read on every pulled page: only the deletions map, not the whole index (profiled: the
        // full hydration was most of a live round's CPU with 1,000 entries; BENCHMARKS.md).
        match self.cached(&index)? {
            Some(cached) => Ok(JournalIndex::deleted_ids(&cached.doc)),
            None => Ok(HashSet::new()),
        }
    }

    /// Applies a whole set of public envelopes at once (the bundled content at first launch).
    pub(crate) fn load_public(&mut self, envelopes: &[Envelope]) -> HavenResult<ApplyReport> {
        let page: Vec<SequencedEnvelope> = envelopes
            .iter()
            .cloned()
            .map(|envelope| SequencedEnvelope { seq: 0, envelope })
            .collect();
        let mut batch = WriteBatch::new();
        let (report, _) = self.stage_pulled(&SpaceId::Public, &page, &mut batch)?;
        self.meta.bundled_content_loaded = true;
        self.stage_meta(&mut batch)?;
        self.commit(batch)?;
        Ok(report)
    }

    /// Documents of this type that this device holds, by summary.
    pub(crate) fn summaries_of(
        &self,
        pick: impl Fn(&SummaryRecord) -> bool,
    ) -> Vec<(DocId, SummaryRecord)> {
        self.summaries
            .iter()
            .filter(|(_, summary)| pick(summary))
            .map(|(id, summary)| (*id, summary.clone()))
            .collect()
    }

    /// Reads which documents are due a snapshot, once; `note_seen` keeps it current after that.
    /// Done before a page is applied too: on a fresh device the table is then empty, where after
    /// its first pull it would be a thousand records to decrypt.
    fn load_snapshot_due(&mut self) -> HavenResult<()> {
        if self.snapshot_due.is_some() {
            return Ok(());
        }
        let mut due = HashSet::new();
        for (key, value) in self.store.scan(Table::Seen)?.entries {
            let Ok(doc) = <[u8; 16]>::try_from(key.as_slice()) else {
                continue;
            };
            let seen: SeenRecord = records::decode(&value, "seen envelopes")?;
            if seen.snapshot_due() {
                due.insert(DocId::from(doc));
            }
        }
        self.snapshot_due = Some(due);
        Ok(())
    }

    /// Private documents with many live envelopes and nothing of theirs waiting in the outbox:
    /// candidates for a snapshot.
    pub(crate) fn snapshot_candidates(&mut self) -> HavenResult<Vec<(DocId, SeenRecord)>> {
        self.load_snapshot_due()?;
        let waiting = self.outbox_docs()?;
        let due: Vec<DocId> = self
            .snapshot_due
            .iter()
            .flatten()
            .filter(|doc| !waiting.contains(doc))
            .copied()
            .collect();
        let mut out = Vec::new();
        for doc in due {
            out.push((doc, self.seen(&doc)?));
        }
        Ok(out)
    }

    /// Queues a snapshot of a private document covering exactly `seen`.
    pub(crate) fn stage_snapshot(
        &mut self,
        doc: DocId,
        seen: &SeenRecord,
        batch: &mut WriteBatch,
    ) -> HavenResult<bool> {
        let Some(space) = self.private_space() else {
            return Ok(false);
        };
        let Some(&(upto, _)) = seen.live.last() else {
            return Ok(false);
        };
        let Some(cached) = self.cached(&doc)? else {
            return Ok(false);
        };
        let heads: Vec<[u8; 32]> = cached.doc.get_heads().iter().map(|hash| hash.0).collect();
        let saved = cached.doc.save();
        let covers = seen.live.iter().map(|(_, id)| *id).collect();
        self.stage_sealed(
            &space,
            &doc,
            Kind::Snapshot,
            &sorted_hashes_content(&heads),
            &saved,
            Some((covers, upto)),
            batch,
        )?;
        Ok(true)
    }

    /// Queues, for every private document held here, one envelope carrying its whole state: after
    /// the server lost its tail (a restore), this puts back everything this device holds.
    pub(crate) fn stage_reupload_all(&mut self, batch: &mut WriteBatch) -> HavenResult<usize> {
        let Some(space) = self.private_space() else {
            return Ok(0);
        };
        let scan = self.store.scan(Table::Documents)?;
        let mut count = 0;
        for (key, value) in scan.entries {
            let Ok(doc) = <[u8; 16]>::try_from(key.as_slice()) else {
                continue;
            };
            let doc = DocId::from(doc);
            let record: DocRecord = records::decode(&value, "document")?;
            if record.space != space {
                continue;
            }
            let Some(cached) = self.cached(&doc)? else {
                continue;
            };
            let genesis_only = cached.doc_type.is_some_and(DocType::is_singleton)
                && cached.doc.get_changes(&[]).len() <= 1;
            if genesis_only {
                continue;
            }
            let changes = cached.doc.get_changes(&[]);
            let own: Vec<Change> = match cached.doc_type {
                // The genesis change exists on every device; re-uploading it would collide.
                Some(kind) if kind.is_singleton() => {
                    let genesis = crate::documents::genesis_hash(kind)?;
                    changes
                        .into_iter()
                        .filter(|change| change.hash() != genesis)
                        .collect()
                }
                _ => changes,
            };
            if own.is_empty() {
                continue;
            }
            self.stage_outbox_changes(&space, &doc, &own, batch)?;
            count += 1;
        }
        Ok(count)
    }
}

/// What merging one entry from a backup did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MergeOutcome {
    Added,
    Merged,
    Unchanged,
}

enum Applied {
    Changed,
    /// Changes to apply together with the page's other changes of the document: Automerge
    /// applies a batch far faster than one call per change.
    Queued(Vec<Change>),
    Deleted,
    Ignored,
}

enum Skip {
    UnknownEpoch,
    Bad(String),
}

/// Whether two head lists name the same changes (`get_heads` sorts, but stored lists need not
/// be).
fn same_heads(a: &[ChangeHash], b: &[ChangeHash]) -> bool {
    a.len() == b.len() && a.iter().all(|hash| b.contains(hash))
}

/// `u32 count ‖ (u32 len ‖ raw change)*`: the payload of a change envelope.
pub(crate) fn frame_changes<'a>(changes: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    let changes: Vec<&[u8]> = changes.collect();
    let mut out =
        Vec::with_capacity(4 + changes.iter().map(|change| 4 + change.len()).sum::<usize>());
    out.extend_from_slice(
        &u32::try_from(changes.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    for change in changes {
        out.extend_from_slice(
            &u32::try_from(change.len())
                .unwrap_or(u32::MAX)
                .to_be_bytes(),
        );
        out.extend_from_slice(change);
    }
    out
}

/// Inverse of [`frame_changes`]; never panics on malformed input.
pub(crate) fn unframe_changes(payload: &[u8]) -> Result<Vec<Change>, String> {
    let malformed = || "malformed change payload".to_string();
    let (count, mut rest) = payload.split_first_chunk::<4>().ok_or_else(malformed)?;
    let count = u32::from_be_bytes(*count) as usize;
    if count > rest.len() / 4 {
        return Err(malformed());
    }
    let mut changes = Vec::with_capacity(count);
    for _ in 0..count {
        let (len, tail) = rest.split_first_chunk::<4>().ok_or_else(malformed)?;
        let len = u32::from_be_bytes(*len) as usize;
        let body = tail.get(..len).ok_or_else(malformed)?;
        changes.push(crate::documents::untrusted::parse_change(body)?);
        rest = &tail[len..];
    }
    if !rest.is_empty() {
        return Err(malformed());
    }
    Ok(changes)
}
