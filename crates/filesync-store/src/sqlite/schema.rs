//! The SQLite schema as an ordered list of migrations, and the runner that brings a database
//! up to date when [`super::SqliteMeta`] opens it.
//!
//! `sqlx::migrate!` needs sqlx's macros, which this workspace does not enable, so migrations
//! live here as plain strings. A migration, once released, is never edited: add a new one. A
//! step SQL cannot express is a named marker statement that the runner carries out in Rust
//! ([`RECOMPUTE_FILE_HASHES`]).
//! The DDL sticks to portable SQL so that a PostgreSQL port is mostly mechanical; the
//! differences are noted next to each table (`INTEGER PRIMARY KEY` → `BIGINT GENERATED ALWAYS
//! AS IDENTITY PRIMARY KEY`, `BLOB` → `BYTEA`).

use crate::{Result, StoreError};
use filesync_core::{EntryKind, file_hash};
use sqlx::migrate::MigrateError;
use sqlx::{SqliteConnection, SqlitePool};

/// Migration `i` (0-based) brings the schema from version `i` to version `i + 1`. Each is a list
/// of single statements (prepared statements cannot hold several on PostgreSQL).
pub(super) const MIGRATIONS: &[&[&str]] = &[
    // 1: accounts, devices, folders, the journal and the per-user chunk index.
    &[
        // `INTEGER PRIMARY KEY` is SQLite's auto-assigned rowid alias.
        "CREATE TABLE users (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            password_hash TEXT NOT NULL,
            created_at BIGINT NOT NULL
        )",
        // Only the BLAKE3 hash of a device token is stored; it is how a request is authenticated.
        "CREATE TABLE devices (
            id INTEGER PRIMARY KEY,
            user_id BIGINT NOT NULL REFERENCES users (id),
            name TEXT NOT NULL,
            token_hash BLOB NOT NULL UNIQUE,
            created_at BIGINT NOT NULL,
            last_seen BIGINT NOT NULL DEFAULT 0,
            revoked BOOLEAN NOT NULL DEFAULT FALSE
        )",
        "CREATE INDEX devices_by_user ON devices (user_id)",
        // `seq` is the highest rev committed in the folder.
        "CREATE TABLE folders (
            id INTEGER PRIMARY KEY,
            user_id BIGINT NOT NULL REFERENCES users (id),
            name TEXT NOT NULL,
            seq BIGINT NOT NULL DEFAULT 0,
            UNIQUE (user_id, name)
        )",
        // Every version ever committed (history). A tombstone has `deleted` set, zeros in the
        // metadata columns and NULL `hash`/`chunks`. `chunks` is the chunk list as 36-byte
        // records (hash + u32 LE length), as on the wire. `device_id` is deliberately not a
        // foreign key: history outlives devices, hence the copy of the device's name.
        "CREATE TABLE versions (
            folder_id BIGINT NOT NULL REFERENCES folders (id),
            rev BIGINT NOT NULL,
            path TEXT NOT NULL,
            deleted BOOLEAN NOT NULL,
            kind BIGINT NOT NULL,
            size BIGINT NOT NULL,
            mtime_ns BIGINT NOT NULL,
            executable BOOLEAN NOT NULL,
            hash BLOB,
            chunks BLOB,
            device_id BIGINT NOT NULL,
            device_name TEXT NOT NULL,
            committed_at BIGINT NOT NULL,
            PRIMARY KEY (folder_id, rev)
        )",
        "CREATE INDEX versions_by_path ON versions (folder_id, path, rev)",
        // The latest version of each path; `changes_since` is a range scan of `current_by_rev`.
        "CREATE TABLE current (
            folder_id BIGINT NOT NULL REFERENCES folders (id),
            path TEXT NOT NULL,
            rev BIGINT NOT NULL,
            PRIMARY KEY (folder_id, path),
            FOREIGN KEY (folder_id, rev) REFERENCES versions (folder_id, rev)
        )",
        "CREATE INDEX current_by_rev ON current (folder_id, rev)",
        // Which chunks the chunk store durably holds for each user. No reference count: a
        // future garbage collector marks the chunks named by `versions.chunks` of the user's
        // folders and sweeps the rest that were added before the mark began (`added_at`, unix
        // seconds), so commits never pay for bookkeeping and nothing can drift.
        "CREATE TABLE chunks (
            user_id BIGINT NOT NULL REFERENCES users (id),
            hash BLOB NOT NULL,
            size BIGINT NOT NULL,
            added_at BIGINT NOT NULL,
            PRIMARY KEY (user_id, hash)
        )",
    ],
    // 2: what an operator controls: disabled users, storage quotas, invite codes, and the
    // counter running servers poll to notice an admin command's change.
    &[
        "ALTER TABLE users ADD COLUMN disabled BOOLEAN NOT NULL DEFAULT FALSE",
        // NULL: no quota.
        "ALTER TABLE users ADD COLUMN quota_bytes BIGINT",
        // Only the SHA-256 of an invite code is stored. `used_by` is set once, by the
        // registration that used it up.
        "CREATE TABLE invites (
            code_hash BLOB PRIMARY KEY,
            created_at BIGINT NOT NULL,
            expires_at BIGINT NOT NULL,
            used_by BIGINT REFERENCES users (id),
            used_at BIGINT
        )",
        // One row. Increased by every change a running server must act on (see
        // `MetaStore::admin_generation`).
        "CREATE TABLE admin_state (
            id BIGINT PRIMARY KEY,
            generation BIGINT NOT NULL
        )",
        "INSERT INTO admin_state (id, generation) VALUES (1, 0)",
    ],
    // 3: protocol version 2 defines a file's hash as the hash of its chunk list; recompute the
    // hashes of every stored file version (history included) from `versions.chunks`.
    &[RECOMPUTE_FILE_HASHES],
];

/// A migration statement that SQL cannot express (SQLite has no BLAKE3): [`migrate`] runs
/// [`recompute_file_hashes`] in its place, in the same transaction.
pub(super) const RECOMPUTE_FILE_HASHES: &str = "-- Rust: recompute file hashes from chunk lists (protocol version 2)";

/// Rows per page of [`recompute_file_hashes`].
const RECOMPUTE_PAGE: i64 = 5000;

/// Sets `versions.hash` of every live file version to `filesync_core::file_hash` of its
/// `versions.chunks`, paging by key. A row whose chunk list is torn is left alone (it is
/// reported, and skipped, when read).
async fn recompute_file_hashes(tx: &mut SqliteConnection) -> Result<()> {
    let (mut folder, mut rev) = (i64::MIN, i64::MIN);
    loop {
        let rows: Vec<(i64, i64, Option<Vec<u8>>)> = sqlx::query_as(
            "SELECT folder_id, rev, chunks FROM versions WHERE deleted = FALSE AND kind = $1 \
             AND (folder_id > $2 OR (folder_id = $2 AND rev > $3)) ORDER BY folder_id, rev LIMIT $4",
        )
        .bind(crate::sql::encode_kind(EntryKind::File))
        .bind(folder)
        .bind(rev)
        .bind(RECOMPUTE_PAGE)
        .fetch_all(&mut *tx)
        .await?;
        for (f, r, chunks) in &rows {
            (folder, rev) = (*f, *r);
            let Ok(chunks) = crate::sql::decode_chunks(chunks.as_deref().unwrap_or_default()) else { continue };
            sqlx::query("UPDATE versions SET hash = $1 WHERE folder_id = $2 AND rev = $3")
                .bind(file_hash(&chunks).as_bytes().to_vec())
                .bind(f)
                .bind(r)
                .execute(&mut *tx)
                .await?;
        }
        if (rows.len() as i64) < RECOMPUTE_PAGE {
            return Ok(());
        }
    }
}

/// Applies the migrations the database lacks, all in one transaction. Refuses a database whose
/// schema is newer than this build knows.
pub(super) async fn migrate(pool: &SqlitePool) -> Result<()> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    sqlx::query("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)")
        .execute(&mut *tx)
        .await?;
    let applied: Option<i64> =
        sqlx::query_scalar("SELECT MAX(version) FROM schema_version").fetch_one(&mut *tx).await?;
    let applied = applied.unwrap_or(0);
    let known = MIGRATIONS.len() as i64;
    if applied > known {
        tracing::error!(
            "the database has schema version {applied} but this FileSync knows only up to {known}; \
             it was written by a newer FileSync: run that version (or restore a backup)"
        );
        return Err(StoreError::Migrate(MigrateError::VersionMissing(applied)));
    }
    let now = crate::sql::unix_now();
    for (version, statements) in (1..).zip(MIGRATIONS).skip(applied as usize) {
        for statement in *statements {
            if *statement == RECOMPUTE_FILE_HASHES {
                recompute_file_hashes(&mut tx).await?;
                continue;
            }
            sqlx::query(*statement).execute(&mut *tx).await.map_err(|e| MigrateError::ExecuteMigration(e, version))?;
        }
        sqlx::query("INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)")
            .bind(version)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tracing::info!(version, "applied database migration");
    }
    tx.commit().await?;
    Ok(())
}

/// The schema version the database is at (0 for an empty database).
pub(super) async fn version(pool: &SqlitePool) -> Result<i64> {
    let v: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_version").fetch_one(pool).await?;
    Ok(v.unwrap_or(0))
}
