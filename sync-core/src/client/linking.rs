//! Linking a new device without typing the password on it (DESIGN.md §4; the exchange itself is
//! in [`crate::crypto::link`]).
//!
//! New device: [`Haven::link_start`] → show the invitation code and its verification code →
//! [`Haven::link_wait`] until the grant arrives. Existing device: [`Haven::link_inspect`] on the
//! code → the person compares the verification codes → [`Haven::link_approve`].

use std::time::Duration;

use haven_protocol::api::{EnrolRequest, LinkPayload};
use haven_protocol::{Blob, ErrorCode};

use super::Haven;
use super::account::BUNDLE_CAS_ATTEMPTS;
use super::error::{HavenError, HavenResult};
use super::replica::AccountKeys;
use crate::crypto::{BundleContents, LinkGrant, LinkInvitation};

/// How often the new device looks in the mailbox.
const POLL_EVERY: Duration = Duration::from_secs(1);
/// A mailbox lives ten minutes on the server; waiting longer is pointless.
pub const MAX_LINK_WAIT: Duration = Duration::from_secs(600);

impl Haven {
    /// New device, step 1: opens a mailbox on the server and returns the invitation to show
    /// ([`LinkInvitation::to_code`], [`LinkInvitation::verification_code`]). The profile must
    /// have no account yet.
    pub async fn link_start(&self) -> HavenResult<LinkInvitation> {
        let device = {
            let replica = self.replica();
            if replica.meta.account.is_some() {
                return Err(HavenError::AlreadyLoggedIn);
            }
            replica.device.public_keys()
        };
        let created = self.remote.create_link().await?;
        Ok(LinkInvitation {
            mailbox: created.id,
            device,
        })
    }

    /// New device, step 2: waits (at most `timeout`, capped at ten minutes) for the existing
    /// device's grant, then joins the account: a session from the enrolment token, and the key
    /// bundle opened with this device's key and trusted only if signed by the root key in the
    /// grant. Returns the account's username, for the person to check.
    pub async fn link_wait(
        &self,
        invitation: &LinkInvitation,
        timeout: Duration,
    ) -> HavenResult<String> {
        let timeout = timeout.min(MAX_LINK_WAIT);
        let payload = tokio::time::timeout(timeout, async {
            loop {
                if let Some(payload) = self.remote.take_link(&invitation.mailbox).await? {
                    return Ok::<_, HavenError>(payload);
                }
                tokio::time::sleep(POLL_EVERY).await;
            }
        })
        .await
        .map_err(|_| HavenError::Timeout)??;
        let (grant, device_id, min_version) = {
            let replica = self.replica();
            let grant = LinkGrant::open(&payload.payload.0, invitation, &replica.device)?;
            (grant, replica.device_id(), replica.meta.bundle_min_version)
        };
        let session = self
            .remote
            .enrol_session(&EnrolRequest {
                enrolment_token: grant.enrolment_token.to_string(),
                device: device_id,
                device_name: None,
            })
            .await
            .map_err(HavenError::from_auth_failure)?;
        let sealed = self.remote.get_keys(&session.access_token).await?;
        let (rk, bundle) = {
            let replica = self.replica();
            BundleContents::open_with_device(
                &sealed,
                &replica.device,
                &grant.root_key,
                min_version,
            )?
        };
        let username = grant.username.clone();
        self.adopt_account(
            grant.username,
            session.space_id,
            &session,
            AccountKeys { rk, bundle, sealed },
        )?;
        Ok(username)
    }

    /// Existing device, step 1: reads an invitation code. Show its
    /// [`LinkInvitation::verification_code`] and approve only if the new device shows the same.
    pub fn link_inspect(&self, code: &str) -> HavenResult<LinkInvitation> {
        LinkInvitation::parse(code).map_err(|error| HavenError::Invalid(error.to_string()))
    }

    /// Existing device, step 2 (after the person confirmed the verification codes match): adds
    /// the new device to the key bundle under `device_name`, and sends it the grant through
    /// the mailbox.
    pub async fn link_approve(
        &self,
        invitation: &LinkInvitation,
        device_name: &str,
    ) -> HavenResult<()> {
        let username = self.username().ok_or(HavenError::NotLoggedIn)?;
        self.refresh_bundle().await?;
        for attempt in 1..=BUNDLE_CAS_ATTEMPTS {
            let resealed = {
                let replica = self.replica();
                let keys = replica.keys.as_ref().ok_or(HavenError::NotLoggedIn)?;
                match keys.bundle.device(&invitation.device.device_id) {
                    Some(record) if record.is_revoked() => {
                        return Err(HavenError::Invalid(
                            "that device was revoked from this account; it cannot come back".into(),
                        ));
                    }
                    Some(record) if record.keys != invitation.device => {
                        return Err(HavenError::Invalid(
                            "a device with that id but other keys is in the account".into(),
                        ));
                    }
                    Some(_) => None,
                    None => {
                        let mut bundle = keys.bundle.clone();
                        bundle.add_device(&invitation.device, device_name, replica.now_ms())?;
                        let sealed = bundle.seal(&keys.rk, replica.random.as_ref())?;
                        Some((bundle, sealed))
                    }
                }
            };
            let Some((bundle, sealed)) = resealed else {
                break;
            };
            let sealed_ref = &sealed;
            let answer = self
                .authed(|access| async move { self.remote.put_keys(&access, sealed_ref).await })
                .await;
            match answer {
                Ok(()) => {
                    let mut replica = self.replica();
                    let rk = crate::crypto::RootKey::from_bytes(
                        replica
                            .keys
                            .as_ref()
                            .ok_or(HavenError::NotLoggedIn)?
                            .rk
                            .expose_secret(),
                    );
                    let mut batch = crate::local_store::WriteBatch::new();
                    replica.stage_account_keys(AccountKeys { rk, bundle, sealed }, &mut batch)?;
                    replica.stage_meta(&mut batch)?;
                    replica.commit(batch)?;
                    break;
                }
                Err(error)
                    if error.server_code() == Some(ErrorCode::VersionConflict)
                        && attempt < BUNDLE_CAS_ATTEMPTS =>
                {
                    self.refresh_bundle().await?;
                }
                Err(error) => return Err(error),
            }
        }
        let token = self
            .authed(|access| async move { self.remote.create_enrolment(&access).await })
            .await?;
        let payload = {
            let replica = self.replica();
            let keys = replica.keys.as_ref().ok_or(HavenError::NotLoggedIn)?;
            LinkGrant {
                root_key: crate::crypto::RootKey::from_bytes(keys.rk.expose_secret()),
                enrolment_token: zeroize::Zeroizing::new(token.enrolment_token),
                username,
            }
            .seal_for(invitation, replica.random.as_ref())?
        };
        let payload = LinkPayload {
            payload: Blob(payload),
        };
        let payload = &payload;
        let mailbox = &invitation.mailbox;
        self.authed(|access| async move { self.remote.put_link(&access, mailbox, payload).await })
            .await
            .map_err(|error| match error.server_code() {
                Some(ErrorCode::NotFound) => HavenError::Invalid(
                    "the link expired or was already used: start again on the new device".into(),
                ),
                _ => error,
            })
    }
}
