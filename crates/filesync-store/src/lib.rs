//! Server-side storage behind two traits: [`MetaStore`] (accounts, devices, folders, the
//! per-folder journal and which chunks each user has) and [`ChunkStore`] (chunk bytes,
//! content-addressed per user). SQLite ([`sqlite::SqliteMeta`]) and a local directory
//! ([`localfs::LocalChunks`]) are the embedded defaults; [`conformance`] is the test suite
//! every implementation must pass.
//!
//! This crate refuses to know about the network protocol or TLS: it speaks domain types
//! from `filesync-core`. The rule that decides whether a commit is accepted lives here, as a
//! pure function ([`decide`]), so every implementation applies the same rule.
//!
//! A server with the embedded stores opens both with [`open_embedded`] from its data
//! directory. Chunk bytes must be durable before the metadata says they exist: call
//! [`ChunkStore::put_many`] first, then [`MetaStore::add_chunks`].

use async_trait::async_trait;
use bytes::Bytes;
use filesync_core::{EntryState, FileMeta, Hash, RelPath};

pub mod conformance;
pub mod decide;
pub mod localfs;
mod sql;
pub mod sqlite;

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

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("user name {0:?} is already taken")]
    UserExists(String),
    #[error("folder {0} not found")]
    FolderNotFound(FolderId),
    #[error("the commit references {} chunk(s) the server does not have, first {}", .0.len(), .0.first().map(|h| h.to_hex()).unwrap_or_default())]
    MissingChunks(Vec<Hash>),
    #[error("storage is full: {0}")]
    Full(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("I/O error on {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Opens the embedded stores in a server data directory, creating what is missing: metadata in
/// `<data_dir>/meta.db` (with SQLite's `meta.db-wal` and `meta.db-shm` beside it) and chunks
/// under `<data_dir>/chunks/`.
pub async fn open_embedded(data_dir: &std::path::Path) -> Result<(sqlite::SqliteMeta, localfs::LocalChunks)> {
    std::fs::create_dir_all(data_dir)
        .map_err(|source| StoreError::Io { path: data_dir.display().to_string(), source })?;
    let meta = sqlite::SqliteMeta::open(&data_dir.join("meta.db")).await?;
    let chunks = localfs::LocalChunks::open(data_dir.join("chunks"))?;
    Ok((meta, chunks))
}

/// Accounts, devices, folders and their journals.
///
/// Every method that takes a `user` scopes its answer to that user: a folder id of another
/// user is reported as not found. Callers authorize; implementations must not leak.
#[async_trait]
pub trait MetaStore: Send + Sync + 'static {
    async fn create_user(&self, name: &str, password_hash: &str, now: i64) -> Result<User>;
    async fn user_by_name(&self, name: &str) -> Result<Option<User>>;
    async fn user_by_id(&self, id: UserId) -> Result<Option<User>>;
    async fn set_password_hash(&self, user: UserId, password_hash: &str) -> Result<()>;

    /// Creates a device holding the hash of its token (the token itself is never stored).
    async fn create_device(&self, user: UserId, name: &str, token_hash: &[u8; 32], now: i64) -> Result<Device>;
    /// The device owning this token hash, revoked or not.
    async fn device_by_token_hash(&self, token_hash: &[u8; 32]) -> Result<Option<Device>>;
    async fn device(&self, user: UserId, device: DeviceId) -> Result<Option<Device>>;
    async fn list_devices(&self, user: UserId) -> Result<Vec<Device>>;
    /// Marks the device revoked. Returns false if the user has no such device.
    async fn revoke_device(&self, user: UserId, device: DeviceId) -> Result<bool>;
    async fn rename_device(&self, user: UserId, device: DeviceId, name: &str) -> Result<bool>;
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
}

/// Chunk bytes, addressed by (user, BLAKE3 hash). Chunks are stored once per user.
#[async_trait]
pub trait ChunkStore: Send + Sync + 'static {
    /// Stores the chunks durably (they survive a crash once this returns). Idempotent.
    /// Callers have verified that each hash matches its bytes.
    async fn put_many(&self, user: UserId, chunks: &[(Hash, Bytes)]) -> Result<()>;
    async fn get(&self, user: UserId, hash: &Hash) -> Result<Option<Bytes>>;
    async fn delete(&self, user: UserId, hash: &Hash) -> Result<()>;
}
