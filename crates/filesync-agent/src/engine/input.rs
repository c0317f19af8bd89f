//! The pure step before planning: from what the scan saw, the bases and the remote mirror of
//! the paths in scope, build the planner's three views per path — and leave out what must
//! not be touched this pass (paths the scan skipped, ignored paths, names this computer
//! cannot hold, local paths too long to sync, excluded subfolders, which only get evicted).
//!
//! It also settles downloads a crash interrupted: a file whose content is exactly what the
//! agent was installing there is taken as synced at that rev ("promoted"), never as a local
//! edit; it settles uploads whose commit answer was lost, and files this computer had and
//! forgot the base of (evicted from an excluded subfolder, or committed while ignored): a
//! server entry with exactly that content becomes the base, so an edit made since is a plain
//! upload rather than a conflict with itself; and it refreshes the recorded stat of a file read again that still holds its base's
//! content (a touched file, or one that was racy), so that it is not read on every pass.

use crate::filter::{Excluded, IgnoreRules};
use crate::fs::Filesystem;
use crate::scan::ScanOutput;
use crate::state::BaseRow;
use crate::status::SkippedItem;
use filesync_core::{EntryKind, EntryState, Hash, RelPath};
use filesync_planner::{Base, FolderState, Remote};
use std::collections::{BTreeMap, HashMap};

/// What a pass loaded for its scope.
pub struct Views {
    pub scanned: ScanOutput,
    pub rules: IgnoreRules,
    pub bases: HashMap<RelPath, BaseRow>,
    pub remote: HashMap<RelPath, EntryState>,
    /// Downloads interrupted by a crash: path → (rev, content); and uploads whose commit was
    /// sent and not answered, with the rev [`crate::state::UPLOADING`].
    pub installing: HashMap<RelPath, (u64, Hash)>,
    /// Remote files newer than their base here whose version this computer had (evicted from an
    /// excluded subfolder, or committed while ignored): path → (rev, content) of it.
    pub own_versions: HashMap<RelPath, (u64, Hash)>,
    /// Chunk bytes the scan sent as it read new files (`engine::early`).
    pub sent_early: u64,
}

/// The planner's input, and what building it found.
#[derive(Debug, Default)]
pub struct Input {
    pub state: FolderState,
    /// Paths in excluded subfolders: planned only for eviction.
    pub excluded: FolderState,
    pub skipped: Vec<SkippedItem>,
    /// Bases to record before planning: interrupted downloads that did land, and bases whose
    /// file was read again and still holds their content (with the stat it has now).
    pub promoted: Vec<(RelPath, BaseRow)>,
    /// Own versions synced again, or that the server no longer holds: their record is done
    /// with.
    pub own_versions_done: Vec<RelPath>,
    /// Uploads whose commit answer was lost, of paths ignored now (the scan did not look at
    /// them) or gone from an excluded subfolder: the server's version is this computer's own,
    /// to remember until the path syncs again.
    pub own_versions_new: Vec<(RelPath, u64, Hash)>,
    /// Interrupted downloads and lost commit answers this pass looked at: settled (a
    /// promoted base forgets its row anyway) or found not to have landed. Those of paths the
    /// pass could not look at (ignored now, or skipped) are kept for a pass that can.
    pub installing_done: Vec<RelPath>,
}

/// Builds the planner's input from `views`. `fs` is asked only pure questions (whether it
/// folds case, whether it can hold a name).
pub fn build(views: &Views, excluded: &Excluded, fs: &dyn Filesystem) -> Input {
    let skipped =
        views.scanned.skipped.iter().map(|s| SkippedItem { path: s.path.clone(), reason: s.reason.clone() }).collect();
    let mut input = Input { skipped, ..Input::default() };
    input.skipped.extend(
        views.rules.problems.iter().map(|p| SkippedItem { path: crate::filter::IGNORE_FILE.into(), reason: p.clone() }),
    );
    // Skipped paths (and everything below an unreadable directory) are neither deleted nor
    // changed this pass: leave them alone on both sides.
    let skipped = views.scanned.skipped_paths();

    let state = &mut input.state;
    for (p, e) in &views.scanned.entries {
        state.entry(p.clone()).or_default().local = Some(e.meta.clone());
    }
    for (p, b) in &views.bases {
        if skipped.covers(p) {
            continue;
        }
        state.entry(p.clone()).or_default().base = Some(Base { rev: b.rev, meta: b.meta.clone() });
    }
    for (p, (rev, hash)) in &views.installing {
        if skipped.covers(p) {
            continue;
        }
        if *rev == crate::state::UPLOADING {
            input.installing_done.push(p.clone());
            // The path is ignored now (the rules changed after the commit: seed 4603), or it is
            // in an excluded subfolder and gone from disk with no base (deleted here, or its
            // write undone by a power loss: seed 17253), so this pass neither settles nor
            // downloads it: the version is remembered until the path syncs again.
            let gone = !views.scanned.entries.contains_key(p) && !views.bases.contains_key(p);
            if views.rules.is_ignored(p, false) || (gone && excluded.covers(p)) {
                let own = views.remote.get(p).filter(|r| r.meta.as_ref().is_some_and(|m| m.hash == *hash));
                input.own_versions_new.extend(own.map(|r| (p.clone(), r.rev, *hash)));
            } else if let Some(rev) = settle_own_version(views, state, &mut input.promoted, p, hash) {
                // Left to download: remembered until the path has a base, so that a file
                // written there before the download lands is an edit of this version, not a
                // conflict with it (seed 2035693: the download failed on a full disk).
                input.own_versions_new.push((p.clone(), rev, *hash));
            }
            continue;
        }
        let Some(local) = views.scanned.entries.get(p) else {
            // Ignored now, the file was not looked at (seed 7107379: forgotten here, the
            // installed version later met the server's next one as a conflict).
            if !views.rules.is_ignored(p, false) {
                input.installing_done.push(p.clone());
            }
            continue;
        };
        input.installing_done.push(p.clone());
        let newer = views.bases.get(p).is_none_or(|b| b.rev < *rev);
        // The file holds the version being installed: its content, and its executable bit
        // when the server still has that version to compare with (a download of a `chmod`
        // alone changes no byte, and one cut short left the old bit: seed 86).
        let installed = match views.remote.get(p).filter(|r| r.rev == *rev).and_then(|r| r.meta.as_ref()) {
            Some(m) => local.meta.same_content(m),
            None => local.meta.hash == *hash,
        };
        if local.meta.kind == EntryKind::File && installed && newer {
            let meta = local.meta.clone();
            state.entry(p.clone()).or_default().base = Some(Base { rev: *rev, meta: meta.clone() });
            input.promoted.push((p.clone(), BaseRow::with_stat(*rev, meta, &local.stat, local.racy)));
        }
    }
    // A file this computer had a version of, written again: an edit of that version.
    for (p, (_, hash)) in &views.own_versions {
        let settled_above = views.installing.get(p).is_some_and(|(rev, _)| *rev == crate::state::UPLOADING);
        if !skipped.covers(p) && !settled_above {
            settle_own_version(views, state, &mut input.promoted, p, hash);
        }
    }
    // A file read again (touched, or racy when its base was recorded) that still holds its
    // base's content: record the stat it has now, so that the next scan need not read it.
    for (p, local) in &views.scanned.entries {
        let Some(b) = views.bases.get(p) else { continue };
        let moved = (b.size, b.mtime_ns, b.ino) != (local.stat.size, local.stat.mtime_ns, local.stat.ino);
        let settled = moved && !local.racy && local.meta.kind == EntryKind::File;
        if settled && local.meta.same_content(&b.meta) && !views.installing.contains_key(p) {
            input.promoted.push((p.clone(), BaseRow::with_stat(b.rev, b.meta.clone(), &local.stat, false)));
        }
    }
    for (p, r) in &views.remote {
        if skipped.covers(p) {
            continue;
        }
        if r.meta.is_none() && !state.contains_key(p) {
            continue; // a tombstone nobody here knows about
        }
        state.entry(p.clone()).or_default().remote = Some(Remote { rev: r.rev, meta: r.meta.clone() });
    }
    if fs.case_insensitive() {
        adopt_other_spellings(views, state, &mut input.promoted);
    }
    // Remote names this computer cannot hold (case clashes, forbidden names) are left alone
    // on both sides and reported; everything else syncs.
    for (p, why) in unholdable_names(fs, state) {
        if state.get(&p).and_then(|s| s.remote.as_ref()).is_some_and(|r| r.meta.is_some()) {
            input.skipped.push(SkippedItem { path: p.to_string(), reason: why });
        }
        state.remove(&p);
    }
    // A local path too long to sync (`RelPath::check_syncable`) that would be uploaded is left
    // alone on both sides and reported: the server would refuse the commit it went in.
    let too_long: Vec<(RelPath, String)> = state
        .iter()
        .filter_map(|(p, s)| {
            let local = s.local.as_ref()?;
            let why = p.check_syncable().err()?;
            s.base.as_ref().is_none_or(|b| !b.meta.same_content(local)).then(|| (p.clone(), why.to_string()))
        })
        .collect();
    for (p, why) in too_long {
        input.skipped.push(SkippedItem { path: p.to_string(), reason: format!("not uploaded: {why}") });
        state.remove(&p);
    }
    // Ignored paths are left alone on both sides; excluded subfolders are only evicted.
    input.excluded = crate::filter::split_views(state, &views.rules, excluded);
    // An own version's record is done with once the file has a base again (recording the base
    // forgets it: a trigger of the state database), or once the server moved on from that
    // version.
    input.own_versions_done = views
        .own_versions
        .iter()
        .filter(|(p, (_, hash))| {
            let Some(s) = input.state.get(*p) else { return false };
            let current = s.remote.as_ref().and_then(|r| r.meta.as_ref()).is_some_and(|m| m.hash == *hash);
            !current || s.base.as_ref().is_some_and(|b| b.meta.hash == *hash)
        })
        .map(|(p, _)| p.clone())
        .collect();
    input
}

/// This computer committed `hash` at `p` and may have lost the answer, or it had `hash` at
/// `p` and forgot its base (evicted from an excluded subfolder, or committed while ignored). If the server's entry
/// there holds exactly that content, newer than the base, it is this computer's own version:
/// it becomes the base, so that an edit or a deletion made here since is sent over it, not
/// taken for a conflict with itself (found by the simulation: a conflict copy with no other
/// computer involved; and, for an evicted file written again, seed 395). Unless the local file is as the old base had it: then nothing was done
/// here since (a power loss may have undone the write that was sent), and the server's version
/// is downloaded as any other, and its rev is returned (it stays this computer's own version
/// until it lands).
fn settle_own_version(
    views: &Views,
    state: &mut FolderState,
    promoted: &mut Vec<(RelPath, BaseRow)>,
    p: &RelPath,
    hash: &Hash,
) -> Option<u64> {
    let r = views.remote.get(p)?;
    let meta = r.meta.as_ref().filter(|m| m.kind == EntryKind::File && m.hash == *hash)?;
    let old = views.bases.get(p);
    if old.is_some_and(|b| b.rev >= r.rev) {
        return None;
    }
    let local = views.scanned.entries.get(p);
    let untouched = match (local, old) {
        (None, None) => true,
        (Some(l), Some(b)) => l.meta.same_content(&b.meta),
        _ => false,
    };
    if untouched {
        return Some(r.rev);
    }
    state.entry(p.clone()).or_default().base = Some(Base { rev: r.rev, meta: meta.clone() });
    let row = match local {
        Some(l) if l.meta.same_content(meta) => BaseRow::with_stat(r.rev, meta.clone(), &l.stat, l.racy),
        // The file differs from the base (or is gone): its stat must not vouch for the base.
        _ => BaseRow { rev: r.rev, meta: meta.clone(), size: BaseRow::UNTRUSTED, mtime_ns: 0, ino: 0 },
    };
    promoted.push((p.clone(), row));
    None
}

/// On a disk that ignores case: a remote file with no base here that the disk holds, with the
/// same content, under another spelling only (no base there either) is taken as synced under
/// the remote spelling and renamed since. That is what happened when this computer's own
/// commit was applied but its answer lost, and the file was then renamed by case (a "save as"
/// deletes and writes): the planner then deletes the old spelling on the server and uploads
/// the new one, where it would otherwise keep both (one of them a clash here). Found by the
/// simulation (`tests/sim.rs`).
fn adopt_other_spellings(views: &Views, state: &mut FolderState, promoted: &mut Vec<(RelPath, BaseRow)>) {
    let mut by_fold: HashMap<String, Vec<&RelPath>> = HashMap::new();
    for p in views.scanned.entries.keys() {
        by_fold.entry(crate::names::fold(p.as_str())).or_default().push(p);
    }
    let mut adopted = Vec::new();
    for (p, s) in state.iter() {
        let (Some(r), None, None) = (&s.remote, &s.base, &s.local) else { continue };
        let Some(meta) = r.meta.as_ref().filter(|m| m.kind == EntryKind::File) else { continue };
        let Some(spellings) = by_fold.get(&crate::names::fold(p.as_str())) else { continue };
        let [other] = spellings.as_slice() else { continue };
        let Some(local) = views.scanned.entries.get(*other) else { continue };
        let untouched = state.get(*other).is_some_and(|o| o.base.is_none() && o.remote.is_none());
        if untouched && local.meta.same_content(meta) {
            adopted.push((p.clone(), r.rev, meta.clone(), local.stat, local.racy));
        }
    }
    for (p, rev, meta, stat, racy) in adopted {
        state.entry(p.clone()).or_default().base = Some(Base { rev, meta: meta.clone() });
        promoted.push((p, BaseRow::with_stat(rev, meta, &stat, racy)));
    }
}

/// Remote paths that cannot exist on this computer's file system, with the reason.
fn unholdable_names(fs: &dyn Filesystem, state: &FolderState) -> BTreeMap<RelPath, String> {
    let presence = state
        .iter()
        .map(|(p, s)| {
            let pr = crate::names::Presence {
                local: s.local.is_some(),
                // A base the server moved on from does not hold the name: the planner
                // downloads the new version (an edit beats a deletion here).
                base: s
                    .base
                    .as_ref()
                    .is_some_and(|b| s.remote.as_ref().is_none_or(|r| r.meta.is_none() || r.rev == b.rev)),
                remote_rev: s.remote.as_ref().filter(|r| r.meta.is_some()).map(|r| r.rev),
            };
            (p.clone(), pr)
        })
        .collect();
    crate::names::skipped_paths(&presence, fs.case_insensitive(), |p| fs.name_problem(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::{Stat, StatKind};
    use crate::memfs::MemFs;
    use crate::scan::LocalEntry;
    use filesync_core::FileMeta;

    fn p(s: &str) -> RelPath {
        RelPath::new(s).unwrap()
    }

    fn file(seed: u8) -> FileMeta {
        FileMeta {
            kind: EntryKind::File,
            size: 1,
            mtime_ns: 7,
            executable: false,
            hash: Hash([seed; 32]),
            chunks: vec![],
        }
    }

    fn views() -> Views {
        Views {
            scanned: ScanOutput::default(),
            rules: IgnoreRules::default(),
            bases: HashMap::new(),
            remote: HashMap::new(),
            installing: HashMap::new(),
            own_versions: HashMap::new(),
            sent_early: 0,
        }
    }

    fn local(meta: FileMeta) -> LocalEntry {
        LocalEntry {
            meta,
            stat: Stat { kind: StatKind::File, size: 1, mtime_ns: 9, ino: 3, executable: false },
            racy: false,
        }
    }

    fn base(rev: u64, meta: FileMeta) -> BaseRow {
        BaseRow { rev, meta, size: 1, mtime_ns: 1, ino: 1 }
    }

    #[test]
    fn an_interrupted_download_that_landed_is_synced_not_a_local_edit() {
        let mut v = views();
        v.scanned.entries.insert(p("big.bin"), local(file(2)));
        v.bases.insert(p("big.bin"), base(4, file(1)));
        v.installing.insert(p("big.bin"), (5, Hash([2; 32])));
        let input = build(&v, &Excluded::default(), &MemFs::new());
        let s = &input.state[&p("big.bin")];
        assert_eq!(s.base.as_ref().unwrap().rev, 5);
        assert_eq!(s.base.as_ref().unwrap().meta.hash, Hash([2; 32]));
        assert_eq!(input.promoted.len(), 1);
        assert_eq!((input.promoted[0].1.mtime_ns, input.promoted[0].1.ino), (9, 3), "the stat seen now");
    }

    #[test]
    fn an_interrupted_download_that_did_not_land_changes_nothing() {
        let mut v = views();
        v.scanned.entries.insert(p("a"), local(file(3)));
        v.bases.insert(p("a"), base(4, file(1)));
        v.installing.insert(p("a"), (5, Hash([2; 32])));
        v.installing.insert(p("gone"), (6, Hash([2; 32])));
        let input = build(&v, &Excluded::default(), &MemFs::new());
        assert_eq!(input.state[&p("a")].base.as_ref().unwrap().rev, 4);
        assert!(input.promoted.is_empty());
        assert!(!input.state.contains_key(&p("gone")));
    }

    #[test]
    fn skipped_and_ignored_paths_are_left_alone() {
        let mut v = views();
        v.scanned.skipped.push(crate::scan::Skipped { path: "locked".into(), reason: "permission denied".into() });
        v.bases.insert(p("locked/x"), base(1, file(1)));
        v.bases.insert(p("notes.tmp~"), base(1, file(1)));
        v.rules = IgnoreRules::parse("*.tmp~\n");
        let tomb =
            EntryState { path: p("old"), rev: 3, meta: None, device_id: 1, device_name: "x".into(), committed_at: 0 };
        v.remote.insert(p("old"), tomb);
        let input = build(&v, &Excluded::default(), &MemFs::new());
        assert!(input.state.is_empty(), "{:?}", input.state);
        assert_eq!(input.skipped.len(), 1);
    }

    /// A local path too long to sync would only make the server refuse the commit it went in
    /// (and every other change with it): it is reported, and left alone on both sides, unless
    /// it is already in sync (stored before the limit), which needs no commit.
    #[test]
    fn a_local_path_too_long_to_sync_is_reported_not_planned() {
        let long = p(&vec!["x".repeat(200); 6].join("/"));
        let synced = p(&format!("{}/old", vec!["y".repeat(200); 6].join("/")));
        let mut v = views();
        v.scanned.entries.insert(long.clone(), local(file(1)));
        v.scanned.entries.insert(synced.clone(), local(file(2)));
        v.bases.insert(synced.clone(), base(3, file(2)));
        v.scanned.entries.insert(p("short"), local(file(4)));
        let input = build(&v, &Excluded::default(), &MemFs::new());
        assert!(!input.state.contains_key(&long));
        assert!(input.state.contains_key(&synced) && input.state.contains_key(&p("short")));
        assert_eq!(input.skipped.len(), 1);
        assert_eq!(input.skipped[0].path, long.as_str());
        assert!(input.skipped[0].reason.starts_with("not uploaded: path is 1205 bytes long"), "{:?}", input.skipped);
    }
}
