//! Haven's FFI: the uniffi surface over `haven-core` that the Android and iOS apps (and Python)
//! call. Generated bindings live in `mobile-bindings/`; `mobile-bindings/README.md` says how an app
//! ships them.
//!
//! The shape, after matrix-rust-sdk and application-services:
//!
//! - One coarse object, [`HavenClient`], opened by the named async constructor
//!   [`HavenClient::open`]. Everything that reads or writes the profile is `async` (a Kotlin
//!   `suspend fun`, a Swift `async` function, a Python coroutine) and runs on the library's own
//!   tokio runtime (`haven-worker` threads; store work on its blocking pool), never on the caller's
//!   thread, which may be the UI thread. `status()`, the live-sync controls and `cancel()` are
//!   synchronous and never block. (Hence no `async_runtime = "tokio"` on the exports: that would
//!   only give the future a tokio context while the *caller's* executor polls it, on the caller's
//!   thread, and start a second, idle runtime; here the exported future merely awaits a task of
//!   the library's runtime, which needs no context.)
//! - Records as plain data ([`records`]); ids are hex strings; text positions are UTF-16 code
//!   units, converted at this edge to the core's Unicode scalar values ([`text`]).
//! - One error enum, [`HavenFfiError`]; a panic anywhere below becomes `Internal`, never a crash
//!   of the host process.
//! - Foreign traits the app implements: [`KeyStore`] (the platform key), [`ChangeListener`] (UI
//!   refresh), and optionally [`Logger`].
//! - uniffi has no cancellation: [`HavenClient::cancel`] aborts this client's operations in
//!   flight; a cancelled Kotlin coroutine or Swift task also aborts the Rust work it awaited.
//!
//! Nothing here logs or puts in an error journal text, passwords, tokens or keys.

uniffi::setup_scaffolding!();

mod callbacks;
mod client;
mod error;
mod log;
mod records;
mod runtime;
mod text;

use std::sync::Arc;

pub use callbacks::{ChangeListener, KeyStore, PlatformKeyError};
pub use client::HavenClient;
pub use error::HavenFfiError;
pub use log::{LogLevel, Logger, set_logger};
pub use records::{
    Article, ArticleSummary, Bookmark, ChangeSet, ClientConfig, DeviceInfo, DeviceJoined,
    EntryChange, EntrySummary, ExportFormat, ExportReport, JournalBackup, JournalEntry,
    ReadingProgress, ReadingState, Registration, Resource, ResourceList, RestoreReport,
    SavedResource, SavedResources, SyncReport, SyncState, SyncStatus, TrustedContact, WipeReport,
};

/// This library's version (`major.minor.patch`).
#[uniffi::export]
pub fn core_version() -> String {
    env!("CARGO_PKG_VERSION").to_owned()
}

/// The warning to show before exporting the journal as plain text.
#[uniffi::export]
pub fn plaintext_export_warning() -> String {
    haven_core::client::export::PLAINTEXT_WARNING.to_owned()
}

/// What to show next to a backup: it is encrypted, and a forgotten passphrase cannot be
/// recovered.
#[uniffi::export]
pub fn backup_notice() -> String {
    haven_core::client::backup::BACKUP_NOTICE.to_owned()
}

/// Panic wipe of a profile that cannot be (or is not) open: destroys the platform key through
/// `key_store.delete()` first, then every file in `data_dir`. Idempotent. Prefer
/// `HavenClient.wipe()` when a client is open (it also stops its work).
///
/// Errors: `Storage` when a step failed (the others were still done): call it again.
#[uniffi::export]
pub async fn wipe_profile(
    data_dir: String,
    key_store: Arc<dyn KeyStore>,
) -> Result<WipeReport, HavenFfiError> {
    runtime::spawn_blocking("wipe_profile", None, move || {
        let key_store = callbacks::ForeignKeyStore(key_store);
        client::wipe_dir(std::path::Path::new(&data_dir), &key_store)
    })
    .await
}
