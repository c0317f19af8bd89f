//! Backend-neutral pieces of the SQL stores: how domain values map to columns (chunk lists as
//! 36-byte records, entry kinds as integers, unsigned numbers as `BIGINT`) and how batched
//! statements are spelled (`$n` placeholders, bounded `IN`/`VALUES` lists). Shared so that the
//! SQLite store and a later PostgreSQL one store exactly the same bytes.

use crate::{Result, StoreError};
use filesync_core::{ChunkRef, EntryKind, Hash};
use std::fmt::Write as _;

/// Most bind parameters one statement gets. SQLite before 3.32 allowed 999, PostgreSQL allows
/// 65535; staying under the smaller one keeps every backend (and old system SQLites) happy.
pub(crate) const MAX_BINDS: usize = 999;

/// Hashes per `IN (…)` list when looking up thousands of chunks or paths.
pub(crate) const IN_LIST: usize = 500;

/// Size of one record of a stored chunk list: 32-byte BLAKE3 hash + `u32` little-endian length,
/// the same layout as on the wire.
pub(crate) const CHUNK_RECORD: usize = 36;

/// `$first, $first+1, …` for `n` parameters.
pub(crate) fn params(first: usize, n: usize) -> String {
    let mut s = String::with_capacity(n * 5);
    for i in 0..n {
        if i > 0 {
            s.push_str(", ");
        }
        let _ = write!(s, "${}", first + i);
    }
    s
}

/// `($1, $2, $3), ($4, $5, $6), …`: `rows` tuples of `cols` parameters, numbered from 1.
pub(crate) fn value_rows(rows: usize, cols: usize) -> String {
    let mut s = String::with_capacity(rows * cols * 5);
    for r in 0..rows {
        if r > 0 {
            s.push_str(", ");
        }
        s.push('(');
        s.push_str(&params(1 + r * cols, cols));
        s.push(')');
    }
    s
}

/// `sql` with each `$N` written as an anonymous `?`, for SQLite. The parameters must appear in
/// order, `$1` first, each once (as [`params`] and [`value_rows`] write them).
///
/// Why: sqlx looks up every parameter's name, and SQLite finds the name of parameter N by
/// walking the list of names from the start, so a statement with a thousand numbered
/// parameters costs half a million steps to bind (15 % of the server's CPU while it takes in
/// 10,000 small files); anonymous parameters have no names to walk.
pub(crate) fn positional(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut next = 1usize;
    let mut rest = sql;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let digits = rest[i + 1..].bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            out.push('$');
            rest = &rest[i + 1..];
            continue;
        }
        let n: usize = rest[i + 1..i + 1 + digits].parse().expect("a parameter number");
        assert_eq!(n, next, "parameters must appear in order to be made anonymous: {sql}");
        next += 1;
        out.push('?');
        rest = &rest[i + 1 + digits..];
    }
    out.push_str(rest);
    out
}

/// How many rows of `cols` parameters fit into one statement.
pub(crate) fn rows_per_statement(cols: usize) -> usize {
    (MAX_BINDS / cols).max(1)
}

pub(crate) fn encode_chunks(chunks: &[ChunkRef]) -> Vec<u8> {
    let mut out = Vec::with_capacity(chunks.len() * CHUNK_RECORD);
    for c in chunks {
        out.extend_from_slice(c.hash.as_bytes());
        out.extend_from_slice(&c.len.to_le_bytes());
    }
    out
}

pub(crate) fn decode_chunks(blob: &[u8]) -> Result<Vec<ChunkRef>> {
    if !blob.len().is_multiple_of(CHUNK_RECORD) {
        return Err(StoreError::Corrupt(format!(
            "stored chunk list is {} bytes, not a multiple of {CHUNK_RECORD}",
            blob.len()
        )));
    }
    Ok(blob
        .chunks_exact(CHUNK_RECORD)
        .map(|r| {
            let (hash, len) = r.split_at(32);
            ChunkRef {
                hash: Hash::from_slice(hash).expect("split_at(32) yields 32 bytes"),
                len: u32::from_le_bytes(len.try_into().expect("record tail is 4 bytes")),
            }
        })
        .collect())
}

pub(crate) fn decode_hash(blob: &[u8], what: &str) -> Result<Hash> {
    Hash::from_slice(blob)
        .ok_or_else(|| StoreError::Corrupt(format!("{what} is {} bytes, expected a 32-byte hash", blob.len())))
}

pub(crate) fn encode_kind(kind: EntryKind) -> i64 {
    match kind {
        EntryKind::File => 0,
        EntryKind::Dir => 1,
    }
}

pub(crate) fn decode_kind(v: i64) -> Result<EntryKind> {
    match v {
        0 => Ok(EntryKind::File),
        1 => Ok(EntryKind::Dir),
        _ => Err(StoreError::Corrupt(format!("unknown entry kind {v} in the database"))),
    }
}

/// An id or rev as a SQL `BIGINT` key. Values above `i64::MAX` cannot exist in the database, so
/// they become -1, which matches no row (every id and rev is positive).
pub(crate) fn key(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(-1)
}

/// A stored `BIGINT` that must not be negative (ids, revs, sizes).
pub(crate) fn unsigned(v: i64, what: &str) -> Result<u64> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("{what} is negative ({v}) in the database")))
}

/// A size to store as `BIGINT`. Sizes beyond 8 EiB are not real files.
pub(crate) fn signed(v: u64, what: &str) -> Result<i64> {
    i64::try_from(v).map_err(|_| StoreError::Corrupt(format!("{what} {v} does not fit in a 64-bit signed integer")))
}

/// Seconds since the Unix epoch, by the system clock: when a chunk row was added or the schema
/// migrated. (The SQL stores run only in real servers, never in the simulation; the garbage
/// collection cutoff they are compared with comes from the server's clock, the same system
/// clock there.)
pub(crate) fn unix_now() -> i64 {
    filesync_core::clock::Clock::now_unix(&filesync_core::clock::SystemClock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_from_one_per_row() {
        assert_eq!(params(3, 3), "$3, $4, $5");
        assert_eq!(value_rows(2, 2), "($1, $2), ($3, $4)");
        assert_eq!(positional("a = $1 AND b IN ($2, $3)"), "a = ? AND b IN (?, ?)");
        assert_eq!(positional(&format!("VALUES {}", value_rows(2, 2))), "VALUES (?, ?), (?, ?)");
        assert_eq!(positional("x = '$' AND y = $1"), "x = '$' AND y = ?");
        assert_eq!(rows_per_statement(13), 76);
    }

    #[test]
    fn chunk_lists_round_trip_and_reject_torn_records() {
        let chunks = vec![ChunkRef { hash: Hash::of(b"a"), len: 7 }, ChunkRef { hash: Hash::of(b"b"), len: u32::MAX }];
        let blob = encode_chunks(&chunks);
        assert_eq!(blob.len(), 72);
        assert_eq!(&blob[32..36], &7u32.to_le_bytes());
        assert_eq!(decode_chunks(&blob).unwrap(), chunks);
        assert!(matches!(decode_chunks(&blob[..40]), Err(StoreError::Corrupt(_))));
    }
}
