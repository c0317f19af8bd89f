//! The scanner against a real directory ([`RealFs`] on a tempdir) and the in-memory fake
//! ([`MemFs`]): the same scenarios run on both, so the fake stays honest.

use filesync_agent::clock::SystemClock;
use filesync_agent::fs::{Filesystem, RealFs, StatKind};
use filesync_agent::memfs::MemFs;
use filesync_agent::scan::{KnownFile, ScanOutput, Scanner, scan, scan_paths};
use filesync_core::path::TEMP_PREFIX;
use filesync_core::{Chunker, EntryKind, Hash, RelPath};
use std::collections::HashMap;
use std::io::{self, Write};
use std::time::Duration;

/// A folder to scan: a real tempdir or a `MemFs`, set up through the same few calls.
enum Folder {
    Real(tempfile::TempDir, RealFs),
    Mem(MemFs),
}

impl Folder {
    fn real() -> Folder {
        let dir = tempfile::tempdir().unwrap();
        let fs = RealFs::new(dir.path().to_path_buf());
        Folder::Real(dir, fs)
    }

    fn mem() -> Folder {
        Folder::Mem(MemFs::new())
    }

    fn both() -> [Folder; 2] {
        [Folder::real(), Folder::mem()]
    }

    fn name(&self) -> &'static str {
        match self {
            Folder::Real(..) => "RealFs",
            Folder::Mem(_) => "MemFs",
        }
    }

    fn fs(&self) -> &dyn Filesystem {
        match self {
            Folder::Real(_, fs) => fs,
            Folder::Mem(fs) => fs,
        }
    }

    fn write(&self, path: &str, data: &[u8]) {
        match self {
            Folder::Real(dir, _) => {
                let p = dir.path().join(path);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, data).unwrap();
            }
            Folder::Mem(fs) => fs.write(path, data),
        }
    }

    fn mkdir(&self, path: &str) {
        match self {
            Folder::Real(dir, _) => std::fs::create_dir_all(dir.path().join(path)).unwrap(),
            Folder::Mem(fs) => fs.mkdir(path),
        }
    }

    fn exists(&self, path: &str) -> bool {
        match self {
            Folder::Real(dir, _) => std::fs::symlink_metadata(dir.path().join(path)).is_ok(),
            Folder::Mem(fs) => fs.exists(path),
        }
    }

    /// Scans with NFC renaming enabled and the given known files.
    fn scan_with(&self, known: &HashMap<RelPath, KnownFile>) -> ScanOutput {
        self.scan_chunked(known, &Chunker::tiny())
    }

    fn scan_chunked(&self, known: &HashMap<RelPath, KnownFile>, chunker: &Chunker) -> ScanOutput {
        Scanner::new(self.fs(), known, chunker).scan().unwrap()
    }

    fn scan(&self) -> ScanOutput {
        self.scan_with(&HashMap::new())
    }
}

fn p(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

fn paths(out: &ScanOutput) -> Vec<&str> {
    out.entries.keys().map(RelPath::as_str).collect()
}

/// What a sync would record for every file of `out`.
fn known_from(out: &ScanOutput) -> HashMap<RelPath, KnownFile> {
    out.entries
        .iter()
        .filter(|(_, e)| e.meta.kind == EntryKind::File)
        .map(|(p, e)| {
            (
                p.clone(),
                KnownFile { size: e.stat.size, mtime_ns: e.stat.mtime_ns, ino: e.stat.ino, meta: e.meta.clone() },
            )
        })
        .collect()
}

#[test]
fn nested_dirs_empty_dirs_and_empty_files() {
    for f in Folder::both() {
        f.write("top.txt", b"top");
        f.write("a/b/c/deep.bin", &[7u8; 50_000]);
        f.write("a/empty-file", b"");
        f.mkdir("a/empty-dir");
        f.mkdir("x/y/z");
        let out = f.scan();
        assert_eq!(
            paths(&out),
            ["a", "a/b", "a/b/c", "a/b/c/deep.bin", "a/empty-dir", "a/empty-file", "top.txt", "x", "x/y", "x/y/z"],
            "{}",
            f.name()
        );
        assert!(out.skipped.is_empty(), "{}: {:?}", f.name(), out.skipped);
        let deep = &out.entries[&p("a/b/c/deep.bin")];
        assert_eq!(deep.meta.size, 50_000);
        assert_eq!(deep.meta.hash, Chunker::tiny().digest_bytes(&[7u8; 50_000]).hash);
        assert!(deep.meta.chunks.len() > 1, "tiny chunker splits 50 kB");
        assert_eq!(deep.meta.chunks.iter().map(|c| c.len as u64).sum::<u64>(), 50_000);
        let empty = &out.entries[&p("a/empty-file")].meta;
        assert_eq!((empty.size, empty.hash, empty.chunks.len()), (0, filesync_core::file_hash(&[]), 0));
        assert_eq!(out.entries[&p("x/y/z")].meta.kind, EntryKind::Dir);
        assert_eq!(out.entries[&p("x/y/z")].stat.kind, StatKind::Dir);
    }
}

#[test]
fn nfd_names_are_renamed_to_nfc_on_disk() {
    for f in Folder::both() {
        f.write("Cafe\u{301}/Lo\u{308}sung.txt", b"x");
        f.write("ok/\u{e9}t\u{e9}", b"nfc already");
        // Both spellings present: the NFD one is left alone and reported.
        f.write("dup/\u{f1}", b"nfc");
        f.write("dup/n\u{303}", b"nfd");
        let out = f.scan();
        assert_eq!(
            paths(&out),
            ["Caf\u{e9}", "Caf\u{e9}/L\u{f6}sung.txt", "dup", "dup/\u{f1}", "ok", "ok/\u{e9}t\u{e9}"],
            "{}",
            f.name()
        );
        assert!(f.exists("Caf\u{e9}/L\u{f6}sung.txt"), "{}", f.name());
        assert!(!f.exists("Cafe\u{301}"), "{}", f.name());
        assert_eq!(out.skipped.len(), 1, "{}: {:?}", f.name(), out.skipped);
        assert_eq!(out.skipped[0].path, "dup/n\u{303}");
        assert!(out.skipped[0].reason.contains("NFC"), "{}", out.skipped[0].reason);
        assert!(f.exists("dup/n\u{303}"));
    }
}

#[test]
fn scan_with_renaming_off_skips_nfd_names() {
    for f in Folder::both() {
        f.write("cafe\u{301}", b"x");
        let known = HashMap::new();
        let out = Scanner { rename: false, ..Scanner::new(f.fs(), &known, &Chunker::tiny()) }.scan().unwrap();
        assert!(out.entries.is_empty(), "{}", f.name());
        assert!(out.skipped[0].reason.contains("NFC"));
        assert!(f.exists("cafe\u{301}"), "{}: not renamed", f.name());
    }
}

#[test]
fn temp_files_are_ignored_and_a_crash_leaves_nothing_at_the_destination() {
    for f in Folder::both() {
        f.write(&format!("d/{TEMP_PREFIX}stale"), b"left by a crash");
        f.write("d/real", b"r");
        // What a process killed before `persist` leaves behind (written directly: a leaked open
        // handle would keep a deleted file listed on Windows).
        f.write(&format!("d/{TEMP_PREFIX}0123456789abcdef"), b"half of the new cont");
        let out = f.scan();
        assert_eq!(paths(&out), ["d", "d/real"], "{}", f.name());
        assert!(out.skipped.is_empty(), "{}: temp files are skipped silently", f.name());
        assert!(f.fs().stat(&p("d/new")).unwrap().is_none());
        assert_eq!(f.fs().clean_temp_files().unwrap(), 2, "{}", f.name());
        assert_eq!(f.fs().read_dir(Some(&p("d"))).unwrap().len(), 1, "{}", f.name());
    }
}

#[test]
fn persist_replaces_the_destination_in_one_step() {
    for f in Folder::both() {
        f.write("doc.txt", b"old");
        let mut t = f.fs().create_temp(None).unwrap();
        t.write_all(b"new contents").unwrap();
        // Until persist, the destination still holds the old bytes.
        let before = f.scan();
        assert_eq!(before.entries[&p("doc.txt")].meta.hash, Chunker::tiny().digest_bytes(b"old").hash, "{}", f.name());
        t.set_times_and_mode(1_500_000_000_000_000_000, false).unwrap();
        t.sync_all().unwrap();
        t.persist(&p("doc.txt")).unwrap();
        let after = f.scan();
        let doc = &after.entries[&p("doc.txt")];
        assert_eq!(doc.meta.hash, Chunker::tiny().digest_bytes(b"new contents").hash, "{}", f.name());
        assert_eq!(doc.meta.mtime_ns, 1_500_000_000_000_000_000);
        assert_eq!(paths(&after), ["doc.txt"]);
    }
}

#[test]
fn known_hashes_are_reused_when_size_mtime_and_inode_match() {
    for f in Folder::both() {
        f.write("same", b"unchanged");
        f.write("edited", b"before");
        let mut known = known_from(&f.scan());
        // A deliberately wrong hash: if it comes back, the file was not read again.
        let bogus = Hash([0xAB; 32]);
        known.get_mut(&p("same")).unwrap().meta.hash = bogus;
        known.get_mut(&p("edited")).unwrap().meta.hash = bogus;
        f.write("edited", b"after!"); // same size, new mtime
        if let Folder::Real(dir, _) = &f {
            // Make sure the mtime differs even on a coarse clock.
            let t = std::time::UNIX_EPOCH
                + Duration::from_nanos(filesync_agent::clock::Clock::now_ns(&SystemClock) as u64)
                + Duration::from_secs(5);
            std::fs::File::options().write(true).open(dir.path().join("edited")).unwrap().set_modified(t).unwrap();
        }
        let out = f.scan_with(&known);
        assert_eq!(out.entries[&p("same")].meta.hash, bogus, "{}", f.name());
        assert_eq!(out.entries[&p("edited")].meta.hash, Chunker::tiny().digest_bytes(b"after!").hash, "{}", f.name());
    }
}

#[test]
fn memfs_counts_no_open_for_an_unchanged_file() {
    let fs = MemFs::new();
    for i in 0..100 {
        fs.write(&format!("d/{i}"), format!("file {i}"));
    }
    let known = known_from(&scan(&fs, &HashMap::new(), &Chunker::tiny()).unwrap());
    assert_eq!(fs.total_opens(), 100);
    fs.write("d/7", "file 7 changed");
    let out = scan(&fs, &known, &Chunker::tiny()).unwrap();
    assert_eq!(fs.total_opens(), 101, "only the changed file is read");
    assert_eq!(fs.open_count("d/7"), 2);
    assert_eq!(out.entries.len(), 101);
}

#[test]
fn unreadable_and_vanishing_files_are_skipped_without_aborting() {
    // Root can read anything, so permission errors are injected through MemFs.
    let fs = MemFs::new();
    fs.write("private/key", "k");
    fs.write("gone", "g");
    fs.write("fine", "f");
    fs.fail_open("private/key", io::ErrorKind::PermissionDenied);
    fs.fail_open("gone", io::ErrorKind::NotFound);
    let out = scan(&fs, &HashMap::new(), &Chunker::tiny()).unwrap();
    assert_eq!(paths(&out), ["fine", "private"]);
    let reasons: HashMap<_, _> = out.skipped.iter().map(|s| (s.path.as_str(), s.reason.as_str())).collect();
    assert!(reasons["private/key"].starts_with("permission denied"), "{reasons:?}");
    assert!(reasons["gone"].contains("vanished"), "{reasons:?}");
    let skipped = out.skipped_paths();
    assert!(skipped.covers(&p("private/key")) && skipped.covers(&p("gone")) && !skipped.covers(&p("fine")));
}

#[test]
fn a_file_that_keeps_changing_is_skipped_one_that_settles_is_hashed() {
    let fs = MemFs::new();
    fs.write("log", "growing");
    fs.write("save", "saved");
    fs.change_on_open("log", usize::MAX);
    fs.change_on_open("save", 1);
    let out = scan(&fs, &HashMap::new(), &Chunker::tiny()).unwrap();
    assert_eq!(out.skipped.len(), 1);
    assert_eq!(out.skipped[0].path, "log");
    assert!(out.skipped[0].reason.starts_with("file is changing"));
    assert_eq!(fs.open_count("log"), 2, "hashed twice, then given up");
    assert_eq!(out.entries[&p("save")].meta.hash, Chunker::tiny().digest_bytes(b"saved!").hash);
}

#[test]
fn links_and_special_files_are_skipped_with_a_reason() {
    let fs = MemFs::new();
    fs.write("target", "t");
    fs.symlink("link");
    fs.special("fifo");
    let out = scan(&fs, &HashMap::new(), &Chunker::tiny()).unwrap();
    assert_eq!(paths(&out), ["target"]);
    let reasons: HashMap<_, _> = out.skipped.iter().map(|s| (s.path.as_str(), s.reason.as_str())).collect();
    assert_eq!(reasons["link"], "symbolic links are not synced");
    assert!(reasons["fifo"].contains("special files"));
}

#[cfg(unix)]
#[test]
fn real_symlinks_and_non_unicode_names_are_skipped() {
    use std::os::unix::ffi::OsStrExt;
    let f = Folder::real();
    let Folder::Real(dir, _) = &f else { unreachable!() };
    f.write("dir/file", b"f");
    std::os::unix::fs::symlink(dir.path().join("dir"), dir.path().join("dirlink")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.path().join("dir/outside")).unwrap();
    std::fs::write(dir.path().join(std::ffi::OsStr::from_bytes(b"latin1-\xe9")), b"x").unwrap();
    let out = f.scan();
    assert_eq!(paths(&out), ["dir", "dir/file"]);
    let reasons: HashMap<_, _> = out.skipped.iter().map(|s| (s.path.as_str(), s.reason.as_str())).collect();
    assert_eq!(reasons["dirlink"], "symbolic links are not synced");
    assert_eq!(reasons["dir/outside"], "symbolic links are not synced");
    assert!(reasons["latin1-\u{FFFD}"].contains("not valid Unicode"), "{reasons:?}");
}

#[test]
fn memfs_non_unicode_names_are_skipped() {
    let fs = MemFs::new();
    fs.write_non_unicode("bad\u{FFFD}", "x");
    let out = scan(&fs, &HashMap::new(), &Chunker::tiny()).unwrap();
    assert!(out.entries.is_empty());
    assert!(out.skipped[0].reason.contains("not valid Unicode"));
}

#[test]
fn scan_paths_sees_only_the_given_paths_and_their_subtrees() {
    for f in Folder::both() {
        f.write("a/one", b"1");
        f.write("a/sub/two", b"2");
        f.write("b/three", b"3");
        f.write("c", b"4");
        let chunker = Chunker::tiny();
        let asked = [p("a"), p("c"), p("deleted"), p("b/missing")];
        let out = Scanner::new(f.fs(), &HashMap::new(), &chunker).scan_paths(&asked).unwrap();
        assert_eq!(paths(&out), ["a", "a/one", "a/sub", "a/sub/two", "c"], "{}", f.name());
        assert!(out.skipped.is_empty());
        let plain = scan_paths(f.fs(), &[p("b/three")], &HashMap::new(), &chunker).unwrap();
        assert_eq!(paths(&plain), ["b/three"]);
    }
}

#[test]
fn case_insensitive_memfs_behaves_like_ntfs() {
    let fs = MemFs::case_insensitive();
    fs.write("Docs/README.md", "hello");
    // The scan reports the spelling on disk.
    let out = scan(&fs, &HashMap::new(), &Chunker::tiny()).unwrap();
    assert_eq!(paths(&out), ["Docs", "Docs/README.md"]);
    // Another spelling finds the same file...
    assert_eq!(fs.stat(&p("docs/readme.md")).unwrap().unwrap().size, 5);
    // ...but a quick scan asks for exact names: `docs/readme.md` is not a synced path here.
    let quick = scan_paths(&fs, &[p("Docs/readme.md")], &HashMap::new(), &Chunker::tiny()).unwrap();
    assert!(quick.entries.is_empty());
    // A second file whose name differs only in case cannot be moved in next to it.
    fs.write("incoming", "other");
    let e = fs.rename_noreplace(&p("incoming"), &p("docs/Readme.MD")).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
    // Writing through a temp file under another spelling replaces the one file.
    let mut t = fs.create_temp(Some(&p("docs"))).unwrap();
    t.write_all(b"replaced").unwrap();
    t.persist(&p("DOCS/readme.MD")).unwrap();
    assert_eq!(fs.list_all(), ["Docs/", "Docs/readme.MD", "incoming"]);
    assert_eq!(fs.read("docs/readme.md").unwrap(), b"replaced");
}

#[test]
/// Many small files: every one listed, and a rescan with what the first scan recorded reuses
/// it all. (How fast: `bench/sync_bench.py`, not a timed assertion.)
fn ten_thousand_small_files_scan_and_rescan_consistently() {
    for f in Folder::both() {
        for i in 0..10_000 {
            f.write(&format!("d{:02}/file-{i}.txt", i % 50), format!("contents of file {i}").as_bytes());
        }
        // The production chunker (its 4 MiB buffer per file must not make small files slow).
        let chunker = Chunker::default();
        let out = f.scan_chunked(&HashMap::new(), &chunker);
        assert_eq!(out.entries.len(), 10_050, "{}", f.name());
        let known = known_from(&out);
        let again = f.scan_chunked(&known, &chunker);
        // The same (whether a file was racy when read is about the clock, not the file).
        let seen =
            |o: &ScanOutput| o.entries.iter().map(|(p, e)| (p.clone(), e.meta.clone(), e.stat)).collect::<Vec<_>>();
        assert_eq!(seen(&again), seen(&out), "{}", f.name());
        assert_eq!(again.skipped, out.skipped);
    }
}

#[test]
fn a_missing_root_fails_the_scan() {
    let dir = tempfile::tempdir().unwrap();
    let fs = RealFs::new(dir.path().join("unmounted"));
    assert!(!fs.root_exists());
    assert!(scan(&fs, &HashMap::new(), &Chunker::tiny()).is_err());
}
