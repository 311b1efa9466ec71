//! `haven-server migrate --from DIR --to postgres://…`: moves a single sled node to PostgreSQL
//! (docs/DEPLOY.md). The copy is one transaction into an empty database, then checked space by
//! space through the store contract of both sides; the sled directory is left as it was.

use std::path::Path;

use anyhow::Context as _;

use crate::config::ServeArgs;
use crate::store::migrate::{kv_to_postgres, verify};
use crate::store::postgres::{PgSettings, PgStore, describe_url};
use crate::store::sled_kv::SledStore;

pub async fn run(from: &Path, to: &str, args: &ServeArgs) -> anyhow::Result<()> {
    // sled creates a missing directory; a typo must not migrate an empty store.
    anyhow::ensure!(
        from.join("conf").is_file(),
        "{} is not a sled data directory",
        from.display()
    );
    anyhow::ensure!(
        to.starts_with("postgres://") || to.starts_with("postgresql://"),
        "--to must be a postgres:// URL"
    );
    // Its lock also proves no server is writing to it.
    let source = SledStore::open(from, args.cache_bytes())
        .with_context(|| format!("opening the data directory {}", from.display()))?;
    let target = PgStore::connect(
        to,
        PgSettings {
            max_connections: 2,
            ..PgSettings::default()
        },
    )
    .await
    .with_context(|| format!("opening the store at {}", describe_url(to)))?;
    let report = kv_to_postgres(&source, &target)
        .await
        .context("copying into PostgreSQL (nothing was written)")?;
    let spaces = verify(&source, &target)
        .await
        .context("checking the copy")?;
    println!(
        "migrated {} accounts ({} erased), {} devices, {} sessions, {} spaces with {} live \
         envelopes and {} ids, {} tombstones, {} secrets, {} JWT keys, {} tokens, {} link \
         mailboxes to {}; {spaces} spaces verified",
        report.accounts,
        report.erased_accounts,
        report.devices,
        report.sessions,
        report.spaces,
        report.envelopes,
        report.envelope_ids,
        report.tombstones,
        report.secrets,
        report.jwt_keys,
        report.tokens,
        report.links,
        describe_url(to)
    );
    target.close().await;
    Ok(())
}
