//! Liveness that means something: storage answers and no flush has failed.

use axum::extract::State;
use haven_protocol::api::Health;
use haven_protocol::{ErrorBody, ErrorCode};

use super::ApiJson;
use crate::app::AppState;
use crate::error::{ApiError, ApiResult};

#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, body = Health), (status = 503, body = ErrorBody)))]
/// 200 when storage answers.
pub(super) async fn healthz(State(state): State<AppState>) -> ApiResult<ApiJson<Health>> {
    if state.commits.has_failed() {
        return Err(ApiError::new(
            ErrorCode::Unavailable,
            "a storage flush failed; restart the server",
        ));
    }
    state.store.ping().await?;
    Ok(ApiJson(Health {
        status: "ok".into(),
    }))
}
