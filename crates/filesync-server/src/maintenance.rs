//! Server housekeeping: thins every folder's history by the retention policy and deletes the
//! chunks no remaining version uses. Runs once shortly after start, then every hour, and can
//! be run on demand ([`Maintenance::run_once`], with the time passed in).
//!
//! Several instances may share one store (PostgreSQL): a run first takes the store's
//! maintenance lease ([`MetaStore::try_lock_maintenance`]) and does nothing if another instance
//! holds it, so one instance at a time does the work.
//!
//! Chunk deletion is a mark and a sweep (`MetaStore::unreferenced_chunks`, then
//! `MetaStore::delete_chunks`, whose transaction spares chunks that commits began to use in
//! between). Two more things keep it from ever deleting bytes a version needs:
//!
//! - a **grace period**: only chunks added more than [`GC_GRACE`] before `now` are candidates,
//!   so an upload in progress keeps its chunks until its commit (a re-upload refreshes the time);
//! - the user's **chunk lock** ([`MetaStore::lock_chunks`], seen by every instance on the
//!   store): a `PutChunks` holds it shared from "are the bytes there?" until the chunk is
//!   recorded, and the sweep holds it exclusively from forgetting a chunk until its bytes are
//!   deleted. Otherwise a put — on this instance or another — could find the bytes present,
//!   the sweep delete them, and the put then record a chunk that is gone.

use filesync_core::Hash;
use filesync_core::clock::Clock;
use filesync_store::{ChunkLock, ChunkStore, MetaStore, PruneStats, RetentionPolicy, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, error, info, warn};

/// Chunks younger than this are never collected (seconds): longer than any upload takes
/// between its first chunk and its commit.
pub const GC_GRACE: i64 = 24 * 3600;
/// Chunks forgotten and deleted per hold of the chunk lock, so uploads wait only briefly.
const GC_BATCH: usize = 1000;

/// When maintenance runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaintenanceSchedule {
    /// Delay after the server starts before the first run.
    pub first_after: Duration,
    pub every: Duration,
}

impl Default for MaintenanceSchedule {
    /// A minute after start, then hourly.
    fn default() -> MaintenanceSchedule {
        MaintenanceSchedule { first_after: Duration::from_secs(60), every: Duration::from_secs(3600) }
    }
}

/// What one run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    /// Another instance sharing the store held the maintenance lease: this run did nothing.
    pub skipped: bool,
    pub prune: PruneStats,
    /// Users whose chunks were examined.
    pub users: u64,
    pub chunks_deleted: u64,
    pub bytes_deleted: u64,
    /// Chunks forgotten whose bytes could not be deleted (left as harmless orphans; logged).
    pub delete_failures: u64,
}

/// Prune and garbage-collect the stores of one server.
#[derive(Clone)]
pub struct Maintenance {
    meta: Arc<dyn MetaStore>,
    chunks: Arc<dyn ChunkStore>,
    policy: RetentionPolicy,
    /// Chunks younger than this are never collected (seconds): [`GC_GRACE`] but in soak tests.
    gc_grace: i64,
}

impl Maintenance {
    /// Maintenance of these stores. It is safe beside uploads through the same store handle,
    /// and — on a shared store (PostgreSQL) — beside other instances; a running server has its
    /// own, see `Server::maintenance`.
    pub fn new(meta: Arc<dyn MetaStore>, chunks: Arc<dyn ChunkStore>, policy: RetentionPolicy) -> Maintenance {
        Maintenance { meta, chunks, policy, gc_grace: GC_GRACE }
    }

    /// The same with another grace period for new chunks (seconds). Shorter than an upload
    /// takes from its first chunk to its commit, that commit fails with `MissingChunks` and
    /// the client sends them again: soak tests use it so that collection runs beside uploads.
    pub fn with_gc_grace(self, secs: i64) -> Maintenance {
        Maintenance { gc_grace: secs, ..self }
    }

    pub fn policy(&self) -> &RetentionPolicy {
        &self.policy
    }

    /// Prunes every folder's history as of `now` (Unix seconds), then deletes every user's
    /// chunks that no remaining version uses and that were added before `now - GC_GRACE` (or
    /// the grace set by [`Maintenance::with_gc_grace`]) —
    /// unless another instance sharing the store is running maintenance now: then it does
    /// nothing and reports `skipped`.
    pub async fn run_once(&self, now: i64) -> Result<MaintenanceReport, StoreError> {
        let Some(lease) = self.meta.try_lock_maintenance().await? else {
            debug!("maintenance: another instance is running it");
            return Ok(MaintenanceReport { skipped: true, ..Default::default() });
        };
        let report = self.run_leased(now).await;
        if let Err(e) = lease.release().await {
            // Released anyway, with the connection that held it.
            warn!("could not release the maintenance lease cleanly: {e}");
        }
        report
    }

    async fn run_leased(&self, now: i64) -> Result<MaintenanceReport, StoreError> {
        let mut report =
            MaintenanceReport { prune: self.meta.prune_history(now, &self.policy).await?, ..Default::default() };
        for user in self.meta.list_users().await? {
            report.users += 1;
            let sweep = self.meta.unreferenced_chunks(user.id, now.saturating_sub(self.gc_grace)).await?;
            for batch in sweep.candidates.chunks(GC_BATCH) {
                let hashes: Vec<Hash> = batch.iter().map(|(h, _)| *h).collect();
                let lock = self.meta.lock_chunks(user.id, ChunkLock::Sweep).await?;
                for (hash, size) in self.meta.delete_chunks(&sweep, &hashes).await? {
                    match self.chunks.delete(user.id, &hash).await {
                        Ok(()) => {
                            report.chunks_deleted += 1;
                            report.bytes_deleted += u64::from(size);
                        }
                        Err(e) => {
                            // Forgotten but still on disk: wasted space, never a wrong answer.
                            error!(user = user.id, %hash, "could not delete an unreferenced chunk: {e}");
                            report.delete_failures += 1;
                        }
                    }
                }
                lock.release().await?;
            }
        }
        let p = &report.prune;
        if p.versions_removed > 0 || report.chunks_deleted > 0 {
            info!(
                "maintenance: pruned {} old version(s) ({} bytes before deduplication) in {} folder(s); \
                 deleted {} unreferenced chunk(s), {} bytes",
                p.versions_removed, p.bytes_removed, p.folders, report.chunks_deleted, report.bytes_deleted
            );
        } else {
            debug!(?report, "maintenance: nothing to prune or collect");
        }
        Ok(report)
    }

    /// Runs on `schedule` until the task is dropped or aborted. Aborting mid-run is safe: every
    /// step is a transaction, and a chunk forgotten before its bytes were deleted is only an
    /// orphan file.
    pub async fn run_forever(self, schedule: MaintenanceSchedule, clock: Arc<dyn Clock>) {
        tokio::time::sleep(schedule.first_after).await;
        let mut tick = tokio::time::interval(schedule.every.max(Duration::from_secs(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = clock.now_unix();
            if let Err(e) = self.run_once(now).await {
                error!("maintenance failed (it will run again in {:?}): {e}", schedule.every);
            }
        }
    }
}
