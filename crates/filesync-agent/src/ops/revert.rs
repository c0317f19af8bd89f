//! Revert a one-way folder: make the server equal to this computer (upload-only) or this
//! computer equal to the server (download-only). First a preview of what would change, for a
//! person to confirm; then the request, stored in the state database for the folder's next pass
//! (a running agent is told at once), and — for the CLI — seeing it carried out, by the agent or,
//! when none runs, by this process. The CLI (`filesync folder revert`) and the web UI (the
//! folder page's Revert) both go through here.

use super::{LocalSync, OpsError, Session, settings};
use crate::agent::HomeLock;
use crate::agent::control::ControlRequest;
use crate::config::{Direction, Home};
use crate::engine::PassReport;
use crate::engine::policy::{self, PlanSummary};
use crate::fs::RealFs;
use crate::status::Progress;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// What a revert would do.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct RevertPreview {
    pub folder: String,
    /// `revert local` (download-only: this computer becomes the server's copy) or `revert
    /// remote` (upload-only: the server becomes this computer's copy).
    pub what: &'static str,
    /// What it does, in words: "make this computer equal to the server".
    pub effect: &'static str,
    /// One line per kind of change, with its count; empty when the folder already matches.
    pub changes: Vec<String>,
}

/// The folder named `name` as a revert needs it: one-way and not paused.
fn revertible(home: &Home, name: &str) -> Result<(crate::config::FolderConfig, &'static str, &'static str), OpsError> {
    let config = home.load()?;
    let f = config.folders[settings::find(&config, name)?].clone();
    let (what, effect) = match f.settings.direction {
        Direction::TwoWay => {
            return Err(OpsError::Refused(format!(
                "{} syncs both ways, so there is nothing to revert; revert applies to an upload-only or download-only \
                 folder",
                f.name
            )));
        }
        Direction::UploadOnly => ("revert remote", "make the server equal to this computer"),
        Direction::DownloadOnly => ("revert local", "make this computer equal to the server"),
    };
    if f.settings.paused || config.paused {
        return Err(OpsError::Refused(format!("{} is paused; resume it first", f.name)));
    }
    Ok((f, what, effect))
}

/// Plans the revert of folder `name` without doing any of it.
pub async fn preview(home: &Home, name: &str) -> Result<RevertPreview, OpsError> {
    let (f, what, effect) = revertible(home, name)?;
    // Without a running agent this call pulls the server's journal itself, so it must be the
    // only one writing the state database.
    let agent_running = HomeLock::is_held(home);
    let _lock = if agent_running { None } else { Some(HomeLock::acquire(home)?) };
    let session = Session::open(home)?;
    let engine = session.engine().await?;
    if !agent_running {
        engine.pull(&f.name).await?;
    }
    let summary = engine.preview(&f, Arc::new(RealFs::new(f.path.clone())), true).await?;
    Ok(RevertPreview { folder: f.name.clone(), what, effect, changes: describe(f.settings.direction, &summary) })
}

/// Stores the request to revert folder `name` and tells a running agent, which carries it
/// out at once; without one, the next sync does. Returns whether an agent was told.
pub async fn request(home: &Home, name: &str) -> Result<bool, OpsError> {
    let (f, _, _) = revertible(home, name)?;
    let session = Session::open(home)?;
    policy::request_revert(session.db().await?, &f.name).await?;
    Ok(super::tell_agent(home, ControlRequest::Sync { folder: f.name.clone() }).await.unwrap_or(false))
}

/// How long [`carry_out`] waits for a running agent.
const AGENT_TIMEOUT: Duration = Duration::from_secs(300);

/// Who carried a revert out.
pub enum Reverted {
    /// The running agent.
    ByAgent,
    /// This process, as no agent runs for the home; what its sync did.
    Here(Box<PassReport>),
}

/// Stores the request to revert folder `name` and sees it carried out: by the running agent
/// (waiting until it has), or, when no agent runs, by a sync of this process.
pub async fn carry_out(home: &Home, name: &str) -> Result<Reverted, OpsError> {
    let (f, _, _) = revertible(home, name)?;
    let agent_told = request(home, &f.name).await?;
    if !agent_told && let Some(local) = LocalSync::start(home)? {
        let r = local.sync_folder(&f, &Progress::default()).await;
        local.finish()?;
        return Ok(Reverted::Here(Box::new(r?)));
    }
    super::agent_carries_out(home, &f.name, AGENT_TIMEOUT).await?;
    Ok(Reverted::ByAgent)
}

/// The lines of a revert's confirmation question.
pub fn describe(direction: Direction, p: &PlanSummary) -> Vec<String> {
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
    fn a_preview_names_only_what_the_direction_changes() {
        let p = PlanSummary {
            uploads: 2,
            deletes_remote: 1,
            downloads_replacing: 3,
            deletes_local: 4,
            ..Default::default()
        };
        assert_eq!(
            describe(Direction::UploadOnly, &p),
            [
                "2 file(s) or folder(s) uploaded over the server's version",
                "1 file(s) or folder(s) deleted on the server (its history keeps them)"
            ]
        );
        let down = describe(Direction::DownloadOnly, &p);
        assert_eq!(down.len(), 2, "{down:?}");
        assert!(down[0].starts_with("3 local file(s) replaced") && down[1].starts_with("4 local-only"), "{down:?}");
        assert!(describe(Direction::DownloadOnly, &PlanSummary::default()).is_empty());
    }
}
