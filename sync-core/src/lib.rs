//! Haven's client engine.
//!
//! - [`documents`]: typed views (hydrate / reconcile) over the Automerge documents every piece of
//!   user-visible data lives in.
//! - [`content`]: public content: parsing a content directory, the Ed25519 content key, planning
//!   a publish as signed envelopes, verifying public envelopes and materialising what they hold.
//! - [`local_store`]: the encrypted on-device store (redb), its platform key store and panic wipe.
//!
//! Everything here is sans-I/O and deterministic: time and randomness are passed in, so that
//! a publish is reproducible and the logic can be property-tested. The few functions that touch
//! the file system or the OS random source are thin wrappers, named as such.

pub mod content;
pub mod documents;
pub mod env;
pub mod local_store;
