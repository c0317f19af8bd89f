//! Test support: builders for folder states, a checker for the plan contract, and a tiny
//! in-memory executor that runs a plan the way the agent and server would — refusing every
//! step that would clobber an unsynced change, use a stale rev, remove a non-empty directory
//! or write under a missing parent — so tests check what a plan *does*, not only its shape.

use crate::{Action, Base, Direction, FolderState, Held, PathState, PlanContext, Remote, plan};
use filesync_core::conflict::{conflict_copy_path, is_conflict_copy};
use filesync_core::{EntryKind, FileMeta, Hash, RelPath};
use std::collections::{BTreeMap, BTreeSet};

/// The device name and clock every test plans with: copies are named
/// `… (conflicted copy from laptop 2026-11-24 230105)…`.
pub fn ctx() -> PlanContext {
    PlanContext::new("laptop", 1_795_561_265)
}

/// [`ctx`] with a direction, and a revert or not.
pub fn ctx_in(direction: Direction, revert: bool) -> PlanContext {
    PlanContext { direction, revert, ..ctx() }
}

pub fn p(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

/// The conflict copy of `path` made under [`ctx`] at `attempt`.
pub fn copy_of(path: &str, attempt: u32) -> RelPath {
    let c = ctx();
    conflict_copy_path(&p(path), &c.device_name, c.now_unix, attempt)
}

/// A file whose content is identified by `n`.
pub fn file(n: u8) -> FileMeta {
    FileMeta {
        kind: EntryKind::File,
        size: u64::from(n) + 1,
        mtime_ns: 1_000,
        executable: false,
        hash: Hash([n; 32]),
        chunks: Vec::new(),
    }
}

/// The same bytes as `file(n)`, with the executable bit set.
pub fn exe(n: u8) -> FileMeta {
    FileMeta { executable: true, ..file(n) }
}

pub fn dir() -> FileMeta {
    FileMeta::dir(1_000)
}

/// `meta` with another modification time: the same content.
pub fn touched(meta: FileMeta) -> FileMeta {
    FileMeta { mtime_ns: meta.mtime_ns + 7, ..meta }
}

pub fn base(rev: u64, meta: FileMeta) -> Option<Base> {
    Some(Base { rev, meta })
}

pub fn live(rev: u64, meta: FileMeta) -> Option<Remote> {
    Some(Remote { rev, meta: Some(meta) })
}

pub fn tomb(rev: u64) -> Option<Remote> {
    Some(Remote { rev, meta: None })
}

pub fn ps(local: Option<FileMeta>, base: Option<Base>, remote: Option<Remote>) -> PathState {
    PathState { local, base, remote }
}

/// A path that is the same everywhere, synced at `rev`.
pub fn synced(rev: u64, meta: FileMeta) -> PathState {
    ps(Some(meta.clone()), base(rev, meta.clone()), live(rev, meta))
}

pub fn folder<const N: usize>(entries: [(&str, PathState); N]) -> FolderState {
    entries.into_iter().map(|(path, s)| (p(path), s)).collect()
}

pub fn up(path: &str, base_rev: u64) -> Action {
    Action::Upload { path: p(path), base_rev }
}

pub fn down(path: &str, rev: u64) -> Action {
    Action::Download { path: p(path), rev }
}

pub fn del_local(path: &str) -> Action {
    Action::DeleteLocal { path: p(path) }
}

pub fn del_remote(path: &str, base_rev: u64) -> Action {
    Action::DeleteRemote { path: p(path), base_rev }
}

pub fn record(path: &str, rev: u64) -> Action {
    Action::RecordBase { path: p(path), rev }
}

pub fn forget(path: &str) -> Action {
    Action::ForgetBase { path: p(path) }
}

pub fn aside(path: &str, copy: RelPath) -> Action {
    Action::MoveLocalAside { path: p(path), copy }
}

/// Plans `state` under [`ctx`], checking that planning twice gives the same plan and that
/// the plan keeps the contract.
pub fn checked_plan(state: &FolderState) -> Vec<Action> {
    checked_plan_in(state, &ctx())
}

/// [`checked_plan`] under `ctx`.
pub fn checked_plan_in(state: &FolderState, ctx: &PlanContext) -> Vec<Action> {
    let actions = plan(state, ctx);
    assert_eq!(actions, plan(state, ctx), "planning is not deterministic");
    if let Err(e) = check_plan_in(state, &actions, ctx) {
        panic!("plan breaks the contract: {e}\nstate: {state:#?}\nplan: {actions:#?}");
    }
    actions
}

fn remote_live(s: &PathState) -> Option<&FileMeta> {
    s.remote.as_ref().and_then(|r| r.meta.as_ref())
}

fn remote_rev(s: &PathState) -> u64 {
    s.remote.as_ref().map_or(0, |r| r.rev)
}

fn phase(a: &Action) -> u8 {
    match a {
        Action::MoveLocalAside { .. } => 0,
        Action::Download { .. } => 1,
        Action::Upload { .. } => 2,
        Action::DeleteLocal { .. } => 3,
        Action::DeleteRemote { .. } => 4,
        Action::RecordBase { .. } | Action::ForgetBase { .. } => 5,
        Action::NotUploaded { .. } | Action::NotDownloaded { .. } => 6,
    }
}

/// Checks what must hold for any plan of any state, valid tree or not: the order of the
/// contract, one action per path (a conflict's move and download excepted), fresh copy
/// names, nothing under a path moved aside, and that each action fits the state of its path
/// (deletions only of unchanged versions, uploads based on the server's current rev).
pub fn check_plan(state: &FolderState, plan: &[Action]) -> Result<(), String> {
    check_plan_in(state, plan, &ctx())
}

/// [`check_plan`] under a direction: also that the plan does nothing the direction forbids —
/// upload-only never touches the local folder, download-only never the server — and reports
/// held-back changes only in the direction that holds them back.
pub fn check_plan_in(state: &FolderState, plan: &[Action], ctx: &PlanContext) -> Result<(), String> {
    let (dir, revert) = (ctx.direction, ctx.revert && ctx.direction != Direction::TwoWay);
    for a in plan {
        let allowed = match a {
            Action::MoveLocalAside { .. } => dir == Direction::TwoWay || (dir == Direction::DownloadOnly && !revert),
            Action::Download { .. } | Action::DeleteLocal { .. } => dir != Direction::UploadOnly,
            Action::Upload { .. } | Action::DeleteRemote { .. } => dir != Direction::DownloadOnly,
            Action::RecordBase { .. } | Action::ForgetBase { .. } => true,
            // Upload-only: a file where the server has a directory with entries that stay.
            Action::NotUploaded { path, why } => {
                (*why == Held::DownloadOnly && dir == Direction::DownloadOnly && !revert)
                    || (*why == Held::ServerHasFolder
                        && dir == Direction::UploadOnly
                        && !revert
                        && state.get(path).and_then(|s| s.local.as_ref()).is_some_and(|l| l.kind != EntryKind::Dir)
                        && state.iter().any(|(p, x)| path.is_ancestor_of(p) && remote_live(x).is_some()))
            }
            Action::NotDownloaded { .. } => dir == Direction::UploadOnly && !revert,
        };
        if !allowed {
            return Err(format!("{a:?} is not allowed under {dir:?} (revert: {revert})"));
        }
    }
    for w in plan.windows(2) {
        if phase(&w[0]) > phase(&w[1]) {
            return Err(format!("{:?} comes after {:?}", w[0], w[1]));
        }
    }
    for (i, a) in plan.iter().enumerate() {
        for b in &plan[i + 1..] {
            let wrong = match (a, b) {
                (Action::Download { .. }, Action::Download { .. }) | (Action::Upload { .. }, Action::Upload { .. }) => {
                    b.path().is_ancestor_of(a.path())
                }
                (Action::DeleteLocal { .. }, Action::DeleteLocal { .. })
                | (Action::DeleteRemote { .. }, Action::DeleteRemote { .. }) => a.path().is_ancestor_of(b.path()),
                _ => false,
            };
            if wrong {
                return Err(format!("{a:?} and {b:?} are in the wrong order"));
            }
        }
    }

    let mut by_path: BTreeMap<&RelPath, Vec<&Action>> = BTreeMap::new();
    for a in plan {
        by_path.entry(a.path()).or_default().push(a);
    }
    for (path, actions) in &by_path {
        let ok = match actions.as_slice() {
            // Alone only where the server has no live entry at the path (checked below).
            [Action::MoveLocalAside { .. }] => state.get(*path).is_some_and(|s| remote_live(s).is_none()),
            [_] => true,
            [Action::MoveLocalAside { .. }, Action::Download { .. }] => true,
            _ => false,
        };
        if !ok {
            return Err(format!("{path:?} has contradicting actions {actions:?}"));
        }
    }

    let mut known: BTreeSet<&str> = BTreeSet::new();
    for path in state.keys() {
        known.insert(path.as_str());
        known.extend(path.ancestors());
    }
    let mut copies = BTreeSet::new();
    let moved: Vec<&RelPath> = plan
        .iter()
        .filter_map(|a| match a {
            Action::MoveLocalAside { path, copy } => {
                copies.insert(copy.clone());
                Some(path)
            }
            _ => None,
        })
        .collect();
    let n_moves = moved.len();
    if copies.len() != n_moves {
        return Err("two conflict copies share a name".into());
    }
    for copy in &copies {
        if known.contains(copy.as_str()) || by_path.contains_key(copy) || !is_conflict_copy(copy) {
            return Err(format!("conflict copy {copy:?} is not a fresh conflict-copy name"));
        }
    }
    for a in plan {
        if let Some(m) = moved.iter().find(|m| m.is_ancestor_of(a.path())) {
            return Err(format!("{a:?} is under {m:?}, which moves aside"));
        }
    }

    for a in plan {
        let Some(s) = state.get(a.path()) else {
            return Err(format!("{a:?} is about a path the state does not know"));
        };
        let fits = match a {
            // Remotely live, or (a file in the way of entries below a directory the server
            // deleted) with something below it.
            Action::MoveLocalAside { path, .. } => {
                s.local.is_some()
                    && (remote_live(s).is_some()
                        || state
                            .iter()
                            .any(|(p, x)| path.is_ancestor_of(p) && (remote_live(x).is_some() || x.local.is_some())))
            }
            Action::Download { rev, .. } => remote_live(s).is_some() && remote_rev(s) == *rev,
            Action::Upload { base_rev, .. } => s.local.is_some() && remote_rev(s) == *base_rev,
            // Revert local replaces and removes local changes: the one destructive plan.
            Action::DeleteLocal { .. } if revert => s.local.is_some() && remote_live(s).is_none(),
            Action::DeleteLocal { .. } => match (&s.local, &s.base) {
                (Some(l), Some(b)) => l.same_content(&b.meta),
                _ => false,
            },
            // Upload-only deletes over whatever the server holds (its history keeps it).
            Action::DeleteRemote { base_rev, .. } if dir == Direction::UploadOnly => {
                s.local.is_none() && remote_live(s).is_some() && remote_rev(s) == *base_rev
            }
            Action::DeleteRemote { base_rev, .. } => {
                s.local.is_none()
                    && remote_live(s).is_some()
                    && s.base.as_ref().is_some_and(|b| b.rev == *base_rev && remote_rev(s) == b.rev)
            }
            Action::NotUploaded { .. } => s.local.is_some() || s.base.is_some(),
            Action::NotDownloaded { .. } => s.remote.is_some() || s.base.is_some(),
            Action::RecordBase { rev, .. } => match (&s.local, remote_live(s)) {
                (Some(l), Some(r)) => l.same_content(r) && remote_rev(s) == *rev,
                _ => false,
            },
            Action::ForgetBase { .. } => s.base.is_some() && s.local.is_none() && remote_live(s).is_none(),
        };
        if !fits {
            return Err(format!("{a:?} does not fit the state of its path: {s:?}"));
        }
    }
    Ok(())
}

/// True when each view of the state is a tree: whatever a view holds under a path, that view
/// holds the path as a directory. What scanners, servers and databases produce.
pub fn is_valid_tree(state: &FolderState) -> bool {
    let is_dir = |m: Option<&FileMeta>| m.is_some_and(|m| m.kind == EntryKind::Dir);
    state.iter().all(|(path, s)| {
        let Some(parent) = path.parent() else { return true };
        let ps = state.get(&parent);
        (s.local.is_none() || is_dir(ps.and_then(|x| x.local.as_ref())))
            && (s.base.is_none() || is_dir(ps.and_then(|x| x.base.as_ref().map(|b| &b.meta))))
            && (remote_live(s).is_none() || is_dir(ps.and_then(remote_live)))
    })
}

/// The disk, the local state database and the server, as maps.
#[derive(Clone, Debug)]
pub struct World {
    pub local: BTreeMap<RelPath, FileMeta>,
    pub base: BTreeMap<RelPath, Base>,
    pub remote: BTreeMap<RelPath, Remote>,
    next_rev: u64,
    /// Revert local: downloads and deletions may replace unsynced local changes.
    pub replace_local: bool,
}

/// Where `MoveLocalAside` put things: (path, copy).
pub type Moves = Vec<(RelPath, RelPath)>;

impl World {
    pub fn new(state: &FolderState) -> World {
        let mut w = World {
            local: BTreeMap::new(),
            base: BTreeMap::new(),
            remote: BTreeMap::new(),
            next_rev: 1,
            replace_local: false,
        };
        for (path, s) in state {
            if let Some(l) = &s.local {
                w.local.insert(path.clone(), l.clone());
            }
            if let Some(b) = &s.base {
                w.next_rev = w.next_rev.max(b.rev + 1);
                w.base.insert(path.clone(), b.clone());
            }
            if let Some(r) = &s.remote {
                w.next_rev = w.next_rev.max(r.rev + 1);
                w.remote.insert(path.clone(), r.clone());
            }
        }
        w
    }

    pub fn state(&self) -> FolderState {
        let mut state = FolderState::new();
        for (path, l) in &self.local {
            state.entry(path.clone()).or_default().local = Some(l.clone());
        }
        for (path, b) in &self.base {
            state.entry(path.clone()).or_default().base = Some(b.clone());
        }
        for (path, r) in &self.remote {
            state.entry(path.clone()).or_default().remote = Some(r.clone());
        }
        state
    }

    /// Runs `plan` step by step; the first step that would be invalid stops it.
    pub fn execute(&mut self, plan: &[Action]) -> Result<Moves, String> {
        let mut moves = Moves::new();
        for a in plan {
            self.step(a, &mut moves).map_err(|e| format!("{a:?}: {e}"))?;
        }
        Ok(moves)
    }

    fn has_local_children(&self, path: &RelPath) -> bool {
        self.local.keys().any(|k| path.is_ancestor_of(k))
    }

    fn has_remote_children(&self, path: &RelPath) -> bool {
        self.remote.iter().any(|(k, r)| r.meta.is_some() && path.is_ancestor_of(k))
    }

    fn step(&mut self, a: &Action, moves: &mut Moves) -> Result<(), String> {
        match a {
            Action::MoveLocalAside { path, copy } => {
                if !self.local.contains_key(path) {
                    return Err("nothing to move".into());
                }
                let used = |k: &RelPath| k == copy || copy.is_ancestor_of(k);
                if self.local.keys().any(used) || self.base.keys().any(used) || self.remote.keys().any(used) {
                    return Err("the copy's name is taken".into());
                }
                let subtree: Vec<RelPath> =
                    self.local.keys().filter(|k| *k == path || path.is_ancestor_of(k)).cloned().collect();
                for k in subtree {
                    let meta = self.local.remove(&k).expect("listed");
                    self.local.insert(relocate(&k, path, copy), meta);
                }
                moves.push((path.clone(), copy.clone()));
            }
            Action::Download { path, rev } => {
                let r = self.remote.get(path).ok_or("the server has no such path")?;
                if r.rev != *rev {
                    return Err(format!("the server is at rev {}", r.rev));
                }
                let meta = r.meta.clone().ok_or("the server's version is deleted")?;
                if let Some(parent) = path.parent()
                    && self.local.get(&parent).is_none_or(|m| m.kind != EntryKind::Dir)
                {
                    return Err("the local parent is not a directory".into());
                }
                if let Some(cur) = self.local.get(path) {
                    let synced = self.base.get(path).is_some_and(|b| cur.same_content(&b.meta));
                    if !synced && !cur.same_content(&meta) && !self.replace_local {
                        return Err("it would overwrite an unsynced local change".into());
                    }
                    if meta.kind != EntryKind::Dir && self.has_local_children(path) {
                        return Err("a file would replace a non-empty local directory".into());
                    }
                }
                self.local.insert(path.clone(), meta.clone());
                self.base.insert(path.clone(), Base { rev: *rev, meta });
            }
            Action::Upload { path, base_rev } => {
                let meta = self.local.get(path).cloned().ok_or("nothing to upload")?;
                let current = self.remote.get(path).map_or(0, |r| r.rev);
                if current != *base_rev {
                    return Err(format!("the server is at rev {current}"));
                }
                if let Some(parent) = path.parent()
                    && self.remote.get(&parent).and_then(|r| r.meta.as_ref()).is_none_or(|m| m.kind != EntryKind::Dir)
                {
                    return Err("the remote parent is not a directory".into());
                }
                if meta.kind != EntryKind::Dir && self.has_remote_children(path) {
                    return Err("a file would replace a non-empty remote directory".into());
                }
                let rev = self.next_rev;
                self.next_rev += 1;
                self.remote.insert(path.clone(), Remote { rev, meta: Some(meta.clone()) });
                self.base.insert(path.clone(), Base { rev, meta });
            }
            Action::DeleteLocal { path } => {
                let cur = self.local.get(path).ok_or("nothing to delete")?;
                let synced = self.base.get(path).is_some_and(|b| cur.same_content(&b.meta));
                if !synced && !self.replace_local {
                    return Err("it would delete an unsynced local change".into());
                }
                if self.has_local_children(path) {
                    return Err("the local directory is not empty".into());
                }
                self.local.remove(path);
                self.base.remove(path);
            }
            Action::DeleteRemote { path, base_rev } => {
                let r = self.remote.get(path).ok_or("the server has no such path")?;
                if r.rev != *base_rev || r.meta.is_none() {
                    return Err(format!("the server is at rev {} (live: {})", r.rev, r.meta.is_some()));
                }
                if self.local.contains_key(path) {
                    return Err("the path exists locally".into());
                }
                if self.has_remote_children(path) {
                    return Err("the remote directory is not empty".into());
                }
                let rev = self.next_rev;
                self.next_rev += 1;
                self.remote.insert(path.clone(), Remote { rev, meta: None });
                self.base.remove(path);
            }
            Action::RecordBase { path, rev } => {
                let l = self.local.get(path).ok_or("nothing local")?;
                let r = self.remote.get(path).filter(|r| r.rev == *rev).and_then(|r| r.meta.clone());
                let r = r.ok_or("the server's version is not live at that rev")?;
                if !l.same_content(&r) {
                    return Err("local and remote differ".into());
                }
                self.base.insert(path.clone(), Base { rev: *rev, meta: r });
            }
            Action::ForgetBase { path } => {
                if self.local.contains_key(path) || self.remote.get(path).is_some_and(|r| r.meta.is_some()) {
                    return Err("the path still exists".into());
                }
                self.base.remove(path);
            }
            Action::NotUploaded { .. } | Action::NotDownloaded { .. } => {}
        }
        Ok(())
    }
}

/// `k` (equal to or under `from`) moved to `to`.
fn relocate(k: &RelPath, from: &RelPath, to: &RelPath) -> RelPath {
    p(&format!("{}{}", to.as_str(), &k.as_str()[from.as_str().len()..]))
}

/// Where the local version that was at `path` is after `moves`.
fn located(path: &RelPath, moves: &Moves) -> RelPath {
    match moves.iter().find(|(from, _)| from == path || from.is_ancestor_of(path)) {
        Some((from, to)) => relocate(path, from, to),
        None => path.clone(),
    }
}

/// No data loss: every live version in `before` is still there in `after` — the local one at
/// its path or where it was moved aside, the remote one at its path — unless it is the synced
/// version (the server's history has it) and the other side changed the path (deleted or
/// replaced it).
pub fn check_no_loss(before: &FolderState, after: &World, moves: &Moves) -> Result<(), String> {
    for (path, s) in before {
        let in_sync = |synced: bool| s.base.is_some() && synced;
        let local_synced = |l: &FileMeta| s.base.as_ref().is_some_and(|b| l.same_content(&b.meta));
        let local_changed = s.local.as_ref().is_none_or(|l| !local_synced(l)) || s.base.is_none();
        let remote_synced = s.base.as_ref().is_some_and(|b| remote_rev(s) == b.rev) && remote_live(s).is_some();
        let remote_changed = !remote_synced;
        if let Some(l) = &s.local
            && !(in_sync(local_synced(l)) && remote_changed)
        {
            let at = located(path, moves);
            if !after.local.get(&at).is_some_and(|m| m.same_content(l)) {
                return Err(format!("the local version of {path:?} is lost (looked at {at:?})"));
            }
        }
        if let Some(r) = remote_live(s)
            && !(in_sync(remote_synced) && local_changed)
            && !after.remote.get(path).and_then(|x| x.meta.as_ref()).is_some_and(|m| m.same_content(r))
        {
            return Err(format!("the remote version of {path:?} is no longer current"));
        }
    }
    Ok(())
}

/// Each side of `w` is a tree.
pub fn check_trees(w: &World) -> Result<(), String> {
    for path in w.local.keys() {
        if let Some(parent) = path.parent()
            && w.local.get(&parent).is_none_or(|m| m.kind != EntryKind::Dir)
        {
            return Err(format!("local {path:?} has no parent directory"));
        }
    }
    for (path, r) in &w.remote {
        if r.meta.is_some()
            && let Some(parent) = path.parent()
            && w.remote.get(&parent).and_then(|x| x.meta.as_ref()).is_none_or(|m| m.kind != EntryKind::Dir)
        {
            return Err(format!("remote {path:?} has no parent directory"));
        }
    }
    Ok(())
}

/// Both sides hold the same live paths with the same content, and the base records them.
pub fn check_in_sync(w: &World) -> Result<(), String> {
    for (path, s) in w.state() {
        match (&s.local, remote_live(&s)) {
            (Some(l), Some(r)) if l.same_content(r) => {
                if s.base.as_ref().is_none_or(|b| b.rev != remote_rev(&s)) {
                    return Err(format!("{path:?} is in sync but its base is {:?}", s.base));
                }
            }
            (None, None) if s.base.is_none() => {}
            _ => return Err(format!("{path:?} is not in sync: {s:?}")),
        }
    }
    Ok(())
}

/// Plans and executes passes on a valid tree until a plan is empty, checking the contract,
/// every step, no data loss and valid trees after each pass, and that the end state is in
/// sync. Returns the world and the plans of each pass.
pub fn sync_until_stable(state: &FolderState) -> Result<(World, Vec<Vec<Action>>), String> {
    const MAX_PASSES: usize = 8;
    let mut world = World::new(state);
    let mut plans = Vec::new();
    for _ in 0..MAX_PASSES {
        let before = world.state();
        let actions = plan(&before, &ctx());
        if actions != plan(&before, &ctx()) {
            return Err("planning is not deterministic".into());
        }
        check_plan(&before, &actions)?;
        if actions.is_empty() {
            check_in_sync(&world)?;
            return Ok((world, plans));
        }
        let moves =
            world.execute(&actions).map_err(|e| format!("pass {}: {e}\nplan: {actions:#?}", plans.len() + 1))?;
        check_no_loss(&before, &world, &moves)?;
        check_trees(&world)?;
        plans.push(actions);
    }
    Err(format!("no stable state after {MAX_PASSES} passes; plans: {plans:#?}"))
}

/// [`sync_until_stable`] that panics with the state on failure.
pub fn assert_syncs(state: &FolderState) -> (World, Vec<Vec<Action>>) {
    sync_until_stable(state).unwrap_or_else(|e| panic!("{e}\nstate: {state:#?}"))
}

/// [`sync_until_stable`] under a direction: passes run until a plan holds nothing but reports
/// of held-back changes. After every pass: the contract, valid trees, and the direction's
/// promise — upload-only never changes the local folder; download-only never changes the
/// server and loses no local version. At the end: a revert left both sides equal; otherwise
/// every change the direction sends was sent (unless a held-back path below blocks it).
pub fn sync_until_stable_in(state: &FolderState, ctx: &PlanContext) -> Result<(World, Vec<Vec<Action>>), String> {
    const MAX_PASSES: usize = 8;
    if ctx.direction == Direction::TwoWay {
        return sync_until_stable(state);
    }
    let mut world = World::new(state);
    world.replace_local = ctx.direction == Direction::DownloadOnly && ctx.revert;
    let mut plans = Vec::new();
    for _ in 0..MAX_PASSES {
        let before = world.state();
        let actions = plan(&before, ctx);
        if actions != plan(&before, ctx) {
            return Err("planning is not deterministic".into());
        }
        check_plan_in(&before, &actions, ctx)?;
        if actions.iter().all(Action::is_report) {
            check_settled(&world, ctx)?;
            return Ok((world, plans));
        }
        let local_before = world.local.clone();
        let remote_before = world.remote.clone();
        let moves =
            world.execute(&actions).map_err(|e| format!("pass {}: {e}\nplan: {actions:#?}", plans.len() + 1))?;
        match ctx.direction {
            Direction::UploadOnly if world.local != local_before => {
                return Err(format!("upload-only changed the local folder\nplan: {actions:#?}"));
            }
            Direction::DownloadOnly if world.remote != remote_before => {
                return Err(format!("download-only changed the server\nplan: {actions:#?}"));
            }
            Direction::DownloadOnly if !ctx.revert => check_no_loss(&before, &world, &moves)?,
            _ => {}
        }
        check_trees(&world)?;
        plans.push(actions);
    }
    Err(format!("no stable state after {MAX_PASSES} passes; plans: {plans:#?}"))
}

/// The end state of [`sync_until_stable_in`]: see there.
fn check_settled(w: &World, ctx: &PlanContext) -> Result<(), String> {
    if ctx.revert {
        return check_in_sync(w);
    }
    let state = w.state();
    let local_below = |path: &RelPath| w.local.keys().any(|k| path.is_ancestor_of(k));
    let remote_below = |path: &RelPath| state.iter().any(|(k, s)| path.is_ancestor_of(k) && remote_live(s).is_some());
    for (path, s) in &state {
        let local_synced = match (&s.local, &s.base) {
            (Some(l), Some(b)) => l.same_content(&b.meta),
            (None, None) => true,
            _ => false,
        };
        let ok = match ctx.direction {
            // Every local change reached the server, unless a remote-only path below blocks it.
            Direction::UploadOnly => local_synced || remote_below(path),
            // Every remote change arrived, unless a local change here (held back, never
            // lost) or a local-only path below keeps the old state.
            Direction::DownloadOnly => {
                let equal = match (&s.local, remote_live(s)) {
                    (Some(l), Some(r)) => l.same_content(r),
                    (None, None) => true,
                    _ => false,
                };
                // (A server with no record at all of a synced path lost it: nothing to apply.)
                equal || !local_synced || local_below(path) || (s.remote.is_none() && s.base.is_some())
            }
            Direction::TwoWay => unreachable!("handled by sync_until_stable"),
        };
        if !ok {
            return Err(format!("{path:?} settled out of sync under {:?}: {s:?}", ctx.direction));
        }
    }
    Ok(())
}

/// [`sync_until_stable_in`] that panics with the state on failure.
pub fn assert_syncs_in(state: &FolderState, ctx: &PlanContext) -> (World, Vec<Vec<Action>>) {
    sync_until_stable_in(state, ctx).unwrap_or_else(|e| panic!("{e}\nstate: {state:#?}"))
}
