//! Fetching a file another computer is still uploading. The uploading computer announces the
//! chunks of a big file as they reach the server (`upload::Announcer`, protocol version 4);
//! here each announcement's chunks are fetched, verified, and appended to a hidden partial
//! download of the path (`download::Partials`), the kind a lost connection leaves. When the
//! file's commit arrives, its download resumes from that partial and fetches only what is
//! left, so the file lands about when its upload ends rather than a whole transfer later.
//!
//! Nothing a person sees changes before the commit: the partial is a hidden temporary file,
//! dropped by the download if the committed version does not start with its chunks. Which
//! announcements are worth it ([`wanted`]: not for a paused or upload-only folder, an excluded
//! or ignored path, or a path with a file here) is decided here, for the agent's folder task and
//! the simulation alike.

use super::Engine;
use super::server::{Announced, ChunkRequest};
use super::throttle::Throttle;
use crate::config::{Direction, FolderConfig};
use crate::filter::{Excluded, IgnoreRules};
use crate::fs::{Filesystem, StatKind};
use crate::status::Progress;
use filesync_core::ChunkRef;
use filesync_proto::limits;
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::debug;

/// How long a prefetch waits for the next announcement before it stops (the upload stalled or
/// was given up; what it fetched stays for the commit's download).
const IDLE: Duration = Duration::from_secs(60);
/// Fetched bytes between two fsyncs of the partial, so the download's final fsync finds
/// little left to write.
const DURABLE_EVERY: u64 = 64 * 1024 * 1024;
/// How long what a prefetch fetched waits for the file's commit before it is dropped.
pub const LINGER: Duration = Duration::from_secs(600);
/// `GetChunks` requests in flight at once.
const CONCURRENCY: usize = 4;

impl Engine {
    /// Fetches the announced chunks of one upload into a partial download of its path, in
    /// order, starting from `first` (which announces the file's first chunks) and going on
    /// with `more` until the file is complete, `more` closes (a newer upload of the path came)
    /// or stays quiet too long, an announcement is missed, or the download of the commit takes
    /// the partial over. Several requests are in flight at once, as in a download, so that it
    /// keeps up with the upload; `throttle` is the folder's download limit. What it fetched
    /// is dropped if no download takes it over within [`LINGER`].
    pub async fn prefetch(
        &self,
        folder: String,
        fs: Arc<dyn Filesystem>,
        first: Announced,
        more: mpsc::UnboundedReceiver<Announced>,
        throttle: Throttle,
        progress: Arc<Progress>,
    ) {
        let path = first.path.clone();
        let have = self.fetch_ahead(&folder, fs, first, more, throttle, &progress).await;
        if have.is_empty() {
            return;
        }
        // An upload given up (the file deleted before its commit, say) never sends the commit
        // that would take this partial: it is not left behind as a hidden file for long.
        tokio::time::sleep(LINGER).await;
        if let Some(p) = self.partials.take_if_unchanged(&folder, &path, &have) {
            debug!(folder, path = %path, "dropped a prefetched file whose commit never came");
            super::download::drop_blocking(vec![p]).await;
        }
    }

    /// The fetching part of [`Engine::prefetch`]: returns the chunks appended to the partial
    /// download of the path (from the file's start). `progress` counts the file's bytes
    /// fetched, as a download's does.
    pub async fn fetch_ahead(
        &self,
        folder: &str,
        fs: Arc<dyn Filesystem>,
        first: Announced,
        more: mpsc::UnboundedReceiver<Announced>,
        throttle: Throttle,
        progress: &Progress,
    ) -> Vec<ChunkRef> {
        let path = first.path.clone();
        progress.start("downloading", 1, first.size);
        progress.plan(0, 0, 1, first.size);
        progress.set_current(Some(path.as_str()));
        if !parent_is_here(&*fs, &first) {
            debug!(folder, path = %path, "not prefetching: its folder is not on this computer yet");
            return Vec::new();
        }
        // Its file's download (the commit came) or deletion ends it: the announcements of the
        // upload's end may never come.
        let fetching = Arc::new(self.partials.start_fetch(folder, &path));
        let ended = fetching.clone();
        let announcements = futures::stream::unfold((Some(first), more), move |(next, mut more)| {
            let ended = ended.clone();
            async move {
                let a = match next {
                    Some(a) => a,
                    None => tokio::select! {
                        biased;
                        a = tokio::time::timeout(IDLE, more.recv()) => a.ok().flatten()?,
                        () = ended.ended() => return None,
                    },
                };
                Some((a, (None, more)))
            }
        });
        let server = self.server.clone();
        let fetched = announcements
            .flat_map(|a| futures::stream::iter(by_message(&a)))
            .map(move |b| {
                let server = server.clone();
                let throttle = throttle.clone();
                async move {
                    throttle.acquire(b.chunks.iter().map(|c| u64::from(c.len)).sum()).await;
                    let wanted = b.chunks.iter().map(|c| ChunkRequest { hash: c.hash, similar: None }).collect();
                    let data = server.get_chunks(wanted).await.map_err(|e| e.to_string());
                    (b, data)
                }
            })
            .buffered(CONCURRENCY);
        let mut fetched = std::pin::pin!(fetched);
        let mut have: Vec<ChunkRef> = Vec::new();
        let mut bytes = 0u64;
        let why = loop {
            let Some((b, data)) = fetched.next().await else {
                break if fetching.is_ended() { "its download took over" } else { "no more announcements" }.to_string();
            };
            if b.first != have.len() {
                break format!("announcements were missed (chunk {} after {})", b.first, have.len());
            }
            let data = match data {
                Ok(d) => d,
                Err(e) => break e,
            };
            let n: u64 = b.chunks.iter().map(|c| u64::from(c.len)).sum();
            let durable = (bytes + n) / DURABLE_EVERY > bytes / DURABLE_EVERY;
            let (partials, fs, folder, path) = (self.partials.clone(), fs.clone(), folder.to_owned(), path.clone());
            // Only its end: what the partial holds is checked by its length and last chunk
            // (a whole comparison per batch would cost a huge file quadratic time).
            let before = (have.len(), have.last().cloned());
            let chunks = b.chunks.clone();
            let appended = tokio::task::spawn_blocking(move || {
                partials.append(&*fs, (&folder, &path), before, &chunks, data, durable)
            })
            .await
            .unwrap_or_else(|e| Err(format!("the writer panicked: {e}")));
            if let Err(e) = appended {
                break e;
            }
            have.extend(b.chunks);
            bytes += n;
            progress.add(0, n);
            if have.len() >= b.total {
                break "complete".to_string();
            }
        };
        debug!(folder, path = %path, bytes, chunks = have.len(), "prefetch of an upload in progress ended: {why}");
        have
    }
}

/// One `GetChunks` request's worth of an announcement: its chunks, the index of the first
/// in the file's chunk list, and how many chunks the file has.
struct Batch {
    first: usize,
    chunks: Vec<ChunkRef>,
    total: usize,
}

/// The chunks of `a` in groups of one `GetChunks` request's worth.
fn by_message(a: &Announced) -> Vec<Batch> {
    let mut out = Vec::new();
    let (mut start, mut size) = (0, 0usize);
    let batch = |from: usize, to: usize| Batch {
        first: a.first as usize + from,
        chunks: a.chunks[from..to].to_vec(),
        total: a.total as usize,
    };
    for (i, c) in a.chunks.iter().enumerate() {
        if i > start && size + c.len as usize > limits::MAX_CHUNK_BYTES_PER_MESSAGE {
            out.push(batch(start, i));
            (start, size) = (i, 0);
        }
        size += c.len as usize;
    }
    if start < a.chunks.len() {
        out.push(batch(start, a.chunks.len()));
    }
    out
}

/// Whether this computer fetches the announced file ahead of its commit: only into a folder
/// that is not paused or upload-only, for a path it would download (not excluded, not
/// ignored) where it has no file yet (its download takes what it can from that one, and a
/// prefetch would fetch chunks this computer has). Reads the disk.
pub fn wanted(folder: &FolderConfig, fs: &dyn Filesystem, a: &Announced) -> bool {
    !folder.settings.paused
        && folder.settings.direction != Direction::UploadOnly
        && !Excluded::new(&folder.settings.excluded).covers(&a.path)
        && matches!(fs.stat(&a.path), Ok(None))
        && !IgnoreRules::load(fs).is_ignored(&a.path, false)
}

/// The announced file's directory exists here: a prefetch creates no folder.
fn parent_is_here(fs: &dyn Filesystem, a: &Announced) -> bool {
    match a.path.parent() {
        None => true,
        Some(dir) => matches!(fs.stat(&dir), Ok(Some(s)) if s.kind == StatKind::Dir),
    }
}
