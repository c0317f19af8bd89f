//! `filesync history`, `restore`, `trash` and `usage`: the server's version history from the
//! command line. Paths are files on this computer (absolute or relative to the current
//! directory) inside a linked folder; a restore happens on the server, as a new version that
//! every computer syncs, and this computer then syncs the folder at once unless its agent runs.

use crate::local::{self, SyncNow};
use crate::output::{human_bytes, human_time};
use anyhow::{Context, Result, bail};
use clap::Subcommand;
use filesync_agent::config::{Config, FolderConfig, Home};
use filesync_agent::ops::{OpsError, history};
use filesync_core::{EntryKind, EntryState, RelPath};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum TrashCmd {
    /// Deleted files and folders the server can still restore, most recently deleted first.
    List {
        /// A linked folder's name, or a directory inside one (only what was below it). Default:
        /// every linked folder.
        folder: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Bring a deleted file (or folder entry) back, on every computer: its last version
    /// before the deletion.
    Restore {
        /// The deleted path, as it was on this computer.
        path: PathBuf,
        /// Restore under this name instead (it must not exist).
        #[arg(long)]
        to: Option<PathBuf>,
    },
}

/// Every version of `path` the server keeps, newest first.
async fn versions(home: &Home, folder: &FolderConfig, path: &RelPath) -> Result<Vec<EntryState>> {
    Ok(history::versions(home, folder, path).await?.1)
}

pub use history::default_version;

fn size_of(e: &EntryState) -> String {
    match &e.meta {
        None => "-".into(),
        Some(m) if m.kind == EntryKind::Dir => "folder".into(),
        Some(m) => human_bytes(m.size),
    }
}

fn kind_of(e: &EntryState) -> &'static str {
    match &e.meta {
        None => "deleted",
        Some(m) if m.kind == EntryKind::Dir => "dir",
        Some(_) => "file",
    }
}

/// `filesync history PATH`.
pub async fn history(home: &Home, path: &Path, json: bool) -> Result<ExitCode> {
    let config = home.load()?;
    let (folder, rel) = local::locate(&config, path)?;
    let list = versions(home, &folder, &rel).await?;
    if json {
        let v: Vec<_> = list
            .iter()
            .enumerate()
            .map(|(i, e)| {
                serde_json::json!({
                    "rev": e.rev, "committed_at": e.committed_at, "device": e.device_name,
                    "device_id": e.device_id, "kind": kind_of(e), "size": e.meta.as_ref().map(|m| m.size),
                    "hash": e.meta.as_ref().filter(|m| m.kind == EntryKind::File).map(|m| m.hash.to_hex()),
                    "deleted": e.meta.is_none(), "current": i == 0,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"folder": folder.name, "path": rel.as_str(), "versions": v})
            )?
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("{} in {} — {} version(s), newest first:", rel, folder.name, list.len());
    println!("{:>8}  {:<23}  {:<20}  {:>10}", "VERSION", "TIME", "DEVICE", "SIZE");
    for (i, e) in list.iter().enumerate() {
        let mut marks = Vec::new();
        if e.meta.is_none() {
            marks.push("deleted");
        }
        if i == 0 {
            marks.push("current");
        }
        let marks = if marks.is_empty() { String::new() } else { format!("  ({})", marks.join(", ")) };
        println!("{:>8}  {:<23}  {:<20}  {:>10}{marks}", e.rev, human_time(e.committed_at), e.device_name, size_of(e));
    }
    if let Some(d) = default_version(&list) {
        println!(
            "`filesync restore {}` brings back version {} ({}).",
            path.display(),
            d.rev,
            human_time(d.committed_at)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `filesync restore PATH [--version REV] [--to NEWPATH]`.
pub async fn restore(home: &Home, path: &Path, version: Option<u64>, to: Option<&Path>) -> Result<ExitCode> {
    let config = home.load()?;
    let (folder, rel) = local::locate(&config, path)?;
    let target = target(&config, &folder, &rel, to)?;
    let restored = history::restore(home, &folder, &rel, version, target.as_ref()).await.map_err(|e| match e {
        OpsError::Invalid { message, .. } => {
            anyhow::anyhow!(message.replace("`filesync history`", &format!("`filesync history {}`", path.display())))
        }
        e => e.into(),
    })?;
    report(home, &folder, &rel, target.as_ref(), restored).await
}

/// The folder-relative path `--to` names, which must be in the same folder as `rel`.
fn target(config: &Config, folder: &FolderConfig, rel: &RelPath, to: Option<&Path>) -> Result<Option<RelPath>> {
    let Some(t) = to else { return Ok(None) };
    let (to_folder, to_rel) = local::locate(config, t)?;
    if to_folder.name != folder.name {
        bail!("--to must name a path in the same folder as {rel} ({}), not in {}", folder.name, to_folder.name);
    }
    Ok(Some(to_rel))
}

/// Prints what a restore did, then syncs this computer.
async fn report(
    home: &Home,
    folder: &FolderConfig,
    rel: &RelPath,
    target: Option<&RelPath>,
    (chosen, restored): (EntryState, history::Restored),
) -> Result<ExitCode> {
    let target_path = target.unwrap_or(rel);
    let when = human_time(chosen.committed_at);
    match restored {
        history::Restored::AlreadyThere => {
            println!("{target_path} already holds the content of version {} ({when}); nothing to restore.", chosen.rev);
            return Ok(ExitCode::SUCCESS);
        }
        history::Restored::NewVersion(rev) => println!(
            "Restored {rel} as of version {} ({when}, from {}) to {target_path}: it is now version {rev}.",
            chosen.rev, chosen.device_name
        ),
    }
    let synced = local::sync_now(home, folder).await.context(
        "the restore is done on the server and reaches your other computers, but syncing this one failed; \
         run `filesync sync`",
    )?;
    println!("{}", local::describe_sync_now(&synced));
    if let SyncNow::Done(rep) = &synced {
        for e in &rep.errors {
            eprintln!("  error {}: {}", e.path, e.reason);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `filesync trash …`.
pub async fn trash(home: &Home, cmd: TrashCmd) -> Result<ExitCode> {
    match cmd {
        TrashCmd::List { folder, json } => trash_list(home, folder.as_deref(), json).await,
        TrashCmd::Restore { path, to } => {
            let config = home.load()?;
            let (folder, rel) = local::locate(&config, &path)?;
            let target = target(&config, &folder, &rel, to.as_deref())?;
            let restored =
                history::restore_deleted(home, &folder, &rel, target.as_ref()).await.map_err(|e| match e {
                    OpsError::Refused(m) => anyhow::anyhow!(
                        m.replace("`filesync restore`", &format!("`filesync restore {}`", path.display()))
                    ),
                    e => e.into(),
                })?;
            report(home, &folder, &rel, target.as_ref(), restored).await
        }
    }
}

/// Which folders (and which part of each) `trash list` shows.
fn trash_scope(config: &Config, which: Option<&str>) -> Result<Vec<(FolderConfig, Option<RelPath>)>> {
    match which {
        None => Ok(config.folders.iter().map(|f| (f.clone(), None)).collect()),
        Some(name) => {
            if let Some(f) = config.folders.iter().find(|f| f.name == name) {
                return Ok(vec![(f.clone(), None)]);
            }
            let (f, rel) = local::locate(config, Path::new(name))
                .with_context(|| format!("{name:?} is neither a linked folder's name nor a path inside one"))?;
            Ok(vec![(f, Some(rel))])
        }
    }
}

async fn trash_list(home: &Home, which: Option<&str>, json: bool) -> Result<ExitCode> {
    let config = home.load()?;
    let scope = trash_scope(&config, which)?;
    if scope.is_empty() {
        println!("No folders yet; add one with `filesync folder add PATH`.");
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<(FolderConfig, EntryState, EntryState)> =
        history::trash(home, &scope).await?.into_iter().map(|t| (t.folder, t.deleted, t.last)).collect();
    if json {
        let v: Vec<_> = rows
            .iter()
            .map(|(f, d, l)| {
                serde_json::json!({
                    "folder": f.name, "path": d.path.as_str(), "local_path": f.path.join(d.path.as_str()),
                    "deleted_rev": d.rev, "deleted_at": d.committed_at, "deleted_by": d.device_name,
                    "last_rev": l.rev, "last_committed_at": l.committed_at, "last_device": l.device_name,
                    "kind": kind_of(l), "size": l.meta.as_ref().map(|m| m.size),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("The trash is empty.");
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<40}  {:<23}  {:<16}  {:>10}  LAST VERSION", "PATH", "DELETED", "BY", "SIZE");
    for (f, d, l) in &rows {
        let shown = format!("{}/{}", f.name, d.path);
        println!(
            "{shown:<40}  {:<23}  {:<16}  {:>10}  {} ({}, {})",
            human_time(d.committed_at),
            d.device_name,
            size_of(l),
            l.rev,
            human_time(l.committed_at),
            l.device_name
        );
    }
    println!("Restore one with `filesync trash restore PATH` (PATH as it was on this computer).");
    Ok(ExitCode::SUCCESS)
}

/// `filesync usage`.
pub async fn usage(home: &Home, json: bool) -> Result<ExitCode> {
    let u = history::usage(home).await?;
    if json {
        let v = serde_json::json!({
            "files_current": u.files_current, "bytes_current": u.bytes_current,
            "versions_history": u.versions_history, "bytes_history": u.bytes_history,
            "chunks": u.chunks, "bytes_stored": u.bytes_stored,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("current files:     {:>8} files, {}", u.files_current, human_bytes(u.bytes_current));
    println!(
        "version history:   {:>8} older versions, {} (before deduplication)",
        u.versions_history,
        human_bytes(u.bytes_history)
    );
    println!(
        "stored on server:  {:>8} chunks, {} (what counts against storage)",
        u.chunks,
        human_bytes(u.bytes_stored)
    );
    Ok(ExitCode::SUCCESS)
}
