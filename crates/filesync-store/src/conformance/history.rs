//! Conformance checks for the history side of [`MetaStore`]: reading old versions and the
//! trash, restoring, storage usage, pruning by the retention schedule, and chunk garbage
//! collection (mark, then a sweep that spares whatever became referenced in between).

use super::meta::{
    Account, NOW, accepted, account, applied, commit, conflict, current, del, file, path, put, seq, stored_file, token,
};
use crate::{CommitOutput, MetaStore, ProposedChange, RetentionPolicy, StoreError};
use filesync_core::{ChunkRef, EntryKind, EntryState, FileMeta, Hash};
use std::collections::BTreeSet;

const HOUR: i64 = 3600;
const DAY: i64 = 24 * HOUR;

async fn commit_at<S: MetaStore>(s: &S, a: &Account, changes: &[ProposedChange], now: i64) -> CommitOutput {
    s.commit(a.user.id, a.folder.id, &a.device, changes, now)
        .await
        .unwrap_or_else(|e| panic!("commit at {now} failed: {e}"))
}

/// Creates `p` then overwrites it with each of `contents`, one commit each at the given times;
/// returns the versions, oldest first.
async fn edits<S: MetaStore>(s: &S, a: &Account, p: &str, contents: &[(&[u8], i64)]) -> Vec<EntryState> {
    let mut out: Vec<EntryState> = Vec::new();
    for (content, at) in contents {
        let meta = stored_file(s, a, content).await;
        let base = out.last().map_or(0, |e| e.rev);
        let o = commit_at(s, a, &[put(p, base, &meta)], *at).await;
        out.push(applied(&o.outcomes[0], "edit"));
    }
    out
}

fn revs(entries: &[EntryState]) -> Vec<u64> {
    entries.iter().map(|e| e.rev).collect()
}

async fn all_revs<S: MetaStore>(s: &S, a: &Account, p: &str) -> Vec<u64> {
    revs(&s.versions(a.folder.id, &path(p)).await.expect("versions"))
}

async fn restore<S: MetaStore>(s: &S, a: &Account, p: &str, rev: u64, to: Option<&str>) -> CommitOutput {
    let to = to.map(path);
    let out = s
        .restore(a.user.id, a.folder.id, &a.device, &path(p), rev, to.as_ref(), NOW + 100)
        .await
        .unwrap_or_else(|e| panic!("restore of {p} rev {rev} failed: {e}"));
    assert_eq!(out.outcomes.len(), 1, "a restore has exactly one outcome");
    out
}

pub(super) async fn version_is_found_by_rev_while_stored<S: MetaStore>(s: &S) {
    let a = account(s, "version").await;
    let v = edits(s, &a, "f", &[(b"one", NOW), (b"two", NOW + 1)]).await;
    assert_eq!(s.version(a.folder.id, v[0].rev).await.unwrap(), Some(v[0].clone()), "an old version by rev");
    assert_eq!(s.version(a.folder.id, v[1].rev).await.unwrap(), Some(v[1].clone()), "the current version by rev");
    assert_eq!(s.version(a.folder.id, 999).await.unwrap(), None, "a rev never written is None");
    let other = account(s, "version-other").await;
    assert_eq!(s.version(other.folder.id, v[0].rev).await.unwrap(), None, "revs belong to one folder");
}

pub(super) async fn version_history_pages_newest_first<S: MetaStore>(s: &S) {
    let a = account(s, "history").await;
    let v = edits(s, &a, "f", &[(b"1", NOW), (b"2", NOW + 1), (b"3", NOW + 2), (b"4", NOW + 3)]).await;
    commit(s, &a, &[put("other", 0, &file(b"1"))]).await;
    let tomb = applied(&commit(s, &a, &[del("f", v[3].rev)]).await.outcomes[0], "delete");
    let f = path("f");
    let all = s.version_history(a.folder.id, &f, 0, 100).await.unwrap();
    assert_eq!(revs(&all), vec![tomb.rev, v[3].rev, v[2].rev, v[1].rev, v[0].rev], "newest first, tombstone too");
    assert_eq!(all, s.versions(a.folder.id, &f).await.unwrap(), "the same entries as versions()");
    let page = s.version_history(a.folder.id, &f, 0, 2).await.unwrap();
    assert_eq!(revs(&page), vec![tomb.rev, v[3].rev], "limit caps the page");
    let next = s.version_history(a.folder.id, &f, v[3].rev, 2).await.unwrap();
    assert_eq!(revs(&next), vec![v[2].rev, v[1].rev], "before_rev continues below the last rev");
    assert_eq!(s.version_history(a.folder.id, &f, v[0].rev, 2).await.unwrap(), vec![], "nothing below the first");
    assert_eq!(s.version_history(a.folder.id, &path("none"), 0, 9).await.unwrap(), vec![], "unknown path");
}

pub(super) async fn trash_lists_deleted_paths_with_their_last_live_version<S: MetaStore>(s: &S) {
    let a = account(s, "trash").await;
    let docs = applied(&commit(s, &a, &[put("docs", 0, &FileMeta::dir(1))]).await.outcomes[0], "dir");
    let gone = edits(s, &a, "docs/gone.txt", &[(b"first", NOW), (b"last words", NOW + 1)]).await;
    edits(s, &a, "docs/kept.txt", &[(b"kept", NOW)]).await;
    let back = edits(s, &a, "back.txt", &[(b"back", NOW)]).await;
    let top = edits(s, &a, "top.txt", &[(b"top", NOW)]).await;
    let docsish = edits(s, &a, "docs2.txt", &[(b"not below docs", NOW)]).await;
    let t_gone = applied(&commit(s, &a, &[del("docs/gone.txt", gone[1].rev)]).await.outcomes[0], "delete");
    let t_back = applied(&commit(s, &a, &[del("back.txt", back[0].rev)]).await.outcomes[0], "delete");
    let t_top = applied(&commit(s, &a, &[del("top.txt", top[0].rev)]).await.outcomes[0], "delete");
    let t_docsish = applied(&commit(s, &a, &[del("docs2.txt", docsish[0].rev)]).await.outcomes[0], "delete");
    let t_docs = applied(&commit(s, &a, &[del("docs", docs.rev)]).await.outcomes[0], "delete the dir");
    // back.txt is re-created: no longer in the trash.
    commit(s, &a, &[put("back.txt", t_back.rev, &stored_file(s, &a, b"again").await)]).await;

    let trash = s.trash(a.folder.id, None, 0, 100).await.unwrap();
    let listed: Vec<(&str, u64, u64)> =
        trash.iter().map(|t| (t.deleted.path.as_str(), t.deleted.rev, t.last_live.rev)).collect();
    assert_eq!(
        listed,
        vec![
            ("docs", t_docs.rev, docs.rev),
            ("docs2.txt", t_docsish.rev, docsish[0].rev),
            ("top.txt", t_top.rev, top[0].rev),
            ("docs/gone.txt", t_gone.rev, gone[1].rev),
        ],
        "deleted paths only, most recently deleted first, each with its last live version"
    );
    let gone_entry = trash.iter().find(|t| t.deleted.path == path("docs/gone.txt")).unwrap();
    assert_eq!(gone_entry.deleted, t_gone, "the tombstone says when and by whom");
    assert_eq!(gone_entry.last_live, gone[1], "the last live version, with its content");

    let below_docs = s.trash(a.folder.id, Some(&path("docs")), 0, 100).await.unwrap();
    let names: Vec<&str> = below_docs.iter().map(|t| t.deleted.path.as_str()).collect();
    assert_eq!(names, vec!["docs", "docs/gone.txt"], "a prefix selects the path and what is below it, not docs2.txt");
    let page = s.trash(a.folder.id, None, 0, 2).await.unwrap();
    assert_eq!(page.len(), 2, "limit caps the answer");
    let rest = s.trash(a.folder.id, None, page[1].deleted.rev, 100).await.unwrap();
    assert_eq!(rest, trash[2..], "before_rev pages on");
    let other = account(s, "trash-empty").await;
    assert_eq!(s.trash(other.folder.id, None, 0, 100).await.unwrap(), vec![], "an untouched folder has no trash");
}

pub(super) async fn restore_of_an_old_version_is_a_new_version_for_every_device<S: MetaStore>(s: &S) {
    let a = account(s, "revert").await;
    let v = edits(s, &a, "f", &[(b"good", NOW), (b"bad", NOW + 1)]).await;
    let desktop = s.create_device(a.user.id, "desktop", &token("revert", "desktop"), NOW).await.unwrap();
    let out = s.restore(a.user.id, a.folder.id, &desktop, &path("f"), v[0].rev, None, NOW + 50).await.unwrap();
    let e = applied(&out.outcomes[0], "revert to the first version");
    assert_eq!((e.rev, out.folder_seq), (3, 3), "a restore is the next rev of the journal");
    assert_eq!(e.meta, v[0].meta, "the restored version has the old content and metadata exactly");
    assert_eq!((e.device_id, e.device_name.as_str(), e.committed_at), (desktop.id, "desktop", NOW + 50));
    assert_eq!(current(s, &a, "f").await, Some(e.clone()), "it is the current version");
    assert_eq!(all_revs(s, &a, "f").await, vec![3, 2, 1], "the replaced version stays in the history");
    assert_eq!(s.changes_since(a.folder.id, 2, 10).await.unwrap(), vec![e], "devices see it as a change");
}

pub(super) async fn restore_brings_a_deleted_path_back<S: MetaStore>(s: &S) {
    let a = account(s, "undelete").await;
    let v = edits(s, &a, "f", &[(b"precious", NOW)]).await;
    commit(s, &a, &[del("f", v[0].rev)]).await;
    let out = restore(s, &a, "f", v[0].rev, None).await;
    let e = applied(&out.outcomes[0], "restore from the trash");
    assert_eq!((e.rev, e.meta.as_ref()), (3, v[0].meta.as_ref()));
    assert_eq!(s.trash(a.folder.id, None, 0, 10).await.unwrap(), vec![], "restored paths leave the trash");
}

pub(super) async fn restore_to_a_free_path_copies_the_version<S: MetaStore>(s: &S) {
    let a = account(s, "restoreto").await;
    let v = edits(s, &a, "f", &[(b"old", NOW), (b"new", NOW + 1)]).await;
    let out = restore(s, &a, "f", v[0].rev, Some("copy of f")).await;
    let e = applied(&out.outcomes[0], "restore to a new path");
    assert_eq!((e.path.as_str(), e.rev, e.meta.as_ref()), ("copy of f", 3, v[0].meta.as_ref()));
    assert_eq!(current(s, &a, "f").await, Some(v[1].clone()), "the source path is untouched");
}

pub(super) async fn restore_onto_another_live_path_is_refused<S: MetaStore>(s: &S) {
    let a = account(s, "occupied").await;
    let v = edits(s, &a, "f", &[(b"old", NOW), (b"new", NOW + 1)]).await;
    let g = edits(s, &a, "g", &[(b"someone else's work", NOW + 2)]).await;
    let out = restore(s, &a, "f", v[0].rev, Some("g")).await;
    assert_eq!(conflict(&out.outcomes[0], "restore onto a live path"), Some(g[0].clone()), "carries what is there");
    assert_eq!(out.folder_seq, 3, "nothing written");
    assert_eq!(seq(s, &a).await, 3);
    // A file never silently replaces a directory, not even on a plain revert.
    commit(s, &a, &[del("f", v[1].rev)]).await;
    let dir = applied(&commit(s, &a, &[put("f", 0, &FileMeta::dir(5))]).await.outcomes[0], "f becomes a dir");
    let out = restore(s, &a, "f", v[0].rev, None).await;
    assert_eq!(conflict(&out.outcomes[0], "revert of a file over a directory"), Some(dir));
}

pub(super) async fn restore_of_the_current_content_changes_nothing<S: MetaStore>(s: &S) {
    let a = account(s, "restoresame").await;
    let v = edits(s, &a, "f", &[(b"same", NOW), (b"other", NOW + 1), (b"same", NOW + 2)]).await;
    let out = restore(s, &a, "f", v[0].rev, None).await;
    assert_eq!(accepted(&out.outcomes[0], "restore of what is current"), Some(v[2].clone()));
    assert_eq!(out.folder_seq, 3, "no new version");
}

pub(super) async fn restore_recreates_deleted_directories_and_respects_files_in_the_way<S: MetaStore>(s: &S) {
    let a = account(s, "restoredirs").await;
    let d = applied(&commit(s, &a, &[put("a", 0, &FileMeta::dir(1))]).await.outcomes[0], "dir");
    let v = edits(s, &a, "a/b/f", &[(b"deep", NOW)]).await;
    commit(s, &a, &[del("a/b/f", v[0].rev), del("a", d.rev)]).await;
    let out = restore(s, &a, "a/b/f", v[0].rev, None).await;
    let e = applied(&out.outcomes[0], "restore below deleted directories");
    assert_eq!(e.rev, out.folder_seq, "the file is the last version written");
    for dir in ["a", "a/b"] {
        let c = current(s, &a, dir).await.unwrap_or_else(|| panic!("{dir} must exist again"));
        assert_eq!(c.meta.map(|m| m.kind), Some(EntryKind::Dir), "{dir} is a live directory again");
        assert!(c.rev < e.rev, "{dir} is written before the file below it");
    }
    // A file where a directory is needed blocks the restore.
    let w = edits(s, &a, "x/f", &[(b"x", NOW)]).await;
    commit(s, &a, &[del("x/f", w[0].rev)]).await;
    let blocker =
        applied(&commit(s, &a, &[put("x", 0, &stored_file(s, &a, b"x is a file").await)]).await.outcomes[0], "x");
    let before = seq(s, &a).await;
    let out = restore(s, &a, "x/f", w[0].rev, None).await;
    assert_eq!(conflict(&out.outcomes[0], "restore below a file"), Some(blocker), "carries the file in the way");
    assert_eq!(seq(s, &a).await, before, "nothing written");
}

pub(super) async fn a_file_is_not_restored_where_entries_live_below_it<S: MetaStore>(s: &S) {
    let a = account(s, "restorebelow").await;
    // `c` was a file, then deleted; a file `c/x` was put where it was (no directory entry).
    let v = edits(s, &a, "c", &[(b"c was a file", NOW)]).await;
    commit(s, &a, &[del("c", v[0].rev)]).await;
    let x = applied(&commit(s, &a, &[put("c/x", 0, &stored_file(s, &a, b"x").await)]).await.outcomes[0], "c/x");
    let before = seq(s, &a).await;
    let out = restore(s, &a, "c", v[0].rev, None).await;
    assert_eq!(conflict(&out.outcomes[0], "a file restored over entries"), Some(x.clone()), "carries one in the way");
    assert_eq!(seq(s, &a).await, before, "nothing written");
    // Once they are deleted, it is restored.
    commit(s, &a, &[del("c/x", x.rev)]).await;
    applied(&restore(s, &a, "c", v[0].rev, None).await.outcomes[0], "a file restored where nothing lives below");
}

pub(super) async fn restore_of_a_missing_version_is_version_not_found<S: MetaStore>(s: &S) {
    let a = account(s, "restoremissing").await;
    let v = edits(s, &a, "f", &[(b"v", NOW)]).await;
    let g = edits(s, &a, "g", &[(b"g", NOW)]).await;
    let tomb = applied(&commit(s, &a, &[del("f", v[0].rev)]).await.outcomes[0], "delete");
    for (p, rev, why) in [
        ("f", 999, "a rev never written"),
        ("f", tomb.rev, "a tombstone has no content"),
        ("f", g[0].rev, "a rev of another path"),
    ] {
        match s.restore(a.user.id, a.folder.id, &a.device, &path(p), rev, None, NOW).await {
            Err(StoreError::VersionNotFound { folder, path: got, rev: r }) => {
                assert_eq!((folder, got.as_str(), r), (a.folder.id, p, rev), "{why}: the error names it")
            }
            other => panic!("{why}: expected VersionNotFound, got {other:?}"),
        }
    }
    assert_eq!(seq(s, &a).await, 3, "nothing written");
}

pub(super) async fn restore_is_scoped_to_the_user<S: MetaStore>(s: &S) {
    let a = account(s, "restorescope-a").await;
    let b = account(s, "restorescope-b").await;
    let v = edits(s, &a, "secret", &[(b"a's", NOW)]).await;
    match s.restore(b.user.id, a.folder.id, &b.device, &path("secret"), v[0].rev, Some(&path("mine")), NOW).await {
        Err(StoreError::FolderNotFound(id)) => assert_eq!(id, a.folder.id),
        other => panic!("user B restoring in user A's folder must be FolderNotFound, got {other:?}"),
    }
    assert_eq!(current(s, &a, "mine").await, None, "nothing landed in A's folder");
    assert_eq!(seq(s, &a).await, 1);
}

pub(super) async fn usage_counts_current_files_history_and_stored_chunks<S: MetaStore>(s: &S) {
    let a = account(s, "usage").await;
    let empty = s.usage(a.user.id).await.unwrap();
    assert_eq!(empty, crate::Usage::default(), "a new user stores nothing");
    edits(s, &a, "f", &[(b"12345", NOW), (b"1234567890", NOW + 1)]).await; // 5 then 10 bytes
    let g = edits(s, &a, "g", &[(b"abc", NOW)]).await;
    edits(s, &a, "h", &[(b"12345", NOW)]).await; // same content as f's first version
    commit(s, &a, &[del("g", g[0].rev), put("dir", 0, &FileMeta::dir(1))]).await;
    let u = s.usage(a.user.id).await.unwrap();
    assert_eq!((u.files_current, u.bytes_current), (2, 15), "f (10) and h (5); no deleted file, no directory");
    assert_eq!((u.versions_history, u.bytes_history), (2, 8), "f's first version (5) and deleted g (3)");
    assert_eq!((u.chunks, u.bytes_stored), (3, 18), "each distinct chunk once: 5 + 10 + 3");
    let other = account(s, "usage-other").await;
    assert_eq!(s.usage(other.user.id).await.unwrap(), crate::Usage::default(), "usage is per user");
}

pub(super) async fn users_are_listed<S: MetaStore>(s: &S) {
    let a = account(s, "listusers-a").await;
    let b = account(s, "listusers-b").await;
    let users = s.list_users().await.unwrap();
    assert!(users.contains(&a.user) && users.contains(&b.user), "list_users lists every user");
    let ids: Vec<u64> = users.iter().map(|u| u.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ordered by id");
}

/// Prune checks run after every other check: pruning is global, and these prune with clocks
/// far ahead of the other checks' commits.
pub(super) async fn prune_thins_history_and_keeps_current_versions_and_the_trash<S: MetaStore>(s: &S) {
    let a = account(s, "prune").await;
    // Later than anything else in the suite, and at the start of a UTC day.
    let t0 = (NOW + 1000 * DAY).div_euclid(DAY) * DAY;
    // f: edited every 10 minutes for 3 hours, 3 days before the prune.
    let contents: Vec<Vec<u8>> = (0..18).map(|i| format!("f{i:02}").into_bytes()).collect();
    let f: Vec<(&[u8], i64)> = contents.iter().enumerate().map(|(i, c)| (c.as_slice(), t0 + i as i64 * 600)).collect();
    let fv = edits(s, &a, "f", &f).await;
    // old: created long ago and never changed: its only version is current.
    let old = edits(s, &a, "old", &[(b"ancient", t0 - 500 * DAY)]).await;
    // trash: two versions, deleted 3 days before the prune (within retention).
    let tv = edits(s, &a, "trash", &[(b"t1", t0), (b"t2", t0 + HOUR)]).await;
    commit_at(s, &a, &[del("trash", tv[1].rev)], t0 + 2 * HOUR).await;
    // expired: deleted 33 days before the prune.
    let ev = edits(s, &a, "expired", &[(b"e1", t0 - 31 * DAY)]).await;
    let e_tomb = applied(&commit_at(s, &a, &[del("expired", ev[0].rev)], t0 - 30 * DAY).await.outcomes[0], "del");
    // recent: overwritten an hour before the prune.
    let now = t0 + 3 * DAY;
    let rv = edits(s, &a, "recent", &[(b"r1", now - 2 * HOUR), (b"r2", now - HOUR)]).await;

    let stats = s.prune_history(now, &RetentionPolicy::default()).await.expect("prune_history");
    // Pruning is global: other checks' histories (all older) are pruned too, hence `>=`.
    assert!(stats.folders >= 1 && stats.paths >= 4, "{stats:?}");
    assert!(stats.versions_removed > 14, "{stats:?}");
    assert!(stats.bytes_removed >= 14 * 3 + 2, "{stats:?}");
    // f: each hour keeps its newest version; the current (last) one always stays.
    let expected: Vec<u64> = [17, 16, 11, 5].iter().map(|&i| fv[i].rev).collect();
    assert_eq!(all_revs(s, &a, "f").await, expected, "one version per hour of creation after the first day");
    assert_eq!(all_revs(s, &a, "old").await, vec![old[0].rev], "a lone current version is never pruned");
    let trash = s.trash(a.folder.id, None, 0, 10).await.unwrap();
    let listed: Vec<(&str, u64)> = trash.iter().map(|t| (t.deleted.path.as_str(), t.last_live.rev)).collect();
    assert_eq!(listed, vec![("trash", tv[1].rev)], "the trash keeps the last live version within retention only");
    assert_eq!(all_revs(s, &a, "expired").await, vec![e_tomb.rev], "past retention only the tombstone stays");
    assert_eq!(all_revs(s, &a, "recent").await, vec![rv[1].rev, rv[0].rev], "the last day is kept whole");

    let again = s.prune_history(now, &RetentionPolicy::default()).await.unwrap();
    assert_eq!(again.versions_removed, 0, "a second run at the same time removes nothing");
    // Once retention has passed for everything, only current versions remain.
    s.prune_history(now + 60 * DAY, &RetentionPolicy::default()).await.unwrap();
    assert_eq!(all_revs(s, &a, "f").await, vec![fv[17].rev]);
    assert_eq!(s.trash(a.folder.id, None, 0, 10).await.unwrap(), vec![], "the trash empties after retention");
    let c = current(s, &a, "trash").await.expect("the tombstone stays: devices must learn of the delete");
    assert!(c.meta.is_none());
}

pub(super) async fn gc_marks_only_unreferenced_chunks_added_before_the_cutoff<S: MetaStore>(s: &S) {
    let a = account(s, "gcmark").await;
    edits(s, &a, "f", &[(b"in use", NOW)]).await;
    let orphan = (Hash::of(b"uploaded, never committed"), 25u32);
    s.add_chunks(a.user.id, &[orphan]).await.unwrap();
    let sweep = s.unreferenced_chunks(a.user.id, i64::MAX).await.unwrap();
    assert_eq!(sweep.user, a.user.id);
    assert_eq!(sweep.candidates, vec![orphan], "only the chunk no version uses");
    assert!(sweep.marked_seqs.contains(&(a.folder.id, 1)), "the mark records each folder's seq");
    let recent = s.unreferenced_chunks(a.user.id, 0).await.unwrap();
    assert_eq!(recent.candidates, vec![], "chunks added after the cutoff are never candidates");
}

pub(super) async fn gc_sweep_spares_chunks_referenced_since_the_mark<S: MetaStore>(s: &S) {
    let a = account(s, "gcsweep").await;
    let w = file(b"w: committed in a marked folder after the mark");
    let x = file(b"x: committed in a folder created after the mark");
    let y = file(b"y: garbage");
    let chunks = [&w, &x, &y].map(|m| (m.chunks[0].hash, m.size as u32));
    s.add_chunks(a.user.id, &chunks).await.unwrap();
    let z = edits(s, &a, "z", &[(b"z: in use", NOW)]).await[0].meta.clone().unwrap();
    let sweep = s.unreferenced_chunks(a.user.id, i64::MAX).await.unwrap();
    let found: BTreeSet<Hash> = sweep.candidates.iter().map(|(h, _)| *h).collect();
    assert_eq!(
        found,
        BTreeSet::from([w.chunks[0].hash, x.chunks[0].hash, y.chunks[0].hash]),
        "w, x and y are unreferenced at the mark"
    );
    // Between mark and sweep, commits start using w and x.
    commit(s, &a, &[put("w", 0, &w)]).await;
    let later = s.folder_by_name(a.user.id, "later", true).await.unwrap().unwrap();
    s.commit(a.user.id, later.id, &a.device, &[put("x", 0, &x)], NOW).await.expect("commit in the new folder");
    let all = [w.chunks[0].hash, x.chunks[0].hash, y.chunks[0].hash, z.chunks[0].hash];
    let deleted = s.delete_chunks(&sweep, &all).await.expect("delete_chunks");
    assert_eq!(deleted, vec![chunks[2]], "only y goes: w and x became referenced, z never was a candidate");
    assert_eq!(s.missing_chunks(a.user.id, &all).await.unwrap(), vec![2], "the store forgot y only");
    assert_eq!(s.delete_chunks(&sweep, &[y.chunks[0].hash]).await.unwrap(), vec![], "sweeping again finds nothing");
    // A commit naming a swept chunk is refused as a whole, so the client uploads it again.
    match s.commit(a.user.id, a.folder.id, &a.device, &[put("y", 0, &y)], NOW).await {
        Err(StoreError::MissingChunks(list)) => assert_eq!(list, vec![y.chunks[0].hash]),
        other => panic!("a commit naming a swept chunk must fail with MissingChunks, got {other:?}"),
    }
    // Uploaded again after a sweep's cutoff: that sweep keeps it even if it lists it.
    s.add_chunks(a.user.id, &[chunks[2]]).await.unwrap();
    let early =
        crate::ChunkSweep { user: a.user.id, added_before: 0, candidates: vec![chunks[2]], marked_seqs: vec![] };
    assert_eq!(s.delete_chunks(&early, &[y.chunks[0].hash]).await.unwrap(), vec![], "added after the cutoff: kept");
}

pub(super) async fn pruned_versions_release_their_chunks<S: MetaStore>(s: &S) {
    let a = account(s, "gcprune").await;
    let t0 = NOW + 2000 * DAY;
    let shared = ChunkRef { hash: Hash::of(b"shared part"), len: 11 };
    let only_old = ChunkRef { hash: Hash::of(b"only in the old version"), len: 23 };
    let only_new = ChunkRef { hash: Hash::of(b"only in the new one"), len: 19 };
    let chunks = [shared, only_old, only_new].map(|c| (c.hash, c.len));
    s.add_chunks(a.user.id, &chunks).await.unwrap();
    let meta = |parts: &[ChunkRef], tag: &[u8]| FileMeta {
        kind: EntryKind::File,
        size: parts.iter().map(|c| u64::from(c.len)).sum(),
        mtime_ns: 0,
        executable: false,
        hash: Hash::of(tag),
        chunks: parts.to_vec(),
    };
    let v1 = applied(&commit_at(s, &a, &[put("f", 0, &meta(&[shared, only_old], b"v1"))], t0).await.outcomes[0], "v1");
    commit_at(s, &a, &[put("f", v1.rev, &meta(&[shared, only_new], b"v2"))], t0 + 1).await;
    let before = s.unreferenced_chunks(a.user.id, i64::MAX).await.unwrap();
    assert_eq!(before.candidates, vec![], "every chunk is used while v1 is kept");
    s.prune_history(t0 + 40 * DAY, &RetentionPolicy::default()).await.unwrap();
    let after = s.unreferenced_chunks(a.user.id, i64::MAX).await.unwrap();
    assert_eq!(after.candidates, vec![(only_old.hash, only_old.len)], "only the pruned version's own chunk");
    let all: Vec<Hash> = chunks.iter().map(|(h, _)| *h).collect();
    assert_eq!(s.delete_chunks(&after, &all).await.unwrap(), vec![(only_old.hash, only_old.len)]);
    assert_eq!(s.missing_chunks(a.user.id, &all).await.unwrap(), vec![1], "the current version's chunks stay");
}
