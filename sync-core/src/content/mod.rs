//! Public content: articles and resource lists that anyone can read, signed by a content key.
//!
//! The publishing flow, shared by the CLI (`haven content publish`) and the server's first-start
//! sample content:
//!
//! 1. [`ContentSet::load_dir`] parses a content directory (`articles/*.md`, `resources/*.toml`).
//! 2. [`plan_publish`] rebuilds the current public documents from the envelopes already in the
//!    public space, applies the content to them, and returns the signed envelopes to push: one per
//!    changed document, then one for the manifest. It is pure and deterministic.
//!
//! The client library ships the first publication of the sample content as a [`PublicBundle`]
//! ([`BUNDLED_PUBLIC_CONTENT`]), so that hotlines work at first launch with no network; servers
//! publish exactly its envelopes first (see the [`PublicBundle`] docs for why).
//!
//! On devices, [`verify_public_envelope`] checks each pulled envelope against the pinned content
//! keys, [`PublicContent::from_envelopes`] materialises what they hold, and [`ManifestGuard`]
//! refuses a manifest whose version goes backwards.

mod bundle;
mod datetime;
mod key;
mod materialise;
mod publish;
mod source;
mod verify;

use automerge::AutomergeError;
use haven_protocol::{DocId, EnvelopeError};

use crate::documents::{DocType, DocumentError};

pub use bundle::{
    BUNDLE_MAGIC, BUNDLED_PUBLIC_CONTENT, BundleError, MAX_BUNDLE_BYTES, MAX_BUNDLE_ENVELOPES,
    MAX_RECORD_BYTES, PublicBundle, bundled_dev_content_key,
};
pub use ed25519_dalek::VerifyingKey;
pub use key::{ContentKey, KEY_FILE_KIND, KeyError, parse_public_key};
pub use materialise::{PublicContent, RejectedEnvelope, UnreadableDocument};
pub use publish::{
    DocumentOutcome, DocumentReport, MANIFEST_LIFETIME_MS, MANIFEST_REFRESH_MS, MissingSource,
    PublishPlan, PublishReport, SkippedEnvelope, plan_publish,
};
pub use source::{ContentSet, parse_article, parse_resource_list};
pub use verify::{ManifestGuard, VerifyError, verify_public_envelope};

/// Why content could not be parsed or published.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: {reason}")]
    File { file: String, reason: String },
    #[error("{file}: {message}")]
    Syntax { file: String, message: String },
    #[error("{file}: field `{field}`: {reason}")]
    Field {
        file: String,
        field: String,
        reason: String,
    },
    #[error("two {kind} sources have the slug `{slug}`")]
    DuplicateSlug { kind: DocType, slug: String },
    #[error(
        "public document {} lacks {missing} change(s) it depends on; pull the whole public space before publishing",
        .doc.to_hex()
    )]
    IncompleteHistory { doc: DocId, missing: usize },
    #[error("public document {} cannot take a signed change: {source}", .doc.to_hex())]
    Apply {
        doc: DocId,
        #[source]
        source: Box<AutomergeError>,
    },
    #[error("public document {} is unreadable: {source}", .doc.to_hex())]
    ExistingDocument {
        doc: DocId,
        #[source]
        source: DocumentError,
    },
    #[error("cannot write document {}: {source}", .doc.to_hex())]
    Write {
        doc: DocId,
        #[source]
        source: DocumentError,
    },
    #[error("envelope for document {} is invalid: {source}", .doc.to_hex())]
    Envelope {
        doc: DocId,
        #[source]
        source: EnvelopeError,
    },
    #[error("the publisher's envelope counter or the manifest version is exhausted")]
    CounterExhausted,
}
