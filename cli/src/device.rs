//! The device: where its profile lives, opening it (offline or with the server), and bounding
//! network work in time.
//!
//! Offline commands open the profile with `NoServer`, so they never touch the network whatever
//! `--server` says. The data key is wrapped by a `FileKeyStore` whose key file sits in the
//! profile (see its docs: this exercises the phone's code path; it is no protection against
//! someone who copies the whole directory).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use haven_core::env::OsRandom;
use haven_core::local_store::keystore::FILE_KEYSTORE_NAME;
use haven_core::local_store::{DATA_KEY_FILE_NAME, DB_FILE_NAME, FileKeyStore, KeyStore};
use haven_core::remote::http::{HttpOptions, HttpRemote};
use haven_core::remote::{NoServer, ServerApi};
use haven_core::{Haven, HavenConfig, HavenError};

use crate::GlobalArgs;

/// The profile directory: `--profile` / `HAVEN_PROFILE`, else `$HOME/.haven/profile`.
pub(crate) fn profile_dir(global: &GlobalArgs) -> anyhow::Result<PathBuf> {
    if let Some(dir) = &global.profile {
        if dir.as_os_str().is_empty() {
            bail!("the profile directory is empty; pass --profile DIR or set HAVEN_PROFILE");
        }
        return Ok(dir.clone());
    }
    let home = std::env::var_os("HOME")
        .filter(|home| !home.is_empty())
        .ok_or_else(|| anyhow!("HOME is not set; pass --profile DIR or set HAVEN_PROFILE"))?;
    Ok(PathBuf::from(home).join(".haven").join("profile"))
}

/// The key store of the profile in `dir`.
pub(crate) fn keystore(dir: &Path) -> Arc<dyn KeyStore> {
    Arc::new(FileKeyStore::new(dir, Arc::new(OsRandom)))
}

/// Creates `dir` and its missing parents private to the user (0700 on unix).
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Opens the profile for offline work (no network at all).
pub(crate) fn open_offline(global: &GlobalArgs) -> anyhow::Result<Haven> {
    open_with(global, Arc::new(NoServer))
}

/// Opens the profile with the server of `--server`.
pub(crate) fn open_online(global: &GlobalArgs) -> anyhow::Result<Haven> {
    open_with(global, Arc::new(remote(&global.server, None)?))
}

/// An HTTP client of `url`. `deadline` caps each request (and its connect) below the default
/// 30 s (10 s to connect).
pub(crate) fn remote(url: &str, deadline: Option<Duration>) -> anyhow::Result<HttpRemote> {
    let defaults = HttpOptions::default();
    let options = HttpOptions {
        request_timeout: deadline.map_or(defaults.request_timeout, |d| {
            d.min(defaults.request_timeout)
        }),
        connect_timeout: deadline.map_or(defaults.connect_timeout, |d| {
            d.min(defaults.connect_timeout)
        }),
        user_agent: concat!("haven-cli/", env!("CARGO_PKG_VERSION")).to_owned(),
        ..defaults
    };
    HttpRemote::new(url, options).with_context(|| format!("the server URL {url:?}"))
}

/// Whether `dir` holds a profile's files (the store, its wrapped data key or the key file).
pub(crate) fn looks_like_profile(dir: &Path) -> bool {
    [DB_FILE_NAME, DATA_KEY_FILE_NAME, FILE_KEYSTORE_NAME]
        .iter()
        .any(|name| dir.join(name).exists())
}

/// Refuses to make a profile in a directory that already holds other things: a wipe deletes
/// everything in the profile directory, so `--profile ~` must never become a profile.
fn check_profile_dir(dir: &Path) -> anyhow::Result<()> {
    let Ok(mut entries) = std::fs::read_dir(dir) else {
        // Missing (it will be created) or unreadable (opening reports why).
        return Ok(());
    };
    if entries.next().is_some() && !looks_like_profile(dir) {
        bail!(
            "{} is not empty and holds no Haven profile; give --profile a new or empty directory (a wipe deletes everything in it)",
            dir.display()
        );
    }
    Ok(())
}

fn open_with(global: &GlobalArgs, remote: Arc<dyn ServerApi>) -> anyhow::Result<Haven> {
    let dir = profile_dir(global)?;
    check_profile_dir(&dir)?;
    create_private_dir(&dir)
        .with_context(|| format!("creating the profile directory {}", dir.display()))?;
    Haven::open(HavenConfig::new(&dir), keystore(&dir), remote).map_err(|error| match error {
        HavenError::ProfileInUse => anyhow!(
            "profile in use: another haven process has {} open; let it finish (or stop it) and try again",
            dir.display()
        ),
        other => anyhow::Error::new(other).context(format!("opening the profile {}", dir.display())),
    })
}

/// Runs `work` on a single-threaded runtime (the CLI does one thing at a time).
pub(crate) fn block_on<F: Future>(work: F) -> anyhow::Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    Ok(runtime.block_on(work))
}

/// Runs network work with an overall deadline. Dropping a sync half-way is safe: every pulled
/// page commits with its cursor, and the outbox loses an entry only on the server's ack.
pub(crate) fn with_deadline<T, F>(global: &GlobalArgs, what: &str, work: F) -> anyhow::Result<T>
where
    F: Future<Output = anyhow::Result<T>>,
{
    let deadline = global.deadline();
    match block_on(async move { tokio::time::timeout(deadline, work).await })? {
        Ok(result) => result,
        Err(_) => bail!(
            "{what} timed out after {} s; nothing was lost, try again (or raise --timeout)",
            deadline.as_secs()
        ),
    }
}

/// Closes the profile, reporting a failure to flush.
pub(crate) fn close(haven: Haven) -> anyhow::Result<()> {
    haven.close().context("closing the profile")
}
