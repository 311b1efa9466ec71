//! `haven-server migrate --from DIR --to postgres://…`: copies a sled data directory (any
//! [`KvStore`]) into an empty PostgreSQL database, record for record: secrets, the JWT key set,
//! accounts, erasure markers, devices, sessions, one-time tokens, link mailboxes, and for every
//! space its head, epoch, wrapped storage key, live envelopes (bytes unchanged, so storage seals still
//! open), every id → seq ‖ digest (pruned ones too) and tombstones.
//!
//! One transaction: the target ends up with everything or nothing. Rate-limit windows are not
//! copied (they are minutes long). The source is read through the KV layout of `kv.rs`; with
//! sled, its directory lock guarantees that no server writes during the copy.

use haven_protocol::{Envelope, SpaceId};
use serde::de::DeserializeOwned;
use sqlx::{Postgres, Row as _, Transaction};

use super::kv::{KvEngine, KvStore, keys};
use super::postgres::PgStore;
use super::{
    AccountRecord, DeviceRecord, JwtKeyRecord, LinkRecord, OneTimeToken, SessionRecord, Store,
    StoreError, StoreResult, StoredKey,
};

/// Rows per multi-row insert of envelopes and ids.
const PAGE: usize = 1000;

/// What was copied (counts only: nothing about content).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    pub secrets: usize,
    pub jwt_keys: usize,
    pub accounts: usize,
    pub erased_accounts: usize,
    pub devices: usize,
    pub sessions: usize,
    pub tokens: usize,
    pub links: usize,
    pub spaces: usize,
    pub envelopes: usize,
    pub envelope_ids: usize,
    pub tombstones: usize,
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("source {what}"))
}

fn json<T: DeserializeOwned>(bytes: &[u8], what: &str) -> StoreResult<T> {
    serde_json::from_slice(bytes)
        .map_err(|error| StoreError::Corrupt(format!("source {what}: {error}")))
}

fn suffix<'a>(key: &'a [u8], prefix: &[u8], what: &str) -> StoreResult<&'a [u8]> {
    key.strip_prefix(prefix).ok_or_else(|| corrupt(what))
}

fn array<const N: usize>(bytes: &[u8], what: &str) -> StoreResult<[u8; N]> {
    bytes.try_into().map_err(|_| corrupt(what))
}

fn bigint(value: u64, what: &str) -> StoreResult<i64> {
    i64::try_from(value)
        .map_err(|_| StoreError::Engine(format!("source {what} {value} exceeds bigint")))
}

/// `l/S/i/`: the id entries of a space (the key layout of `kv.rs`).
fn id_prefix(space: &SpaceId) -> Vec<u8> {
    let key = keys::id(space, &haven_protocol::Bytes([0; 32]));
    key[..key.len() - 32].to_vec()
}

/// Whether the target holds nothing yet (only the empty public space the schema creates).
async fn target_is_empty(tx: &mut Transaction<'_, Postgres>) -> StoreResult<bool> {
    let row = sqlx::query(
        "SELECT NOT EXISTS (SELECT 1 FROM accounts) AND NOT EXISTS (SELECT 1 FROM erased_accounts) \
         AND NOT EXISTS (SELECT 1 FROM secrets) AND NOT EXISTS (SELECT 1 FROM jwt_keys) \
         AND NOT EXISTS (SELECT 1 FROM envelope_ids) AND NOT EXISTS (SELECT 1 FROM sessions)",
    )
    .fetch_one(&mut **tx)
    .await?;
    Ok(row.try_get(0)?)
}

/// Copies everything of `from` into `to`, which must be empty.
pub async fn kv_to_postgres<E: KvEngine>(
    from: &KvStore<E>,
    to: &PgStore,
) -> StoreResult<MigrationReport> {
    let engine = from.engine();
    let mut report = MigrationReport::default();
    let mut tx = to.pool().begin().await?;
    if !target_is_empty(&mut tx).await? {
        tx.rollback().await?;
        return Err(StoreError::Engine(
            "the target database already holds data; migrate only into an empty one".into(),
        ));
    }

    for (key, value) in engine.scan_prefix(b"m/secret/")? {
        let name = std::str::from_utf8(suffix(&key, b"m/secret/", "secret key")?)
            .map_err(|_| corrupt("secret name"))?;
        sqlx::query("INSERT INTO secrets (name, value) VALUES ($1, $2)")
            .bind(name)
            .bind(value)
            .execute(&mut *tx)
            .await?;
        report.secrets += 1;
    }
    for (_, value) in engine.scan_prefix(keys::JWT)? {
        let key: JwtKeyRecord = json(&zeroize::Zeroizing::new(value), "jwt key")?;
        sqlx::query(
            "INSERT INTO jwt_keys (kid, secret, created_at, state) VALUES ($1, $2, $3, $4)",
        )
        .bind(&key.kid)
        .bind(key.secret.as_slice())
        .bind(bigint(key.created_at, "jwt key created_at")?)
        .bind(super::postgres::jwt_state_name(key.state))
        .execute(&mut *tx)
        .await?;
        report.jwt_keys += 1;
    }

    // Accounts (with their spaces), then what hangs off them.
    let mut spaces = vec![SpaceId::Public];
    for (_, value) in engine.scan_prefix(b"a/u/")? {
        let account: AccountRecord = json(&value, "account")?;
        super::postgres::insert_account(&mut tx, &account).await?;
        spaces.push(SpaceId::Private(account.space_id));
        report.accounts += 1;
    }
    for (key, marker) in engine.scan_prefix(b"a/x/")? {
        let user: [u8; 16] = array(suffix(&key, b"a/x/", "erasure marker")?, "erasure marker")?;
        // The marker byte, then the wipe token when the erasing device revealed one.
        let wipe_token = marker.get(1..).filter(|token| !token.is_empty());
        sqlx::query("INSERT INTO erased_accounts (user_id, wipe_token) VALUES ($1, $2)")
            .bind(user)
            .bind(wipe_token)
            .execute(&mut *tx)
            .await?;
        report.erased_accounts += 1;
    }
    for (_, value) in engine.scan_prefix(b"d/")? {
        let device: DeviceRecord = json(&value, "device")?;
        super::postgres::upsert_device(&mut tx, &device).await?;
        report.devices += 1;
    }
    for (_, value) in engine.scan_prefix(b"s/")? {
        let session: SessionRecord = json(&value, "session")?;
        super::postgres::upsert_session(&mut tx, &session).await?;
        report.sessions += 1;
    }
    for (key, value) in engine.scan_prefix(keys::TOKENS)? {
        let hash: [u8; 32] = array(suffix(&key, keys::TOKENS, "token key")?, "token hash")?;
        let token: OneTimeToken = json(&value, "one-time token")?;
        sqlx::query("INSERT INTO one_time_tokens (hash, user_id, expires_at) VALUES ($1, $2, $3)")
            .bind(hash)
            .bind(token.user_id.0)
            .bind(bigint(token.expires_at, "token expiry")?)
            .execute(&mut *tx)
            .await?;
        report.tokens += 1;
    }
    for (_, value) in engine.scan_prefix(keys::LINKS)? {
        let link: LinkRecord = json(&value, "link")?;
        sqlx::query("INSERT INTO links (id, expires_at, payload) VALUES ($1, $2, $3)")
            .bind(link.id.0)
            .bind(bigint(link.expires_at, "link expiry")?)
            .bind(link.payload)
            .execute(&mut *tx)
            .await?;
        report.links += 1;
    }

    for space in &spaces {
        copy_space(engine, &mut tx, space, &mut report).await?;
    }
    tx.commit().await?;
    Ok(report)
}

async fn copy_space<E: KvEngine>(
    engine: &E,
    tx: &mut Transaction<'_, Postgres>,
    space: &SpaceId,
    report: &mut MigrationReport,
) -> StoreResult<()> {
    let name = space.name();
    let head = match engine.get(&keys::head(space))? {
        Some(bytes) => u64::from_be_bytes(array(&bytes, "space head")?),
        None => 0,
    };
    let epoch = match (space, engine.get(&keys::epoch(space))?) {
        (SpaceId::Public, _) => 0,
        (SpaceId::Private(_), Some(bytes)) => u32::from_be_bytes(array(&bytes, "space epoch")?),
        // An account without its space is not something the server ever writes.
        (SpaceId::Private(_), None) => return Err(corrupt(&format!("space {space}: no epoch"))),
    };
    // The key stays wrapped as it was (the master-key file moves with it; docs/DEPLOY.md).
    let storage_key = engine
        .get(&keys::storage_key(space))?
        .map(|bytes| StoredKey::decode(&zeroize::Zeroizing::new(bytes)))
        .transpose()?
        .map(|key| super::postgres::stored_key_columns(&key));
    let (key_bytes, key_generation) = match &storage_key {
        Some((bytes, generation)) => (Some(bytes.as_slice()), *generation),
        None => (None, None),
    };
    if space.is_public() {
        sqlx::query("UPDATE spaces SET head = $2 WHERE space = $1")
            .bind(&name)
            .bind(bigint(head, "head")?)
            .execute(&mut **tx)
            .await?;
    } else {
        sqlx::query(
            "INSERT INTO spaces (space, head, epoch, storage_key, key_generation) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&name)
        .bind(bigint(head, "head")?)
        .bind(i64::from(epoch))
        .bind(key_bytes)
        .bind(key_generation)
        .execute(&mut **tx)
        .await?;
    }
    report.spaces += 1;

    // Live envelopes, a page at a time (a space may be large).
    let prefix = keys::envelopes(space);
    let mut start = prefix.clone();
    loop {
        let page = engine.scan_from(&prefix, &start, PAGE)?;
        let Some((last, _)) = page.last() else {
            break;
        };
        start = [last.as_slice(), &[0]].concat();
        let (mut seqs, mut docs, mut ids, mut bodies) = (vec![], vec![], vec![], vec![]);
        for (key, value) in &page {
            let seq = u64::from_be_bytes(array(
                suffix(key, &prefix, "envelope key")?,
                "envelope seq",
            )?);
            let envelope = Envelope::decode(value).map_err(|error| {
                StoreError::Corrupt(format!("source envelope at seq {seq} of {space}: {error}"))
            })?;
            seqs.push(bigint(seq, "seq")?);
            docs.push(envelope.doc.0);
            ids.push(envelope.id.0);
            bodies.push(value.as_slice());
        }
        sqlx::query(
            "INSERT INTO envelopes (space, seq, doc, id, envelope) \
             SELECT $1, * FROM UNNEST($2::bigint[], $3::bytea[], $4::bytea[], $5::bytea[])",
        )
        .bind(&name)
        .bind(seqs)
        .bind(docs)
        .bind(ids)
        .bind(bodies)
        .execute(&mut **tx)
        .await?;
        report.envelopes += page.len();
    }

    // Every id ever stored: seq ‖ digest.
    let prefix = id_prefix(space);
    let mut start = prefix.clone();
    loop {
        let page = engine.scan_from(&prefix, &start, PAGE)?;
        let Some((last, _)) = page.last() else {
            break;
        };
        start = [last.as_slice(), &[0]].concat();
        let (mut ids, mut seqs, mut digests) = (vec![], vec![], vec![]);
        for (key, value) in &page {
            let id: [u8; 32] = array(suffix(key, &prefix, "id key")?, "envelope id")?;
            let (seq, digest) = value
                .split_first_chunk::<8>()
                .ok_or_else(|| corrupt("id entry"))?;
            ids.push(id);
            seqs.push(bigint(u64::from_be_bytes(*seq), "seq")?);
            digests.push(array::<32>(digest, "id digest")?);
        }
        sqlx::query(
            "INSERT INTO envelope_ids (space, id, seq, digest) \
             SELECT $1, * FROM UNNEST($2::bytea[], $3::bigint[], $4::bytea[])",
        )
        .bind(&name)
        .bind(ids)
        .bind(seqs)
        .bind(digests)
        .execute(&mut **tx)
        .await?;
        report.envelope_ids += page.len();
    }

    let prefix = keys::doc_state(space, &haven_protocol::Bytes([0; 16]));
    let prefix = prefix[..prefix.len() - 16].to_vec();
    for (key, value) in engine.scan_prefix(&prefix)? {
        let doc: [u8; 16] = array(suffix(&key, &prefix, "tombstone key")?, "tombstone doc")?;
        let seq = u64::from_be_bytes(array(&value, "tombstone seq")?);
        sqlx::query("INSERT INTO tombstones (space, doc, seq) VALUES ($1, $2, $3)")
            .bind(&name)
            .bind(doc)
            .bind(bigint(seq, "seq")?)
            .execute(&mut **tx)
            .await?;
        report.tombstones += 1;
    }
    Ok(())
}

/// Checks, through the [`Store`] contract of both sides, that every space answers the same:
/// head, epoch, storage key, every live envelope and every id's seq. Returns the number of
/// spaces compared.
pub async fn verify<E: KvEngine>(from: &KvStore<E>, to: &PgStore) -> StoreResult<usize> {
    let mut spaces = vec![SpaceId::Public];
    for (_, value) in from.engine().scan_prefix(b"a/u/")? {
        let account: AccountRecord = json(&value, "account")?;
        if to.account(&account.user_id).await?.as_ref() != Some(&account) {
            return Err(StoreError::Engine(format!(
                "account {} differs after migration",
                account.user_id
            )));
        }
        spaces.push(SpaceId::Private(account.space_id));
    }
    for space in &spaces {
        let differs =
            |what: &str| StoreError::Engine(format!("{what} of {space} differs after migration"));
        if from.head(space).await? != to.head(space).await? {
            return Err(differs("head"));
        }
        if from.epoch(space).await? != to.epoch(space).await? {
            return Err(differs("epoch"));
        }
        let (source_key, target_key) =
            (from.storage_key(space).await?, to.storage_key(space).await?);
        if source_key != target_key {
            return Err(differs("storage key"));
        }
        let source_ids = from.engine().scan_prefix_keys(&id_prefix(space))?.len();
        let target_ids: i64 = sqlx::query("SELECT count(*) FROM envelope_ids WHERE space = $1")
            .bind(space.name())
            .fetch_one(to.pool())
            .await?
            .try_get(0)?;
        if i64::try_from(source_ids).ok() != Some(target_ids) {
            return Err(differs("the id → seq map"));
        }
        let mut after = 0;
        loop {
            let source = from.read(space, after, u64::MAX, PAGE).await?;
            let target = to.read(space, after, u64::MAX, PAGE).await?;
            if source != target {
                return Err(differs("the log"));
            }
            let Some((last, _)) = source.last() else {
                break;
            };
            after = *last;
        }
    }
    Ok(spaces.len())
}

#[cfg(test)]
mod tests {
    use haven_protocol::api::KeyBundle;
    use haven_protocol::{Blob, Bytes, DocId, EnvelopeId, HexId, Kind};
    use zeroize::Zeroizing;

    use super::*;
    use crate::store::postgres::PgSettings;
    use crate::store::postgres::testing::{fresh_schema, options_in, server_url};
    use crate::store::sled_kv::SledStore;
    use crate::store::{
        AppendItem, AppendOutcome, Cas, JwtKeyState, WRAPPED_KEY_LEN, WrappedKey, kv::KvBatch,
    };

    fn account(n: u8) -> AccountRecord {
        AccountRecord {
            auth_hash: format!("$argon2id$auth{n}"),
            key_bundle: KeyBundle {
                version: 3,
                key_epoch: 2,
                blob: Blob(vec![n; 40]),
            },
            auth_version: 1,
            ..crate::store::fixtures::account(n)
        }
    }

    fn device(user: u8, n: u8) -> DeviceRecord {
        DeviceRecord {
            user_id: HexId([user; 16]),
            device_id: Bytes([user, n, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
            name: Some(format!("sealed {n}")),
            created_day: "2025-03-04".into(),
            last_seen_day: "2025-03-05".into(),
            revoked: n == 2,
        }
    }

    fn session(n: u8, user: u8) -> SessionRecord {
        SessionRecord {
            session_id: HexId([n.wrapping_add(0x80); 16]),
            user_id: HexId([user; 16]),
            device_id: device(user, 0).device_id,
            created_at: 1_000 + u64::from(n),
            last_used_at: 2_000,
            generation: u64::from(n),
            current_hash: [n; 32],
            previous_hash: n.is_multiple_of(2).then_some([n ^ 1; 32]),
            rotated_at: 1_500,
            revoked: n == 3,
        }
    }

    fn eid(space: u8, n: u8) -> EnvelopeId {
        let mut id = [n; 32];
        id[0] = space;
        Bytes(id)
    }

    fn item(space: u8, kind: Kind, n: u8, doc: u8, epoch: u32) -> AppendItem {
        let envelope = Envelope {
            id: eid(space, n),
            doc: Bytes([doc; 16]),
            kind,
            device: Bytes([9; 16]),
            ctr: u64::from(n),
            key_epoch: epoch,
            body: Blob(vec![space, n, doc, 0x5a]),
            sig: None,
            covers: None,
            upto_seq: None,
        };
        let digest = envelope.digest();
        AppendItem { envelope, digest }
    }

    fn snapshot(space: u8, n: u8, doc: u8, covers: &[u8], upto: u64) -> AppendItem {
        let mut item = item(space, Kind::Snapshot, n, doc, 2);
        item.envelope.covers = Some(covers.iter().map(|&c| eid(space, c)).collect());
        item.envelope.upto_seq = Some(upto);
        item.digest = item.envelope.digest();
        item
    }

    /// A sled store with a bit of everything: three accounts (one erased), devices (one
    /// revoked), sessions, pruned and dropped envelopes, tombstones, public content, secrets,
    /// JWT keys, tokens and mailboxes.
    async fn populate(store: &dyn Store) {
        for n in 1..=3u8 {
            let created = store
                .create_account(
                    account(n),
                    device(n, 0),
                    WrappedKey {
                        generation: u32::from(n),
                        sealed: [n + 50; WRAPPED_KEY_LEN],
                    },
                )
                .await
                .unwrap();
            assert_eq!(created, Cas::Done(()));
            store.put_device(device(n, 1)).await.unwrap();
            store.put_device(device(n, 2)).await.unwrap();
            store.create_session(session(n, n)).await.unwrap();
            store.create_session(session(n + 10, n)).await.unwrap();
            let space = SpaceId::Private(account(n).space_id);
            let out = store
                .append(
                    &space,
                    (1..=6)
                        .map(|i| item(n, Kind::Change, i, i % 3, 2))
                        .collect(),
                )
                .await
                .unwrap();
            assert_eq!(out.len(), 6);
            // Doc 1 holds ids 1 and 4 (seqs 1, 4); doc 2 ids 2 and 5.
            let out = store
                .append(
                    &space,
                    vec![
                        snapshot(n, 7, 1, &[1, 4], 4),
                        item(n, Kind::Tombstone, 8, 2, 2),
                        item(n, Kind::Change, 9, 0, 2),
                    ],
                )
                .await
                .unwrap();
            assert!(
                out.iter()
                    .all(|o| matches!(o, AppendOutcome::Stored { .. })),
                "{out:?}"
            );
        }
        store
            .append(
                &SpaceId::Public,
                (1..=3).map(|i| item(0, Kind::Change, i, 7, 0)).collect(),
            )
            .await
            .unwrap();
        store.erase_account(&HexId([2; 16]), None).await.unwrap();
        for (name, value) in [("fake-salt", 1u8), ("username-key", 2)] {
            store
                .secret_or_init(name, Zeroizing::new(vec![value; 32]))
                .await
                .unwrap();
        }
        for (kid, state) in [("k1", JwtKeyState::Active), ("k2", JwtKeyState::Active)] {
            store
                .put_jwt_key(JwtKeyRecord {
                    kid: kid.into(),
                    secret: Zeroizing::new([kid.len() as u8; 32]),
                    created_at: 77,
                    state,
                })
                .await
                .unwrap();
        }
        store
            .put_token(
                &[4; 32],
                OneTimeToken {
                    user_id: HexId([1; 16]),
                    expires_at: 9_999,
                },
            )
            .await
            .unwrap();
        store
            .create_link(LinkRecord {
                id: HexId([6; 16]),
                expires_at: 600,
                payload: None,
            })
            .await
            .unwrap();
        store
            .put_link_payload(&HexId([6; 16]), b"wrapped".to_vec())
            .await
            .unwrap();
    }

    /// Everything a client or the server can ask answers the same after the move.
    #[tokio::test]
    async fn a_sled_directory_moves_to_postgres_intact() {
        let Some(url) = server_url() else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        {
            let sled = SledStore::open(dir.path(), 8 << 20).unwrap();
            populate(&sled).await;
            // Account 3 keeps a raw key written before master keys: it moves as it is, and the
            // server wraps it at start.
            let mut batch = KvBatch::new();
            batch.put(
                keys::storage_key(&SpaceId::Private(account(3).space_id)),
                vec![0x77; 32],
            );
            sled.engine().apply(batch).unwrap();
            sled.flush().await.unwrap();
        }
        let source = crate::store::fixtures::reopen_sled(dir.path());
        let schema = fresh_schema(&url).await;
        let target = PgStore::connect_with(options_in(&url, &schema), PgSettings::default())
            .await
            .unwrap();

        let report = kv_to_postgres(&source, &target).await.unwrap();
        assert_eq!(
            (
                report.accounts,
                report.erased_accounts,
                report.spaces,
                report.tombstones
            ),
            (2, 1, 3, 2)
        );
        assert_eq!(verify(&source, &target).await.unwrap(), 3);

        let from: &dyn Store = &source;
        let to: &dyn Store = &target;
        for n in 1..=3u8 {
            let user = HexId([n; 16]);
            let space = SpaceId::Private(account(n).space_id);
            assert_eq!(
                to.account(&user).await.unwrap(),
                from.account(&user).await.unwrap()
            );
            assert_eq!(
                to.account_by_username(&[n; 32]).await.unwrap(),
                from.account_by_username(&[n; 32]).await.unwrap()
            );
            assert_eq!(to.is_erased(&user).await.unwrap(), n == 2);
            assert_eq!(
                to.devices(&user).await.unwrap(),
                from.devices(&user).await.unwrap()
            );
            for id in [session(n, n).session_id, session(n + 10, n).session_id] {
                assert_eq!(
                    to.session(&id).await.unwrap(),
                    from.session(&id).await.unwrap()
                );
            }
            assert_eq!(
                to.head(&space).await.unwrap(),
                from.head(&space).await.unwrap()
            );
            assert_eq!(
                to.epoch(&space).await.unwrap(),
                from.epoch(&space).await.unwrap()
            );
            let key = to.storage_key(&space).await.unwrap();
            assert_eq!(key, from.storage_key(&space).await.unwrap());
            match n {
                2 => assert_eq!(key, None),
                3 => assert_eq!(key, Some(StoredKey::Legacy(Zeroizing::new([0x77; 32])))),
                _ => assert_eq!(key.and_then(|key| key.generation()), Some(1)),
            }
            assert_eq!(
                to.read(&space, 0, u64::MAX, usize::MAX).await.unwrap(),
                from.read(&space, 0, u64::MAX, usize::MAX).await.unwrap()
            );
            for doc in 0..3u8 {
                let doc: DocId = Bytes([doc; 16]);
                assert_eq!(
                    to.live_ids(&space, &doc).await.unwrap(),
                    from.live_ids(&space, &doc).await.unwrap()
                );
            }
            for i in 1..=9u8 {
                assert_eq!(
                    to.seq_of(&space, &eid(n, i)).await.unwrap(),
                    from.seq_of(&space, &eid(n, i)).await.unwrap()
                );
            }
        }
        assert_eq!(
            to.read(&SpaceId::Public, 0, u64::MAX, usize::MAX)
                .await
                .unwrap(),
            from.read(&SpaceId::Public, 0, u64::MAX, usize::MAX)
                .await
                .unwrap()
        );
        let keys = |keys: Vec<JwtKeyRecord>| {
            keys.into_iter()
                .map(|k| (k.kid, *k.secret, k.created_at, k.state))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            keys(to.jwt_keys().await.unwrap()),
            keys(from.jwt_keys().await.unwrap())
        );
        for (name, value) in [("fake-salt", 1u8), ("username-key", 2)] {
            let kept = to
                .secret_or_init(name, Zeroizing::new(vec![0xff; 32]))
                .await
                .unwrap();
            assert_eq!(*kept, vec![value; 32]);
        }
        assert_eq!(
            to.take_token(&[4; 32]).await.unwrap().map(|t| t.expires_at),
            Some(9_999)
        );
        assert_eq!(
            to.take_link(&HexId([6; 16]))
                .await
                .unwrap()
                .and_then(|l| l.payload),
            Some(b"wrapped".to_vec())
        );

        // The moved log keeps its rules: retries of pruned ids, tombstones, the next seq.
        let space = SpaceId::Private(account(1).space_id);
        let head = to.head(&space).await.unwrap();
        let out = to
            .append(
                &space,
                vec![
                    item(1, Kind::Change, 1, 1, 2),
                    item(1, Kind::Change, 20, 2, 2),
                    item(1, Kind::Change, 21, 1, 2),
                ],
            )
            .await
            .unwrap();
        assert_eq!(
            out,
            vec![
                AppendOutcome::Duplicate { seq: 1 },
                AppendOutcome::DocDeleted,
                AppendOutcome::Stored { seq: head + 1 },
            ]
        );

        // A second run refuses a database that already holds data.
        let again = kv_to_postgres(&source, &target).await;
        assert!(matches!(again, Err(StoreError::Engine(_))), "{again:?}");
    }
}
