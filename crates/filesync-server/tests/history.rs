//! The safety net over real TLS on 127.0.0.1: listing versions and the trash, restoring (and
//! the push that tells other devices), usage, authorization of all of it, and maintenance —
//! pruning by the retention schedule and garbage collection of chunk files — driven with an
//! explicit clock instead of waiting.

mod support;

use filesync_client::{Connection, ErrorCode, Push};
use filesync_core::Hash;
use filesync_proto::{CommitChange, FolderInfo, WireEntry};
use filesync_server::maintenance::GC_GRACE;
use std::time::Duration;
use support::*;

const DAY: i64 = 24 * 3600;
const _: () = assert!(GC_GRACE >= 3600, "uploads get at least an hour between their first chunk and their commit");

async fn start() -> TestServer {
    start_server(true).await
}

/// A new user with one connection and the folder `docs`.
async fn user(server: &TestServer, name: &str) -> (Connection, FolderInfo, String) {
    let c = server.connect().await;
    let s = c.register(name, "password123", "laptop").await.unwrap();
    let folder = c.open_folder("docs", true).await.unwrap();
    (c, folder, s.token)
}

/// Chunk files on the server's disk.
fn chunk_files(server: &TestServer) -> usize {
    fn walk(d: &std::path::Path) -> usize {
        std::fs::read_dir(d)
            .map(|rd| rd.map(|e| e.unwrap().path()).map(|p| if p.is_dir() { walk(&p) } else { 1 }).sum::<usize>())
            .unwrap_or(0)
    }
    walk(&server.data.join("chunks"))
}

fn unix_now() -> i64 {
    filesync_core::clock::Clock::now_unix(&filesync_core::clock::SystemClock)
}

/// Uploads and commits `data` as `path` on top of `base_rev`; returns the new entry.
async fn write(c: &Connection, folder: &FolderInfo, path: &str, data: &[u8], base_rev: u64) -> WireEntry {
    let (entry, chunks) = file_entry(path, data);
    c.put_chunks(chunks).await.unwrap();
    let r = c.commit(folder.id, vec![CommitChange { base_rev, entry: Some(entry) }]).await.unwrap();
    assert!(r.outcomes[0].accepted, "write of {path} conflicted");
    r.outcomes[0].current.clone().unwrap()
}

async fn delete(c: &Connection, folder: &FolderInfo, path: &str, base_rev: u64) -> WireEntry {
    let tomb = WireEntry { path: path.into(), deleted: true, ..Default::default() };
    let r = c.commit(folder.id, vec![CommitChange { base_rev, entry: Some(tomb) }]).await.unwrap();
    r.outcomes[0].current.clone().unwrap()
}

/// The bytes of a file entry, fetched chunk by chunk.
async fn content(c: &Connection, e: &WireEntry) -> Vec<u8> {
    let chunks = filesync_proto::convert::chunks_from_wire(&e.chunks).unwrap();
    let hashes: Vec<Hash> = chunks.iter().map(|c| c.hash).collect();
    c.get_chunks(&hashes).await.unwrap().concat()
}

async fn next_push(pushes: &mut tokio::sync::mpsc::Receiver<Push>) -> Push {
    tokio::time::timeout(Duration::from_secs(5), pushes.recv()).await.expect("a push within 5 s").unwrap()
}

#[tokio::test]
async fn versions_are_listed_newest_first_with_device_time_and_tombstones() {
    let s = start().await;
    let (ann, docs, _) = user(&s, "ann").await;
    let v1 = write(&ann, &docs, "report.txt", b"draft", 0).await;
    let v2 = write(&ann, &docs, "report.txt", b"final", v1.rev).await;
    let gone = delete(&ann, &docs, "report.txt", v2.rev).await;
    let page = ann.list_versions(docs.id, "report.txt", 0, 0).await.unwrap();
    let revs: Vec<(u64, bool)> = page.entries.iter().map(|e| (e.rev, e.deleted)).collect();
    assert_eq!(revs, vec![(gone.rev, true), (v2.rev, false), (v1.rev, false)]);
    assert!(!page.more);
    assert!(page.entries.iter().all(|e| e.device_name == "laptop" && e.committed_at > 0));
    assert_eq!(page.entries[1], v2, "each version is the full entry, content included");
    let first = ann.list_versions(docs.id, "report.txt", 0, 2).await.unwrap();
    assert!(first.more, "a limited page says more follow");
    let rest = ann.list_versions(docs.id, "report.txt", first.entries[1].rev, 2).await.unwrap();
    assert_eq!(rest.entries, vec![v1.clone()]);
    assert_eq!(ann.all_versions(docs.id, "report.txt").await.unwrap(), page.entries, "all pages");
    assert!(ann.list_versions(docs.id, "never.txt", 0, 0).await.unwrap().entries.is_empty());
    assert_eq!(code(ann.list_versions(docs.id, "../x", 0, 0).await), Some(ErrorCode::InvalidPath));
}

#[tokio::test]
async fn a_restore_is_a_new_version_pushed_to_every_device_without_an_upload() {
    let s = start().await;
    let (ann, docs, token) = user(&s, "ann").await;
    let desktop = s.connect().await;
    desktop.auth(&token).await.unwrap();
    let mut pushes = desktop.take_pushes().unwrap();
    let v1 = write(&ann, &docs, "notes.txt", b"the good version", 0).await;
    let v2 = write(&ann, &docs, "notes.txt", b"oops, overwritten", v1.rev).await;
    assert_eq!(next_push(&mut pushes).await, Push::FolderChanged { folder_id: docs.id, seq: v1.rev });
    assert_eq!(next_push(&mut pushes).await, Push::FolderChanged { folder_id: docs.id, seq: v2.rev });

    let sent_before = ann.wire_stats().0;
    let (outcome, seq) = ann.restore(docs.id, "notes.txt", v1.rev, "").await.unwrap();
    let sent = ann.wire_stats().0 - sent_before;
    assert!(sent < 1000, "a restore uploads nothing ({sent} bytes sent)");
    assert!(outcome.accepted);
    let restored = outcome.current.unwrap();
    assert_eq!((restored.rev, seq), (v2.rev + 1, v2.rev + 1), "a new journal version");
    assert_eq!((restored.hash.as_slice(), restored.size), (v1.hash.as_slice(), v1.size), "version 1's content");
    assert_eq!(next_push(&mut pushes).await, Push::FolderChanged { folder_id: docs.id, seq });

    // The other device sees an ordinary change and can download it.
    let changes = desktop.get_changes(docs.id, v2.rev, 0).await.unwrap();
    assert_eq!(changes.entries, vec![restored.clone()]);
    assert_eq!(content(&desktop, &restored).await, b"the good version");
    let history = ann.list_versions(docs.id, "notes.txt", 0, 0).await.unwrap();
    let revs: Vec<u64> = history.entries.iter().map(|e| e.rev).collect();
    assert_eq!(revs, vec![seq, v2.rev, v1.rev], "the overwritten version stays in the history");
}

#[tokio::test]
async fn the_trash_lists_deleted_files_and_restores_them_or_copies_to_a_new_name() {
    let s = start().await;
    let (ann, docs, _) = user(&s, "ann").await;
    let a = write(&ann, &docs, "dir/a.txt", b"aaa", 0).await;
    let b = write(&ann, &docs, "b.txt", b"bbbb", 0).await;
    write(&ann, &docs, "c.txt", b"still here", 0).await;
    let a_gone = delete(&ann, &docs, "dir/a.txt", a.rev).await;
    let b_gone = delete(&ann, &docs, "b.txt", b.rev).await;
    let trash = ann.list_trash(docs.id, "", 0, 0).await.unwrap();
    let listed: Vec<(String, u64, u64)> = trash
        .entries
        .iter()
        .map(|t| {
            let (d, l) = (t.deleted.as_ref().unwrap(), t.last_live.as_ref().unwrap());
            (d.path.clone(), d.rev, l.rev)
        })
        .collect();
    assert_eq!(listed, vec![("b.txt".into(), b_gone.rev, b.rev), ("dir/a.txt".into(), a_gone.rev, a.rev)]);
    assert_eq!(trash.entries[1].last_live.as_ref().unwrap().size, 3, "with size, device and time of the last version");
    let only_dir = ann.list_trash(docs.id, "dir", 0, 0).await.unwrap();
    assert_eq!(only_dir.entries.len(), 1);
    let first = ann.list_trash(docs.id, "", 0, 1).await.unwrap();
    assert!(first.more && first.entries.len() == 1);

    // Restore b.txt in place, and a copy of a.txt under another name.
    let (o, _) = ann.restore(docs.id, "b.txt", b.rev, "").await.unwrap();
    assert!(o.accepted);
    let (o, _) = ann.restore(docs.id, "dir/a.txt", a.rev, "a (restored).txt").await.unwrap();
    let copy = o.current.unwrap();
    assert!(o.accepted && copy.path == "a (restored).txt");
    assert_eq!(content(&ann, &copy).await, b"aaa");
    let left = ann.list_trash(docs.id, "", 0, 0).await.unwrap();
    assert_eq!(left.entries.len(), 1, "dir/a.txt itself is still deleted");
}

#[tokio::test]
async fn restore_refusals_name_the_problem_and_change_nothing() {
    let s = start().await;
    let (ann, docs, _) = user(&s, "ann").await;
    let v1 = write(&ann, &docs, "f.txt", b"one", 0).await;
    let v2 = write(&ann, &docs, "f.txt", b"two", v1.rev).await;
    let other = write(&ann, &docs, "other.txt", b"someone's work", 0).await;
    let err = ann.restore(docs.id, "f.txt", 999, "").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound));
    assert!(err.to_string().contains("f.txt") && err.to_string().contains("999"), "{err}");
    assert_eq!(
        code(ann.restore(docs.id, "f.txt", other.rev, "").await),
        Some(ErrorCode::NotFound),
        "another path's rev"
    );
    assert_eq!(code(ann.restore(docs.id, "../f.txt", v1.rev, "").await), Some(ErrorCode::InvalidPath));
    assert_eq!(code(ann.restore(docs.id, "f.txt", v1.rev, "/abs").await), Some(ErrorCode::InvalidPath));
    assert_eq!(code(ann.restore(docs.id + 100, "f.txt", v1.rev, "").await), Some(ErrorCode::NotFound));
    // Onto another live path: refused, with what is there.
    let (o, seq) = ann.restore(docs.id, "f.txt", v1.rev, "other.txt").await.unwrap();
    assert!(!o.accepted);
    assert_eq!(o.current.unwrap(), other);
    assert_eq!(seq, other.rev, "nothing was written");
    let history = ann.list_versions(docs.id, "f.txt", 0, 0).await.unwrap().entries;
    assert_eq!(history[0], v2, "f.txt is unchanged");
}

#[tokio::test]
async fn another_user_can_neither_see_nor_restore_history() {
    let s = start().await;
    let (ann, docs, _) = user(&s, "ann").await;
    let (bob, _, _) = user(&s, "bob").await;
    let v1 = write(&ann, &docs, "secret.txt", b"ann's secret", 0).await;
    delete(&ann, &docs, "secret.txt", v1.rev).await;
    assert_eq!(code(bob.list_versions(docs.id, "secret.txt", 0, 0).await), Some(ErrorCode::NotFound));
    assert_eq!(code(bob.list_trash(docs.id, "", 0, 0).await), Some(ErrorCode::NotFound));
    assert_eq!(code(bob.restore(docs.id, "secret.txt", v1.rev, "").await), Some(ErrorCode::NotFound));
    assert_eq!(bob.usage().await.unwrap().bytes_history, 0, "usage is per user");
    assert_eq!(ann.list_trash(docs.id, "", 0, 0).await.unwrap().entries.len(), 1, "Ann's trash is untouched");
}

#[tokio::test]
async fn usage_counts_current_files_history_and_stored_bytes() {
    let s = start().await;
    let (ann, docs, _) = user(&s, "ann").await;
    let v1 = write(&ann, &docs, "a.txt", b"12345", 0).await;
    write(&ann, &docs, "a.txt", b"1234567890", v1.rev).await;
    let u = ann.usage().await.unwrap();
    assert_eq!((u.files_current, u.bytes_current), (1, 10));
    assert_eq!((u.versions_history, u.bytes_history), (1, 5));
    assert_eq!((u.chunks, u.bytes_stored), (2, 15));
    assert_eq!(u.quota, None, "no quota: unlimited");
}

#[tokio::test]
async fn maintenance_prunes_expired_history_and_deletes_only_unreferenced_chunk_files() {
    let s = start().await;
    let (ann, docs, _) = user(&s, "ann").await;
    let now = unix_now();
    let old = write(&ann, &docs, "big.bin", b"old content, soon unreferenced", 0).await;
    let cur = write(&ann, &docs, "big.bin", b"current content", old.rev).await;
    let kept = write(&ann, &docs, "kept.txt", b"deleted, in the trash", 0).await;
    delete(&ann, &docs, "kept.txt", kept.rev).await;
    // Uploaded but not committed yet: an upload in progress.
    let (_, pending) = file_entry("pending.bin", b"upload in progress");
    ann.put_chunks(pending.clone()).await.unwrap();
    assert_eq!(chunk_files(&s), 4);

    // Half a grace period on: every version is within retention and every chunk is younger
    // than the grace period, so nothing at all is collected.
    let report = s.maintenance.run_once(now + GC_GRACE / 2).await.unwrap();
    assert_eq!((report.prune.versions_removed, report.chunks_deleted), (0, 0), "{report:?}");
    assert_eq!(chunk_files(&s), 4);

    // Forty days on: the overwritten version and the trash entry are past retention and go,
    // with their chunks, and so does the chunk of the upload abandoned 40 days ago; the
    // current version and its chunk stay.
    let report = s.maintenance.run_once(now + 40 * DAY).await.unwrap();
    assert_eq!(report.prune.versions_removed, 2, "{report:?}");
    assert_eq!(report.chunks_deleted, 3, "old, trash and the abandoned upload: {report:?}");
    assert_eq!(chunk_files(&s), 1, "only the current version's chunk is left");
    assert_eq!(content(&ann, &cur).await, b"current content");
    let old_chunk = filesync_proto::convert::chunks_from_wire(&old.chunks).unwrap()[0].hash;
    assert_eq!(code(ann.get_chunks(&[old_chunk]).await), Some(ErrorCode::NotFound));
    assert_eq!(code(ann.restore(docs.id, "big.bin", old.rev, "").await), Some(ErrorCode::NotFound), "pruned");
    assert!(ann.list_trash(docs.id, "", 0, 0).await.unwrap().entries.is_empty(), "the trash expired");
    let versions = ann.list_versions(docs.id, "big.bin", 0, 0).await.unwrap().entries;
    assert_eq!(versions, vec![cur.clone()], "the current version is never pruned");
    assert_eq!(ann.query_chunks(&[pending[0].0]).await.unwrap(), vec![0], "the server says so when asked");
}

#[tokio::test]
async fn a_chunk_uploaded_within_the_grace_period_survives_until_its_commit() {
    let s = start().await;
    let (ann, docs, _) = user(&s, "ann").await;
    let (entry, chunks) = file_entry("slow.bin", b"a slow upload");
    ann.put_chunks(chunks).await.unwrap();
    let report = s.maintenance.run_once(unix_now() + GC_GRACE / 2).await.unwrap();
    assert_eq!(report.chunks_deleted, 0, "{report:?}");
    let r = ann.commit(docs.id, vec![CommitChange { base_rev: 0, entry: Some(entry) }]).await.unwrap();
    assert!(r.outcomes[0].accepted, "the commit finds its chunks");
    let report = s.maintenance.run_once(unix_now() + 400 * DAY).await.unwrap();
    assert_eq!(report.chunks_deleted, 0, "a current version's chunks are never collected");
    assert_eq!(chunk_files(&s), 1);
}

#[tokio::test]
async fn a_commit_whose_chunks_were_collected_first_is_refused_and_goes_through_once_they_are_sent_again() {
    // The short grace period of soak tests (`--gc-grace-secs`): an upload slower than it
    // loses its chunks before its commit, which must fail whole and then succeed.
    let s = start().await;
    let (ann, docs, _) = user(&s, "ann").await;
    let (entry, chunks) = file_entry("slow.bin", b"slower than the grace period");
    ann.put_chunks(chunks.clone()).await.unwrap();
    let report = s.maintenance.clone().with_gc_grace(10).run_once(unix_now() + 20).await.unwrap();
    assert_eq!(report.chunks_deleted, 1, "{report:?}");
    let refused = ann.commit(docs.id, vec![CommitChange { base_rev: 0, entry: Some(entry.clone()) }]).await;
    assert_eq!(code(refused), Some(ErrorCode::MissingChunks));
    assert!(ann.list_versions(docs.id, "slow.bin", 0, 0).await.unwrap().entries.is_empty(), "nothing applied");
    assert_eq!(ann.query_chunks(&[chunks[0].0]).await.unwrap(), vec![0], "the client learns what to send again");
    ann.put_chunks(chunks).await.unwrap();
    let r = ann.commit(docs.id, vec![CommitChange { base_rev: 0, entry: Some(entry) }]).await.unwrap();
    assert!(r.outcomes[0].accepted);
}
