//! How chunk bytes travel: as they are, or compressed with zstd (`ChunkData.encoding`). A
//! chunk's name stays the BLAKE3 hash of its plain bytes, so deduplication and verification do
//! not depend on how it was sent.
//!
//! The sender decides cheaply: it compresses a 16 KiB sample first and sends the chunk as it is
//! when the sample does not shrink by a tenth (photos, video, archives, encrypted data), so
//! incompressible data costs a few microseconds per chunk. The receiver inflates into at most
//! the size the protocol allows for one chunk, so a small frame cannot become a large
//! allocation.

use bytes::Bytes;
use std::cell::RefCell;

/// `ChunkData.encoding`: the bytes are the chunk itself.
pub const ENCODING_PLAIN: u32 = 0;
/// `ChunkData.encoding`: the bytes are one zstd frame holding the chunk.
pub const ENCODING_ZSTD: u32 = 1;
/// `ChunkData.encoding`: the bytes are a delta from the chunk `ChunkData.base` (`crate::delta`).
pub const ENCODING_DELTA: u32 = 2;

/// The zstd level senders use: fast enough (hundreds of MB/s per core) to beat the network on
/// a LAN, and most of what higher levels gain on text.
pub const ZSTD_LEVEL: i32 = 1;

const SAMPLE: usize = 16 * 1024;

thread_local! {
    // One zstd context per thread, reused: making a context costs more than compressing a
    // small chunk, and a folder of small files sends thousands of them.
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

fn compress(data: &[u8]) -> std::io::Result<Vec<u8>> {
    COMPRESSOR.with_borrow_mut(|c| {
        let c = match c {
            Some(c) => c,
            None => c.insert(zstd::bulk::Compressor::new(ZSTD_LEVEL)?),
        };
        c.compress(data)
    })
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
}

/// `data` as it should be sent: `(encoding, bytes)`.
pub fn encode_chunk(data: &Bytes) -> (u32, Bytes) {
    if data.len() < 256 {
        return (ENCODING_PLAIN, data.clone());
    }
    let sample = &data[..data.len().min(SAMPLE)];
    match compress(sample) {
        Ok(c) if c.len() * 10 < sample.len() * 9 => {}
        _ => return (ENCODING_PLAIN, data.clone()),
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
