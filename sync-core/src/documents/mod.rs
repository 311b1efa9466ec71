//! Typed views over Haven's Automerge documents.
//!
//! Each document type is a plain Rust struct that can be read from a document ([`Document::hydrate`])
//! and written into one ([`Document::reconcile`]). Reconciling writes only what differs, so writing
//! the same value twice produces no Automerge operations, and editing one field produces a small
//! change: that is what keeps republished content and synced edits cheap.
//!
//! Every document root carries `schema` (the document schema version, [`SCHEMA_VERSION`]) and
//! `type` (a [`DocType`]). Hydration never panics on a malformed document: it returns a
//! [`DocumentError`] naming the offending field.
//!
//! Public documents ([`Article`], [`ResourceList`], [`Manifest`]) are written whole by the
//! publisher. Private documents are edited on several devices offline and must merge without
//! losing a word, so they come with an editing handle ([`DocHandle`]) whose every edit is one
//! Automerge change:
//!
//! - [`JournalEntry`] ([`JournalEntryDoc`]): one document per entry, created by one device.
//! - The per-account singletons [`JournalIndex`], [`SavedResources`] and [`ReadingState`]: each
//!   starts from a fixed genesis change ([`genesis`]) so that two devices that create one offline
//!   merge instead of overwriting each other, and lives at a derived id ([`singleton_doc_id`]).
//!
//! Text positions in this module count Unicode scalar values (Rust `char`s), never UTF-8 bytes or
//! UTF-16 code units; every document this module builds or loads indexes text that way
//! ([`TEXT_ENCODING`]), whatever features other crates turn on in automerge.

mod article;
mod fields;
pub mod genesis;
mod handle;
mod journal_entry;
mod journal_index;
mod manifest;
mod preflight;
mod reading_state;
mod resource_list;
mod saved_resources;
pub mod untrusted;

use std::fmt;

use automerge::transaction::Transactable;
use automerge::{AutomergeError, ReadDoc, TextEncoding};

pub use article::Article;
pub use genesis::{GENESIS_ACTOR, genesis_doc, genesis_hash, singleton_doc_id};
pub use handle::{ChangeInfo, DocHandle, SingletonDocument, actor_for_device, load_doc, new_doc};
pub use journal_entry::{
    EXCERPT_CHARS, JournalEntry, JournalEntryDoc, JournalSummary, MAX_MOOD_CHARS, MAX_TAG_CHARS,
    MAX_TAGS,
};
pub use journal_index::{
    JournalIndex, JournalIndexDoc, MAX_SETTING_KEY_CHARS, MAX_SETTING_VALUE_CHARS,
};
pub use manifest::{Manifest, ManifestEntry};
pub use reading_state::{PROGRESS_SCALE, ReadingProgress, ReadingState, ReadingStateDoc};
pub use resource_list::{Resource, ResourceList};
pub use saved_resources::{
    ContactId, MAX_CONTACT_NAME_CHARS, MAX_CONTACT_NOTE_CHARS, MAX_CONTACT_PHONE_CHARS,
    MAX_RESOURCE_NAME_CHARS, SavedResource, SavedResources, SavedResourcesDoc, TrustedContact,
    new_contact_id,
};

/// How every document built or loaded here indexes text: by Unicode scalar value. Automerge's
/// default depends on crate features (`utf8-indexing`, `utf16-indexing`) that any crate in the
/// build could switch on, so it is always set explicitly.
pub const TEXT_ENCODING: TextEncoding = TextEncoding::UnicodeCodePoint;

/// The document schema version this build reads and writes. A document with a higher version was
/// written by a newer client and is refused rather than misread.
pub const SCHEMA_VERSION: u64 = 1;

/// The `type` of a document, stored at its root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DocType {
    /// A public awareness article ([`Article`]).
    Article,
    /// A public list of hotlines and services ([`ResourceList`]).
    ResourceList,
    /// The signed list of public documents and their heads ([`Manifest`]).
    Manifest,
    /// One private journal entry ([`JournalEntry`]).
    JournalEntry,
    /// The private singleton listing journal entries, their deletions and settings
    /// ([`JournalIndex`]).
    JournalIndex,
    /// The private singleton of saved public resources and trusted contacts ([`SavedResources`]).
    SavedResources,
    /// The private singleton of bookmarks and reading progress ([`ReadingState`]).
    ReadingState,
}

impl DocType {
    /// Every document type, for exhaustive tests and listings.
    pub const ALL: [Self; 7] = [
        Self::Article,
        Self::ResourceList,
        Self::Manifest,
        Self::JournalEntry,
        Self::JournalIndex,
        Self::SavedResources,
        Self::ReadingState,
    ];

    /// The value of the root `type` field. These strings are part of the stored format (and of
    /// every singleton's genesis change and derived id), so they never change.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Article => "article",
            Self::ResourceList => "resource_list",
            Self::Manifest => "manifest",
            Self::JournalEntry => "journal_entry",
            Self::JournalIndex => "journal_index",
            Self::SavedResources => "saved_resources",
            Self::ReadingState => "reading_state",
        }
    }

    /// Parses the value of a root `type` field.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }

    /// Whether documents of this type live in an account's private space (encrypted, never read
    /// by the server) rather than in the public space.
    pub fn is_private(self) -> bool {
        !matches!(self, Self::Article | Self::ResourceList | Self::Manifest)
    }

    /// Whether this type is a per-account singleton: one document per account, at a derived id
    /// ([`singleton_doc_id`]), starting from a fixed genesis change ([`genesis_doc`]).
    pub fn is_singleton(self) -> bool {
        matches!(
            self,
            Self::JournalIndex | Self::SavedResources | Self::ReadingState
        )
    }
}

impl fmt::Display for DocType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a document could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    #[error("field `{field}` is missing")]
    Missing { field: String },
    #[error("field `{field}` is not {expected}")]
    WrongType {
        field: String,
        expected: &'static str,
    },
    #[error("field `{field}` is invalid: {reason}")]
    Invalid { field: String, reason: String },
    #[error("document type is `{found}`, expected `{expected}`")]
    WrongDocType { expected: DocType, found: String },
    #[error("document schema {found} is newer than this build supports ({supported})")]
    UnsupportedSchema { found: u64, supported: u64 },
    /// A text edit addressed characters the field does not have. Positions and lengths count
    /// Unicode scalar values.
    #[error(
        "field `{field}` has {length} characters; cannot delete {delete} at position {position}"
    )]
    OutOfRange {
        field: String,
        position: usize,
        delete: usize,
        length: usize,
    },
    /// The document indexes text by another unit than Unicode scalar values, so positions given
    /// to it would be misread; build documents with [`new_doc`] / [`load_doc`].
    #[error("the document indexes text by {0}, not by Unicode scalar value")]
    TextEncoding(String),
    /// The operation needs a singleton document type and got another one.
    #[error("`{0}` is not a singleton document type")]
    NotSingleton(DocType),
    /// An Automerge operation failed; kept as text so the error stays comparable.
    #[error("automerge: {0}")]
    Automerge(String),
}

impl From<AutomergeError> for DocumentError {
    fn from(error: AutomergeError) -> Self {
        Self::Automerge(error.to_string())
    }
}

impl DocumentError {
    /// The field the error is about, if it is about one.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Missing { field }
            | Self::WrongType { field, .. }
            | Self::Invalid { field, .. }
            | Self::OutOfRange { field, .. } => Some(field),
            Self::WrongDocType { .. } | Self::NotSingleton(_) => Some(fields::TYPE_KEY),
            Self::UnsupportedSchema { .. } => Some(fields::SCHEMA_KEY),
            Self::Automerge(_) | Self::TextEncoding(_) => None,
        }
    }
}

/// A typed document: read from and written into an Automerge document.
pub trait Document: Sized {
    /// The root `type` this document carries.
    const TYPE: DocType;

    /// Reads the document. Fails with the offending field's name on a malformed document.
    fn hydrate<D: ReadDoc>(doc: &D) -> Result<Self, DocumentError>;

    /// Makes the document equal to `self`, writing only what differs. Whatever the document held
    /// before (even a malformed value), afterwards [`Document::hydrate`] returns `self`.
    fn reconcile<T: Transactable>(&self, tx: &mut T) -> Result<(), DocumentError>;
}

/// Reads a document's root `type`, checking its schema version first.
pub fn doc_type<D: ReadDoc>(doc: &D) -> Result<DocType, DocumentError> {
    let root = fields::MapReader::root(doc);
    fields::check_schema(&root)?;
    let found = root.str(fields::TYPE_KEY)?;
    DocType::parse(&found).ok_or_else(|| DocumentError::Invalid {
        field: fields::TYPE_KEY.to_owned(),
        reason: format!("unknown document type `{found}`"),
    })
}
