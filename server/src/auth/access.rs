//! Authenticating a request: `Authorization: Bearer <access token>`, then the store.
//!
//! A valid signature is not enough: the session, the device and the account are read on every
//! request, so a logout, a device revocation, a password change or an erasure takes effect on
//! the very next request rather than when the 15-minute token expires.

use std::sync::Arc;

use axum::http::HeaderValue;
use haven_protocol::{DeviceId, HexId, SpaceId, UserId};

use super::jwt::{AccessClaims, KeySet, MAX_TOKEN_BYTES, TokenError};
use super::{account_erased, device_revoked};
use crate::clock::Clock;
use crate::error::ApiError;
use crate::store::Store;

/// Longest `Authorization` header looked at.
pub const MAX_AUTHORIZATION_BYTES: usize = 4096;

/// Who is making an authenticated request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthContext {
    pub user_id: UserId,
    /// The account's private space: the only private space this caller may touch.
    pub space_id: SpaceId,
    pub device_id: DeviceId,
    pub session_id: HexId,
    /// The account's `auth_version` the token was checked against.
    pub auth_version: u64,
    /// Unix seconds when the access token expires (a live socket closes then, 4001).
    pub expires_at: u64,
}

/// Checks access tokens and the state behind them.
#[derive(Debug, Clone)]
pub struct Authenticator {
    keys: Arc<KeySet>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

impl Authenticator {
    pub fn new(keys: Arc<KeySet>, store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self { keys, store, clock }
    }

    /// Authenticates a request from its `Authorization` header. Every failure is
    /// [`ApiError::unauthorized`] (one body for all), except a revoked device
    /// (`device_revoked`), an erased account (`account_erased`) and a failing store.
    pub async fn authenticate(
        &self,
        authorization: Option<&HeaderValue>,
    ) -> Result<AuthContext, ApiError> {
        let token = bearer_token(authorization).ok_or_else(ApiError::unauthorized)?;
        let claims = self.keys.verify(token).await.map_err(|error| match error {
            TokenError::Invalid => ApiError::unauthorized(),
            TokenError::Store(error) => ApiError::from(error),
        })?;
        self.check_state(&claims).await?;
        Ok(AuthContext {
            user_id: claims.user_id,
            space_id: SpaceId::Private(claims.space_id),
            device_id: claims.device_id,
            session_id: claims.session_id,
            auth_version: claims.auth_version,
            expires_at: claims.expires_at,
        })
    }

    /// Re-checks an earlier context (for long-lived live sockets): the token has not expired
    /// and the session, device and account still allow it.
    pub async fn recheck(&self, context: &AuthContext) -> Result<(), ApiError> {
        if self.clock.now() > context.expires_at {
            return Err(ApiError::unauthorized());
        }
        let SpaceId::Private(space_id) = context.space_id else {
            return Err(ApiError::unauthorized());
        };
        self.check_state(&AccessClaims {
            user_id: context.user_id,
            session_id: context.session_id,
            device_id: context.device_id,
            space_id,
            auth_version: context.auth_version,
            issued_at: 0,
            expires_at: context.expires_at,
        })
        .await
    }

    async fn check_state(&self, claims: &AccessClaims) -> Result<(), ApiError> {
        let store = &self.store;
        let user = &claims.user_id;
        // The signature vouches for these ids, so naming the account's or device's state to
        // the bearer leaks nothing they could not know.
        let Some(account) = store.account(user).await? else {
            return Err(if store.is_erased(user).await? {
                account_erased()
            } else {
                ApiError::unauthorized()
            });
        };
        match store.device(user, &claims.device_id).await? {
            Some(device) if device.revoked => return Err(device_revoked()),
            Some(_) => {}
            None => return Err(ApiError::unauthorized()),
        }
        match store.session(&claims.session_id).await? {
            Some(session)
                if !session.revoked
                    && session.user_id == *user
                    && session.device_id == claims.device_id => {}
            _ => return Err(ApiError::unauthorized()),
        }
        if account.auth_version != claims.auth_version || account.space_id != claims.space_id {
            return Err(ApiError::unauthorized());
        }
        Ok(())
    }
}

/// The token of `Bearer <token>`: scheme case-insensitive, exactly one space, a token of JWT
/// characters only, size-capped. `None` for anything else.
pub fn bearer_token(authorization: Option<&HeaderValue>) -> Option<&str> {
    let value = authorization?;
    if value.len() > MAX_AUTHORIZATION_BYTES {
        return None;
    }
    let text = value.to_str().ok()?;
    let (scheme, token) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let jwt_chars = token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if token.is_empty() || token.len() > MAX_TOKEN_BYTES || !jwt_chars {
        return None;
    }
    Some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::jwt::JwtConfig;
    use crate::auth::jwt::tests::T0;
    use crate::clock::ManualClock;
    use crate::store::spy::SpyStore;
    use haven_protocol::ErrorCode;

    const USER: HexId = HexId([1; 16]);
    const DEVICE: DeviceId = haven_protocol::Bytes([2; 16]);

    struct Fixture {
        store: Arc<SpyStore>,
        clock: ManualClock,
        keys: Arc<KeySet>,
        auth: Authenticator,
        session: HexId,
    }

    async fn fixture() -> Fixture {
        let store = SpyStore::new();
        let clock = ManualClock::new(T0);
        store.add_account(USER, DEVICE, "").await;
        let keys = Arc::new(
            KeySet::load(store.clone(), Arc::new(clock.clone()), JwtConfig::default())
                .await
                .unwrap(),
        );
        let session = HexId([3; 16]);
        store
            .create_session(crate::store::SessionRecord {
                session_id: session,
                user_id: USER,
                device_id: DEVICE,
                created_at: T0,
                last_used_at: T0,
                generation: 0,
                current_hash: [0; 32],
                previous_hash: None,
                rotated_at: T0,
                revoked: false,
            })
            .await
            .unwrap();
        let auth = Authenticator::new(keys.clone(), store.clone(), Arc::new(clock.clone()));
        Fixture {
            store,
            clock,
            keys,
            auth,
            session,
        }
    }

    impl Fixture {
        async fn token(&self) -> String {
            let account = self.store.account_now(&USER).await;
            self.keys
                .issue(
                    &USER,
                    &DEVICE,
                    &self.session,
                    &account.space_id,
                    account.auth_version,
                )
                .await
                .unwrap()
                .0
        }

        async fn call(&self, header: &str) -> Result<AuthContext, ApiError> {
            let value = HeaderValue::from_str(header).unwrap();
            self.auth.authenticate(Some(&value)).await
        }
    }

    #[tokio::test]
    async fn a_valid_token_gives_the_context() {
        let f = fixture().await;
        let token = f.token().await;
        let context = f.call(&format!("Bearer {token}")).await.unwrap();
        assert_eq!(
            context,
            AuthContext {
                user_id: USER,
                space_id: SpaceId::Private(HexId([0xaa; 16])),
                device_id: DEVICE,
                session_id: f.session,
                auth_version: 1,
                expires_at: T0 + 900,
            }
        );
        // The scheme is case-insensitive.
        assert!(f.call(&format!("bearer {token}")).await.is_ok());
        assert!(f.call(&format!("BEARER {token}")).await.is_ok());
        assert!(f.auth.recheck(&context).await.is_ok());
    }

    #[tokio::test]
    async fn malformed_headers_are_unauthorized() {
        let f = fixture().await;
        let token = f.token().await;
        assert_eq!(
            f.auth.authenticate(None).await,
            Err(ApiError::unauthorized())
        );
        for header in [
            String::new(),
            token.clone(),
            format!("Bearer  {token}"),
            format!("Bearer {token} "),
            format!("Basic {token}"),
            format!("Bearer\t{token}"),
            format!("Bearer {token},x"),
            "Bearer ".to_owned(),
            format!("Bearer {}", "a".repeat(MAX_AUTHORIZATION_BYTES)),
        ] {
            assert_eq!(
                f.call(&header).await,
                Err(ApiError::unauthorized()),
                "{header:?}"
            );
        }
        let binary = HeaderValue::from_bytes(b"Bearer \xff\xfe").unwrap();
        assert_eq!(
            f.auth.authenticate(Some(&binary)).await,
            Err(ApiError::unauthorized())
        );
    }

    #[tokio::test]
    async fn revocations_take_effect_on_the_next_request() {
        // Logout.
        let f = fixture().await;
        let header = format!("Bearer {}", f.token().await);
        assert!(f.call(&header).await.is_ok());
        f.store.revoke_session(&f.session).await.unwrap();
        assert_eq!(f.call(&header).await, Err(ApiError::unauthorized()));

        // Device revoked: its own code.
        let f = fixture().await;
        let header = format!("Bearer {}", f.token().await);
        let context = f.call(&header).await.unwrap();
        f.store.revoke_device_now(&USER, &DEVICE).await;
        assert_eq!(
            f.call(&header).await.unwrap_err().code(),
            ErrorCode::DeviceRevoked
        );
        assert_eq!(
            f.auth.recheck(&context).await.unwrap_err().code(),
            ErrorCode::DeviceRevoked
        );

        // Password changed: tokens issued before the auth_version bump are refused.
        let f = fixture().await;
        let header = format!("Bearer {}", f.token().await);
        f.store.bump_auth_version(&USER).await;
        assert_eq!(f.call(&header).await, Err(ApiError::unauthorized()));
        assert!(
            f.call(&format!("Bearer {}", f.token().await)).await.is_ok(),
            "a new token works"
        );

        // Account erased: its own code.
        let f = fixture().await;
        let header = format!("Bearer {}", f.token().await);
        f.store.erase_now(&USER).await;
        assert_eq!(
            f.call(&header).await.unwrap_err().code(),
            ErrorCode::AccountErased
        );
    }

    #[tokio::test]
    async fn session_must_belong_to_the_token() {
        let f = fixture().await;
        let account = f.store.account_now(&USER).await;
        // A token naming a session that does not exist, or a device not of this account.
        let ghost = f
            .keys
            .issue(&USER, &DEVICE, &HexId([9; 16]), &account.space_id, 1)
            .await
            .unwrap()
            .0;
        assert_eq!(
            f.call(&format!("Bearer {ghost}")).await,
            Err(ApiError::unauthorized())
        );
        let other_device = haven_protocol::Bytes([5; 16]);
        f.store.add_device(USER, other_device).await;
        let swapped = f
            .keys
            .issue(&USER, &other_device, &f.session, &account.space_id, 1)
            .await
            .unwrap()
            .0;
        assert_eq!(
            f.call(&format!("Bearer {swapped}")).await,
            Err(ApiError::unauthorized())
        );
        let wrong_space = f
            .keys
            .issue(&USER, &DEVICE, &f.session, &HexId([6; 16]), 1)
            .await
            .unwrap()
            .0;
        assert_eq!(
            f.call(&format!("Bearer {wrong_space}")).await,
            Err(ApiError::unauthorized())
        );
    }

    #[tokio::test]
    async fn recheck_notices_expiry() {
        let f = fixture().await;
        let context = f
            .call(&format!("Bearer {}", f.token().await))
            .await
            .unwrap();
        f.clock.set(context.expires_at + 1);
        assert_eq!(
            f.auth.recheck(&context).await,
            Err(ApiError::unauthorized())
        );
    }
}
