//! `filesync status`: each folder's state as the running agent reports it, and
//! `filesync status --wait`, which returns once every folder is in sync — for scripts. With
//! `--json`, both print the web UI's status view (`filesync_web::view::StatusView`).

use crate::output::{human_bytes, human_time};
use anyhow::Result;
use filesync_agent::agent::HomeLock;
use filesync_agent::config::Home;
use filesync_agent::status::{AgentStatus, FolderState};
use std::process::ExitCode;
use std::time::Duration;
use tokio::time::Instant;

/// How long every folder must have been reported in sync before `--wait` believes it: the
/// agent's status reaches its file within about 200 ms of a change, and a change made just
/// before `--wait` started needs a moment to reach the watcher.
const SETTLE: Duration = Duration::from_millis(400);
const POLL: Duration = Duration::from_millis(50);
/// How long `--wait` waits for an agent that is not running yet.
const AGENT_START: Duration = Duration::from_secs(5);

pub async fn run(home: &Home, json: bool, wait: bool, timeout: Option<f64>) -> Result<ExitCode> {
    if wait {
        return wait_in_sync(home, json, timeout.map(Duration::from_secs_f64)).await;
    }
    show(home, json)
}

fn read_status(home: &Home) -> Option<AgentStatus> {
    std::fs::read(home.status_path()).ok().and_then(|b| serde_json::from_slice(&b).ok())
}

/// Why the agent's folders are not all in sync, or `None` when they are.
fn not_in_sync(status: &AgentStatus) -> Option<String> {
    if status.folders.is_empty() {
        return Some("no folders are being synced yet".into());
    }
    let why: Vec<String> = status
        .folders
        .iter()
        .filter(|f| !f.in_sync)
        .map(|f| {
            let waiting = if f.waiting.is_empty() { f.state.to_string() } else { f.waiting.join("; ") };
            format!("{}: {waiting}", f.name)
        })
        .collect();
    (!why.is_empty()).then(|| why.join("\n"))
}

/// A folder state that waiting will not cure: report it instead of waiting for the timeout.
fn stuck(status: &AgentStatus) -> Option<String> {
    status.folders.iter().find_map(|f| match f.state {
        FolderState::Error => Some(format!(
            "{}: {}",
            f.name,
            f.last_error.as_deref().unwrap_or("the last sync failed; see `filesync status`")
        )),
        FolderState::Paused => Some(format!("{}: {}", f.name, f.paused_reason.as_deref().unwrap_or("paused"))),
        _ => None,
    })
}

async fn wait_in_sync(home: &Home, json: bool, timeout: Option<Duration>) -> Result<ExitCode> {
    let start = Instant::now();
    let mut in_sync_since: Option<Instant> = None;
    let mut stuck_since: Option<(Instant, String)> = None;
    // An agent started just before (`filesync agent &`) gets a moment to take its home.
    let grace = timeout.unwrap_or(AGENT_START).min(AGENT_START);
    loop {
        if !HomeLock::is_held(home) {
            if start.elapsed() < grace {
                tokio::time::sleep(POLL).await;
                continue;
            }
            eprintln!("the FileSync agent is not running for this home; start it with `filesync agent`");
            return Ok(ExitCode::from(2));
        }
        let status = read_status(home);
        let why = status.as_ref().map_or(Some("the agent has not reported its status yet".into()), not_in_sync);
        let now = Instant::now();
        match &why {
            None => {
                let since = *in_sync_since.get_or_insert(now);
                if now.duration_since(since) >= SETTLE {
                    let status = status.expect("in sync means a status");
                    if json {
                        println!("{}", serde_json::to_string_pretty(&view(home, Some(status), true))?);
                    } else {
                        println!("in sync: {} folder(s)", status.folders.len());
                    }
                    return Ok(ExitCode::SUCCESS);
                }
            }
            Some(_) => in_sync_since = None,
        }
        // An error or a pause that lasts is reported, not waited out.
        match status.as_ref().and_then(stuck) {
            Some(e) => {
                let (since, _) = stuck_since.get_or_insert((now, e.clone()));
                if now.duration_since(*since) >= Duration::from_secs(2) {
                    eprintln!("not in sync: {e}");
                    return Ok(ExitCode::FAILURE);
                }
            }
            None => stuck_since = None,
        }
        if timeout.is_some_and(|t| start.elapsed() >= t) {
            eprintln!(
                "not in sync after {:.1} s:\n{}",
                start.elapsed().as_secs_f64(),
                why.unwrap_or_else(|| "still settling".into())
            );
            return Ok(ExitCode::FAILURE);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The web UI's status view (`GET /api/status`) from the agent's report.
fn view(home: &Home, report: Option<AgentStatus>, agent_running: bool) -> filesync_web::view::StatusView {
    // No transfer rate: one look has no earlier sample to measure against.
    filesync_web::view::StatusView::build(home, report, agent_running, |_, _| 0)
}

/// `filesync status [--json]`.
fn show(home: &Home, json: bool) -> Result<ExitCode> {
    let config = home.load()?;
    let running = HomeLock::is_held(home);
    let status = read_status(home);
    if json {
        // The UI's view (`GET /api/status`). While an agent runs, only its own report speaks
        // for it, not one a `filesync sync` left behind (which carries no process id).
        let report = status.filter(|s| !running || s.pid.is_some());
        println!("{}", serde_json::to_string_pretty(&view(home, report, running))?);
        return Ok(ExitCode::SUCCESS);
    }
    match (&config.server, &config.user) {
        (Some(s), Some(u)) => println!("server {s}, user {u}, device {}", config.device_name.as_deref().unwrap_or("?")),
        _ => println!("not logged in (run `filesync login`)"),
    }
    match (&status, running) {
        (Some(s), true) => println!(
            "agent: running, {}{}",
            s.connection,
            s.message.as_ref().map(|m| format!(" ({m})")).unwrap_or_default()
        ),
        (_, true) => println!("agent: running"),
        (_, false) => println!("agent: not running (start it with `filesync agent`)"),
    }
    if config.folders.is_empty() {
        println!("no folders (add one with `filesync folder add PATH`)");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<20} {:<8} {:>7} {:>10} {:>7} {:>9}  LAST SYNC",
        "FOLDER", "STATE", "FILES", "SIZE", "PENDING", "CONFLICTS"
    );
    for f in &config.folders {
        let fs = status.as_ref().and_then(|s| s.folders.iter().find(|x| x.name == f.name));
        match fs {
            Some(x) => {
                let state = if running || matches!(x.state, FolderState::Error | FolderState::Paused) {
                    x.state.to_string()
                } else {
                    "stopped".into()
                };
                println!(
                    "{:<20} {:<8} {:>7} {:>10} {:>7} {:>9}  {}",
                    f.name,
                    state,
                    x.files,
                    human_bytes(x.bytes),
                    x.pending,
                    x.conflicts,
                    human_time(x.last_sync.unwrap_or(0))
                );
                if let Some(p) = &x.progress
                    && x.state == FolderState::Syncing
                {
                    println!(
                        "    {} {}/{} files, {}/{}",
                        p.phase,
                        p.files_done,
                        p.files_total,
                        human_bytes(p.bytes_done),
                        human_bytes(p.bytes_total)
                    );
                }
                if running && !x.in_sync && !x.waiting.is_empty() {
                    println!("    not in sync: {}", x.waiting.join("; "));
                }
                if let Some(e) = &x.last_error {
                    println!("    error: {e}");
                }
                if let Some(r) = &x.paused_reason {
                    println!("    {r}");
                    if x.state == FolderState::Paused {
                        let by_user = f.settings.paused || config.paused;
                        println!("    {}", paused_action(&f.name, config.paused, by_user));
                    }
                }
                for s in x.skipped.iter().take(10) {
                    println!("    skipped {}: {}", s.path, s.reason);
                }
            }
            None => println!("{:<20} {:<8} {:>7} {:>10} {:>7} {:>9}  never", f.name, "new", "-", "-", "-", "-"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What to run about a paused folder: resume it (paused by the user; every folder when `all`),
/// or confirm the deletions the mass-delete guard holds back.
pub fn paused_action(folder: &str, all: bool, by_user: bool) -> String {
    match (by_user, all) {
        (true, true) => "to resume every folder: `filesync resume`".into(),
        (true, false) => format!("to resume: `filesync resume {folder}`"),
        (false, _) => format!("if you meant to delete them: `filesync folder confirm-deletes {folder}`"),
    }
}
