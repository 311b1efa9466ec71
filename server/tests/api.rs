//! Router tests without a socket (`Router::oneshot`): every endpoint, its contract fields, its
//! errors, and the rules of the space logs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use common::*;
use haven_protocol::{Bytes, Kind};
use haven_server::clock::random_bytes;
use serde_json::{Value, json};

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<none>")
}

#[tokio::test]
async fn health_openapi_and_fallbacks() {
    let app = TestApp::new().await;
    let (status, body) = app.get("/healthz", None).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );

    let (status, spec) = app.get("/v1/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/healthz",
        "/v1/prelogin",
        "/v1/accounts",
        "/v1/account",
        "/v1/sessions",
        "/v1/sessions/refresh",
        "/v1/sessions/current",
        "/v1/recovery",
        "/v1/recovery/reset",
        "/v1/devices",
        "/v1/devices/{id}/revoke",
        "/v1/link",
        "/v1/link/{id}",
        "/v1/keys",
        "/v1/spaces/{space}/changes",
        "/v1/spaces/{space}/live",
    ] {
        assert!(
            spec["paths"].get(path).is_some(),
            "{path} missing from the OpenAPI document"
        );
    }

    let (status, body) = app.get("/v1/nothing", None).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    let (status, body) = app.call(Method::DELETE, "/v1/prelogin", None, None).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );
}

#[tokio::test]
async fn prelogin_does_not_reveal_accounts() {
    let app = TestApp::new().await;
    app.user("known-user").await;
    let (status, known) = app
        .post("/v1/prelogin", None, json!({"username": "Known-User"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(known["kdf"], serde_json::to_value(TestUser::kdf()).unwrap());

    let (_, first) = app
        .post("/v1/prelogin", None, json!({"username": "nobody-here"}))
        .await;
    let (_, second) = app
        .post("/v1/prelogin", None, json!({"username": "nobody-here"}))
        .await;
    let (_, other) = app
        .post("/v1/prelogin", None, json!({"username": "someone-else"}))
        .await;
    assert_eq!(first, second, "a fake salt must be deterministic");
    assert_ne!(first["kdf"]["salt"], other["kdf"]["salt"]);
    let keys = |value: &Value| {
        value["kdf"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&first), keys(&known), "same shape for unknown users");

    let (status, body) = app
        .post("/v1/prelogin", None, json!({"username": "x"}))
        .await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "invalid"));
}

#[tokio::test]
async fn registration_validates_its_input() {
    let app = TestApp::new().await;
    let user = TestUser::new("alex");
    let (status, body) = app.post("/v1/accounts", None, user.registration()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["space_id"].as_str().unwrap().len(), 32);
    assert_eq!(body["user_id"].as_str().unwrap().len(), 32);

    let (status, body) = app
        .post("/v1/accounts", None, TestUser::new("ALEX").registration())
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::CONFLICT, "username_taken")
    );

    let mut weak = TestUser::new("weak-kdf").registration();
    weak["kdf"]["m_kib"] = json!(4);
    let (status, body) = app.post("/v1/accounts", None, weak).await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "invalid"));

    let mut big = TestUser::new("big-bundle").registration();
    big["key_bundle"]["blob"] = json!(Bytes::<0>([]).to_base64() + &"A".repeat(400_000));
    let (status, _) = app.post("/v1/accounts", None, big).await;
    assert!(
        status == StatusCode::PAYLOAD_TOO_LARGE || status == StatusCode::BAD_REQUEST,
        "{status}"
    );

    for (field, value) in [
        ("auth_secret", json!("not base64!")),
        ("auth_secret", json!("AAAA")),
        ("device", json!(12)),
        ("kdf", json!("strong")),
        ("username", Value::Null),
    ] {
        let mut body = TestUser::new("typed").registration();
        body[field] = value;
        let (status, reply) = app.post("/v1/accounts", None, body).await;
        assert_eq!(
            (status, code(&reply)),
            (StatusCode::BAD_REQUEST, "invalid"),
            "{field}"
        );
    }

    let garbage = Request::post("/v1/accounts")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{not json"))
        .unwrap();
    let (status, body) = app.raw(garbage).await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "invalid"));
    let no_type = Request::post("/v1/accounts")
        .body(Body::from("{}"))
        .unwrap();
    let (status, body) = app.raw(no_type).await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "invalid"));
}

#[tokio::test]
async fn login_failures_look_alike_and_are_throttled() {
    let app = TestApp::new().await;
    let user = app.user("sam").await;
    let mut wrong = user.login_body();
    wrong["auth_secret"] = json!(Bytes([9u8; 32]));
    let (status, wrong_password) = app.post("/v1/sessions", None, wrong.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let mut unknown = user.login_body();
    unknown["username"] = json!("not-a-user");
    let (status, unknown_user) = app.post("/v1/sessions", None, unknown).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        wrong_password, unknown_user,
        "the two failures must be indistinguishable"
    );

    let mut limited = None;
    for _ in 0..20 {
        let request = Request::post("/v1/sessions")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(wrong.to_string()))
            .unwrap();
        let response = tower::ServiceExt::oneshot(app.router.clone(), request)
            .await
            .unwrap();
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(response);
            break;
        }
    }
    let limited = limited.expect("failed logins must be throttled");
    assert!(limited.headers().contains_key(header::RETRY_AFTER));
}

#[tokio::test]
async fn push_and_pull_with_cursors() {
    let app = TestApp::new().await;
    let mut user = app.user("jordan").await;
    let envelopes: Vec<_> = (0..5).map(|_| user.change(doc(1))).collect();
    let (status, body) = app
        .post(&user.changes_uri(), user.token(), push_body(&envelopes))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seqs: Vec<u64> = body["acks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ack| ack["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    assert_eq!(body["errors"], json!([]));

    // A retry of the same bytes gets the same seqs; other bytes under a known id conflict.
    let (_, again) = app
        .post(
            &user.changes_uri(),
            user.token(),
            push_body(&envelopes[..2]),
        )
        .await;
    assert_eq!(again["acks"][1]["seq"], 2);
    let mut forged = envelopes[0].clone();
    forged.ctr = 99;
    let (_, conflict) = app
        .post(&user.changes_uri(), user.token(), push_body(&[forged]))
        .await;
    assert_eq!(conflict["errors"][0]["code"], "id_conflict");

    let (status, page) = app
        .get(
            &format!("{}?after=0&limit=2", user.changes_uri()),
            user.token(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (
            page["next"].as_u64(),
            page["head"].as_u64(),
            page["caught_up"].as_bool()
        ),
        (Some(2), Some(5), Some(false))
    );
    assert_eq!(page["changes"][0]["seq"], 1);
    assert_eq!(page["changes"][0]["body"], json!(envelopes[0].body));
    let at = page["changes"][1]["id"].as_str().unwrap().to_owned();
    let encoded: String = url_encode(&at);
    let (status, rest) = app
        .get(
            &format!("{}?after=2&at={encoded}", user.changes_uri()),
            user.token(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rest}");
    assert_eq!(rest["changes"].as_array().unwrap().len(), 3);
    assert_eq!(
        (rest["next"].as_u64(), rest["caught_up"].as_bool()),
        (Some(5), Some(true))
    );
    let hex_at = envelopes[1].id.to_hex();
    let (status, _) = app
        .get(
            &format!("{}?after=2&at={hex_at}", user.changes_uri()),
            user.token(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // Cursors that do not match this log.
    let (status, body) = app
        .get(&format!("{}?after=9", user.changes_uri()), user.token())
        .await;
    assert_eq!(
        (status, code(&body), body["error"]["head"].as_u64()),
        (StatusCode::CONFLICT, "cursor_mismatch", Some(5))
    );
    let (status, body) = app
        .get(
            &format!("{}?after=3&at={hex_at}", user.changes_uri()),
            user.token(),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::CONFLICT, "cursor_mismatch")
    );
    for odd in [
        "after=-1",
        "after=abc",
        "limit=0",
        "limit=x",
        "after=1&at=zz",
        "at=AAAA",
    ] {
        let (status, body) = app
            .get(&format!("{}?{odd}", user.changes_uri()), user.token())
            .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::BAD_REQUEST, "invalid"),
            "{odd}"
        );
    }
}

fn url_encode(text: &str) -> String {
    text.replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D")
}

#[tokio::test]
async fn another_users_space_looks_like_no_space() {
    let app = TestApp::new().await;
    let alice = app.user("alice").await;
    let mut bob = app.user("bob-b").await;
    let missing = "00000000000000000000000000000000";
    let (status_other, other) = app.get(&alice.changes_uri(), bob.token()).await;
    let (status_missing, none) = app
        .get(&format!("/v1/spaces/{missing}/changes"), bob.token())
        .await;
    assert_eq!(status_other, StatusCode::NOT_FOUND);
    assert_eq!((status_other, &other), (status_missing, &none));
    let (status, _) = app.get("/v1/spaces/not-a-space/changes", bob.token()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let env = bob.change(doc(1));
    let (status, _) = app
        .post(&alice.changes_uri(), bob.token(), push_body(&[env]))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = app.get(&alice.changes_uri(), None).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );
    let (status, _) = app.get(&alice.changes_uri(), Some("garbage")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn envelope_shape_is_checked_per_item() {
    let app = TestApp::new().await;
    let mut user = app.user("casey").await;
    let good = user.change(doc(1));
    let mut unpadded = user.change(doc(1));
    unpadded.body.0.truncate(100);
    let mut signed = user.change(doc(1));
    signed.sig = Some(Bytes([1; 64]));
    let mut zero_ctr = user.change(doc(1));
    zero_ctr.ctr = 0;
    let (status, body) = app
        .post(
            &user.changes_uri(),
            user.token(),
            push_body(&[good, unpadded, signed, zero_ctr]),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["acks"].as_array().unwrap().len(), 1);
    let codes: Vec<_> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["invalid", "invalid", "invalid"]);
}

#[tokio::test]
async fn snapshots_compare_and_swap_and_tombstones_delete() {
    let app = TestApp::new().await;
    let mut user = app.user("robin").await;
    let changes: Vec<_> = (0..3).map(|_| user.change(doc(1))).collect();
    let other_doc = user.change(doc(2));
    let (_, _) = app
        .post(
            &user.changes_uri(),
            user.token(),
            push_body(&[changes.clone(), vec![other_doc]].concat()),
        )
        .await;

    let mut stale = user.envelope(doc(1), Kind::Snapshot, 0);
    stale.covers = Some(vec![changes[0].id, changes[1].id]);
    stale.upto_seq = Some(3);
    let (_, body) = app
        .post(&user.changes_uri(), user.token(), push_body(&[stale]))
        .await;
    assert_eq!(body["errors"][0]["code"], "snapshot_stale");
    assert_eq!(body["errors"][0]["missing"], json!([changes[2].id]));

    let mut snapshot = user.envelope(doc(1), Kind::Snapshot, 0);
    snapshot.covers = Some(changes.iter().map(|c| c.id).collect());
    snapshot.upto_seq = Some(4);
    let (_, body) = app
        .post(
            &user.changes_uri(),
            user.token(),
            push_body(std::slice::from_ref(&snapshot)),
        )
        .await;
    assert_eq!(body["acks"][0]["seq"], 5, "{body}");
    let (_, page) = app.get(&user.changes_uri(), user.token()).await;
    let seqs: Vec<_> = page["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        [4, 5],
        "covered changes are pruned, the other document's stays"
    );
    // Pruned ids stay idempotent.
    let (_, retry) = app
        .post(&user.changes_uri(), user.token(), push_body(&changes[..1]))
        .await;
    assert_eq!(retry["acks"][0]["seq"], 1);

    let tombstone = user.envelope(doc(1), Kind::Tombstone, 0);
    let (_, body) = app
        .post(&user.changes_uri(), user.token(), push_body(&[tombstone]))
        .await;
    assert_eq!(body["acks"][0]["seq"], 6);
    let late = user.change(doc(1));
    let (_, body) = app
        .post(&user.changes_uri(), user.token(), push_body(&[late]))
        .await;
    assert_eq!(body["errors"][0]["code"], "doc_deleted");
    let (_, page) = app.get(&user.changes_uri(), user.token()).await;
    let seqs: Vec<_> = page["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [4, 6]);
}

#[tokio::test]
async fn public_space_takes_only_signed_content() {
    let app = TestApp::new().await;
    let key = content_key();
    let signed = public_envelope(&key, b"article change", 1);
    let (status, body) = app
        .post(
            "/v1/spaces/public/changes",
            None,
            push_body(std::slice::from_ref(&signed)),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["acks"][0]["seq"], 1, "{body}");

    let other_key = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
    let wrong_key = public_envelope(&other_key, b"forged", 2);
    let mut altered = public_envelope(&key, b"original", 3);
    altered.body.0 = b"altered".to_vec();
    let mut unsigned = public_envelope(&key, b"x", 4);
    unsigned.sig = None;
    let (_, body) = app
        .post(
            "/v1/spaces/public/changes",
            None,
            push_body(&[wrong_key, altered, unsigned]),
        )
        .await;
    let codes: Vec<_> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["unauthorized", "unauthorized", "invalid"]);

    let (status, page) = app.get("/v1/spaces/public/changes", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["changes"].as_array().unwrap().len(), 1);
    assert_eq!(page["changes"][0]["sig"], json!(signed.sig));
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_family() {
    let app = TestApp::new().await;
    let user = app.user("riley").await;
    let first = user.refresh.clone();
    let (status, rotated) = app
        .post(
            "/v1/sessions/refresh",
            None,
            json!({"refresh_token": first}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let second = rotated["refresh_token"].as_str().unwrap().to_owned();
    let access = rotated["access_token"].as_str().unwrap().to_owned();
    assert_ne!(first, second);
    let (status, _) = app.get(&user.changes_uri(), Some(&access)).await;
    assert_eq!(status, StatusCode::OK);

    // Past the grace period, presenting the first token again is reuse: the family dies.
    app.clock.advance(3600);
    let (status, _) = app
        .post(
            "/v1/sessions/refresh",
            None,
            json!({"refresh_token": first}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = app
        .post(
            "/v1/sessions/refresh",
            None,
            json!({"refresh_token": second}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = app
        .post(
            "/v1/sessions/refresh",
            None,
            json!({"refresh_token": "garbage"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn logout_ends_the_session() {
    let app = TestApp::new().await;
    let user = app.user("morgan").await;
    let (status, _) = app
        .call(Method::DELETE, "/v1/sessions/current", user.token(), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app.get(&user.changes_uri(), user.token()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = app
        .post(
            "/v1/sessions/refresh",
            None,
            json!({"refresh_token": user.refresh}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn revocation_rotates_the_epoch_and_cuts_the_device_off() {
    let app = TestApp::new().await;
    let mut phone = app.user("taylor").await;
    let mut taken = phone.second_device(&app).await;
    let (status, list) = app.get("/v1/devices", phone.token()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["devices"].as_array().unwrap().len(), 2);
    assert_eq!(
        list["devices"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["current"] == true)
            .count(),
        1
    );

    let new_secret = Bytes([77u8; 32]);
    let revoke = json!({
        "auth_secret": phone.auth_secret,
        "new_auth_secret": new_secret,
        "kdf": TestUser::kdf(),
        "key_bundle": TestUser::bundle(2, 1),
        "key_epoch": 1,
    });
    let uri = format!("/v1/devices/{}/revoke", taken.device.to_hex());
    let mut wrong = revoke.clone();
    wrong["auth_secret"] = json!(Bytes([1u8; 32]));
    let (status, _) = app.post(&uri, phone.token(), wrong).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let mut bad_epoch = revoke.clone();
    bad_epoch["key_epoch"] = json!(5);
    let (status, body) = app.post(&uri, phone.token(), bad_epoch).await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "epoch_stale"));
    let (status, body) = app.post(&uri, phone.token(), revoke.clone()).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    let (status, body) = app.get(&taken.changes_uri(), taken.token()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(["device_revoked", "unauthorized"].contains(&code(&body)));
    let (status, _) = app
        .post(
            "/v1/sessions/refresh",
            None,
            json!({"refresh_token": taken.refresh}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The old password is gone; with the new one, the revoked device id stays refused.
    let (status, _) = app.post("/v1/sessions", None, taken.login_body()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    taken.auth_secret = new_secret;
    let (status, body) = app.post("/v1/sessions", None, taken.login_body()).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "device_revoked")
    );

    // Pushes under the old epoch are refused; the new epoch is accepted.
    phone.auth_secret = new_secret;
    phone.login(&app).await;
    let old = phone.envelope(doc(1), Kind::Change, 0);
    let new = phone.envelope(doc(1), Kind::Change, 1);
    let (_, body) = app
        .post(&phone.changes_uri(), phone.token(), push_body(&[old, new]))
        .await;
    assert_eq!(body["errors"][0]["code"], "epoch_stale");
    assert_eq!(body["acks"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn key_bundle_compare_and_swap() {
    let app = TestApp::new().await;
    let user = app.user("quinn").await;
    let (status, bundle) = app.get("/v1/keys", user.token()).await;
    assert_eq!(
        (status, bundle["version"].as_u64()),
        (StatusCode::OK, Some(1))
    );
    let put = |version: u64| json!({"version": version, "key_epoch": 0, "blob": Bytes([3u8; 32])});
    let (status, _) = app
        .call(Method::PUT, "/v1/keys", user.token(), Some(put(2)))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = app
        .call(Method::PUT, "/v1/keys", user.token(), Some(put(2)))
        .await;
    assert_eq!(
        (
            status,
            code(&body),
            body["error"]["current_version"].as_u64()
        ),
        (StatusCode::CONFLICT, "version_conflict", Some(2))
    );
}

#[tokio::test]
async fn link_mailbox_is_single_use_and_expires() {
    let app = TestApp::new().await;
    let user = app.user("avery").await;
    let (status, created) = app.post("/v1/link", None, json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["expires_in"], 600);
    let uri = format!("/v1/link/{}", created["id"].as_str().unwrap());
    let (status, _) = app.get(&uri, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing there yet");
    let payload = json!({"payload": Bytes([8u8; 48])});
    let (status, _) = app
        .call(Method::PUT, &uri, None, Some(payload.clone()))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = app
        .call(Method::PUT, &uri, user.token(), Some(payload.clone()))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app
        .call(Method::PUT, &uri, user.token(), Some(payload.clone()))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "the payload is set once");
    let (status, body) = app.get(&uri, None).await;
    assert_eq!(
        (status, &body["payload"]),
        (StatusCode::OK, &payload["payload"])
    );
    let (status, _) = app.get(&uri, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "taken once");

    let (_, created) = app.post("/v1/link", None, json!({})).await;
    let uri = format!("/v1/link/{}", created["id"].as_str().unwrap());
    app.call(Method::PUT, &uri, user.token(), Some(payload))
        .await;
    app.clock.advance(601);
    let (status, _) = app.get(&uri, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "expired");
}

#[tokio::test]
async fn recovery_resets_the_password_and_ends_sessions() {
    let app = TestApp::new().await;
    let user = app.user("harper").await;
    let (status, _) = app
        .post(
            "/v1/recovery",
            None,
            json!({"username": "harper", "recovery_auth": Bytes([0u8; 32])}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = app
        .post(
            "/v1/recovery",
            None,
            json!({"username": "harper", "recovery_auth": user.recovery_auth}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["recovery_bundle"]["version"], 1);
    let token = body["reset_token"].as_str().unwrap().to_owned();
    let new_secret = Bytes([55u8; 32]);
    let reset = json!({"reset_token": token, "auth_secret": new_secret, "kdf": TestUser::kdf(), "key_bundle": TestUser::bundle(2, 0)});
    let (status, body) = app.post("/v1/recovery/reset", None, reset.clone()).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, _) = app.post("/v1/recovery/reset", None, reset).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "reset tokens are single use"
    );
    let (status, _) = app.get(&user.changes_uri(), user.token()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "old sessions end");
    let (status, _) = app.post("/v1/sessions", None, user.login_body()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "old password refused");
    let mut renewed = user.clone();
    renewed.auth_secret = new_secret;
    let (status, _) = app.post("/v1/sessions", None, renewed.login_body()).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn password_change_needs_the_old_password_and_ends_every_session() {
    let app = TestApp::new().await;
    let user = app.user("quinn").await;
    let other = user.second_device(&app).await;
    let new_secret = Bytes([66u8; 32]);
    let change = |proof: Bytes<32>, version: u64, epoch: u32| {
        json!({"auth_secret": proof, "new_auth_secret": new_secret, "kdf": TestUser::kdf(),
            "key_bundle": TestUser::bundle(version, epoch)})
    };
    let (status, _) = app
        .post(
            "/v1/account/password",
            user.token(),
            change(Bytes([0u8; 32]), 2, 0),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "wrong current password");
    for (version, epoch) in [(1, 0), (3, 0), (2, 1)] {
        let (status, body) = app
            .post(
                "/v1/account/password",
                user.token(),
                change(user.auth_secret, version, epoch),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{version}/{epoch}: {body}");
        assert_eq!(code(&body), "version_conflict");
    }
    let (status, session) = app
        .post(
            "/v1/account/password",
            user.token(),
            change(user.auth_secret, 2, 0),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{session}");
    assert_eq!(session["device_id"], json!(user.device));
    for (who, token) in [("this device", &user.access), ("the other", &other.access)] {
        let (status, _) = app.get(&user.changes_uri(), Some(token)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{who}: old tokens end");
    }
    let (status, _) = app
        .post(
            "/v1/sessions/refresh",
            None,
            json!({"refresh_token": other.refresh}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "old refresh tokens end");
    let (status, _) = app
        .get(&user.changes_uri(), session["access_token"].as_str())
        .await;
    assert_eq!(status, StatusCode::OK, "the new session works");
    let (status, keys) = app.get("/v1/keys", session["access_token"].as_str()).await;
    assert_eq!((status, &keys["version"]), (StatusCode::OK, &json!(2)));
    let (status, _) = app.post("/v1/sessions", None, user.login_body()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "old password refused");
    let mut renewed = user.clone();
    renewed.auth_secret = new_secret;
    let (status, _) = app.post("/v1/sessions", None, renewed.login_body()).await;
    assert_eq!(status, StatusCode::OK, "new password works");
}

#[tokio::test]
async fn enrolment_tokens_are_single_use_expire_and_are_not_reset_tokens() {
    let app = TestApp::new().await;
    let user = app.user("rowan").await;
    let (status, _) = app.post("/v1/devices/enrolment", None, json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, created) = app
        .post("/v1/devices/enrolment", user.token(), json!({}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["expires_in"], 600);
    let token = created["enrolment_token"].as_str().unwrap().to_owned();
    let new_device = Bytes::<16>(random_bytes());
    let enrol = json!({"enrolment_token": token, "device": new_device, "device_name": "sealed"});
    let (status, session) = app.post("/v1/sessions/enrol", None, enrol.clone()).await;
    assert_eq!(status, StatusCode::OK, "{session}");
    assert_eq!(session["space_id"], json!(user.space));
    assert_eq!(session["device_id"], json!(new_device));
    let (status, devices) = app
        .get("/v1/devices", session["access_token"].as_str())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(devices["devices"].as_array().unwrap().len(), 2);
    let (status, _) = app.post("/v1/sessions/enrol", None, enrol).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "single use");

    let (_, created) = app
        .post("/v1/devices/enrolment", user.token(), json!({}))
        .await;
    app.clock.advance(601);
    let late = json!({"enrolment_token": created["enrolment_token"], "device": Bytes::<16>(random_bytes())});
    let (status, _) = app.post("/v1/sessions/enrol", None, late).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "expired");

    // A recovery reset token is no enrolment token, and the other way round.
    let (_, recovery) = app
        .post(
            "/v1/recovery",
            None,
            json!({"username": "rowan", "recovery_auth": user.recovery_auth}),
        )
        .await;
    let reset_token = recovery["reset_token"].as_str().unwrap().to_owned();
    let (status, _) = app
        .post(
            "/v1/sessions/enrol",
            None,
            json!({"enrolment_token": reset_token, "device": Bytes::<16>(random_bytes())}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (_, created) = app
        .post(
            "/v1/devices/enrolment",
            session["access_token"].as_str(),
            json!({}),
        )
        .await;
    let (status, _) = app
        .post(
            "/v1/recovery/reset",
            None,
            json!({"reset_token": created["enrolment_token"], "auth_secret": Bytes([1u8; 32]),
                "kdf": TestUser::kdf(), "key_bundle": TestUser::bundle(2, 0)}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = app
        .post(
            "/v1/sessions/enrol",
            None,
            json!({"enrolment_token": "garbage", "device": Bytes::<16>(random_bytes())}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn erasure_removes_the_account() {
    let app = TestApp::new().await;
    let mut user = app.user("drew").await;
    let other_device = user.second_device(&app).await;
    let env = user.change(doc(1));
    app.post(&user.changes_uri(), user.token(), push_body(&[env]))
        .await;
    let (status, _) = app
        .call(
            Method::DELETE,
            "/v1/account",
            user.token(),
            Some(json!({"auth_secret": Bytes([2u8; 32])})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = app
        .call(
            Method::DELETE,
            "/v1/account",
            user.token(),
            Some(json!({"auth_secret": user.auth_secret})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = app
        .get(&other_device.changes_uri(), other_device.token())
        .await;
    assert_eq!((status, code(&body)), (StatusCode::GONE, "account_erased"));
    let (status, _) = app.post("/v1/sessions", None, user.login_body()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn old_clients_and_oversize_requests() {
    let app = TestApp::new().await;
    let request = Request::get("/healthz")
        .header("haven-client-version", "0.0.1")
        .body(Body::empty())
        .unwrap();
    let (status, body) = app.raw(request).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UPGRADE_REQUIRED, "client_too_old")
    );
    let request = Request::get("/healthz")
        .header("haven-client-version", "9.0.0")
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.raw(request).await.0, StatusCode::OK);

    let mut user = app.user("blake").await;
    let batch: Vec<_> = (0..1001).map(|_| user.change(doc(1))).collect();
    let (status, body) = app
        .post(&user.changes_uri(), user.token(), push_body(&batch))
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::PAYLOAD_TOO_LARGE, "too_large")
    );
    let huge = "x".repeat(17 * 1024 * 1024);
    let request = Request::post(user.changes_uri())
        .header(header::AUTHORIZATION, format!("Bearer {}", user.access))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(format!("{{\"changes\":[],\"pad\":\"{huge}\"}}")))
        .unwrap();
    let (status, body) = app.raw(request).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::PAYLOAD_TOO_LARGE, "too_large")
    );
}
