//! Entry points for the fuzz targets in `fuzz/` (cargo feature `fuzzing`, never on in apps): the
//! decoders that read untrusted bytes — from the network, from disk — reached through the same
//! code the engine runs, so a crash found here is a crash of the engine.

use std::sync::Arc;

use zeroize::Zeroizing;

use crate::env::SeededRandom;

/// Decodes a local-store record (`stored key`, `stored value`) under a data key.
pub fn open_local_record(data_key: [u8; 32], stored_key: &[u8], stored_value: &[u8]) -> bool {
    let Some(key) =
        crate::local_store::cipher::DataKey::from_unwrapped(Zeroizing::new(data_key.to_vec()))
    else {
        return false;
    };
    let cipher = crate::local_store::cipher::StoreCipher::new(&key);
    cipher.open(stored_key, stored_value).is_ok()
}

/// Seals a record and opens it again (the round trip must hold for any input).
pub fn local_record_round_trip(data_key: [u8; 32], tag: u8, logical: &[u8], value: &[u8]) -> bool {
    let Some(key) =
        crate::local_store::cipher::DataKey::from_unwrapped(Zeroizing::new(data_key.to_vec()))
    else {
        return false;
    };
    // The store refuses longer logical keys before they reach the cipher.
    let logical = &logical[..logical.len().min(4096)];
    let cipher = crate::local_store::cipher::StoreCipher::new(&key);
    let random = Arc::new(SeededRandom::new(7));
    let stored_key = cipher.stored_key(tag, logical);
    let sealed = cipher.seal(random.as_ref(), &stored_key, logical, value);
    matches!(cipher.open(&stored_key, &sealed), Ok((back, opened)) if back == logical && opened.as_slice() == value)
}

/// Decodes the payload of a private change envelope (framed Automerge changes) and applies it to
/// an empty document, as a device does with what it pulls.
pub fn apply_change_payload(payload: &[u8]) -> bool {
    match crate::client::decode_change_payload(payload) {
        Ok(changes) => automerge::AutoCommit::new().apply_changes(changes).is_ok(),
        Err(_) => false,
    }
}

/// Loads a snapshot payload (an Automerge `save()`) into an empty document.
pub fn load_snapshot_payload(payload: &[u8]) -> bool {
    crate::documents::untrusted::load_snapshot(&mut automerge::AutoCommit::new(), payload).is_ok()
}
