//! One conformance suite for every [`Store`] backend (DESIGN.md §1, §7).
//!
//! [`store_conformance_tests!`] expands to one `#[tokio::test]` per case for a backend, given an
//! expression that makes a fresh [`Harness`] (as matrix-rust-sdk's `statestore_integration_tests!`
//! does for its state stores). The cases live in [`cases`] and only talk to the store through
//! `&dyn Store`, so a backend that is not a [`KvStore`] (PostgreSQL) can run them unchanged. A
//! property test drives random append batches against a backend and a small model of the rules.
//! Backend-specific cases follow the instantiations: durability, corrupt records (planted
//! through the [`KvEngine`]), sled restarts and the data-directory lock.

use std::sync::Arc;

use haven_protocol::api::{KdfParams, KeyBundle};
use haven_protocol::{
    Blob, Bytes, DeviceId, DocId, Envelope, EnvelopeId, HexId, Kind, SpaceId, UserId,
};
use zeroize::Zeroizing;

use super::kv::{KvEngine, KvStore};
use super::memory::MemoryKv;
use super::sled_kv::SledKv;
use super::{
    AccountRecord, AppendItem, AppendOutcome, DeviceRecord, Durability, JwtKeyRecord, JwtKeyState,
    SessionRecord, Store, StoredKey, WRAPPED_KEY_LEN, WrappedKey,
};

/// A fresh store for one test, and whatever must live as long as it (a temporary directory).
/// Only `dyn Store` is visible, so a backend that is not a [`KvStore`] (PostgreSQL) can run
/// the same suite by providing its own constructor.
pub(super) struct Harness {
    store: Arc<dyn Store>,
    dir: Option<tempfile::TempDir>,
    /// A PostgreSQL store's schema, dropped after the store.
    _schema: Option<super::postgres::testing::TestSchema>,
}

impl Harness {
    pub(super) fn store(&self) -> &dyn Store {
        &*self.store
    }

    pub(super) fn shared(&self) -> Arc<dyn Store> {
        self.store.clone()
    }
}

pub(super) fn memory() -> Harness {
    Harness {
        store: Arc::new(KvStore::<MemoryKv>::new()),
        dir: None,
        _schema: None,
    }
}

/// A small cache keeps parallel tests light; the behaviour does not depend on it.
const TEST_CACHE_BYTES: u64 = 8 * 1024 * 1024;

/// A sled store in a fresh temporary directory, and the directory.
fn sled_kv() -> (KvStore<SledKv>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = KvStore::<SledKv>::open(dir.path(), TEST_CACHE_BYTES).unwrap();
    (store, dir)
}

pub(super) fn sled() -> Harness {
    let (store, dir) = sled_kv();
    Harness {
        store: Arc::new(store),
        dir: Some(dir),
        _schema: None,
    }
}

/// A PostgreSQL store in a fresh schema of `HAVEN_TEST_POSTGRES`, or `None` (the case is
/// skipped) when that is unset; see `postgres::testing` for `HAVEN_REQUIRE_POSTGRES`.
pub(super) async fn postgres() -> Option<Harness> {
    let (store, schema) = super::postgres::testing::fresh_store().await?;
    Some(Harness {
        store: Arc::new(store),
        dir: None,
        _schema: Some(schema),
    })
}

// ---- fixtures ---------------------------------------------------------------------------------

fn user_id(n: u8) -> UserId {
    HexId([n; 16])
}

/// Space ids differ from user ids, as they do in the server.
fn space_id(n: u8) -> HexId {
    let mut id = [n; 16];
    id[0] = 0xee;
    HexId(id)
}

fn space_of(n: u8) -> SpaceId {
    SpaceId::Private(space_id(n))
}

fn device_id(user: u8, n: u8) -> DeviceId {
    Bytes([user ^ 0x55, n, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, n])
}

fn account_record(n: u8, key_epoch: u32) -> AccountRecord {
    AccountRecord {
        user_id: user_id(n),
        space_id: space_id(n),
        username_key: [n; 32],
        auth_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$auth{n}"),
        recovery_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$recovery{n}"),
        kdf: KdfParams::recommended(Bytes([n; 16])),
        key_bundle: KeyBundle {
            version: 1,
            key_epoch,
            blob: Blob(vec![n; 48]),
        },
        auth_version: 0,
        revision: 0,
        created_day: "2025-01-01".into(),
    }
}

fn device_record(user: u8, n: u8) -> DeviceRecord {
    DeviceRecord {
        user_id: user_id(user),
        device_id: device_id(user, n),
        name: Some(format!("sealed name {n}")),
        created_day: "2025-01-01".into(),
        last_seen_day: "2025-01-02".into(),
        revoked: false,
    }
}

/// A wrapped key as the server would store it (the store never unwraps, so any bytes do).
fn storage_key(n: u8) -> WrappedKey {
    WrappedKey {
        generation: u32::from(n % 3) + 1,
        sealed: [n.wrapping_add(100); WRAPPED_KEY_LEN],
    }
}

fn stored_key(n: u8) -> Option<StoredKey> {
    Some(StoredKey::Wrapped(storage_key(n)))
}

/// Creates account `n` (first device 0) and returns its record and space.
async fn new_account(store: &dyn Store, n: u8, key_epoch: u32) -> (AccountRecord, SpaceId) {
    let account = account_record(n, key_epoch);
    let created = store
        .create_account(account.clone(), device_record(n, 0), storage_key(n))
        .await
        .unwrap();
    assert_eq!(created, super::Cas::Done(()));
    (account, space_of(n))
}

fn session_id(n: u8) -> HexId {
    HexId([n.wrapping_add(0x80); 16])
}

fn session_record(n: u8, user: u8, device: u8) -> SessionRecord {
    SessionRecord {
        session_id: session_id(n),
        user_id: user_id(user),
        device_id: device_id(user, device),
        created_at: 1_000,
        last_used_at: 1_000,
        generation: 0,
        current_hash: [n; 32],
        previous_hash: None,
        rotated_at: 1_000,
        revoked: false,
    }
}

fn eid(n: u8) -> EnvelopeId {
    Bytes([n; 32])
}

fn doc(n: u8) -> DocId {
    Bytes([n; 16])
}

/// An envelope whose body differs by `variant`, so the same id can carry other bytes.
fn envelope(kind: Kind, id: u8, doc_n: u8, key_epoch: u32, variant: u8) -> Envelope {
    Envelope {
        id: eid(id),
        doc: doc(doc_n),
        kind,
        device: Bytes([7; 16]),
        ctr: u64::from(id) + 1,
        key_epoch,
        body: Blob(vec![id, doc_n, variant, 0xab]),
        sig: None,
        covers: None,
        upto_seq: None,
    }
}

fn item(envelope: Envelope) -> AppendItem {
    let digest = envelope.digest();
    AppendItem { envelope, digest }
}

fn change(id: u8, doc_n: u8, key_epoch: u32) -> AppendItem {
    item(envelope(Kind::Change, id, doc_n, key_epoch, 0))
}

fn change_v(id: u8, doc_n: u8, key_epoch: u32, variant: u8) -> AppendItem {
    item(envelope(Kind::Change, id, doc_n, key_epoch, variant))
}

fn tombstone(id: u8, doc_n: u8, key_epoch: u32) -> AppendItem {
    item(envelope(Kind::Tombstone, id, doc_n, key_epoch, 0))
}

fn snapshot(id: u8, doc_n: u8, key_epoch: u32, covers: &[u8], upto: u64) -> AppendItem {
    let mut env = envelope(Kind::Snapshot, id, doc_n, key_epoch, 0);
    env.covers = Some(covers.iter().map(|&n| eid(n)).collect());
    env.upto_seq = Some(upto);
    item(env)
}

fn stored(seqs: impl IntoIterator<Item = u64>) -> Vec<AppendOutcome> {
    seqs.into_iter()
        .map(|seq| AppendOutcome::Stored { seq })
        .collect()
}

async fn read_all(store: &dyn Store, space: &SpaceId) -> Vec<(u64, Envelope)> {
    store.read(space, 0, u64::MAX, usize::MAX).await.unwrap()
}

async fn read_seqs(store: &dyn Store, space: &SpaceId) -> Vec<u64> {
    read_all(store, space)
        .await
        .into_iter()
        .map(|(seq, _)| seq)
        .collect()
}

fn sorted<T: Ord>(mut values: Vec<T>) -> Vec<T> {
    values.sort();
    values
}

/// Generates one `#[tokio::test]` per conformance case for a backend. `$make` is an expression
/// evaluating to a fresh [`Harness`]; it is evaluated once per test (once per property case).
/// With `optional`, `$make` is a future of `Option<Harness>` instead, and `None` skips the case
/// (a backend that needs a server this machine may not have).
macro_rules! store_conformance_tests {
    ($make:expr) => {
        store_conformance_tests!(@backend (async { Some($make) }));
    };
    (optional $make:expr) => {
        store_conformance_tests!(@backend ($make));
    };
    (@backend $make:tt) => {
        store_conformance_tests!(@cases $make;
            basics_ping_and_flush,
            append_assigns_gap_free_seqs_from_one,
            append_answers_per_item_in_order,
            duplicates_and_id_conflicts_across_and_within_batches,
            rejected_items_consume_no_seq,
            tombstone_drops_the_doc_and_refuses_later_pushes,
            epochs_follow_account_updates_and_revocations,
            snapshot_ahead_of_the_head,
            snapshot_stale_lists_exactly_the_missing_ids,
            snapshot_prunes_exactly_the_covered_live_entries,
            snapshot_sees_earlier_items_of_its_batch,
            read_respects_bounds_limit_and_order,
            public_space_and_unknown_spaces,
            accounts_create_lookup_and_cas,
            revoke_device_revokes_exactly_that_devices_sessions,
            erase_account_removes_everything,
            an_erasure_keeps_the_wipe_token_it_was_given,
            storage_keys_list_in_pages_and_replace_by_cas,
            sessions_cas_on_generation,
            revoke_sessions_of_user_keeps_one,
            tokens_are_single_use,
            links_take_a_payload_once,
            purge_expired_removes_only_expired,
            rate_limit_counts_in_fixed_windows,
            secret_or_init_keeps_the_first_value,
            jwt_keys_keep_one_active,
        );

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn concurrent_appends_share_one_gap_free_sequence() {
            let Some(harness) = $make.await else {
                return;
            };
            $crate::store::conformance::cases::concurrent_appends_share_one_gap_free_sequence(
                harness.shared(),
            )
            .await;
        }

        #[test]
        fn appends_match_the_model() {
            $crate::store::conformance::model::check_against_model(|| $make);
        }
    };
    (@cases $make:tt; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let Some(harness) = $make.await else {
                    return;
                };
                $crate::store::conformance::cases::$case(harness.store()).await;
            }
        )*
    };
}

mod memory_store {
    store_conformance_tests!(super::memory());

    use super::*;

    #[test]
    fn memory_is_durable_on_commit() {
        assert_eq!(
            KvStore::<MemoryKv>::new().durability(),
            Durability::OnCommit
        );
    }

    #[tokio::test]
    async fn memory_refuses_corrupt_records() {
        cases::corrupt_records_are_refused(&KvStore::<MemoryKv>::new()).await;
    }

    #[tokio::test]
    async fn memory_reads_and_replaces_legacy_raw_keys() {
        cases::legacy_raw_keys_are_read_and_replaced(&KvStore::<MemoryKv>::new()).await;
    }
}

mod postgres_store {
    store_conformance_tests!(optional super::postgres());
}

mod sled_store {
    store_conformance_tests!(super::sled());

    use super::*;

    #[test]
    fn sled_is_durable_after_flush() {
        let (store, _dir) = sled_kv();
        assert_eq!(store.durability(), Durability::AfterFlush);
    }

    #[tokio::test]
    async fn sled_refuses_corrupt_records() {
        let (store, _dir) = sled_kv();
        cases::corrupt_records_are_refused(&store).await;
    }

    #[tokio::test]
    async fn sled_reads_and_replaces_legacy_raw_keys() {
        let (store, _dir) = sled_kv();
        cases::legacy_raw_keys_are_read_and_replaced(&store).await;
    }

    /// Everything acknowledged before a flush is there after a restart, and ids stay idempotent.
    #[tokio::test]
    async fn sled_restart_keeps_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let (account, space) = {
            let store = KvStore::<SledKv>::open(dir.path(), TEST_CACHE_BYTES).unwrap();
            let (account, space) = new_account(&store, 1, 1).await;
            let out = store
                .append(
                    &space,
                    vec![change(1, 1, 1), change(2, 1, 1), change(3, 2, 1)],
                )
                .await
                .unwrap();
            assert_eq!(out, stored(1..=3));
            let out = store
                .append(
                    &space,
                    vec![snapshot(4, 1, 1, &[1, 2], 2), tombstone(5, 2, 1)],
                )
                .await
                .unwrap();
            assert_eq!(out, stored(4..=5));
            store.flush().await.unwrap();
            (account, space)
        };
        // The first store is dropped: its lock is released and its files closed.
        let store = KvStore::<SledKv>::open(dir.path(), TEST_CACHE_BYTES).unwrap();
        assert_eq!(store.head(&space).await.unwrap(), 5);
        assert_eq!(store.epoch(&space).await.unwrap(), 1);
        assert_eq!(
            store.account(&account.user_id).await.unwrap(),
            Some(account)
        );
        assert_eq!(store.storage_key(&space).await.unwrap(), stored_key(1));
        let log = read_all(&store, &space).await;
        let expected = vec![
            (4, snapshot(4, 1, 1, &[1, 2], 2).envelope),
            (5, tombstone(5, 2, 1).envelope),
        ];
        assert_eq!(log, expected);
        for (n, seq) in [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5)] {
            assert_eq!(store.seq_of(&space, &eid(n)).await.unwrap(), Some(seq));
        }
        let retry = store
            .append(
                &space,
                vec![change(1, 1, 1), change(3, 2, 1), change(6, 1, 1)],
            )
            .await
            .unwrap();
        assert_eq!(
            retry,
            vec![
                AppendOutcome::Duplicate { seq: 1 },
                AppendOutcome::Duplicate { seq: 3 },
                AppendOutcome::Stored { seq: 6 },
            ]
        );
        assert_eq!(
            store.append(&space, vec![change(7, 2, 1)]).await.unwrap(),
            vec![AppendOutcome::DocDeleted]
        );
    }

    #[test]
    fn sled_refuses_a_directory_in_use() {
        let harness = super::sled();
        let dir = harness.dir.as_ref().unwrap().path();
        let error = KvStore::<SledKv>::open(dir, TEST_CACHE_BYTES).unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("is in use by another haven-server"),
            "{message}"
        );
        assert!(message.contains(&dir.display().to_string()), "{message}");
    }

    #[test]
    fn sled_reports_an_unusable_directory() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let error = KvStore::<SledKv>::open(file.path(), TEST_CACHE_BYTES).unwrap_err();
        assert!(
            error.to_string().contains("cannot open the data directory"),
            "{error}"
        );
    }
}

/// The cases, each against a fresh store.
pub(super) mod cases {
    use super::super::{Cas, LinkRecord, OneTimeToken, RateDecision};
    use super::*;

    pub(crate) async fn basics_ping_and_flush(store: &dyn Store) {
        store.ping().await.unwrap();
        store.flush().await.unwrap();
        // Whatever the backend promises, a flush after a write must succeed.
        new_account(store, 1, 1).await;
        store.flush().await.unwrap();
        store.ping().await.unwrap();
    }

    pub(crate) async fn append_assigns_gap_free_seqs_from_one(store: &dyn Store) {
        let (_, space) = new_account(store, 1, 1).await;
        assert_eq!(store.head(&space).await.unwrap(), 0);
        let first = store
            .append(
                &space,
                vec![change(1, 1, 1), change(2, 1, 1), change(3, 2, 1)],
            )
            .await
            .unwrap();
        assert_eq!(first, stored(1..=3));
        let second = store
            .append(&space, vec![change(4, 3, 1), change(5, 1, 1)])
            .await
            .unwrap();
        assert_eq!(second, stored(4..=5));
        assert_eq!(store.append(&space, vec![]).await.unwrap(), vec![]);
        assert_eq!(store.head(&space).await.unwrap(), 5);
        let log = read_all(store, &space).await;
        let expected: Vec<_> = [(1, 1), (2, 1), (3, 2), (4, 3), (5, 1)]
            .into_iter()
            .zip(1u64..)
            .map(|((id, d), seq)| (seq, change(id, d, 1).envelope))
            .collect();
        assert_eq!(log, expected);
        for n in 1..=5u8 {
            assert_eq!(
                store.seq_of(&space, &eid(n)).await.unwrap(),
                Some(u64::from(n))
            );
        }
        assert_eq!(store.seq_of(&space, &eid(99)).await.unwrap(), None);
        assert_eq!(
            store.live_ids(&space, &doc(1)).await.unwrap(),
            vec![(1, eid(1)), (2, eid(2)), (5, eid(5))]
        );
    }

    pub(crate) async fn append_answers_per_item_in_order(store: &dyn Store) {
        let (_, space) = new_account(store, 1, 1).await;
        store
            .append(&space, vec![change(1, 1, 1), tombstone(2, 2, 1)])
            .await
            .unwrap();
        let out = store
            .append(
                &space,
                vec![
                    change(3, 1, 1),
                    change(1, 1, 1),
                    change_v(1, 1, 1, 9),
                    change(4, 2, 1),
                    change(5, 1, 0),
                    change(6, 1, 2),
                    snapshot(7, 1, 1, &[1, 3], 9),
                    snapshot(8, 1, 1, &[1], 3),
                    change(9, 3, 1),
                ],
            )
            .await
            .unwrap();
        assert_eq!(
            out,
            vec![
                AppendOutcome::Stored { seq: 3 },
                AppendOutcome::Duplicate { seq: 1 },
                AppendOutcome::IdConflict,
                AppendOutcome::DocDeleted,
                AppendOutcome::EpochStale { current: 1 },
                AppendOutcome::EpochAhead { current: 1 },
                AppendOutcome::SnapshotAhead { head: 3 },
                AppendOutcome::SnapshotStale {
                    missing: vec![eid(3)]
                },
                AppendOutcome::Stored { seq: 4 },
            ]
        );
        assert_eq!(store.head(&space).await.unwrap(), 4);
    }

    pub(crate) async fn duplicates_and_id_conflicts_across_and_within_batches(store: &dyn Store) {
        let (_, space) = new_account(store, 1, 1).await;
        store
            .append(&space, vec![change(1, 1, 1), change(2, 1, 1)])
            .await
            .unwrap();
        // Across batches: same bytes → the original seq; other bytes → conflict.
        let out = store
            .append(&space, vec![change(2, 1, 1), change_v(1, 1, 1, 1)])
            .await
            .unwrap();
        assert_eq!(
            out,
            vec![
                AppendOutcome::Duplicate { seq: 2 },
                AppendOutcome::IdConflict
            ]
        );
        assert_eq!(store.head(&space).await.unwrap(), 2);
        // Within one batch: the second copy sees the first.
        let out = store
            .append(
                &space,
                vec![
                    change(3, 1, 1),
                    change(3, 1, 1),
                    change(4, 1, 1),
                    change_v(4, 1, 1, 2),
                ],
            )
            .await
            .unwrap();
        assert_eq!(
            out,
            vec![
                AppendOutcome::Stored { seq: 3 },
                AppendOutcome::Duplicate { seq: 3 },
                AppendOutcome::Stored { seq: 4 },
                AppendOutcome::IdConflict,
            ]
        );
        // The stored bytes are the first ones, whatever came later.
        let log = read_all(store, &space).await;
        assert_eq!(log[0].1, change(1, 1, 1).envelope);
        assert_eq!(log[3].1, change(4, 1, 1).envelope);
        assert_eq!(read_seqs(store, &space).await, vec![1, 2, 3, 4]);
        // A duplicate is answered even when its document has since been deleted.
        store
            .append(&space, vec![tombstone(5, 1, 1)])
            .await
            .unwrap();
        let out = store
            .append(&space, vec![change(1, 1, 1), change_v(2, 1, 1, 3)])
            .await
            .unwrap();
        assert_eq!(
            out,
            vec![
                AppendOutcome::Duplicate { seq: 1 },
                AppendOutcome::IdConflict
            ]
        );
    }

    pub(crate) async fn rejected_items_consume_no_seq(store: &dyn Store) {
        let (_, space) = new_account(store, 1, 1).await;
        store
            .append(&space, vec![change(1, 1, 1), tombstone(2, 2, 1)])
            .await
            .unwrap();
        let out = store
            .append(
                &space,
                vec![
                    change(10, 1, 0),
                    change(3, 1, 1),
                    change(11, 2, 1),
                    snapshot(12, 1, 1, &[], 3),
                    change(4, 1, 1),
                ],
            )
            .await
            .unwrap();
        assert_eq!(
            out,
            vec![
                AppendOutcome::EpochStale { current: 1 },
                AppendOutcome::Stored { seq: 3 },
                AppendOutcome::DocDeleted,
                AppendOutcome::SnapshotStale {
                    missing: vec![eid(1), eid(3)]
                },
                AppendOutcome::Stored { seq: 4 },
            ]
        );
        // A batch of only rejections writes nothing.
        let out = store
            .append(&space, vec![change(13, 2, 1), change(14, 1, 5)])
            .await
            .unwrap();
        assert_eq!(
            out,
            vec![
                AppendOutcome::DocDeleted,
                AppendOutcome::EpochAhead { current: 1 }
            ]
        );
        assert_eq!(store.head(&space).await.unwrap(), 4);
        assert_eq!(read_seqs(store, &space).await, vec![1, 2, 3, 4]);
        for rejected in [10, 11, 12, 13, 14] {
            assert_eq!(store.seq_of(&space, &eid(rejected)).await.unwrap(), None);
        }
        // A rejected id is free to be stored later.
        assert_eq!(
            store.append(&space, vec![change(10, 1, 1)]).await.unwrap(),
            stored([5])
        );
    }

    pub(crate) async fn tombstone_drops_the_doc_and_refuses_later_pushes(store: &dyn Store) {
        let (_, space) = new_account(store, 1, 1).await;
        store
            .append(
                &space,
                vec![change(1, 1, 1), change(2, 1, 1), change(3, 2, 1)],
            )
            .await
            .unwrap();
        store
            .append(&space, vec![snapshot(4, 1, 1, &[1], 1)])
            .await
            .unwrap();
        assert_eq!(read_seqs(store, &space).await, vec![2, 3, 4]);
        let out = store
            .append(&space, vec![tombstone(5, 1, 1)])
            .await
            .unwrap();
        assert_eq!(out, stored([5]));
        // The doc's other envelopes are gone from the log; the other doc is untouched.
        let log = read_all(store, &space).await;
        assert_eq!(
            log,
            vec![
                (3, change(3, 2, 1).envelope),
                (5, tombstone(5, 1, 1).envelope)
            ]
        );
        assert_eq!(
            store.live_ids(&space, &doc(1)).await.unwrap(),
            vec![(5, eid(5))]
        );
        assert_eq!(
            store.live_ids(&space, &doc(2)).await.unwrap(),
            vec![(3, eid(3))]
        );
        // Ids of pruned and dropped envelopes still answer.
        for (n, seq) in [(1, 1), (2, 2), (4, 4), (5, 5)] {
            assert_eq!(store.seq_of(&space, &eid(n)).await.unwrap(), Some(seq));
        }
        // Later pushes to the doc, of any kind, are refused; retries are still duplicates.
        let out = store
            .append(
                &space,
                vec![
                    change(6, 1, 1),
                    snapshot(7, 1, 1, &[5], 5),
                    tombstone(8, 1, 1),
                    tombstone(5, 1, 1),
                    change(2, 1, 1),
                ],
            )
            .await
            .unwrap();
        assert_eq!(
            out,
            vec![
                AppendOutcome::DocDeleted,
                AppendOutcome::DocDeleted,
                AppendOutcome::DocDeleted,
                AppendOutcome::Duplicate { seq: 5 },
                AppendOutcome::Duplicate { seq: 2 },
            ]
        );
        // Within one batch: a tombstone closes its doc for the items after it.
        let out = store
            .append(
                &space,
                vec![change(9, 3, 1), tombstone(10, 3, 1), change(11, 3, 1)],
            )
            .await
            .unwrap();
        assert_eq!(
            out,
            vec![
                AppendOutcome::Stored { seq: 6 },
                AppendOutcome::Stored { seq: 7 },
                AppendOutcome::DocDeleted,
            ]
        );
        assert_eq!(
            store.live_ids(&space, &doc(3)).await.unwrap(),
            vec![(7, eid(10))]
        );
        assert_eq!(read_seqs(store, &space).await, vec![3, 5, 7]);
        assert_eq!(store.head(&space).await.unwrap(), 7);
    }

    pub(crate) async fn epochs_follow_account_updates_and_revocations(store: &dyn Store) {
        let (mut account, space) = new_account(store, 1, 1).await;
        assert_eq!(store.epoch(&space).await.unwrap(), 1);
        let out = store
            .append(
                &space,
                vec![change(1, 1, 0), change(2, 1, 2), change(3, 1, 1)],
            )
            .await
            .unwrap();
        assert_eq!(
            out,
            vec![
                AppendOutcome::EpochStale { current: 1 },
                AppendOutcome::EpochAhead { current: 1 },
                AppendOutcome::Stored { seq: 1 },
            ]
        );
        // A key rotation raises the space's epoch in the same write.
        account.key_bundle.key_epoch = 2;
        account.key_bundle.version = 2;
        let Cas::Done(updated) = store.update_account(0, account.clone()).await.unwrap() else {
            panic!("update must apply");
        };
        assert_eq!(store.epoch(&space).await.unwrap(), 2);
        let out = store
            .append(&space, vec![change(4, 1, 1), change(5, 1, 2)])
            .await
            .unwrap();
        assert_eq!(
            out,
            vec![
                AppendOutcome::EpochStale { current: 2 },
                AppendOutcome::Stored { seq: 2 }
            ]
        );
        // An update that does not raise the epoch leaves it; epochs never fall.
        let mut lower = updated.clone();
        lower.key_bundle.key_epoch = 1;
        let Cas::Done(lower) = store.update_account(1, lower).await.unwrap() else {
            panic!("update must apply");
        };
        assert_eq!(store.epoch(&space).await.unwrap(), 2);
        // A revocation raises it too.
        let mut rotated = lower.clone();
        rotated.key_bundle.key_epoch = 3;
        let revoked = store
            .revoke_device(2, rotated, &device_id(1, 0))
            .await
            .unwrap();
        assert!(matches!(revoked, Cas::Done(_)));
        assert_eq!(store.epoch(&space).await.unwrap(), 3);
        let out = store
            .append(&space, vec![change(6, 1, 2), change(7, 1, 3)])
            .await
            .unwrap();
        assert_eq!(
            out,
            vec![
                AppendOutcome::EpochStale { current: 3 },
                AppendOutcome::Stored { seq: 3 }
            ]
        );
        // A failed CAS changes nothing, epoch included.
        let mut stale = lower;
        stale.key_bundle.key_epoch = 9;
        assert_eq!(
            store.update_account(0, stale.clone()).await.unwrap(),
            Cas::Conflict
        );
        assert_eq!(
            store
                .revoke_device(0, stale, &device_id(1, 0))
                .await
                .unwrap(),
            Cas::Conflict
        );
        assert_eq!(store.epoch(&space).await.unwrap(), 3);
        // The public space is always at epoch 0.
        assert_eq!(store.epoch(&SpaceId::Public).await.unwrap(), 0);
    }

    pub(crate) async fn snapshot_ahead_of_the_head(store: &dyn Store) {
        let (_, space) = new_account(store, 1, 1).await;
        store
            .append(&space, vec![change(1, 1, 1), change(2, 1, 1)])
            .await
            .unwrap();
        let out = store
            .append(&space, vec![snapshot(3, 1, 1, &[1, 2], 3)])
            .await
            .unwrap();
        assert_eq!(out, vec![AppendOutcome::SnapshotAhead { head: 2 }]);
        // The head counts items stored earlier in the same batch.
        let out = store
            .append(
                &space,
                vec![change(4, 1, 1), snapshot(3, 1, 1, &[1, 2, 4], 3)],
            )
            .await
            .unwrap();
        assert_eq!(out, stored(3..=4));
        assert_eq!(read_seqs(store, &space).await, vec![4]);
    }

    pub(crate) async fn snapshot_stale_lists_exactly_the_missing_ids(store: &dyn Store) {
        let (_, space) = new_account(store, 1, 1).await;
        store
            .append(
                &space,
                vec![
                    change(1, 1, 1),
                    change(2, 1, 1),
                    change(3, 2, 1),
                    change(4, 1, 1),
                ],
            )
            .await
            .unwrap();
        // Missing ids come in seq order; other docs' envelopes are never "missing".
        let out = store
            .append(
                &space,
                vec![
                    snapshot(10, 1, 1, &[1], 4),
                    snapshot(11, 1, 1, &[1, 3], 2),
                    snapshot(12, 1, 1, &[4, 2, 99], 4),
                ],
            )
            .await
            .unwrap();
        assert_eq!(
            out,
            vec![
                AppendOutcome::SnapshotStale {
                    missing: vec![eid(2), eid(4)]
                },
                AppendOutcome::SnapshotStale {
                    missing: vec![eid(2)]
                },
                AppendOutcome::SnapshotStale {
                    missing: vec![eid(1)]
                },
            ]
        );
        // Stale snapshots prune nothing and take no seq.
        assert_eq!(read_seqs(store, &space).await, vec![1, 2, 3, 4]);
        assert_eq!(store.head(&space).await.unwrap(), 4);
        // Pruned envelopes are not live, so a later snapshot need not cover them.
        store
            .append(&space, vec![snapshot(13, 1, 1, &[1, 2], 2)])
            .await
            .unwrap();
        let out = store
            .append(&space, vec![snapshot(14, 1, 1, &[4], 4)])
            .await
            .unwrap();
        assert_eq!(out, stored([6]));
    }

    pub(crate) async fn snapshot_prunes_exactly_the_covered_live_entries(store: &dyn Store) {
        let (_, space) = new_account(store, 1, 1).await;
        store
            .append(
                &space,
                vec![
                    change(1, 1, 1),
                    change(2, 1, 1),
                    change(3, 1, 1),
                    change(4, 2, 1),
                    change(5, 1, 1),
                ],
            )
            .await
            .unwrap();
        // Covers also name an envelope above upto (5), another doc's (4) and an unknown id:
        // only doc 1's live envelopes with seq ≤ 3 go.
        let snap = snapshot(6, 1, 1, &[1, 2, 3, 4, 5, 77], 3);
        assert_eq!(
            store.append(&space, vec![snap.clone()]).await.unwrap(),
            stored([6])
        );
        let log = read_all(store, &space).await;
        assert_eq!(
            log,
            vec![
                (4, change(4, 2, 1).envelope),
                (5, change(5, 1, 1).envelope),
                (6, snap.envelope.clone()),
            ]
        );
        assert_eq!(
            store.live_ids(&space, &doc(1)).await.unwrap(),
            vec![(5, eid(5)), (6, eid(6))]
        );
        assert_eq!(
            store.live_ids(&space, &doc(2)).await.unwrap(),
            vec![(4, eid(4))]
        );
        for n in 1..=6u8 {
            assert_eq!(
                store.seq_of(&space, &eid(n)).await.unwrap(),
                Some(u64::from(n))
            );
        }
        // Retries: the snapshot and a pruned envelope are duplicates; other bytes conflict.
        let out = store
            .append(
                &space,
                vec![snap.clone(), change(1, 1, 1), change_v(2, 1, 1, 4)],
            )
            .await
            .unwrap();
        assert_eq!(
            out,
            vec![
                AppendOutcome::Duplicate { seq: 6 },
                AppendOutcome::Duplicate { seq: 1 },
                AppendOutcome::IdConflict,
            ]
        );
        // A snapshot of a snapshot: the new one replaces everything it covers.
        let out = store
            .append(&space, vec![snapshot(7, 1, 1, &[5, 6], 6)])
            .await
            .unwrap();
        assert_eq!(out, stored([7]));
        assert_eq!(
            store.live_ids(&space, &doc(1)).await.unwrap(),
            vec![(7, eid(7))]
        );
        assert_eq!(read_seqs(store, &space).await, vec![4, 7]);
        assert_eq!(store.head(&space).await.unwrap(), 7);
    }

    pub(crate) async fn snapshot_sees_earlier_items_of_its_batch(store: &dyn Store) {
        let (_, space) = new_account(store, 1, 1).await;
        let out = store
            .append(
                &space,
                vec![
                    change(1, 1, 1),
                    change(2, 1, 1),
                    snapshot(3, 1, 1, &[1], 2),
                    snapshot(3, 1, 1, &[1, 2], 2),
                    change(4, 1, 1),
                    snapshot(5, 1, 1, &[3, 4], 4),
                    change(5, 1, 1),
                ],
            )
            .await
            .unwrap();
        assert_eq!(
            out,
            vec![
                AppendOutcome::Stored { seq: 1 },
                AppendOutcome::Stored { seq: 2 },
                AppendOutcome::SnapshotStale {
                    missing: vec![eid(2)]
                },
                AppendOutcome::Stored { seq: 3 },
                AppendOutcome::Stored { seq: 4 },
                AppendOutcome::Stored { seq: 5 },
                AppendOutcome::IdConflict,
            ]
        );
        // Envelopes stored and pruned within the batch never show up.
        assert_eq!(read_seqs(store, &space).await, vec![5]);
        assert_eq!(
            store.live_ids(&space, &doc(1)).await.unwrap(),
            vec![(5, eid(5))]
        );
        for n in 1..=5u8 {
            assert_eq!(
                store.seq_of(&space, &eid(n)).await.unwrap(),
                Some(u64::from(n))
            );
        }
    }

    pub(crate) async fn read_respects_bounds_limit_and_order(store: &dyn Store) {
        let (_, space) = new_account(store, 1, 1).await;
        let items: Vec<_> = (1..=10u8).map(|n| change(n, n % 2, 1)).collect();
        store.append(&space, items).await.unwrap();
        let seqs =
            |page: Vec<(u64, Envelope)>| page.into_iter().map(|(s, _)| s).collect::<Vec<_>>();
        assert_eq!(
            seqs(store.read(&space, 0, 10, 100).await.unwrap()),
            (1..=10).collect::<Vec<_>>()
        );
        assert_eq!(
            seqs(store.read(&space, 3, 7, 100).await.unwrap()),
            vec![4, 5, 6, 7]
        );
        assert_eq!(seqs(store.read(&space, 3, 7, 2).await.unwrap()), vec![4, 5]);
        assert_eq!(
            seqs(store.read(&space, 0, 100, 3).await.unwrap()),
            vec![1, 2, 3]
        );
        assert!(store.read(&space, 10, 10, 100).await.unwrap().is_empty());
        assert!(store.read(&space, 0, 0, 100).await.unwrap().is_empty());
        assert!(store.read(&space, 7, 3, 100).await.unwrap().is_empty());
        assert!(store.read(&space, 0, 10, 0).await.unwrap().is_empty());
        assert!(
            store
                .read(&space, u64::MAX, u64::MAX, 100)
                .await
                .unwrap()
                .is_empty()
        );
        // Pruned seqs leave holes that pages skip; the limit counts live envelopes.
        store
            .append(&space, vec![snapshot(11, 1, 1, &[1, 3, 5], 6)])
            .await
            .unwrap();
        assert_eq!(
            seqs(store.read(&space, 0, 11, 3).await.unwrap()),
            vec![2, 4, 6]
        );
        assert_eq!(
            seqs(store.read(&space, 6, 11, 100).await.unwrap()),
            vec![7, 8, 9, 10, 11]
        );
        // Pages are the stored envelopes, in order.
        let page = store.read(&space, 1, 2, 10).await.unwrap();
        assert_eq!(page, vec![(2, change(2, 0, 1).envelope)]);
        // Another space's log is separate.
        let (_, other) = new_account(store, 2, 1).await;
        assert!(read_all(store, &other).await.is_empty());
    }

    pub(crate) async fn public_space_and_unknown_spaces(store: &dyn Store) {
        let public = SpaceId::Public;
        assert!(store.space_exists(&public).await.unwrap());
        assert_eq!(store.head(&public).await.unwrap(), 0);
        assert_eq!(store.epoch(&public).await.unwrap(), 0);
        assert!(store.storage_key(&public).await.unwrap().is_none());
        let mut signed = envelope(Kind::Change, 1, 1, 0, 0);
        signed.sig = Some(Bytes([3; 64]));
        let out = store
            .append(&public, vec![item(signed.clone()), change(2, 1, 1)])
            .await
            .unwrap();
        assert_eq!(
            out,
            vec![
                AppendOutcome::Stored { seq: 1 },
                AppendOutcome::EpochAhead { current: 0 }
            ]
        );
        assert_eq!(store.head(&public).await.unwrap(), 1);
        assert_eq!(read_all(store, &public).await, vec![(1, signed)]);

        let unknown = space_of(42);
        assert!(!store.space_exists(&unknown).await.unwrap());
        assert_eq!(store.head(&unknown).await.unwrap(), 0);
        assert_eq!(store.epoch(&unknown).await.unwrap(), 0);
        assert!(store.storage_key(&unknown).await.unwrap().is_none());
        assert!(read_all(store, &unknown).await.is_empty());
        assert_eq!(store.seq_of(&unknown, &eid(1)).await.unwrap(), None);
        assert!(store.live_ids(&unknown, &doc(1)).await.unwrap().is_empty());
        // Appending to a space that does not exist writes nothing.
        assert!(store.append(&unknown, vec![change(1, 1, 0)]).await.is_err());
        assert!(!store.space_exists(&unknown).await.unwrap());
        assert_eq!(store.head(&unknown).await.unwrap(), 0);
    }

    pub(crate) async fn accounts_create_lookup_and_cas(store: &dyn Store) {
        let (account, space) = new_account(store, 1, 4).await;
        assert_eq!(
            store.account(&account.user_id).await.unwrap(),
            Some(account.clone())
        );
        assert_eq!(
            store
                .account_by_username(&account.username_key)
                .await
                .unwrap(),
            Some(account.clone())
        );
        assert_eq!(store.account_by_username(&[9; 32]).await.unwrap(), None);
        assert_eq!(store.account(&user_id(9)).await.unwrap(), None);
        assert!(store.space_exists(&space).await.unwrap());
        assert_eq!(store.epoch(&space).await.unwrap(), 4);
        assert_eq!(store.head(&space).await.unwrap(), 0);
        assert_eq!(store.storage_key(&space).await.unwrap(), stored_key(1));
        assert_eq!(
            store.devices(&account.user_id).await.unwrap(),
            vec![device_record(1, 0)]
        );
        assert_eq!(
            store
                .device(&account.user_id, &device_id(1, 0))
                .await
                .unwrap(),
            Some(device_record(1, 0))
        );
        assert!(!store.is_erased(&account.user_id).await.unwrap());

        // The username key is unique: another account with it is refused, and nothing of it
        // is written.
        let mut clash = account_record(2, 1);
        clash.username_key = account.username_key;
        let out = store
            .create_account(clash, device_record(2, 0), storage_key(2))
            .await
            .unwrap();
        assert_eq!(out, Cas::Conflict);
        assert_eq!(store.account(&user_id(2)).await.unwrap(), None);
        assert!(!store.space_exists(&space_of(2)).await.unwrap());
        assert!(store.devices(&user_id(2)).await.unwrap().is_empty());
        // The same account twice is refused too.
        let again = store
            .create_account(account.clone(), device_record(1, 0), storage_key(1))
            .await
            .unwrap();
        assert_eq!(again, Cas::Conflict);

        // CAS on revision: the stored copy gets expected + 1.
        let mut changed = account.clone();
        changed.auth_hash = "new hash".into();
        changed.auth_version = 1;
        changed.revision = 77; // ignored: the store sets it
        let Cas::Done(stored) = store.update_account(0, changed.clone()).await.unwrap() else {
            panic!("update must apply");
        };
        assert_eq!(stored.revision, 1);
        assert_eq!(stored.auth_hash, "new hash");
        assert_eq!(
            store.account(&account.user_id).await.unwrap(),
            Some(stored.clone())
        );
        assert_eq!(
            store.update_account(0, changed.clone()).await.unwrap(),
            Cas::Conflict
        );
        assert_eq!(
            store.update_account(5, changed.clone()).await.unwrap(),
            Cas::Conflict
        );
        assert_eq!(
            store.account(&account.user_id).await.unwrap(),
            Some(stored.clone())
        );
        let Cas::Done(next) = store.update_account(1, stored.clone()).await.unwrap() else {
            panic!("update must apply");
        };
        assert_eq!(next.revision, 2);
        // A new username key moves the index, unless another account holds it.
        new_account(store, 2, 1).await;
        let mut renamed = next.clone();
        renamed.username_key = [2; 32];
        assert_eq!(
            store.update_account(2, renamed.clone()).await.unwrap(),
            Cas::Conflict
        );
        renamed.username_key = [0x33; 32];
        let Cas::Done(renamed) = store.update_account(2, renamed).await.unwrap() else {
            panic!("update must apply");
        };
        assert_eq!(
            store.account_by_username(&[0x33; 32]).await.unwrap(),
            Some(renamed)
        );
        assert_eq!(
            store
                .account_by_username(&account.username_key)
                .await
                .unwrap(),
            None
        );
        // The space cannot be moved to another account record.
        let mut moved = store.account(&account.user_id).await.unwrap().unwrap();
        moved.space_id = space_id(9);
        assert_eq!(store.update_account(3, moved).await.unwrap(), Cas::Conflict);
        // An unknown account is a conflict, not a creation.
        assert_eq!(
            store.update_account(0, account_record(3, 1)).await.unwrap(),
            Cas::Conflict
        );
        assert_eq!(store.account(&user_id(3)).await.unwrap(), None);

        // put_device inserts and replaces.
        let mut second = device_record(1, 1);
        store.put_device(second.clone()).await.unwrap();
        second.last_seen_day = "2025-02-02".into();
        store.put_device(second.clone()).await.unwrap();
        let devices = store.devices(&account.user_id).await.unwrap();
        assert_eq!(devices.len(), 2);
        assert!(devices.contains(&second));
        // Another account's devices are separate.
        assert_eq!(
            store.devices(&user_id(2)).await.unwrap(),
            vec![device_record(2, 0)]
        );
        assert_eq!(store.devices(&account.user_id).await.unwrap().len(), 2);

        // A revocation is never undone by a later put.
        let mut revoked = second.clone();
        revoked.revoked = true;
        store.put_device(revoked.clone()).await.unwrap();
        store.put_device(second.clone()).await.unwrap();
        let stored = store
            .device(&account.user_id, &second.device_id)
            .await
            .unwrap()
            .unwrap();
        assert!(stored.revoked, "put_device must not un-revoke a device");
    }

    pub(crate) async fn revoke_device_revokes_exactly_that_devices_sessions(store: &dyn Store) {
        let (account, _) = new_account(store, 1, 1).await;
        new_account(store, 2, 1).await;
        store.put_device(device_record(1, 1)).await.unwrap();
        for session in [
            session_record(1, 1, 0),
            session_record(2, 1, 0),
            session_record(3, 1, 1),
            session_record(4, 2, 0),
        ] {
            store.create_session(session).await.unwrap();
        }
        let mut already = session_record(5, 1, 0);
        already.revoked = true;
        store.create_session(already).await.unwrap();

        let mut rotated = account.clone();
        rotated.auth_version = 1;
        let out = store
            .revoke_device(0, rotated, &device_id(1, 0))
            .await
            .unwrap();
        let Cas::Done(revoked) = out else {
            panic!("revocation must apply");
        };
        assert_eq!(sorted(revoked), vec![session_id(1), session_id(2)]);
        for (n, revoked) in [(1, true), (2, true), (3, false), (4, false), (5, true)] {
            let session = store.session(&session_id(n)).await.unwrap().unwrap();
            assert_eq!(session.revoked, revoked, "session {n}");
        }
        assert!(
            store
                .device(&user_id(1), &device_id(1, 0))
                .await
                .unwrap()
                .unwrap()
                .revoked
        );
        assert!(
            !store
                .device(&user_id(1), &device_id(1, 1))
                .await
                .unwrap()
                .unwrap()
                .revoked
        );
        assert!(
            !store
                .device(&user_id(2), &device_id(2, 0))
                .await
                .unwrap()
                .unwrap()
                .revoked
        );
        let stored = store.account(&user_id(1)).await.unwrap().unwrap();
        assert_eq!((stored.revision, stored.auth_version), (1, 1));

        // A stale revision changes nothing at all.
        let out = store
            .revoke_device(0, account, &device_id(1, 1))
            .await
            .unwrap();
        assert_eq!(out, Cas::Conflict);
        assert!(
            !store
                .session(&session_id(3))
                .await
                .unwrap()
                .unwrap()
                .revoked
        );
        assert!(
            !store
                .device(&user_id(1), &device_id(1, 1))
                .await
                .unwrap()
                .unwrap()
                .revoked
        );
        assert_eq!(
            store.account(&user_id(1)).await.unwrap().unwrap().revision,
            1
        );
    }

    pub(crate) async fn an_erasure_keeps_the_wipe_token_it_was_given(store: &dyn Store) {
        let (with_token, _) = new_account(store, 1, 1).await;
        let (without, _) = new_account(store, 2, 1).await;
        assert_eq!(
            store.erased_wipe_token(&with_token.user_id).await.unwrap(),
            None
        );
        store
            .erase_account(&with_token.user_id, Some([7; 32]))
            .await
            .unwrap();
        store.erase_account(&without.user_id, None).await.unwrap();
        assert_eq!(
            store.erased_wipe_token(&with_token.user_id).await.unwrap(),
            Some([7; 32])
        );
        assert_eq!(
            store.erased_wipe_token(&without.user_id).await.unwrap(),
            None
        );
        assert_eq!(store.erased_wipe_token(&user_id(9)).await.unwrap(), None);
        // Erasing again (a retried request) keeps the first token.
        store
            .erase_account(&with_token.user_id, Some([8; 32]))
            .await
            .unwrap();
        assert_eq!(
            store.erased_wipe_token(&with_token.user_id).await.unwrap(),
            Some([7; 32])
        );
    }

    pub(crate) async fn erase_account_removes_everything(store: &dyn Store) {
        let (account, space) = new_account(store, 1, 1).await;
        let (other, other_space) = new_account(store, 2, 1).await;
        for (target, n) in [(&space, 1u8), (&other_space, 2)] {
            store
                .append(
                    target,
                    vec![change(1, n, 1), change(2, n, 1), snapshot(3, n, 1, &[1], 1)],
                )
                .await
                .unwrap();
        }
        store.put_device(device_record(1, 1)).await.unwrap();
        store.create_session(session_record(1, 1, 0)).await.unwrap();
        store.create_session(session_record(2, 1, 1)).await.unwrap();
        store.create_session(session_record(3, 2, 0)).await.unwrap();
        let token = OneTimeToken {
            user_id: user_id(1),
            expires_at: 10_000,
        };
        let other_token = OneTimeToken {
            user_id: user_id(2),
            expires_at: 10_000,
        };
        store.put_token(&[1; 32], token).await.unwrap();
        store
            .put_token(&[2; 32], other_token.clone())
            .await
            .unwrap();

        store.erase_account(&account.user_id, None).await.unwrap();

        assert!(store.is_erased(&account.user_id).await.unwrap());
        assert_eq!(store.account(&account.user_id).await.unwrap(), None);
        assert_eq!(
            store
                .account_by_username(&account.username_key)
                .await
                .unwrap(),
            None
        );
        assert!(store.devices(&account.user_id).await.unwrap().is_empty());
        assert_eq!(
            store
                .device(&account.user_id, &device_id(1, 0))
                .await
                .unwrap(),
            None
        );
        assert_eq!(store.session(&session_id(1)).await.unwrap(), None);
        assert_eq!(store.session(&session_id(2)).await.unwrap(), None);
        assert!(
            store
                .revoke_sessions_of_user(&account.user_id, None)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(store.take_token(&[1; 32]).await.unwrap(), None);
        assert!(!store.space_exists(&space).await.unwrap());
        assert!(store.storage_key(&space).await.unwrap().is_none());
        assert_eq!(store.head(&space).await.unwrap(), 0);
        assert!(read_all(store, &space).await.is_empty());
        assert_eq!(store.seq_of(&space, &eid(1)).await.unwrap(), None);
        assert!(store.live_ids(&space, &doc(1)).await.unwrap().is_empty());
        // Nothing comes back through a late write of the erased account.
        assert!(store.append(&space, vec![change(9, 1, 1)]).await.is_err());
        assert!(store.put_device(device_record(1, 2)).await.is_err());
        assert!(store.create_session(session_record(6, 1, 0)).await.is_err());
        assert!(store.devices(&account.user_id).await.unwrap().is_empty());
        assert_eq!(store.head(&space).await.unwrap(), 0);
        assert_eq!(
            store.update_account(0, account.clone()).await.unwrap(),
            Cas::Conflict
        );
        // Erasure is idempotent.
        store.erase_account(&account.user_id, None).await.unwrap();
        assert!(store.is_erased(&account.user_id).await.unwrap());

        // The other account is untouched.
        assert!(!store.is_erased(&other.user_id).await.unwrap());
        assert_eq!(
            store.account(&other.user_id).await.unwrap(),
            Some(other.clone())
        );
        assert_eq!(read_seqs(store, &other_space).await, vec![2, 3]);
        assert_eq!(store.seq_of(&other_space, &eid(1)).await.unwrap(), Some(1));
        assert!(store.storage_key(&other_space).await.unwrap().is_some());
        assert!(store.session(&session_id(3)).await.unwrap().is_some());
        assert_eq!(store.take_token(&[2; 32]).await.unwrap(), Some(other_token));

        // The username is free again, for a new account.
        let mut fresh = account_record(3, 1);
        fresh.username_key = account.username_key;
        let out = store
            .create_account(fresh.clone(), device_record(3, 0), storage_key(3))
            .await
            .unwrap();
        assert_eq!(out, Cas::Done(()));
        assert_eq!(
            store
                .account_by_username(&account.username_key)
                .await
                .unwrap(),
            Some(fresh)
        );
    }

    pub(crate) async fn sessions_cas_on_generation(store: &dyn Store) {
        new_account(store, 1, 1).await;
        let session = session_record(1, 1, 0);
        store.create_session(session.clone()).await.unwrap();
        assert_eq!(
            store.session(&session_id(1)).await.unwrap(),
            Some(session.clone())
        );
        assert_eq!(store.session(&session_id(9)).await.unwrap(), None);

        let mut rotated = session.clone();
        rotated.generation = 1;
        rotated.previous_hash = Some(rotated.current_hash);
        rotated.current_hash = [0xaa; 32];
        assert_eq!(
            store.update_session(0, rotated.clone()).await.unwrap(),
            Cas::Done(())
        );
        assert_eq!(
            store.session(&session_id(1)).await.unwrap(),
            Some(rotated.clone())
        );
        // The old generation lost the race.
        let mut racing = rotated.clone();
        racing.current_hash = [0xbb; 32];
        assert_eq!(
            store.update_session(0, racing.clone()).await.unwrap(),
            Cas::Conflict
        );
        assert_eq!(
            store.session(&session_id(1)).await.unwrap(),
            Some(rotated.clone())
        );
        // Unknown sessions and revoked ones never update.
        let unknown = session_record(7, 1, 0);
        assert_eq!(
            store.update_session(0, unknown).await.unwrap(),
            Cas::Conflict
        );
        assert_eq!(store.session(&session_id(7)).await.unwrap(), None);
        store.revoke_session(&session_id(1)).await.unwrap();
        store.revoke_session(&session_id(1)).await.unwrap();
        store.revoke_session(&session_id(9)).await.unwrap();
        let revoked = store.session(&session_id(1)).await.unwrap().unwrap();
        assert!(revoked.revoked);
        assert_eq!(revoked.generation, 1);
        let mut after = revoked.clone();
        after.revoked = false;
        assert_eq!(store.update_session(1, after).await.unwrap(), Cas::Conflict);
        assert!(
            store
                .session(&session_id(1))
                .await
                .unwrap()
                .unwrap()
                .revoked
        );
    }

    pub(crate) async fn revoke_sessions_of_user_keeps_one(store: &dyn Store) {
        new_account(store, 1, 1).await;
        new_account(store, 2, 1).await;
        for session in [
            session_record(1, 1, 0),
            session_record(2, 1, 0),
            session_record(3, 1, 1),
            session_record(4, 2, 0),
        ] {
            store.create_session(session).await.unwrap();
        }
        let revoked = store
            .revoke_sessions_of_user(&user_id(1), Some(&session_id(2)))
            .await
            .unwrap();
        assert_eq!(sorted(revoked), vec![session_id(1), session_id(3)]);
        for (n, revoked) in [(1, true), (2, false), (3, true), (4, false)] {
            let session = store.session(&session_id(n)).await.unwrap().unwrap();
            assert_eq!(session.revoked, revoked, "session {n}");
        }
        // Sessions already revoked are not reported twice.
        let again = store
            .revoke_sessions_of_user(&user_id(1), None)
            .await
            .unwrap();
        assert_eq!(again, vec![session_id(2)]);
        assert!(
            store
                .revoke_sessions_of_user(&user_id(1), None)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            !store
                .session(&session_id(4))
                .await
                .unwrap()
                .unwrap()
                .revoked
        );
        // A session id taken over by another user is no longer the first user's to revoke.
        store
            .create_session(session_record(10, 3, 0))
            .await
            .unwrap();
        store
            .create_session(session_record(10, 2, 0))
            .await
            .unwrap();
        assert!(
            store
                .revoke_sessions_of_user(&user_id(3), None)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            !store
                .session(&session_id(10))
                .await
                .unwrap()
                .unwrap()
                .revoked
        );
        assert!(
            store
                .revoke_sessions_of_user(&user_id(9), None)
                .await
                .unwrap()
                .is_empty()
        );
    }

    pub(crate) async fn tokens_are_single_use(store: &dyn Store) {
        let token = OneTimeToken {
            user_id: user_id(1),
            expires_at: 5,
        };
        store.put_token(&[1; 32], token.clone()).await.unwrap();
        assert_eq!(store.take_token(&[2; 32]).await.unwrap(), None);
        // Expiry is the caller's check: an expired token is still handed over, once.
        assert_eq!(store.take_token(&[1; 32]).await.unwrap(), Some(token));
        assert_eq!(store.take_token(&[1; 32]).await.unwrap(), None);
    }

    pub(crate) async fn links_take_a_payload_once(store: &dyn Store) {
        let id = HexId([3; 16]);
        let link = LinkRecord {
            id,
            expires_at: 600,
            payload: None,
        };
        store.create_link(link.clone()).await.unwrap();
        // An empty mailbox is not taken, and stays.
        assert_eq!(store.take_link(&id).await.unwrap(), None);
        assert_eq!(
            store
                .put_link_payload(&id, b"wrapped".to_vec())
                .await
                .unwrap(),
            Cas::Done(())
        );
        assert_eq!(
            store
                .put_link_payload(&id, b"other".to_vec())
                .await
                .unwrap(),
            Cas::Conflict
        );
        let unknown = HexId([4; 16]);
        assert_eq!(
            store
                .put_link_payload(&unknown, b"x".to_vec())
                .await
                .unwrap(),
            Cas::Conflict
        );
        assert_eq!(store.take_link(&unknown).await.unwrap(), None);
        let taken = store.take_link(&id).await.unwrap().unwrap();
        assert_eq!(taken.payload.as_deref(), Some(&b"wrapped"[..]));
        assert_eq!((taken.id, taken.expires_at), (id, 600));
        assert_eq!(store.take_link(&id).await.unwrap(), None);
        assert_eq!(
            store.put_link_payload(&id, b"late".to_vec()).await.unwrap(),
            Cas::Conflict
        );
    }

    pub(crate) async fn purge_expired_removes_only_expired(store: &dyn Store) {
        for (n, expires_at) in [(1u8, 100), (2, 200)] {
            let link = LinkRecord {
                id: HexId([n; 16]),
                expires_at,
                payload: None,
            };
            store.create_link(link).await.unwrap();
        }
        for (n, expires_at) in [(1u8, 100), (2, 300)] {
            let token = OneTimeToken {
                user_id: user_id(1),
                expires_at,
            };
            store.put_token(&[n; 32], token).await.unwrap();
        }
        // Rate windows that ended are dropped too, but only mailboxes and tokens are counted.
        assert_eq!(
            store.rate_limit_hit(b"ip", 0, 60, 5).await.unwrap(),
            RateDecision::Allowed
        );
        assert_eq!(store.purge_expired(99).await.unwrap(), 0);
        assert_eq!(store.purge_expired(100).await.unwrap(), 2);
        assert_eq!(store.purge_expired(100).await.unwrap(), 0);
        let gone = HexId([1; 16]);
        assert_eq!(
            store.put_link_payload(&gone, vec![1]).await.unwrap(),
            Cas::Conflict
        );
        assert_eq!(store.take_token(&[1; 32]).await.unwrap(), None);
        let kept = HexId([2; 16]);
        assert_eq!(
            store.put_link_payload(&kept, vec![1]).await.unwrap(),
            Cas::Done(())
        );
        assert!(store.take_token(&[2; 32]).await.unwrap().is_some());
        assert_eq!(store.purge_expired(10_000).await.unwrap(), 1);
        assert_eq!(store.take_link(&kept).await.unwrap(), None);
    }

    pub(crate) async fn rate_limit_counts_in_fixed_windows(store: &dyn Store) {
        let hit = |key: &'static [u8], now| store.rate_limit_hit(key, now, 60, 3);
        for now in [120, 130, 140] {
            assert_eq!(hit(b"a", now).await.unwrap(), RateDecision::Allowed);
        }
        assert_eq!(
            hit(b"a", 150).await.unwrap(),
            RateDecision::Limited { retry_after: 30 }
        );
        assert_eq!(
            hit(b"a", 179).await.unwrap(),
            RateDecision::Limited { retry_after: 1 }
        );
        // Another key has its own count.
        assert_eq!(hit(b"b", 150).await.unwrap(), RateDecision::Allowed);
        // The next window starts afresh.
        for now in [180, 181, 239] {
            assert_eq!(hit(b"a", now).await.unwrap(), RateDecision::Allowed);
        }
        assert_eq!(
            hit(b"a", 239).await.unwrap(),
            RateDecision::Limited { retry_after: 1 }
        );
        assert_eq!(hit(b"a", 240).await.unwrap(), RateDecision::Allowed);
        // A purge drops ended windows without changing what a hit decides.
        store.purge_expired(10_000).await.unwrap();
        assert_eq!(hit(b"a", 241).await.unwrap(), RateDecision::Allowed);
        // A limit of zero refuses everything; a zero window does not divide by zero.
        assert!(matches!(
            store.rate_limit_hit(b"c", 5, 60, 0).await.unwrap(),
            RateDecision::Limited { retry_after: 55 }
        ));
        assert_eq!(
            store.rate_limit_hit(b"d", 5, 0, 1).await.unwrap(),
            RateDecision::Allowed
        );
    }

    pub(crate) async fn secret_or_init_keeps_the_first_value(store: &dyn Store) {
        let first = store
            .secret_or_init("fake-salt", Zeroizing::new(vec![1; 32]))
            .await
            .unwrap();
        assert_eq!(*first, vec![1; 32]);
        let second = store
            .secret_or_init("fake-salt", Zeroizing::new(vec![2; 32]))
            .await
            .unwrap();
        assert_eq!(*second, vec![1; 32]);
        let other = store
            .secret_or_init("storage-seal", Zeroizing::new(vec![3; 32]))
            .await
            .unwrap();
        assert_eq!(*other, vec![3; 32]);
    }

    pub(crate) async fn jwt_keys_keep_one_active(store: &dyn Store) {
        assert!(store.jwt_keys().await.unwrap().is_empty());
        let key = |kid: &str, state| JwtKeyRecord {
            kid: kid.into(),
            secret: Zeroizing::new([kid.len() as u8; 32]),
            created_at: 1,
            state,
        };
        let states = |keys: Vec<JwtKeyRecord>| {
            sorted(
                keys.into_iter()
                    .map(|k| (k.kid, format!("{:?}", k.state)))
                    .collect(),
            )
        };
        store
            .put_jwt_key(key("a", JwtKeyState::Active))
            .await
            .unwrap();
        store
            .put_jwt_key(key("bb", JwtKeyState::Active))
            .await
            .unwrap();
        assert_eq!(
            states(store.jwt_keys().await.unwrap()),
            vec![
                ("a".into(), "VerifyOnly".into()),
                ("bb".into(), "Active".into())
            ]
        );
        // Non-active keys demote nothing; replacing a key keeps its kid unique.
        store
            .put_jwt_key(key("ccc", JwtKeyState::VerifyOnly))
            .await
            .unwrap();
        store
            .put_jwt_key(key("a", JwtKeyState::Retired))
            .await
            .unwrap();
        store
            .put_jwt_key(key("bb", JwtKeyState::Active))
            .await
            .unwrap();
        assert_eq!(
            states(store.jwt_keys().await.unwrap()),
            vec![
                ("a".into(), "Retired".into()),
                ("bb".into(), "Active".into()),
                ("ccc".into(), "VerifyOnly".into()),
            ]
        );
        let keys = store.jwt_keys().await.unwrap();
        let bb = keys.iter().find(|k| k.kid == "bb").unwrap();
        assert_eq!(*bb.secret, [2; 32]);
    }

    /// Bad bytes under a key are refused as `Corrupt`, never served and never a panic. Plants
    /// them through the engine, so this case is for [`KvStore`] backends.
    pub(crate) async fn corrupt_records_are_refused<E: KvEngine>(kv: &KvStore<E>) {
        use super::super::StoreError;
        use super::super::kv::{KvBatch, keys};
        let store: &dyn Store = kv;
        let (account, space) = new_account(store, 1, 1).await;
        store
            .append(&space, vec![change(1, 1, 1), change(2, 1, 1)])
            .await
            .unwrap();
        let plant = |key: Vec<u8>, value: &[u8]| {
            let mut batch = KvBatch::new();
            batch.put(key, value.to_vec());
            kv.engine().apply(batch).unwrap();
        };
        let corrupt = |result: Result<(), StoreError>| {
            assert!(matches!(result, Err(StoreError::Corrupt(_))), "{result:?}");
        };
        plant(keys::envelope(&space, 2), b"\x01garbage");
        corrupt(store.read(&space, 0, 10, 10).await.map(drop));
        // The intact part of the log is still served.
        assert_eq!(store.read(&space, 0, 1, 10).await.unwrap().len(), 1);
        plant(keys::id(&space, &eid(1)), b"short");
        corrupt(store.seq_of(&space, &eid(1)).await.map(drop));
        corrupt(store.append(&space, vec![change(1, 1, 1)]).await.map(drop));
        plant(keys::head(&space), b"\x00");
        corrupt(store.head(&space).await.map(drop));
        corrupt(store.append(&space, vec![change(3, 1, 1)]).await.map(drop));
        plant(keys::epoch(&space), b"\x00\x00\x00\x00\x00");
        corrupt(store.epoch(&space).await.map(drop));
        plant(keys::live(&space, &doc(1), 1), b"not an id");
        corrupt(store.live_ids(&space, &doc(1)).await.map(drop));
        plant(keys::account(&account.user_id), b"{\"user_id\":");
        corrupt(store.account(&account.user_id).await.map(drop));
        corrupt(
            store
                .account_by_username(&account.username_key)
                .await
                .map(drop),
        );
        plant(keys::storage_key(&space), &[1; 31]);
        corrupt(store.storage_key(&space).await.map(drop));
        plant(keys::device(&account.user_id, &device_id(1, 0)), b"[]");
        corrupt(store.devices(&account.user_id).await.map(drop));
        plant(keys::session(&session_id(1)), b"{}");
        corrupt(store.session(&session_id(1)).await.map(drop));
        plant(keys::jwt("k"), b"null");
        corrupt(store.jwt_keys().await.map(drop));
        // Sweeps skip unreadable records instead of failing or deleting them.
        plant(keys::token(&[5; 32]), b"{");
        plant(keys::link(&HexId([5; 16])), b"{");
        assert_eq!(store.purge_expired(u64::MAX).await.unwrap(), 0);
    }

    /// Every private space's key, in pages ascending by space name, and compare-and-swap
    /// replacement (what a master-key rotation relies on).
    pub(crate) async fn storage_keys_list_in_pages_and_replace_by_cas(store: &dyn Store) {
        assert!(store.storage_keys(None, 10).await.unwrap().is_empty());
        for n in [4u8, 1, 3, 2, 5] {
            new_account(store, n, 1).await;
        }
        let all = store.storage_keys(None, 100).await.unwrap();
        let expected: Vec<_> = (1..=5u8)
            .map(|n| (space_of(n), StoredKey::Wrapped(storage_key(n))))
            .collect();
        assert_eq!(all, expected);
        // Names ascend (the order pages follow on every backend).
        let names: Vec<String> = all.iter().map(|(space, _)| space.name()).collect();
        assert_eq!(names, sorted(names.clone()));
        // Pages continue after the last space seen.
        let first = store.storage_keys(None, 2).await.unwrap();
        assert_eq!(first, expected[..2]);
        let second = store.storage_keys(Some(&first[1].0), 2).await.unwrap();
        assert_eq!(second, expected[2..4]);
        let last = store.storage_keys(Some(&second[1].0), 2).await.unwrap();
        assert_eq!(last, expected[4..]);
        assert!(
            store
                .storage_keys(Some(&last[0].0), 2)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(store.storage_keys(None, 0).await.unwrap().is_empty());

        // Replacement only from the expected value.
        let space = space_of(2);
        let new = WrappedKey {
            generation: 9,
            sealed: [0x99; WRAPPED_KEY_LEN],
        };
        let stale = StoredKey::Wrapped(storage_key(3));
        assert_eq!(
            store
                .replace_storage_key(&space, &stale, new.clone())
                .await
                .unwrap(),
            Cas::Conflict
        );
        assert_eq!(store.storage_key(&space).await.unwrap(), stored_key(2));
        // Same sealed bytes under another generation number is another value.
        let relabelled = StoredKey::Wrapped(WrappedKey {
            generation: 77,
            ..storage_key(2)
        });
        assert_eq!(
            store
                .replace_storage_key(&space, &relabelled, new.clone())
                .await
                .unwrap(),
            Cas::Conflict
        );
        let current = StoredKey::Wrapped(storage_key(2));
        assert_eq!(
            store
                .replace_storage_key(&space, &current, new.clone())
                .await
                .unwrap(),
            Cas::Done(())
        );
        assert_eq!(
            store.storage_key(&space).await.unwrap(),
            Some(StoredKey::Wrapped(new.clone()))
        );
        // The old value cannot be swapped in twice.
        assert_eq!(
            store
                .replace_storage_key(&space, &current, storage_key(2))
                .await
                .unwrap(),
            Cas::Conflict
        );
        // Nothing else moved.
        assert_eq!(
            store.storage_key(&space_of(1)).await.unwrap(),
            stored_key(1)
        );
        assert_eq!(
            store.account(&user_id(2)).await.unwrap(),
            Some(account_record(2, 1))
        );

        // An erased account's key is gone: not listed, not replaceable, not recreated.
        store.erase_account(&user_id(3), None).await.unwrap();
        let listed: Vec<SpaceId> = store
            .storage_keys(None, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|(space, _)| space)
            .collect();
        assert_eq!(
            listed,
            vec![space_of(1), space_of(2), space_of(4), space_of(5)]
        );
        assert_eq!(
            store
                .replace_storage_key(&space_of(3), &stale, new.clone())
                .await
                .unwrap(),
            Cas::Conflict
        );
        assert_eq!(store.storage_key(&space_of(3)).await.unwrap(), None);
        assert!(!store.space_exists(&space_of(3)).await.unwrap());
        // `public` and unknown spaces have no key to replace.
        for space in [SpaceId::Public, space_of(42)] {
            assert_eq!(
                store
                    .replace_storage_key(&space, &current, new.clone())
                    .await
                    .unwrap(),
                Cas::Conflict
            );
            assert_eq!(store.storage_key(&space).await.unwrap(), None);
        }
    }

    /// A raw 32-byte key written before master keys existed is read as legacy, listed, and
    /// replaced by a wrapped one.
    pub(crate) async fn legacy_raw_keys_are_read_and_replaced<E: KvEngine>(kv: &KvStore<E>) {
        use super::super::kv::{KvBatch, keys};
        let store: &dyn Store = kv;
        let (_, space) = new_account(store, 1, 1).await;
        new_account(store, 2, 1).await;
        let mut batch = KvBatch::new();
        batch.put(keys::storage_key(&space), vec![0x42; 32]);
        kv.engine().apply(batch).unwrap();
        let legacy = StoredKey::Legacy(Zeroizing::new([0x42; 32]));
        assert_eq!(
            store.storage_key(&space).await.unwrap(),
            Some(legacy.clone())
        );
        assert_eq!(legacy.generation(), None);
        assert_eq!(
            store.storage_keys(None, 10).await.unwrap(),
            vec![
                (space, legacy.clone()),
                (space_of(2), StoredKey::Wrapped(storage_key(2)))
            ]
        );
        assert_eq!(
            store
                .replace_storage_key(&space, &legacy, storage_key(7))
                .await
                .unwrap(),
            Cas::Done(())
        );
        assert_eq!(store.storage_key(&space).await.unwrap(), stored_key(7));
    }

    /// Several writers to one space: one gap-free sequence, and every ack is distinct.
    pub(crate) async fn concurrent_appends_share_one_gap_free_sequence(store: Arc<dyn Store>) {
        const TASKS: u8 = 8;
        const PER_TASK: u8 = 25;
        let (_, space) = new_account(&*store, 1, 1).await;
        let mut tasks = Vec::new();
        for task in 0..TASKS {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut seqs = Vec::new();
                // Five items a round, then the same five again: the retry must answer the same seqs.
                for round in 0..PER_TASK / 5 {
                    let ids: Vec<u8> = (0..5).map(|k| task * PER_TASK + round * 5 + k).collect();
                    let items: Vec<_> = ids.iter().map(|&n| change(n, task, 1)).collect();
                    let out = store.append(&space, items.clone()).await.unwrap();
                    let retry = store.append(&space, items).await.unwrap();
                    for (first, again) in out.into_iter().zip(retry) {
                        let AppendOutcome::Stored { seq } = first else {
                            panic!("fresh ids must be stored, got {first:?}");
                        };
                        assert_eq!(again, AppendOutcome::Duplicate { seq });
                        seqs.push(seq);
                    }
                }
                seqs
            }));
        }
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.unwrap());
        }
        let total = u64::from(TASKS) * u64::from(PER_TASK);
        assert_eq!(sorted(all), (1..=total).collect::<Vec<_>>());
        assert_eq!(store.head(&space).await.unwrap(), total);
        assert_eq!(
            read_seqs(&*store, &space).await,
            (1..=total).collect::<Vec<_>>()
        );
    }
}

/// A property test: random batches of changes, snapshots and tombstones (with retries, id
/// conflicts, wrong epochs and epoch rises) against a backend and against [`Model`], a direct
/// transcription of the rules of [`Store::append`] over a plain list of envelopes.
pub(super) mod model {
    use std::collections::{BTreeMap, HashMap, HashSet};

    use proptest::prelude::*;
    use proptest::test_runner::{Config, RngSeed, TestCaseError, TestError, TestRunner};

    use super::super::Cas;
    use super::*;

    /// A small id pool, so retries and conflicts are common; an id's doc is `id % DOCS`, so
    /// a re-sent change is usually a true retry.
    const IDS: u8 = 16;
    const DOCS: u8 = 3;
    const START_EPOCH: u32 = 1;

    /// The rules, written as plainly as possible: no indexes, no overlay.
    #[derive(Debug, Default)]
    struct Model {
        head: u64,
        epoch: u32,
        /// id → (seq, digest) of everything ever stored.
        ids: HashMap<EnvelopeId, (u64, [u8; 32])>,
        /// Live envelopes by seq.
        live: BTreeMap<u64, Envelope>,
        deleted: HashSet<DocId>,
    }

    impl Model {
        fn live_of(&self, doc: &DocId, upto: u64) -> Vec<(u64, EnvelopeId)> {
            self.live
                .iter()
                .filter(|(seq, env)| env.doc == *doc && **seq <= upto)
                .map(|(seq, env)| (*seq, env.id))
                .collect()
        }

        fn apply(&mut self, item: &AppendItem) -> AppendOutcome {
            let env = &item.envelope;
            if let Some(&(seq, digest)) = self.ids.get(&env.id) {
                return if digest == item.digest {
                    AppendOutcome::Duplicate { seq }
                } else {
                    AppendOutcome::IdConflict
                };
            }
            if self.deleted.contains(&env.doc) {
                return AppendOutcome::DocDeleted;
            }
            if env.key_epoch < self.epoch {
                return AppendOutcome::EpochStale {
                    current: self.epoch,
                };
            }
            if env.key_epoch > self.epoch {
                return AppendOutcome::EpochAhead {
                    current: self.epoch,
                };
            }
            match env.kind {
                Kind::Change => {}
                Kind::Snapshot => {
                    let upto = env.upto_seq.unwrap_or(0);
                    if upto > self.head {
                        return AppendOutcome::SnapshotAhead { head: self.head };
                    }
                    let covers = env.covers.clone().unwrap_or_default();
                    let live = self.live_of(&env.doc, upto);
                    let missing: Vec<_> = live
                        .iter()
                        .filter(|(_, id)| !covers.contains(id))
                        .map(|(_, id)| *id)
                        .collect();
                    if !missing.is_empty() {
                        return AppendOutcome::SnapshotStale { missing };
                    }
                    for (seq, _) in live {
                        self.live.remove(&seq);
                    }
                }
                Kind::Tombstone => {
                    for (seq, _) in self.live_of(&env.doc, u64::MAX) {
                        self.live.remove(&seq);
                    }
                    self.deleted.insert(env.doc);
                }
            }
            self.head += 1;
            self.live.insert(self.head, env.clone());
            self.ids.insert(env.id, (self.head, item.digest));
            AppendOutcome::Stored { seq: self.head }
        }
    }

    #[derive(Debug, Clone)]
    enum Covers {
        /// Every live envelope of the doc up to `upto` (a snapshot that should succeed).
        AllLive,
        /// All but the newest one (stale).
        AllButNewest,
        /// A random subset of the id pool.
        Mask(u16),
    }

    #[derive(Debug, Clone)]
    enum Upto {
        Head,
        HeadPlus(u8),
        HeadMinus(u8),
    }

    #[derive(Debug, Clone)]
    enum Op {
        Change {
            id: u8,
            variant: u8,
            epoch: i8,
        },
        Snapshot {
            id: u8,
            covers: Covers,
            upto: Upto,
            epoch: i8,
        },
        Tombstone {
            id: u8,
            variant: u8,
        },
        /// Sends again an item sent earlier (index modulo the history).
        Retry(usize),
    }

    #[derive(Debug, Clone)]
    enum Step {
        Batch(Vec<Op>),
        RaiseEpoch,
    }

    fn epoch_offset() -> impl Strategy<Value = i8> {
        prop_oneof![8 => Just(0i8), 1 => Just(-1i8), 1 => Just(1i8)]
    }

    fn variant() -> impl Strategy<Value = u8> {
        prop_oneof![4 => Just(0u8), 1 => Just(1u8)]
    }

    fn op() -> impl Strategy<Value = Op> {
        let covers = prop_oneof![
            3 => Just(Covers::AllLive),
            1 => Just(Covers::AllButNewest),
            1 => any::<u16>().prop_map(Covers::Mask),
        ];
        let upto = prop_oneof![
            3 => Just(Upto::Head),
            1 => (0u8..3).prop_map(Upto::HeadMinus),
            1 => (1u8..3).prop_map(Upto::HeadPlus),
        ];
        prop_oneof![
            6 => (0..IDS, variant(), epoch_offset())
                .prop_map(|(id, variant, epoch)| Op::Change { id, variant, epoch }),
            3 => (0..IDS, covers, upto, epoch_offset())
                .prop_map(|(id, covers, upto, epoch)| Op::Snapshot { id, covers, upto, epoch }),
            1 => (0..IDS, variant()).prop_map(|(id, variant)| Op::Tombstone { id, variant }),
            2 => any::<usize>().prop_map(Op::Retry),
        ]
    }

    fn steps() -> impl Strategy<Value = Vec<Step>> {
        let step = prop_oneof![
            9 => proptest::collection::vec(op(), 1..7).prop_map(Step::Batch),
            1 => Just(Step::RaiseEpoch),
        ];
        proptest::collection::vec(step, 1..10)
    }

    fn with_offset(epoch: u32, offset: i8) -> u32 {
        epoch.saturating_add_signed(i32::from(offset))
    }

    /// Turns an abstract op into an envelope, reading the model as it stands before the item
    /// and the items sent so far.
    fn concrete(model: &Model, history: &[AppendItem], op: &Op) -> AppendItem {
        match op {
            Op::Retry(index) => match history.get(index % history.len().max(1)) {
                Some(earlier) => earlier.clone(),
                None => change(0, 0, model.epoch),
            },
            Op::Change { id, variant, epoch } => {
                change_v(*id, id % DOCS, with_offset(model.epoch, *epoch), *variant)
            }
            Op::Tombstone { id, variant } => item(envelope(
                Kind::Tombstone,
                *id,
                id % DOCS,
                model.epoch,
                *variant,
            )),
            Op::Snapshot {
                id,
                covers,
                upto,
                epoch,
            } => {
                let doc_n = id % DOCS;
                let upto = match upto {
                    Upto::Head => model.head,
                    Upto::HeadPlus(n) => model.head + u64::from(*n),
                    Upto::HeadMinus(n) => model.head.saturating_sub(u64::from(*n)),
                }
                .max(1);
                let live = model.live_of(&doc(doc_n), upto);
                let covers: Vec<EnvelopeId> = match covers {
                    Covers::AllLive => live.iter().map(|(_, id)| *id).collect(),
                    Covers::AllButNewest => live.iter().rev().skip(1).map(|(_, id)| *id).collect(),
                    Covers::Mask(mask) => {
                        (0..IDS).filter(|n| mask & (1 << n) != 0).map(eid).collect()
                    }
                };
                let mut env = envelope(
                    Kind::Snapshot,
                    *id,
                    doc_n,
                    with_offset(model.epoch, *epoch),
                    0,
                );
                env.covers = Some(covers);
                env.upto_seq = Some(upto);
                item(env)
            }
        }
    }

    async fn run_steps(store: &dyn Store, steps: &[Step]) -> Result<(), TestCaseError> {
        let (_, space) = new_account(store, 1, START_EPOCH).await;
        let mut model = Model {
            epoch: START_EPOCH,
            ..Model::default()
        };
        let mut history = Vec::new();
        for step in steps {
            match step {
                Step::RaiseEpoch => {
                    let mut account = store.account(&user_id(1)).await.unwrap().unwrap();
                    let revision = account.revision;
                    account.key_bundle.key_epoch += 1;
                    let out = store.update_account(revision, account).await.unwrap();
                    prop_assert!(matches!(out, Cas::Done(_)));
                    model.epoch += 1;
                }
                Step::Batch(ops) => {
                    let mut items = Vec::new();
                    let mut expected = Vec::new();
                    for op in ops {
                        let item = concrete(&model, &history, op);
                        expected.push(model.apply(&item));
                        history.push(item.clone());
                        items.push(item);
                    }
                    let got = store.append(&space, items).await.unwrap();
                    prop_assert_eq!(got, expected);
                }
            }
            prop_assert_eq!(store.head(&space).await.unwrap(), model.head);
            prop_assert_eq!(store.epoch(&space).await.unwrap(), model.epoch);
            let live: Vec<_> = model.live.iter().map(|(s, e)| (*s, e.clone())).collect();
            prop_assert_eq!(read_all(store, &space).await, live);
            for n in 0..DOCS {
                let expected = model.live_of(&doc(n), u64::MAX);
                prop_assert_eq!(store.live_ids(&space, &doc(n)).await.unwrap(), expected);
            }
            for n in 0..IDS {
                let expected = model.ids.get(&eid(n)).map(|(seq, _)| *seq);
                prop_assert_eq!(store.seq_of(&space, &eid(n)).await.unwrap(), expected);
            }
        }
        Ok(())
    }

    /// Runs 64 seeded cases (override with `PROPTEST_RNG_SEED` / `PROPTEST_CASES`); a failure
    /// panics with the minimal failing steps.
    pub(crate) fn check_against_model<F>(make: impl Fn() -> F)
    where
        F: std::future::Future<Output = Option<Harness>>,
    {
        let defaults = Config::default();
        let config = Config {
            cases: if std::env::var_os("PROPTEST_CASES").is_some() {
                defaults.cases
            } else {
                64
            },
            rng_seed: match defaults.rng_seed {
                RngSeed::Random => RngSeed::Fixed(0x4a57_e11e),
                fixed => fixed,
            },
            failure_persistence: None,
            ..defaults
        };
        // IO and time drivers for backends that talk to a server (PostgreSQL).
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // A backend that is not available here skips the whole property.
        if runtime.block_on(make()).is_none() {
            return;
        }
        let mut runner = TestRunner::new(config);
        let result = runner.run(&steps(), |steps| {
            runtime.block_on(async {
                let harness = make()
                    .await
                    .expect("the backend was available a moment ago");
                run_steps(harness.store(), &steps).await
            })
        });
        match result {
            Ok(()) => {}
            Err(TestError::Fail(reason, steps)) => {
                panic!("store and model disagree: {reason}\nminimal failing steps: {steps:#?}")
            }
            Err(error) => panic!("{error}"),
        }
    }
}
