//! Server-side sealing of private envelope bodies under the account's storage key (DESIGN.md §4):
//! erasing an account destroys its key, so copies left in sled's log-structured files or in
//! backups can no longer be read, even as the client's ciphertext.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use haven_protocol::{EnvelopeId, SpaceId};

use crate::clock::random_bytes;

const DOMAIN: &[u8] = b"haven/store/v1\0";
const NONCE_LEN: usize = 24;

/// The stored body could not be opened: the record is corrupt or belongs elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("stored envelope body failed authentication")]
pub struct SealError;

/// Binds the sealed body to its space and envelope id, so stored records cannot be swapped.
fn aad(space: &SpaceId, id: &EnvelopeId) -> Vec<u8> {
    let space = space.name();
    let mut aad = Vec::with_capacity(DOMAIN.len() + space.len() + 1 + 32);
    aad.extend_from_slice(DOMAIN);
    aad.extend_from_slice(space.as_bytes());
    aad.push(0);
    aad.extend_from_slice(id.as_bytes());
    aad
}

/// `nonce ‖ XChaCha20-Poly1305(key, body, aad(space, id))`.
pub fn seal(
    key: &[u8; 32],
    space: &SpaceId,
    id: &EnvelopeId,
    body: &[u8],
) -> Result<Vec<u8>, SealError> {
    seal_with_aad(key, &aad(space, id), body)
}

/// Inverse of [`seal`].
pub fn open(
    key: &[u8; 32],
    space: &SpaceId,
    id: &EnvelopeId,
    stored: &[u8],
) -> Result<Vec<u8>, SealError> {
    open_with_aad(key, &aad(space, id), stored)
}

/// `nonce ‖ XChaCha20-Poly1305(key, body, aad)`, for other records sealed under the storage key
/// (`crate::account_seal`), each with an AAD of its own domain.
pub(crate) fn seal_with_aad(key: &[u8; 32], aad: &[u8], body: &[u8]) -> Result<Vec<u8>, SealError> {
    let cipher = XChaCha20Poly1305::new(key.into());
    let nonce_bytes: [u8; NONCE_LEN] = random_bytes();
    let nonce = XNonce::from(nonce_bytes);
    let sealed = cipher
        .encrypt(&nonce, Payload { msg: body, aad })
        .map_err(|_| SealError)?;
    let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
    out.extend_from_slice(&nonce_bytes);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Inverse of [`seal_with_aad`].
pub(crate) fn open_with_aad(
    key: &[u8; 32],
    aad: &[u8],
    stored: &[u8],
) -> Result<Vec<u8>, SealError> {
    let (nonce, sealed) = stored.split_first_chunk::<NONCE_LEN>().ok_or(SealError)?;
    let cipher = XChaCha20Poly1305::new(key.into());
    cipher
        .decrypt(&XNonce::from(*nonce), Payload { msg: sealed, aad })
        .map_err(|_| SealError)
}

#[cfg(test)]
mod tests {
    use super::*;
    use haven_protocol::{Bytes, HexId};

    #[test]
    fn round_trip_and_binding() {
        let key = [5u8; 32];
        let space = SpaceId::Private(HexId([1; 16]));
        let other_space = SpaceId::Private(HexId([2; 16]));
        let id = Bytes([3; 32]);
        let other_id = Bytes([4; 32]);
        let sealed = seal(&key, &space, &id, b"client ciphertext").unwrap();
        assert_eq!(
            open(&key, &space, &id, &sealed).unwrap(),
            b"client ciphertext"
        );
        assert_eq!(open(&[6; 32], &space, &id, &sealed), Err(SealError));
        assert_eq!(open(&key, &other_space, &id, &sealed), Err(SealError));
        assert_eq!(open(&key, &space, &other_id, &sealed), Err(SealError));
        assert_eq!(open(&key, &space, &id, &sealed[..10]), Err(SealError));
        let mut flipped = sealed;
        flipped[30] ^= 1;
        assert_eq!(open(&key, &space, &id, &flipped), Err(SealError));
        // Fresh nonce each time: equal bodies do not give equal records.
        assert_ne!(
            seal(&key, &space, &id, b"x").unwrap(),
            seal(&key, &space, &id, b"x").unwrap()
        );
    }
}
