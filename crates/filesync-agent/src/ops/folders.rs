//! Folder actions: link a local directory to a server folder, unlink it, list the server's
//! folders, and browse local directories to pick one.

use super::{OpsError, connect};
use crate::config::{FolderConfig, FolderSettings, Home};
use crate::state::StateDb;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Links the local directory `path` to the server folder `name` (default: the directory's own
/// name) with `settings`. Nothing is synced until the agent (or `filesync sync`) runs.
pub fn add_folder(
    home: &Home,
    path: &Path,
    name: Option<&str>,
    settings: FolderSettings,
) -> Result<FolderConfig, OpsError> {
    let mut config = home.load()?;
    let path = std::fs::canonicalize(path).map_err(|_| {
        OpsError::invalid("path", format!("{} does not exist; create the folder first", path.display()))
    })?;
    if !path.is_dir() {
        return Err(OpsError::invalid("path", format!("{} is not a directory", path.display())));
    }
    let name = match name.map(str::trim).filter(|n| !n.is_empty()) {
        Some(n) => n.to_string(),
        None => path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| OpsError::invalid("name", "name this folder"))?
            .to_string(),
    };
    let name = super::account::normalize_name(&name, "folder name", "name")?;
    if config.folders.iter().any(|f| f.name == name) {
        return Err(OpsError::invalid("name", format!("a folder named {name:?} is already linked on this computer")));
    }
    if let Some(f) = config.folders.iter().find(|f| path.starts_with(&f.path) || f.path.starts_with(&path)) {
        return Err(OpsError::invalid(
            "path",
            format!(
                "{} overlaps the linked folder {} ({}); folders cannot be nested",
                path.display(),
                f.name,
                f.path.display()
            ),
        ));
    }
    let state_dir = std::fs::canonicalize(&home.dir).unwrap_or_else(|_| home.dir.clone());
    if path.starts_with(&state_dir) || state_dir.starts_with(&path) {
        return Err(OpsError::invalid(
            "path",
            format!("{} overlaps FileSync's own state directory {}", path.display(), home.dir.display()),
        ));
    }
    let folder = FolderConfig { name, path, settings };
    config.folders.push(folder.clone());
    home.save(&config)?;
    Ok(folder)
}

/// Unlinks the folder named `folder` (or located at that path). Its files stay where they are,
/// here and on the server; its local sync state is forgotten.
pub async fn remove_folder(home: &Home, folder: &str) -> Result<FolderConfig, OpsError> {
    let mut config = home.load()?;
    let as_path = std::fs::canonicalize(folder).ok();
    let Some(i) = config.folders.iter().position(|f| f.name == folder || Some(&f.path) == as_path.as_ref()) else {
        return Err(OpsError::NotFound(format!(
            "no linked folder is named or located at {folder:?}; see `filesync folder list`"
        )));
    };
    let f = config.folders.remove(i);
    home.save(&config)?;
    let db = StateDb::open(&home.state_path()).await?;
    db.forget_folder(&f.name).await?;
    Ok(f)
}

/// A folder on the server.
#[derive(Clone, Debug, Serialize)]
pub struct ServerFolder {
    pub id: u64,
    pub name: String,
    /// Linked on this computer.
    pub linked: bool,
}

pub async fn server_folders(home: &Home) -> Result<Vec<ServerFolder>, OpsError> {
    let (config, conn) = connect(home).await?;
    let mut v: Vec<ServerFolder> = conn
        .list_folders()
        .await?
        .into_iter()
        .map(|f| ServerFolder { linked: config.folders.iter().any(|c| c.name == f.name), id: f.id, name: f.name })
        .collect();
    v.sort_by_key(|a| a.name.to_lowercase());
    Ok(v)
}

/// One directory listed by [`browse`].
#[derive(Clone, Debug, Serialize)]
pub struct DirEntry {
    pub name: String,
    pub path: PathBuf,
}

/// A directory's subdirectories, for a folder picker.
#[derive(Clone, Debug, Serialize)]
pub struct Listing {
    pub path: PathBuf,
    pub parent: Option<PathBuf>,
    pub entries: Vec<DirEntry>,
    /// Where a picker starts: the user's home directory.
    pub home: PathBuf,
}

/// The user's home directory, where a folder picker starts.
pub fn user_home() -> PathBuf {
    std::env::var_os("HOME")
        .or_else(|| std::env::var_os("USERPROFILE"))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// Lists the subdirectories of `path` (default: the user's home) that this process can read.
/// Hidden directories (a leading dot) are left out; symlinks to directories are followed.
pub fn browse(path: Option<&Path>) -> Result<Listing, OpsError> {
    let home = user_home();
    let requested = path.map(Path::to_path_buf).unwrap_or_else(|| home.clone());
    if !requested.is_absolute() {
        return Err(OpsError::invalid("path", "give an absolute path"));
    }
    let dir = std::fs::canonicalize(&requested)
        .map_err(|_| OpsError::NotFound(format!("{} does not exist", requested.display())))?;
    let rd =
        std::fs::read_dir(&dir).map_err(|source| OpsError::Io { what: "cannot list", path: dir.clone(), source })?;
    let mut entries: Vec<DirEntry> = rd
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            if name.starts_with('.') {
                return None;
            }
            let p = e.path();
            let meta = std::fs::metadata(&p).ok()?;
            // Only what this user can open.
            (meta.is_dir() && std::fs::read_dir(&p).is_ok()).then_some(DirEntry { name, path: p })
        })
        .collect();
    entries.sort_by_key(|a| a.name.to_lowercase());
    Ok(Listing { parent: dir.parent().map(Path::to_path_buf), path: dir, entries, home })
}

/// A file or folder of a linked folder as the server has it (from this computer's mirror).
#[derive(Clone, Debug, Serialize)]
pub struct RemoteFile {
    pub path: String,
    pub is_dir: bool,
    pub size: u64,
    pub rev: u64,
    pub committed_at: i64,
    pub device: String,
}

/// The folder's current files on the server whose path contains `query` (case-insensitive),
/// sorted by path, at most `limit`; and whether more matched.
pub async fn remote_files(
    home: &Home,
    folder: &FolderConfig,
    query: &str,
    limit: usize,
) -> Result<(Vec<RemoteFile>, bool), OpsError> {
    let db = StateDb::open(&home.state_path()).await?;
    let q = query.trim().to_lowercase();
    let mut v: Vec<RemoteFile> = db
        .remote_all(&folder.name)
        .await?
        .into_iter()
        .filter_map(|(p, e)| {
            let m = e.meta.as_ref()?;
            (q.is_empty() || p.as_str().to_lowercase().contains(&q)).then(|| RemoteFile {
                path: p.as_str().to_string(),
                is_dir: m.kind == filesync_core::EntryKind::Dir,
                size: m.size,
                rev: e.rev,
                committed_at: e.committed_at,
                device: e.device_name.clone(),
            })
        })
        .collect();
    v.sort_by(|a, b| a.path.cmp(&b.path));
    let more = v.len() > limit;
    v.truncate(limit);
    Ok((v, more))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_rejects_nesting_duplicates_and_the_state_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let home = Home::new(tmp.path().join("home"));
        home.ensure().unwrap();
        let docs = tmp.path().join("docs");
        std::fs::create_dir_all(docs.join("inner")).unwrap();
        let f = add_folder(&home, &docs, None, FolderSettings::default()).unwrap();
        assert_eq!(f.name, "docs");
        let dup = add_folder(&home, &tmp.path().join("docs"), Some("other"), FolderSettings::default());
        assert!(matches!(dup, Err(OpsError::Invalid { field: "path", .. })), "{dup:?}");
        let nested = add_folder(&home, &docs.join("inner"), Some("inner"), FolderSettings::default());
        assert!(matches!(nested, Err(OpsError::Invalid { field: "path", .. })));
        std::fs::create_dir_all(tmp.path().join("again")).unwrap();
        let same_name = add_folder(&home, &tmp.path().join("again"), Some("docs"), FolderSettings::default());
        assert!(matches!(same_name, Err(OpsError::Invalid { field: "name", .. })));
        let state = add_folder(&home, &home.dir, Some("state"), FolderSettings::default());
        assert!(matches!(state, Err(OpsError::Invalid { field: "path", .. })));
        let missing = add_folder(&home, &tmp.path().join("nope"), None, FolderSettings::default());
        assert!(matches!(missing, Err(OpsError::Invalid { field: "path", .. })));
    }

    #[test]
    fn browse_lists_visible_subdirectories_only() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("b")).unwrap();
        std::fs::create_dir_all(tmp.path().join("A")).unwrap();
        std::fs::create_dir_all(tmp.path().join(".hidden")).unwrap();
        std::fs::write(tmp.path().join("file.txt"), b"x").unwrap();
        let l = browse(Some(tmp.path())).unwrap();
        let names: Vec<_> = l.entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["A", "b"]);
        assert!(l.parent.is_some());
        assert!(matches!(browse(Some(Path::new("relative"))), Err(OpsError::Invalid { .. })));
    }
}
