//! The agent's local state database (SQLite): per synced folder, the server cursor, a mirror
//! of the server's entries, and the base of every path (what was last synced, plus the local
//! stat at that moment so the scanner can skip rehashing); and a small key/value table.
//!
//! Durability: WAL with `synchronous=NORMAL`. A power loss may drop the last transactions
//! (never corrupt the file). That is safe here because everything in it is re-derivable: a
//! lost cursor or mirror row is fetched again from the server, and a lost base makes the
//! planner compare local and remote content afresh (same content: record the base; different:
//! a conflict copy) — never a silent overwrite or delete.

use filesync_core::{ChunkRef, EntryKind, EntryState, FileMeta, Hash, RelPath};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{AssertSqlSafe, Row, Sqlite, SqlitePool, Transaction};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

mod scoped;
pub use scoped::Totals;

/// The schema, one step per entry; `schema_version` holds how many have been applied. Only
/// ever append.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE folders (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    server_folder_id INTEGER,
    cursor INTEGER
);
-- The server's current entry per path; kind NULL is a tombstone.
CREATE TABLE remote (
    folder INTEGER NOT NULL REFERENCES folders(id),
    path TEXT NOT NULL,
    rev INTEGER NOT NULL,
    kind INTEGER,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    executable INTEGER NOT NULL,
    hash BLOB NOT NULL,
    chunks BLOB NOT NULL,
    device_id INTEGER NOT NULL,
    device_name TEXT NOT NULL,
    committed_at INTEGER NOT NULL,
    PRIMARY KEY (folder, path)
);
-- The last synced state per path, and the local stat when it was recorded.
CREATE TABLE base (
    folder INTEGER NOT NULL REFERENCES folders(id),
    path TEXT NOT NULL,
    rev INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    executable INTEGER NOT NULL,
    hash BLOB NOT NULL,
    chunks BLOB NOT NULL,
    local_size INTEGER NOT NULL,
    local_mtime_ns INTEGER NOT NULL,
    local_ino INTEGER NOT NULL,
    PRIMARY KEY (folder, path)
);
CREATE TABLE kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"#,
    r#"
-- Synced files by content: a moved or copied file is rebuilt from a local copy.
CREATE INDEX base_by_hash ON base (folder, hash);
-- Downloads about to be renamed into place (see `StateDb::set_installing`).
CREATE TABLE installing (
    folder INTEGER NOT NULL REFERENCES folders(id),
    path TEXT NOT NULL,
    rev INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    hash BLOB NOT NULL,
    PRIMARY KEY (folder, path)
);
"#,
    r#"
-- Per folder: synced files, their bytes and the conflict copies among them, kept by triggers
-- so that a pass never counts the whole folder. A conflict copy is a name containing
-- "(conflicted copy from " (`filesync_core::conflict`).
CREATE TABLE totals (
    folder INTEGER PRIMARY KEY REFERENCES folders(id),
    files INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    conflicts INTEGER NOT NULL DEFAULT 0
);
INSERT INTO totals (folder) SELECT id FROM folders;
UPDATE totals SET
    files = (SELECT COUNT(*) FROM base b WHERE b.folder = totals.folder AND b.kind = 0),
    bytes = (SELECT COALESCE(SUM(size), 0) FROM base b WHERE b.folder = totals.folder AND b.kind = 0),
    conflicts = (SELECT COUNT(*) FROM base b WHERE b.folder = totals.folder AND b.kind = 0
                 AND b.path LIKE '%(conflicted copy from %');
CREATE TRIGGER totals_new_folder AFTER INSERT ON folders BEGIN
    INSERT OR IGNORE INTO totals (folder) VALUES (NEW.id);
END;
CREATE TRIGGER totals_gone_folder AFTER DELETE ON folders BEGIN
    DELETE FROM totals WHERE folder = OLD.id;
END;
CREATE TRIGGER totals_base_insert AFTER INSERT ON base WHEN NEW.kind = 0 BEGIN
    UPDATE totals SET files = files + 1, bytes = bytes + NEW.size,
        conflicts = conflicts + (NEW.path LIKE '%(conflicted copy from %')
    WHERE folder = NEW.folder;
END;
CREATE TRIGGER totals_base_delete AFTER DELETE ON base WHEN OLD.kind = 0 BEGIN
    UPDATE totals SET files = files - 1, bytes = bytes - OLD.size,
        conflicts = conflicts - (OLD.path LIKE '%(conflicted copy from %')
    WHERE folder = OLD.folder;
END;
CREATE TRIGGER totals_base_update AFTER UPDATE ON base BEGIN
    UPDATE totals SET
        files = files + (NEW.kind = 0) - (OLD.kind = 0),
        bytes = bytes + (CASE WHEN NEW.kind = 0 THEN NEW.size ELSE 0 END)
                      - (CASE WHEN OLD.kind = 0 THEN OLD.size ELSE 0 END),
        conflicts = conflicts + (NEW.kind = 0 AND NEW.path LIKE '%(conflicted copy from %')
                              - (OLD.kind = 0 AND OLD.path LIKE '%(conflicted copy from %')
    WHERE folder = NEW.folder;
END;
"#,
    RECOMPUTE_FILE_HASHES,
    r#"
-- Paths whose mirror entry changed and that no finished sync has looked at since (see
-- `StateDb::apply_remote`): a sync that pulled and then failed leaves them for the next.
CREATE TABLE IF NOT EXISTS unapplied (
    folder INTEGER NOT NULL REFERENCES folders(id),
    path TEXT NOT NULL,
    PRIMARY KEY (folder, path)
);
"#,
    r#"
-- Versions of files this computer had and holds no base for: files removed from an excluded
-- subfolder once the server had them (selective sync) or forgotten there as deleted, and files
-- committed while their path was ignored. When the path is synced again, a file written there
-- since is an edit of that version, not a conflict with it (see
-- `engine::input::settle_own_version`).
CREATE TABLE IF NOT EXISTS own_versions (
    folder INTEGER NOT NULL REFERENCES folders(id),
    path TEXT NOT NULL,
    rev INTEGER NOT NULL,
    hash BLOB NOT NULL,
    PRIMARY KEY (folder, path)
);
"#,
    r#"
-- Recording a base for a path forgets its own version: the record is done with once the file
-- syncs again (settled as an edit of that version, or downloaded), whichever step records it.
DELETE FROM own_versions WHERE EXISTS
    (SELECT 1 FROM base b WHERE b.folder = own_versions.folder AND b.path = own_versions.path);
CREATE TRIGGER IF NOT EXISTS own_versions_done_on_base_insert AFTER INSERT ON base BEGIN
    DELETE FROM own_versions WHERE folder = NEW.folder AND path = NEW.path;
END;
CREATE TRIGGER IF NOT EXISTS own_versions_done_on_base_update AFTER UPDATE ON base BEGIN
    DELETE FROM own_versions WHERE folder = NEW.folder AND path = NEW.path;
END;
"#,
];

/// The rev of an `installing` row that stands for an upload about to be committed rather than
/// a download (server revs start at 1): its hash is the content sent. See
/// `engine::input::settle_own_version`.
pub const UPLOADING: u64 = 0;

/// A step of [`MIGRATIONS`] that SQL cannot do (SQLite has no BLAKE3), run by
/// [`recompute_file_hashes`] in the same transaction: protocol version 2 defines a file's hash
/// as the hash of its chunk list (`filesync_core::file_hash`), so the hashes recorded under
/// version 1 (of the whole content) are recomputed from the stored chunk lists.
const RECOMPUTE_FILE_HASHES: &str = "-- Rust: recompute file hashes from chunk lists (protocol version 2)";

/// Rows per statement when [`recompute_file_hashes`] pages through a table.
const RECOMPUTE_PAGE: i64 = 5000;

/// Sets `hash` of every file row of `remote` and `base` to the hash of its chunk list, then the
/// hash of each `installing` row to that of the mirror row it was downloaded from. An
/// `installing` row without one (the mirror moved on) is dropped: the file it vouched for is
/// then compared with the remote entry afresh, and the planner takes equal content as synced.
/// A row whose chunk list is torn is left as it is, reported as corrupt when read.
async fn recompute_file_hashes(tx: &mut Transaction<'static, Sqlite>) -> Result<(), StateError> {
    for table in ["remote", "base"] {
        let mut after = i64::MIN;
        loop {
            let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(AssertSqlSafe(format!(
                "SELECT rowid, chunks FROM {table} WHERE kind = 0 AND rowid > ? ORDER BY rowid LIMIT ?"
            )))
            .bind(after)
            .bind(RECOMPUTE_PAGE)
            .fetch_all(&mut **tx)
            .await
            .map_err(ctx(format!("reading {table} to recompute file hashes")))?;
            for (rowid, chunks) in &rows {
                after = *rowid;
                let Some(chunks) = decode_chunks(chunks) else { continue };
                sqlx::query(AssertSqlSafe(format!("UPDATE {table} SET hash = ? WHERE rowid = ?")))
                    .bind(filesync_core::file_hash(&chunks).0.to_vec())
                    .bind(rowid)
                    .execute(&mut **tx)
                    .await
                    .map_err(ctx(format!("recomputing a file hash in {table}")))?;
            }
            if (rows.len() as i64) < RECOMPUTE_PAGE {
                break;
            }
        }
    }
    sqlx::raw_sql(
        "DELETE FROM installing WHERE NOT EXISTS (SELECT 1 FROM remote r WHERE r.folder = installing.folder \
         AND r.path = installing.path AND r.rev = installing.rev AND r.kind = installing.kind); \
         UPDATE installing SET hash = (SELECT r.hash FROM remote r WHERE r.folder = installing.folder \
         AND r.path = installing.path AND r.rev = installing.rev);",
    )
    .execute(&mut **tx)
    .await
    .map_err(ctx("recomputing the hashes of interrupted downloads"))?;
    Ok(())
}

/// A row of the `base` table: the synced metadata at `rev`, and the local stat (`size`,
/// `mtime_ns`, `ino`) of the file when that was recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseRow {
    pub rev: u64,
    pub meta: FileMeta,
    /// The local stat when the base was recorded; `size` is [`BaseRow::UNTRUSTED`] when that
    /// stat cannot vouch for the content (the file was racy), so the next scan reads it.
    pub size: u64,
    pub mtime_ns: i64,
    pub ino: u64,
}

impl BaseRow {
    /// A local size no file has: the recorded stat never matches, and the file is read.
    pub const UNTRUSTED: u64 = u64::MAX;

    /// The base of `meta` at `rev`, recording the local `stat` it was seen with — trusted
    /// unless `racy` (see [`crate::scan::is_racy`]).
    pub fn with_stat(rev: u64, meta: FileMeta, stat: &crate::fs::Stat, racy: bool) -> BaseRow {
        let size = if racy { BaseRow::UNTRUSTED } else { stat.size };
        BaseRow { rev, meta, size, mtime_ns: stat.mtime_ns, ino: stat.ino }
    }
}

/// What one step of a pass learned: see [`StateDb::record_step`].
#[derive(Clone, Debug, Default)]
pub struct StepRecord {
    /// Server entries to store in the mirror (the current entry after a commit).
    pub remote: Vec<EntryState>,
    pub bases: Vec<(RelPath, BaseRow)>,
    pub forget: Vec<RelPath>,
    /// Moves the folder's cursor over the revs of `remote` that directly follow it: this
    /// computer's own commits need no pull, while a rev another device took in between
    /// stops the cursor until a pull brings it.
    pub advance_cursor: bool,
    /// Versions this computer had and no longer holds a base for (files evicted from an
    /// excluded subfolder): path, rev and content (see [`StateDb::own_versions_among`]).
    /// Recording a base forgets the path's own version (a trigger of the schema does it).
    pub own_versions: Vec<(RelPath, u64, Hash)>,
    /// Own versions done with although no base is recorded: the server moved on from them.
    pub forget_own_versions: Vec<RelPath>,
    /// Interrupted downloads (and lost commit answers) a pass has looked at (see
    /// [`StateDb::set_installing`]). Recording a base forgets the path's row as well.
    pub forget_installing: Vec<RelPath>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot open the state database {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(
        "the state database {path} has schema version {found}, but this FileSync knows only up to {known}; \
         upgrade FileSync, or move the file away to rebuild the state from the server"
    )]
    TooNew { path: PathBuf, found: i64, known: usize },
    #[error("state database: {context}: {source}")]
    Db {
        context: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("state database: corrupt row for '{path}' in folder '{folder}': {detail}")]
    Corrupt { folder: String, path: String, detail: String },
}

fn ctx(context: impl Into<String>) -> impl FnOnce(sqlx::Error) -> StateError {
    let context = context.into();
    move |source| StateError::Db { context, source }
}

/// The agent's state. Cheap to clone (a connection pool).
#[derive(Clone, Debug)]
pub struct StateDb {
    pool: SqlitePool,
}

impl StateDb {
    /// Opens (creating it and its directory if missing) and migrates the database at `path`.
    pub async fn open(path: &Path) -> Result<StateDb, StateError> {
        let open_err =
            |source: Box<dyn std::error::Error + Send + Sync>| StateError::Open { path: path.to_path_buf(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| open_err(Box::new(e)))?;
        }
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        // A few connections so that reads proceed while a write transaction runs (WAL);
        // writers take the lock up front (BEGIN IMMEDIATE), so they queue instead of failing.
        // The extra ones close after a quiet minute: each holds its own page and statement
        // caches, which an idle agent does not need.
        // A local file needs no liveness ping before each use (sqlx still checks a connection
        // as it goes back to the pool).
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(1)
            .test_before_acquire(false)
            .idle_timeout(Duration::from_secs(60))
            .connect_with(opts)
            .await
            .map_err(|e| open_err(Box::new(e)))?;
        let db = StateDb { pool };
        db.migrate(path).await?;
        Ok(db)
    }

    /// A fresh in-memory database, for tests.
    pub async fn memory() -> Result<StateDb, StateError> {
        let opts =
            SqliteConnectOptions::from_str("sqlite::memory:").map_err(ctx("in-memory options"))?.foreign_keys(true);
        // Every connection to ":memory:" is a separate database: keep exactly one, forever.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .test_before_acquire(false)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(opts)
            .await
            .map_err(ctx("opening an in-memory database"))?;
        let db = StateDb { pool };
        db.migrate(Path::new(":memory:")).await?;
        Ok(db)
    }

    async fn migrate(&self, path: &Path) -> Result<(), StateError> {
        let mut tx = self.write_tx("migrating").await?;
        sqlx::raw_sql("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            .execute(&mut *tx)
            .await
            .map_err(ctx("creating schema_version"))?;
        let found: Option<i64> = sqlx::query_scalar("SELECT version FROM schema_version")
            .fetch_optional(&mut *tx)
            .await
            .map_err(ctx("reading schema_version"))?;
        if found.is_none() {
            sqlx::query("INSERT INTO schema_version (version) VALUES (0)")
                .execute(&mut *tx)
                .await
                .map_err(ctx("initializing schema_version"))?;
        }
        let found = found.unwrap_or(0);
        if found < 0 || found as usize > MIGRATIONS.len() {
            return Err(StateError::TooNew { path: path.to_path_buf(), found, known: MIGRATIONS.len() });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
            if *sql == RECOMPUTE_FILE_HASHES {
                recompute_file_hashes(&mut tx).await?;
            } else {
                sqlx::raw_sql(*sql).execute(&mut *tx).await.map_err(ctx(format!("applying migration {}", i + 1)))?;
            }
            sqlx::query("UPDATE schema_version SET version = ?")
                .bind((i + 1) as i64)
                .execute(&mut *tx)
                .await
                .map_err(ctx("updating schema_version"))?;
        }
        tx.commit().await.map_err(ctx("committing migrations"))
    }

    /// A write transaction that holds the write lock from the start, so it cannot fail
    /// half-way because another connection wrote in between (SQLITE_BUSY_SNAPSHOT).
    async fn write_tx(&self, what: &str) -> Result<Transaction<'static, Sqlite>, StateError> {
        self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(ctx(format!("{what}: starting a transaction")))
    }

    /// The `folders.id` of `folder`, created if missing.
    async fn folder_id(tx: &mut Transaction<'static, Sqlite>, folder: &str) -> Result<i64, StateError> {
        sqlx::query_scalar(
            "INSERT INTO folders (name) VALUES (?) ON CONFLICT (name) DO UPDATE SET name = name RETURNING id",
        )
        .bind(folder)
        .fetch_one(&mut **tx)
        .await
        .map_err(ctx(format!("registering folder '{folder}'")))
    }

    async fn commit(tx: Transaction<'static, Sqlite>, what: &str, folder: &str) -> Result<(), StateError> {
        tx.commit().await.map_err(ctx(format!("{what} for folder '{folder}': commit")))
    }

    /// The server folder id and journal cursor last recorded for `folder`.
    pub async fn folder_cursor(&self, folder: &str) -> Result<Option<(u64, u64)>, StateError> {
        let row: Option<(Option<i64>, Option<i64>)> =
            sqlx::query_as("SELECT server_folder_id, cursor FROM folders WHERE name = ?")
                .bind(folder)
                .fetch_optional(&self.pool)
                .await
                .map_err(ctx(format!("reading the cursor of folder '{folder}'")))?;
        Ok(match row {
            Some((Some(id), Some(cursor))) => Some((id as u64, cursor as u64)),
            _ => None,
        })
    }

    pub async fn set_folder_cursor(&self, folder: &str, server_folder_id: u64, cursor: u64) -> Result<(), StateError> {
        let mut tx = self.write_tx("setting the cursor").await?;
        set_cursor(&mut tx, folder, server_folder_id, cursor).await?;
        Self::commit(tx, "setting the cursor", folder).await
    }

    /// Records a batch of server changes and the cursor after them, atomically: the cursor
    /// never gets ahead of the mirror. Returns the paths whose entry the mirror did not hold
    /// already (an agent's own commits, recorded when they were accepted, come back as no
    /// change), and records them as *unapplied* in the same transaction, until
    /// [`StateDb::clear_unapplied`]: a sync that fails after pulling would otherwise leave
    /// them behind a cursor that says they were seen.
    pub async fn apply_remote(
        &self,
        folder: &str,
        entries: &[EntryState],
        server_folder_id: u64,
        new_cursor: u64,
    ) -> Result<Vec<RelPath>, StateError> {
        let mut tx = self.write_tx("applying remote changes").await?;
        let id = Self::folder_id(&mut tx, folder).await?;
        let mut changed = Vec::with_capacity(entries.len());
        for batch in entries.chunks(BATCH_ROWS) {
            let paths = changed_paths(&mut tx, id, folder, batch).await?;
            if !paths.is_empty() {
                let sql = multi_row_sql("INSERT OR IGNORE INTO unapplied (folder, path) VALUES ", 2, paths.len(), "");
                let mut q = sqlx::query(AssertSqlSafe(sql));
                for path in &paths {
                    q = q.bind(id).bind(path.as_str());
                }
                q.execute(&mut *tx).await.map_err(ctx(format!("noting changed paths of folder '{folder}'")))?;
            }
            changed.extend(paths);
            upsert_remote(&mut tx, id, folder, batch).await?;
        }
        set_cursor(&mut tx, folder, server_folder_id, new_cursor).await?;
        Self::commit(tx, "applying remote changes", folder).await?;
        Ok(changed)
    }

    /// The paths [`StateDb::apply_remote`] found changed that no finished sync has looked at.
    pub async fn unapplied(&self, folder: &str) -> Result<Vec<RelPath>, StateError> {
        let rows = sqlx::query(
            "SELECT u.path FROM unapplied u JOIN folders f ON f.id = u.folder WHERE f.name = ? ORDER BY u.path",
        )
        .bind(folder)
        .fetch_all(&self.pool)
        .await
        .map_err(ctx(format!("reading the unapplied paths of folder '{folder}'")))?;
        rows.iter()
            .map(|r| {
                let path: String = r.get(0);
                RelPath::new(&path)
                    .map_err(|e| corrupt(folder, &path, format!("an unapplied path that is not valid: {e}")))
            })
            .collect()
    }

    /// A sync looked at every unapplied path of `folder`.
    pub async fn clear_unapplied(&self, folder: &str) -> Result<(), StateError> {
        sqlx::query("DELETE FROM unapplied WHERE folder = (SELECT id FROM folders WHERE name = ?)")
            .bind(folder)
            .execute(&self.pool)
            .await
            .map_err(ctx(format!("clearing the unapplied paths of folder '{folder}'")))?;
        Ok(())
    }

    pub async fn upsert_remote(&self, folder: &str, entry: &EntryState) -> Result<(), StateError> {
        let mut tx = self.write_tx("recording a remote entry").await?;
        let id = Self::folder_id(&mut tx, folder).await?;
        upsert_remote(&mut tx, id, folder, std::slice::from_ref(entry)).await?;
        Self::commit(tx, "recording a remote entry", folder).await
    }

    /// The mirror of the server's entries of `folder`, tombstones included.
    pub async fn remote_all(&self, folder: &str) -> Result<HashMap<RelPath, EntryState>, StateError> {
        self.read_remote(folder, None).await
    }

    pub async fn remote(&self, folder: &str, path: &RelPath) -> Result<Option<EntryState>, StateError> {
        let row = sqlx::query(REMOTE_SELECT_ONE)
            .bind(folder)
            .bind(path.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(ctx(format!("reading the remote entry '{path}' of folder '{folder}'")))?;
        row.map(|r| remote_from_row(folder, &r)).transpose()
    }

    /// Every base of `folder`. Costs memory in proportion to the folder: the engine's
    /// incremental passes use [`StateDb::bases_within`] instead.
    pub async fn bases(&self, folder: &str) -> Result<HashMap<RelPath, BaseRow>, StateError> {
        self.read_bases(folder, None).await
    }

    pub async fn set_base(&self, folder: &str, path: &RelPath, base: &BaseRow) -> Result<(), StateError> {
        self.set_bases(folder, std::slice::from_ref(&(path.clone(), base.clone()))).await
    }

    /// Records many bases in one transaction.
    pub async fn set_bases(&self, folder: &str, bases: &[(RelPath, BaseRow)]) -> Result<(), StateError> {
        self.record_step(folder, &StepRecord { bases: bases.to_vec(), ..StepRecord::default() }).await
    }

    pub async fn forget_base(&self, folder: &str, path: &RelPath) -> Result<(), StateError> {
        self.forget_bases(folder, std::slice::from_ref(path)).await
    }

    /// Forgets many bases in one transaction.
    pub async fn forget_bases(&self, folder: &str, paths: &[RelPath]) -> Result<(), StateError> {
        self.record_step(folder, &StepRecord { forget: paths.to_vec(), ..StepRecord::default() }).await
    }

    /// Records what one step of a pass learned — server entries, new bases, forgotten
    /// bases — in one transaction.
    pub async fn record_step(&self, folder: &str, rec: &StepRecord) -> Result<(), StateError> {
        if rec.remote.is_empty()
            && rec.bases.is_empty()
            && rec.forget.is_empty()
            && rec.own_versions.is_empty()
            && rec.forget_own_versions.is_empty()
            && rec.forget_installing.is_empty()
        {
            return Ok(());
        }
        let mut tx = self.write_tx("recording a sync step").await?;
        let id = Self::folder_id(&mut tx, folder).await?;
        for batch in rec.remote.chunks(BATCH_ROWS) {
            upsert_remote(&mut tx, id, folder, batch).await?;
        }
        for batch in rec.bases.chunks(BATCH_ROWS) {
            insert_bases(&mut tx, id, folder, batch).await?;
        }
        if rec.advance_cursor {
            let cursor: Option<i64> = sqlx::query_scalar("SELECT cursor FROM folders WHERE id = ?")
                .bind(id)
                .fetch_one(&mut *tx)
                .await
                .map_err(ctx(format!("reading the cursor of folder '{folder}'")))?;
            if let Some(cursor) = cursor {
                let held: std::collections::HashSet<u64> = rec.remote.iter().map(|e| e.rev).collect();
                let mut next = cursor as u64;
                while held.contains(&(next + 1)) {
                    next += 1;
                }
                if next != cursor as u64 {
                    sqlx::query("UPDATE folders SET cursor = ? WHERE id = ?")
                        .bind(next as i64)
                        .bind(id)
                        .execute(&mut *tx)
                        .await
                        .map_err(ctx(format!("moving the cursor of folder '{folder}'")))?;
                }
            }
        }
        for batch in rec.forget.chunks(BATCH_ROWS) {
            let sql = multi_row_sql("DELETE FROM base WHERE folder = ? AND path IN (", 1, batch.len(), ")");
            let mut q = sqlx::query(AssertSqlSafe(sql)).bind(id);
            for path in batch {
                q = q.bind(path.as_str());
            }
            q.execute(&mut *tx).await.map_err(ctx(format!("forgetting {} bases in folder '{folder}'", batch.len())))?;
        }
        for batch in rec.own_versions.chunks(BATCH_ROWS) {
            let sql = multi_row_sql(
                "INSERT INTO own_versions (folder, path, rev, hash) VALUES ",
                4,
                batch.len(),
                " ON CONFLICT (folder, path) DO UPDATE SET rev = excluded.rev, hash = excluded.hash",
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for (path, rev, hash) in batch {
                q = q.bind(id).bind(path.as_str()).bind(*rev as i64).bind(hash.0.to_vec());
            }
            q.execute(&mut *tx)
                .await
                .map_err(ctx(format!("recording versions this computer had in folder '{folder}'")))?;
        }
        for batch in rec.forget_own_versions.chunks(BATCH_ROWS) {
            let sql = multi_row_sql("DELETE FROM own_versions WHERE folder = ? AND path IN (", 1, batch.len(), ")");
            let mut q = sqlx::query(AssertSqlSafe(sql)).bind(id);
            for path in batch {
                q = q.bind(path.as_str());
            }
            q.execute(&mut *tx)
                .await
                .map_err(ctx(format!("forgetting versions this computer had in folder '{folder}'")))?;
        }
        for batch in rec.forget_installing.chunks(BATCH_ROWS) {
            let sql = multi_row_sql("DELETE FROM installing WHERE folder = ? AND path IN (", 1, batch.len(), ")");
            let mut q = sqlx::query(AssertSqlSafe(sql)).bind(id);
            for path in batch {
                q = q.bind(path.as_str());
            }
            q.execute(&mut *tx).await.map_err(ctx(format!("forgetting interrupted downloads in folder '{folder}'")))?;
        }
        Self::commit(tx, "recording a sync step", folder).await
    }

    /// Removes everything recorded about `folder`: cursor, remote mirror and bases.
    pub async fn forget_folder(&self, folder: &str) -> Result<(), StateError> {
        let mut tx = self.write_tx("forgetting a folder").await?;
        for sql in [
            "DELETE FROM remote WHERE folder = (SELECT id FROM folders WHERE name = ?)",
            "DELETE FROM base WHERE folder = (SELECT id FROM folders WHERE name = ?)",
            "DELETE FROM installing WHERE folder = (SELECT id FROM folders WHERE name = ?)",
            "DELETE FROM unapplied WHERE folder = (SELECT id FROM folders WHERE name = ?)",
            "DELETE FROM own_versions WHERE folder = (SELECT id FROM folders WHERE name = ?)",
            "DELETE FROM folders WHERE name = ?",
            // The folder's one-off requests and guard trip (`engine::policy`).
            "DELETE FROM kv WHERE key IN ('guard-trip/' || ?1, 'guard-confirm/' || ?1, 'revert/' || ?1)",
        ] {
            sqlx::query(sql)
                .bind(folder)
                .execute(&mut *tx)
                .await
                .map_err(ctx(format!("forgetting folder '{folder}'")))?;
        }
        Self::commit(tx, "forgetting", folder).await
    }

    pub async fn get_kv(&self, key: &str) -> Result<Option<String>, StateError> {
        sqlx::query_scalar("SELECT value FROM kv WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(ctx(format!("reading '{key}'")))
    }

    /// The values of those of `keys` that are set, in one statement.
    pub async fn get_kvs(&self, keys: &[&str]) -> Result<HashMap<String, String>, StateError> {
        let list = serde_json::to_string(keys).expect("a list of strings");
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT key, value FROM kv WHERE key IN (SELECT value FROM json_each(?))")
                .bind(list)
                .fetch_all(&self.pool)
                .await
                .map_err(ctx(format!("reading {}", keys.join(", "))))?;
        Ok(rows.into_iter().collect())
    }

    pub async fn delete_kv(&self, key: &str) -> Result<(), StateError> {
        sqlx::query("DELETE FROM kv WHERE key = ?")
            .bind(key)
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(ctx(format!("deleting '{key}'")))
    }

    pub async fn set_kv(&self, key: &str, value: &str) -> Result<(), StateError> {
        sqlx::query("INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(ctx(format!("writing '{key}'")))
    }
}

async fn set_cursor(
    tx: &mut Transaction<'static, Sqlite>,
    folder: &str,
    server_folder_id: u64,
    cursor: u64,
) -> Result<(), StateError> {
    sqlx::query(
        "INSERT INTO folders (name, server_folder_id, cursor) VALUES (?, ?, ?) \
         ON CONFLICT (name) DO UPDATE SET server_folder_id = excluded.server_folder_id, cursor = excluded.cursor",
    )
    .bind(folder)
    .bind(server_folder_id as i64)
    .bind(cursor as i64)
    .execute(&mut **tx)
    .await
    .map(drop)
    .map_err(ctx(format!("setting the cursor of folder '{folder}'")))
}

/// Upserts up to [`BATCH_ROWS`] bases, and forgets their interrupted downloads (an installed
/// download is now an ordinary base).
async fn insert_bases(
    tx: &mut Transaction<'static, Sqlite>,
    folder_id: i64,
    folder: &str,
    batch: &[(RelPath, BaseRow)],
) -> Result<(), StateError> {
    let sql = multi_row_sql(
        "INSERT INTO base (folder, path, rev, kind, size, mtime_ns, executable, hash, chunks, \
         local_size, local_mtime_ns, local_ino) VALUES ",
        12,
        batch.len(),
        " ON CONFLICT (folder, path) DO UPDATE SET rev = excluded.rev, kind = excluded.kind, \
         size = excluded.size, mtime_ns = excluded.mtime_ns, executable = excluded.executable, \
         hash = excluded.hash, chunks = excluded.chunks, local_size = excluded.local_size, \
         local_mtime_ns = excluded.local_mtime_ns, local_ino = excluded.local_ino",
    );
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for (path, b) in batch {
        q = q
            .bind(folder_id)
            .bind(path.as_str())
            .bind(b.rev as i64)
            .bind(kind_code(b.meta.kind))
            .bind(b.meta.size as i64)
            .bind(b.meta.mtime_ns)
            .bind(b.meta.executable)
            .bind(b.meta.hash.0.to_vec())
            .bind(encode_chunks(&b.meta.chunks))
            .bind(b.size as i64)
            .bind(b.mtime_ns)
            .bind(b.ino as i64);
    }
    q.execute(&mut **tx).await.map_err(ctx(format!("recording {} bases in folder '{folder}'", batch.len())))?;
    let sql = multi_row_sql("DELETE FROM installing WHERE folder = ? AND path IN (", 1, batch.len(), ")");
    let mut q = sqlx::query(AssertSqlSafe(sql)).bind(folder_id);
    for (path, _) in batch {
        q = q.bind(path.as_str());
    }
    q.execute(&mut **tx).await.map(drop).map_err(ctx(format!("recording {} bases in folder '{folder}'", batch.len())))
}

/// Of `entries`, those whose path the mirror holds at another rev or not at all.
async fn changed_paths(
    tx: &mut Transaction<'static, Sqlite>,
    folder_id: i64,
    folder: &str,
    entries: &[EntryState],
) -> Result<Vec<RelPath>, StateError> {
    let sql = multi_row_sql("SELECT path, rev FROM remote WHERE folder = ? AND path IN (", 1, entries.len(), ")");
    let mut q = sqlx::query_as::<_, (String, i64)>(AssertSqlSafe(sql)).bind(folder_id);
    for e in entries {
        q = q.bind(e.path.as_str());
    }
    let held: HashMap<String, i64> = q
        .fetch_all(&mut **tx)
        .await
        .map_err(ctx(format!("comparing remote changes of folder '{folder}'")))?
        .into_iter()
        .collect();
    Ok(entries.iter().filter(|e| held.get(e.path.as_str()) != Some(&(e.rev as i64))).map(|e| e.path.clone()).collect())
}

/// Upserts up to [`BATCH_ROWS`] remote entries in one statement.
async fn upsert_remote(
    tx: &mut Transaction<'static, Sqlite>,
    folder_id: i64,
    folder: &str,
    entries: &[EntryState],
) -> Result<(), StateError> {
    let sql = multi_row_sql(
        "INSERT INTO remote (folder, path, rev, kind, size, mtime_ns, executable, hash, chunks, device_id, \
         device_name, committed_at) VALUES ",
        12,
        entries.len(),
        " ON CONFLICT (folder, path) DO UPDATE SET rev = excluded.rev, kind = excluded.kind, size = excluded.size, \
         mtime_ns = excluded.mtime_ns, executable = excluded.executable, hash = excluded.hash, \
         chunks = excluded.chunks, device_id = excluded.device_id, device_name = excluded.device_name, \
         committed_at = excluded.committed_at",
    );
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for e in entries {
        // A tombstone keeps the columns of an empty file with kind NULL.
        let (kind, size, mtime_ns, executable, hash, chunks) = match &e.meta {
            Some(m) => {
                (Some(kind_code(m.kind)), m.size as i64, m.mtime_ns, m.executable, m.hash, encode_chunks(&m.chunks))
            }
            None => (None, 0, 0, false, Hash::default(), Vec::new()),
        };
        q = q
            .bind(folder_id)
            .bind(e.path.as_str())
            .bind(e.rev as i64)
            .bind(kind)
            .bind(size)
            .bind(mtime_ns)
            .bind(executable)
            .bind(hash.0.to_vec())
            .bind(chunks)
            .bind(e.device_id as i64)
            .bind(e.device_name.as_str())
            .bind(e.committed_at);
    }
    q.execute(&mut **tx)
        .await
        .map(drop)
        .map_err(ctx(format!("recording {} remote entries of folder '{folder}'", entries.len())))
}

/// Rows per multi-row statement: one statement per row would cost a round trip to the
/// SQLite worker thread each; 256 rows of 12 columns stay well below SQLite's limit of 32766
/// bound parameters.
const BATCH_ROWS: usize = 256;

/// `head` followed by `rows` groups of `cols` placeholders — `(?, ?), (?, ?)` — and `tail`;
/// for `cols == 1` the groups are bare `?` (an `IN (…)` list).
fn multi_row_sql(head: &str, cols: usize, rows: usize, tail: &str) -> String {
    let group = if cols == 1 { "?".to_string() } else { format!("({})", vec!["?"; cols].join(", ")) };
    format!("{head}{}{tail}", vec![group.as_str(); rows].join(", "))
}

const REMOTE_SELECT_ONE: &str = "SELECT r.path, r.rev, r.kind, r.size, r.mtime_ns, r.executable, r.hash, r.chunks, \
     r.device_id, r.device_name, r.committed_at FROM remote r JOIN folders f ON f.id = r.folder \
     WHERE f.name = ? AND r.path = ?";

fn corrupt(folder: &str, path: &str, detail: impl Into<String>) -> StateError {
    StateError::Corrupt { folder: folder.to_string(), path: path.to_string(), detail: detail.into() }
}

fn kind_code(kind: EntryKind) -> i64 {
    match kind {
        EntryKind::File => 0,
        EntryKind::Dir => 1,
    }
}

fn rel_path(folder: &str, r: &SqliteRow) -> Result<RelPath, StateError> {
    let s: String = r.get("path");
    RelPath::new(s.clone()).map_err(|e| corrupt(folder, &s, format!("invalid path: {e}")))
}

/// The metadata columns of a `remote` or `base` row; `None` for a tombstone.
fn meta_from_row(folder: &str, path: &str, r: &SqliteRow) -> Result<Option<FileMeta>, StateError> {
    let kind = match r.get::<Option<i64>, _>("kind") {
        None => return Ok(None),
        Some(0) => EntryKind::File,
        Some(1) => EntryKind::Dir,
        Some(k) => return Err(corrupt(folder, path, format!("unknown kind {k}"))),
    };
    let hash: Vec<u8> = r.get("hash");
    let chunks: Vec<u8> = r.get("chunks");
    let (size, mtime_ns, executable) = (r.get::<i64, _>("size"), r.get("mtime_ns"), r.get("executable"));
    file_meta(folder, path, kind, (size, mtime_ns, executable), &hash, &chunks).map(Some)
}

/// A row's metadata from its columns: `(size, mtime_ns, executable)`, the hash and the
/// encoded chunk list.
fn file_meta(
    folder: &str,
    path: &str,
    kind: EntryKind,
    (size, mtime_ns, executable): (i64, i64, bool),
    hash: &[u8],
    chunks: &[u8],
) -> Result<FileMeta, StateError> {
    Ok(FileMeta {
        kind,
        size: size as u64,
        mtime_ns,
        executable,
        hash: Hash::from_slice(hash).ok_or_else(|| corrupt(folder, path, "hash is not 32 bytes"))?,
        chunks: decode_chunks(chunks)
            .ok_or_else(|| corrupt(folder, path, "chunk list is not a multiple of 36 bytes"))?,
    })
}

fn remote_from_row(folder: &str, r: &SqliteRow) -> Result<EntryState, StateError> {
    let path = rel_path(folder, r)?;
    let meta = meta_from_row(folder, path.as_str(), r)?;
    Ok(EntryState {
        rev: r.get::<i64, _>("rev") as u64,
        meta,
        device_id: r.get::<i64, _>("device_id") as u64,
        device_name: r.get("device_name"),
        committed_at: r.get("committed_at"),
        path,
    })
}

/// Chunk lists are stored as 36-byte records: the 32-byte hash, then the length as u32 LE.
fn encode_chunks(chunks: &[ChunkRef]) -> Vec<u8> {
    let mut out = Vec::with_capacity(chunks.len() * 36);
    for c in chunks {
        out.extend_from_slice(&c.hash.0);
        out.extend_from_slice(&c.len.to_le_bytes());
    }
    out
}

fn decode_chunks(b: &[u8]) -> Option<Vec<ChunkRef>> {
    if !b.len().is_multiple_of(36) {
        return None;
    }
    Some(
        b.chunks_exact(36)
            .map(|r| ChunkRef {
                hash: Hash::from_slice(&r[..32]).expect("32 bytes"),
                len: u32::from_le_bytes(r[32..].try_into().expect("4 bytes")),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> RelPath {
        RelPath::new(s).unwrap()
    }

    fn file_meta(seed: u8, chunks: usize) -> FileMeta {
        let chunks: Vec<_> = (0..chunks)
            .map(|i| ChunkRef { hash: Hash([seed.wrapping_add(i as u8); 32]), len: 1000 + i as u32 })
            .collect();
        FileMeta {
            kind: EntryKind::File,
            size: chunks.iter().map(|c| c.len as u64).sum(),
            mtime_ns: -5 + seed as i64,
            executable: seed.is_multiple_of(2),
            hash: Hash([seed; 32]),
            chunks,
        }
    }

    fn entry(path: &str, rev: u64, meta: Option<FileMeta>) -> EntryState {
        EntryState {
            path: p(path),
            rev,
            meta,
            device_id: u64::MAX,
            device_name: "laptop".into(),
            committed_at: 1_700_000_000,
        }
    }

    #[test]
    fn chunk_encoding_round_trips() {
        let m = file_meta(3, 5);
        assert_eq!(encode_chunks(&m.chunks).len(), 5 * 36);
        assert_eq!(decode_chunks(&encode_chunks(&m.chunks)).unwrap(), m.chunks);
        assert!(decode_chunks(&[0; 35]).is_none());
    }

    #[tokio::test]
    async fn remote_mirror_and_cursor() {
        let db = StateDb::memory().await.unwrap();
        assert_eq!(db.folder_cursor("docs").await.unwrap(), None);
        let entries =
            vec![entry("a", 1, Some(file_meta(1, 3))), entry("d", 2, Some(FileMeta::dir(7))), entry("gone", 3, None)];
        db.apply_remote("docs", &entries, 9, 3).await.unwrap();
        assert_eq!(db.folder_cursor("docs").await.unwrap(), Some((9, 3)));
        let all = db.remote_all("docs").await.unwrap();
        assert_eq!(all.len(), 3);
        for e in &entries {
            assert_eq!(&all[&e.path], e);
        }
        let newer = entry("a", 4, None);
        db.upsert_remote("docs", &newer).await.unwrap();
        assert_eq!(db.remote("docs", &p("a")).await.unwrap(), Some(newer));
        assert_eq!(db.remote("docs", &p("zzz")).await.unwrap(), None);
        assert!(db.remote_all("other").await.unwrap().is_empty());
        db.set_folder_cursor("docs", 10, 0).await.unwrap();
        assert_eq!(db.folder_cursor("docs").await.unwrap(), Some((10, 0)));
    }

    #[tokio::test]
    async fn own_commits_move_the_cursor_only_over_revs_without_a_gap() {
        let db = StateDb::memory().await.unwrap();
        db.apply_remote("docs", &[entry("a", 5, Some(file_meta(1, 1)))], 9, 5).await.unwrap();
        let ours = |revs: &[u64]| StepRecord {
            remote: revs.iter().map(|r| entry(&format!("f{r}"), *r, Some(file_meta(2, 1)))).collect(),
            advance_cursor: true,
            ..StepRecord::default()
        };
        db.record_step("docs", &ours(&[7, 6])).await.unwrap();
        assert_eq!(db.folder_cursor("docs").await.unwrap(), Some((9, 7)));
        // Rev 8 went to another device: the cursor waits for a pull to bring it.
        db.record_step("docs", &ours(&[9, 10])).await.unwrap();
        assert_eq!(db.folder_cursor("docs").await.unwrap(), Some((9, 7)));
        assert_eq!(db.apply_remote("docs", &[entry("g", 8, None)], 9, 10).await.unwrap(), vec![p("g")]);
        assert_eq!(db.folder_cursor("docs").await.unwrap(), Some((9, 10)));
    }

    #[tokio::test]
    async fn bases_round_trip_and_forget() {
        let db = StateDb::memory().await.unwrap();
        let b = BaseRow { rev: 5, meta: file_meta(2, 2), size: 2001, mtime_ns: 123, ino: u64::MAX };
        db.set_base("f", &p("x/y"), &b).await.unwrap();
        db.set_base("f", &p("x"), &BaseRow { rev: 4, meta: FileMeta::dir(1), size: 0, mtime_ns: 1, ino: 0 })
            .await
            .unwrap();
        db.set_base("g", &p("x/y"), &b).await.unwrap();
        let bases = db.bases("f").await.unwrap();
        assert_eq!(bases.len(), 2);
        assert_eq!(bases[&p("x/y")], b);
        db.forget_base("f", &p("x/y")).await.unwrap();
        assert_eq!(db.bases("f").await.unwrap().len(), 1);
        db.apply_remote("f", &[entry("x", 4, Some(FileMeta::dir(1)))], 1, 4).await.unwrap();
        db.forget_folder("f").await.unwrap();
        assert!(db.bases("f").await.unwrap().is_empty());
        assert!(db.remote_all("f").await.unwrap().is_empty());
        assert_eq!(db.folder_cursor("f").await.unwrap(), None);
        assert_eq!(db.bases("g").await.unwrap().len(), 1, "other folders are untouched");
    }

    #[tokio::test]
    async fn kv() {
        let db = StateDb::memory().await.unwrap();
        assert_eq!(db.get_kv("status").await.unwrap(), None);
        db.set_kv("status", "idle").await.unwrap();
        db.set_kv("status", "syncing").await.unwrap();
        assert_eq!(db.get_kv("status").await.unwrap().as_deref(), Some("syncing"));
        db.delete_kv("status").await.unwrap();
        db.delete_kv("status").await.unwrap();
        assert_eq!(db.get_kv("status").await.unwrap(), None);
    }

    #[tokio::test]
    async fn file_database_persists_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("state.db");
        {
            let db = StateDb::open(&path).await.unwrap();
            db.set_folder_cursor("docs", 1, 42).await.unwrap();
            db.pool.close().await;
        }
        let db = StateDb::open(&path).await.unwrap();
        assert_eq!(db.folder_cursor("docs").await.unwrap(), Some((1, 42)));
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&db.pool).await.unwrap();
        assert_eq!(mode, "wal");
    }

    #[tokio::test]
    async fn refuses_a_database_from_a_newer_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let db = StateDb::open(&path).await.unwrap();
        sqlx::query("UPDATE schema_version SET version = 99").execute(&db.pool).await.unwrap();
        db.pool.close().await;
        let err = StateDb::open(&path).await.unwrap_err();
        assert!(matches!(err, StateError::TooNew { found: 99, .. }), "{err}");
    }

    /// Protocol version 2 redefined a file's hash as the hash of its chunk list: a database
    /// written before has its mirror, bases and interrupted downloads brought over, or every
    /// synced file would look changed (and every interrupted download unvouched for).
    #[tokio::test]
    async fn file_hashes_of_an_older_database_are_recomputed_from_chunk_lists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let db = StateDb::open(&path).await.unwrap();
        let (a, b) = (file_meta(1, 3), file_meta(2, 1));
        assert_ne!(a.hash, filesync_core::file_hash(&a.chunks), "written with an old-style hash");
        db.apply_remote("docs", &[entry("a", 4, Some(a.clone())), entry("b", 5, Some(b.clone()))], 1, 5).await.unwrap();
        db.apply_remote("docs", &[entry("d", 6, Some(FileMeta::dir(3))), entry("gone", 7, None)], 1, 7).await.unwrap();
        db.set_base("docs", &p("a"), &BaseRow { rev: 4, meta: a.clone(), size: 1, mtime_ns: 2, ino: 3 }).await.unwrap();
        let installing = [(p("a"), 4, EntryKind::File, a.hash), (p("b"), 3, EntryKind::File, b.hash)];
        db.set_installing("docs", &installing).await.unwrap();
        sqlx::query("UPDATE schema_version SET version = ?")
            .bind(MIGRATIONS.iter().position(|m| *m == RECOMPUTE_FILE_HASHES).unwrap() as i64)
            .execute(&db.pool)
            .await
            .unwrap();
        db.pool.close().await;

        let db = StateDb::open(&path).await.unwrap();
        let new = |m: &FileMeta| FileMeta { hash: filesync_core::file_hash(&m.chunks), ..m.clone() };
        let remote = db.remote_all("docs").await.unwrap();
        assert_eq!(remote[&p("a")].meta, Some(new(&a)));
        assert_eq!(remote[&p("b")].meta, Some(new(&b)));
        assert_eq!(remote[&p("d")].meta, Some(FileMeta::dir(3)), "directories have no content hash");
        assert_eq!(remote[&p("gone")].meta, None);
        assert_eq!(db.bases("docs").await.unwrap()[&p("a")].meta, new(&a));
        let installing = db.installing("docs").await.unwrap();
        assert_eq!(installing.get(&p("a")), Some(&(4, new(&a).hash)), "vouched for by the mirror row");
        assert_eq!(installing.get(&p("b")), None, "the mirror moved on: compared afresh");
    }

    #[tokio::test]
    async fn ten_thousand_rows_in_one_batch_is_fast() {
        let dir = tempfile::tempdir().unwrap();
        let db = StateDb::open(&dir.path().join("state.db")).await.unwrap();
        let bases: Vec<_> = (0..10_000)
            .map(|i| {
                (
                    p(&format!("dir{}/file{i}", i % 100)),
                    BaseRow { rev: i, meta: file_meta(i as u8, 1), size: 1000, mtime_ns: 5, ino: i },
                )
            })
            .collect();
        let entries: Vec<_> = bases.iter().map(|(p, b)| entry(p.as_str(), b.rev, Some(b.meta.clone()))).collect();
        let start = tokio::time::Instant::now();
        db.set_bases("f", &bases).await.unwrap();
        db.apply_remote("f", &entries, 1, 10_000).await.unwrap();
        assert_eq!(db.bases("f").await.unwrap().len(), 10_000);
        assert_eq!(db.remote_all("f").await.unwrap().len(), 10_000);
        let paths: Vec<_> = bases.iter().map(|(p, _)| p.clone()).collect();
        db.forget_bases("f", &paths).await.unwrap();
        let took = start.elapsed();
        assert!(db.bases("f").await.unwrap().is_empty());
        assert!(took < Duration::from_secs(5), "took {took:?}");
        eprintln!("10k-row batches took {took:?}");
    }
}
