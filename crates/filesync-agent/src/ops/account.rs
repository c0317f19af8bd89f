//! Account actions: see a server's certificate before trusting it, register or log in (which
//! pins the certificate and stores the device token), log out, list and revoke devices.

use super::{OpsError, connect};
use crate::config::Home;
use filesync_client::{ClientError, Connection, ErrorCode, Trust};
use serde::Serialize;

/// The port a server listens on unless told otherwise (`filesync server --listen`).
pub const DEFAULT_PORT: u16 = 7443;

/// The server address as `HOST:PORT`, from what a person typed or pasted: `nas.local`,
/// `nas.local:7443`, `https://nas.local:7443/`, `192.168.1.20`, `[::1]:7443` or `::1` (the
/// port defaults to 7443).
pub fn server_address(input: &str) -> Result<String, OpsError> {
    let bad = || {
        OpsError::invalid(
            "server",
            format!(
                "{input:?} is not a server address; enter the server's name or IP address, for example 192.168.1.20 or nas.local:7443"
            ),
        )
    };
    let mut s = input.trim();
    if let Some(i) = s.find("://") {
        s = &s[i + 3..];
    }
    // A pasted URL may carry a path, and a user name before the host.
    let s = s.split(['/', '?', '#']).next().unwrap_or_default();
    let s = s.rsplit_once('@').map_or(s, |(_, host)| host);
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        // [IPv6] or [IPv6]:PORT
        let (inside, after) = rest.split_once(']').ok_or_else(bad)?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(bad)?),
        };
        (format!("[{inside}]"), port)
    } else if s.matches(':').count() > 1 {
        // A bare IPv6 address: no port can be told apart.
        (format!("[{s}]"), None)
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (s.to_string(), None),
        }
    };
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad)?,
    };
    let valid_host = !host.is_empty()
        && host != "[]"
        && host.chars().all(|c| c.is_ascii_alphanumeric() || "-._:[]%".contains(c) || !c.is_ascii());
    if !valid_host {
        return Err(bad());
    }
    Ok(format!("{host}:{port}"))
}

/// Connects to `server` without trusting it yet and returns its certificate fingerprint, for
/// a person to compare with `filesync server fingerprint`. Nothing but the handshake is sent.
pub async fn probe(server: &str) -> Result<String, OpsError> {
    let server = server_address(server)?;
    let conn = Connection::connect(&server, Trust::FirstUse).await?;
    Ok(conn.fingerprint().to_string())
}

/// A registration or login.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub server: String,
    /// The certificate fingerprint the person confirmed (`SHA256:…`). `None`: the one already
    /// pinned for this server.
    pub fingerprint: Option<String>,
    pub user: String,
    pub password: String,
    pub device_name: String,
    /// Create the account first.
    pub register: bool,
    /// With `register`: the invite code a server that registers by invite asks for.
    pub invite: Option<String>,
}

/// The session a login produced (never the token).
#[derive(Clone, Debug, Serialize)]
pub struct LoggedIn {
    pub user: String,
    pub server: String,
    pub device_id: u64,
    pub device_name: String,
    /// The server this computer used before, when it changed.
    pub switched_from: Option<String>,
}

/// Registers (when asked) and logs this computer in: pins the certificate, saves the account
/// in `config.toml` and the device token in the owner-only `token` file.
pub async fn log_in(home: &Home, c: &Credentials) -> Result<LoggedIn, OpsError> {
    let server = server_address(&c.server)?;
    let user = normalize_name(&c.user, "user name", "user")?;
    if c.register {
        filesync_core::names::check_new_user_name(&user)
            .map_err(|e| OpsError::invalid("user", format!("a user name {e}")))?;
    }
    check_password(&c.password, c.register, "password")?;
    let device_name = normalize_name(&c.device_name, "name for this computer", "device_name")?;
    let device_name = device_name.as_str();
    let mut config = home.load()?;
    let fingerprint = match &c.fingerprint {
        Some(fp) => filesync_proto::parse_fingerprint(fp).ok_or_else(|| {
            OpsError::invalid(
                "fingerprint",
                format!("{fp:?} is not a certificate fingerprint; it looks like SHA256: followed by 64 hex digits"),
            )
        })?,
        None => match (&config.server, &config.fingerprint) {
            (Some(s), Some(fp)) if *s == server => fp.clone(),
            _ => {
                return Err(OpsError::invalid(
                    "fingerprint",
                    format!(
                        "the certificate of {server} is not pinned yet: confirm its fingerprint \
                         (`filesync server fingerprint` on the server prints it)"
                    ),
                ));
            }
        },
    };
    let conn = Connection::connect(&server, Trust::Pinned(fingerprint)).await?;
    let user = user.as_str();
    // The device this computer was, when it logs in again to the same account: a revoked one
    // is given a new token on the server instead of a second row under the same name.
    let replaces = config
        .device_id
        .filter(|_| config.server.as_deref() == Some(server.as_str()) && config.user.as_deref() == Some(user))
        .unwrap_or(0);
    let session = if c.register {
        let invite = c.invite.as_deref().map(str::trim).unwrap_or("");
        conn.register_with_invite(user, &c.password, device_name, invite).await
    } else {
        conn.login_replacing(user, &c.password, device_name, replaces).await
    };
    let session = session.map_err(|e| match e.code() {
        Some(ErrorCode::BadCredentials) => OpsError::invalid("password", "the user name or password is wrong"),
        Some(ErrorCode::UserExists) => {
            OpsError::invalid("user", format!("the user {user:?} already exists; log in instead, or pick another name"))
        }
        Some(ErrorCode::RegistrationClosed) => match &e {
            // A server that takes new accounts by invite says so; the code goes in that field.
            ClientError::Server { message, .. } if message.contains("invite") => {
                OpsError::invalid("invite", message.clone())
            }
            _ => OpsError::invalid(
                "user",
                "this server does not accept new accounts; ask its operator, or log in to an existing account",
            ),
        },
        Some(ErrorCode::InviteInvalid) => OpsError::invalid(
            "invite",
            "the invite code is unknown, already used or expired; ask the server's operator for a new one",
        ),
        Some(ErrorCode::AccountDisabled) => {
            OpsError::invalid("user", "this account is disabled by the server's operator; ask them to enable it again")
        }
        Some(ErrorCode::BadRequest) => match &e {
            ClientError::Server { message, .. } => OpsError::invalid("user", message.clone()),
            _ => e.into(),
        },
        _ => e.into(),
    })?;
    let switched_from = config.server.clone().filter(|s| *s != server);
    config.server = Some(server.clone());
    config.fingerprint = Some(conn.fingerprint().to_string());
    config.user = Some(session.user.clone());
    config.device_name = Some(session.device_name.clone());
    config.device_id = Some(session.device_id);
    // The token first: an agent waiting for a login starts once the configuration says so.
    home.set_token(&session.token)?;
    home.save(&config)?;
    Ok(LoggedIn {
        user: session.user,
        server,
        device_id: session.device_id,
        device_name: session.device_name,
        switched_from,
    })
}

/// "Log in again": a computer the server no longer accepts (its device was revoked, or logged
/// out from elsewhere) logs in with only the password. The server address, the pinned
/// certificate, the user, the computer's name and its folder links stay; on the server the
/// revoked device gets a new token, so the device list keeps one row for this computer.
/// Refused while the server still accepts this computer.
pub async fn log_in_again(home: &Home, password: &str) -> Result<LoggedIn, OpsError> {
    check_password(password, false, "password")?;
    let config = home.load()?;
    let (Some(server), Some(user)) = (config.server.clone(), config.user.clone()) else {
        return Err(OpsError::NotLoggedIn);
    };
    if home.token()?.is_some() {
        match connect(home).await {
            Ok(_) => {
                return Err(OpsError::Refused(
                    "the server still accepts this computer; there is no need to log in again".into(),
                ));
            }
            Err(OpsError::Sync(crate::engine::SyncError::Client(e)) | OpsError::Client(e))
                if e.code() == Some(ErrorCode::InvalidToken) => {}
            Err(e) => return Err(e),
        }
    }
    let credentials = Credentials {
        server,
        fingerprint: None,
        user,
        password: password.to_string(),
        device_name: config.device_name.clone().unwrap_or_else(default_device_name),
        register: false,
        invite: None,
    };
    log_in(home, &credentials).await.map_err(|e| match e {
        // Only the password was asked for.
        OpsError::Invalid { field: "password", .. } => OpsError::invalid("password", "the password is wrong"),
        e => e,
    })
}

/// What `log_out` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoggedOut {
    NotLoggedIn,
    Revoked,
    /// `force`: the server could not be reached; the token was forgotten here only.
    ForgottenOnly(String),
}

/// Revokes this computer's token on the server and forgets it here (a token the server already
/// refuses is just forgotten). With `force`, forgets it even when the server cannot be reached.
pub async fn log_out(home: &Home, force: bool) -> Result<LoggedOut, OpsError> {
    if home.token()?.is_none() {
        return Ok(LoggedOut::NotLoggedIn);
    }
    let outcome = match connect(home).await {
        Ok((_, conn)) => {
            conn.logout().await?;
            LoggedOut::Revoked
        }
        // Revoked already (from another computer): there is nothing left to revoke.
        Err(OpsError::Sync(crate::engine::SyncError::Client(e)) | OpsError::Client(e))
            if e.code() == Some(ErrorCode::InvalidToken) =>
        {
            LoggedOut::Revoked
        }
        Err(e) if force => LoggedOut::ForgottenOnly(e.to_string()),
        Err(e) => {
            return Err(OpsError::Refused(format!(
                "could not revoke this device's token on the server ({e}); nothing was changed. \
                 Log out anyway to forget the token on this computer only (`filesync logout --force`)"
            )));
        }
    };
    home.clear_token()?;
    let mut config = home.load()?;
    config.device_id = None;
    home.save(&config)?;
    Ok(outcome)
}

/// One of this user's computers.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Device {
    pub id: u64,
    pub name: String,
    pub created_at: i64,
    /// Unix seconds of the last connection; 0 if never.
    pub last_seen: i64,
    pub revoked: bool,
    /// This computer.
    pub current: bool,
}

pub async fn list_devices(home: &Home) -> Result<Vec<Device>, OpsError> {
    let (_, conn) = connect(home).await?;
    Ok(conn
        .list_devices()
        .await?
        .into_iter()
        .map(|d| Device {
            id: d.id,
            name: d.name,
            created_at: d.created_at,
            last_seen: d.last_seen,
            revoked: d.revoked,
            current: d.current,
        })
        .collect())
}

/// A name a person typed (user, device, folder) as the server keeps it: trimmed, in Unicode
/// NFC (so that `Café` typed two ways is one name), 1 to `MAX_NAME_LEN` bytes, no control
/// characters — the rule of `filesync_core::names`, which the server enforces too. `what`
/// words the error ("user name", …) and `field` names the form field.
pub fn normalize_name(raw: &str, what: &str, field: &'static str) -> Result<String, OpsError> {
    use filesync_core::names::NameError;
    filesync_core::names::normalize_name(raw).map_err(|e| {
        let max = filesync_core::names::MAX_NAME_BYTES;
        OpsError::invalid(
            field,
            match e {
                NameError::Empty => format!("enter a {what}"),
                NameError::TooLong(n) => format!("a {what} is at most {max} bytes; this one is {n}"),
                NameError::Control => format!("a {what} cannot contain control characters"),
                NameError::UserAlphabet => format!("a {what} {e}"),
            },
        )
    })
}

/// Checks a password against the protocol's limits before it is sent (a longer one would
/// only break the connection): at most `MAX_PASSWORD_LEN` bytes, and a new one at least 8
/// characters.
pub fn check_password(password: &str, new: bool, field: &'static str) -> Result<(), OpsError> {
    let max = filesync_proto::limits::MAX_PASSWORD_LEN;
    if password.is_empty() {
        return Err(OpsError::invalid(field, "enter the password"));
    }
    if password.len() > max {
        return Err(OpsError::invalid(
            field,
            format!("a password is at most {max} bytes; this one is {}", password.len()),
        ));
    }
    if new && password.chars().count() < 8 {
        return Err(OpsError::invalid(field, "choose a password of at least 8 characters"));
    }
    Ok(())
}

/// Revokes a device: its token stops working at once and its connection is closed.
pub async fn revoke_device(home: &Home, id: u64) -> Result<(), OpsError> {
    let (_, conn) = connect(home).await?;
    conn.revoke_device(id).await.map_err(|e| match e.code() {
        Some(ErrorCode::NotFound | ErrorCode::Forbidden) => {
            OpsError::NotFound(format!("no device {id} in this account; see the device list"))
        }
        _ => e.into(),
    })
}

/// Removes a revoked device from the account's device list. A device still in use is refused
/// (revoke it first), and so is this computer.
pub async fn remove_device(home: &Home, id: u64) -> Result<(), OpsError> {
    let (config, conn) = connect(home).await?;
    let not_found = || OpsError::NotFound(format!("no device {id} in this account; see the device list"));
    let devices = conn.list_devices().await?;
    let device = devices.iter().find(|d| d.id == id).ok_or_else(not_found)?;
    if device.current || config.device_id == Some(id) {
        return Err(OpsError::Refused("this is the computer you are using; log out instead".into()));
    }
    if !device.revoked {
        return Err(OpsError::Refused(format!(
            "{:?} is not revoked; revoke it first (it stops syncing), then remove it",
            device.name
        )));
    }
    conn.remove_device(id).await.map_err(|e| match e.code() {
        Some(ErrorCode::NotFound | ErrorCode::Forbidden) => not_found(),
        _ => e.into(),
    })?;
    // A server older than removal only revokes, and the device stays listed.
    if conn.list_devices().await?.iter().any(|d| d.id == id) {
        return Err(OpsError::Refused(
            "this server keeps revoked devices in the list; update the server to remove them".into(),
        ));
    }
    Ok(())
}

/// Renames one of this user's computers. Renaming this computer also updates its name here
/// (the name that conflict copies made here carry).
pub async fn rename_device(home: &Home, id: u64, name: &str) -> Result<String, OpsError> {
    let name = normalize_name(name, "device name", "name")?;
    let name = name.as_str();
    let (mut config, conn) = connect(home).await?;
    conn.rename_device(id, name).await.map_err(|e| match e.code() {
        Some(ErrorCode::NotFound | ErrorCode::Forbidden) => {
            OpsError::NotFound(format!("no device {id} in this account; see the device list"))
        }
        Some(ErrorCode::BadRequest) => OpsError::invalid("name", e.to_string()),
        _ => e.into(),
    })?;
    if config.device_id == Some(id) {
        config.device_name = Some(name.to_string());
        home.save(&config)?;
    }
    Ok(name.to_string())
}

/// Changes this account's password on the server; every computer stays logged in.
pub async fn change_password(
    home: &Home,
    current: &str,
    new: &str,
    log_out_other_devices: bool,
) -> Result<PasswordChanged, OpsError> {
    check_password(current, false, "current_password")?;
    check_password(new, true, "new_password")?;
    if new == current {
        return Err(OpsError::invalid("new_password", "the new password is the same as the current one"));
    }
    let (_, conn) = connect(home).await?;
    conn.change_password_with(current, new, log_out_other_devices).await.map_err(|e| match e.code() {
        Some(ErrorCode::BadCredentials) => OpsError::invalid("current_password", "the current password is wrong"),
        Some(ErrorCode::BadRequest) => OpsError::invalid("new_password", e.to_string()),
        _ => e.into(),
    })?;
    Ok(PasswordChanged { logged_out_others: log_out_other_devices })
}

/// What `change_password` did.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct PasswordChanged {
    /// Every other device of the account was logged out (this one stays).
    pub logged_out_others: bool,
}

/// The name this computer suggests for itself: the host name.
pub fn default_device_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|s| s.trim().to_string()))
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "my computer".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses_are_taken_as_people_paste_them() {
        for (typed, meant) in [
            ("127.0.0.1:7443", "127.0.0.1:7443"),
            ("nas.local:8000", "nas.local:8000"),
            ("nas.local", "nas.local:7443"),
            ("  192.168.1.20 ", "192.168.1.20:7443"),
            ("https://nas.local:7443", "nas.local:7443"),
            ("https://nas.local:7443/", "nas.local:7443"),
            ("HTTPS://nas.local/some/page?x=1", "nas.local:7443"),
            ("filesync://ann@nas.local:9000", "nas.local:9000"),
            ("[::1]:7443", "[::1]:7443"),
            ("[::1]", "[::1]:7443"),
            ("::1", "[::1]:7443"),
            ("fe80::1%eth0", "[fe80::1%eth0]:7443"),
        ] {
            assert_eq!(server_address(typed).unwrap(), meant, "{typed}");
        }
        for bad in ["", "   ", ":7443", "nas:0", "nas:port", "nas:70000", "https://", "[::1", "na s", "[]:7443"] {
            assert!(matches!(server_address(bad), Err(OpsError::Invalid { field: "server", .. })), "{bad}");
        }
    }

    #[test]
    fn names_are_normalized_and_checked_before_they_are_sent() {
        // Regression: a device name not in NFC crashed the agent at its first conflict.
        assert_eq!(normalize_name("  Cafe\u{301} ", "device name", "name").unwrap(), "Caf\u{e9}");
        for (bad, says) in [("", "enter a"), ("   ", "enter a"), ("a\tb", "control"), (&"x".repeat(129), "at most 128")]
        {
            let e = normalize_name(bad, "user name", "user").unwrap_err();
            assert!(
                matches!(e, OpsError::Invalid { field: "user", .. }) && e.to_string().contains(says),
                "{bad:?}: {e}"
            );
        }
        assert!(normalize_name(&"é".repeat(64), "user name", "user").is_ok(), "128 bytes");
    }

    #[test]
    fn passwords_over_the_limit_are_refused_with_the_limit() {
        // Regression: a password over the limit used to give "connection to the server lost".
        let e = check_password(&"p".repeat(100_000), false, "password").unwrap_err();
        assert!(e.to_string().contains("at most 1024 bytes"), "{e}");
        assert!(check_password(&"p".repeat(1024), true, "password").is_ok());
        assert!(check_password("short", true, "new_password").unwrap_err().to_string().contains("at least 8"));
        assert!(check_password("short", false, "password").is_ok(), "an old password is whatever it is");
    }
}
