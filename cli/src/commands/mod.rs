//! One module per command group.

pub(crate) mod account;
pub(crate) mod articles;
pub(crate) mod content;
pub(crate) mod devices;
pub(crate) mod journal;
pub(crate) mod resources;
pub(crate) mod sync;
pub(crate) mod wipe;
