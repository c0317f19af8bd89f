//! Shared by the codec property tests: proptest strategies for every wire message and for
//! entries (valid, nearly valid and hostile), raw-frame builders, and two reference decoders
//! (piecewise through `FrameDecoder`, whole through `decode_frame`).

use bytes::Bytes;
use filesync_core::{ChunkRef, EntryKind, EntryState, FileMeta, Hash, RelPath};
use filesync_proto::convert::{KIND_DIR, KIND_FILE, chunks_to_wire};
use filesync_proto::*;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::Union;
use std::collections::BTreeSet;

/// Short text: mostly path-like ASCII, sometimes any Unicode.
pub fn text() -> BoxedStrategy<String> {
    prop_oneof![3 => "[a-z0-9/._ -]{0,16}", 1 => any::<String>()].boxed()
}

pub fn blob(max: usize) -> BoxedStrategy<Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max).boxed()
}

/// A hash-sized blob most of the time, any length sometimes.
pub fn hash_bytes() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![3 => any::<[u8; 32]>().prop_map(|h| h.to_vec()), 1 => blob(40)].boxed()
}

pub fn wire_entry() -> BoxedStrategy<WireEntry> {
    (
        (text(), any::<u64>(), any::<bool>(), any::<u32>(), any::<u64>(), any::<i64>()),
        (any::<bool>(), hash_bytes(), blob(80), any::<u64>(), text(), any::<i64>()),
    )
        .prop_map(
            |(
                (path, rev, deleted, kind, size, mtime_ns),
                (executable, hash, chunks, device_id, device_name, committed_at),
            )| {
                WireEntry {
                    path,
                    rev,
                    deleted,
                    kind,
                    size,
                    mtime_ns,
                    executable,
                    hash,
                    chunks,
                    device_id,
                    device_name,
                    committed_at,
                }
            },
        )
        .boxed()
}

pub fn device_info() -> impl Strategy<Value = DeviceInfo> {
    (any::<u64>(), text(), any::<i64>(), any::<i64>(), any::<bool>(), any::<bool>()).prop_map(
        |(id, name, created_at, last_seen, revoked, current)| DeviceInfo {
            id,
            name,
            created_at,
            last_seen,
            revoked,
            current,
        },
    )
}

pub fn folder_info() -> impl Strategy<Value = FolderInfo> {
    (any::<u64>(), text(), any::<u64>()).prop_map(|(id, name, seq)| FolderInfo { id, name, seq })
}

pub fn chunk_data() -> impl Strategy<Value = ChunkData> {
    (hash_bytes(), blob(64), 0u32..4, hash_bytes(), any::<u32>()).prop_map(|(hash, data, encoding, base, size)| {
        ChunkData { hash, data: Bytes::from(data), encoding, base, size }
    })
}

pub fn hash_list() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(hash_bytes(), 0..6)
}

/// One strategy per `Message` variant. `every_message_type_has_a_strategy` checks that none is
/// missing, so a new message type cannot slip past these tests.
pub fn message_strategies() -> Vec<BoxedStrategy<Message>> {
    use prop::collection::vec;
    use prop::option;
    let empty = |m: fn(Empty) -> Message| Just(m(Empty {})).boxed();
    vec![
        (any::<u32>(), any::<u32>(), text())
            .prop_map(|(min_version, max_version, client_name)| {
                Message::Hello(Hello { min_version, max_version, client_name })
            })
            .boxed(),
        (any::<u32>(), text(), any::<bool>())
            .prop_map(|(version, server_name, registration_open)| {
                Message::Welcome(Welcome { version, server_name, registration_open })
            })
            .boxed(),
        (text(), text(), text())
            .prop_map(|(user, password, device_name)| {
                Message::Register(Register { user, password, device_name, invite: String::new() })
            })
            .boxed(),
        (text(), text(), text())
            .prop_map(|(user, password, device_name)| {
                Message::Login(Login { user, password, device_name, replaces_device: 0 })
            })
            .boxed(),
        text().prop_map(|token| Message::Auth(Auth { token })).boxed(),
        (any::<u64>(), text(), any::<u64>(), text(), text())
            .prop_map(|(user_id, user, device_id, device_name, token)| {
                Message::Session(Session { user_id, user, device_id, device_name, token })
            })
            .boxed(),
        empty(Message::Logout),
        empty(Message::Ok),
        (any::<u32>(), text()).prop_map(|(code, message)| Message::Error(ErrorMsg { code, message })).boxed(),
        empty(Message::Ping),
        empty(Message::Pong),
        empty(Message::ListDevices),
        vec(device_info(), 0..4).prop_map(|devices| Message::Devices(Devices { devices })).boxed(),
        (any::<u64>(), any::<bool>())
            .prop_map(|(device_id, remove)| Message::RevokeDevice(RevokeDevice { device_id, remove }))
            .boxed(),
        (any::<u64>(), text())
            .prop_map(|(device_id, name)| Message::RenameDevice(RenameDevice { device_id, name }))
            .boxed(),
        (text(), text())
            .prop_map(|(current_password, new_password)| {
                Message::ChangePassword(ChangePassword { current_password, new_password, log_out_other_devices: false })
            })
            .boxed(),
        empty(Message::ListFolders),
        vec(folder_info(), 0..4).prop_map(|folders| Message::Folders(Folders { folders })).boxed(),
        (text(), any::<bool>()).prop_map(|(name, create)| Message::OpenFolder(OpenFolder { name, create })).boxed(),
        folder_info().prop_map(Message::Folder).boxed(),
        (any::<u64>(), any::<u64>())
            .prop_map(|(folder_id, seq)| Message::FolderChanged(FolderChanged { folder_id, seq }))
            .boxed(),
        (any::<u64>(), any::<u64>(), any::<u32>())
            .prop_map(|(folder_id, since, limit)| Message::GetChanges(GetChanges { folder_id, since, limit }))
            .boxed(),
        (vec(wire_entry(), 0..4), any::<bool>(), any::<u64>())
            .prop_map(|(entries, more, folder_seq)| Message::Changes(Changes { entries, more, folder_seq }))
            .boxed(),
        hash_list().prop_map(|hashes| Message::QueryChunks(QueryChunks { hashes })).boxed(),
        vec(any::<u32>(), 0..8).prop_map(|missing| Message::ChunkPresence(ChunkPresence { missing })).boxed(),
        (vec(chunk_data(), 0..4), blob(64))
            .prop_map(|(chunks, p)| Message::PutChunks(PutChunks { chunks, packed: Bytes::from(p) }))
            .boxed(),
        (hash_list(), vec((any::<u32>(), hash_bytes(), blob(64)), 0..3))
            .prop_map(|(hashes, similar)| {
                let similar = similar
                    .into_iter()
                    .map(|(index, base, signature)| SimilarChunk { index, base, signature: Bytes::from(signature) })
                    .collect();
                Message::GetChunks(GetChunks { hashes, similar })
            })
            .boxed(),
        hash_list().prop_map(|hashes| Message::GetSignatures(GetSignatures { hashes })).boxed(),
        vec(blob(64), 0..4)
            .prop_map(|s| Message::Signatures(Signatures { signatures: s.into_iter().map(Bytes::from).collect() }))
            .boxed(),
        (vec(chunk_data(), 0..4), blob(64))
            .prop_map(|(chunks, p)| Message::Chunks(Chunks { chunks, packed: Bytes::from(p) }))
            .boxed(),
        upload_progress().prop_map(Message::AnnounceChunks).boxed(),
        upload_progress().prop_map(Message::ChunksAnnounced).boxed(),
        (any::<u64>(), vec((any::<u64>(), option::of(wire_entry())), 0..4))
            .prop_map(|(folder_id, changes)| {
                let changes = changes.into_iter().map(|(base_rev, entry)| CommitChange { base_rev, entry }).collect();
                Message::Commit(Commit { folder_id, changes })
            })
            .boxed(),
        (vec((any::<bool>(), option::of(wire_entry())), 0..4), any::<u64>())
            .prop_map(|(outcomes, folder_seq)| {
                let outcomes =
                    outcomes.into_iter().map(|(accepted, current)| CommitOutcome { accepted, current }).collect();
                Message::CommitResult(CommitResult { outcomes, folder_seq })
            })
            .boxed(),
        (any::<u64>(), text(), any::<u64>(), any::<u32>())
            .prop_map(|(folder_id, path, before_rev, limit)| {
                Message::ListVersions(ListVersions { folder_id, path, before_rev, limit })
            })
            .boxed(),
        (vec(wire_entry(), 0..4), any::<bool>())
            .prop_map(|(entries, more)| Message::Versions(Versions { entries, more }))
            .boxed(),
        (any::<u64>(), text(), any::<u64>(), any::<u32>())
            .prop_map(|(folder_id, prefix, before_rev, limit)| {
                Message::ListTrash(ListTrash { folder_id, prefix, before_rev, limit })
            })
            .boxed(),
        (vec((option::of(wire_entry()), option::of(wire_entry())), 0..3), any::<bool>())
            .prop_map(|(entries, more)| {
                let entries =
                    entries.into_iter().map(|(deleted, last_live)| TrashEntry { deleted, last_live }).collect();
                Message::Trash(Trash { entries, more })
            })
            .boxed(),
        (any::<u64>(), text(), any::<u64>(), text())
            .prop_map(|(folder_id, path, rev, to_path)| Message::Restore(Restore { folder_id, path, rev, to_path }))
            .boxed(),
        empty(Message::Usage),
        (any::<[u64; 6]>(), any::<Option<u64>>())
            .prop_map(
                |([bytes_current, bytes_history, chunks, bytes_stored, files_current, versions_history], quota)| {
                    Message::UsageInfo(UsageInfo {
                        bytes_current,
                        bytes_history,
                        chunks,
                        bytes_stored,
                        files_current,
                        versions_history,
                        quota,
                    })
                },
            )
            .boxed(),
    ]
}

pub fn message() -> impl Strategy<Value = Message> {
    Union::new(message_strategies())
}

/// Any frame; request ids favour the interesting values 0 (push) and small ids.
pub fn frame() -> impl Strategy<Value = Frame> {
    (prop_oneof![Just(0u32), 1u32..100, any::<u32>()], message()).prop_map(|(id, m)| Frame::new(id, m))
}

/// Every type code the decoder knows, found by asking it.
pub fn known_type_codes() -> BTreeSet<u16> {
    (0..=u16::MAX).filter(|&ty| decode_frame(&raw_frame(ty, 0, 1, &[])).is_ok()).collect()
}

/// A frame assembled by hand, so that headers and bodies can be anything.
pub fn raw_frame(ty: u16, flags: u16, request_id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + body.len());
    out.extend_from_slice(&(8 + body.len() as u32).to_be_bytes());
    out.extend_from_slice(&ty.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&request_id.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Frames with a well-formed length but a known or nearby type code and a random body: this
/// drives random bytes into every protobuf body decoder.
pub fn raw_frame_with_random_body() -> impl Strategy<Value = Vec<u8>> {
    let types: Vec<u16> = known_type_codes().into_iter().chain([0, 12, 49, u16::MAX]).collect();
    (prop::sample::select(types), prop_oneof![9 => Just(0u16), 1 => any::<u16>()], any::<u32>(), blob(200))
        .prop_map(|(ty, flags, id, body)| raw_frame(ty, flags, id, &body))
}

/// Cut points into a buffer of `len` bytes, sorted, from arbitrary indices.
pub fn cuts(len: usize, idx: &[Index]) -> Vec<usize> {
    let mut c: Vec<usize> = idx.iter().map(|i| i.index(len + 1)).collect();
    c.sort_unstable();
    c
}

/// Feeds `data` to a fresh `FrameDecoder` in the pieces that `cuts` mark, draining frames after
/// every push. Returns the frames and either the first error or the bytes left buffered.
pub fn feed_in_pieces(data: &[u8], cuts: &[usize]) -> (Vec<Frame>, Result<usize, FrameError>) {
    let mut d = FrameDecoder::new();
    let mut frames = Vec::new();
    let mut start = 0;
    for &end in cuts.iter().chain([&data.len()]) {
        d.push(&data[start..end]);
        start = end;
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

/// The reference for `feed_in_pieces`: `decode_frame` applied to the whole buffer, repeatedly.
pub fn decode_all(data: &[u8]) -> (Vec<Frame>, Result<usize, FrameError>) {
    let mut frames = Vec::new();
    let mut rest = data;
    loop {
        match decode_frame(rest) {
            Ok(Decoded::Frame(f, used)) => {
                frames.push(f);
                rest = &rest[used..];
            }
            Ok(Decoded::NeedMore(_)) => return (frames, Ok(rest.len())),
            Err(e) => return (frames, Err(e)),
        }
    }
}

pub fn encode_all(frames: &[Frame]) -> Vec<u8> {
    let mut out = bytes::BytesMut::new();
    for f in frames {
        f.encode(&mut out).expect("small frames encode");
    }
    out.to_vec()
}

/// Paths that are valid, nearly valid, or hostile.
pub fn path_text() -> BoxedStrategy<String> {
    let component = prop_oneof![
        6 => "[a-zA-Z0-9 ._-]{1,12}",
        1 => Just(".".to_string()),
        1 => Just("..".to_string()),
        1 => Just(String::new()),
        1 => Just(".filesync-tmp-1".to_string()),
        1 => Just("cafe\u{301}".to_string()), // NFD
        1 => Just("caf\u{e9}".to_string()),   // NFC
        1 => Just("a\0b".to_string()),
        1 => "x{250,260}",
    ];
    prop_oneof![
        4 => prop::collection::vec(component, 1..5).prop_map(|c| c.join("/")),
        1 => prop::collection::vec("[a-z]{1,3}", 1..5).prop_map(|c| format!("/{}", c.join("/"))),
        1 => any::<String>(),
    ]
    .boxed()
}

pub fn chunk_refs() -> impl Strategy<Value = Vec<ChunkRef>> {
    prop::collection::vec(
        (any::<[u8; 32]>(), prop_oneof![any::<u32>(), 0u32..5_000_000])
            .prop_map(|(h, len)| ChunkRef { hash: Hash(h), len }),
        0..5,
    )
}

/// Wire entries that are often consistent (so that the success path is exercised) and often
/// broken in exactly one way.
pub fn plausible_wire_entry() -> impl Strategy<Value = WireEntry> {
    (
        path_text(),
        any::<u64>(),
        prop_oneof![4 => Just(false), 1 => Just(true)],
        prop_oneof![3 => Just(KIND_FILE), 2 => Just(KIND_DIR), 1 => any::<u32>()],
        chunk_refs(),
        prop_oneof![6 => Just(0u64), 1 => 1u64..10, 1 => any::<u64>()],
        prop_oneof![6 => Just(None), 1 => (0usize..36).prop_map(Some)],
        // `None`: the file hash of the chunk list, as a consistent entry has.
        prop_oneof![4 => Just(None), 1 => hash_bytes().prop_map(Some)],
        (any::<i64>(), any::<bool>(), any::<u64>(), text(), any::<i64>()),
    )
        .prop_map(
            |(
                path,
                rev,
                deleted,
                kind,
                chunks,
                size_skew,
                chunk_trim,
                hash,
                (mtime_ns, executable, device_id, device_name, committed_at),
            )| {
                let sum: u64 = chunks.iter().map(|c| c.len as u64).sum();
                let hash = hash.unwrap_or_else(|| filesync_core::file_hash(&chunks).as_bytes().to_vec());
                let mut chunks = chunks_to_wire(&chunks);
                if let Some(t) = chunk_trim {
                    chunks.truncate(chunks.len().saturating_sub(t));
                }
                let (size, chunks) = if kind == KIND_DIR && size_skew == 0 {
                    (0, Vec::new())
                } else {
                    (sum.wrapping_add(size_skew), chunks)
                };
                WireEntry {
                    path,
                    rev,
                    deleted,
                    kind,
                    size,
                    mtime_ns,
                    executable,
                    hash,
                    chunks,
                    device_id,
                    device_name,
                    committed_at,
                }
            },
        )
}

pub fn entry_state() -> impl Strategy<Value = EntryState> {
    let meta = prop_oneof![
        1 => Just(None),
        1 => any::<i64>().prop_map(|t| Some(FileMeta::dir(t))),
        3 => (chunk_refs(), any::<i64>(), any::<bool>()).prop_map(|(chunks, mtime_ns, executable)| {
            Some(FileMeta {
                kind: EntryKind::File,
                size: chunks.iter().map(|c| c.len as u64).sum(),
                mtime_ns,
                executable,
                hash: filesync_core::file_hash(&chunks),
                chunks,
            })
        }),
    ];
    (
        path_text().prop_filter_map("invalid path", |p| RelPath::new(p).ok()),
        any::<u64>(),
        meta,
        any::<u64>(),
        text(),
        any::<i64>(),
    )
        .prop_map(|(path, rev, meta, device_id, device_name, committed_at)| EntryState {
            path,
            rev,
            meta,
            device_id,
            device_name,
            committed_at,
        })
}

fn upload_progress() -> impl Strategy<Value = UploadProgress> {
    (any::<u64>(), text(), any::<u64>(), any::<u64>(), any::<u32>(), blob(80), any::<u32>(), any::<u64>()).prop_map(
        |(folder_id, path, upload, size, first, chunks, total, device_id)| UploadProgress {
            folder_id,
            path,
            upload,
            size,
            first,
            chunks,
            total,
            device_id,
        },
    )
}
