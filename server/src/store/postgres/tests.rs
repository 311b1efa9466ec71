//! PostgreSQL-specific cases (the shared contract is `store/conformance.rs`): several instances
//! (pools) over one schema, corrupt rows, values out of range, migrations applied twice.

use std::sync::Arc;

use haven_protocol::{Blob, Bytes, Envelope, HexId, Kind, SpaceId};
use zeroize::Zeroizing;

use super::testing::{fresh_schema, fresh_store, options_in, server_url};
use super::{PgSettings, PgStore};
use crate::store::fixtures::{account, device};
use crate::store::{
    AppendItem, AppendOutcome, Cas, Durability, RateDecision, SessionRecord, Store, StoreError,
    StoredKey, WRAPPED_KEY_LEN, WrappedKey,
};

async fn new_account(store: &dyn Store, n: u8) -> SpaceId {
    let account = account(n);
    let space = SpaceId::Private(account.space_id);
    let created = store
        .create_account(
            account,
            device(n),
            WrappedKey {
                generation: 1,
                sealed: [n; WRAPPED_KEY_LEN],
            },
        )
        .await
        .unwrap();
    assert_eq!(created, Cas::Done(()));
    space
}

fn change(task: u8, n: u8) -> AppendItem {
    let mut id = [0xab; 32];
    id[0] = task;
    id[1] = n;
    let envelope = Envelope {
        id: Bytes(id),
        doc: Bytes([task; 16]),
        kind: Kind::Change,
        device: Bytes([task; 16]),
        ctr: u64::from(n) + 1,
        key_epoch: 1,
        body: Blob(vec![task, n]),
        sig: None,
        covers: None,
        upto_seq: None,
    };
    let digest = envelope.digest();
    AppendItem { envelope, digest }
}

/// Two stores over one schema, as two server instances over one database.
async fn two_instances() -> Option<(Arc<dyn Store>, Arc<dyn Store>, super::testing::TestSchema)> {
    let url = server_url()?;
    let schema = fresh_schema(&url).await;
    let settings = PgSettings {
        max_connections: 4,
        ..PgSettings::default()
    };
    // Both run the migrations at once, as instances starting together do.
    let (a, b) = tokio::join!(
        PgStore::connect_with(options_in(&url, &schema), settings),
        PgStore::connect_with(options_in(&url, &schema), settings),
    );
    Some((Arc::new(a.unwrap()), Arc::new(b.unwrap()), schema))
}

#[tokio::test]
async fn postgres_is_durable_on_commit() {
    let Some((store, _schema)) = fresh_store().await else {
        return;
    };
    assert_eq!(store.durability(), Durability::OnCommit);
    // A hung transaction cannot hold a space's counter row for long.
    let timeout: String = sqlx::query_scalar("SHOW idle_in_transaction_session_timeout")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(timeout, "1min");
}

/// Writers on two instances to one space: one gap-free sequence, each id at one seq, and
/// retries through the other instance answer the same seq.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_share_one_gap_free_sequence() {
    const TASKS: u8 = 6;
    const ROUNDS: u8 = 10;
    let Some((a, b, _schema)) = two_instances().await else {
        return;
    };
    let space = new_account(&*a, 1).await;
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let (mine, other) = if task % 2 == 0 {
            (Arc::clone(&a), Arc::clone(&b))
        } else {
            (Arc::clone(&b), Arc::clone(&a))
        };
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for round in 0..ROUNDS {
                let items: Vec<_> = (0..3).map(|k| change(task, round * 3 + k)).collect();
                let stored = mine.append(&space, items.clone()).await.unwrap();
                let retried = other.append(&space, items).await.unwrap();
                for (first, again) in stored.into_iter().zip(retried) {
                    let AppendOutcome::Stored { seq } = first else {
                        panic!("a fresh id must be stored, got {first:?}");
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
    all.sort_unstable();
    let total = u64::from(TASKS) * u64::from(ROUNDS) * 3;
    assert_eq!(all, (1..=total).collect::<Vec<_>>());
    assert_eq!(b.head(&space).await.unwrap(), total);
    let seqs: Vec<u64> = a
        .read(&space, 0, u64::MAX, usize::MAX)
        .await
        .unwrap()
        .into_iter()
        .map(|(seq, _)| seq)
        .collect();
    assert_eq!(seqs, (1..=total).collect::<Vec<_>>());
}

/// Secrets, rate windows and the JWT key set are the database's, not an instance's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_agree_on_secrets_rate_limits_and_keys() {
    let Some((a, b, _schema)) = two_instances().await else {
        return;
    };
    let (first, second) = tokio::join!(
        a.secret_or_init("fake-salt", Zeroizing::new(vec![1; 32])),
        b.secret_or_init("fake-salt", Zeroizing::new(vec![2; 32])),
    );
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(*first, *second);
    assert!(*first == vec![1; 32] || *first == vec![2; 32]);

    // Six concurrent hits against a limit of four, from both instances: exactly four pass.
    let mut hits = Vec::new();
    for n in 0..6 {
        let store = if n % 2 == 0 {
            Arc::clone(&a)
        } else {
            Arc::clone(&b)
        };
        hits.push(tokio::spawn(async move {
            store
                .rate_limit_hit(b"address", 1_000, 60, 4)
                .await
                .unwrap()
        }));
    }
    let mut allowed = 0;
    for hit in hits {
        if hit.await.unwrap() == RateDecision::Allowed {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 4);

    // Concurrent rotations leave exactly one active key.
    let key = |kid: &str| crate::store::JwtKeyRecord {
        kid: kid.into(),
        secret: Zeroizing::new([7; 32]),
        created_at: 1,
        state: crate::store::JwtKeyState::Active,
    };
    let (x, y) = tokio::join!(a.put_jwt_key(key("x")), b.put_jwt_key(key("y")));
    x.unwrap();
    y.unwrap();
    let keys = a.jwt_keys().await.unwrap();
    let active = keys
        .iter()
        .filter(|key| key.state == crate::store::JwtKeyState::Active)
        .count();
    assert_eq!((keys.len(), active), (2, 1));
}

/// A database written before master keys holds raw 32-byte keys with no generation: they read
/// as legacy keys and are replaced by wrapped ones (which the server does at start).
#[tokio::test]
async fn legacy_raw_keys_are_read_and_replaced() {
    let Some((store, _schema)) = fresh_store().await else {
        return;
    };
    let space = new_account(&store, 1).await;
    sqlx::query(
        "UPDATE spaces SET storage_key = decode(repeat('42', 32), 'hex'), key_generation = NULL \
         WHERE space = $1",
    )
    .bind(space.name())
    .execute(store.pool())
    .await
    .unwrap();
    let legacy = StoredKey::Legacy(Zeroizing::new([0x42; 32]));
    assert_eq!(
        store.storage_key(&space).await.unwrap(),
        Some(legacy.clone())
    );
    assert_eq!(
        store.storage_keys(None, 10).await.unwrap(),
        vec![(space, legacy.clone())]
    );
    let wrapped = WrappedKey {
        generation: 4,
        sealed: [9; WRAPPED_KEY_LEN],
    };
    assert_eq!(
        store
            .replace_storage_key(&space, &legacy, wrapped.clone())
            .await
            .unwrap(),
        Cas::Done(())
    );
    assert_eq!(
        store.storage_key(&space).await.unwrap(),
        Some(StoredKey::Wrapped(wrapped))
    );
    // A raw key of the wrong length, or a generation out of range, is corrupt.
    sqlx::query("UPDATE spaces SET key_generation = NULL WHERE space = $1")
        .bind(space.name())
        .execute(store.pool())
        .await
        .unwrap();
    assert!(matches!(
        store.storage_key(&space).await,
        Err(StoreError::Corrupt(_))
    ));
    sqlx::query("UPDATE spaces SET key_generation = -1 WHERE space = $1")
        .bind(space.name())
        .execute(store.pool())
        .await
        .unwrap();
    assert!(matches!(
        store.storage_keys(None, 10).await,
        Err(StoreError::Corrupt(_))
    ));
}

/// Rows that are not what the store wrote are refused as `Corrupt`, never served or panicked on.
#[tokio::test]
async fn corrupt_rows_are_refused() {
    let Some((store, _schema)) = fresh_store().await else {
        return;
    };
    let space = new_account(&store, 1).await;
    store
        .append(&space, vec![change(1, 1), change(1, 2)])
        .await
        .unwrap();
    let name = space.name();
    // Statements that name `$1` get the space's name.
    let plant = |sql: &'static str| {
        let pool = store.pool().clone();
        let name = name.clone();
        async move {
            let query = sqlx::query(sql);
            let query = if sql.contains("$1") {
                query.bind(name)
            } else {
                query
            };
            query.execute(&pool).await.unwrap();
        }
    };
    let corrupt = |result: Result<(), StoreError>| {
        assert!(matches!(result, Err(StoreError::Corrupt(_))), "{result:?}");
    };
    plant("UPDATE envelopes SET envelope = '\\x01ff' WHERE space = $1 AND seq = 2").await;
    corrupt(store.read(&space, 0, 10, 10).await.map(drop));
    assert_eq!(store.read(&space, 0, 1, 10).await.unwrap().len(), 1);
    plant("UPDATE envelopes SET id = '\\x0102' WHERE space = $1 AND seq = 1").await;
    corrupt(store.live_ids(&space, &Bytes([1; 16])).await.map(drop));
    plant("UPDATE envelope_ids SET seq = -1 WHERE space = $1").await;
    corrupt(
        store
            .seq_of(&space, &change(1, 1).envelope.id)
            .await
            .map(drop),
    );
    corrupt(store.append(&space, vec![change(1, 1)]).await.map(drop));
    plant("UPDATE spaces SET storage_key = '\\x01' WHERE space = $1").await;
    corrupt(store.storage_key(&space).await.map(drop));
    plant("UPDATE spaces SET epoch = 4294967296 WHERE space = $1").await;
    corrupt(store.epoch(&space).await.map(drop));
    corrupt(store.append(&space, vec![change(2, 1)]).await.map(drop));
    plant("UPDATE spaces SET head = -5 WHERE space = $1").await;
    corrupt(store.head(&space).await.map(drop));
    plant("UPDATE accounts SET username_key = '\\x00' WHERE user_id = '\\x01010101010101010101010101010101'")
        .await;
    corrupt(store.account(&HexId([1; 16])).await.map(drop));
    plant("UPDATE devices SET device_id = '\\x00'").await;
    corrupt(store.devices(&HexId([1; 16])).await.map(drop));
    plant("INSERT INTO jwt_keys VALUES ('k', '\\x00', 1, 'bogus')").await;
    corrupt(store.jwt_keys().await.map(drop));
}

/// u64 values past PostgreSQL's bigint are refused with an error, not wrapped.
#[tokio::test]
async fn values_past_bigint_are_refused() {
    let Some((store, _schema)) = fresh_store().await else {
        return;
    };
    new_account(&store, 1).await;
    let session = SessionRecord {
        session_id: HexId([9; 16]),
        user_id: HexId([1; 16]),
        device_id: Bytes([1; 16]),
        created_at: u64::MAX,
        last_used_at: 0,
        generation: 0,
        current_hash: [0; 32],
        previous_hash: None,
        rotated_at: 0,
        revoked: false,
    };
    assert!(matches!(
        store.create_session(session).await,
        Err(StoreError::Engine(_))
    ));
    assert_eq!(store.session(&HexId([9; 16])).await.unwrap(), None);
    // Reads past the range are simply empty.
    let space = SpaceId::Private(HexId([1 ^ 0xee; 16]));
    assert!(
        store
            .read(&space, u64::MAX - 1, u64::MAX, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// A second start over a migrated schema applies nothing and keeps the data.
#[tokio::test]
async fn migrations_apply_once() {
    let Some(url) = server_url() else {
        return;
    };
    let schema = fresh_schema(&url).await;
    let first = PgStore::connect_with(options_in(&url, &schema), PgSettings::default())
        .await
        .unwrap();
    let space = new_account(&first, 3).await;
    first.close().await;
    let second = PgStore::connect_with(options_in(&url, &schema), PgSettings::default())
        .await
        .unwrap();
    assert!(second.space_exists(&space).await.unwrap());
    assert!(second.account(&HexId([3; 16])).await.unwrap().is_some());
}

/// An erasure on one instance racing device and session writes on another: whichever wins,
/// nothing of the account is left afterwards, and no append lands in the erased log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_wins_against_racing_writes_on_another_instance() {
    let Some((a, b, _schema)) = two_instances().await else {
        return;
    };
    for n in 1..=8u8 {
        let space = new_account(&*a, n).await;
        let user = HexId([n; 16]);
        let writer = {
            let b = Arc::clone(&b);
            tokio::spawn(async move {
                for k in 0..5u8 {
                    let mut extra = device(n);
                    extra.device_id = Bytes([k; 16]);
                    let _ = b.put_device(extra).await;
                    let session = SessionRecord {
                        session_id: HexId([n, k, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
                        user_id: user,
                        device_id: Bytes([k; 16]),
                        created_at: 1,
                        last_used_at: 1,
                        generation: 0,
                        current_hash: [k; 32],
                        previous_hash: None,
                        rotated_at: 1,
                        revoked: false,
                    };
                    let _ = b.create_session(session).await;
                    let _ = b.append(&space, vec![change(n, k)]).await;
                }
            })
        };
        a.erase_account(&user, None).await.unwrap();
        writer.await.unwrap();
        assert!(a.is_erased(&user).await.unwrap());
        assert!(b.devices(&user).await.unwrap().is_empty(), "account {n}");
        assert!(
            b.revoke_sessions_of_user(&user, None)
                .await
                .unwrap()
                .is_empty(),
            "account {n}"
        );
        assert!(!b.space_exists(&space).await.unwrap());
        assert!(
            b.read(&space, 0, u64::MAX, usize::MAX)
                .await
                .unwrap()
                .is_empty()
        );
    }
}
