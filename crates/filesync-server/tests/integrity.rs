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

/// Regression: a device logged in with a name not in NFC (`Cafe` + U+0301) crashed its peers'
/// clients at their first conflict with it (the name goes into the conflict copy's path). The
/// server now stores names trimmed and composed, and refuses names that break the rule with a
/// clear message.
#[tokio::test]
async fn names_are_normalized_and_checked_by_the_server() {
    let s = start_server(true).await;
    let cafe = s.connect().await;
    let session = cafe.register(" ann ", "password123", " Cafe\u{301} ").await.unwrap();
    assert_eq!((session.user.as_str(), session.device_name.as_str()), ("ann", "Caf\u{e9}"));
    let other = s.connect().await;
    let desk = other.login("ann", "password123", "Desk\u{301}").await.unwrap();
    assert_eq!(desk.device_name, "Des\u{1e31}", "logging in composes the device name too");
    let folder = cafe.open_folder("Docs\u{301}", true).await.unwrap();
    assert_eq!(folder.name, "Doc\u{15b}", "folder names are composed too");
    assert_eq!(other.open_folder("Doc\u{15b}", false).await.unwrap().id, folder.id, "one folder, typed two ways");

    // Both devices change the same file: the desk conflicts with the café's version.
    let (v1, c1) = file_entry("notes.txt", b"one");
    let (v2, c2) = file_entry("notes.txt", b"two");
    cafe.put_chunks([c1, c2].concat()).await.unwrap();
    cafe.commit(folder.id, vec![CommitChange { base_rev: 0, entry: Some(v1) }]).await.unwrap();
    let r = other.commit(folder.id, vec![CommitChange { base_rev: 0, entry: Some(v2) }]).await.unwrap();
    assert!(!r.outcomes[0].accepted);
    let theirs = r.outcomes[0].current.as_ref().unwrap();
    assert_eq!(theirs.device_name, "Caf\u{e9}");
    let path = filesync_core::RelPath::new("notes.txt").unwrap();
    let copy = filesync_core::conflict::conflict_copy_path(&path, &theirs.device_name, 0, 0);
    assert_eq!(copy.as_str(), "notes (conflicted copy from Caf\u{e9} 1970-01-01 000000).txt");

    let bad: [(&str, &str, &str); 5] = [
        ("bob", "   ", "the device name is empty"),
        ("bob", "a\u{7}b", "the device name contains a control character"),
        ("bob", &"d".repeat(129), "the device name is 129 bytes long; at most 128"),
        ("bad name!", "x", "a user name may hold only letters"),
        ("caf\u{e9}", "x", "a user name may hold only letters"),
    ];
    for (user, device, says) in bad {
        let (code, message) = failure(s.connect().await.register(user, "password123", device).await);
        assert_eq!(code, Some(ErrorCode::BadRequest), "{user:?} {device:?}: {message}");
        assert!(message.contains(says), "{user:?} {device:?}: {message}");
    }
    let (code, message) = failure(cafe.rename_device(session.device_id, "\u{1b}[31m").await);
    assert_eq!(code, Some(ErrorCode::BadRequest), "{message}");
    cafe.rename_device(session.device_id, "  Cafe\u{301} 2 ").await.unwrap();
    let devices = cafe.list_devices().await.unwrap();
    assert!(devices.iter().any(|d| d.name == "Caf\u{e9} 2"), "{devices:?}");
}

/// Regression: paths of about 4 KB were valid on the wire, and every computer then failed on
/// them ("File name too long") on every pass. A new version must be at a path of at most 1024
/// bytes, which every supported platform holds under its folder's root.
#[tokio::test]
async fn a_path_too_long_for_other_computers_is_refused_at_commit() {
    let s = start_server(true).await;
    let ann = user(&s, "ann").await;
    let folder = ann.open_folder("docs", true).await.unwrap();
    let dirs = vec!["d".repeat(200); 5].join("/"); // 1004 bytes
    let (fits, chunks) = file_entry(&format!("{dirs}/{}", "f".repeat(19)), b"deep");
    assert_eq!(fits.path.len(), 1024);
    ann.put_chunks(chunks).await.unwrap();
    let too_long = WireEntry { path: format!("{}x", fits.path), ..fits.clone() };
    let (code, message) = failure(ann.commit(folder.id, [change(fits.clone()), change(too_long)].concat()).await);
    assert_eq!(code, Some(ErrorCode::InvalidPath), "{message}");
    assert!(message.contains("1025 bytes long") && message.contains("at most 1024 bytes"), "{message}");
    let r = ann.commit(folder.id, change(fits.clone())).await.unwrap();
    assert!(r.outcomes[0].accepted, "1024 bytes is fine");
    let rev = r.outcomes[0].current.as_ref().unwrap().rev;
    let (code, message) = failure(ann.restore(folder.id, &fits.path, rev, &format!("{}x", fits.path)).await);
    assert_eq!(code, Some(ErrorCode::InvalidPath), "a restored copy too: {message}");
}

/// Regression: one invalid row in the metadata database made `GetChanges` fail for the whole
/// folder, for every device. The row is now skipped (and logged); the others are served, and
/// the device's cursor passes it.
#[tokio::test]
async fn a_damaged_metadata_row_does_not_block_get_changes() {
    let s = start_server(true).await;
    let ann = user(&s, "ann").await;
    let folder = ann.open_folder("docs", true).await.unwrap();
    for name in ["a.txt", "b.txt", "c.txt"] {
        let (e, chunks) = file_entry(name, name.as_bytes());
        ann.put_chunks(chunks).await.unwrap();
        ann.commit(folder.id, change(e)).await.unwrap();
    }
    let url = format!("sqlite://{}", s.data.join("meta.db").display());
    let db = sqlx::SqlitePool::connect(&url).await.unwrap();
    for (rev, damage) in [(2, "chunks = x'00'"), (3, "path = '/etc/passwd'")] {
        let sql = format!("UPDATE versions SET {damage} WHERE rev = {rev}");
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&db).await.unwrap();
    }
    db.close().await;

    let ch = ann.get_changes(folder.id, 0, 100).await.unwrap();
    let paths: Vec<&str> = ch.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["a.txt"], "the damaged rows are left out, the rest is served");
    assert!(!ch.more);
    assert_eq!(ch.folder_seq, 3, "a device's cursor moves past the damaged rows");
    let page = ann.get_changes(folder.id, 1, 1).await.unwrap();
    assert!(page.entries.is_empty() && !page.more, "{page:?}");
}
