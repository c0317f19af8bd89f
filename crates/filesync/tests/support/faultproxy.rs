//! A fault-injecting TCP proxy for end-to-end tests: put it between real clients and a real
//! server and, from the test, add latency, cap the bandwidth, stall a direction (for a while or
//! until told otherwise), half-close, cut (FIN both ways) or reset (RST) every connection, or
//! cut/reset at a chosen byte of a direction. It runs on a tokio runtime of its own, so that
//! synchronous tests drive it through plain method calls.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// A direction of traffic through the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Client to server: uploads.
    Up,
    /// Server to client: downloads.
    Down,
}

impl Dir {
    fn i(self) -> usize {
        self as usize
    }
}

/// What happens to a connection at a trigger's byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kill {
    /// Both sockets closed normally (FIN).
    Cut,
    /// Both sockets closed with `SO_LINGER` 0: the peers get a RST.
    Reset,
    /// The direction stops forwarding on that connection, forever, with nothing closed.
    Stall,
    /// The direction's receiver gets FIN; the other direction keeps flowing.
    HalfClose,
}

/// A one-shot or repeated end of connections at a byte count of one direction.
#[derive(Clone, Copy, Debug)]
struct Trigger {
    /// The direction's byte count (over all connections) at which it fires.
    at: u64,
    kill: Kill,
    /// Fire again this many bytes later (repeated cuts); `None`: once.
    every: Option<u64>,
}

#[derive(Clone, Debug, Default)]
struct Faults {
    latency: [Duration; 2],
    /// Bytes per second; `None`: as fast as the sockets go.
    rate: [Option<u64>; 2],
    /// Stalled until this instant (`None`: not stalled); far in the future means "forever".
    stalled_until: [Option<Instant>; 2],
    trigger: [Option<Trigger>; 2],
}

/// What a connection is told to do by the test.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct ConnOrder {
    kill: Option<Kill>,
    /// Stalled directions of this connection only (for ever).
    stalled: [bool; 2],
    /// Half-close: stop forwarding this direction and send FIN to its receiver.
    half_closed: [bool; 2],
}

struct Shared {
    faults: Mutex<Faults>,
    /// Bytes forwarded per direction, over all connections.
    bytes: [AtomicU64; 2],
    /// Bumped on every change of `faults`, to wake stalled pumps.
    changed: watch::Sender<u64>,
    conns: Mutex<HashMap<u64, watch::Sender<ConnOrder>>>,
    accepted: AtomicU64,
    /// Connections ended by the proxy (cut, reset, triggers).
    killed: AtomicU64,
}

/// The proxy; stops (dropping every connection) when dropped.
pub struct FaultProxy {
    pub addr: String,
    shared: Arc<Shared>,
    rt: Option<tokio::runtime::Runtime>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// The receive buffer of the proxy's sockets.
const SOCKET_BUFFER: u32 = 128 * 1024;
/// Bytes one direction of a connection holds between reading and writing them.
const IN_FLIGHT: usize = 512 * 1024;

async fn connect_upstream(addr: &str) -> std::io::Result<TcpStream> {
    let addr: std::net::SocketAddr = addr.parse().map_err(std::io::Error::other)?;
    let socket = TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(SOCKET_BUFFER)?;
    socket.connect(addr).await
}

/// "Forever" for a stall: far enough that no test outlives it.
const FOREVER: Duration = Duration::from_secs(365 * 24 * 3600);

impl FaultProxy {
    /// Listens on a free port of 127.0.0.1 and forwards each connection to `upstream`.
    pub fn start(upstream: &str) -> FaultProxy {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        // Small receive buffers, and at most `IN_FLIGHT` bytes held per direction: a capped link
        // then pushes back on its sender as a real bottleneck does, instead of swallowing
        // megabytes at once.
        let listener = rt
            .block_on(async {
                let socket = TcpSocket::new_v4()?;
                socket.set_recv_buffer_size(SOCKET_BUFFER)?;
                socket.bind("127.0.0.1:0".parse().unwrap())?;
                socket.listen(128)
            })
            .unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let shared = Arc::new(Shared {
            faults: Mutex::new(Faults::default()),
            bytes: [AtomicU64::new(0), AtomicU64::new(0)],
            changed: watch::channel(0).0,
            conns: Mutex::new(HashMap::new()),
            accepted: AtomicU64::new(0),
            killed: AtomicU64::new(0),
        });
        let upstream = upstream.to_string();
        let sh = shared.clone();
        rt.spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else { continue };
                let id = sh.accepted.fetch_add(1, Ordering::SeqCst);
                let sh = sh.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(server) = connect_upstream(&upstream).await else { return };
                    serve(sh, id, client, server).await;
                });
            }
        });
        FaultProxy { addr, shared, rt: Some(rt) }
    }

    fn change(&self, f: impl FnOnce(&mut Faults)) {
        f(&mut self.shared.faults.lock().unwrap());
        self.shared.changed.send_modify(|g| *g += 1);
    }

    fn order_all(&self, f: impl Fn(&mut ConnOrder)) {
        for tx in self.shared.conns.lock().unwrap().values() {
            tx.send_modify(&f);
        }
    }

    /// Delays every byte of `dir` by `d` (throughput is unchanged).
    pub fn set_latency(&self, dir: Dir, d: Duration) {
        self.change(|f| f.latency[dir.i()] = d);
    }

    /// Caps `dir` at `bytes_per_sec`; `None` lifts the cap.
    pub fn set_bandwidth(&self, dir: Dir, bytes_per_sec: Option<u64>) {
        self.change(|f| f.rate[dir.i()] = bytes_per_sec);
    }

    /// Stops forwarding `dir` on every connection, without closing anything, until
    /// [`FaultProxy::resume`].
    pub fn stall(&self, dir: Dir) {
        self.stall_for(dir, FOREVER);
    }

    /// Stops forwarding `dir` for `d`, without closing anything.
    pub fn stall_for(&self, dir: Dir, d: Duration) {
        self.change(|f| f.stalled_until[dir.i()] = Some(Instant::now() + d));
    }

    /// Forwards `dir` again (also on connections stalled by [`FaultProxy::stall_current`]).
    pub fn resume(&self, dir: Dir) {
        self.change(|f| f.stalled_until[dir.i()] = None);
        self.order_all(|o| o.stalled[dir.i()] = false);
    }

    /// Stalls `dir` of the connections open now, for ever: new connections flow.
    pub fn stall_current(&self, dir: Dir) {
        self.order_all(|o| o.stalled[dir.i()] = true);
    }

    /// Half-closes `dir` on every current connection: its receiver gets FIN (end of stream),
    /// while the other direction keeps flowing. New connections are not affected.
    pub fn half_close(&self, dir: Dir) {
        self.order_all(|o| o.half_closed[dir.i()] = true);
    }

    /// Closes both sides of every current connection (FIN).
    pub fn cut_all(&self) {
        self.order_all(|o| o.kill = Some(Kill::Cut));
    }

    /// Resets both sides of every current connection (RST).
    pub fn reset_all(&self) {
        self.order_all(|o| o.kill = Some(Kill::Reset));
    }

    /// Once `n` more bytes of `dir` have passed (over all connections), forwards exactly those
    /// and resets the connection that carried the last one.
    pub fn reset_at_byte(&self, dir: Dir, n: u64) {
        self.at_byte(dir, n, Kill::Reset, None);
    }

    /// As [`FaultProxy::reset_at_byte`], closing with FIN instead.
    pub fn cut_at_byte(&self, dir: Dir, n: u64) {
        self.at_byte(dir, n, Kill::Cut, None);
    }

    /// Once `n` more bytes of `dir` have passed, stalls `dir` of the connection that carried
    /// the last one, for ever, closing nothing (other and new connections flow).
    pub fn stall_at_byte(&self, dir: Dir, n: u64) {
        self.at_byte(dir, n, Kill::Stall, None);
    }

    /// Once `n` more bytes of `dir` have passed, half-closes `dir` of the connection that
    /// carried the last one: its receiver gets FIN, the other direction flows on.
    pub fn half_close_at_byte(&self, dir: Dir, n: u64) {
        self.at_byte(dir, n, Kill::HalfClose, None);
    }

    /// Ends the connection carrying `dir` every `n` bytes of it, with `kill`, until
    /// [`FaultProxy::clear_triggers`].
    pub fn kill_every(&self, dir: Dir, n: u64, kill: Kill) {
        self.at_byte(dir, n, kill, Some(n));
    }

    fn at_byte(&self, dir: Dir, n: u64, kill: Kill, every: Option<u64>) {
        assert!(n > 0);
        let now = self.shared.bytes[dir.i()].load(Ordering::SeqCst);
        self.change(|f| f.trigger[dir.i()] = Some(Trigger { at: now + n, kill, every }));
    }

    /// Whether the trigger of `dir` set by `reset_at_byte`/`cut_at_byte` has fired.
    pub fn fired(&self, dir: Dir) -> bool {
        self.shared.faults.lock().unwrap().trigger[dir.i()].is_none()
    }

    pub fn clear_triggers(&self) {
        self.change(|f| f.trigger = [None, None]);
    }

    /// Lifts every fault: no latency, cap, stall or trigger.
    pub fn heal(&self) {
        self.change(|f| *f = Faults::default());
    }

    /// Bytes forwarded in `dir` so far, over all connections.
    pub fn bytes(&self, dir: Dir) -> u64 {
        self.shared.bytes[dir.i()].load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Connections the proxy ended (cuts, resets, triggers) so far.
    pub fn killed(&self) -> u64 {
        self.shared.killed.load(Ordering::SeqCst)
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.shared.conns.lock().unwrap().len()
    }
}

/// One item of a direction's pipeline from its reader to its writer.
enum Item {
    /// Bytes, to be written at `due` (read time plus latency).
    Data { bytes: Vec<u8>, due: Instant },
    /// End the connection once what came before is written.
    Kill(Kill),
}

async fn serve(sh: Arc<Shared>, id: u64, client: TcpStream, server: TcpStream) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (order_tx, order_rx) = watch::channel(ConnOrder::default());
    sh.conns.lock().unwrap().insert(id, order_tx.clone());
    let (crd, cwr) = client.into_split();
    let (srd, swr) = server.into_split();
    // Each pump ends at its end of stream, its half-close, or the connection's kill (which
    // ends both); the sockets close when both have dropped their halves.
    let up = pump(sh.clone(), Dir::Up, crd, swr, order_rx.clone(), order_tx.clone());
    let down = pump(sh.clone(), Dir::Down, srd, cwr, order_rx.clone(), order_tx);
    tokio::join!(up, down);
    if order_rx.borrow().kill.is_some() {
        sh.killed.fetch_add(1, Ordering::SeqCst);
    }
    sh.conns.lock().unwrap().remove(&id);
}

/// Resolves once the connection is told to end or to half-close `dir`.
async fn ended(orders: &mut watch::Receiver<ConnOrder>, dir: Dir) {
    loop {
        {
            let o = orders.borrow_and_update();
            if o.kill.is_some() || o.half_closed[dir.i()] {
                return;
            }
        }
        if orders.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Forwards one direction: a reader that counts bytes and fires triggers, a channel that
/// carries the latency, and a writer that paces the bandwidth. Stalls stop both. At the end, a
/// reset leaves the write half with `SO_LINGER` 0 and no FIN (the socket closes with RST); any
/// other end sends FIN.
async fn pump(
    sh: Arc<Shared>,
    dir: Dir,
    mut rd: OwnedReadHalf,
    mut wr: OwnedWriteHalf,
    orders: watch::Receiver<ConnOrder>,
    order_tx: watch::Sender<ConnOrder>,
) {
    let (tx, mut rx) = mpsc::channel::<Item>(256);
    let budget = tokio::sync::Semaphore::new(IN_FLIGHT);
    let reader = async {
        let mut stall_orders = orders.clone();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            wait_not_stalled(&sh, dir, &mut stall_orders).await;
            // Read no further than the next trigger, so that it fires at its exact byte.
            let limit = {
                let f = sh.faults.lock().unwrap();
                let sent = sh.bytes[dir.i()].load(Ordering::SeqCst);
                f.trigger[dir.i()].map_or(buf.len() as u64, |t| t.at.saturating_sub(sent).max(1))
            };
            let want = (limit as usize).min(buf.len());
            let n = tokio::select! {
                r = rd.read(&mut buf[..want]) => match r { Ok(0) | Err(_) => 0, Ok(n) => n },
                _ = changed(&sh) => continue,
            };
            if n == 0 {
                return; // end of stream: the writer passes the FIN on.
            }
            let (due, fire) = {
                let mut f = sh.faults.lock().unwrap();
                let total = sh.bytes[dir.i()].fetch_add(n as u64, Ordering::SeqCst) + n as u64;
                let due = Instant::now() + f.latency[dir.i()];
                let fire = match f.trigger[dir.i()] {
                    Some(t) if total >= t.at => {
                        f.trigger[dir.i()] = t.every.map(|e| Trigger { at: total + e, ..t });
                        Some(t.kill)
                    }
                    _ => None,
                };
                (due, fire)
            };
            // Held until the writer has written them.
            match budget.acquire_many(n as u32).await {
                Ok(p) => p.forget(),
                Err(_) => return,
            }
            if tx.send(Item::Data { bytes: buf[..n].to_vec(), due }).await.is_err() {
                return;
            }
            if let Some(k) = fire {
                let _ = tx.send(Item::Kill(k)).await;
                if k != Kill::Stall {
                    std::future::pending::<()>().await; // the writer ends the connection
                }
            }
        }
    };
    let writer = async {
        let mut stall_orders = orders.clone();
        while let Some(item) = rx.recv().await {
            match item {
                Item::Kill(k) => {
                    order_tx.send_modify(|o| match k {
                        Kill::Cut | Kill::Reset => o.kill = Some(k),
                        Kill::Stall => o.stalled[dir.i()] = true,
                        Kill::HalfClose => o.half_closed[dir.i()] = true,
                    });
                    if k == Kill::Stall {
                        continue; // the next write waits
                    }
                    std::future::pending::<()>().await; // ended by the order
                }
                Item::Data { bytes, due } => {
                    tokio::time::sleep_until(due).await;
                    let mut at = 0;
                    while at < bytes.len() {
                        wait_not_stalled(&sh, dir, &mut stall_orders).await;
                        let rate = sh.faults.lock().unwrap().rate[dir.i()];
                        // With a cap, write in slices of a tenth of a second's worth.
                        let left = bytes.len() - at;
                        let slice = rate.map_or(left, |r| ((r / 10).max(1) as usize).min(left));
                        let started = Instant::now();
                        if wr.write_all(&bytes[at..at + slice]).await.is_err() {
                            return;
                        }
                        at += slice;
                        if let Some(r) = rate {
                            tokio::time::sleep_until(started + Duration::from_secs_f64(slice as f64 / r as f64)).await;
                        }
                    }
                    budget.add_permits(bytes.len());
                }
            }
        }
        // The reader ended (end of stream): what it read is written, pass the FIN on.
    };
    let mut watch = orders.clone();
    tokio::select! {
        _ = async { tokio::join!(reader, writer) } => {}
        _ = ended(&mut watch, dir) => {}
    }
    let kill = watch.borrow().kill;
    if kill == Some(Kill::Reset) {
        let _ = socket2::SockRef::from(wr.as_ref()).set_linger(Some(Duration::ZERO));
        wr.forget(); // no FIN: closing the socket sends RST
    } else {
        let _ = wr.shutdown().await;
    }
    drop(rd);
}

/// Resolves when the faults change.
async fn changed(sh: &Shared) {
    let mut rx = sh.changed.subscribe();
    let _ = rx.changed().await;
}

/// Waits while `dir` is stalled (the pump's caller ends it on a kill or half-close).
async fn wait_not_stalled(sh: &Shared, dir: Dir, orders: &mut watch::Receiver<ConnOrder>) {
    loop {
        if orders.borrow_and_update().stalled[dir.i()] {
            if orders.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
            continue;
        }
        let until = sh.faults.lock().unwrap().stalled_until[dir.i()];
        let Some(until) = until.filter(|u| *u > Instant::now()) else { return };
        let mut rx = sh.changed.subscribe();
        tokio::select! {
            _ = tokio::time::sleep_until(until) => {}
            _ = rx.changed() => {}
            _ = orders.changed() => {}
        }
    }
}
