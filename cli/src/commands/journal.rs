//! `haven journal …`: the private journal, fully offline (edits go to the encrypted store and
//! the outbox at once; `haven sync` sends them).
//!
//! Entry ids are printed in full by `add` and as 12-digit prefixes by `list`; every command takes
//! the full id or any unique prefix of 6 or more hex digits.
//!
//! Only `show` and `export` print journal text; `list` shows titles, never bodies. `backup`
//! writes ciphertext only (sealed with a passphrase); `restore` reads it back. Text given on
//! the command line (`--body TEXT`) lands in shell history and the process list: for anything
//! private, use `--body-file PATH` or `--body -` (stdin).

use std::io::{IsTerminal as _, Read as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::Subcommand;
use haven_core::client::backup::BACKUP_NOTICE;
use haven_core::client::export::{ExportFormat, PLAINTEXT_WARNING};
use haven_core::{Haven, HavenError};
use haven_protocol::DocId;
use serde::Serialize;
use zeroize::Zeroizing;

use crate::GlobalArgs;
use crate::device;
use crate::output::say;
use crate::output::{self, JsonArgs};
use crate::secrets;

/// Where a body comes from: `--body TEXT` (`-` for stdin) or `--body-file PATH`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct BodyArgs {
    /// The body text; `-` reads it from stdin. Visible in shell history and the process list:
    /// prefer `--body-file` or `--body -` for anything private.
    #[arg(long, value_name = "B", conflicts_with = "body_file")]
    body: Option<String>,
    /// Read the body from a file (UTF-8).
    #[arg(long, value_name = "PATH")]
    body_file: Option<PathBuf>,
}

impl BodyArgs {
    /// The body, if one was given.
    fn read(&self) -> anyhow::Result<Option<Zeroizing<String>>> {
        match (&self.body, &self.body_file) {
            (Some(body), _) if body == "-" => {
                if std::io::stdin().is_terminal() {
                    eprintln!("haven: type the body, then Ctrl-D on a line of its own");
                }
                let mut text = Zeroizing::new(String::new());
                std::io::stdin()
                    .read_to_string(&mut text)
                    .context("reading the body from stdin (it must be UTF-8)")?;
                Ok(Some(text))
            }
            (Some(body), _) => Ok(Some(Zeroizing::new(body.clone()))),
            (None, Some(path)) => {
                let bytes = Zeroizing::new(
                    std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
                );
                let text = std::str::from_utf8(&bytes)
                    .with_context(|| format!("{} is not UTF-8 text", path.display()))?;
                Ok(Some(Zeroizing::new(text.to_owned())))
            }
            (None, None) => Ok(None),
        }
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum JournalCommand {
    /// Write a new entry; prints its id.
    Add {
        /// The title (shown by `journal list`).
        #[arg(long, value_name = "T", default_value = "")]
        title: String,
        #[command(flatten)]
        body: BodyArgs,
    },
    /// Edit an entry: replace the title and/or the body, or append to the body. Edits merge with
    /// edits made on other devices.
    Edit {
        /// The entry's id, or a unique prefix of it (6+ hex digits).
        #[arg(value_name = "ID")]
        id: String,
        /// The new title.
        #[arg(long, value_name = "T")]
        title: Option<String>,
        #[command(flatten)]
        body: BodyArgs,
        /// Text to add at the end of the body, exactly as given (include a leading space or
        /// newline if you want one).
        #[arg(long, value_name = "TEXT")]
        append: Option<String>,
    },
    /// The entries, most recently updated first (ids and titles; never bodies).
    List {
        #[command(flatten)]
        output: JsonArgs,
    },
    /// One entry, whole.
    Show {
        #[arg(value_name = "ID")]
        id: String,
        #[command(flatten)]
        output: JsonArgs,
    },
    /// Delete an entry, on every device of the account once synced.
    Delete {
        #[arg(value_name = "ID")]
        id: String,
    },
    /// An entry's edit history: when, from which device, what changed.
    History {
        #[arg(value_name = "ID")]
        id: String,
        #[command(flatten)]
        output: JsonArgs,
    },
    /// Keep the journal on this device only (`on`), or sync it (`off`); with neither, say which.
    /// Without an account, `on` starts a journal that is never sent anywhere (registering or
    /// logging in later moves it into the account and uploads it). With an account, `on` pauses
    /// the journal's syncing on this device and `off` uploads what waited.
    LocalOnly {
        #[arg(value_name = "on|off", value_parser = ["on", "off"])]
        mode: Option<String>,
    },
    /// Export the journal as plain files, decrypted: markdown (one file per entry), json (one
    /// file) or automerge (one `<id>.automerge` per entry, loadable by any Automerge 2/3).
    Export {
        #[arg(long, value_name = "FORMAT", value_parser = ["markdown", "json", "automerge"])]
        format: String,
        /// The folder to write into (created private to you if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Write an encrypted backup of the whole journal (every entry with its full history) to
    /// one file, sealed with a passphrase (HAVEN_BACKUP_PASSPHRASE, --passphrase-stdin, or
    /// asked twice). Works offline, without the server.
    Backup {
        /// The backup file to write (replaced if it exists; readable only by you).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Read the passphrase from the first line of stdin.
        #[arg(long)]
        passphrase_stdin: bool,
    },
    /// Restore an encrypted backup: entries not here are added, entries here are merged (no
    /// word lost on either side), deleted entries stay deleted. Restoring twice changes
    /// nothing; `haven sync` sends the result to your other devices.
    Restore {
        /// The backup file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Read the passphrase from the first line of stdin.
        #[arg(long)]
        passphrase_stdin: bool,
    },
    /// Replace an entry by a copy without its edit history: the copy gets a new id (printed),
    /// the old entry and its history are deleted here, and from the server and your other
    /// devices at the next `haven sync`.
    PurgeHistory {
        #[arg(value_name = "ID")]
        id: String,
    },
}

/// One element of `haven journal list --json`.
#[derive(Debug, Serialize)]
struct SummaryJson {
    id: String,
    title: String,
    mood: Option<String>,
    tags: Vec<String>,
    created_at: i64,
    updated_at: i64,
}

/// `haven journal show --json`.
#[derive(Debug, Serialize)]
struct EntryJson {
    id: String,
    title: String,
    body: String,
    mood: Option<String>,
    tags: Vec<String>,
    created_at: i64,
    updated_at: i64,
}

/// One element of `haven journal history --json`.
#[derive(Debug, Serialize)]
struct ChangeJson {
    /// The Automerge change hash (hex).
    hash: String,
    /// The device (Automerge actor, hex) that made the change.
    actor: String,
    /// Whether that device is this one.
    this_device: bool,
    seq: u64,
    /// Unix ms, by the editing device's clock (advisory).
    at: i64,
    /// What the edit touched (`title`, `body`, …), when recorded.
    message: Option<String>,
}

pub(crate) fn run(global: &GlobalArgs, command: JournalCommand) -> anyhow::Result<()> {
    let haven = device::open_offline(global)?;
    let result = run_on(&haven, command);
    device::close(haven)?;
    result
}

fn run_on(haven: &Haven, command: JournalCommand) -> anyhow::Result<()> {
    match command {
        JournalCommand::Add { title, body } => {
            let body = body.read()?;
            let body = body.as_deref().map_or("", String::as_str);
            let id = haven
                .journal_create(&title, body)
                .map_err(|error| match error {
                    HavenError::NotLoggedIn => anyhow::anyhow!(
                        "no account on this profile: register or log in, or keep the journal on \
                     this device only with `haven journal local-only on`"
                    ),
                    other => other.into(),
                })?;
            say!("{}", id.to_hex());
            Ok(())
        }
        JournalCommand::Edit {
            id,
            title,
            body,
            append,
        } => edit(haven, &id, title.as_deref(), &body, append.as_deref()),
        JournalCommand::List { output } => list(haven, output),
        JournalCommand::Show { id, output } => show(haven, &id, output),
        JournalCommand::Delete { id } => {
            let id = resolve(haven, &id)?;
            haven.journal_delete(&id)?;
            say!(
                "Deleted {}. `haven sync` deletes it on your other devices.",
                id.to_hex()
            );
            Ok(())
        }
        JournalCommand::History { id, output } => history(haven, &id, output),
        JournalCommand::LocalOnly { mode } => local_only(haven, mode.as_deref()),
        JournalCommand::Export { format, out } => export(haven, &format, &out),
        JournalCommand::Backup {
            out,
            passphrase_stdin,
        } => backup(haven, &out, passphrase_stdin),
        JournalCommand::Restore {
            file,
            passphrase_stdin,
        } => restore(haven, &file, passphrase_stdin),
        JournalCommand::PurgeHistory { id } => {
            let id = resolve(haven, &id)?;
            let copy = haven.journal_purge_history(&id)?;
            eprintln!(
                "haven: {} now holds the entry without its history; {} is deleted here, and from \
                 the server and your other devices at the next `haven sync`",
                copy.to_hex(),
                id.to_hex()
            );
            say!("{}", copy.to_hex());
            Ok(())
        }
    }
}

/// A full id, or the one entry whose id starts with the given prefix (6+ hex digits).
fn resolve(haven: &Haven, text: &str) -> anyhow::Result<DocId> {
    match haven.resolve_entry(text) {
        Ok(id) => Ok(id),
        Err(HavenError::NotFound { .. }) => {
            let prefix = text.trim().to_ascii_lowercase();
            if prefix.is_empty() || !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
                bail!("{text:?} is not an entry id (ids are hex; `haven journal list` shows them)");
            }
            if prefix.len() < 6 {
                bail!(
                    "give at least 6 characters of the entry id (`haven journal list` shows them)"
                );
            }
            let matching = haven
                .journal_list()
                .iter()
                .filter(|entry| entry.id.to_hex().starts_with(&prefix))
                .count();
            if matching > 1 {
                bail!("{prefix} matches {matching} entries; give more characters of the id");
            }
            bail!("no journal entry with id {prefix}")
        }
        Err(other) => Err(other.into()),
    }
}

fn edit(
    haven: &Haven,
    id: &str,
    title: Option<&str>,
    body: &BodyArgs,
    append: Option<&str>,
) -> anyhow::Result<()> {
    let body = body.read()?;
    if title.is_none() && body.is_none() && append.is_none() {
        bail!("nothing to change: give --title, --body, --body-file or --append");
    }
    let id = resolve(haven, id)?;
    if let Some(title) = title {
        haven.journal_set_title(&id, title)?;
    }
    if let Some(body) = &body {
        haven.journal_set_body(&id, body)?;
    }
    if let Some(text) = append {
        haven.journal_append_body(&id, text)?;
    }
    say!("Updated {}.", id.to_hex());
    Ok(())
}

fn list(haven: &Haven, output: JsonArgs) -> anyhow::Result<()> {
    let entries = haven.journal_list();
    if output.json {
        let json: Vec<SummaryJson> = entries
            .into_iter()
            .map(|entry| SummaryJson {
                id: entry.id.to_hex(),
                title: entry.title,
                mood: entry.mood,
                tags: entry.tags,
                created_at: entry.created_at,
                updated_at: entry.updated_at,
            })
            .collect();
        return output::print_json(&json);
    }
    if entries.is_empty() {
        eprintln!("haven: no journal entries on this profile");
    }
    for entry in entries {
        let hex = entry.id.to_hex();
        let title = if entry.title.is_empty() {
            "(untitled)"
        } else {
            &entry.title
        };
        say!(
            "{}  {}  {title}",
            output::short(&hex),
            output::minute(entry.updated_at)
        );
    }
    Ok(())
}

fn show(haven: &Haven, id: &str, output: JsonArgs) -> anyhow::Result<()> {
    let id = resolve(haven, id)?;
    let entry = haven.journal_get(&id)?;
    if output.json {
        return output::print_json(&EntryJson {
            id: id.to_hex(),
            title: entry.title,
            body: entry.body,
            mood: entry.mood,
            tags: entry.tags,
            created_at: entry.created_at,
            updated_at: entry.updated_at,
        });
    }
    let mut text = Zeroizing::new(String::new());
    text.push_str(&format!(
        "{}\n",
        if entry.title.is_empty() {
            "(untitled)"
        } else {
            &entry.title
        }
    ));
    text.push_str(&format!(
        "id {} · written {} · updated {}",
        id.to_hex(),
        output::minute(entry.created_at),
        output::minute(entry.updated_at)
    ));
    if let Some(mood) = &entry.mood {
        text.push_str(&format!(" · mood {mood}"));
    }
    if !entry.tags.is_empty() {
        text.push_str(&format!(" · tags {}", entry.tags.join(", ")));
    }
    text.push_str("\n\n");
    text.push_str(&entry.body);
    if !entry.body.ends_with('\n') {
        text.push('\n');
    }
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .context("writing to stdout")
}

fn history(haven: &Haven, id: &str, output: JsonArgs) -> anyhow::Result<()> {
    let id = resolve(haven, id)?;
    let changes = haven.journal_history(&id)?;
    let me = haven.device_id().to_hex();
    let json: Vec<ChangeJson> = changes
        .into_iter()
        .map(|change| ChangeJson {
            this_device: change.actor == me,
            hash: change.hash,
            actor: change.actor,
            seq: change.seq,
            at: change.time_secs.saturating_mul(1000),
            message: change.message,
        })
        .collect();
    if output.json {
        return output::print_json(&json);
    }
    for change in json {
        let device = if change.this_device {
            "this device".to_owned()
        } else {
            format!("device {}", output::short(&change.actor))
        };
        say!(
            "{}  {:<19} #{:<3} {}",
            output::minute(change.at),
            device,
            change.seq,
            change.message.as_deref().unwrap_or("edit")
        );
    }
    Ok(())
}

fn export(haven: &Haven, format: &str, out: &Path) -> anyhow::Result<()> {
    let format = ExportFormat::parse(format)
        .ok_or_else(|| anyhow::anyhow!("unknown format {format:?}: markdown, json or automerge"))?;
    eprintln!("haven: {PLAINTEXT_WARNING}");
    device::create_private_dir(out)
        .with_context(|| format!("creating the export folder {}", out.display()))?;
    let report = haven
        .export_journal(format, out)
        .context("exporting the journal")?;
    say!(
        "Exported {} entries to {} ({} files).",
        report.entries,
        out.display(),
        report.files.len()
    );
    Ok(())
}

fn local_only(haven: &Haven, mode: Option<&str>) -> anyhow::Result<()> {
    let account = haven.username().is_some();
    match mode {
        None => say!(
            "{}",
            if haven.is_local_only() {
                "local-only: the journal stays on this device"
            } else if account {
                "synced: the journal syncs with the account"
            } else {
                "no journal yet: register, log in, or `haven journal local-only on`"
            }
        ),
        Some("on") => {
            haven.set_local_only(true)?;
            if account {
                say!(
                    "The journal stays on this device: syncing it is paused here and edits wait \
                     on this device. `haven journal local-only off` uploads them."
                );
            } else {
                say!(
                    "The journal stays on this device: nothing of it is sent anywhere. \
                     Registering or logging in later moves it into the account and syncs it."
                );
            }
        }
        Some(_) => {
            haven.set_local_only(false).map_err(|error| match error {
                HavenError::NotLoggedIn => anyhow::anyhow!(
                    "there is no account to sync with: `haven account register` or \
                         `haven account login` moves this journal into one"
                ),
                other => other.into(),
            })?;
            say!("The journal syncs again: `haven sync` uploads what waited.");
        }
    }
    Ok(())
}

fn backup(haven: &Haven, out: &Path, passphrase_stdin: bool) -> anyhow::Result<()> {
    let passphrase = secrets::backup_passphrase(true, passphrase_stdin)?;
    eprintln!("haven: {BACKUP_NOTICE}");
    let backup = haven
        .backup_journal_to(out, &passphrase)
        .context("writing the backup")?;
    say!(
        "Backed up {} entries to {} (encrypted, {} bytes).",
        backup.entries,
        out.display(),
        backup.file.len()
    );
    Ok(())
}

fn restore(haven: &Haven, file: &Path, passphrase_stdin: bool) -> anyhow::Result<()> {
    let passphrase = secrets::backup_passphrase(false, passphrase_stdin)?;
    let report = haven
        .restore_backup_from(file, &passphrase)
        .with_context(|| format!("restoring {}", file.display()))?;
    say!(
        "Restored {}: {} added, {} merged, {} already here, {} deleted (as in the backup), {} \
         kept deleted.",
        file.display(),
        report.added,
        report.merged,
        report.unchanged,
        report.deleted,
        report.kept_deleted
    );
    if report.changed() {
        say!("`haven sync` sends them to your other devices.");
    }
    Ok(())
}
