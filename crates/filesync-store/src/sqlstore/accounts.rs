//! What an operator controls, in SQL (compiled once per backend, see `super`): creating accounts (with a quota, using up an invite),
//! disabling users, quotas and the bytes they measure, revoking devices in bulk, invite codes,
//! and the admin generation a running server polls.

use super::is_unique_violation;
use super::rows::user_from_row;
use super::{Db, DbPool, begin_write};
use crate::sql::{key, unsigned};
use crate::{DeviceId, NewAccount, Result, StoreError, User, UserId};
use sqlx::Transaction;

/// Increases the admin generation, inside the caller's write transaction.
pub(super) async fn bump_generation(tx: &mut Transaction<'_, Db>) -> Result<()> {
    sqlx::query("UPDATE admin_state SET generation = generation + 1 WHERE id = 1").execute(&mut **tx).await?;
    Ok(())
}

pub(super) async fn create_account(write: &DbPool, a: &NewAccount<'_>, now: i64) -> Result<User> {
    let mut tx = begin_write(write).await?;
    let row = sqlx::query(
        "INSERT INTO users (name, password_hash, created_at, disabled, quota_bytes) VALUES ($1, $2, $3, FALSE, $4) \
         RETURNING id, name, password_hash, created_at, disabled, quota_bytes",
    )
    .bind(a.name)
    .bind(a.password_hash)
    .bind(now)
    .bind(a.quota.map(|q| i64::try_from(q).unwrap_or(i64::MAX)))
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| if is_unique_violation(&e) { StoreError::UserExists(a.name.to_owned()) } else { e.into() })?;
    let user = user_from_row(&row)?;
    if let Some(invite) = &a.invite {
        let used = sqlx::query(
            "UPDATE invites SET used_by = $1, used_at = $2 WHERE code_hash = $3 AND used_by IS NULL AND expires_at > $2",
        )
        .bind(key(user.id))
        .bind(now)
        .bind(invite.as_slice())
        .execute(&mut *tx)
        .await?;
        if used.rows_affected() == 0 {
            // Dropping `tx` rolls the user back.
            return Err(StoreError::InviteInvalid);
        }
    }
    tx.commit().await?;
    Ok(user)
}

pub(super) async fn set_user_disabled(write: &DbPool, user: UserId, disabled: bool) -> Result<bool> {
    let mut tx = begin_write(write).await?;
    let done = sqlx::query("UPDATE users SET disabled = $1 WHERE id = $2")
        .bind(disabled)
        .bind(key(user))
        .execute(&mut *tx)
        .await?;
    bump_generation(&mut tx).await?;
    tx.commit().await?;
    Ok(done.rows_affected() > 0)
}

pub(super) async fn set_quota(write: &DbPool, user: UserId, quota: Option<u64>) -> Result<bool> {
    let done = sqlx::query("UPDATE users SET quota_bytes = $1 WHERE id = $2")
        .bind(quota.map(|q| i64::try_from(q).unwrap_or(i64::MAX)))
        .bind(key(user))
        .execute(write)
        .await?;
    Ok(done.rows_affected() > 0)
}

pub(super) async fn stored_bytes(read: &DbPool, user: UserId) -> Result<u64> {
    let total: i64 = sqlx::query_scalar("SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM chunks WHERE user_id = $1")
        .bind(key(user))
        .fetch_one(read)
        .await?;
    unsigned(total, "stored bytes")
}

pub(super) async fn revoke_devices_except(
    write: &DbPool,
    user: UserId,
    keep: Option<DeviceId>,
) -> Result<Vec<DeviceId>> {
    let mut tx = begin_write(write).await?;
    let ids: Vec<i64> = sqlx::query_scalar(
        "UPDATE devices SET revoked = TRUE WHERE user_id = $1 AND id <> $2 AND NOT revoked RETURNING id",
    )
    .bind(key(user))
    .bind(keep.map(key).unwrap_or(-1))
    .fetch_all(&mut *tx)
    .await?;
    if !ids.is_empty() {
        bump_generation(&mut tx).await?;
    }
    tx.commit().await?;
    let mut ids = ids.into_iter().map(|id| unsigned(id, "device id")).collect::<Result<Vec<_>>>()?;
    ids.sort_unstable();
    Ok(ids)
}

pub(super) async fn create_invite(write: &DbPool, code_hash: &[u8; 32], expires_at: i64, now: i64) -> Result<()> {
    sqlx::query("INSERT INTO invites (code_hash, created_at, expires_at) VALUES ($1, $2, $3)")
        .bind(code_hash.as_slice())
        .bind(now)
        .bind(expires_at)
        .execute(write)
        .await?;
    Ok(())
}

pub(super) async fn admin_generation(read: &DbPool) -> Result<u64> {
    let g: i64 = sqlx::query_scalar("SELECT generation FROM admin_state WHERE id = 1").fetch_one(read).await?;
    unsigned(g, "admin generation")
}
