//! Text positions at the FFI edge. The core counts Unicode scalar values (Rust `char`s); Kotlin,
//! Java, Swift's `NSString`/`NSRange`, Android's `Editable` and JavaScript count UTF-16 code units.
//! An emoji such as 🌧 is one scalar value and two UTF-16 units, so the two must be converted.

use crate::error::{FfiResult, HavenFfiError};

/// Converts a UTF-16 range (`position`, `length`) of `text` to a scalar-value range. Both ends
/// must fall on character boundaries (not between the two halves of a surrogate pair) and
/// within the text.
pub(crate) fn utf16_range_to_scalars(
    text: &str,
    position: u32,
    length: u32,
) -> FfiResult<(usize, usize)> {
    let start = u64::from(position);
    let end = start + u64::from(length);
    let mut units: u64 = 0;
    let mut scalar_start = None;
    let mut scalar_end = None;
    for (index, c) in text.chars().enumerate() {
        if units == start {
            scalar_start = Some(index);
        }
        if units == end {
            scalar_end = Some(index);
            break;
        }
        if units > end {
            break;
        }
        units += c.len_utf16() as u64;
    }
    let scalar_count = text.chars().count();
    if units == start && scalar_start.is_none() {
        scalar_start = Some(scalar_count);
    }
    if units == end && scalar_end.is_none() {
        scalar_end = Some(scalar_count);
    }
    match (scalar_start, scalar_end) {
        (Some(s), Some(e)) => Ok((s, e - s)),
        _ => Err(HavenFfiError::invalid(format!(
            "the range {position}+{length} (UTF-16 units) is outside the text ({} units) or \
             splits a character",
            text.encode_utf16().count()
        ))),
    }
}

/// A UTF-16 offset as a scalar-value offset (must be a boundary within the text).
pub(crate) fn utf16_to_scalars(text: &str, position: u64) -> FfiResult<u64> {
    let position = u32::try_from(position)
        .map_err(|_| HavenFfiError::invalid("the position is beyond any text this app holds"))?;
    utf16_range_to_scalars(text, position, 0).map(|(start, _)| start as u64)
}

/// A scalar-value offset as a UTF-16 offset, clamped to the text's end.
pub(crate) fn scalars_to_utf16(text: &str, position: u64) -> u64 {
    text.chars()
        .take(usize::try_from(position).unwrap_or(usize::MAX))
        .map(|c| c.len_utf16() as u64)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_is_the_identity() {
        assert_eq!(utf16_range_to_scalars("hello", 0, 0).ok(), Some((0, 0)));
        assert_eq!(utf16_range_to_scalars("hello", 1, 3).ok(), Some((1, 3)));
        assert_eq!(utf16_range_to_scalars("hello", 5, 0).ok(), Some((5, 0)));
        assert!(utf16_range_to_scalars("hello", 5, 1).is_err());
        assert!(utf16_range_to_scalars("hello", 6, 0).is_err());
    }

    #[test]
    fn emoji_count_two_units() {
        // "a🌧b": a = 1 unit, 🌧 = 2 units, b = 1 unit.
        let text = "a🌧b";
        assert_eq!(utf16_range_to_scalars(text, 1, 2).ok(), Some((1, 1)));
        assert_eq!(utf16_range_to_scalars(text, 3, 1).ok(), Some((2, 1)));
        assert_eq!(utf16_range_to_scalars(text, 4, 0).ok(), Some((3, 0)));
        // Between the halves of the surrogate pair.
        assert!(utf16_range_to_scalars(text, 2, 0).is_err());
        assert!(utf16_range_to_scalars(text, 1, 1).is_err());
        assert_eq!(scalars_to_utf16(text, 2), 3);
        assert_eq!(scalars_to_utf16(text, 99), 4);
        assert_eq!(utf16_to_scalars(text, 3).ok(), Some(2));
    }

    #[test]
    fn empty_text() {
        assert_eq!(utf16_range_to_scalars("", 0, 0).ok(), Some((0, 0)));
        assert!(utf16_range_to_scalars("", 0, 1).is_err());
    }

    #[test]
    fn huge_values_do_not_overflow() {
        assert!(utf16_range_to_scalars("abc", u32::MAX, u32::MAX).is_err());
    }
}
