//! Per-folder settings from the command line: `folder set`, `folder show`, `pause`,
//! `resume`, `folder confirm-deletes` and `folder revert`. Settings live in `config.toml`; a
//! running agent picks a change up within seconds. The one-off requests (confirm deletions,
//! revert) go through the state database, where the agent looks for them.

use anyhow::{Context, Result, bail};
use filesync_agent::agent::{self, HomeLock, StatusBoard};
use filesync_agent::config::{
    Config, Direction, FolderConfig, FolderSettings, Home, Schedule, format_rate, parse_rate,
};
use filesync_agent::engine::Engine;
use filesync_agent::engine::policy::{self, PlanSummary};
use filesync_agent::fs::RealFs;
use filesync_agent::state::StateDb;
use filesync_agent::status::Progress;
use filesync_core::RelPath;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The keys `filesync folder set` knows, with what each takes (shown on a wrong key).
pub const KEYS: &[(&str, &str)] = &[
    ("direction", "two-way | upload-only | download-only"),
    ("schedule", "continuous | hourly | daily | every 90s | every 5m | every 2h"),
    ("rescan", "seconds between full rescans in continuous mode: 60, 90s, 5m"),
    ("exclude", "a subfolder not to sync to this computer: photos/2019"),
    ("include", "an excluded subfolder to sync again"),
    ("upload-limit", "bytes per second: 512k, 2M, unlimited"),
    ("download-limit", "bytes per second: 512k, 2M, unlimited"),
    ("guard-percent", "0-100: the mass-delete guard trips above this share of the files…"),
    ("guard-min-files", "…and above this many files"),
];

fn find<'a>(config: &'a mut Config, name: &str) -> Result<&'a mut FolderConfig> {
    let as_path = std::fs::canonicalize(name).ok();
    match config.folders.iter().position(|f| f.name == name || Some(&f.path) == as_path.as_ref()) {
        Some(i) => Ok(&mut config.folders[i]),
        None => bail!("no linked folder is named or located at {name:?}; see `filesync folder list`"),
    }
}

/// What the running agent does with a saved change, for the confirmation line.
fn applies(home: &Home) -> &'static str {
    if HomeLock::is_held(home) {
        "the running agent applies it within a few seconds"
    } else {
        "it applies from the next sync"
    }
}

/// Applies one `KEY VALUE` to `s`; returns what changed, for people.
pub fn apply(s: &mut FolderSettings, key: &str, value: &str) -> Result<String> {
    let v = value.trim();
    Ok(match key {
        "direction" => {
            s.direction = v.parse::<Direction>().map_err(anyhow::Error::msg)?;
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
            let sched = Schedule::parse(v).map_err(anyhow::Error::msg)?;
            s.schedule = sched.to_string();
            format!("schedule: {sched}")
        }
        "rescan" => {
            let secs = match v.parse::<u64>() {
                Ok(n) => n,
                Err(_) => match Schedule::parse(&format!("every {v}")) {
                    Ok(Schedule::Every(d)) => d.as_secs(),
                    _ => bail!("{value:?} is not an interval; use seconds (60) or 90s, 5m, 1h"),
                },
            };
            if !(10..=86_400).contains(&secs) {
                bail!("the rescan interval must be between 10 seconds and 1 day");
            }
            s.rescan_secs = secs;
            format!("rescan: every {secs} s")
        }
        "exclude" | "include" => {
            let p = RelPath::new(v.trim_matches('/')).map_err(|e| {
                anyhow::anyhow!(
                    "{value:?} is not a subfolder path inside the folder ({e}); use a path like photos/2019"
                )
            })?;
            let had = s.excluded.iter().any(|e| e.trim_matches('/') == p.as_str());
            if key == "exclude" {
                if p.as_str() == filesync_agent::filter::IGNORE_FILE {
                    bail!("{} cannot be excluded; it holds the folder's ignore rules", p);
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
                    bail!("{p} is not excluded (excluded: {})", list_or_none(&s.excluded));
                }
                s.excluded.retain(|e| e.trim_matches('/') != p.as_str());
                format!("included {p} again: it is downloaded on the next sync")
            }
        }
        "upload-limit" | "download-limit" => {
            let rate = parse_rate(v).map_err(anyhow::Error::msg)?;
            let what = if key == "upload-limit" { &mut s.upload_limit } else { &mut s.download_limit };
            *what = rate;
            format!("{key}: {}", format_rate(rate) + if rate.is_some() { "/s" } else { "" })
        }
        "guard-percent" => {
            let n: u32 = v.parse().ok().filter(|n| *n <= 100).with_context(|| {
                format!("{value:?} is not a percentage; use a whole number from 0 to 100 (default 50)")
            })?;
            s.guard_percent = n;
            format!(
                "guard-percent: a pass deleting more than {n}% of the files (and more than {}) pauses",
                s.guard_min_files
            )
        }
        "guard-min-files" => {
            let n: u64 =
                v.parse().with_context(|| format!("{value:?} is not a number of files; use e.g. 100 (the default)"))?;
            s.guard_min_files = n;
            format!("guard-min-files: a pass deleting more than {n} files (and more than {}%) pauses", s.guard_percent)
        }
        _ => {
            let keys: Vec<String> = KEYS.iter().map(|(k, v)| format!("  {k:<16} {v}")).collect();
            bail!("unknown setting {key:?}; the settings are:\n{}", keys.join("\n"))
        }
    })
}

fn list_or_none(v: &[String]) -> String {
    if v.is_empty() { "none".into() } else { v.join(", ") }
}

/// `filesync folder set NAME KEY VALUE`.
pub fn set(home: &Home, name: &str, key: &str, value: &str) -> Result<ExitCode> {
    let mut config = home.load()?;
    let f = find(&mut config, name)?;
    let msg = apply(&mut f.settings, key, value)?;
    let folder = f.name.clone();
    home.save(&config)?;
    println!("{folder}: {msg}; {}.", applies(home));
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
        Some(policy::Paused::by_user(&f.name, false).reason)
    } else if all_paused {
        Some(policy::Paused::by_user(&f.name, true).reason)
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
pub fn pause(home: &Home, name: Option<String>, pause: bool) -> Result<ExitCode> {
    let mut config = home.load()?;
    let verb = if pause { "Paused" } else { "Resumed" };
    match name {
        None => {
            config.paused = pause;
            if !pause {
                for f in &mut config.folders {
                    f.settings.paused = false;
                }
            }
            home.save(&config)?;
            println!("{verb} every folder; {}.", applies(home));
            if pause {
                println!("`filesync resume` resumes them.");
            }
        }
        Some(n) => {
            let global = config.paused;
            let f = find(&mut config, &n)?;
            f.settings.paused = pause;
            let folder = f.name.clone();
            home.save(&config)?;
            println!("{verb} {folder}; {}.", applies(home));
            if pause {
                println!("`filesync resume {folder}` resumes it.");
            } else if global {
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
    let db = StateDb::open(&home.state_path()).await?;
    let Some(reason) = policy::tripped(&db, &f.name).await? else {
        println!("The mass-delete guard holds nothing back in {}; there is nothing to confirm.", f.name);
        return Ok(ExitCode::SUCCESS);
    };
    if !f.path.is_dir() {
        bail!(
            "{} is missing, so there is nothing to confirm: {reason}. Restore the folder, or unlink it with \
             `filesync folder remove {}` (the files stay on the server)",
            f.path.display(),
            f.name
        );
    }
    policy::request_confirm_deletes(&db, &f.name).await?;
    if !HomeLock::is_held(home) {
        println!(
            "Confirmed: the next sync of {} propagates the deletions (run `filesync sync`, or start the agent). \
             The server keeps the deleted versions in its history.",
            f.name
        );
        return Ok(ExitCode::SUCCESS);
    }
    wait_for_agent(&db, &f.name).await?;
    println!("Confirmed: the deletions in {} were propagated; the folder syncs again.", f.name);
    Ok(ExitCode::SUCCESS)
}

/// Waits until the running agent has carried out the requests of `name`.
async fn wait_for_agent(db: &StateDb, name: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    while policy::request_pending(db, name).await? {
        if Instant::now() > deadline {
            bail!("the agent has not carried it out after 5 minutes; see `filesync status` (it will still do it)");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// `filesync folder revert NAME [--yes]`.
pub async fn revert(home: &Home, name: &str, yes: bool) -> Result<ExitCode> {
    let mut config = home.load()?;
    let f = find(&mut config, name)?.clone();
    let (what, question) = match f.settings.direction {
        Direction::TwoWay => bail!(
            "{} syncs both ways, so there is nothing to revert; revert applies to a one-way folder \
             (`filesync folder set {} direction upload-only` or `download-only`)",
            f.name,
            f.name
        ),
        Direction::UploadOnly => ("revert remote", "make the server equal to this computer"),
        Direction::DownloadOnly => ("revert local", "make this computer equal to the server"),
    };
    if f.settings.paused || config.paused {
        bail!("{} is paused; `filesync resume {}` first", f.name, f.name);
    }
    let agent_running = HomeLock::is_held(home);
    let _lock = if agent_running { None } else { Some(HomeLock::acquire(home)?) };
    let conn = agent::connect(home, &config).await?;
    let db = StateDb::open(&home.state_path()).await?;
    let engine = Engine::new(conn, db.clone(), config.device_name.clone().unwrap_or_default());
    if !agent_running {
        engine.pull(&f.name).await?;
    }
    let fs = Arc::new(RealFs::new(f.path.clone()));
    let preview = engine.preview(&f, fs.clone(), true).await?;
    let changes = describe(f.settings.direction, &preview);
    if changes.is_empty() {
        println!("{} already matches; nothing to {what}.", f.name);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{}: {what} will {question}:", f.name);
    for line in &changes {
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
    policy::request_revert(&db, &f.name).await?;
    if agent_running {
        wait_for_agent(&db, &f.name).await?;
        println!("Done: the agent carried out the {what} of {}.", f.name);
        return Ok(ExitCode::SUCCESS);
    }
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

/// The lines of a revert's confirmation question.
fn describe(direction: Direction, p: &PlanSummary) -> Vec<String> {
    let mut lines = Vec::new();
    let mut add = |n: u64, text: &str| {
        if n > 0 {
            lines.push(format!("{n} {text}"));
        }
    };
    match direction {
        Direction::UploadOnly => {
            add(p.uploads, "file(s) or folder(s) uploaded over the server's version");
            add(p.deletes_remote, "file(s) or folder(s) deleted on the server (its history keeps them)");
        }
        _ => {
            add(p.downloads_replacing, "local file(s) replaced by the server's version (your edits are lost)");
            add(p.deletes_local, "local-only file(s) or folder(s) removed from this computer");
            add(p.downloads_new, "file(s) or folder(s) restored from the server");
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
