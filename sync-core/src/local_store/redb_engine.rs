//! The on-device engine: one redb file, one table, every commit fsynced.

use std::ops::Bound;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use redb::{
    Database, Durability, ReadableDatabase as _, ReadableTableMetadata as _, TableDefinition,
    TableError,
};

use super::engine::{Engine, EngineError, FailPoint, Op, StoredRecord};

/// File name of the database inside the profile directory.
pub const DB_FILE_NAME: &str = "haven.redb";

/// The one table. Its name is the only plaintext string redb writes; it says nothing.
const RECORDS: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("records");

/// redb's page cache. Its default (1 GiB) is for servers; a journal's working set is small and
/// a phone's memory is not.
const CACHE_BYTES: usize = 16 * 1024 * 1024;

fn engine_error<E: Into<redb::Error>>(err: E) -> EngineError {
    match err.into() {
        redb::Error::DatabaseAlreadyOpen | redb::Error::LockProtocolMismatch => EngineError::InUse,
        redb::Error::Corrupted(message) => EngineError::Corrupted(message),
        // How redb reports a file that is not a redb database at all (bad magic number).
        redb::Error::Io(err) if err.kind() == std::io::ErrorKind::InvalidData => {
            EngineError::Corrupted(err.to_string())
        }
        other => EngineError::Backend(other.to_string()),
    }
}

/// [`Engine`] over redb: `Durability::Immediate` commits (redb's default, set explicitly so that
/// nobody relaxes it by accident), so a commit that returned `Ok` survives power loss.
pub struct RedbEngine {
    db: Database,
    path: PathBuf,
    commits: AtomicU64,
    fail: FailPoint,
}

impl std::fmt::Debug for RedbEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbEngine")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl RedbEngine {
    /// Opens (creating if needed) `dir/haven.redb`. redb locks the file, so a second opener, in
    /// this process or another, gets [`EngineError::InUse`].
    ///
    /// The open verifies every page checksum (`set_check_integrity_on_open`): redb documents that
    /// a plain open "may panic" on a file altered outside redb, and a panic on disk input is what
    /// the store must never do. The cost is one read of the file per open (measured in the tests).
    /// The open is also wrapped in `catch_unwind`, as a second line of defence.
    pub fn open(dir: &Path) -> Result<Self, EngineError> {
        let path = dir.join(DB_FILE_NAME);
        let mut builder = Database::builder();
        builder
            .set_cache_size(CACHE_BYTES)
            .set_check_integrity_on_open(true);
        let db = catch_unwind(AssertUnwindSafe(|| builder.create(&path)))
            .map_err(|_| EngineError::Corrupted("the database file could not be read".into()))?
            .map_err(engine_error)?;
        // redb creates the file with the process umask; the profile's files are the user's alone.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(
                |error| EngineError::Backend(format!("securing the database file: {error}")),
            )?;
        }
        let engine = Self {
            db,
            path,
            commits: AtomicU64::new(0),
            fail: FailPoint::default(),
        };
        engine.ensure_table()?;
        Ok(engine)
    }

    /// Creates the table on first open, so that readers can always open it. An existing file is
    /// left alone.
    fn ensure_table(&self) -> Result<(), EngineError> {
        let read = self.db.begin_read().map_err(engine_error)?;
        match read.open_table(RECORDS) {
            Ok(_) => return Ok(()),
            Err(TableError::TableDoesNotExist(_)) => {}
            Err(err) => return Err(engine_error(err)),
        }
        drop(read);
        let mut write = self.db.begin_write().map_err(engine_error)?;
        write
            .set_durability(Durability::Immediate)
            .map_err(engine_error)?;
        write.open_table(RECORDS).map_err(engine_error)?;
        write.commit().map_err(engine_error)
    }

    fn apply(
        table: &mut redb::Table<'_, &[u8], &[u8]>,
        ops: &[Op],
        fail_after: Option<usize>,
    ) -> Result<(), EngineError> {
        for (index, op) in ops.iter().enumerate() {
            if fail_after == Some(index) {
                return Err(EngineError::Injected);
            }
            match op {
                Op::Put { key, value } => {
                    table
                        .insert(key.as_slice(), value.as_slice())
                        .map_err(engine_error)?;
                }
                Op::Delete { key } => {
                    table.remove(key.as_slice()).map_err(engine_error)?;
                }
            }
        }
        match fail_after {
            Some(_) => Err(EngineError::Injected),
            None => Ok(()),
        }
    }
}

impl Engine for RedbEngine {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        let read = self.db.begin_read().map_err(engine_error)?;
        let table = read.open_table(RECORDS).map_err(engine_error)?;
        let value = table.get(key).map_err(engine_error)?;
        Ok(value.map(|guard| guard.value().to_vec()))
    }

    fn scan_table(&self, tag: u8) -> Result<Vec<StoredRecord>, EngineError> {
        let read = self.db.begin_read().map_err(engine_error)?;
        let table = read.open_table(RECORDS).map_err(engine_error)?;
        let start = [tag];
        let next = tag.checked_add(1).map(|next| [next]);
        let end = match &next {
            Some(next) => Bound::Excluded(&next[..]),
            None => Bound::Unbounded,
        };
        let range = table
            .range::<&[u8]>((Bound::Included(&start[..]), end))
            .map_err(engine_error)?;
        let mut out = Vec::new();
        for entry in range {
            let (key, value) = entry.map_err(engine_error)?;
            out.push((key.value().to_vec(), value.value().to_vec()));
        }
        Ok(out)
    }

    fn is_empty(&self) -> Result<bool, EngineError> {
        let read = self.db.begin_read().map_err(engine_error)?;
        let table = read.open_table(RECORDS).map_err(engine_error)?;
        table.is_empty().map_err(engine_error)
    }

    fn commit(&self, ops: Vec<Op>) -> Result<(), EngineError> {
        let mut write = self.db.begin_write().map_err(engine_error)?;
        write
            .set_durability(Durability::Immediate)
            .map_err(engine_error)?;
        let fail_after = self.fail.take();
        let applied = match write.open_table(RECORDS) {
            Ok(mut table) => Self::apply(&mut table, &ops, fail_after),
            Err(err) => Err(engine_error(err)),
        };
        if let Err(err) = applied {
            // Nothing of a failed batch may land: roll the whole transaction back.
            let _ = write.abort();
            return Err(err);
        }
        write.commit().map_err(engine_error)?;
        self.commits.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn flush(&self) -> Result<(), EngineError> {
        // Every commit is `Durability::Immediate`: there is nothing buffered to flush.
        Ok(())
    }

    fn commits(&self) -> u64 {
        self.commits.load(Ordering::SeqCst)
    }

    fn fail_commit_after(&self, ops: usize) {
        self.fail.arm(ops);
    }

    fn close(self: Box<Self>) -> Result<(), EngineError> {
        self.db.close().map_err(engine_error)
    }
}
