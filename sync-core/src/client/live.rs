//! Live sync: hold the space's WebSocket, sync on every new head, reconnect with backoff and
//! jitter. The caller owns the task and stops it (app to background, logout) with `stop`.

use std::future::Future;
use std::time::Duration;

use haven_protocol::SpaceId;

use super::Haven;
use super::error::{HavenError, HavenResult};
use super::sync::SyncReport;
use crate::env::random_array;
use crate::remote::LiveEnded;

/// First wait after a failure; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

impl Haven {
    /// Runs live sync until `stop` resolves: an initial round, then a round each time the
    /// server announces a head beyond what this device has, and each time a local edit waits to
    /// be pushed. `on_sync` sees every round's report
    /// (call-backs for the UI). Returns an error only for what retrying cannot fix (revoked,
    /// erased, logged out); network trouble is retried with backoff forever.
    pub async fn run_live<S, F>(&self, stop: S, mut on_sync: F) -> HavenResult<()>
    where
        S: Future<Output = ()>,
        F: FnMut(&HavenResult<SyncReport>),
    {
        let mut stop = std::pin::pin!(stop);
        let mut backoff = FIRST_BACKOFF;
        loop {
            let round = self.sync_once().await;
            on_sync(&round);
            if let Err(error) = &round
                && is_final(error)
            {
                return round.map(|_| ());
            }
            // Local-only: no connection that would tell the server this device is around.
            let space = match self.space() {
                Some(space) if !self.is_local_only() => space,
                _ => SpaceId::Public,
            };
            let feed = if space.is_public() {
                self.remote
                    .live(None, &space)
                    .await
                    .map_err(HavenError::from)
            } else {
                self.authed(|access| async move { self.remote.live(Some(&access), &space).await })
                    .await
            };
            let mut switched = false;
            match feed {
                Ok(mut feed) => {
                    backoff = FIRST_BACKOFF;
                    loop {
                        tokio::select! {
                            () = &mut stop => return Ok(()),
                            () = self.local_change.notified() => {
                                // Local-only switched on or off: reconnect to the right feed.
                                let wanted_public = self.space().is_none() || self.is_local_only();
                                if wanted_public != space.is_public() {
                                    switched = true;
                                    break;
                                }
                                if space.is_public() {
                                    continue;
                                }
                                let round = self.sync_private_round().await;
                                on_sync(&round);
                                if let Err(error) = &round && is_final(error) {
                                    return round.map(|_| ());
                                }
                            }
                            head = feed.next_head() => match head {
                                Ok(head) => {
                                    if head > self.status().last_confirmed_seq || space.is_public() {
                                        let round = if space.is_public() {
                                            self.sync_once().await
                                        } else {
                                            self.sync_private_round().await
                                        };
                                        on_sync(&round);
                                        if let Err(error) = &round && is_final(error) {
                                            return round.map(|_| ());
                                        }
                                    }
                                }
                                Err(LiveEnded::Unauthorized) => {
                                    // Expired or revoked: the next round refreshes or reports.
                                    break;
                                }
                                Err(LiveEnded::Closed | LiveEnded::Network { .. }) => break,
                            },
                        }
                    }
                }
                Err(error) if is_final(&error) => return Err(error),
                Err(_) => {}
            }
            if switched {
                continue;
            }
            let jitter_ms = u64::from(u16::from_be_bytes(random_array::<2>(
                self.replica().random.as_ref(),
            ))) % 1000;
            let wait = backoff + Duration::from_millis(jitter_ms);
            tokio::select! {
                () = &mut stop => return Ok(()),
                () = tokio::time::sleep(wait) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// Errors after which live sync must stop rather than retry.
fn is_final(error: &HavenError) -> bool {
    matches!(
        error,
        HavenError::DeviceRevoked | HavenError::AccountErased | HavenError::NotLoggedIn
    )
}
