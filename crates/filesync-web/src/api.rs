//! The JSON API under `/api/` (documented in `docs/agent-api.md`): each handler parses its
//! request, calls the matching `filesync_agent::ops` function — the code the CLI runs too —
//! and encodes the result. Errors are `{"error": "...", "code": "...", "field": "..."}`.

use crate::AppState;
use crate::security;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use filesync_agent::config::FolderSettings;
use filesync_agent::live::ActivityKind;
use filesync_agent::ops::{self, OpsError, account, conflicts, folders};
use filesync_client::ClientError;
use serde::Deserialize;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/session", get(session_info).post(session_start).delete(session_end))
        .route("/status", get(status))
        .route("/events", get(crate::events::events))
        .route("/setup/probe", post(setup_probe))
        .route("/setup/account", post(setup_account))
        .route("/folders", get(folder_list).post(folder_add))
        .route("/folders/{name}", delete(folder_remove))
        .route("/server-folders", get(server_folders))
        .route("/browse", get(browse))
        .route("/devices", get(device_list))
        .route("/devices/{id}/revoke", post(device_revoke))
        .route("/logout", post(logout))
        .route("/conflicts", get(conflict_list))
        .route("/conflicts/resolve", post(conflict_resolve))
        .route("/activity", get(activity))
}

/// An error as the API reports it.
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<&'static str>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), field: None }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.message, "code": self.code });
        if let Some(f) = self.field {
            body["field"] = json!(f);
        }
        (self.status, Json(body)).into_response()
    }
}

impl From<OpsError> for ApiError {
    fn from(e: OpsError) -> ApiError {
        let message = e.to_string();
        let (status, code, field) = match &e {
            OpsError::Invalid { field, .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid", Some(*field)),
            OpsError::NotLoggedIn => (StatusCode::CONFLICT, "not_logged_in", None),
            OpsError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", None),
            OpsError::Refused(_) => (StatusCode::CONFLICT, "refused", None),
            OpsError::Client(ClientError::FingerprintMismatch { .. }) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "fingerprint_mismatch", Some("fingerprint"))
            }
            OpsError::Client(c) if c.is_auth_failure() => (StatusCode::FORBIDDEN, "server_refused", None),
            OpsError::Client(c) if c.is_transient() => (StatusCode::BAD_GATEWAY, "server_unreachable", None),
            OpsError::Client(_) => (StatusCode::BAD_GATEWAY, "server_error", None),
            OpsError::Sync(s) if s.is_transient() => (StatusCode::BAD_GATEWAY, "server_unreachable", None),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal", None),
        };
        ApiError { status, code, message, field }
    }
}

type ApiResult<T = Json<Value>> = Result<T, ApiError>;

fn to_json<T: serde::Serialize>(v: T) -> Json<Value> {
    Json(serde_json::to_value(v).expect("API values serialize"))
}

// ---- session -------------------------------------------------------------------------------

async fn session_info(State(app): State<AppState>, headers: HeaderMap) -> Json<Value> {
    Json(json!({
        "authenticated": security::authenticated(&app, &headers),
        "password_required": app.password_mode(),
    }))
}

#[derive(Deserialize)]
struct SessionStart {
    key: Option<String>,
    password: Option<String>,
}

/// Exchanges the secret from the `filesync ui` URL (or the UI password) for the session cookie.
async fn session_start(State(app): State<AppState>, Json(req): Json<SessionStart>) -> Response {
    let hash = app.password_hash();
    let ok = match (&req.key, &req.password) {
        (Some(k), _) => app.secret.matches(k),
        (None, Some(p)) => match &hash {
            Some(h) => {
                if let Some(wait) = app.password_backoff() {
                    return ApiError::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "rate_limited",
                        format!("too many wrong passwords; try again in {} s", wait.as_secs().max(1)),
                    )
                    .into_response();
                }
                let (p, h) = (p.clone(), h.clone());
                let good =
                    tokio::task::spawn_blocking(move || security::verify_password(&p, &h)).await.unwrap_or(false);
                app.password_attempt(good);
                good
            }
            None => false,
        },
        (None, None) => false,
    };
    if !ok {
        let message = if req.password.is_some() {
            "wrong password"
        } else {
            "this link is not valid for this computer; open the UI with `filesync ui`"
        };
        let mut e = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message);
        e.field = req.password.is_some().then_some("password");
        return e.into_response();
    }
    let cookie = app.secret.cookie_value(hash.as_deref());
    (StatusCode::NO_CONTENT, [(header::SET_COOKIE, security::session_cookie(app.bound.port(), &cookie))])
        .into_response()
}

async fn session_end(State(app): State<AppState>) -> Response {
    (StatusCode::NO_CONTENT, [(header::SET_COOKIE, security::clear_cookie(app.bound.port()))]).into_response()
}

impl AppState {
    /// How long to refuse password attempts after repeated failures.
    fn password_backoff(&self) -> Option<Duration> {
        let f = self.failures.lock().expect("failures lock");
        let (count, last) = *f;
        let last = last?;
        let wait = match count {
            0..=4 => return None,
            n => Duration::from_secs(1u64 << (n - 5).min(6)),
        };
        wait.checked_sub(last.elapsed())
    }

    fn password_attempt(&self, good: bool) {
        let mut f = self.failures.lock().expect("failures lock");
        *f = if good { (0, None) } else { (f.0 + 1, Some(Instant::now())) };
    }
}

// ---- status --------------------------------------------------------------------------------

async fn status(State(app): State<AppState>) -> Json<Value> {
    to_json(app.status_view())
}

async fn activity(State(app): State<AppState>, Query(q): Query<SearchQuery>) -> Json<Value> {
    let mut v = app.live.activity(q.q.as_deref().unwrap_or(""));
    v.reverse();
    to_json(v)
}

#[derive(Deserialize)]
struct SearchQuery {
    q: Option<String>,
}

// ---- first run -----------------------------------------------------------------------------

#[derive(Deserialize)]
struct Probe {
    server: String,
}

async fn setup_probe(Json(req): Json<Probe>) -> ApiResult {
    let fingerprint = account::probe(&req.server).await?;
    Ok(Json(json!({ "server": req.server.trim(), "fingerprint": fingerprint })))
}

#[derive(Deserialize)]
struct AccountReq {
    server: String,
    fingerprint: String,
    user: String,
    password: String,
    device_name: String,
    #[serde(default)]
    register: bool,
}

async fn setup_account(State(app): State<AppState>, Json(req): Json<AccountReq>) -> ApiResult {
    let c = account::Credentials {
        server: req.server,
        fingerprint: Some(req.fingerprint),
        user: req.user,
        password: req.password,
        device_name: req.device_name,
        register: req.register,
    };
    let done = account::log_in(&app.home, &c).await?;
    app.live.record(
        ActivityKind::Action,
        None,
        format!(
            "{} as {} on {} (this computer: {})",
            if c.register { "registered" } else { "logged in" },
            done.user,
            done.server,
            done.device_name
        ),
    );
    Ok(to_json(done))
}

#[derive(Deserialize)]
struct LogoutReq {
    #[serde(default)]
    force: bool,
}

async fn logout(State(app): State<AppState>, Json(req): Json<LogoutReq>) -> ApiResult {
    let out = account::log_out(&app.home, req.force).await?;
    let (result, warning) = match out {
        account::LoggedOut::NotLoggedIn => ("not_logged_in", None),
        account::LoggedOut::Revoked => ("revoked", None),
        account::LoggedOut::ForgottenOnly(why) => ("forgotten_here_only", Some(why)),
    };
    app.live.record(ActivityKind::Action, None, "logged out");
    Ok(Json(json!({ "result": result, "warning": warning })))
}

// ---- folders -------------------------------------------------------------------------------

async fn folder_list(State(app): State<AppState>) -> ApiResult {
    let config = app.home.load().map_err(OpsError::from)?;
    Ok(to_json(config.folders))
}

#[derive(Deserialize)]
struct AddFolder {
    path: PathBuf,
    name: Option<String>,
    settings: Option<FolderSettings>,
}

async fn folder_add(State(app): State<AppState>, Json(req): Json<AddFolder>) -> ApiResult<(StatusCode, Json<Value>)> {
    if !req.path.is_absolute() {
        return Err(OpsError::Invalid { field: "path", message: "choose a folder (an absolute path)".into() }.into());
    }
    let f = folders::add_folder(&app.home, &req.path, req.name.as_deref(), req.settings.unwrap_or_default())?;
    app.live.record(ActivityKind::Action, Some(&f.name), format!("linked {} to the server folder", f.path.display()));
    Ok((StatusCode::CREATED, to_json(f)))
}

async fn folder_remove(State(app): State<AppState>, Path(name): Path<String>) -> ApiResult {
    let f = folders::remove_folder(&app.home, &name).await?;
    app.live.record(ActivityKind::Action, Some(&f.name), "unlinked; its files stay here and on the server");
    Ok(to_json(f))
}

async fn server_folders(State(app): State<AppState>) -> ApiResult {
    Ok(to_json(folders::server_folders(&app.home).await?))
}

#[derive(Deserialize)]
struct BrowseQuery {
    path: Option<PathBuf>,
}

async fn browse(Query(q): Query<BrowseQuery>) -> ApiResult {
    let l = tokio::task::spawn_blocking(move || folders::browse(q.path.as_deref()))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))??;
    Ok(to_json(l))
}

// ---- devices -------------------------------------------------------------------------------

async fn device_list(State(app): State<AppState>) -> ApiResult {
    Ok(to_json(account::list_devices(&app.home).await?))
}

async fn device_revoke(State(app): State<AppState>, Path(id): Path<u64>) -> ApiResult {
    let config = app.home.load().map_err(OpsError::from)?;
    if config.device_id == Some(id) {
        return Err(OpsError::Refused(
            "this is the computer you are using; log out from the Account screen instead".into(),
        )
        .into());
    }
    account::revoke_device(&app.home, id).await?;
    app.live.record(ActivityKind::Action, None, format!("revoked device {id}; it can no longer connect"));
    Ok(Json(json!({ "revoked": id })))
}

// ---- conflicts -----------------------------------------------------------------------------

async fn conflict_list(State(app): State<AppState>) -> ApiResult {
    let config = app.home.load().map_err(OpsError::from)?;
    let me = config.device_name.clone().unwrap_or_default();
    let list = conflicts::find(&app.home, &config).await?;
    let v: Vec<Value> = list
        .iter()
        .map(|c| {
            let original_device = c.original_entry.as_ref().map(|e| e.device_name.clone());
            let mine = if c.copy_device == me {
                Some("copy")
            } else if original_device.as_deref() == Some(me.as_str()) {
                Some("original")
            } else {
                None
            };
            json!({
                "folder": c.folder.name,
                "copy": c.copy.as_str(),
                "original": c.original.as_str(),
                "copy_device": c.copy_device,
                "copy_time": c.copy_when,
                "copy_size": c.copy_size,
                "copy_here": c.copy_here,
                "original_device": original_device,
                "original_time": c.original_entry.as_ref().map(|e| e.committed_at),
                "original_size": c.original_size,
                "mine": mine,
            })
        })
        .collect();
    Ok(Json(Value::Array(v)))
}

#[derive(Deserialize)]
struct ResolveReq {
    folder: String,
    copy: String,
    keep: String,
}

async fn conflict_resolve(State(app): State<AppState>, Json(req): Json<ResolveReq>) -> ApiResult {
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
