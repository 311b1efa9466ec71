//! Login throttling, counted in the store so every instance shares one count (DESIGN.md §5).
//!
//! Two fixed-window counters are consulted *before* the password hash runs, so a throttled
//! attempt costs no Argon2 time and says nothing about the password:
//! - per client address: every attempt (a guessing run from one place);
//! - per (account, address): every attempt at that account from that place. Keying on the
//!   address as well means nobody elsewhere can lock the owner out of their own network, and
//!   devices already logged in use refresh tokens, which are never throttled here.
//!
//! Counting failures only (as the design first said) would need a read that does not count;
//! the store offers only "count and decide", and a limit checked after the hash is no limit
//! (a correct guess would still succeed). A success therefore uses one attempt of the budget,
//! which the owner, who logs in once, never notices.
//!
//! Addresses are counted per IPv4 address and per IPv6 /64 (one subscriber's prefix), so an
//! attacker cannot multiply the budget by rotating through their own /64. The store never holds
//! an address: counters are keyed by an [`AddressTagger`] tag (a keyed hash under a secret the
//! instances share), so a copy of the database does not say who connected from where.

use std::net::IpAddr;
use std::sync::Arc;

use crate::clock::Clock;
use crate::error::ApiError;
use crate::store::{RateDecision, Store};

/// Limits of login attempts. Windows are in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginLimits {
    /// Attempts at one account from one address per window.
    pub per_account_address: u32,
    pub per_account_address_window: u64,
    /// Attempts from one address (any account) per window.
    pub per_address: u32,
    pub per_address_window: u64,
}

impl Default for LoginLimits {
    fn default() -> Self {
        Self {
            per_account_address: 10,
            per_account_address_window: 15 * 60,
            per_address: 100,
            per_address_window: 15 * 60,
        }
    }
}

/// Keyed tags of client addresses, for counters kept in the store.
#[derive(Clone)]
pub struct AddressTagger(Arc<zeroize::Zeroizing<[u8; 32]>>);

impl std::fmt::Debug for AddressTagger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AddressTagger(..)")
    }
}

impl AddressTagger {
    pub fn new(key: zeroize::Zeroizing<[u8; 32]>) -> Self {
        Self(Arc::new(key))
    }

    /// 16 bytes naming the subscriber behind `client` (see [`address_bytes`]).
    pub fn tag(&self, client: IpAddr) -> [u8; 16] {
        let mac = super::hmac_sha256(&self.0, &[b"haven/address/v1\0", &address_bytes(client)]);
        let mut tag = [0u8; 16];
        tag.copy_from_slice(&mac[..16]);
        tag
    }
}

/// Decides whether a login attempt may proceed.
#[derive(Debug, Clone)]
pub struct LoginLimiter {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    limits: LoginLimits,
    addresses: AddressTagger,
}

impl LoginLimiter {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        limits: LoginLimits,
        addresses: AddressTagger,
    ) -> Self {
        Self {
            store,
            clock,
            limits,
            addresses,
        }
    }

    pub fn limits(&self) -> &LoginLimits {
        &self.limits
    }

    /// Counts one attempt at the account named by `username_key` from `client`, and answers
    /// `rate_limited` (with Retry-After) when either limit is exceeded. Call before verifying
    /// the password; unknown usernames count exactly like known ones.
    pub async fn check(&self, username_key: &[u8; 32], client: IpAddr) -> Result<(), ApiError> {
        let now = self.clock.now();
        let address = self.addresses.tag(client);

        let mut key = Vec::with_capacity(48);
        key.extend_from_slice(b"login/addr/");
        key.extend_from_slice(&address);
        let per_address = self
            .store
            .rate_limit_hit(
                &key,
                now,
                self.limits.per_address_window,
                self.limits.per_address,
            )
            .await?;

        key.clear();
        key.extend_from_slice(b"login/acct/");
        key.extend_from_slice(username_key);
        key.extend_from_slice(&address);
        let per_account = self
            .store
            .rate_limit_hit(
                &key,
                now,
                self.limits.per_account_address_window,
                self.limits.per_account_address,
            )
            .await?;

        // Both counters were hit whatever the first said, so the per-account count does not
        // depend on the address budget; the longer wait wins.
        let wait = [per_address, per_account]
            .into_iter()
            .filter_map(|decision| match decision {
                RateDecision::Limited { retry_after } => Some(retry_after),
                RateDecision::Allowed => None,
            })
            .max();
        match wait {
            Some(retry_after) => {
                metrics::counter!("haven_auth_login_throttled_total").increment(1);
                Err(ApiError::rate_limited(retry_after))
            }
            None => Ok(()),
        }
    }
}

/// The part of an address that names one subscriber: IPv4 whole, IPv6 by its /64 (IPv4-mapped
/// IPv6 as the IPv4 address). Tagged so the two families never collide.
fn address_bytes(client: IpAddr) -> Vec<u8> {
    match client {
        IpAddr::V4(v4) => [&[4u8][..], &v4.octets()].concat(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => [&[4u8][..], &v4.octets()].concat(),
            None => [&[6u8][..], &v6.octets()[..8]].concat(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::store::spy::SpyStore;
    use haven_protocol::ErrorCode;

    /// A multiple of the 15-minute window, so the expected Retry-After values are exact.
    const T0: u64 = 1_800_000_000;

    fn limiter(limits: LoginLimits) -> (LoginLimiter, ManualClock) {
        let clock = ManualClock::new(T0);
        (
            LoginLimiter::new(
                SpyStore::new(),
                Arc::new(clock.clone()),
                limits,
                AddressTagger::new(zeroize::Zeroizing::new([7u8; 32])),
            ),
            clock,
        )
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn retry_after(result: Result<(), ApiError>) -> Option<u64> {
        let error = result.err()?;
        assert_eq!(error.code(), ErrorCode::RateLimited);
        error.body().error.retry_after
    }

    #[tokio::test]
    async fn per_account_and_address() {
        let (limiter, clock) = limiter(LoginLimits::default());
        let alice = [1u8; 32];
        let home = ip("192.0.2.10");
        for _ in 0..10 {
            limiter.check(&alice, home).await.unwrap();
        }
        clock.advance(100);
        assert_eq!(retry_after(limiter.check(&alice, home).await), Some(800));
        // The same account from another address, and another account from this one, go on.
        limiter.check(&alice, ip("198.51.100.7")).await.unwrap();
        limiter.check(&[2u8; 32], home).await.unwrap();
        // The window ends.
        clock.advance(800);
        limiter.check(&alice, home).await.unwrap();
    }

    #[tokio::test]
    async fn per_address_across_accounts() {
        let (limiter, _clock) = limiter(LoginLimits::default());
        let spray = ip("203.0.113.5");
        for account in 0..100u8 {
            limiter.check(&[account; 32], spray).await.unwrap();
        }
        assert!(retry_after(limiter.check(&[200; 32], spray).await).is_some());
        // Someone else's address is unaffected.
        limiter.check(&[200; 32], ip("203.0.113.6")).await.unwrap();
    }

    #[tokio::test]
    async fn ipv6_is_counted_per_64_and_mapped_v4_as_v4() {
        let limits = LoginLimits {
            per_address: 2,
            ..LoginLimits::default()
        };
        let (limiter, _clock) = limiter(limits);
        limiter
            .check(&[1; 32], ip("2001:db8:1:2::1"))
            .await
            .unwrap();
        limiter
            .check(&[2; 32], ip("2001:db8:1:2:ffff::9"))
            .await
            .unwrap();
        assert!(retry_after(limiter.check(&[3; 32], ip("2001:db8:1:2::abcd")).await).is_some());
        limiter
            .check(&[3; 32], ip("2001:db8:1:3::1"))
            .await
            .unwrap();

        limiter.check(&[1; 32], ip("192.0.2.1")).await.unwrap();
        limiter
            .check(&[2; 32], ip("::ffff:192.0.2.1"))
            .await
            .unwrap();
        assert!(retry_after(limiter.check(&[3; 32], ip("192.0.2.1")).await).is_some());
    }

    #[test]
    fn address_keys() {
        assert_eq!(address_bytes(ip("192.0.2.1")), vec![4, 192, 0, 2, 1]);
        assert_eq!(address_bytes(ip("::ffff:192.0.2.1")), vec![4, 192, 0, 2, 1]);
        assert_eq!(
            address_bytes(ip("2001:db8::1")),
            vec![6, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0]
        );
    }

    #[test]
    fn address_tags_hide_the_address_and_name_one_subscriber() {
        let tagger = AddressTagger::new(zeroize::Zeroizing::new([3u8; 32]));
        let v4: IpAddr = "192.0.2.7".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let tag = tagger.tag(v4);
        assert!(!tag.windows(4).any(|w| w == [192, 0, 2, 7]));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap_or(v4);
        assert_eq!(
            tagger.tag(mapped),
            tag,
            "IPv4-mapped IPv6 is the IPv4 address"
        );
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap_or(v4);
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap_or(v4);
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap_or(v4);
        assert_eq!(tagger.tag(a), tagger.tag(b), "one /64, one subscriber");
        assert_ne!(tagger.tag(a), tagger.tag(c));
        let other = AddressTagger::new(zeroize::Zeroizing::new([4u8; 32]));
        assert_ne!(other.tag(v4), tag, "the tag depends on the secret");
    }
}
