//! Conformance checks for the locks a store holds for the servers that share it
//! ([`crate::locks`]): a sweep waits while an upload holds a user's chunk lock and the other way
//! round, a wait given up leaves nothing held, and the maintenance lease has one holder.

use crate::{ChunkLock, MetaStore};
use std::time::Duration;

/// Long enough for a lock that is free to be taken, however slow the machine.
const FREE: Duration = Duration::from_secs(10);
/// How long a check watches a lock that must not be granted (it never is, if the store is
/// right: this bounds the test, it decides nothing).
const HELD: Duration = Duration::from_millis(200);

pub(super) async fn a_sweep_waits_for_uploads_and_uploads_for_a_sweep<S: MetaStore>(s: &S) {
    let user = 1;
    let upload = s.lock_chunks(user, ChunkLock::Upload).await.expect("an upload takes the chunk lock");
    let second = tokio::time::timeout(FREE, s.lock_chunks(user, ChunkLock::Upload)).await;
    let second = second.expect("uploads share the chunk lock").unwrap();
    let sweep = tokio::time::timeout(HELD, s.lock_chunks(user, ChunkLock::Sweep)).await;
    assert!(sweep.is_err(), "a sweep must wait while an upload holds the chunk lock");
    upload.release().await.unwrap();
    second.release().await.unwrap();
    // The sweep that gave up waiting holds nothing: the next one gets the lock.
    let sweep = tokio::time::timeout(FREE, s.lock_chunks(user, ChunkLock::Sweep)).await;
    let sweep = sweep.expect("a sweep takes the lock once the uploads are done").unwrap();
    let upload = tokio::time::timeout(HELD, s.lock_chunks(user, ChunkLock::Upload)).await;
    assert!(upload.is_err(), "an upload must wait while a sweep holds the chunk lock");
    drop(sweep); // released by dropping it, as when a sweep fails half-way
    let upload = tokio::time::timeout(FREE, s.lock_chunks(user, ChunkLock::Upload)).await;
    upload.expect("a dropped lock is released").unwrap().release().await.unwrap();
}

pub(super) async fn the_maintenance_lease_has_one_holder<S: MetaStore>(s: &S) {
    let lease = s.try_lock_maintenance().await.unwrap().expect("the lease is free");
    assert!(s.try_lock_maintenance().await.unwrap().is_none(), "a second run must not get the lease");
    lease.release().await.unwrap();
    let deadline = tokio::time::Instant::now() + FREE;
    // A dropped lease is released too (on PostgreSQL, with its connection: not at once).
    drop(s.try_lock_maintenance().await.unwrap().expect("free again after release"));
    loop {
        if let Some(lease) = s.try_lock_maintenance().await.unwrap() {
            lease.release().await.unwrap();
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "a dropped lease must be released");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
