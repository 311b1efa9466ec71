//! Refresh tokens: opaque, 256-bit, stored only as SHA-256, rotated on every use, with reuse
//! detection over the whole family (one login of one device = one session record).
//!
//! Token layout (base64url without padding, 128 characters):
//!
//! ```text
//! session_id 16 ‖ generation u64 BE ‖ auth_version u64 BE ‖ user_id 16 ‖ secret 32 ‖ tag 16
//! ```
//!
//! - `secret` is 256 random bits: the part an attacker cannot guess.
//! - The store keeps SHA-256 of the 96 token bytes (current and previous), so a copy of the
//!   database holds no usable token; lookups are by session id and hashes are compared in
//!   constant time.
//! - `tag` is HMAC-SHA256 (truncated) under a server secret over the rest. Reuse detection
//!   revokes a family, so it must only fire for tokens this server really issued: someone who
//!   merely knows a session id (it is inside every access token) and sends random bytes gets a
//!   plain `unauthorized` with no side effect, instead of logging the owner out.
//! - `auth_version` rides along because the session record does not keep it: a token minted
//!   before a password change is refused (the hash covers it, so it cannot be edited), even if
//!   revoking the other sessions failed halfway. `user_id` lets an erased account (whose
//!   sessions are gone) answer `account_erased` rather than a bare `unauthorized`.
//!
//! Rotation rules (DESIGN.md §5):
//! - the current token → a new pair;
//! - the token that was current before the last rotation, within `grace` seconds of that
//!   rotation (an app killed before it stored the new pair) → a new pair again; the pair that was
//!   never delivered dies. The grace window is not extended by such replays;
//! - any other genuine token of the session → reuse: the whole session is revoked;
//! - malformed, forged or unknown → `unauthorized`, nothing written.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use haven_protocol::{DeviceId, HexId, UserId};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use super::hmac_sha256;
use crate::clock::{Clock, random_bytes};
use crate::store::{Cas, SessionRecord, Store, StoreError};

const SID: std::ops::Range<usize> = 0..16;
const GENERATION: std::ops::Range<usize> = 16..24;
const AUTH_VERSION: std::ops::Range<usize> = 24..32;
const USER: std::ops::Range<usize> = 32..48;
const SECRET: std::ops::Range<usize> = 48..80;
const TAG: std::ops::Range<usize> = 80..96;
const TOKEN_BYTES: usize = 96;
/// base64url without padding of 96 bytes.
const TOKEN_CHARS: usize = 128;
const TAG_DOMAIN: &[u8] = b"haven/refresh-token/v1\0";

/// Lifetimes of a refresh-token family, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshConfig {
    /// A session unused this long is dead.
    pub idle: u64,
    /// A session this old is dead however often it is used.
    pub absolute: u64,
    /// How long after a rotation the previous token still works once more.
    pub grace: u64,
}

impl Default for RefreshConfig {
    fn default() -> Self {
        Self {
            idle: 30 * 24 * 3600,
            absolute: 180 * 24 * 3600,
            grace: 60,
        }
    }
}

/// Why a refresh was refused.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("invalid refresh token")]
    Unauthorized,
    #[error("the device was revoked")]
    DeviceRevoked,
    #[error("the account was erased")]
    AccountErased,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A new session and its first refresh token.
#[derive(Debug)]
pub struct NewSession {
    pub session: SessionRecord,
    pub refresh_token: String,
}

/// The outcome of a successful refresh: who it is, and the new refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refreshed {
    pub user_id: UserId,
    pub device_id: DeviceId,
    pub session_id: HexId,
    pub space_id: HexId,
    pub auth_version: u64,
    pub refresh_token: String,
}

/// A token that parsed and carries a valid tag: one this server minted.
struct Presented {
    session_id: HexId,
    generation: u64,
    auth_version: u64,
    user_id: UserId,
    /// SHA-256 of the 96 token bytes.
    hash: [u8; 32],
}

enum Attempt {
    Done(Refreshed),
    /// The session changed between read and write (another request, another instance).
    Conflict,
}

/// Issues and rotates refresh tokens.
pub struct RefreshTokens {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    tag_key: Zeroizing<[u8; 32]>,
    config: RefreshConfig,
}

impl std::fmt::Debug for RefreshTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshTokens")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl RefreshTokens {
    /// `tag_key` must be the same on every instance (see `AuthService`, which keeps it in the
    /// store).
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        tag_key: Zeroizing<[u8; 32]>,
        config: RefreshConfig,
    ) -> Self {
        Self {
            store,
            clock,
            tag_key,
            config,
        }
    }

    /// Starts a session (a login) for a device and returns its first refresh token.
    pub async fn create(
        &self,
        user: &UserId,
        device: &DeviceId,
        auth_version: u64,
    ) -> Result<NewSession, StoreError> {
        let now = self.clock.now();
        let session_id = HexId(random_bytes());
        let (refresh_token, hash) = self.mint(&session_id, 0, auth_version, user);
        let session = SessionRecord {
            session_id,
            user_id: *user,
            device_id: *device,
            created_at: now,
            last_used_at: now,
            generation: 0,
            current_hash: hash,
            previous_hash: None,
            rotated_at: now,
            revoked: false,
        };
        self.store.create_session(session.clone()).await?;
        tracing::debug!(session = %session_id, "session created");
        Ok(NewSession {
            session,
            refresh_token,
        })
    }

    /// Rotates a refresh token by the rules in the module documentation.
    pub async fn refresh(&self, token: &str) -> Result<Refreshed, RefreshError> {
        let presented = self.parse(token).ok_or(RefreshError::Unauthorized)?;
        // The store's update is a compare-and-swap on the generation. On a conflict the rules
        // are applied once more to what is stored now (the token may have become the grace
        // token, or the session may have been revoked); a second conflict gives up.
        for _ in 0..2 {
            match self.attempt(&presented).await? {
                Attempt::Done(refreshed) => return Ok(refreshed),
                Attempt::Conflict => {
                    tracing::debug!(session = %presented.session_id, "refresh raced; re-reading");
                }
            }
        }
        Err(RefreshError::Unauthorized)
    }

    async fn attempt(&self, presented: &Presented) -> Result<Attempt, RefreshError> {
        let now = self.clock.now();
        let store = &self.store;
        let user = presented.user_id;

        let Some(session) = store.session(&presented.session_id).await? else {
            // Erasure deletes sessions; the tag vouches for the user id in the token.
            return Err(self.gone(&user).await?);
        };
        if session.user_id != user {
            return Err(RefreshError::Unauthorized);
        }
        let Some(account) = store.account(&user).await? else {
            return Err(self.gone(&user).await?);
        };
        match store.device(&user, &session.device_id).await? {
            Some(device) if device.revoked => return Err(RefreshError::DeviceRevoked),
            Some(_) => {}
            None => return Err(RefreshError::Unauthorized),
        }
        if session.revoked {
            return Err(RefreshError::Unauthorized);
        }
        if presented.auth_version != account.auth_version {
            // The password changed (or a device was revoked) after this family began: it is
            // dead. Revoking makes that explicit for every instance.
            store.revoke_session(&session.session_id).await?;
            tracing::debug!(session = %session.session_id, "refresh with a stale auth_version; session revoked");
            return Err(RefreshError::Unauthorized);
        }
        if now.saturating_sub(session.created_at) > self.config.absolute
            || now.saturating_sub(session.last_used_at) > self.config.idle
        {
            return Err(RefreshError::Unauthorized);
        }

        let is_current = presented.generation == session.generation
            && bool::from(presented.hash.ct_eq(&session.current_hash));
        let is_grace = presented.generation < session.generation
            && session
                .previous_hash
                .is_some_and(|previous| bool::from(presented.hash.ct_eq(&previous)))
            && now.saturating_sub(session.rotated_at) <= self.config.grace;
        if !is_current && !is_grace {
            // A genuine token that is no longer valid came back: two parties hold this family
            // (RFC 9700 §4.14.2). Revoke it whole; the owner logs in again.
            store.revoke_session(&session.session_id).await?;
            metrics::counter!("haven_auth_refresh_reuse_total").increment(1);
            tracing::warn!("refresh token reuse detected; session revoked");
            tracing::debug!(session = %session.session_id, "reused refresh token family revoked");
            return Err(RefreshError::Unauthorized);
        }

        let Some(generation) = session.generation.checked_add(1) else {
            return Err(RefreshError::Unauthorized);
        };
        let (refresh_token, hash) =
            self.mint(&session.session_id, generation, account.auth_version, &user);
        let next = SessionRecord {
            generation,
            current_hash: hash,
            last_used_at: now,
            // A normal rotation makes the presented token the grace token and starts the
            // window. A grace replay keeps both: the same token may be replayed again, but only
            // inside the window of the first rotation, and the pair it replaces dies.
            previous_hash: if is_current {
                Some(presented.hash)
            } else {
                session.previous_hash
            },
            rotated_at: if is_current { now } else { session.rotated_at },
            ..session.clone()
        };
        match store.update_session(session.generation, next).await? {
            Cas::Done(()) => {
                tracing::debug!(session = %session.session_id, generation, grace = is_grace, "refresh token rotated");
                Ok(Attempt::Done(Refreshed {
                    user_id: user,
                    device_id: session.device_id,
                    session_id: session.session_id,
                    space_id: account.space_id,
                    auth_version: account.auth_version,
                    refresh_token,
                }))
            }
            Cas::Conflict => Ok(Attempt::Conflict),
        }
    }

    /// The answer for a family whose session or account no longer exists.
    async fn gone(&self, user: &UserId) -> Result<RefreshError, StoreError> {
        Ok(if self.store.is_erased(user).await? {
            RefreshError::AccountErased
        } else {
            RefreshError::Unauthorized
        })
    }

    /// Makes a token and the hash the store keeps.
    fn mint(
        &self,
        session: &HexId,
        generation: u64,
        auth_version: u64,
        user: &UserId,
    ) -> (String, [u8; 32]) {
        let mut raw = Zeroizing::new([0u8; TOKEN_BYTES]);
        raw[SID].copy_from_slice(session.as_bytes());
        raw[GENERATION].copy_from_slice(&generation.to_be_bytes());
        raw[AUTH_VERSION].copy_from_slice(&auth_version.to_be_bytes());
        raw[USER].copy_from_slice(user.as_bytes());
        raw[SECRET].copy_from_slice(&*Zeroizing::new(random_bytes::<32>()));
        let tag = self.tag(&raw[..TAG.start]);
        raw[TAG].copy_from_slice(&tag);
        (
            URL_SAFE_NO_PAD.encode(raw.as_slice()),
            sha256(raw.as_slice()),
        )
    }

    fn tag(&self, body: &[u8]) -> [u8; 16] {
        let full = hmac_sha256(&self.tag_key, &[TAG_DOMAIN, body]);
        let mut tag = [0u8; 16];
        tag.copy_from_slice(&full[..16]);
        tag
    }

    /// Decodes a token and checks its tag; `None` for anything this server did not mint.
    fn parse(&self, token: &str) -> Option<Presented> {
        if token.len() != TOKEN_CHARS {
            return None;
        }
        let mut raw = Zeroizing::new([0u8; TOKEN_BYTES]);
        // The engine refuses non-canonical trailing bits, so one token has one spelling.
        let len = URL_SAFE_NO_PAD.decode_slice(token, &mut *raw).ok()?;
        if len != TOKEN_BYTES {
            return None;
        }
        let tag = self.tag(&raw[..TAG.start]);
        if !bool::from(tag.ct_eq(&raw[TAG])) {
            return None;
        }
        Some(Presented {
            session_id: HexId(raw[SID].try_into().ok()?),
            generation: u64::from_be_bytes(raw[GENERATION].try_into().ok()?),
            auth_version: u64::from_be_bytes(raw[AUTH_VERSION].try_into().ok()?),
            user_id: HexId(raw[USER].try_into().ok()?),
            hash: sha256(&*raw),
        })
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::store::spy::SpyStore;

    const T0: u64 = 1_800_000_000;
    const USER: HexId = HexId([1; 16]);
    const DEVICE: DeviceId = haven_protocol::Bytes([2; 16]);

    struct Fixture {
        store: Arc<SpyStore>,
        clock: ManualClock,
        tokens: RefreshTokens,
    }

    async fn fixture() -> Fixture {
        let store = SpyStore::new();
        store.add_account(USER, DEVICE, "").await;
        let clock = ManualClock::new(T0);
        let tokens = RefreshTokens::new(
            store.clone(),
            Arc::new(clock.clone()),
            Zeroizing::new([9; 32]),
            RefreshConfig::default(),
        );
        Fixture {
            store,
            clock,
            tokens,
        }
    }

    impl Fixture {
        async fn login(&self) -> NewSession {
            self.tokens.create(&USER, &DEVICE, 1).await.unwrap()
        }

        async fn refresh(&self, token: &str) -> Result<String, RefreshError> {
            self.tokens.refresh(token).await.map(|r| r.refresh_token)
        }

        async fn revoked(&self, session: &HexId) -> bool {
            self.store.session_now(session).await.unwrap().revoked
        }
    }

    fn unauthorized<T: std::fmt::Debug>(result: Result<T, RefreshError>) -> bool {
        matches!(result, Err(RefreshError::Unauthorized))
    }

    #[tokio::test]
    async fn shape_and_storage() {
        let f = fixture().await;
        let login = f.login().await;
        let token = &login.refresh_token;
        assert_eq!(token.len(), TOKEN_CHARS);
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        let stored = f
            .store
            .session_now(&login.session.session_id)
            .await
            .unwrap();
        // Only the hash is stored; never the token or its secret.
        let raw = URL_SAFE_NO_PAD.decode(token).unwrap();
        assert_eq!(stored.current_hash, sha256(&raw));
        assert_eq!(stored.previous_hash, None);
        assert_eq!(stored.generation, 0);
        // Two logins share nothing.
        let other = f.login().await;
        assert_ne!(other.session.session_id, login.session.session_id);
        assert_ne!(other.refresh_token[48..], login.refresh_token[48..]);
    }

    #[tokio::test]
    async fn rotates_on_every_use() {
        let f = fixture().await;
        let login = f.login().await;
        let sid = login.session.session_id;
        f.clock.advance(600);
        let refreshed = f.tokens.refresh(&login.refresh_token).await.unwrap();
        assert_eq!(refreshed.session_id, sid);
        assert_eq!(refreshed.user_id, USER);
        assert_eq!(refreshed.device_id, DEVICE);
        assert_eq!(refreshed.auth_version, 1);
        assert_eq!(refreshed.space_id, HexId([0xaa; 16]));
        let second = refreshed.refresh_token;
        assert_ne!(second, login.refresh_token);
        let stored = f.store.session_now(&sid).await.unwrap();
        assert_eq!(
            (stored.generation, stored.last_used_at, stored.rotated_at),
            (1, T0 + 600, T0 + 600)
        );
        f.clock.advance(600);
        let third = f.refresh(&second).await.unwrap();
        assert_ne!(third, second);
        assert_eq!(f.store.session_now(&sid).await.unwrap().generation, 2);
    }

    #[tokio::test]
    async fn grace_replay_of_the_previous_token() {
        let f = fixture().await;
        let login = f.login().await;
        let sid = login.session.session_id;
        // The app sent its token, the server rotated, the app died before storing the answer.
        let lost = f.refresh(&login.refresh_token).await.unwrap();
        f.clock.advance(30);
        let replayed = f.refresh(&login.refresh_token).await.unwrap();
        assert_ne!(replayed, lost);
        // A second replay inside the window of the first rotation still works...
        f.clock.advance(20);
        let again = f.refresh(&login.refresh_token).await.unwrap();
        // ...and the newest pair is the one that lives on.
        let next = f.refresh(&again).await.unwrap();
        assert!(!f.revoked(&sid).await);
        // The pair that was never delivered is dead, and presenting it is reuse.
        assert!(unauthorized(f.refresh(&lost).await));
        assert!(f.revoked(&sid).await);
        assert!(unauthorized(f.refresh(&next).await), "the family is gone");
    }

    #[tokio::test]
    async fn grace_replays_do_not_extend_the_window() {
        let f = fixture().await;
        let login = f.login().await;
        f.refresh(&login.refresh_token).await.unwrap();
        // Replays keep working until 60 s after the first rotation, never longer: a thief
        // replaying every 50 s must not keep the old token alive.
        f.clock.advance(50);
        f.refresh(&login.refresh_token).await.unwrap();
        f.clock.advance(50);
        assert!(unauthorized(f.refresh(&login.refresh_token).await));
        assert!(f.revoked(&login.session.session_id).await);
    }

    #[tokio::test]
    async fn previous_token_outside_grace_is_reuse_and_revokes_the_family() {
        let f = fixture().await;
        let login = f.login().await;
        let sid = login.session.session_id;
        let current = f.refresh(&login.refresh_token).await.unwrap();
        f.clock.advance(61);
        assert!(unauthorized(f.refresh(&login.refresh_token).await));
        assert!(f.revoked(&sid).await);
        assert!(
            unauthorized(f.refresh(&current).await),
            "revocation took the whole family"
        );
    }

    #[tokio::test]
    async fn older_generation_is_reuse() {
        let f = fixture().await;
        let login = f.login().await;
        let sid = login.session.session_id;
        let first = f.refresh(&login.refresh_token).await.unwrap();
        let second = f.refresh(&first).await.unwrap();
        // gen 0 is now two behind: never acceptable, even within seconds.
        assert!(unauthorized(f.refresh(&login.refresh_token).await));
        assert!(f.revoked(&sid).await);
        assert!(unauthorized(f.refresh(&second).await));
    }

    #[tokio::test]
    async fn idle_and_absolute_lifetimes() {
        let f = fixture().await;
        let config = RefreshConfig::default();
        // Idle: 30 days without use.
        let login = f.login().await;
        f.clock.advance(config.idle);
        let kept = f.refresh(&login.refresh_token).await.unwrap();
        f.clock.advance(config.idle + 1);
        assert!(unauthorized(f.refresh(&kept).await));

        // Absolute: used every 29 days, still dead after 180.
        f.clock.set(T0);
        let mut token = f.login().await.refresh_token;
        let mut elapsed = 0;
        while elapsed + 29 * 86_400 <= config.absolute {
            f.clock.advance(29 * 86_400);
            elapsed += 29 * 86_400;
            token = f.refresh(&token).await.unwrap();
        }
        f.clock.set(T0 + config.absolute + 1);
        assert!(unauthorized(f.refresh(&token).await));
    }

    #[tokio::test]
    async fn malformed_forged_or_unknown_tokens_have_no_side_effects() {
        let f = fixture().await;
        let login = f.login().await;
        let sid = login.session.session_id;
        let writes = f.store.session_writes();

        // Someone who knows the session id (it is in every access token) forges a token.
        let mut forged = URL_SAFE_NO_PAD.decode(&login.refresh_token).unwrap();
        forged[SECRET].copy_from_slice(&[0u8; 32]);
        let mut wrong_generation = URL_SAFE_NO_PAD.decode(&login.refresh_token).unwrap();
        wrong_generation[GENERATION].copy_from_slice(&5u64.to_be_bytes());
        let other_server = RefreshTokens::new(
            f.store.clone(),
            Arc::new(f.clock.clone()),
            Zeroizing::new([8; 32]),
            RefreshConfig::default(),
        );
        let (foreign, _) = other_server.mint(&sid, 0, 1, &USER);
        let mut flipped = login.refresh_token.clone().into_bytes();
        flipped[127] = if flipped[127] == b'A' { b'Q' } else { b'A' };
        let unknown = f.tokens.mint(&HexId([7; 16]), 0, 1, &USER).0;

        for (name, token) in [
            ("empty", String::new()),
            ("garbage", "x".repeat(TOKEN_CHARS)),
            ("padded", format!("{}==", &login.refresh_token[..126])),
            ("too long", format!("{}AA", login.refresh_token)),
            ("a JWT", "eyJhbGciOiJFZERTQSJ9.e30.AAAA".to_owned()),
            ("forged secret", URL_SAFE_NO_PAD.encode(&forged)),
            (
                "edited generation",
                URL_SAFE_NO_PAD.encode(&wrong_generation),
            ),
            ("other server's tag key", foreign),
            ("flipped last char", String::from_utf8(flipped).unwrap()),
            ("unknown session", unknown),
        ] {
            assert!(unauthorized(f.refresh(&token).await), "{name}");
        }
        assert_eq!(f.store.session_writes(), writes, "nothing was written");
        assert!(!f.revoked(&sid).await);
        assert!(
            f.refresh(&login.refresh_token).await.is_ok(),
            "the real token still works"
        );
    }

    #[tokio::test]
    async fn revoked_session_device_account_and_auth_version() {
        // Revoked session (logout).
        let f = fixture().await;
        let login = f.login().await;
        f.store
            .revoke_session(&login.session.session_id)
            .await
            .unwrap();
        assert!(unauthorized(f.refresh(&login.refresh_token).await));

        // Revoked device → its own code, so the app stops syncing and offers export.
        let f = fixture().await;
        let login = f.login().await;
        f.store.revoke_device_now(&USER, &DEVICE).await;
        assert!(matches!(
            f.refresh(&login.refresh_token).await,
            Err(RefreshError::DeviceRevoked)
        ));

        // Erased account → its own code, although the session is gone.
        let f = fixture().await;
        let login = f.login().await;
        f.store.erase_now(&USER).await;
        assert!(matches!(
            f.refresh(&login.refresh_token).await,
            Err(RefreshError::AccountErased)
        ));

        // Password changed (auth_version bumped) → refused, and the family is closed.
        let f = fixture().await;
        let login = f.login().await;
        f.store.bump_auth_version(&USER).await;
        assert!(unauthorized(f.refresh(&login.refresh_token).await));
        assert!(f.revoked(&login.session.session_id).await);
        // A session started after the change carries the new version.
        let fresh = f.tokens.create(&USER, &DEVICE, 2).await.unwrap();
        assert!(f.refresh(&fresh.refresh_token).await.is_ok());
    }

    #[tokio::test]
    async fn a_lost_compare_and_swap_is_re_read_once() {
        let f = fixture().await;
        let login = f.login().await;
        f.store.conflict_next_update();
        // The first write "loses"; the re-read finds the same state and the second write wins.
        let next = f.refresh(&login.refresh_token).await.unwrap();
        assert_eq!(
            f.store
                .session_now(&login.session.session_id)
                .await
                .unwrap()
                .generation,
            1
        );
        assert!(f.refresh(&next).await.is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_use_of_one_token_rotates_once_per_winner_and_keeps_the_family() {
        let f = Arc::new(fixture().await);
        let login = f.login().await;
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let f = Arc::clone(&f);
                let token = login.refresh_token.clone();
                tokio::spawn(async move { f.tokens.refresh(&token).await.is_ok() })
            })
            .collect();
        let mut ok = 0;
        for task in tasks {
            ok += usize::from(task.await.unwrap());
        }
        // One normal rotation, then grace replays: within the window nobody is revoked.
        assert!(ok >= 1);
        assert!(!f.revoked(&login.session.session_id).await);
    }
}
