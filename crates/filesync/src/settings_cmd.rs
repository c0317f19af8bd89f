//! Per-folder settings from the command line: `folder set`, `folder show`, `pause`,
//! `resume`, `folder confirm-deletes` and `folder revert`. Settings live in `config.toml`; the
//! one-off requests (confirm deletions, revert) are stored in the state database. Either way
//! the running agent is told at once over its control endpoint (`agent::control`).

use anyhow::{Result, bail};
use filesync_agent::agent::HomeLock;
use filesync_agent::agent::control::ControlRequest;
use filesync_agent::config::{Home, format_rate};
use filesync_agent::filter::IGNORE_FILE;
use filesync_agent::ops;
use filesync_agent::ops::revert::Reverted;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

/// How long a command waits for the running agent to carry out a request.
const AGENT_TIMEOUT: Duration = Duration::from_secs(300);

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
    let v = ops::settings::show(home, name).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let s = &v.settings;
    println!("{} ({})", v.name, v.path.display());
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
        if v.ignore_file { format!(" + {}", v.path.join(IGNORE_FILE).display()) } else { String::new() }
    );
    match &v.paused_reason {
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
    let config = home.load()?;
    let folder = config.folders[ops::settings::find(&config, name)?].name.clone();
    if ops::settings::confirm_deletes(home, &folder).await?.is_none() {
        println!("The mass-delete guard holds nothing back in {folder}; there is nothing to confirm.");
        return Ok(ExitCode::SUCCESS);
    }
    if !HomeLock::is_held(home) {
        println!(
            "Confirmed: the next sync of {folder} propagates the deletions (run `filesync sync`, or start the agent). \
             The server keeps the deleted versions in its history."
        );
        return Ok(ExitCode::SUCCESS);
    }
    ops::agent_carries_out(home, &folder, AGENT_TIMEOUT).await?;
    println!("Confirmed: the deletions in {folder} were propagated; the folder syncs again.");
    Ok(ExitCode::SUCCESS)
}

/// `filesync folder revert NAME [--yes]`: the preview and the revert are `ops::revert`'s (which,
/// without a running agent, carries it out in this process).
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
    match ops::revert::carry_out(home, &folder).await {
        Ok(Reverted::ByAgent) => {
            println!("Done: the agent carried out the {what} of {folder}.");
            Ok(ExitCode::SUCCESS)
        }
        Ok(Reverted::Here(rep)) if rep.errors.is_empty() && rep.paused.is_none() => {
            println!(
                "Done: {} uploaded, {} deleted on the server, {} downloaded, {} removed here.",
                rep.uploaded, rep.deleted_remote, rep.downloaded, rep.deleted_local
            );
            Ok(ExitCode::SUCCESS)
        }
        Ok(Reverted::Here(rep)) => {
            for e in &rep.errors {
                eprintln!("  error {}: {}", e.path, e.reason);
            }
            bail!("the {what} of {folder} is not complete; the next sync finishes it (see `filesync status`)")
        }
        Err(e) => Err(anyhow::Error::from(e).context(format!("the {what} of {folder} failed"))),
    }
}
