//! One folder's task: it owns the folder's watcher, collects what needs a look — paths the
//! watcher saw, revisions the server announced, a periodic walk, retries — and runs one
//! incremental pass at a time when its schedule and the connection allow. It also keeps the
//! folder's honest status: *in sync* only when nothing is queued, running, due, behind the
//! server, held back or failing.
//!
//! Echoes cost nothing: a watcher event about a path this agent just wrote (and that still
//! looks exactly as written) is dropped, and a push for a revision already pulled (our own
//! commit coming back) wakes nothing.

use super::board::{StatusBoard, report_pass};
use super::watch::{LocalChanges, watch_folder};
use super::{AgentOptions, Event};
use crate::config::{FolderConfig, Schedule};
use crate::engine::server::Announced;
use crate::engine::{Engine, Scope, SyncError, stat_matches};
use crate::fs::{Filesystem, RealFs, Stat};
use crate::state::StateDb;
use crate::status::{FolderState, Progress};
use filesync_core::RelPath;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{info, warn};

/// How long a path the engine wrote is remembered, to recognise the watcher's echo of it.
const OWN_WRITE_WINDOW: Duration = Duration::from_secs(3);
/// Files moved by a pass from which its freed memory is handed back (see
/// [`release_freed_memory`]).
const BIG_PASS_FILES: u64 = 256;
/// The longest time between walks of a folder whose watcher could not start.
const UNWATCHED_RESCAN: Duration = Duration::from_secs(60);
/// When files failed, how long before they are tried again.
const RETRY_AFTER: Duration = Duration::from_secs(10);
/// Failed uploads wait this long when the account is over its storage quota: the server would
/// refuse them again until someone deletes files or raises the quota (a local change still
/// starts a pass at once).
const QUOTA_RETRY_AFTER: Duration = Duration::from_secs(300);
/// A file that changed while it was read (still being written) is read again this soon.
const CHANGING_RETRY_AFTER: Duration = Duration::from_secs(2);
/// Files of other computers' uploads in progress fetched at once, per folder.
const MAX_PREFETCHES: usize = 8;
/// How often the progress of files fetched ahead is shown.
const RECEIVING_TICK: Duration = Duration::from_millis(500);

/// What `publish` put on the board: the reasons the folder waits, the files still being
/// written, the cursor, the server's revision and when the next scheduled pass is due.
type Published = (Vec<String>, Vec<String>, u64, u64, Option<Instant>);

/// What the task needs from the agent around it.
#[derive(Clone)]
pub(super) struct Deps {
    pub engine: watch::Receiver<Option<Engine>>,
    pub board: StatusBoard,
    pub opts: AgentOptions,
    pub db: StateDb,
    /// Set for events from the watcher (the supervisor's end of the folder's channel).
    pub tx: mpsc::Sender<Event>,
    /// Where the announcements of the uploads this folder fetches ahead come by.
    pub routes: super::Routes,
}

pub(super) struct FolderTask {
    pub folder: FolderConfig,
    /// Every folder is paused (`filesync pause` without a name).
    pub all_paused: bool,
    deps: Deps,
    fs: Arc<dyn Filesystem>,
    local: Arc<LocalChanges>,
    watcher: Option<notify::RecommendedWatcher>,
    /// Work waiting: paths (or everything) to look at.
    scope: Scope,
    /// Paths that failed, looked at again at `retry_at`.
    retry: Scope,
    retry_at: Option<Instant>,
    /// The server announced something this computer has not pulled.
    pull: bool,
    /// Interval schedule: a pass is allowed (the interval elapsed, or a request came).
    due: bool,
    /// When the next periodic walk (continuous schedule) or scheduled pass (interval) is due.
    next_due: Instant,
    /// What the engine wrote lately: path → what it left there, and when.
    own: HashMap<RelPath, (Option<Stat>, Instant)>,
    folder_id: Option<u64>,
    cursor: u64,
    server_rev: u64,
    /// A pass is running (for the status).
    running: bool,
    guard_paused: bool,
    held_back: usize,
    failing: bool,
    /// Files skipped because they changed while they were read (still being written): they
    /// wait in `retry` and count as waiting until a pass reads them whole.
    changing: BTreeSet<RelPath>,
    /// Files a program still holds open for writing (`take_local`): they wait in `retry`, not
    /// read yet, and count as waiting too.
    open_for_writing: BTreeSet<RelPath>,
    /// What `publish` last put on the board, so that an unchanged status is not re-sent.
    published: Option<Published>,
    /// Files other computers are uploading that are being fetched ahead of their commit: the
    /// upload, a sender of its route (closed once the fetch ends; dropping it, with the
    /// route, stops the fetch), and how far it is (shown while no pass runs).
    prefetching: BTreeMap<RelPath, (u64, mpsc::UnboundedSender<Announced>, Arc<Progress>)>,
    /// The board shows the folder syncing because of the fetches ahead, not a pass.
    shown_receiving: bool,
}

impl FolderTask {
    pub fn new(folder: FolderConfig, all_paused: bool, deps: Deps) -> FolderTask {
        let fs: Arc<dyn Filesystem> = Arc::new(RealFs::new(folder.path.clone()));
        FolderTask {
            folder,
            all_paused,
            deps,
            fs,
            local: Arc::new(LocalChanges::default()),
            watcher: None,
            // Whatever happened while the agent was not running: walk everything once.
            scope: Scope::Full,
            retry: Scope::default(),
            retry_at: None,
            pull: true,
            due: true,
            next_due: Instant::now(),
            own: HashMap::new(),
            folder_id: None,
            cursor: 0,
            server_rev: 0,
            running: false,
            guard_paused: false,
            held_back: 0,
            failing: false,
            changing: BTreeSet::new(),
            open_for_writing: BTreeSet::new(),
            published: None,
            prefetching: BTreeMap::new(),
            shown_receiving: false,
        }
    }

    fn name(&self) -> &str {
        &self.folder.name
    }

    fn paused(&self) -> bool {
        self.folder.settings.paused || self.all_paused
    }

    fn continuous(&self) -> bool {
        matches!(self.folder.settings.schedule(), Schedule::Continuous)
    }

    /// The period of the periodic walk (continuous schedule) or of the passes (interval).
    fn period(&self) -> Duration {
        let rescan = match self.folder.settings.rescan_secs {
            0 => self.deps.opts.rescan,
            secs => Duration::from_secs(secs),
        };
        match self.folder.settings.schedule() {
            // Without a watcher, only walks find local changes.
            Schedule::Continuous if self.watcher.is_none() => rescan.min(UNWATCHED_RESCAN),
            Schedule::Continuous => rescan,
            Schedule::Every(period) => period,
        }
    }

    fn start_watcher(&mut self) {
        self.watcher = None;
        if self.paused() {
            return;
        }
        match watch_folder(&self.folder, self.local.clone(), self.deps.tx.clone()) {
            Ok(w) => self.watcher = Some(w),
            Err(e) => {
                warn!(folder = %self.name(), "cannot watch {}: {e}; relying on periodic rescans", self.folder.path.display())
            }
        }
    }

    fn has_work(&self) -> bool {
        self.pull || !self.scope.is_empty() || !self.local.is_empty()
    }

    fn connected(&self) -> bool {
        self.deps.engine.borrow().is_some()
    }

    /// Runs until the channel closes. A panic inside is caught by the supervisor, which
    /// starts the task again.
    pub async fn run(&mut self, events: &mut mpsc::Receiver<Event>) {
        self.start_watcher();
        if let Ok(Some(reason)) = crate::engine::policy::tripped(&self.deps.db, self.name()).await {
            self.guard_paused = true;
            self.deps.board.folder(&self.folder.name, |f| {
                f.state = FolderState::Paused;
                f.paused_reason = Some(reason);
            });
        }
        self.next_due = Instant::now() + self.period();
        let mut engine = self.deps.engine.clone();
        loop {
            self.publish();
            if !self.paused() && self.has_work() && self.connected() && (self.continuous() || self.due) {
                if self.continuous() && !self.pull && !self.debounce(events).await {
                    return;
                }
                self.pass().await;
                // The next periodic walk (or scheduled pass) is one period after this one.
                self.next_due = Instant::now() + self.period();
                continue;
            }
            let retry = async {
                match self.retry_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                ev = events.recv() => match ev {
                    Some(ev) => {
                        if self.handle(ev) {
                            self.next_due = Instant::now() + self.period();
                        }
                    }
                    None => return,
                },
                _ = tokio::time::sleep_until(self.next_due) => {
                    self.next_due = Instant::now() + self.period();
                    self.scope = Scope::Full;
                    self.pull = true;
                    self.due = true;
                }
                _ = retry => {
                    self.retry_at = None;
                    self.scope.merge(std::mem::take(&mut self.retry));
                }
                r = engine.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(RECEIVING_TICK), if !self.prefetching.is_empty() => {
                    self.show_receiving();
                }
            }
        }
    }

    /// Applies one event; returns whether the schedule changed.
    fn handle(&mut self, ev: Event) -> bool {
        match ev {
            // The paths wait in `self.local`.
            Event::Local => false,
            Event::Rescan => {
                self.scope = Scope::Full;
                false
            }
            Event::Request => {
                self.scope = Scope::Full;
                self.due = true;
                false
            }
            Event::Connected => {
                self.pull = true;
                false
            }
            Event::Remote { folder_id, seq } => {
                match self.folder_id {
                    // Some pushes were lost, or this folder's id is not known yet.
                    _ if folder_id == 0 => self.pull = true,
                    None => self.pull = true,
                    Some(id) if id == folder_id => {
                        self.server_rev = self.server_rev.max(seq);
                        // Our own commit coming back is already pulled.
                        self.pull |= seq > self.cursor;
                    }
                    Some(_) => {}
                }
                false
            }
            Event::Announced(upload) => {
                self.announced(&upload);
                false
            }
            Event::Settings { folder, all_paused } => {
                let was_paused = self.paused();
                let was = std::mem::replace(&mut self.folder, *folder);
                self.all_paused = all_paused;
                let schedule_changed = was.settings.schedule != self.folder.settings.schedule
                    || was.settings.rescan_secs != self.folder.settings.rescan_secs
                    || was_paused != self.paused();
                if was_paused != self.paused() {
                    self.start_watcher();
                    self.published = None;
                }
                // Direction, filters or limits may change what every path means. Fetches of
                // uploads in progress stop (a paused folder fetches nothing); the commits bring
                // those files as the new settings allow.
                self.prefetching.clear();
                if let Some(id) = self.folder_id {
                    self.deps.routes.end_uploads(id);
                }
                self.scope = Scope::Full;
                self.pull = true;
                self.due = true;
                info!(folder = %self.name(), "applied the changed settings");
                let what = "applied the changed settings";
                self.deps.opts.live.record(crate::live::ActivityKind::Action, Some(&self.folder.name), what);
                schedule_changed
            }
        }
    }

    /// Starts fetching a file another computer began uploading, if this folder would
    /// download it; its later announcements come straight to the fetch (`RouteTable`).
    fn announced(&mut self, upload: &super::Upload) {
        let a = &upload.first;
        if self.folder_id != Some(a.folder_id) || self.paused() {
            return;
        }
        self.prefetching.retain(|_, (_, tx, _)| !tx.is_closed());
        // Too many at once: the commit's download does it.
        if self.prefetching.len() >= MAX_PREFETCHES {
            return;
        }
        let Some(engine) = self.deps.engine.borrow().clone() else { return };
        let Some((tx, rx)) = upload.more.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() else {
            return;
        };
        let progress = Arc::new(Progress::default());
        // The sender tells whether the fetch still runs (its receiver goes when it ends).
        self.prefetching.insert(a.path.clone(), (a.upload, tx, progress.clone()));
        let (folder, fs, first) = (self.folder.clone(), self.fs.clone(), a.clone());
        let limit = crate::engine::throttle::Throttle::new(self.folder.settings.download_limit);
        tokio::spawn(async move {
            // Whether this folder would download the file reads its disk: not on this task.
            let (f, d, announced) = (folder.clone(), fs.clone(), first.clone());
            let wanted = tokio::task::spawn_blocking(move || crate::engine::prefetch::wanted(&f, &*d, &announced));
            if wanted.await.unwrap_or(false) {
                engine.prefetch(folder.name, fs, first, rx, limit, progress).await;
            }
        });
    }

    /// While files are fetched ahead, the folder is syncing, and (between passes) shows their
    /// progress; once the last fetch ends, the progress goes. Returns whether any is running.
    fn show_receiving(&mut self) -> bool {
        self.prefetching.retain(|_, (_, tx, _)| !tx.is_closed());
        if self.running {
            return !self.prefetching.is_empty();
        }
        let snap = self.prefetching.values().next().map(|(_, _, p)| p.snapshot());
        let receiving = snap.is_some();
        let mut shown = self.shown_receiving;
        self.deps.board.folder(&self.folder.name, |f| {
            // An idle folder receiving a file is syncing, and says so with its progress; it is
            // idle again once the last fetch ends (a folder in error stays in error).
            match (receiving, f.state) {
                (true, FolderState::Idle) => (f.state, shown) = (FolderState::Syncing, true),
                (false, FolderState::Syncing) if shown => (f.state, shown) = (FolderState::Idle, false),
                _ => {}
            }
            if receiving || f.state != FolderState::Syncing {
                f.progress = snap;
            }
        });
        self.shown_receiving = shown;
        receiving
    }

    /// Waits until the watcher has been quiet for the debounce time (at most `max_delay`
    /// after the first change), so that an editor's burst of writes makes one pass. A push
    /// from the server ends the wait at once. Returns false when the channel closed.
    async fn debounce(&mut self, events: &mut mpsc::Receiver<Event>) -> bool {
        let start = Instant::now();
        loop {
            let wait = self.deps.opts.debounce.min(self.deps.opts.max_delay.saturating_sub(start.elapsed()));
            if wait.is_zero() || self.pull {
                return true;
            }
            match tokio::time::timeout(wait, events.recv()).await {
                Ok(Some(ev)) => {
                    self.handle(ev);
                }
                Ok(None) => return false,
                Err(_) => return true,
            }
        }
    }

    /// What the watcher collected, without the echoes of the engine's own writes. A file a
    /// program still holds open for writing waits until it is closed (the watcher then brings
    /// it again), at most `watch::WRITING_WAIT`: a copy in progress, or a new version written
    /// under a temporary name and renamed over the file, is not sent half-written. A file the
    /// last pass found still changing waits for its retry (`note_changing`) rather than being
    /// read again at every write the watcher reports: each look at a big one reads up to
    /// 64 MiB of it and asks the server about its first chunks.
    fn take_local(&mut self) -> Scope {
        let now = Instant::now();
        self.own.retain(|_, (_, at)| now.duration_since(*at) < OWN_WRITE_WINDOW);
        self.own.shrink_to_fit();
        let Some(paths) = self.local.take() else { return Scope::Full };
        let fs = &self.fs;
        let own = &self.own;
        let echo = |p: &RelPath| {
            own.get(p).is_some_and(|(left, _)| fs.stat(p).is_ok_and(|now| stat_matches(now.as_ref(), left.as_ref())))
        };
        let (mut look, mut later) = (Vec::new(), Vec::new());
        for p in paths.into_iter().filter(|p| !echo(p)) {
            if let Some(until) = self.local.writing_until(&p, now) {
                self.retry_at = Some(self.retry_at.map_or(until, |at| at.min(until)));
                self.open_for_writing.insert(p.clone());
                later.push(p);
                continue;
            }
            self.open_for_writing.remove(&p);
            if self.changing.contains(&p) {
                later.push(p);
            } else {
                look.push(p);
            }
        }
        self.retry.extend(later);
        Scope::paths(look)
    }

    async fn pass(&mut self) {
        let Some(eng) = self.deps.engine.borrow().clone() else { return };
        let mut scope = std::mem::take(&mut self.scope);
        scope.merge(self.take_local());
        if scope.is_empty() && !self.pull && !self.due {
            return; // all the watcher brought waits (files still being written)
        }
        let full = scope.is_full();
        self.pull = false;
        self.due = false;
        self.running = true;
        // The pass says what the folder is doing now.
        self.shown_receiving = false;
        if !self.guard_paused {
            self.deps.board.folder(&self.folder.name, |f| f.state = FolderState::Syncing);
        }
        self.publish();
        let progress = Arc::new(Progress::default());
        let ticker = {
            let board = self.deps.board.clone();
            let progress = progress.clone();
            let name = self.folder.name.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    let snap = progress.snapshot();
                    board.folder(&name, |f| f.progress = Some(snap));
                }
            })
        };
        let r = eng.sync_scope(&self.folder, self.fs.clone(), &progress, scope.clone()).await;
        ticker.abort();
        self.running = false;
        match &r {
            Ok(rep) => {
                self.folder_id = Some(rep.folder_id).filter(|id| *id != 0).or(self.folder_id);
                self.cursor = rep.cursor;
                self.server_rev = self.server_rev.max(rep.cursor);
                self.pull = self.server_rev > self.cursor;
                let now = Instant::now();
                // More writes than the watcher's queue holds overflow it into a walk of
                // everything anyway: then there is nothing to tell apart.
                self.own.retain(|_, (_, at)| now.duration_since(*at) < OWN_WRITE_WINDOW);
                if rep.written.len() <= super::watch::CAPACITY {
                    for (p, left) in &rep.written {
                        self.own.insert(p.clone(), (*left, now));
                    }
                }
                self.held_back = rep.skipped.iter().filter(|s| s.reason.starts_with("not ")).count();
                self.failing = !rep.errors.is_empty();
                if !rep.retry.is_empty() {
                    self.retry.extend(rep.retry.iter().cloned());
                    self.retry_at = Some(now + if rep.over_quota { QUOTA_RETRY_AFTER } else { RETRY_AFTER });
                }
                self.note_changing(&scope, &rep.skipped, now);
            }
            Err(e) => {
                warn!(folder = %self.name(), detail = e.detail().unwrap_or_default(), "sync failed: {e}");
                // Nothing of the scope is lost: it waits for the next pass (and the paths a
                // pull found changed wait in the state database's `unapplied` table).
                self.scope.merge(scope);
                self.pull = true;
                self.failing = true;
                if e.is_transient() {
                    self.due = true; // retry once reconnected
                    tokio::time::sleep(Duration::from_secs(1)).await;
                } else {
                    self.retry.merge(std::mem::take(&mut self.scope));
                    self.retry_at = Some(Instant::now() + RETRY_AFTER);
                }
            }
        }
        // A walk of everything, or a pass that moved many files (the first sync of a big
        // folder arrives as passes over what the server changed), leaves freed memory behind.
        let big = r.as_ref().is_ok_and(|rep| rep.uploaded + rep.downloaded >= BIG_PASS_FILES);
        if full || big {
            release_freed_memory();
        }
        self.guard_paused = match &r {
            Ok(rep) => rep.paused.as_ref().is_some_and(|p| p.by_guard),
            Err(e) => matches!(e, SyncError::FolderMissing { .. }),
        };
        report_pass(&self.deps.board, &self.folder.name, &r);
        if r.is_ok() {
            self.publish_kept().await;
        }
    }

    /// Says which excluded subfolders are still here after a pass, and why (see
    /// [`crate::kept`]): the promise that their copy here goes is not always kept.
    async fn publish_kept(&self) {
        let excluded = self.folder.settings.excluded.clone();
        let kept = if excluded.is_empty() {
            Vec::new()
        } else {
            let fs = self.fs.clone();
            let download_only = self.folder.settings.direction == crate::config::Direction::DownloadOnly;
            tokio::task::spawn_blocking(move || {
                let rules = crate::filter::IgnoreRules::load(&*fs);
                crate::kept::kept_subfolders(&*fs, &rules, &excluded, download_only)
            })
            .await
            .unwrap_or_default()
        };
        self.deps.board.folder(&self.folder.name, |f| f.kept = kept);
    }

    fn publish_paused(&self) {
        let all = self.all_paused && !self.folder.settings.paused;
        let reason = crate::engine::policy::Paused::by_user(all).reason;
        self.deps.board.folder(&self.folder.name, |f| {
            f.state = FolderState::Paused;
            f.paused_reason = Some(reason);
        });
    }

    /// Keeps the files still being written after a pass over `scope`: those it looked at are
    /// settled unless it skipped them as changing again; those it skipped are read again
    /// shortly.
    fn note_changing(&mut self, scope: &Scope, skipped: &[crate::status::SkippedItem], now: Instant) {
        self.changing.retain(|p| !scope.covers(p));
        self.open_for_writing.retain(|p| !scope.covers(p));
        let again: Vec<RelPath> = skipped
            .iter()
            .filter(|s| crate::scan::is_changing(&s.reason))
            .filter_map(|s| RelPath::new(s.path.as_str()).ok())
            .collect();
        if again.is_empty() {
            return;
        }
        self.changing.extend(again.iter().cloned());
        self.retry.extend(again);
        let soon = now + CHANGING_RETRY_AFTER;
        self.retry_at = Some(self.retry_at.map_or(soon, |at| at.min(soon)));
    }

    /// Paths wait in `retry` because they failed, not only because they were still being
    /// written.
    fn retrying_failures(&self) -> bool {
        match &self.retry {
            Scope::Full => true,
            Scope::Paths(set) => set.iter().any(|p| !self.changing.contains(p) && !self.open_for_writing.contains(p)),
        }
    }

    /// Puts the folder's live state on the board: whether it is in sync, and if not, why.
    fn publish(&mut self) {
        let mut waiting = Vec::new();
        if self.paused() {
            waiting.push("paused".to_string());
        } else if self.guard_paused {
            waiting.push("paused by the mass-delete guard".to_string());
        }
        if !self.connected() {
            waiting.push("not connected to the server".to_string());
        }
        // A file another computer is uploading, fetched ahead of its commit, is on its way.
        if self.running || !self.prefetching.is_empty() {
            waiting.push("syncing".to_string());
        }
        if !self.local.is_empty() || !self.scope.is_empty() {
            waiting.push(if self.continuous() || self.due {
                "changes waiting to be synced".to_string()
            } else {
                "changes waiting for the next scheduled sync".to_string()
            });
        }
        // Only a revision the server announced beyond the cursor is "newer changes"; a pull
        // asked for without one (a reconnect, a push merged away) is only a check.
        if self.server_rev > self.cursor {
            waiting.push(format!("the server has newer changes (revision {} of {})", self.cursor, self.server_rev));
        } else if self.pull && !self.paused() {
            waiting.push("checking the server for changes".to_string());
        }
        if self.held_back > 0 {
            waiting.push(format!("{} change(s) held back by the folder's direction", self.held_back));
        }
        let changing: BTreeSet<&RelPath> = self.changing.iter().chain(&self.open_for_writing).collect();
        if !changing.is_empty() {
            let n = changing.len();
            waiting.push(format!("{n} {} waiting (still being written)", if n == 1 { "file" } else { "files" }));
        }
        if self.failing || self.retrying_failures() {
            waiting.push("some files could not be synced; retrying".to_string());
        }
        let (cursor, server_rev) = (self.cursor, self.server_rev.max(self.cursor));
        // A scheduled folder says when it syncs next; one whose pass is already due (waiting
        // for the connection, say) has no time to give.
        let next_due = (!self.continuous() && !self.paused() && !self.running && !self.due).then_some(self.next_due);
        let changing: Vec<String> = changing.iter().map(|p| p.to_string()).collect();
        let now = Some((waiting.clone(), changing.clone(), cursor, server_rev, next_due));
        if self.published == now {
            return;
        }
        self.published = now;
        if self.paused() {
            self.publish_paused();
        }
        self.deps.board.folder(&self.folder.name, |f| {
            f.in_sync = waiting.is_empty();
            f.waiting = waiting;
            f.changing = changing;
            f.local_rev = cursor;
            f.server_rev = server_rev;
            f.next_sync_at_ms = next_due
                .map(|at| super::unix_now_ms() + at.saturating_duration_since(Instant::now()).as_millis() as i64);
        });
    }
}

/// Gives the memory a big pass freed back to the system. glibc keeps freed heap pages for
/// reuse, so an idle agent would otherwise hold the peak of its last walk or first sync.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap memory to the kernel; it touches no live
    // allocation and is safe to call from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}
