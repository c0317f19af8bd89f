//! `RelPath`: a folder-relative path that has been validated, the only kind of path that
//! crosses the network or reaches a disk operation.
//!
//! Rules (also in `docs/protocol.md`, "Paths"): UTF-8 in Unicode NFC, components separated by
//! `/`, no empty component, no `.` or `..`, no NUL, no leading or trailing `/`, at most
//! [`MAX_COMPONENT_BYTES`] per component and [`MAX_PATH_BYTES`] in all. Names that a particular
//! operating system cannot hold (`aux.txt` on Windows) are valid here; the client that cannot
//! store one reports it (see [`RelPath::windows_incompatibility`]).

use std::fmt;
use unicode_normalization::{UnicodeNormalization, is_nfc};

pub const MAX_PATH_BYTES: usize = 4096;
pub const MAX_COMPONENT_BYTES: usize = 255;
/// Longest path, in bytes of UTF-8, that a commit may give a new version
/// ([`RelPath::check_syncable`]): shorter than the wire allows, so that every computer of the
/// user can hold it below its folder's root. Linux takes 4096 bytes for a whole path, which
/// leaves 3 KiB for where the folder is; Windows, through `\\?\` paths, about 32,000
/// characters. (Each component is at most [`MAX_COMPONENT_BYTES`], which ext4, NTFS and APFS
/// all hold.) Paths already stored beyond it stay valid: they can be read, kept and deleted.
pub const MAX_SYNCED_PATH_BYTES: usize = 1024;
/// Prefix of the temporary files FileSync writes next to their destination; the scanner never
/// reports such names and they are never synced.
pub const TEMP_PREFIX: &str = ".filesync-tmp-";

#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RelPath(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path is empty")]
    Empty,
    #[error("path is longer than {MAX_PATH_BYTES} bytes")]
    TooLong,
    #[error("path component is longer than {MAX_COMPONENT_BYTES} bytes")]
    ComponentTooLong,
    #[error("path is absolute (starts with '/')")]
    Absolute,
    #[error("path has an empty component ('//' or a trailing '/')")]
    EmptyComponent,
    #[error("path has a '.' or '..' component")]
    DotComponent,
    #[error("path contains a NUL byte")]
    Nul,
    #[error("path is not in Unicode NFC")]
    NotNfc,
    #[error("path names a FileSync temporary file")]
    Internal,
    #[error(
        "path is {0} bytes long, and FileSync syncs paths of at most {MAX_SYNCED_PATH_BYTES} bytes so that every \
         computer can hold them: shorten its names or move it higher up"
    )]
    TooLongToSync(usize),
}

impl RelPath {
    /// Validates `s` exactly as it is (it must already be NFC): what the server does with a
    /// path that arrived from the network.
    pub fn new(s: impl Into<String>) -> Result<RelPath, PathError> {
        let s = s.into();
        validate(&s)?;
        if !is_nfc(&s) {
            return Err(PathError::NotNfc);
        }
        Ok(RelPath(s))
    }

    /// Normalizes `s` to NFC, then validates it: what a client does with a name it found on disk.
    pub fn normalize(s: &str) -> Result<RelPath, PathError> {
        if is_nfc(s) {
            return RelPath::new(s);
        }
        RelPath::new(s.nfc().collect::<String>())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }

    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// Number of components; `a` has depth 1, `a/b` depth 2.
    pub fn depth(&self) -> usize {
        self.0.bytes().filter(|&b| b == b'/').count() + 1
    }

    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    pub fn parent(&self) -> Option<RelPath> {
        self.0.rfind('/').map(|i| RelPath(self.0[..i].to_string()))
    }

    /// All proper ancestors, nearest first (`a/b/c` → `a/b`, `a`).
    pub fn ancestors(&self) -> impl Iterator<Item = &str> {
        let s = self.0.as_str();
        s.match_indices('/').rev().map(move |(i, _)| &s[..i])
    }

    /// Appends one validated component.
    pub fn join(&self, name: &str) -> Result<RelPath, PathError> {
        RelPath::new(format!("{}/{}", self.0, name))
    }

    /// Replaces the last component.
    pub fn with_file_name(&self, name: &str) -> Result<RelPath, PathError> {
        match self.parent() {
            Some(p) => p.join(name),
            None => RelPath::new(name),
        }
    }

    /// True when `self` is a proper ancestor of `other` (`a` of `a/b`, not of `ab`).
    pub fn is_ancestor_of(&self, other: &RelPath) -> bool {
        other.0.len() > self.0.len() && other.0.starts_with(&self.0) && other.0.as_bytes()[self.0.len()] == b'/'
    }

    /// Whether a new version may be committed at this path: at most
    /// [`MAX_SYNCED_PATH_BYTES`] long. (Deleting a longer path stored before is always allowed.)
    pub fn check_syncable(&self) -> Result<(), PathError> {
        if self.0.len() > MAX_SYNCED_PATH_BYTES {
            return Err(PathError::TooLongToSync(self.0.len()));
        }
        Ok(())
    }

    /// Why Windows cannot hold this path, if it cannot: reserved device names (`CON`,
    /// `aux.txt`, `COM1`), characters Windows forbids (`<>:"\|?*` and control characters), and
    /// components ending in a dot or a space.
    pub fn windows_incompatibility(&self) -> Option<String> {
        for c in self.components() {
            if let Some(ch) = c.chars().find(|&ch| "<>:\"\\|?*".contains(ch) || (ch as u32) < 32) {
                return Some(format!("'{c}' contains the character {ch:?}, which Windows does not allow"));
            }
            if c.ends_with('.') || c.ends_with(' ') {
                return Some(format!("'{c}' ends with a dot or a space, which Windows does not allow"));
            }
            let stem = c.split('.').next().unwrap_or(c).trim_end().to_ascii_uppercase();
            let reserved = matches!(stem.as_str(), "CON" | "PRN" | "AUX" | "NUL" | "CONIN$" | "CONOUT$")
                || ((stem.starts_with("COM") || stem.starts_with("LPT"))
                    && stem.len() == 4
                    && matches!(stem.as_bytes()[3], b'1'..=b'9' | 0xB9 | 0xB2 | 0xB3));
            if reserved {
                return Some(format!("'{c}' is a reserved device name on Windows"));
            }
        }
        None
    }
}

fn validate(s: &str) -> Result<(), PathError> {
    if s.is_empty() {
        return Err(PathError::Empty);
    }
    if s.len() > MAX_PATH_BYTES {
        return Err(PathError::TooLong);
    }
    if s.starts_with('/') {
        return Err(PathError::Absolute);
    }
    if s.contains('\0') {
        return Err(PathError::Nul);
    }
    for c in s.split('/') {
        if c.is_empty() {
            return Err(PathError::EmptyComponent);
        }
        if c == "." || c == ".." {
            return Err(PathError::DotComponent);
        }
        if c.len() > MAX_COMPONENT_BYTES {
            return Err(PathError::ComponentTooLong);
        }
        if c.starts_with(TEMP_PREFIX) {
            return Err(PathError::Internal);
        }
    }
    Ok(())
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl AsRef<str> for RelPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Sets and maps of paths can be asked about a `&str` (an ancestor, say): a `RelPath`
/// compares, orders and hashes exactly as its string.
impl std::borrow::Borrow<str> for RelPath {
    fn borrow(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_ordinary_paths() {
        for p in ["a", "a/b", "dir/sub/file.txt", "日本語/ファイル", ".hidden", "a..b", "..a", "with space"] {
            assert!(RelPath::new(p).is_ok(), "{p}");
        }
    }

    #[test]
    fn rejects_hostile_paths() {
        let cases = [
            ("", PathError::Empty),
            ("/etc/passwd", PathError::Absolute),
            ("../x", PathError::DotComponent),
            ("a/../../x", PathError::DotComponent),
            ("a/./b", PathError::DotComponent),
            ("..", PathError::DotComponent),
            ("a//b", PathError::EmptyComponent),
            ("a/", PathError::EmptyComponent),
            ("a\0b", PathError::Nul),
            ("a/.filesync-tmp-123", PathError::Internal),
        ];
        for (p, want) in cases {
            assert_eq!(RelPath::new(p), Err(want), "{p:?}");
        }
        assert_eq!(RelPath::new("x".repeat(256)), Err(PathError::ComponentTooLong));
        assert_eq!(RelPath::new(["y"; 2049].join("/")), Err(PathError::TooLong));
    }

    #[test]
    fn nfc_is_required_on_the_wire_and_applied_for_disk_names() {
        let nfd = "cafe\u{301}";
        assert_eq!(RelPath::new(nfd), Err(PathError::NotNfc));
        assert_eq!(RelPath::normalize(nfd).unwrap().as_str(), "caf\u{e9}");
    }

    #[test]
    fn relations() {
        let p = RelPath::new("a/b/c.txt").unwrap();
        assert_eq!(p.parent().unwrap().as_str(), "a/b");
        assert_eq!(p.file_name(), "c.txt");
        assert_eq!(p.depth(), 3);
        assert_eq!(p.ancestors().collect::<Vec<_>>(), vec!["a/b", "a"]);
        assert!(RelPath::new("a").unwrap().is_ancestor_of(&p));
        assert!(!RelPath::new("a/b/c").unwrap().is_ancestor_of(&p));
        assert!(!RelPath::new("ab").unwrap().is_ancestor_of(&RelPath::new("abc/d").unwrap()));
        assert_eq!(p.with_file_name("d").unwrap().as_str(), "a/b/d");
    }

    #[test]
    fn only_paths_every_computer_can_hold_are_synced() {
        let longest = format!("{}/{}", vec!["x".repeat(100); 9].join("/"), "y".repeat(1024 - 9 * 101));
        assert_eq!(longest.len(), MAX_SYNCED_PATH_BYTES);
        assert_eq!(RelPath::new(longest.clone()).unwrap().check_syncable(), Ok(()));
        let over = RelPath::new(format!("{longest}e")).unwrap();
        assert_eq!(over.check_syncable(), Err(PathError::TooLongToSync(1025)));
        assert!(over.check_syncable().unwrap_err().to_string().contains("at most 1024 bytes"));
    }

    #[test]
    fn windows_names() {
        for bad in ["aux.txt", "CON", "dir/com1.log", "a:b", "trailing.", "q?", "nul"] {
            assert!(RelPath::new(bad).unwrap().windows_incompatibility().is_some(), "{bad}");
        }
        for ok in ["auxiliary.txt", "console", "com10", "a.b", "dir/file"] {
            assert!(RelPath::new(ok).unwrap().windows_incompatibility().is_none(), "{ok}");
        }
    }

    proptest! {
        #[test]
        fn valid_paths_never_escape(s in "\\PC{0,64}") {
            if let Ok(p) = RelPath::new(s.clone()) {
                prop_assert!(!p.as_str().starts_with('/'));
                prop_assert!(p.components().all(|c| !c.is_empty() && c != "." && c != ".."));
                prop_assert!(!p.as_str().contains('\0'));
            }
        }

        #[test]
        fn normalize_is_idempotent(s in "[a-z\u{300}-\u{36f}\u{e0}-\u{ff}/]{1,20}") {
            if let Ok(p) = RelPath::normalize(&s) {
                prop_assert_eq!(RelPath::normalize(p.as_str()).unwrap(), p.clone());
                prop_assert!(RelPath::new(p.as_str()).is_ok());
            }
        }
    }
}
