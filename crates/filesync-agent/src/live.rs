//! The running agent's live view for the local UI: the latest [`AgentStatus`] on a watch
//! channel (so a page can follow it without polling a file) and a bounded, searchable log of
//! recent activity — passes that changed something (naming their files, so that a search by
//! file name finds them), errors, connection changes.
//!
//! Invariant: publishing never blocks and never fails; nobody listening is fine.

use crate::engine::{Change, PassReport, SyncError};
use crate::status::{AgentStatus, FolderState};
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, watch};

/// How many activity entries are kept in memory.
pub const ACTIVITY_CAPACITY: usize = 500;

/// What kind of thing an activity entry reports.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ActivityKind {
    /// A pass that uploaded, downloaded, deleted or made conflict copies.
    Sync,
    /// Something failed (a file, a folder, the connection); the message says what to do.
    Error,
    /// The connection to the server came up or went down.
    Connection,
    /// A person did something through the UI or the command line (folder added, device revoked…).
    Action,
}

/// One line of the activity log.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Activity {
    /// Increasing; lets a page skip entries it already has.
    pub id: u64,
    /// Unix seconds.
    pub at: i64,
    pub kind: ActivityKind,
    pub folder: Option<String>,
    pub message: String,
    /// The files a sync entry is about (the first [`crate::engine::NAMED_MAX`]); the message
    /// names the first few of each kind.
    pub files: Vec<String>,
}

/// How many file names a sync entry's message gives per kind of change.
const NAMES_IN_MESSAGE: usize = 3;

/// A cheap, cloneable handle shared by the agent (writer) and the UI server (readers).
#[derive(Clone)]
pub struct LiveStatus {
    inner: Arc<Inner>,
}

struct Inner {
    status: watch::Sender<Option<AgentStatus>>,
    /// A std mutex: a push or a copy, never held across an await.
    log: Mutex<VecDeque<Activity>>,
    feed: broadcast::Sender<Activity>,
    /// Folders a person asked, in this process, to sync now (see [`LiveStatus::nudge`]).
    nudges: broadcast::Sender<String>,
    /// Set when the configuration on disk changed in this process (see [`LiveStatus::reload`]).
    reload: tokio::sync::Notify,
    /// Woken when a person asks to try the server again now (see [`LiveStatus::retry_connection`]).
    retry: tokio::sync::Notify,
    next_id: AtomicU64,
}

impl Default for LiveStatus {
    fn default() -> Self {
        LiveStatus {
            inner: Arc::new(Inner {
                status: watch::Sender::new(None),
                log: Mutex::new(VecDeque::new()),
                feed: broadcast::channel(64).0,
                nudges: broadcast::channel(16).0,
                reload: tokio::sync::Notify::new(),
                retry: tokio::sync::Notify::new(),
                next_id: AtomicU64::new(1),
            }),
        }
    }
}

impl std::fmt::Debug for LiveStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveStatus").finish_non_exhaustive()
    }
}

impl LiveStatus {
    /// Replaces the current status; records connection changes in the activity log.
    ///
    /// The agent starts a fresh status board whenever its configuration changes (a folder
    /// paused, a setting changed); a folder that has not finished a pass on the new board yet
    /// keeps showing what the last pass found rather than "0 files, never synced".
    pub fn publish(&self, s: &AgentStatus) {
        let mut s = s.clone();
        if let Some(prev) = self.inner.status.borrow().as_ref() {
            for f in s.folders.iter_mut().filter(|f| f.last_sync.is_none()) {
                if let Some(p) = prev.folders.iter().find(|p| p.name == f.name && p.last_sync.is_some()) {
                    f.files = p.files;
                    f.bytes = p.bytes;
                    f.conflicts = p.conflicts;
                    f.last_sync = p.last_sync;
                }
            }
        }
        let s = &s;
        let previous = self.inner.status.send_replace(Some(s.clone()));
        let before = previous.as_ref().map(|p| p.connection.as_str());
        if before != Some(s.connection.as_str()) && before.is_some() {
            let message = match (s.connection.as_str(), &s.message) {
                ("online", _) => "connected to the server".to_string(),
                (state, Some(m)) => format!("{state}: {m}"),
                (state, None) => state.to_string(),
            };
            let kind = if s.connection == "error" { ActivityKind::Error } else { ActivityKind::Connection };
            self.record(kind, None, message);
        }
        // A folder that newly entered the error or paused state says why, once.
        if let Some(p) = previous {
            for f in &s.folders {
                let was = p.folders.iter().find(|x| x.name == f.name);
                let changed = was.is_none_or(|w| w.state != f.state);
                match f.state {
                    FolderState::Error if changed || was.is_some_and(|w| w.last_error != f.last_error) => {
                        if let Some(e) = &f.last_error {
                            self.record(ActivityKind::Error, Some(&f.name), e.clone());
                        }
                    }
                    FolderState::Paused if changed => {
                        let why = f.paused_reason.clone().unwrap_or_else(|| "paused".into());
                        self.record(ActivityKind::Action, Some(&f.name), format!("paused: {why}"));
                    }
                    _ => {}
                }
            }
        }
    }

    /// The agent is running but nobody is logged in on this computer yet.
    pub fn publish_logged_out(&self) {
        self.inner.status.send_replace(Some(AgentStatus {
            pid: Some(std::process::id()),
            updated_at: crate::agent::unix_now(),
            connection: "logged-out".into(),
            message: Some("this computer is not logged in yet".into()),
            folders: vec![],
            updated_at_ms: crate::agent::unix_now_ms(),
            traffic: Default::default(),
            offline_since_ms: None,
            next_retry_at_ms: None,
            token_refused: false,
        }));
    }

    /// The latest status, if the agent published one.
    pub fn current(&self) -> Option<AgentStatus> {
        self.inner.status.borrow().clone()
    }

    /// Follows status changes (the receiver sees the latest value, skipping intermediate ones).
    pub fn subscribe(&self) -> watch::Receiver<Option<AgentStatus>> {
        self.inner.status.subscribe()
    }

    /// Adds an entry to the activity log.
    pub fn record(&self, kind: ActivityKind, folder: Option<&str>, message: impl Into<String>) {
        self.record_files(kind, folder, message, Vec::new());
    }

    /// Adds an entry about some files to the activity log.
    fn record_files(&self, kind: ActivityKind, folder: Option<&str>, message: impl Into<String>, files: Vec<String>) {
        let a = Activity {
            id: self.inner.next_id.fetch_add(1, Ordering::Relaxed),
            at: crate::agent::unix_now(),
            kind,
            folder: folder.map(str::to_string),
            message: message.into(),
            files,
        };
        {
            let mut log = self.inner.log.lock().expect("activity lock");
            if log.len() == ACTIVITY_CAPACITY {
                log.pop_front();
            }
            log.push_back(a.clone());
        }
        let _ = self.inner.feed.send(a);
    }

    /// Records what a pass did, if it did anything or failed.
    pub fn pass_done(&self, folder: &str, r: &Result<PassReport, SyncError>) {
        // Folder-level failures reach the log through `publish` (state change to error).
        if let Ok(rep) = r {
            let (message, files) = pass_message(rep);
            if let Some(message) = message {
                self.record_files(ActivityKind::Sync, Some(folder), message, files);
            }
            for e in rep.errors.iter().take(20) {
                self.record(ActivityKind::Error, Some(folder), format!("{}: {}", e.path, e.reason));
            }
        }
    }

    /// The activity log, oldest first; entries whose text or files contain `query`
    /// (case-insensitive) when it is not empty.
    pub fn activity(&self, query: &str) -> Vec<Activity> {
        let q = query.trim().to_lowercase();
        let log = self.inner.log.lock().expect("activity lock");
        log.iter()
            .filter(|a| {
                q.is_empty()
                    || a.message.to_lowercase().contains(&q)
                    || a.folder.as_deref().is_some_and(|f| f.to_lowercase().contains(&q))
                    || a.files.iter().any(|f| f.to_lowercase().contains(&q))
            })
            .cloned()
            .collect()
    }

    /// Tells the running agent that a person made a request about `folder` (confirmed the
    /// deletions the guard held back, say) that its next sync carries out: the folder syncs
    /// at once instead of at the agent's next look at its state database.
    pub fn nudge(&self, folder: &str) {
        let _ = self.inner.nudges.send(folder.to_string());
    }

    /// The folders [`LiveStatus::nudge`] names, for the agent.
    pub fn subscribe_nudges(&self) -> broadcast::Receiver<String> {
        self.inner.nudges.subscribe()
    }

    /// Tells the running agent that the configuration or the login on disk changed (a folder
    /// added, a setting saved): it applies it at once instead of at its next look at the files.
    pub fn reload(&self) {
        self.inner.reload.notify_one();
    }

    /// Completes after the next [`LiveStatus::reload`] (or at once for one made meanwhile).
    pub async fn reload_requested(&self) {
        self.inner.reload.notified().await;
    }

    /// Tells the running agent's connection manager, waiting to try the server again, to try
    /// now. Only a manager waiting right now hears it: a request made while it is connected or
    /// connecting is not kept for a later wait.
    pub fn retry_connection(&self) {
        self.inner.retry.notify_waiters();
    }

    /// Completes at the next [`LiveStatus::retry_connection`].
    pub async fn retry_requested(&self) {
        self.inner.retry.notified().await;
    }

    /// New activity entries as they are recorded.
    pub fn subscribe_activity(&self) -> broadcast::Receiver<Activity> {
        self.inner.feed.subscribe()
    }
}

/// What a pass did, as one line that names its files ("synced: 2 uploaded (report.txt,
/// notes.md), 1 downloaded (plan.txt)"), and every file it named; `None` when it did nothing.
fn pass_message(rep: &PassReport) -> (Option<String>, Vec<String>) {
    let mut parts = Vec::new();
    for (n, what, change) in [
        (rep.uploaded, "uploaded", Change::Uploaded),
        (rep.downloaded, "downloaded", Change::Downloaded),
        (rep.deleted_local, "deleted here", Change::DeletedHere),
        (rep.deleted_remote, "deleted on the server", Change::DeletedOnServer),
        (rep.conflicts, "conflict copies made", Change::ConflictCopy),
    ] {
        if n == 0 {
            continue;
        }
        let names: Vec<&str> = rep.named.iter().filter(|(c, _)| *c == change).map(|(_, p)| p.as_str()).collect();
        let mut part = format!("{n} {what}");
        if !names.is_empty() {
            let shown = names[..names.len().min(NAMES_IN_MESSAGE)].join(", ");
            match n.saturating_sub(names.len().min(NAMES_IN_MESSAGE) as u64) {
                0 => part.push_str(&format!(" ({shown})")),
                more => part.push_str(&format!(" ({shown} and {more} more)")),
            }
        }
        parts.push(part);
    }
    if parts.is_empty() {
        return (None, Vec::new());
    }
    let mut files: Vec<String> = rep.named.iter().map(|(_, p)| p.to_string()).collect();
    files.dedup();
    (Some(format!("synced: {}", parts.join(", "))), files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(connection: &str) -> AgentStatus {
        AgentStatus {
            pid: None,
            updated_at: 0,
            updated_at_ms: 0,
            connection: connection.into(),
            message: None,
            folders: vec![],
            traffic: Default::default(),
            offline_since_ms: None,
            next_retry_at_ms: None,
            token_refused: false,
        }
    }

    #[test]
    fn connection_changes_are_logged_once_and_search_filters() {
        let live = LiveStatus::default();
        live.publish(&status("offline"));
        live.publish(&status("online"));
        live.publish(&status("online"));
        live.record(ActivityKind::Action, Some("Docs"), "folder added");
        let all = live.activity("");
        assert_eq!(all.len(), 2, "{all:?}");
        assert_eq!(all[0].message, "connected to the server");
        assert_eq!(live.activity("DOCS").len(), 1);
        assert!(live.activity("nothing like this").is_empty());
        assert!(all[0].id < all[1].id);
    }

    #[test]
    fn a_fresh_board_keeps_what_the_last_pass_found() {
        use crate::status::{FolderState, FolderStatus};
        let folder = |files, last_sync| FolderStatus {
            files,
            bytes: files * 10,
            last_sync,
            ..FolderStatus::new("Docs", "/d", FolderState::Paused)
        };
        let live = LiveStatus::default();
        live.publish(&AgentStatus { folders: vec![folder(3, Some(100))], ..status("online") });
        live.publish(&AgentStatus { folders: vec![folder(0, None)], ..status("online") });
        let now = live.current().unwrap();
        assert_eq!((now.folders[0].files, now.folders[0].last_sync), (3, Some(100)));
        live.publish(&AgentStatus { folders: vec![folder(5, Some(200))], ..status("online") });
        assert_eq!(live.current().unwrap().folders[0].files, 5);
    }

    /// Regression: activity said "synced: 1 uploaded" and its search for a file name found
    /// nothing.
    #[test]
    fn a_pass_names_its_files_and_the_search_finds_them() {
        let p = |s: &str| filesync_core::RelPath::new(s).unwrap();
        let rep = PassReport {
            uploaded: 5,
            downloaded: 1,
            named: vec![
                (Change::Uploaded, p("report.txt")),
                (Change::Uploaded, p("notes.md")),
                (Change::Uploaded, p("a.txt")),
                (Change::Uploaded, p("b.txt")),
                (Change::Downloaded, p("Projects/plan.txt")),
            ],
            ..PassReport::default()
        };
        let live = LiveStatus::default();
        live.pass_done("Docs", &Ok(rep));
        let all = live.activity("");
        assert_eq!(
            all[0].message,
            "synced: 5 uploaded (report.txt, notes.md, a.txt and 2 more), 1 downloaded (Projects/plan.txt)"
        );
        assert_eq!(live.activity("b.txt").len(), 1, "a file named only in the list is found too");
        assert_eq!(live.activity("PLAN").len(), 1);
        assert!(live.activity("other.txt").is_empty());
        live.pass_done("Docs", &Ok(PassReport::default()));
        assert_eq!(live.activity("").len(), 1, "a pass that did nothing is not logged");
    }

    #[test]
    fn the_log_is_bounded() {
        let live = LiveStatus::default();
        for i in 0..ACTIVITY_CAPACITY + 10 {
            live.record(ActivityKind::Sync, None, format!("entry {i}"));
        }
        let all = live.activity("");
        assert_eq!(all.len(), ACTIVITY_CAPACITY);
        assert_eq!(all[0].message, "entry 10");
    }
}
