//! W1 (upload), S1 (server memory and storage), W2 (fresh device), W3 (live latency): the peer
//! harness's workloads, run by real Haven devices against the real server process.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail, ensure};
use automerge::transaction::Transactable as _;
use automerge::{AutoCommit, ObjType, ROOT, ScalarValue};
use haven_protocol::DocId;
use serde::Serialize;
use serde_json::{Value, json};

use crate::Config;
use crate::device::{CALL_TIMEOUT, Device, username};
use crate::procfs::{self, DirUsage, dir_usage, latency, ms};
use crate::server::{ServerCmd, ServerProc};
use crate::text::{EntryPlan, Prng, plan_entry};

/// Local commits per W1 entry: create, tags, 5 splices, and the tag edit of the third edit (the
/// API has no create-with-tags and no multi-field edit).
fn commits_per_entry(k: usize) -> usize {
    2 + k + usize::from(k >= 3)
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct W1Out {
    upload_ms: f64,
    local_create_ms: f64,
    /// CPU (user + system) of the benchmark process while W1 ran: every client thread (editing,
    /// sealing, the sync rounds, HTTP), not the server, which is another process.
    client_cpu_ms: f64,
    docs: usize,
    edits_per_doc: usize,
    local_commits: usize,
    docs_per_sec: f64,
    sync_rounds: usize,
    envelopes_pushed: usize,
    /// Envelopes the rounds pulled back (this device's own, echoed by the server's log).
    envelopes_pulled: usize,
    snapshots: usize,
    /// Mean wall time of one local edit call (durable commit included), during W1.
    mean_commit_ms: f64,
    register_ms: f64,
}

/// Automerge alone, single thread, on the same entries: W1's bar for client CPU.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct AutomergeW1 {
    /// Build every entry as the peer does (one change with title, body, 2 tags, timestamps and
    /// edit count; 5 edit changes of a splice, `updatedAt`, `editCount`, a tag push in the
    /// third) and take each change's bytes (`get_last_local_change`), as a sync must.
    cpu_ms: f64,
    wall_ms: f64,
    changes: usize,
    change_bytes: usize,
    /// The same with the incremental save of every change (what an app persisting each change
    /// to disk also pays).
    with_save_cpu_ms: f64,
    /// The compacted `save()` of every finished entry, summed: what any store keeping these
    /// documents with their history holds at least, before encryption and padding (the floor
    /// of S1 storage; the peer's settled storage is about this).
    compacted_save_bytes: usize,
    /// Loading each of those saves (`AutoCommit::load`), one thread: W2's Automerge floor.
    load_compacted_cpu_ms: f64,
}

pub(crate) async fn run(
    cfg: &Config,
    server_cmd: &ServerCmd,
    work: &Path,
) -> anyhow::Result<Value> {
    let data = work.join("server-data");
    std::fs::create_dir_all(&data)?;
    let server = ServerProc::start(server_cmd, &data)?;
    crate::register_pid(server.pid);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss_idle, _) = server.rss();
    let storage_idle = dir_usage(&data);
    eprintln!(
        "[bench] server pid {} at {} (idle rss {} KiB)",
        server.pid,
        server.url,
        rss_idle / 1024
    );

    let mut rand = Prng::new(cfg.seed);
    let plans: Vec<EntryPlan> = (0..cfg.n)
        .map(|i| plan_entry(&mut rand, i, cfg.k, cfg.body_bytes))
        .collect();
    let plans = Arc::new(plans);

    // Automerge's own cost for the same entries, in this run, on one thread.
    let automerge_w1 = {
        let plans = Arc::clone(&plans);
        tokio::task::spawn_blocking(move || automerge_w1(&plans)).await??
    };

    // ----- W1 with an in-memory profile (as the peer's clients), on its own server -----
    let w1_in_memory = if cfg.w1_in_memory {
        let data = work.join("w1-memory-server-data");
        std::fs::create_dir_all(&data)?;
        let server = ServerProc::start(server_cmd, &data)?;
        crate::register_pid(server.pid);
        let device = Device::open_in_memory(&server.url)?;
        let register = device.register(&username("mem")).await?;
        device.sync().await?;
        let (out, _) = w1(cfg, &device, &plans, register).await?;
        eprintln!(
            "[bench] W1 (in-memory profile): acked after {:.0} ms (client cpu {:.0} ms)",
            out.upload_ms, out.client_cpu_ms
        );
        drop(device);
        server.stop()?;
        Some(out)
    } else {
        None
    };

    // ----- W1 -----
    let fsync_before_w1 = fsync_probe(work)?;
    let user = username("bench");
    let a = Device::open(&work.join("device-a"), &server.url)?;
    let register = a.register(&user).await?;
    a.sync().await?;
    let (w1, ids) = w1(cfg, &a, &plans, register).await?;
    eprintln!(
        "[bench] W1: {} entries acked after {:.0} ms (local {:.0} ms, client cpu {:.0} ms)",
        cfg.n, w1.upload_ms, w1.local_create_ms, w1.client_cpu_ms
    );

    // ----- S1 after W1 -----
    let storage_after_w1 = settle(&data).await;
    let (rss_after_w1, _) = server.rss();
    a.close()?;
    if cfg.stop_after_w1 {
        server.stop()?;
        return Ok(json!({
            "automergeW1": automerge_w1,
            "w1": w1,
            "w1InMemory": w1_in_memory,
            "server": { "rssIdleBytes": rss_idle, "rssAfterW1Bytes": rss_after_w1 },
            "storageAfterW1": storage_after_w1,
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    // ----- W2 -----
    let b = Device::open(&work.join("device-b"), &server.url)?;
    let login = b.login(&user).await?;
    let (w2, b_snapshots) = w2(cfg, &b, &plans, &ids, login).await?;
    eprintln!(
        "[bench] W2: {} entries verified after {:.0} ms",
        cfg.n, w2["downloadMs"]
    );
    let log = log_bytes(&b).await?;
    let (rss_after_w2, hwm_before_restart) = server.rss();
    let storage_after_w2 = settle(&data).await;
    b.close()?;

    // ----- S1 after a clean restart (SIGTERM: the server flushes; sled reopens its log) -----
    server.stop()?;
    let storage_after_restart = dir_usage(&data);
    // What an operator runs in a maintenance window: `haven-server compact` (the same code).
    // W3 then runs on the compacted directory, which shows it serves as before.
    let compact_started = Instant::now();
    let compacted = compact_when_unlocked(&data).await?;
    let compact_ms = ms(compact_started.elapsed());
    let storage_after_compact = dir_usage(&data);
    let server = ServerProc::start(server_cmd, &data)?;
    crate::register_pid(server.pid);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss_after_restart, _) = server.rss();
    let storage_after_reopen = settle(&data).await;

    // ----- W3 -----
    let a = Device::open(&work.join("device-a"), &server.url)?;
    let b = Device::open(&work.join("device-b"), &server.url)?;
    let w3 = w3(cfg, &a, &b, ids[0]).await?;
    let (rss_end, hwm_end) = server.rss();
    let storage_end = dir_usage(&data);
    drop(a);
    drop(b);
    server.stop()?;

    Ok(json!({
        "automergeW1": automerge_w1,
        "w1": w1,
        "w1InMemory": w1_in_memory,
        "fsyncBeforeW1": fsync_before_w1,
        "w2": w2,
        "w3": w3["paced"],
        "w3burst": w3["burst"],
        "server": {
            "rssIdleBytes": rss_idle,
            "rssAfterW1Bytes": rss_after_w1,
            "rssAfterW2Bytes": rss_after_w2,
            "peakRssBeforeRestartBytes": hwm_before_restart,
            "rssAfterRestartBytes": rss_after_restart,
            "rssEndBytes": rss_end,
            "peakRssAfterRestartBytes": hwm_end,
        },
        "storageIdle": storage_idle,
        "storageAfterW1": storage_after_w1,
        "storageAfterW2": storage_after_w2,
        "snapshotsByFreshDevice": b_snapshots,
        "logAfterW2": log,
        "storageAfterRestart": storage_after_restart,
        "storageAfterCompact": storage_after_compact,
        "compact": { "ms": compact_ms, "pairs": compacted.pairs, "byKind": compacted.by_kind },
        "storageAfterReopen": storage_after_reopen,
        "storageEnd": storage_end,
    }))
}

/// The account's log as the server holds it after W2 (outside every clock): live envelopes by
/// kind and their stored size (`Envelope::encode`, what the server writes per envelope).
async fn log_bytes(device: &Device) -> anyhow::Result<Value> {
    use haven_core::remote::{PullCursor, ServerApi as _};
    let access = device.tap.access().context("no access token")?;
    let space = device.haven.space().context("no space")?;
    let (mut after, mut at) = (0, None);
    let mut kinds: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    for _ in 0..100_000 {
        let page = device
            .tap
            .inner()
            .pull(
                Some(&access),
                &space,
                PullCursor {
                    after,
                    at,
                    limit: 1000,
                },
            )
            .await
            .map_err(|error| anyhow!("{error}"))?;
        for item in &page.changes {
            let entry = kinds
                .entry(item.envelope.kind.as_str().to_owned())
                .or_default();
            entry.0 += 1;
            entry.1 += item.envelope.encode().len() as u64;
            if item.seq > after {
                after = item.seq;
                at = Some(item.envelope.id);
            }
        }
        if page.caught_up || page.changes.is_empty() {
            break;
        }
    }
    let total: u64 = kinds.values().map(|(_, bytes)| bytes).sum();
    Ok(json!({ "encodedBytes": total, "byKind": kinds }))
}

/// This disk's durable-write latency right now: 100 fdatasyncs of a rewritten 4 KiB block, as a
/// redb commit makes (the disk is shared, and W1 on disk moves with it).
fn fsync_probe(work: &Path) -> anyhow::Result<Value> {
    use std::io::{Seek as _, SeekFrom, Write as _};
    let path = work.join("fsync-probe");
    let mut file = std::fs::File::create(&path)?;
    let block = [0x5a_u8; 4096];
    let mut samples = Vec::with_capacity(100);
    for i in 0..100_u64 {
        file.seek(SeekFrom::Start((i % 16) * 4096))?;
        file.write_all(&block)?;
        let start = Instant::now();
        file.sync_data()?;
        samples.push(start.elapsed());
    }
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(serde_json::to_value(latency(&samples))?)
}

/// Waits until the data directory stops growing (stable 1.5 s, at most 30 s), as the peer does.
async fn settle(dir: &Path) -> DirUsage {
    let start = Instant::now();
    let mut last = dir_usage(dir);
    let mut stable_since = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = dir_usage(dir);
        if now.bytes != last.bytes {
            last = now;
            stable_since = Instant::now();
        } else if stable_since.elapsed() >= Duration::from_millis(1500) {
            break;
        }
    }
    last
}

fn automerge_w1(plans: &[EntryPlan]) -> anyhow::Result<AutomergeW1> {
    #[derive(Clone, Copy, PartialEq)]
    enum Saves {
        /// Only the changes' bytes, as a sync needs.
        None,
        /// An incremental save after every change.
        EveryChange,
        /// One compacted save of each finished entry, kept (not timed).
        Compacted,
    }
    let mut compacted = Vec::new();
    let mut run = |saves: Saves| -> anyhow::Result<(Duration, Duration, usize, usize)> {
        let cpu = procfs::thread_cpu();
        let wall = Instant::now();
        let (mut changes, mut bytes) = (0, 0);
        let base = 1_735_689_600_000_i64; // 2025-01-01, as the peer
        for (i, plan) in plans.iter().enumerate() {
            let created = base + i64::try_from(i)? * 60_000;
            let mut doc = AutoCommit::new();
            doc.put(ROOT, "id", format!("entry-{i}"))?;
            let title = doc.put_object(ROOT, "title", ObjType::Text)?;
            doc.splice_text(&title, 0, 0, &plan.title)?;
            let body = doc.put_object(ROOT, "body", ObjType::Text)?;
            doc.splice_text(&body, 0, 0, &plan.body)?;
            let tags = doc.put_object(ROOT, "tags", ObjType::List)?;
            for (index, tag) in plan.tags.iter().enumerate() {
                doc.insert(&tags, index, tag.as_str())?;
            }
            doc.put(ROOT, "createdAt", ScalarValue::Timestamp(created))?;
            doc.put(ROOT, "updatedAt", ScalarValue::Timestamp(created))?;
            doc.put(ROOT, "editCount", ScalarValue::Uint(0))?;
            let mut emit = |doc: &mut AutoCommit| {
                doc.commit();
                if let Some(change) = doc.get_last_local_change() {
                    changes += 1;
                    bytes += change.raw_bytes().len();
                }
                if saves == Saves::EveryChange {
                    bytes += doc.save_incremental().len();
                }
            };
            emit(&mut doc);
            for (k, (position, insert)) in plan.edits.iter().enumerate() {
                let k = k + 1;
                doc.splice_text(&body, *position, 0, insert)?;
                doc.put(
                    ROOT,
                    "updatedAt",
                    ScalarValue::Timestamp(created + i64::try_from(k)? * 1000),
                )?;
                doc.put(ROOT, "editCount", ScalarValue::Uint(u64::try_from(k)?))?;
                if k == 3 {
                    let len = automerge::ReadDoc::length(&doc, &tags);
                    doc.insert(&tags, len, format!("tag-{k}").as_str())?;
                }
                emit(&mut doc);
            }
            if saves == Saves::Compacted {
                compacted.push(doc.save());
            }
        }
        Ok((procfs::thread_cpu() - cpu, wall.elapsed(), changes, bytes))
    };
    let (cpu, wall, changes, change_bytes) = run(Saves::None)?;
    let (save_cpu, _, _, _) = run(Saves::EveryChange)?;
    run(Saves::Compacted)?;
    let load_cpu = procfs::thread_cpu();
    for save in &compacted {
        AutoCommit::load(save)?;
    }
    let load_cpu = procfs::thread_cpu() - load_cpu;
    Ok(AutomergeW1 {
        cpu_ms: ms(cpu),
        wall_ms: ms(wall),
        changes,
        change_bytes,
        with_save_cpu_ms: ms(save_cpu),
        compacted_save_bytes: compacted.iter().map(Vec::len).sum(),
        load_compacted_cpu_ms: ms(load_cpu),
    })
}

async fn w1(
    cfg: &Config,
    a: &Device,
    plans: &Arc<Vec<EntryPlan>>,
    register: Duration,
) -> anyhow::Result<(W1Out, Vec<DocId>)> {
    let done = Arc::new(AtomicBool::new(false));
    let cpu0 = procfs::process_cpu();
    let start = Instant::now();
    let creator = {
        let haven = Arc::clone(&a.haven);
        let plans = Arc::clone(plans);
        let done = Arc::clone(&done);
        tokio::task::spawn_blocking(move || -> anyhow::Result<(Vec<DocId>, Instant)> {
            let result = (|| {
                let mut ids = Vec::with_capacity(plans.len());
                for plan in plans.iter() {
                    let id = haven.journal_create(&plan.title, &plan.body)?;
                    haven.journal_set_tags(&id, &plan.tags)?;
                    for (k, (position, insert)) in plan.edits.iter().enumerate() {
                        haven.journal_splice_body(&id, *position, 0, insert)?;
                        if k + 1 == 3 {
                            haven.journal_set_tags(&id, &plan.final_tags)?;
                        }
                    }
                    ids.push(id);
                }
                Ok::<_, haven_core::HavenError>(ids)
            })();
            done.store(true, Ordering::SeqCst);
            Ok((
                result.map_err(|error| anyhow!("W1 edit: {error}"))?,
                Instant::now(),
            ))
        })
    };
    // Sync overlaps creation: a round at most every `w1_sync_interval_ms` while creating (the
    // peer's sync is throttled to one message per document per 100 ms), then rounds until the
    // outbox is empty: every envelope acked by the server.
    let interval = Duration::from_millis(cfg.w1_sync_interval_ms);
    let deadline = Instant::now() + Duration::from_secs(cfg.timeout_s);
    let (mut rounds, mut pushed, mut pulled, mut snapshots) = (0, 0, 0, 0);
    loop {
        ensure!(Instant::now() < deadline, "W1: the outbox never drained");
        let finished = done.load(Ordering::SeqCst);
        let round_start = Instant::now();
        let report = a.sync().await?;
        rounds += 1;
        pushed += report.pushed;
        pulled += report.pulled;
        snapshots += report.snapshots;
        if finished && a.haven.status().pending == 0 {
            break;
        }
        if !finished {
            tokio::time::sleep(interval.saturating_sub(round_start.elapsed())).await;
        }
    }
    let acked = Instant::now();
    let cpu = procfs::process_cpu() - cpu0;
    let (ids, created) = creator.await??;
    let local_commits = cfg.n * commits_per_entry(cfg.k);
    let upload = acked - start;
    #[allow(clippy::cast_precision_loss)]
    let out = W1Out {
        upload_ms: ms(upload),
        local_create_ms: ms(created - start),
        client_cpu_ms: ms(cpu),
        docs: cfg.n,
        edits_per_doc: cfg.k,
        local_commits,
        docs_per_sec: procfs::round3(cfg.n as f64 / upload.as_secs_f64()),
        sync_rounds: rounds,
        envelopes_pushed: pushed,
        envelopes_pulled: pulled,
        snapshots,
        mean_commit_ms: procfs::round3(ms(created - start) / local_commits.max(1) as f64),
        register_ms: ms(register),
    };
    Ok((out, ids))
}

async fn w2(
    cfg: &Config,
    b: &Device,
    plans: &[EntryPlan],
    ids: &[DocId],
    login: Duration,
) -> anyhow::Result<(Value, usize)> {
    let cpu0 = procfs::process_cpu();
    let start = Instant::now();
    let deadline = start + Duration::from_secs(cfg.timeout_s);
    let (mut rounds, mut pulled, mut snapshots) = (0, 0, 0);
    loop {
        ensure!(Instant::now() < deadline, "W2: never caught up");
        let report = b.sync().await?;
        rounds += 1;
        pulled += report.pulled;
        snapshots += report.snapshots;
        let status = b.haven.status();
        if status.last_confirmed_seq >= status.server_head
            && b.haven.journal_list().len() >= ids.len()
        {
            break;
        }
    }
    let synced = Instant::now();
    // Every entry reads back with its final content (title, body, tags), exactly.
    let mut bad = 0;
    for (id, plan) in ids.iter().zip(plans) {
        match b.haven.journal_get(id) {
            Ok(entry)
                if entry.title == plan.title
                    && entry.body == plan.final_body
                    && entry.tags == plan.final_tags => {}
            _ => bad += 1,
        }
    }
    let verified = Instant::now();
    let cpu = procfs::process_cpu() - cpu0;
    if bad > 0 {
        bail!("W2: {bad} entries had wrong content");
    }
    #[allow(clippy::cast_precision_loss)]
    Ok((
        json!({
            "downloadMs": ms(verified - start),
            "syncMs": ms(synced - start),
            "verifyMs": ms(verified - synced),
            "clientCpuMs": ms(cpu),
            "loginMs": ms(login),
            "docs": cfg.n,
            "verified": ids.len() - bad,
            "rounds": rounds,
            "envelopesPulled": pulled,
            "docsPerSec": procfs::round3(cfg.n as f64 / (verified - start).as_secs_f64()),
        }),
        snapshots,
    ))
}

/// What W3's timed loop needs between phases.
struct W3State<'a> {
    a: &'a Device,
    id: DocId,
    reports: tokio::sync::mpsc::UnboundedReceiver<(Instant, usize)>,
    expected_chars: usize,
}

impl W3State<'_> {
    /// `reps` edits, each `gap` after the previous one was seen (0: at once).
    async fn phase(&mut self, reps: usize, gap: Duration) -> anyhow::Result<Value> {
        let mut samples = Vec::with_capacity(reps);
        let (mut appends, mut syncs) = (Vec::new(), Vec::new());
        let mut timeouts = 0usize;
        for _ in 0..reps {
            if !gap.is_zero() {
                tokio::time::sleep(gap).await;
            }
            while self.reports.try_recv().is_ok() {}
            let start = Instant::now();
            self.a
                .haven
                .journal_append_body(&self.id, "x")
                .map_err(|error| anyhow!("W3 edit: {error}"))?;
            let appended = Instant::now();
            self.expected_chars += 1;
            self.a.sync().await?;
            appends.push(appended - start);
            syncs.push(appended.elapsed());
            let deadline = start + Duration::from_secs(10);
            let seen = loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, self.reports.recv()).await {
                    // The first round after which B's body holds this edit.
                    Ok(Some((at, chars))) if at >= start && chars >= self.expected_chars => {
                        break Some(at);
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => bail!("W3: live sync ended"),
                    Err(_) => break None,
                }
            };
            match seen {
                Some(at) => samples.push(at.saturating_duration_since(start)),
                None => timeouts += 1,
            }
        }
        let stats = latency(&samples);
        let mut value = serde_json::to_value(stats)?;
        value["gapMs"] = json!(gap.as_millis());
        value["reps"] = json!(reps);
        value["timeouts"] = json!(timeouts);
        // The writer's local edit (durable commit) and its sync round (push, then pull).
        value["writerAppend"] = serde_json::to_value(latency(&appends))?;
        value["writerSyncRound"] = serde_json::to_value(latency(&syncs))?;
        Ok(value)
    }
}

/// W3: B runs live sync (`run_live`); A edits entry `id` (appends one character, then runs a sync
/// round, as an app pushes an edit); the clock stops when B's live round reports the entry
/// changed and B reads the new body.
async fn w3(cfg: &Config, a: &Device, b: &Device, id: DocId) -> anyhow::Result<Value> {
    let (reports_tx, reports) = tokio::sync::mpsc::unbounded_channel::<(Instant, usize)>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let live = {
        let haven = Arc::clone(&b.haven);
        let reader = Arc::clone(&b.haven);
        tokio::spawn(async move {
            haven
                .run_live(
                    async move {
                        let _ = stop_rx.await;
                    },
                    // Runs after each live round, with the engine's locks released: the time the
                    // round ended and the body length B reads right then.
                    move |round| {
                        let at = Instant::now();
                        if round
                            .as_ref()
                            .is_ok_and(|report| report.changed.contains(&id))
                        {
                            let chars = reader
                                .journal_get(&id)
                                .map_or(0, |entry| entry.body.chars().count());
                            let _ = reports_tx.send((at, chars));
                        }
                    },
                )
                .await
        })
    };
    a.sync().await?;
    let expected_chars = a
        .haven
        .journal_get(&id)
        .map_err(|error| anyhow!("{error}"))?
        .body
        .chars()
        .count();
    let mut state = W3State {
        a,
        id,
        reports,
        expected_chars,
    };
    let result = async {
        state
            .phase(cfg.w3_warmup, Duration::from_millis(250))
            .await?;
        a.tap.start_timing();
        b.tap.start_timing();
        let mut paced = state
            .phase(cfg.w3, Duration::from_millis(cfg.w3_gap_ms))
            .await?;
        // Where the paced edits' time went on the wire (the server's fsync is inside `push`).
        paced["writerCalls"] = a.tap.take_timing();
        paced["readerCalls"] = b.tap.take_timing();
        let burst = state.phase(cfg.w3_burst, Duration::ZERO).await?;
        Ok::<_, anyhow::Error>(json!({ "paced": paced, "burst": burst }))
    }
    .await;
    let _ = stop_tx.send(());
    let ended = tokio::time::timeout(CALL_TIMEOUT, live)
        .await
        .context("live sync did not stop")?;
    let result = result?;
    ended
        .context("live task")?
        .map_err(|error| anyhow!("run_live: {error}"))?;
    eprintln!(
        "[bench] W3 paced p50/p95/p99 {}/{}/{} ms",
        result["paced"]["p50Ms"], result["paced"]["p95Ms"], result["paced"]["p99Ms"]
    );
    Ok(result)
}

/// Runs `haven-server compact` on `data` once the stopped server's lock is gone (bounded).
async fn compact_when_unlocked(
    data: &Path,
) -> anyhow::Result<haven_server::compact_cli::Compacted> {
    let cache = haven_server::store::sled_kv::DEFAULT_CACHE_BYTES;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match haven_server::compact_cli::compact(data, cache, false) {
            Ok(done) => return Ok(done),
            Err(error) if format!("{error:#}").contains("in use") && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => return Err(error.context("compacting the data directory")),
        }
    }
}
