//! The web UI from the command line: an agent that is not logged in serves the UI and waits
//! instead of exiting; `filesync ui --print-url` gives the running agent's address with this
//! home's key; a UI reachable from other computers needs a password; and the account actions
//! the UI offers (rename a device, change the password) work from the command line too.

mod support;

use std::io::{Read, Write};
use std::process::Stdio;
use support::*;

#[test]
fn an_agent_not_logged_in_serves_the_ui_and_print_url_carries_the_key() {
    let c = TestClient::blank("laptop");
    let child = c
        .command()
        .args(["agent", "--ui-listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut agent = AgentGuard(Some(child));
    let addr_file = c.home.join("ui-address");
    wait_until(20, "the agent to serve its UI", || addr_file.exists());
    let addr = std::fs::read_to_string(&addr_file).unwrap().trim().to_string();
    let secret = std::fs::read_to_string(c.home.join("ui-secret")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(c.home.join("ui-secret")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the UI key is readable by its owner only");
    }
    let url = c.ok(&["ui", "--print-url"], None);
    assert_eq!(url.trim(), format!("http://{addr}/#key={}", secret.trim()));

    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    write!(s, "GET /api/session HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains(r#""authenticated":false"#), "{reply}");
    let still_running = agent.0.as_mut().unwrap().try_wait().unwrap().is_none();
    assert!(still_running, "an agent that is not logged in waits for a login");
    agent.stop();
}

#[test]
fn a_ui_reachable_from_other_computers_needs_a_password() {
    let c = TestClient::blank("nas");
    let err = c.fails(&["agent", "--ui-listen", "0.0.0.0:7780"], None);
    assert!(err.contains("filesync ui --set-password"), "{err}");
    let short = c.fails(&["ui", "--set-password", "--password-stdin"], Some("short"));
    assert!(short.contains("at least 10 characters"), "{short}");
    c.ok(&["ui", "--set-password", "--password-stdin"], Some("a long ui password"));
    let config = std::fs::read_to_string(c.home.join("config.toml")).unwrap();
    assert!(config.contains("password_hash = \"$argon2id$"), "{config}");
    assert!(!config.contains("a long ui password"));
    c.ok(&["ui", "--clear-password"], None);
    assert!(!std::fs::read_to_string(c.home.join("config.toml")).unwrap().contains("password_hash"));
}

#[test]
fn devices_are_renamed_and_the_password_changed_from_the_command_line() {
    let server = TestServer::start();
    let a = TestClient::register(&server, "ann", "laptop");
    let list: serde_json::Value = serde_json::from_str(&a.ok(&["devices", "list", "--json"], None)).unwrap();
    let id = list.as_array().unwrap().iter().find(|d| d["current"] == true).unwrap()["id"].as_u64().unwrap();
    a.ok(&["devices", "rename", &id.to_string(), "work laptop"], None);
    assert!(a.ok(&["devices", "list"], None).contains("work laptop"));
    let config = std::fs::read_to_string(a.home.join("config.toml")).unwrap();
    assert!(config.contains("device_name = \"work laptop\""), "this computer's own name follows: {config}");

    let wrong = a.fails(&["password", "--password-stdin"], Some("not the password\nnew password 99"));
    assert!(wrong.contains("current password is wrong"), "{wrong}");
    a.ok(&["password", "--password-stdin"], Some(&format!("{PASSWORD}\nnew password 99")));
    let b = TestClient::blank("desktop");
    let login = |pw: &str| {
        let args = ["login", "--server", &server.addr, "--user", "ann", "--password-stdin", "--device-name", "desktop"];
        b.run(&[&args[..], &["--fingerprint", &server.fingerprint]].concat(), Some(pw))
    };
    assert!(!login(PASSWORD).status.success(), "the old password no longer works");
    assert!(login("new password 99").status.success(), "the new one does");
    assert!(a.sync().contains("docs"), "this computer stays logged in");
}
