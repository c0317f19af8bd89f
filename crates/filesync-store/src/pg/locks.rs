//! The chunk lock and the maintenance lease on PostgreSQL: session-level advisory locks, so
//! that every instance sharing the database sees them ([`crate::locks`] says what they guard).
//!
//! Each held lock keeps a connection of its own, from a pool of its own ([`PgLocks`]), so that
//! an upload waiting for a sweep never holds one of the connections that requests (and the
//! sweep itself) need: waiting uploads can fill the lock pool, never the query pool, and the
//! sweep that they wait for finishes on the query pool. A lock dropped without
//! [`StoreLock::release`] — an error, a cancelled request, a crashed instance — goes with its
//! connection: the connection is closed rather than returned to the pool, and PostgreSQL
//! releases a session's advisory locks when the session ends.
//!
//! Keys are the two-`int4` form (`pg_advisory_lock(class, object)`), a key space apart from the
//! one-`bigint` key of the migrations: the class says which lock, the object is the user id
//! (folded to 32 bits; two users that share a key only wait for each other now and then).

use crate::locks::{ChunkLock, Held, StoreLock};
use crate::{Result, UserId};
use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};
use std::time::Duration;

/// The class of a user's chunk lock: "FSch".
const CHUNKS: i32 = 0x4653_6368;
/// The class of the maintenance lease: "FSmt" (object 0).
const MAINTENANCE: i32 = 0x4653_6d74;

/// Connections that hold locks, per store (server instance) at most: how many uploads may hold
/// or wait for a chunk lock at once; more wait for a connection (up to the acquire timeout).
const LOCK_CONNECTIONS: u32 = 32;
/// How long an upload waits for a free lock connection.
const LOCK_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(60);

/// The pool whose connections hold advisory locks.
#[derive(Clone, Debug)]
pub(super) struct PgLocks {
    pool: PgPool,
}

impl PgLocks {
    /// Connects lazily: no connection until the first lock.
    pub(super) fn new(options: PgConnectOptions) -> PgLocks {
        let pool = PgPoolOptions::new()
            .max_connections(LOCK_CONNECTIONS)
            .acquire_timeout(LOCK_ACQUIRE_TIMEOUT)
            .connect_lazy_with(options);
        PgLocks { pool }
    }

    /// Takes `user`'s chunk lock, waiting for it.
    pub(super) async fn lock_chunks(&self, user: UserId, mode: ChunkLock) -> Result<StoreLock> {
        let (lock, unlock) = match mode {
            ChunkLock::Upload => ("SELECT pg_advisory_lock_shared($1, $2)", "SELECT pg_advisory_unlock_shared($1, $2)"),
            ChunkLock::Sweep => ("SELECT pg_advisory_lock($1, $2)", "SELECT pg_advisory_unlock($1, $2)"),
        };
        let mut held = Advisory { conn: Some(self.pool.acquire().await?), unlock, key: (CHUNKS, fold(user)) };
        // If this future is dropped while PostgreSQL waits, `held` closes the connection.
        sqlx::query(lock).bind(CHUNKS).bind(fold(user)).execute(&mut **held.conn()).await?;
        Ok(StoreLock::new(held))
    }

    /// The maintenance lease, if no other session holds it.
    pub(super) async fn try_lock_maintenance(&self) -> Result<Option<StoreLock>> {
        let mut held = Advisory {
            conn: Some(self.pool.acquire().await?),
            unlock: "SELECT pg_advisory_unlock($1, $2)",
            key: (MAINTENANCE, 0),
        };
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
            .bind(MAINTENANCE)
            .bind(0i32)
            .fetch_one(&mut **held.conn())
            .await?;
        if !got {
            // Nothing is held: the connection may go back to the pool.
            held.conn.take();
            return Ok(None);
        }
        Ok(Some(StoreLock::new(held)))
    }

    pub(super) async fn close(&self) {
        self.pool.close().await;
    }
}

/// A user id as the object of a two-`int4` key.
fn fold(user: UserId) -> i32 {
    (user ^ (user >> 32)) as u32 as i32
}

/// An advisory lock held by the session of `conn`.
struct Advisory {
    /// `None` once released.
    conn: Option<PoolConnection<Postgres>>,
    unlock: &'static str,
    key: (i32, i32),
}

impl Advisory {
    fn conn(&mut self) -> &mut PoolConnection<Postgres> {
        self.conn.as_mut().expect("a lock not yet released has its connection")
    }
}

#[async_trait]
impl Held for Advisory {
    async fn release(mut self: Box<Self>) -> Result<()> {
        let unlocked: bool =
            sqlx::query_scalar(self.unlock).bind(self.key.0).bind(self.key.1).fetch_one(&mut **self.conn()).await?;
        if !unlocked {
            // The session did not hold it: never expected; say so, and let `Drop` close it.
            return Err(crate::StoreError::Corrupt(
                "an advisory lock was not held when it was released (a bug: please report it)".into(),
            ));
        }
        // Unlocked: the connection goes back to the pool.
        self.conn.take();
        Ok(())
    }
}

impl Drop for Advisory {
    fn drop(&mut self) {
        // Still holding (or still waiting for) the lock: end the session, which releases it.
        if let Some(mut conn) = self.conn.take() {
            conn.close_on_drop();
        }
    }
}
