//! Session, status, activity, first run (probe, register or log in), logout, devices and the
//! account password.

use super::*;

// ---- session -------------------------------------------------------------------------------

pub(super) async fn session_info(State(app): State<AppState>, headers: HeaderMap) -> Json<Value> {
    Json(json!({
        "authenticated": security::authenticated(&app, &headers),
        "password_required": app.password_mode(),
    }))
}

#[derive(Deserialize)]
pub(super) struct SessionStart {
    key: Option<String>,
    password: Option<String>,
}

/// Exchanges the secret from the `filesync ui` URL (or the UI password) for the session cookie.
pub(super) async fn session_start(State(app): State<AppState>, Json(req): Json<SessionStart>) -> Response {
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
            "this link is not valid for this computer; run filesync ui on this computer for a new one"
        };
        let mut e = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message);
        e.field = req.password.is_some().then_some("password");
        return e.into_response();
    }
    let cookie = app.sessions.start(hash.as_deref());
    (StatusCode::NO_CONTENT, [(header::SET_COOKIE, security::session_cookie(app.bound.port(), &cookie))])
        .into_response()
}

/// Logs this browser out: its session ends on the agent, whatever became of the cookie.
pub(super) async fn session_end(State(app): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(c) = security::cookie(&headers, &security::cookie_name(app.bound.port())) {
        app.sessions.end(c);
    }
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
        *f = if good { (0, None) } else { (f.0 + 1, Some(tokio::time::Instant::now().into_std())) };
    }
}

// ---- status --------------------------------------------------------------------------------

pub(super) async fn status(State(app): State<AppState>) -> Json<Value> {
    to_json(app.status_view())
}

/// "Retry now": the agent, waiting to try the server again, tries at once.
pub(super) async fn reconnect(State(app): State<AppState>) -> StatusCode {
    app.live.retry_connection();
    StatusCode::NO_CONTENT
}

pub(super) async fn activity(State(app): State<AppState>, Query(q): Query<SearchQuery>) -> Json<Value> {
    let mut v = app.live.activity(q.q.as_deref().unwrap_or(""));
    v.reverse();
    for a in &mut v {
        a.message = ops::plain::for_ui(&a.message);
    }
    to_json(v)
}

#[derive(Deserialize)]
pub(super) struct SearchQuery {
    q: Option<String>,
}

// ---- first run -----------------------------------------------------------------------------

#[derive(Deserialize)]
pub(super) struct Probe {
    server: String,
}

pub(super) async fn setup_probe(Json(req): Json<Probe>) -> ApiResult {
    let server = account::server_address(&req.server)?;
    let fingerprint = account::probe(&server).await?;
    Ok(Json(json!({ "server": server, "fingerprint": fingerprint })))
}

#[derive(Deserialize)]
pub(super) struct AccountReq {
    server: String,
    fingerprint: String,
    user: String,
    password: String,
    device_name: String,
    #[serde(default)]
    register: bool,
    /// With `register`, on a server that takes new accounts by invite.
    #[serde(default)]
    invite: Option<String>,
}

pub(super) async fn setup_account(State(app): State<AppState>, Json(req): Json<AccountReq>) -> ApiResult {
    let c = account::Credentials {
        server: req.server,
        fingerprint: Some(req.fingerprint),
        user: req.user,
        password: req.password,
        device_name: req.device_name,
        register: req.register,
        invite: req.invite.filter(|i| !i.trim().is_empty()),
    };
    let done = account::log_in(&app.home, &c).await?;
    filesync_agent::ops::configuration_changed(&app.home).await;
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
pub(super) struct LoginAgainReq {
    password: String,
}

/// "Log in again": the server no longer accepts this computer; only the password is asked.
pub(super) async fn login_again(State(app): State<AppState>, Json(req): Json<LoginAgainReq>) -> ApiResult {
    let done = account::log_in_again(&app.home, &req.password).await?;
    filesync_agent::ops::configuration_changed(&app.home).await;
    app.live.record(
        ActivityKind::Action,
        None,
        format!("logged in again as {} on {} (this computer: {})", done.user, done.server, done.device_name),
    );
    Ok(to_json(done))
}

#[derive(Deserialize)]
pub(super) struct LogoutReq {
    #[serde(default)]
    force: bool,
}

pub(super) async fn logout(State(app): State<AppState>, Json(req): Json<LogoutReq>) -> ApiResult {
    let out = account::log_out(&app.home, req.force).await?;
    filesync_agent::ops::configuration_changed(&app.home).await;
    let (result, warning) = match out {
        account::LoggedOut::NotLoggedIn => ("not_logged_in", None),
        account::LoggedOut::Revoked => ("revoked", None),
        account::LoggedOut::ForgottenOnly(why) => ("forgotten_here_only", Some(why)),
    };
    app.live.record(ActivityKind::Action, None, "logged out");
    Ok(Json(json!({ "result": result, "warning": warning })))
}

// ---- devices -------------------------------------------------------------------------------

pub(super) async fn device_list(State(app): State<AppState>) -> ApiResult {
    Ok(to_json(account::list_devices(&app.home).await?))
}

pub(super) async fn device_revoke(State(app): State<AppState>, Path(id): Path<u64>) -> ApiResult {
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

pub(super) async fn device_remove(State(app): State<AppState>, Path(id): Path<u64>) -> ApiResult {
    account::remove_device(&app.home, id).await?;
    app.live.record(ActivityKind::Action, None, format!("removed revoked device {id} from the list"));
    Ok(Json(json!({ "removed": id })))
}

#[derive(Deserialize)]
pub(super) struct RenameReq {
    name: String,
}

pub(super) async fn device_rename(
    State(app): State<AppState>,
    Path(id): Path<u64>,
    Json(req): Json<RenameReq>,
) -> ApiResult {
    let name = account::rename_device(&app.home, id, &req.name).await?;
    app.live.record(ActivityKind::Action, None, format!("renamed device {id} to {name:?}"));
    Ok(Json(json!({ "id": id, "name": name })))
}

#[derive(Deserialize)]
pub(super) struct PasswordReq {
    current_password: String,
    new_password: String,
    #[serde(default)]
    log_out_other_devices: bool,
}

pub(super) async fn change_password(State(app): State<AppState>, Json(req): Json<PasswordReq>) -> ApiResult {
    let done = account::change_password(&app.home, &req.current_password, &req.new_password, req.log_out_other_devices)
        .await?;
    let what = if done.logged_out_others {
        "changed the account password and logged out every other computer"
    } else {
        "changed the account password"
    };
    app.live.record(ActivityKind::Action, None, what);
    Ok(Json(json!({ "changed": true, "logged_out_others": done.logged_out_others })))
}
