//! The trash as a person sees it: deletions made together form one group ("6 items deleted on
//! desktop at 02:57 — Restore all"), a conflict copy deleted by resolving its conflict is a
//! clean-up and no deletion at all, and restoring a deleted folder brings back what was in it —
//! the items below it that were deleted with it. Grouping is a pure function of the server's
//! trash listing; restores are [`super::history`]'s, one per item, on one connection.

use super::OpsError;
use super::history::{Remote, Restored, TrashItem, default_version, open, restore_onto, trash};
use crate::config::{FolderConfig, Home};
use filesync_core::conflict::parse_conflict_copy;
use filesync_core::{EntryKind, EntryState, RelPath};
use futures::{StreamExt, stream};
use std::collections::HashSet;

/// Deletions by one device in one folder belong together while each follows the one before
/// within this many seconds: a folder's deletion spans several commits, seconds apart.
pub const GROUP_GAP_SECS: i64 = 60;

/// Restores sent at once on the connection (each is a small request; the server takes them in
/// turn, so this only hides round trips).
const RESTORES_IN_FLIGHT: usize = 8;

/// Deletions one device made together in one folder, most recent first.
#[derive(Clone, Debug)]
pub struct TrashGroup {
    pub folder: FolderConfig,
    /// Names the group for [`restore_group`]: the rev of its most recent deletion. Any member's
    /// deletion rev finds the group too, so it stays valid when a later deletion joins it.
    pub key: u64,
    pub device: String,
    /// The first and the last deletion's time.
    pub first_at: i64,
    pub last_at: i64,
    pub items: Vec<TrashItem>,
}

impl TrashGroup {
    /// The items not below another item of the group: what a person deleted (a folder, not
    /// each file in it).
    pub fn tops(&self) -> impl Iterator<Item = &TrashItem> {
        let paths: HashSet<&str> = self.items.iter().map(|t| t.deleted.path.as_str()).collect();
        self.items.iter().filter(move |t| !t.deleted.path.ancestors().any(|a| paths.contains(a)))
    }

    /// The group's items below `dir`.
    pub fn below<'a>(&'a self, dir: &'a RelPath) -> impl Iterator<Item = &'a TrashItem> {
        self.items.iter().filter(move |t| dir.is_ancestor_of(&t.deleted.path))
    }
}

/// True when `item` is a conflict copy whose conflict was resolved: its original was not
/// deleted with it (nor a folder above it), so the deletion tidied a conflict away.
fn is_cleanup(item: &TrashItem, deleted_together: &HashSet<&str>) -> bool {
    let Some(c) = parse_conflict_copy(&item.deleted.path) else { return false };
    !deleted_together.contains(c.original.as_str())
        && !item.deleted.path.ancestors().any(|a| deleted_together.contains(a))
}

/// Groups a trash listing (each folder's items most recently deleted first, as
/// [`trash`] returns them) into the deletions made together, most recent first, leaving out
/// conflict-copy clean-ups. Pure.
pub fn group(items: Vec<TrashItem>) -> Vec<TrashGroup> {
    let mut runs: Vec<Vec<TrashItem>> = Vec::new();
    for item in items {
        let joins = runs.last().and_then(|r| r.last()).is_some_and(|prev: &TrashItem| {
            prev.folder.name == item.folder.name
                && prev.deleted.device_id == item.deleted.device_id
                && prev.deleted.committed_at - item.deleted.committed_at <= GROUP_GAP_SECS
        });
        match runs.last_mut() {
            Some(run) if joins => run.push(item),
            _ => runs.push(vec![item]),
        }
    }
    runs.into_iter()
        .filter_map(|run| {
            let together: HashSet<&str> = run.iter().map(|t| t.deleted.path.as_str()).collect();
            let keep: Vec<bool> = run.iter().map(|t| !is_cleanup(t, &together)).collect();
            let items: Vec<TrashItem> = run.iter().zip(keep).filter(|(_, k)| *k).map(|(t, _)| t.clone()).collect();
            let first = items.first()?;
            Some(TrashGroup {
                folder: first.folder.clone(),
                key: items.iter().map(|t| t.deleted.rev).max().unwrap_or(first.deleted.rev),
                device: first.deleted.device_name.clone(),
                first_at: items.iter().map(|t| t.deleted.committed_at).min().unwrap_or(0),
                last_at: items.iter().map(|t| t.deleted.committed_at).max().unwrap_or(0),
                items,
            })
        })
        .collect()
}

/// The trash of `folder` (of every folder when `None`), grouped.
pub async fn groups(home: &Home, folders: &[FolderConfig]) -> Result<Vec<TrashGroup>, OpsError> {
    let scope: Vec<(FolderConfig, Option<RelPath>)> = folders.iter().map(|f| (f.clone(), None)).collect();
    Ok(group(trash(home, &scope).await?))
}

/// What restoring several items did.
#[derive(Clone, Debug, Default)]
pub struct RestoredMany {
    /// Items that became a new version.
    pub restored: usize,
    /// Items whose target already held that content.
    pub already: usize,
    /// Items that could not be restored, with why (one plain sentence each).
    pub failed: Vec<(RelPath, String)>,
}

impl RestoredMany {
    fn add(&mut self, path: &RelPath, r: Result<Restored, OpsError>) {
        match r {
            Ok(Restored::NewVersion(_)) => self.restored += 1,
            Ok(Restored::AlreadyThere) => self.already += 1,
            Err(e) => self.failed.push((path.clone(), super::plain::error_message(&e, super::plain::Audience::Ui))),
        }
    }

    /// Items restored or already there.
    pub fn back(&self) -> usize {
        self.restored + self.already
    }
}

/// Where `item` goes when the folder `from` is restored to `to`: the same place below `to`.
fn retarget(item: &RelPath, from: &RelPath, to: Option<&RelPath>) -> Result<Option<RelPath>, OpsError> {
    let Some(to) = to else { return Ok(None) };
    let rest = &item.as_str()[from.as_str().len()..];
    RelPath::new(format!("{}{rest}", to.as_str())).map(Some).map_err(|e| OpsError::invalid("to", e.to_string()))
}

/// Restores each `(item, target)` on `remote`: folders first, parents before children (so each
/// keeps its own version rather than one the server makes up for a child), then files, several
/// at once. One failure does not stop the others.
async fn restore_items(remote: &Remote, items: Vec<(TrashItem, Option<RelPath>)>) -> RestoredMany {
    let is_dir = |t: &TrashItem| t.last.meta.as_ref().is_some_and(|m| m.kind == EntryKind::Dir);
    let (mut dirs, files): (Vec<_>, Vec<_>) = items.into_iter().partition(|(t, _)| is_dir(t));
    dirs.sort_by(|a, b| a.0.deleted.path.cmp(&b.0.deleted.path));
    let mut out = RestoredMany::default();
    for (t, to) in dirs {
        let r = restore_onto(remote, &t.deleted.path, &t.last, to.as_ref()).await;
        out.add(&t.deleted.path, r);
    }
    // Each future owns what it uses, so the stream is `Send` for any caller.
    let restores = files.into_iter().map(|(t, to)| {
        let remote = remote.clone();
        async move {
            let r = restore_onto(&remote, &t.deleted.path, &t.last, to.as_ref()).await;
            (t.deleted.path, r)
        }
    });
    let results: Vec<(RelPath, Result<Restored, OpsError>)> =
        stream::iter(restores).buffer_unordered(RESTORES_IN_FLIGHT).collect().await;
    for (p, r) in results {
        out.add(&p, r);
    }
    out
}

/// What bringing a deleted path back did.
#[derive(Clone, Debug)]
pub struct DeletedRestored {
    /// The version brought back (the last before the deletion).
    pub last: EntryState,
    pub done: Restored,
    /// For a folder: what was in it, deleted with it, and restored with it.
    pub contents: RestoredMany,
}

/// Brings a deleted `rel` back (its last version before the deletion), onto `rel` or `to`. A
/// folder comes back with what was deleted with it below it (its deletion's group), each in
/// its place below the target; items deleted before (on their own) stay in the trash.
pub async fn restore_deleted(
    home: &Home,
    folder: &FolderConfig,
    rel: &RelPath,
    to: Option<&RelPath>,
) -> Result<DeletedRestored, OpsError> {
    let (remote, list) = super::history::versions(home, folder, rel).await?;
    if let Some(cur) = list.first().filter(|c| c.meta.is_some()) {
        return Err(OpsError::Refused(format!(
            "{rel} is not deleted (its current version is from {}, {}); to go back to an older version use \
             `filesync restore`",
            cur.device_name,
            super::history::utc(cur.committed_at)
        )));
    }
    let Some(last) = default_version(&list).cloned() else {
        return Err(OpsError::Refused(format!(
            "the server no longer keeps any version of {rel} from before its deletion (retention passed)"
        )));
    };
    // What was deleted with the folder, found before the folder leaves the trash.
    let mut inside = Vec::new();
    if last.meta.as_ref().is_some_and(|m| m.kind == EntryKind::Dir) {
        let deletion = list.first().map(|d| d.rev).unwrap_or_default();
        let groups = groups(home, std::slice::from_ref(folder)).await?;
        if let Some(g) = groups.iter().find(|g| g.items.iter().any(|t| t.deleted.rev == deletion)) {
            for t in g.below(rel) {
                inside.push((t.clone(), retarget(&t.deleted.path, rel, to)?));
            }
        }
    }
    let done = restore_onto(&remote, rel, &last, to).await?;
    let contents = if inside.is_empty() { RestoredMany::default() } else { restore_items(&remote, inside).await };
    Ok(DeletedRestored { last, done, contents })
}

/// What restoring a group did.
#[derive(Clone, Debug)]
pub struct GroupRestored {
    pub group: TrashGroup,
    pub done: RestoredMany,
}

/// Restores every item of the group of `folder`'s trash that `key` names (the key of a
/// [`TrashGroup`], or any of its deletions' revs), each in its place.
pub async fn restore_group(home: &Home, folder: &FolderConfig, key: u64) -> Result<GroupRestored, OpsError> {
    let Some(remote) = open(home, folder).await? else {
        return Err(OpsError::NotFound(format!("the folder {} has never been synced to the server", folder.name)));
    };
    let groups = groups(home, std::slice::from_ref(folder)).await?;
    let Some(group) = groups.into_iter().find(|g| g.key == key || g.items.iter().any(|t| t.deleted.rev == key)) else {
        return Err(OpsError::NotFound(
            "those deletions are no longer in the trash (restored already, or the server's retention passed)".into(),
        ));
    };
    let done = restore_items(&remote, group.items.iter().map(|t| (t.clone(), None)).collect()).await;
    Ok(GroupRestored { group, done })
}

#[cfg(test)]
mod tests {
    use super::*;
    use filesync_core::{FileMeta, Hash};

    fn folder(name: &str) -> FolderConfig {
        FolderConfig::new(name, format!("/tmp/{name}"))
    }

    fn entry(path: &str, rev: u64, dir: bool, device: u64, at: i64, live: bool) -> EntryState {
        EntryState {
            path: RelPath::new(path).unwrap(),
            rev,
            meta: live.then(|| FileMeta {
                kind: if dir { EntryKind::Dir } else { EntryKind::File },
                size: 3,
                mtime_ns: 0,
                executable: false,
                hash: Hash::of(path.as_bytes()),
                chunks: vec![],
            }),
            device_id: device,
            device_name: format!("device{device}"),
            committed_at: at,
        }
    }

    /// A trash item: `path` deleted at rev `rev`, time `at`, by `device`.
    fn item(f: &str, path: &str, rev: u64, at: i64, device: u64) -> TrashItem {
        let dir = !path.contains('.');
        TrashItem {
            folder: folder(f),
            deleted: entry(path, rev, dir, device, at, false),
            last: entry(path, 1, dir, 9, 100, true),
        }
    }

    fn paths(g: &TrashGroup) -> Vec<&str> {
        g.items.iter().map(|t| t.deleted.path.as_str()).collect()
    }

    #[test]
    fn deletions_made_together_form_one_group_and_others_their_own() {
        // Most recent first, as the server lists them.
        let listed = vec![
            item("Docs", "photos", 60, 10_000, 1),
            item("Docs", "photos/b.jpg", 59, 9_990, 1),
            item("Docs", "photos/a.jpg", 58, 9_950, 1),
            // The same device, but ten minutes earlier: another deletion.
            item("Docs", "old.txt", 40, 9_350, 1),
            // Another device at the same time: another group.
            item("Docs", "x.txt", 39, 9_349, 2),
            item("Music", "song.mp3", 12, 9_348, 2),
        ];
        let groups = group(listed);
        let got: Vec<Vec<&str>> = groups.iter().map(paths).collect();
        assert_eq!(
            got,
            vec![vec!["photos", "photos/b.jpg", "photos/a.jpg"], vec!["old.txt"], vec!["x.txt"], vec!["song.mp3"]]
        );
        assert_eq!((groups[0].key, groups[0].first_at, groups[0].last_at), (60, 9_950, 10_000));
        assert_eq!(groups[0].device, "device1");
        let tops: Vec<&str> = groups[0].tops().map(|t| t.deleted.path.as_str()).collect();
        assert_eq!(tops, vec!["photos"], "the folder stands for the files in it");
        let dir = RelPath::new("photos").unwrap();
        assert_eq!(groups[0].below(&dir).count(), 2);
    }

    #[test]
    fn a_chain_of_deletions_each_within_the_gap_stays_one_group() {
        let listed: Vec<TrashItem> =
            (0..5).map(|i| item("Docs", &format!("f{i}.txt"), 100 - i, 10_000 - 50 * i as i64, 1)).collect();
        assert_eq!(group(listed).len(), 1, "200 s in all, but never more than 50 s apart");
    }

    #[test]
    fn a_resolved_conflict_copy_is_a_clean_up_not_a_deletion() {
        let copy = "report (conflicted copy from laptop 2026-11-30 101500).txt";
        let listed = vec![item("Docs", copy, 30, 5_000, 1), item("Docs", "other.txt", 20, 1_000, 1)];
        let groups = group(listed);
        assert_eq!(groups.iter().map(paths).collect::<Vec<_>>(), vec![vec!["other.txt"]]);

        // Deleted with its original, or inside a deleted folder: a real deletion, restored with it.
        let with_original = vec![item("Docs", copy, 31, 5_001, 1), item("Docs", "report.txt", 30, 5_000, 1)];
        assert_eq!(group(with_original)[0].items.len(), 2);
        let nested = format!("box/{copy}");
        let in_folder = vec![item("Docs", "box", 31, 5_001, 1), item("Docs", &nested, 30, 5_000, 1)];
        assert_eq!(paths(&group(in_folder)[0]), vec!["box", nested.as_str()]);
    }

    #[test]
    fn a_group_of_clean_ups_only_is_not_listed() {
        let copy = "a (conflicted copy from laptop 2026-11-30 101500).txt";
        assert!(group(vec![item("Docs", copy, 3, 10, 1)]).is_empty());
    }

    #[test]
    fn a_folder_restored_elsewhere_takes_its_contents_along() {
        let from = RelPath::new("photos").unwrap();
        let to = RelPath::new("photos (restored)").unwrap();
        let child = RelPath::new("photos/2024/a.jpg").unwrap();
        assert_eq!(retarget(&child, &from, Some(&to)).unwrap().unwrap().as_str(), "photos (restored)/2024/a.jpg");
        assert_eq!(retarget(&child, &from, None).unwrap(), None);
    }
}
