//! The planning algorithm: a decision per path from its three views, then fix-ups that keep
//! both sides valid trees and the plan executable in the order the [`Action`] contract sets.
//!
//! # Stages
//!
//! 1. **Decide** each path on its own ([`decide`]). A side *changed* when it differs from the
//!    base: locally by content ([`FileMeta::same_content`]; the mtime alone is no change),
//!    remotely by rev. A tombstone is a remote deletion; no server entry at all while a base
//!    exists (the server lost it) is not: the local version is uploaded again. Edits beat deletes; identical
//!    contents on both sides are recorded, not conflicted; different live contents on both
//!    sides are a conflict: the local version moves aside to a conflict copy and the remote
//!    version takes the name.
//! 2. **Fit to the trees** ([`fit`]), deepest paths first so that every descendant of a path
//!    is final before the path itself is looked at. A path *survives* when it still exists
//!    (on both sides) after the plan. Then:
//!    - a `DeleteLocal` with a surviving descendant becomes an `Upload` (the directory is
//!      resurrected remotely); a `DeleteRemote` with a surviving descendant becomes a
//!      `Download` (the directory is re-created locally);
//!    - a `Download` or `Upload` that would put a file where a directory with surviving
//!      descendants is becomes a conflict, so the directory moves aside whole (or the local
//!      file does, where the server has the directory, or has deleted it while entries below
//!      it live on);
//!    - a `Download` or `Upload` that would put a file where a directory still has
//!      descendants that this plan deletes waits for the next pass: the contract runs
//!      deletions after transfers, so the directory is empty only then.
//!
//!    Last, every decision under a path that moves aside is dropped: its subtree moved with
//!    it, and the next pass sees the new paths.
//! 3. **Emit** ([`emit`]) the actions in contract order, naming conflict copies so that no
//!    copy takes a name the folder state or another copy uses.
//!
//! # Directions
//!
//! Stage 1 decides as if changes flowed both ways; [`restrict`] then takes out what the
//! folder's [`Direction`] forbids. Upload-only: a remote-only change becomes `NotDownloaded`,
//! and a path changed on both sides is uploaded (or deleted) over the remote version instead
//! of becoming a conflict. Download-only: a local-only change becomes `NotUploaded`; a
//! conflict still keeps the local version as a copy. A *revert* decides from the source side
//! alone ([`mirror_local`], [`mirror_remote`]). Stage 2 then keeps the trees valid on the side
//! the plan may change, per direction (see [`fit`]).
//!
//! *Invariant:* a path gets at most one action, except a conflict's `MoveLocalAside` and the
//! `Download` that follows it. `DeleteLocal` is planned only for a local version equal to the
//! base, `DeleteRemote` only for a remote version at the base rev, and an `Upload` is always
//! based on the server's current rev of the path (0 when the server has none).

use crate::{Action, Direction, FolderState, Held, PathState, PlanContext};
use filesync_core::conflict::conflict_copy_path;
use filesync_core::{EntryKind, FileMeta, RelPath};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Computes the actions that bring `state` in sync. Pure and deterministic: the same input
/// gives the same plan. See the module documentation for the rules.
pub fn plan(state: &FolderState, ctx: &PlanContext) -> Vec<Action> {
    let mut decisions: BTreeMap<&RelPath, Decision> = state.iter().map(|(p, s)| (p, decide_in(s, ctx))).collect();
    fit_to_trees(state, &mut decisions, ctx.direction);
    defer_under_moved_paths(state, &mut decisions);
    emit(state, &decisions, ctx)
}

/// Plans the eviction of a subfolder this computer no longer syncs (selective sync): the
/// local copy goes, but only once it is safely on the server. `state` holds the paths of the
/// excluded subtrees only. Per path that exists locally:
/// - unchanged since its base (the server accepted exactly this content) → `DeleteLocal`
///   (a directory only once it is empty);
/// - changed or new → `Upload` over the server's current rev first (with `DownloadOnly`,
///   which never uploads: `NotUploaded`, and it stays); a later pass removes it.
///
/// A path gone locally only has its base forgotten: an eviction never deletes anything on
/// the server, and nothing is ever downloaded into an excluded subtree. A file where the server
/// has a live directory (an excluded subfolder's name taken by a file here) cannot go to the
/// server under its name: it moves aside to a conflict copy, outside the excluded subfolder,
/// which the next pass uploads.
pub fn plan_eviction(state: &FolderState, ctx: &PlanContext) -> Vec<Action> {
    let direction = ctx.direction;
    let mut taken = Taken::new(state);
    let mut moves = Vec::new();
    let mut uploads = Vec::new();
    let mut deletes = Vec::new();
    let mut bookkeeping = Vec::new();
    let mut held = Vec::new();
    for (path, s) in state {
        let path = path.clone();
        let remote_dir = remote_live(s).is_some_and(|r| r.kind == EntryKind::Dir);
        match (&s.local, &s.base) {
            (Some(l), Some(b)) if l.same_content(&b.meta) => deletes.push(Action::DeleteLocal { path }),
            (Some(l), _) if l.kind != EntryKind::Dir && remote_dir => {
                let copy = taken.claim_copy_name(&path, ctx);
                moves.push(Action::MoveLocalAside { path, copy });
            }
            (Some(_), _) if direction == Direction::DownloadOnly => {
                held.push(Action::NotUploaded { path, why: Held::DownloadOnly })
            }
            (Some(_), _) => uploads.push(Action::Upload { path, base_rev: remote_rev(s) }),
            (None, Some(_)) => bookkeeping.push(Action::ForgetBase { path }),
            (None, None) => {}
        }
    }
    deletes.reverse();
    let mut actions = moves;
    actions.extend(uploads);
    actions.extend(deletes);
    actions.extend(bookkeeping);
    actions.extend(held);
    actions
}

/// What one path needs, before it becomes [`Action`]s. A `Conflict` moves the local version
/// aside, then downloads the remote version `rev` to the path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decision {
    Nothing,
    Upload {
        base_rev: u64,
    },
    Download {
        rev: u64,
    },
    DeleteLocal,
    DeleteRemote {
        base_rev: u64,
    },
    RecordBase {
        rev: u64,
    },
    ForgetBase,
    Conflict {
        rev: u64,
    },
    /// A local change that is not sent (download-only, or what upload-only cannot send).
    NotUploaded(Held),
    /// Upload-only: a remote change that is not applied here.
    NotDownloaded,
}

/// The remote version of a path if it is live (not deleted).
fn remote_live(s: &PathState) -> Option<&FileMeta> {
    s.remote.as_ref().and_then(|r| r.meta.as_ref())
}

/// The server's rev of a path: that of its entry or tombstone, 0 when it has none.
fn remote_rev(s: &PathState) -> u64 {
    s.remote.as_ref().map_or(0, |r| r.rev)
}

/// Stage 1: the decision for one path on its own.
fn decide(s: &PathState) -> Decision {
    let local = s.local.as_ref();
    let Some(base) = &s.base else {
        // Never synced: whatever exists on either side is new.
        return both_changed(s, false);
    };
    if s.remote.is_none() {
        // The server has no record at all of a path this computer synced (its data was lost,
        // or restored from an older backup). That is no reason to delete anything here: offer
        // the local version again.
        return if local.is_some() { Decision::Upload { base_rev: 0 } } else { Decision::ForgetBase };
    }
    let local_changed = local.is_none_or(|l| !l.same_content(&base.meta));
    // A base always holds a live version, so a tombstone is a change even at the base rev.
    let remote_changed = remote_live(s).is_none() || remote_rev(s) != base.rev;
    match (local_changed, remote_changed) {
        (false, false) => Decision::Nothing,
        (true, false) if local.is_some() => Decision::Upload { base_rev: base.rev },
        (true, false) => Decision::DeleteRemote { base_rev: base.rev },
        (false, true) if remote_live(s).is_some() => Decision::Download { rev: remote_rev(s) },
        (false, true) => Decision::DeleteLocal,
        (true, true) => both_changed(s, true),
    }
}

/// Stage 1 under the context's direction.
fn decide_in(s: &PathState, ctx: &PlanContext) -> Decision {
    match (ctx.direction, ctx.revert) {
        (Direction::TwoWay, _) => decide(s),
        (Direction::UploadOnly, true) => mirror_local(s),
        (Direction::DownloadOnly, true) => mirror_remote(s),
        (direction, false) => restrict(s, decide(s), direction),
    }
}

/// Takes out of a two-way decision what a one-way direction forbids.
fn restrict(s: &PathState, d: Decision, direction: Direction) -> Decision {
    match direction {
        Direction::TwoWay => d,
        Direction::UploadOnly => match d {
            // Only the rev moved (a directory's, a touched file's): nothing to hold back.
            Decision::Download { rev }
                if s.local.as_ref().zip(remote_live(s)).is_some_and(|(l, r)| l.same_content(r)) =>
            {
                Decision::RecordBase { rev }
            }
            // Deleted here, edited there: the local deletion goes over the remote edit.
            Decision::Download { rev } if s.local.is_none() && s.base.is_some() => {
                Decision::DeleteRemote { base_rev: rev }
            }
            Decision::Download { .. } | Decision::DeleteLocal => Decision::NotDownloaded,
            Decision::Conflict { rev } => Decision::Upload { base_rev: rev },
            d => d,
        },
        Direction::DownloadOnly => match d {
            Decision::Upload { .. } | Decision::DeleteRemote { .. } => Decision::NotUploaded(Held::DownloadOnly),
            d => d,
        },
    }
}

/// Revert remote: the decision that makes the server equal the local version.
fn mirror_local(s: &PathState) -> Decision {
    let rev = remote_rev(s);
    match (s.local.as_ref(), remote_live(s)) {
        (Some(l), Some(r)) if l.same_content(r) => agreed(s, rev),
        (Some(_), _) => Decision::Upload { base_rev: rev },
        (None, Some(_)) => Decision::DeleteRemote { base_rev: rev },
        (None, None) => gone(s),
    }
}

/// Revert local: the decision that makes the local version equal the server's.
fn mirror_remote(s: &PathState) -> Decision {
    let rev = remote_rev(s);
    match (s.local.as_ref(), remote_live(s)) {
        (Some(l), Some(r)) if l.same_content(r) => agreed(s, rev),
        (_, Some(_)) => Decision::Download { rev },
        (Some(_), None) => Decision::DeleteLocal,
        (None, None) => gone(s),
    }
}

/// Both sides hold the same content at `rev`: record it unless the base already does.
fn agreed(s: &PathState, rev: u64) -> Decision {
    if s.base.as_ref().is_some_and(|b| b.rev == rev) { Decision::Nothing } else { Decision::RecordBase { rev } }
}

/// Nothing on either side: forget the base if there is one.
fn gone(s: &PathState) -> Decision {
    if s.base.is_some() { Decision::ForgetBase } else { Decision::Nothing }
}

/// Both sides changed since the base (or there is no base, so whatever exists is new).
fn both_changed(s: &PathState, has_base: bool) -> Decision {
    let rev = remote_rev(s);
    match (s.local.as_ref(), remote_live(s)) {
        (None, None) if has_base => Decision::ForgetBase,
        (None, None) => Decision::Nothing,
        // Edits beat deletes, on either side.
        (None, Some(_)) => Decision::Download { rev },
        (Some(_), None) => Decision::Upload { base_rev: rev },
        (Some(l), Some(r)) if l.same_content(r) => Decision::RecordBase { rev },
        (Some(_), Some(_)) => Decision::Conflict { rev },
    }
}

/// What the final decisions of a path's descendants add up to.
#[derive(Clone, Copy, Debug, Default)]
struct Below {
    /// Some descendant still exists locally after the plan.
    local: bool,
    /// Some descendant is still live remotely after the plan.
    remote: bool,
    /// Some descendant exists now (locally, or live remotely).
    exists: bool,
}

/// Stage 2: adjusts the decisions so that each side stays a valid tree, deepest paths first.
fn fit_to_trees<'a>(state: &'a FolderState, decisions: &mut BTreeMap<&'a RelPath, Decision>, direction: Direction) {
    let mut order: Vec<&RelPath> = state.keys().collect();
    order.sort_by(|a, b| b.depth().cmp(&a.depth()).then_with(|| a.cmp(b)));
    // Keyed by ancestor: paths in the state need not list their parent directories.
    let mut below: HashMap<&str, Below> = HashMap::new();
    for path in order {
        let s = &state[path];
        let seen = below.get(path.as_str()).copied().unwrap_or_default();
        let d = fit(s, decisions[path], seen, direction);
        decisions.insert(path, d);
        let (local, remote) = after(s, d);
        let me = Below { local, remote, exists: s.local.is_some() || remote_live(s).is_some() };
        if me.local || me.remote || me.exists {
            for ancestor in path.ancestors() {
                let b = below.entry(ancestor).or_default();
                b.local |= me.local;
                b.remote |= me.remote;
                b.exists |= me.exists;
            }
        }
    }
}

/// The fix-ups for one path, given what its descendants will do.
///
/// Two-way, a path exists on both sides or on neither after any decision, so "a descendant
/// survives" means on both sides. One-way, a held-back path exists on one side only, so each
/// side is looked at on its own, and a fix-up never does what the direction forbids: a
/// directory that must stay where the plan may not touch it is held back instead.
fn fit(s: &PathState, d: Decision, below: Below, direction: Direction) -> Decision {
    let not_dir = |m: Option<&FileMeta>| m.is_some_and(|m| m.kind != EntryKind::Dir);
    let is_dir = |m: Option<&FileMeta>| m.is_some_and(|m| m.kind == EntryKind::Dir);
    let rev = remote_rev(s);
    let d = match (d, direction) {
        // An unchanged local file where the server deleted a directory whose entries live on:
        // the file goes, and what is inside comes on the next pass (`defer_under_moved_paths`).
        (Decision::DeleteLocal, _) if not_dir(s.local.as_ref()) => Decision::DeleteLocal,
        // Something inside survives: the directory must stay on both sides.
        (Decision::DeleteLocal, Direction::TwoWay) if below.local || below.remote => Decision::Upload { base_rev: rev },
        (Decision::DeleteRemote { .. }, Direction::TwoWay) if below.local || below.remote => Decision::Download { rev },
        // One-way: it stays on the side that keeps something inside, and is reported.
        (Decision::DeleteLocal, _) if below.local => Decision::NotUploaded(Held::DownloadOnly),
        (Decision::DeleteRemote { .. }, _) if below.remote => Decision::NotDownloaded,
        // A held-back directory that a transfer below needs on the other side is sent there
        // (download-only: a local file in its way is kept as a conflict copy).
        (Decision::NotUploaded(why), _) if below.local && is_dir(remote_live(s)) => match s.local.as_ref() {
            None => Decision::Download { rev },
            Some(l) if l.kind != EntryKind::Dir => Decision::Conflict { rev },
            Some(_) => Decision::NotUploaded(why),
        },
        (Decision::NotDownloaded, _) if below.remote && is_dir(s.local.as_ref()) && !is_dir(remote_live(s)) => {
            Decision::Upload { base_rev: rev }
        }
        (d, _) => d,
    };
    let blocked = match d {
        Decision::Download { .. } if not_dir(remote_live(s)) => Some(below.local),
        Decision::Upload { .. } if not_dir(s.local.as_ref()) => Some(below.remote),
        _ => None,
    };
    match blocked {
        None => d,
        Some(stays)
            if (stays || (direction == Direction::TwoWay && (below.local || below.remote)))
                && s.local.is_some()
                && direction != Direction::UploadOnly =>
        {
            // A file would replace a directory whose contents stay: keep both versions.
            Decision::Conflict { rev }
        }
        // Upload-only never touches the local folder, nor deletes what others put on the
        // server: a file where the server's directory keeps its entries cannot go up. Held back,
        // and reported.
        Some(_) if direction == Direction::UploadOnly && matches!(d, Decision::Upload { .. }) && below.remote => {
            Decision::NotUploaded(Held::ServerHasFolder)
        }
        // The directory is emptied by this plan's deletions, which run after transfers (or
        // its contents stay, or the input is not a valid tree): replace it on a later pass.
        Some(_) if below.exists || below.local || below.remote => Decision::Nothing,
        Some(_) => d,
    }
}

/// Whether the path exists (locally, remotely) after `d` runs.
fn after(s: &PathState, d: Decision) -> (bool, bool) {
    match d {
        Decision::DeleteLocal | Decision::DeleteRemote { .. } | Decision::ForgetBase => (false, false),
        Decision::Nothing | Decision::NotUploaded(_) | Decision::NotDownloaded => {
            (s.local.is_some(), remote_live(s).is_some())
        }
        Decision::Upload { .. }
        | Decision::Download { .. }
        | Decision::RecordBase { .. }
        | Decision::Conflict { .. } => (true, true),
    }
}

/// Clears the decisions under a path that moves aside (its subtree moves with it), and under
/// a local file that this plan deletes while the server's entries below it live on (the
/// server deleted a directory there, and an edit inside it beat the deletion): what lives
/// below waits for the next pass, when the file is gone and the directory can be made.
fn defer_under_moved_paths(state: &FolderState, decisions: &mut BTreeMap<&RelPath, Decision>) {
    let moved: HashSet<&str> = decisions
        .iter()
        .filter(|&(p, d)| match d {
            Decision::Conflict { .. } => true,
            Decision::DeleteLocal => state[*p].local.as_ref().is_some_and(|l| l.kind != EntryKind::Dir),
            _ => false,
        })
        .map(|(p, _)| p.as_str())
        .collect();
    if moved.is_empty() {
        return;
    }
    for (path, d) in decisions.iter_mut() {
        if path.ancestors().any(|a| moved.contains(a)) {
            *d = Decision::Nothing;
        }
    }
}

/// Stage 3: the actions in contract order. `decisions` iterates in path order, where a parent
/// comes before its children; deletions run in reverse, children first.
fn emit(state: &FolderState, decisions: &BTreeMap<&RelPath, Decision>, ctx: &PlanContext) -> Vec<Action> {
    let mut taken = Taken::new(state);
    let mut moves = Vec::new();
    let mut downloads = Vec::new();
    let mut uploads = Vec::new();
    let mut local_deletes = Vec::new();
    let mut remote_deletes = Vec::new();
    let mut bookkeeping = Vec::new();
    let mut held = Vec::new();
    for (&path, &d) in decisions {
        let path = path.clone();
        match d {
            Decision::Nothing => {}
            Decision::NotUploaded(why) => held.push(Action::NotUploaded { path, why }),
            Decision::NotDownloaded => held.push(Action::NotDownloaded { path }),
            Decision::Conflict { rev } => {
                let copy = taken.claim_copy_name(&path, ctx);
                moves.push(Action::MoveLocalAside { path: path.clone(), copy });
                // (A file in the way of entries below a directory the server deleted: nothing
                // to download at the path itself.)
                if remote_live(&state[&path]).is_some() {
                    downloads.push(Action::Download { path, rev });
                }
            }
            Decision::Download { rev } => downloads.push(Action::Download { path, rev }),
            Decision::Upload { base_rev } => uploads.push(Action::Upload { path, base_rev }),
            Decision::DeleteLocal => local_deletes.push(Action::DeleteLocal { path }),
            Decision::DeleteRemote { base_rev } => remote_deletes.push(Action::DeleteRemote { path, base_rev }),
            Decision::RecordBase { rev } => bookkeeping.push(Action::RecordBase { path, rev }),
            Decision::ForgetBase => bookkeeping.push(Action::ForgetBase { path }),
        }
    }
    local_deletes.reverse();
    remote_deletes.reverse();
    let mut actions = moves;
    actions.extend(downloads);
    actions.extend(uploads);
    actions.extend(local_deletes);
    actions.extend(remote_deletes);
    actions.extend(bookkeeping);
    actions.extend(held);
    actions
}

/// Names a conflict copy may not take: every path of the state and every directory above
/// one, and the copies already chosen in this plan. Compared without case, so that a copy
/// cannot collide with a name on a case-insensitive disk (Windows, macOS) either.
struct Taken(HashSet<String>);

impl Taken {
    fn new(state: &FolderState) -> Taken {
        let mut names = HashSet::new();
        for path in state.keys() {
            names.insert(path.as_str().to_lowercase());
            names.extend(path.ancestors().map(str::to_lowercase));
        }
        Taken(names)
    }

    /// The first free conflict-copy name for `path`, counting attempts up from 0; claimed so
    /// that no other copy of this plan gets it. Each attempt gives a different name, so this
    /// ends after at most as many attempts as there are names taken.
    fn claim_copy_name(&mut self, path: &RelPath, ctx: &PlanContext) -> RelPath {
        let copy = (0u32..)
            .map(|attempt| conflict_copy_path(path, &ctx.device_name, ctx.now_unix, attempt))
            .find(|c| !self.0.contains(&c.as_str().to_lowercase()))
            .expect("a free conflict-copy name exists");
        self.0.insert(copy.as_str().to_lowercase());
        copy
    }
}

#[cfg(test)]
mod tests;
