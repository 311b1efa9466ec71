//! The encrypted backup file: a journal sealed under a passphrase, readable with nothing else (no
//! server, no account keys), so a user in local-only mode can keep one too.
//!
//! # Format (version 1)
//!
//! ```text
//! offset  size  field
//!      0     8  magic "HAVENBAK"
//!      8     2  format version, u16 BE (1)
//!     10     4  Argon2id memory in KiB, u32 BE
//!     14     4  Argon2id passes, u32 BE
//!     18     4  Argon2id lanes, u32 BE
//!     22    16  Argon2id salt (random per backup)
//!     38    24  XChaCha20-Poly1305 nonce (random per backup)
//!     62     8  length of what follows, u64 BE (ciphertext ‖ 16-byte tag)
//!     70     …  XChaCha20-Poly1305(key, nonce, aad = bytes 0..70, plaintext)
//! ```
//!
//! `key = HKDF-SHA256(Argon2id(passphrase, salt, m, t, p), info = "haven/v1/backup/key")`: the
//! same Argon2id step as the account password ([`super::password`]), with its parameter checks,
//! under an info string of its own. The whole header is the AEAD's associated data, so changing
//! any byte of it (parameters, salt, nonce, length) makes the file fail to open, like a wrong
//! passphrase; a wrong magic or version is refused before any work.
//!
//! The plaintext is [`haven_protocol::padding::pad`]ded (`u32 length ‖ payload ‖ zeros`, 256 B,
//! 1 KiB, then PADMÉ), so the file's size tells the size bucket of the journal, not its length.
//! The payload, big-endian:
//!
//! ```text
//! i64 made_at (Unix ms)
//! u32 entries, then per entry: 16-byte document id ‖ i64 created_at (the journal index's) ‖
//!     u32 length ‖ the entry's whole Automerge document (`save()`: every change, so no history
//!     and no concurrent edit is lost)
//! u32 deletions, then per deletion: 16-byte document id ‖ i64 deleted_at
//! ```
//!
//! Opening checks sizes before allocating: the file against [`MAX_BACKUP_BYTES`], the declared
//! length against the bytes actually there, every count against [`MAX_BACKUP_ENTRIES`] and the
//! bytes left, every document against [`MAX_ENTRY_BYTES`]. The Automerge bytes inside are the
//! caller's to decode as untrusted input (`documents::untrusted`).

use std::fmt;

use haven_protocol::api::KdfParams;
use haven_protocol::{Bytes, DocId, padding};
use zeroize::Zeroizing;

use super::aead::{self, NONCE_LEN, TAG_LEN};
use super::codec::Reader;
use super::password::{kdf_params_allowed, password_master_key};
use super::{CryptoError, hkdf_expand};
use crate::env::{Random, random_array};

/// The first bytes of every backup file.
pub const BACKUP_MAGIC: [u8; 8] = *b"HAVENBAK";
/// The format this build writes and reads.
pub const BACKUP_FORMAT: u16 = 1;
/// Bytes before the ciphertext.
pub const BACKUP_HEADER_LEN: usize = 8 + 2 + 12 + 16 + NONCE_LEN + 8;
/// The largest backup file opened (or written): a phone holds the file and its plaintext in
/// memory at once, so a hostile or corrupt file must not ask for more.
pub const MAX_BACKUP_BYTES: u64 = 256 * 1024 * 1024;
/// The most entries (and, separately, deletions) one backup holds.
pub const MAX_BACKUP_ENTRIES: usize = 100_000;
/// The largest single entry document.
pub const MAX_ENTRY_BYTES: usize = 16 * 1024 * 1024;

const INFO_BACKUP_KEY: &[u8] = b"haven/v1/backup/key";
/// Fixed bytes per entry before its document: id, created_at, length.
const ENTRY_FIXED_LEN: usize = 16 + 8 + 4;
const DELETION_LEN: usize = 16 + 8;

/// Why a backup could not be made or opened. None of these reveal the passphrase or the
/// contents; a failed open changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackupError {
    #[error("this is not a Haven backup file")]
    NotABackup,
    #[error(
        "backup format {found} is not supported here (this version reads format 1); update the app"
    )]
    UnsupportedVersion { found: u16 },
    #[error(
        "the backup's passphrase parameters are outside the accepted range (memory {m_kib} KiB, \
         {t} passes, {p} lanes); refusing them"
    )]
    UnacceptableKdf { m_kib: u32, t: u32, p: u32 },
    #[error("the backup is too large ({len} bytes; at most {max})")]
    TooLarge { len: u64, max: u64 },
    #[error("the backup file is incomplete (it was cut short)")]
    Truncated,
    #[error("wrong passphrase, or the backup file was changed or damaged")]
    WrongPassphrase,
    #[error("the backup is malformed: {0}")]
    Malformed(&'static str),
    #[error("the passphrase could not be hashed: {0}")]
    Kdf(String),
    /// An entry's document (authentic, so written by a buggy or hostile maker) does not load as
    /// a journal entry.
    #[error("entry {id} of the backup is unusable: {reason}")]
    BadEntry { id: String, reason: String },
}

/// One journal entry in a backup. `Debug` shows the id and the size, never the document.
#[derive(Clone, PartialEq, Eq)]
pub struct BackupEntry {
    pub id: DocId,
    /// `created_at` as the journal index lists it (Unix ms).
    pub created_at: i64,
    /// The entry's whole Automerge document (`save()`), zeroised on drop.
    pub automerge: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for BackupEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackupEntry")
            .field("id", &self.id.to_hex())
            .field("bytes", &self.automerge.len())
            .finish()
    }
}

/// What a backup holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackupContents {
    /// When it was made (Unix ms, the making device's clock).
    pub made_at: i64,
    pub entries: Vec<BackupEntry>,
    /// Entries the journal index recorded as deleted → `deleted_at` (Unix ms).
    pub deletions: Vec<(DocId, i64)>,
}

/// The clear header of a backup file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupHeader {
    pub version: u16,
    pub kdf: KdfParams,
    nonce: [u8; NONCE_LEN],
    sealed_len: u64,
}

impl BackupHeader {
    fn encode(&self) -> [u8; BACKUP_HEADER_LEN] {
        let mut out = [0u8; BACKUP_HEADER_LEN];
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            out[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        put(&BACKUP_MAGIC);
        put(&self.version.to_be_bytes());
        put(&self.kdf.m_kib.to_be_bytes());
        put(&self.kdf.t.to_be_bytes());
        put(&self.kdf.p.to_be_bytes());
        put(self.kdf.salt.as_bytes());
        put(&self.nonce);
        put(&self.sealed_len.to_be_bytes());
        out
    }

    /// Reads and checks the header of `file`: magic, version, parameters, and that the declared
    /// length is what the file holds and within the cap. Cheap: no key derivation.
    pub fn parse(file: &[u8]) -> Result<Self, BackupError> {
        if file.len() < BACKUP_MAGIC.len() || file[..BACKUP_MAGIC.len()] != BACKUP_MAGIC {
            return Err(BackupError::NotABackup);
        }
        if file.len() as u64 > MAX_BACKUP_BYTES {
            return Err(BackupError::TooLarge {
                len: file.len() as u64,
                max: MAX_BACKUP_BYTES,
            });
        }
        let header = file
            .get(..BACKUP_HEADER_LEN)
            .ok_or(BackupError::Truncated)?;
        let mut reader = Reader::new(&header[BACKUP_MAGIC.len()..]);
        let truncated = |_: CryptoError| BackupError::Truncated;
        let version = reader.u16().map_err(truncated)?;
        if version != BACKUP_FORMAT {
            return Err(BackupError::UnsupportedVersion { found: version });
        }
        let m_kib = reader.u32().map_err(truncated)?;
        let t = reader.u32().map_err(truncated)?;
        let p = reader.u32().map_err(truncated)?;
        let salt = Bytes(reader.array::<16>().map_err(truncated)?);
        let nonce = reader.array::<NONCE_LEN>().map_err(truncated)?;
        let sealed_len = reader.u64().map_err(truncated)?;
        let kdf = KdfParams { salt, m_kib, t, p };
        // The same floor and ceiling as a login's: a file must not talk a device into a cheap
        // derivation (nor into allocating gigabytes).
        if !kdf_params_allowed(&kdf) {
            return Err(BackupError::UnacceptableKdf { m_kib, t, p });
        }
        if sealed_len > MAX_BACKUP_BYTES {
            return Err(BackupError::TooLarge {
                len: sealed_len,
                max: MAX_BACKUP_BYTES,
            });
        }
        let present = (file.len() - BACKUP_HEADER_LEN) as u64;
        if sealed_len > present {
            return Err(BackupError::Truncated);
        }
        if sealed_len < present {
            return Err(BackupError::Malformed("bytes after the end of the backup"));
        }
        if sealed_len < (padding::SMALL_BUCKET + TAG_LEN) as u64 {
            return Err(BackupError::Malformed("too short to hold a journal"));
        }
        Ok(Self {
            version,
            kdf,
            nonce,
            sealed_len,
        })
    }
}

/// The backup key of `passphrase` under `kdf`: Argon2id, then HKDF under the backup's info.
fn backup_key(passphrase: &str, kdf: &KdfParams) -> Result<Zeroizing<[u8; 32]>, BackupError> {
    let master = password_master_key(passphrase, kdf).map_err(|error| match error {
        CryptoError::UnacceptableKdfParams { m_kib, t, p } => {
            BackupError::UnacceptableKdf { m_kib, t, p }
        }
        other => BackupError::Kdf(other.to_string()),
    })?;
    let mut key = Zeroizing::new([0u8; 32]);
    hkdf_expand(master.as_ref(), INFO_BACKUP_KEY, key.as_mut());
    Ok(key)
}

/// Seals `contents` under `passphrase` with `kdf` (fresh parameters: [`super::new_kdf_params`]).
/// The caller checks the passphrase's strength; this costs one Argon2id.
pub fn seal_backup(
    contents: &BackupContents,
    passphrase: &str,
    kdf: &KdfParams,
    random: &dyn Random,
) -> Result<Vec<u8>, BackupError> {
    let payload = encode_contents(contents)?;
    let plaintext = Zeroizing::new(
        padding::pad(&payload).ok_or(BackupError::Malformed("the journal is too large"))?,
    );
    let sealed_len = (plaintext.len() + TAG_LEN) as u64;
    if sealed_len + BACKUP_HEADER_LEN as u64 > MAX_BACKUP_BYTES {
        return Err(BackupError::TooLarge {
            len: sealed_len + BACKUP_HEADER_LEN as u64,
            max: MAX_BACKUP_BYTES,
        });
    }
    let header = BackupHeader {
        version: BACKUP_FORMAT,
        kdf: *kdf,
        nonce: random_array::<NONCE_LEN>(random),
        sealed_len,
    };
    let key = backup_key(passphrase, kdf)?;
    let aad = header.encode();
    let sealed = aead::seal(&key, &header.nonce, &aad, &plaintext);
    let mut out = Vec::with_capacity(BACKUP_HEADER_LEN + sealed.len());
    out.extend_from_slice(&aad);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Opens a backup file. Every check that needs no key runs first ([`BackupHeader::parse`]);
/// then one Argon2id with the file's parameters.
pub fn open_backup(file: &[u8], passphrase: &str) -> Result<BackupContents, BackupError> {
    let header = BackupHeader::parse(file)?;
    let key = backup_key(passphrase, &header.kdf)?;
    let plaintext = aead::open(
        &key,
        &header.nonce,
        &file[..BACKUP_HEADER_LEN],
        &file[BACKUP_HEADER_LEN..],
    )
    .ok_or(BackupError::WrongPassphrase)?;
    // Authentic from here: a malformed payload means a buggy or hostile maker, not damage.
    let payload =
        padding::unpad(&plaintext).ok_or(BackupError::Malformed("the padding is malformed"))?;
    decode_contents(payload)
}

fn encode_contents(contents: &BackupContents) -> Result<Zeroizing<Vec<u8>>, BackupError> {
    if contents.entries.len() > MAX_BACKUP_ENTRIES || contents.deletions.len() > MAX_BACKUP_ENTRIES
    {
        return Err(BackupError::Malformed("too many entries"));
    }
    let size = 16
        + contents
            .entries
            .iter()
            .map(|entry| ENTRY_FIXED_LEN + entry.automerge.len())
            .sum::<usize>()
        + contents.deletions.len() * DELETION_LEN;
    let mut out = Zeroizing::new(Vec::with_capacity(size));
    out.extend_from_slice(&contents.made_at.to_be_bytes());
    out.extend_from_slice(&(contents.entries.len() as u32).to_be_bytes());
    for entry in &contents.entries {
        if entry.automerge.len() > MAX_ENTRY_BYTES {
            return Err(BackupError::TooLarge {
                len: entry.automerge.len() as u64,
                max: MAX_ENTRY_BYTES as u64,
            });
        }
        out.extend_from_slice(entry.id.as_ref());
        out.extend_from_slice(&entry.created_at.to_be_bytes());
        out.extend_from_slice(&(entry.automerge.len() as u32).to_be_bytes());
        out.extend_from_slice(&entry.automerge);
    }
    out.extend_from_slice(&(contents.deletions.len() as u32).to_be_bytes());
    for (id, deleted_at) in &contents.deletions {
        out.extend_from_slice(id.as_ref());
        out.extend_from_slice(&deleted_at.to_be_bytes());
    }
    Ok(out)
}

fn decode_contents(payload: &[u8]) -> Result<BackupContents, BackupError> {
    let malformed = |_: CryptoError| BackupError::Malformed("truncated payload");
    let mut reader = Reader::new(payload);
    let made_at = reader.i64().map_err(malformed)?;
    let count = |reader: &mut Reader<'_>, item_len: usize| -> Result<usize, BackupError> {
        let count = reader.u32().map_err(malformed)? as usize;
        if count > MAX_BACKUP_ENTRIES {
            return Err(BackupError::Malformed("too many entries"));
        }
        // A count the remaining bytes cannot hold allocates nothing.
        if count.saturating_mul(item_len) > reader.remaining() {
            return Err(BackupError::Malformed("truncated payload"));
        }
        Ok(count)
    };
    let entries_len = count(&mut reader, ENTRY_FIXED_LEN)?;
    let mut entries = Vec::with_capacity(entries_len);
    for _ in 0..entries_len {
        let id = DocId::from(reader.array::<16>().map_err(malformed)?);
        let created_at = reader.i64().map_err(malformed)?;
        let len = reader.u32().map_err(malformed)? as usize;
        if len > MAX_ENTRY_BYTES {
            return Err(BackupError::Malformed("an entry is too large"));
        }
        let automerge = Zeroizing::new(reader.bytes(len).map_err(malformed)?.to_vec());
        entries.push(BackupEntry {
            id,
            created_at,
            automerge,
        });
    }
    let deletions_len = count(&mut reader, DELETION_LEN)?;
    let mut deletions = Vec::with_capacity(deletions_len);
    for _ in 0..deletions_len {
        let id = DocId::from(reader.array::<16>().map_err(malformed)?);
        deletions.push((id, reader.i64().map_err(malformed)?));
    }
    reader
        .finish()
        .map_err(|_| BackupError::Malformed("bytes after the journal"))?;
    Ok(BackupContents {
        made_at,
        entries,
        deletions,
    })
}

#[cfg(test)]
mod tests;
