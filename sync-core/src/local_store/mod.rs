//! The encrypted local store of a device (DESIGN.md §4 "Local store", §6 panic wipe).
//!
//! Everything the core keeps on a device — Automerge documents, keys, the outbox, sync cursors —
//! goes through [`LocalStore`]: a small typed table API over an ordered key-value engine, where
//! every record is encrypted with a data key that the platform key store wraps (see [`cipher`]
//! for the record format, [`keystore`] for the wrapping, [`wipe()`] for destruction).
//!
//! # A profile on disk
//! ```text
//! <profile dir>/            mode 0700 on unix; created by `LocalStore::open`
//!   haven.redb              the engine file: opaque 17-byte keys, sealed values, nothing else
//!   data-key.wrapped        "HAVENDK1" ‖ key verifier (16) ‖ the data key as wrapped by the
//!                           KeyStore; written once, atomically (temp file, fsync, rename, fsync
//!                           dir). The verifier (HKDF of the key) catches a key store that
//!                           returns a wrong key before the database is opened.
//!   keystore.key            only with FileKeyStore (the CLI): its wrapping key, mode 0600
//!   *.tmp                   only transiently, during an atomic write
//! ```
//!
//! # Why redb (decision; copied into docs/ARCHITECTURE.md)
//! The on-device engine is **redb** (4.x), not sled and not SQLite:
//! - "No local edit may ever be lost" needs a commit that is durable when it returns. redb commits
//!   with `Durability::Immediate` by default: an fsync (`F_FULLFSYNC` on Apple platforms, through
//!   std's `sync_all`), two checksummed commit slots, and crash-consistency tests with a simulated
//!   crash backend plus a fuzzer with injected I/O failures. Its file format is declared stable.
//!   It is pure Rust, so it cross-compiles to every Android ABI and iOS target with no C toolchain,
//!   and it locks the file, so a second process gets a clear "already open" error instead of
//!   silently corrupting it.
//! - **sled 0.34** is not durable against power loss: `flush()` uses `sync_file_range` on Linux,
//!   which flushes neither the drive cache nor metadata (sled#1452, open), it has reported
//!   corruption after unclean stops with no repair tool, its format is slated to change, and it
//!   has had no release for years. The server keeps it behind its own store trait; the device
//!   does not use it.
//! - **SQLite** (WAL, `synchronous=FULL`) would be a fine choice — the best-tested embedded store
//!   there is — but it is a C library to build for every ABI (or SQLCipher, more C), and our
//!   records are opaque encrypted blobs under keyed hashes, so its query engine would go unused.
//!   redb gives the same durability contract in pure Rust.
//!
//! The engine sits behind the [`Engine`] trait with one conformance suite (`tests.rs`), so
//! swapping it stays a local change.
//!
//! # Commits
//! [`LocalStore::commit`] applies a [`WriteBatch`] atomically and returns when it is durable.
//! Concurrent commits are merged into one transaction and one fsync (leader/follower group
//! commit, see `group.rs`).
//!
//! # Corruption policy
//! A record whose MAC fails (flipped bits, a value moved from another record, a foreign key) is
//! never returned and never panics: [`LocalStore::get`] answers [`LocalStoreError::Corrupt`] for
//! it, and [`LocalStore::scan`] **skips and reports** it — the good records come back in
//! [`Scan::entries`] and the bad ones are listed in [`Scan::corrupt`]. A journal with one
//! damaged entry must still show every other entry (refusing the whole table would lose more
//! than the damage did), but the caller is told, so it can re-fetch from the server or tell the
//! user; [`Scan::into_entries_strict`] turns any corruption into an error for callers that need
//! all or nothing. Corrupt records are left where they are: the store deletes nothing on its own.
//! A database file that fails redb's own checksums does not open
//! ([`LocalStoreError::StoreFileCorrupt`]); the app offers a wipe and a restore from the server.

pub mod cipher;
pub mod engine;
mod fsutil;
mod group;
pub mod keystore;
pub mod redb_engine;
pub mod wipe;

#[cfg(test)]
mod tests;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use zeroize::Zeroizing;

use crate::env::Random;
use cipher::{DataKey, StoreCipher, VERIFIER_LEN};
pub use engine::{Engine, EngineError, MemoryEngine, Op, StoredRecord};
use group::GroupCommit;
pub use keystore::{FileKeyStore, KeyStore, KeyStoreError, MemoryKeyStore};
pub use redb_engine::{DB_FILE_NAME, RedbEngine};
pub use wipe::{WipeError, WipeReport, wipe};

/// File name of the wrapped data key inside the profile directory.
pub const DATA_KEY_FILE_NAME: &str = "data-key.wrapped";
/// Magic and version at the start of `data-key.wrapped`.
const DATA_KEY_MAGIC: &[u8] = b"HAVENDK1";

/// Longest logical key. Keys are ids (document, envelope, space, counters), never content.
pub const MAX_KEY_LEN: usize = 4096;
/// Largest value: far above any document save, well below redb's 3 GiB limit, and a bound on
/// what one record costs in memory while sealed or opened.
pub const MAX_VALUE_LEN: usize = 256 * 1024 * 1024;

/// Table tag of the store's own records (not a [`Table`]): the key-check record.
const INTERNAL_TAG: u8 = 0;
const CHECK_KEY: &[u8] = b"key-check";
const CHECK_VALUE: &[u8] = b"haven local store v1";

/// The store's tables. Each is a separate key space: the same logical key in two tables names
/// two records. The tag of each is part of the on-disk format and must never change; new tables
/// take new tags (tag 0 is the store's own, 10 and up are free).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// Small store-wide facts owned by the app: account and device ids, schema versions, the
    /// local-only journal mode flag, settings that must survive a restart.
    Meta,
    /// Key material: the device's X25519/Ed25519 keys, the account root key and space epoch keys
    /// (or the local `RK` in local-only mode), the current key bundle. The most sensitive table;
    /// encrypted at rest like the others, and only ever decrypted in memory.
    Keys,
    /// The latest compacted Automerge `save()` of each document, keyed by document id.
    Documents,
    /// Automerge changes not yet folded into `Documents`, keyed by document id ‖ change hash:
    /// each editing burst is durable without rewriting the whole document.
    DocumentChanges,
    /// Per-document summaries for list views (title, dates, mood, tags), so that listing the
    /// journal does not load every document.
    Summaries,
    /// Sealed envelopes waiting for the server's ack, keyed by space ‖ device counter; an entry
    /// is deleted only when acked, so a crash or kill never loses an edit.
    Outbox,
    /// Per-space pull position: last seq, the envelope id at it, the server head last seen.
    Cursors,
    /// Monotonic counters, e.g. the device's envelope counter per space. Commit a counter in the
    /// same batch as the outbox entry that uses it, so a crash cannot reuse a value.
    Counters,
    /// Envelope ids already applied and the highest counter seen per (space, device): dedup of
    /// replays and detection of gaps.
    Seen,
}

impl Table {
    /// Every table, in tag order.
    pub const ALL: [Table; 9] = [
        Table::Meta,
        Table::Keys,
        Table::Documents,
        Table::DocumentChanges,
        Table::Summaries,
        Table::Outbox,
        Table::Cursors,
        Table::Counters,
        Table::Seen,
    ];

    /// The on-disk tag (first byte of every stored key).
    pub const fn tag(self) -> u8 {
        match self {
            Table::Meta => 1,
            Table::Keys => 2,
            Table::Documents => 3,
            Table::DocumentChanges => 4,
            Table::Summaries => 5,
            Table::Outbox => 6,
            Table::Cursors => 7,
            Table::Counters => 8,
            Table::Seen => 9,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Table::Meta => "meta",
            Table::Keys => "keys",
            Table::Documents => "documents",
            Table::DocumentChanges => "document_changes",
            Table::Summaries => "summaries",
            Table::Outbox => "outbox",
            Table::Cursors => "cursors",
            Table::Counters => "counters",
            Table::Seen => "seen",
        }
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a store operation failed. Messages name files and tables, never contents or keys.
#[derive(Debug, thiserror::Error)]
pub enum LocalStoreError {
    /// The profile is open already: by another process, or by another `LocalStore` in this one.
    #[error(
        "the profile at {} is already open (by another process, or another LocalStore in this \
         process); close that one first",
        dir.display()
    )]
    ProfileInUse { dir: PathBuf },
    /// The platform key store failed; see the variant for what the app should do.
    #[error(transparent)]
    KeyStore(#[from] KeyStoreError),
    /// The key store returned a key that does not open this store (not 32 bytes, or not the key
    /// the store was made with), or the store's check record is damaged. Caught by the verifier
    /// in `data-key.wrapped` before the database is opened, so nothing on disk was changed.
    #[error("the data key does not open this store")]
    WrongDataKey,
    /// The profile holds records but its wrapped data key is gone (an interrupted wipe, or the
    /// file was deleted): the records can never be read. Wipe the profile.
    #[error(
        "the profile at {} has records but no {DATA_KEY_FILE_NAME}; it cannot be read and \
         should be wiped",
        dir.display()
    )]
    DataKeyMissing { dir: PathBuf },
    /// `data-key.wrapped` is not in the store's format.
    #[error("{} is not a wrapped data key file", path.display())]
    DataKeyFileCorrupt { path: PathBuf },
    /// A record of `table` failed authentication: corrupted or tampered with. It is not returned.
    #[error("a record in table {table} failed authentication (corrupted or tampered with)")]
    Corrupt { table: Table },
    /// The database file failed the engine's own checks and cannot be opened.
    #[error("the database file is corrupted: {reason}")]
    StoreFileCorrupt { reason: String },
    #[error("a key of {len} bytes for table {table} is longer than {MAX_KEY_LEN}")]
    KeyTooLong { table: Table, len: usize },
    #[error("a value of {len} bytes for table {table} is larger than {MAX_VALUE_LEN}")]
    ValueTooLarge { table: Table, len: usize },
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The engine failed (I/O error, full disk). Nothing of the failed commit was written.
    #[error("storage engine failure: {0}")]
    Engine(EngineError),
}

impl From<EngineError> for LocalStoreError {
    fn from(err: EngineError) -> Self {
        match err {
            EngineError::Corrupted(reason) => Self::StoreFileCorrupt { reason },
            other => Self::Engine(other),
        }
    }
}

fn io_error(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> LocalStoreError {
    let path = path.to_owned();
    move |source| LocalStoreError::Io { op, path, source }
}

/// Changes to apply together: all of them land, or none.
#[derive(Default)]
pub struct WriteBatch {
    ops: Vec<BatchOp>,
}

enum BatchOp {
    Put {
        table: Table,
        key: Vec<u8>,
        value: Zeroizing<Vec<u8>>,
    },
    Delete {
        table: Table,
        key: Vec<u8>,
    },
}

impl fmt::Debug for WriteBatch {
    // Plaintext lives here until the commit seals it: print only the shape.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WriteBatch({} ops)", self.ops.len())
    }
}

impl WriteBatch {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` in `table` to `value`. Later operations on the same key win.
    pub fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> &mut Self {
        self.ops.push(BatchOp::Put {
            table,
            key: key.to_vec(),
            value: Zeroizing::new(value.to_vec()),
        });
        self
    }

    /// Removes `key` from `table` (nothing happens if it is absent).
    pub fn delete(&mut self, table: Table, key: &[u8]) -> &mut Self {
        self.ops.push(BatchOp::Delete {
            table,
            key: key.to_vec(),
        });
        self
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// A record that failed authentication during a scan, identified by its stored (hashed) key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptRecord {
    pub table: Table,
    pub stored_key: Vec<u8>,
}

/// A record as the store returns it: (logical key, value).
pub type Entry = (Vec<u8>, Zeroizing<Vec<u8>>);

/// The result of [`LocalStore::scan`]: the good records, sorted by logical key, and the records
/// that failed authentication (skipped, see the corruption policy in the module docs).
pub struct Scan {
    pub entries: Vec<Entry>,
    pub corrupt: Vec<CorruptRecord>,
}

impl fmt::Debug for Scan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scan")
            .field("entries", &self.entries.len())
            .field("corrupt", &self.corrupt)
            .finish()
    }
}

impl Scan {
    /// The entries, or [`LocalStoreError::Corrupt`] if any record was skipped.
    pub fn into_entries_strict(self) -> Result<Vec<Entry>, LocalStoreError> {
        match self.corrupt.first() {
            Some(record) => Err(LocalStoreError::Corrupt {
                table: record.table,
            }),
            None => Ok(self.entries),
        }
    }
}

/// Counters for tests and diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreStats {
    /// Batches handed to the engine through [`LocalStore::commit`].
    pub batches: u64,
    /// Engine commits (with redb: fsynced transactions) made by this handle, the open included.
    pub engine_commits: u64,
}

/// Profiles open in this process. redb's file lock already refuses a second open on Linux (OFD
/// locks), but POSIX record locks on other unixes are per process and would let a second open in
/// the same process through; this registry makes the answer the same everywhere, and it is taken
/// before anything in the directory is read or written.
static OPEN_PROFILES: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

struct ProfileGuard(PathBuf);

impl ProfileGuard {
    fn acquire(dir: &Path) -> Option<Self> {
        let mut open = OPEN_PROFILES
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if open.iter().any(|held| held == dir) {
            return None;
        }
        open.push(dir.to_owned());
        Some(Self(dir.to_owned()))
    }
}

impl Drop for ProfileGuard {
    fn drop(&mut self) {
        let mut open = OPEN_PROFILES
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        open.retain(|held| held != &self.0);
    }
}

enum Location {
    Memory,
    Dir {
        dir: PathBuf,
        keystore: Arc<dyn KeyStore>,
    },
}

/// The encrypted local store. `Send + Sync`: share it (e.g. in an `Arc`) and commit from any
/// thread; concurrent commits are grouped.
pub struct LocalStore {
    // Field order is drop order: the engine (and its file lock) goes before the in-process guard,
    // so that when the guard says "closed", reopening cannot hit the engine's lock.
    engine: Box<dyn Engine>,
    cipher: StoreCipher,
    random: Arc<dyn Random>,
    group: GroupCommit,
    location: Location,
    _guard: Option<ProfileGuard>,
}

impl fmt::Debug for LocalStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("LocalStore");
        match &self.location {
            Location::Memory => s.field("location", &"memory"),
            Location::Dir { dir, .. } => s.field("dir", dir),
        };
        s.field("engine", &self.engine).finish_non_exhaustive()
    }
}

impl LocalStore {
    /// Opens the profile in `dir`, creating the directory and the data key on first open.
    ///
    /// Later opens read `data-key.wrapped`, have `keystore` unwrap it and check the result
    /// against the verifier *before* the database is touched, so a key-store failure, a wrong
    /// platform key or a wrong unwrapped key returns a typed error and changes nothing on disk.
    /// A second open of the same profile, from this process or another, gets
    /// [`LocalStoreError::ProfileInUse`].
    pub fn open(
        dir: &Path,
        keystore: Arc<dyn KeyStore>,
        random: Arc<dyn Random>,
    ) -> Result<Self, LocalStoreError> {
        fsutil::create_private_dir(dir).map_err(io_error("create", dir))?;
        let canonical = dir.canonicalize().map_err(io_error("resolve", dir))?;
        let guard =
            ProfileGuard::acquire(&canonical).ok_or_else(|| LocalStoreError::ProfileInUse {
                dir: dir.to_owned(),
            })?;

        let key_path = dir.join(DATA_KEY_FILE_NAME);
        // The wrapped key is written once, atomically, and never changed, so it can be read
        // before taking the engine's lock.
        let existing = match read_key_file(&key_path)? {
            Some(file) => Some(unwrap_data_key(keystore.as_ref(), file)?),
            None => None,
        };

        let engine = RedbEngine::open(dir).map_err(|err| match err {
            EngineError::InUse => LocalStoreError::ProfileInUse {
                dir: dir.to_owned(),
            },
            other => other.into(),
        })?;

        let (data_key, created) = match existing {
            Some(data_key) => (data_key, false),
            // Under the engine's lock now: another process may have created the profile
            // between our read and our lock, so look again before making a key.
            None => match read_key_file(&key_path)? {
                Some(file) => (unwrap_data_key(keystore.as_ref(), file)?, false),
                None => {
                    if !engine.is_empty()? {
                        return Err(LocalStoreError::DataKeyMissing {
                            dir: dir.to_owned(),
                        });
                    }
                    (
                        create_data_key(dir, keystore.as_ref(), random.as_ref())?,
                        true,
                    )
                }
            },
        };

        let store = Self {
            engine: Box::new(engine),
            cipher: StoreCipher::new(&data_key),
            random,
            group: GroupCommit::default(),
            location: Location::Dir {
                dir: dir.to_owned(),
                keystore,
            },
            _guard: Some(guard),
        };
        store.verify_or_init_check(created)?;
        Ok(store)
    }

    /// A store that lives only in memory (tests, and a session that must leave no files), with
    /// a fresh random data key.
    pub fn open_in_memory(random: Arc<dyn Random>) -> Self {
        Self::with_engine(Box::new(MemoryEngine::new()), random)
    }

    /// A store over any engine (in memory: nothing is wrapped or written outside the engine).
    pub(crate) fn with_engine(engine: Box<dyn Engine>, random: Arc<dyn Random>) -> Self {
        let data_key = DataKey::generate(random.as_ref());
        Self {
            engine,
            cipher: StoreCipher::new(&data_key),
            random,
            group: GroupCommit::default(),
            location: Location::Memory,
            _guard: None,
        }
    }

    /// Checks that the data key opens this store's check record; writes the record into a store
    /// that has none and no other record (a new profile, or one whose first open crashed
    /// between writing the key file and this commit).
    fn verify_or_init_check(&self, created: bool) -> Result<(), LocalStoreError> {
        let stored_key = self.cipher.stored_key(INTERNAL_TAG, CHECK_KEY);
        match self.engine.get(&stored_key)? {
            Some(stored) => match self.cipher.open(&stored_key, &stored) {
                Ok((_, value)) if value.as_slice() == CHECK_VALUE => Ok(()),
                _ => Err(LocalStoreError::WrongDataKey),
            },
            None if created || self.engine.is_empty()? => {
                let value =
                    self.cipher
                        .seal(self.random.as_ref(), &stored_key, CHECK_KEY, CHECK_VALUE);
                self.engine.commit(vec![Op::Put {
                    key: stored_key,
                    value,
                }])?;
                Ok(())
            }
            None => Err(LocalStoreError::WrongDataKey),
        }
    }

    /// The value of `key` in `table`, or `None`. A record that fails authentication is
    /// [`LocalStoreError::Corrupt`], never returned.
    pub fn get(
        &self,
        table: Table,
        key: &[u8],
    ) -> Result<Option<Zeroizing<Vec<u8>>>, LocalStoreError> {
        check_key(table, key)?;
        let stored_key = self.cipher.stored_key(table.tag(), key);
        let Some(stored) = self.engine.get(&stored_key)? else {
            return Ok(None);
        };
        match self.cipher.open(&stored_key, &stored) {
            Ok((logical, value)) if logical == key => Ok(Some(value)),
            _ => Err(LocalStoreError::Corrupt { table }),
        }
    }

    /// Every record of `table`, sorted by logical key; records that fail authentication are
    /// skipped and listed in [`Scan::corrupt`].
    pub fn scan(&self, table: Table) -> Result<Scan, LocalStoreError> {
        let mut entries = Vec::new();
        let mut corrupt = Vec::new();
        for (stored_key, stored) in self.engine.scan_table(table.tag())? {
            match self.cipher.open(&stored_key, &stored) {
                Ok(entry) => entries.push(entry),
                Err(_) => corrupt.push(CorruptRecord { table, stored_key }),
            }
        }
        // Stored keys are hashes, so engine order is random; callers want logical order.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Scan { entries, corrupt })
    }

    /// Applies `batch` atomically; returns once it is durable. Concurrent calls share one
    /// engine transaction (group commit). An invalid batch (key or value too long) is refused
    /// whole, before anything is written.
    pub fn commit(&self, batch: WriteBatch) -> Result<(), LocalStoreError> {
        for op in &batch.ops {
            match op {
                BatchOp::Put { table, key, value } => {
                    check_key(*table, key)?;
                    if value.len() > MAX_VALUE_LEN {
                        return Err(LocalStoreError::ValueTooLarge {
                            table: *table,
                            len: value.len(),
                        });
                    }
                }
                BatchOp::Delete { table, key } => check_key(*table, key)?,
            }
        }
        if batch.is_empty() {
            return Ok(());
        }
        let ops = batch
            .ops
            .iter()
            .map(|op| match op {
                BatchOp::Put { table, key, value } => {
                    let stored_key = self.cipher.stored_key(table.tag(), key);
                    let value = self
                        .cipher
                        .seal(self.random.as_ref(), &stored_key, key, value);
                    Op::Put {
                        key: stored_key,
                        value,
                    }
                }
                BatchOp::Delete { table, key } => Op::Delete {
                    key: self.cipher.stored_key(table.tag(), key),
                },
            })
            .collect();
        self.group.commit(self.engine.as_ref(), ops)?;
        Ok(())
    }

    /// One put, committed on its own (shorthand for a one-op batch).
    pub fn put(&self, table: Table, key: &[u8], value: &[u8]) -> Result<(), LocalStoreError> {
        let mut batch = WriteBatch::new();
        batch.put(table, key, value);
        self.commit(batch)
    }

    /// One delete, committed on its own.
    pub fn delete(&self, table: Table, key: &[u8]) -> Result<(), LocalStoreError> {
        let mut batch = WriteBatch::new();
        batch.delete(table, key);
        self.commit(batch)
    }

    /// A durability barrier. Every successful commit is durable already; this exists for
    /// callers (and engines) that want an explicit one.
    pub fn flush(&self) -> Result<(), LocalStoreError> {
        Ok(self.engine.flush()?)
    }

    pub fn stats(&self) -> StoreStats {
        StoreStats {
            batches: self.group.batches(),
            engine_commits: self.engine.commits(),
        }
    }

    /// The profile directory, `None` in memory.
    pub fn dir(&self) -> Option<&Path> {
        match &self.location {
            Location::Memory => None,
            Location::Dir { dir, .. } => Some(dir),
        }
    }

    /// Closes the engine, reporting errors that a drop would swallow. The data key is zeroised
    /// as the store is dropped.
    pub fn close(self) -> Result<(), LocalStoreError> {
        let Self { engine, _guard, .. } = self;
        let result = engine.close();
        drop(_guard);
        Ok(result?)
    }

    /// Closes the store and wipes its profile (see [`wipe()`]): the platform key, the wrapped
    /// data key, every file, the directory. The wipe runs even if closing fails. An in-memory
    /// store is simply dropped, its key zeroised.
    pub fn wipe(self) -> Result<WipeReport, WipeError> {
        let Self {
            engine,
            location,
            _guard,
            ..
        } = self;
        let closed = engine.close();
        match location {
            Location::Memory => Ok(WipeReport::default()),
            Location::Dir { dir, keystore } => {
                let result = wipe::wipe(&dir, keystore.as_ref());
                drop(_guard);
                match (result, closed) {
                    (Err(mut err), Err(close)) => {
                        err.failures.push(format!("closing the database: {close}"));
                        Err(err)
                    }
                    (result, _) => result,
                }
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn engine(&self) -> &dyn Engine {
        self.engine.as_ref()
    }

    #[cfg(test)]
    pub(crate) fn queued_batches(&self) -> usize {
        self.group.queued()
    }

    /// Replaces the engine with a wrapper of it (tests: gates and fault injection).
    #[cfg(test)]
    pub(crate) fn map_engine(self, wrap: impl FnOnce(Box<dyn Engine>) -> Box<dyn Engine>) -> Self {
        let Self {
            engine,
            cipher,
            random,
            group,
            location,
            _guard,
        } = self;
        Self {
            engine: wrap(engine),
            cipher,
            random,
            group,
            location,
            _guard,
        }
    }
}

fn check_key(table: Table, key: &[u8]) -> Result<(), LocalStoreError> {
    if key.len() > MAX_KEY_LEN {
        return Err(LocalStoreError::KeyTooLong {
            table,
            len: key.len(),
        });
    }
    Ok(())
}

/// The contents of `data-key.wrapped`.
struct KeyFile {
    verifier: Vec<u8>,
    wrapped: Vec<u8>,
}

/// Reads `data-key.wrapped`, `None` if there is no such file.
fn read_key_file(path: &Path) -> Result<Option<KeyFile>, LocalStoreError> {
    let Some(bytes) = fsutil::read_if_exists(path).map_err(io_error("read", path))? else {
        return Ok(None);
    };
    let corrupt = || LocalStoreError::DataKeyFileCorrupt {
        path: path.to_owned(),
    };
    let rest = bytes.strip_prefix(DATA_KEY_MAGIC).ok_or_else(corrupt)?;
    if rest.len() <= VERIFIER_LEN {
        return Err(corrupt());
    }
    let (verifier, wrapped) = rest.split_at(VERIFIER_LEN);
    Ok(Some(KeyFile {
        verifier: verifier.to_vec(),
        wrapped: wrapped.to_vec(),
    }))
}

/// Has the key store unwrap the data key, and checks it against the verifier.
fn unwrap_data_key(keystore: &dyn KeyStore, file: KeyFile) -> Result<DataKey, LocalStoreError> {
    let unwrapped = Zeroizing::new(keystore.unwrap(file.wrapped)?);
    match DataKey::from_unwrapped(unwrapped) {
        Some(key) if key.matches(&file.verifier) => Ok(key),
        _ => Err(LocalStoreError::WrongDataKey),
    }
}

/// Makes the profile's data key and stores it wrapped. The key file is durable before any
/// record is sealed under the key, so no record can outlive the only copy of its key.
fn create_data_key(
    dir: &Path,
    keystore: &dyn KeyStore,
    random: &dyn Random,
) -> Result<DataKey, LocalStoreError> {
    let data_key = DataKey::generate(random);
    let wrapped = keystore.wrap(data_key.to_vec())?;
    let mut file = Vec::with_capacity(DATA_KEY_MAGIC.len() + VERIFIER_LEN + wrapped.len());
    file.extend_from_slice(DATA_KEY_MAGIC);
    file.extend_from_slice(&data_key.verifier());
    file.extend_from_slice(&wrapped);
    fsutil::write_atomic(dir, DATA_KEY_FILE_NAME, &file, true)
        .map_err(io_error("write", &dir.join(DATA_KEY_FILE_NAME)))?;
    Ok(data_key)
}
