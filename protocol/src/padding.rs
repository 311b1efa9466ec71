//! Length hiding for private envelope bodies.
//!
//! A private body's plaintext is `u32 length ‖ payload ‖ zero padding`, padded to 256 B, then
//! 1 KiB, then PADMÉ (Nikitin et al., "Reducing Metadata Leakage from Encrypted Files and
//! Communication with PURBs"), which leaks O(log log n) bits of the length and costs at most
//! 12 % overhead. The server checks that every private body has one of these lengths, so a client
//! that forgets to pad is refused rather than leaking.

/// The smallest bucket.
pub const SMALL_BUCKET: usize = 256;
/// The second bucket; above it, PADMÉ.
pub const MEDIUM_BUCKET: usize = 1024;
/// Bytes of the length prefix inside the padded plaintext.
pub const LENGTH_PREFIX: usize = 4;

/// The padded length of a plaintext of `len` bytes (length prefix included).
pub fn padded_len(len: usize) -> usize {
    if len <= SMALL_BUCKET {
        SMALL_BUCKET
    } else if len <= MEDIUM_BUCKET {
        MEDIUM_BUCKET
    } else {
        padme(len)
    }
}

/// True when `len` is a length that [`padded_len`] can produce.
pub fn is_padded_len(len: usize) -> bool {
    len == SMALL_BUCKET || len == MEDIUM_BUCKET || (len > MEDIUM_BUCKET && padme(len) == len)
}

/// PADMÉ: round `len` up so that only the top `floor(log2(e)) + 1` bits of the exponent's
/// mantissa remain, where `e = floor(log2(len))`.
pub fn padme(len: usize) -> usize {
    if len < 2 {
        return len;
    }
    let e = usize::BITS - 1 - len.leading_zeros(); // floor(log2 len)
    let s = u32::BITS - e.leading_zeros(); // floor(log2 e) + 1
    let last_bits = e - s;
    let mask = (1usize << last_bits) - 1;
    (len + mask) & !mask
}

/// `u32 length ‖ payload ‖ zeros` of the padded length. Fails when the payload does not fit a u32.
pub fn pad(payload: &[u8]) -> Option<Vec<u8>> {
    let len = u32::try_from(payload.len()).ok()?;
    let total = padded_len(LENGTH_PREFIX + payload.len());
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    out.resize(total, 0);
    Some(out)
}

/// The payload of a padded plaintext; `None` when the prefix or the padding is malformed.
pub fn unpad(padded: &[u8]) -> Option<&[u8]> {
    if !is_padded_len(padded.len()) {
        return None;
    }
    let (prefix, rest) = padded.split_first_chunk::<LENGTH_PREFIX>()?;
    let len = usize::try_from(u32::from_be_bytes(*prefix)).ok()?;
    let (payload, padding) = (rest.get(..len)?, rest.get(len..)?);
    // Non-zero padding means a buggy or malicious sealer; refuse rather than ignore.
    padding.iter().all(|&b| b == 0).then_some(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn buckets() {
        assert_eq!(padded_len(0), 256);
        assert_eq!(padded_len(256), 256);
        assert_eq!(padded_len(257), 1024);
        assert_eq!(padded_len(1024), 1024);
        assert!(padded_len(1025) >= 1025);
    }

    #[test]
    fn padme_known_values() {
        // Values from the PURBs paper's reference implementation.
        assert_eq!(padme(1025), 1088);
        assert_eq!(padme(2000), 2048);
        assert_eq!(padme(5000), 5120);
        assert_eq!(padme(1_000_000), 1_015_808);
    }

    #[test]
    fn unpad_refuses_garbage() {
        assert_eq!(unpad(&[]), None);
        assert_eq!(unpad(&[0; 255]), None);
        let mut bad = pad(b"hello").unwrap();
        bad[100] = 1;
        assert_eq!(unpad(&bad), None);
        let mut long = pad(b"hello").unwrap();
        long[..4].copy_from_slice(&1000u32.to_be_bytes());
        assert_eq!(unpad(&long), None);
    }

    proptest! {
        #[test]
        fn pad_round_trips(payload in proptest::collection::vec(any::<u8>(), 0..5000)) {
            let padded = pad(&payload).unwrap();
            prop_assert!(is_padded_len(padded.len()));
            prop_assert_eq!(unpad(&padded), Some(payload.as_slice()));
        }

        #[test]
        fn padme_is_monotone_idempotent_and_bounded(len in 1025usize..10_000_000) {
            let p = padme(len);
            prop_assert!(p >= len);
            prop_assert_eq!(padme(p), p);
            prop_assert!(p - len <= len / 8 + 1, "overhead above 12.5%: {} -> {}", len, p);
            prop_assert!(padme(len + 1) >= p);
        }
    }
}
