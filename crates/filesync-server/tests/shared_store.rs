//! Several server instances on one PostgreSQL database and one chunk store (issue 10): an
//! in-process server (instance A) with real clients over TLS on 127.0.0.1, and a second handle
//! on the same database and chunk directory playing instance B's maintenance. Checks that an
//! upload on A meets a sweep on B at the user's chunk lock, that a sweep on B keeps A's
//! uploaded-but-uncommitted chunks so that A's commit succeeds, and that maintenance runs on
//! one instance at a time. Skipped when PostgreSQL cannot be reached, unless
//! `FILESYNC_REQUIRE_PG` is set (as CI does).

mod support;

use filesync_proto::CommitChange;
use filesync_server::maintenance::{GC_GRACE, Maintenance};
use filesync_store::pg::testing::TempDatabase;
use filesync_store::pg::{PgConfig, PgMeta};
use filesync_store::{ChunkLock, MetaStore, RetentionPolicy};
use std::sync::Arc;
use std::time::Duration;
use support::*;

fn unix_now() -> i64 {
    filesync_core::clock::Clock::now_unix(&filesync_core::clock::SystemClock)
}

/// Instance A (a running server on `db`), and instance B's store and maintenance, sharing A's
/// chunk directory.
async fn two_instances(db: &TempDatabase) -> (TestServer, PgMeta, Maintenance) {
    let url = db.url.clone();
    let a = start_with(move |c| {
        c.database = Some(PgConfig { url, password: None });
    })
    .await;
    let b = db.open().await;
    let chunks = Arc::new(filesync_store::open_local_chunks(&a.data).unwrap());
    let maintenance = Maintenance::new(Arc::new(b.clone()), chunks, RetentionPolicy::days(30));
    (a, b, maintenance)
}

/// Advisory locks someone waits for, in the test's database.
async fn waiting_locks(db: &TempDatabase) -> i64 {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database \
         WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = current_database()",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_on_one_instance_waits_while_another_instance_sweeps_that_user() {
    let Some(db) = TempDatabase::create() else { return };
    let (a, b, _) = two_instances(&db).await;
    let c = a.connect().await;
    c.register("ann", "password123", "laptop").await.unwrap();
    let user = b.user_by_name("ann").await.unwrap().unwrap().id;
    let (_, chunks) = file_entry("a.bin", b"bytes a sweep must not race");

    let sweep = b.lock_chunks(user, ChunkLock::Sweep).await.unwrap();
    let upload = tokio::spawn(async move {
        c.put_chunks(chunks).await.unwrap();
        c
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while waiting_locks(&db).await == 0 {
        assert!(tokio::time::Instant::now() < deadline, "the PutChunks on A waits for B's sweep");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!upload.is_finished());
    sweep.release().await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), upload).await.expect("the upload goes on once B is done").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_on_another_instance_keeps_uploaded_uncommitted_chunks_and_the_commit_succeeds() {
    let Some(db) = TempDatabase::create() else { return };
    let (a, _b, on_b) = two_instances(&db).await;
    let c = a.connect().await;
    c.register("bea", "password123", "laptop").await.unwrap();
    let folder = c.open_folder("docs", true).await.unwrap();
    let data = vec![42u8; 300_000];
    let (entry, chunks) = file_entry("big.bin", &data);
    let hashes: Vec<_> = chunks.iter().map(|(h, _)| *h).collect();
    c.put_chunks(chunks).await.unwrap();

    let report = on_b.run_once(unix_now()).await.unwrap();
    assert!(!report.skipped);
    assert_eq!(report.chunks_deleted, 0, "uploaded, not yet committed, and kept: {report:?}");
    let r = c.commit(folder.id, vec![CommitChange { base_rev: 0, entry: Some(entry) }]).await.unwrap();
    assert!(r.outcomes[0].accepted, "A's commit succeeds");
    let report = on_b.run_once(unix_now() + 2 * GC_GRACE).await.unwrap();
    assert_eq!(report.chunks_deleted, 0, "committed chunks are never garbage: {report:?}");
    assert_eq!(c.get_chunks(&hashes).await.unwrap().concat(), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_runs_on_one_instance_at_a_time() {
    let Some(db) = TempDatabase::create() else { return };
    let (a, b, on_b) = two_instances(&db).await;
    // B is running maintenance (holds the lease): A's run does nothing.
    let lease = b.try_lock_maintenance().await.unwrap().expect("the lease is free");
    let report = a.maintenance.run_once(unix_now()).await.unwrap();
    assert!(report.skipped, "A skips while B runs: {report:?}");
    lease.release().await.unwrap();
    assert!(!a.maintenance.run_once(unix_now()).await.unwrap().skipped, "A runs once B is done");
    // And the other way round.
    let lease = a_store(&db).await.try_lock_maintenance().await.unwrap().expect("free again");
    assert!(on_b.run_once(unix_now()).await.unwrap().skipped, "B skips while someone else runs");
    lease.release().await.unwrap();
    assert!(!on_b.run_once(unix_now()).await.unwrap().skipped);
}

/// Another handle on the database, as a third instance would have.
async fn a_store(db: &TempDatabase) -> PgMeta {
    db.open().await
}
