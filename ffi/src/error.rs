//! The one error type of the FFI, and how the core's errors map onto it.
//!
//! Few variants, each telling the app what to do, each with a `reason` a person can read. No
//! reason ever carries journal text, a password, a token or key material: the core's messages do
//! not, and the FFI adds only operation names and ids.

use haven_core::HavenError;
use haven_core::local_store::{KeyStoreError as CoreKeyStoreError, LocalStoreError};
use haven_core::remote::RemoteError;
use haven_protocol::ErrorCode;

/// Every error the library reports. Kotlin: `HavenFfiException.<Variant>`; Swift: `HavenFfiError`;
/// Python: `HavenFfiError.<Variant>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
pub enum HavenFfiError {
    /// Wrong username or password (the two are never told apart).
    #[error("wrong username or password: {reason}")]
    WrongCredentials { reason: String },
    /// This needs an account on this profile (or the session ended): log in.
    #[error("not logged in: {reason}")]
    NotLoggedIn { reason: String },
    /// No document with this id (or it was deleted).
    #[error("not found: {reason}")]
    NotFound { reason: String },
    /// Input the caller can fix: a malformed id, a weak password, a taken username, a text position
    /// inside a character, a field that is too long, an account already on this profile.
    #[error("invalid input: {reason}")]
    InvalidInput { reason: String },
    /// The server could not be reached or refused for a reason that may pass (offline, rate
    /// limited, server trouble). Nothing was lost; sync again later.
    #[error("network: {reason}")]
    Network { reason: String },
    /// The operation did not finish in time (`sync_once`'s bound). Nothing was lost.
    #[error("timed out: {reason}")]
    Timeout { reason: String },
    /// `cancel()` was called (or the caller's coroutine / task was cancelled).
    #[error("cancelled: {reason}")]
    Cancelled { reason: String },
    /// Another device revoked this one: it keeps its data (export it) and stops syncing.
    #[error("device revoked: {reason}")]
    Revoked { reason: String },
    /// The account was erased: this device keeps its data (export it) and stops syncing.
    #[error("account erased: {reason}")]
    Erased { reason: String },
    /// The platform key store failed or is locked (the app's `KeyStore` threw `Unavailable` or
    /// `Failed`). Nothing is lost: retry once the user has unlocked the device.
    #[error("key store: {reason}")]
    KeyStore { reason: String },
    /// The data key is gone or does not open this profile (platform key deleted or invalidated).
    /// The local data can never be read again: wipe the profile and log in again.
    #[error("key lost: {reason}")]
    KeyLost { reason: String },
    /// The local store failed: a directory that cannot be written, a full disk, a corrupt file,
    /// a profile already open elsewhere.
    #[error("storage: {reason}")]
    Storage { reason: String },
    /// A backup could not be opened or made: a wrong passphrase, a damaged or altered file, not a
    /// Haven backup, one too large, or one made by a newer version. Nothing was changed.
    #[error("backup: {reason}")]
    Backup { reason: String },
    /// The client was closed or wiped; open a new one.
    #[error("closed: {reason}")]
    Closed { reason: String },
    /// A bug or an impossible state (a caught panic, a server that broke the protocol, a callback
    /// that threw something unexpected). The process is fine; the operation did not happen.
    #[error("internal error: {reason}")]
    Internal { reason: String },
}

pub type FfiResult<T> = Result<T, HavenFfiError>;

impl HavenFfiError {
    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        Self::InvalidInput {
            reason: reason.into(),
        }
    }

    pub(crate) fn internal(reason: impl Into<String>) -> Self {
        Self::Internal {
            reason: reason.into(),
        }
    }

    pub(crate) fn closed() -> Self {
        Self::Closed {
            reason: "this client was closed or wiped; open a new one".into(),
        }
    }

    pub(crate) fn cancelled(operation: &str) -> Self {
        Self::Cancelled {
            reason: format!("{operation} was cancelled"),
        }
    }
}

/// A foreign callback (`ChangeListener`, `Logger`) threw something that is not a
/// `HavenFfiError`.
impl From<uniffi::UnexpectedUniFFICallbackError> for HavenFfiError {
    fn from(error: uniffi::UnexpectedUniFFICallbackError) -> Self {
        Self::Internal {
            reason: format!("a callback threw: {}", error.reason),
        }
    }
}

impl From<HavenError> for HavenFfiError {
    fn from(error: HavenError) -> Self {
        let reason = error.to_string();
        match error {
            HavenError::ProfileInUse => Self::Storage { reason },
            HavenError::Store(store) => from_store(store, reason),
            HavenError::Crypto(_) | HavenError::Protocol(_) => Self::Internal { reason },
            HavenError::Backup(_) => Self::Backup { reason },
            HavenError::Document(document) => match document {
                haven_core::documents::DocumentError::Invalid { .. }
                | haven_core::documents::DocumentError::OutOfRange { .. } => {
                    Self::InvalidInput { reason }
                }
                _ => Self::Internal { reason },
            },
            HavenError::Remote(remote) => from_remote(&remote, reason),
            HavenError::NotLoggedIn => Self::NotLoggedIn { reason },
            HavenError::AlreadyLoggedIn
            | HavenError::WeakPassword(_)
            | HavenError::RecoveryPhrase(_)
            | HavenError::Invalid(_) => Self::InvalidInput { reason },
            HavenError::WrongCredentials => Self::WrongCredentials { reason },
            HavenError::DeviceRevoked => Self::Revoked { reason },
            HavenError::AccountErased => Self::Erased { reason },
            HavenError::NotFound { .. } => Self::NotFound { reason },
            HavenError::Timeout => Self::Timeout { reason },
            HavenError::Cancelled => Self::Cancelled { reason },
        }
    }
}

fn from_store(error: LocalStoreError, reason: String) -> HavenFfiError {
    match error {
        LocalStoreError::KeyStore(CoreKeyStoreError::KeyLost { .. })
        | LocalStoreError::WrongDataKey
        | LocalStoreError::DataKeyMissing { .. } => HavenFfiError::KeyLost { reason },
        LocalStoreError::KeyStore(_) => HavenFfiError::KeyStore { reason },
        _ => HavenFfiError::Storage { reason },
    }
}

fn from_remote(error: &RemoteError, reason: String) -> HavenFfiError {
    match error {
        RemoteError::Config { .. } => HavenFfiError::InvalidInput { reason },
        RemoteError::Timeout => HavenFfiError::Timeout { reason },
        RemoteError::Network { .. } | RemoteError::Decode { .. } => {
            HavenFfiError::Network { reason }
        }
        RemoteError::Server { .. } => match error.code() {
            Some(ErrorCode::Invalid | ErrorCode::TooLarge | ErrorCode::UsernameTaken) => {
                HavenFfiError::InvalidInput { reason }
            }
            Some(ErrorCode::Unauthorized) => HavenFfiError::NotLoggedIn { reason },
            Some(ErrorCode::NotFound) => HavenFfiError::NotFound { reason },
            Some(ErrorCode::DeviceRevoked) => HavenFfiError::Revoked { reason },
            Some(ErrorCode::AccountErased) => HavenFfiError::Erased { reason },
            _ => HavenFfiError::Network { reason },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_errors_map_to_what_the_app_does() {
        assert!(matches!(
            HavenFfiError::from(HavenError::WrongCredentials),
            HavenFfiError::WrongCredentials { .. }
        ));
        assert!(matches!(
            HavenFfiError::from(HavenError::NotFound {
                what: "journal entry",
                id: "00".into()
            }),
            HavenFfiError::NotFound { .. }
        ));
        assert!(matches!(
            HavenFfiError::from(HavenError::Store(LocalStoreError::KeyStore(
                CoreKeyStoreError::Unavailable {
                    reason: "locked".into()
                }
            ))),
            HavenFfiError::KeyStore { .. }
        ));
        assert!(matches!(
            HavenFfiError::from(HavenError::Backup(
                haven_core::crypto::backup::BackupError::WrongPassphrase
            )),
            HavenFfiError::Backup { .. }
        ));
        assert!(matches!(
            HavenFfiError::from(HavenError::Store(LocalStoreError::WrongDataKey)),
            HavenFfiError::KeyLost { .. }
        ));
        assert!(matches!(
            HavenFfiError::from(HavenError::Remote(RemoteError::Network {
                reason: "offline".into()
            })),
            HavenFfiError::Network { .. }
        ));
    }
}
