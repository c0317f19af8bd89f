//! End-to-end tests of the running agent's status: a folder is reported in sync only when it
//! is, with the revisions that prove it; `filesync status --wait` lets a script wait for it;
//! and a settings change reaches the folder without dropping the connection.

mod support;

use std::time::{Duration, Instant};
use support::*;

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
    let f = &s["status"]["folders"][0];
    assert_eq!(f["in_sync"], true, "{f}");
    assert!(f["waiting"].as_array().unwrap().is_empty(), "{f}");
    assert!(f["local_rev"].as_u64().unwrap() > 0, "{f}");
    assert_eq!(f["local_rev"], f["server_rev"], "{f}");
    assert!(f["last_sync_ms"].as_i64().unwrap() > 1_700_000_000_000, "milliseconds: {f}");
    assert!(s["status"]["traffic"]["file_received"].as_u64().unwrap() >= 9, "{s}");
    assert!(s["status"]["traffic"]["wire_received"].as_u64().unwrap() > 0, "{s}");
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
        assert_eq!(s["status"]["connection"], "online", "the connection stays up: {s}");
        assert_ne!(s["status"]["folders"][0]["state"], "offline", "{s}");
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
