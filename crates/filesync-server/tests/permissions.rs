//! The data directory holds every user's files, password hashes and the TLS key: on Unix it
//! must be private to the server's user however permissive the umask, and a directory left
//! readable by others is made private on start. (A file of its own: the umask is per process.)
#![cfg(unix)]

mod support;

use filesync_proto::CommitChange;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use support::*;

/// Every entry under `dir` (itself included), with its permission bits.
fn modes(dir: &Path) -> Vec<(String, u32)> {
    let mut out = vec![(dir.display().to_string(), std::fs::metadata(dir).unwrap().permissions().mode() & 0o777)];
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(modes(&p));
        } else {
            out.push((p.display().to_string(), std::fs::metadata(&p).unwrap().permissions().mode() & 0o777));
        }
    }
    out
}

fn assert_private(dir: &Path) {
    for (path, mode) in modes(dir) {
        let want = if Path::new(&path).is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode, want, "{path} is {mode:o}");
    }
}

/// Stores a file for a new user, so that chunk files and directories exist.
async fn store_something(s: &TestServer, user: &str) {
    let c = s.connect().await;
    c.register(user, "password123", "laptop").await.unwrap();
    let folder = c.open_folder("docs", true).await.unwrap();
    let (entry, chunks) = file_entry("a.txt", b"private words");
    c.put_chunks(chunks).await.unwrap();
    c.commit(folder.id, vec![CommitChange { base_rev: 0, entry: Some(entry) }]).await.unwrap();
}

#[tokio::test]
async fn data_directory_is_private_to_the_server_user_under_umask_022() {
    // SAFETY: umask only sets the process's file creation mask; this binary's only test sets it.
    unsafe { libc::umask(0o022) };
    let s = start_server(true).await;
    store_something(&s, "ann").await;
    let names: Vec<String> = modes(&s.data).into_iter().map(|(p, _)| p).collect();
    for expected in ["meta.db", "cert.pem", "key.pem", "chunks"] {
        assert!(names.iter().any(|p| p.ends_with(expected)), "{expected} missing in {names:?}");
    }
    assert!(names.iter().filter(|p| p.contains("/chunks/")).count() >= 3, "a user dir, a fan-out dir, a chunk");
    assert_private(&s.data);

    // A data directory made readable by others (an old version, a copied backup) is made
    // private again on the next start.
    let data = s.data.clone();
    let dir = s.stop().await;
    for (path, _) in modes(&data) {
        let open = if Path::new(&path).is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(open)).unwrap();
    }
    let s = start_in(dir, |_| {}).await;
    assert_private(&s.data);
    store_something(&s, "bob").await;
    assert_private(&s.data);
}
