//! What happened to files: conflict copies and their resolution, the history of a file, the
//! trash, restores, and the account's storage use.

use super::*;

// ---- conflicts -----------------------------------------------------------------------------

pub(super) async fn conflict_list(State(app): State<AppState>) -> ApiResult {
    let config = app.home.load().map_err(OpsError::from)?;
    Ok(to_json(conflicts::list(&app.home, &config).await?))
}

#[derive(Deserialize)]
pub(super) struct ResolveReq {
    folder: String,
    copy: String,
    keep: String,
}

pub(super) async fn conflict_resolve(State(app): State<AppState>, Json(req): Json<ResolveReq>) -> ApiResult {
    let keep: conflicts::Keep = req.keep.parse()?;
    let config = app.home.load().map_err(OpsError::from)?;
    let rel = filesync_core::RelPath::normalize(&req.copy).map_err(|e| OpsError::Invalid {
        field: "copy",
        message: format!("{:?} is not a path in the folder: {e}", req.copy),
    })?;
    let list = conflicts::find(&app.home, &config).await?;
    let c = conflicts::pick(&list, &req.folder, &rel)?;
    let done = conflicts::resolve(&config, c, keep)?;
    let folder = c.folder.clone();
    let sync = ops::sync_now(&app.home, &folder).await?;
    let synced = match sync {
        ops::SyncNow::AgentRunning => "the running agent syncs it to your other computers".to_string(),
        ops::SyncNow::Done(r) if r.errors.is_empty() => "synced".into(),
        ops::SyncNow::Done(r) => format!("synced with {} error(s)", r.errors.len()),
    };
    app.live.record(ActivityKind::Action, Some(&folder.name), done.to_string());
    Ok(Json(json!({ "message": done.to_string(), "sync": synced })))
}

// ---- history and trash ----------------------------------------------------------------------

fn entry_kind(e: &filesync_core::EntryState) -> &'static str {
    match &e.meta {
        None => "deleted",
        Some(m) if m.kind == filesync_core::EntryKind::Dir => "folder",
        Some(_) => "file",
    }
}

#[derive(Deserialize)]
pub(super) struct HistoryQuery {
    folder: String,
    path: String,
}

pub(super) async fn history(State(app): State<AppState>, Query(q): Query<HistoryQuery>) -> ApiResult {
    let folder = folder_named(&app, &q.folder)?;
    let rel = rel_path("path", &q.path)?;
    let (_, list) = history::versions(&app.home, &folder, &rel).await?;
    let default = history::default_version(&list).map(|e| e.rev);
    let v: Vec<Value> = list
        .iter()
        .enumerate()
        .map(|(i, e)| {
            json!({
                "rev": e.rev, "committed_at": e.committed_at, "device": e.device_name, "kind": entry_kind(e),
                "size": e.meta.as_ref().map(|m| m.size), "deleted": e.meta.is_none(), "current": i == 0,
                "default": Some(e.rev) == default,
            })
        })
        .collect();
    Ok(Json(json!({ "folder": folder.name, "path": rel.as_str(), "versions": v })))
}

#[derive(Deserialize)]
pub(super) struct RestoreReq {
    folder: String,
    path: String,
    /// The version; default: undo the last change (or the last version of a deleted file).
    rev: Option<u64>,
    /// Restore under this folder-relative path instead.
    to: Option<String>,
}

pub(super) async fn restored(
    app: &AppState,
    folder: &FolderConfig,
    rel: &filesync_core::RelPath,
    to: Option<&filesync_core::RelPath>,
    (chosen, done): (filesync_core::EntryState, history::Restored),
) -> ApiResult {
    // Versions are named by who saved them and when (the page shows `version_time` in local
    // time), never by the server's revision numbers.
    let target = to.unwrap_or(rel);
    let from = &chosen.device_name;
    let message = match done {
        history::Restored::AlreadyThere => {
            format!("{target} already holds that version's content; nothing to restore.")
        }
        history::Restored::NewVersion(_) if target == rel => format!("Restored {rel} to its version from {from}."),
        history::Restored::NewVersion(_) => format!("Restored the version of {rel} from {from} as {target}."),
    };
    let sync = match ops::sync_now(&app.home, folder).await? {
        ops::SyncNow::AgentRunning => "the running agent brings it here and to your other computers".to_string(),
        ops::SyncNow::Done(r) if r.errors.is_empty() => "synced".into(),
        ops::SyncNow::Done(r) => format!("synced with {} error(s)", r.errors.len()),
    };
    app.live.record(ActivityKind::Action, Some(&folder.name), message.clone());
    Ok(Json(json!({ "message": message, "version_time": chosen.committed_at, "sync": sync })))
}

fn optional_rel(field: &'static str, p: &Option<String>) -> Result<Option<filesync_core::RelPath>, ApiError> {
    match p.as_deref().map(str::trim).filter(|p| !p.is_empty()) {
        Some(p) => Ok(Some(rel_path(field, p)?)),
        None => Ok(None),
    }
}

pub(super) async fn restore(State(app): State<AppState>, Json(req): Json<RestoreReq>) -> ApiResult {
    let folder = folder_named(&app, &req.folder)?;
    let rel = rel_path("path", &req.path)?;
    let to = optional_rel("to", &req.to)?;
    let done = history::restore(&app.home, &folder, &rel, req.rev, to.as_ref()).await?;
    restored(&app, &folder, &rel, to.as_ref(), done).await
}

#[derive(Deserialize)]
pub(super) struct TrashQuery {
    folder: Option<String>,
}

pub(super) async fn trash(State(app): State<AppState>, Query(q): Query<TrashQuery>) -> ApiResult {
    let config = app.home.load().map_err(OpsError::from)?;
    let folders: Vec<FolderConfig> = match &q.folder {
        Some(name) => vec![folder_named(&app, name)?],
        None => config.folders.clone(),
    };
    // Grouped: deletions made together share a `group`, and conflict-copy clean-ups are left out.
    let groups = trash::groups(&app.home, &folders).await?;
    let v: Vec<Value> = groups
        .iter()
        .flat_map(|g| g.items.iter().map(move |t| (g, t)))
        .map(|(g, t)| {
            json!({
                "folder": t.folder.name, "path": t.deleted.path.as_str(), "group": g.key,
                "deleted_rev": t.deleted.rev, "deleted_at": t.deleted.committed_at, "deleted_by": t.deleted.device_name,
                "last_rev": t.last.rev, "last_at": t.last.committed_at, "last_device": t.last.device_name,
                "kind": entry_kind(&t.last), "size": t.last.meta.as_ref().map(|m| m.size),
            })
        })
        .collect();
    Ok(Json(Value::Array(v)))
}

#[derive(Deserialize)]
pub(super) struct TrashRestoreReq {
    folder: String,
    path: String,
    to: Option<String>,
}

/// " and the 5 items that were in it".
fn contents_phrase(m: &trash::RestoredMany) -> String {
    match m.back() {
        0 => String::new(),
        1 => " and the item that was in it".into(),
        n => format!(" and the {n} items that were in it"),
    }
}

/// What could not come back, if anything.
fn failures(m: &trash::RestoredMany) -> String {
    match m.failed.as_slice() {
        [] => String::new(),
        [(p, why)] => format!(" {p} could not be restored: {why}"),
        [(p, why), rest @ ..] => format!(" {} items could not be restored; {p}: {why}", rest.len() + 1),
    }
}

async fn sync_after(app: &AppState, folder: &FolderConfig) -> Result<String, ApiError> {
    Ok(match ops::sync_now(&app.home, folder).await? {
        ops::SyncNow::AgentRunning => "the running agent brings it here and to your other computers".to_string(),
        ops::SyncNow::Done(r) if r.errors.is_empty() => "synced".into(),
        ops::SyncNow::Done(r) => format!("synced with {} error(s)", r.errors.len()),
    })
}

pub(super) async fn trash_restore(State(app): State<AppState>, Json(req): Json<TrashRestoreReq>) -> ApiResult {
    let folder = folder_named(&app, &req.folder)?;
    let rel = rel_path("path", &req.path)?;
    let to = optional_rel("to", &req.to)?;
    let r = trash::restore_deleted(&app.home, &folder, &rel, to.as_ref()).await?;
    let target = to.as_ref().unwrap_or(&rel);
    let from = &r.last.device_name;
    let inside = contents_phrase(&r.contents);
    let message = match (&r.done, to.is_some()) {
        (history::Restored::AlreadyThere, _) if inside.is_empty() => {
            format!("{target} already holds that version's content; nothing to restore.")
        }
        (_, false) if inside.is_empty() => format!("Restored {rel} to its version from {from}."),
        (_, true) if inside.is_empty() => format!("Restored the version of {rel} from {from} as {target}."),
        (_, false) => format!("Restored the folder {rel}{inside}."),
        (_, true) => format!("Restored the folder {rel}{inside} as {target}."),
    } + &failures(&r.contents);
    let sync = sync_after(&app, &folder).await?;
    app.live.record(ActivityKind::Action, Some(&folder.name), message.clone());
    Ok(Json(json!({
        "message": message, "version_time": r.last.committed_at, "sync": sync,
        "restored": 1 + r.contents.back(), "failed": r.contents.failed.len(),
    })))
}

#[derive(Deserialize)]
pub(super) struct GroupRestoreReq {
    folder: String,
    group: u64,
}

pub(super) async fn trash_restore_group(State(app): State<AppState>, Json(req): Json<GroupRestoreReq>) -> ApiResult {
    let folder = folder_named(&app, &req.folder)?;
    let r = trash::restore_group(&app.home, &folder, req.group).await?;
    let n = r.done.back();
    let message = format!(
        "Restored {n} item{} deleted on {}.{}",
        if n == 1 { "" } else { "s" },
        r.group.device,
        failures(&r.done)
    );
    let sync = sync_after(&app, &folder).await?;
    app.live.record(ActivityKind::Action, Some(&folder.name), message.clone());
    Ok(Json(json!({ "message": message, "sync": sync, "restored": n, "failed": r.done.failed.len() })))
}

pub(super) async fn usage(State(app): State<AppState>) -> ApiResult {
    Ok(to_json(history::usage(&app.home).await?))
}
