//! End-to-end: what the server stores stays what was uploaded, and damage to it is contained
//! and healed. A real server process and real clients on 127.0.0.1.

mod support;

use support::*;

/// The server's file for the chunk with these bytes (a file under 256 KiB is one chunk), for
/// the first user registered.
fn chunk_file(server: &TestServer, content: &[u8]) -> std::path::PathBuf {
    let hex = blake3::hash(content).to_hex().to_string();
    server.data.join("chunks").join("1").join(&hex[..2]).join(&hex)
}

/// Regression: after one byte of one stored chunk was flipped, a fresh device got none of 20
/// unrelated files ("internal server error"), and the device that still had the file never
/// sent it again because the server kept saying it had the chunk. Now the fresh device gets
/// every other file at once, the owner's next walk of the folder sends the lost chunk again,
/// and then the fresh device gets that file too.
#[test]
fn a_damaged_chunk_on_the_server_blocks_no_other_file_and_is_healed_by_the_owner() {
    let server = TestServer::start();
    let a = TestClient::register(&server, "ann", "laptop");
    for i in 0..20 {
        a.write(&format!("docs/file{i:02}.txt"), format!("unrelated file number {i}"));
    }
    let precious = b"the only file whose chunk the server's disk damages".to_vec();
    a.write("docs/precious.txt", &precious);
    a.sync();
    let file = chunk_file(&server, &precious);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[7] ^= 0x01;
    std::fs::write(&file, &bytes).unwrap();

    let b = TestClient::login(&server, "ann", "desktop");
    let out = b.run(&["sync", "--json"], None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let folder = &report["folders"][0];
    for i in 0..20 {
        assert_eq!(b.read(&format!("docs/file{i:02}.txt")), format!("unrelated file number {i}").as_bytes());
    }
    assert!(!b.exists("docs/precious.txt"), "never a wrong or partial file");
    let errors = folder["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{folder}");
    assert_eq!(errors[0]["path"], "docs/precious.txt", "{folder}");
    let reason = errors[0]["reason"].as_str().unwrap();
    assert!(reason.contains("uploaded it again") && !reason.contains("internal server error"), "{reason}");

    // The laptop's next walk of the folder finds the server lacking a chunk of a file it holds.
    a.sync();
    b.sync();
    assert_eq!(b.read("docs/precious.txt"), precious);
    assert_eq!(a.tree(), b.tree());
}

/// Regression: a path valid on the wire (up to 4 KB) but too long for other computers was
/// committed, and they failed on it on every pass. Such a path is now never uploaded: the
/// computer that has it reports it per file (the server would refuse the commit), and
/// everything else syncs.
#[test]
fn a_local_path_too_long_to_sync_is_reported_and_the_rest_syncs() {
    let server = TestServer::start();
    let a = TestClient::register(&server, "ann", "laptop");
    let dirs = vec!["d".repeat(250); 4].join("/");
    let long = format!("{dirs}/{}.txt", "f".repeat(100));
    a.write(&long, "deep");
    a.write("ok.txt", "fine");
    let report = a.sync_report();
    assert_eq!(report["uploaded"], 5, "ok.txt and the four directories: {report}");
    let skipped = report["skipped"].as_array().unwrap();
    let reason = skipped.iter().find(|s| s["path"] == long.as_str()).unwrap_or_else(|| panic!("{report}"))["reason"]
        .as_str()
        .unwrap();
    assert!(reason.contains("1108 bytes long") && reason.contains("at most 1024 bytes"), "{reason}");
    a.sync(); // and again: no pass fails on it

    let b = TestClient::login(&server, "ann", "desktop");
    b.sync();
    assert_eq!(b.read("ok.txt"), b"fine");
    assert!(b.exists(&dirs) && !b.exists(&long), "the file at the long path never reached the server");
}

/// Regression: a device named in decomposed Unicode (`Cafe` + U+0301) crashed its client at its
/// first conflict ("conflict name is valid"). The server stores names composed, whatever a
/// client sends (here one that does not normalize, like clients before the fix), and the
/// device makes its conflict copy under the composed name.
#[test]
fn a_device_named_in_decomposed_unicode_makes_conflict_copies_without_panicking() {
    let server = TestServer::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let session = runtime.block_on(async {
        let trust = filesync_client::Trust::Pinned(server.fingerprint.clone());
        let old = filesync_client::Connection::connect(&server.addr, trust).await.unwrap();
        old.register("ann", PASSWORD, "Cafe\u{301} old").await.unwrap()
    });
    assert_eq!(session.device_name, "Caf\u{e9} old");

    let a = TestClient::login(&server, "ann", "Cafe\u{301}");
    let b = TestClient::login(&server, "ann", "desktop");
    let names = b.ok(&["devices", "list", "--json"], None);
    assert!(names.contains("Caf\u{e9} old") && !names.contains("e\u{301}"), "{names}");
    a.write("notes.txt", "original");
    a.sync();
    b.sync();
    a.write("notes.txt", "the café's version");
    b.write("notes.txt", "the desktop's version");
    b.sync();
    a.sync(); // the café loses the race: its version becomes a conflict copy
    b.sync();
    assert_eq!(a.tree(), b.tree());
    let copies = conflict_copies(&a.tree());
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert!(copies[0].starts_with("notes (conflicted copy from Caf\u{e9} "), "{copies:?}");
    assert_eq!(a.read(&copies[0]), b"the caf\xc3\xa9's version");
}
