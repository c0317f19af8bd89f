//! Named scenarios for the one-way directions, the reverts and the eviction of an excluded
//! subfolder: one test per promise, each with the exact plan.

use super::sim::*;
use crate::{Action, Direction, Held, plan_eviction};

fn not_up(path: &str) -> Action {
    Action::NotUploaded { path: p(path), why: Held::DownloadOnly }
}

fn not_down(path: &str) -> Action {
    Action::NotDownloaded { path: p(path) }
}

#[test]
fn upload_only_ignores_remote_edits_and_uploads_local_ones_over_them() {
    let up_only = ctx_in(Direction::UploadOnly, false);
    let state = folder([
        ("theirs.txt", ps(Some(file(1)), base(5, file(1)), live(9, file(2)))),
        ("mine.txt", ps(Some(file(3)), base(6, file(1)), live(6, file(1)))),
        ("both.txt", ps(Some(file(3)), base(7, file(1)), live(10, file(2)))),
        ("new-there.txt", ps(None, None, live(11, file(4)))),
        ("deleted-there.txt", ps(Some(file(1)), base(8, file(1)), tomb(12))),
    ]);
    assert_eq!(
        checked_plan_in(&state, &up_only),
        vec![
            up("both.txt", 10),
            up("mine.txt", 6),
            not_down("deleted-there.txt"),
            not_down("new-there.txt"),
            not_down("theirs.txt"),
        ]
    );
}

#[test]
fn upload_only_holds_back_a_file_where_the_servers_directory_keeps_entries_and_says_why() {
    // Synced as a directory; replaced here by a file, while another computer put c/new.txt:
    // upload-only may neither delete that nor take the local file down.
    let up_only = ctx_in(Direction::UploadOnly, false);
    let state = folder([
        ("c", ps(Some(file(1)), base(3, dir()), live(3, dir()))),
        ("c/new.txt", ps(None, None, live(7, file(2)))),
    ]);
    assert_eq!(
        checked_plan_in(&state, &up_only),
        vec![Action::NotUploaded { path: p("c"), why: Held::ServerHasFolder }, not_down("c/new.txt")]
    );
}

#[test]
fn download_only_applies_remote_changes_and_keeps_local_ones_local() {
    let down_only = ctx_in(Direction::DownloadOnly, false);
    let state = folder([
        ("theirs.txt", ps(Some(file(1)), base(5, file(1)), live(9, file(2)))),
        ("mine.txt", ps(Some(file(3)), base(6, file(1)), live(6, file(1)))),
        ("both.txt", ps(Some(file(3)), base(7, file(1)), live(10, file(2)))),
        ("deleted-here.txt", ps(None, base(8, file(1)), live(8, file(1)))),
        ("new-here.txt", ps(Some(file(4)), None, None)),
    ]);
    assert_eq!(
        checked_plan_in(&state, &down_only),
        vec![
            aside("both.txt", copy_of("both.txt", 0)),
            down("both.txt", 10),
            down("theirs.txt", 9),
            not_up("deleted-here.txt"),
            not_up("mine.txt"),
            not_up("new-here.txt"),
        ]
    );
}

#[test]
fn revert_remote_makes_the_server_equal_this_computer() {
    let state = folder([
        ("theirs.txt", ps(Some(file(1)), base(5, file(1)), live(9, file(2)))),
        ("only-there", ps(None, None, live(11, dir()))),
        ("only-there/x", ps(None, None, live(12, file(4)))),
        ("same.txt", synced(3, file(1))),
    ]);
    let revert = ctx_in(Direction::UploadOnly, true);
    assert_eq!(
        checked_plan_in(&state, &revert),
        vec![up("theirs.txt", 9), del_remote("only-there/x", 12), del_remote("only-there", 11)]
    );
    let (w, _) = assert_syncs_in(&state, &revert);
    assert_eq!(w.local, World::new(&state).local, "the local folder is untouched");
}

#[test]
fn revert_local_replaces_local_edits_and_removes_local_only_paths_children_first() {
    let state = folder([
        ("edited.txt", ps(Some(file(3)), base(5, file(1)), live(5, file(1)))),
        ("mine", ps(Some(dir()), None, None)),
        ("mine/new.txt", ps(Some(file(4)), None, None)),
        ("deleted-here.txt", ps(None, base(8, file(1)), live(8, file(1)))),
    ]);
    let revert = ctx_in(Direction::DownloadOnly, true);
    assert_eq!(
        checked_plan_in(&state, &revert),
        vec![down("deleted-here.txt", 8), down("edited.txt", 5), del_local("mine/new.txt"), del_local("mine")]
    );
    let (w, _) = assert_syncs_in(&state, &revert);
    assert_eq!(w.remote, World::new(&state).remote, "the server is untouched");
}

#[test]
fn revert_with_two_way_is_an_ordinary_plan() {
    let state = folder([("a.txt", ps(Some(file(3)), base(5, file(1)), live(5, file(1))))]);
    assert_eq!(checked_plan_in(&state, &ctx_in(Direction::TwoWay, true)), vec![up("a.txt", 5)]);
}

#[test]
fn eviction_removes_only_what_the_server_has_and_uploads_the_rest_first() {
    let state = folder([
        ("photos", synced(2, dir())),
        ("photos/synced.jpg", synced(5, file(1))),
        ("photos/edited.jpg", ps(Some(file(3)), base(6, file(1)), live(6, file(1)))),
        ("photos/new.jpg", ps(Some(file(4)), None, None)),
        // Unchanged here; the server moved on (the old version is in its history).
        ("photos/stale.jpg", ps(Some(file(1)), base(7, file(1)), live(9, file(2)))),
        ("photos/gone-here.jpg", ps(None, base(8, file(1)), live(8, file(1)))),
        ("photos/only-there.jpg", ps(None, None, live(10, file(5)))),
    ]);
    assert_eq!(
        plan_eviction(&state, &ctx_in(Direction::TwoWay, false)),
        vec![
            up("photos/edited.jpg", 6),
            up("photos/new.jpg", 0),
            del_local("photos/synced.jpg"),
            del_local("photos/stale.jpg"),
            del_local("photos"),
            forget("photos/gone-here.jpg"),
        ]
    );
    // Download-only never uploads: what is not on the server stays, reported.
    assert_eq!(
        plan_eviction(&state, &ctx_in(Direction::DownloadOnly, false)),
        vec![
            del_local("photos/synced.jpg"),
            del_local("photos/stale.jpg"),
            del_local("photos"),
            forget("photos/gone-here.jpg"),
            not_up("photos/edited.jpg"),
            not_up("photos/new.jpg"),
        ]
    );
}

#[test]
fn eviction_of_a_new_local_directory_uploads_it_before_its_children() {
    let state = folder([("new", ps(Some(dir()), None, None)), ("new/a", ps(Some(file(1)), None, None))]);
    assert_eq!(plan_eviction(&state, &ctx_in(Direction::UploadOnly, false)), vec![up("new", 0), up("new/a", 0)]);
}

#[test]
fn eviction_moves_a_file_aside_where_the_server_has_the_excluded_directory() {
    // The subfolder `c` is excluded here, and a file named `c` was made in its place.
    let state = folder([("c", ps(Some(file(1)), base(2, dir()), live(2, dir())))]);
    let plan = plan_eviction(&state, &ctx_in(Direction::TwoWay, false));
    let [Action::MoveLocalAside { path, copy }] = plan.as_slice() else { panic!("one move aside: {plan:?}") };
    assert_eq!(path.as_str(), "c");
    assert!(copy.as_str().starts_with("c (conflicted copy from "), "{copy}");
}

#[test]
fn download_only_deletes_an_unchanged_file_where_the_server_deleted_a_dir_whose_entries_live_on() {
    // As two-way: the file goes now, and what lives in `x` comes on the next pass.
    let down_only = ctx_in(Direction::DownloadOnly, false);
    let state =
        folder([("x", ps(Some(file(9)), base(3, file(9)), tomb(4))), ("x/a.txt", ps(None, None, live(8, file(2))))]);
    assert_eq!(checked_plan_in(&state, &down_only), vec![del_local("x")]);
}
