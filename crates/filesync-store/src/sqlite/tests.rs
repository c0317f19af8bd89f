//! SQLite-specific tests: connection settings, migrations across reopen, concurrency between
//! writers, corruption detection and the speed of a large commit. The behaviour every backend
//! shares is in [`crate::conformance`].

use super::*;
use crate::{Device, Folder, MetaStore, Outcome, ProposedChange, UserId};
use filesync_core::{ChunkRef, EntryKind, EntryState, FileMeta, Hash, RelPath};
use sqlx::AssertSqlSafe;
use std::path::PathBuf;
use tokio::time::Instant;

/// A temporary directory with a database file path in it.
struct TestDb {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl TestDb {
    fn new() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("meta.db");
        TestDb { _dir: dir, path }
    }

    async fn open(&self) -> SqliteMeta {
        SqliteMeta::open(&self.path).await.expect("open database")
    }
}

/// A user with a device and a folder, and `n` stored one-chunk files ready to commit.
async fn account(s: &SqliteMeta, name: &str, n: usize) -> (UserId, Device, Folder, Vec<FileMeta>) {
    let user = s.create_user(name, "h", 1).await.unwrap();
    let device = s.create_device(user.id, "d", &Hash::of(name.as_bytes()).0, 1).await.unwrap();
    let folder = s.folder_by_name(user.id, "f", true).await.unwrap().unwrap();
    let metas: Vec<FileMeta> = (0..n)
        .map(|i| {
            let hash = Hash::of(format!("{name} {i}").as_bytes());
            FileMeta {
                kind: EntryKind::File,
                size: 10,
                mtime_ns: i as i64,
                executable: false,
                hash,
                chunks: vec![ChunkRef { hash, len: 10 }],
            }
        })
        .collect();
    let chunks: Vec<(Hash, u32)> = metas.iter().map(|m| (m.hash, 10)).collect();
    s.add_chunks(user.id, &chunks).await.unwrap();
    (user.id, device, folder, metas)
}

fn put(path: &str, meta: &FileMeta) -> ProposedChange {
    ProposedChange { path: RelPath::new(path).unwrap(), base_rev: 0, meta: Some(meta.clone()) }
}

async fn pragma(pool: &SqlitePool, name: &'static str) -> String {
    let sql = format!("PRAGMA {name}");
    let row = sqlx::query(AssertSqlSafe(sql)).fetch_one(pool).await.unwrap();
    use sqlx::Row;
    row.try_get::<String, _>(0).or_else(|_| row.try_get::<i64, _>(0).map(|v| v.to_string())).unwrap()
}

#[tokio::test]
async fn open_uses_wal_full_sync_foreign_keys_and_busy_timeout() {
    let db = TestDb::new();
    let s = db.open().await;
    for pool in [&s.write, &s.read] {
        assert_eq!(pragma(pool, "journal_mode").await, "wal");
        assert_eq!(pragma(pool, "synchronous").await, "2", "synchronous = FULL");
        assert_eq!(pragma(pool, "foreign_keys").await, "1");
        assert_eq!(pragma(pool, "busy_timeout").await, "10000");
    }
    assert_eq!(pragma(&s.read, "query_only").await, "1", "the read pool cannot write");
    let write =
        sqlx::query("INSERT INTO users (name, password_hash, created_at) VALUES ('x', 'h', 0)").execute(&s.read).await;
    assert!(write.is_err(), "a write through the read pool must fail");
}

#[tokio::test]
async fn reopening_keeps_data_and_applies_no_migration_twice() {
    let db = TestDb::new();
    let s = db.open().await;
    let (user, device, folder, metas) = account(&s, "alice", 1).await;
    let out = s.commit(user, folder.id, &device, &[put("a", &metas[0])], 5).await.unwrap();
    s.close().await;

    let s = db.open().await;
    assert_eq!(s.schema_version().await.unwrap(), SqliteMeta::latest_schema_version());
    assert_eq!(s.user_by_id(user).await.unwrap().unwrap().name, "alice");
    let current = s.current(folder.id, &RelPath::new("a").unwrap()).await.unwrap();
    assert_eq!(
        Some(current),
        out.outcomes.first().map(|o| match o {
            Outcome::Accepted(e) => e.clone(),
            Outcome::Conflict(_) => panic!("conflict"),
        })
    );
    assert_eq!(s.missing_chunks(user, &[metas[0].hash]).await.unwrap(), Vec::<usize>::new());
}

/// Protocol version 2 redefined a file's hash as the hash of its chunk list: a database written
/// before has every stored version (history too) brought over, or devices would reject them.
#[tokio::test]
async fn file_hashes_of_an_older_database_are_recomputed_from_chunk_lists() {
    let db = TestDb::new();
    let s = db.open().await;
    let (user, device, folder, metas) = account(&s, "alice", 2).await;
    s.commit(user, folder.id, &device, &[put("a", &metas[0])], 5).await.unwrap();
    let edit = ProposedChange { base_rev: 1, ..put("a", &metas[1]) };
    s.commit(user, folder.id, &device, &[edit], 6).await.unwrap();
    let gone = ProposedChange { path: RelPath::new("a").unwrap(), base_rev: 2, meta: None };
    s.commit(user, folder.id, &device, &[gone], 7).await.unwrap();
    assert_ne!(metas[0].hash, filesync_core::file_hash(&metas[0].chunks), "written with an old-style hash");
    let step = schema::MIGRATIONS.iter().position(|m| m.contains(&schema::RECOMPUTE_FILE_HASHES)).unwrap();
    sqlx::query("DELETE FROM schema_version WHERE version > $1").bind(step as i64).execute(&s.write).await.unwrap();
    s.close().await;

    let s = db.open().await;
    assert_eq!(s.schema_version().await.unwrap(), SqliteMeta::latest_schema_version());
    let versions = s.versions(folder.id, &RelPath::new("a").unwrap()).await.unwrap();
    let hashes: Vec<_> = versions.iter().map(|v| v.meta.as_ref().map(|m| m.hash)).collect();
    let new = |m: &FileMeta| Some(filesync_core::file_hash(&m.chunks));
    assert_eq!(hashes, vec![None, new(&metas[1]), new(&metas[0])]);
}

#[tokio::test]
async fn database_from_a_newer_filesync_is_refused() {
    let db = TestDb::new();
    let s = db.open().await;
    sqlx::query("INSERT INTO schema_version (version, applied_at) VALUES (99, 0)").execute(&s.write).await.unwrap();
    s.close().await;
    match SqliteMeta::open(&db.path).await {
        Err(StoreError::Migrate(sqlx::migrate::MigrateError::VersionMissing(99))) => {}
        other => panic!("a schema newer than this build must be refused, got {other:?}"),
    }
}

#[tokio::test]
async fn unopenable_path_is_an_io_error_naming_it() {
    let db = TestDb::new();
    let bad = db.path.join("no-such-dir").join("meta.db");
    match SqliteMeta::open(&bad).await {
        Err(StoreError::Io { path, .. }) => assert!(path.contains("no-such-dir"), "{path}"),
        other => panic!("expected an I/O error naming the path, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_to_one_folder_get_distinct_revs() {
    let db = TestDb::new();
    let s = db.open().await;
    let (user, device, folder, metas) = account(&s, "alice", 200).await;
    let mut tasks = Vec::new();
    for t in 0..8 {
        let (s, device, metas) = (s.clone(), device.clone(), metas.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                let n = t * 25 + i;
                s.commit(user, folder.id, &device, &[put(&format!("t{t}/{i}"), &metas[n])], 0).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let all = s.changes_since(folder.id, 0, 1000).await.unwrap();
    let revs: Vec<u64> = all.iter().map(|e| e.rev).collect();
    assert_eq!(revs, (1..=200).collect::<Vec<_>>(), "every commit got its own rev, none lost");
    assert_eq!(s.folder(user, folder.id).await.unwrap().unwrap().seq, 200);
}

/// Another process (an admin command) writing the same file must not make commits fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_handles_on_one_file_serialize_their_commits() {
    let db = TestDb::new();
    let first = db.open().await;
    let (user, device, folder, metas) = account(&first, "alice", 100).await;
    let second = db.open().await;
    let mut tasks = Vec::new();
    for (k, s) in [first.clone(), second.clone()].into_iter().enumerate() {
        let (device, metas) = (device.clone(), metas.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..50 {
                let n = k * 50 + i;
                s.commit(user, folder.id, &device, &[put(&format!("{n}"), &metas[n])], 0).await.unwrap();
                s.touch_device(device.id, n as i64).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(second.folder(user, folder.id).await.unwrap().unwrap().seq, 100);
}

#[tokio::test]
async fn torn_chunk_list_is_reported_as_corrupt() {
    let s = SqliteMeta::memory().await.unwrap();
    let (user, device, folder, metas) = account(&s, "alice", 1).await;
    s.commit(user, folder.id, &device, &[put("a", &metas[0])], 0).await.unwrap();
    sqlx::query("UPDATE versions SET chunks = $1").bind(vec![0u8; 35]).execute(&s.write).await.unwrap();
    match s.current(folder.id, &RelPath::new("a").unwrap()).await {
        Err(StoreError::Corrupt(msg)) => assert!(msg.contains("35 bytes"), "{msg}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

/// Regression: one invalid row in `versions` made `changes_since` (and so `GetChanges`) fail
/// for the whole folder. Each kind of damage is skipped; the rows around it are served, and
/// the page still reaches the rows after it.
#[tokio::test]
async fn one_damaged_row_does_not_block_changes_of_the_folder() {
    let damage: [(&str, &str); 5] = [
        ("bad path", "UPDATE versions SET path = '../escape' WHERE rev = 2"),
        ("torn chunk list", "UPDATE versions SET chunks = x'0102' WHERE rev = 2"),
        ("negative size", "UPDATE versions SET size = -5 WHERE rev = 2"),
        ("unknown kind", "UPDATE versions SET kind = 7 WHERE rev = 2"),
        ("short hash", "UPDATE versions SET hash = x'00' WHERE rev = 2"),
    ];
    for (what, sql) in damage {
        let s = SqliteMeta::memory().await.unwrap();
        let (user, device, folder, metas) = account(&s, "alice", 4).await;
        for (i, m) in metas.iter().enumerate() {
            s.commit(user, folder.id, &device, &[put(&format!("f{i}"), m)], 0).await.unwrap();
        }
        sqlx::query(sql).execute(&s.write).await.unwrap();
        let revs = |v: Vec<EntryState>| v.iter().map(|e| e.rev).collect::<Vec<_>>();
        assert_eq!(revs(s.changes_since(folder.id, 0, 100).await.unwrap()), vec![1, 3, 4], "{what}");
        assert_eq!(revs(s.changes_since(folder.id, 1, 1).await.unwrap()), vec![3], "{what}: a page skips it");
        assert_eq!(revs(s.changes_since(folder.id, 0, 2).await.unwrap()), vec![1, 3], "{what}: limit counts served");
    }
}

/// The 10,000-file benchmark commits in batches of about 1000. Speed is measured by the
/// benchmark (`bench/`), not asserted here; this checks the batch is applied as one.
#[tokio::test]
async fn commit_of_1000_changes_in_one_batch() {
    let db = TestDb::new();
    let s = db.open().await;
    let (user, device, folder, metas) = account(&s, "alice", 1000).await;
    let changes: Vec<_> = metas.iter().enumerate().map(|(i, m)| put(&format!("dir{}/file{i}", i % 10), m)).collect();
    let start = Instant::now();
    let out = s.commit(user, folder.id, &device, &changes, 0).await.unwrap();
    let took = start.elapsed();
    eprintln!("commit of 1000 new files took {took:?}");
    assert_eq!(out.folder_seq, 1000);
    let edits: Vec<_> = changes.iter().map(|c| ProposedChange { base_rev: 0, meta: None, ..c.clone() }).collect();
    let start = Instant::now();
    s.commit(user, folder.id, &device, &edits, 0).await.unwrap();
    eprintln!("commit of 1000 conflicting deletes took {:?}", start.elapsed());
}
