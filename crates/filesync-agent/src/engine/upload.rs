//! Uploads and remote deletions: ask the server which chunks it lacks, send only those (read
//! straight from the local files and re-verified, many requests in flight), then commit the
//! changes in batches, each based on the rev this computer last synced.

use super::server::{Announced, Change, ChunkUpload, Committed, ServerApi};
use super::{SyncError, chunk_offsets};
use crate::fs::{Filesystem, Stat};
use crate::status::Progress;
use bytes::Bytes;
use filesync_core::{ChunkRef, EntryKind, EntryState, FileMeta, Hash, RelPath};
use filesync_proto::limits;
use futures::{StreamExt, TryStreamExt};
use std::collections::{HashMap, HashSet};
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;
use std::sync::atomic::Ordering;

const QUERY_CONCURRENCY: usize = 4;

/// Sends one batch of chunks: the bytes sent, and the chunks the server refused with its
/// reason. When it refuses the batch, each chunk is sent alone, so that one it will not take
/// costs only the files that need it. Fails only when the connection is lost.
pub(super) async fn put_batch(conn: &dyn ServerApi, batch: Vec<ChunkUpload>) -> Result<(u64, Vec<Refused>), SyncError> {
    let bytes: u64 = batch.iter().map(|c| c.data.len() as u64).sum();
    match conn.put_chunks(batch.clone()).await {
        Ok(()) => Ok((bytes, Vec::new())),
        Err(e) if super::connection_lost(&e) => Err(e),
        // Over the quota, every chunk would be refused alike: do not send them one by one.
        Err(e) if over_quota(&e) => {
            let why = Refusal { why: e.to_string(), over_quota: true };
            Ok((0, batch.iter().map(|c| (c.hash, why.clone())).collect()))
        }
        Err(e) if batch.len() == 1 => Ok((0, vec![(batch[0].hash, Refusal::other(&e))])),
        Err(e) => {
            tracing::warn!("the server refused a batch of {} chunks ({e}); sending each alone", batch.len());
            let (mut sent, mut refused) = (0, Vec::new());
            for c in batch {
                let (h, n) = (c.hash, c.data.len() as u64);
                match conn.put_chunks(vec![c]).await {
                    Ok(()) => sent += n,
                    Err(e) if super::connection_lost(&e) => return Err(e),
                    Err(e) => refused.push((h, Refusal::other(&e))),
                }
            }
            Ok((sent, refused))
        }
    }
}

/// Why the server refused a chunk.
#[derive(Clone, Debug)]
pub(super) struct Refusal {
    pub(super) why: String,
    /// The account is over its storage quota (`why` is the server's explanation).
    over_quota: bool,
}

impl Refusal {
    fn other(e: &SyncError) -> Refusal {
        Refusal { why: e.to_string(), over_quota: over_quota(e) }
    }
}

pub(super) type Refused = (Hash, Refusal);

fn over_quota(e: &SyncError) -> bool {
    matches!(e, SyncError::Client(c) if c.code() == Some(filesync_client::ErrorCode::QuotaExceeded))
}

/// One chunk read by the reader thread, or (upload index, reason) when reading failed.
type ChunkRead = Result<(Hash, Bytes), (usize, String)>;
const PUT_CONCURRENCY: usize = 4;

#[derive(Clone, Debug)]
pub struct UploadJob {
    pub path: RelPath,
    pub base_rev: u64,
    /// The local state to send (as scanned).
    pub meta: FileMeta,
    pub stat: Stat,
    /// The scan found the file racy (see [`crate::scan::is_racy`]).
    pub racy: bool,
    /// The chunks of the version this one replaces (empty if none): a changed chunk may
    /// travel as a delta from the old chunk at its place.
    pub previous: Vec<ChunkRef>,
}

#[derive(Clone, Debug)]
pub struct DeleteJob {
    pub path: RelPath,
    pub base_rev: u64,
}

#[derive(Debug)]
pub enum CommitOutcome {
    /// Accepted; the current entry afterwards.
    Accepted(Option<EntryState>),
    /// The server has a newer version; here it is.
    Conflict(Option<EntryState>),
    /// Not sent (for example the file changed while it was read); retried next pass.
    Failed(String),
}

/// Sends the uploads' missing chunks (paced by `throttle`), committing uploads in batches as
/// their chunks are stored, then the deletions. Returns one outcome per upload, then one per deletion, in the order given, the
/// chunk bytes sent, and whether the server refused chunks because the account is over its
/// storage quota (then no more batches are sent: files needing unsent chunks fail with the
/// server's explanation, which says how much is used of how much).
#[allow(clippy::too_many_arguments)]
pub async fn run(
    conn: &Arc<dyn ServerApi>,
    fs: Arc<dyn Filesystem>,
    folder_id: u64,
    uploads: &[UploadJob],
    deletes: &[DeleteJob],
    progress: &Progress,
    throttle: &super::throttle::Throttle,
    announce_min_bytes: u64,
) -> Result<(Vec<CommitOutcome>, u64, bool), SyncError> {
    let mut bytes_sent = 0u64;
    // The server's quota refusal, once one came: later batches are not sent.
    let quota_refusal: Arc<std::sync::Mutex<Option<Refusal>>> = Arc::default();
    // 1. Every distinct chunk, with one place to read it from.
    let mut first_source: HashMap<Hash, (usize, u64, u32)> = HashMap::new();
    let mut order: Vec<Hash> = Vec::new();
    for (i, u) in uploads.iter().enumerate() {
        if u.meta.kind != EntryKind::File {
            continue;
        }
        for (off, c) in chunk_offsets(&u.meta.chunks) {
            if let std::collections::hash_map::Entry::Vacant(e) = first_source.entry(c.hash) {
                e.insert((i, off, c.len));
                order.push(c.hash);
            }
        }
    }

    // 2. Which of them does the server lack?
    let query_batches: Vec<Vec<Hash>> = order.chunks(limits::MAX_HASHES_PER_REQUEST).map(<[Hash]>::to_vec).collect();
    let missing: Vec<Hash> = futures::stream::iter(query_batches.into_iter().map(|batch| {
        let conn = conn.clone();
        async move { conn.missing_chunks(batch).await }
    }))
    .buffered(QUERY_CONCURRENCY)
    .try_concat()
    .await?;
    let missing_bytes: u64 = missing.iter().map(|h| first_source[h].2 as u64).sum();
    progress.bytes_total.fetch_add(missing_bytes, Ordering::Relaxed);
    let similar = Arc::new(similar_chunks(uploads, &missing, &first_source));

    // Files are committed as soon as their chunks are on the server, in batches, so the
    // other computers start downloading while the rest is still being sent.
    let missing_set: HashSet<Hash> = missing.iter().copied().collect();
    let mut commits = Commits::new(uploads, deletes, &missing_set);
    let mut announcer = Announcer::start(conn, folder_id, uploads, &missing_set, announce_min_bytes);

    // 3. Read them on a blocking thread, send them in batches; commit what is complete.
    let mut failed: HashMap<usize, String> = HashMap::new();
    if !missing.is_empty() {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<ChunkRead>(64);
        let reads: Vec<(Hash, RelPath, u64, u32, usize)> = missing
            .iter()
            .map(|h| {
                let (i, off, len) = first_source[h];
                (*h, uploads[i].path.clone(), off, len, i)
            })
            .collect();
        let fs2 = fs.clone();
        let reader = tokio::task::spawn_blocking(move || read_chunks(&*fs2, reads, tx));
        let conn2 = conn.clone();
        let mut sent: HashSet<Hash> = HashSet::new();
        let batches = async_stream_batches(&mut rx, &mut failed, &mut sent);
        let mut put = Box::pin(
            batches
                .map(|b| {
                    let conn = conn2.clone();
                    let throttle = throttle.clone();
                    let quota_refusal = quota_refusal.clone();
                    let b: Vec<ChunkUpload> = b
                        .into_iter()
                        .map(|(hash, data)| ChunkUpload { hash, data, similar: similar.get(&hash).copied() })
                        .collect();
                    async move {
                        let hashes: Vec<Hash> = b.iter().map(|c| c.hash).collect();
                        let known = quota_refusal.lock().expect("quota lock").clone();
                        if let Some(why) = known {
                            return Ok((0, b.iter().map(|c| (c.hash, why.clone())).collect(), hashes));
                        }
                        let bytes: u64 = b.iter().map(|c| c.data.len() as u64).sum();
                        throttle.acquire(bytes).await;
                        let r = put_batch(&*conn, b).await.map(|(n, refused)| (n.min(bytes), refused, hashes));
                        if let Ok((_, refused, _)) = &r
                            && let Some((_, why)) = refused.iter().find(|(_, why)| why.over_quota)
                        {
                            quota_refusal.lock().expect("quota lock").get_or_insert_with(|| why.clone());
                        }
                        r
                    }
                })
                .buffer_unordered(PUT_CONCURRENCY),
        );
        // A chunk the server refuses costs only the files that need it.
        let mut refused: HashMap<Hash, Refusal> = HashMap::new();
        while let Some(r) = put.next().await {
            let (n, no, hashes) = r?;
            bytes_sent += n;
            progress.bytes_done.fetch_add(n, Ordering::Relaxed);
            let no_set: HashSet<Hash> = no.iter().map(|(h, _)| *h).collect();
            commits.stored(hashes.iter().filter(|h| !no_set.contains(h)));
            announcer.stored(uploads, &missing_set, hashes.iter().filter(|h| !no_set.contains(h)));
            refused.extend(no);
            // An announced file is committed as soon as it is whole: the other computers
            // have most of it already and finish it from the commit.
            if commits.ready_len() >= COMMIT_BATCH || commits.ready.iter().any(|i| announcer.announces(*i)) {
                announcer.flush().await;
                commits.commit_ready(&**conn, folder_id, progress).await?;
            }
        }
        drop(put);
        sent.retain(|h| !refused.contains_key(h));
        reader.await.map_err(|e| SyncError::Internal(format!("chunk reader panicked: {e}")))?;
        // A chunk shared by several files is read from one of them; if that read failed, no
        // file needing the chunk can be committed this pass.
        let unsent: HashSet<Hash> = missing.iter().filter(|h| !sent.contains(h)).copied().collect();
        if !unsent.is_empty() {
            for (i, u) in uploads.iter().enumerate() {
                if let Some(c) = u.meta.chunks.iter().find(|c| unsent.contains(&c.hash)) {
                    failed.entry(i).or_insert_with(|| match refused.get(&c.hash) {
                        // The server's words: how much is used of how much, and what to do.
                        Some(r) if r.over_quota => r.why.clone(),
                        Some(r) => format!("{}: the server refused part of it ({}); will retry", u.path, r.why),
                        None => format!("{}: a chunk could not be read; will retry", u.path),
                    });
                }
            }
        }
    }

    // 4. Commit the rest: every upload whose chunks are on the server, then the deletions.
    announcer.flush().await;
    for (i, reason) in failed {
        commits.outcomes[i] = Some(CommitOutcome::Failed(reason));
    }
    commits.commit_ready(&**conn, folder_id, progress).await?;
    commits.commit_deletes(&**conn, folder_id, progress).await?;
    let over_quota = quota_refusal.lock().expect("quota lock").is_some();
    let outcomes = commits.outcomes.into_iter().map(|o| o.expect("every change has an outcome")).collect();
    Ok((outcomes, bytes_sent, over_quota))
}

/// Files committed together once their chunks are on the server: big enough that commits
/// stay few, small enough that the other computers start early.
const COMMIT_BATCH: usize = 500;

/// Files with at least this much content new to the server are announced as their chunks
/// reach it, so that the other computers fetch them while the upload goes on (protocol version
/// 4). A small edit of a big file is not: the other computers rebuild it from their own copy.
/// (`Engine::announce_min_bytes`; the simulation lowers it.)
pub const ANNOUNCE_MIN_BYTES: u64 = 16 * 1024 * 1024;

/// Announces the chunks of big uploads as they reach the server, in order from the start of
/// each file: the other computers fetch a file's chunks before its commit, into a hidden
/// partial download the commit's download then finishes (`engine::prefetch`). Announcements
/// go out one after another on their own task, so that sending chunks never waits for them.
struct Announcer {
    /// Per announced upload: its index, and how many chunks from its start are announced.
    files: Vec<(usize, usize)>,
    /// Missing chunks stored so far.
    stored: HashSet<Hash>,
    folder_id: u64,
    /// Where announcements go (`None`: nothing to announce, or a server that is not told).
    conn: Option<Arc<dyn ServerApi>>,
    /// The task sending them, and its queue, while it runs.
    sending: Option<(tokio::sync::mpsc::UnboundedSender<Announced>, tokio::task::JoinHandle<()>)>,
}

impl Announcer {
    fn start(
        conn: &Arc<dyn ServerApi>,
        folder_id: u64,
        uploads: &[UploadJob],
        missing: &HashSet<Hash>,
        min_bytes: u64,
    ) -> Announcer {
        let files: Vec<(usize, usize)> = uploads
            .iter()
            .enumerate()
            .filter(|(_, u)| u.meta.kind == EntryKind::File && u.meta.size >= min_bytes)
            .filter(|(_, u)| {
                let new: HashSet<&Hash> =
                    u.meta.chunks.iter().map(|c| &c.hash).filter(|h| missing.contains(*h)).collect();
                let new_bytes: u64 =
                    u.meta.chunks.iter().filter(|c| new.contains(&c.hash)).map(|c| u64::from(c.len)).sum();
                new_bytes >= min_bytes
            })
            .map(|(i, _)| (i, 0))
            .collect();
        let mut a = Announcer { files, stored: HashSet::new(), folder_id, conn: None, sending: None };
        if a.files.is_empty() || !conn.announces() {
            a.files.clear();
            return a;
        }
        a.conn = Some(conn.clone());
        // What the server has already (another copy of the content) is there to fetch now.
        a.stored(uploads, missing, std::iter::empty());
        a
    }

    /// Queues an announcement for the sending task, started if it is not running.
    fn send(&mut self, chunks: Announced) {
        let Some(conn) = &self.conn else { return };
        let (tx, _) = self.sending.get_or_insert_with(|| {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Announced>();
            let conn = conn.clone();
            let task = tokio::spawn(async move {
                while let Some(chunks) = rx.recv().await {
                    if let Err(e) = conn.announce(chunks).await {
                        tracing::debug!("announcing an upload failed: {e}");
                        break;
                    }
                }
            });
            (tx, task)
        });
        let _ = tx.send(chunks);
    }

    /// These missing chunks are on the server now: announce what that adds to each file's
    /// stored start.
    fn stored<'h>(&mut self, uploads: &[UploadJob], missing: &HashSet<Hash>, hashes: impl Iterator<Item = &'h Hash>) {
        if self.conn.is_none() {
            return;
        }
        self.stored.extend(hashes);
        let mut out = Vec::new();
        for (i, done) in &mut self.files {
            let u = &uploads[*i];
            let chunks = &u.meta.chunks;
            let on_server = |h: &Hash| !missing.contains(h) || self.stored.contains(h);
            let end = *done + chunks[*done..].iter().take_while(|c| on_server(&c.hash)).count();
            let upload = Announced {
                folder_id: self.folder_id,
                path: u.path.clone(),
                upload: u64::from_le_bytes(u.meta.hash.as_bytes()[..8].try_into().expect("8 bytes")),
                size: u.meta.size,
                first: 0,
                chunks: Vec::new(),
                total: chunks.len() as u32,
                device_id: 0,
            };
            out.extend(upload.parts(*done, &chunks[*done..end]));
            *done = end;
        }
        for a in out {
            self.send(a);
        }
    }

    /// Whether upload `i` is announced.
    fn announces(&self, i: usize) -> bool {
        self.files.iter().any(|(f, _)| *f == i)
    }

    /// Waits until every announcement queued is out: a commit comes after them.
    async fn flush(&mut self) {
        if let Some((tx, task)) = self.sending.take() {
            drop(tx);
            let _ = task.await;
        }
    }
}

/// Which uploads wait for which chunks, which are complete, and the outcome of each change.
struct Commits<'a> {
    uploads: &'a [UploadJob],
    deletes: &'a [DeleteJob],
    /// For each missing chunk, the uploads that need it.
    needed_by: HashMap<Hash, Vec<usize>>,
    /// Per upload, how many of its distinct missing chunks are not stored yet.
    waiting: Vec<usize>,
    /// Uploads whose chunks are all stored and that are not committed yet, in order.
    ready: Vec<usize>,
    /// One per upload, then one per deletion.
    outcomes: Vec<Option<CommitOutcome>>,
}

impl<'a> Commits<'a> {
    fn new(uploads: &'a [UploadJob], deletes: &'a [DeleteJob], missing: &HashSet<Hash>) -> Commits<'a> {
        let mut needed_by: HashMap<Hash, Vec<usize>> = HashMap::new();
        let mut waiting = vec![0; uploads.len()];
        for (i, u) in uploads.iter().enumerate() {
            if u.meta.kind != EntryKind::File {
                continue;
            }
            let distinct: HashSet<Hash> =
                u.meta.chunks.iter().map(|c| c.hash).filter(|h| missing.contains(h)).collect();
            waiting[i] = distinct.len();
            for h in distinct {
                needed_by.entry(h).or_default().push(i);
            }
        }
        let ready = (0..uploads.len()).filter(|&i| waiting[i] == 0).collect();
        let outcomes = (0..uploads.len() + deletes.len()).map(|_| None).collect();
        Commits { uploads, deletes, needed_by, waiting, ready, outcomes }
    }

    /// These chunks are on the server now.
    fn stored<'h>(&mut self, hashes: impl Iterator<Item = &'h Hash>) {
        for h in hashes {
            for i in self.needed_by.remove(h).unwrap_or_default() {
                self.waiting[i] -= 1;
                if self.waiting[i] == 0 {
                    self.ready.push(i);
                }
            }
        }
    }

    fn ready_len(&self) -> usize {
        self.ready.len()
    }

    /// Commits the complete uploads not committed yet (and not failed).
    async fn commit_ready(
        &mut self,
        conn: &dyn ServerApi,
        folder_id: u64,
        progress: &Progress,
    ) -> Result<(), SyncError> {
        let ready: Vec<usize> =
            std::mem::take(&mut self.ready).into_iter().filter(|&i| self.outcomes[i].is_none()).collect();
        let changes = ready
            .iter()
            .map(|&i| {
                let u = &self.uploads[i];
                Change { path: u.path.clone(), base_rev: u.base_rev, meta: Some(u.meta.clone()) }
            })
            .collect();
        self.commit(conn, folder_id, ready, changes, progress).await
    }

    async fn commit_deletes(
        &mut self,
        conn: &dyn ServerApi,
        folder_id: u64,
        progress: &Progress,
    ) -> Result<(), SyncError> {
        let n = self.uploads.len();
        let idx = (n..n + self.deletes.len()).collect();
        let changes =
            self.deletes.iter().map(|d| Change { path: d.path.clone(), base_rev: d.base_rev, meta: None }).collect();
        self.commit(conn, folder_id, idx, changes, progress).await
    }

    async fn commit(
        &mut self,
        conn: &dyn ServerApi,
        folder_id: u64,
        idx: Vec<usize>,
        changes: Vec<Change>,
        progress: &Progress,
    ) -> Result<(), SyncError> {
        if changes.is_empty() {
            return Ok(());
        }
        let n = changes.len();
        let answers = conn.commit(folder_id, changes).await?;
        if answers.len() != n {
            return Err(SyncError::Protocol(format!("a commit of {n} changes got {} answers", answers.len())));
        }
        for (i, a) in idx.into_iter().zip(answers) {
            self.outcomes[i] = Some(match a {
                Committed::Accepted(current) => CommitOutcome::Accepted(current),
                Committed::Conflict(current) => CommitOutcome::Conflict(current),
            });
            progress.files_done.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// For each missing chunk, the chunk of the replaced version at its place (see
/// [`super::ChunkLayout`]), when there is one the server should have.
fn similar_chunks(
    uploads: &[UploadJob],
    missing: &[Hash],
    first_source: &HashMap<Hash, (usize, u64, u32)>,
) -> HashMap<Hash, Hash> {
    let mut layouts: HashMap<usize, super::ChunkLayout<'_>> = HashMap::new();
    let mut out = HashMap::new();
    for h in missing {
        let (i, off, len) = first_source[h];
        if uploads[i].previous.is_empty() {
            continue;
        }
        let layout = layouts.entry(i).or_insert_with(|| super::ChunkLayout::new(&uploads[i].previous));
        if let Some((_, c)) = layout.most_overlapping(off, len) {
            out.insert(*h, c.hash);
        }
    }
    out
}

/// Groups the reader's chunks into `PutChunks`-sized batches, noting failed reads.
fn async_stream_batches<'a>(
    rx: &'a mut tokio::sync::mpsc::Receiver<ChunkRead>,
    failed: &'a mut HashMap<usize, String>,
    sent: &'a mut HashSet<Hash>,
) -> impl futures::Stream<Item = Vec<(Hash, Bytes)>> + 'a {
    futures::stream::unfold((rx, failed, sent), |(rx, failed, sent)| async move {
        let mut batch: Vec<(Hash, Bytes)> = Vec::new();
        let mut size = 0usize;
        loop {
            // Flush a partial batch rather than wait when the reader is slower than the network.
            match rx.recv().await {
                Some(Ok((h, d))) => {
                    sent.insert(h);
                    size += d.len();
                    batch.push((h, d));
                    if size >= limits::MAX_CHUNK_BYTES_PER_MESSAGE - filesync_core::chunking::MAX_CHUNK as usize
                        || batch.len() >= limits::MAX_HASHES_PER_REQUEST
                    {
                        return Some((batch, (rx, failed, sent)));
                    }
                }
                Some(Err((i, reason))) => {
                    failed.insert(i, reason);
                }
                None => {
                    return if batch.is_empty() { None } else { Some((batch, (rx, failed, sent))) };
                }
            }
        }
    })
}

fn read_chunks(
    fs: &dyn Filesystem,
    reads: Vec<(Hash, RelPath, u64, u32, usize)>,
    tx: tokio::sync::mpsc::Sender<ChunkRead>,
) {
    let mut open: Option<(RelPath, Box<dyn crate::fs::ReadSeek>)> = None;
    let mut bad: HashSet<usize> = HashSet::new();
    for (hash, path, off, len, job) in reads {
        if bad.contains(&job) {
            continue;
        }
        let r = (|| -> Result<Bytes, String> {
            if open.as_ref().map(|(p, _)| p) != Some(&path) {
                let f = fs.open(&path).map_err(|e| format!("{path}: {}", super::describe_io(&e)))?;
                open = Some((path.clone(), f));
            }
            let f = &mut open.as_mut().expect("just opened").1;
            f.seek(SeekFrom::Start(off)).map_err(|e| format!("{path}: {}", super::describe_io(&e)))?;
            let mut buf = vec![0u8; len as usize];
            f.read_exact(&mut buf).map_err(|e| format!("{path}: {}", super::describe_io(&e)))?;
            if Hash::of(&buf) != hash {
                return Err(format!("{path} changed while it was being uploaded; will retry"));
            }
            Ok(Bytes::from(buf))
        })();
        let msg = match r {
            Ok(d) => Ok((hash, d)),
            Err(e) => {
                bad.insert(job);
                Err((job, e))
            }
        };
        if tx.blocking_send(msg).is_err() {
            return;
        }
    }
}
