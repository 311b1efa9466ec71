//! The real `haven-server` as a child process on loopback: a temporary data directory, a port
//! chosen by the OS, the benchmark's own rate limits, stopped by its PID.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};

/// How to start a server.
#[derive(Debug, Clone)]
pub(crate) enum ServerCmd {
    /// A `haven-server` binary (release runs).
    Binary(PathBuf),
    /// This binary's `serve` subcommand: the same `haven_server::server::serve` (smoke tests).
    SelfServe,
}

/// A running server.
#[derive(Debug)]
pub(crate) struct ServerProc {
    child: Option<Child>,
    pub url: String,
    pub pid: u32,
}

/// Generous limits: thousands of logins from one loopback address are the benchmark, not an
/// attack. Everything else stays at the server's defaults.
const RATE_LIMIT_ARGS: [&str; 4] = [
    "--auth-attempts-per-address",
    "1000000",
    "--login-attempts-per-account",
    "1000000",
];

impl ServerProc {
    pub(crate) fn start(cmd: &ServerCmd, data: &Path) -> anyhow::Result<Self> {
        let mut command = match cmd {
            ServerCmd::Binary(path) => Command::new(path),
            ServerCmd::SelfServe => {
                let mut command =
                    Command::new(std::env::current_exe().context("finding this binary")?);
                command.arg("serve");
                command
            }
        };
        command
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--admin-listen")
            .arg("127.0.0.1:0")
            .arg("--data")
            .arg(data)
            .args(RATE_LIMIT_ARGS)
            .env(
                "HAVEN_LOG",
                std::env::var("HAVEN_BENCH_SERVER_LOG").unwrap_or("warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command
            .spawn()
            .with_context(|| format!("starting the server ({cmd:?})"))?;
        let pid = child.id();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("no server stdout"))?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Reads every line (so the pipe never fills) and reports the API address once.
            let mut sent = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if !sent && let Some(url) = line.strip_prefix("haven-server listening on ") {
                    let _ = tx.send(url.trim().to_owned());
                    sent = true;
                }
            }
        });
        let mut server = Self {
            child: Some(child),
            url: String::new(),
            pid,
        };
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => server.url = url,
            Err(_) => {
                server.kill();
                bail!("the server did not print its address within 60 s");
            }
        }
        Ok(server)
    }

    /// `(VmRSS, VmHWM)` of the server process, in bytes.
    pub(crate) fn rss(&self) -> (u64, u64) {
        crate::procfs::rss_of(&self.pid.to_string())
    }

    /// SIGTERM by PID (the server finishes requests and flushes), then waits up to 20 s; a
    /// server still running then is killed.
    pub(crate) fn stop(mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait()? {
                if !status.success() {
                    bail!("the server exited with {status}");
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the server did not stop within 20 s of SIGTERM; killed");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        self.kill();
    }
}
