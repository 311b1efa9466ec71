//! Fan-out of space heads and revocations to live sockets in this process.
//!
//! One `watch` channel per space with subscribers: a slow socket only ever sees the newest head,
//! so nothing queues up per connection. Revocations (a device revoked, an account erased, a
//! password reset) are broadcast so that the affected sockets close with code 4001.

use std::collections::HashMap;
use std::sync::Mutex;

use haven_protocol::{HexId, SpaceId, UserId};
use tokio::sync::{broadcast, watch};

/// Whose live sockets must close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    Sessions(Vec<HexId>),
    User(UserId),
}

#[derive(Debug)]
pub struct LiveHub {
    spaces: Mutex<HashMap<SpaceId, watch::Sender<u64>>>,
    revocations: broadcast::Sender<Revocation>,
    /// Where this instance's revocations also go, for the sockets of other instances (set by
    /// `crate::live_fanout` over PostgreSQL).
    relay: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<Revocation>>,
}

impl Default for LiveHub {
    fn default() -> Self {
        Self::new()
    }
}

impl LiveHub {
    pub fn new() -> Self {
        let (revocations, _) = broadcast::channel(256);
        Self {
            spaces: Mutex::new(HashMap::new()),
            revocations,
            relay: std::sync::OnceLock::new(),
        }
    }

    /// Subscribes to a space's head, starting from `current` if nobody watched it yet.
    pub fn subscribe(&self, space: SpaceId, current: u64) -> watch::Receiver<u64> {
        let mut spaces = self
            .spaces
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let sender = spaces
            .entry(space)
            .or_insert_with(|| watch::channel(current).0);
        sender.send_if_modified(|head| raise(head, current));
        sender.subscribe()
    }

    /// Announces a new durable head; heads only move forward.
    pub fn publish(&self, space: &SpaceId, head: u64) {
        let mut spaces = self
            .spaces
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if let Some(sender) = spaces.get(space) {
            if sender.receiver_count() == 0 {
                spaces.remove(space);
            } else {
                sender.send_if_modified(|current| raise(current, head));
            }
        }
    }

    pub fn revoke(&self, revocation: Revocation) {
        if let Some(relay) = self.relay.get() {
            // A closed relay only means the fan-out stopped (shutdown).
            let _ = relay.send(revocation.clone());
        }
        self.revoke_here(revocation);
    }

    /// Closes the affected sockets of this instance only (a revocation relayed from another).
    pub fn revoke_here(&self, revocation: Revocation) {
        // No receivers simply means no live sockets.
        let _ = self.revocations.send(revocation);
    }

    /// Sends every later [`LiveHub::revoke`] to `relay` as well; only the first relay is kept.
    pub fn set_relay(&self, relay: tokio::sync::mpsc::UnboundedSender<Revocation>) {
        let _ = self.relay.set(relay);
    }

    /// Spaces with live sockets on this instance, and the head each last saw.
    pub fn watched(&self) -> Vec<(SpaceId, u64)> {
        let spaces = self
            .spaces
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        spaces
            .iter()
            .filter(|(_, sender)| sender.receiver_count() > 0)
            .map(|(space, sender)| (*space, *sender.borrow()))
            .collect()
    }

    pub fn revocations(&self) -> broadcast::Receiver<Revocation> {
        self.revocations.subscribe()
    }
}

fn raise(current: &mut u64, candidate: u64) -> bool {
    if candidate > *current {
        *current = candidate;
        true
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn heads_only_move_forward_and_idle_spaces_are_dropped() {
        let hub = LiveHub::new();
        let mut rx = hub.subscribe(SpaceId::Public, 3);
        hub.publish(&SpaceId::Public, 5);
        rx.changed().await.unwrap();
        assert_eq!(*rx.borrow_and_update(), 5);
        hub.publish(&SpaceId::Public, 4);
        assert!(!rx.has_changed().unwrap());
        drop(rx);
        hub.publish(&SpaceId::Public, 6);
        assert!(hub.spaces.lock().unwrap().is_empty());
    }
}
