//! The storage codec of envelopes: any bytes decode or fail cleanly, and what decodes re-encodes
//! to the same envelope.
#![no_main]

use haven_protocol::Envelope;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(envelope) = Envelope::decode(data) {
        let again = Envelope::decode(&envelope.encode()).expect("re-encoded envelopes decode");
        assert_eq!(again, envelope);
    }
});
