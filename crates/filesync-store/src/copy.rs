//! Moving a single-machine server to PostgreSQL (and, if asked, its chunks to another chunk
//! store): [`copy_server`] copies every row of the SQLite metadata — accounts, devices with
//! their token hashes, folders, journals, history, the chunk index, invites, the admin
//! generation — keeping ids, copies the chunk bytes, and then verifies the copy.
//!
//! Safe to run again after an interruption, and a run over a finished copy changes nothing:
//! chunk bytes are copied first and are content-addressed (a put of a chunk already there
//! stores the same bytes), and the rows are written afterwards in one PostgreSQL transaction,
//! so the database holds either none of them or all of them. A run that finds accounts in the
//! database writes nothing: it verifies, and succeeds only if the database holds exactly this
//! source's copy — a database some server has used since is refused, never overwritten. The
//! identity sequences are moved past the copied ids (`setval`), so that accounts, devices and
//! folders created later get new ids.
//!
//! Verification compares, table by table, the number of rows and a BLAKE3 digest of their
//! values in primary-key order (the same order on both databases: keys are integers, byte
//! strings and `COLLATE "C"` text), and reads every chunk back from the destination store,
//! which checks its bytes against its hash. A chunk the source lists but cannot produce (gone
//! or damaged on its disk) is not copied and its row is left out, as the server itself forgets
//! such a chunk: devices that hold the file upload it again.

use crate::pg::PgMeta;
use crate::sqlite::SqliteMeta;
use crate::{ChunkStore, Result, StoreError, UserId};
use bytes::Bytes;
use filesync_core::Hash;
use futures::TryStreamExt;
use sqlx::{AssertSqlSafe, Row};
use std::collections::HashSet;

/// The type of a column, as both databases store it.
#[derive(Clone, Copy, Debug)]
enum Col {
    Int,
    OptInt,
    Text,
    Bool,
    Blob,
    OptBlob,
}

/// A table to copy: its columns (key columns first) and how many of them are the key.
struct Table {
    name: &'static str,
    cols: &'static [(&'static str, Col)],
    key: usize,
}

/// Every table of the schema, parents before children.
const TABLES: &[Table] = &[
    Table {
        name: "users",
        cols: &[
            ("id", Col::Int),
            ("name", Col::Text),
            ("password_hash", Col::Text),
            ("created_at", Col::Int),
            ("disabled", Col::Bool),
            ("quota_bytes", Col::OptInt),
        ],
        key: 1,
    },
    Table {
        name: "devices",
        cols: &[
            ("id", Col::Int),
            ("user_id", Col::Int),
            ("name", Col::Text),
            ("token_hash", Col::Blob),
            ("created_at", Col::Int),
            ("last_seen", Col::Int),
            ("revoked", Col::Bool),
        ],
        key: 1,
    },
    Table {
        name: "folders",
        cols: &[("id", Col::Int), ("user_id", Col::Int), ("name", Col::Text), ("seq", Col::Int)],
        key: 1,
    },
    Table {
        name: "versions",
        cols: &[
            ("folder_id", Col::Int),
            ("rev", Col::Int),
            ("path", Col::Text),
            ("deleted", Col::Bool),
            ("kind", Col::Int),
            ("size", Col::Int),
            ("mtime_ns", Col::Int),
            ("executable", Col::Bool),
            ("hash", Col::OptBlob),
            ("chunks", Col::OptBlob),
            ("device_id", Col::Int),
            ("device_name", Col::Text),
            ("committed_at", Col::Int),
        ],
        key: 2,
    },
    Table { name: "current", cols: &[("folder_id", Col::Int), ("path", Col::Text), ("rev", Col::Int)], key: 2 },
    Table {
        name: "chunks",
        cols: &[("user_id", Col::Int), ("hash", Col::Blob), ("size", Col::Int), ("added_at", Col::Int)],
        key: 2,
    },
    Table {
        name: "invites",
        cols: &[
            ("code_hash", Col::Blob),
            ("created_at", Col::Int),
            ("expires_at", Col::Int),
            ("used_by", Col::OptInt),
            ("used_at", Col::OptInt),
        ],
        key: 1,
    },
    Table { name: "admin_state", cols: &[("id", Col::Int), ("generation", Col::Int)], key: 1 },
];

/// Tables whose `id` is an identity column on PostgreSQL.
const IDENTITIES: &[&str] = &["users", "devices", "folders"];

/// One value of a row.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Value {
    Int(Option<i64>),
    Text(String),
    Bool(bool),
    Blob(Option<Vec<u8>>),
}

impl Value {
    /// Feeds the value to a digest, unambiguously (a tag, then a length where it varies).
    fn digest(&self, h: &mut blake3::Hasher) {
        match self {
            Value::Int(None) | Value::Blob(None) => {
                h.update(&[0]);
            }
            Value::Int(Some(i)) => {
                h.update(&[1]).update(&i.to_le_bytes());
            }
            Value::Bool(b) => {
                h.update(&[2, u8::from(*b)]);
            }
            Value::Text(t) => {
                h.update(&[3]).update(&(t.len() as u64).to_le_bytes()).update(t.as_bytes());
            }
            Value::Blob(Some(b)) => {
                h.update(&[4]).update(&(b.len() as u64).to_le_bytes()).update(b);
            }
        }
    }
}

/// Reads column `i` of a row of either database as `col`.
fn value<R: Row>(row: &R, i: usize, col: Col) -> Result<Value>
where
    usize: sqlx::ColumnIndex<R>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(match col {
        Col::Int => Value::Int(Some(row.try_get::<i64, _>(i)?)),
        Col::OptInt => Value::Int(row.try_get::<Option<i64>, _>(i)?),
        Col::Text => Value::Text(row.try_get::<String, _>(i)?),
        Col::Bool => Value::Bool(row.try_get::<bool, _>(i)?),
        Col::Blob => Value::Blob(Some(row.try_get::<Vec<u8>, _>(i)?)),
        Col::OptBlob => Value::Blob(row.try_get::<Option<Vec<u8>>, _>(i)?),
    })
}

fn select(t: &Table) -> String {
    let cols: Vec<&str> = t.cols.iter().map(|(c, _)| *c).collect();
    let key = &cols[..t.key];
    format!("SELECT {} FROM {} ORDER BY {}", cols.join(", "), t.name, key.join(", "))
}

/// The user and hash of a `chunks` row.
fn chunk_key(row: &[Value]) -> Option<(i64, &[u8])> {
    match row {
        [Value::Int(Some(user)), Value::Blob(Some(hash)), ..] => Some((*user, hash.as_slice())),
        _ => None,
    }
}

/// Rows of one table, with the chunks in `skip` left out (for the `chunks` table).
fn keep(t: &Table, row: &[Value], skip: &HashSet<(i64, Vec<u8>)>) -> bool {
    t.name != "chunks" || chunk_key(row).is_none_or(|(u, h)| !skip.contains(&(u, h.to_vec())))
}

/// Row count and digest of one table, as a table-wide comparison needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableSummary {
    pub rows: u64,
    pub digest: [u8; 32],
}

/// What [`copy_server`] did and found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// Rows per table, in the order copied (the same in source and destination once verified).
    pub tables: Vec<(&'static str, u64)>,
    /// Chunks whose bytes were copied to another store (0 when the chunks stay where they are).
    pub chunks_copied: u64,
    /// Chunks read back from the destination store and found intact.
    pub chunks_verified: u64,
    /// Chunks the source lists but could not produce: left out, uploaded again by devices.
    pub chunks_unreadable: Vec<(UserId, Hash)>,
    /// PostgreSQL already held this copy (an earlier run): nothing was written.
    pub already_copied: bool,
}

/// Chunks copied per `put_many`.
const CHUNK_BATCH: usize = 64;
/// Rows of the chunk index read per page while copying bytes.
const CHUNK_PAGE: i64 = 1000;

/// Copies the server of `source` (metadata) and `source_chunks` into `dest`, and its chunks into
/// `dest_chunks` (`None`: the chunks stay in `source_chunks`, which the new server will use),
/// then verifies the copy. `progress` hears a line now and then. See the module doc.
///
/// `dest` must hold no account yet, or exactly what this source would copy (an earlier run):
/// then nothing is written, and the copy is only verified again. A database that a server has
/// used since is refused, never overwritten.
pub async fn copy_server(
    source: &SqliteMeta,
    source_chunks: &dyn ChunkStore,
    dest: &PgMeta,
    dest_chunks: Option<&dyn ChunkStore>,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<CopyReport> {
    let mut report = CopyReport::default();
    let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(dest.pool()).await?;
    let fresh = users == 0;
    // 1. Chunk bytes, before the rows that say they exist (only read, on a finished copy).
    let unreadable = copy_chunks(source, source_chunks, dest_chunks.filter(|_| fresh), &mut report, progress).await?;
    if fresh {
        // 2. Rows, in one transaction: all of them or none.
        copy_rows(source, dest, &unreadable, progress).await?;
    } else {
        report.already_copied = true;
        progress("PostgreSQL already holds accounts: checking that they are this server's copy");
    }
    // 3. Verify, table by table, then every chunk.
    for t in TABLES {
        let from = summarize_source(t, source, &unreadable).await?;
        let to = summarize_dest(t, dest).await?;
        if from != to {
            let what = if from.rows == to.rows { " with different values" } else { "" };
            return Err(StoreError::Corrupt(format!(
                "table {} differs: {} row(s) in the source, {} in PostgreSQL{what}. {}",
                t.name,
                from.rows,
                to.rows,
                if fresh {
                    "The copy did not verify; drop and create the database, then migrate again"
                } else {
                    "The database holds another server's data, or was used by a server after an earlier copy \
                     (or the source changed since): migrate into an empty database"
                }
            )));
        }
        report.tables.push((t.name, from.rows));
    }
    let target = dest_chunks.unwrap_or(source_chunks);
    let chunks: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT user_id, hash FROM chunks ORDER BY user_id, hash").fetch_all(dest.pool()).await?;
    for (user, hash) in chunks {
        let hash = crate::sql::decode_hash(&hash, "chunk hash")?;
        if target.get(user as UserId, &hash).await?.is_none() {
            return Err(StoreError::Corrupt(format!(
                "chunk {hash} of user {user} is missing from the destination chunk store; migrate again"
            )));
        }
        report.chunks_verified += 1;
    }
    progress(&format!("verified: every table, and {} chunk(s) read back", report.chunks_verified));
    Ok(report)
}

/// Reads every chunk the source lists and, with `to`, stores it there. Returns the chunks the
/// source could not produce.
async fn copy_chunks(
    source: &SqliteMeta,
    source_chunks: &dyn ChunkStore,
    to: Option<&dyn ChunkStore>,
    report: &mut CopyReport,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<HashSet<(i64, Vec<u8>)>> {
    let mut unreadable = HashSet::new();
    let mut after: (i64, Vec<u8>) = (i64::MIN, Vec::new());
    loop {
        let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT user_id, hash FROM chunks WHERE user_id > $1 OR (user_id = $1 AND hash > $2) \
             ORDER BY user_id, hash LIMIT $3",
        )
        .bind(after.0)
        .bind(&after.1)
        .bind(CHUNK_PAGE)
        .fetch_all(source.pool())
        .await?;
        let Some(last) = rows.last() else { break };
        after = last.clone();
        let mut batch: Vec<(Hash, Bytes)> = Vec::with_capacity(CHUNK_BATCH);
        let mut batch_user = None;
        for (user, hash) in &rows {
            let hash = crate::sql::decode_hash(hash, "chunk hash")?;
            let user = *user as UserId;
            if batch_user != Some(user) || batch.len() == CHUNK_BATCH {
                flush(to, batch_user, &mut batch, report).await?;
                batch_user = Some(user);
            }
            match source_chunks.get(user, &hash).await {
                Ok(Some(bytes)) if to.is_some() => batch.push((hash, bytes)),
                Ok(Some(_)) => {}
                Ok(None) | Err(StoreError::ChunkDamaged { .. }) => {
                    report.chunks_unreadable.push((user, hash));
                    unreadable.insert((user as i64, hash.as_bytes().to_vec()));
                }
                Err(e) => return Err(e),
            }
        }
        flush(to, batch_user, &mut batch, report).await?;
        if to.is_some() {
            progress(&format!("chunks: {} copied", report.chunks_copied));
        }
    }
    Ok(unreadable)
}

/// Stores a batch of one user's chunks in `to`.
async fn flush(
    to: Option<&dyn ChunkStore>,
    user: Option<UserId>,
    batch: &mut Vec<(Hash, Bytes)>,
    report: &mut CopyReport,
) -> Result<()> {
    if let (Some(to), Some(user)) = (to, user)
        && !batch.is_empty()
    {
        to.put_many(user, batch).await?;
        report.chunks_copied += batch.len() as u64;
    }
    batch.clear();
    Ok(())
}

/// Copies every row in one transaction, then moves the identity sequences past the copied ids.
async fn copy_rows(
    source: &SqliteMeta,
    dest: &PgMeta,
    unreadable: &HashSet<(i64, Vec<u8>)>,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<()> {
    let mut tx = dest.pool().begin().await?;
    // Every table read from one snapshot of the source, so that its rows agree with each other.
    let mut snapshot = source.pool().begin().await?;
    for t in TABLES {
        let mut rows = sqlx::query(AssertSqlSafe(select(t))).fetch(&mut *snapshot);
        let per_statement = crate::sql::rows_per_statement(t.cols.len());
        let mut pending: Vec<Vec<Value>> = Vec::new();
        let mut copied = 0u64;
        loop {
            let row = rows.try_next().await?;
            if let Some(row) = &row {
                let values = row_values(t, row)?;
                if keep(t, &values, unreadable) {
                    pending.push(values);
                }
            }
            if pending.len() == per_statement || (row.is_none() && !pending.is_empty()) {
                copied += pending.len() as u64;
                upsert(&mut tx, t, &std::mem::take(&mut pending)).await?;
            }
            if row.is_none() {
                break;
            }
        }
        progress(&format!("{}: {copied} row(s) copied", t.name));
    }
    for t in IDENTITIES {
        // Past the highest id the table holds (never back: ids in use stay unique).
        let sql = format!(
            "SELECT setval(pg_get_serial_sequence('{t}', 'id'), COALESCE((SELECT MAX(id) FROM {t}), 1), \
             (SELECT MAX(id) FROM {t}) IS NOT NULL)"
        );
        sqlx::query(AssertSqlSafe(sql)).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Writes `rows` of `t` into PostgreSQL: new rows inserted, existing ones (same key) set to the
/// source's values.
async fn upsert(conn: &mut sqlx::PgConnection, t: &Table, rows: &[Vec<Value>]) -> Result<()> {
    let cols: Vec<&str> = t.cols.iter().map(|(c, _)| *c).collect();
    let set: Vec<String> = cols[t.key..].iter().map(|c| format!("{c} = excluded.{c}")).collect();
    let sql = format!(
        "INSERT INTO {} ({}) VALUES {} ON CONFLICT ({}) DO UPDATE SET {}",
        t.name,
        cols.join(", "),
        crate::sql::value_rows(rows.len(), cols.len()),
        cols[..t.key].join(", "),
        set.join(", ")
    );
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for row in rows {
        for v in row {
            q = match v {
                Value::Int(i) => q.bind(*i),
                Value::Text(s) => q.bind(s.clone()),
                Value::Bool(b) => q.bind(*b),
                Value::Blob(b) => q.bind(b.clone()),
            };
        }
    }
    q.execute(conn).await.map_err(|e| match e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Corrupt(format!(
            "PostgreSQL already holds other {} under the same names or tokens ({}); copy into an empty database",
            t.name,
            d.message()
        )),
        e => StoreError::Db(e),
    })?;
    Ok(())
}

/// Reads a row of `t` from either database.
fn row_values<R: Row>(t: &Table, row: &R) -> Result<Vec<Value>>
where
    usize: sqlx::ColumnIndex<R>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    t.cols.iter().enumerate().map(|(i, (_, c))| value(row, i, *c)).collect()
}

/// Adds a row to a table's summary.
fn add_row(summary: &mut TableSummary, h: &mut blake3::Hasher, row: &[Value]) {
    summary.rows += 1;
    for v in row {
        v.digest(h);
    }
}

/// Row count and digest of `t` in the source, leaving out the chunks in `skip`.
async fn summarize_source(t: &Table, source: &SqliteMeta, skip: &HashSet<(i64, Vec<u8>)>) -> Result<TableSummary> {
    let (mut summary, mut h) = (TableSummary::default(), blake3::Hasher::new());
    let mut rows = sqlx::query(AssertSqlSafe(select(t))).fetch(source.pool());
    while let Some(row) = rows.try_next().await? {
        let values = row_values(t, &row)?;
        if keep(t, &values, skip) {
            add_row(&mut summary, &mut h, &values);
        }
    }
    summary.digest = *h.finalize().as_bytes();
    Ok(summary)
}

/// Row count and digest of `t` in PostgreSQL.
async fn summarize_dest(t: &Table, dest: &PgMeta) -> Result<TableSummary> {
    let (mut summary, mut h) = (TableSummary::default(), blake3::Hasher::new());
    let mut rows = sqlx::query(AssertSqlSafe(select(t))).fetch(dest.pool());
    while let Some(row) = rows.try_next().await? {
        add_row(&mut summary, &mut h, &row_values(t, &row)?);
    }
    summary.digest = *h.finalize().as_bytes();
    Ok(summary)
}
