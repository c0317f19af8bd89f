//! What the server's operator does: the `filesync server admin …` operations on a data
//! directory's store ([`Admin`]: list users with their usage, create users, disable and enable
//! them, set quotas, reset passwords, revoke devices, make invite codes), the storage quota a
//! running server enforces at `PutChunks` ([`check_quota`]), and the watch that lets a running
//! server act on an admin command run by another process ([`watch_admin_changes`]).
//!
//! Admin commands write the store directly (SQLite in WAL mode takes a second process), so they
//! work whether or not a server is running. A running server notices a change it must act on —
//! a user disabled, a device revoked — because the store bumps its admin generation in the same
//! transaction; the server polls that one row and then re-checks every connection it holds.

use crate::Shared;
use crate::handlers::{Reply, err, store_err};
use base64::Engine;
use bytes::Bytes;
use filesync_core::Hash;
use filesync_core::clock::{Clock, SystemClock};
use filesync_proto::{ErrorCode, ErrorMsg, limits};
use filesync_store::{Device, DeviceId, MetaStore, NewAccount, StoreError, UserId};
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// How often a running server looks for admin changes made by another process.
pub const ADMIN_POLL: Duration = Duration::from_secs(1);

/// What the store keeps of an invite code (the code itself is shown once).
pub fn invite_hash(code: &str) -> [u8; 32] {
    crate::auth::token_hash(code)
}

/// A new one-time invite code: 16 random bytes, base64url, prefixed for recognisability.
pub fn new_invite_code() -> String {
    format!("fsi_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>()))
}

/// Bytes as a person reads them: `512 B`, `1.5 KiB`, `10.0 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// Refuses a `PutChunks` whose new bytes (chunks the user does not have yet) would take the
/// user over their quota. Chunks already stored cost nothing, so re-sending is always allowed.
/// Concurrent uploads are checked against the usage each sees, so together they may overshoot
/// by what is in flight at that moment (at most 8 MiB per request).
pub(crate) async fn check_quota(shared: &Shared, user: UserId, chunks: &[(Hash, Bytes)]) -> Reply<()> {
    let Some(quota) = shared.meta.user_by_id(user).await.map_err(store_err)?.and_then(|u| u.quota) else {
        return Ok(());
    };
    let hashes: Vec<Hash> = chunks.iter().map(|(h, _)| *h).collect();
    let missing = shared.meta.missing_chunks(user, &hashes).await.map_err(store_err)?;
    let mut seen = std::collections::HashSet::new();
    let new: u64 = missing.iter().filter(|&&i| seen.insert(hashes[i])).map(|&i| chunks[i].1.len() as u64).sum();
    if new == 0 {
        return Ok(());
    }
    let used = shared.meta.stored_bytes(user).await.map_err(store_err)?;
    if used.saturating_add(new) > quota {
        return Err(quota_exceeded(used, quota, new));
    }
    Ok(())
}

fn quota_exceeded(used: u64, quota: u64, new: u64) -> ErrorMsg {
    err(
        ErrorCode::QuotaExceeded,
        format!(
            "Your account is over its storage quota ({} of {} used; this upload needs {} more). Delete files you \
             no longer need (the server keeps deleted files in its history for a while, so the space comes back \
             later) or ask the server's operator for a larger quota",
            human_bytes(used),
            human_bytes(quota),
            human_bytes(new)
        ),
    )
}

/// Polls the store's admin generation and, when it moves, closes the connections of disabled
/// users and revoked devices. Runs for as long as the server.
pub(crate) async fn watch_admin_changes(shared: Arc<Shared>, every: Duration) {
    let mut seen = match shared.meta.admin_generation().await {
        Ok(g) => g,
        Err(e) => {
            warn!("cannot read the admin generation ({e}); admin commands reach this server only after a restart");
            return;
        }
    };
    loop {
        tokio::time::sleep(every).await;
        let now = match shared.meta.admin_generation().await {
            Ok(g) => g,
            Err(e) => {
                warn!("cannot read the admin generation: {e}");
                continue;
            }
        };
        if now == seen {
            continue;
        }
        seen = now;
        if let Err(e) = close_refused_connections(&shared).await {
            warn!("cannot check connections after an admin change: {e}");
        }
    }
}

/// Closes every connection whose user is disabled or whose device is revoked.
async fn close_refused_connections(shared: &Shared) -> Result<(), StoreError> {
    let mut disabled: Vec<UserId> = Vec::new();
    for (user, device) in shared.hub.connected() {
        if disabled.contains(&user) {
            continue;
        }
        if shared.meta.user_by_id(user).await?.is_none_or(|u| u.disabled) {
            info!(user, "closing the connections of a disabled user");
            shared.hub.close_user(user);
            disabled.push(user);
        } else if shared.meta.device(user, device).await?.is_none_or(|d| d.revoked) {
            info!(user, device, "closing the connections of a revoked device");
            shared.hub.close_device(user, device);
        }
    }
    Ok(())
}

/// Why an admin operation failed, in words for the operator.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("there is no user {0:?} (`filesync server admin users` lists them)")]
    NoSuchUser(String),
    #[error("user {user:?} has no device {device} (`filesync server admin devices {user}` lists them)")]
    NoSuchDevice { user: String, device: DeviceId },
    #[error("the user name {0:?} is taken")]
    UserExists(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One line of `filesync server admin users`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserSummary {
    pub id: UserId,
    pub name: String,
    /// Devices not revoked.
    pub devices: u64,
    /// Bytes of chunks stored (what counts against the quota).
    pub usage: u64,
    pub quota: Option<u64>,
    pub disabled: bool,
    pub created_at: i64,
}

/// The operator's view of a store.
pub struct Admin {
    meta: Arc<dyn MetaStore>,
}

/// The operator's commands run outside the server, on the real clock.
fn now() -> i64 {
    SystemClock.now_unix()
}

impl Admin {
    pub fn new(meta: Arc<dyn MetaStore>) -> Admin {
        Admin { meta }
    }

    async fn user(&self, name: &str) -> Result<filesync_store::User, AdminError> {
        self.meta.user_by_name(name).await?.ok_or_else(|| AdminError::NoSuchUser(name.to_string()))
    }

    /// Every user with their devices, usage and quota, by name.
    pub async fn users(&self) -> Result<Vec<UserSummary>, AdminError> {
        let mut out = Vec::new();
        for u in self.meta.list_users().await? {
            let devices = self.meta.list_devices(u.id).await?.iter().filter(|d| !d.revoked).count() as u64;
            let usage = self.meta.stored_bytes(u.id).await?;
            out.push(UserSummary {
                id: u.id,
                name: u.name,
                devices,
                usage,
                quota: u.quota,
                disabled: u.disabled,
                created_at: u.created_at,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Creates a user with a password and an optional quota.
    pub async fn create_user(&self, name: &str, password: &str, quota: Option<u64>) -> Result<UserSummary, AdminError> {
        let name = crate::handlers::valid_user_name(name).map_err(|e| AdminError::Invalid(e.message))?;
        check_password(password)?;
        let hash = hash_off_thread(password).await?;
        let account = NewAccount { name: &name, password_hash: &hash, quota, invite: None };
        let u = match self.meta.create_account(&account, now()).await {
            Err(StoreError::UserExists(n)) => return Err(AdminError::UserExists(n)),
            r => r?,
        };
        Ok(UserSummary {
            id: u.id,
            name: u.name,
            devices: 0,
            usage: 0,
            quota: u.quota,
            disabled: false,
            created_at: u.created_at,
        })
    }

    /// Disables (closing every connection of the user, at once if a server is running) or
    /// re-enables a user. Devices are not revoked: re-enabling lets them back in.
    pub async fn set_disabled(&self, name: &str, disabled: bool) -> Result<(), AdminError> {
        let u = self.user(name).await?;
        self.meta.set_user_disabled(u.id, disabled).await?;
        Ok(())
    }

    /// Sets (`None`: removes) a user's storage quota.
    pub async fn set_quota(&self, name: &str, quota: Option<u64>) -> Result<(), AdminError> {
        let u = self.user(name).await?;
        self.meta.set_quota(u.id, quota).await?;
        Ok(())
    }

    /// Gives a user a new password; with `log_out_devices`, also revokes every device.
    /// Returns the devices revoked.
    pub async fn reset_password(
        &self,
        name: &str,
        password: &str,
        log_out_devices: bool,
    ) -> Result<Vec<DeviceId>, AdminError> {
        let u = self.user(name).await?;
        check_password(password)?;
        let hash = hash_off_thread(password).await?;
        self.meta.set_password_hash(u.id, &hash).await?;
        if log_out_devices { Ok(self.meta.revoke_devices_except(u.id, None).await?) } else { Ok(Vec::new()) }
    }

    /// A user's devices, revoked ones included.
    pub async fn devices(&self, name: &str) -> Result<Vec<Device>, AdminError> {
        let u = self.user(name).await?;
        Ok(self.meta.list_devices(u.id).await?)
    }

    /// Revokes one device of a user (its connections close, at once if a server is running).
    pub async fn revoke_device(&self, name: &str, device: DeviceId) -> Result<(), AdminError> {
        let u = self.user(name).await?;
        if !self.meta.revoke_device(u.id, device).await? {
            return Err(AdminError::NoSuchDevice { user: name.to_string(), device });
        }
        Ok(())
    }

    /// Makes a one-time invite code valid for `valid_for`; returns the code (stored hashed).
    pub async fn invite(&self, valid_for: Duration) -> Result<String, AdminError> {
        let code = new_invite_code();
        let now = now();
        let expires = now.saturating_add(i64::try_from(valid_for.as_secs()).unwrap_or(i64::MAX));
        self.meta.create_invite(&invite_hash(&code), expires, now).await?;
        Ok(code)
    }
}

fn check_password(password: &str) -> Result<(), AdminError> {
    if password.chars().count() < 8 || password.len() > limits::MAX_PASSWORD_LEN {
        return Err(AdminError::Invalid(format!(
            "passwords must be at least 8 characters (and at most {} bytes)",
            limits::MAX_PASSWORD_LEN
        )));
    }
    Ok(())
}

async fn hash_off_thread(password: &str) -> Result<String, AdminError> {
    let password = password.to_string();
    tokio::task::spawn_blocking(move || crate::auth::hash_password(&password, &mut crate::auth::Argon2Memory::new()))
        .await
        .map_err(|e| AdminError::Invalid(format!("password hashing failed: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_like_a_person_writes_them() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(10 << 20), "10.0 MiB");
    }

    #[test]
    fn the_quota_message_gives_usage_quota_and_what_to_do() {
        let m = quota_exceeded(9 << 20, 10 << 20, 2 << 20).message;
        assert!(m.starts_with("Your account is over its storage quota (9.0 MiB of 10.0 MiB used"), "{m}");
        assert!(m.contains("operator"), "{m}");
    }
}
