//! What the server stores and serves is what was uploaded, over TLS on 127.0.0.1: commits whose
//! content cannot be right are refused, a damaged chunk is reported and healed by the next
//! upload, and names and paths are checked before they are stored.

mod support;

use filesync_client::{ClientError, Connection, ErrorCode};
use filesync_core::{ChunkRef, Hash, file_hash};
use filesync_proto::convert::{KIND_FILE, chunks_to_wire};
use filesync_proto::{CommitChange, WireEntry};
use support::*;

/// A fresh connection registered as `user`.
async fn user(s: &TestServer, user: &str) -> Connection {
    let c = s.connect().await;
    c.register(user, "password123", "dev").await.unwrap();
    c
}

/// The error a request must fail with: its code and message.
fn failure<T: std::fmt::Debug>(r: Result<T, ClientError>) -> (Option<ErrorCode>, String) {
    match r {
        Err(ClientError::Server { code, message }) => (code, message),
        other => panic!("expected an error from the server, got {other:?}"),
    }
}

fn change(entry: WireEntry) -> Vec<CommitChange> {
    vec![CommitChange { base_rev: 0, entry: Some(entry) }]
}

/// Regression: a commit whose file hash contradicts its chunks was accepted (a one-chunk file
/// carrying its chunk's hash, an empty file with a hash of something), and every other device
/// then failed on that file forever. Such commits are refused whole, with what is wrong.
#[tokio::test]
async fn a_commit_whose_hash_contradicts_its_chunks_is_refused() {
    let s = start_server(true).await;
    let ann = user(&s, "ann").await;
    let folder = ann.open_folder("docs", true).await.unwrap();
    let (good, chunks) = file_entry("good.txt", b"hello");
    ann.put_chunks(chunks).await.unwrap();
    let chunk = ChunkRef { hash: Hash::of(b"hello"), len: 5 };
    let bad = [
        (
            "a one-chunk file carrying its chunk's hash",
            WireEntry { hash: chunk.hash.as_bytes().to_vec(), ..good.clone() },
        ),
        (
            "an empty file with a hash of something",
            WireEntry { size: 0, chunks: vec![], hash: Hash::of(b"").as_bytes().to_vec(), ..good.clone() },
        ),
        (
            "a file hash of other chunks",
            WireEntry { hash: file_hash(&[ChunkRef { len: 6, ..chunk }]).as_bytes().to_vec(), ..good.clone() },
        ),
        ("a size that is not the sum of the chunk lengths", WireEntry { size: 6, ..good.clone() }),
    ];
    for (what, entry) in bad {
        let entry = WireEntry { path: "bad.txt".into(), ..entry };
        let both = [change(good.clone()), change(entry)].concat();
        let (code, message) = failure(ann.commit(folder.id, both).await);
        assert_eq!(code, Some(ErrorCode::BadRequest), "{what}: {message}");
        assert!(message.starts_with("bad.txt: "), "{what}: the message names the file: {message}");
    }
    let ch = ann.get_changes(folder.id, 0, 100).await.unwrap();
    assert!(ch.entries.is_empty(), "nothing of a refused commit is applied");
    // The same file with its true hash, and an empty file, go through.
    let empty = WireEntry {
        path: "empty".into(),
        kind: KIND_FILE,
        hash: file_hash(&[]).as_bytes().to_vec(),
        chunks: chunks_to_wire(&[]),
        ..Default::default()
    };
    let r = ann.commit(folder.id, [change(good), change(empty)].concat()).await.unwrap();
    assert!(r.outcomes.iter().all(|o| o.accepted));
}

/// Regression: after one byte of a stored chunk was flipped, the server kept answering
/// "internal server error" for it and kept reporting it present, so the device that had the
/// file never uploaded it again. Now the chunk is verified as it is read, reported by name,
/// forgotten (so `QueryChunks` asks for it), and the next upload repairs it.
#[tokio::test]
async fn a_damaged_chunk_is_reported_forgotten_and_repaired_by_the_next_upload() {
    let s = start_server(true).await;
    let ann = s.connect().await;
    let session = ann.register("ann", "password123", "dev").await.unwrap();
    let (_, damaged) = file_entry("damaged.txt", b"the chunk that the disk damages");
    let (_, fine) = file_entry("fine.txt", b"a chunk nothing happens to");
    ann.put_chunks([damaged.clone(), fine.clone()].concat()).await.unwrap();
    let (bad, good) = (damaged[0].0, fine[0].0);
    let hex = bad.to_hex();
    let file = s.data.join("chunks").join(session.user_id.to_string()).join(&hex[..2]).join(&hex);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[3] ^= 0x20;
    std::fs::write(&file, &bytes).unwrap();

    let (code, message) = failure(ann.get_chunks(&[good, bad]).await);
    assert_eq!(code, Some(ErrorCode::NotFound), "{message}");
    assert!(message.contains(&hex) && message.contains("uploads it again"), "names the chunk: {message}");
    assert!(file.with_extension("damaged").exists(), "the damaged bytes are set aside for the operator");
    assert_eq!(ann.query_chunks(&[good, bad]).await.unwrap(), vec![1], "the server asks for it again");
    assert_eq!(ann.get_chunks(&[good]).await.unwrap(), vec![fine[0].1.clone()], "other chunks are served");
    let (code, message) = failure(ann.get_chunks(&[bad]).await);
    assert_eq!(code, Some(ErrorCode::NotFound), "missing, not an internal error, until it is uploaded");
    assert!(message.contains(&hex) && message.contains("uploaded it again"), "{message}");

    ann.put_chunks(damaged.clone()).await.unwrap();
    assert_eq!(ann.query_chunks(&[good, bad]).await.unwrap(), Vec::<usize>::new());
    assert_eq!(ann.get_chunks(&[bad]).await.unwrap(), vec![damaged[0].1.clone()], "repaired");
}
