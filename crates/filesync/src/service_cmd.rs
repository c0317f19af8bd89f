//! `filesync service …`: install, remove, start, stop and inspect the agent as a background
//! service (a Windows service, or a systemd unit on Linux), and `service run`, the entry point
//! the Windows Service Control Manager starts. The work is done by `filesync-service`.

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use filesync_agent::config::Home;
use filesync_service::{Scope, ServiceSpec};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum ServiceCmd {
    /// Register the agent as a service that starts by itself (at login for a systemd user unit,
    /// at boot for a system service). It serves the home given with --home (Windows default:
    /// %ProgramData%\FileSync).
    Install(ScopeArgs),
    /// Stop the service and remove it (the home with its configuration and state stays).
    Uninstall(ScopeArgs),
    /// Start the installed service now.
    Start(ScopeArgs),
    /// Stop the service (it finishes or safely abandons in-flight writes).
    Stop(ScopeArgs),
    /// What the service manager says about the service (exit code 0 when it runs, 3 when not).
    Status(ScopeArgs),
    /// The Windows service process itself, started by the Service Control Manager.
    #[command(hide = true)]
    Run,
}

#[derive(Args, Debug)]
pub struct ScopeArgs {
    /// A systemd user unit in ~/.config/systemd/user (the default on Linux).
    #[arg(long, conflicts_with = "system")]
    pub user: bool,
    /// A service of the computer: a system unit on Linux (runs as the user who ran sudo), the
    /// LocalSystem service on Windows (the default, and the only kind, there).
    #[arg(long)]
    pub system: bool,
}

impl ScopeArgs {
    fn scope(&self) -> Scope {
        match (self.user, self.system) {
            (true, _) => Scope::User,
            (_, true) => Scope::System,
            _ => Scope::platform_default(),
        }
    }
}

/// Runs a `service` subcommand other than `run`. `explicit_home` is `--home`/`FILESYNC_HOME`
/// as given; `home` is what the other commands would use.
pub fn run(cmd: ServiceCmd, explicit_home: Option<PathBuf>, home: Result<Home>) -> Result<ExitCode> {
    let message = match cmd {
        ServiceCmd::Install(args) => {
            let spec = spec(args.scope(), explicit_home, home)?;
            let message = filesync_service::install(&spec)?;
            let config = Home::new(spec.home.clone()).load().ok().unwrap_or_default();
            if config.server.is_none() || config.folders.is_empty() {
                let h = spec.home.display();
                eprintln!(
                    "note: this home has no login or no folder yet; the service syncs once it has both:\n  \
                     filesync --home \"{h}\" login --server HOST:PORT --user NAME\n  \
                     filesync --home \"{h}\" folder add PATH"
                );
            }
            message
        }
        ServiceCmd::Uninstall(args) => filesync_service::uninstall(args.scope())?,
        ServiceCmd::Start(args) => filesync_service::start(args.scope())?,
        ServiceCmd::Stop(args) => filesync_service::stop(args.scope())?,
        ServiceCmd::Status(args) => {
            let status = filesync_service::status(args.scope())?;
            print!("{}", status.report);
            if !status.report.ends_with('\n') {
                println!();
            }
            return Ok(if status.running { ExitCode::SUCCESS } else { ExitCode::from(3) });
        }
        ServiceCmd::Run => bail!("`service run` is handled before the runtime starts"),
    };
    println!("{message}");
    Ok(ExitCode::SUCCESS)
}

/// `filesync service run`: the process the Windows Service Control Manager starts. It logs to
/// `<home>\logs` instead of a terminal, so it runs before the usual logging is set up.
pub fn run_service(explicit_home: Option<PathBuf>) -> ExitCode {
    match service_process(explicit_home) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(windows)]
fn service_process(explicit_home: Option<PathBuf>) -> Result<()> {
    let home = explicit_home
        .or_else(filesync_service::default_system_home)
        .context("no home directory for the service; pass --home DIR")?;
    // The service runs what `filesync agent` runs, the local web UI included (`[ui] listen`
    // in the home's config.toml chooses where it listens).
    let args = crate::ui_cmd::AgentArgs::default();
    let opts = filesync_agent::agent::AgentOptions::default();
    let start_ui: filesync_service::windows::OnReady =
        Box::new(move |home, opts| Box::new(crate::ui_cmd::start_for_agent(home, opts.live.clone(), &args)));
    filesync_service::windows::run_dispatcher(home, opts, start_ui)?;
    Ok(())
}

#[cfg(not(windows))]
fn service_process(_explicit_home: Option<PathBuf>) -> Result<()> {
    bail!(
        "`filesync service run` is the Windows service's entry point; under systemd the service runs \
         `filesync agent` (see `filesync service install`)"
    )
}

/// The program, home and account a new service gets.
fn spec(scope: Scope, explicit_home: Option<PathBuf>, home: Result<Home>) -> Result<ServiceSpec> {
    let exe = std::env::current_exe().context("cannot find the path of this filesync program")?;
    let run_as = if scope == Scope::System { system_account() } else { None };
    let home = match explicit_home {
        Some(h) => h,
        None if scope == Scope::System => system_home(run_as.as_deref())?,
        None => home?.dir,
    };
    Ok(ServiceSpec { scope, exe, home: absolute(&home)?, run_as })
}

/// The account a Linux system unit runs as: the user who ran `sudo`, else the current one.
#[cfg(unix)]
fn system_account() -> Option<String> {
    filesync_service::systemd::invoking_user()
}

/// The Windows service runs as LocalSystem.
#[cfg(not(unix))]
fn system_account() -> Option<String> {
    None
}

/// The default home of a system service: `%ProgramData%\FileSync` on Windows; on Linux the
/// usual home of the account the unit runs as (`~/.config/filesync`).
fn system_home(account: Option<&str>) -> Result<PathBuf> {
    if let Some(dir) = filesync_service::default_system_home() {
        return Ok(dir);
    }
    let user = account.context("cannot tell which account the service should run as; pass --home DIR")?;
    #[cfg(unix)]
    if let Some(dir) = filesync_service::systemd::account_home(user) {
        return Ok(dir.join(".config").join("filesync"));
    }
    bail!("cannot find the home directory of account {user}; pass --home DIR")
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("cannot make {} an absolute path", p.display()))
}
