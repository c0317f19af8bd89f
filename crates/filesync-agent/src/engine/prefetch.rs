//! Fetching a file another computer is still uploading. The uploading computer announces the
//! chunks of a big file as they reach the server (`upload::Announcer`, protocol version 4);
//! here each announcement's chunks are fetched, verified, and appended to a hidden partial
//! download of the path (`download::Partials`), the kind a lost connection leaves. When the
//! file's commit arrives, its download resumes from that partial and fetches only what is
//! left, so the file lands about when its upload ends rather than a whole transfer later.
//!
//! Nothing a person sees changes before the commit: the partial is a hidden temporary file,
//! dropped by the download if the committed version does not start with its chunks. Whether a
//! folder takes announcements at all (paused, upload-only, excluded or ignored paths) is the
//! folder task's decision.

use super::Engine;
use super::server::{Announced, ChunkRequest};
use crate::fs::{Filesystem, StatKind};
use filesync_core::ChunkRef;
use filesync_proto::limits;
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

impl Engine {
    /// Fetches the announced chunks of one upload into a partial download of its path, in
    /// order, starting from `first` (which announces the file's first chunks) and going on
    /// with `more` until the file is complete, `more` closes (a newer upload of the path came),
    /// an announcement is missed, or the download of the commit takes the partial over.
    pub async fn prefetch(
        &self,
        folder: String,
        fs: Arc<dyn Filesystem>,
        first: Announced,
        mut more: mpsc::UnboundedReceiver<Announced>,
    ) {
        let path = first.path.clone();
        let mut have: Vec<ChunkRef> = Vec::new();
        let mut bytes = 0u64;
        let mut next = Some(first);
        let why = loop {
            let a = match next.take() {
                Some(a) => a,
                None => match tokio::time::timeout(IDLE, more.recv()).await {
                    Ok(Some(a)) => a,
                    Ok(None) => break "a newer upload of the path came".to_string(),
                    Err(_) => break "the upload went quiet".to_string(),
                },
            };
            if a.first as usize != have.len() {
                break format!("announcements were missed (chunk {} after {})", a.first, have.len());
            }
            if have.is_empty() && !parent_is_here(&*fs, &a) {
                break "its folder is not on this computer yet".to_string();
            }
            match self.prefetch_chunks(&folder, &fs, &a, &mut have, &mut bytes).await {
                Ok(()) if have.len() as u64 >= u64::from(a.total) => break "complete".to_string(),
                Ok(()) => {}
                Err(e) => break e,
            }
        };
        debug!(folder, path = %path, bytes, chunks = have.len(), "prefetch of an upload in progress ended: {why}");
    }

    /// Fetches and appends the chunks of one announcement, a request's worth at a time.
    async fn prefetch_chunks(
        &self,
        folder: &str,
        fs: &Arc<dyn Filesystem>,
        a: &Announced,
        have: &mut Vec<ChunkRef>,
        bytes: &mut u64,
    ) -> Result<(), String> {
        for batch in by_message(&a.chunks) {
            let wanted = batch.iter().map(|c| ChunkRequest { hash: c.hash, similar: None }).collect();
            let data = self.server.get_chunks(wanted).await.map_err(|e| e.to_string())?;
            let n: u64 = batch.iter().map(|c| u64::from(c.len)).sum();
            let durable = (*bytes + n) / DURABLE_EVERY > *bytes / DURABLE_EVERY;
            let (partials, fs, folder, path) = (self.partials.clone(), fs.clone(), folder.to_owned(), a.path.clone());
            let (before, batch) = (have.clone(), batch.to_vec());
            let appended = tokio::task::spawn_blocking(move || {
                partials.append(&*fs, (&folder, &path), &before, &batch, data, durable).map(|()| batch)
            })
            .await
            .map_err(|e| format!("the writer panicked: {e}"))??;
            have.extend(appended);
            *bytes += n;
        }
        Ok(())
    }
}

/// The chunks in groups of one `GetChunks` request's worth.
fn by_message(chunks: &[ChunkRef]) -> Vec<&[ChunkRef]> {
    let mut out = Vec::new();
    let (mut start, mut size) = (0, 0usize);
    for (i, c) in chunks.iter().enumerate() {
        if i > start && size + c.len as usize > limits::MAX_CHUNK_BYTES_PER_MESSAGE {
            out.push(&chunks[start..i]);
            (start, size) = (i, 0);
        }
        size += c.len as usize;
    }
    if start < chunks.len() {
        out.push(&chunks[start..]);
    }
    out
}

/// The announced file's directory exists here: a prefetch creates no folder.
fn parent_is_here(fs: &dyn Filesystem, a: &Announced) -> bool {
    match a.path.parent() {
        None => true,
        Some(dir) => matches!(fs.stat(&dir), Ok(Some(s)) if s.kind == StatKind::Dir),
    }
}
