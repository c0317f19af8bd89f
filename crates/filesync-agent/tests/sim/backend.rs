//! The simulation's server, either of two: the in-memory model of the server's rules
//! (`memserver`: fast, with hooks that drop a connection after some requests or damage a
//! chunk), or the real server — its session, handlers, SQLite store and chunk directory —
//! reached over simulated connections (`InProcessServer` over in-memory byte streams) that
//! can be cut at any byte, in either direction, as a network may.

use crate::memserver::MemServer;
use filesync_agent::engine::server::{Announced, ServerApi};
use filesync_client::Connection;
use filesync_core::clock::Clock;
use filesync_core::{EntryKind, EntryState, FileMeta, Hash, RelPath};
use filesync_server::{InProcessServer, ServerConfig};
use filesync_store::ChunkStore;
use filesync_store::MetaStore;
use rand::Rng;
use rand::rngs::StdRng;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The server's wall clock: it moves with the computers' clocks.
#[derive(Clone, Debug)]
pub struct SimClock(Arc<AtomicI64>);

impl SimClock {
    pub fn new(start_ns: i64) -> SimClock {
        SimClock(Arc::new(AtomicI64::new(start_ns)))
    }

    pub fn advance(&self, ns: i64) {
        self.0.fetch_add(ns, Ordering::Relaxed);
    }
}

impl Clock for SimClock {
    fn now_ns(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

pub enum Backend {
    Memory(Arc<MemServer>),
    Real(Box<RealServer>),
}

pub struct RealServer {
    /// The running server; a crash replaces it with a new one over the same stores.
    server: RefCell<Arc<InProcessServer>>,
    config: ServerConfig,
    meta: Arc<dyn MetaStore>,
    chunks: Arc<dyn ChunkStore>,
    clock: SimClock,
    /// Cut the next connection after this many bytes, both directions together.
    cut_after: Cell<Option<usize>>,
    /// The server crashes when the next connection is cut (or after it, if it never is).
    crash_at_cut: Cell<bool>,
    _dir: tempfile::TempDir,
}

impl RealServer {
    fn server(&self) -> Arc<InProcessServer> {
        self.server.borrow().clone()
    }
}

/// What the server holds at the end: the current files and directories, and the hash of
/// every file version in its history.
pub struct ServerState {
    pub files: BTreeMap<String, Hash>,
    /// The current files whose executable bit is set.
    pub executables: BTreeSet<String>,
    pub dirs: BTreeSet<String>,
    pub history: BTreeSet<Hash>,
    /// (path, rev) of every entry of the journal, oldest first, for the trace.
    pub journal: Vec<(String, u64)>,
}

const USER: &str = "sim";
const FOLDER: &str = "docs";

impl Backend {
    /// The model server, taking announcements of uploads in progress (protocol version 4).
    pub fn memory() -> Backend {
        let m = MemServer::default();
        m.inner.lock().unwrap().announced = Some(Vec::new());
        Backend::Memory(Arc::new(m))
    }

    /// The uploads in progress announced to the model server from the `from`-th on (none on the
    /// real server: its announcements go to connected devices, and the simulated computers
    /// connect only to sync).
    pub fn announced_since(&self, from: usize) -> Vec<Announced> {
        match self {
            Backend::Memory(m) => {
                m.inner.lock().unwrap().announced.as_ref().map_or(Vec::new(), |a| a[from.min(a.len())..].to_vec())
            }
            Backend::Real(_) => Vec::new(),
        }
    }

    pub async fn real(clock_start_ns: i64) -> Backend {
        // In memory where there is a tmpfs: the chunk store syncs every file it writes, and on
        // a disk those waits were half of a real-server history's time.
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() };
        let dir = dir.expect("a temporary directory");
        let clock = SimClock::new(clock_start_ns);
        let mut config = ServerConfig::new(dir.path());
        config.clock = Arc::new(clock.clone());
        // These run on the real clock, which a starved process (a soak on a busy machine) can
        // see jump by seconds between two steps: far enough away never to decide a history
        // (seed 81016620 once lost its connection this way under load).
        config.handshake_timeout = std::time::Duration::from_secs(3600);
        config.idle_timeout = std::time::Duration::from_secs(3600);
        // The stores outlive a crash of the server, as its database and chunk directory do; an
        // in-memory SQLite database keeps exactly what was committed, as a file would through
        // a process crash.
        let meta: Arc<dyn MetaStore> =
            Arc::new(filesync_store::sqlite::SqliteMeta::memory().await.expect("an in-memory SQLite store"));
        let chunks: Arc<dyn ChunkStore> =
            Arc::new(filesync_store::localfs::LocalChunks::open(dir.path().join("chunks")).expect("a chunk directory"));
        let server =
            InProcessServer::open(config.clone(), meta.clone(), chunks.clone()).await.expect("the server opens");
        Backend::Real(Box::new(RealServer {
            server: RefCell::new(Arc::new(server)),
            config,
            meta,
            chunks,
            clock,
            cut_after: Cell::new(None),
            crash_at_cut: Cell::new(false),
            _dir: dir,
        }))
    }

    pub fn is_real(&self) -> bool {
        matches!(self, Backend::Real(_))
    }

    /// A new computer's credentials (the real server's device token; nothing for the model).
    pub async fn enrol(&self, device: &str) -> String {
        match self {
            Backend::Memory(_) => String::new(),
            Backend::Real(r) => r.server().provision_device(USER, device).await.expect("a device"),
        }
    }

    pub fn advance_clock(&self, ns: i64) {
        if let Backend::Real(r) = self {
            r.clock.advance(ns);
        }
    }

    /// The server as a computer with `token` reaches it for one sync: the model itself, or a
    /// new connection to the real server (cut as planned by [`Backend::cut_next`]).
    pub async fn connect(&self, token: &str) -> Result<Arc<dyn ServerApi>, String> {
        match self {
            Backend::Memory(m) => Ok(m.clone()),
            Backend::Real(r) => {
                let (client, server_end) = tokio::io::duplex(256 * 1024);
                let server = r.server();
                tokio::spawn(server.serve(server_end));
                let crash = r.crash_at_cut.get().then_some(server);
                let stream = Cut { inner: client, left: r.cut_after.take(), scratch: Vec::new(), crash };
                let conn = Connection::over(stream, "simulated".into()).await.map_err(|e| e.to_string())?;
                conn.auth(token).await.map_err(|e| e.to_string())?;
                Ok(Arc::new(conn))
            }
        }
    }

    /// Plans a connection failure for the next sync: the model drops it after a few requests
    /// (a commit may be applied and its answer lost); the real connection is cut after a
    /// random number of bytes.
    pub fn cut_next(&self, rng: &mut StdRng) -> String {
        match self {
            Backend::Memory(m) => {
                let n = rng.random_range(0..12);
                m.inner.lock().unwrap().drop_after = Some(n);
                format!("after {n} requests")
            }
            Backend::Real(r) => {
                let n = rng.random_range(0..200_000);
                r.cut_after.set(Some(n));
                format!("after {n} bytes")
            }
        }
    }

    /// Plans a crash of the server during the next sync: the model drops the connection after
    /// a few requests (what it applied stays, as a database keeps what it committed); the real
    /// server is killed when the connection has carried a random number of bytes — every
    /// request in flight stops at whichever await it waits on — and [`Backend::restart`]
    /// opens a new one over the same stores.
    pub fn crash_next(&self, rng: &mut StdRng) -> String {
        let Backend::Real(r) = self else { return self.cut_next(rng) };
        r.crash_at_cut.set(true);
        // Mostly within the first requests of the sync, where its commits are.
        let n = if rng.random_bool(0.7) { rng.random_range(0..8_000) } else { rng.random_range(0..200_000) };
        r.cut_after.set(Some(n));
        format!("after {n} bytes")
    }

    /// After a crash planned by [`Backend::crash_next`]: the server starts again over its
    /// stores (it crashes now if the connection was never cut).
    pub async fn restart(&self) {
        let Backend::Real(r) = self else { return self.heal() };
        r.cut_after.set(None);
        if !r.crash_at_cut.take() {
            return;
        }
        r.server().crash();
        let server = InProcessServer::open(r.config.clone(), r.meta.clone(), r.chunks.clone()).await;
        *r.server.borrow_mut() = Arc::new(server.expect("the server opens again"));
    }

    pub fn heal(&self) {
        match self {
            Backend::Memory(m) => m.inner.lock().unwrap().drop_after = None,
            Backend::Real(r) => r.cut_after.set(None),
        }
    }

    /// Damages one stored chunk while `during` runs, then repairs it (the model only: the real
    /// server sets a damaged chunk aside for good, which the tests of its store cover).
    pub fn damage_chunk(&self, rng: &mut StdRng) -> Option<Hash> {
        let Backend::Memory(m) = self else { return None };
        let mut hashes: Vec<Hash> = m.inner.lock().unwrap().chunks.keys().copied().collect();
        if hashes.is_empty() {
            return None;
        }
        hashes.sort();
        let h = hashes[rng.random_range(0..hashes.len())];
        m.inner.lock().unwrap().damaged.insert(h);
        Some(h)
    }

    pub fn repair_chunks(&self) {
        if let Backend::Memory(m) = self {
            m.inner.lock().unwrap().damaged.clear();
        }
    }

    /// Every entry of the history (oldest first).
    async fn journal(&self) -> Vec<EntryState> {
        match self {
            Backend::Memory(m) => m.inner.lock().unwrap().history.clone(),
            Backend::Real(r) => {
                let meta = r.server().meta();
                let Some(folder) = real_folder(&*meta).await else { return Vec::new() };
                let mut out = Vec::new();
                for rev in 1..=folder.seq {
                    if let Some(e) = meta.version(folder.id, rev).await.expect("a version") {
                        out.push(e);
                    }
                }
                out
            }
        }
    }

    /// Someone restores an old version: the server makes it current again under a new rev.
    /// Returns what was restored, for the trace and the resurrection check.
    pub async fn restore_random(&self, rng: &mut StdRng) -> Option<(RelPath, u64, u64)> {
        let versions: Vec<EntryState> = self
            .journal()
            .await
            .into_iter()
            .filter(|e| e.meta.as_ref().is_some_and(|m| m.kind == EntryKind::File))
            .collect();
        if versions.is_empty() {
            return None;
        }
        let old = versions[rng.random_range(0..versions.len())].clone();
        let state = self.state().await;
        if state.dirs.contains(old.path.as_str()) {
            return None; // a directory holds that name now
        }
        // The server's tree rule: no file restored below a file, or where entries are below.
        let below = format!("{}/", old.path);
        let in_the_way = old.path.ancestors().any(|a| state.files.contains_key(a))
            || state.files.keys().chain(&state.dirs).any(|p| p.starts_with(&below));
        if in_the_way {
            return None;
        }
        match self {
            Backend::Memory(m) => {
                let rev = m.inner.lock().unwrap().restore(1, old.path.clone(), old.meta.clone().unwrap());
                Some((old.path, old.rev, rev))
            }
            Backend::Real(r) => {
                let meta = r.server().meta();
                let folder = real_folder(&*meta).await?;
                let device = meta.list_devices(folder.user_id).await.expect("devices").into_iter().next()?;
                let now = r.clock.now_unix();
                let out = meta.restore(folder.user_id, folder.id, &device, &old.path, old.rev, None, now).await;
                let rev = out.ok()?.folder_seq;
                Some((old.path, old.rev, rev))
            }
        }
    }

    pub async fn state(&self) -> ServerState {
        let journal = self.journal().await;
        let mut current: BTreeMap<String, Option<FileMeta>> = BTreeMap::new();
        for e in &journal {
            current.insert(e.path.as_str().to_string(), e.meta.clone());
        }
        let mut state = ServerState {
            files: BTreeMap::new(),
            executables: BTreeSet::new(),
            dirs: BTreeSet::new(),
            history: journal
                .iter()
                .filter_map(|e| e.meta.as_ref().filter(|m| m.kind == EntryKind::File).map(|m| m.hash))
                .collect(),
            journal: journal.iter().map(|e| (e.path.as_str().to_string(), e.rev)).collect(),
        };
        for (path, meta) in current {
            match meta {
                Some(m) if m.kind == EntryKind::File => {
                    if m.executable {
                        state.executables.insert(path.clone());
                    }
                    state.files.insert(path, m.hash);
                }
                Some(m) if m.kind == EntryKind::Dir => {
                    state.dirs.insert(path);
                }
                _ => {}
            }
        }
        state
    }
}

async fn real_folder(meta: &dyn MetaStore) -> Option<filesync_store::Folder> {
    let user = meta.user_by_name(USER).await.expect("users")?;
    meta.folder_by_name(user.id, FOLDER, false).await.expect("folders")
}

/// A connection that breaks after `left` bytes have gone through it, either way: reads and
/// writes fail from then on, as when a network drops a connection in the middle of a
/// message. `None`: it never breaks.
struct Cut<S> {
    inner: S,
    left: Option<usize>,
    scratch: Vec<u8>,
    /// The server to crash at the cut.
    crash: Option<Arc<InProcessServer>>,
}

impl<S> Cut<S> {
    /// `n` more bytes went through; at the cut, the planned crash happens.
    fn spend(&mut self, left: usize, n: usize) {
        self.left = Some(left - n);
        if left == n
            && let Some(server) = self.crash.take()
        {
            server.crash();
        }
    }
}

fn broken() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "the simulated connection was cut")
}

impl<S: AsyncRead + Unpin> AsyncRead for Cut<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let Some(left) = this.left else { return Pin::new(&mut this.inner).poll_read(cx, buf) };
        if left == 0 {
            return Poll::Ready(Err(broken()));
        }
        let max = left.min(buf.remaining());
        this.scratch.resize(max, 0);
        let mut part = ReadBuf::new(&mut this.scratch);
        match Pin::new(&mut this.inner).poll_read(cx, &mut part) {
            Poll::Ready(Ok(())) => {
                let n = part.filled().len();
                buf.put_slice(part.filled());
                this.spend(left, n);
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Cut<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let Some(left) = this.left else { return Pin::new(&mut this.inner).poll_write(cx, buf) };
        if left == 0 {
            // As a reset does on a real socket, the cut ends the other direction too: the peer
            // sees the end, and closes its side, which ends a read waiting here.
            let _ = Pin::new(&mut this.inner).poll_shutdown(cx);
            return Poll::Ready(Err(broken()));
        }
        let n = left.min(buf.len());
        match Pin::new(&mut this.inner).poll_write(cx, &buf[..n]) {
            Poll::Ready(Ok(n)) => {
                this.spend(left, n);
                Poll::Ready(Ok(n))
            }
            other => other,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
