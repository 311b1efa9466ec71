//! Malformed private documents: whatever another (buggy, older, newer or hostile) client wrote
//! into a document, reading and editing it never panics, a strict read names the field it
//! refuses, a failed edit leaves nothing behind, and reconciling a valid value repairs the
//! document. Seeded property test: 64 cases by default, 1000 with `HAVEN_TEST_PROFILE=long`.

// Test helpers outside #[test] functions are not covered by clippy's allow-unwrap-in-tests.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjId, ObjType, ROOT, ReadDoc, ScalarValue, Value};
use haven_core::documents::{
    DocHandle, Document, DocumentError, JournalEntry, JournalEntryDoc, JournalIndex,
    JournalIndexDoc, ReadingProgress, ReadingState, ReadingStateDoc, SavedResource, SavedResources,
    SavedResourcesDoc, TrustedContact,
};
use haven_protocol::{Bytes, DeviceId};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestError, TestRunner};

const T0: i64 = 1_750_000_000_000;

fn device(n: u8) -> DeviceId {
    Bytes([n; 16])
}

/// Keys worth writing to: the real field names, ids and slugs in their valid and invalid forms.
const KEYS: [&str; 20] = [
    "schema",
    "type",
    "title",
    "body",
    "mood",
    "tags",
    "created_at",
    "updated_at",
    "entries",
    "deletions",
    "settings",
    "resources",
    "contacts",
    "bookmarks",
    "progress",
    "name",
    "fraction",
    "what-is-consent",
    "01010101010101010101010101010101",
    "us/RAINN",
];

#[derive(Debug, Clone)]
enum Junk {
    Str,
    Int(i64),
    Uint(u64),
    F64,
    Bool,
    Null,
    Timestamp(i64),
    Bytes,
    Counter,
    Map,
    List,
    Text,
    Delete,
}

#[derive(Debug, Clone)]
struct Mutation {
    /// Which map of the document (in a depth-first listing) to write into.
    map: usize,
    /// Which key: one of [`KEYS`], or (past their end) one of the map's existing keys.
    key: usize,
    junk: Junk,
}

fn junk() -> impl Strategy<Value = Junk> {
    prop_oneof![
        Just(Junk::Str),
        any::<i64>().prop_map(Junk::Int),
        any::<u64>().prop_map(Junk::Uint),
        Just(Junk::F64),
        Just(Junk::Bool),
        Just(Junk::Null),
        any::<i64>().prop_map(Junk::Timestamp),
        Just(Junk::Bytes),
        Just(Junk::Counter),
        Just(Junk::Map),
        Just(Junk::List),
        Just(Junk::Text),
        Just(Junk::Delete),
    ]
}

fn mutations() -> impl Strategy<Value = (usize, Vec<Mutation>)> {
    let mutation =
        (0usize..8, 0usize..32, junk()).prop_map(|(map, key, junk)| Mutation { map, key, junk });
    (0usize..4, prop::collection::vec(mutation, 1..6))
}

/// Every map and list object, depth first from the root.
fn objects(doc: &AutoCommit) -> Vec<(ObjId, ObjType)> {
    let mut out = vec![(ROOT, ObjType::Map)];
    let mut next = 0;
    while next < out.len() {
        let (obj, kind) = out[next].clone();
        next += 1;
        let children: Vec<(Value<'_>, ObjId)> = match kind {
            ObjType::Map | ObjType::Table => doc
                .keys(&obj)
                .filter_map(|key| doc.get(&obj, key.as_str()).unwrap())
                .collect(),
            ObjType::List => (0..doc.length(&obj))
                .filter_map(|index| doc.get(&obj, index).unwrap())
                .collect(),
            ObjType::Text => Vec::new(),
        };
        for (value, id) in children {
            if let Value::Object(kind @ (ObjType::Map | ObjType::List)) = value {
                out.push((id, kind));
            }
        }
    }
    out
}

fn write(doc: &mut AutoCommit, mutation: &Mutation) {
    let objects = objects(doc);
    let (obj, kind) = objects[mutation.map % objects.len()].clone();
    let value: Option<ScalarValue> = match &mutation.junk {
        Junk::Str => Some("junk".into()),
        Junk::Int(n) => Some(ScalarValue::Int(*n)),
        Junk::Uint(n) => Some(ScalarValue::Uint(*n)),
        Junk::F64 => Some(ScalarValue::F64(f64::NAN)),
        Junk::Bool => Some(ScalarValue::Boolean(true)),
        Junk::Null => Some(ScalarValue::Null),
        Junk::Timestamp(n) => Some(ScalarValue::Timestamp(*n)),
        Junk::Bytes => Some(ScalarValue::Bytes(vec![0xff, 0])),
        Junk::Counter => Some(ScalarValue::counter(3)),
        Junk::Map | Junk::List | Junk::Text | Junk::Delete => None,
    };
    let obj_type = match mutation.junk {
        Junk::Map => Some(ObjType::Map),
        Junk::List => Some(ObjType::List),
        Junk::Text => Some(ObjType::Text),
        _ => None,
    };
    if kind == ObjType::List {
        let len = doc.length(&obj);
        let index = mutation.key % (len + 1);
        match (value, obj_type) {
            (Some(value), _) => doc.insert(&obj, index, value).unwrap(),
            (None, Some(obj_type)) => {
                doc.insert_object(&obj, index, obj_type).unwrap();
            }
            (None, None) if index < len => doc.delete(&obj, index).unwrap(),
            (None, None) => {}
        }
        return;
    }
    let existing: Vec<String> = doc.keys(&obj).collect();
    let key = if mutation.key < KEYS.len() || existing.is_empty() {
        KEYS[mutation.key % KEYS.len()].to_owned()
    } else {
        existing[mutation.key % existing.len()].clone()
    };
    match (value, obj_type) {
        (Some(value), _) => doc.put(&obj, key.as_str(), value).unwrap(),
        (None, Some(obj_type)) => {
            doc.put_object(&obj, key.as_str(), obj_type).unwrap();
        }
        (None, None) => {
            if doc.get(&obj, key.as_str()).unwrap().is_some() {
                doc.delete(&obj, key.as_str()).unwrap();
            }
        }
    }
}

fn entry_sample() -> JournalEntry {
    JournalEntry {
        title: "Title".into(),
        body: "Body 🌱".into(),
        mood: Some("calm".into()),
        tags: vec!["a".into(), "b".into()],
        created_at: T0,
        updated_at: T0 + 1,
    }
}

fn index_sample() -> JournalIndex {
    JournalIndex {
        entries: BTreeMap::from([(Bytes([1; 16]), T0)]),
        deletions: BTreeMap::from([(Bytes([2; 16]), T0 + 1)]),
        settings: BTreeMap::from([("theme".to_owned(), "dark".to_owned())]),
    }
}

fn saved_sample() -> SavedResources {
    SavedResources {
        resources: vec![SavedResource {
            list_slug: "us".into(),
            resource_name: "RAINN".into(),
            saved_at: T0,
        }],
        contacts: vec![TrustedContact {
            id: Bytes([1; 16]),
            name: "Sam".into(),
            phone: "+1".into(),
            note: None,
        }],
    }
}

fn reading_sample() -> ReadingState {
    ReadingState {
        bookmarks: BTreeMap::from([("what-is-consent".to_owned(), T0)]),
        progress: BTreeMap::from([(
            "what-is-consent".to_owned(),
            ReadingProgress {
                fraction: 5,
                position: 6,
                updated_at: T0,
            },
        )]),
    }
}

/// A strict read either succeeds or names what it refused.
fn check_read<T: Document>(doc: &AutoCommit) -> Result<(), TestCaseError> {
    if let Err(error) = T::hydrate(doc) {
        prop_assert!(
            error.field().is_some() || matches!(error, DocumentError::Automerge(_)),
            "an error naming no field: {error}"
        );
    }
    Ok(())
}

/// An edit either commits exactly one change (the new single head), commits nothing, or fails
/// leaving the document as it was.
fn check_edit<T: Document>(
    handle: &mut DocHandle<T>,
    edit: impl FnOnce(&mut DocHandle<T>) -> Result<Option<automerge::ChangeHash>, DocumentError>,
) -> Result<(), TestCaseError> {
    let before = handle.heads();
    let result = edit(handle);
    prop_assert_eq!(handle.doc().pending_ops(), 0);
    match result {
        Ok(Some(hash)) => prop_assert_eq!(handle.heads(), vec![hash]),
        Ok(None) | Err(_) => prop_assert_eq!(handle.heads(), before),
    }
    Ok(())
}

/// Reconciling a valid value repairs whatever the document held.
fn check_repair<T: Document + PartialEq + std::fmt::Debug>(
    doc: &mut AutoCommit,
    value: &T,
) -> Result<(), TestCaseError> {
    value.reconcile(doc).unwrap();
    doc.commit();
    prop_assert_eq!(&T::hydrate(doc).unwrap(), value);
    Ok(())
}

fn run(kind: usize, mutations: &[Mutation]) -> Result<(), TestCaseError> {
    let now = T0 + 10;
    match kind {
        0 => {
            let mut entry = JournalEntryDoc::create(&device(1), T0, "Title", "Body").unwrap();
            entry.set_tags(&["a".to_owned()], T0).unwrap();
            let mut doc = entry.into_doc();
            for mutation in mutations {
                write(&mut doc, mutation);
            }
            doc.commit();
            check_read::<JournalEntry>(&doc)?;
            if let Ok(mut handle) = JournalEntryDoc::from_doc(doc.clone()) {
                check_edit(&mut handle, |h| h.splice_body(1, 1, "x", now))?;
                check_edit(&mut handle, |h| h.append_body("y", now))?;
                check_edit(&mut handle, |h| h.set_title("T", now))?;
                check_edit(&mut handle, |h| {
                    h.set_tags(&["b".to_owned(), "a".to_owned()], now)
                })?;
                check_edit(&mut handle, |h| h.set_mood(Some("ok"), now))?;
                let _ = handle.summary();
                let _ = handle.history();
            }
            check_repair(&mut doc, &entry_sample())
        }
        1 => {
            let mut index = JournalIndexDoc::new(&device(1)).unwrap();
            index.add_entry(&Bytes([1; 16]), T0, T0).unwrap();
            index.set_setting("theme", Some("dark"), T0).unwrap();
            let mut doc = index.into_doc();
            for mutation in mutations {
                write(&mut doc, mutation);
            }
            doc.commit();
            check_read::<JournalIndex>(&doc)?;
            let _ = JournalIndex::hydrate_lossy(&doc);
            if let Ok(mut handle) = JournalIndexDoc::from_doc(doc.clone()) {
                check_edit(&mut handle, |h| h.add_entry(&Bytes([3; 16]), now, now))?;
                check_edit(&mut handle, |h| h.delete_entry(&Bytes([1; 16]), now))?;
                check_edit(&mut handle, |h| h.set_setting("theme", None, now))?;
            }
            check_repair(&mut doc, &index_sample())
        }
        2 => {
            let mut saved = SavedResourcesDoc::new(&device(1)).unwrap();
            saved.save_resource("us", "RAINN", T0).unwrap();
            saved.put_contact(&saved_sample().contacts[0], T0).unwrap();
            let mut doc = saved.into_doc();
            for mutation in mutations {
                write(&mut doc, mutation);
            }
            doc.commit();
            check_read::<SavedResources>(&doc)?;
            let _ = SavedResources::hydrate_lossy(&doc);
            if let Ok(mut handle) = SavedResourcesDoc::from_doc(doc.clone()) {
                check_edit(&mut handle, |h| h.save_resource("gb", "Rape Crisis", now))?;
                check_edit(&mut handle, |h| h.remove_resource("us", "RAINN", now))?;
                let mut contact = saved_sample().contacts[0].clone();
                contact.note = Some("n".into());
                check_edit(&mut handle, |h| h.put_contact(&contact, now))?;
            }
            check_repair(&mut doc, &saved_sample())
        }
        _ => {
            let mut reading = ReadingStateDoc::new(&device(1)).unwrap();
            reading.add_bookmark("what-is-consent", T0).unwrap();
            reading.set_progress("what-is-consent", 5, 6, T0).unwrap();
            let mut doc = reading.into_doc();
            for mutation in mutations {
                write(&mut doc, mutation);
            }
            doc.commit();
            check_read::<ReadingState>(&doc)?;
            let _ = ReadingState::hydrate_lossy(&doc);
            if let Ok(mut handle) = ReadingStateDoc::from_doc(doc.clone()) {
                check_edit(&mut handle, |h| {
                    h.set_progress("what-is-consent", 7, 8, now)
                })?;
                check_edit(&mut handle, |h| h.add_bookmark("after", now))?;
                check_edit(&mut handle, |h| h.clear_progress("what-is-consent", now))?;
            }
            check_repair(&mut doc, &reading_sample())
        }
    }
}

#[test]
fn malformed_documents_never_panic_and_reconcile_repairs_them() {
    let defaults = Config::default();
    let long = std::env::var("HAVEN_TEST_PROFILE").is_ok_and(|profile| profile == "long");
    let cases = match (std::env::var_os("PROPTEST_CASES"), long) {
        (Some(_), _) => defaults.cases,
        (None, true) => 1000,
        (None, false) => 64,
    };
    let seed = match defaults.rng_seed {
        RngSeed::Fixed(seed) => seed,
        RngSeed::Random => 0xbad_d0c5,
    };
    let config = Config {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..defaults
    };
    let mut runner = TestRunner::new(config);
    match runner.run(&mutations(), |(kind, mutations)| run(kind, &mutations)) {
        Ok(()) => {}
        Err(TestError::Fail(reason, case)) => panic!(
            "{reason}\nreproduce with PROPTEST_RNG_SEED={seed}\nminimal failing case: {case:#?}"
        ),
        Err(error) => panic!("{error} (PROPTEST_RNG_SEED={seed})"),
    }
}
