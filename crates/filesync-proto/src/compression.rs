//! How chunk bytes travel: as they are, or compressed with zstd (`ChunkData.encoding`). A
//! chunk's name stays the BLAKE3 hash of its plain bytes, so deduplication and verification do
//! not depend on how it was sent.
//!
//! The sender decides cheaply: it compresses a 16 KiB sample first and sends the chunk as it is
//! when the sample does not shrink by a tenth (photos, video, archives, encrypted data), so
//! incompressible data costs a few microseconds per chunk. The receiver inflates into at most
//! the size the protocol allows for one chunk, so a small frame cannot become a large
//! allocation.
//!
//! From version 5 a message's compressible chunks go together in one zstd frame instead
//! (`pack`, `unpack`): the many small files of a source tree then share one context, which
//! compresses them far better than each alone.

use crate::ChunkData;
use bytes::Bytes;
use std::cell::RefCell;

/// `ChunkData.encoding`: the bytes are the chunk itself.
pub const ENCODING_PLAIN: u32 = 0;
/// `ChunkData.encoding`: the bytes are one zstd frame holding the chunk.
pub const ENCODING_ZSTD: u32 = 1;
/// `ChunkData.encoding`: the bytes are a delta from the chunk `ChunkData.base` (`crate::delta`).
pub const ENCODING_DELTA: u32 = 2;

/// `ChunkData.encoding` (version 5): the chunk's `size` bytes are the next ones of the
/// message's packed stream (`pack`).
pub const ENCODING_PACKED: u32 = 3;

/// The zstd level senders use for a chunk alone: fast enough (hundreds of MB/s per core) to
/// beat the network on a LAN, and most of what higher levels gain on a single chunk.
pub const ZSTD_LEVEL: i32 = 1;

/// The zstd level of a packed stream. Packing lets the chunks of many small files share one
/// context, where a higher level finds much more: on 100 MiB of Rust sources (7,505 files),
/// each file alone at level 1 is 23.0 % of the bytes and at level 3 22.0 %; streams of 8 MiB at
/// level 1 are 18.6 % and at level 3 13.8 % (measured with the zstd tool, 2026-12-01).
pub const PACK_LEVEL: i32 = 3;

const SAMPLE: usize = 16 * 1024;

thread_local! {
    // One zstd context per thread, reused: making a context costs more than compressing a
    // small chunk, and a folder of small files sends thousands of them.
    static COMPRESSOR: CompressorCell = const { RefCell::new(None) };
    static PACKER: CompressorCell = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

type CompressorCell = RefCell<Option<zstd::bulk::Compressor<'static>>>;

/// `data` compressed at `level` with this thread's compressor in `cell`.
fn compress_with(
    cell: &'static std::thread::LocalKey<CompressorCell>,
    level: i32,
    data: &[u8],
) -> std::io::Result<Vec<u8>> {
    cell.with_borrow_mut(|c| {
        let c = match c {
            Some(c) => c,
            None => c.insert(zstd::bulk::Compressor::new(level)?),
        };
        c.compress(data)
    })
}

fn compress(data: &[u8]) -> std::io::Result<Vec<u8>> {
    compress_with(&COMPRESSOR, ZSTD_LEVEL, data)
}

fn compress_packed(data: &[u8]) -> std::io::Result<Vec<u8>> {
    compress_with(&PACKER, PACK_LEVEL, data)
}

fn decompress(data: &[u8], max_len: usize) -> std::io::Result<Vec<u8>> {
    DECOMPRESSOR.with_borrow_mut(|d| {
        let d = match d {
            Some(d) => d,
            None => d.insert(zstd::bulk::Decompressor::new()?),
        };
        d.decompress(data, max_len)
    })
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChunkCodecError {
    #[error("unknown chunk encoding {0}")]
    UnknownEncoding(u32),
    #[error("compressed chunk data is damaged or inflates beyond {0} bytes")]
    Corrupt(usize),
    #[error("the packed chunks are damaged, or do not add up to the sizes their chunks give")]
    Packed,
}

/// Whether a sample from the start of `data` shrinks by a tenth at `ZSTD_LEVEL`.
fn sample_shrinks(data: &[u8]) -> bool {
    let sample = &data[..data.len().min(SAMPLE)];
    compress(sample).is_ok_and(|c| c.len() * 10 < sample.len() * 9)
}

/// `data` as it should be sent alone: `(encoding, bytes)`.
pub fn encode_chunk(data: &Bytes) -> (u32, Bytes) {
    if data.len() < 256 || !sample_shrinks(data) {
        return (ENCODING_PLAIN, data.clone());
    }
    match compress(data) {
        Ok(c) if c.len() * 20 < data.len() * 19 => (ENCODING_ZSTD, Bytes::from(c)),
        _ => (ENCODING_PLAIN, data.clone()),
    }
}

/// The chunk's plain bytes, refusing anything that would inflate beyond `max_len`.
pub fn decode_chunk(encoding: u32, data: Bytes, max_len: usize) -> Result<Bytes, ChunkCodecError> {
    match encoding {
        ENCODING_PLAIN => Ok(data),
        ENCODING_ZSTD => decompress(&data, max_len).map(Bytes::from).map_err(|_| ChunkCodecError::Corrupt(max_len)),
        other => Err(ChunkCodecError::UnknownEncoding(other)),
    }
}

/// `data` as it should go in a message that may pack its chunks (version 5): `(encoding,
/// bytes)` with the bytes plain either way; `ENCODING_PACKED` marks a chunk for `pack`. Tiny
/// chunks always are (a file of a few lines compresses only beside others); a bigger one when
/// its sample shrinks, so incompressible data stays out of the stream.
pub fn encode_packable(data: &Bytes) -> (u32, Bytes) {
    let packs = data.len() < 256 || sample_shrinks(data);
    (if packs { ENCODING_PACKED } else { ENCODING_PLAIN }, data.clone())
}

/// Packs the message's chunks that `encode_packable` marked: their bytes go, in order, into
/// one zstd frame at `PACK_LEVEL`, returned for the message's `packed` field, and each keeps
/// only its `size`. When the frame would not be smaller by a twentieth they are sent as they
/// are, and the frame is empty.
pub fn pack(chunks: &mut [ChunkData]) -> Bytes {
    let marked = || chunks.iter().filter(|c| c.encoding == ENCODING_PACKED);
    let total: usize = marked().map(|c| c.data.len()).sum();
    if marked().next().is_none() {
        return Bytes::new();
    }
    let mut plain = Vec::with_capacity(total);
    for c in marked() {
        plain.extend_from_slice(&c.data);
    }
    let frame = compress_packed(&plain).ok().filter(|f| f.len() * 20 < total * 19);
    for c in chunks.iter_mut().filter(|c| c.encoding == ENCODING_PACKED) {
        if frame.is_some() {
            c.size = c.data.len() as u32;
            c.data = Bytes::new();
        } else {
            c.encoding = ENCODING_PLAIN;
        }
    }
    frame.map(Bytes::from).unwrap_or_default()
}

/// The sum of the sizes of the packed chunks, to check against a limit before `unpack`.
pub fn packed_size(chunks: &[ChunkData]) -> u64 {
    chunks.iter().filter(|c| c.encoding == ENCODING_PACKED).map(|c| u64::from(c.size)).sum()
}

/// Gives each packed chunk its bytes from the message's `packed` frame, as a plain chunk.
/// Refuses a chunk above `max_chunk`, sizes adding up above `max_total`, a packed chunk with
/// bytes of its own, and a frame that is damaged, holds more or fewer bytes than the sizes say,
/// or comes with no packed chunk.
pub fn unpack(
    chunks: &mut [ChunkData],
    packed: &[u8],
    max_chunk: usize,
    max_total: usize,
) -> Result<(), ChunkCodecError> {
    let marked = || chunks.iter().filter(|c| c.encoding == ENCODING_PACKED);
    if marked().next().is_none() {
        return if packed.is_empty() { Ok(()) } else { Err(ChunkCodecError::Packed) };
    }
    if marked().any(|c| c.size as usize > max_chunk || !c.data.is_empty()) {
        return Err(ChunkCodecError::Packed);
    }
    let total = packed_size(chunks);
    if total > max_total as u64 {
        return Err(ChunkCodecError::Corrupt(max_total));
    }
    let total = total as usize;
    let plain = decompress(packed, total).map_err(|_| ChunkCodecError::Packed)?;
    if plain.len() != total {
        return Err(ChunkCodecError::Packed);
    }
    let plain = Bytes::from(plain);
    let mut at = 0;
    for c in chunks.iter_mut().filter(|c| c.encoding == ENCODING_PACKED) {
        let size = c.size as usize;
        c.data = plain.slice(at..at + size);
        c.encoding = ENCODING_PLAIN;
        c.size = 0;
        at += size;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(n: usize) -> Bytes {
        filesync_core::testdata::random_bytes(n, 1).into()
    }

    #[test]
    fn text_is_compressed_and_comes_back_whole() {
        let text: Bytes = "fn main() { println!(\"hello, world\"); }\n".repeat(5000).into();
        let (enc, sent) = encode_chunk(&text);
        assert_eq!(enc, ENCODING_ZSTD);
        assert!(sent.len() < text.len() / 10, "{} of {}", sent.len(), text.len());
        assert_eq!(decode_chunk(enc, sent, 4 << 20).unwrap(), text);
    }

    #[test]
    fn random_bytes_and_tiny_chunks_are_sent_as_they_are() {
        let r = noise(1 << 20);
        assert_eq!(encode_chunk(&r), (ENCODING_PLAIN, r.clone()));
        let tiny = Bytes::from_static(b"aaaaaaaaaaaaaaaaaaaa");
        assert_eq!(encode_chunk(&tiny).0, ENCODING_PLAIN);
        assert_eq!(decode_chunk(ENCODING_PLAIN, r.clone(), 0).unwrap(), r, "plain bytes are not inflated");
    }

    fn chunk(data: &Bytes) -> ChunkData {
        let (encoding, data) = encode_packable(data);
        ChunkData { hash: vec![0; 32], data, encoding, ..Default::default() }
    }

    #[test]
    fn compressible_chunks_share_one_frame_and_come_back_whole() {
        let texts: Vec<Bytes> = (0..20).map(|i| format!("fn f{i}() -> u32 {{ {i} }}\n").repeat(40).into()).collect();
        let r = noise(100_000);
        let mut chunks: Vec<ChunkData> = texts.iter().map(chunk).collect();
        chunks.insert(7, chunk(&r));
        assert_eq!(chunks[7].encoding, ENCODING_PLAIN, "random bytes stay out of the stream");
        let packed = pack(&mut chunks);
        let plain: usize = texts.iter().map(|t| t.len()).sum();
        assert!(packed.len() < plain / 20, "{} of {plain}", packed.len());
        assert!(chunks.iter().filter(|c| c.encoding == ENCODING_PACKED).all(|c| c.data.is_empty()));
        assert_eq!(packed_size(&chunks), plain as u64);
        unpack(&mut chunks, &packed, 4 << 20, 8 << 20).unwrap();
        let mut want = texts.clone();
        want.insert(7, r);
        assert_eq!(chunks.iter().map(|c| c.data.clone()).collect::<Vec<_>>(), want);
        assert!(chunks.iter().all(|c| c.encoding == ENCODING_PLAIN));
    }

    #[test]
    fn a_stream_that_would_not_shrink_is_not_sent() {
        // Tiny chunks are always marked; random ones together do not shrink.
        let mut chunks: Vec<ChunkData> =
            (0..10).map(|i| chunk(&filesync_core::testdata::random_bytes(200, i).into())).collect();
        assert!(chunks.iter().all(|c| c.encoding == ENCODING_PACKED));
        assert!(pack(&mut chunks).is_empty());
        assert!(chunks.iter().all(|c| c.encoding == ENCODING_PLAIN && c.data.len() == 200));
    }

    #[test]
    fn packed_chunks_that_do_not_add_up_are_refused() {
        let text: Bytes = "hello packed world\n".repeat(100).into();
        let fresh = || {
            let mut chunks = vec![chunk(&text), chunk(&text)];
            let packed = pack(&mut chunks);
            (chunks, packed)
        };
        let (mut c, p) = fresh();
        c[1].size -= 1;
        assert_eq!(unpack(&mut c, &p, 4 << 20, 8 << 20), Err(ChunkCodecError::Packed), "frame longer than the sizes");
        let (mut c, p) = fresh();
        c[0].size += 1;
        assert_eq!(unpack(&mut c, &p, 4 << 20, 8 << 20), Err(ChunkCodecError::Packed), "frame shorter than the sizes");
        let (mut c, p) = fresh();
        assert_eq!(unpack(&mut c, &p[..p.len() - 3], 4 << 20, 8 << 20), Err(ChunkCodecError::Packed), "cut frame");
        let (mut c, p) = fresh();
        c[0].data = Bytes::from_static(b"x");
        assert_eq!(unpack(&mut c, &p, 4 << 20, 8 << 20), Err(ChunkCodecError::Packed), "bytes of its own");
        let (mut c, p) = fresh();
        assert_eq!(unpack(&mut c, &p, 1000, 8 << 20), Err(ChunkCodecError::Packed), "a chunk above the limit");
        let (mut c, p) = fresh();
        assert_eq!(
            unpack(&mut c, &p, 4 << 20, 3000),
            Err(ChunkCodecError::Corrupt(3000)),
            "the message above its limit"
        );
        let mut plain = vec![ChunkData { hash: vec![0; 32], data: text.clone(), ..Default::default() }];
        assert_eq!(unpack(&mut plain, &p, 4 << 20, 8 << 20), Err(ChunkCodecError::Packed), "a frame nobody takes");
        // A small frame declaring small sizes cannot inflate to more.
        let bomb = zstd::bulk::compress(&vec![0u8; 5 << 20], 3).unwrap();
        let mut c = vec![ChunkData { hash: vec![0; 32], encoding: ENCODING_PACKED, size: 100, ..Default::default() }];
        assert_eq!(unpack(&mut c, &bomb, 4 << 20, 8 << 20), Err(ChunkCodecError::Packed));
    }

    #[test]
    fn a_small_frame_cannot_inflate_beyond_the_limit() {
        let zeros = vec![0u8; 5 << 20];
        let bomb = Bytes::from(zstd::bulk::compress(&zeros, 3).unwrap());
        assert!(bomb.len() < 4096);
        assert_eq!(decode_chunk(ENCODING_ZSTD, bomb, 4 << 20), Err(ChunkCodecError::Corrupt(4 << 20)));
        assert_eq!(
            decode_chunk(ENCODING_ZSTD, Bytes::from_static(b"not zstd"), 100),
            Err(ChunkCodecError::Corrupt(100))
        );
        assert_eq!(decode_chunk(7, Bytes::new(), 100), Err(ChunkCodecError::UnknownEncoding(7)));
    }
}
