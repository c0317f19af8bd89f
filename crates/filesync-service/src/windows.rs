//! The agent as a Windows service: registration with the Service Control Manager (name
//! `FileSync`, automatic start, restart on failure), start/stop/status through it, and the
//! service process itself ([`run_dispatcher`]), which runs the agent and reports
//! StartPending → Running → StopPending → Stopped.
//!
//! The service runs as LocalSystem, with its home (configuration, token, state, logs) in
//! `%ProgramData%\FileSync` unless `--home` says otherwise; the home is passed on the
//! service's command line. Install restricts the home to SYSTEM, Administrators and the
//! installing user, so that user's `filesync` commands work on it and nobody else can read
//! the device token.

use crate::{SERVICE_NAME, Scope, ServiceError, ServiceSpec, ServiceStatus};
use filesync_agent::agent::{self, AgentOptions};
use filesync_agent::config::Home;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use windows_service::service::{
    ServiceAccess, ServiceAction, ServiceActionType, ServiceControl, ServiceControlAccept, ServiceErrorControl,
    ServiceExitCode, ServiceFailureActions, ServiceFailureResetPeriod, ServiceInfo, ServiceStartType, ServiceState,
    ServiceStatus as ScmStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult, ServiceStatusHandle};
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};
use windows_service::{define_windows_service, service_dispatcher};

const DESCRIPTION: &str = "Keeps this computer's folders in sync with a FileSync server. \
                           Configuration, state and logs: the --home directory on its command line.";

/// How long start, stop and uninstall wait for the service to reach the state they asked for.
const STATE_TIMEOUT: Duration = Duration::from_secs(30);

/// What the agent gets to finish in-flight work after a Stop before the process exits anyway.
const STOP_GRACE: Duration = Duration::from_secs(5);

const ERROR_ACCESS_DENIED: i32 = 5;
const ERROR_CALL_NOT_IMPLEMENTED: i32 = 120;
const ERROR_INVALID_LEVEL: i32 = 124;
const ERROR_FAILED_SERVICE_CONTROLLER_CONNECT: i32 = 1063;
const ERROR_SERVICE_DOES_NOT_EXIST: i32 = 1060;
const ERROR_SERVICE_EXISTS: i32 = 1073;
const ERROR_SERVICE_NEVER_STARTED: u32 = 1077;
const ERROR_SERVICE_MARKED_FOR_DELETE: i32 = 1072;

fn require_system(scope: Scope) -> Result<(), ServiceError> {
    match scope {
        Scope::System => Ok(()),
        Scope::User => Err(ServiceError::Unsupported(
            "on Windows FileSync installs one service for the computer (`--system`, the default there): it \
             runs as LocalSystem and keeps its state in %ProgramData%\\FileSync, which you can use and \
             change. Windows cannot install a service for one user without storing that user's password; \
             to run the agent only while you are logged in, start `filesync agent` from the Task Scheduler \
             at logon instead (see docs/windows.md)"
                .into(),
        )),
    }
}

/// Turns a Service Control Manager error into one that says what to do.
fn scm_error(action: &str, e: windows_service::Error) -> ServiceError {
    let source = match e {
        windows_service::Error::Winapi(io) => io,
        other => std::io::Error::other(other.to_string()),
    };
    let hint = match source.raw_os_error() {
        Some(ERROR_SERVICE_DOES_NOT_EXIST) => return ServiceError::NotInstalled,
        Some(ERROR_SERVICE_EXISTS) => return ServiceError::AlreadyInstalled(format!("service {SERVICE_NAME}")),
        Some(ERROR_ACCESS_DENIED) => {
            "\n(managing services needs administrator rights: run this from a terminal opened with \
             \"Run as administrator\")"
        }
        Some(ERROR_SERVICE_MARKED_FOR_DELETE) => {
            "\n(Windows is still removing the old service: close the Services window and any other program \
             that has it open, then try again)"
        }
        _ => "",
    };
    ServiceError::Platform { action: action.to_string(), error: source, hint: hint.to_string() }
}

fn manager(access: ServiceManagerAccess) -> Result<ServiceManager, ServiceError> {
    ServiceManager::local_computer(None::<&str>, access)
        .map_err(|e| scm_error("cannot open the Service Control Manager", e))
}

fn open(access: ServiceAccess) -> Result<windows_service::service::Service, ServiceError> {
    manager(ServiceManagerAccess::CONNECT)?
        .open_service(SERVICE_NAME, access)
        .map_err(|e| scm_error("cannot open the FileSync service", e))
}

/// Registers the service: LocalSystem, automatic start, restart on failure.
pub fn install(spec: &ServiceSpec) -> Result<String, ServiceError> {
    require_system(spec.scope)?;
    std::fs::create_dir_all(&spec.home).map_err(|error| ServiceError::Write { path: spec.home.clone(), error })?;
    secure_home(&spec.home)?;
    let manager = manager(ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE)?;
    let info = ServiceInfo {
        name: SERVICE_NAME.into(),
        display_name: SERVICE_NAME.into(),
        service_type: ServiceType::OWN_PROCESS,
        start_type: ServiceStartType::AutoStart,
        error_control: ServiceErrorControl::Normal,
        executable_path: spec.exe.clone(),
        launch_arguments: vec![
            OsString::from("--home"),
            spec.home.clone().into_os_string(),
            OsString::from("service"),
            OsString::from("run"),
        ],
        dependencies: vec![],
        account_name: None, // LocalSystem
        account_password: None,
    };
    let service = manager
        .create_service(&info, ServiceAccess::CHANGE_CONFIG | ServiceAccess::QUERY_CONFIG | ServiceAccess::DELETE)
        .map_err(|e| scm_error("cannot register the FileSync service", e))?;
    if let Err(e) = service.set_description(DESCRIPTION) {
        let _ = service.delete();
        return Err(scm_error("cannot describe the FileSync service", e));
    }
    // Restart after 5 s, again after 30 s, then every 2 minutes; forget failures after a day
    // without one. Also when the agent exits with an error, not only on a crash.
    let recovery = service
        .update_failure_actions(ServiceFailureActions {
            reset_period: ServiceFailureResetPeriod::After(Duration::from_secs(24 * 3600)),
            reboot_msg: None,
            command: None,
            actions: Some(RESTART_DELAYS.iter().map(|&d| restart_after(d)).collect()),
        })
        .and_then(|()| service.set_failure_actions_on_non_crash_failures(true));
    let recovery_note = match recovery {
        Ok(()) => "restarts on failure",
        // Every Windows since Vista supports recovery settings; Wine does not.
        Err(windows_service::Error::Winapi(e))
            if matches!(e.raw_os_error(), Some(ERROR_INVALID_LEVEL | ERROR_CALL_NOT_IMPLEMENTED)) =>
        {
            "WITHOUT restart on failure: this system does not support service recovery settings"
        }
        Err(e) => {
            let _ = service.delete();
            return Err(scm_error("cannot set the FileSync service's recovery actions", e));
        }
    };
    Ok(format!(
        "Installed the Windows service {SERVICE_NAME} (runs as LocalSystem, starts automatically at boot, \
         {recovery_note}).\nHome (configuration, state, logs): {}\nStart it now with `filesync service start`.",
        spec.home.display()
    ))
}

/// The recovery actions: restart after each of these delays (the last one repeats).
const RESTART_DELAYS: [Duration; 3] = [Duration::from_secs(5), Duration::from_secs(30), Duration::from_secs(120)];

fn restart_after(delay: Duration) -> ServiceAction {
    ServiceAction { action_type: ServiceActionType::Restart, delay }
}

/// The recovery actions as the SCM reports them, in words.
fn describe_recovery(service: &windows_service::service::Service) -> String {
    match service.get_failure_actions() {
        Ok(ServiceFailureActions { actions: Some(actions), .. }) if !actions.is_empty() => {
            let restarts: Vec<String> = actions
                .iter()
                .map(|a| match a.action_type {
                    ServiceActionType::Restart => format!("restart after {} s", a.delay.as_secs()),
                    other => format!("{other:?}"),
                })
                .collect();
            restarts.join(", then ")
        }
        Ok(_) => "none".into(),
        Err(windows_service::Error::Winapi(e)) => format!("unknown ({e})"),
        Err(e) => format!("unknown ({e})"),
    }
}

/// Gives the home to SYSTEM, Administrators and the installing user only: it holds the
/// device token. `icacls` ships with every Windows since Vista.
#[allow(clippy::disallowed_methods, reason = "icacls is how Windows sets an ACL from outside")]
fn secure_home(home: &Path) -> Result<(), ServiceError> {
    let mut cmd = std::process::Command::new("icacls");
    cmd.arg(home).args(["/inheritance:r", "/grant:r", "*S-1-5-18:(OI)(CI)F", "*S-1-5-32-544:(OI)(CI)F"]);
    // A machine account (`NAME$`, when installed by a deployment tool running as SYSTEM) is
    // not a person who will run `filesync`.
    if let Some(user) = std::env::var("USERNAME").ok().filter(|u| !u.is_empty() && !u.ends_with('$')) {
        let who = match std::env::var("USERDOMAIN").ok().filter(|d| !d.is_empty()) {
            Some(domain) => format!("{domain}\\{user}"),
            None => user,
        };
        cmd.arg(format!("{who}:(OI)(CI)F"));
    }
    let out = cmd.stdin(std::process::Stdio::null()).output().map_err(|error| ServiceError::Platform {
        action: format!("cannot run icacls to restrict access to {}", home.display()),
        error,
        hint: String::new(),
    })?;
    if !out.status.success() {
        return Err(ServiceError::Failed(format!(
            "icacls could not restrict access to {}: {}{}",
            home.display(),
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Stops the service if it runs, then removes it. The home stays.
pub fn uninstall(scope: Scope) -> Result<String, ServiceError> {
    require_system(scope)?;
    let service =
        open(ServiceAccess::QUERY_STATUS | ServiceAccess::QUERY_CONFIG | ServiceAccess::STOP | ServiceAccess::DELETE)?;
    let home = service.query_config().ok().and_then(|c| home_of_command_line(&c.executable_path));
    let status = query(&service)?;
    if status.current_state != ServiceState::Stopped {
        if status.current_state != ServiceState::StopPending {
            service.stop().map_err(|e| scm_error("cannot stop the FileSync service", e))?;
        }
        wait_for(&service, "stop", |s| s == ServiceState::Stopped)?;
    }
    service.delete().map_err(|e| scm_error("cannot remove the FileSync service", e))?;
    let kept = match home {
        Some(h) => format!(
            "\nIts home {} (configuration, state, logs) is kept; delete it if you no longer need it.",
            h.display()
        ),
        None => String::new(),
    };
    Ok(format!("Removed the Windows service {SERVICE_NAME}.{kept}"))
}

/// Starts the service and waits until it reports Running.
pub fn start(scope: Scope) -> Result<String, ServiceError> {
    require_system(scope)?;
    let service = open(ServiceAccess::QUERY_STATUS | ServiceAccess::QUERY_CONFIG | ServiceAccess::START)?;
    if query(&service)?.current_state == ServiceState::Running {
        return Ok(format!("The {SERVICE_NAME} service is already running."));
    }
    service.start(&[] as &[&OsStr]).map_err(|e| scm_error("cannot start the FileSync service", e))?;
    let state = wait_for(&service, "start", |s| matches!(s, ServiceState::Running | ServiceState::Stopped))?;
    if state.current_state == ServiceState::Stopped {
        let log = service
            .query_config()
            .ok()
            .and_then(|c| home_of_command_line(&c.executable_path))
            .map(|h| format!("; its log is in {}", crate::logfile::log_dir(&h).display()))
            .unwrap_or_default();
        return Err(ServiceError::Failed(format!(
            "the {SERVICE_NAME} service stopped right after starting ({}){log}",
            describe_exit(state.exit_code)
        )));
    }
    Ok(format!("Started the {SERVICE_NAME} service."))
}

/// Asks the service to stop and waits until it has.
pub fn stop(scope: Scope) -> Result<String, ServiceError> {
    require_system(scope)?;
    let service = open(ServiceAccess::QUERY_STATUS | ServiceAccess::STOP)?;
    if query(&service)?.current_state == ServiceState::Stopped {
        return Ok(format!("The {SERVICE_NAME} service is not running."));
    }
    service.stop().map_err(|e| scm_error("cannot stop the FileSync service", e))?;
    wait_for(&service, "stop", |s| s == ServiceState::Stopped)?;
    Ok(format!("Stopped the {SERVICE_NAME} service."))
}

/// What the Service Control Manager says about the service.
pub fn status(scope: Scope) -> Result<ServiceStatus, ServiceError> {
    require_system(scope)?;
    let service = match open(ServiceAccess::QUERY_STATUS | ServiceAccess::QUERY_CONFIG) {
        Ok(s) => s,
        Err(ServiceError::NotInstalled) => {
            return Ok(ServiceStatus {
                installed: false,
                running: false,
                report: format!("The Windows service {SERVICE_NAME} is not installed."),
            });
        }
        Err(e) => return Err(e),
    };
    let status = query(&service)?;
    let config =
        service.query_config().map_err(|e| scm_error("cannot read the FileSync service's configuration", e))?;
    let state = match status.current_state {
        ServiceState::Running => match status.process_id {
            Some(pid) => format!("running (process {pid})"),
            None => "running".into(),
        },
        ServiceState::Stopped => format!("stopped ({})", describe_exit(status.exit_code)),
        other => format!("{other:?}"),
    };
    let start = match config.start_type {
        ServiceStartType::AutoStart => "automatically at boot",
        ServiceStartType::OnDemand => "manually",
        ServiceStartType::Disabled => "never (disabled)",
        _ => "by the system",
    };
    let mut report = format!(
        "Windows service {SERVICE_NAME}: {state}\n  starts:   {start}\n  recovery: {}\n  runs as:  {}\n  command:  {}\n",
        describe_recovery(&service),
        config
            .account_name
            .as_deref()
            .map(|a| a.to_string_lossy().into_owned())
            .unwrap_or_else(|| "LocalSystem".into()),
        config.executable_path.display(),
    );
    if let Some(home) = home_of_command_line(&config.executable_path) {
        report.push_str(&format!(
            "  home:     {}\n  logs:     {}\n",
            home.display(),
            crate::logfile::log_dir(&home).display()
        ));
    }
    Ok(ServiceStatus { installed: true, running: status.current_state == ServiceState::Running, report })
}

/// The `--home` of the installed service, for the command line's default home.
pub fn installed_home() -> Option<PathBuf> {
    let service = open(ServiceAccess::QUERY_CONFIG).ok()?;
    home_of_command_line(&service.query_config().ok()?.executable_path)
}

/// The SCM reports the whole command line as the "executable path".
fn home_of_command_line(line: &Path) -> Option<PathBuf> {
    crate::cmdline::home_argument(&crate::cmdline::split(&line.to_string_lossy()))
}

fn describe_exit(code: ServiceExitCode) -> String {
    match code {
        ServiceExitCode::Win32(0) => "exit code 0".into(),
        ServiceExitCode::Win32(ERROR_SERVICE_NEVER_STARTED) => "not started since it was installed".into(),
        ServiceExitCode::Win32(c) => format!("Windows error {c}"),
        ServiceExitCode::ServiceSpecific(c) => format!("the agent failed with code {c}"),
    }
}

fn query(service: &windows_service::service::Service) -> Result<ScmStatus, ServiceError> {
    service.query_status().map_err(|e| scm_error("cannot query the FileSync service", e))
}

/// Polls the service's state until `done` holds, for at most [`STATE_TIMEOUT`].
#[allow(clippy::disallowed_methods, reason = "a blocking wait on the service control manager, outside any runtime")]
fn wait_for(
    service: &windows_service::service::Service,
    what: &str,
    done: impl Fn(ServiceState) -> bool,
) -> Result<ScmStatus, ServiceError> {
    let deadline = Instant::now() + STATE_TIMEOUT;
    loop {
        let status = query(service)?;
        if done(status.current_state) {
            return Ok(status);
        }
        if Instant::now() > deadline {
            return Err(ServiceError::Timeout(format!(
                "the {SERVICE_NAME} service did not {what} within {} s (it is {:?}); see `filesync service status`",
                STATE_TIMEOUT.as_secs(),
                status.current_state
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What else the service does once its agent runs, inside the agent's runtime — the
/// `filesync` binary starts the local web UI there, as `filesync agent` does. What it returns
/// is kept until the agent stops.
pub type OnReady = Box<dyn FnOnce(&Home, &AgentOptions) -> Box<dyn std::any::Any> + Send>;

/// What the service main needs, handed over from `run_dispatcher`'s caller.
struct ServiceSetup {
    home: PathBuf,
    opts: AgentOptions,
    on_ready: OnReady,
}

static SERVICE_SETUP: std::sync::Mutex<Option<ServiceSetup>> = std::sync::Mutex::new(None);

define_windows_service!(ffi_service_main, service_main);

/// The service process: hands this thread to the Service Control Manager, which calls the
/// service main (the agent serving `home` with `opts`, then `on_ready`) and returns when the
/// service has stopped.
pub fn run_dispatcher(home: PathBuf, opts: AgentOptions, on_ready: OnReady) -> Result<(), ServiceError> {
    *SERVICE_SETUP.lock().expect("service setup lock") = Some(ServiceSetup { home, opts, on_ready });
    service_dispatcher::start(SERVICE_NAME, ffi_service_main).map_err(|e| match e {
        windows_service::Error::Winapi(io) if io.raw_os_error() == Some(ERROR_FAILED_SERVICE_CONTROLLER_CONNECT) => {
            ServiceError::Unsupported(
                "`filesync service run` is what the Windows Service Control Manager starts; start the service \
                 with `filesync service start`, or run the agent in this window with `filesync agent`"
                    .into(),
            )
        }
        other => scm_error("cannot connect to the Service Control Manager", other),
    })
}

fn service_main(_arguments: Vec<OsString>) {
    let Some(setup) = SERVICE_SETUP.lock().expect("service setup lock").take() else { return };
    let logging = crate::logfile::init(&crate::logfile::log_dir(&setup.home));
    if let Err(e) = run_service(setup, logging.err()) {
        tracing::error!("the FileSync service failed: {e}");
    }
}

/// Reports the service's state to the SCM, counting checkpoints of pending states.
struct Reporter {
    handle: ServiceStatusHandle,
    checkpoint: AtomicU32,
}

impl Reporter {
    fn set(&self, state: ServiceState, exit_code: ServiceExitCode) {
        let pending = matches!(state, ServiceState::StartPending | ServiceState::StopPending);
        let status = ScmStatus {
            service_type: ServiceType::OWN_PROCESS,
            current_state: state,
            controls_accepted: if state == ServiceState::Running {
                ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN
            } else {
                ServiceControlAccept::empty()
            },
            exit_code,
            checkpoint: if pending { self.checkpoint.fetch_add(1, Ordering::Relaxed) + 1 } else { 0 },
            wait_hint: if pending { Duration::from_secs(30) } else { Duration::ZERO },
            process_id: None,
        };
        if let Err(e) = self.handle.set_service_status(status) {
            tracing::warn!("cannot report the service state {state:?}: {e}");
        }
    }
}

fn run_service(setup: ServiceSetup, log_error: Option<ServiceError>) -> Result<(), ServiceError> {
    let ServiceSetup { home, opts, on_ready } = setup;
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let reporter: Arc<OnceLock<Reporter>> = Arc::new(OnceLock::new());
    let handler_reporter = reporter.clone();
    let handle = service_control_handler::register(SERVICE_NAME, move |control| match control {
        ServiceControl::Stop | ServiceControl::Shutdown => {
            if let Some(r) = handler_reporter.get() {
                r.set(ServiceState::StopPending, ServiceExitCode::NO_ERROR);
            }
            tracing::info!(
                "the Service Control Manager asked to {}",
                if control == ServiceControl::Stop { "stop" } else { "shut down" }
            );
            let _ = stop_tx.send(true);
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    })
    .map_err(|e| scm_error("cannot register the service control handler", e))?;
    let reporter = reporter.get_or_init(|| Reporter { handle, checkpoint: AtomicU32::new(0) });
    reporter.set(ServiceState::StartPending, ServiceExitCode::NO_ERROR);

    if let Some(e) = log_error {
        reporter.set(ServiceState::Stopped, ServiceExitCode::ServiceSpecific(2));
        return Err(e);
    }
    tracing::info!("FileSync service starting (home {}, process {})", home.display(), std::process::id());
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            reporter.set(ServiceState::Stopped, ServiceExitCode::ServiceSpecific(3));
            return Err(ServiceError::Failed(format!("cannot start the async runtime: {e}")));
        }
    };
    let shutdown = async move {
        let _ = stop_rx.wait_for(|stop| *stop).await;
    };
    let home = Home::new(home);
    let mut extra = None;
    let result = runtime.block_on(agent::run_with_ready(home.clone(), opts.clone(), shutdown, || {
        extra = Some(on_ready(&home, &opts));
        tracing::info!("FileSync service running");
        reporter.set(ServiceState::Running, ServiceExitCode::NO_ERROR);
    }));
    drop(extra);
    reporter.set(ServiceState::StopPending, ServiceExitCode::NO_ERROR);
    // In-flight writes go to temporary files that are renamed only when complete, so whatever
    // is still running after the grace period is safely abandoned.
    runtime.shutdown_timeout(STOP_GRACE);
    match result {
        Ok(()) => {
            tracing::info!("FileSync service stopped");
            reporter.set(ServiceState::Stopped, ServiceExitCode::NO_ERROR);
            Ok(())
        }
        Err(e) => {
            // A non-zero exit code makes the SCM apply the recovery actions (restart).
            reporter.set(ServiceState::Stopped, ServiceExitCode::ServiceSpecific(1));
            Err(ServiceError::Failed(format!("the agent stopped: {e}")))
        }
    }
}
