//! Opening a pulled private envelope: decryption, unpadding and the change payload inside.
#![no_main]

use haven_core::crypto::{EpochKey, EpochKeyring, open_private};
use haven_protocol::{Envelope, HexId, SpaceId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(envelope) = Envelope::decode(data) else { return };
    let mut keyring = EpochKeyring::new();
    keyring.insert(EpochKey::from_bytes(1, &[1; 32]));
    let space = SpaceId::Private(HexId([7; 16]));
    if let Ok(payload) = open_private(&keyring, &space, &envelope) {
        let _ = haven_core::fuzzing::apply_change_payload(&payload);
    }
});
