//! An in-memory server behind the engine's `ServerApi` trait: one user's folders, journals,
//! chunks and history, with the server's commit rule, and hooks that make it refuse, lose or
//! damage chunks. Shared by the tests that run computers against it (`engine_memserver.rs`,
//! `sim.rs`); each uses only some of its hooks.
#![allow(dead_code)]

use bytes::Bytes;
use filesync_agent::engine::SyncError;
use filesync_agent::engine::server::{Announced, Change, ChangesPage, ChunkRequest, ChunkUpload, Committed, ServerApi};
use filesync_client::{ClientError, ErrorCode};
use filesync_core::{EntryState, Hash, RelPath};
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::sync::Mutex;

/// One user's folders, journals and chunks, in memory. The commit rule is the server's: a
/// change is accepted only if it is based on the path's current rev.
#[derive(Default)]
pub struct MemServer {
    /// A std mutex: every method holds it for a few map operations, never across an await.
    pub inner: Mutex<Inner>,
}

#[derive(Default)]
pub struct Inner {
    pub folders: HashMap<String, u64>,
    pub seq: HashMap<u64, u64>,
    pub current: HashMap<(u64, RelPath), EntryState>,
    pub chunks: HashMap<Hash, Bytes>,
    /// Chunks the server cannot read back (a damaged disk): a request for one fails whole.
    pub damaged: std::collections::HashSet<Hash>,
    /// Chunks the server will not take: a batch holding one is refused whole.
    pub refused: std::collections::HashSet<Hash>,
    /// The user's storage quota in bytes: a batch that would pass it is refused whole.
    pub quota: Option<u64>,
    /// `put_chunks` calls received.
    pub puts: usize,
    /// Each chunk received, with the chunk the engine named as similar (the base a delta
    /// would apply to).
    pub similar_up: Vec<(Hash, Option<Hash>)>,
    /// Each chunk asked for, with the local chunk offered as similar.
    pub similar_down: Vec<(Hash, Option<Hash>)>,
    /// "put", "announce" and "commit", in the order the server got them.
    pub calls: Vec<&'static str>,
    /// Every entry the server accepted, in order: its history.
    pub history: Vec<EntryState>,
    /// The connection drops after this many more requests: every later one fails as a lost
    /// connection until it is set to `None`. A commit that is the last request through is
    /// applied and its answer lost, as when a connection breaks after the server committed.
    pub drop_after: Option<usize>,
    /// Chunks `get_chunks` serves before the connection drops (each request is served whole
    /// while any budget is left).
    pub chunks_before_drop: Option<usize>,
    /// Uploads in progress announced (protocol version 4), in order; `None`: the server does
    /// not take announcements, as one older than version 4.
    pub announced: Option<Vec<Announced>>,
}

impl Inner {
    /// The server's tree rule ([`filesync_store::decide::breaks_tree`]) over this folder's
    /// current entries.
    fn breaks_tree(&self, folder_id: u64, change: &Change) -> bool {
        let current: std::collections::BTreeMap<String, EntryState> = self
            .current
            .iter()
            .filter(|((f, _), _)| *f == folder_id)
            .map(|((_, p), e)| (p.as_str().to_owned(), e.clone()))
            .collect();
        filesync_store::decide::breaks_tree(&change.path, change.meta.as_ref(), &current)
    }

    /// Makes `meta` the current version of `path` again, as a restore from history does on
    /// the real server: a new rev, the version it replaces kept in the history. Returns the
    /// new rev.
    pub fn restore(&mut self, folder_id: u64, path: RelPath, meta: filesync_core::FileMeta) -> u64 {
        // Ancestors deleted or unknown come back as directories first, as on the real server.
        let ancestors: Vec<RelPath> =
            path.ancestors().map(|a| RelPath::new(a).expect("an ancestor of a valid path is valid")).collect();
        for a in ancestors.into_iter().rev() {
            if self.current.get(&(folder_id, a.clone())).is_none_or(|e| e.meta.is_none()) {
                self.restore(folder_id, a, filesync_core::FileMeta::dir(0));
            }
        }
        let seq = self.seq.entry(folder_id).or_insert(0);
        *seq += 1;
        let rev = *seq;
        let e = EntryState {
            path: path.clone(),
            rev,
            meta: Some(meta),
            device_id: 2,
            device_name: "restore".into(),
            committed_at: 0,
        };
        self.current.insert((folder_id, path), e.clone());
        self.history.push(e);
        rev
    }

    /// Whether this request gets through (`Ok`), or the connection is gone.
    fn connected(&mut self) -> Result<(), SyncError> {
        match &mut self.drop_after {
            Some(0) => Err(SyncError::Client(ClientError::Disconnected("the simulated connection dropped".into()))),
            Some(n) => {
                *n -= 1;
                Ok(())
            }
            None => Ok(()),
        }
    }
}

fn fail<T: Send + 'static>(e: SyncError) -> BoxFuture<'static, Result<T, SyncError>> {
    Box::pin(async move { Err(e) })
}

impl ServerApi for MemServer {
    fn open_folder<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<u64, SyncError>> {
        let mut s = self.inner.lock().unwrap();
        if let Err(e) = s.connected() {
            return fail(e);
        }
        let next = s.folders.len() as u64 + 1;
        let id = *s.folders.entry(name.to_string()).or_insert(next);
        Box::pin(async move { Ok(id) })
    }

    fn changes(&self, folder_id: u64, since: u64) -> BoxFuture<'_, Result<ChangesPage, SyncError>> {
        let mut s = self.inner.lock().unwrap();
        if let Err(e) = s.connected() {
            return fail(e);
        }
        let mut entries: Vec<EntryState> =
            s.current.iter().filter(|((f, _), e)| *f == folder_id && e.rev > since).map(|(_, e)| e.clone()).collect();
        entries.sort_by_key(|e| e.rev);
        let last_rev = entries.last().map_or(0, |e| e.rev);
        let folder_seq = s.seq.get(&folder_id).copied().unwrap_or(0);
        Box::pin(async move { Ok(ChangesPage { entries, invalid: vec![], last_rev, more: false, folder_seq }) })
    }

    fn missing_chunks(&self, hashes: Vec<Hash>) -> BoxFuture<'_, Result<Vec<Hash>, SyncError>> {
        let mut s = self.inner.lock().unwrap();
        if let Err(e) = s.connected() {
            return fail(e);
        }
        let missing = hashes.into_iter().filter(|h| !s.chunks.contains_key(h)).collect();
        Box::pin(async move { Ok(missing) })
    }

    fn put_chunks(&self, chunks: Vec<ChunkUpload>) -> BoxFuture<'_, Result<(), SyncError>> {
        let mut s = self.inner.lock().unwrap();
        if let Err(e) = s.connected() {
            return fail(e);
        }
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
        if let Err(e) = s.connected() {
            return fail(e);
        }
        for w in &wanted {
            if let Some((h, d)) = &w.similar {
                assert_eq!(Hash::of(d), *h, "a similar chunk offered with other bytes than its hash says");
            }
        }
        match &mut s.chunks_before_drop {
            Some(0) => return fail(SyncError::Client(ClientError::Disconnected("the simulated link dropped".into()))),
            Some(n) => *n = n.saturating_sub(wanted.len()),
            None => {}
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

    fn announce(&self, chunks: Announced) -> BoxFuture<'_, Result<(), SyncError>> {
        let mut s = self.inner.lock().unwrap();
        if let Err(e) = s.connected() {
            return fail(e);
        }
        s.calls.push("announce");
        s.announced.get_or_insert_default().push(chunks);
        Box::pin(async { Ok(()) })
    }

    fn announces(&self) -> bool {
        self.inner.lock().unwrap().announced.is_some()
    }

    fn commit(&self, folder_id: u64, changes: Vec<Change>) -> BoxFuture<'_, Result<Vec<Committed>, SyncError>> {
        let mut s = self.inner.lock().unwrap();
        s.calls.push("commit");
        if let Err(e) = s.connected() {
            return fail(e);
        }
        // The last request before the drop: applied, and its answer lost.
        let answer_lost = s.drop_after == Some(0);
        let mut out = Vec::new();
        for c in changes {
            let key = (folder_id, c.path.clone());
            let current = s.current.get(&key).cloned();
            if current.as_ref().map_or(0, |e| e.rev) != c.base_rev || s.breaks_tree(folder_id, &c) {
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
            s.history.push(e.clone());
            out.push(Committed::Accepted(Some(e)));
        }
        if answer_lost {
            return fail(SyncError::Client(ClientError::Disconnected(
                "the answer was lost with the connection".into(),
            )));
        }
        Box::pin(async move { Ok(out) })
    }
}
