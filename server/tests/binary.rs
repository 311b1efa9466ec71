//! End to end over the real `haven-server` binary on loopback: first start publishes the signed
//! sample content (exactly the bundle the client library ships), a client registers, logs in, pushes, pulls and sees a live head, SIGTERM stops
//! the server cleanly, and a restart on the same data directory serves the same log.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::TestUser;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const WAIT: Duration = Duration::from_secs(20);

/// A `haven-server` process we started; killed by PID on drop if still running.
struct ServerProcess {
    child: Child,
    base: String,
    admin: String,
}

impl ServerProcess {
    fn start(data: &std::path::Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_haven-server"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
                "--cache-mb",
                "8",
            ])
            .arg("--data")
            .arg(data)
            .env("HAVEN_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("haven-server starts");
        let stdout = child.stdout.take().expect("stdout");
        let (found, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                for prefix in [
                    "haven-server listening on ",
                    "haven-server admin (metrics) on ",
                ] {
                    if let Some(url) = line.strip_prefix(prefix) {
                        let _ = found.send((prefix, url.to_owned()));
                    }
                }
            }
        });
        let (mut base, mut admin) = (String::new(), String::new());
        while base.is_empty() || admin.is_empty() {
            let (prefix, url) = receiver
                .recv_timeout(WAIT)
                .expect("the server prints its addresses");
            if prefix.contains("admin") {
                admin = url;
            } else {
                base = url;
            }
        }
        Self { child, base, admin }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGTERM, then wait (bounded) for a clean exit.
    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_session_over_the_real_binary() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let http = reqwest::Client::new();

    let (status, health) = json_of(http.get(server.url("/healthz")).send().await.unwrap()).await;
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));

    // Signed sample content, readable with no account.
    let (status, public) = json_of(
        http.get(server.url("/v1/spaces/public/changes"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let changes = public["changes"].as_array().unwrap();
    assert!(
        changes.len() >= 6,
        "articles, resource lists and a manifest: {}",
        changes.len()
    );
    let pinned = haven_server::public_content::dev_public_key().unwrap();
    let envelopes: Vec<haven_protocol::Envelope> = changes
        .iter()
        .map(|change| {
            serde_json::from_value::<haven_protocol::SequencedEnvelope>(change.clone())
                .unwrap()
                .envelope
        })
        .collect();
    // content/ is unchanged since the bundle was built, so the server published exactly the
    // bundle that the client library ships: the same envelopes, in the same order.
    let bundle =
        haven_core::content::PublicBundle::from_bytes(haven_core::content::BUNDLED_PUBLIC_CONTENT)
            .unwrap();
    let ids = |envelopes: &[haven_protocol::Envelope]| -> Vec<_> {
        envelopes.iter().map(|envelope| envelope.id).collect()
    };
    assert_eq!(ids(&envelopes), ids(&bundle.envelopes));
    assert_eq!(envelopes, bundle.envelopes);
    let content = haven_core::content::PublicContent::from_envelopes(envelopes.iter(), &[pinned]);
    assert!(
        content
            .articles
            .iter()
            .any(|article| article.slug == "him-though")
    );
    assert!(
        content
            .resource_lists
            .iter()
            .flat_map(|list| &list.resources)
            .any(|resource| resource.phone.as_deref() == Some("+18006564673") && resource.is_24_7)
    );

    // Register, log in, push, pull.
    let mut user = TestUser::new("newcomer");
    let (status, created) = json_of(
        http.post(server.url("/v1/accounts"))
            .json(&user.registration())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let (status, session) = json_of(
        http.post(server.url("/v1/sessions"))
            .json(&user.login_body())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{session}");
    user.access = session["access_token"].as_str().unwrap().to_owned();
    user.space = session["space_id"].as_str().unwrap().to_owned();

    let mut request = format!(
        "{}/v1/spaces/{}/live",
        server.base.replace("http", "ws"),
        user.space
    )
    .into_client_request()
    .unwrap();
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", user.access).parse().unwrap(),
    );
    let (mut socket, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .unwrap()
        .unwrap();

    let envelope = user.change(common::doc(1));
    let (status, pushed) = json_of(
        http.post(server.url(&user.changes_uri()))
            .bearer_auth(&user.access)
            .json(&json!({"changes": [envelope]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, pushed["acks"][0]["seq"].as_u64()),
        (200, Some(1)),
        "{pushed}"
    );

    let mut seen = 0;
    while seen < 1 {
        match tokio::time::timeout(WAIT, socket.next()).await.unwrap() {
            Some(Ok(Message::Text(text))) => {
                seen = serde_json::from_str::<Value>(&text).unwrap()["head"]
                    .as_u64()
                    .unwrap()
            }
            Some(Ok(_)) => {}
            other => panic!("live socket ended: {other:?}"),
        }
    }

    let (status, pulled) = json_of(
        http.get(server.url(&user.changes_uri()))
            .bearer_auth(&user.access)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(pulled["changes"][0]["seq"], 1);
    drop(socket);

    // Metrics on the admin listener, never on the API one.
    let metrics = http
        .get(format!("{}/metrics", server.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("haven_http_requests_total"), "{metrics}");
    assert!(metrics.contains("haven_envelopes_pushed_total"));
    assert!(
        metrics.contains("haven_master_key_rotation_due 0"),
        "{metrics}"
    );
    assert!(metrics.contains("haven_master_key_generations 1"));
    let (status, _) = json_of(http.get(server.url("/metrics")).send().await.unwrap()).await;
    assert_eq!(status, 404);

    let status = server.terminate();
    assert!(status.success(), "clean exit on SIGTERM: {status}");

    // The key-management command works on the stopped server's store.
    let keys = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_haven-server"))
            .args(["keys"])
            .args(args)
            .arg("--data")
            .arg(dir.path())
            .env("HAVEN_LOG", "warn")
            .output()
            .expect("keys command runs");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    assert_eq!(keys(&["list"]).lines().count(), 1);
    assert!(keys(&["rotate"]).contains("new signing key"));
    let listed = keys(&["list"]);
    assert_eq!(listed.lines().count(), 2);
    assert!(
        listed.contains("Active") && listed.contains("VerifyOnly"),
        "{listed}"
    );
    // The master key rotates on the stopped server's directory: the account's storage key is
    // re-wrapped, generation 1 leaves the file, and the log reads the same after the restart.
    let master_keys = dir.path().join(haven_server::master_key::FILE_NAME);
    let first = haven_server::master_key::read_generations(&master_keys).unwrap();
    assert_eq!(first.keys().copied().collect::<Vec<_>>(), vec![1]);
    let rotated = keys(&["rotate-master"]);
    assert!(
        rotated.contains("generation 2") && rotated.contains("1 storage keys re-wrapped"),
        "{rotated}"
    );
    let second = haven_server::master_key::read_generations(&master_keys).unwrap();
    assert_eq!(second.keys().copied().collect::<Vec<_>>(), vec![2]);
    assert!(
        !std::fs::read(&master_keys)
            .unwrap()
            .windows(32)
            .any(|w| w == first[&1].as_slice())
    );

    // Restart on the same directory: the same log, and the sample content is not published twice.
    let server = ServerProcess::start(dir.path());
    let (_, session) = json_of(
        http.post(server.url("/v1/sessions"))
            .json(&user.login_body())
            .send()
            .await
            .unwrap(),
    )
    .await;
    let access = session["access_token"].as_str().unwrap();
    let (_, pulled_again) = json_of(
        http.get(server.url(&user.changes_uri()))
            .bearer_auth(access)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(pulled_again["changes"], pulled["changes"]);
    let (_, public_again) = json_of(
        http.get(server.url("/v1/spaces/public/changes"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(public_again["head"], public["head"]);
    assert!(server.terminate().success());
}

/// Pushes keep arriving while SIGTERM lands: every push that got an ack is on disk after a
/// restart, at the seq it was acked with, and the log has no gaps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_pushes_and_keeps_every_ack() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let http = reqwest::Client::new();
    let mut user = TestUser::new("steady-writer");
    let (status, _) = json_of(
        http.post(server.url("/v1/accounts"))
            .json(&user.registration())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201);
    let (_, session) = json_of(
        http.post(server.url("/v1/sessions"))
            .json(&user.login_body())
            .send()
            .await
            .unwrap(),
    )
    .await;
    user.access = session["access_token"].as_str().unwrap().to_owned();
    user.space = session["space_id"].as_str().unwrap().to_owned();

    let writer = {
        let (http, url, access) = (
            http.clone(),
            server.url(&user.changes_uri()),
            user.access.clone(),
        );
        let mut user = user.clone();
        tokio::spawn(async move {
            let mut acked = Vec::new();
            for round in 0..10_000u32 {
                let batch: Vec<_> = (0..5)
                    .map(|_| user.change(common::doc((round % 7) as u8)))
                    .collect();
                let Ok(response) = http
                    .post(&url)
                    .bearer_auth(&access)
                    .json(&json!({"changes": batch}))
                    .send()
                    .await
                else {
                    break;
                };
                let Ok(body) = response.json::<Value>().await else {
                    break;
                };
                for (ack, envelope) in body["acks"].as_array().into_iter().flatten().zip(&batch) {
                    acked.push((ack["seq"].as_u64().unwrap(), envelope.id));
                }
            }
            acked
        })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(server.terminate().success());
    let acked = tokio::time::timeout(WAIT, writer).await.unwrap().unwrap();
    assert!(
        !acked.is_empty(),
        "some pushes were acked before the signal"
    );

    let server = ServerProcess::start(dir.path());
    let (_, session) = json_of(
        http.post(server.url("/v1/sessions"))
            .json(&user.login_body())
            .send()
            .await
            .unwrap(),
    )
    .await;
    let access = session["access_token"].as_str().unwrap().to_owned();
    let mut stored = std::collections::HashMap::new();
    let mut after = 0;
    loop {
        let (status, page) = json_of(
            http.get(server.url(&format!("{}?after={after}&limit=1000", user.changes_uri())))
                .bearer_auth(&access)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 200);
        for change in page["changes"].as_array().unwrap() {
            stored.insert(
                change["seq"].as_u64().unwrap(),
                change["id"].as_str().unwrap().to_owned(),
            );
        }
        after = page["next"].as_u64().unwrap();
        if page["caught_up"] == json!(true) {
            break;
        }
    }
    let head = stored.keys().max().copied().unwrap_or(0);
    assert_eq!(
        stored.len() as u64,
        head,
        "gap-free log: {} envelopes up to seq {head}",
        stored.len()
    );
    for (seq, id) in &acked {
        assert_eq!(
            stored.get(seq),
            Some(&id.to_base64()),
            "acked seq {seq} must hold the acked envelope"
        );
    }
    assert!(server.terminate().success());
}

/// The README's API tour (curl + python3) runs against the real binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_api_tour_runs() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let tour = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/api-tour");
    // `timeout` bounds the run; the tour talks to our server only.
    let output = Command::new("timeout")
        .args(["60", "bash", tour])
        .env("HAVEN_SERVER", &server.base)
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("signed: True"), "{stdout}");
    assert!(stdout.contains("\"seq\":1"), "{stdout}");
    assert!(stdout.contains("{\"head\":1}"), "{stdout}");
    assert!(server.terminate().success());
}
