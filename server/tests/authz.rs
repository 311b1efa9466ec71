//! The authorization matrix: every authenticated endpoint × every kind of bad credential answers
//! 401, and another user's space answers exactly like a space that does not exist.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::http::{Method, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use haven_protocol::Bytes;
use serde_json::{Value, json};

/// (method, path, body) of every endpoint that needs a token, for a user's own resources.
fn endpoints(user: &TestUser, other_device: &str) -> Vec<(Method, String, Option<Value>)> {
    let changes = user.changes_uri();
    vec![
        (Method::GET, "/v1/devices".into(), None),
        (
            Method::POST,
            format!("/v1/devices/{other_device}/revoke"),
            Some(
                json!({"auth_secret": user.auth_secret, "new_auth_secret": Bytes([1u8; 32]),
                "kdf": TestUser::kdf(), "key_bundle": TestUser::bundle(2, 1), "key_epoch": 1}),
            ),
        ),
        (
            Method::POST,
            "/v1/devices/enrolment".into(),
            Some(json!({})),
        ),
        (
            Method::POST,
            "/v1/account/password".into(),
            Some(
                json!({"auth_secret": user.auth_secret, "new_auth_secret": Bytes([1u8; 32]),
                "kdf": TestUser::kdf(), "key_bundle": TestUser::bundle(2, 0)}),
            ),
        ),
        (
            Method::PUT,
            "/v1/link/00000000000000000000000000000000".into(),
            Some(json!({"payload": Bytes([1u8; 8])})),
        ),
        (Method::GET, "/v1/keys".into(), None),
        (
            Method::PUT,
            "/v1/keys".into(),
            Some(json!({"version": 2, "key_epoch": 0, "blob": Bytes([1u8; 8])})),
        ),
        (
            Method::DELETE,
            "/v1/account".into(),
            Some(json!({"auth_secret": user.auth_secret})),
        ),
        (Method::DELETE, "/v1/sessions/current".into(), None),
        (Method::POST, changes.clone(), Some(json!({"changes": []}))),
        (Method::GET, changes, None),
        (Method::GET, format!("/v1/spaces/{}/live", user.space), None),
    ]
}

/// Re-signs nothing: flips one character of the signature part.
fn altered_signature(token: &str) -> String {
    let (head, signature) = token.rsplit_once('.').unwrap();
    let mut bytes = URL_SAFE_NO_PAD.decode(signature).unwrap();
    bytes[0] ^= 1;
    format!("{head}.{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// A token with `alg: none` and the same claims.
fn alg_none(token: &str) -> String {
    let mut parts = token.split('.');
    let _header = parts.next().unwrap();
    let claims = parts.next().unwrap();
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"at+jwt"}"#);
    format!("{header}.{claims}.")
}

async fn assert_denied(
    app: &TestApp,
    user: &TestUser,
    other_device: &str,
    token: Option<&str>,
    what: &str,
) {
    for (method, path, body) in endpoints(user, other_device) {
        let (status, reply) = app.call(method.clone(), &path, token, body).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{what}: {method} {path} answered {reply}"
        );
        assert!(
            ["unauthorized", "device_revoked"]
                .contains(&reply["error"]["code"].as_str().unwrap_or_default()),
            "{what}: {method} {path}: {reply}"
        );
    }
}

#[tokio::test]
async fn bad_credentials_are_refused_everywhere() {
    let app = TestApp::new().await;
    let user = app.user("matrix-user").await;
    let other = user.second_device(&app).await;
    let other_hex = other.device.to_hex();
    assert_denied(&app, &user, &other_hex, None, "no token").await;
    assert_denied(&app, &user, &other_hex, Some("garbage"), "garbage").await;
    assert_denied(
        &app,
        &user,
        &other_hex,
        Some(&altered_signature(&user.access)),
        "altered signature",
    )
    .await;
    assert_denied(
        &app,
        &user,
        &other_hex,
        Some(&alg_none(&user.access)),
        "alg none",
    )
    .await;
    assert_denied(
        &app,
        &user,
        &other_hex,
        Some(&user.refresh),
        "refresh token as access token",
    )
    .await;

    // Expired (beyond the 30 s leeway).
    let expiring = user.second_device(&app).await;
    app.clock.advance(15 * 60 + 31);
    assert_denied(&app, &user, &other_hex, Some(&expiring.access), "expired").await;
}

#[tokio::test]
async fn revoked_devices_and_retired_keys_are_refused_everywhere() {
    let app = TestApp::new().await;
    let mut user = app.user("revoking-user").await;
    let taken = user.second_device(&app).await;
    let revoke = json!({"auth_secret": user.auth_secret, "new_auth_secret": Bytes([9u8; 32]),
        "kdf": TestUser::kdf(), "key_bundle": TestUser::bundle(2, 1), "key_epoch": 1});
    let (status, body) = app
        .post(
            &format!("/v1/devices/{}/revoke", taken.device.to_hex()),
            user.token(),
            revoke,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_denied(
        &app,
        &taken,
        &user.device.to_hex(),
        taken.token(),
        "revoked device",
    )
    .await;

    // A token signed by a key that was rotated out and then retired.
    user.auth_secret = Bytes([9u8; 32]);
    user.login(&app).await;
    let keys = app.state.auth.keys();
    let old = keys.active_kid().unwrap();
    keys.rotate().await.unwrap();
    let (status, _) = app.get("/v1/devices", user.token()).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a rotated-out key still verifies until retired"
    );
    keys.retire(&old).await.unwrap();
    assert_denied(
        &app,
        &user,
        &taken.device.to_hex(),
        user.token(),
        "retired key",
    )
    .await;
    user.login(&app).await;
    let (status, _) = app.get("/v1/devices", user.token()).await;
    assert_eq!(status, StatusCode::OK, "new tokens use the new key");
}

#[tokio::test]
async fn another_users_space_is_indistinguishable_from_none() {
    let app = TestApp::new().await;
    let alice = app.user("alice-matrix").await;
    let bob = app.user("bob-matrix").await;
    let nobody = "0123456789abcdef0123456789abcdef";
    for (method, suffix, body) in [
        (Method::GET, "changes", None),
        (Method::GET, "changes?after=1", None),
        (Method::POST, "changes", Some(json!({"changes": []}))),
        (Method::GET, "live", None),
    ] {
        let theirs = app
            .call(
                method.clone(),
                &format!("/v1/spaces/{}/{suffix}", alice.space),
                bob.token(),
                body.clone(),
            )
            .await;
        let missing = app
            .call(
                method.clone(),
                &format!("/v1/spaces/{nobody}/{suffix}"),
                bob.token(),
                body,
            )
            .await;
        assert_eq!(theirs.0, StatusCode::NOT_FOUND, "{method} {suffix}");
        assert_eq!(
            theirs, missing,
            "{method} {suffix}: another user's space must look absent"
        );
    }
    // Revoking another account's device looks like revoking a device that does not exist.
    let revoke = json!({"auth_secret": bob.auth_secret, "new_auth_secret": Bytes([2u8; 32]),
        "kdf": TestUser::kdf(), "key_bundle": TestUser::bundle(2, 1), "key_epoch": 1});
    let theirs = app
        .post(
            &format!("/v1/devices/{}/revoke", alice.device.to_hex()),
            bob.token(),
            revoke.clone(),
        )
        .await;
    let missing = app
        .post(&format!("/v1/devices/{nobody}/revoke"), bob.token(), revoke)
        .await;
    assert_eq!(theirs.0, StatusCode::NOT_FOUND);
    assert_eq!(theirs, missing);
}
