//! The agent under systemd on Linux: `filesync service install/start/status/stop/uninstall`
//! write a correct user unit and drive `systemctl` (a recording stand-in here, as CI has no
//! running systemd; `systemd-analyze verify` checks the unit where it is installed), and
//! `filesync agent` tells systemd `READY=1` once it runs and exits cleanly on SIGTERM after
//! `STOPPING=1`.
#![allow(clippy::disallowed_methods, reason = "a cross-process test: it runs real `filesync` and systemd tools")]
#![cfg(target_os = "linux")]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::{TestClient, TestServer, bin, wait_until};

unsafe extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}
const SIGTERM: i32 = 15;

/// A stand-in `systemctl` that records its arguments, one call per line, and answers
/// `status` like systemd does for a running unit.
struct FakeSystemd {
    tmp: tempfile::TempDir,
}

impl FakeSystemd {
    fn new() -> FakeSystemd {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("bin")).unwrap();
        let script = tmp.path().join("bin/systemctl");
        let log = tmp.path().join("calls");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho \"$*\" >> '{}'\n\
                 if [ \"$2\" = status ]; then echo '● filesync.service - FileSync agent'; \
                 echo '     Active: active (running)'; fi\nexit 0\n",
                log.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        FakeSystemd { tmp }
    }

    fn config_home(&self) -> PathBuf {
        self.tmp.path().join("config")
    }

    fn unit_path(&self) -> PathBuf {
        self.config_home().join("systemd/user/filesync.service")
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.tmp.path().join("calls")).unwrap_or_default().lines().map(str::to_string).collect()
    }

    /// `filesync --home HOME ARGS` with this systemctl first on the PATH.
    fn filesync(&self, home: &Path, args: &[&str]) -> Output {
        let path = format!("{}:{}", self.tmp.path().join("bin").display(), std::env::var("PATH").unwrap_or_default());
        Command::new(bin())
            .arg("--home")
            .arg(home)
            .args(args)
            .env("PATH", path)
            .env("XDG_CONFIG_HOME", self.config_home())
            .env("FILESYNC_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn service_commands_write_the_user_unit_and_drive_systemctl() {
    let systemd = FakeSystemd::new();
    let home_tmp = tempfile::tempdir().unwrap();
    let home = home_tmp.path().join("my home");

    let out = systemd.filesync(&home, &["service", "install"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("no login or no folder yet"), "a hint to log in: {}", text(&out));
    let unit = std::fs::read_to_string(systemd.unit_path()).unwrap();
    let exec = format!(
        "ExecStart=\"{}\" --home \"{}\" agent\n",
        std::fs::canonicalize(bin()).unwrap().display(),
        home.display()
    );
    for line in ["Type=notify\n", "NotifyAccess=main\n", "Restart=on-failure\n", "WantedBy=default.target\n", &exec] {
        assert!(unit.contains(line), "unit lacks {line:?}:\n{unit}");
    }
    assert!(!unit.contains("User="), "{unit}");
    assert_eq!(systemd.calls(), ["--user daemon-reload", "--user enable filesync.service"]);

    let again = systemd.filesync(&home, &["service", "install"]);
    assert!(!again.status.success());
    assert!(text(&again).contains("already installed"), "{}", text(&again));

    let out = systemd.filesync(&home, &["service", "start"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = systemd.filesync(&home, &["service", "status"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("Active: active (running)"), "systemd's own words: {}", text(&out));
    let out = systemd.filesync(&home, &["service", "stop"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = systemd.filesync(&home, &["service", "uninstall"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!systemd.unit_path().exists());
    assert_eq!(
        systemd.calls()[2..],
        [
            "--user start filesync.service",
            "--user status filesync.service --no-pager --lines=20",
            "--user stop filesync.service",
            "--user disable --now filesync.service",
            "--user daemon-reload",
        ]
    );

    let out = systemd.filesync(&home, &["service", "status"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out).contains("not installed"), "{}", text(&out));
    let out = systemd.filesync(&home, &["service", "start"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("not installed; install it with `filesync service install`"), "{}", text(&out));
}

/// `systemd-analyze verify` accepts the generated unit (where systemd is installed; it does
/// not need systemd to be running).
#[test]
fn systemd_analyze_accepts_the_unit() {
    let Ok(version) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze is not installed; only the unit's content is checked");
        return;
    };
    assert!(version.status.success());
    let systemd = FakeSystemd::new();
    let home = tempfile::tempdir().unwrap();
    let out = systemd.filesync(home.path(), &["service", "install"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(systemd.unit_path())
        .env("SYSTEMD_LOG_LEVEL", "warning")
        .output()
        .unwrap();
    assert!(out.status.success(), "systemd-analyze verify: {}", text(&out));
    let complaints: Vec<&str> =
        std::str::from_utf8(&out.stderr).unwrap().lines().filter(|l| l.contains("filesync.service")).collect();
    assert!(complaints.is_empty(), "{complaints:?}");
}

/// Reads datagrams from the notify socket until one contains `what`, for at most `secs`.
fn wait_for_notification(sock: &UnixDatagram, what: &str, secs: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no {what} from the agent within {secs} s");
        sock.set_read_timeout(Some(left)).unwrap();
        match sock.recv(&mut buf) {
            Ok(n) => {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                if msg.lines().any(|l| l == what) {
                    return msg;
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                panic!("no {what} from the agent within {secs} s")
            }
            Err(e) => panic!("notify socket: {e}"),
        }
    }
}

#[test]
fn the_agent_notifies_readiness_and_stops_cleanly_on_sigterm() {
    let server = TestServer::start();
    let client = TestClient::register(&server, "ann", "laptop");
    let tmp = tempfile::tempdir().unwrap();
    let socket_path = tmp.path().join("notify.sock");
    let sock = UnixDatagram::bind(&socket_path).unwrap();

    let mut agent = client
        .command()
        .arg("agent")
        .env("NOTIFY_SOCKET", &socket_path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_notification(&sock, "READY=1", 30);
    // Ready means running: the home is locked, so a second agent is refused.
    let second = client.run(&["agent"], None);
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("already running"));
    client.write("a.txt", "synced by the service");
    wait_until(30, "a pass after the change", || {
        let st: serde_json::Value =
            serde_json::from_slice(&std::fs::read(client.home.join("status.json")).unwrap_or_default())
                .unwrap_or_default();
        st["folders"][0]["files"] == 1
    });

    // SAFETY: kill(2) with the pid of our own child process.
    assert_eq!(unsafe { kill(agent.id() as i32, SIGTERM) }, 0);
    wait_for_notification(&sock, "STOPPING=1", 30);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = agent.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the agent did not exit within 30 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(agent.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "a clean exit on SIGTERM: {status}\n{stderr}");
    let st: serde_json::Value =
        serde_json::from_slice(&std::fs::read(client.home.join("status.json")).unwrap()).unwrap();
    assert!(st["pid"].is_null(), "the final status says the agent is gone: {st}");
    let out = client.ok(&["status"], None);
    assert!(out.contains("agent: not running"), "{out}");
}
