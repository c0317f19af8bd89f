//! Runs the backend-agnostic conformance suites against the embedded stores: [`SqliteMeta`]
//! in memory and on disk, and [`LocalChunks`] in a temporary directory.

use filesync_store::conformance::{run_chunk_suite, run_meta_suite};
use filesync_store::open_embedded;
use filesync_store::sqlite::SqliteMeta;

#[tokio::test]
async fn sqlite_in_memory_conforms() {
    let store = SqliteMeta::memory().await.expect("in-memory database");
    run_meta_suite(&store).await;
}

#[tokio::test]
async fn embedded_stores_in_a_data_dir_conform() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("server-data");
    let (meta, chunks) = open_embedded(&data_dir).await.expect("open the embedded stores");
    assert!(data_dir.join("meta.db").is_file(), "metadata lives in <data dir>/meta.db");
    assert_eq!(chunks.root(), data_dir.join("chunks"), "chunks live in <data dir>/chunks");
    run_meta_suite(&meta).await;
    run_chunk_suite(&chunks).await;
    meta.close().await;
}
