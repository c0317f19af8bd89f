//! Domain types shared by every FileSync crate: validated relative paths, BLAKE3 content
//! hashes, file metadata, content-defined chunking, conflict-copy names, and the rules for
//! the names people type (users, devices, folders).
//!
//! This crate is pure: it refuses to know about sockets, async runtimes, databases, the wall
//! clock or the wire format. It reads bytes only through `std::io::Read` handed to it, and
//! time only through a [`clock::Clock`] handed to its callers (it defines the trait and the
//! real clock the runtimes create, and never reads one itself).

pub mod chunking;
pub mod clock;
pub mod conflict;
pub mod entry;
pub mod hash;
pub mod names;
pub mod path;
pub mod testdata;

pub use chunking::{ChunkRef, Chunker, FileDigest, file_hash};
pub use entry::{EntryKind, EntryState, FileMeta};
pub use hash::Hash;
pub use path::{PathError, RelPath};
