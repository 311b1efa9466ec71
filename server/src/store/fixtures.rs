//! Records for tests outside the conformance suite (which has its own, richer scheme): account
//! `n` owns space `n ^ 0xee` and device `n`. Tests that need other values override fields with
//! struct update syntax.

use haven_protocol::api::{KdfParams, KeyBundle};
use haven_protocol::{Blob, Bytes, HexId};

use super::{AccountRecord, DeviceRecord};

pub(crate) fn account(n: u8) -> AccountRecord {
    AccountRecord {
        user_id: HexId([n; 16]),
        space_id: HexId([n ^ 0xee; 16]),
        username_key: [n; 32],
        auth_hash: format!("$argon2id$auth{n}"),
        recovery_hash: format!("$argon2id$recovery{n}"),
        kdf: KdfParams::recommended(Bytes([n; 16])),
        key_bundle: KeyBundle {
            version: 1,
            key_epoch: 1,
            blob: Blob(vec![n; 8]),
        },
        auth_version: 0,
        revision: 0,
        created_day: "2026-11-28".into(),
    }
}

pub(crate) fn device(n: u8) -> DeviceRecord {
    DeviceRecord {
        user_id: HexId([n; 16]),
        device_id: Bytes([n; 16]),
        name: None,
        created_day: "2026-11-28".into(),
        last_seen_day: "2026-11-28".into(),
        revoked: false,
    }
}

/// Opens the sled store of `dir`, waiting (bounded) while sled's threads of a handle the test
/// dropped still hold its lock: sled 0.34 lets go of it a little after the `Db` is dropped.
pub(crate) fn reopen_sled(dir: &std::path::Path) -> super::sled_kv::SledStore {
    for _ in 0..500 {
        match super::sled_kv::SledStore::open(dir, 8 << 20) {
            Ok(store) => return store,
            Err(error) if error.to_string().contains("in use") => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(error) => panic!("{error}"),
        }
    }
    panic!("{} stayed locked", dir.display());
}
