//! How the SQL stores (compiled once per backend, see `super`) turn rows into domain values, and the batched statements a
//! commit and the chunk queries are made of (bounded `IN` lists and multi-row `VALUES`), so
//! that a batch of thousands costs a handful of round trips rather than thousands.

use super::{DbConn, DbRow, FOR_UPDATE, notify_commit};
use crate::sql::{self, IN_LIST, key, signed, unsigned};
use crate::{Device, Folder, Result, StoreError, User};
use filesync_core::{EntryState, FileMeta, Hash, RelPath};
use sqlx::{AssertSqlSafe, Row};
use std::collections::{HashMap, HashSet};

/// The columns of `versions v` that make an [`EntryState`], in the order [`entry_from_row`]
/// reads them.
macro_rules! entry_cols {
    () => {
        "v.path, v.rev, v.deleted, v.kind, v.size, v.mtime_ns, v.executable, v.hash, v.chunks, \
         v.device_id, v.device_name, v.committed_at"
    };
}

/// [`entry_cols!`] for another alias of `versions`, read by [`entry_at`].
macro_rules! entry_cols_of {
    ($t:literal) => {
        concat!(
            $t,
            ".path, ",
            $t,
            ".rev, ",
            $t,
            ".deleted, ",
            $t,
            ".kind, ",
            $t,
            ".size, ",
            $t,
            ".mtime_ns, ",
            $t,
            ".executable, ",
            $t,
            ".hash, ",
            $t,
            ".chunks, ",
            $t,
            ".device_id, ",
            $t,
            ".device_name, ",
            $t,
            ".committed_at"
        )
    };
}

pub(super) use {entry_cols, entry_cols_of};

/// Columns [`entry_cols_of!`] selects.
pub(super) const ENTRY_COLS: usize = 12;

/// Columns per row when inserting into `versions`.
const VERSION_COLS: usize = 13;

pub(super) fn user_from_row(row: &DbRow) -> Result<User> {
    Ok(User {
        id: unsigned(row.try_get("id")?, "user id")?,
        name: row.try_get("name")?,
        password_hash: row.try_get("password_hash")?,
        created_at: row.try_get("created_at")?,
        disabled: row.try_get("disabled")?,
        quota: row.try_get::<Option<i64>, _>("quota_bytes")?.map(|q| unsigned(q, "user quota")).transpose()?,
    })
}

pub(super) fn device_from_row(row: &DbRow) -> Result<Device> {
    Ok(Device {
        id: unsigned(row.try_get("id")?, "device id")?,
        user_id: unsigned(row.try_get("user_id")?, "device user id")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
        last_seen: row.try_get("last_seen")?,
        revoked: row.try_get("revoked")?,
    })
}

pub(super) fn folder_from_row(row: &DbRow) -> Result<Folder> {
    Ok(Folder {
        id: unsigned(row.try_get("id")?, "folder id")?,
        user_id: unsigned(row.try_get("user_id")?, "folder user id")?,
        name: row.try_get("name")?,
        seq: unsigned(row.try_get("seq")?, "folder seq")?,
    })
}

/// Reads the columns of [`entry_cols!`].
pub(super) fn entry_from_row(row: &DbRow) -> Result<EntryState> {
    entry_at(row, 0)
}

/// Reads the columns of [`entry_cols_of!`] starting at column `at`.
pub(super) fn entry_at(row: &DbRow, at: usize) -> Result<EntryState> {
    let path: String = row.try_get(at)?;
    let path =
        RelPath::new(path.clone()).map_err(|e| StoreError::Corrupt(format!("stored path {path:?} is invalid: {e}")))?;
    let rev = unsigned(row.try_get(at + 1)?, "rev")?;
    let deleted: bool = row.try_get(at + 2)?;
    let meta = if deleted {
        None
    } else {
        let context = |what: &str| format!("{what} of {path} rev {rev}");
        let hash: Option<Vec<u8>> = row.try_get(at + 7)?;
        let chunks: Option<Vec<u8>> = row.try_get(at + 8)?;
        Some(FileMeta {
            kind: sql::decode_kind(row.try_get(at + 3)?)?,
            size: unsigned(row.try_get(at + 4)?, &context("size"))?,
            mtime_ns: row.try_get(at + 5)?,
            executable: row.try_get(at + 6)?,
            hash: sql::decode_hash(hash.as_deref().unwrap_or_default(), &context("hash"))?,
            chunks: sql::decode_chunks(chunks.as_deref().unwrap_or_default())?,
        })
    };
    Ok(EntryState {
        path,
        rev,
        meta,
        device_id: unsigned(row.try_get(at + 9)?, "device id")?,
        device_name: row.try_get(at + 10)?,
        committed_at: row.try_get(at + 11)?,
    })
}

/// Current entries of `paths` in `folder`, keyed by path.
pub(super) async fn current_entries(
    conn: &mut DbConn,
    folder: i64,
    paths: &[&str],
) -> Result<HashMap<String, EntryState>> {
    let mut out = HashMap::with_capacity(paths.len());
    for batch in paths.chunks(IN_LIST) {
        let sql = format!(
            concat!(
                "SELECT ",
                entry_cols!(),
                " FROM current c JOIN versions v ON v.folder_id = c.folder_id AND v.rev = c.rev \
                 WHERE c.folder_id = $1 AND c.path IN ({})"
            ),
            sql::params(2, batch.len())
        );
        let mut q = sqlx::query(super::batch_sql(sql)).bind(folder);
        for p in batch {
            q = q.bind(*p);
        }
        for row in q.fetch_all(&mut *conn).await? {
            let e = entry_from_row(&row)?;
            out.insert(e.path.as_str().to_owned(), e);
        }
    }
    Ok(out)
}

/// The live current entries below any of `paths` (paths starting with `path/`), for the tree
/// rule ([`crate::decide::breaks_tree`]). One statement per batch of paths: a range scan of the
/// primary key each, empty unless a file is proposed where a directory has entries.
pub(super) async fn live_entries_below(conn: &mut DbConn, folder: i64, paths: &[&RelPath]) -> Result<Vec<EntryState>> {
    let mut out = Vec::new();
    // Two parameters per path and the folder's (last: SQLite's parameters are bound in order).
    for batch in paths.chunks(IN_LIST / 2) {
        let sql = format!(
            concat!(
                "WITH r (lo, hi) AS (VALUES {}) SELECT ",
                entry_cols!(),
                // CROSS JOIN: SQLite then keeps the ranges as the outer loop, each a range scan
                // of the primary key (a plain join let it scan the whole table per range).
                " FROM r CROSS JOIN current c JOIN versions v ON v.folder_id = c.folder_id AND v.rev = c.rev \
                 WHERE c.folder_id = ${} AND c.path >= r.lo AND c.path < r.hi AND v.deleted = FALSE"
            ),
            sql::value_rows(batch.len(), 2),
            2 * batch.len() + 1
        );
        let mut q = sqlx::query(super::batch_sql(sql));
        for p in batch {
            let range = crate::decide::below(p);
            q = q.bind(range.start).bind(range.end);
        }
        for row in q.bind(folder).fetch_all(&mut *conn).await? {
            out.push(entry_from_row(&row)?);
        }
    }
    Ok(out)
}

/// Sizes of those of `hashes` the user has.
pub(super) async fn known_chunks(conn: &mut DbConn, user: i64, hashes: &[&Hash]) -> Result<HashMap<Hash, u32>> {
    let mut out = HashMap::with_capacity(hashes.len());
    for batch in hashes.chunks(IN_LIST) {
        let sql =
            format!("SELECT hash, size FROM chunks WHERE user_id = $1 AND hash IN ({})", sql::params(2, batch.len()));
        let mut q = sqlx::query(super::batch_sql(sql)).bind(user);
        for h in batch {
            q = q.bind(h.as_bytes().as_slice());
        }
        for row in q.fetch_all(&mut *conn).await? {
            let hash: Vec<u8> = row.try_get("hash")?;
            let size: i64 = row.try_get("size")?;
            let size = u32::try_from(size)
                .map_err(|_| StoreError::Corrupt(format!("chunk size {size} is out of range in the database")))?;
            out.insert(sql::decode_hash(&hash, "chunk hash")?, size);
        }
    }
    Ok(out)
}

/// Writes `entries` (new versions, ascending rev) to `versions`.
async fn insert_versions(conn: &mut DbConn, folder: i64, entries: &[EntryState]) -> Result<()> {
    for batch in entries.chunks(sql::rows_per_statement(VERSION_COLS)) {
        let sql = format!(
            "INSERT INTO versions (folder_id, rev, path, deleted, kind, size, mtime_ns, executable, hash, chunks, \
             device_id, device_name, committed_at) VALUES {}",
            sql::value_rows(batch.len(), VERSION_COLS)
        );
        let mut q = sqlx::query(super::batch_sql(sql));
        for e in batch {
            let m = e.meta.as_ref();
            q = q
                .bind(folder)
                .bind(key(e.rev))
                .bind(e.path.as_str())
                .bind(m.is_none())
                .bind(m.map_or(0, |m| sql::encode_kind(m.kind)))
                .bind(match m {
                    Some(m) => signed(m.size, "file size")?,
                    None => 0,
                })
                .bind(m.map_or(0, |m| m.mtime_ns))
                .bind(m.is_some_and(|m| m.executable))
                .bind(m.map(|m| m.hash.as_bytes().to_vec()))
                .bind(m.map(|m| sql::encode_chunks(&m.chunks)))
                .bind(key(e.device_id))
                .bind(e.device_name.as_str())
                .bind(e.committed_at);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Points `current` at the given revs (one per path).
async fn upsert_current(conn: &mut DbConn, folder: i64, revs: &[(&str, u64)]) -> Result<()> {
    for batch in revs.chunks(sql::rows_per_statement(3)) {
        let sql = format!(
            "INSERT INTO current (folder_id, path, rev) VALUES {} \
             ON CONFLICT (folder_id, path) DO UPDATE SET rev = excluded.rev",
            sql::value_rows(batch.len(), 3)
        );
        let mut q = sqlx::query(super::batch_sql(sql));
        for (path, rev) in batch {
            q = q.bind(folder).bind(*path).bind(key(*rev));
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// The seq of the user's `folder`, read inside a write transaction ([`StoreError::FolderNotFound`]
/// if the user has no such folder). On a backend with several writers the folder's row stays
/// locked until the transaction ends ([`FOR_UPDATE`]): the writers of one folder take turns, as
/// SQLite's single writer makes them.
pub(super) async fn folder_seq(conn: &mut DbConn, user: u64, folder: u64) -> Result<u64> {
    let sql = format!("SELECT seq FROM folders WHERE id = $1 AND user_id = $2{FOR_UPDATE}");
    let seq: Option<i64> =
        sqlx::query_scalar(AssertSqlSafe(sql)).bind(key(folder)).bind(key(user)).fetch_optional(&mut *conn).await?;
    let Some(seq) = seq else {
        return Err(StoreError::FolderNotFound(folder));
    };
    unsigned(seq, "folder seq")
}

/// Writes new versions (ascending rev, the last of them `seq`) in an open write transaction:
/// checks that the user has every chunk they name ([`StoreError::MissingChunks`] otherwise),
/// inserts them, points `current` at the last version of each path, advances the folder's
/// seq, and tells the store's other writers (if it has any) once the transaction commits.
/// Shared by commits and restores.
pub(super) async fn write_applied(
    conn: &mut DbConn,
    user: i64,
    folder: i64,
    applied: &[EntryState],
    seq: u64,
) -> Result<()> {
    // Every chunk an applied version names must already be durably stored for this user.
    let mut seen = HashSet::new();
    let needed: Vec<&Hash> = applied
        .iter()
        .filter_map(|e| e.meta.as_ref())
        .flat_map(|m| m.chunks.iter().map(|c| &c.hash))
        .filter(|h| seen.insert(*h))
        .collect();
    let have = known_chunks(&mut *conn, user, &needed).await?;
    let missing: Vec<Hash> = needed.into_iter().filter(|h| !have.contains_key(*h)).copied().collect();
    if !missing.is_empty() {
        return Err(StoreError::MissingChunks(missing));
    }

    insert_versions(&mut *conn, folder, applied).await?;
    // One row per path, its last applied rev (a multi-row upsert may not touch a row twice).
    let mut last: HashMap<&str, u64> = HashMap::with_capacity(applied.len());
    for e in applied {
        last.insert(e.path.as_str(), e.rev);
    }
    let mut revs: Vec<(&str, u64)> = last.into_iter().collect();
    revs.sort_unstable_by_key(|&(_, rev)| rev);
    upsert_current(&mut *conn, folder, &revs).await?;
    sqlx::query("UPDATE folders SET seq = $1 WHERE id = $2").bind(key(seq)).bind(folder).execute(&mut *conn).await?;
    notify_commit(&mut *conn, user, folder, seq).await
}
