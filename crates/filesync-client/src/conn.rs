//! One multiplexed connection: a writer task, a reader task that routes replies to waiting
//! requests by id, and a keepalive. Dropping the last `Connection` handle closes it.

use crate::ClientError;
use crate::counting::{Counting, WireStats};
use crate::tls::Trust;
use bytes::{Bytes, BytesMut};
use filesync_core::chunking::MAX_CHUNK;
use filesync_core::{ChunkRef, Hash, RelPath};
use filesync_proto::{
    Auth, ChangePassword, Changes, ChunkData, CommitChange, CommitOutcome, CommitResult, DeviceInfo, ErrorCode,
    FolderInfo, Frame, FrameDecoder, GetChanges, GetChunks, GetSignatures, Hello, ListTrash, ListVersions, Login,
    Message, OpenFolder, PROTOCOL_VERSION_ANNOUNCE, PROTOCOL_VERSION_DELTAS, PROTOCOL_VERSION_MAX,
    PROTOCOL_VERSION_MIN, PROTOCOL_VERSION_PACKED, PutChunks, QueryChunks, Register, RenameDevice, Restore,
    RevokeDevice, Session, SimilarChunk, Trash, UploadProgress, UsageInfo, Versions, Welcome, WireEntry, limits,
};
use filesync_proto::{compression, delta};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc, oneshot};

/// How long one request may wait for its reply.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
const PING_INTERVAL: Duration = Duration::from_secs(30);
const PING_TIMEOUT: Duration = Duration::from_secs(45);

/// The keepalive's timing: a ping every `interval`, and the connection declared dead when,
/// while an answer is awaited, it goes `timeout` with nothing received and nothing sent (see
/// [`keepalive`]). `FILESYNC_KEEPALIVE_SECS=N` (for tests of dead
/// connections, which would otherwise wait minutes) pings every N seconds, with a timeout of
/// one and a half times that.
#[derive(Clone, Copy, Debug)]
struct Keepalive {
    interval: Duration,
    timeout: Duration,
}

impl Keepalive {
    fn from_env() -> Keepalive {
        match std::env::var("FILESYNC_KEEPALIVE_SECS").ok().and_then(|v| v.parse::<u64>().ok()).filter(|n| *n > 0) {
            Some(n) => Keepalive { interval: Duration::from_secs(n), timeout: Duration::from_millis(n * 1500) },
            None => Keepalive { interval: PING_INTERVAL, timeout: PING_TIMEOUT },
        }
    }
}

/// Messages the server sends unasked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Push {
    /// A folder of this user changed; `folder_id` 0 means "some pushes were lost, re-check all".
    FolderChanged { folder_id: u64, seq: u64 },
    /// Chunks of a file another device of this user is uploading are on the server now
    /// (protocol version 4).
    Announced(Announced),
    /// The connection ended, with the reason.
    Closed(String),
}

/// Chunks of a file being uploaded that are on the server: `chunks` are entries
/// `first..first + chunks.len()` of the file's chunk list of `total`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announced {
    pub folder_id: u64,
    pub path: RelPath,
    /// Tells one upload of the path from another.
    pub upload: u64,
    pub size: u64,
    pub first: u32,
    pub chunks: Vec<ChunkRef>,
    pub total: u32,
    /// The uploading device (0 in what this device announces).
    pub device_id: u64,
}

impl Announced {
    /// Announcements of the same upload for `chunks`, the file's chunks from index `first`,
    /// each within what one message may carry (`limits::MAX_ANNOUNCED_CHUNKS`).
    pub fn parts<'a>(&'a self, first: usize, chunks: &'a [ChunkRef]) -> impl Iterator<Item = Announced> + 'a {
        chunks.chunks(limits::MAX_ANNOUNCED_CHUNKS).enumerate().map(move |(k, part)| Announced {
            path: self.path.clone(),
            first: (first + k * limits::MAX_ANNOUNCED_CHUNKS) as u32,
            chunks: part.to_vec(),
            ..*self
        })
    }

    fn from_wire(u: UploadProgress) -> Result<Announced, String> {
        let path = RelPath::new(&u.path).map_err(|e| e.to_string())?;
        let chunks = filesync_proto::convert::chunks_from_wire(&u.chunks).map_err(|e| e.to_string())?;
        if u64::from(u.first) + chunks.len() as u64 > u64::from(u.total) {
            return Err(format!("chunks beyond the {} of the file", u.total));
        }
        let UploadProgress { folder_id, upload, size, first, total, device_id, .. } = u;
        Ok(Announced { folder_id, path, upload, size, first, chunks, total, device_id })
    }
}

/// Room kept in the push queue for `FolderChanged`: announcements, which are hints, are
/// dropped rather than fill it.
const PUSH_ROOM_FOR_CHANGES: usize = 16;

type Pending = Mutex<HashMap<u32, oneshot::Sender<Message>>>;

struct Inner {
    out: mpsc::Sender<Frame>,
    /// A std mutex: held only to insert or remove one entry, never across an await.
    pending: Pending,
    next_id: AtomicU32,
    in_flight: Semaphore,
    closed: Mutex<Option<String>>,
    stats: Arc<WireStats>,
}

/// A handle to an open connection; cheap to clone, usable from many tasks at once.
#[derive(Clone)]
pub struct Connection {
    inner: Arc<Inner>,
    fingerprint: String,
    welcome: Welcome,
    pushes: Arc<Mutex<Option<mpsc::Receiver<Push>>>>,
    _tasks: Arc<TaskGuard>,
}

/// A chunk to upload. `similar` names a chunk the server probably has that resembles it (the
/// chunk at the same place in the version this one replaces): the chunk may travel as a delta
/// from it.
#[derive(Clone, Debug)]
pub struct ChunkUpload {
    pub hash: Hash,
    pub data: Bytes,
    pub similar: Option<Hash>,
}

/// A chunk to download. `similar` is a chunk this computer has (its hash and bytes) that
/// probably resembles it: the server may send the chunk as a delta from it.
#[derive(Clone, Debug)]
pub struct ChunkRequest {
    pub hash: Hash,
    pub similar: Option<(Hash, Bytes)>,
}

impl From<(Hash, Bytes)> for ChunkUpload {
    fn from((hash, data): (Hash, Bytes)) -> ChunkUpload {
        ChunkUpload { hash, data, similar: None }
    }
}

impl From<Hash> for ChunkRequest {
    fn from(hash: Hash) -> ChunkRequest {
        ChunkRequest { hash, similar: None }
    }
}

/// Aborts the connection's background tasks when the last handle is dropped.
struct TaskGuard(Vec<tokio::task::JoinHandle<()>>);
impl Drop for TaskGuard {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

impl Connection {
    /// Opens a TLS stream to `addr` checked against `trust`, without saying Hello: for tools
    /// and tests that speak raw frames. Returns the stream and the server's fingerprint.
    pub async fn raw_tls(
        addr: &str,
        trust: Trust,
    ) -> Result<(impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static, String), ClientError> {
        let (s, fp, _) = tls_connect(addr, trust).await?;
        Ok((s, fp))
    }

    /// Connects to `addr` (`host:port`), checks the certificate against `trust`, and says Hello.
    pub async fn connect(addr: &str, trust: Trust) -> Result<Connection, ClientError> {
        let (tls, fingerprint, stats) = tls_connect(addr, trust).await?;
        Connection::start(tls, fingerprint, stats).await
    }

    /// Speaks the protocol over `stream`, a connection already made and secured by other
    /// means, and says Hello: the whole-system simulation connects its computers to an
    /// in-process server this way (`filesync_server::InProcessServer`). `fingerprint` is what
    /// [`Connection::fingerprint`] will report.
    pub async fn over<S>(stream: S, fingerprint: String) -> Result<Connection, ClientError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let stats = Arc::new(WireStats::default());
        Connection::start(Counting { inner: stream, stats: stats.clone() }, fingerprint, stats).await
    }

    async fn start<S>(stream: S, fingerprint: String, stats: Arc<WireStats>) -> Result<Connection, ClientError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let (rd, wr) = tokio::io::split(stream);
        let (out_tx, out_rx) = mpsc::channel::<Frame>(limits::MAX_IN_FLIGHT * 2);
        let (push_tx, push_rx) = mpsc::channel::<Push>(64);
        let inner = Arc::new(Inner {
            out: out_tx,
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU32::new(1),
            in_flight: Semaphore::new(limits::MAX_IN_FLIGHT),
            closed: Mutex::new(None),
            stats,
        });
        let writing = Arc::new(AtomicBool::new(false));
        let writer = tokio::spawn(write_loop(wr, out_rx, writing.clone()));
        let reader = tokio::spawn(read_loop(rd, Arc::downgrade(&inner), push_tx.clone()));
        let pinger = tokio::spawn(keepalive(Arc::downgrade(&inner), push_tx.clone(), writing, Keepalive::from_env()));
        let mut conn = Connection {
            inner,
            fingerprint,
            welcome: Welcome::default(),
            pushes: Arc::new(Mutex::new(Some(push_rx))),
            _tasks: Arc::new(TaskGuard(vec![writer, reader, pinger])),
        };
        let hello = Hello {
            min_version: PROTOCOL_VERSION_MIN,
            max_version: PROTOCOL_VERSION_MAX,
            client_name: format!("filesync/{}", env!("CARGO_PKG_VERSION")),
        };
        match conn.request(Message::Hello(hello)).await? {
            Message::Welcome(w) if (PROTOCOL_VERSION_MIN..=PROTOCOL_VERSION_MAX).contains(&w.version) => {
                conn.welcome = w
            }
            Message::Welcome(w) => {
                return Err(ClientError::Protocol(format!(
                    "the server chose protocol version {}, which this client does not speak",
                    w.version
                )));
            }
            other => return Err(unexpected("Welcome", &other)),
        }
        Ok(conn)
    }

    /// The fingerprint of the certificate the server presented.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    pub fn wire_stats(&self) -> (u64, u64) {
        self.inner.stats.snapshot()
    }

    /// The channel of server pushes; can be taken once.
    pub fn take_pushes(&self) -> Option<mpsc::Receiver<Push>> {
        self.pushes.lock().expect("push lock").take()
    }

    /// Why the connection closed, if it did.
    pub fn closed(&self) -> Option<String> {
        self.inner.closed.lock().expect("closed lock").clone()
    }

    /// Sends one request and waits for its reply; an `Error` reply becomes `ClientError::Server`.
    pub async fn request(&self, msg: Message) -> Result<Message, ClientError> {
        send_request(&self.inner, msg, REQUEST_TIMEOUT).await
    }

    pub async fn register(&self, user: &str, password: &str, device_name: &str) -> Result<Session, ClientError> {
        self.register_with_invite(user, password, device_name, "").await
    }

    /// Registers with an invite code from the server's operator (empty: none).
    pub async fn register_with_invite(
        &self,
        user: &str,
        password: &str,
        device_name: &str,
        invite: &str,
    ) -> Result<Session, ClientError> {
        let m = Register {
            user: user.into(),
            password: password.into(),
            device_name: device_name.into(),
            invite: invite.into(),
        };
        match self.request(Message::Register(m)).await? {
            Message::Session(s) => Ok(s),
            other => Err(unexpected("Session", &other)),
        }
    }

    pub async fn login(&self, user: &str, password: &str, device_name: &str) -> Result<Session, ClientError> {
        self.login_replacing(user, password, device_name, 0).await
    }

    /// Logs in as the revoked device `replaces` (0: none), which the server then gives a new
    /// token instead of creating another device. The `Session` says which device it is: a
    /// server that predates `replaces_device` creates a new one.
    pub async fn login_replacing(
        &self,
        user: &str,
        password: &str,
        device_name: &str,
        replaces: u64,
    ) -> Result<Session, ClientError> {
        let m = Login {
            user: user.into(),
            password: password.into(),
            device_name: device_name.into(),
            replaces_device: replaces,
        };
        match self.request(Message::Login(m)).await? {
            Message::Session(s) => Ok(s),
            other => Err(unexpected("Session", &other)),
        }
    }

    pub async fn auth(&self, token: &str) -> Result<Session, ClientError> {
        match self.request(Message::Auth(Auth { token: token.into() })).await? {
            Message::Session(s) => Ok(s),
            other => Err(unexpected("Session", &other)),
        }
    }

    /// Revokes this device's own token on the server.
    pub async fn logout(&self) -> Result<(), ClientError> {
        expect_ok(self.request(Message::Logout(Default::default())).await?)
    }

    pub async fn ping(&self) -> Result<(), ClientError> {
        match self.request(Message::Ping(Default::default())).await? {
            Message::Pong(_) => Ok(()),
            other => Err(unexpected("Pong", &other)),
        }
    }

    pub async fn list_devices(&self) -> Result<Vec<DeviceInfo>, ClientError> {
        match self.request(Message::ListDevices(Default::default())).await? {
            Message::Devices(d) => Ok(d.devices),
            other => Err(unexpected("Devices", &other)),
        }
    }

    pub async fn revoke_device(&self, device_id: u64) -> Result<(), ClientError> {
        expect_ok(self.request(Message::RevokeDevice(RevokeDevice { device_id, remove: false })).await?)
    }

    /// Revokes a device (if it is not yet) and deletes it from the device list. A server
    /// that predates removal only revokes it: list the devices to know.
    pub async fn remove_device(&self, device_id: u64) -> Result<(), ClientError> {
        expect_ok(self.request(Message::RevokeDevice(RevokeDevice { device_id, remove: true })).await?)
    }

    pub async fn rename_device(&self, device_id: u64, name: &str) -> Result<(), ClientError> {
        expect_ok(self.request(Message::RenameDevice(RenameDevice { device_id, name: name.into() })).await?)
    }

    /// Changes this user's password (devices stay logged in).
    pub async fn change_password(&self, current: &str, new: &str) -> Result<(), ClientError> {
        self.change_password_with(current, new, false).await
    }

    /// Changes this user's password and, with `log_out_other_devices`, revokes every other
    /// device of the user (this one stays logged in).
    pub async fn change_password_with(
        &self,
        current: &str,
        new: &str,
        log_out_other_devices: bool,
    ) -> Result<(), ClientError> {
        let m = ChangePassword { current_password: current.into(), new_password: new.into(), log_out_other_devices };
        expect_ok(self.request(Message::ChangePassword(m)).await?)
    }

    pub async fn list_folders(&self) -> Result<Vec<FolderInfo>, ClientError> {
        match self.request(Message::ListFolders(Default::default())).await? {
            Message::Folders(f) => Ok(f.folders),
            other => Err(unexpected("Folders", &other)),
        }
    }

    pub async fn open_folder(&self, name: &str, create: bool) -> Result<FolderInfo, ClientError> {
        match self.request(Message::OpenFolder(OpenFolder { name: name.into(), create })).await? {
            Message::Folder(f) => Ok(f),
            other => Err(unexpected("Folder", &other)),
        }
    }

    pub async fn get_changes(&self, folder_id: u64, since: u64, limit: u32) -> Result<Changes, ClientError> {
        match self.request(Message::GetChanges(GetChanges { folder_id, since, limit })).await? {
            Message::Changes(c) => Ok(c),
            other => Err(unexpected("Changes", &other)),
        }
    }

    /// Indices of `hashes` the server lacks.
    pub async fn query_chunks(&self, hashes: &[Hash]) -> Result<Vec<usize>, ClientError> {
        let q = QueryChunks { hashes: hashes.iter().map(|h| h.as_bytes().to_vec()).collect() };
        match self.request(Message::QueryChunks(q)).await? {
            Message::ChunkPresence(p) => {
                let missing: Vec<usize> = p.missing.into_iter().map(|i| i as usize).collect();
                if missing.iter().any(|&i| i >= hashes.len()) {
                    return Err(ClientError::Protocol("ChunkPresence index out of range".into()));
                }
                Ok(missing)
            }
            other => Err(unexpected("ChunkPresence", &other)),
        }
    }

    /// Whether the server takes and sends sub-chunk deltas (protocol version 3).
    fn deltas(&self) -> bool {
        self.welcome.version >= PROTOCOL_VERSION_DELTAS
    }

    /// Whether the server relays uploads in progress (protocol version 4).
    pub fn announces(&self) -> bool {
        self.welcome.version >= PROTOCOL_VERSION_ANNOUNCE
    }

    /// Whether chunk messages may pack their compressible chunks into one stream (protocol
    /// version 5).
    fn packs(&self) -> bool {
        self.welcome.version >= PROTOCOL_VERSION_PACKED
    }

    /// Tells the user's other devices that chunks of a file being uploaded are on the server
    /// (at most `limits::MAX_ANNOUNCED_CHUNKS` of them). Does nothing on a server older than
    /// protocol version 4.
    pub async fn announce_chunks(&self, a: &Announced) -> Result<(), ClientError> {
        if !self.announces() {
            return Ok(());
        }
        let u = UploadProgress {
            folder_id: a.folder_id,
            path: a.path.as_str().to_string(),
            upload: a.upload,
            size: a.size,
            first: a.first,
            chunks: filesync_proto::convert::chunks_to_wire(&a.chunks),
            total: a.total,
            device_id: 0,
        };
        expect_ok(self.request(Message::AnnounceChunks(u)).await?)
    }

    /// Uploads chunks (one message's worth). Each travels compressed when that pays
    /// (`filesync_proto::compression`), or, when it names a `similar` chunk the server has and
    /// the server speaks version 3, as a delta from that chunk when that pays more
    /// (`filesync_proto::delta`). The work runs on a blocking thread. If the server refuses
    /// the deltas, the chunks are sent again whole.
    pub async fn put_chunks<C: Into<ChunkUpload>>(&self, chunks: Vec<C>) -> Result<(), ClientError> {
        let chunks: Vec<ChunkUpload> = chunks.into_iter().map(Into::into).collect();
        let signatures = if self.deltas() { self.signatures_for(&chunks).await? } else { HashMap::new() };
        let used_deltas = !signatures.is_empty();
        let whole: Vec<ChunkUpload> = if used_deltas { chunks.clone() } else { Vec::new() };
        let pack = self.packs();
        let put = encode_uploads(chunks, signatures, pack).await?;
        match self.request(Message::PutChunks(put)).await {
            Ok(m) => expect_ok(m),
            Err(e)
                if used_deltas
                    && matches!(e, ClientError::Server { .. })
                    && e.code() != Some(ErrorCode::QuotaExceeded) =>
            {
                tracing::warn!("the server refused chunks sent as deltas ({e}); sending them whole");
                let put = encode_uploads(whole, HashMap::new(), pack).await?;
                expect_ok(self.request(Message::PutChunks(put)).await?)
            }
            Err(e) => Err(e),
        }
    }

    /// The server's signatures of the chunks `chunks` resemble, for those big enough that a
    /// delta may pay; a chunk the server lacks has none.
    async fn signatures_for(&self, chunks: &[ChunkUpload]) -> Result<HashMap<Hash, Bytes>, ClientError> {
        let mut wanted: Vec<Hash> =
            chunks.iter().filter(|c| c.data.len() >= delta::MIN_DELTA_CHUNK).filter_map(|c| c.similar).collect();
        wanted.sort_unstable();
        wanted.dedup();
        let mut out = HashMap::new();
        for batch in wanted.chunks(limits::MAX_SIGNATURES_PER_REQUEST) {
            let g = GetSignatures { hashes: batch.iter().map(|h| h.as_bytes().to_vec()).collect() };
            match self.request(Message::GetSignatures(g)).await? {
                Message::Signatures(s) if s.signatures.len() == batch.len() => {
                    out.extend(batch.iter().copied().zip(s.signatures).filter(|(_, s)| !s.is_empty()))
                }
                Message::Signatures(_) => {
                    return Err(ClientError::Protocol("Signatures does not answer every hash asked".into()));
                }
                other => return Err(unexpected("Signatures", &other)),
            }
        }
        Ok(out)
    }

    /// Fetches chunks (one message's worth) and verifies each against its hash. A chunk that
    /// names a `similar` chunk this computer has may come as a delta from it (version 3).
    pub async fn get_chunks<R: Into<ChunkRequest> + Clone>(&self, wanted: &[R]) -> Result<Vec<Bytes>, ClientError> {
        let wanted: Vec<ChunkRequest> = wanted.iter().cloned().map(Into::into).collect();
        let hashes: Vec<Vec<u8>> = wanted.iter().map(|w| w.hash.as_bytes().to_vec()).collect();
        let offered: Vec<(usize, Hash, Bytes)> = if self.deltas() {
            wanted
                .iter()
                .enumerate()
                .filter_map(|(i, w)| w.similar.as_ref().map(|(h, d)| (i, *h, d.clone())))
                .filter(|(_, _, d)| d.len() >= delta::MIN_DELTA_CHUNK)
                .take(limits::MAX_SIGNATURES_PER_REQUEST)
                .collect()
        } else {
            Vec::new()
        };
        let similar = if offered.is_empty() {
            Vec::new()
        } else {
            let offered = offered.clone();
            tokio::task::spawn_blocking(move || {
                offered
                    .into_iter()
                    .map(|(i, h, d)| SimilarChunk {
                        index: i as u32,
                        base: h.as_bytes().to_vec(),
                        signature: delta::signature(&d),
                    })
                    .collect()
            })
            .await
            .map_err(|e| ClientError::Protocol(format!("computing signatures failed: {e}")))?
        };
        let reply = self.request(Message::GetChunks(GetChunks { hashes, similar })).await?;
        let Message::Chunks(mut c) = reply else { return Err(unexpected("Chunks", &reply)) };
        if c.chunks.len() != wanted.len() {
            return Err(ClientError::Protocol(format!("asked for {} chunks, got {}", wanted.len(), c.chunks.len())));
        }
        let bases: HashMap<usize, (Hash, Bytes)> = offered.into_iter().map(|(i, h, d)| (i, (h, d))).collect();
        let want: Vec<Hash> = wanted.iter().map(|w| w.hash).collect();
        tokio::task::spawn_blocking(move || {
            compression::unpack(&mut c.chunks, &c.packed, MAX_CHUNK as usize, limits::MAX_CHUNK_BYTES_PER_MESSAGE)
                .map_err(|e| ClientError::Protocol(format!("chunks: {e}")))?;
            let mut out = Vec::with_capacity(want.len());
            for (i, (want, got)) in want.iter().zip(c.chunks).enumerate() {
                let data = if got.encoding == compression::ENCODING_DELTA {
                    let base = bases.get(&i).filter(|(h, _)| h.as_bytes()[..] == got.base[..]).ok_or_else(|| {
                        ClientError::Protocol(format!("chunk {want} came as a delta from a chunk not offered"))
                    })?;
                    delta::apply(&base.1, &got.data, MAX_CHUNK as usize)
                        .map_err(|e| ClientError::Protocol(format!("chunk {want}: {e}")))?
                } else {
                    compression::decode_chunk(got.encoding, got.data, MAX_CHUNK as usize)
                        .map_err(|e| ClientError::Protocol(format!("chunk {want}: {e}")))?
                };
                if Hash::of(&data) != *want {
                    return Err(ClientError::Protocol(format!("chunk {want} arrived corrupted")));
                }
                out.push(data);
            }
            Ok(out)
        })
        .await
        .map_err(|e| ClientError::Protocol(format!("decoding chunks failed: {e}")))?
    }

    pub async fn commit(&self, folder_id: u64, changes: Vec<CommitChange>) -> Result<CommitResult, ClientError> {
        let n = changes.len();
        match self.request(Message::Commit(filesync_proto::Commit { folder_id, changes })).await? {
            Message::CommitResult(r) if r.outcomes.len() == n => Ok(r),
            Message::CommitResult(r) => {
                Err(ClientError::Protocol(format!("commit of {n} changes got {} outcomes", r.outcomes.len())))
            }
            other => Err(unexpected("CommitResult", &other)),
        }
    }

    /// One page of a path's versions, newest first, below `before_rev` (0: from the newest).
    pub async fn list_versions(
        &self,
        folder_id: u64,
        path: &str,
        before_rev: u64,
        limit: u32,
    ) -> Result<Versions, ClientError> {
        let l = ListVersions { folder_id, path: path.into(), before_rev, limit };
        match self.request(Message::ListVersions(l)).await? {
            Message::Versions(v) => Ok(v),
            other => Err(unexpected("Versions", &other)),
        }
    }

    /// Every stored version of a path, newest first (all pages of [`Connection::list_versions`]).
    pub async fn all_versions(&self, folder_id: u64, path: &str) -> Result<Vec<WireEntry>, ClientError> {
        let mut out: Vec<WireEntry> = Vec::new();
        loop {
            let before = out.last().map_or(0, |e| e.rev);
            let page = self.list_versions(folder_id, path, before, 0).await?;
            let progressed = page.entries.last().is_some_and(|e| before == 0 || e.rev < before);
            out.extend(page.entries);
            if !page.more || !progressed {
                return Ok(out);
            }
        }
    }

    /// One page of a folder's trash (deleted paths, most recently deleted first), limited to
    /// `prefix` and below when it is not empty, below `before_rev` (0: from the most recent).
    pub async fn list_trash(
        &self,
        folder_id: u64,
        prefix: &str,
        before_rev: u64,
        limit: u32,
    ) -> Result<Trash, ClientError> {
        let l = ListTrash { folder_id, prefix: prefix.into(), before_rev, limit };
        match self.request(Message::ListTrash(l)).await? {
            Message::Trash(t) => {
                if t.entries.iter().any(|e| e.deleted.is_none() || e.last_live.is_none()) {
                    return Err(ClientError::Protocol("a trash entry without its versions".into()));
                }
                Ok(t)
            }
            other => Err(unexpected("Trash", &other)),
        }
    }

    /// Makes version `rev` of `path` the current version of `to_path` (empty: of `path`), on
    /// the server, as a new version every device syncs. Returns the single outcome: accepted
    /// with the new (or unchanged) entry, or not accepted with the entry in the way.
    pub async fn restore(
        &self,
        folder_id: u64,
        path: &str,
        rev: u64,
        to_path: &str,
    ) -> Result<(CommitOutcome, u64), ClientError> {
        let r = Restore { folder_id, path: path.into(), rev, to_path: to_path.into() };
        match self.request(Message::Restore(r)).await? {
            Message::CommitResult(mut r) if r.outcomes.len() == 1 => {
                Ok((r.outcomes.pop().expect("one outcome"), r.folder_seq))
            }
            Message::CommitResult(r) => {
                Err(ClientError::Protocol(format!("a restore got {} outcomes instead of one", r.outcomes.len())))
            }
            other => Err(unexpected("CommitResult", &other)),
        }
    }

    /// What this user stores on the server.
    pub async fn usage(&self) -> Result<UsageInfo, ClientError> {
        match self.request(Message::Usage(Default::default())).await? {
            Message::UsageInfo(u) => Ok(u),
            other => Err(unexpected("UsageInfo", &other)),
        }
    }
}

type TlsStream = tokio_rustls::client::TlsStream<Counting<TcpStream>>;

async fn tls_connect(addr: &str, trust: Trust) -> Result<(TlsStream, String, Arc<WireStats>), ClientError> {
    let tcp = tokio::time::timeout(Duration::from_secs(15), TcpStream::connect(addr))
        .await
        .map_err(|_| ClientError::Connect {
            addr: addr.into(),
            cause: std::io::Error::new(std::io::ErrorKind::TimedOut, "connection timed out"),
        })?
        .map_err(|cause| ClientError::Connect { addr: addr.into(), cause })?;
    let _ = tcp.set_nodelay(true);
    let stats = Arc::new(WireStats::default());
    let tcp = Counting { inner: tcp, stats: stats.clone() };

    let (config, verifier) = crate::tls::config_with_verifier(trust.clone())
        .map_err(|e| ClientError::Tls { addr: addr.into(), reason: e.to_string() })?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let host = addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(addr).trim_matches(['[', ']']);
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .unwrap_or_else(|_| rustls::pki_types::ServerName::try_from("filesync").expect("valid name"));
    let tls = match tokio::time::timeout(Duration::from_secs(15), connector.connect(name, tcp)).await {
        Err(_) => return Err(ClientError::Timeout(15)),
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            let seen = verifier.seen.lock().expect("verifier lock").clone();
            if let (Trust::Pinned(expected), Some(actual)) = (&trust, seen)
                && *expected != actual
            {
                return Err(ClientError::FingerprintMismatch { expected: expected.clone(), actual });
            }
            return Err(ClientError::Tls { addr: addr.into(), reason: e.to_string() });
        }
    };
    let fingerprint = verifier.seen.lock().expect("verifier lock").clone().unwrap_or_default();

    Ok((tls, fingerprint, stats))
}

fn unexpected(want: &str, got: &Message) -> ClientError {
    ClientError::Protocol(format!("expected {want}, got {}", got.name()))
}

/// Encodes chunks for `PutChunks` on a blocking thread: each as a delta from the chunk it
/// resembles when the server sent that chunk's signature and the delta is smaller than the
/// chunk compressed, else compressed when that pays — with `pack` (version 5) the compressible
/// ones together in the message's packed stream. The chunks sent as deltas in one message
/// apply to at most one message's worth of the server's chunks, as the server requires.
async fn encode_uploads(
    chunks: Vec<ChunkUpload>,
    signatures: HashMap<Hash, Bytes>,
    pack: bool,
) -> Result<PutChunks, ClientError> {
    tokio::task::spawn_blocking(move || {
        let block_bytes = delta::SIGNATURE_BLOCK as usize;
        let mut base_bytes = 0usize;
        let mut bases: Vec<Hash> = Vec::new();
        let mut chunks: Vec<ChunkData> = chunks
            .into_iter()
            .map(|c| {
                let (encoding, data) =
                    if pack { compression::encode_packable(&c.data) } else { compression::encode_chunk(&c.data) };
                let whole = ChunkData { hash: c.hash.as_bytes().to_vec(), data, encoding, ..Default::default() };
                let Some((base, sig)) = c.similar.and_then(|b| signatures.get(&b).map(|s| (b, s))) else {
                    return whole;
                };
                // The signature's block count bounds the base chunk's size from above.
                let base_len = (sig.len() / (4 + delta::SIGNATURE_HASH as usize)) * block_bytes;
                let new_base = !bases.contains(&base);
                if new_base
                    && (bases.len() >= limits::MAX_SIGNATURES_PER_REQUEST
                        || base_bytes + base_len > limits::MAX_CHUNK_BYTES_PER_MESSAGE)
                {
                    return whole;
                }
                match delta::diff(sig, &c.data, MAX_CHUNK as usize) {
                    Ok(d) if delta::pays(d.len(), whole.data.len()) => {
                        if new_base {
                            bases.push(base);
                            base_bytes += base_len;
                        }
                        ChunkData {
                            hash: whole.hash,
                            data: d,
                            encoding: compression::ENCODING_DELTA,
                            base: base.as_bytes().to_vec(),
                            size: 0,
                        }
                    }
                    _ => whole,
                }
            })
            .collect();
        let packed = if pack { compression::pack(&mut chunks) } else { Bytes::new() };
        PutChunks { chunks, packed }
    })
    .await
    .map_err(|e| ClientError::Protocol(format!("encoding chunks failed: {e}")))
}

fn expect_ok(m: Message) -> Result<(), ClientError> {
    match m {
        Message::Ok(_) => Ok(()),
        other => Err(unexpected("Ok", &other)),
    }
}

async fn send_request(inner: &Inner, msg: Message, timeout: Duration) -> Result<Message, ClientError> {
    if let Some(reason) = inner.closed.lock().expect("closed lock").clone() {
        return Err(ClientError::Disconnected(reason));
    }
    let _permit = inner.in_flight.acquire().await.map_err(|_| ClientError::Disconnected("closed".into()))?;
    let mut id = inner.next_id.fetch_add(1, Ordering::Relaxed);
    if id == 0 {
        id = inner.next_id.fetch_add(1, Ordering::Relaxed);
    }
    let frame = Frame::new(id, msg);
    if frame.encoded_len() > filesync_proto::MAX_FRAME_LEN as usize + 4 {
        return Err(ClientError::Protocol(format!(
            "a {} request of {} bytes exceeds the frame limit",
            frame.message.name(),
            frame.encoded_len()
        )));
    }
    let (tx, rx) = oneshot::channel();
    inner.pending.lock().expect("pending lock").insert(id, tx);
    // The reader sets `closed` before it clears `pending`: checking after inserting means a
    // request can never wait on a connection that is already gone.
    if let Some(reason) = inner.closed.lock().expect("closed lock").clone() {
        inner.pending.lock().expect("pending lock").remove(&id);
        return Err(ClientError::Disconnected(reason));
    }
    let disconnected = || {
        ClientError::Disconnected(
            inner.closed.lock().expect("closed lock").clone().unwrap_or_else(|| "connection closed".into()),
        )
    };
    if inner.out.send(frame).await.is_err() {
        inner.pending.lock().expect("pending lock").remove(&id);
        return Err(disconnected());
    }
    let reply = match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(m)) => m,
        Ok(Err(_)) => return Err(disconnected()),
        Err(_) => {
            inner.pending.lock().expect("pending lock").remove(&id);
            return Err(ClientError::Timeout(timeout.as_secs()));
        }
    };
    match reply {
        Message::Error(e) => Err(ClientError::Server { code: ErrorCode::from_u32(e.code), message: e.message }),
        m => Ok(m),
    }
}

/// Writes frames as they come; `writing` is true while a frame is being written (for the
/// keepalive: a backlog going out is a sign of life).
async fn write_loop<W: tokio::io::AsyncWrite + Unpin>(
    mut wr: W,
    mut rx: mpsc::Receiver<Frame>,
    writing: Arc<AtomicBool>,
) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    while let Some(frame) = rx.recv().await {
        buf.clear();
        if frame.encode(&mut buf).is_err() {
            continue;
        }
        writing.store(true, Ordering::Relaxed);
        if wr.write_all(&buf).await.is_err() {
            return;
        }
        if rx.is_empty() && wr.flush().await.is_err() {
            return;
        }
        writing.store(false, Ordering::Relaxed);
    }
    let _ = wr.shutdown().await;
}

/// The keepalive: pings the server every `interval`, and declares the connection dead when
/// something is awaited (a reply, a ping's answer) and for `timeout` nothing arrived from the
/// server and no backlog of ours went out. A peer that vanished without closing (power cut,
/// cable pulled, a NAT that forgot the connection) moves neither way. Timing the ping's answer
/// alone is not enough: on a slow uplink the ping waits behind the chunks being uploaded (up to
/// 8 MiB a message), and a healthy, busy connection would be dropped again and again.
async fn keepalive(inner: std::sync::Weak<Inner>, dead: mpsc::Sender<Push>, writing: Arc<AtomicBool>, k: Keepalive) {
    let tick = (k.timeout / 9).max(Duration::from_millis(100));
    let start = tokio::time::Instant::now();
    let (mut last_ping, mut last_progress) = (start, start);
    let mut seen: Option<(u64, u64)> = None;
    loop {
        tokio::time::sleep(tick).await;
        let Some(strong) = inner.upgrade() else { return };
        let now = tokio::time::Instant::now();
        let (sent, received) = strong.stats.snapshot();
        let (last_sent, last_received) = seen.replace((sent, received)).unwrap_or((sent, received));
        let awaited = !strong.pending.lock().expect("pending lock").is_empty();
        if !awaited || received != last_received || (sent != last_sent && writing.load(Ordering::Relaxed)) {
            last_progress = now;
        }
        if now - last_progress >= k.timeout {
            let reason = format!(
                "nothing came from the server for {} s while waiting for its answer, and nothing could be sent",
                k.timeout.as_secs_f32()
            );
            *strong.closed.lock().expect("closed lock") = Some(reason.clone());
            strong.pending.lock().expect("pending lock").clear();
            let _ = dead.send(Push::Closed(reason)).await;
            return;
        }
        if now - last_ping >= k.interval {
            last_ping = now;
            // On its own task: the ping may wait for an in-flight slot or behind a backlog.
            // Its answer is not awaited here; the progress rule above decides.
            tokio::spawn(async move {
                let _ = send_request(&strong, Message::Ping(Default::default()), k.timeout * 4).await;
            });
        }
    }
}

async fn read_loop<R: tokio::io::AsyncRead + Unpin>(
    mut rd: R,
    inner: std::sync::Weak<Inner>,
    pushes: mpsc::Sender<Push>,
) {
    let mut dec = FrameDecoder::new();
    let reason = 'outer: loop {
        loop {
            match dec.next_frame() {
                Ok(Some(frame)) => {
                    let Some(inner) = inner.upgrade() else { return };
                    if frame.request_id == 0 {
                        match frame.message {
                            Message::FolderChanged(f) => {
                                let _ = pushes.try_send(Push::FolderChanged { folder_id: f.folder_id, seq: f.seq });
                            }
                            Message::ChunksAnnounced(u) if pushes.capacity() > PUSH_ROOM_FOR_CHANGES => {
                                match Announced::from_wire(u) {
                                    Ok(a) => {
                                        let _ = pushes.try_send(Push::Announced(a));
                                    }
                                    Err(e) => tracing::debug!("ignoring an invalid announcement: {e}"),
                                }
                            }
                            Message::Error(e) => break 'outer format!("server closed the connection: {}", e.message),
                            _ => {}
                        }
                    } else if let Some(tx) = inner.pending.lock().expect("pending lock").remove(&frame.request_id) {
                        let _ = tx.send(frame.message);
                    }
                }
                Ok(None) => break,
                Err(e) => break 'outer format!("malformed frame from server: {e}"),
            }
        }
        match rd.read_buf(dec.buffer_mut()).await {
            Ok(0) => break "server closed the connection".to_string(),
            Ok(_) => {}
            Err(e) => break e.to_string(),
        }
    };
    if let Some(inner) = inner.upgrade() {
        *inner.closed.lock().expect("closed lock") = Some(reason.clone());
        // Wake every waiting request: dropping their senders makes them fail.
        inner.pending.lock().expect("pending lock").clear();
    }
    let _ = pushes.send(Push::Closed(reason)).await;
}
