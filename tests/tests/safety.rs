//! Issue 7's flows end to end: real `Haven` profiles against the real server on loopback.
//! Password change, revocation of a taken phone (new root key, epoch and password), recovery
//! with the phrase.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use haven_core::{Haven, HavenError};
use haven_protocol::DocId;
use haven_tests::{TestServer, device, memory_keystore, spawn_server, test_options, watchdog};

const PASSWORD: &str = "correct horse battery staple";
const NEW_PASSWORD: &str = "a different long passphrase";

/// Every flow ends within this, or the test process fails (instead of hanging CI).
const FLOW_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

fn bodies(haven: &Haven) -> Vec<String> {
    let mut bodies: Vec<String> = haven
        .journal_list()
        .iter()
        .map(|entry| haven.journal_get(&entry.id).unwrap().body)
        .collect();
    bodies.sort();
    bodies
}

fn has(haven: &Haven, id: &DocId) -> bool {
    haven.journal_get(id).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_ends_other_sessions_and_keeps_everything() {
    let _watchdog = watchdog(
        "a_password_change_ends_other_sessions_and_keeps_everything",
        FLOW_LIMIT,
    );
    let server = TestServer::start().await.unwrap();
    let (a, b) = (device(&server), device(&server));
    a.haven.register("mira", PASSWORD, "phone").await.unwrap();
    b.haven.login("mira", PASSWORD, "laptop").await.unwrap();
    a.haven.journal_create("before", "written before").unwrap();
    a.haven.sync_once().await.unwrap();
    b.haven.sync_once().await.unwrap();

    let wrong = a
        .haven
        .change_password("not the password at all", NEW_PASSWORD)
        .await;
    assert!(
        matches!(wrong, Err(HavenError::WrongCredentials)),
        "{wrong:?}"
    );
    let weak = a.haven.change_password(PASSWORD, "12345678").await;
    assert!(matches!(weak, Err(HavenError::WeakPassword(_))), "{weak:?}");

    a.haven
        .change_password(PASSWORD, NEW_PASSWORD)
        .await
        .unwrap();
    a.haven.journal_create("after", "written after").unwrap();
    a.haven.sync_once().await.unwrap();

    // The laptop's session ended: it must log in again, with the new password only.
    let ended = b.haven.sync_once().await;
    assert!(matches!(ended, Err(HavenError::NotLoggedIn)), "{ended:?}");
    let old = b.haven.login("mira", PASSWORD, "laptop").await;
    assert!(matches!(old, Err(HavenError::WrongCredentials)), "{old:?}");
    b.haven.login("mira", NEW_PASSWORD, "laptop").await.unwrap();
    b.haven.sync_once().await.unwrap();
    assert_eq!(bodies(&b.haven), ["written after", "written before"]);

    // A new device with the new password reads everything.
    let c = device(&server);
    c.haven.login("mira", NEW_PASSWORD, "tablet").await.unwrap();
    c.haven.sync_once().await.unwrap();
    assert_eq!(bodies(&c.haven), ["written after", "written before"]);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_phone_is_cut_off_and_the_others_keep_all_history() {
    let _watchdog = watchdog(
        "a_revoked_phone_is_cut_off_and_the_others_keep_all_history",
        FLOW_LIMIT,
    );
    let server = TestServer::start().await.unwrap();
    let (phone, laptop, taken) = (device(&server), device(&server), device(&server));
    phone
        .haven
        .register("noor", PASSWORD, "phone")
        .await
        .unwrap();
    laptop
        .haven
        .login("noor", PASSWORD, "laptop")
        .await
        .unwrap();
    taken
        .haven
        .login("noor", PASSWORD, "old phone")
        .await
        .unwrap();
    let before = phone.haven.journal_create("before", "history").unwrap();
    phone.haven.sync_once().await.unwrap();
    laptop.haven.sync_once().await.unwrap();
    taken.haven.sync_once().await.unwrap();
    assert!(has(&taken.haven, &before));

    let listed = phone.haven.devices().await.unwrap();
    let target = listed
        .iter()
        .find(|device| device.name == "old phone")
        .expect("the taken phone is listed under its name")
        .device_id;
    let own = phone.haven.device_id();
    let itself = phone
        .haven
        .revoke_device(&own, PASSWORD, NEW_PASSWORD)
        .await;
    assert!(matches!(itself, Err(HavenError::Invalid(_))), "{itself:?}");
    let wrong = phone
        .haven
        .revoke_device(&target, "not the password at all", NEW_PASSWORD)
        .await;
    assert!(
        matches!(wrong, Err(HavenError::WrongCredentials)),
        "{wrong:?}"
    );
    // Something still in the outbox, sealed under the old epoch, must get through too.
    let queued = phone
        .haven
        .journal_create("queued", "in the outbox")
        .unwrap();
    phone
        .haven
        .revoke_device(&target, PASSWORD, NEW_PASSWORD)
        .await
        .unwrap();
    let after = phone
        .haven
        .journal_create("after", "written after")
        .unwrap();
    phone.haven.sync_once().await.unwrap();
    assert_eq!(phone.haven.status().pending, 0);

    // The taken phone: its sync fails as revoked, it cannot log in again (with the old password
    // or any), and it never gets what was written afterwards.
    let cut = taken.haven.sync_once().await;
    assert!(
        matches!(cut, Err(HavenError::DeviceRevoked)),
        "sync of the revoked device: {cut:?}"
    );
    for password in [PASSWORD, NEW_PASSWORD] {
        let again = taken.haven.login("noor", password, "old phone").await;
        assert!(
            matches!(
                again,
                Err(HavenError::DeviceRevoked | HavenError::WrongCredentials)
            ),
            "{again:?}"
        );
    }
    assert!(!has(&taken.haven, &after) && !has(&taken.haven, &queued));
    assert!(has(&taken.haven, &before), "its old data stays for export");
    // A fresh profile with the old password is refused too.
    let thief = device(&server);
    let old = thief.haven.login("noor", PASSWORD, "thief").await;
    assert!(matches!(old, Err(HavenError::WrongCredentials)), "{old:?}");

    // The laptop keeps its session, picks up the new epoch, and reads everything.
    laptop.haven.sync_once().await.unwrap();
    assert_eq!(
        bodies(&laptop.haven),
        ["history", "in the outbox", "written after"]
    );
    let laptop_listed = laptop.haven.devices().await.unwrap();
    assert!(
        laptop_listed
            .iter()
            .any(|device| device.device_id == target && device.revoked)
    );
    // And a new device with the new password reads the whole history, both epochs.
    let new_phone = device(&server);
    new_phone
        .haven
        .login("noor", NEW_PASSWORD, "new phone")
        .await
        .unwrap();
    new_phone.haven.sync_once().await.unwrap();
    assert_eq!(
        bodies(&new_phone.haven),
        ["history", "in the outbox", "written after"]
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recovery_phrase_restores_everything_after_a_forgotten_password() {
    let _watchdog = watchdog(
        "the_recovery_phrase_restores_everything_after_a_forgotten_password",
        FLOW_LIMIT,
    );
    let server = TestServer::start().await.unwrap();
    let phone = device(&server);
    let phrase = phone
        .haven
        .register("sam", PASSWORD, "phone")
        .await
        .unwrap();
    phone.haven.journal_create("one", "first entry").unwrap();
    phone.haven.journal_create("two", "second entry").unwrap();
    phone.haven.sync_once().await.unwrap();

    // Another valid phrase is the wrong one.
    let stranger = device(&server);
    let other = stranger
        .haven
        .register("stranger", PASSWORD, "x")
        .await
        .unwrap();
    let fresh = device(&server);
    let wrong = fresh
        .haven
        .recover("sam", &other, NEW_PASSWORD, "new phone")
        .await;
    assert!(
        matches!(wrong, Err(HavenError::WrongCredentials)),
        "{wrong:?}"
    );

    fresh
        .haven
        .recover("sam", &phrase, NEW_PASSWORD, "new phone")
        .await
        .unwrap();
    fresh.haven.sync_once().await.unwrap();
    assert_eq!(bodies(&fresh.haven), ["first entry", "second entry"]);
    fresh
        .haven
        .journal_create("three", "after recovery")
        .unwrap();
    fresh.haven.sync_once().await.unwrap();

    // The old phone's session ended with the reset; the new password brings it back.
    let ended = phone.haven.sync_once().await;
    assert!(matches!(ended, Err(HavenError::NotLoggedIn)), "{ended:?}");
    let old = phone.haven.login("sam", PASSWORD, "phone").await;
    assert!(matches!(old, Err(HavenError::WrongCredentials)), "{old:?}");
    phone
        .haven
        .login("sam", NEW_PASSWORD, "phone")
        .await
        .unwrap();
    phone.haven.sync_once().await.unwrap();
    assert_eq!(
        bodies(&phone.haven),
        ["after recovery", "first entry", "second entry"]
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_device_links_without_the_password_after_the_codes_match() {
    let _watchdog = watchdog("linking", FLOW_LIMIT);
    let server = TestServer::start().await.unwrap();
    let (phone, tablet) = (device(&server), device(&server));
    phone
        .haven
        .register("ines", PASSWORD, "phone")
        .await
        .unwrap();
    phone
        .haven
        .journal_create("mine", "linked history")
        .unwrap();
    phone.haven.sync_once().await.unwrap();

    let invitation = tablet.haven.link_start().await.unwrap();
    let shown = invitation.verification_code();
    let inspected = phone.haven.link_inspect(&invitation.to_code()).unwrap();
    assert_eq!(inspected.verification_code(), shown);
    assert!(phone.haven.link_inspect("haven-link-1:garbage").is_err());

    // A code swapped on its way (another device's keys, same mailbox) shows another
    // verification code, so the person does not approve it.
    let intruder = device(&server);
    let swapped = haven_core::crypto::LinkInvitation {
        mailbox: invitation.mailbox,
        device: intruder.haven.link_start().await.unwrap().device,
    };
    assert_ne!(swapped.verification_code(), shown);

    let (joined, approved) = tokio::join!(
        tablet
            .haven
            .link_wait(&invitation, std::time::Duration::from_secs(30)),
        phone.haven.link_approve(&inspected, "tablet"),
    );
    approved.unwrap();
    assert_eq!(joined.unwrap(), "ines");
    tablet.haven.sync_once().await.unwrap();
    assert_eq!(bodies(&tablet.haven), ["linked history"]);
    tablet
        .haven
        .journal_create("from the tablet", "both ways")
        .unwrap();
    tablet.haven.sync_once().await.unwrap();
    phone.haven.sync_once().await.unwrap();
    assert_eq!(bodies(&phone.haven), ["both ways", "linked history"]);
    let devices = phone.haven.devices().await.unwrap();
    assert!(
        devices
            .iter()
            .any(|device| device.name == "tablet" && device.in_bundle && !device.revoked)
    );

    // The mailbox was single use: approving again fails plainly.
    let again = phone.haven.link_approve(&inspected, "tablet").await;
    assert!(matches!(again, Err(HavenError::Invalid(_))), "{again:?}");
    // Nobody approves: the wait ends with a timeout, and the profile stays without an account.
    let lonely = device(&server);
    let waiting = lonely.haven.link_start().await.unwrap();
    let timed_out = lonely
        .haven
        .link_wait(&waiting, std::time::Duration::from_secs(2))
        .await;
    assert!(
        matches!(timed_out, Err(HavenError::Timeout)),
        "{timed_out:?}"
    );
    assert!(lonely.haven.username().is_none());
    server.stop().await.unwrap();
}

/// Erasure is physical on sled (docs/PRIVACY.md): after an account is erased and the master
/// key rotated, no file under the data directory holds the account's storage key, the master
/// key generation it was wrapped under, any envelope body in the form it was uploaded, its key
/// bundle or its Argon2id hashes (what offline password guessing would need). sled may keep the
/// erased records in old segments; what it keeps is the storage key wrapped under a generation
/// that no longer exists, and bodies and account fields sealed under that key. Another account,
/// whose key the rotation re-wrapped, keeps syncing and reading.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_erasure_no_uploaded_body_is_left_in_the_server_files() {
    use haven_core::remote::ServerApi;
    use haven_server::master_key::{FILE_NAME, read_generations};
    use haven_server::storage_keys::MasterKeySource;
    use haven_tests::chaos::ChaosRemote;

    let _watchdog = watchdog("erasure scan", FLOW_LIMIT);
    let data = tempfile::tempdir().unwrap();
    let master_file = data.path().join(FILE_NAME);
    let store: Arc<dyn haven_server::store::Store> =
        Arc::new(haven_server::store::sled_kv::SledStore::open(data.path(), 8 << 20).unwrap());
    let options = haven_server::server::AppOptions {
        master_keys: MasterKeySource::File(master_file.clone()),
        ..test_options()
    };
    let server = spawn_server(store, options).await.unwrap();
    let profile = tempfile::tempdir().unwrap();
    // No faults: it only records what the device uploads.
    let recorder = ChaosRemote::recording(&server.url).unwrap();
    let remote: Arc<dyn ServerApi> = recorder.clone();
    let haven = Haven::open(
        haven_core::HavenConfig::new(profile.path()),
        memory_keystore(),
        remote,
    )
    .unwrap();
    haven.register("leaving", PASSWORD, "phone").await.unwrap();
    for n in 0..40 {
        haven
            .journal_create(&format!("entry {n}"), &format!("what happened, part {n}"))
            .unwrap();
    }
    haven.sync_once().await.unwrap();
    let uploaded = recorder.pushed();
    assert!(uploaded.len() >= 40);

    // Someone else keeps using the server.
    let staying = device(&server);
    staying
        .haven
        .register("staying", PASSWORD, "phone")
        .await
        .unwrap();
    staying.haven.journal_create("before", "kept").unwrap();
    staying.haven.sync_once().await.unwrap();

    // What a copy of the disk would need to open the erased bodies.
    let storage_key = server
        .state
        .keys
        .open_key(&haven.space().unwrap())
        .await
        .unwrap()
        .expect("the account has a storage key");
    let old_masters = read_generations(&master_file).unwrap();
    assert_eq!(old_masters.len(), 1);
    // And what offline password guessing would need: the account's Argon2id outputs and its
    // key bundle (in the store's JSON, base64 like this).
    let record = server
        .state
        .store
        .account_by_username(&server.state.auth.username_key("leaving"))
        .await
        .unwrap()
        .expect("the account exists");
    let mut guessable: Vec<Vec<u8>> = [&record.auth_hash, &record.recovery_hash]
        .into_iter()
        .map(|phc| phc.rsplit('$').next().unwrap().as_bytes().to_vec())
        .collect();
    let bundle = &record.key_bundle.blob.0;
    assert!(bundle.len() >= 48);
    let encoded = serde_json::to_string(&haven_protocol::Blob(bundle[..48].to_vec())).unwrap();
    guessable.push(encoded.trim_matches('"').as_bytes().to_vec());
    guessable.push(bundle[..48].to_vec());

    haven.delete_account(PASSWORD).await.unwrap();
    haven.close().unwrap();
    assert!(server.state.keys.rotation_due());
    let report = server.state.keys.rotate().await.unwrap();
    assert!(report.rewrapped >= 1, "{report:?}");
    assert!(!server.state.keys.rotation_due());

    // The other account's key was re-wrapped: it still writes, and a new device reads it all.
    staying.haven.journal_create("after", "still here").unwrap();
    staying.haven.sync_once().await.unwrap();
    let laptop = device(&server);
    laptop
        .haven
        .login("staying", PASSWORD, "laptop")
        .await
        .unwrap();
    laptop.haven.sync_once().await.unwrap();
    assert_eq!(bodies(&laptop.haven), vec!["kept", "still here"]);
    server.stop().await.unwrap();

    let files = haven_tests::files_under(data.path()).unwrap();
    assert!(files.iter().map(|(_, bytes)| bytes.len()).sum::<usize>() > 0);
    assert!(files.iter().any(|(path, _)| *path == master_file));
    assert_eq!(
        haven_tests::file_containing(&files, storage_key.as_slice()),
        None,
        "the erased account's storage key is in the server's files"
    );
    for (generation, key) in &old_masters {
        assert_eq!(
            haven_tests::file_containing(&files, key.as_slice()),
            None,
            "master key generation {generation} is still in the server's files"
        );
    }
    for needle in &guessable {
        assert_eq!(
            haven_tests::file_containing(&files, needle),
            None,
            "the erased account's key bundle or a password hash is in the server's files: {needle:?}"
        );
    }
    for envelope in &uploaded {
        let body = &envelope.body.0;
        // The client's ciphertext (its nonce and first bytes), as it was uploaded.
        let sample = &body[..body.len().min(48)];
        assert_eq!(
            haven_tests::file_containing(&files, sample),
            None,
            "an uploaded body is still in the server's files"
        );
    }
}
