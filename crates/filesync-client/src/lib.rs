//! The client side of the FileSync protocol: connects over TLS to a server whose certificate
//! is pinned, performs the handshake, and offers typed requests of which many can be in
//! flight at once on one connection. Server pushes arrive on a channel.
//!
//! This crate refuses to know about local folders or sync decisions; the agent and the CLI
//! build on it.

mod conn;
mod counting;
mod tls;

pub use conn::{Connection, Push};
pub use counting::WireStats;
pub use filesync_proto::ErrorCode;
pub use tls::{Trust, client_config};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the server at {addr}: {source} (is the server running, and is the address right?)")]
    Connect { addr: String, source: std::io::Error },
    #[error("TLS handshake with {addr} failed: {reason}")]
    Tls { addr: String, reason: String },
    #[error(
        "the server certificate changed since this computer first logged in: it was {expected}, it is now {actual}. \
         If the server's certificate was replaced on purpose, log in again with `filesync login --fingerprint {actual}`; \
         otherwise someone may be intercepting the connection"
    )]
    FingerprintMismatch { expected: String, actual: String },
    #[error("{message}")]
    Server { code: Option<ErrorCode>, message: String },
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("connection to the server lost: {0}")]
    Disconnected(String),
    #[error("the server did not answer within {0} seconds")]
    Timeout(u64),
}

impl ClientError {
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
