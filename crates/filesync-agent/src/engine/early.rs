//! Read once: the chunks of a big file new here go to the server while the scan reads them,
//! rather than after the pass has planned its upload (which would read the file a second
//! time). The scan hands each chunk of such a file to [`Early`] (a [`ChunkSink`]); a task asks
//! the server which it lacks and sends those, several requests in flight, paced by the
//! folder's upload limit; the pass waits for it before planning, so the upload that follows
//! finds the chunks stored and only commits the file.
//!
//! With a server that relays them (protocol version 4), the chunks stored are announced as
//! they go once the file has brought at least the announcing threshold of content new to the
//! server (as `upload::Announcer` does), so the other computers fetch the file while it is
//! still being read here (`prefetch.rs`). Until the scan has read the whole file, an
//! announcement's `total` is the most chunks a file of its size can have, and the last chunk
//! stored is held back; the last announcement, once the file is read whole, carries the true
//! count.
//!
//! Sending early is an optimisation only: nothing is committed here, a chunk the server
//! refuses stops it (the upload reports why), and chunks of a file that changed while it was
//! read are simply not announced further (the server forgets unused chunks after a day). The
//! chunk at the end of a file goes only once the file was read whole: a file still being
//! written would otherwise send a chunk cut at wherever the writer was.

use super::server::{Announced, ServerApi};
use super::throttle::Throttle;
use crate::filter::Excluded;
use crate::scan::{ChunkSink, FileChunks};
use bytes::Bytes;
use filesync_core::{ChunkRef, RelPath};
use filesync_proto::limits;
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::mpsc;
use tracing::debug;

/// Chunks the scan may read ahead of the sending (each at most 4 MiB).
const QUEUE: usize = 16;
/// `PutChunks` requests in flight at once.
const CONCURRENCY: usize = 4;

/// Takes the chunks of new files from the scan (see the module's comment).
pub(super) struct Early {
    tx: mpsc::Sender<Msg>,
    min_bytes: u64,
    min_chunk: u32,
    excluded: Excluded,
}

/// What the scan hands over.
enum Msg {
    Chunk(Arc<File>, ChunkRef, Bytes),
    End(Arc<File>, bool),
}

/// A file being read.
struct File {
    path: RelPath,
    size: u64,
    /// Names this upload in announcements.
    upload: u64,
    /// The most chunks the file can have (`total` until it is read whole).
    most: u32,
    /// The server has some of its chunks already: a copy, or a new version of a file it
    /// has (saved under another name and renamed over it, as editors do). Its new chunks are
    /// left to the upload, which may send them as deltas; nothing more of it is sent here.
    known: std::sync::atomic::AtomicBool,
}

impl File {
    fn known(&self) -> bool {
        self.known.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Where to send, and how.
pub(super) struct Target {
    pub server: Arc<dyn ServerApi>,
    pub folder_id: u64,
    pub throttle: Throttle,
}

impl Early {
    /// Starts the sending task for files of at least `min_bytes`; the task ends once the
    /// returned `Early` is dropped and everything handed to it is sent, returning the bytes it
    /// sent.
    pub(super) fn start(
        target: Target,
        min_bytes: u64,
        min_chunk: u32,
        excluded: Excluded,
    ) -> (Early, tokio::task::JoinHandle<u64>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let task = tokio::spawn(send_all(target, rx, min_bytes));
        (Early { tx, min_bytes, min_chunk: min_chunk.max(1), excluded }, task)
    }
}

impl ChunkSink for Early {
    fn open(&self, path: &RelPath, size: u64) -> Option<Box<dyn FileChunks + '_>> {
        if size < self.min_bytes || self.excluded.covers(path) || self.tx.is_closed() {
            return None;
        }
        let most = u32::try_from(size / u64::from(self.min_chunk) + 1).unwrap_or(u32::MAX);
        let file = File { path: path.clone(), size, upload: rand::random(), most, known: Default::default() };
        Some(Box::new(Reading { tx: &self.tx, file: Arc::new(file), last: None, open: true }))
    }
}

/// One file's chunks on their way to the sending task.
struct Reading<'a> {
    tx: &'a mpsc::Sender<Msg>,
    file: Arc<File>,
    /// The chunk read last, held back until the next one comes or the file was read whole.
    last: Option<(ChunkRef, Bytes)>,
    /// The task still takes chunks (it stops at the first failure).
    open: bool,
}

impl Reading<'_> {
    fn send(&mut self, msg: Msg) {
        self.open = self.open && self.tx.blocking_send(msg).is_ok();
    }
}

impl FileChunks for Reading<'_> {
    fn chunk(&mut self, chunk: ChunkRef, data: &[u8]) {
        if !self.open || self.file.known() {
            return;
        }
        if let Some((c, d)) = self.last.replace((chunk, Bytes::copy_from_slice(data))) {
            self.send(Msg::Chunk(self.file.clone(), c, d));
        }
    }

    fn end(mut self: Box<Self>, whole: bool) {
        if let Some((c, d)) = self.last.take().filter(|_| whole && !self.file.known()) {
            self.send(Msg::Chunk(self.file.clone(), c, d));
        }
        let file = self.file.clone();
        self.send(Msg::End(file, whole));
    }
}

/// What the sending task keeps per file: the chunks stored, the bytes of those the server
/// lacked, and how many chunks are announced.
#[derive(Default)]
struct Stored {
    chunks: Vec<ChunkRef>,
    new_bytes: u64,
    announced: usize,
    /// A chunk after `chunks` is not on the server: nothing more of the file is announced.
    cut: bool,
}

/// A request in flight, in the order the scan handed its chunks over.
enum Done {
    /// Each chunk, and whether it was sent (`Some(true)`), was there already (`Some(false)`)
    /// or is not on the server (`None`); the bytes sent.
    Stored(Vec<(Arc<File>, ChunkRef, Option<bool>)>, u64),
    End(Arc<File>, bool),
    Failed(String),
}

async fn send_all(target: Target, mut rx: mpsc::Receiver<Msg>, min_bytes: u64) -> u64 {
    let announce = target.server.announces();
    let target = Arc::new(target);
    let mut batch: Vec<(Arc<File>, ChunkRef, Bytes)> = Vec::new();
    let mut batch_bytes = 0usize;
    let mut inflight = FuturesOrdered::new();
    let mut files: HashMap<u64, Stored> = HashMap::new();
    let mut failed: Option<String> = None;
    let mut sent = 0u64;
    let mut announcer = Announcer { target: target.clone(), on: announce, min_bytes };
    let mut open = true;
    while open || !inflight.is_empty() {
        // Stored chunks are announced before more is sent: the same order of requests on
        // every run of a simulation.
        tokio::select! {
            biased;
            Some(done) = inflight.next(), if !inflight.is_empty() => match done {
                Done::Stored(chunks, bytes) => {
                    sent += bytes;
                    if failed.is_some() {
                        continue; // an earlier batch is missing: nothing after it is announced
                    }
                    let mut grown = Vec::new();
                    for (file, chunk, sent) in chunks {
                        let stored = files.entry(file.upload).or_default();
                        match sent {
                            _ if stored.cut => continue,
                            Some(new) => {
                                stored.chunks.push(chunk);
                                stored.new_bytes += if new { u64::from(chunk.len) } else { 0 };
                            }
                            // The stored start of the file ends here.
                            None => stored.cut = true,
                        }
                        if grown.last().is_none_or(|f: &Arc<File>| f.upload != file.upload) {
                            grown.push(file);
                        }
                    }
                    for file in grown {
                        announcer.announce(&file, files.entry(file.upload).or_default(), false).await;
                    }
                }
                Done::End(file, whole) => {
                    let stored = files.remove(&file.upload).unwrap_or_default();
                    if whole && failed.is_none() && !stored.cut {
                        let mut stored = stored;
                        announcer.announce(&file, &mut stored, true).await;
                    }
                }
                Done::Failed(why) => {
                    if failed.is_none() {
                        debug!("stopped sending new files as they are read: {why}");
                    }
                    failed = Some(why);
                    batch.clear();
                    batch_bytes = 0;
                }
            },
            msg = rx.recv(), if open && inflight.len() < CONCURRENCY => match msg {
                // Once a request failed, what still comes is dropped: the scan must not wait.
                Some(_) if failed.is_some() => {}
                Some(Msg::Chunk(file, chunk, data)) => {
                    if batch_bytes + data.len() > limits::MAX_CHUNK_BYTES_PER_MESSAGE && !batch.is_empty() {
                        inflight.push_back(put(target.clone(), std::mem::take(&mut batch)));
                        batch_bytes = 0;
                    }
                    batch_bytes += data.len();
                    batch.push((file, chunk, data));
                }
                Some(Msg::End(file, whole)) => {
                    if !batch.is_empty() {
                        inflight.push_back(put(target.clone(), std::mem::take(&mut batch)));
                        batch_bytes = 0;
                    }
                    inflight.push_back(Box::pin(async move { Done::End(file, whole) }));
                }
                None => {
                    open = false;
                    if !batch.is_empty() && failed.is_none() {
                        inflight.push_back(put(target.clone(), std::mem::take(&mut batch)));
                    }
                }
            },
        }
    }
    sent
}

/// Asks which chunks of `batch` the server lacks, and sends those.
fn put(
    target: Arc<Target>,
    batch: Vec<(Arc<File>, ChunkRef, Bytes)>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Done> + Send>> {
    Box::pin(async move {
        let hashes = batch.iter().map(|(_, c, _)| c.hash).collect();
        let missing = match target.server.missing_chunks(hashes).await {
            Ok(m) => m,
            Err(e) => return Done::Failed(e.to_string()),
        };
        let missing: std::collections::HashSet<_> = missing.into_iter().collect();
        for (file, chunk, _) in &batch {
            if !missing.contains(&chunk.hash) {
                file.known.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let mut upload = Vec::new();
        let mut chunks = Vec::with_capacity(batch.len());
        for (file, chunk, data) in batch {
            let sent = match missing.contains(&chunk.hash) {
                false => Some(false),
                true if file.known() => None,
                true => {
                    if !upload.iter().any(|u: &super::server::ChunkUpload| u.hash == chunk.hash) {
                        upload.push(super::server::ChunkUpload { hash: chunk.hash, data, similar: None });
                    }
                    Some(true)
                }
            };
            chunks.push((file, chunk, sent));
        }
        let bytes: u64 = upload.iter().map(|u| u.data.len() as u64).sum();
        if !upload.is_empty() {
            target.throttle.acquire(bytes).await;
            match super::upload::put_batch(&*target.server, upload).await {
                Ok((_, refused)) if refused.is_empty() => {}
                Ok((_, refused)) => return Done::Failed(format!("the server refused a chunk: {}", refused[0].1.why)),
                Err(e) => return Done::Failed(e.to_string()),
            }
        }
        Done::Stored(chunks, bytes)
    })
}

/// Announces the stored start of each file (protocol version 4).
struct Announcer {
    target: Arc<Target>,
    /// The server relays announcements, and none has failed.
    on: bool,
    /// Content new to the server a file must have brought before it is announced.
    min_bytes: u64,
}

impl Announcer {
    /// Announces what `stored` adds to the file's announced start: all of it once the file is
    /// read whole (`end`), else all but the last chunk, so that the last announcement, which
    /// says how many chunks the file has, is never empty.
    async fn announce(&mut self, file: &File, stored: &mut Stored, end: bool) {
        let upto = if end { stored.chunks.len() } else { stored.chunks.len().saturating_sub(1) };
        if !self.on || upto <= stored.announced || stored.new_bytes < self.min_bytes {
            return;
        }
        let upload = Announced {
            folder_id: self.target.folder_id,
            path: file.path.clone(),
            upload: file.upload,
            size: file.size,
            first: 0,
            chunks: Vec::new(),
            total: if end { stored.chunks.len() as u32 } else { file.most },
            device_id: 0,
        };
        for a in upload.parts(stored.announced, &stored.chunks[stored.announced..upto]) {
            if let Err(e) = self.target.server.announce(a).await {
                debug!("announcing a file as it is read failed: {e}");
                self.on = false;
                return;
            }
        }
        stored.announced = upto;
    }
}
