//! The client side of the FileSync protocol: connects over TLS to a server whose certificate
//! is pinned, performs the handshake, and offers typed requests of which many can be in
//! flight at once on one connection. Server pushes arrive on a channel.
//!
//! This crate refuses to know about local folders or sync decisions; the agent and the CLI
//! build on it.

mod conn;
mod counting;
mod tls;

pub use conn::{Announced, ChunkRequest, ChunkUpload, Connection, Push};
pub use counting::WireStats;
pub use filesync_proto::ErrorCode;
pub use tls::{Trust, client_config};

/// What went wrong talking to the server. `Display` is one plain sentence and what to do, for
/// people (the CLI and the UI show it as it is); [`ClientError::detail`] keeps the underlying
/// library or system text, for logs.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the server at {addr}: {}", unreachable(cause))]
    Connect { addr: String, cause: std::io::Error },
    #[error(
        "{addr} did not answer as a FileSync server (no secure connection could be set up); check the address and \
         the port: it may belong to another program"
    )]
    Tls { addr: String, reason: String },
    #[error(
        "the server's certificate changed since this computer first logged in: it was {expected}, it is now {actual}. \
         If the server's certificate was replaced on purpose, log in again and confirm the new fingerprint; \
         otherwise someone may be intercepting the connection, and nothing was sent"
    )]
    FingerprintMismatch { expected: String, actual: String },
    #[error("{message}")]
    Server { code: Option<ErrorCode>, message: String },
    #[error(
        "the server sent something this version of FileSync does not understand; make sure this computer and the \
         server run the same version of FileSync"
    )]
    Protocol(String),
    #[error(
        "the connection to the server was lost (the server stopped, or the network dropped); check that the server \
         is running, then try again (the agent retries by itself)"
    )]
    Disconnected(String),
    #[error(
        "the server did not answer within {0} seconds (it may be overloaded, or the network slow); try again in a \
         moment (the agent retries by itself)"
    )]
    Timeout(u64),
}

/// Why a connection could not be made, in plain words, with what to check.
fn unreachable(e: &std::io::Error) -> &'static str {
    use std::io::ErrorKind as K;
    let text = e.to_string().to_ascii_lowercase();
    // Name resolution errors carry no kind of their own (getaddrinfo on Unix, WSA on Windows).
    let lookup = ["lookup address", "name or service not known", "no such host", "nodename nor servname"];
    if lookup.iter().any(|l| text.contains(l)) {
        return "its name could not be found; check the spelling of the address, and that this computer is online";
    }
    match e.kind() {
        K::ConnectionRefused => {
            "nothing answers on that port; check that the FileSync server is running and the port is right"
        }
        K::TimedOut => {
            "it did not answer; check the address, and that this computer is on the same network as the server"
        }
        K::HostUnreachable | K::NetworkUnreachable | K::NetworkDown => {
            "this computer has no route to it; check the network connection"
        }
        K::AddrNotAvailable | K::InvalidInput => "the address is not valid; check it",
        K::PermissionDenied => {
            "the connection was blocked (a firewall?); check that FileSync may connect to the network"
        }
        _ => "the connection failed; check the address, and that the server is running",
    }
}

impl ClientError {
    /// The underlying library or system error, for logs; `None` when the message says it all.
    pub fn detail(&self) -> Option<String> {
        match self {
            ClientError::Connect { cause, .. } => Some(cause.to_string()),
            ClientError::Tls { reason, .. } => Some(reason.clone()),
            ClientError::Protocol(r) | ClientError::Disconnected(r) => Some(r.clone()),
            _ => None,
        }
    }

    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server { code, .. } => *code,
            _ => None,
        }
    }

    /// True for failures that may go away by retrying later (network, server restart).
    pub fn is_transient(&self) -> bool {
        matches!(self, ClientError::Connect { .. } | ClientError::Disconnected(_) | ClientError::Timeout(_))
            || matches!(self.code(), Some(ErrorCode::Internal | ErrorCode::RateLimited | ErrorCode::StorageFull))
    }

    /// True when this device's credentials are no longer accepted (a disabled account
    /// included: retrying does not help until the operator enables it again).
    pub fn is_auth_failure(&self) -> bool {
        matches!(
            self.code(),
            Some(
                ErrorCode::InvalidToken
                    | ErrorCode::NotAuthenticated
                    | ErrorCode::BadCredentials
                    | ErrorCode::AccountDisabled
            )
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// What a person must never read: library, system and command-line text.
    fn assert_plain(e: &ClientError) {
        let m = e.to_string();
        for internal in ["os error", "docs.rs", "rustls", "close_notify", "InvalidContentType", "corrupt message", "`"]
        {
            assert!(!m.contains(internal), "{internal:?} in {m:?}");
        }
    }

    async fn connect(addr: &str) -> ClientError {
        match Connection::connect(addr, Trust::FirstUse).await {
            Err(e) => e,
            Ok(_) => panic!("connected to {addr}"),
        }
    }

    #[tokio::test]
    async fn a_port_where_nothing_listens_says_so_in_plain_words() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        drop(l);
        let e = connect(&addr).await;
        assert!(matches!(e, ClientError::Connect { .. }), "{e:?}");
        assert!(e.to_string().contains("nothing answers on that port"), "{e}");
        assert!(e.detail().unwrap().contains("refused"), "{:?}", e.detail());
        assert!(e.is_transient());
        assert_plain(&e);
    }

    #[tokio::test]
    async fn a_port_of_another_program_is_not_called_a_tls_failure() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n").await;
            }
        });
        let e = connect(&addr).await;
        assert!(matches!(e, ClientError::Tls { .. }), "{e:?}");
        assert!(e.to_string().contains("did not answer as a FileSync server"), "{e}");
        assert_plain(&e);
    }

    #[test]
    fn every_error_a_person_can_meet_reads_as_plain_words() {
        let io = |kind, text: &str| std::io::Error::new(kind, text.to_string());
        use std::io::ErrorKind as K;
        let cases = [
            (
                ClientError::Connect {
                    addr: "nas:7443".into(),
                    cause: io(K::Other, "failed to lookup address information: Name or service not known"),
                },
                "could not be found",
            ),
            (ClientError::Connect { addr: "nas:7443".into(), cause: io(K::TimedOut, "timed out") }, "did not answer"),
            (
                ClientError::Connect { addr: "nas:7443".into(), cause: io(K::NetworkUnreachable, "os error 101") },
                "no route",
            ),
            (
                ClientError::Disconnected(
                    "peer closed connection without sending TLS close_notify: https://docs.rs/rustls/latest/rustls/manual/_03_howto/index.html#unexpected-eof".into(),
                ),
                "connection to the server was lost",
            ),
            (ClientError::Protocol("expected Ok, got Pong".into()), "same version"),
            (ClientError::Timeout(15), "did not answer within 15 seconds"),
            (
                ClientError::FingerprintMismatch { expected: "SHA256:aa".into(), actual: "SHA256:bb".into() },
                "log in again and confirm the new fingerprint",
            ),
        ];
        for (e, says) in cases {
            assert!(e.to_string().contains(says), "{e} does not say {says:?}");
            assert_plain(&e);
        }
    }
}
