//! FileSync as a background service: installs, starts, stops and reports the agent as a
//! Windows service (Service Control Manager, [`windows`]) or a systemd unit on Linux
//! ([`systemd`]), runs the agent inside the Windows service, tells systemd when the agent is
//! ready, and writes the service's rotating log file ([`logfile`]).
//!
//! This crate refuses to know anything about syncing: the service runs
//! [`filesync_agent::agent::run_with_ready`] and only translates between it and the
//! platform's service manager. It never edits a service it did not install.

use std::path::PathBuf;

pub mod cmdline;
pub mod logfile;
pub mod systemd;
#[cfg(windows)]
pub mod windows;

/// The service's name: the Windows service `FileSync`, the systemd unit `filesync.service`.
pub const SERVICE_NAME: &str = "FileSync";

/// Whom a service belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// A systemd user unit: runs while the user has a session (or always, with lingering).
    User,
    /// A service of the computer: starts at boot, before anyone logs in.
    System,
}

impl Scope {
    /// What a plain `filesync service install` means here: a user unit on Linux, the one
    /// computer-wide service on Windows (Windows has no per-user service a program can
    /// install without the user's password).
    pub fn platform_default() -> Scope {
        if cfg!(windows) { Scope::System } else { Scope::User }
    }
}

/// What `install` registers: the program to run and the home directory it serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSpec {
    pub scope: Scope,
    /// The absolute path of the `filesync` executable.
    pub exe: PathBuf,
    /// The client home directory (`--home`) the service's agent uses.
    pub home: PathBuf,
    /// The account a Linux system unit runs as (`User=`); `None` for user units and Windows.
    pub run_as: Option<String>,
}

/// What the service manager says about the service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceStatus {
    pub installed: bool,
    pub running: bool,
    /// The service manager's own report, to show as it is.
    pub report: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("the FileSync service is not installed; install it with `filesync service install`")]
    NotInstalled,
    #[error("the FileSync service is already installed ({0}); run `filesync service uninstall` first to change it")]
    AlreadyInstalled(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("cannot write {path}: {error}")]
    Write { path: PathBuf, error: std::io::Error },
    #[error("cannot remove {path}: {error}")]
    Remove { path: PathBuf, error: std::io::Error },
    #[error("cannot run `{command}`: {error}; is systemd installed?")]
    Spawn { command: String, error: std::io::Error },
    #[error("`{command}` failed: {output}{hint}")]
    Systemctl { command: String, output: String, hint: &'static str },
    #[error("{action}: {error}{hint}")]
    Platform { action: String, error: std::io::Error, hint: String },
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Failed(String),
}

/// Tells systemd that the agent is running (`READY=1`); does nothing when not started by
/// systemd with `Type=notify` (no `NOTIFY_SOCKET`) and on other platforms.
pub fn notify_ready() {
    #[cfg(unix)]
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        tracing::warn!("cannot tell systemd that the agent is ready: {e}");
    }
}

/// Tells systemd that the agent is shutting down (`STOPPING=1`); like [`notify_ready`].
pub fn notify_stopping() {
    #[cfg(unix)]
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Stopping]) {
        tracing::warn!("cannot tell systemd that the agent is stopping: {e}");
    }
}

/// The home directory of the installed computer-wide service, if there is one: on Windows the
/// command line and the web UI default to it, so the logged-in user's `filesync status` and
/// `filesync folder add` talk to the running service. Always `None` elsewhere.
pub fn installed_home() -> Option<PathBuf> {
    #[cfg(windows)]
    {
        windows::installed_home()
    }
    #[cfg(not(windows))]
    {
        None
    }
}

/// The default home of a computer-wide service on this platform, when `--home` is not given:
/// `%ProgramData%\FileSync` on Windows; `None` elsewhere (a Linux system unit serves the home
/// of the account it runs as).
pub fn default_system_home() -> Option<PathBuf> {
    if cfg!(windows) {
        let base =
            std::env::var_os("ProgramData").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(r"C:\ProgramData"));
        Some(base.join(SERVICE_NAME))
    } else {
        None
    }
}

/// Registers the service (it starts at boot or login from then on, not now).
pub fn install(spec: &ServiceSpec) -> Result<String, ServiceError> {
    #[cfg(windows)]
    {
        windows::install(spec)
    }
    #[cfg(target_os = "linux")]
    {
        systemd::install(spec)
    }
    #[cfg(not(any(windows, target_os = "linux")))]
    {
        let _ = spec;
        Err(unsupported())
    }
}

/// Stops the service if it runs and removes it.
pub fn uninstall(scope: Scope) -> Result<String, ServiceError> {
    #[cfg(windows)]
    {
        windows::uninstall(scope)
    }
    #[cfg(target_os = "linux")]
    {
        systemd::uninstall(scope)
    }
    #[cfg(not(any(windows, target_os = "linux")))]
    {
        let _ = scope;
        Err(unsupported())
    }
}

/// Starts the installed service and waits until it runs.
pub fn start(scope: Scope) -> Result<String, ServiceError> {
    #[cfg(windows)]
    {
        windows::start(scope)
    }
    #[cfg(target_os = "linux")]
    {
        systemd::start(scope)
    }
    #[cfg(not(any(windows, target_os = "linux")))]
    {
        let _ = scope;
        Err(unsupported())
    }
}

/// Stops the service and waits until it has stopped.
pub fn stop(scope: Scope) -> Result<String, ServiceError> {
    #[cfg(windows)]
    {
        windows::stop(scope)
    }
    #[cfg(target_os = "linux")]
    {
        systemd::stop(scope)
    }
    #[cfg(not(any(windows, target_os = "linux")))]
    {
        let _ = scope;
        Err(unsupported())
    }
}

/// What the service manager says about the service.
pub fn status(scope: Scope) -> Result<ServiceStatus, ServiceError> {
    #[cfg(windows)]
    {
        windows::status(scope)
    }
    #[cfg(target_os = "linux")]
    {
        systemd::status(scope)
    }
    #[cfg(not(any(windows, target_os = "linux")))]
    {
        let _ = scope;
        Err(unsupported())
    }
}

#[cfg(not(any(windows, target_os = "linux")))]
fn unsupported() -> ServiceError {
    ServiceError::Unsupported(
        "FileSync can install itself as a service on Windows and on Linux (systemd) only; \
         run `filesync agent` from your system's own service manager instead"
            .into(),
    )
}
