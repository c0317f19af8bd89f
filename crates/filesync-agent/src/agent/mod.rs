//! The long-running agent, a supervisor: one task per folder (`folder.rs`) driven by a closed
//! [`Event`] enum, each folder's watcher (`watch.rs`), a connection manager that reconnects
//! with backoff and routes the server's pushes, and the status board (`board.rs`). A change
//! of configuration reaches only what it concerns: a folder's settings go to its task, a
//! folder added or removed starts or stops one task, and only a new login or server replaces
//! the connection. A folder task that panics is restarted, and the panic shows in its status.
//!
//! Invariant: at most one pass per folder runs at a time; a burst of events yields one pass.

mod board;
pub mod control;
mod folder;
mod watch;

pub use board::{StatusBoard, report_pass};
pub(crate) use board::{unix_now, unix_now_ms};
pub use watch::{LocalChanges, Relevant, relevant_paths};

use crate::config::{Config, FolderConfig, Home};
use crate::engine::server::Announced;
use crate::engine::{Engine, SyncError};
use crate::state::StateDb;
use crate::status::FolderState;
use filesync_client::{Connection, ErrorCode, Push, Trust};
use folder::{Deps, FolderTask};
use futures::FutureExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch as wch};
use tracing::{error, info, warn};

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
            debounce: DEBOUNCE,
            max_delay: Duration::from_millis(300),
            rescan: Duration::from_secs(3600),
            live: crate::live::LiveStatus::default(),
        }
    }
}

/// The quiet time after a local change before its pass. An editor's save (write a temporary
/// file, rename it over, touch the directory) takes well under a millisecond here, so a
/// short wait costs latency without saving a pass; see `bench/change_bench.py`.
pub const DEBOUNCE: Duration = Duration::from_millis(20);

/// What a folder task acts on. Closed: everything that can make a folder sync is here.
#[derive(Debug, Clone)]
pub enum Event {
    /// The watcher saw changes; their paths wait in the folder's [`LocalChanges`].
    Local,
    /// The watcher lost track (overflow, failure) or the ignore rules changed: walk everything.
    Rescan,
    /// The server announced that folder `folder_id` reached revision `seq` (`folder_id` 0:
    /// pushes were lost, any folder may have changed).
    Remote { folder_id: u64, seq: u64 },
    /// A connection to the server came up: pull whatever happened meanwhile.
    Connected,
    /// A person asked for a sync now (in this process's UI): look at everything.
    Request,
    /// The folder's settings changed, or every folder was paused or resumed.
    Settings { folder: Box<FolderConfig>, all_paused: bool },
    /// Another computer began uploading a file and its first chunks are on the server: fetch
    /// them ahead of its commit (`engine::prefetch`), and the rest as they are announced.
    Announced(Arc<Upload>),
}

/// The first announcement of an upload, and the channel its later announcements come by: they
/// go straight from the connection manager to the prefetch, in order, never behind (nor
/// dropped from) the queue of a folder task busy with a pass. The folder task that fetches the
/// file takes `more`; once nobody holds its receiver, the upload's route closes.
#[derive(Debug)]
pub struct Upload {
    pub first: Announced,
    pub more: Mutex<Option<Announcements>>,
}

/// An upload's route: a sender (which tells whether the fetch still listens) and the receiver.
pub type Announcements = (mpsc::UnboundedSender<Announced>, mpsc::UnboundedReceiver<Announced>);

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
        // `is_held` takes the lock for an instant to test it: a few tries tell such a probe
        // (a `filesync status` running just then) from an agent that holds it for good.
        for attempt in 0.. {
            match file.try_lock() {
                Ok(()) => return Ok(HomeLock { _file: file }),
                Err(std::fs::TryLockError::WouldBlock) if attempt < 20 => {
                    std::thread::sleep(std::time::Duration::from_millis(25));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(AgentError::AlreadyRunning(home.dir.display().to_string()));
                }
                Err(std::fs::TryLockError::Error(source)) => {
                    return Err(AgentError::Lock { path: path.display().to_string(), source });
                }
            }
        }
        unreachable!("the loop returns")
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

/// Runs the agent until `shutdown` completes. Changes to the configuration (a folder added
/// or removed, a setting, a new login) take effect without a restart.
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
    ready();
    let board = StatusBoard::new(&[], Some(std::process::id())).with_live(opts.live.clone());
    let status_writer = tokio::spawn(board.clone().writer(home.clone()));
    let mut sup = Supervisor::new(home.clone(), opts.clone(), db, board.clone());
    let nudges = tokio::spawn(forward_nudges(opts.live.subscribe_nudges(), sup.routes.clone()));
    let control = match control::ControlServer::bind(&home).await {
        Ok(server) => Some(tokio::spawn(server.serve(control_handler(sup.routes.clone(), opts.live.clone())))),
        Err(e) => {
            warn!("commands cannot reach this agent at once (they still take effect within seconds): {e}");
            None
        }
    };
    tokio::pin!(shutdown);
    let mut config = home.load()?;
    let mut token = home.token()?;
    loop {
        sup.apply(&config, token.clone());
        tokio::select! {
            _ = shutdown.as_mut() => break,
            _ = config_changed(&home, &config, token.clone(), &opts.live) => {
                config = home.load()?;
                token = home.token()?;
            }
        }
    }
    info!("shutting down");
    nudges.abort();
    if let Some(control) = control {
        control.abort();
        let _ = control.await;
    }
    sup.stop_all();
    board.update(|s| {
        s.pid = None;
        s.connection = "offline".into();
        for f in &mut s.folders {
            f.state = FolderState::Offline;
            f.progress = None;
            f.in_sync = false;
            f.waiting = vec!["the agent is not running".into()];
        }
    });
    // One last status write.
    let json = serde_json::to_vec_pretty(&board.snapshot()).expect("status serializes");
    for _ in 0..20 {
        if crate::config::write_atomic(&home.status_path(), &json, false).is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    status_writer.abort();
    Ok(())
}

/// Completes when the configuration or the token on disk differs from what the agent runs
/// with. A command or the UI says when it changed them ([`control::ControlRequest::Reload`],
/// [`crate::live::LiveStatus::reload`]); for hand edits the files are also read again when
/// their size or mtime moved: an idle agent costs two `stat`s every two seconds.
async fn config_changed(home: &Home, config: &Config, token: Option<String>, live: &crate::live::LiveStatus) {
    let stamp = || {
        [home.config_path(), home.token_path()].map(|p| std::fs::metadata(p).ok().map(|m| (m.len(), m.modified().ok())))
    };
    let mut seen = stamp();
    loop {
        let told = tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => false,
            _ = live.reload_requested() => true,
        };
        let now = stamp();
        if now == seen && !told {
            continue;
        }
        seen = now;
        if let (Ok(c), Ok(t)) = (home.load(), home.token())
            && (c != *config || t != token)
        {
            return;
        }
    }
}

/// What the control endpoint does with a command's request: a sync goes to the folder it
/// names, a reload to the configuration check.
fn control_handler(
    routes: Routes,
    live: crate::live::LiveStatus,
) -> impl Fn(control::ControlRequest) -> Result<(), String> + Clone + Send + 'static {
    move |request| match request {
        control::ControlRequest::Sync { folder } => {
            let tx = routes.folders().get(&folder).cloned();
            let Some(tx) = tx else { return Err(format!("this agent does not sync a folder named {folder}")) };
            tokio::spawn(async move { tx.send(Event::Request).await });
            Ok(())
        }
        control::ControlRequest::Reload => {
            live.reload();
            Ok(())
        }
    }
}

/// Passes the UI's requests to the folder they name.
async fn forward_nudges(mut nudges: tokio::sync::broadcast::Receiver<String>, routes: Routes) {
    loop {
        match nudges.recv().await {
            Ok(folder) => {
                let tx = routes.folders().get(&folder).cloned();
                if let Some(tx) = tx {
                    let _ = tx.send(Event::Request).await;
                }
            }
            // Missed some: the folder tasks also find requests in the state database.
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Who the connection is for: a change of any of these replaces it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Login {
    server: Option<String>,
    fingerprint: Option<String>,
    token: Option<String>,
    device_name: String,
}

/// The routes from the connection manager to the folder tasks and to the uploads being
/// fetched ahead.
type Routes = Arc<RouteTable>;

/// Std mutexes: a lookup or an insert, never held across an await.
#[derive(Default)]
pub(super) struct RouteTable {
    folders: Mutex<HashMap<String, mpsc::Sender<Event>>>,
    uploads: Mutex<Vec<Route>>,
}

/// An upload announced, and where its later announcements go.
struct Route {
    folder_id: u64,
    path: filesync_core::RelPath,
    upload: u64,
    tx: mpsc::UnboundedSender<Announced>,
}

impl RouteTable {
    fn folders(&self) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::Sender<Event>>> {
        self.folders.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn uploads(&self) -> std::sync::MutexGuard<'_, Vec<Route>> {
        let mut u = self.uploads.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // An upload nobody fetches any more (or never did) needs no route.
        u.retain(|r| !r.tx.is_closed());
        u
    }

    /// The start of an upload: its later announcements go by the returned channel. The route
    /// of an older upload of the path closes, which stops its prefetch.
    fn start_upload(&self, a: Announced) -> Upload {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut uploads = self.uploads();
        uploads.retain(|r| !(r.folder_id == a.folder_id && r.path == a.path));
        uploads.push(Route { folder_id: a.folder_id, path: a.path.clone(), upload: a.upload, tx: tx.clone() });
        Upload { first: a, more: Mutex::new(Some((tx, rx))) }
    }

    /// Hands a later announcement to its upload's route, if one is open.
    fn announce(&self, a: Announced) {
        let uploads = self.uploads();
        let route = uploads.iter().find(|r| r.folder_id == a.folder_id && r.path == a.path && r.upload == a.upload);
        if let Some(r) = route {
            let _ = r.tx.send(a);
        }
    }

    /// Closes the routes of `folder_id`'s uploads: their prefetches stop (the folder's
    /// settings changed).
    pub(super) fn end_uploads(&self, folder_id: u64) {
        self.uploads().retain(|r| r.folder_id != folder_id);
    }
}

/// Gives `ev` to every folder task. A busy task's queue may be full of the watcher's wake-ups
/// (its own downloads make thousands); a push or a reconnect must still reach it — one lost
/// leaves the folder behind the server until its next walk of everything — so it then waits
/// its turn on a task of its own. The start of an upload may go (fetching ahead only saves
/// time); its later announcements take their own route (`RouteTable::announce`).
fn broadcast(routes: &Routes, ev: Event) {
    for tx in routes.folders().values() {
        if let Err(mpsc::error::TrySendError::Full(ev)) = tx.try_send(ev.clone())
            && !matches!(ev, Event::Announced(_))
        {
            let tx = tx.clone();
            tokio::spawn(async move {
                let _ = tx.send(ev).await;
            });
        }
    }
}

struct RunningFolder {
    config: FolderConfig,
    all_paused: bool,
    tx: mpsc::Sender<Event>,
    task: tokio::task::JoinHandle<()>,
}

/// Owns the folder tasks and the connection manager; [`Supervisor::apply`] moves them to a
/// new configuration touching only what changed.
struct Supervisor {
    home: Home,
    opts: AgentOptions,
    db: StateDb,
    board: StatusBoard,
    /// The engine of the live connection, for every folder task. Always written with
    /// `send_replace`: it must hold the value even while no folder task listens.
    engine_tx: wch::Sender<Option<Engine>>,
    routes: Routes,
    login: Option<Login>,
    manager: Option<tokio::task::JoinHandle<()>>,
    folders: HashMap<String, RunningFolder>,
}

impl Supervisor {
    fn new(home: Home, opts: AgentOptions, db: StateDb, board: StatusBoard) -> Supervisor {
        Supervisor {
            home,
            opts,
            db,
            board,
            engine_tx: wch::Sender::new(None),
            routes: Arc::default(),
            login: None,
            manager: None,
            folders: HashMap::new(),
        }
    }

    fn apply(&mut self, config: &Config, token: Option<String>) {
        let login = Login {
            server: config.server.clone(),
            fingerprint: config.fingerprint.clone(),
            token,
            device_name: config.device_name.clone().unwrap_or_else(|| "this computer".into()),
        };
        let logged_in = login.server.is_some() && login.token.is_some();
        if self.login.as_ref() != Some(&login) {
            if let Some(m) = self.manager.take() {
                m.abort();
            }
            self.engine_tx.send_replace(None);
            self.board.set_connection(None);
            if logged_in {
                self.manager = Some(tokio::spawn(manage_connection(
                    self.home.clone(),
                    self.db.clone(),
                    login.device_name.clone(),
                    self.board.clone(),
                    self.engine_tx.clone(),
                    self.routes.clone(),
                )));
            }
            self.login = Some(login);
        }
        if !logged_in {
            // Not an error: the first run happens in the local UI. Wait for a login.
            info!("this computer is not logged in; waiting for a login (`filesync ui` or `filesync login`)");
            self.stop_folders(|_| true);
            self.opts.live.publish_logged_out();
            return;
        }
        let wanted = &config.folders;
        self.stop_folders(|r| !wanted.iter().any(|f| f.name == r.config.name && f.path == r.config.path));
        self.board.set_folders(wanted, FolderState::Syncing);
        let all_paused = config.paused;
        for f in wanted {
            match self.folders.get_mut(&f.name) {
                Some(r) if r.config == *f && r.all_paused == all_paused => {}
                Some(r) => {
                    (r.config, r.all_paused) = (f.clone(), all_paused);
                    // Settings are rare and the channel is short: wait for room rather than drop them.
                    let (tx, folder) = (r.tx.clone(), Box::new(f.clone()));
                    tokio::spawn(async move { tx.send(Event::Settings { folder, all_paused }).await });
                }
                None => self.start_folder(f.clone(), all_paused),
            }
        }
    }

    fn start_folder(&mut self, config: FolderConfig, all_paused: bool) {
        let (tx, rx) = mpsc::channel::<Event>(64);
        let deps = Deps {
            engine: self.engine_tx.subscribe(),
            board: self.board.clone(),
            opts: self.opts.clone(),
            db: self.db.clone(),
            tx: tx.clone(),
            routes: self.routes.clone(),
        };
        self.board.folder(&config.name, |f| {
            f.waiting = vec!["starting".into()];
            f.in_sync = false;
        });
        let task = tokio::spawn(supervise(config.clone(), all_paused, deps, rx));
        self.routes.folders().insert(config.name.clone(), tx.clone());
        self.folders.insert(config.name.clone(), RunningFolder { config, all_paused, tx, task });
    }

    fn stop_folders(&mut self, which: impl Fn(&RunningFolder) -> bool) {
        let names: Vec<String> = self.folders.values().filter(|r| which(r)).map(|r| r.config.name.clone()).collect();
        for name in names {
            if let Some(r) = self.folders.remove(&name) {
                r.task.abort();
                self.routes.folders().remove(&name);
            }
        }
    }

    fn stop_all(&mut self) {
        self.stop_folders(|_| true);
        if let Some(m) = self.manager.take() {
            m.abort();
        }
        self.board.set_connection(None);
    }
}

/// Runs a folder's task, and starts it again (with its latest settings, walking the whole
/// folder) if it panics; the panic is logged and shown in the folder's status.
async fn supervise(config: FolderConfig, all_paused: bool, deps: Deps, rx: mpsc::Receiver<Event>) {
    let board = deps.board.clone();
    let name = config.name.clone();
    let state = (config, all_paused, deps, rx);
    restart_on_panic(&board, &name, state, |(config, all_paused, deps, rx)| {
        Box::pin(async move {
            let mut task = FolderTask::new(config.clone(), *all_paused, deps.clone());
            let outcome = std::panic::AssertUnwindSafe(task.run(rx)).catch_unwind().await;
            (*config, *all_paused) = (task.folder.clone(), task.all_paused);
            outcome
        })
    })
    .await;
}

/// Runs `run` on `state` until it returns; each panic is logged, shown as the folder's error,
/// and followed by a new run after a backoff (1 s, doubling up to a minute).
async fn restart_on_panic<S>(
    board: &StatusBoard,
    name: &str,
    mut state: S,
    run: impl for<'a> Fn(&'a mut S) -> futures::future::BoxFuture<'a, std::thread::Result<()>>,
) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let Err(panic) = run(&mut state).await else { return };
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        error!(folder = %name, "the sync task of this folder failed ({what}); restarting it");
        board.folder(name, |f| {
            f.state = FolderState::Error;
            f.last_error = Some(format!(
                "FileSync hit an internal error while syncing this folder ({what}) and restarted its sync; \
                 if this repeats, please report it with the agent's log"
            ));
        });
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(60));
    }
}

/// Keeps a connection to the server: connects, publishes the engine to the folder tasks,
/// routes pushes to them, and reconnects with backoff when the connection drops.
async fn manage_connection(
    home: Home,
    db: StateDb,
    device_name: String,
    board: StatusBoard,
    engine_tx: wch::Sender<Option<Engine>>,
    routes: Routes,
) {
    let broadcast = |ev: Event| broadcast(&routes, ev);
    let live = board.live().cloned();
    // Downloads cut short by a lost connection, for the next connection's engine to resume.
    let partials = Arc::new(crate::engine::Partials::default());
    let mut backoff = Duration::from_secs(1);
    // Since when the server could not be reached (kept across failed attempts).
    let mut offline_since: Option<i64> = None;
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
                board.set_connection(Some(conn.clone()));
                offline_since = None;
                board.update(|s| {
                    s.connection = "online".into();
                    s.token_refused = false;
                    s.message = None;
                    s.offline_since_ms = None;
                    s.next_retry_at_ms = None;
                });
                let mut pushes = conn.take_pushes().expect("fresh connection");
                // The agent comes back to a file still being written (`scan::SETTLE_NS`).
                let engine = Engine { settle: true, ..Engine::new(conn.clone(), db.clone(), device_name.clone()) }
                    .with_partials(partials.clone());
                engine_tx.send_replace(Some(engine));
                broadcast(Event::Connected);
                while let Some(p) = pushes.recv().await {
                    match p {
                        // Each task knows its folder's id and drops the others.
                        Push::FolderChanged { folder_id, seq } => broadcast(Event::Remote { folder_id, seq }),
                        Push::Announced(a) if a.first == 0 => {
                            broadcast(Event::Announced(Arc::new(routes.start_upload(a))))
                        }
                        Push::Announced(a) => routes.announce(a),
                        Push::Closed(reason) => {
                            warn!("disconnected: {reason}");
                            // The person reads what happened and what to do, not the library's text.
                            let plain = filesync_client::ClientError::Disconnected(reason).to_string();
                            offline_since = Some(unix_now_ms());
                            board.update(|s| {
                                s.connection = "offline".into();
                                s.message = Some(plain);
                                s.offline_since_ms = offline_since;
                            });
                            break;
                        }
                    }
                }
                engine_tx.send_replace(None);
                board.set_connection(None);
            }
            Err(e) => {
                let auth = matches!(&e, SyncError::Client(c) if c.is_auth_failure());
                let token_refused = matches!(&e, SyncError::Client(c) if c.code() == Some(ErrorCode::InvalidToken));
                warn!(detail = e.detail().unwrap_or_default(), "cannot connect: {e}");
                let since = *offline_since.get_or_insert_with(unix_now_ms);
                board.update(|s| {
                    s.connection = if auth { "error".into() } else { "offline".into() };
                    s.token_refused = token_refused;
                    s.message = Some(e.to_string());
                    s.offline_since_ms = Some(since);
                    for f in &mut s.folders {
                        f.state = if auth { FolderState::Error } else { FolderState::Offline };
                    }
                });
                if auth {
                    backoff = Duration::from_secs(60);
                }
            }
        }
        board.update(|s| s.next_retry_at_ms = Some(unix_now_ms() + backoff.as_millis() as i64));
        // A person's "Retry now" (in the local UI) ends the wait at once.
        let retry = async {
            match &live {
                Some(live) => live.retry_requested().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = retry => info!("trying the server again now, as asked"),
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the transfer benchmark (S1): B's queue was full of the watcher's wake-ups from
    /// its own downloads when the push of A's last commit came, the push was dropped, and B
    /// stopped 1,808 files short of the server until its next walk.
    #[tokio::test]
    async fn a_push_reaches_a_folder_task_whose_queue_is_full() {
        let routes = Routes::default();
        let (tx, mut rx) = mpsc::channel(2);
        routes.folders().insert("docs".to_string(), tx);
        broadcast(&routes, Event::Local);
        broadcast(&routes, Event::Local);
        broadcast(&routes, Event::Remote { folder_id: 1, seq: 10_100 });
        broadcast(&routes, Event::Connected);
        let mut got = Vec::new();
        while got.len() < 4 {
            got.push(tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap());
        }
        assert!(got.iter().any(|e| matches!(e, Event::Remote { seq: 10_100, .. })), "{got:?}");
        assert!(got.iter().any(|e| matches!(e, Event::Connected)), "{got:?}");
    }

    /// Found in the walkthrough: a big file's last announcements were dropped because the
    /// receiving folder task's queue was full (it was busy with a pass), so its prefetch
    /// stopped short. Only an upload's start goes through the queue now; the rest take the
    /// upload's own route, in order, whatever the queue holds.
    #[tokio::test]
    async fn an_uploads_later_announcements_reach_its_fetch_in_order_past_a_full_queue() {
        let routes = Routes::default();
        let (tx, mut rx) = mpsc::channel(1);
        routes.folders().insert("docs".to_string(), tx);
        let chunk = filesync_core::ChunkRef { hash: filesync_core::Hash::of(b"x"), len: 1 };
        let ann = |upload: u64, first: u32| Announced {
            folder_id: 1,
            path: filesync_core::RelPath::new("big.bin").unwrap(),
            upload,
            size: 10,
            first,
            chunks: vec![chunk],
            total: 10,
            device_id: 2,
        };
        broadcast(&routes, Event::Announced(Arc::new(routes.start_upload(ann(7, 0)))));
        broadcast(&routes, Event::Local);
        broadcast(&routes, Event::Local);
        let Some(Event::Announced(upload)) = rx.recv().await else { panic!("the upload's start comes first") };
        let (folders_sender, mut more) = upload.more.lock().unwrap().take().unwrap();
        for first in 1..10 {
            routes.announce(ann(7, first));
        }
        for first in 1..10 {
            assert_eq!(more.recv().await.unwrap().first, first);
        }
        // A newer upload of the path closes the older one's route: its fetch stops.
        let _newer = routes.start_upload(ann(8, 0));
        routes.announce(ann(7, 5));
        drop(folders_sender);
        assert!(more.recv().await.is_none(), "nothing more for the older upload");
    }

    #[tokio::test]
    async fn a_request_made_in_the_ui_reaches_its_folder_task_at_once() {
        let live = crate::live::LiveStatus::default();
        let routes = Routes::default();
        let (tx, mut rx) = mpsc::channel(4);
        routes.folders().insert("docs".to_string(), tx);
        let forward = tokio::spawn(forward_nudges(live.subscribe_nudges(), routes.clone()));
        live.nudge("other");
        live.nudge("docs");
        let ev = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap();
        assert!(matches!(ev, Some(Event::Request)), "{ev:?}");
        assert!(rx.try_recv().is_err(), "only the folder named");
        forward.abort();
    }

    /// The status says since when the server is unreachable and when the next try is; a
    /// person's "Retry now" ends the wait at once.
    #[tokio::test]
    async fn retry_now_ends_the_wait_for_the_server_and_the_status_says_since_when() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        home.ensure().unwrap();
        // Nothing listens on port 1: every attempt fails at once.
        let config = Config {
            server: Some("127.0.0.1:1".into()),
            fingerprint: Some(format!("SHA256:{}", "00".repeat(32))),
            ..Config::default()
        };
        home.save(&config).unwrap();
        home.set_token("token").unwrap();
        let db = StateDb::open(&home.state_path()).await.unwrap();
        let live = crate::live::LiveStatus::default();
        let board = StatusBoard::new(&[], None).with_live(live.clone());
        let manager = tokio::spawn(manage_connection(
            home,
            db,
            "laptop".into(),
            board.clone(),
            wch::Sender::new(None),
            Routes::default(),
        ));
        // The backoff doubles (1 s, 2 s, 4 s): wait for a wait of more than 2.5 s.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let (since, next) = loop {
            let s = board.snapshot();
            if let (Some(since), Some(next)) = (s.offline_since_ms, s.next_retry_at_ms)
                && next - unix_now_ms() > 2500
            {
                assert_eq!(s.connection, "offline");
                break (since, next);
            }
            assert!(tokio::time::Instant::now() < deadline, "no long wait: {s:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        // Well before that wait ends, "Retry now" makes the agent try again.
        let asked = tokio::time::Instant::now();
        loop {
            live.retry_connection();
            let s = board.snapshot();
            if s.next_retry_at_ms != Some(next) {
                assert_eq!(s.offline_since_ms, Some(since), "still offline since the first failure");
                break;
            }
            assert!(asked.elapsed() < Duration::from_millis(2000), "retry now was not heard: {s:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        manager.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_folder_task_that_panics_is_restarted_and_the_panic_shows_in_status() {
        let folder = FolderConfig::new("docs", "/docs");
        let board = StatusBoard::new(std::slice::from_ref(&folder), None);
        let runs = std::sync::atomic::AtomicU32::new(0);
        restart_on_panic(&board, "docs", 0u32, |n| {
            *n += 1;
            let attempt = *n;
            runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Box::pin(async move {
                std::panic::AssertUnwindSafe(async move {
                    if attempt < 3 {
                        panic!("attempt {attempt} failed");
                    }
                })
                .catch_unwind()
                .await
            })
        })
        .await;
        assert_eq!(runs.load(std::sync::atomic::Ordering::Relaxed), 3, "restarted after each panic");
        let f = board.snapshot().folders.into_iter().next().unwrap();
        assert_eq!(f.state, FolderState::Error);
        assert!(f.last_error.unwrap().contains("attempt 2 failed"));
    }
}
