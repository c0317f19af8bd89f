//! Locks a [`MetaStore`](crate::MetaStore) holds for the servers that share it: the per-user
//! *chunk lock* that keeps garbage collection from deleting the bytes of a chunk an upload is
//! about to record ([`ChunkLock`]), and the *maintenance lease* that lets one instance at a time
//! prune and collect. Both are held as a [`StoreLock`], released by [`StoreLock::release`] or,
//! whatever happens to the holder (an error, a cancelled task), when it is dropped.
//!
//! On SQLite one server process writes the store, so the locks are in-process
//! ([`InProcessLocks`]); on PostgreSQL they are advisory locks, seen by every instance
//! (`pg/locks.rs`).

use crate::Result;
use async_trait::async_trait;
use std::sync::Arc;
use tokio::sync::{Mutex, RwLock};

/// How a [`MetaStore::lock_chunks`](crate::MetaStore::lock_chunks) holds a user's chunk lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkLock {
    /// Shared, by an upload: from writing a chunk's bytes (or finding them there) until
    /// [`MetaStore::add_chunks`](crate::MetaStore::add_chunks) has recorded the chunk. Uploads
    /// never wait for each other.
    Upload,
    /// Exclusive, by a garbage collection: from [`MetaStore::delete_chunks`](crate::MetaStore::delete_chunks)
    /// forgetting chunks until their bytes are deleted.
    Sweep,
}

/// Something a store holds until it is released.
#[async_trait]
pub trait Held: Send + Sync {
    /// Gives the lock back. Dropping the value instead must give it back too, if less
    /// promptly (a PostgreSQL lock is then released by closing its connection).
    async fn release(self: Box<Self>) -> Result<()>;
}

/// A lock a store holds for its caller; released by [`StoreLock::release`] or when dropped.
pub struct StoreLock(Box<dyn Held>);

impl StoreLock {
    pub fn new(held: impl Held + 'static) -> StoreLock {
        StoreLock(Box::new(held))
    }

    /// Gives the lock back now. An error means the lock could not be released cleanly; it is
    /// released anyway (on PostgreSQL, by closing the connection that held it).
    pub async fn release(self) -> Result<()> {
        self.0.release().await
    }
}

impl std::fmt::Debug for StoreLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreLock")
    }
}

/// The locks of a store that one process writes (SQLite): a tokio `RwLock` for chunks (one for
/// all users: uploads share it, a sweep batch takes it briefly) and a tokio `Mutex` for
/// maintenance — tokio's, since they are held across awaits. Clones share the locks.
#[derive(Clone, Debug, Default)]
pub struct InProcessLocks {
    chunks: Arc<RwLock<()>>,
    maintenance: Arc<Mutex<()>>,
}

impl InProcessLocks {
    pub async fn lock_chunks(&self, mode: ChunkLock) -> StoreLock {
        match mode {
            ChunkLock::Upload => StoreLock::new(Guard(self.chunks.clone().read_owned().await)),
            ChunkLock::Sweep => StoreLock::new(Guard(self.chunks.clone().write_owned().await)),
        }
    }

    /// The maintenance lease, unless a run of this process holds it.
    pub fn try_lock_maintenance(&self) -> Option<StoreLock> {
        self.maintenance.clone().try_lock_owned().ok().map(|g| StoreLock::new(Guard(g)))
    }
}

/// Any guard that releases on drop.
struct Guard<T>(T);

#[async_trait]
impl<T: Send + Sync> Held for Guard<T> {
    async fn release(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_sweep_waits_for_uploads_and_uploads_for_a_sweep() {
        let locks = InProcessLocks::default();
        let up = locks.lock_chunks(ChunkLock::Upload).await;
        let _second_upload = locks.lock_chunks(ChunkLock::Upload).await; // uploads share
        let sweep = {
            let locks = locks.clone();
            tokio::spawn(async move { locks.lock_chunks(ChunkLock::Sweep).await })
        };
        settle().await;
        assert!(!sweep.is_finished(), "the sweep waits for the uploads");
        up.release().await.unwrap();
        drop(_second_upload);
        let sweep = sweep.await.unwrap();
        let upload = {
            let locks = locks.clone();
            tokio::spawn(async move { locks.lock_chunks(ChunkLock::Upload).await })
        };
        settle().await;
        assert!(!upload.is_finished(), "an upload waits for the sweep");
        drop(sweep);
        upload.await.unwrap().release().await.unwrap();
    }

    /// Lets the spawned tasks run until they wait.
    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn one_maintenance_run_at_a_time() {
        let locks = InProcessLocks::default();
        let lease = locks.try_lock_maintenance().expect("free");
        assert!(locks.clone().try_lock_maintenance().is_none(), "held");
        lease.release().await.unwrap();
        assert!(locks.try_lock_maintenance().is_some(), "free again");
    }
}
