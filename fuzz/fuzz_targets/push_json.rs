//! A push body from the network: JSON parsing and the shared envelope validation.
#![no_main]

use haven_protocol::api::PushRequest;
use haven_protocol::{EnvelopeLimits, HexId, SpaceId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = serde_json::from_slice::<PushRequest>(data) {
        for envelope in &request.changes {
            for space in [SpaceId::Public, SpaceId::Private(HexId([7; 16]))] {
                let _ = envelope.validate(&space, &EnvelopeLimits::default());
                let _ = envelope.signed_bytes(&space);
            }
            let _ = envelope.digest();
        }
    }
});
