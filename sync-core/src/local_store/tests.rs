//! The local-store conformance suite, after matrix-rust-sdk's `statestore_integration_tests!`:
//! every test is a generic function over a [`Harness`], and `conformance_tests!` instantiates
//! them once per engine. Tests that need files on disk (reopen, locking, key stores, wipe of a
//! directory, the plaintext canary) take a [`ProfileHarness`] and run against redb.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::*;
use crate::env::SeededRandom;

const CANARY: &str = "CANARY-journal-text-7f3a";

/// A way to get a store of one engine.
trait Harness: Sized {
    fn new(seed: u64) -> Self;
    fn open(&self) -> LocalStore;
    /// Closes `store` and opens it again (a memory store just carries on: nothing persists).
    fn reopen(&self, store: LocalStore) -> LocalStore;
}

/// A store with a profile directory.
trait ProfileHarness: Harness {
    fn profile(&self) -> PathBuf;
    fn keystore(&self) -> Arc<dyn KeyStore>;
    fn random(&self) -> Arc<dyn Random>;
    fn open_with(&self, keystore: Arc<dyn KeyStore>) -> Result<LocalStore, LocalStoreError> {
        LocalStore::open(&self.profile(), keystore, self.random())
    }
}

struct MemoryHarness {
    random: Arc<dyn Random>,
}

impl Harness for MemoryHarness {
    fn new(seed: u64) -> Self {
        Self {
            random: Arc::new(SeededRandom::new(seed)),
        }
    }

    fn open(&self) -> LocalStore {
        LocalStore::open_in_memory(self.random.clone())
    }

    fn reopen(&self, store: LocalStore) -> LocalStore {
        store
    }
}

struct RedbHarness {
    root: tempfile::TempDir,
    keystore: Arc<dyn KeyStore>,
    random: Arc<dyn Random>,
}

impl Harness for RedbHarness {
    fn new(seed: u64) -> Self {
        let root = tempfile::tempdir().unwrap();
        let random: Arc<dyn Random> = Arc::new(SeededRandom::new(seed));
        // The CLI's key store, in the profile directory, as a device would have it.
        let keystore = Arc::new(FileKeyStore::new(
            root.path().join("profile"),
            random.clone(),
        ));
        Self {
            root,
            keystore,
            random,
        }
    }

    fn open(&self) -> LocalStore {
        self.open_with(self.keystore()).unwrap()
    }

    fn reopen(&self, store: LocalStore) -> LocalStore {
        store.close().unwrap();
        self.open()
    }
}

impl ProfileHarness for RedbHarness {
    fn profile(&self) -> PathBuf {
        self.root.path().join("profile")
    }

    fn keystore(&self) -> Arc<dyn KeyStore> {
        self.keystore.clone()
    }

    fn random(&self) -> Arc<dyn Random> {
        self.random.clone()
    }
}

/// Every record of every table, in order: what "nothing changed" is compared on.
fn snapshot(store: &LocalStore) -> Vec<(Table, Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    for table in Table::ALL {
        let scan = store.scan(table).unwrap();
        assert!(scan.corrupt.is_empty(), "{table}: {:?}", scan.corrupt);
        for (key, value) in scan.entries {
            out.push((table, key, value.to_vec()));
        }
    }
    out
}

fn keys(store: &LocalStore, table: Table) -> Vec<Vec<u8>> {
    store
        .scan(table)
        .unwrap()
        .entries
        .into_iter()
        .map(|(key, _)| key)
        .collect()
}

fn value(store: &LocalStore, table: Table, key: &[u8]) -> Option<Vec<u8>> {
    store.get(table, key).unwrap().map(|value| value.to_vec())
}

// ---------------------------------------------------------------------------------------------
// Engine-generic tests.

fn put_get_delete_scan_every_table<H: Harness>() {
    let h = H::new(1);
    let store = h.open();
    for table in Table::ALL {
        let tag = table.tag();
        store.put(table, b"b", &[tag, 2]).unwrap();
        let mut batch = WriteBatch::new();
        batch
            .put(table, b"a", &[tag, 1])
            .put(table, b"", b"empty key")
            .put(table, b"c", b"");
        store.commit(batch).unwrap();
    }
    for table in Table::ALL {
        let tag = table.tag();
        assert_eq!(value(&store, table, b"a"), Some(vec![tag, 1]), "{table}");
        assert_eq!(value(&store, table, b"b"), Some(vec![tag, 2]));
        assert_eq!(value(&store, table, b""), Some(b"empty key".to_vec()));
        assert_eq!(
            value(&store, table, b"c"),
            Some(vec![]),
            "empty value is not absent"
        );
        assert_eq!(value(&store, table, b"missing"), None);
        let scan = store.scan(table).unwrap();
        assert!(scan.corrupt.is_empty());
        let listed: Vec<_> = scan
            .entries
            .iter()
            .map(|(k, v)| (k.clone(), v.to_vec()))
            .collect();
        assert_eq!(
            listed,
            vec![
                (b"".to_vec(), b"empty key".to_vec()),
                (b"a".to_vec(), vec![tag, 1]),
                (b"b".to_vec(), vec![tag, 2]),
                (b"c".to_vec(), vec![]),
            ],
            "{table}: sorted by logical key"
        );
    }

    // Overwrite, delete, delete of a missing key, all in one batch per table.
    for table in Table::ALL {
        let mut batch = WriteBatch::new();
        batch
            .put(table, b"a", b"new")
            .delete(table, b"b")
            .delete(table, b"never-there");
        store.commit(batch).unwrap();
    }
    for table in Table::ALL {
        assert_eq!(value(&store, table, b"a"), Some(b"new".to_vec()));
        assert_eq!(value(&store, table, b"b"), None);
        assert_eq!(
            keys(&store, table),
            vec![b"".to_vec(), b"a".to_vec(), b"c".to_vec()]
        );
    }

    // Later ops on one key win inside a batch.
    let mut batch = WriteBatch::new();
    batch
        .put(Table::Meta, b"k", b"1")
        .delete(Table::Meta, b"k")
        .put(Table::Meta, b"k", b"3");
    store.commit(batch).unwrap();
    assert_eq!(value(&store, Table::Meta, b"k"), Some(b"3".to_vec()));

    // Limits: the longest key, a large value, binary keys.
    let long_key = vec![0xAB; MAX_KEY_LEN];
    let big: Vec<u8> = (0..2 * 1024 * 1024u32).map(|i| i as u8).collect();
    store.put(Table::Documents, &long_key, &big).unwrap();
    assert_eq!(value(&store, Table::Documents, &long_key), Some(big));
    store.put(Table::Seen, &[0, 0xFF, 0], b"bin").unwrap();
    assert_eq!(
        value(&store, Table::Seen, &[0, 0xFF, 0]),
        Some(b"bin".to_vec())
    );
}

fn tables_are_separate_key_spaces<H: Harness>() {
    let h = H::new(2);
    let store = h.open();
    let mut batch = WriteBatch::new();
    for table in Table::ALL {
        batch.put(table, b"same-key", table.name().as_bytes());
    }
    store.commit(batch).unwrap();
    for table in Table::ALL {
        assert_eq!(
            value(&store, table, b"same-key"),
            Some(table.name().as_bytes().to_vec())
        );
        assert_eq!(keys(&store, table), vec![b"same-key".to_vec()]);
    }
    store.delete(Table::Keys, b"same-key").unwrap();
    assert_eq!(value(&store, Table::Keys, b"same-key"), None);
    assert!(value(&store, Table::Documents, b"same-key").is_some());
}

fn failed_batch_leaves_nothing<H: Harness>() {
    let h = H::new(3);
    let store = h.open();
    store.put(Table::Documents, b"keep", b"v1").unwrap();
    store.put(Table::Outbox, b"pending", b"envelope").unwrap();
    let before = snapshot(&store);

    let mut batch = WriteBatch::new();
    batch
        .put(Table::Documents, b"keep", b"v2")
        .put(Table::Documents, b"new", b"x")
        .delete(Table::Outbox, b"pending")
        .put(Table::Counters, b"ctr", b"7");
    // The engine fails half-way through the transaction, as a full disk would.
    store.engine().fail_commit_after(2);
    let commits = store.stats().engine_commits;
    let err = store.commit(batch).unwrap_err();
    assert!(
        matches!(err, LocalStoreError::Engine(EngineError::Injected)),
        "{err}"
    );
    assert_eq!(snapshot(&store), before);
    assert_eq!(store.stats().engine_commits, commits);
    let store = h.reopen(store);
    assert_eq!(
        snapshot(&store),
        before,
        "nothing of it after a reopen either"
    );

    // The store carries on.
    let mut batch = WriteBatch::new();
    batch
        .put(Table::Documents, b"keep", b"v2")
        .delete(Table::Outbox, b"pending");
    store.commit(batch).unwrap();
    assert_eq!(
        value(&store, Table::Documents, b"keep"),
        Some(b"v2".to_vec())
    );
    assert_eq!(value(&store, Table::Outbox, b"pending"), None);
}

fn invalid_batch_is_refused_whole<H: Harness>() {
    let h = H::new(4);
    let store = h.open();
    store.put(Table::Meta, b"a", b"1").unwrap();
    let before = (snapshot(&store), store.stats());
    let mut batch = WriteBatch::new();
    batch
        .put(Table::Meta, b"a", b"2")
        .put(Table::Meta, &vec![1; MAX_KEY_LEN + 1], b"too long");
    let err = store.commit(batch).unwrap_err();
    assert!(
        matches!(err, LocalStoreError::KeyTooLong { table: Table::Meta, len } if len == MAX_KEY_LEN + 1),
        "{err}"
    );
    assert_eq!((snapshot(&store), store.stats()), before);
    assert!(matches!(
        store.get(Table::Meta, &vec![1; MAX_KEY_LEN + 1]),
        Err(LocalStoreError::KeyTooLong { .. })
    ));
    // An empty batch is a no-op, not a commit.
    store.commit(WriteBatch::new()).unwrap();
    assert_eq!(store.stats(), before.1);
}

/// Overwrites a record's stored value directly in the engine.
fn poke(store: &LocalStore, stored_key: &[u8], value: Vec<u8>) {
    store
        .engine()
        .commit(vec![Op::Put {
            key: stored_key.to_vec(),
            value,
        }])
        .unwrap();
}

fn corrupt_record_is_detected<H: Harness>() {
    let h = H::new(5);
    let store = h.open();
    for (key, value) in [
        (&b"doc-1"[..], &b"one"[..]),
        (b"doc-2", b"two"),
        (b"doc-3", b"three"),
    ] {
        store.put(Table::Documents, key, value).unwrap();
    }
    let stored_key = store.cipher.stored_key(Table::Documents.tag(), b"doc-2");
    let good = store.engine().get(&stored_key).unwrap().unwrap();

    // A flipped bit anywhere (nonce, ciphertext, tag), a truncation, an empty value.
    let mut damaged = Vec::new();
    for index in [0, 23, 24, 30, good.len() - 1] {
        let mut bad = good.clone();
        bad[index] ^= 0x01;
        damaged.push(bad);
    }
    damaged.push(good[..good.len() - 1].to_vec());
    damaged.push(Vec::new());
    for bad in damaged {
        poke(&store, &stored_key, bad);
        let err = store.get(Table::Documents, b"doc-2").unwrap_err();
        assert!(
            matches!(
                err,
                LocalStoreError::Corrupt {
                    table: Table::Documents
                }
            ),
            "{err}"
        );
        // The others still read.
        assert_eq!(
            value(&store, Table::Documents, b"doc-1"),
            Some(b"one".to_vec())
        );
        assert_eq!(
            value(&store, Table::Documents, b"doc-3"),
            Some(b"three".to_vec())
        );
        // A scan skips and reports it.
        let scan = store.scan(Table::Documents).unwrap();
        let listed: Vec<_> = scan.entries.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(listed, vec![b"doc-1".to_vec(), b"doc-3".to_vec()]);
        assert_eq!(
            scan.corrupt,
            vec![CorruptRecord {
                table: Table::Documents,
                stored_key: stored_key.clone()
            }]
        );
        assert!(matches!(
            scan.into_entries_strict(),
            Err(LocalStoreError::Corrupt {
                table: Table::Documents
            })
        ));
    }

    // A well-formed write over it repairs the record.
    store.put(Table::Documents, b"doc-2", b"two again").unwrap();
    assert_eq!(
        value(&store, Table::Documents, b"doc-2"),
        Some(b"two again".to_vec())
    );
    let store = h.reopen(store);
    assert_eq!(keys(&store, Table::Documents).len(), 3);
}

fn moved_or_foreign_records_are_detected<H: Harness>() {
    let h = H::new(6);
    let store = h.open();
    store.put(Table::Documents, b"doc-1", b"one").unwrap();
    store.put(Table::Documents, b"doc-2", b"two").unwrap();
    store.put(Table::Summaries, b"doc-1", b"summary").unwrap();
    let key = |table: Table, logical: &[u8]| store.cipher.stored_key(table.tag(), logical);
    let sealed_doc1 = store
        .engine()
        .get(&key(Table::Documents, b"doc-1"))
        .unwrap()
        .unwrap();

    // doc-1's (valid) ciphertext under doc-2's key, and under the same key in another table.
    poke(
        &store,
        &key(Table::Documents, b"doc-2"),
        sealed_doc1.clone(),
    );
    poke(&store, &key(Table::Summaries, b"doc-1"), sealed_doc1);
    assert!(matches!(
        store.get(Table::Documents, b"doc-2"),
        Err(LocalStoreError::Corrupt {
            table: Table::Documents
        })
    ));
    assert!(matches!(
        store.get(Table::Summaries, b"doc-1"),
        Err(LocalStoreError::Corrupt {
            table: Table::Summaries
        })
    ));
    // A record with a malformed stored key inside a table's range.
    poke(&store, &[Table::Documents.tag(), 1, 2, 3], vec![0; 64]);
    let scan = store.scan(Table::Documents).unwrap();
    assert_eq!(scan.entries.len(), 1);
    assert_eq!(scan.corrupt.len(), 2);
    // A record sealed under another data key.
    let other = LocalStore::open_in_memory(Arc::new(SeededRandom::new(99)));
    other.put(Table::Documents, b"doc-1", b"foreign").unwrap();
    let foreign_key = other.cipher.stored_key(Table::Documents.tag(), b"doc-1");
    let foreign = other.engine().get(&foreign_key).unwrap().unwrap();
    poke(&store, &key(Table::Documents, b"doc-1"), foreign);
    assert!(matches!(
        store.get(Table::Documents, b"doc-1"),
        Err(LocalStoreError::Corrupt { .. })
    ));
}

/// Blocks the engine's commits until opened, and counts who is waiting at it.
#[derive(Debug, Default)]
struct Gate {
    state: Mutex<(usize, bool)>,
    changed: Condvar,
}

impl Gate {
    fn pass(&self) {
        let mut state = self.state.lock().unwrap();
        state.0 += 1;
        self.changed.notify_all();
        while !state.1 {
            state = self.changed.wait(state).unwrap();
        }
    }

    fn wait_for(&self, entered: usize) {
        let mut state = self.state.lock().unwrap();
        while state.0 < entered {
            state = self.changed.wait(state).unwrap();
        }
    }

    fn open(&self) {
        self.state.lock().unwrap().1 = true;
        self.changed.notify_all();
    }
}

/// An engine whose commits wait at a gate, and whose n-th commit can fail or panic.
#[derive(Debug)]
struct GatedEngine {
    inner: Box<dyn Engine>,
    gate: Arc<Gate>,
    seen: std::sync::atomic::AtomicUsize,
    fault: Option<(usize, Fault)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Fail,
    Panic,
}

impl GatedEngine {
    fn wrap(
        gate: &Arc<Gate>,
        fault: Option<(usize, Fault)>,
    ) -> impl FnOnce(Box<dyn Engine>) -> Box<dyn Engine> {
        let gate = gate.clone();
        move |inner| {
            Box::new(GatedEngine {
                inner,
                gate,
                seen: Default::default(),
                fault,
            })
        }
    }
}

impl Engine for GatedEngine {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        self.inner.get(key)
    }
    fn scan_table(&self, tag: u8) -> Result<Vec<engine::StoredRecord>, EngineError> {
        self.inner.scan_table(tag)
    }
    fn is_empty(&self) -> Result<bool, EngineError> {
        self.inner.is_empty()
    }
    fn commit(&self, ops: Vec<Op>) -> Result<(), EngineError> {
        let n = self.seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.gate.pass();
        match self.fault {
            Some((at, Fault::Fail)) if at == n => Err(EngineError::Injected),
            Some((at, Fault::Panic)) if at == n => panic!("simulated engine panic"),
            _ => self.inner.commit(ops),
        }
    }
    fn flush(&self) -> Result<(), EngineError> {
        self.inner.flush()
    }
    fn commits(&self) -> u64 {
        self.inner.commits()
    }
    fn fail_commit_after(&self, ops: usize) {
        self.inner.fail_commit_after(ops);
    }
    fn close(self: Box<Self>) -> Result<(), EngineError> {
        self.inner.close()
    }
}

/// Starts N committers lined up deterministically: the first holds the engine (as a slow fsync
/// would) while the other N-1 queue behind it; then opens the gate. Returns each thread's
/// outcome (`Err` if it panicked).
fn line_up(
    store: &Arc<LocalStore>,
    gate: &Gate,
    n: usize,
) -> Vec<thread::Result<Result<(), LocalStoreError>>> {
    let commit = |store: Arc<LocalStore>, i: usize| {
        thread::spawn(move || {
            let mut batch = WriteBatch::new();
            batch
                .put(Table::Outbox, format!("env-{i}").as_bytes(), b"sealed")
                .put(
                    Table::Counters,
                    format!("ctr-{i}").as_bytes(),
                    &i.to_be_bytes(),
                );
            store.commit(batch)
        })
    };
    let mut threads = vec![commit(store.clone(), 0)];
    gate.wait_for(1);
    for i in 1..n {
        threads.push(commit(store.clone(), i));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.queued_batches() < n - 1 {
        assert!(Instant::now() < deadline, "followers never queued");
        thread::sleep(Duration::from_millis(1));
    }
    gate.open();
    threads.into_iter().map(|thread| thread.join()).collect()
}

/// N lined-up committers go in as two groups: 2 engine commits for N batches.
fn group_commit_merges_queued_batches<H: Harness>() {
    const N: usize = 8;
    let h = H::new(7);
    let gate = Arc::new(Gate::default());
    let store = Arc::new(h.open().map_engine(GatedEngine::wrap(&gate, None)));
    let before = store.stats();
    for outcome in line_up(&store, &gate, N) {
        outcome.unwrap().unwrap();
    }
    let after = store.stats();
    assert_eq!(after.batches - before.batches, N as u64);
    assert_eq!(
        after.engine_commits - before.engine_commits,
        2,
        "{N} batches, 2 commits"
    );
    for i in 0..N {
        assert!(value(&store, Table::Outbox, format!("env-{i}").as_bytes()).is_some());
        assert_eq!(
            value(&store, Table::Counters, format!("ctr-{i}").as_bytes()),
            Some(i.to_be_bytes().to_vec())
        );
    }
}

/// A group whose engine commit fails (or panics) fails every batch in it, lands none of them,
/// wakes every caller, and leaves the store working.
fn failed_group_commit_fails_every_batch_in_it<H: Harness>() {
    const N: usize = 6;
    for fault in [Fault::Fail, Fault::Panic] {
        let h = H::new(70);
        let gate = Arc::new(Gate::default());
        // Commit 0 is the first caller alone; commit 1 is the group of the other N-1.
        let store = Arc::new(
            h.open()
                .map_engine(GatedEngine::wrap(&gate, Some((1, fault)))),
        );
        let outcomes = line_up(&store, &gate, N);
        let mut outcomes = outcomes.into_iter();
        assert!(matches!(outcomes.next(), Some(Ok(Ok(())))));
        let (mut failed, mut panicked) = (0, 0);
        for outcome in outcomes {
            match outcome {
                Ok(Err(LocalStoreError::Engine(EngineError::Injected))) if fault == Fault::Fail => {
                    failed += 1
                }
                Ok(Err(LocalStoreError::Engine(EngineError::Backend(message)))) => {
                    assert!(message.contains("panicked"), "{message}");
                    failed += 1;
                }
                Err(_) => panicked += 1,
                other => panic!("{fault:?}: unexpected {other:?}"),
            }
        }
        match fault {
            Fault::Fail => assert_eq!((failed, panicked), (N - 1, 0)),
            // The leader's own thread unwinds; its followers get an error.
            Fault::Panic => assert_eq!((failed, panicked), (N - 2, 1)),
        }
        assert!(value(&store, Table::Outbox, b"env-0").is_some());
        assert_eq!(
            keys(&store, Table::Outbox),
            vec![b"env-0".to_vec()],
            "{fault:?}"
        );
        store.put(Table::Outbox, b"after", b"ok").unwrap();
        assert_eq!(value(&store, Table::Outbox, b"after"), Some(b"ok".to_vec()));
    }
}

/// Free-running concurrent committers: everything lands, never more commits than batches.
fn concurrent_commits_all_land<H: Harness>() {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 40;
    let h = H::new(8);
    let store = Arc::new(h.open());
    let before = store.stats();
    let barrier = Arc::new(std::sync::Barrier::new(THREADS));
    let started = Instant::now();
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (store, barrier) = (store.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                for i in 0..PER_THREAD {
                    let mut batch = WriteBatch::new();
                    batch
                        .put(
                            Table::DocumentChanges,
                            format!("{t}/{i}").as_bytes(),
                            b"change",
                        )
                        .put(
                            Table::Counters,
                            format!("{t}").as_bytes(),
                            &(i as u64).to_be_bytes(),
                        );
                    store.commit(batch).unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let elapsed = started.elapsed();
    let after = store.stats();
    let batches = after.batches - before.batches;
    let commits = after.engine_commits - before.engine_commits;
    assert_eq!(batches, (THREADS * PER_THREAD) as u64);
    assert!(commits <= batches);
    assert_eq!(
        keys(&store, Table::DocumentChanges).len(),
        THREADS * PER_THREAD
    );
    for t in 0..THREADS {
        assert_eq!(
            value(&store, Table::Counters, format!("{t}").as_bytes()),
            Some((PER_THREAD as u64 - 1).to_be_bytes().to_vec()),
            "each thread's last write wins for its key"
        );
    }
    println!(
        "{}: {batches} batches from {THREADS} threads in {commits} engine commits, {:.0} ms, {:.0} batches/s",
        std::any::type_name::<H>(),
        elapsed.as_secs_f64() * 1e3,
        batches as f64 / elapsed.as_secs_f64()
    );
}

/// Fills a store with `n` records spread over every table, in batches of 1000.
fn fill(store: &LocalStore, n: usize) {
    let mut batch = WriteBatch::new();
    for i in 0..n {
        let table = Table::ALL[i % Table::ALL.len()];
        batch.put(table, format!("record-{i:06}").as_bytes(), &[i as u8; 100]);
        if batch.len() == 1000 {
            store.commit(std::mem::take(&mut batch)).unwrap();
        }
    }
    store.commit(batch).unwrap();
}

fn wipe_of_store<H: Harness>() {
    let h = H::new(9);
    let store = h.open();
    fill(&store, 1000);
    let report = store.wipe().unwrap();
    if store_is_memory::<H>() {
        assert_eq!(report, WipeReport::default());
    }
    // A fresh open starts empty.
    let store = h.open();
    assert!(snapshot(&store).is_empty());
}

fn store_is_memory<H: Harness>() -> bool {
    std::any::type_name::<H>().ends_with("MemoryHarness")
}

macro_rules! conformance_tests {
    ($harness:ty; $($test:ident),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                super::$test::<$harness>();
            }
        )*
    };
}

macro_rules! engine_conformance {
    ($harness:ty) => {
        conformance_tests!($harness;
            put_get_delete_scan_every_table,
            tables_are_separate_key_spaces,
            failed_batch_leaves_nothing,
            invalid_batch_is_refused_whole,
            corrupt_record_is_detected,
            moved_or_foreign_records_are_detected,
            group_commit_merges_queued_batches,
            failed_group_commit_fails_every_batch_in_it,
            concurrent_commits_all_land,
            wipe_of_store,
        );
    };
    ($harness:ty, profile) => {
        engine_conformance!($harness);
        conformance_tests!($harness;
            reopen_keeps_data,
            profile_in_use,
            wrong_keystore_key_is_typed_and_changes_nothing,
            keystore_unavailable_is_typed_and_retryable,
            wrong_data_key_is_typed_and_changes_nothing,
            missing_data_key_is_typed,
            wipe_of_10k_records_leaves_nothing,
            canary_never_reaches_disk,
        );
    };
}

mod memory {
    use super::MemoryHarness;
    engine_conformance!(MemoryHarness);
}

mod redb {
    use super::RedbHarness;
    engine_conformance!(RedbHarness, profile);
}

// ---------------------------------------------------------------------------------------------
// Profile tests (files on disk).

/// Bytes of every file under `dir`, by relative path.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(next) = stack.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else {
                let path = entry.path();
                let bytes = std::fs::read(&path).unwrap();
                out.push((path.strip_prefix(dir).unwrap().to_owned(), bytes));
            }
        }
    }
    out.sort();
    out
}

fn reopen_keeps_data<H: ProfileHarness>() {
    let h = H::new(10);
    let store = h.open();
    let mut batch = WriteBatch::new();
    for table in Table::ALL {
        batch.put(table, b"k1", b"v1").put(table, b"k2", b"v2");
    }
    store.commit(batch).unwrap();
    store.delete(Table::Outbox, b"k1").unwrap();
    let before = snapshot(&store);
    let key_file = std::fs::read(h.profile().join(DATA_KEY_FILE_NAME)).unwrap();
    let store = h.reopen(store);
    assert_eq!(snapshot(&store), before);
    let store = h.reopen(store);
    assert_eq!(snapshot(&store), before);
    assert_eq!(
        std::fs::read(h.profile().join(DATA_KEY_FILE_NAME)).unwrap(),
        key_file,
        "the wrapped key is written once"
    );
    assert_eq!(store.dir(), Some(h.profile().as_path()));
    let names: BTreeSet<String> = files(&h.profile())
        .into_iter()
        .map(|(path, _)| path.display().to_string())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from([
            DATA_KEY_FILE_NAME.to_owned(),
            DB_FILE_NAME.to_owned(),
            keystore::FILE_KEYSTORE_NAME.to_owned()
        ])
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |path: PathBuf| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(h.profile()), 0o700);
        assert_eq!(mode(h.profile().join(DATA_KEY_FILE_NAME)), 0o600);
    }
}

fn profile_in_use<H: ProfileHarness>() {
    let h = H::new(11);
    let store = h.open();
    store.put(Table::Meta, b"k", b"v").unwrap();
    let err = h.open_with(h.keystore()).unwrap_err();
    assert!(
        matches!(&err, LocalStoreError::ProfileInUse { dir } if *dir == h.profile()),
        "{err}"
    );
    assert!(err.to_string().contains("already open"), "{err}");
    // Another spelling of the same directory is the same profile.
    let other_spelling = h.profile().join(".");
    let err = LocalStore::open(&other_spelling, h.keystore(), h.random()).unwrap_err();
    assert!(matches!(err, LocalStoreError::ProfileInUse { .. }), "{err}");
    // redb's own lock refuses a second handle on the file too (OFD locks on Linux).
    #[cfg(target_os = "linux")]
    assert!(matches!(
        RedbEngine::open(&h.profile()),
        Err(EngineError::InUse)
    ));
    // Closing releases both.
    store.close().unwrap();
    let store = h.open();
    assert_eq!(value(&store, Table::Meta, b"k"), Some(b"v".to_vec()));
}

fn wrong_keystore_key_is_typed_and_changes_nothing<H: ProfileHarness>() {
    let h = H::new(12);
    let store = h.open();
    fill(&store, 50);
    let before = snapshot(&store);
    store.close().unwrap();
    let files_before = files(&h.profile());

    // A key store with another platform key (another install's, or an invalidated one).
    let elsewhere = tempfile::tempdir().unwrap();
    let foreign: Arc<dyn KeyStore> = Arc::new(FileKeyStore::new(elsewhere.path(), h.random()));
    foreign.wrap(vec![0; 32]).unwrap();
    let err = h.open_with(foreign).unwrap_err();
    assert!(
        matches!(
            err,
            LocalStoreError::KeyStore(KeyStoreError::KeyLost { .. })
        ),
        "{err}"
    );
    assert_eq!(files(&h.profile()), files_before, "not a byte changed");

    let store = h.open();
    assert_eq!(snapshot(&store), before);
}

fn keystore_unavailable_is_typed_and_retryable<H: ProfileHarness>() {
    let h = H::new(13);
    let keystore = Arc::new(MemoryKeyStore::new(h.random()));
    let store = h.open_with(keystore.clone()).unwrap();
    store.put(Table::Documents, b"entry", b"text").unwrap();
    store.close().unwrap();
    let files_before = files(&h.profile());

    keystore.set_failure(Some(KeyStoreError::Unavailable {
        reason: "device locked".into(),
    }));
    let err = h.open_with(keystore.clone()).unwrap_err();
    assert!(
        matches!(
            err,
            LocalStoreError::KeyStore(KeyStoreError::Unavailable { .. })
        ),
        "{err}"
    );
    assert_eq!(files(&h.profile()), files_before);
    // The failed open released the profile: the user unlocks, the app retries.
    keystore.set_failure(None);
    let store = h.open_with(keystore).unwrap();
    assert_eq!(
        value(&store, Table::Documents, b"entry"),
        Some(b"text".to_vec())
    );
}

/// A key store that "unwraps" to a key of its choosing: a broken or malicious platform shim.
#[derive(Debug)]
struct LyingKeyStore(Vec<u8>);

impl KeyStore for LyingKeyStore {
    fn wrap(&self, _: Vec<u8>) -> Result<Vec<u8>, KeyStoreError> {
        Ok(vec![1])
    }
    fn unwrap(&self, _: Vec<u8>) -> Result<Vec<u8>, KeyStoreError> {
        Ok(self.0.clone())
    }
    fn delete(&self) -> Result<(), KeyStoreError> {
        Ok(())
    }
}

fn wrong_data_key_is_typed_and_changes_nothing<H: ProfileHarness>() {
    let h = H::new(14);
    let store = h.open();
    fill(&store, 20);
    let before = snapshot(&store);
    store.close().unwrap();
    let key_file = std::fs::read(h.profile().join(DATA_KEY_FILE_NAME)).unwrap();
    let files_before = files(&h.profile());
    for lie in [vec![7; 32], vec![7; 31], vec![]] {
        let err = h.open_with(Arc::new(LyingKeyStore(lie))).unwrap_err();
        assert!(matches!(err, LocalStoreError::WrongDataKey), "{err}");
    }
    assert_eq!(files(&h.profile()), files_before, "not a byte changed");
    assert_eq!(
        std::fs::read(h.profile().join(DATA_KEY_FILE_NAME)).unwrap(),
        key_file
    );
    let store = h.open();
    assert_eq!(snapshot(&store), before);
    store.close().unwrap();

    // Past the verifier (a key file copied from another profile, with its key store): the
    // database's own check record still refuses the key.
    let other = H::new(140);
    other.open().close().unwrap();
    for name in [DATA_KEY_FILE_NAME, keystore::FILE_KEYSTORE_NAME] {
        std::fs::copy(other.profile().join(name), h.profile().join(name)).unwrap();
    }
    let err = h.open_with(h.keystore()).unwrap_err();
    assert!(matches!(err, LocalStoreError::WrongDataKey), "{err}");
}

fn missing_data_key_is_typed<H: ProfileHarness>() {
    let h = H::new(15);
    let store = h.open();
    store.put(Table::Keys, b"device", b"secret").unwrap();
    store.close().unwrap();
    std::fs::remove_file(h.profile().join(DATA_KEY_FILE_NAME)).unwrap();
    let err = h.open_with(h.keystore()).unwrap_err();
    assert!(
        matches!(err, LocalStoreError::DataKeyMissing { .. }),
        "{err}"
    );
    // It did not make a new key over the old records.
    assert!(!h.profile().join(DATA_KEY_FILE_NAME).exists());

    std::fs::write(h.profile().join(DATA_KEY_FILE_NAME), b"garbage").unwrap();
    let err = h.open_with(h.keystore()).unwrap_err();
    assert!(
        matches!(err, LocalStoreError::DataKeyFileCorrupt { .. }),
        "{err}"
    );

    // The way out is a wipe.
    wipe(&h.profile(), h.keystore().as_ref()).unwrap();
    let store = h.open();
    assert!(snapshot(&store).is_empty());
}

fn wipe_of_10k_records_leaves_nothing<H: ProfileHarness>() {
    let h = H::new(16);
    let store = h.open();
    fill(&store, 10_000);
    let started = Instant::now();
    let store = h.reopen(store);
    let reopen = started.elapsed();
    assert_eq!(
        keys(&store, Table::Meta).len(),
        10_000 / Table::ALL.len() + 1
    );
    let size = std::fs::metadata(h.profile().join(DB_FILE_NAME))
        .unwrap()
        .len();

    let started = Instant::now();
    let report = store.wipe().unwrap();
    let wiped = started.elapsed();
    println!(
        "profile of 10,000 records ({} KiB): reopen with integrity check {:.1} ms, wipe {:.2} ms",
        size / 1024,
        reopen.as_secs_f64() * 1e3,
        wiped.as_secs_f64() * 1e3
    );
    assert!(!h.profile().exists(), "the profile directory is gone");
    assert!(report.keystore_key_deleted && report.data_key_file_removed && report.dir_removed);
    assert_eq!(report.files_removed, 2, "{report:?}"); // haven.redb, data-key.wrapped

    // Idempotent.
    let again = wipe(&h.profile(), h.keystore().as_ref()).unwrap();
    assert_eq!(
        again,
        WipeReport {
            keystore_key_deleted: true,
            ..WipeReport::default()
        }
    );
}

/// The plaintext canary: journal text (and ids) written in keys and values, in UTF-8 and
/// UTF-16, must not appear in any byte of any file of the profile.
fn canary_never_reaches_disk<H: ProfileHarness>() {
    let utf16 = |big_endian: bool| -> Vec<u8> {
        CANARY
            .encode_utf16()
            .flat_map(|unit| {
                if big_endian {
                    unit.to_be_bytes()
                } else {
                    unit.to_le_bytes()
                }
            })
            .collect()
    };
    let needles = [CANARY.as_bytes().to_vec(), utf16(false), utf16(true)];
    let contains =
        |haystack: &[u8], needle: &[u8]| haystack.windows(needle.len()).any(|w| w == needle);
    // The scanner itself finds a planted canary.
    for needle in &needles {
        let mut planted = vec![0u8; 1000];
        planted.extend_from_slice(needle);
        assert!(contains(&planted, needle));
    }

    let h = H::new(17);
    let store = h.open();
    for table in Table::ALL {
        let mut batch = WriteBatch::new();
        for i in 0..20 {
            let key = format!("{CANARY}/{table}/{i}");
            let text = format!("Dear journal, {CANARY} entry {i}. {}", CANARY.repeat(10));
            batch.put(table, key.as_bytes(), text.as_bytes());
            batch.put(table, &utf16(false), &utf16(false));
            batch.put(table, &utf16(true), &utf16(true));
        }
        store.commit(batch).unwrap();
    }
    // A large document spanning many pages, and overwritten and deleted records.
    store
        .put(
            Table::Documents,
            CANARY.as_bytes(),
            CANARY.repeat(20_000).as_bytes(),
        )
        .unwrap();
    store
        .put(Table::Meta, b"overwritten", CANARY.as_bytes())
        .unwrap();
    store.put(Table::Meta, b"overwritten", b"other").unwrap();
    store
        .delete(Table::Summaries, format!("{CANARY}/summaries/0").as_bytes())
        .unwrap();

    let check = |when: &str| {
        let files = files(&h.profile());
        assert!(!files.is_empty());
        for (path, bytes) in &files {
            assert!(!contains(
                path.as_os_str().as_encoded_bytes(),
                CANARY.as_bytes()
            ));
            for needle in &needles {
                assert!(
                    !contains(bytes, needle),
                    "canary in {} ({when})",
                    path.display()
                );
            }
        }
    };
    check("while open");
    let store = h.reopen(store);
    assert_eq!(
        value(&store, Table::Meta, b"overwritten"),
        Some(b"other".to_vec())
    );
    store.close().unwrap();
    check("after close");
}

// ---------------------------------------------------------------------------------------------
// Tests outside the suite.

#[test]
fn table_tags_are_stable_and_unique() {
    let tags: Vec<u8> = Table::ALL.iter().map(|table| table.tag()).collect();
    assert_eq!(
        tags,
        (1..=9).collect::<Vec<u8>>(),
        "tags are on-disk format"
    );
    assert!(!tags.contains(&INTERNAL_TAG));
    let names: BTreeSet<_> = Table::ALL.iter().map(|table| table.name()).collect();
    assert_eq!(names.len(), Table::ALL.len());
}

#[test]
fn internal_check_record_is_invisible_to_scans() {
    let store = LocalStore::open_in_memory(Arc::new(SeededRandom::new(1)));
    for table in Table::ALL {
        assert!(store.scan(table).unwrap().entries.is_empty());
    }
}

#[test]
fn debug_output_redacts_contents() {
    let h = RedbHarness::new(20);
    let store = h.open();
    let mut batch = WriteBatch::new();
    batch.put(Table::Keys, b"root-key", CANARY.as_bytes());
    assert_eq!(format!("{batch:?}"), "WriteBatch(1 ops)");
    store.commit(batch).unwrap();
    let scan = store.scan(Table::Keys).unwrap();
    let text = format!("{store:?} {scan:?} {:?}", h.keystore());
    assert!(
        !text.contains(CANARY) && !text.contains("root-key"),
        "{text}"
    );
}

#[test]
fn concurrent_opens_of_a_new_profile_make_one_key() {
    // Several threads race to create the same profile: one wins, the others get ProfileInUse,
    // and there is exactly one data key.
    let root = tempfile::tempdir().unwrap();
    let profile = root.path().join("profile");
    let random: Arc<dyn Random> = Arc::new(SeededRandom::new(21));
    let keystore: Arc<dyn KeyStore> = Arc::new(MemoryKeyStore::new(random.clone()));
    let barrier = Arc::new(std::sync::Barrier::new(4));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (profile, keystore, random, barrier) = (
                profile.clone(),
                keystore.clone(),
                random.clone(),
                barrier.clone(),
            );
            thread::spawn(move || {
                barrier.wait();
                LocalStore::open(&profile, keystore, random).map(|store| {
                    store.put(Table::Meta, b"winner", b"yes").unwrap();
                    store.close().unwrap();
                })
            })
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    for result in &results {
        assert!(
            matches!(result, Ok(()) | Err(LocalStoreError::ProfileInUse { .. })),
            "{result:?}"
        );
    }
    assert!(results.iter().any(Result::is_ok));
    let store = LocalStore::open(&profile, keystore, random).unwrap();
    assert_eq!(value(&store, Table::Meta, b"winner"), Some(b"yes".to_vec()));
}

#[test]
fn damaged_database_file_is_an_error_not_a_panic_and_wipe_still_works() {
    for damage in ["garbage", "truncated", "zeroed-header", "flipped-pages"] {
        let h = RedbHarness::new(22);
        let store = h.open();
        fill(&store, 500);
        store.close().unwrap();
        let path = h.profile().join(DB_FILE_NAME);
        let mut bytes = std::fs::read(&path).unwrap();
        match damage {
            "garbage" => {
                let random = SeededRandom::new(5);
                random.fill(&mut bytes);
            }
            "truncated" => bytes.truncate(bytes.len() / 2),
            "zeroed-header" => bytes[..4096].fill(0),
            _ => {
                // A bit flipped in every page past the header: data and b-tree pages alike.
                for offset in (4096 + 100..bytes.len()).step_by(4096) {
                    bytes[offset] ^= 0x10;
                }
            }
        }
        std::fs::write(&path, &bytes).unwrap();
        let opened = h.open_with(h.keystore());
        println!("{damage}: {:?}", opened.as_ref().map(|_| ()));
        match opened {
            Err(LocalStoreError::StoreFileCorrupt { .. } | LocalStoreError::WrongDataKey) => {}
            // If redb can still make sense of the file, whatever it returns went through the MAC.
            Ok(store) => {
                for table in Table::ALL {
                    let _ = store.scan(table);
                }
                store.close().unwrap();
            }
            Err(other) => panic!("{damage}: unexpected {other}"),
        }
        let report = wipe(&h.profile(), h.keystore().as_ref()).unwrap();
        assert!(report.dir_removed, "{damage}");
        assert!(!h.profile().exists());
    }
}

#[test]
fn wipe_goes_on_when_the_keystore_fails_and_reports_it() {
    let h = RedbHarness::new(23);
    let keystore = Arc::new(MemoryKeyStore::new(h.random()));
    let store = h.open_with(keystore.clone()).unwrap();
    fill(&store, 10);
    store.close().unwrap();
    // Leftovers of an interrupted atomic write, and a stray subdirectory.
    std::fs::write(h.profile().join(format!("{DATA_KEY_FILE_NAME}.tmp")), b"x").unwrap();
    std::fs::create_dir(h.profile().join("sub")).unwrap();
    std::fs::write(h.profile().join("sub/file"), b"x").unwrap();

    keystore.set_failure(Some(KeyStoreError::Failed {
        reason: "keystore daemon crashed".into(),
    }));
    let err = wipe(&h.profile(), keystore.as_ref()).unwrap_err();
    assert_eq!(err.failures.len(), 1, "{err}");
    assert!(err.to_string().contains("run it again"), "{err}");
    assert!(!err.report.keystore_key_deleted);
    assert!(err.report.data_key_file_removed && err.report.dir_removed);
    assert!(!h.profile().exists(), "the files went anyway");

    keystore.set_failure(None);
    let report = wipe(&h.profile(), keystore.as_ref()).unwrap();
    assert!(report.keystore_key_deleted && keystore.is_deleted());
}

#[test]
fn wipe_refuses_a_directory_that_is_not_a_profile() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("thesis.docx"), b"years of work").unwrap();
    let keystore = MemoryKeyStore::new(Arc::new(SeededRandom::new(24)));
    let err = wipe(dir.path(), &keystore).unwrap_err();
    assert!(err.failures[0].contains("no Haven profile files"), "{err}");
    assert!(dir.path().join("thesis.docx").exists());
    // An empty directory is an (empty) profile and goes.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert!(wipe(&empty, &keystore).unwrap().dir_removed);
}

#[test]
fn in_memory_store_writes_no_files_and_wipes() {
    let store = LocalStore::open_in_memory(Arc::new(SeededRandom::new(25)));
    store.put(Table::Keys, b"k", b"v").unwrap();
    assert_eq!(store.dir(), None);
    store.flush().unwrap();
    assert_eq!(store.wipe().unwrap(), WipeReport::default());
}

/// Commit throughput on the real engine: sequential commits pay one fsync each; concurrent
/// committers share them.
#[test]
fn redb_commit_throughput() {
    let h = RedbHarness::new(26);
    let store = Arc::new(h.open());
    const SEQUENTIAL: usize = 100;
    let started = Instant::now();
    for i in 0..SEQUENTIAL {
        store
            .put(Table::Outbox, &(i as u64).to_be_bytes(), &[0; 512])
            .unwrap();
    }
    let sequential = started.elapsed();

    const THREADS: usize = 4;
    let before = store.stats();
    let started = Instant::now();
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = store.clone();
            thread::spawn(move || {
                for i in 0..SEQUENTIAL {
                    let key = format!("{t}/{i}");
                    store
                        .put(Table::DocumentChanges, key.as_bytes(), &[1; 512])
                        .unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let concurrent = started.elapsed();
    let commits = store.stats().engine_commits - before.engine_commits;
    println!(
        "redb commits (512 B values): sequential {:.0}/s ({:.2} ms each); {THREADS} threads {:.0} batches/s in {commits} fsyncs for {} batches",
        SEQUENTIAL as f64 / sequential.as_secs_f64(),
        sequential.as_secs_f64() * 1e3 / SEQUENTIAL as f64,
        (THREADS * SEQUENTIAL) as f64 / concurrent.as_secs_f64(),
        THREADS * SEQUENTIAL
    );
}

const PROBE_ENV: &str = "HAVEN_LOCAL_STORE_LOCK_PROBE";

/// Child half of `profile_in_use_across_processes`: a no-op unless the parent sets the
/// environment variable.
#[test]
fn lock_probe_child() {
    let Ok(dir) = std::env::var(PROBE_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let random: Arc<dyn Random> = Arc::new(SeededRandom::new(27));
    let keystore = Arc::new(FileKeyStore::new(&dir, random.clone()));
    match LocalStore::open(&dir, keystore, random) {
        Err(LocalStoreError::ProfileInUse { .. }) => println!("PROBE:in-use"),
        Ok(store) => {
            println!("PROBE:opened {:?}", value(&store, Table::Meta, b"owner"));
        }
        Err(other) => println!("PROBE:error {other}"),
    }
}

#[test]
fn profile_in_use_across_processes() {
    let h = RedbHarness::new(27);
    let store = h.open();
    store.put(Table::Meta, b"owner", b"parent").unwrap();
    let probe = || {
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "local_store::tests::lock_probe_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(PROBE_ENV, h.profile())
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let out = probe();
    assert!(out.contains("PROBE:in-use"), "{out}");
    store.close().unwrap();
    let out = probe();
    assert!(
        out.contains("PROBE:opened Some([112, 97, 114, 101, 110, 116])"),
        "{out}"
    );
}
