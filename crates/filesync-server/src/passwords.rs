//! Bounds the server's Argon2 work. Each hash or verification takes 19 MiB and a core for tens
//! of milliseconds, so a burst of logins must not run them all at once: at most `limit` run
//! at a time server-wide, at most `queue` more wait for a turn, and beyond that an attempt is
//! refused at once with "server busy" (`RateLimited`), before any memory is spent on it.

use crate::auth;
use filesync_proto::{ErrorCode, ErrorMsg};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

/// Default number of concurrent Argon2 runs: one per core, and at least 2.
pub fn default_concurrency() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).max(2)
}

/// Default number of password checks waiting for a turn before new ones are refused.
pub const DEFAULT_QUEUE: usize = 64;

/// The server-wide gate for password hashing and verification, with counters for tests and
/// metrics.
#[derive(Debug)]
pub struct PasswordWork {
    permits: Arc<Semaphore>,
    limit: usize,
    max_queued: usize,
    queued: AtomicUsize,
    running: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    verifications: AtomicU64,
    hashes: AtomicU64,
    /// Argon2 working memory, one buffer per run that may overlap, reused. A std mutex: it
    /// guards a push or pop, never an await.
    memory: Arc<Mutex<Vec<auth::Argon2Memory>>>,
}

/// Tells the client to come back later; no password was looked at.
fn busy() -> ErrorMsg {
    ErrorMsg::new(ErrorCode::RateLimited, "the server is busy checking other passwords; retry in 1 s")
}

fn failed() -> ErrorMsg {
    ErrorMsg::new(ErrorCode::Internal, "password check failed (see the server log)")
}

impl PasswordWork {
    pub fn new(limit: usize, max_queued: usize) -> PasswordWork {
        let limit = limit.max(1);
        PasswordWork {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
            max_queued,
            queued: AtomicUsize::new(0),
            running: Arc::new(AtomicUsize::new(0)),
            peak: Arc::new(AtomicUsize::new(0)),
            verifications: AtomicU64::new(0),
            hashes: AtomicU64::new(0),
            memory: Arc::default(),
        }
    }

    /// How many Argon2 runs may overlap.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The most Argon2 runs that ever overlapped.
    pub fn peak_concurrency(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    /// How many passwords were checked against a stored hash (logins, password changes).
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::SeqCst)
    }

    /// How many new password hashes were computed (registrations, password changes).
    pub fn hashes(&self) -> u64 {
        self.hashes.load(Ordering::SeqCst)
    }

    /// How many checks are waiting for a turn right now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }

    /// Hashes a new password.
    pub async fn hash(&self, password: String) -> Result<String, ErrorMsg> {
        self.hashes.fetch_add(1, Ordering::SeqCst);
        self.run(move |memory| auth::hash_password(&password, memory)).await
    }

    /// Checks `password` against `phc`, or against a dummy hash when there is no such user, so
    /// that both take as long.
    pub async fn verify(&self, password: String, phc: Option<String>) -> Result<bool, ErrorMsg> {
        self.verifications.fetch_add(1, Ordering::SeqCst);
        self.run(move |memory| match phc {
            Some(phc) => auth::verify_password(&password, &phc, memory),
            None => {
                auth::verify_password(&password, dummy_hash(memory), memory);
                false
            }
        })
        .await
    }

    /// Waits for a turn (or refuses when too many wait), then runs `work` on a blocking thread.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut auth::Argon2Memory) -> T + Send + 'static,
    ) -> Result<T, ErrorMsg> {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                // Reserve a place in the queue atomically, so that a burst cannot overshoot it.
                let reserved = self
                    .queued
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |q| (q < self.max_queued).then_some(q + 1));
                if reserved.is_err() {
                    return Err(busy());
                }
                let p = self.permits.clone().acquire_owned().await;
                self.queued.fetch_sub(1, Ordering::SeqCst);
                p.map_err(|_| failed())?
            }
        };
        let (running, peak, pool) = (self.running.clone(), self.peak.clone(), self.memory.clone());
        // The permit moves into the blocking task: if the connection goes away meanwhile, the
        // run still counts until it really ends.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            let mut memory = pool.lock().expect("argon2 memory lock").pop().unwrap_or_default();
            let out = work(&mut memory);
            pool.lock().expect("argon2 memory lock").push(memory);
            running.fetch_sub(1, Ordering::SeqCst);
            out
        })
        .await
        .map_err(|_| failed())
    }
}

/// A hash to verify against when the user does not exist. Computed on first use, on the
/// blocking thread of that first check.
fn dummy_hash(memory: &mut auth::Argon2Memory) -> &'static str {
    static H: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    H.get_or_init(|| auth::hash_password("not a real password", memory))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Waits until `cond` holds; panics after a generous guard.
    async fn until(cond: impl Fn() -> bool) {
        tokio::time::timeout(Duration::from_secs(30), async {
            while !cond() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("condition never held");
    }

    #[tokio::test]
    async fn checks_beyond_the_queue_are_refused_as_busy() {
        let work = Arc::new(PasswordWork::new(1, 1));
        // Occupy the only slot, then the only queue place.
        let held = work.permits.clone().acquire_owned().await.unwrap();
        let w = work.clone();
        let queued = tokio::spawn(async move { w.verify("pw".into(), None).await });
        until(|| work.queued() == 1).await;
        let refused = work.verify("pw".into(), None).await.unwrap_err();
        assert_eq!(refused.code, ErrorCode::RateLimited as u32);
        assert!(refused.message.contains("busy"), "{}", refused.message);
        drop(held);
        assert_eq!(queued.await.unwrap(), Ok(false));
        assert_eq!(work.queued(), 0);
        assert_eq!(work.peak_concurrency(), 1);
    }

    #[tokio::test]
    async fn verification_answers_correctly() {
        let work = PasswordWork::new(2, 4);
        let h = work.hash("correct horse".into()).await.unwrap();
        assert_eq!(work.verify("correct horse".into(), Some(h.clone())).await, Ok(true));
        assert_eq!(work.verify("wrong".into(), Some(h)).await, Ok(false));
        assert_eq!(work.verify("correct horse".into(), None).await, Ok(false));
        assert_eq!((work.hashes(), work.verifications()), (1, 3));
    }
}
