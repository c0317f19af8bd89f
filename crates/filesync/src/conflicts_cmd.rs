//! `filesync conflicts`: list conflict copies with both versions' device and time, and resolve
//! one by keeping mine, theirs, or both. The work is `filesync_agent::ops::conflicts`, which the
//! web UI calls too; this file parses and prints.

use crate::local::{self, SyncNow};
use crate::output::{human_bytes, human_time};
use anyhow::Result;
use clap::{Subcommand, ValueEnum};
use filesync_agent::config::{Config, Home};
use filesync_agent::ops::conflicts::{self, Keep as OpsKeep};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum ConflictsCmd {
    /// List conflict copies (the default).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Resolve one conflict: PATH is the conflict copy (or the original, if it has one copy).
    Resolve {
        path: PathBuf,
        /// mine / theirs: this computer's version or the other one; copy / original: by file.
        #[arg(long, value_enum)]
        keep: Keep,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    Mine,
    Theirs,
    Both,
    Copy,
    Original,
}

impl From<Keep> for OpsKeep {
    fn from(k: Keep) -> OpsKeep {
        match k {
            Keep::Mine => OpsKeep::Mine,
            Keep::Theirs => OpsKeep::Theirs,
            Keep::Both => OpsKeep::Both,
            Keep::Copy => OpsKeep::Copy,
            Keep::Original => OpsKeep::Original,
        }
    }
}

pub async fn run(home: &Home, cmd: Option<ConflictsCmd>) -> Result<ExitCode> {
    let config = home.load()?;
    match cmd.unwrap_or(ConflictsCmd::List { json: false }) {
        ConflictsCmd::List { json } => list(home, &config, json).await,
        ConflictsCmd::Resolve { path, keep } => resolve(home, &config, path, keep).await,
    }
}

async fn list(home: &Home, config: &Config, json: bool) -> Result<ExitCode> {
    if json {
        // The same view as the UI's `GET /api/conflicts`.
        println!("{}", serde_json::to_string_pretty(&conflicts::list(home, config).await?)?);
        return Ok(ExitCode::SUCCESS);
    }
    let conflicts = conflicts::find(home, config).await?;
    if conflicts.is_empty() {
        println!("No conflicts.");
        return Ok(ExitCode::SUCCESS);
    }
    for c in &conflicts {
        let size = |s: Option<u64>| s.map(human_bytes).unwrap_or_else(|| "not here yet".into());
        println!("{}: {}", c.folder.name, c.copy);
        println!("    copy:     version from {}, conflict at {}, {}", c.copy_device, c.copy_when, size(c.copy_size));
        match &c.original_entry {
            Some(e) => println!(
                "    original: {} — version from {}, {}, {}",
                c.original,
                e.device_name,
                human_time(e.committed_at),
                size(c.original_size)
            ),
            None => println!("    original: {} — {}", c.original, size(c.original_size)),
        }
    }
    println!();
    println!("Resolve one with `filesync conflicts resolve COPY --keep mine|theirs|both`.");
    Ok(ExitCode::SUCCESS)
}

async fn resolve(home: &Home, config: &Config, path: PathBuf, keep: Keep) -> Result<ExitCode> {
    let (folder, rel) = local::locate(config, &path)?;
    let found = conflicts::find(home, config).await?;
    let c = conflicts::pick(&found, &folder.name, &rel)?;
    println!("{}", conflicts::resolve(config, c, keep.into())?);
    let r = local::sync_now(home, &folder).await?;
    if let SyncNow::Done(rep) = &r
        && !rep.errors.is_empty()
    {
        for e in &rep.errors {
            eprintln!("  error {}: {}", e.path, e.reason);
        }
        return Ok(ExitCode::FAILURE);
    }
    println!("{}", local::describe_sync_now(&r));
    Ok(ExitCode::SUCCESS)
}
