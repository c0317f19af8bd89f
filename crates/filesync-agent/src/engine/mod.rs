//! The sync engine: passes over one folder. A pass pulls the server's changes into the
//! remote mirror, scans the paths in its [`Scope`] — the whole folder, or only what the
//! watcher and the journal say changed — builds the planner's input (`input.rs`, pure), asks
//! the planner what to do, and hands the plan to the executor (`execute.rs`), which records
//! each step's results as new bases (`pass.rs` puts these together, and cuts a walk of the
//! whole folder into parts). A follow-up pass looks only at what the previous one left.

mod download;
mod early;
mod execute;
pub mod input;
mod pass;
pub mod policy;
pub mod prefetch;
mod repair;
pub mod scope;
pub mod server;
pub mod throttle;
mod upload;

use crate::config::FolderConfig;
use crate::fs::{Filesystem, Stat, StatKind};
use crate::state::{StateDb, StateError};
use crate::status::{Progress, SkippedItem};
pub use download::Partials;
use filesync_client::{ClientError, Connection};
use filesync_core::clock::{Clock, SystemClock};
use filesync_core::conflict::conflict_copy_path;
use filesync_core::{ChunkRef, Chunker, RelPath};
use policy::{Paused, PlanSummary, Requests};
pub use scope::Scope;
use server::ServerApi;
use std::collections::HashMap;
use std::sync::Arc;
use throttle::Throttle;
use tracing::{debug, info, warn};

/// Passes per `sync_folder` call before giving up on reaching a quiet state.
const MAX_PASSES: usize = 6;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(
        "the folder {path} is missing (unmounted drive, renamed or deleted folder?); nothing was synced and nothing was \
         deleted on the server. Restore the folder, or remove it with `filesync folder remove`"
    )]
    FolderMissing { path: String },
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("local state database: {0}")]
    State(#[from] StateError),
    #[error("cannot read the folder {path}: {}", describe_io(cause))]
    Scan { path: String, cause: std::io::Error },
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("{0}")]
    Internal(String),
}

impl SyncError {
    /// The underlying library or system error, for logs (see [`ClientError::detail`]).
    pub fn detail(&self) -> Option<String> {
        match self {
            SyncError::Client(c) => c.detail(),
            _ => None,
        }
    }

    /// Errors that a later retry may cure without anyone doing anything.
    pub fn is_transient(&self) -> bool {
        match self {
            SyncError::Client(c) => c.is_transient(),
            _ => false,
        }
    }
}

/// Whether `e` lost the connection (then nothing more can be sent or fetched this pass),
/// rather than being the server's answer about some chunks — which costs only the files that
/// need them.
pub(crate) fn connection_lost(e: &SyncError) -> bool {
    matches!(e, SyncError::Client(c) if c.code().is_none())
}

/// What one `sync_folder` call did.
#[derive(Debug, Default, Clone)]
pub struct PassReport {
    pub downloaded: u64,
    pub uploaded: u64,
    pub deleted_local: u64,
    pub deleted_remote: u64,
    pub conflicts: u64,
    /// Chunk bytes sent to and fetched from the server (what was not deduplicated away).
    pub bytes_up: u64,
    pub bytes_down: u64,
    /// Files with a synced base after the pass, and their bytes.
    pub files: u64,
    pub bytes: u64,
    /// Conflict copies present in the folder.
    pub conflict_copies: u64,
    /// Paths still needing a pass when the passes stopped (0 when in sync).
    pub pending: u64,
    /// Per-path failures; the rest of the folder was synced.
    pub errors: Vec<SkippedItem>,
    pub skipped: Vec<SkippedItem>,
    /// Set when the folder is paused (by the user, or by the mass-delete guard, in which case
    /// nothing of the pass was carried out).
    pub paused: Option<Paused>,
    /// Set by [`Engine::preview`]: what the pass would have done.
    pub preview: Option<Box<PlanSummary>>,
    /// Whether the passes covered the whole folder; if not, `examined` holds the paths whose
    /// trees they looked at (`skipped` then speaks only for those).
    pub full: bool,
    pub examined: Vec<RelPath>,
    /// What the engine itself left on disk: each path it wrote (with its stat after) or
    /// deleted (`None`). Watcher events that only echo these are not changes.
    pub written: Vec<(RelPath, Option<Stat>)>,
    /// Paths to look at again (failed, or still planned when the passes stopped).
    pub retry: Vec<RelPath>,
    /// The server refused an upload because the account is over its storage quota: retrying
    /// soon would only be refused again (and send the same bytes for nothing).
    pub over_quota: bool,
    /// The server folder and the journal revision this computer has pulled up to.
    pub folder_id: u64,
    pub cursor: u64,
    /// Which files the counts above are, for the activity log: the first [`NAMED_MAX`].
    pub named: Vec<(Change, RelPath)>,
}

/// How many changed paths a report names (the counts cover the rest).
pub const NAMED_MAX: usize = 100;

/// What a pass did to one path, for [`PassReport::named`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Uploaded,
    Downloaded,
    DeletedHere,
    DeletedOnServer,
    /// The local version was kept under a conflict copy's name.
    ConflictCopy,
}

impl PassReport {
    /// Adds the transfers, deletions and conflicts of `other` to this report's counts.
    fn add_work(&mut self, other: &PassReport) {
        self.downloaded += other.downloaded;
        self.uploaded += other.uploaded;
        self.deleted_local += other.deleted_local;
        self.deleted_remote += other.deleted_remote;
        self.conflicts += other.conflicts;
        self.bytes_up += other.bytes_up;
        self.bytes_down += other.bytes_down;
        let room = NAMED_MAX.saturating_sub(self.named.len());
        self.named.extend(other.named.iter().take(room).cloned());
    }

    /// Names `path` among the changes, while fewer than [`NAMED_MAX`] are.
    pub(crate) fn name(&mut self, change: Change, path: &RelPath) {
        if self.named.len() < NAMED_MAX {
            self.named.push((change, path.clone()));
        }
    }
}

/// The settings of one `sync_folder` call that every pass of it shares.
struct Run {
    requests: Requests,
    up: Throttle,
    down: Throttle,
    /// Plan only: stop before carrying anything out, and change no persisted state.
    preview: bool,
    /// The ignore rules, read by the sync's first pass and kept for its follow-ups: a conflict
    /// copy that pass made is uploaded by the next even if the same pass brought rules that
    /// ignore its name (found by the simulation, seed 5045387: the person then deleted the
    /// copy, and the version in it, never uploaded, was lost). The next sync applies them.
    rules: Option<crate::filter::IgnoreRules>,
}

/// Chunks of a file with their offsets.
pub(crate) fn chunk_offsets(chunks: &[ChunkRef]) -> impl Iterator<Item = (u64, &ChunkRef)> {
    chunks.iter().scan(0u64, |off, c| {
        let o = *off;
        *off += c.len as u64;
        Some((o, c))
    })
}

/// Where each chunk of a version of a file lies, to find the chunk of an older version most
/// likely to resemble a new one: the one overlapping its place most (an edit shifts what follows
/// it by its own size at most). That chunk is the base of a sub-chunk delta.
pub(crate) struct ChunkLayout<'a> {
    chunks: &'a [ChunkRef],
    /// The offset where each chunk ends.
    ends: Vec<u64>,
}

impl<'a> ChunkLayout<'a> {
    pub(crate) fn new(chunks: &'a [ChunkRef]) -> ChunkLayout<'a> {
        let ends = chunk_offsets(chunks).map(|(o, c)| o + c.len as u64).collect();
        ChunkLayout { chunks, ends }
    }

    /// The chunk overlapping bytes `off..off + len` most, with its offset.
    pub(crate) fn most_overlapping(&self, off: u64, len: u32) -> Option<(u64, &'a ChunkRef)> {
        let end = off + len as u64;
        let first = self.ends.partition_point(|&e| e <= off);
        let mut best: Option<(u64, u64, &'a ChunkRef)> = None;
        for i in first..self.chunks.len() {
            let c = &self.chunks[i];
            let start = self.ends[i] - c.len as u64;
            if start >= end {
                break;
            }
            let overlap = self.ends[i].min(end) - start.max(off);
            if best.is_none_or(|(b, _, _)| overlap > b) {
                best = Some((overlap, start, c));
            }
        }
        best.map(|(_, start, c)| (start, c))
    }
}

/// True when what is on disk now is what a scan saw (both absent, or same kind, size and mtime).
pub(crate) fn stat_matches(now: Option<&Stat>, seen: Option<&Stat>) -> bool {
    match (now, seen) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            a.kind == b.kind && (a.kind == StatKind::Dir || (a.size == b.size && a.mtime_ns == b.mtime_ns))
        }
        _ => false,
    }
}

/// An I/O error as a person should read it: what happened and what to do.
pub(crate) fn describe_io(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    const FULL: &str = "the disk is full; free some space on this computer and FileSync will retry";
    match e.kind() {
        PermissionDenied => "FileSync is not allowed to change it; check the permissions of this file or folder".into(),
        StorageFull => FULL.into(),
        _ if e.raw_os_error() == Some(28) => FULL.into(),
        QuotaExceeded => "your disk quota on this computer is used up; free some space and FileSync will retry".into(),
        ReadOnlyFilesystem => "the disk is read-only; FileSync cannot write here".into(),
        NotFound => "it was moved or deleted meanwhile; FileSync will look again".into(),
        InvalidFilename => "its name is too long, or not allowed, on this disk".into(),
        IsADirectory | NotADirectory | DirectoryNotEmpty | AlreadyExists => {
            "a file and a folder got in each other's way; FileSync will look again".into()
        }
        // Windows: another program has the file open without sharing it.
        _ if cfg!(windows) && matches!(e.raw_os_error(), Some(32 | 33)) => {
            "another program has it open; FileSync will retry once it is closed".into()
        }
        ResourceBusy => "another program is using it; FileSync will retry".into(),
        CrossesDevices => "it is on another disk than its folder".into(),
        // Anything else: the system's own words, without the error number.
        other => format!("the system reported \"{other}\"; FileSync will retry"),
    }
}

/// A conflict-copy name for `path` that nothing on disk uses yet.
fn free_conflict_name(fs: &dyn Filesystem, path: &RelPath, device: &str, now_unix: i64) -> Result<RelPath, String> {
    for attempt in 0..100 {
        let c = conflict_copy_path(path, device, now_unix, attempt);
        if fs.stat(&c).map_err(|e| format!("{c}: {}", describe_io(&e)))?.is_none() {
            return Ok(c);
        }
    }
    Err(format!("{path}: no free conflict-copy name"))
}

/// Keeps the local version at `path` (a file, or a directory with all in it) as a conflict copy
/// of this device, under a name nothing on disk uses, so that the server's version can take
/// its name. Returns the copy.
pub(crate) fn keep_as_conflict_copy(
    fs: &dyn Filesystem,
    path: &RelPath,
    device: &str,
    now_unix: i64,
) -> Result<RelPath, String> {
    let copy = free_conflict_name(fs, path, device, now_unix)?;
    fs.rename_noreplace(path, &copy)
        .map_err(|e| format!("{path}: moving the local version aside: {}", describe_io(&e)))?;
    Ok(copy)
}

/// Drives sync passes for folders against one server and one state database.
#[derive(Clone)]
pub struct Engine {
    pub server: Arc<dyn ServerApi>,
    pub db: StateDb,
    pub device_name: String,
    pub chunker: Chunker,
    /// Names conflict copies and judges racy timestamps; the system's clock but in a
    /// simulation.
    pub clock: Arc<dyn Clock>,
    /// Downloads cut short, kept to resume: shared by the engines an agent makes, one per
    /// connection, so that the next connection goes on where the lost one stopped.
    pub partials: Arc<download::Partials>,
    /// Uploads with at least this much content new to the server are announced to the other
    /// computers as they go (`upload.rs`).
    pub announce_min_bytes: u64,
    /// Files a scan reads at once; 0: as many as the machine has cores.
    pub scan_threads: usize,
    /// A big new file written a moment ago waits until it settles (`scan::SETTLE_NS`): the
    /// agent, which comes back to it, does so; a one-off sync takes files as they are.
    pub settle: bool,
}

impl Engine {
    /// An engine talking to the server over `conn`.
    pub fn new(conn: Connection, db: StateDb, device_name: String) -> Engine {
        Engine::with_server(Arc::new(conn), db, device_name)
    }

    /// An engine talking to any server (a test double, say).
    pub fn with_server(server: Arc<dyn ServerApi>, db: StateDb, device_name: String) -> Engine {
        Engine {
            server,
            db,
            device_name,
            chunker: Chunker::default(),
            clock: Arc::new(SystemClock),
            partials: Arc::default(),
            announce_min_bytes: upload::ANNOUNCE_MIN_BYTES,
            scan_threads: 0,
            settle: false,
        }
    }

    /// The same engine reading time from `clock`.
    pub fn with_clock(self, clock: Arc<dyn Clock>) -> Engine {
        Engine { clock, ..self }
    }

    /// The same engine keeping downloads cut short in `partials` (shared with the engine of
    /// the connection before).
    pub fn with_partials(self, partials: Arc<download::Partials>) -> Engine {
        Engine { partials, ..self }
    }

    /// Syncs the whole folder until nothing is left to do (or `MAX_PASSES` passes).
    pub async fn sync_folder(
        &self,
        folder: &FolderConfig,
        fs: Arc<dyn Filesystem>,
        progress: &Progress,
    ) -> Result<PassReport, SyncError> {
        self.sync_scope(folder, fs, progress, Scope::Full).await
    }

    /// See [`crate::scan::spelled_otherwise_on_disk`].
    async fn spelled_otherwise(&self, fs: &Arc<dyn Filesystem>, scope: &Scope) -> Result<Option<RelPath>, SyncError> {
        if scope.is_full() || !fs.case_insensitive() {
            return Ok(None);
        }
        let (fs, roots) = (fs.clone(), scope.roots());
        tokio::task::spawn_blocking(move || crate::scan::spelled_otherwise_on_disk(&*fs, &roots))
            .await
            .map_err(|e| SyncError::Internal(e.to_string()))
    }

    /// Syncs the paths of `scope` and whatever the server changed since the last pull, until
    /// nothing is left to do. A tripped guard, a pending request (confirm deletions, revert)
    /// or, on a case-insensitive disk, a path the disk spells otherwise (name clashes and
    /// case-only renames span spellings) widen it to the whole folder.
    pub async fn sync_scope(
        &self,
        folder: &FolderConfig,
        fs: Arc<dyn Filesystem>,
        progress: &Progress,
        mut scope: Scope,
    ) -> Result<PassReport, SyncError> {
        if folder.settings.paused {
            return Ok(PassReport { paused: Some(Paused::by_user(false)), ..PassReport::default() });
        }
        if !fs.root_exists() {
            // Paused like a tripped guard (and shown so after a restart) until it is back.
            let e = SyncError::FolderMissing { path: folder.path.display().to_string() };
            policy::trip(&self.db, &folder.name, &e.to_string()).await?;
            return Err(e);
        }
        let name = folder.name.as_str();
        let mut run = Run {
            requests: Requests::load(&self.db, name).await?,
            up: Throttle::new(folder.settings.upload_limit),
            down: Throttle::new(folder.settings.download_limit),
            preview: false,
            rules: None,
        };
        let r = &run.requests;
        if r.tripped.is_some() || r.confirm_deletes || r.revert {
            scope = Scope::Full;
        }
        if scope.is_full() {
            let fs = fs.clone();
            let keep = self.partials.temp_names(name);
            if let Ok(Ok(n)) = tokio::task::spawn_blocking(move || fs.clean_temp_files_except(&keep)).await
                && n > 0
            {
                info!(folder = name, "removed {n} leftover temporary file(s) of an interrupted sync");
            }
        }
        let mut installing = self.db.installing(name).await?;
        scope.extend(installing.keys().cloned());
        let (folder_id, _) = self.pull(name).await?;
        // What this pull found changed, and what an earlier one did that a failed sync never
        // looked at.
        scope.extend(self.db.unapplied(name).await?);
        let mut total = PassReport { full: scope.is_full(), folder_id, ..PassReport::default() };
        let mut examined = Scope::default();
        for pass in 0..MAX_PASSES {
            if scope.is_empty() {
                break;
            }
            if let Some(differs) = self.spelled_otherwise(&fs, &scope).await? {
                debug!(folder = name, "{differs} is spelled otherwise on disk: looking at the whole folder");
                scope = Scope::Full;
                total.full = true;
            }
            examined.merge(scope.clone());
            let out = self.pass(folder, folder_id, fs.clone(), progress, &mut run, &scope, &installing).await?;
            // Interrupted downloads the pass looked at are settled (`input::build`); those of
            // paths it could not look at wait for a sync that can.
            installing.clear();
            let report = out.report;
            debug!(
                folder = name,
                pass,
                actions = out.actions,
                followup = out.followup.len(),
                full = scope.is_full(),
                "pass done"
            );
            total.add_work(&report);
            total.written.extend(report.written);
            if pass == 0 {
                total.skipped = report.skipped;
            } else {
                // Later passes look again at some of the same paths: theirs is the news.
                total.skipped.retain(|s| RelPath::new(s.path.as_str()).is_ok_and(|p| !scope.covers(&p)));
                total.skipped.extend(report.skipped);
            }
            total.pending = out.followup.len() as u64;
            let had_errors = !report.errors.is_empty();
            total.errors = report.errors;
            total.over_quota = report.over_quota;
            total.paused = report.paused;
            if out.followup.is_empty() || total.paused.is_some() {
                break;
            }
            if (had_errors && (pass >= 1 || total.over_quota)) || pass + 1 == MAX_PASSES {
                // The failures are not going away by themselves; report them.
                total.retry = out.followup;
                break;
            }
            // What this pass left for another: conflict copies to upload, a directory whose
            // children are gone, a commit another device beat (the mirror holds its version
            // now), a failure worth one immediate retry. Everything else it did is final, and
            // what other devices change meanwhile comes with the next push.
            scope = Scope::paths(out.followup);
        }
        total.retry.extend(total.errors.iter().filter_map(|e| RelPath::new(e.path.as_str()).ok()));
        total.examined = examined.roots();
        total.full = examined.is_full();
        if total.paused.is_none() && total.errors.is_empty() {
            run.requests.consumed(&self.db, name).await?;
        }
        if total.paused.is_none() {
            // Every pulled path was looked at (those that failed are in `retry`).
            self.db.clear_unapplied(name).await?;
        }
        let totals = self.db.totals(name).await?;
        (total.files, total.bytes, total.conflict_copies) = (totals.files, totals.bytes, totals.conflict_copies);
        total.cursor = self.db.folder_cursor(name).await?.map_or(0, |(_, c)| c);
        progress.set_phase("idle");
        Ok(total)
    }

    /// Brings the remote mirror of `name` up to date; returns the server folder id and the
    /// paths whose entry changed.
    pub async fn pull(&self, name: &str) -> Result<(u64, Vec<RelPath>), SyncError> {
        let folder_id = self.server.open_folder(name).await?;
        let mut cursor = match self.db.folder_cursor(name).await? {
            Some((sid, c)) if sid == folder_id => c,
            Some(_) => {
                warn!(folder = name, "the server folder was re-created; starting over from its current state");
                self.db.forget_folder(name).await?;
                0
            }
            None => 0,
        };
        let mut changed = Vec::new();
        loop {
            let page = self.server.changes(folder_id, cursor).await?;
            for e in &page.invalid {
                warn!(folder = name, "ignoring an invalid entry from the server: {e}");
            }
            let mut next = cursor.max(page.last_rev);
            if !page.more {
                next = next.max(page.folder_seq);
            }
            changed.extend(self.db.apply_remote(name, &page.entries, folder_id, next).await?);
            cursor = next;
            if !page.more {
                return Ok((folder_id, changed));
            }
        }
    }

    /// What one pass over `folder` would do now, without doing it (nor pulling first): for
    /// the command line to say what a revert (`revert: true`) will change.
    pub async fn preview(
        &self,
        folder: &FolderConfig,
        fs: Arc<dyn Filesystem>,
        revert: bool,
    ) -> Result<PlanSummary, SyncError> {
        if !fs.root_exists() {
            return Err(SyncError::FolderMissing { path: folder.path.display().to_string() });
        }
        let requests = Requests { revert, ..Requests::default() };
        let mut run =
            Run { requests, up: Throttle::unlimited(), down: Throttle::unlimited(), preview: true, rules: None };
        let out = self.pass(folder, 0, fs, &Progress::default(), &mut run, &Scope::Full, &HashMap::new()).await?;
        Ok(out.report.preview.map(|p| *p).unwrap_or_default())
    }
}

#[allow(dead_code)]
fn _assert_send() {
    fn is_send<T: Send>(_: T) {}
    let _ = |e: Engine, f: FolderConfig, fs: Arc<dyn Filesystem>, p: Arc<Progress>| {
        is_send(async move { e.sync_folder(&f, fs, &p).await })
    };
}
