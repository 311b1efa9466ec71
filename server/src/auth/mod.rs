//! Authentication (DESIGN.md §5): password checks, access and refresh tokens, login throttling.
//!
//! [`AuthService`] bundles the parts for the HTTP layer:
//! - [`password`]: Argon2id of the client's `auth_secret`, behind a concurrency cap;
//! - [`jwt`]: the shared EdDSA key set that signs and verifies 15-minute access tokens;
//! - [`refresh`]: opaque rotating refresh tokens with reuse detection;
//! - [`access`]: `Authorization: Bearer` → [`AuthContext`], re-checking the store every time;
//! - [`limits`]: login throttling counted in the store.
//!
//! Nothing here logs a token, a secret or a username; session ids and kids appear at debug only.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderValue;
use haven_protocol::api::{SessionResponse, normalize_username};
use haven_protocol::{DeviceId, ErrorCode, HexId, SpaceId};
use hmac::{Hmac, KeyInit, Mac as _};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::clock::{Clock, random_bytes};
use crate::error::{ApiError, ApiResult};
use crate::store::{AccountRecord, Cas, Store, StoreError};

pub mod access;
pub mod jwt;
pub mod limits;
pub mod password;
pub mod refresh;

pub use access::{AuthContext, Authenticator};
pub use jwt::{AccessClaims, JwtConfig, KeyError, KeyInfo, KeySet, TokenError};
pub use limits::{AddressTagger, LoginLimiter, LoginLimits};
pub use password::{PasswordError, PasswordHasher};
pub use refresh::{RefreshConfig, RefreshError, RefreshTokens};

/// Names of the server secrets kept in the store (`Store::secret_or_init`), shared by every
/// instance.
const FAKE_SALT_SECRET: &str = "fake-salt";
const USERNAME_KEY_SECRET: &str = "username-key";
const ADDRESS_KEY_SECRET: &str = "address-key";
const REFRESH_TAG_SECRET: &str = "refresh-token-tag";

/// Settings of the auth module. Times are in seconds unless typed otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// `iss` of access tokens.
    pub issuer: String,
    /// `aud` of access tokens.
    pub audience: String,
    /// Access-token lifetime (DESIGN.md: 15 min).
    pub access_ttl: u64,
    /// Refresh-token family idle lifetime (30 days).
    pub refresh_idle: u64,
    /// Refresh-token family absolute lifetime (180 days).
    pub refresh_absolute: u64,
    /// How long the previous refresh token still works after a rotation (60 s).
    pub refresh_grace: u64,
    /// Password hashes allowed at once (each takes 19 MiB and a core for tens of ms).
    pub hash_concurrency: usize,
    /// How long a login waits for a hashing slot before answering `unavailable`.
    pub hash_queue_timeout: Duration,
    /// Login throttling.
    pub login_limits: LoginLimits,
    /// How often the JWT key set is re-read from the store on use.
    pub key_refresh_interval: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        let jwt = JwtConfig::default();
        let refresh = RefreshConfig::default();
        Self {
            issuer: jwt.issuer,
            audience: jwt.audience,
            access_ttl: jwt.access_ttl,
            refresh_idle: refresh.idle,
            refresh_absolute: refresh.absolute,
            refresh_grace: refresh.grace,
            hash_concurrency: 2,
            hash_queue_timeout: Duration::from_secs(10),
            login_limits: LoginLimits::default(),
            key_refresh_interval: jwt.refresh_interval,
        }
    }
}

/// Why the auth module could not start.
#[derive(Debug, thiserror::Error)]
pub enum AuthInitError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error("the stored server secret {0:?} has the wrong length")]
    BadSecret(&'static str),
}

/// Everything the HTTP layer needs for authentication.
pub struct AuthService {
    store: Arc<dyn Store>,
    config: AuthConfig,
    hasher: PasswordHasher,
    keys: Arc<KeySet>,
    refresh: RefreshTokens,
    authenticator: Authenticator,
    limiter: LoginLimiter,
    fake_salt_key: Zeroizing<[u8; 32]>,
    username_key_key: Zeroizing<[u8; 32]>,
    addresses: AddressTagger,
}

impl std::fmt::Debug for AuthService {
    // By hand: the derived form would print the HMAC keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthService")
            .field("config", &self.config)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl AuthService {
    /// Loads (or creates) the shared secrets and the JWT key set from the store.
    pub async fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        config: AuthConfig,
    ) -> Result<Self, AuthInitError> {
        let fake_salt_key = shared_secret(&*store, FAKE_SALT_SECRET).await?;
        let username_key_key = shared_secret(&*store, USERNAME_KEY_SECRET).await?;
        let refresh_tag_key = shared_secret(&*store, REFRESH_TAG_SECRET).await?;
        let keys = Arc::new(
            KeySet::load(
                Arc::clone(&store),
                Arc::clone(&clock),
                JwtConfig {
                    issuer: config.issuer.clone(),
                    audience: config.audience.clone(),
                    access_ttl: config.access_ttl,
                    refresh_interval: config.key_refresh_interval,
                },
            )
            .await?,
        );
        // Computing the dummy hash takes tens of milliseconds: keep it off the async workers.
        let (concurrency, queue_timeout) = (config.hash_concurrency, config.hash_queue_timeout);
        let hasher =
            tokio::task::spawn_blocking(move || PasswordHasher::new(concurrency, queue_timeout))
                .await
                .map_err(|_| PasswordError::Worker)??;
        let refresh = RefreshTokens::new(
            Arc::clone(&store),
            Arc::clone(&clock),
            refresh_tag_key,
            RefreshConfig {
                idle: config.refresh_idle,
                absolute: config.refresh_absolute,
                grace: config.refresh_grace,
            },
        );
        let authenticator =
            Authenticator::new(Arc::clone(&keys), Arc::clone(&store), Arc::clone(&clock));
        let addresses = AddressTagger::new(shared_secret(&*store, ADDRESS_KEY_SECRET).await?);
        let limiter = LoginLimiter::new(
            Arc::clone(&store),
            clock,
            config.login_limits,
            addresses.clone(),
        );
        Ok(Self {
            store,
            config,
            hasher,
            keys,
            refresh,
            authenticator,
            limiter,
            addresses,
            fake_salt_key,
            username_key_key,
        })
    }

    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// The password hasher (for account creation, recovery and password changes).
    pub fn hasher(&self) -> &PasswordHasher {
        &self.hasher
    }

    /// The JWT key set (for the `haven-server keys rotate|retire|list` command).
    pub fn keys(&self) -> &Arc<KeySet> {
        &self.keys
    }

    /// The keyed tag under which the store counts a client address (it never holds addresses).
    pub fn address_tag(&self, client: IpAddr) -> [u8; 16] {
        self.addresses.tag(client)
    }

    pub fn limiter(&self) -> &LoginLimiter {
        &self.limiter
    }

    pub fn authenticator(&self) -> &Authenticator {
        &self.authenticator
    }

    /// The salt `/v1/prelogin` answers for a username that has no account: deterministic, so
    /// asking twice gives the same answer, and the same on every instance (the key is in the
    /// store), so it cannot be told from a real salt by asking again.
    pub fn fake_salt(&self, username: &str) -> [u8; 16] {
        let name = canonical_username(username);
        let mac = hmac_sha256(
            &self.fake_salt_key,
            &[b"haven/fake-salt/v1\0", name.as_bytes()],
        );
        let mut salt = [0u8; 16];
        salt.copy_from_slice(&mac[..16]);
        salt
    }

    /// The keyed hash under which the store knows a username; the store never sees the name.
    /// Normalises first; a name that would not validate still gets a key (which matches no
    /// account), so lookups of invalid names look like unknown users.
    pub fn username_key(&self, username: &str) -> [u8; 32] {
        let name = canonical_username(username);
        hmac_sha256(
            &self.username_key_key,
            &[b"haven/username/v1\0", name.as_bytes()],
        )
    }

    /// The password step of `POST /v1/sessions`: throttles, looks the account up and verifies
    /// `auth_secret`. Unknown users and wrong secrets get the same answer after the same work.
    /// Upgrades the stored hash when its parameters are below the current ones; the returned
    /// record is then the updated one.
    pub async fn password_login(
        &self,
        username: &str,
        auth_secret: &[u8; 32],
        client: IpAddr,
    ) -> ApiResult<AccountRecord> {
        let key = self.username_key(username);
        self.limiter.check(&key, client).await?;
        let Some(account) = self.store.account_by_username(&key).await? else {
            self.hasher.verify_unknown_user(auth_secret).await?;
            return Err(ApiError::unauthorized());
        };
        if !self.hasher.verify(auth_secret, &account.auth_hash).await? {
            return Err(ApiError::unauthorized());
        }
        Ok(self.upgrade_hash(account, auth_secret).await)
    }

    /// A fresh proof of the password for sensitive operations (revoke a device, erase the
    /// account), throttled like a login so a stolen access token cannot be used to guess.
    pub async fn verify_fresh_proof(
        &self,
        account: &AccountRecord,
        auth_secret: &[u8; 32],
        client: IpAddr,
    ) -> ApiResult<()> {
        self.limiter.check(&account.username_key, client).await?;
        if self.hasher.verify(auth_secret, &account.auth_hash).await? {
            Ok(())
        } else {
            Err(ApiError::unauthorized())
        }
    }

    /// Starts a session for a device that is registered to the account (the caller creates the
    /// device record first) and returns the first token pair.
    pub async fn login_tokens(
        &self,
        account: &AccountRecord,
        device: &DeviceId,
    ) -> ApiResult<SessionResponse> {
        match self.store.device(&account.user_id, device).await? {
            Some(record) if record.revoked => return Err(device_revoked()),
            Some(_) => {}
            None => {
                return Err(ApiError::internal(
                    "login_tokens",
                    &"the device must be registered before tokens are issued",
                ));
            }
        }
        let created = self
            .refresh
            .create(&account.user_id, device, account.auth_version)
            .await?;
        let (access_token, expires_in) = self
            .keys
            .issue(
                &account.user_id,
                device,
                &created.session.session_id,
                &account.space_id,
                account.auth_version,
            )
            .await?;
        Ok(SessionResponse {
            access_token,
            refresh_token: created.refresh_token,
            expires_in,
            user_id: account.user_id,
            device_id: *device,
            space_id: SpaceId::Private(account.space_id),
        })
    }

    /// `POST /v1/sessions/refresh`: rotates the refresh token and issues a new access token.
    pub async fn refresh(&self, refresh_token: &str) -> ApiResult<SessionResponse> {
        let refreshed = self.refresh.refresh(refresh_token).await?;
        let (access_token, expires_in) = self
            .keys
            .issue(
                &refreshed.user_id,
                &refreshed.device_id,
                &refreshed.session_id,
                &refreshed.space_id,
                refreshed.auth_version,
            )
            .await?;
        Ok(SessionResponse {
            access_token,
            refresh_token: refreshed.refresh_token,
            expires_in,
            user_id: refreshed.user_id,
            device_id: refreshed.device_id,
            space_id: SpaceId::Private(refreshed.space_id),
        })
    }

    /// `DELETE /v1/sessions/current`: ends the session; its access tokens stop working on the
    /// next request and its refresh tokens at once.
    pub async fn logout(&self, session: &HexId) -> ApiResult<()> {
        self.store.revoke_session(session).await?;
        tracing::debug!(session = %session, "session ended");
        Ok(())
    }

    /// See [`Authenticator::authenticate`].
    pub async fn authenticate(
        &self,
        authorization: Option<&HeaderValue>,
    ) -> ApiResult<AuthContext> {
        self.authenticator.authenticate(authorization).await
    }

    /// See [`Authenticator::recheck`].
    pub async fn recheck(&self, context: &AuthContext) -> ApiResult<()> {
        self.authenticator.recheck(context).await
    }

    /// Stores a hash with the current parameters if the stored one is weaker. Best effort: a
    /// failure or a lost race leaves the old (still valid) hash in place.
    async fn upgrade_hash(&self, account: AccountRecord, auth_secret: &[u8; 32]) -> AccountRecord {
        if !self.hasher.needs_rehash(&account.auth_hash) {
            return account;
        }
        let auth_hash = match self.hasher.hash(auth_secret).await {
            Ok(hash) => hash,
            Err(error) => {
                tracing::warn!(%error, "could not upgrade a password hash");
                return account;
            }
        };
        let revision = account.revision;
        let upgraded = AccountRecord {
            auth_hash,
            ..account.clone()
        };
        match self.store.update_account(revision, upgraded).await {
            Ok(Cas::Done(stored)) => stored,
            Ok(Cas::Conflict) => account,
            Err(error) => {
                tracing::warn!(%error, "could not store an upgraded password hash");
                account
            }
        }
    }
}

/// `device_revoked`: the app stops syncing and offers export.
pub(crate) fn device_revoked() -> ApiError {
    ApiError::new(ErrorCode::DeviceRevoked, "this device was revoked")
}

/// `account_erased`: the app stops syncing and offers export.
pub(crate) fn account_erased() -> ApiError {
    ApiError::new(ErrorCode::AccountErased, "this account was erased")
}

impl From<PasswordError> for ApiError {
    fn from(error: PasswordError) -> Self {
        match error {
            PasswordError::Busy => {
                metrics::counter!("haven_auth_hash_busy_total").increment(1);
                ApiError::new(ErrorCode::Unavailable, "the server is busy; try again")
            }
            other => ApiError::internal("password hashing", &other),
        }
    }
}

impl From<KeyError> for ApiError {
    fn from(error: KeyError) -> Self {
        match error {
            KeyError::Store(error) => ApiError::from(error),
            other => ApiError::internal("access token signing", &other),
        }
    }
}

impl From<RefreshError> for ApiError {
    fn from(error: RefreshError) -> Self {
        match error {
            RefreshError::Unauthorized => ApiError::unauthorized(),
            RefreshError::DeviceRevoked => device_revoked(),
            RefreshError::AccountErased => account_erased(),
            RefreshError::Store(error) => ApiError::from(error),
        }
    }
}

/// The normalised username, or for a name that would not validate a deterministic stand-in
/// (such a name has no account, so it only has to be stable).
fn canonical_username(raw: &str) -> Zeroizing<String> {
    Zeroizing::new(normalize_username(raw).unwrap_or_else(|_| raw.trim().to_ascii_lowercase()))
}

/// A 32-byte secret shared by every instance, created by whichever instance asks first.
async fn shared_secret(
    store: &dyn Store,
    name: &'static str,
) -> Result<Zeroizing<[u8; 32]>, AuthInitError> {
    let candidate = Zeroizing::new(random_bytes::<32>().to_vec());
    let stored = store.secret_or_init(name, candidate).await?;
    let mut secret = Zeroizing::new([0u8; 32]);
    if stored.len() != secret.len() {
        return Err(AuthInitError::BadSecret(name));
    }
    secret.copy_from_slice(&stored);
    Ok(secret)
}

/// HMAC-SHA256 under a 32-byte key over the concatenation of `parts`.
pub(crate) fn hmac_sha256(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC zero-pads keys shorter than the hash block (RFC 2104), so padding the key to the
    // 64-byte block by hand gives the same MAC through the infallible constructor.
    let mut block = Zeroizing::new([0u8; 64]);
    block[..32].copy_from_slice(key);
    let mut mac = <Hmac<Sha256> as KeyInit>::new(&(*block).into());
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::jwt::tests::T0;
    use crate::clock::ManualClock;
    use crate::store::spy::SpyStore;

    const USER: HexId = HexId([1; 16]);
    const DEVICE: DeviceId = haven_protocol::Bytes([2; 16]);
    const SECRET: [u8; 32] = [42; 32];

    async fn service(store: &Arc<SpyStore>, clock: &ManualClock) -> AuthService {
        AuthService::new(
            store.clone(),
            Arc::new(clock.clone()),
            AuthConfig::default(),
        )
        .await
        .unwrap()
    }

    /// A service with one account "alice" whose auth_secret is `SECRET`.
    async fn with_alice() -> (AuthService, Arc<SpyStore>, ManualClock) {
        let store = SpyStore::new();
        let clock = ManualClock::new(T0);
        let auth = service(&store, &clock).await;
        let hash = auth.hasher().hash(&SECRET).await.unwrap();
        let mut account = store.add_account(USER, DEVICE, &hash).await;
        account.username_key = auth.username_key("alice");
        store.put_account(account).await;
        (auth, store, clock)
    }

    fn ip() -> IpAddr {
        IpAddr::from([192, 0, 2, 1])
    }

    fn bearer(token: &str) -> HeaderValue {
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap()
    }

    #[test]
    fn hmac_matches_the_slice_constructor() {
        let key = [7u8; 32];
        let mut reference = <Hmac<Sha256>>::new_from_slice(&key).unwrap();
        reference.update(b"ab");
        reference.update(b"cd");
        let expected: [u8; 32] = reference.finalize().into_bytes().into();
        assert_eq!(hmac_sha256(&key, &[b"ab", b"cd"]), expected);
    }

    #[tokio::test]
    async fn salts_and_username_keys_are_deterministic_and_shared() {
        let store = SpyStore::new();
        let clock = ManualClock::new(T0);
        let one = service(&store, &clock).await;
        let two = service(&store, &clock).await;
        assert_eq!(one.fake_salt("Alice"), two.fake_salt(" alice "));
        assert_eq!(one.username_key("ALICE"), two.username_key("alice"));
        assert_ne!(one.fake_salt("alice"), one.fake_salt("bob"));
        assert_ne!(one.username_key("alice"), one.username_key("bob"));
        // Different keys: the username key reveals nothing about the salt and vice versa.
        assert_ne!(one.fake_salt("alice")[..], one.username_key("alice")[..16]);
        // Another deployment (another store) answers differently.
        let elsewhere = service(&SpyStore::new(), &clock).await;
        assert_ne!(one.fake_salt("alice"), elsewhere.fake_salt("alice"));
        assert_ne!(one.username_key("alice"), elsewhere.username_key("alice"));
    }

    #[tokio::test]
    async fn login_refresh_authenticate_logout() {
        let (auth, _store, clock) = with_alice().await;
        let account = auth.password_login("Alice", &SECRET, ip()).await.unwrap();
        assert_eq!(account.user_id, USER);
        let pair = auth.login_tokens(&account, &DEVICE).await.unwrap();
        assert_eq!(pair.expires_in, 900);
        assert_eq!(pair.space_id, SpaceId::Private(account.space_id));

        let context = auth
            .authenticate(Some(&bearer(&pair.access_token)))
            .await
            .unwrap();
        assert_eq!((context.user_id, context.device_id), (USER, DEVICE));

        // Token kinds do not mix.
        assert_eq!(
            auth.authenticate(Some(&bearer(&pair.refresh_token))).await,
            Err(ApiError::unauthorized())
        );
        assert_eq!(
            auth.refresh(&pair.access_token).await,
            Err(ApiError::unauthorized())
        );

        clock.advance(800);
        let next = auth.refresh(&pair.refresh_token).await.unwrap();
        assert_ne!(next.access_token, pair.access_token);
        let context = auth
            .authenticate(Some(&bearer(&next.access_token)))
            .await
            .unwrap();

        auth.logout(&context.session_id).await.unwrap();
        assert_eq!(
            auth.authenticate(Some(&bearer(&next.access_token))).await,
            Err(ApiError::unauthorized())
        );
        assert_eq!(
            auth.refresh(&next.refresh_token).await,
            Err(ApiError::unauthorized())
        );
    }

    #[tokio::test]
    async fn wrong_secret_and_unknown_user_look_the_same() {
        let (auth, _store, _clock) = with_alice().await;
        let wrong = auth
            .password_login("alice", &[0; 32], ip())
            .await
            .unwrap_err();
        let unknown = auth
            .password_login("mallory", &SECRET, ip())
            .await
            .unwrap_err();
        let invalid_name = auth
            .password_login("../x", &SECRET, ip())
            .await
            .unwrap_err();
        assert_eq!(wrong, ApiError::unauthorized());
        assert_eq!(unknown, wrong);
        assert_eq!(invalid_name, wrong);
    }

    #[tokio::test]
    async fn logins_are_throttled_per_account_and_address() {
        let (auth, _store, _clock) = with_alice().await;
        for _ in 0..10 {
            assert_eq!(
                auth.password_login("alice", &[0; 32], ip()).await,
                Err(ApiError::unauthorized())
            );
        }
        // Even the right secret is throttled now: no oracle past the limit.
        let throttled = auth
            .password_login("alice", &SECRET, ip())
            .await
            .unwrap_err();
        assert_eq!(throttled.code(), ErrorCode::RateLimited);
        // The owner elsewhere is not locked out.
        auth.password_login("alice", &SECRET, IpAddr::from([198, 51, 100, 1]))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn login_tokens_refuse_revoked_or_unknown_devices() {
        let (auth, store, _clock) = with_alice().await;
        let account = store.account_now(&USER).await;
        let stranger = haven_protocol::Bytes([9; 16]);
        assert_eq!(
            auth.login_tokens(&account, &stranger)
                .await
                .unwrap_err()
                .code(),
            ErrorCode::Internal
        );
        store.revoke_device_now(&USER, &DEVICE).await;
        assert_eq!(
            auth.login_tokens(&account, &DEVICE)
                .await
                .unwrap_err()
                .code(),
            ErrorCode::DeviceRevoked
        );
    }

    #[tokio::test]
    async fn weak_hashes_are_upgraded_at_login() {
        use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, Version};
        let (auth, store, _clock) = with_alice().await;
        let weak = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(64, 1, 1, None).unwrap(),
        )
        .hash_password_with_salt(&SECRET, b"0123456789abcdef")
        .unwrap()
        .to_string();
        let mut account = store.account_now(&USER).await;
        account.auth_hash = weak.clone();
        store.put_account(account).await;
        let logged_in = auth.password_login("alice", &SECRET, ip()).await.unwrap();
        assert_ne!(logged_in.auth_hash, weak);
        assert!(!auth.hasher().needs_rehash(&logged_in.auth_hash));
        assert_eq!(
            store.account_now(&USER).await.auth_hash,
            logged_in.auth_hash
        );
        assert!(
            auth.hasher()
                .verify(&SECRET, &logged_in.auth_hash)
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn fresh_proof() {
        let (auth, store, _clock) = with_alice().await;
        let account = store.account_now(&USER).await;
        auth.verify_fresh_proof(&account, &SECRET, ip())
            .await
            .unwrap();
        assert_eq!(
            auth.verify_fresh_proof(&account, &[1; 32], ip()).await,
            Err(ApiError::unauthorized())
        );
    }
}
