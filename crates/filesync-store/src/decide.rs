//! The commit rule, as a pure function shared by every [`crate::MetaStore`] implementation.

use filesync_core::{EntryState, FileMeta};

/// What a store does with one proposed change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Write a new version (the next sequence number).
    Apply,
    /// Accept without writing: the proposal equals the current state.
    AlreadyCurrent,
    /// Reject: the path changed since the proposer's base.
    Conflict,
}

/// Decides a proposal against the path's current entry.
///
/// - A proposal based on the current rev is applied.
/// - Anything proposed over a deletion (or a path that never existed) is applied: an edit beats
///   a concurrent delete, and re-creating a deleted path loses nothing.
/// - Deleting what is already deleted, or proposing exactly the current content and metadata,
///   is accepted without a new version (this makes retried commits idempotent).
/// - Anything else is a conflict: the proposer must merge with the current state first.
pub fn decide(current: Option<&EntryState>, base_rev: u64, proposed: Option<&FileMeta>) -> Decision {
    let cur_meta = current.and_then(|c| c.meta.as_ref());
    match (cur_meta, proposed) {
        (None, None) => Decision::AlreadyCurrent,
        (Some(c), Some(p)) if c == p => Decision::AlreadyCurrent,
        (None, Some(_)) => Decision::Apply,
        (Some(_), _) if current.map(|c| c.rev) == Some(base_rev) => Decision::Apply,
        (Some(_), _) => Decision::Conflict,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use filesync_core::{EntryKind, Hash, RelPath};

    fn file(content: &[u8]) -> FileMeta {
        FileMeta {
            kind: EntryKind::File,
            size: content.len() as u64,
            mtime_ns: 1,
            executable: false,
            hash: Hash::of(content),
            chunks: vec![],
        }
    }

    fn entry(rev: u64, meta: Option<FileMeta>) -> EntryState {
        EntryState {
            path: RelPath::new("f").unwrap(),
            rev,
            meta,
            device_id: 1,
            device_name: "d".into(),
            committed_at: 0,
        }
    }

    #[test]
    fn rules() {
        let a = file(b"a");
        let b = file(b"b");
        use Decision::*;
        assert_eq!(decide(None, 0, Some(&a)), Apply);
        assert_eq!(decide(None, 0, None), AlreadyCurrent);
        assert_eq!(decide(Some(&entry(3, Some(a.clone()))), 3, Some(&b)), Apply);
        assert_eq!(decide(Some(&entry(3, Some(a.clone()))), 2, Some(&b)), Conflict);
        assert_eq!(decide(Some(&entry(3, Some(a.clone()))), 2, Some(&a)), AlreadyCurrent);
        assert_eq!(decide(Some(&entry(3, Some(a.clone()))), 3, None), Apply);
        assert_eq!(decide(Some(&entry(3, Some(a.clone()))), 1, None), Conflict);
        // edit beats a concurrent delete
        assert_eq!(decide(Some(&entry(4, None)), 3, Some(&b)), Apply);
        assert_eq!(decide(Some(&entry(4, None)), 3, None), AlreadyCurrent);
    }
}
