//! Automerge input from the network (after decryption): framed changes and snapshots.
#![no_main]

use libfuzzer_sys::fuzz_target;

static QUIET_CAUGHT_PANICS: std::sync::Once = std::sync::Once::new();

fuzz_target!(|data: &[u8]| {
    // libfuzzer-sys's panic hook aborts on every panic, even one the engine catches on purpose
    // (automerge's decoders can panic on malformed bytes; `documents::untrusted` turns that into
    // an error). A panic that escapes still reaches libfuzzer-sys's catch_unwind, which aborts.
    QUIET_CAUGHT_PANICS.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    let _ = haven_core::fuzzing::apply_change_payload(data);
    let _ = haven_core::fuzzing::load_snapshot_payload(data);
});
