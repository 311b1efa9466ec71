//! The v1 HTTP contract (DESIGN.md §3) as an async trait, so the client engine does not care how
//! requests travel: [`http::HttpRemote`] (feature `transport`) speaks it over HTTPS and WebSocket;
//! tests may run the real server in-process behind the same trait.

use std::fmt;

use async_trait::async_trait;
use haven_protocol::api::{
    AuthProof, CreateAccountRequest, CreateAccountResponse, CreateSessionRequest, DevicesResponse,
    EnrolRequest, EnrolmentCreated, ErasureNotice, KeyBundle, LinkCreated, LinkPayload,
    PasswordChangeRequest, PreloginResponse, PullResponse, PushResponse, RecoveryRequest,
    RecoveryResetRequest, RecoveryResponse, RevokeDeviceRequest, SessionResponse,
};
use haven_protocol::{DeviceId, Envelope, EnvelopeId, ErrorBody, ErrorCode, HexId, SpaceId};

#[cfg(feature = "transport")]
pub mod http;

/// Where a pull starts: changes with seq > `after`; `at` is the id of the envelope at `after`
/// (so the server can tell the client's log from a restored one); at most `limit` changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullCursor {
    pub after: u64,
    pub at: Option<EnvelopeId>,
    pub limit: u32,
}

/// Why a call to the server failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteError {
    /// The server answered with the contract's error body.
    #[error("server answered {status}: {} ({})", .body.error.message, .body.error.code.as_str())]
    Server { status: u16, body: ErrorBody },
    /// No answer: offline, DNS, TLS, connection reset.
    #[error("network: {reason}")]
    Network { reason: String },
    /// No answer in time.
    #[error("the server did not answer in time")]
    Timeout,
    /// An answer that is not the contract's (a proxy page, a truncated body).
    #[error("unexpected answer: {reason}")]
    Decode { reason: String },
    /// The client is misconfigured (a base URL that is not http(s), a header value that cannot
    /// be sent); nothing was sent, and retrying will not help.
    #[error("invalid client configuration: {reason}")]
    Config { reason: String },
}

impl RemoteError {
    /// The contract's error code, when the server sent one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Server { body, .. } => Some(body.error.code),
            _ => None,
        }
    }

    /// Whether retrying the same request later may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            Self::Server { body, .. } => body.error.retryable,
            Self::Network { .. } | Self::Timeout => true,
            Self::Decode { .. } | Self::Config { .. } => false,
        }
    }

    /// Seconds the server asked us to wait (429).
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::Server { body, .. } => body.error.retry_after,
            _ => None,
        }
    }
}

/// Why a live feed ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LiveEnded {
    /// Closed with 4001: the token expired or the session was revoked; refresh, then reconnect.
    #[error("live feed closed: credentials expired or revoked")]
    Unauthorized,
    /// Closed by the server (shutdown) or the peer; reconnect with backoff.
    #[error("live feed closed")]
    Closed,
    #[error("live feed failed: {reason}")]
    Network { reason: String },
}

/// A live feed of a space's durable head.
#[async_trait]
pub trait LiveHeads: Send + fmt::Debug {
    /// The next head the server announced.
    async fn next_head(&mut self) -> Result<u64, LiveEnded>;
}

/// Every endpoint of the v1 API. `access` is a bearer access token; `None` only where the
/// contract allows it (reading and publishing `public`).
#[async_trait]
pub trait ServerApi: Send + Sync + fmt::Debug {
    async fn prelogin(&self, username: &str) -> Result<PreloginResponse, RemoteError>;
    async fn create_account(
        &self,
        request: &CreateAccountRequest,
    ) -> Result<CreateAccountResponse, RemoteError>;
    async fn create_session(
        &self,
        request: &CreateSessionRequest,
    ) -> Result<SessionResponse, RemoteError>;
    async fn refresh_session(&self, refresh_token: &str) -> Result<SessionResponse, RemoteError>;
    async fn delete_session(&self, access: &str) -> Result<(), RemoteError>;
    async fn recover(&self, request: &RecoveryRequest) -> Result<RecoveryResponse, RemoteError>;
    async fn reset_after_recovery(&self, request: &RecoveryResetRequest)
    -> Result<(), RemoteError>;
    async fn devices(&self, access: &str) -> Result<DevicesResponse, RemoteError>;
    async fn revoke_device(
        &self,
        access: &str,
        device: &DeviceId,
        request: &RevokeDeviceRequest,
    ) -> Result<(), RemoteError>;
    async fn create_link(&self) -> Result<LinkCreated, RemoteError>;
    async fn put_link(
        &self,
        access: &str,
        id: &HexId,
        payload: &LinkPayload,
    ) -> Result<(), RemoteError>;
    /// `None` while the mailbox holds nothing (yet), or is gone.
    async fn take_link(&self, id: &HexId) -> Result<Option<LinkPayload>, RemoteError>;
    async fn get_keys(&self, access: &str) -> Result<KeyBundle, RemoteError>;
    async fn put_keys(&self, access: &str, bundle: &KeyBundle) -> Result<(), RemoteError>;
    async fn delete_account(&self, access: &str, proof: &AuthProof) -> Result<(), RemoteError>;
    /// What the server keeps of an erased account (unauthenticated); `None` if it knows of no
    /// erasure of `user`.
    async fn erasure_notice(&self, user: &HexId) -> Result<Option<ErasureNotice>, RemoteError>;
    /// Returns a new session for this device: every session, this one too, ends.
    async fn change_password(
        &self,
        access: &str,
        request: &PasswordChangeRequest,
    ) -> Result<SessionResponse, RemoteError>;
    async fn create_enrolment(&self, access: &str) -> Result<EnrolmentCreated, RemoteError>;
    async fn enrol_session(&self, request: &EnrolRequest) -> Result<SessionResponse, RemoteError>;
    async fn push(
        &self,
        access: Option<&str>,
        space: &SpaceId,
        changes: &[Envelope],
    ) -> Result<PushResponse, RemoteError>;
    async fn pull(
        &self,
        access: Option<&str>,
        space: &SpaceId,
        cursor: PullCursor,
    ) -> Result<PullResponse, RemoteError>;
    async fn live(
        &self,
        access: Option<&str>,
        space: &SpaceId,
    ) -> Result<Box<dyn LiveHeads>, RemoteError>;
}

/// The `ServerApi` of a device with no server configured: every call answers `Network`, as when
/// offline. Reading, editing and public content still work; nothing syncs.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoServer;

fn offline<T>() -> Result<T, RemoteError> {
    Err(RemoteError::Network {
        reason: "no server configured".into(),
    })
}

#[async_trait]
impl ServerApi for NoServer {
    async fn prelogin(&self, _username: &str) -> Result<PreloginResponse, RemoteError> {
        offline()
    }
    async fn create_account(
        &self,
        _: &CreateAccountRequest,
    ) -> Result<CreateAccountResponse, RemoteError> {
        offline()
    }
    async fn create_session(
        &self,
        _: &CreateSessionRequest,
    ) -> Result<SessionResponse, RemoteError> {
        offline()
    }
    async fn refresh_session(&self, _: &str) -> Result<SessionResponse, RemoteError> {
        offline()
    }
    async fn delete_session(&self, _: &str) -> Result<(), RemoteError> {
        offline()
    }
    async fn recover(&self, _: &RecoveryRequest) -> Result<RecoveryResponse, RemoteError> {
        offline()
    }
    async fn reset_after_recovery(&self, _: &RecoveryResetRequest) -> Result<(), RemoteError> {
        offline()
    }
    async fn devices(&self, _: &str) -> Result<DevicesResponse, RemoteError> {
        offline()
    }
    async fn revoke_device(
        &self,
        _: &str,
        _: &DeviceId,
        _: &RevokeDeviceRequest,
    ) -> Result<(), RemoteError> {
        offline()
    }
    async fn create_link(&self) -> Result<LinkCreated, RemoteError> {
        offline()
    }
    async fn put_link(&self, _: &str, _: &HexId, _: &LinkPayload) -> Result<(), RemoteError> {
        offline()
    }
    async fn take_link(&self, _: &HexId) -> Result<Option<LinkPayload>, RemoteError> {
        offline()
    }
    async fn get_keys(&self, _: &str) -> Result<KeyBundle, RemoteError> {
        offline()
    }
    async fn put_keys(&self, _: &str, _: &KeyBundle) -> Result<(), RemoteError> {
        offline()
    }
    async fn delete_account(&self, _: &str, _: &AuthProof) -> Result<(), RemoteError> {
        offline()
    }
    async fn erasure_notice(&self, _: &HexId) -> Result<Option<ErasureNotice>, RemoteError> {
        offline()
    }
    async fn change_password(
        &self,
        _: &str,
        _: &PasswordChangeRequest,
    ) -> Result<SessionResponse, RemoteError> {
        offline()
    }
    async fn create_enrolment(&self, _: &str) -> Result<EnrolmentCreated, RemoteError> {
        offline()
    }
    async fn enrol_session(&self, _: &EnrolRequest) -> Result<SessionResponse, RemoteError> {
        offline()
    }
    async fn push(
        &self,
        _: Option<&str>,
        _: &SpaceId,
        _: &[Envelope],
    ) -> Result<PushResponse, RemoteError> {
        offline()
    }
    async fn pull(
        &self,
        _: Option<&str>,
        _: &SpaceId,
        _: PullCursor,
    ) -> Result<PullResponse, RemoteError> {
        offline()
    }
    async fn live(&self, _: Option<&str>, _: &SpaceId) -> Result<Box<dyn LiveHeads>, RemoteError> {
        offline()
    }
}
