//! The platform key store that protects the local store's data key (DESIGN.md §4 "Local store").
//!
//! The core makes the data key; the host app only *wraps* it with a key the platform guards
//! (Android Keystore, ideally StrongBox with user authentication; iOS Keychain / Secure Enclave
//! with `WhenUnlockedThisDeviceOnly`). That is what makes a stolen, locked phone reveal nothing:
//! the files hold only ciphertext and a wrapped key that the locked platform refuses to unwrap.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

use super::fsutil;
use crate::env::{Random, random_array};

/// File name of [`FileKeyStore`]'s wrapping key inside the profile directory.
pub const FILE_KEYSTORE_NAME: &str = "keystore.key";

/// Why the key store could not wrap, unwrap or delete. The variants tell the app what to do; the
/// `reason` is for logs and must never contain key material (implementations: don't put any in).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyStoreError {
    /// The platform key cannot be used right now (device locked, user not authenticated, Keystore
    /// busy). Nothing is lost: retry once the user has unlocked.
    #[error("the key store is unavailable right now: {reason}")]
    Unavailable { reason: String },
    /// The platform key is gone or no longer opens this wrapped key (deleted, invalidated by a
    /// change of biometrics or lock screen, a wrapped key from another install). The local data
    /// cannot be read again: wipe the profile and restore from the server.
    #[error("the key store's key is lost or does not match: {reason}")]
    KeyLost { reason: String },
    /// Any other failure of the platform key store.
    #[error("the key store failed: {reason}")]
    Failed { reason: String },
}

/// The foreign trait the host app implements. Arguments and results are owned, as uniffi passes
/// them across the FFI. `wrap` and `unwrap` receive and return the raw data key: implementations
/// must not log or keep it, and should zero their copies.
///
/// A uniffi callback interface needs its error to convert from uniffi's unexpected-callback error,
/// which the orphan rule forbids for this type in the `ffi` crate; the `ffi` crate therefore
/// declares its own foreign trait with the same three methods and adapts it to this one.
pub trait KeyStore: Send + Sync + fmt::Debug {
    /// Encrypts `data_key` under the platform key (creating that key if needed).
    fn wrap(&self, data_key: Vec<u8>) -> Result<Vec<u8>, KeyStoreError>;
    /// Inverse of `wrap`.
    fn unwrap(&self, wrapped: Vec<u8>) -> Result<Vec<u8>, KeyStoreError>;
    /// Destroys the platform key, so that no wrapped copy can ever be opened again (the panic
    /// wipe's first step). Deleting a key that does not exist is not an error.
    fn delete(&self) -> Result<(), KeyStoreError>;
}

const WRAP_AAD: &[u8] = b"haven/local-store/v1/data-key-wrap";
const NONCE_LEN: usize = 24;

/// `nonce ‖ XChaCha20-Poly1305(wrapping_key, data_key)`.
fn seal_with(wrapping_key: &[u8; 32], random: &dyn Random, data_key: &[u8]) -> Vec<u8> {
    let nonce: [u8; NONCE_LEN] = random_array(random);
    let sealed = XChaCha20Poly1305::new(wrapping_key.into())
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: data_key,
                aad: WRAP_AAD,
            },
        )
        .unwrap_or_else(|_| unreachable!("XChaCha20-Poly1305 encrypts any message below 256 GiB"));
    let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    out
}

fn open_with(wrapping_key: &[u8; 32], wrapped: &[u8]) -> Result<Vec<u8>, KeyStoreError> {
    let lost = || KeyStoreError::KeyLost {
        reason: "the wrapped data key does not open with this key store's key".into(),
    };
    let (nonce, sealed) = wrapped.split_first_chunk::<NONCE_LEN>().ok_or_else(lost)?;
    XChaCha20Poly1305::new(wrapping_key.into())
        .decrypt(
            &XNonce::from(*nonce),
            Payload {
                msg: sealed,
                aad: WRAP_AAD,
            },
        )
        .map_err(|_| lost())
}

/// The command-line device's key store: a random 32-byte wrapping key in the file
/// `keystore.key` (mode 0600) in the profile directory, wrapping with XChaCha20-Poly1305.
///
/// **This protects nothing against someone who copies the whole profile directory**: the key
/// sits next to the data it protects. It exists so that the CLI exercises exactly the code path
/// of a phone app (wrap on create, unwrap on open, delete first on wipe); a desktop integration
/// should implement [`KeyStore`] over the OS keyring instead.
pub struct FileKeyStore {
    dir: PathBuf,
    random: Arc<dyn Random>,
}

impl fmt::Debug for FileKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileKeyStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl FileKeyStore {
    /// A key store keeping its key in `dir/keystore.key` (normally the profile directory).
    pub fn new(dir: impl Into<PathBuf>, random: Arc<dyn Random>) -> Self {
        Self {
            dir: dir.into(),
            random,
        }
    }

    /// Path of the wrapping-key file.
    pub fn key_path(&self) -> PathBuf {
        self.dir.join(FILE_KEYSTORE_NAME)
    }

    fn failed(what: &str, err: &std::io::Error) -> KeyStoreError {
        KeyStoreError::Failed {
            reason: format!("{what} {FILE_KEYSTORE_NAME}: {err}"),
        }
    }

    fn read_key(path: &Path) -> Result<Option<Zeroizing<[u8; 32]>>, KeyStoreError> {
        let Some(bytes) =
            fsutil::read_if_exists(path).map_err(|err| Self::failed("cannot read", &err))?
        else {
            return Ok(None);
        };
        let bytes = Zeroizing::new(bytes);
        let key: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| KeyStoreError::KeyLost {
                reason: format!("{FILE_KEYSTORE_NAME} is not 32 bytes long"),
            })?;
        Ok(Some(Zeroizing::new(key)))
    }
}

impl KeyStore for FileKeyStore {
    fn wrap(&self, data_key: Vec<u8>) -> Result<Vec<u8>, KeyStoreError> {
        let data_key = Zeroizing::new(data_key);
        let key = match Self::read_key(&self.key_path())? {
            Some(key) => key,
            None => {
                let key = Zeroizing::new(random_array::<32>(self.random.as_ref()));
                fsutil::create_private_dir(&self.dir)
                    .map_err(|err| Self::failed("cannot create the directory of", &err))?;
                fsutil::write_atomic(&self.dir, FILE_KEYSTORE_NAME, key.as_slice(), true)
                    .map_err(|err| Self::failed("cannot write", &err))?;
                key
            }
        };
        Ok(seal_with(&key, self.random.as_ref(), &data_key))
    }

    fn unwrap(&self, wrapped: Vec<u8>) -> Result<Vec<u8>, KeyStoreError> {
        let key = Self::read_key(&self.key_path())?.ok_or_else(|| KeyStoreError::KeyLost {
            reason: format!("{FILE_KEYSTORE_NAME} is missing"),
        })?;
        open_with(&key, &wrapped)
    }

    fn delete(&self) -> Result<(), KeyStoreError> {
        let removed = fsutil::remove_if_exists(&self.key_path())
            .map_err(|err| Self::failed("cannot delete", &err))?;
        if removed {
            // Make the unlink durable before the wipe goes on: a power cut must not bring it back.
            fsutil::sync_dir(&self.dir)
                .map_err(|err| Self::failed("cannot sync after deleting", &err))?;
        }
        Ok(())
    }
}

/// An in-memory key store for tests. It can be told to fail, to exercise the error paths.
pub struct MemoryKeyStore {
    key: Mutex<Option<Zeroizing<[u8; 32]>>>,
    failure: Mutex<Option<KeyStoreError>>,
    random: Arc<dyn Random>,
}

impl fmt::Debug for MemoryKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryKeyStore")
            .field("has_key", &!self.is_deleted())
            .finish_non_exhaustive()
    }
}

impl MemoryKeyStore {
    /// A key store with a fresh random wrapping key.
    pub fn new(random: Arc<dyn Random>) -> Self {
        let key = Zeroizing::new(random_array::<32>(random.as_ref()));
        Self {
            key: Mutex::new(Some(key)),
            failure: Mutex::new(None),
            random,
        }
    }

    /// From now on every call fails with `failure` (or, with `None`, works again).
    pub fn set_failure(&self, failure: Option<KeyStoreError>) {
        *lock(&self.failure) = failure;
    }

    /// Whether `delete` has destroyed the key (and no `wrap` has made a new one since).
    pub fn is_deleted(&self) -> bool {
        lock(&self.key).is_none()
    }

    fn check_failure(&self) -> Result<(), KeyStoreError> {
        match lock(&self.failure).as_ref() {
            Some(failure) => Err(failure.clone()),
            None => Ok(()),
        }
    }
}

impl KeyStore for MemoryKeyStore {
    fn wrap(&self, data_key: Vec<u8>) -> Result<Vec<u8>, KeyStoreError> {
        let data_key = Zeroizing::new(data_key);
        self.check_failure()?;
        let mut key = lock(&self.key);
        let key =
            key.get_or_insert_with(|| Zeroizing::new(random_array::<32>(self.random.as_ref())));
        Ok(seal_with(key, self.random.as_ref(), &data_key))
    }

    fn unwrap(&self, wrapped: Vec<u8>) -> Result<Vec<u8>, KeyStoreError> {
        self.check_failure()?;
        let key = lock(&self.key);
        let key = key.as_ref().ok_or_else(|| KeyStoreError::KeyLost {
            reason: "the key was deleted".into(),
        })?;
        open_with(key, &wrapped)
    }

    fn delete(&self) -> Result<(), KeyStoreError> {
        self.check_failure()?;
        *lock(&self.key) = None;
        Ok(())
    }
}

/// Locks a mutex, carrying on after a panic elsewhere: the guarded data stays consistent because
/// every critical section here is a single assignment or read.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::SeededRandom;

    #[test]
    fn file_keystore_round_trip_private_file_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileKeyStore::new(dir.path(), Arc::new(SeededRandom::new(1)));
        let wrapped = store.wrap(vec![7; 32]).unwrap();
        assert_eq!(store.unwrap(wrapped.clone()).unwrap(), vec![7; 32]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(store.key_path())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // A second wrap reuses the same key file.
        let again = store.wrap(vec![8; 32]).unwrap();
        assert_eq!(store.unwrap(again).unwrap(), vec![8; 32]);

        store.delete().unwrap();
        assert!(!store.key_path().exists());
        assert!(matches!(
            store.unwrap(wrapped),
            Err(KeyStoreError::KeyLost { .. })
        ));
        store.delete().unwrap(); // idempotent
    }

    #[test]
    fn file_keystore_rejects_tampered_and_foreign_wrapped_keys() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let ka = FileKeyStore::new(a.path(), Arc::new(SeededRandom::new(1)));
        let kb = FileKeyStore::new(b.path(), Arc::new(SeededRandom::new(2)));
        let mut wrapped = ka.wrap(vec![1; 32]).unwrap();
        kb.wrap(vec![2; 32]).unwrap();
        assert!(matches!(
            kb.unwrap(wrapped.clone()),
            Err(KeyStoreError::KeyLost { .. })
        ));
        wrapped[30] ^= 1;
        assert!(matches!(
            ka.unwrap(wrapped),
            Err(KeyStoreError::KeyLost { .. })
        ));
        assert!(matches!(
            ka.unwrap(vec![1, 2, 3]),
            Err(KeyStoreError::KeyLost { .. })
        ));
    }

    #[test]
    fn memory_keystore_failure_injection_and_delete() {
        let store = MemoryKeyStore::new(Arc::new(SeededRandom::new(3)));
        let wrapped = store.wrap(vec![9; 32]).unwrap();
        let failure = KeyStoreError::Unavailable {
            reason: "locked".into(),
        };
        store.set_failure(Some(failure.clone()));
        assert_eq!(store.unwrap(wrapped.clone()), Err(failure));
        store.set_failure(None);
        assert_eq!(store.unwrap(wrapped.clone()).unwrap(), vec![9; 32]);
        store.delete().unwrap();
        assert!(store.is_deleted());
        assert!(matches!(
            store.unwrap(wrapped),
            Err(KeyStoreError::KeyLost { .. })
        ));
        assert!(!format!("{store:?}").contains('9'));
    }
}
