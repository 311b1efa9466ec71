//! Registration in two steps, for a host that checks the recovery phrase *before* anything reaches
//! the server (the `haven` CLI; a phone app's sign-up screen wants the same):
//!
//! 1. [`Haven::prepare_registration`] makes the keys, the sealed bundle and the recovery phrase,
//!    offline. The host shows [`PendingRegistration::phrase`] once and asks some of its words back
//!    ([`RecoveryPhrase::challenge`], [`RecoveryPhrase::check_words`]).
//! 2. Only if the words are right, [`Haven::complete_registration`] creates the account and logs
//!    this profile in (with the public [`Haven::login`], which also proves that the bundle the
//!    server now stores opens with the password). Dropping the pending registration instead sends
//!    nothing and keeps nothing.
//!
//! The first step is [`Haven::register`]'s first half, verbatim; `register` could become
//! `prepare_registration` + `complete_registration` (at the cost of one more password derivation),
//! and this file go away.

use std::fmt;

use haven_protocol::api::{CreateAccountRequest, normalize_username};

use super::Haven;
use super::error::{HavenError, HavenResult};
use crate::crypto::{
    BundleContents, RecoveryKeys, RecoveryPhrase, RootKey, check_password_strength,
    derive_password_keys, new_kdf_params,
};

/// An account made on this device but not yet sent to the server.
pub struct PendingRegistration {
    request: CreateAccountRequest,
    phrase: RecoveryPhrase,
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

impl fmt::Debug for PendingRegistration {
    // The request carries the login proof; the phrase is the account's master secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingRegistration")
            .field("username", &self.request.username)
            .finish_non_exhaustive()
    }
}

impl Haven {
    /// Step 1: everything [`Haven::register`] does before it talks to the server. Offline; takes
    /// the password derivation's second of CPU.
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
        let replica = self.replica();
        if replica.meta.account.is_some() {
            return Err(HavenError::AlreadyLoggedIn);
        }
        let random = replica.random.as_ref();
        let kdf = new_kdf_params(random);
        let password_keys = derive_password_keys(password, &kdf)?;
        let phrase = RecoveryPhrase::generate(random);
        let recovery = RecoveryKeys::derive(&phrase);
        let rk = RootKey::generate(random);
        let bundle = BundleContents::create(
            &rk,
            &password_keys.kek,
            &recovery.public_key(),
            &replica.device.public_keys(),
            device_name,
            replica.now_ms(),
            random,
        )?;
        let sealed = bundle.seal(&rk, random)?;
        let request = CreateAccountRequest {
            username,
            auth_secret: password_keys.auth_secret.to_wire(),
            recovery_auth: recovery.recovery_auth().to_wire(),
            kdf,
            device: replica.device_id(),
            key_bundle: sealed,
        };
        Ok(PendingRegistration { request, phrase })
    }

    /// Step 2: creates the account on the server, then logs this profile in with `password` (the
    /// one given to step 1). If the account is created but the login fails (the network went
    /// away), the account exists: [`Haven::login`] later finishes the job.
    pub async fn complete_registration(
        &self,
        pending: PendingRegistration,
        password: &str,
        device_name: &str,
    ) -> HavenResult<()> {
        let PendingRegistration { request, phrase } = pending;
        drop(phrase);
        self.remote.create_account(&request).await?;
        self.login(&request.username, password, device_name).await
    }
}
