//! The service's log: a file per day in `<home>/logs/` (`agent.YYYY-MM-DD.log`), the last
//! [`KEEP_DAYS`] kept, for a service that has no terminal. Panics are logged there too.
//! (On Linux, systemd's journal takes the agent's standard error instead.)

use crate::ServiceError;
use std::path::{Path, PathBuf};
use tracing_appender::rolling::{RollingFileAppender, Rotation};

/// How many daily log files are kept; older ones are deleted as new days begin.
pub const KEEP_DAYS: usize = 7;

/// The log directory of a home.
pub fn log_dir(home: &Path) -> PathBuf {
    home.join("logs")
}

/// The rotating appender writing `agent.YYYY-MM-DD.log` files in `dir` (created if needed).
pub fn appender(dir: &Path) -> Result<RollingFileAppender, ServiceError> {
    std::fs::create_dir_all(dir).map_err(|error| ServiceError::Write { path: dir.to_path_buf(), error })?;
    RollingFileAppender::builder()
        .rotation(Rotation::DAILY)
        .filename_prefix("agent")
        .filename_suffix("log")
        .max_log_files(KEEP_DAYS)
        .build(dir)
        .map_err(|e| ServiceError::Write { path: dir.to_path_buf(), error: std::io::Error::other(e) })
}

/// Sends this process's tracing output (filtered by `FILESYNC_LOG`, default `info` for
/// FileSync's crates) to the rotating log in `dir`, and logs panics there.
pub fn init(dir: &Path) -> Result<(), ServiceError> {
    let appender = appender(dir)?;
    let filter = tracing_subscriber::EnvFilter::try_from_env("FILESYNC_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            "warn,filesync=info,filesync_agent=info,filesync_service=info,filesync_client=info",
        )
    });
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(false).with_writer(appender).init();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!("panic: {info}");
        previous(info);
    }));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use tracing_subscriber::fmt::MakeWriter;

    #[test]
    fn writes_dated_files_in_the_log_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = log_dir(tmp.path());
        let appender = appender(&dir).unwrap();
        appender.make_writer().write_all(b"hello\n").unwrap();
        let names: Vec<String> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(names[0].starts_with("agent.") && names[0].ends_with(".log"), "{names:?}");
        assert_eq!(std::fs::read_to_string(dir.join(&names[0])).unwrap(), "hello\n");
    }
}
