//! Exhaustive tests: every combination of local, base and remote for one path against an
//! explicit table of expected actions, and every valid combination of a directory and a path
//! inside it run to a stable state without losing a version.

use super::sim::*;
use crate::{Action, FolderState, PathState};
use filesync_core::FileMeta;

/// The local side. `FileA` is the base's content when the base is a file (with another
/// mtime, which is no change); `FileB` is an edit; `Dir` a directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Loc {
    LAbsent,
    LFileA,
    LFileB,
    LDir,
}

/// The base, at rev 5.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bas {
    BNone,
    BFileA,
    BDir,
}

/// The server. `RSame` is the base at rev 5 (a file A at rev 5 when there is no base);
/// every other version is at rev 9. `RNone`: the server has no entry at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rem {
    RNone,
    RSame,
    RFileB,
    RFileC,
    RDir,
    RTomb,
}

/// The expected plan for the path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Exp {
    Nothing,
    Up(u64),
    Down(u64),
    DelLocal,
    DelRemote(u64),
    Record(u64),
    Forget,
    /// Move the local version aside, download the remote one at this rev.
    Conflict(u64),
}

use Bas::*;
use Exp::*;
use Loc::*;
use Rem::*;

const ALL_LOC: [Loc; 4] = [LAbsent, LFileA, LFileB, LDir];
const ALL_BASE: [Bas; 3] = [BNone, BFileA, BDir];
const ALL_REM: [Rem; 6] = [RNone, RSame, RFileB, RFileC, RDir, RTomb];

#[rustfmt::skip]
const TABLE: [(Loc, Bas, Rem, Exp); 72] = [
    // Never synced: whatever exists is new; equal contents are recorded, different ones conflict.
    (LAbsent, BNone, RNone,  Nothing),
    (LAbsent, BNone, RSame,  Down(5)),
    (LAbsent, BNone, RFileB, Down(9)),
    (LAbsent, BNone, RFileC, Down(9)),
    (LAbsent, BNone, RDir,   Down(9)),
    (LAbsent, BNone, RTomb,  Nothing),
    (LFileA,  BNone, RNone,  Up(0)),
    (LFileA,  BNone, RSame,  Record(5)),
    (LFileA,  BNone, RFileB, Conflict(9)),
    (LFileA,  BNone, RFileC, Conflict(9)),
    (LFileA,  BNone, RDir,   Conflict(9)),
    (LFileA,  BNone, RTomb,  Up(9)),
    (LFileB,  BNone, RNone,  Up(0)),
    (LFileB,  BNone, RSame,  Conflict(5)),
    (LFileB,  BNone, RFileB, Record(9)),
    (LFileB,  BNone, RFileC, Conflict(9)),
    (LFileB,  BNone, RDir,   Conflict(9)),
    (LFileB,  BNone, RTomb,  Up(9)),
    (LDir,    BNone, RNone,  Up(0)),
    (LDir,    BNone, RSame,  Conflict(5)),
    (LDir,    BNone, RFileB, Conflict(9)),
    (LDir,    BNone, RFileC, Conflict(9)),
    (LDir,    BNone, RDir,   Record(9)),
    (LDir,    BNone, RTomb,  Up(9)),
    // Synced as file A.
    (LAbsent, BFileA, RNone,  Forget),        // deleted here, lost by the server
    (LAbsent, BFileA, RSame,  DelRemote(5)),
    (LAbsent, BFileA, RFileB, Down(9)),       // edit beats delete
    (LAbsent, BFileA, RFileC, Down(9)),
    (LAbsent, BFileA, RDir,   Down(9)),
    (LAbsent, BFileA, RTomb,  Forget),
    (LFileA,  BFileA, RNone,  Up(0)),         // the server lost it: offer it again
    (LFileA,  BFileA, RSame,  Nothing),       // only the mtime differs
    (LFileA,  BFileA, RFileB, Down(9)),
    (LFileA,  BFileA, RFileC, Down(9)),
    (LFileA,  BFileA, RDir,   Down(9)),
    (LFileA,  BFileA, RTomb,  DelLocal),
    (LFileB,  BFileA, RNone,  Up(0)),         // edit beats delete
    (LFileB,  BFileA, RSame,  Up(5)),
    (LFileB,  BFileA, RFileB, Record(9)),     // identical concurrent edits
    (LFileB,  BFileA, RFileC, Conflict(9)),
    (LFileB,  BFileA, RDir,   Conflict(9)),
    (LFileB,  BFileA, RTomb,  Up(9)),         // edit beats delete
    (LDir,    BFileA, RNone,  Up(0)),
    (LDir,    BFileA, RSame,  Up(5)),
    (LDir,    BFileA, RFileB, Conflict(9)),
    (LDir,    BFileA, RFileC, Conflict(9)),
    (LDir,    BFileA, RDir,   Record(9)),     // directories on both sides agree
    (LDir,    BFileA, RTomb,  Up(9)),
    // Synced as a directory.
    (LAbsent, BDir, RNone,  Forget),
    (LAbsent, BDir, RSame,  DelRemote(5)),
    (LAbsent, BDir, RFileB, Down(9)),
    (LAbsent, BDir, RFileC, Down(9)),
    (LAbsent, BDir, RDir,   Down(9)),
    (LAbsent, BDir, RTomb,  Forget),
    (LFileA,  BDir, RNone,  Up(0)),
    (LFileA,  BDir, RSame,  Up(5)),
    (LFileA,  BDir, RFileB, Conflict(9)),
    (LFileA,  BDir, RFileC, Conflict(9)),
    (LFileA,  BDir, RDir,   Conflict(9)),
    (LFileA,  BDir, RTomb,  Up(9)),
    (LFileB,  BDir, RNone,  Up(0)),
    (LFileB,  BDir, RSame,  Up(5)),
    (LFileB,  BDir, RFileB, Record(9)),
    (LFileB,  BDir, RFileC, Conflict(9)),
    (LFileB,  BDir, RDir,   Conflict(9)),
    (LFileB,  BDir, RTomb,  Up(9)),
    (LDir,    BDir, RNone,  Up(0)),         // the server lost it: offer it again
    (LDir,    BDir, RSame,  Nothing),
    (LDir,    BDir, RFileB, Down(9)),
    (LDir,    BDir, RFileC, Down(9)),
    (LDir,    BDir, RDir,   Down(9)),
    (LDir,    BDir, RTomb,  DelLocal),
];

fn base_meta(b: Bas) -> Option<FileMeta> {
    match b {
        BNone => None,
        BFileA => Some(file(1)),
        BDir => Some(dir()),
    }
}

fn path_state(l: Loc, b: Bas, r: Rem) -> PathState {
    let local = match l {
        LAbsent => None,
        LFileA => Some(touched(file(1))),
        LFileB => Some(file(2)),
        LDir => Some(dir()),
    };
    let remote = match r {
        RNone => None,
        RSame => live(5, base_meta(b).unwrap_or(file(1))),
        RFileB => live(9, file(2)),
        RFileC => live(9, file(3)),
        RDir => live(9, dir()),
        RTomb => tomb(9),
    };
    ps(local, base_meta(b).and_then(|m| base(5, m)), remote)
}

fn expected_actions(path: &str, e: Exp) -> Vec<Action> {
    match e {
        Nothing => vec![],
        Up(rev) => vec![up(path, rev)],
        Down(rev) => vec![down(path, rev)],
        DelLocal => vec![del_local(path)],
        DelRemote(rev) => vec![del_remote(path, rev)],
        Record(rev) => vec![record(path, rev)],
        Forget => vec![forget(path)],
        Conflict(rev) => vec![aside(path, copy_of(path, 0)), down(path, rev)],
    }
}

fn same_live_content(s: &PathState) -> bool {
    match (&s.local, s.remote.as_ref().and_then(|r| r.meta.as_ref())) {
        (Some(l), Some(r)) => l.same_content(r),
        _ => false,
    }
}

fn is_move(a: &Action) -> bool {
    matches!(a, Action::MoveLocalAside { .. })
}

#[test]
fn table_covers_every_combination_once() {
    for l in ALL_LOC {
        for b in ALL_BASE {
            for r in ALL_REM {
                let n = TABLE.iter().filter(|(tl, tb, tr, _)| (*tl, *tb, *tr) == (l, b, r)).count();
                assert_eq!(n, 1, "{l:?} {b:?} {r:?} is in the table {n} times");
            }
        }
    }
}

#[test]
fn every_single_path_case_plans_the_expected_actions_and_loses_nothing() {
    for (l, b, r, e) in TABLE {
        let s = path_state(l, b, r);
        // At the top of the folder, and inside a directory that is in sync.
        let cases: [(&str, FolderState); 2] =
            [("f", folder([("f", s.clone())])), ("d/f", folder([("d", synced(3, dir())), ("d/f", s.clone())]))];
        for (path, state) in cases {
            let case = format!("{l:?} {b:?} {r:?} at {path}");
            let plan = checked_plan(&state);
            assert_eq!(plan, expected_actions(path, e), "{case}");
            if same_live_content(&s) {
                assert!(!plan.iter().any(is_move), "{case}: equal contents are no conflict");
            }
            // Runs the plan and the next ones: every live version that is not merely the
            // synced one survives as the path or as a conflict copy, and the sides agree.
            if let Err(err) = sync_until_stable(&state) {
                panic!("{case}: {err}");
            }
        }
    }
}

#[test]
fn every_valid_directory_and_child_combination_syncs_without_loss() {
    let mut cases = 0;
    for parent in TABLE.iter().map(|(l, b, r, _)| path_state(*l, *b, *r)) {
        for child in TABLE.iter().map(|(l, b, r, _)| path_state(*l, *b, *r)) {
            // The child's revs are moved past the parent's so that every rev is its own.
            let child = PathState {
                base: child.base.map(|b| crate::Base { rev: b.rev + 100, ..b }),
                remote: child.remote.map(|r| crate::Remote { rev: r.rev + 100, ..r }),
                ..child
            };
            let state = folder([("d", parent.clone()), ("d/f", child.clone())]);
            if !is_valid_tree(&state) {
                continue;
            }
            cases += 1;
            let plan = checked_plan(&state);
            for (path, s) in &state {
                if same_live_content(s) {
                    assert!(!plan.iter().any(|a| is_move(a) && a.path() == path), "{state:#?}: {plan:#?}");
                }
            }
            if let Err(err) = sync_until_stable(&state) {
                panic!("{err}\nstate: {state:#?}");
            }
        }
    }
    assert!(cases > 600, "only {cases} valid combinations");
}
