//! The `Filesystem` seam: every disk operation of the sync engine goes through this trait,
//! with the real implementation ([`RealFs`], rooted at a synced folder) and an in-memory fake
//! ([`crate::memfs::MemFs`], optionally case-insensitive like Windows and macOS) for tests.
//!
//! Paths are always [`RelPath`]s relative to the folder root; implementations map them to
//! the platform's paths. Operations are blocking; async callers use `spawn_blocking`.

use filesync_core::RelPath;
use std::io::{self, Read, Seek, Write};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatKind {
    File,
    Dir,
    Symlink,
    /// Sockets, devices, FIFOs: never synced.
    Other,
}

/// What `lstat` tells about a path (symlinks are not followed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    pub kind: StatKind,
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    pub executable: bool,
    /// Inode number (file index on Windows); 0 where unknown.
    pub ino: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// The name as found on disk (lossily converted if it is not valid Unicode).
    pub name: String,
    /// False when the on-disk name is not valid Unicode; such entries cannot be synced.
    pub name_is_unicode: bool,
    pub stat: Stat,
}

pub trait ReadSeek: Read + Seek + Send {}
impl<T: Read + Seek + Send> ReadSeek for T {}

/// A temporary file created next to its destination, hidden from the scanner by its name
/// (it starts with [`filesync_core::path::TEMP_PREFIX`]). Dropping it without `persist`
/// removes it.
pub trait TempFile: Write + Send {
    /// Sets the modification time and executable bit the file will have once persisted.
    fn set_times_and_mode(&mut self, mtime_ns: i64, executable: bool) -> io::Result<()>;
    /// Flushes and fsyncs the contents.
    fn sync_all(&mut self) -> io::Result<()>;
    /// Atomically renames the temporary file to `dest`, replacing a file that is there, and
    /// makes the rename durable (fsync of the directory where the platform supports it).
    fn persist(self: Box<Self>, dest: &RelPath) -> io::Result<()>;
    /// Like `persist`, but the rename is made durable later, for a whole batch at once, by
    /// [`Filesystem::sync_renames`]. The contents are still durable before the rename.
    fn persist_deferred(self: Box<Self>, dest: &RelPath) -> io::Result<()> {
        self.persist(dest)
    }
    /// Records that the contents are durable already (a batch sync covered them).
    fn mark_synced(&mut self) {}
    /// Starts writing what was written so far to the disk, without waiting for it: a big
    /// file's final fsync then finds little left to write, and the disk works while the
    /// rest of the file is made. Only a hint: nothing is durable until `sync_all`.
    fn start_writeback(&mut self) {}
    /// Its file name (in its directory): [`Filesystem::clean_temp_files_except`] spares the
    /// temporary files still in use by name.
    fn file_name(&self) -> &str;
    /// Whether the file is still under its name: a person may have deleted it, or the
    /// directory that held it, while it was kept to be resumed.
    fn still_in_place(&self) -> bool;
}

pub trait Filesystem: Send + Sync {
    /// Entries of a directory (`None`: the folder root), without `.` and `..`, any order.
    fn read_dir(&self, dir: Option<&RelPath>) -> io::Result<Vec<DirEntry>>;
    /// `lstat`; `Ok(None)` when nothing is there.
    fn stat(&self, path: &RelPath) -> io::Result<Option<Stat>>;
    /// Whether the folder root exists and is a directory (false: unmounted drive, renamed folder).
    fn root_exists(&self) -> bool;
    fn open(&self, path: &RelPath) -> io::Result<Box<dyn ReadSeek>>;
    /// Creates a directory; succeeds if it already exists as a directory. Parents must exist.
    fn create_dir(&self, path: &RelPath) -> io::Result<()>;
    fn remove_file(&self, path: &RelPath) -> io::Result<()>;
    /// Removes an empty directory; fails if it is not empty.
    fn remove_dir(&self, path: &RelPath) -> io::Result<()>;
    /// Renames `from` to `to`; fails with `AlreadyExists` rather than replace anything at `to`.
    fn rename_noreplace(&self, from: &RelPath, to: &RelPath) -> io::Result<()>;
    /// Renames the entry that `read_dir(dir)` listed as `name` — a name a [`RelPath`] may not
    /// express, such as one not in Unicode NFC — to `to`, refusing to replace anything. The
    /// scanner uses it to normalize names on disk.
    fn rename_listed_noreplace(&self, dir: Option<&RelPath>, name: &str, to: &RelPath) -> io::Result<()>;
    fn set_times_and_mode(&self, path: &RelPath, mtime_ns: i64, executable: bool) -> io::Result<()>;
    /// A new temporary file in `dir` (`None`: the root). The directory must exist.
    fn create_temp(&self, dir: Option<&RelPath>) -> io::Result<Box<dyn TempFile>>;
    /// Removes leftover temporary files (from a crash) below the root; returns how many.
    fn clean_temp_files(&self) -> io::Result<usize> {
        self.clean_temp_files_except(&std::collections::HashSet::new())
    }
    /// [`Filesystem::clean_temp_files`], sparing the temporary files named in `keep` (the
    /// downloads cut short that are kept to resume).
    fn clean_temp_files_except(&self, keep: &std::collections::HashSet<String>) -> io::Result<usize>;
    /// Makes the contents of many temporary files durable at once where the platform allows
    /// (Linux: one `syncfs` instead of one fsync per file).
    fn sync_temps(&self, files: &mut [Box<dyn TempFile>]) -> io::Result<()> {
        files.iter_mut().try_for_each(|f| f.sync_all())
    }
    /// Makes the renames of `persist_deferred` durable: `dirs` are the directories that got
    /// new entries (`None`: the root).
    fn sync_renames(&self, dirs: &[Option<RelPath>]) -> io::Result<()> {
        let _ = dirs;
        Ok(())
    }
    /// Whether names that differ only in letter case are the same entry here (NTFS, APFS).
    fn case_insensitive(&self) -> bool {
        cfg!(any(windows, target_os = "macos"))
    }
    /// Why this file system cannot hold `path`, if it cannot (reserved names and forbidden
    /// characters on Windows).
    fn name_problem(&self, path: &RelPath) -> Option<String> {
        if cfg!(windows) { path.windows_incompatibility() } else { None }
    }
}

mod real;
pub use real::RealFs;
