//! Injected time and randomness (after matrix-rust-sdk and samod-core): the engine never reads
//! the clock or the OS random source directly, so tests can replay a run exactly from a seed.

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

/// Wall-clock time in Unix milliseconds.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| {
                i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
            })
    }
}

/// A clock tests set by hand.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(now_ms: i64) -> Self {
        Self(AtomicI64::new(now_ms))
    }

    pub fn advance_ms(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    pub fn set_ms(&self, now_ms: i64) {
        self.0.store(now_ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A source of cryptographically secure random bytes.
pub trait Random: Send + Sync + fmt::Debug {
    /// Fills `out`. Implementations must not fail silently: an OS without entropy aborts.
    fn fill(&self, out: &mut [u8]);
}

/// Fresh random bytes of a fixed size from `random`.
pub fn random_array<const N: usize>(random: &dyn Random) -> [u8; N] {
    let mut out = [0u8; N];
    random.fill(&mut out);
    out
}

/// The operating system's CSPRNG.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsRandom;

impl Random for OsRandom {
    #[allow(clippy::expect_used)]
    fn fill(&self, out: &mut [u8]) {
        // A device without an entropy source must not make keys at all.
        getrandom::fill(out).expect("the operating system's random source failed");
    }
}

/// Deterministic bytes from a seed, for tests and simulations only: SHA-256 in counter mode.
/// Never use it for real keys.
pub struct SeededRandom {
    seed: [u8; 32],
    counter: Mutex<u64>,
}

impl SeededRandom {
    pub fn new(seed: u64) -> Self {
        Self {
            seed: Sha256::digest(seed.to_be_bytes()).into(),
            counter: Mutex::new(0),
        }
    }
}

impl fmt::Debug for SeededRandom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SeededRandom")
    }
}

impl Random for SeededRandom {
    fn fill(&self, out: &mut [u8]) {
        let mut counter = self
            .counter
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        for chunk in out.chunks_mut(32) {
            let block = Sha256::new()
                .chain_update(self.seed)
                .chain_update(counter.to_be_bytes())
                .finalize();
            *counter += 1;
            chunk.copy_from_slice(&block[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_random_is_reproducible_and_seed_dependent() {
        let (a, b, c) = (
            SeededRandom::new(1),
            SeededRandom::new(1),
            SeededRandom::new(2),
        );
        let first: [u8; 40] = random_array(&a);
        assert_eq!(first, random_array::<40>(&b));
        assert_ne!(first, random_array::<40>(&c));
        assert_ne!(first, random_array::<40>(&a), "the stream moves on");
    }

    #[test]
    fn manual_clock() {
        let clock = ManualClock::new(5);
        clock.advance_ms(10);
        assert_eq!(clock.now_ms(), 15);
    }
}
