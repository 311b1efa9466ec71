//! The flows that change what unlocks the account (DESIGN.md §4, issue 7): a password change, the
//! revocation of a lost or taken device (a new root key and epoch, and a new password, since its
//! holder may know the old one), and recovery with the phrase when the password is forgotten.
//!
//! Each one checks the current password (or phrase) against the key bundle on the device before
//! anything is sent, derives the new password keys without holding the profile lock, and retries
//! the server's compare-and-swap on the bundle when another device changed it meanwhile.

use haven_protocol::api::{
    CreateSessionRequest, PasswordChangeRequest, RecoveryRequest, RecoveryResetRequest,
    RevokeDeviceRequest, normalize_username,
};
use haven_protocol::{DeviceId, ErrorCode};

use super::Haven;
use super::account::{BUNDLE_CAS_ATTEMPTS, tokens_of};
use super::error::{HavenError, HavenResult};
use super::records::{self, KEY_SESSION};
use super::replica::AccountKeys;
use crate::crypto::{
    BundleContents, CryptoError, PasswordKeys, RecoveryKeys, RecoveryPhrase, RootKey,
    check_password_strength, derive_password_keys, new_kdf_params,
};
use crate::local_store::{Table, WriteBatch};

impl Haven {
    /// Changes the account's password: the root key is re-wrapped under the new one (nothing is
    /// re-encrypted); every session of the account ends, and this device continues with a new
    /// one. Other devices keep working until their session is needed again, then log in with
    /// the new password. Takes two password derivations (a second or two of CPU each).
    pub async fn change_password(&self, current: &str, new: &str) -> HavenResult<()> {
        check_password_strength(new).map_err(|weak| HavenError::WeakPassword(weak.to_string()))?;
        let username = self.username().ok_or(HavenError::NotLoggedIn)?;
        // The newest bundle: another device may have changed it (or the password) meanwhile.
        self.refresh_bundle().await?;
        let old_keys = self.checked_password_keys(&username, current).await?;
        let random = std::sync::Arc::clone(&self.replica().random);
        let kdf = new_kdf_params(random.as_ref());
        let new_keys = derive_password_keys(new, &kdf)?;
        for attempt in 1..=BUNDLE_CAS_ATTEMPTS {
            let (rk, sealed, bundle) = {
                let replica = self.replica();
                let keys = replica.keys.as_ref().ok_or(HavenError::NotLoggedIn)?;
                let rk = RootKey::from_bytes(keys.rk.expose_secret());
                let mut bundle = keys.bundle.clone();
                bundle.rewrap_password(&rk, &new_keys.kek, random.as_ref())?;
                let sealed = bundle.seal(&rk, random.as_ref())?;
                (rk, sealed, bundle)
            };
            let request = PasswordChangeRequest {
                auth_secret: old_keys.auth_secret.to_wire(),
                new_auth_secret: new_keys.auth_secret.to_wire(),
                kdf,
                key_bundle: sealed.clone(),
            };
            let request = &request;
            let answer = self
                .authed(|access| async move { self.remote.change_password(&access, request).await })
                .await;
            match answer {
                Ok(session) => {
                    let mut replica = self.replica();
                    let mut batch = WriteBatch::new();
                    let tokens = tokens_of(&session, replica.now_ms());
                    records::put(&mut batch, Table::Keys, KEY_SESSION, &tokens)?;
                    replica.stage_account_keys(AccountKeys { rk, bundle, sealed }, &mut batch)?;
                    replica.stage_meta(&mut batch)?;
                    replica.commit(batch)?;
                    return Ok(());
                }
                Err(error) if is_bundle_conflict(&error) && attempt < BUNDLE_CAS_ATTEMPTS => {
                    self.refresh_bundle().await?;
                }
                Err(error) => return Err(error),
            }
        }
        Err(busy())
    }

    /// Revokes another device of the account (a lost or taken phone): in one compare-and-swap on
    /// the server its sessions and live sockets end, the account moves to a new root key and key
    /// epoch (wrapped for the remaining devices and the recovery key, never for the revoked
    /// one), and the password becomes `new_password`, because whoever holds that phone may know
    /// the old one. History stays readable on the remaining devices; the revoked one cannot log
    /// in, push, or open anything written afterwards.
    pub async fn revoke_device(
        &self,
        device: &DeviceId,
        password: &str,
        new_password: &str,
    ) -> HavenResult<()> {
        check_password_strength(new_password)
            .map_err(|weak| HavenError::WeakPassword(weak.to_string()))?;
        let username = self.username().ok_or(HavenError::NotLoggedIn)?;
        if *device == self.replica().device_id() {
            return Err(HavenError::Invalid(
                "a device cannot revoke itself: log out, or wipe it".into(),
            ));
        }
        // Revoke against the newest device list (a device may have joined since).
        self.refresh_bundle().await?;
        let old_keys = self.checked_password_keys(&username, password).await?;
        let random = std::sync::Arc::clone(&self.replica().random);
        let kdf = new_kdf_params(random.as_ref());
        let new_keys = derive_password_keys(new_password, &kdf)?;
        for attempt in 1..=BUNDLE_CAS_ATTEMPTS {
            let (new_rk, sealed, bundle) = {
                let replica = self.replica();
                let keys = replica.keys.as_ref().ok_or(HavenError::NotLoggedIn)?;
                match keys.bundle.device(device) {
                    Some(record) if !record.is_revoked() => {}
                    Some(_) => {
                        return Err(HavenError::Invalid("that device is already revoked".into()));
                    }
                    None => {
                        return Err(HavenError::Invalid(
                            "no device with that id in this account".into(),
                        ));
                    }
                }
                let rk = RootKey::from_bytes(keys.rk.expose_secret());
                let new_rk = RootKey::generate(random.as_ref());
                let mut bundle = keys.bundle.clone();
                bundle.rotate(
                    &rk,
                    &new_rk,
                    &new_keys.kek,
                    &[*device],
                    replica.now_ms(),
                    random.as_ref(),
                )?;
                let sealed = bundle.seal(&new_rk, random.as_ref())?;
                (new_rk, sealed, bundle)
            };
            let request = RevokeDeviceRequest {
                auth_secret: old_keys.auth_secret.to_wire(),
                new_auth_secret: new_keys.auth_secret.to_wire(),
                kdf,
                key_epoch: bundle.key_epoch(),
                key_bundle: sealed.clone(),
            };
            let request = &request;
            let answer = self
                .authed(|access| async move {
                    self.remote.revoke_device(&access, device, request).await
                })
                .await;
            match answer {
                Ok(()) => {
                    {
                        let mut replica = self.replica();
                        let mut batch = WriteBatch::new();
                        replica.stage_account_keys(
                            AccountKeys {
                                rk: new_rk,
                                bundle,
                                sealed,
                            },
                            &mut batch,
                        )?;
                        replica.stage_meta(&mut batch)?;
                        replica.commit(batch)?;
                    }
                    // What waits in the outbox was sealed under the old epoch, which the server
                    // now refuses: seal it again under the new one.
                    let space = self.replica().private_space();
                    if let Some(space) = space {
                        self.reseal_outbox(&space)?;
                    }
                    self.refresh_status();
                    return Ok(());
                }
                Err(error) if is_bundle_conflict(&error) && attempt < BUNDLE_CAS_ATTEMPTS => {
                    self.refresh_bundle().await?;
                }
                Err(error) if error.server_code() == Some(ErrorCode::NotFound) => {
                    return Err(HavenError::Invalid(
                        "the server knows no such device, or it is revoked already".into(),
                    ));
                }
                Err(error) => return Err(error),
            }
        }
        Err(busy())
    }

    /// Gets back into an account with its recovery phrase after the password was forgotten:
    /// the root key is opened with the phrase, wrapped under `new_password`, and this profile
    /// logs in (joining the account's devices if it is new). Every other session ends; other
    /// devices log in again with the new password. Everything written before stays readable.
    ///
    /// Without the phrase there is no way back in that keeps the journal: nobody, Haven
    /// included, can open it. The account can only be deleted and started over.
    pub async fn recover(
        &self,
        username: &str,
        phrase: &RecoveryPhrase,
        new_password: &str,
        device_name: &str,
    ) -> HavenResult<()> {
        let username =
            normalize_username(username).map_err(|error| HavenError::Invalid(error.to_string()))?;
        check_password_strength(new_password)
            .map_err(|weak| HavenError::WeakPassword(weak.to_string()))?;
        let (device_id, device_keys, min_version, random, now) = {
            let replica = self.replica();
            if let Some(account) = &replica.meta.account
                && account.username != username
            {
                return Err(HavenError::AlreadyLoggedIn);
            }
            (
                replica.device_id(),
                replica.device.public_keys(),
                replica.meta.bundle_min_version,
                std::sync::Arc::clone(&replica.random),
                replica.now_ms(),
            )
        };
        let recovery = RecoveryKeys::derive(phrase);
        let recovered = self
            .remote
            .recover(&RecoveryRequest {
                username: username.clone(),
                recovery_auth: recovery.recovery_auth().to_wire(),
            })
            .await
            .map_err(|error| match error.code() {
                Some(ErrorCode::Unauthorized) => HavenError::WrongCredentials,
                _ => error.into(),
            })?;
        let (rk, mut bundle) =
            BundleContents::open_with_recovery(&recovered.recovery_bundle, &recovery, min_version)?;
        match bundle.device(&device_id) {
            Some(record) if record.is_revoked() => {
                return Err(HavenError::DeviceRevoked);
            }
            Some(_) => {}
            None => bundle.add_device(&device_keys, device_name, now)?,
        }
        let kdf = new_kdf_params(random.as_ref());
        let new_keys = derive_password_keys(new_password, &kdf)?;
        bundle.rewrap_password(&rk, &new_keys.kek, random.as_ref())?;
        let sealed = bundle.seal(&rk, random.as_ref())?;
        self.remote
            .reset_after_recovery(&RecoveryResetRequest {
                reset_token: recovered.reset_token.clone(),
                auth_secret: new_keys.auth_secret.to_wire(),
                kdf,
                key_bundle: sealed.clone(),
            })
            .await?;
        let session = self
            .remote
            .create_session(&CreateSessionRequest {
                username: username.clone(),
                auth_secret: new_keys.auth_secret.to_wire(),
                device: device_id,
                device_name: None,
            })
            .await
            .map_err(HavenError::from_auth_failure)?;
        self.adopt_account(
            username,
            session.space_id,
            &session,
            AccountKeys { rk, bundle, sealed },
        )
    }

    /// The password keys of `password` for this account, checked against the key bundle on this
    /// device first: a wrong password fails here, with nothing sent but the prelogin.
    async fn checked_password_keys(
        &self,
        username: &str,
        password: &str,
    ) -> HavenResult<PasswordKeys> {
        let keys = self.password_keys(username, password).await?;
        let (sealed, min_version) = {
            let replica = self.replica();
            let account_keys = replica.keys.as_ref().ok_or(HavenError::NotLoggedIn)?;
            (account_keys.sealed.clone(), replica.meta.bundle_min_version)
        };
        match BundleContents::open_with_password(&sealed, &keys.kek, min_version) {
            Ok(_) => Ok(keys),
            Err(CryptoError::UnwrapFailed) => Err(HavenError::WrongCredentials),
            Err(error) => Err(error.into()),
        }
    }
}

fn is_bundle_conflict(error: &HavenError) -> bool {
    error.server_code() == Some(ErrorCode::VersionConflict)
}

fn busy() -> HavenError {
    HavenError::Protocol("the account's key bundle kept changing on the server; try again".into())
}
