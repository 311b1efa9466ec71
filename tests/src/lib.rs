//! Shared helpers of the end-to-end tests: the real server in-process on a loopback port, and
//! builders of well-formed envelopes.

pub mod chaos;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::{Signer as _, SigningKey};
use haven_protocol::envelope::{NONCE_LEN, TAG_LEN};
use haven_protocol::{Blob, Bytes, DeviceId, DocId, Envelope, EnvelopeId, Kind, SpaceId, padding};
use haven_server::app::{AppState, HttpConfig};
use haven_server::auth::AuthConfig;
use haven_server::clock::{Clock, ManualClock};
use haven_server::server::{AppOptions, build_app};
use haven_server::spaces::LogLimits;
use haven_server::store::Store;
use haven_server::store::memory::MemoryStore;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use haven_server::clock::random_bytes;

/// Where the test server's manual clock starts: 2026-11-28T12:00:00Z.
pub const START: u64 = 1_795_867_200;

/// Every wait on the test server is bounded by this.
pub const WAIT: Duration = Duration::from_secs(10);

/// The content key test servers trust for `public` (not the dev key: tests must not depend on
/// committed key files).
pub fn content_key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

/// Server options for tests: defaults, [`content_key`] trusted, pings every second (so tests see
/// keep-alives without waiting 30 s).
pub fn test_options() -> AppOptions {
    AppOptions {
        http: HttpConfig {
            ping_secs: 1,
            ..HttpConfig::default()
        },
        log_limits: LogLimits::default(),
        auth: AuthConfig::default(),
        content_keys: vec![content_key().verifying_key()],
        master_keys: haven_server::storage_keys::MasterKeySource::Ephemeral,
    }
}

/// Why the test server could not start.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the test server did not start: {}", self.0)
    }
}

impl std::error::Error for StartError {}

/// The real server, serving on `127.0.0.1:<free port>` from a task of the current runtime.
#[derive(Debug)]
pub struct TestServer {
    /// `http://127.0.0.1:<port>`, the base URL for a client.
    pub url: String,
    pub addr: SocketAddr,
    /// The server's services, for tests that look behind the API.
    pub state: AppState,
    /// The server's clock; advance it to expire tokens and mailboxes.
    pub clock: ManualClock,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    /// A server over a fresh in-memory store with [`test_options`].
    pub async fn start() -> Result<Self, StartError> {
        spawn_server(Arc::new(MemoryStore::new()), test_options()).await
    }

    /// Stops accepting, lets live sockets close ("going away") and waits, bounded, for the end.
    pub async fn stop(mut self) -> Result<(), StartError> {
        let _ = self.stop.send(true);
        let Some(task) = self.task.take() else {
            return Ok(());
        };
        match tokio::time::timeout(WAIT, task).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(error))) => Err(StartError(format!("serving failed: {error}"))),
            Ok(Err(join)) => Err(StartError(format!("the server task failed: {join}"))),
            Err(_) => Err(StartError("the server did not stop in time".into())),
        }
    }
}

impl Drop for TestServer {
    // A test that panics still stops its server; the runtime's end would also drop the task.
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Starts the real server (its full router, with client addresses for the rate limits) over
/// `store` on a loopback port chosen by the OS.
pub async fn spawn_server(
    store: Arc<dyn Store>,
    options: AppOptions,
) -> Result<TestServer, StartError> {
    let clock = ManualClock::new(START);
    let (stop, shutdown) = watch::channel(false);
    let state = build_app(
        store,
        Arc::new(clock.clone()) as Arc<dyn Clock>,
        options,
        shutdown,
    )
    .await
    .map_err(|error| StartError(format!("{error:#}")))?;
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|error| StartError(format!("binding 127.0.0.1:0: {error}")))?;
    let addr = listener
        .local_addr()
        .map_err(|error| StartError(error.to_string()))?;
    let app = haven_server::app::router(Arc::clone(&state))
        .into_make_service_with_connect_info::<SocketAddr>();
    let mut stopping = stop.subscribe();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopping.wait_for(|stop| *stop).await;
            })
            .await
    });
    Ok(TestServer {
        url: format!("http://{addr}"),
        addr,
        state,
        clock,
        stop,
        task: Some(task),
    })
}

/// A well-formed private envelope: random "ciphertext" of a padded length, epoch `key_epoch`.
pub fn private_envelope(
    doc: DocId,
    kind: Kind,
    device: DeviceId,
    ctr: u64,
    key_epoch: u32,
) -> Envelope {
    let sealed_len = padding::padded_len(100) + TAG_LEN;
    let mut body = vec![0u8; NONCE_LEN + sealed_len];
    // Contents do not matter to the server; random bytes keep ids and bodies realistic.
    for chunk in body.chunks_mut(32) {
        let random: [u8; 32] = random_bytes();
        chunk.copy_from_slice(&random[..chunk.len()]);
    }
    Envelope {
        id: Bytes(random_bytes()),
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

/// A public change signed by `key`.
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

/// An envelope id that no envelope has.
pub fn unknown_id() -> EnvelopeId {
    Bytes(random_bytes())
}

/// A key store in memory, as a test's stand-in for the platform's (Keychain, Android Keystore).
pub fn memory_keystore() -> Arc<dyn haven_core::local_store::KeyStore> {
    Arc::new(haven_core::local_store::MemoryKeyStore::new(Arc::new(
        haven_core::env::OsRandom,
    )))
}

/// Opens (or creates) a device profile in `dir` that talks to the server at `url` over HTTP.
pub fn open_profile(
    dir: &std::path::Path,
    keystore: &Arc<dyn haven_core::local_store::KeyStore>,
    url: &str,
) -> Result<haven_core::Haven, haven_core::HavenError> {
    let remote = haven_core::remote::http::HttpRemote::new(
        url,
        haven_core::remote::http::HttpOptions::default(),
    )?;
    haven_core::Haven::open(
        haven_core::HavenConfig::new(dir),
        Arc::clone(keystore),
        Arc::new(remote),
    )
}

/// A device of the end-to-end tests: its profile directory, key store and open profile (the
/// directory and key store live as long as it does).
pub struct Device {
    _dir: tempfile::TempDir,
    _keys: Arc<dyn haven_core::local_store::KeyStore>,
    pub haven: haven_core::Haven,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device").finish_non_exhaustive()
    }
}

/// A new profile in a temporary directory, with a key store in memory, talking to `server`.
///
/// # Panics
/// When the directory or the profile cannot be made (a broken test machine).
#[allow(clippy::expect_used)]
pub fn device(server: &TestServer) -> Device {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let keys = memory_keystore();
    let haven = open_profile(dir.path(), &keys, &server.url).expect("a new profile opens");
    Device {
        _dir: dir,
        _keys: keys,
        haven,
    }
}

/// Ends the whole test process if it is still alive after `limit` (a deadlock must fail CI, not
/// hang it). A tokio timeout cannot do this when every runtime thread is stuck on a lock. Keep
/// the guard alive for the test's duration; dropping it (also in a panic) disarms it.
#[must_use = "the watchdog is disarmed when this guard is dropped"]
#[derive(Debug)]
pub struct Watchdog(Option<std::sync::mpsc::Sender<()>>);

pub fn watchdog(what: &'static str, limit: Duration) -> Watchdog {
    let (disarm, disarmed) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = disarmed.recv_timeout(limit) {
            // Straight to stderr: the test harness captures `eprintln!`, and exiting loses it.
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "{what}: still running after {limit:?} (a deadlock?); ending the test process"
            );
            std::process::exit(101);
        }
    });
    Watchdog(Some(disarm))
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(disarm) = self.0.take() {
            let _ = disarm.send(());
        }
    }
}

/// Every file under `dir`, read whole (for scans of what a directory holds).
pub fn files_under(dir: &std::path::Path) -> std::io::Result<Vec<(std::path::PathBuf, Vec<u8>)>> {
    let mut stack = vec![dir.to_path_buf()];
    let mut files = Vec::new();
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                stack.push(entry?.path());
            }
        } else {
            let bytes = std::fs::read(&path)?;
            files.push((path, bytes));
        }
    }
    Ok(files)
}

/// The first of `files` that contains `needle`.
pub fn file_containing(
    files: &[(std::path::PathBuf, Vec<u8>)],
    needle: &[u8],
) -> Option<std::path::PathBuf> {
    files
        .iter()
        .find(|(_, bytes)| bytes.windows(needle.len()).any(|window| window == needle))
        .map(|(path, _)| path.clone())
}
