//! Crash durability (issue 5, part 2): several clients push to the real `haven-server` binary
//! while it is killed with SIGKILL at random moments and restarted on the same data directory.
//! Every envelope that was acked must be there after every restart, at the seq it was acked with,
//! and the log must have no gaps. Clients keep unacked envelopes and resend them (same bytes), as
//! an outbox does: they must get one seq each, never two.
//!
//! `HAVEN_TEST_PROFILE=long` runs 100 kill cycles instead of 20.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{TestUser, doc};
use haven_protocol::Envelope;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

struct Server {
    child: Child,
    base: String,
}

impl Server {
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
            .args([
                "--auth-attempts-per-address",
                "100000",
                "--login-attempts-per-account",
                "100000",
            ])
            .arg("--data")
            .arg(data)
            .env("HAVEN_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("haven-server starts");
        let stdout = child.stdout.take().unwrap();
        let (found, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("haven-server listening on ") {
                    let _ = found.send(url.to_owned());
                }
            }
        });
        let base = receiver
            .recv_timeout(WAIT)
            .expect("the server prints its address");
        Self { child, base }
    }

    /// SIGKILL: no shutdown, no final flush.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client with an outbox: envelopes leave it only when acked.
struct Pusher {
    user: TestUser,
    outbox: Vec<Envelope>,
    acked: BTreeMap<u64, String>,
}

async fn login(http: &reqwest::Client, base: &str, user: &mut TestUser) {
    let response = http
        .post(format!("{base}/v1/sessions"))
        .json(&user.login_body())
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    user.access = body["access_token"].as_str().unwrap().to_owned();
    user.space = body["space_id"].as_str().unwrap().to_owned();
}

/// Pushes until the server stops answering: resends the outbox first, then new envelopes.
async fn push_until_down(
    http: reqwest::Client,
    base: String,
    pusher: Arc<Mutex<Pusher>>,
    lane: u8,
) {
    loop {
        let (uri, token, batch) = {
            let mut p = pusher.lock().unwrap();
            while p.outbox.len() < 5 {
                let envelope = p.user.change(doc(lane));
                p.outbox.push(envelope);
            }
            (
                format!("{base}{}", p.user.changes_uri()),
                p.user.access.clone(),
                p.outbox[..5].to_vec(),
            )
        };
        let Ok(response) = http
            .post(&uri)
            .bearer_auth(&token)
            .json(&json!({"changes": batch}))
            .send()
            .await
        else {
            return;
        };
        let Ok(body) = response.json::<Value>().await else {
            return;
        };
        let mut p = pusher.lock().unwrap();
        for ack in body["acks"].as_array().into_iter().flatten() {
            let (seq, id) = (
                ack["seq"].as_u64().unwrap(),
                ack["id"].as_str().unwrap().to_owned(),
            );
            if let Some(previous) = p.acked.insert(seq, id.clone()) {
                assert_eq!(previous, id, "seq {seq} acked for two different envelopes");
            }
            p.outbox.retain(|envelope| envelope.id.to_base64() != id);
        }
        assert!(
            body["errors"].as_array().is_some_and(Vec::is_empty),
            "{body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acked_envelope_survives_sigkill() {
    let cycles = if std::env::var("HAVEN_TEST_PROFILE").as_deref() == Ok("long") {
        100
    } else {
        20
    };
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut user = TestUser::new("crash-user");
    {
        let server = Server::start(dir.path());
        let response = http
            .post(format!("{}/v1/accounts", server.base))
            .json(&user.registration())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 201);
        server.kill();
    }
    // Three devices of one account push into one space.
    let pushers: Vec<Arc<Mutex<Pusher>>> = (0..3)
        .map(|_| {
            let mut device = user.clone();
            device.device = haven_protocol::Bytes(haven_server::clock::random_bytes());
            Arc::new(Mutex::new(Pusher {
                user: device,
                outbox: Vec::new(),
                acked: BTreeMap::new(),
            }))
        })
        .collect();
    let mut seed = 0x5eed_u64;
    for cycle in 0..cycles {
        let server = Server::start(dir.path());
        for pusher in &pushers {
            let mut p = pusher.lock().unwrap().user.clone();
            login(&http, &server.base, &mut p).await;
            let mut guard = pusher.lock().unwrap();
            guard.user.access = p.access;
            guard.user.space = p.space.clone();
            user.space = p.space;
        }
        let tasks: Vec<_> = pushers
            .iter()
            .enumerate()
            .map(|(lane, pusher)| {
                tokio::spawn(push_until_down(
                    http.clone(),
                    server.base.clone(),
                    Arc::clone(pusher),
                    lane as u8,
                ))
            })
            .collect();
        // A deterministic "random" moment between 30 and 330 ms.
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        tokio::time::sleep(Duration::from_millis(30 + (seed >> 33) % 300)).await;
        server.kill();
        for task in tasks {
            tokio::time::timeout(WAIT, task)
                .await
                .expect("pushers notice the kill")
                .unwrap();
        }
        println!(
            "cycle {cycle}: {} acked so far",
            pushers
                .iter()
                .map(|p| p.lock().unwrap().acked.len())
                .sum::<usize>()
        );
    }

    // After the last kill: every ack is there, at its seq, and the log has no gaps.
    let server = Server::start(dir.path());
    login(&http, &server.base, &mut user).await;
    let mut log = BTreeMap::new();
    let mut after = 0;
    for _ in 0..10_000 {
        let page: Value = http
            .get(format!(
                "{}{}?after={after}&limit=1000",
                server.base,
                user.changes_uri()
            ))
            .bearer_auth(&user.access)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for change in page["changes"].as_array().unwrap() {
            log.insert(
                change["seq"].as_u64().unwrap(),
                change["id"].as_str().unwrap().to_owned(),
            );
        }
        after = page["next"].as_u64().unwrap();
        if page["caught_up"] == json!(true) {
            break;
        }
    }
    let head = log.keys().max().copied().unwrap_or(0);
    assert_eq!(
        log.len() as u64,
        head,
        "the log has gaps: {} envelopes up to seq {head}",
        log.len()
    );
    let mut acked = 0;
    for pusher in &pushers {
        for (seq, id) in &pusher.lock().unwrap().acked {
            assert_eq!(
                log.get(seq),
                Some(id),
                "acked seq {seq} lost or changed after SIGKILL"
            );
            acked += 1;
        }
    }
    assert!(acked > 0);
    println!("{cycles} kill cycles, {acked} acked envelopes, all present; head {head}");
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Starts the server on `dir`, or reports that it refused to start.
fn try_start(dir: &std::path::Path) -> Option<Server> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_haven-server"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--cache-mb",
            "8",
            "--no-sample-content",
        ])
        .arg("--data")
        .arg(dir)
        .env("HAVEN_LOG", "off")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (found, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("haven-server listening on ") {
                let _ = found.send(url.to_owned());
            }
        }
    });
    match receiver.recv_timeout(WAIT) {
        Ok(base) => Some(Server { child, base }),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            None
        }
    }
}

/// Flipped bytes in the store's files: the server either refuses to start, or answers errors,
/// or serves exactly what was stored — never other bytes as if they were the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_data_directory_never_serves_wrong_data() {
    let good = tempfile::tempdir().unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut user = TestUser::new("corrupt-user");
    let expected = {
        let server = Server::start(good.path());
        http.post(format!("{}/v1/accounts", server.base))
            .json(&user.registration())
            .send()
            .await
            .unwrap();
        login(&http, &server.base, &mut user).await;
        let batch: Vec<Envelope> = (0..40).map(|i| user.change(doc(i % 4))).collect();
        let pushed: Value = http
            .post(format!("{}{}", server.base, user.changes_uri()))
            .bearer_auth(&user.access)
            .json(&json!({"changes": batch}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(pushed["acks"].as_array().unwrap().len(), 40);
        let page: Value = http
            .get(format!("{}{}?limit=1000", server.base, user.changes_uri()))
            .bearer_auth(&user.access)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        server.kill();
        page["changes"].clone()
    };
    let db_file = good.path().join("db");
    let size = std::fs::metadata(&db_file).unwrap().len();
    let (mut refused, mut errors, mut intact) = (0, 0, 0);
    let mut seed = 0xc0ffee_u64;
    for _ in 0..16 {
        let trial = tempfile::tempdir().unwrap();
        copy_dir(good.path(), trial.path());
        let mut bytes = std::fs::read(trial.path().join("db")).unwrap();
        for _ in 0..2 {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let at = usize::try_from((seed >> 17) % size).unwrap();
            bytes[at] ^= 0x5a;
        }
        std::fs::write(trial.path().join("db"), &bytes).unwrap();
        let Some(server) = try_start(trial.path()) else {
            refused += 1;
            continue;
        };
        let mut trial_user = user.clone();
        let session = http
            .post(format!("{}/v1/sessions", server.base))
            .json(&trial_user.login_body())
            .send()
            .await;
        let Ok(session) = session else {
            errors += 1;
            continue;
        };
        let Ok(session) = session.json::<Value>().await else {
            errors += 1;
            continue;
        };
        let Some(access) = session["access_token"].as_str() else {
            errors += 1;
            continue;
        };
        trial_user.access = access.to_owned();
        let answer = http
            .get(format!(
                "{}{}?limit=1000",
                server.base,
                trial_user.changes_uri()
            ))
            .bearer_auth(&trial_user.access)
            .send()
            .await;
        match answer {
            Ok(response) if response.status().is_success() => {
                let page: Value = response.json().await.unwrap();
                // Whatever is served must be exactly what was stored.
                for change in page["changes"].as_array().unwrap() {
                    assert!(
                        expected.as_array().unwrap().contains(change),
                        "served a changed envelope: {change}"
                    );
                }
                intact += 1;
            }
            _ => errors += 1,
        }
        server.kill();
    }
    println!(
        "corrupted copies: {refused} refused to start, {errors} answered errors, {intact} served only stored data"
    );
}
