//! Property tests on random folder states. Valid trees (what the scanner, the server and the
//! state database produce) are synced in the in-memory executor until both sides agree;
//! arbitrary states, trees or not, must still give a deterministic plan that keeps the
//! contract and never deletes a changed version.

use super::sim::*;
use crate::{Base, FolderState, PathState, PlanContext, Remote, plan};
use filesync_core::{EntryKind, FileMeta};
use proptest::prelude::*;

/// A small tree: nested directories, siblings, and names that sort between a directory and
/// its children (`a!`).
const PATHS: [&str; 9] = ["a", "a/b", "a/b/c", "a/b/d", "a/e", "a!", "f", "f/g", "f/g/h"];

/// 0: nothing; then a directory, two file contents, and the first content made executable.
fn version(n: u8) -> Option<FileMeta> {
    match n % 5 {
        0 => None,
        1 => Some(dir()),
        2 => Some(file(0)),
        3 => Some(file(1)),
        _ => Some(exe(0)),
    }
}

fn is_dir(m: Option<&FileMeta>) -> bool {
    m.is_some_and(|m| m.kind == EntryKind::Dir)
}

/// Per path: (base, local, remote, touch the local mtime). A local or remote selector below 3
/// keeps the base, so that one-sided changes are common.
type Choice = (u8, u8, u8, bool);

/// Builds a valid tree from choices: a path is dropped from a view (or, on the server, made
/// a tombstone) when its parent is not a directory in that view.
fn valid_state(choices: &[Choice]) -> FolderState {
    let mut state = FolderState::new();
    for (i, (&name, &(b, l, r, touch))) in PATHS.iter().zip(choices).enumerate() {
        let path = p(name);
        let parent = path.parent().map(|pp| state.get(&pp).cloned().unwrap_or_default());
        let parent_ok = |view: fn(&PathState) -> Option<&FileMeta>| parent.as_ref().is_none_or(|pp| is_dir(view(pp)));
        let rev = i as u64 + 10;
        let new_rev = i as u64 + 100;

        let base =
            version(b).map(|meta| Base { rev, meta }).filter(|_| parent_ok(|s| s.base.as_ref().map(|b| &b.meta)));
        let mut local = if l < 3 { base.as_ref().map(|b| b.meta.clone()) } else { version(l - 3) };
        if touch {
            local = local.map(touched);
        }
        let local = local.filter(|_| parent_ok(|s| s.local.as_ref()));
        let remote = match r {
            0..=2 => base.as_ref().map(|b| Remote { rev: b.rev, meta: Some(b.meta.clone()) }),
            3 => None,
            4 => tomb(new_rev),
            5 => live(new_rev, dir()),
            6 => live(new_rev, file(1)),
            _ => live(new_rev, file(2)),
        };
        let remote = match remote {
            Some(r) if r.meta.is_some() && !parent_ok(|s| s.remote.as_ref().and_then(|r| r.meta.as_ref())) => {
                tomb(new_rev + 100)
            }
            r => r,
        };
        let s = PathState { local, base, remote };
        if s != PathState::default() {
            state.insert(path, s);
        }
    }
    assert!(is_valid_tree(&state));
    state
}

fn choices() -> impl Strategy<Value = Vec<Choice>> {
    prop::collection::vec((0u8..5, 0u8..8, 0u8..8, any::<bool>()), PATHS.len())
}

/// Paths for arbitrary states, including names that a conflict copy of `a` would take.
const ANY_PATHS: [&str; 10] = [
    "a",
    "a/b",
    "a/b/c",
    "a!",
    "b",
    "b/a",
    "c/d",
    "a (conflicted copy from laptop 2026-11-24 230105)",
    "a (conflicted copy from laptop 2026-11-24 230105 2)",
    "b/a (conflicted copy from laptop 2026-11-24 230105)",
];

fn any_meta() -> impl Strategy<Value = FileMeta> {
    prop_oneof![Just(dir()), (0u8..3).prop_map(file), (0u8..2).prop_map(exe), (0u8..2).prop_map(|n| touched(file(n)))]
}

fn any_path_state() -> impl Strategy<Value = PathState> {
    (
        prop::option::of(any_meta()),
        prop::option::of((0u64..4, any_meta())),
        prop::option::of((0u64..4, prop::option::of(any_meta()))),
    )
        .prop_map(|(local, base, remote)| PathState {
            local,
            base: base.map(|(rev, meta)| Base { rev, meta }),
            remote: remote.map(|(rev, meta)| Remote { rev, meta }),
        })
}

fn any_state() -> impl Strategy<Value = FolderState> {
    prop::collection::btree_map(
        prop::sample::select(ANY_PATHS.to_vec()).prop_map(p),
        any_path_state(),
        0..ANY_PATHS.len(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Valid trees: the plan keeps the contract, every step is valid, nothing is lost, the
    /// trees stay trees, and repeated passes reach a state where both sides agree.
    #[test]
    fn valid_trees_sync_without_loss(choices in choices()) {
        let state = valid_state(&choices);
        if let Err(e) = sync_until_stable(&state) {
            prop_assert!(false, "{}\nstate: {:#?}", e, state);
        }
    }

    /// Valid trees under every one-way direction and revert: each pass keeps the contract and
    /// the direction's promise (upload-only never touches the local folder, download-only
    /// never the server and loses no local version), and the passes settle.
    #[test]
    fn valid_trees_settle_in_every_direction(choices in choices(), which in 0usize..4) {
        let state = valid_state(&choices);
        let (direction, revert) = [
            (crate::Direction::UploadOnly, false),
            (crate::Direction::DownloadOnly, false),
            (crate::Direction::UploadOnly, true),
            (crate::Direction::DownloadOnly, true),
        ][which];
        if let Err(e) = sync_until_stable_in(&state, &ctx_in(direction, revert)) {
            prop_assert!(false, "{:?} (revert {}): {}\nstate: {:#?}", direction, revert, e, state);
        }
    }

    /// Any state at all: no panic, the same plan twice, and the contract holds (order, one
    /// action per path, fresh copy names, deletions only of unchanged versions).
    #[test]
    fn any_state_gets_a_deterministic_plan_that_keeps_the_contract(
        state in any_state(),
        device in "[a-zA-Z0-9 ._-]{0,12}",
        now in 0i64..4_000_000_000,
    ) {
        let ctx = PlanContext::new(device, now);
        let actions = plan(&state, &ctx);
        prop_assert_eq!(&actions, &plan(&state, &ctx));
        if let Err(e) = check_plan(&state, &actions) {
            prop_assert!(false, "{}\nstate: {:#?}\nplan: {:#?}", e, state, actions);
        }
    }
}
