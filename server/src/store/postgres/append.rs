//! [`Store::append`](crate::store::Store::append) in one transaction: lock the space's counter
//! row, read what the batch's rules need in a few set-based queries, decide every item in memory
//! (each item sees the items before it), then write the result and the new head at once.

use std::collections::{BTreeMap, HashMap, HashSet};

use haven_protocol::{DocId, EnvelopeId, Kind, SpaceId};
use sqlx::Row;
use sqlx::postgres::PgPool;

use super::rows::{to_i64, to_u32, to_u64};
use crate::store::{AppendItem, AppendOutcome, StoreError, StoreResult};

/// Where an id was stored and the digest that decides "same bytes".
#[derive(Debug, Clone, Copy)]
struct IdEntry {
    seq: u64,
    digest: [u8; 32],
}

/// A live envelope to insert.
#[derive(Debug)]
struct NewEnvelope {
    doc: DocId,
    id: EnvelopeId,
    encoded: Vec<u8>,
}

/// The log state an append reads under the lock, overlaid with the batch's own effects, and the
/// writes that will apply at commit.
#[derive(Debug)]
struct PendingAppend {
    space: SpaceId,
    head: u64,
    epoch: u32,
    /// Ids of the batch already in the log, plus ids stored earlier in this batch.
    ids: HashMap<EnvelopeId, IdEntry>,
    /// Documents of the batch that have a tombstone.
    deleted: HashSet<DocId>,
    /// Live envelopes (seq → id) of the documents a snapshot or tombstone of this batch prunes;
    /// only those need them.
    live: HashMap<DocId, BTreeMap<u64, EnvelopeId>>,
    inserts: BTreeMap<u64, NewEnvelope>,
    /// Seqs of envelopes stored before this batch that it prunes or drops.
    deletes: Vec<u64>,
    new_ids: Vec<(EnvelopeId, IdEntry)>,
    new_tombstones: Vec<(DocId, u64)>,
}

impl PendingAppend {
    /// Removes a live envelope: from this batch's inserts if it was stored here, else from the
    /// table.
    fn drop_live(&mut self, seq: u64) {
        if self.inserts.remove(&seq).is_none() {
            self.deletes.push(seq);
        }
    }

    /// The rules of `Store::append` for one item, in the contract's order.
    fn decide(&mut self, item: AppendItem) -> StoreResult<AppendOutcome> {
        let AppendItem { envelope, digest } = item;
        if let Some(entry) = self.ids.get(&envelope.id) {
            return Ok(if entry.digest == digest {
                AppendOutcome::Duplicate { seq: entry.seq }
            } else {
                AppendOutcome::IdConflict
            });
        }
        if self.deleted.contains(&envelope.doc) {
            return Ok(AppendOutcome::DocDeleted);
        }
        if envelope.key_epoch < self.epoch {
            return Ok(AppendOutcome::EpochStale {
                current: self.epoch,
            });
        }
        if envelope.key_epoch > self.epoch {
            return Ok(AppendOutcome::EpochAhead {
                current: self.epoch,
            });
        }
        let seq = self
            .head
            .checked_add(1)
            .filter(|seq| i64::try_from(*seq).is_ok())
            .ok_or_else(|| StoreError::Engine(format!("the log of {} is full", self.space)))?;
        match envelope.kind {
            Kind::Change => {}
            Kind::Snapshot => {
                // Validation guarantees both fields; absent ones would cover nothing.
                let upto = envelope.upto_seq.unwrap_or(0);
                if upto > self.head {
                    return Ok(AppendOutcome::SnapshotAhead { head: self.head });
                }
                let live = self.live.entry(envelope.doc).or_default();
                let covers: HashSet<&EnvelopeId> = envelope.covers.iter().flatten().collect();
                let missing: Vec<EnvelopeId> = live
                    .range(..=upto)
                    .filter(|(_, id)| !covers.contains(id))
                    .map(|(_, id)| *id)
                    .collect();
                if !missing.is_empty() {
                    return Ok(AppendOutcome::SnapshotStale { missing });
                }
                // Every live envelope up to `upto` is covered: prune them all; ids stay.
                let kept = live.split_off(&upto.saturating_add(1));
                let pruned = std::mem::replace(live, kept);
                for old in pruned.into_keys() {
                    self.drop_live(old);
                }
            }
            Kind::Tombstone => {
                let live = std::mem::take(self.live.entry(envelope.doc).or_default());
                for old in live.into_keys() {
                    self.drop_live(old);
                }
                self.deleted.insert(envelope.doc);
                self.new_tombstones.push((envelope.doc, seq));
            }
        }
        if let Some(live) = self.live.get_mut(&envelope.doc) {
            live.insert(seq, envelope.id);
        }
        let entry = IdEntry { seq, digest };
        self.ids.insert(envelope.id, entry);
        self.new_ids.push((envelope.id, entry));
        self.inserts.insert(
            seq,
            NewEnvelope {
                doc: envelope.doc,
                id: envelope.id,
                encoded: envelope.encode(),
            },
        );
        self.head = seq;
        Ok(AppendOutcome::Stored { seq })
    }
}

pub(super) async fn append(
    pool: &PgPool,
    space: &SpaceId,
    items: Vec<AppendItem>,
    notify_head: bool,
) -> StoreResult<Vec<AppendOutcome>> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let name = space.name();
    let mut tx = pool.begin().await?;
    // The counter row: held until commit, so concurrent appends (from any instance) take seqs
    // one after another. `NO KEY` leaves the foreign-key checks of other tables unblocked.
    let row = sqlx::query("SELECT head, epoch FROM spaces WHERE space = $1 FOR NO KEY UPDATE")
        .bind(&name)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(row) = row else {
        tx.rollback().await?;
        // The caller checked the space exists, but an erasure can win the race in between;
        // refusing (nothing is written or acknowledged) keeps an erased log from coming back.
        return Err(StoreError::Engine(format!(
            "append to space {space} which does not exist (erased?)"
        )));
    };
    let head = to_u64(row.try_get(0)?, "space head")?;
    let epoch = to_u32(row.try_get(1)?, "space epoch")?;

    let batch_ids: Vec<[u8; 32]> = items.iter().map(|item| item.envelope.id.0).collect();
    let mut docs: Vec<[u8; 16]> = items.iter().map(|item| item.envelope.doc.0).collect();
    docs.sort_unstable();
    docs.dedup();
    let mut pruning_docs: Vec<[u8; 16]> = items
        .iter()
        .filter(|item| matches!(item.envelope.kind, Kind::Snapshot | Kind::Tombstone))
        .map(|item| item.envelope.doc.0)
        .collect();
    pruning_docs.sort_unstable();
    pruning_docs.dedup();

    let mut ids = HashMap::new();
    for row in
        sqlx::query("SELECT id, seq, digest FROM envelope_ids WHERE space = $1 AND id = ANY($2)")
            .bind(&name)
            .bind(&batch_ids)
            .fetch_all(&mut *tx)
            .await?
    {
        let id: [u8; 32] = row.try_get(0)?;
        let entry = IdEntry {
            seq: to_u64(row.try_get(1)?, "envelope id seq")?,
            digest: row.try_get(2)?,
        };
        ids.insert(EnvelopeId::from(id), entry);
    }
    let mut deleted = HashSet::new();
    for row in sqlx::query("SELECT doc FROM tombstones WHERE space = $1 AND doc = ANY($2)")
        .bind(&name)
        .bind(&docs)
        .fetch_all(&mut *tx)
        .await?
    {
        let doc: [u8; 16] = row.try_get(0)?;
        deleted.insert(DocId::from(doc));
    }
    // Every pruning document gets an entry, so changes to it earlier in the batch are tracked.
    let mut live: HashMap<DocId, BTreeMap<u64, EnvelopeId>> = pruning_docs
        .iter()
        .map(|doc| (DocId::from(*doc), BTreeMap::new()))
        .collect();
    if !pruning_docs.is_empty() {
        for row in
            sqlx::query("SELECT doc, seq, id FROM envelopes WHERE space = $1 AND doc = ANY($2)")
                .bind(&name)
                .bind(&pruning_docs)
                .fetch_all(&mut *tx)
                .await?
        {
            let doc: [u8; 16] = row.try_get(0)?;
            let seq = to_u64(row.try_get(1)?, "envelope seq")?;
            let id: [u8; 32] = row.try_get(2)?;
            live.entry(DocId::from(doc))
                .or_default()
                .insert(seq, EnvelopeId::from(id));
        }
    }

    let mut log = PendingAppend {
        space: *space,
        head,
        epoch,
        ids,
        deleted,
        live,
        inserts: BTreeMap::new(),
        deletes: Vec::new(),
        new_ids: Vec::new(),
        new_tombstones: Vec::new(),
    };
    let mut outcomes = Vec::with_capacity(items.len());
    for item in items {
        outcomes.push(log.decide(item)?);
    }
    if log.head == head {
        // Nothing stored: the transaction ends without a write.
        tx.rollback().await?;
        return Ok(outcomes);
    }
    write(&mut tx, &name, &log).await?;
    if notify_head {
        // Queued with the transaction: listeners hear of the head only once it is committed.
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(super::HEADS_CHANNEL)
            .bind(format!("{name} {}", log.head))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(outcomes)
}

/// Applies a decided append: deletions first (a seq is never reused, so they cannot meet the
/// inserts), then the envelopes, their ids, tombstones and the new head.
async fn write(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    name: &str,
    log: &PendingAppend,
) -> StoreResult<()> {
    if !log.deletes.is_empty() {
        let seqs = log
            .deletes
            .iter()
            .map(|seq| to_i64(*seq, "seq"))
            .collect::<StoreResult<Vec<_>>>()?;
        sqlx::query("DELETE FROM envelopes WHERE space = $1 AND seq = ANY($2)")
            .bind(name)
            .bind(seqs)
            .execute(&mut **tx)
            .await?;
    }
    if !log.inserts.is_empty() {
        let mut seqs = Vec::with_capacity(log.inserts.len());
        let mut docs = Vec::with_capacity(log.inserts.len());
        let mut ids = Vec::with_capacity(log.inserts.len());
        let mut bodies = Vec::with_capacity(log.inserts.len());
        for (seq, envelope) in &log.inserts {
            seqs.push(to_i64(*seq, "seq")?);
            docs.push(envelope.doc.0);
            ids.push(envelope.id.0);
            bodies.push(envelope.encoded.as_slice());
        }
        sqlx::query(
            "INSERT INTO envelopes (space, seq, doc, id, envelope) \
             SELECT $1, * FROM UNNEST($2::bigint[], $3::bytea[], $4::bytea[], $5::bytea[])",
        )
        .bind(name)
        .bind(seqs)
        .bind(docs)
        .bind(ids)
        .bind(bodies)
        .execute(&mut **tx)
        .await?;
    }
    let mut ids = Vec::with_capacity(log.new_ids.len());
    let mut seqs = Vec::with_capacity(log.new_ids.len());
    let mut digests = Vec::with_capacity(log.new_ids.len());
    for (id, entry) in &log.new_ids {
        ids.push(id.0);
        seqs.push(to_i64(entry.seq, "seq")?);
        digests.push(entry.digest);
    }
    sqlx::query(
        "INSERT INTO envelope_ids (space, id, seq, digest) \
         SELECT $1, * FROM UNNEST($2::bytea[], $3::bigint[], $4::bytea[])",
    )
    .bind(name)
    .bind(ids)
    .bind(seqs)
    .bind(digests)
    .execute(&mut **tx)
    .await?;
    if !log.new_tombstones.is_empty() {
        let mut docs = Vec::with_capacity(log.new_tombstones.len());
        let mut seqs = Vec::with_capacity(log.new_tombstones.len());
        for (doc, seq) in &log.new_tombstones {
            docs.push(doc.0);
            seqs.push(to_i64(*seq, "seq")?);
        }
        sqlx::query(
            "INSERT INTO tombstones (space, doc, seq) \
             SELECT $1, * FROM UNNEST($2::bytea[], $3::bigint[])",
        )
        .bind(name)
        .bind(docs)
        .bind(seqs)
        .execute(&mut **tx)
        .await?;
    }
    sqlx::query("UPDATE spaces SET head = $2 WHERE space = $1")
        .bind(name)
        .bind(to_i64(log.head, "head")?)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
