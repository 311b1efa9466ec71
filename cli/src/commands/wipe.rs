//! `haven wipe`: the panic wipe. No prompt: it is a panic button.
//!
//! The key goes first (`KeyStore::delete`, then the wrapped data key, durably), then every file
//! of the profile and the directory: after the first step nothing left on the disk is readable,
//! whatever happens next. When the profile opens, that is `Haven::wipe`; when it does not (another
//! process has it open, a corrupt file, a lost key), `local_store::wipe` does the same on the
//! directory without opening it, so nothing can stop a wipe. A directory that holds no profile
//! files is never opened (opening would create a profile in it): `local_store::wipe` then refuses
//! to touch a non-empty one.
//!
//! With `--server` given on the command line, the device is logged out first, best effort and
//! bounded by [`LOGOUT_DEADLINE`]; a failure or a timeout never delays the wipe further.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use haven_core::local_store;
use haven_core::remote::{NoServer, ServerApi};
use haven_core::{Haven, HavenConfig};

use crate::GlobalArgs;
use crate::device;
use crate::output::say;

/// The most a wipe waits for the server to end the session.
const LOGOUT_DEADLINE: Duration = Duration::from_secs(3);

pub(crate) fn run(global: &GlobalArgs, log_out_first: bool) -> anyhow::Result<()> {
    let dir = device::profile_dir(global)?;
    let keystore = device::keystore(&dir);
    let holds_other_things =
        std::fs::read_dir(&dir).is_ok_and(|mut entries| entries.next().is_some());
    if holds_other_things && !device::looks_like_profile(&dir) {
        anyhow::bail!(
            "{} holds no Haven profile; nothing was deleted (is --profile right?)",
            dir.display()
        );
    }
    let opened = if device::looks_like_profile(&dir) {
        let remote: Arc<dyn ServerApi> = match log_out_first {
            true => device::remote(&global.server, Some(LOGOUT_DEADLINE)).map_or_else(
                |_| Arc::new(NoServer) as Arc<dyn ServerApi>,
                |remote| Arc::new(remote),
            ),
            false => Arc::new(NoServer),
        };
        Haven::open(HavenConfig::new(&dir), Arc::clone(&keystore), remote).ok()
    } else {
        None
    };
    let wiped = match opened {
        Some(haven) => {
            if log_out_first && haven.username().is_some() {
                // Best effort: the wipe goes on whatever the server says, or if it says nothing.
                let _ = device::block_on(async {
                    tokio::time::timeout(LOGOUT_DEADLINE, haven.logout()).await
                });
            }
            haven.wipe().map_err(anyhow::Error::new)
        }
        None => Err(anyhow::anyhow!("not opened")),
    };
    // Whatever stopped the first attempt, the directory-level wipe goes as far as it can (it is
    // idempotent: the steps already done count as done).
    let report = match wiped {
        Ok(report) => report,
        Err(_) => local_store::wipe(&dir, keystore.as_ref())
            .with_context(|| format!("wiping {}", dir.display()))?,
    };
    say!(
        "Wiped {} ({} files removed).",
        dir.display(),
        report.files_removed
    );
    Ok(())
}
