//! `haven-server compact`: rewrites the sled data directory with only its live pairs.
//!
//! sled 0.34 keeps the space of every deleted or rewritten page: pruned envelopes (snapshots,
//! tombstones, erased accounts) leave the files as large as their high-water mark. The copy is
//! built next to the data directory, checked pair by pair, given the directory's other files
//! (the master-key file), and swapped in with one atomic `renameat2(RENAME_EXCHANGE)`, so at
//! every instant the data directory is either the old one or the complete new one. The old one
//! is then deleted (its master-key copy overwritten first), or kept with `--keep-old`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::config::ServeArgs;
use crate::store::sled_kv::{KindTally, SledKv};

/// What `compact` did, for the operator and the tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compacted {
    pub pairs: u64,
    /// The live pairs by record kind.
    pub by_kind: BTreeMap<&'static str, KindTally>,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

pub fn run(args: &ServeArgs, keep_old: bool) -> anyhow::Result<()> {
    let done = compact(&args.data_dir, args.cache_bytes(), keep_old)?;
    println!(
        "compacted {}: {} pairs; {} bytes before, {} after",
        args.data_dir.display(),
        done.pairs,
        done.bytes_before,
        done.bytes_after
    );
    for (kind, tally) in &done.by_kind {
        println!(
            "  {kind}: {} pairs, {} key bytes, {} value bytes",
            tally.pairs, tally.key_bytes, tally.value_bytes
        );
    }
    Ok(())
}

/// Compacts the sled directory `data` (see the module docs).
pub fn compact(data: &Path, cache_bytes: u64, keep_old: bool) -> anyhow::Result<Compacted> {
    // sled creates a missing directory; a typo must not "compact" an empty store.
    anyhow::ensure!(
        data.join("conf").is_file(),
        "{} is not a sled data directory",
        data.display()
    );
    let staging = sibling(data, "compacting")?;
    let kept = sibling(data, "before-compact")?;
    anyhow::ensure!(
        !staging.exists(),
        "{} exists: an earlier compaction stopped half-way; the data directory was not touched, \
         delete it and run again",
        staging.display()
    );
    anyhow::ensure!(
        !keep_old || !kept.exists(),
        "{} exists already",
        kept.display()
    );
    let bytes_before = tree_bytes(data)?;
    let report = {
        // Its lock also proves no server is writing to it.
        let source = SledKv::open(data, cache_bytes)
            .with_context(|| format!("opening the data directory {}", data.display()))?;
        let report = source
            .copy_into(&staging, cache_bytes)
            .with_context(|| format!("copying into {}", staging.display()))?;
        copy_other_files(data, &staging)?;
        report
        // Both databases close here, before the swap.
    };
    exchange(data, &staging)?;
    sync_dir(parent(data)?)?;
    // `staging` now names the old directory.
    if keep_old {
        fs::rename(&staging, &kept)
            .with_context(|| format!("renaming the old directory to {}", kept.display()))?;
        sync_dir(parent(data)?)?;
    } else {
        crate::master_key::zero_copy_in(&staging);
        fs::remove_dir_all(&staging)
            .with_context(|| format!("deleting the old directory {}", staging.display()))?;
    }
    Ok(Compacted {
        pairs: report.pairs,
        by_kind: report.by_kind,
        bytes_before,
        bytes_after: tree_bytes(data)?,
    })
}

/// sled's own files and directories in a data directory; everything else is the operator's (the
/// master-key file) and moves with the data.
fn is_sled_file(name: &str) -> bool {
    matches!(name, "conf" | "db" | "blobs") || name.starts_with("snap.")
}

fn copy_other_files(from: &Path, to: &Path) -> anyhow::Result<()> {
    for entry in fs::read_dir(from).with_context(|| format!("listing {}", from.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_str().is_some_and(is_sled_file) {
            continue;
        }
        let kind = entry.file_type()?;
        anyhow::ensure!(
            kind.is_file(),
            "{} is not a sled file and not a plain file: move it out of the data directory first",
            entry.path().display()
        );
        let target = to.join(&name);
        // `fs::copy` carries the permission bits (0600 for the master-key file).
        fs::copy(entry.path(), &target)
            .with_context(|| format!("copying {}", entry.path().display()))?;
        fs::File::open(&target)
            .and_then(|file| file.sync_all())
            .with_context(|| format!("syncing {}", target.display()))?;
    }
    sync_dir(to)
}

#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> anyhow::Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE)
        .with_context(|| format!("swapping {} and {}", a.display(), b.display()))
}

#[cfg(not(target_os = "linux"))]
fn exchange(a: &Path, b: &Path) -> anyhow::Result<()> {
    anyhow::bail!(
        "compact swaps {} and {} atomically with Linux's renameat2; on this system stop here, \
         and rename them by hand",
        a.display(),
        b.display()
    )
}

/// `<data>.<suffix>`, next to the data directory (same filesystem, so renames are atomic).
fn sibling(data: &Path, suffix: &str) -> anyhow::Result<PathBuf> {
    let name = data
        .file_name()
        .with_context(|| format!("{} has no directory name", data.display()))?;
    let mut sibling = name.to_os_string();
    sibling.push(".");
    sibling.push(suffix);
    Ok(parent(data)?.join(sibling))
}

fn parent(path: &Path) -> anyhow::Result<&Path> {
    match path.parent() {
        Some(parent) if parent.as_os_str().is_empty() => Ok(Path::new(".")),
        Some(parent) => Ok(parent),
        None => anyhow::bail!("{} has no parent directory", path.display()),
    }
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    crate::master_key::sync_dir(dir)
        .with_context(|| format!("syncing the directory {}", dir.display()))
}

/// Apparent bytes of every file under `dir`.
fn tree_bytes(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let metadata = entry.metadata()?;
        total += if metadata.is_dir() {
            tree_bytes(&entry.path())?
        } else {
            metadata.len()
        };
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;
    use crate::store::kv::{KvBatch, KvEngine as _};
    use crate::store::sled_kv::SledStore;

    const CACHE: u64 = 4 * 1024 * 1024;

    /// A data directory whose pages were mostly rewritten and deleted, plus a master-key file.
    /// Each round reopens the database: sled writes everything out when it closes.
    fn churned(dir: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
        for round in 0..4u8 {
            let kv = open(dir);
            let mut batch = KvBatch::default();
            for i in 0..2_000u32 {
                batch.put(format!("env/{i:06}").into_bytes(), vec![round; 600]);
            }
            kv.engine().apply(batch).unwrap();
        }
        let kv = open(dir);
        let mut batch = KvBatch::default();
        for i in 0..2_000u32 {
            if i % 10 != 0 {
                batch.remove(format!("env/{i:06}").into_bytes());
            }
        }
        kv.engine().apply(batch).unwrap();
        drop(kv);
        let path = dir.join(crate::master_key::FILE_NAME);
        fs::write(&path, b"generation 1: not a real key").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        pairs(dir)
    }

    fn pairs(dir: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
        open(dir).engine().scan_prefix(b"").unwrap()
    }

    /// Compacts once sled's threads of the test's dropped handles let go of the directory.
    fn compact_when_free(data: &Path, keep_old: bool) -> Compacted {
        for _ in 0..500 {
            match compact(data, CACHE, keep_old) {
                Ok(done) => return done,
                Err(error) if format!("{error:#}").contains("in use") => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(error) => panic!("{error:#}"),
            }
        }
        panic!("{} stayed locked", data.display());
    }

    /// The store of `dir`, once sled's threads of a handle the test dropped let go of it.
    fn open(dir: &Path) -> SledStore {
        crate::store::fixtures::reopen_sled(dir)
    }

    #[test]
    fn compaction_keeps_every_pair_and_the_master_key_file_and_gives_back_space() {
        let parent = tempfile::tempdir().unwrap();
        let data = parent.path().join("haven-data");
        let live = churned(&data);
        assert_eq!(live.len(), 200);
        let done = compact_when_free(&data, false);
        assert_eq!(done.pairs, 200);
        let others = KindTally {
            pairs: 200,
            key_bytes: 200 * 10,
            value_bytes: 200 * 600,
        };
        assert_eq!(done.by_kind, BTreeMap::from([("other", others)]));
        assert!(
            done.bytes_after * 2 < done.bytes_before,
            "{} -> {}",
            done.bytes_before,
            done.bytes_after
        );
        assert_eq!(pairs(&data), live);
        let key_file = data.join(crate::master_key::FILE_NAME);
        assert_eq!(
            fs::read(&key_file).unwrap(),
            b"generation 1: not a real key"
        );
        let mode = fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let left: Vec<_> = fs::read_dir(parent.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("haven-data")]);
    }

    #[test]
    fn keep_old_leaves_the_old_directory_beside_it() {
        let parent = tempfile::tempdir().unwrap();
        let data = parent.path().join("haven-data");
        let live = churned(&data);
        compact_when_free(&data, true);
        assert_eq!(pairs(&data), live);
        assert_eq!(
            pairs(&parent.path().join("haven-data.before-compact")),
            live
        );
    }

    #[test]
    fn a_directory_in_use_or_not_sled_or_half_compacted_is_left_alone() {
        let parent = tempfile::tempdir().unwrap();
        let data = parent.path().join("haven-data");
        let live = churned(&data);
        {
            let _running = open(&data);
            let error = compact(&data, CACHE, false).unwrap_err();
            assert!(format!("{error:#}").contains("in use"), "{error:#}");
        }
        assert!(!parent.path().join("haven-data.compacting").exists());
        fs::create_dir(parent.path().join("haven-data.compacting")).unwrap();
        let error = compact(&data, CACHE, false).unwrap_err();
        assert!(error.to_string().contains("stopped half-way"), "{error}");
        assert_eq!(pairs(&data), live);
        let error = compact(&parent.path().join("typo"), CACHE, false).unwrap_err();
        assert!(error.to_string().contains("not a sled data directory"));
        assert!(!parent.path().join("typo").exists());
    }
}
