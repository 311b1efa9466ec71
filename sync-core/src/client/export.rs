//! Export of one's own journal, decrypted on the device: Markdown (one file per entry, readable by
//! a person), JSON (one file), or Automerge (one `<id>.automerge` per entry, loadable by any
//! Automerge 2/3 implementation). Plaintext leaves the app's protection: callers warn first.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::Haven;
use super::error::{HavenError, HavenResult};

/// What to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Markdown,
    Json,
    Automerge,
}

impl ExportFormat {
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "markdown" | "md" => Some(Self::Markdown),
            "json" => Some(Self::Json),
            "automerge" => Some(Self::Automerge),
            _ => None,
        }
    }
}

/// The files an export wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportReport {
    pub files: Vec<PathBuf>,
    pub entries: usize,
}

/// A plaintext warning for every caller to show before exporting.
pub const PLAINTEXT_WARNING: &str = "An export is plain text: anyone who can open these files can read your journal. \
     Keep them somewhere only you can reach, and delete them when you are done.";

#[derive(Serialize)]
struct JsonEntry {
    id: String,
    title: String,
    body: String,
    mood: Option<String>,
    tags: Vec<String>,
    created_at: i64,
    updated_at: i64,
}

impl Haven {
    /// Writes the journal into `out_dir` (created if needed; existing files with the same names
    /// are replaced).
    pub fn export_journal(
        &self,
        format: ExportFormat,
        out_dir: &Path,
    ) -> HavenResult<ExportReport> {
        fs::create_dir_all(out_dir)
            .map_err(|error| io_error("creating the export folder", error))?;
        let mut report = ExportReport::default();
        let entries = self.journal_list();
        match format {
            ExportFormat::Json => {
                let mut all = Vec::new();
                for summary in &entries {
                    let entry = self.journal_get(&summary.id)?;
                    all.push(JsonEntry {
                        id: summary.id.to_hex(),
                        title: entry.title,
                        body: entry.body,
                        mood: entry.mood,
                        tags: entry.tags,
                        created_at: entry.created_at,
                        updated_at: entry.updated_at,
                    });
                }
                let text = serde_json::to_vec_pretty(&all).map_err(|error| {
                    HavenError::Protocol(format!("encoding the export: {error}"))
                })?;
                let path = out_dir.join("journal.json");
                write_private(&path, &text)?;
                report.files.push(path);
            }
            ExportFormat::Markdown => {
                for summary in &entries {
                    let entry = self.journal_get(&summary.id)?;
                    let mut text = String::new();
                    text.push_str("---\n");
                    text.push_str(&format!("id: {}\n", summary.id.to_hex()));
                    text.push_str(&format!("title: {}\n", yaml_string(&entry.title)));
                    text.push_str(&format!("created_at: {}\n", iso(entry.created_at)));
                    text.push_str(&format!("updated_at: {}\n", iso(entry.updated_at)));
                    if let Some(mood) = &entry.mood {
                        text.push_str(&format!("mood: {}\n", yaml_string(mood)));
                    }
                    if !entry.tags.is_empty() {
                        let tags: Vec<String> =
                            entry.tags.iter().map(|tag| yaml_string(tag)).collect();
                        text.push_str(&format!("tags: [{}]\n", tags.join(", ")));
                    }
                    text.push_str("---\n\n");
                    if !entry.title.is_empty() {
                        text.push_str(&format!("# {}\n\n", entry.title));
                    }
                    text.push_str(&entry.body);
                    if !entry.body.ends_with('\n') {
                        text.push('\n');
                    }
                    let path = out_dir.join(format!(
                        "{}-{}.md",
                        day(entry.created_at),
                        summary.id.to_hex()
                    ));
                    write_private(&path, text.as_bytes())?;
                    report.files.push(path);
                }
            }
            ExportFormat::Automerge => {
                for summary in &entries {
                    let bytes = self.replica().save_doc(&summary.id)?.ok_or_else(|| {
                        HavenError::NotFound {
                            what: "journal entry",
                            id: summary.id.to_hex(),
                        }
                    })?;
                    let path = out_dir.join(format!("{}.automerge", summary.id.to_hex()));
                    write_private(&path, &bytes)?;
                    report.files.push(path);
                }
            }
        }
        report.entries = entries.len();
        Ok(report)
    }
}

pub(super) fn io_error(what: &str, error: std::io::Error) -> HavenError {
    HavenError::Invalid(format!("{what}: {error}"))
}

/// Writes a file readable only by its owner (on unix).
pub(super) fn write_private(path: &Path, bytes: &[u8]) -> HavenResult<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|error| io_error(&format!("writing {}", path.display()), error))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|error| io_error(&format!("writing {}", path.display()), error))
}

/// A double-quoted YAML scalar.
fn yaml_string(text: &str) -> String {
    let escaped: String = text
        .chars()
        .flat_map(|c| match c {
            '"' => vec!['\\', '"'],
            '\\' => vec!['\\', '\\'],
            '\n' => vec!['\\', 'n'],
            c if c.is_control() => format!("\\u{:04x}", c as u32).chars().collect(),
            c => vec![c],
        })
        .collect();
    format!("\"{escaped}\"")
}

/// `YYYY-MM-DDTHH:MM:SSZ` of Unix ms.
fn iso(ms: i64) -> String {
    let seconds = ms.div_euclid(1000);
    let (days, rest) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        civil(days),
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

fn day(ms: i64) -> String {
    civil(ms.div_euclid(1000).div_euclid(86_400))
}

/// `YYYY-MM-DD` of days since 1970-01-01 (H. Hinnant's civil-from-days).
fn civil(days: i64) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_yaml() {
        assert_eq!(iso(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso(1_795_867_200_000), "2026-11-28T12:00:00Z");
        assert_eq!(yaml_string("a \"b\"\nc"), "\"a \\\"b\\\"\\nc\"");
    }
}
