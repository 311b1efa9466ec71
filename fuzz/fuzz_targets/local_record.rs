//! The local store's record format: any stored bytes open or fail cleanly; any record seals and
//! opens back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (key, rest) = data.split_at(data.len().min(17));
    let _ = haven_core::fuzzing::open_local_record([9; 32], key, rest);
    if let Some((&tag, rest)) = data.split_first() {
        let (logical, value) = rest.split_at(rest.len() / 2);
        assert!(haven_core::fuzzing::local_record_round_trip([9; 32], tag, logical, value));
    }
});
