//! Small file-system helpers for the few files the store writes outside the engine.

use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::path::Path;

/// Suffix of the temporary file an atomic write goes through. Leftovers from a crash hold only
/// wrapped (or, for `keystore.key`, equally exposed) bytes; `wipe` removes them with everything.
pub(crate) const TMP_SUFFIX: &str = ".tmp";

/// Creates `dir` (and parents) if needed; a new profile directory is private to the user on unix.
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Writes `dir/name` so that a crash leaves either the old file, or the complete new one, never a
/// torn one: temp file, fsync, rename over, fsync the directory (so the rename itself is durable).
/// `private` makes the file mode 0600 on unix.
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8], private: bool) -> io::Result<()> {
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    let target = dir.join(name);
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let result = (|| {
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, &target)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        // Best effort: a failed write must not leave a half file behind for the next open.
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Makes directory-entry changes (create, rename, unlink) in `dir` durable. On unix a directory
/// is fsynced through a read-only handle; Windows has no equivalent and NTFS journals metadata.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Reads a whole file, `None` if it does not exist.
pub(crate) fn read_if_exists(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

/// Removes a file; a file that is already gone counts as removed (`Ok(false)`).
pub(crate) fn remove_if_exists(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(err),
    }
}
