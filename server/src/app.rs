//! Shared application state and the router.

use std::sync::Arc;

use axum::Router;
use tokio::sync::watch;

use crate::auth::AuthService;
use crate::clock::Clock;
use crate::group_commit::GroupCommit;
use crate::live_hub::LiveHub;
use crate::spaces::SpaceService;
use crate::storage_keys::StorageKeys;
use crate::store::Store;

/// HTTP-level settings.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub max_request_bytes: usize,
    pub ping_secs: u64,
    /// Clients announcing an older `major.minor.patch` get 426.
    pub min_client_version: (u64, u64, u64),
    /// Attempts per address per 15 minutes on unauthenticated endpoints that cost work
    /// (registration, prelogin, link mailboxes, public pushes).
    pub anonymous_attempts_per_address: u32,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_request_bytes: 16 * 1024 * 1024,
            ping_secs: 30,
            min_client_version: (0, 1, 0),
            anonymous_attempts_per_address: 300,
        }
    }
}

/// Everything a handler needs.
#[derive(Debug)]
pub struct App {
    pub store: Arc<dyn Store>,
    pub auth: AuthService,
    pub spaces: SpaceService,
    /// Wrapped storage keys and master-key rotation.
    pub keys: Arc<StorageKeys>,
    pub live: Arc<LiveHub>,
    pub commits: GroupCommit,
    pub clock: Arc<dyn Clock>,
    pub http: HttpConfig,
    /// Flips to `true` when the server begins shutting down; live sockets close on it.
    pub shutdown: watch::Receiver<bool>,
}

pub type AppState = Arc<App>;

/// The API router (the admin listener has its own, see `crate::metrics`).
pub fn router(state: AppState) -> Router {
    crate::routes::router(state)
}
