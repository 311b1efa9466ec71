//! Haven's sync server: accounts and JWT auth, per-space append-only envelope logs with
//! server-assigned gap-free seqs, live heads over WebSocket, and signed public content.
//! See docs/ARCHITECTURE.md for the path of a request.

pub mod clock;
pub mod error;
pub mod store;
