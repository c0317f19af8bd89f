//! Property tests for the wire codec: every message round-trips through a frame, prefixes of a
//! frame ask for exactly the missing bytes, garbage never panics the decoder (whole or fed in
//! pieces), and entry conversion rejects what it must and round-trips what it accepts.

mod support;

use filesync_core::{EntryKind, EntryState};
use filesync_proto::convert::{
    KIND_DIR, KIND_FILE, chunks_from_wire, chunks_to_wire, entry_from_wire, entry_to_wire, hash_from_wire,
};
use filesync_proto::*;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::ValueTree;
use proptest::test_runner::{FileFailurePersistence, TestRunner};
use std::collections::BTreeSet;
use support::*;

#[test]
fn every_message_type_has_a_strategy() {
    let mut runner = TestRunner::deterministic();
    let covered: BTreeSet<u16> = message_strategies()
        .iter()
        .map(|s| s.new_tree(&mut runner).expect("strategy generates").current().type_code())
        .collect();
    assert_eq!(covered, known_type_codes(), "add a strategy for each new message type");
}

#[test]
fn plausible_entries_reach_every_success_path() {
    let mut runner = TestRunner::deterministic();
    let strategy = plausible_wire_entry();
    let (mut files, mut dirs, mut deletions, mut rejected) = (0, 0, 0, 0);
    for _ in 0..2000 {
        let w = strategy.new_tree(&mut runner).expect("strategy generates").current();
        match entry_from_wire(&w) {
            Ok(EntryState { meta: None, .. }) => deletions += 1,
            Ok(EntryState { meta: Some(m), .. }) if m.kind == EntryKind::Dir => dirs += 1,
            Ok(_) => files += 1,
            Err(_) => rejected += 1,
        }
    }
    for (what, n) in [("files", files), ("directories", dirs), ("deletions", deletions), ("rejections", rejected)] {
        assert!(n >= 100, "only {n} {what} in 2000 samples: the strategy no longer exercises that path");
    }
}

proptest! {
    // Integration tests have no lib.rs beside them, so failures persist next to this file.
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn frames_round_trip(f in frame(), trailing in blob(16)) {
        let mut bytes = f.to_bytes().unwrap().to_vec();
        prop_assert_eq!(bytes.len(), f.encoded_len());
        prop_assert_eq!(u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize, bytes.len() - 4);
        prop_assert_eq!(u16::from_be_bytes([bytes[4], bytes[5]]), f.message.type_code());
        let len = bytes.len();
        // Whatever follows the frame belongs to the next one and is not consumed.
        bytes.extend_from_slice(&trailing);
        prop_assert_eq!(decode_frame(&bytes).unwrap(), Decoded::Frame(f, len));
    }

    #[test]
    fn every_prefix_asks_for_exactly_the_missing_bytes(f in frame()) {
        let bytes = f.to_bytes().unwrap();
        let total = bytes.len();
        for k in 0..total {
            // Before the length field is complete only its remainder is known to be missing.
            let want = if k < 4 { 4 - k } else { total - k };
            prop_assert_eq!(decode_frame(&bytes[..k]), Ok(Decoded::NeedMore(want)), "prefix of {} bytes", k);
        }
    }

    /// The evolvability rule of the spec: a field this build does not know is skipped, so a
    /// newer peer may add fields within a protocol version.
    #[test]
    fn unknown_fields_are_skipped(f in frame(), tag in 100u32..100_000, value in any::<u64>(), bytes in blob(20)) {
        let encoded = f.to_bytes().unwrap();
        let mut body = encoded[12..].to_vec();
        prost::encoding::encode_key(tag, prost::encoding::WireType::Varint, &mut body);
        prost::encoding::encode_varint(value, &mut body);
        prost::encoding::bytes::encode(tag + 1, &bytes, &mut body);
        let raw = raw_frame(f.message.type_code(), 0, f.request_id, &body);
        prop_assert_eq!(decode_frame(&raw).unwrap(), Decoded::Frame(f, raw.len()));
    }

    #[test]
    fn a_stream_split_anywhere_yields_the_same_frames(
        frames in prop::collection::vec(frame(), 1..6),
        idx in prop::collection::vec(any::<Index>(), 0..12),
    ) {
        let data = encode_all(&frames);
        let (got, rest) = feed_in_pieces(&data, &cuts(data.len(), &idx));
        prop_assert_eq!(got, frames);
        prop_assert_eq!(rest, Ok(0));
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in blob(600), idx in prop::collection::vec(any::<Index>(), 0..8)) {
        check_decoders_agree(&data, &idx)?;
    }

    #[test]
    fn random_bodies_never_panic(frames in prop::collection::vec(raw_frame_with_random_body(), 1..4),
                                 idx in prop::collection::vec(any::<Index>(), 0..8)) {
        let data = frames.concat();
        check_decoders_agree(&data, &idx)?;
        // Whatever decodes must survive a re-encode (prost may drop unknown fields, so compare
        // decoded values, not bytes).
        for f in decode_all(&data).0 {
            let again = f.to_bytes().unwrap();
            prop_assert_eq!(decode_frame(&again).unwrap(), Decoded::Frame(f, again.len()));
        }
    }

    #[test]
    fn chunk_lists_never_panic_and_round_trip(b in blob(200)) {
        match chunks_from_wire(&b) {
            Ok(c) => {
                prop_assert!(b.len().is_multiple_of(36));
                prop_assert_eq!(c.len(), b.len() / 36);
                prop_assert_eq!(chunks_to_wire(&c), b.clone());
            }
            Err(_) => prop_assert!(!b.len().is_multiple_of(36)),
        }
        prop_assert_eq!(hash_from_wire(&b).is_ok(), b.len() == 32);
    }

    #[test]
    fn arbitrary_wire_entries_never_panic(w in wire_entry()) {
        check_entry(&w)?;
    }

    #[test]
    fn plausible_wire_entries_convert_or_are_rejected(w in plausible_wire_entry()) {
        check_entry(&w)?;
    }

    #[test]
    fn domain_entries_round_trip(e in entry_state()) {
        let w = entry_to_wire(&e);
        prop_assert_eq!(entry_from_wire(&w), Ok(e.clone()));
        // And through a real frame, as they travel.
        let f = Frame::new(1, Message::Changes(Changes { entries: vec![w], more: false, folder_seq: e.rev }));
        let bytes = f.to_bytes().unwrap();
        match decode_frame(&bytes).unwrap() {
            Decoded::Frame(Frame { message: Message::Changes(c), .. }, _) => {
                prop_assert_eq!(entry_from_wire(&c.entries[0]), Ok(e));
            }
            other => prop_assert!(false, "unexpected {:?}", other),
        }
    }
}

/// `FrameDecoder` fed `data` in pieces behaves exactly like `decode_frame` on the whole input:
/// the same frames, then the same error or the same number of unconsumed bytes.
fn check_decoders_agree(data: &[u8], idx: &[Index]) -> Result<(), TestCaseError> {
    let whole = decode_all(data);
    let pieces = feed_in_pieces(data, &cuts(data.len(), idx));
    prop_assert_eq!(&pieces, &whole);
    // A single call on a prefix never claims more bytes than it was given.
    for k in [0, 1, 4, 11, 12, data.len() / 2, data.len()] {
        let k = k.min(data.len());
        match decode_frame(&data[..k]) {
            Ok(Decoded::Frame(_, used)) => prop_assert!(used <= k && used >= 12),
            Ok(Decoded::NeedMore(n)) => prop_assert!(n > 0),
            Err(_) => {}
        }
    }
    Ok(())
}

/// Conversion never panics; what it accepts keeps the fields it validated and survives a trip
/// back to the wire and in again unchanged.
fn check_entry(w: &WireEntry) -> Result<(), TestCaseError> {
    let Ok(e) = entry_from_wire(w) else {
        return Ok(());
    };
    prop_assert_eq!(e.path.as_str(), w.path.as_str());
    prop_assert_eq!(e.rev, w.rev);
    prop_assert_eq!(e.meta.is_none(), w.deleted);
    prop_assert_eq!(e.device_id, w.device_id);
    prop_assert_eq!(&e.device_name, &w.device_name);
    prop_assert_eq!(e.committed_at, w.committed_at);
    if let Some(m) = &e.meta {
        prop_assert_eq!(m.size, w.size);
        prop_assert_eq!(m.mtime_ns, w.mtime_ns);
        match m.kind {
            EntryKind::File => {
                prop_assert_eq!(w.kind, KIND_FILE);
                prop_assert_eq!(m.hash.as_bytes().as_slice(), w.hash.as_slice());
                prop_assert_eq!(m.hash, filesync_core::file_hash(&m.chunks));
                prop_assert_eq!(chunks_to_wire(&m.chunks), w.chunks.clone());
                prop_assert_eq!(m.chunks.iter().map(|c| c.len as u64).sum::<u64>(), m.size);
            }
            EntryKind::Dir => {
                prop_assert_eq!(w.kind, KIND_DIR);
                prop_assert!(m.chunks.is_empty());
            }
        }
    }
    let back = entry_to_wire(&e);
    prop_assert_eq!(entry_from_wire(&back), Ok(e.clone()));
    prop_assert_eq!(entry_to_wire(&e), back, "entry_to_wire is deterministic");
    Ok(())
}

/// Seeds for the fuzzer: valid frames of every message type, in the fuzz target's input format
/// (the first byte seeds the piece sizes, the rest is the stream). Always checked here; also
/// written out when `FUZZ_SEED_DIR` is set, e.g.
/// `FUZZ_SEED_DIR=$PWD/fuzz/corpus/frame_decoder cargo test -p filesync-proto --test codec_props fuzz_seeds`.
#[test]
fn fuzz_seeds_are_valid_frames() {
    let dir = std::env::var_os("FUZZ_SEED_DIR").map(std::path::PathBuf::from);
    if let Some(d) = &dir {
        std::fs::create_dir_all(d).unwrap();
    }
    let mut runner = TestRunner::deterministic();
    let mut seeds = 0;
    for s in message_strategies() {
        for i in 0..4u8 {
            let m = s.new_tree(&mut runner).unwrap().current();
            let frame = Frame::new(u32::from(i) + 1, m.clone());
            let mut data = vec![i.wrapping_mul(61)];
            data.extend_from_slice(&encode_all(std::slice::from_ref(&frame)));
            match decode_frame(&data[1..]) {
                Ok(Decoded::Frame(f, used)) => {
                    assert_eq!(f, frame);
                    assert_eq!(used, data.len() - 1);
                }
                other => panic!("seed for {} does not decode: {other:?}", m.name()),
            }
            if let Some(d) = &dir {
                std::fs::write(d.join(format!("seed-{}-{i}", m.name())), &data).unwrap();
            }
            seeds += 1;
        }
    }
    assert_eq!(seeds, 4 * message_strategies().len());
}
