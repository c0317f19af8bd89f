//! The metadata FileSync keeps for one path: kind, size, modification time, executable bit and
//! the content (the file hash, computed from the chunk list, plus the chunk list).

use crate::{ChunkRef, Hash};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntryKind {
    File,
    Dir,
}

/// Everything about one live (not deleted) path that is synced.
///
/// For directories `size` is 0, `hash` is [`Hash::default`] and `chunks` is empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileMeta {
    pub kind: EntryKind,
    pub size: u64,
    /// Modification time in nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    pub executable: bool,
    pub hash: Hash,
    pub chunks: Vec<ChunkRef>,
}

impl FileMeta {
    pub fn dir(mtime_ns: i64) -> FileMeta {
        FileMeta {
            kind: EntryKind::Dir,
            size: 0,
            mtime_ns,
            executable: false,
            hash: Hash::default(),
            chunks: Vec::new(),
        }
    }

    /// Two metas describe the same content when kind, bytes and executable bit agree;
    /// the modification time alone is not a change worth syncing.
    pub fn same_content(&self, other: &FileMeta) -> bool {
        self.kind == other.kind
            && (self.kind == EntryKind::Dir
                || (self.hash == other.hash && self.size == other.size && self.executable == other.executable))
    }
}

/// One version of one path in a folder's journal, as the server records it. `meta` is `None`
/// for a deletion (a tombstone, kept so that other devices learn about the delete).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryState {
    pub path: crate::RelPath,
    /// Journal sequence number of this version; unique and increasing within a folder.
    pub rev: u64,
    pub meta: Option<FileMeta>,
    /// Device that committed this version, and its name at the time.
    pub device_id: u64,
    pub device_name: String,
    /// Unix seconds of the commit.
    pub committed_at: i64,
}
