//! `haven sync [--watch]` and `haven status`.
//!
//! `sync` runs one round (public content anonymously; with an account, push the outbox and pull
//! the private space until caught up), bounded by `--timeout` (60 s). `sync --watch` runs live
//! sync until Ctrl-C or SIGTERM, one line per round. `status` runs one round first, because only
//! a round can tell that everything is on the server (the library never says "synced" on a guess);
//! `status --offline` shows the profile's own view without contacting the server.

use anyhow::{Context as _, bail};
use haven_core::client::{HavenResult, SyncReport, SyncState, SyncStatus};
use haven_core::{Haven, HavenError};
use serde::Serialize;

use crate::GlobalArgs;
use crate::device::{self, with_deadline};
use crate::output::say;
use crate::output::{self, JsonArgs};

#[derive(Debug, clap::Args)]
pub(crate) struct SyncArgs {
    /// Keep syncing live (the server announces new changes) until Ctrl-C or SIGTERM; one line
    /// per round (one JSON object per line with --json).
    #[arg(long)]
    watch: bool,
    /// Set push batching with jitter (kept in the profile): live sync (`--watch`) then holds a
    /// local edit for a random time up to this many seconds and sends it with the edits made
    /// meanwhile, so pushes are not timed to the writing. 0 turns it off (the default).
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(0..=600))]
    push_jitter: Option<u64>,
    #[command(flatten)]
    output: JsonArgs,
}

#[derive(Debug, clap::Args)]
pub(crate) struct StatusArgs {
    /// Do not contact the server: show what this profile knows (the state stays "pending" until
    /// a round confirms everything).
    #[arg(long)]
    offline: bool,
    #[command(flatten)]
    output: JsonArgs,
}

/// `haven sync --json` (and each line of `--watch --json`).
#[derive(Debug, Serialize)]
struct ReportJson {
    /// Envelopes the server acknowledged.
    pushed: usize,
    /// Envelopes pulled and applied.
    pulled: usize,
    /// Ids (hex) of documents that changed here.
    changed: Vec<String>,
    /// Ids (hex) of documents deleted here.
    deleted: Vec<String>,
    /// Envelopes skipped (failed verification or decryption), with why.
    skipped: Vec<String>,
    /// Outbox entries the server refused for good, with why.
    refused: Vec<String>,
    /// Snapshots pushed.
    snapshots: usize,
    /// Whether the server had lost envelopes and this device uploaded them again.
    healed: bool,
    /// Devices that joined the account since this one last looked.
    devices_joined: Vec<JoinedJson>,
    status: StatusJson,
}

/// A device that joined the account.
#[derive(Debug, Serialize)]
struct JoinedJson {
    id: String,
    name: String,
    /// Unix ms, by the adding device's clock.
    added_at: i64,
}

/// `haven status --json`.
#[derive(Debug, Serialize)]
struct StatusJson {
    /// The account's username, or null without an account.
    account: Option<String>,
    /// `logged_out`, `local_only`, `synced`, `pending`, `error`, `revoked` or `erased`.
    state: &'static str,
    /// Envelopes waiting in the outbox.
    pending: usize,
    /// The private space's last seq this device applied.
    last_confirmed_seq: u64,
    /// The private space's head at the last pull.
    server_head: u64,
    last_error: Option<String>,
    /// Unix ms of the last successful round (in this run), or null.
    last_synced_at: Option<i64>,
}

fn state_name(state: SyncState) -> &'static str {
    match state {
        SyncState::LoggedOut => "logged_out",
        SyncState::Synced => "synced",
        SyncState::Pending => "pending",
        SyncState::Error => "error",
        SyncState::Revoked => "revoked",
        SyncState::Erased => "erased",
        SyncState::LocalOnly => "local_only",
    }
}

fn status_json(haven: &Haven, status: &SyncStatus) -> StatusJson {
    StatusJson {
        account: haven.username(),
        state: state_name(status.state),
        pending: status.pending,
        last_confirmed_seq: status.last_confirmed_seq,
        server_head: status.server_head,
        last_error: status.last_error.clone(),
        last_synced_at: status.last_synced_at,
    }
}

fn report_json(haven: &Haven, report: &SyncReport) -> ReportJson {
    ReportJson {
        pushed: report.pushed,
        pulled: report.pulled,
        changed: report.changed.iter().map(|id| id.to_hex()).collect(),
        deleted: report.deleted.iter().map(|id| id.to_hex()).collect(),
        skipped: report.skipped.clone(),
        refused: report.refused.clone(),
        snapshots: report.snapshots,
        healed: report.healed,
        devices_joined: report
            .devices_joined
            .iter()
            .map(|joined| JoinedJson {
                id: joined.device_id.to_hex(),
                name: joined.name.clone(),
                added_at: joined.added_at_ms,
            })
            .collect(),
        status: status_json(haven, &haven.status()),
    }
}

/// `pushed=4 pulled=3 changed=2 deleted=0 skipped=0 refused=0 snapshots=0 healed=no`
fn report_line(report: &SyncReport) -> String {
    format!(
        "pushed={} pulled={} changed={} deleted={} skipped={} refused={} snapshots={} healed={}",
        report.pushed,
        report.pulled,
        report.changed.len(),
        report.deleted.len(),
        report.skipped.len(),
        report.refused.len(),
        report.snapshots,
        if report.healed { "yes" } else { "no" }
    )
}

/// The reasons behind `skipped` and `refused`, and devices that joined, one `haven: ` line each
/// on stderr (they name documents, devices and error codes, never content).
fn print_problems(report: &SyncReport) {
    for joined in &report.devices_joined {
        let id = joined.device_id.to_hex();
        eprintln!(
            "haven: a new device joined your account: {} ({}). If it is not yours: `haven devices revoke {}`",
            if joined.name.is_empty() {
                "(no name)"
            } else {
                &joined.name
            },
            output::short(&id),
            output::short(&id)
        );
    }
    for why in &report.skipped {
        eprintln!("haven: skipped: {why}");
    }
    for why in &report.refused {
        eprintln!("haven: refused by the server: {why}");
    }
}

pub(crate) fn sync(global: &GlobalArgs, args: &SyncArgs) -> anyhow::Result<()> {
    let haven = device::open_online(global)?;
    if let Some(seconds) = args.push_jitter {
        let set = haven.set_push_jitter(std::time::Duration::from_secs(seconds));
        if let Err(error) = set {
            device::close(haven)?;
            return Err(error.into());
        }
    }
    if args.watch {
        let result = watch(&haven, args.output.json);
        let wipe = haven.wipe_due();
        device::close(haven)?;
        if wipe {
            crate::commands::wipe::run(global, false)?;
            bail!(
                "the account was erased from another device, which asked its devices to wipe \
                 themselves: this profile was wiped"
            );
        }
        return result;
    }
    let username = haven.username();
    let result = with_deadline(global, "sync", async {
        haven.sync_once().await.map_err(|error| match (error, &username) {
            // The profile keeps its account after `account logout`; say what to do.
            (HavenError::NotLoggedIn, Some(username)) => anyhow::anyhow!(
                "this device is logged out of {username}: run `haven account login --username {username}`"
            ),
            (error, _) => anyhow::Error::new(error),
        })
    });
    let report = match result {
        Ok(report) => report,
        Err(error) => {
            let wipe = haven.wipe_due();
            device::close(haven)?;
            if wipe {
                // The account was erased from another device, proved, and asked for this.
                crate::commands::wipe::run(global, false)?;
                bail!(
                    "the account was erased from another device, which asked its devices to \
                     wipe themselves: this profile was wiped"
                );
            }
            return Err(error.context(format!("sync with {}", global.server)));
        }
    };
    if args.output.json {
        output::print_json(&report_json(&haven, &report))?;
    } else {
        say!("{}", report_line(&report));
        print_problems(&report);
        if haven.username().is_none() {
            eprintln!("haven: no account on this profile: synced the public content only");
        }
    }
    device::close(haven)
}

fn watch(haven: &Haven, json: bool) -> anyhow::Result<()> {
    eprintln!("haven: syncing live; Ctrl-C to stop");
    let on_round = |round: &HavenResult<SyncReport>| {
        let now = output::iso(now_ms());
        match round {
            Ok(report) if json => {
                if let Ok(line) = serde_json::to_string(&report_json(haven, report)) {
                    let _ = output::write_line(format_args!("{line}"));
                }
            }
            Ok(report) => {
                let _ = output::write_line(format_args!("{now} {}", report_line(report)));
                print_problems(report);
            }
            Err(error) if json => {
                let line = serde_json::json!({ "error": error.to_string() });
                let _ = output::write_line(format_args!("{line}"));
            }
            Err(error) => {
                let _ = output::write_line(format_args!("{now} error: {error}"));
            }
        }
    };
    device::block_on(async { haven.run_live(stop_signal(), on_round).await })?
        .context("live sync stopped")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

/// Resolves on Ctrl-C (SIGINT) or, on unix, SIGTERM.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut terminate) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
            return;
        }
    }
    // If the handler cannot be installed, Ctrl-C keeps its default: it ends the process.
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

pub(crate) fn status(global: &GlobalArgs, args: &StatusArgs) -> anyhow::Result<()> {
    let haven = if args.offline {
        device::open_offline(global)?
    } else {
        device::open_online(global)?
    };
    if !args.offline {
        // A failed round is what status reports (state `error`, `last_error`), not a failure of
        // the command; only the deadline is one.
        let round = with_deadline(global, "the status check", async {
            Ok(haven.sync_once().await)
        });
        if let Err(error) = round {
            device::close(haven)?;
            return Err(error);
        }
    }
    let status = status_json(&haven, &haven.status());
    if args.output.json {
        output::print_json(&status)?;
    } else {
        say!(
            "account: {}",
            status
                .account
                .as_deref()
                .unwrap_or("none (public content only)")
        );
        let unchecked = if args.offline && status.state == "pending" {
            " (not checked with the server; `haven status` without --offline checks)"
        } else {
            ""
        };
        say!("state: {}{unchecked}", status.state.replace('_', " "));
        say!("pending: {}", status.pending);
        say!("last confirmed seq: {}", status.last_confirmed_seq);
        say!("server head: {}", status.server_head);
        say!(
            "last error: {}",
            status.last_error.as_deref().unwrap_or("none")
        );
        if let Some(at) = status.last_synced_at {
            say!("last synced: {}", output::iso(at));
        }
    }
    device::close(haven)
}
