//! Runs the chunk-store conformance suite against [`S3Chunks`] talking to a real S3-compatible
//! server: `moto_server` (Python's moto, an S3 implementation that speaks the real HTTP API),
//! started here on a free loopback port. Skipped when `moto_server` is not installed, unless
//! `FILESYNC_REQUIRE_S3` is set (as CI does), which makes its absence a failure.

use filesync_store::ChunkStore;
use filesync_store::conformance::run_chunk_suite;
use filesync_store::s3::S3Chunks;
use filesync_store::s3::testing::Moto;

#[tokio::test]
async fn s3_chunks_conform() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("filesync-chunks");
    let store = S3Chunks::open(&moto.config("filesync-chunks", "server-1/chunks")).await.unwrap();
    run_chunk_suite(&store).await;
}

#[tokio::test]
async fn a_missing_bucket_is_reported_when_the_store_opens() {
    let Some(moto) = Moto::start() else { return };
    let err = S3Chunks::open(&moto.config("no-such-bucket", "")).await.unwrap_err().to_string();
    assert!(err.contains("s3://no-such-bucket/") && err.contains("check the bucket"), "{err}");
}

#[tokio::test]
async fn a_chunk_damaged_in_the_bucket_is_set_aside_and_reported() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("damage");
    let store = S3Chunks::open(&moto.config("damage", "")).await.unwrap();
    let data = bytes::Bytes::from_static(b"precious bytes");
    let hash = filesync_core::Hash::of(&data);
    store.put_many(7, &[(hash, data.clone())]).await.unwrap();
    // Overwrite the object behind the store's back, as bit rot or a careless operator would.
    let other = S3Chunks::open(&moto.config("damage", "")).await.unwrap();
    let evil = bytes::Bytes::from_static(b"precious bytez");
    // Same key: store the wrong bytes under the chunk's name through the trait, whose callers
    // verify hashes (this test plays a broken caller).
    other.put_many(7, &[(hash, evil)]).await.unwrap();
    assert!(store.get(7, &hash).await.is_err(), "a damaged chunk must not be served");
    assert_eq!(store.get(7, &hash).await.unwrap(), None, "it is set aside, so an upload can repair it");
    store.put_many(7, &[(hash, data.clone())]).await.unwrap();
    assert_eq!(store.get(7, &hash).await.unwrap(), Some(data));
}
