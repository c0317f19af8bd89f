//! The account forms' API against a real server: registering with an invite code on a server
//! that takes new accounts by invite, and changing the password with "log out every other
//! computer" ticked or not.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use filesync_agent::config::Home;
use filesync_agent::live::LiveStatus;
use filesync_client::{Connection, ErrorCode, Trust};
use filesync_server::admin::Admin;
use filesync_web::security::Secret;
use filesync_web::{AppState, router};
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

const HOST: &str = "127.0.0.1:7780";
const PASSWORD: &str = "a secret password 42";

struct TestServer {
    addr: String,
    fingerprint: String,
    data: std::path::PathBuf,
    _dir: tempfile::TempDir,
    _task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    async fn start(registration: filesync_server::Registration) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let mut config = filesync_server::ServerConfig::new(&data);
        config.listen = "127.0.0.1:0".into();
        config.registration = registration;
        let s = filesync_server::Server::open(config).await.unwrap();
        let (addr, fingerprint) = (s.local_addr().to_string(), s.fingerprint().to_string());
        TestServer { addr, fingerprint, data, _dir: dir, _task: tokio::spawn(s.run(std::future::pending())) }
    }

    async fn connect(&self) -> Connection {
        Connection::connect(&self.addr, Trust::Pinned(self.fingerprint.clone())).await.unwrap()
    }
}

/// The agent's API in memory, signed in with the installation secret.
struct Ui {
    state: AppState,
    secret: String,
    _tmp: tempfile::TempDir,
}

impl Ui {
    fn new() -> Ui {
        let tmp = tempfile::tempdir().unwrap();
        let home = Home::new(tmp.path().join("home"));
        let state = AppState::new(home.clone(), LiveStatus::default(), HOST.parse().unwrap()).unwrap();
        let secret = Secret::load_or_create(&home).unwrap().expose().to_string();
        Ui { state, secret, _tmp: tmp }
    }

    async fn post(&self, path: &str, body: serde_json::Value) -> (StatusCode, serde_json::Value) {
        let req = Request::post(path)
            .header(header::HOST, HOST)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.secret))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let resp = router(self.state.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
    }

    async fn register(&self, s: &TestServer, user: &str, invite: Option<&str>) -> (StatusCode, serde_json::Value) {
        let account = serde_json::json!({
            "server": s.addr, "fingerprint": s.fingerprint, "user": user, "password": PASSWORD,
            "device_name": "laptop", "register": true, "invite": invite,
        });
        self.post("/api/setup/account", account).await
    }
}

#[tokio::test]
async fn the_register_form_takes_an_invite_code_and_says_when_one_is_needed() {
    let s = TestServer::start(filesync_server::Registration::Invite).await;
    let ui = Ui::new();
    let (status, body) = ui.register(&s, "ann", None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "invite", "{body}");
    let (status, body) = ui.register(&s, "ann", Some("fsi_wrong")).await;
    assert_eq!((status, body["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("invite")), "{body}");
    assert!(body["error"].as_str().unwrap().contains("already used or expired"), "{body}");
    let (meta, _) = filesync_store::open_embedded(&s.data).await.unwrap();
    let code = Admin::new(Arc::new(meta)).invite(Duration::from_secs(600)).await.unwrap();
    let (status, body) = ui.register(&s, "ann", Some(&code)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user"], "ann");
}

#[tokio::test]
async fn the_password_form_can_log_out_every_other_computer() {
    let s = TestServer::start(filesync_server::Registration::Open).await;
    let ui = Ui::new();
    let (status, body) = ui.register(&s, "ann", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let desktop = s.connect().await.login("ann", PASSWORD, "desktop").await.unwrap();

    let (status, body) = ui
        .post("/api/account/password", serde_json::json!({"current_password": PASSWORD, "new_password": "second one"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["logged_out_others"], false, "{body}");
    s.connect().await.auth(&desktop.token).await.expect("the other computer stays logged in");

    let change = serde_json::json!({
        "current_password": "second one", "new_password": "third one", "log_out_other_devices": true,
    });
    let (status, body) = ui.post("/api/account/password", change).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["logged_out_others"], true, "{body}");
    let e = s.connect().await.auth(&desktop.token).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::InvalidToken), "the other computer is logged out: {e}");
    let (status, body) = ui.post("/api/logout", serde_json::json!({"force": false})).await;
    assert_eq!((status, body["result"].as_str()), (StatusCode::OK, Some("revoked")), "this one is still in: {body}");
}
