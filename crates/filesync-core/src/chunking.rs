//! Content-defined chunking (FastCDC 2020), BLAKE3 hashing of a file's chunks, and the file
//! hash: a hash of the chunk list ([`file_hash`]), so that anyone holding the list, the server
//! included, can check it without the content.
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

/// The BLAKE3 `derive_key` context of [`file_hash`]: a file hash can never equal the hash of
/// some bytes (a chunk's), nor a hash FileSync makes for another purpose.
pub const FILE_HASH_CONTEXT: &str = "FileSync 2026-11-30 file hash v2: chunk list";

/// A file's hash: BLAKE3 in `derive_key` mode with the context [`FILE_HASH_CONTEXT`], over
/// each chunk in file order as its 32-byte hash followed by its length as a `u64`
/// little-endian (40 bytes per chunk). An empty file (no chunks) hashes the empty input.
///
/// Each chunk's hash covers its bytes, so this covers the whole content, and, unlike a hash
/// of the bytes, it can be checked from the chunk list alone: the server refuses a commit whose
/// hash disagrees with its chunks, and a download verified chunk by chunk needs no second read.
/// (Specified in `docs/protocol.md`, section 11.1.)
pub fn file_hash(chunks: &[ChunkRef]) -> Hash {
    let mut h = blake3::Hasher::new_derive_key(FILE_HASH_CONTEXT);
    for c in chunks {
        h.update(c.hash.as_bytes());
        h.update(&u64::from(c.len).to_le_bytes());
    }
    Hash(*h.finalize().as_bytes())
}

/// The content identity of a whole file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileDigest {
    pub size: u64,
    /// [`file_hash`] of `chunks`.
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
        let mut chunks = Vec::new();
        let mut size = 0u64;
        for c in fastcdc::v2020::StreamCDC::new(r, self.min, self.avg, self.max) {
            let c = c.map_err(|e| match e {
                fastcdc::v2020::Error::IoError(e) => e,
                other => io::Error::other(other.to_string()),
            })?;
            let r = ChunkRef { hash: Hash::of(&c.data), len: c.length as u32 };
            on_chunk(c.offset, r, &c.data)?;
            chunks.push(r);
            size += c.length as u64;
        }
        Ok(FileDigest { size, hash: file_hash(&chunks), chunks })
    }

    /// [`Chunker::digest`] of bytes in memory: the same chunks, cut in place rather than
    /// through the streaming chunker's buffer of `max` bytes.
    pub fn digest_bytes(&self, data: &[u8]) -> FileDigest {
        let chunks: Vec<ChunkRef> = fastcdc::v2020::FastCDC::new(data, self.min, self.avg, self.max)
            .map(|c| ChunkRef { hash: Hash::of(&data[c.offset..c.offset + c.length]), len: c.length as u32 })
            .collect();
        FileDigest { size: data.len() as u64, hash: file_hash(&chunks), chunks }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata::random_bytes as pseudo_random;

    #[test]
    fn bytes_in_memory_are_cut_as_a_stream_is() {
        for (chunker, len) in
            [(Chunker::tiny(), 0), (Chunker::tiny(), 100), (Chunker::tiny(), 200_000), (Chunker::default(), 9_000_000)]
        {
            let data = pseudo_random(len, 7);
            let streamed = chunker.digest(&data[..]).unwrap();
            assert_eq!(chunker.digest_bytes(&data), streamed, "{len} bytes");
        }
    }

    #[test]
    fn empty_file_has_no_chunks() {
        let d = Chunker::default().digest_bytes(&[]);
        assert_eq!(d.size, 0);
        assert!(d.chunks.is_empty());
        assert_eq!(d.hash, file_hash(&[]));
    }

    /// The definition in `docs/protocol.md` section 11.1, spelled out with its test vectors.
    #[test]
    fn file_hash_is_the_derive_key_hash_of_the_chunk_list() {
        let one = ChunkRef { hash: Hash::of(b"hello"), len: 5 };
        let mut input = one.hash.as_bytes().to_vec();
        input.extend_from_slice(&5u64.to_le_bytes());
        assert_eq!(file_hash(&[one]).0, blake3::derive_key(FILE_HASH_CONTEXT, &input));
        assert_eq!(file_hash(&[]).0, blake3::derive_key(FILE_HASH_CONTEXT, b""));
        assert_ne!(file_hash(&[one]), one.hash, "a one-chunk file's hash is not its chunk's");
        assert_ne!(file_hash(&[one, one]), file_hash(&[one]));
        assert_ne!(file_hash(&[one]), file_hash(&[ChunkRef { len: 6, ..one }]), "lengths count");
        // The vectors quoted in docs/protocol.md.
        assert_eq!(file_hash(&[]).to_hex(), EMPTY_FILE_HASH_HEX);
        assert_eq!(Chunker::default().digest_bytes(b"hello").hash.to_hex(), HELLO_FILE_HASH_HEX);
    }

    const EMPTY_FILE_HASH_HEX: &str = "1acd269e29cfd60dafcfc54cfd9fe9fa10b15ad567eb93300eda2bf3943d9256";
    const HELLO_FILE_HASH_HEX: &str = "ef8eaba44ba4c807cde302ba7cd0dc0d8c48dde3d195ddb088f0f2c9219fdfaa";

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
        assert_eq!(d.hash, file_hash(&d.chunks));
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
