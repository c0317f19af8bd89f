//! Conformance checks for what an operator controls: disabled users, storage quotas and the
//! bytes they measure, revoking every other device, invite codes, and the admin generation
//! that tells a running server to look again.

use super::meta::{NOW, account, token};
use crate::{MetaStore, NewAccount, StoreError};
use filesync_core::Hash;

fn invite(code: &str) -> [u8; 32] {
    Hash::of(format!("invite {code}").as_bytes()).0
}

pub(super) async fn new_users_are_enabled_without_a_quota<S: MetaStore>(s: &S) {
    let u = s.create_user("conformance-plain", "h", NOW).await.expect("create_user");
    assert!(!u.disabled, "a new user is enabled");
    assert_eq!(u.quota, None, "create_user sets no quota");
    let q = NewAccount { name: "conformance-quota", password_hash: "h", quota: Some(5_000), invite: None };
    let u = s.create_account(&q, NOW).await.expect("create_account with a quota");
    assert_eq!(u.quota, Some(5_000), "create_account returns the quota");
    assert_eq!(s.user_by_id(u.id).await.unwrap().unwrap().quota, Some(5_000), "the quota is stored");
}

pub(super) async fn users_are_disabled_and_enabled_again<S: MetaStore>(s: &S) {
    let a = account(s, "disable").await;
    let before = s.admin_generation().await.expect("admin_generation");
    assert!(s.set_user_disabled(a.user.id, true).await.unwrap(), "disabling a user returns true");
    assert!(s.user_by_id(a.user.id).await.unwrap().unwrap().disabled, "user_by_id shows the user disabled");
    assert!(s.user_by_name(&a.user.name).await.unwrap().unwrap().disabled, "user_by_name shows it too");
    let listed = s.list_users().await.unwrap().into_iter().find(|u| u.id == a.user.id).expect("listed");
    assert!(listed.disabled, "list_users shows it too");
    assert!(s.admin_generation().await.unwrap() > before, "disabling a user bumps the admin generation");
    assert!(s.set_user_disabled(a.user.id, false).await.unwrap(), "re-enabling returns true");
    assert!(!s.user_by_id(a.user.id).await.unwrap().unwrap().disabled, "the user is enabled again");
    let dev = s.device(a.user.id, a.device.id).await.unwrap().expect("device");
    assert!(!dev.revoked, "disabling a user does not revoke its devices: enabling it lets them back in");
    assert!(!s.set_user_disabled(a.user.id + 1000, true).await.unwrap(), "an unknown user returns false");
}

pub(super) async fn quotas_are_set_and_removed<S: MetaStore>(s: &S) {
    let a = account(s, "setquota").await;
    assert!(s.set_quota(a.user.id, Some(10 << 20)).await.unwrap(), "set_quota returns true");
    assert_eq!(s.user_by_id(a.user.id).await.unwrap().unwrap().quota, Some(10 << 20));
    assert!(s.set_quota(a.user.id, None).await.unwrap(), "removing a quota returns true");
    assert_eq!(s.user_by_id(a.user.id).await.unwrap().unwrap().quota, None, "no quota: unlimited");
    assert!(!s.set_quota(a.user.id + 1000, Some(1)).await.unwrap(), "an unknown user returns false");
}

pub(super) async fn stored_bytes_count_each_chunk_once_per_user<S: MetaStore>(s: &S) {
    let a = account(s, "stored-a").await;
    let b = account(s, "stored-b").await;
    assert_eq!(s.stored_bytes(a.user.id).await.unwrap(), 0, "a new user stores nothing");
    let (h1, h2) = (Hash::of(b"stored one"), Hash::of(b"stored two"));
    s.add_chunks(a.user.id, &[(h1, 1000), (h2, 24)]).await.unwrap();
    s.add_chunks(a.user.id, &[(h1, 1000)]).await.unwrap();
    s.add_chunks(b.user.id, &[(h1, 1000)]).await.unwrap();
    assert_eq!(s.stored_bytes(a.user.id).await.unwrap(), 1024, "a chunk uploaded twice counts once");
    assert_eq!(s.stored_bytes(b.user.id).await.unwrap(), 1000, "each user counts only its own chunks");
}

pub(super) async fn other_devices_are_revoked_and_this_one_kept<S: MetaStore>(s: &S) {
    let a = account(s, "revoke-others").await;
    let phone = s.create_device(a.user.id, "phone", &token("revoke-others", "phone"), NOW).await.unwrap();
    let tablet = s.create_device(a.user.id, "tablet", &token("revoke-others", "tablet"), NOW).await.unwrap();
    s.revoke_device(a.user.id, tablet.id).await.unwrap();
    let other = account(s, "revoke-others-b").await;
    let before = s.admin_generation().await.unwrap();
    let revoked = s.revoke_devices_except(a.user.id, Some(a.device.id)).await.expect("revoke_devices_except");
    assert_eq!(revoked, vec![phone.id], "only the devices not revoked yet, and not the one kept");
    assert!(s.admin_generation().await.unwrap() > before, "revoking devices bumps the admin generation");
    assert!(!s.device(a.user.id, a.device.id).await.unwrap().unwrap().revoked, "the kept device stays");
    assert!(s.device(a.user.id, phone.id).await.unwrap().unwrap().revoked, "the others are revoked");
    assert!(!s.device(other.user.id, other.device.id).await.unwrap().unwrap().revoked, "other users are untouched");
    let all = s.revoke_devices_except(a.user.id, None).await.unwrap();
    assert_eq!(all, vec![a.device.id], "without a device to keep, every device is revoked");
}

pub(super) async fn invites_are_used_once_and_expire<S: MetaStore>(s: &S) {
    s.create_invite(&invite("good"), NOW + 3600, NOW).await.expect("create_invite");
    s.create_invite(&invite("old"), NOW + 60, NOW).await.expect("create_invite");
    let with = |name: &'static str, code: &str| NewAccount {
        name,
        password_hash: "h",
        quota: Some(7),
        invite: Some(invite(code)),
    };
    match s.create_account(&with("conformance-inv-unknown", "nope"), NOW).await {
        Err(StoreError::InviteInvalid) => {}
        other => panic!("an unknown invite must fail with InviteInvalid, got {other:?}"),
    }
    assert_eq!(s.user_by_name("conformance-inv-unknown").await.unwrap(), None, "a refused invite creates no user");
    match s.create_account(&with("conformance-inv-late", "old"), NOW + 61).await {
        Err(StoreError::InviteInvalid) => {}
        other => panic!("an expired invite must fail with InviteInvalid, got {other:?}"),
    }
    // A taken name uses nothing up.
    s.create_user("conformance-inv-taken", "h", NOW).await.unwrap();
    match s.create_account(&with("conformance-inv-taken", "good"), NOW).await {
        Err(StoreError::UserExists(_)) => {}
        other => panic!("a taken name must fail with UserExists, got {other:?}"),
    }
    let u = s.create_account(&with("conformance-inv-first", "good"), NOW + 10).await.expect("a valid invite works");
    assert_eq!(u.quota, Some(7), "the account gets its quota");
    match s.create_account(&with("conformance-inv-second", "good"), NOW + 20).await {
        Err(StoreError::InviteInvalid) => {}
        other => panic!("an invite works once only, got {other:?}"),
    }
}
