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
    /// Seconds between full rescans that catch what the watcher missed (while the watcher
    /// works; a folder without one is walked every minute at least).
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
            rescan_secs: 3600,
            excluded: Vec::new(),
            upload_limit: None,
            download_limit: None,
            paused: false,
            guard_percent: 50,
            guard_min_files: 100,
        }
    }
}

impl FolderSettings {
    /// The schedule; an unparsable one (only a hand-edited file can hold one) is continuous.
    pub fn schedule(&self) -> Schedule {
        Schedule::parse(&self.schedule).unwrap_or(Schedule::Continuous)
    }

    /// The direction, as the planner takes it.
    pub fn planner_direction(&self) -> filesync_planner::Direction {
        match self.direction {
            Direction::TwoWay => filesync_planner::Direction::TwoWay,
            Direction::UploadOnly => filesync_planner::Direction::UploadOnly,
            Direction::DownloadOnly => filesync_planner::Direction::DownloadOnly,
        }
    }

    /// The mass-delete guard's thresholds.
    pub fn guard(&self) -> filesync_planner::Guard {
        filesync_planner::Guard { percent: self.guard_percent, min_files: self.guard_min_files }
    }
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Direction::TwoWay => "two-way",
            Direction::UploadOnly => "upload-only",
            Direction::DownloadOnly => "download-only",
        })
    }
}

impl std::str::FromStr for Direction {
    type Err = String;
    fn from_str(s: &str) -> Result<Direction, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "two-way" | "twoway" | "both" => Ok(Direction::TwoWay),
            "upload-only" | "upload" => Ok(Direction::UploadOnly),
            "download-only" | "download" => Ok(Direction::DownloadOnly),
            _ => Err(format!("{s:?} is not a direction; use two-way, upload-only or download-only")),
        }
    }
}

/// When a folder's sync passes run (the `schedule` setting).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// On every change (file watcher and server push), plus a full rescan every `rescan_secs`.
    Continuous,
    /// Only at this interval; changes noticed meanwhile wait for it.
    Every(std::time::Duration),
}

impl Schedule {
    /// Parses `continuous`, `hourly`, `daily`, or `every N` with a unit: `every 90s`,
    /// `every 5m`, `every 2h`, `every 1d` (also `every 5 minutes`).
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let t = text.trim().to_ascii_lowercase();
        let bad = || {
            format!(
                "{text:?} is not a schedule; use continuous, hourly, daily, or an interval such as `every 90s`, \
                 `every 5m`, `every 2h`"
            )
        };
        let secs = match t.as_str() {
            "continuous" => return Ok(Schedule::Continuous),
            "hourly" => 3600,
            "daily" => 86_400,
            _ => {
                let rest = t.strip_prefix("every").ok_or_else(bad)?.trim();
                let split = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
                let (n, unit) = rest.split_at(split);
                let n: u64 = n.parse().map_err(|_| bad())?;
                let unit_secs = match unit.trim() {
                    "s" | "sec" | "secs" | "second" | "seconds" => 1,
                    "m" | "min" | "mins" | "minute" | "minutes" => 60,
                    "h" | "hr" | "hrs" | "hour" | "hours" => 3600,
                    "d" | "day" | "days" => 86_400,
                    _ => return Err(bad()),
                };
                n.checked_mul(unit_secs)
                    .filter(|s| *s > 0 && *s <= 366 * 86_400)
                    .ok_or_else(|| format!("{text:?}: the interval must be between 1 second and 366 days"))?
            }
        };
        Ok(Schedule::Every(std::time::Duration::from_secs(secs)))
    }
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Schedule::Continuous => f.write_str("continuous"),
            Schedule::Every(d) => {
                let s = d.as_secs();
                match s {
                    3600 => f.write_str("hourly"),
                    86_400 => f.write_str("daily"),
                    _ if s % 86_400 == 0 => write!(f, "every {}d", s / 86_400),
                    _ if s % 3600 == 0 => write!(f, "every {}h", s / 3600),
                    _ if s % 60 == 0 => write!(f, "every {}m", s / 60),
                    _ => write!(f, "every {s}s"),
                }
            }
        }
    }
}

/// Parses a bandwidth limit: `unlimited` (or `none`, `0`) is `None`; otherwise bytes per
/// second, with an optional binary suffix: `512k` = 512 KiB/s, `2M`, `1G` (`KiB`, `MB/s`
/// and the like are accepted too).
pub fn parse_rate(text: &str) -> Result<Option<u64>, String> {
    let t = text.trim().to_ascii_lowercase();
    if matches!(t.as_str(), "unlimited" | "none" | "off" | "0") {
        return Ok(None);
    }
    let bad = || format!("{text:?} is not a rate; use bytes per second such as 512k, 2M or 1G, or `unlimited`");
    let t = t.strip_suffix("/s").unwrap_or(&t);
    let t = t.strip_suffix("ib").or_else(|| t.strip_suffix('b')).unwrap_or(t);
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.trim() {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => return Err(bad()),
    };
    let bytes = n.checked_mul(mult).ok_or_else(bad)?;
    if bytes < 1024 {
        return Err(format!("{text:?} is below the smallest limit, 1k (1024 bytes per second)"));
    }
    Ok(Some(bytes))
}

/// A limit as a person reads it: `unlimited`, `512k`, `2M`, or bytes per second.
pub fn format_rate(rate: Option<u64>) -> String {
    match rate {
        None => "unlimited".into(),
        Some(b) if b % (1 << 30) == 0 => format!("{}G", b >> 30),
        Some(b) if b % (1 << 20) == 0 => format!("{}M", b >> 20),
        Some(b) if b % (1 << 10) == 0 => format!("{}k", b >> 10),
        Some(b) => b.to_string(),
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
    /// The local web UI (the `[ui]` table); omitted from the file while it has its defaults.
    #[serde(default, skip_serializing_if = "UiConfig::is_default")]
    pub ui: UiConfig,
}

/// Where and how the agent serves the local web UI.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct UiConfig {
    /// `ADDRESS:PORT` to listen on; `None`: `127.0.0.1:7780`. A non-loopback address requires
    /// `password_hash`.
    pub listen: Option<String>,
    /// Argon2id hash (PHC string) of the UI password (`filesync ui --set-password`).
    pub password_hash: Option<String>,
    /// Extra `Host` header values accepted besides the listen address and loopback names
    /// (the names people use to reach a non-loopback UI, e.g. `nas.local:7780`).
    pub allowed_hosts: Vec<String>,
}

impl UiConfig {
    pub fn is_default(&self) -> bool {
        *self == UiConfig::default()
    }
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
    /// Where the running agent publishes its control endpoint (`agent::control`).
    pub fn control_path(&self) -> PathBuf {
        self.dir.join("agent.control")
    }

    /// Creates the home directory, readable by its owner only (it holds the device token, the
    /// UI password's hash and the list of every synced file); an existing one open to others
    /// is closed.
    pub fn ensure(&self) -> Result<(), ConfigError> {
        let err = |source| ConfigError::Write { path: self.dir.clone(), source };
        std::fs::create_dir_all(&self.dir).map_err(err)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&self.dir).map_err(err)?.permissions().mode();
            if mode & 0o077 != 0 {
                std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
                tracing::info!("made {} readable by its owner only (it was {:o})", self.dir.display(), mode & 0o777);
            }
        }
        Ok(())
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
        // Owner-only: it holds the UI password's hash.
        write_atomic(&self.config_path(), text.as_bytes(), true)
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
    rename_replacing(&tmp, path).map_err(err)
}

/// `rename`, tried again for a moment on Windows while another process has `to` open (a
/// `filesync status` reading the status file, a virus scanner): there, and under Wine,
/// replacing an open file fails with "access denied" until it is closed.
fn rename_replacing(from: &Path, to: &Path) -> std::io::Result<()> {
    let mut tries = 0;
    loop {
        match std::fs::rename(from, to) {
            Err(e) if cfg!(windows) && e.kind() == std::io::ErrorKind::PermissionDenied && tries < 50 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            r => return r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn schedules_parse_and_print_canonically() {
        let every = |s| Schedule::Every(Duration::from_secs(s));
        for (text, want) in [
            ("continuous", Schedule::Continuous),
            (" Continuous ", Schedule::Continuous),
            ("hourly", every(3600)),
            ("daily", every(86_400)),
            ("every 5m", every(300)),
            ("every 90s", every(90)),
            ("every 2h", every(7200)),
            ("every 1d", every(86_400)),
            ("every 10 minutes", every(600)),
            ("every30s", every(30)),
        ] {
            assert_eq!(Schedule::parse(text), Ok(want), "{text}");
        }
        for bad in ["", "sometimes", "every", "every 5", "every 0s", "every -1m", "every 5w", "every 400d", "5m"] {
            let e = Schedule::parse(bad).unwrap_err();
            assert!(e.contains("every") || e.contains("interval"), "{bad}: {e}");
        }
        for (s, shown) in
            [(every(3600), "hourly"), (every(300), "every 5m"), (every(90), "every 90s"), (every(7200), "every 2h")]
        {
            assert_eq!(s.to_string(), shown);
            assert_eq!(Schedule::parse(shown), Ok(s));
        }
        let settings = FolderSettings { schedule: "whenever".into(), ..Default::default() };
        assert_eq!(settings.schedule(), Schedule::Continuous, "a hand-edited bad value falls back");
    }

    #[test]
    fn rates_parse_with_binary_suffixes() {
        for (text, want) in [
            ("unlimited", None),
            ("0", None),
            ("512k", Some(512 * 1024)),
            ("512K", Some(512 * 1024)),
            ("2M", Some(2 << 20)),
            ("2MB/s", Some(2 << 20)),
            ("1 GiB", Some(1 << 30)),
            ("4096", Some(4096)),
        ] {
            assert_eq!(parse_rate(text), Ok(want), "{text}");
        }
        for bad in ["fast", "-5k", "5x", "1.5M", "", "100"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
        assert!(parse_rate("100").unwrap_err().contains("smallest"));
        for r in [None, Some(512 * 1024), Some(2 << 20), Some(1 << 30), Some(1500)] {
            assert_eq!(parse_rate(&format_rate(r)), Ok(r));
        }
    }

    #[test]
    fn directions_parse_and_print() {
        for d in [Direction::TwoWay, Direction::UploadOnly, Direction::DownloadOnly] {
            assert_eq!(d.to_string().parse::<Direction>(), Ok(d));
        }
        assert!("sideways".parse::<Direction>().unwrap_err().contains("upload-only"));
    }

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
