//! Errors and messages as a person reads them: one plain sentence that says what happened and
//! one thing to do — never a library's or the system's raw text ("Connection refused (os error
//! 111)", a database driver's message), and in the web UI never command-line syntax: a
//! command in backticks becomes the button or screen that does the same.
//!
//! The CLI prints an [`OpsError`] through [`error_message`] with [`Audience::Cli`]; the web API
//! with [`Audience::Ui`], and it passes the agent's own texts (folder errors, activity entries,
//! what a setting change did) through [`for_ui`]. The raw text stays available for logs
//! through `std::error::Error::source`. Pure: strings in, strings out.

use super::OpsError;
use crate::agent::AgentError;
use crate::config::ConfigError;
use crate::engine::{SyncError, describe_io};
use crate::state::StateError;

/// Who reads the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Audience {
    /// A terminal: naming a command is the shortest way to say what to do.
    Cli,
    /// The web UI: it names its own buttons and screens instead.
    Ui,
}

/// The error as one plain sentence and what to do, for `to`.
pub fn error_message(e: &OpsError, to: Audience) -> String {
    let text = match e {
        OpsError::Invalid { message, .. } | OpsError::NotFound(message) | OpsError::Refused(message) => message.clone(),
        OpsError::NotLoggedIn if to == Audience::Ui => {
            return "this computer is not logged in; log in on the welcome screen first".into();
        }
        OpsError::NotLoggedIn => e.to_string(),
        OpsError::Client(c) => c.to_string(),
        OpsError::Config(c) => config(c),
        OpsError::State(s) => state(s),
        OpsError::Sync(s) => sync(s),
        OpsError::Agent(a) => agent(a),
        OpsError::Io { what, path, source } => format!("{what} {}: {}", path.display(), describe_io(source)),
    };
    match to {
        Audience::Cli => text,
        Audience::Ui => for_ui(&text),
    }
}

fn config(e: &ConfigError) -> String {
    match e {
        ConfigError::Read { path, source } => format!("cannot read {}: {}", path.display(), describe_io(source)),
        ConfigError::Write { path, source } => {
            format!("cannot save {}: {}", path.display(), describe_io(source))
        }
        ConfigError::Parse { .. } => format!("{e}; correct the file, or move it away to start over"),
    }
}

fn state(e: &StateError) -> String {
    match e {
        StateError::Open { path, .. } => format!(
            "this computer's sync database {} could not be opened; check that the disk has free space and that the \
             file belongs to you, then restart FileSync",
            path.display()
        ),
        StateError::TooNew { .. } => e.to_string(),
        StateError::Db { .. } => "this computer's sync database could not be read or written; check that the disk \
                                  has free space, then restart FileSync"
            .into(),
        StateError::Corrupt { folder, path, .. } => format!(
            "this computer's sync database holds a damaged entry for {path} in {folder}; move the state database away \
             and restart FileSync to rebuild it from the server"
        ),
    }
}

fn sync(e: &SyncError) -> String {
    match e {
        SyncError::Client(c) => c.to_string(),
        SyncError::State(s) => state(s),
        SyncError::Protocol(_) => filesync_client::ClientError::Protocol(String::new()).to_string(),
        SyncError::FolderMissing { .. } | SyncError::Scan { .. } | SyncError::Internal(_) => e.to_string(),
    }
}

fn agent(e: &AgentError) -> String {
    match e {
        AgentError::Config(c) => config(c),
        AgentError::State(s) => state(s),
        AgentError::Lock { path, source } => format!("cannot create the lock file {path}: {}", describe_io(source)),
        AgentError::AlreadyRunning(_) | AgentError::NotLoggedIn => e.to_string(),
    }
}

/// What the UI says instead of a command in backticks: the button or screen that does it.
const COMMANDS: &[(&str, &str)] = &[
    ("filesync folder revert", "Revert on the folder's page"),
    ("filesync folder remove", "Unlink on the folder's page"),
    ("filesync folder list", "the dashboard"),
    ("filesync logout --force", "Log out anyway"),
    ("filesync login", "Log in"),
    ("filesync history", "the History screen"),
    ("filesync restore", "Restore on the History screen"),
    ("filesync conflicts", "the Conflicts screen"),
    ("filesync sync", "Sync now"),
    ("filesync resume", "Resume"),
    ("filesync pause", "Pause"),
    ("filesync confirm-deletes", "Confirm the deletions"),
];

/// The names of settings as the UI's forms label them.
const SETTINGS: &[(&str, &str)] = &[
    ("direction: ", "Direction: "),
    ("schedule: ", "Schedule: "),
    ("rescan: ", "Full rescan: "),
    ("upload-limit: ", "Upload limit: "),
    ("download-limit: ", "Download limit: "),
    ("guard-percent: ", "Deletion guard: "),
    ("guard-min-files: ", "Deletion guard: "),
];

/// A message written for the terminal, in the UI's words: each command in backticks becomes
/// the button or screen that does the same (other backticked words lose their backticks), a
/// setting's key its label, and a rate such as `25M/s` reads `25 MB/s`.
pub fn for_ui(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('`') {
        let Some(len) = rest[start + 1..].find('`') else { break };
        out.push_str(&rest[..start]);
        let code = &rest[start + 1..start + 1 + len];
        match COMMANDS.iter().find(|(cmd, _)| code == *cmd || code.starts_with(&format!("{cmd} "))) {
            Some((_, ui)) => out.push_str(ui),
            None => out.push_str(code),
        }
        rest = &rest[start + 2 + len..];
    }
    out.push_str(rest);
    if let Some((key, label)) = SETTINGS.iter().find(|(key, _)| out.starts_with(key)) {
        out = format!("{label}{}", &out[key.len()..]);
    }
    rates(&out)
}

/// `25M/s` → `25 MB/s` (and k, G); anything else is left as it is.
fn rates(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut digits = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            'k' => Some("KB"),
            'M' => Some("MB"),
            'G' => Some("GB"),
            _ => None,
        };
        match unit {
            Some(unit) if !digits.is_empty() && chars.peek() == Some(&'/') => {
                out.push_str(&digits);
                out.push(' ');
                out.push_str(unit);
            }
            _ => {
                out.push_str(&digits);
                out.push(c);
            }
        }
        digits.clear();
    }
    out.push_str(&digits);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Error, ErrorKind};
    use std::path::PathBuf;

    /// Words that mean raw library, system or command-line text reached a person.
    const RAW: &[&str] = &["os error", "https://", "docs.rs", "close_notify", "sqlx", "(code:", "`", "Custom {"];

    fn io(kind: ErrorKind) -> Error {
        Error::new(kind, "raw system text (os error 13)")
    }

    /// Every kind of error the agent's actions return, each with the plain sentence it must
    /// become and a word of what to do.
    fn cases() -> Vec<(OpsError, &'static str, &'static str)> {
        let path = PathBuf::from("/home/ann/.config/filesync/config.toml");
        let db_error = || sqlx::Error::Protocol("raw driver text from sqlx".into());
        vec![
            (OpsError::invalid("password", "the user name or password is wrong"), "password is wrong", ""),
            (OpsError::NotLoggedIn, "not logged in", "log in"),
            (OpsError::NotFound("no device 7 in this account; see the device list".into()), "no device 7", "see"),
            (
                OpsError::Refused(
                    "could not revoke this device's token on the server; Log out anyway to forget the token on this \
                     computer only (`filesync logout --force`)"
                        .into(),
                ),
                "could not revoke",
                "Log out anyway",
            ),
            (
                OpsError::Client(filesync_client::ClientError::Connect {
                    addr: "nas:7443".into(),
                    cause: Error::new(ErrorKind::ConnectionRefused, "Connection refused (os error 111)"),
                }),
                "nothing answers on that port",
                "check that the FileSync server is running",
            ),
            (
                OpsError::Client(filesync_client::ClientError::Disconnected(
                    "peer closed connection without sending TLS close_notify: https://docs.rs/rustls/latest".into(),
                )),
                "the connection to the server was lost",
                "check that the server",
            ),
            (
                OpsError::Client(filesync_client::ClientError::Tls {
                    addr: "nas:80".into(),
                    reason: "received corrupt message of type InvalidContentType".into(),
                }),
                "did not answer as a FileSync server",
                "check the address",
            ),
            (
                OpsError::Client(filesync_client::ClientError::Connect {
                    addr: "nas.lan:7443".into(),
                    cause: Error::other("failed to lookup address information: Name or service not known"),
                }),
                "its name could not be found",
                "check the spelling",
            ),
            (
                OpsError::Config(ConfigError::Read { path: path.clone(), source: io(ErrorKind::PermissionDenied) }),
                "cannot read /home/ann/.config/filesync/config.toml",
                "check the permissions",
            ),
            (
                OpsError::Config(ConfigError::Write { path: path.clone(), source: io(ErrorKind::StorageFull) }),
                "cannot save",
                "free some space",
            ),
            (
                OpsError::Config(ConfigError::Parse { path: path.clone(), reason: "expected `=` at line 3".into() }),
                "is not valid",
                "correct the file",
            ),
            (
                OpsError::State(StateError::Open { path: path.clone(), source: Box::new(db_error()) }),
                "sync database",
                "restart FileSync",
            ),
            (
                OpsError::State(StateError::Db { context: "read bases".into(), source: db_error() }),
                "could not be read or written",
                "restart FileSync",
            ),
            (
                OpsError::State(StateError::Corrupt {
                    folder: "Docs".into(),
                    path: "a.txt".into(),
                    detail: "raw driver text from sqlx".into(),
                }),
                "damaged entry for a.txt in Docs",
                "move the state database away",
            ),
            (
                OpsError::Sync(SyncError::FolderMissing { path: "/home/ann/Docs".into() }),
                "the folder /home/ann/Docs is missing",
                "Unlink on the folder's page",
            ),
            (
                OpsError::Sync(SyncError::Scan {
                    path: "/home/ann/Docs".into(),
                    cause: io(ErrorKind::PermissionDenied),
                }),
                "cannot read the folder",
                "check the permissions",
            ),
            (
                OpsError::Sync(SyncError::Protocol("invalid wire type 7 at offset 3".into())),
                "does not understand",
                "same version",
            ),
            (
                OpsError::Sync(SyncError::Internal(
                    "this computer is not logged in; run `filesync login` first".into(),
                )),
                "not logged in",
                "Log in",
            ),
            (
                OpsError::Agent(AgentError::AlreadyRunning("/home/ann/.config/filesync".into())),
                "already running",
                "Sync now",
            ),
            (
                OpsError::Agent(AgentError::Lock {
                    path: "/x/agent.lock".into(),
                    source: io(ErrorKind::ReadOnlyFilesystem),
                }),
                "cannot create the lock file",
                "read-only",
            ),
            (
                OpsError::Io { what: "cannot list", path: "/home/ann".into(), source: io(ErrorKind::NotFound) },
                "cannot list /home/ann",
                "FileSync will look again",
            ),
        ]
    }

    /// Regression: "Connection refused (os error 111)", rustls' close_notify text with a docs.rs
    /// link, and CLI syntax in backticks reached the UI.
    #[test]
    fn every_error_reads_as_a_plain_sentence_with_what_to_do() {
        for (e, says, todo) in cases() {
            let ui = error_message(&e, Audience::Ui);
            let cli = error_message(&e, Audience::Cli);
            for (who, text) in [("ui", &ui), ("cli", &cli)] {
                assert!(text.contains(says), "{who}: {e:?} became {text:?}, which does not say {says:?}");
                let raw = RAW.iter().filter(|r| **r != "`" || who == "ui").find(|r| text.contains(**r));
                assert!(raw.is_none(), "{who}: {e:?} leaks {raw:?}: {text:?}");
                assert!(!text.contains("raw system text") && !text.contains("raw driver text"), "{who}: {text:?}");
            }
            assert!(ui.contains(todo), "ui: {e:?} became {ui:?}, which does not say {todo:?}");
        }
    }

    #[test]
    fn commands_become_the_ui_s_buttons_and_settings_their_labels() {
        for (cli, ui) in [
            (
                "direction: download-only (local changes are not uploaded; `filesync folder revert` makes this \
                 computer match the server)",
                "Direction: download-only (local changes are not uploaded; Revert on the folder's page makes this \
                 computer match the server)",
            ),
            ("upload-limit: 25M/s", "Upload limit: 25 MB/s"),
            ("download-limit: 512k/s", "Download limit: 512 KB/s"),
            ("download-limit: unlimited", "Download limit: unlimited"),
            ("use 512k, 2M or 1G, or `unlimited`", "use 512k, 2M or 1G, or unlimited"),
            (
                "unlink it with `filesync folder remove Docs` (the files stay)",
                "unlink it with Unlink on the folder's page (the files stay)",
            ),
            ("to resume: `filesync resume Docs`", "to resume: Resume"),
            ("a `half open", "a `half open"),
            ("synced: 2 uploaded (report.txt, notes.md)", "synced: 2 uploaded (report.txt, notes.md)"),
        ] {
            assert_eq!(for_ui(cli), ui, "{cli}");
        }
    }
}
