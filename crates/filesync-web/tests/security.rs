//! Proves each security rule of the local UI: loopback by default, the secret or its cookie on
//! every API call, foreign `Host`/`Origin` refused, no token or password in any response, a
//! strict Content-Security-Policy everywhere, a password for non-loopback binds. Most tests
//! drive the router in memory (`oneshot`); the last ones speak real HTTP on 127.0.0.1.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use filesync_agent::config::{Config, Home};
use filesync_agent::live::LiveStatus;
use filesync_web::security::{CSP, Secret, hash_password};
use filesync_web::{AppState, WebError, listen_address, router};
use http_body_util::BodyExt;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

const HOST: &str = "127.0.0.1:7780";

struct Ui {
    home: Home,
    state: AppState,
    secret: String,
    _tmp: tempfile::TempDir,
}

impl Ui {
    fn new() -> Ui {
        Ui::bound_to("127.0.0.1:7780", None)
    }

    fn bound_to(addr: &str, password: Option<&str>) -> Ui {
        let tmp = tempfile::tempdir().unwrap();
        let home = Home::new(tmp.path().join("home"));
        if let Some(p) = password {
            let mut c = Config::default();
            c.ui.password_hash = Some(hash_password(p));
            home.save(&c).unwrap();
        }
        let state = AppState::new(home.clone(), LiveStatus::default(), addr.parse().unwrap()).unwrap();
        let secret = Secret::load_or_create(&home).unwrap().expose().to_string();
        Ui { home, state, secret, _tmp: tmp }
    }

    async fn send(&self, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
        let resp = router(self.state.clone()).oneshot(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        (parts.status, parts.headers, String::from_utf8_lossy(&bytes).into_owned())
    }

    fn get(path: &str) -> axum::http::request::Builder {
        Request::get(path).header(header::HOST, HOST)
    }

    fn bearer(&self, b: axum::http::request::Builder) -> axum::http::request::Builder {
        b.header(header::AUTHORIZATION, format!("Bearer {}", self.secret))
    }

    /// Exchanges the secret for the session cookie, as the page does; returns `name=value`.
    async fn cookie(&self) -> String {
        let req = Request::post("/api/session")
            .header(header::HOST, HOST)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ORIGIN, format!("http://{HOST}"))
            .body(Body::from(format!(r#"{{"key":"{}"}}"#, self.secret)))
            .unwrap();
        let (status, headers, _) = self.send(req).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let set = headers.get(header::SET_COOKIE).unwrap().to_str().unwrap().to_string();
        set.split(';').next().unwrap().to_string()
    }
}

#[tokio::test]
async fn every_api_call_requires_the_secret_or_its_cookie() {
    let ui = Ui::new();
    let gets = [
        "/api/status",
        "/api/events",
        "/api/folders",
        "/api/server-folders",
        "/api/devices",
        "/api/activity",
        "/api/conflicts",
        "/api/browse",
        "/api/trash",
        "/api/history?folder=a&path=b",
        "/api/usage",
        "/api/folders/a/ignore",
        "/api/folders/a/subfolders",
        "/api/folders/a/files",
        "/api/file?folder=a&path=b",
        "/api/compare?folder=a&a=b",
    ];
    for path in gets {
        let (status, _, body) = ui.send(Ui::get(path).body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: {body}");
        assert!(body.contains("filesync ui"), "the refusal says what to do: {body}");
    }
    let posts = [
        ("POST", "/api/folders"),
        ("POST", "/api/setup/probe"),
        ("POST", "/api/setup/account"),
        ("POST", "/api/logout"),
        ("POST", "/api/conflicts/resolve"),
        ("POST", "/api/devices/1/revoke"),
        ("POST", "/api/devices/1/rename"),
        ("POST", "/api/account/password"),
        ("POST", "/api/restore"),
        ("POST", "/api/trash/restore"),
        ("POST", "/api/trash/restore-group"),
        ("POST", "/api/pause"),
        ("POST", "/api/folders/a/pause"),
        ("POST", "/api/folders/a/sync"),
        ("POST", "/api/reconnect"),
        ("POST", "/api/folders/a/ignore/preview"),
        ("PUT", "/api/folders/a/settings"),
        ("PUT", "/api/folders/a/ignore"),
        ("DELETE", "/api/folders/a"),
    ];
    for (method, path) in posts {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, HOST)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from("{}"))
            .unwrap();
        assert_eq!(ui.send(req).await.0, StatusCode::UNAUTHORIZED, "{path}");
    }
    let wrong = Ui::get("/api/status").header(header::AUTHORIZATION, "Bearer 0000").body(Body::empty()).unwrap();
    assert_eq!(ui.send(wrong).await.0, StatusCode::UNAUTHORIZED);
    let forged = Ui::get("/api/status").header(header::COOKIE, "filesync_ui_7780=0000").body(Body::empty()).unwrap();
    assert_eq!(ui.send(forged).await.0, StatusCode::UNAUTHORIZED);
    let (status, _, _) = ui.send(ui.bearer(Ui::get("/api/status")).body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn the_secret_is_exchanged_for_an_http_only_strict_cookie() {
    let ui = Ui::new();
    let bad = Request::post("/api/session")
        .header(header::HOST, HOST)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"key":"guess"}"#))
        .unwrap();
    let (status, headers, _) = ui.send(bad).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(headers.get(header::SET_COOKIE).is_none());

    let req = Request::post("/api/session")
        .header(header::HOST, HOST)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(format!(r#"{{"key":"{}"}}"#, ui.secret)))
        .unwrap();
    let (status, headers, _) = ui.send(req).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let set = headers.get(header::SET_COOKIE).unwrap().to_str().unwrap();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/"), "{set}");
    assert!(set.starts_with("filesync_ui_7780="), "named after the port: agents of two homes keep apart: {set}");
    assert!(!set.contains(&ui.secret), "the cookie is derived from the secret, not the secret itself");

    let cookie = ui.cookie().await;
    let (status, _, body) =
        ui.send(Ui::get("/api/session").header(header::COOKIE, &cookie).body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains(r#""authenticated":true"#), "{body}");
    let (status, _, _) =
        ui.send(Ui::get("/api/status").header(header::COOKIE, &cookie).body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_foreign_host_header_is_refused_even_with_the_secret() {
    // DNS rebinding: a page on evil.example whose name now resolves to 127.0.0.1.
    let ui = Ui::new();
    for host in ["evil.example:7780", "127.0.0.1.nip.io:7780", "localhost:80", ""] {
        for path in ["/", "/assets/js/app.js", "/api/status"] {
            let req = ui.bearer(Request::get(path).header(header::HOST, host)).body(Body::empty()).unwrap();
            let (status, headers, _) = ui.send(req).await;
            assert_eq!(status, StatusCode::MISDIRECTED_REQUEST, "{host}{path}");
            assert_eq!(headers.get(header::CONTENT_SECURITY_POLICY).unwrap(), CSP);
        }
    }
    for host in ["127.0.0.1:7780", "localhost:7780", "[::1]:7780"] {
        let req = ui.bearer(Request::get("/api/status").header(header::HOST, host)).body(Body::empty()).unwrap();
        assert_eq!(ui.send(req).await.0, StatusCode::OK, "{host}");
    }
}

#[tokio::test]
async fn requests_from_other_origins_are_refused() {
    // CSRF: a page on another site posting to the UI with the user's cookie.
    let ui = Ui::new();
    let cookie = ui.cookie().await;
    let tmp = tempfile::tempdir().unwrap();
    let body = serde_json::json!({ "path": tmp.path(), "name": "stolen" }).to_string();
    for (name, value) in [
        ("origin", "http://evil.example"),
        ("origin", "null"),
        ("origin", "https://127.0.0.1:7780"),
        ("sec-fetch-site", "cross-site"),
    ] {
        let req = Request::post("/api/folders")
            .header(header::HOST, HOST)
            .header(header::COOKIE, &cookie)
            .header(header::CONTENT_TYPE, "application/json")
            .header(name, value)
            .body(Body::from(body.clone()))
            .unwrap();
        let (status, _, text) = ui.send(req).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{name}: {value}: {text}");
    }
    assert!(ui.home.load().unwrap().folders.is_empty(), "nothing was changed");
    // A form post (no JSON content type) is refused too, even from our own origin.
    let form = Request::post("/api/folders")
        .header(header::HOST, HOST)
        .header(header::COOKIE, &cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("path=/tmp"))
        .unwrap();
    assert_eq!(ui.send(form).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // The page's own requests pass.
    let ok = Request::post("/api/folders")
        .header(header::HOST, HOST)
        .header(header::COOKIE, &cookie)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ORIGIN, format!("http://{HOST}"))
        .header("sec-fetch-site", "same-origin")
        .body(Body::from(body))
        .unwrap();
    let (status, _, text) = ui.send(ok).await;
    assert_eq!(status, StatusCode::CREATED, "{text}");
}

#[tokio::test]
async fn every_response_carries_a_strict_content_security_policy() {
    let ui = Ui::new();
    for path in ["/", "/assets/app.css", "/assets/js/app.js", "/api/status", "/api/session", "/nope"] {
        let (_, headers, _) = ui.send(Ui::get(path).body(Body::empty()).unwrap()).await;
        let csp = headers.get(header::CONTENT_SECURITY_POLICY).unwrap().to_str().unwrap();
        assert_eq!(csp, CSP, "{path}");
        assert_eq!(headers.get(header::X_CONTENT_TYPE_OPTIONS).unwrap(), "nosniff");
        assert_eq!(headers.get(header::X_FRAME_OPTIONS).unwrap(), "DENY");
        assert_eq!(headers.get(header::REFERRER_POLICY).unwrap(), "no-referrer");
    }
    assert!(CSP.contains("script-src 'self'") && CSP.contains("default-src 'none'"));
    assert!(CSP.contains("frame-ancestors 'none'"));
    assert!(!CSP.contains("unsafe-inline") && !CSP.contains("unsafe-eval"));
    let (status, headers, html) = ui.send(Ui::get("/").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers.get(header::CONTENT_TYPE).unwrap().to_str().unwrap().starts_with("text/html"));
    assert!(html.contains(r#"<script type="module" src="/assets/js/app.js">"#));
    assert!(!html.contains("<script>") && !html.contains("style="));
}

#[tokio::test]
async fn the_device_token_and_passwords_never_reach_the_browser() {
    let server = TestServer::start().await;
    let ui = Ui::new();
    let cookie = ui.cookie().await;
    let post = |path: &str, body: serde_json::Value| {
        Request::post(path)
            .header(header::HOST, HOST)
            .header(header::COOKIE, &cookie)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ORIGIN, format!("http://{HOST}"))
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let (status, _, probe) = ui.send(post("/api/setup/probe", serde_json::json!({ "server": server.addr }))).await;
    assert_eq!(status, StatusCode::OK, "{probe}");
    assert!(probe.contains(&server.fingerprint), "the probe shows the fingerprint in full: {probe}");
    let password = "a secret password 42";
    let account = serde_json::json!({
        "server": server.addr, "fingerprint": server.fingerprint, "user": "ann",
        "password": password, "device_name": "laptop", "register": true,
    });
    let (status, _, body) = ui.send(post("/api/setup/account", account)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = ui.home.token().unwrap().expect("logged in");
    let mut seen = vec![body];
    for path in ["/api/status", "/api/folders", "/api/devices", "/api/activity", "/api/session", "/api/server-folders"]
    {
        let (status, _, text) =
            ui.send(Ui::get(path).header(header::COOKIE, &cookie).body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{path}: {text}");
        seen.push(text);
    }
    for text in &seen {
        assert!(!text.contains(&token), "a response contains the device token: {text}");
        assert!(!text.contains(password), "a response contains the password: {text}");
        assert!(!text.contains(&ui.secret), "a response contains the UI secret: {text}");
    }
    // A wrong fingerprint is refused before any credential is sent.
    let wrong = serde_json::json!({
        "server": server.addr, "fingerprint": format!("SHA256:{}", "ab".repeat(32)), "user": "ann",
        "password": password, "device_name": "laptop", "register": false,
    });
    let (status, _, body) = ui.send(post("/api/setup/account", wrong)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.contains(r#""field":"fingerprint""#), "{body}");
}

#[tokio::test]
async fn a_non_loopback_address_requires_a_ui_password() {
    let tmp = tempfile::tempdir().unwrap();
    let home = Home::new(tmp.path().join("home"));
    assert_eq!(listen_address(&home, None).unwrap(), "127.0.0.1:7780".parse::<SocketAddr>().unwrap());
    let err = listen_address(&home, Some("0.0.0.0:7780")).unwrap_err();
    assert!(matches!(err, WebError::PasswordRequired(_)), "{err}");
    assert!(err.to_string().contains("filesync ui --set-password"), "{err}");
    let mut c = home.load().unwrap();
    c.ui.password_hash = Some(hash_password("ui password 1"));
    home.save(&c).unwrap();
    assert_eq!(listen_address(&home, Some("0.0.0.0:7780")).unwrap().port(), 7780);

    // Reachable from the network: the password signs in; a wrong one does not.
    let ui = Ui::bound_to("192.0.2.10:7780", Some("ui password 1"));
    let host = "192.0.2.10:7780";
    let (_, _, info) =
        ui.send(Request::get("/api/session").header(header::HOST, host).body(Body::empty()).unwrap()).await;
    assert!(info.contains(r#""password_required":true"#), "{info}");
    let sign_in = |pw: &str| {
        Request::post("/api/session")
            .header(header::HOST, host)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(serde_json::json!({ "password": pw }).to_string()))
            .unwrap()
    };
    let (status, headers, _) = ui.send(sign_in("wrong password")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(headers.get(header::SET_COOKIE).is_none());
    let (status, headers, _) = ui.send(sign_in("ui password 1")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let cookie = headers.get(header::SET_COOKIE).unwrap().to_str().unwrap().split(';').next().unwrap().to_string();
    let req = Request::get("/api/status").header(header::HOST, host).header(header::COOKIE, cookie).body(Body::empty());
    assert_eq!(ui.send(req.unwrap()).await.0, StatusCode::OK);
    // Loopback names are not accepted for a UI bound to another address.
    let req = ui.bearer(Request::get("/api/status").header(header::HOST, "localhost:7780")).body(Body::empty());
    assert_eq!(ui.send(req.unwrap()).await.0, StatusCode::MISDIRECTED_REQUEST);
}

/// One HTTP/1.1 request over a real socket; returns the status line and the whole response.
async fn raw_http(addr: SocketAddr, request: &str) -> (String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    (text.lines().next().unwrap_or("").to_string(), text)
}

#[tokio::test]
async fn over_real_http_the_ui_listens_on_loopback_and_enforces_the_rules() {
    let tmp = tempfile::tempdir().unwrap();
    let home = Home::new(tmp.path().join("home"));
    let live = LiveStatus::default();
    let ui = filesync_web::start(&home, live, Some("127.0.0.1:0")).unwrap();
    assert!(ui.addr.ip().is_loopback());
    let recorded = std::fs::read_to_string(filesync_web::address_file(&home)).unwrap();
    assert_eq!(recorded.trim(), ui.addr.to_string(), "filesync ui finds the running UI here");
    let secret = Secret::load_or_create(&home).unwrap().expose().to_string();
    let host = ui.addr.to_string();

    let (line, _) =
        raw_http(ui.addr, &format!("GET /api/status HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")).await;
    assert!(line.contains(" 401 "), "{line}");
    let (line, text) = raw_http(
        ui.addr,
        &format!(
            "GET /api/status HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {secret}\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    assert!(line.contains(" 200 "), "{line}");
    assert!(text.to_ascii_lowercase().contains("content-security-policy: default-src 'none'"), "{text}");
    let (line, _) = raw_http(
        ui.addr,
        &format!(
            "GET /api/status HTTP/1.1\r\nHost: rebound.example:{}\r\nAuthorization: Bearer {secret}\r\nConnection: close\r\n\r\n",
            ui.addr.port()
        ),
    )
    .await;
    assert!(line.contains(" 421 "), "{line}");
    let (url, running) = filesync_web::ui_url(&home).unwrap();
    assert!(!running, "no agent holds this home's lock");
    assert!(url.starts_with("http://127.0.0.1:7780/#key="), "{url}");
}

#[tokio::test]
async fn events_stream_the_status_and_new_activity() {
    let ui = Ui::new();
    let req = ui.bearer(Ui::get("/api/events")).body(Body::empty()).unwrap();
    let resp = router(ui.state.clone()).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers().get(header::CONTENT_TYPE).unwrap(), "text/event-stream");
    let mut body = resp.into_body();
    let mut next = async || {
        loop {
            let frame = body.frame().await.unwrap().unwrap();
            if let Ok(data) = frame.into_data() {
                let text = String::from_utf8_lossy(&data).into_owned();
                if !text.starts_with(':') {
                    return text;
                }
            }
        }
    };
    let first = next().await;
    assert!(first.starts_with("event: status\n"), "{first}");
    assert!(first.contains(r#""logged_in":false"#), "{first}");
    ui.state.live.record(filesync_agent::live::ActivityKind::Action, Some("Docs"), "linked /tmp/docs");
    let second = next().await;
    assert!(second.starts_with("event: activity\n") && second.contains("linked /tmp/docs"), "{second}");
}

/// A FileSync server in this process, on 127.0.0.1.
struct TestServer {
    addr: String,
    fingerprint: String,
    _dir: tempfile::TempDir,
    _task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    async fn start() -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut config = filesync_server::ServerConfig::new(dir.path().join("data"));
        config.listen = "127.0.0.1:0".into();
        let s = filesync_server::Server::open(config).await.unwrap();
        let (addr, fingerprint) = (s.local_addr().to_string(), s.fingerprint().to_string());
        TestServer { addr, fingerprint, _dir: dir, _task: tokio::spawn(s.run(std::future::pending())) }
    }
}

/// Regression: the cookie was a fixed function of the installation secret, so a copied
/// cookie worked forever. Now each sign-in is a random session that logging out ends (for
/// every copy of the cookie), and that a new UI password ends too.
#[tokio::test]
async fn logging_out_ends_the_session_for_every_copy_of_its_cookie() {
    let ui = Ui::new();
    let status =
        |cookie: &str| Ui::get("/api/status").header(header::COOKIE, cookie.to_string()).body(Body::empty()).unwrap();
    let (one, two) = (ui.cookie().await, ui.cookie().await);
    assert_ne!(one, two, "every sign-in is its own session");
    let copied = one.clone();
    assert_eq!(ui.send(status(&copied)).await.0, StatusCode::OK);
    let logout = Request::delete("/api/session")
        .header(header::HOST, HOST)
        .header(header::ORIGIN, format!("http://{HOST}"))
        .header(header::COOKIE, &one)
        .body(Body::empty())
        .unwrap();
    let (code, headers, _) = ui.send(logout).await;
    assert_eq!(code, StatusCode::NO_CONTENT);
    assert!(headers.get(header::SET_COOKIE).unwrap().to_str().unwrap().contains("Max-Age=0"));
    assert_eq!(ui.send(status(&copied)).await.0, StatusCode::UNAUTHORIZED, "the copy is dead too");
    assert_eq!(ui.send(status(&two)).await.0, StatusCode::OK, "other sessions live on");

    // Setting a UI password ends every session made before it.
    let mut c = ui.home.load().unwrap();
    c.ui.password_hash = Some(hash_password("a new ui password"));
    ui.home.save(&c).unwrap();
    assert_eq!(ui.send(status(&two)).await.0, StatusCode::UNAUTHORIZED);
}
