//! The agent as a systemd service on Linux: the unit file (`Type=notify`, restarted on
//! failure; [`unit_file`] is pure and tested everywhere), where it goes (a user unit in
//! `~/.config/systemd/user/`, a system unit in `/etc/systemd/system/`), and `systemctl` to
//! load, enable, start, stop and report it. The agent itself is plain `filesync agent`; it
//! says `READY=1` through [`crate::notify_ready`] once it runs.

#[cfg(unix)]
use crate::ServiceStatus;
use crate::{Scope, ServiceError, ServiceSpec};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The unit's file name.
pub const UNIT_NAME: &str = "filesync.service";

/// The unit file for `spec`.
pub fn unit_file(spec: &ServiceSpec) -> String {
    let mut u = String::new();
    u.push_str("# The FileSync agent, written by `filesync service install`; `filesync service uninstall`\n");
    u.push_str("# removes it. The agent tells systemd when it is ready and stops cleanly on SIGTERM.\n");
    u.push_str("[Unit]\n");
    u.push_str("Description=FileSync agent (keeps this computer's folders in sync)\n");
    if spec.scope == Scope::System {
        u.push_str("Wants=network-online.target\n");
        u.push_str("After=network-online.target\n");
    }
    u.push_str("\n[Service]\n");
    u.push_str("Type=notify\n");
    u.push_str("NotifyAccess=main\n");
    let _ = writeln!(
        u,
        "ExecStart={} --home {} agent",
        quote(&spec.exe.to_string_lossy()),
        quote(&spec.home.to_string_lossy())
    );
    u.push_str("Restart=on-failure\n");
    u.push_str("RestartSec=10s\n");
    u.push_str("TimeoutStopSec=30s\n");
    if let (Scope::System, Some(user)) = (spec.scope, &spec.run_as) {
        let _ = writeln!(u, "User={user}");
    }
    u.push_str("\n[Install]\n");
    u.push_str(match spec.scope {
        Scope::User => "WantedBy=default.target\n",
        Scope::System => "WantedBy=multi-user.target\n",
    });
    u
}

/// One `ExecStart=` word: always double-quoted, with `\` and `"` escaped, and `%` and `$`
/// doubled so systemd does not expand specifiers or variables inside a path.
pub fn quote(arg: &str) -> String {
    let mut q = String::with_capacity(arg.len() + 2);
    q.push('"');
    for c in arg.chars() {
        match c {
            '\\' => q.push_str("\\\\"),
            '"' => q.push_str("\\\""),
            '%' => q.push_str("%%"),
            '$' => q.push_str("$$"),
            '\n' => q.push_str("\\n"),
            _ => q.push(c),
        }
    }
    q.push('"');
    q
}

/// Where the unit file of `scope` goes: `$XDG_CONFIG_HOME/systemd/user/` (default
/// `~/.config/systemd/user/`) for a user unit, `/etc/systemd/system/` for a system unit.
pub fn unit_path(scope: Scope) -> Result<PathBuf, ServiceError> {
    match scope {
        Scope::System => Ok(Path::new("/etc/systemd/system").join(UNIT_NAME)),
        Scope::User => {
            let config = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
                Some(dir) => PathBuf::from(dir),
                None => match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
                    Some(home) => PathBuf::from(home).join(".config"),
                    None => {
                        return Err(ServiceError::Unsupported(
                            "neither XDG_CONFIG_HOME nor HOME is set, so there is no place for a systemd user unit"
                                .into(),
                        ));
                    }
                },
            };
            Ok(config.join("systemd").join("user").join(UNIT_NAME))
        }
    }
}

/// The account a system unit runs as when none is named: the user who ran `sudo`, else the
/// current user.
#[cfg(unix)]
pub fn invoking_user() -> Option<String> {
    if let Some(u) = std::env::var("SUDO_USER").ok().filter(|u| !u.is_empty() && u != "root") {
        return Some(u);
    }
    // SAFETY: geteuid cannot fail; getpwuid_r writes into the buffers we own and sets
    // `result` to null or to `pw`.
    unsafe {
        let mut pw: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 4096];
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(libc::geteuid(), &mut pw, buf.as_mut_ptr(), buf.len(), &mut result);
        if rc != 0 || result.is_null() {
            return None;
        }
        std::ffi::CStr::from_ptr(pw.pw_name).to_str().ok().map(str::to_string)
    }
}

/// The home directory of account `name`, from the password database.
#[cfg(unix)]
pub fn account_home(name: &str) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let cname = std::ffi::CString::new(name).ok()?;
    // SAFETY: as in `invoking_user`; the strings are read before the buffer is dropped.
    unsafe {
        let mut pw: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 4096];
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwnam_r(cname.as_ptr(), &mut pw, buf.as_mut_ptr(), buf.len(), &mut result);
        if rc != 0 || result.is_null() {
            return None;
        }
        let dir = std::ffi::CStr::from_ptr(pw.pw_dir).to_bytes();
        Some(PathBuf::from(std::ffi::OsStr::from_bytes(dir)))
    }
}

/// Writes the unit, reloads systemd and enables the unit (it starts at the next login or
/// boot; `filesync service start` starts it now).
#[cfg(unix)]
pub fn install(spec: &ServiceSpec) -> Result<String, ServiceError> {
    let path = unit_path(spec.scope)?;
    if path.exists() {
        return Err(ServiceError::AlreadyInstalled(path.display().to_string()));
    }
    let dir = path.parent().expect("a unit path has a directory");
    std::fs::create_dir_all(dir).map_err(|error| ServiceError::Write { path: dir.to_path_buf(), error })?;
    let tmp = path.with_extension("service.tmp");
    std::fs::write(&tmp, unit_file(spec))
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|error| ServiceError::Write { path: path.clone(), error })?;
    let loaded = systemctl(spec.scope, &["daemon-reload"]).and_then(|_| systemctl(spec.scope, &["enable", UNIT_NAME]));
    if let Err(e) = loaded {
        // Leave nothing half-installed behind.
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    let when = match spec.scope {
        Scope::User => "at every login (for a computer without logins: `loginctl enable-linger`)",
        Scope::System => "at boot",
    };
    Ok(format!(
        "Installed {} (home {}); it starts {when}.\nStart it now with `filesync service start{}`.",
        path.display(),
        spec.home.display(),
        scope_flag(spec.scope)
    ))
}

/// Disables and stops the unit, removes its file and reloads systemd.
#[cfg(unix)]
pub fn uninstall(scope: Scope) -> Result<String, ServiceError> {
    let path = unit_path(scope)?;
    if !path.exists() {
        return Err(ServiceError::NotInstalled);
    }
    systemctl(scope, &["disable", "--now", UNIT_NAME])?;
    std::fs::remove_file(&path).map_err(|error| ServiceError::Remove { path: path.clone(), error })?;
    systemctl(scope, &["daemon-reload"])?;
    Ok(format!("Stopped and removed {}.", path.display()))
}

/// `systemctl start`: returns once the agent said it is ready (`Type=notify`).
#[cfg(unix)]
pub fn start(scope: Scope) -> Result<String, ServiceError> {
    require_installed(scope)?;
    systemctl(scope, &["start", UNIT_NAME])?;
    Ok(format!("Started {UNIT_NAME}; `filesync service status{}` shows how it is doing.", scope_flag(scope)))
}

/// `systemctl stop`: returns once the agent has exited.
#[cfg(unix)]
pub fn stop(scope: Scope) -> Result<String, ServiceError> {
    require_installed(scope)?;
    systemctl(scope, &["stop", UNIT_NAME])?;
    Ok(format!("Stopped {UNIT_NAME}."))
}

/// `systemctl status`, as systemd says it.
#[cfg(unix)]
pub fn status(scope: Scope) -> Result<ServiceStatus, ServiceError> {
    let path = unit_path(scope)?;
    if !path.exists() {
        return Ok(ServiceStatus { installed: false, running: false, report: format!("{UNIT_NAME} is not installed") });
    }
    let args = ["status", UNIT_NAME, "--no-pager", "--lines=20"];
    let out = run_systemctl(scope, &args)?;
    let mut report = String::from_utf8_lossy(&out.stdout).into_owned();
    report.push_str(&String::from_utf8_lossy(&out.stderr));
    // systemctl status: 0 running, 3 not running, 4 unknown unit; anything else is a failure
    // to ask (no systemd, no user manager).
    match out.status.code() {
        Some(0) => Ok(ServiceStatus { installed: true, running: true, report }),
        Some(3) | Some(4) => Ok(ServiceStatus { installed: true, running: false, report }),
        _ => Err(ServiceError::Systemctl {
            command: command_line(scope, &args),
            output: report.trim().to_string(),
            hint: hint(scope),
        }),
    }
}

#[cfg(unix)]
fn require_installed(scope: Scope) -> Result<(), ServiceError> {
    if unit_path(scope)?.exists() { Ok(()) } else { Err(ServiceError::NotInstalled) }
}

#[cfg(unix)]
fn scope_flag(scope: Scope) -> &'static str {
    match scope {
        Scope::User => "",
        Scope::System => " --system",
    }
}

#[cfg(unix)]
fn command_line(scope: Scope, args: &[&str]) -> String {
    let mut c = String::from("systemctl");
    if scope == Scope::User {
        c.push_str(" --user");
    }
    for a in args {
        c.push(' ');
        c.push_str(a);
    }
    c
}

#[cfg(unix)]
fn hint(scope: Scope) -> &'static str {
    match scope {
        Scope::User => {
            "\n(a user unit needs the systemd user manager of a logged-in session: log in through a desktop \
             or ssh, or run `loginctl enable-linger $USER` once)"
        }
        Scope::System => "\n(a system unit needs systemd as the init system and root rights: run it with sudo)",
    }
}

#[cfg(unix)]
#[allow(clippy::disallowed_methods, reason = "installing a service is done by systemctl")]
fn run_systemctl(scope: Scope, args: &[&str]) -> Result<std::process::Output, ServiceError> {
    let mut cmd = std::process::Command::new("systemctl");
    if scope == Scope::User {
        cmd.arg("--user");
    }
    cmd.args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|error| ServiceError::Spawn { command: command_line(scope, args), error })
}

/// Runs systemctl; a non-zero exit is an error carrying what it printed.
#[cfg(unix)]
fn systemctl(scope: Scope, args: &[&str]) -> Result<(), ServiceError> {
    let out = run_systemctl(scope, args)?;
    if out.status.success() {
        return Ok(());
    }
    let mut output = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if output.is_empty() {
        output = format!("{}", out.status);
    }
    Err(ServiceError::Systemctl { command: command_line(scope, args), output, hint: hint(scope) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(scope: Scope) -> ServiceSpec {
        ServiceSpec {
            scope,
            exe: PathBuf::from("/opt/file sync/bin/filesync"),
            home: PathBuf::from("/home/ann/.config/filesync"),
            run_as: Some("ann".into()),
        }
    }

    #[test]
    fn user_unit() {
        let u = unit_file(&spec(Scope::User));
        assert!(u.contains("\nType=notify\n"), "{u}");
        assert!(u.contains("\nRestart=on-failure\n"), "{u}");
        assert!(
            u.contains("\nExecStart=\"/opt/file sync/bin/filesync\" --home \"/home/ann/.config/filesync\" agent\n"),
            "{u}"
        );
        assert!(u.contains("\nWantedBy=default.target\n"), "{u}");
        assert!(!u.contains("User="), "a user unit runs as its user: {u}");
        assert!(!u.contains("network-online"), "the user manager has no network-online.target: {u}");
    }

    #[test]
    fn system_unit() {
        let u = unit_file(&spec(Scope::System));
        assert!(u.contains("\nUser=ann\n"), "{u}");
        assert!(u.contains("\nWantedBy=multi-user.target\n"), "{u}");
        assert!(u.contains("\nAfter=network-online.target\n"), "{u}");
    }

    #[test]
    fn quoting_keeps_paths_literal() {
        assert_eq!(quote("/a b/c"), "\"/a b/c\"");
        assert_eq!(quote(r#"/x"y\z"#), r#""/x\"y\\z""#);
        assert_eq!(quote("/50%/$HOME"), "\"/50%%/$$HOME\"");
    }

    #[cfg(unix)]
    #[test]
    fn unit_paths() {
        assert_eq!(unit_path(Scope::System).unwrap(), Path::new("/etc/systemd/system/filesync.service"));
        assert!(unit_path(Scope::User).unwrap().ends_with("systemd/user/filesync.service"));
    }
}
