//! A file's content for the page: `/api/file` streams the bytes of a version or of a file on
//! this computer (an image to show, or anything to save as an attachment), and `/api/compare`
//! describes one or two of them for a preview — text beside text with the differences marked,
//! an image, or why there is nothing to show. Both are behind the session like every route.

use super::*;
use crate::preview::{self, Kind, Row};
use axum::body::Body;
use filesync_agent::ops::content::{self, Which};
use futures::StreamExt;

#[derive(Deserialize)]
pub(super) struct FileQuery {
    folder: String,
    path: String,
    /// A version on the server; absent: the file on this computer.
    rev: Option<u64>,
    /// Save it (an attachment) rather than show it: `1` or `true`.
    download: Option<String>,
}

impl FileQuery {
    fn download(&self) -> bool {
        self.download.as_deref().is_some_and(|d| !matches!(d, "" | "0" | "false"))
    }
}

fn which(rev: Option<u64>) -> Which {
    rev.map_or(Which::Local, Which::Version)
}

/// `GET /api/file`: the bytes, streamed; shown inline only if they are an image a page may
/// show and not too big for a preview.
pub(super) async fn file(State(app): State<AppState>, Query(q): Query<FileQuery>) -> Result<Response, ApiError> {
    let folder = folder_named(&app, &q.folder)?;
    let rel = rel_path("path", &q.path)?;
    let c = content::open(&app.home, &folder, &rel, which(q.rev)).await?;
    let name = rel.file_name().to_string();
    let inline = !q.download() && preview::image_type(&name).is_some();
    if inline && c.size > preview::IMAGE_CAP {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("{name} is too large to preview; download it instead"),
        ));
    }
    let body = Body::from_stream(c.body.map(|r| r.map_err(|e| std::io::Error::other(e.to_string()))));
    let headers = [
        (header::CONTENT_TYPE, preview::content_type(&name, inline).to_string()),
        (header::CONTENT_DISPOSITION, preview::disposition(&name, inline)),
        (header::CONTENT_LENGTH, c.size.to_string()),
    ];
    Ok((headers, body).into_response())
}

#[derive(Deserialize)]
pub(super) struct CompareQuery {
    folder: String,
    /// The left side: a path, and a version (absent: the file on this computer).
    a: String,
    a_rev: Option<u64>,
    /// The right side, if any.
    b: Option<String>,
    b_rev: Option<u64>,
}

/// One side of a preview, and its text when it is text.
async fn side(
    app: &AppState,
    folder: &FolderConfig,
    path: &str,
    rev: Option<u64>,
) -> Result<(Value, Option<String>), ApiError> {
    let rel = rel_path("path", path)?;
    let c = content::open(&app.home, folder, &rel, which(rev)).await?;
    let name = rel.file_name().to_string();
    let (size, version) = (c.size, c.version.clone());
    let bytes = if preview::image_type(&name).is_some() { None } else { c.read_capped(preview::TEXT_CAP).await? };
    let kind = preview::kind(&name, size, bytes.as_deref());
    let text = match kind {
        Kind::Text => bytes.map(|b| String::from_utf8(b).expect("kind checked it is UTF-8")),
        _ => None,
    };
    let mut url = format!("/api/file?folder={}&path={}", enc(&folder.name), enc(rel.as_str()));
    if let Some(r) = rev {
        url.push_str(&format!("&rev={r}"));
    }
    let v = json!({
        "path": rel.as_str(), "name": name, "size": size, "kind": kind, "rev": rev,
        "device": version.as_ref().map(|v| v.device_name.clone()),
        "committed_at": version.as_ref().map(|v| v.committed_at),
        "url": url, "download_url": format!("{url}&download=1"),
    });
    Ok((v, text))
}

/// A query-string component, percent-encoded.
fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `GET /api/compare`: one side, or two side by side.
pub(super) async fn compare(State(app): State<AppState>, Query(q): Query<CompareQuery>) -> ApiResult {
    let folder = folder_named(&app, &q.folder)?;
    let (a, a_text) = side(&app, &folder, &q.a, q.a_rev).await?;
    let (b, b_text) = match &q.b {
        Some(p) => {
            let (v, t) = side(&app, &folder, p, q.b_rev).await?;
            (Some(v), t)
        }
        None => (None, None),
    };
    let rows: Option<Vec<Row>> = match (&a_text, &b_text, q.b.is_some()) {
        (Some(x), Some(y), true) => {
            let (x, y) = (x.clone(), y.clone());
            Some(
                tokio::task::spawn_blocking(move || preview::side_by_side(&x, &y))
                    .await
                    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?,
            )
        }
        _ => None,
    };
    // The texts themselves only when no rows carry them.
    let (a_text, b_text) = if rows.is_some() { (None, None) } else { (a_text, b_text) };
    Ok(Json(json!({ "a": a, "a_text": a_text, "b": b, "b_text": b_text, "rows": rows })))
}

#[cfg(test)]
mod tests {
    #[test]
    fn query_components_are_encoded() {
        assert_eq!(super::enc("a b/ü&x=1"), "a%20b%2F%C3%BC%26x%3D1");
    }
}
