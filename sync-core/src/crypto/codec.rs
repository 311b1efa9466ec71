//! A tiny big-endian binary codec for the key bundle. The reader never panics: every read is
//! bounds-checked and every count is checked against what is left before anything is allocated.

use super::CryptoError;

/// Reads fixed-size fields from untrusted bytes.
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    pub(crate) fn u8(&mut self) -> Result<u8, CryptoError> {
        let (&first, rest) = self
            .rest
            .split_first()
            .ok_or(CryptoError::Malformed("truncated"))?;
        self.rest = rest;
        Ok(first)
    }

    pub(crate) fn u16(&mut self) -> Result<u16, CryptoError> {
        self.array().map(u16::from_be_bytes)
    }

    pub(crate) fn u32(&mut self) -> Result<u32, CryptoError> {
        self.array().map(u32::from_be_bytes)
    }

    pub(crate) fn u64(&mut self) -> Result<u64, CryptoError> {
        self.array().map(u64::from_be_bytes)
    }

    pub(crate) fn i64(&mut self) -> Result<i64, CryptoError> {
        self.array().map(i64::from_be_bytes)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], CryptoError> {
        let (head, rest) = self
            .rest
            .split_first_chunk::<N>()
            .ok_or(CryptoError::Malformed("truncated"))?;
        self.rest = rest;
        Ok(*head)
    }

    pub(crate) fn bytes(&mut self, len: usize) -> Result<&'a [u8], CryptoError> {
        if len > self.rest.len() {
            return Err(CryptoError::Malformed("truncated"));
        }
        let (head, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(head)
    }

    /// A count of items of at least `min_item_len` bytes each, refused when above `max` or when
    /// fewer bytes are left than the items would need (so a hostile count allocates nothing).
    pub(crate) fn count(&mut self, max: usize, min_item_len: usize) -> Result<usize, CryptoError> {
        let count = usize::from(self.u16()?);
        if count > max {
            return Err(CryptoError::Malformed("too many items"));
        }
        if count.saturating_mul(min_item_len) > self.rest.len() {
            return Err(CryptoError::Malformed("truncated"));
        }
        Ok(count)
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.rest.len()
    }

    pub(crate) fn finish(self) -> Result<(), CryptoError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(CryptoError::Malformed("trailing bytes"))
        }
    }
}

/// Appends fields. Counts are u16: every list in the bundle is capped far below 65 536.
pub(crate) fn put_count(out: &mut Vec<u8>, count: usize) -> Result<(), CryptoError> {
    let count = u16::try_from(count).map_err(|_| CryptoError::TooLarge {
        what: "a bundle list",
        len: count,
        max: usize::from(u16::MAX),
    })?;
    out.extend_from_slice(&count.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_refuses_short_input_and_hostile_counts() {
        let mut reader = Reader::new(&[0, 1]);
        assert!(reader.u32().is_err());
        let mut reader = Reader::new(&[0xff, 0xff, 0, 0]);
        assert!(
            reader.count(u16::MAX.into(), 1).is_err(),
            "65535 items in 2 bytes"
        );
        let mut reader = Reader::new(&[0, 3, 1, 2, 3]);
        assert_eq!(
            reader.count(2, 1),
            Err(CryptoError::Malformed("too many items"))
        );
        let mut reader = Reader::new(&[1, 2]);
        assert!(reader.bytes(3).is_err());
        assert_eq!(reader.bytes(1).unwrap(), &[1]);
        assert!(reader.finish().is_err());
    }
}
