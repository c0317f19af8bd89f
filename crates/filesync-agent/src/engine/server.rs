//! The engine's view of the server: a small trait in domain types — open a folder, read its
//! journal, ask which chunks the server lacks, send and fetch chunks, commit. The client's
//! `Connection` implements it here, the one place where the engine's requests meet wire
//! types; tests can put any other server behind the engine.
//!
//! The protocol's per-message limits are the implementation's business where they depend on
//! the encoding (a commit is split by encoded size); callers batch by count.

use super::SyncError;
use bytes::Bytes;
use filesync_client::Connection;
pub use filesync_client::{Announced, ChunkRequest, ChunkUpload};
use filesync_core::{EntryState, FileMeta, Hash, RelPath};
use filesync_proto::convert::{entry_from_wire, meta_into_wire};
use filesync_proto::{CommitChange, WireEntry, limits};
use futures::future::BoxFuture;

/// One page of a folder's journal.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChangesPage {
    /// Valid entries, ordered by rev.
    pub entries: Vec<EntryState>,
    /// Entries that failed validation, with why: skipped, and logged.
    pub invalid: Vec<String>,
    /// The highest rev in the page, valid or not (0 for an empty page).
    pub last_rev: u64,
    /// More entries follow: ask again from `last_rev`.
    pub more: bool,
    /// The folder's revision when the page was made.
    pub folder_seq: u64,
}

/// One change to commit: the new metadata of `path` (`None`: delete it), based on `base_rev`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub path: RelPath,
    pub base_rev: u64,
    pub meta: Option<FileMeta>,
}

/// The server's answer to one change, with its current entry for the path afterwards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Committed {
    Accepted(Option<EntryState>),
    /// The base was not current: someone else changed the path first.
    Conflict(Option<EntryState>),
}

/// What the engine asks of the server.
pub trait ServerApi: Send + Sync {
    /// The id of the folder `name`, created if it does not exist.
    fn open_folder<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<u64, SyncError>>;
    /// Journal entries of `folder_id` with a rev above `since`.
    fn changes(&self, folder_id: u64, since: u64) -> BoxFuture<'_, Result<ChangesPage, SyncError>>;
    /// Which of `hashes` (at most `limits::MAX_HASHES_PER_REQUEST`) the server lacks.
    fn missing_chunks(&self, hashes: Vec<Hash>) -> BoxFuture<'_, Result<Vec<Hash>, SyncError>>;
    /// Stores chunks (one message's worth). A chunk naming a `similar` chunk may travel as a
    /// delta from it; that is the implementation's business.
    fn put_chunks(&self, chunks: Vec<ChunkUpload>) -> BoxFuture<'_, Result<(), SyncError>>;
    /// Fetches chunks (one message's worth), each verified against its hash, in order. A
    /// request offering a `similar` local chunk may be answered with a delta from it.
    fn get_chunks(&self, wanted: Vec<ChunkRequest>) -> BoxFuture<'_, Result<Vec<Bytes>, SyncError>>;
    /// Commits `changes`, in as many requests as the protocol needs; one answer per change.
    fn commit(&self, folder_id: u64, changes: Vec<Change>) -> BoxFuture<'_, Result<Vec<Committed>, SyncError>>;
    /// Tells the user's other devices that these chunks of a file being uploaded are on the
    /// server, so they can fetch them before the commit. A hint: a server that does not pass
    /// it on (older than protocol version 4, or none at all) is not told.
    fn announce(&self, _chunks: Announced) -> BoxFuture<'_, Result<(), SyncError>> {
        Box::pin(async { Ok(()) })
    }
    /// Whether [`ServerApi::announce`] reaches anyone.
    fn announces(&self) -> bool {
        false
    }
}

impl ServerApi for Connection {
    fn open_folder<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<u64, SyncError>> {
        Box::pin(async move { Ok(Connection::open_folder(self, name, true).await?.id) })
    }

    fn changes(&self, folder_id: u64, since: u64) -> BoxFuture<'_, Result<ChangesPage, SyncError>> {
        Box::pin(async move {
            let ch = self.get_changes(folder_id, since, limits::MAX_ENTRIES_PER_CHANGES).await?;
            let mut page = ChangesPage { more: ch.more, folder_seq: ch.folder_seq, ..ChangesPage::default() };
            for w in &ch.entries {
                page.last_rev = page.last_rev.max(w.rev);
                match entry_from_wire(w) {
                    Ok(e) => page.entries.push(e),
                    Err(e) => page.invalid.push(e.to_string()),
                }
            }
            Ok(page)
        })
    }

    fn missing_chunks(&self, hashes: Vec<Hash>) -> BoxFuture<'_, Result<Vec<Hash>, SyncError>> {
        Box::pin(async move {
            let idx = self.query_chunks(&hashes).await?;
            Ok(idx.into_iter().map(|i| hashes[i]).collect())
        })
    }

    fn put_chunks(&self, chunks: Vec<ChunkUpload>) -> BoxFuture<'_, Result<(), SyncError>> {
        Box::pin(async move { Ok(Connection::put_chunks(self, chunks).await?) })
    }

    fn get_chunks(&self, wanted: Vec<ChunkRequest>) -> BoxFuture<'_, Result<Vec<Bytes>, SyncError>> {
        Box::pin(async move { Ok(Connection::get_chunks(self, &wanted).await?) })
    }

    fn announce(&self, chunks: Announced) -> BoxFuture<'_, Result<(), SyncError>> {
        Box::pin(async move { Ok(self.announce_chunks(&chunks).await?) })
    }

    fn announces(&self) -> bool {
        Connection::announces(self)
    }

    fn commit(&self, folder_id: u64, changes: Vec<Change>) -> BoxFuture<'_, Result<Vec<Committed>, SyncError>> {
        Box::pin(async move {
            // Batches bounded by count and by encoded size (a huge file's chunk list is long).
            let mut batches: Vec<Vec<CommitChange>> = vec![Vec::new()];
            let mut size = 0usize;
            for c in changes {
                let mut w = WireEntry { path: c.path.as_str().to_string(), ..Default::default() };
                match &c.meta {
                    Some(m) => meta_into_wire(m, &mut w),
                    None => w.deleted = true,
                }
                let change = CommitChange { base_rev: c.base_rev, entry: Some(w) };
                let n = filesync_proto::encoded_len(&change) + 8;
                let last = batches.last().expect("never empty");
                if !last.is_empty()
                    && (last.len() >= limits::MAX_CHANGES_PER_COMMIT || size + n > limits::MAX_REPLY_BYTES)
                {
                    batches.push(Vec::new());
                    size = 0;
                }
                size += n;
                batches.last_mut().expect("never empty").push(change);
            }
            let mut out = Vec::new();
            for batch in batches.into_iter().filter(|b| !b.is_empty()) {
                let result = Connection::commit(self, folder_id, batch).await?;
                for o in result.outcomes {
                    let current = match o.current.as_ref().map(entry_from_wire) {
                        Some(Ok(e)) => Some(e),
                        Some(Err(e)) => return Err(SyncError::Protocol(format!("server sent an invalid entry: {e}"))),
                        None => None,
                    };
                    out.push(if o.accepted { Committed::Accepted(current) } else { Committed::Conflict(current) });
                }
            }
            Ok(out)
        })
    }
}
