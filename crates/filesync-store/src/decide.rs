//! The commit rule and the restore rule, as pure functions shared by every
//! [`crate::MetaStore`] implementation.

use filesync_core::{EntryKind, EntryState, FileMeta, RelPath};
use std::collections::BTreeMap;

/// What a store does with one proposed change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Write a new version (the next sequence number).
    Apply,
    /// Accept without writing: the proposal equals the current state.
    AlreadyCurrent,
    /// Reject: the path changed since the proposer's base.
    Conflict,
}

/// Decides a proposal against the path's current entry.
///
/// - A proposal based on the current rev is applied.
/// - Anything proposed over a deletion (or a path that never existed) is applied: an edit beats
///   a concurrent delete, and re-creating a deleted path loses nothing.
/// - Deleting what is already deleted, or proposing exactly the current content and metadata,
///   is accepted without a new version (this makes retried commits idempotent).
/// - Anything else is a conflict: the proposer must merge with the current state first.
pub fn decide(current: Option<&EntryState>, base_rev: u64, proposed: Option<&FileMeta>) -> Decision {
    let cur_meta = current.and_then(|c| c.meta.as_ref());
    match (cur_meta, proposed) {
        (None, None) => Decision::AlreadyCurrent,
        (Some(c), Some(p)) if c == p => Decision::AlreadyCurrent,
        (None, Some(_)) => Decision::Apply,
        (Some(_), _) if current.map(|c| c.rev) == Some(base_rev) => Decision::Apply,
        (Some(_), _) => Decision::Conflict,
    }
}

/// The tree rule, checked after [`decide`] for a change it would apply: the current state must
/// stay a tree, so a live proposal is a conflict when a live file (or symlink) holds the place
/// of one of its ancestors, and a live file (or symlink) is a conflict where live entries are
/// below its path. Deletions never break the tree.
///
/// `current` holds the current entries (tombstones included) of the proposal's ancestors and of
/// every live entry below its path, as the changes before it in the batch left them; a path it
/// does not hold counts as absent.
///
/// Replacing a directory by a file is done by deleting the entries below it first, then
/// proposing the file (in one batch or several); when another device added something below the
/// directory meanwhile, the file is refused, and that device's addition is kept.
pub fn breaks_tree(path: &RelPath, proposed: Option<&FileMeta>, current: &BTreeMap<String, EntryState>) -> bool {
    let Some(proposed) = proposed else { return false };
    let live_non_dir = |p: &str| current.get(p).and_then(|e| e.meta.as_ref()).is_some_and(|m| m.kind != EntryKind::Dir);
    if path.ancestors().any(live_non_dir) {
        return true;
    }
    proposed.kind != EntryKind::Dir && current.range(below(path)).any(|(_, e)| e.meta.is_some())
}

/// The range of paths below `path` in byte order: those starting with `path/` (`0` follows `/`).
pub fn below(path: &RelPath) -> std::ops::Range<String> {
    format!("{path}/")..format!("{path}0")
}

/// What a store does with a restore of an old version onto a target path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestorePlan {
    /// Write the restored version as the target's next version, first re-creating these
    /// ancestors (outermost first) as directories because they are deleted or unknown.
    Apply { dirs: Vec<RelPath> },
    /// The target already holds this content: accepted, nothing written. Carries the target's
    /// current entry.
    AlreadyCurrent(EntryState),
    /// Refused: restoring would replace something that is not in the history of the restored
    /// path. Carries the entry in the way — the target's live entry, or a live file where the
    /// target needs a directory.
    Conflict(EntryState),
}

/// Decides a restore of `restored` (the metadata of a live version of `source`) onto `target`.
///
/// - `target` and its ancestors are looked up in `current` (their current entries; absent
///   means never existed or not looked up).
/// - A target that is absent or deleted receives the version.
/// - A target whose live content is the same (kind, bytes, executable bit) is already current.
/// - A live target of the same kind is replaced only when `target == source`: a plain revert,
///   safe because the replaced version stays in the history. Restoring onto another live path,
///   or replacing a file by a directory (or the reverse), is a conflict: that could destroy
///   something the history of `source` does not hold.
/// - An ancestor that is a live file blocks the restore (conflict); deleted or unknown
///   ancestors are re-created as directories.
/// - A file restored where live entries are below its path (a directory deleted, or never
///   committed as one, whose entries live on) is a conflict: `live_below` is one of them.
pub fn plan_restore(
    source: &RelPath,
    restored: &FileMeta,
    target: &RelPath,
    current: &dyn Fn(&str) -> Option<EntryState>,
    live_below: Option<EntryState>,
) -> RestorePlan {
    let mut dirs = Vec::new();
    let ancestors: Vec<&str> = target.ancestors().collect();
    for a in ancestors.into_iter().rev() {
        match current(a) {
            Some(e) if e.meta.as_ref().is_some_and(|m| m.kind == EntryKind::Dir) => {}
            Some(e) if e.meta.is_some() => return RestorePlan::Conflict(e),
            _ => dirs.push(RelPath::new(a).expect("an ancestor of a valid path is valid")),
        }
    }
    if let Some(e) = live_below.filter(|_| restored.kind != EntryKind::Dir) {
        return RestorePlan::Conflict(e);
    }
    match current(target.as_str()) {
        Some(e) => match e.meta.as_ref() {
            None => RestorePlan::Apply { dirs },
            Some(m) if m.same_content(restored) => RestorePlan::AlreadyCurrent(e),
            Some(m) if target == source && m.kind == restored.kind => RestorePlan::Apply { dirs },
            Some(_) => RestorePlan::Conflict(e),
        },
        None => RestorePlan::Apply { dirs },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use filesync_core::Hash;
    use std::collections::HashMap;

    fn file(content: &[u8]) -> FileMeta {
        FileMeta {
            kind: EntryKind::File,
            size: content.len() as u64,
            mtime_ns: 1,
            executable: false,
            hash: Hash::of(content),
            chunks: vec![],
        }
    }

    fn entry(rev: u64, meta: Option<FileMeta>) -> EntryState {
        entry_at("f", rev, meta)
    }

    fn entry_at(path: &str, rev: u64, meta: Option<FileMeta>) -> EntryState {
        EntryState {
            path: RelPath::new(path).unwrap(),
            rev,
            meta,
            device_id: 1,
            device_name: "d".into(),
            committed_at: 0,
        }
    }

    #[test]
    fn rules() {
        let a = file(b"a");
        let b = file(b"b");
        use Decision::*;
        assert_eq!(decide(None, 0, Some(&a)), Apply);
        assert_eq!(decide(None, 0, None), AlreadyCurrent);
        assert_eq!(decide(Some(&entry(3, Some(a.clone()))), 3, Some(&b)), Apply);
        assert_eq!(decide(Some(&entry(3, Some(a.clone()))), 2, Some(&b)), Conflict);
        assert_eq!(decide(Some(&entry(3, Some(a.clone()))), 2, Some(&a)), AlreadyCurrent);
        assert_eq!(decide(Some(&entry(3, Some(a.clone()))), 3, None), Apply);
        assert_eq!(decide(Some(&entry(3, Some(a.clone()))), 1, None), Conflict);
        // edit beats a concurrent delete
        assert_eq!(decide(Some(&entry(4, None)), 3, Some(&b)), Apply);
        assert_eq!(decide(Some(&entry(4, None)), 3, None), AlreadyCurrent);
    }

    fn p(s: &str) -> RelPath {
        RelPath::new(s).unwrap()
    }

    /// Plans a restore against a table of current entries.
    fn plan(source: &str, restored: &FileMeta, target: &str, table: &[EntryState]) -> RestorePlan {
        let map: HashMap<String, EntryState> = table.iter().map(|e| (e.path.as_str().to_owned(), e.clone())).collect();
        plan_restore(&p(source), restored, &p(target), &|path| map.get(path).cloned(), None)
    }

    #[test]
    fn restore_onto_an_absent_or_deleted_path_applies() {
        let old = file(b"old");
        assert_eq!(plan("f", &old, "f", &[]), RestorePlan::Apply { dirs: vec![] });
        assert_eq!(plan("f", &old, "f", &[entry(5, None)]), RestorePlan::Apply { dirs: vec![] });
        assert_eq!(plan("f", &old, "g", &[entry_at("g", 6, None)]), RestorePlan::Apply { dirs: vec![] });
    }

    #[test]
    fn a_revert_replaces_the_live_version_of_the_same_path() {
        let (old, new) = (file(b"old"), file(b"new"));
        assert_eq!(plan("f", &old, "f", &[entry(7, Some(new))]), RestorePlan::Apply { dirs: vec![] });
    }

    #[test]
    fn the_same_content_is_already_current_even_with_another_mtime() {
        let old = file(b"same");
        let cur = entry_at("g", 8, Some(FileMeta { mtime_ns: 99, ..old.clone() }));
        assert_eq!(plan("f", &old, "g", std::slice::from_ref(&cur)), RestorePlan::AlreadyCurrent(cur.clone()));
        let cur = entry(8, Some(FileMeta { mtime_ns: 99, ..old.clone() }));
        assert_eq!(plan("f", &old, "f", std::slice::from_ref(&cur)), RestorePlan::AlreadyCurrent(cur));
    }

    #[test]
    fn restoring_onto_another_live_path_is_a_conflict() {
        let (old, other) = (file(b"old"), file(b"other"));
        let cur = entry_at("g", 9, Some(other));
        assert_eq!(plan("f", &old, "g", std::slice::from_ref(&cur)), RestorePlan::Conflict(cur));
        let dir = entry_at("g", 9, Some(FileMeta::dir(1)));
        assert_eq!(plan("f", &old, "g", std::slice::from_ref(&dir)), RestorePlan::Conflict(dir));
    }

    #[test]
    fn a_revert_never_changes_the_kind_of_a_live_path() {
        // The directory may hold files the history of this path knows nothing about.
        let old = file(b"old file");
        let dir = entry(10, Some(FileMeta::dir(1)));
        assert_eq!(plan("f", &old, "f", std::slice::from_ref(&dir)), RestorePlan::Conflict(dir));
        let live_file = entry(11, Some(file(b"now a file")));
        let planned = plan("f", &FileMeta::dir(3), "f", std::slice::from_ref(&live_file));
        assert_eq!(planned, RestorePlan::Conflict(live_file));
    }

    #[test]
    fn deleted_or_unknown_ancestors_are_recreated_outermost_first() {
        let old = file(b"deep");
        let table = [entry_at("a", 1, Some(FileMeta::dir(1))), entry_at("a/b", 2, None)];
        assert_eq!(plan("a/b/c/f", &old, "a/b/c/f", &table), RestorePlan::Apply { dirs: vec![p("a/b"), p("a/b/c")] });
    }

    #[test]
    fn a_file_is_not_restored_where_entries_live_below_it() {
        let old = file(b"old");
        let below = entry_at("f/g", 12, Some(file(b"g")));
        let table = [entry(11, None)];
        let map: HashMap<String, EntryState> = table.iter().map(|e| (e.path.as_str().to_owned(), e.clone())).collect();
        let planned = plan_restore(&p("f"), &old, &p("f"), &|path| map.get(path).cloned(), Some(below.clone()));
        assert_eq!(planned, RestorePlan::Conflict(below.clone()));
        // A directory restored there is no harm.
        let planned = plan_restore(&p("f"), &FileMeta::dir(1), &p("f"), &|path| map.get(path).cloned(), Some(below));
        assert_eq!(planned, RestorePlan::Apply { dirs: vec![] });
    }

    #[test]
    fn the_tree_rule() {
        let state = |entries: &[EntryState]| -> BTreeMap<String, EntryState> {
            entries.iter().map(|e| (e.path.as_str().to_owned(), e.clone())).collect()
        };
        let f = file(b"f");
        let (live_child, dead_child) = (entry_at("c/x", 2, Some(file(b"x"))), entry_at("c/x", 3, None));
        assert!(breaks_tree(&p("c"), Some(&f), &state(std::slice::from_ref(&live_child))));
        assert!(!breaks_tree(&p("c"), Some(&FileMeta::dir(1)), &state(std::slice::from_ref(&live_child))));
        assert!(!breaks_tree(&p("c"), None, &state(std::slice::from_ref(&live_child))));
        assert!(!breaks_tree(&p("c"), Some(&f), &state(&[dead_child])));
        // Only paths below `c/` count: `c.txt` and `cd` sort near it but are not below.
        let near = [entry_at("c.txt", 4, Some(file(b"1"))), entry_at("cd", 5, Some(file(b"2")))];
        assert!(!breaks_tree(&p("c"), Some(&f), &state(&near)));
        let file_above = entry_at("a", 6, Some(file(b"a")));
        assert!(breaks_tree(&p("a/b/c"), Some(&FileMeta::dir(1)), &state(std::slice::from_ref(&file_above))));
        assert!(!breaks_tree(&p("a/b/c"), None, &state(&[file_above])));
        assert!(!breaks_tree(&p("a/b/c"), Some(&f), &state(&[entry_at("a", 7, Some(FileMeta::dir(1)))])));
    }

    #[test]
    fn a_live_file_in_place_of_an_ancestor_blocks_the_restore() {
        let old = file(b"deep");
        let blocker = entry_at("a", 3, Some(file(b"a is a file now")));
        assert_eq!(plan("a/f", &old, "a/f", std::slice::from_ref(&blocker)), RestorePlan::Conflict(blocker));
    }
}
