//! Syncing now, without waiting for the agent: one folder after a person's action (a resolved
//! conflict, a restore), and every folder (`filesync sync`), with the typed report that
//! `filesync sync --json` prints.

use super::OpsError;
use super::session::LocalSync;
use crate::agent::control::ControlRequest;
use crate::config::{FolderConfig, Home};
use crate::engine::PassReport;
use crate::status::{Progress, SkippedItem};
use serde::Serialize;

/// What happened when an action asked for its change to be synced now.
pub enum SyncNow {
    /// The running agent picks the change up by itself.
    AgentRunning,
    Done(Box<PassReport>),
}

/// Runs one sync pass of `folder` unless an agent runs for this home (then it is asked to).
pub async fn sync_now(home: &Home, folder: &FolderConfig) -> Result<SyncNow, OpsError> {
    let Some(local) = LocalSync::start(home)? else {
        let _ = super::tell_agent(home, ControlRequest::Sync { folder: folder.name.clone() }).await;
        return Ok(SyncNow::AgentRunning);
    };
    let report = local.sync_folder(folder, &Progress::default()).await?;
    Ok(SyncNow::Done(Box::new(report)))
}

/// What one folder's sync did, as `filesync sync --json` reports it.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct FolderSyncReport {
    pub name: String,
    /// No file failed and the sync itself did not.
    pub ok: bool,
    pub uploaded: u64,
    pub downloaded: u64,
    pub deleted_local: u64,
    pub deleted_remote: u64,
    pub conflicts: u64,
    pub bytes_up: u64,
    pub bytes_down: u64,
    /// Files in sync after the pass, and their bytes.
    pub files: u64,
    pub bytes: u64,
    pub errors: Vec<SkippedItem>,
    pub skipped: Vec<SkippedItem>,
    /// Why the folder did not sync, when it is paused (by the person or the mass-delete guard).
    pub paused: Option<String>,
    /// Why the whole sync of the folder failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl FolderSyncReport {
    pub fn new(name: &str, r: &Result<PassReport, OpsError>) -> FolderSyncReport {
        match r {
            Ok(rep) => FolderSyncReport {
                name: name.to_string(),
                ok: rep.errors.is_empty(),
                uploaded: rep.uploaded,
                downloaded: rep.downloaded,
                deleted_local: rep.deleted_local,
                deleted_remote: rep.deleted_remote,
                conflicts: rep.conflicts,
                bytes_up: rep.bytes_up,
                bytes_down: rep.bytes_down,
                files: rep.files,
                bytes: rep.bytes,
                errors: rep.errors.clone(),
                skipped: rep.skipped.clone(),
                paused: rep.paused.as_ref().map(|p| p.reason.clone()),
                error: None,
            },
            Err(e) => FolderSyncReport { name: name.to_string(), error: Some(e.to_string()), ..Default::default() },
        }
    }
}

/// Bytes on the wire, both ways.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Wire {
    pub sent: u64,
    pub received: u64,
}

/// What `filesync sync` did.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct SyncReport {
    /// Every folder synced without a failure, and none is held by the mass-delete guard.
    pub ok: bool,
    pub folders: Vec<FolderSyncReport>,
    pub wire: Wire,
}

/// Whether a folder's result makes `filesync sync` fail: a failure, or deletions held by the
/// guard (a pause by the person does not).
pub fn failed(r: &Result<PassReport, OpsError>) -> bool {
    match r {
        Ok(rep) => !rep.errors.is_empty() || rep.paused.as_ref().is_some_and(|p| p.by_guard),
        Err(_) => true,
    }
}
