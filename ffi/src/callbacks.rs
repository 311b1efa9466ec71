//! The traits the app implements: `KeyStore` (the platform key that protects the local store's
//! data key) and `ChangeListener` (what changed, so the UI can refresh).

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use haven_core::local_store::{KeyStore as CoreKeyStore, KeyStoreError as CoreKeyStoreError};

use crate::error::HavenFfiError;
use crate::log::{LogLevel, log};
use crate::records::{ChangeSet, SyncStatus};

/// What a `KeyStore` throws. Kotlin: `PlatformKeyException.<Variant>`; Swift:
/// `PlatformKeyError`; Python: `PlatformKeyError.<Variant>`. The `reason` goes to logs and
/// errors: never put key material in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
pub enum PlatformKeyError {
    /// The platform key cannot be used right now (device locked, user not authenticated,
    /// Keystore busy). Surfaces as `HavenFfiError.KeyStore`: retry after unlock.
    #[error("the key store is unavailable right now: {reason}")]
    Unavailable { reason: String },
    /// The platform key is gone or no longer opens this wrapped key (deleted, invalidated by a
    /// new lock screen or biometrics). Surfaces as `HavenFfiError.KeyLost`: wipe and log in again.
    #[error("the key store's key is lost or does not match: {reason}")]
    KeyLost { reason: String },
    /// Any other failure. Surfaces as `HavenFfiError.KeyStore`.
    #[error("the key store failed: {reason}")]
    Failed { reason: String },
}

/// Anything else the app's `KeyStore` threw counts as `Failed`.
impl From<uniffi::UnexpectedUniFFICallbackError> for PlatformKeyError {
    fn from(error: uniffi::UnexpectedUniFFICallbackError) -> Self {
        Self::Failed {
            reason: format!("the key store threw: {}", error.reason),
        }
    }
}

/// The platform key store, implemented by the app: Android Keystore (ideally StrongBox, an AES
/// key with user authentication) or the iOS Keychain / Secure Enclave
/// (`kSecAttrAccessibleWhenUnlockedThisDeviceOnly`).
///
/// The library makes a random 32-byte data key that encrypts every record of the profile; it
/// asks the app only to *wrap* it (on first open), *unwrap* it (on every later open) and
/// *delete* the platform key (the first step of a wipe). `wrap` and `unwrap` see the raw data
/// key: don't log it, don't keep it, overwrite your copies.
///
/// Called on a library thread (`haven-worker`), never on the caller's thread.
#[uniffi::export(foreign)]
pub trait KeyStore: Send + Sync {
    /// Encrypts `data_key` under the platform key (creating that key if needed).
    fn wrap(&self, data_key: Vec<u8>) -> Result<Vec<u8>, PlatformKeyError>;
    /// Inverse of `wrap`.
    fn unwrap(&self, wrapped: Vec<u8>) -> Result<Vec<u8>, PlatformKeyError>;
    /// Destroys the platform key so no wrapped copy can ever be opened again. Deleting a key
    /// that does not exist is not an error.
    fn delete(&self) -> Result<(), PlatformKeyError>;
}

/// Adapts the app's `KeyStore` to the core's trait (the orphan rule keeps the two apart).
pub(crate) struct ForeignKeyStore(pub(crate) Arc<dyn KeyStore>);

impl fmt::Debug for ForeignKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ForeignKeyStore")
    }
}

impl ForeignKeyStore {
    fn call<T>(
        &self,
        what: &str,
        call: impl FnOnce(&dyn KeyStore) -> Result<T, PlatformKeyError>,
    ) -> Result<T, CoreKeyStoreError> {
        match catch_unwind(AssertUnwindSafe(|| call(self.0.as_ref()))) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(PlatformKeyError::Unavailable { reason })) => {
                Err(CoreKeyStoreError::Unavailable { reason })
            }
            Ok(Err(PlatformKeyError::KeyLost { reason })) => {
                Err(CoreKeyStoreError::KeyLost { reason })
            }
            Ok(Err(PlatformKeyError::Failed { reason })) => {
                Err(CoreKeyStoreError::Failed { reason })
            }
            Err(_) => Err(CoreKeyStoreError::Failed {
                reason: format!("the key store's {what} failed unexpectedly"),
            }),
        }
    }
}

impl CoreKeyStore for ForeignKeyStore {
    fn wrap(&self, data_key: Vec<u8>) -> Result<Vec<u8>, CoreKeyStoreError> {
        self.call("wrap", |store| store.wrap(data_key))
    }

    fn unwrap(&self, wrapped: Vec<u8>) -> Result<Vec<u8>, CoreKeyStoreError> {
        self.call("unwrap", |store| store.unwrap(wrapped))
    }

    fn delete(&self) -> Result<(), CoreKeyStoreError> {
        self.call("delete", |store| store.delete())
    }
}

/// Told what changed, so the UI can refresh. Implemented by the app.
///
/// **Thread:** called on a library thread (`haven-worker`), never on the thread that started the
/// sync, and never while the library holds a lock (so calling back into the client is safe).
/// Calls from `sync_once` and from live sync may overlap. Return quickly: post to the main
/// thread (`Dispatchers.Main`, `MainActor`) and do the work there.
///
/// What a listener throws is logged (see `set_logger`) and ignored; it never fails a sync.
#[uniffi::export(foreign)]
pub trait ChangeListener: Send + Sync {
    /// Documents changed or were deleted on this device because of a sync round (another device's
    /// edits, public content updates). Not called for rounds that changed nothing, nor for this
    /// device's own edits.
    fn on_change(&self, changes: ChangeSet) -> Result<(), HavenFfiError>;
    /// The sync status after a round (successful or not), and when live sync stops by itself
    /// (revoked, erased, logged out).
    fn on_sync_status(&self, status: SyncStatus) -> Result<(), HavenFfiError>;
}

/// Calls a listener method, logging (and swallowing) what it throws or panics with.
pub(crate) fn notify(what: &str, call: impl FnOnce() -> Result<(), HavenFfiError>) {
    match catch_unwind(AssertUnwindSafe(call)) {
        Ok(Ok(())) => {}
        Ok(Err(error)) => log(
            LogLevel::Warn,
            format!("ChangeListener.{what} threw (ignored): {error}"),
        ),
        Err(_) => log(
            LogLevel::Warn,
            format!("ChangeListener.{what} failed unexpectedly (ignored)"),
        ),
    }
}
