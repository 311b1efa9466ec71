//! `haven` as a device: the built binary run as a child process against the real server
//! in-process on loopback (sled on disk, trusting the bundled development content key and
//! publishing the sample content, like a development deployment).
//!
//! The binary is built with the test-only cheap KDF (this package's dev-dependency features),
//! so registrations and logins are fast.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use automerge::ReadDoc as _;
use haven_server::store::Store;
use haven_server::store::sled_kv::SledStore;
use haven_tests::{TestServer, spawn_server, test_options};
use serde_json::Value;
use tempfile::TempDir;

const PASSWORD: &str = "correct horse battery staple";
const CANARY: &str = "CANARY-cli-journal-7731";

/// The real server on a runtime of its own, so the test body can run child processes.
struct Server {
    runtime: tokio::runtime::Runtime,
    server: Option<TestServer>,
    dir: TempDir,
    url: String,
}

impl Server {
    fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let server = runtime.block_on(async {
            let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path(), 8 << 20).unwrap());
            let mut options = test_options();
            // The development key (whose content is bundled and published first) and the tests'
            // key (for `content publish`).
            options
                .content_keys
                .push(haven_core::content::bundled_dev_content_key());
            let server = spawn_server(store, options).await.unwrap();
            haven_server::public_content::publish_sample_if_empty(&server.state, None)
                .await
                .unwrap();
            server
        });
        let url = server.url.clone();
        Self {
            runtime,
            server: Some(server),
            dir,
            url,
        }
    }

    /// Stops the server (its store flushed and closed) and returns its data directory.
    fn stop(mut self) -> TempDir {
        if let Some(server) = self.server.take() {
            self.runtime.block_on(server.stop()).unwrap();
        }
        self.dir
    }
}

/// One profile directory, driven through the binary.
struct Device {
    home: TempDir,
    profile: PathBuf,
    server: String,
}

impl Device {
    fn new(server: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self {
            profile: dir.path().join("profile"),
            home: dir,
            server: server.to_owned(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_haven"));
        command
            .args(args)
            .env("HAVEN_PROFILE", &self.profile)
            .env("HAVEN_SERVER", &self.server)
            .env_remove("HAVEN_PASSWORD")
            .env_remove("HAVEN_NEW_PASSWORD")
            .env_remove("HAVEN_RECOVERY_PHRASE")
            .env_remove("HAVEN_BACKUP_PASSPHRASE")
            .env_remove("RUST_BACKTRACE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn run_with_password(&self, args: &[&str], password: &str) -> Output {
        self.command(args)
            .env("HAVEN_PASSWORD", password)
            .output()
            .unwrap()
    }

    /// Runs with these environment variables set (passwords, the recovery phrase).
    fn run_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = self.command(args);
        for (name, value) in env {
            command.env(name, value);
        }
        command.output().unwrap()
    }

    fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = self.command(args).stdin(Stdio::piped()).spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// Runs a command that must succeed; returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert_success(&output, args);
        stdout(&output)
    }

    fn json(&self, args: &[&str]) -> Value {
        let text = self.ok(args);
        serde_json::from_str(&text).unwrap_or_else(|error| panic!("{args:?}: {error}: {text}"))
    }

    /// Registers `username`, answering the recovery check from the phrase it printed (`wrong`:
    /// with wrong words). Returns the output.
    fn register(&self, username: &str, wrong: bool) -> Output {
        self.register_with(username, wrong, false)
    }

    /// [`Device::register`], the password from the first line of stdin with `password_stdin`.
    fn register_with(&self, username: &str, wrong: bool, password_stdin: bool) -> Output {
        let mut command = self.command(&["account", "register", "--username", username]);
        command.stdin(Stdio::piped());
        if password_stdin {
            command.arg("--password-stdin");
        } else {
            command.env("HAVEN_PASSWORD", PASSWORD);
        }
        let mut child = command.spawn().unwrap();
        if password_stdin {
            writeln!(child.stdin.as_mut().unwrap(), "{PASSWORD}").unwrap();
        }
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut words: Vec<String> = Vec::new();
        let mut transcript = String::new();
        let positions: Vec<usize> = loop {
            let Some(line) = lines.next() else {
                let output = child.wait_with_output().unwrap();
                panic!(
                    "no recovery check; stdout: {transcript} stderr: {}",
                    stderr(&output)
                );
            };
            let line = line.unwrap();
            transcript.push_str(&line);
            transcript.push('\n');
            if let Some(rest) = line.strip_prefix("Recovery check: type words ") {
                break rest
                    .split(|c: char| !c.is_ascii_digit())
                    .filter(|n| !n.is_empty())
                    .map(|n| n.parse().unwrap())
                    .collect();
            }
            let tokens: Vec<&str> = line.split_whitespace().collect();
            for pair in tokens.windows(2) {
                if let Some(number) = pair[0].strip_suffix('.')
                    && let Ok(number) = number.parse::<usize>()
                {
                    assert_eq!(number, words.len() + 1, "words in order: {line}");
                    words.push(pair[1].to_owned());
                }
            }
        };
        assert_eq!(words.len(), 24, "{transcript}");
        assert_eq!(positions.len(), 3, "{transcript}");
        let mut stdin = child.stdin.take().unwrap();
        for position in positions {
            let word = if wrong {
                "zoo"
            } else {
                words[position - 1].as_str()
            };
            writeln!(stdin, "{word}").unwrap();
        }
        drop(stdin);
        let rest: Vec<String> = lines.map(Result::unwrap).collect();
        let mut output = child.wait_with_output().unwrap();
        output.stdout = format!("{transcript}{}", rest.join("\n")).into_bytes();
        output
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

fn assert_success(output: &Output, what: &[&str]) {
    assert!(
        output.status.success(),
        "{what:?}: exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        stdout(output),
        stderr(output)
    );
}

/// A clean failure: exit 1, one `haven: ` line on stderr naming the problem, no panic.
fn assert_one_line_error(output: &Output, expected: &str) {
    let stderr = stderr(output);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.starts_with("haven: "), "{stderr:?}");
    assert!(stderr.contains(expected), "{stderr:?} lacks {expected:?}");
    assert!(!stderr.contains("panicked") && !stderr.contains("internal error"));
}

/// No file under `dir` holds `canary`; at least one file was scanned.
fn assert_no_canary(dir: &Path) {
    let mut stack = vec![dir.to_path_buf()];
    let mut bytes_scanned = 0;
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            stack.extend(
                std::fs::read_dir(&path)
                    .unwrap()
                    .map(|entry| entry.unwrap().path()),
            );
        } else {
            let bytes = std::fs::read(&path).unwrap();
            bytes_scanned += bytes.len();
            assert!(
                !bytes
                    .windows(CANARY.len())
                    .any(|window| window == CANARY.as_bytes()),
                "journal text found in {}",
                path.display()
            );
        }
    }
    assert!(bytes_scanned > 0, "nothing scanned in {}", dir.display());
}

fn entry_ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The acceptance flow, end to end, plus export, history, status and wipe.
#[test]
fn two_profiles_write_offline_sync_and_merge() {
    let server = Server::start();
    let a = Device::new(&server.url);
    let b = Device::new(&server.url);

    // Register on A, answering the recovery check from stdin.
    let registered = a.register("river-stone", false);
    assert_success(&registered, &["account", "register"]);
    assert!(stdout(&registered).contains("shown this once"));
    assert!(stdout(&registered).contains("Registered river-stone"));

    // Two entries, offline; the body from a file and from stdin, not argv.
    let body_file = a.home.path().join("body.txt");
    std::fs::write(&body_file, format!("I could not sleep. {CANARY}")).unwrap();
    let first = a
        .ok(&[
            "journal",
            "add",
            "--title",
            "First night",
            "--body-file",
            body_file.to_str().unwrap(),
        ])
        .trim()
        .to_owned();
    assert_eq!(first.len(), 32, "the new id alone: {first:?}");
    let output = a.run_with_stdin(
        &["journal", "add", "--title", "Tuesday", "--body", "-"],
        "Talked to Sam.",
    );
    assert_success(&output, &["journal", "add"]);
    let second = stdout(&output).trim().to_owned();
    let pending = a.json(&["status", "--offline", "--json"]);
    assert_eq!(pending["state"], "pending");
    assert!(pending["pending"].as_u64().unwrap() >= 2);
    // The list shows titles, never bodies.
    let listed = a.ok(&["journal", "list"]);
    assert!(listed.contains("First night") && !listed.contains(CANARY));

    let synced = a.json(&["sync", "--json"]);
    assert!(synced["pushed"].as_u64().unwrap() >= 2, "{synced}");
    assert_eq!(synced["status"]["state"], "synced");

    // B logs in, syncs and sees both entries.
    let output = b.run_with_password(&["account", "login", "--username", "river-stone"], PASSWORD);
    assert_success(&output, &["account", "login"]);
    let line = b.ok(&["sync"]);
    assert!(line.starts_with("pushed="), "{line}");
    let mut ids = entry_ids(&b.json(&["journal", "list", "--json"]));
    ids.sort();
    let mut expected = vec![first.clone(), second];
    expected.sort();
    assert_eq!(ids, expected);

    // Both edit the first entry offline: A appends, B retitles (by a unique prefix).
    a.ok(&["journal", "edit", &first, "--append", " Then I wrote this."]);
    b.ok(&[
        "journal",
        "edit",
        &first[..8],
        "--title",
        "First night, again",
    ]);
    a.ok(&["sync"]);
    b.ok(&["sync"]);
    a.ok(&["sync"]);
    let on_a = a.json(&["journal", "show", &first, "--json"]);
    let on_b = b.json(&["journal", "show", &first[..10], "--json"]);
    assert_eq!(on_a, on_b);
    assert_eq!(on_a["title"], "First night, again");
    assert_eq!(
        on_a["body"],
        format!("I could not sleep. {CANARY} Then I wrote this.")
    );
    let shown = b.ok(&["journal", "show", &first]);
    assert!(shown.starts_with("First night, again\n") && shown.contains(CANARY));

    // Status is honest and parses.
    for device in [&a, &b] {
        let status = device.json(&["status", "--json"]);
        assert_eq!(status["state"], "synced", "{status}");
        assert_eq!(status["pending"], 0);
        assert_eq!(status["account"], "river-stone");
        assert!(status["last_confirmed_seq"].as_u64().unwrap() > 0);
        assert_eq!(status["last_confirmed_seq"], status["server_head"]);
        assert_eq!(status["last_error"], Value::Null);
    }

    // History: edits from both devices.
    let history = b.json(&["journal", "history", &first, "--json"]);
    let history = history.as_array().unwrap();
    assert!(history.len() >= 3, "{history:?}");
    assert!(history.iter().any(|change| change["this_device"] == true));
    assert!(history.iter().any(|change| change["this_device"] == false));

    // Export in the three formats, each after the plaintext warning.
    let exports = tempfile::tempdir().unwrap();
    for format in ["markdown", "json", "automerge"] {
        let out = exports.path().join(format);
        let output = b.run(&[
            "journal",
            "export",
            "--format",
            format,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_success(&output, &["journal", "export", format]);
        assert!(stderr(&output).contains(haven_core::client::export::PLAINTEXT_WARNING));
    }
    let markdown: Vec<PathBuf> = files(&exports.path().join("markdown"));
    assert_eq!(markdown.len(), 2);
    assert!(markdown.iter().any(|path| {
        std::fs::read_to_string(path)
            .unwrap()
            .contains("Then I wrote this.")
    }));
    let json: Value = serde_json::from_slice(
        &std::fs::read(exports.path().join("json").join("journal.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2);
    let automerge_file = exports
        .path()
        .join("automerge")
        .join(format!("{first}.automerge"));
    let doc = automerge::AutoCommit::load(&std::fs::read(automerge_file).unwrap()).unwrap();
    let (_, body) = doc.get(automerge::ROOT, "body").unwrap().unwrap();
    assert!(doc.text(&body).unwrap().contains(CANARY));
    assert_eq!(files(&exports.path().join("automerge")).len(), 2);

    // A profile with no account syncs the public space anonymously.
    let anonymous = Device::new(&server.url);
    let output = anonymous.run(&["sync"]);
    assert_success(&output, &["sync"]);
    assert!(stderr(&output).contains("public content only"));

    // Panic wipe: nothing of the profile is left.
    let output = a.run(&["--server", &server.url, "wipe"]);
    assert_success(&output, &["wipe"]);
    assert!(!a.profile.exists() || std::fs::read_dir(&a.profile).unwrap().next().is_none());

    // Neither the server's files nor B's profile hold the journal text.
    assert_no_canary(&b.profile);
    let data = server.stop();
    assert_no_canary(data.path());
}

fn files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect()
}

/// No account, no network: the bundled articles and hotlines are all there.
#[test]
fn a_fresh_profile_with_no_network_reads_articles_and_hotlines() {
    let device = Device::new("http://127.0.0.1:9");
    let articles = device.ok(&["articles", "list"]);
    assert!(articles.contains("consent-basics"), "{articles}");
    let json = device.json(&["articles", "list", "--json"]);
    assert!(json.as_array().unwrap().len() >= 3);
    assert!(json[0]["content_warnings"].is_array());

    let resources = device.ok(&["resources", "list", "--region", "US"]);
    let lines: Vec<&str> = resources.lines().collect();
    let at = lines
        .iter()
        .position(|line| line.contains("(RAINN)"))
        .expect("RAINN is listed");
    assert!(lines[at].ends_with("[24/7]"), "{}", lines[at]);
    assert_eq!(lines[at + 1].trim(), "phone: +18006564673");
    let lists = device.json(&["resources", "list", "--region", "us", "--json"]);
    let rainn = lists
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|list| list["resources"].as_array().unwrap())
        .find(|resource| resource["phone"] == "+18006564673")
        .expect("RAINN in JSON");
    assert_eq!(rainn["is_24_7"], true);

    // Content warnings come first.
    let article = device.ok(&["articles", "show", "consent-basics"]);
    assert!(article.starts_with("CONTENT WARNING: "), "{article}");

    // What needs the network or an account fails in one line.
    assert_one_line_error(&device.run(&["sync"]), "network");
    assert_one_line_error(
        &device.run(&["journal", "add", "--title", "x", "--body", "y"]),
        "no account",
    );
    assert_one_line_error(
        &device.run(&["articles", "show", "no-such-article"]),
        "no article",
    );
    // A usage error is one line too (exit status 2, as usual for usage errors).
    let usage = device.run(&["account", "login"]);
    assert_eq!(usage.status.code(), Some(2));
    assert_eq!(stderr(&usage).lines().count(), 1, "{}", stderr(&usage));
    assert!(stderr(&usage).starts_with("haven: ") && stderr(&usage).contains("--username"));

    // A server that accepts connections and never answers: the deadline ends it.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let started = std::time::Instant::now();
    assert_one_line_error(
        &device.run(&["--server", &url, "--timeout", "1", "sync"]),
        "timed out after 1 s",
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let status = device.json(&["status", "--json"]);
    assert_eq!(status["state"], "logged_out");
    assert!(status["last_error"].as_str().unwrap().contains("network"));
}

/// Wrong password, wrong recovery words, unknown ids, missing password: one line each.
#[test]
fn errors_are_one_line_and_name_the_problem() {
    let server = Server::start();
    let a = Device::new(&server.url);

    // Wrong words: nothing is sent; the account does not exist afterwards. (The password comes
    // from stdin here, before the words.)
    let output = a.register_with("wrong-words", true, true);
    assert_one_line_error(&output, "nothing was sent");
    let other = Device::new(&server.url);
    assert_one_line_error(
        &other.run_with_password(&["account", "login", "--username", "wrong-words"], PASSWORD),
        "wrong username or password",
    );

    assert_success(
        &a.register_with("typo-prone", false, true),
        &["account", "register", "--password-stdin"],
    );
    assert_one_line_error(
        &other.run_with_password(
            &["account", "login", "--username", "typo-prone"],
            "not the password at all",
        ),
        "wrong username or password",
    );
    // A password from stdin works.
    let output = other.run_with_stdin(
        &[
            "account",
            "login",
            "--username",
            "typo-prone",
            "--password-stdin",
        ],
        &format!("{PASSWORD}\n"),
    );
    assert_success(&output, &["account", "login", "--password-stdin"]);
    // No password anywhere (and no terminal to ask on).
    assert_one_line_error(
        &Device::new(&server.url).run(&["account", "login", "--username", "typo-prone"]),
        "HAVEN_PASSWORD",
    );

    assert_one_line_error(
        &a.run(&["journal", "show", "0123456789abcdef0123456789abcdef"]),
        "no journal entry",
    );
    assert_one_line_error(&a.run(&["journal", "show", "abc"]), "at least 6");
    assert_one_line_error(
        &a.run(&["journal", "delete", "not-an-id"]),
        "not an entry id",
    );
    assert_one_line_error(
        &a.run(&["journal", "edit", "0123456789"]),
        "nothing to change",
    );
    assert_one_line_error(&a.run(&["account", "delete"]), "add --yes");

    // Deleting the account needs the password again; the device keeps its copy.
    let id = a.ok(&["journal", "add", "--title", "kept", "--body", "here"]);
    assert_one_line_error(
        &a.run_with_password(&["account", "delete", "--yes"], "not the password at all"),
        "wrong username or password",
    );
    let output = a.run_with_password(&["account", "delete", "--yes"], PASSWORD);
    assert_success(&output, &["account", "delete"]);
    assert!(a.ok(&["journal", "show", id.trim()]).contains("here"));
    assert_one_line_error(&a.run(&["sync"]), "erased");
    drop(server);
}

/// `sync --watch` holds the profile (a second process gets "profile in use"), prints a line per
/// round, picks up another device's push live and stops cleanly on SIGTERM; a wipe goes through
/// even while another process has the profile open.
#[test]
fn live_sync_holds_the_profile_and_a_wipe_still_goes_through() {
    let server = Server::start();
    let a = Device::new(&server.url);
    let b = Device::new(&server.url);
    assert_success(&a.register("live-user", false), &["account", "register"]);
    assert_success(
        &b.run_with_password(&["account", "login", "--username", "live-user"], PASSWORD),
        &["account", "login"],
    );

    let (mut watcher, lines) = watch(&a);
    let first = next_line(&lines);
    assert!(first.contains("pushed="), "{first}");

    assert_one_line_error(&a.run(&["journal", "list"]), "profile in use");

    b.ok(&["journal", "add", "--title", "from b", "--body", "hello"]);
    b.ok(&["sync"]);
    let pulled = loop {
        let line = next_line(&lines);
        if !line.contains("pulled=0") {
            break line;
        }
    };
    assert!(pulled.contains("pulled="), "{pulled}");

    terminate(&watcher);
    let status = watcher.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let titles = a.ok(&["journal", "list"]);
    assert!(titles.contains("from b"), "{titles}");

    // The panic wipe does not wait for the process that holds the profile.
    let (mut holder, lines) = watch(&a);
    next_line(&lines);
    let output = a.run(&["wipe"]);
    assert_success(&output, &["wipe"]);
    assert!(!a.profile.exists(), "the profile directory is gone");
    terminate(&holder);
    let _ = holder.wait();
    let leftover = std::fs::read_dir(&a.profile).map_or(0, Iterator::count);
    assert_eq!(leftover, 0);
    drop(server);
}

/// Starts `haven sync --watch` with a thread forwarding its stdout lines.
fn watch(device: &Device) -> (Child, mpsc::Receiver<String>) {
    let mut child = device.command(&["sync", "--watch"]).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if send.send(line).is_err() {
                break;
            }
        }
    });
    (child, receive)
}

fn next_line(lines: &mpsc::Receiver<String>) -> String {
    lines
        .recv_timeout(Duration::from_secs(20))
        .expect("a line from the watcher in time")
}

fn terminate(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// `content publish` pushes a content directory once; the second time there is nothing to push.
#[test]
fn content_publish_twice_pushes_nothing_the_second_time() {
    let server = Server::start();
    let publisher = Device::new(&server.url);
    let key_file = publisher.home.path().join("content-key.json");
    // The key the test server trusts (besides the development key).
    haven_core::content::ContentKey::from_secret_bytes(&haven_tests::content_key().to_bytes())
        .save(&key_file)
        .unwrap();
    let content = Path::new(env!("CARGO_MANIFEST_DIR")).join("../content");
    let args = [
        "content",
        "publish",
        "--key",
        key_file.to_str().unwrap(),
        content.to_str().unwrap(),
    ];
    let first = publisher.ok(&args);
    assert!(
        first.contains("created   article consent-basics"),
        "{first}"
    );
    assert!(first.contains("manifest version 1 (new)"), "{first}");
    assert!(!first.contains("pushed 0 envelopes"), "{first}");

    let second = publisher.ok(&args);
    assert!(second.contains("pushed 0 envelopes"), "{second}");
    assert!(
        second.contains("manifest version 1 (unchanged)"),
        "{second}"
    );
    assert!(
        !second.contains("created") && !second.contains("updated"),
        "{second}"
    );

    // A key the server does not trust: refused, one line.
    let stranger = publisher.home.path().join("stranger.json");
    haven_core::content::ContentKey::from_secret_bytes(&[7; 32])
        .save(&stranger)
        .unwrap();
    assert_one_line_error(
        &publisher.run(&[
            "content",
            "publish",
            "--key",
            stranger.to_str().unwrap(),
            content.to_str().unwrap(),
        ]),
        "refused",
    );
    drop(server);
}

/// The 24 words a registration printed, in order.
fn phrase_of(registered: &Output) -> String {
    let mut words: Vec<String> = Vec::new();
    for line in stdout(registered).lines() {
        let tokens: Vec<&str> = line.split_whitespace().collect();
        for pair in tokens.windows(2) {
            if let Some(number) = pair[0].strip_suffix('.')
                && number.parse::<usize>() == Ok(words.len() + 1)
            {
                words.push(pair[1].to_owned());
            }
        }
    }
    assert_eq!(words.len(), 24, "{}", stdout(registered));
    words.join(" ")
}

/// Issue 7 from the command line: list, revoke (with a new password), password change,
/// recovery with the phrase, and linking a device with the verification code.
#[test]
fn devices_revoke_password_recover_and_link_from_the_command_line() {
    const NEW: &str = "second long passphrase here";
    const NEWER: &str = "third long passphrase here";
    const NEWEST: &str = "fourth long passphrase here";
    let server = Server::start();
    let (phone, laptop, taken) = (
        Device::new(&server.url),
        Device::new(&server.url),
        Device::new(&server.url),
    );
    let registered = phone.register("cedar-lane", false);
    assert_success(&registered, &["account", "register"]);
    let phrase = phrase_of(&registered);
    for (device, name) in [(&laptop, "laptop"), (&taken, "old phone")] {
        let output = device.run_with_password(
            &[
                "account",
                "login",
                "--username",
                "cedar-lane",
                "--device-name",
                name,
            ],
            PASSWORD,
        );
        assert_success(&output, &["account", "login", name]);
    }
    phone.ok(&[
        "journal",
        "add",
        "--title",
        "Kept",
        "--body",
        "kept across everything",
    ]);
    phone.ok(&["sync"]);

    let listed = phone.json(&["devices", "list", "--json"]);
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 3, "{listed:?}");
    let taken_id = listed
        .iter()
        .find(|device| device["name"] == "old phone")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let text = phone.ok(&["devices", "list"]);
    assert!(
        text.contains("old phone") && text.contains("this device"),
        "{text}"
    );

    // Revoke: the current password and a new one; the taken phone is cut off.
    let output = phone.run_with_env(
        &["devices", "revoke", &taken_id[..8]],
        &[("HAVEN_PASSWORD", PASSWORD)],
    );
    assert_one_line_error(&output, "HAVEN_NEW_PASSWORD");
    let output = phone.run_with_env(
        &["devices", "revoke", &taken_id[..8]],
        &[("HAVEN_PASSWORD", PASSWORD), ("HAVEN_NEW_PASSWORD", NEW)],
    );
    assert_success(&output, &["devices", "revoke"]);
    assert!(stdout(&output).contains("Revoked old phone"));
    let output = taken.run(&["sync"]);
    assert_one_line_error(&output, "revoked");
    let output =
        taken.run_with_password(&["account", "login", "--username", "cedar-lane"], PASSWORD);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));

    // Password change: the laptop (logged out by the revocation's new password on its next
    // login) comes back with the newest password only.
    let output = phone.run_with_env(
        &["account", "password"],
        &[("HAVEN_PASSWORD", NEW), ("HAVEN_NEW_PASSWORD", NEWER)],
    );
    assert_success(&output, &["account", "password"]);
    let output = laptop.run_with_password(&["account", "login", "--username", "cedar-lane"], NEW);
    assert_one_line_error(&output, "wrong username or password");
    let output = laptop.run_with_password(&["account", "login", "--username", "cedar-lane"], NEWER);
    assert_success(&output, &["account", "login", "newer"]);
    laptop.ok(&["sync"]);
    assert_eq!(
        laptop
            .json(&["journal", "list", "--json"])
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Recovery on a fresh profile: a wrong phrase is told plainly; the right one restores all.
    let fresh = Device::new(&server.url);
    let mut wrong: Vec<&str> = phrase.split(' ').collect();
    wrong.swap(0, 1);
    let output = fresh.run_with_env(
        &["account", "recover", "--username", "cedar-lane"],
        &[
            ("HAVEN_RECOVERY_PHRASE", &wrong.join(" ")),
            ("HAVEN_NEW_PASSWORD", NEWEST),
        ],
    );
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("nobody can open"),
        "{}",
        stderr(&output)
    );
    let output = fresh.run_with_env(
        &[
            "account",
            "recover",
            "--username",
            "cedar-lane",
            "--device-name",
            "new phone",
        ],
        &[
            ("HAVEN_RECOVERY_PHRASE", &phrase),
            ("HAVEN_NEW_PASSWORD", NEWEST),
        ],
    );
    assert_success(&output, &["account", "recover"]);
    fresh.ok(&["sync"]);
    let listed = fresh.json(&["journal", "list", "--json"]);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");

    // Linking: the new device prints the code and waits; a wrong verification code sends
    // nothing; the right one lets it in.
    let tablet = Device::new(&server.url);
    let mut child = tablet
        .command(&["devices", "link-start", "--wait", "60"])
        .spawn()
        .unwrap();
    let lines = {
        let out = child.stdout.take().unwrap();
        let (send, receive) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        receive
    };
    let mut code = String::new();
    let mut verification = String::new();
    while verification.is_empty() {
        let line = next_line(&lines);
        if let Some(rest) = line.trim().strip_prefix("haven devices link-approve ") {
            code = rest.to_owned();
        }
        if let Some(rest) = line.strip_prefix("Verification code: ") {
            verification = rest.split_whitespace().next().unwrap().to_owned();
        }
    }
    let output = fresh.run(&[
        "devices",
        "link-approve",
        &code,
        "--verification",
        "000-000-000",
    ]);
    assert_one_line_error(&output, "verification codes differ");
    let output = fresh.run(&["devices", "link-approve", &code]);
    assert_one_line_error(&output, "--verification");
    let output = fresh.run(&[
        "devices",
        "link-approve",
        &code,
        "--name",
        "tablet",
        "--verification",
        &verification,
    ]);
    assert_success(&output, &["devices", "link-approve"]);
    let finished = child.wait_with_output().unwrap();
    assert!(
        finished.status.success(),
        "link-start: {}",
        stderr(&finished)
    );
    tablet.ok(&["sync"]);
    assert_eq!(
        tablet
            .json(&["journal", "list", "--json"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let names: Vec<String> = fresh
        .json(&["devices", "list", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .map(|device| device["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(names.contains(&"tablet".to_owned()), "{names:?}");
    drop(server);
}

#[test]
fn a_local_only_journal_from_the_command_line() {
    let server = Server::start();
    let (phone, laptop) = (Device::new(&server.url), Device::new(&server.url));

    // No account: the journal says how to start one that stays on the device.
    let output = phone.run(&["journal", "add", "--title", "T", "--body", "b"]);
    assert_one_line_error(&output, "journal local-only on");
    assert!(
        phone
            .ok(&["journal", "local-only"])
            .contains("no journal yet")
    );
    let output = phone.run(&["journal", "local-only", "off"]);
    assert_one_line_error(&output, "no account to sync with");
    assert!(
        phone
            .ok(&["journal", "local-only", "on"])
            .contains("nothing of it is sent")
    );
    phone.ok(&["journal", "add", "--title", "Mine", "--body", CANARY]);
    assert!(
        phone
            .ok(&["journal", "local-only"])
            .starts_with("local-only")
    );
    let status = phone.json(&["status", "--json"]);
    assert_eq!(status["state"], "local_only", "{status}");
    assert_eq!(status["pending"], 0, "{status}");

    // Registering moves the entry into the account; another device reads it after a sync.
    assert_success(
        &phone.register("river-bend", false),
        &["account", "register"],
    );
    assert!(phone.ok(&["journal", "local-only"]).starts_with("synced"));
    phone.ok(&["sync"]);
    let output = laptop.run_with_password(
        &[
            "account",
            "login",
            "--username",
            "river-bend",
            "--device-name",
            "laptop",
        ],
        PASSWORD,
    );
    assert_success(&output, &["account", "login"]);
    laptop.ok(&["sync"]);
    assert_eq!(
        entry_ids(&laptop.json(&["journal", "list", "--json"])).len(),
        1
    );

    // Paused on the laptop: its new entry waits there until local-only is turned off.
    assert!(
        laptop
            .ok(&["journal", "local-only", "on"])
            .contains("paused")
    );
    laptop.ok(&[
        "journal",
        "add",
        "--title",
        "Later",
        "--body",
        "written while paused",
    ]);
    laptop.ok(&["sync"]);
    phone.ok(&["sync"]);
    assert_eq!(
        entry_ids(&phone.json(&["journal", "list", "--json"])).len(),
        1
    );
    assert!(
        laptop
            .ok(&["journal", "local-only", "off"])
            .contains("syncs again")
    );
    laptop.ok(&["sync"]);
    phone.ok(&["sync"]);
    assert_eq!(
        entry_ids(&phone.json(&["journal", "list", "--json"])).len(),
        2
    );
    let data = server.stop();
    assert_no_canary(data.path());
}

/// `journal backup`, `journal restore` and `journal purge-history`: the backup is ciphertext in a
/// private file, restores on another account's profile, twice without effect; a wrong or missing
/// passphrase is a one-line refusal; a purged entry's copy has one revision.
#[test]
fn journal_backup_restore_and_purge_history() {
    const PASSPHRASE: &str = "seven quiet lanterns over the bay";
    let server = Server::start();
    let a = Device::new(&server.url);
    assert_success(&a.register("backup-owner", false), &["account", "register"]);
    let id = a
        .ok(&["journal", "add", "--title", "Kept", "--body", CANARY])
        .trim()
        .to_owned();
    a.ok(&["journal", "edit", &id, "--append", " and more"]);
    let file = a.home.path().join("journal.havenbackup");
    let path = file.to_str().unwrap();

    assert_one_line_error(
        &a.run(&["journal", "backup", "--out", path]),
        "HAVEN_BACKUP_PASSPHRASE",
    );
    let output = a.run_with_env(
        &["journal", "backup", "--out", path],
        &[("HAVEN_BACKUP_PASSPHRASE", PASSPHRASE)],
    );
    assert_success(&output, &["journal", "backup"]);
    assert!(stderr(&output).contains("encrypted"), "{}", stderr(&output));
    assert!(stdout(&output).contains("Backed up 1 entries"));
    let bytes = std::fs::read(&file).unwrap();
    assert!(bytes.starts_with(b"HAVENBAK"));
    assert!(
        !bytes
            .windows(CANARY.len())
            .any(|window| window == CANARY.as_bytes())
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // Another account restores it (the passphrase from stdin), twice.
    let b = Device::new(&server.url);
    assert_success(&b.register("backup-heir", false), &["account", "register"]);
    assert_one_line_error(
        &b.run_with_env(
            &["journal", "restore", path],
            &[(
                "HAVEN_BACKUP_PASSPHRASE",
                "seven quiet lanterns over the sea",
            )],
        ),
        "wrong passphrase",
    );
    let restore = ["journal", "restore", path, "--passphrase-stdin"];
    let output = b.run_with_stdin(&restore, &format!("{PASSPHRASE}\n"));
    assert_success(&output, &restore);
    assert!(
        stdout(&output).contains("1 added, 0 merged"),
        "{}",
        stdout(&output)
    );
    let shown = b.json(&["journal", "show", &id, "--json"]);
    assert_eq!(shown["body"], format!("{CANARY} and more"));
    let output = b.run_with_stdin(&restore, &format!("{PASSPHRASE}\n"));
    assert!(
        stdout(&output).contains("0 added, 0 merged, 1 already here"),
        "{}",
        stdout(&output)
    );

    // Purge: the copy's id alone on stdout, one revision, the old entry gone.
    let copy = b.ok(&["journal", "purge-history", &id]).trim().to_owned();
    assert_eq!(copy.len(), 32, "{copy:?}");
    assert_ne!(copy, id);
    let history = b.json(&["journal", "history", &copy, "--json"]);
    assert_eq!(history.as_array().unwrap().len(), 1, "{history}");
    assert_eq!(entry_ids(&b.json(&["journal", "list", "--json"])), [copy]);
    assert_one_line_error(&b.run(&["journal", "show", &id]), "no journal entry");
    server.stop();
}

/// `account wipe-on-erasure on`: erasing the account from one device wipes the other at its next
/// `sync`; the erasing device keeps its copy.
#[test]
fn an_erasure_wipes_the_other_devices_when_asked() {
    let server = Server::start();
    let (phone, laptop) = (Device::new(&server.url), Device::new(&server.url));
    assert_success(
        &phone.register("quiet-harbour", false),
        &["account", "register"],
    );
    let output = laptop.run_with_password(
        &["account", "login", "--username", "quiet-harbour"],
        PASSWORD,
    );
    assert_success(&output, &["account", "login"]);
    assert!(phone.ok(&["account", "wipe-on-erasure"]).starts_with("off"));
    assert!(
        phone
            .ok(&["account", "wipe-on-erasure", "on"])
            .starts_with("On")
    );
    phone.ok(&["journal", "add", "--title", "T", "--body", "b"]);
    phone.ok(&["sync"]);
    laptop.ok(&["sync"]);
    assert!(laptop.ok(&["account", "wipe-on-erasure"]).starts_with("on"));

    let output = phone.run_with_password(&["account", "delete", "--yes"], PASSWORD);
    assert_success(&output, &["account", "delete"]);
    assert_one_line_error(&laptop.run(&["sync"]), "this profile was wiped");
    assert!(!laptop.profile.exists(), "the laptop's profile is gone");
    // The erasing device keeps its copy.
    assert_eq!(
        entry_ids(&phone.json(&["journal", "list", "--json"])).len(),
        1
    );
    server.stop();
}
