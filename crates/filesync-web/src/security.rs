//! What keeps other programs and web pages out of the UI: the per-installation secret and
//! the session cookie derived from it, the UI password for non-loopback binds, the `Host` and
//! `Origin` checks (DNS rebinding, cross-site requests), and the security headers (a strict
//! Content-Security-Policy among them) on every response.
//!
//! Invariant: every `/api/` route but the session exchange requires the secret (as a bearer
//! token) or the cookie; every route, the UI's own files included, requires a known `Host`.

use crate::AppState;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use filesync_agent::config::Home;
use rand::RngCore;
use std::io::{Read, Write};
use std::net::SocketAddr;

/// The session cookie's name for a UI on `port`. Browsers share cookies between the ports of
/// a host, so two agents on one computer (two homes) must not overwrite each other's.
pub fn cookie_name(port: u16) -> String {
    format!("filesync_ui_{port}")
}

/// The Content-Security-Policy of every response: only this origin's own scripts, styles and
/// connections; no inline script or style, no framing, no plugins.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                       connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; \
                       form-action 'self'; frame-ancestors 'none'";

/// The per-installation secret: 32 random bytes, hex, in `ui-secret` in the home (owner-only).
#[derive(Clone)]
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl Secret {
    pub fn path(home: &Home) -> std::path::PathBuf {
        home.dir.join("ui-secret")
    }

    /// Reads the home's secret, creating it (readable by the owner only) on first use.
    pub fn load_or_create(home: &Home) -> std::io::Result<Secret> {
        home.ensure().map_err(std::io::Error::other)?;
        let path = Secret::path(home);
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        match opts.open(&path) {
            Ok(mut f) => {
                let mut b = [0u8; 32];
                rand::rng().fill_bytes(&mut b);
                let s = hex::encode(b);
                f.write_all(s.as_bytes())?;
                f.sync_all()?;
                Ok(Secret(s))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let mut s = String::new();
                std::fs::File::open(&path)?.read_to_string(&mut s)?;
                let s = s.trim().to_string();
                if s.len() < 32 {
                    return Err(std::io::Error::other(format!(
                        "{} is damaged; delete it and restart the agent to make a new one",
                        path.display()
                    )));
                }
                Ok(Secret(s))
            }
            Err(e) => Err(e),
        }
    }

    #[cfg(test)]
    pub fn from_string(s: &str) -> Secret {
        Secret(s.to_string())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Constant-time comparison with what a client presented.
    pub fn matches(&self, presented: &str) -> bool {
        blake3::hash(presented.as_bytes()) == blake3::hash(self.0.as_bytes())
    }

    /// The cookie value: derived from the secret (and the UI password, so changing the
    /// password ends every session), never the secret itself.
    pub fn cookie_value(&self, password_hash: Option<&str>) -> String {
        let key = blake3::derive_key("filesync ui session cookie v1", self.0.as_bytes());
        blake3::keyed_hash(&key, password_hash.unwrap_or("").as_bytes()).to_hex().to_string()
    }
}

/// Hashes a UI password (Argon2id, a PHC string for `[ui] password_hash`).
pub fn hash_password(password: &str) -> String {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).expect("16 bytes is a valid salt");
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("Argon2 defaults cannot fail")
        .to_string()
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| argon2::Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// Which `Host` header values (and so which origins) the UI answers to.
#[derive(Clone, Debug)]
pub struct HostPolicy {
    allowed: Vec<String>,
}

impl HostPolicy {
    /// The bound address itself, the loopback names on the same port when the bind includes
    /// loopback, and the operator's `extra` names.
    pub fn new(bound: SocketAddr, extra: &[String]) -> HostPolicy {
        let port = bound.port();
        let mut allowed = vec![bound.to_string()];
        if bound.ip().is_loopback() || bound.ip().is_unspecified() {
            allowed.extend([format!("127.0.0.1:{port}"), format!("localhost:{port}"), format!("[::1]:{port}")]);
        }
        allowed.extend(extra.iter().map(|h| h.trim().to_ascii_lowercase()));
        allowed.sort();
        allowed.dedup();
        HostPolicy { allowed }
    }

    pub fn allows_host(&self, host: &str) -> bool {
        let host = host.trim().to_ascii_lowercase();
        self.allowed.contains(&host)
    }

    pub fn allows_origin(&self, origin: &str) -> bool {
        origin.strip_prefix("http://").is_some_and(|h| self.allows_host(h))
    }
}

fn refuse(status: StatusCode, code: &str, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message, "code": code }))).into_response()
}

/// Refuses requests for a `Host` that is not the agent's own (DNS rebinding) and requests
/// from other origins (cross-site requests); adds the security headers to every response.
pub async fn guard(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    let mut resp = if !app.hosts.allows_host(host) {
        refuse(
            StatusCode::MISDIRECTED_REQUEST,
            "unknown_host",
            "this FileSync agent answers only to its own address; open the UI with `filesync ui`",
        )
    } else if let Some(origin) = headers.get(header::ORIGIN)
        && !origin.to_str().is_ok_and(|o| app.hosts.allows_origin(o))
    {
        refuse(StatusCode::FORBIDDEN, "cross_origin", "requests from other web sites are refused")
    } else if headers.get("sec-fetch-site").is_some_and(|v| v.as_bytes() == b"cross-site") {
        refuse(StatusCode::FORBIDDEN, "cross_origin", "requests from other web sites are refused")
    } else {
        next.run(req).await
    };
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    h.insert("cross-origin-resource-policy", HeaderValue::from_static("same-origin"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// The value of cookie `name` in the request, if any.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// True when the request carries the secret (`Authorization: Bearer`) or a valid cookie.
pub fn authenticated(app: &AppState, headers: &HeaderMap) -> bool {
    if let Some(bearer) =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "))
    {
        return app.secret.matches(bearer.trim());
    }
    match cookie(headers, &cookie_name(app.bound.port())) {
        Some(c) => {
            let expected = app.secret.cookie_value(app.password_hash().as_deref());
            blake3::hash(c.as_bytes()) == blake3::hash(expected.as_bytes())
        }
        None => false,
    }
}

/// Requires authentication for every `/api/` route but the session exchange.
pub async fn require_auth(State(app): State<AppState>, req: Request, next: Next) -> Response {
    // Inside the `/api` nest the prefix is already stripped.
    let path = req.uri().path();
    let open = matches!(path, "/session" | "/api/session") && matches!(*req.method(), Method::GET | Method::POST);
    if open || authenticated(&app, req.headers()) {
        return next.run(req).await;
    }
    refuse(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "open the UI with `filesync ui` on this computer (or sign in with the UI password)",
    )
}

/// `Set-Cookie` for a new session.
pub fn session_cookie(port: u16, value: &str) -> HeaderValue {
    let name = cookie_name(port);
    HeaderValue::from_str(&format!("{name}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age=31536000"))
        .expect("hex cookie is a valid header")
}

/// `Set-Cookie` that ends the session.
pub fn clear_cookie(port: u16) -> HeaderValue {
    let name = cookie_name(port);
    HeaderValue::from_str(&format!("{name}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")).expect("valid header")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_policy_accepts_own_names_only() {
        let p = HostPolicy::new("127.0.0.1:7780".parse().unwrap(), &[]);
        for ok in ["127.0.0.1:7780", "localhost:7780", "LOCALHOST:7780", "[::1]:7780"] {
            assert!(p.allows_host(ok), "{ok}");
        }
        for bad in ["evil.example:7780", "127.0.0.1:7781", "localhost", "", "127.0.0.1.nip.io:7780"] {
            assert!(!p.allows_host(bad), "{bad}");
        }
        assert!(p.allows_origin("http://localhost:7780"));
        assert!(!p.allows_origin("https://localhost:7780"));
        assert!(!p.allows_origin("http://evil.example"));
        assert!(!p.allows_origin("null"));
        let lan = HostPolicy::new("192.168.1.5:7780".parse().unwrap(), &["NAS.local:7780".into()]);
        assert!(lan.allows_host("192.168.1.5:7780") && lan.allows_host("nas.local:7780"));
        assert!(!lan.allows_host("localhost:7780"));
    }

    #[test]
    fn secret_is_private_stable_and_the_cookie_is_derived() {
        let tmp = tempfile::tempdir().unwrap();
        let home = Home::new(tmp.path().join("h"));
        let a = Secret::load_or_create(&home).unwrap();
        let b = Secret::load_or_create(&home).unwrap();
        assert_eq!(a.expose(), b.expose());
        assert_eq!(a.expose().len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(Secret::path(&home)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(a.matches(b.expose()) && !a.matches("guess"));
        let c = a.cookie_value(None);
        assert_ne!(c, a.expose());
        assert_ne!(c, a.cookie_value(Some("$argon2id$other")));
    }

    #[test]
    fn passwords_hash_and_verify() {
        let h = hash_password("a long password");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("a long password", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("a long password", "not a hash"));
    }
}
