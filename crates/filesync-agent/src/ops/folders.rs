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
    let folder = check_folder(home, &config, path, name, settings)?;
    config.folders.push(folder.clone());
    home.save(&config)?;
    Ok(folder)
}

/// What [`add_folder`] would link, or why it refuses — a folder inside or around a linked
/// one, a name already used, FileSync's own directory — without changing anything: for a
/// review step that says so before the person confirms.
pub fn check_folder(
    home: &Home,
    config: &crate::config::Config,
    path: &Path,
    name: Option<&str>,
    settings: FolderSettings,
) -> Result<FolderConfig, OpsError> {
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
        let how = if f.path == path {
            "is already synced as".to_string()
        } else if path.starts_with(&f.path) {
            "is inside the synced folder".to_string()
        } else {
            "contains the synced folder".to_string()
        };
        return Err(OpsError::invalid(
            "path",
            format!(
                "{} {how} {} ({}); folders cannot be nested, so its files would sync twice. Choose a folder \
                 outside it",
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
    Ok(FolderConfig { name, path, settings })
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
    /// Files in it on the server now.
    pub files: u64,
    /// The other computers whose files it holds (by the name each had when it committed them).
    pub computers: Vec<String>,
    /// It holds more than [`SERVER_FOLDER_LOOK`] entries: `files` and `computers` count only
    /// those.
    pub more: bool,
}

/// Entries read per server folder to count its files and the computers they came from.
pub const SERVER_FOLDER_LOOK: u32 = 5000;

pub async fn server_folders(home: &Home) -> Result<Vec<ServerFolder>, OpsError> {
    let (config, conn) = connect(home).await?;
    let mut v = Vec::new();
    for f in conn.list_folders().await? {
        let linked = config.folders.iter().any(|c| c.name == f.name);
        let mut sf = ServerFolder { linked, id: f.id, name: f.name, files: 0, computers: vec![], more: false };
        if !linked {
            let page = conn.get_changes(f.id, 0, SERVER_FOLDER_LOOK).await?;
            let live = page.entries.iter().filter(|e| !e.deleted);
            let mut names = std::collections::BTreeSet::new();
            for e in live {
                sf.files += u64::from(e.kind == 1);
                if Some(e.device_id) != config.device_id && !e.device_name.is_empty() {
                    names.insert(e.device_name.clone());
                }
            }
            sf.computers = names.into_iter().collect();
            sf.more = page.more;
        }
        v.push(sf);
    }
    v.sort_by_key(|a| a.name.to_lowercase());
    Ok(v)
}

/// One directory listed by [`browse`].
#[derive(Clone, Debug, Serialize)]
pub struct DirEntry {
    pub name: String,
    pub path: PathBuf,
    /// The linked folder this directory is, if any.
    pub synced_as: Option<String>,
    /// The linked folders inside it (it cannot be linked itself).
    pub contains_synced: Vec<String>,
}

/// A directory's subdirectories, for a folder picker.
#[derive(Clone, Debug, Serialize)]
pub struct Listing {
    pub path: PathBuf,
    pub parent: Option<PathBuf>,
    pub entries: Vec<DirEntry>,
    /// Where a picker starts: the user's home directory.
    pub home: PathBuf,
    /// The linked folder this directory is, or is inside of (it cannot be linked again).
    pub inside_synced: Option<String>,
}

/// The user's home directory, where a folder picker starts.
pub fn user_home() -> PathBuf {
    std::env::var_os("HOME")
        .or_else(|| std::env::var_os("USERPROFILE"))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// Lists the subdirectories of `path` (default: the user's home) that this process can read,
/// each marked when it is one of the `linked` folders or holds one. Hidden directories (a
/// leading dot) are left out; symlinks to directories are followed.
pub fn browse(path: Option<&Path>, linked: &[FolderConfig]) -> Result<Listing, OpsError> {
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
            if !(meta.is_dir() && std::fs::read_dir(&p).is_ok()) {
                return None;
            }
            // Linked paths are stored canonical; a symlink listed here is compared as its target.
            let real = std::fs::canonicalize(&p).unwrap_or_else(|_| p.clone());
            let synced_as = linked.iter().find(|f| f.path == real).map(|f| f.name.clone());
            let contains_synced =
                linked.iter().filter(|f| f.path != real && f.path.starts_with(&real)).map(|f| f.name.clone()).collect();
            Some(DirEntry { name, path: p, synced_as, contains_synced })
        })
        .collect();
    entries.sort_by_key(|a| a.name.to_lowercase());
    let inside_synced = linked.iter().find(|f| dir.starts_with(&f.path)).map(|f| f.name.clone());
    Ok(Listing { parent: dir.parent().map(Path::to_path_buf), path: dir, entries, home, inside_synced })
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
        let Err(OpsError::Invalid { field: "path", message }) = nested else { panic!("{nested:?}") };
        assert!(message.contains("is inside the synced folder docs") && message.contains("Choose a folder outside"));
        // Checked without saving anything, for the review step: around a linked folder too.
        let config = home.load().unwrap();
        let around = check_folder(&home, &config, tmp.path(), Some("all"), FolderSettings::default());
        let Err(OpsError::Invalid { message, .. }) = around else { panic!("{around:?}") };
        assert!(message.contains("contains the synced folder docs"), "{message}");
        std::fs::create_dir_all(tmp.path().join("fine")).unwrap();
        let ok = check_folder(&home, &config, &tmp.path().join("fine"), None, FolderSettings::default()).unwrap();
        assert_eq!(ok.name, "fine");
        assert_eq!(home.load().unwrap().folders.len(), 1, "a check saves nothing");
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
        let l = browse(Some(tmp.path()), &[]).unwrap();
        let names: Vec<_> = l.entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["A", "b"]);
        assert!(l.parent.is_some());
        assert!(matches!(browse(Some(Path::new("relative")), &[]), Err(OpsError::Invalid { .. })));
    }

    #[test]
    fn browse_marks_synced_folders_and_those_that_hold_one() {
        let tmp = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(tmp.path()).unwrap();
        std::fs::create_dir_all(root.join("Documents")).unwrap();
        std::fs::create_dir_all(root.join("Work/Reports")).unwrap();
        let linked = [
            FolderConfig::new("Documents", root.join("Documents")),
            FolderConfig::new("Reports", root.join("Work/Reports")),
        ];
        let l = browse(Some(&root), &linked).unwrap();
        let marks: Vec<_> =
            l.entries.iter().map(|e| (e.name.as_str(), e.synced_as.as_deref(), e.contains_synced.clone())).collect();
        assert_eq!(marks, [("Documents", Some("Documents"), vec![]), ("Work", None, vec!["Reports".to_string()])]);
        assert_eq!(l.inside_synced, None);
        let inside = browse(Some(&root.join("Work/Reports")), &linked).unwrap();
        assert_eq!(inside.inside_synced.as_deref(), Some("Reports"));
    }
}
