//! S2: many authenticated live WebSockets on one server. A few accounts, one session each (the
//! issue: "let connections share a few sessions"); every connection is an `HttpRemote` live feed
//! of its account's private space, as `run_live` opens it. One device of account 0 edits; the
//! clock runs from the edit call until every connection of account 0 has received the new head,
//! while the connections of the other accounts idle.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use haven_core::remote::{LiveHeads, ServerApi as _};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::Config;
use crate::device::{Device, username};
use crate::procfs::{self, latency, ms};
use crate::server::{ServerCmd, ServerProc};

pub(crate) async fn run(
    cfg: &Config,
    server_cmd: &ServerCmd,
    work: &Path,
) -> anyhow::Result<Value> {
    let data = work.join("s2-server-data");
    std::fs::create_dir_all(&data)?;
    let server = ServerProc::start(server_cmd, &data)?;
    crate::register_pid(server.pid);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let accounts = cfg.s2_accounts.max(1);

    // The accounts, each with one device whose session every connection of the account shares.
    let mut devices = Vec::with_capacity(accounts);
    for index in 0..accounts {
        let device = Device::open(&work.join(format!("s2-device-{index}")), &server.url)?;
        device.register(&username("s2")).await?;
        device.sync().await?;
        devices.push(device);
    }
    let entry = devices[0]
        .haven
        .journal_create("S2", "fan-out")
        .map_err(|error| anyhow!("{error}"))?;
    devices[0].sync().await?;
    let sessions: Vec<(String, haven_protocol::SpaceId)> = devices
        .iter()
        .map(|device| {
            Ok((
                device.tap.access().context("no access token seen")?,
                device.haven.space().context("no space")?,
            ))
        })
        .collect::<anyhow::Result<_>>()?;

    tokio::time::sleep(Duration::from_millis(300)).await;
    let (server_rss_before, _) = server.rss();
    let (client_rss_before, _) = procfs::rss_of("self");

    // Open the connections, `s2_connect_concurrency` at a time.
    let (heads_tx, mut heads) = mpsc::unbounded_channel::<(usize, u64, Instant)>();
    let connect_start = Instant::now();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(
        cfg.s2_connect_concurrency.max(1),
    ));
    let mut connecting = tokio::task::JoinSet::new();
    for conn in 0..cfg.s2_conns {
        let account = conn % accounts;
        let (token, space) = sessions[account].clone();
        let remote = devices[account].tap.inner().clone();
        let permit = Arc::clone(&semaphore);
        connecting.spawn(async move {
            let _permit = permit.acquire_owned().await?;
            let feed = remote
                .live(Some(&token), &space)
                .await
                .map_err(|error| anyhow!("connection {conn}: {error}"))?;
            Ok::<_, anyhow::Error>((conn, feed))
        });
    }
    let mut feeds: Vec<(usize, Box<dyn LiveHeads>)> = Vec::with_capacity(cfg.s2_conns);
    let connect_deadline = Instant::now() + Duration::from_secs(cfg.timeout_s.min(600));
    while let Some(joined) = tokio::time::timeout(
        connect_deadline.saturating_duration_since(Instant::now()),
        connecting.join_next(),
    )
    .await
    .context("S2: connecting timed out")?
    {
        feeds.push(joined??);
    }
    let connect_time = connect_start.elapsed();
    // Each connection is read by its own task, as each app reads its own socket.
    let mut readers = tokio::task::JoinSet::new();
    for (conn, mut feed) in feeds {
        let hot = conn % accounts == 0;
        let heads_tx = heads_tx.clone();
        readers.spawn(async move {
            while let Ok(head) = feed.next_head().await {
                if hot {
                    let _ = heads_tx.send((conn, head, Instant::now()));
                }
            }
            conn
        });
    }
    drop(heads_tx);
    let hot_count = (0..cfg.s2_conns)
        .filter(|conn| conn % accounts == 0)
        .count();
    // Every hot connection first reports the current head.
    let mut current = 0u64;
    let mut first = std::collections::HashSet::new();
    let ready_deadline = Instant::now() + Duration::from_secs(60);
    while first.len() < hot_count {
        let left = ready_deadline.saturating_duration_since(Instant::now());
        let (conn, head, _) = tokio::time::timeout(left, heads.recv())
            .await
            .context("S2: connections did not all report their first head")?
            .context("S2: feeds ended")?;
        current = current.max(head);
        first.insert(conn);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (server_rss_connected, _) = server.rss();
    let (client_rss_connected, _) = procfs::rss_of("self");

    // The edits.
    let mut per_delivery = Vec::with_capacity(cfg.s2_edits * hot_count);
    let mut all_delivered = Vec::with_capacity(cfg.s2_edits);
    let mut timeouts = 0;
    let writer = &devices[0];
    for _ in 0..cfg.s2_edits {
        tokio::time::sleep(Duration::from_millis(cfg.s2_gap_ms)).await;
        while heads.try_recv().is_ok() {}
        let start = Instant::now();
        writer
            .haven
            .journal_append_body(&entry, "x")
            .map_err(|error| anyhow!("{error}"))?;
        writer.sync().await?;
        let deadline = start + Duration::from_secs(10);
        let mut seen = std::collections::HashSet::new();
        let mut newest = current;
        let mut last = start;
        while seen.len() < hot_count {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, heads.recv()).await {
                Ok(Some((conn, head, at))) if head > current => {
                    newest = newest.max(head);
                    if seen.insert(conn) {
                        per_delivery.push(at.saturating_duration_since(start));
                        last = last.max(at);
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => bail!("S2: feeds ended"),
                Err(_) => break,
            }
        }
        if seen.len() < hot_count {
            timeouts += 1;
        } else {
            all_delivered.push(last.saturating_duration_since(start));
        }
        current = newest;
    }
    let (server_rss_end, server_hwm) = server.rss();
    readers.abort_all();
    while readers.join_next().await.is_some() {}
    let conns = cfg.s2_conns.max(1) as f64;
    #[allow(clippy::cast_precision_loss)]
    let out = json!({
        "connections": cfg.s2_conns,
        "accounts": accounts,
        "sessions": accounts,
        "hotConnections": hot_count,
        "connectMs": ms(connect_time),
        "edits": cfg.s2_edits,
        "gapMs": cfg.s2_gap_ms,
        "timeouts": timeouts,
        "fanoutAll": latency(&all_delivered),
        "fanoutPerDelivery": latency(&per_delivery),
        "serverRssBeforeBytes": server_rss_before,
        "serverRssConnectedBytes": server_rss_connected,
        "serverRssEndBytes": server_rss_end,
        "serverPeakRssBytes": server_hwm,
        "serverRssPerConnectionBytes": (server_rss_connected.saturating_sub(server_rss_before)) as f64 / conns,
        "clientRssPerConnectionBytes": (client_rss_connected.saturating_sub(client_rss_before)) as f64 / conns,
    });
    drop(devices);
    server.stop()?;
    eprintln!(
        "[bench] S2: {} connections, fan-out p99 {} ms, server {:.0} B/connection",
        cfg.s2_conns, out["fanoutAll"]["p99Ms"], out["serverRssPerConnectionBytes"]
    );
    Ok(out)
}
