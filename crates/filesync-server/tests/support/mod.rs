//! Helpers shared by the server's integration tests: an in-process server on 127.0.0.1 and
//! small builders for protocol values.
#![allow(dead_code)]

use bytes::Bytes;
use filesync_client::{ClientError, Connection, ErrorCode, Trust};
use filesync_core::{Chunker, Hash};
use filesync_proto::WireEntry;
use filesync_proto::convert::{KIND_FILE, chunks_to_wire};
use filesync_server::maintenance::Maintenance;
use filesync_server::{Server, ServerConfig};
use std::path::PathBuf;

pub struct TestServer {
    pub addr: String,
    pub fingerprint: String,
    pub maintenance: Maintenance,
    pub data: PathBuf,
    _dir: tempfile::TempDir,
    _task: tokio::task::JoinHandle<()>,
}

/// A server with its own data directory, accepting registrations if `registration_open`.
pub async fn start_server(registration_open: bool) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut config = ServerConfig::new(&data);
    config.listen = "127.0.0.1:0".into();
    config.registration_open = registration_open;
    let server = Server::open(config).await.unwrap();
    let (addr, fingerprint) = (server.local_addr().to_string(), server.fingerprint().to_string());
    let maintenance = server.maintenance();
    let task = tokio::spawn(server.run(std::future::pending()));
    TestServer { addr, fingerprint, maintenance, data, _dir: dir, _task: task }
}

impl TestServer {
    pub async fn connect(&self) -> Connection {
        Connection::connect(&self.addr, Trust::Pinned(self.fingerprint.clone())).await.unwrap()
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
    let d = Chunker::default().digest_bytes(data);
    let w = WireEntry {
        path: path.into(),
        kind: KIND_FILE,
        size: d.size,
        hash: d.hash.as_bytes().to_vec(),
        chunks: chunks_to_wire(&d.chunks),
        ..Default::default()
    };
    (w, vec![(d.hash, Bytes::copy_from_slice(data))])
}
