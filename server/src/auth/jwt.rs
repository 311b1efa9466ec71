//! Access tokens: EdDSA JWTs under a key set kept in the store (DESIGN.md §5, research (d)).
//!
//! Every instance signs with the one `Active` key of the shared set and verifies with every key
//! that is not `Retired`. Verification is deliberately narrow: one algorithm, a `kid` that is
//! format-checked before any lookup, `typ: at+jwt`, every time claim required and numeric, and
//! time taken from the injected [`Clock`] (the library would read the system clock), so expiry
//! is testable and the same on every path. Every failure is the same opaque
//! [`TokenError::Invalid`]: a caller learns nothing about which check failed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use ed25519_dalek::SigningKey;
use haven_protocol::{DeviceId, HexId, UserId};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::clock::{Clock, random_bytes};
use crate::store::{JwtKeyRecord, JwtKeyState, Store, StoreError};

/// The `typ` header of every access token (RFC 9068). Anything else is refused, which keeps
/// other kinds of JWT (and refresh tokens, which are not JWTs at all) out.
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";
/// Allowed clock skew on `exp`, `nbf` and `iat` (research (d): at most 30 s).
pub const LEEWAY_SECS: u64 = 30;
/// Longest access token accepted; ours are about 500 bytes.
pub const MAX_TOKEN_BYTES: usize = 4096;
/// Bytes of randomness in a `kid`; it is written as twice as many lowercase hex characters.
const KID_BYTES: usize = 8;
/// At most one store reload per this many seconds for a well-formed but unknown `kid`
/// (another instance may have rotated), so random kids cannot hammer the store.
const UNKNOWN_KID_RELOAD_SECS: u64 = 10;

/// Settings of the key set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtConfig {
    /// `iss` of issued tokens and the only one accepted.
    pub issuer: String,
    /// `aud` of issued tokens and the only one accepted.
    pub audience: String,
    /// Lifetime of access tokens in seconds.
    pub access_ttl: u64,
    /// Seconds between background re-reads of the key set on use, so a rotation or retirement
    /// made by another instance (or the CLI) is seen here too.
    pub refresh_interval: u64,
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            issuer: "haven".to_owned(),
            audience: "haven-api".to_owned(),
            access_ttl: 15 * 60,
            refresh_interval: 60,
        }
    }
}

/// Why a token was refused. `Invalid` is deliberately uninformative.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("invalid access token")]
    Invalid,
    /// The store failed while reloading keys: not the token's fault.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Failures of key management.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no key with this kid")]
    UnknownKid,
    #[error("refusing to retire the only active key; rotate first")]
    OnlyActiveKey,
    #[error("the key set has no active signing key")]
    NoActiveKey,
    #[error("signing the token failed")]
    Signing,
}

/// A key of the set as the `keys list` command shows it (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    pub kid: String,
    pub created_at: u64,
    pub state: JwtKeyState,
}

/// What a verified access token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessClaims {
    pub user_id: UserId,
    pub session_id: HexId,
    pub device_id: DeviceId,
    pub space_id: HexId,
    pub auth_version: u64,
    pub issued_at: u64,
    pub expires_at: u64,
}

/// The claims on the wire. Time claims are `u64`, so a string or a fraction fails to decode
/// (jsonwebtoken ≥ 10.3 also refuses string `exp`/`nbf`; this does not rely on it).
#[derive(Debug, Serialize, Deserialize)]
struct WireClaims {
    iss: String,
    aud: String,
    sub: String,
    sid: String,
    did: String,
    spc: String,
    av: u64,
    iat: u64,
    nbf: u64,
    exp: u64,
}

struct Signer {
    kid: String,
    key: EncodingKey,
}

/// The keys loaded from the store.
#[derive(Default)]
struct Loaded {
    signer: Option<Arc<Signer>>,
    /// Active and verify-only keys by kid. Retired keys are simply absent.
    verifiers: HashMap<String, Arc<DecodingKey>>,
}

/// The shared JWT key set: issues and verifies access tokens, rotates and retires keys.
pub struct KeySet {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: JwtConfig,
    validation: Validation,
    loaded: RwLock<Loaded>,
    /// Clock time of the last load (for the periodic re-read).
    last_load: AtomicU64,
    /// Clock time of the last reload caused by an unknown kid; `0` when none yet.
    last_unknown_reload: AtomicU64,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let loaded = self.loaded.read().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("KeySet")
            .field("config", &self.config)
            .field(
                "signing_kid",
                &loaded.signer.as_ref().map(|s| s.kid.clone()),
            )
            .field(
                "verifying_kids",
                &loaded.verifiers.keys().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl KeySet {
    /// Loads the key set from the store, creating and storing an active key if there is none.
    pub async fn load(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        config: JwtConfig,
    ) -> Result<Self, KeyError> {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
        validation.set_issuer(&[config.issuer.as_str()]);
        validation.set_audience(&[config.audience.as_str()]);
        validation.leeway = LEEWAY_SECS;
        // The library would compare exp/nbf with the system clock; `check_claims` compares
        // them with the injected clock instead. The claims stay required (above) and numeric
        // (`WireClaims`).
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = true;

        let keys = Self {
            store,
            clock,
            config,
            validation,
            loaded: RwLock::new(Loaded::default()),
            last_load: AtomicU64::new(0),
            last_unknown_reload: AtomicU64::new(0),
        };
        let records = keys.store.jwt_keys().await?;
        if records.iter().any(|r| r.state == JwtKeyState::Active) {
            keys.install(&records);
        } else {
            // Two instances starting together may both get here: each stores its key, the
            // store demotes the other to verify-only, and both stay valid for verification.
            keys.put_new_active_key().await?;
            keys.reload().await?;
        }
        Ok(keys)
    }

    /// Signs an access token. Returns the token and its lifetime in seconds.
    pub async fn issue(
        &self,
        user: &UserId,
        device: &DeviceId,
        session: &HexId,
        space: &HexId,
        auth_version: u64,
    ) -> Result<(String, u64), KeyError> {
        let now = self.clock.now();
        // Sign with the key the set says is active now, even on an instance that mostly signs.
        self.refresh_if_due(now).await;
        let signer = self.read().signer.clone().ok_or(KeyError::NoActiveKey)?;
        let ttl = self.config.access_ttl;
        let claims = WireClaims {
            iss: self.config.issuer.clone(),
            aud: self.config.audience.clone(),
            sub: user.to_string(),
            sid: session.to_string(),
            did: hex::encode(device.as_bytes()),
            spc: space.to_string(),
            av: auth_version,
            iat: now,
            nbf: now,
            exp: now.saturating_add(ttl),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some(ACCESS_TOKEN_TYP.to_owned());
        header.kid = Some(signer.kid.clone());
        let token =
            jsonwebtoken::encode(&header, &claims, &signer.key).map_err(|_| KeyError::Signing)?;
        Ok((token, ttl))
    }

    /// Verifies an access token completely (signature, header, every claim, times).
    pub async fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Invalid);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        let kid = check_header(&header)?;
        let now = self.clock.now();
        self.refresh_if_due(now).await;

        let key = match self.verifier(kid) {
            Some(key) => key,
            None => {
                if !self.reload_for_unknown_kid(now).await? {
                    return Err(TokenError::Invalid);
                }
                self.verifier(kid).ok_or(TokenError::Invalid)?
            }
        };
        // Signature, algorithm (pinned to EdDSA, and the key must be an Ed25519 key), required
        // claims, `iss` and `aud`.
        let data = jsonwebtoken::decode::<WireClaims>(token, &key, &self.validation)
            .map_err(|_| TokenError::Invalid)?;
        self.check_claims(data.claims, now)
    }

    /// Makes a new active key; the previous active key becomes verify-only, so tokens it signed
    /// stay valid until they expire. Returns the new kid.
    pub async fn rotate(&self) -> Result<String, KeyError> {
        let kid = self.put_new_active_key().await?;
        self.reload().await?;
        tracing::info!(kid = %kid, "rotated the JWT signing key");
        Ok(kid)
    }

    /// Retires a key: tokens it signed are refused from now on. Refuses the only active key.
    /// Wait one access-token lifetime after [`KeySet::rotate`] before retiring the old key,
    /// unless it leaked.
    pub async fn retire(&self, kid: &str) -> Result<(), KeyError> {
        if !is_well_formed_kid(kid) {
            return Err(KeyError::UnknownKid);
        }
        let records = self.store.jwt_keys().await?;
        let mut record = records
            .iter()
            .find(|r| r.kid == kid)
            .cloned()
            .ok_or(KeyError::UnknownKid)?;
        let other_active = records
            .iter()
            .any(|r| r.kid != kid && r.state == JwtKeyState::Active);
        if record.state == JwtKeyState::Active && !other_active {
            return Err(KeyError::OnlyActiveKey);
        }
        record.state = JwtKeyState::Retired;
        self.store.put_jwt_key(record).await?;
        self.reload().await?;
        tracing::info!(kid = %kid, "retired a JWT key");
        Ok(())
    }

    /// The keys in the store, oldest first.
    pub async fn list(&self) -> Result<Vec<KeyInfo>, KeyError> {
        let mut keys: Vec<KeyInfo> = self
            .store
            .jwt_keys()
            .await?
            .into_iter()
            .map(|r| KeyInfo {
                kid: r.kid,
                created_at: r.created_at,
                state: r.state,
            })
            .collect();
        keys.sort_by(|a, b| (a.created_at, &a.kid).cmp(&(b.created_at, &b.kid)));
        Ok(keys)
    }

    /// The kid new tokens are signed with.
    pub fn active_kid(&self) -> Option<String> {
        self.read().signer.as_ref().map(|s| s.kid.clone())
    }

    /// Re-reads the key set from the store.
    pub async fn reload(&self) -> Result<(), StoreError> {
        let records = self.store.jwt_keys().await?;
        self.install(&records);
        Ok(())
    }

    pub fn config(&self) -> &JwtConfig {
        &self.config
    }

    fn check_claims(&self, claims: WireClaims, now: u64) -> Result<AccessClaims, TokenError> {
        let invalid = || TokenError::Invalid;
        // `iss` and `aud` were checked by the library; checking again costs nothing and keeps
        // this function correct on its own.
        if claims.iss != self.config.issuer || claims.aud != self.config.audience {
            return Err(invalid());
        }
        if now > claims.exp.saturating_add(LEEWAY_SECS)
            || claims.nbf > now.saturating_add(LEEWAY_SECS)
            || claims.iat > now.saturating_add(LEEWAY_SECS)
        {
            return Err(invalid());
        }
        // A lifetime longer than we ever issue means a forged or foreign token.
        if claims.exp < claims.iat || claims.exp - claims.iat > self.config.access_ttl {
            return Err(invalid());
        }
        let device: HexId = claims.did.parse().map_err(|_| invalid())?;
        Ok(AccessClaims {
            user_id: claims.sub.parse().map_err(|_| invalid())?,
            session_id: claims.sid.parse().map_err(|_| invalid())?,
            device_id: DeviceId::from(device.0),
            space_id: claims.spc.parse().map_err(|_| invalid())?,
            auth_version: claims.av,
            issued_at: claims.iat,
            expires_at: claims.exp,
        })
    }

    fn verifier(&self, kid: &str) -> Option<Arc<DecodingKey>> {
        self.read().verifiers.get(kid).cloned()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Loaded> {
        // Nothing panics while holding the lock; if something ever did, the data is still a
        // consistent key map.
        self.loaded.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reloads when the kid is unknown, at most once per [`UNKNOWN_KID_RELOAD_SECS`].
    /// Returns whether it reloaded.
    async fn reload_for_unknown_kid(&self, now: u64) -> Result<bool, StoreError> {
        let last = self.last_unknown_reload.load(Ordering::SeqCst);
        if last != 0 && now < last.saturating_add(UNKNOWN_KID_RELOAD_SECS) {
            return Ok(false);
        }
        // One caller wins the window; the others answer from the current keys.
        if self
            .last_unknown_reload
            .compare_exchange(last, now.max(1), Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return Ok(false);
        }
        tracing::debug!("unknown kid: reloading the JWT key set");
        self.reload().await?;
        Ok(true)
    }

    /// Re-reads the set every `refresh_interval` seconds; a failure keeps the current keys.
    async fn refresh_if_due(&self, now: u64) {
        let last = self.last_load.load(Ordering::SeqCst);
        if now < last.saturating_add(self.config.refresh_interval) {
            return;
        }
        if self
            .last_load
            .compare_exchange(last, now, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return;
        }
        if let Err(error) = self.reload().await {
            tracing::warn!(%error, "could not re-read the JWT key set; keeping the loaded keys");
        }
    }

    async fn put_new_active_key(&self) -> Result<String, StoreError> {
        let kid = hex::encode(random_bytes::<KID_BYTES>());
        let record = JwtKeyRecord {
            kid: kid.clone(),
            secret: Zeroizing::new(random_bytes::<32>()),
            created_at: self.clock.now(),
            state: JwtKeyState::Active,
        };
        self.store.put_jwt_key(record).await?;
        Ok(kid)
    }

    fn install(&self, records: &[JwtKeyRecord]) {
        let mut next = Loaded::default();
        let mut newest_active: Option<&JwtKeyRecord> = None;
        for record in records {
            if !is_well_formed_kid(&record.kid) {
                tracing::warn!("ignoring a stored JWT key with a malformed kid");
                continue;
            }
            if record.state == JwtKeyState::Retired {
                continue;
            }
            let signing = SigningKey::from_bytes(&record.secret);
            let public = signing.verifying_key().to_bytes();
            next.verifiers.insert(
                record.kid.clone(),
                Arc::new(DecodingKey::from_ed_der(&public)),
            );
            // The store keeps one active key; if a race left two, sign with the newest.
            if record.state == JwtKeyState::Active
                && newest_active
                    .is_none_or(|n| (record.created_at, &record.kid) > (n.created_at, &n.kid))
            {
                newest_active = Some(record);
            }
        }
        next.signer = newest_active.map(|record| {
            Arc::new(Signer {
                kid: record.kid.clone(),
                key: EncodingKey::from_ed_der(&*pkcs8_der(&record.secret)),
            })
        });
        tracing::debug!(
            signing = ?next.signer.as_ref().map(|s| s.kid.as_str()),
            verifying = next.verifiers.len(),
            "JWT key set loaded"
        );
        *self.loaded.write().unwrap_or_else(PoisonError::into_inner) = next;
        self.last_load.store(self.clock.now(), Ordering::SeqCst);
    }
}

/// Header checks made before any key lookup. Returns the kid.
fn check_header(header: &Header) -> Result<&str, TokenError> {
    if header.alg != Algorithm::EdDSA || header.typ.as_deref() != Some(ACCESS_TOKEN_TYP) {
        return Err(TokenError::Invalid);
    }
    // Keys come only from the store, never from the token (RFC 8725 §3.10).
    if header.jku.is_some() || header.jwk.is_some() || header.x5u.is_some() || header.x5c.is_some()
    {
        return Err(TokenError::Invalid);
    }
    match header.kid.as_deref() {
        Some(kid) if is_well_formed_kid(kid) => Ok(kid),
        _ => Err(TokenError::Invalid),
    }
}

/// A kid is exactly `2 * KID_BYTES` lowercase hex characters; anything else is refused before
/// it reaches a map or the store.
pub fn is_well_formed_kid(kid: &str) -> bool {
    kid.len() == 2 * KID_BYTES && kid.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// PKCS#8 v1 DER of an Ed25519 seed (RFC 8410 §7): a fixed 16-byte prefix and the 32-byte seed.
/// Built by hand because jsonwebtoken takes only DER and ed25519-dalek's encoder needs `alloc`
/// features this crate does not otherwise enable.
fn pkcs8_der(seed: &[u8; 32]) -> Zeroizing<[u8; 48]> {
    const PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    let mut der = Zeroizing::new([0u8; 48]);
    der[..16].copy_from_slice(&PREFIX);
    der[16..].copy_from_slice(seed);
    der
}

#[cfg(test)]
pub(crate) mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::{Value, json};

    use super::*;
    use crate::clock::ManualClock;
    use crate::store::spy::SpyStore;

    pub(crate) const T0: u64 = 1_800_000_000;

    pub(crate) async fn key_set(store: &Arc<SpyStore>, clock: &ManualClock) -> KeySet {
        KeySet::load(store.clone(), Arc::new(clock.clone()), JwtConfig::default())
            .await
            .unwrap()
    }

    fn ids() -> (UserId, DeviceId, HexId, HexId) {
        (
            HexId([1; 16]),
            DeviceId::from([2; 16]),
            HexId([3; 16]),
            HexId([4; 16]),
        )
    }

    async fn issue(keys: &KeySet) -> String {
        let (user, device, session, space) = ids();
        keys.issue(&user, &device, &session, &space, 7)
            .await
            .unwrap()
            .0
    }

    /// The claims `issue` would write now, as JSON, for tampering.
    fn claims_json(now: u64) -> Value {
        json!({
            "iss": "haven", "aud": "haven-api",
            "sub": "01".repeat(16), "sid": "03".repeat(16), "did": "02".repeat(16),
            "spc": "04".repeat(16), "av": 7, "iat": now, "nbf": now, "exp": now + 900,
        })
    }

    fn b64(value: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
    }

    /// Signs arbitrary header and claims with the set's active key, as a key holder could.
    fn sign_raw(keys: &KeySet, store: &SpyStore, header: &Value, claims: &Value) -> String {
        let kid = keys.active_kid().unwrap();
        let secret = store.jwt_secret(&kid);
        let message = format!("{}.{}", b64(header), b64(claims));
        let signature =
            ed25519_dalek::Signer::sign(&SigningKey::from_bytes(&secret), message.as_bytes());
        format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }

    fn good_header(keys: &KeySet) -> Value {
        json!({"alg": "EdDSA", "typ": "at+jwt", "kid": keys.active_kid().unwrap()})
    }

    async fn refused(keys: &KeySet, token: &str) -> bool {
        matches!(keys.verify(token).await, Err(TokenError::Invalid))
    }

    #[tokio::test]
    async fn issues_and_verifies() {
        let (store, clock) = (SpyStore::new(), ManualClock::new(T0));
        let keys = key_set(&store, &clock).await;
        let (token, expires_in) = {
            let (user, device, session, space) = ids();
            keys.issue(&user, &device, &session, &space, 7)
                .await
                .unwrap()
        };
        assert_eq!(expires_in, 900);
        let claims = keys.verify(&token).await.unwrap();
        let (user, device, session, space) = ids();
        assert_eq!(
            claims,
            AccessClaims {
                user_id: user,
                session_id: session,
                device_id: device,
                space_id: space,
                auth_version: 7,
                issued_at: T0,
                expires_at: T0 + 900,
            }
        );
        // The header is what RFC 9068 asks for.
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(header.alg, Algorithm::EdDSA);
        assert!(is_well_formed_kid(header.kid.as_deref().unwrap()));
        // A hand-signed token with the same claims verifies too (the test signer is faithful).
        let raw = sign_raw(&keys, &store, &good_header(&keys), &claims_json(T0));
        assert!(keys.verify(&raw).await.is_ok());
    }

    #[tokio::test]
    async fn loading_creates_one_active_key_and_reuses_it() {
        let (store, clock) = (SpyStore::new(), ManualClock::new(T0));
        let first = key_set(&store, &clock).await;
        let second = key_set(&store, &clock).await;
        assert_eq!(first.active_kid(), second.active_kid());
        let listed = first.list().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].state, JwtKeyState::Active);
        // Tokens of one instance verify on the other.
        assert!(second.verify(&issue(&first).await).await.is_ok());
    }

    #[tokio::test]
    async fn time_claims_use_the_injected_clock_with_30s_leeway() {
        let (store, clock) = (SpyStore::new(), ManualClock::new(T0));
        let keys = key_set(&store, &clock).await;
        let token = issue(&keys).await;
        clock.set(T0 + 900 + 30);
        assert!(
            keys.verify(&token).await.is_ok(),
            "expired within leeway passes"
        );
        clock.set(T0 + 900 + 31);
        assert!(refused(&keys, &token).await, "expired beyond leeway");

        // nbf / iat slightly ahead (clock skew between instances) pass, far ahead do not.
        clock.set(T0);
        let mut claims = claims_json(T0 + 30);
        claims["exp"] = json!(T0 + 30 + 900);
        assert!(
            keys.verify(&sign_raw(&keys, &store, &good_header(&keys), &claims))
                .await
                .is_ok()
        );
        let mut claims = claims_json(T0);
        claims["nbf"] = json!(T0 + 31);
        assert!(
            refused(
                &keys,
                &sign_raw(&keys, &store, &good_header(&keys), &claims)
            )
            .await
        );
        let mut claims = claims_json(T0 + 31);
        claims["exp"] = json!(T0 + 900);
        assert!(
            refused(
                &keys,
                &sign_raw(&keys, &store, &good_header(&keys), &claims)
            )
            .await
        );
        // A lifetime longer than we issue is refused even when correctly signed.
        let mut claims = claims_json(T0);
        claims["exp"] = json!(T0 + 901);
        assert!(
            refused(
                &keys,
                &sign_raw(&keys, &store, &good_header(&keys), &claims)
            )
            .await
        );
    }

    /// research (d) S4: every one of these is refused with the same opaque error.
    #[tokio::test]
    async fn s4_negative_cases() {
        let (store, clock) = (SpyStore::new(), ManualClock::new(T0));
        let keys = key_set(&store, &clock).await;
        let good = issue(&keys).await;
        let kid = keys.active_kid().unwrap();
        let (header_b64, rest) = good.split_once('.').unwrap();
        let (payload_b64, signature_b64) = rest.split_once('.').unwrap();
        let claims = claims_json(T0);
        let mut cases: Vec<(&str, String)> = Vec::new();

        // alg none, unsigned.
        let none = json!({"alg": "none", "typ": "at+jwt", "kid": kid});
        cases.push(("alg none", format!("{}.{payload_b64}.", b64(&none))));
        cases.push((
            "alg none with signature",
            format!("{}.{payload_b64}.{signature_b64}", b64(&none)),
        ));

        // HS256 keyed with the public key bytes (the classic algorithm confusion).
        let public = SigningKey::from_bytes(&store.jwt_secret(&kid))
            .verifying_key()
            .to_bytes();
        let mut hs = Header::new(Algorithm::HS256);
        hs.typ = Some("at+jwt".into());
        hs.kid = Some(kid.clone());
        let forged =
            jsonwebtoken::encode(&hs, &claims, &EncodingKey::from_secret(&public).unwrap())
                .unwrap();
        cases.push(("HS256 with the public key", forged));

        // kid: unknown, garbled, injected, missing, wrong case.
        for (name, bad_kid) in [
            ("unknown kid", json!("00112233aabbccdd")),
            ("kid path", json!("../x")),
            ("kid quotes", json!("\"' OR 1=1 --")),
            ("kid uppercase", json!(kid.to_uppercase())),
            ("kid too long", json!(format!("{kid}00"))),
            ("kid number", json!(12345)),
        ] {
            let header = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": bad_kid});
            cases.push((name, sign_raw(&keys, &store, &header, &claims)));
        }
        let header = json!({"alg": "EdDSA", "typ": "at+jwt"});
        cases.push(("missing kid", sign_raw(&keys, &store, &header, &claims)));

        // typ: wrong, missing, case-changed.
        for typ in [json!("JWT"), json!("AT+JWT"), json!("refresh"), Value::Null] {
            let mut header = good_header(&keys);
            if typ.is_null() {
                header.as_object_mut().unwrap().remove("typ");
            } else {
                header["typ"] = typ;
            }
            cases.push(("wrong typ", sign_raw(&keys, &store, &header, &claims)));
        }

        // Keys offered by the token itself.
        for (param, value) in [
            ("jku", json!("https://attacker.invalid/jwks.json")),
            ("x5u", json!("https://attacker.invalid/cert.pem")),
            ("x5c", json!(["MIIB"])),
            (
                "jwk",
                json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(public)}),
            ),
        ] {
            let mut header = good_header(&keys);
            header[param] = value;
            cases.push((param, sign_raw(&keys, &store, &header, &claims)));
        }

        // Claims: string/float times, missing required ones, wrong iss/aud, bad ids.
        let mut tampered = |name: &'static str, edit: &dyn Fn(&mut Value)| {
            let mut claims = claims_json(T0);
            edit(&mut claims);
            cases.push((name, sign_raw(&keys, &store, &good_header(&keys), &claims)));
        };
        tampered("exp string", &|c| c["exp"] = json!("9999999999"));
        tampered("nbf string", &|c| c["nbf"] = json!(T0.to_string()));
        tampered("iat string", &|c| c["iat"] = json!(T0.to_string()));
        tampered("exp float", &|c| c["exp"] = json!(T0 as f64 + 900.5));
        for claim in [
            "exp", "nbf", "iat", "iss", "aud", "sub", "sid", "did", "spc", "av",
        ] {
            tampered("missing claim", &move |c| {
                c.as_object_mut().unwrap().remove(claim);
            });
        }
        tampered("wrong aud", &|c| c["aud"] = json!("other-api"));
        tampered("aud list", &|c| c["aud"] = json!(["haven-api", "other"]));
        tampered("wrong iss", &|c| c["iss"] = json!("evil"));
        tampered("sub not an id", &|c| c["sub"] = json!("alice"));
        tampered("sid uppercase", &|c| c["sid"] = json!("0A".repeat(16)));
        tampered("negative av", &|c| c["av"] = json!(-1));

        // Signature: altered, stripped, truncated; payload swapped under a good signature.
        let mut sig = signature_b64.to_owned().into_bytes();
        sig[5] = if sig[5] == b'A' { b'B' } else { b'A' };
        let sig = String::from_utf8(sig).unwrap();
        cases.push((
            "altered signature",
            format!("{header_b64}.{payload_b64}.{sig}"),
        ));
        cases.push(("stripped signature", format!("{header_b64}.{payload_b64}.")));
        cases.push(("no signature part", format!("{header_b64}.{payload_b64}")));
        let mut other = claims_json(T0);
        other["sub"] = json!("05".repeat(16));
        cases.push((
            "swapped payload",
            format!("{header_b64}.{}.{signature_b64}", b64(&other)),
        ));

        // Not JWTs at all: a refresh token, garbage, huge.
        cases.push(("refresh token", URL_SAFE_NO_PAD.encode([9u8; 96])));
        cases.push(("empty", String::new()));
        cases.push(("dots", "..".into()));
        cases.push((
            "oversized",
            format!("{good}{}", "A".repeat(MAX_TOKEN_BYTES)),
        ));

        for (name, token) in &cases {
            assert!(
                refused(&keys, token).await,
                "{name} must be refused: {token}"
            );
        }
        // ... while the untouched token still passes.
        assert!(keys.verify(&good).await.is_ok());
    }

    #[tokio::test]
    async fn rotation_keeps_old_tokens_until_retired() {
        let (store, clock) = (SpyStore::new(), ManualClock::new(T0));
        let keys = key_set(&store, &clock).await;
        let old_kid = keys.active_kid().unwrap();
        let old_token = issue(&keys).await;

        let new_kid = keys.rotate().await.unwrap();
        assert_ne!(new_kid, old_kid);
        assert_eq!(keys.active_kid().as_deref(), Some(new_kid.as_str()));
        let new_token = issue(&keys).await;
        assert!(
            keys.verify(&old_token).await.is_ok(),
            "verify-only key still verifies"
        );
        assert!(keys.verify(&new_token).await.is_ok());

        // The only active key cannot be retired; unknown and malformed kids are refused.
        assert!(matches!(
            keys.retire(&new_kid).await,
            Err(KeyError::OnlyActiveKey)
        ));
        assert!(matches!(
            keys.retire("00112233aabbccdd").await,
            Err(KeyError::UnknownKid)
        ));
        assert!(matches!(
            keys.retire("../x").await,
            Err(KeyError::UnknownKid)
        ));

        keys.retire(&old_kid).await.unwrap();
        assert!(
            refused(&keys, &old_token).await,
            "a retired key verifies nothing"
        );
        assert!(keys.verify(&new_token).await.is_ok());
        let states: Vec<_> = keys
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|k| (k.kid, k.state))
            .collect();
        assert!(states.contains(&(old_kid, JwtKeyState::Retired)));
        assert!(states.contains(&(new_kid, JwtKeyState::Active)));
    }

    #[tokio::test]
    async fn another_instances_rotation_is_picked_up_but_reloads_are_rate_limited() {
        let (store, clock) = (SpyStore::new(), ManualClock::new(T0));
        let here = key_set(&store, &clock).await;
        let there = key_set(&store, &clock).await;
        there.rotate().await.unwrap();
        let from_there = issue(&there).await;

        let loads = store.jwt_key_loads();
        assert!(
            here.verify(&from_there).await.is_ok(),
            "unknown kid triggers one reload"
        );
        assert_eq!(store.jwt_key_loads(), loads + 1);

        // Random well-formed kids within 10 s do not reach the store again.
        for i in 0..5u8 {
            let header = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": hex::encode([i; 8])});
            let token = format!("{}.{}.AAAA", b64(&header), b64(&claims_json(T0)));
            assert!(refused(&here, &token).await);
        }
        assert_eq!(store.jwt_key_loads(), loads + 1);
        // Malformed kids never reach the store at all, even after the window.
        clock.advance(11);
        let header = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "../../keys"});
        let token = format!("{}.{}.AAAA", b64(&header), b64(&claims_json(T0)));
        assert!(refused(&here, &token).await);
        assert_eq!(store.jwt_key_loads(), loads + 1);
    }

    #[tokio::test]
    async fn retirement_elsewhere_is_seen_after_the_refresh_interval() {
        let (store, clock) = (SpyStore::new(), ManualClock::new(T0));
        let here = key_set(&store, &clock).await;
        let there = key_set(&store, &clock).await;
        let old_kid = here.active_kid().unwrap();
        let token = issue(&here).await;
        there.rotate().await.unwrap();
        there.retire(&old_kid).await.unwrap();
        // Within the interval this instance still has the old key...
        clock.advance(10);
        assert!(here.verify(&token).await.is_ok());
        // ...after it, the periodic re-read drops it, and signing moves to the new key.
        clock.advance(60);
        assert!(refused(&here, &token).await);
        assert_eq!(here.active_kid(), there.active_kid());
    }

    #[test]
    fn kid_format() {
        assert!(is_well_formed_kid("0123456789abcdef"));
        for bad in [
            "",
            "0123456789ABCDEF",
            "0123456789abcde",
            "0123456789abcdef0",
            "../x",
            "\"\"",
        ] {
            assert!(!is_well_formed_kid(bad), "{bad}");
        }
    }
}
