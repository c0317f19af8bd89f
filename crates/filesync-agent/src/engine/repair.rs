//! Re-sends chunks the server lost. A server that finds a chunk damaged on its disk sets it
//! aside and forgets it (its `GetChunks` answers "missing"), so that the next upload of that
//! content repairs it; but the devices that hold the file have nothing to upload — their
//! file is in sync. So a walk of the whole folder (at start, hourly, on `filesync sync`) also
//! asks the server which chunks of the files this computer holds in sync it lacks, and sends
//! those again from the local files (each re-verified against its hash). The versions on the
//! server already name them: no commit is needed, and other devices then download the file.
//!
//! Cost: one `QueryChunks` hash (32 bytes) per chunk of every synced file, per whole walk; no
//! file is read unless the server lacks one of its chunks.

use super::input::Views;
use super::server::{ChunkUpload, ServerApi};
use super::{SyncError, connection_lost, download, upload};
use crate::fs::Filesystem;
use filesync_core::{EntryKind, FileMeta, Hash, RelPath};
use filesync_proto::limits;
use std::collections::HashSet;
use std::sync::Arc;
use tracing::{info, warn};

/// The files of `views` that this computer holds exactly as the server's current version: a
/// base at the current rev whose content the scan found on disk. (Each chunk is verified
/// again when it is read.)
fn held_in_sync(views: &Views) -> impl Iterator<Item = (&RelPath, &FileMeta)> {
    views.bases.iter().filter_map(|(p, b)| {
        let current = views
            .remote
            .get(p)
            .is_some_and(|r| r.rev == b.rev && r.meta.as_ref().is_some_and(|m| m.same_content(&b.meta)));
        let local = views.scanned.entries.get(p)?;
        (b.meta.kind == EntryKind::File && current && local.meta.same_content(&b.meta)).then_some((p, &b.meta))
    })
}

/// Sends the server the chunks it lacks of the files `views` holds in sync; returns the bytes
/// sent. Fails only when the connection is lost; anything else is logged and left for the next
/// walk.
pub(super) async fn resend_lost_chunks(
    conn: &dyn ServerApi,
    fs: &Arc<dyn Filesystem>,
    folder: &str,
    views: &Views,
) -> Result<u64, SyncError> {
    let mut seen = HashSet::new();
    let hashes: Vec<Hash> =
        held_in_sync(views).flat_map(|(_, m)| m.chunks.iter().map(|c| c.hash)).filter(|h| seen.insert(*h)).collect();
    let mut lost = HashSet::new();
    for batch in hashes.chunks(limits::MAX_HASHES_PER_REQUEST) {
        match conn.missing_chunks(batch.to_vec()).await {
            Ok(missing) => lost.extend(missing),
            Err(e) if connection_lost(&e) => return Err(e),
            Err(e) => {
                warn!(folder, "could not ask the server which chunks it lacks: {e}");
                return Ok(0);
            }
        }
    }
    if lost.is_empty() {
        return Ok(0);
    }
    let sources = download::local_chunk_index(held_in_sync(views), &lost);
    let mut sent = 0;
    let mut batch: Vec<ChunkUpload> = Vec::new();
    let mut batch_bytes = 0usize;
    let mut sources: Vec<_> = sources.into_iter().collect();
    sources.sort_by(|a, b| (&a.1.path, a.1.offset).cmp(&(&b.1.path, b.1.offset)));
    let last = sources.len();
    for (i, (hash, at)) in sources.into_iter().enumerate() {
        let read = {
            let fs = fs.clone();
            tokio::task::spawn_blocking(move || download::read_local(&*fs, &at, &hash))
                .await
                .map_err(|e| SyncError::Internal(e.to_string()))?
        };
        match read {
            Ok(data) => {
                batch_bytes += data.len();
                batch.push(ChunkUpload { hash, data: data.into(), similar: None });
            }
            Err(e) => warn!(folder, "cannot re-send chunk {hash} that the server lost: {e}"),
        }
        if !batch.is_empty() && (batch_bytes >= limits::MAX_CHUNK_BYTES_PER_MESSAGE / 2 || i + 1 == last) {
            let (bytes, refused) = upload::put_batch(conn, std::mem::take(&mut batch)).await?;
            sent += bytes;
            batch_bytes = 0;
            for (h, why) in refused {
                warn!(folder, "the server refused chunk {h} sent again: {}", why.why);
            }
        }
    }
    info!(folder, chunks = lost.len(), bytes = sent, "sent the server again chunks it had lost");
    Ok(sent)
}
