//! A device as an app holds it: a `Haven` over an on-disk profile (redb, fsync per commit, the
//! file key store), talking to the server through `HttpRemote` (wrapped by [`TapRemote`]).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};
use haven_core::env::{OsRandom, Random};
use haven_core::local_store::{FileKeyStore, KeyStore, MemoryKeyStore};
use haven_core::remote::http::{HttpOptions, HttpRemote};
use haven_core::{Haven, HavenConfig};

use crate::tap::TapRemote;

/// The benchmark accounts' password (long enough for the strength check).
pub(crate) const PASSWORD: &str = "benchmark river stone quiet lamp 7";

/// Bound on any single call into the engine that goes to the network.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone)]
pub(crate) struct Device {
    pub haven: Arc<Haven>,
    pub tap: TapRemote,
}

impl Device {
    /// Opens (or creates) the profile in `dir` against the server at `url`.
    pub(crate) fn open(dir: &Path, url: &str) -> anyhow::Result<Self> {
        let random: Arc<dyn Random> = Arc::new(OsRandom);
        let keystore: Arc<dyn KeyStore> = Arc::new(FileKeyStore::new(dir, Arc::clone(&random)));
        let http = HttpRemote::new(url, HttpOptions::default())
            .map_err(|error| anyhow!("remote: {error}"))?;
        let tap = TapRemote::new(http);
        let haven = Haven::open(HavenConfig::new(dir), keystore, Arc::new(tap.clone()))
            .map_err(|error| anyhow!("opening {}: {error}", dir.display()))?;
        Ok(Self {
            haven: Arc::new(haven),
            tap,
        })
    }

    /// A profile kept in memory only (no files, no fsync), as the peer's clients keep theirs.
    pub(crate) fn open_in_memory(url: &str) -> anyhow::Result<Self> {
        let random: Arc<dyn Random> = Arc::new(OsRandom);
        let keystore: Arc<dyn KeyStore> = Arc::new(MemoryKeyStore::new(random));
        let http = HttpRemote::new(url, HttpOptions::default())
            .map_err(|error| anyhow!("remote: {error}"))?;
        let tap = TapRemote::new(http);
        let haven = Haven::open(HavenConfig::in_memory(), keystore, Arc::new(tap.clone()))
            .map_err(|error| anyhow!("opening an in-memory profile: {error}"))?;
        Ok(Self {
            haven: Arc::new(haven),
            tap,
        })
    }

    /// Registers a new account; returns how long it took (password key derivation included).
    pub(crate) async fn register(&self, username: &str) -> anyhow::Result<Duration> {
        let start = Instant::now();
        tokio::time::timeout(
            CALL_TIMEOUT,
            self.haven.register(username, PASSWORD, "bench"),
        )
        .await
        .context("register timed out")?
        .map_err(|error| anyhow!("register: {error}"))?;
        Ok(start.elapsed())
    }

    /// Logs in to an existing account; returns how long it took.
    pub(crate) async fn login(&self, username: &str) -> anyhow::Result<Duration> {
        let start = Instant::now();
        tokio::time::timeout(CALL_TIMEOUT, self.haven.login(username, PASSWORD, "bench"))
            .await
            .context("login timed out")?
            .map_err(|error| anyhow!("login: {error}"))?;
        Ok(start.elapsed())
    }

    /// One bounded sync round.
    pub(crate) async fn sync(&self) -> anyhow::Result<haven_core::client::SyncReport> {
        tokio::time::timeout(CALL_TIMEOUT, self.haven.sync_once())
            .await
            .context("sync_once timed out")?
            .map_err(|error| anyhow!("sync_once: {error}"))
    }

    /// Closes the profile (the `Haven` must have no other holder).
    pub(crate) fn close(self) -> anyhow::Result<()> {
        let haven = Arc::try_unwrap(self.haven)
            .map_err(|_| anyhow!("the device is still in use; cannot close it"))?;
        haven.close().map_err(|error| anyhow!("close: {error}"))
    }
}

/// A fresh username (lowercase, as the server wants).
pub(crate) fn username(prefix: &str) -> String {
    let random = haven_core::env::random_array::<6>(&OsRandom);
    let tag: String = random.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("{prefix}-{tag}")
}
