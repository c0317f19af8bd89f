//! Named scenarios: one test per rule of the planner, each stating the folder state, the
//! exact plan, and where it matters what the folder looks like once both sides agree.

use super::sim::*;
use filesync_core::FileMeta;

fn local_at(w: &World, path: &str) -> Option<FileMeta> {
    w.local.get(&p(path)).cloned()
}

fn remote_at(w: &World, path: &str) -> Option<FileMeta> {
    w.remote.get(&p(path)).and_then(|r| r.meta.clone())
}

// ---- one path, one side -------------------------------------------------------------------

#[test]
fn nothing_changed_plans_nothing() {
    let state = folder([("d", synced(3, dir())), ("d/a.txt", synced(5, file(1)))]);
    assert_eq!(checked_plan(&state), vec![]);
}

#[test]
fn mtime_only_change_is_not_an_edit() {
    let state = folder([("a.txt", ps(Some(touched(file(1))), base(5, file(1)), live(5, file(1))))]);
    assert_eq!(checked_plan(&state), vec![]);
}

#[test]
fn executable_bit_change_is_an_edit() {
    let state = folder([("run.sh", ps(Some(exe(1)), base(5, file(1)), live(5, file(1))))]);
    assert_eq!(checked_plan(&state), vec![up("run.sh", 5)]);
}

#[test]
fn local_edit_is_uploaded_on_its_base_rev() {
    let state = folder([("a.txt", ps(Some(file(2)), base(5, file(1)), live(5, file(1))))]);
    assert_eq!(checked_plan(&state), vec![up("a.txt", 5)]);
}

#[test]
fn local_delete_is_sent_to_the_server() {
    let state = folder([("a.txt", ps(None, base(5, file(1)), live(5, file(1))))]);
    assert_eq!(checked_plan(&state), vec![del_remote("a.txt", 5)]);
}

#[test]
fn remote_edit_is_downloaded() {
    let state = folder([("a.txt", ps(Some(file(1)), base(5, file(1)), live(9, file(2))))]);
    assert_eq!(checked_plan(&state), vec![down("a.txt", 9)]);
}

#[test]
fn remote_delete_removes_the_unchanged_local_file() {
    let state = folder([("a.txt", ps(Some(touched(file(1))), base(5, file(1)), tomb(9)))]);
    assert_eq!(checked_plan(&state), vec![del_local("a.txt")]);
}

#[test]
fn new_files_on_either_side_are_transferred() {
    let state = folder([("mine.txt", ps(Some(file(1)), None, None)), ("theirs.txt", ps(None, None, live(9, file(2))))]);
    assert_eq!(checked_plan(&state), vec![down("theirs.txt", 9), up("mine.txt", 0)]);
}

#[test]
fn new_local_file_over_a_remote_tombstone_is_based_on_the_tombstone() {
    let state = folder([("a.txt", ps(Some(file(1)), None, tomb(12)))]);
    assert_eq!(checked_plan(&state), vec![up("a.txt", 12)]);
}

#[test]
fn remote_tombstone_of_an_unknown_path_is_ignored() {
    let state = folder([("gone.txt", ps(None, None, tomb(12)))]);
    assert_eq!(checked_plan(&state), vec![]);
}

#[test]
fn server_lost_entry_is_uploaded_again_never_deleted_locally() {
    let state = folder([
        ("kept.txt", ps(Some(file(1)), base(5, file(1)), None)),
        ("edited.txt", ps(Some(file(2)), base(6, file(1)), None)),
        ("gone.txt", ps(None, base(7, file(1)), None)),
    ]);
    assert_eq!(checked_plan(&state), vec![up("edited.txt", 0), up("kept.txt", 0), forget("gone.txt")]);
}

#[test]
fn remote_kind_change_is_downloaded() {
    let state = folder([("x", ps(Some(file(1)), base(5, file(1)), live(9, dir())))]);
    assert_eq!(checked_plan(&state), vec![down("x", 9)]);
    assert_syncs(&state);
}

#[test]
fn local_kind_change_is_uploaded() {
    let state = folder([("x", ps(Some(dir()), base(5, file(1)), live(5, file(1))))]);
    assert_eq!(checked_plan(&state), vec![up("x", 5)]);
    assert_syncs(&state);
}

// ---- both sides changed -------------------------------------------------------------------

#[test]
fn edit_vs_delete_keeps_edit() {
    let local_edit = folder([("a.txt", ps(Some(file(2)), base(5, file(1)), tomb(9)))]);
    assert_eq!(checked_plan(&local_edit), vec![up("a.txt", 9)]);
    let (w, _) = assert_syncs(&local_edit);
    assert_eq!(remote_at(&w, "a.txt"), Some(file(2)));

    let remote_edit = folder([("a.txt", ps(None, base(5, file(1)), live(9, file(2))))]);
    assert_eq!(checked_plan(&remote_edit), vec![down("a.txt", 9)]);
    let (w, _) = assert_syncs(&remote_edit);
    assert_eq!(local_at(&w, "a.txt"), Some(file(2)));
}

#[test]
fn delete_vs_delete_forgets_the_base() {
    let state = folder([("a.txt", ps(None, base(5, file(1)), tomb(9)))]);
    assert_eq!(checked_plan(&state), vec![forget("a.txt")]);
}

#[test]
fn identical_concurrent_edits_are_not_a_conflict() {
    let state = folder([
        ("a.txt", ps(Some(touched(file(2))), base(5, file(1)), live(9, file(2)))),
        ("new.txt", ps(Some(file(3)), None, live(10, file(3)))),
        ("new-dir", ps(Some(dir()), None, live(11, dir()))),
    ]);
    assert_eq!(checked_plan(&state), vec![record("a.txt", 9), record("new-dir", 11), record("new.txt", 10)]);
}

#[test]
fn concurrent_edits_conflict_and_keep_both() {
    let state =
        folder([("docs", synced(3, dir())), ("docs/a.txt", ps(Some(file(2)), base(5, file(1)), live(9, file(3))))]);
    let copy = copy_of("docs/a.txt", 0);
    assert_eq!(copy.as_str(), "docs/a (conflicted copy from laptop 2026-11-24 230105).txt");
    assert_eq!(checked_plan(&state), vec![aside("docs/a.txt", copy.clone()), down("docs/a.txt", 9)]);

    let (w, plans) = assert_syncs(&state);
    assert_eq!(plans[1], vec![up(copy.as_str(), 0)], "the next pass uploads the copy");
    assert_eq!(local_at(&w, "docs/a.txt"), Some(file(3)));
    assert_eq!(w.local.get(&copy), Some(&file(2)));
}

#[test]
fn new_files_with_different_content_on_both_sides_conflict() {
    let state = folder([("a.txt", ps(Some(file(1)), None, live(9, file(2))))]);
    assert_eq!(checked_plan(&state), vec![aside("a.txt", copy_of("a.txt", 0)), down("a.txt", 9)]);
}

#[test]
fn conflict_copy_name_avoids_taken_names() {
    // Attempt 0 is a local file, attempt 1 a server tombstone, attempt 2 only a base, and
    // attempt 3 a directory known only through a path inside it.
    let under_attempt_3 = format!("{}/inside.txt", copy_of("a.txt", 3));
    let state = folder([
        ("a.txt", ps(Some(file(1)), base(5, file(0)), live(9, file(2)))),
        (copy_of("a.txt", 0).as_str(), ps(Some(file(7)), None, None)),
        (copy_of("a.txt", 1).as_str(), ps(None, None, tomb(4))),
        (copy_of("a.txt", 2).as_str(), ps(None, base(6, file(7)), None)),
        (&under_attempt_3, ps(None, None, tomb(8))),
    ]);
    let plan = checked_plan(&state);
    assert_eq!(plan[..2], [aside("a.txt", copy_of("a.txt", 4)), down("a.txt", 9)]);
}

#[test]
fn conflict_copy_name_ignores_case_of_taken_names() {
    let upper = copy_of("a.txt", 0).as_str().to_uppercase();
    let state = folder([("a.txt", ps(Some(file(1)), None, live(9, file(2)))), (&upper, ps(Some(file(7)), None, None))]);
    assert_eq!(checked_plan(&state)[0], aside("a.txt", copy_of("a.txt", 1)));
}

#[test]
fn conflict_copies_of_long_names_do_not_collide() {
    // Names this long are cut short to fit the marker, so both copies would get one name.
    let one = format!("{}1.txt", "n".repeat(240));
    let two = format!("{}2.txt", "n".repeat(240));
    assert_eq!(copy_of(&one, 0), copy_of(&two, 0));
    let conflicted = || ps(Some(file(1)), None, live(9, file(2)));
    let state = folder([(one.as_str(), conflicted()), (two.as_str(), conflicted())]);
    assert_eq!(checked_plan(&state)[..2], [aside(&one, copy_of(&one, 0)), aside(&two, copy_of(&two, 1))]);
}

// ---- renames ------------------------------------------------------------------------------

#[test]
fn rename_vs_edit_keeps_both() {
    // Locally a.txt was renamed to b.txt; remotely a.txt was edited.
    let state =
        folder([("a.txt", ps(None, base(5, file(1)), live(9, file(2)))), ("b.txt", ps(Some(file(1)), None, None))]);
    assert_eq!(checked_plan(&state), vec![down("a.txt", 9), up("b.txt", 0)]);
    let (w, _) = assert_syncs(&state);
    assert_eq!(remote_at(&w, "a.txt"), Some(file(2)));
    assert_eq!(remote_at(&w, "b.txt"), Some(file(1)));
}

#[test]
fn rename_of_a_directory_vs_edit_inside_keeps_both() {
    // Locally old/ was renamed to new/; remotely old/x.txt was edited.
    let state = folder([
        ("old", ps(None, base(3, dir()), live(3, dir()))),
        ("old/x.txt", ps(None, base(5, file(1)), live(9, file(2)))),
        ("old/y.txt", ps(None, base(6, file(4)), live(6, file(4)))),
        ("new", ps(Some(dir()), None, None)),
        ("new/x.txt", ps(Some(file(1)), None, None)),
        ("new/y.txt", ps(Some(file(4)), None, None)),
    ]);
    assert_eq!(
        checked_plan(&state),
        vec![
            down("old", 3),
            down("old/x.txt", 9),
            up("new", 0),
            up("new/x.txt", 0),
            up("new/y.txt", 0),
            del_remote("old/y.txt", 6),
        ]
    );
    assert_syncs(&state);
}

#[test]
fn same_rename_on_both_sides_converges_without_conflict() {
    let state =
        folder([("a.txt", ps(None, base(5, file(1)), tomb(9))), ("b.txt", ps(Some(file(1)), None, live(10, file(1))))]);
    assert_eq!(checked_plan(&state), vec![forget("a.txt"), record("b.txt", 10)]);
}

// ---- directories --------------------------------------------------------------------------

#[test]
fn directories_on_both_sides_are_not_a_conflict() {
    let state = folder([("d", ps(Some(dir()), base(5, file(1)), live(9, dir())))]);
    assert_eq!(checked_plan(&state), vec![record("d", 9)]);
}

#[test]
fn file_vs_dir_conflict_moves_the_local_dir_aside_with_its_subtree() {
    let state = folder([
        ("x", ps(Some(dir()), None, live(9, file(2)))),
        ("x/a.txt", ps(Some(file(1)), None, None)),
        ("x/sub", ps(Some(dir()), None, None)),
        ("x/sub/b.txt", ps(Some(file(3)), None, None)),
    ]);
    assert_eq!(checked_plan(&state), vec![aside("x", copy_of("x", 0)), down("x", 9)]);
    let (w, _) = assert_syncs(&state);
    assert_eq!(local_at(&w, "x"), Some(file(2)));
    assert_eq!(remote_at(&w, &format!("{}/sub/b.txt", copy_of("x", 0))), Some(file(3)));
}

#[test]
fn dir_vs_file_conflict_downloads_the_dir_and_its_children_next_pass() {
    let state =
        folder([("x", ps(Some(file(1)), None, live(9, dir()))), ("x/a.txt", ps(None, None, live(10, file(2))))]);
    assert_eq!(checked_plan(&state), vec![aside("x", copy_of("x", 0)), down("x", 9)]);
    let (w, plans) = assert_syncs(&state);
    assert_eq!(plans[1], vec![down("x/a.txt", 10), up(copy_of("x", 0).as_str(), 0)]);
    assert_eq!(local_at(&w, "x/a.txt"), Some(file(2)));
}

#[test]
fn remote_dir_delete_removes_the_unchanged_subtree_children_first() {
    let state = folder([
        ("d", ps(Some(dir()), base(3, dir()), tomb(20))),
        ("d/a.txt", ps(Some(file(1)), base(5, file(1)), tomb(21))),
        ("d/s", ps(Some(dir()), base(4, dir()), tomb(22))),
        ("d/s/b.txt", ps(Some(file(2)), base(6, file(2)), tomb(23))),
    ]);
    assert_eq!(
        checked_plan(&state),
        vec![del_local("d/s/b.txt"), del_local("d/s"), del_local("d/a.txt"), del_local("d")]
    );
}

#[test]
fn local_dir_delete_removes_the_unchanged_remote_subtree_children_first() {
    let state = folder([
        ("d", ps(None, base(3, dir()), live(3, dir()))),
        ("d/a.txt", ps(None, base(5, file(1)), live(5, file(1)))),
        ("d/s", ps(None, base(4, dir()), live(4, dir()))),
        ("d/s/b.txt", ps(None, base(6, file(2)), live(6, file(2)))),
    ]);
    assert_eq!(
        checked_plan(&state),
        vec![del_remote("d/s/b.txt", 6), del_remote("d/s", 4), del_remote("d/a.txt", 5), del_remote("d", 3)]
    );
}

#[test]
fn dir_delete_with_new_local_child_resurrects_dir() {
    let state = folder([
        ("d", ps(Some(dir()), base(3, dir()), tomb(20))),
        ("d/old.txt", ps(Some(file(1)), base(5, file(1)), tomb(21))),
        ("d/new.txt", ps(Some(file(2)), None, None)),
    ]);
    assert_eq!(checked_plan(&state), vec![up("d", 20), up("d/new.txt", 0), del_local("d/old.txt")]);
    let (w, _) = assert_syncs(&state);
    assert_eq!(remote_at(&w, "d/new.txt"), Some(file(2)));
    assert_eq!(local_at(&w, "d/old.txt"), None);
}

#[test]
fn dir_delete_with_local_edit_inside_resurrects_the_dirs_above_it() {
    let state = folder([
        ("d", ps(Some(dir()), base(3, dir()), tomb(20))),
        ("d/s", ps(Some(dir()), base(4, dir()), tomb(21))),
        ("d/s/a.txt", ps(Some(file(2)), base(5, file(1)), tomb(22))),
    ]);
    assert_eq!(checked_plan(&state), vec![up("d", 20), up("d/s", 21), up("d/s/a.txt", 22)]);
    assert_syncs(&state);
}

#[test]
fn local_dir_delete_with_remote_edit_inside_recreates_the_dir() {
    let state = folder([
        ("d", ps(None, base(3, dir()), live(3, dir()))),
        ("d/edited.txt", ps(None, base(5, file(1)), live(9, file(2)))),
        ("d/same.txt", ps(None, base(6, file(3)), live(6, file(3)))),
        ("d/added.txt", ps(None, None, live(10, file(4)))),
    ]);
    assert_eq!(
        checked_plan(&state),
        vec![down("d", 3), down("d/added.txt", 10), down("d/edited.txt", 9), del_remote("d/same.txt", 6)]
    );
    let (w, _) = assert_syncs(&state);
    assert_eq!(local_at(&w, "d/edited.txt"), Some(file(2)));
    assert_eq!(remote_at(&w, "d/same.txt"), None);
}

#[test]
fn no_local_delete_of_a_directory_that_receives_a_download() {
    // The server lost the directory's entry but still lists a new file in it.
    let state =
        folder([("d", ps(Some(dir()), base(3, dir()), None)), ("d/new.txt", ps(None, None, live(10, file(1))))]);
    assert_eq!(checked_plan(&state), vec![down("d/new.txt", 10), up("d", 0)]);
}

#[test]
fn remote_file_replacing_a_dir_waits_until_local_children_are_gone() {
    let state = folder([
        ("x", ps(Some(dir()), base(3, dir()), live(30, file(9)))),
        ("x/a.txt", ps(Some(file(1)), base(5, file(1)), tomb(29))),
    ]);
    assert_eq!(checked_plan(&state), vec![del_local("x/a.txt")]);
    let (w, plans) = assert_syncs(&state);
    assert_eq!(plans[1], vec![down("x", 30)]);
    assert_eq!(local_at(&w, "x"), Some(file(9)));
}

#[test]
fn remote_file_replacing_a_dir_with_a_local_edit_inside_moves_the_dir_aside() {
    let state = folder([
        ("x", ps(Some(dir()), base(3, dir()), live(30, file(9)))),
        ("x/a.txt", ps(Some(file(2)), base(5, file(1)), tomb(29))),
        ("x/b.txt", ps(Some(file(3)), base(6, file(3)), tomb(28))),
    ]);
    assert_eq!(checked_plan(&state), vec![aside("x", copy_of("x", 0)), down("x", 30)]);
    let (w, _) = assert_syncs(&state);
    assert_eq!(remote_at(&w, &format!("{}/a.txt", copy_of("x", 0))), Some(file(2)));
}

#[test]
fn local_file_replacing_a_dir_waits_until_remote_children_are_gone() {
    let state = folder([
        ("x", ps(Some(file(9)), base(3, dir()), live(3, dir()))),
        ("x/a.txt", ps(None, base(5, file(1)), live(5, file(1)))),
    ]);
    assert_eq!(checked_plan(&state), vec![del_remote("x/a.txt", 5)]);
    let (w, plans) = assert_syncs(&state);
    assert_eq!(plans[1], vec![up("x", 3)]);
    assert_eq!(remote_at(&w, "x"), Some(file(9)));
}

#[test]
fn local_file_replacing_a_dir_vs_remote_edit_inside_conflicts() {
    let state = folder([
        ("x", ps(Some(file(9)), base(3, dir()), live(3, dir()))),
        ("x/a.txt", ps(None, base(5, file(1)), live(8, file(2)))),
    ]);
    assert_eq!(checked_plan(&state), vec![aside("x", copy_of("x", 0)), down("x", 3)]);
    let (w, _) = assert_syncs(&state);
    assert_eq!(local_at(&w, "x/a.txt"), Some(file(2)));
    assert_eq!(remote_at(&w, copy_of("x", 0).as_str()), Some(file(9)));
}

/// The server deleted the directory `x` but a file below it lives on (an edit beat the
/// deletion); here a file took the name `x`. The file moves aside (nothing to download at `x`
/// itself); the next pass downloads what lives in it. (The world model of `assert_syncs`
/// holds only remote trees with their directories, so this is checked as a plan.)
#[test]
fn local_file_where_the_server_deleted_a_dir_whose_entries_live_on_moves_aside() {
    let state = folder([("x", ps(Some(file(9)), None, tomb(4))), ("x/a.txt", ps(None, None, live(8, file(2))))]);
    assert_eq!(checked_plan(&state), vec![aside("x", copy_of("x", 0))]);
}

/// The same, where the local file is the version of `x` this computer last synced (the
/// server replaced it by a directory, then deleted that directory, and an edit inside won; seed
/// 5138454 of the simulation). Nothing here changed, so the file is deleted, not kept as a
/// conflict copy, and what lives in `x` comes on the next pass.
#[test]
fn unchanged_local_file_where_the_server_deleted_a_dir_whose_entries_live_on_is_deleted() {
    let state =
        folder([("x", ps(Some(file(9)), base(3, file(9)), tomb(4))), ("x/a.txt", ps(None, None, live(8, file(2))))]);
    assert_eq!(checked_plan(&state), vec![del_local("x")]);
    let next = folder([("x", ps(None, None, tomb(4))), ("x/a.txt", ps(None, None, live(8, file(2))))]);
    assert_eq!(checked_plan(&next), vec![down("x/a.txt", 8)]);
}

#[test]
fn plan_follows_the_contract_order() {
    let state = folder([
        ("c", ps(Some(file(1)), None, live(9, file(2)))),
        ("d", synced(3, dir())),
        ("d/down.txt", ps(Some(file(1)), base(5, file(1)), live(9, file(2)))),
        ("d/up.txt", ps(Some(file(2)), base(5, file(1)), live(5, file(1)))),
        ("d/del-local.txt", ps(Some(file(1)), base(5, file(1)), tomb(9))),
        ("d/del-remote.txt", ps(None, base(5, file(1)), live(5, file(1)))),
        ("d/record.txt", ps(Some(file(2)), base(5, file(1)), live(9, file(2)))),
        ("d/forget.txt", ps(None, base(5, file(1)), tomb(9))),
        ("e", ps(None, None, live(10, dir()))),
        ("e/f.txt", ps(None, None, live(11, file(1)))),
    ]);
    assert_eq!(
        checked_plan(&state),
        vec![
            aside("c", copy_of("c", 0)),
            down("c", 9),
            down("d/down.txt", 9),
            down("e", 10),
            down("e/f.txt", 11),
            up("d/up.txt", 5),
            del_local("d/del-local.txt"),
            del_remote("d/del-remote.txt", 5),
            forget("d/forget.txt"),
            record("d/record.txt", 9),
        ]
    );
}

#[test]
fn tombstone_at_the_base_rev_is_a_deletion() {
    // A base always holds a live version, so a tombstone cannot be "unchanged".
    let state = folder([
        ("kept.txt", ps(Some(file(1)), base(5, file(1)), tomb(5))),
        ("gone.txt", ps(None, base(6, file(1)), tomb(6))),
    ]);
    assert_eq!(checked_plan(&state), vec![del_local("kept.txt"), forget("gone.txt")]);
}

#[test]
fn conflict_copy_of_a_name_with_a_long_extension_does_not_panic() {
    let name = format!("a.{}", "x".repeat(250));
    let state = folder([(name.as_str(), ps(Some(file(1)), None, live(9, file(2))))]);
    checked_plan(&state);
}
