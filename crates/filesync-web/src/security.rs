//! What keeps other programs and web pages out of the UI: the per-installation secret, the
//! revocable sessions it (or the UI password) is exchanged for, the UI password for non-loopback binds, the `Host` and
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
}

/// How long a UI session lasts at most.
pub const SESSION_LIFETIME: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);
/// The most sessions kept; the oldest go first.
const MAX_SESSIONS: usize = 64;

/// The UI's sessions: a random id per sign-in, given to the browser as its cookie and kept
/// here only as a hash, with its expiry and a tag of the UI password it was made under. A
/// session ends when it expires, when its browser logs out, and — all of them — when the UI
/// password changes. They are kept in `ui-sessions` in the home (owner-only), so that an open
/// tab survives a restart of the agent.
pub struct Sessions {
    path: std::path::PathBuf,
    /// A std mutex: a lookup or an insert, never held across an await.
    by_hash: std::sync::Mutex<std::collections::HashMap<String, SessionRecord>>,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct SessionRecord {
    /// Unix seconds.
    expires: i64,
    /// Which UI password the session was made under (see [`password_tag`]).
    password: String,
}

fn unix_now() -> i64 {
    filesync_core::clock::Clock::now_unix(&filesync_core::clock::SystemClock)
}

fn session_hash(id: &str) -> String {
    blake3::hash(id.as_bytes()).to_hex().to_string()
}

/// A tag of the UI password's hash (none: no password): a session made under another
/// password is no longer valid.
fn password_tag(password_hash: Option<&str>) -> String {
    blake3::derive_key("filesync ui session password v1", password_hash.unwrap_or("").as_bytes())[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Sessions {
    pub fn path(home: &Home) -> std::path::PathBuf {
        home.dir.join("ui-sessions")
    }

    /// The home's sessions (none if the file is missing or unreadable: everyone signs in again).
    pub fn load(home: &Home) -> Sessions {
        let path = Sessions::path(home);
        let by_hash = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        Sessions { path, by_hash: std::sync::Mutex::new(by_hash) }
    }

    /// Starts a session under the current UI password; returns the cookie value.
    pub fn start(&self, password_hash: Option<&str>) -> String {
        let mut b = [0u8; 32];
        rand::rng().fill_bytes(&mut b);
        let id = hex::encode(b);
        let record = SessionRecord {
            expires: unix_now() + SESSION_LIFETIME.as_secs() as i64,
            password: password_tag(password_hash),
        };
        let mut map = self.by_hash.lock().expect("sessions lock");
        let now = unix_now();
        map.retain(|_, r| r.expires > now);
        while map.len() >= MAX_SESSIONS {
            let oldest = map.iter().min_by_key(|(_, r)| r.expires).map(|(k, _)| k.clone()).expect("not empty");
            map.remove(&oldest);
        }
        map.insert(session_hash(&id), record);
        self.save(&map);
        id
    }

    /// Whether `cookie` is a live session made under the current UI password.
    pub fn valid(&self, cookie: &str, password_hash: Option<&str>) -> bool {
        let map = self.by_hash.lock().expect("sessions lock");
        map.get(&session_hash(cookie))
            .is_some_and(|r| r.expires > unix_now() && r.password == password_tag(password_hash))
    }

    /// Ends the session of `cookie` (logging out).
    pub fn end(&self, cookie: &str) {
        let mut map = self.by_hash.lock().expect("sessions lock");
        if map.remove(&session_hash(cookie)).is_some() {
            self.save(&map);
        }
    }

    fn save(&self, map: &std::collections::HashMap<String, SessionRecord>) {
        let json = serde_json::to_vec(map).expect("sessions serialize");
        if let Err(e) = filesync_agent::config::write_atomic(&self.path, &json, true) {
            tracing::warn!("UI sessions not saved (they end when the agent stops): {e}");
        }
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
            "this FileSync agent answers only to its own address; run filesync ui on this computer to open it",
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
        Some(c) => app.sessions.valid(c, app.password_hash().as_deref()),
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
        "run filesync ui on this computer to open the UI (or sign in with the UI password)",
    )
}

/// `Set-Cookie` for a new session.
pub fn session_cookie(port: u16, value: &str) -> HeaderValue {
    let name = cookie_name(port);
    let max_age = SESSION_LIFETIME.as_secs();
    HeaderValue::from_str(&format!("{name}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}"))
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
    fn secret_is_private_and_stable() {
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
    }

    #[test]
    fn sessions_are_random_revocable_tied_to_the_password_and_kept_across_restarts() {
        let tmp = tempfile::tempdir().unwrap();
        let home = Home::new(tmp.path().join("h"));
        home.ensure().unwrap();
        let s = Sessions::load(&home);
        let (one, two) = (s.start(None), s.start(None));
        assert_ne!(one, two);
        assert!(s.valid(&one, None) && s.valid(&two, None) && !s.valid("guess", None));
        // The file holds hashes, not the cookies.
        let file = std::fs::read_to_string(Sessions::path(&home)).unwrap();
        assert!(!file.contains(&one), "{file}");
        // A restart keeps them; logging out ends one; a new UI password ends all.
        let s = Sessions::load(&home);
        assert!(s.valid(&one, None));
        s.end(&one);
        assert!(!s.valid(&one, None) && s.valid(&two, None));
        assert!(!Sessions::load(&home).valid(&one, None), "the logout is saved");
        assert!(!s.valid(&two, Some("$argon2id$new")));
        // An expired one is refused.
        s.by_hash.lock().unwrap().values_mut().for_each(|r| r.expires = unix_now() - 1);
        assert!(!s.valid(&two, None));
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
