//! Wiping the other devices when the account is erased (opt-in, issue 7).
//!
//! A server could answer `account_erased` to any device to make it wipe itself, so a device
//! never wipes on the server's word alone. Turning the option on puts a random 32-byte *wipe
//! token* in the journal index's settings: it syncs to every device inside the encrypted index,
//! and the server never sees it. The erasing device reveals the token with the erasure request;
//! the server keeps it with the erased account's marker (`GET /v1/accounts/{user}/erasure`). A
//! device told its account was erased fetches that notice and wipes only if the token matches
//! its own copy (compared in constant time): proof that someone holding the account's keys
//! erased it and asked for this. The erasing device keeps its copy (the person is holding it).
//!
//! The core only decides ([`Haven::wipe_due`]); the host does the wipe (key first, then every
//! file), as for a panic wipe: the FFI after the round that learned it, the CLI likewise.

use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use super::Haven;
use super::error::{HavenError, HavenResult};
use super::records::CutOff;
use crate::documents::{DocType, JournalIndex, JournalIndexDoc};
use crate::env::random_array;
use crate::local_store::WriteBatch;

/// The journal index setting holding the wipe token (hex) while the option is on.
const WIPE_TOKEN_SETTING: &str = "wipe_devices_on_erasure";

impl Haven {
    /// Asks every device of the account to wipe itself when the account is erased (from
    /// another device). Needs an account; takes effect on a device once it has synced after
    /// this. Off again: the token is removed (devices that synced it keep honouring it only
    /// until they sync the removal).
    pub fn set_wipe_on_erasure(&self, on: bool) -> HavenResult<()> {
        if self.username().is_none() {
            return Err(HavenError::NotLoggedIn);
        }
        let token = on.then(|| {
            let bytes = haven_protocol::Bytes(random_array::<32>(self.replica().random.as_ref()));
            Zeroizing::new(bytes.to_hex())
        });
        let value = token.as_ref().map(|token| token.as_str());
        let mut replica = self.replica();
        let index = replica.singleton_id(DocType::JournalIndex)?;
        let changed = replica.edit::<JournalIndex, _>(
            index,
            Some(DocType::JournalIndex),
            |doc: &mut JournalIndexDoc, now| {
                doc.set_setting(WIPE_TOKEN_SETTING, value, now).map(|_| ())
            },
        )?;
        drop(replica);
        if changed {
            self.note_local_change();
        }
        Ok(())
    }

    /// Whether the account asks its devices to wipe themselves when it is erased.
    pub fn wipe_on_erasure(&self) -> HavenResult<bool> {
        Ok(self.account_wipe_token()?.is_some())
    }

    /// The account was erased from another device, which proved it and asked for this: the host
    /// must wipe this profile now.
    pub fn wipe_due(&self) -> bool {
        self.replica()
            .meta
            .account
            .as_ref()
            .is_some_and(|account| account.wipe_due)
    }

    /// The wipe token of this account's journal index, if the option is on.
    pub(crate) fn account_wipe_token(&self) -> HavenResult<Option<Zeroizing<[u8; 32]>>> {
        let mut replica = self.replica();
        let index = match replica.singleton_id(DocType::JournalIndex) {
            Ok(index) => index,
            Err(HavenError::NotLoggedIn) => return Ok(None),
            Err(error) => return Err(error),
        };
        let Some(index) = replica.read::<JournalIndex>(&index)? else {
            return Ok(None);
        };
        let Some(text) = index.settings.get(WIPE_TOKEN_SETTING) else {
            return Ok(None);
        };
        // A malformed token (another version, a damaged document) wipes nothing.
        Ok(haven_protocol::Bytes::<32>::from_hex(text).map(|token| Zeroizing::new(token.0)))
    }

    /// After the server said the account was erased: fetches the erasure notice and sets
    /// `wipe_due` when it carries this account's wipe token. Does nothing on the device that
    /// erased the account, without the option, or when the notice cannot be had (it is asked
    /// again after the next round that is refused the same way).
    pub(crate) async fn check_erasure_notice(&self) -> HavenResult<()> {
        let user = {
            let replica = self.replica();
            match &replica.meta.account {
                Some(account)
                    if account.cut_off == Some(CutOff::AccountErased)
                        && !account.erased_here
                        && !account.wipe_due =>
                {
                    account.user_id
                }
                _ => return Ok(()),
            }
        };
        let Some(expected) = self.account_wipe_token()? else {
            return Ok(());
        };
        let Some(notice) = self.remote.erasure_notice(&user).await? else {
            return Ok(());
        };
        let Some(revealed) = notice.wipe_token else {
            return Ok(());
        };
        if !bool::from(revealed.as_bytes().ct_eq(expected.as_slice())) {
            return Ok(());
        }
        let mut replica = self.replica();
        if let Some(account) = replica.meta.account.as_mut() {
            account.wipe_due = true;
        }
        let mut batch = WriteBatch::new();
        replica.stage_meta(&mut batch)?;
        replica.commit(batch)
    }
}
