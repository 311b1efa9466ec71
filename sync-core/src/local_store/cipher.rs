//! Record encryption, after matrix-rust-sdk's `StoreCipher` (`matrix-sdk-store-encryption`).
//!
//! One random 32-byte **data key** per profile, made by the core from the injected [`Random`],
//! lives only in memory (zeroised on drop) and on disk only wrapped by the platform
//! [`KeyStore`](super::KeyStore). HKDF-SHA256 derives from it:
//! - the **value key**, for XChaCha20-Poly1305 over record values;
//! - the **key-hashing key**, for HMAC-SHA256 over record keys.
//!
//! A record as the engine stores it:
//! ```text
//! stored key   = tag (1 byte) ‖ HMAC-SHA256(hash_key, tag ‖ logical key)[..16]
//! stored value = nonce (24) ‖ XChaCha20-Poly1305(value_key, nonce,
//!                    u32 BE len(logical key) ‖ logical key ‖ value, AAD = stored key)
//! ```
//! So the file reveals neither keys (doc ids, space names, envelope ids) nor values; a value cannot
//! be moved to another record or table (the AAD is its stored key); and a scan of a table can
//! still recover the logical keys, which are inside the ciphertext. 128 bits of HMAC make a
//! collision between two logical keys of one table negligible, and every read checks that the
//! logical key inside the ciphertext is the one asked for.
//!
//! What it does not hide: the number of records per table (the tag is in the clear, so that a
//! table scan is one range read) and each value's length.

use std::fmt;

use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use crate::env::{Random, random_array};

/// Length of the data key, and of each derived key.
pub(crate) const KEY_LEN: usize = 32;
/// Bytes of HMAC kept in a stored key.
pub(crate) const KEY_HASH_LEN: usize = 16;
/// Length of every stored key: the table tag and the truncated HMAC.
pub(crate) const STORED_KEY_LEN: usize = 1 + KEY_HASH_LEN;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

const VALUE_KEY_INFO: &[u8] = b"haven/local-store/v1/value-key";
const HASH_KEY_INFO: &[u8] = b"haven/local-store/v1/key-hash-key";
const VERIFIER_INFO: &[u8] = b"haven/local-store/v1/key-verifier";
/// Length of the key verifier stored next to the wrapped key.
pub(crate) const VERIFIER_LEN: usize = 16;

/// The profile's data key. Never logged: `Debug` prints nothing of it.
pub(crate) struct DataKey(Zeroizing<[u8; KEY_LEN]>);

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

impl DataKey {
    /// A fresh key from the injected random source.
    pub(crate) fn generate(random: &dyn Random) -> Self {
        Self(Zeroizing::new(random_array(random)))
    }

    /// The key the key store returned; `None` if it has the wrong length.
    pub(crate) fn from_unwrapped(bytes: Zeroizing<Vec<u8>>) -> Option<Self> {
        let key: [u8; KEY_LEN] = bytes.as_slice().try_into().ok()?;
        Some(Self(Zeroizing::new(key)))
    }

    /// A one-way fingerprint of the key, kept in `data-key.wrapped` so that a key store that
    /// returns the wrong key is caught before the database is even opened.
    pub(crate) fn verifier(&self) -> [u8; VERIFIER_LEN] {
        let mut out = [0u8; VERIFIER_LEN];
        Hkdf::<Sha256>::new(None, self.0.as_slice())
            .expand(VERIFIER_INFO, &mut out)
            .unwrap_or_else(|_| unreachable!("16 bytes is a valid HKDF-SHA256 output length"));
        out
    }

    /// Whether `verifier` is this key's.
    pub(crate) fn matches(&self, verifier: &[u8]) -> bool {
        bool::from(self.verifier().as_slice().ct_eq(verifier))
    }

    /// A copy for [`KeyStore::wrap`](super::KeyStore::wrap), which takes ownership (uniffi).
    pub(crate) fn to_vec(&self) -> Vec<u8> {
        self.0.to_vec()
    }
}

/// A record that did not authenticate: wrong key, flipped bits, or a value moved from elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OpenError;

/// Encrypts and decrypts records under keys derived from the [`DataKey`].
pub(crate) struct StoreCipher {
    value_key: Zeroizing<[u8; KEY_LEN]>,
    hash_key: Zeroizing<[u8; KEY_LEN]>,
}

impl fmt::Debug for StoreCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoreCipher(<redacted>)")
    }
}

impl StoreCipher {
    pub(crate) fn new(data_key: &DataKey) -> Self {
        let hkdf = Hkdf::<Sha256>::new(None, data_key.0.as_slice());
        let mut value_key = Zeroizing::new([0u8; KEY_LEN]);
        let mut hash_key = Zeroizing::new([0u8; KEY_LEN]);
        hkdf.expand(VALUE_KEY_INFO, value_key.as_mut_slice())
            .unwrap_or_else(|_| unreachable!("32 bytes is a valid HKDF-SHA256 output length"));
        hkdf.expand(HASH_KEY_INFO, hash_key.as_mut_slice())
            .unwrap_or_else(|_| unreachable!("32 bytes is a valid HKDF-SHA256 output length"));
        Self {
            value_key,
            hash_key,
        }
    }

    fn value_key_array(&self) -> &[u8; KEY_LEN] {
        &self.value_key
    }

    /// `tag ‖ HMAC-SHA256(hash_key, tag ‖ logical)[..16]`.
    pub(crate) fn stored_key(&self, tag: u8, logical: &[u8]) -> Vec<u8> {
        let mut mac = <Hmac<Sha256>>::new_from_slice(self.hash_key.as_slice())
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(&[tag]);
        mac.update(logical);
        let digest = mac.finalize().into_bytes();
        let mut out = Vec::with_capacity(STORED_KEY_LEN);
        out.push(tag);
        out.extend_from_slice(&digest[..KEY_HASH_LEN]);
        out
    }

    /// `nonce ‖ AEAD(u32 len ‖ logical ‖ value, AAD = stored_key)`; a fresh nonce per write.
    pub(crate) fn seal(
        &self,
        random: &dyn Random,
        stored_key: &[u8],
        logical: &[u8],
        value: &[u8],
    ) -> Vec<u8> {
        let key_len = u32::try_from(logical.len())
            .unwrap_or_else(|_| unreachable!("logical keys are checked against MAX_KEY_LEN"));
        let mut plain = Zeroizing::new(Vec::with_capacity(4 + logical.len() + value.len()));
        plain.extend_from_slice(&key_len.to_be_bytes());
        plain.extend_from_slice(logical);
        plain.extend_from_slice(value);
        let nonce: [u8; NONCE_LEN] = random_array(random);
        let sealed = XChaCha20Poly1305::new(self.value_key_array().into())
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &plain,
                    aad: stored_key,
                },
            )
            .unwrap_or_else(|_| unreachable!("values are checked against MAX_VALUE_LEN"));
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens a stored record: authenticates it against its stored key, and checks that the
    /// logical key inside hashes to that stored key. Returns (logical key, value).
    pub(crate) fn open(
        &self,
        stored_key: &[u8],
        stored_value: &[u8],
    ) -> Result<(Vec<u8>, Zeroizing<Vec<u8>>), OpenError> {
        let &[tag, ..] = stored_key else {
            return Err(OpenError);
        };
        if stored_key.len() != STORED_KEY_LEN || stored_value.len() < NONCE_LEN + TAG_LEN {
            return Err(OpenError);
        }
        let (nonce, sealed) = stored_value
            .split_first_chunk::<NONCE_LEN>()
            .ok_or(OpenError)?;
        let plain = Zeroizing::new(
            XChaCha20Poly1305::new(self.value_key_array().into())
                .decrypt(
                    &XNonce::from(*nonce),
                    Payload {
                        msg: sealed,
                        aad: stored_key,
                    },
                )
                .map_err(|_| OpenError)?,
        );
        let (len, rest) = plain.split_first_chunk::<4>().ok_or(OpenError)?;
        let len = usize::try_from(u32::from_be_bytes(*len)).map_err(|_| OpenError)?;
        if len > rest.len() {
            return Err(OpenError);
        }
        let (logical, value) = rest.split_at(len);
        // Authenticated already, so this only fails on a key-hash collision or a bug; checked
        // anyway so that a read can never return another key's value.
        let expected = self.stored_key(tag, logical);
        if !bool::from(expected.as_slice().ct_eq(stored_key)) {
            return Err(OpenError);
        }
        Ok((logical.to_vec(), Zeroizing::new(value.to_vec())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::SeededRandom;

    fn cipher(seed: u64) -> (StoreCipher, SeededRandom) {
        let random = SeededRandom::new(seed);
        let key = DataKey::generate(&random);
        (StoreCipher::new(&key), random)
    }

    #[test]
    fn round_trip_and_binding() {
        let (c, random) = cipher(1);
        let k = c.stored_key(3, b"doc-1");
        assert_eq!(k.len(), STORED_KEY_LEN);
        assert_eq!(k[0], 3);
        assert_ne!(k, c.stored_key(4, b"doc-1"), "tables hash apart");
        let v = c.seal(&random, &k, b"doc-1", b"hello");
        let (logical, value) = c.open(&k, &v).unwrap();
        assert_eq!(
            (logical.as_slice(), value.as_slice()),
            (&b"doc-1"[..], &b"hello"[..])
        );

        // Moved to another record or table: the AAD no longer matches.
        let other = c.stored_key(3, b"doc-2");
        assert_eq!(c.open(&other, &v), Err(OpenError));
        let mut moved_table = k.clone();
        moved_table[0] = 4;
        assert_eq!(c.open(&moved_table, &v), Err(OpenError));

        // Every flipped bit and every truncation is caught.
        for i in 0..v.len() {
            let mut bad = v.clone();
            bad[i] ^= 0x40;
            assert_eq!(c.open(&k, &bad), Err(OpenError), "byte {i}");
        }
        for len in 0..v.len() {
            assert_eq!(c.open(&k, &v[..len]), Err(OpenError));
        }
        assert_eq!(c.open(&[], &v), Err(OpenError));

        // Another data key opens nothing.
        let (other_cipher, _) = cipher(2);
        assert_eq!(other_cipher.open(&k, &v), Err(OpenError));
    }

    #[test]
    fn secrets_are_redacted() {
        let random = SeededRandom::new(1);
        let key = DataKey::generate(&random);
        let text = format!("{key:?} {:?}", StoreCipher::new(&key));
        assert_eq!(text, "DataKey(<redacted>) StoreCipher(<redacted>)");
    }
}
