//! State queries that cost what a change touches, not the size of the folder: bases and
//! mirror rows of some paths and the trees below them, bases holding given contents (for chunk
//! reuse), the folder's totals computed by SQLite, and the *installing* table that makes a
//! download batch crash-safe.
//!
//! Subtrees are read as key ranges of the `(folder, path)` primary key: the paths below `d`
//! are exactly those in `['d/', 'd0')`, because `/` and `0` are adjacent bytes and SQLite
//! compares text bytewise.

use super::{
    BATCH_ROWS, BaseRow, StateDb, StateError, corrupt, ctx, file_meta, kind_code, meta_from_row, multi_row_sql,
    rel_path,
};
use filesync_core::{EntryKind, EntryState, FileMeta, Hash, RelPath};
use sqlx::sqlite::SqliteRow;
use sqlx::{AssertSqlSafe, Row};
use std::collections::HashMap;

pub(super) const BASE_COLUMNS: &str = "b.path, b.rev, b.kind, b.size, b.mtime_ns, b.executable, b.hash, b.chunks, \
     b.local_size, b.local_mtime_ns, b.local_ino";

pub(super) fn base_from_row(folder: &str, r: &SqliteRow) -> Result<(RelPath, BaseRow), StateError> {
    let path = rel_path(folder, r)?;
    let meta = meta_from_row(folder, path.as_str(), r)?
        .ok_or_else(|| corrupt(folder, path.as_str(), "a base without a kind"))?;
    let base = BaseRow {
        rev: r.get::<i64, _>("rev") as u64,
        meta,
        size: r.get::<i64, _>("local_size") as u64,
        mtime_ns: r.get("local_mtime_ns"),
        ino: r.get::<i64, _>("local_ino") as u64,
    };
    Ok((path, base))
}

/// One `base` or `remote` row as [`StateDb::rows_within`] reads it: path, rev, kind, size,
/// mtime, executable, hash and chunk list (hex), and the table's own columns `E`.
#[derive(serde::Deserialize)]
struct JsonRow<E>(String, i64, Option<i64>, i64, i64, i64, String, String, E);

impl<E> JsonRow<E> {
    /// The row's path, rev, metadata (`None`: a tombstone) and own columns.
    fn decode(self, folder: &str) -> Result<(RelPath, u64, Option<FileMeta>, E), StateError> {
        let JsonRow(path, rev, kind, size, mtime_ns, executable, hash, chunks, extra) = self;
        let path = RelPath::new(path.clone()).map_err(|e| corrupt(folder, &path, format!("invalid path: {e}")))?;
        let kind = match kind {
            None => return Ok((path, rev as u64, None, extra)),
            Some(0) => EntryKind::File,
            Some(1) => EntryKind::Dir,
            Some(k) => return Err(corrupt(folder, path.as_str(), format!("unknown kind {k}"))),
        };
        let unhex = |h: &str| hex::decode(h).map_err(|_| corrupt(folder, path.as_str(), "a blob is not hex"));
        let (hash, chunks) = (unhex(&hash)?, unhex(&chunks)?);
        let meta = file_meta(folder, path.as_str(), kind, (size, mtime_ns, executable != 0), &hash, &chunks)?;
        Ok((path, rev as u64, Some(meta), extra))
    }
}

/// The most key ranges one statement of [`StateDb::rows_within`] reads.
const RANGES_PER_READ: usize = 64;
/// The rows of one page when [`StateDb::rows_within`] reads a whole folder.
const PAGE_ROWS: usize = 8192;

/// The exclusive upper end of the key range holding the paths below `dir`.
fn subtree_end(dir: &RelPath) -> String {
    format!("{dir}0")
}

/// What SQLite computes about a folder for its status line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Files with a synced base, and their bytes.
    pub files: u64,
    pub bytes: u64,
    /// Conflict copies among them.
    pub conflict_copies: u64,
}

impl StateDb {
    /// The bases of `paths` and of every path below them.
    pub async fn bases_within(&self, folder: &str, paths: &[RelPath]) -> Result<HashMap<RelPath, BaseRow>, StateError> {
        self.read_bases(folder, Some(paths)).await
    }

    /// The mirror rows (tombstones included) of `paths` and of every path below them.
    pub async fn remote_within(
        &self,
        folder: &str,
        paths: &[RelPath],
    ) -> Result<HashMap<RelPath, EntryState>, StateError> {
        self.read_remote(folder, Some(paths)).await
    }

    /// The bases of `paths` and below them (`None`: all of the folder's).
    pub(super) async fn read_bases(
        &self,
        folder: &str,
        paths: Option<&[RelPath]>,
    ) -> Result<HashMap<RelPath, BaseRow>, StateError> {
        let columns = "x.local_size, x.local_mtime_ns, x.local_ino";
        let rows: Vec<JsonRow<(i64, i64, i64)>> = self.rows_within("base", columns, folder, paths, "bases").await?;
        rows.into_iter()
            .map(|row| {
                let (path, rev, meta, (size, mtime_ns, ino)) = row.decode(folder)?;
                let meta = meta.ok_or_else(|| corrupt(folder, path.as_str(), "a base without a kind"))?;
                Ok((path, BaseRow { rev, meta, size: size as u64, mtime_ns, ino: ino as u64 }))
            })
            .collect()
    }

    /// The mirror rows of `paths` and below them (`None`: all of the folder's).
    pub(super) async fn read_remote(
        &self,
        folder: &str,
        paths: Option<&[RelPath]>,
    ) -> Result<HashMap<RelPath, EntryState>, StateError> {
        let columns = "x.device_id, x.device_name, x.committed_at";
        let rows: Vec<JsonRow<(i64, String, i64)>> =
            self.rows_within("remote", columns, folder, paths, "remote entries").await?;
        rows.into_iter()
            .map(|row| {
                let (path, rev, meta, (device_id, device_name, committed_at)) = row.decode(folder)?;
                let e = EntryState {
                    path: path.clone(),
                    rev,
                    meta,
                    device_id: device_id as u64,
                    device_name,
                    committed_at,
                };
                Ok((path, e))
            })
            .collect()
    }

    /// The rows of `table` (`base` or `remote`) at `paths` or below them (`None`: all of the
    /// folder's): one key-range read per path, up to [`RANGES_PER_READ`] of them in one statement (a `UNION ALL` of index
    /// range reads). SQLite packs each statement's rows into one JSON array
    /// (`json_group_array`), so that thousands of rows cross from SQLite's thread in one piece:
    /// row by row, and statement by statement, that crossing cost most of a no-change walk.
    async fn rows_within<E: serde::de::DeserializeOwned>(
        &self,
        table: &str,
        extra_columns: &str,
        folder: &str,
        paths: Option<&[RelPath]>,
        what: &str,
    ) -> Result<Vec<JsonRow<E>>, StateError> {
        let mut out = Vec::new();
        // The folder by name in every statement (SQLite looks its id up once per statement),
        // not by an id read first: that read cost a hand-over to SQLite's thread of its own.
        const FOLDER_IS: &str = "x.folder = (SELECT id FROM folders WHERE name = ?)";
        // The paths below `p` are those in ['p/', 'p0'), because `/` and `0` are adjacent bytes;
        // one index range ['p', 'p0') holds `p` too, and the siblings between (`p.txt`, `p-x`)
        // are left out by the last condition.
        let branch = format!(
            "SELECT x.path, x.rev, x.kind, x.size, x.mtime_ns, x.executable, x.hash, x.chunks, {extra_columns} \
             FROM {table} x WHERE {FOLDER_IS} AND x.path >= ? AND x.path < ? AND (x.path = ? OR x.path > ?)"
        );
        let extra: Vec<&str> = extra_columns.split(", ").map(|c| c.trim_start_matches("x.")).collect();
        let packed = |rows: &str| {
            format!(
                "SELECT json_group_array(json_array(path, rev, kind, size, mtime_ns, executable, hex(hash), \
                 hex(chunks), json_array({}))) FROM ({rows})",
                extra.join(", ")
            )
        };
        let parse = |json: String, at: &str| {
            serde_json::from_str::<Vec<JsonRow<E>>>(&json)
                .map_err(|e| corrupt(folder, at, format!("unreadable {what}: {e}")))
        };
        let Some(paths) = paths else {
            // Page by page in key order, so that no one JSON text holds the whole folder.
            let page = format!(
                "SELECT x.path, x.rev, x.kind, x.size, x.mtime_ns, x.executable, x.hash, x.chunks, {extra_columns} \
                 FROM {table} x WHERE {FOLDER_IS} AND x.path > ? ORDER BY x.path LIMIT {PAGE_ROWS}"
            );
            let sql = packed(&page);
            let mut after = String::new();
            loop {
                let json = sqlx::query_scalar::<_, String>(AssertSqlSafe(sql.as_str()))
                    .bind(folder)
                    .bind(after.as_str())
                    .fetch_one(&self.pool)
                    .await
                    .map_err(ctx(format!("reading the {what} of folder '{folder}'")))?;
                let rows = parse(json, after.as_str())?;
                let full = rows.len() >= PAGE_ROWS;
                if let Some(last) = rows.iter().map(|r| &r.0).max() {
                    after.clone_from(last);
                }
                out.extend(rows);
                if !full {
                    return Ok(out);
                }
            }
        };
        for batch in paths.chunks(RANGES_PER_READ) {
            // Two statement shapes only, so that both stay in the statement cache; the
            // padding ranges are empty.
            let ranges = if batch.len() <= 8 { 8 } else { RANGES_PER_READ };
            let sql = packed(&vec![branch.as_str(); ranges].join(" UNION ALL "));
            let mut q = sqlx::query_scalar::<_, String>(AssertSqlSafe(sql));
            for i in 0..ranges {
                q = match batch.get(i) {
                    Some(p) => {
                        q.bind(folder).bind(p.as_str()).bind(subtree_end(p)).bind(p.as_str()).bind(format!("{p}/"))
                    }
                    None => q.bind(folder).bind("").bind("").bind("").bind(""),
                };
            }
            let json = q
                .fetch_one(&self.pool)
                .await
                .map_err(ctx(format!("reading the {what} under '{}' in folder '{folder}'", batch[0])))?;
            out.extend(parse(json, batch[0].as_str())?);
        }
        Ok(out)
    }

    /// Synced files whose whole content is one of `hashes` (a moved or copied file can be
    /// rebuilt from them without a transfer).
    pub async fn bases_with_content(
        &self,
        folder: &str,
        hashes: &[Hash],
    ) -> Result<Vec<(RelPath, BaseRow)>, StateError> {
        let mut out = Vec::new();
        for batch in hashes.chunks(BATCH_ROWS) {
            let head = format!(
                "SELECT {BASE_COLUMNS} FROM base b JOIN folders f ON f.id = b.folder \
                 WHERE f.name = ? AND b.kind = 0 AND b.hash IN ("
            );
            let sql = multi_row_sql(&head, 1, batch.len(), ")");
            let mut q = sqlx::query(AssertSqlSafe(sql)).bind(folder);
            for h in batch {
                q = q.bind(h.0.to_vec());
            }
            let rows = q
                .fetch_all(&self.pool)
                .await
                .map_err(ctx(format!("looking up local copies of contents in folder '{folder}'")))?;
            for r in &rows {
                out.push(base_from_row(folder, r)?);
            }
        }
        Ok(out)
    }

    /// Files, bytes and conflict copies with a synced base (kept up to date by triggers).
    pub async fn totals(&self, folder: &str) -> Result<Totals, StateError> {
        let row: Option<(i64, i64, i64)> = sqlx::query_as(
            "SELECT t.files, t.bytes, t.conflicts FROM totals t JOIN folders f ON f.id = t.folder WHERE f.name = ?",
        )
        .bind(folder)
        .fetch_optional(&self.pool)
        .await
        .map_err(ctx(format!("reading the totals of folder '{folder}'")))?;
        let (files, bytes, conflicts) = row.unwrap_or_default();
        Ok(Totals { files: files as u64, bytes: bytes as u64, conflict_copies: conflicts as u64 })
    }

    /// Records that the files of a download batch are about to be renamed into place, before
    /// the first rename. If the agent dies before their bases are recorded, the next pass finds
    /// each such file with exactly this content and takes it for synced at this rev — never
    /// for a local edit (see [`StateDb::installing`]).
    pub async fn set_installing(
        &self,
        folder: &str,
        rows: &[(RelPath, u64, EntryKind, Hash)],
    ) -> Result<(), StateError> {
        let mut tx = self.write_tx("recording a download batch").await?;
        let id = Self::folder_id(&mut tx, folder).await?;
        for batch in rows.chunks(BATCH_ROWS) {
            let sql = multi_row_sql(
                "INSERT INTO installing (folder, path, rev, kind, hash) VALUES ",
                5,
                batch.len(),
                " ON CONFLICT (folder, path) DO UPDATE SET rev = excluded.rev, kind = excluded.kind, \
                 hash = excluded.hash",
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for (path, rev, kind, hash) in batch {
                q = q.bind(id).bind(path.as_str()).bind(*rev as i64).bind(kind_code(*kind)).bind(hash.0.to_vec());
            }
            q.execute(&mut *tx).await.map_err(ctx(format!("recording a download batch in folder '{folder}'")))?;
        }
        Self::commit(tx, "recording a download batch", folder).await
    }

    /// Per top-level name of `folder` (a root file or directory), how many bases and live
    /// mirror rows lie in its tree: how a walk of the whole folder is cut into parts.
    pub async fn top_level_sizes(&self, folder: &str) -> Result<Vec<(String, u64)>, StateError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "WITH f AS (SELECT id FROM folders WHERE name = ?1), \
             paths AS (SELECT path FROM base WHERE folder = (SELECT id FROM f) \
                       UNION ALL SELECT path FROM remote WHERE folder = (SELECT id FROM f) AND kind IS NOT NULL) \
             SELECT CASE WHEN instr(path, '/') > 0 THEN substr(path, 1, instr(path, '/') - 1) ELSE path END AS top, \
                    COUNT(*) FROM paths GROUP BY top",
        )
        .bind(folder)
        .fetch_all(&self.pool)
        .await
        .map_err(ctx(format!("sizing the trees of folder '{folder}'")))?;
        Ok(rows.into_iter().map(|(t, n)| (t, n as u64)).collect())
    }

    /// Downloads that were being installed when the agent last stopped: path → (rev, content).
    pub async fn installing(&self, folder: &str) -> Result<HashMap<RelPath, (u64, Hash)>, StateError> {
        let rows = sqlx::query(
            "SELECT i.path, i.rev, i.hash FROM installing i JOIN folders f ON f.id = i.folder WHERE f.name = ?",
        )
        .bind(folder)
        .fetch_all(&self.pool)
        .await
        .map_err(ctx(format!("reading the interrupted downloads of folder '{folder}'")))?;
        rows.iter()
            .map(|r| {
                let path = rel_path(folder, r)?;
                let hash: Vec<u8> = r.get("hash");
                let hash =
                    Hash::from_slice(&hash).ok_or_else(|| corrupt(folder, path.as_str(), "hash is not 32 bytes"))?;
                Ok((path, (r.get::<i64, _>("rev") as u64, hash)))
            })
            .collect()
    }

    /// Of `paths`, those with a version this computer had and holds no base for (see
    /// `StepRecord::own_versions`): path → (rev, content) of that version. Reads nothing when the folder has no
    /// such file (the usual case), however many paths are asked about.
    pub async fn own_versions_among(
        &self,
        folder: &str,
        paths: &[&RelPath],
    ) -> Result<HashMap<RelPath, (u64, Hash)>, StateError> {
        let what = || format!("reading the versions this computer had in folder '{folder}'");
        let any: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM own_versions e JOIN folders f ON f.id = e.folder WHERE f.name = ?)",
        )
        .bind(folder)
        .fetch_one(&self.pool)
        .await
        .map_err(ctx(what()))?;
        let mut out = HashMap::new();
        if !any {
            return Ok(out);
        }
        for batch in paths.chunks(BATCH_ROWS) {
            let head = "SELECT e.path, e.rev, e.hash FROM own_versions e JOIN folders f ON f.id = e.folder \
                        WHERE f.name = ? AND e.path IN (";
            let mut q = sqlx::query(AssertSqlSafe(multi_row_sql(head, 1, batch.len(), ")"))).bind(folder);
            for p in batch {
                q = q.bind(p.as_str());
            }
            for r in &q.fetch_all(&self.pool).await.map_err(ctx(what()))? {
                let path = rel_path(folder, r)?;
                let hash: Vec<u8> = r.get("hash");
                let hash =
                    Hash::from_slice(&hash).ok_or_else(|| corrupt(folder, path.as_str(), "hash is not 32 bytes"))?;
                out.insert(path, (r.get::<i64, _>("rev") as u64, hash));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StepRecord;
    use filesync_core::{ChunkRef, FileMeta};

    fn p(s: &str) -> RelPath {
        RelPath::new(s).unwrap()
    }

    fn base(size: u64, seed: u8) -> BaseRow {
        let meta = FileMeta {
            kind: EntryKind::File,
            size,
            mtime_ns: 1,
            executable: false,
            hash: Hash([seed; 32]),
            chunks: vec![ChunkRef { hash: Hash([seed; 32]), len: size as u32 }],
        };
        BaseRow { rev: 1, meta, size, mtime_ns: 1, ino: 1 }
    }

    #[tokio::test]
    async fn an_own_version_is_forgotten_when_its_path_gets_a_base_or_is_let_go() {
        let db = StateDb::memory().await.unwrap();
        let (a, b, c) = (p("x/a"), p("x/b"), p("x/c"));
        let own = |path: &RelPath, seed: u8| (path.clone(), 3, Hash([seed; 32]));
        let rec = StepRecord { own_versions: vec![own(&a, 1), own(&b, 2), own(&c, 3)], ..StepRecord::default() };
        db.record_step("f", &rec).await.unwrap();
        db.record_step("g", &StepRecord { own_versions: vec![own(&a, 9)], ..StepRecord::default() }).await.unwrap();
        let among = |folder: &'static str| {
            let db = &db;
            let paths = [&a, &b, &c];
            async move {
                let mut found: Vec<RelPath> =
                    db.own_versions_among(folder, &paths).await.unwrap().into_keys().collect();
                found.sort();
                found
            }
        };
        assert_eq!(among("f").await, vec![a.clone(), b.clone(), c.clone()]);
        // A base recorded by any step (settled, downloaded, promoted) ends the record; an upsert too.
        db.set_bases("f", &[(a.clone(), base(1, 1))]).await.unwrap();
        db.record_step("f", &StepRecord { own_versions: vec![own(&a, 1)], ..StepRecord::default() }).await.unwrap();
        db.set_bases("f", &[(a.clone(), base(2, 1))]).await.unwrap();
        // One the server moved on from is let go by name.
        db.record_step("f", &StepRecord { forget_own_versions: vec![c.clone()], ..StepRecord::default() })
            .await
            .unwrap();
        assert_eq!(among("f").await, vec![b.clone()]);
        assert_eq!(among("g").await, vec![a.clone()], "another folder's record stays");
    }

    #[tokio::test]
    async fn subtrees_are_key_ranges_that_stop_at_siblings_sharing_a_prefix() {
        let db = StateDb::memory().await.unwrap();
        let rows: Vec<_> =
            ["a", "a/x", "a/y/z", "a.txt", "a0", "ab/c", "b"].iter().map(|s| (p(s), base(1, 1))).collect();
        db.set_bases("f", &rows).await.unwrap();
        db.set_bases("g", &[(p("a/x"), base(1, 1))]).await.unwrap();
        let mut got: Vec<String> =
            db.bases_within("f", &[p("a")]).await.unwrap().into_keys().map(|p| p.as_str().to_string()).collect();
        got.sort();
        assert_eq!(got, ["a", "a/x", "a/y/z"]);
        assert_eq!(db.bases_within("f", &[p("a/y"), p("b")]).await.unwrap().len(), 2);
        assert!(db.remote_within("f", &[p("a")]).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_whole_folder_is_read_page_by_page_and_many_ranges_in_one_statement() {
        let db = StateDb::memory().await.unwrap();
        let n = PAGE_ROWS * 2 + 7;
        let rows: Vec<_> = (0..n).map(|i| (p(&format!("d{:03}/f{i:05}", i % 100)), base(i as u64, 1))).collect();
        db.set_bases("f", &rows).await.unwrap();
        let all = db.bases("f").await.unwrap();
        assert_eq!(all.len(), n);
        assert_eq!(all[&p("d042/f00042")].meta.size, 42);
        // 70 ranges (more than one statement holds), one of them empty, one a single file.
        let mut dirs: Vec<RelPath> = (0..69).map(|d| p(&format!("d{d:03}"))).collect();
        dirs.push(p("d099/f00099"));
        dirs.push(p("nothing/here"));
        let within = db.bases_within("f", &dirs).await.unwrap();
        let want = rows.iter().filter(|(path, _)| dirs.iter().any(|d| d == path || d.is_ancestor_of(path))).count();
        assert_eq!(within.len(), want);
        assert!(within.contains_key(&p("d099/f00099")) && !within.contains_key(&p("d099/f00199")));
        assert!(db.bases("nobody").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn totals_follow_every_change_of_the_bases() {
        let db = StateDb::memory().await.unwrap();
        assert_eq!(db.totals("f").await.unwrap(), Totals::default());
        let copy = p("r (conflicted copy from laptop 2026-11-30 101010).txt");
        db.set_bases("f", &[(p("a"), base(10, 1)), (p("b"), base(5, 2)), (copy.clone(), base(7, 3))]).await.unwrap();
        let dir = BaseRow { meta: FileMeta::dir(1), ..base(0, 0) };
        db.set_bases("f", &[(p("d"), dir)]).await.unwrap();
        assert_eq!(db.totals("f").await.unwrap(), Totals { files: 3, bytes: 22, conflict_copies: 1 });
        db.set_bases("f", &[(p("a"), base(100, 4))]).await.unwrap();
        db.forget_bases("f", &[copy, p("d")]).await.unwrap();
        assert_eq!(db.totals("f").await.unwrap(), Totals { files: 2, bytes: 105, conflict_copies: 0 });
        db.forget_folder("f").await.unwrap();
        assert_eq!(db.totals("f").await.unwrap(), Totals::default());
    }

    #[tokio::test]
    async fn trees_are_sized_by_their_top_level_name() {
        let db = StateDb::memory().await.unwrap();
        let rows: Vec<_> = ["a", "a/x", "a/y/z", "b.txt"].iter().map(|s| (p(s), base(1, 1))).collect();
        db.set_bases("f", &rows).await.unwrap();
        let mut sizes = db.top_level_sizes("f").await.unwrap();
        sizes.sort();
        assert_eq!(sizes, vec![("a".to_string(), 3), ("b.txt".to_string(), 1)]);
    }

    #[tokio::test]
    async fn files_with_a_content_are_found_by_it() {
        let db = StateDb::memory().await.unwrap();
        db.set_bases("f", &[(p("a"), base(10, 1)), (p("b"), base(10, 1)), (p("c"), base(10, 2))]).await.unwrap();
        let found = db.bases_with_content("f", &[Hash([1; 32])]).await.unwrap();
        assert_eq!(found.len(), 2);
        assert!(db.bases_with_content("g", &[Hash([1; 32])]).await.unwrap().is_empty());
    }
}
