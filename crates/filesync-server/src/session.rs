//! One client connection: the handshake state machine, the read loop, the writer task and the
//! fan-out of pushed events. Requests after authentication run concurrently (bounded per
//! connection); their replies are written in completion order, tagged with the request id.
//!
//! Every deadline holds whatever the peer does, including not reading: the whole handshake
//! (reads, handling, and writes that a full socket would block) runs under one timeout; after
//! it, the idle rule counts only complete frames (or 64 KiB of a large one), so a trickle of
//! bytes does not keep a connection; and the writer gives up on a peer that takes none of its
//! data for the idle timeout, which ends the session even while the reader waits on the writer.
//!
//! Memory is bounded in bytes, not frames: a large request's bytes are reserved (from its
//! address's budget and the server's, `admission.rs`) before they are read, a reply's before
//! its request is handled, and both are given back once the reply is written; so a peer that
//! does not read stops its own requests, never grows the server. Pushes wait beside the reply
//! queue, merged per folder, so they never block on it. A revocation or a disabled account
//! reaches the session through the hub's kick (`hub.rs`), selected on beside the requests: it
//! closes the connection whatever the reader is waiting on.

use crate::Shared;
use crate::admission::{Held, Memory, Ticket};
use crate::handlers::{self, Authed};
use crate::hub::{HubEvent, Kick};
use bytes::BytesMut;
use filesync_proto::{
    ErrorCode, ErrorMsg, FolderChanged, Frame, FrameDecoder, Message, PROTOCOL_VERSION_ANNOUNCE, PROTOCOL_VERSION_MAX,
    PROTOCOL_VERSION_MIN, UploadProgress, Welcome, limits,
};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, Semaphore, broadcast, mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// Frames larger than this are refused before authentication.
const MAX_UNAUTHENTICATED_FRAME: u32 = 64 * 1024;
/// Received bytes of an unfinished frame that count as activity, like a complete frame: a
/// large upload on a slow link is not idle, a byte now and then is.
const IDLE_PROGRESS_BYTES: usize = 64 * 1024;
/// How long queued replies may take to reach the peer once the session has ended.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// Frames up to this size are read without reserving memory for them first: the decoder's
/// buffer holds that much anyway.
const SMALL_FRAME: usize = 64 * 1024;
/// What a reply is assumed to need until it exists: the largest reply of its kind.
const SMALL_REPLY: usize = 64 * 1024;
const LARGE_REPLY: usize = limits::MAX_REPLY_BYTES + 64 * 1024;
/// Folders whose pushes are kept apart; beyond that, one "re-check every folder" push.
const MAX_PENDING_FOLDERS: usize = 64;
/// Bytes of announced chunk lists a connection may have waiting; the oldest go beyond it
/// (they are hints: the commit brings the file all the same).
const MAX_PENDING_ANNOUNCED: usize = 256 * 1024;

/// Where the handshake is.
enum Handshake {
    AwaitHello,
    /// `Welcome` chose this protocol version.
    AwaitAuth {
        version: u32,
    },
}

/// What the handshake hands to the authenticated phase: who, their events, and the protocol
/// version chosen.
type Ready = (Arc<Authed>, broadcast::Receiver<HubEvent>, u32);

/// A frame for the writer, and the memory it holds until it is written.
struct Outgoing {
    frame: Frame,
    held: Held,
}

impl Outgoing {
    fn small(frame: Frame) -> Outgoing {
        Outgoing { frame, held: Held::default() }
    }
}

type Out = mpsc::Sender<Outgoing>;

/// Why a connection ended; logged once.
enum Close {
    PeerClosed,
    Malformed(String),
    Idle,
    NotReading,
    Io(std::io::Error),
    Revoked,
    Disabled,
    LoggedOut,
    Handshake(String),
    Full,
}

/// How the writer task ended.
enum WriteEnd {
    /// Every sender is gone and everything was written.
    Done,
    /// The peer took none of our data for the stall timeout.
    Stalled,
    Failed,
}

/// Serves one connection; `handshake_deadline` is when it must have authenticated.
pub(crate) async fn serve<S>(
    shared: Arc<Shared>,
    stream: S,
    peer: SocketAddr,
    mut ticket: Ticket,
    handshake_deadline: Instant,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut rd, wr) = tokio::io::split(stream);
    let (out_tx, out_rx) = mpsc::channel::<Outgoing>(limits::MAX_IN_FLIGHT * 2);
    let pushes = Arc::new(Pushes::default());
    let writes = write_loop(wr, out_rx, pushes.clone(), shared.idle_timeout);
    let halting = shared.clone();
    let mut writer = tokio::spawn(async move { halting.unless_halted(writes).await.unwrap_or(WriteEnd::Failed) });
    let mut writer_done = false;
    let reason = tokio::select! {
        r = read_loop(&shared, &mut rd, &out_tx, &pushes, peer, &mut ticket, handshake_deadline) => r,
        // The writer ends first only if the peer stopped reading or the socket failed; the
        // reader may then be waiting for room in the queue, so it is dropped.
        w = &mut writer => {
            writer_done = true;
            match w {
                Ok(WriteEnd::Stalled) => Close::NotReading,
                _ => Close::PeerClosed,
            }
        }
    };
    match &reason {
        Close::PeerClosed => debug!(%peer, "connection closed by peer"),
        Close::Malformed(r) => warn!(%peer, "closing connection: malformed input: {r}"),
        Close::Idle => info!(%peer, "closing idle connection"),
        Close::NotReading => info!(%peer, "closing connection: the peer stopped reading what the server sends"),
        Close::Io(e) => debug!(%peer, "connection error: {e}"),
        Close::Revoked => info!(%peer, "closing connection of a revoked device"),
        Close::Disabled => info!(%peer, "closing connection of a disabled user"),
        Close::LoggedOut => info!(%peer, "device logged out"),
        Close::Handshake(r) => info!(%peer, "handshake failed: {r}"),
        Close::Full => warn!(%peer, "closing connection: the server holds as many devices' connections as it allows"),
    }
    drop(out_tx);
    // Let queued replies (an error explaining the close, say) reach the peer, but do not wait
    // on a peer that does not read: the socket closes when the writer is gone.
    if !writer_done && tokio::time::timeout(CLOSE_GRACE.min(shared.idle_timeout), &mut writer).await.is_err() {
        writer.abort();
    }
}

/// Pushes waiting for the writer, merged per folder (the highest seq wins), so that events
/// never wait on the reply queue and a slow reader costs a bounded set of them.
#[derive(Default)]
struct Pushes {
    /// A std mutex: it guards a map update, never an await.
    pending: Mutex<PendingPushes>,
    ready: Notify,
}

#[derive(Default)]
struct PendingPushes {
    folders: BTreeMap<u64, u64>,
    /// Too many folders, or missed events: tell the client to re-check all of them.
    everything: bool,
    /// Uploads in progress on the user's other devices, oldest first, and their chunk bytes.
    announced: std::collections::VecDeque<Arc<UploadProgress>>,
    announced_bytes: usize,
    /// Sent after the pushes, before the connection closes.
    last_word: Option<Frame>,
}

impl Pushes {
    fn folder_changed(&self, folder_id: u64, seq: u64) {
        let mut p = self.pending.lock().expect("push lock");
        if !p.everything {
            if p.folders.len() >= MAX_PENDING_FOLDERS && !p.folders.contains_key(&folder_id) {
                p.everything = true;
                p.folders.clear();
            } else {
                let s = p.folders.entry(folder_id).or_insert(seq);
                *s = (*s).max(seq);
            }
        }
        drop(p);
        self.ready.notify_one();
    }

    fn everything_changed(&self) {
        let mut p = self.pending.lock().expect("push lock");
        p.everything = true;
        p.folders.clear();
        drop(p);
        self.ready.notify_one();
    }

    fn announced(&self, u: Arc<UploadProgress>) {
        let mut p = self.pending.lock().expect("push lock");
        p.announced_bytes += u.chunks.len();
        p.announced.push_back(u);
        while p.announced_bytes > MAX_PENDING_ANNOUNCED {
            let Some(old) = p.announced.pop_front() else { break };
            p.announced_bytes -= old.chunks.len();
        }
        drop(p);
        self.ready.notify_one();
    }

    /// Sends `frame` after the pending pushes, unless a last word was already given.
    fn last_word(&self, frame: Frame) {
        self.pending.lock().expect("push lock").last_word.get_or_insert(frame);
        self.ready.notify_one();
    }

    /// The frames to send now, uploads in progress first (a commit that follows them is
    /// announced after them); a zero folder id tells the client to re-check all folders.
    fn take(&self) -> Vec<Frame> {
        let mut p = self.pending.lock().expect("push lock");
        p.announced_bytes = 0;
        let mut frames: Vec<Frame> = std::mem::take(&mut p.announced)
            .into_iter()
            .map(|u| Frame::new(0, Message::ChunksAnnounced(Arc::unwrap_or_clone(u))))
            .collect();
        if std::mem::take(&mut p.everything) {
            frames.push(push(0, 0));
        } else {
            frames.extend(std::mem::take(&mut p.folders).into_iter().map(|(folder, seq)| push(folder, seq)));
        }
        frames.extend(p.last_word.take());
        frames
    }
}

fn push(folder_id: u64, seq: u64) -> Frame {
    Frame::new(0, Message::FolderChanged(FolderChanged { folder_id, seq }))
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut rx: mpsc::Receiver<Outgoing>,
    pushes: Arc<Pushes>,
    stall: Duration,
) -> WriteEnd {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        let frames = tokio::select! {
            biased;
            _ = pushes.ready.notified() => pushes.take(),
            next = rx.recv() => match next {
                // The reply's memory is given back once it is written.
                Some(Outgoing { frame, held: _held }) => {
                    if let Err(end) = write_frame(&mut wr, &mut buf, &frame, stall).await {
                        return end;
                    }
                    Vec::new()
                }
                None => break,
            },
        };
        for frame in &frames {
            if let Err(end) = write_frame(&mut wr, &mut buf, frame, stall).await {
                return end;
            }
        }
        // Coalesce: only flush when nothing else is queued.
        if rx.is_empty() {
            match tokio::time::timeout(stall, wr.flush()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return WriteEnd::Failed,
                Err(_) => return WriteEnd::Stalled,
            }
        }
    }
    let _ = tokio::time::timeout(stall, async {
        let _ = wr.flush().await;
        let _ = wr.shutdown().await;
    })
    .await;
    WriteEnd::Done
}

async fn write_frame<W: AsyncWrite + Unpin>(
    wr: &mut W,
    buf: &mut BytesMut,
    frame: &Frame,
    stall: Duration,
) -> Result<(), WriteEnd> {
    buf.clear();
    if let Err(e) = frame.encode(buf) {
        warn!("reply to request {} is too large to send: {e}", frame.request_id);
        buf.clear();
        let msg = "the reply does not fit in one frame; ask for less at once";
        if error(frame.request_id, ErrorCode::TooLarge, msg).encode(buf).is_err() {
            return Ok(());
        }
    }
    let written = write_with_progress(wr, buf, stall).await;
    // Do not keep a large reply's buffer for the small frames that follow.
    if buf.capacity() > 1 << 20 {
        *buf = BytesMut::with_capacity(64 * 1024);
    }
    written
}

/// Writes all of `buf`, failing if the peer takes none of it for `stall` (a slow reader that
/// keeps taking some is fine, however large the frame).
async fn write_with_progress<W: AsyncWrite + Unpin>(
    wr: &mut W,
    mut buf: &[u8],
    stall: Duration,
) -> Result<(), WriteEnd> {
    while !buf.is_empty() {
        match tokio::time::timeout(stall, wr.write(buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Err(WriteEnd::Failed),
            Ok(Ok(n)) => buf = &buf[n..],
            Err(_) => return Err(WriteEnd::Stalled),
        }
    }
    Ok(())
}

fn error(id: u32, code: ErrorCode, msg: impl Into<String>) -> Frame {
    Frame::new(id, Message::Error(ErrorMsg::new(code, msg)))
}

async fn read_loop<R: AsyncRead + Unpin>(
    shared: &Arc<Shared>,
    rd: &mut R,
    out: &Out,
    pushes: &Pushes,
    peer: SocketAddr,
    ticket: &mut Ticket,
    deadline: Instant,
) -> Close {
    let mut dec = FrameDecoder::new();
    // One deadline for everything before `Session`: a peer that sends without reading blocks
    // the handshake on a full socket, and must be cut off all the same.
    let ready = match tokio::time::timeout_at(deadline, handshake(shared, rd, &mut dec, out, peer, ticket)).await {
        Ok(Ok(ready)) => ready,
        Ok(Err(close)) => return close,
        Err(_) => {
            let _ = out.try_send(Outgoing::small(error(0, ErrorCode::BadRequest, "handshake timed out")));
            return Close::Handshake("timed out".into());
        }
    };
    let (authed, events, version) = ready;
    let memory = ticket.memory().clone();
    // From here on a revocation or a disabled account closes the connection. One that landed
    // between the credential check and this line is caught by the admin watch (`admin.rs`),
    // which re-checks every registered connection when the store's admin generation moves.
    let (kick_tx, kick_rx) = watch::channel(None);
    let _registered = shared.hub.register(authed.user_id, authed.device.id, kick_tx);
    // Events and kicks are watched beside the requests, not between them: a reader waiting
    // for room in the reply queue or for memory is still closed at once.
    let conn = Authenticated { shared, authed: &authed, out, pushes, memory: &memory, peer };
    tokio::select! {
        close = requests(&conn, rd, &mut dec) => close,
        close = watch_events(events, pushes, Listener { device: authed.device.id, version }) => close,
        close = kicked(kick_rx, pushes) => close,
    }
}

/// Waits until the hub says this connection must close; the reason is the last word.
async fn kicked(mut kick: watch::Receiver<Option<Kick>>, pushes: &Pushes) -> Close {
    let why = kick.wait_for(Option::is_some).await.map(|k| *k);
    match why {
        Ok(Some(Kick::DeviceRevoked)) => {
            pushes.last_word(error(0, ErrorCode::InvalidToken, "this device was revoked"));
            Close::Revoked
        }
        Ok(Some(Kick::UserDisabled)) => {
            let msg = "this account was disabled by the server's operator";
            pushes.last_word(error(0, ErrorCode::AccountDisabled, msg));
            Close::Disabled
        }
        // The registration holds the sender for as long as this runs.
        _ => std::future::pending().await,
    }
}

/// Reads and answers frames until the client has authenticated.
async fn handshake<R: AsyncRead + Unpin>(
    shared: &Arc<Shared>,
    rd: &mut R,
    dec: &mut FrameDecoder,
    out: &Out,
    peer: SocketAddr,
    ticket: &mut Ticket,
) -> Result<Ready, Close> {
    let mut state = Handshake::AwaitHello;
    loop {
        // Drain every complete frame before reading more.
        loop {
            if let Some(len) = announced_len(dec)
                && len > MAX_UNAUTHENTICATED_FRAME as usize
            {
                return Err(Close::Malformed(format!("{len}-byte frame before authentication")));
            }
            let Some(frame) = next_frame(dec, out)? else { break };
            if let Some(ready) = on_handshake_frame(shared, &mut state, frame, out, peer, ticket).await? {
                // Frames already buffered behind this one belong to the authenticated phase.
                return Ok(ready);
            }
        }
        read_more(rd, dec).await?;
    }
}

/// The length in the header of the frame `dec` is receiving, once its header is in.
fn announced_len(dec: &mut FrameDecoder) -> Option<usize> {
    let b = dec.buffer_mut();
    (b.len() >= 4).then(|| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
}

/// The connection events are pushed to: its device and protocol version.
struct Listener {
    device: u64,
    version: u32,
}

/// Turns the user's hub events into pushes, for as long as the connection lives.
async fn watch_events(mut events: broadcast::Receiver<HubEvent>, pushes: &Pushes, me: Listener) -> Close {
    loop {
        match events.recv().await {
            Ok(HubEvent::FolderChanged { folder_id, seq }) => pushes.folder_changed(folder_id, seq),
            // Only to the other devices, and only to those that know the message.
            Ok(HubEvent::ChunksAnnounced(u)) => {
                if me.version >= PROTOCOL_VERSION_ANNOUNCE && u.device_id != me.device {
                    pushes.announced(u);
                }
            }
            // Missed events, here or in the store's notices: the client re-checks every folder.
            Ok(HubEvent::EverythingChanged) | Err(broadcast::error::RecvError::Lagged(_)) => {
                pushes.everything_changed()
            }
            Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
        }
    }
}

/// What the authenticated phase of a connection works with.
struct Authenticated<'a> {
    shared: &'a Arc<Shared>,
    authed: &'a Arc<Authed>,
    out: &'a Out,
    pushes: &'a Pushes,
    memory: &'a Memory,
    peer: SocketAddr,
}

/// Serves an authenticated connection's requests until it closes.
async fn requests<R: AsyncRead + Unpin>(conn: &Authenticated<'_>, rd: &mut R, dec: &mut FrameDecoder) -> Close {
    let Authenticated { shared, out, memory, peer, .. } = *conn;
    let in_flight = Arc::new(Semaphore::new(limits::MAX_IN_FLIGHT));
    let idle = shared.idle_timeout;
    let mut idle_deadline = Instant::now() + idle;
    // Bytes of unfinished frames received since the idle clock last restarted.
    let mut progress = 0usize;
    // Memory taken for the large frame being received.
    let mut receiving: Option<Held> = None;
    loop {
        loop {
            let frame = match next_frame(dec, out) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(close) => return close,
            };
            idle_deadline = Instant::now() + idle;
            progress = 0;
            let held = receiving.take().unwrap_or_default();
            if let Some(close) = on_request(conn, frame, held, &in_flight).await {
                return close;
            }
        }
        if receiving.is_none()
            && let Some(len) = announced_len(dec).filter(|len| *len > SMALL_FRAME)
        {
            // Wait for the memory before taking the bytes: the peer is held back by TCP.
            receiving = Some(memory.reserve(len + 4).await);
        }
        let before = dec.buffered();
        tokio::select! {
            r = read_more(rd, dec) => {
                if let Err(close) = r {
                    return close;
                }
                progress += dec.buffered().saturating_sub(before);
                if progress >= IDLE_PROGRESS_BYTES {
                    idle_deadline = Instant::now() + idle;
                    progress = 0;
                }
            }
            _ = tokio::time::sleep_until(idle_deadline) => {
                debug!(%peer, "no complete request for {idle:?}");
                return Close::Idle;
            }
        }
    }
}

/// The next complete frame in `dec`, if any; malformed input closes the connection.
fn next_frame(dec: &mut FrameDecoder, out: &Out) -> Result<Option<Frame>, Close> {
    dec.next_frame().map_err(|e| {
        let _ = out.try_send(Outgoing::small(error(0, ErrorCode::BadRequest, format!("malformed frame: {e}"))));
        Close::Malformed(e.to_string())
    })
}

/// Reads more bytes into `dec`; the end of the stream closes the connection.
async fn read_more<R: AsyncRead + Unpin>(rd: &mut R, dec: &mut FrameDecoder) -> Result<(), Close> {
    match rd.read_buf(dec.buffer_mut()).await {
        Ok(0) if dec.buffered() > 0 => {
            Err(Close::Malformed(format!("connection closed inside a frame ({} bytes)", dec.buffered())))
        }
        Ok(0) => Err(Close::PeerClosed),
        Ok(_) => Ok(()),
        Err(e) => Err(Close::Io(e)),
    }
}

/// Handles one frame before authentication; `Ok(Some)` once the client is authenticated.
async fn on_handshake_frame(
    shared: &Arc<Shared>,
    state: &mut Handshake,
    frame: Frame,
    out: &Out,
    peer: SocketAddr,
    ticket: &mut Ticket,
) -> Result<Option<Ready>, Close> {
    let id = frame.request_id;
    let send = |frame: Frame| out.send(Outgoing::small(frame));
    if id == 0 {
        let _ = send(error(0, ErrorCode::BadRequest, "request id 0 is reserved for pushes")).await;
        return Err(Close::Malformed("request with id 0".into()));
    }
    if let Message::Ping(_) = frame.message {
        let _ = send(Frame::new(id, Message::Pong(Default::default()))).await;
        return Ok(None);
    }
    match state {
        Handshake::AwaitHello => {
            let Message::Hello(h) = frame.message else {
                let _ = send(error(id, ErrorCode::BadRequest, "the first message must be Hello")).await;
                return Err(Close::Handshake(format!("expected Hello, got {}", frame.message.name())));
            };
            let version = PROTOCOL_VERSION_MAX.min(h.max_version);
            if version < PROTOCOL_VERSION_MIN || version < h.min_version {
                let older = if h.max_version < PROTOCOL_VERSION_MIN {
                    "this FileSync is older than the server's: update it"
                } else {
                    "the server's FileSync is older than this one: update the server"
                };
                let msg = format!(
                    "no common protocol version: client speaks {}..={}, server {}..={}; {older}",
                    h.min_version, h.max_version, PROTOCOL_VERSION_MIN, PROTOCOL_VERSION_MAX
                );
                let _ = send(error(id, ErrorCode::UnsupportedVersion, msg.clone())).await;
                return Err(Close::Handshake(msg));
            }
            debug!(%peer, client = %h.client_name, version, "hello");
            let welcome = Welcome {
                version,
                server_name: format!("filesync/{}", env!("CARGO_PKG_VERSION")),
                registration_open: shared.registration != crate::Registration::Closed,
            };
            let _ = send(Frame::new(id, Message::Welcome(welcome))).await;
            *state = Handshake::AwaitAuth { version };
            Ok(None)
        }
        Handshake::AwaitAuth { version } => {
            let version = *version;
            let result = match frame.message {
                Message::Register(r) => handlers::register(shared, r, peer).await,
                Message::Login(l) => handlers::login(shared, l, peer).await,
                Message::Auth(a) => handlers::auth(shared, a).await,
                other => Err(ErrorMsg::new(
                    ErrorCode::NotAuthenticated,
                    format!("{} needs an authenticated session: send Register, Login or Auth first", other.name()),
                )),
            };
            match result {
                Ok((mut authed, session)) => {
                    authed.version = version;
                    if ticket.authenticated().is_err() {
                        let msg = "the server is serving as many devices as it allows; try again in a few minutes";
                        let _ = send(error(id, ErrorCode::RateLimited, msg)).await;
                        return Err(Close::Full);
                    }
                    info!(%peer, user = %authed.user_name, device = authed.device.id, "authenticated");
                    let events = shared.hub.subscribe(authed.user_id);
                    let _ = send(Frame::new(id, Message::Session(session))).await;
                    Ok(Some((Arc::new(authed), events, version)))
                }
                Err(e) => {
                    let _ = send(Frame::new(id, Message::Error(e))).await;
                    Ok(None)
                }
            }
        }
    }
}

/// What a reply to `m` may need at most, reserved before `m` is handled.
fn reply_reservation(m: &Message) -> usize {
    match m {
        Message::QueryChunks(_)
        | Message::PutChunks(_)
        | Message::OpenFolder(_)
        | Message::RevokeDevice(_)
        | Message::RenameDevice(_)
        | Message::ChangePassword(_)
        | Message::Restore(_)
        | Message::AnnounceChunks(_)
        | Message::Usage(_) => SMALL_REPLY,
        _ => LARGE_REPLY,
    }
}

/// Handles one frame of an authenticated connection; returns `Some` when it must close.
/// `held` is the memory already taken for the frame's own bytes.
async fn on_request(
    conn: &Authenticated<'_>,
    frame: Frame,
    mut held: Held,
    in_flight: &Arc<Semaphore>,
) -> Option<Close> {
    let Authenticated { shared, authed, out, pushes, memory, .. } = *conn;
    let id = frame.request_id;
    let send = |frame: Frame| out.send(Outgoing::small(frame));
    if id == 0 {
        let _ = send(error(0, ErrorCode::BadRequest, "request id 0 is reserved for pushes")).await;
        return Some(Close::Malformed("request with id 0".into()));
    }
    match frame.message {
        Message::Ping(_) => {
            let _ = send(Frame::new(id, Message::Pong(Default::default()))).await;
            return None;
        }
        Message::Logout(_) => {
            // The reply is the last word, before the kick that closes the device's other
            // connections (and, should it win the race, this one) could be.
            let r = handlers::logout(shared, authed).await;
            pushes.last_word(Frame::new(id, r));
            shared.hub.close_device(authed.user_id, authed.device.id);
            return Some(Close::LoggedOut);
        }
        Message::Hello(_) | Message::Register(_) | Message::Login(_) | Message::Auth(_) => {
            let _ = send(error(id, ErrorCode::BadRequest, "already authenticated")).await;
            return None;
        }
        _ => {}
    }
    // Bound the work one connection can queue, in requests and in bytes; both are given back
    // when the reply has been handed to the writer (the permit) or written (the memory).
    let permit = match in_flight.clone().acquire_owned().await {
        Ok(p) => p,
        Err(_) => return Some(Close::PeerClosed),
    };
    held.absorb(memory.reserve(reply_reservation(&frame.message)).await);
    let shared = shared.clone();
    let authed = authed.clone();
    let out = out.clone();
    tokio::spawn(async move {
        let Some(reply) = shared.clone().unless_halted(handlers::request(&shared, &authed, frame.message)).await else {
            return;
        };
        let reply = Frame::new(id, reply);
        // The request is gone; what stays in memory is the reply.
        held.shrink_to(reply.encoded_len());
        let _ = out.send(Outgoing { frame: reply, held }).await;
        drop(permit);
    });
    None
}
