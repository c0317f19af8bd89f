//! Test helpers for running the Windows build of `filesync` under Wine from a Linux test, next
//! to a Linux-native server and clients (the `support` module): [`Wine::start`] finds the
//! Windows `filesync.exe` (`FILESYNC_WINDOWS_EXE`) and the prepared Wine prefix, and keeps
//! Wine running for the whole test, because Wine ends services shortly after its last
//! ordinary process exits. `scripts/windows-check` builds the exe and runs these tests.
#![allow(clippy::disallowed_methods, reason = "test support: its job is to run Wine and the Windows `filesync.exe`")]
#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const WINE64: &str = "/usr/lib/wine/wine64";

/// What one Windows program run printed.
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

pub struct Wine {
    pub prefix: PathBuf,
    pub exe: PathBuf,
    /// An idle `cmd` whose standard input stays open: Wine lives as long as it does.
    keeper: Option<Child>,
}

impl Wine {
    pub fn start() -> Wine {
        let exe = PathBuf::from(std::env::var_os("FILESYNC_WINDOWS_EXE").unwrap_or_else(|| {
            panic!(
                "FILESYNC_WINDOWS_EXE is not set: it names the Windows build of filesync \
                 (target/x86_64-pc-windows-gnu/debug/filesync.exe). Run these tests with scripts/windows-check."
            )
        }));
        assert!(exe.is_file(), "{} does not exist; build it with scripts/windows-check", exe.display());
        let prefix = prefix();
        // Start the Wine server and its helper processes with no pipes of ours: a helper that
        // inherited a test's stdout pipe would keep it open, and reading it would never end.
        let primed = wine_command(&prefix)
            .args(["cmd", "/c", "exit"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run wine64");
        assert!(primed.success(), "wine64 cmd /c exit failed: {primed}");
        let keeper = wine_command(&prefix)
            .arg("cmd")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start wine64 cmd");
        Wine { prefix, exe, keeper: Some(keeper) }
    }

    /// Runs `filesync.exe ARGS` under Wine, with `stdin` as its input, for at most `secs`.
    pub fn run_for(&self, secs: u64, args: &[&str], stdin: Option<&str>) -> Run {
        let mut child = wine_command(&self.prefix)
            .arg(&self.exe)
            .args(args)
            .env("FILESYNC_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start filesync.exe under wine64");
        {
            let mut input = child.stdin.take().unwrap();
            if let Some(s) = stdin {
                writeln!(input, "{s}").unwrap();
            }
        }
        let reader = |mut r: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut s = String::new();
                let _ = r.read_to_string(&mut s);
                s
            })
        };
        let out = reader(Box::new(child.stdout.take().unwrap()));
        let err = reader(Box::new(child.stderr.take().unwrap()));
        let deadline = Instant::now() + Duration::from_secs(secs);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("filesync.exe {args:?} did not finish within {secs} s");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Run { status, stdout: out.join().unwrap(), stderr: err.join().unwrap() }
    }

    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> Run {
        self.run_for(120, args, stdin)
    }

    /// Runs a command that must succeed; returns its standard output.
    pub fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let r = self.run(args, stdin);
        assert!(
            r.status.success(),
            "filesync.exe {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            r.status,
            r.stdout,
            r.stderr
        );
        r.stdout
    }
}

impl Drop for Wine {
    fn drop(&mut self) {
        if let Some(mut keeper) = self.keeper.take() {
            if let Some(mut input) = keeper.stdin.take() {
                let _ = input.write_all(b"exit\r\n");
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if keeper.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = keeper.kill();
            let _ = keeper.wait();
        }
    }
}

/// The Wine prefix: `WINEPREFIX` if set, else the one `scripts/windows/wine-prefix` prepares.
fn prefix() -> PathBuf {
    if let Some(p) = std::env::var_os("WINEPREFIX") {
        return PathBuf::from(p);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/windows/wine-prefix");
    let out = Command::new(&script).stderr(Stdio::inherit()).output().expect("run scripts/windows/wine-prefix");
    assert!(out.status.success(), "{} failed", script.display());
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn wine_command(prefix: &Path) -> Command {
    let mut c = Command::new(WINE64);
    c.env("WINEPREFIX", prefix).env("WINEDEBUG", "-all").env("WINEDLLOVERRIDES", "mscoree,mshtml=");
    c
}

/// The Windows name of a Linux path: Wine's drive `Z:` is the Linux root.
pub fn win(p: &Path) -> String {
    assert!(p.is_absolute(), "{} is not absolute", p.display());
    format!("Z:{}", p.display()).replace('/', "\\")
}

/// A Windows computer: a home and a synced folder (in a Linux temporary directory, seen by
/// Windows through `Z:`), logged in to `server` as an existing user.
pub struct WinClient<'w> {
    pub wine: &'w Wine,
    pub home: PathBuf,
    pub dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl<'w> WinClient<'w> {
    pub fn login(wine: &'w Wine, server: &crate::support::TestServer, user: &str, name: &str) -> WinClient<'w> {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        let dir = tmp.path().join("folder");
        std::fs::create_dir_all(&dir).unwrap();
        let c = WinClient { wine, home, dir, _tmp: tmp };
        let args = [
            "login",
            "--server",
            &server.addr,
            "--user",
            user,
            "--password-stdin",
            "--device-name",
            name,
            "--fingerprint",
            &server.fingerprint,
        ];
        c.ok(&args, Some(crate::support::PASSWORD));
        c.ok(&["folder", "add", &win(&c.dir), "--name", "docs"], None);
        c
    }

    fn with_home(&self, args: &[&str]) -> Vec<String> {
        let mut all = vec!["--home".to_string(), win(&self.home)];
        all.extend(args.iter().map(|s| s.to_string()));
        all
    }

    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> Run {
        let all = self.with_home(args);
        self.wine.run(&all.iter().map(String::as_str).collect::<Vec<_>>(), stdin)
    }

    pub fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let all = self.with_home(args);
        self.wine.ok(&all.iter().map(String::as_str).collect::<Vec<_>>(), stdin)
    }

    /// One `filesync sync --json` pass; the report of the folder.
    pub fn sync_report(&self) -> serde_json::Value {
        let out = self.ok(&["sync", "--json"], None);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("bad JSON ({e}): {out}"));
        v["folders"][0].clone()
    }

    /// The agent's `status.json` in this home, if it was written.
    pub fn status_file(&self) -> Option<serde_json::Value> {
        std::fs::read(self.home.join("status.json")).ok().and_then(|b| serde_json::from_slice(&b).ok())
    }
}
