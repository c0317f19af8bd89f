//! The `filesync` command: runs the server, the agent, and every user action (register,
//! login, devices, folders, sync, status) from one binary. Argument parsing and printing
//! live here; the work is done by the library crates.

mod admin_cmd;
mod cli;
mod commands;
mod conflicts_cmd;
mod history_cmd;
mod local;
mod migrate_cmd;
mod output;
mod service_cmd;
mod settings_cmd;
mod status_cmd;
mod ui_cmd;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    if let cli::Command::Service(service_cmd::ServiceCmd::Run) = args.command {
        return service_cmd::run_service(args.home);
    }
    #[cfg(unix)]
    if !matches!(args.command, cli::Command::Server(_) | cli::Command::Agent(_) | cli::Command::Ui(_)) {
        // A command whose output goes to `head` or a closed pager ends quietly, as `ls` does,
        // instead of panicking on the broken pipe. (Sockets are written with MSG_NOSIGNAL, so
        // this concerns only standard output.)
        // SAFETY: restores the default action of one signal before any thread is started.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("FILESYNC_LOG").unwrap_or_else(|_| {
        let level = match (args.verbose, &args.command) {
            (0, cli::Command::Server(_)) | (0, cli::Command::Agent(_)) => "info",
            (0, _) => "warn",
            (1, _) => "info",
            _ => "debug",
        };
        tracing_subscriber::EnvFilter::new(format!(
            "warn,filesync={level},filesync_server={level},filesync_agent={level},filesync_store={level}"
        ))
    });
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match rt.block_on(commands::run(args)) {
        Ok(code) => code,
        Err(e) => {
            // An action's error reads as one plain sentence; the raw text only with -v.
            match e.downcast_ref::<filesync_agent::ops::OpsError>() {
                Some(ops) => {
                    eprintln!(
                        "error: {}",
                        filesync_agent::ops::plain::error_message(ops, filesync_agent::ops::plain::Audience::Cli)
                    );
                    tracing::info!("error detail: {e:#}");
                }
                None => eprintln!("error: {e:#}"),
            }
            std::process::ExitCode::FAILURE
        }
    }
}
