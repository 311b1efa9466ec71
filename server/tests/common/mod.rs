//! Shared helpers of the server's router and socket tests: an app over a chosen store with a
//! manual clock, fake clients that register and log in, and envelope builders.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use ed25519_dalek::{Signer, SigningKey};
use haven_protocol::api::{KdfParams, KeyBundle};
use haven_protocol::padding;
use haven_protocol::{Blob, Bytes, DocId, Envelope, EnvelopeId, Kind, SpaceId};
use haven_server::app::AppState;
use haven_server::auth::AuthConfig;
use haven_server::clock::{Clock, ManualClock, random_bytes};
use haven_server::server::{AppOptions, build_app};
use haven_server::spaces::LogLimits;
use haven_server::store::Store;
use haven_server::store::memory::MemoryStore;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::sync::watch;
use tower::ServiceExt;

/// 2026-11-28T12:00:00Z
pub const START: u64 = 1_795_867_200;

/// A test content key (not the dev key: tests must not depend on committed key files).
pub fn content_key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

pub struct TestApp {
    pub router: Router,
    pub state: AppState,
    pub clock: ManualClock,
    pub stop: watch::Sender<bool>,
}

impl TestApp {
    pub async fn new() -> Self {
        Self::with_store(Arc::new(MemoryStore::new())).await
    }

    pub async fn with_store(store: Arc<dyn Store>) -> Self {
        Self::with_options(store, options()).await
    }

    pub async fn with_options(store: Arc<dyn Store>, options: AppOptions) -> Self {
        let clock = ManualClock::new(START);
        let (stop, shutdown) = watch::channel(false);
        let state = build_app(
            store,
            Arc::new(clock.clone()) as Arc<dyn Clock>,
            options,
            shutdown,
        )
        .await
        .expect("app builds");
        Self {
            router: haven_server::app::router(state.clone()),
            state,
            clock,
            stop,
        }
    }

    /// Sends one request through the router (no socket).
    pub async fn call(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut builder = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = match body {
            Some(body) => builder
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string())),
            None => builder.body(Body::empty()),
        }
        .expect("request builds");
        self.raw(request).await
    }

    pub async fn raw(&self, request: Request<Body>) -> (StatusCode, Value) {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("router answers");
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                panic!(
                    "non-JSON body with status {status}: {}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        (status, value)
    }

    pub async fn get(&self, uri: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.call(Method::GET, uri, token, None).await
    }

    pub async fn post(&self, uri: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, uri, token, Some(body)).await
    }

    /// Registers and logs in a fresh account.
    pub async fn user(&self, name: &str) -> TestUser {
        let user = TestUser::new(name);
        let (status, body) = self.post("/v1/accounts", None, user.registration()).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let space = body["space_id"].as_str().expect("space_id").to_owned();
        let mut user = TestUser { space, ..user };
        user.login(self).await;
        user
    }
}

pub fn options() -> AppOptions {
    AppOptions {
        http: haven_server::app::HttpConfig::default(),
        log_limits: LogLimits::default(),
        auth: AuthConfig::default(),
        content_keys: vec![content_key().verifying_key()],
        master_keys: haven_server::storage_keys::MasterKeySource::Ephemeral,
    }
}

/// A fake client: it holds the secrets a real client derives from the password.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub username: String,
    pub auth_secret: Bytes<32>,
    pub recovery_auth: Bytes<32>,
    pub device: Bytes<16>,
    pub space: String,
    pub access: String,
    pub refresh: String,
    pub next_ctr: u64,
}

impl TestUser {
    pub fn new(name: &str) -> Self {
        Self {
            username: name.to_owned(),
            auth_secret: Bytes(random_bytes()),
            recovery_auth: Bytes(random_bytes()),
            device: Bytes(random_bytes()),
            space: String::new(),
            access: String::new(),
            refresh: String::new(),
            next_ctr: 1,
        }
    }

    pub fn kdf() -> KdfParams {
        KdfParams::recommended(Bytes([7; 16]))
    }

    pub fn bundle(version: u64, key_epoch: u32) -> KeyBundle {
        KeyBundle {
            version,
            key_epoch,
            blob: Blob(vec![1; 64]),
        }
    }

    pub fn registration(&self) -> Value {
        json!({
            "username": self.username,
            "auth_secret": self.auth_secret,
            "recovery_auth": self.recovery_auth,
            "kdf": Self::kdf(),
            "device": self.device,
            "key_bundle": Self::bundle(1, 0),
        })
    }

    pub fn login_body(&self) -> Value {
        json!({"username": self.username, "auth_secret": self.auth_secret, "device": self.device, "device_name": "sealed-name"})
    }

    pub async fn login(&mut self, app: &TestApp) {
        let (status, body) = app.post("/v1/sessions", None, self.login_body()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        self.access = body["access_token"].as_str().expect("access").to_owned();
        self.refresh = body["refresh_token"].as_str().expect("refresh").to_owned();
        self.space = body["space_id"].as_str().expect("space").to_owned();
    }

    /// Another device of the same account, logged in.
    pub async fn second_device(&self, app: &TestApp) -> TestUser {
        let mut other = TestUser {
            device: Bytes(random_bytes()),
            next_ctr: 1,
            ..self.clone()
        };
        other.login(app).await;
        other
    }

    pub fn token(&self) -> Option<&str> {
        Some(&self.access)
    }

    pub fn changes_uri(&self) -> String {
        format!("/v1/spaces/{}/changes", self.space)
    }

    /// A well-formed private change envelope (random "ciphertext" of a padded length).
    pub fn change(&mut self, doc: DocId) -> Envelope {
        self.envelope(doc, Kind::Change, 0)
    }

    pub fn envelope(&mut self, doc: DocId, kind: Kind, key_epoch: u32) -> Envelope {
        let ctr = self.next_ctr;
        self.next_ctr += 1;
        private_envelope(
            Bytes(random_bytes()),
            doc,
            kind,
            self.device,
            ctr,
            key_epoch,
        )
    }
}

pub fn private_envelope(
    id: EnvelopeId,
    doc: DocId,
    kind: Kind,
    device: Bytes<16>,
    ctr: u64,
    key_epoch: u32,
) -> Envelope {
    let sealed_len = padding::padded_len(100) + haven_protocol::envelope::TAG_LEN;
    let mut body = vec![0u8; haven_protocol::envelope::NONCE_LEN + sealed_len];
    getrandom::fill(&mut body).expect("random");
    Envelope {
        id,
        doc,
        kind,
        device,
        ctr,
        key_epoch,
        body: Blob(body),
        sig: None,
        covers: None,
        upto_seq: None,
    }
}

/// A public envelope signed by `key`.
pub fn public_envelope(key: &SigningKey, body: &[u8], ctr: u64) -> Envelope {
    let mut envelope = Envelope {
        id: Bytes(random_bytes()),
        doc: Bytes([5; 16]),
        kind: Kind::Change,
        device: Bytes([6; 16]),
        ctr,
        key_epoch: 0,
        body: Blob(body.to_vec()),
        sig: Some(Bytes([0; 64])),
        covers: None,
        upto_seq: None,
    };
    let signature = key.sign(&envelope.signed_bytes(&SpaceId::Public));
    envelope.sig = Some(Bytes(signature.to_bytes()));
    envelope
}

pub fn doc(n: u8) -> DocId {
    Bytes([n; 16])
}

pub fn push_body(envelopes: &[Envelope]) -> Value {
    json!({ "changes": envelopes })
}
