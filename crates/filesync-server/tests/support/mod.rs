//! Helpers shared by the server's integration tests: an in-process server on 127.0.0.1, a raw
//! frame client that can connect from any loopback address, and small builders for protocol
//! values.
#![allow(dead_code)]

use bytes::Bytes;
use filesync_client::{ClientError, Connection, ErrorCode, Trust};
use filesync_core::{Chunker, Hash};
use filesync_proto::convert::{KIND_FILE, chunks_to_wire};
use filesync_proto::{
    Frame, FrameDecoder, Hello, Login, Message, PROTOCOL_VERSION_MAX, PROTOCOL_VERSION_MIN, Register, WireEntry,
};
use filesync_server::maintenance::Maintenance;
use filesync_server::passwords::PasswordWork;
use filesync_server::{MemoryGauge, Registration, Server, ServerConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;

pub struct TestServer {
    pub addr: String,
    pub fingerprint: String,
    pub maintenance: Maintenance,
    pub passwords: Arc<PasswordWork>,
    pub memory: MemoryGauge,
    pub data: PathBuf,
    dir: tempfile::TempDir,
    shutdown: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

/// A server with its own data directory, accepting registrations if `registration_open`.
pub async fn start_server(registration_open: bool) -> TestServer {
    start_with(|c| c.registration = if registration_open { Registration::Open } else { Registration::Closed }).await
}

/// A server with its own data directory and the configuration `f` makes.
pub async fn start_with(f: impl FnOnce(&mut ServerConfig)) -> TestServer {
    start_in(tempfile::tempdir().unwrap(), f).await
}

/// A server whose data directory is `dir/data` (which may hold an earlier server's data).
pub async fn start_in(dir: tempfile::TempDir, f: impl FnOnce(&mut ServerConfig)) -> TestServer {
    let data = dir.path().join("data");
    let mut config = ServerConfig::new(&data);
    config.listen = "127.0.0.1:0".into();
    f(&mut config);
    let server = Server::open(config).await.unwrap();
    let (addr, fingerprint) = (server.local_addr().to_string(), server.fingerprint().to_string());
    let (maintenance, passwords, memory) = (server.maintenance(), server.password_work(), server.memory());
    let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = stop.await;
    }));
    TestServer { addr, fingerprint, maintenance, passwords, memory, data, dir, shutdown, task }
}

impl TestServer {
    pub async fn connect(&self) -> Connection {
        Connection::connect(&self.addr, Trust::Pinned(self.fingerprint.clone())).await.unwrap()
    }

    /// Stops accepting connections and hands back the directory holding the data.
    pub async fn stop(self) -> tempfile::TempDir {
        let _ = self.shutdown.send(());
        self.task.await.unwrap();
        self.dir
    }

    /// A TLS stream to this server from `local_ip` (on Linux any 127.x.y.z address is local),
    /// pinned to the server's certificate, before any frame.
    pub async fn tls_from(&self, local_ip: &str) -> TlsStream<TcpStream> {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(local_ip.parse().unwrap(), 0)).unwrap();
        let tcp = socket.connect(self.addr.parse().unwrap()).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let config = filesync_client::client_config(Trust::Pinned(self.fingerprint.clone())).unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.unwrap()
    }

    /// A plain TCP connection to this server from `local_ip`, before any TLS.
    pub async fn tcp_from(&self, local_ip: &str) -> TcpStream {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(local_ip.parse().unwrap(), 0)).unwrap();
        socket.connect(self.addr.parse().unwrap()).await.unwrap()
    }

    /// A client speaking raw frames from `local_ip`, after Hello.
    pub async fn raw_from(&self, local_ip: &str) -> RawClient {
        self.raw_speaking(local_ip, PROTOCOL_VERSION_MAX).await
    }

    /// A client speaking raw frames from `local_ip`, after a Hello offering versions up to
    /// `max_version`.
    pub async fn raw_speaking(&self, local_ip: &str, max_version: u32) -> RawClient {
        let mut c = RawClient { stream: self.tls_from(local_ip).await, dec: FrameDecoder::new(), next_id: 1 };
        let hello = Hello { min_version: PROTOCOL_VERSION_MIN, max_version, client_name: "test".into() };
        assert!(matches!(c.request(Message::Hello(hello)).await, Message::Welcome(w) if w.version == max_version));
        c
    }
}

/// Raw frames over TLS, one request at a time (pushes are skipped).
pub struct RawClient {
    pub stream: TlsStream<TcpStream>,
    dec: FrameDecoder,
    next_id: u32,
}

impl RawClient {
    /// Sends `message` and does not wait for the reply.
    pub async fn send(&mut self, message: Message) {
        let id = self.next_id;
        self.next_id += 1;
        self.stream.write_all(&Frame::new(id, message).to_bytes().unwrap()).await.unwrap();
        self.stream.flush().await.unwrap();
    }

    /// The next frame the server pushes (request id 0), waiting at most `wait`.
    pub async fn next_push(&mut self, wait: std::time::Duration) -> Option<Message> {
        tokio::time::timeout(wait, async {
            loop {
                while let Some(f) = self.dec.next_frame().unwrap() {
                    if f.request_id == 0 {
                        return f.message;
                    }
                }
                let n = self.stream.read_buf(self.dec.buffer_mut()).await.unwrap();
                assert!(n > 0, "the server closed the connection");
            }
        })
        .await
        .ok()
    }

    pub async fn request(&mut self, message: Message) -> Message {
        let id = self.next_id;
        self.next_id += 1;
        self.stream.write_all(&Frame::new(id, message).to_bytes().unwrap()).await.unwrap();
        self.stream.flush().await.unwrap();
        loop {
            while let Some(f) = self.dec.next_frame().unwrap() {
                if f.request_id == id {
                    return f.message;
                }
            }
            let n = self.stream.read_buf(self.dec.buffer_mut()).await.unwrap();
            assert!(n > 0, "the server closed the connection");
        }
    }

    pub async fn login(&mut self, user: &str, password: &str) -> Message {
        self.request(Message::Login(Login {
            user: user.into(),
            password: password.into(),
            device_name: "raw".into(),
            ..Default::default()
        }))
        .await
    }

    pub async fn register(&mut self, user: &str, password: &str) -> Message {
        let r =
            Register { user: user.into(), password: password.into(), device_name: "raw".into(), invite: String::new() };
        self.request(Message::Register(r)).await
    }
}

/// The error code of a reply, or `None` if it is not an error.
pub fn reply_code(m: &Message) -> Option<ErrorCode> {
    match m {
        Message::Error(e) => ErrorCode::from_u32(e.code),
        _ => None,
    }
}

/// The error code of a request that must fail.
pub fn code(r: Result<impl std::fmt::Debug, ClientError>) -> Option<ErrorCode> {
    match r {
        Err(e) => e.code(),
        Ok(v) => panic!("expected an error, got {v:?}"),
    }
}

/// A file entry for `data` at `path`, and the chunks to upload for it.
pub fn file_entry(path: &str, data: &[u8]) -> (WireEntry, Vec<(Hash, Bytes)>) {
    let mut chunks = Vec::new();
    let d = Chunker::default()
        .digest_with(data, |_, c, bytes| {
            chunks.push((c.hash, Bytes::copy_from_slice(bytes)));
            Ok(())
        })
        .unwrap();
    let w = WireEntry {
        path: path.into(),
        kind: KIND_FILE,
        size: d.size,
        hash: d.hash.as_bytes().to_vec(),
        chunks: chunks_to_wire(&d.chunks),
        ..Default::default()
    };
    (w, chunks)
}
