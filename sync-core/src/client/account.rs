//! Registration, login, tokens and the key bundle: the flows that need the password (never
//! stored) or the server.

use haven_protocol::api::{
    AuthProof, CreateAccountRequest, CreateSessionRequest, KeyBundle, SessionResponse,
    normalize_username,
};
use haven_protocol::{ErrorCode, SpaceId};

use super::Haven;
use super::error::{HavenError, HavenResult};
use std::collections::HashSet;

use haven_protocol::DeviceId;

use super::devices::DeviceJoined;
use super::records::{self, AccountMeta, CutOff, KEY_SESSION, META_DEVICE_ALERTS, SessionTokens};
use super::replica::AccountKeys;
use crate::crypto::{
    BundleContents, PasswordKeys, RecoveryKeys, RecoveryPhrase, RootKey, check_password_strength,
    derive_password_keys, kdf_params_allowed, new_kdf_params,
};
use crate::local_store::{Table, WriteBatch};
use crate::remote::RemoteError;

/// An account made on this device but not yet sent to the server (see
/// [`Haven::prepare_registration`]).
pub struct PendingRegistration {
    request: CreateAccountRequest,
    phrase: RecoveryPhrase,
    keys: AccountKeys,
}

impl PendingRegistration {
    /// The recovery phrase of the account-to-be: show it once, then check some words.
    pub fn phrase(&self) -> &RecoveryPhrase {
        &self.phrase
    }

    /// The normalised username the account will have.
    pub fn username(&self) -> &str {
        &self.request.username
    }
}

impl std::fmt::Debug for PendingRegistration {
    // The request carries the login proof, the phrase is the account's master secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingRegistration")
            .field("username", &self.request.username)
            .finish_non_exhaustive()
    }
}

/// Refresh the access token when it has less than this left.
const REFRESH_MARGIN_MS: i64 = 60_000;
/// Attempts at a compare-and-swap of the key bundle before giving up.
pub(super) const BUNDLE_CAS_ATTEMPTS: usize = 3;

impl Haven {
    /// Creates an account with this profile as its first device: [`Haven::prepare_registration`]
    /// then [`Haven::complete_registration`]. Returns the recovery phrase: show it once. Hosts
    /// that check some of its words back before anything reaches the server use the two steps.
    ///
    /// Deriving the password keys takes about a second of CPU (Argon2id, 64 MiB) on purpose; call
    /// it off the UI thread.
    pub async fn register(
        &self,
        username: &str,
        password: &str,
        device_name: &str,
    ) -> HavenResult<RecoveryPhrase> {
        let pending = self.prepare_registration(username, password, device_name)?;
        self.complete_registration(pending).await
    }

    /// Step 1 of registration, offline: the password keys, the recovery phrase, the root key and
    /// the sealed key bundle. The host shows [`PendingRegistration::phrase`] once and asks some of
    /// its words back ([`RecoveryPhrase::challenge`], [`RecoveryPhrase::check_words`]); dropping
    /// the pending registration sends nothing and keeps nothing.
    pub fn prepare_registration(
        &self,
        username: &str,
        password: &str,
        device_name: &str,
    ) -> HavenResult<PendingRegistration> {
        let username =
            normalize_username(username).map_err(|error| HavenError::Invalid(error.to_string()))?;
        check_password_strength(password)
            .map_err(|weak| HavenError::WeakPassword(weak.to_string()))?;
        // The lock is held only to read what is needed: the password derivation below takes a
        // second of CPU, and every other call on this profile must not wait for it.
        let (random, device_keys, device_id, now) = {
            let replica = self.replica();
            if replica.meta.account.is_some() {
                return Err(HavenError::AlreadyLoggedIn);
            }
            (
                std::sync::Arc::clone(&replica.random),
                replica.device.public_keys(),
                replica.device_id(),
                replica.now_ms(),
            )
        };
        let random = random.as_ref();
        let kdf = new_kdf_params(random);
        let password_keys = derive_password_keys(password, &kdf)?;
        let phrase = RecoveryPhrase::generate(random);
        let recovery = RecoveryKeys::derive(&phrase);
        let rk = RootKey::generate(random);
        let bundle = BundleContents::create(
            &rk,
            &password_keys.kek,
            &recovery.public_key(),
            &device_keys,
            device_name,
            now,
            random,
        )?;
        let sealed = bundle.seal(&rk, random)?;
        let request = CreateAccountRequest {
            username,
            auth_secret: password_keys.auth_secret.to_wire(),
            recovery_auth: recovery.recovery_auth().to_wire(),
            kdf,
            device: device_id,
            key_bundle: sealed.clone(),
        };
        Ok(PendingRegistration {
            request,
            phrase,
            keys: AccountKeys { rk, bundle, sealed },
        })
    }

    /// Step 2 of registration: creates the account on the server and logs this profile in.
    /// Returns the recovery phrase (the host already showed it). If the account was created but
    /// the login failed (the network went away), [`Haven::login`] later finishes the job.
    pub async fn complete_registration(
        &self,
        pending: PendingRegistration,
    ) -> HavenResult<RecoveryPhrase> {
        let PendingRegistration {
            request,
            phrase,
            keys,
        } = pending;
        let created = self.remote.create_account(&request).await?;
        let session = self
            .remote
            .create_session(&CreateSessionRequest {
                username: request.username.clone(),
                auth_secret: request.auth_secret,
                device: request.device,
                device_name: None,
            })
            .await?;
        self.adopt_account(request.username, created.space_id, &session, keys)?;
        Ok(phrase)
    }

    /// Logs this profile in to an existing account with the password. A device new to the
    /// account adds itself to the key bundle (the other devices see it join).
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        device_name: &str,
    ) -> HavenResult<()> {
        let username =
            normalize_username(username).map_err(|error| HavenError::Invalid(error.to_string()))?;
        let (device_id, min_version) = {
            let replica = self.replica();
            if let Some(account) = &replica.meta.account
                && account.username != username
            {
                return Err(HavenError::AlreadyLoggedIn);
            }
            (replica.device_id(), replica.meta.bundle_min_version)
        };
        let password_keys = self.password_keys(&username, password).await?;
        let session = self
            .remote
            .create_session(&CreateSessionRequest {
                username: username.clone(),
                auth_secret: password_keys.auth_secret.to_wire(),
                device: device_id,
                device_name: None,
            })
            .await
            .map_err(|error| match error.code() {
                Some(ErrorCode::Unauthorized) => HavenError::WrongCredentials,
                _ => HavenError::from_auth_failure(error),
            })?;
        let mut attempts = 0;
        let keys = loop {
            attempts += 1;
            let sealed = self.remote.get_keys(&session.access_token).await?;
            let (rk, mut bundle) =
                BundleContents::open_with_password(&sealed, &password_keys.kek, min_version)?;
            if bundle.device(&device_id).is_some() {
                break AccountKeys { rk, bundle, sealed };
            }
            let resealed = {
                let replica = self.replica();
                bundle.add_device(&replica.device.public_keys(), device_name, replica.now_ms())?;
                bundle.seal(&rk, replica.random.as_ref())?
            };
            match self.remote.put_keys(&session.access_token, &resealed).await {
                Ok(()) => {
                    break AccountKeys {
                        rk,
                        bundle,
                        sealed: resealed,
                    };
                }
                Err(error)
                    if error.code() == Some(ErrorCode::VersionConflict)
                        && attempts < BUNDLE_CAS_ATTEMPTS => {}
                Err(error) => return Err(error.into()),
            }
        };
        self.adopt_account(username, session.space_id, &session, keys)
    }

    /// Stores what registration or login produced, in one commit, and creates the singletons.
    pub(super) fn adopt_account(
        &self,
        username: String,
        space: SpaceId,
        session: &SessionResponse,
        keys: AccountKeys,
    ) -> HavenResult<()> {
        let mut replica = self.replica();
        let mut batch = WriteBatch::new();
        let tokens = tokens_of(session, replica.now_ms());
        records::put(&mut batch, Table::Keys, KEY_SESSION, &tokens)?;
        replica.meta.account = Some(AccountMeta {
            username,
            user_id: session.user_id,
            space,
            cut_off: None,
            erased_here: false,
            wipe_due: false,
        });
        replica.stage_account_keys(keys, &mut batch)?;
        replica.stage_singletons(&mut batch)?;
        replica.stage_adopt_local_journal(&mut batch)?;
        replica.stage_meta(&mut batch)?;
        replica.commit(batch)?;
        drop(replica);
        self.refresh_status();
        Ok(())
    }

    /// Logs this device out: the server ends the session; local data stays (log in again to
    /// sync). Works offline too (the tokens are forgotten here either way).
    pub async fn logout(&self) -> HavenResult<()> {
        let tokens = self.tokens()?;
        if let Some(tokens) = &tokens
            && let Err(error) = self.remote.delete_session(&tokens.access).await
            && error
                .code()
                .is_none_or(|code| code != ErrorCode::Unauthorized)
            && !error.retryable()
        {
            return Err(error.into());
        }
        self.replica().store.delete(Table::Keys, KEY_SESSION)?;
        self.refresh_status();
        Ok(())
    }

    /// Erases the account on the server (fresh password proof). This device keeps its data
    /// until it is wiped, so it can still be exported.
    pub async fn delete_account(&self, password: &str) -> HavenResult<()> {
        let username = self.username().ok_or(HavenError::NotLoggedIn)?;
        let wipe_token = self.account_wipe_token()?;
        let password_keys = self.password_keys(&username, password).await?;
        let access = self.access_token().await?;
        self.remote
            .delete_account(
                &access,
                &AuthProof {
                    auth_secret: password_keys.auth_secret.to_wire(),
                    wipe_token: wipe_token.map(|token| haven_protocol::Bytes(*token)),
                },
            )
            .await
            .map_err(|error| match error.code() {
                Some(ErrorCode::Unauthorized) => HavenError::WrongCredentials,
                _ => error.into(),
            })?;
        self.mark_cut_off(CutOff::AccountErased)?;
        let mut replica = self.replica();
        if let Some(account) = replica.meta.account.as_mut() {
            account.erased_here = true;
        }
        let mut batch = WriteBatch::new();
        replica.stage_meta(&mut batch)?;
        replica.commit(batch)?;
        Ok(())
    }

    /// The password keys of `password` for `username`, with the account's KDF salt and
    /// parameters from prelogin. Strict: a server may not talk a device into weak parameters.
    pub(super) async fn password_keys(
        &self,
        username: &str,
        password: &str,
    ) -> HavenResult<PasswordKeys> {
        let prelogin = self.remote.prelogin(username).await?;
        if !kdf_params_allowed(&prelogin.kdf) {
            return Err(HavenError::Protocol(
                "the server offered password parameters below the minimum".into(),
            ));
        }
        Ok(derive_password_keys(password, &prelogin.kdf)?)
    }

    fn tokens(&self) -> HavenResult<Option<SessionTokens>> {
        records::load(&self.replica().store, Table::Keys, KEY_SESSION, "session")
    }

    /// A valid access token, refreshed first if it expires within a minute. One refresh runs
    /// at a time; a concurrent caller waits and uses its result.
    pub(crate) async fn access_token(&self) -> HavenResult<String> {
        let now = self.replica().now_ms();
        let tokens = self.tokens()?.ok_or(HavenError::NotLoggedIn)?;
        if tokens.access_expires_at_ms - now > REFRESH_MARGIN_MS {
            return Ok(tokens.access);
        }
        self.refresh_tokens(&tokens.refresh).await
    }

    /// Rotates the refresh token (after a 401, or before expiry).
    pub(crate) async fn refresh_tokens(&self, presented: &str) -> HavenResult<String> {
        let _one_at_a_time = self.refresh_lock.lock().await;
        // Someone else may have rotated while we waited: use theirs.
        let current = self.tokens()?.ok_or(HavenError::NotLoggedIn)?;
        let now = self.replica().now_ms();
        if current.refresh != presented && current.access_expires_at_ms - now > REFRESH_MARGIN_MS {
            return Ok(current.access);
        }
        match self.remote.refresh_session(&current.refresh).await {
            Ok(session) => {
                let tokens = tokens_of(&session, now);
                let mut replica = self.replica();
                let mut batch = WriteBatch::new();
                records::put(&mut batch, Table::Keys, KEY_SESSION, &tokens)?;
                replica.commit(batch)?;
                Ok(tokens.access)
            }
            Err(error) => match error.code() {
                Some(ErrorCode::DeviceRevoked) => {
                    self.mark_cut_off(CutOff::DeviceRevoked)?;
                    Err(HavenError::DeviceRevoked)
                }
                Some(ErrorCode::AccountErased) => {
                    self.mark_cut_off(CutOff::AccountErased)?;
                    Err(HavenError::AccountErased)
                }
                Some(ErrorCode::Unauthorized) => {
                    // The session ended (logout elsewhere, reuse detected, expiry): log in again.
                    self.replica().store.delete(Table::Keys, KEY_SESSION)?;
                    Err(HavenError::NotLoggedIn)
                }
                _ => Err(error.into()),
            },
        }
    }

    /// Runs an authenticated call, refreshing once on a 401.
    pub(crate) async fn authed<T, F, Fut>(&self, call: F) -> HavenResult<T>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Result<T, RemoteError>>,
    {
        let access = self.access_token().await?;
        match call(access.clone()).await {
            Ok(value) => Ok(value),
            Err(error) if error.code() == Some(ErrorCode::Unauthorized) => {
                let fresh = self
                    .refresh_tokens(&self.tokens()?.map(|t| t.refresh).unwrap_or_default())
                    .await?;
                call(fresh).await.map_err(|error| self.cut_off_from(error))
            }
            Err(error) => Err(self.cut_off_from(error)),
        }
    }

    /// Notes a revocation or erasure the server reported, and converts the error.
    fn cut_off_from(&self, error: RemoteError) -> HavenError {
        let cut = match error.code() {
            Some(ErrorCode::DeviceRevoked) => Some(CutOff::DeviceRevoked),
            Some(ErrorCode::AccountErased) => Some(CutOff::AccountErased),
            _ => None,
        };
        if let Some(cut) = cut {
            let _ = self.mark_cut_off(cut);
        }
        HavenError::from_auth_failure(error)
    }

    pub(crate) fn mark_cut_off(&self, cut: CutOff) -> HavenResult<()> {
        let mut replica = self.replica();
        if let Some(account) = replica.meta.account.as_mut() {
            account.cut_off = Some(cut);
        }
        let mut batch = WriteBatch::new();
        replica.stage_meta(&mut batch)?;
        batch.delete(Table::Keys, KEY_SESSION);
        replica.commit(batch)?;
        Ok(())
    }

    /// Fetches the key bundle (a device joined, keys rotated elsewhere) and opens it with this
    /// device's keys. A device that was revoked finds no wrap for itself. Devices new to this
    /// one are added to the device alerts and returned.
    pub(crate) async fn refresh_bundle(&self) -> HavenResult<Vec<DeviceJoined>> {
        let sealed: KeyBundle = self
            .authed(|access| async move { self.remote.get_keys(&access).await })
            .await?;
        let mut replica = self.replica();
        if replica
            .keys
            .as_ref()
            .is_some_and(|keys| keys.sealed == sealed)
        {
            return Ok(Vec::new());
        }
        let trusted = replica
            .keys
            .as_ref()
            .map(|keys| RootKey::from_bytes(keys.rk.expose_secret()))
            .ok_or(HavenError::NotLoggedIn)?;
        let min_version = replica.meta.bundle_min_version;
        let opened =
            BundleContents::open_with_device(&sealed, &replica.device, &trusted, min_version);
        let (rk, bundle) = match opened {
            Ok(opened) => opened,
            Err(crate::crypto::CryptoError::NoWrapForDevice) => {
                drop(replica);
                self.mark_cut_off(CutOff::DeviceRevoked)?;
                return Err(HavenError::DeviceRevoked);
            }
            Err(error) => return Err(error.into()),
        };
        let known: HashSet<DeviceId> = replica
            .keys
            .iter()
            .flat_map(|keys| keys.bundle.devices())
            .map(|device| device.keys.device_id)
            .chain([replica.device_id()])
            .collect();
        let joined: Vec<DeviceJoined> = bundle
            .devices()
            .iter()
            .filter(|device| !device.is_revoked() && !known.contains(&device.keys.device_id))
            .map(|device| DeviceJoined {
                device_id: device.keys.device_id,
                name: device.name.clone(),
                added_at_ms: device.added_at_ms,
            })
            .collect();
        let mut batch = WriteBatch::new();
        if !joined.is_empty() {
            let mut alerts: Vec<DeviceJoined> = records::load(
                &replica.store,
                Table::Meta,
                META_DEVICE_ALERTS,
                "device alerts",
            )?
            .unwrap_or_default();
            alerts.retain(|alert| !joined.iter().any(|new| new.device_id == alert.device_id));
            alerts.extend(joined.iter().cloned());
            records::put(&mut batch, Table::Meta, META_DEVICE_ALERTS, &alerts)?;
        }
        replica.stage_account_keys(AccountKeys { rk, bundle, sealed }, &mut batch)?;
        replica.stage_meta(&mut batch)?;
        replica.commit(batch)?;
        Ok(joined)
    }
}

pub(super) fn tokens_of(session: &SessionResponse, now_ms: i64) -> SessionTokens {
    let lifetime_ms = i64::try_from(session.expires_in.saturating_mul(1000)).unwrap_or(i64::MAX);
    SessionTokens {
        access: session.access_token.clone(),
        refresh: session.refresh_token.clone(),
        access_expires_at_ms: now_ms.saturating_add(lifetime_ms),
    }
}
