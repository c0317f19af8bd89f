//! The sync engine: passes over one folder. A pass pulls the server's changes into the
//! remote mirror, scans the paths in its [`Scope`] — the whole folder, or only what the
//! watcher and the journal say changed — builds the planner's input (`input.rs`, pure), asks
//! the planner what to do, and hands the plan to the executor (`execute.rs`), which records
//! each step's results as new bases. Passes repeat, each over what the previous one touched,
//! until one finds nothing to do.

mod download;
mod execute;
pub mod input;
pub mod policy;
pub mod scope;
pub mod throttle;
mod upload;

use crate::config::FolderConfig;
use crate::filter::{Excluded, IgnoreRules};
use crate::fs::{Filesystem, Stat, StatKind};
use crate::scan::{self, KnownFile};
use crate::state::{StateDb, StateError};
use crate::status::{Progress, SkippedItem};
use execute::{Executor, Steps};
use filesync_client::{ClientError, Connection};
use filesync_core::conflict::conflict_copy_path;
use filesync_core::{ChunkRef, Chunker, RelPath};
use filesync_planner::{Action, PlanContext};
use filesync_proto::convert::entry_from_wire;
use filesync_proto::limits;
use input::Views;
use policy::{Paused, PlanSummary, Requests};
pub use scope::Scope;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
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
    #[error("scanning {path}: {source}")]
    Scan { path: String, source: std::io::Error },
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("{0}")]
    Internal(String),
}

impl SyncError {
    /// Errors that a later retry may cure without anyone doing anything.
    pub fn is_transient(&self) -> bool {
        match self {
            SyncError::Client(c) => c.is_transient(),
            _ => false,
        }
    }
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
    /// The server folder and the journal revision this computer has pulled up to.
    pub folder_id: u64,
    pub cursor: u64,
}

/// The settings of one `sync_folder` call that every pass of it shares.
struct Run {
    requests: Requests,
    up: Throttle,
    down: Throttle,
    /// Plan only: stop before carrying anything out, and change no persisted state.
    preview: bool,
}

/// Chunks of a file with their offsets.
pub(crate) fn chunk_offsets(chunks: &[ChunkRef]) -> impl Iterator<Item = (u64, &ChunkRef)> {
    chunks.iter().scan(0u64, |off, c| {
        let o = *off;
        *off += c.len as u64;
        Some((o, c))
    })
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
    match e.kind() {
        PermissionDenied => format!("permission denied ({e}); check the permissions of this file or folder"),
        StorageFull => "the disk is full; free some space on this computer and FileSync will retry".to_string(),
        ReadOnlyFilesystem => "the disk is read-only; FileSync cannot write here".to_string(),
        _ if e.raw_os_error() == Some(28) => {
            "the disk is full; free some space on this computer and FileSync will retry".to_string()
        }
        _ => e.to_string(),
    }
}

/// A conflict-copy name for `path` that nothing on disk uses yet.
pub(crate) fn free_conflict_name(
    fs: &dyn Filesystem,
    path: &RelPath,
    device: &str,
    now_unix: i64,
) -> Result<RelPath, String> {
    for attempt in 0..100 {
        let c = conflict_copy_path(path, device, now_unix, attempt);
        if fs.stat(&c).map_err(|e| format!("{c}: {e}"))?.is_none() {
            return Ok(c);
        }
    }
    Err(format!("{path}: no free conflict-copy name"))
}

fn now_unix() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Drives sync passes for folders over one server connection and one state database.
#[derive(Clone)]
pub struct Engine {
    pub conn: Connection,
    pub db: StateDb,
    pub device_name: String,
    pub chunker: Chunker,
}

/// What one pass found and did.
#[derive(Default)]
struct PassOutcome {
    report: PassReport,
    /// Actions it planned (reports of held-back changes excluded).
    actions: usize,
    /// Paths the next pass must look at (see `Engine::sync_scope`).
    followup: Vec<RelPath>,
}

impl Engine {
    pub fn new(conn: Connection, db: StateDb, device_name: String) -> Engine {
        Engine { conn, db, device_name, chunker: Chunker::default() }
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

    /// Syncs the paths of `scope` and whatever the server changed since the last pull, until
    /// nothing is left to do. A tripped guard, a pending request (confirm deletions, revert)
    /// or a case-insensitive disk (whose name clashes span paths) widen it to the whole folder.
    pub async fn sync_scope(
        &self,
        folder: &FolderConfig,
        fs: Arc<dyn Filesystem>,
        progress: &Progress,
        mut scope: Scope,
    ) -> Result<PassReport, SyncError> {
        if folder.settings.paused {
            return Ok(PassReport { paused: Some(Paused::by_user(&folder.name, false)), ..PassReport::default() });
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
        };
        let r = &run.requests;
        if r.tripped.is_some() || r.confirm_deletes || r.revert || fs.case_insensitive() {
            scope = Scope::Full;
        }
        if scope.is_full() {
            let fs = fs.clone();
            if let Ok(Ok(n)) = tokio::task::spawn_blocking(move || fs.clean_temp_files()).await
                && n > 0
            {
                info!(folder = name, "removed {n} leftover temporary file(s) of an interrupted sync");
            }
        }
        let mut installing = self.db.installing(name).await?;
        scope.extend(installing.keys().cloned());
        let (folder_id, pulled) = self.pull(name).await?;
        scope.extend(pulled);
        let mut total = PassReport { full: scope.is_full(), folder_id, ..PassReport::default() };
        let mut examined = Scope::default();
        for pass in 0..MAX_PASSES {
            if scope.is_empty() {
                break;
            }
            examined.merge(scope.clone());
            let out = self.pass(folder, folder_id, fs.clone(), progress, &mut run, &scope, &installing).await?;
            if !installing.is_empty() {
                // Interrupted downloads that landed are bases now; the others are forgotten.
                self.db.clear_installing(name).await?;
                installing.clear();
            }
            let report = out.report;
            debug!(
                folder = name,
                pass,
                actions = out.actions,
                followup = out.followup.len(),
                full = scope.is_full(),
                "pass done"
            );
            total.downloaded += report.downloaded;
            total.uploaded += report.uploaded;
            total.deleted_local += report.deleted_local;
            total.deleted_remote += report.deleted_remote;
            total.conflicts += report.conflicts;
            total.bytes_up += report.bytes_up;
            total.bytes_down += report.bytes_down;
            total.written.extend(report.written);
            if pass == 0 {
                total.skipped = report.skipped;
            } else {
                // Later passes look again at some of the same paths: theirs is the news.
                let seen: std::collections::HashSet<String> = report.skipped.iter().map(|s| s.path.clone()).collect();
                total.skipped.retain(|s| !seen.contains(&s.path));
                total.skipped.extend(report.skipped);
            }
            total.pending = out.followup.len() as u64;
            let had_errors = !report.errors.is_empty();
            total.errors = report.errors;
            total.paused = report.paused;
            if out.followup.is_empty() || total.paused.is_some() {
                break;
            }
            if (had_errors && pass >= 1) || pass + 1 == MAX_PASSES {
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
        let totals = self.db.totals(name).await?;
        (total.files, total.bytes, total.conflict_copies) = (totals.files, totals.bytes, totals.conflict_copies);
        total.cursor = self.db.folder_cursor(name).await?.map_or(0, |(_, c)| c);
        progress.set_phase("idle");
        Ok(total)
    }

    /// Brings the remote mirror of `name` up to date; returns the server folder id and the
    /// paths whose entry changed.
    pub async fn pull(&self, name: &str) -> Result<(u64, Vec<RelPath>), SyncError> {
        let info = self.conn.open_folder(name, true).await?;
        let mut cursor = match self.db.folder_cursor(name).await? {
            Some((sid, c)) if sid == info.id => c,
            Some(_) => {
                warn!(folder = name, "the server folder was re-created; starting over from its current state");
                self.db.forget_folder(name).await?;
                0
            }
            None => 0,
        };
        let mut changed = Vec::new();
        loop {
            let ch = self.conn.get_changes(info.id, cursor, limits::MAX_ENTRIES_PER_CHANGES).await?;
            let mut entries = Vec::with_capacity(ch.entries.len());
            let mut next = cursor;
            for w in &ch.entries {
                next = next.max(w.rev);
                match entry_from_wire(w) {
                    Ok(e) => entries.push(e),
                    Err(e) => warn!(folder = name, "ignoring an invalid entry from the server: {e}"),
                }
            }
            if !ch.more {
                next = next.max(ch.folder_seq);
            }
            changed.extend(self.db.apply_remote(name, &entries, info.id, next).await?);
            cursor = next;
            if !ch.more {
                return Ok((info.id, changed));
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
        let mut run = Run { requests, up: Throttle::unlimited(), down: Throttle::unlimited(), preview: true };
        let out = self.pass(folder, 0, fs, &Progress::default(), &mut run, &Scope::Full, &HashMap::new()).await?;
        Ok(out.report.preview.map(|p| *p).unwrap_or_default())
    }

    /// Reads what a pass over `scope` compares: the disk (scanned off the async runtime), the
    /// bases and the remote mirror.
    async fn load(
        &self,
        folder: &FolderConfig,
        fs: Arc<dyn Filesystem>,
        scope: &Scope,
        installing: HashMap<RelPath, (u64, filesync_core::Hash)>,
    ) -> Result<Views, SyncError> {
        let name = folder.name.as_str();
        let roots = scope.roots();
        let (bases, remote) = match scope {
            Scope::Full => (self.db.bases(name).await?, self.db.remote_all(name).await?),
            Scope::Paths(_) => (self.db.bases_within(name, &roots).await?, self.db.remote_within(name, &roots).await?),
        };
        let known: HashMap<RelPath, KnownFile> = bases
            .iter()
            .map(|(p, b)| {
                (p.clone(), KnownFile { size: b.size, mtime_ns: b.mtime_ns, ino: b.ino, meta: b.meta.clone() })
            })
            .collect();
        let chunker = self.chunker;
        let full = scope.is_full();
        let (scanned, rules) = tokio::task::spawn_blocking(move || {
            let rules = IgnoreRules::load(&*fs);
            let scanner = scan::Scanner { fs: &*fs, rename: true, known: &known, chunker: &chunker };
            let scanned =
                if full { scanner.scan_ignoring(&rules) } else { scanner.scan_paths_ignoring(&roots, &rules) };
            scanned.map(|s| (s, rules))
        })
        .await
        .map_err(|e| SyncError::Internal(e.to_string()))?
        .map_err(|source| SyncError::Scan { path: folder.path.display().to_string(), source })?;
        Ok(Views { scanned, rules, bases, remote, installing })
    }

    /// One pass over `scope`: plan it (a whole folder in parts of whole top-level trees),
    /// weigh its remote deletions with the mass-delete guard, and execute it. A part without
    /// remote deletions is executed as soon as it is planned, so that a walk of the whole
    /// folder holds one part in memory at a time; parts with remote deletions wait for the
    /// guard's verdict on the whole pass.
    #[allow(clippy::too_many_arguments)]
    async fn pass(
        &self,
        folder: &FolderConfig,
        folder_id: u64,
        fs: Arc<dyn Filesystem>,
        progress: &Progress,
        run: &mut Run,
        scope: &Scope,
        installing: &HashMap<RelPath, (u64, filesync_core::Hash)>,
    ) -> Result<PassOutcome, SyncError> {
        let name = folder.name.as_str();
        let parts = match scope {
            Scope::Full if !run.preview => self.partitions(name, &fs).await?,
            _ => vec![scope.clone()],
        };
        // The guard weighs deletions against every synced file, not only those of one part.
        let whole = matches!(parts.as_slice(), [Scope::Full]);
        let mut out = PassOutcome::default();
        let mut deferred = Vec::new();
        let mut deletes = 0;
        for part in &parts {
            let here = installing.iter().filter(|(p, _)| part.covers(p)).map(|(p, v)| (p.clone(), *v)).collect();
            let planned = self.plan_part(folder, fs.clone(), progress, run, part, here).await?;
            if run.preview {
                out.report.preview = planned.preview.clone();
                return Ok(out);
            }
            if planned.deletes > 0 {
                deletes += planned.deletes;
                deferred.push(planned);
            } else {
                out.absorb(self.execute_part(name, folder_id, fs.clone(), progress, run, planned).await?);
            }
        }
        let files = match (whole, deferred.first()) {
            (true, Some(p)) => p.synced_in_state,
            (_, None) => 0,
            (false, Some(_)) => self.db.totals(name).await?.files,
        };
        let revert = run.requests.revert && folder.settings.planner_direction() != filesync_planner::Direction::TwoWay;
        if let Some(held) = self.guard(folder, deletes, files, revert, run).await? {
            out.report.paused = Some(held);
            return Ok(out);
        }
        for planned in deferred {
            out.absorb(self.execute_part(name, folder_id, fs.clone(), progress, run, planned).await?);
        }
        Ok(out)
    }

    /// How a walk of the whole folder is cut: parts of whole top-level trees (see
    /// [`scope::partition`]), or the whole folder at once when a top-level name needs the
    /// scanner's care (not Unicode, not NFC) or the root cannot be listed (the walk reports it).
    async fn partitions(&self, name: &str, fs: &Arc<dyn Filesystem>) -> Result<Vec<Scope>, SyncError> {
        let listing = {
            let fs = fs.clone();
            tokio::task::spawn_blocking(move || fs.read_dir(None))
                .await
                .map_err(|e| SyncError::Internal(e.to_string()))?
        };
        let Ok(listing) = listing else { return Ok(vec![Scope::Full]) };
        let mut sizes: HashMap<String, u64> = self.db.top_level_sizes(name).await?.into_iter().collect();
        for e in &listing {
            if e.name.starts_with(filesync_core::path::TEMP_PREFIX) {
                continue;
            }
            if !e.name_is_unicode || RelPath::new(e.name.as_str()).is_err() {
                return Ok(vec![Scope::Full]);
            }
            sizes.entry(e.name.clone()).or_insert(0);
        }
        let mut parts = Vec::new();
        for names in scope::partition(sizes.into_iter().collect(), crate::names::fold) {
            let paths: Option<Vec<RelPath>> = names.iter().map(|n| RelPath::new(n.as_str()).ok()).collect();
            match paths {
                Some(paths) => parts.push(Scope::paths(paths)),
                None => return Ok(vec![Scope::Full]),
            }
        }
        Ok(if parts.len() <= 1 { vec![Scope::Full] } else { parts })
    }

    /// Plans one part: load, build the planner's input (recording the bases of interrupted
    /// downloads that landed), plan, and plan evictions.
    async fn plan_part(
        &self,
        folder: &FolderConfig,
        fs: Arc<dyn Filesystem>,
        progress: &Progress,
        run: &Run,
        scope: &Scope,
        installing: HashMap<RelPath, (u64, filesync_core::Hash)>,
    ) -> Result<Planned, SyncError> {
        let name = folder.name.as_str();
        progress.start("scanning", 0, 0);
        let views = self.load(folder, fs.clone(), scope, installing).await?;
        // A root that vanished during the scan must not read as "everything was deleted".
        if !fs.root_exists() {
            return Err(SyncError::FolderMissing { path: folder.path.display().to_string() });
        }
        let mut input = input::build(&views, &Excluded::new(&folder.settings.excluded), &*fs);
        if !run.preview && !input.promoted.is_empty() {
            self.db.set_bases(name, &input.promoted).await?;
        }
        let now = now_unix();
        let direction = folder.settings.planner_direction();
        let ctx = PlanContext {
            device_name: self.device_name.clone(),
            now_unix: now,
            direction,
            revert: run.requests.revert && direction != filesync_planner::Direction::TwoWay,
        };
        let mut plan = filesync_planner::plan(&input.state, &ctx);
        let deletes = filesync_planner::remote_file_deletes(&input.state, &plan);
        let synced_in_state = input
            .state
            .values()
            .filter(|s| s.base.as_ref().is_some_and(|b| b.meta.kind == filesync_core::EntryKind::File))
            .count() as u64;
        plan.extend(filesync_planner::plan_eviction(&input.excluded, direction));
        let preview = run.preview.then(|| {
            input.state.extend(std::mem::take(&mut input.excluded));
            Box::new(policy::summarize(&input.state, &plan))
        });
        Ok(Planned { views, plan, deletes, synced_in_state, skipped: input.skipped, now, preview })
    }

    /// Executes one planned part.
    async fn execute_part(
        &self,
        name: &str,
        folder_id: u64,
        fs: Arc<dyn Filesystem>,
        progress: &Progress,
        run: &Run,
        planned: Planned,
    ) -> Result<PassOutcome, SyncError> {
        let Planned { views, plan, skipped, now, .. } = planned;
        let actions = plan.iter().filter(|a| !a.is_report()).count();
        // A conflict copy is a new local file: the next pass uploads it. A directory that
        // waits for its children to go (to become a file) is decided once they are gone.
        let mut followup: Vec<RelPath> = plan
            .iter()
            .filter_map(|a| match a {
                Action::MoveLocalAside { copy, .. } => Some(copy.clone()),
                Action::DeleteLocal { path } | Action::DeleteRemote { path, .. } | Action::ForgetBase { path } => {
                    path.parent()
                }
                _ => None,
            })
            .collect();
        if actions > 0 {
            info!(folder = name, actions, "executing plan");
        }
        let steps = Steps::sort(plan, &views.remote);
        let executor = Executor {
            engine: self,
            name,
            folder_id,
            fs,
            progress,
            run,
            scanned: &views.scanned,
            bases: &views.bases,
            remote: &views.remote,
            now_unix: now,
            report: PassReport { skipped, ..PassReport::default() },
            moved_away: Default::default(),
        };
        let mut report = executor.run(steps).await?;
        followup.append(&mut report.retry);
        followup.extend(report.errors.iter().filter_map(|e| RelPath::new(e.path.as_str()).ok()));
        Ok(PassOutcome { report, actions, followup })
    }
}

/// One part of a pass, planned and not yet executed.
struct Planned {
    views: Views,
    plan: Vec<Action>,
    /// Files the plan deletes on the server, for the guard.
    deletes: u64,
    /// Synced files among the part's paths (the whole folder's, for an uncut walk).
    synced_in_state: u64,
    skipped: Vec<SkippedItem>,
    now: i64,
    preview: Option<Box<PlanSummary>>,
}

impl PassOutcome {
    /// Adds what another part of the same pass found and did.
    fn absorb(&mut self, other: PassOutcome) {
        let (r, o) = (&mut self.report, other.report);
        r.downloaded += o.downloaded;
        r.uploaded += o.uploaded;
        r.deleted_local += o.deleted_local;
        r.deleted_remote += o.deleted_remote;
        r.conflicts += o.conflicts;
        r.bytes_up += o.bytes_up;
        r.bytes_down += o.bytes_down;
        r.errors.extend(o.errors);
        r.skipped.extend(o.skipped);
        r.written.extend(o.written);
        self.actions += other.actions;
        self.followup.extend(other.followup);
    }
}

#[allow(dead_code)]
fn _assert_send() {
    fn is_send<T: Send>(_: T) {}
    let _ = |e: Engine, f: FolderConfig, fs: Arc<dyn Filesystem>, p: Arc<Progress>| {
        is_send(async move { e.sync_folder(&f, fs, &p).await })
    };
}
