//! Runs the metadata conformance suite against [`PgMeta`] on a real PostgreSQL, each test in a
//! database of its own ([`TempDatabase`]), and checks what only a shared database can get
//! wrong: several instances migrating at once, writing one folder at once, and meeting at the
//! chunk lock and the maintenance lease. Skipped when PostgreSQL cannot be reached, unless
//! `FILESYNC_REQUIRE_PG` is set (as CI does).

use filesync_core::{ChunkRef, EntryKind, FileMeta, Hash, RelPath};
use filesync_store::conformance::run_meta_suite;
use filesync_store::pg::PgMeta;
use filesync_store::pg::testing::TempDatabase;
use filesync_store::{CommitNotice, Device, Folder, MetaStore, Notice, ProposedChange, StoreError, UserId};

#[tokio::test]
async fn postgres_conforms() {
    let Some(db) = TempDatabase::create() else { return };
    let store = db.open().await;
    run_meta_suite(&store).await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_starting_together_migrate_once() {
    let Some(db) = TempDatabase::create() else { return };
    let opens: Vec<_> = (0..6)
        .map(|_| {
            let url = db.url.clone();
            tokio::spawn(async move { PgMeta::connect(&url, None).await })
        })
        .collect();
    let mut stores = Vec::new();
    for open in opens {
        stores.push(open.await.unwrap().expect("every instance starts"));
    }
    for s in &stores {
        assert_eq!(s.schema_version().await.unwrap(), PgMeta::latest_schema_version());
    }
    // Each migration was applied once: its row is there once, and its `CREATE TABLE`s did not
    // fail for the instances that came second.
    let s = &stores[0];
    let user = s.create_user("alice", "h", 1).await.unwrap();
    assert_eq!(s.list_users().await.unwrap(), vec![user]);
    assert_eq!(s.admin_generation().await.unwrap(), 0, "admin_state was seeded once");
    for s in &stores {
        s.close().await;
    }
}

#[tokio::test]
async fn a_database_from_a_newer_filesync_is_refused() {
    let Some(db) = TempDatabase::create() else { return };
    let s = db.open().await;
    s.close().await;
    let newer = PgMeta::latest_schema_version() + 1;
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url).await.unwrap();
    sqlx::query("INSERT INTO schema_version (version, applied_at) VALUES ($1, 0)")
        .bind(newer)
        .execute(&mut conn)
        .await
        .unwrap();
    match PgMeta::connect(&db.url, None).await {
        Err(StoreError::Migrate(sqlx::migrate::MigrateError::VersionMissing(v))) if v == newer => {}
        other => panic!("a schema newer than this build must be refused, got {other:?}"),
    }
}

#[tokio::test]
async fn an_unreachable_database_is_named_without_its_password() {
    // Port 1 on loopback: nothing listens there.
    let err = PgMeta::connect("postgres://filesync:hunter2@127.0.0.1:1/meta", None).await.unwrap_err().to_string();
    assert!(err.contains("postgres://filesync@127.0.0.1:1/meta") && err.contains("check that PostgreSQL"), "{err}");
    assert!(!err.contains("hunter2"), "the password must not be shown: {err}");
    let err = PgMeta::connect("postgres://u:hunter2@[::1/db", None).await.unwrap_err().to_string();
    assert!(err.contains("not a valid PostgreSQL URL") && !err.contains("hunter2"), "{err}");
}

#[tokio::test]
async fn a_password_given_apart_from_the_url_is_used() {
    let Some(db) = TempDatabase::create() else { return };
    let Some((without, password)) = split_password(&db.url) else {
        eprintln!("skipped: the test server's URL has no password to move");
        return;
    };
    let s = PgMeta::connect(&without, Some(&password)).await.expect("the password is taken from the argument");
    s.close().await;
    // A password in the URL wins over one given apart.
    let s = PgMeta::connect(&db.url, Some("wrong")).await.expect("the URL's password is used");
    s.close().await;
    let err = PgMeta::connect(&without, Some("wrong")).await.unwrap_err().to_string();
    assert!(err.contains("cannot connect") && !err.contains("wrong"), "{err}");
}

/// `?sslmode=require` makes the store talk TLS (rustls) to PostgreSQL. Skipped when the test
/// server has TLS off.
#[tokio::test]
async fn tls_is_used_when_the_url_asks_for_it() {
    use sqlx::Connection;
    let Some(db) = TempDatabase::create() else { return };
    let with = |mode: &str| format!("{}{}sslmode={mode}", db.url, if db.url.contains('?') { '&' } else { '?' });
    let mut plain = sqlx::PgConnection::connect(&with("disable")).await.unwrap();
    let ssl: String = sqlx::query_scalar("SHOW ssl").fetch_one(&mut plain).await.unwrap();
    if ssl != "on" {
        eprintln!("skipped: the test PostgreSQL has TLS off");
        return;
    }
    let url = with("require");
    let store = PgMeta::connect(&url, None).await.expect("a TLS connection");
    store.create_user("erin", "h", 1).await.unwrap();
    store.close().await;
    let mut tls = sqlx::PgConnection::connect(&url).await.unwrap();
    let on: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&mut tls)
        .await
        .unwrap();
    assert!(on, "sslmode=require gives a TLS connection");
    let off: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&mut plain)
        .await
        .unwrap();
    assert!(!off, "and sslmode=disable does not (so the check above means something)");
}

/// Two server instances (two pools) committing to one folder at once take turns: every rev is
/// handed out once and none is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_committing_to_one_folder_get_distinct_revs() {
    let Some(db) = TempDatabase::create() else { return };
    let first = db.open().await;
    let second = db.open().await;
    let (user, device, folder, metas) = account(&first, "alice", 120).await;
    let mut tasks = Vec::new();
    for (k, s) in [first.clone(), second.clone(), first.clone(), second.clone()].into_iter().enumerate() {
        let (device, metas) = (device.clone(), metas.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..30 {
                let n = k * 30 + i;
                s.commit(user, folder.id, &device, &[put(&format!("{n}"), &metas[n])], 0).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let revs: Vec<u64> = second.changes_since(folder.id, 0, 1000).await.unwrap().iter().map(|e| e.rev).collect();
    assert_eq!(revs, (1..=120).collect::<Vec<_>>(), "every commit got its own rev, none lost");
    assert_eq!(first.folder(user, folder.id).await.unwrap().unwrap().seq, 120);
}

/// Two instances editing the same path from the same base: exactly one wins, the other is told
/// of the conflict — never two versions both based on the same rev.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_edits_of_one_path_on_two_instances_conflict_once() {
    let Some(db) = TempDatabase::create() else { return };
    let first = db.open().await;
    let second = db.open().await;
    let (user, device, folder, metas) = account(&first, "bob", 41).await;
    let base = first.commit(user, folder.id, &device, &[put("doc", &metas[0])], 0).await.unwrap().folder_seq;
    for round in 0..20 {
        let current = first.current(folder.id, &RelPath::new("doc").unwrap()).await.unwrap().unwrap().rev;
        let edit = |m: &FileMeta| ProposedChange { base_rev: current, ..put("doc", m) };
        let (a, b) = (edit(&metas[1 + 2 * round]), edit(&metas[2 + 2 * round]));
        let (s1, s2, d1, d2) = (first.clone(), second.clone(), device.clone(), device.clone());
        let one = tokio::spawn(async move { s1.commit(user, folder.id, &d1, &[a], 0).await.unwrap() });
        let two = tokio::spawn(async move { s2.commit(user, folder.id, &d2, &[b], 0).await.unwrap() });
        let (one, two) = (one.await.unwrap(), two.await.unwrap());
        let accepted =
            [&one, &two].iter().filter(|o| matches!(o.outcomes[0], filesync_store::Outcome::Accepted(_))).count();
        assert_eq!(accepted, 1, "round {round}: exactly one edit wins: {one:?} {two:?}");
    }
    let seq = first.folder(user, folder.id).await.unwrap().unwrap().seq;
    assert_eq!(seq, base + 20, "one new version per round");
}

/// Uploads of overlapping chunk sets from two instances at once neither deadlock nor fail, and
/// two instances creating one folder at once get the same folder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_uploads_and_folder_creation_on_two_instances() {
    let Some(db) = TempDatabase::create() else { return };
    let first = db.open().await;
    let second = db.open().await;
    let user = first.create_user("carol", "h", 1).await.unwrap().id;
    let hashes: Vec<(Hash, u32)> = (0..400).map(|i: u32| (Hash::of(&i.to_le_bytes()), 10)).collect();
    let mut tasks = Vec::new();
    for (k, s) in [first.clone(), second.clone(), first.clone(), second.clone()].into_iter().enumerate() {
        let mut mine = hashes.clone();
        mine.rotate_left(k * 97);
        if k % 2 == 1 {
            mine.reverse();
        }
        tasks.push(tokio::spawn(async move {
            s.add_chunks(user, &mine).await.unwrap();
            s.folder_by_name(user, "shared", true).await.unwrap().unwrap()
        }));
    }
    let mut folders = Vec::new();
    for t in tasks {
        folders.push(t.await.unwrap());
    }
    assert!(folders.windows(2).all(|w| w[0] == w[1]), "one folder: {folders:?}");
    let all: Vec<Hash> = hashes.iter().map(|(h, _)| *h).collect();
    assert!(second.missing_chunks(user, &all).await.unwrap().is_empty());
    assert_eq!(second.stored_bytes(user).await.unwrap(), 4000, "each chunk counted once");
}

/// Each commit transaction notifies every instance once, when it commits: a commit refused as a
/// whole (a missing chunk) and a commit that changes nothing send nothing.
#[tokio::test]
async fn commits_on_one_instance_are_noticed_by_another() {
    let Some(db) = TempDatabase::create() else { return };
    let first = db.open().await;
    let second = db.open().await;
    let mut notices = second.commit_notices().await.unwrap().expect("PostgreSQL tells of commits");
    let (user, device, folder, metas) = account(&first, "dan", 3).await;
    first.commit(user, folder.id, &device, &[put("a", &metas[0]), put("b", &metas[1])], 0).await.unwrap();
    assert_eq!(next(&mut notices).await, Some(CommitNotice { user, folder: folder.id, seq: 2 }), "one per transaction");

    let mut unknown = metas[2].clone();
    unknown.chunks[0].hash = Hash::of(b"never uploaded");
    assert!(first.commit(user, folder.id, &device, &[put("c", &unknown)], 0).await.is_err());
    first.commit(user, folder.id, &device, &[put("a", &metas[0])], 0).await.unwrap(); // already current
    second.commit(user, folder.id, &device, &[put("c", &metas[2])], 0).await.unwrap();
    assert_eq!(
        next(&mut notices).await,
        Some(CommitNotice { user, folder: folder.id, seq: 3 }),
        "nothing for a rolled-back or empty commit; a commit of this instance is noticed too"
    );
    first
        .restore(user, folder.id, &device, &RelPath::new("a").unwrap(), 1, Some(&RelPath::new("copy").unwrap()), 0)
        .await
        .unwrap();
    assert_eq!(next(&mut notices).await, Some(CommitNotice { user, folder: folder.id, seq: 4 }), "restores too");
}

/// The next commit notice, waiting at most ten seconds.
async fn next(notices: &mut futures::stream::BoxStream<'static, Notice>) -> Option<CommitNotice> {
    match next_notice(notices).await {
        Some(Notice::Commit(c)) => Some(c),
        other => panic!("expected a commit notice, got {other:?}"),
    }
}

async fn next_notice(notices: &mut futures::stream::BoxStream<'static, Notice>) -> Option<Notice> {
    use futures::StreamExt;
    tokio::time::timeout(std::time::Duration::from_secs(10), notices.next()).await.expect("a notice in time")
}

/// The connection that listens for commits dies (terminated by the database, as a restart or
/// a network cut would): the stream listens again on a new connection and says notices may
/// have been missed — the server then has every device pull — and later commits are noticed.
#[tokio::test]
async fn a_lost_listening_connection_says_notices_may_be_missed_and_listens_again() {
    let Some(db) = TempDatabase::create() else { return };
    let first = db.open().await;
    let second = db.open().await;
    let mut notices = second.commit_notices().await.unwrap().expect("PostgreSQL tells of commits");
    let (user, device, folder, metas) = account(&first, "eve", 3).await;
    first.commit(user, folder.id, &device, &[put("a", &metas[0])], 0).await.unwrap();
    assert_eq!(next(&mut notices).await, Some(CommitNotice { user, folder: folder.id, seq: 1 }));

    let admin = sqlx::PgPool::connect(&db.url).await.unwrap();
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN%' AND datname = current_database()",
    )
    .fetch_all(&admin)
    .await
    .unwrap();
    assert_eq!(killed, [true], "one listening connection");
    // Committed while nobody listens: this notice is lost, and the stream says so instead.
    first.commit(user, folder.id, &device, &[put("b", &metas[1])], 0).await.unwrap();
    assert_eq!(next_notice(&mut notices).await, Some(Notice::MayHaveMissed));
    first.commit(user, folder.id, &device, &[put("c", &metas[2])], 0).await.unwrap();
    assert_eq!(next(&mut notices).await, Some(CommitNotice { user, folder: folder.id, seq: 3 }));
}

/// A user with a device and a folder, and `n` stored one-chunk files ready to commit.
async fn account(s: &PgMeta, name: &str, n: usize) -> (UserId, Device, Folder, Vec<FileMeta>) {
    let user = s.create_user(name, "h", 1).await.unwrap();
    let device = s.create_device(user.id, "d", &Hash::of(name.as_bytes()).0, 1).await.unwrap();
    let folder = s.folder_by_name(user.id, "f", true).await.unwrap().unwrap();
    let metas: Vec<FileMeta> = (0..n)
        .map(|i| {
            let chunk = Hash::of(format!("{name} {i}").as_bytes());
            let chunks = vec![ChunkRef { hash: chunk, len: 10 }];
            FileMeta {
                kind: EntryKind::File,
                size: 10,
                mtime_ns: i as i64,
                executable: false,
                hash: filesync_core::file_hash(&chunks),
                chunks,
            }
        })
        .collect();
    let chunks: Vec<(Hash, u32)> = metas.iter().map(|m| (m.chunks[0].hash, 10)).collect();
    s.add_chunks(user.id, &chunks).await.unwrap();
    (user.id, device, folder, metas)
}

fn put(path: &str, meta: &FileMeta) -> ProposedChange {
    ProposedChange { path: RelPath::new(path).unwrap(), base_rev: 0, meta: Some(meta.clone()) }
}

/// `postgres://user:password@rest` → (`postgres://user@rest`, password).
fn split_password(url: &str) -> Option<(String, String)> {
    let (scheme, rest) = url.split_once("://")?;
    let (userinfo, host) = rest.split_once('@')?;
    let (user, password) = userinfo.split_once(':')?;
    Some((format!("{scheme}://{user}@{host}"), password.to_owned()))
}

/// Advisory locks waiting to be granted in the database: how a test knows that a session
/// waits for a lock another holds.
async fn waiting_locks(db: &TempDatabase) -> i64 {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let name: String = sqlx::query_scalar("SELECT current_database()").fetch_one(&mut conn).await.unwrap();
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database \
         WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = $1",
    )
    .bind(name)
    .fetch_one(&mut conn)
    .await
    .unwrap()
}

/// Waits (at most ten seconds) until a session waits for an advisory lock.
async fn until_a_lock_is_awaited(db: &TempDatabase, what: &str) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while waiting_locks(db).await == 0 {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// The race the chunk lock closes (issue 10): instance A has found a chunk's bytes present for
/// an upload and is about to record it, while instance B sweeps that chunk (old and
/// unreferenced until A's commit). B's sweep must wait for A's record, then spare the chunk,
/// and A's commit succeeds with the bytes still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_on_one_instance_spares_a_chunk_another_instance_is_uploading() {
    use filesync_store::localfs::LocalChunks;
    use filesync_store::{ChunkLock, ChunkStore};
    use std::sync::Arc;
    let Some(db) = TempDatabase::create() else { return };
    let (a, b) = (db.open().await, db.open().await);
    let dir = tempfile::tempdir().unwrap();
    let chunks = Arc::new(LocalChunks::open(dir.path().join("chunks")).unwrap());
    let (user, device, folder, metas) = account(&a, "eve", 1).await;
    let chunk = metas[0].chunks[0].hash;
    let bytes = bytes::Bytes::from_static(b"eve 0"); // what `account` hashed for it
    chunks.put_many(user, &[(chunk, bytes.clone())]).await.unwrap();
    // Uploaded long ago and never committed: garbage to any sweep.
    sqlx::query("UPDATE chunks SET added_at = 0").execute(&mut pg(&db).await).await.unwrap();
    let cutoff = 1_000;
    let sweep = b.unreferenced_chunks(user, cutoff).await.unwrap();
    assert_eq!(sweep.candidates, vec![(chunk, 10)], "marked as garbage");

    // A: the upload takes the lock and finds (or writes) the bytes…
    let upload = a.lock_chunks(user, ChunkLock::Upload).await.unwrap();
    chunks.put_many(user, &[(chunk, bytes)]).await.unwrap();
    // …while B sweeps, as maintenance does.
    let swept = {
        let (b, chunks) = (b.clone(), chunks.clone());
        tokio::spawn(async move {
            let lock = b.lock_chunks(user, ChunkLock::Sweep).await.unwrap();
            let gone = b.delete_chunks(&sweep, &[chunk]).await.unwrap();
            for (h, _) in &gone {
                chunks.delete(user, h).await.unwrap();
            }
            lock.release().await.unwrap();
            gone
        })
    };
    until_a_lock_is_awaited(&db, "the sweep on B waits for the upload on A").await;
    a.add_chunks(user, &[(chunk, 10)]).await.unwrap();
    upload.release().await.unwrap();
    assert_eq!(swept.await.unwrap(), vec![], "the chunk A just recorded is spared");
    assert!(chunks.get(user, &chunk).await.unwrap().is_some(), "its bytes are still there");
    let out = a.commit(user, folder.id, &device, &[put("f", &metas[0])], 0).await.unwrap();
    assert!(matches!(out.outcomes[0], filesync_store::Outcome::Accepted(_)), "A's commit succeeds: {out:?}");
}

/// An upload waits while a sweep on another instance holds the user's chunk lock; an upload
/// that gives up waiting (a cancelled request) leaves nothing held behind, and other users'
/// uploads never wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_wait_for_a_sweep_on_another_instance_and_a_cancelled_wait_holds_nothing() {
    use filesync_store::ChunkLock;
    use std::time::Duration;
    let Some(db) = TempDatabase::create() else { return };
    let (a, b) = (db.open().await, db.open().await);
    let sweep = b.lock_chunks(1, ChunkLock::Sweep).await.unwrap();
    let other_user = tokio::time::timeout(Duration::from_secs(10), a.lock_chunks(2, ChunkLock::Upload)).await;
    other_user.expect("another user's upload does not wait").unwrap().release().await.unwrap();
    let cancelled = tokio::time::timeout(Duration::from_millis(300), a.lock_chunks(1, ChunkLock::Upload)).await;
    assert!(cancelled.is_err(), "the upload waits for the sweep");
    sweep.release().await.unwrap();
    // The cancelled wait's session is closed, not pooled with a lock: a sweep gets it again.
    let again = tokio::time::timeout(Duration::from_secs(10), b.lock_chunks(1, ChunkLock::Sweep)).await;
    again.expect("no lock is left behind by the cancelled upload").unwrap().release().await.unwrap();
    for _ in 0..20 {
        // Uploads through A reuse its pooled lock connections: none of them holds a lock.
        let up = tokio::time::timeout(Duration::from_secs(10), a.lock_chunks(1, ChunkLock::Upload)).await;
        up.expect("uploads proceed").unwrap().release().await.unwrap();
    }
    let sweep = tokio::time::timeout(Duration::from_secs(10), b.lock_chunks(1, ChunkLock::Sweep)).await;
    sweep.expect("released uploads hold nothing").unwrap().release().await.unwrap();
}

/// The maintenance lease is held by one instance at a time, and an instance that dies holding
/// it (its connection gone) leaves it to the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_instance_at_a_time_holds_the_maintenance_lease() {
    let Some(db) = TempDatabase::create() else { return };
    let (a, b) = (db.open().await, db.open().await);
    let lease = a.try_lock_maintenance().await.unwrap().expect("free at first");
    assert!(b.try_lock_maintenance().await.unwrap().is_none(), "B may not run while A does");
    assert!(a.try_lock_maintenance().await.unwrap().is_none(), "nor a second run on A");
    lease.release().await.unwrap();
    let lease = b.try_lock_maintenance().await.unwrap().expect("B's turn once A is done");
    drop(lease); // as if B's run were cancelled mid-way
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(lease) = a.try_lock_maintenance().await.unwrap() {
            lease.release().await.unwrap();
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "a dropped lease is released with its connection");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// A connection of its own to the test database.
async fn pg(db: &TempDatabase) -> sqlx::PgConnection {
    use sqlx::Connection;
    sqlx::PgConnection::connect(&db.url).await.unwrap()
}

/// `copy::copy_server` (what `filesync server migrate` runs): everything a SQLite server holds
/// arrives in PostgreSQL with its ids, new rows get new ids, a second run writes nothing, and
/// a database used since is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_server_is_copied_into_postgres_and_a_second_copy_changes_nothing() {
    use filesync_store::ChunkStore;
    use filesync_store::copy::copy_server;
    use filesync_store::localfs::LocalChunks;
    use filesync_store::sqlite::SqliteMeta;
    let Some(db) = TempDatabase::create() else { return };
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteMeta::open(&dir.path().join("meta.db")).await.unwrap();
    let from_chunks = LocalChunks::open(dir.path().join("chunks")).unwrap();
    // Two accounts, one with a second device, a revoked device, a quota, an invite, history.
    let (ann, ann_device, folder, metas) = sqlite_account(&sqlite, &from_chunks, "ann", 3).await;
    let (bob, _, _, _) = sqlite_account(&sqlite, &from_chunks, "bob", 1).await;
    let second = sqlite.create_device(ann, "desktop", &[9; 32], 5).await.unwrap();
    sqlite.revoke_device(ann, second.id).await.unwrap();
    sqlite.set_quota(bob, Some(1 << 30)).await.unwrap();
    sqlite.create_invite(&[3; 32], 99, 1).await.unwrap();
    for (i, m) in metas.iter().enumerate() {
        let base = sqlite.current(folder.id, &RelPath::new("doc").unwrap()).await.unwrap().map_or(0, |e| e.rev);
        let change = ProposedChange { base_rev: base, ..put("doc", m) };
        sqlite.commit(ann, folder.id, &ann_device, &[change, put(&format!("f{i}"), m)], 10 + i as i64).await.unwrap();
    }
    let pg = db.open().await;
    let to_chunks = LocalChunks::open(dir.path().join("copied")).unwrap();
    let report = copy_server(&sqlite, &from_chunks, &pg, Some(&to_chunks), &|_| {}).await.unwrap();
    assert!(!report.already_copied);
    assert_eq!(report.chunks_copied, 4);
    assert_eq!(report.chunks_verified, 4);
    assert!(report.tables.contains(&("versions", 6)), "{report:?}");

    let ann_pg = pg.user_by_name("ann").await.unwrap().unwrap();
    assert_eq!(ann_pg, sqlite.user_by_id(ann).await.unwrap().unwrap(), "same id, password hash, flags");
    assert_eq!(pg.user_by_id(bob).await.unwrap().unwrap().quota, Some(1 << 30));
    let token = Hash::of(b"ann").0;
    assert_eq!(pg.device_by_token_hash(&token).await.unwrap(), Some(ann_device.clone()), "the token still works");
    assert!(pg.device(ann, second.id).await.unwrap().unwrap().revoked);
    assert_eq!(pg.admin_generation().await.unwrap(), sqlite.admin_generation().await.unwrap());
    assert_eq!(
        pg.changes_since(folder.id, 0, 100).await.unwrap(),
        sqlite.changes_since(folder.id, 0, 100).await.unwrap()
    );
    let doc = RelPath::new("doc").unwrap();
    assert_eq!(pg.versions(folder.id, &doc).await.unwrap().len(), 3, "history too");
    assert_eq!(pg.usage(ann).await.unwrap(), sqlite.usage(ann).await.unwrap());
    for m in &metas {
        assert!(to_chunks.get(ann, &m.chunks[0].hash).await.unwrap().is_some(), "chunk bytes copied");
    }
    // The next commit continues the folder's revs; new rows get ids past the copied ones.
    let next = pg.commit(ann, folder.id, &ann_device, &[put("new", &metas[0])], 99).await.unwrap();
    assert_eq!(next.folder_seq, 7);
    let carol = pg.create_user("carol", "h", 1).await.unwrap();
    assert!(carol.id > bob, "identity sequences were moved past the copied ids");

    // Once a server has used the database, a second copy refuses and changes nothing.
    let again = copy_server(&sqlite, &from_chunks, &pg, Some(&to_chunks), &|_| {}).await.unwrap_err().to_string();
    assert!(again.contains("migrate into an empty database"), "{again}");
    assert!(pg.user_by_name("carol").await.unwrap().is_some());

    // Into a fresh database: copy, then a second run only verifies.
    let Some(db2) = TempDatabase::create() else { return };
    let pg2 = db2.open().await;
    copy_server(&sqlite, &from_chunks, &pg2, None, &|_| {}).await.unwrap();
    let second = copy_server(&sqlite, &from_chunks, &pg2, None, &|_| {}).await.unwrap();
    assert!(second.already_copied && second.chunks_copied == 0, "{second:?}");
    assert_eq!(second.tables, report.tables);
}

/// A user on a SQLite store with a device (token hash = `Hash::of(name)`), a folder, and `n`
/// one-chunk files whose chunks are stored in `chunks`.
async fn sqlite_account(
    s: &filesync_store::sqlite::SqliteMeta,
    chunks: &filesync_store::localfs::LocalChunks,
    name: &str,
    n: usize,
) -> (UserId, Device, Folder, Vec<FileMeta>) {
    use filesync_store::ChunkStore;
    let user = s.create_user(name, "$argon2id$fake", 1).await.unwrap();
    let device = s.create_device(user.id, "laptop", &Hash::of(name.as_bytes()).0, 1).await.unwrap();
    let folder = s.folder_by_name(user.id, "docs", true).await.unwrap().unwrap();
    let mut metas = Vec::new();
    for i in 0..n {
        let data = bytes::Bytes::from(format!("{name} file {i}"));
        let chunk = ChunkRef { hash: Hash::of(&data), len: data.len() as u32 };
        chunks.put_many(user.id, &[(chunk.hash, data.clone())]).await.unwrap();
        s.add_chunks(user.id, &[(chunk.hash, chunk.len)]).await.unwrap();
        let list = vec![chunk];
        metas.push(FileMeta {
            kind: EntryKind::File,
            size: data.len() as u64,
            mtime_ns: i as i64,
            executable: false,
            hash: filesync_core::file_hash(&list),
            chunks: list,
        });
    }
    (user.id, device, folder, metas)
}
