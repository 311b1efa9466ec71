//! The server's logs never carry usernames, tokens, secrets or bodies (issue 5, part 4: canaries),
//! even at debug level.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{TestUser, doc};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_logs_hold_no_secrets_names_or_bodies() {
    let dir = tempfile::tempdir().unwrap();
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
        .arg(dir.path())
        .env("HAVEN_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let logs = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let (found, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("haven-server listening on ") {
                let _ = found.send(url.to_owned());
            }
        }
    });
    let base = receiver.recv_timeout(Duration::from_secs(20)).unwrap();
    let http = reqwest::Client::new();

    let mut user = TestUser::new("canary-name-5d1f");
    http.post(format!("{base}/v1/accounts"))
        .json(&user.registration())
        .send()
        .await
        .unwrap();
    let session: Value = http
        .post(format!("{base}/v1/sessions"))
        .json(&user.login_body())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    user.access = session["access_token"].as_str().unwrap().to_owned();
    user.refresh = session["refresh_token"].as_str().unwrap().to_owned();
    user.space = session["space_id"].as_str().unwrap().to_owned();
    let envelope = user.change(doc(1));
    http.post(format!("{base}{}", user.changes_uri()))
        .bearer_auth(&user.access)
        .json(&json!({"changes": [envelope]}))
        .send()
        .await
        .unwrap();
    http.get(format!("{base}{}", user.changes_uri()))
        .bearer_auth(&user.access)
        .send()
        .await
        .unwrap();
    let refreshed: Value = http
        .post(format!("{base}/v1/sessions/refresh"))
        .json(&json!({"refresh_token": user.refresh}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Failures log too: a wrong password, a forged token, a reused refresh token.
    let mut wrong = user.login_body();
    wrong["auth_secret"] = json!(haven_protocol::Bytes([3u8; 32]));
    http.post(format!("{base}/v1/sessions"))
        .json(&wrong)
        .send()
        .await
        .unwrap();
    http.get(format!("{base}{}", user.changes_uri()))
        .bearer_auth("forged.token.here")
        .send()
        .await
        .unwrap();
    http.post(format!("{base}/v1/sessions/refresh"))
        .json(&json!({"refresh_token": user.refresh}))
        .send()
        .await
        .unwrap();

    child.kill().unwrap();
    child.wait().unwrap();
    let text = logs.join().unwrap();
    assert!(!text.is_empty(), "debug logging produced nothing to check");
    let canaries = [
        user.username.clone(),
        user.access.clone(),
        user.refresh.clone(),
        refreshed["refresh_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        user.auth_secret.to_base64(),
        user.recovery_auth.to_base64(),
        envelope
            .body
            .0
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
        haven_protocol::Bytes::<16>(envelope.body.0[..16].try_into().unwrap()).to_base64(),
    ];
    // Client addresses: every client here is 127.0.0.1, as is the server's own listener, which
    // the start-up lines name (that address is configuration, not a person's).
    for line in text.lines().filter(|line| line.contains("127.0.0.1")) {
        assert!(
            line.contains("serving") || line.contains("listening"),
            "a client address is logged: {line}"
        );
    }
    for canary in canaries {
        assert!(!canary.is_empty());
        assert!(!text.contains(&canary), "the logs contain {canary:?}");
    }
}
