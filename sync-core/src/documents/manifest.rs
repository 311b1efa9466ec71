//! The signed manifest of the public space: which documents exist, at which heads.

use std::collections::BTreeMap;

use automerge::transaction::Transactable;
use automerge::{ChangeHash, ROOT, ReadDoc};
use haven_protocol::DocId;

use super::fields::{self, MapReader};
use super::{DocType, Document, DocumentError};

/// The manifest: `{doc → heads}` plus a version that only goes up and an expiry.
///
/// A device that has applied changes up to every listed head has the complete published content of
/// that version; a device refuses a manifest whose version is below the last it accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Starts at 1 and grows by one with each publish.
    pub version: u64,
    /// Milliseconds since the Unix epoch after which clients may call the content stale.
    pub expires_at: i64,
    /// Every public content document, keyed by id.
    pub entries: BTreeMap<DocId, ManifestEntry>,
}

/// One document listed in the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    /// [`DocType::Article`] or [`DocType::ResourceList`].
    pub kind: DocType,
    /// The document's slug.
    pub slug: String,
    /// The document's heads at this version, sorted.
    pub heads: Vec<ChangeHash>,
}

impl Manifest {
    /// Whether the manifest is past its expiry at `now_ms`. Expired content stays usable (a hotline
    /// list should still show offline); clients may flag it as possibly out of date.
    pub fn is_expired(&self, now_ms: i64) -> bool {
        now_ms >= self.expires_at
    }
}

const VERSION: &str = "version";
const EXPIRES_AT: &str = "expires_at";
const DOCS: &str = "docs";
const KIND: &str = "kind";
const SLUG: &str = "slug";
const HEADS: &str = "heads";

impl Document for Manifest {
    const TYPE: DocType = DocType::Manifest;

    fn hydrate<D: ReadDoc>(doc: &D) -> Result<Self, DocumentError> {
        let root = MapReader::root(doc);
        fields::check_header(&root, Self::TYPE)?;
        let version = root.u64(VERSION)?;
        let expires_at = root.timestamp(EXPIRES_AT)?;
        let docs = root.map(DOCS)?;
        let mut entries = BTreeMap::new();
        for key in docs.keys() {
            let doc_id = parse_doc_id(&key).ok_or_else(|| DocumentError::Invalid {
                field: docs.field(&key),
                reason: "key is not a document id (32 lowercase hex characters)".to_owned(),
            })?;
            let entry = docs.map(&key)?;
            entries.insert(doc_id, ManifestEntry::hydrate(&entry)?);
        }
        Ok(Self {
            version,
            expires_at,
            entries,
        })
    }

    fn reconcile<T: Transactable>(&self, tx: &mut T) -> Result<(), DocumentError> {
        fields::write_header(tx, Self::TYPE)?;
        fields::put_u64(tx, &ROOT, VERSION, self.version)?;
        fields::put_timestamp(tx, &ROOT, EXPIRES_AT, self.expires_at)?;
        let docs = fields::ensure_map(tx, &ROOT, DOCS)?;
        fields::retain_keys(tx, &docs, |key| {
            parse_doc_id(key).is_some_and(|id| self.entries.contains_key(&id))
        })?;
        for (doc_id, entry) in &self.entries {
            let map = fields::ensure_map(tx, &docs, &doc_id.to_hex())?;
            fields::put_str(tx, &map, KIND, entry.kind.as_str())?;
            fields::put_str(tx, &map, SLUG, &entry.slug)?;
            let mut heads: Vec<String> = entry.heads.iter().map(ToString::to_string).collect();
            heads.sort();
            fields::put_str_list(tx, &map, HEADS, &heads)?;
        }
        Ok(())
    }
}

impl ManifestEntry {
    fn hydrate<D: ReadDoc>(map: &MapReader<'_, D>) -> Result<Self, DocumentError> {
        let kind_text = map.str(KIND)?;
        let kind = DocType::parse(&kind_text)
            .filter(|kind| matches!(kind, DocType::Article | DocType::ResourceList))
            .ok_or_else(|| DocumentError::Invalid {
                field: map.field(KIND),
                reason: format!("`{kind_text}` is not a content document type"),
            })?;
        let mut heads = map
            .str_list(HEADS)?
            .iter()
            .enumerate()
            .map(|(index, text)| {
                text.parse::<ChangeHash>()
                    .map_err(|_| DocumentError::Invalid {
                        field: format!("{}[{index}]", map.field(HEADS)),
                        reason: "not a change hash".to_owned(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        heads.sort();
        Ok(Self {
            kind,
            slug: map.str(SLUG)?,
            heads,
        })
    }
}

/// Only the canonical lowercase hex form, so one document has exactly one key.
fn parse_doc_id(key: &str) -> Option<DocId> {
    fields::parse_id_key(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::AutoCommit;
    use haven_protocol::Bytes;

    fn sample() -> Manifest {
        let mut entries = BTreeMap::new();
        entries.insert(
            Bytes([1; 16]),
            ManifestEntry {
                kind: DocType::Article,
                slug: "consent".into(),
                heads: vec![ChangeHash([9; 32]), ChangeHash([3; 32])],
            },
        );
        entries.insert(
            Bytes([2; 16]),
            ManifestEntry {
                kind: DocType::ResourceList,
                slug: "us".into(),
                heads: vec![ChangeHash([4; 32])],
            },
        );
        Manifest {
            version: 3,
            expires_at: 1_800_000_000_000,
            entries,
        }
    }

    #[test]
    fn round_trips_with_sorted_heads() {
        let manifest = sample();
        let mut doc = AutoCommit::new();
        manifest.reconcile(&mut doc).unwrap();
        let mut expected = manifest.clone();
        for entry in expected.entries.values_mut() {
            entry.heads.sort();
        }
        assert_eq!(Manifest::hydrate(&doc).unwrap(), expected);
        doc.commit();
        expected.reconcile(&mut doc).unwrap();
        assert_eq!(doc.pending_ops(), 0);
    }

    #[test]
    fn dropped_entries_are_removed() {
        let mut manifest = sample();
        let mut doc = AutoCommit::new();
        manifest.reconcile(&mut doc).unwrap();
        manifest.entries.remove(&Bytes([1; 16]));
        manifest.reconcile(&mut doc).unwrap();
        assert_eq!(Manifest::hydrate(&doc).unwrap().entries.len(), 1);
    }

    #[test]
    fn malformed_entries_name_the_field() {
        let mut doc = AutoCommit::new();
        sample().reconcile(&mut doc).unwrap();
        let (_, docs) = doc.get(ROOT, DOCS).unwrap().unwrap();
        doc.put(&docs, "NOT-AN-ID", 1).unwrap();
        assert_eq!(
            Manifest::hydrate(&doc).unwrap_err().field(),
            Some("docs.NOT-AN-ID")
        );
        doc.delete(&docs, "NOT-AN-ID").unwrap();
        let key = Bytes::<16>([2; 16]).to_hex();
        let (_, entry) = doc.get(&docs, key.as_str()).unwrap().unwrap();
        doc.put(&entry, KIND, "manifest").unwrap();
        assert_eq!(
            Manifest::hydrate(&doc).unwrap_err().field(),
            Some(format!("docs.{key}.kind").as_str())
        );
    }

    #[test]
    fn expiry() {
        let manifest = sample();
        assert!(!manifest.is_expired(manifest.expires_at - 1));
        assert!(manifest.is_expired(manifest.expires_at));
    }
}
