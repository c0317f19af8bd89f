//! Explicit conversions between wire types and `filesync-core` domain types. Everything that
//! arrives from the network is validated here: paths, hash lengths, chunk lists, kinds.

use crate::messages::WireEntry;
use filesync_core::{ChunkRef, EntryKind, EntryState, FileMeta, Hash, PathError, RelPath, file_hash};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    #[error("invalid path {path:?}: {source}")]
    Path { path: String, source: PathError },
    #[error("a hash must be 32 bytes, got {0}")]
    HashLen(usize),
    #[error("chunk list length {0} is not a multiple of 36")]
    ChunkList(usize),
    #[error("unknown entry kind {0}")]
    Kind(u32),
    #[error("chunk lengths add up to {sum}, but the size is {size}")]
    SizeMismatch { sum: u64, size: u64 },
    #[error("a directory cannot have content")]
    DirWithContent,
    #[error(
        "the file hash {hash} is not the hash of its chunk list ({expected}); a file's hash is computed \
         from its chunks (protocol section 11.1)"
    )]
    HashMismatch { hash: Hash, expected: Hash },
}

pub const KIND_FILE: u32 = 1;
pub const KIND_DIR: u32 = 2;

pub fn hash_from_wire(b: &[u8]) -> Result<Hash, ConvertError> {
    Hash::from_slice(b).ok_or(ConvertError::HashLen(b.len()))
}

pub fn chunks_to_wire(chunks: &[ChunkRef]) -> Vec<u8> {
    let mut out = Vec::with_capacity(chunks.len() * 36);
    for c in chunks {
        out.extend_from_slice(c.hash.as_bytes());
        out.extend_from_slice(&c.len.to_le_bytes());
    }
    out
}

pub fn chunks_from_wire(b: &[u8]) -> Result<Vec<ChunkRef>, ConvertError> {
    if !b.len().is_multiple_of(36) {
        return Err(ConvertError::ChunkList(b.len()));
    }
    Ok(b.chunks_exact(36)
        .map(|r| ChunkRef {
            hash: Hash::from_slice(&r[..32]).expect("32 bytes"),
            len: u32::from_le_bytes([r[32], r[33], r[34], r[35]]),
        })
        .collect())
}

pub fn path_from_wire(p: &str) -> Result<RelPath, ConvertError> {
    RelPath::new(p).map_err(|source| ConvertError::Path { path: p.chars().take(200).collect(), source })
}

pub fn entry_to_wire(e: &EntryState) -> WireEntry {
    let mut w = WireEntry {
        path: e.path.as_str().to_string(),
        rev: e.rev,
        deleted: e.meta.is_none(),
        device_id: e.device_id,
        device_name: e.device_name.clone(),
        committed_at: e.committed_at,
        ..Default::default()
    };
    if let Some(m) = &e.meta {
        meta_into_wire(m, &mut w);
    }
    w
}

pub fn entry_from_wire(w: &WireEntry) -> Result<EntryState, ConvertError> {
    Ok(EntryState {
        path: path_from_wire(&w.path)?,
        rev: w.rev,
        meta: meta_from_wire(w)?,
        device_id: w.device_id,
        device_name: w.device_name.clone(),
        committed_at: w.committed_at,
    })
}

pub fn meta_into_wire(m: &FileMeta, w: &mut WireEntry) {
    w.kind = match m.kind {
        EntryKind::File => KIND_FILE,
        EntryKind::Dir => KIND_DIR,
    };
    w.size = m.size;
    w.mtime_ns = m.mtime_ns;
    w.executable = m.executable;
    if m.kind == EntryKind::File {
        w.hash = m.hash.as_bytes().to_vec();
        w.chunks = chunks_to_wire(&m.chunks);
    }
}

/// The live metadata in a wire entry, or `None` if it is a deletion. Validates consistency: a
/// file's chunk lengths add up to its size and its hash is [`file_hash`] of its chunks.
pub fn meta_from_wire(w: &WireEntry) -> Result<Option<FileMeta>, ConvertError> {
    if w.deleted {
        return Ok(None);
    }
    match w.kind {
        KIND_DIR => {
            if w.size != 0 || !w.chunks.is_empty() {
                return Err(ConvertError::DirWithContent);
            }
            Ok(Some(FileMeta::dir(w.mtime_ns)))
        }
        KIND_FILE => {
            let chunks = chunks_from_wire(&w.chunks)?;
            let sum: u64 = chunks.iter().map(|c| c.len as u64).sum();
            if sum != w.size {
                return Err(ConvertError::SizeMismatch { sum, size: w.size });
            }
            let hash = hash_from_wire(&w.hash)?;
            let expected = file_hash(&chunks);
            if hash != expected {
                return Err(ConvertError::HashMismatch { hash, expected });
            }
            Ok(Some(FileMeta {
                kind: EntryKind::File,
                size: w.size,
                mtime_ns: w.mtime_ns,
                executable: w.executable,
                hash,
                chunks,
            }))
        }
        k => Err(ConvertError::Kind(k)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_round_trip() {
        let e = EntryState {
            path: RelPath::new("a/b.txt").unwrap(),
            rev: 9,
            meta: Some(FileMeta {
                kind: EntryKind::File,
                size: 5,
                mtime_ns: 1_700_000_000_000_000_000,
                executable: true,
                hash: file_hash(&[ChunkRef { hash: Hash::of(b"hello"), len: 5 }]),
                chunks: vec![ChunkRef { hash: Hash::of(b"hello"), len: 5 }],
            }),
            device_id: 3,
            device_name: "pc".into(),
            committed_at: 1_700_000_000,
        };
        assert_eq!(entry_from_wire(&entry_to_wire(&e)).unwrap(), e);
        let tomb = EntryState { meta: None, ..e.clone() };
        assert_eq!(entry_from_wire(&entry_to_wire(&tomb)).unwrap(), tomb);
    }

    #[test]
    fn rejects_inconsistent_entries() {
        let mut w = WireEntry { path: "x".into(), kind: KIND_FILE, size: 6, hash: vec![0; 32], ..Default::default() };
        w.chunks = chunks_to_wire(&[ChunkRef { hash: Hash::default(), len: 5 }]);
        assert_eq!(meta_from_wire(&w), Err(ConvertError::SizeMismatch { sum: 5, size: 6 }));
        w.chunks.pop();
        assert_eq!(meta_from_wire(&w), Err(ConvertError::ChunkList(35)));
        let w = WireEntry { path: "../x".into(), ..Default::default() };
        assert!(matches!(entry_from_wire(&w), Err(ConvertError::Path { .. })));
        let w = WireEntry { path: "x".into(), kind: 9, ..Default::default() };
        assert_eq!(meta_from_wire(&w), Err(ConvertError::Kind(9)));
    }

    /// Regression: an entry whose hash contradicts its chunks was accepted (a one-chunk file
    /// carrying its chunk's hash as the file hash, an empty file with a hash of something).
    #[test]
    fn a_file_hash_that_contradicts_the_chunks_is_rejected() {
        let chunk = ChunkRef { hash: Hash::of(b"hello"), len: 5 };
        let file = |hash: Hash, chunks: &[ChunkRef]| WireEntry {
            path: "x".into(),
            kind: KIND_FILE,
            size: chunks.iter().map(|c| u64::from(c.len)).sum(),
            hash: hash.as_bytes().to_vec(),
            chunks: chunks_to_wire(chunks),
            ..Default::default()
        };
        assert!(meta_from_wire(&file(file_hash(&[chunk]), &[chunk])).is_ok());
        assert!(meta_from_wire(&file(file_hash(&[]), &[])).is_ok());
        let bad = [file(chunk.hash, &[chunk]), file(Hash::of(b""), &[]), file(file_hash(&[chunk]), &[])];
        for w in bad {
            assert!(matches!(meta_from_wire(&w), Err(ConvertError::HashMismatch { .. })), "{w:?}");
        }
    }
}
