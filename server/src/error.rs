//! The server's typed error: every handler returns `Result<_, ApiError>`, and every failure becomes
//! the JSON error body of the contract with the status its code implies.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use haven_protocol::{EnvelopeId, ErrorBody, ErrorCode};

use crate::store::StoreError;

/// An error answer. Messages are for people; clients branch on `code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    body: ErrorBody,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            body: ErrorBody::new(code, message),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Invalid, message)
    }

    /// The one answer for bad credentials of any kind, so that failures are indistinguishable.
    pub fn unauthorized() -> Self {
        Self::new(ErrorCode::Unauthorized, "missing or invalid credentials")
    }

    /// The one answer for "absent" and "not yours".
    pub fn not_found() -> Self {
        Self::new(ErrorCode::NotFound, "nothing here")
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::TooLarge, message)
    }

    pub fn rate_limited(retry_after: u64) -> Self {
        let mut error = Self::new(ErrorCode::RateLimited, "too many requests; slow down");
        error.body.error.retry_after = Some(retry_after.max(1));
        error
    }

    pub fn cursor_mismatch(head: u64) -> Self {
        let mut error = Self::new(
            ErrorCode::CursorMismatch,
            "the cursor does not match this server's log; re-upload what you hold and pull from 0",
        );
        error.body.error.head = Some(head);
        error
    }

    pub fn version_conflict(current: u64) -> Self {
        let mut error = Self::new(ErrorCode::VersionConflict, "the stored version changed");
        error.body.error.current_version = Some(current);
        error
    }

    pub fn snapshot_stale(missing: Vec<EnvelopeId>) -> Self {
        let mut error = Self::new(ErrorCode::SnapshotStale, "snapshot misses envelopes");
        error.body.error.missing = Some(missing);
        error
    }

    /// A server-side failure. The cause goes to the log (never with bodies or secrets); the
    /// client only learns that it may retry.
    pub fn internal(context: &str, cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(%cause, "{context}");
        Self::new(
            ErrorCode::Internal,
            "internal error; nothing was lost, try again",
        )
    }

    pub fn code(&self) -> ErrorCode {
        self.body.error.code
    }

    pub fn body(&self) -> &ErrorBody {
        &self.body
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Engine(_) => {
                tracing::error!(%error, "storage failed");
                Self::new(ErrorCode::Unavailable, "storage is unavailable; try again")
            }
            StoreError::Corrupt(_) => {
                tracing::error!(%error, "stored data failed an integrity check");
                Self::new(
                    ErrorCode::Internal,
                    "stored data failed an integrity check; the server refuses to serve it",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.body.error.code.status()).unwrap_or(StatusCode::BAD_REQUEST);
        let retry_after = self.body.error.retry_after;
        let mut response = (status, axum::Json(self.body)).into_response();
        if let Some(seconds) = retry_after
            && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
