//! Panic wipe (DESIGN.md §6): one call, and nothing of the profile is readable any more.
//!
//! The order is the point. First the **key** goes: the platform key (`KeyStore::delete`), then the
//! wrapped data key file, and that unlink is made durable. From then on every record left on the
//! medium is ciphertext under a key that exists nowhere, which is the only guarantee that holds
//! on flash: wear levelling and copy-on-write file systems keep old blocks that no overwrite
//! reaches, so the wipe does not overwrite anything (it would cost time and prove nothing). Only
//! then are the files deleted, to leave no trace that a profile was there.

use std::fmt;
use std::fs;
use std::io;
use std::path::Path;

use super::DATA_KEY_FILE_NAME;
use super::fsutil::{self, TMP_SUFFIX};
use super::keystore::{FILE_KEYSTORE_NAME, KeyStore};
use super::redb_engine::DB_FILE_NAME;

/// What a wipe did. Everything is counted whether or not it was there before, so that a second
/// wipe of the same profile reports zeros and succeeds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WipeReport {
    /// `KeyStore::delete` succeeded (it is idempotent: also when there was no key).
    pub keystore_key_deleted: bool,
    /// `data-key.wrapped` existed and was deleted.
    pub data_key_file_removed: bool,
    /// Files (and directory entries) deleted from the profile directory, the key file included.
    pub files_removed: usize,
    /// The profile directory existed and was deleted.
    pub dir_removed: bool,
}

/// A wipe that could not do every step. It still did all the others (a panic wipe must go as far
/// as it can): see `report`, and call `wipe` again.
#[derive(Debug, thiserror::Error)]
pub struct WipeError {
    pub report: WipeReport,
    /// One line per failed step.
    pub failures: Vec<String>,
}

impl fmt::Display for WipeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the wipe did not finish ({} step(s) failed",
            self.failures.len()
        )?;
        if let Some(first) = self.failures.first() {
            write!(f, ", first: {first}")?;
        }
        f.write_str("); run it again")
    }
}

/// Names the store may leave in a profile directory.
fn is_profile_file(name: &str) -> bool {
    let base = name.strip_suffix(TMP_SUFFIX).unwrap_or(name);
    [DB_FILE_NAME, DATA_KEY_FILE_NAME, FILE_KEYSTORE_NAME].contains(&base)
}

/// Destroys the profile in `dir`: the platform key, then the wrapped data key, then every file,
/// then the directory. Works when the store cannot be opened (corrupt file, lost key), and is
/// idempotent (a missing directory is an already wiped one).
///
/// The [`LocalStore`](super::LocalStore) of this profile must be closed first (or use
/// [`LocalStore::wipe`](super::LocalStore::wipe), which closes and wipes). If it is still open,
/// on unix the files are unlinked anyway and the open handle writes on into an unnamed file under
/// a key that no longer exists; on Windows the open file cannot be deleted and the wipe reports it.
///
/// As a guard against a wrong path, a non-empty directory that holds none of the store's files
/// is refused (nothing is deleted there; the key store's key still is).
pub fn wipe(dir: &Path, keystore: &dyn KeyStore) -> Result<WipeReport, WipeError> {
    let mut report = WipeReport::default();
    let mut failures = Vec::new();

    // 1. The platform key: after this, no copy of the wrapped data key opens anywhere.
    match keystore.delete() {
        Ok(()) => report.keystore_key_deleted = true,
        Err(err) => failures.push(format!("deleting the key store's key: {err}")),
    }

    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return finish(report, failures),
        Err(err) => {
            failures.push(format!("listing {}: {err}", dir.display()));
            return finish(report, failures);
        }
    };
    let mut names = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) => names.push(entry),
            Err(err) => failures.push(format!("listing {}: {err}", dir.display())),
        }
    }
    let looks_like_profile = names
        .iter()
        .any(|entry| entry.file_name().to_str().is_some_and(is_profile_file));
    if !names.is_empty() && !looks_like_profile {
        failures.push(format!(
            "{} holds no Haven profile files; refusing to delete its contents",
            dir.display()
        ));
        return finish(report, failures);
    }

    // 2. The wrapped data key, durably, before anything else.
    for name in [
        DATA_KEY_FILE_NAME.to_owned(),
        format!("{DATA_KEY_FILE_NAME}{TMP_SUFFIX}"),
    ] {
        match fsutil::remove_if_exists(&dir.join(&name)) {
            Ok(removed) => {
                if removed {
                    report.files_removed += 1;
                    report.data_key_file_removed |= name == DATA_KEY_FILE_NAME;
                }
            }
            Err(err) => failures.push(format!("deleting {name}: {err}")),
        }
    }
    if let Err(err) = fsutil::sync_dir(dir) {
        failures.push(format!(
            "syncing {} after deleting the key: {err}",
            dir.display()
        ));
    }

    // 3. Everything else: entries the store did not make first, then its own files. Should a
    //    stray entry resist, the store's files stay (ciphertext under a key that no longer
    //    exists), so that a retry still recognises the directory as a profile and finishes.
    //    Entries are not followed: a symlink is removed, not its target.
    let (own, stray): (Vec<_>, Vec<_>) = names
        .into_iter()
        .partition(|entry| entry.file_name().to_str().is_some_and(is_profile_file));
    let failures_before = failures.len();
    for entry in stray {
        remove_entry(&entry, &mut report, &mut failures);
    }
    if failures.len() == failures_before {
        for entry in own {
            remove_entry(&entry, &mut report, &mut failures);
        }
    }

    // 4. The directory itself.
    match fs::remove_dir(dir) {
        Ok(()) => report.dir_removed = true,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => failures.push(format!("deleting {}: {err}", dir.display())),
    }
    finish(report, failures)
}

fn remove_entry(entry: &fs::DirEntry, report: &mut WipeReport, failures: &mut Vec<String>) {
    let path = entry.path();
    let is_dir = entry.file_type().map(|kind| kind.is_dir()).unwrap_or(false);
    let result = if is_dir {
        fs::remove_dir_all(&path).map(|()| true)
    } else {
        fsutil::remove_if_exists(&path)
    };
    match result {
        Ok(true) => report.files_removed += 1,
        Ok(false) => {}
        Err(err) => failures.push(format!("deleting {}: {err}", path.display())),
    }
}

fn finish(report: WipeReport, failures: Vec<String>) -> Result<WipeReport, WipeError> {
    if failures.is_empty() {
        Ok(report)
    } else {
        Err(WipeError { report, failures })
    }
}
