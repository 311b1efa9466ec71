//! The content signing key (Ed25519) and the identifiers derived from it.
//!
//! Key file (JSON, mode 0600 on unix):
//! `{"kind":"haven-content-key","secret_key":"<base64 32 bytes>","public_key":"<base64 32 bytes>"}`.

use std::fmt;
use std::io::Write as _;
use std::path::Path;

use automerge::ActorId;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use haven_protocol::{Bytes, DeviceId, DocId, Signature};
use hkdf::Hkdf;
use hmac::{Hmac, KeyInit as _, Mac as _};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// The `kind` of a content key file.
pub const KEY_FILE_KIND: &str = "haven-content-key";

const DOC_ID_INFO: &[u8] = b"haven/v1/content-doc-ids";
const ACTOR_DOMAIN: &[u8] = b"haven/v1/content-actor\0";
const DEVICE_DOMAIN: &[u8] = b"haven/v1/content-device\0";

/// Why a content key could not be made, read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the OS random source failed: {0}")]
    Random(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: a file already exists; a content key is never overwritten")]
    Exists { path: String },
    #[error("not a content key file: {0}")]
    Malformed(String),
    #[error("the key file's public_key does not match its secret_key")]
    PublicKeyMismatch,
    #[error("not an Ed25519 public key (expected 32 bytes in standard base64)")]
    BadPublicKey,
}

/// The publisher's Ed25519 key. Its secret is zeroised on drop and never printed.
pub struct ContentKey {
    signing: SigningKey,
    /// HKDF-derived key for deterministic document ids.
    doc_id_key: Zeroizing<[u8; 32]>,
}

impl ContentKey {
    /// Makes a key from 32 secret bytes that the caller drew from a secure random source (or, for
    /// a fixed development key, chose).
    pub fn from_secret_bytes(secret: &[u8; 32]) -> Self {
        let mut doc_id_key = Zeroizing::new([0u8; 32]);
        Hkdf::<Sha256>::new(None, secret)
            .expand(DOC_ID_INFO, doc_id_key.as_mut())
            .unwrap_or_else(|_| unreachable!("32 bytes is a valid HKDF-SHA256 output length"));
        Self {
            signing: SigningKey::from_bytes(secret),
            doc_id_key,
        }
    }

    /// Makes a new key from the OS random source.
    pub fn generate() -> Result<Self, KeyError> {
        let mut secret = Zeroizing::new([0u8; 32]);
        getrandom::fill(secret.as_mut()).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(Self::from_secret_bytes(&secret))
    }

    /// The public key that devices pin.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// The public key in standard base64, the form devices and configs carry.
    pub fn public_key_base64(&self) -> String {
        STANDARD.encode(self.verifying_key().as_bytes())
    }

    /// The key file's JSON. Holds the secret: the buffer is zeroised on drop.
    pub fn to_json(&self) -> Zeroizing<String> {
        let file = KeyFile {
            kind: KEY_FILE_KIND.to_owned(),
            secret_key: STANDARD.encode(self.signing.as_bytes()),
            public_key: self.public_key_base64(),
        };
        // Serialising three strings cannot fail; fall back to an empty document rather than panic.
        Zeroizing::new(serde_json::to_string(&file).unwrap_or_default())
    }

    /// Reads a key file's JSON, checking that its public key matches its secret.
    pub fn from_json(text: &str) -> Result<Self, KeyError> {
        let file: KeyFile =
            serde_json::from_str(text).map_err(|e| KeyError::Malformed(e.to_string()))?;
        if file.kind != KEY_FILE_KIND {
            return Err(KeyError::Malformed(format!(
                "kind is `{}`, expected `{KEY_FILE_KIND}`",
                file.kind
            )));
        }
        let decoded = Zeroizing::new(
            STANDARD
                .decode(&file.secret_key)
                .map_err(|_| KeyError::Malformed("secret_key is not base64".to_owned()))?,
        );
        let secret: Zeroizing<[u8; 32]> = Zeroizing::new(
            decoded
                .as_slice()
                .try_into()
                .map_err(|_| KeyError::Malformed("secret_key is not 32 bytes".to_owned()))?,
        );
        let key = Self::from_secret_bytes(&secret);
        if parse_public_key(&file.public_key)? != key.verifying_key() {
            return Err(KeyError::PublicKeyMismatch);
        }
        Ok(key)
    }

    /// Writes a new key file, readable by its owner only. Refuses to overwrite an existing file:
    /// losing a content key means every device must pin a new one.
    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        let io_error = |source: std::io::Error| KeyError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                KeyError::Exists {
                    path: path.display().to_string(),
                }
            } else {
                io_error(source)
            }
        })?;
        let json = self.to_json();
        file.write_all(json.as_bytes()).map_err(io_error)?;
        file.write_all(b"\n").map_err(io_error)?;
        file.sync_all().map_err(io_error)
    }

    /// Reads a key file written by [`ContentKey::save`].
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let text =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|source| KeyError::Io {
                    path: path.display().to_string(),
                    source,
                })?,
            );
        Self::from_json(&text)
    }

    pub(crate) fn sign(&self, message: &[u8]) -> Signature {
        Bytes(self.signing.sign(message).to_bytes())
    }

    /// A document id only this key's holder can compute: the first 16 bytes of
    /// HMAC-SHA256(HKDF(secret, "haven/v1/content-doc-ids"), label).
    pub(crate) fn derive_doc_id(&self, label: &str) -> DocId {
        let mut mac = <Hmac<Sha256>>::new_from_slice(self.doc_id_key.as_ref())
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(label.as_bytes());
        let tag = mac.finalize().into_bytes();
        let mut id = [0u8; 16];
        id.copy_from_slice(&tag[..16]);
        Bytes(id)
    }
}

impl fmt::Debug for ContentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContentKey")
            .field("public_key", &self.public_key_base64())
            .finish_non_exhaustive()
    }
}

/// Parses a base64 Ed25519 public key, the form devices pin.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, KeyError> {
    let bytes: [u8; 32] = STANDARD
        .decode(text.trim())
        .ok()
        .and_then(|decoded| decoded.try_into().ok())
        .ok_or(KeyError::BadPublicKey)?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::BadPublicKey)
}

/// The Automerge actor every publish from this key writes as, so its history is one actor's
/// sequence: the first 16 bytes of SHA-256("haven/v1/content-actor\0" ‖ public key).
pub(crate) fn publisher_actor(key: &VerifyingKey) -> ActorId {
    ActorId::from(&domain_hash(ACTOR_DOMAIN, key.as_bytes())[..16])
}

/// The envelope `device` of this key's publishes: the first 16 bytes of
/// SHA-256("haven/v1/content-device\0" ‖ public key).
pub(crate) fn publisher_device(key: &VerifyingKey) -> DeviceId {
    let hash = domain_hash(DEVICE_DOMAIN, key.as_bytes());
    let mut id = [0u8; 16];
    id.copy_from_slice(&hash[..16]);
    Bytes(id)
}

fn domain_hash(domain: &[u8], data: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(domain);
    hasher.update(data);
    hasher.finalize().into()
}

/// The key file's JSON form. The secret string is zeroised on drop.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    kind: String,
    secret_key: String,
    public_key: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> ContentKey {
        ContentKey::from_secret_bytes(&[byte; 32])
    }

    #[test]
    fn json_round_trip_and_no_secret_in_debug() {
        let key = key(7);
        let json = key.to_json();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["kind"], KEY_FILE_KIND);
        assert_eq!(value["public_key"], key.public_key_base64());
        let secret = value["secret_key"].as_str().unwrap().to_owned();
        let loaded = ContentKey::from_json(&json).unwrap();
        assert_eq!(loaded.verifying_key(), key.verifying_key());
        let debug = format!("{key:?}");
        assert!(!debug.contains(&secret), "{debug}");
        assert!(debug.contains(&key.public_key_base64()));
    }

    #[test]
    fn refuses_bad_key_files() {
        let good: serde_json::Value = serde_json::from_str(&key(1).to_json()).unwrap();
        let mut wrong_kind = good.clone();
        wrong_kind["kind"] = "ssh-key".into();
        let mut mismatched = good.clone();
        mismatched["public_key"] = key(2).public_key_base64().into();
        let mut short = good.clone();
        short["secret_key"] = STANDARD.encode([1u8; 31]).into();
        let mut extra = good;
        extra["comment"] = "hi".into();
        for (bad, what) in [
            (wrong_kind, "kind"),
            (mismatched, "mismatch"),
            (short, "short"),
            (extra, "unknown field"),
        ] {
            assert!(ContentKey::from_json(&bad.to_string()).is_err(), "{what}");
        }
        assert!(ContentKey::from_json("not json").is_err());
    }

    #[test]
    fn save_is_private_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("content.key");
        let key = key(3);
        key.save(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(matches!(key.save(&path), Err(KeyError::Exists { .. })));
        assert_eq!(
            ContentKey::load(&path).unwrap().verifying_key(),
            key.verifying_key()
        );
    }

    #[test]
    fn generated_keys_differ() {
        let first = ContentKey::generate().unwrap();
        let second = ContentKey::generate().unwrap();
        assert_ne!(first.verifying_key(), second.verifying_key());
    }

    #[test]
    fn derived_ids_are_stable_and_separated() {
        let key = key(5);
        assert_eq!(
            key.derive_doc_id("article:a"),
            key.derive_doc_id("article:a")
        );
        assert_ne!(
            key.derive_doc_id("article:a"),
            key.derive_doc_id("resources:a")
        );
        assert_ne!(
            key.derive_doc_id("article:a"),
            self::key(6).derive_doc_id("article:a")
        );
        let public = key.verifying_key();
        assert_ne!(
            publisher_actor(&public).to_bytes(),
            publisher_device(&public).as_bytes()
        );
        assert_eq!(parse_public_key(&key.public_key_base64()).unwrap(), public);
        assert!(parse_public_key("AAAA").is_err());
    }
}
