//! Private envelopes: ids, sealing and opening (DESIGN.md §3).
//!
//! Body = 24-byte random nonce ‖ XChaCha20-Poly1305(epoch key, pad(payload)), where pad is the
//! protocol's `u32 length ‖ payload ‖ zeros` to a bucket. The associated data is the envelope's
//! canonical bytes (kind, space, doc, id, device, ctr, key_epoch), so a body moved under another
//! header, space or epoch does not open. For snapshots it continues with
//! `"\0snapshot\0" ‖ upto_seq (u64 BE) ‖ SHA-256(count (u32 BE) ‖ covers…)`: the canonical bytes
//! leave `covers` and `upto_seq` out, and binding them here means the server cannot alter what a
//! snapshot claims to cover without the snapshot failing to open.

use haven_protocol::envelope::{NONCE_LEN, TAG_LEN};
use haven_protocol::{
    Blob, DeviceId, DocId, Envelope, EnvelopeError, EnvelopeId, EnvelopeLimits, Kind, SpaceId,
    padding,
};
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use super::CryptoError;
use super::aead;
use super::keys::{AccountConstants, EpochKey, EpochKeyring};
use crate::env::{Random, random_array};

const ID_DOMAIN: &[u8] = b"haven/v1/id\0";
const SNAPSHOT_BINDING: &[u8] = b"\0snapshot\0";

/// An envelope's idempotency key: HMAC-SHA256(id_key, "haven/v1/id\0" ‖ kind ‖ 0x00 ‖ doc ‖
/// key_epoch (u32 BE) ‖ content), so a retry of the same content always carries the same id, and
/// only the account can compute it.
///
/// `content` is, by kind:
/// - `change`: the Automerge change hash (for a batch of changes, [`sorted_hashes_content`] of
///   their hashes);
/// - `snapshot`: [`sorted_hashes_content`] of the document's heads at the save;
/// - `tombstone`: empty (kind and doc already make it unique: one tombstone per document).
///
/// Kind and doc are bound as well as the content, because the same bytes can occur twice
/// otherwise: a snapshot of a document with a single head has that change's hash as its content.
/// The epoch is bound so that re-sealing under a new epoch (after a revocation) makes a new id.
pub fn envelope_id(
    constants: &AccountConstants,
    kind: Kind,
    doc: &DocId,
    key_epoch: u32,
    content: &[u8],
) -> EnvelopeId {
    let mut mac = <Hmac<Sha256>>::new_from_slice(constants.id_key())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(ID_DOMAIN);
    mac.update(kind.as_str().as_bytes());
    mac.update(&[0]);
    mac.update(&doc.0);
    mac.update(&key_epoch.to_be_bytes());
    mac.update(content);
    EnvelopeId::from(<[u8; 32]>::from(mac.finalize().into_bytes()))
}

/// A set of 32-byte hashes (change hashes, heads) as id content: sorted, duplicates dropped,
/// concatenated, so every device computes the same bytes whatever order it holds them in.
pub fn sorted_hashes_content(hashes: &[[u8; 32]]) -> Vec<u8> {
    let mut sorted = hashes.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    sorted.concat()
}

/// The header of a private envelope to seal. `key_epoch` comes from the epoch key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivateHeader {
    pub id: EnvelopeId,
    pub doc: DocId,
    pub kind: Kind,
    pub device: DeviceId,
    pub ctr: u64,
    /// Snapshots only: the ids of the envelopes the snapshot includes.
    pub covers: Option<Vec<EnvelopeId>>,
    /// Snapshots only.
    pub upto_seq: Option<u64>,
}

/// Why a private envelope does not open. None of these is fatal to sync: the envelope is kept
/// aside and reported, never covered by a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("public envelopes are signed, not sealed; verify them with the content key")]
    PublicSpace,
    #[error("malformed envelope: {0}")]
    Invalid(EnvelopeError),
    #[error("no key for epoch {0}: sealed under a key this device does not have")]
    UnknownEpoch(u32),
    #[error("the envelope does not decrypt: it was tampered with or sealed under another key")]
    Decrypt,
    #[error("the decrypted payload's padding is malformed")]
    Padding,
}

/// The associated data of a private envelope: canonical bytes, then the snapshot binding.
fn associated_data(envelope: &Envelope, space: &SpaceId) -> Vec<u8> {
    let mut aad = envelope.canonical_bytes(space);
    if envelope.kind == Kind::Snapshot {
        let covers = envelope.covers.as_deref().unwrap_or(&[]);
        let mut digest = Sha256::new();
        // Validation caps covers far below u32::MAX; saturate rather than panic.
        digest.update(
            u32::try_from(covers.len())
                .unwrap_or(u32::MAX)
                .to_be_bytes(),
        );
        for id in covers {
            digest.update(id.0);
        }
        aad.extend_from_slice(SNAPSHOT_BINDING);
        aad.extend_from_slice(&envelope.upto_seq.unwrap_or(0).to_be_bytes());
        aad.extend_from_slice(&digest.finalize());
    }
    aad
}

/// Seals `payload` into a private envelope under `epoch_key`. The result passes
/// [`Envelope::validate`] with the default limits, or this fails.
pub fn seal_private(
    epoch_key: &EpochKey,
    space: &SpaceId,
    header: PrivateHeader,
    payload: &[u8],
    random: &dyn Random,
) -> Result<Envelope, CryptoError> {
    if space.is_public() {
        return Err(CryptoError::PublicSpace);
    }
    let limits = EnvelopeLimits::default();
    let padded_len = padding::padded_len(padding::LENGTH_PREFIX.saturating_add(payload.len()));
    let body_len = padded_len.saturating_add(NONCE_LEN + TAG_LEN);
    if body_len > limits.max_body_bytes {
        return Err(EnvelopeError::BodyTooLarge {
            len: body_len,
            max: limits.max_body_bytes,
        }
        .into());
    }
    let mut envelope = Envelope {
        id: header.id,
        doc: header.doc,
        kind: header.kind,
        device: header.device,
        ctr: header.ctr,
        key_epoch: epoch_key.epoch(),
        body: Blob::default(),
        sig: None,
        covers: header.covers,
        upto_seq: header.upto_seq,
    };
    let padded = Zeroizing::new(padding::pad(payload).ok_or(EnvelopeError::BodyTooLarge {
        len: payload.len(),
        max: limits.max_body_bytes,
    })?);
    let nonce = random_array::<NONCE_LEN>(random);
    let ciphertext = aead::seal(
        epoch_key.expose_secret(),
        &nonce,
        &associated_data(&envelope, space),
        &padded,
    );
    let mut body = Vec::with_capacity(NONCE_LEN + ciphertext.len());
    body.extend_from_slice(&nonce);
    body.extend_from_slice(&ciphertext);
    envelope.body = Blob(body);
    envelope.validate(space, &limits)?;
    Ok(envelope)
}

/// Opens a private envelope with the key of its epoch and returns the payload (in a zeroising
/// buffer). Any change to the body or to any header field — including swapping fields with
/// another envelope, or the space — fails with a typed error. Never panics.
pub fn open_private(
    keys: &EpochKeyring,
    space: &SpaceId,
    envelope: &Envelope,
) -> Result<Zeroizing<Vec<u8>>, OpenError> {
    if space.is_public() {
        return Err(OpenError::PublicSpace);
    }
    envelope
        .validate(space, &EnvelopeLimits::default())
        .map_err(OpenError::Invalid)?;
    let key = keys
        .get(envelope.key_epoch)
        .ok_or(OpenError::UnknownEpoch(envelope.key_epoch))?;
    let (nonce, ciphertext) = envelope
        .body
        .0
        .split_first_chunk::<NONCE_LEN>()
        .ok_or(OpenError::Decrypt)?;
    let padded = aead::open(
        key.expose_secret(),
        nonce,
        &associated_data(envelope, space),
        ciphertext,
    )
    .ok_or(OpenError::Decrypt)?;
    let payload = padding::unpad(&padded).ok_or(OpenError::Padding)?;
    Ok(Zeroizing::new(payload.to_vec()))
}

#[cfg(test)]
mod tests;
