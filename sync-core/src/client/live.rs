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
/// The longest push jitter a device may set: edits wait on the device at most this long.
pub const MAX_PUSH_JITTER: Duration = Duration::from_secs(600);

impl Haven {
    /// Push batching with jitter: live sync waits a random time in `[0, max]` before pushing a
    /// local edit, and edits made meanwhile go in the same push. The server (or an observer)
    /// then sees pushes that are not timed to the writing. `Duration::ZERO` turns it off (the
    /// default: an edit is pushed at once). Kept in the profile. `sync_once` is not delayed.
    ///
    /// Errors: [`HavenError::Invalid`] above [`MAX_PUSH_JITTER`].
    pub fn set_push_jitter(&self, max: Duration) -> HavenResult<()> {
        if max > MAX_PUSH_JITTER {
            return Err(HavenError::Invalid(format!(
                "push jitter above {} s",
                MAX_PUSH_JITTER.as_secs()
            )));
        }
        let max_ms = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
        let mut replica = self.replica();
        let before = replica.meta.push_jitter_ms;
        replica.meta.push_jitter_ms = max_ms;
        let mut batch = crate::local_store::WriteBatch::new();
        replica.stage_meta(&mut batch)?;
        if let Err(error) = replica.commit(batch) {
            replica.meta.push_jitter_ms = before;
            return Err(error);
        }
        Ok(())
    }

    /// The push jitter set with [`Haven::set_push_jitter`].
    pub fn push_jitter(&self) -> Duration {
        Duration::from_millis(self.replica().meta.push_jitter_ms)
    }

    /// How long live sync waits before pushing the next local edit: uniform in `[0, jitter]`,
    /// from the injected random source.
    fn push_delay(&self) -> Duration {
        let replica = self.replica();
        let max_ms = replica.meta.push_jitter_ms;
        if max_ms == 0 {
            return Duration::ZERO;
        }
        let draw = u64::from_be_bytes(random_array::<8>(replica.random.as_ref()));
        Duration::from_millis(draw % (max_ms + 1))
    }

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
                                let delay = self.push_delay();
                                if !delay.is_zero() {
                                    // Edits made while waiting ride along in the same push.
                                    tokio::select! {
                                        () = &mut stop => return Ok(()),
                                        () = tokio::time::sleep(delay) => {}
                                    }
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::env::{SeededRandom, SystemClock};
    use crate::local_store::MemoryKeyStore;
    use crate::remote::NoServer;
    use crate::{HavenConfig, HavenError};

    fn haven(seed: u64) -> Haven {
        let random = Arc::new(SeededRandom::new(seed));
        let config = HavenConfig {
            clock: Arc::new(SystemClock),
            random: random.clone(),
            ..HavenConfig::in_memory()
        };
        Haven::open(
            config,
            Arc::new(MemoryKeyStore::new(random)),
            Arc::new(NoServer),
        )
        .unwrap()
    }

    #[test]
    fn push_delays_are_drawn_within_the_jitter_and_off_by_default() {
        // Fixed seeds: a failure names its seed and replays exactly.
        for seed in 1..=20 {
            let haven = haven(seed);
            assert_eq!(haven.push_jitter(), Duration::ZERO);
            assert_eq!(haven.push_delay(), Duration::ZERO);
            let max = Duration::from_millis(2_000);
            haven.set_push_jitter(max).unwrap();
            assert_eq!(haven.push_jitter(), max);
            let delays: Vec<Duration> = (0..200).map(|_| haven.push_delay()).collect();
            assert!(delays.iter().all(|delay| *delay <= max), "seed {seed}");
            // Spread over the range, not stuck at one end.
            assert!(delays.iter().any(|delay| *delay < max / 4), "seed {seed}");
            assert!(
                delays.iter().any(|delay| *delay > max * 3 / 4),
                "seed {seed}"
            );
            assert!(matches!(
                haven.set_push_jitter(MAX_PUSH_JITTER + Duration::from_millis(1)),
                Err(HavenError::Invalid(_))
            ));
            assert_eq!(haven.push_jitter(), max);
            haven.set_push_jitter(Duration::ZERO).unwrap();
            assert_eq!(haven.push_delay(), Duration::ZERO);
        }
    }
}
