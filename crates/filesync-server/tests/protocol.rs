//! The server against real clients over TLS on 127.0.0.1: authentication, authorization
//! between users, hostile input, and version negotiation.

mod support;

use bytes::Bytes;
use filesync_client::{ClientError, Connection, ErrorCode, Trust};
use filesync_core::Hash;
use filesync_core::testdata::random_bytes as noise;
use filesync_proto::{CommitChange, Frame, FrameDecoder, Hello, Message};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn start(registration_open: bool) -> TestServer {
    start_server(registration_open).await
}

/// A fresh connection registered as `user`; returns it and the device token.
async fn user(s: &TestServer, user: &str) -> (Connection, String) {
    let c = s.connect().await;
    let session = c.register(user, "password123", "dev").await.unwrap();
    (c, session.token)
}

#[tokio::test]
async fn wrong_password_is_refused_and_repeated_failures_are_slowed() {
    let s = start(true).await;
    user(&s, "ann").await;
    let c = s.connect().await;
    assert_eq!(code(c.login("ann", "wrong password", "x").await), Some(ErrorCode::BadCredentials));
    assert_eq!(code(c.login("nobody", "password123", "x").await), Some(ErrorCode::BadCredentials));
    for _ in 0..2 {
        let _ = c.login("ann", "wrong again", "x").await;
    }
    // Now attempts must wait: even the right password is refused until the delay passes.
    assert_eq!(code(c.login("ann", "password123", "x").await), Some(ErrorCode::RateLimited));
}

#[tokio::test]
async fn registration_can_be_closed_and_names_are_unique() {
    let s = start(true).await;
    user(&s, "ann").await;
    let c = s.connect().await;
    assert_eq!(code(c.register("ann", "password123", "x").await), Some(ErrorCode::UserExists));
    assert_eq!(code(c.register("bad name!", "password123", "x").await), Some(ErrorCode::BadRequest));
    assert_eq!(code(c.register("bob", "short", "x").await), Some(ErrorCode::BadRequest));
    let closed = start(false).await;
    let c = closed.connect().await;
    assert!(!c.welcome().registration_open);
    assert_eq!(code(c.register("bob", "password123", "x").await), Some(ErrorCode::RegistrationClosed));
}

#[tokio::test]
async fn tokens_authenticate_until_revoked() {
    let s = start(true).await;
    let (a1, _) = user(&s, "ann").await;
    let c = s.connect().await;
    let second = c.login("ann", "password123", "desktop").await.unwrap();
    let fresh = s.connect().await;
    let session = fresh.auth(&second.token).await.unwrap();
    assert_eq!(session.device_name, "desktop");
    assert!(session.token.is_empty(), "the token is never sent again");
    let mut pushes = fresh.take_pushes().unwrap();

    // Revoking it from another device closes its live connection and refuses new ones.
    a1.revoke_device(second.device_id).await.unwrap();
    let closed = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            if let Some(filesync_client::Push::Closed(reason)) = pushes.recv().await {
                return reason;
            }
        }
    })
    .await
    .unwrap();
    assert!(closed.contains("revoked"), "{closed}");
    let again = s.connect().await;
    assert_eq!(code(again.auth(&second.token).await), Some(ErrorCode::InvalidToken));
    assert_eq!(code(again.auth("fst_not-a-real-token").await), Some(ErrorCode::InvalidToken));
    let devices = a1.list_devices().await.unwrap();
    assert!(devices.iter().any(|d| d.id == second.device_id && d.revoked));
    assert_eq!(devices.iter().filter(|d| d.current).count(), 1);
}

/// Regression: a revoked computer that logged in again became a second row under its name.
#[tokio::test]
async fn a_revoked_device_logs_in_again_as_itself_and_can_be_removed() {
    let s = start(true).await;
    let (ann, _) = user(&s, "ann").await;
    let desktop = s.connect().await.login("ann", "password123", "desktop").await.unwrap();
    // Only a revoked device is replaced: a live one stays, and the login gets a new device.
    let other = s.connect().await.login_replacing("ann", "password123", "other", desktop.device_id).await.unwrap();
    assert_ne!(other.device_id, desktop.device_id, "a live device is never taken over");
    ann.revoke_device(desktop.device_id).await.unwrap();
    let (bob, _) = user(&s, "bob").await;
    let theft = s.connect().await.login_replacing("bob", "password123", "x", desktop.device_id).await.unwrap();
    assert_ne!(theft.device_id, desktop.device_id, "another user's revoked device is not taken over");

    let again = s.connect().await.login_replacing("ann", "password123", "desktop", desktop.device_id).await.unwrap();
    assert_eq!(again.device_id, desktop.device_id, "the revoked device is reused");
    let old = s.connect().await;
    assert_eq!(code(old.auth(&desktop.token).await), Some(ErrorCode::InvalidToken), "the old token stays dead");
    s.connect().await.auth(&again.token).await.expect("the new token works");
    let desktops: Vec<_> = ann.list_devices().await.unwrap().into_iter().filter(|d| d.name == "desktop").collect();
    assert_eq!(desktops.len(), 1, "one row for the desktop: {desktops:?}");
    assert!(!desktops[0].revoked);

    // Removing revokes first and then deletes the row; only the user's own devices.
    assert_eq!(code(bob.remove_device(other.device_id).await), Some(ErrorCode::NotFound));
    ann.remove_device(other.device_id).await.unwrap();
    let ids: Vec<_> = ann.list_devices().await.unwrap().into_iter().map(|d| d.id).collect();
    assert!(!ids.contains(&other.device_id), "{ids:?}");
    assert_eq!(code(ann.remove_device(other.device_id).await), Some(ErrorCode::NotFound));
}

#[tokio::test]
async fn devices_are_renamed_and_the_password_changed_only_with_the_current_one() {
    let s = start(true).await;
    let (ann, _) = user(&s, "ann").await;
    let desktop = s.connect().await.login("ann", "password123", "desktop").await.unwrap();
    ann.rename_device(desktop.device_id, "  study desktop ").await.unwrap();
    let devices = ann.list_devices().await.unwrap();
    assert!(devices.iter().any(|d| d.id == desktop.device_id && d.name == "study desktop"), "{devices:?}");
    assert_eq!(code(ann.rename_device(desktop.device_id, " ").await), Some(ErrorCode::BadRequest));
    assert_eq!(code(ann.rename_device(desktop.device_id + 100, "x").await), Some(ErrorCode::NotFound));
    let (bob, _) = user(&s, "bob").await;
    assert_eq!(code(bob.rename_device(desktop.device_id, "mine now").await), Some(ErrorCode::NotFound));

    assert_eq!(code(ann.change_password("wrong password", "new password 1").await), Some(ErrorCode::BadCredentials));
    assert_eq!(code(ann.change_password("password123", "short").await), Some(ErrorCode::BadRequest));
    ann.change_password("password123", "new password 1").await.unwrap();
    let c = s.connect().await;
    assert_eq!(code(c.login("ann", "password123", "x").await), Some(ErrorCode::BadCredentials));
    c.login("ann", "new password 1", "x").await.unwrap();
    // Devices stay logged in.
    s.connect().await.auth(&desktop.token).await.unwrap();
}

#[tokio::test]
async fn requests_before_authentication_are_refused() {
    let s = start(true).await;
    let c = s.connect().await;
    assert_eq!(code(c.list_folders().await), Some(ErrorCode::NotAuthenticated));
    assert_eq!(code(c.open_folder("docs", true).await), Some(ErrorCode::NotAuthenticated));
}

#[tokio::test]
async fn one_user_can_never_touch_another_users_folders() {
    let s = start(true).await;
    let (ann, _) = user(&s, "ann").await;
    let (bob, _) = user(&s, "bob").await;
    let folder = ann.open_folder("docs", true).await.unwrap();
    let (entry, chunks) = file_entry("secret.txt", b"ann's secret");
    let hash = chunks[0].0;
    ann.put_chunks(chunks).await.unwrap();
    let r = ann.commit(folder.id, vec![CommitChange { base_rev: 0, entry: Some(entry.clone()) }]).await.unwrap();
    assert!(r.outcomes[0].accepted);

    // Bob cannot read, list, or write Ann's folder, nor fetch her chunks.
    assert_eq!(code(bob.get_changes(folder.id, 0, 100).await), Some(ErrorCode::NotFound));
    let commit = bob.commit(folder.id, vec![CommitChange { base_rev: 0, entry: Some(entry) }]).await;
    assert_eq!(code(commit), Some(ErrorCode::NotFound));
    assert_eq!(code(bob.get_chunks(&[hash]).await), Some(ErrorCode::NotFound));
    assert_eq!(bob.query_chunks(&[hash]).await.unwrap(), vec![0], "chunks are not shared across users");
    assert!(bob.list_folders().await.unwrap().is_empty());
    // Bob's folder of the same name is a different folder.
    let bobs = bob.open_folder("docs", true).await.unwrap();
    assert_ne!(bobs.id, folder.id);
    assert!(bob.get_changes(bobs.id, 0, 100).await.unwrap().entries.is_empty());
    // Bob cannot revoke Ann's devices.
    let anns = ann.list_devices().await.unwrap();
    assert_eq!(code(bob.revoke_device(anns[0].id).await), Some(ErrorCode::NotFound));
    assert_eq!(ann.get_changes(folder.id, 0, 100).await.unwrap().entries.len(), 1);
}

#[tokio::test]
async fn hostile_paths_and_unbacked_commits_change_nothing() {
    let s = start(true).await;
    let (ann, _) = user(&s, "ann").await;
    let folder = ann.open_folder("docs", true).await.unwrap();
    for bad in ["../escape", "/etc/passwd", "a/../../b", "a//b", "nul\0byte", "cafe\u{301}", ""] {
        let (mut entry, chunks) = file_entry("x", b"data");
        entry.path = bad.into();
        ann.put_chunks(chunks).await.unwrap();
        let r = ann.commit(folder.id, vec![CommitChange { base_rev: 0, entry: Some(entry) }]).await;
        assert_eq!(code(r), Some(ErrorCode::InvalidPath), "{bad:?}");
    }
    // Chunks the server never received: the whole commit is refused.
    let (good, _) = file_entry("good.txt", b"fine");
    let (unbacked, _) = file_entry("unbacked.txt", b"never uploaded");
    let r = ann
        .commit(
            folder.id,
            vec![CommitChange { base_rev: 0, entry: Some(good) }, CommitChange { base_rev: 0, entry: Some(unbacked) }],
        )
        .await;
    assert_eq!(code(r), Some(ErrorCode::MissingChunks));
    // A chunk whose bytes do not match its hash is refused.
    let r = ann.put_chunks(vec![(Hash::of(b"one thing"), Bytes::from_static(b"another"))]).await;
    assert_eq!(code(r), Some(ErrorCode::BadRequest));
    let ch = ann.get_changes(folder.id, 0, 100).await.unwrap();
    assert!(ch.entries.is_empty());
    assert_eq!(ch.folder_seq, 0);
}

#[tokio::test]
async fn commits_are_checked_against_the_base_revision() {
    let s = start(true).await;
    let (ann, _) = user(&s, "ann").await;
    let folder = ann.open_folder("docs", true).await.unwrap();
    let (v1, c1) = file_entry("f.txt", b"version one");
    let (v2, c2) = file_entry("f.txt", b"version two");
    let (v3, c3) = file_entry("f.txt", b"version three");
    for c in [c1, c2, c3] {
        ann.put_chunks(c).await.unwrap();
    }
    let r1 = ann.commit(folder.id, vec![CommitChange { base_rev: 0, entry: Some(v1) }]).await.unwrap();
    let rev1 = r1.outcomes[0].current.as_ref().unwrap().rev;
    let r2 = ann.commit(folder.id, vec![CommitChange { base_rev: rev1, entry: Some(v2.clone()) }]).await.unwrap();
    assert!(r2.outcomes[0].accepted);
    // A second writer still based on rev1 is told about v2 instead of overwriting it.
    let r3 = ann.commit(folder.id, vec![CommitChange { base_rev: rev1, entry: Some(v3) }]).await.unwrap();
    assert!(!r3.outcomes[0].accepted);
    assert_eq!(r3.outcomes[0].current.as_ref().unwrap().hash, v2.hash);
}

#[tokio::test]
async fn a_commit_is_pushed_to_the_users_other_connections() {
    let s = start(true).await;
    let (ann, token) = user(&s, "ann").await;
    let other = s.connect().await;
    other.auth(&token).await.unwrap();
    let mut pushes = other.take_pushes().unwrap();
    let (bob, _) = user(&s, "bob").await;
    let mut bob_pushes = bob.take_pushes().unwrap();
    let folder = ann.open_folder("docs", true).await.unwrap();
    let (e, c) = file_entry("new.txt", b"hello");
    ann.put_chunks(c).await.unwrap();
    ann.commit(folder.id, vec![CommitChange { base_rev: 0, entry: Some(e) }]).await.unwrap();
    let push = tokio::time::timeout(std::time::Duration::from_secs(5), pushes.recv()).await.unwrap().unwrap();
    assert_eq!(push, filesync_client::Push::FolderChanged { folder_id: folder.id, seq: 1 });
    assert!(bob_pushes.try_recv().is_err(), "another user's devices hear nothing");
}

/// Version 4: an upload in progress announced by one device reaches the user's other devices
/// that speak version 4, and only them — not the announcing device's other connections, not
/// another user, not a connection that chose version 3 (which gets the commit's push all the
/// same). A bad announcement is refused and passed on to no one.
#[tokio::test]
async fn an_upload_in_progress_is_announced_to_the_users_other_devices_that_speak_version_4() {
    use filesync_client::{Announced, Push};
    use filesync_core::{ChunkRef, RelPath};
    let wait = std::time::Duration::from_secs(5);
    let s = start(true).await;
    let (ann, token) = user(&s, "ann").await;
    let same_device = s.connect().await;
    same_device.auth(&token).await.unwrap();
    let mut same_device_pushes = same_device.take_pushes().unwrap();
    let laptop = s.connect().await;
    laptop.login("ann", "password123", "laptop").await.unwrap();
    let mut laptop_pushes = laptop.take_pushes().unwrap();
    let mut old = s.raw_speaking("127.0.0.1", 3).await;
    assert!(matches!(old.login("ann", "password123").await, Message::Session(_)));
    let (bob, _) = user(&s, "bob").await;
    let mut bob_pushes = bob.take_pushes().unwrap();
    let folder = ann.open_folder("docs", true).await.unwrap();

    let (e, c) = file_entry("big.bin", &noise(3000, 4));
    let chunks = filesync_proto::convert::chunks_from_wire(&e.chunks).unwrap();
    ann.put_chunks(c).await.unwrap();
    let announced = Announced {
        folder_id: folder.id,
        path: RelPath::new("big.bin").unwrap(),
        upload: 77,
        size: 3000,
        first: 0,
        chunks: chunks.clone(),
        total: chunks.len() as u32,
        device_id: 0,
    };
    // Refused: chunks beyond the file's, none at all, a hostile path, another user's folder.
    let bad = [
        Announced { total: 0, ..announced.clone() },
        Announced { chunks: Vec::new(), ..announced.clone() },
        Announced { chunks: vec![ChunkRef { hash: Hash::of(b"x"), len: 0 }], ..announced.clone() },
    ];
    for a in &bad {
        assert_eq!(code(ann.announce_chunks(a).await), Some(ErrorCode::BadRequest), "{a:?}");
    }
    let bobs = bob.open_folder("docs", true).await.unwrap();
    assert_eq!(
        code(ann.announce_chunks(&Announced { folder_id: bobs.id, ..announced.clone() }).await),
        Some(ErrorCode::NotFound)
    );
    let mut raw_path = filesync_proto::UploadProgress {
        folder_id: folder.id,
        path: "../etc/passwd".into(),
        upload: 1,
        size: 1,
        first: 0,
        chunks: e.chunks.clone(),
        total: 1,
        device_id: 0,
    };
    assert_eq!(reply_code(&old.request(Message::AnnounceChunks(raw_path.clone())).await), Some(ErrorCode::BadRequest));
    raw_path.path = "big.bin".into();
    let reply = old.request(Message::ChunksAnnounced(raw_path)).await;
    assert_eq!(reply_code(&reply), Some(ErrorCode::BadRequest), "a push is not a request");

    ann.announce_chunks(&announced).await.unwrap();
    let push = tokio::time::timeout(wait, laptop_pushes.recv()).await.unwrap().unwrap();
    let ann_device = ann.list_devices().await.unwrap().into_iter().find(|d| d.current).unwrap().id;
    assert_eq!(
        push,
        Push::Announced(Announced { device_id: ann_device, ..announced.clone() }),
        "the first push is the good one"
    );
    // The chunks announced are there to fetch.
    let wanted: Vec<filesync_client::ChunkRequest> =
        chunks.iter().map(|c| filesync_client::ChunkRequest { hash: c.hash, similar: None }).collect();
    assert_eq!(laptop.get_chunks(&wanted).await.unwrap().concat(), noise(3000, 4));

    ann.commit(folder.id, vec![CommitChange { base_rev: 0, entry: Some(e) }]).await.unwrap();
    let push = tokio::time::timeout(wait, laptop_pushes.recv()).await.unwrap().unwrap();
    assert_eq!(push, Push::FolderChanged { folder_id: folder.id, seq: 1 });
    let push = tokio::time::timeout(wait, same_device_pushes.recv()).await.unwrap().unwrap();
    assert_eq!(
        push,
        Push::FolderChanged { folder_id: folder.id, seq: 1 },
        "the announcing device hears only the commit"
    );
    let push = old.next_push(wait).await.unwrap();
    assert!(matches!(push, Message::FolderChanged(_)), "version 3 hears only the commit: {push:?}");
    assert!(bob_pushes.try_recv().is_err(), "another user's devices hear nothing");
}

#[tokio::test]
async fn a_wrong_pinned_fingerprint_is_refused() {
    let s = start(true).await;
    let wrong = format!("SHA256:{}", "00".repeat(32));
    match Connection::connect(&s.addr, Trust::Pinned(wrong.clone())).await {
        Err(ClientError::FingerprintMismatch { expected, actual }) => {
            assert_eq!(expected, wrong);
            assert_eq!(actual, s.fingerprint);
        }
        Err(e) => panic!("expected a fingerprint mismatch, got {e}"),
        Ok(_) => panic!("a wrong fingerprint was accepted"),
    }
}

async fn raw(s: &TestServer) -> impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin {
    Connection::raw_tls(&s.addr, Trust::Pinned(s.fingerprint.clone())).await.unwrap().0
}

/// Reads frames until the server closes the connection; returns them.
/// Panics if the server keeps the connection open for 10 seconds.
async fn read_until_closed(mut stream: impl tokio::io::AsyncRead + Unpin) -> Vec<Frame> {
    let mut dec = FrameDecoder::new();
    let mut frames = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            while let Ok(Some(f)) = dec.next_frame() {
                frames.push(f);
            }
            match stream.read_buf(dec.buffer_mut()).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the server must close the connection");
    frames
}

#[tokio::test]
async fn malformed_frames_close_the_connection_and_the_server_carries_on() {
    let s = start(true).await;
    let cases: Vec<Vec<u8>> = vec![
        vec![0xff, 0xff, 0xff, 0xff, 1, 2, 3],                 // absurd length
        vec![0, 0, 0, 2, 0, 0],                                // shorter than a header
        vec![0, 0, 0, 8, 0xEE, 0xEE, 0, 0, 0, 0, 0, 1],        // unknown type
        vec![0, 0, 0, 10, 0, 1, 0, 0, 0, 0, 0, 1, 0xff, 0xff], // garbage body
        vec![0, 0, 0, 8, 0, 1, 0, 7, 0, 0, 0, 1],              // reserved flags
        vec![0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1],              // 128 KiB frame before authentication
    ];
    for bytes in cases {
        let mut c = raw(&s).await;
        c.write_all(&bytes).await.unwrap();
        c.flush().await.unwrap();
        let frames = read_until_closed(c).await;
        assert!(frames.iter().all(|f| !matches!(f.message, Message::Welcome(_))), "{bytes:?}");
    }
    // Requests before Hello, and a Hello with no common version.
    let mut c = raw(&s).await;
    let f = Frame::new(1, Message::ListFolders(Default::default()));
    c.write_all(&f.to_bytes().unwrap()).await.unwrap();
    let frames = read_until_closed(c).await;
    assert!(matches!(&frames[0].message, Message::Error(e) if e.code == ErrorCode::BadRequest as u32));
    let mut c = raw(&s).await;
    let f = Frame::new(1, Message::Hello(Hello { min_version: 7, max_version: 9, client_name: "future".into() }));
    c.write_all(&f.to_bytes().unwrap()).await.unwrap();
    let frames = read_until_closed(c).await;
    assert!(matches!(&frames[0].message, Message::Error(e) if e.code == ErrorCode::UnsupportedVersion as u32));
    // A client of version 1 (whose file hashes are hashes of the content, not of the chunk list)
    // is told to update rather than having its commits refused.
    let mut c = raw(&s).await;
    let f = Frame::new(1, Message::Hello(Hello { min_version: 1, max_version: 1, client_name: "old".into() }));
    c.write_all(&f.to_bytes().unwrap()).await.unwrap();
    let frames = read_until_closed(c).await;
    assert!(
        matches!(&frames[0].message, Message::Error(e) if e.code == ErrorCode::UnsupportedVersion as u32
            && e.message.contains("no common protocol version") && e.message.contains("update it")),
        "{:?}",
        frames[0]
    );
    // The server still serves everyone else.
    let (ann, _) = user(&s, "ann").await;
    ann.ping().await.unwrap();
}

/// Sub-chunk deltas (version 3) rebuild exactly the chunk they name or are refused: a delta
/// from a chunk the user does not have (another user's, or none), a delta that rebuilds other
/// bytes, and requests over the limits change nothing and say why; signatures are given only
/// for the user's own chunks.
#[tokio::test]
async fn deltas_rebuild_only_the_chunk_they_name_from_the_users_own_chunks() {
    use filesync_proto::{ChunkData, GetChunks, GetSignatures, PutChunks, SimilarChunk, compression, delta, limits};
    let s = start(true).await;
    let (ann, _) = user(&s, "ann").await;
    let (bob, _) = user(&s, "bob").await;
    let old = Bytes::from(noise(300_000, 1));
    let mut new = old[..150_000].to_vec();
    new.extend(noise(4096, 2));
    new.extend_from_slice(&old[150_000..]);
    let (old_h, new_h) = (Hash::of(&old), Hash::of(&new));
    ann.put_chunks(vec![(old_h, old.clone())]).await.unwrap();
    let bob_h = Hash::of(b"bob's own chunk");
    bob.put_chunks(vec![(bob_h, Bytes::from_static(b"bob's own chunk"))]).await.unwrap();

    // Signatures: of ann's chunk for ann; none of it for bob.
    let sigs = |c: &Connection, h: Hash| {
        let c = c.clone();
        async move {
            match c.request(Message::GetSignatures(GetSignatures { hashes: vec![h.as_bytes().to_vec()] })).await {
                Ok(Message::Signatures(s)) => s.signatures,
                other => panic!("{other:?}"),
            }
        }
    };
    let sig = sigs(&ann, old_h).await.remove(0);
    assert_eq!(sig, delta::signature(&old));
    assert!(sigs(&bob, old_h).await[0].is_empty(), "another user's chunk has no signature");
    let too_many = vec![old_h.as_bytes().to_vec(); limits::MAX_SIGNATURES_PER_REQUEST + 1];
    let r = ann.request(Message::GetSignatures(GetSignatures { hashes: too_many })).await;
    assert_eq!(code(r), Some(ErrorCode::TooLarge));

    let d = delta::diff(&sig, &new, 4 << 20).unwrap();
    assert!(d.len() < 10_000, "{}", d.len());
    let put = |c: &Connection, hash: Hash, base: Hash, data: Bytes| {
        let c = c.clone();
        let chunk = ChunkData {
            hash: hash.as_bytes().to_vec(),
            data,
            encoding: compression::ENCODING_DELTA,
            base: base.as_bytes().to_vec(),
            size: 0,
        };
        async move { c.request(Message::PutChunks(PutChunks { chunks: vec![chunk], packed: Bytes::new() })).await }
    };
    // Bob cannot apply a delta to ann's chunk, and a delta claiming other bytes is refused.
    assert_eq!(code(put(&bob, new_h, old_h, d.clone()).await), Some(ErrorCode::NotFound));
    assert_eq!(code(put(&ann, Hash::of(b"something else"), old_h, d.clone()).await), Some(ErrorCode::BadRequest));
    assert_eq!(code(put(&ann, new_h, old_h, Bytes::from_static(b"garbage")).await), Some(ErrorCode::BadRequest));
    assert_eq!(ann.query_chunks(&[new_h]).await.unwrap(), vec![0], "nothing was stored");
    assert!(matches!(put(&ann, new_h, old_h, d).await, Ok(Message::Ok(_))));
    assert_eq!(ann.get_chunks(&[new_h]).await.unwrap(), vec![Bytes::from(new.clone())]);

    // Downloading: a delta against the chunk the client offers, rebuilt by the client.
    let wanted = filesync_client::ChunkRequest { hash: new_h, similar: Some((old_h, old.clone())) };
    assert_eq!(ann.get_chunks(&[wanted]).await.unwrap(), vec![Bytes::from(new.clone())]);
    let raw = ann
        .request(Message::GetChunks(GetChunks {
            hashes: vec![new_h.as_bytes().to_vec()],
            similar: vec![SimilarChunk { index: 0, base: old_h.as_bytes().to_vec(), signature: sig.clone() }],
        }))
        .await;
    match raw {
        Ok(Message::Chunks(c)) => {
            assert_eq!(c.chunks[0].encoding, compression::ENCODING_DELTA);
            assert!(c.chunks[0].data.len() < 10_000);
        }
        other => panic!("{other:?}"),
    }
    // A similar chunk naming no requested chunk is refused.
    let r = ann
        .request(Message::GetChunks(GetChunks {
            hashes: vec![new_h.as_bytes().to_vec()],
            similar: vec![SimilarChunk { index: 1, base: old_h.as_bytes().to_vec(), signature: sig }],
        }))
        .await;
    assert_eq!(code(r), Some(ErrorCode::BadRequest));
}

#[tokio::test]
async fn packed_chunks_are_checked_whole_and_go_packed_only_to_clients_of_version_5() {
    use filesync_proto::{ChunkData, GetChunks, PutChunks, compression, limits};
    let s = start(true).await;
    let (ann, _) = user(&s, "ann").await;
    // Forty small source files: the client packs them into one stream.
    let files: Vec<Bytes> = (0..40).map(|i| format!("fn f{i}() -> u32 {{ {i} }}\n").repeat(30).into()).collect();
    let hashes: Vec<Hash> = files.iter().map(|f| Hash::of(f)).collect();
    ann.put_chunks(hashes.iter().copied().zip(files.iter().cloned()).collect::<Vec<_>>()).await.unwrap();
    assert!(ann.query_chunks(&hashes).await.unwrap().is_empty(), "all stored");
    assert_eq!(ann.get_chunks(&hashes).await.unwrap(), files);
    let get = GetChunks { hashes: hashes.iter().map(|h| h.as_bytes().to_vec()).collect(), similar: vec![] };
    match ann.request(Message::GetChunks(get.clone())).await {
        Ok(Message::Chunks(c)) => {
            assert!(c.chunks.iter().all(|c| c.encoding == compression::ENCODING_PACKED && c.data.is_empty()));
            let plain: usize = files.iter().map(|f| f.len()).sum();
            assert!(c.packed.len() < plain / 20, "{} of {plain} bytes", c.packed.len());
        }
        other => panic!("{other:?}"),
    }
    // A client of version 4 gets each chunk compressed alone.
    let mut old = s.raw_speaking("127.0.0.1", 4).await;
    assert!(matches!(old.login("ann", "password123").await, Message::Session(_)));
    match old.request(Message::GetChunks(get)).await {
        Message::Chunks(c) => {
            assert!(c.packed.is_empty());
            assert!(c.chunks.iter().all(|c| c.encoding == compression::ENCODING_ZSTD));
        }
        other => panic!("{other:?}"),
    }

    // Hostile packs change nothing: sizes that do not add up, bytes that do not match their
    // hash, sizes above the limit, and a stream nobody takes.
    let text: Vec<Bytes> = (0..3).map(|i| format!("another file {i}\n").repeat(50).into()).collect();
    let fresh = || {
        let mut chunks: Vec<ChunkData> = text
            .iter()
            .map(|t| ChunkData {
                hash: Hash::of(t).as_bytes().to_vec(),
                data: t.clone(),
                encoding: compression::ENCODING_PACKED,
                ..Default::default()
            })
            .collect();
        let packed = compression::pack(&mut chunks);
        assert!(!packed.is_empty());
        PutChunks { chunks, packed }
    };
    let put = |p: PutChunks| {
        let c = ann.clone();
        async move { c.request(Message::PutChunks(p)).await }
    };
    let mut p = fresh();
    p.chunks[0].size += 1;
    assert_eq!(code(put(p).await), Some(ErrorCode::BadRequest));
    let mut p = fresh();
    p.chunks[1].hash = Hash::of(b"something else").as_bytes().to_vec();
    assert_eq!(code(put(p).await), Some(ErrorCode::BadRequest));
    let mut p = fresh();
    p.chunks[2].size = limits::MAX_CHUNK_BYTES_PER_MESSAGE as u32;
    assert_eq!(code(put(p).await), Some(ErrorCode::TooLarge));
    let mut p = fresh();
    p.chunks.iter_mut().for_each(|c| c.encoding = compression::ENCODING_PLAIN);
    assert_eq!(code(put(p).await), Some(ErrorCode::BadRequest));
    let text_hashes: Vec<Hash> = text.iter().map(|t| Hash::of(t)).collect();
    assert_eq!(ann.query_chunks(&text_hashes).await.unwrap(), vec![0, 1, 2], "nothing was stored");
    assert!(matches!(put(fresh()).await, Ok(Message::Ok(_))));
    assert!(ann.query_chunks(&text_hashes).await.unwrap().is_empty());
}
