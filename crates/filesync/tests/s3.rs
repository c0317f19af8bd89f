//! A real `filesync server` keeping file contents in an S3-compatible bucket (a real
//! `moto_server` on loopback, see `filesync_store::s3::testing`), with two real clients.
//! Skipped when moto is not installed, unless `FILESYNC_REQUIRE_S3` is set (as CI does).
#![allow(clippy::disallowed_methods, reason = "a cross-process test: it runs real `filesync` processes")]
#![cfg(unix)]

mod support;

use filesync_store::s3::testing::Moto;
use support::*;

#[test]
fn a_server_that_keeps_contents_in_s3_syncs_two_computers_and_stores_nothing_on_its_disk() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("filesync");
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(&strs(&s3_options(&moto, "s3://filesync/acme", tmp.path())));
    let a = TestClient::register(&server, "ann", "laptop");
    let b = TestClient::login(&server, "ann", "desktop");
    let big = random_bytes(5 << 20, 7);
    a.write("photos/big.raw", &big);
    a.write("notes.txt", "kept in a bucket");
    a.sync();
    b.sync();
    assert_eq!(a.tree(), b.tree());
    assert_eq!(b.read("photos/big.raw"), big);
    assert_eq!(server.chunk_files(), 0, "no chunk is kept on the server's disk");
    // An edit, and a move that sends nothing new.
    a.write("notes.txt", "edited, still in a bucket");
    std::fs::rename(a.path("photos/big.raw"), a.path("big.raw")).unwrap();
    a.sync();
    b.sync();
    assert_eq!(a.tree(), b.tree());
    assert_eq!(b.read("notes.txt"), b"edited, still in a bucket");
}

#[test]
fn a_bucket_that_cannot_be_reached_stops_the_server_with_a_clear_message() {
    let Some(moto) = Moto::start() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(bin())
        .args(["server", "--listen", "127.0.0.1:0", "--data"])
        .arg(tmp.path().join("data"))
        .args(["--store", "s3://nowhere", "--s3-endpoint", &moto.endpoint, "--s3-path-style"])
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "y")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("s3://nowhere/") && err.contains("check the bucket"), "{err}");
}
