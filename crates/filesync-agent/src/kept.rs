//! Why an excluded subfolder is still on this computer. Selective sync promises that an
//! excluded subfolder's local copy goes once every file in it is safely on the server
//! (`filesync_planner::plan_eviction`); when that cannot happen — the ignore rules keep files
//! in it from ever being uploaded, a download-only folder never uploads what was made here,
//! or files in it still wait to be uploaded — this says so, for the folder's card and page.
//!
//! Only looks: walks the excluded subtrees that still exist through the [`Filesystem`] (so it
//! runs on `MemFs` in tests), at most [`WALK_LIMIT`] entries, and changes nothing.

use crate::filter::{Excluded, IgnoreRules};
use crate::fs::{Filesystem, StatKind};
use crate::status::KeptSubfolder;
use filesync_core::RelPath;

/// Entries looked at per folder at most: the counts say "at least" beyond it.
pub const WALK_LIMIT: usize = 20_000;

/// Files found in one excluded subtree, by why they keep it here. An ignored file is left
/// alone on both sides, so whether the server has it is never looked at: it is never evicted.
#[derive(Debug, Default, PartialEq, Eq)]
struct Found {
    /// Files the ignore rules leave out: never uploaded, so never evicted.
    ignored: u64,
    /// Other files: waiting to be uploaded (or, download-only, never uploaded).
    others: u64,
}

/// The excluded subfolders of `excluded` that still exist here, each with why it was kept;
/// an excluded subfolder that is gone, or holds only empty folders, is not listed.
pub fn kept_subfolders(
    fs: &dyn Filesystem,
    rules: &IgnoreRules,
    excluded: &[String],
    download_only: bool,
) -> Vec<KeptSubfolder> {
    let roots = Excluded::new(excluded);
    let mut budget = WALK_LIMIT;
    let mut kept = Vec::new();
    for root in excluded.iter().filter_map(|s| RelPath::new(s.trim_matches('/')).ok()) {
        // An excluded subfolder inside another excluded one is said by the outer one.
        if root.ancestors().any(|a| RelPath::new(a).is_ok_and(|a| roots.covers(&a))) {
            continue;
        }
        if !matches!(fs.stat(&root), Ok(Some(st)) if st.kind == StatKind::Dir) {
            continue;
        }
        let found = walk(fs, rules, &root, &mut budget);
        if let Some(reason) = explain(&found, download_only) {
            kept.push(KeptSubfolder { path: root.to_string(), reason });
        }
    }
    kept
}

/// Counts the files under `root`, spending at most `budget` entries.
fn walk(fs: &dyn Filesystem, rules: &IgnoreRules, root: &RelPath, budget: &mut usize) -> Found {
    let mut found = Found::default();
    let mut dirs = vec![(root.clone(), rules.is_ignored(root, true))];
    while let Some((dir, dir_ignored)) = dirs.pop() {
        let Ok(entries) = fs.read_dir(Some(&dir)) else { continue };
        for e in entries {
            if *budget == 0 {
                return found;
            }
            *budget -= 1;
            let Ok(path) = dir.join(&e.name) else { continue };
            match e.stat.kind {
                StatKind::Dir => {
                    let ignored = dir_ignored || rules.matches(&path, true);
                    dirs.push((path, ignored));
                }
                StatKind::File if dir_ignored || rules.matches(&path, false) => found.ignored += 1,
                StatKind::File => found.others += 1,
                _ => {}
            }
        }
    }
    found
}

/// The reason in words, or `None` when nothing keeps the subfolder here.
fn explain(found: &Found, download_only: bool) -> Option<String> {
    // "1 file in it is …" / "3 files in it are …", with the rest agreeing.
    let say = |n: u64, one: &str, many: &str| {
        if n == 1 { format!("1 file in it {one}") } else { format!("{n} files in it {many}") }
    };
    let mut why = Vec::new();
    if found.ignored > 0 {
        why.push(say(
            found.ignored,
            "is ignored by your rules, so FileSync cannot tell it is safely on the server",
            "are ignored by your rules, so FileSync cannot tell they are safely on the server",
        ));
    }
    if found.others > 0 {
        why.push(if download_only {
            say(
                found.others,
                "was made or changed here, and a download-only folder never uploads it",
                "were made or changed here, and a download-only folder never uploads them",
            )
        } else {
            say(found.others, "is waiting to be uploaded first", "are waiting to be uploaded first")
        });
    }
    (!why.is_empty()).then(|| why.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memfs::MemFs;

    fn kept(fs: &MemFs, rules: &str, excluded: &[&str], download_only: bool) -> Vec<(String, String)> {
        let excluded: Vec<String> = excluded.iter().map(|s| s.to_string()).collect();
        kept_subfolders(fs, &IgnoreRules::parse(rules), &excluded, download_only)
            .into_iter()
            .map(|k| (k.path, k.reason))
            .collect()
    }

    /// Regression: an ignore rule hid files in an excluded subfolder, so they never reached
    /// the server and the subfolder stayed here with no word about why.
    #[test]
    fn ignored_files_keep_an_excluded_subfolder_and_say_so() {
        let fs = MemFs::new();
        for f in ["Projects/old/a.log", "Projects/old/b.log", "Projects/old/deep/c.log"] {
            fs.write(f, "x");
        }
        fs.mkdir("Projects/old/cache");
        fs.write("Projects/old/cache/blob", "x");
        assert_eq!(
            kept(&fs, "*.log\ncache/\n", &["Projects/old"], false),
            vec![(
                "Projects/old".to_string(),
                "4 files in it are ignored by your rules, so FileSync cannot tell they are safely on the server"
                    .to_string()
            )]
        );
    }

    #[test]
    fn files_waiting_for_upload_or_held_by_download_only_are_said() {
        let fs = MemFs::new();
        fs.write("Old/new.txt", "x");
        fs.write("Old/skip.tmp", "x");
        assert_eq!(
            kept(&fs, "*.tmp", &["Old"], false)[0].1,
            "1 file in it is ignored by your rules, so FileSync cannot tell it is safely on the server; 1 file in \
             it is waiting to be uploaded first"
        );
        assert_eq!(
            kept(&fs, "", &["Old"], true)[0].1,
            "2 files in it were made or changed here, and a download-only folder never uploads them"
        );
    }

    #[test]
    fn a_gone_or_empty_excluded_subfolder_is_not_listed() {
        let fs = MemFs::new();
        fs.mkdir("Empty/inner");
        fs.write("Synced/a", "x");
        assert!(kept(&fs, "", &["Gone", "Empty", "Synced/"], false).len() == 1);
        assert!(kept(&fs, "", &["Gone", "Empty"], false).is_empty());
    }
}
