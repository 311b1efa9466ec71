//! Push and pull of envelopes.

use axum::extract::{Path, Query, State};
use haven_protocol::api::{
    DEFAULT_PULL_LIMIT, PullQuery, PullResponse, PushRequest, PushResponse, parse_envelope_id,
};
use haven_protocol::{ErrorBody, SpaceId};

use super::accounts::throttle_address;
use super::{ApiJson, ClientIp, MaybeAuthed};
use crate::app::AppState;
use crate::auth::AuthContext;
use crate::error::{ApiError, ApiResult};

/// Resolves the path's space for this caller. `public` is open; a private space is only its
/// owner's, and every other case — malformed, unknown, someone else's — answers the same 404.
fn authorise(space: &str, ctx: Option<&AuthContext>) -> ApiResult<SpaceId> {
    let space: SpaceId = space.parse().map_err(|_| ApiError::not_found())?;
    match (space, ctx) {
        (SpaceId::Public, _) => Ok(space),
        (SpaceId::Private(_), None) => Err(ApiError::unauthorized()),
        (SpaceId::Private(_), Some(ctx)) if space == ctx.space_id => Ok(space),
        (SpaceId::Private(_), Some(_)) => Err(ApiError::not_found()),
    }
}

#[utoipa::path(post, path = "/v1/spaces/{space}/changes", tag = "spaces",
    params(("space" = String, Path, description = "`public` or the account's space id")),
    request_body = PushRequest,
    responses((status = 200, body = PushResponse, description = "per-item acks (after a durable flush) and errors"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)),
    security((), ("bearer" = [])))]
/// Appends envelopes. Private spaces need the owner's token; `public` needs no token but every
/// envelope must be signed by a configured content key.
pub(super) async fn push(
    State(state): State<AppState>,
    MaybeAuthed(ctx): MaybeAuthed,
    ClientIp(ip): ClientIp,
    Path(space): Path<String>,
    ApiJson(request): ApiJson<PushRequest>,
) -> ApiResult<ApiJson<PushResponse>> {
    let space = authorise(&space, ctx.as_ref())?;
    if space.is_public() {
        throttle_address(
            &state,
            "publish",
            ip,
            state.http.anonymous_attempts_per_address,
        )
        .await?;
    }
    Ok(ApiJson(state.spaces.push(&space, request.changes).await?))
}

#[utoipa::path(get, path = "/v1/spaces/{space}/changes", tag = "spaces",
    params(("space" = String, Path, description = "`public` or the account's space id"), PullQuery),
    responses((status = 200, body = PullResponse), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "cursor_mismatch, with head")),
    security((), ("bearer" = [])))]
/// A page of durable envelopes after a cursor.
pub(super) async fn pull(
    State(state): State<AppState>,
    MaybeAuthed(ctx): MaybeAuthed,
    Path(space): Path<String>,
    query: Result<Query<PullQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<ApiJson<PullResponse>> {
    let space = authorise(&space, ctx.as_ref())?;
    let Query(query) = query.map_err(|_| ApiError::invalid("malformed query string"))?;
    let after = match query.after.as_deref() {
        None => 0,
        Some(text) => text
            .parse::<u64>()
            .map_err(|_| ApiError::invalid("after must be a non-negative integer"))?,
    };
    let at = match query.at.as_deref() {
        None => None,
        Some(_) if after == 0 => return Err(ApiError::invalid("at needs after > 0")),
        Some(text) => Some(
            parse_envelope_id(text)
                .ok_or_else(|| ApiError::invalid("at must be a 32-byte id in base64 or hex"))?,
        ),
    };
    let limit = match query.limit.as_deref() {
        None => DEFAULT_PULL_LIMIT,
        Some(text) => match text.parse::<u32>() {
            Ok(limit) if limit >= 1 => limit,
            _ => return Err(ApiError::invalid("limit must be an integer from 1 to 1000")),
        },
    };
    Ok(ApiJson(state.spaces.pull(&space, after, at, limit).await?))
}
