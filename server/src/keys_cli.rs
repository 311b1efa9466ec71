//! `haven-server keys list|rotate|retire KID`: manage the JWT signing keys kept in the store.
//! Run it against the same data directory (with the server stopped: sled allows one process) or
//! the same database as the servers; running servers re-read the key set within a minute.
//! `haven-server keys rotate-master` rotates the master key that wraps storage keys
//! (docs/DEPLOY.md).

use std::sync::Arc;

use anyhow::Context as _;

use crate::auth::{AuthConfig, AuthService};
use crate::clock::{Clock, SystemClock};
use crate::config::{KeysAction, ServeArgs};
use crate::storage_keys::StorageKeys;
use crate::store::Store;

pub async fn run(args: &ServeArgs, action: KeysAction) -> anyhow::Result<()> {
    let store = crate::server::open_store(args).await?;
    if let KeysAction::RotateMaster = action {
        return rotate_master(args, store).await;
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let auth = AuthService::new(Arc::clone(&store), clock, AuthConfig::default())
        .await
        .context("loading the JWT key set")?;
    let keys = auth.keys();
    match action {
        KeysAction::List => {
            for key in keys.list().await? {
                println!(
                    "{}\t{:?}\tcreated {}",
                    key.kid,
                    key.state,
                    crate::clock::day_of(key.created_at)
                );
            }
        }
        KeysAction::Rotate => {
            let kid = keys.rotate().await?;
            println!(
                "new signing key {kid}; the previous one verifies until you retire it (wait at least 15 minutes)"
            );
        }
        KeysAction::Retire { kid } => {
            keys.retire(&kid).await?;
            println!("retired {kid}: tokens it signed are refused from now on");
        }
        KeysAction::RotateMaster => {}
    }
    store.flush().await.context("flushing the store")?;
    Ok(())
}

async fn rotate_master(args: &ServeArgs, store: Arc<dyn Store>) -> anyhow::Result<()> {
    let source = args.master_key_source().map_err(anyhow::Error::msg)?;
    let keys = StorageKeys::open(Arc::clone(&store), &source)
        .await
        .context("opening the master key")?;
    let report = keys.rotate().await.context("rotating the master key")?;
    println!(
        "master key now at generation {}; {} storage keys re-wrapped; generations {:?} removed \
         from the file",
        report.generation, report.rewrapped, report.retired
    );
    Ok(())
}
