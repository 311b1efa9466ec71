//! Haven's client engine.
//!
//! - [`documents`]: typed views (hydrate / reconcile) over the Automerge documents every piece of
//!   user-visible data lives in.
//! - [`crypto`]: end-to-end encryption: the password and recovery-phrase key derivations, the
//!   account key bundle, and sealing / opening private envelopes.
//! - [`content`]: public content: parsing a content directory, the Ed25519 content key, planning
//!   a publish as signed envelopes, verifying public envelopes and materialising what they hold.
//! - [`local_store`]: the encrypted on-device store (redb), its platform key store and panic wipe.
//! - [`remote`]: the v1 server API as a trait; with feature `transport`, its HTTPS + WebSocket
//!   client (the one part of this crate that does network I/O).
//!
//! Everything here is sans-I/O and deterministic: time and randomness are passed in, so that
//! a publish is reproducible and the logic can be property-tested. The few functions that touch
//! the file system or the OS random source are thin wrappers, named as such.

// Cheap Argon2 parameters exist for debug test builds only; a release build must never have them.
#[cfg(all(feature = "insecure-fast-kdf", not(debug_assertions)))]
compile_error!("the `insecure-fast-kdf` feature is for debug test builds only; never ship it");

pub mod client;
pub mod content;
pub mod crypto;
pub mod documents;
pub mod env;
pub mod local_store;
pub mod remote;

pub use client::{Haven, HavenConfig, HavenError, HavenResult};

#[cfg(feature = "fuzzing")]
pub mod fuzzing;
