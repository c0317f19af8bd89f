//! [`SqliteMeta`]: the embedded [`MetaStore`](crate::MetaStore), one SQLite file in WAL mode.
//!
//! Writes go through a single connection (SQLite has one writer anyway, and one connection
//! means our own writers queue in the pool instead of spinning on `SQLITE_BUSY`); reads use a
//! small pool of `query_only` connections that WAL lets run beside the writer. Every write
//! transaction starts with `BEGIN IMMEDIATE` so that a transaction that reads before it writes
//! cannot fail half-way when another process (an admin command) writes the same file.
//!
//! The queries and the [`MetaStore`](crate::MetaStore) implementation are shared with PostgreSQL
//! ([`crate::pg`]): the files of `src/sqlstore/` are compiled here as this module's children,
//! against the aliases and the two transaction starters below. The schema is SQLite's own
//! (`sqlite/schema.rs`); the shared column encodings are in `src/sql.rs`.

#[path = "sqlstore/accounts.rs"]
#[allow(clippy::duplicate_mod, reason = "compiled once per SQL backend, by design")]
mod accounts;
#[path = "sqlstore/history.rs"]
#[allow(clippy::duplicate_mod, reason = "compiled once per SQL backend, by design")]
mod history;
#[path = "sqlstore/meta.rs"]
#[allow(clippy::duplicate_mod, reason = "compiled once per SQL backend, by design")]
mod meta;
#[path = "sqlstore/rows.rs"]
#[allow(clippy::duplicate_mod, reason = "compiled once per SQL backend, by design")]
mod rows;
mod schema;
#[cfg(test)]
mod tests;

use crate::{Result, StoreError};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};
use std::path::Path;
use std::time::Duration;

// What the shared SQL code (`src/sqlstore/`) is compiled against.
type Store = SqliteMeta;
type Db = Sqlite;
type DbPool = SqlitePool;
type DbConn = sqlx::SqliteConnection;
type DbRow = sqlx::sqlite::SqliteRow;
/// Appended to a `SELECT` of rows a write transaction must hold still: nothing, since
/// `BEGIN IMMEDIATE` already holds the whole database.
const FOR_UPDATE: &str = "";

/// A statement with a list of parameters as long as its batch: written with anonymous
/// parameters (see [`crate::sql::positional`]).
fn batch_sql(sql: String) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(crate::sql::positional(&sql))
}

/// A write transaction: `BEGIN IMMEDIATE` takes SQLite's write lock at once.
async fn begin_write(pool: &SqlitePool) -> Result<Transaction<'static, Sqlite>> {
    Ok(pool.begin_with("BEGIN IMMEDIATE").await?)
}

/// Tells a store's other writers of a commit, in its transaction: there are none, one server
/// process writes a SQLite file (an admin command commits no files).
async fn notify_commit(_conn: &mut DbConn, _user: i64, _folder: i64, _seq: u64) -> Result<()> {
    Ok(())
}

/// No notices: the server's own hub sees every commit ([`crate::MetaStore::commit_notices`]).
async fn commit_notices(_store: &SqliteMeta) -> Result<Option<futures::stream::BoxStream<'static, crate::Notice>>> {
    Ok(None)
}

/// The chunk lock, in this process: one server process writes a SQLite file.
async fn lock_chunks(store: &SqliteMeta, _user: crate::UserId, mode: crate::ChunkLock) -> Result<crate::StoreLock> {
    Ok(store.locks.lock_chunks(mode).await)
}

/// The maintenance lease, in this process.
async fn try_lock_maintenance(store: &SqliteMeta) -> Result<Option<crate::StoreLock>> {
    Ok(store.locks.try_lock_maintenance())
}

/// A read transaction; WAL gives it one snapshot for all its statements.
async fn begin_snapshot(pool: &SqlitePool) -> Result<Transaction<'static, Sqlite>> {
    Ok(pool.begin().await?)
}

/// How long a statement waits for another process's write lock before failing with "database
/// is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Concurrent readers on an on-disk database.
const READ_CONNECTIONS: u32 = 4;

/// Metadata in SQLite. Cheap to clone (the pools are shared).
#[derive(Clone, Debug)]
pub struct SqliteMeta {
    /// Exactly one connection: all writes.
    write: SqlitePool,
    /// Reads. For an in-memory database this is the same pool as `write`.
    read: SqlitePool,
    /// The chunk lock and the maintenance lease ([`crate::locks`]).
    locks: crate::locks::InProcessLocks,
}

impl SqliteMeta {
    /// Opens (creating it if missing) the database file at `path` and brings its schema up to
    /// date.
    ///
    /// Durability: WAL journal with `synchronous = FULL`, so the WAL is fsynced at every
    /// transaction commit. With `NORMAL` a power cut can undo the last commits even though the
    /// server already acknowledged them: devices would hold revs the server has forgotten and
    /// the server would hand the same rev numbers to different content. One fsync per commit
    /// batch (not per file) is a small price for that.
    pub async fn open(path: &Path) -> Result<SqliteMeta> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let open_error = |e: sqlx::Error| StoreError::Io {
            path: path.display().to_string(),
            source: std::io::Error::other(format!("cannot open the metadata database: {e}")),
        };
        let write = pool_options(1).connect_with(options.clone()).await.map_err(open_error)?;
        schema::migrate(&write).await?;
        let read = pool_options(READ_CONNECTIONS)
            .connect_with(options.pragma("query_only", "ON"))
            .await
            .map_err(open_error)?;
        Ok(SqliteMeta { write, read, locks: Default::default() })
    }

    /// A private, empty in-memory database (for tests). It lives as long as this value and its
    /// clones.
    pub async fn memory() -> Result<SqliteMeta> {
        let options = SqliteConnectOptions::new().in_memory(true).foreign_keys(true);
        // One connection that is never closed: the database dies with its last connection.
        let pool =
            pool_options(1).min_connections(1).idle_timeout(None).max_lifetime(None).connect_with(options).await?;
        schema::migrate(&pool).await?;
        Ok(SqliteMeta { write: pool.clone(), read: pool, locks: Default::default() })
    }

    /// The schema version of the open database.
    pub async fn schema_version(&self) -> Result<i64> {
        schema::version(&self.read).await
    }

    /// Latest schema version this build knows (what [`SqliteMeta::open`] migrates to).
    pub fn latest_schema_version() -> i64 {
        schema::MIGRATIONS.len() as i64
    }

    /// The pool for reads (a copy to another store reads through it).
    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.read
    }

    /// Closes the pools, waiting for in-flight queries (and checkpointing the WAL).
    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
}

fn pool_options(max: u32) -> SqlitePoolOptions {
    // A local file needs no liveness ping before each use.
    SqlitePoolOptions::new().max_connections(max).test_before_acquire(false)
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}
