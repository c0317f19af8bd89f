//! The executor: carries out a plan, one function per kind of action, in a safe order —
//! conflict copies first, then directories and files from the server, then uploads and
//! remote deletions, then local deletions (children before parents), then bookkeeping. Each
//! step re-checks the disk right before anything destructive, and records what it achieved
//! in one state-database transaction ([`StateDb::record_step`]).
//!
//! It makes no decision: a failed step is reported per path and the next pass re-plans.

use super::download::{self, DownloadJob, DownloadResult};
use super::upload::{self, CommitOutcome, DeleteJob, UploadJob};
use super::{Engine, PassReport, Run, SyncError, stat_matches};
use crate::fs::{Filesystem, Stat, StatKind};
use crate::scan::ScanOutput;
use crate::state::{BaseRow, StepRecord};
use crate::status::{Progress, SkippedItem};
use filesync_core::{EntryKind, EntryState, FileMeta, RelPath};
use filesync_planner::{Action, Held};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tracing::info;

/// A plan sorted by kind of step, in the order the executor runs them.
#[derive(Debug, Default)]
pub(super) struct Steps {
    pub move_aside: Vec<(RelPath, RelPath)>,
    pub dirs: Vec<(RelPath, u64)>,
    pub files: Vec<(RelPath, u64)>,
    pub uploads: Vec<(RelPath, u64)>,
    pub remote_deletes: Vec<DeleteJob>,
    /// Children before parents.
    pub local_deletes: Vec<RelPath>,
    pub record: Vec<(RelPath, u64)>,
    pub forget: Vec<RelPath>,
    /// Held back by the folder's direction: reported, not done.
    pub held: Vec<SkippedItem>,
}

impl Steps {
    /// Sorts `plan` (pure). Directory downloads are the planner's parents-first order.
    pub fn sort(plan: Vec<Action>, remote: &HashMap<RelPath, EntryState>) -> Steps {
        let mut s = Steps::default();
        for a in plan {
            match a {
                Action::MoveLocalAside { path, copy } => s.move_aside.push((path, copy)),
                Action::Download { path, rev } => match remote.get(&path).and_then(|e| e.meta.as_ref()) {
                    Some(m) if m.kind == EntryKind::Dir => s.dirs.push((path, rev)),
                    Some(_) => s.files.push((path, rev)),
                    None => {}
                },
                Action::Upload { path, base_rev } => s.uploads.push((path, base_rev)),
                Action::DeleteRemote { path, base_rev } => s.remote_deletes.push(DeleteJob { path, base_rev }),
                Action::DeleteLocal { path } => s.local_deletes.push(path),
                Action::RecordBase { path, rev } => s.record.push((path, rev)),
                Action::ForgetBase { path } => s.forget.push(path),
                Action::NotUploaded { path, why } => {
                    let reason = match why {
                        Held::DownloadOnly => "not uploaded (download-only)",
                        Held::ServerHasFolder => {
                            "not uploaded: the server has a folder of this name, with files this computer does \
                             not download (upload-only); rename this file to send it"
                        }
                    };
                    s.held.push(SkippedItem { path: path.to_string(), reason: reason.into() })
                }
                Action::NotDownloaded { path } => {
                    s.held.push(SkippedItem { path: path.to_string(), reason: "not downloaded (upload-only)".into() })
                }
            }
        }
        s.local_deletes.sort_by_key(|p| std::cmp::Reverse(p.depth()));
        s
    }
}

/// One pass's execution: what it needs to look at, and what it achieved so far.
pub(super) struct Executor<'a> {
    pub engine: &'a Engine,
    pub name: &'a str,
    pub folder_id: u64,
    pub fs: Arc<dyn Filesystem>,
    pub progress: &'a Progress,
    pub run: &'a Run,
    pub scanned: &'a ScanOutput,
    /// Bases of the paths in scope, as they were before the pass.
    pub bases: &'a HashMap<RelPath, BaseRow>,
    pub remote: &'a HashMap<RelPath, EntryState>,
    /// For conflict-copy names.
    pub now_unix: i64,
    pub report: PassReport,
    /// Paths whose local version was moved to a conflict copy this pass.
    pub moved_away: HashSet<RelPath>,
    /// Files this pass evicts from excluded subfolders: the rev and content of their base.
    pub evicting: HashMap<RelPath, (u64, filesync_core::Hash)>,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, SyncError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| SyncError::Internal(e.to_string()))
}

impl Executor<'_> {
    pub async fn run(mut self, steps: Steps) -> Result<PassReport, SyncError> {
        self.report.skipped.extend(steps.held);
        let size = |m: Option<&FileMeta>| m.map_or(0, |m| m.size);
        let up_bytes = steps.uploads.iter().map(|(p, _)| size(self.scanned.entries.get(p).map(|e| &e.meta))).sum();
        let down_bytes = steps.files.iter().map(|(p, _)| size(self.remote.get(p).and_then(|e| e.meta.as_ref()))).sum();
        self.progress.plan(steps.uploads.len() as u64, up_bytes, steps.files.len() as u64, down_bytes);
        let single_upload = (steps.uploads.len() == 1).then(|| steps.uploads[0].0.to_string());
        for (path, copy) in steps.move_aside {
            self.move_aside(path, copy).await?;
        }
        self.download_dirs(steps.dirs).await?;
        self.download_files(steps.files).await?;
        self.progress.set_current(single_upload.as_deref());
        self.upload(steps.uploads, steps.remote_deletes).await?;
        self.progress.set_current(None);
        self.delete_local(steps.local_deletes).await?;
        self.record(steps.record, steps.forget).await?;
        Ok(self.report)
    }

    /// What the scan saw at `path`, unless its local version was moved aside since.
    fn seen(&self, path: &RelPath) -> Option<Stat> {
        if self.moved_away.contains(path) { None } else { self.scanned.entries.get(path).map(|e| e.stat) }
    }

    fn failed(&mut self, path: &RelPath, reason: String) {
        self.report.errors.push(SkippedItem { path: path.to_string(), reason });
    }

    /// Keeps the local version of `path` as the conflict copy `copy`, before the remote
    /// version takes its name.
    async fn move_aside(&mut self, path: RelPath, copy: RelPath) -> Result<(), SyncError> {
        let partials = self.engine.partials.take_below(self.name, &path, self.fs.case_insensitive());
        download::drop_blocking(partials).await;
        let fs = self.fs.clone();
        let (p, c) = (path.clone(), copy.clone());
        match blocking(move || fs.rename_noreplace(&p, &c)).await? {
            Ok(()) => {
                info!(folder = self.name, "conflict: kept the local version of {path} as {copy}");
                self.report.conflicts += 1;
                self.report.name(super::Change::ConflictCopy, &copy);
                self.moved_away.insert(path);
            }
            Err(e) => self.failed(&path, format!("moving aside for a conflict copy: {}", super::describe_io(&e))),
        }
        Ok(())
    }

    /// Moves the local file of an upload the server refused for its tree to a conflict copy,
    /// unless it changed since it was read (then the next pass looks again). Returns the copy.
    async fn move_aside_refused(&mut self, u: &UploadJob) -> Result<Option<RelPath>, SyncError> {
        let fs = self.fs.clone();
        let (p, seen) = (u.path.clone(), u.stat);
        let (device, now) = (self.engine.device_name.clone(), self.now_unix);
        let moved = blocking(move || -> Result<Option<RelPath>, String> {
            let now_stat = fs.stat(&p).map_err(|e| format!("{p}: {}", super::describe_io(&e)))?;
            if !stat_matches(now_stat.as_ref(), Some(&seen)) {
                return Ok(None);
            }
            super::keep_as_conflict_copy(&*fs, &p, &device, now).map(Some)
        })
        .await?;
        match moved {
            Ok(Some(copy)) => {
                info!(
                    folder = self.name,
                    "the server has a folder with files at {} that this computer does not sync; kept the local file as {copy}",
                    u.path
                );
                self.report.conflicts += 1;
                self.report.name(super::Change::ConflictCopy, &copy);
                Ok(Some(copy))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                self.failed(&u.path, e);
                Ok(None)
            }
        }
    }

    /// Creates the directories the server has (parents first); a file known to be synced
    /// gives way to a directory that replaced it remotely.
    async fn download_dirs(&mut self, dirs: Vec<(RelPath, u64)>) -> Result<(), SyncError> {
        let mut rec = StepRecord::default();
        for (path, rev) in dirs {
            let Some(meta) = self.remote_meta(&path, rev) else { continue };
            let fs = self.fs.clone();
            let p = path.clone();
            let seen = self.seen(&path);
            let r = blocking(move || -> Result<Stat, String> {
                download::ensure_parents(&*fs, &p)?;
                let vanished = || "vanished".to_string();
                match fs.stat(&p).map_err(|e| e.to_string())? {
                    Some(s) if s.kind == StatKind::Dir => Ok(s),
                    Some(s) if stat_matches(Some(&s), seen.as_ref()) => {
                        fs.remove_file(&p).map_err(|e| e.to_string())?;
                        fs.create_dir(&p).map_err(|e| e.to_string())?;
                        fs.stat(&p).map_err(|e| e.to_string())?.ok_or_else(vanished)
                    }
                    Some(_) => Err("a file changed since the scan is in the way of this directory; will retry".into()),
                    None => {
                        fs.create_dir(&p).map_err(|e| e.to_string())?;
                        fs.stat(&p).map_err(|e| e.to_string())?.ok_or_else(vanished)
                    }
                }
            })
            .await?;
            match r {
                Ok(st) => {
                    self.report.downloaded += 1;
                    self.report.name(super::Change::Downloaded, &path);
                    self.report.written.push((path.clone(), Some(st)));
                    rec.bases.push((path, BaseRow::with_stat(rev, meta, &st, false)));
                }
                Err(e) => self.failed(&path, e),
            }
        }
        Ok(self.engine.db.record_step(self.name, &rec).await?)
    }

    /// The mirror's metadata of `path` if it is still at `rev` and live.
    fn remote_meta(&self, path: &RelPath, rev: u64) -> Option<FileMeta> {
        self.remote.get(path).filter(|e| e.rev == rev).and_then(|e| e.meta.clone())
    }

    /// Writes the server's version of each file. Before the first file is renamed into place
    /// the batch is recorded as *installing*, so a crash before its bases are recorded never
    /// makes an installed file look like a local edit.
    async fn download_files(&mut self, files: Vec<(RelPath, u64)>) -> Result<(), SyncError> {
        let jobs: Vec<DownloadJob> = files
            .into_iter()
            .filter_map(|(path, rev)| {
                let meta = self.remote_meta(&path, rev)?;
                let expect_local = self.seen(&path);
                // What the scan found at the path: the old chunk at a new chunk's place is
                // offered to the server as the base of a delta (read back and checked first).
                let previous = match self.scanned.entries.get(&path) {
                    Some(e) if e.meta.kind == EntryKind::File && !self.moved_away.contains(&path) => {
                        e.meta.chunks.clone()
                    }
                    _ => Vec::new(),
                };
                Some(DownloadJob { path, rev, meta, expect_local, previous })
            })
            .collect();
        if jobs.is_empty() {
            return Ok(());
        }
        // A file that replaces a directory may move it aside whole (it still holds what this
        // computer does not sync): the partial downloads inside it go first, or their hidden
        // files would keep the copy from being removed when its deletion comes (found by the
        // simulation, seed 49679).
        for job in jobs.iter().filter(|j| j.expect_local.is_some_and(|s| s.kind == StatKind::Dir)) {
            let partials = self.engine.partials.take_below(self.name, &job.path, self.fs.case_insensitive());
            download::drop_blocking(partials).await;
        }
        let total_bytes: u64 = jobs.iter().map(|j| j.meta.size).sum();
        self.progress.start("downloading", jobs.len() as u64, total_bytes);
        let installing: Vec<_> = jobs.iter().map(|j| (j.path.clone(), j.rev, j.meta.kind, j.meta.hash)).collect();
        self.engine.db.set_installing(self.name, &installing).await?;
        let local_chunks = self.local_chunks(&jobs).await?;
        let download::Downloaded { results, fetched, cut } = download::run(
            &self.engine.server,
            self.fs.clone(),
            jobs.clone(),
            &local_chunks,
            download::Context {
                progress: self.progress,
                copy_names: (&self.engine.device_name, self.now_unix),
                throttle: &self.run.down,
                partials: (&self.engine.partials, self.name),
            },
        )
        .await?;
        self.report.bytes_down += fetched;
        let mut rec = StepRecord::default();
        for (job, r) in jobs.into_iter().zip(results) {
            match r {
                DownloadResult::Done { stat, conflict } => {
                    if let Some(copy) = conflict {
                        self.report.conflicts += 1;
                        self.report.name(super::Change::ConflictCopy, &copy);
                        self.report.retry.push(copy); // a new local file, for the next pass
                    }
                    self.report.downloaded += 1;
                    self.report.name(super::Change::Downloaded, &job.path);
                    self.report.written.push((job.path.clone(), Some(stat)));
                    // Written with the server's mtime: racy if that is recent (a write here in
                    // the same clock tick would keep the stat).
                    let racy = crate::scan::is_racy(stat.mtime_ns, self.engine.clock.now_ns());
                    rec.bases.push((job.path, BaseRow::with_stat(job.rev, job.meta, &stat, racy)));
                }
                DownloadResult::Failed(e) if cut.is_none() => self.failed(&job.path, e),
                DownloadResult::Failed(_) => {}
            }
        }
        self.engine.db.record_step(self.name, &rec).await?;
        // Files installed before the connection broke are recorded above: synced, not local
        // files of unknown origin for the next pass to settle.
        cut.map_or(Ok(()), Err)
    }

    /// Where the chunks the jobs need can be read on this computer: files in scope whose
    /// scanned content is what was last synced, and synced files anywhere with the same content
    /// (a moved or copied file) still as they were synced. Every chunk read is checked against
    /// its hash, so a file that changed since fails this download, and the next pass looks
    /// again.
    async fn local_chunks(
        &self,
        jobs: &[DownloadJob],
    ) -> Result<HashMap<filesync_core::Hash, download::LocalChunk>, SyncError> {
        let wanted: HashSet<_> = jobs.iter().flat_map(|j| j.meta.chunks.iter().map(|c| c.hash)).collect();
        // The scan vouches for the content (it read the file, or trusted a stat recorded
        // long enough after the file's mtime); the base's own stat may be untrusted because
        // the file was synced moments ago, which is exactly when the next edit comes.
        let unchanged = self.bases.iter().filter(|(p, b)| {
            b.meta.kind == EntryKind::File
                && !self.moved_away.contains(*p)
                && self
                    .scanned
                    .entries
                    .get(*p)
                    .is_some_and(|e| e.meta.kind == EntryKind::File && e.meta.hash == b.meta.hash)
        });
        let mut candidates: Vec<(RelPath, FileMeta)> = unchanged.map(|(p, b)| (p.clone(), b.meta.clone())).collect();
        let contents: Vec<_> = jobs.iter().map(|j| j.meta.hash).collect::<HashSet<_>>().into_iter().collect();
        let elsewhere: Vec<(RelPath, BaseRow)> = (self.engine.db.bases_with_content(self.name, &contents).await?)
            .into_iter()
            .filter(|(p, _)| !self.moved_away.contains(p) && !self.bases.contains_key(p))
            .collect();
        if !elsewhere.is_empty() {
            // Outside this pass no scan vouches for them: each is a copy only while it has the
            // stat recorded with its base. A file changed or deleted under an ignore rule keeps
            // its base, and a download counting on it failed at every sync (seed 2042235).
            let fs = self.fs.clone();
            let unchanged = tokio::task::spawn_blocking(move || {
                elsewhere
                    .into_iter()
                    .filter(|(p, b)| {
                        let known = crate::scan::KnownFile {
                            size: b.size,
                            mtime_ns: b.mtime_ns,
                            ino: b.ino,
                            meta: b.meta.clone(),
                        };
                        matches!(fs.stat(p), Ok(Some(st)) if st.kind == StatKind::File && crate::scan::reuse(&known, &st).is_some())
                    })
                    .map(|(p, b)| (p, b.meta))
                    .collect::<Vec<_>>()
            })
            .await
            .map_err(|e| SyncError::Internal(e.to_string()))?;
            candidates.extend(unchanged);
        }
        Ok(download::local_chunk_index(candidates.iter().map(|(p, m)| (p, m)), &wanted))
    }

    /// Sends new and changed files and deletions to the server, committed together.
    async fn upload(&mut self, uploads: Vec<(RelPath, u64)>, deletes: Vec<DeleteJob>) -> Result<(), SyncError> {
        let uploads: Vec<UploadJob> = uploads
            .into_iter()
            .filter_map(|(path, base_rev)| {
                let e = self.scanned.entries.get(&path)?;
                let previous = match self.bases.get(&path) {
                    Some(b) if b.meta.kind == EntryKind::File => b.meta.chunks.clone(),
                    _ => Vec::new(),
                };
                Some(UploadJob { path, base_rev, meta: e.meta.clone(), stat: e.stat, racy: e.racy, previous })
            })
            .collect();
        if uploads.is_empty() && deletes.is_empty() {
            return Ok(());
        }
        self.progress.start("uploading", (uploads.len() + deletes.len()) as u64, 0);
        // What this computer is about to commit: if an answer is lost with the connection,
        // the next pass knows the server's version as its own (`input::settle_upload`).
        let sending: Vec<_> = uploads
            .iter()
            .filter(|u| u.meta.kind == EntryKind::File)
            .map(|u| (u.path.clone(), crate::state::UPLOADING, u.meta.kind, u.meta.hash))
            .collect();
        if !sending.is_empty() {
            self.engine.db.set_installing(self.name, &sending).await?;
        }
        // A file replacing a directory goes to the server once the directory's entries are
        // deleted there: those deletions are committed first (the server keeps its state a
        // tree, and refuses a file where entries live below it).
        let (clearing, deletes): (Vec<DeleteJob>, Vec<DeleteJob>) = deletes
            .into_iter()
            .partition(|d| uploads.iter().any(|u| u.meta.kind != EntryKind::Dir && u.path.is_ancestor_of(&d.path)));
        for (uploads, deletes) in [(&[][..], clearing), (&uploads[..], deletes)] {
            if uploads.is_empty() && deletes.is_empty() {
                continue;
            }
            let (outcomes, sent, over_quota) = upload::run(
                &self.engine.server,
                self.fs.clone(),
                self.folder_id,
                uploads,
                &deletes,
                self.progress,
                &self.run.up,
                self.engine.announce_min_bytes,
            )
            .await?;
            self.report.bytes_up += sent;
            self.report.over_quota |= over_quota;
            self.committed(uploads, &deletes, outcomes).await?;
        }
        Ok(())
    }

    /// Records what the server answered to `uploads` then `deletes`.
    async fn committed(
        &mut self,
        uploads: &[UploadJob],
        deletes: &[DeleteJob],
        outcomes: Vec<CommitOutcome>,
    ) -> Result<(), SyncError> {
        let mut rec = StepRecord { advance_cursor: true, ..StepRecord::default() };
        let jobs = uploads.iter().map(|u| (&u.path, Some(u))).chain(deletes.iter().map(|d| (&d.path, None)));
        for ((path, up), outcome) in jobs.zip(outcomes) {
            match outcome {
                CommitOutcome::Accepted(current) => {
                    match (up, &current) {
                        (Some(u), Some(cur)) if cur.meta.is_some() => {
                            self.report.uploaded += 1;
                            self.report.name(super::Change::Uploaded, path);
                            rec.bases
                                .push((path.clone(), BaseRow::with_stat(cur.rev, u.meta.clone(), &u.stat, u.racy)));
                        }
                        (Some(_), _) => {}
                        (None, _) => {
                            self.report.deleted_remote += 1;
                            self.report.name(super::Change::DeletedOnServer, path);
                            rec.forget.push(path.clone());
                        }
                    }
                    rec.remote.extend(current);
                }
                // Refused though based on the server's current rev: the file would stand where
                // the server has entries below it that this pass did not see (the ignore rules
                // here hide them, or they came meanwhile). Kept as a conflict copy, which the
                // next pass uploads; the directory then takes the name.
                CommitOutcome::Conflict(current)
                    if up.is_some_and(|u| {
                        u.meta.kind != EntryKind::Dir && current.as_ref().map_or(0, |c| c.rev) == u.base_rev
                    }) =>
                {
                    let u = up.expect("checked");
                    rec.remote.extend(current);
                    if let Some(copy) = self.move_aside_refused(u).await? {
                        self.report.retry.push(copy);
                    }
                    self.report.retry.push(path.clone());
                }
                // Someone else changed it first: the next pass merges with their version.
                CommitOutcome::Conflict(current) => {
                    rec.remote.extend(current);
                    self.report.retry.push(path.clone());
                }
                CommitOutcome::Failed(e) => self.failed(path, e),
            }
        }
        Ok(self.engine.db.record_step(self.name, &rec).await?)
    }

    /// Deletes local paths the server deleted, children before parents; only what is
    /// unchanged since the scan (a changed file is uploaded by the next pass instead).
    async fn delete_local(&mut self, paths: Vec<RelPath>) -> Result<(), SyncError> {
        let mut rec = StepRecord::default();
        let partials = self.engine.partials.take_under(self.name, &paths, self.fs.case_insensitive());
        download::drop_blocking(partials).await;
        for path in paths {
            let fs = self.fs.clone();
            let p = path.clone();
            let seen = self.scanned.entries.get(&path).map(|e| e.stat);
            let r = blocking(move || -> Result<bool, String> {
                let now = fs.stat(&p).map_err(|e| e.to_string())?;
                if !stat_matches(now.as_ref(), seen.as_ref()) {
                    return Ok(false);
                }
                match now {
                    None => Ok(true),
                    // Not empty: something new is inside; keep it.
                    Some(s) if s.kind == StatKind::Dir => Ok(fs.remove_dir(&p).is_ok()),
                    Some(_) => fs.remove_file(&p).map(|_| true).map_err(|e| super::describe_io(&e)),
                }
            })
            .await?;
            match r {
                Ok(true) => {
                    self.report.deleted_local += 1;
                    self.report.name(super::Change::DeletedHere, &path);
                    self.report.written.push((path.clone(), None));
                    if let Some(&(rev, hash)) = self.evicting.get(&path) {
                        rec.own_versions.push((path.clone(), rev, hash));
                    }
                    rec.forget.push(path);
                }
                Ok(false) => {}
                Err(e) => self.failed(&path, format!("deleting: {e}")),
            }
        }
        Ok(self.engine.db.record_step(self.name, &rec).await?)
    }

    /// Bookkeeping where both sides already agree: record or forget the base.
    async fn record(&mut self, record: Vec<(RelPath, u64)>, forget: Vec<RelPath>) -> Result<(), SyncError> {
        let evicted = forget.iter().filter_map(|p| self.evicting.get(p).map(|&(rev, hash)| (p.clone(), rev, hash)));
        let mut rec = StepRecord { own_versions: evicted.collect(), forget, ..StepRecord::default() };
        for (path, rev) in record {
            if let (Some(meta), Some(e)) = (self.remote_meta(&path, rev), self.scanned.entries.get(&path)) {
                rec.bases.push((path, BaseRow::with_stat(rev, meta, &e.stat, e.racy)));
            }
        }
        Ok(self.engine.db.record_step(self.name, &rec).await?)
    }
}
