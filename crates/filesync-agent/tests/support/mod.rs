//! Helpers shared by the agent's integration tests: a real FileSync server running in this
//! process on 127.0.0.1, with its data in a temporary directory.

/// A running in-process server; stops (and forgets its data) when dropped.
pub struct Server {
    pub addr: String,
    pub fingerprint: String,
    _dir: tempfile::TempDir,
    _task: tokio::task::JoinHandle<()>,
}

/// Starts a server with the default settings on a free port.
pub async fn server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut config = filesync_server::ServerConfig::new(dir.path().join("data"));
    config.listen = "127.0.0.1:0".into();
    let s = filesync_server::Server::open(config).await.unwrap();
    let (addr, fingerprint) = (s.local_addr().to_string(), s.fingerprint().to_string());
    Server { addr, fingerprint, _dir: dir, _task: tokio::spawn(s.run(std::future::pending())) }
}
