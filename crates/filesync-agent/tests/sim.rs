//! Seeded, randomized histories of the whole sync loop in one process: two to four
//! computers, each a real engine with its own state database on its own `MemFs`, write,
//! append to (some saves replace the file, as editors do; some happen while the sync reads the
//! file), move (by a rename, or a copy and a deletion), `chmod` and delete files, make, move,
//! rename and remove whole directories, replace a directory by a file and back, change the folder's
//! settings (direction, excluded subfolders, pause) and its ignore rules (`.filesyncignore`,
//! which syncs), restore old versions from the server's
//! history, and sync, in a random order, through a server that is either the in-memory model
//! of its rules (`memserver`) or, in a quarter of the histories, the real server — its
//! session, handlers, SQLite store and chunk directory — over simulated connections that can
//! be cut at any byte (`sim/backend.rs`, `filesync_server::InProcessServer`); in some
//! histories every disk ignores case (as NTFS and APFS do) and moves include case-only
//! renames. Faults come in the same order: a computer may crash in the middle of a sync (its
//! disk takes a random number of changes, then no more) and restart, or lose power; a
//! connection may drop in the middle of a sync (a commit may be applied with its answer
//! lost); the server may crash in the middle of a sync and start again over its stores; a
//! chunk on the server may be damaged while a computer syncs; a computer's disk may be full
//! while it syncs. After the workload the settings go back to their defaults, every computer
//! syncs until a whole round does nothing, the first empties the ignore file if it says
//! anything, all sync to quiet again, and the run checks:
//!
//! - quiescence within a bounded number of rounds, and no pass reporting a failed file;
//! - every computer holds the same tree, with the same executable bits, and it is the
//!   server's current state (on disks that ignore case, but for names the server holds in two
//!   spellings: each computer keeps its own and reports the other as skipped);
//! - **no lost version**: every content a person wrote that their computer's engine saw (it
//!   was on disk when a pass started that then finished, while the folder sent local changes
//!   and outside excluded subfolders) is the current content of some file, or a version in
//!   the server's history;
//! - **no resurrection**: a file deleted on one computer, once the deletion reached the server
//!   and every computer pulled it, stays deleted unless someone writes it again (`Deletions`
//!   follows only deletions nothing could rightly undo: edits beat deletes);
//! - **nothing half-written**: after every step — a crash of the process, a power loss that
//!   undoes every write and rename the disk had not made durable (`MemFs::power_loss`), a
//!   damaged chunk — every file under its real name holds a content someone wrote or the
//!   server has;
//! - **no conflict copy without two concurrent edits**: a conflict copy a computer makes of
//!   a path needs a change of its own there it had not synced and a change by someone else it
//!   had not pulled (`Concurrency`);
//! - **determinism**: one seed is one history; `the_same_seed_replays_the_same_history`
//!   runs seeds twice and compares their traces line by line. Each computer's clock is its
//!   disk's (`MemFs` implements the engine's `Clock`), and time passes by a seeded amount
//!   at every step, so racy timestamps and conflict-copy names follow the seed too.
//!
//! Every choice comes from the seed. A failure names the seed and the command that runs it
//! alone: `FILESYNC_SIM_SEED=S cargo test -p filesync-agent --test sim`. `FILESYNC_SIM_SEEDS=N`
//! runs N seeds from `FILESYNC_SIM_FIRST` (default 300 from 0); `scripts/soak` runs any number
//! on every core. To follow one: `FILESYNC_SIM_TRACE=1` prints the steps as they go, and
//! `FILESYNC_SIM_LOG=filesync_agent=debug` the engine's own log between them.
//!
//! Checks that depend on what a computer syncs (the lost-version, resurrection and
//! concurrency checks) leave out paths its ignore rules covered when a sync started or ended.
//!
//! The network delays and reorders: in four syncs of ten, some of the other computers sync at
//! the same time, and a seeded schedule decides which computer's requests go next
//! (`sim/net.rs`, `sync_together`); a link may break part-way. `FILESYNC_SIM_NET=in-order`
//! runs every sync alone, as the histories ran before (the older regression seeds do).

#[path = "sim/backend.rs"]
mod backend;
mod memserver;
#[path = "sim/net.rs"]
mod net;

use backend::Backend;
use filesync_agent::config::{Direction, FolderConfig, FolderSettings};
use filesync_agent::engine::server::ServerApi;
use filesync_agent::engine::{Engine, Partials, PassReport};
use filesync_agent::filter::{IGNORE_FILE, IgnoreRules};
use filesync_agent::fs::{Filesystem, StatKind};
use filesync_agent::memfs::MemFs;
use filesync_agent::state::StateDb;
use filesync_agent::status::Progress;
use filesync_core::Hash;
use filesync_core::conflict::parse_conflict_copy;
use net::{Cut, Net};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// Directories files live in, and file names (never equal to a directory's name, so a write
/// never meets a directory in its way).
const DIRS: [&str; 4] = ["", "a/", "a/b/", "c/"];
const NAMES: [&str; 4] = ["x.txt", "y.txt", "z.bin", "notes"];
/// Where a moved directory goes (when that name is free and its parent a directory).
const DIR_TARGETS: [&str; 4] = ["a", "c", "d", "a/d"];
/// Directories replaced by a file, and back.
const REPLACED_DIRS: [&str; 2] = ["c", "a/b"];
/// Rounds of "every computer syncs" allowed to reach quiet after the workload.
const MAX_QUIET_ROUNDS: usize = 6;

struct Computer {
    name: String,
    fs: MemFs,
    db: StateDb,
    /// Its device token on the real server.
    token: String,
    /// The folder and its settings, which the workload changes.
    folder: RefCell<FolderConfig>,
    /// Downloads cut short, kept to resume, as the agent keeps them across connections (a
    /// crash loses them).
    partials: RefCell<Arc<Partials>>,
    /// Announcements of uploads in progress this computer has seen (`Backend::announced_since`).
    announced_seen: std::cell::Cell<usize>,
}

impl Computer {
    async fn new(backend: &Backend, name: &str, case_insensitive: bool) -> Computer {
        let fs = if case_insensitive { MemFs::case_insensitive() } else { MemFs::new() };
        Computer {
            name: name.into(),
            fs,
            db: StateDb::memory().await.unwrap(),
            token: backend.enrol(name).await,
            folder: RefCell::new(FolderConfig::new("docs", format!("/{name}"))),
            partials: RefCell::default(),
            announced_seen: std::cell::Cell::new(0),
        }
    }

    /// One sync, over a connection of its own. The computer's clock is its disk's:
    /// conflict-copy names and racy timestamps follow the seed, not the real time.
    async fn pass(&self, backend: &Backend, trace: &mut Trace) -> Result<PassReport, String> {
        let api = backend.connect(&self.token).await.map_err(|e| format!("cannot connect: {e}"))?;
        let engine = self.engine(api);
        let fs: Arc<dyn Filesystem> = Arc::new(self.fs.clone());
        let folder = self.folder.borrow().clone();
        self.fetch_ahead(backend, &engine, &folder, &fs, trace).await;
        let r = engine.sync_folder(&folder, fs, &Progress::default()).await.map_err(|e| e.to_string());
        // What this sync announced is its own.
        self.announced_seen.set(self.announced_seen.get() + backend.announced_since(self.announced_seen.get()).len());
        r
    }

    /// This computer's engine, for one sync over `api`.
    fn engine(&self, api: Arc<dyn ServerApi>) -> Engine {
        let mut engine = Engine::with_server(api, self.db.clone(), self.name.clone())
            .with_clock(Arc::new(self.fs.clone()))
            .with_partials(self.partials.borrow().clone());
        // Every upload is announced, whatever its size.
        engine.announce_min_bytes = 1;
        // One file read at a time: what the scan sends as it reads comes in the same order.
        engine.scan_threads = 1;
        engine
    }

    /// Fetches ahead the uploads other computers announced since this one last looked, as the
    /// agent does when their announcements come (`engine::prefetch`): into hidden partial
    /// downloads that this sync's downloads may take over.
    async fn fetch_ahead(
        &self,
        backend: &Backend,
        engine: &Engine,
        folder: &FolderConfig,
        fs: &Arc<dyn Filesystem>,
        trace: &mut Trace,
    ) {
        let news = backend.announced_since(self.announced_seen.get());
        self.announced_seen.set(self.announced_seen.get() + news.len());
        for (i, a) in news.iter().enumerate() {
            if a.first != 0 || !filesync_agent::engine::prefetch::wanted(folder, &**fs, a) {
                continue;
            }
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            for n in news[i + 1..].iter().filter(|n| n.path == a.path && n.upload == a.upload) {
                tx.send(n.clone()).unwrap();
            }
            drop(tx);
            let throttle = filesync_agent::engine::throttle::Throttle::unlimited();
            let held =
                engine.fetch_ahead(&folder.name, fs.clone(), a.clone(), rx, throttle, &Progress::default()).await;
            trace.log(format!("  {}: fetched {} of {} chunks of {} ahead", self.name, held.len(), a.total, a.path));
        }
    }

    /// A pass that may fail (a crash or a dropped connection in the middle).
    async fn try_sync(&self, backend: &Backend, trace: &mut Trace) {
        let r = self.pass(backend, trace).await;
        trace.pass(&self.name, &r);
    }

    async fn sync(&self, backend: &Backend, trace: &mut Trace) -> Result<PassReport, String> {
        let r = self.pass(backend, trace).await;
        trace.pass(&self.name, &r);
        let r = r.map_err(|e| format!("{}: sync failed: {e}", self.name))?;
        if !r.errors.is_empty() {
            return Err(format!("{}: files failed: {:?}", self.name, r.errors));
        }
        Ok(r)
    }

    /// Files (path → content) and directories of the folder, temporary files left out.
    fn tree(&self) -> (BTreeMap<String, Vec<u8>>, BTreeSet<String>) {
        let (mut files, mut dirs) = (BTreeMap::new(), BTreeSet::new());
        for p in self.fs.list_all() {
            if p.split('/').any(|c| c.starts_with(filesync_core::path::TEMP_PREFIX)) {
                continue;
            }
            match p.strip_suffix('/') {
                Some(d) => {
                    dirs.insert(d.to_string());
                }
                None => {
                    files.insert(p.clone(), self.fs.read(&p).expect("a listed file reads"));
                }
            }
        }
        (files, dirs)
    }

    fn files(&self) -> Vec<String> {
        self.tree().0.into_keys().collect()
    }

    /// The files whose executable bit is set.
    fn executables(&self) -> BTreeSet<String> {
        let executable = |p: &String| {
            let path = filesync_core::RelPath::new(p.as_str()).expect("a listed path is valid");
            self.fs.stat(&path).ok().flatten().is_some_and(|s| s.executable)
        };
        self.files().into_iter().filter(executable).collect()
    }

    /// The files at or below `dir` (spelled as on this disk, which may ignore case).
    fn files_under(&self, dir: &str) -> Vec<String> {
        let fold = |p: &str| if self.fs.case_insensitive() { p.to_lowercase() } else { p.to_string() };
        let prefix = format!("{}/", fold(dir));
        self.files().into_iter().filter(|f| fold(f) == fold(dir) || fold(f).starts_with(&prefix)).collect()
    }

    /// Whether a file holds the place of a directory `path` needs (which then cannot be
    /// written), or `path` itself is a directory.
    fn blocked(&self, path: &str) -> bool {
        let kind = |p: &str| {
            let rel = filesync_core::RelPath::new(p).expect("valid");
            self.fs.stat(&rel).ok().flatten().map(|s| s.kind)
        };
        kind(path) == Some(StatKind::Dir)
            || path.match_indices('/').any(|(i, _)| kind(&path[..i]).is_some_and(|k| k != StatKind::Dir))
    }

    /// Files (path → file hash, as the server names versions) and directories.
    fn hashed_tree(&self) -> (BTreeMap<String, Hash>, BTreeSet<String>) {
        let (files, dirs) = self.tree();
        (files.into_iter().map(|(p, d)| (p, file_hash(&d))).collect(), dirs)
    }
}

/// The hash the server knows a content by: that of its chunk list, as the engine chunks it.
fn file_hash(data: &[u8]) -> Hash {
    filesync_core::Chunker::default().digest_bytes(data).hash
}

/// The ignore rules one computer's passes went by: those of its `.filesyncignore` when a sync
/// started and when it ended (a sync that downloads the file applies it in its next pass).
/// A path either set ignores counts as ignored, so that the checks only err towards allowing.
#[derive(Clone)]
struct Rules(Vec<IgnoreRules>);

impl Rules {
    fn now(c: &Computer) -> Rules {
        Rules(vec![IgnoreRules::load(&c.fs)])
    }

    fn and_now(&self, c: &Computer) -> Rules {
        Rules(self.0.iter().cloned().chain([IgnoreRules::load(&c.fs)]).collect())
    }

    fn ignored(&self, path: &str) -> bool {
        let Ok(p) = filesync_core::RelPath::new(path) else { return false };
        self.0.iter().any(|r| r.is_ignored(&p, false) || r.is_ignored(&p, true))
    }
}

/// Every spelling the server's `paths` hold, with the directories they need: a directory the
/// server deleted while an entry below it lives on has no entry of its own, but it still
/// takes its name on a disk (seed 3095330).
fn spellings<'a>(paths: impl Iterator<Item = &'a String>) -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    for p in paths {
        all.extend(p.match_indices('/').map(|(i, _)| p[..i].to_string()));
        all.insert(p.clone());
    }
    all
}

/// What ignore files say in the histories (`.filesyncignore` syncs like any file).
const IGNORE_TEXTS: [&str; 7] = ["", "*.bin\n", "c/\n", "notes\n", "a/b/\n", "y.txt\n", "*.txt\n!x.txt\n"];

/// What a run saw: contents its engines observed, for the "no lost version" check, and every
/// content people wrote, for the "nothing half-written" check.
#[derive(Default)]
struct Observed {
    /// File hash → where and when it was first seen.
    versions: HashMap<Hash, String>,
    written: BTreeSet<Hash>,
}

/// What a run did, line by line: the steps, every pass's outcome and the final state. Two runs
/// of one seed must write the same trace (`the_same_seed_replays_the_same_history`);
/// `FILESYNC_SIM_TRACE=1` also prints it as it goes.
struct Trace {
    lines: Vec<String>,
    echo: bool,
}

impl Trace {
    fn new() -> Trace {
        Trace { lines: Vec::new(), echo: std::env::var_os("FILESYNC_SIM_TRACE").is_some() }
    }

    fn log(&mut self, line: String) {
        if self.echo {
            eprintln!("{line}");
        }
        self.lines.push(line);
    }

    /// One line for a pass's outcome (or its error).
    fn pass(&mut self, who: &str, r: &Result<PassReport, impl std::fmt::Display>) {
        let line = match r {
            Ok(r) => format!(
                "  {who}: up {} down {} del-local {} del-remote {} conflicts {} errors {} cursor {} named {:?}",
                r.uploaded,
                r.downloaded,
                r.deleted_local,
                r.deleted_remote,
                r.conflicts,
                r.errors.len(),
                r.cursor,
                r.named.iter().map(|(_, p)| p.as_str()).collect::<Vec<_>>()
            ),
            Err(e) => format!("  {who}: failed: {e}"),
        };
        self.log(line);
    }
}

/// The "no resurrection" check: a file deleted on one computer, when that deletion reached
/// the server and every computer then pulled it, must stay deleted unless someone writes it
/// again. A deletion is followed only when nothing could rightly undo it ("edits beat
/// deletes"): no other computer holds an unsent edit of the path, and the deleting computer
/// had pulled every version of it that may have reached the server. Any later write to the
/// path, or a restore of it, ends the following.
struct Deletions {
    /// Paths compare folded on disks that ignore case.
    fold: bool,
    /// Per computer: paths written there and not surely uploaded since.
    dirty: Vec<BTreeSet<String>>,
    /// Per path: the latest step a version of it may have reached the server, and the
    /// computer that surely knows it (it sent it in a finished pass); `None`: a partial pass
    /// or a restore.
    reached_server: BTreeMap<String, (usize, Option<usize>)>,
    /// Per computer: its last finished pass that applied remote changes.
    last_pull: Vec<Option<Pull>>,
    /// Per computer: paths a pass that did not finish may have committed with the answer lost,
    /// not looked at since by a finished pass (one that did not ignore them). Until one does,
    /// the engine cannot tell a deletion of such a file from a write a power loss undid, and
    /// rightly brings the file back (seed 1416: the next sync ignored the path).
    unsettled: Vec<BTreeSet<String>>,
    followed: BTreeMap<String, Deletion>,
}

/// A finished pass that applied remote changes: it pulled every version that reached the
/// server before its step, except below the paths it did not look at.
#[derive(Clone)]
struct Pull {
    step: usize,
    /// The ignore rules it went by: it pulled nothing of the paths they cover (seed 13788).
    ignoring: Rules,
    /// What it moved aside for a directory: the directory's entries come only in the next
    /// pass (seed 4004795: a file written there before that pass, and renamed away, was never
    /// the server's version).
    deferred: BTreeSet<String>,
}

impl Pull {
    /// Whether this pull brought the version of `k` that reached the server at step `at`.
    fn brought(&self, k: &str, at: usize) -> bool {
        at < self.step && !self.ignoring.ignored(k) && !self.deferred.iter().any(|m| k.starts_with(&format!("{m}/")))
    }
}

struct Deletion {
    by: usize,
    /// A finished pass of `by` sent it.
    sent: bool,
    /// Computers whose passes ran at the same time as the one that sent it: their pull may
    /// have come first, so their next finished pass does not count as seeing it.
    racing: BTreeSet<usize>,
    /// Computers that have pulled it since.
    seen: BTreeSet<usize>,
}

impl Deletions {
    fn new(computers: usize, fold: bool) -> Deletions {
        Deletions {
            fold,
            dirty: vec![BTreeSet::new(); computers],
            reached_server: BTreeMap::new(),
            last_pull: vec![None; computers],
            unsettled: vec![BTreeSet::new(); computers],
            followed: BTreeMap::new(),
        }
    }

    fn key(&self, path: &str) -> String {
        if self.fold { path.to_lowercase() } else { path.to_string() }
    }

    fn wrote(&mut self, c: usize, path: &str) {
        let k = self.key(path);
        self.followed.remove(&k);
        self.dirty[c].insert(k);
    }

    /// `c` deleted `path`, with `excluded` the subfolders it does not sync (a deletion there
    /// is never sent).
    fn deleted(&mut self, c: usize, path: &str, excluded: &[String], rules: &Rules) {
        let k = self.key(path);
        // On disks that ignore case the server may hold a name in two spellings, each
        // computer keeping its own: which version a deletion meant is then not the path's
        // to say, so those histories follow no deletion.
        // A conflict copy is the engine's own file, which a pass that did not finish may have
        // sent without recording: whether the server has it is not known here.
        let engines_own = k.contains("(conflicted copy from ");
        // Nor is a deletion of an ignored path ever sent.
        if self.fold
            || engines_own
            || rules.ignored(path)
            || self.unsettled[c].contains(&k)
            || excluded.iter().any(|e| k == self.key(e) || k.starts_with(&format!("{}/", self.key(e))))
        {
            self.dirty[c].remove(&k);
            self.followed.remove(&k);
            return;
        }
        let others_dirty = (0..self.dirty.len()).any(|o| o != c && self.dirty[o].contains(&k));
        let up_to_date = self.last_pull[c].as_ref().is_some_and(|pull| match self.reached_server.get(&k) {
            None => pull.brought(&k, 0),
            Some(&(step, by)) => by == Some(c) && pull.brought(&k, 0) || pull.brought(&k, step),
        });
        self.dirty[c].remove(&k);
        if !others_dirty && up_to_date {
            self.followed.insert(k, Deletion { by: c, sent: false, racing: BTreeSet::new(), seen: BTreeSet::new() });
        } else {
            self.followed.remove(&k);
        }
    }

    /// `c` excluded the subfolder `sub`: its deletions there that it has not sent are
    /// dropped, not followed.
    fn excluded(&mut self, c: usize, sub: &str) {
        let (key, prefix) = (self.key(sub), format!("{}/", self.key(sub)));
        self.followed.retain(|k, d| !(d.by == c && !d.sent && (k.starts_with(&prefix) || *k == key)));
    }

    /// `c` included an excluded subfolder again: what it pulled before says nothing of what
    /// the server holds there, so its deletions count again only after its next pull.
    fn included(&mut self, c: usize) {
        self.last_pull[c] = None;
    }

    fn restored(&mut self, path: &str, step: usize) {
        let k = self.key(path);
        self.followed.remove(&k);
        self.reached_server.insert(k, (step, None));
    }

    /// A pass of `c` that may have sent anything of its own, but did not finish.
    fn partial(&mut self, c: usize, step: usize) {
        for k in &self.dirty[c] {
            self.reached_server.insert(k.clone(), (step, None));
            self.unsettled[c].insert(k.clone());
        }
    }

    /// A finished pass of `c` with `settings`, which moved aside the paths `deferred` for
    /// directories, while the passes of `racing` ran at the same time (and are told after it).
    #[allow(clippy::too_many_arguments)]
    fn finished(
        &mut self,
        c: usize,
        step: usize,
        settings: &FolderSettings,
        rules: &Rules,
        deferred: &BTreeSet<String>,
        racing: &[usize],
    ) {
        // An excluded subfolder's own name is excluded too (`Excluded::covers`).
        let prefixes: Vec<String> = settings.excluded.iter().map(|e| format!("{}/", self.key(e))).collect();
        let excluded =
            |k: &str| prefixes.iter().any(|p| k.starts_with(p) || k == &p[..p.len() - 1]) || rules.ignored(k);
        if !settings.paused {
            self.unsettled[c].retain(|k| excluded(k));
        }
        let (sends, pulls) = (
            !settings.paused && settings.direction != Direction::DownloadOnly,
            !settings.paused && settings.direction != Direction::UploadOnly,
        );
        if pulls {
            let pull = Pull { step, ignoring: rules.clone(), deferred: deferred.clone() };
            for (k, d) in &mut self.followed {
                if d.sent && !excluded(k) && pull.brought(k, 0) && !d.racing.remove(&c) {
                    d.seen.insert(c);
                }
            }
            self.last_pull[c] = Some(pull);
        }
        if sends {
            let sent: Vec<String> = self.dirty[c].iter().filter(|k| !excluded(k)).cloned().collect();
            for k in sent {
                self.dirty[c].remove(&k);
                // A version of `c` may have reached the server now; `c` surely knows what the
                // server holds only if it knew the version before its own. A pass that does
                // not pull sends nothing over a version someone else put there meanwhile, and
                // that version stays one `c` has not seen (seed 9054739: an upload-only
                // computer, a restore on the server, then a deletion of the older version,
                // rightly undone). Either way, only a pull after this step knows the
                // path's latest version for sure (seed 30000133: the first fix of 9054739 kept
                // the older record, and a computer that had pulled before this upload counted
                // as knowing it).
                let knew = match self.reached_server.get(&k) {
                    None => true,
                    Some(&(at, by)) => by == Some(c) || self.last_pull[c].as_ref().is_some_and(|p| p.brought(&k, at)),
                };
                self.reached_server.insert(k, (step, knew.then_some(c)));
            }
            for (k, d) in &mut self.followed {
                if d.by == c && !excluded(k) {
                    if !d.sent {
                        d.racing.extend(racing.iter().copied());
                    }
                    d.sent = true;
                    d.seen.insert(c);
                }
            }
        }
    }

    /// Paths deleted, sent and pulled by every one of `computers`.
    fn settled(&self, computers: usize) -> Vec<&String> {
        self.followed.iter().filter(|(_, d)| d.sent && d.seen.len() == computers).map(|(k, _)| k).collect()
    }
}

/// `path` with the case of its last name's letters swapped (`a/b.TXT` → `a/B.txt`).
fn case_flipped(path: &str) -> String {
    let (dir, name) = path.rsplit_once('/').map_or(("", path), |(d, n)| (d, n));
    let flipped: String = name
        .chars()
        .map(|ch| if ch.is_lowercase() { ch.to_ascii_uppercase() } else { ch.to_ascii_lowercase() })
        .collect();
    if dir.is_empty() { flipped } else { format!("{dir}/{flipped}") }
}

fn content(rng: &mut StdRng, seed: u64, step: usize) -> Vec<u8> {
    let mut data = format!("seed {seed} step {step}\n").into_bytes();
    let len = match rng.random_range(0..10) {
        0 => 0,
        1..=7 => rng.random_range(1..2000),
        _ => rng.random_range(2000..40_000),
    };
    data.extend((0..len).map(|_| rng.random::<u8>()));
    data
}

/// "No conflict copy without two truly concurrent edits": a conflict copy a computer makes of
/// a path needs a change of its own there that it had not synced, and a change by someone
/// else (another computer, a restore on the server) that it had not pulled. Paths are related
/// when one is the other or below it (a folder moved or deleted), and compare folded on disks
/// that ignore case. Passes that did not finish clear nothing, so the check only errs towards
/// allowing a copy.
struct Concurrency {
    fold: bool,
    /// Per computer: paths it changed since its last finished pass that both sent and pulled.
    own: Vec<BTreeSet<String>>,
    /// Per computer: paths it changed that no pass of it may have sent yet.
    unsent: Vec<BTreeSet<String>>,
    /// Per computer: paths others changed (and may have sent) since its last finished pass
    /// that pulled.
    others: Vec<BTreeSet<String>>,
    /// Per computer: the conflict copies of its own it has made so far (as keys).
    copies: Vec<BTreeSet<String>>,
    /// On disks that ignore case: names the server has held in two spellings at once. A
    /// computer holds one of them and skips the other, so a change it makes there may rightly
    /// meet the spelling it never had (seed 12212): those names are not judged.
    clashed: BTreeSet<String>,
    /// Conflict copies some computer moved with their directory: a new name, not a new copy.
    moved_copies: BTreeSet<String>,
    /// Per computer: the paths whose local version it moved aside since its last finished
    /// pass. A pass that moves a file aside for a directory downloads the directory's entries
    /// only in the next pass: the others' changes there stay unpulled until then.
    moved_aside: Vec<BTreeSet<String>>,
    /// Per computer: the subfolders it ever excluded (as keys). A file made there where the
    /// server has a directory (the subfolder's own name, or one inside it) cannot take that
    /// name: it is kept as a conflict copy (as Dropbox's "selective sync conflict").
    excluded_names: Vec<BTreeSet<String>>,
    /// Per computer: what a pass of it that did not finish may have sent without knowing the
    /// server took it, until a pass finishes. Such a file deleted here since is downloaded
    /// again (the engine cannot tell the deletion from a power loss that undid the write), so
    /// a file made where its directory was meets it (seed 2882 of the first workload with
    /// directories replaced by files).
    maybe_sent: Vec<BTreeSet<String>>,
    /// Per computer: the changed paths its ignore rules hid in some pass. A deletion the rules
    /// hid is never sent, so the server may still hold what such a path was when the rules
    /// change (seed 40381: a directory `c` under `c/`, replaced here by a file).
    hidden: Vec<BTreeSet<String>>,
}

impl Concurrency {
    fn new(computers: usize, fold: bool) -> Concurrency {
        let sets = || vec![BTreeSet::new(); computers];
        Concurrency {
            fold,
            own: sets(),
            unsent: sets(),
            others: sets(),
            copies: sets(),
            clashed: BTreeSet::new(),
            moved_copies: BTreeSet::new(),
            moved_aside: sets(),
            excluded_names: sets(),
            maybe_sent: sets(),
            hidden: sets(),
        }
    }

    fn key(&self, path: &str) -> String {
        if self.fold { path.to_lowercase() } else { path.to_string() }
    }

    /// Computer `c`'s person changed `path` (wrote, deleted, moved from or to, made a folder).
    fn changed(&mut self, c: usize, path: &str) {
        let k = self.key(path);
        self.own[c].insert(k.clone());
        self.unsent[c].insert(k);
    }

    /// A file moved with its directory from `from` to `to`.
    fn moved(&mut self, from: &str, to: &str) {
        if filesync_core::RelPath::new(from).ok().and_then(|p| parse_conflict_copy(&p)).is_some() {
            let k = self.key(to);
            self.moved_copies.insert(k);
        }
    }

    /// What `c` may have sent (`keys`) reaches the others' unpulled changes.
    fn publish(&mut self, c: usize, keys: &BTreeSet<String>) {
        for (o, others) in self.others.iter_mut().enumerate() {
            if o != c {
                others.extend(keys.iter().cloned());
            }
        }
    }

    /// A pass of `c` that did not finish: it may have sent any of its changes.
    fn partial(&mut self, c: usize) {
        let keys = self.unsent[c].clone();
        self.publish(c, &keys);
        self.maybe_sent[c].extend(keys);
    }

    /// Notes the names the server now holds in two spellings.
    fn server_holds(&mut self, server: &backend::ServerState) {
        if !self.fold {
            return;
        }
        let mut seen = BTreeSet::new();
        for p in spellings(server.files.keys().chain(server.dirs.iter())) {
            let k = self.key(&p);
            if !seen.insert(k.clone()) {
                self.clashed.insert(k);
            }
        }
    }

    /// The server made an old version of `path` current again.
    fn restored(&mut self, path: &str) {
        let k = self.key(path);
        self.others.iter_mut().for_each(|o| {
            o.insert(k.clone());
        });
    }

    /// A pass of `c` with `settings` finished.
    fn finished(&mut self, c: usize, settings: &FolderSettings, rules: &Rules) {
        let prefixes: Vec<String> = settings.excluded.iter().map(|e| format!("{}/", self.key(e))).collect();
        let synced =
            |k: &String| !prefixes.iter().any(|p| k.starts_with(p) || *k == p[..p.len() - 1]) && !rules.ignored(k);
        let pulls = !settings.paused && settings.direction != Direction::UploadOnly;
        let sends = !settings.paused && settings.direction != Direction::DownloadOnly;
        let hidden: Vec<String> = self.own[c]
            .iter()
            .chain(&self.others[c])
            .chain(&self.unsent[c])
            .filter(|k| rules.ignored(k))
            .cloned()
            .collect();
        self.hidden[c].extend(hidden);
        if sends {
            // New files in an excluded subfolder are sent too (then evicted): all may have
            // reached the server; only what is synced is surely sent.
            let all = self.unsent[c].clone();
            self.publish(c, &all);
            self.unsent[c].retain(|k| !synced(k));
        }
        if pulls && settings.direction == Direction::TwoWay {
            self.own[c].retain(|k| !synced(k));
        }
        // (What this pass moved aside for a directory: the directory's entries come in the next
        // pass, the others' changes and this computer's own unsettled ones alike.)
        let moved = std::mem::take(&mut self.moved_aside[c]);
        let deferred = |k: &String| moved.iter().any(|m| k.starts_with(&format!("{m}/")));
        if pulls {
            self.others[c].retain(|k| !synced(k) || deferred(k));
        }
        self.maybe_sent[c].retain(deferred);
    }

    /// Checks the conflict copies computer `c` (named `name`) made since the last look.
    fn check(
        &mut self,
        c: usize,
        name: &str,
        files: impl Iterator<Item = String>,
        rules: &Rules,
    ) -> Result<(), String> {
        let related = |set: &BTreeSet<String>, k: &str| {
            set.iter().any(|x| x == k || x.starts_with(&format!("{k}/")) || k.starts_with(&format!("{x}/")))
        };
        let files: Vec<String> = files.collect();
        for f in &files {
            let Some(copy) = filesync_core::RelPath::new(f.as_str()).ok().and_then(|p| parse_conflict_copy(&p)) else {
                continue;
            };
            // (On a disk that ignores case, a copy that came back under another spelling of
            // its directory, moved by case on another computer, is the same copy.)
            let fk = self.key(f);
            if copy.device != name || !self.copies[c].insert(fk.clone()) || self.moved_copies.contains(&fk) {
                continue;
            }
            // A copy made before a directory holding it moved aside (itself a conflict copy,
            // made later) moved with it: a new name, not a new copy.
            let rel = filesync_core::RelPath::new(f.as_str()).expect("valid");
            let moved_with_its_directory = rel.ancestors().any(|a| {
                let a = filesync_core::RelPath::new(a).expect("valid");
                parse_conflict_copy(&a).is_some_and(|d| d.when >= copy.when)
            });
            if moved_with_its_directory {
                continue;
            }
            let k = self.key(copy.original.as_str());
            self.moved_aside[c].insert(k.clone());
            // (Nor a file that a clashing name below it kept from replacing its directory: the
            // computer deletes the spelling it holds, and the other one stays.)
            if self
                .clashed
                .iter()
                .any(|c| *c == k || k.starts_with(&format!("{c}/")) || c.starts_with(&format!("{k}/")))
            {
                continue;
            }
            // Something the rules ignore (left alone, so never deleted here) may stand in the
            // way of a download the rules do not ignore: it is kept as a conflict copy. So it
            // is on a disk that ignores case, for a download spelled otherwise (seed 4614); a
            // directory the rules ignore, where a file is to go; and a directory holding an
            // ignored file, which a file replaced elsewhere.
            let holds_ignored = || files.iter().any(|g| g.starts_with(&format!("{f}/")) && rules.ignored(g));
            // Nor can a file here replace a directory whose entries the rules hide or hid (a
            // deletion of an ignored file is never sent; an ignored file made elsewhere is not
            // seen): the server refuses it, and it is kept as a conflict copy.
            let hides_below = || {
                self.own[c]
                    .iter()
                    .chain(&self.others[c])
                    .any(|x| x.starts_with(&format!("{k}/")) && (rules.ignored(x) || self.hidden[c].contains(x)))
            };
            let was_excluded = || self.excluded_names[c].iter().any(|e| *e == k || k.starts_with(&format!("{e}/")));
            let own_unsettled = || self.maybe_sent[c].iter().any(|x| x.starts_with(&format!("{k}/")));
            if rules.ignored(&k) || holds_ignored() || hides_below() || was_excluded() || own_unsettled() {
                continue;
            }
            if !related(&self.own[c], &k) || !related(&self.others[c], &k) {
                return Err(format!(
                    "{name} made the conflict copy {f} without two concurrent edits of {} (its own unsynced changes: {:?}; others' it had not pulled: {:?})",
                    copy.original, self.own[c], self.others[c]
                ));
            }
        }
        Ok(())
    }
}

/// The computers `group` sync at the same time, each over its own link of a network that
/// delays and reorders (`sim/net.rs`): the seed decides whose link runs, and for how many of
/// the requests whose order others see; some links break part-way. Returns each pass's
/// outcome, and whether its link was to break, in `group`'s order.
async fn sync_together(
    computers: &[Computer],
    group: &[usize],
    backend: &Backend,
    rng: &mut StdRng,
    trace: &mut Trace,
) -> Vec<(Result<PassReport, String>, bool)> {
    let net = Net::new();
    let progress = Progress::default();
    let (mut syncs, mut cuts) = (Vec::new(), Vec::new());
    for &i in group {
        let c = &computers[i];
        let fs: Arc<dyn Filesystem> = Arc::new(c.fs.clone());
        let folder = c.folder.borrow().clone();
        match backend.connect(&c.token).await {
            Ok(api) => {
                // What others announced before: fetched ahead before the passes start.
                c.fetch_ahead(backend, &c.engine(api.clone()), &folder, &fs, trace).await;
                // Some links break part-way.
                let cut =
                    rng.random_bool(0.15).then(|| Cut { after: rng.random_range(0..5), applied: rng.random_bool(0.5) });
                if let Some(cut) = cut {
                    trace.log(format!(
                        "  {}: the link breaks after {} ordered requests (the last one {})",
                        c.name,
                        cut.after,
                        if cut.applied { "applied" } else { "lost" }
                    ));
                }
                cuts.push(cut.is_some());
                syncs.push(Ok((c.engine(net.link(i, api, cut)), folder, fs)));
            }
            Err(e) => {
                cuts.push(false);
                syncs.push(Err(format!("cannot connect: {e}")));
            }
        }
    }
    let mut results: Vec<Option<Result<PassReport, String>>> =
        syncs.iter().map(|s| s.as_ref().err().map(|e| Err(e.clone()))).collect();
    let mut passes: Vec<_> = syncs
        .iter()
        .map(|s| {
            s.as_ref().ok().map(|(engine, folder, fs)| Box::pin(engine.sync_folder(folder, fs.clone(), &progress)))
        })
        .collect();
    let mut schedule = Vec::new();
    loop {
        let waiting: Vec<usize> = (0..group.len()).filter(|&m| results[m].is_none()).collect();
        if waiting.is_empty() {
            break;
        }
        let m = waiting[rng.random_range(0..waiting.len())];
        let budget = if rng.random_bool(0.6) { 1 } else { rng.random_range(2..=4) };
        schedule.push(format!("{}×{budget}", computers[group[m]].name));
        net.start(group[m], budget);
        let stalled = net.until_stalled();
        tokio::pin!(stalled);
        std::future::poll_fn(|cx| {
            for (k, pass) in passes.iter_mut().enumerate() {
                if let (None, Some(p)) = (&results[k], pass.as_mut())
                    && let std::task::Poll::Ready(r) = p.as_mut().poll(cx)
                {
                    results[k] = Some(r.map_err(|e| e.to_string()));
                }
            }
            if results[m].is_some() {
                return std::task::Poll::Ready(());
            }
            stalled.as_mut().poll(cx)
        })
        .await;
        if results[m].is_some() {
            net.stop();
        }
    }
    drop(passes);
    trace.log(format!("  together, over a reordering network: {}", schedule.join(" ")));
    // What these syncs announced, and what the others announced meanwhile, is not fetched
    // ahead later.
    for &i in group {
        computers[i].announced_seen.set(backend.announced_since(0).len());
    }
    results.into_iter().zip(cuts).map(|(r, cut)| (r.expect("every pass finished"), cut)).collect()
}

/// A sync with a fault armed, which may stop part-way: what it saw does not count as seen by
/// the checks.
async fn sync_partly(
    c: &Computer,
    ci: usize,
    step: usize,
    backend: &Backend,
    trace: &mut Trace,
    deletions: &mut Deletions,
    concurrency: &mut Concurrency,
) {
    c.try_sync(backend, trace).await;
    deletions.partial(ci, step);
    concurrency.partial(ci);
}

async fn run(seed: u64, network: Network, trace: &mut Trace) -> Result<(), String> {
    let mut rng = StdRng::seed_from_u64(seed);
    // The network's choices come from a stream of their own: with the network in order, a
    // seed runs the history it ran before the network could reorder.
    let mut net_rng = StdRng::seed_from_u64(seed ^ 0x6e65_7477_6f72_6b00);
    let n = rng.random_range(2..=4);
    // Some histories run on disks that ignore case (as NTFS and APFS do), with case-only
    // renames among their moves.
    let case_insensitive = rng.random_bool(0.3);
    // A quarter of the histories run against the real server over cuttable connections, the
    // rest against the faster model of its rules (`FILESYNC_SIM_SERVER=real|memory` chooses).
    let real = match std::env::var("FILESYNC_SIM_SERVER").as_deref() {
        Ok("real") => true,
        Ok("memory") => false,
        _ => rng.random_bool(0.25),
    };
    let backend = if real { Backend::real(MemFs::new().now()).await } else { Backend::memory() };
    let mut computers = Vec::new();
    for i in 0..n {
        computers.push(Computer::new(&backend, &format!("pc{i}"), case_insensitive).await);
    }
    let mut observed = Observed::default();
    let mut deletions = Deletions::new(n, case_insensitive);
    let mut concurrency = Concurrency::new(n, case_insensitive);
    let steps = rng.random_range(10..40);
    trace.log(format!(
        "seed {seed}: {n} computers, case-insensitive {case_insensitive}, {} server, {steps} steps",
        if backend.is_real() { "real" } else { "model" }
    ));
    for step in 0..steps {
        // Time passes, sometimes less than a timestamp's racy window, sometimes more.
        let elapsed = rng.random_range(0..3_000_000_000);
        for c in &computers {
            c.fs.advance_clock(elapsed);
        }
        backend.advance_clock(elapsed);
        let ci = rng.random_range(0..n);
        let c = &computers[ci];
        // The ignore file is changed by its own action only (random bytes appended to it
        // would make rules nobody chose).
        let existing: Vec<String> = c.files().into_iter().filter(|f| f != IGNORE_FILE).collect();
        let rules = Rules::now(c);
        let action = rng.random_range(0..21);
        trace.log(format!(
            "step {step}: {} action {action}; files {:?}",
            c.name,
            c.tree().0.iter().map(|(p, d)| (p.clone(), d.len())).collect::<Vec<_>>()
        ));
        match action {
            // Write a new file or replace one.
            0..=2 => {
                let path =
                    format!("{}{}", DIRS[rng.random_range(0..DIRS.len())], NAMES[rng.random_range(0..NAMES.len())]);
                let data = content(&mut rng, seed, step);
                if c.blocked(&path) {
                    continue;
                }
                observed.written.insert(file_hash(&data));
                // Some saves go as editors make them: a new file renamed over the old one (a
                // new inode).
                if rng.random_bool(0.3) {
                    c.fs.remove(&path);
                }
                c.fs.write(&path, data);
                deletions.wrote(ci, &path);
                concurrency.changed(ci, &path);
            }
            // A file is written again while the sync reads it (another program appends to it
            // right after the engine opens it). (Not counted as seen: the pass may upload
            // either content, or neither, until the file settles.)
            17 => {
                let path =
                    format!("{}{}", DIRS[rng.random_range(0..DIRS.len())], NAMES[rng.random_range(0..NAMES.len())]);
                let data = content(&mut rng, seed, step);
                if c.blocked(&path) {
                    continue;
                }
                observed.written.insert(file_hash(&data));
                // The other program's version: one byte more (see `MemFs::change_on_open`).
                observed.written.insert(file_hash(&[&data[..], b"!"].concat()));
                c.fs.write(&path, &data);
                c.fs.change_on_open(&path, 1);
                deletions.wrote(ci, &path);
                concurrency.changed(ci, &path);
                trace.log(format!("  {}: {path} changes while the sync reads it", c.name));
                sync_partly(c, ci, step, &backend, trace, &mut deletions, &mut concurrency).await;
                c.fs.forget_hooks(&path);
            }
            // Append to a file.
            3 if !existing.is_empty() => {
                let path = &existing[rng.random_range(0..existing.len())];
                let mut data = c.fs.read(path).unwrap();
                data.extend(content(&mut rng, seed, step));
                observed.written.insert(file_hash(&data));
                c.fs.write(path, data);
                deletions.wrote(ci, path);
                concurrency.changed(ci, path);
            }
            // Delete a file.
            4 if !existing.is_empty() => {
                let path = &existing[rng.random_range(0..existing.len())];
                c.fs.remove(path);
                deletions.deleted(ci, path, &c.folder.borrow().settings.excluded, &rules);
                concurrency.changed(ci, path);
            }
            // Move a file to a free name (another directory, or renamed): a rename, or a copy
            // and a deletion (a new inode).
            5 if !existing.is_empty() => {
                let from = &existing[rng.random_range(0..existing.len())];
                let to = if case_insensitive && rng.random_bool(0.4) {
                    // Only the case of the name changes: the disk keeps the new spelling.
                    case_flipped(from)
                } else {
                    format!("{}{}", DIRS[rng.random_range(0..DIRS.len())], NAMES[rng.random_range(0..NAMES.len())])
                };
                // A case-only rename's target "exists" on a disk that ignores case: it is the
                // file itself.
                let case_only = to.to_lowercase() == from.to_lowercase() && to != *from;
                if case_only || !(c.fs.exists(&to) || c.blocked(&to)) {
                    if rng.random_bool(0.5) {
                        let rel = |p: &str| filesync_core::RelPath::new(p).expect("valid");
                        if let Some((dir, _)) = to.rsplit_once('/') {
                            c.fs.mkdir(dir);
                        }
                        c.fs.rename_noreplace(&rel(from), &rel(&to)).expect("a free name");
                        trace.log(format!("  {}: renamed {from} to {to}", c.name));
                    } else {
                        let data = c.fs.read(from).unwrap();
                        c.fs.remove(from);
                        c.fs.write(&to, data);
                    }
                    if case_only {
                        deletions.wrote(ci, &to);
                        concurrency.changed(ci, &to);
                    } else {
                        deletions.deleted(ci, from, &c.folder.borrow().settings.excluded, &rules);
                        concurrency.changed(ci, from);
                        deletions.wrote(ci, &to);
                        concurrency.changed(ci, &to);
                    }
                }
            }
            // Remove a whole directory, or make an empty one.
            6 => {
                let dir = DIRS[rng.random_range(1..DIRS.len())].trim_end_matches('/');
                if rng.random_bool(0.5) {
                    for f in c.files_under(dir) {
                        deletions.deleted(ci, &f, &c.folder.borrow().settings.excluded, &rules);
                        concurrency.changed(ci, &f);
                    }
                    c.fs.remove(dir);
                } else if !c.fs.exists(dir) || c.blocked(&format!("{dir}/f")) {
                    // (Not over a file that holds the directory's place.)
                    continue;
                } else {
                    c.fs.mkdir(dir);
                }
                concurrency.changed(ci, dir);
            }
            // The computer crashes in the middle of a sync, after a random number of changes
            // to its disk, and restarts: no file under its real name may be half-written.
            // (What was on disk is not counted as seen: the pass that saw it did not finish,
            // and a person may still change it before the next one.)
            7 => {
                c.fs.crash_after(rng.random_range(0..12));
                sync_partly(c, ci, step, &backend, trace, &mut deletions, &mut concurrency).await;
                // The process died, or the power went and the disk lost what was not durable.
                // Either way its memory is gone.
                c.partials.replace(Arc::default());
                if rng.random_bool(0.5) {
                    trace.log(format!("  {}: power loss (volatile changes: {})", c.name, c.fs.has_volatile_changes()));
                    c.fs.power_loss();
                } else {
                    c.fs.restart();
                }
            }
            // A sync while the computer's disk is full: downloads fail (the engine says why),
            // uploads go on; then space is freed. (Not counted as seen: a failed pass.)
            12 => {
                trace.log(format!("  {}: disk full", c.name));
                c.fs.set_full(true);
                sync_partly(c, ci, step, &backend, trace, &mut deletions, &mut concurrency).await;
                c.fs.set_full(false);
            }
            // A sync whose connection drops after a few requests (a commit may be applied with
            // its answer lost); the next sync resumes. (Not counted as seen either.)
            8 => {
                let how = backend.cut_next(&mut rng);
                trace.log(format!("  {}: the connection breaks {how}", c.name));
                sync_partly(c, ci, step, &backend, trace, &mut deletions, &mut concurrency).await;
                backend.heal();
            }
            // The server crashes in the middle of a sync and starts again over its stores (the
            // real server: every request in flight stops where it is; the model: it stops
            // answering). (Not counted as seen.)
            13 => {
                let how = backend.crash_next(&mut rng);
                trace.log(format!("  server: crashes {how} of {}'s sync", c.name));
                sync_partly(c, ci, step, &backend, trace, &mut deletions, &mut concurrency).await;
                backend.restart().await;
            }
            // A setting changes: the direction, a subfolder excluded or included again, or
            // the folder paused or resumed. (All go back to the defaults before the end.)
            9 => {
                let mut folder = c.folder.borrow_mut();
                let settings = &mut folder.settings;
                match rng.random_range(0..3) {
                    0 => {
                        settings.direction = match rng.random_range(0..5) {
                            0 => Direction::UploadOnly,
                            1 => Direction::DownloadOnly,
                            _ => Direction::TwoWay,
                        }
                    }
                    1 => {
                        let sub = ["a", "a/b", "c"][rng.random_range(0..3)].to_string();
                        if !settings.excluded.contains(&sub) {
                            // Excluding a subfolder drops the local deletions in it that were
                            // not sent yet: the computer stops tracking its copy there, and
                            // what the server holds comes back when it is included again.
                            deletions.excluded(ci, &sub);
                            let key = concurrency.key(&sub);
                            concurrency.excluded_names[ci].insert(key);
                            settings.excluded.push(sub);
                        } else {
                            // Until it syncs, the computer knows nothing of what the server
                            // holds there now.
                            deletions.included(ci);
                            settings.excluded.retain(|e| *e != sub);
                        }
                    }
                    _ => settings.paused = !settings.paused,
                }
                trace.log(format!(
                    "  {}: direction {:?}, excluded {:?}, paused {}",
                    c.name, settings.direction, settings.excluded, settings.paused
                ));
            }
            // Someone changes the folder's ignore rules (the file syncs; it is emptied before
            // the end).
            14 => {
                let text = IGNORE_TEXTS[rng.random_range(0..IGNORE_TEXTS.len())];
                trace.log(format!("  {}: ignore rules {text:?}", c.name));
                observed.written.insert(file_hash(text.as_bytes()));
                c.fs.write(IGNORE_FILE, text);
                deletions.wrote(ci, IGNORE_FILE);
                concurrency.changed(ci, IGNORE_FILE);
            }
            // Someone restores an old version from the server's history (the server makes it
            // the current version again, under a new rev).
            10 => {
                if let Some((path, from, rev)) = backend.restore_random(&mut rng).await {
                    trace.log(format!("  server: restored {path} from rev {from} as rev {rev}"));
                    deletions.restored(path.as_str(), step);
                    concurrency.restored(path.as_str());
                }
            }
            // A chunk the server stores is damaged on its disk while this computer syncs: the
            // pass may fail for the files that need it, but must install nothing wrong; the
            // chunk is repaired afterwards (as an upload of the same bytes would).
            11 => {
                if let Some(h) = backend.damage_chunk(&mut rng) {
                    trace.log(format!("  server: chunk {h} damaged"));
                    sync_partly(c, ci, step, &backend, trace, &mut deletions, &mut concurrency).await;
                    backend.repair_chunks();
                }
            }
            // The executable bit of a file is set or cleared (`chmod`: the mtime stays).
            18 if !existing.is_empty() => {
                let path = &existing[rng.random_range(0..existing.len())];
                let rel = filesync_core::RelPath::new(path.as_str()).expect("valid");
                let executable = c.fs.stat(&rel).unwrap().expect("listed").executable;
                c.fs.set_executable(path, !executable);
                trace.log(format!("  {}: {path} executable {}", c.name, !executable));
                deletions.wrote(ci, path);
                concurrency.changed(ci, path);
            }
            // A directory is moved or renamed (one rename: its files keep their inodes), on a
            // disk that ignores case sometimes only by case.
            19 => {
                let dirs: Vec<String> = c.tree().1.into_iter().collect();
                if dirs.is_empty() {
                    continue;
                }
                let from = &dirs[rng.random_range(0..dirs.len())];
                let case_only = case_insensitive && rng.random_bool(0.3);
                let to = if case_only {
                    case_flipped(from)
                } else {
                    DIR_TARGETS[rng.random_range(0..DIR_TARGETS.len())].to_string()
                };
                let fold = |p: &str| if case_insensitive { p.to_lowercase() } else { p.to_string() };
                let parent_is_dir =
                    to.rsplit_once('/').is_none_or(|(d, _)| c.tree().1.iter().any(|x| fold(x) == fold(d)));
                let free = case_only || (!c.fs.exists(&to) && !fold(&to).starts_with(&format!("{}/", fold(from))));
                if !(free && parent_is_dir) || to == *from {
                    continue;
                }
                let moved = c.files_under(from);
                let rel = |p: &str| filesync_core::RelPath::new(p).expect("valid");
                c.fs.rename_noreplace(&rel(from), &rel(&to)).expect("a free name");
                trace.log(format!("  {}: directory {from} renamed to {to}", c.name));
                let excluded = c.folder.borrow().settings.excluded.clone();
                for f in moved {
                    let new = format!("{to}{}", &f[from.len()..]);
                    // (A case-only rename deletes nothing: the same names, spelled otherwise.)
                    if !case_only {
                        deletions.deleted(ci, &f, &excluded, &rules);
                    }
                    concurrency.changed(ci, &f);
                    concurrency.moved(&f, &new);
                    deletions.wrote(ci, &new);
                    concurrency.changed(ci, &new);
                }
                concurrency.changed(ci, from);
                concurrency.changed(ci, &to);
            }
            // A directory is replaced by a file of the same name (its files deleted), or such a
            // file by a directory again, with a new file in it.
            20 => {
                let dir = REPLACED_DIRS[rng.random_range(0..REPLACED_DIRS.len())];
                let data = content(&mut rng, seed, step);
                let rel = filesync_core::RelPath::new(dir).expect("valid");
                let is_file = c.fs.stat(&rel).ok().flatten().is_some_and(|s| s.kind != StatKind::Dir);
                let excluded = c.folder.borrow().settings.excluded.clone();
                let path = if is_file {
                    // (Spelled as on this disk, which may ignore case.)
                    let file = c.files_under(dir).remove(0);
                    c.fs.remove(&file);
                    deletions.deleted(ci, &file, &excluded, &rules);
                    concurrency.changed(ci, &file);
                    let path = format!("{dir}/{}", NAMES[rng.random_range(0..NAMES.len())]);
                    trace.log(format!("  {}: the file {file} replaced by a directory holding {path}", c.name));
                    path
                } else if !c.blocked(&format!("{dir}/f")) {
                    // (`dir` is a directory, or absent with nothing in its way.)
                    for f in c.files_under(dir) {
                        deletions.deleted(ci, &f, &excluded, &rules);
                        concurrency.changed(ci, &f);
                    }
                    c.fs.remove(dir);
                    trace.log(format!("  {}: the directory {dir} replaced by a file", c.name));
                    dir.to_string()
                } else {
                    continue;
                };
                observed.written.insert(file_hash(&data));
                c.fs.write(&path, data);
                deletions.wrote(ci, &path);
                concurrency.changed(ci, &path);
                concurrency.changed(ci, dir);
            }
            // Some computers sync at the same time, over a network that reorders.
            _ if network == Network::Reordering && net_rng.random_bool(0.4) => {
                let group: Vec<usize> =
                    std::iter::once(ci).chain((0..n).filter(|&o| o != ci && net_rng.random_bool(0.5))).collect();
                let before: Vec<(Rules, BTreeMap<String, Vec<u8>>)> =
                    group.iter().map(|&i| (Rules::now(&computers[i]), computers[i].tree().0)).collect();
                // Each may send its changes at any moment of the step.
                let sending: Vec<BTreeSet<String>> = group.iter().map(|&i| concurrency.unsent[i].clone()).collect();
                for (m, &i) in group.iter().enumerate() {
                    concurrency.publish(i, &sending[m]);
                }
                let results = sync_together(&computers, &group, &backend, &mut net_rng, trace).await;
                for (m, (&i, (r, cut))) in group.iter().zip(&results).enumerate() {
                    trace.pass(&computers[i].name, r);
                    if *cut {
                        // It may have sent anything, and what it saw does not count as seen.
                        deletions.partial(i, step);
                        concurrency.partial(i);
                        continue;
                    }
                    let r = r.as_ref().map_err(|e| format!("step {step}: {}: sync failed: {e}", computers[i].name))?;
                    if !r.errors.is_empty() {
                        return Err(format!("step {step}: {}: files failed: {:?}", computers[i].name, r.errors));
                    }
                    let c = &computers[i];
                    let rules = before[m].0.and_now(c);
                    observe(c, before[m].1.clone(), r, &rules, &mut observed, step);
                    concurrency.server_holds(&backend.state().await);
                    concurrency
                        .check(i, &c.name, c.tree().0.into_keys(), &rules)
                        .map_err(|e| format!("step {step}: {e}"))?;
                    let settings = c.folder.borrow().settings.clone();
                    deletions.finished(i, step, &settings, &rules, &concurrency.moved_aside[i], &group[m + 1..]);
                    concurrency.finished(i, &settings, &rules);
                }
                // What the others sent may have come after a pass's pull.
                for &i in &group {
                    for (m, &o) in group.iter().enumerate() {
                        if o != i {
                            concurrency.others[i].extend(sending[m].iter().cloned());
                        }
                    }
                }
            }
            // Sync.
            _ => {
                let seen = c.tree().0;
                let r = c.sync(&backend, trace).await.map_err(|e| format!("step {step}: {e}"))?;
                let rules = rules.and_now(c);
                observe(c, seen, &r, &rules, &mut observed, step);
                concurrency.server_holds(&backend.state().await);
                concurrency
                    .check(ci, &c.name, c.tree().0.into_keys(), &rules)
                    .map_err(|e| format!("step {step}: {e}"))?;
                deletions.finished(ci, step, &c.folder.borrow().settings, &rules, &concurrency.moved_aside[ci], &[]);
                concurrency.finished(ci, &c.folder.borrow().settings, &rules);
            }
        }
        concurrency
            .check(ci, &c.name, c.tree().0.into_keys(), &rules.and_now(c))
            .map_err(|e| format!("step {step}: {e}"))?;
        // Nothing half-written, ever: after every step (a crash, a power loss, a damaged
        // chunk…) each file under its real name holds a content someone wrote or the server
        // has.
        let server = backend.state().await;
        // The server's current state is a tree: no live file where a live path needs its
        // directory.
        for path in server.files.keys().chain(&server.dirs) {
            if let Some((i, _)) = path.match_indices('/').find(|(i, _)| server.files.contains_key(&path[..*i])) {
                return Err(format!("step {step}: the server holds {path} below the file {}", &path[..i]));
            }
        }
        concurrency.server_holds(&server);
        let from_server = server.history;
        for c in &computers {
            for (path, data) in c.tree().0 {
                let h = file_hash(&data);
                if !observed.written.contains(&h) && !from_server.contains(&h) {
                    let head = String::from_utf8_lossy(&data[..data.len().min(24)]).to_string();
                    return Err(format!(
                        "step {step}: {path} on {} holds content nobody wrote ({} bytes, {head:?})",
                        c.name,
                        data.len()
                    ));
                }
            }
        }
    }

    // The workload stops and the settings go back to the defaults: changes flow both ways
    // again, nothing excluded, nothing paused.
    for c in &computers {
        c.folder.borrow_mut().settings = FolderSettings::default();
    }

    // Quiet: everyone syncs until a whole round does nothing. Then, if the ignore file says
    // anything, the first computer empties it (all hold the same one by then) and everyone
    // syncs to quiet again: everything ignored so far syncs too.
    let mut round = 0;
    for phase in 0..2 {
        if phase == 1 {
            if computers.iter().all(|c| c.fs.read(IGNORE_FILE).is_none_or(|t| t.is_empty())) {
                break;
            }
            trace.log(format!("{}: ignore rules emptied", computers[0].name));
            observed.written.insert(file_hash(b""));
            computers[0].fs.write(IGNORE_FILE, "");
            deletions.wrote(0, IGNORE_FILE);
            concurrency.changed(0, IGNORE_FILE);
        }
        let mut quiet = false;
        for _ in 0..MAX_QUIET_ROUNDS {
            let mut work = 0;
            for (ci, c) in computers.iter().enumerate() {
                let (rules, seen) = (Rules::now(c), c.tree().0);
                let r = c.sync(&backend, trace).await?;
                let rules = rules.and_now(c);
                observe(c, seen, &r, &rules, &mut observed, steps + round);
                concurrency.server_holds(&backend.state().await);
                concurrency
                    .check(ci, &c.name, c.tree().0.into_keys(), &rules)
                    .map_err(|e| format!("round {round}: {e}"))?;
                deletions.finished(
                    ci,
                    steps + round,
                    &FolderSettings::default(),
                    &rules,
                    &concurrency.moved_aside[ci],
                    &[],
                );
                concurrency.finished(ci, &FolderSettings::default(), &rules);
                work += r.uploaded + r.downloaded + r.deleted_local + r.deleted_remote + r.conflicts;
            }
            round += 1;
            if work == 0 {
                quiet = true;
                break;
            }
        }
        if !quiet {
            return Err(format!("no quiet after {MAX_QUIET_ROUNDS} rounds of syncing every computer (phase {phase})"));
        }
    }

    // The same tree everywhere, and it is the server's.
    let state = backend.state().await;
    trace.log(format!("server: {:?} {:?} executable {:?}", state.files, state.dirs, state.executables));
    trace.log(format!("server journal: {:?}", state.journal));
    for c in &computers {
        trace.log(format!("{}: {:?}", c.name, c.tree().0.keys().collect::<Vec<_>>()));
    }
    let (server_files, server_dirs) = (state.files, state.dirs);
    // On disks that ignore case, names the server holds in two spellings clash: each computer
    // keeps the spelling it has and reports the other as skipped (the product's rule), so
    // those names are left out of the comparison (their contents are still in the "no lost
    // version" check below).
    let clashes: BTreeSet<String> = if case_insensitive {
        let mut seen: HashMap<String, usize> = HashMap::new();
        for p in spellings(server_files.keys().chain(&server_dirs)) {
            *seen.entry(p.to_lowercase()).or_default() += 1;
        }
        seen.into_iter().filter(|(_, n)| *n > 1).map(|(p, _)| p).collect()
    } else {
        BTreeSet::new()
    };
    let clear = |p: &String| {
        let folded = p.to_lowercase();
        !clashes.iter().any(|c| folded == *c || folded.starts_with(&format!("{c}/")))
    };
    let compared = |(files, dirs): (BTreeMap<String, Hash>, BTreeSet<String>)| {
        let files: BTreeMap<String, Hash> = files.into_iter().filter(|(p, _)| clear(p)).collect();
        let dirs: BTreeSet<String> = dirs.into_iter().filter(|p| clear(p)).collect();
        (files, dirs)
    };
    let (files, dirs) = compared(computers[0].hashed_tree());
    for c in &computers[1..] {
        let (f, d) = compared(c.hashed_tree());
        if f != files || d != dirs {
            return Err(format!(
                "{} and {} differ: files {:?} vs {:?}, dirs {dirs:?} vs {d:?}",
                computers[0].name,
                c.name,
                files.keys().collect::<Vec<_>>(),
                f.keys().collect::<Vec<_>>()
            ));
        }
    }
    let (server_files, server_dirs) = compared((server_files, server_dirs));
    if server_files != files || server_dirs != dirs {
        return Err(format!(
            "the computers hold {:?} {dirs:?}, the server {:?} {server_dirs:?}",
            files.keys().collect::<Vec<_>>(),
            server_files.keys().collect::<Vec<_>>()
        ));
    }
    // And the same executable bits.
    let executables: BTreeSet<String> = state.executables.iter().filter(|p| clear(p)).cloned().collect();
    for c in &computers {
        let here: BTreeSet<String> = c.executables().into_iter().filter(|p| clear(p)).collect();
        if here != executables {
            return Err(format!("{} has the executable files {here:?}, the server {executables:?}", c.name));
        }
    }

    // No resurrection: what every computer saw deleted stays deleted.
    let folded = |p: &String| if case_insensitive { p.to_lowercase() } else { p.clone() };
    let present: BTreeSet<String> = files.keys().chain(server_files.keys()).map(folded).collect();
    trace.log(format!("deletions every computer pulled: {:?}", deletions.settled(n)));
    for path in deletions.settled(n) {
        if present.contains(path) {
            return Err(format!("{path} came back after a deletion every computer had pulled"));
        }
    }

    // No lost version.
    let mut kept: BTreeSet<Hash> = files.values().copied().collect();
    kept.extend(state.history);
    for (h, seen) in &observed.versions {
        if !kept.contains(h) {
            return Err(format!("lost a version: the content {seen} is neither a current file nor in the history"));
        }
    }
    Ok(())
}

/// Records the files `seen` on `c` before a sync that then finished: those contents must
/// never be lost. Only what the engine is to upload counts: not while the folder is paused or
/// download-only (local edits then stay local, and a person may overwrite them before the
/// engine ever sends them), nor in excluded subfolders, nor ignored paths.
fn observe(
    c: &Computer,
    seen: BTreeMap<String, Vec<u8>>,
    report: &PassReport,
    rules: &Rules,
    observed: &mut Observed,
    step: usize,
) {
    let settings = c.folder.borrow().settings.clone();
    if settings.paused || settings.direction == Direction::DownloadOnly {
        return;
    }
    // What the pass held back and said so (upload-only: a file where the server's directory
    // keeps files this computer does not download) stays this computer's alone.
    let held: BTreeSet<&str> =
        report.skipped.iter().filter(|s| s.reason.starts_with("not uploaded")).map(|s| s.path.as_str()).collect();
    let excluded = |p: &str| {
        settings.excluded.iter().any(|e| p == e || p.starts_with(&format!("{e}/")))
            || rules.ignored(p)
            || held.contains(p)
    };
    for (path, data) in seen.into_iter().filter(|(p, _)| !excluded(p)) {
        observed.versions.entry(file_hash(&data)).or_insert_with(|| format!("of {path} on {} at step {step}", c.name));
    }
}

/// How the simulated network carries requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Network {
    /// In order and at once (or cut): one computer syncs at a time. The histories before the
    /// network could reorder (`FILESYNC_SIM_NET=in-order`).
    InOrder,
    /// Some syncs run at the same time, their requests delayed and reordered (`sim/net.rs`).
    Reordering,
}

impl Network {
    /// `FILESYNC_SIM_NET=in-order` or the default, reordering.
    fn from_env() -> Network {
        match std::env::var("FILESYNC_SIM_NET").as_deref() {
            Ok("in-order") => Network::InOrder,
            _ => Network::Reordering,
        }
    }
}

/// Runs one seed; its trace comes back either way.
fn run_seed(seed: u64, network: Network) -> (Result<(), String>, Vec<String>) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut trace = Trace::new();
    let result = rt.block_on(run(seed, network, &mut trace));
    (result, trace.lines)
}

#[test]
fn seeded_histories_converge_and_lose_no_version() {
    // The engine's own log, to follow a replay: `FILESYNC_SIM_LOG=filesync_agent=debug`.
    if let Ok(filter) = std::env::var("FILESYNC_SIM_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .without_time()
            .init();
    }
    let seeds: Vec<u64> = match std::env::var("FILESYNC_SIM_SEED") {
        Ok(s) => vec![s.parse().expect("FILESYNC_SIM_SEED is a number")],
        Err(_) => {
            let var =
                |name: &str, default: u64| std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default);
            let (first, n) = (var("FILESYNC_SIM_FIRST", 0), var("FILESYNC_SIM_SEEDS", 300));
            (first..first + n).collect()
        }
    };
    let network = Network::from_env();
    let mut failed = Vec::new();
    for (done, &seed) in seeds.iter().enumerate() {
        if done % 100 == 0 {
            // Read by `scripts/soak` for its progress line.
            eprintln!("sim progress: {done} of {} seeds, {} failed", seeds.len(), failed.len());
        }
        if let (Err(e), _) = run_seed(seed, network) {
            let net = if network == Network::InOrder { " FILESYNC_SIM_NET=in-order" } else { "" };
            eprintln!(
                "seed {seed} failed: {e}\n  replay: FILESYNC_SIM_SEED={seed}{net} cargo test -p filesync-agent --test sim"
            );
            failed.push(seed);
        }
    }
    assert!(failed.is_empty(), "{} of {} seeds failed: {failed:?}", failed.len(), seeds.len());
}

/// Every seed that once found a bug (in the engine, the server or these checks), named in the
/// code or the history where it was fixed: each replays clean, over the network it ran on.
/// (The seeds below 300 run in every `cargo test` anyway; CI's soak runs 1,000,000 and up.)
const SEEDS_THAT_FOUND_BUGS_IN_ORDER: &[u64] = &[
    395, 690, 1416, 1668, 2026, 4603, 4614, 12212, 13788, 17253, 19181, 2035693, 2042235, 2080237, 5045387, 7107379,
    9054739, 30000133, 1000398, 1005794, 314, 652, 958, 1060, 2882, 3130, 6066, 2011227, 2045466, 2048187, 40381,
    49679, 3040803, 3046730, 3095330, 4004795,
];

/// The same, found with syncs running at the same time over a reordering network.
const SEEDS_THAT_FOUND_BUGS_REORDERING: &[u64] = &[5138454];

#[test]
fn the_seeds_that_found_bugs_stay_fixed() {
    let failed: Vec<(u64, Network, String)> = (SEEDS_THAT_FOUND_BUGS_IN_ORDER.iter().map(|&s| (s, Network::InOrder)))
        .chain(SEEDS_THAT_FOUND_BUGS_REORDERING.iter().map(|&s| (s, Network::Reordering)))
        .filter_map(|(seed, network)| run_seed(seed, network).0.err().map(|e| (seed, network, e)))
        .collect();
    assert!(failed.is_empty(), "seeds that once found bugs fail again: {failed:?}");
}

/// The simulation is only worth its seeds if a seed is a history: running one twice must do
/// the same things in the same order and end in the same state, line for line.
#[test]
fn the_same_seed_replays_the_same_history() {
    let first = std::env::var("FILESYNC_SIM_FIRST").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    for seed in first..first + 25 {
        let (a, trace_a) = run_seed(seed, Network::Reordering);
        let (b, trace_b) = run_seed(seed, Network::Reordering);
        assert_eq!(a, b, "seed {seed}: two runs ended differently");
        if let Some(i) = (0..trace_a.len().max(trace_b.len())).find(|&i| trace_a.get(i) != trace_b.get(i)) {
            panic!(
                "seed {seed}: two runs differ from line {i}:\n  first:  {:?}\n  second: {:?}\n  replay: FILESYNC_SIM_SEED={seed} FILESYNC_SIM_TRACE=1 cargo test -p filesync-agent --test sim",
                trace_a.get(i),
                trace_b.get(i)
            );
        }
    }
}
