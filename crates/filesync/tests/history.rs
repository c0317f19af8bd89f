//! The server's safety net end to end: `filesync history`, `restore`, `trash` and `usage`
//! with a real server and two real clients, compared byte for byte; and retention pruning and
//! chunk garbage collection on that server's data, driven with a clock 40 days ahead instead of
//! waiting.

mod support;

use filesync_server::maintenance::Maintenance;
use filesync_store::{ChunkStore, MetaStore, RetentionPolicy};
use std::sync::Arc;
use support::*;

const DAY: i64 = 24 * 3600;

fn arg(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

/// Runs prune and garbage collection once on a stopped server's data directory, as of `now`.
fn maintain(server: &TestServer, days: u32, now: i64) -> filesync_server::maintenance::MaintenanceReport {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (meta, chunks) = filesync_store::open_embedded(&server.data).await.unwrap();
        let meta: Arc<dyn MetaStore> = Arc::new(meta);
        let chunks: Arc<dyn ChunkStore> = Arc::new(chunks);
        Maintenance::new(meta, chunks, RetentionPolicy::days(days)).run_once(now).await.unwrap()
    })
}

fn unix_now() -> i64 {
    filesync_core::clock::Clock::now_unix(&filesync_core::clock::SystemClock)
}

#[test]
fn a_restore_brings_back_an_overwritten_version_byte_for_byte_on_every_computer() {
    let server = TestServer::start();
    let laptop = TestClient::register(&server, "ann", "laptop");
    let desktop = TestClient::login(&server, "ann", "desktop");
    let good = random_bytes(3 << 20, 7); // several chunks
    laptop.write("report.bin", &good);
    laptop.sync();
    desktop.sync();
    let mut bad = good.clone();
    bad[100..200].fill(0);
    bad.extend_from_slice(b"appended by mistake");
    desktop.write("report.bin", &bad);
    desktop.sync();
    laptop.sync();
    assert_eq!(laptop.read("report.bin"), bad);

    // Undo the last change from the laptop: no --version means "the version before".
    let out = laptop.ok(&["restore", arg(&laptop.path("report.bin"))], None);
    // Named by time and device, never by the server's revision numbers.
    assert!(out.contains("Restored report.bin to its version of") && out.contains("(from laptop)"), "{out}");
    assert!(!out.contains("version 1") && !out.contains("UTC"), "{out}");
    assert!(out.contains("synced"), "{out}");
    assert_eq!(laptop.read("report.bin"), good, "the laptop has it back at once");
    desktop.sync();
    assert_eq!(desktop.read("report.bin"), good, "and so does the desktop, byte for byte");
    assert_eq!(laptop.tree(), desktop.tree());
    assert!(conflict_copies(&laptop.tree()).is_empty());

    let history = laptop.json(&["history", arg(&laptop.path("report.bin")), "--json"]);
    let versions = history["versions"].as_array().unwrap();
    let seen: Vec<(u64, &str, bool)> = versions
        .iter()
        .map(|v| (v["rev"].as_u64().unwrap(), v["device"].as_str().unwrap(), v["current"].as_bool().unwrap()))
        .collect();
    assert_eq!(seen, vec![(3, "laptop", true), (2, "desktop", false), (1, "laptop", false)]);
    assert_eq!(versions[0]["hash"], versions[2]["hash"], "the restored version is version 1's content");
}

#[test]
fn a_deleted_file_comes_back_from_the_trash_on_every_computer() {
    let server = TestServer::start();
    let laptop = TestClient::register(&server, "ann", "laptop");
    let desktop = TestClient::login(&server, "ann", "desktop");
    laptop.write("photos/cat.jpg", random_bytes(300_000, 3));
    laptop.write("notes.txt", "keep me");
    laptop.sync();
    desktop.sync();
    std::fs::remove_file(desktop.path("photos/cat.jpg")).unwrap();
    desktop.sync();
    laptop.sync();
    assert!(!laptop.exists("photos/cat.jpg"));

    let listed = laptop.json(&["trash", "list", "--json"]);
    let items = listed.as_array().unwrap();
    assert_eq!(items.len(), 1, "{listed}");
    assert_eq!(items[0]["path"], "photos/cat.jpg");
    assert_eq!(items[0]["deleted_by"], "desktop");
    assert_eq!(items[0]["last_device"], "laptop");
    assert_eq!(items[0]["size"], 300_000);
    let text = laptop.ok(&["trash", "list", "docs"], None);
    assert!(text.contains("docs/photos/cat.jpg") && text.contains("desktop"), "{text}");
    let below = laptop.ok(&["trash", "list", arg(&laptop.path("photos"))], None);
    assert!(below.contains("cat.jpg"), "a directory inside a folder narrows the list: {below}");

    // Restoring a file that is not deleted is refused with the right advice.
    let err = laptop.fails(&["trash", "restore", arg(&laptop.path("notes.txt"))], None);
    assert!(err.contains("is not deleted") && err.contains("filesync restore"), "{err}");

    laptop.ok(&["trash", "restore", arg(&laptop.path("photos/cat.jpg"))], None);
    assert_eq!(laptop.read("photos/cat.jpg"), random_bytes(300_000, 3));
    desktop.sync();
    assert_eq!(desktop.read("photos/cat.jpg"), random_bytes(300_000, 3));
    assert_eq!(laptop.tree(), desktop.tree());
    assert_eq!(laptop.ok(&["trash", "list"], None).trim(), "The trash is empty.");
}

/// Regression: restoring a deleted folder from the trash brought back an empty folder, its
/// files still in the trash.
#[test]
fn a_deleted_folder_comes_back_with_its_files_and_deletions_made_together_restore_together() {
    let server = TestServer::start();
    let laptop = TestClient::register(&server, "ann", "laptop");
    let desktop = TestClient::login(&server, "ann", "desktop");
    laptop.write("box/a.txt", "a");
    laptop.write("box/b.txt", "b");
    laptop.write("box/sub/c.txt", "c");
    laptop.write("box/early.txt", "deleted before the folder");
    laptop.write("loose.txt", "loose");
    let copy = "x (conflicted copy from desktop 2026-11-30 101500).txt";
    laptop.write("x.txt", "x");
    laptop.write(copy, "the other x");
    laptop.sync();
    desktop.sync();
    // The laptop deletes one file of the folder, another file, and tidies a conflict away ...
    std::fs::remove_file(laptop.path("box/early.txt")).unwrap();
    std::fs::remove_file(laptop.path("loose.txt")).unwrap();
    std::fs::remove_file(laptop.path(copy)).unwrap();
    laptop.sync();
    desktop.sync();
    // ... then the desktop deletes the whole folder.
    std::fs::remove_dir_all(desktop.path("box")).unwrap();
    desktop.sync();
    laptop.sync();
    assert!(!laptop.exists("box"));

    let listed = laptop.json(&["trash", "list", "--json"]);
    let items = listed.as_array().unwrap();
    let group_of = |p: &str| items.iter().find(|i| i["path"] == p).map(|i| i["group"].as_u64().unwrap());
    for p in ["box", "box/a.txt", "box/b.txt", "box/sub", "box/sub/c.txt"] {
        assert_eq!(group_of(p), Some(1), "{p} was deleted with the folder: {listed}");
    }
    assert_eq!(group_of("box/early.txt"), Some(2), "{listed}");
    assert_eq!(group_of("loose.txt"), Some(2), "{listed}");
    assert_eq!(group_of(copy), None, "a conflict copy tidied away is no deletion: {listed}");
    let text = laptop.ok(&["trash", "list"], None);
    assert!(text.contains("1. 5 items deleted in docs on desktop"), "{text}");
    assert!(text.contains("docs/box  (folder, 4 item(s) in it"), "{text}");
    assert!(!text.contains("docs/box/a.txt"), "the folder stands for its files: {text}");
    // Part of the folder: its items only, the groups numbered as for the whole folder.
    let below = laptop.ok(&["trash", "list", arg(&laptop.path("box"))], None);
    assert!(below.contains("2. 1 item deleted in docs on laptop") && below.contains("docs/box/early.txt"), "{below}");
    assert!(!below.contains("loose.txt") && below.contains("restore-group N docs"), "{below}");

    let out = laptop.ok(&["trash", "restore", arg(&laptop.path("box"))], None);
    assert!(out.contains("Restored the folder box and the 4 item(s) that were in it"), "{out}");
    for c in [&laptop, &desktop] {
        c.sync();
        assert_eq!(c.read("box/a.txt"), b"a", "{}", c.name);
        assert_eq!(c.read("box/sub/c.txt"), b"c", "{}", c.name);
        assert!(!c.exists("box/early.txt"), "deleted on its own before, it stays in the trash");
    }

    // The laptop's earlier deletions, now group 1, come back together.
    let out = laptop.ok(&["trash", "restore-group", "1"], None);
    assert!(out.contains("Restored 2 item(s) of docs deleted on laptop"), "{out}");
    desktop.sync();
    assert_eq!(desktop.read("box/early.txt"), b"deleted before the folder");
    assert_eq!(desktop.read("loose.txt"), b"loose");
    assert!(!desktop.exists(copy), "the clean-up is not undone");
    assert_eq!(laptop.tree(), desktop.tree());
    let err = laptop.fails(&["trash", "restore-group", "1"], None);
    assert!(err.contains("no group 1"), "{err}");
}

#[test]
fn restore_to_a_new_path_keeps_the_current_version_and_never_overwrites_another_file() {
    let server = TestServer::start();
    let laptop = TestClient::register(&server, "ann", "laptop");
    let desktop = TestClient::login(&server, "ann", "desktop");
    laptop.write("plan.txt", "first plan");
    laptop.sync();
    laptop.write("plan.txt", "second plan");
    laptop.sync();
    laptop.write("plan.txt", "third plan");
    laptop.write("other.txt", "unrelated work");
    laptop.sync();
    let plan = laptop.path("plan.txt");

    // --to an existing file: refused, nothing changes.
    // Versions are numbered as `filesync history` lists them: #1 the newest, #3 the first plan.
    let err = laptop.fails(&["restore", arg(&plan), "--version", "3", "--to", arg(&laptop.path("other.txt"))], None);
    assert!(err.contains("other.txt already exists") && err.contains("--to"), "{err}");
    assert_eq!(laptop.read("other.txt"), b"unrelated work");
    // An explicit version to a new name, in a new directory.
    laptop.ok(&["restore", arg(&plan), "--version", "3", "--to", arg(&laptop.path("old/plan v1.txt"))], None);
    assert_eq!(laptop.read("old/plan v1.txt"), b"first plan");
    assert_eq!(laptop.read("plan.txt"), b"third plan", "the current version stays");
    desktop.sync();
    assert_eq!(desktop.read("old/plan v1.txt"), b"first plan");
    assert_eq!(laptop.tree(), desktop.tree());
    // A version that does not exist, and a path outside every linked folder.
    let err = laptop.fails(&["restore", arg(&plan), "--version", "99"], None);
    assert!(err.contains("has no version #99") && err.contains("filesync history"), "{err}");
    let outside = tempfile::tempdir().unwrap();
    let err = laptop.fails(&["history", arg(&outside.path().join("x.txt"))], None);
    assert!(err.contains("not inside a linked folder"), "{err}");
}

#[test]
fn history_lists_every_version_with_time_device_size_and_markers() {
    let server = TestServer::start();
    let laptop = TestClient::register(&server, "ann", "laptop");
    let desktop = TestClient::login(&server, "ann", "desktop");
    laptop.write("a.txt", "12345");
    laptop.sync();
    desktop.sync();
    desktop.write("a.txt", "1234567890");
    desktop.sync();
    std::fs::remove_file(desktop.path("a.txt")).unwrap();
    desktop.sync();
    // Relative to the current directory, for a file that no longer exists here.
    let mut cmd = desktop.command();
    cmd.current_dir(&desktop.dir).args(["history", "a.txt"]);
    let out = output_with_stdin(cmd, None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    // Numbered from the newest, in local time: no revision numbers, no UTC.
    let lines: Vec<&str> = text.lines().filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit())).collect();
    assert_eq!(lines.len(), 3, "{text}");
    for (i, l) in lines.iter().enumerate() {
        assert!(l.trim_start().starts_with(&format!("{}  20", i + 1)), "#{} then the date: {text}", i + 1);
    }
    assert!(!text.contains("UTC"), "{text}");
    assert!(lines[0].contains("desktop") && lines[0].contains("(deleted, current)"), "{text}");
    assert!(lines[1].contains("desktop") && lines[1].contains("10 B"), "{text}");
    assert!(lines[2].contains("laptop") && lines[2].contains("5 B"), "{text}");
    assert!(text.contains("brings back #2 (from desktop"), "{text}");
    let json = desktop.json(&["history", arg(&desktop.path("a.txt")), "--json"]);
    let revs: Vec<u64> = json["versions"].as_array().unwrap().iter().map(|v| v["rev"].as_u64().unwrap()).collect();
    assert_eq!(revs.len(), 3, "--json keeps every field, the revs too: {json}");
    let err = desktop.fails(&["history", arg(&desktop.path("never.txt"))], None);
    assert!(err.contains("no version of never.txt"), "{err}");

    let usage = desktop.json(&["usage", "--json"]);
    assert_eq!((usage["files_current"].as_u64(), usage["bytes_current"].as_u64()), (Some(0), Some(0)), "{usage}");
    assert_eq!(usage["bytes_history"].as_u64(), Some(15), "{usage}");
    assert_eq!(usage["bytes_stored"].as_u64(), Some(15), "{usage}");
    assert!(desktop.ok(&["usage"], None).contains("version history"));
}

#[test]
fn with_agents_running_a_restore_reaches_every_computer_by_push() {
    let server = TestServer::start();
    let laptop = TestClient::register(&server, "ann", "laptop");
    let desktop = TestClient::login(&server, "ann", "desktop");
    laptop.write("doc.txt", "the version to keep");
    laptop.sync();
    laptop.write("doc.txt", "a mistake");
    laptop.sync();
    desktop.sync();
    let _agents = (laptop.agent(), desktop.agent());
    let out = laptop.ok(&["restore", arg(&laptop.path("doc.txt"))], None);
    assert!(out.contains("the running agent syncs it"), "{out}");
    for c in [&laptop, &desktop] {
        wait_until(20, &format!("{} gets the restored version", c.name), || {
            std::fs::read(c.path("doc.txt")).is_ok_and(|d| d == b"the version to keep")
        });
    }
}

#[test]
fn retention_prunes_old_versions_and_gc_deletes_only_chunk_files_nothing_needs() {
    let mut server = TestServer::start_with(&["--retention-days", "30"]);
    let laptop = TestClient::register(&server, "ann", "laptop");
    laptop.write("big.bin", random_bytes(2 << 20, 1));
    laptop.write("trashed.bin", random_bytes(100_000, 2));
    laptop.write("kept.bin", random_bytes(100_000, 3));
    laptop.sync();
    laptop.write("big.bin", random_bytes(2 << 20, 4)); // the first version's chunks become history
    std::fs::remove_file(laptop.path("trashed.bin")).unwrap();
    laptop.sync();
    let files_before = server.chunk_files();
    let now = unix_now();

    // Within retention nothing goes, however far the clock runs inside it.
    server.kill();
    let report = maintain(&server, 30, now + 29 * DAY);
    assert_eq!((report.chunks_deleted, server.chunk_files()), (0, files_before), "{report:?}");
    server.restart();
    let listed = laptop.json(&["trash", "list", "--json"]);
    assert_eq!(listed.as_array().unwrap().len(), 1, "the trash still holds trashed.bin: {listed}");

    // 40 days on: the overwritten version and the trash entry are past retention.
    server.kill();
    let report = maintain(&server, 30, now + 40 * DAY);
    assert_eq!(report.prune.versions_removed, 2, "{report:?}");
    assert!(report.chunks_deleted >= 3, "old big.bin chunks and trashed.bin: {report:?}");
    assert_eq!(server.chunk_files(), files_before - report.chunks_deleted as usize);
    server.restart();

    let history = laptop.json(&["history", arg(&laptop.path("big.bin")), "--json"]);
    assert_eq!(history["versions"].as_array().unwrap().len(), 1, "only the current version is left: {history}");
    assert_eq!(laptop.ok(&["trash", "list"], None).trim(), "The trash is empty.");
    // Every live version is intact: a new computer gets everything byte for byte.
    let fresh = TestClient::login(&server, "ann", "new computer");
    fresh.sync();
    assert_eq!(fresh.tree(), laptop.tree());
    assert_eq!(fresh.read("big.bin"), random_bytes(2 << 20, 4));
    assert_eq!(fresh.read("kept.bin"), random_bytes(100_000, 3));
}
