//! Accounts, sessions, recovery and erasure.

use std::net::IpAddr;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use haven_protocol::api::{
    AuthProof, CreateAccountRequest, CreateAccountResponse, CreateSessionRequest, EnrolRequest,
    ErasureNotice, KdfParams, KeyBundle, MAX_BUNDLE_BYTES, MAX_DEVICE_NAME_CHARS,
    PasswordChangeRequest, PreloginRequest, PreloginResponse, RecoveryRequest,
    RecoveryResetRequest, RecoveryResponse, RefreshRequest, SessionResponse, normalize_username,
};
use haven_protocol::{Bytes, ErrorBody, ErrorCode, HexId, SpaceId};
use sha2::{Digest, Sha256};

use super::{ApiJson, Authed, ClientIp};
use crate::app::AppState;
use crate::clock::random_bytes;
use crate::error::{ApiError, ApiResult};
use crate::live_hub::Revocation;
use crate::store::{AccountRecord, Cas, DeviceRecord, OneTimeToken};

/// How long a reset token from `/v1/recovery` stays valid.
const RESET_TOKEN_SECS: u64 = 15 * 60;
/// Window of the per-address limits on anonymous endpoints.
const ADDRESS_WINDOW_SECS: u64 = 15 * 60;

pub(super) fn username(raw: &str) -> ApiResult<String> {
    normalize_username(raw).map_err(|error| ApiError::invalid(error.to_string()))
}

pub(super) fn check_kdf(kdf: &KdfParams) -> ApiResult<()> {
    // Test builds (debug only) accept the clients' cheap test parameters too.
    let test_params =
        cfg!(feature = "insecure-fast-kdf") && kdf.m_kib >= 8 && kdf.t >= 1 && kdf.p == 1;
    if kdf.is_acceptable() || test_params {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "kdf must be Argon2id with m_kib in {}..={}, t in {}..={}, p = 1",
            KdfParams::MIN_M_KIB,
            KdfParams::MAX_M_KIB,
            KdfParams::MIN_T,
            KdfParams::MAX_T
        )))
    }
}

pub(super) fn check_bundle(bundle: &KeyBundle) -> ApiResult<()> {
    if bundle.blob.len() > MAX_BUNDLE_BYTES {
        return Err(ApiError::too_large(format!(
            "a key bundle is at most {MAX_BUNDLE_BYTES} bytes"
        )));
    }
    if bundle.version == 0 || bundle.blob.is_empty() {
        return Err(ApiError::invalid(
            "a key bundle needs version ≥ 1 and a blob",
        ));
    }
    Ok(())
}

/// Counts one attempt from this address against a per-address limit shared by all instances.
pub(super) async fn throttle_address(
    state: &AppState,
    bucket: &str,
    ip: IpAddr,
    max: u32,
) -> ApiResult<()> {
    let mut key = format!("addr/{bucket}/").into_bytes();
    key.extend_from_slice(&state.auth.address_tag(ip));
    match state
        .store
        .rate_limit_hit(&key, state.clock.now(), ADDRESS_WINDOW_SECS, max)
        .await?
    {
        crate::store::RateDecision::Allowed => Ok(()),
        crate::store::RateDecision::Limited { retry_after } => {
            Err(ApiError::rate_limited(retry_after))
        }
    }
}

#[utoipa::path(post, path = "/v1/prelogin", tag = "accounts",
    request_body = PreloginRequest,
    responses((status = 200, body = PreloginResponse), (status = 400, body = ErrorBody), (status = 429, body = ErrorBody)))]
/// The KDF salt and parameters for a username; unknown users get a deterministic fake salt, so
/// the answer does not tell whether an account exists.
pub(super) async fn prelogin(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(request): ApiJson<PreloginRequest>,
) -> ApiResult<ApiJson<PreloginResponse>> {
    throttle_address(
        &state,
        "prelogin",
        ip,
        state.http.anonymous_attempts_per_address,
    )
    .await?;
    let name = username(&request.username)?;
    let key = state.auth.username_key(&name);
    let kdf = match state.store.account_by_username(&key).await? {
        Some(account) => account.kdf,
        None => KdfParams::recommended(state.auth.fake_salt(&name).into()),
    };
    Ok(ApiJson(PreloginResponse { kdf }))
}

#[utoipa::path(post, path = "/v1/accounts", tag = "accounts",
    request_body = CreateAccountRequest,
    responses((status = 201, body = CreateAccountResponse), (status = 400, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "username_taken"), (status = 429, body = ErrorBody)))]
/// Registers an account with its first device. The server stores Argon2id hashes of the two
/// proofs and the sealed key bundle; it never sees the password or the keys.
pub(super) async fn create_account(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(request): ApiJson<CreateAccountRequest>,
) -> ApiResult<(StatusCode, ApiJson<CreateAccountResponse>)> {
    throttle_address(
        &state,
        "register",
        ip,
        state.http.anonymous_attempts_per_address,
    )
    .await?;
    let name = username(&request.username)?;
    check_kdf(&request.kdf)?;
    check_bundle(&request.key_bundle)?;
    let username_key = state.auth.username_key(&name);
    let hasher = state.auth.hasher();
    let auth_hash = hasher.hash(request.auth_secret.as_bytes()).await?;
    let recovery_hash = hasher.hash(request.recovery_auth.as_bytes()).await?;
    let user_id = HexId(random_bytes());
    let space_id = HexId(random_bytes());
    let today = state.clock.today();
    let account = AccountRecord {
        user_id,
        space_id,
        username_key,
        auth_hash,
        recovery_hash,
        kdf: request.kdf,
        key_bundle: request.key_bundle,
        auth_version: 0,
        revision: 0,
        created_day: today.clone(),
    };
    let device = DeviceRecord {
        user_id,
        device_id: request.device,
        name: None,
        created_day: today.clone(),
        last_seen_day: today,
        revoked: false,
    };
    let created = state
        .keys
        .create_account(&*state.store, account, device)
        .await
        .map_err(|error| ApiError::internal("creating the account", &error))?;
    match created {
        Cas::Done(()) => {
            state.commits.flush().await?;
            Ok((
                StatusCode::CREATED,
                ApiJson(CreateAccountResponse {
                    user_id,
                    space_id: SpaceId::Private(space_id),
                }),
            ))
        }
        Cas::Conflict => Err(ApiError::new(
            ErrorCode::UsernameTaken,
            "this username is taken",
        )),
    }
}

#[utoipa::path(post, path = "/v1/sessions", tag = "sessions",
    request_body = CreateSessionRequest,
    responses((status = 200, body = SessionResponse), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
/// Logs a device in with the password proof.
pub(super) async fn create_session(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(request): ApiJson<CreateSessionRequest>,
) -> ApiResult<ApiJson<SessionResponse>> {
    let name = username(&request.username)?;
    if request
        .device_name
        .as_ref()
        .is_some_and(|name| name.chars().count() > MAX_DEVICE_NAME_CHARS)
    {
        return Err(ApiError::too_large(format!(
            "device_name is at most {MAX_DEVICE_NAME_CHARS} characters"
        )));
    }
    throttle_address(
        &state,
        "credentials",
        ip,
        state.http.anonymous_attempts_per_address,
    )
    .await?;
    let account = state
        .auth
        .password_login(&name, request.auth_secret.as_bytes(), ip)
        .await?;
    start_session(&state, &account, request.device, request.device_name).await
}

#[utoipa::path(post, path = "/v1/sessions/enrol", tag = "sessions",
    request_body = EnrolRequest,
    responses((status = 200, body = SessionResponse), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 429, body = ErrorBody)))]
/// A linked device's first session, with the single-use enrolment token an existing device of
/// the account sent it (no password).
pub(super) async fn enrol_session(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(request): ApiJson<EnrolRequest>,
) -> ApiResult<ApiJson<SessionResponse>> {
    if request
        .device_name
        .as_ref()
        .is_some_and(|name| name.chars().count() > MAX_DEVICE_NAME_CHARS)
    {
        return Err(ApiError::too_large(format!(
            "device_name is at most {MAX_DEVICE_NAME_CHARS} characters"
        )));
    }
    throttle_address(
        &state,
        "credentials",
        ip,
        state.http.anonymous_attempts_per_address,
    )
    .await?;
    let token = state
        .store
        .take_token(&super::devices::enrolment_token_hash(
            &request.enrolment_token,
        ))
        .await?
        .filter(|token| token.expires_at > state.clock.now())
        .ok_or_else(ApiError::unauthorized)?;
    let account = state
        .store
        .account(&token.user_id)
        .await?
        .ok_or_else(ApiError::unauthorized)?;
    start_session(&state, &account, request.device, request.device_name).await
}

/// Registers the device with the account (or notes it was seen today) and starts its session. A
/// revoked device stays out.
async fn start_session(
    state: &AppState,
    account: &AccountRecord,
    device_id: haven_protocol::DeviceId,
    device_name: Option<String>,
) -> ApiResult<ApiJson<SessionResponse>> {
    let today = state.clock.today();
    let device = match state.store.device(&account.user_id, &device_id).await? {
        Some(existing) if existing.revoked => {
            return Err(ApiError::new(
                ErrorCode::DeviceRevoked,
                "this device was revoked",
            ));
        }
        Some(existing) => DeviceRecord {
            last_seen_day: today,
            name: device_name.or(existing.name),
            ..existing
        },
        None => DeviceRecord {
            user_id: account.user_id,
            device_id,
            name: device_name,
            created_day: today.clone(),
            last_seen_day: today,
            revoked: false,
        },
    };
    state.store.put_device(device).await?;
    let session = state.auth.login_tokens(account, &device_id).await?;
    state.commits.flush().await?;
    Ok(ApiJson(session))
}

#[utoipa::path(post, path = "/v1/sessions/refresh", tag = "sessions",
    request_body = RefreshRequest,
    responses((status = 200, body = SessionResponse), (status = 401, body = ErrorBody)))]
/// Rotates a refresh token. Reusing an old one revokes the whole session.
pub(super) async fn refresh_session(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<RefreshRequest>,
) -> ApiResult<ApiJson<SessionResponse>> {
    let session = state.auth.refresh(&request.refresh_token).await?;
    state.commits.flush().await?;
    Ok(ApiJson(session))
}

#[utoipa::path(delete, path = "/v1/sessions/current", tag = "sessions",
    responses((status = 204), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
/// Logs this device out: its session and live sockets end.
pub(super) async fn delete_session(
    State(state): State<AppState>,
    Authed(ctx): Authed,
) -> ApiResult<StatusCode> {
    state.auth.logout(&ctx.session_id).await?;
    state.commits.flush().await?;
    state
        .live
        .revoke(Revocation::Sessions(vec![ctx.session_id]));
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/recovery", tag = "accounts",
    request_body = RecoveryRequest,
    responses((status = 200, body = RecoveryResponse), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
/// Proves the recovery phrase and returns the bundle (holding the root key wrapped for the
/// recovery key) with a single-use reset token.
pub(super) async fn recover(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(request): ApiJson<RecoveryRequest>,
) -> ApiResult<ApiJson<RecoveryResponse>> {
    let name = username(&request.username)?;
    throttle_address(
        &state,
        "credentials",
        ip,
        state.http.anonymous_attempts_per_address,
    )
    .await?;
    let username_key = state.auth.username_key(&name);
    state.auth.limiter().check(&username_key, ip).await?;
    let account = state.store.account_by_username(&username_key).await?;
    let verified = match &account {
        Some(account) => {
            state
                .auth
                .hasher()
                .verify(request.recovery_auth.as_bytes(), &account.recovery_hash)
                .await?
        }
        None => {
            state
                .auth
                .hasher()
                .verify_unknown_user(request.recovery_auth.as_bytes())
                .await?;
            false
        }
    };
    let Some(account) = account.filter(|_| verified) else {
        return Err(ApiError::unauthorized());
    };
    let secret: [u8; 32] = random_bytes();
    let reset_token = URL_SAFE_NO_PAD.encode(secret);
    let hash: [u8; 32] = Sha256::digest(reset_token.as_bytes()).into();
    state
        .store
        .put_token(
            &hash,
            OneTimeToken {
                user_id: account.user_id,
                expires_at: state.clock.now() + RESET_TOKEN_SECS,
            },
        )
        .await?;
    Ok(ApiJson(RecoveryResponse {
        recovery_bundle: account.key_bundle,
        reset_token,
    }))
}

#[utoipa::path(post, path = "/v1/recovery/reset", tag = "accounts",
    request_body = RecoveryResetRequest,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
/// Sets a new password after recovery; every session of the account ends.
pub(super) async fn reset_after_recovery(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<RecoveryResetRequest>,
) -> ApiResult<StatusCode> {
    check_kdf(&request.kdf)?;
    check_bundle(&request.key_bundle)?;
    let hash: [u8; 32] = Sha256::digest(request.reset_token.as_bytes()).into();
    let token = state
        .store
        .take_token(&hash)
        .await?
        .filter(|token| token.expires_at > state.clock.now())
        .ok_or_else(ApiError::unauthorized)?;
    let auth_hash = state
        .auth
        .hasher()
        .hash(request.auth_secret.as_bytes())
        .await?;
    // A concurrent account change (e.g. a bundle update) makes the CAS fail; re-read and retry.
    for _ in 0..3 {
        let account = state
            .store
            .account(&token.user_id)
            .await?
            .ok_or_else(ApiError::unauthorized)?;
        if request.key_bundle.version <= account.key_bundle.version
            || request.key_bundle.key_epoch != account.key_bundle.key_epoch
        {
            return Err(ApiError::version_conflict(account.key_bundle.version));
        }
        let revision = account.revision;
        let updated = AccountRecord {
            auth_hash: auth_hash.clone(),
            kdf: request.kdf,
            key_bundle: request.key_bundle.clone(),
            auth_version: account.auth_version + 1,
            ..account
        };
        if let Cas::Done(_) = state.store.update_account(revision, updated).await? {
            state
                .store
                .revoke_sessions_of_user(&token.user_id, None)
                .await?;
            state.commits.flush().await?;
            state.live.revoke(Revocation::User(token.user_id));
            return Ok(StatusCode::NO_CONTENT);
        }
    }
    Err(ApiError::new(
        ErrorCode::Unavailable,
        "the account is busy; try again",
    ))
}

#[utoipa::path(post, path = "/v1/account/password", tag = "accounts",
    request_body = PasswordChangeRequest,
    responses((status = 200, body = SessionResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody), (status = 429, body = ErrorBody)), security(("bearer" = [])))]
/// Changes the password (fresh proof of the current one) with the bundle re-wrapped under the
/// new one. Every session of the account ends, this one too, and its live sockets close; the
/// answer is a new session for the calling device.
pub(super) async fn change_password(
    State(state): State<AppState>,
    Authed(ctx): Authed,
    ClientIp(ip): ClientIp,
    ApiJson(request): ApiJson<PasswordChangeRequest>,
) -> ApiResult<ApiJson<SessionResponse>> {
    check_kdf(&request.kdf)?;
    check_bundle(&request.key_bundle)?;
    let account = state
        .store
        .account(&ctx.user_id)
        .await?
        .ok_or_else(ApiError::unauthorized)?;
    state
        .auth
        .verify_fresh_proof(&account, request.auth_secret.as_bytes(), ip)
        .await?;
    let current = &account.key_bundle;
    if request.key_bundle.version != current.version + 1
        || request.key_bundle.key_epoch != current.key_epoch
    {
        return Err(ApiError::version_conflict(current.version));
    }
    let auth_hash = state
        .auth
        .hasher()
        .hash(request.new_auth_secret.as_bytes())
        .await?;
    let revision = account.revision;
    let current_version = current.version;
    let updated = AccountRecord {
        auth_hash,
        kdf: request.kdf,
        key_bundle: request.key_bundle,
        auth_version: account.auth_version + 1,
        ..account
    };
    match state.store.update_account(revision, updated).await? {
        Cas::Done(updated) => {
            // Tokens minted before carry the old auth_version and are refused already; revoking
            // the sessions makes that stick and frees them.
            state
                .store
                .revoke_sessions_of_user(&ctx.user_id, None)
                .await?;
            state.live.revoke(Revocation::User(ctx.user_id));
            let session = state.auth.login_tokens(&updated, &ctx.device_id).await?;
            state.commits.flush().await?;
            Ok(ApiJson(session))
        }
        Cas::Conflict => Err(ApiError::version_conflict(current_version)),
    }
}

#[utoipa::path(delete, path = "/v1/account", tag = "accounts",
    request_body = AuthProof,
    responses((status = 204), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
/// Erases the account: envelopes, bundle, sessions, devices and its wrapped storage key; then a
/// master-key rotation becomes due, after which no copy of that key left on disk opens.
pub(super) async fn delete_account(
    State(state): State<AppState>,
    Authed(ctx): Authed,
    ClientIp(ip): ClientIp,
    ApiJson(proof): ApiJson<AuthProof>,
) -> ApiResult<StatusCode> {
    let account = state
        .store
        .account(&ctx.user_id)
        .await?
        .ok_or_else(ApiError::unauthorized)?;
    state
        .auth
        .verify_fresh_proof(&account, proof.auth_secret.as_bytes(), ip)
        .await?;
    let wipe_token = proof.wipe_token.map(|token| *token.as_bytes());
    state.store.erase_account(&ctx.user_id, wipe_token).await?;
    state.commits.flush().await?;
    state.keys.erased().await;
    state.live.revoke(Revocation::User(ctx.user_id));
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/accounts/{user_id}/erasure", tag = "accounts",
    params(("user_id" = String, Path, description = "the account's user id (hex)")),
    responses((status = 200, body = ErasureNotice), (status = 404, body = ErrorBody, description = "no erased account with this id")))]
/// What an erased account's devices may read once their sessions are gone: the wipe token the
/// erasing device revealed. Unauthenticated: the user id is random, and the token only ever
/// tells that account's devices what the erasing person asked of them.
pub(super) async fn erasure_notice(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
) -> ApiResult<ApiJson<ErasureNotice>> {
    let user_id: HexId = user_id.parse().map_err(|_| ApiError::not_found())?;
    if !state.store.is_erased(&user_id).await? {
        return Err(ApiError::not_found());
    }
    let wipe_token = state.store.erased_wipe_token(&user_id).await?;
    Ok(ApiJson(ErasureNotice {
        wipe_token: wipe_token.map(Bytes),
    }))
}
