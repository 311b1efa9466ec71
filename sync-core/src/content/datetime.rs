//! The two date formats content files use: RFC 3339 date-times (with an explicit offset) and
//! calendar dates. Small and strict on purpose; no time-zone database is needed.

/// Milliseconds in a day.
pub(crate) const DAY_MS: i64 = 86_400_000;

/// Parses an RFC 3339 date-time such as `2024-05-01T10:00:00Z` or `2024-05-01T12:00:00.5+02:00`
/// into milliseconds since the Unix epoch. A local time without offset is refused, because it
/// would mean different instants on different machines.
pub(crate) fn parse_rfc3339_ms(text: &str) -> Result<i64, &'static str> {
    let bytes = text.as_bytes();
    if bytes.len() < 20 {
        return Err("expected an RFC 3339 date-time such as 2024-05-01T10:00:00Z");
    }
    let (year, month, day) = parse_date_prefix(bytes)?;
    if !matches!(bytes[10], b'T' | b't' | b' ') {
        return Err("expected `T` between date and time");
    }
    let hour = digits(bytes, 11, 2)?;
    let minute = digits_after(bytes, 13, b':', 2)?;
    let second = digits_after(bytes, 16, b':', 2)?;
    if hour > 23 || minute > 59 || second > 59 {
        return Err("time out of range");
    }
    let mut rest = &bytes[19..];
    let mut millis = 0;
    if let Some((b'.', fraction)) = rest.split_first() {
        let len = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
        if len == 0 {
            return Err("expected digits after `.`");
        }
        // Milliseconds: keep three digits, pad shorter fractions.
        for position in 0..3 {
            let digit = fraction.get(position).filter(|_| position < len);
            millis = millis * 10 + digit.map_or(0, |d| i64::from(d - b'0'));
        }
        rest = &fraction[len..];
    }
    let offset_minutes = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), ..] if rest.len() == 6 && rest[3] == b':' => {
            let hours = digits(rest, 1, 2)?;
            let minutes = digits(rest, 4, 2)?;
            if hours > 23 || minutes > 59 {
                return Err("offset out of range");
            }
            let offset = hours * 60 + minutes;
            if *sign == b'-' { -offset } else { offset }
        }
        [] => return Err("missing time-zone offset (`Z` or `+HH:MM`)"),
        _ => return Err("malformed time-zone offset"),
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Ok(seconds * 1000 + millis)
}

/// Checks a calendar date `YYYY-MM-DD` (a real day of a real month).
pub(crate) fn validate_date(text: &str) -> Result<(), &'static str> {
    parse_date_ms(text).map(|_| ())
}

/// Parses a calendar date `YYYY-MM-DD` into the milliseconds since the Unix epoch of its first
/// instant in UTC.
pub(crate) fn parse_date_ms(text: &str) -> Result<i64, &'static str> {
    let bytes = text.as_bytes();
    if bytes.len() != 10 {
        return Err("expected a date such as 2025-01-15");
    }
    let (year, month, day) = parse_date_prefix(bytes)?;
    Ok(days_from_civil(year, month, day) * DAY_MS)
}

fn parse_date_prefix(bytes: &[u8]) -> Result<(i64, i64, i64), &'static str> {
    let year = digits(bytes, 0, 4)?;
    let month = digits_after(bytes, 4, b'-', 2)?;
    let day = digits_after(bytes, 7, b'-', 2)?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err("no such date");
    }
    Ok((year, month, day))
}

fn digits_after(bytes: &[u8], at: usize, separator: u8, len: usize) -> Result<i64, &'static str> {
    if bytes.get(at) != Some(&separator) {
        return Err("malformed date or time");
    }
    digits(bytes, at + 1, len)
}

fn digits(bytes: &[u8], at: usize, len: usize) -> Result<i64, &'static str> {
    let field = bytes.get(at..at + len).ok_or("malformed date or time")?;
    field.iter().try_fold(0i64, |acc, byte| {
        if byte.is_ascii_digit() {
            Ok(acc * 10 + i64::from(byte - b'0'))
        } else {
            Err("malformed date or time")
        }
    })
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc3339() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(
            parse_rfc3339_ms("2024-05-01T10:00:00Z"),
            Ok(1_714_557_600_000)
        );
        assert_eq!(
            parse_rfc3339_ms("2024-05-01T12:00:00+02:00"),
            Ok(1_714_557_600_000)
        );
        assert_eq!(
            parse_rfc3339_ms("2024-05-01T05:30:00-04:30"),
            Ok(1_714_557_600_000)
        );
        assert_eq!(
            parse_rfc3339_ms("2024-05-01t10:00:00.5z"),
            Ok(1_714_557_600_500)
        );
        assert_eq!(
            parse_rfc3339_ms("2024-05-01T10:00:00.123456Z"),
            Ok(1_714_557_600_123)
        );
        assert_eq!(
            parse_rfc3339_ms("2000-02-29T00:00:00Z"),
            Ok(951_782_400_000)
        );
        assert_eq!(parse_rfc3339_ms("1969-12-31T23:59:59Z"), Ok(-1000));
    }

    #[test]
    fn refuses_malformed_rfc3339() {
        for bad in [
            "",
            "2024-05-01",
            "2024-05-01T10:00:00",
            "2024-05-01T10:00:00+0200",
            "2024-13-01T10:00:00Z",
            "2023-02-29T10:00:00Z",
            "2024-05-01T24:00:00Z",
            "2024-05-01T10:00:00.Z",
            "2024-05-01X10:00:00Z",
            "2024-05-01T10:00:00Z ",
            "２024-05-01T10:00:00Z",
        ] {
            assert!(parse_rfc3339_ms(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn validates_dates() {
        assert_eq!(parse_date_ms("1970-01-02"), Ok(DAY_MS));
        assert_eq!(
            parse_date_ms("2024-05-01"),
            parse_rfc3339_ms("2024-05-01T00:00:00Z")
        );
        assert_eq!(validate_date("2025-01-15"), Ok(()));
        assert_eq!(validate_date("2024-02-29"), Ok(()));
        for bad in [
            "2025-02-29",
            "2025-1-15",
            "2025-01-15T00:00:00Z",
            "15/01/2025",
            "2025-04-31",
        ] {
            assert!(validate_date(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
