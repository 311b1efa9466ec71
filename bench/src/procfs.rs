//! Figures read from Linux `/proc`: CPU time, RSS, load, and the size of a directory.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

/// Clock ticks per second of `/proc/*/stat` (USER_HZ; 100 on every Linux we run on).
const USER_HZ: f64 = 100.0;

/// CPU time (user + system) of this whole process, every thread, finished ones included.
/// Resolution: 10 ms.
pub(crate) fn process_cpu() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // Fields after the command name, which may hold spaces: `) state ppid ...`; utime and stime
    // are fields 14 and 15 of the whole line, 11 and 12 after the state.
    let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
        return Duration::ZERO;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|value| value.parse::<u64>().ok())
            .unwrap_or(0)
    };
    #[allow(clippy::cast_precision_loss)]
    let seconds = (ticks(11) + ticks(12)) as f64 / USER_HZ;
    Duration::from_secs_f64(seconds)
}

/// CPU time of the calling thread, in nanoseconds (`/proc/thread-self/schedstat`).
pub(crate) fn thread_cpu() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<u64>().ok())
        .map(Duration::from_nanos)
        .unwrap_or_default()
}

/// `(VmRSS, VmHWM)` of a process, in bytes.
pub(crate) fn rss_of(pid: &str) -> (u64, u64) {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return (0, 0);
    };
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The 1-, 5- and 15-minute load averages.
pub(crate) fn loadavg() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut values = text
        .split_whitespace()
        .map(|value| value.parse::<f64>().unwrap_or(f64::NAN));
    [
        values.next().unwrap_or(f64::NAN),
        values.next().unwrap_or(f64::NAN),
        values.next().unwrap_or(f64::NAN),
    ]
}

/// Bytes of a directory tree, counted as the peer counts them.
#[derive(Debug, Clone, Copy, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DirUsage {
    /// Sum of the files' apparent sizes (`st_size`).
    pub bytes: u64,
    pub files: u64,
    /// Sum of the blocks allocated to them (`st_blocks * 512`).
    pub blocks_bytes: u64,
}

pub(crate) fn dir_usage(dir: &Path) -> DirUsage {
    use std::os::unix::fs::MetadataExt as _;
    let mut usage = DirUsage::default();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&path) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                usage.bytes += meta.len();
                usage.files += 1;
                usage.blocks_bytes += meta.blocks() * 512;
            }
        }
    }
    usage
}

/// The machine, for the record.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub mem_total_bytes: u64,
    pub kernel: String,
}

pub(crate) fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_total_bytes = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024);
    Machine {
        cpus: std::thread::available_parallelism().map_or(0, usize::from),
        cpu_model,
        mem_total_bytes,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_owned(),
    }
}

/// Percentiles as the peer computes them (`ceil(p/100 * n) - 1`, nearest rank).
#[derive(Debug, Clone, Copy, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Latency {
    pub count: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

pub(crate) fn latency(samples: &[Duration]) -> Latency {
    let mut ms: Vec<f64> = samples
        .iter()
        .map(|sample| sample.as_secs_f64() * 1000.0)
        .collect();
    ms.sort_by(f64::total_cmp);
    if ms.is_empty() {
        return Latency::default();
    }
    let pick = |p: f64| {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let rank = ((p / 100.0) * ms.len() as f64).ceil() as usize;
        round3(ms[rank.saturating_sub(1).min(ms.len() - 1)])
    };
    #[allow(clippy::cast_precision_loss)]
    let mean = ms.iter().sum::<f64>() / ms.len() as f64;
    Latency {
        count: ms.len(),
        p50_ms: pick(50.0),
        p95_ms: pick(95.0),
        p99_ms: pick(99.0),
        min_ms: round3(ms[0]),
        max_ms: round3(ms[ms.len() - 1]),
        mean_ms: round3(mean),
    }
}

pub(crate) fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

pub(crate) fn ms(duration: Duration) -> f64 {
    round3(duration.as_secs_f64() * 1000.0)
}

/// The median of some numbers (the mean of the middle two for an even count).
pub(crate) fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    })
}
