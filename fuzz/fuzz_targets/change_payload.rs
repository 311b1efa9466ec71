//! Automerge input from the network (after decryption): framed changes and snapshots.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = haven_core::fuzzing::apply_change_payload(data);
    let _ = haven_core::fuzzing::load_snapshot_payload(data);
});
