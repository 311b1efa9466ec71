//! The master key: the key-encryption key that wraps every account's storage key, kept in a small
//! file outside the store (DESIGN.md §4, issue 7).
//!
//! The store only holds storage keys wrapped under a generation of the master key. Erasing an
//! account deletes its wrapped key, but a log-structured store (sled segments, PostgreSQL dead
//! tuples and WAL, backups) may keep the old bytes; once the master-key generation they were
//! wrapped under is gone from this file, those bytes open nothing. `crate::storage_keys` rotates
//! generations after erasures.
//!
//! File format (binary, small): `HAVENMK1` ‖ flags (u8; bit 0 = a rotation is due) ‖ count (u8) ‖
//! count × (generation u32 BE ‖ key 32 bytes), ascending ‖ SHA-256 of everything before. The
//! checksum makes a torn or damaged file an error rather than a wrong key.
//!
//! Writes go to a temporary file (mode 0600), are fsynced, renamed over the file, and the
//! directory is fsynced; at every instant the path holds a complete file. The replaced file's
//! bytes are then overwritten with zeros through a handle opened before the rename, and fsynced:
//! on filesystems that write in place this removes the old generations from the disk; on
//! copy-on-write filesystems, SSDs and snapshots it may not (docs/PRIVACY.md).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use haven_protocol::SpaceId;
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::clock::random_bytes;
use crate::store::{WRAPPED_KEY_LEN, WrappedKey};

/// The file's name in a sled data directory (next to sled's own files).
pub const FILE_NAME: &str = "master-keys";

const MAGIC: &[u8; 8] = b"HAVENMK1";
const FLAG_ROTATION_DUE: u8 = 1;
/// More generations than this only come from repeated crashes in the middle of rotations; a
/// larger count is treated as damage.
const MAX_GENERATIONS: usize = 16;
const ENTRY_LEN: usize = 4 + 32;
const NONCE_LEN: usize = 24;
const WRAP_DOMAIN: &[u8] = b"haven/storage-key-wrap/v1\0";

/// What can go wrong with the master key. Messages name the file, never a key.
#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error("master-key file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "master-key file {} is damaged ({reason}); restore it from where you keep it: without it \
         no account's journal on this server can be read",
        path.display()
    )]
    Corrupt { path: PathBuf, reason: &'static str },
    #[error(
        "master-key file {} can be read by other users (mode {mode:o}); run `chmod 600` on it",
        path.display()
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error(
        "master-key file {} is missing, but the store holds storage keys wrapped under a master \
         key; restore the file (a new one would leave every account unreadable)",
        path.display()
    )]
    Missing { path: PathBuf },
    #[error(
        "a storage key is wrapped under master-key generation {0}, which this server does not hold"
    )]
    UnknownGeneration(u32),
    #[error("a wrapped storage key failed authentication (wrong master key, or a damaged record)")]
    Unwrap,
    #[error("the master-key file already holds {MAX_GENERATIONS} generations")]
    TooManyGenerations,
}

type Generations = BTreeMap<u32, Zeroizing<[u8; 32]>>;

#[derive(Clone)]
struct State {
    generations: Generations,
    rotation_due: bool,
}

/// The master-key generations of this server (the newest is current), and the file they live
/// in. `Debug` shows generation numbers only.
pub struct MasterKeys {
    state: std::sync::RwLock<State>,
    /// `None` keeps the keys in memory only (in-memory stores and tests).
    file: Option<PathBuf>,
    /// Serialises file writes: each one writes the whole state.
    writing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for MasterKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKeys")
            .field("generations", &self.generations())
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

impl MasterKeys {
    /// One fresh generation, in memory only.
    pub fn ephemeral() -> Self {
        Self::from_state(None, fresh_state())
    }

    /// Loads the file at `path`; when it does not exist, creates it with one fresh generation
    /// if `may_create`, else refuses ([`MasterKeyError::Missing`]). Returns whether it was created.
    pub async fn open(path: &Path, may_create: bool) -> Result<(Self, bool), MasterKeyError> {
        let owned = path.to_path_buf();
        let blocking = tokio::task::spawn_blocking(move || open_blocking(owned, may_create));
        blocking.await.map_err(|error| MasterKeyError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(error),
        })?
    }

    fn from_state(file: Option<PathBuf>, state: State) -> Self {
        Self {
            state: std::sync::RwLock::new(state),
            file,
            writing: tokio::sync::Mutex::new(()),
        }
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn set_state(&self, state: State) {
        *self
            .state
            .write()
            .unwrap_or_else(|poison| poison.into_inner()) = state;
    }

    /// The file, if the keys live in one.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// The generation new wraps use.
    pub fn current(&self) -> u32 {
        let state = self.read_state();
        state.generations.keys().next_back().copied().unwrap_or(0)
    }

    /// Every generation held, ascending.
    pub fn generations(&self) -> Vec<u32> {
        self.read_state().generations.keys().copied().collect()
    }

    /// Whether an erasure asked for a rotation that has not completed (persisted in the file).
    pub fn rotation_due(&self) -> bool {
        self.read_state().rotation_due
    }

    /// Wraps a storage key under the current generation, bound to its space.
    pub fn wrap(&self, space: &SpaceId, key: &[u8; 32]) -> WrappedKey {
        let state = self.read_state();
        let (generation, master) = state
            .generations
            .iter()
            .next_back()
            .map(|(generation, key)| (*generation, key.clone()))
            // Every constructor, decode and retirement leaves at least one generation.
            .expect("the master keys hold a generation");
        drop(state);
        wrap_with(&master, generation, space, key)
    }

    /// Opens a wrapped storage key of `space`.
    pub fn unwrap(
        &self,
        space: &SpaceId,
        wrapped: &WrappedKey,
    ) -> Result<Zeroizing<[u8; 32]>, MasterKeyError> {
        let master = self
            .read_state()
            .generations
            .get(&wrapped.generation)
            .cloned()
            .ok_or(MasterKeyError::UnknownGeneration(wrapped.generation))?;
        unwrap_with(&master, space, wrapped)
    }

    /// Adds generation current + 1 and makes it current. The file holds it (durably) before any
    /// key can be wrapped under it.
    pub async fn add_generation(&self) -> Result<u32, MasterKeyError> {
        let _writing = self.writing.lock().await;
        let mut next = self.read_state().clone();
        if next.generations.len() >= MAX_GENERATIONS {
            return Err(MasterKeyError::TooManyGenerations);
        }
        let generation = next
            .generations
            .keys()
            .next_back()
            .map_or(1, |last| last.saturating_add(1));
        next.generations
            .insert(generation, Zeroizing::new(random_bytes()));
        self.persist(&next).await?;
        self.set_state(next);
        Ok(generation)
    }

    /// Drops every generation but `keep` from the file (then from memory), and records whether a
    /// rotation is still due. The caller has re-wrapped every key under `keep` and flushed.
    pub async fn retire_all_but(&self, keep: u32, still_due: bool) -> Result<(), MasterKeyError> {
        let _writing = self.writing.lock().await;
        let mut next = self.read_state().clone();
        next.generations.retain(|generation, _| *generation == keep);
        if next.generations.is_empty() {
            return Err(MasterKeyError::UnknownGeneration(keep));
        }
        next.rotation_due = still_due;
        self.persist(&next).await?;
        self.set_state(next);
        Ok(())
    }

    /// Records (durably) that a rotation is due, so a restart before it still rotates.
    pub async fn mark_rotation_due(&self) -> Result<(), MasterKeyError> {
        let _writing = self.writing.lock().await;
        if self.read_state().rotation_due {
            return Ok(());
        }
        let mut next = self.read_state().clone();
        next.rotation_due = true;
        self.persist(&next).await?;
        self.set_state(next);
        Ok(())
    }

    async fn persist(&self, state: &State) -> Result<(), MasterKeyError> {
        let Some(path) = self.file.clone() else {
            return Ok(());
        };
        let bytes = encode(state);
        let written = tokio::task::spawn_blocking(move || write_file(&path, &bytes)).await;
        written.map_err(|error| MasterKeyError::Io {
            path: self.file.clone().unwrap_or_default(),
            source: std::io::Error::other(error),
        })?
    }
}

/// Reads the generations of a master-key file (operators' tooling and tests).
pub fn read_generations(path: &Path) -> Result<Generations, MasterKeyError> {
    read_file(path).map(|state| state.generations)
}

fn fresh_state() -> State {
    State {
        generations: BTreeMap::from([(1, Zeroizing::new(random_bytes()))]),
        rotation_due: false,
    }
}

fn open_blocking(path: PathBuf, may_create: bool) -> Result<(MasterKeys, bool), MasterKeyError> {
    match fs::symlink_metadata(&path) {
        Ok(_) => {
            let state = read_file(&path)?;
            Ok((MasterKeys::from_state(Some(path), state), false))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            if !may_create {
                return Err(MasterKeyError::Missing { path });
            }
            let state = fresh_state();
            if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
                fs::create_dir_all(dir).map_err(|source| MasterKeyError::Io {
                    path: path.clone(),
                    source,
                })?;
            }
            write_file(&path, &encode(&state))?;
            Ok((MasterKeys::from_state(Some(path), state), true))
        }
        Err(source) => Err(MasterKeyError::Io { path, source }),
    }
}

fn aad(space: &SpaceId, generation: u32) -> Vec<u8> {
    let space = space.name();
    let mut aad = Vec::with_capacity(WRAP_DOMAIN.len() + space.len() + 1 + 4);
    aad.extend_from_slice(WRAP_DOMAIN);
    aad.extend_from_slice(space.as_bytes());
    aad.push(0);
    aad.extend_from_slice(&generation.to_be_bytes());
    aad
}

/// `nonce ‖ XChaCha20-Poly1305(master, key, aad(space, generation))`.
fn wrap_with(master: &[u8; 32], generation: u32, space: &SpaceId, key: &[u8; 32]) -> WrappedKey {
    let cipher = XChaCha20Poly1305::new(master.into());
    let nonce: [u8; NONCE_LEN] = random_bytes();
    let aad = aad(space, generation);
    let ciphertext = cipher
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: key,
                aad: &aad,
            },
        )
        // The AEAD only fails past its length limit (~256 GiB); this is 32 bytes.
        .expect("XChaCha20-Poly1305 encrypts a 32-byte key");
    let mut sealed = [0u8; WRAPPED_KEY_LEN];
    sealed[..NONCE_LEN].copy_from_slice(&nonce);
    sealed[NONCE_LEN..].copy_from_slice(&ciphertext);
    WrappedKey { generation, sealed }
}

fn unwrap_with(
    master: &[u8; 32],
    space: &SpaceId,
    wrapped: &WrappedKey,
) -> Result<Zeroizing<[u8; 32]>, MasterKeyError> {
    let (nonce, ciphertext) = wrapped
        .sealed
        .split_first_chunk::<NONCE_LEN>()
        .ok_or(MasterKeyError::Unwrap)?;
    let cipher = XChaCha20Poly1305::new(master.into());
    let opened = Zeroizing::new(
        cipher
            .decrypt(
                &XNonce::from(*nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad(space, wrapped.generation),
                },
            )
            .map_err(|_| MasterKeyError::Unwrap)?,
    );
    let key: [u8; 32] = opened
        .as_slice()
        .try_into()
        .map_err(|_| MasterKeyError::Unwrap)?;
    Ok(Zeroizing::new(key))
}

fn encode(state: &State) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(
        MAGIC.len() + 2 + state.generations.len() * ENTRY_LEN + 32,
    ));
    out.extend_from_slice(MAGIC);
    out.push(if state.rotation_due {
        FLAG_ROTATION_DUE
    } else {
        0
    });
    // At most MAX_GENERATIONS (add_generation refuses more), so it fits a byte.
    out.push(u8::try_from(state.generations.len()).unwrap_or(u8::MAX));
    for (generation, key) in &state.generations {
        out.extend_from_slice(&generation.to_be_bytes());
        out.extend_from_slice(key.as_slice());
    }
    let checksum = Sha256::digest(out.as_slice());
    out.extend_from_slice(&checksum);
    out
}

fn decode(path: &Path, bytes: &[u8]) -> Result<State, MasterKeyError> {
    let corrupt = |reason| MasterKeyError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let (body, checksum) = bytes
        .split_last_chunk::<32>()
        .ok_or_else(|| corrupt("too short"))?;
    let rest = body
        .strip_prefix(MAGIC.as_slice())
        .ok_or_else(|| corrupt("not a master-key file"))?;
    if Sha256::digest(body).as_slice() != checksum {
        return Err(corrupt("checksum mismatch"));
    }
    let [flags, count, entries @ ..] = rest else {
        return Err(corrupt("too short"));
    };
    if *flags & !FLAG_ROTATION_DUE != 0 {
        return Err(corrupt("unknown flags"));
    }
    let count = usize::from(*count);
    if count == 0 || count > MAX_GENERATIONS || entries.len() != count * ENTRY_LEN {
        return Err(corrupt("wrong number of generations"));
    }
    let mut generations = Generations::new();
    for entry in entries.chunks_exact(ENTRY_LEN) {
        let (generation, key) = entry
            .split_first_chunk::<4>()
            .ok_or_else(|| corrupt("short entry"))?;
        let generation = u32::from_be_bytes(*generation);
        let key: [u8; 32] = key.try_into().map_err(|_| corrupt("short entry"))?;
        if generations
            .keys()
            .next_back()
            .is_some_and(|last| *last >= generation)
        {
            return Err(corrupt("generations out of order"));
        }
        generations.insert(generation, Zeroizing::new(key));
    }
    Ok(State {
        generations,
        rotation_due: *flags & FLAG_ROTATION_DUE != 0,
    })
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> MasterKeyError + '_ {
    move |source| MasterKeyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn read_file(path: &Path) -> Result<State, MasterKeyError> {
    let metadata = fs::metadata(path).map_err(io_error(path))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(MasterKeyError::Permissions {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = metadata;
    let bytes = Zeroizing::new(fs::read(path).map_err(io_error(path))?);
    decode(path, &bytes)
}

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename, fsync of the directory),
/// then zeroes the bytes of the file it replaced.
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), MasterKeyError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut temporary_name = path.file_name().unwrap_or_default().to_os_string();
    temporary_name.push(".tmp");
    let temporary = dir.join(temporary_name);
    // A leftover of a crash mid-write: it may hold keys, so zero it before it goes.
    if let Ok(mut leftover) = OpenOptions::new().write(true).open(&temporary) {
        zero_in_place(&mut leftover);
        fs::remove_file(&temporary).map_err(io_error(&temporary))?;
    }
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(&temporary).map_err(io_error(&temporary))?;
    file.write_all(bytes).map_err(io_error(&temporary))?;
    file.sync_all().map_err(io_error(&temporary))?;
    drop(file);
    // Opened before the rename, so its bytes can be zeroed once nothing names them.
    let mut replaced = OpenOptions::new().write(true).open(path).ok();
    fs::rename(&temporary, path).map_err(io_error(path))?;
    sync_dir(&dir).map_err(io_error(&dir))?;
    if let Some(replaced) = &mut replaced {
        zero_in_place(replaced);
    }
    Ok(())
}

/// Best effort, before a directory holding a copy of the master-key file is deleted
/// (`haven-server compact`): overwrites that copy with zeros, like every replaced one.
pub(crate) fn zero_copy_in(dir: &Path) {
    if let Ok(mut file) = OpenOptions::new().write(true).open(dir.join(FILE_NAME)) {
        zero_in_place(&mut file);
    }
}

/// Best effort: overwrites the file's bytes with zeros and fsyncs. What a copy-on-write
/// filesystem or an SSD keeps of the old blocks is out of reach (docs/PRIVACY.md).
fn zero_in_place(file: &mut File) {
    let Ok(length) = file.metadata().map(|metadata| metadata.len()) else {
        return;
    };
    let zeros = vec![0u8; usize::try_from(length).unwrap_or(0)];
    let zeroed = file
        .seek(SeekFrom::Start(0))
        .and_then(|_| file.write_all(&zeros))
        .and_then(|()| file.sync_all());
    if let Err(error) = zeroed {
        tracing::warn!(%error, "could not overwrite a replaced master-key file");
    }
}

pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use haven_protocol::HexId;

    use super::*;

    fn space(n: u8) -> SpaceId {
        SpaceId::Private(HexId([n; 16]))
    }

    #[test]
    fn wrap_round_trips_and_binds_space_generation_and_bytes() {
        let master = [7u8; 32];
        let key = [9u8; 32];
        let wrapped = wrap_with(&master, 3, &space(1), &key);
        assert_eq!(wrapped.generation, 3);
        assert_eq!(*unwrap_with(&master, &space(1), &wrapped).unwrap(), key);
        // The raw key is not in the wrapped bytes.
        assert!(!wrapped.sealed.windows(32).any(|window| window == key));
        // Another space, another generation number, another master key: refused.
        assert!(matches!(
            unwrap_with(&master, &space(2), &wrapped),
            Err(MasterKeyError::Unwrap)
        ));
        let relabelled = WrappedKey {
            generation: 4,
            ..wrapped
        };
        assert!(matches!(
            unwrap_with(&master, &space(1), &relabelled),
            Err(MasterKeyError::Unwrap)
        ));
        assert!(matches!(
            unwrap_with(&[8; 32], &space(1), &wrapped),
            Err(MasterKeyError::Unwrap)
        ));
        // Any flipped bit (nonce, ciphertext or tag) is refused.
        for index in [0, 23, 24, 55, 71] {
            let mut tampered = wrapped.clone();
            tampered.sealed[index] ^= 1;
            assert!(
                matches!(
                    unwrap_with(&master, &space(1), &tampered),
                    Err(MasterKeyError::Unwrap)
                ),
                "byte {index}"
            );
        }
        // Fresh nonces: the same key wraps differently each time.
        assert_ne!(wrapped, wrap_with(&master, 3, &space(1), &key));
    }

    #[tokio::test]
    async fn generations_unwrap_only_what_they_hold() {
        let keys = MasterKeys::ephemeral();
        assert_eq!(keys.generations(), vec![1]);
        let old = keys.wrap(&space(1), &[5; 32]);
        assert_eq!(old.generation, 1);
        assert_eq!(keys.add_generation().await.unwrap(), 2);
        let new = keys.wrap(&space(1), &[5; 32]);
        assert_eq!((new.generation, keys.current()), (2, 2));
        assert_eq!(*keys.unwrap(&space(1), &old).unwrap(), [5; 32]);
        keys.retire_all_but(2, false).await.unwrap();
        assert!(matches!(
            keys.unwrap(&space(1), &old),
            Err(MasterKeyError::UnknownGeneration(1))
        ));
        assert_eq!(*keys.unwrap(&space(1), &new).unwrap(), [5; 32]);
        assert!(!format!("{keys:?}").contains("5, 5"));
    }

    #[tokio::test]
    async fn the_file_is_created_private_reloads_and_keeps_generations() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        assert!(matches!(
            MasterKeys::open(&path, false).await,
            Err(MasterKeyError::Missing { .. })
        ));
        let (keys, created) = MasterKeys::open(&path, true).await.unwrap();
        assert!(created);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let wrapped = keys.wrap(&space(1), &[1; 32]);
        keys.add_generation().await.unwrap();
        keys.mark_rotation_due().await.unwrap();

        let (reloaded, created) = MasterKeys::open(&path, true).await.unwrap();
        assert!(!created);
        assert_eq!(reloaded.generations(), vec![1, 2]);
        assert!(reloaded.rotation_due());
        assert_eq!(*reloaded.unwrap(&space(1), &wrapped).unwrap(), [1; 32]);
        let first = read_generations(&path).unwrap()[&1].clone();

        reloaded.retire_all_but(2, false).await.unwrap();
        let (after, _) = MasterKeys::open(&path, false).await.unwrap();
        assert_eq!(after.generations(), vec![2]);
        assert!(!after.rotation_due());
        // Nothing of generation 1 is left in the directory (the temporary file went too).
        for entry in fs::read_dir(dir.path()).unwrap() {
            let bytes = fs::read(entry.unwrap().path()).unwrap();
            assert!(!bytes.windows(32).any(|window| window == first.as_slice()));
        }
    }

    #[tokio::test]
    async fn a_damaged_or_exposed_file_is_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        MasterKeys::open(&path, true).await.unwrap();
        let good = fs::read(&path).unwrap();

        for (bytes, reason) in [
            (good[..good.len() - 1].to_vec(), "checksum"),
            (b"HAVENMK1".to_vec(), "too short"),
            (
                [b"XAVENMK1".as_slice(), &good[8..]].concat(),
                "not a master-key file",
            ),
            (
                {
                    let mut flipped = good.clone();
                    flipped[20] ^= 1;
                    flipped
                },
                "checksum",
            ),
            (vec![0; good.len()], "not a master-key file"),
        ] {
            fs::write(&path, &bytes).unwrap();
            let error = MasterKeys::open(&path, true).await.unwrap_err();
            let message = error.to_string();
            assert!(
                matches!(error, MasterKeyError::Corrupt { .. }) && message.contains(reason),
                "{message}"
            );
            assert!(message.contains(&path.display().to_string()), "{message}");
        }

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            fs::write(&path, &good).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
            let error = MasterKeys::open(&path, true).await.unwrap_err();
            assert!(
                matches!(error, MasterKeyError::Permissions { mode: 0o644, .. }),
                "{error}"
            );
            assert!(error.to_string().contains("chmod 600"), "{error}");
        }
    }
}
