//! Conflict copies: find them (with both versions' device and time) and resolve one by keeping
//! mine, theirs, or both. Resolving is a local file operation (delete the copy, move it over
//! the original, or give it a plain name) that then syncs like any change.

use super::OpsError;
use crate::config::{Config, FolderConfig, Home};
use crate::state::StateDb;
use filesync_core::conflict::{CONFLICT_MARKER, parse_conflict_copy};
use filesync_core::path::TEMP_PREFIX;
use filesync_core::{EntryState, RelPath};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Which version to keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    /// This computer's version.
    Mine,
    /// The other computer's version.
    Theirs,
    /// Both: the copy gets a plain name.
    Both,
    /// The version in the conflict copy.
    Copy,
    /// The version under the original name.
    Original,
}

impl std::str::FromStr for Keep {
    type Err = OpsError;
    fn from_str(s: &str) -> Result<Keep, OpsError> {
        Ok(match s {
            "mine" => Keep::Mine,
            "theirs" => Keep::Theirs,
            "both" => Keep::Both,
            "copy" => Keep::Copy,
            "original" => Keep::Original,
            _ => return Err(OpsError::invalid("keep", "keep one of: mine, theirs, both, copy, original")),
        })
    }
}

/// One conflict copy and the file it is a copy of.
#[derive(Clone, Debug)]
pub struct Conflict {
    pub folder: FolderConfig,
    pub copy: RelPath,
    pub original: RelPath,
    /// The device whose version the copy holds, and when the conflict happened.
    pub copy_device: String,
    pub copy_when: String,
    pub copy_size: Option<u64>,
    /// The original's current version on the server, if known.
    pub original_entry: Option<EntryState>,
    pub original_size: Option<u64>,
    /// The copy is on this computer (it can be resolved here).
    pub copy_here: bool,
}

/// Which side of a conflict was made on this computer.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Copy,
    Original,
}

/// A conflict as `filesync conflicts --json` prints it and `GET /api/conflicts` sends it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ConflictView {
    pub folder: String,
    /// The conflict copy's path in the folder: its real name.
    pub copy: String,
    pub original: String,
    /// The device whose version the copy holds, and when the conflict happened (as the copy's
    /// name says, UTC).
    pub copy_device: String,
    pub copy_time: String,
    pub copy_size: Option<u64>,
    /// The copy is on this computer (it can be resolved here).
    pub copy_here: bool,
    /// The device that made the original's current version, and when (Unix seconds).
    pub original_device: Option<String>,
    pub original_time: Option<i64>,
    pub original_size: Option<u64>,
    /// Which version was made on this computer, if either: what "keep mine" keeps.
    pub mine: Option<Side>,
}

impl Conflict {
    /// The view of this conflict from the computer named `me`.
    pub fn view(&self, me: &str) -> ConflictView {
        let original_device = self.original_entry.as_ref().map(|e| e.device_name.clone());
        let mine = if self.copy_device == me {
            Some(Side::Copy)
        } else if original_device.as_deref() == Some(me) {
            Some(Side::Original)
        } else {
            None
        };
        ConflictView {
            folder: self.folder.name.clone(),
            copy: self.copy.as_str().to_string(),
            original: self.original.as_str().to_string(),
            copy_device: self.copy_device.clone(),
            copy_time: self.copy_when.clone(),
            copy_size: self.copy_size,
            copy_here: self.copy_here,
            original_device,
            original_time: self.original_entry.as_ref().map(|e| e.committed_at),
            original_size: self.original_size,
            mine,
        }
    }
}

/// Every conflict copy in the linked folders, as this computer sees them.
pub async fn list(home: &Home, config: &Config) -> Result<Vec<ConflictView>, OpsError> {
    let me = config.device_name.clone().unwrap_or_default();
    Ok(find(home, config).await?.iter().map(|c| c.view(&me)).collect())
}

fn walk(root: &Path, out: &mut Vec<RelPath>) {
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

/// Every conflict copy in the linked folders, on disk or known from the server.
pub async fn find(home: &Home, config: &Config) -> Result<Vec<Conflict>, OpsError> {
    let db = StateDb::open(&home.state_path()).await?;
    let mut out = Vec::new();
    for f in &config.folders {
        let remote: HashMap<RelPath, EntryState> = db.remote_all(&f.name).await?;
        let bases = db.bases(&f.name).await?;
        let mut copies: BTreeMap<RelPath, ()> = BTreeMap::new();
        let mut local = Vec::new();
        walk(&f.path, &mut local);
        copies.extend(local.into_iter().map(|p| (p, ())));
        copies.extend(
            remote
                .iter()
                .filter(|(p, e)| e.meta.is_some() && parse_conflict_copy(p).is_some())
                .map(|(p, _)| (p.clone(), ())),
        );
        for copy in copies.into_keys() {
            let Some(info) = parse_conflict_copy(&copy) else { continue };
            let size_here = |p: &RelPath| std::fs::metadata(f.path.join(p.as_str())).ok().map(|m| m.len());
            if size_here(&copy).is_none() && bases.contains_key(&copy) {
                // Synced here once and gone from the disk since: resolved, and the deletion is
                // on its way to the server.
                continue;
            }
            let remote_size = |p: &RelPath| remote.get(p).and_then(|e| e.meta.as_ref()).map(|m| m.size);
            out.push(Conflict {
                folder: f.clone(),
                copy_here: size_here(&copy).is_some(),
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

/// A plain (non-conflict) name for the copy when both versions are kept.
fn both_name(c: &Conflict, root: &Path) -> Result<RelPath, OpsError> {
    let name = c.original.file_name();
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i..]),
        _ => (name, ""),
    };
    for n in 1..1000 {
        let counter = if n == 1 { String::new() } else { format!(" {n}") };
        let candidate = c
            .original
            .with_file_name(&format!("{stem} ({}'s version{counter}){ext}", c.copy_device))
            .map_err(|e| OpsError::Refused(format!("no plain name for the copy of {}: {e}", c.original)))?;
        if !root.join(candidate.as_str()).exists() {
            return Ok(candidate);
        }
    }
    Err(OpsError::Refused(format!("no free name to keep both versions of {}", c.original)))
}

/// What resolving did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolved {
    /// The copy's version now has the original name.
    KeptCopy { device: String, original: RelPath },
    /// The copy was removed (it stays in the server's history).
    KeptOriginal { original: RelPath },
    /// The copy was renamed to a plain name.
    KeptBoth { device: String, renamed_to: RelPath },
}

impl std::fmt::Display for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Resolved::KeptCopy { device, original } => write!(f, "Kept the version from {device} as {original}."),
            Resolved::KeptOriginal { original } => {
                write!(f, "Kept {original}; removed the conflict copy (it stays in the server's history).")
            }
            Resolved::KeptBoth { device, renamed_to } => {
                write!(f, "Kept both: the version from {device} is now {renamed_to}.")
            }
        }
    }
}

/// Picks the conflict `rel` names in `folder`: the copy itself, or the original when it has
/// exactly one copy.
pub fn pick<'a>(conflicts: &'a [Conflict], folder: &str, rel: &RelPath) -> Result<&'a Conflict, OpsError> {
    let mut matching: Vec<&Conflict> = conflicts.iter().filter(|c| c.folder.name == folder && c.copy == *rel).collect();
    if matching.is_empty() {
        matching = conflicts.iter().filter(|c| c.folder.name == folder && c.original == *rel).collect();
    }
    match matching.as_slice() {
        [] => Err(OpsError::NotFound(format!(
            "{rel} is not a conflict copy, nor a file that has one; see `filesync conflicts`"
        ))),
        [c] => Ok(c),
        many => Err(OpsError::Refused(format!(
            "{rel} has {} conflict copies; name the copy to resolve:\n  {}",
            many.len(),
            many.iter().map(|c| c.copy.as_str()).collect::<Vec<_>>().join("\n  ")
        ))),
    }
}

/// Resolves one conflict on disk; the caller then syncs the folder (see [`super::sync_now`]).
pub fn resolve(config: &Config, c: &Conflict, keep: Keep) -> Result<Resolved, OpsError> {
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
                return Err(OpsError::Refused(format!(
                    "neither version of {} was made on this computer ({me}); keep the copy (the version from {}) \
                     or the original (`--keep copy` / `--keep original`)",
                    c.original, c.copy_device
                )));
            };
            Some(copy_is_mine == (keep == Keep::Mine))
        }
    };
    let root = &c.folder.path;
    let copy_path = root.join(c.copy.as_str());
    if !copy_path.exists() {
        return Err(OpsError::Refused(format!(
            "the conflict copy {} is not on this computer yet; wait for the sync to bring it (or run `filesync sync`)",
            c.copy
        )));
    }
    let original_path = root.join(c.original.as_str());
    let io = |what: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| OpsError::Io { what, path, source }
    };
    Ok(match keep_copy {
        Some(true) => {
            std::fs::rename(&copy_path, &original_path)
                .map_err(io("cannot replace by its conflict copy:", &original_path))?;
            Resolved::KeptCopy { device: c.copy_device.clone(), original: c.original.clone() }
        }
        Some(false) => {
            std::fs::remove_file(&copy_path).map_err(io("cannot remove", &copy_path))?;
            Resolved::KeptOriginal { original: c.original.clone() }
        }
        None => {
            let to = both_name(c, root)?;
            std::fs::rename(&copy_path, root.join(to.as_str())).map_err(io("cannot rename", &copy_path))?;
            Resolved::KeptBoth { device: c.copy_device.clone(), renamed_to: to }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conflict(original_by: Option<&str>) -> Conflict {
        Conflict {
            folder: FolderConfig::new("Docs", "/docs"),
            copy: RelPath::new("a (conflicted copy from desktop 2026-11-24 235206).txt").unwrap(),
            original: RelPath::new("a.txt").unwrap(),
            copy_device: "desktop".into(),
            copy_when: "2026-11-24 23:52:06 UTC".into(),
            copy_size: Some(16),
            // A current entry is known (`meta` only matters to `find`, which keeps live ones).
            original_entry: original_by.map(|d| EntryState {
                path: RelPath::new("a.txt").unwrap(),
                rev: 7,
                meta: None,
                device_id: 1,
                device_name: d.into(),
                committed_at: 1_795_561_926,
            }),
            original_size: Some(15),
            copy_here: true,
        }
    }

    #[test]
    fn the_view_says_which_version_was_made_here() {
        let c = conflict(Some("laptop"));
        assert_eq!(c.view("desktop").mine, Some(Side::Copy));
        assert_eq!(c.view("laptop").mine, Some(Side::Original));
        assert_eq!(c.view("phone").mine, None);
        let v = c.view("laptop");
        assert_eq!((v.original_device.as_deref(), v.original_time), (Some("laptop"), Some(1_795_561_926)));
        assert_eq!(serde_json::to_value(&v).unwrap()["mine"], "original");
        let unknown = conflict(None).view("laptop");
        assert_eq!((unknown.original_device, unknown.original_time, unknown.mine), (None, None, None));
    }
}
