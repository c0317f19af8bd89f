//! Test helpers: a real `filesync server` process and real `filesync` clients, each with its
//! own home and folder in temporary directories, on 127.0.0.1.
#![allow(clippy::disallowed_methods, reason = "a cross-process test: it runs real `filesync` processes")]
#![allow(dead_code)]

pub mod faultproxy;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const PASSWORD: &str = "correct horse battery";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_filesync")
}

/// Starts `cmd`. Under Wine, starting a process now and then fails with `ERROR_INTERNAL_ERROR`
/// (1359) while the machine is busy, a fault of the emulation and not of FileSync; that one
/// error is retried a few times. Every other error is returned as it is.
pub fn spawn(cmd: &mut Command) -> std::io::Result<Child> {
    const ERROR_INTERNAL_ERROR: i32 = 1359;
    let mut attempt = 0;
    loop {
        match cmd.spawn() {
            Err(e) if cfg!(windows) && e.raw_os_error() == Some(ERROR_INTERNAL_ERROR) && attempt < 5 => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(200 * attempt));
            }
            other => return other,
        }
    }
}

/// Waits for `cond` to hold, polling, and panics with `what` after `secs` seconds.
pub fn wait_until(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        if Instant::now() > deadline {
            panic!("timed out after {secs} s waiting for: {what}");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

pub struct TestServer {
    pub child: Option<Child>,
    pub addr: String,
    pub fingerprint: String,
    pub data: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    /// The options it was started with, to restart it alike.
    extra: Vec<String>,
    /// With `FILESYNC_TEST_TOPOLOGY=two-instances`: the instances behind `addr` (a load
    /// balancer), and the bucket holding the chunks.
    instances: Vec<TestServer>,
    bucket: Option<std::sync::Arc<filesync_store::s3::testing::Moto>>,
    /// What must live as long as the server: the database, the load balancer.
    _keep: Vec<Box<dyn std::any::Any>>,
}

/// The options that keep a server's chunks at `url` (`s3://BUCKET/PREFIX`) on `moto`, with the
/// credentials moto takes written to a file in `dir`.
pub fn s3_options(moto: &filesync_store::s3::testing::Moto, url: &str, dir: &Path) -> Vec<String> {
    let credentials = dir.join("s3-credentials");
    std::fs::write(&credentials, "[default]\naws_access_key_id = ann\naws_secret_access_key = not-checked-by-moto\n")
        .unwrap();
    let credentials = credentials.to_str().unwrap();
    ["--store", url, "--s3-endpoint", &moto.endpoint, "--s3-path-style", "--s3-credentials", credentials]
        .map(String::from)
        .to_vec()
}

/// `&str`s of `args`, for the functions that take options.
pub fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// `FILESYNC_TEST_TOPOLOGY=two-instances` runs every test that starts a server with
/// [`TestServer::start`] against two instances sharing one PostgreSQL database and one S3
/// bucket (moto), behind a round-robin TCP load balancer: each connection of each computer may
/// reach either instance. `scripts/check` runs `tests/sync.rs` so in CI.
fn two_instances_wanted() -> bool {
    std::env::var("FILESYNC_TEST_TOPOLOGY").is_ok_and(|t| t == "two-instances")
}

impl TestServer {
    pub fn start() -> TestServer {
        if two_instances_wanted() {
            return TestServer::two_instances();
        }
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("server");
        let mut s = TestServer::start_at(&data, "127.0.0.1:0", &[]);
        s._tmp = Some(tmp);
        s
    }

    pub fn start_with(extra: &[&str]) -> TestServer {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("server");
        let mut s = TestServer::start_at(&data, "127.0.0.1:0", extra);
        s._tmp = Some(tmp);
        s
    }

    /// Starts a server on `data` and `listen`, waiting until it prints its address.
    pub fn start_at(data: &Path, listen: &str, extra: &[&str]) -> TestServer {
        let mut child = spawn(
            Command::new(bin())
                .args(["server", "--data"])
                .arg(data)
                .args(["--listen", listen])
                .args(extra)
                .env("FILESYNC_LOG", "warn")
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
        )
        .expect("start server");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let (mut addr, mut fingerprint) = (String::new(), String::new());
        let mut line = String::new();
        while addr.is_empty() || fingerprint.is_empty() {
            line.clear();
            if out.read_line(&mut line).unwrap() == 0 {
                panic!("server exited before printing its address");
            }
            if let Some(a) = line.trim().strip_prefix("FileSync server listening on ") {
                addr = a.to_string();
            }
            if let Some(f) = line.trim().strip_prefix("certificate fingerprint: ") {
                fingerprint = f.to_string();
            }
        }
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in out.lines() {});
        TestServer {
            child: Some(child),
            addr,
            fingerprint,
            data: data.to_path_buf(),
            _tmp: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            instances: Vec::new(),
            bucket: None,
            _keep: Vec::new(),
        }
    }

    /// Two instances on one PostgreSQL database and one S3 bucket, behind a round-robin load
    /// balancer (see [`two_instances_wanted`]).
    fn two_instances() -> TestServer {
        let db = filesync_store::pg::testing::TempDatabase::create()
            .expect("FILESYNC_TEST_TOPOLOGY=two-instances needs PostgreSQL (scripts/setup starts it)");
        let moto = filesync_store::s3::testing::Moto::start()
            .expect("FILESYNC_TEST_TOPOLOGY=two-instances needs moto_server (scripts/setup installs it)");
        moto.create_bucket("filesync");
        let tmp = tempfile::tempdir().unwrap();
        let args =
            [vec!["--database".to_string(), db.url.clone()], s3_options(&moto, "s3://filesync/test", tmp.path())]
                .concat();
        let arg_refs = strs(&args);
        let data = tmp.path().join("server");
        let one = TestServer::start_at(&data, "127.0.0.1:0", &arg_refs);
        let two = TestServer::start_at(&data, "127.0.0.1:0", &arg_refs);
        assert_eq!(one.fingerprint, two.fingerprint, "the instances share one certificate");
        let lb = Failover::round_robin(vec![one.addr.clone(), two.addr.clone()]);
        TestServer {
            child: None,
            addr: lb.addr.clone(),
            fingerprint: one.fingerprint.clone(),
            data,
            _tmp: Some(tmp),
            extra: args,
            instances: vec![one, two],
            bucket: Some(std::sync::Arc::new(moto)),
            _keep: vec![Box::new(lb), Box::new(db)],
        }
    }

    /// SIGKILL: no chance to clean up, like a power cut (every instance).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.instances.iter_mut().for_each(TestServer::kill);
    }

    /// Starts again on the same data directory and port, with the same options.
    pub fn restart(&mut self) {
        self.kill();
        if !self.instances.is_empty() {
            self.instances.iter_mut().for_each(TestServer::restart);
            return;
        }
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        let mut s = TestServer::start_at(&self.data.clone(), &self.addr.clone(), &extra);
        self.child = s.child.take();
        assert_eq!(s.fingerprint, self.fingerprint, "certificate must survive restarts");
    }

    /// Chunks the server stores: files in its chunk directory, or objects in its bucket.
    pub fn chunk_files(&self) -> usize {
        match &self.bucket {
            Some(moto) => moto.count_objects("filesync"),
            None => walk_files(&self.data.join("chunks")).len(),
        }
    }
}

impl TestServer {
    /// The same server reached at another address (a proxy, a load balancer in front of
    /// several instances): clients made with it connect there. Stops nothing when dropped.
    pub fn reached_at(&self, addr: &str) -> TestServer {
        TestServer {
            child: None,
            addr: addr.to_string(),
            fingerprint: self.fingerprint.clone(),
            data: self.data.clone(),
            _tmp: None,
            extra: self.extra.clone(),
            instances: Vec::new(),
            bucket: None,
            _keep: Vec::new(),
        }
    }
}

/// A TCP load balancer in front of server instances, as an operator would put one: each new
/// connection goes to the first instance that accepts it (in order, or taking turns), so when
/// one dies, clients that reconnect reach another. Stops listening when dropped.
pub struct Failover {
    pub addr: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Failover {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = std::net::TcpStream::connect(&self.addr); // wakes the accept loop
    }
}

impl Failover {
    /// The first live instance of `backends`, in order.
    pub fn new(backends: Vec<String>) -> Failover {
        Failover::start(backends, false)
    }

    /// Each new connection starts with the next instance of `backends`.
    pub fn round_robin(backends: Vec<String>) -> Failover {
        Failover::start(backends, true)
    }

    fn start(backends: Vec<String>, take_turns: bool) -> Failover {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            for (n, client) in listener.incoming().enumerate() {
                if stopped.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                let Ok(client) = client else { continue };
                let first = if take_turns { n % backends.len() } else { 0 };
                let upstream = backends.iter().cycle().skip(first).take(backends.len()).find_map(|b| {
                    std::net::TcpStream::connect_timeout(&b.parse().unwrap(), Duration::from_secs(1)).ok()
                });
                let Some(upstream) = upstream else { continue };
                for (mut from, mut to) in
                    [(client.try_clone().unwrap(), upstream.try_clone().unwrap()), (upstream, client)]
                {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                        let _ = from.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Failover { addr, stop }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}

pub struct TestClient {
    pub home: PathBuf,
    pub dir: PathBuf,
    pub name: String,
    _tmp: tempfile::TempDir,
}

impl TestClient {
    /// A client with its own home and an empty folder, not yet logged in.
    pub fn blank(name: &str) -> TestClient {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        let dir = tmp.path().join("folder");
        std::fs::create_dir_all(&dir).unwrap();
        TestClient { home, dir, name: name.to_string(), _tmp: tmp }
    }

    /// Registers `user` (first client) and links the folder `docs`.
    pub fn register(server: &TestServer, user: &str, name: &str) -> TestClient {
        TestClient::account(server, "register", user, name)
    }

    /// Logs in as an existing `user` and links the folder `docs`.
    pub fn login(server: &TestServer, user: &str, name: &str) -> TestClient {
        TestClient::account(server, "login", user, name)
    }

    fn account(server: &TestServer, verb: &str, user: &str, name: &str) -> TestClient {
        let c = TestClient::blank(name);
        let args = [verb, "--server", &server.addr, "--user", user, "--password-stdin", "--device-name", name];
        c.ok(&[&args[..], &["--fingerprint", &server.fingerprint]].concat(), Some(PASSWORD));
        c.ok(&["folder", "add", c.dir.to_str().unwrap(), "--name", "docs"], None);
        c
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(bin());
        c.arg("--home").arg(&self.home).env("FILESYNC_LOG", "warn");
        c
    }

    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = self.command();
        cmd.args(args);
        output_with_stdin(cmd, stdin)
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{}: `filesync {}` failed\nstdout: {stdout}\nstderr: {}",
            self.name,
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// Runs a command that must fail; returns stdout + stderr.
    pub fn fails(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin);
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!out.status.success(), "{}: `filesync {}` should have failed: {text}", self.name, args.join(" "));
        text
    }

    pub fn sync(&self) -> String {
        self.ok(&["sync"], None)
    }

    /// `filesync sync --json` for the one folder `docs`, which must succeed.
    pub fn sync_report(&self) -> serde_json::Value {
        let out = self.ok(&["sync", "--json"], None);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("bad JSON ({e}): {out}"));
        v["folders"][0].clone()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    pub fn write(&self, rel: &str, data: impl AsRef<[u8]>) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }

    pub fn read(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.path(rel)).unwrap_or_else(|e| panic!("{}: reading {rel}: {e}", self.name))
    }

    pub fn exists(&self, rel: &str) -> bool {
        self.path(rel).symlink_metadata().is_ok()
    }

    pub fn tree(&self) -> BTreeMap<String, Node> {
        tree(&self.dir)
    }

    /// Starts `filesync agent` (without its web UI: tests run many agents at once) in the
    /// background; killed when the guard drops.
    pub fn agent(&self) -> AgentGuard {
        self.agent_with_env(&[])
    }

    /// [`TestClient::agent`] with these environment variables set.
    pub fn agent_with_env(&self, env: &[(&str, &str)]) -> AgentGuard {
        let child = spawn(
            self.command()
                .args(["agent", "--no-ui"])
                .envs(env.iter().copied())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit()),
        )
        .unwrap();
        AgentGuard(Some(child))
    }
}

pub struct AgentGuard(pub Option<Child>);

impl AgentGuard {
    pub fn stop(&mut self) {
        if let Some(mut c) = self.0.take() {
            #[cfg(unix)]
            unsafe {
                libc_kill(c.id() as i32, 15);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if c.try_wait().unwrap().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[cfg(unix)]
unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

impl Drop for AgentGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One node of a folder tree, for byte-for-byte comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir,
    File { hash: String, executable: bool },
}

pub fn tree(root: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
            let md = e.metadata().unwrap();
            if md.is_dir() {
                out.insert(rel, Node::Dir);
                stack.push(p);
            } else {
                #[cfg(unix)]
                let executable = {
                    use std::os::unix::fs::PermissionsExt;
                    md.permissions().mode() & 0o111 != 0
                };
                #[cfg(not(unix))]
                let executable = false;
                let hash = blake3::hash(&std::fs::read(&p).unwrap()).to_hex().to_string();
                out.insert(rel, Node::File { hash, executable });
            }
        }
    }
    out
}

pub fn walk_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

// Not every test file that includes this module uses it.
#[allow(unused_imports)]
pub use filesync_core::testdata::random_bytes;

/// Names of conflict copies in a tree.
pub fn conflict_copies(t: &BTreeMap<String, Node>) -> Vec<String> {
    t.keys().filter(|k| k.contains("(conflicted copy from ")).cloned().collect()
}

impl TestClient {
    /// Runs a command printing JSON, which must succeed, and parses its output.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.ok(args, None);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("{}: `filesync {}` printed bad JSON ({e}): {out}", self.name, args.join(" ")))
    }
}

/// A running agent that serves its web UI, and where.
pub struct UiAgent {
    pub guard: AgentGuard,
    /// The UI's `HOST:PORT`.
    pub addr: String,
    /// The home's UI key, which the API takes as `Authorization: Bearer`.
    key: String,
}

impl TestClient {
    /// Starts `filesync agent` with its web UI on a free loopback port, and waits for the UI.
    pub fn agent_with_ui(&self) -> UiAgent {
        let child = spawn(
            self.command().args(["agent", "--ui-listen", "127.0.0.1:0"]).stdout(Stdio::null()).stderr(Stdio::inherit()),
        )
        .unwrap();
        let guard = AgentGuard(Some(child));
        let addr_file = self.home.join("ui-address");
        wait_until(20, "the agent to serve its UI", || addr_file.exists());
        let addr = std::fs::read_to_string(&addr_file).unwrap().trim().to_string();
        let key = std::fs::read_to_string(self.home.join("ui-secret")).unwrap().trim().to_string();
        UiAgent { guard, addr, key }
    }
}

impl UiAgent {
    /// `GET path` on the UI's JSON API; the body, which must be JSON from a 200 reply.
    pub fn get(&self, path: &str) -> serde_json::Value {
        use std::io::Read;
        let mut s = std::net::TcpStream::connect(&self.addr).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            self.addr, self.key
        )
        .unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "GET {path}: {reply}");
        let (head, body) = reply.split_once("\r\n\r\n").unwrap();
        assert!(!head.to_ascii_lowercase().contains("transfer-encoding: chunked"), "{head}");
        serde_json::from_str(body).unwrap_or_else(|e| panic!("GET {path}: bad JSON ({e}): {body}"))
    }
}

impl TestClient {
    /// `filesync folder set docs KEY VALUE`, which must succeed.
    pub fn set(&self, key: &str, value: &str) -> String {
        self.ok(&["folder", "set", "docs", key, value], None)
    }

    /// The status of the folder `docs` as `filesync status --json` reports it (`null` while it
    /// is not linked).
    pub fn folder_status(&self) -> serde_json::Value {
        let out = self.ok(&["status", "--json"], None);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("bad JSON ({e}): {out}"));
        v["folders"].as_array().and_then(|f| f.iter().find(|x| x["name"] == "docs")).cloned().unwrap_or_default()
    }
}

/// Runs `cmd` with `stdin` (one line, if any) as its standard input and collects its output.
pub fn output_with_stdin(mut cmd: Command, stdin: Option<&str>) -> Output {
    let mut child = spawn(cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped())).unwrap();
    {
        let mut i = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            writeln!(i, "{s}").unwrap();
        }
    }
    child.wait_with_output().unwrap()
}
