//! End-to-end sync scenarios: a real server process and two or three real clients on
//! 127.0.0.1, each with its own home and folder, compared byte for byte.

mod support;

use support::*;

#[test]
fn initial_sync_both_ways_with_three_clients() {
    let server = TestServer::start();
    let a = TestClient::register(&server, "ann", "laptop");
    let b = TestClient::login(&server, "ann", "desktop");
    let c = TestClient::login(&server, "ann", "tablet");
    a.write("from-a.txt", "hello from a");
    a.write("shared/nested/deep.bin", random_bytes(10_000, 1));
    b.write("from-b.txt", "hello from b");
    std::fs::create_dir_all(b.path("empty-dir")).unwrap();
    a.write("empty.txt", "");
    a.sync();
    b.sync();
    c.sync();
    a.sync();
    let t = a.tree();
    assert_eq!(t, b.tree());
    assert_eq!(t, c.tree());
    assert_eq!(t.get("empty-dir"), Some(&Node::Dir));
    assert_eq!(b.read("from-a.txt"), b"hello from a");
    assert_eq!(a.read("from-b.txt"), b"hello from b");
    assert_eq!(c.read("empty.txt"), b"");
}

#[test]
fn edits_deletes_renames_and_directories_propagate() {
    let server = TestServer::start();
    let a = TestClient::register(&server, "ann", "laptop");
    let b = TestClient::login(&server, "ann", "desktop");
    a.write("keep.txt", "v1");
    a.write("gone.txt", "bye");
    a.write("old-name.txt", "renamed content");
    a.write("dir/sub/file.txt", "deep");
    a.write("olddir/x.txt", "x");
    std::fs::create_dir_all(a.path("emptydir")).unwrap();
    a.sync();
    b.sync();
    assert_eq!(a.tree(), b.tree());

    // Edit, delete, rename, move a directory, remove an empty directory, add a new empty one.
    a.write("keep.txt", "v2, longer than before");
    std::fs::remove_file(a.path("gone.txt")).unwrap();
    std::fs::rename(a.path("old-name.txt"), a.path("dir/new-name.txt")).unwrap();
    std::fs::rename(a.path("olddir"), a.path("newdir")).unwrap();
    std::fs::remove_dir(a.path("emptydir")).unwrap();
    std::fs::create_dir_all(a.path("fresh/empty")).unwrap();
    a.sync();
    b.sync();
    assert_eq!(b.read("keep.txt"), b"v2, longer than before");
    assert!(!b.exists("gone.txt"));
    assert!(!b.exists("old-name.txt"));
    assert_eq!(b.read("dir/new-name.txt"), b"renamed content");
    assert!(!b.exists("olddir"));
    assert_eq!(b.read("newdir/x.txt"), b"x");
    assert!(!b.exists("emptydir"));
    assert!(b.path("fresh/empty").is_dir());
    assert_eq!(a.tree(), b.tree());

    // And back the other way: delete a whole tree on b.
    std::fs::remove_dir_all(b.path("dir")).unwrap();
    b.sync();
    a.sync();
    assert!(!a.exists("dir"));
    assert_eq!(a.tree(), b.tree());
}

#[test]
fn unicode_names_executable_bit_and_mtime() {
    let server = TestServer::start();
    let a = TestClient::register(&server, "ann", "laptop");
    let b = TestClient::login(&server, "ann", "desktop");
    a.write("Grüße/日本語.txt", "unicode");
    a.write("emoji 🎉.md", "party");
    // A decomposed (NFD) name is stored in NFC.
    a.write("cafe\u{301}.txt", "nfd");
    a.write("run.sh", "#!/bin/sh\necho hi\n");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(a.path("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000);
    std::fs::File::options().write(true).open(a.path("emoji 🎉.md")).unwrap().set_modified(old).unwrap();
    a.sync();
    b.sync();
    assert_eq!(b.read("Grüße/日本語.txt"), b"unicode");
    assert_eq!(b.read("caf\u{e9}.txt"), b"nfd");
    assert!(!b.exists("cafe\u{301}.txt"));
    assert_eq!(b.path("emoji 🎉.md").metadata().unwrap().modified().unwrap(), old);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_ne!(b.path("run.sh").metadata().unwrap().permissions().mode() & 0o111, 0);
    }
    assert_eq!(a.tree(), b.tree());
}

#[test]
fn a_100_mib_file_syncs_and_a_move_sends_no_data() {
    let server = TestServer::start();
    let a = TestClient::register(&server, "ann", "laptop");
    let b = TestClient::login(&server, "ann", "desktop");
    let data = random_bytes(100 << 20, 7);
    a.write("big.bin", &data);
    a.sync();
    b.sync();
    assert!(b.read("big.bin") == data, "100 MiB file differs");
    let chunks_before = server.chunk_files();

    // Move it: the server already has every chunk, and b has them locally.
    std::fs::create_dir_all(a.path("archive")).unwrap();
    std::fs::rename(a.path("big.bin"), a.path("archive/big.bin")).unwrap();
    let r = a.sync_report();
    assert_eq!(r["bytes_up"], 0, "a move must not upload data: {r}");
    let r = b.sync_report();
    assert_eq!(r["bytes_down"], 0, "a move must not download data: {r}");
    assert!(!b.exists("big.bin"));
    assert!(b.read("archive/big.bin") == data);
    assert_eq!(server.chunk_files(), chunks_before);

    // An insert in the middle sends only the chunks around it (at most a few MiB of 100).
    let mut edited = data.clone();
    edited.splice(50 << 20..50 << 20, b"inserted".iter().copied());
    a.write("archive/big.bin", &edited);
    let r = a.sync_report();
    let up = r["bytes_up"].as_u64().unwrap();
    assert!(up > 0 && up <= 9 << 20, "insert re-sent {up} bytes");
    let r = b.sync_report();
    let down = r["bytes_down"].as_u64().unwrap();
    assert!(down > 0 && down <= 9 << 20, "insert re-fetched {down} bytes");
    assert!(b.read("archive/big.bin") == edited);
}

#[test]
fn concurrent_edits_make_exactly_one_conflict_copy_everywhere() {
    let server = TestServer::start();
    let a = TestClient::register(&server, "ann", "laptop");
    let b = TestClient::login(&server, "ann", "desktop");
    a.write("report.txt", "original");
    a.sync();
    b.sync();
    a.write("report.txt", "edited on laptop");
    b.write("report.txt", "edited on desktop!");
    a.sync();
    b.sync();
    a.sync();
    let (ta, tb) = (a.tree(), b.tree());
    assert_eq!(ta, tb);
    let copies = conflict_copies(&ta);
    assert_eq!(copies.len(), 1, "exactly one conflict copy: {ta:?}");
    assert!(copies[0].starts_with("report (conflicted copy from desktop "), "{}", copies[0]);
    assert!(copies[0].ends_with(").txt"));
    let mut contents = vec![a.read("report.txt"), a.read(&copies[0])];
    contents.sort();
    assert_eq!(contents, vec![b"edited on desktop!".to_vec(), b"edited on laptop".to_vec()]);
}

#[test]
fn identical_concurrent_edits_are_not_a_conflict() {
    let server = TestServer::start();
    let a = TestClient::register(&server, "ann", "laptop");
    let b = TestClient::login(&server, "ann", "desktop");
    a.write("same.txt", "v1");
    a.sync();
    b.sync();
    a.write("same.txt", "v2 everywhere");
    b.write("same.txt", "v2 everywhere");
    a.sync();
    b.sync();
    a.sync();
    assert!(conflict_copies(&a.tree()).is_empty());
    assert_eq!(a.tree(), b.tree());
}

#[test]
fn an_edit_beats_a_concurrent_delete() {
    let server = TestServer::start();
    let a = TestClient::register(&server, "ann", "laptop");
    let b = TestClient::login(&server, "ann", "desktop");
    a.write("notes.txt", "v1");
    a.write("other.txt", "v1");
    a.sync();
    b.sync();
    // Delete first, edit second.
    std::fs::remove_file(a.path("notes.txt")).unwrap();
    b.write("notes.txt", "edited while deleted elsewhere");
    a.sync();
    b.sync();
    a.sync();
    assert_eq!(a.read("notes.txt"), b"edited while deleted elsewhere");
    assert_eq!(b.read("notes.txt"), b"edited while deleted elsewhere");
    // Edit first, delete second.
    a.write("other.txt", "edited first");
    a.sync();
    std::fs::remove_file(b.path("other.txt")).unwrap();
    b.sync();
    a.sync();
    assert_eq!(b.read("other.txt"), b"edited first");
    assert_eq!(a.tree(), b.tree());
}

#[test]
fn agents_sync_by_push_without_manual_sync() {
    let server = TestServer::start();
    let a = TestClient::register(&server, "ann", "laptop");
    let b = TestClient::login(&server, "ann", "desktop");
    let _ga = a.agent();
    let _gb = b.agent();
    a.write("pushed.txt", "arrives by itself");
    wait_until(20, "pushed.txt on b", || b.path("pushed.txt").exists() && b.read("pushed.txt") == b"arrives by itself");
    b.write("reply/back.txt", "and back");
    wait_until(20, "reply on a", || a.path("reply/back.txt").exists() && a.read("reply/back.txt") == b"and back");
    std::fs::remove_file(a.path("pushed.txt")).unwrap();
    wait_until(20, "delete reaches b", || !b.exists("pushed.txt"));
    // status reports the folder.
    let s = b.ok(&["status", "--json"], None);
    assert!(s.contains("\"agent_running\": true"), "{s}");
}

#[test]
fn sync_resumes_after_the_server_is_killed_mid_upload() {
    let mut server = TestServer::start();
    let a = TestClient::register(&server, "ann", "laptop");
    let b = TestClient::login(&server, "ann", "desktop");
    let data = random_bytes(300 << 20, 11);
    a.write("huge.bin", &data);
    let mut child = a.command();
    child.arg("sync").arg("--quiet").stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let mut child = spawn(&mut child).unwrap();
    // Kill the server once some, but not all, chunks have arrived.
    wait_until(60, "upload to start", || server.chunk_files() > 3);
    server.kill();
    let status = child.wait().unwrap();
    assert!(!status.success(), "sync must fail when the server dies");
    server.restart();
    a.sync();
    b.sync();
    assert!(b.read("huge.bin") == data);
    let leftovers: Vec<_> = walk_files(&b.dir)
        .into_iter()
        .chain(walk_files(&a.dir))
        .filter(|p| p.to_string_lossy().contains(".filesync-tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn a_download_interrupted_by_a_killed_server_leaves_no_partial_file() {
    let mut server = TestServer::start();
    let a = TestClient::register(&server, "ann", "laptop");
    let b = TestClient::login(&server, "ann", "desktop");
    let data = random_bytes(200 << 20, 5);
    a.write("movie.bin", &data);
    a.sync();
    let mut child = b.command();
    child.arg("sync").arg("--quiet").stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let mut child = spawn(&mut child).unwrap();
    wait_until(60, "download to start", || {
        walk_files(&b.dir).iter().any(|p| p.to_string_lossy().contains(".filesync-tmp-"))
    });
    server.kill();
    assert!(!child.wait().unwrap().success());
    assert!(!b.exists("movie.bin"), "a partial file must never be visible");
    server.restart();
    b.sync();
    assert!(b.read("movie.bin") == data);
    assert!(!walk_files(&b.dir).iter().any(|p| p.to_string_lossy().contains(".filesync-tmp-")));
}

#[test]
fn a_file_replaced_by_a_directory_and_back() {
    let server = TestServer::start();
    let a = TestClient::register(&server, "ann", "laptop");
    let b = TestClient::login(&server, "ann", "desktop");
    a.write("thing", "a file first");
    a.sync();
    b.sync();
    std::fs::remove_file(a.path("thing")).unwrap();
    a.write("thing/inside.txt", "now a directory");
    a.sync();
    b.sync();
    assert_eq!(b.read("thing/inside.txt"), b"now a directory");
    std::fs::remove_dir_all(b.path("thing")).unwrap();
    b.write("thing", "a file again");
    b.sync();
    a.sync();
    b.sync();
    assert_eq!(a.read("thing"), b"a file again");
    assert_eq!(a.tree(), b.tree());
}

#[test]
fn a_vanished_folder_root_deletes_nothing() {
    let server = TestServer::start();
    let a = TestClient::register(&server, "ann", "laptop");
    let b = TestClient::login(&server, "ann", "desktop");
    a.write("precious.txt", "only copy");
    a.sync();
    b.sync();
    let moved = a.dir.with_file_name("moved-away");
    std::fs::rename(&a.dir, &moved).unwrap();
    let err = a.fails(&["sync"], None);
    assert!(err.contains("missing"), "{err}");
    b.sync();
    assert_eq!(b.read("precious.txt"), b"only copy");
    std::fs::rename(&moved, &a.dir).unwrap();
    a.sync();
    assert_eq!(a.tree(), b.tree());
}

#[test]
fn non_interactive_login_needs_the_fingerprint_and_a_changed_certificate_is_refused() {
    let server = TestServer::start();
    let a = TestClient::register(&server, "ann", "laptop");
    let fresh = TestClient::blank("desktop");
    let err = fresh.fails(&["login", "--server", &server.addr, "--user", "ann", "--password-stdin"], Some(PASSWORD));
    assert!(err.contains("--fingerprint"), "{err}");
    let err = fresh.fails(
        &["login", "--server", &server.addr, "--user", "ann", "--password-stdin", "--fingerprint", "SHA256:nonsense"],
        Some(PASSWORD),
    );
    assert!(err.contains("not a certificate fingerprint"), "{err}");
    // Same address, different server (new certificate): refused, loudly.
    let addr = server.addr.clone();
    drop(server);
    let tmp = tempfile::tempdir().unwrap();
    let _other = TestServer::start_at(&tmp.path().join("other"), &addr, &[]);
    let err = a.fails(&["sync"], None);
    assert!(err.contains("certificate changed"), "{err}");
}

#[test]
fn wrong_password_revoked_device_and_logout_are_refused_clearly() {
    let server = TestServer::start();
    let a = TestClient::register(&server, "ann", "laptop");
    let b = TestClient::login(&server, "ann", "desktop");
    let c = TestClient::blank("intruder");
    let err = c.fails(
        &["login", "--server", &server.addr, "--user", "ann", "--password-stdin", "--fingerprint", &server.fingerprint],
        Some("not the password"),
    );
    assert!(err.contains("user name or password") && err.contains("wrong"), "{err}");

    let list = a.ok(&["devices", "list"], None);
    let b_id: u64 = list
        .lines()
        .find(|l| l.contains("desktop"))
        .and_then(|l| l.split('\t').next())
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("desktop not listed: {list}"));
    assert!(list.lines().any(|l| l.contains("laptop") && l.contains("(this computer)")), "{list}");
    a.ok(&["devices", "revoke", &b_id.to_string()], None);
    let err = b.fails(&["sync"], None);
    assert!(err.contains("revoked"), "{err}");
    let json = a.ok(&["devices", "list", "--json"], None);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(v.as_array().unwrap().iter().any(|d| d["id"] == b_id && d["revoked"] == true));

    a.ok(&["logout"], None);
    let err = a.fails(&["sync"], None);
    assert!(err.contains("not logged in"), "{err}");
}

#[test]
fn a_folder_added_while_the_agent_runs_starts_syncing() {
    let server = TestServer::start();
    let a = TestClient::register(&server, "ann", "laptop");
    let b = TestClient::login(&server, "ann", "desktop");
    let _ga = a.agent();
    let _gb = b.agent();
    let pa = a.dir.with_file_name("photos");
    let pb = b.dir.with_file_name("photos");
    std::fs::create_dir_all(&pa).unwrap();
    std::fs::create_dir_all(&pb).unwrap();
    std::fs::write(pa.join("cat.jpg"), "meow").unwrap();
    a.ok(&["folder", "add", pa.to_str().unwrap(), "--name", "photos"], None);
    b.ok(&["folder", "add", pb.to_str().unwrap(), "--name", "photos"], None);
    wait_until(30, "cat.jpg on b", || std::fs::read(pb.join("cat.jpg")).is_ok_and(|d| d == b"meow"));
    let out = a.ok(&["folder", "list"], None);
    assert!(out.contains("photos") && out.contains("docs"), "{out}");
}

#[test]
fn a_client_killed_mid_download_leaves_no_partial_file_and_resumes() {
    let server = TestServer::start();
    let a = TestClient::register(&server, "ann", "laptop");
    let b = TestClient::login(&server, "ann", "desktop");
    let data = random_bytes(200 << 20, 9);
    a.write("video.bin", &data);
    a.write("small.txt", "small");
    a.sync();
    let mut child = spawn(b.command().args(["sync", "--quiet"]).stdout(std::process::Stdio::null())).unwrap();
    wait_until(60, "download to start", || {
        walk_files(&b.dir).iter().any(|p| p.to_string_lossy().contains(".filesync-tmp-"))
    });
    child.kill().unwrap(); // SIGKILL: no cleanup
    child.wait().unwrap();
    assert!(!b.exists("video.bin"), "a partial file must never be visible");
    b.sync();
    assert!(b.read("video.bin") == data);
    assert_eq!(b.read("small.txt"), b"small");
    assert!(!walk_files(&b.dir).iter().any(|p| p.to_string_lossy().contains(".filesync-tmp-")));
    assert_eq!(a.tree(), b.tree());
}

/// A file system with one-second timestamps (ext4 with 128-byte inodes, loop-mounted), removed
/// when dropped. Needs root (CI and this machine run as root).
#[cfg(target_os = "linux")]
struct CoarseFs {
    mount: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

#[cfg(target_os = "linux")]
impl CoarseFs {
    /// `None` (with a note) where loop devices cannot be mounted (not root, a container
    /// without them), unless `FILESYNC_REQUIRE_LOOP` is set.
    #[allow(clippy::disallowed_methods, reason = "mounting a file system is running mkfs and mount")]
    fn mount() -> Option<CoarseFs> {
        let dir = tempfile::tempdir().unwrap();
        let (image, mount) = (dir.path().join("fs.img"), dir.path().join("mnt"));
        std::fs::create_dir(&mount).unwrap();
        std::fs::File::create(&image).unwrap().set_len(32 << 20).unwrap();
        let run = |cmd: &str, args: &[&std::ffi::OsStr]| match std::process::Command::new(cmd).args(args).output() {
            Ok(out) if out.status.success() => Ok(()),
            other => Err(format!("{cmd} {args:?}: {other:?}")),
        };
        let made = run("mkfs.ext4", &["-q".as_ref(), "-F".as_ref(), "-I".as_ref(), "128".as_ref(), image.as_os_str()])
            .and_then(|()| run("mount", &["-o".as_ref(), "loop".as_ref(), image.as_os_str(), mount.as_os_str()]));
        match made {
            Ok(()) => Some(CoarseFs { mount, _dir: dir }),
            Err(e) if std::env::var_os("FILESYNC_REQUIRE_LOOP").is_none() => {
                eprintln!("skipped: no file system with one-second timestamps can be mounted here ({e})");
                None
            }
            Err(e) => panic!("{e} (this test needs root and loop devices)"),
        }
    }
}

#[cfg(target_os = "linux")]
impl Drop for CoarseFs {
    #[allow(clippy::disallowed_methods, reason = "unmounting is running umount")]
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.mount).status();
    }
}

/// Regression: on a file system with one-second timestamps, a file rewritten in place with the
/// same size in the same second as the sync that read it kept its stat, and the rewrite was
/// never uploaded: A kept v3, B v2, both "in sync".
#[cfg(target_os = "linux")]
#[test]
fn a_same_size_rewrite_in_the_same_second_as_the_last_sync_is_uploaded() {
    use std::os::unix::fs::MetadataExt;
    let Some(coarse) = CoarseFs::mount() else { return };
    let server = TestServer::start();
    let a = TestClient::register(&server, "ann", "laptop");
    let b = TestClient::login(&server, "ann", "desktop");
    let folder = coarse.mount.join("docs");
    std::fs::create_dir(&folder).unwrap();
    a.ok(&["folder", "remove", "docs"], None);
    a.ok(&["folder", "add", folder.to_str().unwrap(), "--name", "docs"], None);
    let file = folder.join("notes.txt");
    let mtime = |p: &std::path::Path| std::fs::metadata(p).unwrap().mtime();
    // Write v2, sync, write v3 — all in one second (tried again if a second boundary fell
    // in between).
    for attempt in 0.. {
        assert!(attempt < 20, "never managed to rewrite within one second");
        let now = std::time::Duration::from_nanos(filesync_core::clock::Clock::now_ns(
            &filesync_core::clock::SystemClock,
        ) as u64);
        std::thread::sleep(std::time::Duration::from_nanos(1_000_000_000 - u64::from(now.subsec_nanos())));
        std::fs::write(&file, format!("version 2, attempt {attempt:02}")).unwrap();
        let written = mtime(&file);
        a.sync();
        std::fs::write(&file, format!("version 3, attempt {attempt:02}")).unwrap();
        if mtime(&file) == written {
            break;
        }
    }
    let rep = a.sync_report();
    assert_eq!(rep["uploaded"], 1, "the rewrite must be seen: {rep}");
    b.sync();
    assert!(String::from_utf8(b.read("notes.txt")).unwrap().starts_with("version 3"));
}

/// Text travels zstd-compressed both ways; what arrives is byte for byte what was written.
#[test]
fn compressible_files_cross_the_wire_compressed() {
    let server = TestServer::start();
    let a = TestClient::register(&server, "ann", "laptop");
    let b = TestClient::login(&server, "ann", "desktop");
    let text: String =
        (0..60_000).map(|i| format!("line {i}: the quick brown fox jumps over the lazy dog\n")).collect();
    a.write("notes/log.txt", &text);
    let wire = |c: &TestClient| {
        let out = c.run(&["sync", "--json"], None);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (v["wire"]["sent"].as_u64().unwrap(), v["wire"]["received"].as_u64().unwrap())
    };
    let (sent, _) = wire(&a);
    let (_, received) = wire(&b);
    let size = text.len() as u64;
    assert!(sent < size / 3, "uploading {size} bytes of text sent {sent}");
    assert!(received < size / 3, "downloading {size} bytes of text received {received}");
    assert_eq!(b.read("notes/log.txt"), text.as_bytes());
}

/// A 4 KiB insert in the middle of a 24 MiB file costs kilobytes on the wire each way, not
/// the whole chunks around it: the changed chunks travel as deltas from the old chunks at
/// their place (protocol version 3), up against the server's copy and down against the
/// other computer's.
#[test]
fn a_small_edit_in_a_big_file_travels_as_a_delta_both_ways() {
    let server = TestServer::start();
    let a = TestClient::register(&server, "ann", "laptop");
    let b = TestClient::login(&server, "ann", "desktop");
    let wire = |c: &TestClient| {
        let out = c.run(&["sync", "--json"], None);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (v["wire"]["sent"].as_u64().unwrap(), v["wire"]["received"].as_u64().unwrap())
    };
    let old = random_bytes(24 << 20, 1);
    a.write("vm.img", &old);
    wire(&a);
    wire(&b);
    let mut new = old[..12 << 20].to_vec();
    new.extend_from_slice(&random_bytes(4096, 2));
    new.extend_from_slice(&old[12 << 20..]);
    a.write("vm.img", &new);
    let (sent, _) = wire(&a);
    let (_, received) = wire(&b);
    assert_eq!(b.read("vm.img"), new);
    // Each way: the chunk list (24 chunks of about 1 MiB), a signature or two and the delta.
    assert!(sent < 64 * 1024, "the upload of a 4 KiB insert sent {sent} bytes");
    assert!(received < 64 * 1024, "the download of a 4 KiB insert received {received} bytes");
}

/// A file a program still holds open for writing (a copy in progress, a download, a new
/// version written under a temporary name) is not sent half-written: the agent waits for the
/// close, which Linux's watcher reports, and sends the file once, whole.
#[cfg(target_os = "linux")]
#[test]
fn a_file_still_open_for_writing_is_sent_once_it_is_closed() {
    use std::io::Write;
    let server = TestServer::start();
    let a = TestClient::register(&server, "ann", "laptop");
    let b = TestClient::login(&server, "ann", "desktop");
    let _ga = a.agent();
    let _gb = b.agent();
    a.write("ready.txt", "the agents are up");
    wait_until(20, "ready.txt on b", || b.exists("ready.txt"));
    let part = random_bytes(1 << 20, 5);
    let mut f = std::fs::File::create(a.path("copying.bin")).unwrap();
    f.write_all(&part).unwrap();
    f.flush().unwrap();
    // The agent would have taken the first half by now (it looks a moment after a write).
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(!b.exists("copying.bin"), "half a file reached the other computer");
    let status = a.folder_status();
    assert_eq!(status["in_sync"], false, "{status}");
    assert_eq!(status["changing"], serde_json::json!(["copying.bin"]), "{status}");
    f.write_all(&part).unwrap();
    drop(f);
    let whole = [&part[..], &part[..]].concat();
    wait_until(20, "copying.bin on b", || b.exists("copying.bin") && b.read("copying.bin") == whole);
    let path = a.path("copying.bin");
    let history = a.json(&["history", path.to_str().unwrap(), "--json"]);
    assert_eq!(history["versions"].as_array().unwrap().len(), 1, "one version, the whole file: {history}");
}
