//! `haven account register|login|logout|password|recover|delete`: the commands that need the
//! server (and, but for logout, the password or the recovery phrase).
//!
//! Registration checks the recovery phrase *before* anything is sent: the account is made on the
//! device (`Haven::prepare_registration`), the phrase shown once, three of its words asked back,
//! and only then is the account created on the server. A wrong answer leaves nothing anywhere.

use std::io::{IsTerminal as _, Write as _};

use anyhow::{Context as _, bail};
use clap::Subcommand;
use haven_core::crypto::RecoveryPhrase;
use haven_core::env::OsRandom;
use zeroize::Zeroizing;

use crate::GlobalArgs;
use crate::device::{self, with_deadline};
use crate::output::say;
use crate::secrets::{self, PasswordArgs};

/// Words of the recovery phrase asked back at registration.
const CHECKED_WORDS: usize = 3;
/// Tries at the recovery check on a terminal (a typo should not cost a new phrase).
const CHECK_TRIES: usize = 3;
/// What the device calls itself in the account's device list (encrypted in the key bundle).
const DEFAULT_DEVICE_NAME: &str = "haven command line";

#[derive(Debug, Subcommand)]
pub(crate) enum AccountCommand {
    /// Create an account with this profile as its first device. Shows the 24-word recovery
    /// phrase once, then asks three of its words back; a wrong answer creates nothing. Without a
    /// terminal, the words are read from stdin, one per line (after the password with
    /// --password-stdin).
    Register {
        /// The account's username (not secret: pick one that does not name you).
        #[arg(long, value_name = "U")]
        username: String,
        /// This device's name in the account's device list (encrypted; only your devices see it).
        #[arg(long, value_name = "NAME", default_value = DEFAULT_DEVICE_NAME)]
        device_name: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Log this profile in to an existing account (a new device joins the account).
    Login {
        /// The account's username (not secret: pick one that does not name you).
        #[arg(long, value_name = "U")]
        username: String,
        /// This device's name in the account's device list (encrypted; only your devices see it).
        #[arg(long, value_name = "NAME", default_value = DEFAULT_DEVICE_NAME)]
        device_name: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Log this device out. The journal stays on this device (`haven wipe` erases it).
    Logout,
    /// Change the password (the current one from HAVEN_PASSWORD or a prompt, the new one from
    /// HAVEN_NEW_PASSWORD or a prompt). Every other device is logged out and logs in again with
    /// the new password; nothing is re-encrypted and nothing is lost.
    Password {
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Forgot the password? Get back in with the 24-word recovery phrase (from
    /// HAVEN_RECOVERY_PHRASE, or the first line of stdin) and set a new password
    /// (HAVEN_NEW_PASSWORD or a prompt). Everything written before comes back. Without the
    /// phrase nobody can open the journal, Haven included: the account can only be deleted.
    Recover {
        /// The account's username.
        #[arg(long, value_name = "U")]
        username: String,
        /// This device's name in the account's device list, if it is new to the account.
        #[arg(long, value_name = "NAME", default_value = DEFAULT_DEVICE_NAME)]
        device_name: String,
    },
    /// Erase the account on the server, for every device (needs the password again). This
    /// device keeps its copy until `haven wipe`, so it can still be exported.
    Delete {
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// When the account is erased from one device, make the others wipe themselves (`on`) or
    /// keep their copy (`off`, the default); with neither, say which. A device wipes only on
    /// proof that the account was really erased (a token kept in the encrypted journal, revealed
    /// by the erasing device), never on the server's word; the erasing device keeps its copy.
    /// Applies to a device once it has synced after this.
    WipeOnErasure {
        #[arg(value_name = "on|off", value_parser = ["on", "off"])]
        mode: Option<String>,
    },
}

pub(crate) fn run(global: &GlobalArgs, command: AccountCommand) -> anyhow::Result<()> {
    match command {
        AccountCommand::Register {
            username,
            device_name,
            password,
        } => register(global, &username, &device_name, password),
        AccountCommand::Login {
            username,
            device_name,
            password,
        } => login(global, &username, &device_name, password),
        AccountCommand::Logout => logout(global),
        AccountCommand::Password { password } => change_password(global, password),
        AccountCommand::Recover {
            username,
            device_name,
        } => recover(global, &username, &device_name),
        AccountCommand::Delete { yes, password } => delete(global, yes, password),
        AccountCommand::WipeOnErasure { mode } => wipe_on_erasure(global, mode.as_deref()),
    }
}

fn wipe_on_erasure(global: &GlobalArgs, mode: Option<&str>) -> anyhow::Result<()> {
    let haven = device::open_offline(global)?;
    let result = (|| -> anyhow::Result<()> {
        if haven.username().is_none() {
            bail!("no account on this profile: register or log in first");
        }
        match mode {
            None => say!(
                "{}",
                if haven.wipe_on_erasure()? {
                    "on: erasing the account makes its other devices wipe themselves"
                } else {
                    "off: erasing the account leaves each device its copy"
                }
            ),
            Some(mode) => {
                haven.set_wipe_on_erasure(mode == "on")?;
                say!(
                    "{} `haven sync` takes it to your other devices.",
                    if mode == "on" {
                        "On: when the account is erased, your other devices wipe themselves."
                    } else {
                        "Off: when the account is erased, each device keeps its copy."
                    }
                );
            }
        }
        Ok(())
    })();
    device::close(haven)?;
    result
}

fn register(
    global: &GlobalArgs,
    username: &str,
    device_name: &str,
    password_args: PasswordArgs,
) -> anyhow::Result<()> {
    let password = secrets::new_password(password_args)?;
    let haven = device::open_online(global)?;
    // Offline: keys, sealed bundle and phrase; refuses a weak password before showing anything.
    let pending = haven
        .prepare_registration(username, &password, device_name)
        .context("registration")?;
    let username = pending.username().to_owned();
    show_phrase(pending.phrase())?;
    if !check_phrase(pending.phrase())? {
        device::close(haven)?;
        bail!(
            "those words do not match the recovery phrase; nothing was sent and no account was created. Run `haven account register` again (you will get a new phrase)"
        );
    }
    let created = with_deadline(global, "registration", async {
        haven
            .complete_registration(pending)
            .await
            .map_err(anyhow::Error::new)
    });
    if let Err(error) = created {
        device::close(haven)?;
        return Err(error.context(format!(
            "registration of {username} did not finish (if `haven account login --username {username}` works, the account exists; if not, nothing was kept and the phrase above is void)"
        )));
    }
    device::close(haven)?;
    say!(
        "Registered {username}; this profile is its first device. `haven journal add` writes, `haven sync` backs up."
    );
    Ok(())
}

/// Prints the phrase once, with the warning that goes with it.
fn show_phrase(phrase: &RecoveryPhrase) -> anyhow::Result<()> {
    let words = phrase.words();
    let mut text = Zeroizing::new(String::new());
    text.push_str(
        "Your recovery phrase. It is shown this once and never again.\n\
         Write the 24 words on paper, in order, and keep the paper somewhere only you can reach.\n\
         With it you can get back into your journal if you forget your password; without it, nobody\n\
         can (not even Haven). Anyone who has it can read your journal: do not photograph it or\n\
         store it on this computer.\n\n",
    );
    for (row, chunk) in words.chunks(4).enumerate() {
        for (column, word) in chunk.iter().enumerate() {
            let number = row * 4 + column + 1;
            text.push_str(&format!("{number:>4}. {word:<10}"));
        }
        text.push('\n');
    }
    text.push('\n');
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .context("writing to stdout")
}

/// Asks some words of the phrase back. On a terminal: waits until the words are written down,
/// clears the screen (so the check is not read off it) and allows a few tries. Otherwise: one
/// line announcing the word numbers, then one answer per stdin line.
fn check_phrase(phrase: &RecoveryPhrase) -> anyhow::Result<bool> {
    let positions = RecoveryPhrase::challenge(&OsRandom, CHECKED_WORDS);
    let numbers: Vec<String> = positions.iter().map(|p| (p + 1).to_string()).collect();
    let terminal = secrets::interactive() && std::io::stdout().is_terminal();
    if !terminal {
        say!(
            "Recovery check: type words {} of the phrase, one per line.",
            numbers.join(", ")
        );
        let mut answers = Vec::new();
        for number in &numbers {
            answers.push(secrets::read_stdin_line(&format!("word {number}"))?);
        }
        let answers: Vec<&str> = answers.iter().map(|a| a.as_str()).collect();
        return Ok(phrase.check_words(&positions, &answers));
    }
    secrets::ask(
        "Press Enter once the words are written down (the screen will be cleared).",
        "Enter",
    )?;
    // Clear the screen and the scrollback, and go home: the phrase must not stay readable.
    print!("\x1b[H\x1b[2J\x1b[3J");
    for attempt in 1..=CHECK_TRIES {
        say!(
            "Recovery check: type words {} of your phrase.",
            numbers.join(", ")
        );
        let mut answers = Vec::new();
        for number in &numbers {
            answers.push(secrets::ask(
                &format!("Word {number}: "),
                &format!("word {number}"),
            )?);
        }
        let answers: Vec<&str> = answers.iter().map(|a| a.as_str()).collect();
        if phrase.check_words(&positions, &answers) {
            return Ok(true);
        }
        if attempt < CHECK_TRIES {
            say!("That does not match. Check your paper and try again.");
        }
    }
    Ok(false)
}

fn login(
    global: &GlobalArgs,
    username: &str,
    device_name: &str,
    password_args: PasswordArgs,
) -> anyhow::Result<()> {
    let password = secrets::password(password_args)?;
    let haven = device::open_online(global)?;
    let result = with_deadline(global, "login", async {
        haven
            .login(username, &password, device_name)
            .await
            .map_err(anyhow::Error::new)
    });
    let name = haven.username();
    device::close(haven)?;
    result.context("login")?;
    say!(
        "Logged in as {}. Run `haven sync` to fetch your journal.",
        name.as_deref().unwrap_or(username)
    );
    Ok(())
}

fn logout(global: &GlobalArgs) -> anyhow::Result<()> {
    let haven = device::open_online(global)?;
    let had_account = haven.username().is_some();
    let result = with_deadline(global, "logout", async {
        haven.logout().await.map_err(anyhow::Error::new)
    });
    device::close(haven)?;
    result.context("logout")?;
    if had_account {
        say!("Logged out. The journal stays on this device, encrypted; `haven wipe` erases it.");
    } else {
        say!("This profile has no account; nothing to log out.");
    }
    Ok(())
}

fn change_password(global: &GlobalArgs, password_args: PasswordArgs) -> anyhow::Result<()> {
    let haven = device::open_online(global)?;
    if haven.username().is_none() {
        device::close(haven)?;
        bail!("no account on this profile: log in first");
    }
    let result = secrets::password(password_args).and_then(|current| {
        let new = secrets::changed_password()?;
        with_deadline(global, "password change", async {
            haven
                .change_password(&current, &new)
                .await
                .map_err(anyhow::Error::new)
        })
    });
    device::close(haven)?;
    result.context("changing the password")?;
    say!(
        "Password changed. Your other devices are logged out; they log in again with the new password."
    );
    Ok(())
}

fn recover(global: &GlobalArgs, username: &str, device_name: &str) -> anyhow::Result<()> {
    let phrase = secrets::recovery_phrase()?;
    let phrase = RecoveryPhrase::parse(&phrase).map_err(|error| {
        anyhow::anyhow!(
            "{error} Without the right phrase nobody can open this journal, Haven included; the only way on is a new account."
        )
    })?;
    let new_password = secrets::changed_password()?;
    let haven = device::open_online(global)?;
    let result = with_deadline(global, "recovery", async {
        haven
            .recover(username, &phrase, &new_password, device_name)
            .await
            .map_err(anyhow::Error::new)
    });
    device::close(haven)?;
    if let Err(error) = result {
        if matches!(
            error.downcast_ref::<haven_core::HavenError>(),
            Some(haven_core::HavenError::WrongCredentials)
        ) {
            bail!(
                "that phrase does not open the account {username}. Check the words and their order; without the right phrase nobody can open this journal, Haven included, and the only way on is a new account."
            );
        }
        return Err(error.context("recovery"));
    }
    say!(
        "Recovered {username}: the new password is set and this profile is logged in. Run `haven sync` to fetch your journal; your other devices log in again with the new password."
    );
    Ok(())
}

fn delete(global: &GlobalArgs, yes: bool, password_args: PasswordArgs) -> anyhow::Result<()> {
    let haven = device::open_online(global)?;
    let Some(username) = haven.username() else {
        device::close(haven)?;
        bail!("no account on this profile: nothing to delete");
    };
    let confirmed = yes || confirm(&username)?;
    if !confirmed {
        device::close(haven)?;
        bail!("not confirmed; the account was not deleted");
    }
    let result = secrets::password(password_args).and_then(|password| {
        with_deadline(global, "account deletion", async {
            haven
                .delete_account(&password)
                .await
                .map_err(anyhow::Error::new)
        })
    });
    device::close(haven)?;
    result.context("deleting the account")?;
    say!(
        "The account {username} is erased on the server, for every device. This device keeps its copy until `haven wipe`; `haven journal export` can save it first."
    );
    Ok(())
}

/// Asks, on a terminal, to type the username to confirm. Without a terminal, `--yes` is needed.
fn confirm(username: &str) -> anyhow::Result<bool> {
    if !secrets::interactive() {
        bail!("deleting the account needs confirmation: add --yes");
    }
    say!(
        "This erases the account {username} and its journal on the server, for every device. It cannot be undone."
    );
    let typed = secrets::ask(
        &format!("Type the username ({username}) to confirm: "),
        "the confirmation",
    )?;
    Ok(typed.trim() == username)
}
