//! [`PgMeta`]: the [`MetaStore`](crate::MetaStore) on PostgreSQL, for a deployment whose server instances share
//! one database.
//!
//! The queries and the [`MetaStore`](crate::MetaStore) implementation are SQLite's ([`crate::sqlite`]): the files
//! of `src/sqlstore/` are compiled here as this module's children, against the aliases and the
//! two transaction starters below. The schema is PostgreSQL's own (`pg/schema.rs`: `BIGINT`
//! identities, `BYTEA`, byte-ordered `COLLATE "C"` text), applied by its own migrations under
//! an advisory lock, so that instances starting together migrate once.
//!
//! Concurrency: several instances (and admin commands) write at once, where SQLite has one
//! writer. Write transactions run at `READ COMMITTED` and take row locks where SQLite's single
//! writer made them safe: a commit or a restore locks its folder's row (`SELECT … FOR UPDATE`)
//! before it reads the paths it decides, so two commits to one folder take turns and never
//! hand out the same rev; a prune batch locks its folder, and a chunk sweep locks every folder
//! of its user, so no commit runs between their read and their delete. Every other write is a
//! single statement, or an `UPDATE … WHERE` that PostgreSQL re-checks against the row a
//! concurrent writer left (an invite is used up once). Reads that must see one moment (usage,
//! the mark of a garbage collection) run in a `REPEATABLE READ` snapshot. Row locks were chosen
//! over `SERIALIZABLE`: commits to different folders never wait for each other nor fail, and
//! there is no retry loop to get wrong.
//!
//! Garbage collection and uploads meet at a per-user advisory lock, and maintenance runs under
//! an advisory lease, so that several instances are as safe as one (`pg/locks.rs`).
//!
//! Every commit transaction also sends one `NOTIFY` ([`COMMIT_CHANNEL`]), delivered when it
//! commits; [`crate::MetaStore::commit_notices`] listens for them, so that each instance pushes
//! the commits of the others to its devices.

#[path = "sqlstore/accounts.rs"]
#[allow(clippy::duplicate_mod, reason = "compiled once per SQL backend, by design")]
mod accounts;
#[path = "sqlstore/history.rs"]
#[allow(clippy::duplicate_mod, reason = "compiled once per SQL backend, by design")]
mod history;
mod locks;
#[path = "sqlstore/meta.rs"]
#[allow(clippy::duplicate_mod, reason = "compiled once per SQL backend, by design")]
mod meta;
#[path = "sqlstore/rows.rs"]
#[allow(clippy::duplicate_mod, reason = "compiled once per SQL backend, by design")]
mod rows;
mod schema;
pub mod testing;

use crate::{CommitNotice, Notice, Result, StoreError};
use futures::stream::BoxStream;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};
use std::str::FromStr;
use std::time::Duration;

// What the shared SQL code (`src/sqlstore/`) is compiled against.
type Store = PgMeta;
type Db = Postgres;
type DbPool = PgPool;
type DbConn = sqlx::PgConnection;
type DbRow = sqlx::postgres::PgRow;
/// Appended to a `SELECT` of rows a write transaction must hold still until it ends.
const FOR_UPDATE: &str = " FOR UPDATE";

/// A statement with a list of parameters as long as its batch, as it is.
fn batch_sql(sql: String) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(sql)
}

/// A write transaction, at PostgreSQL's default `READ COMMITTED`: what must not change under it
/// is locked by row (see the module doc).
async fn begin_write(pool: &PgPool) -> Result<Transaction<'static, Postgres>> {
    Ok(pool.begin().await?)
}

/// A read transaction whose statements all see one snapshot.
async fn begin_snapshot(pool: &PgPool) -> Result<Transaction<'static, Postgres>> {
    Ok(pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY").await?)
}

/// The channel on which every commit transaction notifies the instances sharing the database.
pub const COMMIT_CHANNEL: &str = "filesync_commits";

/// Notifies [`COMMIT_CHANNEL`] of a commit, inside its transaction: PostgreSQL delivers it to
/// every listener when, and only if, the transaction commits. The payload is small:
/// `USER FOLDER SEQ` in decimal.
async fn notify_commit(conn: &mut DbConn, user: i64, folder: i64, seq: u64) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(COMMIT_CHANNEL)
        .bind(format!("{user} {folder} {seq}"))
        .execute(conn)
        .await?;
    Ok(())
}

/// Listens on [`COMMIT_CHANNEL`] on a connection of its own. If that connection drops, the
/// stream logs it and connects and listens again (every second until it can); notices sent
/// meanwhile are lost, so once it listens again it yields [`Notice::MayHaveMissed`]: the
/// server then has every device pull, and nothing committed in the gap waits longer.
async fn commit_notices(store: &PgMeta) -> Result<Option<BoxStream<'static, Notice>>> {
    let first = listen(store.read.clone()).await?;
    let notices = futures::stream::unfold((first, store.read.clone()), |(mut listener, pool)| async move {
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) => match parse_notice(n.payload()) {
                    Some(notice) => return Some((Notice::Commit(notice), (listener, pool))),
                    None => tracing::warn!(payload = n.payload(), "ignoring a malformed commit notification"),
                },
                // `Ok(None)`: the connection was lost (and would be re-established silently).
                Ok(None) | Err(_) => {
                    tracing::warn!("lost the connection that listens for other instances' commits; listening again");
                    drop(listener);
                    loop {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        match listen(pool.clone()).await {
                            Ok(l) => return Some((Notice::MayHaveMissed, (l, pool))),
                            Err(e) => {
                                tracing::warn!("cannot listen for other instances' commits yet ({e}); retrying")
                            }
                        }
                    }
                }
            }
        }
    });
    Ok(Some(Box::pin(notices)))
}

/// A connection of its own (with `pool`'s options) listening on [`COMMIT_CHANNEL`].
async fn listen(pool: PgPool) -> Result<PgListener> {
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.listen(COMMIT_CHANNEL).await?;
    Ok(listener)
}

/// Takes `user`'s chunk lock: an advisory lock every instance sees (`pg/locks.rs`).
async fn lock_chunks(store: &PgMeta, user: crate::UserId, mode: crate::ChunkLock) -> Result<crate::StoreLock> {
    store.locks.lock_chunks(user, mode).await
}

/// The maintenance lease: an advisory lock every instance sees (`pg/locks.rs`).
async fn try_lock_maintenance(store: &PgMeta) -> Result<Option<crate::StoreLock>> {
    store.locks.try_lock_maintenance().await
}

/// `USER FOLDER SEQ`, as [`notify_commit`] writes it.
fn parse_notice(payload: &str) -> Option<CommitNotice> {
    let mut parts = payload.split(' ').map(str::parse::<u64>);
    let notice = CommitNotice { user: parts.next()?.ok()?, folder: parts.next()?.ok()?, seq: parts.next()?.ok()? };
    parts.next().is_none().then_some(notice)
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// Where a server's metadata lives in PostgreSQL: the URL, and a password given apart from it
/// (read from a file) for when the URL has none. Its `Debug` never shows a password.
#[derive(Clone)]
pub struct PgConfig {
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=…]`.
    pub url: String,
    pub password: Option<String>,
}

impl PgConfig {
    /// Connects and migrates ([`PgMeta::connect`]).
    pub async fn connect(&self) -> Result<PgMeta> {
        PgMeta::connect(&self.url, self.password.as_deref()).await
    }

    /// The URL without its password, for messages.
    pub fn display_url(&self) -> String {
        redact(&self.url)
    }

    /// Reads a password file: its first line, without the line ending. The message of an
    /// error names the file.
    pub fn read_password_file(path: &std::path::Path) -> std::result::Result<String, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the database password from {}: {e}", path.display()))?;
        let line = text.lines().next().unwrap_or_default();
        if line.is_empty() {
            return Err(format!("{} is empty: write the database password on its first line", path.display()));
        }
        Ok(line.to_owned())
    }
}

impl std::fmt::Debug for PgConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConfig")
            .field("url", &redact(&self.url))
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

/// Connections one store (one server instance) opens to PostgreSQL at most.
const MAX_CONNECTIONS: u32 = 16;
/// How long a request waits for a free connection, or for PostgreSQL to answer a connect.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(15);

/// Metadata in PostgreSQL. Cheap to clone (the pool is shared).
#[derive(Clone, Debug)]
pub struct PgMeta {
    /// Both fields are the same pool; the shared code names the pool by what it does.
    write: PgPool,
    read: PgPool,
    /// Connections that hold advisory locks, apart from the query pool.
    locks: locks::PgLocks,
}

impl PgMeta {
    /// Connects to the database at `url` (`postgres://USER@HOST[:PORT]/DB[?sslmode=require]`)
    /// and brings its schema up to date. The password comes from the URL, else `password`, else
    /// the `PGPASSWORD` environment variable (or `~/.pgpass`), as with `psql`. TLS is used as
    /// `sslmode` asks (rustls; `verify-full` checks the server's certificate and name).
    pub async fn connect(url: &str, password: Option<&str>) -> Result<PgMeta> {
        let mut options = PgConnectOptions::from_str(url).map_err(|e| {
            StoreError::Connect(format!(
                "the database address {} is not a valid PostgreSQL URL ({e}); write it as \
                 postgres://USER@HOST/DATABASE",
                redact(url)
            ))
        })?;
        if let Some(password) = password.filter(|_| url_password(url).is_none()) {
            options = options.password(password);
        }
        PgMeta::open(options).await
    }

    /// Connects with `options` and brings the schema up to date.
    pub async fn open(options: PgConnectOptions) -> Result<PgMeta> {
        let shown = describe(&options);
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.clone())
            .await
            .map_err(|e| {
                StoreError::Connect(format!(
                    "cannot connect to the metadata database at {shown}: {e}; check that PostgreSQL \
                     runs there and that the user, password and database are right"
                ))
            })?;
        schema::migrate(&pool).await?;
        Ok(PgMeta { write: pool.clone(), read: pool, locks: locks::PgLocks::new(options) })
    }

    /// The schema version of the open database.
    pub async fn schema_version(&self) -> Result<i64> {
        schema::version(&self.read).await
    }

    /// Latest schema version this build knows (what [`PgMeta::open`] migrates to).
    pub fn latest_schema_version() -> i64 {
        schema::MIGRATIONS.len() as i64
    }

    /// The query pool (a copy from another store writes through it).
    pub(crate) fn pool(&self) -> &PgPool {
        &self.write
    }

    /// Closes the pools, waiting for in-flight queries (and releasing the locks still held).
    pub async fn close(&self) {
        self.locks.close().await;
        self.write.close().await;
    }
}

/// `postgres://USER@HOST:PORT/DB`: where a store connects, without its password, for messages.
fn describe(options: &PgConnectOptions) -> String {
    format!(
        "postgres://{}@{}:{}/{}",
        options.get_username(),
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or(options.get_username())
    )
}

/// The URL's parts around its password: (`scheme://user`, password, `@host…`), if it has one.
fn url_password(url: &str) -> Option<(&str, &str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    let (userinfo, _) = authority.rsplit_once('@')?;
    let (user, password) = userinfo.split_once(':')?;
    let user_end = scheme.len() + 3 + user.len();
    Some((&url[..user_end], password, &url[user_end + 1 + password.len()..]))
}

/// `url` with its password, if any, replaced by `***`: fit for messages and logs.
pub fn redact(url: &str) -> String {
    match url_password(url) {
        Some((before, _, after)) => format!("{before}:***{after}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::{redact, url_password};

    #[test]
    fn passwords_are_redacted_from_urls_in_messages() {
        assert_eq!(
            redact("postgres://u:s3cr3t@db:5432/fs?sslmode=require"),
            "postgres://u:***@db:5432/fs?sslmode=require"
        );
        assert_eq!(redact("postgres://u@db/fs"), "postgres://u@db/fs");
        assert_eq!(redact("postgres://db/fs"), "postgres://db/fs");
        assert_eq!(redact("not a url"), "not a url");
    }

    #[test]
    fn commit_notices_are_parsed_strictly() {
        let n = super::parse_notice("7 42 1000").unwrap();
        assert_eq!((n.user, n.folder, n.seq), (7, 42, 1000));
        for bad in ["", "7 42", "7 42 1000 9", "7 x 1", "-1 2 3"] {
            assert_eq!(super::parse_notice(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn debug_output_hides_passwords() {
        let c = super::PgConfig { url: "postgres://u:s3cr3t@db/fs".into(), password: Some("hunter2".into()) };
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cr3t") && !shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn the_password_file_gives_its_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "correct horse \r\nsecond line\n").unwrap();
        assert_eq!(super::PgConfig::read_password_file(&f).unwrap(), "correct horse ");
        std::fs::write(&f, "\n").unwrap();
        assert!(super::PgConfig::read_password_file(&f).unwrap_err().contains("is empty"));
        assert!(super::PgConfig::read_password_file(&dir.path().join("nope")).unwrap_err().contains("nope"));
    }

    #[test]
    fn a_password_in_the_url_is_found() {
        assert_eq!(url_password("postgres://u:p@ss@db/fs").map(|p| p.1), Some("p@ss"));
        assert_eq!(url_password("postgres://u@db/fs"), None);
        assert_eq!(url_password("postgres://db/fs?user=a:b@c"), None);
    }
}
