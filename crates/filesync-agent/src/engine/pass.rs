//! One pass over a [`Scope`]: load what it compares, plan it — a walk of the whole folder in
//! parts of whole top-level trees, each executed as soon as it is planned unless it deletes
//! on the server — weigh the pass's remote deletions with the mass-delete guard, and execute
//! the rest. Memory is bounded by one part (plus the parts that wait for the guard).

use super::execute::{Executor, Steps};
use super::input::{self, Views};
use super::policy::{self, PlanSummary};
use super::{Engine, PassReport, Run, Scope, SyncError, early, scope};
use crate::config::FolderConfig;
use crate::filter::{Excluded, IgnoreRules};
use crate::fs::Filesystem;
use crate::scan::{self, KnownFile};
use crate::status::{Progress, SkippedItem};
use filesync_core::RelPath;
use filesync_planner::{Action, PlanContext};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tracing::{debug, info};

/// What one pass found and did.
#[derive(Default)]
pub(super) struct PassOutcome {
    pub report: PassReport,
    /// Actions it planned (reports of held-back changes excluded).
    pub actions: usize,
    /// Paths the next pass must look at (see `Engine::sync_scope`).
    pub followup: Vec<RelPath>,
}

impl Engine {
    /// The bases and the mirror rows of `scope`, read at the same time.
    async fn rows(&self, name: &str, scope: &Scope) -> Result<Rows, SyncError> {
        let roots = scope.roots();
        let bases = async {
            match scope {
                Scope::Full => self.db.bases(name).await,
                Scope::Paths(_) => self.db.bases_within(name, &roots).await,
            }
        };
        let remote = async {
            match scope {
                Scope::Full => self.db.remote_all(name).await,
                Scope::Paths(_) => self.db.remote_within(name, &roots).await,
            }
        };
        Ok(tokio::try_join!(bases, remote)?)
    }

    /// Reads what a pass over `scope` compares: the bases and the remote mirror (`rows`, if
    /// they were read ahead) and the disk (scanned off the async runtime). With `send`, the
    /// chunks of big files new here go to the server as the scan reads them (`early.rs`),
    /// and this returns once they are stored.
    #[allow(clippy::too_many_arguments)]
    async fn load(
        &self,
        folder: &FolderConfig,
        fs: Arc<dyn Filesystem>,
        scope: &Scope,
        installing: HashMap<RelPath, (u64, filesync_core::Hash)>,
        rows: Option<Rows>,
        rules: IgnoreRules,
        send: Option<early::Target>,
    ) -> Result<Views, SyncError> {
        let name = folder.name.as_str();
        let started = tokio::time::Instant::now();
        let (bases, remote) = match rows {
            Some(rows) => rows,
            None => self.rows(name, scope).await?,
        };
        // Remote files newer than their base here may be versions this computer had
        // (`own_versions`).
        let unknown: Vec<&RelPath> =
            remote.iter().filter(|(p, r)| bases.get(*p).is_none_or(|b| b.rev < r.rev)).map(|(p, _)| p).collect();
        let own_versions =
            if unknown.is_empty() { HashMap::new() } else { self.db.own_versions_among(name, &unknown).await? };
        let db_done = started.elapsed();
        let known: HashMap<RelPath, KnownFile> = bases
            .iter()
            .map(|(p, b)| {
                (p.clone(), KnownFile { size: b.size, mtime_ns: b.mtime_ns, ino: b.ino, meta: b.meta.clone() })
            })
            .collect();
        let (chunker, clock, full, roots) = (self.chunker, self.clock.clone(), scope.is_full(), scope.roots());
        let (threads, settle) = (self.scan_threads, self.settle);
        let root_count = roots.len();
        let early = send.map(|target| {
            let excluded = Excluded::new(&folder.settings.excluded);
            early::Early::start(target, self.announce_min_bytes, chunker.min, excluded)
        });
        let (sink, sending) = early.unzip();
        let scanned = tokio::task::spawn_blocking(move || {
            let sink = sink.as_ref().map(|e| e as &dyn scan::ChunkSink);
            let scanner =
                scan::Scanner { clock: &*clock, sink, threads, settle, ..scan::Scanner::new(&*fs, &known, &chunker) };
            let scanned =
                if full { scanner.scan_ignoring(&rules) } else { scanner.scan_paths_ignoring(&roots, &rules) };
            scanned.map(|s| (s, rules))
        })
        .await
        .map_err(|e| SyncError::Internal(e.to_string()));
        // What the scan handed over is stored before the upload asks what the server lacks.
        let sent_early = match sending {
            Some(task) => task.await.map_err(|e| SyncError::Internal(e.to_string()))?,
            None => 0,
        };
        let (scanned, rules) =
            scanned?.map_err(|cause| SyncError::Scan { path: folder.path.display().to_string(), cause })?;
        debug!(
            folder = name,
            roots = root_count,
            bases = bases.len(),
            remote = remote.len(),
            db_ms = db_done.as_millis() as u64,
            scan_ms = (started.elapsed() - db_done).as_millis() as u64,
            "loaded"
        );
        Ok(Views { scanned, rules, bases, remote, installing, own_versions, sent_early })
    }

    /// One pass over `scope`: plan it (a whole folder in parts of whole top-level trees),
    /// weigh its remote deletions with the mass-delete guard, and execute it. A part without
    /// remote deletions is executed as soon as it is planned, so that a walk of the whole
    /// folder holds one part in memory at a time; parts with remote deletions wait for the
    /// guard's verdict on the whole pass.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn pass(
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
        if run.rules.is_none() {
            let fs = fs.clone();
            let rules = tokio::task::spawn_blocking(move || IgnoreRules::load(&*fs))
                .await
                .map_err(|e| SyncError::Internal(e.to_string()))?;
            run.rules = Some(rules);
        }
        let parts = match scope {
            Scope::Full if !run.preview => self.partitions(name, &fs).await?,
            _ => vec![scope.clone()],
        };
        // The guard weighs deletions against every synced file, not only those of one part.
        let whole = matches!(parts.as_slice(), [Scope::Full]);
        let mut out = PassOutcome::default();
        let mut deferred = Vec::new();
        let mut deletes = 0;
        // The next part's rows are read while this one is scanned and planned: parts are
        // disjoint trees, so what this part records cannot change them.
        let mut ahead: Option<Rows> = None;
        for (k, part) in parts.iter().enumerate() {
            let here = installing.iter().filter(|(p, _)| part.covers(p)).map(|(p, v)| (p.clone(), *v)).collect();
            let next = async {
                match parts.get(k + 1) {
                    Some(next) if !run.preview => self.rows(name, next).await.map(Some),
                    _ => Ok(None),
                }
            };
            let this =
                Part { scope: part, installing: here, rows: ahead.take(), whole_walk: scope.is_full(), folder_id };
            let (planned, next) = tokio::join!(self.plan_part(folder, fs.clone(), progress, run, this), next);
            let planned = planned?;
            ahead = next?;
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
        part: Part<'_>,
    ) -> Result<Planned, SyncError> {
        let name = folder.name.as_str();
        progress.start("scanning", 0, 0);
        let rules = run.rules.clone().unwrap_or_default();
        // A download-only folder sends nothing, nor does a preview.
        let uploads = !run.preview && folder.settings.planner_direction() != filesync_planner::Direction::DownloadOnly;
        let send = uploads.then(|| early::Target {
            server: self.server.clone(),
            folder_id: part.folder_id,
            throttle: run.up.clone(),
        });
        let views = self.load(folder, fs.clone(), part.scope, part.installing, part.rows, rules, send).await?;
        // A root that vanished during the scan must not read as "everything was deleted".
        if !fs.root_exists() {
            return Err(SyncError::FolderMissing { path: folder.path.display().to_string() });
        }
        let started = tokio::time::Instant::now();
        let mut input = input::build(&views, &Excluded::new(&folder.settings.excluded), &*fs);
        let built = started.elapsed();
        if !run.preview {
            let settled = crate::state::StepRecord {
                bases: std::mem::take(&mut input.promoted),
                own_versions: std::mem::take(&mut input.own_versions_new),
                forget_own_versions: std::mem::take(&mut input.own_versions_done),
                forget_installing: std::mem::take(&mut input.installing_done),
                ..Default::default()
            };
            self.db.record_step(name, &settled).await?;
        }
        let now = self.clock.now_unix();
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
        let eviction = filesync_planner::plan_eviction(&input.excluded, &ctx);
        // An excluded file uploaded now is evicted by the pass that follows at once, not by
        // the next walk of the folder.
        let evict_next = eviction
            .iter()
            .filter_map(|a| match a {
                Action::Upload { path, .. } => Some(path.clone()),
                _ => None,
            })
            .collect();
        // Files the eviction removes, or forgets as deleted here (a deletion in an excluded
        // subfolder is never sent), are remembered with their version (`StepRecord::own_versions`).
        let evicting = eviction
            .iter()
            .filter_map(|a| match a {
                Action::DeleteLocal { path } | Action::ForgetBase { path } => {
                    let base = input.excluded.get(path)?.base.as_ref()?;
                    (base.meta.kind == filesync_core::EntryKind::File)
                        .then(|| (path.clone(), (base.rev, base.meta.hash)))
                }
                _ => None,
            })
            .collect();
        plan.extend(eviction);
        debug!(
            folder = name,
            paths = input.state.len(),
            build_ms = built.as_millis() as u64,
            plan_ms = (started.elapsed() - built).as_millis() as u64,
            "planned"
        );
        let preview = run.preview.then(|| {
            input.state.extend(std::mem::take(&mut input.excluded));
            Box::new(policy::summarize(&input.state, &plan))
        });
        let resend_lost = part.whole_walk && direction != filesync_planner::Direction::DownloadOnly;
        Ok(Planned {
            views,
            plan,
            deletes,
            synced_in_state,
            skipped: input.skipped,
            now,
            preview,
            resend_lost,
            evict_next,
            evicting,
        })
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
        let Planned { views, plan, skipped, now, resend_lost, evict_next, evicting, .. } = planned;
        let actions = plan.iter().filter(|a| !a.is_report()).count();
        // A conflict copy is a new local file: the next pass uploads it. A directory that
        // waits for its children to go (to become a file) is decided once they are gone.
        let mut followup: Vec<RelPath> = plan
            .iter()
            .filter_map(|a| match a {
                Action::MoveLocalAside { copy, .. } => Some(copy.clone()),
                Action::DeleteRemote { path, .. } | Action::ForgetBase { path } => path.parent(),
                _ => None,
            })
            .collect();
        followup.extend(names_freed_for_skipped(&plan, &skipped));
        if actions > 0 {
            info!(folder = name, actions, "executing plan");
        }
        let steps = Steps::sort(plan, &views.remote);
        let executor = Executor {
            engine: self,
            name,
            folder_id,
            fs: fs.clone(),
            progress,
            run,
            scanned: &views.scanned,
            bases: &views.bases,
            remote: &views.remote,
            now_unix: now,
            report: PassReport { skipped, ..PassReport::default() },
            moved_away: Default::default(),
            evicting,
        };
        let mut report = executor.run(steps).await?;
        report.bytes_up += views.sent_early;
        if resend_lost {
            report.bytes_up += super::repair::resend_lost_chunks(&*self.server, &fs, name, &views).await?;
        }
        followup.append(&mut report.retry);
        followup.extend(evict_next);
        // Only where a child was deleted here: a directory whose children stay (new files, or
        // ignored ones in an excluded subfolder) would otherwise be looked at pass after pass.
        followup.extend(report.written.iter().filter(|(_, left)| left.is_none()).filter_map(|(p, _)| p.parent()));
        followup.extend(report.errors.iter().filter_map(|e| RelPath::new(e.path.as_str()).ok()));
        Ok(PassOutcome { report, actions, followup })
    }
}

/// Skipped paths whose name this plan frees: the spelling that held it on a case-insensitive
/// disk is deleted here or on the server, so the other one can come in the same sync (found
/// by the simulation, seed 2080237).
fn names_freed_for_skipped(plan: &[Action], skipped: &[SkippedItem]) -> Vec<RelPath> {
    if skipped.is_empty() {
        return Vec::new();
    }
    let freed: HashSet<String> = plan
        .iter()
        .filter_map(|a| match a {
            Action::DeleteLocal { path } | Action::DeleteRemote { path, .. } | Action::ForgetBase { path } => {
                Some(crate::names::fold(path.as_str()))
            }
            _ => None,
        })
        .collect();
    skipped
        .iter()
        .filter(|s| freed.contains(&crate::names::fold(&s.path)))
        .filter_map(|s| RelPath::new(s.path.as_str()).ok())
        .collect()
}

/// One part of a pass to plan: its scope, the interrupted downloads in it, and its rows if
/// they were read ahead.
struct Part<'a> {
    scope: &'a Scope,
    installing: HashMap<RelPath, (u64, filesync_core::Hash)>,
    rows: Option<Rows>,
    /// The part belongs to a walk of the whole folder.
    whole_walk: bool,
    /// The server's id of the folder.
    folder_id: u64,
}

/// The bases and the mirror rows of a scope.
type Rows = (HashMap<RelPath, crate::state::BaseRow>, HashMap<RelPath, filesync_core::EntryState>);

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
    /// Send the server again the chunks it lost of the files held in sync (`repair.rs`).
    resend_lost: bool,
    /// Files of excluded subfolders this pass uploads: the next pass evicts them.
    evict_next: Vec<RelPath>,
    /// Files of excluded subfolders this pass removes, with the rev and content of their base.
    evicting: HashMap<RelPath, (u64, filesync_core::Hash)>,
}

impl PassOutcome {
    /// Adds what another part of the same pass found and did.
    fn absorb(&mut self, other: PassOutcome) {
        let (r, o) = (&mut self.report, other.report);
        r.add_work(&o);
        r.errors.extend(o.errors);
        r.over_quota |= o.over_quota;
        r.skipped.extend(o.skipped);
        r.written.extend(o.written);
        self.actions += other.actions;
        self.followup.extend(other.followup);
    }
}
