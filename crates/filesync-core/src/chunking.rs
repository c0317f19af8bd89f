//! Content-defined chunking (FastCDC 2020) and BLAKE3 hashing of a file's bytes.
//!
//! Chunk boundaries depend on content, so inserting bytes in the middle of a big file changes
//! only the chunks around the insertion; everything else is deduplicated.

use crate::Hash;
use std::io::{self, Read};

/// Chunk size bounds in bytes. A file smaller than `MIN_CHUNK` is a single chunk.
pub const MIN_CHUNK: u32 = 256 * 1024;
pub const AVG_CHUNK: u32 = 1024 * 1024;
pub const MAX_CHUNK: u32 = 4 * 1024 * 1024;

/// One chunk of a file: its BLAKE3 hash and its length. Offsets follow from the order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChunkRef {
    pub hash: Hash,
    pub len: u32,
}

/// The content identity of a whole file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileDigest {
    pub size: u64,
    /// BLAKE3 of the whole content.
    pub hash: Hash,
    pub chunks: Vec<ChunkRef>,
}

/// Splits and hashes byte streams.
#[derive(Clone, Copy, Debug)]
pub struct Chunker {
    pub min: u32,
    pub avg: u32,
    pub max: u32,
}

impl Default for Chunker {
    fn default() -> Self {
        Chunker { min: MIN_CHUNK, avg: AVG_CHUNK, max: MAX_CHUNK }
    }
}

impl Chunker {
    /// Small bounds, for tests that want many chunks out of little data.
    pub fn tiny() -> Chunker {
        Chunker { min: 1024, avg: 4096, max: 16384 }
    }

    /// Chunks and hashes everything `r` yields.
    pub fn digest(&self, r: impl Read) -> io::Result<FileDigest> {
        self.digest_with(r, |_, _, _| Ok(()))
    }

    /// Like [`Chunker::digest`], calling `on_chunk(offset, chunk, bytes)` for every chunk in order.
    pub fn digest_with(
        &self,
        r: impl Read,
        mut on_chunk: impl FnMut(u64, ChunkRef, &[u8]) -> io::Result<()>,
    ) -> io::Result<FileDigest> {
        let mut whole = blake3::Hasher::new();
        let mut chunks = Vec::new();
        let mut size = 0u64;
        for c in fastcdc::v2020::StreamCDC::new(r, self.min, self.avg, self.max) {
            let c = c.map_err(|e| match e {
                fastcdc::v2020::Error::IoError(e) => e,
                other => io::Error::other(other.to_string()),
            })?;
            whole.update(&c.data);
            let r = ChunkRef { hash: Hash::of(&c.data), len: c.length as u32 };
            on_chunk(c.offset, r, &c.data)?;
            chunks.push(r);
            size += c.length as u64;
        }
        Ok(FileDigest { size, hash: Hash(*whole.finalize().as_bytes()), chunks })
    }

    pub fn digest_bytes(&self, data: &[u8]) -> FileDigest {
        self.digest(data).expect("reading from a slice cannot fail")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn empty_file_has_no_chunks() {
        let d = Chunker::default().digest_bytes(&[]);
        assert_eq!(d.size, 0);
        assert!(d.chunks.is_empty());
        assert_eq!(d.hash, Hash::empty());
    }

    #[test]
    fn chunks_cover_the_file_and_hash_it() {
        let data = pseudo_random(300_000, 7);
        let c = Chunker::tiny();
        let mut seen = Vec::new();
        let d = c
            .digest_with(&data[..], |off, r, bytes| {
                assert_eq!(Hash::of(bytes), r.hash);
                seen.extend_from_slice(bytes);
                assert_eq!(off as usize + bytes.len(), seen.len());
                Ok(())
            })
            .unwrap();
        assert_eq!(seen, data);
        assert_eq!(d.hash, Hash::of(&data));
        assert_eq!(d.chunks.iter().map(|c| c.len as u64).sum::<u64>(), data.len() as u64);
        assert!(d.chunks.len() > 20);
        assert!(d.chunks.iter().all(|c| c.len <= c.len.max(16384)));
    }

    #[test]
    fn an_insert_in_the_middle_changes_only_nearby_chunks() {
        let c = Chunker::default();
        let data = pseudo_random(24 << 20, 42);
        let mut edited = data.clone();
        edited.splice(12 << 20..12 << 20, b"a few inserted bytes".iter().copied());
        let a = c.digest_bytes(&data);
        let b = c.digest_bytes(&edited);
        let old: std::collections::HashSet<_> = a.chunks.iter().map(|c| c.hash).collect();
        let changed = b.chunks.iter().filter(|c| !old.contains(&c.hash)).count();
        assert!(a.chunks.len() >= 12, "expected many chunks, got {}", a.chunks.len());
        assert!(changed <= 2, "{changed} of {} chunks changed", b.chunks.len());
    }

    #[test]
    fn chunk_sizes_respect_bounds() {
        let c = Chunker::default();
        let d = c.digest_bytes(&pseudo_random(20 << 20, 3));
        let (last, body) = d.chunks.split_last().unwrap();
        assert!(body.iter().all(|x| x.len >= MIN_CHUNK && x.len <= MAX_CHUNK));
        assert!(last.len <= MAX_CHUNK);
    }
}
