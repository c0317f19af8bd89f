//! One client connection: the handshake state machine, the read loop, the writer task and the
//! fan-out of pushed events. Requests after authentication run concurrently (bounded per
//! connection); their replies are written in completion order, tagged with the request id.
//!
//! Every deadline holds whatever the peer does, including not reading: the whole handshake
//! (reads, handling, and writes that a full socket would block) runs under one timeout; after
//! it, the idle rule counts only complete frames (or 64 KiB of a large one), so a trickle of
//! bytes does not keep a connection; and the writer gives up on a peer that takes none of its
//! data for the idle timeout, which ends the session even while the reader waits on the writer.

use crate::Shared;
use crate::handlers::{self, Authed};
use crate::hub::HubEvent;
use bytes::BytesMut;
use filesync_proto::{
    ErrorCode, ErrorMsg, FolderChanged, Frame, FrameDecoder, Message, PROTOCOL_VERSION_MAX, PROTOCOL_VERSION_MIN,
    Welcome, limits,
};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Semaphore, broadcast, mpsc};
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// Frames larger than this are refused before authentication.
const MAX_UNAUTHENTICATED_FRAME: u32 = 64 * 1024;
/// Received bytes of an unfinished frame that count as activity, like a complete frame: a
/// large upload on a slow link is not idle, a byte now and then is.
const IDLE_PROGRESS_BYTES: usize = 64 * 1024;
/// How long queued replies may take to reach the peer once the session has ended.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Where the handshake is.
enum Handshake {
    AwaitHello,
    AwaitAuth,
}

/// What the handshake hands to the authenticated phase.
type Ready = (Arc<Authed>, broadcast::Receiver<HubEvent>);

/// Why a connection ended; logged once.
enum Close {
    PeerClosed,
    Malformed(String),
    Idle,
    NotReading,
    Io(std::io::Error),
    Revoked,
    LoggedOut,
    Handshake(String),
}

/// How the writer task ended.
enum WriteEnd {
    /// Every sender is gone and everything was written.
    Done,
    /// The peer took none of our data for the stall timeout.
    Stalled,
    Failed,
}

pub(crate) async fn serve<S>(shared: Arc<Shared>, stream: S, peer: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut rd, wr) = tokio::io::split(stream);
    let (out_tx, out_rx) = mpsc::channel::<Frame>(limits::MAX_IN_FLIGHT * 2);
    let mut writer = tokio::spawn(write_loop(wr, out_rx, shared.idle_timeout));
    let mut writer_done = false;
    let reason = tokio::select! {
        r = read_loop(&shared, &mut rd, &out_tx, peer) => r,
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
        Close::LoggedOut => info!(%peer, "device logged out"),
        Close::Handshake(r) => info!(%peer, "handshake failed: {r}"),
    }
    drop(out_tx);
    // Let queued replies (an error explaining the close, say) reach the peer, but do not wait
    // on a peer that does not read: the socket closes when the writer is gone.
    if !writer_done && tokio::time::timeout(CLOSE_GRACE.min(shared.idle_timeout), &mut writer).await.is_err() {
        writer.abort();
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(mut wr: W, mut rx: mpsc::Receiver<Frame>, stall: Duration) -> WriteEnd {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    while let Some(frame) = rx.recv().await {
        buf.clear();
        if let Err(e) = frame.encode(&mut buf) {
            warn!("reply to request {} is too large to send: {e}", frame.request_id);
            buf.clear();
            let msg = "the reply does not fit in one frame; ask for less at once";
            if error(frame.request_id, ErrorCode::TooLarge, msg).encode(&mut buf).is_err() {
                continue;
            }
        }
        if let Err(end) = write_with_progress(&mut wr, &buf, stall).await {
            return end;
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
    out: &mpsc::Sender<Frame>,
    peer: SocketAddr,
) -> Close {
    let mut dec = FrameDecoder::new();
    // One deadline for everything before `Session`: a peer that sends without reading blocks
    // the handshake on a full socket, and must be cut off all the same.
    let deadline = Instant::now() + shared.handshake_timeout;
    let ready = match tokio::time::timeout_at(deadline, handshake(shared, rd, &mut dec, out, peer)).await {
        Ok(Ok(ready)) => ready,
        Ok(Err(close)) => return close,
        Err(_) => {
            let _ = out.try_send(error(0, ErrorCode::BadRequest, "handshake timed out"));
            return Close::Handshake("timed out".into());
        }
    };
    authenticated(shared, rd, &mut dec, out, peer, ready).await
}

/// Reads and answers frames until the client has authenticated.
async fn handshake<R: AsyncRead + Unpin>(
    shared: &Arc<Shared>,
    rd: &mut R,
    dec: &mut FrameDecoder,
    out: &mpsc::Sender<Frame>,
    peer: SocketAddr,
) -> Result<Ready, Close> {
    let mut state = Handshake::AwaitHello;
    loop {
        // Drain every complete frame before reading more.
        loop {
            if dec.buffered() >= 4 {
                let b = &dec.buffer_mut()[..4];
                let len = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                if len > MAX_UNAUTHENTICATED_FRAME {
                    return Err(Close::Malformed(format!("{len}-byte frame before authentication")));
                }
            }
            let Some(frame) = next_frame(dec, out)? else { break };
            if let Some(ready) = on_handshake_frame(shared, &mut state, frame, out, peer).await? {
                // Frames already buffered behind this one belong to the authenticated phase.
                return Ok(ready);
            }
        }
        read_more(rd, dec).await?;
    }
}

/// Serves an authenticated connection until it closes.
async fn authenticated<R: AsyncRead + Unpin>(
    shared: &Arc<Shared>,
    rd: &mut R,
    dec: &mut FrameDecoder,
    out: &mpsc::Sender<Frame>,
    peer: SocketAddr,
    (authed, mut events): Ready,
) -> Close {
    let in_flight = Arc::new(Semaphore::new(limits::MAX_IN_FLIGHT));
    let idle = shared.idle_timeout;
    let mut idle_deadline = Instant::now() + idle;
    // Bytes of unfinished frames received since the idle clock last restarted.
    let mut progress = 0usize;
    loop {
        loop {
            let frame = match next_frame(dec, out) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(close) => return close,
            };
            idle_deadline = Instant::now() + idle;
            progress = 0;
            if let Some(close) = on_request(shared, &authed, frame, out, &in_flight).await {
                return close;
            }
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
            ev = events.recv() => match ev {
                Ok(HubEvent::FolderChanged { folder_id, seq }) => {
                    let push = Frame::new(0, Message::FolderChanged(FolderChanged { folder_id, seq }));
                    if out.send(push).await.is_err() {
                        return Close::PeerClosed;
                    }
                }
                Ok(HubEvent::DeviceRevoked { device_id }) if device_id == authed.device.id => {
                    let _ = out.send(error(0, ErrorCode::InvalidToken, "this device was revoked")).await;
                    return Close::Revoked;
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Missed pushes: a zero folder id tells the client to re-check all folders.
                    let push = Frame::new(0, Message::FolderChanged(FolderChanged { folder_id: 0, seq: 0 }));
                    let _ = out.send(push).await;
                }
                Err(broadcast::error::RecvError::Closed) => {}
            },
            _ = tokio::time::sleep_until(idle_deadline) => {
                debug!(%peer, "no complete request for {idle:?}");
                return Close::Idle;
            }
        }
    }
}

/// The next complete frame in `dec`, if any; malformed input closes the connection.
fn next_frame(dec: &mut FrameDecoder, out: &mpsc::Sender<Frame>) -> Result<Option<Frame>, Close> {
    dec.next_frame().map_err(|e| {
        let _ = out.try_send(error(0, ErrorCode::BadRequest, format!("malformed frame: {e}")));
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
    out: &mpsc::Sender<Frame>,
    peer: SocketAddr,
) -> Result<Option<Ready>, Close> {
    let id = frame.request_id;
    if id == 0 {
        let _ = out.send(error(0, ErrorCode::BadRequest, "request id 0 is reserved for pushes")).await;
        return Err(Close::Malformed("request with id 0".into()));
    }
    if let Message::Ping(_) = frame.message {
        let _ = out.send(Frame::new(id, Message::Pong(Default::default()))).await;
        return Ok(None);
    }
    match state {
        Handshake::AwaitHello => {
            let Message::Hello(h) = frame.message else {
                let _ = out.send(error(id, ErrorCode::BadRequest, "the first message must be Hello")).await;
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
                let _ = out.send(error(id, ErrorCode::UnsupportedVersion, msg.clone())).await;
                return Err(Close::Handshake(msg));
            }
            debug!(%peer, client = %h.client_name, version, "hello");
            let welcome = Welcome {
                version,
                server_name: format!("filesync/{}", env!("CARGO_PKG_VERSION")),
                registration_open: shared.registration_open,
            };
            let _ = out.send(Frame::new(id, Message::Welcome(welcome))).await;
            *state = Handshake::AwaitAuth;
            Ok(None)
        }
        Handshake::AwaitAuth => {
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
                Ok((authed, session)) => {
                    info!(%peer, user = %authed.user_name, device = authed.device.id, "authenticated");
                    let events = shared.hub.subscribe(authed.user_id);
                    let _ = out.send(Frame::new(id, Message::Session(session))).await;
                    Ok(Some((Arc::new(authed), events)))
                }
                Err(e) => {
                    let _ = out.send(Frame::new(id, Message::Error(e))).await;
                    Ok(None)
                }
            }
        }
    }
}

/// Handles one frame of an authenticated connection; returns `Some` when it must close.
async fn on_request(
    shared: &Arc<Shared>,
    authed: &Arc<Authed>,
    frame: Frame,
    out: &mpsc::Sender<Frame>,
    in_flight: &Arc<Semaphore>,
) -> Option<Close> {
    let id = frame.request_id;
    if id == 0 {
        let _ = out.send(error(0, ErrorCode::BadRequest, "request id 0 is reserved for pushes")).await;
        return Some(Close::Malformed("request with id 0".into()));
    }
    match frame.message {
        Message::Ping(_) => {
            let _ = out.send(Frame::new(id, Message::Pong(Default::default()))).await;
            return None;
        }
        Message::Logout(_) => {
            let r = handlers::logout(shared, authed).await;
            let _ = out.send(Frame::new(id, r)).await;
            return Some(Close::LoggedOut);
        }
        Message::Hello(_) | Message::Register(_) | Message::Login(_) | Message::Auth(_) => {
            let _ = out.send(error(id, ErrorCode::BadRequest, "already authenticated")).await;
            return None;
        }
        _ => {}
    }
    // Bound the work one connection can queue; the permit is released when the reply has been
    // handed to the writer.
    let permit = match in_flight.clone().acquire_owned().await {
        Ok(p) => p,
        Err(_) => return Some(Close::PeerClosed),
    };
    let shared = shared.clone();
    let authed = authed.clone();
    let out = out.clone();
    tokio::spawn(async move {
        let reply = handlers::request(&shared, &authed, frame.message).await;
        let _ = out.send(Frame::new(id, reply)).await;
        drop(permit);
    });
    None
}
