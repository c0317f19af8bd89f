//! Which paths a pass looks at: the whole folder, or some paths and the trees below them —
//! what the watcher saw change here, what the server's journal changed, what a previous
//! pass left to do. A scope that grows past [`MAX_PATHS`] becomes the whole folder: one walk
//! is then cheaper than thousands of lookups. A walk of the whole folder goes in parts of
//! whole top-level trees ([`partition`]), so that its memory is bounded by a part.

use filesync_core::RelPath;
use std::collections::BTreeSet;

/// Paths above which a scope becomes [`Scope::Full`].
pub const MAX_PATHS: usize = 4096;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Walk the whole folder and compare everything.
    Full,
    /// These paths and everything below them (a path that is a directory covers its tree).
    Paths(BTreeSet<RelPath>),
}

impl Default for Scope {
    fn default() -> Self {
        Scope::Paths(BTreeSet::new())
    }
}

impl Scope {
    pub fn paths(paths: impl IntoIterator<Item = RelPath>) -> Scope {
        let mut s = Scope::default();
        s.extend(paths);
        s
    }

    pub fn is_full(&self) -> bool {
        matches!(self, Scope::Full)
    }

    /// Nothing to look at.
    pub fn is_empty(&self) -> bool {
        matches!(self, Scope::Paths(p) if p.is_empty())
    }

    pub fn add(&mut self, path: RelPath) {
        if let Scope::Paths(set) = self {
            set.insert(path);
            if set.len() > MAX_PATHS {
                *self = Scope::Full;
            }
        }
    }

    pub fn extend(&mut self, paths: impl IntoIterator<Item = RelPath>) {
        for p in paths {
            if self.is_full() {
                return;
            }
            self.add(p);
        }
    }

    pub fn merge(&mut self, other: Scope) {
        match other {
            Scope::Full => *self = Scope::Full,
            Scope::Paths(p) => self.extend(p),
        }
    }

    /// The paths whose trees make up the scope, none below another (empty for `Full`).
    pub fn roots(&self) -> Vec<RelPath> {
        match self {
            Scope::Full => Vec::new(),
            Scope::Paths(set) => set.iter().filter(|p| !p.ancestors().any(|a| set.contains(a))).cloned().collect(),
        }
    }

    /// Whether `path` is in the scope (itself or below one of its paths).
    pub fn covers(&self, path: &RelPath) -> bool {
        match self {
            Scope::Full => true,
            Scope::Paths(set) => set.contains(path) || path.ancestors().any(|a| set.contains(a)),
        }
    }
}

/// Rows (bases and mirror entries) a part of a whole-folder walk aims at.
pub const PART_ROWS: u64 = 8192;
/// Top-level names per part at most (a name the database does not know yet has no size).
pub const PART_NAMES: usize = 64;

/// Cuts a whole-folder walk into parts of whole top-level trees: `tops` are the top-level
/// names with how many rows their trees hold. Names that fold to the same key (`fold`: how a
/// case-insensitive disk compares names) stay in one part, so a clash is always seen whole.
/// One huge tree is one part.
pub fn partition(mut tops: Vec<(String, u64)>, fold: impl Fn(&str) -> String) -> Vec<Vec<String>> {
    tops.sort_by_cached_key(|(n, _)| (fold(n), n.clone()));
    let mut parts: Vec<Vec<String>> = Vec::new();
    let (mut rows, mut last_key) = (0u64, None::<String>);
    for (name, size) in tops {
        let key = fold(&name);
        let same_key = last_key.as_ref() == Some(&key);
        let full = parts.last().is_none_or(|p| p.len() >= PART_NAMES || rows + size.max(1) > PART_ROWS);
        if parts.is_empty() || (full && !same_key) {
            parts.push(Vec::new());
            rows = 0;
        }
        rows += size.max(1);
        parts.last_mut().expect("one part at least").push(name);
        last_key = Some(key);
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_walk_is_cut_into_bounded_parts_of_whole_trees() {
        let tops: Vec<(String, u64)> = (0..10).map(|i| (format!("d{i}"), 3000)).collect();
        let parts = partition(tops, str::to_lowercase);
        assert_eq!(parts.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 2, 2, 2]);
        // One tree bigger than a part is a part of its own; names without rows count as one.
        let parts = partition(vec![("huge".into(), 100_000), ("a".into(), 0), ("b".into(), 5)], str::to_lowercase);
        assert_eq!(parts, vec![vec!["a".to_string(), "b".into()], vec!["huge".into()]]);
        let many: Vec<(String, u64)> = (0..200).map(|i| (format!("f{i:03}"), 0)).collect();
        assert!(partition(many, str::to_lowercase).iter().all(|p| p.len() <= PART_NAMES));
    }

    #[test]
    fn names_that_fold_alike_stay_together() {
        let tops = vec![("Report.txt".into(), 8000), ("report.txt".into(), 8000), ("zz".into(), 1)];
        let parts = partition(tops, str::to_lowercase);
        assert_eq!(parts[0], vec!["Report.txt".to_string(), "report.txt".into()]);
        assert_eq!(parts[1], vec!["zz".to_string()]);
    }

    fn p(s: &str) -> RelPath {
        RelPath::new(s).unwrap()
    }

    #[test]
    fn roots_drop_paths_inside_other_paths() {
        let s = Scope::paths([p("a/b/c"), p("a"), p("ab"), p("x/y")]);
        assert_eq!(s.roots(), vec![p("a"), p("ab"), p("x/y")]);
        assert!(s.covers(&p("a/q")));
        assert!(s.covers(&p("x/y/z")));
        assert!(!s.covers(&p("x")));
        assert!(!s.covers(&p("abc")), "a sibling sharing a prefix is not below");
    }

    #[test]
    fn a_scope_too_big_becomes_the_whole_folder() {
        let mut s = Scope::default();
        assert!(s.is_empty());
        s.extend((0..=MAX_PATHS).map(|i| p(&format!("f{i}"))));
        assert!(s.is_full());
        assert!(!s.is_empty());
        s.add(p("more"));
        assert_eq!(s, Scope::Full);
        let mut small = Scope::paths([p("a")]);
        small.merge(Scope::Full);
        assert!(small.is_full());
    }
}
