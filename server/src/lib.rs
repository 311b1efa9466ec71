//! Haven's sync server: accounts and JWT auth, per-space append-only envelope logs with
//! server-assigned gap-free seqs, live heads over WebSocket, and signed public content.
//! See docs/ARCHITECTURE.md for the path of a request.

// Cheap Argon2 parameters exist for debug test builds only; a release build must never have them.
#[cfg(all(feature = "insecure-fast-kdf", not(debug_assertions)))]
compile_error!("the `insecure-fast-kdf` feature is for debug test builds only; never ship it");

pub mod account_seal;
pub mod app;
pub mod auth;
pub mod clock;
pub mod compact_cli;
pub mod config;
pub mod error;
pub mod group_commit;
pub mod heap_trim;
pub mod keys_cli;
pub mod live_fanout;
pub mod live_hub;
pub mod master_key;
pub mod metrics;
pub mod migrate_cli;
pub mod public_content;
pub mod routes;
pub mod server;
pub mod spaces;
pub mod storage_keys;
pub mod storage_seal;
pub mod store;
