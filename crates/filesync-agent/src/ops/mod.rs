//! Every action a person can take, as one library call shared by the command line and the
//! local web UI: log in or register, log out, list and revoke devices, link and unlink
//! folders, change folder settings, list and resolve conflicts, revert, sync now, browse
//! history and the trash and restore, read a file's bytes for a preview or a download. Each
//! runs in a [`Session`] (configuration, state database, connection). What an action returns
//! is a typed, serialisable view — the same value `--json` prints and the HTTP API sends.
//! Callers format the results; nothing here prints or prompts.
//!
//! Invariant: the CLI and the UI never re-implement an action; they call these functions.
//! Invariant: the views hold domain values, never `filesync_proto` messages.

pub mod account;
pub mod conflicts;
pub mod content;
pub mod folders;
pub mod history;
pub mod plain;
pub mod revert;
pub mod session;
pub mod settings;
pub mod sync;
pub mod trash;

use crate::agent::control::{ControlError, ControlRequest};
use crate::config::{Config, Home};
use filesync_client::{ClientError, Connection};
use std::path::PathBuf;
use std::time::Duration;

pub use session::{LocalSync, Session};
pub use sync::{SyncNow, sync_now};

/// Why an action failed, with what a person needs to fix it.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// A value a person typed is not acceptable; `field` names the form field.
    #[error("{message}")]
    Invalid { field: &'static str, message: String },
    #[error(
        "this computer is not logged in; log in first (`filesync login`, or the first-run screen of `filesync ui`)"
    )]
    NotLoggedIn,
    #[error("{0}")]
    NotFound(String),
    /// The action cannot be done in the current state; the message says what to do first.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error(transparent)]
    Sync(#[from] crate::engine::SyncError),
    #[error(transparent)]
    Agent(#[from] crate::agent::AgentError),
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
}

impl OpsError {
    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> OpsError {
        OpsError::Invalid { field, message: message.into() }
    }
}

/// Connects to the server this computer is logged in to, with its token: a [`Session`] for
/// an action that needs only the configuration and the connection.
pub async fn connect(home: &Home) -> Result<(Config, Connection), OpsError> {
    let session = Session::open(home)?;
    let conn = session.connection().await?.clone();
    Ok((session.into_config(), conn))
}

/// Tells the agent running for `home`, at once, about a change a command made (`Reload` after
/// the configuration changed, `Sync` after a request was stored for a folder). Returns
/// `Ok(false)` when no agent runs. The change itself is already on disk, so an agent that
/// does not hear this still finds it: the configuration within seconds, a folder's request
/// on its next sync.
pub async fn tell_agent(home: &Home, request: ControlRequest) -> Result<bool, ControlError> {
    if !crate::agent::HomeLock::is_held(home) {
        return Ok(false);
    }
    crate::agent::control::send(home, request).await.map(|()| true)
}

/// Asks the running agent to carry out the request stored for folder `name` (a revert,
/// confirmed deletions) and waits until it has, at most `timeout`.
pub async fn agent_carries_out(home: &Home, name: &str, timeout: Duration) -> Result<(), OpsError> {
    if let Err(e) = tell_agent(home, ControlRequest::Sync { folder: name.to_string() }).await {
        return Err(OpsError::Refused(format!(
            "{e}; the request is stored, and the agent carries it out on its next sync of {name}"
        )));
    }
    let session = Session::open(home)?;
    let db = session.db().await?;
    let deadline = tokio::time::Instant::now() + timeout;
    while crate::engine::policy::request_pending(db, name).await? {
        if tokio::time::Instant::now() > deadline {
            return Err(OpsError::Refused(format!(
                "the agent has not carried it out after {} s; see `filesync status` (it will still do it)",
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// [`tell_agent`] that the configuration changed, for callers that have nothing to add when
/// the agent cannot hear it (it reads the files again within two seconds).
pub async fn configuration_changed(home: &Home) {
    if let Err(e) = tell_agent(home, ControlRequest::Reload).await {
        tracing::debug!("the agent applies the change within seconds: {e}");
    }
}
