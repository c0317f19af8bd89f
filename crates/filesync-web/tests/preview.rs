//! Previews and downloads through the agent's API, on files of a linked folder on this
//! computer: only with the session; pictures served as the few image types a page may show
//! and everything else as an attachment (never as HTML); previews capped in size; text beside
//! text with the differences marked; nothing read through a link out of the folder.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use filesync_agent::config::{Config, FolderConfig, Home};
use filesync_agent::live::LiveStatus;
use filesync_web::preview::{IMAGE_CAP, TEXT_CAP};
use filesync_web::security::Secret;
use filesync_web::{AppState, router};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

const HOST: &str = "127.0.0.1:7780";

/// The agent's API in memory, with one linked folder `Docs` holding a few files.
struct Ui {
    state: AppState,
    secret: String,
    docs: std::path::PathBuf,
    _tmp: tempfile::TempDir,
}

impl Ui {
    fn new() -> Ui {
        let tmp = tempfile::tempdir().unwrap();
        let home = Home::new(tmp.path().join("home"));
        let docs = tmp.path().join("Docs");
        std::fs::create_dir_all(&docs).unwrap();
        let mut config = Config::default();
        config.folders.push(FolderConfig::new("Docs", &docs));
        home.save(&config).unwrap();
        let state = AppState::new(home.clone(), LiveStatus::default(), HOST.parse().unwrap()).unwrap();
        let secret = Secret::load_or_create(&home).unwrap().expose().to_string();
        Ui { state, secret, docs, _tmp: tmp }
    }

    fn write(&self, name: &str, data: impl AsRef<[u8]>) {
        std::fs::write(self.docs.join(name), data).unwrap();
    }

    async fn get_as(&self, path: &str, signed_in: bool) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let mut req = Request::get(path).header(header::HOST, HOST);
        if signed_in {
            req = req.header(header::AUTHORIZATION, format!("Bearer {}", self.secret));
        }
        let resp = router(self.state.clone()).oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
        let (parts, body) = resp.into_parts();
        (parts.status, parts.headers, body.collect().await.unwrap().to_bytes().to_vec())
    }

    async fn get(&self, path: &str) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        self.get_as(path, true).await
    }

    async fn json(&self, path: &str) -> Value {
        let (status, _, body) = self.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap()
    }
}

fn header_of(h: &axum::http::HeaderMap, name: header::HeaderName) -> &str {
    h.get(name).map(|v| v.to_str().unwrap()).unwrap_or("")
}

/// The first bytes of a PNG, enough for the type (the page would fail to draw it, harmlessly).
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

#[tokio::test]
async fn file_bytes_and_previews_need_the_session() {
    let ui = Ui::new();
    ui.write("notes.txt", "hello");
    for path in ["/api/file?folder=Docs&path=notes.txt", "/api/compare?folder=Docs&a=notes.txt"] {
        let (status, _, body) = ui.get_as(path, false).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        assert!(!String::from_utf8_lossy(&body).contains("hello"));
    }
}

#[tokio::test]
async fn a_picture_is_served_as_an_image_and_anything_else_as_an_attachment_never_as_html() {
    let ui = Ui::new();
    ui.write("cat.png", PNG);
    ui.write("page.html", "<script>alert(1)</script>");
    ui.write("drawing.svg", "<svg onload=\"alert(1)\"/>");
    ui.write("notes.txt", "hello\n");

    let (status, h, body) = ui.get("/api/file?folder=Docs&path=cat.png").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, PNG);
    assert_eq!(header_of(&h, header::CONTENT_TYPE), "image/png");
    assert!(header_of(&h, header::CONTENT_DISPOSITION).starts_with("inline;"));
    assert_eq!(header_of(&h, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
    assert!(header_of(&h, header::CONTENT_SECURITY_POLICY).contains("default-src 'none'"));

    for name in ["page.html", "drawing.svg"] {
        let (status, h, _) = ui.get(&format!("/api/file?folder=Docs&path={name}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(header_of(&h, header::CONTENT_TYPE), "application/octet-stream", "{name}");
        assert!(header_of(&h, header::CONTENT_DISPOSITION).starts_with("attachment;"), "{name}");
    }

    let (status, h, body) = ui.get("/api/file?folder=Docs&path=notes.txt&download=true").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, b"hello\n");
    assert_eq!(header_of(&h, header::CONTENT_TYPE), "text/plain; charset=utf-8");
    assert_eq!(
        header_of(&h, header::CONTENT_DISPOSITION),
        "attachment; filename=\"notes.txt\"; filename*=UTF-8''notes.txt"
    );
    assert_eq!(header_of(&h, header::CONTENT_LENGTH), "6");
    let (_, h, _) = ui.get("/api/file?folder=Docs&path=cat.png&download=true").await;
    assert!(header_of(&h, header::CONTENT_DISPOSITION).starts_with("attachment;"), "a download is saved, not shown");
}

#[tokio::test]
async fn previews_are_capped_and_say_why_instead() {
    let ui = Ui::new();
    let big = std::fs::File::create(ui.docs.join("huge.png")).unwrap();
    big.set_len(IMAGE_CAP + 1).unwrap();
    let log = std::fs::File::create(ui.docs.join("big.log")).unwrap();
    log.set_len(TEXT_CAP + 1).unwrap();
    ui.write("data.bin", [0u8, 1, 2, 255]);

    let (status, _, body) = ui.get("/api/file?folder=Docs&path=huge.png").await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(String::from_utf8_lossy(&body).contains("too large to preview"));
    let (status, h, _) = ui.get("/api/file?folder=Docs&path=huge.png&download=true").await;
    assert_eq!((status, header_of(&h, header::CONTENT_LENGTH)), (StatusCode::OK, &*(IMAGE_CAP + 1).to_string()));

    let v = ui.json("/api/compare?folder=Docs&a=huge.png&b=big.log").await;
    assert_eq!((v["a"]["kind"].as_str(), v["b"]["kind"].as_str()), (Some("too_large"), Some("too_large")));
    assert!(v["rows"].is_null() && v["b_text"].is_null(), "nothing of the big text is sent");
    let v = ui.json("/api/compare?folder=Docs&a=data.bin").await;
    assert_eq!(v["a"]["kind"], "binary");
    assert!(v["a_text"].is_null());
}

#[tokio::test]
async fn two_texts_come_as_rows_with_the_differences_marked() {
    let ui = Ui::new();
    ui.write("report.txt", "a\nb\nc\n");
    ui.write("report (conflicted copy from desktop 2026-11-30 101500).txt", "a\nB\nc\nd\n");
    let v = ui
        .json("/api/compare?folder=Docs&a=report.txt&b=report%20(conflicted%20copy%20from%20desktop%202026-11-30%20101500).txt")
        .await;
    let tags: Vec<&str> = v["rows"].as_array().unwrap().iter().map(|r| r["tag"].as_str().unwrap()).collect();
    assert_eq!(tags, vec!["equal", "replace", "equal", "insert"]);
    assert_eq!(v["rows"][1]["left"]["text"], "b");
    assert_eq!(v["rows"][1]["right"]["text"], "B");
    assert_eq!(v["rows"][3]["right"]["n"], 4);
    assert_eq!(v["a"]["kind"], "text");
    assert_eq!(v["b"]["name"], "report (conflicted copy from desktop 2026-11-30 101500).txt");
    assert!(v["b"]["download_url"].as_str().unwrap().ends_with("&download=1"));
    // One text alone comes whole.
    let v = ui.json("/api/compare?folder=Docs&a=report.txt").await;
    assert_eq!(v["a_text"], "a\nb\nc\n");
}

#[cfg(unix)]
#[tokio::test]
async fn nothing_is_read_through_a_link_out_of_the_folder() {
    let ui = Ui::new();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "not in the folder").unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret.txt"), ui.docs.join("link.txt")).unwrap();
    for path in ["/api/file?folder=Docs&path=link.txt", "/api/compare?folder=Docs&a=link.txt"] {
        let (status, _, body) = ui.get(path).await;
        assert_eq!(status, StatusCode::CONFLICT, "{path}");
        assert!(!String::from_utf8_lossy(&body).contains("not in the folder"));
    }
    let (status, _, _) = ui.get("/api/file?folder=Docs&path=..%2F..%2Fetc%2Fpasswd").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "a path out of the folder is no path");
}
