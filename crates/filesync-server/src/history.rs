//! Request handlers for the safety net: a path's versions, a folder's trash, restoring a
//! version, and the user's storage usage. Like every handler they parse, apply to the stores
//! for the authenticated user only (the folder is looked up as the user's first), and encode.

use crate::Shared;
use crate::handlers::{Authed, Reply, commit_result, err, owned_folder, store_err};
use crate::hub::HubEvent;
use filesync_core::RelPath;
use filesync_proto::convert::{entry_to_wire, path_from_wire};
use filesync_proto::{ErrorCode, ListTrash, ListVersions, Message, Trash, TrashEntry, UsageInfo, Versions, limits};
use tracing::info;

fn valid_path(p: &str) -> Reply<RelPath> {
    path_from_wire(p).map_err(|e| err(ErrorCode::InvalidPath, e.to_string()))
}

/// The page size a client asked for, within `max`.
fn page(limit: u32, max: u32) -> u32 {
    if limit == 0 { max } else { limit.min(max) }
}

pub(crate) async fn list_versions(shared: &Shared, a: &Authed, l: ListVersions) -> Reply<Message> {
    let folder = owned_folder(shared, a, l.folder_id).await?;
    let path = valid_path(&l.path)?;
    let limit = page(l.limit, limits::MAX_VERSIONS_PER_REPLY);
    let found = shared.meta.version_history(folder.id, &path, l.before_rev, limit + 1).await.map_err(store_err)?;
    let mut more = found.len() > limit as usize;
    // Versions of a huge file carry long chunk lists: stop before the reply outgrows a frame.
    let mut entries = Vec::new();
    let mut size = 0usize;
    for e in found.iter().take(limit as usize) {
        let w = entry_to_wire(e);
        size += filesync_proto::encoded_len(&w) + 8;
        if size > limits::MAX_REPLY_BYTES && !entries.is_empty() {
            more = true;
            break;
        }
        entries.push(w);
    }
    Ok(Message::Versions(Versions { entries, more }))
}

pub(crate) async fn list_trash(shared: &Shared, a: &Authed, l: ListTrash) -> Reply<Message> {
    let folder = owned_folder(shared, a, l.folder_id).await?;
    let prefix = if l.prefix.is_empty() { None } else { Some(valid_path(&l.prefix)?) };
    let limit = page(l.limit, limits::MAX_TRASH_PER_REPLY);
    let found = shared.meta.trash(folder.id, prefix.as_ref(), l.before_rev, limit + 1).await.map_err(store_err)?;
    let mut more = found.len() > limit as usize;
    let mut entries = Vec::new();
    let mut size = 0usize;
    for t in found.iter().take(limit as usize) {
        let w = TrashEntry { deleted: Some(entry_to_wire(&t.deleted)), last_live: Some(entry_to_wire(&t.last_live)) };
        size += filesync_proto::encoded_len(&w) + 8;
        if size > limits::MAX_REPLY_BYTES && !entries.is_empty() {
            more = true;
            break;
        }
        entries.push(w);
    }
    Ok(Message::Trash(Trash { entries, more }))
}

pub(crate) async fn restore(shared: &Shared, a: &Authed, r: filesync_proto::Restore) -> Reply<Message> {
    let folder = owned_folder(shared, a, r.folder_id).await?;
    let path = valid_path(&r.path)?;
    let to_path = if r.to_path.is_empty() { None } else { Some(valid_path(&r.to_path)?) };
    // A copy at a new path must be at a path every computer can hold (see `commit`).
    if let Some(Err(e)) = to_path.as_ref().map(RelPath::check_syncable) {
        return Err(err(ErrorCode::InvalidPath, format!("cannot restore to that path: {e}")));
    }
    let out = shared
        .meta
        .restore(a.user_id, folder.id, &a.device, &path, r.rev, to_path.as_ref(), shared.clock.now_unix())
        .await
        .map_err(store_err)?;
    if out.folder_seq > folder.seq {
        info!(user = %a.user_name, folder = %folder.name, %path, rev = r.rev, to = ?to_path.as_ref().map(RelPath::as_str), "restored");
        shared.hub.publish(a.user_id, HubEvent::FolderChanged { folder_id: folder.id, seq: out.folder_seq });
    }
    Ok(commit_result(&out))
}

pub(crate) async fn usage(shared: &Shared, a: &Authed) -> Reply<Message> {
    let u = shared.meta.usage(a.user_id).await.map_err(store_err)?;
    let quota = shared.meta.user_by_id(a.user_id).await.map_err(store_err)?.and_then(|u| u.quota);
    Ok(Message::UsageInfo(UsageInfo {
        bytes_current: u.bytes_current,
        bytes_history: u.bytes_history,
        chunks: u.chunks,
        bytes_stored: u.bytes_stored,
        files_current: u.files_current,
        versions_history: u.versions_history,
        quota,
    }))
}
