//! Encrypted backup of the journal, and its import (the file format: [`crate::crypto::backup`]).
//!
//! A backup holds every journal entry's whole Automerge document and the journal index's view
//! of them (when each was created, which were deleted), sealed under a passphrase. Making one
//! reads only this device's replica: no server, no account keys. Restoring merges it into the
//! journal here the way a sync with the device that made it would.

use std::collections::{BTreeMap, HashSet};
use std::io::Read as _;
use std::path::Path;

use haven_protocol::DocId;
use zeroize::Zeroizing;

use super::Haven;
use super::error::{HavenError, HavenResult};
use super::export::{io_error, write_private};
use super::records::SummaryRecord;
use super::replica::MergeOutcome;
use crate::crypto::backup::{
    BackupContents, BackupEntry, BackupError, MAX_BACKUP_BYTES, open_backup, seal_backup,
};
use crate::crypto::{check_password_strength, new_kdf_params};
use crate::documents::{DocType, JournalEntryDoc, JournalIndex, JournalIndexDoc, new_doc};
use crate::local_store::WriteBatch;

/// What callers show next to a backup: unlike an export, it is encrypted.
pub const BACKUP_NOTICE: &str = "A backup is encrypted with its passphrase: without it nobody can read the file, \
     and nobody (Haven included) can recover a forgotten passphrase. Keep the file and the \
     passphrase apart.";

/// A backup just made.
#[derive(Clone, PartialEq, Eq)]
pub struct JournalBackup {
    /// The backup file's bytes (ciphertext; safe to store anywhere).
    pub file: Vec<u8>,
    /// Entries it holds.
    pub entries: usize,
    /// Deletions it records.
    pub deletions: usize,
}

impl std::fmt::Debug for JournalBackup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalBackup")
            .field("bytes", &self.file.len())
            .field("entries", &self.entries)
            .field("deletions", &self.deletions)
            .finish()
    }
}

/// What a restore did. Restoring the same backup again gives only `unchanged` (and
/// `kept_deleted`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Entries this device did not have, added under their own ids.
    pub added: usize,
    /// Entries both had, into which the backup brought edits this device lacked.
    pub merged: usize,
    /// Entries this device already had with everything the backup holds.
    pub unchanged: usize,
    /// Entries here that the backup records as deleted, now deleted here too.
    pub deleted: usize,
    /// Entries of the backup deleted here: they stay deleted.
    pub kept_deleted: usize,
}

impl RestoreReport {
    /// Whether the restore changed anything here.
    pub fn changed(&self) -> bool {
        self.added + self.merged + self.deleted > 0
    }
}

impl Haven {
    /// Seals the whole journal under `passphrase` into one backup file: every entry's full
    /// Automerge document (all history, every concurrent edit) and the journal index's
    /// creation times and deletions. Works offline and needs no account keys: it reads only
    /// what this device holds (not what is still on the server only; sync first to include it).
    ///
    /// The passphrase must clear the same strength floor as an account password
    /// ([`check_password_strength`]): whoever holds the file can guess offline. Costs one
    /// Argon2id (≈ 64 MiB, a second of CPU), done without holding the profile's lock.
    pub fn backup_journal(&self, passphrase: &str) -> HavenResult<JournalBackup> {
        check_password_strength(passphrase)
            .map_err(|weak| HavenError::WeakPassword(weak.to_string()))?;
        let (contents, random) = {
            let mut replica = self.replica();
            let index = match replica.singleton_id(DocType::JournalIndex) {
                Ok(id) => replica.read::<JournalIndex>(&id)?.unwrap_or_default(),
                // No account keys (a profile without an account): no index to read.
                Err(HavenError::NotLoggedIn) => JournalIndex::default(),
                Err(other) => return Err(other),
            };
            let mut created: BTreeMap<DocId, i64> = replica
                .summaries_of(|summary| matches!(summary, SummaryRecord::Journal { .. }))
                .into_iter()
                .filter_map(|(id, summary)| match summary {
                    SummaryRecord::Journal { created_at, .. } => Some((id, created_at)),
                    _ => None,
                })
                .collect();
            created.extend(index.entries.iter().map(|(id, at)| (*id, *at)));
            let mut entries = Vec::with_capacity(created.len());
            for (id, created_at) in created {
                if index.deletions.contains_key(&id) {
                    continue;
                }
                // Listed but not here yet (its creating change has not arrived): nothing to keep.
                let Some(saved) = replica.save_doc(&id)? else {
                    continue;
                };
                entries.push(BackupEntry {
                    id,
                    created_at,
                    automerge: Zeroizing::new(saved),
                });
            }
            let contents = BackupContents {
                made_at: replica.now_ms(),
                entries,
                deletions: index.deletions.into_iter().collect(),
            };
            (contents, std::sync::Arc::clone(&replica.random))
        };
        let kdf = new_kdf_params(random.as_ref());
        let file = seal_backup(&contents, passphrase, &kdf, random.as_ref())?;
        Ok(JournalBackup {
            file,
            entries: contents.entries.len(),
            deletions: contents.deletions.len(),
        })
    }

    /// [`Haven::backup_journal`] into a file readable only by its owner (on unix), written
    /// beside it first and renamed over it, so an interrupted backup never leaves half a file
    /// in its place.
    pub fn backup_journal_to(&self, path: &Path, passphrase: &str) -> HavenResult<JournalBackup> {
        let backup = self.backup_journal(passphrase)?;
        let mut partial = path.as_os_str().to_owned();
        partial.push(".part");
        let partial = std::path::PathBuf::from(partial);
        write_private(&partial, &backup.file)?;
        std::fs::rename(&partial, path)
            .map_err(|error| io_error(&format!("writing {}", path.display()), error))?;
        Ok(backup)
    }

    /// Merges a backup into the journal here, as a sync with the device that made it would:
    ///
    /// - an entry this device does not have is added under its own id, with its whole history,
    ///   and queued for sync like any new entry, so the account's other devices get it;
    /// - an entry both have is merged by Automerge: the edits this device lacks are applied and
    ///   queued; nothing here is overwritten, no word is lost on either side;
    /// - an entry deleted here stays deleted, however new the backup: a deletion is final in
    ///   Haven (the journal index never lists a deleted id again), and someone who deleted an
    ///   entry to be safe must not see it come back, on every device, from an old backup;
    /// - an entry the backup records as deleted is deleted here too, for the same reason.
    ///
    /// Restoring the same backup twice changes nothing the second time. A wrong passphrase, a
    /// damaged or altered file, or any unusable entry fails the whole restore before anything
    /// changes ([`HavenError::Backup`]); weak Argon2id parameters in the file are refused as a
    /// login refuses them. The journal must be writable here: an account on this profile, or a
    /// local-only journal ([`Haven::set_local_only`]), where restored entries stay on the device.
    pub fn restore_backup(&self, file: &[u8], passphrase: &str) -> HavenResult<RestoreReport> {
        let contents = open_backup(file, passphrase)?;
        let device = self.device_id();
        // Every document is decoded (as untrusted input) and checked before anything changes.
        let mut seen = HashSet::new();
        let mut incoming = Vec::with_capacity(contents.entries.len());
        for entry in &contents.entries {
            let bad = |reason: String| BackupError::BadEntry {
                id: entry.id.to_hex(),
                reason,
            };
            if !seen.insert(entry.id) {
                return Err(bad("listed twice".into()).into());
            }
            let mut doc = new_doc(&device);
            crate::documents::untrusted::load_snapshot(&mut doc, &entry.automerge).map_err(bad)?;
            let handle = JournalEntryDoc::from_doc(doc).map_err(|error| bad(error.to_string()))?;
            handle.read().map_err(|error| bad(error.to_string()))?;
            incoming.push((entry.id, entry.created_at, handle.into_doc()));
        }
        let backup_deleted: HashSet<DocId> = contents.deletions.iter().map(|(id, _)| *id).collect();

        let mut report = RestoreReport::default();
        let mut replica = self.replica();
        let index = replica.singleton_id(DocType::JournalIndex)?;
        let deleted_here = replica.deleted_entries()?;
        let mut batch = WriteBatch::new();
        let mut listed = Vec::new();
        let mut staged: HavenResult<()> = Ok(());
        for (id, created_at, doc) in incoming {
            if deleted_here.contains(&id) || backup_deleted.contains(&id) {
                report.kept_deleted += 1;
                continue;
            }
            match replica.stage_merge_entry(id, doc, &mut batch) {
                Ok(MergeOutcome::Added) => report.added += 1,
                Ok(MergeOutcome::Merged) => report.merged += 1,
                Ok(MergeOutcome::Unchanged) => report.unchanged += 1,
                Err(error) => {
                    staged = Err(error);
                    break;
                }
            }
            listed.push((id, created_at));
        }
        let to_delete: Vec<DocId> = backup_deleted
            .iter()
            .filter(|id| {
                matches!(
                    replica.summaries.get(id),
                    Some(SummaryRecord::Journal { .. })
                )
            })
            .copied()
            .collect();
        report.deleted = to_delete.len();
        let staged = staged
            .and_then(|()| {
                replica.stage_edit::<JournalIndex, _>(
                    index,
                    Some(DocType::JournalIndex),
                    |doc, now| {
                        let handle: &mut JournalIndexDoc = doc;
                        for (id, created_at) in &listed {
                            handle.add_entry(id, *created_at, now)?;
                        }
                        for id in &to_delete {
                            handle.delete_entry(id, now)?;
                        }
                        Ok(())
                    },
                    &mut batch,
                )
            })
            .and_then(|_| {
                to_delete
                    .iter()
                    .try_for_each(|id| replica.stage_tombstone(*id, &mut batch))
            });
        match staged {
            Ok(()) if batch.is_empty() => {}
            staged => replica.commit_staged(staged, batch)?,
        }
        drop(replica);
        if report.changed() {
            self.note_local_change();
        }
        Ok(report)
    }

    /// [`Haven::restore_backup`] from a file; a file larger than any backup can be is refused
    /// before it is read.
    pub fn restore_backup_from(&self, path: &Path, passphrase: &str) -> HavenResult<RestoreReport> {
        let reading = |error| io_error(&format!("reading {}", path.display()), error);
        let file = std::fs::File::open(path).map_err(reading)?;
        let len = file.metadata().map_err(reading)?.len();
        if len > MAX_BACKUP_BYTES {
            return Err(BackupError::TooLarge {
                len,
                max: MAX_BACKUP_BYTES,
            }
            .into());
        }
        let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        // Bounded again while reading: the file may grow after the size was taken.
        file.take(MAX_BACKUP_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(reading)?;
        self.restore_backup(&bytes, passphrase)
    }
}
