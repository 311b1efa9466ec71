//! Gives the heap a burst of requests freed back to the system once the server goes quiet.
//!
//! glibc keeps freed memory in per-thread arenas (tokio's workers, sled's I/O threads) instead of
//! returning it: after one device uploaded a thousand entries, about half of the server's
//! resident memory was free heap nobody would use until the next burst (BENCHMARKS.md, S1). On a
//! small shared host that memory is better given back. `malloc_trim` walks and locks every arena,
//! so it runs only when no request arrived for a whole period, once per burst, off the runtime's
//! workers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Requests begun since start; only ever compared, so wrapping does not matter.
static REQUESTS: AtomicU64 = AtomicU64::new(0);

/// Counts one request (called by the router's outermost middleware).
pub fn note_request() {
    REQUESTS.fetch_add(1, Ordering::Relaxed);
}

/// Decides, from the request count sampled once per period, when a burst has just ended.
#[derive(Debug, Default)]
pub struct QuietDetector {
    last_sample: u64,
    trimmed_at: u64,
}

impl QuietDetector {
    /// True once per burst: the first period with no new request after some arrived.
    pub fn burst_ended(&mut self, requests: u64) -> bool {
        let quiet = requests == self.last_sample;
        self.last_sample = requests;
        if quiet && requests != self.trimmed_at {
            self.trimmed_at = requests;
            return true;
        }
        false
    }
}

/// Runs forever: samples the request count every `period` and trims after each burst.
pub async fn trim_after_bursts(period: Duration) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut detector = QuietDetector::default();
    loop {
        tick.tick().await;
        if detector.burst_ended(REQUESTS.load(Ordering::Relaxed)) {
            // A blocking call that locks every arena in turn: not on a runtime worker.
            if let Err(error) = tokio::task::spawn_blocking(release_free_heap).await {
                tracing::warn!(%error, "trimming the heap failed");
            }
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn release_free_heap() {
    // SAFETY: malloc_trim takes a plain integer, has no preconditions and is thread-safe; it only
    // advises the kernel that whole free pages of each arena are unused.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Other allocators (musl, macOS) return memory on their own or offer no such call.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_heap() {}

#[cfg(test)]
mod tests {
    use super::QuietDetector;

    #[test]
    fn trims_once_after_each_burst_and_never_while_busy_or_idle() {
        let mut detector = QuietDetector::default();
        // Idle from the start: nothing to give back.
        assert!(!detector.burst_ended(0));
        assert!(!detector.burst_ended(0));
        // Busy: requests keep arriving.
        assert!(!detector.burst_ended(10));
        assert!(!detector.burst_ended(25));
        // The first quiet period after the burst trims; staying quiet does not trim again.
        assert!(detector.burst_ended(25));
        assert!(!detector.burst_ended(25));
        // A single request later is a (small) burst of its own.
        assert!(!detector.burst_ended(26));
        assert!(detector.burst_ended(26));
    }
}
