//! The running agent's control endpoint: how a `filesync` command in another process reaches
//! the agent at once instead of waiting for it to notice a file.
//!
//! The agent listens on a loopback TCP port and writes the port and a random key to
//! `agent.control` in its home, readable only by the home's owner. A command connects, sends
//! one line of JSON (`{"key": …, "request": …}`) and reads one line back. Requests are hints,
//! never the only copy: what they ask for is already in the state database or the
//! configuration file, where the agent also finds it on its next pass or configuration check.

use crate::config::Home;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// What a command asks of the running agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ControlRequest {
    /// Sync folder `folder` now, with whatever requests its state database holds.
    Sync { folder: String },
    /// The configuration or the login on disk changed: apply it now.
    Reload,
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    key: String,
    request: ControlRequest,
}

#[derive(Debug, Serialize, Deserialize)]
struct Reply {
    ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Where a running agent says how to reach it.
#[derive(Serialize, Deserialize)]
struct Endpoint {
    port: u16,
    key: String,
    pid: u32,
}

/// Why a command could not reach the running agent.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("the agent does not say how to reach it (no {0}); is it running?")]
    NoEndpoint(String),
    #[error("the agent did not answer: {0}")]
    Unreachable(String),
    #[error("the agent refused the request: {0}")]
    Refused(String),
}

/// A request is one short line; anything longer is not ours.
const MAX_LINE: u64 = 4096;
const TIMEOUT: Duration = Duration::from_secs(5);

/// The agent's side: the listener and the key its callers must show.
pub struct ControlServer {
    listener: TcpListener,
    key: String,
    home: Home,
}

impl ControlServer {
    /// Binds a loopback port and publishes it, with a fresh key, in the home.
    pub async fn bind(home: &Home) -> std::io::Result<ControlServer> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let key: String = (0..32).map(|_| format!("{:02x}", rand::random::<u8>())).collect();
        let endpoint = Endpoint { port: listener.local_addr()?.port(), key: key.clone(), pid: std::process::id() };
        let json = serde_json::to_vec(&endpoint).expect("endpoint serializes");
        crate::config::write_atomic(&home.control_path(), &json, true).map_err(std::io::Error::other)?;
        Ok(ControlServer { listener, key, home: home.clone() })
    }

    /// Serves callers until dropped, passing each accepted request to `handle`.
    pub async fn serve(self, handle: impl Fn(ControlRequest) -> Result<(), String> + Clone + Send + 'static) {
        loop {
            let Ok((stream, _)) = self.listener.accept().await else { continue };
            let key = self.key.clone();
            let handle = handle.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(TIMEOUT, answer(stream, &key, handle)).await;
            });
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.home.control_path());
    }
}

async fn answer(stream: TcpStream, key: &str, handle: impl Fn(ControlRequest) -> Result<(), String>) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read).take(MAX_LINE);
    if reader.read_line(&mut line).await.is_err() {
        return;
    }
    let reply = match serde_json::from_str::<Envelope>(line.trim_end()) {
        Err(e) => Reply { ok: false, error: Some(format!("malformed request: {e}")) },
        Ok(env) if !constant_time_eq(env.key.as_bytes(), key.as_bytes()) => {
            Reply { ok: false, error: Some("wrong key".into()) }
        }
        Ok(env) => match handle(env.request) {
            Ok(()) => Reply { ok: true, error: None },
            Err(e) => Reply { ok: false, error: Some(e) },
        },
    };
    let mut out = serde_json::to_vec(&reply).expect("reply serializes");
    out.push(b'\n');
    let _ = write.write_all(&out).await;
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A command's side: hands `request` to the agent running for `home`.
pub async fn send(home: &Home, request: ControlRequest) -> Result<(), ControlError> {
    let path = home.control_path();
    let bytes = std::fs::read(&path).map_err(|_| ControlError::NoEndpoint(path.display().to_string()))?;
    let endpoint: Endpoint =
        serde_json::from_slice(&bytes).map_err(|_| ControlError::NoEndpoint(path.display().to_string()))?;
    let talk = async {
        let stream = TcpStream::connect(("127.0.0.1", endpoint.port)).await?;
        let (read, mut write) = stream.into_split();
        let mut line = serde_json::to_vec(&Envelope { key: endpoint.key, request }).expect("request serializes");
        line.push(b'\n');
        write.write_all(&line).await?;
        let mut answer = String::new();
        BufReader::new(read).take(MAX_LINE).read_line(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(TIMEOUT, talk)
        .await
        .map_err(|_| ControlError::Unreachable(format!("no answer within {} s", TIMEOUT.as_secs())))?
        .map_err(|e| ControlError::Unreachable(e.to_string()))?;
    let reply: Reply = serde_json::from_str(answer.trim_end())
        .map_err(|_| ControlError::Unreachable("it closed the connection without an answer".into()))?;
    match reply {
        Reply { ok: true, .. } => Ok(()),
        Reply { error, .. } => Err(ControlError::Refused(error.unwrap_or_default())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[tokio::test]
    async fn a_request_reaches_the_handler_and_a_wrong_key_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        home.ensure().unwrap();
        assert!(matches!(send(&home, ControlRequest::Reload).await, Err(ControlError::NoEndpoint(_))));

        let seen = Arc::new(Mutex::new(Vec::new()));
        let server = ControlServer::bind(&home).await.unwrap();
        let log = seen.clone();
        let serving = tokio::spawn(server.serve(move |r| {
            if r == (ControlRequest::Sync { folder: "nope".into() }) {
                return Err("no folder named nope".into());
            }
            log.lock().unwrap().push(r);
            Ok(())
        }));
        send(&home, ControlRequest::Sync { folder: "docs".into() }).await.unwrap();
        send(&home, ControlRequest::Reload).await.unwrap();
        let e = send(&home, ControlRequest::Sync { folder: "nope".into() }).await.unwrap_err();
        assert!(e.to_string().contains("no folder named nope"), "{e}");
        assert_eq!(*seen.lock().unwrap(), [ControlRequest::Sync { folder: "docs".into() }, ControlRequest::Reload]);

        // Someone who cannot read the home's endpoint file cannot ask anything.
        let mut endpoint: Endpoint = serde_json::from_slice(&std::fs::read(home.control_path()).unwrap()).unwrap();
        endpoint.key = "0".repeat(64);
        std::fs::write(home.control_path(), serde_json::to_vec(&endpoint).unwrap()).unwrap();
        let e = send(&home, ControlRequest::Reload).await.unwrap_err();
        assert!(e.to_string().contains("wrong key"), "{e}");
        // Garbage gets an error line, not a hang.
        let mut s = TcpStream::connect(("127.0.0.1", endpoint.port)).await.unwrap();
        s.write_all(b"{not json\n").await.unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).await.unwrap();
        assert!(line.contains("malformed request"), "{line}");
        assert_eq!(seen.lock().unwrap().len(), 2);

        serving.abort();
        let _ = serving.await;
        assert!(!home.control_path().exists(), "the endpoint file goes with the agent");
    }
}
