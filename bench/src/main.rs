//! `haven-bench`: Haven's side of the side-by-side benchmarks (issue 8) and the issue-3
//! micro-benchmarks. `haven-bench run` prints exactly one JSON line on stdout with every figure
//! (progress goes to stderr); every wait is bounded and a global timeout ends the run.
//! `scripts/bench` builds it in release mode and runs it next to the automerge-repo peer.

mod d1;
mod device;
mod micro;
mod procfs;
mod report;
mod s2;
mod server;
mod tap;
mod text;
mod workloads;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use serde_json::{Value, json};

use crate::server::{ServerCmd, ServerProc};

#[derive(Debug, Parser)]
#[command(name = "haven-bench", about = "Haven's benchmarks (issue 8)")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the workloads; one JSON line on stdout.
    Run(Config),
    /// Run haven-server's own `serve` in this process (used with `--server self`).
    #[command(hide = true)]
    Serve {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// D1's child: open a profile, list it, print time and peak RSS as JSON.
    #[command(hide = true)]
    D1Open {
        #[arg(long)]
        profile: Option<PathBuf>,
        #[arg(long, default_value_t = 0)]
        expect: usize,
        #[arg(long)]
        baseline: bool,
    },
    /// Medians of Haven's runs and the peer's, and the table with the ratios peer/Haven.
    Report(report::ReportArgs),
}

/// Sizes and switches of a run. Defaults: the peer's defaults and the sizes.
#[derive(Debug, Clone, Args, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Config {
    /// `haven-server` binary, or `self` for this binary's `serve` (debug smoke runs).
    #[arg(long, default_value = "self")]
    pub server: String,
    /// Sections to run, comma-separated: w (W1, S1, W2, W3), s2, d1, micro.
    #[arg(long, default_value = "w,s2,d1,micro")]
    pub only: String,
    /// Entries of W1/W2.
    #[arg(long, default_value_t = 1000)]
    pub n: usize,
    /// Edits per entry.
    #[arg(long, default_value_t = 5)]
    pub k: usize,
    #[arg(long, default_value_t = 1024)]
    pub body_bytes: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u32,
    /// Least time between the starts of two sync rounds while W1 is still creating.
    #[arg(long, default_value_t = 100)]
    pub w1_sync_interval_ms: u64,
    #[arg(long, default_value_t = 5)]
    pub w3_warmup: usize,
    #[arg(long, default_value_t = 200)]
    pub w3: usize,
    #[arg(long, default_value_t = 200)]
    pub w3_gap_ms: u64,
    /// Burst repetitions (no gap); 0 turns it off.
    #[arg(long, default_value_t = 200)]
    pub w3_burst: usize,
    #[arg(long, default_value_t = 1000)]
    pub s2_conns: usize,
    #[arg(long, default_value_t = 4)]
    pub s2_accounts: usize,
    #[arg(long, default_value_t = 50)]
    pub s2_edits: usize,
    #[arg(long, default_value_t = 100)]
    pub s2_gap_ms: u64,
    #[arg(long, default_value_t = 64)]
    pub s2_connect_concurrency: usize,
    #[arg(long, default_value_t = 10_000)]
    pub d1_entries: usize,
    #[arg(long, default_value_t = 3)]
    pub d1_opens: usize,
    #[arg(long, default_value_t = 200)]
    pub micro_creates: usize,
    #[arg(long, default_value_t = 1000)]
    pub micro_apply_entries: usize,
    #[arg(long, default_value_t = 5)]
    pub micro_apply_changes: usize,
    /// Also run W1 with an in-memory profile (no fsync), on its own server.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub w1_in_memory: bool,
    /// Stop the `w` section after W1 and S1-after-W1 (for profiling W1 alone).
    #[arg(long)]
    pub stop_after_w1: bool,
    /// Where the D1 profile is cached between runs (default: a temporary directory).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Parent of this run's temporary directory.
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Global time limit of the run.
    #[arg(long, default_value_t = 1800)]
    pub timeout_s: u64,
}

/// Server processes started by this run, killed by PID if the global timeout fires.
static SERVER_PIDS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

pub(crate) fn register_pid(pid: u32) {
    SERVER_PIDS
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
        .push(pid);
}

fn kill_registered() {
    let pids = SERVER_PIDS
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
        .clone();
    for pid in pids {
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::process::Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
        }
    }
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Cmd::Run(config) => run(config),
        Cmd::Serve { args } => serve(args),
        Cmd::D1Open {
            profile,
            expect,
            baseline,
        } => {
            let profile = if baseline { None } else { profile };
            match d1::open_child(profile.as_deref(), expect) {
                Ok(value) => {
                    println!("{value}");
                    0
                }
                Err(error) => {
                    eprintln!("d1-open: {error:#}");
                    1
                }
            }
        }
        Cmd::Report(args) => match report::run(&args) {
            Ok(()) => 0,
            Err(error) => {
                eprintln!("report: {error:#}");
                1
            }
        },
    };
    std::process::exit(code);
}

fn serve(args: Vec<String>) -> i32 {
    use clap::Parser as _;
    let cli = haven_server::config::Cli::parse_from(
        std::iter::once("haven-server".to_owned()).chain(args),
    );
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("serve: {error}");
            return 1;
        }
    };
    match runtime.block_on(haven_server::server::serve(cli.serve)) {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("serve: {error:#}");
            1
        }
    }
}

fn run(config: Config) -> i32 {
    let timeout = Duration::from_secs(config.timeout_s);
    {
        let config = config.clone();
        std::thread::spawn(move || {
            std::thread::sleep(timeout);
            eprintln!("[bench] GLOBAL TIMEOUT after {} s", config.timeout_s);
            println!(
                "{}",
                json!({"ok": false, "error": format!("global timeout {} s", config.timeout_s), "config": config})
            );
            kill_registered();
            std::process::exit(3);
        });
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            println!("{}", json!({"ok": false, "error": error.to_string()}));
            return 1;
        }
    };
    let result = runtime.block_on(run_sections(&config));
    let code = match result {
        Ok(value) => {
            println!("{value}");
            0
        }
        Err(error) => {
            eprintln!("[bench] FAILED: {error:#}");
            println!(
                "{}",
                json!({"ok": false, "error": format!("{error:#}"), "config": config})
            );
            1
        }
    };
    runtime.shutdown_timeout(Duration::from_secs(5));
    kill_registered();
    code
}

async fn run_sections(config: &Config) -> anyhow::Result<Value> {
    let started = Instant::now();
    let load_start = procfs::loadavg();
    let server_cmd = if config.server == "self" {
        ServerCmd::SelfServe
    } else {
        ServerCmd::Binary(PathBuf::from(&config.server))
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix("haven-bench-");
    let work = match &config.work_dir {
        Some(parent) => builder.tempdir_in(parent),
        None => builder.tempdir(),
    }
    .context("making the run's temporary directory")?;
    let cache = match &config.cache_dir {
        Some(dir) => dir.clone(),
        None => work.path().join("cache"),
    };
    std::fs::create_dir_all(&cache)?;
    let sections: Vec<&str> = config.only.split(',').map(str::trim).collect();
    let mut out = json!({
        "ok": true,
        "bench": "haven",
        "config": config,
        "machine": procfs::machine(),
        "versions": { "havenCore": env!("CARGO_PKG_VERSION"), "automerge": "0.12", "profile": if cfg!(debug_assertions) { "debug" } else { "release" } },
        "loadavgStart": load_start,
    });
    if sections.contains(&"w") {
        let value = workloads::run(config, &server_cmd, work.path()).await?;
        merge(&mut out, value);
    }
    if sections.contains(&"s2") {
        out["s2"] = s2::run(config, &server_cmd, work.path()).await?;
    }
    // D1 and the micro-benchmarks share one server, started only if needed.
    let mut shared: Option<ServerProc> = None;
    let mut shared_url = |work: &std::path::Path| -> anyhow::Result<String> {
        if shared.is_none() {
            let data = work.join("micro-server-data");
            std::fs::create_dir_all(&data)?;
            let server = ServerProc::start(&server_cmd, &data)?;
            register_pid(server.pid);
            shared = Some(server);
        }
        Ok(shared
            .as_ref()
            .map(|server| server.url.clone())
            .unwrap_or_default())
    };
    if sections.contains(&"d1") {
        let url = std::cell::RefCell::new(&mut shared_url);
        let get = || (url.borrow_mut())(work.path());
        let (profile, built) = d1::ensure_profile(config, &cache, &get).await?;
        let mut value = d1::measure(&profile, config.d1_entries, config.d1_opens)?;
        value["build"] = built;
        out["d1"] = value;
    }
    if sections.contains(&"micro") {
        let url = shared_url(work.path())?;
        out["micro"] = micro::run(config, &url, work.path()).await?;
    }
    if let Some(server) = shared.take() {
        server.stop()?;
    }
    out["loadavgEnd"] = json!(procfs::loadavg());
    out["totalMs"] = json!(procfs::ms(started.elapsed()));
    Ok(out)
}

fn merge(into: &mut Value, from: Value) {
    if let (Some(into), Value::Object(from)) = (into.as_object_mut(), from) {
        into.extend(from);
    }
}
