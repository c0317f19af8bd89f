//! Per-folder settings as actions: change one (`KEY VALUE`, the same keys as `filesync folder
//! set`), pause and resume, edit the folder's ignore rules with a preview of what they leave
//! out, and list the subfolders selective sync can exclude. Settings live in `config.toml`; a
//! running agent picks a change up within seconds.

use super::OpsError;
use crate::config::{Config, Direction, FolderConfig, FolderSettings, Home, Schedule, format_rate, parse_rate};
use crate::engine::policy;
use crate::filter::{IGNORE_FILE, IgnoreRules};
use crate::fs::{Filesystem, RealFs};
use crate::state::StateDb;
use filesync_core::{EntryKind, RelPath};
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::PathBuf;

/// The keys a setting can be changed by, with what each takes (shown on a wrong key).
pub const KEYS: &[(&str, &str)] = &[
    ("direction", "two-way | upload-only | download-only"),
    ("schedule", "continuous | hourly | daily | every 90s | every 5m | every 2h"),
    ("rescan", "seconds between full rescans in continuous mode: 3600, 90s, 5m, 1h"),
    ("exclude", "a subfolder not to sync to this computer: photos/2019"),
    ("include", "an excluded subfolder to sync again"),
    ("upload-limit", "bytes per second: 512k, 2M, unlimited"),
    ("download-limit", "bytes per second: 512k, 2M, unlimited"),
    ("guard-percent", "0-100: the mass-delete guard trips above this share of the files…"),
    ("guard-min-files", "…and above this many files"),
];

/// The index of the linked folder named `name` (or located at that path).
pub fn find(config: &Config, name: &str) -> Result<usize, OpsError> {
    let as_path = std::fs::canonicalize(name).ok();
    config.folders.iter().position(|f| f.name == name || Some(&f.path) == as_path.as_ref()).ok_or_else(|| {
        OpsError::NotFound(format!("no linked folder is named or located at {name:?}; see `filesync folder list`"))
    })
}

fn list_or_none(v: &[String]) -> String {
    if v.is_empty() { "none".into() } else { v.join(", ") }
}

/// Applies one `KEY VALUE` to `s`; returns what changed, for people. A wrong value is an
/// [`OpsError::Invalid`] whose `field` is the key.
pub fn apply(s: &mut FolderSettings, key: &str, value: &str) -> Result<String, OpsError> {
    let field = KEYS.iter().map(|(k, _)| *k).find(|k| *k == key).unwrap_or("key");
    let bad = |m: String| OpsError::invalid(field, m);
    let v = value.trim();
    Ok(match key {
        "direction" => {
            s.direction = v.parse::<Direction>().map_err(bad)?;
            match s.direction {
                Direction::TwoWay => "direction: two-way (changes flow both ways)".into(),
                Direction::UploadOnly => "direction: upload-only (remote changes are not applied here; \
                                          `filesync folder revert` makes the server match this computer)"
                    .into(),
                Direction::DownloadOnly => "direction: download-only (local changes are not uploaded; \
                                            `filesync folder revert` makes this computer match the server)"
                    .into(),
            }
        }
        "schedule" => {
            let sched = Schedule::parse(v).map_err(bad)?;
            s.schedule = sched.to_string();
            format!("schedule: {sched}")
        }
        "rescan" => {
            let secs = match v.parse::<u64>() {
                Ok(n) => n,
                Err(_) => match Schedule::parse(&format!("every {v}")) {
                    Ok(Schedule::Every(d)) => d.as_secs(),
                    _ => return Err(bad(format!("{value:?} is not an interval; use seconds (60) or 90s, 5m, 1h"))),
                },
            };
            if !(10..=86_400).contains(&secs) {
                return Err(bad("the rescan interval must be between 10 seconds and 1 day".into()));
            }
            s.rescan_secs = secs;
            format!("rescan: every {secs} s")
        }
        "exclude" | "include" => {
            let p = RelPath::new(v.trim_matches('/')).map_err(|e| {
                bad(format!("{value:?} is not a subfolder path inside the folder ({e}); use a path like photos/2019"))
            })?;
            let had = s.excluded.iter().any(|e| e.trim_matches('/') == p.as_str());
            if key == "exclude" {
                if p.as_str() == IGNORE_FILE {
                    return Err(bad(format!("{p} cannot be excluded; it holds the folder's ignore rules")));
                }
                if had {
                    return Ok(format!("{p} is already excluded"));
                }
                s.excluded.push(p.to_string());
                s.excluded.sort();
                format!(
                    "excluded {p}: it is no longer synced to this computer; its local copy is removed once every file \
                     in it is safely on the server (the server and other computers keep it)"
                )
            } else {
                if !had {
                    return Err(bad(format!("{p} is not excluded (excluded: {})", list_or_none(&s.excluded))));
                }
                s.excluded.retain(|e| e.trim_matches('/') != p.as_str());
                format!("included {p} again: it is downloaded on the next sync")
            }
        }
        "upload-limit" | "download-limit" => {
            let rate = parse_rate(v).map_err(bad)?;
            let what = if key == "upload-limit" { &mut s.upload_limit } else { &mut s.download_limit };
            *what = rate;
            format!("{key}: {}", format_rate(rate) + if rate.is_some() { "/s" } else { "" })
        }
        "guard-percent" => {
            let n: u32 = v.parse().ok().filter(|n| *n <= 100).ok_or_else(|| {
                bad(format!("{value:?} is not a percentage; use a whole number from 0 to 100 (default 50)"))
            })?;
            s.guard_percent = n;
            format!(
                "guard-percent: a pass deleting more than {n}% of the files (and more than {}) pauses",
                s.guard_min_files
            )
        }
        "guard-min-files" => {
            let n: u64 = v
                .parse()
                .map_err(|_| bad(format!("{value:?} is not a number of files; use e.g. 100 (the default)")))?;
            s.guard_min_files = n;
            format!("guard-min-files: a pass deleting more than {n} files (and more than {}%) pauses", s.guard_percent)
        }
        _ => {
            let keys: Vec<String> = KEYS.iter().map(|(k, v)| format!("  {k:<16} {v}")).collect();
            return Err(bad(format!("unknown setting {key:?}; the settings are:\n{}", keys.join("\n"))));
        }
    })
}

/// Applies `changes` (`KEY`, `VALUE`) in order to the folder `name` and saves them all, or
/// none when one is wrong. Returns the folder as saved and what changed.
pub fn set(home: &Home, name: &str, changes: &[(String, String)]) -> Result<(FolderConfig, Vec<String>), OpsError> {
    let mut config = home.load()?;
    let i = find(&config, name)?;
    let mut said = Vec::new();
    for (k, v) in changes {
        said.push(apply(&mut config.folders[i].settings, k, v)?);
    }
    home.save(&config)?;
    Ok((config.folders[i].clone(), said))
}

/// One folder's settings on this computer, and whether it is paused and why: what `filesync
/// folder show --json` prints.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct FolderSettingsView {
    pub name: String,
    pub path: PathBuf,
    pub settings: FolderSettings,
    pub paused: bool,
    /// Why: paused by the person (this folder or every folder), or by the mass-delete guard.
    pub paused_reason: Option<String>,
    /// The mass-delete guard holds deletions back until they are confirmed.
    pub guard_tripped: bool,
    /// The folder has its own ignore rules (`.filesyncignore`) beside the built-in ones.
    pub ignore_file: bool,
}

/// The settings of the folder `name`, and whether it is paused and why.
pub async fn show(home: &Home, name: &str) -> Result<FolderSettingsView, OpsError> {
    let config = home.load()?;
    let f = &config.folders[find(&config, name)?];
    // A home that never synced has no state database to say the guard tripped.
    let tripped = match StateDb::open(&home.state_path()).await {
        Ok(db) => policy::tripped(&db, &f.name).await?,
        Err(_) => None,
    };
    let paused_reason = if f.settings.paused {
        Some(policy::Paused::by_user(false).reason)
    } else if config.paused {
        Some(policy::Paused::by_user(true).reason)
    } else {
        tripped.clone()
    };
    Ok(FolderSettingsView {
        name: f.name.clone(),
        path: f.path.clone(),
        settings: f.settings.clone(),
        paused: paused_reason.is_some(),
        paused_reason,
        guard_tripped: tripped.is_some(),
        ignore_file: f.path.join(IGNORE_FILE).exists(),
    })
}

/// What [`pause`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PauseChange {
    /// The folder, or `None` for every folder.
    pub folder: Option<String>,
    /// A folder resumed while every folder is still paused.
    pub all_still_paused: bool,
}

/// Pauses (or resumes) one folder, or every folder when `name` is `None`.
pub fn pause(home: &Home, name: Option<&str>, pause: bool) -> Result<PauseChange, OpsError> {
    let mut config = home.load()?;
    match name {
        None => {
            config.paused = pause;
            if !pause {
                for f in &mut config.folders {
                    f.settings.paused = false;
                }
            }
            home.save(&config)?;
            Ok(PauseChange { folder: None, all_still_paused: false })
        }
        Some(n) => {
            let i = find(&config, n)?;
            config.folders[i].settings.paused = pause;
            home.save(&config)?;
            Ok(PauseChange { folder: Some(config.folders[i].name.clone()), all_still_paused: !pause && config.paused })
        }
    }
}

/// Lets the next pass of folder `name` propagate the deletions the mass-delete guard held
/// back. Returns the guard's reason, or `None` when it holds nothing back. A running agent
/// carries the request out within seconds ([`policy::request_pending`] turns false).
pub async fn confirm_deletes(home: &Home, name: &str) -> Result<Option<String>, OpsError> {
    let config = home.load()?;
    let f = &config.folders[find(&config, name)?];
    let db = StateDb::open(&home.state_path()).await?;
    let Some(reason) = policy::tripped(&db, &f.name).await? else { return Ok(None) };
    if !f.path.is_dir() {
        return Err(OpsError::Refused(format!(
            "{} is missing, so there is nothing to confirm: {reason}. Restore the folder, or unlink it with \
             `filesync folder remove {}` (the files stay on the server)",
            f.path.display(),
            f.name
        )));
    }
    policy::request_confirm_deletes(&db, &f.name).await?;
    Ok(Some(reason))
}

/// The folder's `.filesyncignore`, or an empty text when it has none.
pub fn ignore_rules(folder: &FolderConfig) -> Result<String, OpsError> {
    let path = folder.path.join(IGNORE_FILE);
    match std::fs::read_to_string(&path) {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(OpsError::Io { what: "cannot read", path, source }),
    }
}

/// Writes the folder's `.filesyncignore` (it syncs to the other computers like any file).
pub fn save_ignore_rules(folder: &FolderConfig, text: &str) -> Result<(), OpsError> {
    let path = folder.path.join(IGNORE_FILE);
    let mut text = text.replace("\r\n", "\n");
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    crate::config::write_atomic(&path, text.as_bytes(), false).map_err(OpsError::from)
}

/// Paths of the folder (on disk here or on the server) that `rules` would leave out, sorted,
/// at most `limit`; a directory counts once, not its contents.
pub async fn ignore_preview(
    home: &Home,
    folder: &FolderConfig,
    rules: &str,
    limit: usize,
) -> Result<Vec<(String, bool)>, OpsError> {
    // As the engine reads them on this folder's disk: without case where the disk ignores it.
    let case_insensitive = RealFs::new(folder.path.clone()).case_insensitive();
    let rules = IgnoreRules::parse_for(rules, case_insensitive);
    let mut all: BTreeSet<(String, bool)> = BTreeSet::new();
    let db = StateDb::open(&home.state_path()).await?;
    for (p, e) in db.remote_all(&folder.name).await? {
        if let Some(m) = &e.meta {
            all.insert((p.as_str().to_string(), m.kind == EntryKind::Dir));
        }
    }
    let root = folder.path.clone();
    let local = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(d) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else { continue };
            for e in rd.flatten() {
                let p = e.path();
                let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
                if let Ok(rel) = p.strip_prefix(&root) {
                    out.push((rel.to_string_lossy().replace('\\', "/"), is_dir));
                }
                if is_dir && out.len() < 100_000 {
                    stack.push(p);
                }
            }
        }
        out
    })
    .await
    .map_err(|e| OpsError::Refused(format!("the preview failed: {e}")))?;
    all.extend(local);
    let mut hidden_dirs: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for (p, is_dir) in all {
        if hidden_dirs.iter().any(|d| p.starts_with(&format!("{d}/"))) {
            continue;
        }
        let Ok(rp) = RelPath::new(&p) else { continue };
        if rules.is_ignored(&rp, is_dir) {
            if is_dir {
                hidden_dirs.push(p.clone());
            }
            out.push((p, is_dir));
            if out.len() >= limit {
                break;
            }
        }
    }
    Ok(out)
}

/// The folder's subfolders on the server (from this computer's mirror) and on this disk, for
/// a selective-sync tree; at most `depth` levels deep, sorted.
pub async fn subfolders(home: &Home, folder: &FolderConfig, depth: usize) -> Result<Vec<String>, OpsError> {
    let db = StateDb::open(&home.state_path()).await?;
    let mut dirs: BTreeSet<String> = BTreeSet::new();
    let mut add = |p: &str| {
        let parts: Vec<&str> = p.split('/').collect();
        for n in 1..=parts.len().min(depth) {
            dirs.insert(parts[..n].join("/"));
        }
    };
    for (p, e) in db.remote_all(&folder.name).await? {
        match &e.meta {
            Some(m) if m.kind == EntryKind::Dir => add(p.as_str()),
            Some(_) => {
                if let Some((parent, _)) = p.as_str().rsplit_once('/') {
                    add(parent);
                }
            }
            None => {}
        }
    }
    for e in &folder.settings.excluded {
        add(e.trim_matches('/'));
    }
    Ok(dirs.into_iter().filter(|d| !d.split('/').any(|c| c.starts_with(".filesync-tmp"))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_names_the_field_of_a_wrong_value() {
        let mut s = FolderSettings::default();
        assert!(apply(&mut s, "direction", "upload-only").is_ok());
        assert_eq!(s.direction, Direction::UploadOnly);
        for (key, value) in [("schedule", "sometimes"), ("upload-limit", "fast"), ("guard-percent", "120")] {
            match apply(&mut s, key, value) {
                Err(OpsError::Invalid { field, .. }) => assert_eq!(field, key),
                other => panic!("{key}: {other:?}"),
            }
        }
        assert!(matches!(apply(&mut s, "colour", "blue"), Err(OpsError::Invalid { field: "key", .. })));
        apply(&mut s, "exclude", "photos/2019/").unwrap();
        assert_eq!(s.excluded, ["photos/2019"]);
        apply(&mut s, "include", "photos/2019").unwrap();
        assert!(s.excluded.is_empty());
    }

    #[test]
    fn every_key_validates_its_value_and_says_what_to_use() {
        let mut s = FolderSettings::default();
        apply(&mut s, "direction", "upload-only").unwrap();
        assert_eq!(s.direction, Direction::UploadOnly);
        assert!(apply(&mut s, "direction", "sideways").unwrap_err().to_string().contains("download-only"));
        apply(&mut s, "schedule", "every 300s").unwrap();
        assert_eq!(s.schedule, "every 5m");
        assert!(apply(&mut s, "schedule", "often").unwrap_err().to_string().contains("every 5m"));
        apply(&mut s, "rescan", "5m").unwrap();
        assert_eq!(s.rescan_secs, 300);
        apply(&mut s, "rescan", "90").unwrap();
        assert_eq!(s.rescan_secs, 90);
        assert!(apply(&mut s, "rescan", "1").is_err());
        apply(&mut s, "exclude", "photos/2019/").unwrap();
        apply(&mut s, "exclude", "music").unwrap();
        assert_eq!(s.excluded, ["music", "photos/2019"]);
        assert!(apply(&mut s, "exclude", "../etc").is_err());
        assert!(apply(&mut s, "include", "videos").unwrap_err().to_string().contains("not excluded"));
        apply(&mut s, "include", "music").unwrap();
        assert_eq!(s.excluded, ["photos/2019"]);
        apply(&mut s, "upload-limit", "512k").unwrap();
        assert_eq!(s.upload_limit, Some(512 * 1024));
        apply(&mut s, "download-limit", "2M").unwrap();
        assert_eq!(s.download_limit, Some(2 << 20));
        apply(&mut s, "upload-limit", "unlimited").unwrap();
        assert_eq!(s.upload_limit, None);
        assert!(apply(&mut s, "download-limit", "fast").is_err());
        apply(&mut s, "guard-percent", "80").unwrap();
        assert_eq!(s.guard_percent, 80);
        assert!(apply(&mut s, "guard-percent", "101").is_err());
        apply(&mut s, "guard-min-files", "20").unwrap();
        assert_eq!(s.guard_min_files, 20);
        let e = apply(&mut s, "colour", "blue").unwrap_err().to_string();
        assert!(e.contains("guard-min-files") && e.contains("upload-limit"), "{e}");
    }

    #[test]
    fn set_saves_all_changes_or_none() {
        let tmp = tempfile::tempdir().unwrap();
        let home = Home::new(tmp.path().join("home"));
        let mut c = Config::default();
        c.folders.push(FolderConfig::new("docs", tmp.path().join("docs")));
        home.save(&c).unwrap();
        let bad = [("schedule".to_string(), "every 5m".to_string()), ("rescan".into(), "1s".into())];
        assert!(matches!(set(&home, "docs", &bad), Err(OpsError::Invalid { field: "rescan", .. })));
        assert_eq!(home.load().unwrap().folders[0].settings.schedule, "continuous");
        let good = [("schedule".to_string(), "every 5m".to_string()), ("upload-limit".into(), "512k".into())];
        let (f, said) = set(&home, "docs", &good).unwrap();
        assert_eq!(said.len(), 2);
        assert_eq!(f.settings.upload_limit, Some(512 * 1024));
        assert_eq!(home.load().unwrap().folders[0].settings.schedule, "every 5m");
        let p = pause(&home, Some("docs"), true).unwrap();
        assert_eq!(p.folder.as_deref(), Some("docs"));
        assert!(home.load().unwrap().folders[0].settings.paused);
    }
}
