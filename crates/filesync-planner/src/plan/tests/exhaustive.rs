//! Exhaustive tests: every combination of local, base and remote for one path against an
//! explicit table of expected actions, and every valid combination of a directory and a path
//! inside it run to a stable state without losing a version.

use super::sim::*;
use crate::{Action, Direction, FolderState, PathState, PlanContext};
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
    /// Download-only: reported as not uploaded.
    NotUp,
    /// Upload-only: reported as not downloaded.
    NotDown,
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
        NotUp => vec![Action::NotUploaded { path: p(path), why: crate::Held::DownloadOnly }],
        NotDown => vec![Action::NotDownloaded { path: p(path) }],
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

/// Upload-only: the local folder is never changed; a remote-only change is `NotDown`.
#[rustfmt::skip]
const UPLOAD_ONLY: [(Loc, Bas, Rem, Exp); 72] = [
    (LAbsent, BNone,  RNone,  Nothing),
    (LAbsent, BNone,  RSame,  NotDown),
    (LAbsent, BNone,  RFileB, NotDown),
    (LAbsent, BNone,  RFileC, NotDown),
    (LAbsent, BNone,  RDir,   NotDown),
    (LAbsent, BNone,  RTomb,  Nothing),
    (LFileA,  BNone,  RNone,  Up(0)),
    (LFileA,  BNone,  RSame,  Record(5)),
    (LFileA,  BNone,  RFileB, Up(9)),
    (LFileA,  BNone,  RFileC, Up(9)),
    (LFileA,  BNone,  RDir,   Up(9)),
    (LFileA,  BNone,  RTomb,  Up(9)),
    (LFileB,  BNone,  RNone,  Up(0)),
    (LFileB,  BNone,  RSame,  Up(5)),
    (LFileB,  BNone,  RFileB, Record(9)),
    (LFileB,  BNone,  RFileC, Up(9)),
    (LFileB,  BNone,  RDir,   Up(9)),
    (LFileB,  BNone,  RTomb,  Up(9)),
    (LDir,    BNone,  RNone,  Up(0)),
    (LDir,    BNone,  RSame,  Up(5)),
    (LDir,    BNone,  RFileB, Up(9)),
    (LDir,    BNone,  RFileC, Up(9)),
    (LDir,    BNone,  RDir,   Record(9)),
    (LDir,    BNone,  RTomb,  Up(9)),
    (LAbsent, BFileA, RNone,  Forget),
    (LAbsent, BFileA, RSame,  DelRemote(5)),
    (LAbsent, BFileA, RFileB, DelRemote(9)),     // deleted here: goes over the remote edit
    (LAbsent, BFileA, RFileC, DelRemote(9)),
    (LAbsent, BFileA, RDir,   DelRemote(9)),
    (LAbsent, BFileA, RTomb,  Forget),
    (LFileA,  BFileA, RNone,  Up(0)),
    (LFileA,  BFileA, RSame,  Nothing),
    (LFileA,  BFileA, RFileB, NotDown),         // remote edit: not applied here
    (LFileA,  BFileA, RFileC, NotDown),
    (LFileA,  BFileA, RDir,   NotDown),
    (LFileA,  BFileA, RTomb,  NotDown),         // remote delete: not applied here
    (LFileB,  BFileA, RNone,  Up(0)),
    (LFileB,  BFileA, RSame,  Up(5)),
    (LFileB,  BFileA, RFileB, Record(9)),
    (LFileB,  BFileA, RFileC, Up(9)),            // both edited: local goes over remote
    (LFileB,  BFileA, RDir,   Up(9)),
    (LFileB,  BFileA, RTomb,  Up(9)),
    (LDir,    BFileA, RNone,  Up(0)),
    (LDir,    BFileA, RSame,  Up(5)),
    (LDir,    BFileA, RFileB, Up(9)),
    (LDir,    BFileA, RFileC, Up(9)),
    (LDir,    BFileA, RDir,   Record(9)),
    (LDir,    BFileA, RTomb,  Up(9)),
    (LAbsent, BDir,   RNone,  Forget),
    (LAbsent, BDir,   RSame,  DelRemote(5)),
    (LAbsent, BDir,   RFileB, DelRemote(9)),
    (LAbsent, BDir,   RFileC, DelRemote(9)),
    (LAbsent, BDir,   RDir,   DelRemote(9)),
    (LAbsent, BDir,   RTomb,  Forget),
    (LFileA,  BDir,   RNone,  Up(0)),
    (LFileA,  BDir,   RSame,  Up(5)),
    (LFileA,  BDir,   RFileB, Up(9)),
    (LFileA,  BDir,   RFileC, Up(9)),
    (LFileA,  BDir,   RDir,   Up(9)),
    (LFileA,  BDir,   RTomb,  Up(9)),
    (LFileB,  BDir,   RNone,  Up(0)),
    (LFileB,  BDir,   RSame,  Up(5)),
    (LFileB,  BDir,   RFileB, Record(9)),
    (LFileB,  BDir,   RFileC, Up(9)),
    (LFileB,  BDir,   RDir,   Up(9)),
    (LFileB,  BDir,   RTomb,  Up(9)),
    (LDir,    BDir,   RNone,  Up(0)),
    (LDir,    BDir,   RSame,  Nothing),
    (LDir,    BDir,   RFileB, NotDown),
    (LDir,    BDir,   RFileC, NotDown),
    (LDir,    BDir,   RDir,   Record(9)),       // only the rev moved
    (LDir,    BDir,   RTomb,  NotDown),
];
/// Download-only: nothing is sent; a local-only change is `NotUp`; a conflict keeps a copy.
#[rustfmt::skip]
const DOWNLOAD_ONLY: [(Loc, Bas, Rem, Exp); 72] = [
    (LAbsent, BNone,  RNone,  Nothing),
    (LAbsent, BNone,  RSame,  Down(5)),
    (LAbsent, BNone,  RFileB, Down(9)),
    (LAbsent, BNone,  RFileC, Down(9)),
    (LAbsent, BNone,  RDir,   Down(9)),
    (LAbsent, BNone,  RTomb,  Nothing),
    (LFileA,  BNone,  RNone,  NotUp),
    (LFileA,  BNone,  RSame,  Record(5)),
    (LFileA,  BNone,  RFileB, Conflict(9)),
    (LFileA,  BNone,  RFileC, Conflict(9)),
    (LFileA,  BNone,  RDir,   Conflict(9)),
    (LFileA,  BNone,  RTomb,  NotUp),
    (LFileB,  BNone,  RNone,  NotUp),
    (LFileB,  BNone,  RSame,  Conflict(5)),
    (LFileB,  BNone,  RFileB, Record(9)),
    (LFileB,  BNone,  RFileC, Conflict(9)),
    (LFileB,  BNone,  RDir,   Conflict(9)),
    (LFileB,  BNone,  RTomb,  NotUp),
    (LDir,    BNone,  RNone,  NotUp),
    (LDir,    BNone,  RSame,  Conflict(5)),
    (LDir,    BNone,  RFileB, Conflict(9)),
    (LDir,    BNone,  RFileC, Conflict(9)),
    (LDir,    BNone,  RDir,   Record(9)),
    (LDir,    BNone,  RTomb,  NotUp),
    (LAbsent, BFileA, RNone,  Forget),
    (LAbsent, BFileA, RSame,  NotUp),           // local delete: not sent
    (LAbsent, BFileA, RFileB, Down(9)),
    (LAbsent, BFileA, RFileC, Down(9)),
    (LAbsent, BFileA, RDir,   Down(9)),
    (LAbsent, BFileA, RTomb,  Forget),
    (LFileA,  BFileA, RNone,  NotUp),
    (LFileA,  BFileA, RSame,  Nothing),
    (LFileA,  BFileA, RFileB, Down(9)),
    (LFileA,  BFileA, RFileC, Down(9)),
    (LFileA,  BFileA, RDir,   Down(9)),
    (LFileA,  BFileA, RTomb,  DelLocal),
    (LFileB,  BFileA, RNone,  NotUp),
    (LFileB,  BFileA, RSame,  NotUp),           // local edit: not uploaded
    (LFileB,  BFileA, RFileB, Record(9)),
    (LFileB,  BFileA, RFileC, Conflict(9)),      // both edited: local kept as a copy
    (LFileB,  BFileA, RDir,   Conflict(9)),
    (LFileB,  BFileA, RTomb,  NotUp),           // edit beats delete: kept, not sent
    (LDir,    BFileA, RNone,  NotUp),
    (LDir,    BFileA, RSame,  NotUp),
    (LDir,    BFileA, RFileB, Conflict(9)),
    (LDir,    BFileA, RFileC, Conflict(9)),
    (LDir,    BFileA, RDir,   Record(9)),
    (LDir,    BFileA, RTomb,  NotUp),
    (LAbsent, BDir,   RNone,  Forget),
    (LAbsent, BDir,   RSame,  NotUp),
    (LAbsent, BDir,   RFileB, Down(9)),
    (LAbsent, BDir,   RFileC, Down(9)),
    (LAbsent, BDir,   RDir,   Down(9)),
    (LAbsent, BDir,   RTomb,  Forget),
    (LFileA,  BDir,   RNone,  NotUp),
    (LFileA,  BDir,   RSame,  NotUp),
    (LFileA,  BDir,   RFileB, Conflict(9)),
    (LFileA,  BDir,   RFileC, Conflict(9)),
    (LFileA,  BDir,   RDir,   Conflict(9)),
    (LFileA,  BDir,   RTomb,  NotUp),
    (LFileB,  BDir,   RNone,  NotUp),
    (LFileB,  BDir,   RSame,  NotUp),
    (LFileB,  BDir,   RFileB, Record(9)),
    (LFileB,  BDir,   RFileC, Conflict(9)),
    (LFileB,  BDir,   RDir,   Conflict(9)),
    (LFileB,  BDir,   RTomb,  NotUp),
    (LDir,    BDir,   RNone,  NotUp),
    (LDir,    BDir,   RSame,  Nothing),
    (LDir,    BDir,   RFileB, Down(9)),
    (LDir,    BDir,   RFileC, Down(9)),
    (LDir,    BDir,   RDir,   Down(9)),
    (LDir,    BDir,   RTomb,  DelLocal),
];
/// Revert remote (upload-only): the server is made equal to this computer.
#[rustfmt::skip]
const REVERT_REMOTE: [(Loc, Bas, Rem, Exp); 72] = [
    (LAbsent, BNone,  RNone,  Nothing),
    (LAbsent, BNone,  RSame,  DelRemote(5)),     // remote-only: deleted
    (LAbsent, BNone,  RFileB, DelRemote(9)),
    (LAbsent, BNone,  RFileC, DelRemote(9)),
    (LAbsent, BNone,  RDir,   DelRemote(9)),
    (LAbsent, BNone,  RTomb,  Nothing),
    (LFileA,  BNone,  RNone,  Up(0)),
    (LFileA,  BNone,  RSame,  Record(5)),
    (LFileA,  BNone,  RFileB, Up(9)),
    (LFileA,  BNone,  RFileC, Up(9)),
    (LFileA,  BNone,  RDir,   Up(9)),
    (LFileA,  BNone,  RTomb,  Up(9)),
    (LFileB,  BNone,  RNone,  Up(0)),
    (LFileB,  BNone,  RSame,  Up(5)),
    (LFileB,  BNone,  RFileB, Record(9)),
    (LFileB,  BNone,  RFileC, Up(9)),
    (LFileB,  BNone,  RDir,   Up(9)),
    (LFileB,  BNone,  RTomb,  Up(9)),
    (LDir,    BNone,  RNone,  Up(0)),
    (LDir,    BNone,  RSame,  Up(5)),
    (LDir,    BNone,  RFileB, Up(9)),
    (LDir,    BNone,  RFileC, Up(9)),
    (LDir,    BNone,  RDir,   Record(9)),
    (LDir,    BNone,  RTomb,  Up(9)),
    (LAbsent, BFileA, RNone,  Forget),
    (LAbsent, BFileA, RSame,  DelRemote(5)),
    (LAbsent, BFileA, RFileB, DelRemote(9)),
    (LAbsent, BFileA, RFileC, DelRemote(9)),
    (LAbsent, BFileA, RDir,   DelRemote(9)),
    (LAbsent, BFileA, RTomb,  Forget),
    (LFileA,  BFileA, RNone,  Up(0)),
    (LFileA,  BFileA, RSame,  Nothing),
    (LFileA,  BFileA, RFileB, Up(9)),            // remote edit: replaced by local
    (LFileA,  BFileA, RFileC, Up(9)),
    (LFileA,  BFileA, RDir,   Up(9)),
    (LFileA,  BFileA, RTomb,  Up(9)),
    (LFileB,  BFileA, RNone,  Up(0)),
    (LFileB,  BFileA, RSame,  Up(5)),
    (LFileB,  BFileA, RFileB, Record(9)),
    (LFileB,  BFileA, RFileC, Up(9)),
    (LFileB,  BFileA, RDir,   Up(9)),
    (LFileB,  BFileA, RTomb,  Up(9)),
    (LDir,    BFileA, RNone,  Up(0)),
    (LDir,    BFileA, RSame,  Up(5)),
    (LDir,    BFileA, RFileB, Up(9)),
    (LDir,    BFileA, RFileC, Up(9)),
    (LDir,    BFileA, RDir,   Record(9)),
    (LDir,    BFileA, RTomb,  Up(9)),
    (LAbsent, BDir,   RNone,  Forget),
    (LAbsent, BDir,   RSame,  DelRemote(5)),
    (LAbsent, BDir,   RFileB, DelRemote(9)),
    (LAbsent, BDir,   RFileC, DelRemote(9)),
    (LAbsent, BDir,   RDir,   DelRemote(9)),
    (LAbsent, BDir,   RTomb,  Forget),
    (LFileA,  BDir,   RNone,  Up(0)),
    (LFileA,  BDir,   RSame,  Up(5)),
    (LFileA,  BDir,   RFileB, Up(9)),
    (LFileA,  BDir,   RFileC, Up(9)),
    (LFileA,  BDir,   RDir,   Up(9)),
    (LFileA,  BDir,   RTomb,  Up(9)),
    (LFileB,  BDir,   RNone,  Up(0)),
    (LFileB,  BDir,   RSame,  Up(5)),
    (LFileB,  BDir,   RFileB, Record(9)),
    (LFileB,  BDir,   RFileC, Up(9)),
    (LFileB,  BDir,   RDir,   Up(9)),
    (LFileB,  BDir,   RTomb,  Up(9)),
    (LDir,    BDir,   RNone,  Up(0)),
    (LDir,    BDir,   RSame,  Nothing),
    (LDir,    BDir,   RFileB, Up(9)),
    (LDir,    BDir,   RFileC, Up(9)),
    (LDir,    BDir,   RDir,   Record(9)),
    (LDir,    BDir,   RTomb,  Up(9)),
];
/// Revert local (download-only): this computer is made equal to the server.
#[rustfmt::skip]
const REVERT_LOCAL: [(Loc, Bas, Rem, Exp); 72] = [
    (LAbsent, BNone,  RNone,  Nothing),
    (LAbsent, BNone,  RSame,  Down(5)),
    (LAbsent, BNone,  RFileB, Down(9)),
    (LAbsent, BNone,  RFileC, Down(9)),
    (LAbsent, BNone,  RDir,   Down(9)),
    (LAbsent, BNone,  RTomb,  Nothing),
    (LFileA,  BNone,  RNone,  DelLocal),
    (LFileA,  BNone,  RSame,  Record(5)),
    (LFileA,  BNone,  RFileB, Down(9)),
    (LFileA,  BNone,  RFileC, Down(9)),
    (LFileA,  BNone,  RDir,   Down(9)),
    (LFileA,  BNone,  RTomb,  DelLocal),
    (LFileB,  BNone,  RNone,  DelLocal),        // local-only: removed
    (LFileB,  BNone,  RSame,  Down(5)),
    (LFileB,  BNone,  RFileB, Record(9)),
    (LFileB,  BNone,  RFileC, Down(9)),
    (LFileB,  BNone,  RDir,   Down(9)),
    (LFileB,  BNone,  RTomb,  DelLocal),
    (LDir,    BNone,  RNone,  DelLocal),
    (LDir,    BNone,  RSame,  Down(5)),
    (LDir,    BNone,  RFileB, Down(9)),
    (LDir,    BNone,  RFileC, Down(9)),
    (LDir,    BNone,  RDir,   Record(9)),
    (LDir,    BNone,  RTomb,  DelLocal),
    (LAbsent, BFileA, RNone,  Forget),
    (LAbsent, BFileA, RSame,  Down(5)),
    (LAbsent, BFileA, RFileB, Down(9)),
    (LAbsent, BFileA, RFileC, Down(9)),
    (LAbsent, BFileA, RDir,   Down(9)),
    (LAbsent, BFileA, RTomb,  Forget),
    (LFileA,  BFileA, RNone,  DelLocal),
    (LFileA,  BFileA, RSame,  Nothing),
    (LFileA,  BFileA, RFileB, Down(9)),
    (LFileA,  BFileA, RFileC, Down(9)),
    (LFileA,  BFileA, RDir,   Down(9)),
    (LFileA,  BFileA, RTomb,  DelLocal),
    (LFileB,  BFileA, RNone,  DelLocal),
    (LFileB,  BFileA, RSame,  Down(5)),          // local edit: replaced
    (LFileB,  BFileA, RFileB, Record(9)),
    (LFileB,  BFileA, RFileC, Down(9)),
    (LFileB,  BFileA, RDir,   Down(9)),
    (LFileB,  BFileA, RTomb,  DelLocal),
    (LDir,    BFileA, RNone,  DelLocal),
    (LDir,    BFileA, RSame,  Down(5)),
    (LDir,    BFileA, RFileB, Down(9)),
    (LDir,    BFileA, RFileC, Down(9)),
    (LDir,    BFileA, RDir,   Record(9)),
    (LDir,    BFileA, RTomb,  DelLocal),
    (LAbsent, BDir,   RNone,  Forget),
    (LAbsent, BDir,   RSame,  Down(5)),
    (LAbsent, BDir,   RFileB, Down(9)),
    (LAbsent, BDir,   RFileC, Down(9)),
    (LAbsent, BDir,   RDir,   Down(9)),
    (LAbsent, BDir,   RTomb,  Forget),
    (LFileA,  BDir,   RNone,  DelLocal),
    (LFileA,  BDir,   RSame,  Down(5)),
    (LFileA,  BDir,   RFileB, Down(9)),
    (LFileA,  BDir,   RFileC, Down(9)),
    (LFileA,  BDir,   RDir,   Down(9)),
    (LFileA,  BDir,   RTomb,  DelLocal),
    (LFileB,  BDir,   RNone,  DelLocal),
    (LFileB,  BDir,   RSame,  Down(5)),
    (LFileB,  BDir,   RFileB, Record(9)),
    (LFileB,  BDir,   RFileC, Down(9)),
    (LFileB,  BDir,   RDir,   Down(9)),
    (LFileB,  BDir,   RTomb,  DelLocal),
    (LDir,    BDir,   RNone,  DelLocal),
    (LDir,    BDir,   RSame,  Nothing),
    (LDir,    BDir,   RFileB, Down(9)),
    (LDir,    BDir,   RFileC, Down(9)),
    (LDir,    BDir,   RDir,   Record(9)),
    (LDir,    BDir,   RTomb,  DelLocal),
];

/// The tables of the one-way directions and reverts, with their contexts.
type DirectionTable = [(Loc, Bas, Rem, Exp); 72];
fn direction_tables() -> [(PlanContext, &'static DirectionTable); 4] {
    [
        (ctx_in(Direction::UploadOnly, false), &UPLOAD_ONLY),
        (ctx_in(Direction::DownloadOnly, false), &DOWNLOAD_ONLY),
        (ctx_in(Direction::UploadOnly, true), &REVERT_REMOTE),
        (ctx_in(Direction::DownloadOnly, true), &REVERT_LOCAL),
    ]
}

#[test]
fn direction_tables_cover_every_combination_once() {
    for (ctx, table) in direction_tables() {
        for l in ALL_LOC {
            for b in ALL_BASE {
                for r in ALL_REM {
                    let n = table.iter().filter(|(tl, tb, tr, _)| (*tl, *tb, *tr) == (l, b, r)).count();
                    assert_eq!(
                        n, 1,
                        "{:?} (revert {}): {l:?} {b:?} {r:?} is listed {n} times",
                        ctx.direction, ctx.revert
                    );
                }
            }
        }
    }
}

#[test]
fn every_single_path_case_plans_the_expected_actions_in_each_direction() {
    for (ctx, table) in direction_tables() {
        for &(l, b, r, e) in table.iter() {
            let s = path_state(l, b, r);
            let cases: [(&str, FolderState); 2] =
                [("f", folder([("f", s.clone())])), ("d/f", folder([("d", synced(3, dir())), ("d/f", s.clone())]))];
            for (path, state) in cases {
                let case = format!("{:?} (revert {}): {l:?} {b:?} {r:?} at {path}", ctx.direction, ctx.revert);
                let plan = checked_plan_in(&state, &ctx);
                assert_eq!(plan, expected_actions(path, e), "{case}");
                // Runs it to a settled state, checking the direction's promises on the way.
                if let Err(err) = sync_until_stable_in(&state, &ctx) {
                    panic!("{case}: {err}");
                }
            }
        }
    }
}

#[test]
fn every_valid_directory_and_child_combination_settles_in_each_direction() {
    for (ctx, _) in direction_tables() {
        let mut cases = 0;
        for parent in TABLE.iter().map(|(l, b, r, _)| path_state(*l, *b, *r)) {
            for child in TABLE.iter().map(|(l, b, r, _)| path_state(*l, *b, *r)) {
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
                if let Err(err) = sync_until_stable_in(&state, &ctx) {
                    panic!("{:?} (revert {}): {err}\nstate: {state:#?}", ctx.direction, ctx.revert);
                }
            }
        }
        assert!(cases > 600, "only {cases} valid combinations");
    }
}
