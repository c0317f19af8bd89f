//! `filesync conflicts`: list conflict copies with both versions' device and time, and resolve
//! one by keeping mine, theirs, or both. Resolving is a local file operation (delete the copy,
//! move it over the original, or give it a plain name) that then syncs like any change.

use crate::local::{self, SyncNow};
use crate::output::{human_bytes, human_time};
use anyhow::{Context, Result, bail};
use clap::{Subcommand, ValueEnum};
use filesync_agent::config::{Config, FolderConfig, Home};
use filesync_agent::state::StateDb;
use filesync_core::conflict::{CONFLICT_MARKER, parse_conflict_copy};
use filesync_core::path::TEMP_PREFIX;
use filesync_core::{EntryState, RelPath};
use std::collections::{BTreeMap, HashMap};
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

/// One conflict copy and the file it is a copy of.
struct Conflict {
    folder: FolderConfig,
    copy: RelPath,
    original: RelPath,
    /// The device whose version the copy holds, and when the conflict happened.
    copy_device: String,
    copy_when: String,
    copy_size: Option<u64>,
    /// The original's current version on the server, if known.
    original_entry: Option<EntryState>,
    original_size: Option<u64>,
}

fn walk(root: &std::path::Path, out: &mut Vec<RelPath>) {
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(TEMP_PREFIX) {
                continue;
            }
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p.clone());
            }
            if name.contains(CONFLICT_MARKER)
                && let Ok(rel) = p.strip_prefix(root)
                && let Ok(rp) = RelPath::normalize(&rel.to_string_lossy().replace('\\', "/"))
            {
                out.push(rp);
            }
        }
    }
}

async fn find(home: &Home, config: &Config) -> Result<Vec<Conflict>> {
    let db = StateDb::open(&home.state_path()).await?;
    let mut out = Vec::new();
    for f in &config.folders {
        let remote: HashMap<RelPath, EntryState> = db.remote_all(&f.name).await?;
        let mut copies: BTreeMap<RelPath, ()> = BTreeMap::new();
        let mut local = Vec::new();
        walk(&f.path, &mut local);
        copies.extend(local.into_iter().map(|p| (p, ())));
        copies.extend(remote.iter().filter(|(p, e)| e.meta.is_some() && parse_conflict_copy(p).is_some()).map(|(p, _)| (p.clone(), ())));
        for copy in copies.into_keys() {
            let Some(info) = parse_conflict_copy(&copy) else { continue };
            let size_here = |p: &RelPath| std::fs::metadata(f.path.join(p.as_str())).ok().map(|m| m.len());
            let remote_size = |p: &RelPath| remote.get(p).and_then(|e| e.meta.as_ref()).map(|m| m.size);
            out.push(Conflict {
                folder: f.clone(),
                copy_size: size_here(&copy).or_else(|| remote_size(&copy)),
                original_size: size_here(&info.original).or_else(|| remote_size(&info.original)),
                original_entry: remote.get(&info.original).filter(|e| e.meta.is_some()).cloned(),
                original: info.original,
                copy_device: info.device,
                copy_when: info.when,
                copy,
            });
        }
    }
    Ok(out)
}

pub async fn run(home: &Home, cmd: Option<ConflictsCmd>) -> Result<ExitCode> {
    let config = home.load()?;
    match cmd.unwrap_or(ConflictsCmd::List { json: false }) {
        ConflictsCmd::List { json } => list(home, &config, json).await,
        ConflictsCmd::Resolve { path, keep } => resolve(home, &config, path, keep).await,
    }
}

async fn list(home: &Home, config: &Config, json: bool) -> Result<ExitCode> {
    let conflicts = find(home, config).await?;
    if json {
        let v: Vec<_> = conflicts
            .iter()
            .map(|c| {
                serde_json::json!({
                    "folder": c.folder.name,
                    "copy": c.copy.as_str(),
                    "original": c.original.as_str(),
                    "copy_device": c.copy_device,
                    "copy_time": c.copy_when,
                    "copy_size": c.copy_size,
                    "original_device": c.original_entry.as_ref().map(|e| e.device_name.clone()),
                    "original_time": c.original_entry.as_ref().map(|e| human_time(e.committed_at)),
                    "original_size": c.original_size,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
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

/// A plain (non-conflict) name for the copy when both versions are kept.
fn both_name(c: &Conflict, root: &std::path::Path) -> Result<RelPath> {
    let name = c.original.file_name();
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i..]),
        _ => (name, ""),
    };
    for n in 1..1000 {
        let counter = if n == 1 { String::new() } else { format!(" {n}") };
        let candidate = c.original.with_file_name(&format!("{stem} ({}'s version{counter}){ext}", c.copy_device))?;
        if !root.join(candidate.as_str()).exists() {
            return Ok(candidate);
        }
    }
    bail!("no free name to keep both versions of {}", c.original)
}

async fn resolve(home: &Home, config: &Config, path: PathBuf, keep: Keep) -> Result<ExitCode> {
    let (folder, rel) = local::locate(config, &path)?;
    let conflicts = find(home, config).await?;
    let mut matching: Vec<&Conflict> =
        conflicts.iter().filter(|c| c.folder.name == folder.name && c.copy == rel).collect();
    if matching.is_empty() {
        matching = conflicts.iter().filter(|c| c.folder.name == folder.name && c.original == rel).collect();
    }
    let c = match matching.as_slice() {
        [] => bail!("{} is not a conflict copy, nor a file that has one; see `filesync conflicts`", path.display()),
        [c] => *c,
        many => bail!(
            "{} has {} conflict copies; name the copy to resolve:\n  {}",
            path.display(),
            many.len(),
            many.iter().map(|c| c.copy.as_str()).collect::<Vec<_>>().join("\n  ")
        ),
    };
    let me = config.device_name.clone().unwrap_or_default();
    let keep_copy = match keep {
        Keep::Copy => Some(true),
        Keep::Original => Some(false),
        Keep::Both => None,
        Keep::Mine | Keep::Theirs => {
            let copy_is_mine = if c.copy_device == me {
                true
            } else if c.original_entry.as_ref().is_some_and(|e| e.device_name == me) {
                false
            } else {
                bail!(
                    "neither version of {} was made on this computer ({me}); use --keep copy (the version from {}) \
                     or --keep original",
                    c.original,
                    c.copy_device
                );
            };
            Some(copy_is_mine == (keep == Keep::Mine))
        }
    };
    let root = &folder.path;
    let copy_path = root.join(c.copy.as_str());
    if !copy_path.exists() {
        bail!("the conflict copy {} is not on this computer yet; run `filesync sync` first", c.copy);
    }
    let original_path = root.join(c.original.as_str());
    match keep_copy {
        Some(true) => {
            std::fs::rename(&copy_path, &original_path)
                .with_context(|| format!("replacing {} by its conflict copy", original_path.display()))?;
            println!("Kept the version from {} as {}.", c.copy_device, c.original);
        }
        Some(false) => {
            std::fs::remove_file(&copy_path).with_context(|| format!("removing {}", copy_path.display()))?;
            println!("Kept {}; removed the conflict copy (it stays in the server's history).", c.original);
        }
        None => {
            let to = both_name(c, root)?;
            std::fs::rename(&copy_path, root.join(to.as_str()))
                .with_context(|| format!("renaming {}", copy_path.display()))?;
            println!("Kept both: the version from {} is now {}.", c.copy_device, to);
        }
    }
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
