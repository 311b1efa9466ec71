//! Existing devices are told when a device joins the account (issue 7): the person learns of a
//! login she did not make, with the device's name, and can revoke it. Real profiles against the
//! real server on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use haven_tests::{device, spawn_server, test_options, watchdog};

const PASSWORD: &str = "correct horse battery staple";
const NEW_PASSWORD: &str = "a different long passphrase";
const FLOW_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

fn names(joined: &[haven_core::client::DeviceJoined]) -> Vec<&str> {
    let mut names: Vec<&str> = joined.iter().map(|device| device.name.as_str()).collect();
    names.sort_unstable();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_that_join_are_reported_to_the_others_until_dismissed() {
    let _watchdog = watchdog("device alerts", FLOW_LIMIT);
    let server = spawn_server(
        Arc::new(haven_server::store::memory::MemoryStore::new()),
        test_options(),
    )
    .await
    .unwrap();
    let (phone, laptop, unknown) = (device(&server), device(&server), device(&server));
    phone
        .haven
        .register("sana", PASSWORD, "phone")
        .await
        .unwrap();
    assert!(
        phone
            .haven
            .sync_once()
            .await
            .unwrap()
            .devices_joined
            .is_empty()
    );

    laptop
        .haven
        .login("sana", PASSWORD, "laptop")
        .await
        .unwrap();
    // A device joining does not report itself, nor the devices that were there before it.
    assert!(
        laptop
            .haven
            .sync_once()
            .await
            .unwrap()
            .devices_joined
            .is_empty()
    );
    assert!(laptop.haven.device_alerts().unwrap().is_empty());
    unknown
        .haven
        .login("sana", PASSWORD, "not mine")
        .await
        .unwrap();

    let round = phone.haven.sync_once().await.unwrap();
    assert_eq!(names(&round.devices_joined), vec!["laptop", "not mine"]);
    assert_eq!(
        names(&laptop.haven.sync_once().await.unwrap().devices_joined),
        vec!["not mine"]
    );
    // Reported once per round that finds it, kept until dismissed.
    assert!(
        phone
            .haven
            .sync_once()
            .await
            .unwrap()
            .devices_joined
            .is_empty()
    );
    let alerts = phone.haven.device_alerts().unwrap();
    assert_eq!(names(&alerts), vec!["laptop", "not mine"]);
    let stranger = alerts
        .iter()
        .find(|alert| alert.name == "not mine")
        .unwrap()
        .device_id;
    assert_eq!(stranger, unknown.haven.device_id());
    phone.haven.dismiss_device_alerts().unwrap();
    assert!(phone.haven.device_alerts().unwrap().is_empty());

    // The alert leads to the revocation; a revoked device is no news to anyone.
    phone
        .haven
        .revoke_device(&stranger, PASSWORD, NEW_PASSWORD)
        .await
        .unwrap();
    assert!(
        phone
            .haven
            .sync_once()
            .await
            .unwrap()
            .devices_joined
            .is_empty()
    );
    // The laptop follows the new keys; the revoked device is no news to it either.
    assert!(
        laptop
            .haven
            .sync_once()
            .await
            .unwrap()
            .devices_joined
            .is_empty()
    );
    assert!(phone.haven.device_alerts().unwrap().is_empty());
    server.stop().await.unwrap();
}
