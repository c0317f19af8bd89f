//! Measures a real `filesync server` process under load: its memory while one address holds
//! 2,000 idle TLS connections and a real client syncs (`idle`), its memory while one client
//! floods chunk requests without reading (`flood`), how long a real user's login takes during a
//! 40-way parallel password guess (`guess`), and its memory per connected device with 10,000
//! authenticated idle devices while a real client syncs (`devices`, issue "Scale-out").
//!
//! `cargo build --release -p filesync && cargo run --release -p filesync-server --example hostile -- target/release/filesync [idle|flood|guess|devices]`
//!
//! Linux only: connections come from several 127.x.y.z addresses and memory is read from /proc.
#![allow(clippy::disallowed_methods, reason = "a measuring tool: it times real requests")]

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("this benchmark needs Linux");
}

#[cfg(target_os = "linux")]
fn main() {
    let bin = std::env::args().nth(1).unwrap_or_else(|| "target/release/filesync".into());
    let only = std::env::args().nth(2);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(bench::run(std::path::PathBuf::from(bin), only.as_deref()));
}

#[cfg(target_os = "linux")]
#[allow(clippy::disallowed_methods, reason = "a benchmark of real processes: it runs the server and clients")]
mod bench {
    use bytes::BytesMut;
    use filesync_client::{Connection, Trust};
    use filesync_core::Hash;
    use filesync_proto::{
        ChunkData, Frame, FrameDecoder, GetChunks, Hello, Login, Message, PROTOCOL_VERSION_MAX, PROTOCOL_VERSION_MIN,
        PutChunks, Register,
    };
    use std::io::{BufRead, BufReader, Write};
    use std::net::SocketAddr;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpSocket, TcpStream};
    use tokio_rustls::client::TlsStream;

    const PASSWORD: &str = "correct horse battery";

    struct Server {
        child: Child,
        addr: String,
        fingerprint: String,
        bin: PathBuf,
        dir: tempfile::TempDir,
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn start(bin: &Path) -> Server {
        start_with(bin, &[])
    }

    fn start_with(bin: &Path, args: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(bin)
            .args(["server", "--listen", "127.0.0.1:0", "--data"])
            .arg(dir.path().join("server"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run filesync server");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut addr, mut fingerprint) = (None, None);
        while addr.is_none() || fingerprint.is_none() {
            let line = lines.next().expect("server output").unwrap();
            if let Some(a) = line.strip_prefix("FileSync server listening on ") {
                addr = Some(a.trim().to_string());
            }
            if let Some(f) = line.strip_prefix("certificate fingerprint: ") {
                fingerprint = Some(f.trim().to_string());
            }
        }
        std::thread::spawn(move || for _ in lines {});
        Server { child, addr: addr.unwrap(), fingerprint: fingerprint.unwrap(), bin: bin.to_path_buf(), dir }
    }

    impl Server {
        fn rss_mib(&self) -> f64 {
            let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
            let kib: f64 = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or(0.0);
            kib / 1024.0
        }

        /// Samples the server's RSS every 20 ms until the returned flag is set; the handle
        /// gives the peak in MiB.
        fn watch_rss(self: &Arc<Self>) -> (Arc<AtomicBool>, std::thread::JoinHandle<f64>) {
            let stop = Arc::new(AtomicBool::new(false));
            let (s, flag) = (self.clone(), stop.clone());
            let h = std::thread::spawn(move || {
                let mut peak: f64 = 0.0;
                while !flag.load(Ordering::Relaxed) {
                    peak = peak.max(s.rss_mib());
                    std::thread::sleep(Duration::from_millis(20));
                }
                peak.max(s.rss_mib())
            });
            (stop, h)
        }

        /// Runs the real CLI with its own home; returns its output.
        fn cli(&self, home: &Path, args: &[&str], stdin: Option<&str>) -> String {
            let mut child = Command::new(&self.bin)
                .arg("--home")
                .arg(home)
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            if let Some(s) = stdin {
                child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
            }
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "filesync {args:?} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        }

        /// A real computer: registers (or logs in) `user`, links a folder with `files` small
        /// files, and runs `filesync sync`; returns how long the sync took.
        fn real_sync(&self, name: &str, user: &str, register: bool, files: usize) -> Duration {
            let home = self.dir.path().join(format!("{name}-home"));
            let folder = self.dir.path().join(format!("{name}-folder"));
            std::fs::create_dir_all(&folder).unwrap();
            for i in 0..files {
                std::fs::write(folder.join(format!("{name}-{i}.txt")), format!("file {i} of {name}\n")).unwrap();
            }
            let home_s = home.to_str().unwrap();
            let verb = if register { "register" } else { "login" };
            let args = [
                verb,
                "--server",
                &self.addr,
                "--user",
                user,
                "--password-stdin",
                "--device-name",
                name,
                "--fingerprint",
                &self.fingerprint,
            ];
            self.cli(&home, &args, Some(&format!("{PASSWORD}\n")));
            self.cli(&home, &["folder", "add", folder.to_str().unwrap(), "--name", "Documents"], None);
            let t = Instant::now();
            self.cli(Path::new(home_s), &["sync"], None);
            t.elapsed()
        }
    }

    async fn tls_from(s: &Server, ip: &str) -> std::io::Result<TlsStream<TcpStream>> {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(ip.parse().unwrap(), 0))?;
        let tcp = socket.connect(s.addr.parse().unwrap()).await?;
        let config = filesync_client::client_config(Trust::Pinned(s.fingerprint.clone())).unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await
    }

    /// Raw frames on a TLS stream.
    struct Raw {
        stream: TlsStream<TcpStream>,
        dec: FrameDecoder,
        next: u32,
    }

    impl Raw {
        async fn new(s: &Server, ip: &str) -> Raw {
            let mut r = Raw { stream: tls_from(s, ip).await.unwrap(), dec: FrameDecoder::new(), next: 1 };
            let hello = Hello {
                min_version: PROTOCOL_VERSION_MIN,
                max_version: PROTOCOL_VERSION_MAX,
                client_name: "bench".into(),
            };
            r.request(Message::Hello(hello)).await;
            r
        }

        async fn send(&mut self, m: Message) {
            let mut buf = BytesMut::new();
            Frame::new(self.next, m).encode(&mut buf).unwrap();
            self.next += 1;
            self.stream.write_all(&buf).await.unwrap();
            self.stream.flush().await.unwrap();
        }

        async fn request(&mut self, m: Message) -> Message {
            let id = self.next;
            self.send(m).await;
            loop {
                while let Some(f) = self.dec.next_frame().unwrap() {
                    if f.request_id == id {
                        return f.message;
                    }
                }
                assert!(self.stream.read_buf(self.dec.buffer_mut()).await.unwrap() > 0, "server closed");
            }
        }
    }

    fn percentile(v: &mut [f64], p: f64) -> f64 {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[((v.len() - 1) as f64 * p).round() as usize]
    }

    pub async fn run(bin: PathBuf, only: Option<&str>) {
        let wanted = |name: &str| only.is_none_or(|o| o == name);
        if wanted("idle") {
            idle_connections(&bin).await;
        }
        if wanted("flood") {
            flood_without_reading(&bin).await;
        }
        if wanted("guess") {
            password_guessing(&bin).await;
        }
        if wanted("devices") {
            connected_devices(&bin, 10_000).await;
        }
    }

    /// `n` authenticated devices of one user, connected and idle (each its own TLS connection
    /// that said `Auth` with the user's token), from 16 loopback addresses: the server's memory
    /// per connection, and a real client's sync meanwhile.
    async fn connected_devices(bin: &Path, n: usize) {
        raise_fd_limit(n as u64 + 1024);
        let limit = (n + 1000).to_string();
        let s = Arc::new(start_with(
            bin,
            &["--max-connections", &limit, "--max-connections-per-address", &limit, "--max-unauthenticated", "1024"],
        ));
        let mut c = Raw::new(&s, "127.0.9.1").await;
        let r = Register {
            user: "ann".into(),
            password: PASSWORD.into(),
            device_name: "desk".into(),
            invite: String::new(),
        };
        let Message::Session(session) = c.request(Message::Register(r)).await else { panic!("register failed") };
        let before = s.rss_mib();
        let t = Instant::now();
        let mut open = Vec::with_capacity(n);
        // A few hundred handshakes in flight at a time.
        for batch in (0..n).collect::<Vec<_>>().chunks(200) {
            let mut tasks = Vec::new();
            for &i in batch {
                let (s, token) = (s.clone(), session.token.clone());
                tasks.push(tokio::spawn(async move {
                    let ip = format!("127.0.10.{}", i % 16 + 1);
                    let mut d = Raw::new(&s, &ip).await;
                    let reply = d.request(Message::Auth(filesync_proto::Auth { token })).await;
                    assert!(matches!(reply, Message::Session(_)), "device {i}: {reply:?}");
                    d
                }));
            }
            for t in tasks {
                open.push(t.await.unwrap());
            }
        }
        let connect = t.elapsed();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let held = s.rss_mib();
        let sync = tokio::task::spawn_blocking({
            let s = s.clone();
            move || s.real_sync("laptop", "ann", false, 20)
        })
        .await
        .unwrap();
        println!(
            "{n} authenticated idle devices of one user (connected in {:.1} s): server RSS {before:.1} MiB before, \
             {held:.1} MiB with them connected: {:.1} KiB per connection; a real `filesync sync` of 20 files took \
             {:.2} s meanwhile (its commit pushed to all {n})",
            connect.as_secs_f64(),
            (held - before) * 1024.0 / n as f64,
            sync.as_secs_f64()
        );
        drop(open);
    }

    /// This process holds one socket per device.
    fn raise_fd_limit(want: u64) {
        let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: `l` is a valid rlimit for getrlimit/setrlimit to read and write.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_cur < want {
                l.rlim_cur = want.min(l.rlim_max);
                libc::setrlimit(libc::RLIMIT_NOFILE, &l);
            }
        }
    }

    async fn idle_connections(bin: &Path) {
        let s = Arc::new(start(bin));
        let before = s.rss_mib();
        let mut open = Vec::new();
        let mut refused = 0;
        for _ in 0..2000 {
            match tokio::time::timeout(Duration::from_secs(5), tls_from(&s, "127.0.3.1")).await {
                Ok(Ok(t)) => open.push(t),
                _ => refused += 1,
            }
        }
        let held = s.rss_mib();
        let (stop, peak) = s.watch_rss();
        let sync = tokio::task::spawn_blocking({
            let s = s.clone();
            move || s.real_sync("laptop", "ann", true, 20)
        })
        .await
        .unwrap();
        stop.store(true, Ordering::Relaxed);
        let peak = peak.join().unwrap();
        println!(
            "2000 idle TLS connections from one address: {} got a TLS session, {refused} were closed at accept; \
             server RSS {before:.1} MiB before, {held:.1} MiB with them open, peak {peak:.1} MiB while a real \
             `filesync sync` of 20 files from another address took {:.2} s",
            open.len(),
            sync.as_secs_f64()
        );
        drop(open);
    }

    async fn flood_without_reading(bin: &Path) {
        let s = Arc::new(start(bin));
        let mut c = Raw::new(&s, "127.0.5.1").await;
        let r = Register {
            user: "mallory".into(),
            password: PASSWORD.into(),
            device_name: "flood".into(),
            invite: String::new(),
        };
        assert!(matches!(c.request(Message::Register(r)).await, Message::Session(_)));
        let data: Vec<u8> = (0..4u32 << 20).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        let hash = Hash::of(&data);
        let put = PutChunks { chunks: vec![ChunkData::plain(&hash, data.into())], packed: Default::default() };
        c.request(Message::PutChunks(put)).await;
        let before = s.rss_mib();
        let (stop, peak) = s.watch_rss();
        let t = Instant::now();
        for _ in 0..300 {
            c.send(Message::GetChunks(GetChunks { hashes: vec![hash.as_bytes().to_vec(); 2], similar: vec![] })).await;
        }
        let sent = t.elapsed();
        // Let the server do what it will with 2.4 GB of unread replies, while a real client syncs.
        let sync = tokio::task::spawn_blocking({
            let s = s.clone();
            move || s.real_sync("laptop", "ann", true, 20)
        })
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_secs(5).saturating_sub(t.elapsed())).await;
        let during = s.rss_mib();
        stop.store(true, Ordering::Relaxed);
        let peak = peak.join().unwrap();
        println!(
            "one client sends 300 GetChunks of 8 MiB each ({:.1} s to send) and never reads: server RSS \
             {before:.1} MiB before, {during:.1} MiB after 5 s, peak {peak:.1} MiB; a real `filesync sync` of \
             20 files from another address meanwhile took {:.2} s",
            sent.as_secs_f64(),
            sync.as_secs_f64()
        );
        drop(c);
    }

    async fn password_guessing(bin: &Path) {
        let s = Arc::new(start(bin));
        let ann = Connection::connect(&s.addr, Trust::Pinned(s.fingerprint.clone())).await.unwrap();
        ann.register("ann", PASSWORD, "laptop").await.unwrap();
        drop(ann);
        let login = async || {
            let t = Instant::now();
            let c = Connection::connect(&s.addr, Trust::Pinned(s.fingerprint.clone())).await.unwrap();
            c.login("ann", PASSWORD, "phone").await.unwrap();
            t.elapsed().as_secs_f64() * 1000.0
        };
        let mut quiet = Vec::new();
        for _ in 0..10 {
            quiet.push(login().await);
        }
        let before = s.rss_mib();
        let (stop_rss, peak) = s.watch_rss();
        let stop = Arc::new(AtomicBool::new(false));
        let guesses = Arc::new(AtomicU64::new(0));
        let mut attackers = Vec::new();
        for i in 0..40 {
            let (s, stop, guesses) = (s.clone(), stop.clone(), guesses.clone());
            attackers.push(tokio::spawn(async move {
                let ip = format!("127.0.7.{}", i + 1);
                while !stop.load(Ordering::Relaxed) {
                    let mut c = Raw::new(&s, &ip).await;
                    for n in 0..5 {
                        let l = Login {
                            user: "ann".into(),
                            password: format!("guess {i} {n}"),
                            device_name: "x".into(),
                            ..Default::default()
                        };
                        c.request(Message::Login(l)).await;
                        guesses.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut attacked = Vec::new();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            attacked.push(login().await);
        }
        stop.store(true, Ordering::Relaxed);
        for a in attackers {
            let _ = a.await;
        }
        stop_rss.store(true, Ordering::Relaxed);
        let peak = peak.join().unwrap();
        println!(
            "login of the real user: median {:.0} ms (max {:.0}) when quiet; during a 40-way parallel guess from \
             40 addresses ({} guesses answered): median {:.0} ms, p90 {:.0} ms, max {:.0} ms over {} logins; \
             server RSS {before:.1} MiB before, peak {peak:.1} MiB",
            percentile(&mut quiet, 0.5),
            percentile(&mut quiet, 1.0),
            guesses.load(Ordering::Relaxed),
            percentile(&mut attacked, 0.5),
            percentile(&mut attacked, 0.9),
            percentile(&mut attacked, 1.0),
            attacked.len()
        );
    }
}
