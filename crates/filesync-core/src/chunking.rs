//! Content-defined chunking (FastCDC 2020), BLAKE3 hashing of a file's chunks, and the file
//! hash: a hash of the chunk list ([`file_hash`]), so that anyone holding the list, the server
//! included, can check it without the content.
//!
//! Chunk boundaries depend on content, so inserting bytes in the middle of a big file changes
//! only the chunks around the insertion; everything else is deduplicated.

use crate::Hash;
use std::io::{self, Read};
use std::ops::Range;

/// Chunk size bounds in bytes. A file smaller than `MIN_CHUNK` is a single chunk.
pub const MIN_CHUNK: u32 = 256 * 1024;
pub const AVG_CHUNK: u32 = 1024 * 1024;
pub const MAX_CHUNK: u32 = 4 * 1024 * 1024;

/// Bytes the streaming chunker reads at once (at least two of the largest chunks).
const READ_BLOCK: usize = 8 << 20;

/// Reads into `buf` until it holds `block` bytes or the input ends; returns whether it ended.
fn fill(r: &mut impl Read, buf: &mut Vec<u8>, block: usize) -> io::Result<bool> {
    let want = block - buf.len();
    let n = r.by_ref().take(want as u64).read_to_end(buf)?;
    Ok(n < want)
}

/// The chunks handed on so far.
#[derive(Default)]
struct Emitted {
    chunks: Vec<ChunkRef>,
    size: u64,
}

impl Emitted {
    fn emit(
        &mut self,
        buf: &[u8],
        cuts: &[Range<usize>],
        hashes: &[Hash],
        on_chunk: &mut impl FnMut(u64, ChunkRef, &[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        for (c, &hash) in cuts.iter().zip(hashes) {
            let r = ChunkRef { hash, len: c.len() as u32 };
            on_chunk(self.size, r, &buf[c.clone()])?;
            self.chunks.push(r);
            self.size += c.len() as u64;
        }
        Ok(())
    }

    fn digest(self) -> FileDigest {
        FileDigest { size: self.size, hash: file_hash(&self.chunks), chunks: self.chunks }
    }
}

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
    ///
    /// Reads blocks of several chunks and cuts them in place; only the unfinished chunk at a
    /// block's end moves to the next. A file bigger than one block is hashed on a second thread,
    /// a block behind the reading and cutting, so the two costs overlap.
    pub fn digest_with(
        &self,
        mut r: impl Read,
        mut on_chunk: impl FnMut(u64, ChunkRef, &[u8]) -> io::Result<()>,
    ) -> io::Result<FileDigest> {
        let block = READ_BLOCK.max(2 * self.max as usize);
        let mut out = Emitted::default();
        let mut buf = Vec::new();
        if fill(&mut r, &mut buf, block)? {
            let cuts = self.cuts(&buf, true);
            let hashes: Vec<Hash> = cuts.iter().map(|c| Hash::of(&buf[c.clone()])).collect();
            out.emit(&buf, &cuts, &hashes, &mut on_chunk)?;
            return Ok(out.digest());
        }
        type Block = (Vec<u8>, Vec<Range<usize>>);
        std::thread::scope(|s| {
            let (to_hasher, jobs) = std::sync::mpsc::sync_channel::<Block>(1);
            let (to_reader, hashed) = std::sync::mpsc::sync_channel::<(Block, Vec<Hash>)>(1);
            s.spawn(move || {
                for (buf, cuts) in jobs {
                    let hashes = cuts.iter().map(|c| Hash::of(&buf[c.clone()])).collect();
                    if to_reader.send(((buf, cuts), hashes)).is_err() {
                        break;
                    }
                }
            });
            let lost = || io::Error::other("the hashing thread stopped");
            let mut spare = Vec::new();
            let mut in_flight = false;
            let mut eof = false;
            loop {
                let cuts = self.cuts(&buf, eof);
                let mut next = std::mem::take(&mut spare);
                next.clear();
                next.extend_from_slice(&buf[cuts.last().map_or(0, |c| c.end)..]);
                if in_flight {
                    let ((done, done_cuts), hashes) = hashed.recv().map_err(|_| lost())?;
                    out.emit(&done, &done_cuts, &hashes, &mut on_chunk)?;
                    spare = done;
                }
                to_hasher.send((buf, cuts)).map_err(|_| lost())?;
                in_flight = true;
                if eof {
                    break;
                }
                buf = next;
                eof = fill(&mut r, &mut buf, block)?;
            }
            let ((done, done_cuts), hashes) = hashed.recv().map_err(|_| lost())?;
            out.emit(&done, &done_cuts, &hashes, &mut on_chunk)?;
            Ok(out.digest())
        })
    }

    /// The chunks of `buf` that are cut for sure, exactly as over the whole input: all of them
    /// at the end of the input (`eof`), else those that end before `buf` does. FastCDC stops a
    /// chunk at the first boundary its rolling hash finds (from `min` on, with the stricter
    /// mask up to `avg`), or at `max`: a boundary found before the end of what it was given is
    /// the one it would find given more, while a cut at that end may only be the end of the
    /// bytes read so far, and waits for the next block.
    fn cuts(&self, buf: &[u8], eof: bool) -> Vec<Range<usize>> {
        let cdc = fastcdc::v2020::FastCDC::new(buf, self.min, self.avg, self.max);
        let mut cuts = Vec::new();
        let mut pos = 0;
        while pos < buf.len() {
            let (_, end) = cdc.cut(pos, buf.len() - pos);
            if end == buf.len() && !eof {
                break;
            }
            cuts.push(pos..end);
            pos = end;
        }
        cuts
    }

    /// [`Chunker::digest`] of bytes in memory: the same chunks, cut in place rather than read
    /// block by block.
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

    /// A reader that hands out a few bytes at a time, as a pipe or a slow disk may.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            self.1 = self.1 % 9973 + 4093;
            let n = self.1.min(out.len()).min(self.0.len());
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn a_stream_of_many_blocks_read_in_odd_pieces_is_cut_as_in_memory() {
        let sizes = [
            (Chunker::tiny(), 20 << 20),
            (Chunker::default(), 2 * READ_BLOCK),
            (Chunker::default(), (3 * READ_BLOCK) + 12_345),
        ];
        for (chunker, len) in sizes {
            let data = pseudo_random(len, 11);
            let mut offsets = Vec::new();
            let streamed = chunker
                .digest_with(Trickle(&data, 0), |off, r, bytes| {
                    assert_eq!(Hash::of(bytes), r.hash);
                    offsets.push(off);
                    Ok(())
                })
                .unwrap();
            assert_eq!(chunker.digest_bytes(&data), streamed, "{len} bytes");
            assert_eq!(offsets.len(), streamed.chunks.len());
        }
    }

    /// Runs of zeros find no boundary, so their chunks end at `max`, some of them right at the
    /// end of a read block: such a cut waits for the next block, and the chunks are those of
    /// the whole input.
    #[test]
    fn chunks_cut_at_their_maximum_across_read_blocks_are_cut_as_in_memory() {
        for chunker in [Chunker::default(), Chunker::tiny()] {
            for zeros_at in [0, READ_BLOCK - 3 * (1 << 20), READ_BLOCK - 1, READ_BLOCK + 12_345] {
                let mut data = pseudo_random(3 * READ_BLOCK + 777, 13);
                let end = (zeros_at + 2 * READ_BLOCK).min(data.len() - 100);
                data[zeros_at..end].fill(0);
                let streamed = chunker.digest_with(Trickle(&data, 0), |_, _, _| Ok(())).unwrap();
                assert_eq!(chunker.digest_bytes(&data), streamed, "zeros from {zeros_at}");
                assert!(streamed.chunks.iter().any(|c| c.len == chunker.max), "some chunks end at the maximum");
            }
        }
    }

    #[test]
    fn an_error_from_the_chunk_handler_stops_a_big_file() {
        let data = pseudo_random(3 * READ_BLOCK, 5);
        let mut seen = 0;
        let r = Chunker::default().digest_with(&data[..], |_, _, _| {
            seen += 1;
            if seen == 5 { Err(io::Error::other("changed while read")) } else { Ok(()) }
        });
        assert_eq!(r.unwrap_err().to_string(), "changed while read");
        assert_eq!(seen, 5);
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
