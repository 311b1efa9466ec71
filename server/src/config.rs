//! Command line and `HAVEN_*` environment configuration.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::storage_keys::MasterKeySource;

/// Haven's sync server.
#[derive(Debug, Parser)]
#[command(name = "haven-server", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve,
    /// Manage the JWT signing keys kept in the store.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Rewrite the sled data directory (--data) with only its live data, giving back the space
    /// of deleted and rewritten pages (stop the server first).
    Compact {
        /// Keep the old directory as `<data>.before-compact` instead of deleting it.
        #[arg(long)]
        keep_old: bool,
    },
    /// Copy a sled data directory into an empty PostgreSQL database (stop the server first).
    Migrate {
        /// The sled data directory.
        #[arg(long)]
        from: PathBuf,
        /// The PostgreSQL URL; defaults to HAVEN_STORE, which keeps the password out of the
        /// process list.
        #[arg(long, env = "HAVEN_STORE", hide_env_values = true)]
        to: StoreUrl,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// List the keys and their states.
    List,
    /// Make a new signing key; the current one keeps verifying until retired.
    Rotate,
    /// Stop accepting tokens signed by this key.
    Retire { kid: String },
    /// Rotate the master key now: a new generation, every account's storage key re-wrapped under
    /// it, older generations removed from the master-key file. Stop the server first (sled), or
    /// every instance, then copy the new file to each of them (PostgreSQL).
    RotateMaster,
}

/// Everything `serve` needs; also read by `keys` for the store location.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address of the API listener.
    #[arg(
        long,
        env = "HAVEN_LISTEN",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub listen: SocketAddr,

    /// Address of the admin listener (`/metrics`); keep it on loopback or a private network.
    #[arg(
        long,
        env = "HAVEN_ADMIN_LISTEN",
        default_value = "127.0.0.1:9090",
        global = true
    )]
    pub admin_listen: SocketAddr,

    /// Directory of the embedded sled store.
    #[arg(
        long = "data",
        env = "HAVEN_DATA",
        default_value = "./haven-data",
        global = true
    )]
    pub data_dir: PathBuf,

    /// The master-key file: the key that wraps every account's storage key, kept outside the
    /// store so that erased accounts cannot be read back from old store files or backups.
    /// Created at first start (mode 0600). Defaults to `master-keys` in --data; with PostgreSQL,
    /// every instance must use a copy of the same file.
    #[arg(long, env = "HAVEN_MASTER_KEY_FILE", global = true)]
    pub master_key_file: Option<PathBuf>,

    /// When to rotate the master key after erasures: `auto` (in the background, the default with
    /// sled) or `manual` (`haven-server keys rotate-master`; the default with PostgreSQL, where
    /// several instances share the file).
    #[arg(long, env = "HAVEN_MASTER_KEY_ROTATION", value_enum, global = true)]
    pub master_key_rotation: Option<MasterKeyRotation>,

    /// Keep everything in memory (tests and demos; nothing survives a restart).
    #[arg(long, env = "HAVEN_IN_MEMORY", global = true)]
    pub in_memory: bool,

    /// Where the data lives: `sled` (the embedded store in --data, the default, one instance)
    /// or a PostgreSQL URL, `postgres://user:password@host:port/database?sslmode=verify-full`,
    /// shared by any number of instances. Prefer the environment variable: it keeps the
    /// password out of the process list.
    #[arg(long, env = "HAVEN_STORE", hide_env_values = true, global = true)]
    pub store: Option<StoreUrl>,

    /// PostgreSQL connections per instance (the database's max_connections bounds the sum).
    #[arg(
        long,
        env = "HAVEN_STORE_CONNECTIONS",
        default_value_t = 16,
        global = true
    )]
    pub store_connections: u32,

    /// How a push on one instance reaches live sockets on the others (PostgreSQL only):
    /// `notify` (LISTEN/NOTIFY, milliseconds) or `poll` (for engines without it).
    #[arg(
        long,
        env = "HAVEN_LIVE_FANOUT",
        value_enum,
        default_value_t = LiveFanout::Notify,
        global = true
    )]
    pub live_fanout: LiveFanout,

    /// Milliseconds between polls of the heads of watched spaces (PostgreSQL). With `notify`
    /// polling is only a safety net for lost notifications and runs ten times less often.
    #[arg(long, env = "HAVEN_LIVE_POLL_MS", default_value_t = 500, global = true)]
    pub live_poll_ms: u64,

    /// sled page-cache size in MiB (sled's own default is 1 GiB).
    #[arg(long, env = "HAVEN_CACHE_MB", default_value_t = 64, global = true)]
    pub cache_mb: u64,

    /// Comma-separated base64 Ed25519 public keys allowed to sign public content. Defaults to the
    /// development key committed under content/ (never use it in production).
    #[arg(long, env = "HAVEN_CONTENT_KEYS", value_delimiter = ',', global = true)]
    pub content_keys: Vec<String>,

    /// Directory of the sample content published on first start with an empty store.
    #[arg(long, env = "HAVEN_CONTENT_DIR", global = true)]
    pub content_dir: Option<PathBuf>,

    /// Do not publish the sample content on first start.
    #[arg(long, env = "HAVEN_NO_SAMPLE_CONTENT", global = true)]
    pub no_sample_content: bool,

    /// JWT issuer.
    #[arg(long, env = "HAVEN_ISSUER", default_value = "haven", global = true)]
    pub issuer: String,

    /// Largest request body in bytes.
    #[arg(long, env = "HAVEN_MAX_REQUEST_BYTES", default_value_t = 16 * 1024 * 1024, global = true)]
    pub max_request_bytes: usize,

    /// Largest envelope body in bytes.
    #[arg(long, env = "HAVEN_MAX_ENVELOPE_BYTES", default_value_t = 4 * 1024 * 1024, global = true)]
    pub max_envelope_bytes: usize,

    /// Most envelopes in one push.
    #[arg(long, env = "HAVEN_MAX_BATCH", default_value_t = 1000, global = true)]
    pub max_batch: usize,

    /// Largest pull page (the contract caps it at 1000).
    #[arg(long, env = "HAVEN_MAX_PAGE", default_value_t = 1000, global = true)]
    pub max_page: u32,

    /// Concurrent Argon2id hashes (each takes 19 MiB).
    #[arg(
        long,
        env = "HAVEN_HASH_CONCURRENCY",
        default_value_t = 2,
        global = true
    )]
    pub hash_concurrency: usize,

    /// Lowest client version served (`major.minor.patch` in the `haven-client-version` header);
    /// older clients get 426.
    #[arg(
        long,
        env = "HAVEN_MIN_CLIENT_VERSION",
        default_value = "0.1.0",
        global = true
    )]
    pub min_client_version: String,

    /// Login attempts allowed per account and address per 15 minutes.
    #[arg(
        long,
        env = "HAVEN_LOGIN_ATTEMPTS_PER_ACCOUNT",
        default_value_t = 10,
        global = true
    )]
    pub login_attempts_per_account: u32,

    /// Credential attempts (logins, recoveries, registrations) allowed per address per 15 minutes.
    #[arg(
        long,
        env = "HAVEN_AUTH_ATTEMPTS_PER_ADDRESS",
        default_value_t = 100,
        global = true
    )]
    pub auth_attempts_per_address: u32,

    /// Seconds between live-socket pings.
    #[arg(long, env = "HAVEN_PING_SECS", default_value_t = 30, global = true)]
    pub ping_secs: u64,
}

/// See `--master-key-rotation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MasterKeyRotation {
    Auto,
    Manual,
}

/// Cross-instance live fan-out (see `--live-fanout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LiveFanout {
    Notify,
    Poll,
}

/// The value of `--store` or `migrate --to`: `sled` or a database URL, which may hold a
/// password, so `Debug` shows only where it points.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreUrl(pub String);

impl std::str::FromStr for StoreUrl {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self(text.to_owned()))
    }
}

impl std::fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0 == "sled" {
            f.write_str("sled")
        } else {
            f.write_str(&crate::store::postgres::describe_url(&self.0))
        }
    }
}

impl StoreUrl {
    pub fn is_postgres(&self) -> bool {
        self.0.starts_with("postgres://") || self.0.starts_with("postgresql://")
    }
}

/// The store the arguments name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreChoice {
    Memory,
    Sled(PathBuf),
    Postgres(StoreUrl),
}

impl ServeArgs {
    /// Which store to open; `--in-memory` and `--store` together are refused, as is a `--store`
    /// that is neither `sled` nor a PostgreSQL URL (its value is not echoed: it may hold a
    /// password).
    pub fn store_choice(&self) -> Result<StoreChoice, String> {
        match (self.in_memory, &self.store) {
            (true, Some(_)) => Err("--in-memory and --store exclude each other".into()),
            (true, None) => Ok(StoreChoice::Memory),
            (false, None) => Ok(StoreChoice::Sled(self.data_dir.clone())),
            (false, Some(url)) if url.0 == "sled" => Ok(StoreChoice::Sled(self.data_dir.clone())),
            (false, Some(url)) if url.is_postgres() => Ok(StoreChoice::Postgres(url.clone())),
            (false, Some(_)) => {
                Err("--store / HAVEN_STORE must be `sled` or a postgres:// URL".into())
            }
        }
    }

    /// Where the master key lives: in memory for `--in-memory` (unless a file is named),
    /// else the named file or `master-keys` in the data directory.
    pub fn master_key_source(&self) -> Result<MasterKeySource, String> {
        let memory = self.store_choice()? == StoreChoice::Memory;
        Ok(match &self.master_key_file {
            Some(path) => MasterKeySource::File(path.clone()),
            None if memory => MasterKeySource::Ephemeral,
            None => MasterKeySource::File(self.data_dir.join(crate::master_key::FILE_NAME)),
        })
    }

    /// Whether this process rotates the master key by itself after erasures.
    pub fn rotates_master_key(&self) -> Result<bool, String> {
        let postgres = matches!(self.store_choice()?, StoreChoice::Postgres(_));
        Ok(match self.master_key_rotation {
            Some(rotation) => rotation == MasterKeyRotation::Auto,
            None => !postgres,
        })
    }

    pub fn cache_bytes(&self) -> u64 {
        self.cache_mb.saturating_mul(1024 * 1024)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    fn choice(args: &[&str]) -> Result<StoreChoice, String> {
        let cli =
            Cli::try_parse_from([&["haven-server"], args].concat()).map_err(|e| e.to_string())?;
        cli.serve.store_choice()
    }

    #[test]
    fn the_store_is_sled_unless_a_postgres_url_is_given() {
        assert_eq!(
            choice(&["--data", "/srv/haven"]),
            Ok(StoreChoice::Sled("/srv/haven".into()))
        );
        assert_eq!(
            choice(&["--store", "sled"]),
            Ok(StoreChoice::Sled("./haven-data".into()))
        );
        let url = "postgres://haven:secret@db.internal:5432/haven";
        assert_eq!(
            choice(&["--store", url]),
            Ok(StoreChoice::Postgres(StoreUrl(url.into())))
        );
        // Debug output names the host, never the password.
        let shown = format!("{:?}", choice(&["--store", url]));
        assert!(
            shown.contains("db.internal") && !shown.contains("secret"),
            "{shown}"
        );
        assert_eq!(choice(&["--in-memory"]), Ok(StoreChoice::Memory));
        assert!(choice(&["--in-memory", "--store", url]).is_err());
        // A mistyped value is refused without echoing it (it could be a password).
        let error = choice(&["--store", "mysql://u:hunter2@x/y"]).unwrap_err();
        assert!(!error.contains("hunter2"), "{error}");
    }

    fn serve(args: &[&str]) -> ServeArgs {
        Cli::try_parse_from([&["haven-server"], args].concat())
            .unwrap()
            .serve
    }

    #[test]
    fn the_master_key_file_sits_next_to_sled_and_rotation_is_auto_only_for_sled() {
        let sled = serve(&["--data", "/srv/haven"]);
        assert_eq!(
            sled.master_key_source(),
            Ok(MasterKeySource::File("/srv/haven/master-keys".into()))
        );
        assert_eq!(sled.rotates_master_key(), Ok(true));
        let url = "postgres://haven@db/haven";
        let postgres = serve(&["--store", url, "--master-key-file", "/etc/haven/mk"]);
        assert_eq!(
            postgres.master_key_source(),
            Ok(MasterKeySource::File("/etc/haven/mk".into()))
        );
        assert_eq!(postgres.rotates_master_key(), Ok(false));
        let single = serve(&["--store", url, "--master-key-rotation", "auto"]);
        assert_eq!(single.rotates_master_key(), Ok(true));
        assert_eq!(
            serve(&["--in-memory"]).master_key_source(),
            Ok(MasterKeySource::Ephemeral)
        );
    }
}
