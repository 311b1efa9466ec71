//! `haven-bench report`: medians of Haven's runs and of the peer's runs (both stacks), the ratio
//! peer/Haven of each figure against the faster peer stack, and whether each target is met.
//! Prints a Markdown table; writes every median and per-run value as JSON.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use serde_json::{Value, json};

use crate::procfs::median;

#[derive(Debug, clap::Args)]
pub(crate) struct ReportArgs {
    /// Haven's run outputs (one JSON line each).
    #[arg(long, num_args = 0..)]
    haven: Vec<PathBuf>,
    /// The peer's per-run outputs, `current` stack.
    #[arg(long, num_args = 0..)]
    peer_current: Vec<PathBuf>,
    /// The peer's per-run outputs, `published` stack.
    #[arg(long, num_args = 0..)]
    peer_published: Vec<PathBuf>,
    /// Load averages seen around the runs, as text, for the record.
    #[arg(long, default_value = "")]
    load: String,
    /// Size in bytes of the release cdylib of haven-ffi, if one was built.
    #[arg(long)]
    lib_size: Option<u64>,
    /// Why there is no library size.
    #[arg(long, default_value = "")]
    lib_note: String,
    /// Where to write the JSON summary.
    #[arg(long)]
    out: Option<PathBuf>,
}

fn read_runs(paths: &[PathBuf]) -> anyhow::Result<Vec<Value>> {
    let mut runs = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
        let line = text.trim().lines().last().unwrap_or("{}");
        let value: Value = serde_json::from_str(line)
            .or_else(|_| serde_json::from_str(text.trim()))
            .with_context(|| format!("{} is not JSON", path.display()))?;
        if value["ok"].as_bool() == Some(true) {
            runs.push(value);
        } else {
            eprintln!("report: {} failed: {}", path.display(), value["error"]);
        }
    }
    Ok(runs)
}

fn get(value: &Value, path: &str) -> Option<f64> {
    path.split('.')
        .try_fold(value, |value, key| value.get(key))
        .and_then(Value::as_f64)
}

fn values(runs: &[Value], path: &str) -> Vec<f64> {
    runs.iter().filter_map(|run| get(run, path)).collect()
}

#[derive(Clone, Copy)]
enum Unit {
    Ms,
    Bytes,
    Count,
    Ratio,
}

fn show(value: Option<f64>, unit: Unit) -> String {
    match (value, unit) {
        (None, _) => "–".to_owned(),
        (Some(v), Unit::Ms) if v >= 10_000.0 => format!("{:.1} s", v / 1000.0),
        (Some(v), Unit::Ms) if v >= 100.0 => format!("{v:.0} ms"),
        (Some(v), Unit::Ms) => format!("{v:.2} ms"),
        (Some(v), Unit::Bytes) if v >= 1_048_576.0 => format!("{:.1} MiB", v / 1_048_576.0),
        (Some(v), Unit::Bytes) if v >= 10_240.0 => format!("{:.0} KiB", v / 1024.0),
        (Some(v), Unit::Bytes) => format!("{v:.0} B"),
        (Some(v), Unit::Count) => format!("{v:.0}"),
        (Some(v), Unit::Ratio) => format!("{v:.2}x"),
    }
}

/// Which way a ratio peer/Haven is good.
#[derive(Clone, Copy)]
enum Target {
    /// peer/Haven at least this.
    RatioAtLeast(f64),
    /// Haven's value at most this.
    HavenAtMost(f64),
    None,
}

struct Row {
    figure: &'static str,
    peer: Option<&'static str>,
    haven: &'static str,
    unit: Unit,
    target: Target,
    target_text: &'static str,
}

const fn row(
    figure: &'static str,
    peer: Option<&'static str>,
    haven: &'static str,
    unit: Unit,
    target: Target,
    target_text: &'static str,
) -> Row {
    Row {
        figure,
        peer,
        haven,
        unit,
        target,
        target_text,
    }
}

const MIB: f64 = 1_048_576.0;

fn rows() -> Vec<Row> {
    use Target::{HavenAtMost, RatioAtLeast};
    use Unit::{Bytes, Count, Ms, Ratio};
    vec![
        row(
            "W1 upload (N entries x 5 edits, until the server acked all)",
            Some("w1.uploadMs"),
            "w1.uploadMs",
            Ms,
            RatioAtLeast(8.0),
            "peer/Haven >= 8",
        ),
        row(
            "W1 upload, Haven profile in memory (no fsync; the peer's clients are in memory)",
            Some("w1.uploadMs"),
            "w1InMemory.uploadMs",
            Ms,
            Target::None,
            "",
        ),
        row(
            "W1 client CPU, Haven profile in memory",
            None,
            "w1InMemory.clientCpuMs",
            Ms,
            Target::None,
            "",
        ),
        row(
            "fdatasync of 4 KiB on this disk, p50, just before W1 (context)",
            None,
            "fsyncBeforeW1.p50Ms",
            Ms,
            Target::None,
            "",
        ),
        row(
            "W1 local create loop",
            Some("w1.localCreateMs"),
            "w1.localCreateMs",
            Ms,
            Target::None,
            "",
        ),
        row(
            "W1 client CPU (Haven: whole client process; peer: its create loop, ~all CPU)",
            Some("w1.localCreateMs"),
            "w1.clientCpuMs",
            Ms,
            Target::None,
            "",
        ),
        row(
            "W1 Automerge alone, same entries, 1 thread (Haven run)",
            None,
            "automergeW1.cpuMs",
            Ms,
            Target::None,
            "",
        ),
        row(
            "W2 fresh-device download + verify",
            Some("w2.downloadMs"),
            "w2.downloadMs",
            Ms,
            RatioAtLeast(8.0),
            "peer/Haven >= 8",
        ),
        row(
            "W2 floor: Automerge alone loading the same entries' compacted saves, 1 thread, CPU (Haven run)",
            None,
            "automergeW1.loadCompactedCpuMs",
            Ms,
            Target::None,
            "",
        ),
        row(
            "W2 log-in incl. key derivation (before the clock)",
            None,
            "w2.loginMs",
            Ms,
            Target::None,
            "",
        ),
        row(
            "W3 live latency p50 (paced)",
            Some("w3.p50Ms"),
            "w3.p50Ms",
            Ms,
            Target::None,
            "",
        ),
        row(
            "W3 live latency p95 (paced)",
            Some("w3.p95Ms"),
            "w3.p95Ms",
            Ms,
            Target::None,
            "",
        ),
        row(
            "W3 live latency p99 (paced)",
            Some("w3.p99Ms"),
            "w3.p99Ms",
            Ms,
            RatioAtLeast(2.0),
            "peer/Haven >= 2",
        ),
        row(
            "W3-burst p50",
            Some("w3burst.p50Ms"),
            "w3burst.p50Ms",
            Ms,
            Target::None,
            "",
        ),
        row(
            "W3-burst p99",
            Some("w3burst.p99Ms"),
            "w3burst.p99Ms",
            Ms,
            Target::None,
            "",
        ),
        row(
            "S1 server RSS idle",
            Some("server.rssIdleBytes"),
            "server.rssIdleBytes",
            Bytes,
            Target::None,
            "",
        ),
        row(
            "S1 server RSS after W1",
            Some("server.rssAfterW1Bytes"),
            "server.rssAfterW1Bytes",
            Bytes,
            RatioAtLeast(5.0),
            "peer/Haven >= 5",
        ),
        row(
            "S1 server peak RSS (Haven: until the restart)",
            Some("server.peakRssBytes"),
            "server.peakRssBeforeRestartBytes",
            Bytes,
            Target::None,
            "",
        ),
        row(
            "S1 storage after W1 (apparent bytes)",
            Some("storageAfterW1.bytes"),
            "storageAfterW1.bytes",
            Bytes,
            Target::None,
            "",
        ),
        row(
            "S1 storage after compaction (peer: settled after W1; Haven: after W2, a clean stop and `haven-server compact`)",
            Some("storageAfterW1.bytes"),
            "storageAfterCompact.bytes",
            Bytes,
            RatioAtLeast(2.0),
            "peer/Haven >= 2",
        ),
        row(
            "S1 floor: Automerge's compacted save() of the same entries, summed (Haven run; unencrypted, unpadded)",
            None,
            "automergeW1.compactedSaveBytes",
            Bytes,
            Target::None,
            "",
        ),
        row(
            "S1 storage after W1, allocated blocks",
            Some("storageAfterW1.blocksBytes"),
            "storageAfterW1.blocksBytes",
            Bytes,
            Target::None,
            "",
        ),
        row(
            "S1 storage after W1, files",
            Some("storageAfterW1.files"),
            "storageAfterW1.files",
            Count,
            Target::None,
            "",
        ),
        row(
            "S2 live connections (authenticated)",
            None,
            "s2.connections",
            Count,
            Target::None,
            "",
        ),
        row(
            "S2 fan-out p99 (edit -> all devices of one account)",
            None,
            "s2.fanoutAll.p99Ms",
            Ms,
            HavenAtMost(50.0),
            "< 50 ms",
        ),
        row(
            "S2 server RSS per connection",
            None,
            "s2.serverRssPerConnectionBytes",
            Bytes,
            Target::None,
            "",
        ),
        row(
            "S2 server RSS with all connections",
            None,
            "s2.serverRssConnectedBytes",
            Bytes,
            HavenAtMost(300.0 * MIB),
            "<= 300 MiB (full run)",
        ),
        row(
            "D1 open 10k-entry profile, ready to list",
            None,
            "d1.openMs",
            Ms,
            HavenAtMost(1000.0),
            "< 1 s",
        ),
        row(
            "D1 peak RSS of that process",
            None,
            "d1.peakRssBytes",
            Bytes,
            HavenAtMost(100.0 * MIB),
            "< 100 MiB",
        ),
        row(
            "Create an entry, commit to outbox (median)",
            None,
            "micro.createToOutbox.onDisk.p50Ms",
            Ms,
            HavenAtMost(2.0),
            "< 2 ms",
        ),
        row(
            "Apply 1,000 pulled entries: Haven CPU",
            None,
            "micro.applyPulled.havenCpuMs",
            Ms,
            Target::None,
            "",
        ),
        row(
            "Apply 1,000 pulled entries: Automerge alone CPU",
            None,
            "micro.applyPulled.automergeCpuMs",
            Ms,
            Target::None,
            "",
        ),
        row(
            "Apply: Haven/Automerge CPU ratio",
            None,
            "micro.applyPulled.cpuRatioHavenToAutomerge",
            Ratio,
            HavenAtMost(1.5),
            "<= 1.5",
        ),
    ]
}

pub(crate) fn run(args: &ReportArgs) -> anyhow::Result<()> {
    let haven = read_runs(&args.haven)?;
    let current = read_runs(&args.peer_current)?;
    let published = read_runs(&args.peer_published)?;
    let mut table = String::new();
    let mut summary = Vec::new();
    let n = haven
        .first()
        .and_then(|run| get(run, "config.n"))
        .unwrap_or(f64::NAN);
    writeln!(
        table,
        "| figure (N = {n}) | peer published | peer current | Haven | peer/Haven (faster peer) | target | met |"
    )?;
    writeln!(table, "|---|---|---|---|---|---|---|")?;
    for row in rows() {
        let h_runs = values(&haven, row.haven);
        let h = median(&h_runs);
        let (pp, pc) = match row.peer {
            Some(path) => (
                median(&values(&published, path)),
                median(&values(&current, path)),
            ),
            None => (None, None),
        };
        // The faster (smaller) of the two peer stacks.
        let best = match (pp, pc) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let ratio = match (best, h) {
            (Some(p), Some(h)) if h > 0.0 => Some(p / h),
            _ => None,
        };
        let met = match (row.target, ratio, h) {
            (Target::RatioAtLeast(min), Some(r), _) => Some(r >= min),
            (Target::HavenAtMost(max), _, Some(h)) => Some(h <= max),
            _ => None,
        };
        let h_text = if h_runs.len() > 1 {
            format!(
                "{} ({})",
                show(h, row.unit),
                h_runs
                    .iter()
                    .map(|v| show(Some(*v), row.unit))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            show(h, row.unit)
        };
        writeln!(
            table,
            "| {} | {} | {} | {} | {} | {} | {} |",
            row.figure,
            show(pp, row.unit),
            show(pc, row.unit),
            h_text,
            ratio.map_or("–".to_owned(), |r| format!("{r:.2}x")),
            row.target_text,
            match met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "",
            }
        )?;
        summary.push(json!({
            "figure": row.figure,
            "havenPath": row.haven,
            "peerPath": row.peer,
            "haven": h, "havenRuns": h_runs,
            "peerPublished": pp, "peerPublishedRuns": row.peer.map(|p| values(&published, p)),
            "peerCurrent": pc, "peerCurrentRuns": row.peer.map(|p| values(&current, p)),
            "ratioPeerToHaven": ratio,
            "target": row.target_text,
            "met": met,
        }));
    }
    let haven_w1_cpu = median(&values(&haven, "w1.clientCpuMs"));
    let automerge_w1 = median(&values(&haven, "automergeW1.cpuMs"));
    if let (Some(h), Some(a)) = (haven_w1_cpu, automerge_w1) {
        let ratio = h / a;
        writeln!(
            table,
            "| W1 client CPU: Haven/Automerge alone | | | {ratio:.2}x | | <= 1.5 | {} |",
            if ratio <= 1.5 { "yes" } else { "**no**" }
        )?;
    }
    match args.lib_size {
        Some(bytes) => writeln!(
            table,
            "| D1 library size (release cdylib of haven-ffi) | | | {} | | | |",
            show(Some(bytes as f64), Unit::Bytes)
        )?,
        None => writeln!(
            table,
            "| D1 library size (release cdylib of haven-ffi) | | | – ({}) | | | |",
            args.lib_note
        )?,
    }
    print!("{table}");
    if !args.load.is_empty() {
        println!("\nLoad averages (1/5/15 min) seen: {}", args.load);
    }
    if let Some(out) = &args.out {
        let value = json!({
            "rows": summary,
            "load": args.load,
            "libSize": args.lib_size,
            "libNote": args.lib_note,
            "havenRuns": haven.len(),
            "peerCurrentRuns": current.len(),
            "peerPublishedRuns": published.len(),
            "table": table,
        });
        std::fs::write(out, serde_json::to_string_pretty(&value)?)?;
    }
    Ok(())
}
