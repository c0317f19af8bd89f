//! The file watcher of one folder: turns `notify` events into paths waiting in the folder's
//! [`LocalChanges`] and a wake-up for its task. Events only about our own temporary files or
//! about ignored paths (editor swap files, build output listed in `.filesyncignore`) are
//! dropped; an overflowing or failing watcher asks for a walk of the whole folder.

use super::Event;
use crate::config::FolderConfig;
use crate::filter::{IGNORE_FILE, IgnoreRules};
use crate::fs::RealFs;
use filesync_core::RelPath;
use filesync_core::path::TEMP_PREFIX;
use notify::Watcher;
use notify::event::{AccessKind, AccessMode, CreateKind, EventKind, ModifyKind};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Paths waiting for a folder task before it becomes "walk everything": far more than one
/// pass takes (`engine::scope::MAX_PATHS`), so that the echoes of a big download can still be
/// told apart from real changes.
pub(super) const CAPACITY: usize = 65_536;

/// Changes the watcher saw and the folder task has not taken yet.
#[derive(Debug, Default)]
pub struct LocalChanges {
    /// A std mutex: the notify thread adds, the task swaps it out; never held across an await.
    inner: Mutex<Pending>,
}

#[derive(Debug, Default)]
struct Pending {
    paths: std::collections::BTreeSet<RelPath>,
    full: bool,
    /// Files written to and not closed since, with when the writing began (only where the
    /// watcher reports closes: [`REPORTS_CLOSE`]).
    writing: std::collections::HashMap<RelPath, Instant>,
}

/// Whether the platform's watcher reports that a file opened for writing was closed
/// (inotify's `IN_CLOSE_WRITE`); elsewhere nothing counts as being written.
pub(super) const REPORTS_CLOSE: bool = cfg!(target_os = "linux");

/// A file is left while a program writes it, until it closes it, but at most this long after
/// the writing began: a log kept open and appended to is still synced.
pub(super) const WRITING_WAIT: Duration = Duration::from_secs(10);

impl LocalChanges {
    pub fn add(&self, paths: impl IntoIterator<Item = RelPath>) {
        let mut p = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if p.full {
            return;
        }
        p.paths.extend(paths);
        if p.paths.len() > CAPACITY {
            p.paths.clear();
            p.full = true;
        }
    }

    /// Something changed that only a walk of the whole folder can find.
    pub fn add_full(&self) {
        let mut p = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        p.paths.clear();
        p.full = true;
    }

    /// A walk of everything is already waiting.
    pub fn is_full(&self) -> bool {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).full
    }

    pub fn is_empty(&self) -> bool {
        let p = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        !p.full && p.paths.is_empty()
    }

    /// Takes what is waiting: `None` for "walk everything", else the paths.
    pub fn take(&self) -> Option<std::collections::BTreeSet<RelPath>> {
        let mut p = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let taken = std::mem::take(&mut p.paths);
        let full = std::mem::take(&mut p.full);
        (!full).then_some(taken)
    }

    /// A program wrote to `paths` (or created them) and has not closed them yet.
    pub fn written(&self, paths: &[RelPath], now: Instant) {
        let mut p = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for path in paths {
            p.writing.entry(path.clone()).or_insert(now);
        }
    }

    /// `paths` were closed after writing, or moved or removed: no longer being written.
    pub fn closed(&self, paths: &[RelPath]) {
        let mut p = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for path in paths {
            p.writing.remove(path);
        }
    }

    /// Until when `path` waits because a program is still writing it, if it does.
    pub fn writing_until(&self, path: &RelPath, now: Instant) -> Option<Instant> {
        let mut p = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        p.writing.retain(|_, since| now.duration_since(*since) < WRITING_WAIT);
        p.writing.get(path).map(|since| *since + WRITING_WAIT)
    }
}

/// Watches `f` recursively: changed paths go to `changes`, and `Event::Local` (or
/// `Event::Rescan`) wakes the task. When the channel is full a wake-up is already queued, and
/// the paths are not lost: they wait in `changes`.
pub fn watch_folder(
    f: &FolderConfig,
    changes: Arc<LocalChanges>,
    tx: mpsc::Sender<Event>,
) -> notify::Result<notify::RecommendedWatcher> {
    let root = f.path.clone();
    // A std mutex: the notify thread swaps or reads the rules; nothing awaits while holding it.
    let rules = Mutex::new(IgnoreRules::load(&RealFs::new(root.clone())));
    let mut w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let ev = match res {
            Ok(ev) if !ev.need_rescan() => ev,
            _ => {
                changes.add_full();
                let _ = tx.try_send(Event::Rescan);
                return;
            }
        };
        // Where closes are reported, a file a program is writing is looked at once it is
        // closed: a copy in progress, or a new version written under a temporary name, is
        // not sent half-written (`FolderTask::take_local`).
        let closed = matches!(ev.kind, EventKind::Access(AccessKind::Close(AccessMode::Write)));
        if ev.kind.is_access() && !(REPORTS_CLOSE && closed) {
            return;
        }
        let mut rules = rules.lock().unwrap_or_else(|e| e.into_inner());
        if ev.paths.iter().any(|p| p.strip_prefix(&root).is_ok_and(|r| r == Path::new(IGNORE_FILE))) {
            // New rules change what every path means: look at everything.
            *rules = IgnoreRules::load(&RealFs::new(root.clone()));
            changes.add_full();
            let _ = tx.try_send(Event::Rescan);
            return;
        }
        // Already a walk of everything: the paths would add nothing (a big download's
        // echoes arrive here by the hundred thousand).
        if changes.is_full() {
            let _ = tx.try_send(Event::Local);
            return;
        }
        match relevant_paths(&root, &rules, &ev.paths) {
            Relevant::Nothing => return,
            Relevant::Paths(paths) => {
                if REPORTS_CLOSE {
                    match ev.kind {
                        EventKind::Create(CreateKind::File) | EventKind::Modify(ModifyKind::Data(_)) => {
                            changes.written(&paths, Instant::now())
                        }
                        EventKind::Modify(ModifyKind::Name(_)) | EventKind::Remove(_) => changes.closed(&paths),
                        _ if closed => changes.closed(&paths),
                        _ => {}
                    }
                }
                changes.add(paths)
            }
            Relevant::Everything => changes.add_full(),
        }
        let _ = tx.try_send(Event::Local);
    })?;
    w.watch(&f.path, notify::RecursiveMode::Recursive)?;
    Ok(w)
}

/// What a watcher event asks the folder task to look at.
#[derive(Debug, PartialEq, Eq)]
pub enum Relevant {
    Nothing,
    Paths(Vec<RelPath>),
    /// The event names no path we can look at alone (the root itself, no path at all).
    Everything,
}

/// The paths of an event worth a look: not our temporary files, not ignored paths, not
/// outside the folder (the far end of a rename out of it). A name that is not a valid synced
/// path (not Unicode, not NFC) is looked at through its directory, where the scanner
/// reports or renames it.
pub fn relevant_paths(root: &Path, rules: &IgnoreRules, paths: &[PathBuf]) -> Relevant {
    if paths.is_empty() {
        return Relevant::Everything;
    }
    let mut out = Vec::new();
    for p in paths {
        if p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(TEMP_PREFIX)) {
            continue;
        }
        let Ok(rel) = p.strip_prefix(root) else { continue };
        let Some(rel) = nearest_valid(rel) else { return Relevant::Everything };
        if !rules.is_ignored(&rel, p.is_dir()) {
            out.push(rel);
        }
    }
    if out.is_empty() { Relevant::Nothing } else { Relevant::Paths(out) }
}

/// `rel` as a synced path, or its nearest ancestor that is one; `None` for the root.
fn nearest_valid(rel: &Path) -> Option<RelPath> {
    let mut parts: Vec<String> = Vec::new();
    for c in rel.components() {
        match c.as_os_str().to_str() {
            Some(s) => parts.push(s.to_string()),
            None => break,
        }
    }
    while !parts.is_empty() {
        if let Ok(p) = RelPath::new(parts.join("/")) {
            return Some(p);
        }
        parts.pop();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> RelPath {
        RelPath::new(s).unwrap()
    }

    #[test]
    fn a_file_being_written_waits_until_closed_or_for_a_while_at_most() {
        let changes = LocalChanges::default();
        let t0 = Instant::now();
        changes.written(&[p("copy.bin"), p("app.log")], t0);
        changes.written(&[p("copy.bin")], t0 + Duration::from_secs(5));
        assert_eq!(changes.writing_until(&p("copy.bin"), t0), Some(t0 + WRITING_WAIT), "from the first write");
        assert_eq!(changes.writing_until(&p("other"), t0), None);
        changes.closed(&[p("copy.bin")]);
        assert_eq!(changes.writing_until(&p("copy.bin"), t0), None, "closed");
        // A file kept open and written on (a log) is looked at after the wait all the same.
        assert_eq!(changes.writing_until(&p("app.log"), t0 + WRITING_WAIT), None);
        changes.written(&[p("app.log")], t0 + WRITING_WAIT);
        assert!(changes.writing_until(&p("app.log"), t0 + WRITING_WAIT).is_some(), "a new stretch of writing");
    }

    #[test]
    fn watcher_events_about_ignored_or_temporary_files_wake_nothing() {
        let root = Path::new("/data/docs");
        let rules = IgnoreRules::parse("build/\n*.log\n");
        let ev = |s: &[&str]| relevant_paths(root, &rules, &s.iter().map(|s| root.join(s)).collect::<Vec<_>>());
        assert_eq!(ev(&["report.txt"]), Relevant::Paths(vec![p("report.txt")]));
        assert_eq!(ev(&["debug.log"]), Relevant::Nothing);
        assert_eq!(ev(&["build/out.o"]), Relevant::Nothing, "below an ignored directory");
        assert_eq!(ev(&[".report.txt.swp"]), Relevant::Nothing, "built-in editor swap rule");
        assert_eq!(ev(&["sub/.filesync-tmp-123"]), Relevant::Nothing);
        // A download's rename names the temporary file and the destination: only the latter counts.
        assert_eq!(ev(&["sub/.filesync-tmp-9", "sub/a.txt"]), Relevant::Paths(vec![p("sub/a.txt")]));
        assert_eq!(ev(&["debug.log", "notes.md"]), Relevant::Paths(vec![p("notes.md")]));
        assert_eq!(relevant_paths(root, &rules, &[]), Relevant::Everything);
        assert_eq!(relevant_paths(root, &rules, &[root.to_path_buf()]), Relevant::Everything, "the root itself");
        // The far end of a rename out of the folder is not ours to look at.
        assert_eq!(relevant_paths(root, &rules, &[PathBuf::from("/elsewhere/x.txt")]), Relevant::Nothing);
    }

    #[test]
    fn a_name_that_is_not_a_synced_path_is_looked_at_through_its_directory() {
        let root = Path::new("/data/docs");
        let rules = IgnoreRules::default();
        let nfd = root.join("sub").join("cafe\u{301}.txt");
        assert_eq!(relevant_paths(root, &rules, &[nfd]), Relevant::Paths(vec![p("sub")]));
        assert_eq!(relevant_paths(root, &rules, &[root.join("cafe\u{301}.txt")]), Relevant::Everything);
    }

    #[test]
    fn local_changes_overflow_into_a_walk_of_everything() {
        let c = LocalChanges::default();
        assert!(c.is_empty());
        c.add([p("a"), p("b")]);
        assert_eq!(c.take().unwrap().len(), 2);
        assert!(c.is_empty());
        c.add((0..=CAPACITY).map(|i| p(&format!("f{i}"))));
        assert!(!c.is_empty() && c.is_full());
        assert_eq!(c.take(), None, "walk everything");
        assert!(c.is_empty());
    }
}
