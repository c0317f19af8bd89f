//! A real `filesync server` keeping its metadata in PostgreSQL (a database of its own on the
//! test server, see `filesync_store::pg::testing`), with file contents on its disk or in an
//! S3-compatible bucket (a real `moto_server`), and two real clients syncing both ways; and a
//! single-machine server moved there by `filesync server migrate`, its clients syncing on.
//! Skipped when PostgreSQL cannot be reached, unless `FILESYNC_REQUIRE_PG` is set (as CI
//! does); the S3 case also needs moto (`FILESYNC_REQUIRE_S3`).
#![allow(clippy::disallowed_methods, reason = "a cross-process test: it runs real `filesync` processes")]
#![cfg(unix)]

mod support;

use filesync_store::pg::testing::TempDatabase;
use filesync_store::s3::testing::Moto;
use std::process::Command;
use support::*;

fn arg(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

/// `postgres://user:password@rest` → (`postgres://user@rest`, password).
fn split_password(url: &str) -> (String, String) {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (userinfo, host) = rest.split_once('@').expect("the test server's URL names a user");
    let (user, password) = userinfo.split_once(':').expect("the test server's URL has a password");
    (format!("{scheme}://{user}@{host}"), password.to_owned())
}

/// Two computers edit one file in turn, each sees the other's edit, and the file's history on
/// the server holds both versions; a restore reaches the other computer too.
fn two_computers_sync_both_ways_and_keep_history(server: &TestServer) {
    let laptop = TestClient::register(server, "ann", "laptop");
    let desktop = TestClient::login(server, "ann", "desktop");
    let first = random_bytes(2 << 20, 11);
    laptop.write("report.bin", &first);
    laptop.write("docs/notes.txt", "from the laptop");
    laptop.sync();
    desktop.sync();
    assert_eq!(laptop.tree(), desktop.tree());
    assert_eq!(desktop.read("report.bin"), first);

    desktop.write("docs/notes.txt", "edited on the desktop");
    std::fs::remove_file(desktop.path("report.bin")).unwrap();
    desktop.sync();
    laptop.sync();
    assert_eq!(laptop.read("docs/notes.txt"), b"edited on the desktop");
    assert!(!laptop.exists("report.bin"), "the deletion reached the laptop");
    assert_eq!(laptop.tree(), desktop.tree());

    let history = laptop.json(&["history", arg(&laptop.path("docs/notes.txt")), "--json"]);
    let devices: Vec<&str> =
        history["versions"].as_array().unwrap().iter().map(|v| v["device"].as_str().unwrap()).collect();
    assert_eq!(devices, vec!["desktop", "laptop"], "both versions are kept, newest first: {history}");

    // The deleted file comes back from the trash, byte for byte, on both computers.
    let out = laptop.ok(&["restore", arg(&laptop.path("report.bin"))], None);
    assert!(out.contains("Restored report.bin"), "{out}");
    desktop.sync();
    assert_eq!(desktop.read("report.bin"), first);
    assert_eq!(laptop.tree(), desktop.tree());
    assert!(conflict_copies(&laptop.tree()).is_empty());
}

#[test]
fn a_server_on_postgres_and_its_disk_syncs_two_computers_both_ways() {
    let Some(db) = TempDatabase::create() else { return };
    let (url, password) = split_password(&db.url);
    let tmp = tempfile::tempdir().unwrap();
    let password_file = tmp.path().join("db-password");
    std::fs::write(&password_file, format!("{password}\n")).unwrap();
    let server = TestServer::start_with(&["--database", &url, "--database-password-file", arg(&password_file)]);
    two_computers_sync_both_ways_and_keep_history(&server);
    assert!(!server.data.join("meta.db").exists(), "no SQLite database beside PostgreSQL");
    assert!(server.chunk_files() > 0, "contents are on the server's disk");

    // `filesync server admin` reaches the same metadata, with the password from PGPASSWORD.
    let out = Command::new(bin())
        .args(["server", "admin", "--database", &url, "users", "--json"])
        .env("PGPASSWORD", &password)
        .env("FILESYNC_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let users: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(users[0]["name"], "ann");
    assert_eq!(users[0]["devices"], 2);
}

#[test]
fn a_server_on_postgres_and_s3_syncs_two_computers_both_ways() {
    let Some(db) = TempDatabase::create() else { return };
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("filesync");
    let tmp = tempfile::tempdir().unwrap();
    let s3 = s3_options(&moto, "s3://filesync/acme", tmp.path());
    let server = TestServer::start_with(&[&["--database", &db.url][..], &strs(&s3)].concat());
    two_computers_sync_both_ways_and_keep_history(&server);
    assert!(!server.data.join("meta.db").exists(), "no SQLite database beside PostgreSQL");
    assert_eq!(server.chunk_files(), 0, "no chunk is kept on the server's disk");
}

/// Two server instances on one database and one chunk store (a data directory both use, so
/// also one certificate): a device connected to one gets, by push, the commits a device
/// connected to the other makes — each commit's `NOTIFY` reaches the other instance, which
/// pushes it to its connections. Both agents are in sync before the edits, so nothing but a
/// push can bring them (the agents' own rescan is hourly).
#[test]
fn two_server_instances_on_one_database_push_each_others_commits() {
    let Some(db) = TempDatabase::create() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("shared");
    let one = TestServer::start_at(&data, "127.0.0.1:0", &["--database", &db.url]);
    let two = TestServer::start_at(&data, "127.0.0.1:0", &["--database", &db.url]);
    assert_eq!(one.fingerprint, two.fingerprint, "one certificate");
    let a = TestClient::register(&one, "ann", "laptop");
    let b = TestClient::login(&two, "ann", "desktop");
    let _ga = a.agent();
    let _gb = b.agent();
    for c in [&a, &b] {
        c.ok(&["status", "--wait", "--timeout", "30"], None);
    }
    a.write("pushed.txt", "from the laptop, through instance one");
    wait_until(20, "pushed.txt on the desktop", || {
        b.exists("pushed.txt") && b.read("pushed.txt") == b"from the laptop, through instance one"
    });
    b.write("reply/back.txt", "from the desktop, through instance two");
    wait_until(20, "the reply on the laptop", || {
        a.exists("reply/back.txt") && a.read("reply/back.txt") == b"from the desktop, through instance two"
    });
    std::fs::remove_file(a.path("pushed.txt")).unwrap();
    wait_until(20, "the deletion on the desktop", || !b.exists("pushed.txt"));
}

/// Two instances on PostgreSQL and S3 behind a TCP load balancer; the one a computer uploads a
/// big file through is killed (SIGKILL) in the middle of the upload. The computer reconnects
/// through the load balancer to the other instance and the upload completes there; the other
/// computer gets the whole file.
#[test]
fn an_instance_killed_mid_upload_leaves_the_upload_to_the_other() {
    let Some(db) = TempDatabase::create() else { return };
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("filesync");
    let tmp = tempfile::tempdir().unwrap();
    let s3 = s3_options(&moto, "s3://filesync/acme", tmp.path());
    let args = [&["--database", &db.url][..], &strs(&s3)].concat();
    let data = tmp.path().join("shared");
    let mut one = TestServer::start_at(&data, "127.0.0.1:0", &args);
    let two = TestServer::start_at(&data, "127.0.0.1:0", &args);
    let lb = Failover::new(vec![one.addr.clone(), two.addr.clone()]);
    let a = TestClient::register(&one.reached_at(&lb.addr), "ann", "laptop");
    let b = TestClient::login(&two, "ann", "desktop");
    // Slow enough that the upload is still going when the instance dies.
    a.set("upload-limit", "4M");
    let _ga = a.agent();
    let _gb = b.agent();
    for c in [&a, &b] {
        c.ok(&["status", "--wait", "--timeout", "30"], None);
    }
    let big = random_bytes(24 << 20, 3);
    a.write("big.bin", &big);
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(!b.exists("big.bin"), "the upload was meant to be still going");
    one.kill();
    wait_until(120, "the whole file on the desktop", || b.exists("big.bin") && b.read("big.bin") == big);
}

#[test]
fn a_database_that_refuses_the_password_stops_the_server_with_a_clear_message() {
    let Some(db) = TempDatabase::create() else { return };
    let (url, _) = split_password(&db.url);
    let with_wrong = url.replacen('@', ":not-the-password@", 1);
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .args(["server", "--listen", "127.0.0.1:0", "--data"])
        .arg(tmp.path().join("data"))
        .args(["--database", &with_wrong])
        .env_remove("PGPASSWORD")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot connect to the metadata database at postgres://"), "{err}");
    assert!(!err.contains("not-the-password"), "the password must not be shown: {err}");
}

/// `filesync server migrate` with the given destination options; its stdout and stderr.
fn migrate(from: &std::path::Path, db: &TempDatabase, extra: &[&str]) -> std::process::Output {
    Command::new(bin())
        .args(["server", "migrate", "--from"])
        .arg(from)
        .args(["--database", &db.url])
        .args(extra)
        .env("FILESYNC_LOG", "warn")
        .output()
        .unwrap()
}

/// A single-machine server (SQLite and its chunk directory) with two computers syncing is
/// stopped, migrated to PostgreSQL with its chunks in a new directory, and started there on a
/// new data directory that holds only its certificate: both computers keep syncing, with their
/// logins and their history, and never log in again. A second `migrate` changes nothing; once
/// the new server has been used, a `migrate` is refused and changes nothing either.
#[test]
fn a_migrated_server_keeps_both_computers_syncing_without_logging_in_again() {
    let Some(db) = TempDatabase::create() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let chunks = tmp.path().join("new").join("chunks");
    let chunks_arg = ["--chunks", arg(&chunks)];
    migrate_and_keep_syncing(&db, &tmp, &chunks_arg, &[]);
    assert!(!walk_files(&chunks).is_empty(), "the chunks were copied into the new directory");
}

/// The same, with the chunks moved into an S3-compatible bucket (a real `moto_server`).
#[test]
fn a_server_migrated_to_postgres_and_s3_keeps_both_computers_syncing() {
    let Some(db) = TempDatabase::create() else { return };
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("moved");
    let tmp = tempfile::tempdir().unwrap();
    let s3 = s3_options(&moto, "s3://moved/prod", tmp.path());
    migrate_and_keep_syncing(&db, &tmp, &strs(&s3), &strs(&s3));
    assert!(walk_files(&tmp.path().join("new").join("chunks")).is_empty(), "no chunk on the new server's disk");
}

/// The scenario of the two tests above: `to` says where `migrate` puts the chunks, `serve` how
/// the new server (on `tmp/new`, holding only the old certificate) finds them.
fn migrate_and_keep_syncing(db: &TempDatabase, tmp: &tempfile::TempDir, to: &[&str], serve: &[&str]) {
    let old_data = tmp.path().join("old");
    let mut old = TestServer::start_at(&old_data, "127.0.0.1:0", &[]);
    let laptop = TestClient::register(&old, "ann", "laptop");
    let desktop = TestClient::login(&old, "ann", "desktop");
    let big = random_bytes(3 << 20, 5);
    laptop.write("big.bin", &big);
    laptop.write("notes.txt", "first");
    laptop.sync();
    desktop.sync();
    desktop.write("notes.txt", "second, from the desktop");
    desktop.sync();
    laptop.sync();
    assert_eq!(laptop.tree(), desktop.tree());
    let addr = old.addr.clone();
    old.kill();

    let out = migrate(&old_data, db, to);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("Migrated and verified") && stdout.contains("devices: 2 row(s)"), "{stdout}");
    let again = migrate(&old_data, db, to);
    let again_out = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success(), "{again_out}{}", String::from_utf8_lossy(&again.stderr));
    assert!(again_out.contains("Already migrated") && again_out.contains("0 copied"), "{again_out}");

    // The certificate goes with the server, as docs/deploy.md says.
    let new_data = tmp.path().join("new");
    std::fs::create_dir_all(&new_data).unwrap();
    for f in ["cert.pem", "key.pem"] {
        std::fs::copy(old_data.join(f), new_data.join(f)).unwrap();
    }
    let mut args = vec!["--database", db.url.as_str()];
    args.extend_from_slice(serve);
    let new = TestServer::start_at(&new_data, &addr, &args);
    assert_eq!(new.fingerprint, old.fingerprint, "the same certificate");

    laptop.write("after.txt", "written after the move");
    laptop.sync();
    desktop.sync();
    assert_eq!(desktop.read("after.txt"), b"written after the move");
    desktop.write("notes.txt", "third, after the move");
    desktop.sync();
    laptop.sync();
    assert_eq!(laptop.read("notes.txt"), b"third, after the move");
    assert_eq!(laptop.read("big.bin"), big);
    assert_eq!(laptop.tree(), desktop.tree());
    let history = laptop.json(&["history", arg(&laptop.path("notes.txt")), "--json"]);
    assert_eq!(history["versions"].as_array().unwrap().len(), 3, "history came along: {history}");

    // The new server wrote to the database since: migrating again is refused, and harmless.
    let refused = migrate(&old_data, db, to);
    let text = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && text.contains("migrate into an empty database"), "{text}");
    let out = Command::new(bin())
        .args(["server", "admin", "--database", &db.url, "devices", "ann", "--json"])
        .env("FILESYNC_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let devices: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(devices.as_array().unwrap().len(), 2, "the same two devices: {devices}");
}
