//! HTTP routes of the v1 API. Handlers are thin: they parse, authorise and call the services.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use axum::extract::rejection::JsonRejection;
use axum::extract::{
    ConnectInfo, DefaultBodyLimit, FromRequest, FromRequestParts, MatchedPath, Request, State,
};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use haven_protocol::ErrorCode;
use haven_protocol::api::CLIENT_VERSION_HEADER;
use serde::de::DeserializeOwned;

use crate::app::AppState;
use crate::auth::AuthContext;
use crate::error::ApiError;

mod accounts;
mod devices;
mod health;
mod live;
mod openapi;
mod spaces;

pub use openapi::ApiDoc;

pub(crate) fn router(state: AppState) -> Router {
    let max_body = state.http.max_request_bytes;
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/v1/openapi.json", get(openapi::openapi_json))
        .route("/v1/prelogin", post(accounts::prelogin))
        .route("/v1/accounts", post(accounts::create_account))
        .route("/v1/account", delete(accounts::delete_account))
        .route(
            "/v1/accounts/{user_id}/erasure",
            get(accounts::erasure_notice),
        )
        .route("/v1/account/password", post(accounts::change_password))
        .route("/v1/sessions", post(accounts::create_session))
        .route("/v1/sessions/refresh", post(accounts::refresh_session))
        .route("/v1/sessions/enrol", post(accounts::enrol_session))
        .route("/v1/sessions/current", delete(accounts::delete_session))
        .route("/v1/recovery", post(accounts::recover))
        .route("/v1/recovery/reset", post(accounts::reset_after_recovery))
        .route("/v1/devices", get(devices::list_devices))
        .route("/v1/devices/{id}/revoke", post(devices::revoke_device))
        .route("/v1/devices/enrolment", post(devices::create_enrolment))
        .route("/v1/link", post(devices::create_link))
        .route(
            "/v1/link/{id}",
            get(devices::take_link).put(devices::put_link),
        )
        .route("/v1/keys", get(devices::get_keys).put(devices::put_keys))
        .route(
            "/v1/spaces/{space}/changes",
            post(spaces::push).get(spaces::pull),
        )
        .route("/v1/spaces/{space}/live", get(live::live))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            client_version,
        ))
        .layer(middleware::from_fn(record_metrics))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found()
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "method not allowed on this path",
    )
}

/// Requests, latencies and statuses per route template (never the raw path: it holds ids).
async fn record_metrics(request: Request, next: Next) -> Response {
    crate::heap_trim::note_request();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("route", route), ("method", method), ("status", status)];
    metrics::counter!("haven_http_requests_total", &labels).increment(1);
    metrics::histogram!("haven_http_request_seconds", &labels[..2])
        .record(started.elapsed().as_secs_f64());
    response
}

/// Answers 426 to clients older than the configured minimum. Clients that send no version
/// (curl, scripts) are served.
async fn client_version(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let Some(value) = request.headers().get(CLIENT_VERSION_HEADER) {
        let parsed = value.to_str().ok().and_then(parse_version);
        match parsed {
            Some(version) if version >= state.http.min_client_version => {}
            Some(_) => {
                let (major, minor, patch) = state.http.min_client_version;
                return ApiError::new(
                    ErrorCode::ClientTooOld,
                    format!("this server needs client version {major}.{minor}.{patch} or newer; please update the app"),
                )
                .into_response();
            }
            None => {
                return ApiError::invalid(format!(
                    "{CLIENT_VERSION_HEADER} must be major.minor.patch"
                ))
                .into_response();
            }
        }
    }
    next.run(request).await
}

/// `major.minor.patch` (a pre-release suffix after `-` is ignored).
pub(crate) fn parse_version(text: &str) -> Option<(u64, u64, u64)> {
    let core = text.trim().split('-').next()?;
    let mut parts = core.split('.').map(|part| part.parse::<u64>().ok());
    let version = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(version)
}

/// JSON body extractor whose rejections are our error body (never axum's plain text).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(&rejection)),
        }
    }
}

fn json_rejection(rejection: &JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(error) => {
            ApiError::invalid(format!("invalid field: {}", error.body_text()))
        }
        JsonRejection::JsonSyntaxError(_) => ApiError::invalid("the body is not valid JSON"),
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::invalid("send the body as JSON with Content-Type: application/json")
        }
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::too_large("the request body is larger than this server accepts")
        }
        _ => ApiError::invalid("the body could not be read"),
    }
}

impl<T: serde::Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        Json(self.0).into_response()
    }
}

/// The caller's address, for rate limits. Absent in router tests without a socket.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip());
        Ok(Self(ip))
    }
}

/// An authenticated device. Rejections are the contract's 401 bodies.
#[derive(Debug, Clone)]
pub(crate) struct Authed(pub AuthContext);

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(header::AUTHORIZATION);
        state.auth.authenticate(header).await.map(Self)
    }
}

/// Optional authentication: `None` when no Authorization header was sent; a header that is sent
/// must be valid.
#[derive(Debug, Clone)]
pub(crate) struct MaybeAuthed(pub Option<AuthContext>);

impl FromRequestParts<AppState> for MaybeAuthed {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match parts.headers.get(header::AUTHORIZATION) {
            None => Ok(Self(None)),
            Some(header) => state
                .auth
                .authenticate(Some(header))
                .await
                .map(|ctx| Self(Some(ctx))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_version;

    #[test]
    fn versions() {
        assert_eq!(parse_version("1.2.3"), Some((1, 2, 3)));
        assert_eq!(parse_version("1.2.3-beta.1"), Some((1, 2, 3)));
        assert_eq!(parse_version("1.2"), None);
        assert_eq!(parse_version("1.2.3.4"), None);
        assert_eq!(parse_version("a.b.c"), None);
    }
}
