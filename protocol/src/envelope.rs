//! The envelope: the unit a space log stores, with its canonical bytes, shared validation and a
//! compact binary encoding for storage.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::bytes::Blob;
use crate::ids::{DeviceId, DocId, EnvelopeId, Signature, SpaceId};
use crate::padding;

/// Domain tag of v1 canonical bytes; bumping the protocol changes it.
pub const DOMAIN_TAG: &[u8] = b"haven/v1/";
/// XChaCha20-Poly1305 nonce length in a private body.
pub const NONCE_LEN: usize = 24;
/// Poly1305 tag length in a private body.
pub const TAG_LEN: usize = 16;

/// What an envelope carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// One or more Automerge changes.
    Change,
    /// A full `save()` of a document, replacing the envelopes it `covers`.
    Snapshot,
    /// The document is deleted on every device.
    Tombstone,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Change => "change",
            Self::Snapshot => "snapshot",
            Self::Tombstone => "tombstone",
        }
    }

    fn code(self) -> u8 {
        match self {
            Self::Change => 0,
            Self::Snapshot => 1,
            Self::Tombstone => 2,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Self::Change),
            1 => Some(Self::Snapshot),
            2 => Some(Self::Tombstone),
            _ => None,
        }
    }
}

/// An envelope as pushed by a client (DESIGN.md §3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    pub id: EnvelopeId,
    pub doc: DocId,
    pub kind: Kind,
    pub device: DeviceId,
    pub ctr: u64,
    pub key_epoch: u32,
    pub body: Blob,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sig: Option<Signature>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub covers: Option<Vec<EnvelopeId>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upto_seq: Option<u64>,
}

/// An envelope as served by a pull, with the seq the server assigned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SequencedEnvelope {
    pub seq: u64,
    #[serde(flatten)]
    pub envelope: Envelope,
}

/// Size limits an envelope must respect; the server's are configurable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvelopeLimits {
    pub max_body_bytes: usize,
    pub max_covers: usize,
}

impl Default for EnvelopeLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 4 * 1024 * 1024,
            max_covers: 20_000,
        }
    }
}

/// Why an envelope is malformed. Every variant maps to the `invalid` or `too_large` error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("body is {len} bytes, above the limit of {max}")]
    BodyTooLarge { len: usize, max: usize },
    #[error("snapshot covers {len} envelopes, above the limit of {max}")]
    TooManyCovers { len: usize, max: usize },
    #[error("ctr must start at 1")]
    ZeroCounter,
    #[error("public envelopes use key_epoch 0")]
    PublicEpoch,
    #[error("public envelopes must carry a signature")]
    MissingSignature,
    #[error("private envelopes carry no signature")]
    UnexpectedSignature,
    #[error("private body is not nonce ‖ ciphertext of a padded length")]
    UnpaddedBody,
    #[error("snapshots need covers and upto_seq ≥ 1")]
    SnapshotFields,
    #[error("only snapshots carry covers or upto_seq")]
    UnexpectedSnapshotFields,
    #[error("covers lists an id twice")]
    DuplicateCover,
}

impl EnvelopeError {
    /// Whether the error is about size (`too_large`) rather than shape (`invalid`).
    pub fn is_size(&self) -> bool {
        matches!(self, Self::BodyTooLarge { .. } | Self::TooManyCovers { .. })
    }
}

impl Envelope {
    /// The canonical bytes of DESIGN.md §3: the AEAD associated data of a private envelope, and
    /// (with the body's SHA-256 appended) the signed bytes of a public one.
    pub fn canonical_bytes(&self, space: &SpaceId) -> Vec<u8> {
        canonical_bytes(
            self.kind,
            space,
            &self.doc,
            &self.id,
            &self.device,
            self.ctr,
            self.key_epoch,
        )
    }

    /// The bytes a publisher signs: canonical bytes ‖ SHA-256(body).
    pub fn signed_bytes(&self, space: &SpaceId) -> Vec<u8> {
        let mut out = self.canonical_bytes(space);
        out.extend_from_slice(&Sha256::digest(&self.body.0));
        out
    }

    /// Checks the shape rules that server and clients share. Signatures and ciphertexts are checked
    /// by whoever holds the keys.
    pub fn validate(&self, space: &SpaceId, limits: &EnvelopeLimits) -> Result<(), EnvelopeError> {
        if self.body.len() > limits.max_body_bytes {
            return Err(EnvelopeError::BodyTooLarge {
                len: self.body.len(),
                max: limits.max_body_bytes,
            });
        }
        if self.ctr == 0 {
            return Err(EnvelopeError::ZeroCounter);
        }
        if space.is_public() {
            if self.key_epoch != 0 {
                return Err(EnvelopeError::PublicEpoch);
            }
            if self.sig.is_none() {
                return Err(EnvelopeError::MissingSignature);
            }
        } else {
            if self.sig.is_some() {
                return Err(EnvelopeError::UnexpectedSignature);
            }
            let sealed = self.body.len().checked_sub(NONCE_LEN + TAG_LEN);
            if !sealed.is_some_and(padding::is_padded_len) {
                return Err(EnvelopeError::UnpaddedBody);
            }
        }
        match (self.kind, &self.covers, self.upto_seq) {
            (Kind::Snapshot, Some(covers), Some(upto)) if upto >= 1 && !covers.is_empty() => {
                if covers.len() > limits.max_covers {
                    return Err(EnvelopeError::TooManyCovers {
                        len: covers.len(),
                        max: limits.max_covers,
                    });
                }
                let mut sorted: Vec<_> = covers.iter().collect();
                sorted.sort_unstable();
                if sorted.windows(2).any(|pair| pair[0] == pair[1]) {
                    return Err(EnvelopeError::DuplicateCover);
                }
            }
            (Kind::Snapshot, _, _) => return Err(EnvelopeError::SnapshotFields),
            (_, None, None) => {}
            (_, _, _) => return Err(EnvelopeError::UnexpectedSnapshotFields),
        }
        Ok(())
    }

    /// SHA-256 over the binary encoding: "the same bytes" in the idempotency rule.
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.encode()).into()
    }

    /// Compact binary encoding (version 1) used by storage backends.
    pub fn encode(&self) -> Vec<u8> {
        let covers = self.covers.as_deref().unwrap_or(&[]);
        let mut out = Vec::with_capacity(100 + self.body.len() + covers.len() * 32);
        out.push(CODEC_VERSION);
        out.push(self.kind.code());
        let flags = u8::from(self.sig.is_some())
            | u8::from(self.covers.is_some()) << 1
            | u8::from(self.upto_seq.is_some()) << 2;
        out.push(flags);
        out.extend_from_slice(&self.id.0);
        out.extend_from_slice(&self.doc.0);
        out.extend_from_slice(&self.device.0);
        out.extend_from_slice(&self.ctr.to_be_bytes());
        out.extend_from_slice(&self.key_epoch.to_be_bytes());
        if let Some(sig) = &self.sig {
            out.extend_from_slice(&sig.0);
        }
        if let Some(upto) = self.upto_seq {
            out.extend_from_slice(&upto.to_be_bytes());
        }
        if self.covers.is_some() {
            // Validation caps covers far below u32::MAX; saturate rather than panic.
            let count = u32::try_from(covers.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&count.to_be_bytes());
            for id in covers {
                out.extend_from_slice(&id.0);
            }
        }
        out.extend_from_slice(&self.body.0);
        out
    }

    /// Decodes [`Envelope::encode`]'s output; never panics on arbitrary input.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut reader = Reader(bytes);
        if reader.u8()? != CODEC_VERSION {
            return Err(DecodeError::Version);
        }
        let kind = Kind::from_code(reader.u8()?).ok_or(DecodeError::Malformed)?;
        let flags = reader.u8()?;
        if flags & !0b111 != 0 {
            return Err(DecodeError::Malformed);
        }
        let id = reader.array::<32>()?.into();
        let doc = reader.array::<16>()?.into();
        let device = reader.array::<16>()?.into();
        let ctr = u64::from_be_bytes(reader.array()?);
        let key_epoch = u32::from_be_bytes(reader.array()?);
        let sig = if flags & 1 != 0 {
            Some(reader.array::<64>()?.into())
        } else {
            None
        };
        let upto_seq = if flags & 4 != 0 {
            Some(u64::from_be_bytes(reader.array()?))
        } else {
            None
        };
        let covers = if flags & 2 != 0 {
            let count = usize::try_from(u32::from_be_bytes(reader.array()?))
                .map_err(|_| DecodeError::Malformed)?;
            if count > reader.0.len() / 32 {
                return Err(DecodeError::Truncated);
            }
            let mut ids = Vec::with_capacity(count);
            for _ in 0..count {
                ids.push(reader.array::<32>()?.into());
            }
            Some(ids)
        } else {
            None
        };
        Ok(Self {
            id,
            doc,
            kind,
            device,
            ctr,
            key_epoch,
            body: Blob(reader.0.to_vec()),
            sig,
            covers,
            upto_seq,
        })
    }
}

/// The canonical bytes for an envelope's header fields (see [`Envelope::canonical_bytes`]).
pub fn canonical_bytes(
    kind: Kind,
    space: &SpaceId,
    doc: &DocId,
    id: &EnvelopeId,
    device: &DeviceId,
    ctr: u64,
    key_epoch: u32,
) -> Vec<u8> {
    let space = space.name();
    let mut out = Vec::with_capacity(DOMAIN_TAG.len() + 12 + space.len() + 16 + 32 + 16 + 12);
    out.extend_from_slice(DOMAIN_TAG);
    out.extend_from_slice(kind.as_str().as_bytes());
    out.push(0);
    out.extend_from_slice(space.as_bytes());
    out.push(0);
    out.extend_from_slice(&doc.0);
    out.extend_from_slice(&id.0);
    out.extend_from_slice(&device.0);
    out.extend_from_slice(&ctr.to_be_bytes());
    out.extend_from_slice(&key_epoch.to_be_bytes());
    out
}

const CODEC_VERSION: u8 = 1;

/// The stored bytes are not an envelope this version can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown encoding version")]
    Version,
    #[error("truncated record")]
    Truncated,
    #[error("malformed record")]
    Malformed,
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn u8(&mut self) -> Result<u8, DecodeError> {
        let (&first, rest) = self.0.split_first().ok_or(DecodeError::Truncated)?;
        self.0 = rest;
        Ok(first)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let (head, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or(DecodeError::Truncated)?;
        self.0 = rest;
        Ok(*head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bytes::Bytes;
    use crate::ids::HexId;
    use proptest::prelude::*;

    fn private_space() -> SpaceId {
        SpaceId::Private(HexId([9; 16]))
    }

    fn sample(kind: Kind) -> Envelope {
        Envelope {
            id: Bytes([1; 32]),
            doc: Bytes([2; 16]),
            kind,
            device: Bytes([3; 16]),
            ctr: 7,
            key_epoch: 1,
            body: Blob(vec![0; NONCE_LEN + 256 + TAG_LEN]),
            sig: None,
            covers: (kind == Kind::Snapshot).then(|| vec![Bytes([4; 32])]),
            upto_seq: (kind == Kind::Snapshot).then_some(3),
        }
    }

    #[test]
    fn canonical_bytes_layout() {
        let env = sample(Kind::Change);
        let bytes = env.canonical_bytes(&SpaceId::Public);
        let mut expected = b"haven/v1/change\0public\0".to_vec();
        expected.extend_from_slice(&[2; 16]);
        expected.extend_from_slice(&[1; 32]);
        expected.extend_from_slice(&[3; 16]);
        expected.extend_from_slice(&7u64.to_be_bytes());
        expected.extend_from_slice(&1u32.to_be_bytes());
        assert_eq!(bytes, expected);
        let signed = env.signed_bytes(&SpaceId::Public);
        assert_eq!(&signed[..bytes.len()], &bytes[..]);
        assert_eq!(signed.len(), bytes.len() + 32);
    }

    #[test]
    fn json_field_names_match_the_contract() {
        let env = sample(Kind::Snapshot);
        let value = serde_json::to_value(&env).unwrap();
        let mut keys: Vec<_> = value.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "body",
                "covers",
                "ctr",
                "device",
                "doc",
                "id",
                "key_epoch",
                "kind",
                "upto_seq"
            ]
        );
        assert_eq!(value["kind"], "snapshot");
        let sequenced = SequencedEnvelope {
            seq: 5,
            envelope: env,
        };
        let text = serde_json::to_string(&sequenced).unwrap();
        let back: SequencedEnvelope = serde_json::from_str(&text).unwrap();
        assert_eq!(back, sequenced);
    }

    #[test]
    fn unknown_fields_and_bad_values_are_refused() {
        let mut value = serde_json::to_value(sample(Kind::Change)).unwrap();
        value["extra"] = 1.into();
        assert!(serde_json::from_value::<Envelope>(value).is_err());
        let mut value = serde_json::to_value(sample(Kind::Change)).unwrap();
        value["id"] = "AAAA".into();
        assert!(serde_json::from_value::<Envelope>(value).is_err());
        let mut value = serde_json::to_value(sample(Kind::Change)).unwrap();
        value["kind"] = "merge".into();
        assert!(serde_json::from_value::<Envelope>(value).is_err());
        let mut value = serde_json::to_value(sample(Kind::Change)).unwrap();
        value["ctr"] = (-1).into();
        assert!(serde_json::from_value::<Envelope>(value).is_err());
    }

    #[test]
    fn validation_rules() {
        let limits = EnvelopeLimits::default();
        let space = private_space();
        assert_eq!(sample(Kind::Change).validate(&space, &limits), Ok(()));
        assert_eq!(sample(Kind::Snapshot).validate(&space, &limits), Ok(()));

        let mut env = sample(Kind::Change);
        env.body = Blob(vec![0; 100]);
        assert_eq!(
            env.validate(&space, &limits),
            Err(EnvelopeError::UnpaddedBody)
        );

        let mut env = sample(Kind::Change);
        env.ctr = 0;
        assert_eq!(
            env.validate(&space, &limits),
            Err(EnvelopeError::ZeroCounter)
        );

        let mut env = sample(Kind::Change);
        env.sig = Some(Bytes([0; 64]));
        assert_eq!(
            env.validate(&space, &limits),
            Err(EnvelopeError::UnexpectedSignature)
        );

        let env = sample(Kind::Change);
        assert_eq!(
            env.validate(&SpaceId::Public, &limits),
            Err(EnvelopeError::PublicEpoch)
        );
        let mut env = sample(Kind::Change);
        env.key_epoch = 0;
        assert_eq!(
            env.validate(&SpaceId::Public, &limits),
            Err(EnvelopeError::MissingSignature)
        );
        env.sig = Some(Bytes([0; 64]));
        env.body = Blob(b"any plaintext".to_vec());
        assert_eq!(env.validate(&SpaceId::Public, &limits), Ok(()));

        let mut env = sample(Kind::Snapshot);
        env.covers = Some(vec![Bytes([4; 32]), Bytes([4; 32])]);
        assert_eq!(
            env.validate(&space, &limits),
            Err(EnvelopeError::DuplicateCover)
        );
        env.covers = None;
        assert_eq!(
            env.validate(&space, &limits),
            Err(EnvelopeError::SnapshotFields)
        );

        let mut env = sample(Kind::Change);
        env.upto_seq = Some(1);
        assert_eq!(
            env.validate(&space, &limits),
            Err(EnvelopeError::UnexpectedSnapshotFields)
        );

        let tight = EnvelopeLimits {
            max_body_bytes: 10,
            max_covers: 1,
        };
        let err = sample(Kind::Change).validate(&space, &tight).unwrap_err();
        assert!(err.is_size());
    }

    #[test]
    fn decode_refuses_garbage() {
        assert_eq!(Envelope::decode(&[]), Err(DecodeError::Truncated));
        assert_eq!(Envelope::decode(&[2]), Err(DecodeError::Version));
        assert_eq!(Envelope::decode(&[1, 9, 0]), Err(DecodeError::Malformed));
        let mut bytes = sample(Kind::Snapshot).encode();
        // A cover count far beyond the data must not allocate or read out of bounds.
        let count_at = 3 + 32 + 16 + 16 + 8 + 4 + 8;
        bytes[count_at..count_at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(Envelope::decode(&bytes), Err(DecodeError::Truncated));
    }

    fn arb_envelope() -> impl Strategy<Value = Envelope> {
        (
            any::<[u8; 32]>(),
            any::<[u8; 16]>(),
            0u8..3,
            any::<u64>(),
            any::<u32>(),
            proptest::collection::vec(any::<u8>(), 0..600),
            proptest::option::of(any::<[u8; 32]>()),
            proptest::option::of(proptest::collection::vec(any::<[u8; 32]>(), 0..5)),
            proptest::option::of(any::<u64>()),
        )
            .prop_map(
                |(id, doc, kind, ctr, epoch, body, sig, covers, upto)| Envelope {
                    id: Bytes(id),
                    doc: Bytes(doc),
                    kind: Kind::from_code(kind).unwrap(),
                    device: Bytes(doc),
                    ctr,
                    key_epoch: epoch,
                    body: Blob(body),
                    sig: sig.map(|half| {
                        let mut full = [0; 64];
                        full[..32].copy_from_slice(&half);
                        Bytes(full)
                    }),
                    covers: covers.map(|ids| ids.into_iter().map(Bytes).collect()),
                    upto_seq: upto,
                },
            )
    }

    proptest! {
        #[test]
        fn binary_codec_round_trips(env in arb_envelope()) {
            let decoded = Envelope::decode(&env.encode()).unwrap();
            prop_assert_eq!(&decoded, &env);
            prop_assert_eq!(decoded.digest(), env.digest());
        }

        #[test]
        fn json_round_trips(env in arb_envelope()) {
            let text = serde_json::to_string(&env).unwrap();
            prop_assert_eq!(serde_json::from_str::<Envelope>(&text).unwrap(), env);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Envelope::decode(&bytes);
        }
    }
}
