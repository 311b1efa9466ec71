//! `GET /v1/openapi.json`: OpenAPI 3 of every endpoint, generated from the handlers.

use axum::Json;
use haven_protocol::api::*;
use haven_protocol::{Envelope, ErrorBody, ErrorCode, ErrorDetail, Kind, SequencedEnvelope};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "Haven sync API", version = "1", description = "Offline-first, end-to-end encrypted sync (DESIGN.md §3)."),
    paths(
        super::health::healthz,
        super::accounts::prelogin,
        super::accounts::create_account,
        super::accounts::create_session,
        super::accounts::refresh_session,
        super::accounts::enrol_session,
        super::accounts::delete_session,
        super::accounts::recover,
        super::accounts::reset_after_recovery,
        super::accounts::change_password,
        super::accounts::delete_account,
        super::accounts::erasure_notice,
        super::devices::list_devices,
        super::devices::revoke_device,
        super::devices::create_enrolment,
        super::devices::create_link,
        super::devices::put_link,
        super::devices::take_link,
        super::devices::get_keys,
        super::devices::put_keys,
        super::spaces::push,
        super::spaces::pull,
        super::live::live,
    ),
    components(schemas(
        ErrorBody, ErrorDetail, ErrorCode, Envelope, SequencedEnvelope, Kind, KdfParams, KeyBundle,
        PreloginRequest, PreloginResponse, CreateAccountRequest, CreateAccountResponse,
        CreateSessionRequest, SessionResponse, RefreshRequest, RecoveryRequest, RecoveryResponse,
        RecoveryResetRequest, DeviceInfo, DevicesResponse, RevokeDeviceRequest, AuthProof, ErasureNotice,
        LinkCreated, LinkPayload, PushRequest, PushResponse, Ack, ItemError, PullResponse,
        LiveHead, Health, PasswordChangeRequest, EnrolmentCreated, EnrolRequest,
    )),
    modifiers(&BearerAuth),
)]
#[derive(Debug)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

pub(super) async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
