//! The engine against an in-memory server behind its `ServerApi` trait: no sockets, no TLS,
//! no server process — the shape whole-system simulations build on. Two computers sync
//! through it; a concurrent edit makes one conflict copy; a moved file is rebuilt from the
//! local copy without fetching a byte; a chunk the server lost is sent again.

use bytes::Bytes;
use filesync_agent::config::FolderConfig;
use filesync_agent::engine::server::{Change, ChangesPage, ChunkRequest, ChunkUpload, Committed, ServerApi};
use filesync_agent::engine::{Engine, PassReport, SyncError};
use filesync_agent::fs::Filesystem;
use filesync_agent::memfs::MemFs;
use filesync_agent::state::StateDb;
use filesync_agent::status::Progress;
use filesync_client::{ClientError, ErrorCode};
use filesync_core::{EntryState, Hash, RelPath};
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One user's folders, journals and chunks, in memory. The commit rule is the server's: a
/// change is accepted only if it is based on the path's current rev.
#[derive(Default)]
struct MemServer {
    /// A std mutex: every method holds it for a few map operations, never across an await.
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    folders: HashMap<String, u64>,
    seq: HashMap<u64, u64>,
    current: HashMap<(u64, RelPath), EntryState>,
    chunks: HashMap<Hash, Bytes>,
    /// Chunks the server cannot read back (a damaged disk): a request for one fails whole.
    damaged: std::collections::HashSet<Hash>,
    /// Chunks the server will not take: a batch holding one is refused whole.
    refused: std::collections::HashSet<Hash>,
    /// The user's storage quota in bytes: a batch that would pass it is refused whole.
    quota: Option<u64>,
    /// `put_chunks` calls received.
    puts: usize,
    /// Each chunk received, with the chunk the engine named as similar (the base a delta
    /// would apply to).
    similar_up: Vec<(Hash, Option<Hash>)>,
    /// Each chunk asked for, with the local chunk offered as similar.
    similar_down: Vec<(Hash, Option<Hash>)>,
    /// "put" and "commit", in the order the server got them.
    calls: Vec<&'static str>,
}

impl ServerApi for MemServer {
    fn open_folder<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<u64, SyncError>> {
        let mut s = self.inner.lock().unwrap();
        let next = s.folders.len() as u64 + 1;
        let id = *s.folders.entry(name.to_string()).or_insert(next);
        Box::pin(async move { Ok(id) })
    }

    fn changes(&self, folder_id: u64, since: u64) -> BoxFuture<'_, Result<ChangesPage, SyncError>> {
        let s = self.inner.lock().unwrap();
        let mut entries: Vec<EntryState> =
            s.current.iter().filter(|((f, _), e)| *f == folder_id && e.rev > since).map(|(_, e)| e.clone()).collect();
        entries.sort_by_key(|e| e.rev);
        let last_rev = entries.last().map_or(0, |e| e.rev);
        let folder_seq = s.seq.get(&folder_id).copied().unwrap_or(0);
        Box::pin(async move { Ok(ChangesPage { entries, invalid: vec![], last_rev, more: false, folder_seq }) })
    }

    fn missing_chunks(&self, hashes: Vec<Hash>) -> BoxFuture<'_, Result<Vec<Hash>, SyncError>> {
        let s = self.inner.lock().unwrap();
        let missing = hashes.into_iter().filter(|h| !s.chunks.contains_key(h)).collect();
        Box::pin(async move { Ok(missing) })
    }

    fn put_chunks(&self, chunks: Vec<ChunkUpload>) -> BoxFuture<'_, Result<(), SyncError>> {
        let mut s = self.inner.lock().unwrap();
        s.puts += 1;
        s.calls.push("put");
        s.similar_up.extend(chunks.iter().map(|c| (c.hash, c.similar)));
        let chunks: Vec<(Hash, Bytes)> = chunks.into_iter().map(|c| (c.hash, c.data)).collect();
        let stored: u64 = s.chunks.values().map(|d| d.len() as u64).sum();
        let new: u64 = chunks.iter().filter(|(h, _)| !s.chunks.contains_key(h)).map(|(_, d)| d.len() as u64).sum();
        if let Some(quota) = s.quota.filter(|q| stored + new > *q) {
            let message = format!("Your account is over its storage quota ({stored} B of {quota} B used)");
            let e = SyncError::Client(ClientError::Server { code: Some(ErrorCode::QuotaExceeded), message });
            return Box::pin(async move { Err(e) });
        }
        if let Some((h, _)) = chunks.iter().find(|(h, _)| s.refused.contains(h)) {
            let e = SyncError::Protocol(format!("chunk {h} refused"));
            return Box::pin(async move { Err(e) });
        }
        for (h, data) in chunks {
            assert_eq!(Hash::of(&data), h, "a chunk arrived corrupted");
            s.chunks.insert(h, data);
        }
        Box::pin(async { Ok(()) })
    }

    fn get_chunks(&self, wanted: Vec<ChunkRequest>) -> BoxFuture<'_, Result<Vec<Bytes>, SyncError>> {
        let mut s = self.inner.lock().unwrap();
        for w in &wanted {
            if let Some((h, d)) = &w.similar {
                assert_eq!(Hash::of(d), *h, "a similar chunk offered with other bytes than its hash says");
            }
        }
        s.similar_down.extend(wanted.iter().map(|w| (w.hash, w.similar.as_ref().map(|(h, _)| *h))));
        let hashes: Vec<Hash> = wanted.into_iter().map(|w| w.hash).collect();
        let got: Result<Vec<Bytes>, SyncError> = hashes
            .iter()
            .map(|h| match s.chunks.get(h) {
                Some(_) if s.damaged.contains(h) => Err(SyncError::Protocol(format!("chunk {h} is damaged"))),
                Some(d) => Ok(d.clone()),
                None => Err(SyncError::Protocol(format!("no chunk {h}"))),
            })
            .collect();
        Box::pin(async move { got })
    }

    fn commit(&self, folder_id: u64, changes: Vec<Change>) -> BoxFuture<'_, Result<Vec<Committed>, SyncError>> {
        let mut s = self.inner.lock().unwrap();
        s.calls.push("commit");
        let mut out = Vec::new();
        for c in changes {
            let key = (folder_id, c.path.clone());
            let current = s.current.get(&key).cloned();
            if current.as_ref().map_or(0, |e| e.rev) != c.base_rev {
                out.push(Committed::Conflict(current));
                continue;
            }
            let seq = s.seq.entry(folder_id).or_insert(0);
            *seq += 1;
            let e = EntryState {
                path: c.path,
                rev: *seq,
                meta: c.meta,
                device_id: 1,
                device_name: "memory".into(),
                committed_at: 0,
            };
            s.current.insert(key, e.clone());
            out.push(Committed::Accepted(Some(e)));
        }
        Box::pin(async move { Ok(out) })
    }
}

struct Computer {
    engine: Engine,
    fs: MemFs,
    folder: FolderConfig,
}

impl Computer {
    async fn new(server: &Arc<MemServer>, name: &str) -> Computer {
        let server: Arc<dyn ServerApi> = server.clone();
        let engine = Engine::with_server(server, StateDb::memory().await.unwrap(), name.into());
        Computer { engine, fs: MemFs::new(), folder: FolderConfig::new("docs", format!("/{name}")) }
    }

    async fn sync(&self) -> PassReport {
        let r = self.sync_with_errors().await;
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        r
    }

    async fn sync_with_errors(&self) -> PassReport {
        let fs: Arc<dyn Filesystem> = Arc::new(self.fs.clone());
        self.engine.sync_folder(&self.folder, fs, &Progress::default()).await.unwrap()
    }
}

/// One chunk the server will not take costs only the file that needs it: the other files of
/// the batch are committed, and that one is retried (and goes through once it is accepted).
#[tokio::test]
async fn a_refused_chunk_fails_only_its_file() {
    let server = Arc::new(MemServer::default());
    let a = Computer::new(&server, "laptop").await;
    for i in 0..20 {
        a.fs.write(&format!("f{i:02}.txt"), format!("file number {i}"));
    }
    server.inner.lock().unwrap().refused.insert(Hash::of(b"file number 7"));
    let r = a.sync_with_errors().await;
    assert_eq!(r.uploaded, 19, "{r:?}");
    assert_eq!(r.errors.len(), 1, "{:?}", r.errors);
    assert_eq!(r.errors[0].path, "f07.txt");
    assert!(r.errors[0].reason.contains("refused"), "{:?}", r.errors);

    server.inner.lock().unwrap().refused.clear();
    assert_eq!(a.sync().await.uploaded, 1);
}

/// Regression: over the storage quota every chunk of a refused batch was sent again alone
/// (each refused again), and the failed files were retried at once by a second pass. Now the
/// first refusal stops the uploads of the pass, every file that was not uploaded says why, and
/// the report tells the folder task to wait before trying again.
#[tokio::test]
async fn an_upload_over_the_quota_stops_at_the_first_refusal_and_says_why() {
    let server = Arc::new(MemServer::default());
    server.inner.lock().unwrap().quota = Some(100);
    let a = Computer::new(&server, "laptop").await;
    for i in 0..30 {
        a.fs.write(&format!("f{i:02}.txt"), format!("file number {i} {}", "x".repeat(100)));
    }
    let r = a.sync_with_errors().await;
    assert!(r.over_quota, "{r:?}");
    assert_eq!((r.uploaded, r.errors.len()), (0, 30), "{:?}", r.errors);
    assert!(r.errors.iter().all(|e| e.reason.starts_with("Your account is over its storage quota")), "{:?}", r.errors);
    assert_eq!(server.inner.lock().unwrap().puts, 1, "one refused batch, not one request per chunk or per pass");

    server.inner.lock().unwrap().quota = None;
    let r = a.sync().await;
    assert!(!r.over_quota);
    assert_eq!(r.uploaded, 30);
}

/// One chunk the server cannot send costs only the file that needs it: the other files of
/// the same batch arrive, the failure is reported for that file alone, and it arrives once
/// the chunk is whole again.
#[tokio::test]
async fn a_damaged_chunk_fails_only_its_file() {
    let server = Arc::new(MemServer::default());
    let a = Computer::new(&server, "laptop").await;
    let b = Computer::new(&server, "desktop").await;
    for i in 0..20 {
        a.fs.write(&format!("f{i:02}.txt"), format!("file number {i}"));
    }
    a.sync().await;
    let bad = Hash::of(b"file number 7");
    server.inner.lock().unwrap().damaged.insert(bad);

    let r = b.sync_with_errors().await;
    assert_eq!(r.downloaded, 19, "{r:?}");
    assert_eq!(r.errors.len(), 1, "{:?}", r.errors);
    assert_eq!(r.errors[0].path, "f07.txt");
    assert!(r.errors[0].reason.contains("could not send"), "{:?}", r.errors);
    assert!(!b.fs.exists("f07.txt"), "no partial file");
    assert_eq!(b.fs.read("f08.txt").unwrap(), b"file number 8");

    server.inner.lock().unwrap().damaged.clear();
    let r = b.sync().await;
    assert_eq!(r.downloaded, 1);
    assert_eq!(b.fs.read("f07.txt").unwrap(), b"file number 7");
}

/// A chunk the server lost (found damaged and forgotten) is sent again by the computer that
/// holds the file, on its next walk of the whole folder, without a commit; then the other
/// computer gets the file too.
#[tokio::test]
async fn a_chunk_the_server_lost_is_sent_again_by_the_computer_that_holds_the_file() {
    let server = Arc::new(MemServer::default());
    let a = Computer::new(&server, "laptop").await;
    let b = Computer::new(&server, "desktop").await;
    for i in 0..5 {
        a.fs.write(&format!("f{i}.txt"), format!("file number {i}"));
    }
    a.sync().await;
    let lost = Hash::of(b"file number 3");
    server.inner.lock().unwrap().chunks.remove(&lost);
    let r = b.sync_with_errors().await;
    assert_eq!((r.downloaded, r.errors.len()), (4, 1), "{r:?}");

    let r = a.sync().await;
    assert_eq!((r.uploaded, r.bytes_up), (0, 13), "only the lost chunk is sent, nothing is committed: {r:?}");
    assert!(server.inner.lock().unwrap().chunks.contains_key(&lost));
    assert_eq!(a.sync().await.bytes_up, 0, "nothing more to send");
    assert_eq!(b.sync().await.downloaded, 1);
    assert_eq!(b.fs.read("f3.txt").unwrap(), b"file number 3");
}

#[tokio::test]
async fn two_computers_sync_through_an_in_memory_server() {
    let server = Arc::new(MemServer::default());
    let a = Computer::new(&server, "laptop").await;
    let b = Computer::new(&server, "desktop").await;
    a.fs.write("notes/today.txt", "hello");
    a.fs.write("big.bin", vec![7u8; 3 << 20]);
    a.sync().await;
    assert_eq!(b.sync().await.downloaded, 3, "a directory and two files");
    assert_eq!(b.fs.read("notes/today.txt").unwrap(), b"hello");

    // Both edit the same file: the server takes the first, the second becomes a copy.
    a.fs.write("notes/today.txt", "a's version");
    b.fs.write("notes/today.txt", "b's version");
    a.sync().await;
    let r = b.sync().await;
    assert_eq!(r.conflicts, 1);
    a.sync().await;
    let copies = |c: &Computer| c.fs.list_all().into_iter().filter(|p| p.contains("conflicted copy")).count();
    assert_eq!((copies(&a), copies(&b)), (1, 1));
    assert_eq!(b.fs.read("notes/today.txt").unwrap(), b"a's version");

    // A move is rebuilt from the local copy: nothing fetched.
    let data = a.fs.read("big.bin").unwrap();
    assert!(a.fs.remove("big.bin"));
    a.fs.write("archive/big.bin", &data);
    a.sync().await;
    let r = b.sync().await;
    assert_eq!(r.bytes_down, 0, "{r:?}");
    assert_eq!(b.fs.read("archive/big.bin").unwrap(), data);
    assert!(!b.fs.exists("big.bin"));
}

/// Bytes that chunk like real data (a constant fill would be one repeated chunk).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The file B downloaded moments ago has a stat that cannot vouch for it yet (git's racy
/// rule), but the scan read it: its chunks are reused, and an insert in the middle of a big
/// file fetches only the chunks around the insert.
#[tokio::test]
async fn an_edit_right_after_a_download_fetches_only_the_changed_chunks() {
    let server = Arc::new(MemServer::default());
    let a = Computer::new(&server, "laptop").await;
    let b = Computer::new(&server, "desktop").await;
    let old = noise(16 << 20, 1);
    a.fs.write("vm.img", &old);
    // Written just now, by the real clock the racy rule reads.
    a.fs.set_mtime("vm.img", filesync_agent::scan::now_ns());
    a.sync().await;
    b.sync().await;
    let mut new = old[..8 << 20].to_vec();
    new.extend_from_slice(&noise(4096, 2));
    new.extend_from_slice(&old[8 << 20..]);
    a.fs.write("vm.img", &new);
    a.sync().await;
    let r = b.sync().await;
    assert_eq!(r.downloaded, 1);
    assert!(r.bytes_down < 6 << 20, "fetched {} bytes of a 16 MiB file for a 4 KiB insert", r.bytes_down);
    assert_eq!(b.fs.read("vm.img").unwrap(), new);
}

/// A changed chunk names, both ways, the old chunk at its place as the base of a delta: the
/// uploader the chunk of the version it replaces (which the server has), the downloader its
/// own copy of that chunk (read back and offered with its bytes). A new file names none.
#[tokio::test]
async fn a_changed_chunk_names_the_old_chunk_at_its_place_both_ways() {
    let server = Arc::new(MemServer::default());
    let a = Computer::new(&server, "laptop").await;
    let b = Computer::new(&server, "desktop").await;
    let old = noise(16 << 20, 3);
    a.fs.write("vm.img", &old);
    a.sync().await;
    b.sync().await;
    {
        let s = server.inner.lock().unwrap();
        assert!(s.similar_up.iter().chain(&s.similar_down).all(|(_, sim)| sim.is_none()), "a new file has no base");
    }
    let old_chunks: std::collections::HashSet<Hash> = server.inner.lock().unwrap().chunks.keys().copied().collect();
    server.inner.lock().unwrap().similar_up.clear();
    server.inner.lock().unwrap().similar_down.clear();

    let mut new = old[..8 << 20].to_vec();
    new.extend_from_slice(&noise(4096, 4));
    new.extend_from_slice(&old[8 << 20..]);
    a.fs.write("vm.img", &new);
    a.sync().await;
    assert_eq!(b.sync().await.downloaded, 1);
    assert_eq!(b.fs.read("vm.img").unwrap(), new);

    let s = server.inner.lock().unwrap();
    for (what, hints) in [("uploaded", &s.similar_up), ("fetched", &s.similar_down)] {
        assert!(!hints.is_empty() && hints.len() <= 3, "{what}: {hints:?}");
        for (h, sim) in hints {
            assert!(!old_chunks.contains(h), "{what} a chunk the old version had");
            let sim = sim.unwrap_or_else(|| panic!("{what} chunk {h} names no similar chunk"));
            assert!(old_chunks.contains(&sim), "{what} chunk {h} names {sim}, not a chunk of the old version");
        }
    }
}

/// Files are committed as soon as their chunks are on the server, in batches, not all at the
/// end of the pass: the other computers start downloading while the rest is still being sent.
#[tokio::test]
async fn a_big_upload_commits_files_while_the_rest_is_still_being_sent() {
    let server = Arc::new(MemServer::default());
    let a = Computer::new(&server, "laptop").await;
    let b = Computer::new(&server, "desktop").await;
    for i in 0..1500u64 {
        a.fs.write(&format!("d{}/f{i:04}.bin", i % 10), noise(8192, i + 100));
    }
    assert_eq!(a.sync().await.uploaded, 1510, "1,500 files and 10 directories");
    let calls = server.inner.lock().unwrap().calls.clone();
    let first_commit = calls.iter().position(|c| *c == "commit").unwrap();
    let last_put = calls.iter().rposition(|c| *c == "put").unwrap();
    assert!(first_commit < last_put, "the first commit waited for every chunk: {calls:?}");
    assert_eq!(b.sync().await.downloaded, 1510);
    assert_eq!(b.fs.read("d7/f1497.bin").unwrap(), noise(8192, 1597));
}
