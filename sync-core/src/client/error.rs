//! The client's one error type. Every variant names the problem in words a person can act on;
//! none carries journal text, passwords or tokens.

use haven_protocol::ErrorCode;

use crate::crypto::CryptoError;
use crate::crypto::backup::BackupError;
use crate::documents::DocumentError;
use crate::local_store::LocalStoreError;
use crate::remote::RemoteError;

#[derive(Debug, thiserror::Error)]
pub enum HavenError {
    /// The profile is open in another process (or another `Haven` in this one).
    #[error("this profile is in use by another process")]
    ProfileInUse,
    /// The local store failed or holds corrupt data.
    #[error("local store: {0}")]
    Store(#[from] LocalStoreError),
    /// A key, bundle or envelope could not be made or opened.
    #[error("crypto: {0}")]
    Crypto(#[from] CryptoError),
    /// A backup file could not be made or opened (wrong passphrase, damaged, altered, not a
    /// backup); nothing was changed.
    #[error("backup: {0}")]
    Backup(#[from] BackupError),
    /// A document could not be read or edited.
    #[error("document: {0}")]
    Document(#[from] DocumentError),
    /// The server could not be reached or refused the request.
    #[error("server: {0}")]
    Remote(#[from] RemoteError),
    /// This needs an account on this profile: register or log in first.
    #[error("no account on this profile: register or log in first")]
    NotLoggedIn,
    /// The profile already has an account.
    #[error("this profile already has an account; log out first")]
    AlreadyLoggedIn,
    /// Wrong username or password (the two are not told apart).
    #[error("wrong username or password")]
    WrongCredentials,
    /// The password is below the strength minimum.
    #[error("password too weak: {0}")]
    WeakPassword(String),
    /// The recovery phrase is malformed or wrong.
    #[error("recovery phrase: {0}")]
    RecoveryPhrase(String),
    /// This device was revoked by another device of the account.
    #[error("this device was revoked; its data stays readable here, export it if you need it")]
    DeviceRevoked,
    /// The account was erased.
    #[error("the account was erased; data on this device stays readable, export it if you need it")]
    AccountErased,
    /// No document with this id (or it was deleted).
    #[error("no {what} with id {id}")]
    NotFound { what: &'static str, id: String },
    /// Input the caller can fix.
    #[error("invalid input: {0}")]
    Invalid(String),
    /// The operation did not finish in time; nothing was lost, it may be retried.
    #[error("timed out; nothing was lost, try again")]
    Timeout,
    /// The operation was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// The server's data contradicts the protocol (e.g. a key bundle that does not open).
    #[error("the server sent unusable data: {0}")]
    Protocol(String),
}

impl HavenError {
    /// The server's error code, when this is a server's refusal.
    pub(crate) fn server_code(&self) -> Option<ErrorCode> {
        match self {
            Self::Remote(remote) => remote.code(),
            _ => None,
        }
    }

    /// Maps a server refusal on an authenticated call to what the device must do.
    pub(crate) fn from_auth_failure(error: RemoteError) -> Self {
        match error.code() {
            Some(ErrorCode::DeviceRevoked) => Self::DeviceRevoked,
            Some(ErrorCode::AccountErased) => Self::AccountErased,
            _ => Self::Remote(error),
        }
    }
}

pub type HavenResult<T> = Result<T, HavenError>;
