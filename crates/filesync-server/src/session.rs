//! One client connection: the handshake state machine, the read loop, the writer task and the
//! fan-out of pushed events. Requests after authentication run concurrently (bounded per
//! connection); their replies are written in completion order, tagged with the request id.

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
use tracing::{debug, info, warn};

/// Frames larger than this are refused before authentication.
const MAX_UNAUTHENTICATED_FRAME: u32 = 64 * 1024;
/// A connection silent for this long is closed (clients ping every 30 s).
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Hello and authentication must complete within this time.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

enum State {
    AwaitHello,
    AwaitAuth,
    Ready(Arc<Authed>, broadcast::Receiver<HubEvent>),
}

/// Why a connection ended; logged once.
enum Close {
    PeerClosed,
    Malformed(String),
    Idle,
    Io(std::io::Error),
    Revoked,
    LoggedOut,
    Handshake(String),
}

pub(crate) async fn serve<S>(shared: Arc<Shared>, stream: S, peer: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut rd, wr) = tokio::io::split(stream);
    let (out_tx, out_rx) = mpsc::channel::<Frame>(limits::MAX_IN_FLIGHT * 2);
    let writer = tokio::spawn(write_loop(wr, out_rx));
    let reason = read_loop(&shared, &mut rd, &out_tx, peer).await;
    match &reason {
        Close::PeerClosed => debug!(%peer, "connection closed by peer"),
        Close::Malformed(r) => warn!(%peer, "closing connection: malformed input: {r}"),
        Close::Idle => info!(%peer, "closing idle connection"),
        Close::Io(e) => debug!(%peer, "connection error: {e}"),
        Close::Revoked => info!(%peer, "closing connection of a revoked device"),
        Close::LoggedOut => info!(%peer, "device logged out"),
        Close::Handshake(r) => info!(%peer, "handshake failed: {r}"),
    }
    drop(out_tx);
    // Let queued replies (an error explaining the close, say) reach the peer.
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
}

async fn write_loop<W: AsyncWrite + Unpin>(mut wr: W, mut rx: mpsc::Receiver<Frame>) {
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
        if wr.write_all(&buf).await.is_err() {
            return;
        }
        // Coalesce: only flush when nothing else is queued.
        if rx.is_empty() && wr.flush().await.is_err() {
            return;
        }
    }
    let _ = wr.flush().await;
    let _ = wr.shutdown().await;
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
    let mut state = State::AwaitHello;
    let in_flight = Arc::new(Semaphore::new(limits::MAX_IN_FLIGHT));
    let handshake_deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
    loop {
        // Drain every complete frame before reading more.
        loop {
            if !matches!(state, State::Ready(..)) && dec.buffered() >= 4 {
                let b = &dec.buffer_mut()[..4];
                let len = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                if len > MAX_UNAUTHENTICATED_FRAME {
                    return Close::Malformed(format!("{len}-byte frame before authentication"));
                }
            }
            let frame = match dec.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    let _ = out.try_send(error(0, ErrorCode::BadRequest, format!("malformed frame: {e}")));
                    return Close::Malformed(e.to_string());
                }
            };
            if let Some(close) = on_frame(shared, &mut state, frame, out, &in_flight, peer).await {
                return close;
            }
        }
        let timeout = match state {
            State::Ready(..) => tokio::time::Instant::now() + IDLE_TIMEOUT,
            _ => handshake_deadline,
        };
        let n = match &mut state {
            State::Ready(authed, events) => tokio::select! {
                r = rd.read_buf(dec.buffer_mut()) => r,
                ev = events.recv() => {
                    match ev {
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
                    }
                    continue;
                }
                _ = tokio::time::sleep_until(timeout) => return Close::Idle,
            },
            _ => tokio::select! {
                r = rd.read_buf(dec.buffer_mut()) => r,
                _ = tokio::time::sleep_until(timeout) => {
                    let _ = out.try_send(error(0, ErrorCode::BadRequest, "handshake timed out"));
                    return Close::Handshake("timed out".into());
                }
            },
        };
        match n {
            Ok(0) => {
                if dec.buffered() > 0 {
                    return Close::Malformed(format!("connection closed inside a frame ({} bytes)", dec.buffered()));
                }
                return Close::PeerClosed;
            }
            Ok(_) => {}
            Err(e) => return Close::Io(e),
        }
    }
}

/// Handles one frame; returns `Some` when the connection must close.
async fn on_frame(
    shared: &Arc<Shared>,
    state: &mut State,
    frame: Frame,
    out: &mpsc::Sender<Frame>,
    in_flight: &Arc<Semaphore>,
    peer: SocketAddr,
) -> Option<Close> {
    let id = frame.request_id;
    if id == 0 {
        let _ = out.send(error(0, ErrorCode::BadRequest, "request id 0 is reserved for pushes")).await;
        return Some(Close::Malformed("request with id 0".into()));
    }
    if let Message::Ping(_) = frame.message {
        let _ = out.send(Frame::new(id, Message::Pong(Default::default()))).await;
        return None;
    }
    match state {
        State::AwaitHello => {
            let Message::Hello(h) = frame.message else {
                let _ = out.send(error(id, ErrorCode::BadRequest, "the first message must be Hello")).await;
                return Some(Close::Handshake(format!("expected Hello, got {}", frame.message.name())));
            };
            let version = PROTOCOL_VERSION_MAX.min(h.max_version);
            if version < PROTOCOL_VERSION_MIN || version < h.min_version {
                let msg = format!(
                    "no common protocol version: client speaks {}..={}, server {}..={}",
                    h.min_version, h.max_version, PROTOCOL_VERSION_MIN, PROTOCOL_VERSION_MAX
                );
                let _ = out.send(error(id, ErrorCode::UnsupportedVersion, msg.clone())).await;
                return Some(Close::Handshake(msg));
            }
            debug!(%peer, client = %h.client_name, version, "hello");
            let welcome = Welcome {
                version,
                server_name: format!("filesync/{}", env!("CARGO_PKG_VERSION")),
                registration_open: shared.registration_open,
            };
            let _ = out.send(Frame::new(id, Message::Welcome(welcome))).await;
            *state = State::AwaitAuth;
            None
        }
        State::AwaitAuth => {
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
                    *state = State::Ready(Arc::new(authed), events);
                    let _ = out.send(Frame::new(id, Message::Session(session))).await;
                }
                Err(e) => {
                    let _ = out.send(Frame::new(id, Message::Error(e))).await;
                }
            }
            None
        }
        State::Ready(authed, _) => {
            match frame.message {
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
            // Bound the work one connection can queue; the permit is released when the reply
            // has been handed to the writer.
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
    }
}
