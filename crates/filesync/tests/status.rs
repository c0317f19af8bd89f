//! End-to-end tests of the running agent's status: a folder is reported in sync only when it
//! is, with the revisions that prove it; `filesync status --wait` lets a script wait for it;
//! a settings change reaches the folder without dropping the connection; and what `--json`
//! prints is what the web UI's API sends, for the same state.

mod support;

use std::time::Duration;
use support::*;
use tokio::time::Instant;

fn status_json(c: &TestClient) -> serde_json::Value {
    c.json(&["status", "--json"])
}

#[test]
fn status_wait_returns_once_the_change_is_everywhere() {
    let server = TestServer::start();
    let a = TestClient::register(&server, "ann", "laptop");
    let b = TestClient::login(&server, "ann", "desktop");
    // Without a running agent there is nothing to wait for: a clear error, exit code 2.
    let out = b.run(&["status", "--wait", "--timeout", "1"], None);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not running"), "{out:?}");

    let _ga = a.agent();
    let _gb = b.agent();
    a.ok(&["status", "--wait", "--timeout", "30"], None);
    a.write("report.txt", "version 1");
    // B may not even know of the change yet; --wait on A first, then on B.
    a.ok(&["status", "--wait", "--timeout", "30"], None);
    wait_until(20, "the change to reach b", || b.exists("report.txt"));
    let out = b.ok(&["status", "--wait", "--timeout", "30"], None);
    assert!(out.contains("in sync"), "{out}");
    assert_eq!(b.read("report.txt"), b"version 1");

    let s = status_json(&b);
    assert_eq!(s["in_sync"], true, "{s}");
    let f = &s["folders"][0];
    assert_eq!(f["in_sync"], true, "{f}");
    assert!(f["waiting"].as_array().unwrap().is_empty(), "{f}");
    assert!(f["local_rev"].as_u64().unwrap() > 0, "{f}");
    assert_eq!(f["local_rev"], f["server_rev"], "{f}");
    assert!(f["last_sync"].as_i64().unwrap() > 1_700_000_000, "Unix seconds: {f}");
    assert!(s["traffic"]["file_received"].as_u64().unwrap() >= 9, "{s}");
    assert!(s["traffic"]["wire_received"].as_u64().unwrap() > 0, "{s}");
}

#[test]
fn a_paused_folder_is_not_in_sync_and_status_wait_says_so() {
    let server = TestServer::start();
    let a = TestClient::register(&server, "ann", "laptop");
    let _ga = a.agent();
    a.ok(&["status", "--wait", "--timeout", "30"], None);
    a.ok(&["pause", "docs"], None);
    wait_until(20, "a to report paused", || a.folder_status()["state"] == "paused");
    let f = a.folder_status();
    assert_eq!(f["in_sync"], false, "{f}");
    assert!(f["waiting"].as_array().unwrap().iter().any(|w| w == "paused"), "{f}");
    let out = a.run(&["status", "--wait", "--timeout", "20"], None);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("paused"), "{out:?}");
    // The human-readable status says why too.
    assert!(a.ok(&["status"], None).contains("not in sync: paused"));
}

#[test]
fn a_settings_change_reaches_the_folder_without_dropping_the_connection() {
    let server = TestServer::start();
    let a = TestClient::register(&server, "ann", "laptop");
    let b = TestClient::login(&server, "ann", "desktop");
    let _ga = a.agent();
    a.ok(&["status", "--wait", "--timeout", "30"], None);
    a.set("upload-limit", "10M");
    // Watch the status while the agent picks the change up (it polls every 2 s).
    let deadline = Instant::now() + Duration::from_secs(6);
    while Instant::now() < deadline {
        let s = status_json(&a);
        assert_eq!(s["connection"], "online", "the connection stays up: {s}");
        assert_ne!(s["folders"][0]["state"], "offline", "{s}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // And the folder still syncs, with the new setting.
    a.write("after.txt", "still syncing");
    b.sync();
    wait_until(20, "the change to reach b", || {
        b.sync();
        b.exists("after.txt")
    });
}

/// Commands reach a running agent over its control endpoint: a confirmation of held-back
/// deletions is carried out at once (the agent no longer polls its database for it), and a
/// folder added from the command line starts syncing.
#[test]
fn commands_reach_the_running_agent() {
    let server = TestServer::start();
    let a = TestClient::register(&server, "ann", "laptop");
    let b = TestClient::login(&server, "ann", "desktop");
    for i in 0..200 {
        a.write(&format!("files/f{i:03}.txt"), format!("file {i}"));
    }
    a.sync();
    b.sync();
    let _ga = a.agent();
    a.ok(&["status", "--wait", "--timeout", "30"], None);
    assert!(a.home.join("agent.control").exists(), "the agent publishes its control endpoint");

    // The guard holds back 160 deletions; confirming them from the command line makes the
    // running agent propagate them, and the command waits until it has.
    for i in 0..160 {
        std::fs::remove_file(a.path(&format!("files/f{i:03}.txt"))).unwrap();
    }
    wait_until(20, "the guard to hold the deletions back", || a.folder_status()["state"] == "paused");
    let out = a.ok(&["folder", "confirm-deletes", "docs"], None);
    assert!(out.contains("were propagated"), "{out}");
    b.sync();
    assert_eq!(std::fs::read_dir(b.path("files")).unwrap().count(), 40);

    // A setting saved from the command line is applied by the running agent.
    let out = a.set("upload-limit", "10M");
    assert!(out.contains("the running agent applies it now"), "{out}");

    // A folder linked from the command line starts syncing.
    let extra = a.dir.parent().unwrap().join("photos");
    std::fs::create_dir_all(&extra).unwrap();
    std::fs::write(extra.join("cat.jpg"), b"meow").unwrap();
    a.ok(&["folder", "add", extra.to_str().unwrap(), "--name", "photos"], None);
    wait_until(20, "the new folder to be in sync", || {
        let s = status_json(&a);
        s["folders"].as_array().unwrap().iter().any(|f| f["name"] == "photos" && f["in_sync"] == true)
    });
}

/// `value` without the keys named in `drop`, at any depth: what changes from one look to the
/// next (times, a device's last connection).
fn without(value: &serde_json::Value, drop: &[&str]) -> serde_json::Value {
    match value {
        serde_json::Value::Object(m) => serde_json::Value::Object(
            m.iter().filter(|(k, _)| !drop.contains(&k.as_str())).map(|(k, v)| (k.clone(), without(v, drop))).collect(),
        ),
        serde_json::Value::Array(a) => serde_json::Value::Array(a.iter().map(|v| without(v, drop)).collect()),
        v => v.clone(),
    }
}

/// Regression: `filesync status --json` printed the agent's raw report under `status`, the API
/// a view of its own, and conflicts were hand-built twice (with `original_time` a text on one
/// side and a number on the other). Now each is one typed view.
#[test]
fn json_output_is_the_same_view_the_ui_api_sends() {
    let server = TestServer::start();
    let a = TestClient::register(&server, "ann", "laptop");
    let b = TestClient::login(&server, "ann", "desktop");
    a.write("notes.txt", "original");
    a.sync();
    b.sync();
    a.write("notes.txt", "laptop's notes");
    b.write("notes.txt", "desktop's notes");
    a.sync();
    b.sync(); // the desktop's version becomes a conflict copy
    let ui = b.agent_with_ui();
    wait_until(30, "the agent's own report, online and idle", || {
        let s = b.json(&["status", "--json"]);
        s["connection"] == "online" && s["folders"][0]["state"] == "idle" && s["folders"][0]["conflicts"] == 1
    });
    // The file the CLI reads may trail the agent's live status by a moment: compare until
    // they agree, within a deadline.
    let volatile = ["updated_at", "last_seen"];
    let mut last = None;
    let same = |cli: &serde_json::Value, api: &serde_json::Value| without(cli, &volatile) == without(api, &volatile);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (cli, api) = (b.json(&["status", "--json"]), ui.get("/api/status"));
        if same(&cli, &api) {
            assert_eq!(api["agent_running"], true, "{api}");
            assert_eq!(api["summary"]["text"], "1 conflict needs you", "{api}");
            break;
        }
        assert!(Instant::now() < deadline, "status --json and GET /api/status differ: {last:?}");
        last = Some((cli, api));
        std::thread::sleep(Duration::from_millis(100));
    }
    let conflicts = b.json(&["conflicts", "list", "--json"]);
    assert_eq!(conflicts, ui.get("/api/conflicts"));
    assert_eq!(conflicts[0]["mine"], "copy", "{conflicts}");
    let devices = b.json(&["devices", "list", "--json"]);
    assert_eq!(without(&devices, &volatile), without(&ui.get("/api/devices"), &volatile));
    assert_eq!(devices.as_array().unwrap().len(), 2, "{devices}");
    assert_eq!(b.json(&["folder", "list", "--json"]), ui.get("/api/folders"));

    // Without an agent the same view says so, and keeps what the last sync left.
    drop(ui);
    let s = b.json(&["status", "--json"]);
    assert_eq!((s["agent_running"].as_bool(), s["connection"].as_str()), (Some(false), Some("stopped")), "{s}");
    assert_eq!(s["in_sync"], false, "{s}");
    assert_eq!(s["summary"]["text"], "FileSync is not running", "{s}");
    assert_eq!(s["folders"][0]["conflicts"], 1, "{s}");
}
