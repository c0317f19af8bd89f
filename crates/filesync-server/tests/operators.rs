//! What an operator controls, over real TLS: storage quotas at `PutChunks`, disabled users
//! (their connections close even when blocked, and they cannot log in), admin changes made
//! through the data directory by another store handle (as `filesync server admin` does from
//! another process), invite codes, and a password change that logs out every other device.
#![cfg(target_os = "linux")]

mod support;

use bytes::Bytes;
use filesync_client::{ErrorCode, Push};
use filesync_core::Hash;
use filesync_proto::{Frame, Message};
use filesync_server::Registration;
use filesync_server::admin::Admin;
use std::sync::Arc;
use std::time::Duration;
use support::*;
use tokio::io::AsyncWriteExt;

/// Fails a test that waits longer than this for something that should happen in seconds.
const GUARD: Duration = Duration::from_secs(20);

fn chunk(seed: u8, len: usize) -> (Hash, Bytes) {
    let data = Bytes::from(vec![seed; len]);
    (Hash::of(&data), data)
}

/// The operator's view of the server's data directory, through a store handle of its own.
async fn admin_of(s: &TestServer) -> Admin {
    let (meta, _) = filesync_store::open_embedded(&s.data).await.unwrap();
    Admin::new(Arc::new(meta))
}

/// Writes pings and never reads the answers, until the server closes the connection; panics
/// after `GUARD`. With the socket full, the session's read loop is blocked on its reply queue.
async fn flood_until_closed(mut stream: impl tokio::io::AsyncWrite + Unpin) {
    let mut batch = Vec::new();
    for id in 1..=1000u32 {
        batch.extend_from_slice(&Frame::new(id, Message::Ping(Default::default())).to_bytes().unwrap());
    }
    let closed = tokio::time::timeout(GUARD, async {
        loop {
            if stream.write_all(&batch).await.is_err() || stream.flush().await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(closed.is_ok(), "the server kept the connection open for {GUARD:?}");
}

async fn closed_reason(pushes: &mut tokio::sync::mpsc::Receiver<Push>) -> String {
    tokio::time::timeout(GUARD, async {
        loop {
            match pushes.recv().await {
                Some(Push::Closed(reason)) => return reason,
                Some(_) => {}
                None => return String::new(),
            }
        }
    })
    .await
    .expect("the connection was not closed")
}

#[tokio::test]
async fn put_chunks_beyond_the_quota_are_refused_with_the_usage_and_the_quota() {
    let s = start_with(|c| c.default_quota = Some(1000)).await;
    let c = s.connect().await;
    c.register("ann", "password123", "laptop").await.unwrap();
    c.put_chunks(vec![chunk(1, 600)]).await.expect("within the quota");
    c.put_chunks(vec![chunk(1, 600)]).await.expect("a chunk already stored costs nothing");
    let e = c.put_chunks(vec![chunk(2, 600)]).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::QuotaExceeded), "{e}");
    let text = e.to_string();
    assert!(text.contains("over its storage quota (600 B of 1000 B used"), "{text}");
    // The refused chunk was not stored: the user still has room for a small one.
    assert_eq!(c.query_chunks(&[chunk(2, 600).0]).await.unwrap(), vec![0]);
    c.put_chunks(vec![chunk(3, 400)]).await.expect("up to the quota exactly");
    // The operator raises it.
    admin_of(&s).await.set_quota("ann", Some(10_000)).await.unwrap();
    c.put_chunks(vec![chunk(2, 600)]).await.expect("within the new quota");
    let users = admin_of(&s).await.users().await.unwrap();
    assert_eq!((users[0].usage, users[0].quota, users[0].devices), (1600, Some(10_000), 1), "{users:?}");
}

#[tokio::test]
async fn a_disabled_users_connections_close_even_when_blocked_and_they_cannot_log_in() {
    let s = start_with(|c| c.admin_poll = Duration::from_millis(100)).await;
    let laptop = s.connect().await;
    let session = laptop.register("ann", "password123", "laptop").await.unwrap();
    let mut pushes = laptop.take_pushes().unwrap();
    let mut raw = s.raw_from("127.0.0.1").await;
    assert!(matches!(raw.login("ann", "password123").await, Message::Session(_)));
    let bob = s.connect().await;
    bob.register("bob", "password123", "pc").await.unwrap();

    // The raw connection never reads: its session is stuck on a full reply queue when the
    // operator, from another process, disables the user.
    let flood = tokio::spawn(flood_until_closed(raw.stream));
    tokio::time::sleep(Duration::from_millis(300)).await;
    admin_of(&s).await.set_disabled("ann", true).await.unwrap();
    flood.await.unwrap();
    let reason = closed_reason(&mut pushes).await;
    assert!(reason.contains("disabled"), "{reason}");
    bob.ping().await.expect("other users are untouched");

    let c = s.connect().await;
    assert_eq!(code(c.auth(&session.token).await), Some(ErrorCode::AccountDisabled));
    assert_eq!(code(c.login("ann", "password123", "phone").await), Some(ErrorCode::AccountDisabled));
    assert_eq!(code(c.login("ann", "wrong password", "phone").await), Some(ErrorCode::BadCredentials));

    admin_of(&s).await.set_disabled("ann", false).await.unwrap();
    let again = s.connect().await;
    again.auth(&session.token).await.expect("enabled again, the same device gets back in");
}

#[tokio::test]
async fn a_revoked_device_that_does_not_read_is_closed_at_once() {
    let s = start_with(|c| c.admin_poll = Duration::from_secs(3600)).await;
    let laptop = s.connect().await;
    laptop.register("ann", "password123", "laptop").await.unwrap();
    let mut raw = s.raw_from("127.0.0.1").await;
    let Message::Session(phone) = raw.login("ann", "password123").await else { panic!("login failed") };
    let flood = tokio::spawn(flood_until_closed(raw.stream));
    tokio::time::sleep(Duration::from_millis(300)).await;
    laptop.revoke_device(phone.device_id).await.unwrap();
    flood.await.unwrap();
}

#[tokio::test]
async fn an_admin_revocation_from_another_process_closes_the_device_connection() {
    let s = start_with(|c| c.admin_poll = Duration::from_millis(100)).await;
    let c = s.connect().await;
    let session = c.register("ann", "password123", "laptop").await.unwrap();
    let mut pushes = c.take_pushes().unwrap();
    admin_of(&s).await.revoke_device("ann", session.device_id).await.unwrap();
    let reason = closed_reason(&mut pushes).await;
    assert!(reason.contains("revoked"), "{reason}");
}

#[tokio::test]
async fn changing_the_password_can_log_out_every_other_device() {
    let s = start_with(|_| {}).await;
    let laptop = s.connect().await;
    laptop.register("ann", "password123", "laptop").await.unwrap();
    let desktop = s.connect().await;
    let d = desktop.login("ann", "password123", "desktop").await.unwrap();
    let mut desktop_pushes = desktop.take_pushes().unwrap();
    let phone = s.connect().await;
    let p = phone.login("ann", "password123", "phone").await.unwrap();

    laptop.change_password_with("password123", "new password 1", false).await.unwrap();
    phone.ping().await.expect("without the option every device stays");

    laptop.change_password_with("new password 1", "new password 2", true).await.unwrap();
    let reason = closed_reason(&mut desktop_pushes).await;
    assert!(reason.contains("revoked"), "{reason}");
    laptop.ping().await.expect("the device that changed the password stays logged in");
    let c = s.connect().await;
    assert_eq!(code(c.auth(&d.token).await), Some(ErrorCode::InvalidToken));
    assert_eq!(code(c.auth(&p.token).await), Some(ErrorCode::InvalidToken));
    c.login("ann", "new password 2", "tablet").await.expect("the new password works");
}

#[tokio::test]
async fn registration_by_invite_takes_each_code_once() {
    let s = start_with(|c| c.registration = Registration::Invite).await;
    let c = s.connect().await;
    assert!(c.welcome().registration_open, "registration is possible, with a code");
    let e = c.register("ann", "password123", "laptop").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::RegistrationClosed));
    assert!(e.to_string().contains("invite"), "{e}");
    let e = c.register_with_invite("ann", "password123", "laptop", "fsi_made-up").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::InviteInvalid), "{e}");
    let code_ = admin_of(&s).await.invite(Duration::from_secs(3600)).await.unwrap();
    c.register_with_invite("ann", "password123", "laptop", &code_).await.expect("a fresh code works");
    let other = s.connect().await;
    let e = other.register_with_invite("bob", "password123", "pc", &code_).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::InviteInvalid), "a code works once: {e}");
}
