//! What the dashboard shows, as JSON: the account, the connection, and per folder its state,
//! progress with transfer rate, and — when something is wrong — what to do about it. Built
//! from the configuration plus the agent's status; never contains the device token.
//!
//! One view, two readers: `GET /api/status` (and its live events) sends it, built from the
//! running agent's live status, and `filesync status --json` prints it, built by
//! [`StatusView::build`] from the `status.json` the agent writes.

use crate::AppState;
use crate::summary::{self, Kind, Summary, Tone};
use filesync_agent::config::{Config, FolderSettings, Home};
use filesync_agent::ops::plain::for_ui;
use filesync_agent::status::{
    AgentStatus, FolderState, FolderStatus, KeptSubfolder, ProgressSnapshot, SkippedItem, Traffic,
};
use serde::Serialize;

#[derive(Serialize)]
pub struct StatusView {
    /// An agent runs for this home (always, when the UI asks: the agent serves it).
    pub agent_running: bool,
    /// The agent runs and reports every folder in sync (see each folder's `waiting`).
    pub in_sync: bool,
    pub logged_in: bool,
    pub server: Option<String>,
    pub fingerprint: Option<String>,
    pub user: Option<String>,
    pub device_name: Option<String>,
    pub device_id: Option<u64>,
    /// Suggested name for this computer on the first-run screen.
    pub default_device_name: String,
    /// `online`, `offline`, `error`, `logged-out`, or `starting` (no report from the agent yet,
    /// or its first try to reach the server is under way); `stopped` when no agent runs (only
    /// `filesync status --json` can say so).
    pub connection: String,
    pub message: Option<String>,
    /// What to do about the connection, when it is not online.
    pub hint: Option<String>,
    pub updated_at: i64,
    /// Every folder is paused (`filesync pause` without a name).
    pub paused_all: bool,
    /// While not online: since when (Unix seconds), and when the agent tries again.
    pub offline_since: Option<i64>,
    pub next_retry_at: Option<i64>,
    pub folders: Vec<FolderView>,
    pub totals: Totals,
    /// The one line that sums up everything (see [`crate::summary`]).
    pub summary: Summary,
    /// The state in a few characters for the browser tab ("⟳ 45 %", "2 conflicts");
    /// `None` when nobody is logged in.
    pub title: Option<String>,
    /// Bytes moved since the agent started: on the wire, and of file contents.
    pub traffic: Traffic,
}

#[derive(Serialize, Default)]
pub struct Totals {
    pub folders: usize,
    pub files: u64,
    pub bytes: u64,
    pub conflicts: u64,
    pub pending: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct FolderView {
    pub name: String,
    pub path: String,
    /// `idle` (up to date), `syncing`, `paused`, `error`, `offline`, or `starting`. When no
    /// agent runs: what the last sync left (`idle`, `paused`, `error`), otherwise `stopped`.
    pub state: String,
    pub files: u64,
    pub bytes: u64,
    pub pending: u64,
    pub conflicts: u64,
    pub last_sync: Option<i64>,
    pub last_error: Option<String>,
    pub paused_reason: Option<String>,
    /// Paused by the mass-delete guard (not by a person): confirm the deletions, or restore.
    pub guard_tripped: bool,
    /// Files were not uploaded because the account is over its storage quota on the server.
    pub over_quota: bool,
    pub hint: Option<String>,
    pub skipped: Vec<SkippedItem>,
    /// Files that failed to sync, and why.
    pub errors: Vec<SkippedItem>,
    pub progress: Option<ProgressView>,
    pub settings: FolderSettings,
    /// Nothing is queued, running, due, behind the server, held back or failing; otherwise
    /// `waiting` says which.
    pub in_sync: bool,
    pub waiting: Vec<String>,
    /// The server revision this computer has pulled up to, and the newest one announced.
    pub local_rev: u64,
    pub server_rev: u64,
    /// Unix seconds of the next scheduled sync (a folder synced on an interval).
    pub next_sync_at: Option<i64>,
    /// Files held back because they are still being written (they changed while they were
    /// read); they are read again shortly.
    pub changing: Vec<String>,
    /// Excluded subfolders still on this computer, and why their copy here cannot go yet.
    pub kept: Vec<KeptSubfolder>,
    /// The folder's one line: "Up to date" only when nothing needs the person.
    pub summary: Summary,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ProgressView {
    pub phase: String,
    pub files_done: u64,
    pub files_total: u64,
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub files_remaining: u64,
    pub bytes_remaining: u64,
    /// Bytes per second over the last samples; 0 until two samples exist.
    pub rate_bps: u64,
    /// The file being transferred now.
    pub current: Option<String>,
    /// Seconds until the bytes remaining are moved at `rate_bps`; `None` until a rate is known.
    pub eta_secs: Option<u64>,
}

impl ProgressView {
    /// The view of a pass's progress, moving at `rate_bps`.
    pub fn new(p: &ProgressSnapshot, rate_bps: u64) -> ProgressView {
        let bytes_remaining = p.bytes_total.saturating_sub(p.bytes_done);
        ProgressView {
            phase: p.phase.clone(),
            files_done: p.files_done,
            files_total: p.files_total,
            bytes_done: p.bytes_done,
            bytes_total: p.bytes_total,
            files_remaining: p.files_total.saturating_sub(p.files_done),
            bytes_remaining,
            rate_bps,
            current: p.current.clone(),
            eta_secs: (rate_bps > 0).then(|| bytes_remaining.div_ceil(rate_bps)),
        }
    }
}

fn folder_hint(f: &FolderStatus) -> Option<String> {
    match f.state {
        FolderState::Error if f.over_quota => Some(
            "Your account is full on the server. Delete files you do not need (the server keeps deleted files in \
             its history for a while, so the space comes back later) or ask the server's operator for a larger \
             quota. FileSync tries the files again every five minutes and whenever they change."
                .into(),
        ),
        // Without a folder-level error the connection banner already says what is wrong.
        FolderState::Error if f.last_error.is_some() => Some(
            "FileSync retries the failed files by itself within a minute; if the message names a cause \
             (permissions, a full disk, a missing folder), fix that first."
                .into(),
        ),
        FolderState::Paused => Some("Nothing syncs while the folder is paused; resume it when you are ready.".into()),
        FolderState::Offline => Some("Waiting for the server; syncing resumes by itself once it is reachable.".into()),
        _ => None,
    }
}

/// A skipped or failed file with its reason in the UI's words.
fn plain_item(item: &SkippedItem) -> SkippedItem {
    SkippedItem { path: item.path.clone(), reason: for_ui(&item.reason) }
}

fn unix_now() -> i64 {
    filesync_core::clock::Clock::now_unix(&filesync_core::clock::SystemClock)
}

/// How far back the transfer rate looks.
const RATE_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);

impl AppState {
    /// Bytes per second over the last [`RATE_WINDOW`] of this folder's pass (transfers advance
    /// a chunk at a time, so single samples would jump between zero and bursts).
    fn rate(&self, folder: &str, p: &ProgressSnapshot) -> u64 {
        let now = tokio::time::Instant::now().into_std();
        let mut rates = self.rates_lock();
        let samples = rates.entry(folder.to_string()).or_default();
        if samples.back().is_some_and(|&(_, b)| b > p.bytes_done) {
            samples.clear(); // a new phase or pass started over
        }
        samples.push_back((now, p.bytes_done));
        while samples.len() > 2 && samples.front().is_some_and(|&(t, _)| now.duration_since(t) > RATE_WINDOW) {
            samples.pop_front();
        }
        match (samples.front(), samples.back()) {
            (Some(&(t0, b0)), Some(&(t1, b1))) if t1.duration_since(t0).as_secs_f64() >= 1.0 => {
                ((b1 - b0) as f64 / t1.duration_since(t0).as_secs_f64()) as u64
            }
            _ => 0,
        }
    }

    /// The dashboard's view of everything, now.
    pub fn status_view(&self) -> StatusView {
        StatusView::build(&self.home, self.live.current(), true, |folder, p| self.rate(folder, p))
    }
}

impl StatusView {
    /// The view of `home` from the agent's status `live` (`None`: no report yet). With
    /// `agent_running` false, `live` is the last report of an agent that stopped (or of
    /// `filesync sync`) and the view says nothing syncs. `rate` gives a folder's transfer rate.
    pub fn build(
        home: &Home,
        live: Option<AgentStatus>,
        agent_running: bool,
        mut rate: impl FnMut(&str, &ProgressSnapshot) -> u64,
    ) -> StatusView {
        let config: Config = home.load().unwrap_or_default();
        let logged_in = config.server.is_some() && home.token().ok().flatten().is_some();
        let (connection, message) = match (&live, logged_in) {
            (_, false) => ("logged-out".to_string(), None),
            _ if !agent_running => ("stopped".to_string(), None),
            // Not connected yet, but nothing failed either: the first try is under way.
            (Some(s), true) if s.connection == "offline" && s.offline_since_ms.is_none() && s.message.is_none() => {
                ("starting".to_string(), None)
            }
            (Some(s), true) if s.connection != "logged-out" => (s.connection.clone(), s.message.as_deref().map(for_ui)),
            _ => ("starting".to_string(), None),
        };
        let token_refused = connection == "error" && live.as_ref().is_some_and(|s| s.token_refused);
        // The server's own words ("token … not valid") are for the log; say what happened.
        let message =
            if token_refused { Some("This computer's access was revoked on the server.".to_string()) } else { message };
        let hint = match connection.as_str() {
            "error" if token_refused => Some(
                "This computer's access was revoked on the server (from another computer, or by a password change \
                 that logged the others out). Log in again with the account's password: the server, the certificate, \
                 this computer's name and its folders stay as they are."
                    .to_string(),
            ),
            "error" => Some(
                "The server's operator disabled this account. Ask them to enable it: this computer reconnects by \
                 itself, and nothing is lost meanwhile."
                    .to_string(),
            ),
            "offline" => Some(format!(
                "FileSync retries by itself. Check that the server at {} is running and reachable from here.",
                config.server.as_deref().unwrap_or("?")
            )),
            "stopped" => Some(
                "FileSync's agent is not running on this computer, so nothing syncs; start it with `filesync agent` \
                 (or start the FileSync service)."
                    .to_string(),
            ),
            _ => None,
        };
        let mut totals = Totals::default();
        let folders: Vec<FolderView> = config
            .folders
            .iter()
            .map(|fc| {
                let st = live.as_ref().and_then(|s| s.folders.iter().find(|x| x.name == fc.name));
                let v = match st {
                    Some(f) => {
                        let guard_tripped = f.state == FolderState::Paused && !fc.settings.paused && !config.paused;
                        FolderView {
                            name: fc.name.clone(),
                            path: fc.path.display().to_string(),
                            state: f.state.to_string(),
                            files: f.files,
                            bytes: f.bytes,
                            pending: f.pending,
                            conflicts: f.conflicts,
                            last_sync: f.last_sync,
                            last_error: f.last_error.as_deref().map(for_ui),
                            paused_reason: f.paused_reason.as_deref().map(for_ui),
                            guard_tripped,
                            over_quota: f.over_quota,
                            hint: if guard_tripped {
                                Some(
                                "If you deleted these files on purpose, confirm the deletions. If not, put them back \
                                 (the server and your other computers still have every one) and syncing resumes by \
                                 itself."
                                    .into(),
                            )
                            } else {
                                folder_hint(f)
                            },
                            skipped: f.skipped.iter().map(plain_item).collect(),
                            errors: f.errors.iter().map(plain_item).collect(),
                            progress: f
                                .progress
                                .as_ref()
                                .filter(|_| f.state == FolderState::Syncing)
                                .map(|p| ProgressView::new(p, rate(&fc.name, p))),
                            settings: fc.settings.clone(),
                            in_sync: f.in_sync,
                            waiting: f.waiting.clone(),
                            local_rev: f.local_rev,
                            server_rev: f.server_rev,
                            next_sync_at: f.next_sync_at_ms.map(|ms| ms.div_euclid(1000)),
                            changing: f.changing.clone(),
                            kept: f.kept.clone(),
                            summary: Summary::default(),
                        }
                    }
                    None => FolderView {
                        name: fc.name.clone(),
                        path: fc.path.display().to_string(),
                        state: "starting".into(),
                        settings: fc.settings.clone(),
                        waiting: vec!["starting".into()],
                        ..FolderView::default()
                    },
                };
                totals.files += v.files;
                totals.bytes += v.bytes;
                totals.conflicts += v.conflicts;
                totals.pending += v.pending;
                v
            })
            .collect();
        totals.folders = folders.len();
        let conn = summary::Connection {
            state: &connection,
            offline_since: live.as_ref().and_then(|s| s.offline_since_ms).map(|ms| ms.div_euclid(1000)),
            next_retry_at: live.as_ref().and_then(|s| s.next_retry_at_ms).map(|ms| ms.div_euclid(1000)),
            paused_all: config.paused,
            token_refused,
        };
        let now = unix_now();
        let mut folders = folders;
        for f in &mut folders {
            f.summary = summary::folder_summary(f, &conn, now);
            if connection == "error" {
                // Never "resumes by itself" when it will not: say what brings the folder back.
                f.hint = Some(if token_refused {
                    "Nothing syncs until this computer logs in again; the folder stays linked and syncs as soon \
                     as it does."
                        .into()
                } else {
                    "Nothing syncs while the account is disabled; syncing resumes once the operator enables it.".into()
                });
            }
        }
        let mut overall = summary::overall_summary(&folders, &conn, now);
        let mut title = summary::tab_title(&overall, &folders, &conn);
        if connection == "stopped" {
            // What the agent last said is history: nothing syncs until it runs again. A folder
            // keeps the state its last sync left (`idle`, `paused`, `error`); one that was in
            // the middle of something is `stopped`.
            for f in &mut folders {
                if !matches!(f.state.as_str(), "idle" | "error" | "paused") {
                    f.state = "stopped".into();
                }
                f.progress = None;
                f.in_sync = false;
                f.waiting = vec!["the agent is not running".into()];
                f.summary = stopped("Not syncing: FileSync is not running");
            }
            overall = stopped("FileSync is not running");
            title = Some("Not running".into());
        }
        let (offline_since, next_retry_at) = (conn.offline_since, conn.next_retry_at);
        StatusView {
            agent_running,
            in_sync: agent_running && live.as_ref().is_some_and(|s| s.all_in_sync()),
            logged_in,
            server: config.server.clone(),
            fingerprint: config.fingerprint.clone(),
            user: config.user.clone(),
            device_name: config.device_name.clone(),
            device_id: config.device_id,
            default_device_name: filesync_agent::ops::account::default_device_name(),
            connection,
            message,
            hint,
            updated_at: live.as_ref().map(|s| s.updated_at).unwrap_or(0),
            paused_all: config.paused,
            offline_since,
            next_retry_at,
            folders,
            totals,
            summary: overall,
            title,
            traffic: live.as_ref().map(|s| s.traffic).unwrap_or_default(),
        }
    }
}

/// The line when no agent runs.
fn stopped(text: &str) -> Summary {
    Summary {
        kind: Kind::Offline,
        tone: Tone::Muted,
        text: text.into(),
        detail: Some("Start FileSync (`filesync agent`, or its service) to sync again".into()),
        action: None,
        folder: None,
        since: None,
        retry_at: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use filesync_agent::config::{FolderConfig, Home};
    use filesync_agent::live::LiveStatus;
    use filesync_agent::status::{AgentStatus, FolderState, FolderStatus};

    /// A logged-in home with one folder, and the live status the agent would publish.
    fn app(dir: &std::path::Path) -> AppState {
        let home = Home::new(dir.join("home"));
        home.ensure().unwrap();
        let config = Config {
            server: Some("192.0.2.1:7443".into()),
            fingerprint: Some("SHA256:00".into()),
            folders: vec![FolderConfig::new("Docs", "/docs")],
            ..Config::default()
        };
        home.save(&config).unwrap();
        home.set_token("token").unwrap();
        AppState::new(home, LiveStatus::default(), "127.0.0.1:7780".parse().unwrap()).unwrap()
    }

    fn agent(connection: &str, folder: FolderStatus) -> AgentStatus {
        AgentStatus {
            pid: None,
            updated_at: 0,
            updated_at_ms: 0,
            connection: connection.into(),
            message: None,
            folders: vec![folder],
            traffic: Default::default(),
            offline_since_ms: None,
            next_retry_at_ms: None,
            token_refused: false,
        }
    }

    /// Regression: the dashboard said "Up to date" while conflicts were open or the server was
    /// gone; the view now carries the agent's facts into each line and the tab's title.
    #[test]
    fn the_view_sums_up_each_folder_from_the_agents_facts() {
        let dir = tempfile::tempdir().unwrap();
        let app = app(dir.path());
        let idle = FolderStatus { in_sync: true, ..FolderStatus::new("Docs", "/docs", FolderState::Idle) };
        app.live.publish(&agent("online", idle.clone()));
        let v = app.status_view();
        assert_eq!((v.folders[0].summary.text.as_str(), v.title.as_deref()), ("Up to date", Some("Up to date")));

        app.live.publish(&agent("online", FolderStatus { conflicts: 2, ..idle.clone() }));
        let v = app.status_view();
        assert_eq!(v.folders[0].summary.text, "2 conflicts need you");
        assert_eq!((v.summary.kind, v.title.as_deref()), (summary::Kind::Conflicts, Some("2 conflicts")));

        // Offline before any try failed is the first connection under way, not an outage.
        app.live.publish(&agent("offline", idle.clone()));
        assert_eq!(app.status_view().connection, "starting");
        let now_ms = unix_now() * 1000;
        let gone = AgentStatus {
            offline_since_ms: Some(now_ms - 5_000),
            next_retry_at_ms: Some(now_ms + 8_000),
            message: Some("the connection to the server was lost".into()),
            ..agent("offline", idle)
        };
        app.live.publish(&gone);
        let v = app.status_view();
        assert_eq!((v.connection.as_str(), v.offline_since), ("offline", Some(now_ms / 1000 - 5)));
        assert_eq!(v.folders[0].summary.kind, summary::Kind::Offline);
        assert!(v.folders[0].summary.text.starts_with("Offline · retrying in "), "{:?}", v.folders[0].summary);
        assert_eq!(v.title.as_deref(), Some("Offline"));
    }

    /// Regression: a revoked computer's card promised that syncing "resumes by itself".
    #[test]
    fn a_revoked_computer_is_told_to_log_in_again_and_never_that_it_resumes_by_itself() {
        let dir = tempfile::tempdir().unwrap();
        let app = app(dir.path());
        let refused =
            FolderStatus { state: FolderState::Error, ..FolderStatus::new("Docs", "/docs", FolderState::Error) };
        let revoked = AgentStatus {
            token_refused: true,
            message: Some("this device's token is not valid (revoked or unknown); log in again".into()),
            ..agent("error", refused.clone())
        };
        app.live.publish(&revoked);
        let v = app.status_view();
        let f = &v.folders[0];
        assert_eq!(
            (f.summary.action, v.summary.action),
            (Some(summary::Action::LogInAgain), Some(summary::Action::LogInAgain))
        );
        for text in [f.hint.as_deref(), v.hint.as_deref(), v.message.as_deref()] {
            let text = text.expect("a hint and a message");
            assert!(!text.contains("by itself") && !text.contains("token"), "{text}");
        }
        assert!(f.hint.as_deref().unwrap().contains("logs in again"), "{:?}", f.hint);

        // A disabled account does come back by itself, and says so.
        app.live.publish(&AgentStatus { token_refused: false, ..agent("error", refused) });
        let v = app.status_view();
        assert_eq!(v.folders[0].summary.action, None);
        assert!(v.folders[0].hint.as_deref().unwrap().contains("resumes once the operator enables it"));
    }

    /// Progress names the file being moved and says how long the rest takes at the rate seen.
    #[test]
    fn progress_names_the_current_file_and_gives_an_eta() {
        let snap = ProgressSnapshot {
            phase: "downloading".into(),
            bytes_done: 4 << 20,
            bytes_total: 24 << 20,
            current: Some("video.bin".into()),
            ..ProgressSnapshot::default()
        };
        let v = ProgressView::new(&snap, 4 << 20);
        assert_eq!((v.current.as_deref(), v.eta_secs, v.bytes_remaining), (Some("video.bin"), Some(5), 20 << 20));
        // Rounded up: never promises too early; unknown until a rate is known.
        assert_eq!(ProgressView::new(&snap, 3 << 20).eta_secs, Some(7));
        assert_eq!(ProgressView::new(&snap, 0).eta_secs, None);
    }

    /// The files still being written and the excluded subfolders kept here reach the page.
    #[test]
    fn files_being_written_and_kept_subfolders_are_shown() {
        let dir = tempfile::tempdir().unwrap();
        let app = app(dir.path());
        let kept = KeptSubfolder { path: "Projects/old".into(), reason: "3 files in it are ignored".into() };
        let f = FolderStatus {
            changing: vec!["log.txt".into()],
            waiting: vec!["1 file waiting (still being written)".into()],
            kept: vec![kept.clone()],
            ..FolderStatus::new("Docs", "/docs", FolderState::Idle)
        };
        app.live.publish(&agent("online", f));
        let v = app.status_view();
        assert_eq!(v.folders[0].kept, vec![kept]);
        assert_eq!(v.folders[0].summary.text, "1 file waiting (still being written)");
        assert_eq!(v.summary.text, "1 file waiting (still being written)");
    }

    /// The agent's texts reach the page in the UI's words: no command in backticks.
    #[test]
    fn folder_errors_are_shown_in_the_ui_s_words() {
        let dir = tempfile::tempdir().unwrap();
        let app = app(dir.path());
        let missing = FolderStatus {
            last_error: Some("the folder /docs is missing; remove it with `filesync folder remove`".into()),
            ..FolderStatus::new("Docs", "/docs", FolderState::Error)
        };
        app.live.publish(&agent("online", missing));
        let f = &app.status_view().folders[0];
        assert_eq!(
            f.last_error.as_deref(),
            Some("the folder /docs is missing; remove it with Unlink on the folder's page")
        );
    }

    /// `filesync status --json` builds the same view from the report a stopped agent left: it
    /// must not pass that report off as live ("Up to date", "syncing").
    #[test]
    fn without_a_running_agent_the_view_says_nothing_syncs() {
        let dir = tempfile::tempdir().unwrap();
        let app = app(dir.path());
        let idle = FolderStatus { in_sync: true, files: 3, ..FolderStatus::new("Docs", "/docs", FolderState::Idle) };
        let v = StatusView::build(&app.home, Some(agent("online", idle.clone())), false, |_, _| 0);
        assert!(!v.agent_running && !v.in_sync);
        assert_eq!((v.connection.as_str(), v.summary.text.as_str()), ("stopped", "FileSync is not running"));
        let f = &v.folders[0];
        assert_eq!((f.state.as_str(), f.in_sync, f.files), ("idle", false, 3), "what the last sync left");
        assert_eq!(f.summary.text, "Not syncing: FileSync is not running");
        assert!(v.hint.as_deref().unwrap().contains("filesync agent"));
        let busy = FolderStatus { state: FolderState::Syncing, ..idle.clone() };
        let v = StatusView::build(&app.home, Some(agent("online", busy)), false, |_, _| 0);
        assert_eq!(v.folders[0].state, "stopped", "a pass the agent did not finish is not running");
        // The same report from a running agent is live.
        let v = StatusView::build(&app.home, Some(agent("online", idle)), true, |_, _| 0);
        assert!(v.agent_running && v.in_sync);
        assert_eq!((v.connection.as_str(), v.summary.text.as_str()), ("online", "Up to date"));
    }
}
