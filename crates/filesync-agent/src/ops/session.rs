//! One person's action, as the CLI and the web UI both run it: the home's configuration, its
//! state database and its connection to the server, each loaded or opened when first needed
//! and then shared by every step of the action ([`Session`]); and a sync this process runs
//! itself because no agent runs for the home ([`LocalSync`]: `filesync sync`, a revert or a
//! resolved conflict without an agent).
//!
//! Invariant: no caller outside `ops` builds an [`Engine`]; the engine is reached through here.

use super::OpsError;
use crate::agent::{self, HomeLock, StatusBoard};
use crate::config::{Config, FolderConfig, Home};
use crate::engine::policy::Paused;
use crate::engine::{Engine, PassReport};
use crate::fs::RealFs;
use crate::state::StateDb;
use crate::status::Progress;
use filesync_client::Connection;
use std::sync::Arc;
use tokio::sync::OnceCell;

/// The configuration, state database and server connection of one action. The database is
/// opened and the server connected only when a step asks for them, once each.
pub struct Session {
    home: Home,
    config: Config,
    db: OnceCell<StateDb>,
    conn: OnceCell<Connection>,
}

impl Session {
    /// Loads the home's configuration; opens and connects nothing yet.
    pub fn open(home: &Home) -> Result<Session, OpsError> {
        Ok(Session { home: home.clone(), config: home.load()?, db: OnceCell::new(), conn: OnceCell::new() })
    }

    pub fn home(&self) -> &Home {
        &self.home
    }

    /// The configuration as it was when the session opened.
    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn into_config(self) -> Config {
        self.config
    }

    /// The state database, opened on first use.
    pub async fn db(&self) -> Result<&StateDb, OpsError> {
        let path = self.home.state_path();
        self.db.get_or_try_init(|| async move { StateDb::open(&path).await }).await.map_err(OpsError::from)
    }

    /// The connection to the server this computer is logged in to, with its token; made on
    /// first use.
    pub async fn connection(&self) -> Result<&Connection, OpsError> {
        if self.config.server.is_none() || self.home.token()?.is_none() {
            return Err(OpsError::NotLoggedIn);
        }
        self.conn.get_or_try_init(|| agent::connect(&self.home, &self.config)).await.map_err(OpsError::from)
    }

    /// The sync engine over this session's connection and database.
    pub(crate) async fn engine(&self) -> Result<Engine, OpsError> {
        let conn = self.connection().await?.clone();
        let db = self.db().await?.clone();
        Ok(Engine::new(conn, db, self.config.device_name.clone().unwrap_or_default()))
    }
}

/// A sync this process runs itself: it holds the home's lock (so no agent runs meanwhile),
/// reports each pass on a status board as the agent would, and writes `status.json` when it
/// finishes, so `filesync status` tells what it did.
pub struct LocalSync {
    _lock: HomeLock,
    session: Session,
    board: StatusBoard,
}

impl LocalSync {
    /// Takes the home's lock. `Ok(None)` when an agent runs for the home (it syncs by itself).
    pub fn start(home: &Home) -> Result<Option<LocalSync>, OpsError> {
        let lock = match HomeLock::acquire(home) {
            Ok(l) => l,
            Err(agent::AgentError::AlreadyRunning(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let session = Session::open(home)?;
        let board = StatusBoard::new(&session.config.folders, None);
        Ok(Some(LocalSync { _lock: lock, session, board }))
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Connects (once); after that the board says this process is online.
    pub async fn connect(&self) -> Result<&Connection, OpsError> {
        let conn = self.session.connection().await?;
        self.board.update(|s| s.connection = "online".into());
        Ok(conn)
    }

    /// One sync of `folder` (a paused home syncs nothing), reported on the board.
    pub async fn sync_folder(&self, folder: &FolderConfig, progress: &Progress) -> Result<PassReport, OpsError> {
        let r = if self.session.config.paused {
            Ok(PassReport { paused: Some(Paused::by_user(true)), ..Default::default() })
        } else {
            self.connect().await?;
            let engine = self.session.engine().await?;
            engine.sync_folder(folder, Arc::new(RealFs::new(folder.path.clone())), progress).await
        };
        agent::report_pass(&self.board, &folder.name, &r);
        Ok(r?)
    }

    /// Bytes sent and received on the wire so far.
    pub fn wire_stats(&self) -> (u64, u64) {
        self.session.conn.get().map_or((0, 0), Connection::wire_stats)
    }

    /// Writes what the passes did to `status.json` and gives the home back.
    pub fn finish(self) -> Result<(), OpsError> {
        let status = serde_json::to_vec_pretty(&self.board.snapshot()).expect("the status serializes");
        crate::config::write_atomic(&self.session.home.status_path(), &status, false)?;
        Ok(())
    }
}
