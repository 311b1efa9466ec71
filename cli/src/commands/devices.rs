//! `haven devices list|revoke|link-start|link-approve`: the account's devices.
//!
//! Linking adds a device without typing the password on it: the new device prints an invitation
//! code and a verification code and waits; the existing device is given the code, shows the
//! same verification code, and sends the keys only once the person confirms the two match.

use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use haven_core::client::{DeviceSummary, MAX_LINK_WAIT};
use serde::Serialize;

use crate::GlobalArgs;
use crate::device::{self, with_deadline};
use crate::output::{self, JsonArgs, say};
use crate::secrets::{self, PasswordArgs};

#[derive(Debug, Subcommand)]
pub(crate) enum DevicesCommand {
    /// The account's devices: names (decrypted here; the server never sees them), when each
    /// joined and was last seen (days only), and which are revoked.
    List {
        #[command(flatten)]
        output: JsonArgs,
    },
    /// Cut a lost or taken device off. Needs the current password (HAVEN_PASSWORD or a prompt)
    /// and sets a new one (HAVEN_NEW_PASSWORD or a prompt), since whoever holds that device may
    /// know the old one. The account moves to new keys: the revoked device cannot log in or read
    /// anything written afterwards; your other devices keep everything.
    Revoke {
        /// The device's id, or a unique prefix of it (see `haven devices list`).
        id: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// On the NEW device: print an invitation code and a verification code, then wait for an
    /// existing device to approve (`haven devices link-approve`).
    LinkStart {
        /// How long to wait for the approval, in seconds (at most 600: the code expires).
        #[arg(long, value_name = "SECONDS", default_value_t = 300,
            value_parser = clap::value_parser!(u64).range(1..=600))]
        wait: u64,
    },
    /// On a device already in the account: approve a new device from its invitation code, after
    /// checking that both show the same verification code.
    LinkApprove {
        /// The invitation code the new device printed.
        code: String,
        /// The new device's name in the device list (encrypted; only your devices see it).
        #[arg(long, value_name = "NAME", default_value = "linked device")]
        name: String,
        /// The verification code the new device shows, when no one is at this terminal to
        /// compare it (scripts); on a terminal you are asked.
        #[arg(long, value_name = "CODE")]
        verification: Option<String>,
    },
}

pub(crate) fn run(global: &GlobalArgs, command: DevicesCommand) -> anyhow::Result<()> {
    match command {
        DevicesCommand::List { output } => list(global, output),
        DevicesCommand::Revoke { id, password } => revoke(global, &id, password),
        DevicesCommand::LinkStart { wait } => link_start(global, Duration::from_secs(wait)),
        DevicesCommand::LinkApprove {
            code,
            name,
            verification,
        } => link_approve(global, &code, &name, verification.as_deref()),
    }
}

/// `haven devices list --json`: one object per device.
#[derive(Debug, Serialize)]
struct DeviceJson {
    id: String,
    name: String,
    created_day: String,
    last_seen_day: String,
    revoked: bool,
    current: bool,
    in_bundle: bool,
    /// It joined after this device last looked (the alert is dismissed by this listing).
    new: bool,
}

fn devices(global: &GlobalArgs, haven: &haven_core::Haven) -> anyhow::Result<Vec<DeviceSummary>> {
    with_deadline(global, "listing devices", async {
        haven.devices().await.map_err(anyhow::Error::new)
    })
}

fn list(global: &GlobalArgs, output: JsonArgs) -> anyhow::Result<()> {
    let haven = device::open_online(global)?;
    let listed = devices(global, &haven);
    // Listing shows every device, so the alerts about new ones have been seen.
    let alerted = match &listed {
        Ok(_) => haven.device_alerts().and_then(|alerts| {
            haven.dismiss_device_alerts()?;
            Ok(alerts)
        }),
        Err(_) => Ok(Vec::new()),
    };
    device::close(haven)?;
    let listed = listed.context("listing devices")?;
    let alerted = alerted.context("reading the device alerts")?;
    if output.json {
        let json: Vec<DeviceJson> = listed
            .iter()
            .map(|device| DeviceJson {
                id: device.device_id.to_hex(),
                name: device.name.clone(),
                created_day: device.created_day.clone(),
                last_seen_day: device.last_seen_day.clone(),
                revoked: device.revoked,
                current: device.current,
                in_bundle: device.in_bundle,
                new: alerted
                    .iter()
                    .any(|alert| alert.device_id == device.device_id),
            })
            .collect();
        return output::print_json(&json);
    }
    for device in &listed {
        let id = device.device_id.to_hex();
        let mut notes = Vec::new();
        if device.current {
            notes.push("this device");
        }
        if device.revoked {
            notes.push("revoked");
        }
        if !device.in_bundle {
            notes.push("holds no keys");
        }
        if alerted
            .iter()
            .any(|alert| alert.device_id == device.device_id)
        {
            notes.push("new since you last looked");
        }
        let name = if device.name.is_empty() {
            "(no name)"
        } else {
            device.name.as_str()
        };
        say!(
            "{}  {name}  joined {}  last seen {}{}",
            output::short(&id),
            device.created_day,
            device.last_seen_day,
            if notes.is_empty() {
                String::new()
            } else {
                format!("  [{}]", notes.join(", "))
            }
        );
    }
    Ok(())
}

fn revoke(global: &GlobalArgs, id: &str, password_args: PasswordArgs) -> anyhow::Result<()> {
    let wanted = id.trim().to_ascii_lowercase();
    if wanted.is_empty() || !wanted.chars().all(|c| c.is_ascii_hexdigit()) {
        bail!("{id:?} is not a device id (hex, as `haven devices list` shows)");
    }
    // Asked first: a person typing must not eat into the network deadline.
    let password = secrets::password(password_args)?;
    let new_password = secrets::changed_password()?;
    let haven = device::open_online(global)?;
    // One runtime for the whole exchange (its connections live on it).
    let result = with_deadline(global, "revocation", async {
        let listed = haven.devices().await?;
        let matching: Vec<&DeviceSummary> = listed
            .iter()
            .filter(|device| device.device_id.to_hex().starts_with(&wanted))
            .collect();
        let target = match matching.as_slice() {
            [one] => *one,
            [] => bail!("no device of this account has an id starting with {id:?}"),
            _ => bail!("{id:?} matches several devices; give more of the id"),
        };
        if target.current {
            bail!("this is the device you are using: log out or wipe it instead");
        }
        if target.revoked {
            bail!("that device is already revoked");
        }
        haven
            .revoke_device(&target.device_id, &password, &new_password)
            .await?;
        Ok(target.name.clone())
    });
    device::close(haven)?;
    let name = result.context("revoking the device")?;
    say!(
        "Revoked {}. The account has new keys and the new password; that device cannot log in or read anything new. Your other devices keep working; the new password is for their next login.",
        if name.is_empty() {
            "the device"
        } else {
            name.as_str()
        }
    );
    Ok(())
}

fn link_start(global: &GlobalArgs, wait: Duration) -> anyhow::Result<()> {
    let haven = device::open_online(global)?;
    let deadline = global.deadline();
    // One runtime for the whole exchange (its connections live on it).
    let result = device::block_on(async {
        let invitation = tokio::time::timeout(deadline, haven.link_start())
            .await
            .map_err(|_| anyhow::anyhow!("opening a link timed out; try again"))??;
        say!("On a device already in your account, run:");
        say!("  haven devices link-approve {}", invitation.to_code());
        say!(
            "Verification code: {}  (approve only if that device shows the same)",
            invitation.verification_code()
        );
        say!(
            "Waiting up to {} s for the approval...",
            wait.min(MAX_LINK_WAIT).as_secs()
        );
        // link_wait bounds the wait; the deadline bounds what follows the approval.
        tokio::time::timeout(wait + deadline, haven.link_wait(&invitation, wait))
            .await
            .map_err(|_| anyhow::anyhow!("joining the account timed out; start again"))?
            .map_err(anyhow::Error::new)
    })
    .and_then(|result| result);
    device::close(haven)?;
    let username = result.context("linking this device")?;
    say!(
        "Linked: this profile is now a device of {username}. Run `haven sync` to fetch your journal."
    );
    Ok(())
}

fn link_approve(
    global: &GlobalArgs,
    code: &str,
    name: &str,
    verification: Option<&str>,
) -> anyhow::Result<()> {
    let haven = device::open_online(global)?;
    let result = (|| {
        if haven.username().is_none() {
            bail!("no account on this profile: only a device of the account can approve");
        }
        let invitation = haven.link_inspect(code)?;
        let expected = invitation.verification_code();
        let typed = match verification {
            Some(given) => given.to_owned(),
            None if secrets::interactive() => {
                say!("Verification code here: {expected}");
                secrets::ask(
                    "Type the verification code the new device shows: ",
                    "the verification code",
                )?
                .to_string()
            }
            None => bail!(
                "compare the verification codes: pass the new device's with --verification, or run on a terminal"
            ),
        };
        let digits = |text: &str| -> String { text.chars().filter(char::is_ascii_digit).collect() };
        if digits(&typed) != digits(&expected) {
            bail!(
                "the verification codes differ: the code may have been swapped on its way. Nothing was sent; start again on the new device"
            );
        }
        with_deadline(global, "approving the device", async {
            haven
                .link_approve(&invitation, name)
                .await
                .map_err(anyhow::Error::new)
        })
    })();
    device::close(haven)?;
    result.context("approving the new device")?;
    say!("Approved: {name} joins the account as soon as it picks up the keys.");
    Ok(())
}
