//! The status board: what the agent reports about itself and each folder, shared by the
//! folder tasks, published live to the local UI and written to `status.json` (at most every
//! 200 ms) for `filesync status`.

use crate::config::FolderConfig;
use crate::engine::{PassReport, SyncError};
use crate::status::{AgentStatus, FolderState, FolderStatus, SkippedItem, Traffic};
use filesync_client::Connection;
use filesync_core::RelPath;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub(crate) fn unix_now() -> i64 {
    unix_now_ms() / 1000
}

pub(crate) fn unix_now_ms() -> i64 {
    // The agent's runtime shows real times: it reads the real clock.
    filesync_core::clock::Clock::now_ns(&filesync_core::clock::SystemClock) / 1_000_000
}

/// Shared status, written to `status.json` whenever it changes.
#[derive(Clone)]
pub struct StatusBoard {
    /// A std mutex: every update is a short edit, never held across an await.
    inner: Arc<Mutex<Inner>>,
    dirty: Arc<tokio::sync::Notify>,
    live: Option<crate::live::LiveStatus>,
}

struct Inner {
    status: AgentStatus,
    /// The connection in use, for its wire counters, and what earlier ones moved.
    conn: Option<Connection>,
    wire_before: (u64, u64),
}

impl StatusBoard {
    pub fn new(folders: &[FolderConfig], pid: Option<u32>) -> StatusBoard {
        let status = AgentStatus {
            pid,
            updated_at: unix_now(),
            updated_at_ms: unix_now_ms(),
            connection: "offline".into(),
            message: None,
            folders: Vec::new(),
            traffic: Traffic::default(),
            offline_since_ms: None,
            next_retry_at_ms: None,
            token_refused: false,
        };
        let inner = Inner { status, conn: None, wire_before: (0, 0) };
        let board =
            StatusBoard { inner: Arc::new(Mutex::new(inner)), dirty: Arc::new(tokio::sync::Notify::new()), live: None };
        board.set_folders(folders, FolderState::Offline);
        board
    }

    /// Also publishes every change (and each pass's activity) to `live`, for the local UI.
    pub fn with_live(mut self, live: crate::live::LiveStatus) -> StatusBoard {
        self.live = Some(live);
        self
    }

    pub fn update(&self, f: impl FnOnce(&mut AgentStatus)) {
        let mut inner = self.inner.lock().expect("status lock");
        f(&mut inner.status);
        let (mut sent, mut received) = inner.wire_before;
        if let Some(c) = &inner.conn {
            let (s, r) = c.wire_stats();
            (sent, received) = (sent + s, received + r);
        }
        let s = &mut inner.status;
        (s.traffic.wire_sent, s.traffic.wire_received) = (sent, received);
        s.updated_at_ms = unix_now_ms();
        s.updated_at = s.updated_at_ms / 1000;
        if let Some(live) = &self.live {
            live.publish(s);
        }
        self.dirty.notify_one();
    }

    pub fn folder(&self, name: &str, f: impl FnOnce(&mut FolderStatus)) {
        self.update(|s| {
            if let Some(fs) = s.folders.iter_mut().find(|x| x.name == name) {
                f(fs);
            }
        });
    }

    /// Makes the board list exactly `folders`: kept ones keep their status, new ones start
    /// in `state`.
    pub fn set_folders(&self, folders: &[FolderConfig], state: FolderState) {
        self.update(|s| {
            s.folders.retain(|x| folders.iter().any(|f| f.name == x.name));
            for f in folders {
                match s.folders.iter_mut().find(|x| x.name == f.name) {
                    Some(x) => x.path = f.path.display().to_string(),
                    None => s.folders.push(FolderStatus::new(&f.name, &f.path.display().to_string(), state)),
                }
            }
            s.folders.sort_by_key(|x| folders.iter().position(|f| f.name == x.name));
        });
    }

    /// The connection whose traffic counts from now on (`None`: disconnected).
    pub fn set_connection(&self, conn: Option<Connection>) {
        let mut inner = self.inner.lock().expect("status lock");
        if let Some(old) = inner.conn.take() {
            let (s, r) = old.wire_stats();
            inner.wire_before.0 += s;
            inner.wire_before.1 += r;
        }
        inner.conn = conn;
    }

    pub fn snapshot(&self) -> AgentStatus {
        self.inner.lock().expect("status lock").status.clone()
    }

    /// Writes the status file whenever it changes (at most every 200 ms). A write that fails
    /// (on Windows a reader holding the file can make the rename fail for a moment) is tried
    /// again until it succeeds: the last status must reach the file even when nothing changes
    /// after it.
    pub async fn writer(self, home: crate::config::Home) {
        loop {
            self.dirty.notified().await;
            loop {
                let json = serde_json::to_vec_pretty(&self.snapshot()).expect("status serializes");
                let path = home.status_path();
                let r = tokio::task::spawn_blocking(move || crate::config::write_atomic(&path, &json, false)).await;
                match r {
                    Ok(Ok(())) => break,
                    Ok(Err(e)) => tracing::debug!("status file not written, trying again: {e}"),
                    Err(e) => tracing::debug!("status file not written, trying again: {e}"),
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub(crate) fn live(&self) -> Option<&crate::live::LiveStatus> {
        self.live.as_ref()
    }
}

/// Applies a pass's outcome to the status board.
pub fn report_pass(board: &StatusBoard, name: &str, r: &Result<PassReport, SyncError>) {
    if let Some(live) = board.live() {
        live.pass_done(name, r);
    }
    board.update(|s| {
        if let Ok(rep) = r {
            s.traffic.file_sent += rep.bytes_up;
            s.traffic.file_received += rep.bytes_down;
        }
        let Some(f) = s.folders.iter_mut().find(|x| x.name == name) else { return };
        f.progress = None;
        match r {
            Ok(rep) if rep.paused.is_some() => {
                let p = rep.paused.as_ref().expect("checked");
                f.state = FolderState::Paused;
                f.paused_reason = Some(p.reason.clone());
                f.pending = rep.pending;
            }
            Err(e @ SyncError::FolderMissing { .. }) => {
                f.state = FolderState::Paused;
                f.paused_reason = Some(e.to_string());
                f.last_error = None;
            }
            Ok(rep) => {
                f.paused_reason = None;
                f.files = rep.files;
                f.bytes = rep.bytes;
                f.pending = rep.pending;
                f.conflicts = rep.conflict_copies;
                merge_skipped(f, rep);
                f.last_sync_ms = Some(unix_now_ms());
                f.last_sync = f.last_sync_ms.map(|ms| ms / 1000);
                f.local_rev = rep.cursor;
                f.server_rev = f.server_rev.max(rep.cursor);
                // A refusal for the quota stands while files it refused are still failing.
                f.over_quota = rep.over_quota || (f.over_quota && !rep.full);
                merge_errors(f, rep);
                if f.errors.is_empty() {
                    f.state = FolderState::Idle;
                    f.last_error = None;
                    f.over_quota = false;
                } else {
                    f.state = FolderState::Error;
                    f.last_error = Some(
                        f.errors
                            .iter()
                            .take(3)
                            .map(|e| format!("{}: {}", e.path, e.reason))
                            .collect::<Vec<_>>()
                            .join("; "),
                    );
                }
            }
            Err(e) if e.is_transient() => {
                f.state = FolderState::Offline;
                f.last_error = Some(e.to_string());
            }
            Err(e) => {
                f.state = FolderState::Error;
                f.last_error = Some(e.to_string());
            }
        }
    });
}

/// A pass over part of the folder speaks only for that part: what it skipped replaces what
/// was skipped there before; the rest stands.
fn merge_skipped(f: &mut FolderStatus, rep: &PassReport) {
    merge_for_part(&mut f.skipped, &rep.skipped, rep);
}

/// The same for files that failed: a pass over other paths does not make them succeed.
fn merge_errors(f: &mut FolderStatus, rep: &PassReport) {
    merge_for_part(&mut f.errors, &rep.errors, rep);
}

fn merge_for_part(standing: &mut Vec<SkippedItem>, found: &[SkippedItem], rep: &PassReport) {
    if rep.full {
        *standing = found.to_vec();
        return;
    }
    let examined = crate::engine::Scope::paths(rep.examined.iter().cloned());
    standing.retain(|s| {
        RelPath::new(s.path.as_str()).map_or(true, |p| !examined.covers(&p)) && !found.iter().any(|f| f.path == s.path)
    });
    standing.extend(found.iter().cloned());
    standing.sort_by(|a, b| a.path.cmp(&b.path));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(path: &str, reason: &str) -> SkippedItem {
        SkippedItem { path: path.into(), reason: reason.into() }
    }

    #[test]
    fn a_partial_pass_replaces_only_what_it_looked_at() {
        let mut f = FolderStatus::new("docs", "/docs", FolderState::Idle);
        f.skipped = vec![item("a/link", "symbolic links are not synced"), item("b/locked", "permission denied")];
        let rep = PassReport {
            examined: vec![RelPath::new("b").unwrap()],
            skipped: vec![item("b/pipe", "special files")],
            ..PassReport::default()
        };
        merge_skipped(&mut f, &rep);
        assert_eq!(f.skipped, vec![item("a/link", "symbolic links are not synced"), item("b/pipe", "special files")]);
        let full = PassReport { full: true, ..PassReport::default() };
        merge_skipped(&mut f, &full);
        assert!(f.skipped.is_empty());
    }

    /// Regression: a pass over other paths, right after a file was refused for the quota,
    /// reported the folder idle and the quota as fine while the file still failed.
    #[test]
    fn a_pass_over_other_paths_leaves_a_failed_file_failing() {
        let board = StatusBoard::new(&[FolderConfig::new("docs", "/docs")], None);
        let refused = PassReport {
            full: true,
            over_quota: true,
            errors: vec![item("two.bin", "over its storage quota")],
            ..PassReport::default()
        };
        report_pass(&board, "docs", &Ok(refused));
        let other = PassReport { examined: vec![RelPath::new("notes.txt").unwrap()], ..PassReport::default() };
        report_pass(&board, "docs", &Ok(other));
        let f = &board.snapshot().folders[0];
        assert_eq!((f.state, f.over_quota), (FolderState::Error, true));
        assert!(f.last_error.as_deref().is_some_and(|e| e.contains("two.bin")), "{:?}", f.last_error);
        // Once a pass looks at it again and it goes through, the folder is fine.
        let retried = PassReport { examined: vec![RelPath::new("two.bin").unwrap()], ..PassReport::default() };
        report_pass(&board, "docs", &Ok(retried));
        let f = &board.snapshot().folders[0];
        assert_eq!((f.state, f.over_quota, f.last_error.as_deref()), (FolderState::Idle, false, None));
    }
}
