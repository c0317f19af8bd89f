//! The Windows service for real, under Wine: the Windows `filesync.exe` is installed with the
//! Service Control Manager, started, syncs both ways with a Linux client through a
//! Linux-native server on 127.0.0.1, refuses a second agent on its home, stops cleanly
//! (state Stopped, exit code 0) and is removed. Built with `--features wine-tests`; run by
//! `scripts/windows-check`.

mod support;
mod wine;

use support::{TestClient, TestServer, wait_until};
use wine::{WinClient, Wine, win};

/// Removes a service left behind by an interrupted earlier run, so `install` starts clean.
fn remove_leftover_service(wine: &Wine) {
    let status = wine.run(&["service", "status"], None);
    if !status.stdout.contains("not installed") {
        wine.ok(&["service", "uninstall"], None);
    }
}

#[test]
fn the_windows_service_syncs_both_ways_and_stops_cleanly() {
    let server = TestServer::start();
    let linux = TestClient::register(&server, "ann", "linux");
    let wine = Wine::start();
    let windows = WinClient::login(&wine, &server, "ann", "windows");
    remove_leftover_service(&wine);

    // Install: registered, not running yet.
    let out = windows.ok(&["service", "install"], None);
    assert!(out.contains("Installed the Windows service FileSync"), "{out}");
    let st = wine.run(&["service", "status"], None);
    assert_eq!(st.code(), Some(3), "installed but not started: {}", st.stdout);
    assert!(st.stdout.contains("stopped"), "{}", st.stdout);
    assert!(st.stdout.contains("automatically at boot"), "{}", st.stdout);
    assert!(st.stdout.contains(&format!("home:     {}", win(&windows.home))), "{}", st.stdout);

    // Start: Running, and the agent inside connects to the Linux server.
    let out = wine.ok(&["service", "start"], None);
    assert!(out.contains("Started the FileSync service"), "{out}");
    let st = wine.run(&["service", "status"], None);
    assert_eq!(st.code(), Some(0), "{}", st.stdout);
    assert!(st.stdout.contains("running (process"), "{}", st.stdout);
    wait_until(60, "the service's agent to be online", || {
        windows.status_file().is_some_and(|s| s["connection"] == "online" && s["pid"].is_u64())
    });

    // Both ways.
    let _linux_agent = linux.agent();
    linux.write("from-linux.txt", "hello, Windows");
    wait_until(60, "the Linux file on the Windows computer", || {
        std::fs::read(windows.dir.join("from-linux.txt")).is_ok_and(|b| b == b"hello, Windows")
    });
    std::fs::write(windows.dir.join("from-windows.txt"), "hello, Linux").unwrap();
    wait_until(60, "the Windows file on the Linux computer", || {
        linux.exists("from-windows.txt") && linux.read("from-windows.txt") == b"hello, Linux"
    });

    // One agent per home: a second one is refused with a clear message.
    let second = windows.run(&["agent"], None);
    assert!(!second.status.success());
    assert!(second.stderr.contains("already running"), "{}", second.stderr);

    // Stop: a clean exit, state Stopped with exit code 0, nothing left running on the home.
    let asked = tokio::time::Instant::now();
    let out = wine.ok(&["service", "stop"], None);
    assert!(out.contains("Stopped the FileSync service"), "{out}");
    assert!(asked.elapsed() < std::time::Duration::from_secs(10), "stopped within seconds: {:?}", asked.elapsed());
    let st = wine.run(&["service", "status"], None);
    assert_eq!(st.code(), Some(3), "{}", st.stdout);
    assert!(st.stdout.contains("stopped (exit code 0)"), "{}", st.stdout);
    let status = windows.status_file().expect("status.json");
    assert!(status["pid"].is_null(), "the agent wrote its final status: {status}");
    let log_dir = windows.home.join("logs");
    let log: String = std::fs::read_dir(&log_dir)
        .unwrap_or_else(|e| panic!("{}: {e}", log_dir.display()))
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert!(log.contains("FileSync service running"), "{log}");
    assert!(log.contains("FileSync service stopped"), "{log}");

    // The home is free again: the agent can run in a terminal now (and stops on request).
    let out = windows.run(&["status"], None);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(out.stdout.contains("agent: not running"), "{}", out.stdout);

    // Uninstall.
    let out = wine.ok(&["service", "uninstall"], None);
    assert!(out.contains("Removed the Windows service FileSync"), "{out}");
    let st = wine.run(&["service", "status"], None);
    assert_eq!(st.code(), Some(3));
    assert!(st.stdout.contains("not installed"), "{}", st.stdout);
}
