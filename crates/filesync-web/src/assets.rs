//! The UI's files, embedded in the binary at build time (no Node toolchain, nothing to
//! install): one HTML page, one stylesheet, plain ES modules and an icon.

use crate::AppState;
use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// (path under `/assets/`, bytes, content type)
const FILES: &[(&str, &str, &str)] = &[
    ("app.css", include_str!("../ui/app.css"), "text/css; charset=utf-8"),
    ("icon.svg", include_str!("../ui/icon.svg"), "image/svg+xml"),
    // The tab's icon with a dot of the state's colour (syncing, needs a look, failing).
    ("icon-busy.svg", include_str!("../ui/icon-busy.svg"), "image/svg+xml"),
    ("icon-warn.svg", include_str!("../ui/icon-warn.svg"), "image/svg+xml"),
    ("icon-bad.svg", include_str!("../ui/icon-bad.svg"), "image/svg+xml"),
    ("js/app.js", include_str!("../ui/js/app.js"), "text/javascript; charset=utf-8"),
    ("js/api.js", include_str!("../ui/js/api.js"), "text/javascript; charset=utf-8"),
    ("js/dom.js", include_str!("../ui/js/dom.js"), "text/javascript; charset=utf-8"),
    ("js/setup.js", include_str!("../ui/js/setup.js"), "text/javascript; charset=utf-8"),
    ("js/dashboard.js", include_str!("../ui/js/dashboard.js"), "text/javascript; charset=utf-8"),
    ("js/folders.js", include_str!("../ui/js/folders.js"), "text/javascript; charset=utf-8"),
    ("js/settings.js", include_str!("../ui/js/settings.js"), "text/javascript; charset=utf-8"),
    ("js/devices.js", include_str!("../ui/js/devices.js"), "text/javascript; charset=utf-8"),
    ("js/conflicts.js", include_str!("../ui/js/conflicts.js"), "text/javascript; charset=utf-8"),
    ("js/activity.js", include_str!("../ui/js/activity.js"), "text/javascript; charset=utf-8"),
    ("js/account.js", include_str!("../ui/js/account.js"), "text/javascript; charset=utf-8"),
    ("js/history.js", include_str!("../ui/js/history.js"), "text/javascript; charset=utf-8"),
    ("js/preview.js", include_str!("../ui/js/preview.js"), "text/javascript; charset=utf-8"),
];

const INDEX: &str = include_str!("../ui/index.html");

pub fn routes() -> Router<AppState> {
    Router::new().route("/", get(index)).route("/assets/{*path}", get(asset))
}

async fn index() -> Response {
    let mut r = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX).into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

async fn asset(Path(path): Path<String>) -> Response {
    match FILES.iter().find(|(p, _, _)| *p == path) {
        Some((_, body, ctype)) => {
            let mut r = ([(header::CONTENT_TYPE, *ctype)], *body).into_response();
            r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            r
        }
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_page_has_no_inline_script_or_style() {
        let html = super::INDEX;
        assert!(!html.contains("<script>"), "inline scripts break the CSP");
        assert!(!html.contains("style="), "inline styles break the CSP");
        assert!(!html.contains("<style"), "inline styles break the CSP");
        for (p, body, _) in super::FILES {
            if p.ends_with(".js") {
                assert!(!body.contains("innerHTML"), "{p}: build DOM nodes, never HTML strings");
                assert!(!body.contains("eval("), "{p}");
                assert!(!body.contains(".style."), "{p}: inline styles break the CSP; use classes");
            }
        }
    }
}
