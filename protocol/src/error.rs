//! The error body every endpoint answers with: `{"error":{"code","message","retryable",...}}`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::EnvelopeId;

/// Stable, snake_case error codes. Clients branch on these, never on messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Malformed input: bad JSON, wrong types, bad base64, ids of the wrong length, odd cursors.
    Invalid,
    /// Missing, forged, expired or revoked credentials, or a wrong password.
    Unauthorized,
    /// The device was revoked: stop syncing, offer export.
    DeviceRevoked,
    /// The account was erased: stop syncing, offer export.
    AccountErased,
    /// Nothing there, or not yours (the two are indistinguishable by design).
    NotFound,
    /// Wrong method on an existing path.
    MethodNotAllowed,
    /// The same envelope id was pushed earlier with other bytes.
    IdConflict,
    /// The pull cursor does not match the server's log (restored or truncated server).
    CursorMismatch,
    /// A snapshot does not cover every envelope of its document up to `upto_seq`.
    SnapshotStale,
    /// The document has a tombstone; nothing more is accepted for it.
    DocDeleted,
    /// Sealed under a key epoch older than the space's current one.
    EpochStale,
    /// A compare-and-swap on a versioned record lost.
    VersionConflict,
    /// The username is taken.
    UsernameTaken,
    /// Too many requests; see `retry_after`.
    RateLimited,
    /// A body, batch or envelope above the configured limits.
    TooLarge,
    /// The client is older than the server's minimum version.
    ClientTooOld,
    /// The server failed; nothing was lost, try again.
    Internal,
    /// Storage is unavailable or the server is shutting down; try again.
    Unavailable,
}

impl ErrorCode {
    /// The HTTP status a response with this code carries.
    pub fn status(self) -> u16 {
        match self {
            Self::Invalid => 400,
            Self::Unauthorized | Self::DeviceRevoked => 401,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::IdConflict
            | Self::CursorMismatch
            | Self::SnapshotStale
            | Self::EpochStale
            | Self::VersionConflict
            | Self::UsernameTaken => 409,
            Self::DocDeleted | Self::AccountErased => 410,
            Self::TooLarge => 413,
            Self::ClientTooOld => 426,
            Self::RateLimited => 429,
            Self::Internal => 500,
            Self::Unavailable => 503,
        }
    }

    /// Whether the same request may succeed later unchanged.
    pub fn retryable(self) -> bool {
        matches!(self, Self::RateLimited | Self::Internal | Self::Unavailable)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invalid => "invalid",
            Self::Unauthorized => "unauthorized",
            Self::DeviceRevoked => "device_revoked",
            Self::AccountErased => "account_erased",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::IdConflict => "id_conflict",
            Self::CursorMismatch => "cursor_mismatch",
            Self::SnapshotStale => "snapshot_stale",
            Self::DocDeleted => "doc_deleted",
            Self::EpochStale => "epoch_stale",
            Self::VersionConflict => "version_conflict",
            Self::UsernameTaken => "username_taken",
            Self::RateLimited => "rate_limited",
            Self::TooLarge => "too_large",
            Self::ClientTooOld => "client_too_old",
            Self::Internal => "internal",
            Self::Unavailable => "unavailable",
        }
    }
}

/// The top-level error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong, with the extra fields some codes carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
    pub retryable: bool,
    /// `cursor_mismatch`: the server's current head.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<u64>,
    /// `rate_limited`: seconds to wait (also in the `Retry-After` header).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// `version_conflict`: the stored version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<u64>,
    /// `snapshot_stale`: ids the snapshot must also cover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing: Option<Vec<EnvelopeId>>,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            error: ErrorDetail {
                code,
                message: message.into(),
                retryable: code.retryable(),
                head: None,
                retry_after: None,
                current_version: None,
                missing: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_as_the_contract_says() {
        let body = ErrorBody::new(ErrorCode::CursorMismatch, "cursor does not match");
        let value = serde_json::to_value(&body).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"error":{"code":"cursor_mismatch","message":"cursor does not match","retryable":false}})
        );
    }

    #[test]
    fn as_str_matches_serde() {
        use ErrorCode::*;
        for code in [
            Invalid,
            Unauthorized,
            DeviceRevoked,
            AccountErased,
            NotFound,
            MethodNotAllowed,
            IdConflict,
            CursorMismatch,
            SnapshotStale,
            DocDeleted,
            EpochStale,
            VersionConflict,
            UsernameTaken,
            RateLimited,
            TooLarge,
            ClientTooOld,
            Internal,
            Unavailable,
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
            assert!((400..600).contains(&code.status()));
        }
    }
}
