//! The bytes of one file, for a person to look at or save: a version the server keeps (its
//! chunks fetched a few megabytes at a time, each checked against its hash), or a file on this
//! computer — a current file or a conflict copy — read only if it is a plain file inside the
//! folder (no symbolic link on the way leads out of it).

use super::OpsError;
use crate::config::{FolderConfig, Home};
use bytes::{Bytes, BytesMut};
use filesync_core::{ChunkRef, EntryKind, EntryState, RelPath};
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use std::path::PathBuf;

/// Chunk bytes asked for in one request: well inside what one `Chunks` reply may carry.
const FETCH_BYTES: u64 = 4 << 20;
/// Bytes read from a local file at a time.
const READ_BYTES: usize = 256 << 10;

/// Which content of a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    /// The file on this computer, as it is now.
    Local,
    /// The version with this rev on the server.
    Version(u64),
}

/// A file's content on its way: how big it is, which version it is, and the bytes.
pub struct Content {
    pub path: RelPath,
    pub size: u64,
    /// The server's version (who saved it, when); `None` for a file on this computer.
    pub version: Option<EntryState>,
    pub body: BoxStream<'static, Result<Bytes, OpsError>>,
}

impl std::fmt::Debug for Content {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Content").field("path", &self.path).field("size", &self.size).finish_non_exhaustive()
    }
}

impl Content {
    /// All the bytes, or `None` (without reading them) when there are more than `cap`.
    pub async fn read_capped(self, cap: u64) -> Result<Option<Vec<u8>>, OpsError> {
        if self.size > cap {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(self.size as usize);
        let mut body = self.body;
        while let Some(b) = body.try_next().await? {
            if (out.len() + b.len()) as u64 > cap {
                return Ok(None); // grew while being read
            }
            out.extend_from_slice(&b);
        }
        Ok(Some(out))
    }
}

/// Opens `which` content of `rel` in `folder`.
pub async fn open(home: &Home, folder: &FolderConfig, rel: &RelPath, which: Which) -> Result<Content, OpsError> {
    match which {
        Which::Local => open_local(folder, rel).await,
        Which::Version(rev) => open_version(home, folder, rel, rev).await,
    }
}

/// Batches of a chunk list, each at most [`FETCH_BYTES`] (or one chunk).
fn batches(chunks: &[ChunkRef]) -> Vec<Vec<ChunkRef>> {
    let mut out: Vec<Vec<ChunkRef>> = Vec::new();
    let mut size = 0u64;
    for c in chunks {
        if out.is_empty() || size + u64::from(c.len) > FETCH_BYTES {
            out.push(Vec::new());
            size = 0;
        }
        size += u64::from(c.len);
        out.last_mut().expect("pushed").push(*c);
    }
    out
}

async fn open_version(home: &Home, folder: &FolderConfig, rel: &RelPath, rev: u64) -> Result<Content, OpsError> {
    let (remote, list) = super::history::versions(home, folder, rel).await?;
    let Some(v) = list.into_iter().find(|e| e.rev == rev) else {
        return Err(OpsError::NotFound(format!("the server no longer keeps that version of {rel}")));
    };
    let meta = match &v.meta {
        Some(m) if m.kind == EntryKind::File => m.clone(),
        Some(_) => return Err(OpsError::invalid("path", format!("{rel} is a folder; only files can be opened"))),
        None => {
            return Err(OpsError::invalid("rev", format!("that version of {rel} is its deletion; it has no content")));
        }
    };
    let conn = remote.conn;
    let body = stream::iter(batches(&meta.chunks))
        .then(move |batch| {
            let conn = conn.clone();
            async move {
                let hashes: Vec<_> = batch.iter().map(|c| c.hash).collect();
                let parts = conn.get_chunks(&hashes).await?;
                let mut b = BytesMut::with_capacity(batch.iter().map(|c| c.len as usize).sum());
                for p in parts {
                    b.extend_from_slice(&p);
                }
                Ok::<Bytes, OpsError>(b.freeze())
            }
        })
        .boxed();
    Ok(Content { path: rel.clone(), size: meta.size, version: Some(v), body })
}

/// The local path of `rel`, refusing a symbolic link at or above it: what is read must be in
/// the folder.
fn local_path(folder: &FolderConfig, rel: &RelPath) -> Result<PathBuf, OpsError> {
    let mut p = folder.path.clone();
    for part in rel.components() {
        p.push(part);
        let md = std::fs::symlink_metadata(&p).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                OpsError::NotFound(format!("{rel} is not on this computer (in the folder {})", folder.name))
            }
            _ => OpsError::Io { what: "cannot read", path: p.clone(), source: e },
        })?;
        if md.file_type().is_symlink() {
            return Err(OpsError::Refused(format!(
                "{rel} is reached through a symbolic link, which FileSync does not follow"
            )));
        }
    }
    Ok(p)
}

async fn open_local(folder: &FolderConfig, rel: &RelPath) -> Result<Content, OpsError> {
    let p = local_path(folder, rel)?;
    let io = |e| OpsError::Io { what: "cannot read", path: p.clone(), source: e };
    // A folder is refused as such before opening (Windows cannot open one as a file at all).
    if tokio::fs::metadata(&p).await.is_ok_and(|m| m.is_dir()) {
        return Err(OpsError::invalid("path", format!("{rel} is a folder; only files can be opened")));
    }
    let file = tokio::fs::File::open(&p).await.map_err(io)?;
    let md = file.metadata().await.map_err(io)?;
    if !md.is_file() {
        return Err(OpsError::invalid("path", format!("{rel} is a folder; only files can be opened")));
    }
    let path = p.clone();
    let body = stream::try_unfold(file, move |mut file| {
        let path = path.clone();
        async move {
            use tokio::io::AsyncReadExt;
            let mut buf = vec![0u8; READ_BYTES];
            let n = file.read(&mut buf).await.map_err(|source| OpsError::Io {
                what: "cannot read",
                path: path.clone(),
                source,
            })?;
            if n == 0 {
                return Ok(None);
            }
            buf.truncate(n);
            Ok(Some((Bytes::from(buf), file)))
        }
    })
    .boxed();
    Ok(Content { path: rel.clone(), size: md.len(), version: None, body })
}

#[cfg(test)]
mod tests {
    use super::*;
    use filesync_core::Hash;

    fn chunk(len: u32) -> ChunkRef {
        ChunkRef { hash: Hash::of(&len.to_le_bytes()), len }
    }

    #[test]
    fn chunks_are_fetched_a_few_megabytes_at_a_time() {
        let mib = 1 << 20;
        let sizes = |b: Vec<Vec<ChunkRef>>| b.iter().map(|x| x.len()).collect::<Vec<_>>();
        assert_eq!(sizes(batches(&[chunk(mib), chunk(mib), chunk(mib), chunk(mib), chunk(mib)])), vec![4, 1]);
        assert_eq!(sizes(batches(&[chunk(4 * mib), chunk(1)])), vec![1, 1], "a chunk alone when it fills a batch");
        assert!(batches(&[]).is_empty(), "an empty file fetches nothing");
    }

    #[tokio::test]
    async fn a_local_file_is_read_but_never_through_a_link_out_of_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.txt"), "not yours").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/a.txt"), "hello").unwrap();
        let folder = FolderConfig::new("Docs", dir.path());
        let rel = |p: &str| RelPath::new(p).unwrap();

        let c = open_local(&folder, &rel("sub/a.txt")).await.unwrap();
        assert_eq!(c.size, 5);
        assert_eq!(c.read_capped(100).await.unwrap().as_deref(), Some(&b"hello"[..]));
        let c = open_local(&folder, &rel("sub/a.txt")).await.unwrap();
        assert_eq!(c.read_capped(4).await.unwrap(), None, "over the cap: not read");

        assert!(matches!(open_local(&folder, &rel("missing.txt")).await, Err(OpsError::NotFound(_))));
        assert!(matches!(open_local(&folder, &rel("sub")).await, Err(OpsError::Invalid { .. })));
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(outside.path().join("secret.txt"), dir.path().join("link.txt")).unwrap();
            std::os::unix::fs::symlink(outside.path(), dir.path().join("out")).unwrap();
            assert!(matches!(open_local(&folder, &rel("link.txt")).await, Err(OpsError::Refused(_))));
            assert!(matches!(open_local(&folder, &rel("out/secret.txt")).await, Err(OpsError::Refused(_))));
        }
    }
}
