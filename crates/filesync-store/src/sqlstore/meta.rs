//! The [`MetaStore`] implementation the SQL stores share, written once against the backend
//! aliases of `super` (`Store`, `DbPool`, …) and compiled once per backend: SQLite
//! (`src/sqlite.rs`) and PostgreSQL (`src/pg.rs`) include this file as their module `meta`.
//! Where the backends differ — how a write transaction begins, whether a row is locked — the
//! backend module says so, not this file.

use super::rows::{
    ENTRY_COLS, current_entries, device_from_row, entry_cols, entry_from_row, folder_from_row, folder_seq,
    known_chunks, live_entries_below, user_from_row, write_applied,
};
use super::{Store, accounts, begin_write, commit_notices, history, lock_chunks, try_lock_maintenance};
use crate::decide::{Decision, breaks_tree, decide};
use crate::sql::{self, key};
use crate::{
    ChunkLock, ChunkSweep, CommitOutput, Device, DeviceId, Folder, FolderId, MetaStore, NewAccount, Notice, Outcome,
    ProposedChange, PruneStats, Result, RetentionPolicy, StoreLock, TrashEntry, Usage, User, UserId,
};
use async_trait::async_trait;
use filesync_core::{EntryKind, EntryState, Hash, RelPath};
use futures::stream::BoxStream;
use sqlx::Row;
use std::collections::BTreeMap;

#[async_trait]
impl MetaStore for Store {
    async fn create_account(&self, account: &NewAccount<'_>, now: i64) -> Result<User> {
        accounts::create_account(&self.write, account, now).await
    }

    async fn user_by_name(&self, name: &str) -> Result<Option<User>> {
        let row =
            sqlx::query("SELECT id, name, password_hash, created_at, disabled, quota_bytes FROM users WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.read)
                .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn user_by_id(&self, id: UserId) -> Result<Option<User>> {
        let row =
            sqlx::query("SELECT id, name, password_hash, created_at, disabled, quota_bytes FROM users WHERE id = $1")
                .bind(key(id))
                .fetch_optional(&self.read)
                .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn set_password_hash(&self, user: UserId, password_hash: &str) -> Result<()> {
        sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(password_hash)
            .bind(key(user))
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn create_device(&self, user: UserId, name: &str, token_hash: &[u8; 32], now: i64) -> Result<Device> {
        let row = sqlx::query(
            "INSERT INTO devices (user_id, name, token_hash, created_at, last_seen, revoked) \
             VALUES ($1, $2, $3, $4, 0, FALSE) \
             RETURNING id, user_id, name, created_at, last_seen, revoked",
        )
        .bind(key(user))
        .bind(name)
        .bind(token_hash.as_slice())
        .bind(now)
        .fetch_one(&self.write)
        .await?;
        device_from_row(&row)
    }

    async fn device_by_token_hash(&self, token_hash: &[u8; 32]) -> Result<Option<Device>> {
        let row =
            sqlx::query("SELECT id, user_id, name, created_at, last_seen, revoked FROM devices WHERE token_hash = $1")
                .bind(token_hash.as_slice())
                .fetch_optional(&self.read)
                .await?;
        row.as_ref().map(device_from_row).transpose()
    }

    async fn device(&self, user: UserId, device: DeviceId) -> Result<Option<Device>> {
        let row = sqlx::query(
            "SELECT id, user_id, name, created_at, last_seen, revoked FROM devices WHERE id = $1 AND user_id = $2",
        )
        .bind(key(device))
        .bind(key(user))
        .fetch_optional(&self.read)
        .await?;
        row.as_ref().map(device_from_row).transpose()
    }

    async fn list_devices(&self, user: UserId) -> Result<Vec<Device>> {
        let rows = sqlx::query(
            "SELECT id, user_id, name, created_at, last_seen, revoked FROM devices WHERE user_id = $1 ORDER BY id",
        )
        .bind(key(user))
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(device_from_row).collect()
    }

    async fn revoke_device(&self, user: UserId, device: DeviceId) -> Result<bool> {
        let mut tx = begin_write(&self.write).await?;
        let done = sqlx::query("UPDATE devices SET revoked = TRUE WHERE id = $1 AND user_id = $2")
            .bind(key(device))
            .bind(key(user))
            .execute(&mut *tx)
            .await?;
        accounts::bump_generation(&mut tx).await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn rename_device(&self, user: UserId, device: DeviceId, name: &str) -> Result<bool> {
        let done = sqlx::query("UPDATE devices SET name = $1 WHERE id = $2 AND user_id = $3")
            .bind(name)
            .bind(key(device))
            .bind(key(user))
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn reissue_device(
        &self,
        user: UserId,
        device: DeviceId,
        name: &str,
        token_hash: &[u8; 32],
        now: i64,
    ) -> Result<Option<Device>> {
        let row = sqlx::query(
            "UPDATE devices SET token_hash = $1, name = $2, last_seen = $3, revoked = FALSE \
             WHERE id = $4 AND user_id = $5 AND revoked = TRUE \
             RETURNING id, user_id, name, created_at, last_seen, revoked",
        )
        .bind(token_hash.as_slice())
        .bind(name)
        .bind(now)
        .bind(key(device))
        .bind(key(user))
        .fetch_optional(&self.write)
        .await?;
        row.as_ref().map(device_from_row).transpose()
    }

    async fn remove_device(&self, user: UserId, device: DeviceId) -> Result<bool> {
        let done = sqlx::query("DELETE FROM devices WHERE id = $1 AND user_id = $2 AND revoked = TRUE")
            .bind(key(device))
            .bind(key(user))
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn touch_device(&self, device: DeviceId, now: i64) -> Result<()> {
        sqlx::query("UPDATE devices SET last_seen = $1 WHERE id = $2")
            .bind(now)
            .bind(key(device))
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn folder_by_name(&self, user: UserId, name: &str, create: bool) -> Result<Option<Folder>> {
        const SELECT: &str = "SELECT id, user_id, name, seq FROM folders WHERE user_id = $1 AND name = $2";
        let row = sqlx::query(SELECT).bind(key(user)).bind(name).fetch_optional(&self.read).await?;
        if row.is_some() || !create {
            return row.as_ref().map(folder_from_row).transpose();
        }
        // Two devices may create the same folder at once: the loser's insert does nothing.
        let mut tx = begin_write(&self.write).await?;
        sqlx::query(
            "INSERT INTO folders (user_id, name, seq) VALUES ($1, $2, 0) ON CONFLICT (user_id, name) DO NOTHING",
        )
        .bind(key(user))
        .bind(name)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(SELECT).bind(key(user)).bind(name).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        folder_from_row(&row).map(Some)
    }

    async fn folder(&self, user: UserId, folder: FolderId) -> Result<Option<Folder>> {
        let row = sqlx::query("SELECT id, user_id, name, seq FROM folders WHERE id = $1 AND user_id = $2")
            .bind(key(folder))
            .bind(key(user))
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(folder_from_row).transpose()
    }

    async fn list_folders(&self, user: UserId) -> Result<Vec<Folder>> {
        let rows = sqlx::query("SELECT id, user_id, name, seq FROM folders WHERE user_id = $1 ORDER BY name")
            .bind(key(user))
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(folder_from_row).collect()
    }

    /// A row that does not make a valid entry (a damaged database: an invalid path, a torn chunk
    /// list, a negative size, an unknown kind) is skipped and logged with its folder and rev, so
    /// that one bad row never blocks the folder: the rows after it are served, and a device's
    /// cursor moves past it with them (or with the folder's seq when nothing follows).
    async fn changes_since(&self, folder: FolderId, since: u64, limit: u32) -> Result<Vec<EntryState>> {
        let mut out = Vec::new();
        let mut after = i64::try_from(since).unwrap_or(i64::MAX);
        loop {
            let want = (limit as usize).saturating_sub(out.len());
            if want == 0 {
                return Ok(out);
            }
            let rows = sqlx::query(concat!(
                "SELECT ",
                entry_cols!(),
                ", c.rev FROM current c JOIN versions v ON v.folder_id = c.folder_id AND v.rev = c.rev \
                 WHERE c.folder_id = $1 AND c.rev > $2 ORDER BY c.rev LIMIT $3"
            ))
            .bind(key(folder))
            .bind(after)
            .bind(i64::try_from(want).unwrap_or(i64::MAX))
            .fetch_all(&self.read)
            .await?;
            for row in &rows {
                after = row.try_get(ENTRY_COLS)?;
                match entry_from_row(row) {
                    Ok(e) => out.push(e),
                    Err(e) => tracing::error!(
                        folder,
                        rev = after,
                        "skipping a damaged row of the metadata database: {e}; devices are served the \
                         folder's other entries (restore meta.db from a backup to get this one back)"
                    ),
                }
            }
            if rows.len() < want {
                return Ok(out);
            }
        }
    }

    async fn current(&self, folder: FolderId, path: &RelPath) -> Result<Option<EntryState>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            entry_cols!(),
            " FROM current c JOIN versions v ON v.folder_id = c.folder_id AND v.rev = c.rev \
             WHERE c.folder_id = $1 AND c.path = $2"
        ))
        .bind(key(folder))
        .bind(path.as_str())
        .fetch_optional(&self.read)
        .await?;
        row.as_ref().map(entry_from_row).transpose()
    }

    async fn versions(&self, folder: FolderId, path: &RelPath) -> Result<Vec<EntryState>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            entry_cols!(),
            " FROM versions v WHERE v.folder_id = $1 AND v.path = $2 ORDER BY v.rev DESC"
        ))
        .bind(key(folder))
        .bind(path.as_str())
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(entry_from_row).collect()
    }

    async fn commit(
        &self,
        user: UserId,
        folder: FolderId,
        device: &Device,
        changes: &[ProposedChange],
        now: i64,
    ) -> Result<CommitOutput> {
        let folder_key = key(folder);
        // Dropping `tx` on any early return rolls everything back.
        let mut tx = begin_write(&self.write).await?;
        let start_seq = folder_seq(&mut tx, user, folder).await?;

        // Decide every change against the state the changes before it left: the entries of its
        // path and its ancestors, and (for a live file) the live entries below it, which the
        // tree rule needs.
        let mut paths: Vec<&str> = changes.iter().map(|c| c.path.as_str()).collect();
        for c in changes.iter().filter(|c| c.meta.is_some()) {
            paths.extend(c.path.ancestors());
        }
        paths.sort_unstable();
        paths.dedup();
        let mut state: BTreeMap<String, EntryState> =
            current_entries(&mut tx, folder_key, &paths).await?.into_iter().collect();
        let mut files: Vec<&RelPath> = changes
            .iter()
            .filter(|c| c.meta.as_ref().is_some_and(|m| m.kind != EntryKind::Dir))
            .filter(|c| {
                state.get(c.path.as_str()).and_then(|e| e.meta.as_ref()).is_none_or(|m| m.kind == EntryKind::Dir)
            })
            .map(|c| &c.path)
            .collect();
        files.sort_unstable();
        files.dedup();
        for e in live_entries_below(&mut tx, folder_key, &files).await? {
            state.insert(e.path.as_str().to_owned(), e);
        }
        let mut seq = start_seq;
        let mut outcomes = Vec::with_capacity(changes.len());
        let mut applied: Vec<EntryState> = Vec::new();
        for change in changes {
            let current = state.get(change.path.as_str());
            let decision = match decide(current, change.base_rev, change.meta.as_ref()) {
                Decision::Apply if breaks_tree(&change.path, change.meta.as_ref(), &state) => Decision::Conflict,
                d => d,
            };
            match decision {
                Decision::Apply => {
                    seq += 1;
                    let entry = EntryState {
                        path: change.path.clone(),
                        rev: seq,
                        meta: change.meta.clone(),
                        device_id: device.id,
                        device_name: device.name.clone(),
                        committed_at: now,
                    };
                    state.insert(change.path.as_str().to_owned(), entry.clone());
                    outcomes.push(Outcome::Accepted(Some(entry.clone())));
                    applied.push(entry);
                }
                Decision::AlreadyCurrent => outcomes.push(Outcome::Accepted(current.cloned())),
                Decision::Conflict => outcomes.push(Outcome::Conflict(current.cloned())),
            }
        }
        if applied.is_empty() {
            return Ok(CommitOutput { outcomes, folder_seq: start_seq });
        }

        write_applied(&mut tx, key(user), folder_key, &applied, seq).await?;
        tx.commit().await?;
        tracing::debug!(folder, changes = changes.len(), applied = applied.len(), seq, "committed");
        Ok(CommitOutput { outcomes, folder_seq: seq })
    }

    async fn missing_chunks(&self, user: UserId, hashes: &[Hash]) -> Result<Vec<usize>> {
        let refs: Vec<&Hash> = hashes.iter().collect();
        let mut conn = self.read.acquire().await?;
        let have = known_chunks(&mut conn, key(user), &refs).await?;
        Ok((0..hashes.len()).filter(|&i| !have.contains_key(&hashes[i])).collect())
    }

    async fn add_chunks(&self, user: UserId, chunks: &[(Hash, u32)]) -> Result<()> {
        if chunks.is_empty() {
            return Ok(());
        }
        // An upload of a chunk already present refreshes `added_at`: garbage collection spares
        // chunks added after its cutoff, so a chunk re-sent for a commit about to reference it
        // is not swept away in between.
        let now = sql::unix_now();
        // Each chunk once (an upsert may not touch a row twice in one statement on
        // PostgreSQL), in hash order (so that concurrent batches lock rows in the same order and
        // never deadlock).
        let mut chunks = chunks.to_vec();
        chunks.sort_unstable_by_key(|(hash, _)| *hash);
        chunks.dedup_by_key(|(hash, _)| *hash);
        let mut tx = begin_write(&self.write).await?;
        for batch in chunks.chunks(sql::rows_per_statement(4)) {
            let sql = format!(
                "INSERT INTO chunks (user_id, hash, size, added_at) VALUES {} \
                 ON CONFLICT (user_id, hash) DO UPDATE SET added_at = excluded.added_at",
                sql::value_rows(batch.len(), 4)
            );
            let mut q = sqlx::query(super::batch_sql(sql));
            for (hash, size) in batch {
                q = q.bind(key(user)).bind(hash.as_bytes().as_slice()).bind(i64::from(*size)).bind(now);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn forget_chunks(&self, user: UserId, hashes: &[Hash]) -> Result<()> {
        let mut tx = begin_write(&self.write).await?;
        for batch in hashes.chunks(sql::IN_LIST) {
            let sql = format!("DELETE FROM chunks WHERE user_id = $1 AND hash IN ({})", sql::params(2, batch.len()));
            let mut q = sqlx::query(super::batch_sql(sql)).bind(key(user));
            for h in batch {
                q = q.bind(h.as_bytes().as_slice());
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn chunk_sizes(&self, user: UserId, hashes: &[Hash]) -> Result<Vec<Option<u32>>> {
        let refs: Vec<&Hash> = hashes.iter().collect();
        let mut conn = self.read.acquire().await?;
        let have = known_chunks(&mut conn, key(user), &refs).await?;
        Ok(hashes.iter().map(|h| have.get(h).copied()).collect())
    }

    async fn list_users(&self) -> Result<Vec<User>> {
        let rows =
            sqlx::query("SELECT id, name, password_hash, created_at, disabled, quota_bytes FROM users ORDER BY id")
                .fetch_all(&self.read)
                .await?;
        rows.iter().map(user_from_row).collect()
    }

    async fn set_user_disabled(&self, user: UserId, disabled: bool) -> Result<bool> {
        accounts::set_user_disabled(&self.write, user, disabled).await
    }

    async fn set_quota(&self, user: UserId, quota: Option<u64>) -> Result<bool> {
        accounts::set_quota(&self.write, user, quota).await
    }

    async fn stored_bytes(&self, user: UserId) -> Result<u64> {
        accounts::stored_bytes(&self.read, user).await
    }

    async fn revoke_devices_except(&self, user: UserId, keep: Option<DeviceId>) -> Result<Vec<DeviceId>> {
        accounts::revoke_devices_except(&self.write, user, keep).await
    }

    async fn create_invite(&self, code_hash: &[u8; 32], expires_at: i64, now: i64) -> Result<()> {
        accounts::create_invite(&self.write, code_hash, expires_at, now).await
    }

    async fn admin_generation(&self) -> Result<u64> {
        accounts::admin_generation(&self.read).await
    }

    async fn version(&self, folder: FolderId, rev: u64) -> Result<Option<EntryState>> {
        history::version(&self.read, folder, rev).await
    }

    async fn version_history(
        &self,
        folder: FolderId,
        path: &RelPath,
        before_rev: u64,
        limit: u32,
    ) -> Result<Vec<EntryState>> {
        history::version_history(&self.read, folder, path, before_rev, limit).await
    }

    async fn trash(
        &self,
        folder: FolderId,
        prefix: Option<&RelPath>,
        before_rev: u64,
        limit: u32,
    ) -> Result<Vec<TrashEntry>> {
        history::trash(&self.read, folder, prefix, before_rev, limit).await
    }

    async fn restore(
        &self,
        user: UserId,
        folder: FolderId,
        device: &Device,
        path: &RelPath,
        rev: u64,
        to_path: Option<&RelPath>,
        now: i64,
    ) -> Result<CommitOutput> {
        history::restore(&self.write, user, folder, device, path, rev, to_path, now).await
    }

    async fn usage(&self, user: UserId) -> Result<Usage> {
        history::usage(&self.read, user).await
    }

    async fn prune_history(&self, now: i64, policy: &RetentionPolicy) -> Result<PruneStats> {
        history::prune_history(&self.read, &self.write, now, policy).await
    }

    async fn unreferenced_chunks(&self, user: UserId, added_before: i64) -> Result<ChunkSweep> {
        history::unreferenced_chunks(&self.read, user, added_before).await
    }

    async fn delete_chunks(&self, sweep: &ChunkSweep, hashes: &[Hash]) -> Result<Vec<(Hash, u32)>> {
        history::delete_chunks(&self.write, sweep, hashes).await
    }

    async fn lock_chunks(&self, user: UserId, mode: ChunkLock) -> Result<StoreLock> {
        lock_chunks(self, user, mode).await
    }

    async fn try_lock_maintenance(&self) -> Result<Option<StoreLock>> {
        try_lock_maintenance(self).await
    }

    async fn commit_notices(&self) -> Result<Option<BoxStream<'static, Notice>>> {
        commit_notices(self).await
    }
}
