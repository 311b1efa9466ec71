//! The account's devices: what the server knows (last seen, revoked) joined with what only the
//! devices know (names, inside the sealed key bundle).

use haven_protocol::DeviceId;
use serde::{Deserialize, Serialize};

use super::Haven;
use super::error::{HavenError, HavenResult};
use super::records::{self, META_DEVICE_ALERTS};
use crate::local_store::Table;

/// A device that joined the account after this one: someone who has the password (or another
/// device to approve a link) added it. Kept until dismissed, so the person sees it even if the
/// sync that found it ran in the background; if it is not theirs, they revoke it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceJoined {
    pub device_id: DeviceId,
    /// The name it was given (from the verified key bundle).
    pub name: String,
    /// When it was added, Unix ms, by the adding device's clock.
    pub added_at_ms: i64,
}

/// One device of the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSummary {
    pub device_id: DeviceId,
    /// The name its user gave it (from the key bundle; the server never sees it). Empty when the
    /// bundle does not list the device — a device the server knows but the account never added.
    pub name: String,
    /// Day it joined, `YYYY-MM-DD` (the server keeps days only).
    pub created_day: String,
    /// Day it was last seen by the server, `YYYY-MM-DD`.
    pub last_seen_day: String,
    pub revoked: bool,
    /// This device.
    pub current: bool,
    /// Listed in the account's key bundle (it holds the keys).
    pub in_bundle: bool,
}

impl Haven {
    /// The account's devices, this one included. Needs the server (it knows who was seen when);
    /// names come from the account's key bundle, fetched and verified first.
    pub async fn devices(&self) -> HavenResult<Vec<DeviceSummary>> {
        // A device that joined since this one last looked changed the bundle: read it first.
        self.refresh_bundle().await?;
        let listed = self
            .authed(|access| async move { self.remote.devices(&access).await })
            .await?;
        let replica = self.replica();
        let keys = replica.keys.as_ref().ok_or(HavenError::NotLoggedIn)?;
        let mut out: Vec<DeviceSummary> = listed
            .devices
            .into_iter()
            .map(|device| {
                let record = keys.bundle.device(&device.device_id);
                DeviceSummary {
                    name: record.map(|record| record.name.clone()).unwrap_or_default(),
                    in_bundle: record.is_some_and(|record| record.revoked_at_ms.is_none()),
                    revoked: device.revoked
                        || record.is_some_and(|record| record.revoked_at_ms.is_some()),
                    current: device.device_id == replica.device_id(),
                    device_id: device.device_id,
                    created_day: device.created_day,
                    last_seen_day: device.last_seen_day,
                }
            })
            .collect();
        out.sort_by(|a, b| {
            b.current
                .cmp(&a.current)
                .then_with(|| a.created_day.cmp(&b.created_day))
        });
        Ok(out)
    }
}

impl Haven {
    /// Devices that joined the account since the alerts were last dismissed (oldest first). Each
    /// full sync round reads the account's key bundle and adds any device new to this one.
    pub fn device_alerts(&self) -> HavenResult<Vec<DeviceJoined>> {
        Ok(records::load(
            &self.replica().store,
            Table::Meta,
            META_DEVICE_ALERTS,
            "device alerts",
        )?
        .unwrap_or_default())
    }

    /// Forgets the alerts (the person has seen them).
    pub fn dismiss_device_alerts(&self) -> HavenResult<()> {
        Ok(self
            .replica()
            .store
            .delete(Table::Meta, META_DEVICE_ALERTS)?)
    }
}
