//! The engine against a real in-process server, with in-memory folders: names a computer
//! cannot hold (letter-case clashes on a case-insensitive file system, names Windows forbids)
//! are reported and skipped, never written over each other, and stay intact on the server.

mod support;

use filesync_agent::config::FolderConfig;
use filesync_agent::engine::{Engine, PassReport, Scope};
use filesync_agent::fs::Filesystem;
use filesync_agent::memfs::MemFs;
use filesync_agent::state::StateDb;
use filesync_agent::status::Progress;
use filesync_client::{Connection, Trust};
use filesync_core::RelPath;
use std::sync::Arc;
use support::{Server, server};

struct Client {
    engine: Engine,
    fs: MemFs,
    folder: FolderConfig,
}

impl Client {
    async fn new(s: &Server, device: &str, fs: MemFs, register: bool) -> Client {
        let conn = Connection::connect(&s.addr, Trust::Pinned(s.fingerprint.clone())).await.unwrap();
        if register {
            conn.register("ann", "password123", device).await.unwrap();
        } else {
            conn.login("ann", "password123", device).await.unwrap();
        }
        let engine = Engine::new(conn, StateDb::memory().await.unwrap(), device.to_string());
        Client { engine, fs, folder: FolderConfig::new("docs", format!("/{device}")) }
    }

    async fn sync(&self) -> PassReport {
        let fs: Arc<dyn Filesystem> = Arc::new(self.fs.clone());
        self.engine.sync_folder(&self.folder, fs, &Progress::default()).await.unwrap()
    }

    /// A pass over `paths` (as the watcher reports them) and what the server changed.
    async fn sync_paths(&self, paths: &[&str]) -> PassReport {
        let fs: Arc<dyn Filesystem> = Arc::new(self.fs.clone());
        let scope = Scope::paths(paths.iter().map(|p| RelPath::new(*p).unwrap()));
        let r = self.engine.sync_scope(&self.folder, fs, &Progress::default(), scope).await.unwrap();
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        r
    }
}

#[tokio::test]
async fn a_case_insensitive_disk_passes_over_paths_and_still_sees_every_clash() {
    let s = server().await;
    let linux = Client::new(&s, "linux", MemFs::new(), true).await;
    let windows = Client::new(&s, "windows", MemFs::case_insensitive(), false).await;
    for i in 0..20 {
        linux.fs.write(&format!("d/f{i}.txt"), format!("file {i}"));
    }
    linux.fs.write("Report.txt", "upper case");
    linux.fs.write("Photos/a.jpg", "a");
    linux.sync().await;
    windows.sync().await;

    // An edit here, and a new file there: passes over those paths alone.
    windows.fs.write("d/f1.txt", "edited on windows");
    let r = windows.sync_paths(&["d/f1.txt"]).await;
    assert_eq!((r.uploaded, r.full), (1, false), "{r:?}");
    linux.fs.write("d/new.txt", "new on linux");
    linux.sync().await;
    let r = windows.sync_paths(&[]).await;
    assert_eq!((r.downloaded, r.full), (1, false), "{r:?}");
    assert_eq!(windows.fs.read("d/new.txt").unwrap(), b"new on linux");

    // Spellings that clash with what is here: the pass looks at the whole folder, skips them,
    // and writes nothing over the spelling this computer holds.
    linux.fs.write("report.txt", "lower case");
    linux.fs.write("photos/b.jpg", "b");
    linux.sync().await;
    let r = windows.sync_paths(&[]).await;
    assert!(r.full, "{r:?}");
    let skipped: Vec<&str> = r.skipped.iter().map(|s| s.path.as_str()).collect();
    assert!(skipped.contains(&"report.txt") && skipped.contains(&"photos"), "{skipped:?}");
    assert_eq!(windows.fs.read("Report.txt").unwrap(), b"upper case");
    assert!(!windows.fs.list_all().iter().any(|p| p.ends_with("b.jpg")), "{:?}", windows.fs.list_all());

    // A case-only rename here reaches the other computer as that rename.
    let d = RelPath::new("d").unwrap();
    windows.fs.rename_listed_noreplace(Some(&d), "f2.txt", &RelPath::new("d/F2.txt").unwrap()).unwrap();
    let r = windows.sync_paths(&["d/f2.txt", "d/F2.txt"]).await;
    assert!(r.full, "{r:?}");
    linux.sync().await;
    assert_eq!(linux.fs.read("d/F2.txt").unwrap(), b"file 2");
    assert!(linux.fs.read("d/f2.txt").is_none(), "{:?}", linux.fs.list_all());
    assert_eq!(linux.fs.read("d/f1.txt").unwrap(), b"edited on windows");
}

#[tokio::test]
async fn names_differing_only_in_case_do_not_overwrite_each_other() {
    let s = server().await;
    let linux = Client::new(&s, "linux", MemFs::new(), true).await;
    let windows = Client::new(&s, "windows", MemFs::case_insensitive(), false).await;
    linux.fs.write("Report.txt", "upper case");
    linux.sync().await;
    linux.fs.write("report.txt", "lower case");
    linux.fs.write("Photos/a.jpg", "a");
    linux.sync().await;
    linux.fs.write("photos/b.jpg", "b");
    linux.sync().await;

    let r = windows.sync().await;
    // The older spelling holds the name; the newer one is reported, not written over it.
    assert_eq!(windows.fs.read("Report.txt").unwrap(), b"upper case");
    assert_eq!(windows.fs.read("Photos/a.jpg").unwrap(), b"a");
    let skipped: Vec<&str> = r.skipped.iter().map(|s| s.path.as_str()).collect();
    assert!(skipped.contains(&"report.txt"), "{skipped:?}");
    assert!(skipped.contains(&"photos"), "{skipped:?}");
    assert!(r.skipped.iter().any(|s| s.reason.contains("letter case")), "{:?}", r.skipped);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    // Only one spelling of each exists here, and the skipped directory's file did not land
    // in the other spelling's directory.
    assert!(!windows.fs.list_all().iter().any(|p| p.ends_with("b.jpg")), "{:?}", windows.fs.list_all());

    // Nothing was deleted or changed on the server: the case-sensitive computer keeps all.
    let again = linux.sync().await;
    assert_eq!(again.deleted_local + again.downloaded, 0, "{again:?}");
    assert_eq!(linux.fs.read("report.txt").unwrap(), b"lower case");
    assert_eq!(linux.fs.read("photos/b.jpg").unwrap(), b"b");

    // An edit of the held spelling syncs to the right file.
    windows.fs.write("Report.txt", "edited on windows");
    windows.sync().await;
    linux.sync().await;
    assert_eq!(linux.fs.read("Report.txt").unwrap(), b"edited on windows");
    assert_eq!(linux.fs.read("report.txt").unwrap(), b"lower case");
}

#[tokio::test]
async fn names_windows_cannot_hold_are_skipped_and_stay_on_the_server() {
    let s = server().await;
    let linux = Client::new(&s, "linux", MemFs::new(), true).await;
    let windows = Client::new(&s, "windows", MemFs::windows_like(), false).await;
    for (name, data) in [("aux.txt", "device"), ("a:b", "colon"), ("dots.", "dot"), ("ok.txt", "fine"), ("q?/x", "x")] {
        linux.fs.write(name, data);
    }
    linux.sync().await;
    let r = windows.sync().await;
    assert_eq!(windows.fs.read("ok.txt").unwrap(), b"fine");
    let mut skipped: Vec<&str> = r.skipped.iter().map(|s| s.path.as_str()).collect();
    skipped.sort();
    assert_eq!(skipped, ["a:b", "aux.txt", "dots.", "q?", "q?/x"]);
    assert!(r.skipped.iter().any(|s| s.reason.contains("reserved")), "{:?}", r.skipped);
    assert_eq!(windows.fs.list_all().iter().filter(|p| !p.is_empty()).count(), 1, "{:?}", windows.fs.list_all());
    let again = linux.sync().await;
    assert_eq!(again.deleted_local, 0);
    assert_eq!(linux.fs.read("aux.txt").unwrap(), b"device");
    assert_eq!(linux.fs.read("q?/x").unwrap(), b"x");
}
