//! The FileSync server: accepts TLS connections, runs the handshake and authentication,
//! answers requests against the storage traits, and pushes "folder changed" to every device
//! of a user after each commit (or restore). A maintenance task thins old versions by the
//! retention policy and deletes chunks nothing uses any more.
//!
//! This crate refuses to decide sync conflicts for clients (it only applies the commit rule of
//! `filesync-store`) and holds no per-file state in memory: everything durable is in the stores.

pub mod admin;
mod admission;
pub mod auth;
mod datadir;
mod handlers;
mod history;
pub mod hub;
pub mod maintenance;
pub mod passwords;
mod session;
pub mod tls;

use filesync_core::clock::{Clock, SystemClock};
use filesync_store::{ChunkStore, MetaStore, RetentionPolicy};
use maintenance::{Maintenance, MaintenanceSchedule};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tracing::{info, warn};

pub use admission::{Limits, MemoryGauge};
pub use tls::TlsIdentity;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot create the data directory or make it private to its owner ({path}): {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error("cannot listen on {addr}: {source} (is another server running on that port?)")]
    Bind { addr: String, source: std::io::Error },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Store(#[from] filesync_store::StoreError),
}

/// Server settings, as given on the command line.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub listen: String,
    /// Who may create an account with `Register`.
    pub registration: Registration,
    /// The storage quota of accounts created by `Register` (`None`: unlimited).
    pub default_quota: Option<u64>,
    /// How often the server looks for changes an admin command made in its store (a user
    /// disabled, a device revoked), to close the connections concerned.
    pub admin_poll: Duration,
    /// Use this certificate and key instead of the generated self-signed pair.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Connection slots (per address, unauthenticated, authenticated) and the memory requests
    /// and replies may hold, per address and in all.
    pub limits: Limits,
    /// How long old versions are kept, and how they are thinned (`--retention-days`).
    pub retention: RetentionPolicy,
    /// How long a chunk no version uses yet is kept: [`maintenance::GC_GRACE`], but in soak
    /// tests (`--gc-grace-secs`).
    pub gc_grace: Duration,
    /// Keep chunks in this S3-compatible bucket instead of `<data dir>/chunks`.
    pub s3: Option<filesync_store::s3::S3Config>,
    /// Keep metadata in this PostgreSQL database instead of `<data dir>/meta.db`.
    pub database: Option<filesync_store::pg::PgConfig>,
    /// When pruning and chunk garbage collection run.
    pub maintenance: MaintenanceSchedule,
    /// How many Argon2 hashes or verifications may run at once, server-wide.
    pub password_concurrency: usize,
    /// How many password checks may wait for a turn; beyond that they are refused as busy.
    pub password_queue: usize,
    /// The TLS handshake, `Hello` and authentication must be done within this time of the
    /// connection's accept, whatever the client does (including not reading what the server
    /// sends).
    pub handshake_timeout: Duration,
    /// An authenticated connection that completes no request (and sends under 64 KiB of a
    /// large one) for this long, or does not take the server's replies for this long, is
    /// closed.
    pub idle_timeout: Duration,
    /// The wall clock that stamps versions, devices and accounts and that retention counts
    /// against: the system's, but in a simulation.
    pub clock: Arc<dyn Clock>,
}

impl ServerConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> ServerConfig {
        ServerConfig {
            data_dir: data_dir.into(),
            listen: "127.0.0.1:7443".into(),
            registration: Registration::Open,
            default_quota: None,
            admin_poll: admin::ADMIN_POLL,
            tls_cert: None,
            tls_key: None,
            limits: Limits::default(),
            retention: RetentionPolicy::default(),
            gc_grace: Duration::from_secs(maintenance::GC_GRACE as u64),
            s3: None,
            database: None,
            maintenance: MaintenanceSchedule::default(),
            password_concurrency: passwords::default_concurrency(),
            password_queue: passwords::DEFAULT_QUEUE,
            handshake_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            clock: Arc::new(SystemClock),
        }
    }
}

/// Who may create an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Registration {
    /// Anyone who can reach the server.
    Open,
    /// Nobody: the operator creates accounts (`filesync server admin create-user`).
    Closed,
    /// Whoever has a one-time invite code from the operator (`filesync server admin invite`).
    Invite,
}

/// Everything a connection handler needs, shared by all connections.
pub(crate) struct Shared {
    pub meta: Arc<dyn MetaStore>,
    pub chunks: Arc<dyn ChunkStore>,
    pub hub: hub::Hub,
    pub throttle: auth::LoginThrottle,
    pub passwords: Arc<passwords::PasswordWork>,
    pub registration: Registration,
    pub default_quota: Option<u64>,
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
    pub clock: Arc<dyn Clock>,
    /// Set once by [`InProcessServer::crash`]: every connection and request stops where it is.
    pub halted: tokio::sync::watch::Sender<bool>,
}

impl Shared {
    /// Runs `work` unless the server is halted first: then it is dropped at whichever await it
    /// waits on, as a killed process stops.
    pub(crate) async fn unless_halted<T>(&self, work: impl std::future::Future<Output = T>) -> Option<T> {
        let mut halted = self.halted.subscribe();
        tokio::select! {
            biased;
            _ = halted.wait_for(|h| *h) => None,
            out = work => Some(out),
        }
    }
}

/// A server whose stores and TLS identity are open and whose socket is bound.
pub struct Server {
    shared: Arc<Shared>,
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    fingerprint: String,
    admission: Arc<admission::Admission>,
    maintenance: Maintenance,
    schedule: MaintenanceSchedule,
    admin_poll: Duration,
}

impl Shared {
    /// The state every connection shares, over these stores, and the maintenance of them.
    async fn open(
        config: &ServerConfig,
        meta: Arc<dyn MetaStore>,
        chunks: Arc<dyn ChunkStore>,
    ) -> Result<(Arc<Shared>, Maintenance), ServerError> {
        let maintenance = Maintenance::new(meta.clone(), chunks.clone(), config.retention)
            .with_gc_grace(config.gc_grace.as_secs() as i64);
        // A store that other instances write too tells of their commits.
        let hub = match meta.commit_notices().await? {
            Some(notices) => hub::Hub::new(Box::new(hub::SharedChanges::follow(notices))),
            None => hub::Hub::default(),
        };
        let shared = Arc::new(Shared {
            meta,
            chunks,
            hub,
            throttle: auth::LoginThrottle::default(),
            passwords: Arc::new(passwords::PasswordWork::new(config.password_concurrency, config.password_queue)),
            registration: config.registration,
            default_quota: config.default_quota,
            handshake_timeout: config.handshake_timeout,
            idle_timeout: config.idle_timeout,
            clock: config.clock.clone(),
            halted: tokio::sync::watch::Sender::new(false),
        });
        Ok((shared, maintenance))
    }
}

/// The server's protocol without a socket or TLS: whoever holds it hands it byte streams,
/// each one connection, and it serves them exactly as [`Server`] serves its TLS connections
/// (same handshake, limits, handlers, stores and push). The agent's whole-system simulation
/// runs the real server this way over simulated connections.
pub struct InProcessServer {
    shared: Arc<Shared>,
    admission: Arc<admission::Admission>,
    maintenance: Maintenance,
}

impl InProcessServer {
    pub async fn open(
        config: ServerConfig,
        meta: Arc<dyn MetaStore>,
        chunks: Arc<dyn ChunkStore>,
    ) -> Result<InProcessServer, ServerError> {
        let (shared, maintenance) = Shared::open(&config, meta, chunks).await?;
        Ok(InProcessServer { shared, admission: admission::Admission::new(config.limits), maintenance })
    }

    /// Serves one connection over `stream` until it ends (the peer closes, a limit or the
    /// idle timeout closes it, or the future is dropped).
    pub fn serve<S>(&self, stream: S) -> impl std::future::Future<Output = ()> + Send + 'static
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let shared = self.shared.clone();
        let ticket = self.admission.admit(std::net::Ipv4Addr::LOCALHOST.into());
        async move {
            let Ok(ticket) = ticket else { return };
            let deadline = tokio::time::Instant::now() + shared.handshake_timeout;
            let peer = (std::net::Ipv4Addr::LOCALHOST, 0).into();
            shared.clone().unless_halted(session::serve(shared, stream, peer, ticket, deadline)).await;
        }
    }

    /// Stops every connection and every request in flight at whichever await it waits on, as
    /// when the server's process is killed: what the stores committed stays, nothing else
    /// happens. The simulation then opens a new server over the same stores (a restart).
    pub fn crash(&self) {
        self.shared.halted.send_replace(true);
    }

    /// A device of `user` (the account is made if it does not exist, without a password: it
    /// cannot log in, only its devices' tokens work) named `device`; returns its token. A
    /// simulation's computers start logged in this way, skipping the password hashing a
    /// login costs.
    pub async fn provision_device(&self, user: &str, device: &str) -> Result<String, ServerError> {
        let now = self.shared.clock.now_unix();
        let meta = &self.shared.meta;
        let user = match meta.user_by_name(user).await? {
            Some(u) => u,
            None => meta.create_user(user, "", now).await?,
        };
        let token = auth::new_token();
        meta.create_device(user.id, device, &auth::token_hash(&token), now).await?;
        Ok(token)
    }

    /// The metadata store it serves (to look at what it holds).
    pub fn meta(&self) -> Arc<dyn MetaStore> {
        self.shared.meta.clone()
    }

    /// Pruning and garbage collection of its stores, to run when the caller chooses.
    pub fn maintenance(&self) -> Maintenance {
        self.maintenance.clone()
    }
}

/// Loads (creating on first use) the TLS identity of a data directory. Creates the directory
/// readable by its owner only, and takes that access away from anyone else on everything
/// already in it (see `datadir.rs`).
pub fn load_identity(config: &ServerConfig) -> Result<TlsIdentity, ServerError> {
    datadir::prepare(&config.data_dir).map_err(|(path, source)| ServerError::DataDir { path, source })?;
    Ok(match (&config.tls_cert, &config.tls_key) {
        (Some(c), Some(k)) => TlsIdentity::load(c, k)?,
        _ => TlsIdentity::load_or_generate(&config.data_dir)?,
    })
}

impl Server {
    /// Opens the stores `config` names: metadata in SQLite (`<data dir>/meta.db`) or the
    /// PostgreSQL database of `config.database`; chunks in `<data dir>/chunks` or the S3 bucket
    /// of `config.s3`. Any combination.
    pub async fn open(config: ServerConfig) -> Result<Server, ServerError> {
        let identity = load_identity(&config)?;
        let meta: Arc<dyn MetaStore> = match &config.database {
            Some(db) => {
                let store = db.connect().await?;
                info!("metadata is kept in PostgreSQL at {}", db.display_url());
                Arc::new(store)
            }
            None => Arc::new(filesync_store::open_sqlite(&config.data_dir).await?),
        };
        let chunks: Arc<dyn ChunkStore> = match &config.s3 {
            Some(s3) => {
                let store = filesync_store::s3::S3Chunks::open(s3).await?;
                info!("chunks are kept in s3://{}/{}", s3.bucket, s3.prefix);
                Arc::new(store)
            }
            None => Arc::new(filesync_store::open_local_chunks(&config.data_dir)?),
        };
        Server::with_stores(config, identity, meta, chunks).await
    }

    pub async fn with_stores(
        config: ServerConfig,
        identity: TlsIdentity,
        meta: Arc<dyn MetaStore>,
        chunks: Arc<dyn ChunkStore>,
    ) -> Result<Server, ServerError> {
        let listener = TcpListener::bind(&config.listen)
            .await
            .map_err(|source| ServerError::Bind { addr: config.listen.clone(), source })?;
        admission::raise_open_file_limit(&config.limits);
        let acceptor = tokio_rustls::TlsAcceptor::from(identity.server_config()?);
        let (shared, maintenance) = Shared::open(&config, meta, chunks).await?;
        Ok(Server {
            shared,
            listener,
            acceptor,
            fingerprint: identity.fingerprint(),
            admission: admission::Admission::new(config.limits),
            maintenance,
            schedule: config.maintenance,
            admin_poll: config.admin_poll,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener has an address")
    }

    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The server's password hashing gate and its counters.
    pub fn password_work(&self) -> Arc<passwords::PasswordWork> {
        self.shared.passwords.clone()
    }

    /// How much memory requests and replies hold, server-wide.
    pub fn memory(&self) -> MemoryGauge {
        self.admission.gauge()
    }

    /// This server's pruning and garbage collection, to run on demand (`run` also runs it on
    /// its schedule). It meets uploads at the store's chunk lock, so it is safe beside them.
    pub fn maintenance(&self) -> Maintenance {
        self.maintenance.clone()
    }

    /// Accepts connections until `shutdown` completes, then stops accepting and returns;
    /// connections in progress are dropped (every commit is a transaction, so nothing is left
    /// half-done).
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        info!(
            "old versions are kept for {}; maintenance runs every {:?}",
            self.maintenance.policy(),
            self.schedule.every
        );
        let housekeeping =
            tokio::spawn(self.maintenance.clone().run_forever(self.schedule.clone(), self.shared.clock.clone()));
        // Stops the maintenance task however `run` ends.
        let _housekeeping = AbortOnDrop(housekeeping);
        let _admin_watch = AbortOnDrop(tokio::spawn(admin::watch_admin_changes(self.shared.clone(), self.admin_poll)));
        let admission = self.admission;
        // Connections refused since the last log line, so that a flood logs once a minute.
        let mut refused = RefusedLog::default();
        tokio::pin!(shutdown);
        loop {
            let (tcp, peer) = tokio::select! {
                _ = &mut shutdown => break,
                r = self.listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            // Over a limit: closed at once, before any TLS work, so that a flood costs a
            // socket for a moment and takes nothing from anyone else.
            let ticket = match admission.admit(peer.ip()) {
                Ok(t) => t,
                Err(why) => {
                    refused.note(peer, why);
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = self.acceptor.clone();
            let shared = self.shared.clone();
            tokio::spawn(async move {
                // One deadline, from accept to authentication, TLS handshake included.
                let deadline = tokio::time::Instant::now() + shared.handshake_timeout;
                let tls = match tokio::time::timeout_at(deadline, acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        info!(%peer, "TLS handshake failed: {e}");
                        return;
                    }
                    Err(_) => {
                        info!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
                session::serve(shared, tls, peer, ticket, deadline).await;
            });
        }
        info!("server stopped accepting connections");
    }
}

/// Logs refused connections, at most once a minute with the count since the last line.
#[derive(Default)]
struct RefusedLog {
    since: Option<std::time::Instant>,
    count: u64,
}

impl RefusedLog {
    fn note(&mut self, peer: SocketAddr, why: admission::Refused) {
        self.count += 1;
        let now = tokio::time::Instant::now().into_std();
        if self.since.is_some_and(|t| now.duration_since(t) < Duration::from_secs(60)) {
            return;
        }
        let reason = match why {
            admission::Refused::Address => "its address holds as many connections as one address may",
            admission::Refused::Unauthenticated => "as many connections as allowed are still authenticating",
            admission::Refused::Full => "the server is full",
        };
        warn!(%peer, refused = self.count, "refusing connections: {reason} (see --max-connections-per-address, --max-unauthenticated)");
        self.since = Some(now);
        self.count = 0;
    }
}

/// Aborts a background task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
