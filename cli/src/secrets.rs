//! Passwords and answers typed by a person: never from argv (a command line is visible to every
//! local user and kept in shell history).
//!
//! A password comes from, in order: the environment (`HAVEN_PASSWORD`; a new account's from
//! `HAVEN_NEW_PASSWORD`, falling back to `HAVEN_PASSWORD`; a backup's from
//! `HAVEN_BACKUP_PASSPHRASE`), the first line of stdin with `--password-stdin` /
//! `--passphrase-stdin`, or a hidden prompt when stdin is a terminal. Strings holding a password
//! are zeroised when dropped.

use std::io::{self, BufRead as _, IsTerminal as _, Write as _};

use anyhow::{Context as _, bail};
use zeroize::Zeroizing;

/// How a command that needs a password is told where to find it.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub(crate) struct PasswordArgs {
    /// Read the password from the first line of stdin (instead of HAVEN_PASSWORD or a prompt).
    #[arg(long)]
    pub(crate) password_stdin: bool,
}

pub(crate) const PASSWORD_ENV: &str = "HAVEN_PASSWORD";
pub(crate) const NEW_PASSWORD_ENV: &str = "HAVEN_NEW_PASSWORD";

/// Whether a person is at the keyboard (stdin is a terminal).
pub(crate) fn interactive() -> bool {
    io::stdin().is_terminal()
}

/// The account's current password.
pub(crate) fn password(args: PasswordArgs) -> anyhow::Result<Zeroizing<String>> {
    if let Some(password) = from_env(PASSWORD_ENV)? {
        return Ok(password);
    }
    if args.password_stdin {
        return read_stdin_line("the password");
    }
    if interactive() {
        return prompt_hidden("Password: ");
    }
    bail!(
        "no password: set {PASSWORD_ENV}, pass --password-stdin, or run on a terminal to be asked"
    )
}

/// A password for a new account: asked twice on a terminal.
pub(crate) fn new_password(args: PasswordArgs) -> anyhow::Result<Zeroizing<String>> {
    if let Some(password) = from_env(NEW_PASSWORD_ENV)? {
        return Ok(password);
    }
    if let Some(password) = from_env(PASSWORD_ENV)? {
        return Ok(password);
    }
    if args.password_stdin {
        return read_stdin_line("the password");
    }
    if interactive() {
        let first = prompt_hidden("New password: ")?;
        let again = prompt_hidden("The same password again: ")?;
        if first != again {
            bail!("the two passwords differ; nothing was done");
        }
        return Ok(first);
    }
    bail!(
        "no password: set {NEW_PASSWORD_ENV} (or {PASSWORD_ENV}), pass --password-stdin, or run on a terminal to be asked"
    )
}

/// The new password of a change (password change, revocation, recovery): only from
/// `HAVEN_NEW_PASSWORD` or typed twice on a terminal; never `HAVEN_PASSWORD`, which holds the
/// current one.
pub(crate) fn changed_password() -> anyhow::Result<Zeroizing<String>> {
    if let Some(password) = from_env(NEW_PASSWORD_ENV)? {
        return Ok(password);
    }
    if interactive() {
        let first = prompt_hidden("New password: ")?;
        let again = prompt_hidden("The same new password again: ")?;
        if first != again {
            bail!("the two new passwords differ; nothing was done");
        }
        return Ok(first);
    }
    bail!("no new password: set {NEW_PASSWORD_ENV}, or run on a terminal to be asked")
}

pub(crate) const RECOVERY_PHRASE_ENV: &str = "HAVEN_RECOVERY_PHRASE";

/// The 24-word recovery phrase: from `HAVEN_RECOVERY_PHRASE`, else the first line of stdin
/// (hidden when stdin is a terminal).
pub(crate) fn recovery_phrase() -> anyhow::Result<Zeroizing<String>> {
    if let Some(phrase) = from_env(RECOVERY_PHRASE_ENV)? {
        return Ok(phrase);
    }
    if interactive() {
        return prompt_hidden("Recovery phrase (24 words): ");
    }
    read_stdin_line("the recovery phrase")
}

pub(crate) const BACKUP_PASSPHRASE_ENV: &str = "HAVEN_BACKUP_PASSPHRASE";

/// A backup's passphrase: from `HAVEN_BACKUP_PASSPHRASE`, the first line of stdin with
/// `--passphrase-stdin`, or a hidden prompt (asked twice for a new backup, where a typo would
/// make the file unreadable).
pub(crate) fn backup_passphrase(new: bool, stdin: bool) -> anyhow::Result<Zeroizing<String>> {
    if let Some(passphrase) = from_env(BACKUP_PASSPHRASE_ENV)? {
        return Ok(passphrase);
    }
    if stdin {
        return read_stdin_line("the backup passphrase");
    }
    if interactive() {
        let first = prompt_hidden("Backup passphrase: ")?;
        if new {
            let again = prompt_hidden("The same passphrase again: ")?;
            if first != again {
                bail!("the two passphrases differ; nothing was done");
            }
        }
        return Ok(first);
    }
    bail!(
        "no backup passphrase: set {BACKUP_PASSPHRASE_ENV}, pass --passphrase-stdin, or run on a terminal to be asked"
    )
}

fn from_env(name: &str) -> anyhow::Result<Option<Zeroizing<String>>> {
    match std::env::var_os(name) {
        None => Ok(None),
        Some(value) => {
            let value = Zeroizing::new(
                value
                    .into_string()
                    .map_err(|_| anyhow::anyhow!("{name} is not valid UTF-8"))?,
            );
            if value.is_empty() {
                bail!("{name} is set but empty");
            }
            Ok(Some(value))
        }
    }
}

fn prompt_hidden(prompt: &str) -> anyhow::Result<Zeroizing<String>> {
    let password =
        Zeroizing::new(rpassword::prompt_password(prompt).context("reading the password")?);
    if password.is_empty() {
        bail!("no password given");
    }
    Ok(password)
}

/// One line of stdin without its line ending. `what` names it in errors.
pub(crate) fn read_stdin_line(what: &str) -> anyhow::Result<Zeroizing<String>> {
    let mut line = Zeroizing::new(String::new());
    let read = io::stdin()
        .lock()
        .read_line(&mut line)
        .with_context(|| format!("reading {what} from stdin"))?;
    if read == 0 {
        bail!("stdin ended before {what}");
    }
    let trimmed = line.trim_end_matches(['\n', '\r']).len();
    line.truncate(trimmed);
    Ok(line)
}

/// Prints `prompt` (no newline) on stdout and reads one line of stdin.
pub(crate) fn ask(prompt: &str, what: &str) -> anyhow::Result<Zeroizing<String>> {
    let mut stdout = io::stdout().lock();
    write!(stdout, "{prompt}")
        .and_then(|()| stdout.flush())
        .context("writing to stdout")?;
    drop(stdout);
    read_stdin_line(what)
}
