//! A fresh PostgreSQL database for each test: [`TempDatabase`] creates
//! `filesync_test_<random>` on the test server and drops it when dropped, so tests run in
//! parallel without seeing each other's rows.
//!
//! The test server is `FILESYNC_TEST_PG` (a URL whose role may create databases), by default
//! `postgres://filesync:filesync@127.0.0.1:5432/postgres` — the role `scripts/setup` creates
//! on the machine's PostgreSQL 15. When it cannot be reached a test is skipped with a message,
//! unless `FILESYNC_REQUIRE_PG` is set (as CI does), which makes it a failure.

use super::{PgMeta, redact};
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use std::sync::atomic::{AtomicU64, Ordering};

/// Where the tests' PostgreSQL is, unless `FILESYNC_TEST_PG` says otherwise.
pub const DEFAULT_SERVER: &str = "postgres://filesync:filesync@127.0.0.1:5432/postgres";

/// A database created for one test, dropped (with its connections) when this is dropped.
pub struct TempDatabase {
    /// The URL of the new database, password included.
    pub url: String,
    name: String,
    server: String,
}

impl TempDatabase {
    /// Creates the database; `None` (after saying why) when the test server cannot be reached,
    /// unless `FILESYNC_REQUIRE_PG` is set, which makes that a panic. Blocking: call it from a
    /// test or from async code alike (it runs its statements on a thread of its own).
    pub fn create() -> Option<TempDatabase> {
        let server = std::env::var("FILESYNC_TEST_PG").unwrap_or_else(|_| DEFAULT_SERVER.to_owned());
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = filesync_core::clock::Clock::now_ns(&filesync_core::clock::SystemClock);
        let name = format!(
            "filesync_test_{}_{}_{:x}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            nanos & 0xffff_ffff
        );
        if let Err(e) = admin(&server, &format!("CREATE DATABASE {name}")) {
            let e = format!("PostgreSQL at {} cannot be used ({e})", redact(&server));
            if std::env::var_os("FILESYNC_REQUIRE_PG").is_some() {
                panic!("FILESYNC_REQUIRE_PG is set but {e}");
            }
            eprintln!("skipped: {e}; run scripts/setup (or set FILESYNC_TEST_PG) to run this test");
            return None;
        }
        let url = match server.rfind('/') {
            Some(slash) if slash > server.find("://").map_or(0, |i| i + 2) => {
                let query = server[slash..].find('?').map_or("", |q| &server[slash + q..]);
                format!("{}/{name}{query}", &server[..slash])
            }
            _ => format!("{server}/{name}"),
        };
        Some(TempDatabase { url, name, server })
    }

    /// A store on this database (migrated).
    pub async fn open(&self) -> PgMeta {
        PgMeta::connect(&self.url, None).await.expect("connect to the test database")
    }
}

impl Drop for TempDatabase {
    fn drop(&mut self) {
        if let Err(e) = admin(&self.server, &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)) {
            eprintln!("could not drop the test database {}: {e}", self.name);
        }
    }
}

/// Runs one statement on the test server, on a thread with its own runtime (so that it works
/// inside and outside async code, and in `Drop`).
fn admin(server: &str, statement: &str) -> Result<(), String> {
    let (server, statement) = (server.to_owned(), statement.to_owned());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        rt.block_on(async {
            let mut conn = PgConnection::connect(&server).await.map_err(|e| e.to_string())?;
            sqlx::raw_sql(AssertSqlSafe(statement)).execute(&mut conn).await.map_err(|e| e.to_string())?;
            conn.close().await.map_err(|e| e.to_string())
        })
    })
    .join()
    .map_err(|_| "the admin thread panicked".to_owned())?
}
