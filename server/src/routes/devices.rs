//! Devices, revocation with key rotation, the linking mailbox and the key bundle.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use haven_protocol::api::{
    DeviceInfo, DevicesResponse, EnrolmentCreated, KeyBundle, LinkCreated, LinkPayload,
    MAX_BUNDLE_BYTES, RevokeDeviceRequest,
};
use haven_protocol::{Bytes, DeviceId, ErrorBody, ErrorCode, HexId};

use super::accounts::{check_bundle, check_kdf, throttle_address};
use super::{ApiJson, Authed, ClientIp};
use crate::app::AppState;
use crate::clock::random_bytes;
use crate::error::{ApiError, ApiResult};
use crate::live_hub::Revocation;
use crate::store::{AccountRecord, Cas, LinkRecord, OneTimeToken};

/// A linking mailbox lives ten minutes (DESIGN.md §3), and so does an enrolment token.
pub(super) const LINK_TTL_SECS: u64 = 600;

/// How an enrolment token is stored: hashed under its own domain, so a token of another kind
/// (a recovery reset token shares the store) can never be presented as one.
pub(super) fn enrolment_token_hash(token: &str) -> [u8; 32] {
    use sha2::{Digest as _, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(b"haven/v1/enrolment-token\0");
    hasher.update(token.as_bytes());
    hasher.finalize().into()
}

fn device_from_path(text: &str) -> ApiResult<DeviceId> {
    Bytes::from_hex(text).ok_or_else(ApiError::not_found)
}

async fn current_account(
    state: &AppState,
    ctx: &crate::auth::AuthContext,
) -> ApiResult<AccountRecord> {
    state
        .store
        .account(&ctx.user_id)
        .await?
        .ok_or_else(ApiError::unauthorized)
}

#[utoipa::path(get, path = "/v1/devices", tag = "devices",
    responses((status = 200, body = DevicesResponse), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
/// This account's devices; names are opaque (sealed by the clients).
pub(super) async fn list_devices(
    State(state): State<AppState>,
    Authed(ctx): Authed,
) -> ApiResult<ApiJson<DevicesResponse>> {
    let devices = state
        .store
        .devices(&ctx.user_id)
        .await?
        .into_iter()
        .map(|device| DeviceInfo {
            current: device.device_id == ctx.device_id,
            device_id: device.device_id,
            name: device.name,
            created_day: device.created_day,
            last_seen_day: device.last_seen_day,
            revoked: device.revoked,
        })
        .collect();
    Ok(ApiJson(DevicesResponse { devices }))
}

#[utoipa::path(post, path = "/v1/devices/{id}/revoke", tag = "devices",
    params(("id" = String, Path, description = "device id, 32 hex characters")),
    request_body = RevokeDeviceRequest,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
/// Revokes another device in one compare-and-swap: its sessions end, the password changes, and
/// the new key epoch (with a bundle re-wrapped for the remaining devices) takes effect, so the
/// server refuses envelopes sealed under the old epoch.
pub(super) async fn revoke_device(
    State(state): State<AppState>,
    Authed(ctx): Authed,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<RevokeDeviceRequest>,
) -> ApiResult<StatusCode> {
    let target = device_from_path(&id)?;
    check_kdf(&request.kdf)?;
    check_bundle(&request.key_bundle)?;
    if target == ctx.device_id {
        return Err(ApiError::invalid(
            "a device cannot revoke itself; log out instead",
        ));
    }
    let account = current_account(&state, &ctx).await?;
    state
        .auth
        .verify_fresh_proof(&account, request.auth_secret.as_bytes(), ip)
        .await?;
    match state.store.device(&ctx.user_id, &target).await? {
        Some(device) if !device.revoked => {}
        _ => return Err(ApiError::not_found()),
    }
    let current_epoch = account.key_bundle.key_epoch;
    if request.key_epoch != current_epoch.saturating_add(1)
        || request.key_bundle.key_epoch != request.key_epoch
    {
        return Err(ApiError::new(
            ErrorCode::EpochStale,
            format!(
                "the new key epoch must be {}",
                current_epoch.saturating_add(1)
            ),
        ));
    }
    if request.key_bundle.version <= account.key_bundle.version {
        return Err(ApiError::version_conflict(account.key_bundle.version));
    }
    let auth_hash = state
        .auth
        .hasher()
        .hash(request.new_auth_secret.as_bytes())
        .await?;
    let revision = account.revision;
    let updated = AccountRecord {
        auth_hash,
        kdf: request.kdf,
        key_bundle: request.key_bundle,
        ..account
    };
    match state
        .store
        .revoke_device(revision, updated, &target)
        .await?
    {
        Cas::Done(sessions) => {
            state.commits.flush().await?;
            state.live.revoke(Revocation::Sessions(sessions));
            Ok(StatusCode::NO_CONTENT)
        }
        Cas::Conflict => Err(ApiError::version_conflict(0)),
    }
}

#[utoipa::path(post, path = "/v1/devices/enrolment", tag = "devices",
    responses((status = 201, body = EnrolmentCreated), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
/// A single-use enrolment token (ten minutes) for a device being linked: this device sends it,
/// sealed, through the link mailbox, and the new device starts its session with it
/// (`POST /v1/sessions/enrol`) without knowing the password.
pub(super) async fn create_enrolment(
    State(state): State<AppState>,
    Authed(ctx): Authed,
) -> ApiResult<(StatusCode, ApiJson<EnrolmentCreated>)> {
    use base64::Engine as _;
    let account = current_account(&state, &ctx).await?;
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>());
    state
        .store
        .put_token(
            &enrolment_token_hash(&token),
            OneTimeToken {
                user_id: account.user_id,
                expires_at: state.clock.now() + LINK_TTL_SECS,
            },
        )
        .await?;
    state.commits.flush().await?;
    Ok((
        StatusCode::CREATED,
        ApiJson(EnrolmentCreated {
            enrolment_token: token,
            expires_in: LINK_TTL_SECS,
        }),
    ))
}

#[utoipa::path(post, path = "/v1/link", tag = "devices",
    responses((status = 201, body = LinkCreated), (status = 429, body = ErrorBody)))]
/// Opens a device-linking mailbox (for a new device, which has no account yet).
pub(super) async fn create_link(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
) -> ApiResult<(StatusCode, ApiJson<LinkCreated>)> {
    throttle_address(
        &state,
        "link",
        ip,
        state.http.anonymous_attempts_per_address,
    )
    .await?;
    let id = HexId(random_bytes());
    state
        .store
        .create_link(LinkRecord {
            id,
            expires_at: state.clock.now() + LINK_TTL_SECS,
            payload: None,
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        ApiJson(LinkCreated {
            id,
            expires_in: LINK_TTL_SECS,
        }),
    ))
}

#[utoipa::path(put, path = "/v1/link/{id}", tag = "devices",
    params(("id" = String, Path, description = "mailbox id")),
    request_body = LinkPayload,
    responses((status = 204), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)), security(("bearer" = [])))]
/// The existing device drops the sealed payload into the mailbox, once.
pub(super) async fn put_link(
    State(state): State<AppState>,
    Authed(_ctx): Authed,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<LinkPayload>,
) -> ApiResult<StatusCode> {
    let id: HexId = id.parse().map_err(|_| ApiError::not_found())?;
    if request.payload.len() > MAX_BUNDLE_BYTES {
        return Err(ApiError::too_large(format!(
            "a link payload is at most {MAX_BUNDLE_BYTES} bytes"
        )));
    }
    match state.store.put_link_payload(&id, request.payload.0).await? {
        Cas::Done(()) => Ok(StatusCode::NO_CONTENT),
        Cas::Conflict => Err(ApiError::not_found()),
    }
}

#[utoipa::path(get, path = "/v1/link/{id}", tag = "devices",
    params(("id" = String, Path, description = "mailbox id")),
    responses((status = 200, body = LinkPayload), (status = 404, body = ErrorBody, description = "not there (yet), taken or expired")))]
/// The new device takes the payload (single use). The mailbox id is the capability.
pub(super) async fn take_link(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<ApiJson<LinkPayload>> {
    let id: HexId = id.parse().map_err(|_| ApiError::not_found())?;
    let link = state
        .store
        .take_link(&id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    match link.payload {
        Some(payload) if link.expires_at > state.clock.now() => Ok(ApiJson(LinkPayload {
            payload: payload.into(),
        })),
        _ => Err(ApiError::not_found()),
    }
}

#[utoipa::path(get, path = "/v1/keys", tag = "keys",
    responses((status = 200, body = KeyBundle), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
/// The sealed key bundle.
pub(super) async fn get_keys(
    State(state): State<AppState>,
    Authed(ctx): Authed,
) -> ApiResult<ApiJson<KeyBundle>> {
    Ok(ApiJson(current_account(&state, &ctx).await?.key_bundle))
}

#[utoipa::path(put, path = "/v1/keys", tag = "keys",
    request_body = KeyBundle,
    responses((status = 204), (status = 409, body = ErrorBody, description = "version_conflict with current_version")), security(("bearer" = [])))]
/// Replaces the bundle: compare-and-swap on `version` (exactly one above the stored one, same
/// epoch; epochs change only through revocation).
pub(super) async fn put_keys(
    State(state): State<AppState>,
    Authed(ctx): Authed,
    ApiJson(bundle): ApiJson<KeyBundle>,
) -> ApiResult<StatusCode> {
    check_bundle(&bundle)?;
    let account = current_account(&state, &ctx).await?;
    let current = &account.key_bundle;
    if bundle.version != current.version + 1 || bundle.key_epoch != current.key_epoch {
        return Err(ApiError::version_conflict(current.version));
    }
    let revision = account.revision;
    let current_version = current.version;
    let updated = AccountRecord {
        key_bundle: bundle,
        ..account
    };
    match state.store.update_account(revision, updated).await? {
        Cas::Done(_) => {
            state.commits.flush().await?;
            Ok(StatusCode::NO_CONTENT)
        }
        Cas::Conflict => Err(ApiError::version_conflict(current_version)),
    }
}
