//! Tests over real sockets on loopback: live heads over WebSocket, close codes, restarts of a
//! sled-backed app, and concurrent pushes sharing group commits.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use haven_server::storage_keys::MasterKeySource;
use haven_server::store::Store;
use haven_server::store::sled_kv::SledStore;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// Every wait in these tests is bounded.
const WAIT: Duration = Duration::from_secs(10);

struct Running {
    app: TestApp,
    addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
    http: reqwest::Client,
}

impl Running {
    async fn start(store: Arc<dyn Store>) -> Self {
        Self::start_with_keys(store, MasterKeySource::Ephemeral).await
    }

    /// A server whose master key lives in `master_keys` (a store that restarts needs the same
    /// master key to open its storage keys).
    async fn start_with_keys(store: Arc<dyn Store>, master_keys: MasterKeySource) -> Self {
        let mut options = options();
        options.http.ping_secs = 1;
        options.master_keys = master_keys;
        let app = TestApp::with_options(store, options).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = app
            .router
            .clone()
            .into_make_service_with_connect_info::<SocketAddr>();
        let mut shutdown = app.stop.subscribe();
        let server = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = shutdown.wait_for(|stop| *stop).await;
                })
                .await
                .unwrap();
        });
        Self {
            app,
            addr,
            server,
            http: reqwest::Client::new(),
        }
    }

    async fn stop(self) {
        self.app.stop.send(true).unwrap();
        tokio::time::timeout(WAIT, self.server)
            .await
            .expect("server stops")
            .unwrap();
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        let mut request = self.http.post(self.url(path)).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut request = self.http.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn live(
        &self,
        space: &str,
        token: Option<&str>,
    ) -> Result<
        tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
        WsError,
    > {
        let mut request =
            format!("ws://{}/v1/spaces/{space}/live", self.addr).into_client_request()?;
        if let Some(token) = token {
            request
                .headers_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        let (socket, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
            .await
            .expect("connect in time")?;
        Ok(socket)
    }
}

async fn next_head<S>(socket: &mut S) -> u64
where
    S: futures_util::Stream<Item = Result<Message, WsError>> + Unpin,
{
    loop {
        let message = tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("a message in time");
        match message {
            Some(Ok(Message::Text(text))) => {
                let value: Value = serde_json::from_str(&text).unwrap();
                return value["head"].as_u64().unwrap();
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected a head, got {other:?}"),
        }
    }
}

async fn close_code<S>(socket: &mut S) -> Option<CloseCode>
where
    S: futures_util::Stream<Item = Result<Message, WsError>> + Unpin,
{
    loop {
        match tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("closed in time")
        {
            Some(Ok(Message::Close(frame))) => return frame.map(|frame| frame.code),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_heads_and_close_on_logout() {
    let dir = tempfile::tempdir().unwrap();
    let running = Running::start(Arc::new(SledStore::open(dir.path(), 8 << 20).unwrap())).await;
    let mut user = running.app.user("live-user").await;
    let mut socket = running.live(&user.space, user.token()).await.unwrap();
    assert_eq!(next_head(&mut socket).await, 0);

    let envelopes = vec![user.change(doc(1)), user.change(doc(1))];
    let (status, body) = running
        .post(&user.changes_uri(), user.token(), push_body(&envelopes))
        .await;
    assert_eq!(status, 200, "{body}");
    let mut head = next_head(&mut socket).await;
    while head < 2 {
        head = next_head(&mut socket).await;
    }
    assert_eq!(head, 2);

    let response = running
        .http
        .delete(running.url("/v1/sessions/current"))
        .bearer_auth(&user.access)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 204);
    assert_eq!(close_code(&mut socket).await, Some(CloseCode::from(4001)));
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_needs_the_owners_token_except_public() {
    let running = Running::start(Arc::new(haven_server::store::memory::MemoryStore::new())).await;
    let alice = running.app.user("alice-live").await;
    let bob = running.app.user("bob-live").await;
    match running.live(&alice.space, None).await {
        Err(WsError::Http(response)) => assert_eq!(response.status().as_u16(), 401),
        other => panic!("expected 401, got {:?}", other.map(|_| ())),
    }
    match running.live(&alice.space, bob.token()).await {
        Err(WsError::Http(response)) => assert_eq!(response.status().as_u16(), 404),
        other => panic!("expected 404, got {:?}", other.map(|_| ())),
    }
    let mut public = running.live("public", None).await.unwrap();
    assert_eq!(next_head(&mut public).await, 0);
    let signed = public_envelope(&content_key(), b"hello", 1);
    let (status, _) = running
        .post("/v1/spaces/public/changes", None, push_body(&[signed]))
        .await;
    assert_eq!(status, 200);
    assert_eq!(next_head(&mut public).await, 1);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_closes_the_socket_with_4001() {
    let running = Running::start(Arc::new(haven_server::store::memory::MemoryStore::new())).await;
    let user = running.app.user("expiring").await;
    let mut socket = running.live(&user.space, user.token()).await.unwrap();
    assert_eq!(next_head(&mut socket).await, 0);
    running.app.clock.advance(16 * 60);
    assert_eq!(close_code(&mut socket).await, Some(CloseCode::from(4001)));
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_every_acked_envelope_at_its_seq() {
    let dir = tempfile::tempdir().unwrap();
    let master_keys = MasterKeySource::File(dir.path().join(haven_server::master_key::FILE_NAME));
    let running = Running::start_with_keys(
        Arc::new(SledStore::open(dir.path(), 8 << 20).unwrap()),
        master_keys.clone(),
    )
    .await;
    let mut user = running.app.user("restart-user").await;
    let envelopes: Vec<_> = (0..20).map(|i| user.change(doc(i % 3))).collect();
    let (_, body) = running
        .post(&user.changes_uri(), user.token(), push_body(&envelopes))
        .await;
    let acks = body["acks"].clone();
    assert_eq!(acks.as_array().unwrap().len(), 20);
    let (_, before) = running.get(&user.changes_uri(), user.token()).await;
    running.stop().await;

    // Reopen the same directory with a fresh app: same log, same seqs, same bytes. sled releases
    // its directory lock only when its background flusher notices the last handle is gone.
    let deadline = std::time::Instant::now() + WAIT;
    let reopened = loop {
        match SledStore::open(dir.path(), 8 << 20) {
            Ok(store) => break store,
            Err(error) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the directory stayed locked: {error}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let running = Running::start_with_keys(Arc::new(reopened), master_keys).await;
    user.login(&running.app).await;
    let (status, after) = running.get(&user.changes_uri(), user.token()).await;
    assert_eq!(status, 200);
    assert_eq!(before["changes"], after["changes"]);
    assert_eq!(after["head"], 20);
    let (_, retry) = running
        .post(&user.changes_uri(), user.token(), push_body(&envelopes))
        .await;
    assert_eq!(
        retry["acks"], acks,
        "retries after a restart get the same seqs"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pushes_make_one_gap_free_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let running =
        Arc::new(Running::start(Arc::new(SledStore::open(dir.path(), 8 << 20).unwrap())).await);
    let user = running.app.user("busy-user").await;
    let mut tasks = Vec::new();
    for device in 0..6u8 {
        let running = Arc::clone(&running);
        let mut client = user.second_device(&running.app).await;
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for _ in 0..10 {
                let batch: Vec<_> = (0..5).map(|_| client.change(doc(device))).collect();
                let (status, body) = running
                    .post(&client.changes_uri(), client.token(), push_body(&batch))
                    .await;
                assert_eq!(status, 200, "{body}");
                seqs.extend(
                    body["acks"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|ack| ack["seq"].as_u64().unwrap()),
                );
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(
            tokio::time::timeout(Duration::from_secs(60), task)
                .await
                .unwrap()
                .unwrap(),
        );
    }
    all.sort_unstable();
    assert_eq!(all, (1..=300).collect::<Vec<u64>>());
    let (_, page) = running
        .get(&format!("{}?limit=1000", user.changes_uri()), user.token())
        .await;
    assert_eq!(page["changes"].as_array().unwrap().len(), 300);
    assert_eq!(page["caught_up"], json!(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_answers_pings_is_dropped() {
    let running = Running::start(Arc::new(haven_server::store::memory::MemoryStore::new())).await;
    let mut socket = running.live("public", None).await.unwrap();
    // tungstenite answers pings only while it reads; a client that stops reading stops answering.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut ended = false;
    for _ in 0..20 {
        match tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("the server ends the socket in time")
        {
            Some(Ok(Message::Text(_) | Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(Message::Close(_)) | Err(_)) | None => {
                ended = true;
                break;
            }
            Some(Ok(other)) => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        ended,
        "the server must drop a socket that stopped answering pings"
    );
    running.stop().await;
}
