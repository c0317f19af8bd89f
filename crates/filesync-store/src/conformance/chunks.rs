//! Conformance checks for [`ChunkStore`]: storing, reading and deleting chunk bytes, per user.

use crate::{ChunkStore, UserId};
use bytes::Bytes;
use filesync_core::Hash;

/// Each check uses its own user ids, so checks cannot see each other's chunks.
const ALICE: UserId = 1_000_001;
const BOB: UserId = 1_000_002;

fn chunk(content: &[u8]) -> (Hash, Bytes) {
    (Hash::of(content), Bytes::copy_from_slice(content))
}

async fn get<C: ChunkStore>(store: &C, user: UserId, hash: &Hash) -> Option<Bytes> {
    store.get(user, hash).await.unwrap_or_else(|e| panic!("get {hash} of user {user} failed: {e}"))
}

pub(super) async fn put_chunks_are_returned_by_get<C: ChunkStore>(store: &C) {
    let (a, b) = (chunk(b"put-get a"), chunk(b"put-get b"));
    store.put_many(ALICE, &[a.clone(), b.clone()]).await.expect("put_many of two chunks");
    assert_eq!(get(store, ALICE, &a.0).await, Some(a.1), "get must return the bytes put");
    assert_eq!(get(store, ALICE, &b.0).await, Some(b.1), "get must return every chunk of a batch");
}

pub(super) async fn absent_chunk_is_none<C: ChunkStore>(store: &C) {
    let never = Hash::of(b"never stored");
    assert_eq!(get(store, ALICE, &never).await, None, "a chunk never put must be None");
}

pub(super) async fn put_is_idempotent<C: ChunkStore>(store: &C) {
    let a = chunk(b"idempotent");
    store.put_many(ALICE, std::slice::from_ref(&a)).await.expect("first put");
    store.put_many(ALICE, std::slice::from_ref(&a)).await.expect("putting a present chunk again must succeed");
    store.put_many(ALICE, &[a.clone(), a.clone()]).await.expect("a batch may name one chunk twice");
    assert_eq!(get(store, ALICE, &a.0).await, Some(a.1), "repeated puts must leave the chunk intact");
}

pub(super) async fn delete_removes_and_is_idempotent<C: ChunkStore>(store: &C) {
    let (a, keep) = (chunk(b"to delete"), chunk(b"to keep"));
    store.put_many(ALICE, &[a.clone(), keep.clone()]).await.expect("put");
    store.delete(ALICE, &a.0).await.expect("delete of a present chunk");
    assert_eq!(get(store, ALICE, &a.0).await, None, "a deleted chunk must be gone");
    assert_eq!(get(store, ALICE, &keep.0).await, Some(keep.1), "delete must remove only its chunk");
    store.delete(ALICE, &a.0).await.expect("deleting an absent chunk must succeed");
    store.put_many(ALICE, std::slice::from_ref(&a)).await.expect("put after delete");
    assert_eq!(get(store, ALICE, &a.0).await, Some(a.1), "a chunk can be stored again after deletion");
}

pub(super) async fn chunks_are_separate_per_user<C: ChunkStore>(store: &C) {
    let a = chunk(b"alice's secret");
    store.put_many(ALICE, std::slice::from_ref(&a)).await.expect("put for alice");
    assert_eq!(get(store, BOB, &a.0).await, None, "user B must not read user A's chunk");
    store.put_many(BOB, std::slice::from_ref(&a)).await.expect("put of the same chunk for bob");
    store.delete(BOB, &a.0).await.expect("delete for bob");
    assert_eq!(get(store, BOB, &a.0).await, None, "bob's copy is deleted");
    assert_eq!(get(store, ALICE, &a.0).await, Some(a.1), "user B deleting must not remove user A's chunk");
}

pub(super) async fn empty_chunk_round_trips<C: ChunkStore>(store: &C) {
    let empty = chunk(b"");
    store.put_many(ALICE, std::slice::from_ref(&empty)).await.expect("put of the empty chunk");
    assert_eq!(get(store, ALICE, &empty.0).await, Some(Bytes::new()), "the empty chunk must round-trip");
}

pub(super) async fn batches_of_many_chunks_round_trip<C: ChunkStore>(store: &C) {
    let batch: Vec<(Hash, Bytes)> =
        (0..300u32).map(|i| chunk(format!("chunk number {i} {}", "x".repeat(i as usize)).as_bytes())).collect();
    store.put_many(BOB, &batch).await.expect("put of 300 chunks");
    for (hash, data) in &batch {
        assert_eq!(get(store, BOB, hash).await.as_ref(), Some(data), "chunk {hash} of a large batch");
    }
}
