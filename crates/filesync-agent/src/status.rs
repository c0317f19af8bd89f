//! What the agent reports about itself and each folder: written to `status.json` by the
//! running agent (or by `filesync sync`) and read by `filesync status`.

use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FolderState {
    Idle,
    Syncing,
    Error,
    Offline,
    /// Paused by the user, or by the mass-delete guard (`FolderStatus::paused_reason` says which).
    Paused,
}

impl std::fmt::Display for FolderState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FolderState::Idle => "idle",
            FolderState::Syncing => "syncing",
            FolderState::Error => "error",
            FolderState::Offline => "offline",
            FolderState::Paused => "paused",
        })
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SkippedItem {
    pub path: String,
    pub reason: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FolderStatus {
    pub name: String,
    pub path: String,
    pub state: FolderState,
    /// Files in sync (local files with a synced base).
    pub files: u64,
    /// Bytes of those files.
    pub bytes: u64,
    /// Changes planned but not yet done.
    pub pending: u64,
    /// Conflict copies present in the folder.
    pub conflicts: u64,
    /// Unix seconds of the last completed pass.
    pub last_sync: Option<i64>,
    pub last_error: Option<String>,
    /// Why the folder is paused (by the user, or the mass-delete guard and what to do).
    #[serde(default)]
    pub paused_reason: Option<String>,
    #[serde(default)]
    pub skipped: Vec<SkippedItem>,
    /// Files that failed to sync and why, until a pass that looks at them again succeeds (a
    /// pass over other paths leaves them standing). `last_error` sums up the first three.
    #[serde(default)]
    pub errors: Vec<SkippedItem>,
    #[serde(default)]
    pub progress: Option<ProgressSnapshot>,
    /// True only when nothing is queued, running or due, this computer has pulled everything
    /// the server announced, and nothing is held back or failing; otherwise `waiting` says why.
    #[serde(default)]
    pub in_sync: bool,
    #[serde(default)]
    pub waiting: Vec<String>,
    /// The server journal revision this computer has pulled up to, and the newest one the
    /// server announced.
    #[serde(default)]
    pub local_rev: u64,
    #[serde(default)]
    pub server_rev: u64,
    /// Unix milliseconds of the last completed pass.
    #[serde(default)]
    pub last_sync_ms: Option<i64>,
    /// The last pass could not upload some files because the account is over its storage
    /// quota on the server (`last_error` has the server's figures).
    #[serde(default)]
    pub over_quota: bool,
    /// Unix milliseconds when the next scheduled pass is due, for a folder synced on an
    /// interval (`every 5m`, `hourly`…); `None` for a continuous or paused folder.
    #[serde(default)]
    pub next_sync_at_ms: Option<i64>,
    /// Files held back because they changed while they were read (still being written):
    /// they are read again shortly, and the folder is not in sync meanwhile.
    #[serde(default)]
    pub changing: Vec<String>,
    /// Excluded subfolders still on this computer, and why their copy here cannot go yet
    /// (see [`crate::kept`]).
    #[serde(default)]
    pub kept: Vec<KeptSubfolder>,
}

/// An excluded subfolder still on this computer, and why.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeptSubfolder {
    pub path: String,
    /// "3 files in it are ignored by your rules, so FileSync cannot tell they are safely on the
    /// server".
    pub reason: String,
}

impl FolderStatus {
    /// A folder the agent knows nothing about yet.
    pub fn new(name: &str, path: &str, state: FolderState) -> FolderStatus {
        FolderStatus {
            name: name.to_string(),
            path: path.to_string(),
            state,
            files: 0,
            bytes: 0,
            pending: 0,
            conflicts: 0,
            last_sync: None,
            last_error: None,
            paused_reason: None,
            skipped: vec![],
            errors: vec![],
            progress: None,
            in_sync: false,
            waiting: vec![],
            local_rev: 0,
            server_rev: 0,
            last_sync_ms: None,
            over_quota: false,
            next_sync_at_ms: None,
            changing: vec![],
            kept: vec![],
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProgressSnapshot {
    pub phase: String,
    pub files_done: u64,
    pub files_total: u64,
    pub bytes_done: u64,
    pub bytes_total: u64,
    /// What the running pass still has to send and fetch (files, and their bytes).
    #[serde(default)]
    pub upload_files: u64,
    #[serde(default)]
    pub upload_bytes: u64,
    #[serde(default)]
    pub download_files: u64,
    #[serde(default)]
    pub download_bytes: u64,
    /// The file being transferred now.
    #[serde(default)]
    pub current: Option<String>,
}

/// Bytes moved since the agent started: on the wire (TLS included) and of file contents
/// (chunks that were not deduplicated away).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Traffic {
    pub wire_sent: u64,
    pub wire_received: u64,
    pub file_sent: u64,
    pub file_received: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AgentStatus {
    /// Process id of the agent that wrote this, if it is a long-running agent.
    pub pid: Option<u32>,
    pub updated_at: i64,
    /// `online`, `offline` or `error`.
    pub connection: String,
    pub message: Option<String>,
    pub folders: Vec<FolderStatus>,
    /// Unix milliseconds of this status.
    #[serde(default)]
    pub updated_at_ms: i64,
    #[serde(default)]
    pub traffic: Traffic,
    /// While not online: Unix milliseconds since the server could not be reached (the first
    /// failed attempt, or the moment the connection was lost).
    #[serde(default)]
    pub offline_since_ms: Option<i64>,
    /// While not online: Unix milliseconds of the next connection attempt.
    #[serde(default)]
    pub next_retry_at_ms: Option<i64>,
    /// With `connection` `error`: the server no longer accepts this computer's token (its
    /// device was revoked, or logged out from elsewhere). Retrying cannot help; logging in
    /// again does (`ops::account::log_in_again`). False for a disabled account, which comes
    /// back by itself once the operator enables it.
    #[serde(default)]
    pub token_refused: bool,
}

impl AgentStatus {
    /// True when every folder is in sync (and there is at least one).
    pub fn all_in_sync(&self) -> bool {
        !self.folders.is_empty() && self.folders.iter().all(|f| f.in_sync)
    }
}

/// Live progress of one pass, updated by the engine and read by progress bars and status.
#[derive(Debug, Default)]
pub struct Progress {
    pub files_total: AtomicU64,
    pub files_done: AtomicU64,
    pub bytes_total: AtomicU64,
    pub bytes_done: AtomicU64,
    /// A std mutex: a short string swap, never held across an await.
    phase: Mutex<String>,
    /// Planned transfers of the running pass: files and bytes to upload, then to download.
    planned: Mutex<[u64; 4]>,
    current: Mutex<Option<String>>,
}

impl Progress {
    pub fn set_phase(&self, phase: &str) {
        *self.phase.lock().expect("progress lock") = phase.to_string();
    }

    pub fn start(&self, phase: &str, files: u64, bytes: u64) {
        self.set_phase(phase);
        self.files_total.store(files, Ordering::Relaxed);
        self.bytes_total.store(bytes, Ordering::Relaxed);
        self.files_done.store(0, Ordering::Relaxed);
        self.bytes_done.store(0, Ordering::Relaxed);
    }

    /// What the pass's plan sends and fetches, for the live pending counts.
    pub fn plan(&self, upload_files: u64, upload_bytes: u64, download_files: u64, download_bytes: u64) {
        *self.planned.lock().expect("progress lock") = [upload_files, upload_bytes, download_files, download_bytes];
    }

    /// The file being transferred now (`None`: between files).
    pub fn set_current(&self, path: Option<&str>) {
        *self.current.lock().expect("progress lock") = path.map(str::to_string);
    }

    pub fn add(&self, files: u64, bytes: u64) {
        self.files_done.fetch_add(files, Ordering::Relaxed);
        self.bytes_done.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> ProgressSnapshot {
        let phase = self.phase.lock().expect("progress lock").clone();
        let files_done = self.files_done.load(Ordering::Relaxed);
        let bytes_done = self.bytes_done.load(Ordering::Relaxed);
        let [mut upload_files, mut upload_bytes, mut download_files, mut download_bytes] =
            *self.planned.lock().expect("progress lock");
        // Downloads run before uploads: while downloading, subtract what is done; once
        // uploading, nothing is left to download.
        match phase.as_str() {
            "downloading" => {
                download_files = download_files.saturating_sub(files_done);
                download_bytes = download_bytes.saturating_sub(bytes_done);
            }
            "uploading" => {
                (download_files, download_bytes) = (0, 0);
                upload_files = upload_files.saturating_sub(files_done);
                upload_bytes = upload_bytes.saturating_sub(bytes_done);
            }
            "idle" => (upload_files, upload_bytes, download_files, download_bytes) = (0, 0, 0, 0),
            _ => {}
        }
        ProgressSnapshot {
            phase,
            files_done,
            files_total: self.files_total.load(Ordering::Relaxed),
            bytes_done,
            bytes_total: self.bytes_total.load(Ordering::Relaxed),
            upload_files,
            upload_bytes,
            download_files,
            download_bytes,
            current: self.current.lock().expect("progress lock").clone(),
        }
    }
}
