//! The real filesystem, rooted at a synced folder: [`RealFs`] maps [`RelPath`]s to platform
//! paths component by component, reports `lstat` results (links are never followed), writes
//! through temporary files that are renamed over their destination, and refuses to operate
//! through a symbolic link inside the folder. On Windows it uses `\\?\` paths (no 260-character
//! limit), renames a name to another spelling of itself in two steps, and retries briefly when
//! another program holds a file it must replace or delete.

use super::{DirEntry, Filesystem, ReadSeek, Stat, StatKind, TempFile};
use filesync_core::RelPath;
use filesync_core::path::TEMP_PREFIX;
use std::fs::{self, File, FileTimes, Metadata, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A synced folder on a real disk.
///
/// Every path below the root is checked so that no component but the root itself is a
/// symbolic link (or, on Windows, a junction): an operation on `link/file` fails with
/// `NotADirectory` (and `stat` reports nothing there) instead of reaching outside the folder.
/// The check is best effort — a link swapped in between the check and the operation is not
/// caught — but it stops the ordinary case of a link that a user placed inside the folder.
///
/// Errors are the plain `io::Error`s of the platform, without the path: callers add it.
#[derive(Clone, Debug)]
pub struct RealFs {
    root: PathBuf,
    /// `root` as the platform's operations get it: on Windows the `\\?\` ("verbatim") form,
    /// which lifts the 260-character `MAX_PATH` limit; elsewhere `root` itself.
    op_root: PathBuf,
}

impl RealFs {
    pub fn new(root: PathBuf) -> RealFs {
        let op_root = operation_root(&root);
        RealFs { root, op_root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The platform path of `rel`, joined one component at a time. Fails with `InvalidInput`
    /// on Windows for names Windows cannot hold (a `\` or `:` in a name would otherwise
    /// change which file is meant). Does not look at the disk.
    pub fn local_path(&self, rel: &RelPath) -> io::Result<PathBuf> {
        #[cfg(windows)]
        if let Some(why) = rel.windows_incompatibility() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("'{rel}' cannot be stored on Windows: {why}"),
            ));
        }
        let mut p = self.op_root.clone();
        for c in rel.components() {
            p.push(c);
        }
        Ok(p)
    }

    /// The folder-relative path of an absolute path below the root (what a file watcher
    /// reports), normalized to NFC; `None` when it is outside the root, the root itself, not
    /// Unicode, or not a valid [`RelPath`] (for example a temporary file).
    pub fn relative(&self, abs: &Path) -> Option<RelPath> {
        let rest = abs.strip_prefix(&self.root).ok()?;
        let mut s = String::new();
        for c in rest.components() {
            let std::path::Component::Normal(name) = c else { return None };
            if !s.is_empty() {
                s.push('/');
            }
            s.push_str(name.to_str()?);
        }
        RelPath::normalize(&s).ok()
    }

    /// Like [`RealFs::local_path`], and checks that no ancestor of `rel` (nor `rel` itself
    /// when `check_last`) is a symbolic link. `None` is the root, which is never checked.
    fn checked(&self, rel: Option<&RelPath>, check_last: bool) -> io::Result<PathBuf> {
        let Some(rel) = rel else { return Ok(self.op_root.clone()) };
        let full = self.local_path(rel)?;
        let n = rel.depth();
        let checks = if check_last { n } else { n - 1 };
        let mut p = self.op_root.clone();
        for c in rel.components().take(checks) {
            p.push(c);
            match fs::symlink_metadata(&p) {
                Ok(md) if md.file_type().is_symlink() => {
                    return Err(io::Error::new(
                        io::ErrorKind::NotADirectory,
                        format!("'{}' is a symbolic link; FileSync does not follow links inside a folder", p.display()),
                    ));
                }
                Ok(_) => {}
                // Nothing below a missing or unreadable component can be reached anyway; the
                // operation itself reports the error.
                Err(_) => break,
            }
        }
        Ok(full)
    }

    /// Renames the entry that `read_dir(dir)` listed as `name` — a name [`RelPath`] may not
    /// express, such as one that is not in NFC — to `to`, failing with `AlreadyExists` rather
    /// than replace anything. This is what the scanner uses to normalize names on disk.
    pub fn rename_listed_noreplace(&self, dir: Option<&RelPath>, name: &str, to: &RelPath) -> io::Result<()> {
        check_plain_name(name)?;
        let mut from = self.checked(dir, true)?;
        from.push(name);
        let to = self.checked(Some(to), false)?;
        rename_noreplace_paths(&from, &to)
    }
}

/// The path the platform's file operations get for the folder root: on Windows the verbatim
/// `\\?\C:\…` (or `\\?\UNC\server\share\…`) form of its absolute path, so that paths deeper
/// than 260 characters work without the system-wide "long paths" setting. Verbatim paths are
/// taken literally (no `/`, `.` or `..` handling), which is why the root is made absolute and
/// normalized first and every name below it is validated. Elsewhere the root as given.
fn operation_root(root: &Path) -> PathBuf {
    #[cfg(windows)]
    {
        match std::path::absolute(root) {
            Ok(abs) => verbatim(&abs),
            Err(_) => root.to_path_buf(),
        }
    }
    #[cfg(not(windows))]
    {
        root.to_path_buf()
    }
}

/// The verbatim form of an absolute, normalized Windows path.
#[cfg(any(windows, test))]
fn verbatim(abs: &Path) -> PathBuf {
    let s = abs.as_os_str().to_string_lossy();
    if s.starts_with(r"\\?\") || s.starts_with(r"\\.\") {
        abs.to_path_buf()
    } else if let Some(unc) = s.strip_prefix(r"\\") {
        PathBuf::from(format!(r"\\?\UNC\{unc}"))
    } else if s.as_bytes().get(1) == Some(&b':') {
        PathBuf::from(format!(r"\\?\{s}"))
    } else {
        abs.to_path_buf()
    }
}

/// Rejects a name that would not name exactly one entry of a directory.
fn check_plain_name(name: &str) -> io::Result<()> {
    let bad = name.is_empty()
        || name == "."
        || name == ".."
        || name.contains('/')
        || name.contains('\0')
        || (cfg!(windows) && (name.contains('\\') || name.contains(':')));
    if bad {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{name:?} is not a plain file name")));
    }
    Ok(())
}

fn stat_of(md: &Metadata) -> Stat {
    let ft = md.file_type();
    let kind = if ft.is_symlink() {
        StatKind::Symlink
    } else if ft.is_dir() {
        StatKind::Dir
    } else if ft.is_file() {
        StatKind::File
    } else {
        StatKind::Other
    };
    let mtime_ns = md.modified().map(system_time_to_ns).unwrap_or(0);
    Stat {
        kind,
        size: if kind == StatKind::Dir { 0 } else { md.len() },
        mtime_ns,
        executable: kind == StatKind::File && is_executable(md),
        ino: inode(md),
    }
}

#[cfg(unix)]
fn is_executable(md: &Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    md.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_md: &Metadata) -> bool {
    false
}

#[cfg(unix)]
fn inode(md: &Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    md.ino()
}

/// The file index needs `GetFileInformationByHandle` (unstable in std as `windows_by_handle`),
/// so it is reported as unknown; the scanner then compares size and mtime only.
#[cfg(not(unix))]
fn inode(_md: &Metadata) -> u64 {
    0
}

fn system_time_to_ns(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_nanos()).map(|n| -n).unwrap_or(i64::MIN),
    }
}

fn ns_to_system_time(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

fn is_not_found(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory)
}

/// Opens a file (or directory) to change its times and mode, without following a link.
fn open_for_attributes(path: &Path) -> io::Result<File> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path)
    }
    #[cfg(windows)]
    {
        use std::os::windows::fs::OpenOptionsExt;
        const FILE_WRITE_ATTRIBUTES: u32 = 0x0100;
        const FILE_FLAG_BACKUP_SEMANTICS: u32 = 0x0200_0000; // needed to open a directory
        const FILE_FLAG_OPEN_REPARSE_POINT: u32 = 0x0020_0000; // do not follow a link
        OpenOptions::new()
            .access_mode(FILE_WRITE_ATTRIBUTES)
            .custom_flags(FILE_FLAG_BACKUP_SEMANTICS | FILE_FLAG_OPEN_REPARSE_POINT)
            .open(path)
    }
}

/// Sets the modification time through an open handle and, on Unix, the executable bits of a
/// regular file: `x` is granted wherever `r` is (like `chmod +x` under the usual umask) or
/// removed everywhere. Windows has no executable bit; it is ignored there.
fn apply_times_and_mode(file: &File, mtime_ns: i64, executable: bool) -> io::Result<()> {
    file.set_times(FileTimes::new().set_modified(ns_to_system_time(mtime_ns)))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let md = file.metadata()?;
        if md.is_file() {
            let mode = md.permissions().mode() & 0o7777;
            let new = if executable { mode | ((mode & 0o444) >> 2) | 0o100 } else { mode & !0o111 };
            if new != mode {
                file.set_permissions(fs::Permissions::from_mode(new))?;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = executable;
    Ok(())
}

/// `rename` that fails with `AlreadyExists` instead of replacing `to`. A target that is the
/// same entry under another spelling (a case-only or normalization-only rename on a
/// case-insensitive disk) is not "something else there", and the rename goes ahead.
fn rename_noreplace_paths(from: &Path, to: &Path) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    match renameat2_noreplace(from, to) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            if !is_alias(from, to) {
                return Err(e);
            }
            return fs::rename(from, to);
        }
        // Kernel or filesystem without RENAME_NOREPLACE (old kernels, some network and FUSE
        // filesystems): fall back to check-then-rename below.
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)) => {}
        Err(e) => return Err(e),
    }
    // Check-then-rename: a file created at `to` between the check and the rename would be
    // replaced. Only FileSync and the user touch the folder, so the window is accepted.
    match fs::symlink_metadata(to) {
        Ok(_) if !is_alias(from, to) => {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("'{}' already exists", to.display())));
        }
        Ok(_) => return rename_to_other_spelling(from, to),
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(e),
    }
    fs::rename(from, to)
}

/// Renames an entry to another spelling of its own name (`report.txt` → `Report.txt`) on a
/// case-insensitive disk. Windows file systems other than NTFS (FAT, some network shares) —
/// and Wine — accept such a rename and change nothing, so it goes through an intermediate
/// name. A crash between the two steps leaves the entry under that visible name
/// (`.filesync-renaming-…`), never deletes it: it does not start with the temporary-file
/// prefix that crash cleanup removes.
#[cfg(windows)]
fn rename_to_other_spelling(from: &Path, to: &Path) -> io::Result<()> {
    let Some(dir) = from.parent() else { return fs::rename(from, to) };
    let via = dir.join(format!(".filesync-renaming-{:016x}", rand::random::<u64>()));
    retry_while_in_use(|| fs::rename(from, &via))?;
    if let Err(e) = retry_while_in_use(|| fs::rename(&via, to)) {
        let _ = fs::rename(&via, from);
        return Err(e);
    }
    Ok(())
}

#[cfg(not(windows))]
fn rename_to_other_spelling(from: &Path, to: &Path) -> io::Result<()> {
    fs::rename(from, to)
}

#[cfg(target_os = "linux")]
fn renameat2_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let cstr = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
    };
    let (from, to) = (cstr(from)?, cstr(to)?);
    // SAFETY: both pointers are valid NUL-terminated strings that outlive the call. The raw
    // syscall is used because the glibc wrapper only exists since glibc 2.28.
    let r = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if r == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// True when `to` exists only as another spelling of `from`: same directory, names equal
/// after NFC and lowercasing, the exact name `to` is not listed, and both resolve to the same
/// entry.
fn is_alias(from: &Path, to: &Path) -> bool {
    use unicode_normalization::UnicodeNormalization;
    let (Some(fp), Some(tp)) = (from.parent(), to.parent()) else { return false };
    let (Some(fname), Some(tname)) = (from.file_name(), to.file_name()) else { return false };
    let (Some(f), Some(t)) = (fname.to_str(), tname.to_str()) else { return false };
    let fold = |s: &str| s.nfc().collect::<String>().to_lowercase();
    if fp != tp || f == t || fold(f) != fold(t) {
        return false;
    }
    let Ok(listing) = fs::read_dir(fp) else { return false };
    if listing.filter_map(Result::ok).any(|e| e.file_name() == tname) {
        return false;
    }
    match (fs::symlink_metadata(from), fs::symlink_metadata(to)) {
        (Ok(a), Ok(b)) => stat_of(&a) == stat_of(&b),
        _ => false,
    }
}

/// `rename` replacing `to`. On Windows a destination that another program holds open (without
/// allowing deletion) cannot be replaced while it is open: see [`retry_while_in_use`].
fn rename_replace(from: &Path, to: &Path) -> io::Result<()> {
    retry_while_in_use(|| fs::rename(from, to))
}

/// Runs a rename or delete, and on Windows retries it for about a second while the file is in
/// use by another program (a sharing or lock violation, or access denied, which is also what a
/// file pending deletion answers). If it is still in use, the error says so; the engine
/// reports it for that file and the next pass tries again.
fn retry_while_in_use<T>(mut op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    #[cfg(windows)]
    {
        const ERROR_ACCESS_DENIED: i32 = 5;
        const ERROR_SHARING_VIOLATION: i32 = 32;
        const ERROR_LOCK_VIOLATION: i32 = 33;
        let in_use = |e: &io::Error| {
            matches!(e.raw_os_error(), Some(ERROR_ACCESS_DENIED | ERROR_SHARING_VIOLATION | ERROR_LOCK_VIOLATION))
        };
        let mut delay = Duration::from_millis(20);
        for _ in 0..6 {
            match op() {
                Err(e) if in_use(&e) => {
                    std::thread::sleep(delay);
                    delay *= 2;
                }
                other => return other,
            }
        }
        op().map_err(|e| {
            if in_use(&e) {
                io::Error::new(
                    e.kind(),
                    format!("{e} (another program has the file open; FileSync tries again once it is closed)"),
                )
            } else {
                e
            }
        })
    }
    #[cfg(not(windows))]
    op()
}

/// Makes a rename in `dir` durable. Filesystems that cannot fsync a directory say so with
/// `EINVAL`/`ENOTSUP`; their renames are as durable as they get, so that is not an error.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    match File::open(dir)?.sync_all() {
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOTSUP)) => Ok(()),
        other => other,
    }
}

impl RealFs {
    /// Flushes the whole file system holding the folder: one system call that makes every
    /// write before it durable, instead of one fsync per file.
    #[cfg(target_os = "linux")]
    fn syncfs(&self) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let dir = fs::File::open(&self.root)?;
        // SAFETY: the descriptor is valid for as long as `dir` lives, which outlasts the call.
        if unsafe { libc::syncfs(dir.as_raw_fd()) } == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
    }
}

/// The longest full path this system's file operations take, in bytes (`PATH_MAX` less its
/// terminating NUL). Windows paths go through the verbatim form, which allows about 32,000.
#[cfg(target_os = "macos")]
const FULL_PATH_MAX: usize = 1023;
#[cfg(all(unix, not(target_os = "macos")))]
const FULL_PATH_MAX: usize = 4095;
#[cfg(windows)]
const FULL_PATH_MAX: usize = 32_000;

impl Filesystem for RealFs {
    /// Names Windows forbids (on Windows), and paths whose full length below this root is
    /// more than the system takes.
    fn name_problem(&self, path: &RelPath) -> Option<String> {
        if cfg!(windows)
            && let Some(why) = path.windows_incompatibility()
        {
            return Some(why);
        }
        let full = self.op_root.as_os_str().len() + 1 + path.as_str().len();
        (full > FULL_PATH_MAX).then(|| {
            format!("its full path here would be {full} bytes long, and this system takes at most {FULL_PATH_MAX}")
        })
    }

    fn rename_listed_noreplace(&self, dir: Option<&RelPath>, name: &str, to: &RelPath) -> io::Result<()> {
        RealFs::rename_listed_noreplace(self, dir, name, to)
    }

    fn read_dir(&self, dir: Option<&RelPath>) -> io::Result<Vec<DirEntry>> {
        let path = self.checked(dir, true)?;
        let mut out = Vec::new();
        for entry in fs::read_dir(&path)? {
            let entry = entry?;
            let os_name = entry.file_name();
            let (name, name_is_unicode) = match os_name.to_str() {
                Some(s) => (s.to_string(), true),
                None => (os_name.to_string_lossy().into_owned(), false),
            };
            // `DirEntry::metadata` does not follow links (fstatat with AT_SYMLINK_NOFOLLOW on
            // Unix, the directory listing itself on Windows).
            let md = match entry.metadata() {
                Ok(md) => md,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue, // deleted meanwhile
                Err(e) => return Err(e),
            };
            out.push(DirEntry { name, name_is_unicode, stat: stat_of(&md) });
        }
        Ok(out)
    }

    fn stat(&self, path: &RelPath) -> io::Result<Option<Stat>> {
        let p = match self.checked(Some(path), false) {
            Ok(p) => p,
            Err(e) if e.kind() == io::ErrorKind::NotADirectory => return Ok(None),
            Err(e) => return Err(e),
        };
        match fs::symlink_metadata(&p) {
            Ok(md) => Ok(Some(stat_of(&md))),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn root_exists(&self) -> bool {
        fs::metadata(&self.root).is_ok_and(|m| m.is_dir())
    }

    fn open(&self, path: &RelPath) -> io::Result<Box<dyn ReadSeek>> {
        let p = self.checked(Some(path), false)?;
        #[cfg(unix)]
        let file = {
            use std::os::unix::fs::OpenOptionsExt;
            OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(&p)?
        };
        #[cfg(not(unix))]
        let file = {
            if fs::symlink_metadata(&p)?.file_type().is_symlink() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("'{}' is a symbolic link", p.display()),
                ));
            }
            File::open(&p)?
        };
        Ok(Box::new(file))
    }

    fn create_dir(&self, path: &RelPath) -> io::Result<()> {
        let p = self.checked(Some(path), false)?;
        match fs::create_dir(&p) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match fs::symlink_metadata(&p) {
                Ok(md) if md.is_dir() => Ok(()),
                _ => Err(e),
            },
            other => other,
        }
    }

    fn remove_file(&self, path: &RelPath) -> io::Result<()> {
        let p = self.checked(Some(path), false)?;
        retry_while_in_use(|| fs::remove_file(&p))
    }

    fn remove_dir(&self, path: &RelPath) -> io::Result<()> {
        let p = self.checked(Some(path), false)?;
        retry_while_in_use(|| fs::remove_dir(&p))
    }

    fn rename_noreplace(&self, from: &RelPath, to: &RelPath) -> io::Result<()> {
        let from = self.checked(Some(from), false)?;
        let to = self.checked(Some(to), false)?;
        rename_noreplace_paths(&from, &to)
    }

    fn set_times_and_mode(&self, path: &RelPath, mtime_ns: i64, executable: bool) -> io::Result<()> {
        let file = open_for_attributes(&self.checked(Some(path), false)?)?;
        apply_times_and_mode(&file, mtime_ns, executable)
    }

    fn create_temp(&self, dir: Option<&RelPath>) -> io::Result<Box<dyn TempFile>> {
        let dir_path = self.checked(dir, true)?;
        let mut attempts = 0;
        loop {
            let path = dir_path.join(format!("{TEMP_PREFIX}{:016x}", rand::random::<u64>()));
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => {
                    return Ok(Box::new(RealTemp {
                        fs: self.clone(),
                        file: Some(file),
                        path,
                        times: None,
                        written_after_times: false,
                        synced: true,
                        persisted: false,
                    }));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 16 => attempts += 1,
                Err(e) => return Err(e),
            }
        }
    }

    fn sync_temps(&self, files: &mut [Box<dyn TempFile>]) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        {
            self.syncfs()?;
            files.iter_mut().for_each(|f| f.mark_synced());
            Ok(())
        }
        #[cfg(not(target_os = "linux"))]
        files.iter_mut().try_for_each(|f| f.sync_all())
    }

    fn sync_renames(&self, dirs: &[Option<RelPath>]) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        {
            let _ = dirs;
            self.syncfs()
        }
        #[cfg(all(unix, not(target_os = "linux")))]
        {
            let mut done = std::collections::HashSet::new();
            for d in dirs {
                if done.insert(d.clone()) {
                    sync_dir(&self.checked(d.as_ref(), true)?)?;
                }
            }
            Ok(())
        }
        #[cfg(not(unix))]
        {
            // NTFS journals metadata; a rename is not left half-done by a crash.
            let _ = dirs;
            Ok(())
        }
    }

    fn clean_temp_files_except(&self, keep: &std::collections::HashSet<String>) -> io::Result<usize> {
        let mut removed = 0;
        let mut stack = vec![self.op_root.clone()];
        while let Some(dir) = stack.pop() {
            let listing = match fs::read_dir(&dir) {
                Ok(l) => l,
                Err(e) if dir == self.op_root => return Err(e),
                // An unreadable or vanished subdirectory holds no temp file we could remove.
                Err(_) => continue,
            };
            for entry in listing {
                let Ok(entry) = entry else { continue };
                let Ok(ft) = entry.file_type() else { continue };
                let name = entry.file_name();
                let name = name.to_string_lossy();
                let is_temp = name.starts_with(TEMP_PREFIX) && !keep.contains(name.as_ref());
                if is_temp && ft.is_file() {
                    match fs::remove_file(entry.path()) {
                        Ok(()) => removed += 1,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(e),
                    }
                } else if ft.is_dir() {
                    stack.push(entry.path());
                }
            }
        }
        Ok(removed)
    }
}

/// A temporary file of [`RealFs`]: `<dir>/.filesync-tmp-<random hex>`.
struct RealTemp {
    fs: RealFs,
    /// `None` once closed for the rename.
    file: Option<File>,
    path: PathBuf,
    /// What `set_times_and_mode` asked for; applied again at `persist` if bytes were written
    /// after it (a write moves the modification time).
    times: Option<(i64, bool)>,
    written_after_times: bool,
    /// No write since the last fsync.
    synced: bool,
    persisted: bool,
}

impl RealTemp {
    fn file(&mut self) -> io::Result<&mut File> {
        self.file.as_mut().ok_or_else(|| io::Error::other("temporary file is already closed"))
    }
}

impl Write for RealTemp {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file()?.write(buf)?;
        self.synced = false;
        self.written_after_times = self.times.is_some();
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file()?.flush()
    }
}

impl TempFile for RealTemp {
    fn still_in_place(&self) -> bool {
        fs::symlink_metadata(&self.path).is_ok_and(|m| m.is_file())
    }

    fn set_times_and_mode(&mut self, mtime_ns: i64, executable: bool) -> io::Result<()> {
        apply_times_and_mode(self.file()?, mtime_ns, executable)?;
        self.times = Some((mtime_ns, executable));
        self.written_after_times = false;
        Ok(())
    }

    fn sync_all(&mut self) -> io::Result<()> {
        self.file()?.sync_all()?;
        self.synced = true;
        Ok(())
    }

    /// Also fsyncs the contents if they were written after the last `sync_all`: a rename
    /// that reaches the disk before the data would leave an empty or torn file after a
    /// power loss. If the directory fsync after the rename fails, the error is returned
    /// although the file is already in place.
    fn mark_synced(&mut self) {
        self.synced = true;
    }

    fn start_writeback(&mut self) {
        #[cfg(target_os = "linux")]
        if let Some(f) = &self.file {
            use std::os::fd::AsRawFd;
            // SAFETY: the descriptor is open for as long as `f` lives; the call only starts
            // writeback of the file's dirty pages (offset 0, length 0: the whole file).
            let _ = unsafe { libc::sync_file_range(f.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
        }
    }

    fn file_name(&self) -> &str {
        self.path.file_name().and_then(|n| n.to_str()).expect("a temporary file's name is ASCII")
    }

    fn persist_deferred(mut self: Box<Self>, dest: &RelPath) -> io::Result<()> {
        self.rename_into_place(dest).map(|_| ())
    }

    fn persist(mut self: Box<Self>, dest: &RelPath) -> io::Result<()> {
        let dest_path = self.rename_into_place(dest)?;
        #[cfg(unix)]
        {
            let dest_dir = dest_path.parent().unwrap_or(&self.fs.root);
            sync_dir(dest_dir)?;
            if let Some(temp_dir) = self.path.parent().filter(|d| *d != dest_dir) {
                sync_dir(temp_dir)?;
            }
        }
        #[cfg(not(unix))]
        let _ = dest_path;
        Ok(())
    }
}

impl RealTemp {
    /// Makes the contents durable (if a batch sync did not already) and renames the file
    /// over `dest`; returns the destination's platform path.
    fn rename_into_place(&mut self, dest: &RelPath) -> io::Result<PathBuf> {
        let dest_path = self.fs.checked(Some(dest), false)?;
        if let (Some((mtime_ns, executable)), true) = (self.times, self.written_after_times) {
            apply_times_and_mode(self.file()?, mtime_ns, executable)?;
        }
        if !self.synced {
            self.sync_all()?;
        }
        // Closed before the rename: Windows cannot rename a file that is open without
        // FILE_SHARE_DELETE on every handle.
        drop(self.file.take());
        rename_replace(&self.path, &dest_path)?;
        self.persisted = true;
        Ok(dest_path)
    }
}

impl Drop for RealTemp {
    fn drop(&mut self) {
        if !self.persisted {
            drop(self.file.take());
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn p(s: &str) -> RelPath {
        RelPath::new(s).unwrap()
    }

    fn setup() -> (tempfile::TempDir, RealFs) {
        let dir = tempfile::tempdir().unwrap();
        let fs = RealFs::new(dir.path().to_path_buf());
        (dir, fs)
    }

    /// What a file's mtime reads back as: Windows keeps it in 100 ns units.
    fn on_disk(ns: i64) -> i64 {
        if cfg!(windows) { ns - ns % 100 } else { ns }
    }

    fn write_via_temp(fs: &RealFs, dest: &str, data: &[u8], mtime_ns: i64, exec: bool) {
        let dest = p(dest);
        let mut t = fs.create_temp(dest.parent().as_ref()).unwrap();
        t.write_all(data).unwrap();
        t.set_times_and_mode(mtime_ns, exec).unwrap();
        t.sync_all().unwrap();
        t.persist(&dest).unwrap();
    }

    #[test]
    fn temp_file_round_trip_sets_times_and_mode() {
        let (_d, fs) = setup();
        fs.create_dir(&p("sub")).unwrap();
        let mtime = 1_600_000_000_123_456_789;
        write_via_temp(&fs, "sub/f.txt", b"hello", mtime, true);
        let st = fs.stat(&p("sub/f.txt")).unwrap().unwrap();
        assert_eq!(st.kind, StatKind::File);
        assert_eq!(st.size, 5);
        assert_eq!(st.mtime_ns, on_disk(mtime));
        assert_eq!(st.executable, cfg!(unix));
        let mut s = String::new();
        fs.open(&p("sub/f.txt")).unwrap().read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello");
        // Replacing an existing file; the executable bit goes away again.
        write_via_temp(&fs, "sub/f.txt", b"bye", mtime + 1, false);
        let st = fs.stat(&p("sub/f.txt")).unwrap().unwrap();
        assert_eq!((st.size, st.mtime_ns, st.executable), (3, on_disk(mtime + 1), false));
        assert_eq!(fs.read_dir(Some(&p("sub"))).unwrap().len(), 1, "no temp file left behind");
    }

    #[test]
    fn writes_after_set_times_do_not_move_the_mtime() {
        let (_d, fs) = setup();
        let mut t = fs.create_temp(None).unwrap();
        t.set_times_and_mode(1_000_000_000, false).unwrap();
        t.write_all(b"late bytes").unwrap();
        t.persist(&p("f")).unwrap();
        assert_eq!(fs.stat(&p("f")).unwrap().unwrap().mtime_ns, 1_000_000_000);
    }

    #[test]
    fn dropped_temp_file_is_removed_and_temp_names_are_listed() {
        let (_d, fs) = setup();
        let mut t = fs.create_temp(None).unwrap();
        t.write_all(b"x").unwrap();
        let names: Vec<_> = fs.read_dir(None).unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names.len(), 1);
        assert!(names[0].starts_with(TEMP_PREFIX));
        drop(t);
        assert!(fs.read_dir(None).unwrap().is_empty());
    }

    #[test]
    fn rename_noreplace_refuses_to_replace() {
        let (_d, fs) = setup();
        write_via_temp(&fs, "a", b"a", 0, false);
        write_via_temp(&fs, "b", b"b", 0, false);
        let e = fs.rename_noreplace(&p("a"), &p("b")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        fs.rename_noreplace(&p("a"), &p("c")).unwrap();
        assert!(fs.stat(&p("a")).unwrap().is_none());
        assert_eq!(fs.stat(&p("c")).unwrap().unwrap().size, 1);
        assert_eq!(fs.rename_noreplace(&p("missing"), &p("d")).unwrap_err().kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn dirs_create_and_remove() {
        let (_d, fs) = setup();
        fs.create_dir(&p("d")).unwrap();
        fs.create_dir(&p("d")).unwrap(); // already there: fine
        write_via_temp(&fs, "d/f", b"", 0, false);
        assert!(fs.create_dir(&p("d/f")).is_err(), "a file is in the way");
        assert!(fs.remove_dir(&p("d")).is_err(), "not empty");
        fs.remove_file(&p("d/f")).unwrap();
        fs.remove_dir(&p("d")).unwrap();
        assert!(fs.stat(&p("d")).unwrap().is_none());
        assert!(fs.stat(&p("d/f")).unwrap().is_none());
    }

    #[test]
    fn root_exists_and_relative() {
        let (d, fs) = setup();
        assert!(fs.root_exists());
        assert!(!RealFs::new(d.path().join("nope")).root_exists());
        assert_eq!(fs.relative(&d.path().join("a").join("cafe\u{301}")), Some(p("a/caf\u{e9}")));
        assert_eq!(fs.relative(d.path()), None);
        assert_eq!(fs.relative(&d.path().join(format!("{TEMP_PREFIX}1"))), None);
    }

    #[test]
    fn clean_temp_files_removes_leftovers_everywhere() {
        let (d, fs) = setup();
        fs.create_dir(&p("x")).unwrap();
        // What a crash leaves: temporary files nobody holds open any more.
        std::fs::write(d.path().join(format!("{TEMP_PREFIX}0123456789abcdef")), b"partial").unwrap();
        std::fs::write(d.path().join("x").join(format!("{TEMP_PREFIX}fedcba9876543210")), b"partial").unwrap();
        std::fs::write(d.path().join("x").join("keep"), b"k").unwrap();
        assert_eq!(fs.clean_temp_files().unwrap(), 2);
        assert_eq!(fs.read_dir(None).unwrap().len(), 1);
        assert_eq!(fs.read_dir(Some(&p("x"))).unwrap().len(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn links_inside_the_folder_are_not_followed() {
        let (d, fs) = setup();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink(outside.path(), d.path().join("link")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), d.path().join("flink")).unwrap();
        assert_eq!(fs.stat(&p("link")).unwrap().unwrap().kind, StatKind::Symlink);
        assert!(fs.stat(&p("link/secret")).unwrap().is_none());
        assert!(fs.open(&p("link/secret")).is_err());
        assert!(fs.open(&p("flink")).is_err());
        assert!(fs.read_dir(Some(&p("link"))).is_err());
        assert!(fs.create_temp(Some(&p("link"))).is_err());
        let t = fs.create_temp(None).unwrap();
        assert!(t.persist(&p("link/secret")).is_err());
        assert_eq!(std::fs::read(outside.path().join("secret")).unwrap(), b"s");
    }

    #[test]
    fn mtime_conversion_handles_times_before_1970() {
        for ns in [0, 1, -1, -1_000_000_007, 1_700_000_000_000_000_001] {
            assert_eq!(system_time_to_ns(ns_to_system_time(ns)), on_disk(ns));
        }
    }

    #[test]
    fn verbatim_paths() {
        assert_eq!(verbatim(Path::new(r"C:\Users\ann\Docs")), PathBuf::from(r"\\?\C:\Users\ann\Docs"));
        assert_eq!(verbatim(Path::new(r"\\nas\share\Docs")), PathBuf::from(r"\\?\UNC\nas\share\Docs"));
        assert_eq!(verbatim(Path::new(r"\\?\D:\x")), PathBuf::from(r"\\?\D:\x"));
    }

    /// Deeper than Windows' classic 260-character limit.
    #[test]
    fn long_paths() {
        let (_d, fs) = setup();
        let mut rel = String::new();
        for i in 0..8 {
            if !rel.is_empty() {
                rel.push('/');
            }
            rel.push_str(&format!("{i}-a-directory-name-of-forty-characters-x"));
            fs.create_dir(&p(&rel)).unwrap();
        }
        let file = format!("{rel}/and-a-file-at-the-bottom-of-it-all.txt");
        assert!(fs.root().join(&file).as_os_str().len() > 300);
        write_via_temp(&fs, &file, b"deep", 0, false);
        let mut s = String::new();
        fs.open(&p(&file)).unwrap().read_to_string(&mut s).unwrap();
        assert_eq!(s, "deep");
        assert_eq!(fs.read_dir(Some(&p(&rel))).unwrap().len(), 1);
        assert_eq!(fs.clean_temp_files().unwrap(), 0);
        fs.remove_file(&p(&file)).unwrap();
        assert!(fs.stat(&p(&file)).unwrap().is_none());
    }

    #[cfg(windows)]
    #[test]
    fn names_windows_cannot_hold_are_refused_not_mangled() {
        let (_d, fs) = setup();
        for name in ["aux.txt", "CON", "a:b", "trailing.", "q?"] {
            let Ok(rel) = RelPath::new(name) else { continue };
            let e = fs.stat(&rel).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{name}");
            let t = fs.create_temp(None).unwrap();
            assert_eq!(t.persist(&rel).unwrap_err().kind(), io::ErrorKind::InvalidInput, "{name}");
        }
        assert!(fs.read_dir(None).unwrap().is_empty(), "nothing was written under another name");
    }

    /// A rename that changes only letter case really changes the name on disk (FAT, some
    /// network shares and Wine ignore a direct one).
    #[cfg(windows)]
    #[test]
    fn case_only_rename_changes_the_name_on_disk() {
        let (_d, fs) = setup();
        write_via_temp(&fs, "report.txt", b"r", 0, false);
        fs.rename_noreplace(&p("report.txt"), &p("Report.txt")).unwrap();
        let names: Vec<_> = fs.read_dir(None).unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["Report.txt"]);
        fs.create_dir(&p("dir")).unwrap();
        fs.rename_noreplace(&p("dir"), &p("DIR")).unwrap();
        let mut names: Vec<_> = fs.read_dir(None).unwrap().into_iter().map(|e| e.name).collect();
        names.sort();
        assert_eq!(names, ["DIR", "Report.txt"]);
        write_via_temp(&fs, "other.txt", b"o", 0, false);
        let e = fs.rename_noreplace(&p("other.txt"), &p("REPORT.TXT")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "another file is not another spelling");
    }

    /// Another program holding the destination open without sharing deletion blocks a
    /// replace: it fails with an explanation, the old contents stay, no temporary file is left;
    /// once the program lets go, the replace succeeds.
    #[cfg(windows)]
    #[test]
    fn replacing_a_file_another_program_holds_open() {
        use std::os::windows::fs::OpenOptionsExt;
        const FILE_SHARE_READ: u32 = 1;
        let (_d, fs) = setup();
        write_via_temp(&fs, "doc.txt", b"old", 0, false);
        let held = OpenOptions::new().read(true).share_mode(FILE_SHARE_READ).open(fs.root().join("doc.txt")).unwrap();
        let mut t = fs.create_temp(None).unwrap();
        t.write_all(b"new").unwrap();
        let e = t.persist(&p("doc.txt")).unwrap_err();
        assert!(e.to_string().contains("another program has the file open"), "{e}");
        assert_eq!(std::fs::read(fs.root().join("doc.txt")).unwrap(), b"old");
        assert_eq!(fs.read_dir(None).unwrap().len(), 1, "no temporary file left behind");
        drop(held);
        write_via_temp(&fs, "doc.txt", b"new", 0, false);
        assert_eq!(std::fs::read(fs.root().join("doc.txt")).unwrap(), b"new");
    }
}
