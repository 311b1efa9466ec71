//! Request and response bodies of the v1 HTTP API (DESIGN.md §3). Field names are the contract.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::bytes::{Blob, Bytes};
use crate::envelope::{Envelope, SequencedEnvelope};
use crate::error::ErrorCode;
use crate::ids::{DeviceId, EnvelopeId, HexId, SpaceId, UserId};

/// Largest page a pull may ask for.
pub const MAX_PULL_LIMIT: u32 = 1000;
/// Page size when a pull gives no `limit`.
pub const DEFAULT_PULL_LIMIT: u32 = 500;
/// Largest sealed key bundle or link payload the server stores.
pub const MAX_BUNDLE_BYTES: usize = 256 * 1024;
/// Largest opaque device name.
pub const MAX_DEVICE_NAME_CHARS: usize = 512;
/// Header a client sends with its version (`major.minor.patch`); below the minimum → 426.
pub const CLIENT_VERSION_HEADER: &str = "haven-client-version";

/// Argon2id parameters of the client-side password KDF, and its salt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KdfParams {
    pub salt: Bytes<16>,
    pub m_kib: u32,
    pub t: u32,
    pub p: u32,
}

impl KdfParams {
    /// DESIGN.md §4 minimums: m ≥ 64 MiB, t ≥ 3, p = 1.
    pub const MIN_M_KIB: u32 = 64 * 1024;
    pub const MIN_T: u32 = 3;
    /// Upper bounds, so a hostile server cannot make a phone allocate gigabytes.
    pub const MAX_M_KIB: u32 = 1024 * 1024;
    pub const MAX_T: u32 = 20;

    /// The default parameters for new accounts.
    pub fn recommended(salt: Bytes<16>) -> Self {
        Self {
            salt,
            m_kib: Self::MIN_M_KIB,
            t: Self::MIN_T,
            p: 1,
        }
    }

    /// True when the parameters are within the accepted range.
    pub fn is_acceptable(&self) -> bool {
        (Self::MIN_M_KIB..=Self::MAX_M_KIB).contains(&self.m_kib)
            && (Self::MIN_T..=Self::MAX_T).contains(&self.t)
            && self.p == 1
    }
}

/// Why a username is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "usernames are 3–64 characters of a–z, 0–9, '.', '_' or '-', starting with a letter or digit"
)]
pub struct UsernameError;

/// The canonical form of a username: trimmed, ASCII-lowercased, then checked. Pseudonyms are
/// encouraged; a small alphabet avoids look-alike names.
pub fn normalize_username(raw: &str) -> Result<String, UsernameError> {
    let name = raw.trim().to_ascii_lowercase();
    let len_ok = (3..=64).contains(&name.len());
    let first_ok = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric());
    let chars_ok = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'));
    if len_ok && first_ok && chars_ok {
        Ok(name)
    } else {
        Err(UsernameError)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PreloginRequest {
    pub username: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PreloginResponse {
    pub kdf: KdfParams,
}

/// The sealed, signed key bundle. The server only checks its version and epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KeyBundle {
    pub version: u64,
    pub key_epoch: u32,
    pub blob: Blob,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreateAccountRequest {
    pub username: String,
    pub auth_secret: Bytes<32>,
    pub recovery_auth: Bytes<32>,
    pub kdf: KdfParams,
    /// The first device's id.
    pub device: DeviceId,
    pub key_bundle: KeyBundle,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreateAccountResponse {
    pub user_id: UserId,
    pub space_id: SpaceId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreateSessionRequest {
    pub username: String,
    pub auth_secret: Bytes<32>,
    pub device: DeviceId,
    /// Opaque to the server: clients seal the name (DESIGN.md §4 keeps names in the bundle).
    #[serde(default)]
    pub device_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SessionResponse {
    pub access_token: String,
    pub refresh_token: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    pub user_id: UserId,
    pub device_id: DeviceId,
    pub space_id: SpaceId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RecoveryRequest {
    pub username: String,
    pub recovery_auth: Bytes<32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RecoveryResponse {
    /// The current key bundle; it holds the root key wrapped for the recovery key.
    pub recovery_bundle: KeyBundle,
    /// Single use, short-lived: authorises one `/v1/recovery/reset`.
    pub reset_token: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RecoveryResetRequest {
    pub reset_token: String,
    pub auth_secret: Bytes<32>,
    pub kdf: KdfParams,
    pub key_bundle: KeyBundle,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeviceInfo {
    pub device_id: DeviceId,
    /// Opaque name as the device sent it.
    pub name: Option<String>,
    /// Day of enrolment, `YYYY-MM-DD` (kept to the day on purpose).
    pub created_day: String,
    /// Day of last use, `YYYY-MM-DD`.
    pub last_seen_day: String,
    pub revoked: bool,
    /// True for the device making the request.
    pub current: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DevicesResponse {
    pub devices: Vec<DeviceInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RevokeDeviceRequest {
    /// Fresh proof of the current password.
    pub auth_secret: Bytes<32>,
    pub new_auth_secret: Bytes<32>,
    pub kdf: KdfParams,
    /// Re-wrapped for the remaining devices and the recovery key; version must go up.
    pub key_bundle: KeyBundle,
    /// The new epoch: exactly one above the current one.
    pub key_epoch: u32,
}

/// `POST /v1/account/password`: a new password, the bundle re-wrapped under it (same epoch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PasswordChangeRequest {
    /// Fresh proof of the current password.
    pub auth_secret: Bytes<32>,
    pub new_auth_secret: Bytes<32>,
    pub kdf: KdfParams,
    /// Re-wrapped under the new password; version exactly one above the stored one.
    pub key_bundle: KeyBundle,
}

/// `POST /v1/devices/enrolment`: a one-time token an existing device hands to a new one (through
/// the link mailbox, sealed), with which the new device starts its first session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EnrolmentCreated {
    pub enrolment_token: String,
    pub expires_in: u64,
}

/// `POST /v1/sessions/enrol`: the new device's first session, without the password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EnrolRequest {
    pub enrolment_token: String,
    pub device: DeviceId,
    /// Opaque to the server, as in [`CreateSessionRequest`].
    #[serde(default)]
    pub device_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuthProof {
    /// Fresh proof of the current password.
    pub auth_secret: Bytes<32>,
    /// Erasure only: the account's wipe token, revealed so that its other devices, which know
    /// it from their encrypted journal settings, can tell this erasure from a server that only
    /// claims one (`GET /v1/accounts/{user_id}/erasure`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wipe_token: Option<Bytes<32>>,
}

/// What the server keeps of an erased account for its devices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErasureNotice {
    /// The wipe token the erasing device revealed, if the account asked its devices to wipe
    /// themselves on erasure.
    pub wipe_token: Option<Bytes<32>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LinkCreated {
    pub id: HexId,
    pub expires_in: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LinkPayload {
    pub payload: Blob,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PushRequest {
    pub changes: Vec<Envelope>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Ack {
    pub id: EnvelopeId,
    pub seq: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ItemError {
    pub id: EnvelopeId,
    pub code: ErrorCode,
    pub message: String,
    /// `snapshot_stale`: ids the snapshot must also cover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing: Option<Vec<EnvelopeId>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct PushResponse {
    pub acks: Vec<Ack>,
    pub errors: Vec<ItemError>,
}

/// Query of `GET /v1/spaces/{space}/changes`. Kept as text so that a bad value is our `invalid`
/// error rather than a framework rejection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PullQuery {
    /// Return changes with seq > after (default 0).
    #[param(value_type = Option<u64>)]
    pub after: Option<String>,
    /// Id of the envelope at seq `after` (standard base64, percent-encoded, or 64 hex chars).
    pub at: Option<String>,
    /// Page size, 1..=1000 (default 500).
    #[param(value_type = Option<u32>)]
    pub limit: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PullResponse {
    pub changes: Vec<SequencedEnvelope>,
    /// Seq of the last change returned (or `after` when none): the next `after`.
    pub next: u64,
    /// The space's durable head.
    pub head: u64,
    /// True when `next == head`.
    pub caught_up: bool,
}

/// A message the live WebSocket sends on each append.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LiveHead {
    pub head: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
}

/// Parses `at` in either standard base64 or 64 hex characters.
pub fn parse_envelope_id(text: &str) -> Option<EnvelopeId> {
    if text.len() == 64 {
        Bytes::from_hex(text)
    } else {
        Bytes::from_base64(text)
    }
}

/// The close code of a live socket whose token expired or whose device was revoked.
pub const LIVE_CLOSE_AUTH: u16 = 4001;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert_eq!(normalize_username("  Alex.M "), Ok("alex.m".into()));
        for bad in ["ab", "", "-abc", "a b c", "ünï", &"a".repeat(65), "abc/def"] {
            assert!(normalize_username(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn kdf_minimums() {
        let salt = Bytes([0; 16]);
        assert!(KdfParams::recommended(salt).is_acceptable());
        let weak = KdfParams {
            m_kib: 1024,
            ..KdfParams::recommended(salt)
        };
        assert!(!weak.is_acceptable());
        let huge = KdfParams {
            m_kib: u32::MAX,
            ..KdfParams::recommended(salt)
        };
        assert!(!huge.is_acceptable());
    }

    #[test]
    fn envelope_ids_in_queries() {
        let id = Bytes([0xfe; 32]);
        assert_eq!(parse_envelope_id(&id.to_hex()), Some(id));
        assert_eq!(parse_envelope_id(&id.to_base64()), Some(id));
        assert_eq!(parse_envelope_id("zz"), None);
    }
}
