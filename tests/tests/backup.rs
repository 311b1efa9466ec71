//! Encrypted backup and import, and purge of one entry's history (issue 7), end to end: real
//! `Haven` profiles against the real server on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use haven_core::client::backup::RestoreReport;
use haven_core::crypto::backup::BackupError;
use haven_core::documents::JournalEntry;
use haven_core::{Haven, HavenError};
use haven_protocol::DocId;
use haven_tests::{TestServer, device, watchdog};

const PASSWORD: &str = "correct horse battery staple";
const PASSPHRASE: &str = "seven quiet lanterns over the bay";
const FLOW_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Every entry, whole, by id.
fn journal(haven: &Haven) -> BTreeMap<DocId, JournalEntry> {
    haven
        .journal_list()
        .into_iter()
        .map(|summary| (summary.id, haven.journal_get(&summary.id).unwrap()))
        .collect()
}

/// A journal with history: edits, mood, tags, and one deleted entry.
fn write_journal(haven: &Haven) -> Vec<DocId> {
    let first = haven
        .journal_create("First night", "I could not sleep.")
        .unwrap();
    haven.journal_append_body(&first, " Then I wrote.").unwrap();
    haven.journal_set_mood(&first, Some("tired")).unwrap();
    haven
        .journal_set_tags(&first, &["night".into(), "sleep".into()])
        .unwrap();
    let second = haven
        .journal_create("Tuesday", "Talked to Sam. ✨")
        .unwrap();
    haven.journal_splice_body(&second, 0, 6, "Called").unwrap();
    let gone = haven
        .journal_create("Gone", "deleted before the backup")
        .unwrap();
    haven.journal_delete(&gone).unwrap();
    vec![first, second]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restores_on_a_fresh_profile_and_reaches_its_other_devices() {
    let _watchdog = watchdog("backup round trip", FLOW_LIMIT);
    let server = TestServer::start().await.unwrap();
    let a = device(&server);
    a.haven.register("ana", PASSWORD, "phone").await.unwrap();
    let ids = write_journal(&a.haven);
    let backup = a.haven.backup_journal(PASSPHRASE).unwrap();
    assert_eq!((backup.entries, backup.deletions), (2, 1));
    assert!(
        !backup
            .file
            .windows(b"could not sleep".len())
            .any(|window| window == b"could not sleep"),
        "the file is ciphertext"
    );

    // Another account on a fresh profile, never synced with the first.
    let b = device(&server);
    b.haven.register("bea", PASSWORD, "tablet").await.unwrap();
    let report = b.haven.restore_backup(&backup.file, PASSPHRASE).unwrap();
    assert_eq!(
        report,
        RestoreReport {
            added: 2,
            ..RestoreReport::default()
        }
    );
    assert_eq!(journal(&b.haven), journal(&a.haven));
    for id in &ids {
        assert_eq!(
            b.haven.journal_history(id).unwrap().len(),
            a.haven.journal_history(id).unwrap().len(),
            "the whole history came along"
        );
    }

    // Idempotent: a second import changes nothing, queues nothing.
    let pending = b.haven.status().pending;
    let again = b.haven.restore_backup(&backup.file, PASSPHRASE).unwrap();
    assert_eq!(
        again,
        RestoreReport {
            unchanged: 2,
            ..RestoreReport::default()
        }
    );
    assert!(!again.changed());
    assert_eq!(b.haven.status().pending, pending);

    // The restored entries sync to the account's second device like any new entry.
    b.haven.sync_once().await.unwrap();
    let b2 = device(&server);
    b2.haven.login("bea", PASSWORD, "laptop").await.unwrap();
    b2.haven.sync_once().await.unwrap();
    assert_eq!(journal(&b2.haven), journal(&a.haven));
    server.stop().await.unwrap();
}

/// A backup needs neither the server nor a live account: a device whose account was erased keeps
/// its journal, backs it up with the server gone, and the file restores on another server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_accounts_device_backs_up_offline() {
    let _watchdog = watchdog("backup offline", FLOW_LIMIT);
    let server = TestServer::start().await.unwrap();
    let a = device(&server);
    a.haven.register("ines", PASSWORD, "phone").await.unwrap();
    write_journal(&a.haven);
    a.haven.sync_once().await.unwrap();
    a.haven.delete_account(PASSWORD).await.unwrap();
    server.stop().await.unwrap();
    let backup = a.haven.backup_journal(PASSPHRASE).unwrap();
    assert_eq!(backup.entries, 2);

    let elsewhere = TestServer::start().await.unwrap();
    let b = device(&elsewhere);
    b.haven.register("ines", PASSWORD, "phone").await.unwrap();
    let report = b.haven.restore_backup(&backup.file, PASSPHRASE).unwrap();
    assert_eq!(report.added, 2);
    assert_eq!(journal(&b.haven), journal(&a.haven));
    elsewhere.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_merges_concurrent_edits_and_deletions_stay_final() {
    let _watchdog = watchdog("backup merge", FLOW_LIMIT);
    let server = TestServer::start().await.unwrap();
    let (d1, d2) = (device(&server), device(&server));
    d1.haven.register("cara", PASSWORD, "phone").await.unwrap();
    let shared = d1.haven.journal_create("Shared", "middle").unwrap();
    let kept_deleted = d1.haven.journal_create("Deleted on d2", "x").unwrap();
    let deleted_in_backup = d1.haven.journal_create("Deleted on d1", "y").unwrap();
    d1.haven.sync_once().await.unwrap();
    d2.haven.login("cara", PASSWORD, "laptop").await.unwrap();
    d2.haven.sync_once().await.unwrap();

    // Offline on both: d1 edits, deletes and backs up; d2 edits the same entry and deletes
    // another.
    d1.haven.journal_append_body(&shared, " end").unwrap();
    d1.haven.journal_delete(&deleted_in_backup).unwrap();
    let backup = d1.haven.backup_journal(PASSPHRASE).unwrap();
    d2.haven
        .journal_splice_body(&shared, 0, 0, "start ")
        .unwrap();
    d2.haven.journal_delete(&kept_deleted).unwrap();

    let report = d2.haven.restore_backup(&backup.file, PASSPHRASE).unwrap();
    assert_eq!(
        report,
        RestoreReport {
            merged: 1,
            deleted: 1,
            kept_deleted: 1,
            ..RestoreReport::default()
        }
    );
    assert_eq!(
        d2.haven.journal_get(&shared).unwrap().body,
        "start middle end",
        "both edits kept"
    );
    assert!(
        d2.haven.journal_get(&kept_deleted).is_err(),
        "stays deleted"
    );
    assert!(d2.haven.journal_get(&deleted_in_backup).is_err());
    assert_eq!(d2.haven.journal_list().len(), 1);
    let again = d2.haven.restore_backup(&backup.file, PASSPHRASE).unwrap();
    assert!(!again.changed(), "{again:?}");

    // Both devices converge on the merge.
    d2.haven.sync_once().await.unwrap();
    d1.haven.sync_once().await.unwrap();
    d2.haven.sync_once().await.unwrap();
    assert_eq!(journal(&d1.haven), journal(&d2.haven));
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_passphrase_or_a_tampered_file_changes_nothing() {
    let _watchdog = watchdog("backup refusals", FLOW_LIMIT);
    let server = TestServer::start().await.unwrap();
    let a = device(&server);
    a.haven.register("dana", PASSWORD, "phone").await.unwrap();
    write_journal(&a.haven);
    assert!(matches!(
        a.haven.backup_journal("short"),
        Err(HavenError::WeakPassword(_))
    ));
    let backup = a.haven.backup_journal(PASSPHRASE).unwrap();

    let b = device(&server);
    b.haven.register("emil", PASSWORD, "phone").await.unwrap();
    let mine = b.haven.journal_create("Mine", "kept").unwrap();
    let before = journal(&b.haven);
    let pending = b.haven.status().pending;
    let refused = |file: &[u8], passphrase: &str| -> BackupError {
        match b.haven.restore_backup(file, passphrase) {
            Err(HavenError::Backup(error)) => error,
            other => panic!("expected a backup error, got {other:?}"),
        }
    };
    assert_eq!(
        refused(&backup.file, "seven quiet lanterns over the sea"),
        BackupError::WrongPassphrase
    );
    let mut flipped = backup.file.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x80;
    assert_eq!(refused(&flipped, PASSPHRASE), BackupError::WrongPassphrase);
    let mut salt = backup.file.clone();
    salt[30] ^= 0x01;
    assert_eq!(refused(&salt, PASSPHRASE), BackupError::WrongPassphrase);
    assert_eq!(
        refused(&backup.file[..backup.file.len() / 2], PASSPHRASE),
        BackupError::Truncated
    );
    assert_eq!(
        refused(b"{\"journal\": []}", PASSPHRASE),
        BackupError::NotABackup
    );
    assert_eq!(journal(&b.haven), before);
    assert_eq!(b.haven.status().pending, pending);
    assert_eq!(b.haven.journal_get(&mine).unwrap().body, "kept");
    server.stop().await.unwrap();
}

/// A change made to a backup's contents before it is sealed again.
type Spoil = Box<dyn Fn(&mut haven_core::crypto::backup::BackupContents)>;

/// A backup sealed with the right passphrase but holding unusable entries (written by a buggy or
/// hostile maker): the whole restore is refused, typed, before anything changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authentic_backup_with_an_unusable_entry_restores_nothing() {
    use haven_core::crypto::backup::{open_backup, seal_backup};
    use zeroize::Zeroizing;

    let _watchdog = watchdog("backup bad entries", FLOW_LIMIT);
    let server = TestServer::start().await.unwrap();
    let a = device(&server);
    a.haven.register("gil", PASSWORD, "phone").await.unwrap();
    write_journal(&a.haven);
    let good = open_backup(
        &a.haven.backup_journal(PASSPHRASE).unwrap().file,
        PASSPHRASE,
    )
    .unwrap();

    let b = device(&server);
    b.haven.register("hana", PASSWORD, "phone").await.unwrap();
    b.haven.journal_create("Mine", "kept").unwrap();
    let before = journal(&b.haven);
    let pending = b.haven.status().pending;
    let article = b.haven.articles()[0].id;
    let random = haven_core::env::OsRandom;
    let variants: [(&str, Spoil); 3] = [
        (
            "not Automerge",
            Box::new(|contents| contents.entries[1].automerge = Zeroizing::new(vec![0x85; 40])),
        ),
        (
            "an article's id",
            Box::new(move |contents| contents.entries[1].id = article),
        ),
        (
            "listed twice",
            Box::new(|contents| {
                let twin = contents.entries[0].clone();
                contents.entries.push(twin);
            }),
        ),
    ];
    for (what, spoil) in variants {
        let mut contents = good.clone();
        spoil(&mut contents);
        let kdf = haven_core::crypto::new_kdf_params(&random);
        let file = seal_backup(&contents, PASSPHRASE, &kdf, &random).unwrap();
        match b.haven.restore_backup(&file, PASSPHRASE) {
            Err(HavenError::Backup(BackupError::BadEntry { .. })) => {}
            other => panic!("{what}: {other:?}"),
        }
        assert_eq!(journal(&b.haven), before, "{what}");
        assert_eq!(b.haven.status().pending, pending, "{what}");
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purging_history_leaves_a_copy_with_one_revision_on_every_device() {
    let _watchdog = watchdog("purge history", FLOW_LIMIT);
    let server = TestServer::start().await.unwrap();
    let (d1, d2) = (device(&server), device(&server));
    d1.haven.register("fern", PASSWORD, "phone").await.unwrap();
    d2.haven.login("fern", PASSWORD, "laptop").await.unwrap();
    let old = d1.haven.journal_create("Draft", "what he said").unwrap();
    d1.haven.journal_set_body(&old, "I am safe now").unwrap();
    d1.haven.journal_set_mood(&old, Some("calm")).unwrap();
    d1.haven.sync_once().await.unwrap();
    d2.haven.sync_once().await.unwrap();
    assert!(d2.haven.journal_history(&old).unwrap().len() >= 3);
    // An edit still in the outbox when the history is purged never leaves the device.
    d1.haven.journal_append_body(&old, ".").unwrap();
    let expected = d1.haven.journal_get(&old).unwrap();
    assert_eq!(d1.haven.status().pending, 1);

    let copy = d1.haven.journal_purge_history(&old).unwrap();
    // The copy, the index's change and the old entry's tombstone; the waiting edit is gone.
    assert_eq!(d1.haven.status().pending, 3);
    assert_ne!(copy, old);
    assert_eq!(d1.haven.journal_get(&copy).unwrap(), expected);
    let history = d1.haven.journal_history(&copy).unwrap();
    assert_eq!(history.len(), 1, "{history:?}");
    assert!(matches!(
        d1.haven.journal_history(&old),
        Err(HavenError::NotFound { .. })
    ));
    assert_eq!(d1.haven.journal_list().len(), 1);
    // A backup made now holds the copy, nothing of the old document.
    let backup = d1.haven.backup_journal(PASSPHRASE).unwrap();
    assert_eq!((backup.entries, backup.deletions), (1, 1));

    d1.haven.sync_once().await.unwrap();
    d2.haven.sync_once().await.unwrap();
    assert_eq!(
        d2.haven
            .journal_list()
            .iter()
            .map(|e| e.id)
            .collect::<Vec<_>>(),
        vec![copy]
    );
    assert_eq!(d2.haven.journal_get(&copy).unwrap(), expected);
    assert_eq!(d2.haven.journal_history(&copy).unwrap().len(), 1);
    assert!(d2.haven.journal_get(&old).is_err());
    // The server dropped the old document's envelopes: only its tombstone is live.
    let space = d1.haven.space().unwrap();
    let live = server.state.store.live_ids(&space, &old).await.unwrap();
    assert_eq!(live.len(), 1, "{live:?}");
    // A new device of the account never sees the old document at all.
    let d3 = device(&server);
    d3.haven.login("fern", PASSWORD, "tablet").await.unwrap();
    d3.haven.sync_once().await.unwrap();
    assert_eq!(journal(&d3.haven), journal(&d1.haven));
    server.stop().await.unwrap();
}
