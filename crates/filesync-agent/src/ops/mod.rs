//! Every action a person can take, as one library call shared by the command line and the
//! local web UI: log in or register, log out, list and revoke devices, link and unlink
//! folders, change folder settings, list and resolve conflicts, browse history and the trash
//! and restore, read a file's bytes for a preview or a download. Callers format the results;
//! nothing here prints or prompts.
//!
//! Invariant: the CLI and the UI never re-implement an action; they call these functions.

pub mod account;
pub mod conflicts;
pub mod content;
pub mod folders;
pub mod history;
pub mod plain;
pub mod revert;
pub mod settings;
pub mod trash;

use crate::agent::control::{ControlError, ControlRequest};
use crate::config::{Config, FolderConfig, Home};
use crate::engine::{Engine, PassReport};
use crate::fs::RealFs;
use crate::state::StateDb;
use crate::status::Progress;
use filesync_client::{ClientError, Connection};
use std::path::PathBuf;
use std::sync::Arc;

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

/// Connects to the server this computer is logged in to, with its token.
pub async fn connect(home: &Home) -> Result<(Config, Connection), OpsError> {
    let config = home.load()?;
    if config.server.is_none() || home.token()?.is_none() {
        return Err(OpsError::NotLoggedIn);
    }
    let conn = crate::agent::connect(home, &config).await?;
    Ok((config, conn))
}

/// What happened when an action asked for its change to be synced now.
pub enum SyncNow {
    /// The running agent picks the change up by itself.
    AgentRunning,
    Done(Box<PassReport>),
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

/// [`tell_agent`] that the configuration changed, for callers that have nothing to add when
/// the agent cannot hear it (it reads the files again within two seconds).
pub async fn configuration_changed(home: &Home) {
    if let Err(e) = tell_agent(home, ControlRequest::Reload).await {
        tracing::debug!("the agent applies the change within seconds: {e}");
    }
}

/// Runs one sync pass of `folder` unless an agent runs for this home (then it is asked to).
pub async fn sync_now(home: &Home, folder: &FolderConfig) -> Result<SyncNow, OpsError> {
    let _lock = match crate::agent::HomeLock::acquire(home) {
        Ok(l) => l,
        Err(crate::agent::AgentError::AlreadyRunning(_)) => {
            let _ = tell_agent(home, ControlRequest::Sync { folder: folder.name.clone() }).await;
            return Ok(SyncNow::AgentRunning);
        }
        Err(e) => return Err(e.into()),
    };
    let (config, conn) = connect(home).await?;
    let db = StateDb::open(&home.state_path()).await?;
    let engine = Engine::new(conn, db, config.device_name.clone().unwrap_or_default());
    let fs = Arc::new(RealFs::new(folder.path.clone()));
    let report = engine.sync_folder(folder, fs, &Progress::default()).await?;
    Ok(SyncNow::Done(Box::new(report)))
}
