//! `filesync server admin …`: the operator's commands, run on the server machine against its
//! data directory (`filesync_server::admin::Admin`), and the server's registration default.

use crate::cli::{AdminCmd, Quota};
use anyhow::{Context, Result, bail};
use filesync_server::admin::{Admin, human_bytes};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Parses a quota: `unlimited` (or `none`), or a size in bytes with an optional binary suffix
/// (`500M`, `10G`, `1T`; `KiB`, `GB` and the like are accepted too).
pub fn parse_quota(text: &str) -> Result<Quota, String> {
    let t = text.trim().to_ascii_lowercase();
    if matches!(t.as_str(), "unlimited" | "none") {
        return Ok(Quota(None));
    }
    let bad = || format!("{text:?} is not a size; use for example 500M, 10G or 1T, or `unlimited`");
    let t = t.strip_suffix("ib").or_else(|| t.strip_suffix('b')).unwrap_or(&t);
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let shift = match unit.trim() {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return Err(bad()),
    };
    n.checked_mul(1 << shift).map(|b| Quota(Some(b))).ok_or_else(bad)
}

fn show_quota(q: Option<u64>) -> String {
    q.map(human_bytes).unwrap_or_else(|| "unlimited".into())
}

/// True when every address `listen` names is a loopback address (only this machine can
/// connect).
pub async fn is_loopback(listen: &str) -> bool {
    match tokio::net::lookup_host(listen).await {
        Ok(addrs) => {
            let addrs: Vec<_> = addrs.collect();
            !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())
        }
        Err(_) => false,
    }
}

/// The line the server prints at start about who may create accounts.
pub fn describe_registration(r: filesync_server::Registration, quota: Option<u64>) -> String {
    let who = match r {
        filesync_server::Registration::Open => "open (anyone who can reach this server can create an account)",
        filesync_server::Registration::Closed => "closed (accounts are made with `filesync server admin create-user`)",
        filesync_server::Registration::Invite => "by invite (codes from `filesync server admin invite`)",
    };
    format!("registration: {who}; storage quota of new accounts: {}", show_quota(quota))
}

/// Runs an admin command on the server's metadata: in PostgreSQL when `database` is given,
/// otherwise in `<data>/meta.db`.
pub async fn run(data: PathBuf, database: Option<filesync_store::pg::PgConfig>, cmd: AdminCmd) -> Result<ExitCode> {
    if let Some(db) = database {
        let meta = db.connect().await.with_context(|| format!("opening the server data in {}", db.display_url()))?;
        let result = run_on(&Admin::new(Arc::new(meta.clone())), cmd).await;
        meta.close().await;
        return result;
    }
    if !data.join("meta.db").is_file() {
        bail!(
            "{} holds no FileSync server data (no meta.db); pass the server's --data directory (or its --database)",
            data.display()
        );
    }
    let meta = filesync_store::open_sqlite(&data)
        .await
        .with_context(|| format!("opening the server data in {}", data.display()))?;
    let admin = Admin::new(Arc::new(meta.clone()));
    let result = run_on(&admin, cmd).await;
    meta.close().await;
    result
}

async fn run_on(admin: &Admin, cmd: AdminCmd) -> Result<ExitCode> {
    match cmd {
        AdminCmd::Users { json } => {
            let users = admin.users().await?;
            if json {
                let rows: Vec<_> = users
                    .iter()
                    .map(|u| {
                        serde_json::json!({
                            "id": u.id, "name": u.name, "devices": u.devices, "usage_bytes": u.usage,
                            "quota_bytes": u.quota, "disabled": u.disabled, "created_at": u.created_at,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else if users.is_empty() {
                println!("No users yet.");
            } else {
                println!("{:<24} {:>7} {:>12} {:>12}  STATE", "USER", "DEVICES", "USAGE", "QUOTA");
                for u in &users {
                    println!(
                        "{:<24} {:>7} {:>12} {:>12}  {}",
                        u.name,
                        u.devices,
                        human_bytes(u.usage),
                        show_quota(u.quota),
                        if u.disabled { "disabled" } else { "enabled" }
                    );
                }
            }
        }
        AdminCmd::CreateUser { name, password_stdin, quota } => {
            let password = crate::commands::read_password(password_stdin, "New password: ", true)?;
            let u = admin.create_user(&name, &password, quota.and_then(|q| q.0)).await?;
            println!("Created user {} (storage quota: {}).", u.name, show_quota(u.quota));
        }
        AdminCmd::Disable { name } => {
            admin.set_disabled(&name, true).await?;
            println!("Disabled {name}: their connections close and they cannot log in; their files are kept.");
        }
        AdminCmd::Enable { name } => {
            admin.set_disabled(&name, false).await?;
            println!("Enabled {name}: their computers reconnect by themselves.");
        }
        AdminCmd::Quota { name, size } => {
            admin.set_quota(&name, size.0).await?;
            println!("Storage quota of {name}: {}.", show_quota(size.0));
        }
        AdminCmd::ResetPassword { name, password_stdin, log_out_devices } => {
            let password = crate::commands::read_password(password_stdin, "New password: ", true)?;
            let revoked = admin.reset_password(&name, &password, log_out_devices).await?;
            if log_out_devices {
                println!("New password set for {name}; {} device(s) logged out.", revoked.len());
            } else {
                println!("New password set for {name}; their computers stay logged in.");
            }
        }
        AdminCmd::Devices { name, json } => {
            let devices = admin.devices(&name).await?;
            if json {
                let rows: Vec<_> = devices
                    .iter()
                    .map(|d| {
                        serde_json::json!({
                            "id": d.id, "name": d.name, "created_at": d.created_at,
                            "last_seen": d.last_seen, "revoked": d.revoked,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!("{:>5}  {:<24} {:<24} STATE", "ID", "NAME", "LAST SEEN");
                for d in &devices {
                    let state = if d.revoked { "revoked" } else { "active" };
                    println!("{:>5}  {:<24} {:<24} {state}", d.id, d.name, crate::output::human_time(d.last_seen));
                }
            }
        }
        AdminCmd::RevokeDevice { name, id } => {
            admin.revoke_device(&name, id).await?;
            println!("Revoked device {id} of {name}: its token no longer works and its connection closes.");
        }
        AdminCmd::Invite { days } => {
            let code = admin.invite(Duration::from_secs(u64::from(days) * 86_400)).await?;
            println!("{code}");
            eprintln!(
                "One-time invite code, valid for {days} day(s): `filesync register --invite {code} …` \
                 (or the web UI's register form)."
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_are_sizes_or_unlimited() {
        assert_eq!(parse_quota("unlimited"), Ok(Quota(None)));
        assert_eq!(parse_quota("500M"), Ok(Quota(Some(500 << 20))));
        assert_eq!(parse_quota("10GiB"), Ok(Quota(Some(10 << 30))));
        assert_eq!(parse_quota("4096"), Ok(Quota(Some(4096))));
        assert!(parse_quota("ten").is_err());
        assert!(parse_quota("5X").is_err());
    }
}
