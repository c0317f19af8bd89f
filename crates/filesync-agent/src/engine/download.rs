//! Downloads: make local files equal to remote versions. Chunks come from files already on
//! this computer when possible (a moved or copied file transfers nothing) and otherwise from
//! the server, many requests in flight at once. A blocking writer thread writes each file to a
//! temporary file beside its destination, fsyncs, and renames it into place only if the
//! destination did not change since the scan. Every chunk is verified against its hash as it
//! arrives (`ServerApi::get_chunks`, [`read_local`]), and a file's hash is the hash of its chunk
//! list (`filesync_core::file_hash`), so the content is never hashed a second time.

use super::server::{ChunkRequest, ServerApi};
use super::{SyncError, chunk_offsets, connection_lost, stat_matches};
use crate::fs::{Filesystem, Stat, StatKind};
use crate::status::Progress;
use bytes::Bytes;
use filesync_core::{ChunkRef, FileMeta, Hash, RelPath};
use filesync_proto::limits;
use futures::StreamExt;
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::Arc;

/// Requests for chunk batches kept in flight at once.
const FETCH_CONCURRENCY: usize = 8;
/// Bytes of a file written between two starts of its writeback to the disk (a big file's
/// durable write then overlaps its making, instead of all of it waiting for the final fsync).
const WRITEBACK_EVERY: u64 = 32 << 20;
/// Pieces handed to the writer at once, at most (fewer when the next must wait for the network).
const PIECES_PER_SEND: usize = 256;
/// Bytes of local chunks a run reuses from which they are read and verified on a thread of
/// their own, ahead of the writer (an edit inside a big file rebuilds it mostly from the old
/// version: reading and hashing the old gigabyte and writing the new one then take one core
/// each, instead of one after the other).
const READ_AHEAD_MIN: u64 = 16 << 20;
/// Bytes of local chunks the read-ahead hands the writer at once; two such hand-overs wait at
/// most.
const READ_AHEAD_BYTES: usize = 8 << 20;
/// The longest a download waits for its partial to come back from a prefetch appending to it.
const LENT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// One file to write.
#[derive(Clone, Debug)]
pub struct DownloadJob {
    pub path: RelPath,
    pub rev: u64,
    pub meta: FileMeta,
    /// What the scan saw at `path` (`None`: nothing). The file is replaced only if this still holds.
    pub expect_local: Option<Stat>,
    /// The chunks of the file the scan saw at `path` (empty if none): a chunk to fetch may come
    /// as a delta from the local chunk at its place.
    pub previous: Vec<ChunkRef>,
}

/// Where a chunk can be read on this computer: a file, an offset, and the chunk's length.
#[derive(Clone, Debug)]
pub struct LocalChunk {
    pub path: RelPath,
    pub offset: u64,
    pub len: u32,
}

/// Downloads cut short (a lost connection, mostly), kept to resume: the hidden temporary file
/// with the chunks it holds, a prefix of the version being downloaded, each verified as it
/// came. The next download of the same path goes on from there when the version it wants
/// starts with those chunks, so a file bigger than what a flaky link carries between drops
/// still arrives. Shared by the engines of one agent (one per connection); a partial dropped
/// (replaced, evicted, or of a version no longer wanted) removes its file.
///
/// A file another computer is still uploading is fetched into a partial too, before its
/// commit (`prefetch.rs`): such a partial is lent out while chunks are appended to it, and a
/// download of its path waits until it is back.
#[derive(Default)]
pub struct Partials {
    kept: std::sync::Mutex<Vec<Partial>>,
    /// Partials lent out to be appended to: folder, path and file name.
    lent: std::sync::Mutex<Vec<(String, RelPath, String)>>,
    returned: tokio::sync::Notify,
    /// The prefetches running (folder, path, number): a download of the path, or its deletion,
    /// ends them. The end of an upload may never be announced (the uploader's scan found the
    /// file still being written and left it to the ordinary upload, which has nothing new to
    /// announce), so a prefetch cannot count on hearing of it.
    fetching: std::sync::Mutex<Vec<(String, RelPath, u64)>>,
    next_fetch: std::sync::atomic::AtomicU64,
    fetch_ended: tokio::sync::Notify,
}

/// A prefetch registered with [`Partials::start_fetch`]; dropping it unregisters.
pub(super) struct Fetching {
    partials: Arc<Partials>,
    id: u64,
}

impl Fetching {
    /// Returns when a download of the path, or its deletion, ended this prefetch.
    pub(super) async fn ended(&self) {
        loop {
            let ended = self.partials.fetch_ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if self.is_ended() {
                return;
            }
            ended.await;
        }
    }

    pub(super) fn is_ended(&self) -> bool {
        !self.partials.fetching().iter().any(|(_, _, id)| *id == self.id)
    }
}

impl Drop for Fetching {
    fn drop(&mut self) {
        self.partials.fetching().retain(|(_, _, id)| *id != self.id);
    }
}

pub(super) struct Partial {
    folder: String,
    path: RelPath,
    tmp: Box<dyn crate::fs::TempFile>,
    /// The chunks written, from the start of the file.
    chunks: Vec<ChunkRef>,
    bytes: u64,
}

impl Partials {
    /// Downloads kept at once; the oldest goes when another comes. Each holds an open file.
    const MAX: usize = 16;

    fn kept(&self) -> std::sync::MutexGuard<'_, Vec<Partial>> {
        self.kept.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes the partial download of `path`, if one is kept.
    fn take(&self, folder: &str, path: &RelPath) -> Option<Partial> {
        let mut kept = self.kept();
        let i = kept.iter().position(|p| p.folder == folder && p.path == *path)?;
        Some(kept.remove(i))
    }

    /// Keeps `p`, replacing an older one of the same path. Returns what no longer fits, for
    /// the caller to drop (which removes its file) outside the lock.
    fn keep(&self, p: Partial) -> Vec<Partial> {
        let mut kept = self.kept();
        let mut gone: Vec<Partial> = Vec::new();
        if let Some(i) = kept.iter().position(|k| k.folder == p.folder && k.path == p.path) {
            gone.push(kept.remove(i));
        }
        kept.push(p);
        while kept.len() > Self::MAX {
            gone.push(kept.remove(0));
        }
        gone
    }

    /// Takes the partial download of `path` for a download, waiting (a while at most) while
    /// it is lent out. A prefetch of the path ends: the download fetches the rest.
    async fn take_when_back(&self, folder: &str, path: &RelPath) -> Option<Partial> {
        self.end_fetches(|f, p| f == folder && p == path);
        // The usual case, without a waiter: nothing is lent.
        if self.lent().is_empty() {
            return self.take(folder, path);
        }
        let give_up = tokio::time::Instant::now() + LENT_WAIT;
        loop {
            let returned = self.returned.notified();
            tokio::pin!(returned);
            returned.as_mut().enable();
            if !self.is_lent(folder, path) {
                return self.take(folder, path);
            }
            if tokio::time::timeout_at(give_up, returned).await.is_err() {
                return None;
            }
        }
    }

    /// Registers a prefetch of `path`, until the returned guard goes.
    pub(super) fn start_fetch(self: &Arc<Self>, folder: &str, path: &RelPath) -> Fetching {
        let id = self.next_fetch.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.fetching().push((folder.to_owned(), path.clone(), id));
        Fetching { partials: self.clone(), id }
    }

    fn fetching(&self) -> std::sync::MutexGuard<'_, Vec<(String, RelPath, u64)>> {
        self.fetching.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Ends the prefetches of the paths `which` matches.
    fn end_fetches(&self, which: impl Fn(&str, &RelPath) -> bool) {
        let mut fetching = self.fetching();
        let before = fetching.len();
        fetching.retain(|(f, p, _)| !which(f, p));
        if fetching.len() != before {
            self.fetch_ended.notify_waiters();
        }
    }

    fn lent(&self) -> std::sync::MutexGuard<'_, Vec<(String, RelPath, String)>> {
        self.lent.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn is_lent(&self, folder: &str, path: &RelPath) -> bool {
        self.lent().iter().any(|(f, p, _)| f == folder && p == path)
    }

    fn give_back(&self, folder: &str, path: &RelPath, p: Option<Partial>) -> Vec<Partial> {
        self.lent().retain(|(f, q, _)| !(f == folder && q == path));
        let gone = p.map(|p| self.keep(p)).unwrap_or_default();
        self.returned.notify_waiters();
        gone
    }

    /// Appends fetched chunks of a file being uploaded to its partial download (started
    /// when `have` is 0): `have` is how many chunks the caller appended before, and the last of
    /// them, `data` the verified content of `chunks`. Fails when the partial is gone (its download took it over, or it
    /// was dropped) or the disk refused; the caller then stops. Blocking.
    pub(super) fn append(
        &self,
        fs: &dyn Filesystem,
        (folder, path): (&str, &RelPath),
        have: (usize, Option<ChunkRef>),
        chunks: &[ChunkRef],
        data: Vec<Bytes>,
        make_durable: bool,
    ) -> Result<(), String> {
        let mut p = if have.0 == 0 {
            let tmp = fs.create_temp(path.parent().as_ref()).map_err(|e| super::describe_io(&e))?;
            self.lent().push((folder.to_owned(), path.clone(), tmp.file_name().to_owned()));
            Partial { folder: folder.to_owned(), path: path.clone(), tmp, chunks: Vec::new(), bytes: 0 }
        } else {
            let mut kept = self.kept();
            let i = kept.iter().position(|k| {
                k.folder == folder && k.path == *path && k.chunks.len() == have.0 && k.chunks.last() == have.1.as_ref()
            });
            let Some(i) = i else { return Err("its download took over".into()) };
            let p = kept.remove(i);
            self.lent().push((p.folder.clone(), p.path.clone(), p.tmp.file_name().to_owned()));
            p
        };
        let mut written = || -> std::io::Result<()> {
            for d in &data {
                p.tmp.write_all(d)?;
            }
            if make_durable { p.tmp.sync_all() } else { Ok(()) }
        };
        let (keep, result) = match written() {
            Ok(()) => {
                p.chunks.extend_from_slice(chunks);
                p.bytes += data.iter().map(|d| d.len() as u64).sum::<u64>();
                (Some(p), Ok(()))
            }
            Err(e) => (None, Err(super::describe_io(&e))),
        };
        drop(self.give_back(folder, path, keep));
        result
    }

    /// Takes the partial download of `path` if it still holds exactly `chunks` (nothing took
    /// it over or added to it), for the caller to drop.
    pub(super) fn take_if_unchanged(&self, folder: &str, path: &RelPath, chunks: &[ChunkRef]) -> Option<Partial> {
        let mut kept = self.kept();
        let i = kept.iter().position(|k| k.folder == folder && k.path == *path && k.chunks == chunks)?;
        Some(kept.remove(i))
    }

    /// Takes the partial downloads of `folder` at `paths` or below them (deleted here, so the
    /// hidden file would keep its folder from being removed), for the caller to drop. Their
    /// prefetches end.
    pub(super) fn take_under(&self, folder: &str, paths: &[RelPath], case_insensitive: bool) -> Vec<Partial> {
        self.take_matching(folder, paths, case_insensitive, true)
    }

    /// Takes the partial downloads of `folder` below the directory `dir` (not at `dir`
    /// itself), which moves aside whole: its hidden files would go with it, and keep the copy
    /// from being removed when its deletion comes (found by the simulation, seed 49679 of the
    /// workload that replaces directories by files).
    pub(super) fn take_below(&self, folder: &str, dir: &RelPath, case_insensitive: bool) -> Vec<Partial> {
        self.take_matching(folder, std::slice::from_ref(dir), case_insensitive, false)
    }

    fn take_matching(&self, folder: &str, paths: &[RelPath], case_insensitive: bool, itself: bool) -> Vec<Partial> {
        // On a disk that ignores case, a partial of `D/f` lies in the directory `d` (found by
        // the simulation: a fetch ahead of a directory renamed by case elsewhere kept the old
        // spelling's directory from being deleted, pass after pass).
        let key = |p: &str| if case_insensitive { crate::names::fold(p) } else { p.to_owned() };
        let dirs: Vec<String> = paths.iter().map(|d| key(d.as_str())).collect();
        let under = |p: &RelPath| {
            let p = key(p.as_str());
            dirs.iter()
                .any(|d| (itself && p == *d) || p.strip_prefix(d.as_str()).is_some_and(|rest| rest.starts_with('/')))
        };
        self.end_fetches(|f, p| f == folder && under(p));
        let mut kept = self.kept();
        let (gone, stay): (Vec<Partial>, Vec<Partial>) =
            std::mem::take(&mut *kept).into_iter().partition(|p| p.folder == folder && under(&p.path));
        *kept = stay;
        gone
    }

    /// The file names of the partial downloads kept in `folder`, which a clean-up of leftover
    /// temporary files must spare.
    pub fn temp_names(&self, folder: &str) -> std::collections::HashSet<String> {
        let mut names: std::collections::HashSet<String> =
            self.kept().iter().filter(|p| p.folder == folder).map(|p| p.tmp.file_name().to_owned()).collect();
        names.extend(self.lent().iter().filter(|(f, _, _)| f == folder).map(|(_, _, name)| name.clone()));
        names
    }

    /// How many downloads are kept to resume (for tests).
    pub fn len(&self) -> usize {
        self.kept().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What happened to one job.
#[derive(Debug)]
pub enum DownloadResult {
    /// Written; the stat of the new file (for the base) and whether a changed local file had
    /// to be moved aside to `conflict` first.
    Done {
        stat: Stat,
        conflict: Option<RelPath>,
    },
    Failed(String),
}

enum Piece {
    Start(usize),
    Data(Bytes),
    Local(Hash, LocalChunk),
    /// The server could not send a chunk of the current file (why): that file fails alone.
    Missing(String),
    End,
}

/// What one fetch brought: each chunk of the batch, or why the server could not send it.
type Fetched = HashMap<Hash, Result<Bytes, String>>;

/// Fetches `wanted`. If the server refuses the batch, each chunk is asked for alone, so that
/// one damaged or missing chunk costs only the files that need it.
async fn fetch(conn: &dyn ServerApi, wanted: Vec<ChunkRequest>) -> Result<Fetched, SyncError> {
    let hashes: Vec<Hash> = wanted.iter().map(|w| w.hash).collect();
    match conn.get_chunks(wanted.clone()).await {
        Ok(data) => Ok(hashes.into_iter().zip(data.into_iter().map(Ok)).collect()),
        Err(e) if connection_lost(&e) || hashes.len() == 1 => match e {
            e if connection_lost(&e) => Err(e),
            e => Ok(hashes.into_iter().map(|h| (h, Err(e.to_string()))).collect()),
        },
        Err(e) => {
            tracing::warn!("the server refused a batch of {} chunks ({e}); asking for each alone", hashes.len());
            let mut out = HashMap::with_capacity(hashes.len());
            for w in wanted {
                let h = w.hash;
                match conn.get_chunks(vec![w]).await {
                    Ok(mut d) if d.len() == 1 => out.insert(h, Ok(d.remove(0))),
                    Ok(_) => out.insert(h, Err("the server sent no data for it".to_string())),
                    Err(e) if connection_lost(&e) => return Err(e),
                    Err(e) => out.insert(h, Err(e.to_string())),
                };
            }
            Ok(out)
        }
    }
}

/// A chunk to fetch, with the local chunk at its place (its hash and where to read it).
type Remote = (Hash, Option<(Hash, LocalChunk)>);

/// Where each chunk occurrence of each job comes from.
enum Source {
    /// Already in the kept partial download the job goes on from.
    Resumed,
    Local(LocalChunk),
    /// Index of the fetch batch that carries it.
    Remote(usize),
}

/// What a download run works with besides its jobs.
pub struct Context<'a> {
    pub progress: &'a Progress,
    /// Names a conflict copy of a local file changed meanwhile: this device's name, the time.
    pub copy_names: (&'a str, i64),
    /// Paces the fetches.
    pub throttle: &'a super::throttle::Throttle,
    /// Downloads cut short, to resume and to keep, and the folder they are in.
    pub partials: (&'a Arc<Partials>, &'a str),
}

/// What a download run did: a result per job (in job order), the bytes fetched from the
/// server, and the error that cut the run short, if one did — the files installed before it
/// are still results to record.
pub struct Downloaded {
    pub results: Vec<DownloadResult>,
    pub fetched: u64,
    pub cut: Option<SyncError>,
}

/// Runs the jobs.
pub async fn run(
    conn: &Arc<dyn ServerApi>,
    fs: Arc<dyn Filesystem>,
    jobs: Vec<DownloadJob>,
    local_chunks: &HashMap<Hash, LocalChunk>,
    cx: Context<'_>,
) -> Result<Downloaded, SyncError> {
    let Context { progress, copy_names, throttle, partials } = cx;
    let (device_name, now_unix) = copy_names;
    let (partials, folder) = partials;
    // Downloads cut short before go on where they stopped, if they fetch the same content.
    let mut resumed: HashMap<usize, Partial> = HashMap::new();
    let mut stale = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        if let Some(p) = partials.take_when_back(folder, &job.path).await {
            if !p.chunks.is_empty() && job.meta.chunks.starts_with(&p.chunks) {
                resumed.insert(i, p);
            } else {
                stale.push(p);
            }
        }
    }
    // A partial whose hidden file is gone (a person deleted the directory that held it) is
    // started again, not resumed into a file that cannot be renamed into place (found by the
    // simulation: such a download failed once, "moved or deleted meanwhile").
    if !resumed.is_empty() {
        let (checked, gone): (HashMap<usize, Partial>, Vec<usize>) = tokio::task::spawn_blocking(move || {
            let gone = resumed.iter().filter(|(_, p)| !p.tmp.still_in_place()).map(|(&i, _)| i).collect();
            (resumed, gone)
        })
        .await
        .map_err(|e| SyncError::Internal(format!("checking partial downloads: {e}")))?;
        resumed = checked;
        stale.extend(gone.iter().filter_map(|i| resumed.remove(i)));
    }
    drop_blocking(stale).await;
    let fetched_bytes = Arc::new(std::sync::atomic::AtomicU64::new(0));
    // Assign every chunk occurrence a source, grouping remote ones into batches in the order
    // the writer will consume them.
    let mut batches: Vec<Vec<Remote>> = Vec::new();
    let mut batch_lens: Vec<u64> = Vec::new();
    let mut batch_bytes = 0usize;
    let mut in_batch: HashMap<Hash, usize> = HashMap::new();
    let mut sources: Vec<Vec<Source>> = Vec::with_capacity(jobs.len());
    for (i, job) in jobs.iter().enumerate() {
        let mut s = Vec::with_capacity(job.meta.chunks.len());
        let layout = super::ChunkLayout::new(&job.previous);
        let skip = resumed.get(&i).map_or(0, |p| p.chunks.len());
        s.extend((0..skip).map(|_| Source::Resumed));
        for (off, c) in chunk_offsets(&job.meta.chunks).skip(skip) {
            if let Some(l) = local_chunks.get(&c.hash) {
                s.push(Source::Local(l.clone()));
                continue;
            }
            let cur = batches.len().wrapping_sub(1);
            if let Some(&b) = in_batch.get(&c.hash)
                && b == cur
            {
                s.push(Source::Remote(b));
                continue;
            }
            if batches.is_empty()
                || batch_bytes + c.len as usize > limits::MAX_CHUNK_BYTES_PER_MESSAGE
                || batches[cur].len() >= limits::MAX_HASHES_PER_REQUEST
            {
                batches.push(Vec::new());
                batch_lens.push(0);
                batch_bytes = 0;
            }
            let b = batches.len() - 1;
            let similar = layout
                .most_overlapping(off, c.len)
                .map(|(at, old)| (old.hash, LocalChunk { path: job.path.clone(), offset: at, len: old.len }));
            batches[b].push((c.hash, similar));
            batch_lens[b] += u64::from(c.len);
            batch_bytes += c.len as usize;
            in_batch.insert(c.hash, b);
            s.push(Source::Remote(b));
        }
        sources.push(s);
    }

    // Pieces go to the writer in batches: one wake-up of its thread per batch, not per piece
    // (three per small file).
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Piece>>(2);
    let local_bytes: u64 =
        sources.iter().flatten().map(|s| if let Source::Local(l) = s { u64::from(l.len) } else { 0 }).sum();
    let writer = {
        let fs = fs.clone();
        let jobs = jobs.clone();
        let device_name = device_name.to_string();
        let keep = (partials.clone(), folder.to_string());
        tokio::task::spawn_blocking(move || {
            let pieces: Box<dyn Iterator<Item = Vec<Piece>>> = if local_bytes >= READ_AHEAD_MIN {
                Box::new(ReadAhead::start(fs.clone(), rx))
            } else {
                Box::new(std::iter::from_fn(move || rx.blocking_recv()))
            };
            write_all(&*fs, &jobs, pieces, &device_name, now_unix, resumed, keep)
        })
    };

    let conn2 = conn.clone();
    let counter = fetched_bytes.clone();
    let throttle = throttle.clone();
    let mut requests = batches.into_iter().zip(batch_lens).map(move |(b, len)| {
        let conn = conn2.clone();
        let counter = counter.clone();
        let throttle = throttle.clone();
        let fs = fs.clone();
        async move {
            throttle.acquire(len).await;
            let wanted = read_similar(fs, b).await?;
            let data = fetch(&*conn, wanted).await?;
            let n: usize = data.values().filter_map(|d| d.as_ref().ok()).map(|d| d.len()).sum();
            counter.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
            Ok::<_, SyncError>(data)
        }
    });
    // The server may answer requests in any order, and only whole batches in order reach the
    // file: on a link that drops every few mebibytes, later answers could come first every
    // time, and the download would never move. The first batch goes alone, so each attempt
    // keeps at least one batch (found under Wine by the network-fault tests).
    let first = requests.next();
    let mut fetched =
        futures::stream::iter(first).buffered(1).chain(futures::stream::iter(requests).buffered(FETCH_CONCURRENCY));

    let mut loaded: Option<(usize, Fetched)> = None;
    let mut next_batch = 0usize;
    let mut fetch_error = None;
    let mut out: Vec<Piece> = Vec::new();
    'jobs: for (i, job) in jobs.iter().enumerate() {
        progress.set_current(Some(job.path.as_str()));
        out.push(Piece::Start(i));
        for (c, src) in job.meta.chunks.iter().zip(&sources[i]) {
            let piece = match src {
                Source::Resumed => {
                    progress.bytes_done.fetch_add(c.len as u64, std::sync::atomic::Ordering::Relaxed);
                    continue;
                }
                Source::Local(l) => Piece::Local(c.hash, l.clone()),
                Source::Remote(b) => {
                    while loaded.as_ref().map(|(n, _)| n) != Some(b) {
                        // What is ready goes to the writer before waiting for the network.
                        if !hand_over(&tx, &mut out, 1).await {
                            break 'jobs;
                        }
                        match fetched.next().await {
                            Some(Ok(m)) => {
                                loaded = Some((next_batch, m));
                                next_batch += 1;
                            }
                            Some(Err(e)) => {
                                fetch_error = Some(e);
                                break 'jobs;
                            }
                            None => unreachable!("every remote chunk was assigned a batch"),
                        }
                    }
                    match loaded.as_ref().and_then(|(_, m)| m.get(&c.hash)) {
                        Some(Ok(data)) => Piece::Data(data.clone()),
                        Some(Err(why)) => Piece::Missing(format!("the server could not send part of it: {why}")),
                        None => Piece::Missing("the server's answer left out part of it".into()),
                    }
                }
            };
            progress.bytes_done.fetch_add(c.len as u64, std::sync::atomic::Ordering::Relaxed);
            out.push(piece);
            if !hand_over(&tx, &mut out, PIECES_PER_SEND).await {
                break 'jobs;
            }
        }
        progress.files_done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        out.push(Piece::End);
        if !hand_over(&tx, &mut out, PIECES_PER_SEND).await {
            break;
        }
    }
    // A run cut short still hands over what it has: the writer keeps a file cut mid-way.
    hand_over(&tx, &mut out, 1).await;
    drop(tx);
    let results = writer.await.map_err(|e| SyncError::Internal(format!("download writer panicked: {e}")))?;
    let fetched = fetched_bytes.load(std::sync::atomic::Ordering::Relaxed);
    Ok(Downloaded { results, fetched, cut: fetch_error })
}

/// Hands the pieces in `out` to the writer once there are at least `at_least` (and one);
/// false when the writer is gone.
async fn hand_over(tx: &tokio::sync::mpsc::Sender<Vec<Piece>>, out: &mut Vec<Piece>, at_least: usize) -> bool {
    if out.len() < at_least.max(1) {
        return true;
    }
    tx.send(std::mem::take(out)).await.is_ok()
}

/// The requests for one batch: each chunk with the bytes of the local chunk at its place, read
/// on a blocking thread and checked against its hash (one that changed meanwhile, or cannot be
/// read, is simply not offered).
async fn read_similar(fs: Arc<dyn Filesystem>, batch: Vec<Remote>) -> Result<Vec<ChunkRequest>, SyncError> {
    if batch.iter().all(|(_, s)| s.is_none()) {
        return Ok(batch.into_iter().map(|(hash, _)| ChunkRequest { hash, similar: None }).collect());
    }
    tokio::task::spawn_blocking(move || {
        batch
            .into_iter()
            .map(|(hash, similar)| ChunkRequest {
                hash,
                similar: similar.and_then(|(h, l)| read_local(&*fs, &l, &h).ok().map(|d| (h, Bytes::from(d)))),
            })
            .collect()
    })
    .await
    .map_err(|e| SyncError::Internal(format!("reading local chunks panicked: {e}")))
}

/// Drops partial downloads (removing their files) on a blocking thread.
pub(super) async fn drop_blocking(gone: Vec<Partial>) {
    if !gone.is_empty() {
        let _ = tokio::task::spawn_blocking(move || drop(gone)).await;
    }
}

/// The blocking writer: consumes pieces in job order. A file cut short (the pieces stop
/// mid-file: the connection was lost) is kept in `keep` to resume, with the chunks it holds.
fn write_all(
    fs: &dyn Filesystem,
    jobs: &[DownloadJob],
    pieces: impl Iterator<Item = Vec<Piece>>,
    device_name: &str,
    now_unix: i64,
    mut resumed: HashMap<usize, Partial>,
    keep: (Arc<Partials>, String),
) -> Vec<DownloadResult> {
    let mut results: Vec<DownloadResult> = jobs.iter().map(|_| DownloadResult::Failed("interrupted".into())).collect();
    let mut current: Option<(usize, Result<FileWriter, String>)> = None;
    let mut batch = Batch::default();
    for piece in pieces.flatten() {
        match piece {
            Piece::Start(i) => {
                let w = match resumed.remove(&i) {
                    Some(p) => Ok(FileWriter { tmp: p.tmp, written: p.bytes }),
                    None => FileWriter::start(fs, &jobs[i]),
                };
                current = Some((i, w));
            }
            Piece::Data(d) => {
                if let Some((_, Ok(w))) = &mut current
                    && let Err(e) = w.write(&d)
                {
                    current.as_mut().expect("current job").1 = Err(e);
                }
            }
            Piece::Missing(why) => {
                if let Some((_, w)) = &mut current
                    && w.is_ok()
                {
                    *w = Err(why);
                }
            }
            Piece::Local(hash, l) => {
                if let Some((_, Ok(w))) = &mut current {
                    let r = read_local(fs, &l, &hash).and_then(|d| w.write(&d));
                    if let Err(e) = r {
                        current.as_mut().expect("current job").1 = Err(e);
                    }
                }
            }
            Piece::End => {
                if let Some((i, w)) = current.take() {
                    match w.and_then(|w| w.verified(&jobs[i])) {
                        Ok(w) => batch.push(i, w, jobs[i].meta.size),
                        Err(e) => results[i] = DownloadResult::Failed(e),
                    }
                    if batch.full() {
                        batch.install(fs, jobs, &mut results, device_name, now_unix);
                    }
                }
            }
        }
    }
    batch.install(fs, jobs, &mut results, device_name, now_unix);
    let (partials, folder) = keep;
    // Partial downloads this run never came to stay for the next.
    for (_, p) in resumed {
        drop(partials.keep(p));
    }
    if let Some((i, Ok(mut w))) = current
        && w.written > 0
        && w.tmp.flush().is_ok()
    {
        // Whole chunks only are written (each verified as it came): find how many.
        let mut end = 0u64;
        let done = jobs[i].meta.chunks.iter().take_while(|c| {
            end += u64::from(c.len);
            end <= w.written
        });
        let chunks: Vec<ChunkRef> = done.cloned().collect();
        if chunks.iter().map(|c| u64::from(c.len)).sum::<u64>() == w.written {
            let p = Partial { folder, path: jobs[i].path.clone(), tmp: w.tmp, chunks, bytes: w.written };
            tracing::debug!(path = %p.path, bytes = p.bytes, "kept a download cut short, to resume");
            drop(partials.keep(p));
        }
    }
    results
}

/// Reads and verifies the local chunks among the pieces on a thread of its own, ahead of the
/// writer, which then gets them as data; a chunk that cannot be read, or changed since its
/// file was scanned, fails its file as a missing one does. Iterates over the pieces in order.
struct ReadAhead {
    rx: std::sync::mpsc::Receiver<Vec<Piece>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl ReadAhead {
    fn start(fs: Arc<dyn Filesystem>, mut rx: tokio::sync::mpsc::Receiver<Vec<Piece>>) -> ReadAhead {
        let (tx, out) = std::sync::mpsc::sync_channel::<Vec<Piece>>(2);
        let reader = std::thread::spawn(move || {
            let mut ready = Vec::new();
            let mut bytes = 0usize;
            while let Some(pieces) = rx.blocking_recv() {
                for piece in pieces {
                    ready.push(match piece {
                        Piece::Local(hash, l) => match read_local(&*fs, &l, &hash) {
                            Ok(d) => {
                                bytes += d.len();
                                Piece::Data(Bytes::from(d))
                            }
                            Err(e) => Piece::Missing(e),
                        },
                        other => other,
                    });
                    if bytes >= READ_AHEAD_BYTES {
                        bytes = 0;
                        if tx.send(std::mem::take(&mut ready)).is_err() {
                            return;
                        }
                    }
                }
                // The producer sent these now for a reason (it waits for the network next).
                if !ready.is_empty() && tx.send(std::mem::take(&mut ready)).is_err() {
                    return;
                }
                bytes = 0;
            }
        });
        ReadAhead { rx: out, reader: Some(reader) }
    }
}

impl Iterator for ReadAhead {
    type Item = Vec<Piece>;

    fn next(&mut self) -> Option<Vec<Piece>> {
        self.rx.recv().ok()
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        // Its sender is gone once the writer stops listening: the reader ends at its next send.
        let (_, gone) = std::sync::mpsc::sync_channel(0);
        drop(std::mem::replace(&mut self.rx, gone));
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// Verified files waiting to be made durable and renamed into place together: one sync of the
/// batch instead of two fsyncs per file, which is what makes many small files fast.
#[derive(Default)]
struct Batch {
    jobs: Vec<usize>,
    temps: Vec<Box<dyn crate::fs::TempFile>>,
    bytes: u64,
}

impl Batch {
    // Each waiting file holds an open handle: stay far below the usual 1024-descriptor limit.
    const MAX_FILES: usize = 128;
    const MAX_BYTES: u64 = 64 << 20;

    fn push(&mut self, job: usize, w: FileWriter, size: u64) {
        self.jobs.push(job);
        self.temps.push(w.tmp);
        self.bytes += size;
    }

    fn full(&self) -> bool {
        self.jobs.len() >= Self::MAX_FILES || self.bytes >= Self::MAX_BYTES
    }

    /// Syncs the contents, renames each file into place (if its destination is still what the
    /// scan saw), then makes the renames durable. Results are final only after that.
    fn install(
        &mut self,
        fs: &dyn Filesystem,
        jobs: &[DownloadJob],
        results: &mut [DownloadResult],
        device_name: &str,
        now_unix: i64,
    ) {
        let ids = std::mem::take(&mut self.jobs);
        let mut temps = std::mem::take(&mut self.temps);
        self.bytes = 0;
        if ids.is_empty() {
            return;
        }
        let started = tokio::time::Instant::now();
        let synced = fs.sync_temps(&mut temps);
        tracing::debug!(files = ids.len(), ms = started.elapsed().as_millis() as u64, "made downloaded files durable");
        if let Err(e) = synced {
            for i in ids {
                results[i] = DownloadResult::Failed(format!("{}: {}", jobs[i].path, super::describe_io(&e)));
            }
            return;
        }
        let mut dirs = Vec::new();
        let mut installed = Vec::new();
        for (i, tmp) in ids.into_iter().zip(temps) {
            match install(fs, tmp, &jobs[i], device_name, now_unix) {
                Ok(r) => {
                    dirs.push(jobs[i].path.parent());
                    installed.push((i, r));
                }
                Err(e) => results[i] = DownloadResult::Failed(e),
            }
        }
        match fs.sync_renames(&dirs) {
            Ok(()) => installed.into_iter().for_each(|(i, r)| results[i] = r),
            // In place but perhaps not durable: no base is recorded, so the next pass checks them.
            Err(e) => installed.into_iter().for_each(|(i, _)| {
                results[i] = DownloadResult::Failed(format!("{}: {}", jobs[i].path, super::describe_io(&e)))
            }),
        }
    }
}

/// Renames one verified, durable temporary file into place — only over what the scan saw;
/// anything else is a local change made meanwhile, kept as a conflict copy first.
fn install(
    fs: &dyn Filesystem,
    tmp: Box<dyn crate::fs::TempFile>,
    job: &DownloadJob,
    device_name: &str,
    now_unix: i64,
) -> Result<DownloadResult, String> {
    let p = &job.path;
    let now = fs.stat(p).map_err(|e| format!("{p}: {}", super::describe_io(&e)))?;
    let move_aside = || super::keep_as_conflict_copy(fs, p, device_name, now_unix);
    let mut conflict = None;
    if !stat_matches(now.as_ref(), job.expect_local.as_ref()) {
        // A file or a directory the plan did not know of (made meanwhile, or one the ignore
        // rules leave alone): it moves aside whole, with whatever is in it.
        if now.is_some() {
            conflict = Some(move_aside()?);
        }
    } else if now.is_some_and(|s| s.kind == StatKind::Dir) {
        // The planner replaces a directory by a file only once it has emptied it of what it
        // syncs; what is left (files the ignore rules leave alone, or made meanwhile) is kept
        // with the directory as a conflict copy.
        match fs.remove_dir(p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty => conflict = Some(move_aside()?),
            Err(e) => return Err(format!("{p}: replacing the folder by a file: {}", super::describe_io(&e))),
        }
    }
    tmp.persist_deferred(p).map_err(|e| format!("{p}: {}", super::describe_io(&e)))?;
    let stat = fs
        .stat(p)
        .map_err(|e| format!("{p}: {}", super::describe_io(&e)))?
        .ok_or_else(|| format!("{p} vanished; FileSync will look again"))?;
    Ok(DownloadResult::Done { stat, conflict })
}

pub(super) fn read_local(fs: &dyn Filesystem, l: &LocalChunk, want: &Hash) -> Result<Vec<u8>, String> {
    let mut f = fs.open(&l.path).map_err(|e| format!("reading {}: {}", l.path, super::describe_io(&e)))?;
    f.seek(SeekFrom::Start(l.offset)).map_err(|e| format!("reading {}: {}", l.path, super::describe_io(&e)))?;
    let mut buf = vec![0u8; l.len as usize];
    f.read_exact(&mut buf).map_err(|e| format!("reading {}: {}", l.path, super::describe_io(&e)))?;
    if Hash::of(&buf) != *want {
        return Err(format!("{} changed while its chunks were reused; will retry", l.path));
    }
    Ok(buf)
}

struct FileWriter {
    tmp: Box<dyn crate::fs::TempFile>,
    written: u64,
}

/// Creates every missing ancestor directory of `path`.
pub(super) fn ensure_parents(fs: &dyn Filesystem, path: &RelPath) -> Result<(), String> {
    let mut missing: Vec<&str> = Vec::new();
    for a in path.ancestors() {
        let p = RelPath::new(a).expect("ancestor of a valid path is valid");
        match fs.stat(&p) {
            Ok(Some(s)) if s.kind == StatKind::Dir => break,
            Ok(Some(_)) => return Err(format!("{a} is in the way of {path}: it is not a directory")),
            Ok(None) => missing.push(a),
            Err(e) => return Err(format!("{a}: {}", super::describe_io(&e))),
        }
    }
    for a in missing.into_iter().rev() {
        let p = RelPath::new(a).expect("valid");
        fs.create_dir(&p).map_err(|e| format!("creating the folder {a}: {}", super::describe_io(&e)))?;
    }
    Ok(())
}

impl FileWriter {
    fn start(fs: &dyn Filesystem, job: &DownloadJob) -> Result<FileWriter, String> {
        ensure_parents(fs, &job.path)?;
        let parent = job.path.parent();
        let tmp = fs
            .create_temp(parent.as_ref())
            .map_err(|e| format!("creating a temporary file for {}: {}", job.path, super::describe_io(&e)))?;
        Ok(FileWriter { tmp, written: 0 })
    }

    fn write(&mut self, data: &[u8]) -> Result<(), String> {
        let before = self.written;
        self.written += data.len() as u64;
        self.tmp.write_all(data).map_err(|e| format!("writing: {}", super::describe_io(&e)))?;
        if self.written / WRITEBACK_EVERY > before / WRITEBACK_EVERY {
            self.tmp.start_writeback();
        }
        Ok(())
    }

    /// Checks the whole file against its entry and applies its times and mode. Each chunk was
    /// verified as it came, so the content is right if the sizes agree and the entry's hash is
    /// that of its chunk list (as every entry from the server is; checked again as it is cheap).
    fn verified(mut self, job: &DownloadJob) -> Result<FileWriter, String> {
        if self.written != job.meta.size || filesync_core::file_hash(&job.meta.chunks) != job.meta.hash {
            return Err(format!("{}: downloaded content does not match its hash; will retry", job.path));
        }
        let p = &job.path;
        self.tmp
            .set_times_and_mode(job.meta.mtime_ns, job.meta.executable)
            .map_err(|e| format!("{p}: {}", super::describe_io(&e)))?;
        Ok(self)
    }
}

/// Index of chunks readable from local files that are unchanged since their last sync.
pub fn local_chunk_index<'a>(
    files: impl Iterator<Item = (&'a RelPath, &'a FileMeta)>,
    wanted: &std::collections::HashSet<Hash>,
) -> HashMap<Hash, LocalChunk> {
    let mut idx = HashMap::new();
    for (path, meta) in files {
        for (off, c) in chunk_offsets(&meta.chunks) {
            if wanted.contains(&c.hash) && !idx.contains_key(&c.hash) {
                idx.insert(c.hash, LocalChunk { path: path.clone(), offset: off, len: c.len });
            }
        }
    }
    idx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memfs::MemFs;

    /// What the writer gets, in short: S(tart), D(ata) with its length, M(issing) with why, E(nd).
    fn shown(pieces: &[Piece]) -> Vec<String> {
        pieces
            .iter()
            .map(|p| match p {
                Piece::Start(i) => format!("S{i}"),
                Piece::Data(d) => format!("D{}", d.len()),
                Piece::Local(..) => "L".into(),
                Piece::Missing(why) => format!("M {why}"),
                Piece::End => "E".into(),
            })
            .collect()
    }

    #[test]
    fn read_ahead_hands_the_writer_local_chunks_as_verified_data_in_order() {
        const MIB: usize = 1 << 20;
        let data = filesync_core::testdata::random_bytes(15 * MIB, 3);
        let fs = MemFs::new();
        fs.write("old.bin", &data);
        let at = |i: usize| LocalChunk {
            path: RelPath::new("old.bin").unwrap(),
            offset: (i * 5 * MIB) as u64,
            len: 5 << 20,
        };
        let hash = |i: usize| Hash::of(&data[i * 5 * MIB..(i + 1) * 5 * MIB]);
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        tx.blocking_send(vec![Piece::Start(0), Piece::Local(hash(0), at(0)), Piece::Data(Bytes::from_static(b"new"))])
            .unwrap();
        // The copy here no longer holds the second chunk (it changed since the scan).
        tx.blocking_send(vec![Piece::Local(hash(2), at(1)), Piece::Local(hash(2), at(2)), Piece::End]).unwrap();
        drop(tx);

        let out: Vec<Piece> = ReadAhead::start(Arc::new(fs), rx).flatten().collect();
        let shown = shown(&out);
        assert_eq!(shown.len(), 6, "{shown:?}");
        assert_eq!(shown[..3], ["S0", "D5242880", "D3"]);
        assert!(shown[3].starts_with("M ") && shown[3].contains("changed while its chunks were reused"), "{shown:?}");
        assert_eq!(shown[4..], ["D5242880", "E"]);
        let Piece::Data(first) = &out[1] else { unreachable!() };
        assert_eq!(first[..], data[..5 * MIB]);
    }

    #[test]
    fn read_ahead_stops_when_the_writer_stops_listening() {
        let fs = MemFs::new();
        fs.write("old.bin", vec![1u8; 64]);
        let l = LocalChunk { path: RelPath::new("old.bin").unwrap(), offset: 0, len: 64 };
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        for _ in 0..64 {
            tx.blocking_send(vec![Piece::Local(Hash::of(&[1u8; 64]), l.clone())]).unwrap();
        }
        let mut pieces = ReadAhead::start(Arc::new(fs), rx);
        assert!(pieces.next().is_some());
        // Dropping it joins the reader, which must not wait for the producer's end.
        drop(pieces);
        drop(tx);
    }
}
