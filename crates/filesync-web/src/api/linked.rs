//! Linked folders: list, add (with the directory browser and the server's folders), unlink,
//! and each folder's settings, pause, ignore rules, selective-sync tree and files.

use super::*;

// ---- folders -------------------------------------------------------------------------------

pub(super) async fn folder_list(State(app): State<AppState>) -> ApiResult {
    let config = app.home.load().map_err(OpsError::from)?;
    Ok(to_json(config.folders))
}

#[derive(Deserialize)]
pub(super) struct AddFolder {
    path: PathBuf,
    name: Option<String>,
    /// `[KEY, VALUE]` settings applied to the defaults, as `filesync folder set` takes them.
    #[serde(default)]
    changes: Vec<(String, String)>,
}

pub(super) async fn folder_add(
    State(app): State<AppState>,
    Json(req): Json<AddFolder>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    if !req.path.is_absolute() {
        return Err(OpsError::Invalid { field: "path", message: "choose a folder (an absolute path)".into() }.into());
    }
    let mut s = FolderSettings::default();
    for (k, v) in &req.changes {
        settings::apply(&mut s, k, v)?;
    }
    let f = folders::add_folder(&app.home, &req.path, req.name.as_deref(), s)?;
    filesync_agent::ops::configuration_changed(&app.home).await;
    app.live.record(ActivityKind::Action, Some(&f.name), format!("linked {} to the server folder", f.path.display()));
    Ok((StatusCode::CREATED, to_json(f)))
}

/// The review step's check: what adding would link, or the reason it is refused (a folder
/// inside or around a linked one, a name in use), with nothing saved.
pub(super) async fn folder_check(State(app): State<AppState>, Json(req): Json<AddFolder>) -> ApiResult {
    if !req.path.is_absolute() {
        return Err(OpsError::Invalid { field: "path", message: "choose a folder (an absolute path)".into() }.into());
    }
    let mut s = FolderSettings::default();
    for (k, v) in &req.changes {
        settings::apply(&mut s, k, v)?;
    }
    let config = app.home.load().map_err(OpsError::from)?;
    Ok(to_json(folders::check_folder(&app.home, &config, &req.path, req.name.as_deref(), s)?))
}

pub(super) async fn folder_remove(State(app): State<AppState>, Path(name): Path<String>) -> ApiResult {
    let f = folders::remove_folder(&app.home, &name).await?;
    filesync_agent::ops::configuration_changed(&app.home).await;
    app.live.record(ActivityKind::Action, Some(&f.name), "unlinked; its files stay here and on the server");
    Ok(to_json(f))
}

pub(super) async fn server_folders(State(app): State<AppState>) -> ApiResult {
    Ok(to_json(folders::server_folders(&app.home).await?))
}

#[derive(Deserialize)]
pub(super) struct BrowseQuery {
    path: Option<PathBuf>,
}

pub(super) async fn browse(State(app): State<AppState>, Query(q): Query<BrowseQuery>) -> ApiResult {
    let linked = app.home.load().map_err(OpsError::from)?.folders;
    let l = tokio::task::spawn_blocking(move || folders::browse(q.path.as_deref(), &linked))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))??;
    Ok(to_json(l))
}

// ---- folder settings ------------------------------------------------------------------------

#[derive(Deserialize)]
pub(super) struct SettingsReq {
    /// `[KEY, VALUE]` pairs, applied in order: all or none.
    changes: Vec<(String, String)>,
}

pub(super) async fn folder_settings(
    State(app): State<AppState>,
    Path(name): Path<String>,
    Json(req): Json<SettingsReq>,
) -> ApiResult {
    let (folder, said) = settings::set(&app.home, &name, &req.changes)?;
    let said: Vec<String> = said.iter().map(|m| ops::plain::for_ui(m)).collect();
    filesync_agent::ops::configuration_changed(&app.home).await;
    for m in &said {
        app.live.record(ActivityKind::Action, Some(&folder.name), m.clone());
    }
    Ok(Json(json!({ "folder": folder, "messages": said })))
}

#[derive(Deserialize)]
pub(super) struct PauseReq {
    paused: bool,
}

pub(super) async fn folder_pause(
    State(app): State<AppState>,
    Path(name): Path<String>,
    Json(req): Json<PauseReq>,
) -> ApiResult {
    let change = settings::pause(&app.home, Some(&name), req.paused)?;
    filesync_agent::ops::configuration_changed(&app.home).await;
    let folder = change.folder.clone().unwrap_or(name);
    app.live.record(ActivityKind::Action, Some(&folder), if req.paused { "paused by you" } else { "resumed" });
    Ok(Json(json!({ "folder": folder, "paused": req.paused, "all_still_paused": change.all_still_paused })))
}

pub(super) async fn pause_all(State(app): State<AppState>, Json(req): Json<PauseReq>) -> ApiResult {
    settings::pause(&app.home, None, req.paused)?;
    filesync_agent::ops::configuration_changed(&app.home).await;
    app.live.record(
        ActivityKind::Action,
        None,
        if req.paused { "paused every folder" } else { "resumed every folder" },
    );
    Ok(Json(json!({ "paused": req.paused })))
}

pub(super) async fn ignore_get(State(app): State<AppState>, Path(name): Path<String>) -> ApiResult {
    let folder = folder_named(&app, &name)?;
    Ok(Json(json!({
        "text": settings::ignore_rules(&folder)?,
        "defaults": filesync_agent::filter::DEFAULT_RULES,
        "file": folder.path.join(filesync_agent::filter::IGNORE_FILE),
    })))
}

#[derive(Deserialize)]
pub(super) struct IgnoreReq {
    text: String,
}

pub(super) async fn ignore_put(
    State(app): State<AppState>,
    Path(name): Path<String>,
    Json(req): Json<IgnoreReq>,
) -> ApiResult {
    let folder = folder_named(&app, &name)?;
    settings::save_ignore_rules(&folder, &req.text)?;
    app.live.record(ActivityKind::Action, Some(&folder.name), "saved the ignore rules (.filesyncignore)");
    Ok(Json(json!({ "saved": true })))
}

const PREVIEW_LIMIT: usize = 200;

pub(super) async fn ignore_preview(
    State(app): State<AppState>,
    Path(name): Path<String>,
    Json(req): Json<IgnoreReq>,
) -> ApiResult {
    let folder = folder_named(&app, &name)?;
    let paths = settings::ignore_preview(&app.home, &folder, &req.text, PREVIEW_LIMIT + 1).await?;
    let more = paths.len() > PREVIEW_LIMIT;
    let v: Vec<Value> =
        paths.iter().take(PREVIEW_LIMIT).map(|(p, is_dir)| json!({ "path": p, "is_dir": is_dir })).collect();
    Ok(Json(json!({ "paths": v, "more": more })))
}

pub(super) async fn subfolders(State(app): State<AppState>, Path(name): Path<String>) -> ApiResult {
    let folder = folder_named(&app, &name)?;
    let list = settings::subfolders(&app.home, &folder, 4).await?;
    Ok(Json(json!({ "subfolders": list, "excluded": folder.settings.excluded })))
}

#[derive(Deserialize)]
pub(super) struct FilesQuery {
    q: Option<String>,
}

pub(super) async fn files(
    State(app): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<FilesQuery>,
) -> ApiResult {
    let folder = folder_named(&app, &name)?;
    let (files, more) = folders::remote_files(&app.home, &folder, q.q.as_deref().unwrap_or(""), 200).await?;
    Ok(Json(json!({ "files": files, "more": more })))
}

pub(super) async fn confirm_deletes(State(app): State<AppState>, Path(name): Path<String>) -> ApiResult {
    let held = settings::confirm_deletes(&app.home, &name).await?;
    app.live.nudge(&name);
    if held.is_some() {
        app.live.record(ActivityKind::Action, Some(&name), "confirmed the deletions the mass-delete guard held back");
    }
    Ok(Json(json!({ "confirmed": held.is_some(), "reason": held })))
}

/// What reverting a one-way folder would change, for the person to confirm.
pub(super) async fn revert_preview(State(app): State<AppState>, Path(name): Path<String>) -> ApiResult {
    Ok(to_json(filesync_agent::ops::revert::preview(&app.home, &name).await?))
}

/// Reverts a one-way folder: the running agent carries it out at once.
pub(super) async fn revert(State(app): State<AppState>, Path(name): Path<String>) -> ApiResult {
    let folder = folder_named(&app, &name)?;
    filesync_agent::ops::revert::request(&app.home, &folder.name).await?;
    app.live.nudge(&folder.name);
    app.live.record(ActivityKind::Action, Some(&folder.name), "asked to revert the folder");
    Ok(Json(json!({ "folder": folder.name })))
}

/// "Sync now": the folder's task runs a pass at once, whatever its schedule.
pub(super) async fn sync_now(State(app): State<AppState>, Path(name): Path<String>) -> ApiResult {
    let folder = folder_named(&app, &name)?;
    app.live.nudge(&folder.name);
    Ok(Json(json!({ "folder": folder.name })))
}
