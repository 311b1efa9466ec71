//! D1: open a profile holding many journal entries until the list is ready, in a child process
//! (time and peak RSS); the profile is built once and cached.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use haven_core::env::{OsRandom, Random};
use haven_core::local_store::{FileKeyStore, KeyStore};
use haven_core::remote::NoServer;
use haven_core::{Haven, HavenConfig};
use serde_json::{Value, json};

use crate::Config;
use crate::device::{Device, username};
use crate::procfs::{self, median, ms};
use crate::text::Prng;

const BUILT_MARKER: &str = "built.json";

/// The cached profile of `entries` entries, built against `url` if it is not there yet.
pub(crate) async fn ensure_profile(
    cfg: &Config,
    cache: &Path,
    url: &dyn Fn() -> anyhow::Result<String>,
) -> anyhow::Result<(PathBuf, Value)> {
    let dir = cache.join(format!("d1-profile-{}", cfg.d1_entries));
    let marker = cache.join(format!("d1-profile-{}.{BUILT_MARKER}", cfg.d1_entries));
    if let Ok(text) = std::fs::read_to_string(&marker) {
        let built: Value = serde_json::from_str(&text)?;
        return Ok((dir, built));
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    let url = url()?;
    eprintln!(
        "[bench] D1: building a profile of {} entries (once; cached in {})",
        cfg.d1_entries,
        cache.display()
    );
    let device = Device::open(&dir, &url)?;
    device.register(&username("d1")).await?;
    device.sync().await?;
    let mut rand = Prng::new(cfg.seed ^ 0xd1);
    let start = Instant::now();
    for i in 0..cfg.d1_entries {
        let title = format!("Entry {i}: {}", rand.text(30).trim());
        let body = rand.text(cfg.body_bytes);
        let id = device
            .haven
            .journal_create(&title, &body)
            .map_err(|error| anyhow!("{error}"))?;
        device
            .haven
            .journal_set_tags(&id, &["journal".to_owned(), format!("t{}", i % 7)])
            .map_err(|error| anyhow!("{error}"))?;
        if i % 2000 == 1999 {
            device.sync().await?;
        }
    }
    let create = start.elapsed();
    // A profile as a phone has it: synced, nothing waiting in the outbox.
    let deadline = Instant::now() + Duration::from_secs(cfg.timeout_s);
    while device.haven.status().pending > 0 {
        if Instant::now() > deadline {
            bail!("D1: the profile's outbox never drained");
        }
        device.sync().await?;
    }
    device.close()?;
    let usage = procfs::dir_usage(&dir);
    let built = json!({
        "entries": cfg.d1_entries,
        "buildMs": ms(start.elapsed()),
        "createMs": ms(create),
        "profileBytes": usage.bytes,
    });
    std::fs::write(&marker, built.to_string())?;
    Ok((dir, built))
}

/// Runs `haven-bench d1-open` `opens` times and reports each run and the medians.
pub(crate) fn measure(profile: &Path, expect: usize, opens: usize) -> anyhow::Result<Value> {
    let exe = std::env::current_exe()?;
    let run = |args: &[&str]| -> anyhow::Result<Value> {
        let output = Command::new(&exe)
            .arg("d1-open")
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .context("running d1-open")?;
        if !output.status.success() {
            bail!("d1-open failed: {}", output.status);
        }
        let line = String::from_utf8_lossy(&output.stdout);
        Ok(serde_json::from_str(line.trim())?)
    };
    let baseline = run(&["--baseline"])?;
    let profile_arg = profile.to_string_lossy().to_string();
    let expect_arg = expect.to_string();
    let mut runs = Vec::new();
    for _ in 0..opens {
        runs.push(run(&["--profile", &profile_arg, "--expect", &expect_arg])?);
    }
    let pick =
        |key: &str| -> Vec<f64> { runs.iter().filter_map(|run| run[key].as_f64()).collect() };
    Ok(json!({
        "entries": expect,
        "openMs": median(&pick("openMs")),
        "peakRssBytes": median(&pick("vmHwmBytes")),
        "processBaselinePeakRssBytes": baseline["vmHwmBytes"],
        "runs": runs,
        "profileBytes": procfs::dir_usage(profile).bytes,
    }))
}

/// The child: open the profile with no network, list the entries, report.
pub(crate) fn open_child(profile: Option<&Path>, expect: usize) -> anyhow::Result<Value> {
    let Some(profile) = profile else {
        let (rss, hwm) = procfs::rss_of("self");
        return Ok(json!({ "vmRssBytes": rss, "vmHwmBytes": hwm }));
    };
    let start = Instant::now();
    let random: Arc<dyn Random> = Arc::new(OsRandom);
    let keystore: Arc<dyn KeyStore> = Arc::new(FileKeyStore::new(profile, Arc::clone(&random)));
    let haven = Haven::open(HavenConfig::new(profile), keystore, Arc::new(NoServer))
        .map_err(|error| anyhow!("open: {error}"))?;
    let opened = start.elapsed();
    let list = haven.journal_list();
    let ready = start.elapsed();
    if list.len() != expect {
        bail!(
            "the profile lists {} entries, expected {expect}",
            list.len()
        );
    }
    let (rss, hwm) = procfs::rss_of("self");
    drop(list);
    haven.close().map_err(|error| anyhow!("{error}"))?;
    Ok(json!({
        "openMs": ms(ready),
        "openOnlyMs": ms(opened),
        "listMs": ms(ready - opened),
        "entries": expect,
        "vmRssBytes": rss,
        "vmHwmBytes": hwm,
    }))
}
