//! Which paths a pass looks at: the whole folder, or some paths and the trees below them —
//! what the watcher saw change here, what the server's journal changed, what a previous
//! pass left to do. A scope that grows past [`MAX_PATHS`] becomes the whole folder: one walk
//! is then cheaper than thousands of lookups.

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

#[cfg(test)]
mod tests {
    use super::*;

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
