//! `filesync ui` (open the local web UI in the browser, or print its URL; set the UI
//! password) and the UI side of `filesync agent` (`--ui-listen`): the agent serves the UI
//! from the moment it owns its home.

use anyhow::{Context, Result, bail};
use clap::Args;
use filesync_agent::config::Home;
use filesync_agent::live::LiveStatus;
use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

#[derive(Args, Debug, Default)]
pub struct AgentArgs {
    /// Where the web UI listens (ADDRESS:PORT). Default: `[ui] listen` in config.toml, else
    /// 127.0.0.1:7780. A non-loopback address requires a UI password (`filesync ui --set-password`).
    #[arg(long, env = "FILESYNC_UI_LISTEN")]
    pub ui_listen: Option<String>,
    /// Do not serve the web UI.
    #[arg(long, conflicts_with = "ui_listen")]
    pub no_ui: bool,
}

#[derive(Args, Debug)]
pub struct UiArgs {
    /// Print the URL (with this computer's UI key) instead of opening a browser.
    #[arg(long)]
    pub print_url: bool,
    /// Set the password that guards a UI reachable from other computers (prompted, or the
    /// first line of standard input with --password-stdin).
    #[arg(long, conflicts_with_all = ["print_url", "clear_password"])]
    pub set_password: bool,
    /// Remove the UI password (the UI must then listen on loopback only).
    #[arg(long, conflicts_with = "print_url")]
    pub clear_password: bool,
    #[arg(long, requires = "set_password")]
    pub password_stdin: bool,
}

/// Checks `--ui-listen` before the agent starts, so a bad value fails at once.
pub fn check_agent_args(home: &Home, args: &AgentArgs) -> Result<()> {
    if !args.no_ui
        && let Some(l) = &args.ui_listen
    {
        filesync_web::listen_address(home, Some(l))?;
    }
    Ok(())
}

/// Starts the UI inside the agent; a UI that cannot start is reported and syncing goes on.
pub fn start_for_agent(home: &Home, live: LiveStatus, args: &AgentArgs) -> Option<filesync_web::UiServer> {
    if args.no_ui {
        return None;
    }
    match filesync_web::start(home, live, args.ui_listen.as_deref()) {
        Ok(ui) => {
            eprintln!("FileSync UI on http://{}/ — open it with `filesync ui`", ui.addr);
            Some(ui)
        }
        Err(e) => {
            tracing::warn!("the web UI is not available: {e}");
            None
        }
    }
}

pub async fn run(home: &Home, args: UiArgs) -> Result<ExitCode> {
    if args.set_password || args.clear_password {
        let mut config = home.load()?;
        if args.clear_password {
            config.ui.password_hash = None;
            home.save(&config)?;
            println!("The UI password is removed; the UI now refuses to listen on a non-loopback address.");
            return Ok(ExitCode::SUCCESS);
        }
        let pw = read_new_password(args.password_stdin)?;
        config.ui.password_hash =
            Some(tokio::task::spawn_blocking(move || filesync_web::security::hash_password(&pw)).await?);
        home.save(&config)?;
        println!("The UI password is set; restart the agent for a new listen address to take effect.");
        return Ok(ExitCode::SUCCESS);
    }
    let (url, running) = filesync_web::ui_url(home)?;
    if args.print_url {
        println!("{url}");
        if !running {
            eprintln!("note: the agent is not running for this home; start it with `filesync agent`");
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !running {
        eprintln!("The agent is not running for this home; start it first with `filesync agent` (it serves the UI).");
        return Ok(ExitCode::FAILURE);
    }
    if let Err(e) = open_browser(&url) {
        eprintln!("could not open a browser ({e}); open this address yourself:");
        println!("{url}");
        return Ok(ExitCode::SUCCESS);
    }
    println!("Opened the FileSync UI in your browser.");
    Ok(ExitCode::SUCCESS)
}

fn read_new_password(from_stdin: bool) -> Result<String> {
    let pw = if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context("reading the password from standard input")?;
        line.trim_end_matches(['\r', '\n']).to_string()
    } else {
        if !std::io::stdin().is_terminal() {
            bail!("no terminal to ask for the password; use --password-stdin");
        }
        let pw = rpassword::prompt_password("New UI password: ")?;
        if rpassword::prompt_password("Repeat it: ")? != pw {
            bail!("the passwords do not match");
        }
        pw
    };
    if pw.chars().count() < 10 {
        bail!("choose a UI password of at least 10 characters");
    }
    Ok(pw)
}

/// Opens `url` with the desktop's browser, without a shell (the URL is never interpreted).
#[allow(clippy::disallowed_methods, reason = "opening the browser is running the desktop's opener")]
fn open_browser(url: &str) -> std::io::Result<()> {
    let mut cmd = if cfg!(target_os = "macos") {
        std::process::Command::new("open")
    } else if cfg!(windows) {
        let mut c = std::process::Command::new("rundll32");
        c.arg("url.dll,FileProtocolHandler");
        c
    } else {
        std::process::Command::new("xdg-open")
    };
    let status = cmd
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()?;
    if status.success() { Ok(()) } else { Err(std::io::Error::other(format!("the opener exited with {status}"))) }
}
