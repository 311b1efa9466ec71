//! The issue-3 micro-benchmarks: create an entry and commit it to the outbox; apply 1,000 pulled
//! entries (5 changes each) against Automerge's own cost for the same work, in the same run.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure};
use automerge::{AutoCommit, Change};
use haven_core::client::export::ExportFormat;
use serde_json::{Value, json};

use crate::Config;
use crate::device::{Device, username};
use crate::procfs::{self, latency, ms};
use crate::text::Prng;

pub(crate) async fn run(cfg: &Config, url: &str, work: &Path) -> anyhow::Result<Value> {
    let create = create_to_outbox(cfg, url, work).await?;
    let apply = apply_pulled(cfg, url, work).await?;
    Ok(json!({ "createToOutbox": create, "applyPulled": apply }))
}

/// `journal_create` of a ~1 KB entry on a logged-in on-disk profile: the entry, its summary, the
/// journal index and two sealed envelopes in the outbox, in one durable commit.
async fn create_to_outbox(cfg: &Config, url: &str, work: &Path) -> anyhow::Result<Value> {
    let device = Device::open(&work.join("micro-create"), url)?;
    device.register(&username("micro")).await?;
    device.sync().await?;
    let mut rand = Prng::new(cfg.seed ^ 0xc0);
    let mut samples = Vec::with_capacity(cfg.micro_creates);
    let mut cpu = Duration::ZERO;
    for i in 0..cfg.micro_creates {
        let title = format!("Entry {i}");
        let body = rand.text(cfg.body_bytes);
        let cpu0 = procfs::thread_cpu();
        let start = Instant::now();
        device
            .haven
            .journal_create(&title, &body)
            .map_err(|error| anyhow!("{error}"))?;
        samples.push(start.elapsed());
        cpu += procfs::thread_cpu() - cpu0;
    }
    let pending = device.haven.status().pending;
    ensure!(
        pending >= cfg.micro_creates,
        "the outbox holds {pending} envelopes"
    );
    #[allow(clippy::cast_precision_loss)]
    let mean_cpu = ms(cpu) / cfg.micro_creates.max(1) as f64;
    Ok(json!({
        "onDisk": latency(&samples),
        "meanCpuMs": procfs::round3(mean_cpu),
        "creates": cfg.micro_creates,
    }))
}

/// Device P writes the entries and pushes them. Device Q, fresh, pulls them over HTTP while
/// the pages are recorded. Device R, fresh, gets the same pages from memory: its sync round is
/// the measured apply (open or verify every envelope, apply the changes, save each document,
/// summaries, index, cursor, durable commits). Automerge alone then applies the same raw
/// changes, entry by entry (parse, apply, save).
async fn apply_pulled(cfg: &Config, url: &str, work: &Path) -> anyhow::Result<Value> {
    let entries = cfg.micro_apply_entries;
    let changes_per_entry = cfg.micro_apply_changes.max(1);
    let user = username("apply");
    let p = Device::open(&work.join("micro-apply-p"), url)?;
    p.register(&user).await?;
    let mut rand = Prng::new(cfg.seed ^ 0xa9);
    for i in 0..entries {
        let id = p
            .haven
            .journal_create(&format!("Entry {i}"), &rand.text(cfg.body_bytes))
            .map_err(|error| anyhow!("{error}"))?;
        for edit in 1..changes_per_entry {
            let position = rand.below(cfg.body_bytes);
            p.haven
                .journal_splice_body(
                    &id,
                    position,
                    0,
                    &format!(" [edit {edit}: {}]", rand.text(12).trim()),
                )
                .map_err(|error| anyhow!("{error}"))?;
        }
        if i % 250 == 249 {
            p.sync().await?;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(cfg.timeout_s);
    while p.haven.status().pending > 0 {
        if Instant::now() > deadline {
            bail!("apply: P's outbox never drained");
        }
        p.sync().await?;
    }
    let export = work.join("micro-apply-export");
    p.haven
        .export_journal(ExportFormat::Automerge, &export)
        .map_err(|error| anyhow!("{error}"))?;
    p.close()?;

    // Q: over HTTP, recording.
    let q = Device::open(&work.join("micro-apply-q"), url)?;
    q.login(&user).await?;
    q.tap.start_recording();
    let cpu0 = procfs::process_cpu();
    let start = Instant::now();
    let q_report = q.sync().await?;
    let q_wall = start.elapsed();
    let q_cpu = procfs::process_cpu() - cpu0;
    let pages = Arc::new(q.tap.take_recording());
    ensure!(
        q.haven.journal_list().len() == entries,
        "Q did not get every entry"
    );
    q.close()?;

    // R: the same pages from memory.
    let r = Device::open(&work.join("micro-apply-r"), url)?;
    r.login(&user).await?;
    r.tap.replay(Arc::clone(&pages));
    let cpu0 = procfs::process_cpu();
    let start = Instant::now();
    let r_report = r.sync().await?;
    let r_wall = start.elapsed();
    let r_cpu = procfs::process_cpu() - cpu0;
    ensure!(
        r.haven.journal_list().len() == entries,
        "R did not get every entry"
    );
    let replayed = r.tap.replayed();
    r.close()?;

    // Automerge alone, same raw changes, one thread.
    let docs = std::fs::read_dir(&export)?
        .filter_map(Result::ok)
        .filter(|file| {
            file.path()
                .extension()
                .is_some_and(|ext| ext == "automerge")
        })
        .map(|file| std::fs::read(file.path()))
        .collect::<Result<Vec<_>, _>>()?;
    ensure!(
        docs.len() == entries,
        "export wrote {} documents",
        docs.len()
    );
    let raw: Vec<Vec<Vec<u8>>> = docs
        .iter()
        .map(|bytes| {
            let mut doc = AutoCommit::load(bytes)?;
            Ok(doc
                .get_changes(&[])
                .into_iter()
                .map(|change| change.raw_bytes().to_vec())
                .collect())
        })
        .collect::<Result<_, automerge::AutomergeError>>()?;
    let change_count: usize = raw.iter().map(Vec::len).sum();
    // `one_by_one`: one `apply_changes` call per change, as the engine applies one envelope
    // (here one change) at a time; otherwise all of an entry's changes in one call.
    type Timed = (Duration, Duration, usize);
    let automerge = tokio::task::spawn_blocking(move || -> anyhow::Result<[Timed; 2]> {
        let run = |one_by_one: bool| -> anyhow::Result<Timed> {
            let cpu0 = procfs::thread_cpu();
            let start = Instant::now();
            let mut saved = 0;
            for changes in &raw {
                let parsed = changes
                    .iter()
                    .map(|bytes| Change::from_bytes(bytes.clone()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|error| anyhow!("{error}"))?;
                let mut doc = AutoCommit::new();
                if one_by_one {
                    for change in parsed {
                        doc.apply_changes([change])?;
                    }
                } else {
                    doc.apply_changes(parsed)?;
                }
                saved += doc.save().len();
            }
            Ok((procfs::thread_cpu() - cpu0, start.elapsed(), saved))
        };
        Ok([run(false)?, run(true)?])
    })
    .await??;
    let [(am_cpu, am_wall, am_saved), (one_cpu, _, _)] = automerge;
    Ok(json!({
        "entries": entries,
        "changesPerEntry": changes_per_entry,
        "entryChanges": change_count,
        "envelopesApplied": r_report.pulled,
        "pagesReplayed": replayed,
        "havenWallMs": ms(r_wall),
        "havenCpuMs": ms(r_cpu),
        "automergeWallMs": ms(am_wall),
        "automergeCpuMs": ms(am_cpu),
        "automergeSavedBytes": am_saved,
        "automergeOneCallPerChangeCpuMs": ms(one_cpu),
        "cpuRatioHavenToAutomerge": procfs::round3(r_cpu.as_secs_f64() / am_cpu.as_secs_f64().max(1e-9)),
        "wallRatioHavenToAutomerge": procfs::round3(r_wall.as_secs_f64() / am_wall.as_secs_f64().max(1e-9)),
        "overHttp": { "wallMs": ms(q_wall), "cpuMs": ms(q_cpu), "envelopes": q_report.pulled },
    }))
}
