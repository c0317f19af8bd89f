//! The long-running agent: one supervised task per folder, driven by a closed `Event` enum
//! (local change from the watcher, remote change pushed by the server, periodic rescan), a
//! connection manager that reconnects with backoff, and a status writer.
//!
//! Invariant: at most one pass per folder runs at a time; a burst of events yields one pass.

use crate::config::{Config, FolderConfig, Home, Schedule};
use crate::engine::{Engine, SyncError};
use crate::fs::{Filesystem, RealFs};
use crate::state::StateDb;
use crate::status::{AgentStatus, FolderState, FolderStatus, Progress};
use filesync_client::{Connection, Push, Trust};
use notify::Watcher;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("another FileSync agent (or `filesync sync`) is already running for {0}")]
    AlreadyRunning(String),
    #[error("this computer is not logged in; run `filesync login` first")]
    NotLoggedIn,
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error("cannot create the lock file {path}: {source}")]
    Lock { path: String, source: std::io::Error },
}

#[derive(Clone, Debug)]
pub struct AgentOptions {
    /// Quiet time after the last local change before a pass starts.
    pub debounce: Duration,
    /// A pass starts at the latest this long after the first change of a burst.
    pub max_delay: Duration,
    /// Full rescan interval, for anything the watcher missed, for a folder whose
    /// `rescan_secs` setting is 0 (otherwise that setting applies).
    pub rescan: Duration,
    /// Where the status and activity are published for the local UI.
    pub live: crate::live::LiveStatus,
}

impl Default for AgentOptions {
    fn default() -> Self {
        AgentOptions {
            debounce: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
            rescan: Duration::from_secs(60),
            live: crate::live::LiveStatus::default(),
        }
    }
}

/// How often a folder task looks for a request from the command line (confirm deletions,
/// revert) in the state database.
const REQUEST_POLL: Duration = Duration::from_secs(1);

/// What wakes a folder task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    LocalChange,
    RemoteChange,
    Rescan,
}

/// Holds the home's lock for as long as it lives: one agent (or one `sync`) per home.
pub struct HomeLock {
    _file: std::fs::File,
}

impl HomeLock {
    pub fn acquire(home: &Home) -> Result<HomeLock, AgentError> {
        home.ensure()?;
        let path = home.lock_path();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| AgentError::Lock { path: path.display().to_string(), source })?;
        match file.try_lock() {
            Ok(()) => Ok(HomeLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(AgentError::AlreadyRunning(home.dir.display().to_string())),
            Err(std::fs::TryLockError::Error(source)) => {
                Err(AgentError::Lock { path: path.display().to_string(), source })
            }
        }
    }

    /// True when some process holds the lock of `home`.
    pub fn is_held(home: &Home) -> bool {
        match std::fs::OpenOptions::new().write(true).open(home.lock_path()) {
            Ok(f) => matches!(f.try_lock(), Err(std::fs::TryLockError::WouldBlock)),
            Err(_) => false,
        }
    }
}

/// Connects and authenticates with the stored token and pinned fingerprint.
pub async fn connect(home: &Home, config: &Config) -> Result<Connection, SyncError> {
    let (Some(server), Some(fp)) = (config.server.as_deref(), config.fingerprint.as_deref()) else {
        return Err(SyncError::Internal("this computer is not logged in; run `filesync login` first".into()));
    };
    let token = home
        .token()
        .map_err(|e| SyncError::Internal(e.to_string()))?
        .ok_or_else(|| SyncError::Internal("this computer is not logged in; run `filesync login` first".into()))?;
    let conn = Connection::connect(server, Trust::Pinned(fp.to_string())).await?;
    conn.auth(&token).await?;
    Ok(conn)
}

pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Shared status, written to `status.json` whenever it changes.
#[derive(Clone)]
pub struct StatusBoard {
    inner: Arc<Mutex<AgentStatus>>,
    dirty: Arc<tokio::sync::Notify>,
    live: Option<crate::live::LiveStatus>,
}

impl StatusBoard {
    pub fn new(folders: &[FolderConfig], pid: Option<u32>) -> StatusBoard {
        let status = AgentStatus {
            pid,
            updated_at: unix_now(),
            connection: "offline".into(),
            message: None,
            folders: folders
                .iter()
                .map(|f| FolderStatus {
                    name: f.name.clone(),
                    path: f.path.display().to_string(),
                    state: FolderState::Offline,
                    files: 0,
                    bytes: 0,
                    pending: 0,
                    conflicts: 0,
                    last_sync: None,
                    last_error: None,
                    paused_reason: None,
                    skipped: vec![],
                    progress: None,
                })
                .collect(),
        };
        StatusBoard { inner: Arc::new(Mutex::new(status)), dirty: Arc::new(tokio::sync::Notify::new()), live: None }
    }

    /// Also publishes every change (and each pass's activity) to `live`, for the local UI.
    pub fn with_live(mut self, live: crate::live::LiveStatus) -> StatusBoard {
        self.live = Some(live);
        self
    }

    pub fn update(&self, f: impl FnOnce(&mut AgentStatus)) {
        let mut s = self.inner.lock().expect("status lock");
        f(&mut s);
        s.updated_at = unix_now();
        if let Some(live) = &self.live {
            live.publish(&s);
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

    pub fn snapshot(&self) -> AgentStatus {
        self.inner.lock().expect("status lock").clone()
    }

    /// Writes the status file whenever it changes (at most every 200 ms).
    pub async fn writer(self, home: Home) {
        loop {
            self.dirty.notified().await;
            let json = serde_json::to_vec_pretty(&self.snapshot()).expect("status serializes");
            let path = home.status_path();
            let _ = tokio::task::spawn_blocking(move || crate::config::write_atomic(&path, &json, false)).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Applies a pass's outcome to the status board.
pub fn report_pass(board: &StatusBoard, name: &str, r: &Result<crate::engine::PassReport, SyncError>) {
    if let Some(live) = &board.live {
        live.pass_done(name, r);
    }
    board.folder(name, |f| {
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
                f.skipped = rep.skipped.clone();
                f.last_sync = Some(unix_now());
                if rep.errors.is_empty() {
                    f.state = FolderState::Idle;
                    f.last_error = None;
                } else {
                    f.state = FolderState::Error;
                    f.last_error = Some(
                        rep.errors
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

/// Runs the agent until `shutdown` completes. Changes to the configuration (a folder added
/// or removed, a new login) take effect without a restart.
pub async fn run(
    home: Home,
    opts: AgentOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), AgentError> {
    run_with_ready(home, opts, shutdown, || {}).await
}

/// Like [`run`], and calls `ready` once the agent holds the home's lock and has its state
/// database open — the moment a service manager should consider it started (systemd's
/// `READY=1`, the Windows service's `SERVICE_RUNNING`). A computer not logged in yet waits for
/// a login (made in the local UI or by `filesync login`) instead of failing.
pub async fn run_with_ready(
    home: Home,
    opts: AgentOptions,
    shutdown: impl std::future::Future<Output = ()>,
    ready: impl FnOnce(),
) -> Result<(), AgentError> {
    let _lock = HomeLock::acquire(&home)?;
    let db = StateDb::open(&home.state_path()).await?;
    tokio::pin!(shutdown);
    let mut ready = Some(ready);
    loop {
        let config = home.load()?;
        let token = home.token()?;
        if let Some(ready) = ready.take() {
            ready();
        }
        if config.server.is_none() || token.is_none() {
            // Not an error: the first run happens in the local UI. Wait for a login.
            info!("this computer is not logged in; waiting for a login (`filesync ui` or `filesync login`)");
            opts.live.publish_logged_out();
            tokio::select! {
                _ = shutdown.as_mut() => return Ok(()),
                _ = config_changed(&home, &config, token) => continue,
            }
        }
        match run_config(&home, &config, token, &db, &opts, shutdown.as_mut()).await {
            Exit::Shutdown => return Ok(()),
            Exit::Reconfigure => {
                info!("configuration changed; restarting with the new one");
                opts.live.record(crate::live::ActivityKind::Action, None, "applied the changed configuration");
            }
        }
    }
}

enum Exit {
    Shutdown,
    Reconfigure,
}

/// Completes when the configuration or the token on disk differs from what the agent runs with.
async fn config_changed(home: &Home, config: &Config, token: Option<String>) {
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        if let (Ok(c), Ok(t)) = (home.load(), home.token())
            && (c != *config || t != token)
        {
            return;
        }
    }
}

async fn run_config(
    home: &Home,
    config: &Config,
    token: Option<String>,
    db: &StateDb,
    opts: &AgentOptions,
    shutdown: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) -> Exit {
    let db = db.clone();
    let board = StatusBoard::new(&config.folders, Some(std::process::id())).with_live(opts.live.clone());
    let status_writer = tokio::spawn(board.clone().writer(home.clone()));
    board.update(|_| {});

    let (engine_tx, engine_rx) = watch::channel::<Option<Engine>>(None);
    let mut folder_txs: HashMap<String, mpsc::Sender<Event>> = HashMap::new();
    let mut tasks = Vec::new();
    let mut watchers = Vec::new();
    for f in &config.folders {
        let (tx, rx) = mpsc::channel::<Event>(64);
        match watch_folder(f, tx.clone()) {
            Ok(w) => watchers.push(w),
            Err(e) => warn!(folder = %f.name, "cannot watch {}: {e}; relying on periodic rescans", f.path.display()),
        }
        folder_txs.insert(f.name.clone(), tx);
        let paused = (f.settings.paused || config.paused)
            .then(|| crate::engine::policy::Paused::by_user(&f.name, config.paused && !f.settings.paused));
        let task = folder_task(f.clone(), paused, rx, engine_rx.clone(), board.clone(), opts.clone(), db.clone());
        tasks.push(tokio::spawn(task));
    }
    let folder_txs = Arc::new(folder_txs);

    let device_name = config.device_name.clone().unwrap_or_else(|| "this computer".into());
    let manager = {
        let home = home.clone();
        let board = board.clone();
        let folder_txs = folder_txs.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_secs(1);
            loop {
                let config = match home.load() {
                    Ok(c) => c,
                    Err(e) => {
                        board.update(|s| s.message = Some(e.to_string()));
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        continue;
                    }
                };
                match connect(&home, &config).await {
                    Ok(conn) => {
                        backoff = Duration::from_secs(1);
                        info!("connected to {}", config.server.as_deref().unwrap_or(""));
                        board.update(|s| {
                            s.connection = "online".into();
                            s.message = None;
                        });
                        let mut pushes = conn.take_pushes().expect("fresh connection");
                        let _ = engine_tx.send(Some(Engine::new(conn.clone(), db.clone(), device_name.clone())));
                        for tx in folder_txs.values() {
                            let _ = tx.try_send(Event::RemoteChange);
                        }
                        while let Some(p) = pushes.recv().await {
                            match p {
                                Push::FolderChanged { .. } => {
                                    // Cheap: a folder that did not change finds nothing to pull.
                                    for tx in folder_txs.values() {
                                        let _ = tx.try_send(Event::RemoteChange);
                                    }
                                }
                                Push::Closed(reason) => {
                                    warn!("disconnected: {reason}");
                                    board.update(|s| {
                                        s.connection = "offline".into();
                                        s.message = Some(format!("disconnected: {reason}"));
                                    });
                                    break;
                                }
                            }
                        }
                        let _ = engine_tx.send(None);
                    }
                    Err(e) => {
                        let auth = matches!(&e, SyncError::Client(c) if c.is_auth_failure());
                        warn!("cannot connect: {e}");
                        board.update(|s| {
                            s.connection = if auth { "error".into() } else { "offline".into() };
                            s.message = Some(e.to_string());
                            for f in &mut s.folders {
                                f.state = if auth { FolderState::Error } else { FolderState::Offline };
                            }
                        });
                        if auth {
                            backoff = Duration::from_secs(60);
                        }
                    }
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        })
    };

    let exit = tokio::select! {
        _ = shutdown => Exit::Shutdown,
        _ = config_changed(home, config, token) => Exit::Reconfigure,
    };
    if matches!(exit, Exit::Shutdown) {
        info!("shutting down");
    }
    manager.abort();
    for t in &tasks {
        t.abort();
    }
    for t in tasks {
        let _ = t.await;
    }
    drop(watchers);
    board.update(|s| {
        s.pid = None;
        s.connection = "offline".into();
        for f in &mut s.folders {
            f.state = FolderState::Offline;
            f.progress = None;
        }
    });
    // One last status write.
    let json = serde_json::to_vec_pretty(&board.snapshot()).expect("status serializes");
    let _ = crate::config::write_atomic(&home.status_path(), &json, false);
    status_writer.abort();
    exit
}

/// Watches a folder recursively, turning relevant events into `Event::LocalChange`. Events
/// only about our own temporary files or about ignored paths (editor swap files, build
/// output listed in `.filesyncignore`) wake nothing.
fn watch_folder(f: &FolderConfig, tx: mpsc::Sender<Event>) -> notify::Result<notify::RecommendedWatcher> {
    let root = f.path.clone();
    // A std mutex: the notify thread swaps or reads the rules; nothing awaits while holding it.
    let rules = Mutex::new(crate::filter::IgnoreRules::load(&RealFs::new(root.clone())));
    let mut w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(ev) = res else {
            let _ = tx.try_send(Event::Rescan);
            return;
        };
        if ev.kind.is_access() {
            return;
        }
        let mut rules = rules.lock().unwrap_or_else(|e| e.into_inner());
        if ev
            .paths
            .iter()
            .any(|p| p.strip_prefix(&root).is_ok_and(|r| r == std::path::Path::new(crate::filter::IGNORE_FILE)))
        {
            *rules = crate::filter::IgnoreRules::load(&RealFs::new(root.clone()));
        }
        if event_matters(&root, &rules, &ev.paths) {
            let _ = tx.try_send(Event::LocalChange);
        }
    })?;
    w.watch(&f.path, notify::RecursiveMode::Recursive)?;
    Ok(w)
}

/// Whether a watcher event about `paths` can change what a pass would do: not when every path
/// is one of our temporary files or ignored. An event without paths always matters.
fn event_matters(root: &std::path::Path, rules: &crate::filter::IgnoreRules, paths: &[std::path::PathBuf]) -> bool {
    let irrelevant = |p: &std::path::PathBuf| {
        if p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(filesync_core::path::TEMP_PREFIX)) {
            return true;
        }
        let Ok(rel) = p.strip_prefix(root) else { return false };
        let rel: Vec<String> = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
        match filesync_core::RelPath::normalize(&rel.join("/")) {
            Ok(rp) => rules.is_ignored(&rp, p.is_dir()),
            Err(_) => false,
        }
    };
    paths.is_empty() || !paths.iter().all(irrelevant)
}

/// When a folder task runs passes, from the folder's `schedule` setting.
fn cadence(folder: &FolderConfig, opts: &AgentOptions) -> (Duration, bool) {
    match folder.settings.schedule() {
        Schedule::Continuous => {
            let rescan = if folder.settings.rescan_secs == 0 {
                opts.rescan
            } else {
                Duration::from_secs(folder.settings.rescan_secs)
            };
            (rescan, true)
        }
        Schedule::Every(period) => (period, false),
    }
}

/// One folder: waits for a reason to sync and a connection, runs a pass, reports it.
///
/// Continuous schedule: a watcher event or a server push starts a pass (after a short
/// debounce), and a full pass runs every `rescan_secs` anyway. Interval schedule: events only
/// mark the folder dirty; passes run when the interval is due (and once at the start). A
/// paused folder runs nothing. A request from the command line (confirm deletions, revert)
/// starts a pass at once whatever the schedule.
async fn folder_task(
    folder: FolderConfig,
    paused: Option<crate::engine::policy::Paused>,
    mut events: mpsc::Receiver<Event>,
    mut engine: watch::Receiver<Option<Engine>>,
    board: StatusBoard,
    opts: AgentOptions,
    db: StateDb,
) {
    if let Some(p) = paused {
        board.folder(&folder.name, |f| {
            f.state = FolderState::Paused;
            f.paused_reason = Some(p.reason);
        });
        // Runs nothing until the configuration changes (which restarts this task).
        while events.recv().await.is_some() {}
        return;
    }
    let mut guard_paused = false;
    if let Ok(Some(reason)) = crate::engine::policy::tripped(&db, &folder.name).await {
        guard_paused = true;
        board.folder(&folder.name, |f| {
            f.state = FolderState::Paused;
            f.paused_reason = Some(reason);
        });
    }
    let fs: Arc<dyn Filesystem> = Arc::new(RealFs::new(folder.path.clone()));
    let (period, continuous) = cadence(&folder, &opts);
    let mut due_tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    due_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut request_poll = tokio::time::interval(REQUEST_POLL);
    let mut dirty = true;
    let mut due = true;
    loop {
        // Wait for something to do, the schedule's permission, and a connection to do it with.
        let current = engine.borrow().clone();
        let Some(eng) = current.filter(|_| dirty && (continuous || due)) else {
            tokio::select! {
                ev = events.recv() => match ev {
                    Some(_) => dirty = true,
                    None => return,
                },
                _ = due_tick.tick() => (dirty, due) = (true, true),
                _ = request_poll.tick() => {
                    if crate::engine::policy::request_pending(&db, &folder.name).await.unwrap_or(false) {
                        (dirty, due) = (true, true);
                    }
                }
                r = engine.changed() => if r.is_err() { return },
            }
            if engine.borrow().is_none() && !guard_paused {
                board.folder(&folder.name, |f| f.state = FolderState::Offline);
            }
            continue;
        };
        if continuous {
            // Debounce a burst of events into one pass.
            let start = tokio::time::Instant::now();
            loop {
                let wait = opts.debounce.min(opts.max_delay.saturating_sub(start.elapsed()));
                if wait.is_zero() {
                    break;
                }
                match tokio::time::timeout(wait, events.recv()).await {
                    Ok(Some(_)) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
        }
        (dirty, due) = (false, false);
        if !guard_paused {
            board.folder(&folder.name, |f| f.state = FolderState::Syncing);
        }
        let progress = Arc::new(Progress::default());
        let ticker = {
            let board = board.clone();
            let progress = progress.clone();
            let name = folder.name.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    let snap = progress.snapshot();
                    board.folder(&name, |f| f.progress = Some(snap));
                }
            })
        };
        let r = eng.sync_folder(&folder, fs.clone(), &progress).await;
        ticker.abort();
        // The next scheduled pass (or rescan) is one period after this one ended.
        due_tick.reset();
        if let Err(e) = &r {
            warn!(folder = %folder.name, "sync failed: {e}");
            if e.is_transient() {
                (dirty, due) = (true, true); // retry once reconnected
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        guard_paused = match &r {
            Ok(rep) => rep.paused.as_ref().is_some_and(|p| p.by_guard),
            Err(e) => matches!(e, SyncError::FolderMissing { .. }),
        };
        report_pass(&board, &folder.name, &r);
        // Errors on single files are retried on the next rescan; events that arrived during
        // the pass make it dirty again through the channel.
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::IgnoreRules;
    use std::path::{Path, PathBuf};

    #[test]
    fn watcher_events_about_ignored_or_temporary_files_wake_nothing() {
        let root = Path::new("/data/docs");
        let rules = IgnoreRules::parse("build/\n*.log\n");
        let p = |s: &str| -> Vec<PathBuf> { vec![root.join(s)] };
        assert!(event_matters(root, &rules, &p("report.txt")));
        assert!(event_matters(root, &rules, &p(".filesyncignore")));
        assert!(!event_matters(root, &rules, &p("debug.log")));
        assert!(!event_matters(root, &rules, &p("build/out.o")), "below an ignored directory");
        assert!(!event_matters(root, &rules, &p(".report.txt.swp")), "built-in editor swap rule");
        assert!(!event_matters(root, &rules, &p("sub/.filesync-tmp-123")));
        // One relevant path among ignored ones is enough; no path at all means "look".
        assert!(event_matters(root, &rules, &[root.join("debug.log"), root.join("notes.md")]));
        assert!(event_matters(root, &rules, &[]));
        // Paths outside the folder (a rename out of it) are not ignored.
        assert!(event_matters(root, &rules, &[PathBuf::from("/elsewhere/x.log")]));
    }
}
