//! The history side of the SQL stores (compiled once per backend, see `super`): reading old versions and the trash, restoring a
//! version, storage usage, pruning by the retention schedule, and the two halves of chunk
//! garbage collection. The decisions are the pure functions of [`crate::decide`] and
//! [`crate::retention`]; this file only reads and writes rows.

use super::rows::{
    ENTRY_COLS, current_entries, entry_at, entry_cols, entry_cols_of, entry_from_row, folder_seq, live_entries_below,
    write_applied,
};
use super::{DbConn, DbPool, DbRow, FOR_UPDATE, begin_snapshot, begin_write};
use crate::decide::{RestorePlan, plan_restore};
use crate::retention::{PathVersion, prune_path};
use crate::sql::{self, IN_LIST, key, unsigned};
use crate::{
    ChunkSweep, CommitOutput, Device, FolderId, Outcome, PruneStats, Result, RetentionPolicy, StoreError, TrashEntry,
    Usage, UserId,
};
use filesync_core::{EntryKind, EntryState, FileMeta, Hash, RelPath};
use sqlx::{AssertSqlSafe, Row};
use std::collections::{HashMap, HashSet};

/// Paths whose versions one prune transaction decides and deletes: small enough that commits
/// never wait long behind the pruner.
const PRUNE_BATCH: usize = 200;
/// Versions read per round trip while marking the chunks that are in use.
const MARK_PAGE: i64 = 2000;

/// `before_rev` as an exclusive SQL bound: 0 means none.
fn below(before_rev: u64) -> i64 {
    if before_rev == 0 { i64::MAX } else { i64::try_from(before_rev).unwrap_or(i64::MAX) }
}

pub(super) async fn version(pool: &DbPool, folder: FolderId, rev: u64) -> Result<Option<EntryState>> {
    let row = sqlx::query(concat!("SELECT ", entry_cols!(), " FROM versions v WHERE v.folder_id = $1 AND v.rev = $2"))
        .bind(key(folder))
        .bind(key(rev))
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(entry_from_row).transpose()
}

pub(super) async fn version_history(
    pool: &DbPool,
    folder: FolderId,
    path: &RelPath,
    before_rev: u64,
    limit: u32,
) -> Result<Vec<EntryState>> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        entry_cols!(),
        " FROM versions v WHERE v.folder_id = $1 AND v.path = $2 AND v.rev < $3 ORDER BY v.rev DESC LIMIT $4"
    ))
    .bind(key(folder))
    .bind(path.as_str())
    .bind(below(before_rev))
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    rows.iter().map(entry_from_row).collect()
}

pub(super) async fn trash(
    pool: &DbPool,
    folder: FolderId,
    prefix: Option<&RelPath>,
    before_rev: u64,
    limit: u32,
) -> Result<Vec<TrashEntry>> {
    // `substr`/`length` count characters on both sides, so the prefix test is exact for any
    // Unicode path; `$3 IS NULL` turns it off.
    let rows = sqlx::query(concat!(
        "SELECT ",
        entry_cols_of!("t"),
        ", ",
        entry_cols_of!("v"),
        " FROM current c \
         JOIN versions t ON t.folder_id = c.folder_id AND t.rev = c.rev \
         JOIN versions v ON v.folder_id = c.folder_id AND v.rev = (\
             SELECT MAX(x.rev) FROM versions x WHERE x.folder_id = c.folder_id AND x.path = c.path AND NOT x.deleted) \
         WHERE c.folder_id = $1 AND t.deleted AND c.rev < $2 \
           AND ($3 IS NULL OR c.path = $3 OR substr(c.path, 1, length($3) + 1) = $3 || '/') \
         ORDER BY c.rev DESC LIMIT $4"
    ))
    .bind(key(folder))
    .bind(below(before_rev))
    .bind(prefix.map(RelPath::as_str))
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    rows.iter().map(|r| Ok(TrashEntry { deleted: entry_at(r, 0)?, last_live: entry_at(r, ENTRY_COLS)? })).collect()
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn restore(
    pool: &DbPool,
    user: UserId,
    folder: FolderId,
    device: &Device,
    path: &RelPath,
    rev: u64,
    to_path: Option<&RelPath>,
    now: i64,
) -> Result<CommitOutput> {
    let folder_key = key(folder);
    // Dropping `tx` on any early return rolls everything back.
    let mut tx = begin_write(pool).await?;
    let start_seq = folder_seq(&mut tx, user, folder).await?;
    let row = sqlx::query(concat!("SELECT ", entry_cols!(), " FROM versions v WHERE v.folder_id = $1 AND v.rev = $2"))
        .bind(folder_key)
        .bind(key(rev))
        .fetch_optional(&mut *tx)
        .await?;
    let restored = match row.as_ref().map(entry_from_row).transpose()? {
        Some(EntryState { path: p, meta: Some(meta), .. }) if p == *path => meta,
        _ => return Err(StoreError::VersionNotFound { folder, path: path.to_string(), rev }),
    };
    let target = to_path.unwrap_or(path);
    let mut paths: Vec<&str> = target.ancestors().collect();
    paths.push(target.as_str());
    let state = current_entries(&mut tx, folder_key, &paths).await?;
    let live_below = match restored.kind {
        EntryKind::Dir => None,
        _ => live_entries_below(&mut tx, folder_key, &[target]).await?.into_iter().next(),
    };
    let unchanged = |outcome| CommitOutput { outcomes: vec![outcome], folder_seq: start_seq };
    let dirs = match plan_restore(path, &restored, target, &|p| state.get(p).cloned(), live_below) {
        RestorePlan::Conflict(e) => return Ok(unchanged(Outcome::Conflict(Some(e)))),
        RestorePlan::AlreadyCurrent(e) => return Ok(unchanged(Outcome::Accepted(Some(e)))),
        RestorePlan::Apply { dirs } => dirs,
    };
    let mut seq = start_seq;
    let mut version = |path: RelPath, meta: FileMeta| {
        seq += 1;
        EntryState {
            path,
            rev: seq,
            meta: Some(meta),
            device_id: device.id,
            device_name: device.name.clone(),
            committed_at: now,
        }
    };
    let mut applied: Vec<EntryState> =
        dirs.into_iter().map(|d| version(d, FileMeta::dir(now.saturating_mul(1_000_000_000)))).collect();
    let entry = version(target.clone(), restored);
    applied.push(entry.clone());
    write_applied(&mut tx, key(user), folder_key, &applied, seq).await?;
    tx.commit().await?;
    tracing::debug!(folder, %path, rev, to = %target, seq, "restored");
    Ok(CommitOutput { outcomes: vec![Outcome::Accepted(Some(entry))], folder_seq: seq })
}

pub(super) async fn usage(pool: &DbPool, user: UserId) -> Result<Usage> {
    // One read transaction: the three sums describe the same moment.
    let mut tx = begin_snapshot(pool).await?;
    let pair = |row: DbRow, what: &str| -> Result<(u64, u64)> {
        Ok((unsigned(row.try_get(0)?, what)?, unsigned(row.try_get(1)?, what)?))
    };
    let current = sqlx::query(
        "SELECT COUNT(*), CAST(COALESCE(SUM(v.size), 0) AS BIGINT) FROM current c \
         JOIN folders f ON f.id = c.folder_id \
         JOIN versions v ON v.folder_id = c.folder_id AND v.rev = c.rev \
         WHERE f.user_id = $1 AND NOT v.deleted AND v.kind = $2",
    )
    .bind(key(user))
    .bind(sql::encode_kind(filesync_core::EntryKind::File))
    .fetch_one(&mut *tx)
    .await?;
    let (files_current, bytes_current) = pair(current, "current usage")?;
    let all = sqlx::query(
        "SELECT COUNT(*), CAST(COALESCE(SUM(v.size), 0) AS BIGINT) FROM versions v JOIN folders f ON f.id = v.folder_id \
         WHERE f.user_id = $1 AND NOT v.deleted AND v.kind = $2",
    )
    .bind(key(user))
    .bind(sql::encode_kind(filesync_core::EntryKind::File))
    .fetch_one(&mut *tx)
    .await?;
    let (files_all, bytes_all) = pair(all, "history usage")?;
    let chunks = sqlx::query("SELECT COUNT(*), CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM chunks WHERE user_id = $1")
        .bind(key(user))
        .fetch_one(&mut *tx)
        .await?;
    let (chunks, bytes_stored) = pair(chunks, "chunk usage")?;
    tx.rollback().await?;
    Ok(Usage {
        files_current,
        bytes_current,
        versions_history: files_all.saturating_sub(files_current),
        bytes_history: bytes_all.saturating_sub(bytes_current),
        chunks,
        bytes_stored,
    })
}

pub(super) async fn prune_history(
    read: &DbPool,
    write: &DbPool,
    now: i64,
    policy: &RetentionPolicy,
) -> Result<PruneStats> {
    let mut stats = PruneStats::default();
    let folders: Vec<i64> = sqlx::query_scalar("SELECT id FROM folders ORDER BY id").fetch_all(read).await?;
    for folder in folders {
        stats.folders += 1;
        // Paths with history; a path with one version has nothing to prune.
        let paths: Vec<String> =
            sqlx::query_scalar("SELECT path FROM versions WHERE folder_id = $1 GROUP BY path HAVING COUNT(*) > 1")
                .bind(folder)
                .fetch_all(read)
                .await?;
        stats.paths += paths.len() as u64;
        for batch in paths.chunks(PRUNE_BATCH) {
            // Decided inside the write transaction, against the versions as they are now.
            let mut tx = begin_write(write).await?;
            // Commits to the folder wait (on a backend with several writers) until the batch
            // is decided and deleted.
            sqlx::query(AssertSqlSafe(format!("SELECT seq FROM folders WHERE id = $1{FOR_UPDATE}")))
                .bind(folder)
                .fetch_optional(&mut *tx)
                .await?;
            let (revs, bytes) = prune_batch(&mut tx, folder, batch, now, policy).await?;
            delete_versions(&mut tx, folder, &revs).await?;
            tx.commit().await?;
            stats.versions_removed += revs.len() as u64;
            stats.bytes_removed += bytes;
        }
    }
    if stats.versions_removed > 0 {
        tracing::debug!(?stats, "pruned history");
    }
    Ok(stats)
}

/// The revs of `paths` that the retention policy drops, and their sizes added up.
async fn prune_batch(
    conn: &mut DbConn,
    folder: i64,
    paths: &[String],
    now: i64,
    policy: &RetentionPolicy,
) -> Result<(Vec<i64>, u64)> {
    let sql = format!(
        "SELECT v.path, v.rev, v.deleted, v.size, v.committed_at, c.rev FROM versions v \
         LEFT JOIN current c ON c.folder_id = v.folder_id AND c.path = v.path \
         WHERE v.folder_id = $1 AND v.path IN ({}) ORDER BY v.path, v.rev",
        sql::params(2, paths.len())
    );
    let mut q = sqlx::query(super::batch_sql(sql)).bind(folder);
    for p in paths {
        q = q.bind(p.as_str());
    }
    // path → (its versions ascending, its current rev); rev → size.
    let mut by_path: HashMap<String, (Vec<PathVersion>, u64)> = HashMap::new();
    let mut sizes: HashMap<u64, u64> = HashMap::new();
    for row in q.fetch_all(&mut *conn).await? {
        let path: String = row.try_get(0)?;
        let rev = unsigned(row.try_get(1)?, "rev")?;
        let deleted: bool = row.try_get(2)?;
        sizes.insert(rev, unsigned(row.try_get(3)?, "size")?);
        let current: Option<i64> = row.try_get(5)?;
        let current = current.map(|c| unsigned(c, "current rev")).transpose()?.unwrap_or(0);
        let slot = by_path.entry(path).or_insert_with(|| (Vec::new(), current));
        slot.0.push(PathVersion { rev, live: !deleted, committed_at: row.try_get(4)? });
    }
    let mut revs = Vec::new();
    let mut bytes = 0u64;
    for (versions, current) in by_path.values() {
        for rev in prune_path(policy, now, versions, *current) {
            bytes = bytes.saturating_add(sizes.get(&rev).copied().unwrap_or(0));
            revs.push(key(rev));
        }
    }
    Ok((revs, bytes))
}

async fn delete_versions(conn: &mut DbConn, folder: i64, revs: &[i64]) -> Result<()> {
    for batch in revs.chunks(IN_LIST) {
        let sql = format!("DELETE FROM versions WHERE folder_id = $1 AND rev IN ({})", sql::params(2, batch.len()));
        let mut q = sqlx::query(super::batch_sql(sql)).bind(folder);
        for rev in batch {
            q = q.bind(*rev);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// The user's folders and their seqs; with `lock`, inside a write transaction, their rows stay
/// locked until it ends ([`FOR_UPDATE`]), so no commit to them runs meanwhile.
async fn folder_seqs(conn: &mut DbConn, user: UserId, lock: bool) -> Result<Vec<(FolderId, u64)>> {
    let sql =
        format!("SELECT id, seq FROM folders WHERE user_id = $1 ORDER BY id{}", if lock { FOR_UPDATE } else { "" });
    let rows = sqlx::query(AssertSqlSafe(sql)).bind(key(user)).fetch_all(&mut *conn).await?;
    rows.iter().map(|r| Ok((unsigned(r.try_get(0)?, "folder id")?, unsigned(r.try_get(1)?, "folder seq")?))).collect()
}

/// Calls `f` with every chunk named by a live version of `folder` whose rev is above `since`,
/// reading a page of versions at a time.
async fn chunks_in_use(conn: &mut DbConn, folder: FolderId, since: u64, mut f: impl FnMut(Hash)) -> Result<()> {
    let mut after = key(since);
    loop {
        let rows = sqlx::query(
            "SELECT rev, chunks FROM versions WHERE folder_id = $1 AND rev > $2 AND NOT deleted \
             ORDER BY rev LIMIT $3",
        )
        .bind(key(folder))
        .bind(after)
        .bind(MARK_PAGE)
        .fetch_all(&mut *conn)
        .await?;
        for row in &rows {
            after = row.try_get(0)?;
            let blob: Option<Vec<u8>> = row.try_get(1)?;
            for c in sql::decode_chunks(blob.as_deref().unwrap_or_default())? {
                f(c.hash);
            }
        }
        if (rows.len() as i64) < MARK_PAGE {
            return Ok(());
        }
    }
}

pub(super) async fn unreferenced_chunks(pool: &DbPool, user: UserId, added_before: i64) -> Result<ChunkSweep> {
    // One read transaction: the seqs and the versions are the same snapshot, so every version
    // committed later has a rev above its folder's marked seq.
    let mut tx = begin_snapshot(pool).await?;
    let marked_seqs = folder_seqs(&mut tx, user, false).await?;
    let mut used = HashSet::new();
    for (folder, _) in &marked_seqs {
        chunks_in_use(&mut tx, *folder, 0, |h| {
            used.insert(h);
        })
        .await?;
    }
    let rows = sqlx::query("SELECT hash, size FROM chunks WHERE user_id = $1 AND added_at < $2")
        .bind(key(user))
        .bind(added_before)
        .fetch_all(&mut *tx)
        .await?;
    tx.rollback().await?;
    let mut candidates = Vec::new();
    for row in rows {
        let hash: Vec<u8> = row.try_get(0)?;
        let hash = sql::decode_hash(&hash, "chunk hash")?;
        let size: i64 = row.try_get(1)?;
        let size = u32::try_from(size)
            .map_err(|_| StoreError::Corrupt(format!("chunk size {size} is out of range in the database")))?;
        if !used.contains(&hash) {
            candidates.push((hash, size));
        }
    }
    candidates.sort_unstable();
    Ok(ChunkSweep { user, added_before, candidates, marked_seqs })
}

pub(super) async fn delete_chunks(pool: &DbPool, sweep: &ChunkSweep, hashes: &[Hash]) -> Result<Vec<(Hash, u32)>> {
    let candidates: HashSet<&Hash> = sweep.candidates.iter().map(|(h, _)| h).collect();
    // Only chunks the mark found unreferenced: the re-check below looks at new versions only.
    let mut doomed: HashSet<Hash> = hashes.iter().filter(|h| candidates.contains(h)).copied().collect();
    if doomed.is_empty() {
        return Ok(Vec::new());
    }
    let mut tx = begin_write(pool).await?;
    let marked: HashMap<FolderId, u64> = sweep.marked_seqs.iter().copied().collect();
    for (folder, seq) in folder_seqs(&mut tx, sweep.user, true).await? {
        let since = marked.get(&folder).copied().unwrap_or(0);
        if seq > since {
            chunks_in_use(&mut tx, folder, since, |h| {
                doomed.remove(&h);
            })
            .await?;
        }
    }
    let doomed: Vec<Hash> = doomed.into_iter().collect();
    let mut deleted = Vec::with_capacity(doomed.len());
    for batch in doomed.chunks(IN_LIST) {
        let sql = format!(
            "DELETE FROM chunks WHERE user_id = $1 AND added_at < $2 AND hash IN ({}) RETURNING hash, size",
            sql::params(3, batch.len())
        );
        let mut q = sqlx::query(super::batch_sql(sql)).bind(key(sweep.user)).bind(sweep.added_before);
        for h in batch {
            q = q.bind(h.as_bytes().as_slice());
        }
        for row in q.fetch_all(&mut *tx).await? {
            let hash: Vec<u8> = row.try_get(0)?;
            let size: i64 = row.try_get(1)?;
            deleted.push((sql::decode_hash(&hash, "chunk hash")?, u32::try_from(size).unwrap_or(u32::MAX)));
        }
    }
    tx.commit().await?;
    deleted.sort_unstable();
    Ok(deleted)
}
