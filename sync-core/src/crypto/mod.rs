//! End-to-end encryption: the account's key hierarchy, the sealed key bundle and private
//! envelopes (DESIGN.md §3–§4).
//!
//! # Key hierarchy
//!
//! ```text
//!  password ──Argon2id(salt, m, t, p)──▶ master key ──HKDF──┬──▶ auth_secret ─────▶ server (login proof)
//!                                         (zeroised at once) └──▶ KEK ──wraps──┐
//!                                                                               │
//!  24-word phrase ──entropy──HKDF──┬──▶ recovery X25519 key pair ──(sealed to)──┤
//!                                  └──▶ recovery_auth ─────────▶ server          │
//!                                                                               ▼
//!  each device's X25519 key ──────────────────────────────(sealed to)──▶ RK (root key, 32 random bytes)
//!                                                                               │ HKDF
//!                                   ┌───────────────────────┬───────────────────┴──────────┐
//!                                   ▼                       ▼                              ▼
//!                           bundle-seal key         bundle-sign key (Ed25519)       epoch-wrap key
//!                         (encrypts the inner     (signs the whole bundle)     (wraps every epoch key,
//!                          part of the bundle)                                  old and current)
//!                                                                                          │
//!                                                                                          ▼
//!                                                             epoch key n ──seals──▶ private envelopes
//! ```
//!
//! - [`password`]: Argon2id → master → HKDF into `auth_secret` and `KEK`; the strength floor.
//! - [`recovery`]: the BIP39 phrase and the keys it derives.
//! - [`keys`]: `RootKey`, `EpochKey`, `DeviceKeys`, `AccountConstants`, the RK-derived keys.
//! - [`wrap`]: wrapping a key under a symmetric key, and sealing a key to an X25519 public key.
//! - [`bundle`]: the account key bundle: a clear "wraps" layer (RK for the password, the
//!   recovery key and each device) and an inner part sealed under an RK-derived key.
//! - [`envelope`]: envelope ids and sealing / opening private envelopes.
//! - [`backup`]: the passphrase-sealed backup file of a journal.
//!
//! # What the server sees
//!
//! The server can see: `auth_secret` (it stores only an Argon2id hash of it) and `recovery_auth`,
//! the KDF salt and parameters, the bundle's `version` and `key_epoch`, how many devices hold a
//! wrap and their (already public) device ids, the sizes of the bundle and of every padded
//! envelope, and each envelope's header (doc, kind, device, ctr, epoch, id, covers, upto_seq).
//!
//! It cannot see: the password, the KEK, the recovery phrase, RK, any epoch key, the device list
//! (names, public keys), the recovery public key, the account constants, or any payload. It can
//! withhold bundles and envelopes, but not forge, swap, replay an older bundle to a device that
//! has seen a newer one, or move an envelope's body under another header unnoticed.
//!
//! It *can* guess passwords offline: it holds both the Argon2id hash of `auth_secret` and the
//! RK wrapped under the KEK, so a weak password falls to a dictionary at Argon2id's cost. This is
//! why the client refuses weak KDF parameters and passwords below [`check_password_strength`]'s
//! floor, and it belongs in PRIVACY.md.
//!
//! Everything here is sans-I/O: randomness comes through [`crate::env::Random`], time as a
//! `now_ms` argument. Secrets live in types that zeroise on drop and whose `Debug` is redacted.

pub mod backup;
pub mod bundle;
mod codec;
pub mod envelope;
pub mod keys;
pub mod link;
pub mod password;
pub mod recovery;
pub mod wrap;

use haven_protocol::EnvelopeError;

pub use bundle::{BundleContents, DeviceRecord};
pub use envelope::{
    OpenError, PrivateHeader, envelope_id, open_private, seal_private, sorted_hashes_content,
};
pub use keys::{
    AccountConstants, AuthSecret, DEVICE_KEYS_LEN, DeviceKeys, DevicePublicKeys, EpochKey,
    EpochKeyring, Kek, RecoveryAuth, RootKey,
};
pub use link::{LinkGrant, LinkInvitation};
pub use password::{
    PasswordKeys, WeakPassword, check_password_strength, derive_password_keys, kdf_params_allowed,
    new_kdf_params,
};
pub use recovery::{PhraseError, RecoveryKeys, RecoveryPhrase};
pub use wrap::{KeyPurpose, SealedKey, WrappedKey};

/// Why a cryptographic operation failed. Messages never contain key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    #[error(
        "KDF parameters outside the accepted range (memory {m_kib} KiB, {t} passes, {p} lanes); \
         the minimum is 64 MiB, 3 passes, 1 lane"
    )]
    UnacceptableKdfParams { m_kib: u32, t: u32, p: u32 },
    #[error("the password could not be hashed: {0}")]
    Kdf(String),
    #[error("wrong password, recovery phrase or device key, or the data was tampered with")]
    UnwrapFailed,
    #[error("decryption failed: wrong key, or the data was tampered with")]
    Decrypt,
    #[error("the key bundle's signature does not verify")]
    BadSignature,
    #[error(
        "key bundle version {found} is older than version {min_version} already accepted \
         (refusing a rollback)"
    )]
    Rollback { found: u64, min_version: u64 },
    #[error("the key bundle's version or epoch does not match its signed contents")]
    BundleMismatch,
    #[error("unknown key bundle format {0}")]
    UnknownFormat(u8),
    #[error("malformed key bundle: {0}")]
    Malformed(&'static str),
    #[error("{0}")]
    Link(&'static str),
    #[error("{what} is too large ({len}, at most {max})")]
    TooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("this device has no key in the bundle: it was removed, or never added")]
    NoWrapForDevice,
    #[error("the bundle's root key does not descend from the one this device trusts")]
    UntrustedRootKey,
    #[error("this root key does not belong to this bundle")]
    WrongRootKey,
    #[error("the new root key must differ from the current one")]
    SameRootKey,
    #[error("a device with this id is already in the bundle")]
    DuplicateDevice,
    #[error("no such device in the bundle")]
    UnknownDevice,
    #[error("not a valid public key")]
    BadPublicKey,
    #[error("key agreement produced a degenerate shared secret (a low-order public key)")]
    DegenerateSharedSecret,
    #[error("no key for epoch {0}")]
    UnknownEpoch(u32),
    #[error("the key epoch cannot advance further")]
    EpochOverflow,
    #[error("private envelopes cannot be sealed for the public space")]
    PublicSpace,
    #[error("the sealed envelope is invalid: {0}")]
    Envelope(#[from] EnvelopeError),
}

/// HKDF-SHA256 expand of `ikm` (no salt: every input here is already a uniform secret) under a
/// domain-separating `info`.
pub(crate) fn hkdf_expand(ikm: &[u8], info: &[u8], out: &mut [u8]) {
    hkdf::Hkdf::<sha2::Sha256>::new(None, ikm)
        .expand(info, out)
        // Every caller asks for ≤ 64 bytes, far below HKDF-SHA256's 8160-byte limit.
        .unwrap_or_else(|_| unreachable!("HKDF-SHA256 output length is within bounds"));
}

/// XChaCha20-Poly1305 primitives shared by key wrapping, the bundle and envelopes.
pub(crate) mod aead {
    use chacha20poly1305::aead::{Aead as _, AeadInOut as _, Payload};
    use chacha20poly1305::{KeyInit as _, XChaCha20Poly1305, XNonce};
    use zeroize::Zeroizing;

    pub(crate) const NONCE_LEN: usize = 24;
    pub(crate) const TAG_LEN: usize = 16;

    fn cipher(key: &[u8; 32]) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(key.into())
    }

    /// Ciphertext ‖ tag of `plaintext` under `key`, bound to `aad`.
    pub(crate) fn seal(
        key: &[u8; 32],
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Vec<u8> {
        cipher(key)
            .encrypt(
                &XNonce::from(*nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            // XChaCha20-Poly1305 fails only past 2^38 bytes; every input here is capped far below.
            .unwrap_or_else(|_| unreachable!("XChaCha20-Poly1305 input is within bounds"))
    }

    /// The plaintext of `ciphertext` (‖ tag), or `None` when the tag does not verify. The
    /// plaintext buffer is zeroised on drop.
    pub(crate) fn open(
        key: &[u8; 32],
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        ciphertext: &[u8],
    ) -> Option<Zeroizing<Vec<u8>>> {
        let mut buffer = Zeroizing::new(ciphertext.to_vec());
        cipher(key)
            .decrypt_in_place(&XNonce::from(*nonce), aad, &mut *buffer)
            .ok()?;
        Some(buffer)
    }
}
