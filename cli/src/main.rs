//! `haven`: a Haven device on the command line (demo, scripting, publishing, benchmarks).
//!
//! Each command group lives in its own module under `commands/`. Errors print as one line on
//! stderr and exit non-zero.

mod commands;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A Haven device on the command line.
#[derive(Debug, Parser)]
#[command(name = "haven", version, about)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Options every command accepts. The offline commands (`content keygen`, `content bundle`)
/// ignore them; the device commands that come with the HTTP client use them.
#[derive(Debug, clap::Args)]
struct GlobalArgs {
    /// The Haven server's base URL.
    #[arg(
        long,
        global = true,
        env = "HAVEN_SERVER",
        default_value = "http://127.0.0.1:8080",
        value_name = "URL"
    )]
    server: String,
    /// The device profile directory (keys, local store). Defaults to the platform's data
    /// directory once device commands exist.
    #[arg(long, global = true, env = "HAVEN_PROFILE", value_name = "DIR")]
    profile: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Public content: content keys and signed bundles.
    Content {
        #[command(subcommand)]
        command: commands::content::ContentCommand,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Content { command } => commands::content::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("haven: {}", one_line(&chain(&error)));
            ExitCode::FAILURE
        }
    }
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
    use clap::CommandFactory as _;

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
}
