//! `MemFs`: an in-memory [`Filesystem`] for tests, with the semantics of [`crate::fs::RealFs`]
//! (temporary files listed under their `.filesync-tmp-` names, `persist` replacing, no-replace
//! renames, non-empty directories refusing removal), an optional case-insensitive mode like
//! NTFS and APFS, a fake clock, inode numbers, and hooks to inject failures.

use crate::fs::{DirEntry, Filesystem, ReadSeek, Stat, StatKind, TempFile};
use filesync_core::RelPath;
use filesync_core::path::TEMP_PREFIX;
use std::collections::{BTreeMap, HashMap};
use std::io::{self, Cursor, Write};
use std::sync::{Arc, Mutex, MutexGuard};

/// Where the fake clock starts: 2023-11-14, in nanoseconds since the Unix epoch.
const CLOCK_START_NS: i64 = 1_700_000_000_000_000_000;
/// How far the fake clock moves at every change, like a coarse real clock.
const TICK_NS: i64 = 1_000_000;

/// An in-memory folder. Clones share the same tree, so a test keeps one handle to inspect
/// what the code under test did through another.
///
/// The state sits behind a `std::sync::Mutex`, not a tokio one: the [`Filesystem`] trait is
/// blocking (async callers use `spawn_blocking`), every critical section is a short in-memory
/// update, and the lock is never held across an `.await`.
#[derive(Clone, Default)]
pub struct MemFs {
    inner: Arc<Mutex<State>>,
}

#[derive(Clone, Copy, Debug)]
enum Hook {
    /// Every open fails with this kind.
    Fail(io::ErrorKind),
    /// The next `n` opens hand out the current bytes, then append a byte and move the mtime,
    /// as if another program wrote while the file was being read.
    ChangeAfterOpen(usize),
}

struct State {
    case_insensitive: bool,
    /// Refuse names Windows cannot hold, like a Windows folder would.
    windows_names: bool,
    root: Entry,
    root_exists: bool,
    clock: i64,
    next_ino: u64,
    next_temp: u64,
    /// Keyed by the lookup key of the path (see [`key`]).
    hooks: HashMap<String, Hook>,
    opens: HashMap<String, usize>,
    /// Changes left before the "computer crashes" ([`MemFs::crash_after`]): `Some(0)` fails
    /// every change from then on, as if the process had died; `None`: no crash planned.
    crash_budget: Option<usize>,
    /// The disk is full ([`MemFs::set_full`]): writing bytes to a file fails.
    full: bool,
    /// What a power loss would undo (see [`MemFs::power_loss`]): the contents of temporary
    /// files written since their last fsync (inode → the bytes that are durable)…
    volatile_contents: BTreeMap<u64, Arc<Vec<u8>>>,
    /// …and renames whose directory was not fsynced yet, oldest first.
    volatile_renames: Vec<VolatileRename>,
}

/// A rename a power loss may undo: the entry `ino` moved from `from` to `to`, replacing
/// `replaced`.
struct VolatileRename {
    ino: u64,
    from: Vec<String>,
    to: Vec<String>,
    replaced: Option<Entry>,
}

impl Default for State {
    fn default() -> Self {
        State {
            case_insensitive: false,
            windows_names: false,
            root: Entry {
                name: String::new(),
                name_is_unicode: true,
                ino: 1,
                mtime_ns: CLOCK_START_NS,
                executable: false,
                node: Node::Dir(BTreeMap::new()),
            },
            root_exists: true,
            clock: CLOCK_START_NS,
            next_ino: 2,
            next_temp: 1,
            hooks: HashMap::new(),
            opens: HashMap::new(),
            crash_budget: None,
            full: false,
            volatile_contents: BTreeMap::new(),
            volatile_renames: Vec::new(),
        }
    }
}

struct Entry {
    /// The name with the case it was created with.
    name: String,
    name_is_unicode: bool,
    ino: u64,
    mtime_ns: i64,
    executable: bool,
    node: Node,
}

enum Node {
    File(Arc<Vec<u8>>),
    /// Children by lookup key.
    Dir(BTreeMap<String, Entry>),
    Symlink,
    Other,
}

/// The lookup key of a name: the name itself, or its lowercase form when case-insensitive.
fn key(case_insensitive: bool, name: &str) -> String {
    if case_insensitive { name.to_lowercase() } else { name.to_string() }
}

/// Shared file contents handed to readers without copying.
struct Bytes(Arc<Vec<u8>>);

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

fn err(kind: io::ErrorKind, msg: impl Into<String>) -> io::Error {
    io::Error::new(kind, msg.into())
}

fn split(path: &str) -> Vec<&str> {
    let comps: Vec<&str> = path.split('/').collect();
    assert!(comps.iter().all(|c| !c.is_empty()), "MemFs: bad test path {path:?}");
    comps
}

fn rel_comps(path: Option<&RelPath>) -> Vec<&str> {
    path.map(|p| p.components().collect()).unwrap_or_default()
}

impl Entry {
    fn stat(&self) -> Stat {
        let (kind, size) = match &self.node {
            Node::File(d) => (StatKind::File, d.len() as u64),
            Node::Dir(_) => (StatKind::Dir, 0),
            Node::Symlink => (StatKind::Symlink, 0),
            Node::Other => (StatKind::Other, 0),
        };
        Stat { kind, size, mtime_ns: self.mtime_ns, executable: self.executable, ino: self.ino }
    }

    fn children_mut(&mut self) -> Option<&mut BTreeMap<String, Entry>> {
        match &mut self.node {
            Node::Dir(c) => Some(c),
            _ => None,
        }
    }
}

impl State {
    /// Counts one change of the tree; fails once a planned crash has happened.
    fn change(&mut self) -> io::Result<()> {
        match &mut self.crash_budget {
            Some(0) => Err(err(io::ErrorKind::Other, "the computer crashed (MemFs::crash_after)")),
            Some(n) => {
                *n -= 1;
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn tick(&mut self) -> i64 {
        self.clock += TICK_NS;
        self.clock
    }

    /// The entry with inode `ino`, wherever it is in the tree.
    fn find_ino(&mut self, ino: u64) -> Option<&mut Entry> {
        let mut stack: Vec<&mut Entry> = vec![&mut self.root];
        while let Some(e) = stack.pop() {
            if e.ino == ino {
                return Some(e);
            }
            if let Node::Dir(children) = &mut e.node {
                stack.extend(children.values_mut());
            }
        }
        None
    }

    /// Puts a rename back as it was, if the tree still holds the moved entry where it went
    /// (a later durable change that moved it again wins).
    fn undo_rename(&mut self, r: VolatileRename) {
        let to: Vec<&str> = r.to.iter().map(String::as_str).collect();
        let from: Vec<&str> = r.from.iter().map(String::as_str).collect();
        if self.get(&to).is_none_or(|e| e.ino != r.ino) {
            return;
        }
        let Ok(mut moved) = self.take(&to) else { return };
        moved.name = from.last().map_or_else(String::new, |n| n.to_string());
        if self.insert(&from[..from.len() - 1], moved).is_err() {
            return;
        }
        if let Some(replaced) = r.replaced {
            let _ = self.insert(&to[..to.len() - 1], replaced);
        }
    }

    /// Notes that the contents of `ino` are about to change without being durable.
    fn volatile_content(&mut self, ino: u64, durable: &Arc<Vec<u8>>) {
        self.volatile_contents.entry(ino).or_insert_with(|| durable.clone());
    }

    fn new_entry(&mut self, name: &str, node: Node) -> Entry {
        let ino = self.next_ino;
        self.next_ino += 1;
        Entry { name: name.to_string(), name_is_unicode: true, ino, mtime_ns: self.tick(), executable: false, node }
    }

    fn key_path(&self, comps: &[&str]) -> String {
        comps.iter().map(|c| key(self.case_insensitive, c)).collect::<Vec<_>>().join("/")
    }

    fn get(&self, comps: &[&str]) -> Option<&Entry> {
        if !self.root_exists {
            return None;
        }
        let mut cur = &self.root;
        for c in comps {
            match &cur.node {
                Node::Dir(children) => cur = children.get(&key(self.case_insensitive, c))?,
                _ => return None,
            }
        }
        Some(cur)
    }

    fn get_mut(&mut self, comps: &[&str]) -> Option<&mut Entry> {
        if !self.root_exists {
            return None;
        }
        let ci = self.case_insensitive;
        let mut cur = &mut self.root;
        for c in comps {
            cur = cur.children_mut()?.get_mut(&key(ci, c))?;
        }
        Some(cur)
    }

    /// The directory `comps`, with the errors `open(2)` on it would give.
    fn dir_mut(&mut self, comps: &[&str]) -> io::Result<&mut Entry> {
        let shown = comps.join("/");
        if self.get(comps).is_none() {
            // Distinguish "a component is a file" from "missing", like the OS does.
            let blocked =
                (1..comps.len()).any(|i| self.get(&comps[..i]).is_some_and(|e| !matches!(e.node, Node::Dir(_))));
            let kind = if blocked { io::ErrorKind::NotADirectory } else { io::ErrorKind::NotFound };
            return Err(err(kind, format!("'{shown}': no such directory")));
        }
        let e = self.get_mut(comps).expect("checked above");
        match e.node {
            Node::Dir(_) => Ok(e),
            _ => Err(err(io::ErrorKind::NotADirectory, format!("'{shown}' is not a directory"))),
        }
    }

    /// Inserts `entry` into the directory `dir` under its name, moving the directory's mtime.
    fn insert(&mut self, dir: &[&str], entry: Entry) -> io::Result<()> {
        let now = self.tick();
        let k = key(self.case_insensitive, &entry.name);
        let d = self.dir_mut(dir)?;
        d.mtime_ns = now;
        d.children_mut().expect("a directory").insert(k, entry);
        Ok(())
    }

    /// Takes the entry `comps` out of its directory, moving the directory's mtime.
    fn take(&mut self, comps: &[&str]) -> io::Result<Entry> {
        let (last, dir) =
            comps.split_last().ok_or_else(|| err(io::ErrorKind::InvalidInput, "cannot remove the root"))?;
        let now = self.tick();
        let k = key(self.case_insensitive, last);
        let d = self.dir_mut(dir)?;
        let e = d.children_mut().expect("a directory").remove(&k);
        let e = e.ok_or_else(|| err(io::ErrorKind::NotFound, format!("'{}' not found", comps.join("/"))))?;
        d.mtime_ns = now;
        Ok(e)
    }

    fn mkdir_p(&mut self, comps: &[&str]) {
        for i in 1..=comps.len() {
            match self.get(&comps[..i]) {
                Some(Entry { node: Node::Dir(_), .. }) => {}
                Some(_) => panic!("MemFs: '{}' is not a directory", comps[..i].join("/")),
                None => {
                    let e = self.new_entry(comps[i - 1], Node::Dir(BTreeMap::new()));
                    self.insert(&comps[..i - 1], e).unwrap();
                }
            }
        }
    }

    /// Test helper body: creates `path` with `node` (parents as needed), replacing nothing.
    fn create_special(&mut self, path: &str, node: Node, name_is_unicode: bool) {
        let comps = split(path);
        let (last, dir) = comps.split_last().expect("non-empty");
        self.mkdir_p(dir);
        assert!(self.get(&comps).is_none(), "MemFs: '{path}' already exists");
        let mut e = self.new_entry(last, node);
        e.name_is_unicode = name_is_unicode;
        self.insert(dir, e).unwrap();
    }
}

impl MemFs {
    /// A case-sensitive folder, like ext4.
    pub fn new() -> MemFs {
        MemFs::default()
    }

    /// A case-insensitive, case-preserving folder, like NTFS and APFS: `A.txt` and `a.txt`
    /// are the same entry, which keeps the spelling it was created with.
    pub fn case_insensitive() -> MemFs {
        let fs = MemFs::new();
        fs.lock().case_insensitive = true;
        fs
    }

    /// A folder with Windows rules: case-insensitive, and names such as `aux.txt` or `a:b`
    /// cannot be created.
    pub fn windows_like() -> MemFs {
        let fs = MemFs::case_insensitive();
        fs.lock().windows_names = true;
        fs
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding the lock leaves a usable tree behind.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes a whole file, creating parent directories. An existing file keeps its inode
    /// and spelling (like an in-place save); its mtime moves.
    pub fn write(&self, path: &str, data: impl AsRef<[u8]>) {
        let mut st = self.lock();
        let comps = split(path);
        let now = st.tick();
        if let Some(e) = st.get_mut(&comps) {
            assert!(matches!(e.node, Node::File(_)), "MemFs: '{path}' is not a file");
            e.node = Node::File(Arc::new(data.as_ref().to_vec()));
            e.mtime_ns = now;
            return;
        }
        st.create_special(path, Node::File(Arc::new(data.as_ref().to_vec())), true);
    }

    /// The contents of a file; `None` if it is missing or not a file.
    pub fn read(&self, path: &str) -> Option<Vec<u8>> {
        match &self.lock().get(&split(path))?.node {
            Node::File(d) => Some(d.to_vec()),
            _ => None,
        }
    }

    /// Creates a directory and its parents (like `mkdir -p`).
    pub fn mkdir(&self, path: &str) {
        self.lock().mkdir_p(&split(path));
    }

    /// Creates a symbolic link (the target does not matter: links are never followed).
    pub fn symlink(&self, path: &str) {
        self.lock().create_special(path, Node::Symlink, true);
    }

    /// Creates a socket/FIFO/device-like entry.
    pub fn special(&self, path: &str) {
        self.lock().create_special(path, Node::Other, true);
    }

    /// Creates a file whose on-disk name is not valid Unicode; `path` ends in the lossy form
    /// of that name (for example `bad\u{FFFD}.txt`), which is what `read_dir` reports.
    pub fn write_non_unicode(&self, path: &str, data: impl AsRef<[u8]>) {
        self.lock().create_special(path, Node::File(Arc::new(data.as_ref().to_vec())), false);
    }

    pub fn set_mtime(&self, path: &str, mtime_ns: i64) {
        self.lock().get_mut(&split(path)).unwrap_or_else(|| panic!("MemFs: no '{path}'")).mtime_ns = mtime_ns;
    }

    pub fn set_executable(&self, path: &str, executable: bool) {
        self.lock().get_mut(&split(path)).unwrap_or_else(|| panic!("MemFs: no '{path}'")).executable = executable;
    }

    /// Lets `changes` more changes of the tree through (creating, writing, renaming,
    /// removing, setting times), then fails every change as if the computer had crashed
    /// at that point: what was done stays, nothing more happens, temporary files stay
    /// behind. [`MemFs::restart`] ends the crash.
    pub fn crash_after(&self, changes: usize) {
        self.lock().crash_budget = Some(changes);
    }

    /// Fills the disk (`true`) or frees it: while full, writing bytes to a file fails with
    /// `StorageFull` ("No space left on device"); removing, renaming and making directories
    /// still work, as on a real disk with inodes left.
    pub fn set_full(&self, full: bool) {
        self.lock().full = full;
    }

    /// Whether a crash planned by [`MemFs::crash_after`] has happened.
    pub fn crashed(&self) -> bool {
        self.lock().crash_budget == Some(0)
    }

    /// The computer is back after a crash: changes work again. A process crash: what the
    /// process wrote is kept (the kernel has it); see [`MemFs::power_loss`] for the harsher kind.
    pub fn restart(&self) {
        self.lock().crash_budget = None;
    }

    /// The computer is back after losing power: everything the disk had not made durable is
    /// undone, the worst a real disk may do. Renames of temporary files over their
    /// destination whose directory was not fsynced are rolled back (the temporary file
    /// reappears, the replaced file with it), and temporary files' contents written since
    /// their last fsync are lost (the durable bytes come back, none for a new file). Changes
    /// work again afterwards. (A person's own writes through [`MemFs::write`] count as
    /// durable.)
    pub fn power_loss(&self) {
        let mut st = self.lock();
        st.crash_budget = None;
        for r in std::mem::take(&mut st.volatile_renames).into_iter().rev() {
            st.undo_rename(r);
        }
        for (ino, durable) in std::mem::take(&mut st.volatile_contents) {
            if let Some(e) = st.find_ino(ino) {
                e.node = Node::File(durable);
            }
        }
    }

    /// Whether a power loss now would undo something.
    pub fn has_volatile_changes(&self) -> bool {
        let st = self.lock();
        !st.volatile_contents.is_empty() || !st.volatile_renames.is_empty()
    }

    /// Removes a file, link or whole directory tree; false if nothing was there.
    pub fn remove(&self, path: &str) -> bool {
        self.lock().take(&split(path)).is_ok()
    }

    pub fn exists(&self, path: &str) -> bool {
        self.lock().get(&split(path)).is_some()
    }

    pub fn ino(&self, path: &str) -> Option<u64> {
        self.lock().get(&split(path)).map(|e| e.ino)
    }

    /// Every path in the tree with its on-disk spelling, sorted; directories end in `/`.
    /// Temporary files are included.
    pub fn list_all(&self) -> Vec<String> {
        let st = self.lock();
        let mut out = Vec::new();
        let mut stack: Vec<(String, &Entry)> = vec![(String::new(), &st.root)];
        while let Some((prefix, dir)) = stack.pop() {
            let Node::Dir(children) = &dir.node else { continue };
            for e in children.values() {
                let path = format!("{prefix}{}", e.name);
                if let Node::Dir(_) = e.node {
                    out.push(format!("{path}/"));
                    stack.push((format!("{path}/"), e));
                } else {
                    out.push(path);
                }
            }
        }
        out.sort();
        out
    }

    /// Makes every later `open` of `path` fail with `kind` (for example `PermissionDenied`).
    pub fn fail_open(&self, path: &str, kind: io::ErrorKind) {
        let mut st = self.lock();
        let k = st.key_path(&split(path));
        st.hooks.insert(k, Hook::Fail(kind));
    }

    /// The next `times` opens of `path` see the file change right after they open it, as if
    /// another program were writing to it.
    pub fn change_on_open(&self, path: &str, times: usize) {
        let mut st = self.lock();
        let k = st.key_path(&split(path));
        st.hooks.insert(k, Hook::ChangeAfterOpen(times));
    }

    /// Drops what [`MemFs::fail_open`] or [`MemFs::change_on_open`] planned for `path`.
    pub fn forget_hooks(&self, path: &str) {
        let mut st = self.lock();
        let k = st.key_path(&split(path));
        st.hooks.remove(&k);
    }

    /// How many times `open` was called for `path`.
    pub fn open_count(&self, path: &str) -> usize {
        let st = self.lock();
        st.opens.get(&st.key_path(&split(path))).copied().unwrap_or(0)
    }

    /// How many times `open` was called for any path.
    pub fn total_opens(&self) -> usize {
        self.lock().opens.values().sum()
    }

    /// Simulates an unmounted drive or a moved folder: the root and everything below vanish
    /// from view until it is set back.
    pub fn set_root_exists(&self, exists: bool) {
        self.lock().root_exists = exists;
    }

    /// The fake clock: the mtime the next change gets is a little later than this.
    pub fn now(&self) -> i64 {
        self.lock().clock
    }

    pub fn advance_clock(&self, ns: i64) {
        self.lock().clock += ns;
    }
}

impl MemFs {
    /// Renames the entry that `read_dir(dir)` listed as `name` (which [`RelPath`] may not
    /// express, such as a name not in NFC) to `to`, refusing to replace anything.
    pub fn rename_listed_noreplace(&self, dir: Option<&RelPath>, name: &str, to: &RelPath) -> io::Result<()> {
        if name.is_empty() || name.contains('/') {
            return Err(err(io::ErrorKind::InvalidInput, format!("{name:?} is not a plain file name")));
        }
        let mut from = rel_comps(dir);
        from.push(name);
        self.rename_comps(&from, &rel_comps(Some(to)))
    }

    fn rename_comps(&self, f: &[&str], t: &[&str]) -> io::Result<()> {
        let mut st = self.lock();
        st.change()?;
        let (from, to) = (f.join("/"), t.join("/"));
        if st.get(f).is_none() {
            return Err(err(io::ErrorKind::NotFound, format!("'{from}' not found")));
        }
        let (fk, tk) = (st.key_path(f), st.key_path(t));
        if fk == tk {
            // The same entry under another spelling (case-insensitive mode): only the
            // spelling changes.
            if from != to {
                st.get_mut(f).expect("exists").name = t[t.len() - 1].to_string();
                let now = st.tick();
                st.dir_mut(&f[..f.len() - 1])?.mtime_ns = now;
            }
            return Ok(());
        }
        if tk.starts_with(&format!("{fk}/")) {
            return Err(err(io::ErrorKind::InvalidInput, format!("cannot move '{from}' into itself ('{to}')")));
        }
        let (t_last, t_dir) = t.split_last().expect("a RelPath has a component");
        st.dir_mut(t_dir)?;
        if st.get(t).is_some() {
            return Err(err(io::ErrorKind::AlreadyExists, format!("'{to}' already exists")));
        }
        let mut e = st.take(f)?;
        e.name = t_last.to_string();
        st.insert(t_dir, e)
    }
}

impl Filesystem for MemFs {
    fn case_insensitive(&self) -> bool {
        self.lock().case_insensitive
    }

    fn name_problem(&self, path: &RelPath) -> Option<String> {
        if self.lock().windows_names { path.windows_incompatibility() } else { None }
    }

    fn rename_listed_noreplace(&self, dir: Option<&RelPath>, name: &str, to: &RelPath) -> io::Result<()> {
        MemFs::rename_listed_noreplace(self, dir, name, to)
    }

    fn read_dir(&self, dir: Option<&RelPath>) -> io::Result<Vec<DirEntry>> {
        let mut st = self.lock();
        let d = st.dir_mut(&rel_comps(dir))?;
        let Node::Dir(children) = &d.node else { unreachable!("dir_mut returns directories") };
        Ok(children
            .values()
            .map(|e| DirEntry { name: e.name.clone(), name_is_unicode: e.name_is_unicode, stat: e.stat() })
            .collect())
    }

    fn stat(&self, path: &RelPath) -> io::Result<Option<Stat>> {
        Ok(self.lock().get(&rel_comps(Some(path))).map(Entry::stat))
    }

    fn root_exists(&self) -> bool {
        self.lock().root_exists
    }

    fn open(&self, path: &RelPath) -> io::Result<Box<dyn ReadSeek>> {
        let mut st = self.lock();
        let comps = rel_comps(Some(path));
        let k = st.key_path(&comps);
        *st.opens.entry(k.clone()).or_default() += 1;
        let hook = st.hooks.get(&k).copied();
        if let Some(Hook::Fail(kind)) = hook {
            return Err(err(kind, format!("open '{path}': injected failure ({kind})")));
        }
        let now = st.tick();
        let e = st.get_mut(&comps).ok_or_else(|| err(io::ErrorKind::NotFound, format!("'{path}' not found")))?;
        let data = match &mut e.node {
            Node::File(d) => d,
            Node::Dir(_) => return Err(err(io::ErrorKind::IsADirectory, format!("'{path}' is a directory"))),
            // Like O_NOFOLLOW: links and special files are not opened.
            _ => return Err(err(io::ErrorKind::InvalidInput, format!("'{path}' is not a regular file"))),
        };
        let reader = Cursor::new(Bytes(Arc::clone(data)));
        if let Some(Hook::ChangeAfterOpen(n)) = hook {
            Arc::make_mut(data).push(b'!');
            e.mtime_ns = now;
            if n <= 1 {
                st.hooks.remove(&k);
            } else {
                st.hooks.insert(k, Hook::ChangeAfterOpen(n - 1));
            }
        }
        Ok(Box::new(reader))
    }

    fn create_dir(&self, path: &RelPath) -> io::Result<()> {
        let mut st = self.lock();
        st.change()?;
        let comps = rel_comps(Some(path));
        match st.get(&comps) {
            Some(Entry { node: Node::Dir(_), .. }) => return Ok(()),
            Some(_) => {
                return Err(err(io::ErrorKind::AlreadyExists, format!("'{path}' exists and is not a directory")));
            }
            None => {}
        }
        let (last, dir) = comps.split_last().expect("a RelPath has a component");
        st.dir_mut(dir)?;
        let e = st.new_entry(last, Node::Dir(BTreeMap::new()));
        st.insert(dir, e)
    }

    fn remove_file(&self, path: &RelPath) -> io::Result<()> {
        let mut st = self.lock();
        st.change()?;
        let comps = rel_comps(Some(path));
        match st.get(&comps) {
            None => Err(err(io::ErrorKind::NotFound, format!("'{path}' not found"))),
            Some(Entry { node: Node::Dir(_), .. }) => {
                Err(err(io::ErrorKind::IsADirectory, format!("'{path}' is a directory")))
            }
            Some(_) => st.take(&comps).map(drop),
        }
    }

    fn remove_dir(&self, path: &RelPath) -> io::Result<()> {
        let mut st = self.lock();
        st.change()?;
        let comps = rel_comps(Some(path));
        match st.get(&comps) {
            None => Err(err(io::ErrorKind::NotFound, format!("'{path}' not found"))),
            Some(Entry { node: Node::Dir(c), .. }) if !c.is_empty() => {
                Err(err(io::ErrorKind::DirectoryNotEmpty, format!("'{path}' is not empty")))
            }
            Some(Entry { node: Node::Dir(_), .. }) => st.take(&comps).map(drop),
            Some(_) => Err(err(io::ErrorKind::NotADirectory, format!("'{path}' is not a directory"))),
        }
    }

    fn rename_noreplace(&self, from: &RelPath, to: &RelPath) -> io::Result<()> {
        self.rename_comps(&rel_comps(Some(from)), &rel_comps(Some(to)))
    }

    fn set_times_and_mode(&self, path: &RelPath, mtime_ns: i64, executable: bool) -> io::Result<()> {
        let mut st = self.lock();
        st.change()?;
        let e = st
            .get_mut(&rel_comps(Some(path)))
            .ok_or_else(|| err(io::ErrorKind::NotFound, format!("'{path}' not found")))?;
        match e.node {
            Node::File(_) => e.executable = executable,
            Node::Dir(_) => {}
            _ => return Err(err(io::ErrorKind::InvalidInput, format!("'{path}' is not a regular file"))),
        }
        e.mtime_ns = mtime_ns;
        Ok(())
    }

    fn create_temp(&self, dir: Option<&RelPath>) -> io::Result<Box<dyn TempFile>> {
        let mut st = self.lock();
        st.change()?;
        let dir: Vec<String> = rel_comps(dir).into_iter().map(String::from).collect();
        let dir_refs: Vec<&str> = dir.iter().map(String::as_str).collect();
        st.dir_mut(&dir_refs)?;
        let name = format!("{TEMP_PREFIX}{:08x}", st.next_temp);
        st.next_temp += 1;
        let e = st.new_entry(&name, Node::File(Arc::new(Vec::new())));
        st.insert(&dir_refs, e)?;
        Ok(Box::new(MemTemp { fs: self.clone(), dir, name, times: None, written_after_times: false, persisted: false }))
    }

    fn clean_temp_files_except(&self, keep: &std::collections::HashSet<String>) -> io::Result<usize> {
        let mut st = self.lock();
        if !st.root_exists {
            return Err(err(io::ErrorKind::NotFound, "folder root does not exist"));
        }
        let mut removed = 0;
        let mut stack: Vec<&mut Entry> = vec![&mut st.root];
        while let Some(dir) = stack.pop() {
            let Node::Dir(children) = &mut dir.node else { continue };
            let before = children.len();
            children.retain(|_, e| {
                !(e.name.starts_with(TEMP_PREFIX) && !keep.contains(&e.name) && matches!(e.node, Node::File(_)))
            });
            removed += before - children.len();
            stack.extend(children.values_mut().filter(|e| matches!(e.node, Node::Dir(_))));
        }
        Ok(removed)
    }

    fn sync_renames(&self, dirs: &[Option<RelPath>]) -> io::Result<()> {
        let mut st = self.lock();
        let ci = st.case_insensitive;
        let fold = |comps: &[&str]| comps.iter().map(|c| key(ci, c)).collect::<Vec<_>>();
        let synced: Vec<Vec<String>> = dirs.iter().map(|d| fold(&rel_comps(d.as_ref()))).collect();
        st.volatile_renames.retain(|r| {
            let to: Vec<&str> = r.to.iter().map(String::as_str).collect();
            !synced.contains(&fold(&to[..to.len() - 1]))
        });
        Ok(())
    }
}

/// A temporary file of [`MemFs`]: an ordinary entry of the tree under a temp name, so that
/// it shows up in listings and survives a "crash" (`std::mem::forget`) like a real one.
struct MemTemp {
    fs: MemFs,
    dir: Vec<String>,
    name: String,
    times: Option<(i64, bool)>,
    written_after_times: bool,
    persisted: bool,
}

impl MemTemp {
    fn comps(&self) -> Vec<&str> {
        self.dir.iter().map(String::as_str).chain([self.name.as_str()]).collect()
    }

    /// Runs `f` on the temp file's entry.
    fn with_entry<T>(&self, f: impl FnOnce(&mut Entry, i64) -> T) -> io::Result<T> {
        let mut st = self.fs.lock();
        st.change()?;
        let now = st.tick();
        let e = st
            .get_mut(&self.comps())
            .filter(|e| matches!(e.node, Node::File(_)))
            .ok_or_else(|| err(io::ErrorKind::NotFound, format!("temporary file {} was removed", self.name)))?;
        Ok(f(e, now))
    }
}

impl Write for MemTemp {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.fs.lock().full && !buf.is_empty() {
            return Err(err(io::ErrorKind::StorageFull, "No space left on device"));
        }
        let (ino, before) = self.with_entry(|e, now| {
            let before = match &mut e.node {
                Node::File(d) => {
                    let before = d.clone();
                    Arc::make_mut(d).extend_from_slice(buf);
                    before
                }
                _ => Arc::default(),
            };
            e.mtime_ns = now;
            (e.ino, before)
        })?;
        self.fs.lock().volatile_content(ino, &before);
        self.written_after_times = self.times.is_some();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl TempFile for MemTemp {
    fn still_in_place(&self) -> bool {
        self.fs.lock().get(&self.comps()).is_some_and(|e| matches!(e.node, Node::File(_)))
    }

    fn set_times_and_mode(&mut self, mtime_ns: i64, executable: bool) -> io::Result<()> {
        self.with_entry(|e, _| {
            e.mtime_ns = mtime_ns;
            e.executable = executable;
        })?;
        self.times = Some((mtime_ns, executable));
        self.written_after_times = false;
        Ok(())
    }

    fn sync_all(&mut self) -> io::Result<()> {
        let ino = self.with_entry(|e, _| e.ino)?;
        self.fs.lock().volatile_contents.remove(&ino);
        Ok(())
    }

    fn persist(mut self: Box<Self>, dest: &RelPath) -> io::Result<()> {
        self.rename_into_place(dest, false)
    }

    fn persist_deferred(mut self: Box<Self>, dest: &RelPath) -> io::Result<()> {
        self.rename_into_place(dest, true)
    }

    fn file_name(&self) -> &str {
        &self.name
    }
}

impl MemTemp {
    /// Makes the contents durable, as the real one does, and renames the file over `dest`;
    /// the rename is durable at once unless `deferred` (then [`Filesystem::sync_renames`]
    /// of its directory makes it so, and a power loss before that undoes it).
    fn rename_into_place(&mut self, dest: &RelPath, deferred: bool) -> io::Result<()> {
        if let (Some((mtime_ns, executable)), true) = (self.times, self.written_after_times) {
            self.set_times_and_mode(mtime_ns, executable)?;
        }
        self.sync_all()?;
        let mut st = self.fs.lock();
        st.change()?;
        let t = rel_comps(Some(dest));
        let dest_dir = &t[..t.len() - 1];
        st.dir_mut(dest_dir)?;
        let replaced = match st.get(&t) {
            Some(Entry { node: Node::Dir(_), .. }) => {
                return Err(err(io::ErrorKind::IsADirectory, format!("'{dest}' is a directory")));
            }
            Some(_) => Some(st.take(&t)?),
            None => None,
        };
        let mut e = st.take(&self.comps())?;
        e.name = dest.file_name().to_string();
        let ino = e.ino;
        st.insert(dest_dir, e)?;
        if deferred {
            let from = self.comps().into_iter().map(String::from).collect();
            let to = t.iter().map(|c| c.to_string()).collect();
            st.volatile_renames.push(VolatileRename { ino, from, to, replaced });
        }
        self.persisted = true;
        Ok(())
    }
}

impl Drop for MemTemp {
    fn drop(&mut self) {
        if !self.persisted {
            let comps = self.comps();
            let mut st = self.fs.lock();
            // A crashed computer cleans nothing up.
            if st.change().is_ok() {
                let _ = st.take(&comps);
            }
        }
    }
}

/// A simulated computer's clock is its disk's: "now" is the mtime the next change would get,
/// so racy timestamps and conflict-copy names follow the simulation, never the real time.
impl std::fmt::Debug for MemFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemFs").field("clock", &self.now()).finish_non_exhaustive()
    }
}

impl filesync_core::clock::Clock for MemFs {
    fn now_ns(&self) -> i64 {
        self.now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn p(s: &str) -> RelPath {
        RelPath::new(s).unwrap()
    }

    fn read_via_trait(fs: &MemFs, path: &str) -> Vec<u8> {
        let mut v = Vec::new();
        fs.open(&p(path)).unwrap().read_to_end(&mut v).unwrap();
        v
    }

    #[test]
    fn helpers_and_listing() {
        let fs = MemFs::new();
        fs.write("a/b/c.txt", "hi");
        fs.mkdir("empty");
        fs.symlink("a/link");
        assert_eq!(fs.list_all(), ["a/", "a/b/", "a/b/c.txt", "a/link", "empty/"]);
        assert_eq!(fs.read("a/b/c.txt").unwrap(), b"hi");
        assert_eq!(read_via_trait(&fs, "a/b/c.txt"), b"hi");
        assert_eq!(fs.open_count("a/b/c.txt"), 1);
        let ino = fs.ino("a/b/c.txt").unwrap();
        let before = fs.stat(&p("a/b/c.txt")).unwrap().unwrap();
        fs.write("a/b/c.txt", "hello");
        let after = fs.stat(&p("a/b/c.txt")).unwrap().unwrap();
        assert_eq!(after.ino, ino, "in-place write keeps the inode");
        assert!(after.mtime_ns > before.mtime_ns);
        assert_eq!(after.size, 5);
        assert!(fs.stat(&p("a/b/c.txt/x")).unwrap().is_none());
        assert_eq!(fs.read_dir(Some(&p("a/b/c.txt"))).unwrap_err().kind(), io::ErrorKind::NotADirectory);
        assert!(fs.remove("a"));
        assert!(!fs.exists("a/b"));
    }

    #[test]
    fn temp_files_are_listed_persist_replaces_and_drop_removes() {
        let fs = MemFs::new();
        fs.write("f", "old");
        let old_ino = fs.ino("f").unwrap();
        let mut t = fs.create_temp(None).unwrap();
        t.write_all(b"new").unwrap();
        assert!(fs.list_all().iter().any(|n| n.starts_with(TEMP_PREFIX)));
        t.set_times_and_mode(42, true).unwrap();
        t.sync_all().unwrap();
        t.persist(&p("f")).unwrap();
        assert_eq!(fs.list_all(), ["f"]);
        assert_eq!(fs.read("f").unwrap(), b"new");
        let st = fs.stat(&p("f")).unwrap().unwrap();
        assert_eq!((st.mtime_ns, st.executable), (42, true));
        assert_ne!(st.ino, old_ino, "persist puts a new file in place");

        let mut t = fs.create_temp(None).unwrap();
        t.write_all(b"abandoned").unwrap();
        drop(t);
        assert_eq!(fs.list_all(), ["f"]);

        fs.mkdir("d");
        let t = fs.create_temp(None).unwrap();
        assert_eq!(t.persist(&p("d")).unwrap_err().kind(), io::ErrorKind::IsADirectory);
        assert_eq!(fs.list_all(), ["d/", "f"], "a failed persist leaves no temp file");
    }

    #[test]
    fn crash_leaves_only_a_temp_file_that_clean_removes() {
        let fs = MemFs::new();
        fs.mkdir("d");
        let mut t = fs.create_temp(Some(&p("d"))).unwrap();
        t.write_all(b"half").unwrap();
        std::mem::forget(t);
        assert!(!fs.exists("d/dest"));
        assert_eq!(fs.clean_temp_files().unwrap(), 1);
        assert_eq!(fs.list_all(), ["d/"]);
    }

    #[test]
    fn a_power_loss_undoes_what_was_not_made_durable() {
        let fs = MemFs::new();
        fs.write("d/old.txt", "old");
        // Written, never fsynced, never renamed: its bytes are lost.
        let mut lost = fs.create_temp(Some(&p("d"))).unwrap();
        lost.write_all(b"unsynced").unwrap();
        std::mem::forget(lost);
        // Renamed over old.txt with the rename's directory not yet fsynced: rolled back.
        let mut deferred = fs.create_temp(Some(&p("d"))).unwrap();
        deferred.write_all(b"new").unwrap();
        deferred.persist_deferred(&p("d/old.txt")).unwrap();
        // Renamed and made durable at once: kept.
        let mut kept = fs.create_temp(None).unwrap();
        kept.write_all(b"kept").unwrap();
        kept.persist(&p("kept.txt")).unwrap();
        assert!(fs.has_volatile_changes());

        fs.power_loss();
        assert!(!fs.has_volatile_changes());
        assert_eq!(fs.read("d/old.txt").unwrap(), b"old");
        assert_eq!(fs.read("kept.txt").unwrap(), b"kept");
        let temps: Vec<Vec<u8>> =
            fs.list_all().iter().filter(|p| p.contains(TEMP_PREFIX)).map(|p| fs.read(p).unwrap()).collect();
        // The rolled-back file is back under its temporary name, whole (its contents were
        // fsynced before the rename); the unsynced one is empty.
        assert_eq!(temps.len(), 2, "{:?}", fs.list_all());
        assert!(temps.contains(&b"new".to_vec()) && temps.contains(&Vec::new()));
    }

    #[test]
    fn syncing_a_directory_makes_its_deferred_renames_durable() {
        let fs = MemFs::new();
        fs.mkdir("d");
        for (dir, dest) in [(Some(p("d")), "d/a.txt"), (None, "b.txt")] {
            let mut t = fs.create_temp(dir.as_ref()).unwrap();
            t.write_all(b"x").unwrap();
            t.persist_deferred(&p(dest)).unwrap();
        }
        fs.sync_renames(&[Some(p("d"))]).unwrap();
        fs.power_loss();
        assert_eq!(fs.read("d/a.txt").unwrap(), b"x");
        assert_eq!(fs.read("b.txt"), None, "the root was not synced");
    }

    #[test]
    fn rename_noreplace_and_remove_dir() {
        let fs = MemFs::new();
        fs.write("a", "1");
        fs.write("b", "2");
        fs.write("d/x", "3");
        assert_eq!(fs.rename_noreplace(&p("a"), &p("b")).unwrap_err().kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs.rename_noreplace(&p("d"), &p("d/x/y")).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        assert_eq!(fs.rename_noreplace(&p("a"), &p("nope/a")).unwrap_err().kind(), io::ErrorKind::NotFound);
        let ino = fs.ino("a").unwrap();
        fs.rename_noreplace(&p("a"), &p("d/a")).unwrap();
        assert_eq!(fs.ino("d/a"), Some(ino), "a rename keeps the inode");
        assert_eq!(fs.remove_dir(&p("d")).unwrap_err().kind(), io::ErrorKind::DirectoryNotEmpty);
        fs.remove_file(&p("d/a")).unwrap();
        fs.remove_file(&p("d/x")).unwrap();
        fs.remove_dir(&p("d")).unwrap();
        assert_eq!(fs.list_all(), ["b"]);
    }

    #[test]
    fn case_insensitive_mode_keeps_spelling_and_refuses_case_collisions() {
        let fs = MemFs::case_insensitive();
        fs.write("Docs/Readme.TXT", "x");
        assert!(fs.exists("docs/readme.txt"));
        assert_eq!(fs.stat(&p("DOCS/README.txt")).unwrap().unwrap().size, 1);
        fs.create_dir(&p("docs")).unwrap(); // already there, as "Docs"
        assert_eq!(fs.list_all(), ["Docs/", "Docs/Readme.TXT"]);
        fs.write("Docs/other", "y");
        let e = fs.rename_noreplace(&p("Docs/other"), &p("docs/README.txt")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        // A case-only rename of the same entry is allowed and changes the spelling.
        fs.rename_noreplace(&p("Docs/Readme.TXT"), &p("Docs/readme.txt")).unwrap();
        assert_eq!(fs.list_all(), ["Docs/", "Docs/other", "Docs/readme.txt"]);
        // persist over a differently-spelled existing file replaces it.
        let mut t = fs.create_temp(Some(&p("Docs"))).unwrap();
        t.write_all(b"z").unwrap();
        t.persist(&p("Docs/OTHER")).unwrap();
        assert_eq!(fs.list_all(), ["Docs/", "Docs/OTHER", "Docs/readme.txt"]);
        assert_eq!(fs.read("docs/other").unwrap(), b"z");
    }

    #[test]
    fn injected_open_failures_and_changes() {
        let fs = MemFs::new();
        fs.write("locked", "x");
        fs.fail_open("locked", io::ErrorKind::PermissionDenied);
        assert_eq!(fs.open(&p("locked")).err().unwrap().kind(), io::ErrorKind::PermissionDenied);
        fs.write("busy", "abc");
        fs.change_on_open("busy", 1);
        assert_eq!(read_via_trait(&fs, "busy"), b"abc", "the reader sees the bytes at open");
        assert_eq!(fs.read("busy").unwrap(), b"abc!");
        assert_eq!(read_via_trait(&fs, "busy"), b"abc!", "only the first open changes it");
    }

    #[test]
    fn root_can_vanish() {
        let fs = MemFs::new();
        fs.write("a", "1");
        fs.set_root_exists(false);
        assert!(!fs.root_exists());
        assert!(fs.stat(&p("a")).unwrap().is_none());
        assert!(fs.read_dir(None).is_err());
        fs.set_root_exists(true);
        assert!(fs.exists("a"));
    }
}
