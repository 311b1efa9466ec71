//! `HttpRemote` end to end: every `ServerApi` method against the real server in-process on
//! loopback, and the failure modes of a network (a server that is down, one that never answers,
//! a gateway's HTML page, redirects, oversized answers, a scripted WebSocket peer).
//!
//! Only loopback addresses; every wait is bounded (by the client's own short timeouts, and by
//! `tokio::time::timeout` around anything that could hang).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use haven_core::remote::http::{HttpOptions, HttpRemote};
use haven_core::remote::{LiveEnded, LiveHeads, PullCursor, RemoteError, ServerApi};
use haven_protocol::api::{
    AuthProof, CreateAccountRequest, CreateSessionRequest, KdfParams, KeyBundle, LinkPayload,
    RecoveryRequest, RecoveryResetRequest, RevokeDeviceRequest, SessionResponse,
};
use haven_protocol::{Blob, Bytes, DeviceId, ErrorCode, HexId, Kind, SpaceId};
use haven_server::store::memory::MemoryStore;
use haven_tests::{
    TestServer, WAIT, content_key, private_envelope, public_envelope, random_bytes, spawn_server,
    test_options, unknown_id,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// Client options for tests: short deadlines so that a hang fails fast.
fn options() -> HttpOptions {
    HttpOptions {
        request_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(5),
        live_idle_timeout: Duration::from_secs(5),
        ..HttpOptions::default()
    }
}

fn remote(server: &TestServer) -> HttpRemote {
    HttpRemote::new(&server.url, options()).unwrap()
}

async fn bounded<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish in {WAIT:?}"))
}

fn kdf() -> KdfParams {
    KdfParams::recommended(Bytes([7; 16]))
}

fn bundle(version: u64, key_epoch: u32) -> KeyBundle {
    KeyBundle {
        version,
        key_epoch,
        blob: Blob(vec![version as u8; 64]),
    }
}

/// The secrets a real client derives from its password and phrase, and its session.
#[derive(Debug, Clone)]
struct Account {
    username: String,
    auth_secret: Bytes<32>,
    recovery_auth: Bytes<32>,
    device: DeviceId,
    space: SpaceId,
    session: SessionResponse,
    next_ctr: u64,
}

impl Account {
    fn access(&self) -> &str {
        &self.session.access_token
    }

    fn login_request(&self) -> CreateSessionRequest {
        CreateSessionRequest {
            username: self.username.clone(),
            auth_secret: self.auth_secret,
            device: self.device,
            device_name: Some("sealed-name".into()),
        }
    }

    fn change(&mut self, doc: u8) -> haven_protocol::Envelope {
        let ctr = self.next_ctr;
        self.next_ctr += 1;
        private_envelope(Bytes([doc; 16]), Kind::Change, self.device, ctr, 0)
    }

    /// Another device of the same account, logged in.
    async fn second_device(&self, api: &HttpRemote) -> Account {
        let mut other = Account {
            device: Bytes(random_bytes()),
            next_ctr: 1,
            ..self.clone()
        };
        other.session = api.create_session(&other.login_request()).await.unwrap();
        other
    }
}

/// Registers (201 → the DTO) and logs in through the remote.
async fn register(api: &HttpRemote, username: &str) -> Account {
    let auth_secret = Bytes(random_bytes());
    let recovery_auth = Bytes(random_bytes());
    let device = Bytes(random_bytes());
    let created = api
        .create_account(&CreateAccountRequest {
            username: username.to_owned(),
            auth_secret,
            recovery_auth,
            kdf: kdf(),
            device,
            key_bundle: bundle(1, 0),
        })
        .await
        .unwrap();
    let mut account = Account {
        username: username.to_owned(),
        auth_secret,
        recovery_auth,
        device,
        space: created.space_id,
        session: SessionResponse {
            access_token: String::new(),
            refresh_token: String::new(),
            expires_in: 0,
            user_id: created.user_id,
            device_id: device,
            space_id: created.space_id,
        },
        next_ctr: 1,
    };
    account.session = api.create_session(&account.login_request()).await.unwrap();
    assert_eq!(account.session.user_id, created.user_id);
    assert_eq!(account.session.space_id, created.space_id);
    assert_eq!(account.session.device_id, device);
    account
}

#[track_caller]
fn assert_server(error: &RemoteError, status: u16, code: ErrorCode) {
    match error {
        RemoteError::Server { status: got, body } => {
            assert_eq!(*got, status, "{error:?}");
            assert_eq!(body.error.code, code, "{error:?}");
        }
        other => panic!("expected {status} {code:?}, got {other:?}"),
    }
}

async fn next_head(live: &mut Box<dyn LiveHeads>) -> Result<u64, LiveEnded> {
    bounded("next_head", live.next_head()).await
}

/// Reads heads until one reaches `at_least` (the server may coalesce appends).
async fn head_reaching(live: &mut Box<dyn LiveHeads>, at_least: u64) -> u64 {
    loop {
        let head = next_head(live).await.unwrap();
        if head >= at_least {
            return head;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_sessions_devices_and_keys() {
    let server = TestServer::start().await.unwrap();
    let api = remote(&server);

    // Unknown and known users get the same shape.
    let unknown = api.prelogin("nobody-here").await.unwrap();
    assert!(unknown.kdf.is_acceptable());
    let alice = register(&api, "alice").await;
    assert_eq!(api.prelogin("Alice ").await.unwrap().kdf, kdf());

    let taken = api
        .create_account(&CreateAccountRequest {
            username: "alice".into(),
            auth_secret: Bytes(random_bytes()),
            recovery_auth: Bytes(random_bytes()),
            kdf: kdf(),
            device: Bytes(random_bytes()),
            key_bundle: bundle(1, 0),
        })
        .await
        .unwrap_err();
    assert_server(&taken, 409, ErrorCode::UsernameTaken);
    assert!(!taken.retryable());

    let wrong = api
        .create_session(&CreateSessionRequest {
            auth_secret: Bytes(random_bytes()),
            ..alice.login_request()
        })
        .await
        .unwrap_err();
    assert_server(&wrong, 401, ErrorCode::Unauthorized);

    // Refresh rotates the pair; the new access token works.
    let refreshed = api
        .refresh_session(&alice.session.refresh_token)
        .await
        .unwrap();
    assert_ne!(refreshed.refresh_token, alice.session.refresh_token);
    assert_eq!(refreshed.device_id, alice.device);
    let bad_refresh = api.refresh_session("not-a-token").await.unwrap_err();
    assert_server(&bad_refresh, 401, ErrorCode::Unauthorized);

    let phone = alice.second_device(&api).await;
    let devices = api.devices(&refreshed.access_token).await.unwrap().devices;
    assert_eq!(devices.len(), 2);
    let me = devices.iter().find(|d| d.current).unwrap();
    assert_eq!(me.device_id, alice.device);
    assert!(
        devices
            .iter()
            .any(|d| d.device_id == phone.device && !d.current)
    );
    assert_eq!(me.name.as_deref(), Some("sealed-name"));

    // The key bundle: read, CAS-replace, lose a CAS.
    assert_eq!(api.get_keys(alice.access()).await.unwrap(), bundle(1, 0));
    api.put_keys(alice.access(), &bundle(2, 0)).await.unwrap();
    assert_eq!(api.get_keys(phone.access()).await.unwrap(), bundle(2, 0));
    let conflict = api
        .put_keys(phone.access(), &bundle(2, 0))
        .await
        .unwrap_err();
    assert_server(&conflict, 409, ErrorCode::VersionConflict);
    match &conflict {
        RemoteError::Server { body, .. } => assert_eq!(body.error.current_version, Some(2)),
        _ => unreachable!(),
    }

    // Logout ends this session only.
    api.delete_session(phone.access()).await.unwrap();
    let gone = api.devices(phone.access()).await.unwrap_err();
    assert_server(&gone, 401, ErrorCode::Unauthorized);
    assert!(!gone.retryable());
    api.devices(alice.access()).await.unwrap();

    let no_token = api.get_keys("").await.unwrap_err();
    assert_server(&no_token, 401, ErrorCode::Unauthorized);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_and_pull_with_cursors() {
    let server = TestServer::start().await.unwrap();
    let api = remote(&server);
    let mut alice = register(&api, "alice-sync").await;
    let space = alice.space;

    let batch: Vec<_> = (0..3).map(|_| alice.change(1)).collect();
    let pushed = api
        .push(Some(alice.access()), &space, &batch)
        .await
        .unwrap();
    assert!(pushed.errors.is_empty(), "{pushed:?}");
    let seqs: Vec<u64> = pushed.acks.iter().map(|ack| ack.seq).collect();
    assert_eq!(seqs, [1, 2, 3]);
    // A retry is idempotent: the same seqs.
    let again = api
        .push(Some(alice.access()), &space, &batch)
        .await
        .unwrap();
    assert_eq!(again.acks, pushed.acks);

    let first = api
        .pull(
            Some(alice.access()),
            &space,
            PullCursor {
                after: 0,
                at: None,
                limit: 2,
            },
        )
        .await
        .unwrap();
    assert_eq!(first.changes.len(), 2);
    assert_eq!((first.next, first.head, first.caught_up), (2, 3, false));
    assert_eq!(first.changes[0].envelope, batch[0]);
    let at = first.changes[1].envelope.id;
    let rest = api
        .pull(
            Some(alice.access()),
            &space,
            PullCursor {
                after: first.next,
                at: Some(at),
                limit: 1000,
            },
        )
        .await
        .unwrap();
    assert_eq!(rest.changes.len(), 1);
    assert_eq!(rest.changes[0].seq, 3);
    assert_eq!(rest.changes[0].envelope, batch[2]);
    assert_eq!((rest.next, rest.caught_up), (3, true));

    // The server's log is not the client's: past the head, or another id at `after`.
    for cursor in [
        PullCursor {
            after: 9,
            at: None,
            limit: 10,
        },
        PullCursor {
            after: 2,
            at: Some(unknown_id()),
            limit: 10,
        },
    ] {
        let error = api
            .pull(Some(alice.access()), &space, cursor)
            .await
            .unwrap_err();
        assert_server(&error, 409, ErrorCode::CursorMismatch);
        match error {
            RemoteError::Server { body, .. } => assert_eq!(body.error.head, Some(3)),
            _ => unreachable!(),
        }
    }

    // A private space needs its owner's token; someone else's answers like a missing one.
    let anonymous = api
        .pull(
            None,
            &space,
            PullCursor {
                after: 0,
                at: None,
                limit: 10,
            },
        )
        .await
        .unwrap_err();
    assert_server(&anonymous, 401, ErrorCode::Unauthorized);
    let bob = register(&api, "bob-sync").await;
    let foreign = api
        .push(Some(bob.access()), &space, &[alice.change(2)])
        .await
        .unwrap_err();
    assert_server(&foreign, 404, ErrorCode::NotFound);

    // `public`: signed pushes and reads need no token.
    let signed = public_envelope(&content_key(), b"hotline: 0800 000 000", 1);
    let published = api
        .push(None, &SpaceId::Public, std::slice::from_ref(&signed))
        .await
        .unwrap();
    assert_eq!(published.acks.len(), 1, "{published:?}");
    let public = api
        .pull(
            None,
            &SpaceId::Public,
            PullCursor {
                after: 0,
                at: None,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(public.changes.len(), 1);
    assert_eq!(public.changes[0].envelope, signed);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_link_mailbox() {
    let server = TestServer::start().await.unwrap();
    let api = remote(&server);
    let alice = register(&api, "alice-link").await;

    let link = api.create_link().await.unwrap();
    assert!(link.expires_in > 0);
    assert_eq!(api.take_link(&link.id).await.unwrap(), None, "nothing yet");
    let payload = LinkPayload {
        payload: Blob(vec![9; 300]),
    };
    api.put_link(alice.access(), &link.id, &payload)
        .await
        .unwrap();
    assert_eq!(api.take_link(&link.id).await.unwrap(), Some(payload));
    assert_eq!(api.take_link(&link.id).await.unwrap(), None, "single use");

    let missing = haven_protocol::HexId(random_bytes());
    let error = api
        .put_link(
            alice.access(),
            &missing,
            &LinkPayload {
                payload: Blob(vec![1]),
            },
        )
        .await
        .unwrap_err();
    assert_server(&error, 404, ErrorCode::NotFound);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_then_reset_ends_every_session() {
    let server = TestServer::start().await.unwrap();
    let api = remote(&server);
    let alice = register(&api, "alice-recover").await;

    let wrong = api
        .recover(&RecoveryRequest {
            username: alice.username.clone(),
            recovery_auth: Bytes(random_bytes()),
        })
        .await
        .unwrap_err();
    assert_server(&wrong, 401, ErrorCode::Unauthorized);

    let recovered = api
        .recover(&RecoveryRequest {
            username: alice.username.clone(),
            recovery_auth: alice.recovery_auth,
        })
        .await
        .unwrap();
    assert_eq!(recovered.recovery_bundle, bundle(1, 0));
    let new_secret = Bytes(random_bytes());
    let reset = RecoveryResetRequest {
        reset_token: recovered.reset_token,
        auth_secret: new_secret,
        kdf: kdf(),
        key_bundle: bundle(2, 0),
    };
    api.reset_after_recovery(&reset).await.unwrap();
    // Single use.
    let replay = api.reset_after_recovery(&reset).await.unwrap_err();
    assert_server(&replay, 401, ErrorCode::Unauthorized);

    let ended = api.devices(alice.access()).await.unwrap_err();
    assert_server(&ended, 401, ErrorCode::Unauthorized);
    let old = api
        .create_session(&alice.login_request())
        .await
        .unwrap_err();
    assert_server(&old, 401, ErrorCode::Unauthorized);
    let renewed = api
        .create_session(&CreateSessionRequest {
            auth_secret: new_secret,
            ..alice.login_request()
        })
        .await
        .unwrap();
    assert_eq!(
        api.get_keys(&renewed.access_token).await.unwrap(),
        bundle(2, 0)
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_device_and_erasing_the_account() {
    let server = TestServer::start().await.unwrap();
    let api = remote(&server);
    let mut alice = register(&api, "alice-revoke").await;
    let lost = alice.second_device(&api).await;
    let mut lost_live = api.live(Some(lost.access()), &alice.space).await.unwrap();
    assert_eq!(next_head(&mut lost_live).await, Ok(0));

    let new_secret = Bytes(random_bytes());
    let revoke = RevokeDeviceRequest {
        auth_secret: alice.auth_secret,
        new_auth_secret: new_secret,
        kdf: kdf(),
        key_bundle: bundle(2, 1),
        key_epoch: 1,
    };
    // A stale epoch loses; the right one wins.
    let stale = api
        .revoke_device(
            alice.access(),
            &lost.device,
            &RevokeDeviceRequest {
                key_epoch: 5,
                key_bundle: bundle(2, 5),
                ..revoke.clone()
            },
        )
        .await
        .unwrap_err();
    assert_server(&stale, 409, ErrorCode::EpochStale);
    api.revoke_device(alice.access(), &lost.device, &revoke)
        .await
        .unwrap();
    assert_eq!(
        next_head(&mut lost_live).await,
        Err(LiveEnded::Unauthorized)
    );
    let cut_off = api.devices(lost.access()).await.unwrap_err();
    assert!(matches!(cut_off, RemoteError::Server { status: 401, .. }));
    let relogin = api.create_session(&lost.login_request()).await.unwrap_err();
    assert_server(&relogin, 401, ErrorCode::Unauthorized);
    let devices = api.devices(alice.access()).await.unwrap().devices;
    assert!(
        devices
            .iter()
            .any(|device| device.device_id == lost.device && device.revoked)
    );
    alice.auth_secret = new_secret;

    // Erasure needs a fresh proof of the (new) password.
    let weak = api
        .delete_account(
            alice.access(),
            &AuthProof {
                auth_secret: Bytes(random_bytes()),
                wipe_token: None,
            },
        )
        .await
        .unwrap_err();
    assert_server(&weak, 401, ErrorCode::Unauthorized);
    // No erasure yet: no notice (for any id).
    assert_eq!(
        api.erasure_notice(&alice.session.user_id).await.unwrap(),
        None
    );
    let wipe_token = Bytes(random_bytes());
    api.delete_account(
        alice.access(),
        &AuthProof {
            auth_secret: alice.auth_secret,
            wipe_token: Some(wipe_token),
        },
    )
    .await
    .unwrap();
    // The erased account's devices can read the token it revealed, without a session.
    let notice = api.erasure_notice(&alice.session.user_id).await.unwrap();
    assert_eq!(
        notice.and_then(|notice| notice.wipe_token),
        Some(wipe_token)
    );
    assert_eq!(api.erasure_notice(&HexId([9; 16])).await.unwrap(), None);
    let erased = api
        .create_session(&alice.login_request())
        .await
        .unwrap_err();
    assert_server(&erased, 401, ErrorCode::Unauthorized);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_heads_then_logout_closes_with_unauthorized() {
    let server = TestServer::start().await.unwrap();
    let api = remote(&server);
    let mut alice = register(&api, "alice-live").await;
    let mut live = api.live(Some(alice.access()), &alice.space).await.unwrap();
    assert_eq!(next_head(&mut live).await, Ok(0));

    let batch = [alice.change(1), alice.change(1), alice.change(2)];
    api.push(Some(alice.access()), &alice.space, &batch)
        .await
        .unwrap();
    assert_eq!(head_reaching(&mut live, 3).await, 3);

    // The test server pings every second and drops a client after two unanswered pings: a
    // feed waiting in `next_head` answers them, so it is still up 3.5 s later.
    let later = alice.change(3);
    let pusher = {
        let (api, access, space) = (api.clone(), alice.access().to_owned(), alice.space);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(3500)).await;
            api.push(Some(&access), &space, &[later]).await.unwrap();
        })
    };
    assert_eq!(head_reaching(&mut live, 4).await, 4);
    bounded("the delayed push", pusher).await.unwrap();

    api.delete_session(alice.access()).await.unwrap();
    assert_eq!(next_head(&mut live).await, Err(LiveEnded::Unauthorized));
    // An ended feed keeps saying why.
    assert_eq!(next_head(&mut live).await, Err(LiveEnded::Unauthorized));
    assert!(format!("{live:?}").contains("open: false"));
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_upgrade_refusals_and_server_shutdown() {
    let server = TestServer::start().await.unwrap();
    let api = remote(&server);
    let alice = register(&api, "alice-ws").await;
    let bob = register(&api, "bob-ws").await;

    let forged = api
        .live(Some("not.a.token"), &alice.space)
        .await
        .unwrap_err();
    assert_server(&forged, 401, ErrorCode::Unauthorized);
    let anonymous = api.live(None, &alice.space).await.unwrap_err();
    assert_server(&anonymous, 401, ErrorCode::Unauthorized);
    let foreign = api
        .live(Some(bob.access()), &alice.space)
        .await
        .unwrap_err();
    assert_server(&foreign, 404, ErrorCode::NotFound);

    let mut public = api.live(None, &SpaceId::Public).await.unwrap();
    assert_eq!(next_head(&mut public).await, Ok(0));
    api.push(
        None,
        &SpaceId::Public,
        &[public_envelope(&content_key(), b"hello", 1)],
    )
    .await
    .unwrap();
    assert_eq!(head_reaching(&mut public, 1).await, 1);

    // A server going down closes with "going away": reconnect later, no re-login.
    let stopping = tokio::spawn(server.stop());
    assert_eq!(next_head(&mut public).await, Err(LiveEnded::Closed));
    bounded("stop", stopping).await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_client_version_gets_426() {
    let mut server_options = test_options();
    server_options.http.min_client_version = (9, 0, 0);
    let server = spawn_server(Arc::new(MemoryStore::new()), server_options)
        .await
        .unwrap();

    let old = HttpRemote::new(
        &server.url,
        HttpOptions {
            client_version: Some("1.2.3".into()),
            ..options()
        },
    )
    .unwrap();
    let error = old.prelogin("someone").await.unwrap_err();
    assert_server(&error, 426, ErrorCode::ClientTooOld);
    assert!(!error.retryable());
    let error = old.live(None, &SpaceId::Public).await.unwrap_err();
    assert_server(&error, 426, ErrorCode::ClientTooOld);

    let current = HttpRemote::new(
        &server.url,
        HttpOptions {
            client_version: Some("9.0.1".into()),
            ..options()
        },
    )
    .unwrap();
    current.prelogin("someone").await.unwrap();
    // Clients that announce nothing are served (scripts, curl).
    let silent = HttpRemote::new(
        &server.url,
        HttpOptions {
            client_version: None,
            ..options()
        },
    )
    .unwrap();
    silent.prelogin("someone").await.unwrap();
    server.stop().await.unwrap();
}

// ---- Network failure modes, against tiny raw servers on loopback. ----

/// A loopback address where nothing listens (bound, then released).
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

/// Reads an HTTP request head (bounded in size and time).
async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + WAIT;
    while !head.windows(4).any(|window| window == b"\r\n\r\n") && head.len() < 64 * 1024 {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => head.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Answers every connection with `answer` after reading its request head, then closes it; sends
/// each request head it saw to the receiver.
async fn canned_server(answer: String) -> (String, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (heads, seen) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let head = read_head(&mut stream).await;
            let _ = heads.send(head);
            let _ = stream.write_all(answer.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
    });
    (format!("http://{addr}"), seen)
}

/// Accepts connections and never answers (holding them open).
async fn silent_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_down_is_a_retryable_network_error() {
    let api = HttpRemote::new(&format!("http://{}", closed_port().await), options()).unwrap();
    let started = Instant::now();
    let error = bounded("prelogin", api.prelogin("someone"))
        .await
        .unwrap_err();
    assert!(matches!(error, RemoteError::Network { .. }), "{error:?}");
    assert!(error.retryable());
    // Reasons never carry the URL (a link mailbox id in a path is a capability).
    let link = haven_protocol::HexId([0xcd; 16]);
    let error = bounded("take_link", api.take_link(&link))
        .await
        .unwrap_err();
    assert!(matches!(error, RemoteError::Network { .. }), "{error:?}");
    assert!(!error.to_string().contains(&link.to_string()), "{error}");
    let error = bounded("live", api.live(None, &SpaceId::Public))
        .await
        .unwrap_err();
    assert!(matches!(error, RemoteError::Network { .. }), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_a_server_that_does_not_speak_it_is_a_network_error() {
    // Also proves that both TLS stacks (reqwest's and tungstenite's) build their rustls
    // configuration with the crypto provider of this build, instead of panicking.
    // A plain HTTP server that answers at once, without waiting for a request it can read.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = stream
                .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                .await;
            let _ = stream.shutdown().await;
        }
    });
    let https = format!("https://{addr}");
    let api = HttpRemote::new(&https, options()).unwrap();
    let error = bounded("prelogin", api.prelogin("someone"))
        .await
        .unwrap_err();
    assert!(matches!(error, RemoteError::Network { .. }), "{error:?}");
    let error = bounded("live", api.live(None, &SpaceId::Public))
        .await
        .unwrap_err();
    assert!(matches!(error, RemoteError::Network { .. }), "{error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_times_out() {
    let url = silent_server().await;
    let api = HttpRemote::new(
        &url,
        HttpOptions {
            request_timeout: Duration::from_millis(400),
            ..options()
        },
    )
    .unwrap();
    let started = Instant::now();
    let error = bounded("devices", api.devices("token")).await.unwrap_err();
    assert_eq!(error, RemoteError::Timeout);
    assert!(error.retryable());
    let error = bounded("live", api.live(None, &SpaceId::Public))
        .await
        .unwrap_err();
    assert_eq!(error, RemoteError::Timeout);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(700) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_page_is_a_retryable_server_error() {
    let html = "<html><body><h1>502 Bad Gateway</h1></body></html>";
    let (url, _) = canned_server(format!(
        "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{html}",
        html.len()
    ))
    .await;
    let api = HttpRemote::new(&url, options()).unwrap();
    let error = api.prelogin("someone").await.unwrap_err();
    assert_server(&error, 502, ErrorCode::Unavailable);
    assert!(error.retryable());
    // The WebSocket upgrade maps the same way.
    let error = api.live(None, &SpaceId::Public).await.unwrap_err();
    assert_server(&error, 502, ErrorCode::Unavailable);

    let (url, _) = canned_server(
        "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            .into(),
    )
    .await;
    let error = HttpRemote::new(&url, options())
        .unwrap()
        .create_link()
        .await
        .unwrap_err();
    assert_server(&error, 429, ErrorCode::RateLimited);
    assert_eq!(error.retry_after(), Some(7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_not_followed() {
    // Where a followed redirect would go: it must never see a connection.
    let elsewhere = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = elsewhere.local_addr().unwrap();
    let (url, _) = canned_server(format!(
        "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://{target}/v1/devices\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    ))
    .await;
    let api = HttpRemote::new(&url, options()).unwrap();
    let error = api.devices("secret-token").await.unwrap_err();
    assert!(
        matches!(error, RemoteError::Server { status: 307, .. }),
        "{error:?}"
    );
    assert!(error.retryable());
    let accepted = tokio::time::timeout(Duration::from_millis(300), elsewhere.accept()).await;
    assert!(accepted.is_err(), "the redirect was followed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_malformed_answers_are_refused() {
    let small = |url: &str| {
        HttpRemote::new(
            url,
            HttpOptions {
                max_response_bytes: 1024,
                ..options()
            },
        )
        .unwrap()
    };
    // Declared too large: refused before reading.
    let (url, _) = canned_server(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 999999999\r\nConnection: close\r\n\r\n{"
            .into(),
    )
    .await;
    let error = small(&url).prelogin("someone").await.unwrap_err();
    assert!(matches!(error, RemoteError::Decode { .. }), "{error:?}");
    // Undeclared (read to close) and too large: refused once past the cap.
    let big = format!("{{\"kdf\":\"{}\"}}", "x".repeat(4096));
    let (url, _) = canned_server(format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{big}"
    ))
    .await;
    let error = small(&url).prelogin("someone").await.unwrap_err();
    assert!(matches!(error, RemoteError::Decode { .. }), "{error:?}");
    assert!(!error.retryable());
    // A 2xx that is not the DTO: Decode, and the reason does not quote the body.
    let body = r#"{"kdf":"leaky-value"}"#;
    let (url, _) = canned_server(format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ))
    .await;
    let error = small(&url).prelogin("someone").await.unwrap_err();
    assert!(matches!(error, RemoteError::Decode { .. }), "{error:?}");
    assert!(!error.to_string().contains("leaky-value"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_travel_only_in_the_authorization_header() {
    let (url, mut seen) = canned_server(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
    )
    .await;
    let api = HttpRemote::new(&url, options()).unwrap();
    let token = "eyJhbGciOiJFZERTQSJ9.secret-part.signature";
    let space = SpaceId::Private(haven_protocol::HexId([0xab; 16]));
    let at = Bytes([0xfe; 32]);
    let _ = api.devices(token).await;
    let _ = api
        .pull(
            Some(token),
            &space,
            PullCursor {
                after: 5,
                at: Some(at),
                limit: 100,
            },
        )
        .await;
    let _ = api.live(Some(token), &space).await;
    let device = Bytes([0x0f; 16]);
    let _ = api
        .revoke_device(
            token,
            &device,
            &RevokeDeviceRequest {
                auth_secret: Bytes([1; 32]),
                new_auth_secret: Bytes([2; 32]),
                kdf: kdf(),
                key_bundle: bundle(2, 1),
                key_epoch: 1,
            },
        )
        .await;

    let mut heads = Vec::new();
    for _ in 0..4 {
        heads.push(bounded("a request head", seen.recv()).await.unwrap());
    }
    let request_lines: Vec<&str> = heads
        .iter()
        .map(|head| head.lines().next().unwrap())
        .collect();
    assert_eq!(request_lines[0], "GET /v1/devices HTTP/1.1");
    assert_eq!(
        request_lines[1],
        format!(
            "GET /v1/spaces/{space}/changes?after=5&at={}&limit=100 HTTP/1.1",
            "fe".repeat(32)
        )
    );
    assert_eq!(
        request_lines[2],
        format!("GET /v1/spaces/{space}/live HTTP/1.1")
    );
    assert_eq!(
        request_lines[3],
        format!("POST /v1/devices/{}/revoke HTTP/1.1", "0f".repeat(16))
    );
    for head in &heads {
        let lower = head.to_ascii_lowercase();
        assert!(!head.lines().next().unwrap().contains("secret-part"));
        assert!(
            lower.contains(&format!(
                "authorization: bearer {}",
                token.to_ascii_lowercase()
            )),
            "{head}"
        );
        assert!(
            lower.contains(&format!(
                "haven-client-version: {}",
                env!("CARGO_PKG_VERSION")
            )),
            "{head}"
        );
        assert!(lower.contains("user-agent: haven-core/"), "{head}");
        assert!(!lower.contains("cookie"), "{head}");
    }
    assert!(heads[2].to_ascii_lowercase().contains("upgrade: websocket"));
}

// ---- The live feed against a scripted WebSocket peer. ----

/// A WebSocket server on loopback that runs `script` on the first connection. Await the handle
/// to see the script's own assertions.
async fn scripted_ws<F, Fut>(script: F) -> (String, tokio::task::JoinHandle<()>)
where
    F: FnOnce(tokio_tungstenite::WebSocketStream<TcpStream>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let socket = tokio_tungstenite::accept_async(stream).await.unwrap();
        script(socket).await;
    });
    (format!("http://{addr}"), task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_feed_ignores_unknown_messages_and_maps_closes() {
    let (url, peer) = scripted_ws(|mut socket| async move {
        for message in [
            Message::text(r#"{"head":3}"#),
            Message::text(r#"{"hello":"from a later server"}"#),
            Message::text("not json"),
            Message::binary(vec![1, 2, 3]),
            Message::Ping(vec![7].into()),
            Message::text(r#"{"head":5,"extra":true}"#),
            Message::Close(Some(CloseFrame {
                code: CloseCode::from(4001),
                reason: "token expired".into(),
            })),
        ] {
            socket.send(message).await.unwrap();
        }
        // The client answers the close (and the ping before it).
        let mut answered_ping = false;
        while let Some(Ok(message)) = socket.next().await {
            answered_ping |= matches!(message, Message::Pong(ref data) if data.as_ref() == [7]);
        }
        assert!(answered_ping, "the ping was not answered");
    })
    .await;
    let api = HttpRemote::new(&url, options()).unwrap();
    let mut live = api.live(None, &SpaceId::Public).await.unwrap();
    assert_eq!(next_head(&mut live).await, Ok(3));
    assert_eq!(next_head(&mut live).await, Ok(5));
    assert_eq!(next_head(&mut live).await, Err(LiveEnded::Unauthorized));
    bounded("the scripted peer", peer).await.unwrap();

    let (url, peer) = scripted_ws(|mut socket| async move {
        socket.send(Message::text(r#"{"head":1}"#)).await.unwrap();
        socket
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "bye".into(),
            })))
            .await
            .unwrap();
        while let Some(Ok(_)) = socket.next().await {}
    })
    .await;
    let mut live = HttpRemote::new(&url, options())
        .unwrap()
        .live(None, &SpaceId::Public)
        .await
        .unwrap();
    assert_eq!(next_head(&mut live).await, Ok(1));
    assert_eq!(next_head(&mut live).await, Err(LiveEnded::Closed));
    bounded("the scripted peer", peer).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_feed_refuses_big_messages_and_notices_silence() {
    let (url, _peer) = scripted_ws(|mut socket| async move {
        let huge = format!("{{\"head\":1,\"pad\":\"{}\"}}", "x".repeat(64 * 1024));
        let _ = socket.send(Message::text(huge)).await;
        let _ = tokio::time::timeout(WAIT, socket.next()).await;
    })
    .await;
    let mut live = HttpRemote::new(&url, options())
        .unwrap()
        .live(None, &SpaceId::Public)
        .await
        .unwrap();
    let ended = next_head(&mut live).await.unwrap_err();
    assert!(matches!(ended, LiveEnded::Network { .. }), "{ended:?}");

    // A peer that goes quiet (no heads, no pings) is given up after the idle timeout.
    let (url, _peer) = scripted_ws(|mut socket| async move {
        socket.send(Message::text(r#"{"head":2}"#)).await.unwrap();
        tokio::time::sleep(WAIT).await;
        drop(socket);
    })
    .await;
    let mut live = HttpRemote::new(
        &url,
        HttpOptions {
            live_idle_timeout: Duration::from_millis(300),
            ..options()
        },
    )
    .unwrap()
    .live(None, &SpaceId::Public)
    .await
    .unwrap();
    assert_eq!(next_head(&mut live).await, Ok(2));
    let started = Instant::now();
    let ended = next_head(&mut live).await.unwrap_err();
    assert!(matches!(ended, LiveEnded::Network { .. }), "{ended:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}
