//! Conformance checks for [`MetaStore`]: accounts, devices, folders, the commit rule, the
//! journal queries and the per-user chunk index.

use crate::{CommitOutput, Device, Folder, MetaStore, Outcome, ProposedChange, StoreError, User};
use filesync_core::{ChunkRef, EntryKind, EntryState, FileMeta, Hash, RelPath};
use std::collections::BTreeSet;

pub(super) const NOW: i64 = 1_700_000_000;

/// A user with one device and one folder, named after the check that uses them.
pub(super) struct Account {
    pub(super) user: User,
    pub(super) device: Device,
    pub(super) folder: Folder,
}

pub(super) async fn account<S: MetaStore>(s: &S, check: &str) -> Account {
    let user = s
        .create_user(&format!("conformance-{check}"), "$argon2id$v=19$fake", NOW)
        .await
        .unwrap_or_else(|e| panic!("{check}: create_user failed: {e}"));
    let device = s
        .create_device(user.id, "laptop", &token(check, "laptop"), NOW)
        .await
        .unwrap_or_else(|e| panic!("{check}: create_device failed: {e}"));
    let folder = s
        .folder_by_name(user.id, "docs", true)
        .await
        .unwrap_or_else(|e| panic!("{check}: folder_by_name failed: {e}"))
        .unwrap_or_else(|| panic!("{check}: folder_by_name(create) returned None"));
    Account { user, device, folder }
}

pub(super) fn token(user: &str, device: &str) -> [u8; 32] {
    Hash::of(format!("token {user} {device}").as_bytes()).0
}

pub(super) fn path(s: &str) -> RelPath {
    RelPath::new(s).expect("test paths are valid")
}

/// A one-chunk file with this content.
pub(super) fn file(content: &[u8]) -> FileMeta {
    FileMeta {
        kind: EntryKind::File,
        size: content.len() as u64,
        mtime_ns: 1_700_000_000_123_456_789,
        executable: false,
        hash: filesync_core::file_hash(&[ChunkRef { hash: Hash::of(content), len: content.len() as u32 }]),
        chunks: vec![ChunkRef { hash: Hash::of(content), len: content.len() as u32 }],
    }
}

/// A one-chunk file whose chunk the user has.
pub(super) async fn stored_file<S: MetaStore>(s: &S, a: &Account, content: &[u8]) -> FileMeta {
    let meta = file(content);
    let chunks: Vec<(Hash, u32)> = meta.chunks.iter().map(|c| (c.hash, c.len)).collect();
    s.add_chunks(a.user.id, &chunks).await.unwrap_or_else(|e| panic!("add_chunks failed: {e}"));
    meta
}

pub(super) fn put(p: &str, base_rev: u64, meta: &FileMeta) -> ProposedChange {
    ProposedChange { path: path(p), base_rev, meta: Some(meta.clone()) }
}

pub(super) fn del(p: &str, base_rev: u64) -> ProposedChange {
    ProposedChange { path: path(p), base_rev, meta: None }
}

pub(super) async fn commit<S: MetaStore>(s: &S, a: &Account, changes: &[ProposedChange]) -> CommitOutput {
    let out = s
        .commit(a.user.id, a.folder.id, &a.device, changes, NOW)
        .await
        .unwrap_or_else(|e| panic!("commit of {} change(s) failed: {e}", changes.len()));
    assert_eq!(out.outcomes.len(), changes.len(), "commit must return one outcome per change");
    out
}

/// The entry an outcome carries, which must be `Accepted`.
pub(super) fn accepted(o: &Outcome, what: &str) -> Option<EntryState> {
    match o {
        Outcome::Accepted(e) => e.clone(),
        Outcome::Conflict(e) => panic!("{what}: expected Accepted, got Conflict carrying {e:?}"),
    }
}

/// The entry an outcome carries, which must be `Conflict`.
pub(super) fn conflict(o: &Outcome, what: &str) -> Option<EntryState> {
    match o {
        Outcome::Conflict(e) => e.clone(),
        Outcome::Accepted(e) => panic!("{what}: expected Conflict, got Accepted carrying {e:?}"),
    }
}

/// The entry an accepted outcome carries, which must exist.
pub(super) fn applied(o: &Outcome, what: &str) -> EntryState {
    accepted(o, what).unwrap_or_else(|| panic!("{what}: Accepted must carry the new entry"))
}

pub(super) async fn seq<S: MetaStore>(s: &S, a: &Account) -> u64 {
    s.folder(a.user.id, a.folder.id).await.expect("folder").expect("own folder exists").seq
}

pub(super) async fn current<S: MetaStore>(s: &S, a: &Account, p: &str) -> Option<EntryState> {
    s.current(a.folder.id, &path(p)).await.expect("current")
}

pub(super) async fn users_are_created_and_found_by_name_and_id<S: MetaStore>(s: &S) {
    let u = s.create_user("conformance-alice", "$argon2id$hash", NOW).await.expect("create_user");
    assert_eq!((u.name.as_str(), u.password_hash.as_str(), u.created_at), ("conformance-alice", "$argon2id$hash", NOW));
    assert_eq!(s.user_by_name("conformance-alice").await.unwrap(), Some(u.clone()), "user_by_name");
    assert_eq!(s.user_by_id(u.id).await.unwrap(), Some(u.clone()), "user_by_id");
    assert_eq!(s.user_by_name("conformance-nobody").await.unwrap(), None, "unknown name must be None");
    assert_eq!(s.user_by_id(u.id + 1000).await.unwrap(), None, "unknown id must be None");
}

pub(super) async fn user_names_are_unique<S: MetaStore>(s: &S) {
    let first = s.create_user("conformance-dup", "h1", NOW).await.expect("first create_user");
    match s.create_user("conformance-dup", "h2", NOW).await {
        Err(StoreError::UserExists(name)) => {
            assert_eq!(name, "conformance-dup", "UserExists names the user")
        }
        other => {
            panic!("a second user with the same name must fail with UserExists, got {other:?}")
        }
    }
    assert_eq!(s.user_by_name("conformance-dup").await.unwrap(), Some(first), "the first user is untouched");
}

pub(super) async fn password_hash_can_be_replaced<S: MetaStore>(s: &S) {
    let u = s.create_user("conformance-pw", "old", NOW).await.unwrap();
    s.set_password_hash(u.id, "new").await.expect("set_password_hash");
    assert_eq!(s.user_by_id(u.id).await.unwrap().unwrap().password_hash, "new", "password hash replaced");
}

pub(super) async fn devices_are_found_by_token_hash<S: MetaStore>(s: &S) {
    let a = account(s, "devtoken").await;
    assert_eq!(a.device.user_id, a.user.id);
    assert_eq!((a.device.name.as_str(), a.device.created_at), ("laptop", NOW));
    assert_eq!((a.device.last_seen, a.device.revoked), (0, false), "a new device is unseen and not revoked");
    let phone = s.create_device(a.user.id, "phone", &token("devtoken", "phone"), NOW).await.unwrap();
    assert_ne!(phone.id, a.device.id, "devices get distinct ids");
    let found = s.device_by_token_hash(&token("devtoken", "phone")).await.unwrap();
    assert_eq!(found, Some(phone.clone()), "device_by_token_hash finds the device owning the token");
    assert_eq!(s.device_by_token_hash(&[7; 32]).await.unwrap(), None, "unknown token hash must be None");
    assert_eq!(s.device(a.user.id, phone.id).await.unwrap(), Some(phone.clone()), "device(user, id)");
    let ids: BTreeSet<_> = s.list_devices(a.user.id).await.unwrap().into_iter().map(|d| d.id).collect();
    assert_eq!(ids, BTreeSet::from([a.device.id, phone.id]), "list_devices lists all of the user's devices");
}

pub(super) async fn devices_are_revoked_renamed_and_touched<S: MetaStore>(s: &S) {
    let a = account(s, "devlife").await;
    let (u, d) = (a.user.id, a.device.id);
    assert!(s.rename_device(u, d, "work laptop").await.unwrap(), "rename of an own device returns true");
    s.touch_device(d, NOW + 60).await.expect("touch_device");
    assert!(s.revoke_device(u, d).await.unwrap(), "revoke of an own device returns true");
    let dev = s.device(u, d).await.unwrap().expect("a revoked device still exists");
    assert_eq!((dev.name.as_str(), dev.last_seen, dev.revoked), ("work laptop", NOW + 60, true));
    let by_token = s.device_by_token_hash(&token("devlife", "laptop")).await.unwrap();
    assert_eq!(by_token, Some(dev), "device_by_token_hash returns revoked devices too (the caller refuses them)");
    assert!(!s.revoke_device(u, d + 1000).await.unwrap(), "revoking an unknown device returns false");
    assert!(!s.rename_device(u, d + 1000, "x").await.unwrap(), "renaming an unknown device returns false");
}

pub(super) async fn revoked_devices_are_reissued_or_removed_and_live_ones_never<S: MetaStore>(s: &S) {
    let a = account(s, "devagain").await;
    let (u, d) = (a.user.id, a.device.id);
    let fresh = token("devagain", "laptop again");
    assert_eq!(s.reissue_device(u, d, "laptop", &fresh, NOW + 5).await.unwrap(), None, "a live device is not reissued");
    assert_eq!(s.device_by_token_hash(&fresh).await.unwrap(), None, "and keeps its token");
    assert!(!s.remove_device(u, d).await.unwrap(), "a live device is not removed");
    assert!(s.revoke_device(u, d).await.unwrap());
    let back =
        s.reissue_device(u, d, "laptop 2", &fresh, NOW + 5).await.unwrap().expect("a revoked device is reissued");
    assert_eq!((back.id, back.name.as_str(), back.last_seen, back.revoked), (d, "laptop 2", NOW + 5, false));
    assert_eq!(s.device_by_token_hash(&fresh).await.unwrap(), Some(back), "the new token finds the same row");
    assert_eq!(s.device_by_token_hash(&token("devagain", "laptop")).await.unwrap(), None, "the old token is gone");
    assert_eq!(s.list_devices(u).await.unwrap().len(), 1, "no second row");

    let phone = s.create_device(u, "phone", &token("devagain", "phone"), NOW).await.unwrap();
    let b = account(s, "devagain-b").await;
    assert!(s.revoke_device(u, phone.id).await.unwrap());
    assert!(!s.remove_device(b.user.id, phone.id).await.unwrap(), "another user cannot remove it");
    let other = s.reissue_device(b.user.id, phone.id, "x", &token("devagain-b", "x"), NOW).await.unwrap();
    assert_eq!(other, None, "nor take it over");
    assert!(s.remove_device(u, phone.id).await.unwrap(), "a revoked device is removed");
    assert_eq!(s.device(u, phone.id).await.unwrap(), None);
    let ids: Vec<_> = s.list_devices(u).await.unwrap().into_iter().map(|d| d.id).collect();
    assert_eq!(ids, vec![d], "the removed device is no longer listed");
    assert!(!s.remove_device(u, phone.id).await.unwrap(), "removing it twice returns false");
}

pub(super) async fn devices_are_scoped_to_their_user<S: MetaStore>(s: &S) {
    let a = account(s, "devscope-a").await;
    let b = account(s, "devscope-b").await;
    assert_eq!(s.device(b.user.id, a.device.id).await.unwrap(), None, "user B must not see user A's device");
    assert!(!s.revoke_device(b.user.id, a.device.id).await.unwrap(), "user B must not revoke A's device");
    assert!(!s.rename_device(b.user.id, a.device.id, "pwned").await.unwrap(), "user B must not rename A's device");
    let listed: Vec<_> = s.list_devices(b.user.id).await.unwrap().into_iter().map(|d| d.id).collect();
    assert_eq!(listed, vec![b.device.id], "list_devices shows only the user's own devices");
    assert_eq!(s.device(a.user.id, a.device.id).await.unwrap(), Some(a.device), "A's device is untouched");
}

pub(super) async fn folders_are_created_on_first_use_only<S: MetaStore>(s: &S) {
    let a = account(s, "folders").await;
    assert_eq!(a.folder.seq, 0, "a new folder starts at seq 0");
    assert_eq!((a.folder.user_id, a.folder.name.as_str()), (a.user.id, "docs"));
    assert_eq!(s.folder_by_name(a.user.id, "photos", false).await.unwrap(), None, "no create: absent is None");
    assert_eq!(s.list_folders(a.user.id).await.unwrap(), vec![a.folder.clone()], "the no-create lookup made nothing");
    let again = s.folder_by_name(a.user.id, "docs", true).await.unwrap();
    assert_eq!(again, Some(a.folder.clone()), "create on an existing name returns the same folder");
    let photos = s.folder_by_name(a.user.id, "photos", true).await.unwrap().expect("created");
    assert_ne!(photos.id, a.folder.id);
    assert_eq!(s.folder(a.user.id, photos.id).await.unwrap(), Some(photos.clone()), "folder(user, id)");
    let ids: BTreeSet<_> = s.list_folders(a.user.id).await.unwrap().into_iter().map(|f| f.id).collect();
    assert_eq!(ids, BTreeSet::from([a.folder.id, photos.id]), "list_folders lists the user's folders");
}

pub(super) async fn folders_are_isolated_between_users<S: MetaStore>(s: &S) {
    let a = account(s, "foldiso-a").await;
    let b = account(s, "foldiso-b").await;
    let meta = stored_file(s, &a, b"a's file").await;
    commit(s, &a, &[put("f", 0, &meta)]).await;
    assert_ne!(a.folder.id, b.folder.id, "two users' folders of the same name are distinct");
    assert_eq!(s.folder(b.user.id, a.folder.id).await.unwrap(), None, "user B must not see user A's folder by id");
    let listed: Vec<_> = s.list_folders(b.user.id).await.unwrap().into_iter().map(|f| f.id).collect();
    assert_eq!(listed, vec![b.folder.id], "list_folders shows only the user's own folders");
    stored_file(s, &b, b"b's file").await;
    let attempt = s.commit(b.user.id, a.folder.id, &b.device, &[put("g", 0, &file(b"b's file"))], NOW).await;
    match attempt {
        Err(StoreError::FolderNotFound(id)) => {
            assert_eq!(id, a.folder.id, "FolderNotFound names the folder")
        }
        other => panic!("user B committing to user A's folder must fail with FolderNotFound, got {other:?}"),
    }
    assert_eq!(seq(s, &a).await, 1, "A's folder is unchanged by B's attempt");
    assert_eq!(current(s, &a, "g").await, None, "B's change did not land in A's folder");
}

pub(super) async fn folders_have_independent_seqs<S: MetaStore>(s: &S) {
    let a = account(s, "foldseq").await;
    let other = s.folder_by_name(a.user.id, "other", true).await.unwrap().unwrap();
    let meta = stored_file(s, &a, b"x").await;
    commit(s, &a, &[put("x", 0, &meta), put("y", 0, &meta)]).await;
    let b = Account { folder: other, ..a };
    let out = commit(s, &b, &[put("x", 0, &meta)]).await;
    assert_eq!(out.folder_seq, 1, "each folder numbers its revs from 1");
    assert_eq!(applied(&out.outcomes[0], "first change in the second folder").rev, 1);
    assert_eq!(current(s, &b, "y").await, None, "folders do not share paths");
}

pub(super) async fn commit_to_unknown_folder_is_folder_not_found<S: MetaStore>(s: &S) {
    let a = account(s, "nofolder").await;
    let missing = a.folder.id + 1_000_000;
    match s.commit(a.user.id, missing, &a.device, &[del("x", 0)], NOW).await {
        Err(StoreError::FolderNotFound(id)) => assert_eq!(id, missing),
        other => {
            panic!("commit to a folder that does not exist must be FolderNotFound, got {other:?}")
        }
    }
}

pub(super) async fn commit_of_new_file_gets_next_rev<S: MetaStore>(s: &S) {
    let a = account(s, "newfile").await;
    let meta = stored_file(s, &a, b"hello").await;
    let out = commit(s, &a, &[put("dir/hello.txt", 0, &meta)]).await;
    let e = applied(&out.outcomes[0], "new file");
    assert_eq!((e.rev, out.folder_seq), (1, 1), "the first change of a folder is rev 1 and seq 1");
    assert_eq!(e.path, path("dir/hello.txt"));
    assert_eq!(e.meta, Some(meta));
    assert_eq!((e.device_id, e.device_name.as_str(), e.committed_at), (a.device.id, "laptop", NOW));
    assert_eq!(current(s, &a, "dir/hello.txt").await, Some(e), "current() returns the committed entry");
    assert_eq!(seq(s, &a).await, 1, "the folder's seq advanced");
}

pub(super) async fn commit_based_on_current_rev_is_applied<S: MetaStore>(s: &S) {
    let a = account(s, "edit").await;
    let (v1, v2) = (stored_file(s, &a, b"v1").await, stored_file(s, &a, b"v2").await);
    commit(s, &a, &[put("f", 0, &v1)]).await;
    let out = commit(s, &a, &[put("f", 1, &v2)]).await;
    let e = applied(&out.outcomes[0], "edit based on the current rev");
    assert_eq!((e.rev, e.meta.as_ref()), (2, Some(&v2)));
    assert_eq!(current(s, &a, "f").await, Some(e));
}

pub(super) async fn commit_based_on_stale_rev_conflicts_with_current<S: MetaStore>(s: &S) {
    let a = account(s, "stale").await;
    let (v1, v2, v3) =
        (stored_file(s, &a, b"v1").await, stored_file(s, &a, b"v2").await, stored_file(s, &a, b"v3").await);
    commit(s, &a, &[put("f", 0, &v1)]).await;
    let cur = applied(&commit(s, &a, &[put("f", 1, &v2)]).await.outcomes[0], "second edit");
    let out = commit(s, &a, &[put("f", 1, &v3)]).await;
    assert_eq!(conflict(&out.outcomes[0], "edit based on rev 1 when rev 2 is current"), Some(cur.clone()));
    assert_eq!(out.folder_seq, 2, "a conflict allocates no rev");
    let del_out = commit(s, &a, &[del("f", 1)]).await;
    assert_eq!(conflict(&del_out.outcomes[0], "delete based on a stale rev"), Some(cur.clone()));
    assert_eq!(current(s, &a, "f").await, Some(cur), "a conflict leaves the current entry");
}

pub(super) async fn creating_an_existing_path_from_scratch_conflicts<S: MetaStore>(s: &S) {
    let a = account(s, "recreate").await;
    let (mine, theirs) = (stored_file(s, &a, b"mine").await, stored_file(s, &a, b"theirs").await);
    let cur = applied(&commit(s, &a, &[put("f", 0, &mine)]).await.outcomes[0], "create");
    let out = commit(s, &a, &[put("f", 0, &theirs)]).await;
    assert_eq!(conflict(&out.outcomes[0], "creating a path that exists (base 0)"), Some(cur));
}

pub(super) async fn edit_beats_concurrent_delete<S: MetaStore>(s: &S) {
    let a = account(s, "editdelete").await;
    let (v1, v2) = (stored_file(s, &a, b"v1").await, stored_file(s, &a, b"v2").await);
    commit(s, &a, &[put("f", 0, &v1)]).await;
    let tomb = applied(&commit(s, &a, &[del("f", 1)]).await.outcomes[0], "delete based on the current rev");
    assert_eq!((tomb.rev, tomb.meta.as_ref()), (2, None), "a delete is a tombstone with the next rev");
    let out = commit(s, &a, &[put("f", 1, &v2)]).await;
    let e = applied(&out.outcomes[0], "an edit based on the rev before a delete must win");
    assert_eq!((e.rev, e.meta.as_ref()), (3, Some(&v2)));
}

pub(super) async fn deleting_a_deleted_or_unknown_path_changes_nothing<S: MetaStore>(s: &S) {
    let a = account(s, "deletedeleted").await;
    let v1 = stored_file(s, &a, b"v1").await;
    commit(s, &a, &[put("f", 0, &v1)]).await;
    let tomb = applied(&commit(s, &a, &[del("f", 1)]).await.outcomes[0], "delete");
    let out = commit(s, &a, &[del("f", 1), del("never-existed", 0)]).await;
    assert_eq!(accepted(&out.outcomes[0], "delete of a deleted path"), Some(tomb), "carries the tombstone");
    assert_eq!(accepted(&out.outcomes[1], "delete of an unknown path"), None, "carries no entry");
    assert_eq!(out.folder_seq, 2, "no rev allocated");
    assert_eq!(current(s, &a, "never-existed").await, None, "no tombstone is made for an unknown path");
}

pub(super) async fn identical_proposal_is_already_current_without_new_rev<S: MetaStore>(s: &S) {
    let a = account(s, "identical").await;
    let v1 = stored_file(s, &a, b"v1").await;
    let cur = applied(&commit(s, &a, &[put("f", 0, &v1)]).await.outcomes[0], "create");
    // A retried commit: same content, base rev no longer current.
    let out = commit(s, &a, &[put("f", 0, &v1)]).await;
    assert_eq!(accepted(&out.outcomes[0], "identical proposal"), Some(cur.clone()), "carries the unchanged entry");
    assert_eq!(out.folder_seq, 1, "no new seq for an identical proposal");
    assert_eq!(s.versions(a.folder.id, &path("f")).await.unwrap(), vec![cur], "no new version written");
}

pub(super) async fn empty_commit_changes_nothing<S: MetaStore>(s: &S) {
    let a = account(s, "empty").await;
    let out = commit(s, &a, &[]).await;
    assert_eq!(out, CommitOutput { outcomes: vec![], folder_seq: 0 });
}

pub(super) async fn batch_sees_its_own_earlier_changes<S: MetaStore>(s: &S) {
    let a = account(s, "batch").await;
    let (v1, v2, other) =
        (stored_file(s, &a, b"v1").await, stored_file(s, &a, b"v2").await, stored_file(s, &a, b"other").await);
    let out = commit(s, &a, &[put("f", 0, &v1), put("f", 1, &v2), put("g", 0, &v1), put("g", 0, &other)]).await;
    let first = applied(&out.outcomes[0], "create in a batch");
    let second = applied(&out.outcomes[1], "edit of a path created earlier in the same batch");
    let g = applied(&out.outcomes[2], "another create");
    assert_eq!((first.rev, second.rev, g.rev), (1, 2, 3), "revs follow the order of the batch");
    assert_eq!(
        conflict(&out.outcomes[3], "re-create of a path created earlier in the batch"),
        Some(g.clone()),
        "the conflict carries the entry the batch just made"
    );
    assert_eq!(out.folder_seq, 3);
    assert_eq!(current(s, &a, "f").await, Some(second.clone()), "current is the last applied change");
    let revs: Vec<u64> = s.versions(a.folder.id, &path("f")).await.unwrap().iter().map(|e| e.rev).collect();
    assert_eq!(revs, vec![2, 1], "both versions are kept");
    assert_eq!(s.changes_since(a.folder.id, 0, 100).await.unwrap(), vec![second, g], "one entry per path");
}

pub(super) async fn a_file_where_a_directory_has_live_entries_conflicts<S: MetaStore>(s: &S) {
    let a = account(s, "tree-dir").await;
    let (x, y, file_c) =
        (stored_file(s, &a, b"x").await, stored_file(s, &a, b"y").await, stored_file(s, &a, b"c").await);
    let out = commit(s, &a, &[put("c", 0, &FileMeta::dir(1)), put("c/x", 0, &x), put("c/d/y", 0, &y)]).await;
    let dir = applied(&out.outcomes[0], "a directory");
    // A file in the directory's place while entries are below it, even deep below.
    let out = commit(s, &a, &[put("c", dir.rev, &file_c)]).await;
    assert_eq!(conflict(&out.outcomes[0], "a file over a directory with entries"), Some(dir.clone()));
    let out = commit(s, &a, &[del("c/x", 2), put("c", dir.rev, &file_c)]).await;
    applied(&out.outcomes[0], "the deletion of one entry");
    conflict(&out.outcomes[1], "a file over a directory with one entry left (deep)");
    // Deleting the rest first, in the same batch, makes room; a name that only shares the
    // prefix (`c.txt`, `cd`) is not below `c`.
    let (other, cd) = (stored_file(s, &a, b"other").await, stored_file(s, &a, b"cd").await);
    commit(s, &a, &[put("c.txt", 0, &other), put("cd", 0, &cd)]).await;
    let out = commit(s, &a, &[del("c/d/y", 3), put("c", dir.rev, &file_c)]).await;
    applied(&out.outcomes[0], "the last entry below");
    let f = applied(&out.outcomes[1], "a file over a directory whose entries are all deleted");
    assert_eq!(f.meta.as_ref(), Some(&file_c));
    // The same holds for a path that is absent or deleted itself, with entries below it.
    let out = commit(s, &a, &[put("e/f", 0, &x), put("e", 0, &y)]).await;
    applied(&out.outcomes[0], "a file with no directory entry above it");
    assert_eq!(conflict(&out.outcomes[1], "a file where the batch just put an entry below"), None);
}

pub(super) async fn nothing_is_put_below_a_live_file<S: MetaStore>(s: &S) {
    let a = account(s, "tree-file").await;
    let (f, g) = (stored_file(s, &a, b"f").await, stored_file(s, &a, b"g").await);
    let file = applied(&commit(s, &a, &[put("a/f", 0, &f)]).await.outcomes[0], "a file");
    let out = commit(s, &a, &[put("a/f/g", 0, &g), put("a/f/d", 0, &FileMeta::dir(1)), put("a/f/d/g", 0, &g)]).await;
    for (i, what) in
        ["a file below a live file", "a directory below a live file", "a file two levels below"].into_iter().enumerate()
    {
        assert_eq!(conflict(&out.outcomes[i], what), None, "{what}: carries the (absent) entry of its own path");
    }
    assert_eq!(out.folder_seq, 1, "nothing applied");
    // Replacing the file by a directory first, in the same batch, makes room.
    let out = commit(s, &a, &[put("a/f", file.rev, &FileMeta::dir(1)), put("a/f/g", 0, &g)]).await;
    applied(&out.outcomes[0], "a directory replacing the file");
    applied(&out.outcomes[1], "a file in the directory that replaced the file");
    // Below a deleted file is free.
    let h = applied(&commit(s, &a, &[put("h", 0, &f)]).await.outcomes[0], "another file");
    let out = commit(s, &a, &[del("h", h.rev), put("h/g", 0, &g)]).await;
    applied(&out.outcomes[1], "a file below a deleted file");
}

pub(super) async fn missing_chunks_roll_back_the_whole_batch<S: MetaStore>(s: &S) {
    let a = account(s, "missing").await;
    let have = stored_file(s, &a, b"have").await;
    commit(s, &a, &[put("existing", 0, &have)]).await;
    let (lost1, lost2) = (file(b"never uploaded 1"), file(b"never uploaded 2"));
    let both = FileMeta { chunks: [lost1.chunks.clone(), lost2.chunks.clone()].concat(), ..lost1.clone() };
    let batch = [put("new", 0, &have), put("existing", 1, &lost1), put("both", 0, &both), del("gone", 0)];
    match s.commit(a.user.id, a.folder.id, &a.device, &batch, NOW).await {
        Err(StoreError::MissingChunks(list)) => {
            let got: BTreeSet<Hash> = list.into_iter().collect();
            let want = BTreeSet::from([lost1.chunks[0].hash, lost2.chunks[0].hash]);
            assert_eq!(got, want, "MissingChunks lists exactly the chunks the user lacks");
        }
        other => panic!("a commit naming chunks the user lacks must fail with MissingChunks, got {other:?}"),
    }
    assert_eq!(seq(s, &a).await, 1, "seq unchanged after MissingChunks");
    assert_eq!(current(s, &a, "new").await, None, "the valid change of the batch was rolled back too");
    assert_eq!(current(s, &a, "existing").await.unwrap().rev, 1, "the edit was rolled back");
    assert_eq!(s.versions(a.folder.id, &path("new")).await.unwrap(), vec![], "no version left behind");
    // The same batch goes through once the chunks are there, with the revs a clean run gets.
    s.add_chunks(a.user.id, &[(lost1.chunks[0].hash, 16), (lost2.chunks[0].hash, 16)]).await.unwrap();
    let out = commit(s, &a, &batch).await;
    assert_eq!(out.folder_seq, 4, "the retried batch starts from the unchanged seq");
}

pub(super) async fn conflicting_changes_need_no_chunks<S: MetaStore>(s: &S) {
    let a = account(s, "conflictchunks").await;
    let v1 = stored_file(s, &a, b"v1").await;
    commit(s, &a, &[put("f", 0, &v1)]).await;
    let out = commit(s, &a, &[put("f", 0, &file(b"not uploaded"))]).await;
    conflict(&out.outcomes[0], "a conflicting change is rejected before its chunks matter");
}

pub(super) async fn metadata_round_trips_exactly<S: MetaStore>(s: &S) {
    let a = account(s, "roundtrip").await;
    let (c1, c2) = (Hash::of(b"part one"), Hash::of(b"part two"));
    s.add_chunks(a.user.id, &[(c1, 4 << 20), (c2, 1)]).await.unwrap();
    let big = FileMeta {
        kind: EntryKind::File,
        size: (4 << 20) + 1,
        mtime_ns: -1_000_000_007,
        executable: true,
        hash: filesync_core::file_hash(&[ChunkRef { hash: c1, len: 4 << 20 }, ChunkRef { hash: c2, len: 1 }]),
        chunks: vec![ChunkRef { hash: c1, len: 4 << 20 }, ChunkRef { hash: c2, len: 1 }],
    };
    let huge = FileMeta { size: 5 << 40, chunks: vec![ChunkRef { hash: c1, len: 4 << 20 }; 3], ..big.clone() };
    let empty =
        FileMeta { size: 0, hash: filesync_core::file_hash(&[]), chunks: vec![], executable: false, ..big.clone() };
    let dir = FileMeta::dir(42);
    let names = ["dir/big.bin", "huge.bin", "empty", "dir", "ünïcödé/名前.txt"];
    let metas = [&big, &huge, &empty, &dir, &big];
    let changes: Vec<_> = names.iter().zip(metas).map(|(n, m)| put(n, 0, m)).collect();
    let out = commit(s, &a, &changes).await;
    for (i, n) in names.iter().enumerate() {
        let e = applied(&out.outcomes[i], n);
        assert_eq!(e.meta.as_ref(), Some(metas[i]), "{n}: committed metadata is returned unchanged");
        assert_eq!(current(s, &a, n).await, Some(e), "{n}: current() returns exactly what was committed");
    }
}

pub(super) async fn changes_since_orders_by_rev_and_limits<S: MetaStore>(s: &S) {
    let a = account(s, "since").await;
    let v = stored_file(s, &a, b"v").await;
    for (i, p) in ["c", "a", "b", "e", "d"].iter().enumerate() {
        commit(s, &a, &[put(p, 0, &FileMeta { mtime_ns: i as i64, ..v.clone() })]).await;
    }
    let all = s.changes_since(a.folder.id, 0, 100).await.unwrap();
    let order: Vec<(&str, u64)> = all.iter().map(|e| (e.path.as_str(), e.rev)).collect();
    assert_eq!(order, vec![("c", 1), ("a", 2), ("b", 3), ("e", 4), ("d", 5)], "ascending by rev, not by path");
    assert_eq!(s.changes_since(a.folder.id, 0, 2).await.unwrap(), all[..2], "limit caps the answer");
    assert_eq!(s.changes_since(a.folder.id, 3, 100).await.unwrap(), all[3..], "only revs above `since`");
    assert_eq!(s.changes_since(a.folder.id, 5, 100).await.unwrap(), vec![], "nothing above the folder seq");
    assert_eq!(s.changes_since(a.folder.id, 0, 0).await.unwrap(), vec![], "limit 0 returns nothing");
}

pub(super) async fn changes_since_returns_latest_version_and_tombstones<S: MetaStore>(s: &S) {
    let a = account(s, "sincelatest").await;
    let (v1, v2) = (stored_file(s, &a, b"v1").await, stored_file(s, &a, b"v2").await);
    commit(s, &a, &[put("kept", 0, &v1), put("edited", 0, &v1), put("deleted", 0, &v1)]).await;
    let out = commit(s, &a, &[put("edited", 2, &v2), del("deleted", 3)]).await;
    let (edited, tomb) = (applied(&out.outcomes[0], "edit"), applied(&out.outcomes[1], "delete"));
    let all = s.changes_since(a.folder.id, 0, 100).await.unwrap();
    let order: Vec<(&str, u64, bool)> = all.iter().map(|e| (e.path.as_str(), e.rev, e.meta.is_some())).collect();
    assert_eq!(
        order,
        vec![("kept", 1, true), ("edited", 4, true), ("deleted", 5, false)],
        "one entry per path (its latest version), tombstones included"
    );
    assert_eq!(s.changes_since(a.folder.id, 3, 100).await.unwrap(), vec![edited, tomb]);
}

pub(super) async fn versions_are_newest_first<S: MetaStore>(s: &S) {
    let a = account(s, "versions").await;
    let (v1, v2) = (stored_file(s, &a, b"v1").await, stored_file(s, &a, b"v2").await);
    let e1 = applied(&commit(s, &a, &[put("f", 0, &v1)]).await.outcomes[0], "v1");
    commit(s, &a, &[put("other", 0, &v1)]).await;
    let e2 = applied(&commit(s, &a, &[put("f", 1, &v2)]).await.outcomes[0], "v2");
    let e3 = applied(&commit(s, &a, &[del("f", 3)]).await.outcomes[0], "delete");
    assert_eq!(s.versions(a.folder.id, &path("f")).await.unwrap(), vec![e3, e2, e1], "newest first, tombstone too");
    assert_eq!(s.versions(a.folder.id, &path("nothing")).await.unwrap(), vec![], "no versions of an unknown path");
}

pub(super) async fn chunk_presence_is_per_user<S: MetaStore>(s: &S) {
    let a = account(s, "chunks-a").await;
    let b = account(s, "chunks-b").await;
    let (h1, h2, h3) = (Hash::of(b"1"), Hash::of(b"2"), Hash::of(b"3"));
    s.add_chunks(a.user.id, &[(h1, 10), (h3, 30)]).await.unwrap();
    s.add_chunks(a.user.id, &[(h1, 10)]).await.expect("adding a chunk twice is fine");
    assert_eq!(s.missing_chunks(a.user.id, &[h1, h2, h3, h2]).await.unwrap(), vec![1, 3], "indices of absent ones");
    assert_eq!(s.chunk_sizes(a.user.id, &[h3, h2, h1]).await.unwrap(), vec![Some(30), None, Some(10)]);
    assert_eq!(s.missing_chunks(b.user.id, &[h1, h3]).await.unwrap(), vec![0, 1], "user B lacks user A's chunks");
    assert_eq!(s.chunk_sizes(b.user.id, &[h1]).await.unwrap(), vec![None], "user B sees no size for A's chunk");
    let uses_h1 = FileMeta { chunks: vec![ChunkRef { hash: h1, len: 10 }], ..file(b"x") };
    match s.commit(b.user.id, b.folder.id, &b.device, &[put("f", 0, &uses_h1)], NOW).await {
        Err(StoreError::MissingChunks(list)) => assert_eq!(list, vec![h1]),
        other => panic!("user B must not commit a file made of user A's chunks, got {other:?}"),
    }
    assert!(s.missing_chunks(a.user.id, &[]).await.unwrap().is_empty(), "an empty query is fine");
    s.add_chunks(a.user.id, &[]).await.expect("adding nothing is fine");
}

pub(super) async fn chunk_queries_handle_thousands_of_hashes<S: MetaStore>(s: &S) {
    let a = account(s, "manychunks").await;
    let hashes: Vec<Hash> = (0..2500u32).map(|i| Hash::of(&i.to_le_bytes())).collect();
    let even: Vec<(Hash, u32)> = hashes.iter().enumerate().step_by(2).map(|(i, h)| (*h, i as u32)).collect();
    s.add_chunks(a.user.id, &even).await.expect("add_chunks of 1250 chunks");
    let missing = s.missing_chunks(a.user.id, &hashes).await.expect("missing_chunks of 2500 hashes");
    assert_eq!(missing, (1..2500).step_by(2).collect::<Vec<_>>(), "every odd index is missing");
    let sizes = s.chunk_sizes(a.user.id, &hashes).await.expect("chunk_sizes of 2500 hashes");
    for (i, size) in sizes.iter().enumerate() {
        assert_eq!(*size, (i % 2 == 0).then_some(i as u32), "size of chunk {i}");
    }
}

pub(super) async fn large_batch_commits_in_order<S: MetaStore>(s: &S) {
    let a = account(s, "largebatch").await;
    let metas: Vec<FileMeta> = (0..1200).map(|i| file(format!("file {i}").as_bytes())).collect();
    let chunks: Vec<(Hash, u32)> = metas.iter().map(|m| (m.chunks[0].hash, m.size as u32)).collect();
    s.add_chunks(a.user.id, &chunks).await.unwrap();
    let changes: Vec<_> = metas.iter().enumerate().map(|(i, m)| put(&format!("d{}/f{i}", i % 7), 0, m)).collect();
    let out = commit(s, &a, &changes).await;
    assert_eq!(out.folder_seq, 1200, "every change of a 1200-change batch is applied");
    let all = s.changes_since(a.folder.id, 0, 5000).await.unwrap();
    assert_eq!(all.len(), 1200);
    for (i, e) in all.iter().enumerate() {
        assert_eq!((e.rev, e.path.as_str()), (i as u64 + 1, changes[i].path.as_str()), "entry {i}");
        assert_eq!(e.meta.as_ref(), Some(&metas[i]));
    }
    // Re-sending the whole batch (a retry after a lost reply) is accepted without new revs.
    let again = commit(s, &a, &changes).await;
    assert_eq!(again.folder_seq, 1200, "a retried batch allocates nothing");
    assert!(again.outcomes.iter().all(|o| matches!(o, Outcome::Accepted(Some(_)))));
}

pub(super) async fn forgotten_chunks_are_missing_until_added_again<S: MetaStore>(s: &S) {
    let a = account(s, "forget").await;
    let b = account(s, "forget-other").await;
    let (kept, lost) = (file(b"kept"), file(b"lost"));
    let hashes = [kept.chunks[0].hash, lost.chunks[0].hash];
    for who in [&a, &b] {
        s.add_chunks(who.user.id, &[(hashes[0], 4), (hashes[1], 4)]).await.unwrap();
    }
    commit(s, &a, &[put("lost", 0, &lost)]).await;
    s.forget_chunks(a.user.id, &[hashes[1], Hash::of(b"never had it")]).await.unwrap();
    assert_eq!(s.missing_chunks(a.user.id, &hashes).await.unwrap(), vec![1], "forgotten: asked for again");
    assert_eq!(s.chunk_sizes(a.user.id, &hashes).await.unwrap(), vec![Some(4), None]);
    assert_eq!(s.missing_chunks(b.user.id, &hashes).await.unwrap(), Vec::<usize>::new(), "other users keep theirs");
    assert!(current(s, &a, "lost").await.is_some(), "versions naming it are kept");
    s.add_chunks(a.user.id, &[(hashes[1], 4)]).await.unwrap();
    assert_eq!(s.missing_chunks(a.user.id, &hashes).await.unwrap(), Vec::<usize>::new(), "an upload repairs it");
}
