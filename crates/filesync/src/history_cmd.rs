//! `filesync history`, `restore`, `trash` and `usage`: the server's version history from the
//! command line. Paths are files on this computer (absolute or relative to the current
//! directory) inside a linked folder; a restore happens on the server, as a new version that
//! every computer syncs, and this computer then syncs the folder at once unless its agent runs.

use crate::local::{self, SyncNow};
use crate::output::{human_bytes, human_time};
use anyhow::{Context, Result, bail};
use clap::Subcommand;
use filesync_agent::agent;
use filesync_agent::config::{Config, FolderConfig, Home};
use filesync_client::{Connection, ErrorCode};
use filesync_core::{EntryKind, EntryState, RelPath};
use filesync_proto::convert::entry_from_wire;
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

/// A linked folder's connection, server-side id, and seq when it was opened.
struct Remote {
    conn: Connection,
    folder_id: u64,
    seq: u64,
}

/// Connects and opens `folder` on the server; `None` if the server has never heard of it.
async fn open(home: &Home, config: &Config, folder: &FolderConfig) -> Result<Option<Remote>> {
    let conn = agent::connect(home, config).await?;
    match conn.open_folder(&folder.name, false).await {
        Ok(info) => Ok(Some(Remote { conn, folder_id: info.id, seq: info.seq })),
        Err(e) if e.code() == Some(ErrorCode::NotFound) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Every version of `path` the server keeps, newest first.
async fn versions(
    home: &Home,
    config: &Config,
    folder: &FolderConfig,
    path: &RelPath,
) -> Result<(Remote, Vec<EntryState>)> {
    let Some(remote) = open(home, config, folder).await? else {
        bail!("the folder {} has never been synced to the server, so it has no history yet", folder.name);
    };
    let wire = remote.conn.all_versions(remote.folder_id, path.as_str()).await?;
    let list =
        wire.iter().map(entry_from_wire).collect::<Result<Vec<_>, _>>().context("the server sent a bad entry")?;
    if list.is_empty() {
        bail!("the server has no version of {path} in the folder {} (was it ever synced?)", folder.name);
    }
    Ok((remote, list))
}

/// What `filesync restore` brings back without `--version`: for a deleted path its last
/// version before the deletion; otherwise the newest older version whose content differs from
/// the current one (undoing the last change). `versions` is newest first.
pub fn default_version(versions: &[EntryState]) -> Option<&EntryState> {
    let current = versions.first()?;
    match &current.meta {
        None => versions.iter().find(|v| v.meta.is_some()),
        Some(cur) => versions[1..].iter().find(|v| v.meta.as_ref().is_some_and(|m| !m.same_content(cur))),
    }
}

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
    let (_, list) = versions(home, &config, &folder, &rel).await?;
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
    let (remote, list) = versions(home, &config, &folder, &rel).await?;
    let chosen = match version {
        Some(rev) => match list.iter().find(|e| e.rev == rev) {
            Some(e) if e.meta.is_some() => e,
            Some(_) => {
                bail!("version {rev} of {rel} is its deletion; pick a version with a size from `filesync history`")
            }
            None => bail!("{rel} has no version {rev}; `filesync history {}` lists them", path.display()),
        },
        None => match default_version(&list) {
            Some(e) => e,
            None => bail!(
                "{rel} has no older version with other content to go back to; `filesync history {}` lists its versions",
                path.display()
            ),
        },
    };
    let chosen = chosen.clone();
    restore_version(home, &folder, remote, &rel, &chosen, to).await
}

/// Restores `chosen` (a live version of `rel`) onto `rel` or `to`, then syncs this computer.
async fn restore_version(
    home: &Home,
    folder: &FolderConfig,
    remote: Remote,
    rel: &RelPath,
    chosen: &EntryState,
    to: Option<&Path>,
) -> Result<ExitCode> {
    let config = home.load()?;
    let target = match to {
        Some(t) => {
            let (to_folder, to_rel) = local::locate(&config, t)?;
            if to_folder.name != folder.name {
                bail!("--to must name a path in the same folder as {rel} ({}), not in {}", folder.name, to_folder.name);
            }
            Some(to_rel)
        }
        None => None,
    };
    let target_path = target.as_ref().unwrap_or(rel);
    let (outcome, _) = remote
        .conn
        .restore(remote.folder_id, rel.as_str(), chosen.rev, target.as_ref().map_or("", |t| t.as_str()))
        .await?;
    let current = outcome.current.as_ref().map(entry_from_wire).transpose().context("the server sent a bad entry")?;
    let when = human_time(chosen.committed_at);
    if !outcome.accepted {
        let Some(blocker) = current else { bail!("the server refused the restore without saying why") };
        if blocker.path != *target_path {
            bail!(
                "{} is a file on the server, so {target_path} cannot be restored below it; move that file away \
                 or restore with --to somewhere else",
                blocker.path
            );
        }
        let is_dir = blocker.meta.as_ref().is_some_and(|m| m.kind == EntryKind::Dir);
        let restoring_dir = chosen.meta.as_ref().is_some_and(|m| m.kind == EntryKind::Dir);
        if target_path == rel && is_dir != restoring_dir {
            bail!(
                "{target_path} is a {} now, and a restore never replaces a {} by a {}; nothing was changed. \
                 Restore under a new name with --to",
                if is_dir { "folder" } else { "file" },
                if is_dir { "folder" } else { "file" },
                if is_dir { "file" } else { "folder" },
            );
        }
        bail!(
            "{target_path} already exists with other content (version {} from {}, {}); nothing was changed. \
             Restore under a new name with --to, or move that {} away first",
            blocker.rev,
            blocker.device_name,
            human_time(blocker.committed_at),
            if is_dir { "folder" } else { "file" }
        );
    }
    match current {
        // An entry older than our view of the folder: the target already had this content.
        Some(c) if c.rev <= remote.seq => {
            println!("{target_path} already holds the content of version {} ({when}); nothing to restore.", chosen.rev);
            return Ok(ExitCode::SUCCESS);
        }
        Some(c) => println!(
            "Restored {rel} as of version {} ({when}, from {}) to {target_path}: it is now version {}.",
            chosen.rev, chosen.device_name, c.rev
        ),
        None => bail!("the server accepted the restore but sent no entry"),
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
            let (remote, list) = versions(home, &config, &folder, &rel).await?;
            if let Some(cur) = list.first().filter(|c| c.meta.is_some()) {
                bail!(
                    "{rel} is not deleted (its current version is {}); to go back to an older version use \
                     `filesync restore {}`",
                    cur.rev,
                    path.display()
                );
            }
            let Some(last) = default_version(&list).cloned() else {
                bail!("the server no longer keeps any version of {rel} from before its deletion (retention passed)");
            };
            restore_version(home, &folder, remote, &rel, &last, to.as_deref()).await
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
    let mut rows = Vec::new();
    for (folder, prefix) in &scope {
        let Some(remote) = open(home, &config, folder).await? else { continue };
        let prefix = prefix.as_ref().map_or("", |p| p.as_str());
        let mut before = 0;
        loop {
            let page = remote.conn.list_trash(remote.folder_id, prefix, before, 0).await?;
            for t in &page.entries {
                let (Some(d), Some(l)) = (&t.deleted, &t.last_live) else { continue };
                let (d, l) = (entry_from_wire(d)?, entry_from_wire(l)?);
                before = d.rev;
                rows.push((folder.clone(), d, l));
            }
            if !page.more || page.entries.is_empty() {
                break;
            }
        }
    }
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
    let config = home.load()?;
    let conn = agent::connect(home, &config).await?;
    let u = conn.usage().await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use filesync_core::{FileMeta, Hash};

    fn v(rev: u64, content: Option<&[u8]>) -> EntryState {
        EntryState {
            path: RelPath::new("f").unwrap(),
            rev,
            meta: content.map(|c| FileMeta {
                kind: EntryKind::File,
                size: c.len() as u64,
                mtime_ns: rev as i64,
                executable: false,
                hash: Hash::of(c),
                chunks: vec![],
            }),
            device_id: 1,
            device_name: "d".into(),
            committed_at: rev as i64,
        }
    }

    fn pick(list: &[EntryState]) -> Option<u64> {
        default_version(list).map(|e| e.rev)
    }

    #[test]
    fn default_restore_undoes_the_last_change() {
        assert_eq!(pick(&[v(3, Some(b"c")), v(2, Some(b"b")), v(1, Some(b"a"))]), Some(2));
        // A touch (same content, new mtime) is not a change worth undoing.
        assert_eq!(pick(&[v(3, Some(b"b")), v(2, Some(b"b")), v(1, Some(b"a"))]), Some(1));
        assert_eq!(pick(&[v(1, Some(b"a"))]), None, "a single version has nothing to go back to");
        assert_eq!(pick(&[]), None);
    }

    #[test]
    fn default_restore_of_a_deleted_file_is_its_last_version() {
        assert_eq!(pick(&[v(4, None), v(3, Some(b"c")), v(2, Some(b"b"))]), Some(3));
        assert_eq!(pick(&[v(4, None)]), None, "nothing left to restore");
    }

    #[test]
    fn default_restore_skips_deletions_in_the_history() {
        assert_eq!(pick(&[v(5, Some(b"new")), v(4, None), v(3, Some(b"old"))]), Some(3));
    }
}
