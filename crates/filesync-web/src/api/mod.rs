//! The JSON API under `/api/` (documented in `docs/agent-api.md`): each handler parses its
//! request, calls the matching `filesync_agent::ops` function — the code the CLI runs too —
//! and encodes the result. Errors are `{"error": "...", "code": "...", "field": "..."}`.
//! Handlers live in `session` (session, status, first run, devices, password), `linked`
//! (linked folders and their settings), `files` (conflicts, history, trash) and `preview` (a
//! file's bytes, and previews of one or two of them).

mod files;
mod linked;
mod preview;
mod session;

use crate::AppState;
use crate::security;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use filesync_agent::config::FolderConfig;
use filesync_agent::config::FolderSettings;
use filesync_agent::live::ActivityKind;
use filesync_agent::ops::{self, OpsError, account, conflicts, folders, history, settings, trash};
use filesync_client::ClientError;
use serde::Deserialize;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/session", get(session::session_info).post(session::session_start).delete(session::session_end))
        .route("/status", get(session::status))
        .route("/events", get(crate::events::events))
        .route("/setup/probe", post(session::setup_probe))
        .route("/setup/account", post(session::setup_account))
        .route("/folders", get(linked::folder_list).post(linked::folder_add))
        .route("/folders/{name}", delete(linked::folder_remove))
        .route("/folder-check", post(linked::folder_check))
        .route("/server-folders", get(linked::server_folders))
        .route("/browse", get(linked::browse))
        .route("/devices", get(session::device_list))
        .route("/devices/{id}/revoke", post(session::device_revoke))
        .route("/devices/{id}/rename", post(session::device_rename))
        .route("/devices/{id}/remove", post(session::device_remove))
        .route("/login-again", post(session::login_again))
        .route("/account/password", post(session::change_password))
        .route("/logout", post(session::logout))
        .route("/conflicts", get(files::conflict_list))
        .route("/conflicts/resolve", post(files::conflict_resolve))
        .route("/activity", get(session::activity))
        .route("/pause", post(linked::pause_all))
        .route("/folders/{name}/settings", put(linked::folder_settings))
        .route("/folders/{name}/pause", post(linked::folder_pause))
        .route("/folders/{name}/confirm-deletes", post(linked::confirm_deletes))
        .route("/folders/{name}/sync", post(linked::sync_now))
        .route("/folders/{name}/revert", get(linked::revert_preview).post(linked::revert))
        .route("/reconnect", post(session::reconnect))
        .route("/folders/{name}/ignore", get(linked::ignore_get).put(linked::ignore_put))
        .route("/folders/{name}/ignore/preview", post(linked::ignore_preview))
        .route("/folders/{name}/subfolders", get(linked::subfolders))
        .route("/folders/{name}/files", get(linked::files))
        .route("/history", get(files::history))
        .route("/restore", post(files::restore))
        .route("/trash", get(files::trash))
        .route("/trash/restore", post(files::trash_restore))
        .route("/trash/restore-group", post(files::trash_restore_group))
        .route("/usage", get(files::usage))
        .route("/file", get(preview::file))
        .route("/compare", get(preview::compare))
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
        // Whatever a handler wrote, the page shows no command-line syntax.
        let mut body = json!({ "error": ops::plain::for_ui(&self.message), "code": self.code });
        if let Some(f) = self.field {
            body["field"] = json!(f);
        }
        (self.status, Json(body)).into_response()
    }
}

impl From<OpsError> for ApiError {
    fn from(e: OpsError) -> ApiError {
        // One plain sentence in the UI's words; the raw text goes to the log.
        let message = ops::plain::error_message(&e, ops::plain::Audience::Ui);
        if let Some(source) = std::error::Error::source(&e) {
            tracing::debug!("{message} ({source})");
        }
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

pub(crate) fn folder_named(app: &AppState, name: &str) -> Result<FolderConfig, ApiError> {
    let config = app.home.load().map_err(OpsError::from)?;
    let i = settings::find(&config, name)?;
    Ok(config.folders[i].clone())
}

pub(crate) fn rel_path(field: &'static str, p: &str) -> Result<filesync_core::RelPath, ApiError> {
    filesync_core::RelPath::normalize(p.trim_matches('/'))
        .map_err(|e| OpsError::Invalid { field, message: format!("{p:?} is not a path inside the folder: {e}") }.into())
}
