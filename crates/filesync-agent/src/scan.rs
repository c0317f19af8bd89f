//! The scanner: walks a folder through the [`Filesystem`] seam and reports what is on disk —
//! every syncable file and directory with its metadata and content hash — plus what it had to
//! skip and why. Files whose size, mtime and inode match what the last sync recorded keep
//! their recorded hash; the rest are read and hashed in parallel. A file read within
//! [`RACY_WINDOW_NS`] of its mtime is *racy*: a write in the same clock tick would leave its
//! stat unchanged, so its stat must not vouch for its content later (git's rule). With ignore rules
//! ([`Scanner::scan_ignoring`]) an ignored path is not reported, and an ignored directory is
//! not even listed. The chunks of a file new here (no recorded entry) can be handed to a
//! [`ChunkSink`] as they are read: the engine sends them to the server at once, so that a new
//! file is read from disk once (`engine::early`).

use crate::filter::IgnoreRules;
use crate::fs::{DirEntry, Filesystem, Stat, StatKind};
use filesync_core::clock::{Clock, SystemClock};
use filesync_core::path::TEMP_PREFIX;
use filesync_core::{ChunkRef, Chunker, EntryKind, FileDigest, FileMeta, Hash, RelPath};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use unicode_normalization::{UnicodeNormalization, is_nfc};

/// What the last sync recorded about a local file: its stat then, and its synced metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownFile {
    pub size: u64,
    pub mtime_ns: i64,
    /// 0 when unknown (then only size and mtime are compared).
    pub ino: u64,
    pub meta: FileMeta,
}

/// One syncable path on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalEntry {
    /// For files, `hash` and `chunks` are filled in.
    pub meta: FileMeta,
    /// The stat the metadata was taken from (what to record with a base).
    pub stat: Stat,
    /// The file was read so soon after its mtime that a later write in the same clock tick
    /// would not change its stat: a base recorded from it must not trust the stat.
    pub racy: bool,
}

/// How close to its mtime a file may be read and still be racy: the coarsest timestamps a
/// supported file system keeps (FAT: 2 s; ext3, HFS+ and network shares: 1 s; Linux's
/// own clock ticks every few ms even on ext4).
pub const RACY_WINDOW_NS: i64 = 2_000_000_000;

/// Whether a file with `mtime_ns`, read (or written) at `at_ns`, is racy; a future mtime is.
pub fn is_racy(mtime_ns: i64, at_ns: i64) -> bool {
    at_ns.saturating_sub(mtime_ns) < RACY_WINDOW_NS
}

/// A path the scanner did not report, and why (shown to the user).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// The path as found on disk (lossily converted when not Unicode).
    pub path: String,
    pub reason: String,
}

/// The result of a scan.
///
/// A path absent from `entries` is not necessarily gone: it may be skipped (unreadable, a
/// symbolic link, changing while read, in a directory that could not be listed). Before
/// treating an absent path as deleted, check [`ScanOutput::skipped_paths`]; otherwise an
/// unreadable directory would look like a deletion of everything in it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanOutput {
    pub entries: BTreeMap<RelPath, LocalEntry>,
    /// Sorted by path.
    pub skipped: Vec<Skipped>,
}

impl ScanOutput {
    /// The skipped paths as a set that answers "was this path, or a directory above it,
    /// skipped?" in time proportional to the path's depth.
    pub fn skipped_paths(&self) -> SkippedPaths {
        SkippedPaths(self.skipped.iter().map(|s| s.path.nfc().collect()).collect())
    }
}

/// See [`ScanOutput::skipped_paths`].
#[derive(Clone, Debug, Default)]
pub struct SkippedPaths(HashSet<String>);

impl SkippedPaths {
    /// True when `path` or one of its ancestors was skipped: its absence from the scan says
    /// nothing about whether it still exists.
    pub fn covers(&self, path: &RelPath) -> bool {
        !self.0.is_empty() && (self.0.contains(path.as_str()) || path.ancestors().any(|a| self.0.contains(a)))
    }
}

/// Scans the whole folder. Names not in NFC are renamed to NFC on disk (when the NFC name is
/// free); use [`Scanner`] with `rename: false` to skip them instead.
///
/// Fails only when the folder root cannot be listed (a missing root must never look like a
/// folder whose files were all deleted).
pub fn scan(fs: &dyn Filesystem, known: &HashMap<RelPath, KnownFile>, chunker: &Chunker) -> io::Result<ScanOutput> {
    Scanner::new(fs, known, chunker).scan()
}

/// Examines only `paths` (and the trees below those that are directories): the file
/// watcher's quick path. Returns entries for those that exist; one that is neither in
/// `entries` nor covered by `skipped` is gone.
pub fn scan_paths(
    fs: &dyn Filesystem,
    paths: &[RelPath],
    known: &HashMap<RelPath, KnownFile>,
    chunker: &Chunker,
) -> io::Result<ScanOutput> {
    Scanner::new(fs, known, chunker).scan_paths(paths)
}

/// On a case-insensitive file system, the first of `paths` (or of their ancestors) that the
/// disk holds under another spelling — `Docs/a.txt` where the disk has `docs/` — or whose
/// directory cannot be listed. A pass over paths sees only the spellings it was given, so
/// when this returns `Some` it must look at the whole folder: name clashes and case-only
/// renames are decided across spellings. `None` on a case-sensitive file system.
pub fn spelled_otherwise_on_disk(fs: &dyn Filesystem, paths: &[RelPath]) -> Option<RelPath> {
    if !fs.case_insensitive() {
        return None;
    }
    let mut listings: HashMap<Option<RelPath>, Option<Vec<String>>> = HashMap::new();
    for path in paths {
        let mut parent: Option<RelPath> = None;
        for name in path.as_str().split('/') {
            let Ok(here) = join(parent.as_ref(), name) else { return Some(path.clone()) };
            let listing = listings.entry(parent.clone()).or_insert_with(|| match fs.read_dir(parent.as_ref()) {
                Ok(l) => Some(l.into_iter().map(|e| e.name).collect()),
                Err(e) if is_gone(&e) => Some(Vec::new()),
                Err(_) => None,
            });
            let Some(names) = listing else { return Some(here) };
            let folded = crate::names::fold(name);
            match names.iter().find(|n| crate::names::fold(n) == folded) {
                // Not on disk under any spelling: neither is anything below it.
                None => break,
                Some(n) if n == name => parent = Some(here),
                Some(_) => return Some(here),
            }
        }
    }
    None
}

/// Where the scanner hands the chunks of the files new here (no recorded entry) as it reads
/// them.
pub trait ChunkSink: Sync {
    /// A new file of `size` bytes is about to be read: where its chunks go, if anywhere.
    fn open(&self, path: &RelPath, size: u64) -> Option<Box<dyn FileChunks + '_>>;
}

/// The chunks of one file being read, in order.
pub trait FileChunks: Send {
    fn chunk(&mut self, chunk: ChunkRef, data: &[u8]);
    /// The file was read to its end with its stat unchanged (`true`: the chunks handed over
    /// are the file), or the read failed or the file changed meanwhile (`false`).
    fn end(self: Box<Self>, whole: bool);
}

/// The scanner with all its inputs; [`scan`] and [`scan_paths`] are shorthands for the
/// common case.
#[derive(Clone, Copy)]
pub struct Scanner<'a> {
    pub fs: &'a dyn Filesystem,
    /// Whether to rename a non-NFC name to NFC on disk; `false`: skip such names.
    pub rename: bool,
    pub known: &'a HashMap<RelPath, KnownFile>,
    pub chunker: &'a Chunker,
    /// What "now" is when judging whether a file's mtime is racy.
    pub clock: &'a dyn Clock,
    /// Takes the chunks of new files as they are read.
    pub sink: Option<&'a dyn ChunkSink>,
    /// Files read at once: 0 for as many as the machine has cores (a simulation reads one at
    /// a time, so that what the sink sends comes in the same order on every run).
    pub threads: usize,
    /// Whether a big new file written a moment ago waits until it settles ([`SETTLE_NS`]).
    pub settle: bool,
}

impl<'a> Scanner<'a> {
    /// A scanner of `fs` with the usual settings: non-NFC names renamed, the system's clock, no
    /// sink, one file per core at once, files taken as they are.
    pub fn new(fs: &'a dyn Filesystem, known: &'a HashMap<RelPath, KnownFile>, chunker: &'a Chunker) -> Scanner<'a> {
        Scanner { fs, rename: true, known, chunker, clock: &SystemClock, sink: None, threads: 0, settle: false }
    }

    pub fn scan(&self) -> io::Result<ScanOutput> {
        self.walk(None)
    }

    /// [`Scanner::scan`] leaving out what `rules` ignore: such paths are neither reported nor
    /// skipped, and ignored directories are not descended into.
    pub fn scan_ignoring(&self, rules: &IgnoreRules) -> io::Result<ScanOutput> {
        self.walk(Some(rules))
    }

    fn walk(&self, rules: Option<&IgnoreRules>) -> io::Result<ScanOutput> {
        let mut walk = Walk::new(self, rules);
        let listing = walk.read_root()?;
        walk.visit_listing(None, &listing, None);
        walk.walk_pending();
        Ok(walk.finish())
    }

    pub fn scan_paths(&self, paths: &[RelPath]) -> io::Result<ScanOutput> {
        self.walk_paths(paths, None)
    }

    /// [`Scanner::scan_paths`] leaving out what `rules` ignore: a requested path that is
    /// ignored, or below an ignored directory, is neither reported nor walked.
    pub fn scan_paths_ignoring(&self, paths: &[RelPath], rules: &IgnoreRules) -> io::Result<ScanOutput> {
        let wanted: Vec<RelPath> = paths
            .iter()
            .filter(|p| !p.ancestors().any(|a| RelPath::new(a).is_ok_and(|a| rules.matches(&a, true))))
            .cloned()
            .collect();
        self.walk_paths(&wanted, Some(rules))
    }

    fn walk_paths(&self, paths: &[RelPath], rules: Option<&IgnoreRules>) -> io::Result<ScanOutput> {
        let mut walk = Walk::new(self, rules);
        // A path below another requested one is covered by that one's walk (or, if the
        // ancestor is not a directory, cannot exist).
        let requested: HashSet<&str> = paths.iter().map(RelPath::as_str).collect();
        let mut by_dir: BTreeMap<Option<RelPath>, HashSet<&str>> = BTreeMap::new();
        for p in paths {
            if !p.ancestors().any(|a| requested.contains(a)) {
                by_dir.entry(p.parent()).or_default().insert(p.file_name());
            }
        }
        for (dir, names) in &by_dir {
            let listing = match dir {
                None => walk.read_root()?,
                Some(d) => match self.fs.read_dir(Some(d)) {
                    Ok(l) => l,
                    Err(e) if is_gone(&e) => continue, // nothing there: all of them are gone
                    Err(e) => {
                        for n in names {
                            walk.skip(format!("{d}/{n}"), format!("cannot list '{d}': {}", describe(&e)));
                        }
                        continue;
                    }
                },
            };
            walk.visit_listing(dir.as_ref(), &listing, Some(names));
        }
        walk.walk_pending();
        Ok(walk.finish())
    }
}

const SYMLINK_REASON: &str = "symbolic links are not synced";
const SPECIAL_REASON: &str = "special files (sockets, devices, pipes) are not synced";
const VANISHED_REASON: &str = "vanished while scanning";
/// Why a file is skipped when it changed while it was read: someone is still writing it. The
/// agent tries it again shortly and counts it as waiting meanwhile (see [`is_changing`]).
pub const CHANGING_REASON: &str =
    "file is changing: it was modified while it was read; it will be synced once it is stable";

/// A file new here (no recorded entry) of at least this size whose mtime was less than
/// [`SETTLE_NS`] old when the scan had read it is probably still being written — a copy in
/// progress, or a new version saved under a temporary name that is renamed over the file
/// once written (as editors save). It waits as a changing file. Committing it would send the
/// part written so far to every computer (and a temporary file whole, where its rename would
/// travel as a small delta of the file it replaces). A big file that took a while to read
/// without changing is settled by then.
pub const SETTLE_MIN_BYTES: u64 = 16 << 20;
pub const SETTLE_NS: i64 = 1_000_000_000;

/// Whether a skipped item's reason is [`CHANGING_REASON`]: the file is still being written.
pub fn is_changing(reason: &str) -> bool {
    reason == CHANGING_REASON
}

fn is_gone(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory)
}

fn describe(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => VANISHED_REASON.to_string(),
        io::ErrorKind::PermissionDenied => format!("permission denied ({e}); check its permissions"),
        _ => format!("cannot read: {e}"),
    }
}

fn shown(dir: Option<&RelPath>, name: &str) -> String {
    match dir {
        Some(d) => format!("{d}/{name}"),
        None => name.to_string(),
    }
}

fn join(dir: Option<&RelPath>, name: &str) -> Result<RelPath, filesync_core::PathError> {
    match dir {
        Some(d) => d.join(name),
        None => RelPath::new(name),
    }
}

/// The state of one scan: listing is sequential, hashing happens at the end in parallel.
struct Walk<'s, 'a> {
    s: &'s Scanner<'a>,
    rules: Option<&'s IgnoreRules>,
    entries: BTreeMap<RelPath, LocalEntry>,
    skipped: Vec<Skipped>,
    /// Files that must be read.
    to_hash: Vec<RelPath>,
    /// Directories found but not listed yet (a stack, so the walk needs no recursion).
    pending: Vec<RelPath>,
}

impl<'s, 'a> Walk<'s, 'a> {
    fn new(s: &'s Scanner<'a>, rules: Option<&'s IgnoreRules>) -> Self {
        Walk { s, rules, entries: BTreeMap::new(), skipped: Vec::new(), to_hash: Vec::new(), pending: Vec::new() }
    }

    fn read_root(&self) -> io::Result<Vec<DirEntry>> {
        if !self.s.fs.root_exists() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "the folder root does not exist or is not a directory",
            ));
        }
        self.s.fs.read_dir(None)
    }

    fn skip(&mut self, path: String, reason: impl Into<String>) {
        self.skipped.push(Skipped { path, reason: reason.into() });
    }

    fn walk_pending(&mut self) {
        while let Some(dir) = self.pending.pop() {
            match self.s.fs.read_dir(Some(&dir)) {
                Ok(listing) => self.visit_listing(Some(&dir), &listing, None),
                Err(e) => {
                    // Not reported as an (empty) directory: that would read as "everything in
                    // it was deleted".
                    self.entries.remove(&dir);
                    let reason = if is_gone(&e) {
                        VANISHED_REASON.to_string()
                    } else {
                        format!("cannot list directory: {}", describe(&e))
                    };
                    self.skip(dir.into_string(), reason);
                }
            }
        }
    }

    /// Visits the entries of `listing` (of `dir`), or only those whose NFC name is in `only`.
    fn visit_listing(&mut self, dir: Option<&RelPath>, listing: &[DirEntry], only: Option<&HashSet<&str>>) {
        for entry in listing {
            if let Some(only) = only {
                let wanted = if is_nfc(&entry.name) {
                    only.contains(entry.name.as_str())
                } else {
                    only.contains(entry.name.nfc().collect::<String>().as_str())
                };
                if !wanted || !entry.name_is_unicode {
                    continue;
                }
            }
            self.visit(dir, listing, entry);
        }
    }

    fn visit(&mut self, dir: Option<&RelPath>, listing: &[DirEntry], entry: &DirEntry) {
        let name = entry.name.as_str();
        if name.starts_with(TEMP_PREFIX) {
            return;
        }
        if let Some(rules) = self.rules
            && entry.name_is_unicode
        {
            let nfc: String = name.nfc().collect();
            if join(dir, &nfc).is_ok_and(|p| rules.matches(&p, entry.stat.kind == StatKind::Dir)) {
                return; // its parents were checked on the way down
            }
        }
        if !entry.name_is_unicode {
            let reason = "the name is not valid Unicode (UTF-8); rename it to sync it";
            return self.skip(shown(dir, name), reason);
        }
        match entry.stat.kind {
            StatKind::Symlink => return self.skip(shown(dir, name), SYMLINK_REASON),
            StatKind::Other => return self.skip(shown(dir, name), SPECIAL_REASON),
            StatKind::File | StatKind::Dir => {}
        }
        if is_nfc(name) {
            match join(dir, name) {
                Ok(path) => self.add(path, entry.stat),
                Err(e) => self.skip(shown(dir, name), format!("the name cannot be synced: {e}")),
            }
            return;
        }
        self.normalize(dir, listing, entry);
    }

    /// A name not in NFC (typically NFD, from macOS): renamed on disk to its NFC form so that
    /// every device sees the same bytes, unless that name is taken.
    fn normalize(&mut self, dir: Option<&RelPath>, listing: &[DirEntry], entry: &DirEntry) {
        let name = entry.name.as_str();
        let nfc: String = name.nfc().collect();
        let path = match join(dir, &nfc) {
            Ok(p) => p,
            Err(e) => return self.skip(shown(dir, name), format!("the name cannot be synced: {e}")),
        };
        let taken = format!(
            "the name is not in Unicode NFC, and '{nfc}' (the same name in NFC) also exists; rename one of them"
        );
        // Compared against the listing, not with `stat`: on a normalization-insensitive disk
        // (APFS) `stat` of the NFC name finds this very entry.
        if listing.iter().any(|e| e.name == nfc) {
            return self.skip(shown(dir, name), taken);
        }
        if !self.s.rename {
            return self
                .skip(shown(dir, name), format!("the name is not in Unicode NFC; rename it to '{nfc}' to sync it"));
        }
        match self.s.fs.rename_listed_noreplace(dir, name, &path) {
            Ok(()) => {
                tracing::info!(from = %shown(dir, name), to = %path, "renamed to Unicode NFC");
                match self.s.fs.stat(&path) {
                    Ok(Some(st)) => self.add(path, st),
                    Ok(None) => self.skip(path.into_string(), VANISHED_REASON),
                    Err(e) => self.skip(path.into_string(), describe(&e)),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => self.skip(shown(dir, name), taken),
            Err(e) => self.skip(
                shown(dir, name),
                format!("the name is not in Unicode NFC and renaming it to '{nfc}' failed: {e}"),
            ),
        }
    }

    fn add(&mut self, path: RelPath, stat: Stat) {
        match stat.kind {
            StatKind::Dir => {
                self.entries.insert(path.clone(), LocalEntry { meta: FileMeta::dir(stat.mtime_ns), stat, racy: false });
                self.pending.push(path);
            }
            StatKind::File => match self.s.known.get(&path).and_then(|k| reuse(k, &stat)) {
                Some(meta) => {
                    self.entries.insert(path, LocalEntry { meta, stat, racy: false });
                }
                None => self.to_hash.push(path),
            },
            StatKind::Symlink => self.skip(path.into_string(), SYMLINK_REASON),
            StatKind::Other => self.skip(path.into_string(), SPECIAL_REASON),
        }
    }

    fn finish(mut self) -> ScanOutput {
        let work = std::mem::take(&mut self.to_hash);
        for (path, result) in hash_all(self.s, &work) {
            match result {
                Ok(e) => {
                    self.entries.insert(path, e);
                }
                Err(reason) => self.skip(path.into_string(), reason),
            }
        }
        self.skipped.sort_by(|a, b| a.path.cmp(&b.path));
        ScanOutput { entries: self.entries, skipped: self.skipped }
    }
}

/// The recorded metadata of a file that has not changed since it was recorded (same size,
/// mtime and — where both are known — inode), with the current mtime and executable bit (a
/// `chmod` does not move the mtime).
/// The synced metadata of `known`, if the file at `stat` is still the one it was recorded with
/// (same size, mtime and inode as then, and that stat was trusted): then it need not be read.
pub(crate) fn reuse(known: &KnownFile, stat: &Stat) -> Option<FileMeta> {
    let same = known.meta.kind == EntryKind::File
        && known.meta.size == stat.size
        && known.size == stat.size
        && known.mtime_ns == stat.mtime_ns
        && (known.ino == 0 || stat.ino == 0 || known.ino == stat.ino);
    same.then(|| FileMeta { mtime_ns: stat.mtime_ns, executable: stat.executable, ..known.meta.clone() })
}

/// Hashes `work` on up to `available_parallelism` threads.
fn hash_all(s: &Scanner<'_>, work: &[RelPath]) -> Vec<(RelPath, Result<LocalEntry, String>)> {
    // Asked once: on Linux the answer reads the cgroup's files, and a pass asks for every scan
    // (2 % of a simulated history's time).
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let threads = if s.threads == 0 { cores } else { s.threads }.min(work.len());
    if threads <= 1 {
        return work.iter().map(|p| (p.clone(), hash_one(s, p))).collect();
    }
    let next = AtomicUsize::new(0);
    let worker = || {
        let mut out = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(p) = work.get(i) else { break out };
            out.push((p.clone(), hash_one(s, p)));
        }
    };
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads).map(|_| scope.spawn(worker)).collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    })
}

/// `chunker.digest_with(r, on_chunk)`, with a shortcut for files smaller than the minimum
/// chunk: those are one chunk (see `filesync_core::chunking`), read whole and hashed without
/// the chunker's machinery.
fn digest(
    chunker: &Chunker,
    mut r: impl io::Read,
    expected_size: u64,
    mut on_chunk: impl FnMut(ChunkRef, &[u8]) -> io::Result<()>,
) -> io::Result<FileDigest> {
    if expected_size >= u64::from(chunker.min) {
        return chunker.digest_with(r, |_, c, data| on_chunk(c, data));
    }
    let mut data = Vec::with_capacity(expected_size as usize + 1);
    r.read_to_end(&mut data)?;
    if data.len() >= chunker.min as usize {
        // It grew meanwhile.
        return chunker.digest_with(&data[..], |_, c, data| on_chunk(c, data));
    }
    let chunks =
        if data.is_empty() { Vec::new() } else { vec![ChunkRef { hash: Hash::of(&data), len: data.len() as u32 }] };
    if let Some(c) = chunks.first() {
        on_chunk(*c, &data)?;
    }
    Ok(FileDigest { size: data.len() as u64, hash: filesync_core::file_hash(&chunks), chunks })
}

/// While a big file is read, its stat is looked at again after every this many of the
/// chunker's largest chunks (64 MiB with the usual chunker): a file written meanwhile, or
/// renamed away (the temporary file an editor renames over the original once written), is
/// left as soon as that shows rather than read to its end, and the pass goes on to what
/// replaced it.
const RECHECK_EVERY_MAX_CHUNKS: u64 = 16;

/// Reads and digests one file. The stat before and after must agree (else the file changed
/// while it was read: one more try, then it is skipped as changing); a big file's is also
/// looked at on the way ([`RECHECK_EVERY_MAX_CHUNKS`]). A file new here goes to
/// the scanner's sink as it is read.
fn hash_one(s: &Scanner<'_>, path: &RelPath) -> Result<LocalEntry, String> {
    let (fs, clock, chunker) = (s.fs, s.clock, s.chunker);
    let stat_file = |fs: &dyn Filesystem| match fs.stat(path) {
        Ok(Some(st)) if st.kind == StatKind::File => Ok(st),
        Ok(Some(st)) if st.kind == StatKind::Symlink => Err(SYMLINK_REASON.to_string()),
        Ok(Some(_)) => Err("changed while scanning: it is no longer a regular file".to_string()),
        Ok(None) => Err(VANISHED_REASON.to_string()),
        Err(e) => Err(describe(&e)),
    };
    let new = !s.known.contains_key(path);
    let recheck = RECHECK_EVERY_MAX_CHUNKS * u64::from(chunker.max);
    for _ in 0..2 {
        let read_at = clock.now_ns();
        let before = stat_file(fs)?;
        let mut sink = s.sink.filter(|_| new).and_then(|k| k.open(path, before.size));
        let (mut read, mut changed) = (0u64, false);
        let digest = fs.open(path).and_then(|r| {
            digest(chunker, r, before.size, |c, data| {
                if let Some(k) = &mut sink {
                    k.chunk(c, data);
                }
                read += data.len() as u64;
                if read % recheck < data.len() as u64 && !matches!(fs.stat(path), Ok(Some(st)) if st == before) {
                    changed = true;
                    return Err(io::Error::other(CHANGING_REASON));
                }
                Ok(())
            })
        });
        if changed {
            if let Some(k) = sink {
                k.end(false);
            }
            continue;
        }
        let digest = digest.map_err(|e| describe(&e));
        let read = digest.and_then(|d| Ok((stat_file(fs)?, d)));
        let whole = matches!(&read, Ok((after, d)) if *after == before && d.size == before.size);
        let quiet = clock.now_ns().saturating_sub(before.mtime_ns);
        let settling = s.settle && whole && new && before.size >= SETTLE_MIN_BYTES && (0..SETTLE_NS).contains(&quiet);
        if let Some(k) = sink {
            k.end(whole && !settling);
        }
        let (_, digest) = read?;
        if settling {
            return Err(CHANGING_REASON.to_string());
        }
        if whole {
            let meta = FileMeta {
                kind: EntryKind::File,
                size: digest.size,
                mtime_ns: before.mtime_ns,
                executable: before.executable,
                hash: digest.hash,
                chunks: digest.chunks,
            };
            return Ok(LocalEntry { meta, stat: before, racy: is_racy(before.mtime_ns, read_at) });
        }
    }
    Err(CHANGING_REASON.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memfs::MemFs;

    fn p(s: &str) -> RelPath {
        RelPath::new(s).unwrap()
    }

    fn scan_mem(fs: &MemFs, known: &HashMap<RelPath, KnownFile>) -> ScanOutput {
        Scanner::new(fs, known, &Chunker::tiny()).scan().unwrap()
    }

    fn known_from(out: &ScanOutput) -> HashMap<RelPath, KnownFile> {
        out.entries
            .iter()
            .filter(|(_, e)| e.meta.kind == EntryKind::File)
            .map(|(p, e)| {
                let k =
                    KnownFile { size: e.stat.size, mtime_ns: e.stat.mtime_ns, ino: e.stat.ino, meta: e.meta.clone() };
                (p.clone(), k)
            })
            .collect()
    }

    #[test]
    fn reports_files_dirs_and_hashes() {
        let fs = MemFs::new();
        fs.write("a/b.txt", "hello");
        fs.write("empty", "");
        fs.mkdir("d/e");
        let out = scan_mem(&fs, &HashMap::new());
        let paths: Vec<_> = out.entries.keys().map(RelPath::as_str).collect();
        assert_eq!(paths, ["a", "a/b.txt", "d", "d/e", "empty"]);
        let b = &out.entries[&p("a/b.txt")].meta;
        assert_eq!((b.kind, b.size, b.hash), (EntryKind::File, 5, Chunker::default().digest_bytes(b"hello").hash));
        assert_eq!(b.chunks.len(), 1);
        let e = &out.entries[&p("empty")].meta;
        assert_eq!((e.size, e.hash, e.chunks.len()), (0, filesync_core::file_hash(&[]), 0));
        assert_eq!(out.entries[&p("d")].meta.kind, EntryKind::Dir);
        assert!(out.skipped.is_empty());
    }

    #[test]
    fn reuses_known_metadata_only_when_stat_matches() {
        let fs = MemFs::new();
        fs.write("f", "content");
        let mut known = known_from(&scan_mem(&fs, &HashMap::new()));
        let opens = fs.total_opens();
        known.get_mut(&p("f")).unwrap().meta.hash = Hash([7; 32]); // deliberately wrong
        fs.set_executable("f", true);
        let out = scan_mem(&fs, &known);
        assert_eq!(fs.total_opens(), opens, "not read again");
        assert_eq!(out.entries[&p("f")].meta.hash, Hash([7; 32]));
        assert!(out.entries[&p("f")].meta.executable, "the executable bit comes from the stat");
        // A different inode (replaced by another file of the same size and mtime): re-read.
        known.get_mut(&p("f")).unwrap().ino += 1000;
        let out = scan_mem(&fs, &known);
        assert_eq!(out.entries[&p("f")].meta.hash, Chunker::default().digest_bytes(b"content").hash);
        assert_eq!(fs.total_opens(), opens + 1);
    }

    #[test]
    fn unreadable_and_changing_files_are_skipped_with_a_reason() {
        let fs = MemFs::new();
        fs.write("locked", "x");
        fs.write("busy", "y");
        fs.write("settles", "z");
        fs.write("ok", "o");
        fs.fail_open("locked", io::ErrorKind::PermissionDenied);
        fs.change_on_open("busy", 10);
        fs.change_on_open("settles", 1);
        let out = scan_mem(&fs, &HashMap::new());
        let reasons: HashMap<_, _> = out.skipped.iter().map(|s| (s.path.as_str(), s.reason.as_str())).collect();
        assert!(reasons["locked"].starts_with("permission denied"), "{reasons:?}");
        assert!(reasons["busy"].starts_with("file is changing"), "{reasons:?}");
        assert_eq!(reasons.len(), 2);
        assert_eq!(out.entries[&p("settles")].meta.hash, Chunker::default().digest_bytes(b"z!").hash);
        assert!(out.entries.contains_key(&p("ok")));
        let skipped = out.skipped_paths();
        assert!(skipped.covers(&p("locked")));
        assert!(!skipped.covers(&p("ok")));
    }

    #[test]
    fn a_big_new_file_written_a_moment_ago_waits_until_it_settles() {
        let fs = MemFs::new();
        let big = vec![7u8; SETTLE_MIN_BYTES as usize];
        for name in ["new", "known", "small", "future"] {
            fs.write(name, if name == "small" { &big[1..] } else { &big[..] });
        }
        fs.set_mtime("future", fs.now() + 3_600_000_000_000);
        let mut known = HashMap::new();
        known.insert(p("known"), KnownFile { size: 1, mtime_ns: 0, ino: 0, meta: FileMeta::dir(0) });
        let scan = |fs: &MemFs, settle: bool| {
            Scanner { clock: fs, settle, ..Scanner::new(fs, &known, &Chunker::tiny()) }.scan().unwrap()
        };
        assert!(scan(&fs, false).entries.contains_key(&p("new")), "a one-off sync takes it as it is");
        let out = scan(&fs, true);
        let waiting: Vec<&str> =
            out.skipped.iter().filter(|s| is_changing(&s.reason)).map(|s| s.path.as_str()).collect();
        assert_eq!(waiting, ["new"], "not taken while it may still be written");
        for read in ["known", "small", "future"] {
            assert!(out.entries.contains_key(&p(read)), "{read}");
        }
        fs.advance_clock(SETTLE_NS);
        assert!(scan(&fs, true).entries.contains_key(&p("new")), "taken once it has been quiet for a moment");
    }

    #[test]
    fn nfd_names_are_renamed_unless_the_nfc_name_exists() {
        let fs = MemFs::new();
        fs.write("cafe\u{301}/Lo\u{308}we.txt", "x");
        fs.write("a\u{301}", "1");
        fs.write("\u{e1}", "2");
        let out = scan_mem(&fs, &HashMap::new());
        assert!(out.entries.contains_key(&p("caf\u{e9}/L\u{f6}we.txt")));
        assert!(fs.exists("caf\u{e9}/L\u{f6}we.txt"));
        assert_eq!(out.skipped.len(), 1);
        assert_eq!(out.skipped[0].path, "a\u{301}");
        assert!(out.skipped[0].reason.contains("also exists"));
        assert_eq!(fs.read("a\u{301}").unwrap(), b"1", "left alone");

        // With renaming off the name is skipped, not renamed.
        let fs = MemFs::new();
        fs.write("cafe\u{301}", "x");
        let known = HashMap::new();
        let out = Scanner { rename: false, ..Scanner::new(&fs, &known, &Chunker::tiny()) }.scan().unwrap();
        assert!(out.entries.is_empty());
        assert!(out.skipped[0].reason.contains("NFC"));
        assert!(fs.exists("cafe\u{301}"));
    }

    #[test]
    fn unlistable_directory_is_skipped_not_reported_empty() {
        struct NoList(MemFs);
        impl Filesystem for NoList {
            fn read_dir(&self, dir: Option<&RelPath>) -> io::Result<Vec<DirEntry>> {
                if dir.is_some_and(|d| d.as_str() == "secret") {
                    return Err(io::Error::new(io::ErrorKind::PermissionDenied, "no"));
                }
                self.0.read_dir(dir)
            }
            fn stat(&self, path: &RelPath) -> io::Result<Option<Stat>> {
                self.0.stat(path)
            }
            fn root_exists(&self) -> bool {
                self.0.root_exists()
            }
            fn open(&self, path: &RelPath) -> io::Result<Box<dyn crate::fs::ReadSeek>> {
                self.0.open(path)
            }
            fn create_dir(&self, path: &RelPath) -> io::Result<()> {
                self.0.create_dir(path)
            }
            fn remove_file(&self, path: &RelPath) -> io::Result<()> {
                self.0.remove_file(path)
            }
            fn remove_dir(&self, path: &RelPath) -> io::Result<()> {
                self.0.remove_dir(path)
            }
            fn rename_noreplace(&self, from: &RelPath, to: &RelPath) -> io::Result<()> {
                self.0.rename_noreplace(from, to)
            }
            fn rename_listed_noreplace(&self, dir: Option<&RelPath>, name: &str, to: &RelPath) -> io::Result<()> {
                Filesystem::rename_listed_noreplace(&self.0, dir, name, to)
            }
            fn set_times_and_mode(&self, path: &RelPath, mtime_ns: i64, executable: bool) -> io::Result<()> {
                self.0.set_times_and_mode(path, mtime_ns, executable)
            }
            fn create_temp(&self, dir: Option<&RelPath>) -> io::Result<Box<dyn crate::fs::TempFile>> {
                self.0.create_temp(dir)
            }
            fn clean_temp_files_except(&self, keep: &std::collections::HashSet<String>) -> io::Result<usize> {
                self.0.clean_temp_files_except(keep)
            }
        }
        let mem = MemFs::new();
        mem.write("secret/a", "1");
        mem.write("open/b", "2");
        let out = scan(&NoList(mem), &HashMap::new(), &Chunker::tiny()).unwrap();
        assert!(!out.entries.contains_key(&p("secret")));
        assert!(out.entries.contains_key(&p("open/b")));
        assert!(out.skipped_paths().covers(&p("secret/a")));
        assert!(out.skipped[0].reason.contains("permission denied"), "{:?}", out.skipped);
    }

    #[test]
    fn ignored_paths_are_not_reported_and_ignored_directories_not_listed() {
        let fs = MemFs::new();
        fs.write(".filesyncignore", "build/\n*.log\n");
        fs.write("keep.txt", "k");
        fs.write("debug.log", "l");
        fs.write("sub/.DS_Store", "junk");
        fs.write("build/out.o", "o");
        fs.symlink("build/link");
        let rules = IgnoreRules::load(&fs);
        let known = HashMap::new();
        let out = Scanner::new(&fs, &known, &Chunker::tiny()).scan_ignoring(&rules).unwrap();
        let paths: Vec<_> = out.entries.keys().map(RelPath::as_str).collect();
        assert_eq!(paths, [".filesyncignore", "keep.txt", "sub"]);
        assert!(out.skipped.is_empty(), "nothing under an ignored directory is even looked at: {:?}", out.skipped);
        assert_eq!(fs.open_count("build/out.o"), 0);
    }

    #[test]
    fn missing_root_is_an_error_not_an_empty_folder() {
        let fs = MemFs::new();
        fs.write("a", "1");
        fs.set_root_exists(false);
        assert!(scan(&fs, &HashMap::new(), &Chunker::tiny()).is_err());
        assert!(scan_paths(&fs, &[p("a")], &HashMap::new(), &Chunker::tiny()).is_err());
    }

    #[test]
    fn scan_paths_examines_only_what_was_asked() {
        let fs = MemFs::new();
        fs.write("a/x", "1");
        fs.write("a/sub/y", "2");
        fs.write("b", "3");
        fs.write("c/z", "4");
        fs.symlink("c/link");
        let paths = [p("a"), p("a/x"), p("b"), p("gone"), p("c/z"), p("c/link"), p("b/below-a-file")];
        let out = scan_paths(&fs, &paths, &HashMap::new(), &Chunker::tiny()).unwrap();
        let got: Vec<_> = out.entries.keys().map(RelPath::as_str).collect();
        assert_eq!(got, ["a", "a/sub", "a/sub/y", "a/x", "b", "c/z"]);
        assert_eq!(out.skipped.len(), 1);
        assert_eq!(out.skipped[0].path, "c/link");
        assert_eq!(fs.open_count("c/z"), 1);
    }

    /// What a sink saw of each read of a file: the bytes handed over, and how the read ended.
    #[derive(Default)]
    struct Reads(std::sync::Mutex<Vec<(u64, Option<bool>)>>);

    struct Read<'a>(&'a Reads);

    impl ChunkSink for Reads {
        fn open(&self, _: &RelPath, _: u64) -> Option<Box<dyn FileChunks + '_>> {
            self.0.lock().unwrap().push((0, None));
            Some(Box::new(Read(self)))
        }
    }

    impl FileChunks for Read<'_> {
        fn chunk(&mut self, _: ChunkRef, data: &[u8]) {
            self.0.0.lock().unwrap().last_mut().unwrap().0 += data.len() as u64;
        }
        fn end(self: Box<Self>, whole: bool) {
            self.0.0.lock().unwrap().last_mut().unwrap().1 = Some(whole);
        }
    }

    #[test]
    fn a_big_file_that_changes_while_it_is_read_is_left_at_the_next_look_not_read_to_its_end() {
        let chunker = Chunker::tiny();
        let recheck = RECHECK_EVERY_MAX_CHUNKS * u64::from(chunker.max);
        let fs = MemFs::new();
        let data: Vec<u8> = filesync_core::testdata::random_bytes(10 * recheck as usize, 7);
        fs.write("big", &data);
        fs.change_on_open("big", 1);
        let reads = Reads::default();
        let known = HashMap::new();
        let out = Scanner { sink: Some(&reads), ..Scanner::new(&fs, &known, &chunker) }.scan().unwrap();
        assert!(out.entries.contains_key(&p("big")), "the second read takes it");
        let reads = reads.0.into_inner().unwrap();
        assert_eq!(reads.len(), 2, "{reads:?}");
        let (first, whole) = reads[0];
        assert_eq!(whole, Some(false));
        assert!(first >= recheck && first <= recheck + u64::from(chunker.max), "left after {first} bytes");
        assert_eq!(reads[1], (data.len() as u64 + 1, Some(true)), "the second read, of the changed file");
    }

    #[test]
    fn small_file_shortcut_matches_the_chunker() {
        for chunker in [Chunker::tiny(), Chunker::default()] {
            for len in [0, 1, 100, chunker.min as usize - 1, chunker.min as usize, chunker.min as usize + 5000] {
                let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
                let want = chunker.digest_bytes(&data);
                for (expected, what) in [(len as u64, "as stated"), (0, "grown after its stat")] {
                    // The chunks handed over on the way are the digest's, and make up the file.
                    let (mut seen, mut bytes) = (Vec::new(), Vec::new());
                    let got = digest(&chunker, &data[..], expected, |c, d| {
                        seen.push(c);
                        bytes.extend_from_slice(d);
                        Ok(())
                    });
                    assert_eq!(got.unwrap(), want, "len {len}, {what}");
                    assert_eq!((seen, bytes), (want.chunks.clone(), data.clone()), "len {len}, {what}");
                }
            }
        }
    }

    #[test]
    fn reuse_requires_the_recorded_size_and_mtime() {
        let meta = FileMeta {
            kind: EntryKind::File,
            size: 3,
            mtime_ns: 10,
            executable: false,
            hash: Hash([1; 32]),
            chunks: vec![],
        };
        let k = KnownFile { size: 3, mtime_ns: 10, ino: 0, meta };
        let st = Stat { kind: StatKind::File, size: 3, mtime_ns: 10, executable: false, ino: 99 };
        assert!(reuse(&k, &st).is_some(), "unknown inode is ignored");
        assert!(reuse(&k, &Stat { mtime_ns: 11, ..st }).is_none());
        assert!(reuse(&k, &Stat { size: 4, ..st }).is_none());
        assert!(reuse(&KnownFile { ino: 5, ..k.clone() }, &st).is_none());
    }
}
