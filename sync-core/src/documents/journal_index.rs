//! The journal index: a per-account singleton listing the journal entries, their deletions and
//! the journal's settings.
//!
//! Layout (root map; the three collections come from the genesis change, never from a device):
//!
//! | key | Automerge type | meaning |
//! |---|---|---|
//! | `schema`, `type` | uint, str | 1, `journal_index` |
//! | `entries` | map: entry id (32 lowercase hex) → timestamp | live entries → `created_at` (ms) |
//! | `deletions` | map: entry id → timestamp | deleted entries → `deleted_at` (ms) |
//! | `settings` | map: str → str | journal settings |
//!
//! A deletion is final: it removes the id from `entries` and records it in `deletions`, and an id
//! in `deletions` is never live again, whatever order devices see the changes in. That record is
//! what makes every device delete its copy of the entry (§3, tombstones). Keys are ids, so two
//! devices adding entries concurrently never produce duplicates. Concurrent writes of one key
//! resolve to the earliest timestamp.

use std::collections::BTreeMap;

use automerge::transaction::Transactable;
use automerge::{ChangeHash, ROOT, ReadDoc};
use haven_protocol::DocId;

use super::fields::{self, Issues, MapReader};
use super::{DocHandle, DocType, Document, DocumentError, SingletonDocument};

/// The journal index, as plain data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JournalIndex {
    /// Live entries: entry (document) id → `created_at` (Unix ms). Never holds a deleted id.
    pub entries: BTreeMap<DocId, i64>,
    /// Deleted entries: entry id → `deleted_at` (Unix ms).
    pub deletions: BTreeMap<DocId, i64>,
    /// Journal settings (for example a local-only mode flag), as strings.
    pub settings: BTreeMap<String, String>,
}

/// The longest setting key, in Unicode scalar values.
pub const MAX_SETTING_KEY_CHARS: usize = 64;
/// The longest setting value, in Unicode scalar values.
pub const MAX_SETTING_VALUE_CHARS: usize = 4096;

const ENTRIES: &str = "entries";
const DELETIONS: &str = "deletions";
const SETTINGS: &str = "settings";

/// The journal index open for editing.
pub type JournalIndexDoc = DocHandle<JournalIndex>;

impl JournalIndex {
    /// Whether the entry was deleted (on any device whose changes this index holds).
    pub fn is_deleted(&self, id: &DocId) -> bool {
        self.deletions.contains_key(id)
    }

    /// Reads the index, skipping (and returning) malformed items instead of failing on the first
    /// one. A malformed header (schema, type) still fails.
    pub fn hydrate_lossy<D: ReadDoc>(doc: &D) -> Result<(Self, Vec<DocumentError>), DocumentError> {
        read(doc, Issues::new(true))
    }

    /// Only the ids in `deletions`, without reading `entries` or any timestamp: what applying a
    /// pulled page needs on every round, at a cost that grows with deletions, not entries. Keys
    /// that are not entry ids are skipped (as `hydrate_lossy` reports them).
    pub fn deleted_ids<D: ReadDoc>(doc: &D) -> std::collections::HashSet<DocId> {
        let root = MapReader::root(doc);
        match root.map(DELETIONS) {
            Ok(map) => map
                .keys()
                .iter()
                .filter_map(|key| fields::parse_id_key(key))
                .collect(),
            Err(_) => std::collections::HashSet::new(),
        }
    }
}

impl SingletonDocument for JournalIndex {
    const ROOT_COLLECTIONS: &'static [&'static str] = &[ENTRIES, DELETIONS, SETTINGS];
}

impl Document for JournalIndex {
    const TYPE: DocType = DocType::JournalIndex;

    fn hydrate<D: ReadDoc>(doc: &D) -> Result<Self, DocumentError> {
        read(doc, Issues::new(false)).map(|(index, _)| index)
    }

    /// Writes the index; an id in both `entries` and `deletions` is written as deleted only.
    fn reconcile<T: Transactable>(&self, tx: &mut T) -> Result<(), DocumentError> {
        fields::write_header(tx, Self::TYPE)?;
        let live = |id: &DocId| self.entries.contains_key(id) && !self.deletions.contains_key(id);
        let entries = fields::ensure_map(tx, &ROOT, ENTRIES)?;
        fields::retain_keys(tx, &entries, |key| {
            fields::parse_id_key(key).is_some_and(|id| live(&id))
        })?;
        for (id, created_at) in self.entries.iter().filter(|(id, _)| live(id)) {
            fields::put_timestamp(tx, &entries, &id.to_hex(), *created_at)?;
        }
        let deletions = fields::ensure_map(tx, &ROOT, DELETIONS)?;
        fields::retain_keys(tx, &deletions, |key| {
            fields::parse_id_key(key).is_some_and(|id| self.deletions.contains_key(&id))
        })?;
        for (id, deleted_at) in &self.deletions {
            fields::put_timestamp(tx, &deletions, &id.to_hex(), *deleted_at)?;
        }
        let settings = fields::ensure_map(tx, &ROOT, SETTINGS)?;
        fields::retain_keys(tx, &settings, |key| self.settings.contains_key(key))?;
        for (key, value) in &self.settings {
            fields::put_str(tx, &settings, key, value)?;
        }
        Ok(())
    }
}

fn read<D: ReadDoc>(
    doc: &D,
    mut issues: Issues,
) -> Result<(JournalIndex, Vec<DocumentError>), DocumentError> {
    let root = MapReader::root(doc);
    fields::check_header(&root, DocType::JournalIndex)?;
    let deletions = read_ids(&root, DELETIONS, &mut issues)?;
    let entries = read_ids(&root, ENTRIES, &mut issues)?
        .into_iter()
        .filter(|(id, _)| !deletions.contains_key(id))
        .collect();
    let mut settings = BTreeMap::new();
    if let Some(map) = issues.take(root.map(SETTINGS))? {
        for key in map.keys() {
            if let Some(value) = issues.take(map.str(&key))? {
                settings.insert(key, value);
            }
        }
    }
    Ok((
        JournalIndex {
            entries,
            deletions,
            settings,
        },
        issues.into_found(),
    ))
}

/// A map of entry id → timestamp.
fn read_ids<D: ReadDoc>(
    root: &MapReader<'_, D>,
    key: &str,
    issues: &mut Issues,
) -> Result<BTreeMap<DocId, i64>, DocumentError> {
    let mut out = BTreeMap::new();
    let Some(map) = issues.take(root.map(key))? else {
        return Ok(out);
    };
    for item in map.keys() {
        let parsed = fields::parse_id_key(&item)
            .ok_or_else(|| DocumentError::Invalid {
                field: map.field(&item),
                reason: "key is not an entry id (32 lowercase hex characters)".to_owned(),
            })
            .and_then(|id| Ok((id, map.earliest_timestamp(&item)?)));
        if let Some((id, at)) = issues.take(parsed)? {
            out.insert(id, at);
        }
    }
    Ok(out)
}

impl DocHandle<JournalIndex> {
    /// Lists a new entry. Adding a listed entry again changes nothing; adding a deleted one is
    /// refused ([`DocumentError::Invalid`] naming `deletions.<id>`), because a deletion is final.
    pub fn add_entry(
        &mut self,
        id: &DocId,
        created_at: i64,
        now_ms: i64,
    ) -> Result<Option<ChangeHash>, DocumentError> {
        let key = id.to_hex();
        self.edit(now_ms, "index.add", |doc| {
            let (entries, deletions) = collections(doc)?;
            if doc.get(&deletions, key.as_str())?.is_some() {
                return Err(DocumentError::Invalid {
                    field: format!("{DELETIONS}.{key}"),
                    reason: "the entry was deleted; a deletion is final".to_owned(),
                });
            }
            if doc.get(&entries, key.as_str())?.is_none() {
                fields::put_timestamp(doc, &entries, &key, created_at)?;
            }
            Ok(())
        })
    }

    /// Deletes an entry, listed or not yet seen here: every device that receives this change
    /// deletes its copy. Deleting a deleted entry changes nothing.
    pub fn delete_entry(
        &mut self,
        id: &DocId,
        now_ms: i64,
    ) -> Result<Option<ChangeHash>, DocumentError> {
        let key = id.to_hex();
        self.edit(now_ms, "index.delete", |doc| {
            let (entries, deletions) = collections(doc)?;
            if doc.get(&deletions, key.as_str())?.is_some() {
                return Ok(());
            }
            if doc.get(&entries, key.as_str())?.is_some() {
                doc.delete(&entries, key.as_str())?;
            }
            fields::put_timestamp(doc, &deletions, &key, now_ms)?;
            Ok(())
        })
    }

    /// Sets a setting, or removes it (`None`). Keys are 1 to [`MAX_SETTING_KEY_CHARS`]
    /// characters, values at most [`MAX_SETTING_VALUE_CHARS`].
    pub fn set_setting(
        &mut self,
        key: &str,
        value: Option<&str>,
        now_ms: i64,
    ) -> Result<Option<ChangeHash>, DocumentError> {
        if key.is_empty() {
            return Err(DocumentError::Invalid {
                field: SETTINGS.to_owned(),
                reason: "empty key".to_owned(),
            });
        }
        fields::check_len(SETTINGS, key, MAX_SETTING_KEY_CHARS)?;
        if let Some(value) = value {
            fields::check_len(&format!("{SETTINGS}.{key}"), value, MAX_SETTING_VALUE_CHARS)?;
        }
        self.edit(now_ms, "index.setting", |doc| {
            let settings = MapReader::root(&*doc).map(SETTINGS)?.id().clone();
            fields::put_opt_str(doc, &settings, key, value)?;
            Ok(())
        })
    }
}

/// The `entries` and `deletions` maps the genesis change made. Edits never create them: a map
/// made here would be a different object from every other device's and hide their additions.
fn collections<D: ReadDoc>(doc: &D) -> Result<(automerge::ObjId, automerge::ObjId), DocumentError> {
    let root = MapReader::root(doc);
    Ok((
        root.map(ENTRIES)?.id().clone(),
        root.map(DELETIONS)?.id().clone(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::{AutoCommit, ObjType};
    use haven_protocol::{Bytes, DeviceId};

    const T0: i64 = 1_750_000_000_000;

    fn device(n: u8) -> DeviceId {
        Bytes([n; 16])
    }

    fn id(n: u8) -> DocId {
        Bytes([n; 16])
    }

    fn exchange(a: &mut JournalIndexDoc, b: &mut JournalIndexDoc) {
        let from_a = a.doc_mut().get_changes(&[]);
        let from_b = b.doc_mut().get_changes(&[]);
        a.doc_mut().apply_changes(from_b).unwrap();
        b.doc_mut().apply_changes(from_a).unwrap();
        assert_eq!(a.heads(), b.heads());
        assert_eq!(a.read().unwrap(), b.read().unwrap());
    }

    #[test]
    fn add_delete_and_settings() {
        let mut doc = JournalIndexDoc::new(&device(1)).unwrap();
        assert!(doc.add_entry(&id(1), T0, T0).unwrap().is_some());
        assert!(doc.add_entry(&id(2), T0 + 1, T0 + 1).unwrap().is_some());
        assert_eq!(doc.add_entry(&id(1), T0 + 9, T0 + 9).unwrap(), None);
        assert!(doc.delete_entry(&id(1), T0 + 2).unwrap().is_some());
        assert_eq!(doc.delete_entry(&id(1), T0 + 3).unwrap(), None);
        let err = doc.add_entry(&id(1), T0, T0 + 4).unwrap_err();
        assert_eq!(
            err.field(),
            Some(format!("deletions.{}", id(1).to_hex()).as_str())
        );
        doc.set_setting("local_only", Some("true"), T0 + 5).unwrap();
        doc.set_setting("theme", Some("dark"), T0 + 5).unwrap();
        doc.set_setting("theme", None, T0 + 6).unwrap();
        assert_eq!(doc.set_setting("theme", None, T0 + 6).unwrap(), None);
        assert!(doc.set_setting("", Some("x"), T0).is_err());
        assert!(doc.set_setting(&"k".repeat(65), Some("x"), T0).is_err());

        let index = doc.read().unwrap();
        assert_eq!(index.entries, BTreeMap::from([(id(2), T0 + 1)]));
        assert_eq!(index.deletions, BTreeMap::from([(id(1), T0 + 2)]));
        assert!(index.is_deleted(&id(1)));
        assert_eq!(
            JournalIndex::deleted_ids(doc.doc()),
            std::collections::HashSet::from([id(1)])
        );
        assert_eq!(
            index.settings,
            BTreeMap::from([("local_only".to_owned(), "true".to_owned())])
        );
        // Genesis plus the 6 edits that changed something.
        assert_eq!(doc.history().len(), 7);
        let loaded = JournalIndexDoc::load(&doc.doc_mut().save(), &device(2)).unwrap();
        assert_eq!(loaded.read().unwrap(), index);
    }

    #[test]
    fn a_delete_wins_over_a_concurrent_add_and_is_seen_everywhere() {
        let mut a = JournalIndexDoc::new(&device(1)).unwrap();
        let mut b = JournalIndexDoc::new(&device(2)).unwrap();
        a.add_entry(&id(1), T0, T0).unwrap();
        // B deletes an entry it has never seen listed (it learned of it another way).
        b.delete_entry(&id(1), T0 + 5).unwrap();
        b.add_entry(&id(2), T0, T0).unwrap();
        a.delete_entry(&id(2), T0 + 7).unwrap();
        exchange(&mut a, &mut b);
        let index = a.read().unwrap();
        assert!(index.entries.is_empty());
        assert_eq!(
            index.deletions,
            BTreeMap::from([(id(1), T0 + 5), (id(2), T0 + 7)])
        );
    }

    #[test]
    fn concurrent_deletes_keep_the_earliest_time() {
        let mut a = JournalIndexDoc::new(&device(1)).unwrap();
        a.add_entry(&id(1), T0, T0).unwrap();
        let mut b = JournalIndexDoc::load(&a.doc_mut().save(), &device(2)).unwrap();
        a.delete_entry(&id(1), T0 + 9).unwrap();
        b.delete_entry(&id(1), T0 + 3).unwrap();
        exchange(&mut a, &mut b);
        assert_eq!(a.read().unwrap().deletions[&id(1)], T0 + 3);
    }

    #[test]
    fn reconcile_round_trips() {
        let value = JournalIndex {
            entries: BTreeMap::from([(id(1), T0), (id(3), T0 + 3)]),
            deletions: BTreeMap::from([(id(2), T0 + 2)]),
            settings: BTreeMap::from([("a".to_owned(), "b".to_owned())]),
        };
        let mut doc = JournalIndexDoc::new(&device(1)).unwrap();
        doc.add_entry(&id(4), T0, T0).unwrap();
        doc.set_setting("z", Some("y"), T0).unwrap();
        doc.reconcile(&value, T0 + 4).unwrap();
        assert_eq!(doc.read().unwrap(), value);
        assert_eq!(doc.reconcile(&value, T0 + 5).unwrap(), None);
        // A struct listing a deleted entry is written (and read) as deleted only.
        let mut both = value.clone();
        both.entries.insert(id(2), T0);
        doc.reconcile(&both, T0 + 6).unwrap();
        assert_eq!(doc.read().unwrap(), value);
    }

    #[test]
    fn malformed_documents_name_the_field_and_lossy_reads_skip_items() {
        let mut doc = JournalIndexDoc::new(&device(1)).unwrap();
        doc.add_entry(&id(1), T0, T0).unwrap();
        doc.add_entry(&id(2), T0, T0).unwrap();
        let mut raw = doc.into_doc();
        let (_, entries) = raw.get(ROOT, ENTRIES).unwrap().unwrap();
        raw.put(&entries, "NOT-AN-ID", T0).unwrap();
        let err = JournalIndex::hydrate(&raw).unwrap_err();
        assert_eq!(err.field(), Some("entries.NOT-AN-ID"));
        raw.delete(&entries, "NOT-AN-ID").unwrap();
        raw.put(&entries, id(2).to_hex().as_str(), "soon").unwrap();
        let field = format!("entries.{}", id(2).to_hex());
        assert_eq!(
            JournalIndex::hydrate(&raw).unwrap_err().field(),
            Some(field.as_str())
        );
        let (_, settings) = raw.get(ROOT, SETTINGS).unwrap().unwrap();
        raw.put(&settings, "n", 5).unwrap();

        let (index, issues) = JournalIndex::hydrate_lossy(&raw).unwrap();
        assert_eq!(index.entries, BTreeMap::from([(id(1), T0)]));
        let fields: Vec<Option<&str>> = issues.iter().map(DocumentError::field).collect();
        assert_eq!(fields, [Some(field.as_str()), Some("settings.n")]);

        raw.put(ROOT, DELETIONS, "gone").unwrap();
        assert_eq!(
            JournalIndex::hydrate(&raw).unwrap_err().field(),
            Some("deletions")
        );
        let (_, issues) = JournalIndex::hydrate_lossy(&raw).unwrap();
        assert_eq!(issues.len(), 3);
        raw.put(ROOT, "type", "reading_state").unwrap();
        assert!(JournalIndex::hydrate_lossy(&raw).is_err());
    }

    #[test]
    fn edits_need_the_genesis_collections() {
        // A document whose collections were not made by genesis cannot be edited into shape.
        let mut raw = crate::documents::new_doc(&device(1));
        fields::write_header(&mut raw, DocType::JournalIndex).unwrap();
        raw.commit();
        let mut doc = JournalIndexDoc::from_doc(raw).unwrap();
        let err = doc.add_entry(&id(1), T0, T0).unwrap_err();
        assert_eq!(
            err,
            DocumentError::Missing {
                field: "entries".into()
            }
        );
        assert_eq!(doc.doc().pending_ops(), 0);
        let mut raw = AutoCommit::new();
        raw.put_object(ROOT, SETTINGS, ObjType::List).unwrap();
        assert!(JournalIndex::hydrate(&raw).is_err());
    }
}
