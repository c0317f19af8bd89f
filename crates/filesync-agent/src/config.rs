//! The client's home directory: `config.toml` (server, pinned fingerprint, account, folders),
//! `token` (the device token, owner-only permissions), `state.db` (sync state) and
//! `status.json` (what the last or running sync reports).

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path} is not valid: {reason}")]
    Parse { path: PathBuf, reason: String },
}

/// One synced folder: a local directory linked to a server-side folder name.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FolderConfig {
    /// Server-side folder name; two computers adding the same name sync together.
    pub name: String,
    /// Absolute local path.
    pub path: PathBuf,
    /// How this folder syncs on this computer.
    #[serde(default)]
    pub settings: FolderSettings,
}

impl FolderConfig {
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>) -> FolderConfig {
        FolderConfig { name: name.into(), path: path.into(), settings: FolderSettings::default() }
    }
}

/// Which way changes flow for a folder on this computer.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// Changes flow both ways (the default).
    #[default]
    TwoWay,
    /// This computer is the source: local changes are uploaded, remote changes are not applied
    /// here ("revert remote" makes the server match this computer again).
    UploadOnly,
    /// The server is the source: remote changes are applied, local edits are not uploaded
    /// ("revert local" makes this computer match the server again).
    DownloadOnly,
}

/// Per-folder settings (the `[folders.settings]` table of `config.toml`). Every field has a
/// default, so an empty table means "two-way, continuous, no limits".
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct FolderSettings {
    pub direction: Direction,
    /// `continuous` (watcher + push), or an interval such as `every 5m`, `every 2h`, `hourly`,
    /// `daily`: sync passes then run only on that schedule.
    pub schedule: String,
    /// Seconds between full rescans that catch what the watcher missed.
    pub rescan_secs: u64,
    /// Server subfolders (folder-relative paths) not synced to this computer.
    pub excluded: Vec<String>,
    /// Bytes per second; `None`: unlimited.
    pub upload_limit: Option<u64>,
    pub download_limit: Option<u64>,
    pub paused: bool,
    /// Mass-delete guard: a scan that would delete more than `guard_percent` % of the folder's
    /// files *and* more than `guard_min_files` files pauses the folder instead.
    pub guard_percent: u32,
    pub guard_min_files: u64,
}

impl Default for FolderSettings {
    fn default() -> Self {
        FolderSettings {
            direction: Direction::TwoWay,
            schedule: "continuous".into(),
            rescan_secs: 60,
            excluded: Vec::new(),
            upload_limit: None,
            download_limit: None,
            paused: false,
            guard_percent: 50,
            guard_min_files: 100,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Config {
    /// `host:port` of the server.
    pub server: Option<String>,
    /// The pinned certificate fingerprint (`SHA256:…`).
    pub fingerprint: Option<String>,
    pub user: Option<String>,
    pub device_name: Option<String>,
    pub device_id: Option<u64>,
    /// Pauses every folder at once (`filesync pause` without a name).
    #[serde(default)]
    pub paused: bool,
    #[serde(default)]
    pub folders: Vec<FolderConfig>,
}

/// The files of one client home directory.
#[derive(Clone, Debug)]
pub struct Home {
    pub dir: PathBuf,
}

impl Home {
    pub fn new(dir: impl Into<PathBuf>) -> Home {
        Home { dir: dir.into() }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.toml")
    }
    pub fn token_path(&self) -> PathBuf {
        self.dir.join("token")
    }
    pub fn state_path(&self) -> PathBuf {
        self.dir.join("state.db")
    }
    pub fn status_path(&self) -> PathBuf {
        self.dir.join("status.json")
    }
    pub fn lock_path(&self) -> PathBuf {
        self.dir.join("agent.lock")
    }

    pub fn ensure(&self) -> Result<(), ConfigError> {
        std::fs::create_dir_all(&self.dir).map_err(|source| ConfigError::Write { path: self.dir.clone(), source })
    }

    pub fn load(&self) -> Result<Config, ConfigError> {
        let path = self.config_path();
        match std::fs::read_to_string(&path) {
            Ok(s) => toml::from_str(&s).map_err(|e| ConfigError::Parse { path, reason: e.to_string() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(source) => Err(ConfigError::Read { path, source }),
        }
    }

    pub fn save(&self, config: &Config) -> Result<(), ConfigError> {
        self.ensure()?;
        let text = toml::to_string_pretty(config).expect("config serializes");
        write_atomic(&self.config_path(), text.as_bytes(), false)
    }

    pub fn token(&self) -> Result<Option<String>, ConfigError> {
        let path = self.token_path();
        match std::fs::read_to_string(&path) {
            Ok(s) if s.trim().is_empty() => Ok(None),
            Ok(s) => Ok(Some(s.trim().to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(ConfigError::Read { path, source }),
        }
    }

    /// Stores the device token readable by the owner only.
    pub fn set_token(&self, token: &str) -> Result<(), ConfigError> {
        self.ensure()?;
        write_atomic(&self.token_path(), token.as_bytes(), true)
    }

    pub fn clear_token(&self) -> Result<(), ConfigError> {
        match std::fs::remove_file(self.token_path()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(ConfigError::Write { path: self.token_path(), source }),
        }
    }
}

/// Temp file, fsync, rename: a reader sees the old or the new file, never a mix.
pub fn write_atomic(path: &Path, data: &[u8], private: bool) -> Result<(), ConfigError> {
    let err = |source| ConfigError::Write { path: path.to_path_buf(), source };
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp =
        dir.join(format!(".{}.tmp{}", path.file_name().and_then(|n| n.to_str()).unwrap_or("f"), std::process::id()));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut f = opts.open(&tmp).map_err(err)?;
    f.write_all(data).map_err(err)?;
    f.sync_all().map_err(err)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trip_and_private_token() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path().join("h"));
        assert_eq!(home.load().unwrap(), Config::default());
        let mut c = Config { server: Some("127.0.0.1:7443".into()), ..Default::default() };
        c.folders.push(FolderConfig::new("docs", "/tmp/docs"));
        home.save(&c).unwrap();
        assert_eq!(home.load().unwrap(), c);
        home.set_token("fst_abc").unwrap();
        assert_eq!(home.token().unwrap().as_deref(), Some("fst_abc"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(home.token_path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        home.clear_token().unwrap();
        assert_eq!(home.token().unwrap(), None);
    }
}
