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
    #[serde(default)]
    pub progress: Option<ProgressSnapshot>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProgressSnapshot {
    pub phase: String,
    pub files_done: u64,
    pub files_total: u64,
    pub bytes_done: u64,
    pub bytes_total: u64,
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

    pub fn add(&self, files: u64, bytes: u64) {
        self.files_done.fetch_add(files, Ordering::Relaxed);
        self.bytes_done.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> ProgressSnapshot {
        ProgressSnapshot {
            phase: self.phase.lock().expect("progress lock").clone(),
            files_done: self.files_done.load(Ordering::Relaxed),
            files_total: self.files_total.load(Ordering::Relaxed),
            bytes_done: self.bytes_done.load(Ordering::Relaxed),
            bytes_total: self.bytes_total.load(Ordering::Relaxed),
        }
    }
}
