//! `HavenClient`: one profile (one device's view of one account, or of no account).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use haven_core::client::SyncReport as CoreSyncReport;
use haven_core::crypto::RecoveryPhrase;
use haven_core::documents::{TrustedContact as CoreTrustedContact, new_contact_id};
use haven_core::env::OsRandom;
use haven_core::local_store::KeyStore as CoreKeyStore;
use haven_core::remote::http::{HttpOptions, HttpRemote};
use haven_core::{Haven, HavenConfig, HavenError, HavenResult};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::callbacks::{ChangeListener, ForeignKeyStore, KeyStore, notify};
use crate::error::{FfiResult, HavenFfiError};
use crate::log::{LogLevel, log};
use crate::records::{
    Article, ArticleSummary, Bookmark, ChangeSet, ClientConfig, Device, DeviceInfo, DeviceJoined,
    EntryChange, EntrySummary, ExportFormat, ExportReport, JournalBackup, JournalEntry, LinkOffer,
    ReadingProgress, ReadingState, Registration, ResourceList, RestoreReport, SavedResources,
    SyncReport, SyncStatus, WipeReport, parse_id,
};
use crate::runtime::{self, guard, lock};
use crate::text;

/// Word positions asked back after registration.
const CHALLENGE_WORDS: usize = 3;
/// How long `shutdown` waits for operations still running to let go of the profile.
const CLOSE_WAIT: Duration = Duration::from_secs(5);
/// The same for `wipe`, which must be quick: after it, the files are unlinked even if open.
const WIPE_WAIT: Duration = Duration::from_secs(1);
/// The most a wipe waits for the server to end the session when asked to log out first.
const WIPE_LOGOUT_WAIT: Duration = Duration::from_secs(3);

/// One Haven profile. Thread-safe: share one instance across the app and call it from any
/// thread; calls that read or write the profile are `suspend` (Kotlin) / `async` (Swift) /
/// coroutines (Python) and run on the library's own threads, never on the caller's.
///
/// Opened with `open`; ended with `shutdown` or `wipe`, after which every call fails with
/// `HavenFfiError.Closed`.
#[derive(uniffi::Object)]
pub struct HavenClient {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for HavenClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HavenClient").finish_non_exhaustive()
    }
}

/// The app let go of the client without `shutdown`: stop its background work, so live sync does
/// not run on (and keep the profile open) for an object nobody can reach. The profile closes
/// when the last operation holding it ends.
impl Drop for HavenClient {
    fn drop(&mut self) {
        self.shared.stop_live();
        self.shared.inflight.cancel_all();
    }
}

/// What the client's tasks share with it.
struct Shared {
    /// `None` once closed or wiped.
    haven: RwLock<Option<Arc<Haven>>>,
    data_dir: PathBuf,
    key_store: Arc<ForeignKeyStore>,
    listener: RwLock<Option<Arc<dyn ChangeListener>>>,
    inflight: runtime::Inflight,
    live: Mutex<Live>,
}

#[derive(Default)]
struct Live {
    task: Option<LiveTask>,
    /// `pause_live` stopped a running live sync; `resume_live` starts it again.
    paused: bool,
}

struct LiveTask {
    stop: oneshot::Sender<()>,
    handle: JoinHandle<()>,
}

impl LiveTask {
    fn is_running(&self) -> bool {
        !self.handle.is_finished()
    }

    /// Tells `run_live` to stop, and aborts it (a round in progress ends at its next await).
    fn stop(self) {
        let _ = self.stop.send(());
        self.handle.abort();
    }
}

impl Shared {
    fn haven(&self) -> FfiResult<Arc<Haven>> {
        self.haven
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
            .ok_or_else(HavenFfiError::closed)
    }

    fn listener(&self) -> Option<Arc<dyn ChangeListener>> {
        self.listener
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }

    /// Tells the listener about a finished round. No lock of the library is held here.
    fn after_round(&self, haven: &Haven, round: &HavenResult<CoreSyncReport>, live: bool) {
        let Some(listener) = self.listener() else {
            return;
        };
        if let Ok(report) = round
            && (!report.changed.is_empty()
                || !report.deleted.is_empty()
                || !report.devices_joined.is_empty())
        {
            let entries: HashSet<_> = haven
                .journal_list()
                .into_iter()
                .map(|entry| entry.id)
                .collect();
            let journal_changed =
                !report.deleted.is_empty() || report.changed.iter().any(|id| entries.contains(id));
            let changes = ChangeSet {
                changed: report.changed.iter().map(|id| id.to_hex()).collect(),
                deleted: report.deleted.iter().map(|id| id.to_hex()).collect(),
                journal_changed,
                live,
                devices_joined: report
                    .devices_joined
                    .iter()
                    .cloned()
                    .map(Into::into)
                    .collect(),
            };
            notify("on_change", || listener.on_change(changes));
        }
        let status = SyncStatus::from(haven.status());
        notify("on_sync_status", || listener.on_sync_status(status));
    }

    fn stop_live(&self) -> bool {
        let task = lock(&self.live).task.take();
        match task {
            Some(task) => {
                let was_running = task.is_running();
                task.stop();
                was_running
            }
            None => false,
        }
    }

    /// Takes the profile out of the client (every later call fails with `Closed`), stops live
    /// sync and aborts operations in flight, then waits a little for them to let go of it.
    /// Returns the profile if this is its last user.
    async fn retire(&self, wait: Duration) -> FfiResult<Option<Haven>> {
        let taken = self
            .haven
            .write()
            .unwrap_or_else(|poison| poison.into_inner())
            .take();
        let Some(mut haven) = taken else {
            return Err(HavenFfiError::closed());
        };
        self.stop_live();
        lock(&self.live).paused = false;
        self.inflight.cancel_all();
        let deadline = Instant::now() + wait;
        loop {
            match Arc::try_unwrap(haven) {
                Ok(owned) => return Ok(Some(owned)),
                Err(shared) if Instant::now() < deadline => {
                    haven = shared;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(_) => {
                    log(
                        LogLevel::Warn,
                        "an operation still holds the profile; it is released when that ends"
                            .into(),
                    );
                    return Ok(None);
                }
            }
        }
    }
}

impl HavenClient {
    /// Runs blocking profile work on the library's blocking pool; `cancel()` can abort it before
    /// it starts.
    async fn blocking<T, F>(&self, operation: &'static str, work: F) -> FfiResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Haven) -> FfiResult<T> + Send + 'static,
    {
        let haven = self.shared.haven()?;
        runtime::spawn_blocking(operation, Some(&self.shared.inflight), move || work(&haven)).await
    }

    /// Runs a journal edit on an entry id given as hex.
    async fn edit_entry<F>(&self, operation: &'static str, id: String, edit: F) -> FfiResult<()>
    where
        F: FnOnce(&Haven, &haven_protocol::DocId) -> HavenResult<()> + Send + 'static,
    {
        let id = parse_id(&id)?;
        self.blocking(operation, move |haven| Ok(edit(haven, &id)?))
            .await
    }
}

#[uniffi::export]
impl HavenClient {
    /// Opens (or creates) the profile in `config.data_dir`. A new profile gets the bundled public
    /// content, so articles and hotlines are there at first launch with no network. Nothing is
    /// sent to the server until you log in, register or sync.
    ///
    /// Errors: `Storage` (the directory cannot be written, the profile is open elsewhere),
    /// `KeyStore` / `KeyLost` (from the key store), `InvalidInput` (a bad server URL or content key).
    #[uniffi::constructor]
    pub async fn open(
        config: ClientConfig,
        key_store: Arc<dyn KeyStore>,
    ) -> FfiResult<Arc<HavenClient>> {
        runtime::spawn_blocking("open", None, move || {
            let mut options = HttpOptions::default();
            if let Some(ms) = config.request_timeout_ms {
                if ms == 0 {
                    return Err(HavenFfiError::invalid("request_timeout_ms must be above 0"));
                }
                options.request_timeout = Duration::from_millis(ms);
            }
            let remote = HttpRemote::new(&config.server_url, options)
                .map_err(|error| HavenFfiError::from(HavenError::Remote(error)))?;
            if config.data_dir.trim().is_empty() {
                return Err(HavenFfiError::invalid("data_dir is empty"));
            }
            let data_dir = PathBuf::from(&config.data_dir);
            let mut core_config = HavenConfig::new(&data_dir);
            for key in &config.content_keys {
                let key = haven_core::content::parse_public_key(key)
                    .map_err(|error| HavenFfiError::invalid(format!("a content key: {error}")))?;
                core_config.content_keys.push(key);
            }
            let key_store = Arc::new(ForeignKeyStore(key_store));
            let haven = Haven::open(
                core_config,
                Arc::clone(&key_store) as Arc<dyn CoreKeyStore>,
                Arc::new(remote),
            )?;
            Ok(Arc::new(HavenClient {
                shared: Arc::new(Shared {
                    haven: RwLock::new(Some(Arc::new(haven))),
                    data_dir,
                    key_store,
                    listener: RwLock::new(None),
                    inflight: runtime::Inflight::default(),
                    live: Mutex::new(Live::default()),
                }),
            }))
        })
        .await
    }

    // ---- the device and its account ---------------------------------------------------------

    /// This device's id, username and space.
    pub async fn device_info(&self) -> FfiResult<DeviceInfo> {
        self.blocking("device_info", |haven| {
            Ok(DeviceInfo {
                device_id: haven.device_id().to_hex(),
                username: haven.username(),
                space_id: haven.space().map(|space| space.name()),
            })
        })
        .await
    }

    /// Creates an account with this profile as its first device. Takes about a second of CPU
    /// (Argon2id), on a library thread.
    ///
    /// Errors: `InvalidInput` (bad username, weak password, username taken, already an account
    /// here), `Network`.
    pub async fn register(
        &self,
        username: String,
        password: String,
        device_name: String,
    ) -> FfiResult<Registration> {
        let haven = self.shared.haven()?;
        runtime::spawn("register", Some(&self.shared.inflight), async move {
            let password = zeroize::Zeroizing::new(password);
            let phrase = haven.register(&username, &password, &device_name).await?;
            let challenge = RecoveryPhrase::challenge(&OsRandom, CHALLENGE_WORDS)
                .into_iter()
                .map(|position| position as u32)
                .collect();
            Ok(Registration {
                recovery_words: phrase.words().to_vec(),
                challenge,
            })
        })
        .await
    }

    /// Logs this profile in to an existing account. A device new to the account adds itself to
    /// the account's key bundle.
    ///
    /// Errors: `WrongCredentials`, `InvalidInput` (another account is on this profile),
    /// `Network`, `Revoked`, `Erased`.
    pub async fn login(
        &self,
        username: String,
        password: String,
        device_name: String,
    ) -> FfiResult<()> {
        let haven = self.shared.haven()?;
        runtime::spawn("login", Some(&self.shared.inflight), async move {
            let password = zeroize::Zeroizing::new(password);
            Ok(haven.login(&username, &password, &device_name).await?)
        })
        .await
    }

    /// Keeps the journal on this device only (`true`) or syncs it (`false`). Without an account,
    /// `true` starts a journal that is never sent anywhere (registering or logging in later moves
    /// it into the account and uploads it) and `false` fails with `NotLoggedIn`. With an
    /// account, `true` pauses the journal's syncing on this device (no live connection either)
    /// and `false` uploads what waited. The status says `LocalOnly` meanwhile.
    ///
    /// Errors: `NotLoggedIn`, `Revoked`, `Erased` (turning it off after a cut-off), `Storage`.
    pub async fn set_local_only(&self, local_only: bool) -> FfiResult<()> {
        self.blocking("set_local_only", move |haven| {
            Ok(haven.set_local_only(local_only)?)
        })
        .await
    }

    /// Push batching with jitter: live sync waits a random time up to `max_ms` before pushing
    /// a local edit, and edits made meanwhile go with it, so pushes are not timed to the writing.
    /// 0 (the default) pushes at once. Kept in the profile; `sync_once` is never delayed.
    ///
    /// Errors: `InvalidInput` above 600,000 ms, `Storage`.
    pub async fn set_push_jitter_ms(&self, max_ms: u64) -> FfiResult<()> {
        self.blocking("set_push_jitter_ms", move |haven| {
            Ok(haven.set_push_jitter(Duration::from_millis(max_ms))?)
        })
        .await
    }

    /// The push jitter set with `set_push_jitter_ms`, in ms.
    pub fn push_jitter_ms(&self) -> FfiResult<u64> {
        guard("push_jitter_ms", || {
            Ok(u64::try_from(self.shared.haven()?.push_jitter().as_millis()).unwrap_or(u64::MAX))
        })
    }

    /// Whether the journal stays on this device (see `set_local_only`). Never blocks long.
    pub fn is_local_only(&self) -> FfiResult<bool> {
        guard("is_local_only", || Ok(self.shared.haven()?.is_local_only()))
    }

    /// Logs this device out (local data stays; log in again to sync). Works offline.
    pub async fn logout(&self) -> FfiResult<()> {
        self.stop_live();
        let haven = self.shared.haven()?;
        runtime::spawn("logout", Some(&self.shared.inflight), async move {
            Ok(haven.logout().await?)
        })
        .await
    }

    /// Devices that joined the account since the alerts were last dismissed, oldest first. Each
    /// full sync round (`sync_once`, the start of live sync) checks the account's key bundle.
    pub async fn device_alerts(&self) -> FfiResult<Vec<DeviceJoined>> {
        self.blocking("device_alerts", |haven| {
            Ok(haven
                .device_alerts()?
                .into_iter()
                .map(DeviceJoined::from)
                .collect())
        })
        .await
    }

    /// Forgets the device alerts (the person has seen them).
    pub async fn dismiss_device_alerts(&self) -> FfiResult<()> {
        self.blocking("dismiss_device_alerts", |haven| {
            Ok(haven.dismiss_device_alerts()?)
        })
        .await
    }

    /// The account's devices, this one first; names come from the verified key bundle (a device
    /// that joined since shows up here). Needs the server.
    pub async fn devices(&self) -> FfiResult<Vec<Device>> {
        let haven = self.shared.haven()?;
        runtime::spawn("devices", Some(&self.shared.inflight), async move {
            Ok(haven
                .devices()
                .await?
                .into_iter()
                .map(Device::from)
                .collect())
        })
        .await
    }

    /// Erases the account on the server (needs the password again). This device keeps its data
    /// until it is wiped, so it can still be exported.
    pub async fn delete_account(&self, password: String) -> FfiResult<()> {
        let haven = self.shared.haven()?;
        runtime::spawn("delete_account", Some(&self.shared.inflight), async move {
            let password = zeroize::Zeroizing::new(password);
            Ok(haven.delete_account(&password).await?)
        })
        .await
    }

    /// Changes the password. Every other device is logged out and logs in again with the new
    /// one; nothing is re-encrypted. Takes two password derivations (seconds of CPU).
    ///
    /// Errors: `WrongCredentials` (the current password), `InvalidInput` (a weak new one),
    /// `NotLoggedIn`, `Network`.
    pub async fn change_password(&self, current: String, new_password: String) -> FfiResult<()> {
        let haven = self.shared.haven()?;
        runtime::spawn("change_password", Some(&self.shared.inflight), async move {
            let (current, new_password) = (
                zeroize::Zeroizing::new(current),
                zeroize::Zeroizing::new(new_password),
            );
            Ok(haven.change_password(&current, &new_password).await?)
        })
        .await
    }

    /// Revokes another device (lost or taken): the account moves to new keys and the password
    /// becomes `new_password` (its holder may know the old one). The revoked device cannot log
    /// in or read anything written afterwards; the others keep all history.
    ///
    /// Errors: `WrongCredentials`, `InvalidInput` (this device, an unknown or revoked one, a
    /// weak new password), `NotLoggedIn`, `Network`.
    pub async fn revoke_device(
        &self,
        device_id: String,
        password: String,
        new_password: String,
    ) -> FfiResult<()> {
        let device = parse_id(&device_id)?;
        let haven = self.shared.haven()?;
        runtime::spawn("revoke_device", Some(&self.shared.inflight), async move {
            let (password, new_password) = (
                zeroize::Zeroizing::new(password),
                zeroize::Zeroizing::new(new_password),
            );
            Ok(haven
                .revoke_device(&device, &password, &new_password)
                .await?)
        })
        .await
    }

    /// Gets back into the account with the 24-word recovery phrase after the password was
    /// forgotten, sets `new_password` and logs this profile in. Without the phrase nobody can
    /// open the journal: tell the user so plainly; the account can only be deleted.
    ///
    /// Errors: `InvalidInput` (not a valid phrase, a weak password), `WrongCredentials` (the
    /// phrase is valid but not this account's), `Network`.
    pub async fn recover(
        &self,
        username: String,
        recovery_words: Vec<String>,
        new_password: String,
        device_name: String,
    ) -> FfiResult<()> {
        let phrase = RecoveryPhrase::parse(&zeroize::Zeroizing::new(recovery_words.join(" ")))
            .map_err(|error| HavenFfiError::invalid(error.to_string()))?;
        let haven = self.shared.haven()?;
        runtime::spawn("recover", Some(&self.shared.inflight), async move {
            let new_password = zeroize::Zeroizing::new(new_password);
            Ok(haven
                .recover(&username, &phrase, &new_password, &device_name)
                .await?)
        })
        .await
    }

    /// New device, without an account: opens a linking mailbox. Show the offer, then call
    /// `link_wait` with its code.
    pub async fn link_start(&self) -> FfiResult<LinkOffer> {
        let haven = self.shared.haven()?;
        runtime::spawn("link_start", Some(&self.shared.inflight), async move {
            let invitation = haven.link_start().await?;
            Ok(LinkOffer {
                code: invitation.to_code(),
                verification_code: invitation.verification_code(),
            })
        })
        .await
    }

    /// New device: waits (at most `timeout_ms`, capped at ten minutes) for an existing device to
    /// approve `code` (from `link_start`), then joins the account. Returns its username.
    ///
    /// Errors: `Timeout`, `InvalidInput`, `Network`; `cancel` ends the wait.
    pub async fn link_wait(&self, code: String, timeout_ms: u64) -> FfiResult<String> {
        let haven = self.shared.haven()?;
        let invitation = haven.link_inspect(&code)?;
        runtime::spawn("link_wait", Some(&self.shared.inflight), async move {
            Ok(haven
                .link_wait(&invitation, Duration::from_millis(timeout_ms))
                .await?)
        })
        .await
    }

    /// Existing device: the verification code of a new device's `code`. Approve only if the
    /// new device shows the same one.
    pub fn link_verification_code(&self, code: String) -> FfiResult<String> {
        let haven = self.shared.haven()?;
        Ok(haven.link_inspect(&code)?.verification_code())
    }

    /// Existing device, after the person confirmed the verification codes match: adds the new
    /// device under `device_name` and sends it the keys through the mailbox.
    pub async fn link_approve(&self, code: String, device_name: String) -> FfiResult<()> {
        let haven = self.shared.haven()?;
        let invitation = haven.link_inspect(&code)?;
        runtime::spawn("link_approve", Some(&self.shared.inflight), async move {
            Ok(haven.link_approve(&invitation, &device_name).await?)
        })
        .await
    }

    // ---- public content ---------------------------------------------------------------------

    /// Articles, newest first. Works offline (bundled content) and without an account.
    pub async fn articles(&self) -> FfiResult<Vec<ArticleSummary>> {
        self.blocking("articles", |haven| {
            Ok(haven
                .articles()
                .into_iter()
                .map(ArticleSummary::from)
                .collect())
        })
        .await
    }

    /// One article by id or slug. Errors: `NotFound`.
    pub async fn article(&self, id_or_slug: String) -> FfiResult<Article> {
        self.blocking("article", move |haven| {
            let article = haven.article(&id_or_slug)?;
            let id = haven
                .articles()
                .into_iter()
                .find(|summary| summary.slug == article.slug)
                .map(|summary| summary.id.to_hex())
                .unwrap_or_default();
            Ok(Article::from_core(id, article))
        })
        .await
    }

    /// Resource lists (hotlines, services), optionally only one region's (`US`,
    /// `campus:<name>`, `city:<name>`; case-insensitive). Works offline.
    pub async fn resources(&self, region: Option<String>) -> FfiResult<Vec<ResourceList>> {
        self.blocking("resources", move |haven| {
            Ok(haven
                .resources(region.as_deref())?
                .into_iter()
                .map(ResourceList::from)
                .collect())
        })
        .await
    }

    // ---- the journal ------------------------------------------------------------------------

    /// Entries, most recently updated first.
    pub async fn journal_list(&self) -> FfiResult<Vec<EntrySummary>> {
        self.blocking("journal_list", |haven| {
            Ok(haven
                .journal_list()
                .into_iter()
                .map(EntrySummary::from)
                .collect())
        })
        .await
    }

    /// One entry, whole. Errors: `InvalidInput` (not an id), `NotFound`.
    pub async fn journal_get(&self, id: String) -> FfiResult<JournalEntry> {
        let doc = parse_id(&id)?;
        self.blocking("journal_get", move |haven| {
            Ok(JournalEntry::from_core(
                doc.to_hex(),
                haven.journal_get(&doc)?,
            ))
        })
        .await
    }

    /// Creates an entry; returns its id. Saved at once (encrypted, fsynced) and queued for sync.
    pub async fn journal_create(&self, title: String, body: String) -> FfiResult<String> {
        self.blocking("journal_create", move |haven| {
            Ok(haven.journal_create(&title, &body)?.to_hex())
        })
        .await
    }

    /// Replaces the title (stored as a diff, so concurrent edits elsewhere merge).
    pub async fn journal_set_title(&self, id: String, title: String) -> FfiResult<()> {
        self.edit_entry("journal_set_title", id, move |haven, id| {
            haven.journal_set_title(id, &title)
        })
        .await
    }

    /// Replaces the body (stored as a diff, so concurrent edits elsewhere merge).
    pub async fn journal_set_body(&self, id: String, body: String) -> FfiResult<()> {
        self.edit_entry("journal_set_body", id, move |haven, id| {
            haven.journal_set_body(id, &body)
        })
        .await
    }

    /// Deletes `delete` UTF-16 code units at `position` (UTF-16 code units, as Kotlin/Java
    /// `String`, Android `Editable` and `NSRange` count) of the body and inserts `insert` there.
    /// Commit per editing burst, not per keystroke.
    ///
    /// Errors: `InvalidInput` when the range leaves the body or splits a character (an emoji is
    /// two code units), `NotFound`.
    pub async fn journal_splice_body(
        &self,
        id: String,
        position: u32,
        delete: u32,
        insert: String,
    ) -> FfiResult<()> {
        self.edit_entry("journal_splice_body", id, move |haven, id| {
            // Converted under the core's lock: an edit or sync cannot shift the body in between.
            let mut invalid = None;
            let result = haven.journal_splice_body_located(id, &insert, |body| {
                match text::utf16_range_to_scalars(body, position, delete) {
                    Ok(range) => Some(range),
                    Err(error) => {
                        invalid = Some(error.to_string());
                        None
                    }
                }
            });
            match invalid {
                Some(reason) => Err(HavenError::Invalid(reason)),
                None => result,
            }
        })
        .await
    }

    /// Appends to the body.
    pub async fn journal_append_body(&self, id: String, text: String) -> FfiResult<()> {
        self.edit_entry("journal_append_body", id, move |haven, id| {
            haven.journal_append_body(id, &text)
        })
        .await
    }

    /// Sets or clears the mood.
    pub async fn journal_set_mood(&self, id: String, mood: Option<String>) -> FfiResult<()> {
        self.edit_entry("journal_set_mood", id, move |haven, id| {
            haven.journal_set_mood(id, mood.as_deref())
        })
        .await
    }

    pub async fn journal_set_tags(&self, id: String, tags: Vec<String>) -> FfiResult<()> {
        self.edit_entry("journal_set_tags", id, move |haven, id| {
            haven.journal_set_tags(id, &tags)
        })
        .await
    }

    /// Deletes an entry on every device of the account.
    pub async fn journal_delete(&self, id: String) -> FfiResult<()> {
        self.edit_entry("journal_delete", id, move |haven, id| {
            haven.journal_delete(id)
        })
        .await
    }

    /// Replaces an entry by a copy without its edit history (a new document holding it as it
    /// reads now, in one revision) and deletes the old one, in one commit; returns the copy's
    /// id. The old entry's history leaves this device's store at once, the server and the
    /// other devices at the next sync (the server keeps its tombstone and the old envelopes'
    /// ids; its storage engine may keep their ciphertext until it compacts).
    ///
    /// Errors: `InvalidInput` (not an id), `NotFound`, `NotLoggedIn`.
    pub async fn journal_purge_history(&self, id: String) -> FfiResult<String> {
        let doc = parse_id(&id)?;
        self.blocking("journal_purge_history", move |haven| {
            Ok(haven.journal_purge_history(&doc)?.to_hex())
        })
        .await
    }

    /// An entry's edit history, oldest first.
    pub async fn journal_history(&self, id: String) -> FfiResult<Vec<EntryChange>> {
        let doc = parse_id(&id)?;
        self.blocking("journal_history", move |haven| {
            Ok(haven
                .journal_history(&doc)?
                .into_iter()
                .map(EntryChange::from)
                .collect())
        })
        .await
    }

    // ---- saved resources and reading state --------------------------------------------------

    pub async fn saved_resources(&self) -> FfiResult<SavedResources> {
        self.blocking("saved_resources", |haven| {
            Ok(SavedResources::from(haven.saved_resources()?))
        })
        .await
    }

    /// Saves a public resource, by its list's slug and its name in that list.
    pub async fn save_resource(&self, list_slug: String, name: String) -> FfiResult<()> {
        self.blocking("save_resource", move |haven| {
            Ok(haven.save_resource(&list_slug, &name)?)
        })
        .await
    }

    pub async fn remove_saved_resource(&self, list_slug: String, name: String) -> FfiResult<()> {
        self.blocking("remove_saved_resource", move |haven| {
            Ok(haven.remove_saved_resource(&list_slug, &name)?)
        })
        .await
    }

    /// Adds a trusted contact (`id` = `None`) or updates one; returns its id.
    pub async fn put_contact(
        &self,
        id: Option<String>,
        name: String,
        phone: String,
        note: Option<String>,
    ) -> FfiResult<String> {
        let id = match id {
            Some(id) => parse_id(&id)?,
            None => new_contact_id(&OsRandom),
        };
        self.blocking("put_contact", move |haven| {
            haven.put_contact(&CoreTrustedContact {
                id,
                name,
                phone,
                note,
            })?;
            Ok(id.to_hex())
        })
        .await
    }

    /// Bookmarks and reading progress; positions in UTF-16 code units of the article body.
    pub async fn reading_state(&self) -> FfiResult<ReadingState> {
        self.blocking("reading_state", |haven| {
            let state = haven.reading_state()?;
            let bookmarks = state
                .bookmarks
                .into_iter()
                .map(|(slug, added_at)| Bookmark { slug, added_at })
                .collect();
            let progress = state
                .progress
                .into_iter()
                .map(|(slug, progress)| {
                    let body = haven.article(&slug).ok().map(|article| article.body);
                    ReadingProgress::from_core(slug, &progress, body.as_deref())
                })
                .collect();
            Ok(ReadingState {
                bookmarks,
                progress,
            })
        })
        .await
    }

    pub async fn set_bookmark(&self, slug: String, on: bool) -> FfiResult<()> {
        self.blocking("set_bookmark", move |haven| {
            Ok(haven.set_bookmark(&slug, on)?)
        })
        .await
    }

    /// Records how far an article was read: `fraction_ppm` in parts per million (0 ..=
    /// 1_000_000), `position` in UTF-16 code units of its body. Errors: `NotFound` (no such
    /// article), `InvalidInput`.
    pub async fn set_reading_progress(
        &self,
        slug: String,
        fraction_ppm: u32,
        position: u64,
    ) -> FfiResult<()> {
        self.blocking("set_reading_progress", move |haven| {
            let body = haven.article(&slug)?.body;
            let position = text::utf16_to_scalars(&body, position)?;
            Ok(haven.set_reading_progress(&slug, fraction_ppm, position)?)
        })
        .await
    }

    // ---- sync -------------------------------------------------------------------------------

    /// The honest sync status (never "synced" while anything is pending). Never blocks.
    pub fn status(&self) -> FfiResult<SyncStatus> {
        guard("status", || {
            Ok(SyncStatus::from(self.shared.haven()?.status()))
        })
    }

    /// One sync round (public content; with an account also push, pull and snapshots), bounded
    /// by `timeout_ms`. The `ChangeListener` hears about it before this returns.
    ///
    /// Errors: `Timeout` (nothing lost; try again), `Network`, `Cancelled`, `NotLoggedIn`,
    /// `Revoked`, `Erased`, `InvalidInput` (`timeout_ms` = 0).
    #[uniffi::method(default(timeout_ms = 30000))]
    pub async fn sync_once(&self, timeout_ms: u64) -> FfiResult<SyncReport> {
        if timeout_ms == 0 {
            return Err(HavenFfiError::invalid("timeout_ms must be above 0"));
        }
        let haven = self.shared.haven()?;
        let shared = Arc::clone(&self.shared);
        runtime::spawn("sync_once", Some(&self.shared.inflight), async move {
            let bound = Duration::from_millis(timeout_ms);
            let round = match tokio::time::timeout(bound, haven.sync_once()).await {
                Ok(round) => round,
                Err(_) => Err(HavenError::Timeout),
            };
            shared.after_round(&haven, &round, false);
            wipe_if_due(&shared, haven);
            Ok(SyncReport::from(&round?))
        })
        .await
    }

    /// Starts live sync on the library's runtime: a round now, then one each time the server
    /// announces a change; network trouble is retried with backoff. Each round reaches the
    /// `ChangeListener`. Starting it twice is a no-op. It ends by itself only when retrying cannot
    /// help (revoked, erased, logged out); the listener then gets the final status.
    pub fn start_live(&self) -> FfiResult<()> {
        guard("start_live", || {
            let haven = self.shared.haven()?;
            let runtime = runtime::runtime()?;
            let mut live = lock(&self.shared.live);
            live.paused = false;
            if live.task.as_ref().is_some_and(LiveTask::is_running) {
                return Ok(());
            }
            let (stop, stopped) = oneshot::channel::<()>();
            let shared = Arc::clone(&self.shared);
            let handle = runtime.spawn(async move {
                let run = haven.run_live(
                    async {
                        let _ = stopped.await;
                    },
                    |round| shared.after_round(&haven, round, true),
                );
                match std::panic::AssertUnwindSafe(run).catch_unwind().await {
                    Ok(Ok(())) => log(LogLevel::Info, "live sync stopped".into()),
                    Ok(Err(error)) => {
                        log(
                            LogLevel::Warn,
                            format!("live sync ended: {}", HavenFfiError::from(error)),
                        );
                        if let Some(listener) = shared.listener() {
                            let status = SyncStatus::from(haven.status());
                            notify("on_sync_status", || listener.on_sync_status(status));
                        }
                        wipe_if_due(&shared, haven);
                    }
                    Err(payload) => {
                        runtime::panicked("live sync", payload);
                    }
                }
            });
            live.task = Some(LiveTask { stop, handle });
            Ok(())
        })
    }

    /// Stops live sync for the app going to the background (Android `onStop`, iOS
    /// `sceneDidEnterBackground`); `resume_live` starts it again. A no-op when it is not running.
    pub fn pause_live(&self) -> FfiResult<()> {
        guard("pause_live", || {
            self.shared.haven()?;
            let was_running = self.shared.stop_live();
            lock(&self.shared.live).paused |= was_running;
            Ok(())
        })
    }

    /// Starts live sync again if `pause_live` stopped it (app back in the foreground).
    pub fn resume_live(&self) -> FfiResult<()> {
        let paused = guard("resume_live", || {
            self.shared.haven()?;
            Ok(std::mem::take(&mut lock(&self.shared.live).paused))
        })?;
        if paused { self.start_live() } else { Ok(()) }
    }

    /// Stops live sync (logout, settings); `resume_live` will not restart it.
    pub fn stop_live(&self) {
        let _ = guard("stop_live", || {
            self.shared.stop_live();
            lock(&self.shared.live).paused = false;
            Ok(())
        });
    }

    /// Whether live sync is running.
    pub fn is_live(&self) -> bool {
        guard("is_live", || {
            Ok(lock(&self.shared.live)
                .task
                .as_ref()
                .is_some_and(LiveTask::is_running))
        })
        .unwrap_or(false)
    }

    /// Sets (or with `None` removes) the listener told about changes after each sync round.
    pub fn set_change_listener(&self, listener: Option<Arc<dyn ChangeListener>>) {
        *self
            .shared
            .listener
            .write()
            .unwrap_or_else(|poison| poison.into_inner()) = listener;
    }

    /// Aborts every operation of this client that is in flight (a sync, a login, a store call
    /// not yet started); each fails with `Cancelled`. uniffi has no cancellation of its own, so
    /// this is how an app cancels, e.g. when a screen closes. Store writes are atomic: one in
    /// progress finishes or never happened. Live sync is not affected (see `stop_live`).
    /// Returns how many operations were aborted.
    pub fn cancel(&self) -> u32 {
        guard("cancel", || Ok(self.shared.inflight.cancel_all() as u32)).unwrap_or(0)
    }

    // ---- export, close, wipe ----------------------------------------------------------------

    /// Writes the journal, decrypted, into `out_dir`. Plain text: show
    /// `plaintext_export_warning()` first.
    pub async fn export_journal(
        &self,
        format: ExportFormat,
        out_dir: String,
    ) -> FfiResult<ExportReport> {
        self.blocking("export_journal", move |haven| {
            Ok(ExportReport::from(haven.export_journal(
                format.into(),
                std::path::Path::new(&out_dir),
            )?))
        })
        .await
    }

    /// Seals the whole journal (every entry with its full history, and its deletions) under
    /// `passphrase` into one backup file's bytes; show `backup_notice()`. Works offline and
    /// without an account's keys. Takes one Argon2id (about a second of CPU), on a library
    /// thread.
    ///
    /// Errors: `InvalidInput` (a passphrase below the password strength floor), `Storage`.
    pub async fn backup_journal(&self, passphrase: String) -> FfiResult<JournalBackup> {
        self.blocking("backup_journal", move |haven| {
            let passphrase = zeroize::Zeroizing::new(passphrase);
            Ok(JournalBackup::from(haven.backup_journal(&passphrase)?))
        })
        .await
    }

    /// Merges a backup made by `backup_journal` (on any profile, of any account) into the
    /// journal here: missing entries are added under their ids and queued for sync, entries
    /// both have are merged (no word lost on either side), entries deleted here stay deleted,
    /// entries the backup records as deleted are deleted here. Restoring twice changes nothing.
    /// Takes one Argon2id. All or nothing: on any error nothing changed.
    ///
    /// Errors: `Backup` (wrong passphrase, damaged, altered, not a backup, too large, weak
    /// parameters, a newer format), `NotLoggedIn`, `Storage`.
    pub async fn restore_backup(
        &self,
        data: Vec<u8>,
        passphrase: String,
    ) -> FfiResult<RestoreReport> {
        self.blocking("restore_backup", move |haven| {
            let passphrase = zeroize::Zeroizing::new(passphrase);
            Ok(RestoreReport::from(
                haven.restore_backup(&data, &passphrase)?,
            ))
        })
        .await
    }

    /// Whether `shutdown` or `wipe` was called.
    pub fn is_closed(&self) -> bool {
        self.shared.haven().is_err()
    }

    /// Closes the profile: stops live sync, aborts what is in flight, flushes and releases the
    /// profile's lock. Later calls fail with `Closed`; closing twice fails with `Closed`.
    /// (Not named `close`: Kotlin objects already have `AutoCloseable.close()`, which frees the
    /// handle.)
    pub async fn shutdown(&self) -> FfiResult<()> {
        let shared = Arc::clone(&self.shared);
        runtime::spawn("shutdown", None, async move {
            if let Some(haven) = shared.retire(CLOSE_WAIT).await? {
                runtime::spawn_blocking("shutdown", None, move || Ok(haven.close()?)).await?;
            }
            Ok(())
        })
        .await
    }

    /// Panic wipe: destroys the platform key (`KeyStore.delete`) first, then every file of the
    /// profile. Nothing of it stays readable; the client is closed. Not cancellable. Safe to call
    /// at any moment: while a sync runs (it is aborted), after `shutdown`, or twice (the second
    /// reports zeros).
    ///
    /// `log_out_first`: end this device's session on the server before wiping, waiting at most
    /// 3 s (best effort: offline or refused, the wipe goes on).
    ///
    /// Errors: `Storage` when a step failed (the others were still done): call it again.
    #[uniffi::method(default(log_out_first = false))]
    pub async fn wipe(&self, log_out_first: bool) -> FfiResult<WipeReport> {
        let shared = Arc::clone(&self.shared);
        runtime::spawn("wipe", None, wipe_shared(shared, log_out_first)).await
    }

    /// Asks every device of the account to wipe itself (as `wipe` does) when the account is
    /// erased from another device. A device wipes only on proof: a random token kept in the
    /// account's encrypted journal settings, which the erasing device reveals to the server, so
    /// a server that merely claims an erasure cannot trigger it. The erasing device keeps its
    /// copy. Takes effect on a device once it has synced after this.
    ///
    /// When a round learns of such an erasure, this client wipes its profile by itself (the
    /// round fails with `Erased`; `is_closed()` then turns true and the listener hears the
    /// final status first).
    ///
    /// Errors: `NotLoggedIn`, `Storage`.
    pub async fn set_wipe_on_erasure(&self, on: bool) -> FfiResult<()> {
        self.blocking("set_wipe_on_erasure", move |haven| {
            Ok(haven.set_wipe_on_erasure(on)?)
        })
        .await
    }

    /// Whether the account asks its devices to wipe themselves on erasure.
    pub async fn wipe_on_erasure(&self) -> FfiResult<bool> {
        self.blocking("wipe_on_erasure", |haven| Ok(haven.wipe_on_erasure()?))
            .await
    }
}

/// The panic wipe of a client's profile: key first, then every file; the client is closed.
async fn wipe_shared(shared: Arc<Shared>, log_out_first: bool) -> FfiResult<WipeReport> {
    // Already closed: the files are still there to wipe.
    let haven = shared.retire(WIPE_WAIT).await.unwrap_or(None);
    if log_out_first
        && let Some(haven) = &haven
        && haven.username().is_some()
    {
        let _ = tokio::time::timeout(WIPE_LOGOUT_WAIT, haven.logout()).await;
    }
    let dir = shared.data_dir.clone();
    let key_store = Arc::clone(&shared.key_store);
    runtime::spawn_blocking("wipe", None, move || {
        if let Some(haven) = haven {
            // Release the store's files and lock first; the wipe below does the rest
            // (and does it even if closing failed).
            let _ = haven.close();
        }
        wipe_dir(&dir, key_store.as_ref())
    })
    .await
}

/// After a round: if the account was erased elsewhere and asked for it, wipes the profile on a
/// task of its own (the wipe stops live sync and aborts operations in flight, which may include
/// the caller).
fn wipe_if_due(shared: &Arc<Shared>, haven: Arc<Haven>) {
    if !haven.wipe_due() {
        return;
    }
    drop(haven);
    log(
        LogLevel::Warn,
        "the account was erased and asked its devices to wipe: wiping this profile".into(),
    );
    let shared = Arc::clone(shared);
    match runtime::runtime() {
        Ok(runtime) => {
            runtime.spawn(async move {
                if let Err(error) = wipe_shared(shared, false).await {
                    log(LogLevel::Error, format!("the erasure wipe failed: {error}"));
                }
            });
        }
        Err(error) => log(
            LogLevel::Error,
            format!("the erasure wipe could not start: {error}"),
        ),
    }
}

/// Wipes a profile directory through the core's wipe (key first, then files).
pub(crate) fn wipe_dir(
    dir: &std::path::Path,
    key_store: &dyn CoreKeyStore,
) -> FfiResult<WipeReport> {
    haven_core::local_store::wipe(dir, key_store)
        .map(WipeReport::from)
        .map_err(|error| HavenFfiError::Storage {
            reason: format!("the wipe is incomplete (call wipe again): {error}"),
        })
}
