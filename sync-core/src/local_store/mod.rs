//! The encrypted local store of a device (DESIGN.md §4 "Local store", §6 panic wipe).
//!
//! First piece: the platform [`keystore`] that wraps the store's data key.

mod fsutil;
pub mod keystore;

pub use keystore::{FileKeyStore, KeyStore, KeyStoreError, MemoryKeyStore};
