//! `haven content keygen` and `haven content bundle`, run as the built binary on temporary
//! directories.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn haven(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_haven"))
        .args(args)
        // The global options must not be needed by offline commands.
        .env_remove("HAVEN_SERVER")
        .env_remove("HAVEN_PROFILE")
        .output()
        .expect("the haven binary runs")
}

fn run(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|arg| arg.as_ref()).collect();
    haven(&args)
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

/// Fails the test with the command's output unless it succeeded.
fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        stdout(output),
        stderr(output)
    );
}

/// Asserts a clean failure: non-zero exit, one `haven: ` line on stderr, no panic.
fn assert_one_line_error(output: &Output, expected: &str) {
    assert!(!output.status.success(), "expected a failure");
    assert_eq!(output.status.code(), Some(1));
    let stderr = stderr(output);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.starts_with("haven: "), "{stderr:?}");
    assert!(stderr.contains(expected), "{stderr:?} lacks {expected:?}");
    assert!(!stderr.contains("panicked"), "{stderr:?}");
}

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

#[test]
fn keygen_prints_the_public_key_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("content-key.json");
    let output = run(&[&"content", &"keygen", &"--out", &key_file]);
    assert_success(&output);
    let public_key = stdout(&output).trim().to_owned();
    let key = haven_core::content::ContentKey::load(&key_file).unwrap();
    assert_eq!(
        public_key,
        key.public_key_base64(),
        "stdout is the public key alone"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let before = std::fs::read(&key_file).unwrap();
    let again = run(&[&"content", &"keygen", &"--out", &key_file]);
    assert_one_line_error(&again, "already exists");
    assert!(again.stdout.is_empty());
    assert_eq!(std::fs::read(&key_file).unwrap(), before, "the key is kept");
}

#[test]
fn bundle_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key.json");
    assert_success(&run(&[&"content", &"keygen", &"--out", &key_file]));
    let content = repo_path("content");
    let first = dir.path().join("first.bundle");
    let second = dir.path().join("second.bundle");
    for out in [&first, &second] {
        let output = run(&[
            &"content", &"bundle", &"--key", &key_file, &content, &"--out", out,
        ]);
        assert_success(&output);
        assert!(stdout(&output).starts_with("wrote "), "{}", stdout(&output));
    }
    let bytes = std::fs::read(&first).unwrap();
    assert!(bytes.starts_with(b"HAVENPB1"));
    assert_eq!(
        bytes,
        std::fs::read(&second).unwrap(),
        "two runs, same bytes"
    );

    // Rebuilding onto an existing bundle of unchanged content leaves it as it is.
    let output = run(&[
        &"content", &"bundle", &"--key", &key_file, &content, &"--out", &first,
    ]);
    assert_success(&output);
    assert!(
        stdout(&output).starts_with("unchanged "),
        "{}",
        stdout(&output)
    );
    assert_eq!(std::fs::read(&first).unwrap(), bytes);
}

/// The regeneration command of content/README.md, run on a copy of the committed bundle, finds
/// nothing to add: the committed bundle is what the CLI makes of content/.
#[test]
fn bundle_with_the_dev_key_keeps_the_committed_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("public-content.bundle");
    let committed = std::fs::read(repo_path("sync-core/assets/public-content.bundle")).unwrap();
    std::fs::write(&out, &committed).unwrap();
    let output = run(&[
        &"content",
        &"bundle",
        &"--key",
        &repo_path("content/dev-content-key.json"),
        &repo_path("content"),
        &"--out",
        &out,
    ]);
    assert_success(&output);
    assert!(
        stdout(&output).starts_with("unchanged "),
        "{}",
        stdout(&output)
    );
    assert_eq!(std::fs::read(&out).unwrap(), committed);
}

#[test]
fn bundle_extends_its_own_bundle_and_guards_other_files() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key.json");
    let other_key = dir.path().join("other.json");
    assert_success(&run(&[&"content", &"keygen", &"--out", &key_file]));
    assert_success(&run(&[&"content", &"keygen", &"--out", &other_key]));
    let content = dir.path().join("content");
    copy_dir(&repo_path("content"), &content);
    let out = dir.path().join("app.bundle");
    assert_success(&run(&[
        &"content", &"bundle", &"--key", &key_file, &content, &"--out", &out,
    ]));
    let first = std::fs::read(&out).unwrap();

    // An edit (with its updated_at bumped) extends the bundle: the old one stays its prefix.
    let article = content.join("articles/him-though.md");
    let text = std::fs::read_to_string(&article).unwrap();
    let edited = text
        .replacen(
            "updated_at = \"2026-11-28T00:00:00Z\"",
            "updated_at = \"2026-11-29T00:00:00Z\"",
            1,
        )
        .replacen("## ", "## Edited: ", 1);
    assert_ne!(edited, text);
    std::fs::write(&article, edited).unwrap();
    let output = run(&[
        &"content", &"bundle", &"--key", &key_file, &content, &"--out", &out,
    ]);
    assert_success(&output);
    assert!(
        stdout(&output).starts_with("extended "),
        "{}",
        stdout(&output)
    );
    assert!(stdout(&output).contains("manifest version 2"));
    let extended = std::fs::read(&out).unwrap();
    assert!(extended.len() > first.len());
    // Same envelopes up front (the 4-byte count at offset 8 changes).
    assert_eq!(extended[12..first.len()], first[12..]);

    // A bundle signed by another key, or a file that is no bundle, is not replaced silently.
    let before = std::fs::read(&out).unwrap();
    let output = run(&[
        &"content", &"bundle", &"--key", &other_key, &content, &"--out", &out,
    ]);
    assert_one_line_error(&output, "--fresh");
    assert_eq!(std::fs::read(&out).unwrap(), before);
    let output = run(&[
        &"content", &"bundle", &"--key", &other_key, &content, &"--out", &out, &"--fresh",
    ]);
    assert_success(&output);
    assert!(stdout(&output).starts_with("wrote "), "{}", stdout(&output));
}

#[test]
fn bundle_errors_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.bundle");
    let dev_key = repo_path("content/dev-content-key.json");
    let missing_key = dir.path().join("missing.json");
    assert_one_line_error(
        &run(&[
            &"content",
            &"bundle",
            &"--key",
            &missing_key,
            &dir.path(),
            &"--out",
            &out,
        ]),
        "reading the content key",
    );
    assert_one_line_error(
        &run(&[
            &"content",
            &"bundle",
            &"--key",
            &dev_key,
            &dir.path(),
            &"--out",
            &out,
        ]),
        "holds neither",
    );
    // A TOML error spans several lines; the CLI folds it into one.
    let bad = dir.path().join("bad");
    std::fs::create_dir_all(bad.join("articles")).unwrap();
    std::fs::write(bad.join("articles/a.md"), "+++\ntitle = 3\n+++\nbody\n").unwrap();
    assert_one_line_error(
        &run(&[
            &"content", &"bundle", &"--key", &dev_key, &bad, &"--out", &out,
        ]),
        "articles/a.md",
    );
    assert!(!out.exists());
    let no_dir = dir.path().join("no/such/dir/x.bundle");
    assert_one_line_error(
        &run(&[
            &"content",
            &"bundle",
            &"--key",
            &dev_key,
            &repo_path("content"),
            &"--out",
            &no_dir,
        ]),
        "writing the bundle",
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
