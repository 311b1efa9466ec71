//! Offline editing and merging of the private documents, as a seeded property test.
//!
//! Three replicas (three devices, three actors) share two journal entries and the three
//! singletons (each replica starts every singleton from its own genesis copy). Each case applies
//! random edits offline, with occasional partial syncs in between, then delivers every change to
//! every replica in a random order, in random batches, with duplicates, through either
//! `apply_changes` or `load_incremental`. Afterwards:
//!
//! - all replicas have the same heads, the same hydrated documents and the same history;
//! - no change is still waiting for a dependency;
//! - every character any replica inserted is present unless some replica deleted it (each
//!   inserted character is a fresh code point, so identity is visible in the text), and appears
//!   once;
//! - the singletons hold what the edits imply (adds nobody undid are there, deletions are final,
//!   values come from some edit).
//!
//! Runs 64 cases from a fixed seed. `HAVEN_TEST_PROFILE=long` runs 1000 cases from a fresh seed
//! (printed); `PROPTEST_CASES` / `PROPTEST_RNG_SEED` override either. A failure panics with the
//! seed and the minimal failing steps.

// Test helpers outside #[test] functions are not covered by clippy's allow-unwrap-in-tests.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap, HashSet};

use automerge::{AutoCommit, Change};
use haven_core::documents::{
    ContactId, DocumentError, JournalEntry, JournalEntryDoc, JournalIndex, JournalIndexDoc,
    PROGRESS_SCALE, ReadingProgress, ReadingState, ReadingStateDoc, SavedResources,
    SavedResourcesDoc, TrustedContact,
};
use haven_protocol::{Bytes, DeviceId, DocId};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestError, TestRunner};

const REPLICAS: usize = 3;
const ENTRIES: usize = 2;
const T0: i64 = 1_750_000_000_000;
const DEFAULT_SEED: u64 = 0x4a7e_5eed;

const MOODS: [&str; 3] = ["calm", "tired", "angry"];
const TAGS: [&str; 5] = ["sleep", "work", "family", "therapy", "court"];
const SLUGS: [&str; 3] = ["what-is-consent", "after-an-assault", "us-national"];
const RESOURCES: [&str; 3] = ["RAINN", "Rape Crisis", "Campus / office"];
const SETTING_KEYS: [&str; 2] = ["theme", "local_only"];
const SETTING_VALUES: [&str; 3] = ["a", "b", "c"];
const POOL: u8 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Field {
    Title,
    Body,
}

#[derive(Debug, Clone)]
enum Op {
    /// Replace via update_text: delete `del_len` at `del_at`, insert `ins_len` fresh characters
    /// at `ins_at` (positions scaled to the current length).
    Replace {
        entry: usize,
        field: Field,
        del_at: u16,
        del_len: u8,
        ins_at: u16,
        ins_len: u8,
    },
    /// Splice; `bad` makes the range run past the end, which must be refused.
    Splice {
        entry: usize,
        field: Field,
        at: u16,
        del: u8,
        ins_len: u8,
        bad: bool,
    },
    Append {
        entry: usize,
        ins_len: u8,
    },
    Mood {
        entry: usize,
        mood: Option<usize>,
    },
    Tags {
        entry: usize,
        tags: Vec<usize>,
    },
    IndexAdd(u8),
    IndexDelete(u8),
    Setting(usize, Option<usize>),
    SaveResource(usize, usize),
    RemoveResource(usize, usize),
    PutContact(u8, u8),
    RemoveContact(u8),
    Bookmark(usize),
    Unbookmark(usize),
    Progress(usize, u32, u16),
    ClearProgress(usize),
}

#[derive(Debug, Clone)]
enum Step {
    Edit {
        replica: usize,
        op: Op,
    },
    /// Everything `from` holds, delivered to `to` (a partial sync mid-way).
    Deliver {
        from: usize,
        to: usize,
    },
}

#[derive(Debug, Clone)]
struct Case {
    steps: Vec<Step>,
    /// Seeds the delivery order of the final exchange.
    exchange_seed: u64,
}

fn field() -> impl Strategy<Value = Field> {
    prop_oneof![Just(Field::Title), Just(Field::Body)]
}

fn op() -> impl Strategy<Value = Op> {
    let entry = 0..ENTRIES;
    prop_oneof![
        4 => (entry.clone(), field(), any::<u16>(), 0u8..6, any::<u16>(), 0u8..6).prop_map(
            |(entry, field, del_at, del_len, ins_at, ins_len)| Op::Replace {
                entry, field, del_at, del_len, ins_at, ins_len
            }
        ),
        4 => (entry.clone(), field(), any::<u16>(), 0u8..4, 0u8..6, prop::bool::weighted(0.1))
            .prop_map(|(entry, field, at, del, ins_len, bad)| Op::Splice {
                entry, field, at, del, ins_len, bad
            }),
        2 => (entry.clone(), 1u8..6).prop_map(|(entry, ins_len)| Op::Append { entry, ins_len }),
        1 => (entry.clone(), prop::option::of(0..MOODS.len()))
            .prop_map(|(entry, mood)| Op::Mood { entry, mood }),
        1 => (entry, prop::collection::vec(0..TAGS.len(), 0..4))
            .prop_map(|(entry, tags)| Op::Tags { entry, tags }),
        2 => (0..POOL).prop_map(Op::IndexAdd),
        1 => (0..POOL).prop_map(Op::IndexDelete),
        1 => (0..SETTING_KEYS.len(), prop::option::of(0..SETTING_VALUES.len()))
            .prop_map(|(key, value)| Op::Setting(key, value)),
        2 => (0..SLUGS.len(), 0..RESOURCES.len()).prop_map(|(s, r)| Op::SaveResource(s, r)),
        1 => (0..SLUGS.len(), 0..RESOURCES.len()).prop_map(|(s, r)| Op::RemoveResource(s, r)),
        2 => (0..POOL, 0u8..3).prop_map(|(id, variant)| Op::PutContact(id, variant)),
        1 => (0..POOL).prop_map(Op::RemoveContact),
        1 => (0..SLUGS.len()).prop_map(Op::Bookmark),
        1 => (0..SLUGS.len()).prop_map(Op::Unbookmark),
        2 => (0..SLUGS.len(), 0..=PROGRESS_SCALE, any::<u16>())
            .prop_map(|(slug, fraction, position)| Op::Progress(slug, fraction, position)),
        1 => (0..SLUGS.len()).prop_map(Op::ClearProgress),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    let step = prop_oneof![
        9 => (0..REPLICAS, op()).prop_map(|(replica, op)| Step::Edit { replica, op }),
        1 => (0..REPLICAS, 0..REPLICAS).prop_map(|(from, to)| Step::Deliver { from, to }),
    ];
    (prop::collection::vec(step, 1..40), any::<u64>()).prop_map(|(steps, exchange_seed)| Case {
        steps,
        exchange_seed,
    })
}

fn device(n: usize) -> DeviceId {
    let mut bytes = [0xd0; 16];
    bytes[15] = u8::try_from(n).unwrap();
    Bytes(bytes)
}

fn entry_id(n: u8) -> DocId {
    Bytes([n + 1; 16])
}

fn contact_id(n: u8) -> ContactId {
    Bytes([0xc0 + n; 16])
}

fn contact(n: u8, variant: u8) -> TrustedContact {
    TrustedContact {
        id: contact_id(n),
        name: format!("Contact {n} v{variant}"),
        phone: format!("+4420794600{variant}{n}"),
        note: variant.is_multiple_of(2).then(|| format!("note {variant}")),
    }
}

/// A fresh code point per inserted character, alternating between the BMP (CJK, 3 UTF-8 bytes)
/// and the supplementary planes (CJK extension B, 4 UTF-8 bytes, 2 UTF-16 units). Neither range
/// combines with its neighbours, so each is its own grapheme and update_text's diff keeps it.
struct Fresh(u32);

impl Fresh {
    fn text(&mut self, len: u8) -> String {
        (0..len)
            .map(|_| {
                let n = self.0;
                self.0 += 1;
                let base = if n.is_multiple_of(2) { 0x4E00 } else { 0x20000 };
                char::from_u32(base + n / 2).unwrap()
            })
            .collect()
    }
}

/// `value` (a u16) scaled into 0 ..= `len`.
fn scale(value: u16, len: usize) -> usize {
    usize::from(value) * (len + 1) / (usize::from(u16::MAX) + 1)
}

struct Replica {
    entries: Vec<JournalEntryDoc>,
    index: JournalIndexDoc,
    saved: SavedResourcesDoc,
    reading: ReadingStateDoc,
}

impl Replica {
    /// The documents, in a fixed order, for delivering changes.
    fn docs(&mut self) -> Vec<&mut AutoCommit> {
        let mut docs: Vec<&mut AutoCommit> = self.entries.iter_mut().map(|e| e.doc_mut()).collect();
        docs.push(self.index.doc_mut());
        docs.push(self.saved.doc_mut());
        docs.push(self.reading.doc_mut());
        docs
    }

    fn text(&self, entry: usize, field: Field) -> String {
        let read = self.entries[entry].read().unwrap();
        match field {
            Field::Title => read.title,
            Field::Body => read.body,
        }
    }
}

/// What the edits imply, to check the merged documents against.
#[derive(Default)]
struct Oracle {
    inserted: HashMap<(usize, Field), HashSet<char>>,
    deleted: HashMap<(usize, Field), HashSet<char>>,
    moods: HashSet<Option<String>>,
    index_adds: HashMap<DocId, Vec<i64>>,
    index_deletes: HashMap<DocId, Vec<i64>>,
    settings: HashMap<String, HashSet<String>>,
    saves: HashMap<(String, String), Vec<i64>>,
    removes: HashSet<(String, String)>,
    contacts: HashMap<ContactId, Vec<TrustedContact>>,
    contact_removes: HashSet<ContactId>,
    bookmarks: HashMap<String, Vec<i64>>,
    unbookmarks: HashSet<String>,
    progress: HashMap<String, Vec<ReadingProgress>>,
    progress_clears: HashSet<String>,
}

/// Tiny deterministic generator for the delivery order (xorshift64*).
struct Shuffle(u64);

impl Shuffle {
    fn next(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let value = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        usize::try_from(value % u64::try_from(bound.max(1)).unwrap()).unwrap()
    }
}

fn deliver(target: &mut AutoCommit, changes: Vec<Change>, via_bytes: bool) {
    if via_bytes {
        let mut bytes = Vec::new();
        for change in &changes {
            bytes.extend_from_slice(change.raw_bytes());
        }
        target.load_incremental(&bytes).unwrap();
    } else {
        target.apply_changes(changes).unwrap();
    }
}

fn run(case: &Case) -> Result<(), TestCaseError> {
    let mut fresh = Fresh(0);
    let mut oracle = Oracle::default();

    // Replica 0 creates the entries; the others receive them before going offline.
    let mut first_entries = Vec::new();
    for e in 0..ENTRIES {
        let title = fresh.text(3);
        let body = fresh.text(8);
        for (field, text) in [(Field::Title, &title), (Field::Body, &body)] {
            oracle
                .inserted
                .entry((e, field))
                .or_default()
                .extend(text.chars());
        }
        first_entries.push(JournalEntryDoc::create(&device(0), T0, &title, &body).unwrap());
    }
    let mut replicas: Vec<Replica> = Vec::new();
    for r in 0..REPLICAS {
        let entries = first_entries
            .iter_mut()
            .map(|entry| JournalEntryDoc::load(&entry.doc_mut().save(), &device(r)).unwrap())
            .collect();
        replicas.push(Replica {
            entries,
            index: JournalIndexDoc::new(&device(r)).unwrap(),
            saved: SavedResourcesDoc::new(&device(r)).unwrap(),
            reading: ReadingStateDoc::new(&device(r)).unwrap(),
        });
    }

    for (step_no, step) in case.steps.iter().enumerate() {
        let now = T0 + 1_500 * (i64::try_from(step_no).unwrap() + 1);
        match step {
            Step::Deliver { from, to } => {
                if from == to {
                    continue;
                }
                let changes: Vec<Vec<Change>> = replicas[*from]
                    .docs()
                    .into_iter()
                    .map(|doc| doc.get_changes(&[]))
                    .collect();
                for (doc, changes) in replicas[*to].docs().into_iter().zip(changes) {
                    deliver(doc, changes, step_no % 2 == 0);
                }
            }
            Step::Edit { replica, op } => {
                apply(&mut replicas[*replica], op, now, &mut fresh, &mut oracle)?;
            }
        }
    }

    // The final exchange: every change of every replica, to every replica, shuffled, batched,
    // with duplicates.
    let mut shuffle = Shuffle(case.exchange_seed | 1);
    let all: Vec<Vec<Change>> = (0..ENTRIES + 3)
        .map(|doc| {
            replicas
                .iter_mut()
                .flat_map(|replica| replica.docs().swap_remove(doc).get_changes(&[]))
                .collect()
        })
        .collect();
    for replica in &mut replicas {
        for (doc, changes) in replica.docs().into_iter().zip(&all) {
            let mut queue = changes.clone();
            for _ in 0..shuffle.next(4) {
                let pick = shuffle.next(changes.len());
                queue.push(changes[pick].clone());
            }
            for i in (1..queue.len()).rev() {
                queue.swap(i, shuffle.next(i + 1));
            }
            while !queue.is_empty() {
                let take = (1 + shuffle.next(5)).min(queue.len());
                let batch: Vec<Change> = queue.drain(..take).collect();
                deliver(doc, batch, shuffle.next(2) == 0);
            }
            prop_assert!(doc.get_missing_deps(&[]).is_empty());
        }
    }

    check(&mut replicas, &oracle)
}

fn apply(
    replica: &mut Replica,
    op: &Op,
    now: i64,
    fresh: &mut Fresh,
    oracle: &mut Oracle,
) -> Result<(), TestCaseError> {
    match op {
        Op::Replace {
            entry,
            field,
            del_at,
            del_len,
            ins_at,
            ins_len,
        } => {
            let before = replica.text(*entry, *field);
            let mut chars: Vec<char> = before.chars().collect();
            let start = scale(*del_at, chars.len());
            let end = (start + usize::from(*del_len)).min(chars.len());
            chars.drain(start..end);
            let at = scale(*ins_at, chars.len());
            let inserted = fresh.text(*ins_len);
            chars.splice(at..at, inserted.chars());
            let new: String = chars.into_iter().collect();
            let doc = &mut replica.entries[*entry];
            let result = match field {
                Field::Title => doc.set_title(&new, now),
                Field::Body => doc.set_body(&new, now),
            };
            prop_assert_eq!(result.unwrap().is_some(), new != before);
            prop_assert_eq!(replica.text(*entry, *field), new);
            track(
                oracle,
                *entry,
                *field,
                &before,
                &replica.text(*entry, *field),
            );
        }
        Op::Splice {
            entry,
            field,
            at,
            del,
            ins_len,
            bad,
        } => {
            let before = replica.text(*entry, *field);
            let len = before.chars().count();
            let position = scale(*at, len);
            let doc = &mut replica.entries[*entry];
            if *bad {
                // Past the end: refused, nothing written.
                let heads = doc.heads();
                let delete = len - position + 1;
                let result = match field {
                    Field::Title => doc.splice_title(position, delete, "x", now),
                    Field::Body => doc.splice_body(position, delete, "x", now),
                };
                let refused = matches!(result, Err(DocumentError::OutOfRange { .. }));
                prop_assert!(refused);
                prop_assert_eq!(doc.heads(), heads);
                prop_assert_eq!(replica.text(*entry, *field), before);
                return Ok(());
            }
            let delete = usize::from(*del).min(len - position);
            let inserted = fresh.text(*ins_len);
            let result = match field {
                Field::Title => doc.splice_title(position, delete, &inserted, now),
                Field::Body => doc.splice_body(position, delete, &inserted, now),
            };
            prop_assert_eq!(
                result.unwrap().is_some(),
                delete > 0 || !inserted.is_empty()
            );
            let mut expected: Vec<char> = before.chars().collect();
            expected.splice(position..position + delete, inserted.chars());
            let after = replica.text(*entry, *field);
            prop_assert_eq!(&after, &expected.into_iter().collect::<String>());
            track(oracle, *entry, *field, &before, &after);
        }
        Op::Append { entry, ins_len } => {
            let before = replica.text(*entry, Field::Body);
            let inserted = fresh.text(*ins_len);
            replica.entries[*entry].append_body(&inserted, now).unwrap();
            let after = replica.text(*entry, Field::Body);
            prop_assert_eq!(&after, &format!("{before}{inserted}"));
            track(oracle, *entry, Field::Body, &before, &after);
        }
        Op::Mood { entry, mood } => {
            let mood = mood.map(|m| MOODS[m]);
            replica.entries[*entry].set_mood(mood, now).unwrap();
            oracle.moods.insert(mood.map(str::to_owned));
        }
        Op::Tags { entry, tags } => {
            let tags: Vec<String> = tags.iter().map(|t| TAGS[*t].to_owned()).collect();
            replica.entries[*entry].set_tags(&tags, now).unwrap();
            let mut expected = tags;
            let mut seen = HashSet::new();
            expected.retain(|tag| seen.insert(tag.clone()));
            prop_assert_eq!(replica.entries[*entry].read().unwrap().tags, expected);
        }
        Op::IndexAdd(n) => {
            let id = entry_id(*n);
            let deleted_here = replica.index.read().unwrap().is_deleted(&id);
            match replica.index.add_entry(&id, now, now) {
                Ok(Some(_)) => oracle.index_adds.entry(id).or_default().push(now),
                Ok(None) => {}
                Err(error) => {
                    prop_assert!(deleted_here, "unexpected refusal: {error}");
                }
            }
        }
        Op::IndexDelete(n) => {
            let id = entry_id(*n);
            if replica.index.delete_entry(&id, now).unwrap().is_some() {
                oracle.index_deletes.entry(id).or_default().push(now);
            }
            prop_assert!(replica.index.read().unwrap().is_deleted(&id));
        }
        Op::Setting(key, value) => {
            let key = SETTING_KEYS[*key];
            let value = value.map(|v| SETTING_VALUES[v]);
            replica.index.set_setting(key, value, now).unwrap();
            if let Some(value) = value {
                oracle
                    .settings
                    .entry(key.to_owned())
                    .or_default()
                    .insert(value.to_owned());
            }
        }
        Op::SaveResource(slug, name) => {
            let key = (SLUGS[*slug].to_owned(), RESOURCES[*name].to_owned());
            if replica
                .saved
                .save_resource(&key.0, &key.1, now)
                .unwrap()
                .is_some()
            {
                oracle.saves.entry(key).or_default().push(now);
            }
        }
        Op::RemoveResource(slug, name) => {
            let key = (SLUGS[*slug].to_owned(), RESOURCES[*name].to_owned());
            if replica
                .saved
                .remove_resource(&key.0, &key.1, now)
                .unwrap()
                .is_some()
            {
                oracle.removes.insert(key);
            }
        }
        Op::PutContact(n, variant) => {
            let contact = contact(*n, *variant);
            replica.saved.put_contact(&contact, now).unwrap();
            oracle.contacts.entry(contact.id).or_default().push(contact);
        }
        Op::RemoveContact(n) => {
            let id = contact_id(*n);
            if replica.saved.remove_contact(&id, now).unwrap().is_some() {
                oracle.contact_removes.insert(id);
            }
        }
        Op::Bookmark(slug) => {
            let slug = SLUGS[*slug];
            if replica.reading.add_bookmark(slug, now).unwrap().is_some() {
                oracle
                    .bookmarks
                    .entry(slug.to_owned())
                    .or_default()
                    .push(now);
            }
        }
        Op::Unbookmark(slug) => {
            let slug = SLUGS[*slug];
            if replica
                .reading
                .remove_bookmark(slug, now)
                .unwrap()
                .is_some()
            {
                oracle.unbookmarks.insert(slug.to_owned());
            }
        }
        Op::Progress(slug, fraction, position) => {
            let slug = SLUGS[*slug];
            let position = u64::from(*position);
            if replica
                .reading
                .set_progress(slug, *fraction, position, now)
                .unwrap()
                .is_some()
            {
                oracle
                    .progress
                    .entry(slug.to_owned())
                    .or_default()
                    .push(ReadingProgress {
                        fraction: *fraction,
                        position,
                        updated_at: now,
                    });
            }
        }
        Op::ClearProgress(slug) => {
            let slug = SLUGS[*slug];
            if replica.reading.clear_progress(slug, now).unwrap().is_some() {
                oracle.progress_clears.insert(slug.to_owned());
            }
        }
    }
    Ok(())
}

fn track(oracle: &mut Oracle, entry: usize, field: Field, before: &str, after: &str) {
    let before: HashSet<char> = before.chars().collect();
    let after: HashSet<char> = after.chars().collect();
    let key = (entry, field);
    oracle
        .inserted
        .entry(key)
        .or_default()
        .extend(after.difference(&before));
    oracle
        .deleted
        .entry(key)
        .or_default()
        .extend(before.difference(&after));
}

fn check(replicas: &mut [Replica], oracle: &Oracle) -> Result<(), TestCaseError> {
    // Everyone agrees.
    let (first, rest) = replicas.split_first_mut().unwrap();
    for other in rest.iter_mut() {
        for (a, b) in first.docs().into_iter().zip(other.docs()) {
            let (mut heads_a, mut heads_b) = (a.get_heads(), b.get_heads());
            heads_a.sort();
            heads_b.sort();
            prop_assert_eq!(heads_a, heads_b);
        }
        for (a, b) in first.entries.iter_mut().zip(other.entries.iter_mut()) {
            let (read_a, read_b) = (a.read().unwrap(), b.read().unwrap());
            prop_assert_eq!(&read_a.title, &read_b.title);
            prop_assert_eq!(&read_a.body, &read_b.body);
            prop_assert_eq!(read_a, read_b);
            prop_assert_eq!(a.history(), b.history());
        }
        prop_assert_eq!(first.index.read().unwrap(), other.index.read().unwrap());
        prop_assert_eq!(first.saved.read().unwrap(), other.saved.read().unwrap());
        prop_assert_eq!(first.reading.read().unwrap(), other.reading.read().unwrap());
        prop_assert_eq!(first.index.history(), other.index.history());
    }

    // No character lost, none resurrected, none duplicated.
    for (e, entry) in first.entries.iter().enumerate() {
        let read: JournalEntry = entry.read().unwrap();
        for (field, text) in [(Field::Title, &read.title), (Field::Body, &read.body)] {
            let inserted = &oracle.inserted[&(e, field)];
            let deleted = oracle.deleted.get(&(e, field)).cloned().unwrap_or_default();
            let expected: HashSet<char> = inserted.difference(&deleted).copied().collect();
            let present: Vec<char> = text.chars().collect();
            let present_set: HashSet<char> = present.iter().copied().collect();
            prop_assert_eq!(
                present.len(),
                present_set.len(),
                "a character appears twice"
            );
            let lost: Vec<&char> = expected.difference(&present_set).collect();
            prop_assert!(
                lost.is_empty(),
                "lost from entry {} {:?}: {:?}",
                e,
                field,
                lost
            );
            let extra: Vec<&char> = present_set.difference(&expected).collect();
            prop_assert!(extra.is_empty(), "deleted yet present: {:?}", extra);
        }
        prop_assert!(oracle.moods.contains(&read.mood) || read.mood.is_none());
        prop_assert!(read.tags.iter().all(|tag| TAGS.contains(&tag.as_str())));
        let mut seen = HashSet::new();
        prop_assert!(
            read.tags.iter().all(|tag| seen.insert(tag)),
            "duplicate tag"
        );
    }

    let index: JournalIndex = first.index.read().unwrap();
    for n in 0..POOL {
        let id = entry_id(n);
        if let Some(deletes) = oracle.index_deletes.get(&id) {
            // Every effective delete was made without seeing another: they are concurrent, and
            // concurrent deletions resolve to the earliest.
            prop_assert_eq!(index.deletions.get(&id), deletes.iter().min());
            prop_assert!(!index.entries.contains_key(&id));
        } else if let Some(adds) = oracle.index_adds.get(&id) {
            prop_assert_eq!(index.entries.get(&id), adds.iter().min());
        } else {
            prop_assert!(!index.entries.contains_key(&id) && !index.deletions.contains_key(&id));
        }
    }
    for (key, value) in &index.settings {
        prop_assert!(
            oracle
                .settings
                .get(key)
                .is_some_and(|values| values.contains(value))
        );
    }

    let saved: SavedResources = first.saved.read().unwrap();
    let saved_keys: BTreeMap<(String, String), i64> = saved
        .resources
        .iter()
        .map(|r| ((r.list_slug.clone(), r.resource_name.clone()), r.saved_at))
        .collect();
    for (key, times) in &oracle.saves {
        if !oracle.removes.contains(key) {
            prop_assert!(
                saved_keys.contains_key(key),
                "saved resource lost: {:?}",
                key
            );
        }
        if let Some(at) = saved_keys.get(key) {
            prop_assert!(times.contains(at));
        }
    }
    prop_assert!(saved_keys.keys().all(|key| oracle.saves.contains_key(key)));
    for contact in &saved.contacts {
        let puts = oracle.contacts.get(&contact.id);
        prop_assert!(puts.is_some(), "a contact nobody added");
        let puts = puts.unwrap();
        prop_assert!(puts.iter().any(|p| p.name == contact.name));
        prop_assert!(puts.iter().any(|p| p.phone == contact.phone));
        prop_assert!(contact.note.is_none() || puts.iter().any(|p| p.note == contact.note));
    }
    for id in oracle.contacts.keys() {
        if !oracle.contact_removes.contains(id) {
            prop_assert!(saved.contact(id).is_some(), "contact lost");
        }
    }

    let reading: ReadingState = first.reading.read().unwrap();
    for (slug, times) in &oracle.bookmarks {
        if !oracle.unbookmarks.contains(slug) {
            prop_assert!(reading.bookmarks.contains_key(slug), "bookmark lost");
        }
        if let Some(at) = reading.bookmarks.get(slug) {
            prop_assert!(times.contains(at));
        }
    }
    prop_assert!(
        reading
            .bookmarks
            .keys()
            .all(|slug| oracle.bookmarks.contains_key(slug))
    );
    for (slug, values) in &oracle.progress {
        if !oracle.progress_clears.contains(slug) {
            prop_assert!(reading.progress.contains_key(slug), "progress lost");
        }
        if let Some(value) = reading.progress.get(slug) {
            prop_assert!(values.contains(value), "progress nobody wrote: {:?}", value);
        }
    }
    prop_assert!(
        reading
            .progress
            .keys()
            .all(|slug| oracle.progress.contains_key(slug))
    );
    Ok(())
}

/// 64 cases from a fixed seed by default; `HAVEN_TEST_PROFILE=long`: 1000 cases from a fresh
/// seed. `PROPTEST_CASES` / `PROPTEST_RNG_SEED` override either.
fn config() -> (Config, u64) {
    let defaults = Config::default();
    let long = std::env::var("HAVEN_TEST_PROFILE").is_ok_and(|profile| profile == "long");
    let cases = if std::env::var_os("PROPTEST_CASES").is_some() {
        defaults.cases
    } else if long {
        1000
    } else {
        64
    };
    let seed = match defaults.rng_seed {
        RngSeed::Fixed(seed) => seed,
        RngSeed::Random if long => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(DEFAULT_SEED, |elapsed| {
                u64::try_from(elapsed.as_nanos() % u128::from(u64::MAX)).unwrap()
            }),
        RngSeed::Random => DEFAULT_SEED,
    };
    let config = Config {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..defaults
    };
    (config, seed)
}

#[test]
fn three_replicas_edit_offline_and_converge_without_losing_a_character() {
    let (config, seed) = config();
    eprintln!(
        "documents_merge: {} cases, PROPTEST_RNG_SEED={seed}",
        config.cases
    );
    let mut runner = TestRunner::new(config);
    match runner.run(&case(), |case| run(&case)) {
        Ok(()) => {}
        Err(TestError::Fail(reason, case)) => panic!(
            "replicas diverged: {reason}\nreproduce with PROPTEST_RNG_SEED={seed}\n\
             minimal failing case: {case:#?}"
        ),
        Err(error) => panic!("{error} (PROPTEST_RNG_SEED={seed})"),
    }
}

/// The scenario the journal exists for, spelled out: a phone and a laptop edit the same entry
/// offline, a tablet that was off the whole time catches up from both.
#[test]
fn phone_laptop_and_tablet_converge() {
    let mut phone = JournalEntryDoc::create(&device(1), T0, "Monday", "I told Sam.").unwrap();
    let saved = phone.doc_mut().save();
    let mut laptop = JournalEntryDoc::load(&saved, &device(2)).unwrap();
    let mut tablet = JournalEntryDoc::load(&saved, &device(3)).unwrap();

    phone.splice_body(0, 0, "Today ", T0 + 1_000).unwrap();
    phone.set_tags(&["support".to_owned()], T0 + 2_000).unwrap();
    laptop.append_body(" It helped.", T0 + 1_500).unwrap();
    laptop.set_title("Monday evening", T0 + 3_000).unwrap();
    laptop.set_mood(Some("relieved"), T0 + 3_000).unwrap();

    // The tablet receives the laptop's changes first, then the phone's, each as saved bytes.
    let laptop_changes = laptop.doc_mut().save_after(&tablet.heads());
    let phone_changes = phone.doc_mut().save_after(&tablet.heads());
    tablet.doc_mut().load_incremental(&laptop_changes).unwrap();
    tablet.doc_mut().load_incremental(&phone_changes).unwrap();
    let phone_all = phone.doc_mut().get_changes(&[]);
    let laptop_all = laptop.doc_mut().get_changes(&[]);
    phone.doc_mut().apply_changes(laptop_all).unwrap();
    laptop.doc_mut().apply_changes(phone_all).unwrap();

    let expected = phone.read().unwrap();
    assert_eq!(expected.body, "Today I told Sam. It helped.");
    assert_eq!(expected.title, "Monday evening");
    assert_eq!(expected.mood.as_deref(), Some("relieved"));
    assert_eq!(expected.tags, ["support"]);
    assert_eq!(expected.updated_at, T0 + 3_000);
    for other in [&mut laptop, &mut tablet] {
        assert_eq!(other.read().unwrap(), expected);
    }
    assert_eq!(phone.heads(), tablet.heads());
    let history = tablet.history();
    assert_eq!(history.len(), 6);
    assert_eq!(history, phone.history());
    assert_eq!(history[0].message.as_deref(), Some("create"));
}
