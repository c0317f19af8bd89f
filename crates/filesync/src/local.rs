//! Helpers shared by commands that act on files inside linked folders: mapping a path typed by
//! a person to (folder, folder-relative path), and syncing a folder right away after a local
//! action when no agent runs for this home.

use anyhow::{Context, Result, bail};
use filesync_agent::config::{Config, FolderConfig, Home};
use filesync_core::RelPath;
use std::path::{Path, PathBuf};

/// Makes `path` absolute (relative to the current directory) without requiring it to exist,
/// resolving symlinks in the part that does exist.
fn absolute(path: &Path) -> Result<PathBuf> {
    let abs = if path.is_absolute() { path.to_path_buf() } else { std::env::current_dir()?.join(path) };
    // Canonicalize the longest existing ancestor, then re-append the rest.
    let mut existing = abs.as_path();
    let mut rest = Vec::new();
    while !existing.exists() {
        rest.push(existing.file_name().context("path has no name")?.to_os_string());
        existing = existing.parent().context("path has no existing ancestor")?;
    }
    let mut out = std::fs::canonicalize(existing)?;
    for r in rest.into_iter().rev() {
        out.push(r);
    }
    Ok(out)
}

/// The linked folder containing `path`, and the path relative to it.
pub fn locate(config: &Config, path: &Path) -> Result<(FolderConfig, RelPath)> {
    let abs = absolute(path)?;
    for f in &config.folders {
        if let Ok(rel) = abs.strip_prefix(&f.path) {
            let rel: Vec<String> = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
            if rel.is_empty() {
                bail!("{} is the folder {} itself; name a file or directory inside it", path.display(), f.name);
            }
            let rp = RelPath::normalize(&rel.join("/"))
                .with_context(|| format!("{} is not a syncable path", path.display()))?;
            return Ok((f.clone(), rp));
        }
    }
    bail!("{} is not inside a linked folder; see `filesync folder list`", path.display())
}

pub use filesync_agent::ops::SyncNow;

/// Runs one sync pass of `folder` unless an agent runs for this home (then it does it).
pub async fn sync_now(home: &Home, folder: &FolderConfig) -> Result<SyncNow> {
    Ok(filesync_agent::ops::sync_now(home, folder).await?)
}

/// One line telling the user how the change will reach the other computers.
pub fn describe_sync_now(r: &SyncNow) -> String {
    match r {
        SyncNow::AgentRunning => "the running agent syncs it to your other computers".into(),
        SyncNow::Done(rep) if rep.errors.is_empty() => "synced".into(),
        SyncNow::Done(rep) => format!("synced with {} error(s); see `filesync status`", rep.errors.len()),
    }
}
