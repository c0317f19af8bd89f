//! [`LocalChunks`]: the embedded [`ChunkStore`], one file per chunk under a root directory,
//! laid out as `<root>/<user id>/<first two hex digits>/<hex hash>`.
//!
//! A chunk is written to a temporary file next to its final name and renamed into place, so a
//! reader never sees half a chunk. Durability is paid once per batch, not per file: on Linux
//! one `syncfs` of the root's filesystem after the renames; elsewhere `fsync` of every file
//! and of the directories that gained names. Chunks are verified against their hash when read
//! and when a put finds one already present, so a chunk torn by a crash is detected (on read)
//! or repaired (on the next upload) instead of being served.

use crate::{ChunkStore, Result, StoreError, UserId};
use async_trait::async_trait;
use bytes::Bytes;
use filesync_core::Hash;
use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Prefix of in-flight chunk files. Leftovers after a crash are garbage for a later sweep; they
/// never have a chunk's name, so nothing reads them.
const TEMP_PREFIX: &str = ".tmp-";

/// Distinguishes the temporary files of concurrent puts of the same chunk.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Chunks as files under a root directory.
#[derive(Clone, Debug)]
pub struct LocalChunks {
    root: PathBuf,
}

impl LocalChunks {
    /// Uses `root` (created if missing) as the store's directory. Put it on the same filesystem
    /// as nothing else busy if you can: on Linux each batch ends with a `syncfs` of that
    /// filesystem.
    pub fn open(root: impl Into<PathBuf>) -> Result<LocalChunks> {
        let root = root.into();
        private_dir_all(&root).map_err(|e| io_error(&root, e))?;
        Ok(LocalChunks { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the chunk `hash` of `user` lives (whether or not it is there).
    pub fn chunk_path(&self, user: UserId, hash: &Hash) -> PathBuf {
        chunk_path(&self.root, user, hash)
    }
}

fn chunk_path(root: &Path, user: UserId, hash: &Hash) -> PathBuf {
    let hex = hash.to_hex();
    root.join(user.to_string()).join(&hex[..2]).join(hex)
}

/// Maps "no space" and "over quota" to [`StoreError::Full`], anything else to an I/O error on
/// `path`.
fn io_error(path: &Path, e: io::Error) -> StoreError {
    match e.kind() {
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
            StoreError::Full(format!("cannot write {}: {e}", path.display()))
        }
        _ => StoreError::Io { path: path.display().to_string(), source: e },
    }
}

/// Creates `dir` and any missing parents readable by the owner only (0700 on Unix): chunks are
/// users' file contents.
pub(crate) fn private_dir_all(dir: &Path) -> io::Result<()> {
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
}

/// Creates a new file (failing if it exists) readable and writable by the owner only (0600
/// on Unix).
pub(crate) fn private_file(path: &Path) -> io::Result<File> {
    let mut o = fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)
}

/// Runs blocking file work off the async executor.
async fn blocking<T: Send + 'static>(what: &Path, f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(StoreError::Io { path: what.display().to_string(), source: io::Error::other(e) }),
    }
}

/// Whether `path` holds exactly the chunk `hash`. A file that does not match (torn by a crash
/// before it was made durable) is reported as absent so that the caller replaces it.
fn intact(path: &Path, hash: &Hash) -> Result<bool> {
    match fs::read(path) {
        Ok(data) if Hash::of(&data) == *hash => Ok(true),
        Ok(_) => {
            tracing::warn!(path = %path.display(), "chunk file does not match its hash; replacing it");
            Ok(false)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_error(path, e)),
    }
}

/// Writes `data` to a fresh temporary file in `dir` and renames it to `path`.
fn write_chunk(dir: &Path, path: &Path, data: &[u8]) -> Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("chunk");
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!("{TEMP_PREFIX}{name}-{}-{n}", std::process::id()));
    let written = (|| {
        let mut f = private_file(&tmp)?;
        f.write_all(data)?;
        if !cfg!(any(target_os = "linux", target_os = "android")) {
            // Without syncfs the data must be on disk before the rename makes it visible.
            f.sync_all()?;
        }
        Ok(())
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(io_error(&tmp, e));
    }
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_error(path, e)
    })
}

/// Stores a batch, then makes all of it durable at once.
fn put_blocking(root: &Path, user: UserId, chunks: &[(Hash, Bytes)]) -> Result<()> {
    let user_dir = root.join(user.to_string());
    // Directories that exist (so no more create_dir_all) and, elsewhere than Linux, need syncing.
    let mut dirs = BTreeSet::new();
    let mut files = Vec::new();
    for (hash, data) in chunks {
        let path = chunk_path(root, user, hash);
        let dir = path.parent().expect("a chunk path has a parent").to_path_buf();
        // A chunk already present is not rewritten, but it is still made durable below: it may
        // be the fresh, not yet synced work of a concurrent put of the same chunk.
        if !intact(&path, hash)? {
            if !dirs.contains(&dir) {
                private_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
            }
            write_chunk(&dir, &path, data)?;
        }
        dirs.insert(dir);
        files.push(path);
    }
    make_durable(root, &user_dir, &dirs, &files)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn make_durable(root: &Path, _user_dir: &Path, _dirs: &BTreeSet<PathBuf>, _files: &[PathBuf]) -> Result<()> {
    use std::os::fd::AsRawFd;
    // One call flushes every file, rename and new directory of the batch (and since Linux 5.8
    // reports writeback errors that happened on the filesystem).
    let dir = File::open(root).map_err(|e| io_error(root, e))?;
    // SAFETY: `dir` is an open file descriptor for the duration of the call.
    if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
        return Err(io_error(root, io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn make_durable(root: &Path, user_dir: &Path, dirs: &BTreeSet<PathBuf>, files: &[PathBuf]) -> Result<()> {
    for f in files {
        // Flushing needs a handle opened for writing on Windows.
        fs::OpenOptions::new().write(true).open(f).and_then(|f| f.sync_all()).map_err(|e| io_error(f, e))?;
    }
    // The names (renames, new directories) must be durable too. Windows cannot open a
    // directory for syncing; NTFS journals its metadata.
    if cfg!(unix) {
        for d in dirs.iter().map(PathBuf::as_path).chain([user_dir, root]) {
            File::open(d).and_then(|f| f.sync_all()).map_err(|e| io_error(d, e))?;
        }
    }
    Ok(())
}

#[async_trait]
impl ChunkStore for LocalChunks {
    async fn put_many(&self, user: UserId, chunks: &[(Hash, Bytes)]) -> Result<()> {
        if chunks.is_empty() {
            return Ok(());
        }
        let root = self.root.clone();
        let chunks = chunks.to_vec(); // `Bytes` clones share the buffers.
        blocking(&self.root, move || put_blocking(&root, user, &chunks)).await
    }

    async fn get(&self, user: UserId, hash: &Hash) -> Result<Option<Bytes>> {
        let path = self.chunk_path(user, hash);
        let hash = *hash;
        blocking(&self.root, move || match fs::read(&path) {
            Ok(data) if Hash::of(&data) == hash => Ok(Some(Bytes::from(data))),
            Ok(_) => {
                // Set aside, not deleted: the operator may want to look at what the disk did.
                // A later put finds no file and writes the chunk afresh.
                let aside = path.with_extension("damaged");
                fs::rename(&path, &aside).map_err(|e| io_error(&path, e))?;
                Err(StoreError::ChunkDamaged { hash, moved_to: aside.display().to_string() })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(&path, e)),
        })
        .await
    }

    async fn delete(&self, user: UserId, hash: &Hash) -> Result<()> {
        let path = self.chunk_path(user, hash);
        blocking(&self.root, move || match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error(&path, e)),
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_disk_and_quota_become_store_full() {
        let p = Path::new("/x");
        let enospc = io::Error::from(io::ErrorKind::StorageFull);
        assert!(matches!(io_error(p, enospc), StoreError::Full(m) if m.contains("/x")));
        let edquot = io::Error::from(io::ErrorKind::QuotaExceeded);
        assert!(matches!(io_error(p, edquot), StoreError::Full(_)));
        #[cfg(unix)]
        assert!(matches!(io_error(p, io::Error::from_raw_os_error(libc::ENOSPC)), StoreError::Full(_)));
        let denied = io::Error::from(io::ErrorKind::PermissionDenied);
        assert!(matches!(io_error(p, denied), StoreError::Io { path, .. } if path == "/x"));
    }

    fn files_under(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                out.extend(files_under(&path));
            } else {
                out.push(path);
            }
        }
        out
    }

    #[tokio::test]
    async fn open_creates_the_root_and_layout_is_user_prefix_hash() {
        let tmp = tempfile::tempdir().unwrap();
        let store = LocalChunks::open(tmp.path().join("a/b/chunks")).unwrap();
        assert!(store.root().is_dir(), "open creates missing parents");
        let hash = Hash::of(b"layout");
        store.put_many(7, &[(hash, Bytes::from_static(b"layout"))]).await.unwrap();
        let hex = hash.to_hex();
        let expected = store.root().join("7").join(&hex[..2]).join(&hex);
        assert_eq!(store.chunk_path(7, &hash), expected);
        assert_eq!(files_under(store.root()), vec![expected], "one file per chunk and no temporary files left");
    }

    #[tokio::test]
    async fn torn_chunk_file_is_refused_by_get_set_aside_and_repaired_by_put() {
        let tmp = tempfile::tempdir().unwrap();
        let store = LocalChunks::open(tmp.path()).unwrap();
        let (hash, data) = (Hash::of(b"precious"), Bytes::from_static(b"precious"));
        store.put_many(1, &[(hash, data.clone())]).await.unwrap();
        // What a crash between rename and writeback can leave behind.
        let path = store.chunk_path(1, &hash);
        fs::write(&path, b"").unwrap();
        match store.get(1, &hash).await {
            Err(StoreError::ChunkDamaged { hash: h, moved_to }) => {
                assert_eq!(h, hash);
                assert!(moved_to.ends_with(&format!("{}.damaged", hash.to_hex())), "{moved_to}");
            }
            other => {
                panic!("a chunk that does not match its hash must not be served, got {other:?}")
            }
        }
        assert!(!path.exists() && path.with_extension("damaged").exists(), "the damaged bytes are set aside");
        assert_eq!(store.get(1, &hash).await.unwrap(), None, "and the chunk is missing until uploaded again");
        store.put_many(1, &[(hash, data.clone())]).await.unwrap();
        assert_eq!(store.get(1, &hash).await.unwrap(), Some(data), "uploading again repairs the chunk");
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn unwritable_directory_is_an_io_error_naming_the_path() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let store = LocalChunks::open(tmp.path()).unwrap();
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o500)).unwrap();
        if fs::create_dir(tmp.path().join("probe")).is_ok() {
            return; // running as root: permissions are not enforced
        }
        let result = store.put_many(3, &[(Hash::of(b"x"), Bytes::from_static(b"x"))]).await;
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o700)).unwrap();
        match result {
            Err(StoreError::Io { path, .. }) => assert!(path.starts_with(&tmp.path().display().to_string()), "{path}"),
            other => panic!("expected an I/O error naming the path, got {other:?}"),
        }
    }
}
