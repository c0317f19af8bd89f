//! The sync planner: given, for every path of a folder, what is on disk now (`local`), what
//! was last synced (`base`) and what the server holds (`remote`), decide what to do —
//! uploads, downloads, deletions on either side, conflict copies, and base bookkeeping.
//!
//! Pure: this crate refuses to touch the disk, the network, an async runtime or the clock.
//! The current time and this device's name arrive in [`PlanContext`]; the plan is a plain
//! `Vec<Action>` that the agent executes.

use filesync_core::{FileMeta, RelPath};
use std::collections::BTreeMap;

mod guard;
mod plan;
pub use guard::{Guard, MassDelete, mass_delete, mass_delete_of, remote_file_deletes};
pub use plan::{plan, plan_eviction};

/// The last synced state of a path: the server rev both sides agreed on, and its metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Base {
    pub rev: u64,
    pub meta: FileMeta,
}

/// The server's current entry for a path. `meta: None` is a deletion (tombstone) at `rev`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Remote {
    pub rev: u64,
    pub meta: Option<FileMeta>,
}

/// The three views of one path. Any may be absent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PathState {
    /// What is on disk now (`None`: nothing there). For files, `hash` is filled in.
    pub local: Option<FileMeta>,
    pub base: Option<Base>,
    pub remote: Option<Remote>,
}

/// Which way changes flow for a folder on this computer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Changes flow both ways.
    #[default]
    TwoWay,
    /// This computer is the source: the local folder is never changed. Local changes are
    /// uploaded; a path changed on both sides is uploaded over the remote version (which the
    /// server keeps in its history); remote-only changes are reported as
    /// [`Action::NotDownloaded`].
    UploadOnly,
    /// The server is the source: nothing is ever uploaded or deleted remotely. Remote changes
    /// are applied; a local edit that meets a remote change is kept as a conflict copy first;
    /// local-only changes stay and are reported as [`Action::NotUploaded`].
    DownloadOnly,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlanContext {
    /// This device's name, used in conflict-copy names.
    pub device_name: String,
    /// Unix seconds, used in conflict-copy names.
    pub now_unix: i64,
    /// Which way changes flow (default: both ways).
    pub direction: Direction,
    /// A one-off "revert": with [`Direction::UploadOnly`], make the server equal this computer
    /// (upload every difference, delete remote-only paths); with [`Direction::DownloadOnly`],
    /// make this computer equal the server (replace local edits, remove local-only paths — the
    /// one deliberately destructive plan). No effect with [`Direction::TwoWay`].
    pub revert: bool,
}

impl PlanContext {
    /// A two-way context.
    pub fn new(device_name: impl Into<String>, now_unix: i64) -> PlanContext {
        PlanContext { device_name: device_name.into(), now_unix, ..PlanContext::default() }
    }
}

/// One step of a plan. The plan lists steps in the order they must run:
/// 1. `MoveLocalAside`;
/// 2. `Download`, parents before children;
/// 3. `Upload`, parents before children;
/// 4. `DeleteLocal`, children before parents;
/// 5. `DeleteRemote`, children before parents;
/// 6. `RecordBase` and `ForgetBase`;
/// 7. `NotUploaded` and `NotDownloaded` (reports; nothing to do).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Conflict: rename the local file or directory at `path` to `copy` (a name no other path
    /// uses). The copy is an ordinary new local path that a later pass uploads; after this
    /// step `path` is free for the `Download` that follows it in the same plan.
    MoveLocalAside { path: RelPath, copy: RelPath },
    /// Make the local `path` equal the remote version `rev`: write the file, or create the
    /// directory, then record `rev` as the base.
    Download { path: RelPath, rev: u64 },
    /// Send the local state of `path` (file or directory) to the server as a change based on
    /// `base_rev` (0 if the server never had it); on success record the result as the base.
    Upload { path: RelPath, base_rev: u64 },
    /// The remote deleted `path` and the local copy is unchanged since the base: remove it
    /// locally (a directory only if it is empty by then) and forget the base.
    DeleteLocal { path: RelPath },
    /// The local `path` was deleted and the remote is unchanged since the base: tell the
    /// server, based on `base_rev`; on success forget the base.
    DeleteRemote { path: RelPath, base_rev: u64 },
    /// Local and remote already agree (same content); record `rev` as the base.
    RecordBase { path: RelPath, rev: u64 },
    /// The path is gone on both sides; forget its base.
    ForgetBase { path: RelPath },
    /// The local change of `path` (an edit, a new path, a deletion) is not sent to the
    /// server, for the reason `why`. Nothing to do but report it.
    NotUploaded { path: RelPath, why: Held },
    /// Upload-only: the remote change of `path` is not applied here. Nothing to do but
    /// report it.
    NotDownloaded { path: RelPath },
}

/// Why a local change is held back ([`Action::NotUploaded`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Held {
    /// The folder is download-only: nothing goes up.
    DownloadOnly,
    /// Upload-only: a file where the server's directory keeps entries this computer does not
    /// download (and upload-only never deletes what others put there).
    ServerHasFolder,
}

impl Action {
    /// True for the actions that only report a change the direction holds back
    /// ([`Action::NotUploaded`], [`Action::NotDownloaded`]): nothing to execute.
    pub fn is_report(&self) -> bool {
        matches!(self, Action::NotUploaded { .. } | Action::NotDownloaded { .. })
    }

    pub fn path(&self) -> &RelPath {
        match self {
            Action::MoveLocalAside { path, .. }
            | Action::Download { path, .. }
            | Action::Upload { path, .. }
            | Action::DeleteLocal { path }
            | Action::DeleteRemote { path, .. }
            | Action::RecordBase { path, .. }
            | Action::ForgetBase { path }
            | Action::NotUploaded { path, .. }
            | Action::NotDownloaded { path } => path,
        }
    }
}

/// Input to [`plan`]: every path any of the three views knows about.
pub type FolderState = BTreeMap<RelPath, PathState>;
