//! Which paths of a folder this computer syncs. Two filters, both applied to all three views
//! (local, base, remote) before planning, so that a filtered path is never uploaded,
//! downloaded or deleted on either side:
//! - **ignore rules**: built-in defaults for OS, editor and FileSync's own junk, then the
//!   folder's `.filesyncignore` (gitignore syntax, matched by the `ignore` crate — later lines
//!   win, so `!Thumbs.db` re-includes a default);
//! - **selective sync**: subfolders excluded on this computer. Unlike an ignored path, an
//!   excluded one is not just left alone: its local copy is evicted once safely on the server
//!   (see `filesync_planner::plan_eviction`).

use crate::fs::Filesystem;
use filesync_core::{EntryKind, RelPath};
use filesync_planner::FolderState;
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, LazyLock, Mutex};

/// The ignore file, at the folder root. It syncs like any other file.
pub const IGNORE_FILE: &str = ".filesyncignore";

/// Ignored in every folder unless `.filesyncignore` re-includes them with `!pattern`.
pub const DEFAULT_RULES: &[&str] = &[
    // macOS, Windows
    ".DS_Store",
    "._.DS_Store",
    "Thumbs.db",
    "ehthumbs.db",
    "desktop.ini",
    // Office lock files, editor swap and backup files, LibreOffice locks
    "~$*",
    "*.swp",
    "*.swo",
    "*~",
    ".~lock.*#",
    // FileSync's own temporary files
    ".filesync-tmp-*",
];

/// The compiled ignore rules of one folder. Cheap to clone.
#[derive(Clone, Debug)]
pub struct IgnoreRules {
    matcher: Arc<Gitignore>,
    /// Lines of `.filesyncignore` that are not valid patterns (reported, otherwise skipped).
    pub problems: Vec<String>,
}

impl Default for IgnoreRules {
    fn default() -> Self {
        IgnoreRules::parse("")
    }
}

impl IgnoreRules {
    /// The defaults followed by the lines of `text` (the contents of `.filesyncignore`).
    /// Every sync reads the rules afresh, and compiling them costs far more than matching
    /// (`perf` of the simulation: 8 % of its time), so the last few texts are remembered.
    pub fn parse(text: &str) -> IgnoreRules {
        IgnoreRules::parse_for(text, false)
    }

    /// [`IgnoreRules::parse`] for a disk that ignores letter case (NTFS, APFS) when
    /// `case_insensitive`: a rule then matches a name however it is spelled, as the disk
    /// itself would find it (`build/` matches `Build`), so a directory renamed by case stays
    /// ignored (found by the simulation: a rule spelled the old way made two computers undo
    /// each other's case-only rename).
    pub fn parse_for(text: &str, case_insensitive: bool) -> IgnoreRules {
        type Parsed = HashMap<(String, bool), IgnoreRules>;
        static PARSED: LazyLock<Mutex<Parsed>> = LazyLock::new(Mutex::default);
        let mut parsed = PARSED.lock().unwrap_or_else(|e| e.into_inner());
        let key = (text.to_owned(), case_insensitive);
        if let Some(rules) = parsed.get(&key) {
            return rules.clone();
        }
        let rules = IgnoreRules::compile(text, case_insensitive);
        if parsed.len() >= 16 {
            parsed.clear();
        }
        parsed.insert(key, rules.clone());
        rules
    }

    fn compile(text: &str, case_insensitive: bool) -> IgnoreRules {
        let mut b = GitignoreBuilder::new("");
        b.case_insensitive(case_insensitive).expect("case folding needs no compiled pattern");
        for line in DEFAULT_RULES {
            b.add_line(None, line).expect("the default rules are valid");
        }
        let mut problems = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if let Err(e) = b.add_line(None, line) {
                problems.push(format!("{IGNORE_FILE} line {}: {e}; the line is skipped", i + 1));
            }
        }
        let matcher = b.build().unwrap_or_else(|e| {
            problems.push(format!("{IGNORE_FILE}: {e}; only the default rules apply"));
            Gitignore::empty()
        });
        IgnoreRules { matcher: Arc::new(matcher), problems }
    }

    /// Reads `.filesyncignore` from the folder root (missing: the defaults only), matching
    /// without case on a disk that ignores it.
    pub fn load(fs: &dyn Filesystem) -> IgnoreRules {
        let path = RelPath::new(IGNORE_FILE).expect("valid name");
        let mut text = String::new();
        match fs.open(&path) {
            Ok(mut f) => match f.read_to_string(&mut text) {
                Ok(_) => IgnoreRules::parse_for(&text, fs.case_insensitive()),
                Err(e) => {
                    let mut r = IgnoreRules::default();
                    r.problems.push(format!("cannot read {IGNORE_FILE} ({e}); only the default rules apply"));
                    r
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => IgnoreRules::default(),
            Err(e) => {
                let mut r = IgnoreRules::default();
                r.problems.push(format!("cannot read {IGNORE_FILE} ({e}); only the default rules apply"));
                r
            }
        }
    }

    /// Whether `path` itself matches (its directories are not looked at): for a walk from
    /// the root that never descends into an ignored directory.
    /// A conflict copy goes by its original's name: it holds a version someone saved of a
    /// file that synced, and syncs with it, whatever its own name says (found by the
    /// simulation, seed 109: the copy of `x.txt` under `*.txt` and `!x.txt` stayed on one
    /// computer).
    pub fn matches(&self, path: &RelPath, is_dir: bool) -> bool {
        let copy = if is_dir { None } else { filesync_core::conflict::parse_conflict_copy(path) };
        let path = copy.as_ref().map_or(path, |c| &c.original);
        path.as_str() != IGNORE_FILE && self.matcher.matched(path.as_str(), is_dir).is_ignore()
    }

    /// Whether `path` or a directory above it is ignored (as git decides: nothing below an
    /// ignored directory comes back, whatever a later `!` line says).
    pub fn is_ignored(&self, path: &RelPath, is_dir: bool) -> bool {
        path.ancestors()
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .any(|a| self.matches(&RelPath::new(a).expect("ancestor of a valid path"), true))
            || self.matches(path, is_dir)
    }
}

/// Subfolders excluded from this computer (selective sync).
#[derive(Clone, Debug, Default)]
pub struct Excluded(Vec<RelPath>);

impl Excluded {
    /// From the `excluded` setting; entries that are not valid folder paths are dropped (the
    /// command line never stores one).
    pub fn new(list: &[String]) -> Excluded {
        Excluded(list.iter().filter_map(|s| RelPath::new(s.trim_matches('/')).ok()).collect())
    }

    /// Whether `path` is an excluded subfolder or inside one.
    pub fn covers(&self, path: &RelPath) -> bool {
        self.0.iter().any(|e| e == path || e.is_ancestor_of(path))
    }
}

/// Takes the filtered paths out of `state` before planning: ignored paths go entirely;
/// paths in excluded subfolders are returned separately, for the eviction plan.
pub fn split_views(state: &mut FolderState, rules: &IgnoreRules, excluded: &Excluded) -> FolderState {
    let is_dir = |s: &filesync_planner::PathState| {
        let dir = |k: Option<EntryKind>| k == Some(EntryKind::Dir);
        dir(s.local.as_ref().map(|m| m.kind))
            || dir(s.base.as_ref().map(|b| b.meta.kind))
            || dir(s.remote.as_ref().and_then(|r| r.meta.as_ref()).map(|m| m.kind))
    };
    state.retain(|p, s| !rules.is_ignored(p, is_dir(s)));
    let moved: Vec<RelPath> = state.keys().filter(|p| excluded.covers(p)).cloned().collect();
    moved.into_iter().filter_map(|p| state.remove_entry(&p)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use filesync_core::{FileMeta, Hash};
    use filesync_planner::{Base, PathState, Remote};

    fn p(s: &str) -> RelPath {
        RelPath::new(s).unwrap()
    }

    #[test]
    fn rules_match_without_case_on_a_disk_that_ignores_it() {
        let folded = IgnoreRules::parse_for("a/b/\n*.LOG\n", true);
        assert!(folded.is_ignored(&RelPath::new("a/B/x.txt").unwrap(), false));
        assert!(folded.is_ignored(&RelPath::new("run.log").unwrap(), false));
        let exact = IgnoreRules::parse_for("a/b/\n*.LOG\n", false);
        assert!(!exact.is_ignored(&RelPath::new("a/B/x.txt").unwrap(), false));
        assert!(!exact.is_ignored(&RelPath::new("run.log").unwrap(), false));
        assert!(exact.is_ignored(&RelPath::new("a/b/x.txt").unwrap(), false));
    }

    #[test]
    fn defaults_catch_os_and_editor_junk_and_our_temp_files() {
        let r = IgnoreRules::default();
        for junk in [
            ".DS_Store",
            "a/b/.DS_Store",
            "Thumbs.db",
            "photos/desktop.ini",
            "~$report.docx",
            "docs/.notes.txt.swp",
            "x.swo",
            "draft.txt~",
            ".~lock.budget.ods#",
        ] {
            assert!(r.is_ignored(&p(junk), false), "{junk}");
        }
        for kept in ["report.docx", "swp", "a.swpx", "notes~.txt", ".filesyncignore", "Thumbs.db.txt"] {
            assert!(!r.is_ignored(&p(kept), false), "{kept}");
        }
    }

    #[test]
    fn filesyncignore_uses_gitignore_syntax() {
        let r = IgnoreRules::parse("# build output\nbuild/\n*.log\n!keep.log\n/top-only.txt\ncache/**/*.tmp\n.*\n");
        assert!(r.is_ignored(&p("build"), true));
        assert!(r.is_ignored(&p("build/x/y.o"), false), "below an ignored directory");
        assert!(!r.is_ignored(&p("build"), false), "`build/` matches directories only");
        assert!(r.is_ignored(&p("sub/debug.log"), false));
        assert!(!r.is_ignored(&p("sub/keep.log"), false), "negation");
        assert!(r.is_ignored(&p("top-only.txt"), false));
        assert!(!r.is_ignored(&p("sub/top-only.txt"), false), "anchored to the root");
        assert!(r.is_ignored(&p("cache/a/b/c.tmp"), false));
        assert!(r.is_ignored(&p(".hidden"), false));
        assert!(!r.is_ignored(&p(".filesyncignore"), false), "the ignore file itself always syncs");
        let copy = ".filesyncignore (conflicted copy from laptop 2026-12-01 101500)";
        assert!(!r.is_ignored(&p(copy), false), "so do its conflict copies");
        assert!(r.problems.is_empty(), "{:?}", r.problems);
    }

    #[test]
    fn a_conflict_copy_syncs_as_its_original_does() {
        let r = IgnoreRules::parse("*.txt\n!x.txt\n");
        assert!(!r.is_ignored(&p("a/x (conflicted copy from laptop 2026-12-01 101500).txt"), false));
        assert!(r.is_ignored(&p("a/y (conflicted copy from laptop 2026-12-01 101500).txt"), false));
        assert!(r.is_ignored(&p("a/y.txt"), false));
        assert!(r.problems.is_empty(), "{:?}", r.problems);
    }

    #[test]
    fn a_negation_cannot_reinclude_a_file_below_an_ignored_directory_but_can_undo_a_default() {
        let r = IgnoreRules::parse("secret/\n!secret/ok.txt\n!Thumbs.db\n");
        assert!(r.is_ignored(&p("secret/ok.txt"), false));
        assert!(!r.is_ignored(&p("Thumbs.db"), false));
    }

    #[test]
    fn invalid_lines_are_reported_and_skipped() {
        let r = IgnoreRules::parse("good.txt\n{unclosed\n");
        assert!(r.is_ignored(&p("good.txt"), false));
        assert!(r.is_ignored(&p("a.swp"), false), "the defaults still apply");
        assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
        assert!(r.problems[0].contains("line 2"), "{:?}", r.problems);
    }

    #[test]
    fn load_reads_the_file_from_the_folder() {
        let fs = crate::memfs::MemFs::new();
        assert!(!IgnoreRules::load(&fs).is_ignored(&p("a.log"), false));
        fs.write(IGNORE_FILE, "*.log\n");
        assert!(IgnoreRules::load(&fs).is_ignored(&p("a.log"), false));
    }

    #[test]
    fn split_views_drops_ignored_paths_from_every_view_and_moves_excluded_ones() {
        let file = FileMeta {
            kind: EntryKind::File,
            size: 1,
            mtime_ns: 1,
            executable: false,
            hash: Hash([1; 32]),
            chunks: vec![],
        };
        let everywhere = || PathState {
            local: Some(file.clone()),
            base: Some(Base { rev: 1, meta: file.clone() }),
            remote: Some(Remote { rev: 1, meta: Some(file.clone()) }),
        };
        let remote_only = PathState { remote: Some(Remote { rev: 2, meta: Some(file.clone()) }), ..Default::default() };
        let mut state: FolderState = [
            (p("a.txt"), everywhere()),
            (p("a.log"), everywhere()),
            (p("logs/x.txt"), remote_only.clone()),
            (p("photos/1.jpg"), everywhere()),
            (p("photos2/1.jpg"), everywhere()),
        ]
        .into_iter()
        .collect();
        let rules = IgnoreRules::parse("*.log\nlogs/\n");
        let excluded = Excluded::new(&["photos/".into()]);
        let out = split_views(&mut state, &rules, &excluded);
        assert_eq!(state.keys().map(RelPath::as_str).collect::<Vec<_>>(), ["a.txt", "photos2/1.jpg"]);
        assert_eq!(out.keys().map(RelPath::as_str).collect::<Vec<_>>(), ["photos/1.jpg"]);
    }
}
