//! Wrapping a 32-byte key under a symmetric key, and sealing one to an X25519 public key.
//!
//! Both bind a [`KeyPurpose`] as associated data, so a wrap made for one purpose (RK for the
//! password, an epoch key for epoch 3, RK for device D) never opens as another: the server cannot
//! move wraps between slots of the bundle, nor relabel epoch 2's key as epoch 3's.

use std::fmt;

use haven_protocol::DeviceId;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use super::aead::{self, NONCE_LEN, TAG_LEN};
use super::{CryptoError, hkdf_expand};
use crate::env::{Random, random_array};

const WRAP_DOMAIN: &[u8] = b"haven/v1/wrap\0";
const SEAL_DOMAIN: &[u8] = b"haven/v1/seal-to-x25519\0";
/// HKDF info of the key that seals to an X25519 public key.
const SEAL_KEY_INFO: &[u8] = b"haven/v1/seal-to-x25519/key";

/// What a wrapped or sealed key is for; bound into the AEAD associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPurpose {
    /// RK wrapped under the password's KEK.
    RootKeyForPassword,
    /// RK sealed to the recovery public key.
    RootKeyForRecovery,
    /// RK sealed to one device's X25519 key.
    RootKeyForDevice(DeviceId),
    /// An epoch key wrapped under the RK-derived epoch-wrap key.
    EpochKey(u32),
    /// The one-time key of a device-linking payload, sealed to the new device, bound to the
    /// mailbox it travels through.
    LinkPayload([u8; 16]),
}

impl KeyPurpose {
    /// `tag ‖ 0x00 ‖ context`: a fixed label, then what it is bound to.
    fn associated_data(&self, domain: &[u8]) -> Vec<u8> {
        let mut out = domain.to_vec();
        match self {
            Self::RootKeyForPassword => out.extend_from_slice(b"rk-password\0"),
            Self::RootKeyForRecovery => out.extend_from_slice(b"rk-recovery\0"),
            Self::RootKeyForDevice(device) => {
                out.extend_from_slice(b"rk-device\0");
                out.extend_from_slice(&device.0);
            }
            Self::EpochKey(epoch) => {
                out.extend_from_slice(b"epoch-key\0");
                out.extend_from_slice(&epoch.to_be_bytes());
            }
            Self::LinkPayload(mailbox) => {
                out.extend_from_slice(b"link-payload\0");
                out.extend_from_slice(mailbox);
            }
        }
        out
    }
}

/// Length of a [`WrappedKey`]: nonce ‖ ciphertext ‖ tag.
pub const WRAPPED_KEY_LEN: usize = NONCE_LEN + 32 + TAG_LEN;
/// Length of a [`SealedKey`]: ephemeral public key ‖ nonce ‖ ciphertext ‖ tag.
pub const SEALED_KEY_LEN: usize = 32 + WRAPPED_KEY_LEN;

/// A 32-byte key encrypted under a symmetric key: XChaCha20-Poly1305, random nonce.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedKey([u8; WRAPPED_KEY_LEN]);

impl WrappedKey {
    /// Wraps `key` under `wrapping_key` for `purpose`.
    pub fn wrap(
        wrapping_key: &[u8; 32],
        key: &[u8; 32],
        purpose: KeyPurpose,
        random: &dyn Random,
    ) -> Self {
        let nonce = random_array::<NONCE_LEN>(random);
        Self::wrap_with_nonce(
            wrapping_key,
            key,
            &nonce,
            &purpose.associated_data(WRAP_DOMAIN),
        )
    }

    fn wrap_with_nonce(
        wrapping_key: &[u8; 32],
        key: &[u8; 32],
        nonce: &[u8; NONCE_LEN],
        associated_data: &[u8],
    ) -> Self {
        let ciphertext = aead::seal(wrapping_key, nonce, associated_data, key);
        let mut out = [0u8; WRAPPED_KEY_LEN];
        out[..NONCE_LEN].copy_from_slice(nonce);
        out[NONCE_LEN..].copy_from_slice(&ciphertext);
        Self(out)
    }

    /// The wrapped key, or [`CryptoError::UnwrapFailed`] for a wrong key, a wrong purpose or
    /// tampered bytes.
    pub fn unwrap_key(
        &self,
        wrapping_key: &[u8; 32],
        purpose: KeyPurpose,
    ) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
        self.unwrap_with(wrapping_key, &purpose.associated_data(WRAP_DOMAIN))
    }

    fn unwrap_with(
        &self,
        wrapping_key: &[u8; 32],
        associated_data: &[u8],
    ) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
        let (nonce, ciphertext) = self
            .0
            .split_first_chunk::<NONCE_LEN>()
            .ok_or(CryptoError::UnwrapFailed)?;
        let plaintext = aead::open(wrapping_key, nonce, associated_data, ciphertext)
            .ok_or(CryptoError::UnwrapFailed)?;
        let mut key = Zeroizing::new([0u8; 32]);
        if plaintext.len() != 32 {
            return Err(CryptoError::UnwrapFailed);
        }
        key.copy_from_slice(&plaintext);
        Ok(key)
    }

    pub fn to_bytes(&self) -> [u8; WRAPPED_KEY_LEN] {
        self.0
    }

    pub fn from_bytes(bytes: [u8; WRAPPED_KEY_LEN]) -> Self {
        Self(bytes)
    }
}

impl fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WrappedKey(..)")
    }
}

/// A 32-byte key sealed to an X25519 public key (an ECIES construction):
///
/// 1. a fresh ephemeral X25519 key `e` (from the injected random source);
/// 2. `shared = X25519(e, recipient)`, refused when non-contributory (a low-order recipient key);
/// 3. `k = HKDF-SHA256(ikm = e_pub ‖ recipient_pub ‖ shared, info = "haven/v1/seal-to-x25519/key")`:
///    both public keys go in, so the key is bound to this exact pair;
/// 4. XChaCha20-Poly1305 under `k`, random nonce, AAD = domain ‖ purpose ‖ recipient_pub.
///
/// Layout: `e_pub (32) ‖ nonce (24) ‖ ciphertext (32) ‖ tag (16)`.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedKey([u8; SEALED_KEY_LEN]);

impl SealedKey {
    /// Seals `key` to `recipient` for `purpose`.
    pub fn seal(
        recipient: &[u8; 32],
        key: &[u8; 32],
        purpose: KeyPurpose,
        random: &dyn Random,
    ) -> Result<Self, CryptoError> {
        let mut ephemeral_bytes = Zeroizing::new([0u8; 32]);
        random.fill(ephemeral_bytes.as_mut());
        // A StaticSecret used once is an ephemeral key; EphemeralSecret would need an RNG type
        // rather than our injected source. It zeroises on drop.
        let ephemeral = StaticSecret::from(*ephemeral_bytes);
        let ephemeral_public = PublicKey::from(&ephemeral).to_bytes();
        let sealing_key = seal_key(&ephemeral, &ephemeral_public, recipient)?;
        let nonce = random_array::<NONCE_LEN>(random);
        let wrapped = WrappedKey::wrap_with_nonce(
            &sealing_key,
            key,
            &nonce,
            &seal_associated_data(purpose, recipient),
        );
        let mut out = [0u8; SEALED_KEY_LEN];
        out[..32].copy_from_slice(&ephemeral_public);
        out[32..].copy_from_slice(&wrapped.0);
        Ok(Self(out))
    }

    /// Opens a sealed key with the recipient's secret.
    pub fn open(
        &self,
        recipient: &StaticSecret,
        purpose: KeyPurpose,
    ) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
        let (ephemeral_public, wrapped) = self
            .0
            .split_first_chunk::<32>()
            .ok_or(CryptoError::UnwrapFailed)?;
        let wrapped = WrappedKey(
            (*wrapped)
                .try_into()
                .map_err(|_| CryptoError::UnwrapFailed)?,
        );
        let recipient_public = PublicKey::from(recipient).to_bytes();
        let shared = recipient.diffie_hellman(&PublicKey::from(*ephemeral_public));
        if !shared.was_contributory() {
            return Err(CryptoError::UnwrapFailed);
        }
        let sealing_key = derive_seal_key(ephemeral_public, &recipient_public, shared.as_bytes());
        wrapped.unwrap_with(
            &sealing_key,
            &seal_associated_data(purpose, &recipient_public),
        )
    }

    pub fn to_bytes(&self) -> [u8; SEALED_KEY_LEN] {
        self.0
    }

    pub fn from_bytes(bytes: [u8; SEALED_KEY_LEN]) -> Self {
        Self(bytes)
    }
}

impl fmt::Debug for SealedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealedKey(..)")
    }
}

fn seal_key(
    ephemeral: &StaticSecret,
    ephemeral_public: &[u8; 32],
    recipient: &[u8; 32],
) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
    let shared = ephemeral.diffie_hellman(&PublicKey::from(*recipient));
    if !shared.was_contributory() {
        return Err(CryptoError::DegenerateSharedSecret);
    }
    Ok(derive_seal_key(
        ephemeral_public,
        recipient,
        shared.as_bytes(),
    ))
}

fn derive_seal_key(
    ephemeral_public: &[u8; 32],
    recipient_public: &[u8; 32],
    shared: &[u8; 32],
) -> Zeroizing<[u8; 32]> {
    let mut ikm = Zeroizing::new([0u8; 96]);
    ikm[..32].copy_from_slice(ephemeral_public);
    ikm[32..64].copy_from_slice(recipient_public);
    ikm[64..].copy_from_slice(shared);
    let mut key = Zeroizing::new([0u8; 32]);
    hkdf_expand(ikm.as_ref(), SEAL_KEY_INFO, key.as_mut());
    key
}

fn seal_associated_data(purpose: KeyPurpose, recipient_public: &[u8; 32]) -> Vec<u8> {
    let mut out = purpose.associated_data(SEAL_DOMAIN);
    out.extend_from_slice(recipient_public);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::SeededRandom;
    use haven_protocol::Bytes;

    fn recipient(random: &SeededRandom) -> (StaticSecret, [u8; 32]) {
        let secret = StaticSecret::from(random_array::<32>(random));
        let public = PublicKey::from(&secret).to_bytes();
        (secret, public)
    }

    #[test]
    fn wrap_round_trip_and_failures() {
        let random = SeededRandom::new(10);
        let (kek, key) = (random_array::<32>(&random), random_array::<32>(&random));
        let purpose = KeyPurpose::EpochKey(2);
        let wrapped = WrappedKey::wrap(&kek, &key, purpose, &random);
        assert_eq!(*wrapped.unwrap_key(&kek, purpose).unwrap(), key);
        // Fresh nonce each time.
        assert_ne!(wrapped, WrappedKey::wrap(&kek, &key, purpose, &random));

        let wrong_kek = random_array::<32>(&random);
        assert_eq!(
            wrapped.unwrap_key(&wrong_kek, purpose),
            Err(CryptoError::UnwrapFailed)
        );
        for other in [
            KeyPurpose::EpochKey(3),
            KeyPurpose::RootKeyForPassword,
            KeyPurpose::RootKeyForRecovery,
        ] {
            assert!(wrapped.unwrap_key(&kek, other).is_err(), "{other:?}");
        }
        let bytes = wrapped.to_bytes();
        for index in 0..bytes.len() {
            for bit in [0x01, 0x80] {
                let mut tampered = bytes;
                tampered[index] ^= bit;
                assert!(
                    WrappedKey::from_bytes(tampered)
                        .unwrap_key(&kek, purpose)
                        .is_err(),
                    "byte {index}"
                );
            }
        }
    }

    #[test]
    fn seal_to_x25519_round_trip_and_failures() {
        let random = SeededRandom::new(11);
        let (secret, public) = recipient(&random);
        let key = random_array::<32>(&random);
        let device = Bytes([5; 16]);
        let purpose = KeyPurpose::RootKeyForDevice(device);
        let sealed = SealedKey::seal(&public, &key, purpose, &random).unwrap();
        assert_eq!(*sealed.open(&secret, purpose).unwrap(), key);

        let (other_secret, _) = recipient(&random);
        assert!(sealed.open(&other_secret, purpose).is_err());
        assert!(
            sealed
                .open(&secret, KeyPurpose::RootKeyForDevice(Bytes([6; 16])))
                .is_err()
        );
        assert!(
            sealed
                .open(&secret, KeyPurpose::RootKeyForRecovery)
                .is_err()
        );
        let bytes = sealed.to_bytes();
        for index in 0..bytes.len() {
            let mut tampered = bytes;
            tampered[index] ^= 0x04;
            assert!(
                SealedKey::from_bytes(tampered)
                    .open(&secret, purpose)
                    .is_err(),
                "byte {index}"
            );
        }
    }

    #[test]
    fn sealing_to_a_low_order_point_is_refused() {
        let random = SeededRandom::new(12);
        // The identity point (all zeros) and the order-2 point (u = 1 … little-endian).
        for low_order in [[0u8; 32], {
            let mut one = [0u8; 32];
            one[0] = 1;
            one
        }] {
            assert_eq!(
                SealedKey::seal(
                    &low_order,
                    &[1; 32],
                    KeyPurpose::RootKeyForRecovery,
                    &random
                ),
                Err(CryptoError::DegenerateSharedSecret)
            );
        }
        // A sealed key whose ephemeral public key is low order does not open.
        let (secret, public) = recipient(&random);
        let sealed =
            SealedKey::seal(&public, &[1; 32], KeyPurpose::RootKeyForRecovery, &random).unwrap();
        let mut bytes = sealed.to_bytes();
        bytes[..32].copy_from_slice(&[0; 32]);
        assert!(
            SealedKey::from_bytes(bytes)
                .open(&secret, KeyPurpose::RootKeyForRecovery)
                .is_err()
        );
    }

    #[test]
    fn debug_is_opaque() {
        let random = SeededRandom::new(13);
        let wrapped = WrappedKey::wrap(&[1; 32], &[2; 32], KeyPurpose::EpochKey(1), &random);
        assert_eq!(format!("{wrapped:?}"), "WrappedKey(..)");
    }
}
