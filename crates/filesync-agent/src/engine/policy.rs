//! The folder settings around a plan that outlive one pass: the one-off requests a person
//! makes from the command line (confirm a mass deletion, revert a one-way folder), the
//! mass-delete guard's trip, and why a folder is paused. The decision itself is pure
//! (`filesync_planner::mass_delete_of`); this module words it and keeps its state in the state
//! database's kv table, so a tripped guard survives restarts.

use super::{Engine, Run, SyncError};
use crate::config::FolderConfig;
use crate::state::{StateDb, StateError};
use filesync_core::EntryKind;
use filesync_planner::{Action, FolderState, MassDelete, mass_delete_of};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

const TRIP: &str = "guard-trip/";
const CONFIRM: &str = "guard-confirm/";
const REVERT: &str = "revert/";
const BURST: &str = "guard-burst/";

/// Deletions made less than this long after the previous ones are weighed together by the
/// guard, as one burst: a watcher-driven agent passes while a big `rm -r` is still running,
/// and each of those passes alone may look harmless.
pub const BURST_GAP_MS: i64 = 60_000;

/// Why a folder runs no passes.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Paused {
    /// What happened and what to do, in words for every surface: the CLI and the UI each add
    /// their own way to do it (a command, a button).
    pub reason: String,
    /// Paused by the mass-delete guard (or a vanished root), not by the user.
    pub by_guard: bool,
}

impl Paused {
    /// Paused by the user, the folder alone or every folder.
    pub fn by_user(all: bool) -> Paused {
        let reason = if all { "paused by you (every folder)".to_string() } else { "paused by you".to_string() };
        Paused { reason, by_guard: false }
    }
}

/// What the guard says when it holds deletions back; `earlier` of `m.deletes` were already
/// propagated in the same burst.
pub fn guard_reason(m: MassDelete, earlier: u64) -> String {
    let pct = (m.deletes * 100).checked_div(m.files).unwrap_or(100);
    let (verb, held) = if earlier == 0 {
        ("one pass would delete", "nothing was deleted".to_string())
    } else {
        ("deleting these files would make", format!("the last {} were not deleted", m.deletes - earlier))
    };
    let what = if earlier == 0 {
        format!("{} of the {} synced files ({pct}%)", m.deletes, m.files)
    } else {
        format!("{} of the {} synced files ({pct}%) deleted within minutes", m.deletes, m.files)
    };
    format!(
        "paused by the mass-delete guard: {verb} {what} on the server and on every other computer, so {held}. If you \
         meant it, confirm the deletions; if not, put the files back and syncing resumes by itself"
    )
}

/// The remote deletions of the burst a folder is in: how many, and when the last were made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Burst {
    last_ms: i64,
    deletes: u64,
}

impl Burst {
    async fn load(db: &StateDb, name: &str) -> Result<Burst, StateError> {
        let v = db.get_kv(&format!("{BURST}{name}")).await?;
        let parsed = v.as_deref().and_then(|v| {
            let (last, deletes) = v.split_once(' ')?;
            Some(Burst { last_ms: last.parse().ok()?, deletes: deletes.parse().ok()? })
        });
        Ok(parsed.unwrap_or_default())
    }

    async fn store(self, db: &StateDb, name: &str) -> Result<(), StateError> {
        match self.deletes {
            0 => db.delete_kv(&format!("{BURST}{name}")).await,
            n => db.set_kv(&format!("{BURST}{name}"), &format!("{} {n}", self.last_ms)).await,
        }
    }
}

/// The persisted one-off state of a folder, read at the start of a sync.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Requests {
    /// The user confirmed the deletions the guard held back: the next sync propagates them.
    pub confirm_deletes: bool,
    /// The user asked to revert the folder (see `PlanContext::revert`).
    pub revert: bool,
    /// The guard's reason, while it holds the folder paused.
    pub tripped: Option<String>,
}

impl Requests {
    pub async fn load(db: &StateDb, name: &str) -> Result<Requests, StateError> {
        let keys = [format!("{CONFIRM}{name}"), format!("{REVERT}{name}"), format!("{TRIP}{name}")];
        let mut set = db.get_kvs(&keys.each_ref().map(String::as_str)).await?;
        Ok(Requests {
            confirm_deletes: set.contains_key(&keys[0]),
            revert: set.contains_key(&keys[1]),
            tripped: set.remove(&keys[2]),
        })
    }

    /// Clears the requests this sync carried out.
    pub async fn consumed(&self, db: &StateDb, name: &str) -> Result<(), StateError> {
        if self.confirm_deletes {
            db.delete_kv(&format!("{CONFIRM}{name}")).await?;
        }
        if self.revert {
            db.delete_kv(&format!("{REVERT}{name}")).await?;
        }
        Ok(())
    }
}

/// Asks the next sync of `name` to propagate the deletions the guard held back.
pub async fn request_confirm_deletes(db: &StateDb, name: &str) -> Result<(), StateError> {
    db.set_kv(&format!("{CONFIRM}{name}"), "1").await
}

/// Asks the next sync of `name` to revert it.
pub async fn request_revert(db: &StateDb, name: &str) -> Result<(), StateError> {
    db.set_kv(&format!("{REVERT}{name}"), "1").await
}

/// True while a confirm or revert request waits for a sync (the agent polls this).
pub async fn request_pending(db: &StateDb, name: &str) -> Result<bool, StateError> {
    let keys = [format!("{CONFIRM}{name}"), format!("{REVERT}{name}")];
    Ok(!db.get_kvs(&keys.each_ref().map(String::as_str)).await?.is_empty())
}

/// The guard's reason while it holds `name` paused.
pub async fn tripped(db: &StateDb, name: &str) -> Result<Option<String>, StateError> {
    db.get_kv(&format!("{TRIP}{name}")).await
}

pub(super) async fn trip(db: &StateDb, name: &str, reason: &str) -> Result<(), StateError> {
    db.set_kv(&format!("{TRIP}{name}"), reason).await
}

pub(super) async fn untrip(db: &StateDb, name: &str) -> Result<(), StateError> {
    db.delete_kv(&format!("{TRIP}{name}")).await
}

/// Forgets every request and trip of a folder (it was unlinked).
pub async fn forget(db: &StateDb, name: &str) -> Result<(), StateError> {
    for k in [TRIP, CONFIRM, REVERT, BURST] {
        db.delete_kv(&format!("{k}{name}")).await?;
    }
    Ok(())
}

impl Engine {
    /// The mass-delete guard around one pass: `Some` — the folder is paused and the pass's
    /// remote deletions are not carried out — while they are too many (`deletes` files out
    /// of `files` synced, together with the deletions propagated earlier in the same burst,
    /// see [`BURST_GAP_MS`]), unless the user confirmed them or this is a revert (which the
    /// user confirmed too). A pass that no longer trips the guard (the files are back, or the
    /// deletions were confirmed) ends the pause.
    pub(super) async fn guard(
        &self,
        folder: &FolderConfig,
        deletes: u64,
        files: u64,
        revert: bool,
        run: &mut Run,
    ) -> Result<Option<Paused>, SyncError> {
        let name = folder.name.as_str();
        let waived = run.requests.confirm_deletes || revert;
        let now = crate::agent::unix_now_ms();
        let burst = Burst::load(&self.db, name).await?;
        // A tripped guard keeps its burst however long the person takes to decide.
        let earlier =
            if run.requests.tripped.is_some() || now - burst.last_ms <= BURST_GAP_MS { burst.deletes } else { 0 };
        let trips = mass_delete_of(deletes + earlier, files + earlier, folder.settings.guard());
        if let Some(m) = trips.filter(|_| !waived && deletes > 0) {
            let reason = guard_reason(m, earlier);
            if !run.preview && run.requests.tripped.as_deref() != Some(reason.as_str()) {
                warn!(folder = name, "{reason}");
                trip(&self.db, name, &reason).await?;
                run.requests.tripped = Some(reason.clone());
            }
            return Ok(Some(Paused { reason, by_guard: true }));
        }
        if !run.preview && deletes > 0 {
            let burst = if waived { Burst::default() } else { Burst { last_ms: now, deletes: earlier + deletes } };
            burst.store(&self.db, name).await?;
        }
        if run.requests.tripped.is_some() && !run.preview {
            info!(folder = name, "resuming: the deletions were confirmed, or the files are back");
            untrip(&self.db, name).await?;
            run.requests.tripped = None;
        }
        Ok(None)
    }
}

/// What a plan would do, counted (files and directories alike), for a preview.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PlanSummary {
    pub uploads: u64,
    pub deletes_remote: u64,
    /// Downloads of paths that do not exist here.
    pub downloads_new: u64,
    /// Downloads that replace what is here now (a revert replaces local edits).
    pub downloads_replacing: u64,
    pub deletes_local: u64,
    pub conflicts: u64,
    pub not_uploaded: u64,
    pub not_downloaded: u64,
}

/// Counts `plan` (made from `state`).
pub fn summarize(state: &FolderState, plan: &[Action]) -> PlanSummary {
    let mut s = PlanSummary::default();
    for a in plan {
        match a {
            Action::MoveLocalAside { .. } => s.conflicts += 1,
            Action::Download { path, .. } => {
                let here = state.get(path).and_then(|s| s.local.as_ref());
                if here.is_some_and(|m| m.kind == EntryKind::File) {
                    s.downloads_replacing += 1;
                } else {
                    s.downloads_new += 1;
                }
            }
            Action::Upload { .. } => s.uploads += 1,
            Action::DeleteLocal { .. } => s.deletes_local += 1,
            Action::DeleteRemote { .. } => s.deletes_remote += 1,
            Action::RecordBase { .. } | Action::ForgetBase { .. } => {}
            Action::NotUploaded { .. } => s.not_uploaded += 1,
            Action::NotDownloaded { .. } => s.not_downloaded += 1,
        }
    }
    // A conflict's download replaces nothing: the local version moved aside first.
    s.downloads_replacing -= s.conflicts.min(s.downloads_replacing);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_and_trips_persist_until_consumed() {
        let db = StateDb::memory().await.unwrap();
        assert_eq!(Requests::load(&db, "docs").await.unwrap(), Requests::default());
        assert!(!request_pending(&db, "docs").await.unwrap());
        trip(&db, "docs", "too many deletes").await.unwrap();
        request_confirm_deletes(&db, "docs").await.unwrap();
        request_revert(&db, "other").await.unwrap();
        assert!(request_pending(&db, "docs").await.unwrap());
        let r = Requests::load(&db, "docs").await.unwrap();
        assert_eq!(r, Requests { confirm_deletes: true, revert: false, tripped: Some("too many deletes".into()) });
        r.consumed(&db, "docs").await.unwrap();
        assert!(!request_pending(&db, "docs").await.unwrap());
        assert_eq!(tripped(&db, "docs").await.unwrap().as_deref(), Some("too many deletes"), "only untrip clears it");
        untrip(&db, "docs").await.unwrap();
        assert_eq!(tripped(&db, "docs").await.unwrap(), None);
        assert!(Requests::load(&db, "other").await.unwrap().revert);
        forget(&db, "other").await.unwrap();
        assert!(!request_pending(&db, "other").await.unwrap());
    }

    #[test]
    fn the_guard_reason_says_what_happened_and_what_to_do() {
        let r = guard_reason(MassDelete { deletes: 160, files: 200 }, 0);
        assert!(r.contains("one pass would delete 160 of the 200"), "{r}");
        assert!(r.contains("80%"), "{r}");
        assert!(r.contains("so nothing was deleted"), "{r}");
        assert!(r.contains("confirm the deletions") && !r.contains('`'), "no command syntax: {r}");
        assert!(r.contains("put the files back"), "{r}");
        // Part of a burst was propagated before the guard saw the whole of it.
        let r = guard_reason(MassDelete { deletes: 160, files: 200 }, 100);
        assert!(r.contains("160 of the 200 synced files (80%) deleted within minutes"), "{r}");
        assert!(r.contains("the last 60 were not deleted"), "{r}");
    }

    #[tokio::test]
    async fn a_burst_is_remembered_and_forgotten() {
        let db = StateDb::memory().await.unwrap();
        assert_eq!(Burst::load(&db, "docs").await.unwrap(), Burst::default());
        Burst { last_ms: 1_700_000_000_000, deletes: 42 }.store(&db, "docs").await.unwrap();
        assert_eq!(Burst::load(&db, "docs").await.unwrap(), Burst { last_ms: 1_700_000_000_000, deletes: 42 });
        forget(&db, "docs").await.unwrap();
        assert_eq!(Burst::load(&db, "docs").await.unwrap(), Burst::default());
    }
}
