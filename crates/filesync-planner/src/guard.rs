//! The mass-delete guard: a pure decision on a plan. When one pass would delete remotely more
//! than a set share of the folder's synced files *and* more than a set number of them, the
//! deletions are far more likely an accident (an unmounted drive, a wiped or half-restored
//! folder) than a wish, and the agent holds them back until the user confirms.

use crate::{Action, FolderState};
use filesync_core::EntryKind;

/// The guard's thresholds (a folder setting).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Guard {
    /// Trips above this share of the synced files, in percent.
    pub percent: u32,
    /// ... and above this many files.
    pub min_files: u64,
}

impl Default for Guard {
    fn default() -> Self {
        Guard { percent: 50, min_files: 100 }
    }
}

/// A tripped guard: what the plan would have deleted, out of how many synced files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MassDelete {
    /// Files (not directories) the plan deletes on the server.
    pub deletes: u64,
    /// Files with a synced base before the plan.
    pub files: u64,
}

/// Checks `plan` (made from `state`) against the guard: `Some` when it deletes remotely more
/// than `guard.percent` % of the synced files and more than `guard.min_files` files. The
/// synced files are those of `state`, or `synced_files` when `state` holds only part of the
/// folder (an incremental pass).
pub fn mass_delete(
    state: &FolderState,
    plan: &[Action],
    guard: Guard,
    synced_files: Option<u64>,
) -> Option<MassDelete> {
    let in_state =
        || state.values().filter(|s| s.base.as_ref().is_some_and(|b| b.meta.kind == EntryKind::File)).count();
    let files = synced_files.unwrap_or_else(|| in_state() as u64);
    mass_delete_of(remote_file_deletes(state, plan), files, guard)
}

/// Files (not directories) that `plan` (made from `state`) deletes on the server: what the
/// guard weighs, summed over the parts of a pass planned one after another.
pub fn remote_file_deletes(state: &FolderState, plan: &[Action]) -> u64 {
    let is_file = |p| state.get(p).and_then(|s| s.base.as_ref()).is_some_and(|b| b.meta.kind == EntryKind::File);
    plan.iter().filter(|a| matches!(a, Action::DeleteRemote { path, .. } if is_file(path))).count() as u64
}

/// The guard's decision on `deletes` remote file deletions out of `files` synced files.
pub fn mass_delete_of(deletes: u64, files: u64, guard: Guard) -> Option<MassDelete> {
    let share = u128::from(deletes) * 100 > u128::from(guard.percent) * u128::from(files);
    (deletes > guard.min_files && share).then_some(MassDelete { deletes, files })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Base, PathState, Remote};
    use filesync_core::{FileMeta, Hash, RelPath};

    fn file() -> FileMeta {
        FileMeta { kind: EntryKind::File, size: 1, mtime_ns: 1, executable: false, hash: Hash([1; 32]), chunks: vec![] }
    }

    /// `total` synced files in `d/`, of which the first `deleted` are gone locally.
    fn folder(total: usize, deleted: usize) -> (FolderState, Vec<Action>) {
        let mut state = FolderState::new();
        let dir = FileMeta::dir(1);
        state.insert(
            RelPath::new("d").unwrap(),
            PathState {
                local: (deleted < total).then(|| dir.clone()),
                base: Some(Base { rev: 1, meta: dir.clone() }),
                remote: Some(Remote { rev: 1, meta: Some(dir) }),
            },
        );
        for i in 0..total {
            let local = (i >= deleted).then(file);
            let s = PathState {
                local,
                base: Some(Base { rev: 2, meta: file() }),
                remote: Some(Remote { rev: 2, meta: Some(file()) }),
            };
            state.insert(RelPath::new(format!("d/f{i:04}")).unwrap(), s);
        }
        let plan = crate::plan(&state, &crate::PlanContext::new("laptop", 0));
        (state, plan)
    }

    #[test]
    fn trips_only_above_both_the_share_and_the_count() {
        let g = Guard::default();
        // 80% of 200: both thresholds passed.
        let (s, p) = folder(200, 160);
        assert_eq!(mass_delete(&s, &p, g, None), Some(MassDelete { deletes: 160, files: 200 }));
        // 100% of 100 files: not more than 100 files.
        let (s, p) = folder(100, 100);
        assert_eq!(mass_delete(&s, &p, g, None), None);
        // 101 of 1000: not more than half.
        let (s, p) = folder(1000, 101);
        assert_eq!(mass_delete(&s, &p, g, None), None);
        // Exactly half of 400 (200 files) is not more than half.
        let (s, p) = folder(400, 200);
        assert_eq!(mass_delete(&s, &p, g, None), None);
        let (s, p) = folder(400, 201);
        assert!(mass_delete(&s, &p, g, None).is_some());
    }

    #[test]
    fn thresholds_are_settings_and_directories_do_not_count() {
        let (s, p) = folder(10, 6);
        assert!(p.iter().any(|a| matches!(a, Action::DeleteRemote { .. })));
        assert_eq!(
            mass_delete(&s, &p, Guard { percent: 50, min_files: 5 }, None),
            Some(MassDelete { deletes: 6, files: 10 })
        );
        assert_eq!(mass_delete(&s, &p, Guard { percent: 60, min_files: 5 }, None), None);
        assert_eq!(mass_delete(&s, &p, Guard { percent: 0, min_files: 6 }, None), None);
        // The whole folder, directory included: only the 10 files count.
        let (s, p) = folder(10, 10);
        let dirs = p.iter().filter(|a| a.path().as_str() == "d").count();
        assert_eq!(dirs, 1, "{p:?}");
        assert_eq!(
            mass_delete(&s, &p, Guard { percent: 0, min_files: 0 }, None),
            Some(MassDelete { deletes: 10, files: 10 })
        );
    }

    #[test]
    fn an_empty_folder_never_trips() {
        let (s, p) = folder(0, 0);
        assert_eq!(mass_delete(&s, &p, Guard { percent: 0, min_files: 0 }, None), None);
    }

    #[test]
    fn an_incremental_pass_weighs_deletions_against_the_whole_folder() {
        // The pass saw only the 150 files it deletes, of 1,000 synced: 15%, no trip.
        let (s, p) = folder(150, 150);
        assert!(mass_delete(&s, &p, Guard::default(), None).is_some(), "alone they would be 100%");
        assert_eq!(mass_delete(&s, &p, Guard::default(), Some(1000)), None);
        assert_eq!(mass_delete(&s, &p, Guard::default(), Some(200)), Some(MassDelete { deletes: 150, files: 200 }));
    }
}
