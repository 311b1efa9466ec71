//! Local-only journal mode end to end (issue 7): a journal kept on the device with no account,
//! moved into an account on register or login; an account's journal paused on one device and
//! resumed. Real `Haven` profiles against the real server on loopback; every envelope a device
//! sends goes through a recorder, so "never reaches the server" is checked, not assumed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use haven_core::client::SyncState;
use haven_core::local_store::KeyStore;
use haven_core::remote::ServerApi;
use haven_core::{Haven, HavenConfig, HavenError};
use haven_tests::chaos::ChaosRemote;
use haven_tests::{TestServer, memory_keystore, spawn_server, test_options, watchdog};

const PASSWORD: &str = "correct horse battery staple";
const FLOW_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

async fn server() -> TestServer {
    spawn_server(
        Arc::new(haven_server::store::memory::MemoryStore::new()),
        test_options(),
    )
    .await
    .unwrap()
}

/// A device whose every push is recorded.
struct Device {
    dir: tempfile::TempDir,
    keys: Arc<dyn KeyStore>,
    recorder: Arc<ChaosRemote>,
    haven: Haven,
}

impl Device {
    fn new(server: &TestServer) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let keys = memory_keystore();
        let recorder = ChaosRemote::recording(&server.url).unwrap();
        let haven = Self::open(&dir, &keys, &recorder);
        Self {
            dir,
            keys,
            recorder,
            haven,
        }
    }

    fn open(
        dir: &tempfile::TempDir,
        keys: &Arc<dyn KeyStore>,
        recorder: &Arc<ChaosRemote>,
    ) -> Haven {
        let remote: Arc<dyn ServerApi> = recorder.clone();
        Haven::open(HavenConfig::new(dir.path()), Arc::clone(keys), remote).unwrap()
    }

    /// Closes and reopens the profile (what survives is what was committed).
    fn reopen(self) -> Self {
        let Self {
            dir,
            keys,
            recorder,
            haven,
        } = self;
        haven.close().unwrap();
        let haven = Self::open(&dir, &keys, &recorder);
        Self {
            dir,
            keys,
            recorder,
            haven,
        }
    }
}

fn bodies(haven: &Haven) -> Vec<String> {
    let mut bodies: Vec<String> = haven
        .journal_list()
        .iter()
        .map(|entry| haven.journal_get(&entry.id).unwrap().body)
        .collect();
    bodies.sort();
    bodies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_without_an_account_stays_on_the_device_until_registration_moves_it() {
    let _watchdog = watchdog("local journal then register", FLOW_LIMIT);
    let server = server().await;
    let a = Device::new(&server);

    // No account and no local journal: the journal is not there yet, and says how to get one.
    assert!(matches!(
        a.haven.journal_create("t", "b"),
        Err(HavenError::NotLoggedIn)
    ));
    assert!(!a.haven.is_local_only());
    assert!(matches!(
        a.haven.set_local_only(false),
        Err(HavenError::NotLoggedIn)
    ));

    a.haven.set_local_only(true).unwrap();
    a.haven.set_local_only(true).unwrap(); // idempotent
    assert!(a.haven.is_local_only());
    let kept = a
        .haven
        .journal_create("kept", "written with no account")
        .unwrap();
    let edited = a.haven.journal_create("edited", "first words").unwrap();
    a.haven.journal_append_body(&edited, ", then more").unwrap();
    let gone = a
        .haven
        .journal_create("gone", "deleted before sync")
        .unwrap();
    a.haven.journal_delete(&gone).unwrap();
    a.haven.save_resource("us-national", "RAINN").unwrap();
    a.haven.set_bookmark("consent-basics", true).unwrap();
    let status = a.haven.status();
    assert_eq!(status.state, SyncState::LocalOnly);
    assert_eq!(status.pending, 0, "a local journal makes no envelopes");

    // Syncing fetches public content only; nothing of the journal is sent.
    a.haven.sync_once().await.unwrap();
    assert!(a.recorder.pushed().is_empty());
    assert_eq!(a.haven.status().state, SyncState::LocalOnly);

    // It survives a restart as it was.
    let a = a.reopen();
    assert!(a.haven.is_local_only());
    assert_eq!(
        bodies(&a.haven),
        vec!["first words, then more", "written with no account"]
    );
    assert!(a.recorder.pushed().is_empty());

    // Registering moves it into the account and uploads all of it, history included.
    a.haven.register("nadia", PASSWORD, "phone").await.unwrap();
    assert!(!a.haven.is_local_only());
    assert!(a.haven.status().pending > 0);
    a.haven.sync_once().await.unwrap();
    assert!(!a.recorder.pushed().is_empty());
    assert_eq!(a.haven.status().state, SyncState::Synced);

    // A second device of the account reads everything, with the same ids and histories, and
    // the saved resource and the bookmark made before the account existed.
    let b = Device::new(&server);
    b.haven.login("nadia", PASSWORD, "laptop").await.unwrap();
    b.haven.sync_once().await.unwrap();
    assert_eq!(bodies(&b.haven), bodies(&a.haven));
    assert_eq!(b.haven.journal_get(&kept).unwrap().title, "kept");
    assert!(b.haven.journal_get(&gone).is_err());
    assert_eq!(
        b.haven.journal_history(&edited).unwrap().len(),
        a.haven.journal_history(&edited).unwrap().len()
    );
    assert!(
        b.haven
            .saved_resources()
            .unwrap()
            .resources
            .iter()
            .any(|saved| saved.resource_name == "RAINN")
    );
    assert!(
        b.haven
            .reading_state()
            .unwrap()
            .bookmarks
            .contains_key("consent-basics")
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_in_merges_a_local_journal_into_an_existing_account() {
    let _watchdog = watchdog("local journal then login", FLOW_LIMIT);
    let server = server().await;
    let a = Device::new(&server);
    a.haven.register("omar", PASSWORD, "phone").await.unwrap();
    a.haven
        .journal_create("on the account", "synced before")
        .unwrap();
    a.haven.save_resource("us-national", "RAINN").unwrap();
    a.haven.sync_once().await.unwrap();

    let b = Device::new(&server);
    b.haven.set_local_only(true).unwrap();
    b.haven
        .journal_create("local", "written offline on b")
        .unwrap();
    b.haven
        .save_resource("us-national", "988 Lifeline")
        .unwrap();
    b.haven.login("omar", PASSWORD, "laptop").await.unwrap();
    b.haven.sync_once().await.unwrap();
    a.haven.sync_once().await.unwrap();

    let expected = vec!["synced before", "written offline on b"];
    assert_eq!(bodies(&a.haven), expected);
    assert_eq!(bodies(&b.haven), expected);
    for device in [&a, &b] {
        let mut saved: Vec<String> = device
            .haven
            .saved_resources()
            .unwrap()
            .resources
            .into_iter()
            .map(|saved| saved.resource_name)
            .collect();
        saved.sort();
        assert_eq!(saved, vec!["988 Lifeline", "RAINN"]);
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_switched_to_local_only_uploads_nothing_until_switched_back() {
    let _watchdog = watchdog("account local-only", FLOW_LIMIT);
    let server = server().await;
    let (a, b) = (Device::new(&server), Device::new(&server));
    a.haven.register("lena", PASSWORD, "phone").await.unwrap();
    b.haven.login("lena", PASSWORD, "laptop").await.unwrap();
    a.haven
        .journal_create("shared", "before the switch")
        .unwrap();
    a.haven.sync_once().await.unwrap();
    b.haven.sync_once().await.unwrap();
    let pushed_before = a.recorder.pushed().len();

    a.haven.set_local_only(true).unwrap();
    assert!(a.haven.is_local_only());
    let private = a
        .haven
        .journal_create("private", "only on this phone for now")
        .unwrap();
    a.haven.sync_once().await.unwrap();
    assert_eq!(
        a.recorder.pushed().len(),
        pushed_before,
        "nothing was pushed"
    );
    assert_eq!(a.haven.status().state, SyncState::LocalOnly);
    assert!(a.haven.status().pending > 0, "the edit waits on the device");
    // b, still syncing, neither sees the entry nor sends anything a would pull meanwhile.
    b.haven
        .journal_create("from b", "written while a is local-only")
        .unwrap();
    b.haven.sync_once().await.unwrap();
    assert!(b.haven.journal_get(&private).is_err());
    a.haven.sync_once().await.unwrap();
    assert_eq!(
        bodies(&a.haven),
        vec!["before the switch", "only on this phone for now"]
    );

    // It survives a restart, and switching back uploads what waited.
    let a = a.reopen();
    assert!(a.haven.is_local_only());
    a.haven.set_local_only(false).unwrap();
    assert!(!a.haven.is_local_only());
    a.haven.sync_once().await.unwrap();
    assert!(a.recorder.pushed().len() > pushed_before);
    b.haven.sync_once().await.unwrap();
    let expected = vec![
        "before the switch",
        "only on this phone for now",
        "written while a is local-only",
    ];
    assert_eq!(bodies(&a.haven), expected);
    assert_eq!(bodies(&b.haven), expected);
    assert_eq!(a.haven.status().state, SyncState::Synced);
    server.stop().await.unwrap();
}

/// Push batching with jitter (a metadata measure, same module as local-only: both decide what
/// leaves the device when): live sync holds edits for a random while, and none is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_sync_with_push_jitter_delivers_every_edit() {
    let _watchdog = watchdog("push jitter", FLOW_LIMIT);
    let server = server().await;
    let (a, b) = (Device::new(&server), Device::new(&server));
    a.haven.register("ines", PASSWORD, "phone").await.unwrap();
    b.haven.login("ines", PASSWORD, "laptop").await.unwrap();
    a.haven
        .set_push_jitter(std::time::Duration::from_millis(300))
        .unwrap();
    let a = Arc::new(a);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (rounds_tx, mut rounds) = tokio::sync::mpsc::unbounded_channel::<usize>();
    let live = {
        let a = Arc::clone(&a);
        tokio::spawn(async move {
            a.haven
                .run_live(
                    async {
                        let _ = stop_rx.await;
                    },
                    move |round| {
                        let _ = rounds_tx.send(round.as_ref().map_or(0, |report| report.pushed));
                    },
                )
                .await
        })
    };
    // The first (full, unjittered) round is done before the edits, so they take the live path.
    tokio::time::timeout(haven_tests::WAIT, rounds.recv())
        .await
        .unwrap()
        .unwrap();
    let sent_before = a.recorder.pushed().len();
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(
            a.haven
                .journal_create(&format!("entry {n}"), "held, then sent")
                .unwrap(),
        );
    }
    let deadline = tokio::time::Instant::now() + haven_tests::WAIT;
    loop {
        b.haven.sync_once().await.unwrap();
        if ids.iter().all(|id| b.haven.journal_get(id).is_ok()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the edits did not arrive"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let _ = stop_tx.send(());
    live.await.unwrap().unwrap();
    let mut pushed = 0;
    while let Ok(count) = rounds.try_recv() {
        pushed += count;
    }
    // Each entry and its index change, all sent by the jittered live rounds, none twice.
    assert_eq!(pushed, 2 * ids.len());
    assert_eq!(a.recorder.pushed().len() - sent_before, pushed);
    server.stop().await.unwrap();
}

/// A local-only journal takes a backup and restores one: the way a person with no account keeps
/// a copy, or moves her journal out of an account she is leaving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_only_journal_backs_up_and_restores_without_an_account() {
    const PASSPHRASE: &str = "seven quiet lanterns over the bay";
    let _watchdog = watchdog("local-only backup", FLOW_LIMIT);
    let server = server().await;
    let (leaving, local) = (Device::new(&server), Device::new(&server));
    leaving
        .haven
        .register("rosa", PASSWORD, "phone")
        .await
        .unwrap();
    let kept = leaving.haven.journal_create("kept", "taken along").unwrap();
    leaving
        .haven
        .journal_append_body(&kept, ", every word")
        .unwrap();
    let backup = leaving.haven.backup_journal(PASSPHRASE).unwrap();

    local.haven.set_local_only(true).unwrap();
    let report = local
        .haven
        .restore_backup(&backup.file, PASSPHRASE)
        .unwrap();
    assert_eq!(report.added, 1);
    assert_eq!(bodies(&local.haven), vec!["taken along, every word"]);
    assert_eq!(
        local.haven.journal_history(&kept).unwrap().len(),
        leaving.haven.journal_history(&kept).unwrap().len()
    );
    assert_eq!(
        local.haven.status().pending,
        0,
        "nothing queued for a server"
    );
    local.haven.sync_once().await.unwrap();
    assert!(local.recorder.pushed().is_empty());

    // And backs up its own journal, which restores elsewhere.
    let again = local.haven.backup_journal(PASSPHRASE).unwrap();
    assert_eq!(again.entries, 1);
    server.stop().await.unwrap();
}
