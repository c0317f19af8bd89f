//! The sync engine: one pass over one folder. Pull the server's changes into the remote
//! mirror, scan the disk, ask the planner what to do, and carry the plan out — downloads,
//! uploads, deletions, conflict copies — recording each success as the new base. Passes repeat
//! until a pass finds nothing to do.

mod download;
pub mod policy;
pub mod throttle;
mod upload;

use crate::config::FolderConfig;
use crate::filter::{Excluded, IgnoreRules};
use crate::fs::{Filesystem, Stat, StatKind};
use crate::scan::{self, KnownFile};
use crate::state::{BaseRow, StateDb, StateError};
use crate::status::{Progress, SkippedItem};
use download::{DownloadJob, DownloadResult};
use filesync_client::{ClientError, Connection};
use filesync_core::conflict::{conflict_copy_path, is_conflict_copy};
use filesync_core::{ChunkRef, Chunker, EntryKind, RelPath};
use filesync_planner::{Action, Base, FolderState, PlanContext, Remote};
use filesync_proto::convert::entry_from_wire;
use filesync_proto::limits;
use policy::{Paused, PlanSummary, Requests};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use throttle::Throttle;
use tracing::{debug, info, warn};
use upload::{CommitOutcome, DeleteJob, UploadJob};

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
    /// Actions still planned when the passes stopped (0 when in sync).
    pub pending: u64,
    /// Per-path failures; the rest of the folder was synced.
    pub errors: Vec<SkippedItem>,
    pub skipped: Vec<SkippedItem>,
    /// Set when the folder is paused (by the user, or by the mass-delete guard, in which case
    /// nothing of the pass was carried out).
    pub paused: Option<Paused>,
    /// Set by [`Engine::preview`]: what the pass would have done.
    pub preview: Option<Box<PlanSummary>>,
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

impl Engine {
    pub fn new(conn: Connection, db: StateDb, device_name: String) -> Engine {
        Engine { conn, db, device_name, chunker: Chunker::default() }
    }

    /// Syncs one folder until nothing is left to do (or `MAX_PASSES` passes).
    pub async fn sync_folder(
        &self,
        folder: &FolderConfig,
        fs: Arc<dyn Filesystem>,
        progress: &Progress,
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
        let mut run = Run {
            requests: Requests::load(&self.db, &folder.name).await?,
            up: Throttle::new(folder.settings.upload_limit),
            down: Throttle::new(folder.settings.download_limit),
            preview: false,
        };
        let cleaned = {
            let fs = fs.clone();
            tokio::task::spawn_blocking(move || fs.clean_temp_files())
                .await
                .map_err(|e| SyncError::Internal(e.to_string()))?
        };
        if let Ok(n) = cleaned
            && n > 0
        {
            info!(folder = %folder.name, "removed {n} leftover temporary file(s) of an interrupted sync");
        }
        let folder_id = self.pull(&folder.name).await?;
        let mut total = PassReport::default();
        for pass in 0..MAX_PASSES {
            let (report, planned) = self.pass(folder, folder_id, fs.clone(), progress, &mut run).await?;
            debug!(folder = %folder.name, pass, planned, "pass done");
            total.downloaded += report.downloaded;
            total.uploaded += report.uploaded;
            total.deleted_local += report.deleted_local;
            total.deleted_remote += report.deleted_remote;
            total.conflicts += report.conflicts;
            total.bytes_up += report.bytes_up;
            total.bytes_down += report.bytes_down;
            total.files = report.files;
            total.bytes = report.bytes;
            total.conflict_copies = report.conflict_copies;
            total.skipped = report.skipped;
            total.pending = planned as u64;
            let had_errors = !report.errors.is_empty();
            total.errors = report.errors;
            total.paused = report.paused;
            if planned == 0 || total.paused.is_some() {
                break;
            }
            if had_errors && pass >= 1 {
                // The failures are not going away by themselves; report them.
                break;
            }
            // Our own commits may have raced with other devices: fetch before the next pass.
            self.pull(&folder.name).await?;
        }
        if total.paused.is_none() && total.errors.is_empty() {
            run.requests.consumed(&self.db, &folder.name).await?;
        }
        progress.set_phase("idle");
        Ok(total)
    }

    /// Brings the remote mirror of `name` up to date; returns the server folder id.
    pub async fn pull(&self, name: &str) -> Result<u64, SyncError> {
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
            self.db.apply_remote(name, &entries, info.id, next).await?;
            cursor = next;
            if !ch.more {
                return Ok(info.id);
            }
        }
    }

    /// Remote paths that cannot exist on this computer's file system, with the reason.
    fn unholdable_names(
        &self,
        fs: &dyn Filesystem,
        state: &FolderState,
    ) -> std::collections::BTreeMap<RelPath, String> {
        let presence = state
            .iter()
            .map(|(p, s)| {
                let pr = crate::names::Presence {
                    local: s.local.is_some(),
                    base: s.base.is_some(),
                    remote_rev: s.remote.as_ref().filter(|r| r.meta.is_some()).map(|r| r.rev),
                };
                (p.clone(), pr)
            })
            .collect();
        crate::names::skipped_paths(&presence, fs.case_insensitive(), |p| fs.name_problem(p))
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
        let (report, _) = self.pass(folder, 0, fs, &Progress::default(), &mut run).await?;
        Ok(report.preview.map(|p| *p).unwrap_or_default())
    }

    /// One pass; returns the report and how many actions were planned.
    async fn pass(
        &self,
        folder: &FolderConfig,
        folder_id: u64,
        fs: Arc<dyn Filesystem>,
        progress: &Progress,
        run: &mut Run,
    ) -> Result<(PassReport, usize), SyncError> {
        let name = folder.name.as_str();
        let mut report = PassReport::default();
        progress.start("scanning", 0, 0);
        let remote = self.db.remote_all(name).await?;
        let bases = self.db.bases(name).await?;
        let known: HashMap<RelPath, KnownFile> = bases
            .iter()
            .map(|(p, b)| {
                (p.clone(), KnownFile { size: b.size, mtime_ns: b.mtime_ns, ino: b.ino, meta: b.meta.clone() })
            })
            .collect();
        let (scanned, rules) = {
            let fs = fs.clone();
            let chunker = self.chunker;
            tokio::task::spawn_blocking(move || {
                let rules = IgnoreRules::load(&*fs);
                let scanner = scan::Scanner { fs: &*fs, rename: true, known: &known, chunker: &chunker };
                scanner.scan_ignoring(&rules).map(|s| (s, rules))
            })
            .await
            .map_err(|e| SyncError::Internal(e.to_string()))?
            .map_err(|source| SyncError::Scan { path: folder.path.display().to_string(), source })?
        };
        // A root that vanished during the scan must not read as "everything was deleted".
        if !fs.root_exists() {
            return Err(SyncError::FolderMissing { path: folder.path.display().to_string() });
        }
        report.skipped =
            scanned.skipped.iter().map(|s| SkippedItem { path: s.path.clone(), reason: s.reason.clone() }).collect();
        report.skipped.extend(
            rules.problems.iter().map(|p| SkippedItem { path: crate::filter::IGNORE_FILE.into(), reason: p.clone() }),
        );
        // Skipped paths (and everything below an unreadable directory) are neither deleted nor
        // changed this pass: leave them alone on both sides.
        let skipped = scanned.skipped_paths();

        let mut state: FolderState = FolderState::new();
        for (p, e) in &scanned.entries {
            state.entry(p.clone()).or_default().local = Some(e.meta.clone());
        }
        for (p, b) in &bases {
            if skipped.covers(p) {
                continue;
            }
            state.entry(p.clone()).or_default().base = Some(Base { rev: b.rev, meta: b.meta.clone() });
        }
        for (p, r) in &remote {
            if skipped.covers(p) {
                continue;
            }
            if r.meta.is_none() && !state.contains_key(p) {
                continue; // a tombstone nobody here knows about
            }
            state.entry(p.clone()).or_default().remote = Some(Remote { rev: r.rev, meta: r.meta.clone() });
        }
        // Remote names this computer cannot hold (case clashes, forbidden names) are left alone
        // on both sides and reported; everything else syncs.
        for (p, why) in self.unholdable_names(&*fs, &state) {
            if state.get(&p).and_then(|s| s.remote.as_ref()).is_some_and(|r| r.meta.is_some()) {
                report.skipped.push(SkippedItem { path: p.to_string(), reason: why });
            }
            state.remove(&p);
        }

        // Ignored paths are left alone on both sides; excluded subfolders are only evicted.
        let excluded = crate::filter::split_views(&mut state, &rules, &Excluded::new(&folder.settings.excluded));

        let now = now_unix();
        let direction = folder.settings.planner_direction();
        let ctx = PlanContext {
            device_name: self.device_name.clone(),
            now_unix: now,
            direction,
            revert: run.requests.revert && direction != filesync_planner::Direction::TwoWay,
        };
        let mut plan = filesync_planner::plan(&state, &ctx);
        if let Some(held) = self.guard(folder, &state, &plan, &ctx, run).await? {
            report.paused = Some(held);
            return Ok((report, 0));
        }
        plan.extend(filesync_planner::plan_eviction(&excluded, direction));
        if run.preview {
            state.extend(excluded);
            report.preview = Some(Box::new(policy::summarize(&state, &plan)));
            return Ok((report, 0));
        }
        let planned = plan.iter().filter(|a| !a.is_report()).count();
        if planned > 0 {
            info!(folder = name, actions = planned, "executing plan");
        }

        let local_stat: HashMap<&RelPath, Stat> = scanned.entries.iter().map(|(p, e)| (p, e.stat)).collect();
        let mut moved_away: HashSet<RelPath> = HashSet::new();
        let mut dir_downloads = Vec::new();
        let mut file_downloads = Vec::new();
        let mut uploads = Vec::new();
        let mut remote_deletes = Vec::new();
        let mut local_deletes = Vec::new();
        let mut record = Vec::new();
        let mut forget = Vec::new();
        for a in plan {
            match a {
                Action::MoveLocalAside { path, copy } => {
                    let r = {
                        let fs = fs.clone();
                        let (p, c) = (path.clone(), copy.clone());
                        tokio::task::spawn_blocking(move || fs.rename_noreplace(&p, &c)).await
                    };
                    match r {
                        Ok(Ok(())) => {
                            info!(folder = name, "conflict: kept the local version of {path} as {copy}");
                            report.conflicts += 1;
                            moved_away.insert(path);
                        }
                        Ok(Err(e)) => report.errors.push(SkippedItem {
                            path: path.to_string(),
                            reason: format!("moving aside for a conflict copy: {e}"),
                        }),
                        Err(e) => return Err(SyncError::Internal(e.to_string())),
                    }
                }
                Action::Download { path, rev } => {
                    let Some(entry) = remote.get(&path) else { continue };
                    let Some(meta) = entry.meta.clone() else { continue };
                    if entry.rev != rev {
                        continue;
                    }
                    let expect = if moved_away.contains(&path) { None } else { local_stat.get(&path).copied() };
                    match meta.kind {
                        EntryKind::Dir => dir_downloads.push((path, rev, meta)),
                        EntryKind::File => file_downloads.push(DownloadJob { path, rev, meta, expect_local: expect }),
                    }
                }
                Action::Upload { path, base_rev } => {
                    if let Some(e) = scanned.entries.get(&path) {
                        uploads.push(UploadJob { path, base_rev, meta: e.meta.clone(), stat: e.stat });
                    }
                }
                Action::DeleteRemote { path, base_rev } => remote_deletes.push(DeleteJob { path, base_rev }),
                Action::DeleteLocal { path } => local_deletes.push(path),
                Action::RecordBase { path, rev } => record.push((path, rev)),
                Action::ForgetBase { path } => forget.push(path),
                Action::NotUploaded { path } => report
                    .skipped
                    .push(SkippedItem { path: path.to_string(), reason: "not uploaded (download-only)".into() }),
                Action::NotDownloaded { path } => report
                    .skipped
                    .push(SkippedItem { path: path.to_string(), reason: "not downloaded (upload-only)".into() }),
            }
        }
        // Evictions join the plan's own local deletions: children before parents across both.
        local_deletes.sort_by_key(|p: &RelPath| std::cmp::Reverse(p.depth()));

        // Downloads: directories first (parents before children), then files.
        let mut new_bases: Vec<(RelPath, BaseRow)> = Vec::new();
        for (path, rev, meta) in dir_downloads {
            let fs2 = fs.clone();
            let p = path.clone();
            let seen = if moved_away.contains(&path) { None } else { local_stat.get(&path).copied() };
            let r = tokio::task::spawn_blocking(move || -> Result<Stat, String> {
                download::ensure_parents(&*fs2, &p)?;
                match fs2.stat(&p).map_err(|e| e.to_string())? {
                    Some(s) if s.kind == StatKind::Dir => Ok(s),
                    // A file the planner knows to be synced (unchanged since the scan) gives
                    // way to the directory that replaced it remotely.
                    Some(s) if stat_matches(Some(&s), seen.as_ref()) => {
                        fs2.remove_file(&p).map_err(|e| e.to_string())?;
                        fs2.create_dir(&p).map_err(|e| e.to_string())?;
                        fs2.stat(&p).map_err(|e| e.to_string())?.ok_or_else(|| "vanished".to_string())
                    }
                    Some(_) => Err("a file changed since the scan is in the way of this directory; will retry".into()),
                    None => {
                        fs2.create_dir(&p).map_err(|e| e.to_string())?;
                        fs2.stat(&p).map_err(|e| e.to_string())?.ok_or_else(|| "vanished".to_string())
                    }
                }
            })
            .await
            .map_err(|e| SyncError::Internal(e.to_string()))?;
            match r {
                Ok(st) => {
                    report.downloaded += 1;
                    new_bases.push((path, BaseRow { rev, meta, size: st.size, mtime_ns: st.mtime_ns, ino: st.ino }));
                }
                Err(e) => report.errors.push(SkippedItem { path: path.to_string(), reason: e }),
            }
        }
        if !file_downloads.is_empty() {
            let total_bytes: u64 = file_downloads.iter().map(|j| j.meta.size).sum();
            progress.start("downloading", file_downloads.len() as u64, total_bytes);
            let wanted: HashSet<_> = file_downloads.iter().flat_map(|j| j.meta.chunks.iter().map(|c| c.hash)).collect();
            // Reuse chunks of local files that are unchanged since they were synced.
            let unchanged = bases.iter().filter(|(p, b)| {
                b.meta.kind == EntryKind::File
                    && !moved_away.contains(*p)
                    && local_stat.get(p).is_some_and(|s| s.size == b.size && s.mtime_ns == b.mtime_ns)
            });
            let local_chunks = download::local_chunk_index(unchanged.map(|(p, b)| (p, &b.meta)), &wanted);
            let (results, fetched) = download::run(
                &self.conn,
                fs.clone(),
                file_downloads.clone(),
                &local_chunks,
                progress,
                (&self.device_name, now),
                &run.down,
            )
            .await?;
            report.bytes_down += fetched;
            for (job, r) in file_downloads.into_iter().zip(results) {
                match r {
                    DownloadResult::Done { stat, conflict } => {
                        if conflict.is_some() {
                            report.conflicts += 1;
                        }
                        report.downloaded += 1;
                        new_bases.push((
                            job.path,
                            BaseRow {
                                rev: job.rev,
                                meta: job.meta,
                                size: stat.size,
                                mtime_ns: stat.mtime_ns,
                                ino: stat.ino,
                            },
                        ));
                    }
                    DownloadResult::Failed(e) => {
                        report.errors.push(SkippedItem { path: job.path.to_string(), reason: e })
                    }
                }
            }
        }
        if !new_bases.is_empty() {
            self.db.set_bases(name, &new_bases).await?;
        }

        // Uploads and remote deletions, committed together.
        if !uploads.is_empty() || !remote_deletes.is_empty() {
            progress.start("uploading", (uploads.len() + remote_deletes.len()) as u64, 0);
            let (outcomes, sent) =
                upload::run(&self.conn, fs.clone(), folder_id, &uploads, &remote_deletes, progress, &run.up).await?;
            report.bytes_up += sent;
            let mut up_bases = Vec::new();
            let mut gone = Vec::new();
            let mut paths: Vec<(&RelPath, Option<&UploadJob>)> = Vec::with_capacity(outcomes.len());
            paths.extend(uploads.iter().map(|u| (&u.path, Some(u))));
            paths.extend(remote_deletes.iter().map(|d| (&d.path, None)));
            for ((path, up), outcome) in paths.into_iter().zip(outcomes) {
                match outcome {
                    CommitOutcome::Accepted(current) => {
                        if let Some(cur) = &current {
                            self.db.upsert_remote(name, cur).await?;
                        }
                        match (up, current) {
                            (Some(u), Some(cur)) if cur.meta.is_some() => {
                                report.uploaded += 1;
                                up_bases.push((
                                    path.clone(),
                                    BaseRow {
                                        rev: cur.rev,
                                        meta: u.meta.clone(),
                                        size: u.stat.size,
                                        mtime_ns: u.stat.mtime_ns,
                                        ino: u.stat.ino,
                                    },
                                ));
                            }
                            (Some(_), _) => {}
                            (None, _) => {
                                report.deleted_remote += 1;
                                gone.push(path.clone());
                            }
                        }
                    }
                    CommitOutcome::Conflict(current) => {
                        // Someone else changed it first: the next pass merges with their version.
                        if let Some(cur) = &current {
                            self.db.upsert_remote(name, cur).await?;
                        }
                    }
                    CommitOutcome::Failed(e) => report.errors.push(SkippedItem { path: path.to_string(), reason: e }),
                }
            }
            self.db.set_bases(name, &up_bases).await?;
            self.db.forget_bases(name, &gone).await?;
        }

        // Local deletions, children before parents; only what is unchanged since the scan.
        let mut deleted = Vec::new();
        for path in local_deletes {
            let fs2 = fs.clone();
            let p = path.clone();
            let seen = local_stat.get(&path).copied();
            let r = tokio::task::spawn_blocking(move || -> Result<bool, String> {
                let now = fs2.stat(&p).map_err(|e| e.to_string())?;
                if !stat_matches(now.as_ref(), seen.as_ref()) {
                    return Ok(false); // changed since the scan: the next pass uploads it
                }
                match now {
                    None => Ok(true),
                    Some(s) if s.kind == StatKind::Dir => match fs2.remove_dir(&p) {
                        Ok(()) => Ok(true),
                        Err(_) => Ok(false), // not empty: something new is inside; keep it
                    },
                    Some(_) => fs2.remove_file(&p).map(|_| true).map_err(|e| e.to_string()),
                }
            })
            .await
            .map_err(|e| SyncError::Internal(e.to_string()))?;
            match r {
                Ok(true) => {
                    report.deleted_local += 1;
                    deleted.push(path);
                }
                Ok(false) => {}
                Err(e) => report.errors.push(SkippedItem { path: path.to_string(), reason: format!("deleting: {e}") }),
            }
        }
        self.db.forget_bases(name, &deleted).await?;

        // Bookkeeping: both sides already agree.
        let mut agreed = Vec::new();
        for (path, rev) in record {
            if let (Some(r), Some(st)) = (remote.get(&path), local_stat.get(&path))
                && let Some(meta) = &r.meta
                && r.rev == rev
            {
                agreed.push((
                    path,
                    BaseRow { rev, meta: meta.clone(), size: st.size, mtime_ns: st.mtime_ns, ino: st.ino },
                ));
            }
        }
        self.db.set_bases(name, &agreed).await?;
        self.db.forget_bases(name, &forget).await?;

        // Totals for status.
        let bases = self.db.bases(name).await?;
        report.files = bases.values().filter(|b| b.meta.kind == EntryKind::File).count() as u64;
        report.bytes = bases.values().filter(|b| b.meta.kind == EntryKind::File).map(|b| b.meta.size).sum();
        report.conflict_copies = bases.keys().filter(|p| is_conflict_copy(p)).count() as u64;
        Ok((report, planned))
    }
}

#[allow(dead_code)]
fn _assert_send() {
    fn is_send<T: Send>(_: T) {}
    let _ = |e: Engine, f: FolderConfig, fs: Arc<dyn Filesystem>, p: Arc<Progress>| {
        is_send(async move { e.sync_folder(&f, fs, &p).await })
    };
}
