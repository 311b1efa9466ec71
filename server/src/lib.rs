//! Haven's sync server: accounts and JWT auth, per-space append-only envelope logs with
//! server-assigned gap-free seqs, live heads over WebSocket, and signed public content.
//! See docs/ARCHITECTURE.md for the path of a request.

// The fast Argon2 parameters exist for tests only; a release build must never carry them.
#[cfg(all(feature = "insecure-fast-kdf", not(debug_assertions)))]
compile_error!(
    "the `insecure-fast-kdf` feature makes password hashes cheap to brute-force; it is for \
     debug test builds only and must not be enabled in a release build"
);

pub mod auth;
pub mod clock;
pub mod error;
pub mod store;
