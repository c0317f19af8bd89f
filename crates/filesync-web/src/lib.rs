//! FileSync's local web UI: an HTTP server that the agent runs beside its sync loop, serving
//! the embedded pages (`ui/`: HTML, CSS and plain ES modules, no build step) and the JSON API
//! they use (`docs/agent-api.md`). Every action goes through `filesync_agent::ops`, the same
//! code the command line calls; live status comes from the agent's `LiveStatus`.
//!
//! This crate refuses to make sync decisions or to talk to the server on its own behalf: it
//! only translates HTTP to `ops` calls and `LiveStatus` to server-sent events. It refuses to
//! listen on a non-loopback address without a UI password, and it never sends the device
//! token or any password to a browser.

pub mod api;
mod assets;
mod events;
pub mod preview;
pub mod security;
mod summary;
pub mod view;

use axum::Router;
use filesync_agent::config::Home;
use filesync_agent::live::LiveStatus;
use security::{HostPolicy, Secret, Sessions};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Where the UI listens when neither `--ui-listen` nor `[ui] listen` says otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7780";

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("the UI address {0:?} is not ADDRESS:PORT (for example 127.0.0.1:7780)")]
    BadAddress(String),
    #[error(
        "the UI would listen on {0}, which other computers can reach, but no UI password is set: \
         run `filesync ui --set-password` first, or listen on 127.0.0.1"
    )]
    PasswordRequired(SocketAddr),
    #[error(
        "cannot listen on {addr} for the UI: {source} (another program uses the port? choose another with --ui-listen)"
    )]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot read or create the UI secret {path}: {source}")]
    Secret { path: String, source: std::io::Error },
    #[error(transparent)]
    Config(#[from] filesync_agent::config::ConfigError),
}

/// Shared by every request handler.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

pub struct Inner {
    pub home: Home,
    pub live: LiveStatus,
    pub secret: Secret,
    pub sessions: Sessions,
    pub hosts: HostPolicy,
    pub bound: SocketAddr,
    /// Transfer-rate samples per folder: (when, bytes done). A std mutex: a map update, never
    /// held across an await.
    rates: Mutex<std::collections::HashMap<String, std::collections::VecDeque<(Instant, u64)>>>,
    /// Failed UI-password attempts, to slow down guessing.
    failures: Mutex<(u32, Option<Instant>)>,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl AppState {
    /// The state for a UI bound to `bound`. Reads the home's `[ui]` settings and secret.
    pub fn new(home: Home, live: LiveStatus, bound: SocketAddr) -> Result<AppState, WebError> {
        let config = home.load()?;
        let secret = Secret::load_or_create(&home)
            .map_err(|source| WebError::Secret { path: Secret::path(&home).display().to_string(), source })?;
        let hosts = HostPolicy::new(bound, &config.ui.allowed_hosts);
        let sessions = Sessions::load(&home);
        Ok(AppState {
            inner: Arc::new(Inner {
                home,
                live,
                secret,
                sessions,
                hosts,
                bound,
                rates: Mutex::new(Default::default()),
                failures: Mutex::new((0, None)),
            }),
        })
    }

    /// The UI password hash from `config.toml`, read afresh so a change takes effect at once.
    pub fn password_hash(&self) -> Option<String> {
        self.home.load().ok().and_then(|c| c.ui.password_hash)
    }

    fn rates_lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, std::collections::VecDeque<(Instant, u64)>>> {
        self.rates.lock().expect("rates lock")
    }

    /// A password is needed to sign in when the UI is reachable from other computers.
    pub fn password_mode(&self) -> bool {
        !self.bound.ip().is_loopback()
    }
}

/// The whole application: pages, API, security layers.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(assets::routes())
        .nest("/api", api::routes().layer(axum::middleware::from_fn_with_state(state.clone(), security::require_auth)))
        .layer(axum::middleware::from_fn_with_state(state.clone(), security::guard))
        .with_state(state)
}

/// Resolves where the UI listens: `override_listen`, else `[ui] listen`, else
/// [`DEFAULT_LISTEN`]; refuses a non-loopback address without a UI password.
pub fn listen_address(home: &Home, override_listen: Option<&str>) -> Result<SocketAddr, WebError> {
    let config = home.load()?;
    let text = override_listen.map(str::to_string).or(config.ui.listen.clone()).unwrap_or(DEFAULT_LISTEN.into());
    let addr: SocketAddr = text.trim().parse().map_err(|_| WebError::BadAddress(text.clone()))?;
    if !addr.ip().is_loopback() && config.ui.password_hash.is_none() {
        return Err(WebError::PasswordRequired(addr));
    }
    Ok(addr)
}

/// The file in the home where a running agent records its UI's address.
pub fn address_file(home: &Home) -> std::path::PathBuf {
    home.dir.join("ui-address")
}

/// The URL to open the UI with: the running agent's address (or the configured one) and the
/// secret in the fragment, which the page exchanges for a cookie and then removes (a
/// fragment is never sent to a server, nor in a `Referer`).
pub fn ui_url(home: &Home) -> Result<(String, bool), WebError> {
    let recorded = std::fs::read_to_string(address_file(home)).ok().and_then(|s| s.trim().parse::<SocketAddr>().ok());
    let running = filesync_agent::agent::HomeLock::is_held(home);
    let addr = match recorded.filter(|_| running) {
        Some(a) => a,
        None => listen_address(home, None)?,
    };
    let secret = Secret::load_or_create(home)
        .map_err(|source| WebError::Secret { path: Secret::path(home).display().to_string(), source })?;
    let host = if addr.ip().is_unspecified() { format!("127.0.0.1:{}", addr.port()) } else { addr.to_string() };
    Ok((format!("http://{host}/#key={}", secret.expose()), running))
}

/// A running UI server.
pub struct UiServer {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for UiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds the UI on its address and serves it on the current tokio runtime until the returned
/// handle is dropped. Synchronous, so an agent can call it from its `ready` hook — the moment
/// it owns the home — and record the address for `filesync ui`.
pub fn start(home: &Home, live: LiveStatus, override_listen: Option<&str>) -> Result<UiServer, WebError> {
    let addr = listen_address(home, override_listen)?;
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() }
        .map_err(|source| WebError::Bind { addr, source })?;
    #[cfg(unix)]
    socket.set_reuseaddr(true).map_err(|source| WebError::Bind { addr, source })?;
    socket.bind(addr).map_err(|source| WebError::Bind { addr, source })?;
    let listener = socket.listen(128).map_err(|source| WebError::Bind { addr, source })?;
    let bound = listener.local_addr().map_err(|source| WebError::Bind { addr, source })?;
    let state = AppState::new(home.clone(), live, bound)?;
    filesync_agent::config::write_atomic(&address_file(home), bound.to_string().as_bytes(), false)?;
    let app = router(state);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!("the UI server stopped: {e}");
        }
    });
    tracing::info!("UI on http://{bound}/ (open it with `filesync ui`)");
    Ok(UiServer { addr: bound, task })
}
