//! A public-content bundle file: decoded and verified against the pinned key, all or nothing.
#![no_main]

use haven_core::content::{PublicBundle, bundled_dev_content_key};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(bundle) = PublicBundle::from_bytes(data) {
        let _ = bundle.verify(&[bundled_dev_content_key()]);
    }
});
