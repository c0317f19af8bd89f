//! Per-folder settings from the command line: `folder set`, `folder show`, `pause`,
//! `resume`, `folder confirm-deletes` and `folder revert`. Settings live in `config.toml`; the
//! one-off requests (confirm deletions, revert) are stored in the state database. Either way
//! the running agent is told at once over its control endpoint (`agent::control`).

use anyhow::{Result, bail};
use filesync_agent::agent::control::ControlRequest;
use filesync_agent::agent::{self, HomeLock, StatusBoard};
use filesync_agent::config::{Config, FolderConfig, Home, format_rate};
use filesync_agent::engine::Engine;
use filesync_agent::engine::policy;
use filesync_agent::fs::RealFs;
use filesync_agent::ops;
use filesync_agent::state::StateDb;
use filesync_agent::status::Progress;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn find<'a>(config: &'a mut Config, name: &str) -> Result<&'a mut FolderConfig> {
    let i = ops::settings::find(config, name)?;
    Ok(&mut config.folders[i])
}

/// Tells the running agent about a saved change; what it does with it, for the confirmation
/// line.
async fn applies(home: &Home) -> &'static str {
    match ops::tell_agent(home, ControlRequest::Reload).await {
        Ok(true) => "the running agent applies it now",
        Ok(false) => "it applies from the next sync",
        Err(_) => "the running agent applies it within a few seconds",
    }
}

fn list_or_none(v: &[String]) -> String {
    if v.is_empty() { "none".into() } else { v.join(", ") }
}

/// `filesync folder set NAME KEY VALUE`.
pub async fn set(home: &Home, name: &str, key: &str, value: &str) -> Result<ExitCode> {
    let (folder, said) = ops::settings::set(home, name, &[(key.to_string(), value.to_string())])?;
    println!("{}: {}; {}.", folder.name, said.join("; "), applies(home).await);
    Ok(ExitCode::SUCCESS)
}

/// `filesync folder show NAME [--json]`.
pub async fn show(home: &Home, name: &str, json: bool) -> Result<ExitCode> {
    let mut config = home.load()?;
    let all_paused = config.paused;
    let f = find(&mut config, name)?.clone();
    let s = &f.settings;
    let tripped = match StateDb::open(&home.state_path()).await {
        Ok(db) => policy::tripped(&db, &f.name).await?,
        Err(_) => None,
    };
    let paused = if s.paused {
        Some(policy::Paused::by_user(false).reason)
    } else if all_paused {
        Some(policy::Paused::by_user(true).reason)
    } else {
        tripped.clone()
    };
    let ignore_file = f.path.join(filesync_agent::filter::IGNORE_FILE);
    if json {
        let v = serde_json::json!({
            "name": f.name,
            "path": f.path,
            "settings": s,
            "paused": paused.is_some(),
            "paused_reason": paused,
            "guard_tripped": tripped.is_some(),
            "ignore_file": ignore_file.exists(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{} ({})", f.name, f.path.display());
    println!("  direction        {}", s.direction);
    println!("  schedule         {}", s.schedule());
    println!("  rescan           every {} s", s.rescan_secs);
    println!("  excluded         {}", list_or_none(&s.excluded));
    println!("  upload-limit     {}", format_rate(s.upload_limit));
    println!("  download-limit   {}", format_rate(s.download_limit));
    println!(
        "  guard            pauses above {}% and {} files deleted in one pass",
        s.guard_percent, s.guard_min_files
    );
    println!(
        "  ignore rules     built-in defaults{}",
        if ignore_file.exists() { format!(" + {}", ignore_file.display()) } else { String::new() }
    );
    match paused {
        Some(r) => println!("  paused           yes: {r}"),
        None => println!("  paused           no"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `filesync pause [NAME]` (`pause: true`) and `filesync resume [NAME]`.
pub async fn pause(home: &Home, name: Option<String>, pause: bool) -> Result<ExitCode> {
    let verb = if pause { "Paused" } else { "Resumed" };
    let change = ops::settings::pause(home, name.as_deref(), pause)?;
    match change.folder {
        None => {
            println!("{verb} every folder; {}.", applies(home).await);
            if pause {
                println!("`filesync resume` resumes them.");
            }
        }
        Some(folder) => {
            println!("{verb} {folder}; {}.", applies(home).await);
            if pause {
                println!("`filesync resume {folder}` resumes it.");
            } else if change.all_still_paused {
                println!("note: every folder is still paused; `filesync resume` (without a name) resumes them all.");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `filesync folder confirm-deletes NAME`.
pub async fn confirm_deletes(home: &Home, name: &str) -> Result<ExitCode> {
    let mut config = home.load()?;
    let f = find(&mut config, name)?.clone();
    if ops::settings::confirm_deletes(home, &f.name).await?.is_none() {
        println!("The mass-delete guard holds nothing back in {}; there is nothing to confirm.", f.name);
        return Ok(ExitCode::SUCCESS);
    }
    if !HomeLock::is_held(home) {
        println!(
            "Confirmed: the next sync of {} propagates the deletions (run `filesync sync`, or start the agent). \
             The server keeps the deleted versions in its history.",
            f.name
        );
        return Ok(ExitCode::SUCCESS);
    }
    let db = StateDb::open(&home.state_path()).await?;
    wait_for_agent(home, &db, &f.name).await?;
    println!("Confirmed: the deletions in {} were propagated; the folder syncs again.", f.name);
    Ok(ExitCode::SUCCESS)
}

/// Asks the running agent to carry out the request stored for folder `name`, and waits until
/// it has.
async fn wait_for_agent(home: &Home, db: &StateDb, name: &str) -> Result<()> {
    if let Err(e) = ops::tell_agent(home, ControlRequest::Sync { folder: name.to_string() }).await {
        bail!("{e}; the request is stored, and the agent carries it out on its next sync of {name}");
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    while policy::request_pending(db, name).await? {
        if Instant::now() > deadline {
            bail!("the agent has not carried it out after 5 minutes; see `filesync status` (it will still do it)");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// `filesync folder revert NAME [--yes]`: the preview and the request are `ops::revert`'s;
/// without a running agent, this command carries the revert out itself.
pub async fn revert(home: &Home, name: &str, yes: bool) -> Result<ExitCode> {
    let preview = ops::revert::preview(home, name).await?;
    let (what, folder) = (preview.what, preview.folder.clone());
    if preview.changes.is_empty() {
        println!("{folder} already matches; nothing to {what}.");
        return Ok(ExitCode::SUCCESS);
    }
    println!("{folder}: {what} will {}:", preview.effect);
    for line in &preview.changes {
        println!("  {line}");
    }
    if !yes {
        if !std::io::stdin().is_terminal() {
            bail!("no terminal to confirm on; nothing was changed. Pass --yes to {what} from a script");
        }
        print!("Continue? [y/N] ");
        std::io::stdout().flush().ok();
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            println!("Nothing was changed.");
            return Ok(ExitCode::SUCCESS);
        }
    }
    let agent_running = ops::revert::request(home, &folder).await?;
    let _lock = if agent_running { None } else { Some(HomeLock::acquire(home)?) };
    let db = StateDb::open(&home.state_path()).await?;
    if agent_running {
        wait_for_agent(home, &db, &folder).await?;
        println!("Done: the agent carried out the {what} of {folder}.");
        return Ok(ExitCode::SUCCESS);
    }
    let mut config = home.load()?;
    let f = find(&mut config, &folder)?.clone();
    let conn = agent::connect(home, &config).await?;
    let engine = Engine::new(conn, db, config.device_name.clone().unwrap_or_default());
    let fs = Arc::new(RealFs::new(f.path.clone()));
    let board = StatusBoard::new(&config.folders, None);
    let r = engine.sync_folder(&f, fs, &Progress::default()).await;
    agent::report_pass(&board, &f.name, &r);
    let status = serde_json::to_vec_pretty(&board.snapshot())?;
    filesync_agent::config::write_atomic(&home.status_path(), &status, false)?;
    match r {
        Ok(rep) if rep.errors.is_empty() && rep.paused.is_none() => {
            println!(
                "Done: {} uploaded, {} deleted on the server, {} downloaded, {} removed here.",
                rep.uploaded, rep.deleted_remote, rep.downloaded, rep.deleted_local
            );
            Ok(ExitCode::SUCCESS)
        }
        Ok(rep) => {
            for e in &rep.errors {
                eprintln!("  error {}: {}", e.path, e.reason);
            }
            bail!("the {what} of {} is not complete; the next sync finishes it (see `filesync status`)", f.name)
        }
        Err(e) => Err(anyhow::Error::from(e).context(format!("the {what} of {} failed", f.name))),
    }
}
