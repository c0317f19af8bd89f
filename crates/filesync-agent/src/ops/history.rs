//! The server's history as actions: the versions of a file, the trash (deleted files the
//! server still keeps), restoring a version in place or under a new name, and what the
//! account stores. A restore happens on the server, as a new version every computer syncs;
//! the caller then syncs this computer (see [`super::sync_now`]).

use super::{OpsError, connect};
use crate::config::{FolderConfig, Home};
use filesync_client::{Connection, ErrorCode};
use filesync_core::{EntryKind, EntryState, RelPath};
use filesync_proto::convert::entry_from_wire;

/// A linked folder opened on the server: the connection, its id, and its seq when opened.
#[derive(Clone)]
pub struct Remote {
    pub conn: Connection,
    pub folder_id: u64,
    pub seq: u64,
}

/// `YYYY-MM-DD HH:MM:SS UTC`, as the CLI prints times.
pub fn utc(unix: i64) -> String {
    if unix <= 0 {
        return "never".into();
    }
    let t = filesync_core::conflict::CivilTime::from_unix(unix);
    format!("{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC", t.year, t.month, t.day, t.hour, t.minute, t.second)
}

fn bad_entry(e: impl std::fmt::Display) -> OpsError {
    OpsError::Refused(format!("the server sent a bad entry: {e}"))
}

/// Connects and opens `folder` on the server; `None` if the server has never heard of it.
pub async fn open(home: &Home, folder: &FolderConfig) -> Result<Option<Remote>, OpsError> {
    let (_, conn) = connect(home).await?;
    match conn.open_folder(&folder.name, false).await {
        Ok(info) => Ok(Some(Remote { conn, folder_id: info.id, seq: info.seq })),
        Err(e) if e.code() == Some(ErrorCode::NotFound) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Every version of `path` the server keeps, newest first.
pub async fn versions(
    home: &Home,
    folder: &FolderConfig,
    path: &RelPath,
) -> Result<(Remote, Vec<EntryState>), OpsError> {
    let Some(remote) = open(home, folder).await? else {
        return Err(OpsError::NotFound(format!(
            "the folder {} has never been synced to the server, so it has no history yet",
            folder.name
        )));
    };
    let wire = remote.conn.all_versions(remote.folder_id, path.as_str()).await?;
    let list = wire.iter().map(entry_from_wire).collect::<Result<Vec<_>, _>>().map_err(bad_entry)?;
    if list.is_empty() {
        return Err(OpsError::NotFound(format!(
            "the server has no version of {path} in the folder {} (was it ever synced?)",
            folder.name
        )));
    }
    Ok((remote, list))
}

/// What a restore without a chosen version brings back: for a deleted path its last version
/// before the deletion; otherwise the newest older version whose content differs from the
/// current one (undoing the last change). `versions` is newest first.
pub fn default_version(versions: &[EntryState]) -> Option<&EntryState> {
    let current = versions.first()?;
    match &current.meta {
        None => versions.iter().find(|v| v.meta.is_some()),
        Some(cur) => versions[1..].iter().find(|v| v.meta.as_ref().is_some_and(|m| !m.same_content(cur))),
    }
}

/// What a restore did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Restored {
    /// The target already held that content; nothing changed.
    AlreadyThere,
    /// The target's new current version.
    NewVersion(u64),
}

/// The version `rev` of `rel` (default: [`default_version`]) restored onto `rel` or `to`.
pub async fn restore(
    home: &Home,
    folder: &FolderConfig,
    rel: &RelPath,
    rev: Option<u64>,
    to: Option<&RelPath>,
) -> Result<(EntryState, Restored), OpsError> {
    let (remote, list) = versions(home, folder, rel).await?;
    let chosen = match rev {
        Some(rev) => match list.iter().find(|e| e.rev == rev) {
            Some(e) if e.meta.is_some() => e,
            Some(_) => {
                return Err(OpsError::invalid(
                    "version",
                    format!(
                        "version {rev} of {rel} is its deletion; pick a version with a size from `filesync history`"
                    ),
                ));
            }
            None => {
                return Err(OpsError::invalid(
                    "version",
                    format!("{rel} has no version {rev}; `filesync history` lists them"),
                ));
            }
        },
        None => default_version(&list).ok_or_else(|| {
            OpsError::Refused(format!(
                "{rel} has no older version with other content to go back to; `filesync history` lists its versions"
            ))
        })?,
    }
    .clone();
    let done = restore_onto(&remote, rel, &chosen, to).await?;
    Ok((chosen, done))
}

/// Restores `chosen` (a live version of `rel`) onto `rel` or `to` on the server.
pub(super) async fn restore_onto(
    remote: &Remote,
    rel: &RelPath,
    chosen: &EntryState,
    to: Option<&RelPath>,
) -> Result<Restored, OpsError> {
    let target_path = to.unwrap_or(rel);
    let (outcome, _) =
        remote.conn.restore(remote.folder_id, rel.as_str(), chosen.rev, to.map_or("", |t| t.as_str())).await?;
    let current = outcome.current.as_ref().map(entry_from_wire).transpose().map_err(bad_entry)?;
    if !outcome.accepted {
        let Some(blocker) = current else {
            return Err(OpsError::Refused("the server refused the restore without saying why".into()));
        };
        if blocker.path != *target_path {
            return Err(OpsError::Refused(format!(
                "{} is a file on the server, so {target_path} cannot be restored below it; move that file away \
                 or restore somewhere else (--to)",
                blocker.path
            )));
        }
        let is_dir = blocker.meta.as_ref().is_some_and(|m| m.kind == EntryKind::Dir);
        let restoring_dir = chosen.meta.as_ref().is_some_and(|m| m.kind == EntryKind::Dir);
        let what = |d: bool| if d { "folder" } else { "file" };
        if target_path == rel && is_dir != restoring_dir {
            return Err(OpsError::Refused(format!(
                "{target_path} is a {} now, and a restore never replaces a {} by a {}; nothing was changed. \
                 Restore under a new name with --to",
                what(is_dir),
                what(is_dir),
                what(!is_dir),
            )));
        }
        return Err(OpsError::Refused(format!(
            "{target_path} already exists with other content (saved on {} at {}); nothing was changed. \
             Restore under a new name with --to, or move that {} away first",
            blocker.device_name,
            utc(blocker.committed_at),
            what(is_dir)
        )));
    }
    match current {
        // An entry older than our view of the folder: the target already had this content.
        Some(c) if c.rev <= remote.seq => Ok(Restored::AlreadyThere),
        Some(c) => Ok(Restored::NewVersion(c.rev)),
        None => Err(OpsError::Refused("the server accepted the restore but sent no entry".into())),
    }
}

/// A deleted path the server can still restore.
#[derive(Clone, Debug)]
pub struct TrashItem {
    pub folder: FolderConfig,
    /// The deletion (rev, device, time).
    pub deleted: EntryState,
    /// The last version before it.
    pub last: EntryState,
}

/// The trash of each `(folder, only below this path)`, most recently deleted first per folder.
pub async fn trash(home: &Home, scope: &[(FolderConfig, Option<RelPath>)]) -> Result<Vec<TrashItem>, OpsError> {
    let mut rows = Vec::new();
    for (folder, prefix) in scope {
        let Some(remote) = open(home, folder).await? else { continue };
        let prefix = prefix.as_ref().map_or("", |p| p.as_str());
        let mut before = 0;
        loop {
            let page = remote.conn.list_trash(remote.folder_id, prefix, before, 0).await?;
            for t in &page.entries {
                let (Some(d), Some(l)) = (&t.deleted, &t.last_live) else { continue };
                let (d, l) = (entry_from_wire(d).map_err(bad_entry)?, entry_from_wire(l).map_err(bad_entry)?);
                before = d.rev;
                rows.push(TrashItem { folder: folder.clone(), deleted: d, last: l });
            }
            if !page.more || page.entries.is_empty() {
                break;
            }
        }
    }
    Ok(rows)
}

/// What this account stores on the server: what `filesync usage --json` prints and
/// `GET /api/usage` sends.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct UsageView {
    pub files_current: u64,
    pub bytes_current: u64,
    /// Older versions kept in the history, and their bytes before deduplication.
    pub versions_history: u64,
    pub bytes_history: u64,
    /// What the server stores (each piece of content once), which the quota counts.
    pub chunks: u64,
    pub bytes_stored: u64,
    /// The account's storage quota in bytes; `None`: unlimited.
    pub quota: Option<u64>,
}

/// What this account stores on the server.
pub async fn usage(home: &Home) -> Result<UsageView, OpsError> {
    let (_, conn) = connect(home).await?;
    let u = conn.usage().await?;
    Ok(UsageView {
        files_current: u.files_current,
        bytes_current: u.bytes_current,
        versions_history: u.versions_history,
        bytes_history: u.bytes_history,
        chunks: u.chunks,
        bytes_stored: u.bytes_stored,
        quota: u.quota,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use filesync_core::{FileMeta, Hash};

    fn v(rev: u64, content: Option<&[u8]>) -> EntryState {
        EntryState {
            path: RelPath::new("f").unwrap(),
            rev,
            meta: content.map(|c| FileMeta {
                kind: EntryKind::File,
                size: c.len() as u64,
                mtime_ns: rev as i64,
                executable: false,
                hash: Hash::of(c),
                chunks: vec![],
            }),
            device_id: 1,
            device_name: "d".into(),
            committed_at: rev as i64,
        }
    }

    fn pick(list: &[EntryState]) -> Option<u64> {
        default_version(list).map(|e| e.rev)
    }

    #[test]
    fn default_restore_undoes_the_last_change() {
        assert_eq!(pick(&[v(3, Some(b"c")), v(2, Some(b"b")), v(1, Some(b"a"))]), Some(2));
        // A touch (same content, new mtime) is not a change worth undoing.
        assert_eq!(pick(&[v(3, Some(b"b")), v(2, Some(b"b")), v(1, Some(b"a"))]), Some(1));
        assert_eq!(pick(&[v(1, Some(b"a"))]), None, "a single version has nothing to go back to");
        assert_eq!(pick(&[]), None);
    }

    #[test]
    fn default_restore_of_a_deleted_file_is_its_last_version() {
        assert_eq!(pick(&[v(4, None), v(3, Some(b"c")), v(2, Some(b"b"))]), Some(3));
        assert_eq!(pick(&[v(4, None)]), None, "nothing left to restore");
    }

    #[test]
    fn default_restore_skips_deletions_in_the_history() {
        assert_eq!(pick(&[v(5, Some(b"new")), v(4, None), v(3, Some(b"old"))]), Some(3));
    }
}
