//! Planning a publish: from the public space as it is and a [`ContentSet`] to the signed envelopes
//! that make the space hold that content.
//!
//! Identifiers, all derived so that a publish is reproducible and a retry carries the same bytes:
//! - document ids: HMAC of `article:<slug>` / `resources:<stem>` / `manifest` under a key derived
//!   from the content secret (see [`ContentKey`]);
//! - the Automerge actor and the envelope `device`: hashes of the content public key, so every
//!   publish from one key continues one actor's history and one counter;
//! - envelope ids: the Automerge change hash itself. Private envelopes use a keyed hash so that
//!   the server cannot link ciphertexts to plaintext; public content is plaintext anyway, so the
//!   plain hash hides nothing and lets anyone check it.
//!
//! Because the actor is fixed, two publishes from the same key must not run from different views
//! of the space: each must start from the complete, current public log, or they would both write
//! the same actor sequence number. [`plan_publish`] refuses a document whose history is incomplete.

use std::collections::{BTreeMap, BTreeSet};

use automerge::transaction::CommitOptions;
use automerge::{ActorId, Automerge, Change, ReadDoc};
use haven_protocol::{
    Blob, Bytes, DeviceId, DocId, Envelope, EnvelopeId, EnvelopeLimits, Kind, SequencedEnvelope,
    SpaceId,
};

use super::datetime::DAY_MS;
use super::key::{ContentKey, publisher_actor, publisher_device};
use super::verify::{VerifyError, verify_public_envelope};
use super::{ContentError, ContentSet};
use crate::documents::{
    Article, DocType, Document, Manifest, ManifestEntry, ResourceList, doc_type,
};

/// How long a manifest is valid after it is signed: 180 days.
pub const MANIFEST_LIFETIME_MS: i64 = 180 * DAY_MS;
/// An unchanged publish still re-signs the manifest (new version, new expiry) once it has less
/// than this left, so unchanged content does not go stale on devices: 30 days.
pub const MANIFEST_REFRESH_MS: i64 = 30 * DAY_MS;

const MANIFEST_LABEL: &str = "manifest";

/// What to push, in order, and what was found on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishPlan {
    /// Signed public envelopes: content changes first, the manifest change last, so a device
    /// never sees a manifest before the changes it lists.
    pub envelopes: Vec<Envelope>,
    pub report: PublishReport,
}

impl PublishPlan {
    /// Whether there is nothing to push: the public space already holds this content.
    pub fn is_empty(&self) -> bool {
        self.envelopes.is_empty()
    }
}

/// What a publish changes and what it noticed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishReport {
    /// One entry per article and resource list of the content set, in its order.
    pub documents: Vec<DocumentReport>,
    /// Documents in the public space whose source file is gone. This version leaves them (and
    /// their manifest entries) as they are; deleting public documents comes later.
    pub missing_sources: Vec<MissingSource>,
    /// Envelopes of `existing` that were not used: not signed by this key, or not a change.
    pub skipped: Vec<SkippedEnvelope>,
    /// The manifest's version after the publish, if there is a manifest.
    pub manifest_version: Option<u64>,
    /// Whether the plan carries a new manifest version.
    pub manifest_changed: bool,
}

/// What happens to one content document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentReport {
    pub doc: DocId,
    pub kind: DocType,
    pub slug: String,
    pub outcome: DocumentOutcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentOutcome {
    /// First publish of this document.
    Created,
    /// The document changes.
    Updated,
    /// The public space already holds this content.
    Unchanged,
}

/// A public document whose source is no longer in the content set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingSource {
    pub doc: DocId,
    /// `None` if the document could not be read.
    pub kind: Option<DocType>,
    pub slug: Option<String>,
}

/// An envelope of `existing` that the plan did not use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedEnvelope {
    pub seq: u64,
    pub id: EnvelopeId,
    pub doc: DocId,
    pub reason: VerifyError,
}

/// One content document to publish.
enum Source<'a> {
    Article(&'a Article),
    ResourceList(&'a ResourceList),
}

impl Source<'_> {
    fn kind(&self) -> DocType {
        match self {
            Self::Article(_) => DocType::Article,
            Self::ResourceList(_) => DocType::ResourceList,
        }
    }

    fn slug(&self) -> &str {
        match self {
            Self::Article(article) => &article.slug,
            Self::ResourceList(list) => &list.slug,
        }
    }

    fn label(&self) -> String {
        match self {
            Self::Article(article) => format!("article:{}", article.slug),
            Self::ResourceList(list) => format!("resources:{}", list.slug),
        }
    }
}

/// Plans a publish of `content` with `key`, given `existing`: the public space as pulled from the
/// server. Pure and deterministic: the same inputs give the same envelopes, byte for byte.
///
/// Envelopes of `existing` not signed by `key` are skipped (and reported). Unchanged content gives
/// an empty plan; an edit to one article gives that article's change and a manifest change.
pub fn plan_publish(
    key: &ContentKey,
    existing: &[SequencedEnvelope],
    content: &ContentSet,
    now_ms: i64,
) -> Result<PublishPlan, ContentError> {
    let public_key = key.verifying_key();
    let publisher = Publisher {
        key,
        actor: publisher_actor(&public_key),
        device: publisher_device(&public_key),
        commit_time_s: now_ms.div_euclid(1000),
    };
    let mut report = PublishReport::default();

    // 1. The public documents as they are, from the envelopes this key signed.
    let mut docs: BTreeMap<DocId, Automerge> = BTreeMap::new();
    let mut last_ctr = 0;
    for sequenced in existing {
        let envelope = &sequenced.envelope;
        let change = match verify_public_envelope(envelope, std::slice::from_ref(&public_key)) {
            Ok(change) => change,
            Err(reason) => {
                report.skipped.push(SkippedEnvelope {
                    seq: sequenced.seq,
                    id: envelope.id,
                    doc: envelope.doc,
                    reason,
                });
                continue;
            }
        };
        if envelope.device == publisher.device {
            last_ctr = last_ctr.max(envelope.ctr);
        }
        docs.entry(envelope.doc)
            .or_default()
            .apply_changes([change])
            .map_err(|source| ContentError::Apply {
                doc: envelope.doc,
                source: Box::new(source),
            })?;
    }
    for (doc_id, doc) in &docs {
        let missing = doc.get_missing_deps(&[]).len();
        if missing > 0 {
            return Err(ContentError::IncompleteHistory {
                doc: *doc_id,
                missing,
            });
        }
    }

    // 2. One commit per changed content document.
    let sources = sources(content)?;
    let mut changes: Vec<(DocId, Change)> = Vec::new();
    let mut content_ids = BTreeSet::new();
    for source in &sources {
        let doc_id = key.derive_doc_id(&source.label());
        content_ids.insert(doc_id);
        let doc = docs.entry(doc_id).or_default();
        let existed = !doc.get_heads().is_empty();
        let new_changes = publisher.commit(doc_id, doc, |tx| match source {
            Source::Article(article) => article.reconcile(tx),
            Source::ResourceList(list) => list.reconcile(tx),
        })?;
        let outcome = match (existed, new_changes.is_empty()) {
            (_, true) => DocumentOutcome::Unchanged,
            (false, false) => DocumentOutcome::Created,
            (true, false) => DocumentOutcome::Updated,
        };
        changes.extend(new_changes.into_iter().map(|change| (doc_id, change)));
        report.documents.push(DocumentReport {
            doc: doc_id,
            kind: source.kind(),
            slug: source.slug().to_owned(),
            outcome,
        });
    }

    // 3. The manifest: every content document with its heads.
    let manifest_id = key.derive_doc_id(MANIFEST_LABEL);
    let previous = match docs.get(&manifest_id) {
        Some(doc) => {
            Some(
                Manifest::hydrate(doc).map_err(|source| ContentError::ExistingDocument {
                    doc: manifest_id,
                    source,
                })?,
            )
        }
        None => None,
    };
    let mut entries = BTreeMap::new();
    for document in &report.documents {
        if let Some(doc) = docs.get(&document.doc) {
            entries.insert(
                document.doc,
                manifest_entry(document.kind, &document.slug, doc),
            );
        }
    }
    for (doc_id, doc) in &docs {
        if *doc_id == manifest_id || content_ids.contains(doc_id) {
            continue;
        }
        let summary = summarise(doc);
        if let Some((kind, slug)) = &summary {
            entries.insert(*doc_id, manifest_entry(*kind, slug, doc));
        }
        let (kind, slug) = summary.unzip();
        report.missing_sources.push(MissingSource {
            doc: *doc_id,
            kind,
            slug,
        });
    }
    let write_manifest = previous.as_ref().is_none_or(|manifest| {
        manifest.entries != entries
            || manifest.expires_at.saturating_sub(now_ms) < MANIFEST_REFRESH_MS
    });
    report.manifest_version = previous.as_ref().map(|manifest| manifest.version);
    if write_manifest {
        let version = match &previous {
            Some(manifest) => manifest
                .version
                .checked_add(1)
                .ok_or(ContentError::CounterExhausted)?,
            None => 1,
        };
        let manifest = Manifest {
            version,
            expires_at: now_ms.saturating_add(MANIFEST_LIFETIME_MS),
            entries,
        };
        let doc = docs.entry(manifest_id).or_default();
        let new_changes = publisher.commit(manifest_id, doc, |tx| manifest.reconcile(tx))?;
        changes.extend(new_changes.into_iter().map(|change| (manifest_id, change)));
        report.manifest_version = Some(version);
        report.manifest_changed = true;
    }

    // 4. Seal: one signed envelope per change, counters continuing this key's sequence.
    let mut envelopes = Vec::with_capacity(changes.len());
    for (doc_id, change) in changes {
        last_ctr = last_ctr
            .checked_add(1)
            .ok_or(ContentError::CounterExhausted)?;
        envelopes.push(publisher.seal(doc_id, last_ctr, change)?);
    }
    Ok(PublishPlan { envelopes, report })
}

/// The content set as documents to publish, refusing two sources with one slug.
fn sources(content: &ContentSet) -> Result<Vec<Source<'_>>, ContentError> {
    let sources: Vec<Source<'_>> = content
        .articles
        .iter()
        .map(Source::Article)
        .chain(content.resource_lists.iter().map(Source::ResourceList))
        .collect();
    let mut seen = BTreeSet::new();
    for source in &sources {
        if !seen.insert((source.kind(), source.slug())) {
            return Err(ContentError::DuplicateSlug {
                kind: source.kind(),
                slug: source.slug().to_owned(),
            });
        }
    }
    Ok(sources)
}

fn manifest_entry(kind: DocType, slug: &str, doc: &Automerge) -> ManifestEntry {
    let mut heads = doc.get_heads();
    heads.sort();
    ManifestEntry {
        kind,
        slug: slug.to_owned(),
        heads,
    }
}

/// The kind and slug of a content document, if it is a readable one.
fn summarise(doc: &Automerge) -> Option<(DocType, String)> {
    match doc_type(doc).ok()? {
        DocType::Article => Article::hydrate(doc)
            .ok()
            .map(|article| (DocType::Article, article.slug)),
        DocType::ResourceList => ResourceList::hydrate(doc)
            .ok()
            .map(|list| (DocType::ResourceList, list.slug)),
        DocType::Manifest
        | DocType::JournalEntry
        | DocType::JournalIndex
        | DocType::SavedResources
        | DocType::ReadingState => None,
    }
}

/// Writes and signs as the holder of one content key.
struct Publisher<'a> {
    key: &'a ContentKey,
    actor: ActorId,
    device: DeviceId,
    /// The commit time, from `now_ms`. Automerge documents `CommitOptions::time` as Unix
    /// seconds (and other Automerge tools read it so), hence seconds, not milliseconds.
    commit_time_s: i64,
}

impl Publisher<'_> {
    /// Runs `write` in one transaction as the publisher's actor and returns the changes it made
    /// (none if `write` found nothing to change).
    fn commit(
        &self,
        doc_id: DocId,
        doc: &mut Automerge,
        write: impl FnOnce(
            &mut automerge::transaction::Transaction<'_>,
        ) -> Result<(), crate::documents::DocumentError>,
    ) -> Result<Vec<Change>, ContentError> {
        let before = doc.get_heads();
        doc.set_actor(self.actor.clone());
        let mut tx = doc.transaction();
        // On error the transaction is dropped, which rolls it back.
        write(&mut tx).map_err(|source| ContentError::Write {
            doc: doc_id,
            source,
        })?;
        let (hash, _) = tx.commit_with(CommitOptions::default().with_time(self.commit_time_s));
        Ok(match hash {
            Some(_) => doc.get_changes(&before),
            None => Vec::new(),
        })
    }

    /// The signed public envelope carrying `change`.
    fn seal(&self, doc: DocId, ctr: u64, mut change: Change) -> Result<Envelope, ContentError> {
        let mut envelope = Envelope {
            id: Bytes(change.hash().0),
            doc,
            kind: Kind::Change,
            device: self.device,
            ctr,
            key_epoch: 0,
            body: Blob(change.bytes().into_owned()),
            sig: None,
            covers: None,
            upto_seq: None,
        };
        envelope.sig = Some(self.key.sign(&envelope.signed_bytes(&SpaceId::Public)));
        envelope
            .validate(&SpaceId::Public, &EnvelopeLimits::default())
            .map_err(|source| ContentError::Envelope { doc, source })?;
        Ok(envelope)
    }
}
