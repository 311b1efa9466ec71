//! `haven-server`: see `haven-server --help`.

use clap::Parser as _;
use haven_server::config::{Cli, Command};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Info level carries no bodies, tokens, usernames or addresses (see docs/PRIVACY.md).
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("HAVEN_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        None | Some(Command::Serve) => haven_server::server::serve(cli.serve).await,
        Some(Command::Keys { action }) => haven_server::keys_cli::run(&cli.serve, action).await,
        Some(Command::Compact { keep_old }) => haven_server::compact_cli::run(&cli.serve, keep_old),
        Some(Command::Migrate { from, to }) => {
            haven_server::migrate_cli::run(&from, &to.0, &cli.serve).await
        }
    }
}
