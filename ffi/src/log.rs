//! An optional `Logger` the app installs to see what the library does in the background (live
//! sync rounds that failed, a listener that threw, a caught panic). Messages never hold journal
//! text, passwords, tokens or keys; they may hold ids, counts and error reasons.

use std::sync::{Arc, RwLock};

use crate::error::HavenFfiError;

/// How much a log line matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

/// Implemented by the app (Logcat, `os_log`, `logging`). Called on library threads, possibly
/// several at once; return quickly. What it throws is ignored.
#[uniffi::export(foreign)]
pub trait Logger: Send + Sync {
    fn log(&self, level: LogLevel, message: String) -> Result<(), HavenFfiError>;
}

static LOGGER: RwLock<Option<Arc<dyn Logger>>> = RwLock::new(None);

/// Installs (or, with `None`, removes) the process-wide logger.
#[uniffi::export]
pub fn set_logger(logger: Option<Arc<dyn Logger>>) {
    *LOGGER.write().unwrap_or_else(|poison| poison.into_inner()) = logger;
}

/// Sends a line to the app's logger, if any. Never called with a lock of the library held, and
/// the logger is called after the logger lock is released.
pub(crate) fn log(level: LogLevel, message: String) {
    let logger = LOGGER
        .read()
        .unwrap_or_else(|poison| poison.into_inner())
        .clone();
    if let Some(logger) = logger {
        // A logger that throws or panics is ignored: logging must never break the library.
        let _ =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| logger.log(level, message)));
    }
}
