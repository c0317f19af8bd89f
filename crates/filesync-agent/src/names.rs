//! Names this computer cannot hold: paths that differ only by letter case on a
//! case-insensitive file system (NTFS, APFS), and names the platform forbids (`aux.txt`, `a:b`
//! on Windows). Such remote paths are never downloaded into each other or truncated: they are
//! reported as skipped, left untouched on the server, and everything else syncs.
//!
//! Pure: the caller passes what it knows about each path.

use filesync_core::RelPath;
use std::collections::{BTreeMap, HashMap};

/// What the engine knows about one path, for the clash check.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Presence {
    /// On disk now, under exactly this spelling.
    pub local: bool,
    /// Synced to this computer (it has a base), and the server has not moved on from that
    /// version: a path whose base is older than the server's live version is created here
    /// again if it is not on disk.
    pub base: bool,
    /// Live on the server; `Some(rev)`.
    pub remote_rev: Option<u64>,
}

/// The lookup key a case-insensitive file system uses for a path (close to NTFS and APFS
/// case folding for the names people use).
pub fn fold(path: &str) -> String {
    path.to_lowercase()
}

/// Decides which remote paths must be skipped here, with the reason for each. `problem` says
/// why this computer cannot hold a name (`None`: it can). Descendants of a skipped directory
/// are skipped too, so nothing is ever written into a directory of the wrong name.
pub fn skipped_paths(
    paths: &BTreeMap<RelPath, Presence>,
    case_insensitive: bool,
    problem: impl Fn(&RelPath) -> Option<String>,
) -> BTreeMap<RelPath, String> {
    let mut skipped: BTreeMap<RelPath, String> = BTreeMap::new();
    // Only a path that would be *created* here can clash: one on disk is already held, and one
    // with a base but not on disk was renamed or deleted here, which the planner handles. A
    // path new here is created, and so is every directory not on disk that it needs, whether
    // or not the server has a live entry for that directory: one deleted on the server may
    // keep live entries the deleting computer could not see (its ignore rules hid them), and
    // such an "implied" directory still takes its name here (found by the simulation, seed
    // 2011227).
    let new_here = |p: &Presence| !p.local && !p.base && p.remote_rev.is_some();
    let mut created: std::collections::HashSet<&str> =
        paths.iter().filter(|(_, p)| new_here(p)).map(|(path, _)| path.as_str()).collect();
    let mut implied: BTreeMap<&str, Presence> = BTreeMap::new();
    for (path, p) in paths.iter().filter(|(_, p)| new_here(p)) {
        for a in path.ancestors() {
            match paths.get(a) {
                Some(ap) if ap.local => break,
                Some(_) => {}
                None => {
                    // Its place among spellings is that of its oldest entry.
                    let dir = implied.entry(a).or_insert(*p);
                    dir.remote_rev = dir.remote_rev.min(p.remote_rev);
                }
            }
            created.insert(a);
        }
    }
    let would_create = |path: &str| created.contains(path);
    for path in paths.keys() {
        if would_create(path.as_str())
            && let Some(why) = problem(path)
        {
            skipped.insert(path.clone(), format!("this computer cannot hold this name: {why}"));
        }
    }
    if case_insensitive {
        // Per folded key: the spelling that holds the name here (on disk, else synced and still
        // live on the server, else the oldest remote one), and the others that would land on
        // it. A synced spelling gone from disk and from the server holds nothing: its name is
        // going away (found by the simulation, seed 19181).
        let mut groups: HashMap<String, Vec<(&str, &Presence)>> = HashMap::new();
        for (path, p) in paths.iter().map(|(path, p)| (path.as_str(), p)).chain(implied.iter().map(|(a, p)| (*a, p))) {
            groups.entry(fold(path)).or_default().push((path, p));
        }
        for members in groups.values().filter(|m| m.len() > 1) {
            let holder = members
                .iter()
                .find(|(_, p)| p.local)
                .or_else(|| members.iter().find(|(_, p)| p.base && p.remote_rev.is_some()))
                .or_else(|| members.iter().filter(|(_, p)| p.remote_rev.is_some()).min_by_key(|(_, p)| p.remote_rev))
                .map(|(path, _)| *path);
            let Some(holder) = holder else { continue };
            for (path, _) in members {
                if *path != holder
                    && would_create(path)
                    && let Ok(path) = RelPath::new(*path)
                {
                    skipped.entry(path).or_insert_with(|| {
                        format!(
                            "differs only in letter case from '{holder}', and this computer's file system cannot \
                             hold both; rename one of them on another computer"
                        )
                    });
                }
            }
        }
    }
    // Everything below a skipped directory goes with it.
    let roots: Vec<(RelPath, String)> = skipped.iter().map(|(p, why)| (p.clone(), why.clone())).collect();
    for path in paths.keys() {
        if let Some((root, why)) = roots.iter().find(|(r, _)| r.is_ancestor_of(path))
            && !skipped.contains_key(path)
        {
            // A directory with no live entry of its own is not reported: what is inside it says
            // why.
            let reason = if paths.get(root).is_some_and(|r| r.remote_rev.is_some()) {
                format!("inside '{root}', which is skipped")
            } else {
                format!("inside '{root}', which {why}")
            };
            skipped.insert(path.clone(), reason);
        }
    }
    skipped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> RelPath {
        RelPath::new(s).unwrap()
    }

    fn remote(rev: u64) -> Presence {
        Presence { remote_rev: Some(rev), ..Default::default() }
    }

    fn map(items: &[(&str, Presence)]) -> BTreeMap<RelPath, Presence> {
        items.iter().map(|(s, pr)| (p(s), *pr)).collect()
    }

    fn none(_: &RelPath) -> Option<String> {
        None
    }

    #[test]
    fn case_sensitive_file_systems_hold_everything() {
        let m = map(&[("A.txt", remote(1)), ("a.txt", remote(2))]);
        assert!(skipped_paths(&m, false, none).is_empty());
    }

    #[test]
    fn the_oldest_remote_spelling_wins_and_the_other_is_skipped() {
        let m = map(&[("a.txt", remote(5)), ("A.txt", remote(2)), ("other", remote(3))]);
        let s = skipped_paths(&m, true, none);
        assert_eq!(s.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["a.txt"]);
        assert!(s[&p("a.txt")].contains("'A.txt'"));
    }

    #[test]
    fn a_local_file_keeps_its_name_against_a_new_remote_spelling() {
        let local = Presence { local: true, base: true, remote_rev: Some(1) };
        let m = map(&[("Report.doc", local), ("report.doc", remote(9))]);
        let s = skipped_paths(&m, true, none);
        assert_eq!(s.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["report.doc"]);
    }

    #[test]
    fn a_local_case_only_rename_is_not_a_clash() {
        // Synced as a.txt, renamed here to A.txt: the planner deletes a.txt and uploads A.txt.
        let m = map(&[
            ("a.txt", Presence { local: false, base: true, remote_rev: Some(1) }),
            ("A.txt", Presence { local: true, base: false, remote_rev: None }),
        ]);
        assert!(skipped_paths(&m, true, none).is_empty());
    }

    #[test]
    fn a_spelling_deleted_here_and_on_the_server_leaves_the_name_to_the_new_one() {
        // z.bin renamed to Z.BIN on another computer (a new file, and z.bin deleted), while
        // this computer deleted z.bin too: Z.BIN is downloaded, not skipped.
        let m = map(&[
            ("z.bin", Presence { local: false, base: true, remote_rev: None }),
            ("Z.BIN", Presence { local: false, base: false, remote_rev: Some(7) }),
        ]);
        assert!(skipped_paths(&m, true, none).is_empty());
        // While z.bin is still live on the server, it may come back here: it keeps the name.
        let m = map(&[
            ("z.bin", Presence { local: false, base: true, remote_rev: Some(8) }),
            ("Z.BIN", Presence { local: false, base: false, remote_rev: Some(7) }),
        ]);
        assert_eq!(skipped_paths(&m, true, none).keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["Z.BIN"]);
    }

    #[test]
    fn a_directory_gone_from_disk_that_a_new_remote_entry_needs_again_is_skipped_where_it_clashes() {
        // The directory c was replaced here by a file, renamed C (synced); meanwhile another
        // computer added c/x.txt, so c comes back on the server: this disk cannot hold it.
        let m = map(&[
            ("C", Presence { local: true, base: true, remote_rev: Some(11) }),
            ("c", Presence { local: false, base: true, remote_rev: Some(1) }),
            ("c/x.txt", remote(7)),
        ]);
        let s = skipped_paths(&m, true, none);
        assert_eq!(s.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["c", "c/x.txt"]);
        // With nothing new below it, c is simply deleted here: no clash.
        let m = map(&[
            ("C", Presence { local: true, base: true, remote_rev: Some(11) }),
            ("c", Presence { local: false, base: true, remote_rev: Some(1) }),
        ]);
        assert!(skipped_paths(&m, true, none).is_empty());
    }

    #[test]
    fn a_directory_without_an_entry_of_its_own_clashes_with_a_file_of_another_spelling() {
        // The server deleted the directory C, but C/y.txt lives on (the deleting computer's
        // ignore rules hid it), and this computer holds the file c: C/y.txt cannot be made.
        let m = map(&[
            ("c", Presence { local: true, base: true, remote_rev: Some(9) }),
            ("C", Presence { local: false, base: false, remote_rev: None }),
            ("C/y.txt", remote(4)),
        ]);
        let s = skipped_paths(&m, true, none);
        assert_eq!(s.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["C", "C/y.txt"]);
        assert!(s[&p("C/y.txt")].starts_with("inside 'C', which differs only in letter case from 'c'"), "{s:?}");
        // With no entry for C at all, the same.
        let m = map(&[("c", Presence { local: true, base: true, remote_rev: Some(9) }), ("C/d/y.txt", remote(4))]);
        let s = skipped_paths(&m, true, none);
        assert_eq!(s.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["C", "C/d/y.txt"]);
        // A directory on disk under the same spelling holds its name: nothing clashes.
        let m = map(&[("c", Presence { local: true, base: true, remote_rev: Some(9) }), ("c/y.txt", remote(4))]);
        assert!(skipped_paths(&m, true, none).is_empty());
    }

    #[test]
    fn directories_that_clash_take_their_contents_with_them() {
        let m = map(&[("Dir", remote(1)), ("Dir/x", remote(2)), ("dir", remote(3)), ("dir/y", remote(4))]);
        let s = skipped_paths(&m, true, none);
        assert_eq!(s.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["dir", "dir/y"]);
    }

    #[test]
    fn names_the_platform_forbids_are_skipped_with_their_contents() {
        let m = map(&[("aux.txt", remote(1)), ("a:b", remote(2)), ("a:b/c", remote(3)), ("fine", remote(4))]);
        let s = skipped_paths(&m, false, |path| path.windows_incompatibility());
        assert_eq!(s.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["a:b", "a:b/c", "aux.txt"]);
        assert!(s[&p("aux.txt")].contains("reserved"));
    }

    #[test]
    fn a_forbidden_name_already_on_disk_is_left_to_the_scanner() {
        let m = map(&[("aux.txt", Presence { local: true, base: true, remote_rev: Some(1) })]);
        assert!(skipped_paths(&m, false, |path| path.windows_incompatibility()).is_empty());
    }
}
