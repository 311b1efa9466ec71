//! A key bundle from the server: every opening path must refuse garbage without panicking.
#![no_main]

use haven_core::crypto::{BundleContents, DeviceKeys, Kek, RootKey};
use haven_core::env::SeededRandom;
use haven_protocol::api::KeyBundle;
use haven_protocol::Blob;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let bundle = KeyBundle { version: 1, key_epoch: 1, blob: Blob(data.to_vec()) };
    let _ = BundleContents::open_with_password(&bundle, &Kek::from_bytes(&[3; 32]), 0);
    let device = DeviceKeys::generate(&SeededRandom::new(1));
    let _ = BundleContents::open_with_device(&bundle, &device, &RootKey::from_bytes(&[4; 32]), 0);
});
