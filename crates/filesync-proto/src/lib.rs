//! The FileSync wire protocol, sans-IO: message types ([`messages`]), their numbering and
//! framing ([`frame`]), the push-style frame decoder, and explicit conversions between wire
//! types and the domain types of `filesync-core` ([`convert`]).
//!
//! This crate refuses to do I/O: no sockets, no async runtime, no clock. The server and the
//! client drive it. The normative description is `docs/protocol.md`.

pub mod compression;
pub mod convert;
pub mod delta;
pub mod frame;
pub mod messages;

pub use frame::{Decoded, Frame, FrameDecoder, FrameError, MAX_FRAME_LEN, Message, decode_frame};
pub use messages::*;

/// The protocol versions this build speaks.
pub const PROTOCOL_VERSION_MIN: u32 = 2;
pub const PROTOCOL_VERSION_MAX: u32 = 5;
/// The first version with sub-chunk deltas (`GetSignatures`, `ChunkData.encoding` 2).
pub const PROTOCOL_VERSION_DELTAS: u32 = 3;
/// The first version with uploads in progress announced (`AnnounceChunks`, `ChunksAnnounced`).
pub const PROTOCOL_VERSION_ANNOUNCE: u32 = 4;
/// The first version whose chunk messages may pack compressible chunks into one zstd stream
/// (`ChunkData.encoding` 3, `PutChunks.packed`, `Chunks.packed`).
pub const PROTOCOL_VERSION_PACKED: u32 = 5;

/// Limits every peer enforces (see `docs/protocol.md`, "Limits").
pub mod limits {
    /// Hashes in one `QueryChunks` or `GetChunks`.
    pub const MAX_HASHES_PER_REQUEST: usize = 8192;
    /// Hashes in one `GetSignatures`, and similar chunks offered in one `GetChunks`.
    pub const MAX_SIGNATURES_PER_REQUEST: usize = 64;
    /// Changes in one `Commit`.
    pub const MAX_CHANGES_PER_COMMIT: usize = 2000;
    /// Entries the server returns in one `Changes` reply.
    pub const MAX_ENTRIES_PER_CHANGES: u32 = 5000;
    /// Target size of a `Changes` reply or a `Commit` request body; senders split beyond it.
    pub const MAX_REPLY_BYTES: usize = 8 * 1024 * 1024;
    /// Total chunk bytes in one `PutChunks` or `Chunks` message.
    pub const MAX_CHUNK_BYTES_PER_MESSAGE: usize = 8 * 1024 * 1024;
    /// User, device and folder names, in bytes (`filesync_core::names`).
    pub const MAX_NAME_LEN: usize = filesync_core::names::MAX_NAME_BYTES;
    /// Passwords, in bytes.
    pub const MAX_PASSWORD_LEN: usize = 1024;
    /// Requests a client may have outstanding on one connection.
    pub const MAX_IN_FLIGHT: usize = 64;
    /// Versions the server returns in one `Versions` reply.
    pub const MAX_VERSIONS_PER_REPLY: u32 = 1000;
    /// Entries the server returns in one `Trash` reply.
    pub const MAX_TRASH_PER_REPLY: u32 = 1000;
    /// Chunks in one `AnnounceChunks` (36 bytes each).
    pub const MAX_ANNOUNCED_CHUNKS: usize = 1024;
}

/// The fingerprint that identifies a server certificate: `SHA256:` followed by the lowercase
/// hex SHA-256 of its DER encoding. Clients pin it on first use.
pub fn cert_fingerprint(der: &[u8]) -> String {
    use sha2::Digest;
    format!("SHA256:{}", hex::encode(sha2::Sha256::digest(der)))
}

/// Normalizes a fingerprint typed by a person (`sha256:AB:CD…`, spaces, upper case) to the
/// canonical form, or `None` if it is not one.
pub fn parse_fingerprint(s: &str) -> Option<String> {
    let s = s.trim();
    let rest = s.strip_prefix("SHA256:").or_else(|| s.strip_prefix("sha256:")).unwrap_or(s);
    let hexs: String = rest.chars().filter(|c| !matches!(c, ':' | ' ')).collect::<String>().to_ascii_lowercase();
    (hexs.len() == 64 && hexs.chars().all(|c| c.is_ascii_hexdigit())).then(|| format!("SHA256:{hexs}"))
}
