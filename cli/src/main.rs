//! `haven`: a Haven device on the command line (demo, scripting, publishing, benchmarks).
//!
//! Each command group lives in its own module under `commands/`; `device` opens the profile and
//! bounds network work, `secrets` reads passwords and the recovery check, `output` formats.
//!
//! Rules every command keeps: errors print as one line on stderr (`haven: …`) and exit 1; a
//! panic prints one line without its message or a backtrace (a message could quote journal text)
//! and exits 101; passwords never come from argv; journal text is printed only by the commands
//! whose purpose is to show it (`journal show`, `journal export`); tokens and passwords never.

mod commands;
mod device;
mod output;
mod secrets;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

/// A Haven device on the command line: an end-to-end encrypted journal that works offline,
/// awareness articles and support hotlines.
///
/// Passwords are read from HAVEN_PASSWORD (a new account's from HAVEN_NEW_PASSWORD, else
/// HAVEN_PASSWORD), from stdin with --password-stdin, or from a hidden prompt on a terminal;
/// never from the command line.
#[derive(Debug, Parser)]
#[command(name = "haven", version)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Options every command accepts; the offline ones ignore `--server` and `--timeout`.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Global options")]
pub(crate) struct GlobalArgs {
    /// The Haven server's base URL.
    #[arg(
        long,
        global = true,
        env = "HAVEN_SERVER",
        default_value = "http://127.0.0.1:8080",
        value_name = "URL"
    )]
    pub(crate) server: String,
    /// The device profile directory (encrypted store and its key file). Default:
    /// $HOME/.haven/profile, created private to the user (0700).
    #[arg(long, global = true, env = "HAVEN_PROFILE", value_name = "DIR")]
    pub(crate) profile: Option<PathBuf>,
    /// Overall deadline of a network command, in seconds (default 60; `sync --watch` has none).
    #[arg(long, global = true, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub(crate) timeout: Option<u64>,
}

impl GlobalArgs {
    pub(crate) fn deadline(&self) -> Duration {
        Duration::from_secs(self.timeout.unwrap_or(60))
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Your account: register, log in, log out, delete (these talk to the server).
    Account {
        #[command(subcommand)]
        command: commands::account::AccountCommand,
    },
    /// Your account's devices: list, revoke a lost or taken one, link a new one.
    Devices {
        #[command(subcommand)]
        command: commands::devices::DevicesCommand,
    },
    /// Push this device's changes and pull everyone else's until caught up.
    Sync(commands::sync::SyncArgs),
    /// Where this device stands: pending changes, last confirmed seq, server head, last error.
    Status(commands::sync::StatusArgs),
    /// Awareness articles (bundled, and updated by `haven sync`); work offline.
    Articles {
        #[command(subcommand)]
        command: commands::articles::ArticlesCommand,
    },
    /// Support services and hotlines; work offline.
    Resources {
        #[command(subcommand)]
        command: commands::resources::ResourcesCommand,
    },
    /// Your private journal, end-to-end encrypted; works offline.
    Journal {
        #[command(subcommand)]
        command: commands::journal::JournalCommand,
    },
    /// Public content: content keys, signed bundles, publishing to a server.
    Content {
        #[command(subcommand)]
        command: commands::content::ContentCommand,
    },
    /// Panic wipe: destroy this profile's key, then every file of it. No questions asked.
    /// With --server on the command line, first logs this device out (best effort, 3 s at most).
    Wipe,
}

fn main() -> ExitCode {
    install_panic_hook();
    let parsed = Cli::command()
        .try_get_matches()
        .and_then(|matches| Cli::from_arg_matches(&matches).map(|cli| (matches, cli)));
    let (matches, cli) = match parsed {
        Ok(parsed) => parsed,
        Err(error) => return usage_error(&error),
    };
    let server_on_command_line = matches.value_source("server") == Some(ValueSource::CommandLine);
    let global = cli.global;
    let result = match cli.command {
        Command::Account { command } => commands::account::run(&global, command),
        Command::Devices { command } => commands::devices::run(&global, command),
        Command::Sync(args) => commands::sync::sync(&global, &args),
        Command::Status(args) => commands::sync::status(&global, &args),
        Command::Articles { command } => commands::articles::run(&global, command),
        Command::Resources { command } => commands::resources::run(&global, command),
        Command::Journal { command } => commands::journal::run(&global, command),
        Command::Content { command } => commands::content::run(&global, command),
        Command::Wipe => commands::wipe::run(&global, server_on_command_line),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our output went away (`haven journal list | head -1`): not an error.
        Err(error) if output::is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("haven: {}", one_line(&chain(&error)));
            ExitCode::FAILURE
        }
    }
}

/// Help and version print as clap prints them; a usage error becomes one `haven: ` line (its
/// first paragraph, without the usage block) and exit status 2.
fn usage_error(error: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = error.print();
        return if error.use_stderr() {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        };
    }
    eprintln!("haven: {}", usage_line(&error.render().to_string()));
    ExitCode::from(2)
}

/// `error: unexpected argument '--x' found\n\n  tip: …\n\nUsage: …` → `unexpected argument
/// '--x' found (see --help)`.
fn usage_line(rendered: &str) -> String {
    let first = rendered.split("\n\n").next().unwrap_or_default();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    format!("{} (see --help)", one_line(first))
}

/// A panic is a bug; it still ends in one line. Its message is not printed: a message built by
/// a library may quote the text it was handling (a `str` slicing panic does), and that text may
/// be someone's journal. Where it happened is enough to report it.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let place = info.location().map_or_else(
            || "an unknown place".to_owned(),
            |location| format!("{}:{}", location.file(), location.line()),
        );
        eprintln!("haven: internal error at {place} (a bug; please report it). Nothing was lost.");
    }));
}

/// The error and its causes, `: `-separated. Several library errors already print their
/// source in their own message (`{path}: {source}`); such a cause is not repeated.
fn chain(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let cause = cause.to_string();
        if text.ends_with(&cause) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause);
    }
    text
}

/// Some errors (TOML syntax errors, for one) span several lines with a source excerpt; a
/// command-line error is one line, so scripts and logs can take it whole.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn causes_already_in_the_message_are_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let error = anyhow::Error::new(io)
            .context("/key: gone")
            .context("reading the key");
        assert_eq!(chain(&error), "reading the key: /key: gone");
    }

    #[test]
    fn errors_fold_into_one_line() {
        assert_eq!(one_line("a\n  |\n  b \n\n"), "a | b");
        assert_eq!(one_line("single"), "single");
    }

    #[test]
    fn usage_errors_fold_into_one_line() {
        let error = Cli::command()
            .try_get_matches_from(["haven", "account", "login"])
            .expect_err("--username is required");
        let line = usage_line(&error.render().to_string());
        assert_eq!(line.lines().count(), 1);
        assert!(line.contains("--username"), "{line}");
        assert!(
            !line.starts_with("error:") && !line.contains("Usage:"),
            "{line}"
        );
    }

    #[test]
    fn server_given_on_the_command_line_is_told_apart() {
        let matches = Cli::command()
            .try_get_matches_from(["haven", "--server", "http://example.invalid", "wipe"])
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(
            matches.value_source("server"),
            Some(ValueSource::CommandLine)
        );
        let matches = Cli::command()
            .try_get_matches_from(["haven", "wipe", "--server", "http://example.invalid"])
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(
            matches.value_source("server"),
            Some(ValueSource::CommandLine)
        );
    }
}
