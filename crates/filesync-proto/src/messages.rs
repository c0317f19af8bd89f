//! Every protocol message, as protobuf-encoded structs (prost derive, no `protoc`). Field tags
//! are part of the protocol: never reuse or renumber one; add new fields with new tags.

/// First frame a client sends: the protocol versions it speaks.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Hello {
    #[prost(uint32, tag = "1")]
    pub min_version: u32,
    #[prost(uint32, tag = "2")]
    pub max_version: u32,
    /// Free text such as `filesync/0.1.0`, for logs.
    #[prost(string, tag = "3")]
    pub client_name: String,
}

/// Server's reply to `Hello`: the version both will speak.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Welcome {
    #[prost(uint32, tag = "1")]
    pub version: u32,
    #[prost(string, tag = "2")]
    pub server_name: String,
    /// Whether `Register` is accepted.
    #[prost(bool, tag = "3")]
    pub registration_open: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Register {
    #[prost(string, tag = "1")]
    pub user: String,
    #[prost(string, tag = "2")]
    pub password: String,
    #[prost(string, tag = "3")]
    pub device_name: String,
    /// A one-time invite code from the server's operator; needed when the server's
    /// registration is by invite, ignored otherwise.
    #[prost(string, tag = "4")]
    pub invite: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Login {
    #[prost(string, tag = "1")]
    pub user: String,
    #[prost(string, tag = "2")]
    pub password: String,
    #[prost(string, tag = "3")]
    pub device_name: String,
    /// The id of this computer's own device when it was revoked (0: none). When it names a
    /// revoked device of this user, the server gives that device a new token instead of
    /// creating another one, so a computer logging in again keeps its one row. Servers
    /// before this field ignore it and create a new device.
    #[prost(uint64, tag = "4")]
    pub replaces_device: u64,
}

/// Presents a device token issued by `Login`/`Register`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Auth {
    #[prost(string, tag = "1")]
    pub token: String,
}

/// Reply to `Register`, `Login` and `Auth`: who this connection now acts for.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Session {
    #[prost(uint64, tag = "1")]
    pub user_id: u64,
    #[prost(string, tag = "2")]
    pub user: String,
    #[prost(uint64, tag = "3")]
    pub device_id: u64,
    #[prost(string, tag = "4")]
    pub device_name: String,
    /// Set only in the reply to `Register` and `Login`; the server never sends it again.
    #[prost(string, tag = "5")]
    pub token: String,
}

/// A message without fields: `Ok`, `Logout`, `ListDevices`, `ListFolders`, `Ping`, `Pong`, `Usage`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Empty {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ErrorMsg {
    /// One of [`ErrorCode`].
    #[prost(uint32, tag = "1")]
    pub code: u32,
    #[prost(string, tag = "2")]
    pub message: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DeviceInfo {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(int64, tag = "3")]
    pub created_at: i64,
    /// Unix seconds of the last authenticated connection; 0 if never.
    #[prost(int64, tag = "4")]
    pub last_seen: i64,
    #[prost(bool, tag = "5")]
    pub revoked: bool,
    /// True for the device this connection belongs to.
    #[prost(bool, tag = "6")]
    pub current: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Devices {
    #[prost(message, repeated, tag = "1")]
    pub devices: Vec<DeviceInfo>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RevokeDevice {
    #[prost(uint64, tag = "1")]
    pub device_id: u64,
    /// Also delete the device, so that it is no longer listed. Servers before this field
    /// ignore it and only revoke.
    #[prost(bool, tag = "2")]
    pub remove: bool,
}

/// Gives one of the user's devices a new name (any device of the user, revoked ones too).
#[derive(Clone, PartialEq, prost::Message)]
pub struct RenameDevice {
    #[prost(uint64, tag = "1")]
    pub device_id: u64,
    #[prost(string, tag = "2")]
    pub name: String,
}

/// Changes the user's password; the current one must be given. Devices stay logged in unless
/// `log_out_other_devices` is set.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ChangePassword {
    #[prost(string, tag = "1")]
    pub current_password: String,
    #[prost(string, tag = "2")]
    pub new_password: String,
    /// Also revoke every other device of the user (their connections are closed); the
    /// device of this connection stays logged in.
    #[prost(bool, tag = "3")]
    pub log_out_other_devices: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct FolderInfo {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(string, tag = "2")]
    pub name: String,
    /// Highest journal sequence number of the folder.
    #[prost(uint64, tag = "3")]
    pub seq: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Folders {
    #[prost(message, repeated, tag = "1")]
    pub folders: Vec<FolderInfo>,
}

/// Looks up a folder of the authenticated user by name, creating it if `create` is set.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OpenFolder {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(bool, tag = "2")]
    pub create: bool,
}

/// Pushed by the server (request id 0) after any commit to one of the user's folders.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FolderChanged {
    #[prost(uint64, tag = "1")]
    pub folder_id: u64,
    #[prost(uint64, tag = "2")]
    pub seq: u64,
}

/// Chunks of a file being uploaded that are on the server now (protocol version 4). The
/// uploading device sends it as the request `AnnounceChunks`, once chunks `first..first + n`
/// of the file's chunk list are stored; the server relays it to the user's other devices as the
/// push `ChunksAnnounced`, with `device_id` set, so they can fetch those chunks before the
/// file's commit. A hint: the commit decides what the file is.
#[derive(Clone, PartialEq, prost::Message)]
pub struct UploadProgress {
    #[prost(uint64, tag = "1")]
    pub folder_id: u64,
    #[prost(string, tag = "2")]
    pub path: String,
    /// Chosen by the uploading device, new for every upload of a file.
    #[prost(uint64, tag = "3")]
    pub upload: u64,
    /// The size of the whole file.
    #[prost(uint64, tag = "4")]
    pub size: u64,
    /// The index in the file's chunk list of the first chunk here.
    #[prost(uint32, tag = "5")]
    pub first: u32,
    /// 36-byte records, as in `WireEntry.chunks`: at most `limits::MAX_ANNOUNCED_CHUNKS`.
    #[prost(bytes = "vec", tag = "6")]
    pub chunks: Vec<u8>,
    /// How many chunks the whole file has.
    #[prost(uint32, tag = "7")]
    pub total: u32,
    /// The uploading device (set by the server in the push; 0 in the request).
    #[prost(uint64, tag = "8")]
    pub device_id: u64,
}

/// One path's state on the server (or, inside `CommitChange`, the state a client proposes).
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireEntry {
    #[prost(string, tag = "1")]
    pub path: String,
    /// Journal sequence number of this version (0 in proposals).
    #[prost(uint64, tag = "2")]
    pub rev: u64,
    #[prost(bool, tag = "3")]
    pub deleted: bool,
    /// 1 = file, 2 = directory.
    #[prost(uint32, tag = "4")]
    pub kind: u32,
    #[prost(uint64, tag = "5")]
    pub size: u64,
    #[prost(int64, tag = "6")]
    pub mtime_ns: i64,
    #[prost(bool, tag = "7")]
    pub executable: bool,
    /// The file hash: the hash of the chunk list (`filesync_core::file_hash`; 32 bytes; empty
    /// for directories and deletions).
    #[prost(bytes = "vec", tag = "8")]
    pub hash: Vec<u8>,
    /// The chunk list: 36-byte records, each a 32-byte BLAKE3 hash then the length as u32 LE.
    #[prost(bytes = "vec", tag = "9")]
    pub chunks: Vec<u8>,
    /// Device that committed this version (set by the server).
    #[prost(uint64, tag = "10")]
    pub device_id: u64,
    #[prost(string, tag = "11")]
    pub device_name: String,
    /// Unix seconds when the server committed this version.
    #[prost(int64, tag = "12")]
    pub committed_at: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct GetChanges {
    #[prost(uint64, tag = "1")]
    pub folder_id: u64,
    /// Return current entries whose `rev` is greater than this.
    #[prost(uint64, tag = "2")]
    pub since: u64,
    #[prost(uint32, tag = "3")]
    pub limit: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Changes {
    /// Ordered by `rev`, ascending.
    #[prost(message, repeated, tag = "1")]
    pub entries: Vec<WireEntry>,
    /// True when more entries follow; ask again with `since` = last entry's rev.
    #[prost(bool, tag = "2")]
    pub more: bool,
    /// The folder's sequence number when the reply was made.
    #[prost(uint64, tag = "3")]
    pub folder_seq: u64,
}

/// Which of these chunks does the server lack (for this user)?
#[derive(Clone, PartialEq, prost::Message)]
pub struct QueryChunks {
    #[prost(bytes = "vec", repeated, tag = "1")]
    pub hashes: Vec<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ChunkPresence {
    /// Indices into the query's `hashes` of the chunks the server lacks.
    #[prost(uint32, repeated, tag = "1")]
    pub missing: Vec<u32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ChunkData {
    #[prost(bytes = "vec", tag = "1")]
    pub hash: Vec<u8>,
    #[prost(bytes = "bytes", tag = "2")]
    pub data: bytes::Bytes,
    /// How `data` holds the chunk (`compression::ENCODING_*`): 0 as it is, 1 zstd, 2 a delta
    /// from the chunk `base` (`delta`, protocol version 3).
    #[prost(uint32, tag = "3")]
    pub encoding: u32,
    /// With encoding 2: the hash of the chunk the delta applies to.
    #[prost(bytes = "vec", tag = "4")]
    pub base: Vec<u8>,
    /// With encoding 3 (version 5): the chunk's length; its bytes are the next this many of
    /// the message's `packed` stream, and `data` is empty.
    #[prost(uint32, tag = "5")]
    pub size: u32,
}

impl ChunkData {
    /// A chunk sent as it is.
    pub fn plain(hash: &filesync_core::Hash, data: bytes::Bytes) -> ChunkData {
        ChunkData { hash: hash.as_bytes().to_vec(), data, ..Default::default() }
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PutChunks {
    #[prost(message, repeated, tag = "1")]
    pub chunks: Vec<ChunkData>,
    /// Version 5: one zstd frame holding, back to back, the bytes of the chunks with encoding
    /// 3, in their order (`compression::pack`).
    #[prost(bytes = "bytes", tag = "2")]
    pub packed: bytes::Bytes,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct GetChunks {
    #[prost(bytes = "vec", repeated, tag = "1")]
    pub hashes: Vec<Vec<u8>>,
    /// Chunks the client has that resemble some of the requested ones (protocol version 3):
    /// the server may answer those with a delta (`ChunkData.encoding` 2).
    #[prost(message, repeated, tag = "2")]
    pub similar: Vec<SimilarChunk>,
}

/// A chunk the client has, offered as the base of a delta for `hashes[index]`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SimilarChunk {
    #[prost(uint32, tag = "1")]
    pub index: u32,
    /// The hash of the chunk the client has.
    #[prost(bytes = "vec", tag = "2")]
    pub base: Vec<u8>,
    /// Its signature (`delta::signature`).
    #[prost(bytes = "bytes", tag = "3")]
    pub signature: bytes::Bytes,
}

/// The signatures of chunks the user has on the server, to send a delta from (version 3).
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetSignatures {
    #[prost(bytes = "vec", repeated, tag = "1")]
    pub hashes: Vec<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Signatures {
    /// One per requested hash, same order; empty when the server has no such chunk.
    #[prost(bytes = "bytes", repeated, tag = "1")]
    pub signatures: Vec<bytes::Bytes>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Chunks {
    #[prost(message, repeated, tag = "1")]
    pub chunks: Vec<ChunkData>,
    /// Version 5: the bytes of the chunks with encoding 3, as in `PutChunks.packed`.
    #[prost(bytes = "bytes", tag = "2")]
    pub packed: bytes::Bytes,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CommitChange {
    /// The rev the client's change is based on; 0 if it knows no version of this path.
    #[prost(uint64, tag = "1")]
    pub base_rev: u64,
    #[prost(message, optional, tag = "2")]
    pub entry: Option<WireEntry>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Commit {
    #[prost(uint64, tag = "1")]
    pub folder_id: u64,
    #[prost(message, repeated, tag = "2")]
    pub changes: Vec<CommitChange>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CommitOutcome {
    /// True if the change was applied (or was already the current state).
    #[prost(bool, tag = "1")]
    pub accepted: bool,
    /// The path's current entry after the commit: the new version if accepted, the version
    /// that made it conflict otherwise. Absent if the path has never existed.
    #[prost(message, optional, tag = "2")]
    pub current: Option<WireEntry>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CommitResult {
    /// One per change, in order.
    #[prost(message, repeated, tag = "1")]
    pub outcomes: Vec<CommitOutcome>,
    #[prost(uint64, tag = "2")]
    pub folder_seq: u64,
}

/// Asks for one page of the versions of a path, newest first (history).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ListVersions {
    #[prost(uint64, tag = "1")]
    pub folder_id: u64,
    #[prost(string, tag = "2")]
    pub path: String,
    /// Only versions with a rev below this; 0 starts at the newest.
    #[prost(uint64, tag = "3")]
    pub before_rev: u64,
    /// At most this many; 0 or above `MAX_VERSIONS_PER_REPLY` means that maximum.
    #[prost(uint32, tag = "4")]
    pub limit: u32,
}

/// Reply to `ListVersions`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Versions {
    /// Newest first; tombstones included. The first one is the current entry when the page
    /// starts at the newest (`before_rev` 0).
    #[prost(message, repeated, tag = "1")]
    pub entries: Vec<WireEntry>,
    /// More (older) versions follow: ask again with `before_rev` = the last entry's rev.
    #[prost(bool, tag = "2")]
    pub more: bool,
}

/// Asks for one page of a folder's trash: paths whose current entry is a deletion.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ListTrash {
    #[prost(uint64, tag = "1")]
    pub folder_id: u64,
    /// Only this path and the paths below it; empty for the whole folder.
    #[prost(string, tag = "2")]
    pub prefix: String,
    /// Only deletions with a rev below this; 0 starts at the most recent.
    #[prost(uint64, tag = "3")]
    pub before_rev: u64,
    /// At most this many; 0 or above `MAX_TRASH_PER_REPLY` means that maximum.
    #[prost(uint32, tag = "4")]
    pub limit: u32,
}

/// One deleted path and what a restore would bring back.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TrashEntry {
    /// The current entry of the path: a tombstone (rev, device and time of the deletion).
    #[prost(message, optional, tag = "1")]
    pub deleted: Option<WireEntry>,
    /// The newest live version before the deletion (rev, size, device, time, content).
    #[prost(message, optional, tag = "2")]
    pub last_live: Option<WireEntry>,
}

/// Reply to `ListTrash`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Trash {
    /// Most recently deleted first.
    #[prost(message, repeated, tag = "1")]
    pub entries: Vec<TrashEntry>,
    /// More follow: ask again with `before_rev` = the last entry's `deleted.rev`.
    #[prost(bool, tag = "2")]
    pub more: bool,
}

/// Makes version `rev` of `path` the new current version of `to_path` (or of `path`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Restore {
    #[prost(uint64, tag = "1")]
    pub folder_id: u64,
    #[prost(string, tag = "2")]
    pub path: String,
    /// A live version of `path`, as listed by `ListVersions` or `ListTrash`.
    #[prost(uint64, tag = "3")]
    pub rev: u64,
    /// Where to restore it; empty for `path` itself.
    #[prost(string, tag = "4")]
    pub to_path: String,
}

/// Reply to `Usage`: what the user stores on the server.
#[derive(Clone, PartialEq, prost::Message)]
pub struct UsageInfo {
    /// Sizes of the current files of all the user's folders, added up.
    #[prost(uint64, tag = "1")]
    pub bytes_current: u64,
    /// Sizes of the older file versions kept as history, added up (before deduplication).
    #[prost(uint64, tag = "2")]
    pub bytes_history: u64,
    /// Distinct chunks stored for the user.
    #[prost(uint64, tag = "3")]
    pub chunks: u64,
    /// Bytes of those chunks: what the server's disk holds for the user.
    #[prost(uint64, tag = "4")]
    pub bytes_stored: u64,
    #[prost(uint64, tag = "5")]
    pub files_current: u64,
    #[prost(uint64, tag = "6")]
    pub versions_history: u64,
    /// The user's storage quota in bytes (what `bytes_stored` may reach); absent: unlimited.
    /// Added in version 3's lifetime; older servers never send it.
    #[prost(uint64, optional, tag = "7")]
    pub quota: Option<u64>,
}

/// Numeric error codes carried in [`ErrorMsg::code`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ErrorCode {
    /// The request was malformed or violated a rule; the message says which.
    BadRequest = 1,
    /// The peers share no protocol version.
    UnsupportedVersion = 2,
    /// The request needs an authenticated session.
    NotAuthenticated = 3,
    /// User name or password is wrong.
    BadCredentials = 4,
    /// The token is unknown or its device was revoked.
    InvalidToken = 5,
    UserExists = 6,
    RegistrationClosed = 7,
    NotFound = 8,
    /// The object belongs to another user.
    Forbidden = 9,
    TooLarge = 10,
    InvalidPath = 11,
    /// A commit references chunks the server does not have.
    MissingChunks = 12,
    /// The server's storage is full.
    StorageFull = 13,
    /// Too many failed logins; retry after the delay in the message.
    RateLimited = 14,
    Internal = 15,
    /// The server's operator disabled this account.
    AccountDisabled = 16,
    /// The upload would take the account over its storage quota.
    QuotaExceeded = 17,
    /// The invite code is unknown, already used or expired.
    InviteInvalid = 18,
}

impl ErrorCode {
    pub fn from_u32(v: u32) -> Option<ErrorCode> {
        use ErrorCode::*;
        Some(match v {
            1 => BadRequest,
            2 => UnsupportedVersion,
            3 => NotAuthenticated,
            4 => BadCredentials,
            5 => InvalidToken,
            6 => UserExists,
            7 => RegistrationClosed,
            8 => NotFound,
            9 => Forbidden,
            10 => TooLarge,
            11 => InvalidPath,
            12 => MissingChunks,
            13 => StorageFull,
            14 => RateLimited,
            15 => Internal,
            16 => AccountDisabled,
            17 => QuotaExceeded,
            18 => InviteInvalid,
            _ => return None,
        })
    }
}

impl ErrorMsg {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ErrorMsg {
        ErrorMsg { code: code as u32, message: message.into() }
    }

    pub fn code(&self) -> Option<ErrorCode> {
        ErrorCode::from_u32(self.code)
    }
}

/// Size of a message body once encoded; used to respect frame limits before sending.
pub fn encoded_len<M: prost::Message>(m: &M) -> usize {
    m.encoded_len()
}
