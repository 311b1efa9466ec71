//! Local-only journal mode: a journal that stays on this device.
//!
//! Two cases, one switch ([`Haven::set_local_only`]):
//! - **No account**: the journal lives in a space of its own with a random singleton key; edits
//!   make no envelopes at all, so nothing exists that could be sent. Registering or logging in
//!   later moves it into the account and uploads everything (`Replica::stage_adopt_local_journal`).
//! - **An account**: syncing of the journal stops (no push, no pull, no live connection for the
//!   private space); edits keep their sealed envelopes in the outbox, and turning local-only off
//!   uploads them. Data on this device is never touched by the switch.

use super::Haven;
use super::error::{HavenError, HavenResult};
use super::records::CutOff;
use crate::local_store::WriteBatch;

impl Haven {
    /// Keeps the journal on this device (`true`) or syncs it (`false`).
    ///
    /// Without an account, `true` starts a local journal (idempotent) and `false` fails with
    /// [`HavenError::NotLoggedIn`]: register or log in to sync it. With an account, it pauses or
    /// resumes syncing of the journal; resuming wakes live sync, which uploads what waited.
    pub fn set_local_only(&self, on: bool) -> HavenResult<()> {
        let mut replica = self.replica();
        match (&replica.meta.account, on) {
            (None, true) => replica.start_local_journal()?,
            (None, false) => return Err(HavenError::NotLoggedIn),
            (Some(account), _) => {
                if account.cut_off.is_some() && !on {
                    return Err(match account.cut_off {
                        Some(CutOff::DeviceRevoked) => HavenError::DeviceRevoked,
                        _ => HavenError::AccountErased,
                    });
                }
                if replica.meta.local_only != on {
                    replica.meta.local_only = on;
                    let mut batch = WriteBatch::new();
                    replica.stage_meta(&mut batch)?;
                    if let Err(error) = replica.commit(batch) {
                        replica.meta.local_only = !on;
                        return Err(error);
                    }
                }
            }
        }
        drop(replica);
        self.refresh_status();
        // Live sync (if running) reconnects to the feed the mode allows; resuming uploads.
        self.note_local_change();
        Ok(())
    }

    /// Whether the journal stays on this device: a local journal without an account, or an
    /// account switched to local-only.
    pub fn is_local_only(&self) -> bool {
        self.replica().is_local_only()
    }
}
