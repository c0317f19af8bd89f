//! Fuzz target: feeds arbitrary bytes to `FrameDecoder` in pieces, checks that it agrees with
//! `decode_frame` on the whole input, and runs every wire-to-domain conversion on what decodes.
//!
//! Input layout: the first byte seeds the piece sizes; the rest is the byte stream.

#![no_main]

use filesync_proto::convert::{entry_from_wire, entry_to_wire, hash_from_wire};
use filesync_proto::{Decoded, Frame, FrameDecoder, FrameError, Message, WireEntry, decode_frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };

    let (pieces, pieces_end) = feed_in_pieces(stream, seed);
    let (whole, whole_end) = decode_all(stream);
    assert_eq!(pieces, whole, "piecewise decoding disagrees with decode_frame");
    assert_eq!(pieces_end, whole_end, "piecewise decoding ends differently");

    for f in &whole {
        // A decoded frame re-encodes to something that decodes to the same frame.
        let bytes = f.to_bytes().expect("a decoded frame fits in a frame");
        assert_eq!(decode_frame(&bytes), Ok(Decoded::Frame(f.clone(), bytes.len())));
        convert_everything(&f.message);
    }
});

/// Piece sizes from a tiny xorshift seeded by `seed`: mostly small, sometimes large.
fn feed_in_pieces(stream: &[u8], seed: u8) -> (Vec<Frame>, Result<usize, FrameError>) {
    let mut x = u32::from(seed) | 0x100;
    let mut d = FrameDecoder::new();
    let mut frames = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let n = if x % 4 == 0 { (x as usize >> 8) % 4096 } else { (x as usize >> 8) % 16 } + 1;
        let (piece, tail) = rest.split_at(n.min(rest.len()));
        rest = tail;
        d.push(piece);
        loop {
            match d.next_frame() {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => return (frames, Err(e)),
            }
        }
    }
    (frames, Ok(d.buffered()))
}

fn decode_all(mut rest: &[u8]) -> (Vec<Frame>, Result<usize, FrameError>) {
    let mut frames = Vec::new();
    loop {
        match decode_frame(rest) {
            Ok(Decoded::Frame(f, used)) => {
                assert!(used >= 12 && used <= rest.len());
                frames.push(f);
                rest = &rest[used..];
            }
            Ok(Decoded::NeedMore(n)) => {
                assert!(n > 0);
                return (frames, Ok(rest.len()));
            }
            Err(e) => return (frames, Err(e)),
        }
    }
}

/// Runs the conversions a server or client applies to what it receives.
fn convert_everything(m: &Message) {
    let entries: Vec<&WireEntry> = match m {
        Message::Changes(c) => c.entries.iter().collect(),
        Message::Commit(c) => c.changes.iter().filter_map(|ch| ch.entry.as_ref()).collect(),
        Message::CommitResult(r) => r.outcomes.iter().filter_map(|o| o.current.as_ref()).collect(),
        _ => Vec::new(),
    };
    for w in entries {
        if let Ok(e) = entry_from_wire(w) {
            assert_eq!(entry_from_wire(&entry_to_wire(&e)), Ok(e), "accepted entry does not round-trip");
        }
    }
    let hashes: Vec<&[u8]> = match m {
        Message::QueryChunks(q) => q.hashes.iter().map(Vec::as_slice).collect(),
        Message::GetChunks(g) => g.hashes.iter().map(Vec::as_slice).collect(),
        Message::PutChunks(p) => p.chunks.iter().map(|c| c.hash.as_slice()).collect(),
        Message::Chunks(c) => c.chunks.iter().map(|c| c.hash.as_slice()).collect(),
        _ => Vec::new(),
    };
    for h in hashes {
        assert_eq!(hash_from_wire(h).is_ok(), h.len() == 32);
    }
    if let Message::Error(e) = m {
        let _ = e.code();
    }
}
