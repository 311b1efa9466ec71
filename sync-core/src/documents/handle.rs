//! An editing handle over one Automerge document of a known type.
//!
//! Private documents are edited on several devices, offline, and merged. A [`DocHandle`] makes
//! each editing call one Automerge change, stamped with the caller's time and a short message
//! naming the edit, or no change at all when the call alters nothing; a call that fails leaves the
//! document exactly as it was. Type-specific edits live next to each document type
//! (`impl DocHandle<JournalEntry>` and so on).

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::marker::PhantomData;

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, AutoCommit, ChangeHash, LoadOptions, ReadDoc};
use haven_protocol::DeviceId;

use super::{Document, DocumentError, TEXT_ENCODING, doc_type, genesis};

/// The Automerge actor of a device: its 16-byte device id, so every change names the device that
/// made it and no two devices share an actor (a restored backup is a new device, §2).
pub fn actor_for_device(device: &DeviceId) -> ActorId {
    ActorId::from(device.0)
}

/// A per-account singleton document: it exists once per account, at an id derived from the
/// account's singleton key ([`super::singleton_doc_id`]), and every copy of it starts from the
/// same genesis change ([`super::genesis_doc`]).
pub trait SingletonDocument: Document {
    /// The root collections the genesis change creates, in the order it creates them. Part of the
    /// stored format: changing it changes the genesis hash and splits every account's singleton.
    const ROOT_COLLECTIONS: &'static [&'static str];
}

/// One change of a document's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeInfo {
    /// The change hash, 64 lowercase hex characters.
    pub hash: String,
    /// The actor that made the change (a device id, or the genesis actor), lowercase hex.
    pub actor: String,
    /// The change's number among its actor's changes, from 1.
    pub seq: u64,
    /// When the change was made, in Unix **seconds** (Automerge's unit; the device's own clock,
    /// so only advisory).
    pub time_secs: i64,
    /// What the edit was (`title`, `body`, `tags`, ...), if the change carries a message.
    pub message: Option<String>,
}

/// A document of type `T` open for editing.
///
/// Built with a device's actor ([`actor_for_device`]) and the module's text encoding
/// ([`TEXT_ENCODING`]). [`DocHandle::doc_mut`] is for sync plumbing (applying and exporting
/// changes, saving); edit only through the typed methods, so each edit stays one change.
pub struct DocHandle<T> {
    doc: AutoCommit,
    kind: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for DocHandle<T> {
    // Never the content: a private document's text must not reach logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DocHandle")
            .field("actor", &self.doc.get_actor().to_hex_string())
            .finish_non_exhaustive()
    }
}

/// A fresh, empty document that indexes text by Unicode scalar value ([`TEXT_ENCODING`]), written
/// as `device`.
pub fn new_doc(device: &DeviceId) -> AutoCommit {
    AutoCommit::new_with_encoding(TEXT_ENCODING).with_actor(actor_for_device(device))
}

/// Loads a saved document (the output of `save`, or of `save_incremental` chunks concatenated) so
/// that it indexes text by Unicode scalar value, written as `device`.
pub fn load_doc(bytes: &[u8], device: &DeviceId) -> Result<AutoCommit, DocumentError> {
    let doc =
        AutoCommit::load_with_options(bytes, LoadOptions::new().text_encoding(TEXT_ENCODING))?;
    Ok(doc.with_actor(actor_for_device(device)))
}

impl<T: Document> DocHandle<T> {
    /// Wraps a document, checking its schema, its type and its text encoding.
    pub fn from_doc(doc: AutoCommit) -> Result<Self, DocumentError> {
        if doc.text_encoding() != TEXT_ENCODING {
            return Err(DocumentError::TextEncoding(format!(
                "{:?}",
                doc.text_encoding()
            )));
        }
        let found = doc_type(&doc)?;
        if found != T::TYPE {
            return Err(DocumentError::WrongDocType {
                expected: T::TYPE,
                found: found.as_str().to_owned(),
            });
        }
        Ok(Self {
            doc,
            kind: PhantomData,
        })
    }

    /// Loads a saved document of type `T`, to be edited as `device`.
    pub fn load(bytes: &[u8], device: &DeviceId) -> Result<Self, DocumentError> {
        Self::from_doc(load_doc(bytes, device)?)
    }

    /// Makes later edits as `device`.
    pub fn set_device(&mut self, device: &DeviceId) {
        self.doc.set_actor(actor_for_device(device));
    }

    /// The underlying document, for reading.
    pub fn doc(&self) -> &AutoCommit {
        &self.doc
    }

    /// The underlying document, for sync: `get_changes`, `apply_changes`, `load_incremental`,
    /// `save`. Uncommitted operations made through it are committed as a change of their own
    /// before the next typed edit.
    pub fn doc_mut(&mut self) -> &mut AutoCommit {
        &mut self.doc
    }

    pub fn into_doc(self) -> AutoCommit {
        self.doc
    }

    /// Reads the document.
    pub fn read(&self) -> Result<T, DocumentError> {
        T::hydrate(&self.doc)
    }

    /// The document's heads, sorted.
    pub fn heads(&mut self) -> Vec<ChangeHash> {
        let mut heads = self.doc.get_heads();
        heads.sort();
        heads
    }

    /// Makes the whole document equal to `value` as one change, writing only what differs (the
    /// generic "save this struct" path; the typed edits are finer and are what merges best).
    pub fn reconcile(
        &mut self,
        value: &T,
        now_ms: i64,
    ) -> Result<Option<ChangeHash>, DocumentError> {
        self.edit(now_ms, "reconcile", |doc| value.reconcile(doc))
    }

    /// Every change of the document, oldest first, in a causal order (a change always after the
    /// changes it depends on) that is the same on every device holding the same changes:
    /// concurrent changes are ordered by time, then actor, then sequence number, then hash.
    pub fn history(&mut self) -> Vec<ChangeInfo> {
        struct Node {
            info: ChangeInfo,
            deps: Vec<ChangeHash>,
        }
        let mut nodes: HashMap<ChangeHash, Node> = self
            .doc
            .get_changes_meta(&[])
            .into_iter()
            .map(|meta| {
                let info = ChangeInfo {
                    hash: meta.hash.to_string(),
                    actor: meta.actor.to_hex_string(),
                    seq: meta.seq,
                    time_secs: meta.timestamp,
                    message: meta.message.map(|message| message.into_owned()),
                };
                (
                    meta.hash,
                    Node {
                        info,
                        deps: meta.deps,
                    },
                )
            })
            .collect();
        // Kahn's algorithm; the ready set is ordered by the tie-break key.
        type Key = (i64, String, u64, ChangeHash);
        let key = |hash: &ChangeHash, info: &ChangeInfo| -> Key {
            (info.time_secs, info.actor.clone(), info.seq, *hash)
        };
        let mut waiting: HashMap<ChangeHash, usize> = HashMap::new();
        let mut dependents: HashMap<ChangeHash, Vec<ChangeHash>> = HashMap::new();
        let mut ready: BTreeSet<Key> = BTreeSet::new();
        for (hash, node) in &nodes {
            // A dependency the document does not hold cannot order anything here.
            let known: Vec<&ChangeHash> = node
                .deps
                .iter()
                .filter(|dep| nodes.contains_key(dep))
                .collect();
            if known.is_empty() {
                ready.insert(key(hash, &node.info));
            } else {
                waiting.insert(*hash, known.len());
                for dep in known {
                    dependents.entry(*dep).or_default().push(*hash);
                }
            }
        }
        let mut out = Vec::with_capacity(nodes.len());
        while let Some(next) = ready.pop_first() {
            let hash = next.3;
            for dependent in dependents.remove(&hash).unwrap_or_default() {
                if let Some(count) = waiting.get_mut(&dependent) {
                    *count -= 1;
                    if *count == 0 {
                        waiting.remove(&dependent);
                        if let Some(node) = nodes.get(&dependent) {
                            ready.insert(key(&dependent, &node.info));
                        }
                    }
                }
            }
            if let Some(node) = nodes.remove(&hash) {
                out.push(node.info);
            }
        }
        out
    }

    /// Runs `edit` and commits what it wrote as one change at `now_ms`, or nothing if it wrote
    /// nothing. If `edit` fails, everything it wrote is rolled back.
    pub(crate) fn edit<F>(
        &mut self,
        now_ms: i64,
        message: &str,
        edit: F,
    ) -> Result<Option<ChangeHash>, DocumentError>
    where
        F: FnOnce(&mut AutoCommit) -> Result<(), DocumentError>,
    {
        if self.doc.pending_ops() > 0 {
            // Operations someone made through doc_mut() and left open: keep them, as their own
            // change, so this edit stays exactly one change.
            self.doc.commit_with(commit_options(now_ms, None));
        }
        match edit(&mut self.doc) {
            Ok(()) => Ok(self.doc.commit_with(commit_options(now_ms, Some(message)))),
            Err(error) => {
                self.doc.rollback();
                Err(error)
            }
        }
    }
}

impl<T: SingletonDocument> DocHandle<T> {
    /// The singleton as every device starts it: the genesis change only, to be edited as
    /// `device`. A device always starts here, even when the singleton already exists elsewhere;
    /// the changes it then receives apply on top (the genesis change they depend on is the same).
    pub fn new(device: &DeviceId) -> Result<Self, DocumentError> {
        let mut doc = genesis::genesis_doc(T::TYPE)?;
        doc.set_actor(actor_for_device(device));
        Ok(Self {
            doc,
            kind: PhantomData,
        })
    }
}

/// Automerge stores a change's time in Unix seconds; Haven's clocks give milliseconds.
pub(crate) fn commit_options(now_ms: i64, message: Option<&str>) -> CommitOptions {
    let options = CommitOptions::default().with_time(now_ms.div_euclid(1000));
    match message {
        Some(message) => options.with_message(message),
        None => options,
    }
}
