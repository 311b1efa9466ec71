//! The client engine end to end: real `Haven` profiles (redb on disk, encrypted) syncing through
//! the real server on loopback with `HttpRemote`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use haven_core::client::SyncState;
use haven_core::local_store::KeyStore;
use haven_core::remote::NoServer;
use haven_core::remote::http::{HttpOptions, HttpRemote};
use haven_core::{Haven, HavenConfig, HavenError};
use haven_protocol::DocId;
use haven_server::store::Store;
use haven_server::store::sled_kv::SledStore;
use haven_tests::{TestServer, spawn_server, test_options};

const PASSWORD: &str = "correct horse battery staple";

/// The server as a deployment would run it for development: trusting the dev content key and
/// publishing the sample content, over a sled store in `dir`.
async fn server_in(dir: &Path) -> TestServer {
    let store: Arc<dyn Store> = Arc::new(SledStore::open(dir, 8 << 20).unwrap());
    let server = spawn_server(store, options_in(dir)).await.unwrap();
    haven_server::public_content::publish_sample_if_empty(&server.state, None)
        .await
        .unwrap();
    server
}

/// Options of a server over the data directory `dir`: the dev content key trusted, and the
/// master-key file in `dir` (as `haven-server --data dir` has it), so a restart opens the keys.
fn options_in(dir: &Path) -> haven_server::server::AppOptions {
    let mut options = test_options();
    options.content_keys = vec![haven_core::content::bundled_dev_content_key()];
    options.master_keys = haven_server::storage_keys::MasterKeySource::File(
        dir.join(haven_server::master_key::FILE_NAME),
    );
    options
}

fn keystore() -> Arc<dyn KeyStore> {
    haven_tests::memory_keystore()
}

fn open(dir: &Path, keystore: &Arc<dyn KeyStore>, url: &str) -> Haven {
    haven_tests::open_profile(dir, keystore, url).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_devices_write_offline_sync_and_merge() {
    let server_dir = tempfile::tempdir().unwrap();
    let server = server_in(server_dir.path()).await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (keys_a, keys_b) = (keystore(), keystore());

    // Device A: bundled content before any network, then an account.
    let a = open(dir_a.path(), &keys_a, &server.url);
    assert!(
        a.articles()
            .iter()
            .any(|article| article.slug == "him-though")
    );
    let phrase = a.register("river-stone", PASSWORD, "phone").await.unwrap();
    assert_eq!(phrase.words().len(), 24);
    let first = a
        .journal_create("First night", "I could not sleep. CANARY-e2e-journal-41")
        .unwrap();
    let second = a.journal_create("Tuesday", "Talked to Sam.").unwrap();
    a.journal_append_body(&second, " It helped.").unwrap();
    assert_eq!(a.status().state, SyncState::Pending);
    let report = a.sync_once().await.unwrap();
    assert!(report.pushed >= 4, "{report:?}");
    assert_eq!(a.status().state, SyncState::Synced, "{:?}", a.status());

    // Device B logs in and sees everything.
    let b = open(dir_b.path(), &keys_b, &server.url);
    b.login("river-stone", PASSWORD, "laptop").await.unwrap();
    let devices = a.devices().await.unwrap();
    let names: Vec<(&str, bool)> = devices
        .iter()
        .map(|d| (d.name.as_str(), d.current))
        .collect();
    assert_eq!(
        names,
        [("phone", true), ("laptop", false)],
        "B joined the bundle under its name"
    );
    b.sync_once().await.unwrap();
    let titles: Vec<String> = b
        .journal_list()
        .into_iter()
        .map(|entry| entry.title)
        .collect();
    assert_eq!(titles.len(), 2, "{titles:?}");
    assert_eq!(
        b.journal_get(&second).unwrap().body,
        "Talked to Sam. It helped."
    );

    // Both edit the same entry offline, at different places; both edits survive.
    a.journal_splice_body(&first, 0, 0, "Monday. ").unwrap();
    b.journal_append_body(&first, " Then I wrote this.")
        .unwrap();
    b.journal_set_title(&first, "First night, again").unwrap();
    a.sync_once().await.unwrap();
    b.sync_once().await.unwrap();
    a.sync_once().await.unwrap();
    let on_a = a.journal_get(&first).unwrap();
    let on_b = b.journal_get(&first).unwrap();
    assert_eq!(on_a, on_b);
    assert_eq!(
        on_a.body,
        "Monday. I could not sleep. CANARY-e2e-journal-41 Then I wrote this."
    );
    assert_eq!(on_a.title, "First night, again");
    assert_eq!(a.status().state, SyncState::Synced);
    assert_eq!(b.status().state, SyncState::Synced);

    // A deletion reaches the other device.
    b.journal_delete(&second).unwrap();
    b.sync_once().await.unwrap();
    a.sync_once().await.unwrap();
    assert_eq!(a.journal_list().len(), 1);
    assert!(matches!(
        a.journal_get(&second),
        Err(HavenError::NotFound { .. })
    ));

    // The server's files never held the journal text.
    a.close().unwrap();
    b.close().unwrap();
    server.stop().await.unwrap();
    assert_no_canary(server_dir.path(), b"CANARY-e2e-journal-41");
    assert_no_canary(dir_a.path(), b"CANARY-e2e-journal-41");
}

fn assert_no_canary(dir: &Path, canary: &[u8]) {
    let files = haven_tests::files_under(dir).unwrap();
    assert!(!files.is_empty(), "nothing scanned in {}", dir.display());
    if let Some(path) = haven_tests::file_containing(&files, canary) {
        panic!("plaintext found in {}", path.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_profile_with_no_network_has_articles_and_hotlines() {
    let dir = tempfile::tempdir().unwrap();
    let haven = Haven::open(HavenConfig::new(dir.path()), keystore(), Arc::new(NoServer)).unwrap();
    assert!(haven.articles().len() >= 3);
    let lists = haven.resources(Some("US")).unwrap();
    let rainn = lists
        .iter()
        .flat_map(|list| &list.resources)
        .find(|resource| resource.phone.as_deref() == Some("+18006564673"))
        .expect("RAINN's hotline is bundled");
    assert!(rainn.is_24_7);
    let article = haven.article("consent-basics").unwrap();
    assert!(!article.content_warnings.is_empty());
    // Without a server, syncing fails honestly and loses nothing.
    assert!(haven.sync_once().await.is_err());
    assert!(matches!(
        haven.journal_create("x", "y"),
        Err(HavenError::NotLoggedIn)
    ));
}

/// Edits leave before the round's pulls (they reach other devices sooner), and a push that
/// fails does not keep public content (the hotlines) from being pulled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_pushes_first_and_pulls_public_content_even_when_the_push_fails() {
    use haven_tests::chaos::ChaosRemote;
    let server_dir = tempfile::tempdir().unwrap();
    let server = server_in(server_dir.path()).await;
    let dir = tempfile::tempdir().unwrap();
    let recorder = ChaosRemote::recording(&server.url).unwrap();
    let haven = Haven::open(HavenConfig::new(dir.path()), keystore(), recorder.clone()).unwrap();
    haven.register("first", PASSWORD, "phone").await.unwrap();
    haven.sync_once().await.unwrap();
    haven.journal_create("Monday", "slept badly").unwrap();
    recorder.take_calls();
    haven.sync_once().await.unwrap();
    let calls = recorder.take_calls();
    assert_eq!(
        calls[..3],
        ["push private", "pull public", "pull private"],
        "{calls:?}"
    );

    recorder.fail_pushes(true);
    haven.journal_create("Tuesday", "a little better").unwrap();
    assert!(haven.sync_once().await.is_err());
    assert_eq!(recorder.take_calls(), ["push private", "pull public"]);
    // Nothing is lost: the entry goes out with the next round that can push.
    recorder.fail_pushes(false);
    haven.sync_once().await.unwrap();
    assert_eq!(haven.status().pending, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_weak_passwords_and_busy_profiles_are_typed_errors() {
    let server_dir = tempfile::tempdir().unwrap();
    let server = server_in(server_dir.path()).await;
    let dir = tempfile::tempdir().unwrap();
    let keys = keystore();
    let haven = open(dir.path(), &keys, &server.url);
    assert!(matches!(
        haven.register("weak-one", "password", "phone").await,
        Err(HavenError::WeakPassword(_))
    ));
    haven
        .register("typed-errors", PASSWORD, "phone")
        .await
        .unwrap();
    // A second open of the same profile, in this process.
    let remote = HttpRemote::new(&server.url, HttpOptions::default()).unwrap();
    assert!(matches!(
        Haven::open(
            HavenConfig::new(dir.path()),
            Arc::clone(&keys),
            Arc::new(remote)
        ),
        Err(HavenError::ProfileInUse)
    ));
    let other_dir = tempfile::tempdir().unwrap();
    let other = open(other_dir.path(), &keystore(), &server.url);
    assert!(matches!(
        other
            .login("typed-errors", "not the password at all", "laptop")
            .await,
        Err(HavenError::WrongCredentials)
    ));
    assert!(matches!(
        haven.journal_get(&haven_protocol::Bytes([7; 16])),
        Err(HavenError::NotFound { .. })
    ));
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_a_profile_keeps_everything_and_wipe_leaves_nothing() {
    let server_dir = tempfile::tempdir().unwrap();
    let server = server_in(server_dir.path()).await;
    let dir = tempfile::tempdir().unwrap();
    let keys = keystore();
    let haven = open(dir.path(), &keys, &server.url);
    haven
        .register("reopen-user", PASSWORD, "phone")
        .await
        .unwrap();
    let id = haven.journal_create("Kept", "Across restarts.").unwrap();
    haven.close().unwrap();

    // Offline edits survive a restart, and sync after it.
    let haven = open(dir.path(), &keys, &server.url);
    assert_eq!(haven.journal_get(&id).unwrap().body, "Across restarts.");
    haven.journal_append_body(&id, " Still here.").unwrap();
    assert!(haven.status().pending > 0);
    haven.close().unwrap();
    let haven = open(dir.path(), &keys, &server.url);
    haven.sync_once().await.unwrap();
    assert_eq!(haven.status().pending, 0);
    assert_eq!(
        haven.journal_get(&id).unwrap().body,
        "Across restarts. Still here."
    );

    haven.wipe().unwrap();
    assert!(!dir.path().exists() || std::fs::read_dir(dir.path()).unwrap().next().is_none());
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reopened_profile_holds_every_edit_across_compactions() {
    // Each edit stores its change as the document's increment, and every 32 the document is
    // compacted: a restart must load exactly what was edited, history included.
    let server_dir = tempfile::tempdir().unwrap();
    let server = server_in(server_dir.path()).await;
    let dir = tempfile::tempdir().unwrap();
    let keys = keystore();
    let haven = open(dir.path(), &keys, &server.url);
    haven
        .register("increments-user", PASSWORD, "phone")
        .await
        .unwrap();
    let id = haven.journal_create("Increments", "start").unwrap();
    for edit in 0..70 {
        haven
            .journal_splice_body(&id, 0, 0, &format!("{edit} "))
            .unwrap();
        if edit % 9 == 0 {
            haven
                .journal_set_tags(&id, &[format!("tag-{edit}")])
                .unwrap();
        }
    }
    let entry = haven.journal_get(&id).unwrap();
    let history = haven.journal_history(&id).unwrap();
    assert_eq!(history.len(), 1 + 70 + 8);
    haven.close().unwrap();

    let haven = open(dir.path(), &keys, &server.url);
    assert_eq!(haven.journal_get(&id).unwrap(), entry);
    assert_eq!(haven.journal_history(&id).unwrap(), history);
    haven.close().unwrap();
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_edits_are_snapshotted_and_a_new_device_loads_the_snapshot() {
    let server_dir = tempfile::tempdir().unwrap();
    let server = server_in(server_dir.path()).await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = open(dir_a.path(), &keystore(), &server.url);
    a.register("snapshot-user", PASSWORD, "phone")
        .await
        .unwrap();
    let id = a.journal_create("Long", "").unwrap();
    let mut expected = String::new();
    let mut snapshots = 0;
    for round in 0..45 {
        let line = format!("line {round}\n");
        a.journal_append_body(&id, &line).unwrap();
        expected.push_str(&line);
        if round % 10 == 9 {
            snapshots += a.sync_once().await.unwrap().snapshots;
        }
    }
    snapshots += a.sync_once().await.unwrap().snapshots;
    assert!(snapshots > 0, "a snapshot was pushed");
    let space = a.space().unwrap();
    let doc_live = server.state.store.live_ids(&space, &id).await.unwrap();
    assert!(
        doc_live.len() < 10,
        "the server pruned the covered envelopes: {}",
        doc_live.len()
    );

    let b = open(dir_b.path(), &keystore(), &server.url);
    b.login("snapshot-user", PASSWORD, "laptop").await.unwrap();
    b.sync_once().await.unwrap();
    assert_eq!(b.journal_get(&id).unwrap().body, expected);
    server.stop().await.unwrap();
}

/// A round pulls back what it just pushed (the log is one per account); those envelopes are
/// already here, so they are not opened or applied again. Another device applies them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_does_not_apply_its_own_pushes_again() {
    let server_dir = tempfile::tempdir().unwrap();
    let server = server_in(server_dir.path()).await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = open(dir_a.path(), &keystore(), &server.url);
    a.register("echo-user", PASSWORD, "phone").await.unwrap();
    a.sync_once().await.unwrap();
    let id = a.journal_create("Echo", "pushed once").unwrap();
    a.journal_append_body(&id, ", edited").unwrap();
    let report = a.sync_once().await.unwrap();
    assert!(report.pushed >= 2, "{report:?}");
    assert_eq!(report.pulled, 0, "its own envelopes came back: {report:?}");
    assert!(report.changed.is_empty(), "{report:?}");

    let b = open(dir_b.path(), &keystore(), &server.url);
    b.login("echo-user", PASSWORD, "laptop").await.unwrap();
    let report = b.sync_once().await.unwrap();
    assert!(report.pulled >= 2, "{report:?}");
    assert_eq!(b.journal_get(&id).unwrap().body, "pushed once, edited");
    b.journal_append_body(&id, " twice").unwrap();
    b.sync_once().await.unwrap();
    let report = a.sync_once().await.unwrap();
    assert_eq!(
        report.pulled, 1,
        "the other device's edit is applied: {report:?}"
    );
    assert_eq!(
        a.journal_get(&id).unwrap().body,
        "pushed once, edited twice"
    );
    server.stop().await.unwrap();
}

/// Snapshots follow weight, not only count: an entry whose few change envelopes outweigh a
/// snapshot is compacted to one envelope; a lightly edited one is left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_whose_changes_outweigh_a_snapshot_is_compacted_on_the_server() {
    let server_dir = tempfile::tempdir().unwrap();
    let server = server_in(server_dir.path()).await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = open(dir_a.path(), &keystore(), &server.url);
    a.register("weight-user", PASSWORD, "phone").await.unwrap();
    let light = a.journal_create("Light", "one line").unwrap();
    let heavy = a.journal_create("Heavy", "").unwrap();
    // Eight edits of a ~1 KB entry, each pushed on its own like an app syncing as it goes.
    for part in 0..8 {
        a.journal_append_body(&heavy, &format!("part {part}: {}\n", "words ".repeat(20)))
            .unwrap();
        a.sync_once().await.unwrap();
    }
    let report = a.sync_once().await.unwrap();
    let space = a.space().unwrap();
    let heavy_live = server.state.store.live_ids(&space, &heavy).await.unwrap();
    let light_live = server.state.store.live_ids(&space, &light).await.unwrap();
    assert_eq!(
        heavy_live.len(),
        1,
        "one snapshot replaced the heavy entry's envelopes"
    );
    assert_eq!(light_live.len(), 1, "the light entry kept its one change");
    assert_eq!(report.snapshots, 0, "nothing more to compact: {report:?}");

    let b = open(dir_b.path(), &keystore(), &server.url);
    b.login("weight-user", PASSWORD, "laptop").await.unwrap();
    b.sync_once().await.unwrap();
    assert_eq!(
        b.journal_get(&heavy).unwrap().body,
        a.journal_get(&heavy).unwrap().body
    );
    assert_eq!(b.journal_get(&light).unwrap().body, "one line");
    server.stop().await.unwrap();
}

/// A fresh device's pull is mostly snapshots, decoded ahead on several cores when a page holds
/// enough of them (16; this test makes 40): every entry reads back exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_device_loads_a_page_of_snapshots() {
    let server_dir = tempfile::tempdir().unwrap();
    let server = server_in(server_dir.path()).await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = open(dir_a.path(), &keystore(), &server.url);
    a.register("many-snapshots", PASSWORD, "phone")
        .await
        .unwrap();
    let mut ids = Vec::new();
    for entry in 0..40 {
        let id = a.journal_create(&format!("Entry {entry}"), "").unwrap();
        for part in 0..6 {
            a.journal_append_body(&id, &format!("{entry}.{part} {}\n", "words ".repeat(15)))
                .unwrap();
        }
        ids.push(id);
    }
    a.sync_once().await.unwrap();
    let report = a.sync_once().await.unwrap();
    assert_eq!(
        report.snapshots, 0,
        "all compacted in the first round: {report:?}"
    );
    let space = a.space().unwrap();
    for id in &ids {
        assert_eq!(
            server.state.store.live_ids(&space, id).await.unwrap().len(),
            1
        );
    }
    // A change after a snapshot, in the same page: what was read from the snapshot alone (its
    // summary) must not be what the list shows.
    a.journal_set_title(&ids[3], "Renamed after its snapshot")
        .unwrap();
    a.sync_once().await.unwrap();

    let b = open(dir_b.path(), &keystore(), &server.url);
    b.login("many-snapshots", PASSWORD, "laptop").await.unwrap();
    let report = b.sync_once().await.unwrap();
    assert!(report.skipped.is_empty(), "{report:?}");
    for id in &ids {
        let (mine, theirs) = (a.journal_get(id).unwrap(), b.journal_get(id).unwrap());
        assert_eq!((mine.title, mine.body), (theirs.title, theirs.body));
    }
    let listed = b.journal_list();
    assert_eq!(listed, a.journal_list());
    assert!(
        listed
            .iter()
            .any(|entry| entry.id == ids[3] && entry.title == "Renamed after its snapshot")
    );
    // The loaded documents keep taking edits, which reach the first device.
    b.journal_append_body(&ids[7], "from the laptop").unwrap();
    b.sync_once().await.unwrap();
    a.sync_once().await.unwrap();
    assert!(
        a.journal_get(&ids[7])
            .unwrap()
            .body
            .ends_with("from the laptop")
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_sync_brings_another_devices_edit_without_asking() {
    let server_dir = tempfile::tempdir().unwrap();
    let server = server_in(server_dir.path()).await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Arc::new(open(dir_a.path(), &keystore(), &server.url));
    a.register("live-user", PASSWORD, "phone").await.unwrap();
    let b = open(dir_b.path(), &keystore(), &server.url);
    b.login("live-user", PASSWORD, "laptop").await.unwrap();

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (rounds_tx, mut rounds) = tokio::sync::mpsc::unbounded_channel();
    let live = {
        let a = Arc::clone(&a);
        tokio::spawn(async move {
            a.run_live(
                async {
                    let _ = stop_rx.await;
                },
                move |round| {
                    let _ = rounds_tx.send(
                        round
                            .as_ref()
                            .map(|report| report.changed.len())
                            .map_err(|e| e.to_string()),
                    );
                },
            )
            .await
        })
    };
    // The first round happens on its own.
    tokio::time::timeout(haven_tests::WAIT, rounds.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();

    let id = b
        .journal_create("From the laptop", "Written while the phone listens.")
        .unwrap();
    b.sync_once().await.unwrap();
    let deadline = tokio::time::Instant::now() + haven_tests::WAIT;
    while a.journal_get(&id).is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the live feed did not bring the entry"
        );
        let _ = tokio::time::timeout(haven_tests::WAIT, rounds.recv()).await;
    }
    assert_eq!(
        a.journal_get(&id).unwrap().body,
        "Written while the phone listens."
    );

    // A's own edit goes out without A asking: live sync pushes local changes.
    a.journal_append_body(&id, " The phone answers.").unwrap();
    let deadline = tokio::time::Instant::now() + haven_tests::WAIT;
    loop {
        b.sync_once().await.unwrap();
        if b.journal_get(&id)
            .unwrap()
            .body
            .ends_with("The phone answers.")
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "live sync did not push the local edit"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    stop_tx.send(()).unwrap();
    tokio::time::timeout(haven_tests::WAIT, live)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    server.stop().await.unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
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

/// Opens the sled store of `dir`, retrying while the previous server's handle is released.
async fn reopen_sled(dir: &Path) -> SledStore {
    let deadline = tokio::time::Instant::now() + haven_tests::WAIT;
    loop {
        match SledStore::open(dir, 8 << 20) {
            Ok(store) => return store,
            Err(error) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "sled stayed locked: {error}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    }
}

/// The server's data directory is restored from an older copy while the devices keep theirs:
/// within three sync rounds every change some device holds is back on the server and on every
/// device (issue 5, part 3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restored_from_an_old_backup_is_healed_by_its_devices() {
    let server_dir = tempfile::tempdir().unwrap();
    let backup = tempfile::tempdir().unwrap();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (keys_a, keys_b) = (keystore(), keystore());

    let server = server_in(server_dir.path()).await;
    let a = open(dir_a.path(), &keys_a, &server.url);
    a.register("restored-user", PASSWORD, "phone")
        .await
        .unwrap();
    let early = a
        .journal_create("Before the backup", "kept in the backup")
        .unwrap();
    a.sync_once().await.unwrap();
    let b = open(dir_b.path(), &keys_b, &server.url);
    b.login("restored-user", PASSWORD, "laptop").await.unwrap();
    b.sync_once().await.unwrap();

    // The backup is taken here (server stopped, files copied).
    let store = Arc::downgrade(&server.state.store);
    server.stop().await.unwrap();
    while store.strong_count() > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let old = reopen_sled(server_dir.path()).await;
    drop(old);
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    copy_dir(server_dir.path(), backup.path());

    // Life goes on: both devices write and sync.
    let server = spawn_server(
        Arc::new(reopen_sled(server_dir.path()).await),
        options_in(server_dir.path()),
    )
    .await
    .unwrap();
    let (a, b) = (
        reconnect(a, dir_a.path(), &keys_a, &server.url),
        reconnect(b, dir_b.path(), &keys_b, &server.url),
    );
    let late_a = a
        .journal_create("After the backup, A", "only on A and the lost server")
        .unwrap();
    a.journal_append_body(&early, " + an edit the backup lacks")
        .unwrap();
    a.sync_once().await.unwrap();
    let late_b = b
        .journal_create("After the backup, B", "only on B and the lost server")
        .unwrap();
    b.sync_once().await.unwrap();
    a.sync_once().await.unwrap();
    let store = Arc::downgrade(&server.state.store);
    server.stop().await.unwrap();
    while store.strong_count() > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;

    // The disaster: the server comes back from the old backup.
    std::fs::remove_dir_all(server_dir.path()).unwrap();
    copy_dir(backup.path(), server_dir.path());
    let server = spawn_server(
        Arc::new(reopen_sled(server_dir.path()).await),
        options_in(server_dir.path()),
    )
    .await
    .unwrap();
    let (a, b) = (
        reconnect(a, dir_a.path(), &keys_a, &server.url),
        reconnect(b, dir_b.path(), &keys_b, &server.url),
    );

    // At most three rounds each; the first one notices the lost tail and heals.
    let mut healed = 0;
    for _ in 0..3 {
        healed += usize::from(a.sync_once().await.unwrap().healed);
        healed += usize::from(b.sync_once().await.unwrap().healed);
    }
    assert_eq!(healed, 2, "each device healed once");
    for device in [&a, &b] {
        let ids: HashSet<DocId> = device
            .journal_list()
            .into_iter()
            .map(|entry| entry.id)
            .collect();
        assert_eq!(ids, HashSet::from([early, late_a, late_b]));
        assert_eq!(
            device.journal_get(&early).unwrap().body,
            "kept in the backup + an edit the backup lacks"
        );
    }
    // And a device that logs in fresh gets it all from the healed server.
    let dir_c = tempfile::tempdir().unwrap();
    let c = open(dir_c.path(), &keystore(), &server.url);
    c.login("restored-user", PASSWORD, "tablet").await.unwrap();
    c.sync_once().await.unwrap();
    assert_eq!(c.journal_list().len(), 3);
    assert_eq!(
        c.journal_get(&late_b).unwrap().body,
        "only on B and the lost server"
    );
    server.stop().await.unwrap();
}

/// Reopens a profile against another server URL (the same server restarted on a new port).
fn reconnect(haven: Haven, dir: &Path, keys: &Arc<dyn KeyStore>, url: &str) -> Haven {
    haven.close().unwrap();
    open(dir, keys, url)
}

/// DESIGN.md §3 and issue 5: a server that serves an envelope again (a replay, under a new seq)
/// is noticed by its counter, reported, and changes nothing; the counters survive a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_replaying_envelopes_is_noticed_and_changes_nothing() {
    use haven_core::remote::ServerApi;
    use haven_tests::chaos::{ChaosRemote, Faults};

    let server_dir = tempfile::tempdir().unwrap();
    let server = server_in(server_dir.path()).await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (keys_a, keys_b) = (keystore(), keystore());
    let a = open(dir_a.path(), &keys_a, &server.url);
    a.register("replayed", PASSWORD, "phone").await.unwrap();
    let first = a.journal_create("first", "kept once").unwrap();
    a.journal_create("second", "also kept").unwrap();
    a.sync_once().await.unwrap();

    let inner: Arc<dyn ServerApi> =
        Arc::new(HttpRemote::new(&server.url, HttpOptions::default()).unwrap());
    let chaos = Arc::new(ChaosRemote::new(inner, 7, Faults::NONE));
    let open_b = || {
        let remote: Arc<dyn ServerApi> = chaos.clone();
        Haven::open(HavenConfig::new(dir_b.path()), Arc::clone(&keys_b), remote).unwrap()
    };
    let mut b = open_b();
    b.login("replayed", PASSWORD, "tablet").await.unwrap();
    let clean = b.sync_once().await.unwrap();
    assert!(clean.skipped.is_empty(), "{:?}", clean.skipped);

    chaos.set_faults(Faults {
        replay: 100,
        ..Faults::NONE
    });
    for round in 0..2 {
        a.journal_append_body(&first, &format!(" edit {round}"))
            .unwrap();
        a.sync_once().await.unwrap();
        let report = b.sync_once().await.unwrap();
        assert_eq!(
            report.skipped.len(),
            1,
            "round {round}: one replay, reported: {:?}",
            report.skipped
        );
        assert!(report.skipped[0].contains("replayed envelope"));
        // The counters are kept on disk: a restarted device still knows what it applied.
        b.close().unwrap();
        b = open_b();
        assert_eq!(
            b.journal_get(&first).unwrap(),
            a.journal_get(&first).unwrap()
        );
        assert_eq!(b.journal_list().len(), 2);
    }
    assert_eq!(chaos.replayed(), 2);
    server.stop().await.unwrap();
}
