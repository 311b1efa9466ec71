//! The public-content bundle: the signed first publication of the public space, shipped inside
//! the client library so that hotlines and articles are readable at the very first launch, with no
//! network (DESIGN.md §3).
//!
//! # Why the bundle is *the* first publication
//!
//! Every publish from one content key writes as one Automerge actor (see [`plan_publish`]). Two
//! independent first publishes of the same content differ in their timestamps, so they are two
//! different changes with the same actor and sequence numbers, and a device holding both would be
//! stuck: Automerge refuses the second history (`DuplicateSeqNumber`). So a bundle is not a
//! snapshot of "what the server has" but a prefix of the public log itself: a server publishes
//! exactly the bundle's envelopes first (`haven-server` does so on first start) and plans every
//! later publish on top of them ([`PublicBundle::sequenced`]). A device that applied the bundle
//! then pulls the same changes again, which Automerge ignores as duplicates.
//!
//! For the same reason a bundle is built from scratch once ([`PublicBundle::build`], the first
//! publication) and, when the content changes, extended ([`PublicBundle::extend`]) with the
//! publish a server would plan on top of it. Both are deterministic given their inputs.
//!
//! # File format (version 1)
//!
//! ```text
//! magic  "HAVENPB1"                      8 bytes
//! count  u32, big-endian                 number of envelopes
//! count × { len u32 big-endian ‖ Envelope::encode() (len bytes) }
//! ```
//!
//! Nothing may follow the last record. Binary rather than JSON lines because the records are
//! [`Envelope::encode`], the versioned codec the server's storage already uses and whose decoder
//! is tested never to panic on arbitrary input, so the bundle adds only framing; and because the
//! file is embedded in every app binary, where base64 inside JSON would add a third to its size.
//! Neither form would diff usefully in git: the bodies are compressed Automerge changes.
//!
//! The framing itself is not signed, and needs not be: every field of every envelope is covered by
//! its signature (the body through the SHA-256 in [`Envelope::signed_bytes`]), the framing must
//! account for every byte of the file, and the signed manifest must list exactly the documents
//! the bundle holds, at the heads the bundle reaches. So a changed, dropped or added byte or
//! record either fails to decode or fails [`PublicBundle::verify`], and the whole bundle is
//! refused.

use std::collections::{BTreeMap, BTreeSet};

use automerge::ChangeHash;
use ed25519_dalek::VerifyingKey;
use haven_protocol::envelope::DecodeError;
use haven_protocol::{DeviceId, DocId, Envelope, SequencedEnvelope};

use super::key::ContentKey;
use super::materialise::PublicContent;
use super::publish::plan_publish;
use super::verify::{VerifyError, check_signature, verify_public_envelope};
use super::{ContentError, ContentSet};
use crate::documents::DocumentError;

/// The first bytes of a bundle file, version 1.
pub const BUNDLE_MAGIC: &[u8; 8] = b"HAVENPB1";
/// The largest bundle file read or written: 64 MiB, far above any set of articles and resource
/// lists, and low enough that a hostile file cannot make a device allocate without bound.
pub const MAX_BUNDLE_BYTES: usize = 64 * 1024 * 1024;
/// The most envelopes a bundle may hold.
pub const MAX_BUNDLE_ENVELOPES: usize = 100_000;
/// The largest encoded envelope: the default body limit (4 MiB) plus room for the fixed header.
/// Bundles hold only changes, so no covers list can add to it.
pub const MAX_RECORD_BYTES: usize = 4 * 1024 * 1024 + 1024;

/// The development content bundle: `content/` published with the development content key
/// (`content/dev-content-key.json`), built by `haven content bundle` and committed as
/// `sync-core/assets/public-content.bundle`. Verify it against [`bundled_dev_content_key`].
///
/// This is **development content** signed with a key whose secret is public. An app with its
/// own content key ships its own bundle (built the same way with that key) and pins that key.
pub const BUNDLED_PUBLIC_CONTENT: &[u8] = include_bytes!("../../assets/public-content.bundle");

/// The public half of `content/dev-content-key.json`, written out so that the library never
/// carries the development key's secret (the test `the_dev_public_key_matches_the_key_file` keeps
/// the two in step).
const DEV_CONTENT_PUBLIC_KEY: [u8; 32] = [
    0xcf, 0x82, 0xf6, 0xc6, 0x9b, 0xa3, 0x8f, 0x0a, 0xe6, 0x7a, 0x2c, 0x92, 0xac, 0x74, 0x00, 0x78,
    0xfb, 0xd2, 0xb5, 0x59, 0xc8, 0x56, 0xe2, 0xe6, 0x9b, 0x94, 0x53, 0x40, 0x29, 0xc3, 0x14, 0x81,
];

/// The public half of the development content key that signs [`BUNDLED_PUBLIC_CONTENT`]: the
/// key a development build pins. Never pin it in production: anyone can sign with it.
pub fn bundled_dev_content_key() -> VerifyingKey {
    match VerifyingKey::from_bytes(&DEV_CONTENT_PUBLIC_KEY) {
        Ok(key) => key,
        // A constant; the test `the_dev_public_key_matches_the_key_file` proves it is a key.
        Err(error) => unreachable!("the development content key constant is invalid: {error}"),
    }
}

/// Why a bundle could not be read, written or believed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("not a Haven public-content bundle (the file does not start with `HAVENPB1`)")]
    NotABundle,
    #[error("the bundle is {len} bytes, above the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("the bundle holds {count} envelopes, above the limit of {max}")]
    TooManyEnvelopes { count: usize, max: usize },
    #[error("the bundle is truncated")]
    Truncated,
    #[error("envelope {index} is {len} bytes, above the limit of {max}")]
    RecordTooLarge {
        index: usize,
        len: usize,
        max: usize,
    },
    #[error("envelope {index} cannot be decoded: {source}")]
    Record {
        index: usize,
        #[source]
        source: DecodeError,
    },
    #[error("{len} unexpected bytes after the last envelope")]
    TrailingBytes { len: usize },
    #[error("envelope {index} is refused: {source}")]
    Envelope {
        index: usize,
        #[source]
        source: VerifyError,
    },
    #[error("envelope {index} repeats an earlier envelope")]
    DuplicateEnvelope { index: usize },
    #[error("envelope {index} is out of its publisher's counter order")]
    OutOfOrder { index: usize },
    #[error("document {} lacks changes it depends on", .doc.to_hex())]
    IncompleteDocument { doc: DocId },
    #[error("document {} is unreadable: {source}", .doc.to_hex())]
    UnreadableDocument {
        doc: DocId,
        #[source]
        source: DocumentError,
    },
    #[error("the bundle has no manifest")]
    NoManifest,
    #[error("the manifest does not describe the bundle: {0}")]
    ManifestMismatch(String),
}

/// A signed public-content bundle: the envelopes of a first publication, in publishing order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicBundle {
    pub envelopes: Vec<Envelope>,
}

impl PublicBundle {
    /// The first publication of `content` with `key`: exactly what [`plan_publish`] gives for an
    /// empty public space. Deterministic: the same key, content and `now_ms` give the same
    /// envelopes (Ed25519 signatures are deterministic too). Tools pass
    /// [`ContentSet::latest_update_ms`] as `now_ms` so that the bundle depends on the content
    /// alone.
    pub fn build(
        key: &ContentKey,
        content: &ContentSet,
        now_ms: i64,
    ) -> Result<Self, ContentError> {
        let plan = plan_publish(key, &[], content, now_ms)?;
        Ok(Self {
            envelopes: plan.envelopes,
        })
    }

    /// This bundle followed by the publish that brings it to `content`: what a server that
    /// published this bundle publishes next for that content. Empty increments leave the bundle
    /// as it is. Rebuilding a bundle that has shipped from scratch would instead make a second
    /// first publication, which devices holding the first (and servers that published it) refuse;
    /// extending keeps every shipped bundle a prefix of the public log. Call
    /// [`PublicBundle::verify`] with `key`'s public half first: envelopes not signed by `key`
    /// are ignored by the plan.
    pub fn extend(
        &self,
        key: &ContentKey,
        content: &ContentSet,
        now_ms: i64,
    ) -> Result<Self, ContentError> {
        let plan = plan_publish(key, &self.sequenced(), content, now_ms)?;
        let mut envelopes = self.envelopes.clone();
        envelopes.extend(plan.envelopes);
        Ok(Self { envelopes })
    }

    /// The envelopes as a server that has published only this bundle serves them (seq 1, 2, …):
    /// the `existing` to plan a later publish on top of the bundle.
    pub fn sequenced(&self) -> Vec<SequencedEnvelope> {
        self.envelopes
            .iter()
            .zip(1..)
            .map(|(envelope, seq)| SequencedEnvelope {
                seq,
                envelope: envelope.clone(),
            })
            .collect()
    }

    /// Checks the whole bundle against the `pinned` content keys and returns the content it
    /// holds. Unlike [`PublicContent::from_envelopes`], which keeps what it can from a live
    /// public space, a bundle is all or nothing: one bad envelope and nothing in it is believed.
    ///
    /// Each envelope must be signed by a pinned key and carry the change its id names; no
    /// envelope may repeat; each publisher's counters must rise in file order; every change must
    /// apply and every document be complete and readable; and the manifest with the highest
    /// version must list exactly the bundle's content documents, at the heads the bundle reaches.
    pub fn verify(&self, pinned: &[VerifyingKey]) -> Result<PublicContent, BundleError> {
        // Every signature first: they are cheap, and a tampered bundle is then refused before
        // any of its bodies reaches the Automerge decoder.
        for (index, envelope) in self.envelopes.iter().enumerate() {
            check_signature(envelope, pinned)
                .map_err(|source| BundleError::Envelope { index, source })?;
        }
        let mut seen = BTreeSet::new();
        let mut last_ctr: BTreeMap<DeviceId, u64> = BTreeMap::new();
        // Per document: every change hash, and every hash some change depends on.
        let mut hashes: BTreeMap<DocId, (BTreeSet<ChangeHash>, BTreeSet<ChangeHash>)> =
            BTreeMap::new();
        for (index, envelope) in self.envelopes.iter().enumerate() {
            let change = verify_public_envelope(envelope, pinned)
                .map_err(|source| BundleError::Envelope { index, source })?;
            if !seen.insert(envelope.id) {
                return Err(BundleError::DuplicateEnvelope { index });
            }
            let previous = last_ctr.insert(envelope.device, envelope.ctr);
            if previous.is_some_and(|previous| previous >= envelope.ctr) {
                return Err(BundleError::OutOfOrder { index });
            }
            let (all, depended_on) = hashes.entry(envelope.doc).or_default();
            all.insert(change.hash());
            depended_on.extend(change.deps().iter().copied());
        }

        // Verifies the signatures a second time; a bundle is small and read once per launch,
        // and this keeps one definition of how public envelopes become content.
        let content = PublicContent::from_envelopes(&self.envelopes, pinned);
        if let Some(rejected) = content.rejected.first() {
            let index = self
                .envelopes
                .iter()
                .position(|envelope| envelope.id == rejected.id)
                .unwrap_or_default();
            return Err(BundleError::Envelope {
                index,
                source: rejected.reason.clone(),
            });
        }
        if let Some(doc) = content.incomplete.first() {
            return Err(BundleError::IncompleteDocument { doc: *doc });
        }
        if let Some(unreadable) = content.unreadable.first() {
            return Err(BundleError::UnreadableDocument {
                doc: unreadable.doc,
                source: unreadable.error.clone(),
            });
        }

        // The signed manifest is what makes the bundle whole: without this check, dropping the
        // one record of a resource list (and fixing the count) would leave a bundle whose every
        // envelope verifies.
        let manifest = content.manifest.as_ref().ok_or(BundleError::NoManifest)?;
        let mismatch = |reason: String| Err(BundleError::ManifestMismatch(reason));
        for (doc, entry) in &manifest.entries {
            let Some((all, depended_on)) = hashes.get(doc) else {
                return mismatch(format!(
                    "it lists {} `{}`, which the bundle does not hold",
                    entry.kind, entry.slug
                ));
            };
            let mut heads: Vec<ChangeHash> = all.difference(depended_on).copied().collect();
            heads.sort();
            if heads != entry.heads {
                return mismatch(format!(
                    "{} `{}` is at other heads than the manifest lists",
                    entry.kind, entry.slug
                ));
            }
        }
        let listed = manifest.entries.len();
        let documents = content.articles.len() + content.resource_lists.len();
        // The manifest's own document is the one document it does not list.
        if listed != documents || hashes.len() != documents + 1 {
            return mismatch(format!(
                "it lists {listed} documents; the bundle holds {documents} articles and resource lists in {} documents",
                hashes.len()
            ));
        }
        Ok(content)
    }

    /// The bundle file's bytes (see the module documentation). Refuses to write what
    /// [`PublicBundle::from_bytes`] would refuse to read.
    pub fn to_bytes(&self) -> Result<Vec<u8>, BundleError> {
        let count = self.envelopes.len();
        if count > MAX_BUNDLE_ENVELOPES {
            return Err(BundleError::TooManyEnvelopes {
                count,
                max: MAX_BUNDLE_ENVELOPES,
            });
        }
        let mut out = Vec::new();
        out.extend_from_slice(BUNDLE_MAGIC);
        out.extend_from_slice(&length_prefix(count).to_be_bytes());
        for (index, envelope) in self.envelopes.iter().enumerate() {
            let record = envelope.encode();
            if record.len() > MAX_RECORD_BYTES {
                return Err(BundleError::RecordTooLarge {
                    index,
                    len: record.len(),
                    max: MAX_RECORD_BYTES,
                });
            }
            out.extend_from_slice(&length_prefix(record.len()).to_be_bytes());
            out.extend_from_slice(&record);
        }
        if out.len() > MAX_BUNDLE_BYTES {
            return Err(BundleError::TooLarge {
                len: out.len(),
                max: MAX_BUNDLE_BYTES,
            });
        }
        Ok(out)
    }

    /// Reads a bundle file. Never panics, whatever the bytes, and allocates no more than the
    /// input's size. This checks the framing only: call [`PublicBundle::verify`] before believing
    /// any of it.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, BundleError> {
        if bytes.len() > MAX_BUNDLE_BYTES {
            return Err(BundleError::TooLarge {
                len: bytes.len(),
                max: MAX_BUNDLE_BYTES,
            });
        }
        let rest = bytes
            .strip_prefix(BUNDLE_MAGIC.as_slice())
            .ok_or(BundleError::NotABundle)?;
        let (count, mut rest) = read_u32(rest)?;
        if count > MAX_BUNDLE_ENVELOPES {
            return Err(BundleError::TooManyEnvelopes {
                count,
                max: MAX_BUNDLE_ENVELOPES,
            });
        }
        // Each record takes at least its 4-byte length, so a count the input cannot hold is
        // refused before anything is allocated for it.
        if count > rest.len() / 4 {
            return Err(BundleError::Truncated);
        }
        let mut envelopes = Vec::with_capacity(count);
        for index in 0..count {
            let (len, after) = read_u32(rest)?;
            if len > MAX_RECORD_BYTES {
                return Err(BundleError::RecordTooLarge {
                    index,
                    len,
                    max: MAX_RECORD_BYTES,
                });
            }
            let (record, after) = after.split_at_checked(len).ok_or(BundleError::Truncated)?;
            envelopes.push(
                Envelope::decode(record).map_err(|source| BundleError::Record { index, source })?,
            );
            rest = after;
        }
        if !rest.is_empty() {
            return Err(BundleError::TrailingBytes { len: rest.len() });
        }
        Ok(Self { envelopes })
    }

    /// Reads and verifies [`BUNDLED_PUBLIC_CONTENT`] against the development content key.
    pub fn bundled_dev_content() -> Result<(Self, PublicContent), BundleError> {
        let bundle = Self::from_bytes(BUNDLED_PUBLIC_CONTENT)?;
        let content = bundle.verify(&[bundled_dev_content_key()])?;
        Ok((bundle, content))
    }
}

/// A length or count as the format's u32. Callers have checked it against limits far below
/// `u32::MAX`; saturate rather than panic.
fn length_prefix(value: usize) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

/// A big-endian u32 as a usize, and the bytes after it.
fn read_u32(bytes: &[u8]) -> Result<(usize, &[u8]), BundleError> {
    let (head, rest) = bytes
        .split_first_chunk::<4>()
        .ok_or(BundleError::Truncated)?;
    // usize is at least 32 bits on every target Haven builds for; a smaller one cannot hold a
    // bundle anyway.
    let value = usize::try_from(u32::from_be_bytes(*head)).map_err(|_| BundleError::Truncated)?;
    Ok((value, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dev_public_key_matches_the_key_file() {
        let file = include_str!("../../../content/dev-content-key.json");
        let key = ContentKey::from_json(file).unwrap();
        assert_eq!(bundled_dev_content_key(), key.verifying_key());
    }

    #[test]
    fn reads_u32_big_endian() {
        assert_eq!(read_u32(&[0, 0, 1, 2, 9]).unwrap(), (258, &[9u8][..]));
        assert_eq!(read_u32(&[0, 0, 1]), Err(BundleError::Truncated));
    }
}
