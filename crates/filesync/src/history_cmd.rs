//! `filesync history`, `restore`, `trash` and `usage`: the server's version history from the
//! command line. Paths are files on this computer (absolute or relative to the current
//! directory) inside a linked folder; a restore happens on the server, as a new version that
//! every computer syncs, and this computer then syncs the folder at once unless its agent runs.

use crate::local::{self, SyncNow};
use crate::output::{human_bytes, human_time};
use anyhow::{Context, Result, bail};
use clap::Subcommand;
use filesync_agent::config::{Config, FolderConfig, Home};
use filesync_agent::ops::{OpsError, history, trash};
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
    /// Bring a deleted file or folder back, on every computer: its last version before the
    /// deletion. A folder comes back with what was deleted with it.
    Restore {
        /// The deleted path, as it was on this computer.
        path: PathBuf,
        /// Restore under this name instead (it must not exist).
        #[arg(long)]
        to: Option<PathBuf>,
    },
    /// Bring back everything deleted together: group N of `filesync trash list` (1 = the most
    /// recent deletions).
    RestoreGroup {
        /// The group's number in `filesync trash list [FOLDER]`.
        group: usize,
        /// The linked folder the list was of (as given to `trash list`); default: every folder.
        folder: Option<String>,
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
    println!("{} in {} — {} version(s), newest first; times are local:", rel, folder.name, list.len());
    println!("{:>3}  {:<19}  {:<20}  {:>10}", "#", "TIME", "DEVICE", "SIZE");
    for (i, e) in list.iter().enumerate() {
        let mut marks = Vec::new();
        if e.meta.is_none() {
            marks.push("deleted");
        }
        if i == 0 {
            marks.push("current");
        }
        let marks = if marks.is_empty() { String::new() } else { format!("  ({})", marks.join(", ")) };
        println!("{:>3}  {:<19}  {:<20}  {:>10}{marks}", i + 1, human_time(e.committed_at), e.device_name, size_of(e));
    }
    if let Some(d) = default_version(&list) {
        let n = list.iter().position(|e| e.rev == d.rev).map_or(0, |i| i + 1);
        println!(
            "`filesync restore {}` brings back #{n} (from {}, {}); `--version N` picks another.",
            path.display(),
            d.device_name,
            human_time(d.committed_at)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The server's rev of version `n` (1 = the newest) as `filesync history` numbers them.
fn numbered(list: &[EntryState], n: usize, rel: &RelPath, path: &Path) -> Result<u64> {
    let Some(e) = n.checked_sub(1).and_then(|i| list.get(i)) else {
        bail!(
            "{rel} has no version #{n}: the server keeps {} version(s), #1 the newest; `filesync history {}` lists them",
            list.len(),
            path.display()
        );
    };
    if e.meta.is_none() {
        bail!(
            "version #{n} of {rel} ({}) is its deletion; pick a version with a size from `filesync history {}`",
            human_time(e.committed_at),
            path.display()
        );
    }
    Ok(e.rev)
}

/// `filesync restore PATH [--version N] [--to NEWPATH]`; N numbers versions as `filesync
/// history` does, 1 the newest.
pub async fn restore(home: &Home, path: &Path, version: Option<usize>, to: Option<&Path>) -> Result<ExitCode> {
    let config = home.load()?;
    let (folder, rel) = local::locate(&config, path)?;
    let target = target(&config, &folder, &rel, to)?;
    let rev = match version {
        Some(n) => Some(numbered(&versions(home, &folder, &rel).await?, n, &rel, path)?),
        None => None,
    };
    let restored = history::restore(home, &folder, &rel, rev, target.as_ref()).await.map_err(|e| match e {
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
            println!("{target_path} already holds the content of the version of {when}; nothing to restore.");
            return Ok(ExitCode::SUCCESS);
        }
        history::Restored::NewVersion(_) if target_path == rel => {
            println!("Restored {rel} to its version of {when} (from {}).", chosen.device_name)
        }
        history::Restored::NewVersion(_) => {
            println!("Restored the version of {rel} of {when} (from {}) as {target_path}.", chosen.device_name)
        }
    }
    sync_here(home, folder).await
}

/// Syncs this computer after a restore on the server, and says how that went.
async fn sync_here(home: &Home, folder: &FolderConfig) -> Result<ExitCode> {
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
            let r = trash::restore_deleted(home, &folder, &rel, target.as_ref()).await.map_err(|e| match e {
                OpsError::Refused(m) => {
                    anyhow::anyhow!(m.replace("`filesync restore`", &format!("`filesync restore {}`", path.display())))
                }
                e => e.into(),
            })?;
            if r.contents.back() == 0 && r.contents.failed.is_empty() {
                return report(home, &folder, &rel, target.as_ref(), (r.last, r.done)).await;
            }
            let shown = target.as_ref().unwrap_or(&rel);
            println!(
                "Restored the folder {rel}{} and the {} item(s) that were in it.",
                if shown == &rel { String::new() } else { format!(" as {shown}") },
                r.contents.back(),
            );
            print_failures(&r.contents);
            sync_here(home, &folder).await
        }
        TrashCmd::RestoreGroup { group, folder } => {
            let config = home.load()?;
            let (scope, _) = whole_folders(trash_scope(&config, folder.as_deref())?);
            let groups = trash::group(history::trash(home, &scope).await?);
            let Some(g) = group.checked_sub(1).and_then(|i| groups.get(i)) else {
                bail!(
                    "there is no group {group} in the trash ({} group(s)); `filesync trash list` numbers them",
                    groups.len()
                );
            };
            let r = trash::restore_group(home, &g.folder, g.key).await?;
            println!(
                "Restored {} item(s) of {} deleted on {} at {}.",
                r.done.back(),
                r.group.folder.name,
                r.group.device,
                human_time(r.group.last_at)
            );
            print_failures(&r.done);
            sync_here(home, &r.group.folder).await
        }
    }
}

fn print_failures(m: &trash::RestoredMany) {
    for (p, why) in &m.failed {
        eprintln!("  not restored: {p}: {why}");
    }
}

/// The folders of `scope` whole, and the one part of a folder it named, if any.
fn whole_folders(
    scope: Vec<(FolderConfig, Option<RelPath>)>,
) -> (Vec<(FolderConfig, Option<RelPath>)>, Option<RelPath>) {
    let prefix = match scope.as_slice() {
        [(_, Some(p))] => Some(p.clone()),
        _ => None,
    };
    (scope.into_iter().map(|(f, _)| (f, None)).collect(), prefix)
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
    // Groups are numbered over whole folders, so that `restore-group N` names the same one
    // whatever part of the folder the list showed; only the items below `prefix` are shown.
    let (scope, prefix) = whole_folders(scope);
    let shown = |t: &history::TrashItem| {
        prefix.as_ref().is_none_or(|p| *p == t.deleted.path || p.is_ancestor_of(&t.deleted.path))
    };
    let mut groups: Vec<(usize, trash::TrashGroup)> =
        trash::group(history::trash(home, &scope).await?).into_iter().enumerate().map(|(i, g)| (i + 1, g)).collect();
    for (_, g) in &mut groups {
        g.items.retain(shown);
    }
    groups.retain(|(_, g)| !g.items.is_empty());
    if json {
        let v: Vec<_> = groups
            .iter()
            .flat_map(|(n, g)| g.items.iter().map(move |t| (*n, t)))
            .map(|(n, t)| {
                let (f, d, l) = (&t.folder, &t.deleted, &t.last);
                serde_json::json!({
                    "folder": f.name, "path": d.path.as_str(), "local_path": f.path.join(d.path.as_str()),
                    "group": n,
                    "deleted_rev": d.rev, "deleted_at": d.committed_at, "deleted_by": d.device_name,
                    "last_rev": l.rev, "last_committed_at": l.committed_at, "last_device": l.device_name,
                    "kind": kind_of(l), "size": l.meta.as_ref().map(|m| m.size),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    if groups.is_empty() {
        println!("The trash is empty.");
        return Ok(ExitCode::SUCCESS);
    }
    println!("Deleted together, most recent first; times are local.");
    for (number, g) in &groups {
        let n = g.items.len();
        println!(
            "\n{number}. {} item{} deleted in {} on {} at {}",
            n,
            if n == 1 { "" } else { "s" },
            g.folder.name,
            g.device,
            human_time(g.last_at)
        );
        for t in g.tops() {
            let inside = g.below(&t.deleted.path).count();
            let what = match inside {
                0 => size_of(&t.last),
                n => format!("folder, {n} item(s) in it"),
            };
            println!(
                "   {}/{}  ({what}; last version {} from {})",
                g.folder.name,
                t.deleted.path,
                human_time(t.last.committed_at),
                t.last.device_name
            );
        }
    }
    println!(
        "\nRestore one with `filesync trash restore PATH` (PATH as it was on this computer; a folder brings back \
         what was deleted with it), or a whole group with `filesync trash restore-group N{}`.",
        match scope.as_slice() {
            [(f, _)] => format!(" {}", f.name),
            _ => String::new(),
        }
    );
    Ok(ExitCode::SUCCESS)
}

fn percent(used: u64, of: u64) -> String {
    if of == 0 { "100 %".into() } else { format!("{:.0} %", used as f64 * 100.0 / of as f64) }
}

/// `filesync usage`.
pub async fn usage(home: &Home, json: bool) -> Result<ExitCode> {
    let u = history::usage(home).await?;
    if json {
        // The same view as the UI's `GET /api/usage`.
        println!("{}", serde_json::to_string_pretty(&u)?);
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
    match u.quota {
        Some(q) => println!("storage quota:     {} ({} used)", human_bytes(q), percent(u.bytes_stored, q)),
        None => println!("storage quota:     none"),
    }
    Ok(ExitCode::SUCCESS)
}
