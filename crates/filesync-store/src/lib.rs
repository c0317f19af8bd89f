//! Server-side storage behind two traits: [`MetaStore`] (accounts, devices, folders, the
//! per-folder journal and which chunks each user has) and [`ChunkStore`] (chunk bytes,
//! content-addressed per user). SQLite ([`sqlite::SqliteMeta`]) and a local directory
//! ([`localfs::LocalChunks`]) are the embedded defaults; PostgreSQL ([`pg::PgMeta`]) and an
//! S3-compatible bucket ([`s3::S3Chunks`]) serve deployments of several server instances;
//! [`conformance`] is the test suite every implementation must pass.
//!
//! This crate refuses to know about the network protocol or TLS: it speaks domain types
//! from `filesync-core`. The rule that decides whether a commit is accepted lives here, as a
//! pure function ([`decide`]), so every implementation applies the same rule.
//!
//! A server with the embedded stores opens both with [`open_embedded`] from its data
//! directory. Chunk bytes must be durable before the metadata says they exist: call
//! [`ChunkStore::put_many`] first, then [`MetaStore::add_chunks`].
//!
//! History is kept by the journal itself: every version stays in the store until
//! [`MetaStore::prune_history`] thins it by the [`retention`] schedule, and a chunk is deleted
//! only by the mark-and-sweep of [`MetaStore::unreferenced_chunks`] and
//! [`MetaStore::delete_chunks`] (see [`ChunkSweep`] for why that is safe against concurrent
//! uploads and commits), under the store's chunk lock ([`MetaStore::lock_chunks`]), which every
//! server instance sharing the store sees.

use async_trait::async_trait;
use bytes::Bytes;
use filesync_core::{EntryState, FileMeta, Hash, RelPath};

pub mod conformance;
pub mod copy;
pub mod decide;
pub mod localfs;
pub mod locks;
pub mod pg;
pub mod retention;
pub mod s3;
mod sql;
pub mod sqlite;

pub use locks::{ChunkLock, StoreLock};
pub use retention::RetentionPolicy;

pub type UserId = u64;
pub type DeviceId = u64;
pub type FolderId = u64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub name: String,
    /// PHC string (Argon2id).
    pub password_hash: String,
    pub created_at: i64,
    /// Disabled by the server's operator: no login, no connection, data kept.
    pub disabled: bool,
    /// Most bytes of chunks the user may store ([`MetaStore::stored_bytes`]); `None`: no limit.
    pub quota: Option<u64>,
}

/// A new account, as [`MetaStore::create_account`] creates it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAccount<'a> {
    pub name: &'a str,
    /// PHC string (Argon2id).
    pub password_hash: &'a str,
    /// Storage quota in bytes; `None`: unlimited.
    pub quota: Option<u64>,
    /// The hash of an invite code ([`MetaStore::create_invite`]) this registration uses up.
    pub invite: Option<[u8; 32]>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    pub id: DeviceId,
    pub user_id: UserId,
    pub name: String,
    pub created_at: i64,
    /// Unix seconds; 0 if never seen after creation.
    pub last_seen: i64,
    pub revoked: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Folder {
    pub id: FolderId,
    pub user_id: UserId,
    pub name: String,
    /// Highest journal sequence number (0 for an empty folder).
    pub seq: u64,
}

/// A change a device proposes for one path. `meta: None` proposes a deletion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProposedChange {
    pub path: RelPath,
    /// The rev the device's change is based on; 0 if it knows no version of the path.
    pub base_rev: u64,
    pub meta: Option<FileMeta>,
}

/// What happened to one proposed change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Applied, or already the current state. Carries the current entry afterwards (`None` only
    /// when a deletion was proposed for a path that never existed).
    Accepted(Option<EntryState>),
    /// Rejected because the path changed since `base_rev`; carries the current entry.
    Conflict(Option<EntryState>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitOutput {
    pub outcomes: Vec<Outcome>,
    pub folder_seq: u64,
}

/// A path whose current entry is a deletion, with what it held before.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrashEntry {
    /// The current entry: a tombstone (when, and by which device, the path was deleted).
    pub deleted: EntryState,
    /// The newest live version before the deletion: what a restore brings back.
    pub last_live: EntryState,
}

/// How much a user stores on the server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Current (live) files across the user's folders: how many, and their sizes added up.
    pub files_current: u64,
    pub bytes_current: u64,
    /// Older file versions kept as history (overwritten or deleted), and their sizes added
    /// up before deduplication.
    pub versions_history: u64,
    pub bytes_history: u64,
    /// Distinct chunks stored for the user, and their bytes: what the disk actually holds
    /// (each chunk once, however many versions use it).
    pub chunks: u64,
    pub bytes_stored: u64,
}

/// What one [`MetaStore::prune_history`] run removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneStats {
    pub folders: u64,
    /// Paths with more than one version that were examined.
    pub paths: u64,
    pub versions_removed: u64,
    /// Sizes of the removed live versions added up (before deduplication; the chunks go
    /// when garbage collection finds them unreferenced).
    pub bytes_removed: u64,
}

/// The mark of a chunk garbage collection for one user: the chunks no version referenced when
/// the mark was taken and that were added before `added_before`, and each folder's seq at
/// that moment.
///
/// Why sweeping it is safe: [`MetaStore::delete_chunks`] runs in one write transaction that
/// first re-reads the versions committed since the mark (every new version has a rev above the
/// folder's marked seq, so nothing is missed) and spares the chunks they use, and deletes only
/// chunks still added before the cutoff (a re-upload refreshes `added_at`). A commit therefore
/// either lands before the sweep and keeps its chunks, or after it and fails with
/// [`StoreError::MissingChunks`] (the client uploads again) — never referencing a deleted chunk.
/// Chunks uploaded but not yet committed are younger than the cutoff if the caller leaves a
/// grace period. The caller deletes the chunk *bytes* only for the chunks `delete_chunks`
/// returns, and keeps uploads of those chunks from racing the byte deletion by holding the
/// user's chunk lock ([`MetaStore::lock_chunks`], [`ChunkLock::Sweep`]) from `delete_chunks`
/// until the bytes are deleted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChunkSweep {
    pub user: UserId,
    pub added_before: i64,
    /// Unreferenced chunks and their sizes.
    pub candidates: Vec<(Hash, u32)>,
    /// Each of the user's folders and its seq when the mark was taken.
    pub marked_seqs: Vec<(FolderId, u64)>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path} has no version {rev} in folder {folder} (or that version is a deletion, or was pruned)")]
    VersionNotFound { folder: FolderId, path: String, rev: u64 },
    #[error("user name {0:?} is already taken")]
    UserExists(String),
    #[error("the invite code is unknown, already used or expired")]
    InviteInvalid,
    #[error("folder {0} not found")]
    FolderNotFound(FolderId),
    #[error("the commit references {} chunk(s) the server does not have, first {}", .0.len(), .0.first().map(|h| h.to_hex()).unwrap_or_default())]
    MissingChunks(Vec<Hash>),
    #[error("storage is full: {0}")]
    Full(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A chunk's stored bytes do not match its hash; the store has set them aside (`moved_to`).
    #[error("chunk {hash} was damaged on disk (its bytes no longer match its hash); set aside as {moved_to}")]
    ChunkDamaged { hash: Hash, moved_to: String },
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("I/O error on {path}: {source}")]
    Io { path: String, source: std::io::Error },
    /// The object store (S3) failed or could not be reached; the message names the store.
    #[error("{0}")]
    Remote(String),
    /// The database server (PostgreSQL) could not be reached or refused the connection; the
    /// message names it (never with its password) and says what to check.
    #[error("{0}")]
    Connect(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Opens the embedded stores in a server data directory, creating what is missing: metadata in
/// `<data_dir>/meta.db` ([`open_sqlite`]) and chunks under `<data_dir>/chunks/`
/// ([`open_local_chunks`]).
pub async fn open_embedded(data_dir: &std::path::Path) -> Result<(sqlite::SqliteMeta, localfs::LocalChunks)> {
    let meta = open_sqlite(data_dir).await?;
    let chunks = open_local_chunks(data_dir)?;
    Ok((meta, chunks))
}

/// Opens (creating it) the SQLite metadata of a server data directory: `<data_dir>/meta.db`,
/// with SQLite's `meta.db-wal` and `meta.db-shm` beside it. On Unix, what it creates is
/// readable by the owner only (directories 0700, files 0600): it holds every user's password
/// hashes.
pub async fn open_sqlite(data_dir: &std::path::Path) -> Result<sqlite::SqliteMeta> {
    localfs::private_dir_all(data_dir)
        .map_err(|source| StoreError::Io { path: data_dir.display().to_string(), source })?;
    let db = data_dir.join("meta.db");
    // SQLite would create the database as 0644 (less the umask), and gives its -wal and -shm
    // files the database's mode: create it first, empty and owner-only.
    match localfs::private_file(&db) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(source) => return Err(StoreError::Io { path: db.display().to_string(), source }),
    }
    sqlite::SqliteMeta::open(&db).await
}

/// Opens (creating it, owner-only) the chunk directory of a server data directory:
/// `<data_dir>/chunks/`.
pub fn open_local_chunks(data_dir: &std::path::Path) -> Result<localfs::LocalChunks> {
    localfs::private_dir_all(data_dir)
        .map_err(|source| StoreError::Io { path: data_dir.display().to_string(), source })?;
    localfs::LocalChunks::open(data_dir.join("chunks"))
}

/// Accounts, devices, folders and their journals.
///
/// Every method that takes a `user` scopes its answer to that user: a folder id of another
/// user is reported as not found. Callers authorize; implementations must not leak.
#[async_trait]
pub trait MetaStore: Send + Sync + 'static {
    /// Creates an account without a quota or an invite.
    async fn create_user(&self, name: &str, password_hash: &str, now: i64) -> Result<User> {
        self.create_account(&NewAccount { name, password_hash, quota: None, invite: None }, now).await
    }
    /// Creates an account, in one transaction with using up its invite: fails with
    /// [`StoreError::InviteInvalid`] (creating nothing) if the invite is unknown, used or
    /// expired at `now`, and with [`StoreError::UserExists`] (using up nothing) if the name is
    /// taken.
    async fn create_account(&self, account: &NewAccount<'_>, now: i64) -> Result<User>;
    async fn user_by_name(&self, name: &str) -> Result<Option<User>>;
    async fn user_by_id(&self, id: UserId) -> Result<Option<User>>;
    async fn set_password_hash(&self, user: UserId, password_hash: &str) -> Result<()>;

    /// Creates a device holding the hash of its token (the token itself is never stored).
    async fn create_device(&self, user: UserId, name: &str, token_hash: &[u8; 32], now: i64) -> Result<Device>;
    /// The device owning this token hash, revoked or not.
    async fn device_by_token_hash(&self, token_hash: &[u8; 32]) -> Result<Option<Device>>;
    async fn device(&self, user: UserId, device: DeviceId) -> Result<Option<Device>>;
    async fn list_devices(&self, user: UserId) -> Result<Vec<Device>>;
    /// Marks the device revoked. Returns false if the user has no such device. Bumps the
    /// [`MetaStore::admin_generation`].
    async fn revoke_device(&self, user: UserId, device: DeviceId) -> Result<bool>;
    async fn rename_device(&self, user: UserId, device: DeviceId, name: &str) -> Result<bool>;
    /// Gives a *revoked* device of the user a new token, name and `last_seen`, and takes the
    /// revocation back: a computer logging in again keeps its row (no second one under its
    /// name). `None`, and nothing changed, when the user has no such revoked device.
    async fn reissue_device(
        &self,
        user: UserId,
        device: DeviceId,
        name: &str,
        token_hash: &[u8; 32],
        now: i64,
    ) -> Result<Option<Device>>;
    /// Deletes a *revoked* device of the user. Returns false, and deletes nothing, when the
    /// user has no such device or it is not revoked. History keeps its own copy of device
    /// names, so nothing else refers to the row.
    async fn remove_device(&self, user: UserId, device: DeviceId) -> Result<bool>;
    async fn touch_device(&self, device: DeviceId, now: i64) -> Result<()>;

    /// The user's folder called `name`; created (seq 0) when absent and `create` is set.
    async fn folder_by_name(&self, user: UserId, name: &str, create: bool) -> Result<Option<Folder>>;
    async fn folder(&self, user: UserId, folder: FolderId) -> Result<Option<Folder>>;
    async fn list_folders(&self, user: UserId) -> Result<Vec<Folder>>;

    /// Current entries (latest version of each path, tombstones included) whose rev is greater
    /// than `since`, ascending by rev, at most `limit`.
    async fn changes_since(&self, folder: FolderId, since: u64, limit: u32) -> Result<Vec<EntryState>>;
    async fn current(&self, folder: FolderId, path: &RelPath) -> Result<Option<EntryState>>;
    /// All versions of one path, newest first (history; the current one included).
    async fn versions(&self, folder: FolderId, path: &RelPath) -> Result<Vec<EntryState>>;

    /// Applies the changes in one transaction, each decided by [`decide::decide`] against the
    /// state left by the changes before it. Each accepted change that alters anything gets the
    /// next sequence number. Fails as a whole, changing nothing, if an accepted change
    /// references a chunk the user does not have ([`StoreError::MissingChunks`]).
    async fn commit(
        &self,
        user: UserId,
        folder: FolderId,
        device: &Device,
        changes: &[ProposedChange],
        now: i64,
    ) -> Result<CommitOutput>;

    /// Indices into `hashes` of the chunks this user does not have.
    async fn missing_chunks(&self, user: UserId, hashes: &[Hash]) -> Result<Vec<usize>>;
    /// Records that the chunk store now durably holds these chunks for the user.
    async fn add_chunks(&self, user: UserId, chunks: &[(Hash, u32)]) -> Result<()>;
    /// Sizes of the user's chunks, `None` where the user does not have one.
    async fn chunk_sizes(&self, user: UserId, hashes: &[Hash]) -> Result<Vec<Option<u32>>>;
    /// Forgets that the user has these chunks (their bytes were found damaged or gone), so that
    /// [`MetaStore::missing_chunks`] asks for them again and the next upload repairs them.
    /// Versions that name them are kept. Forgetting a chunk the user does not have is a no-op.
    async fn forget_chunks(&self, user: UserId, hashes: &[Hash]) -> Result<()>;

    /// Every user, by id (for server maintenance).
    async fn list_users(&self) -> Result<Vec<User>>;

    /// Disables or re-enables a user; false if there is no such user. Bumps the
    /// [`MetaStore::admin_generation`].
    async fn set_user_disabled(&self, user: UserId, disabled: bool) -> Result<bool>;
    /// Sets (`None`: removes) a user's storage quota; false if there is no such user.
    async fn set_quota(&self, user: UserId, quota: Option<u64>) -> Result<bool>;
    /// Bytes of the chunks the user stores, each chunk once: what counts against the quota.
    async fn stored_bytes(&self, user: UserId) -> Result<u64>;
    /// Revokes every device of the user that is not revoked yet, except `keep`; returns the
    /// ids it revoked. Bumps the [`MetaStore::admin_generation`] if it revoked any.
    async fn revoke_devices_except(&self, user: UserId, keep: Option<DeviceId>) -> Result<Vec<DeviceId>>;
    /// Stores a one-time invite code by its hash, usable until `expires_at` (Unix seconds).
    async fn create_invite(&self, code_hash: &[u8; 32], expires_at: i64, now: i64) -> Result<()>;
    /// A counter that every change a running server must act on (a user disabled, a device
    /// revoked) increases, so that a server sharing the store with another process (an admin
    /// command) notices by polling it.
    async fn admin_generation(&self) -> Result<u64>;

    /// One version of the folder's journal by its rev, if it is still stored.
    async fn version(&self, folder: FolderId, rev: u64) -> Result<Option<EntryState>>;
    /// A page of one path's versions, newest first: those with a rev below `before_rev` (0:
    /// no bound), at most `limit`. Tombstones included.
    async fn version_history(
        &self,
        folder: FolderId,
        path: &RelPath,
        before_rev: u64,
        limit: u32,
    ) -> Result<Vec<EntryState>>;
    /// The folder's trash: paths whose current entry is a deletion and whose last live version
    /// is still stored, most recently deleted first. Only paths equal to `prefix` or below it
    /// when given; only deletions with a rev below `before_rev` (0: no bound); at most `limit`.
    async fn trash(
        &self,
        folder: FolderId,
        prefix: Option<&RelPath>,
        before_rev: u64,
        limit: u32,
    ) -> Result<Vec<TrashEntry>>;
    /// Makes the content and metadata of version `rev` of `path` the new current version of
    /// `to_path` (`None`: `path` itself), in one transaction, as a new journal version
    /// committed by `device` at `now` — so every device syncs it like any edit. Decided by
    /// [`decide::plan_restore`]: the single outcome is `Accepted` with the new (or unchanged)
    /// entry, or `Conflict` with the entry in the way. Deleted or unknown ancestors of the
    /// target are re-created as directories. Fails with [`StoreError::VersionNotFound`] if
    /// `rev` is not a stored live version of `path`, [`StoreError::FolderNotFound`] if the
    /// folder is not the user's.
    #[allow(clippy::too_many_arguments)]
    async fn restore(
        &self,
        user: UserId,
        folder: FolderId,
        device: &Device,
        path: &RelPath,
        rev: u64,
        to_path: Option<&RelPath>,
        now: i64,
    ) -> Result<CommitOutput>;
    /// What the user stores: current files, history, and the chunks behind them.
    async fn usage(&self, user: UserId) -> Result<Usage>;
    /// Thins the history of every folder by `policy` at time `now`
    /// ([`retention::prune_path`]): never a path's current version, nor the last live version
    /// of a deleted path within retention. Each batch of paths is decided and deleted in one
    /// transaction, against the versions as they are at that moment.
    async fn prune_history(&self, now: i64, policy: &RetentionPolicy) -> Result<PruneStats>;
    /// Marks a chunk garbage collection for `user`: the chunks that no stored live version
    /// references and that were added before `added_before` (Unix seconds). Reads only.
    async fn unreferenced_chunks(&self, user: UserId, added_before: i64) -> Result<ChunkSweep>;
    /// Sweeps: forgets those of `hashes` that are candidates of `sweep`, are still referenced
    /// by no version (re-checking the versions committed since the mark) and were still added
    /// before the sweep's cutoff; returns them, so the caller deletes their bytes. One
    /// transaction.
    async fn delete_chunks(&self, sweep: &ChunkSweep, hashes: &[Hash]) -> Result<Vec<(Hash, u32)>>;

    /// Takes `user`'s chunk lock ([`ChunkLock`]), waiting for it, and holds it until the
    /// returned lock is released or dropped. Every handle on the store sees it — on a shared
    /// store (PostgreSQL), every server instance — so that a sweep on one instance never
    /// deletes the bytes of a chunk an upload on another has written (or found present) but
    /// not yet recorded: the upload holds it [`ChunkLock::Upload`] from writing the bytes until
    /// [`MetaStore::add_chunks`] returns, the sweep [`ChunkLock::Sweep`] from
    /// [`MetaStore::delete_chunks`] until the bytes are gone.
    async fn lock_chunks(&self, user: UserId, mode: ChunkLock) -> Result<StoreLock>;
    /// The maintenance lease: held by one handle on the store at a time — on a shared store, by
    /// one server instance — while it prunes history and collects chunks. `None` when another
    /// holds it now (that one is doing the work). Maintenance is safe without it (every step is
    /// a transaction, and the chunk lock guards uploads); the lease keeps the instances from
    /// doing the same work N times over.
    async fn try_lock_maintenance(&self) -> Result<Option<StoreLock>>;

    /// The commits (and restores) made through any handle on this store from now on, this
    /// one's included: for a store that several server instances share, so that each pushes
    /// the others' commits to its devices. One notice per transaction, sent only if it
    /// commits. A hint, like the push it feeds: notices may be lost while the connection
    /// behind the stream is re-established, and then the stream says so
    /// ([`Notice::MayHaveMissed`]) once it listens again; the journal stays the truth. `None`:
    /// the store has one writing server, whose own commits are all there is to push.
    async fn commit_notices(&self) -> Result<Option<futures::stream::BoxStream<'static, Notice>>> {
        Ok(None)
    }
}

/// What a shared store tells the server instances that share it
/// ([`MetaStore::commit_notices`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notice {
    Commit(CommitNotice),
    /// Notices may have been lost (the connection that listens for them dropped, and listens
    /// again from now on): any folder may have changed meanwhile.
    MayHaveMissed,
}

/// A commit some writer of a shared store made: `folder` of `user` reached `seq`
/// ([`MetaStore::commit_notices`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitNotice {
    pub user: UserId,
    pub folder: FolderId,
    pub seq: u64,
}

/// Chunk bytes, addressed by (user, BLAKE3 hash). Chunks are stored once per user.
#[async_trait]
pub trait ChunkStore: Send + Sync + 'static {
    /// Stores the chunks durably (they survive a crash once this returns). Idempotent.
    /// Callers have verified that each hash matches its bytes.
    async fn put_many(&self, user: UserId, chunks: &[(Hash, Bytes)]) -> Result<()>;
    /// The chunk's bytes, verified against its hash; `None` if it is not stored. Bytes that do
    /// not match (damaged on disk) are set aside, so that a later `put_many` stores the chunk
    /// afresh, and reported as [`StoreError::ChunkDamaged`].
    async fn get(&self, user: UserId, hash: &Hash) -> Result<Option<Bytes>>;
    async fn delete(&self, user: UserId, hash: &Hash) -> Result<()>;
}
