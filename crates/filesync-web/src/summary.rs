//! The one line that sums up a folder, and the whole dashboard, for a person glancing at it:
//! "Up to date" only when nothing needs them; otherwise what does ("2 conflicts need you",
//! "Offline for 3 min · retrying in 20 s", "Next sync in 4 min"), with the one action that
//! helps, if any. Also the short form the browser tab carries ("⟳ 45 %", "2 conflicts").
//!
//! Pure: the facts come in from the view (the agent's typed status and the configuration)
//! with the current time; nothing here reads a clock, a file or the agent.

use crate::view::{FolderView, ProgressView};
use serde::Serialize;

/// What a summary is about, from least to most urgent: when folders disagree, the dashboard
/// says the most urgent one.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// No folder is linked yet.
    NoFolders,
    UpToDate,
    /// Something waits for the folder's next scheduled sync.
    Scheduled,
    /// Changes are queued or the server has newer ones; a pass follows by itself.
    Waiting,
    Syncing,
    #[default]
    Starting,
    Offline,
    Paused,
    /// Files fail to sync (or the folder does), or the account is full on the server.
    Failing,
    Conflicts,
    /// The mass-delete guard holds deletions until the person confirms them.
    Guard,
    /// The server no longer accepts this computer.
    Refused,
}

/// How the line looks: `ok` (green), `busy` (blue), `muted` (grey), `warn` (amber), `bad` (red).
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Tone {
    Ok,
    Busy,
    #[default]
    Muted,
    Warn,
    Bad,
}

/// The one thing a person can do about it, shown as a button or a link beside the line.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Sync the folder now instead of at its next scheduled time.
    SyncNow,
    /// Try the server again now instead of after the backoff.
    RetryNow,
    /// Resume the folder, paused by the person.
    Resume,
    /// Resume every folder (all were paused at once).
    ResumeAll,
    /// Open the conflicts screen.
    Conflicts,
    /// Log this computer in again with the password (`POST /api/login-again`): the server
    /// no longer accepts its token.
    LogInAgain,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Summary {
    pub kind: Kind,
    pub tone: Tone,
    /// The line itself: "Up to date", "2 conflicts need you", "Next sync in 4 min".
    pub text: String,
    /// A second, quieter line when the first needs one ("Changes waiting for the next
    /// scheduled sync").
    pub detail: Option<String>,
    pub action: Option<Action>,
    /// The folder the action is about (on the dashboard's line, which speaks for all).
    pub folder: Option<String>,
    /// Offline: since when, and when the next try is (Unix seconds), for the page to say in
    /// the reader's local time ("Offline since 10:42 · retrying in 17 s") and count down.
    pub since: Option<i64>,
    pub retry_at: Option<i64>,
}

impl Summary {
    fn new(kind: Kind, text: impl Into<String>) -> Summary {
        let tone = match kind {
            Kind::UpToDate => Tone::Ok,
            Kind::Syncing | Kind::Waiting => Tone::Busy,
            Kind::NoFolders | Kind::Scheduled | Kind::Starting => Tone::Muted,
            Kind::Offline | Kind::Paused | Kind::Conflicts => Tone::Warn,
            Kind::Failing | Kind::Guard | Kind::Refused => Tone::Bad,
        };
        Summary { kind, tone, text: text.into(), detail: None, action: None, folder: None, since: None, retry_at: None }
    }

    fn action(mut self, action: Action) -> Summary {
        self.action = Some(action);
        self
    }

    fn detail(mut self, detail: Option<String>) -> Summary {
        self.detail = detail;
        self
    }
}

/// The agent's connection, as the summaries need it. Times are Unix seconds.
#[derive(Clone, Debug, Default)]
pub struct Connection<'a> {
    /// `online`, `offline`, `error`, `logged-out` or `starting`.
    pub state: &'a str,
    pub offline_since: Option<i64>,
    pub next_retry_at: Option<i64>,
    /// Every folder is paused at once.
    pub paused_all: bool,
    /// With `state` `error`: the token was refused (revoked), so only logging in again helps;
    /// otherwise the account is disabled and comes back by itself when it is enabled.
    pub token_refused: bool,
}

/// The line for one folder's card. The order of the checks is the order of urgency: a
/// conflict or a failing file is said before the folder is called up to date, and so is a
/// connection that is down.
pub fn folder_summary(f: &FolderView, conn: &Connection, now: i64) -> Summary {
    if conn.state == "error" {
        return refused(conn, "Not syncing: the server no longer accepts this computer");
    }
    if f.guard_tripped {
        return Summary::new(Kind::Guard, "Deletions wait for you to confirm them");
    }
    if f.conflicts > 0 {
        return conflicts(f.conflicts);
    }
    if f.state == "error" {
        let text = if f.over_quota {
            "Your account is full on the server".to_string()
        } else if !f.errors.is_empty() {
            format!("{} could not be synced", count(f.errors.len() as u64, "file", "files"))
        } else {
            "Sync failed; retrying".to_string()
        };
        return Summary::new(Kind::Failing, text);
    }
    if f.state == "paused" {
        return if f.settings.paused {
            Summary::new(Kind::Paused, "Paused by you").action(Action::Resume)
        } else if conn.paused_all {
            Summary::new(Kind::Paused, "Paused with every folder").action(Action::ResumeAll)
        } else {
            // The folder is missing, say: the card's notice says why and what to do.
            Summary::new(Kind::Paused, "Paused")
        };
    }
    if conn.state == "offline" || f.state == "offline" {
        return offline(conn, now);
    }
    if f.state == "starting" || conn.state == "starting" {
        return Summary::new(Kind::Starting, "Starting");
    }
    // A file still being written is said even while the rest syncs: it is what keeps the
    // folder from being up to date.
    if !f.changing.is_empty() {
        let n = f.changing.len() as u64;
        let detail = (n == 1).then(|| format!("{} is still changing; it syncs once it stops", f.changing[0]));
        return Summary::new(Kind::Waiting, format!("{} waiting (still being written)", count(n, "file", "files")))
            .detail(detail);
    }
    if f.state == "syncing" || f.waiting.iter().any(|w| w == "syncing") {
        return Summary::new(Kind::Syncing, syncing_text(f.progress.iter()));
    }
    let next = f.next_sync_at.map(|at| format!("Next sync {}", until(now, at)));
    if !f.in_sync {
        let why = f.waiting.first().map(|w| sentence(w));
        return match next {
            Some(next) => Summary::new(Kind::Scheduled, next).detail(why).action(Action::SyncNow),
            None => Summary::new(Kind::Waiting, why.unwrap_or_else(|| "Waiting to sync".into())),
        };
    }
    Summary::new(Kind::UpToDate, "Up to date").detail(next)
}

/// The dashboard's line: the connection when it is down, otherwise the most urgent folder's
/// (conflicts and progress added up over every folder).
pub fn overall_summary(folders: &[FolderView], conn: &Connection, now: i64) -> Summary {
    match conn.state {
        "error" => return refused(conn, "The server no longer accepts this computer"),
        "offline" => return offline(conn, now),
        "starting" => return Summary::new(Kind::Starting, "Connecting to the server"),
        _ => {}
    }
    let lines: Vec<(&FolderView, Summary)> = folders.iter().map(|f| (f, folder_summary(f, conn, now))).collect();
    let Some((f, worst)) = lines.iter().max_by_key(|(_, s)| s.kind) else {
        return Summary::new(Kind::NoFolders, "No folders yet");
    };
    let mut s = match worst.kind {
        Kind::Conflicts => conflicts(folders.iter().map(|f| f.conflicts).sum()),
        Kind::Syncing => Summary::new(Kind::Syncing, syncing_text(folders.iter().flat_map(|f| f.progress.iter()))),
        Kind::UpToDate => Summary::new(Kind::UpToDate, "Up to date"),
        _ if folders.len() > 1 => Summary { text: format!("{}: {}", f.name, worst.text), ..worst.clone() },
        _ => worst.clone(),
    };
    if s.action.is_some() {
        s.folder = Some(f.name.clone());
    }
    s
}

/// The state in a few characters, for the browser tab's title: "⟳ 45 %", "2 conflicts",
/// "Offline"; `None` when nobody is logged in.
pub fn tab_title(overall: &Summary, folders: &[FolderView], conn: &Connection) -> Option<String> {
    if conn.state == "logged-out" {
        return None;
    }
    Some(match overall.kind {
        Kind::NoFolders => "No folders".into(),
        Kind::UpToDate => "Up to date".into(),
        Kind::Scheduled | Kind::Waiting => "Waiting".into(),
        Kind::Syncing => match percent(folders.iter().flat_map(|f| f.progress.iter())) {
            Some(p) => format!("⟳ {p} %"),
            None => "⟳ Syncing".into(),
        },
        Kind::Starting => "Starting".into(),
        Kind::Offline => "Offline".into(),
        Kind::Paused => "Paused".into(),
        Kind::Failing => "Sync problem".into(),
        Kind::Conflicts => count(folders.iter().map(|f| f.conflicts).sum(), "conflict", "conflicts"),
        Kind::Guard => "Deletions held".into(),
        Kind::Refused => "Not accepted".into(),
    })
}

/// The server refuses this computer: a revoked one is told to log in again (and nothing else
/// helps); a disabled account resumes by itself once the operator enables it.
fn refused(conn: &Connection, text: &str) -> Summary {
    let s = Summary::new(Kind::Refused, text);
    if conn.token_refused {
        s.detail(Some("Its access was revoked; log in again with your password to sync again".into()))
            .action(Action::LogInAgain)
    } else {
        s.detail(Some("The account is disabled; syncing resumes once the server's operator enables it".into()))
    }
}

fn conflicts(n: u64) -> Summary {
    let text = if n == 1 { "1 conflict needs you".to_string() } else { format!("{n} conflicts need you") };
    Summary::new(Kind::Conflicts, text).action(Action::Conflicts)
}

fn offline(conn: &Connection, now: i64) -> Summary {
    let mut text = "Offline".to_string();
    if let Some(since) = conn.offline_since
        && now - since >= 60
    {
        text.push_str(&format!(" for {}", elapsed(now - since)));
    }
    match conn.next_retry_at {
        Some(at) if at > now => text.push_str(&format!(" · retrying {}", until(now, at))),
        _ => text.push_str(" · retrying now"),
    }
    Summary { since: conn.offline_since, retry_at: conn.next_retry_at, ..Summary::new(Kind::Offline, text) }
        .action(Action::RetryNow)
}

fn syncing_text<'a>(progress: impl Iterator<Item = &'a ProgressView>) -> String {
    match percent(progress) {
        Some(p) => format!("Syncing · {p} %"),
        None => "Syncing".into(),
    }
}

/// Bytes done of bytes to move, over the passes given; `None` when they move no bytes.
fn percent<'a>(progress: impl Iterator<Item = &'a ProgressView>) -> Option<u64> {
    let (done, total) = progress.fold((0u64, 0u64), |(d, t), p| (d + p.bytes_done, t + p.bytes_total));
    (total > 0).then(|| (done.min(total) * 100 / total).min(99))
}

/// "in 20 s", "in 4 min", "in 2 h", "in 3 days", "in a moment": rounded up, seconds to the
/// next five, so that a line refreshed every few seconds never promises too early.
pub fn until(now: i64, at: i64) -> String {
    let d = at - now;
    if d <= 0 {
        return "in a moment".into();
    }
    let secs = (d + 4) / 5 * 5;
    let minutes = (d + 59) / 60;
    if secs < 60 {
        format!("in {secs} s")
    } else if minutes < 60 {
        format!("in {minutes} min")
    } else if d < 48 * 3600 {
        format!("in {} h", (d + 1800) / 3600)
    } else {
        format!("in {} days", (d + 43_200) / 86_400)
    }
}

/// "3 min", "2 h", "3 days": how long something has lasted, rounded down.
fn elapsed(secs: i64) -> String {
    if secs < 3600 {
        format!("{} min", secs / 60)
    } else if secs < 172_800 {
        format!("{} h", secs / 3600)
    } else {
        format!("{} days", secs / 86_400)
    }
}

fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The agent's words ("changes waiting to be synced") as a sentence.
fn sentence(words: &str) -> String {
    let mut c = words.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use filesync_agent::status::SkippedItem;

    const NOW: i64 = 1_800_000_000;

    fn online() -> Connection<'static> {
        Connection { state: "online", ..Connection::default() }
    }

    fn up_to_date() -> FolderView {
        FolderView { name: "Docs".into(), state: "idle".into(), in_sync: true, ..FolderView::default() }
    }

    fn line(f: &FolderView) -> (Kind, String, Option<Action>) {
        let s = folder_summary(f, &online(), NOW);
        (s.kind, s.text, s.action)
    }

    #[test]
    fn up_to_date_only_when_nothing_is_waiting() {
        assert_eq!(line(&up_to_date()), (Kind::UpToDate, "Up to date".into(), None));
        assert_eq!(folder_summary(&up_to_date(), &online(), NOW).tone, Tone::Ok);
    }

    /// Regression: "Up to date" showed while two conflicts were open.
    #[test]
    fn conflicts_beat_up_to_date() {
        let f = FolderView { conflicts: 2, ..up_to_date() };
        assert_eq!(line(&f), (Kind::Conflicts, "2 conflicts need you".into(), Some(Action::Conflicts)));
        let one = FolderView { conflicts: 1, ..up_to_date() };
        assert_eq!(line(&one).1, "1 conflict needs you");
    }

    /// Regression: "Up to date" showed while the server had just gone away.
    #[test]
    fn offline_beats_up_to_date_and_says_since_when_and_the_next_try() {
        let conn = Connection {
            state: "offline",
            offline_since: Some(NOW - 185),
            next_retry_at: Some(NOW + 17),
            ..Connection::default()
        };
        let s = folder_summary(&up_to_date(), &conn, NOW);
        assert_eq!((s.kind, s.tone, s.action), (Kind::Offline, Tone::Warn, Some(Action::RetryNow)));
        assert_eq!(s.text, "Offline for 3 min · retrying in 20 s");
        // The page says since when in its own clock, and counts down to the next try.
        assert_eq!((s.since, s.retry_at), (Some(NOW - 185), Some(NOW + 17)));
        let just = Connection { offline_since: Some(NOW - 5), next_retry_at: Some(NOW - 1), ..conn.clone() };
        assert_eq!(folder_summary(&up_to_date(), &just, NOW).text, "Offline · retrying now");
        // The dashboard's line says it too, whatever the folders say.
        let conflicted = FolderView { conflicts: 1, ..up_to_date() };
        assert_eq!(overall_summary(&[conflicted], &conn, NOW).kind, Kind::Offline);
    }

    /// Regression: an every-5-minutes folder far behind the server said "Up to date".
    #[test]
    fn a_scheduled_folder_behind_says_when_it_syncs_and_offers_sync_now() {
        let f = FolderView {
            in_sync: false,
            waiting: vec!["the server has newer changes (revision 3 of 9)".into()],
            next_sync_at: Some(NOW + 200),
            ..up_to_date()
        };
        let s = folder_summary(&f, &online(), NOW);
        assert_eq!((s.kind, s.text.as_str(), s.action), (Kind::Scheduled, "Next sync in 4 min", Some(Action::SyncNow)));
        assert_eq!(s.detail.as_deref(), Some("The server has newer changes (revision 3 of 9)"));
        // In sync, it is up to date and says when it looks again.
        let idle = FolderView { next_sync_at: Some(NOW + 3600), ..up_to_date() };
        let s = folder_summary(&idle, &online(), NOW);
        assert_eq!((s.kind, s.detail.as_deref()), (Kind::UpToDate, Some("Next sync in 1 h")));
    }

    #[test]
    fn a_continuous_folder_with_queued_changes_says_what_it_waits_for() {
        let f = FolderView { in_sync: false, waiting: vec!["changes waiting to be synced".into()], ..up_to_date() };
        assert_eq!(line(&f), (Kind::Waiting, "Changes waiting to be synced".into(), None));
    }

    /// Regression: a file someone was still writing left the folder "Up to date".
    #[test]
    fn a_file_still_being_written_is_waiting_not_up_to_date() {
        let f = FolderView {
            in_sync: false,
            changing: vec!["log.txt".into()],
            waiting: vec!["1 file waiting (still being written)".into()],
            ..up_to_date()
        };
        let s = folder_summary(&f, &online(), NOW);
        assert_eq!(
            (s.kind, s.text.as_str(), s.tone),
            (Kind::Waiting, "1 file waiting (still being written)", Tone::Busy)
        );
        assert_eq!(s.detail.as_deref(), Some("log.txt is still changing; it syncs once it stops"));
        // Said while the rest of the folder syncs too.
        let two = FolderView { state: "syncing".into(), changing: vec!["a".into(), "b".into()], ..f.clone() };
        assert_eq!(line(&two).1, "2 files waiting (still being written)");
        assert_eq!(tab_title(&overall_summary(&[f], &online(), NOW), &[], &online()).as_deref(), Some("Waiting"));
    }

    #[test]
    fn failures_say_how_many_files_and_a_full_account_says_so() {
        let item = |p: &str| SkippedItem { path: p.into(), reason: "permission denied".into() };
        let f =
            FolderView { state: "error".into(), errors: vec![item("a"), item("b")], in_sync: false, ..up_to_date() };
        assert_eq!(line(&f), (Kind::Failing, "2 files could not be synced".into(), None));
        let full = FolderView { over_quota: true, ..f.clone() };
        assert_eq!(line(&full).1, "Your account is full on the server");
        // A conflict still comes first: it is the one thing only the person can settle.
        let both = FolderView { conflicts: 1, ..f };
        assert_eq!(line(&both).0, Kind::Conflicts);
    }

    #[test]
    fn paused_says_by_whom_and_offers_the_matching_resume() {
        let mut f = FolderView { state: "paused".into(), in_sync: false, ..up_to_date() };
        f.settings.paused = true;
        assert_eq!(line(&f), (Kind::Paused, "Paused by you".into(), Some(Action::Resume)));
        f.settings.paused = false;
        let all = Connection { paused_all: true, ..online() };
        let s = folder_summary(&f, &all, NOW);
        assert_eq!((s.text.as_str(), s.action), ("Paused with every folder", Some(Action::ResumeAll)));
        let guard = FolderView { guard_tripped: true, ..f };
        assert_eq!(line(&guard).0, Kind::Guard);
    }

    #[test]
    fn syncing_shows_the_share_done() {
        let progress = ProgressView { bytes_done: 45, bytes_total: 100, ..ProgressView::default() };
        let f = FolderView { state: "syncing".into(), in_sync: false, progress: Some(progress), ..up_to_date() };
        assert_eq!(line(&f), (Kind::Syncing, "Syncing · 45 %".into(), None));
        let overall = overall_summary(std::slice::from_ref(&f), &online(), NOW);
        assert_eq!(tab_title(&overall, &[f], &online()).as_deref(), Some("⟳ 45 %"));
    }

    #[test]
    fn a_refused_computer_is_never_up_to_date() {
        let conn = Connection { state: "error", ..Connection::default() };
        assert_eq!(folder_summary(&up_to_date(), &conn, NOW).kind, Kind::Refused);
        assert_eq!(overall_summary(&[up_to_date()], &conn, NOW).tone, Tone::Bad);
    }

    /// Regression: a revoked computer's card said syncing "resumes by itself"; only logging
    /// in again helps it, and that is the one action offered. A disabled account does come
    /// back by itself, and is offered nothing.
    #[test]
    fn a_revoked_computer_is_offered_log_in_again_and_a_disabled_account_nothing() {
        let revoked = Connection { state: "error", token_refused: true, ..Connection::default() };
        for s in [folder_summary(&up_to_date(), &revoked, NOW), overall_summary(&[up_to_date()], &revoked, NOW)] {
            assert_eq!((s.kind, s.action), (Kind::Refused, Some(Action::LogInAgain)), "{s:?}");
            assert!(s.detail.as_deref().is_some_and(|d| d.contains("log in again")), "{s:?}");
        }
        let disabled = Connection { state: "error", ..Connection::default() };
        let s = folder_summary(&up_to_date(), &disabled, NOW);
        assert_eq!((s.kind, s.action), (Kind::Refused, None));
        assert!(s.detail.as_deref().is_some_and(|d| d.contains("enables it")), "{s:?}");
    }

    #[test]
    fn the_dashboard_says_the_most_urgent_folder_and_adds_up_conflicts() {
        let a = FolderView { conflicts: 1, ..up_to_date() };
        let b = FolderView { name: "Pics".into(), conflicts: 2, ..up_to_date() };
        let s = overall_summary(&[a, b], &online(), NOW);
        assert_eq!((s.text.as_str(), s.action), ("3 conflicts need you", Some(Action::Conflicts)));
        let mut paused =
            FolderView { name: "Pics".into(), state: "paused".into(), in_sync: false, ..FolderView::default() };
        paused.settings.paused = true;
        let s = overall_summary(&[up_to_date(), paused.clone()], &online(), NOW);
        assert_eq!((s.text.as_str(), s.folder.as_deref()), ("Pics: Paused by you", Some("Pics")));
        assert_eq!(tab_title(&s, &[up_to_date(), paused], &online()).as_deref(), Some("Paused"));
        let fine = overall_summary(&[up_to_date()], &online(), NOW);
        assert_eq!((fine.kind, fine.text.as_str()), (Kind::UpToDate, "Up to date"));
        assert_eq!(overall_summary(&[], &online(), NOW).kind, Kind::NoFolders);
        let titled = |conn: &Connection| tab_title(&overall_summary(&[], conn, NOW), &[], conn);
        assert_eq!(titled(&Connection { state: "logged-out", ..Connection::default() }), None);
        assert_eq!(titled(&Connection { state: "offline", ..Connection::default() }).as_deref(), Some("Offline"));
    }

    #[test]
    fn times_are_rounded_up_in_words() {
        assert_eq!(until(NOW, NOW - 3), "in a moment");
        assert_eq!(until(NOW, NOW + 1), "in 5 s");
        assert_eq!(until(NOW, NOW + 54), "in 55 s");
        assert_eq!(until(NOW, NOW + 59), "in 1 min");
        assert_eq!(until(NOW, NOW + 60), "in 1 min");
        assert_eq!(until(NOW, NOW + 299), "in 5 min");
        assert_eq!(until(NOW, NOW + 3599), "in 1 h");
        assert_eq!(until(NOW, NOW + 3 * 3600), "in 3 h");
        assert_eq!(until(NOW, NOW + 3 * 86_400), "in 3 days");
        assert_eq!(elapsed(125), "2 min");
        assert_eq!(elapsed(7300), "2 h");
    }
}
