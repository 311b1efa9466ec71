//! Convergence under faults (issue 5, part 1): three devices of one account, the real server on
//! loopback, random offline edits to shared journal entries, random sync schedules through a
//! network that loses requests and answers, duplicates and reorders, devices going offline and
//! restarting, and a server that replays envelopes it served before. Every run must end with all devices identical and nothing a device wrote missing
//! (except what a deletion removed on purpose).
//!
//! Profiles: `HAVEN_TEST_PROFILE=ci` (default) runs a fast set of seeds; `long` runs 10,000.
//! `HAVEN_SIM_SEEDS=<n>` runs seeds 1..=n. A failing seed is printed; replay it alone with
//! `HAVEN_SIM_SEED=<seed>`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use haven_core::env::OsRandom;
use haven_core::local_store::{KeyStore, MemoryKeyStore};
use haven_core::remote::ServerApi;
use haven_core::remote::http::{HttpOptions, HttpRemote};
use haven_core::{Haven, HavenConfig};
use haven_protocol::DocId;
use haven_tests::chaos::{ChaosRemote, Dice, Faults};
use haven_tests::{TestServer, spawn_server, test_options};

const PASSWORD: &str = "correct horse battery staple";
const STEPS: u64 = 40;

struct Device {
    dir: tempfile::TempDir,
    keys: Arc<dyn KeyStore>,
    chaos: Arc<ChaosRemote>,
    haven: Option<Haven>,
}

impl Device {
    fn new(url: &str, seed: u64) -> Self {
        let inner: Arc<dyn ServerApi> =
            Arc::new(HttpRemote::new(url, HttpOptions::default()).unwrap());
        let chaos = Arc::new(ChaosRemote::new(inner, seed, Faults::NONE));
        let dir = tempfile::tempdir().unwrap();
        let keys: Arc<dyn KeyStore> = Arc::new(MemoryKeyStore::new(Arc::new(OsRandom)));
        let haven = Some(open(dir.path(), &keys, &chaos));
        Self {
            dir,
            keys,
            chaos,
            haven,
        }
    }

    fn haven(&self) -> &Haven {
        self.haven.as_ref().unwrap()
    }

    fn restart(&mut self) {
        self.haven.take().unwrap().close().unwrap();
        self.haven = Some(open(self.dir.path(), &self.keys, &self.chaos));
    }
}

fn open(dir: &Path, keys: &Arc<dyn KeyStore>, chaos: &Arc<ChaosRemote>) -> Haven {
    let remote: Arc<dyn ServerApi> = chaos.clone();
    Haven::open(HavenConfig::new(dir), Arc::clone(keys), remote).unwrap()
}

/// Replays the simulated server injected, and replays the devices reported.
#[derive(Default)]
struct Replays {
    injected: usize,
    reported: usize,
}

/// One simulated run. Panics (with the seed in the message) when devices diverge or lose data,
/// or skip an envelope for any reason but a replay.
async fn run(server: &TestServer, seed: u64, replays: &mut Replays) {
    let mut dice = Dice::new(seed);
    let mut devices: Vec<Device> = (0..3)
        .map(|n| Device::new(&server.url, seed * 3 + n))
        .collect();
    let user = format!("sim-{seed}");
    devices[0]
        .haven()
        .register(&user, PASSWORD, "d0")
        .await
        .unwrap();
    for device in &devices[1..] {
        device.haven().login(&user, PASSWORD, "dn").await.unwrap();
    }
    for device in &devices {
        device.chaos.set_faults(Faults::ROUGH);
    }
    // Markers each device wrote into entry bodies; all must survive unless the entry was deleted.
    let mut markers: Vec<(DocId, String)> = Vec::new();
    let mut deleted: HashSet<DocId> = HashSet::new();
    for step in 0..STEPS {
        let d = usize::try_from(dice.below(3)).unwrap();
        let roll = dice.below(100);
        let device = &mut devices[d];
        match roll {
            0..25 => {
                let marker = format!("<{d}.{step}>");
                let id = device
                    .haven()
                    .journal_create(&format!("entry {step}"), &marker)
                    .unwrap();
                markers.push((id, marker));
            }
            25..60 => {
                let entries = device.haven().journal_list();
                if entries.is_empty() {
                    continue;
                }
                let id = entries[usize::try_from(dice.below(entries.len() as u64)).unwrap()].id;
                let marker = format!("<{d}.{step}>");
                match dice.below(3) {
                    0 => device.haven().journal_append_body(&id, &marker).unwrap(),
                    1 => {
                        let length = device
                            .haven()
                            .journal_get(&id)
                            .unwrap()
                            .body
                            .chars()
                            .count();
                        let at = usize::try_from(dice.below(length as u64 + 1)).unwrap();
                        // Insert at a marker boundary so markers stay whole.
                        let body = device.haven().journal_get(&id).unwrap().body;
                        let at = body
                            .char_indices()
                            .map(|(i, _)| i)
                            .chain([body.len()])
                            .filter(|&i| i == 0 || i == body.len() || body[..i].ends_with('>'))
                            .min_by_key(|&i| {
                                i.abs_diff(
                                    body.char_indices().nth(at).map_or(body.len(), |(i, _)| i),
                                )
                            })
                            .unwrap_or(0);
                        let position = body[..at].chars().count();
                        device
                            .haven()
                            .journal_splice_body(&id, position, 0, &marker)
                            .unwrap();
                    }
                    _ => {
                        device
                            .haven()
                            .journal_set_title(&id, &format!("title {d}.{step}"))
                            .unwrap();
                        continue;
                    }
                }
                markers.push((id, marker));
            }
            60..64 => {
                let entries = device.haven().journal_list();
                if let Some(entry) = entries.first() {
                    device.haven().journal_delete(&entry.id).unwrap();
                    deleted.insert(entry.id);
                }
            }
            64..90 => {
                // A round may fail under faults; one that ends says what it skipped.
                if let Ok(report) = device.haven().sync_once().await {
                    for reason in &report.skipped {
                        assert!(
                            reason.contains(": replayed envelope: "),
                            "seed {seed}: device {d} skipped an envelope: {reason}"
                        );
                        replays.reported += 1;
                    }
                }
            }
            90..95 => device.restart(),
            _ => {
                let offline = dice.percent(50);
                device.chaos.set_offline(offline);
            }
        }
    }

    // Heal the network and let everyone catch up.
    for device in &devices {
        device.chaos.set_faults(Faults::NONE);
        device.chaos.set_offline(false);
    }
    for _ in 0..3 {
        for (n, device) in devices.iter().enumerate() {
            device
                .haven()
                .sync_once()
                .await
                .unwrap_or_else(|error| panic!("seed {seed}: device {n} cannot sync: {error}"));
        }
    }

    let views: Vec<BTreeMap<DocId, haven_core::documents::JournalEntry>> = devices
        .iter()
        .map(|device| {
            device
                .haven()
                .journal_list()
                .into_iter()
                .map(|entry| (entry.id, device.haven().journal_get(&entry.id).unwrap()))
                .collect()
        })
        .collect();
    for (n, view) in views.iter().enumerate().skip(1) {
        assert_eq!(
            view.keys().collect::<Vec<_>>(),
            views[0].keys().collect::<Vec<_>>(),
            "seed {seed}: device {n} lists other entries than device 0"
        );
        for (id, entry) in view {
            assert_eq!(
                entry,
                &views[0][id],
                "seed {seed}: device {n} differs on entry {}",
                id.to_hex()
            );
        }
    }
    for (id, marker) in &markers {
        if deleted.contains(id) {
            continue;
        }
        let entry = views[0]
            .get(id)
            .unwrap_or_else(|| panic!("seed {seed}: entry {} vanished", id.to_hex()));
        assert_eq!(
            entry.body.matches(marker.as_str()).count(),
            1,
            "seed {seed}: marker {marker} missing or doubled in entry {}",
            id.to_hex()
        );
    }
    for device in devices {
        replays.injected += device.chaos.replayed();
        assert_eq!(
            device.haven().status().pending,
            0,
            "seed {seed}: an outbox did not drain"
        );
        device.haven.unwrap().close().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_converge_under_faults() {
    let seeds: Vec<u64> = match std::env::var("HAVEN_SIM_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
    {
        Some(seed) => vec![seed],
        None => {
            let count = match std::env::var("HAVEN_SIM_SEEDS")
                .ok()
                .and_then(|n| n.parse().ok())
            {
                Some(count) => count,
                None if std::env::var("HAVEN_TEST_PROFILE").as_deref() == Ok("long") => 10_000,
                None => 40,
            };
            (1..=count).collect()
        }
    };
    let mut options = test_options();
    // One address registers thousands of simulated accounts here.
    options.http.anonymous_attempts_per_address = u32::MAX;
    options.auth.login_limits.per_address = u32::MAX;
    options.auth.login_limits.per_account_address = u32::MAX;
    let server = spawn_server(
        Arc::new(haven_server::store::memory::MemoryStore::new()),
        options,
    )
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let mut replays = Replays::default();
    for &seed in &seeds {
        println!("seed {seed}");
        run(&server, seed, &mut replays).await;
    }
    println!(
        "{} seeds in {:.1} s; {} replays injected, {} reported by devices",
        seeds.len(),
        started.elapsed().as_secs_f64(),
        replays.injected,
        replays.reported
    );
    // Some replays land in rounds that then fail; none may go unnoticed in all of them.
    assert!(
        replays.injected == 0 || replays.reported > 0,
        "no device noticed any of {} replays",
        replays.injected
    );
    server.stop().await.unwrap();
}
