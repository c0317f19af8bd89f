//! The data directory is private to the server's user: it holds every user's files, their
//! password hashes and the TLS key. On Unix it is created 0700, and on every start anything
//! in it that group or others may access (left by an older version, a restored backup or a
//! hand-made copy) loses that access: directories become at most 0700, files at most 0600.
//! The stores create their own files owner-only; this walk repairs what is already there.

use std::path::{Path, PathBuf};

/// Creates `dir` (owner-only) if missing and takes group and other access away from it and
/// everything under it. Returns how many entries were changed.
pub(crate) fn prepare(dir: &Path) -> Result<usize, (PathBuf, std::io::Error)> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| (parent.to_path_buf(), e))?;
    }
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    let builder = std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    #[cfg(not(unix))]
    let builder = &mut builder;
    match builder.create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => {}
        Err(e) => return Err((dir.to_path_buf(), e)),
    }
    let fixed = restrict(dir)?;
    if fixed > 0 {
        tracing::warn!(
            dir = %dir.display(),
            "{fixed} entries of the data directory were readable by other users; they are now private to the server's user"
        );
    }
    Ok(fixed)
}

/// Removes group and other permissions from `path` and, for a directory, from everything under
/// it. Symbolic links are neither followed nor changed. Returns how many entries changed.
#[cfg(unix)]
fn restrict(path: &Path) -> Result<usize, (PathBuf, std::io::Error)> {
    use std::os::unix::fs::PermissionsExt;
    fn err(p: &Path) -> impl FnOnce(std::io::Error) -> (PathBuf, std::io::Error) + '_ {
        move |e| (p.to_path_buf(), e)
    }
    let meta = std::fs::symlink_metadata(path).map_err(err(path))?;
    if meta.file_type().is_symlink() {
        return Ok(0);
    }
    let mut fixed = 0;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700)).map_err(err(path))?;
        fixed += 1;
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).map_err(err(path))? {
            let entry = entry.map_err(err(path))?;
            fixed += restrict(&entry.path())?;
        }
    }
    Ok(fixed)
}

/// Other systems: access is governed by the directory's ACL, inherited from where it was made.
#[cfg(not(unix))]
fn restrict(_path: &Path) -> Result<usize, (PathBuf, std::io::Error)> {
    Ok(0)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn open_entries_are_made_private_and_links_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        std::fs::create_dir_all(data.join("chunks/1")).unwrap();
        std::fs::write(data.join("meta.db"), b"").unwrap();
        std::fs::write(data.join("chunks/1/ab"), b"x").unwrap();
        let outside = tmp.path().join("outside");
        std::fs::write(&outside, b"").unwrap();
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink(&outside, data.join("link")).unwrap();
        for (p, m) in [("", 0o755), ("chunks", 0o775), ("chunks/1", 0o701), ("meta.db", 0o644), ("chunks/1/ab", 0o640)]
        {
            std::fs::set_permissions(data.join(p), std::fs::Permissions::from_mode(m)).unwrap();
        }
        assert_eq!(prepare(&data).unwrap(), 5);
        for (p, m) in [("", 0o700), ("chunks", 0o700), ("chunks/1", 0o700), ("meta.db", 0o600), ("chunks/1/ab", 0o600)]
        {
            assert_eq!(mode(&data.join(p)), m, "{p}");
        }
        assert_eq!(mode(&outside), 0o644, "a link's target outside is not touched");
        assert_eq!(prepare(&data).unwrap(), 0);
    }
}
