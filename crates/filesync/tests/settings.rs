//! End-to-end tests of the per-folder settings and the mass-delete guard: a real server and
//! real clients, one test per setting (direction, ignore rules, selective sync, bandwidth,
//! pause, schedule) and for the guard.

mod support;

use std::time::Duration;
use support::*;
use tokio::time::Instant;

/// Two computers of one user with `docs` in sync, holding `files`.
fn pair(server: &TestServer, files: &[(&str, &str)]) -> (TestClient, TestClient) {
    let a = TestClient::register(server, "ann", "laptop");
    let b = TestClient::login(server, "ann", "desktop");
    for (p, d) in files {
        a.write(p, d);
    }
    a.sync();
    b.sync();
    (a, b)
}

fn skipped_reasons(report: &serde_json::Value) -> Vec<(String, String)> {
    report["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["path"].as_str().unwrap().to_string(), s["reason"].as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn an_upload_only_client_ignores_remote_edits_and_revert_restores_the_server() {
    let server = TestServer::start();
    let (a, b) = pair(&server, &[("doc.txt", "v1 from a")]);
    a.set("direction", "upload-only");

    b.write("doc.txt", "edited on b");
    b.write("from-b.txt", "new on b");
    b.sync();
    let rep = a.sync_report();
    assert_eq!(a.read("doc.txt"), b"v1 from a", "the remote edit is not applied");
    assert!(!a.exists("from-b.txt"), "a remote-only file is not downloaded");
    let skipped = skipped_reasons(&rep);
    assert!(skipped.contains(&("doc.txt".into(), "not downloaded (upload-only)".into())), "{skipped:?}");

    // Local changes still go up.
    a.write("mine.txt", "from a");
    a.sync();
    b.sync();
    assert_eq!(b.read("mine.txt"), b"from a");

    // Reverting needs a confirmation: none on a script without --yes.
    let out = a.fails(&["folder", "revert", "docs"], None);
    assert!(out.contains("--yes"), "{out}");
    let out = a.ok(&["folder", "revert", "docs", "--yes"], None);
    assert!(out.contains("revert remote"), "{out}");
    assert!(out.contains("1 file(s) or folder(s) uploaded") && out.contains("1 file(s) or folder(s) deleted"), "{out}");
    b.sync();
    assert_eq!(b.read("doc.txt"), b"v1 from a", "the server took this computer's version");
    assert!(!b.exists("from-b.txt"));
    assert_eq!(a.tree(), b.tree());
    // Nothing left to revert.
    assert!(a.ok(&["folder", "revert", "docs", "--yes"], None).contains("nothing to revert"));
}

#[test]
fn a_download_only_clients_local_edit_is_not_uploaded_and_can_be_reverted() {
    let server = TestServer::start();
    let (a, b) = pair(&server, &[("doc.txt", "v1 from a"), ("shared.txt", "s1")]);
    b.set("direction", "download-only");

    b.write("doc.txt", "edited on b");
    b.write("only-on-b.txt", "local only");
    let rep = b.sync_report();
    let skipped = skipped_reasons(&rep);
    assert!(skipped.contains(&("doc.txt".into(), "not uploaded (download-only)".into())), "{skipped:?}");
    assert!(skipped.contains(&("only-on-b.txt".into(), "not uploaded (download-only)".into())), "{skipped:?}");
    a.sync();
    assert_eq!(a.read("doc.txt"), b"v1 from a", "the local edit is not uploaded");
    assert!(!a.exists("only-on-b.txt"));

    // Remote changes still arrive; one meeting a local edit keeps the local one as a copy.
    a.write("from-a.txt", "new on a");
    a.write("shared.txt", "s2 from a");
    b.write("shared.txt", "s2 from b");
    a.sync();
    b.sync();
    assert_eq!(b.read("from-a.txt"), b"new on a");
    assert_eq!(b.read("shared.txt"), b"s2 from a");
    let copies = conflict_copies(&b.tree());
    assert_eq!(copies.len(), 1, "{:?}", b.tree());
    assert_eq!(b.read(&copies[0]), b"s2 from b", "the local edit is kept, never lost");
    a.sync();
    assert!(conflict_copies(&a.tree()).is_empty(), "the copy stays local");

    // Revert local: the server's state comes back, local-only files go.
    let out = b.ok(&["folder", "revert", "docs", "--yes"], None);
    assert!(out.contains("revert local"), "{out}");
    assert!(out.contains("1 local file(s) replaced"), "{out}");
    assert!(out.contains("2 local-only file(s) or folder(s) removed"), "{out}");
    assert_eq!(b.read("doc.txt"), b"v1 from a");
    assert!(!b.exists("only-on-b.txt"));
    assert_eq!(a.tree(), b.tree());
}

#[test]
fn a_filesyncignore_rule_keeps_a_file_local_and_an_ignored_remote_file_is_not_downloaded() {
    let server = TestServer::start();
    let a = TestClient::register(&server, "ann", "laptop");
    let b = TestClient::login(&server, "ann", "desktop");
    a.write("secret.txt", "a's secret, already on the server");
    a.sync();

    // b ignores *.log, build/ and secret.txt; its .filesyncignore syncs like any file.
    b.write(".filesyncignore", "*.log\nbuild/\nsecret.txt\n");
    b.write("app.log", "log");
    b.write("build/out.bin", "binary");
    b.write("keep.txt", "kept");
    b.write(".DS_Store", "finder junk");
    b.write("notes.txt.swp", "vim");
    b.sync();
    assert!(!b.exists("secret.txt"), "an ignored remote file is not downloaded");
    a.sync();
    assert_eq!(a.read("keep.txt"), b"kept");
    assert_eq!(a.read(".filesyncignore"), b"*.log\nbuild/\nsecret.txt\n");
    for local in ["app.log", "build", ".DS_Store", "notes.txt.swp"] {
        assert!(!a.exists(local), "{local} stayed on b");
        assert!(b.exists(local), "{local} is untouched on b");
    }
    // Now ignored on a too: its copy is neither deleted here nor on the server.
    a.write("secret.txt", "edited, stays here");
    a.sync();
    b.sync();
    assert_eq!(a.read("secret.txt"), b"edited, stays here");
    assert!(!b.exists("secret.txt"));
}

#[test]
fn excluding_a_subfolder_removes_the_local_copy_only_once_safe_and_including_brings_it_back() {
    let server = TestServer::start();
    let (a, b) = pair(&server, &[("doc.txt", "d"), ("photos/1.jpg", "one"), ("photos/sub/2.jpg", "two")]);
    // An edit not yet synced must reach the server before the local copy goes.
    b.write("photos/1.jpg", "one, edited on b");
    let out = b.set("exclude", "photos");
    assert!(out.contains("safely on the server"), "{out}");
    b.sync();
    assert!(!b.exists("photos"), "{:?}", b.tree());
    assert_eq!(b.read("doc.txt"), b"d");
    a.sync();
    assert_eq!(a.read("photos/1.jpg"), b"one, edited on b", "uploaded before it was removed");
    assert_eq!(a.read("photos/sub/2.jpg"), b"two", "excluding deletes nothing on the server");

    // New files in the excluded subfolder are not downloaded.
    a.write("photos/3.jpg", "three");
    a.sync();
    b.sync();
    assert!(!b.exists("photos"));

    b.set("include", "photos");
    b.sync();
    assert_eq!(b.read("photos/3.jpg"), b"three");
    assert_eq!(a.tree(), b.tree());
}

#[test]
fn a_bandwidth_limit_measurably_slows_a_transfer() {
    let server = TestServer::start();
    let (a, b) = pair(&server, &[]);
    let limit = 512 * 1024;
    let size = 1_280 * 1024; // 2.5 s at the limit
    let min = Duration::from_secs_f64(size as f64 / limit as f64 * 0.8);
    a.set("upload-limit", "512k");
    b.set("download-limit", "512k");
    let data = random_bytes(size, 7);
    a.write("big.bin", &data);
    let start = Instant::now();
    a.sync();
    let up = start.elapsed();
    assert!(up >= min, "upload took {up:?}, less than {min:?}");
    let start = Instant::now();
    b.sync();
    let down = start.elapsed();
    assert!(down >= min, "download took {down:?}, less than {min:?}");
    assert_eq!(b.read("big.bin"), data);
}

#[test]
fn pause_and_resume_on_a_running_agent() {
    let server = TestServer::start();
    let (a, b) = pair(&server, &[("doc.txt", "d")]);
    let _ga = a.agent();
    wait_until(30, "a's agent to sync", || a.folder_status()["state"] == "idle");
    a.ok(&["pause", "docs"], None);
    wait_until(30, "a to report paused", || a.folder_status()["state"] == "paused");
    let reason = a.folder_status()["paused_reason"].as_str().unwrap_or_default().to_string();
    assert_eq!(reason, "paused by you", "the reason speaks to every surface, without command syntax");
    // Regression: a paused folder said "the server has newer changes (revision 1 of 1)".
    let waiting = a.folder_status()["waiting"].to_string();
    assert!(!waiting.contains("newer"), "nothing is newer on the server: {waiting}");
    assert!(a.ok(&["status"], None).contains("to resume: `filesync resume docs`"));
    let shown = a.ok(&["folder", "show", "docs"], None);
    assert!(shown.contains("paused           yes"), "{shown}");

    b.write("while-paused.txt", "waits");
    b.sync();
    // b's change is pushed to a's agent, which must not act on it while paused.
    a.write("local-while-paused.txt", "also waits");
    assert_eq!(a.folder_status()["state"], "paused");
    b.sync();
    assert!(!b.exists("local-while-paused.txt"));

    a.ok(&["resume", "docs"], None);
    wait_until(30, "a to sync after resume", || a.exists("while-paused.txt"));
    b.sync();
    wait_until(30, "b to get a's file", || {
        b.sync();
        b.exists("local-while-paused.txt")
    });

    // Pausing everything works the same way.
    a.ok(&["pause"], None);
    wait_until(30, "a to report every folder paused", || {
        a.folder_status()["paused_reason"].as_str().is_some_and(|r| r.contains("every folder"))
    });
    a.ok(&["resume"], None);
    wait_until(30, "a to resume", || a.folder_status()["state"] == "idle");
}

#[test]
fn an_interval_schedule_syncs_only_when_due() {
    let server = TestServer::start();
    let (a, b) = pair(&server, &[("doc.txt", "d")]);
    let out = a.set("schedule", "every 4s");
    assert!(out.contains("every 4s"), "{out}");
    let _ga = a.agent();
    // The agent's own first pass (not the status `filesync sync` left behind).
    wait_until(30, "a's first pass", || {
        let v = a.json(&["status", "--json"]);
        v["agent_running"] == true && v["folders"][0]["last_sync"].is_i64()
    });
    let after_first = Instant::now();
    // A pushed change waits for the interval (continuous would take a fraction of a second).
    b.write("x.txt", "pushed");
    b.sync();
    wait_until(30, "x.txt on a", || a.exists("x.txt"));
    let waited = after_first.elapsed();
    assert!(waited >= Duration::from_secs(2), "synced after {waited:?}, before the 4 s interval was due");
}

#[test]
fn deleting_80_percent_of_a_200_file_folder_pauses_it_until_confirmed() {
    let server = TestServer::start();
    let a = TestClient::register(&server, "ann", "laptop");
    let b = TestClient::login(&server, "ann", "desktop");
    for i in 0..200 {
        a.write(&format!("files/f{i:03}.txt"), format!("file {i}"));
    }
    a.sync();
    b.sync();
    let delete = |c: &TestClient| {
        for i in 0..160 {
            std::fs::remove_file(c.path(&format!("files/f{i:03}.txt"))).unwrap();
        }
    };
    let count = |c: &TestClient| std::fs::read_dir(c.path("files")).unwrap().count();

    // Deleting 160 of 200 trips the guard: nothing is deleted on the server.
    delete(&a);
    let out = a.fails(&["sync"], None);
    assert!(out.contains("mass-delete guard") && out.contains("160 of the 200"), "{out}");
    let st = a.folder_status();
    assert_eq!(st["state"], "paused", "{st}");
    let reason = st["paused_reason"].as_str().unwrap();
    assert!(reason.contains("confirm the deletions") && !reason.contains('`'), "{reason}");
    assert!(a.ok(&["status"], None).contains("`filesync folder confirm-deletes docs`"));
    assert!(out.contains("`filesync folder confirm-deletes docs`"), "{out}");
    b.sync();
    assert_eq!(count(&b), 200, "the other computer keeps every file");
    // The trip is remembered: another sync is still held.
    a.fails(&["sync"], None);

    // Restoring the files ends the pause by itself.
    for i in 0..160 {
        a.write(&format!("files/f{i:03}.txt"), format!("file {i}"));
    }
    a.sync();
    assert_eq!(a.folder_status()["state"], "idle");
    assert!(a.ok(&["folder", "confirm-deletes", "docs"], None).contains("nothing to confirm"));

    // Deleting again, then confirming, propagates the deletions once.
    delete(&a);
    a.fails(&["sync"], None);
    let out = a.ok(&["folder", "confirm-deletes", "docs"], None);
    assert!(out.contains("next sync"), "{out}");
    let rep = a.sync_report();
    assert_eq!(rep["deleted_remote"], 160, "{rep}");
    assert_eq!(a.folder_status()["state"], "idle");
    b.sync();
    assert_eq!(count(&b), 40);
    assert_eq!(a.tree(), b.tree());
}

#[test]
fn folder_settings_are_validated_and_shown() {
    let c = TestClient::blank("laptop");
    c.ok(&["folder", "add", c.dir.to_str().unwrap(), "--name", "docs"], None);
    for (key, value, hint) in [
        ("direction", "sideways", "upload-only"),
        ("schedule", "sometimes", "every 5m"),
        ("upload-limit", "fast", "512k"),
        ("guard-percent", "150", "0 to 100"),
        ("exclude", "../outside", "subfolder"),
        ("colour", "blue", "guard-min-files"),
    ] {
        let out = c.fails(&["folder", "set", "docs", key, value], None);
        assert!(out.contains(hint), "{key} {value}: {out}");
    }
    assert!(c.fails(&["folder", "set", "nope", "direction", "two-way"], None).contains("folder list"));
    c.set("direction", "download-only");
    c.set("schedule", "hourly");
    c.set("download-limit", "2M");
    c.set("exclude", "photos/2019");
    c.set("guard-min-files", "20");
    let v = c.json(&["folder", "show", "docs", "--json"]);
    let s = &v["settings"];
    assert_eq!(s["direction"], "download-only");
    assert_eq!(s["schedule"], "hourly");
    assert_eq!(s["download_limit"], 2 * 1024 * 1024);
    assert_eq!(s["upload_limit"], serde_json::Value::Null);
    assert_eq!(s["excluded"], serde_json::json!(["photos/2019"]));
    assert_eq!(s["guard_min_files"], 20);
    assert_eq!(v["paused"], false);
    let text = c.ok(&["folder", "show", "docs"], None);
    assert!(text.contains("download-only") && text.contains("2M") && text.contains("photos/2019"), "{text}");
}

/// The home holds the device token, the UI password's hash and every synced file's name: its
/// owner alone may read it, whatever the umask, and a home left open before is closed.
#[cfg(unix)]
#[test]
fn the_home_and_its_files_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let server = TestServer::start();
    let a = TestClient::register(&server, "ann", "laptop");
    a.sync();
    assert_eq!(mode(&a.home), 0o700);
    assert_eq!(mode(&a.home.join("config.toml")), 0o600);
    assert_eq!(mode(&a.home.join("token")), 0o600);

    // A home from before: open to everyone. The next command closes it.
    std::fs::set_permissions(&a.home, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(a.home.join("config.toml"), std::fs::Permissions::from_mode(0o644)).unwrap();
    a.set("upload-limit", "5M");
    assert_eq!(mode(&a.home), 0o700);
    assert_eq!(mode(&a.home.join("config.toml")), 0o600);
}

/// Names and passwords are checked against the protocol's limits before they are sent: a
/// clear message with the limit, not "connection to the server lost"; and a name typed in a
/// decomposed Unicode form is stored composed.
#[test]
fn names_and_passwords_are_checked_and_normalized_before_they_are_sent() {
    let server = TestServer::start();
    let c = TestClient::blank("laptop");
    let register = |user: &str, device: &str, password: &str| {
        let args = ["register", "--server", &server.addr, "--user", user, "--password-stdin", "--device-name", device];
        c.run(&[&args[..], &["--fingerprint", &server.fingerprint]].concat(), Some(password))
    };
    let out = register("ann", "laptop", &"p".repeat(100_000));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("at most 1024 bytes"), "{out:?}");
    let out = register(&"u".repeat(200), "laptop", "password123");
    assert!(String::from_utf8_lossy(&out.stderr).contains("at most 128 bytes"), "{out:?}");
    let out = register("ann", "Cafe\u{301}", "password123");
    assert!(out.status.success(), "{out:?}");
    let config = std::fs::read_to_string(c.home.join("config.toml")).unwrap();
    assert!(config.contains("device_name = \"Caf\u{e9}\""), "{config}");
}

/// A path valid on the wire but too long for another computer's file system (its folder sits
/// deeper there) is skipped and reported on that computer, as a name Windows forbids is;
/// everything else syncs, and no pass fails on it.
#[cfg(all(unix, not(target_os = "macos")))]
#[test]
fn a_path_too_long_for_this_computer_is_skipped_and_reported() {
    let server = TestServer::start();
    let a = TestClient::register(&server, "ann", "laptop");
    // As long as a path may be (1024 bytes), in a folder that sits deep on the other computer.
    let long: Vec<String> = (0..4).map(|i| format!("{i:x}{}", "x".repeat(249))).collect();
    let long = format!("{}/{}.txt", long.join("/"), "z".repeat(1024 - 4 * 251 - 4));
    a.write(&long, "deep");
    a.write("ok.txt", "fine");
    a.sync();

    let b = TestClient::blank("desktop");
    let args = ["login", "--server", &server.addr, "--user", "ann", "--password-stdin", "--device-name", "desktop"];
    b.ok(&[&args[..], &["--fingerprint", &server.fingerprint]].concat(), Some(PASSWORD));
    let deep = (0..13).fold(b.dir.clone(), |d, i| d.join(format!("{i:x}{}", "y".repeat(239))));
    std::fs::create_dir_all(&deep).unwrap();
    b.ok(&["folder", "add", deep.to_str().unwrap(), "--name", "docs"], None);
    for _ in 0..2 {
        b.sync();
        assert_eq!(std::fs::read(deep.join("ok.txt")).unwrap(), b"fine");
        let st = b.folder_status();
        assert_eq!(st["state"], "idle", "{st}");
        let skipped = st["skipped"].as_array().unwrap();
        assert!(
            skipped.iter().any(|s| s["reason"].as_str().unwrap().contains("this system takes at most 4095")),
            "{st}"
        );
    }
}
