//! Replays every committed fuzz input (fuzz/regressions/<target>/*) through the code its target
//! fuzzes: crashers found by `scripts/fuzz` stay fixed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use haven_core::content::{PublicBundle, bundled_dev_content_key};
use haven_core::crypto::{
    BundleContents, DeviceKeys, EpochKey, EpochKeyring, Kek, RootKey, open_private,
};
use haven_core::env::SeededRandom;
use haven_protocol::api::{KeyBundle, PushRequest};
use haven_protocol::{Blob, Envelope, EnvelopeLimits, HexId, SpaceId};

fn replay(target: &str, run: impl Fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/regressions")
        .join(target);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        run(&bytes);
        count += 1;
    }
    count
}

#[test]
fn every_committed_fuzz_input_is_handled() {
    let mut total = 0;
    total += replay("envelope_decode", |data| {
        if let Ok(envelope) = Envelope::decode(data) {
            assert_eq!(Envelope::decode(&envelope.encode()).unwrap(), envelope);
        }
    });
    total += replay("push_json", |data| {
        if let Ok(request) = serde_json::from_slice::<PushRequest>(data) {
            for envelope in &request.changes {
                let _ = envelope.validate(&SpaceId::Public, &EnvelopeLimits::default());
            }
        }
    });
    total += replay("open_private", |data| {
        if let Ok(envelope) = Envelope::decode(data) {
            let mut keyring = EpochKeyring::new();
            keyring.insert(EpochKey::from_bytes(1, &[1; 32]));
            if let Ok(payload) =
                open_private(&keyring, &SpaceId::Private(HexId([7; 16])), &envelope)
            {
                let _ = haven_core::fuzzing::apply_change_payload(&payload);
            }
        }
    });
    total += replay("key_bundle", |data| {
        let bundle = KeyBundle {
            version: 1,
            key_epoch: 1,
            blob: Blob(data.to_vec()),
        };
        let _ = BundleContents::open_with_password(&bundle, &Kek::from_bytes(&[3; 32]), 0);
        let device = DeviceKeys::generate(&SeededRandom::new(1));
        let _ =
            BundleContents::open_with_device(&bundle, &device, &RootKey::from_bytes(&[4; 32]), 0);
    });
    total += replay("local_record", |data| {
        let (key, rest) = data.split_at(data.len().min(17));
        let _ = haven_core::fuzzing::open_local_record([9; 32], key, rest);
        if let Some((&tag, rest)) = data.split_first() {
            let (logical, value) = rest.split_at(rest.len() / 2);
            assert!(haven_core::fuzzing::local_record_round_trip(
                [9; 32], tag, logical, value
            ));
        }
    });
    total += replay("change_payload", |data| {
        let _ = haven_core::fuzzing::apply_change_payload(data);
        let _ = haven_core::fuzzing::load_snapshot_payload(data);
    });
    total += replay("public_bundle", |data| {
        if let Ok(bundle) = PublicBundle::from_bytes(data) {
            let _ = bundle.verify(&[bundled_dev_content_key()]);
        }
    });
    assert!(total >= 7, "the regression inputs are missing");
}
