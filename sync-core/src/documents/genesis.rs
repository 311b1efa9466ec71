//! Genesis changes and derived ids of the per-account singletons.
//!
//! A singleton ([`JournalIndex`], [`SavedResources`], [`ReadingState`]) holds its data in root
//! collections (maps). If two devices each created those maps offline, each `put_object` would be
//! a different object under the same key; after a merge Automerge keeps one as the winner and the
//! other device's additions vanish from view. So no device ever creates them: every copy of a
//! singleton starts from the same **genesis change**, which creates the root collections and is
//! byte-identical on every device:
//!
//! - actor [`GENESIS_ACTOR`] (the 16 ASCII bytes `haven-genesis-v1`), sequence 1, no dependencies;
//! - time 0 and no message;
//! - operations, in this order: root `schema` = 1 (unsigned), root `type` = the type's name
//!   ([`DocType::as_str`]), then one empty map per root collection
//!   ([`SingletonDocument::ROOT_COLLECTIONS`]).
//!
//! Identical bytes mean an identical change hash, so two devices' copies share their first change,
//! and later changes from both sides apply on top of it and merge. Every device starts a singleton
//! from [`genesis_doc`] (through `DocHandle::new`) whether or not the singleton already exists
//! elsewhere; receiving the genesis change again is a no-op.
//!
//! The genesis content is frozen for schema 1. It does not follow [`super::SCHEMA_VERSION`]: a
//! later schema migrates with ordinary changes on top. The tests pin each genesis hash. (A build
//! whose genesis differed would not merely diverge: Automerge refuses a second, different change
//! with the same actor and sequence number, `DuplicateSeqNumber`, so its changes could not be
//! applied at all.)
//!
//! Because every device makes the genesis change itself, it never needs to travel: export a
//! singleton's changes with `doc.get_changes(&[genesis_hash(kind)?])`. (Uploading it from several
//! devices would also collide on the server: the same envelope id, from the same change hash,
//! with differently sealed bytes.)
//!
//! A singleton's document id is derived, not random, so every device of the account finds the
//! same document without coordination ([`singleton_doc_id`]).

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, AutoCommit, ChangeHash, ObjType, ROOT, ScalarValue};
use haven_protocol::{Bytes, DocId};
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;

use super::fields::{SCHEMA_KEY, TYPE_KEY};
use super::{
    DocType, DocumentError, JournalIndex, ReadingState, SavedResources, SingletonDocument,
    TEXT_ENCODING,
};

/// The actor of every genesis change: the ASCII bytes `haven-genesis-v1`. No device uses it
/// (device ids are random), so it never writes anything else.
pub const GENESIS_ACTOR: [u8; 16] = *b"haven-genesis-v1";

/// The schema the genesis changes write. Frozen (see the module docs).
const GENESIS_SCHEMA: u64 = 1;

/// The domain-separation prefix of [`singleton_doc_id`].
const SINGLETON_ID_LABEL: &[u8] = b"haven/v1/singleton/";

/// A singleton's document holding only its genesis change, with [`GENESIS_ACTOR`] as the actor:
/// set the device's actor before editing (`DocHandle::new` does both).
///
/// Fails with [`DocumentError::NotSingleton`] for a type that is not a singleton.
pub fn genesis_doc(kind: DocType) -> Result<AutoCommit, DocumentError> {
    let collections = match kind {
        DocType::JournalIndex => JournalIndex::ROOT_COLLECTIONS,
        DocType::SavedResources => SavedResources::ROOT_COLLECTIONS,
        DocType::ReadingState => ReadingState::ROOT_COLLECTIONS,
        DocType::Article | DocType::ResourceList | DocType::Manifest | DocType::JournalEntry => {
            return Err(DocumentError::NotSingleton(kind));
        }
    };
    let mut doc =
        AutoCommit::new_with_encoding(TEXT_ENCODING).with_actor(ActorId::from(GENESIS_ACTOR));
    doc.put(ROOT, SCHEMA_KEY, ScalarValue::Uint(GENESIS_SCHEMA))?;
    doc.put(ROOT, TYPE_KEY, kind.as_str())?;
    for key in collections {
        doc.put_object(ROOT, *key, ObjType::Map)?;
    }
    doc.commit_with(CommitOptions::default().with_time(0));
    Ok(doc)
}

/// The hash of a singleton type's genesis change, the one change every copy starts from.
pub fn genesis_hash(kind: DocType) -> Result<ChangeHash, DocumentError> {
    let mut doc = genesis_doc(kind)?;
    doc.get_heads()
        .first()
        .copied()
        .ok_or_else(|| DocumentError::Automerge("the genesis change was not committed".into()))
}

/// The document id of a singleton: the first 16 bytes of
/// HMAC-SHA256(`singleton_key`, `"haven/v1/singleton/"` ‖ the type's name).
///
/// `singleton_key` is the per-account constant kept in the key bundle, so the server cannot link
/// the id to a type, and every device of the account derives the same id. Meaningful only for
/// singleton types ([`DocType::is_singleton`]); other types get ids that nothing uses.
pub fn singleton_doc_id(singleton_key: &[u8; 32], kind: DocType) -> DocId {
    let mut mac = <Hmac<Sha256>>::new_from_slice(singleton_key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(SINGLETON_ID_LABEL);
    mac.update(kind.as_str().as_bytes());
    let tag = mac.finalize().into_bytes();
    let mut id = [0u8; 16];
    id.copy_from_slice(&tag[..16]);
    Bytes(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::documents::{
        DocHandle, Document, JournalIndexDoc, ReadingStateDoc, SavedResourcesDoc, load_doc,
    };
    use automerge::ReadDoc;
    use haven_protocol::DeviceId;

    const SINGLETONS: [DocType; 3] = [
        DocType::JournalIndex,
        DocType::SavedResources,
        DocType::ReadingState,
    ];

    fn device(n: u8) -> DeviceId {
        Bytes([n; 16])
    }

    #[test]
    fn genesis_is_byte_identical_and_pinned() {
        // If one of these hashes changes, devices on different builds would create different
        // genesis changes and their singletons would stop merging: never update them for schema 1.
        let pinned = [
            (
                DocType::JournalIndex,
                "f6938bd587967f389e16e40dda48753162ac6864942655848efe1c29213edb3e",
            ),
            (
                DocType::SavedResources,
                "083488489db61ce5c08788a334e8983f360a0f361350a8d1cc17cc8f0f3d967b",
            ),
            (
                DocType::ReadingState,
                "741af78bceb711620feada68597dd1136ec24d4f3cb2098bbc890cdb147c0966",
            ),
        ];
        for (kind, hash) in pinned {
            let mut a = genesis_doc(kind).unwrap();
            let mut b = genesis_doc(kind).unwrap();
            let changes_a = a.get_changes(&[]);
            let changes_b = b.get_changes(&[]);
            assert_eq!(changes_a.len(), 1);
            assert_eq!(changes_a[0].raw_bytes(), changes_b[0].raw_bytes());
            assert_eq!(a.get_heads(), b.get_heads());
            assert_eq!(a.save(), b.save());
            let change = &changes_a[0];
            assert_eq!(change.actor_id(), &ActorId::from(GENESIS_ACTOR));
            assert_eq!(change.timestamp(), 0);
            assert_eq!(change.message(), None);
            assert_eq!(change.hash().to_string(), hash, "genesis hash of {kind}");
            assert_eq!(genesis_hash(kind).unwrap(), change.hash());
            // Exporting after the genesis change leaves only the devices' own changes.
            let mut index = JournalIndexDoc::new(&device(1)).unwrap();
            index.add_entry(&Bytes([1; 16]), 1, 1).unwrap();
            let genesis = genesis_hash(DocType::JournalIndex).unwrap();
            let own = index.doc_mut().get_changes(&[genesis]);
            assert_eq!(own.len(), 1);
            assert_eq!(own[0].actor_id(), &ActorId::from([1u8; 16]));
        }
    }

    #[test]
    fn genesis_refuses_non_singletons() {
        for kind in DocType::ALL {
            assert_eq!(genesis_doc(kind).is_ok(), kind.is_singleton(), "{kind}");
        }
        assert_eq!(
            genesis_doc(DocType::JournalEntry).unwrap_err(),
            DocumentError::NotSingleton(DocType::JournalEntry)
        );
    }

    #[test]
    fn genesis_docs_hydrate_empty() {
        let index = JournalIndexDoc::new(&device(1)).unwrap().read().unwrap();
        assert!(index.entries.is_empty() && index.deletions.is_empty());
        assert!(index.settings.is_empty());
        let saved = SavedResourcesDoc::new(&device(1)).unwrap().read().unwrap();
        assert!(saved.resources.is_empty() && saved.contacts.is_empty());
        let reading = ReadingStateDoc::new(&device(1)).unwrap().read().unwrap();
        assert!(reading.bookmarks.is_empty() && reading.progress.is_empty());
    }

    #[test]
    fn independently_created_singletons_merge_to_the_union() {
        let t = 1_750_000_000_000;
        // The raw documents: each device adds to every root collection of its own genesis copy.
        for kind in SINGLETONS {
            let (mut a, mut b) = (genesis_doc(kind).unwrap(), genesis_doc(kind).unwrap());
            assert_eq!(a.get_heads(), b.get_heads(), "{kind}");
            a.set_actor(crate::documents::actor_for_device(&device(1)));
            b.set_actor(crate::documents::actor_for_device(&device(2)));
            let collections: Vec<String> = a
                .keys(ROOT)
                .filter(|key| key != "schema" && key != "type")
                .collect();
            assert!(!collections.is_empty());
            for (doc, key) in [(&mut a, "from-a"), (&mut b, "from-b")] {
                for collection in &collections {
                    let (_, map) = doc.get(ROOT, collection.as_str()).unwrap().unwrap();
                    doc.put(&map, key, 1).unwrap();
                }
                doc.commit();
            }
            exchange(&mut a, &mut b);
            assert_eq!(a.get_heads(), b.get_heads(), "{kind}");
            for collection in &collections {
                let (_, map) = a.get(ROOT, collection.as_str()).unwrap().unwrap();
                let keys: Vec<String> = a.keys(&map).collect();
                assert_eq!(keys, ["from-a", "from-b"], "{kind}.{collection}");
            }
        }

        // Two devices create each singleton offline and add to it.
        let mut index_a = JournalIndexDoc::new(&device(1)).unwrap();
        let mut index_b = JournalIndexDoc::new(&device(2)).unwrap();
        assert_eq!(index_a.heads(), index_b.heads());
        index_a.add_entry(&Bytes([0xa1; 16]), t, t).unwrap();
        index_a.set_setting("theme", Some("dark"), t).unwrap();
        index_b.add_entry(&Bytes([0xb1; 16]), t + 1, t + 1).unwrap();
        index_b.set_setting("lock", Some("on"), t + 1).unwrap();
        exchange(index_a.doc_mut(), index_b.doc_mut());
        assert_eq!(index_a.heads(), index_b.heads());
        let merged = index_a.read().unwrap();
        assert_eq!(merged, index_b.read().unwrap());
        assert_eq!(merged.entries.len(), 2);
        assert_eq!(merged.settings.len(), 2);

        let mut saved_a = SavedResourcesDoc::new(&device(1)).unwrap();
        let mut saved_b = SavedResourcesDoc::new(&device(2)).unwrap();
        saved_a.save_resource("us-national", "RAINN", t).unwrap();
        saved_b
            .save_resource("gb-national", "Rape Crisis", t)
            .unwrap();
        exchange(saved_a.doc_mut(), saved_b.doc_mut());
        assert_eq!(saved_a.read().unwrap(), saved_b.read().unwrap());
        assert_eq!(saved_a.read().unwrap().resources.len(), 2);

        let mut reading_a = ReadingStateDoc::new(&device(1)).unwrap();
        let mut reading_b = ReadingStateDoc::new(&device(2)).unwrap();
        reading_a.add_bookmark("what-is-consent", t).unwrap();
        reading_b.add_bookmark("after-an-assault", t).unwrap();
        exchange(reading_a.doc_mut(), reading_b.doc_mut());
        assert_eq!(reading_a.read().unwrap(), reading_b.read().unwrap());
        assert_eq!(reading_a.read().unwrap().bookmarks.len(), 2);
    }

    /// Why genesis exists: two devices that each create the root map lose one side's additions.
    #[test]
    fn without_genesis_one_device_would_lose_its_additions() {
        let mut a = crate::documents::new_doc(&device(1));
        let mut b = crate::documents::new_doc(&device(2));
        let map_a = a.put_object(ROOT, "entries", ObjType::Map).unwrap();
        a.put(&map_a, "x", 1).unwrap();
        let map_b = b.put_object(ROOT, "entries", ObjType::Map).unwrap();
        b.put(&map_b, "y", 2).unwrap();
        exchange(&mut a, &mut b);
        let (_, winner) = a.get(ROOT, "entries").unwrap().unwrap();
        assert_eq!(
            a.keys(&winner).count(),
            1,
            "one device's map hides the other's"
        );
    }

    #[test]
    fn singletons_load_from_saved_bytes() {
        let mut index = JournalIndexDoc::new(&device(1)).unwrap();
        index.add_entry(&Bytes([7; 16]), 5, 5).unwrap();
        let bytes = index.doc_mut().save();
        let loaded = JournalIndexDoc::load(&bytes, &device(2)).unwrap();
        assert_eq!(loaded.read().unwrap(), index.read().unwrap());
        // A saved singleton is not another type.
        let err = DocHandle::<ReadingState>::load(&bytes, &device(2)).unwrap_err();
        assert!(matches!(err, DocumentError::WrongDocType { .. }));
        assert!(JournalIndex::hydrate(&load_doc(&bytes, &device(3)).unwrap()).is_ok());
    }

    #[test]
    fn singleton_ids_are_derived_per_key_and_type() {
        let key = [42u8; 32];
        let ids: Vec<DocId> = SINGLETONS
            .iter()
            .map(|kind| singleton_doc_id(&key, *kind))
            .collect();
        assert_ne!(ids[0], ids[1]);
        assert_ne!(ids[1], ids[2]);
        assert_ne!(ids[0], ids[2]);
        assert_eq!(ids[0], singleton_doc_id(&key, DocType::JournalIndex));
        assert_ne!(ids[0], singleton_doc_id(&[43; 32], DocType::JournalIndex));
        // The derivation is part of the format: pin one value (checked independently with
        // Python's hmac: HMAC-SHA256(32 zero bytes, "haven/v1/singleton/journal_index")[..16]).
        assert_eq!(
            singleton_doc_id(&[0u8; 32], DocType::JournalIndex).to_hex(),
            "8e9055160529ece494bc46208a2f2468"
        );
    }

    fn exchange(a: &mut AutoCommit, b: &mut AutoCommit) {
        let from_a = a.get_changes(&[]);
        let from_b = b.get_changes(&[]);
        a.apply_changes(from_b).unwrap();
        b.apply_changes(from_a).unwrap();
    }
}
