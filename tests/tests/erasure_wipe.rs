//! Opt-in: when the account is erased from one device, the others wipe themselves — but only on
//! proof (the account's wipe token, which the server never sees before the erasure), so a server
//! that merely claims an erasure cannot make a device destroy the person's copy.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use haven_core::remote::ServerApi;
use haven_core::{Haven, HavenConfig, HavenError};
use haven_tests::chaos::ChaosRemote;
use haven_tests::{TestServer, device, memory_keystore, watchdog};

const PASSWORD: &str = "correct horse battery staple";
const FLOW_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_with_the_option_on_makes_the_other_devices_wipe() {
    let _watchdog = watchdog("erasure wipe", FLOW_LIMIT);
    let server = TestServer::start().await.unwrap();
    let (phone, laptop) = (device(&server), device(&server));
    phone
        .haven
        .register("amal", PASSWORD, "phone")
        .await
        .unwrap();
    laptop
        .haven
        .login("amal", PASSWORD, "laptop")
        .await
        .unwrap();
    assert!(!phone.haven.wipe_on_erasure().unwrap());
    phone.haven.set_wipe_on_erasure(true).unwrap();
    phone.haven.journal_create("t", "b").unwrap();
    phone.haven.sync_once().await.unwrap();
    laptop.haven.sync_once().await.unwrap();
    assert!(laptop.haven.wipe_on_erasure().unwrap(), "the option syncs");

    phone.haven.delete_account(PASSWORD).await.unwrap();
    assert!(!phone.haven.wipe_due(), "the erasing device keeps its copy");
    assert!(matches!(
        laptop.haven.sync_once().await,
        Err(HavenError::AccountErased)
    ));
    assert!(laptop.haven.wipe_due());
    assert!(matches!(
        phone.haven.sync_once().await,
        Err(HavenError::AccountErased)
    ));
    assert!(!phone.haven.wipe_due());
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_option_an_erasure_wipes_nothing() {
    let _watchdog = watchdog("erasure without wipe", FLOW_LIMIT);
    let server = TestServer::start().await.unwrap();
    let (phone, laptop) = (device(&server), device(&server));
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
    // On, then off again: the token is gone from the index.
    phone.haven.set_wipe_on_erasure(true).unwrap();
    phone.haven.set_wipe_on_erasure(false).unwrap();
    phone.haven.sync_once().await.unwrap();
    laptop.haven.sync_once().await.unwrap();
    assert!(!laptop.haven.wipe_on_erasure().unwrap());
    phone.haven.delete_account(PASSWORD).await.unwrap();
    assert!(laptop.haven.sync_once().await.is_err());
    assert!(!laptop.haven.wipe_due());
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_claiming_an_erasure_cannot_make_a_device_wipe() {
    let _watchdog = watchdog("lying server", FLOW_LIMIT);
    let server = TestServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let liar = ChaosRemote::recording(&server.url).unwrap();
    let remote: Arc<dyn ServerApi> = liar.clone();
    let haven = Haven::open(HavenConfig::new(dir.path()), memory_keystore(), remote).unwrap();
    haven.register("huda", PASSWORD, "phone").await.unwrap();
    haven.set_wipe_on_erasure(true).unwrap();
    let kept = haven.journal_create("kept", "still here").unwrap();
    haven.sync_once().await.unwrap();

    liar.claim_erasure();
    assert!(matches!(
        haven.sync_once().await,
        Err(HavenError::AccountErased)
    ));
    assert!(
        !haven.wipe_due(),
        "an invented notice does not carry the token"
    );
    assert_eq!(haven.journal_get(&kept).unwrap().body, "still here");
    haven.close().unwrap();
    server.stop().await.unwrap();
}
