//! End-to-end tests of what a server's operator controls, with a real server process, real
//! clients and `filesync server admin` run as its own process on the data directory: storage
//! quotas (refused uploads the client explains), disabling and enabling a user (their running
//! agent is cut off within seconds), creating users, resetting passwords, revoking devices,
//! registration that is open only on loopback unless chosen, invite codes, and a password
//! change that logs out every other computer.
#![allow(clippy::disallowed_methods, reason = "a cross-process test: it runs real `filesync` processes")]

mod support;

use std::process::Command;
use support::*;

/// Runs `filesync server admin --data DATA ARGS…` with `stdin`; returns (success, stdout, stderr).
fn admin(server: &TestServer, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut cmd = Command::new(bin());
    cmd.args(["server", "admin", "--data"]).arg(&server.data).args(args).env("FILESYNC_LOG", "warn");
    let out = output_with_stdin(cmd, stdin);
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// An admin command that must succeed; its stdout.
fn admin_ok(server: &TestServer, args: &[&str], stdin: Option<&str>) -> String {
    let (ok, out, err) = admin(server, args, stdin);
    assert!(ok, "`filesync server admin {}` failed\nstdout: {out}\nstderr: {err}", args.join(" "));
    out
}

fn users_json(server: &TestServer) -> Vec<serde_json::Value> {
    let out = admin_ok(server, &["users", "--json"], None);
    serde_json::from_str::<serde_json::Value>(&out).unwrap().as_array().unwrap().clone()
}

fn user_row(server: &TestServer, name: &str) -> serde_json::Value {
    users_json(server).into_iter().find(|u| u["name"] == name).unwrap_or_else(|| panic!("no user {name}"))
}

/// A client of `user` logging in with `password`, without linking a folder.
fn log_in(server: &TestServer, user: &str, device: &str, password: &str) -> (TestClient, std::process::Output) {
    let c = TestClient::blank(device);
    let args = ["login", "--server", &server.addr, "--user", user, "--password-stdin", "--device-name", device];
    let out = c.run(&[&args[..], &["--fingerprint", &server.fingerprint]].concat(), Some(password));
    (c, out)
}

/// The agent's connection state as `filesync status --json` reports it.
fn connection(c: &TestClient) -> (String, String) {
    let st = c.json(&["status", "--json"]);
    (st["connection"].as_str().unwrap_or("").to_string(), st["message"].as_str().unwrap_or("").to_string())
}

#[test]
fn uploads_beyond_the_storage_quota_are_refused_and_the_client_says_why() {
    let server = TestServer::start_with(&["--default-quota", "200K"]);
    let a = TestClient::register(&server, "ann", "laptop");
    a.write("one.bin", random_bytes(150 * 1024, 1));
    a.sync();
    let row = user_row(&server, "ann");
    assert_eq!(row["quota_bytes"], 200 * 1024, "the default quota applies to registrations: {row}");
    assert_eq!(row["usage_bytes"], 150 * 1024, "{row}");

    // The second file does not fit: the sync fails for that file, saying why.
    a.write("two.bin", random_bytes(150 * 1024, 2));
    let text = a.fails(&["sync"], None);
    assert!(
        text.contains("error two.bin: Your account is over its storage quota (150.0 KiB of 200.0 KiB used"),
        "{text}"
    );
    assert!(text.contains("ask the server's operator for a larger quota"), "{text}");
    let out = a.run(&["sync", "--json"], None);
    assert!(!out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let folder = &report["folders"][0];
    let errors = folder["errors"].as_array().unwrap();
    assert_eq!((folder["uploaded"].as_u64(), errors.len()), (Some(0), 1), "{folder}");
    assert_eq!(errors[0]["path"], "two.bin");
    assert_eq!(user_row(&server, "ann")["usage_bytes"], 150 * 1024, "nothing of it was stored");

    // A running agent shows it as the folder's error, not as a crash or a lost connection.
    let mut agent = a.agent();
    // (The one-shot syncs above left the same folder error in the status file: wait for the
    // agent's own report, made while it is connected.)
    wait_until(20, "the agent to report the quota while connected", || {
        let f = a.folder_status();
        connection(&a).0 == "online"
            && f["state"] == "error"
            && f["over_quota"] == true
            && f["last_error"].as_str().is_some_and(|e| e.contains("storage quota"))
    });
    agent.stop();

    // The operator raises the quota; the file goes up.
    let out = admin_ok(&server, &["quota", "ann", "1M"], None);
    assert!(out.contains("1.0 MiB"), "{out}");
    // The account's own view of its storage tells the quota too.
    let usage = a.json(&["usage", "--json"]);
    assert_eq!(usage["quota"].as_u64(), Some(1 << 20), "{usage}");
    assert!(a.ok(&["usage"], None).contains("storage quota:     1.0 MiB"));
    a.sync();
    let b = TestClient::login(&server, "ann", "desktop");
    b.sync();
    assert_eq!(b.read("two.bin"), random_bytes(150 * 1024, 2));
    assert_eq!(user_row(&server, "ann")["usage_bytes"], 300 * 1024);
}

#[test]
fn a_disabled_users_running_agent_is_cut_off_and_they_are_let_back_in_when_enabled() {
    let server = TestServer::start();
    let a = TestClient::register(&server, "ann", "laptop");
    let desktop = TestClient::login(&server, "ann", "desktop");
    let bob = TestClient::register(&server, "bob", "pc");
    let _agent = a.agent();
    wait_until(20, "the agent to connect", || connection(&a).0 == "online");

    let out = admin_ok(&server, &["disable", "ann"], None);
    assert!(out.contains("Disabled ann"), "{out}");
    // The running server notices the admin command's change and closes the connection; the
    // agent's reconnection is refused, and it says why.
    wait_until(20, "the agent to be cut off", || {
        let (state, message) = connection(&a);
        state == "error" && message.contains("disabled")
    });
    let text = desktop.fails(&["sync"], None);
    assert!(text.contains("disabled by the server's operator"), "{text}");
    let (_, out) = log_in(&server, "ann", "phone", PASSWORD);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("disabled"), "{out:?}");
    bob.sync(); // other users are untouched
    let row = user_row(&server, "ann");
    assert_eq!(row["disabled"], true, "{row}");
    let table = admin_ok(&server, &["users"], None);
    assert!(table.lines().any(|l| l.starts_with("ann") && l.ends_with("disabled")), "{table}");

    let out = admin_ok(&server, &["enable", "ann"], None);
    assert!(out.contains("Enabled ann"), "{out}");
    desktop.write("back.txt", "hello again");
    desktop.sync();
}

#[test]
fn an_operator_creates_users_resets_passwords_and_revokes_devices() {
    let server = TestServer::start_with(&["--registration", "closed"]);
    let out = admin_ok(&server, &["create-user", "carol", "--password-stdin", "--quota", "5G"], Some(PASSWORD));
    assert!(out.contains("Created user carol (storage quota: 5.0 GiB)"), "{out}");
    let (again, _, err) = admin(&server, &["create-user", "carol", "--password-stdin"], Some(PASSWORD));
    assert!(!again && err.contains("taken"), "{err}");

    let (c, out) = log_in(&server, "carol", "laptop", PASSWORD);
    assert!(out.status.success(), "{out:?}");
    let row = user_row(&server, "carol");
    assert_eq!((row["devices"].as_u64(), row["quota_bytes"].as_u64()), (Some(1), Some(5 << 30)), "{row}");

    // The operator revokes the laptop: its token stops working.
    let devices: serde_json::Value =
        serde_json::from_str(&admin_ok(&server, &["devices", "carol", "--json"], None)).unwrap();
    let id = devices[0]["id"].as_u64().unwrap().to_string();
    admin_ok(&server, &["revoke-device", "carol", &id], None);
    let text = c.fails(&["devices", "list"], None);
    assert!(text.contains("not valid") || text.contains("revoked"), "{text}");
    let (missing, _, err) = admin(&server, &["revoke-device", "carol", "999"], None);
    assert!(!missing && err.contains("no device 999"), "{err}");

    // A reset password replaces the old one.
    admin_ok(&server, &["reset-password", "carol", "--password-stdin"], Some("a brand new secret"));
    let (_, out) = log_in(&server, "carol", "desktop", PASSWORD);
    assert!(!out.status.success(), "the old password no longer works");
    let (_, out) = log_in(&server, "carol", "desktop", "a brand new secret");
    assert!(out.status.success(), "{out:?}");
    let (unknown, _, err) = admin(&server, &["disable", "nobody"], None);
    assert!(!unknown && err.contains("no user \"nobody\""), "{err}");
}

#[test]
fn registration_is_open_by_default_only_on_loopback() {
    let tmp = tempfile::tempdir().unwrap();
    let out = output_with_stdin(
        {
            let mut c = Command::new(bin());
            c.args(["server", "--data"]).arg(tmp.path().join("server")).args(["--listen", "0.0.0.0:0"]);
            c
        },
        None,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a server reachable from other computers must not start with open registration");
    assert!(err.contains("--registration open") && err.contains("--registration invite"), "{err}");
    // Chosen explicitly, it starts.
    let explicit = TestServer::start_at(&tmp.path().join("server"), "0.0.0.0:0", &["--registration", "closed"]);
    drop(explicit);
    // On loopback, open by default: the usual `TestServer::start` registers users.
    let server = TestServer::start();
    TestClient::register(&server, "ann", "laptop");
}

#[test]
fn registration_by_invite_needs_a_code_from_the_operator_that_works_once() {
    let server = TestServer::start_with(&["--registration", "invite"]);
    let register = |c: &TestClient, user: &str, invite: Option<&str>| {
        let mut args = vec!["register", "--server", &server.addr, "--user", user, "--password-stdin"];
        args.extend(["--device-name", "laptop", "--fingerprint", &server.fingerprint]);
        if let Some(code) = invite {
            args.extend(["--invite", code]);
        }
        c.run(&args, Some(PASSWORD))
    };
    let a = TestClient::blank("laptop");
    let out = register(&a, "ann", None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invite"), "{out:?}");
    let code = admin_ok(&server, &["invite", "--days", "1"], None).trim().to_string();
    assert!(code.starts_with("fsi_"), "{code}");
    let out = register(&a, "ann", Some(&code));
    assert!(out.status.success(), "{out:?}");
    let b = TestClient::blank("other");
    let out = register(&b, "bob", Some(&code));
    assert!(!out.status.success(), "a code works once");
    assert!(String::from_utf8_lossy(&out.stderr).contains("already used"), "{out:?}");
}

#[test]
fn changing_the_password_can_log_out_every_other_computer() {
    let server = TestServer::start();
    let a = TestClient::register(&server, "ann", "laptop");
    let b = TestClient::login(&server, "ann", "desktop");
    let _agent = b.agent();
    wait_until(20, "the desktop's agent to connect", || connection(&b).0 == "online");

    let out = a.ok(&["password", "--password-stdin"], Some(&format!("{PASSWORD}\nsecond password")));
    assert!(out.contains("stay logged in"), "{out}");
    b.ok(&["devices", "list"], None);

    let out =
        a.ok(&["password", "--password-stdin", "--log-out-other-devices"], Some("second password\nthird password"));
    assert!(out.contains("every other computer"), "{out}");
    wait_until(20, "the desktop's agent to be logged out", || connection(&b).0 == "error");
    let text = b.fails(&["devices", "list"], None);
    assert!(text.contains("log in again"), "{text}");
    a.ok(&["devices", "list"], None); // this computer stays logged in
    let (_, out) = log_in(&server, "ann", "phone", "third password");
    assert!(out.status.success(), "{out:?}");
}
