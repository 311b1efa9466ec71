//! Server-side hashing of the client's `auth_secret` (DESIGN.md §4): Argon2id, PHC strings.
//!
//! The client never sends its password: it sends `auth_secret`, 32 bytes derived from it with a
//! slow client-side KDF. The server still hashes that secret, so that a copy of the database is
//! not a set of bearer credentials. Argon2id costs memory on purpose (19 MiB a hash), so hashing
//! runs on the blocking pool behind a semaphore: a login flood queues instead of exhausting
//! memory or starving the async workers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use subtle::ConstantTimeEq as _;
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

use crate::clock::random_bytes;

/// Memory cost in KiB of new hashes (OWASP's Argon2id minimum, the `argon2` crate's default).
#[cfg(not(feature = "insecure-fast-kdf"))]
pub const HASH_M_KIB: u32 = 19_456;
/// Iterations of new hashes.
#[cfg(not(feature = "insecure-fast-kdf"))]
pub const HASH_T: u32 = 2;

/// Test-only cheap parameters; a release build refuses this feature (see `lib.rs`).
#[cfg(feature = "insecure-fast-kdf")]
pub const HASH_M_KIB: u32 = 256;
#[cfg(feature = "insecure-fast-kdf")]
pub const HASH_T: u32 = 1;

/// Lanes of new hashes.
pub const HASH_P: u32 = 1;

/// Upper bounds on the parameters a stored hash may ask for. Verification takes its cost from the
/// PHC string; these bounds keep a corrupt or planted record from making one login allocate
/// gigabytes. They leave room to raise the parameters later (hashes are upgraded at login).
const MAX_VERIFY_M_KIB: u32 = 64 * 1024;
const MAX_VERIFY_T: u32 = 16;
const MAX_VERIFY_P: u32 = 4;

/// Length of the client's `auth_secret` (and of `recovery_auth`).
pub const SECRET_LEN: usize = 32;

/// Salt length of new hashes (the PHC recommendation).
const SALT_LEN: usize = 16;

/// Argon2's working memory is reserved at least this large. glibc serves an allocation above its
/// largest dynamic mmap threshold (32 MiB on 64-bit) with a mapping of its own and unmaps it on
/// free. Below that, freeing the first 19 MiB hash raises the threshold, later hashes come from
/// per-thread arenas, and those stay resident: about 80 MiB kept after a few logins (BENCHMARKS.md,
/// S1). Only the blocks a hash uses are ever touched, so the reservation costs address space, not
/// memory.
const ALWAYS_MAPPED_BYTES: usize = 32 * 1024 * 1024 + 64 * 1024;

/// Why hashing or verification could not give an answer. A wrong secret is not an error: it is
/// `Ok(false)`.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// Every hashing slot stayed busy for the whole queue timeout: the server is overloaded.
    #[error("password hashing is saturated")]
    Busy,
    /// The stored hash is not an Argon2id PHC string within the accepted parameter bounds.
    #[error("stored password hash is malformed or out of bounds")]
    BadHash,
    /// Argon2 itself failed (parameters, salt generation).
    #[error("password hashing failed: {0}")]
    Hash(String),
    /// The blocking task died (a panic in the hash).
    #[error("password hashing task failed")]
    Worker,
}

/// Hashes and verifies `auth_secret`s with a cap on concurrent hashes.
#[derive(Debug, Clone)]
pub struct PasswordHasher {
    params: Params,
    semaphore: Arc<Semaphore>,
    queue_timeout: Duration,
    /// A hash of a fixed secret with the current parameters, verified against for unknown users
    /// so that they cost the same time as a wrong password.
    dummy_phc: Arc<str>,
    running: Arc<AtomicUsize>,
    #[cfg(test)]
    peak: Arc<AtomicUsize>,
    #[cfg(test)]
    hold: Option<Duration>,
}

impl PasswordHasher {
    /// `concurrency` hashes may run at once (at least one); a hash that waits longer than
    /// `queue_timeout` for a slot fails with [`PasswordError::Busy`].
    ///
    /// Computes the dummy hash once, synchronously (tens of milliseconds): call it at start-up.
    pub fn new(concurrency: usize, queue_timeout: Duration) -> Result<Self, PasswordError> {
        let params = Params::new(HASH_M_KIB, HASH_T, HASH_P, None)
            .map_err(|error| PasswordError::Hash(error.to_string()))?;
        // Fixed input and salt: the dummy is the same on every start and every instance, and
        // nothing about it is secret (it only has to cost what a real verification costs).
        let dummy = hash_blocking(&params, b"haven/dummy-auth-secret", b"haven/dummy-salt")?;
        Ok(Self {
            params,
            semaphore: Arc::new(Semaphore::new(concurrency.max(1))),
            queue_timeout,
            dummy_phc: Arc::from(dummy),
            running: Arc::new(AtomicUsize::new(0)),
            #[cfg(test)]
            peak: Arc::new(AtomicUsize::new(0)),
            #[cfg(test)]
            hold: None,
        })
    }

    /// A PHC string of Argon2id(`secret`) under a fresh random salt and the current parameters.
    pub async fn hash(&self, secret: &[u8; SECRET_LEN]) -> Result<String, PasswordError> {
        let secret = Zeroizing::new(*secret);
        let params = self.params.clone();
        self.run(move || hash_blocking(&params, secret.as_slice(), &random_bytes::<SALT_LEN>()))
            .await?
    }

    /// Whether `secret` matches the stored `phc`. The comparison is the `argon2` crate's
    /// constant-time one; the cost comes from the PHC string, so hashes made with older (or the
    /// fast test) parameters still verify.
    pub async fn verify(
        &self,
        secret: &[u8; SECRET_LEN],
        phc: &str,
    ) -> Result<bool, PasswordError> {
        // Parse and bound-check before queueing, so a bad record costs no hashing slot.
        check_phc(phc)?;
        let secret = Zeroizing::new(*secret);
        let phc = phc.to_owned();
        self.run(move || verify_blocking(&secret, &phc)).await?
    }

    /// The unknown-user path: verifies `secret` against the dummy hash, taking the time a real
    /// verification takes, and always fails.
    pub async fn verify_unknown_user(
        &self,
        secret: &[u8; SECRET_LEN],
    ) -> Result<(), PasswordError> {
        let secret = Zeroizing::new(*secret);
        let phc = Arc::clone(&self.dummy_phc);
        // The result is ignored on purpose: nobody knows the dummy's input, and even a match
        // must not log anyone in.
        let _ = self.run(move || verify_blocking(&secret, &phc)).await?;
        Ok(())
    }

    /// True when `phc` was made with weaker parameters than the current ones (or is not a hash
    /// this server can read), so a successful login should store a fresh hash.
    pub fn needs_rehash(&self, phc: &str) -> bool {
        match check_phc(phc) {
            Ok(params) => {
                params.m_cost() < self.params.m_cost()
                    || params.t_cost() < self.params.t_cost()
                    || params.p_cost() != self.params.p_cost()
            }
            Err(_) => true,
        }
    }

    /// Hashes running right now.
    pub fn in_flight(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }

    /// Runs `work` on the blocking pool once a slot is free.
    async fn run<T, F>(&self, work: F) -> Result<T, PasswordError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let permit = tokio::time::timeout(
            self.queue_timeout,
            Arc::clone(&self.semaphore).acquire_owned(),
        )
        .await
        .map_err(|_| PasswordError::Busy)?
        // The semaphore is never closed.
        .map_err(|_| PasswordError::Busy)?;
        let running = Arc::clone(&self.running);
        #[cfg(test)]
        let (peak, hold) = (Arc::clone(&self.peak), self.hold);
        let task = tokio::task::spawn_blocking(move || {
            // The permit moves into the blocking task: if the request is cancelled, the hash
            // still holds its slot until it really stops using the memory.
            let _permit = permit;
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            #[cfg(test)]
            {
                peak.fetch_max(now, Ordering::SeqCst);
                if let Some(hold) = hold {
                    std::thread::sleep(hold);
                }
            }
            #[cfg(not(test))]
            let _ = now;
            let out = work();
            running.fetch_sub(1, Ordering::SeqCst);
            out
        });
        task.await.map_err(|_| PasswordError::Worker)
    }

    /// Test hook: every hash holds its slot this long, so overlap is observable.
    #[cfg(test)]
    fn with_hold(mut self, hold: Duration) -> Self {
        self.hold = Some(hold);
        self
    }

    #[cfg(test)]
    fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
}

fn argon2id(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

/// Parses `phc` and checks it is Argon2id v1.3 within the accepted bounds.
fn check_phc(phc: &str) -> Result<Params, PasswordError> {
    let hash = PasswordHash::new(phc).map_err(|_| PasswordError::BadHash)?;
    if hash.algorithm.as_str() != "argon2id" || hash.salt.is_none() || hash.hash.is_none() {
        return Err(PasswordError::BadHash);
    }
    if hash.version.is_some_and(|version| version != 0x13) {
        return Err(PasswordError::BadHash);
    }
    let params = Params::try_from(&hash).map_err(|_| PasswordError::BadHash)?;
    if params.m_cost() > MAX_VERIFY_M_KIB
        || params.t_cost() > MAX_VERIFY_T
        || params.p_cost() > MAX_VERIFY_P
    {
        return Err(PasswordError::BadHash);
    }
    Ok(params)
}

/// Argon2's working memory for `params`, reserved so that freeing it returns it to the system
/// (see [`ALWAYS_MAPPED_BYTES`]).
fn working_memory(params: &Params) -> Vec<Block> {
    let used = params.block_count();
    let mut memory = Vec::with_capacity(used.max(ALWAYS_MAPPED_BYTES / Block::SIZE));
    memory.resize(used, Block::default());
    memory
}

fn hash_error(error: impl std::fmt::Display) -> PasswordError {
    PasswordError::Hash(error.to_string())
}

/// The PHC string of Argon2id v1.3(`secret`, `salt`) under `params`.
fn hash_blocking(params: &Params, secret: &[u8], salt: &[u8]) -> Result<String, PasswordError> {
    let output_len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let mut out = Zeroizing::new(vec![0u8; output_len]);
    argon2id(params)
        .hash_password_into_with_memory(secret, salt, &mut out, working_memory(params))
        .map_err(hash_error)?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(hash_error)?,
        salt: Some(Salt::new(salt).map_err(hash_error)?),
        hash: Some(Output::new(&out).map_err(hash_error)?),
    };
    Ok(hash.to_string())
}

/// Recomputes the hash of `secret` with `phc`'s salt and parameters and compares the outputs in
/// constant time.
fn verify_blocking(secret: &[u8; SECRET_LEN], phc: &str) -> Result<bool, PasswordError> {
    let hash = PasswordHash::new(phc).map_err(|_| PasswordError::BadHash)?;
    let params = Params::try_from(&hash).map_err(|_| PasswordError::BadHash)?;
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return Err(PasswordError::BadHash);
    };
    let mut out = Zeroizing::new(vec![0u8; expected.len()]);
    argon2id(&params)
        .hash_password_into_with_memory(secret, salt, &mut out, working_memory(&params))
        .map_err(hash_error)?;
    Ok(bool::from(out.as_slice().ct_eq(expected.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hasher(cap: usize) -> PasswordHasher {
        PasswordHasher::new(cap, Duration::from_secs(30)).unwrap()
    }

    #[tokio::test]
    async fn hash_then_verify() {
        let hasher = hasher(2);
        let secret = [7u8; 32];
        let phc = hasher.hash(&secret).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$"), "{phc}");
        assert!(phc.contains(&format!("m={HASH_M_KIB},t={HASH_T},p={HASH_P}")));
        assert!(hasher.verify(&secret, &phc).await.unwrap());
        assert!(!hasher.verify(&[8u8; 32], &phc).await.unwrap());
        // Two hashes of one secret differ: the salt is random.
        assert_ne!(hasher.hash(&secret).await.unwrap(), phc);
        assert!(!hasher.needs_rehash(&phc));
    }

    #[tokio::test]
    async fn verifies_hashes_of_either_parameter_set() {
        let hasher = hasher(2);
        let secret = [3u8; 32];
        for (m, t) in [(19_456, 2), (256, 1)] {
            let params = Params::new(m, t, 1, None).unwrap();
            let phc = hash_blocking(&params, &secret, b"0123456789abcdef").unwrap();
            assert!(hasher.verify(&secret, &phc).await.unwrap(), "m={m} t={t}");
            assert!(
                !hasher.verify(&[4u8; 32], &phc).await.unwrap(),
                "m={m} t={t}"
            );
            // Only hashes weaker than the current parameters want an upgrade.
            assert_eq!(hasher.needs_rehash(&phc), m < HASH_M_KIB || t < HASH_T);
        }
    }

    #[test]
    fn hashes_are_the_argon2_crates_own_phc_strings() {
        // Stored hashes made before (by the crate's allocating path) must keep verifying, and
        // new ones must be what that path makes for the same salt.
        use argon2::PasswordHasher as _;
        let params = Params::new(256, 1, 1, None).unwrap();
        let salt = b"0123456789abcdef";
        let theirs = argon2id(&params)
            .hash_password_with_salt(&[5u8; 32], salt)
            .unwrap()
            .to_string();
        assert_eq!(hash_blocking(&params, &[5u8; 32], salt).unwrap(), theirs);
        assert!(verify_blocking(&[5u8; 32], &theirs).unwrap());
        assert!(!verify_blocking(&[6u8; 32], &theirs).unwrap());
    }

    #[test]
    fn working_memory_is_reserved_above_the_mmap_threshold_and_touched_only_as_used() {
        let params = Params::new(HASH_M_KIB, HASH_T, HASH_P, None).unwrap();
        let memory = working_memory(&params);
        assert_eq!(memory.len(), params.block_count());
        assert!(memory.capacity() * Block::SIZE >= ALWAYS_MAPPED_BYTES);
    }

    #[tokio::test]
    async fn refuses_bad_or_out_of_bounds_hashes() {
        let hasher = hasher(1);
        let secret = [3u8; 32];
        let huge = Params::new(MAX_VERIFY_M_KIB + 8, 1, 1, None).unwrap();
        // Build the PHC string by hand: hashing with `huge` would allocate it.
        let good = hasher.hash(&secret).await.unwrap();
        let planted = good.replace(&format!("m={HASH_M_KIB}"), &format!("m={}", huge.m_cost()));
        for bad in [
            "",
            "not a hash",
            "$argon2i$v=19$m=256,t=1,p=1$MDEyMzQ1Njc4OWFiY2RlZg$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "$argon2id$v=19$m=256,t=1,p=1$MDEyMzQ1Njc4OWFiY2RlZg",
            planted.as_str(),
        ] {
            assert!(
                matches!(
                    hasher.verify(&secret, bad).await,
                    Err(PasswordError::BadHash)
                ),
                "{bad}"
            );
            assert!(hasher.needs_rehash(bad));
        }
    }

    #[tokio::test]
    async fn unknown_user_path_runs_a_real_verification_and_fails() {
        let hasher = hasher(1);
        hasher.verify_unknown_user(&[0u8; 32]).await.unwrap();
        // The dummy carries the current parameters, so it costs what a real check costs.
        assert!(
            hasher
                .dummy_phc
                .contains(&format!("m={HASH_M_KIB},t={HASH_T},p={HASH_P}"))
        );
        assert!(check_phc(&hasher.dummy_phc).is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn semaphore_caps_concurrent_hashes() {
        let cap = 2;
        let hasher = hasher(cap).with_hold(Duration::from_millis(150));
        let started = std::time::Instant::now();
        let tasks: Vec<_> = (0..=cap)
            .map(|i| {
                let hasher = hasher.clone();
                tokio::spawn(async move { hasher.hash(&[i as u8; 32]).await })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(
            hasher.peak(),
            cap,
            "N+1 hashes with cap N never run N+1 at once"
        );
        // The third hash had to wait for a slot: two rounds of holding.
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(hasher.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_full_queue_answers_busy() {
        let hasher = PasswordHasher::new(1, Duration::from_millis(20))
            .unwrap()
            .with_hold(Duration::from_millis(300));
        let first = {
            let hasher = hasher.clone();
            tokio::spawn(async move { hasher.hash(&[1; 32]).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(matches!(
            hasher.hash(&[2; 32]).await,
            Err(PasswordError::Busy)
        ));
        first.await.unwrap().unwrap();
    }
}
