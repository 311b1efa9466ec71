//! Output helpers: `--json`, dates, and the short form of ids.
//!
//! JSON output is one document on stdout, pretty-printed; times in it are Unix milliseconds
//! (`*_at`), ids are lowercase hex. Field names are part of the CLI's contract (see the README).

use std::io::Write as _;

use anyhow::Context as _;
use serde::Serialize;

/// `println!` that returns an error instead of panicking when stdout is gone (`haven … | head`):
/// use it in functions returning `anyhow::Result`; `main` ends quietly on a broken pipe.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::output::write_line(::std::format_args!($($arg)*))?
    };
}
pub(crate) use say;

/// Writes one line on stdout.
pub(crate) fn write_line(args: std::fmt::Arguments<'_>) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_fmt(args)
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush())
        .context("writing to stdout")
}

/// Whether `error` comes from a reader that went away (`haven journal list | head -1`).
pub(crate) fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The `--json` switch of listing commands.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub(crate) struct JsonArgs {
    /// Print JSON (stable field names; times in Unix milliseconds) instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Prints `value` as pretty JSON on stdout.
pub(crate) fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value).context("encoding JSON")?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}")
        .and_then(|()| stdout.flush())
        .context("writing to stdout")
}

/// `YYYY-MM-DD HH:MM` (UTC) of Unix milliseconds.
pub(crate) fn minute(ms: i64) -> String {
    let seconds = ms.div_euclid(1000);
    let (days, rest) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    format!("{} {:02}:{:02}", day(days), rest / 3600, rest % 3600 / 60)
}

/// `YYYY-MM-DDTHH:MM:SSZ` of Unix milliseconds.
pub(crate) fn iso(ms: i64) -> String {
    let seconds = ms.div_euclid(1000);
    let (days, rest) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        day(days),
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// `YYYY-MM-DD` of days since 1970-01-01 (H. Hinnant's civil-from-days).
fn day(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The first 12 hex digits of an id: unique enough to pass back to `journal show` and friends
/// (they take any unique prefix of 6 or more).
pub(crate) fn short(hex: &str) -> &str {
    hex.get(..12).unwrap_or(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(iso(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso(1_795_867_200_000), "2026-11-28T12:00:00Z");
        assert_eq!(minute(1_795_867_200_000 + 61_000), "2026-11-28 12:01");
        assert_eq!(iso(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn short_ids() {
        assert_eq!(short("0123456789abcdef"), "0123456789ab");
        assert_eq!(short("abc"), "abc");
    }
}
