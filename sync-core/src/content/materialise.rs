//! Materialising the public content that a set of public envelopes holds.

use std::collections::BTreeMap;

use automerge::{Automerge, ReadDoc};
use ed25519_dalek::VerifyingKey;
use haven_protocol::{DocId, Envelope, EnvelopeId};

use super::verify::{VerifyError, verify_public_envelope};
use crate::documents::{
    Article, DocType, Document, DocumentError, Manifest, ResourceList, doc_type,
};

/// The public content held by a set of envelopes, each checked against the pinned keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicContent {
    /// Sorted by slug.
    pub articles: Vec<Article>,
    /// Sorted by slug.
    pub resource_lists: Vec<ResourceList>,
    /// The manifest with the highest version, if any.
    pub manifest: Option<Manifest>,
    /// Envelopes that were refused, and why.
    pub rejected: Vec<RejectedEnvelope>,
    /// Documents that could not be read (malformed, unknown type or newer schema).
    pub unreadable: Vec<UnreadableDocument>,
    /// Documents still waiting for changes they depend on; they show an earlier state.
    pub incomplete: Vec<DocId>,
}

/// An envelope [`PublicContent::from_envelopes`] refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedEnvelope {
    pub id: EnvelopeId,
    pub doc: DocId,
    pub reason: VerifyError,
}

/// A document [`PublicContent::from_envelopes`] could not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadableDocument {
    pub doc: DocId,
    pub error: DocumentError,
}

impl PublicContent {
    /// Verifies each envelope against the `pinned` content keys, applies the changes (in any
    /// order: a change whose dependencies are missing waits for them) and reads the documents.
    /// Refused envelopes and unreadable documents are reported, never fatal: one bad envelope
    /// must not hide every hotline.
    pub fn from_envelopes<'a>(
        envelopes: impl IntoIterator<Item = &'a Envelope>,
        pinned: &[VerifyingKey],
    ) -> Self {
        let mut docs: BTreeMap<DocId, Automerge> = BTreeMap::new();
        let mut rejected = Vec::new();
        for envelope in envelopes {
            let applied = verify_public_envelope(envelope, pinned).and_then(|change| {
                docs.entry(envelope.doc)
                    .or_default()
                    .apply_changes([change])
                    .map_err(|_| VerifyError::CannotApply)
            });
            if let Err(reason) = applied {
                rejected.push(RejectedEnvelope {
                    id: envelope.id,
                    doc: envelope.doc,
                    reason,
                });
            }
        }

        let mut articles = Vec::new();
        let mut resource_lists = Vec::new();
        let mut manifests = Vec::new();
        let mut unreadable = Vec::new();
        let mut incomplete = Vec::new();
        for (doc_id, doc) in &docs {
            if !doc.get_missing_deps(&[]).is_empty() {
                incomplete.push(*doc_id);
            }
            if doc.get_heads().is_empty() {
                // Nothing applied yet: every change still waits for a dependency.
                continue;
            }
            let read = doc_type(doc).and_then(|kind| match kind {
                DocType::Article => Article::hydrate(doc).map(|a| articles.push((*doc_id, a))),
                DocType::ResourceList => {
                    ResourceList::hydrate(doc).map(|l| resource_lists.push((*doc_id, l)))
                }
                DocType::Manifest => Manifest::hydrate(doc).map(|m| manifests.push((*doc_id, m))),
                // A private document type has no business in the public space.
                DocType::JournalEntry
                | DocType::JournalIndex
                | DocType::SavedResources
                | DocType::ReadingState => Err(DocumentError::Invalid {
                    field: "type".to_owned(),
                    reason: format!("`{kind}` is a private document type, not public content"),
                }),
            });
            if let Err(error) = read {
                unreadable.push(UnreadableDocument {
                    doc: *doc_id,
                    error,
                });
            }
        }
        // Deterministic order whatever order the envelopes came in; the doc id breaks ties.
        articles.sort_by(|(a_id, a), (b_id, b)| a.slug.cmp(&b.slug).then(a_id.cmp(b_id)));
        resource_lists.sort_by(|(a_id, a), (b_id, b)| a.slug.cmp(&b.slug).then(a_id.cmp(b_id)));
        let manifest = manifests
            .into_iter()
            .max_by(|(a_id, a), (b_id, b)| a.version.cmp(&b.version).then(b_id.cmp(a_id)))
            .map(|(_, manifest)| manifest);
        Self {
            articles: articles.into_iter().map(|(_, article)| article).collect(),
            resource_lists: resource_lists.into_iter().map(|(_, list)| list).collect(),
            manifest,
            rejected,
            unreadable,
            incomplete,
        }
    }
}
