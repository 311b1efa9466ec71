//! TEST ONLY: a fresh PostgreSQL schema per test, on the server named by `HAVEN_TEST_POSTGRES`
//! (scripts/postgres starts one). Unset, the PostgreSQL tests are skipped and pass, unless
//! `HAVEN_REQUIRE_POSTGRES=1` (scripts/test sets both), so CI can never skip them silently.

use std::io::Write as _;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection as _, Executor as _, Row as _};

use super::{PgSettings, PgStore};

pub(crate) const URL_VAR: &str = "HAVEN_TEST_POSTGRES";
pub(crate) const REQUIRE_VAR: &str = "HAVEN_REQUIRE_POSTGRES";

/// The test server's URL; `None` when the tests are to be skipped.
///
/// # Panics
/// When the URL is unset but `HAVEN_REQUIRE_POSTGRES=1`.
pub(crate) fn server_url() -> Option<String> {
    if let Ok(url) = std::env::var(URL_VAR)
        && !url.is_empty()
    {
        return Some(url);
    }
    assert!(
        std::env::var(REQUIRE_VAR).as_deref() != Ok("1"),
        "{REQUIRE_VAR}=1 but {URL_VAR} is unset: the PostgreSQL tests must run (scripts/postgres starts a server)"
    );
    static NOTICE: Once = Once::new();
    NOTICE.call_once(|| {
        // Straight to the process's stderr: the test harness captures `eprintln!`, and a skip
        // must be visible.
        let _ = writeln!(
            std::io::stderr(),
            "PostgreSQL store tests SKIPPED: {URL_VAR} is unset (run scripts/postgres, or scripts/test)"
        );
    });
    None
}

/// A schema that lives as long as this value and is dropped, with everything in it, after.
#[derive(Debug)]
pub(crate) struct TestSchema {
    url: String,
    name: String,
}

impl TestSchema {
    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let url = self.url.clone();
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name);
        // Detached: waiting here could block the runtime that still has to release the test's
        // connections (and their locks). A drop cut short by the end of the process is picked
        // up by `drop_stale_schemas` in a later run.
        std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                if let Ok(mut connection) = PgConnection::connect(&url).await {
                    let _ = connection.execute(sql.as_str()).await;
                    let _ = connection.close().await;
                }
            });
        });
    }
}

/// Drops test schemas left by processes that are gone (killed runs, drops cut short at exit).
async fn drop_stale_schemas(connection: &mut PgConnection) {
    let Ok(rows) =
        sqlx::query("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'haven\\_test\\_%'")
            .fetch_all(&mut *connection)
            .await
    else {
        return;
    };
    for row in rows {
        let Ok(name) = row.try_get::<String, _>(0) else {
            continue;
        };
        let pid = name
            .split('_')
            .nth(2)
            .and_then(|pid| pid.parse::<u32>().ok());
        let alive = pid.is_none_or(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists());
        if !alive {
            let _ = connection
                .execute(format!("DROP SCHEMA IF EXISTS {name} CASCADE").as_str())
                .await;
        }
    }
}

/// A new empty schema on the test server.
///
/// # Panics
/// When the server cannot be reached: a configured server that does not answer is a failure,
/// not a skip.
pub(crate) async fn fresh_schema(url: &str) -> TestSchema {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "haven_test_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let mut connection = PgConnection::connect(url)
        .await
        .unwrap_or_else(|error| panic!("connecting to {URL_VAR}: {error}"));
    static SWEPT: AtomicBool = AtomicBool::new(false);
    if !SWEPT.swap(true, Ordering::Relaxed) {
        drop_stale_schemas(&mut connection).await;
    }
    connection
        .execute(format!("CREATE SCHEMA {name}").as_str())
        .await
        .unwrap_or_else(|error| panic!("creating schema {name}: {error}"));
    let _ = connection.close().await;
    TestSchema {
        url: url.to_owned(),
        name,
    }
}

/// Connection options for `url` with every unqualified name in `schema`.
pub(crate) fn options_in(url: &str, schema: &TestSchema) -> PgConnectOptions {
    let options: PgConnectOptions = url
        .parse()
        .unwrap_or_else(|error| panic!("{URL_VAR} is not a PostgreSQL URL: {error}"));
    options.options([("search_path", schema.name())])
}

/// A migrated [`PgStore`] in a fresh schema, or `None` when the tests are skipped.
pub(crate) async fn fresh_store() -> Option<(PgStore, TestSchema)> {
    let url = server_url()?;
    let schema = fresh_schema(&url).await;
    let settings = PgSettings {
        max_connections: 8,
        ..PgSettings::default()
    };
    let store = PgStore::connect_with(options_in(&url, &schema), settings)
        .await
        .unwrap_or_else(|error| panic!("opening a PgStore in {}: {error}", schema.name()));
    Some((store, schema))
}
