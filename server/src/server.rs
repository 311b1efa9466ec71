//! Start-up and shutdown: open the store, build the services, serve the API and admin
//! listeners, finish in-flight requests on SIGINT/SIGTERM, then flush.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use ed25519_dalek::VerifyingKey;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::account_seal::SealedAccounts;
use crate::app::{App, AppState, HttpConfig};
use crate::auth::{AuthConfig, AuthService};
use crate::clock::{Clock, SystemClock};
use crate::config::{LiveFanout, ServeArgs, StoreChoice, StoreUrl};
use crate::group_commit::GroupCommit;
use crate::live_fanout::FanoutMode;
use crate::live_hub::LiveHub;
use crate::routes::parse_version;
use crate::spaces::{LogLimits, SpaceService};
use crate::storage_keys::{MasterKeySource, RotationPolicy, StorageKeys};
use crate::store::Store;
use crate::store::memory::MemoryStore;
use crate::store::postgres::{PgSettings, PgStore, describe_url};
use crate::store::sled_kv::SledStore;

/// Opens the store the arguments name.
pub async fn open_store(args: &ServeArgs) -> anyhow::Result<Arc<dyn Store>> {
    Ok(open_chosen_store(args).await?.0)
}

/// Opens the store the arguments name; also returns it as a [`PgStore`] when it is one (the
/// live fan-out across instances needs its pool).
async fn open_chosen_store(args: &ServeArgs) -> anyhow::Result<(Arc<dyn Store>, Option<PgStore>)> {
    match args.store_choice().map_err(anyhow::Error::msg)? {
        StoreChoice::Memory => Ok((Arc::new(MemoryStore::new()), None)),
        StoreChoice::Sled(dir) => {
            let store = SledStore::open(&dir, args.cache_bytes())
                .with_context(|| format!("opening the data directory {}", dir.display()))?;
            Ok((Arc::new(store), None))
        }
        StoreChoice::Postgres(StoreUrl(url)) => {
            let settings = PgSettings {
                max_connections: args.store_connections,
                notify_heads: args.live_fanout == LiveFanout::Notify,
                ..PgSettings::default()
            };
            // Never the URL itself in messages: it may carry a password.
            let store = PgStore::connect(&url, settings)
                .await
                .with_context(|| format!("opening the store at {}", describe_url(&url)))?;
            tracing::info!(store = %describe_url(&url), "PostgreSQL store ready");
            Ok((Arc::new(store.clone()), Some(store)))
        }
    }
}

/// Everything `build_app` needs besides the store.
#[derive(Debug, Clone)]
pub struct AppOptions {
    pub http: HttpConfig,
    pub log_limits: LogLimits,
    pub auth: AuthConfig,
    pub content_keys: Vec<VerifyingKey>,
    /// Where the master key that wraps storage keys lives.
    pub master_keys: MasterKeySource,
}

/// Builds the services over a store. Used by `serve` and by tests.
pub async fn build_app(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    options: AppOptions,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<AppState> {
    let keys = Arc::new(
        StorageKeys::open(Arc::clone(&store), &options.master_keys)
            .await
            .context("opening the master key")?,
    );
    // Every service sees account records with their secret fields opened; the store holds them
    // sealed under the account's storage key, so they die with it.
    let store: Arc<dyn Store> = Arc::new(SealedAccounts::new(store, Arc::clone(&keys)));
    let commits = GroupCommit::start(Arc::clone(&store));
    let live = Arc::new(LiveHub::new());
    let auth = AuthService::new(Arc::clone(&store), Arc::clone(&clock), options.auth)
        .await
        .context("loading the JWT key set")?;
    let spaces = SpaceService::new(
        Arc::clone(&store),
        Arc::clone(&keys),
        commits.clone(),
        Arc::clone(&live),
        options.log_limits,
        options.content_keys,
    );
    Ok(Arc::new(App {
        store,
        auth,
        spaces,
        keys,
        live,
        commits,
        clock,
        http: options.http,
        shutdown,
    }))
}

/// Translates command-line arguments into options.
pub fn options_from_args(args: &ServeArgs) -> anyhow::Result<AppOptions> {
    let min_client_version = parse_version(&args.min_client_version)
        .context("--min-client-version must be major.minor.patch")?;
    let content_keys = if args.content_keys.is_empty() {
        vec![crate::public_content::dev_public_key()?]
    } else {
        args.content_keys
            .iter()
            .map(|text| crate::public_content::parse_public_key(text))
            .collect::<anyhow::Result<_>>()?
    };
    let mut auth = AuthConfig {
        issuer: args.issuer.clone(),
        hash_concurrency: args.hash_concurrency.max(1),
        ..AuthConfig::default()
    };
    auth.login_limits.per_account_address = args.login_attempts_per_account;
    auth.login_limits.per_address = args.auth_attempts_per_address;
    Ok(AppOptions {
        http: HttpConfig {
            max_request_bytes: args.max_request_bytes,
            ping_secs: args.ping_secs,
            min_client_version,
            anonymous_attempts_per_address: args.auth_attempts_per_address.saturating_mul(3),
        },
        log_limits: LogLimits {
            envelope: haven_protocol::EnvelopeLimits {
                max_body_bytes: args.max_envelope_bytes,
                ..haven_protocol::EnvelopeLimits::default()
            },
            max_batch: args.max_batch,
            max_page: args.max_page.clamp(1, haven_protocol::api::MAX_PULL_LIMIT),
        },
        auth,
        content_keys,
        master_keys: args.master_key_source().map_err(anyhow::Error::msg)?,
    })
}

/// How long without a request before the heap a burst freed is given back.
const HEAP_TRIM_QUIET: Duration = Duration::from_millis(500);

/// Runs the server until SIGINT or SIGTERM.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let options = options_from_args(&args)?;
    // Before the services start, so the gauges they set at start (master-key state) are kept.
    let metrics_handle = crate::metrics::install();
    let (store, postgres) = open_chosen_store(&args).await?;
    let (stop, shutdown) = watch::channel(false);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let state = build_app(Arc::clone(&store), Arc::clone(&clock), options, shutdown).await?;
    // Other instances' pushes and revocations reach this instance's live sockets.
    let fanout = postgres.map(|store| {
        let mode = match args.live_fanout {
            LiveFanout::Notify => FanoutMode::Notify,
            LiveFanout::Poll => FanoutMode::Poll,
        };
        crate::live_fanout::start(
            store,
            Arc::clone(&state.live),
            mode,
            Duration::from_millis(args.live_poll_ms.max(10)),
        )
    });

    if !args.no_sample_content {
        crate::public_content::publish_sample_if_empty(&state, args.content_dir.as_deref()).await?;
    }

    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding the API listener on {}", args.listen))?;
    let admin = TcpListener::bind(args.admin_listen)
        .await
        .with_context(|| format!("binding the admin listener on {}", args.admin_listen))?;
    // Printed (not only logged) so scripts and tests can find ports chosen with :0.
    println!(
        "haven-server listening on http://{}",
        listener.local_addr()?
    );
    println!(
        "haven-server admin (metrics) on http://{}",
        admin.local_addr()?
    );
    tracing::info!(api = %listener.local_addr()?, admin = %admin.local_addr()?, "serving");

    let admin_task = tokio::spawn(async move {
        axum::serve(admin, crate::metrics::admin_router(metrics_handle)).await
    });
    let janitor = tokio::spawn(janitor(Arc::clone(&store), clock));
    let heap_trim = tokio::spawn(crate::heap_trim::trim_after_bursts(HEAP_TRIM_QUIET));
    let rotations = args
        .rotates_master_key()
        .map_err(anyhow::Error::msg)?
        .then(|| state.keys.spawn_rotations(RotationPolicy::default()));

    let app =
        crate::app::router(Arc::clone(&state)).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            wait_for_signal().await;
            tracing::info!("shutting down: finishing in-flight requests");
            let _ = stop.send(true);
        })
        .await
        .context("serving the API")?;

    admin_task.abort();
    janitor.abort();
    heap_trim.abort();
    // A rotation cut short is safe: the file keeps every generation until all keys moved.
    if let Some(rotations) = rotations {
        rotations.abort();
    }
    if let Some(fanout) = fanout {
        fanout.abort();
    }
    store.flush().await.context("final flush")?;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// Purges expired mailboxes and one-time tokens every minute.
async fn janitor(store: Arc<dyn Store>, clock: Arc<dyn Clock>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        if let Err(error) = store.purge_expired(clock.now()).await {
            tracing::warn!(%error, "purging expired records failed");
        }
    }
}

async fn wait_for_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(error) => {
                    tracing::warn!(%error, "no SIGTERM handler; only Ctrl-C stops the server");
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
