//! Request handlers: each one parses a message, applies it to the stores for the
//! authenticated user, and encodes the reply. Every lookup is scoped to that user.

use crate::Registration;
use crate::Shared;
use crate::auth;
use crate::history;
use crate::hub::HubEvent;
use bytes::Bytes;
use filesync_core::chunking::MAX_CHUNK;
use filesync_core::{Hash, names};
use filesync_proto::convert::{entry_to_wire, hash_from_wire, meta_from_wire, path_from_wire};
use filesync_proto::{
    ChunkData, ChunkPresence, Chunks, CommitOutcome, CommitResult, DeviceInfo, Devices, ErrorCode, ErrorMsg,
    FolderInfo, Folders, Message, Session, Signatures, limits,
};
use filesync_proto::{PROTOCOL_VERSION_PACKED, compression, delta};
use filesync_store::{ChunkLock, Device, Folder, NewAccount, Outcome, ProposedChange, StoreError, UserId};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use tracing::{error, info};

/// The identity of an authenticated connection.
pub(crate) struct Authed {
    pub user_id: UserId,
    pub user_name: String,
    pub device: Device,
    /// The protocol version `Welcome` chose (set by the session once authenticated).
    pub version: u32,
}

pub(crate) type Reply<T> = Result<T, ErrorMsg>;

pub(crate) fn err(code: ErrorCode, msg: impl Into<String>) -> ErrorMsg {
    ErrorMsg::new(code, msg)
}

pub(crate) fn store_err(e: StoreError) -> ErrorMsg {
    match e {
        StoreError::MissingChunks(_) => err(ErrorCode::MissingChunks, e.to_string()),
        StoreError::Full(_) => err(ErrorCode::StorageFull, "the server's storage is full; free space on the server"),
        StoreError::UserExists(_) => err(ErrorCode::UserExists, e.to_string()),
        StoreError::InviteInvalid => err(
            ErrorCode::InviteInvalid,
            "the invite code is unknown, already used or expired; ask the server's operator for a new one",
        ),
        StoreError::FolderNotFound(_) | StoreError::VersionNotFound { .. } => err(ErrorCode::NotFound, e.to_string()),
        other => {
            error!("storage error: {other}");
            err(ErrorCode::Internal, "internal server error (see the server log)")
        }
    }
}

/// A new user name as the server stores it: trimmed, NFC, and of the letters user names may
/// have (`filesync_core::names`), or a `BadRequest` saying what is wrong with it.
pub(crate) fn valid_user_name(raw: &str) -> Reply<String> {
    let user_name = name("user name", raw)?;
    names::check_new_user_name(&user_name).map_err(|e| err(ErrorCode::BadRequest, format!("a user name {e}")))?;
    Ok(user_name)
}

/// A user, device or folder name as the server stores and compares it: trimmed and in NFC,
/// checked by the rule the client applies too (`filesync_core::names`), or a `BadRequest`
/// saying what is wrong with it.
fn name(what: &str, raw: &str) -> Reply<String> {
    names::normalize_name(raw).map_err(|e| err(ErrorCode::BadRequest, format!("the {what} {e}")))
}

async fn issue_device(
    shared: &Shared,
    user_id: UserId,
    user_name: &str,
    device_name: &str,
) -> Reply<(Authed, Session)> {
    let token = auth::new_token();
    let device = shared
        .meta
        .create_device(user_id, device_name, &auth::token_hash(&token), shared.clock.now_unix())
        .await
        .map_err(store_err)?;
    let session =
        Session { user_id, user: user_name.to_string(), device_id: device.id, device_name: device.name.clone(), token };
    Ok((Authed { user_id, user_name: user_name.to_string(), device, version: 0 }, session))
}

pub(crate) async fn register(
    shared: &Shared,
    r: filesync_proto::Register,
    peer: SocketAddr,
) -> Reply<(Authed, Session)> {
    let invite = match shared.registration {
        Registration::Open => None,
        Registration::Closed => {
            return Err(err(
                ErrorCode::RegistrationClosed,
                "registration is closed on this server; ask its operator for an account",
            ));
        }
        Registration::Invite if r.invite.trim().is_empty() => {
            return Err(err(
                ErrorCode::RegistrationClosed,
                "this server accepts new accounts by invite only: ask its operator for an invite code \
                 (`filesync server admin invite`) and register with it (`filesync register --invite CODE`)",
            ));
        }
        Registration::Invite => Some(crate::admin::invite_hash(r.invite.trim())),
    };
    let user_name = valid_user_name(&r.user)?;
    if r.password.chars().count() < 8 || r.password.len() > limits::MAX_PASSWORD_LEN {
        return Err(err(ErrorCode::BadRequest, "passwords must be at least 8 characters (and at most 1024 bytes)"));
    }
    let device_name = name("device name", &r.device_name)?;
    // Every registration costs an Argon2 hash and creates an account: count each one per
    // address (successes too), before hashing.
    let keys = [format!("register:{}", source_key(peer.ip()))];
    if let Err(wait) =
        shared.throttle.reserve(&keys, auth::REGISTER_FREE_ATTEMPTS, tokio::time::Instant::now().into_std())
    {
        return Err(err(
            ErrorCode::RateLimited,
            format!("too many registrations from your address; retry in {} s", wait.as_secs() + 1),
        ));
    }
    let hash = shared.passwords.hash(r.password.clone()).await?;
    let account = NewAccount { name: &user_name, password_hash: &hash, quota: shared.default_quota, invite };
    let user = match shared.meta.create_account(&account, shared.clock.now_unix()).await {
        Ok(u) => u,
        Err(StoreError::UserExists(_)) => {
            return Err(err(ErrorCode::UserExists, format!("the user name {user_name:?} is taken")));
        }
        Err(e) => return Err(store_err(e)),
    };
    info!(%peer, user = %user.name, "registered");
    issue_device(shared, user.id, &user.name, &device_name).await
}

/// The part of a client address the throttle counts under: the whole IPv4 address, or the
/// /64 prefix of an IPv6 address (one host usually holds a whole /64).
pub(crate) fn source_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// Checks a password, throttled so that guessing is slow but nobody can lock a user out.
///
/// An attempt is counted under two keys *before* the password is looked at (see
/// `LoginThrottle`): the user name at this client address, and the address alone. Keying the
/// user's count by address means that an attacker's failures slow down only the attacker: the
/// real user, at another address, still logs in at once. (`Login` carries no proof of a known
/// device to tell the two apart; devices that have one use `Auth`, which is never throttled.)
/// The address key stops one address from guessing across many user names.
pub(crate) async fn login(shared: &Shared, l: filesync_proto::Login, peer: SocketAddr) -> Reply<(Authed, Session)> {
    if l.user.len() > limits::MAX_NAME_LEN || l.password.len() > limits::MAX_PASSWORD_LEN {
        return Err(err(ErrorCode::BadRequest, "user name or password too long"));
    }
    let user_name = name("user name", &l.user)?;
    let device_name = name("device name", &l.device_name)?;
    let addr = source_key(peer.ip());
    let keys = [format!("user:{user_name}@{addr}"), format!("ip:{addr}")];
    if let Err(wait) = shared.throttle.reserve(&keys, auth::LOGIN_FREE_ATTEMPTS, tokio::time::Instant::now().into_std())
    {
        return Err(err(ErrorCode::RateLimited, format!("too many failed logins; retry in {} s", wait.as_secs() + 1)));
    }
    let user = shared.meta.user_by_name(&user_name).await.map_err(store_err)?;
    let phc = user.as_ref().map(|u| u.password_hash.clone());
    let ok = shared.passwords.verify(l.password.clone(), phc).await?;
    let user = match (ok, user) {
        (true, Some(u)) => u,
        _ => {
            info!(%peer, user = %user_name, "failed login");
            return Err(err(ErrorCode::BadCredentials, "wrong user name or password"));
        }
    };
    shared.throttle.succeeded(&keys);
    if user.disabled {
        info!(%peer, user = %user.name, "login of a disabled user refused");
        return Err(disabled());
    }
    if l.replaces_device != 0 {
        // A computer whose device was revoked logs in again as that device: same row, new
        // token. Anything else (a live device, another user's, an unknown id) gets a new one.
        let token = auth::new_token();
        let hash = auth::token_hash(&token);
        let again =
            shared.meta.reissue_device(user.id, l.replaces_device, &device_name, &hash, shared.clock.now_unix());
        if let Some(device) = again.await.map_err(store_err)? {
            info!(%peer, user = %user.name, device = device.id, "revoked device logged in again");
            let session = Session {
                user_id: user.id,
                user: user.name.clone(),
                device_id: device.id,
                device_name: device.name.clone(),
                token,
            };
            return Ok((Authed { user_id: user.id, user_name: user.name, device, version: 0 }, session));
        }
    }
    issue_device(shared, user.id, &user.name, &device_name).await
}

pub(crate) async fn auth(shared: &Shared, a: filesync_proto::Auth) -> Reply<(Authed, Session)> {
    let invalid =
        || err(ErrorCode::InvalidToken, "this device's token is not valid (revoked or unknown); log in again");
    if a.token.len() > 256 {
        return Err(invalid());
    }
    let device =
        shared.meta.device_by_token_hash(&auth::token_hash(&a.token)).await.map_err(store_err)?.ok_or_else(invalid)?;
    if device.revoked {
        return Err(invalid());
    }
    let user = shared.meta.user_by_id(device.user_id).await.map_err(store_err)?.ok_or_else(invalid)?;
    if user.disabled {
        return Err(disabled());
    }
    shared.meta.touch_device(device.id, shared.clock.now_unix()).await.map_err(store_err)?;
    let session = Session {
        user_id: user.id,
        user: user.name.clone(),
        device_id: device.id,
        device_name: device.name.clone(),
        token: String::new(),
    };
    Ok((Authed { user_id: user.id, user_name: user.name, device, version: 0 }, session))
}

fn disabled() -> ErrorMsg {
    err(
        ErrorCode::AccountDisabled,
        "this account is disabled by the server's operator; ask them to enable it again (your files are kept)",
    )
}

pub(crate) async fn logout(shared: &Shared, a: &Authed) -> Message {
    match shared.meta.revoke_device(a.user_id, a.device.id).await {
        Ok(_) => Message::Ok(Default::default()),
        Err(e) => Message::Error(store_err(e)),
    }
}

/// Dispatches one request of an authenticated connection.
pub(crate) async fn request(shared: &Shared, a: &Authed, msg: Message) -> Message {
    let name = msg.name();
    let r = match msg {
        Message::ListDevices(_) => list_devices(shared, a).await,
        Message::RevokeDevice(r) => revoke_device(shared, a, r).await,
        Message::RenameDevice(r) => rename_device(shared, a, r).await,
        Message::ChangePassword(c) => change_password(shared, a, c).await,
        Message::ListFolders(_) => list_folders(shared, a).await,
        Message::OpenFolder(o) => open_folder(shared, a, o).await,
        Message::GetChanges(g) => get_changes(shared, a, g).await,
        Message::QueryChunks(q) => query_chunks(shared, a, q).await,
        Message::PutChunks(p) => put_chunks(shared, a, p).await,
        Message::GetChunks(g) => get_chunks(shared, a, g).await,
        Message::GetSignatures(g) => get_signatures(shared, a, g).await,
        Message::AnnounceChunks(u) => announce_chunks(shared, a, u).await,
        Message::Commit(c) => commit(shared, a, c).await,
        Message::ListVersions(l) => history::list_versions(shared, a, l).await,
        Message::ListTrash(l) => history::list_trash(shared, a, l).await,
        Message::Restore(r) => history::restore(shared, a, r).await,
        Message::Usage(_) => history::usage(shared, a).await,
        _ => Err(err(ErrorCode::BadRequest, format!("{name} is not a request"))),
    };
    r.unwrap_or_else(Message::Error)
}

async fn list_devices(shared: &Shared, a: &Authed) -> Reply<Message> {
    let devices = shared.meta.list_devices(a.user_id).await.map_err(store_err)?;
    Ok(Message::Devices(Devices {
        devices: devices
            .into_iter()
            .map(|d| DeviceInfo {
                id: d.id,
                current: d.id == a.device.id,
                name: d.name,
                created_at: d.created_at,
                last_seen: d.last_seen,
                revoked: d.revoked,
            })
            .collect(),
    }))
}

/// Revokes a device (closing its connections) and, when asked, deletes its row as well.
async fn revoke_device(shared: &Shared, a: &Authed, r: filesync_proto::RevokeDevice) -> Reply<Message> {
    let device_id = r.device_id;
    if !shared.meta.revoke_device(a.user_id, device_id).await.map_err(store_err)? {
        return Err(err(ErrorCode::NotFound, format!("you have no device with id {device_id}")));
    }
    shared.hub.close_device(a.user_id, device_id);
    if r.remove {
        shared.meta.remove_device(a.user_id, device_id).await.map_err(store_err)?;
    }
    Ok(Message::Ok(Default::default()))
}

async fn rename_device(shared: &Shared, a: &Authed, r: filesync_proto::RenameDevice) -> Reply<Message> {
    let name = name("device name", &r.name)?;
    if !shared.meta.rename_device(a.user_id, r.device_id, &name).await.map_err(store_err)? {
        return Err(err(ErrorCode::NotFound, format!("you have no device with id {}", r.device_id)));
    }
    Ok(Message::Ok(Default::default()))
}

/// Checks the current password (throttled like a login), then stores the new one's hash.
async fn change_password(shared: &Shared, a: &Authed, c: filesync_proto::ChangePassword) -> Reply<Message> {
    if c.new_password.chars().count() < 8 || c.new_password.len() > limits::MAX_PASSWORD_LEN {
        return Err(err(ErrorCode::BadRequest, "passwords must be at least 8 characters (and at most 1024 bytes)"));
    }
    if c.current_password.len() > limits::MAX_PASSWORD_LEN {
        return Err(err(ErrorCode::BadCredentials, "the current password is wrong"));
    }
    // Counted before the check, like a login (see `login`).
    let keys = [format!("password:{}", a.user_id)];
    if let Err(wait) = shared.throttle.reserve(&keys, auth::LOGIN_FREE_ATTEMPTS, tokio::time::Instant::now().into_std())
    {
        return Err(err(
            ErrorCode::RateLimited,
            format!("too many wrong passwords; retry in {} s", wait.as_secs() + 1),
        ));
    }
    let user = shared
        .meta
        .user_by_id(a.user_id)
        .await
        .map_err(store_err)?
        .ok_or_else(|| err(ErrorCode::NotAuthenticated, "this account no longer exists"))?;
    if !shared.passwords.verify(c.current_password.clone(), Some(user.password_hash.clone())).await? {
        return Err(err(ErrorCode::BadCredentials, "the current password is wrong"));
    }
    shared.throttle.succeeded(&keys);
    let hash = shared.passwords.hash(c.new_password.clone()).await?;
    shared.meta.set_password_hash(a.user_id, &hash).await.map_err(store_err)?;
    info!(user = %a.user_name, "password changed");
    if c.log_out_other_devices {
        let revoked = shared.meta.revoke_devices_except(a.user_id, Some(a.device.id)).await.map_err(store_err)?;
        shared.hub.close_devices(a.user_id, &revoked);
        info!(user = %a.user_name, devices = revoked.len(), "other devices logged out");
    }
    Ok(Message::Ok(Default::default()))
}

fn folder_info(f: Folder) -> FolderInfo {
    FolderInfo { id: f.id, name: f.name, seq: f.seq }
}

async fn list_folders(shared: &Shared, a: &Authed) -> Reply<Message> {
    let folders = shared.meta.list_folders(a.user_id).await.map_err(store_err)?;
    Ok(Message::Folders(Folders { folders: folders.into_iter().map(folder_info).collect() }))
}

async fn open_folder(shared: &Shared, a: &Authed, o: filesync_proto::OpenFolder) -> Reply<Message> {
    let name = name("folder name", &o.name)?;
    // A folder created before names were normalized keeps the spelling it was created with.
    if name != o.name
        && let Some(f) = shared.meta.folder_by_name(a.user_id, &o.name, false).await.map_err(store_err)?
    {
        return Ok(Message::Folder(folder_info(f)));
    }
    match shared.meta.folder_by_name(a.user_id, &name, o.create).await.map_err(store_err)? {
        Some(f) => Ok(Message::Folder(folder_info(f))),
        None => Err(err(ErrorCode::NotFound, format!("you have no folder named {name:?}"))),
    }
}

pub(crate) async fn owned_folder(shared: &Shared, a: &Authed, id: u64) -> Reply<Folder> {
    shared
        .meta
        .folder(a.user_id, id)
        .await
        .map_err(store_err)?
        .ok_or_else(|| err(ErrorCode::NotFound, format!("you have no folder with id {id}")))
}

async fn get_changes(shared: &Shared, a: &Authed, g: filesync_proto::GetChanges) -> Reply<Message> {
    let folder = owned_folder(shared, a, g.folder_id).await?;
    let limit =
        if g.limit == 0 { limits::MAX_ENTRIES_PER_CHANGES } else { g.limit.min(limits::MAX_ENTRIES_PER_CHANGES) };
    let entries = shared.meta.changes_since(folder.id, g.since, limit + 1).await.map_err(store_err)?;
    let mut more = entries.len() > limit as usize;
    // Stop early when the reply would outgrow a frame (entries of huge files carry long
    // chunk lists); the client asks again from the last rev it got.
    let mut wire = Vec::with_capacity(entries.len().min(limit as usize));
    let mut size = 0usize;
    for e in entries.iter().take(limit as usize) {
        let w = entry_to_wire(e);
        size += filesync_proto::encoded_len(&w) + 8;
        if size > limits::MAX_REPLY_BYTES && !wire.is_empty() {
            more = true;
            break;
        }
        wire.push(w);
    }
    Ok(Message::Changes(filesync_proto::Changes { entries: wire, more, folder_seq: folder.seq }))
}

fn parse_hashes(raw: &[Vec<u8>]) -> Reply<Vec<Hash>> {
    if raw.len() > limits::MAX_HASHES_PER_REQUEST {
        return Err(err(ErrorCode::TooLarge, format!("at most {} hashes per request", limits::MAX_HASHES_PER_REQUEST)));
    }
    raw.iter().map(|h| hash_from_wire(h).map_err(|e| err(ErrorCode::BadRequest, e.to_string()))).collect()
}

async fn query_chunks(shared: &Shared, a: &Authed, q: filesync_proto::QueryChunks) -> Reply<Message> {
    let hashes = parse_hashes(&q.hashes)?;
    let missing = shared.meta.missing_chunks(a.user_id, &hashes).await.map_err(store_err)?;
    Ok(Message::ChunkPresence(ChunkPresence { missing: missing.into_iter().map(|i| i as u32).collect() }))
}

async fn put_chunks(shared: &Shared, a: &Authed, mut p: filesync_proto::PutChunks) -> Reply<Message> {
    let total: usize = p.chunks.iter().map(|c| c.data.len()).sum::<usize>() + p.packed.len();
    if total > limits::MAX_CHUNK_BYTES_PER_MESSAGE
        || compression::packed_size(&p.chunks) > limits::MAX_CHUNK_BYTES_PER_MESSAGE as u64
    {
        return Err(err(ErrorCode::TooLarge, "too many chunk bytes in one PutChunks"));
    }
    if !p.packed.is_empty() || p.chunks.iter().any(|c| c.encoding == compression::ENCODING_PACKED) {
        p.chunks = tokio::task::spawn_blocking(move || {
            compression::unpack(&mut p.chunks, &p.packed, MAX_CHUNK as usize, limits::MAX_CHUNK_BYTES_PER_MESSAGE)
                .map(|()| p.chunks)
                .map_err(|e| err(ErrorCode::BadRequest, e.to_string()))
        })
        .await
        .map_err(|_| err(ErrorCode::Internal, "inflating chunks failed"))??;
    }
    let mut sent: Vec<(Hash, u32, Bytes, Option<Hash>)> = Vec::with_capacity(p.chunks.len());
    for c in p.chunks {
        let h = hash_from_wire(&c.hash).map_err(|e| err(ErrorCode::BadRequest, e.to_string()))?;
        if c.data.len() > MAX_CHUNK as usize {
            return Err(err(ErrorCode::TooLarge, format!("chunk {h} is larger than {MAX_CHUNK} bytes")));
        }
        let base = match c.encoding {
            compression::ENCODING_DELTA => Some(
                hash_from_wire(&c.base).map_err(|e| err(ErrorCode::BadRequest, format!("chunk {h}: its base: {e}")))?,
            ),
            _ => None,
        };
        sent.push((h, c.encoding, c.data, base));
    }
    let bases = delta_bases(shared, a, sent.iter().filter_map(|(_, _, _, b)| *b).collect()).await?;
    // Inflate or rebuild (never beyond one chunk, nor the message beyond its limit) and verify
    // every hash: the store is content-addressed and must never hold a lie.
    let chunks = tokio::task::spawn_blocking(move || {
        let mut chunks = Vec::with_capacity(sent.len());
        let mut inflated = 0usize;
        for (h, encoding, data, base) in sent {
            let d = match base {
                Some(b) => delta::apply(&bases[&b], &data, MAX_CHUNK as usize)
                    .map_err(|e| err(ErrorCode::BadRequest, format!("chunk {h}: {e}")))?,
                None => compression::decode_chunk(encoding, data, MAX_CHUNK as usize)
                    .map_err(|e| err(ErrorCode::BadRequest, format!("chunk {h}: {e}")))?,
            };
            inflated += d.len();
            if inflated > limits::MAX_CHUNK_BYTES_PER_MESSAGE {
                return Err(err(ErrorCode::TooLarge, "too many chunk bytes in one PutChunks, once inflated"));
            }
            if Hash::of(&d) != h {
                return Err(err(ErrorCode::BadRequest, format!("chunk data does not match its hash {h}")));
            }
            chunks.push((h, d));
        }
        Ok(chunks)
    })
    .await
    .map_err(|_| err(ErrorCode::Internal, "hashing failed"))??;
    crate::admin::check_quota(shared, a.user_id, &chunks).await?;
    // Garbage collection — on this instance or any other sharing the store — must not delete a
    // chunk's bytes between this put finding them present and the record below: hold the
    // user's chunk lock for both (see `maintenance.rs`). Dropped on an error: released too.
    let lock = shared.meta.lock_chunks(a.user_id, ChunkLock::Upload).await.map_err(store_err)?;
    shared.chunks.put_many(a.user_id, &chunks).await.map_err(store_err)?;
    let sizes: Vec<(Hash, u32)> = chunks.iter().map(|(h, d)| (*h, d.len() as u32)).collect();
    shared.meta.add_chunks(a.user_id, &sizes).await.map_err(store_err)?;
    lock.release().await.map_err(store_err)?;
    Ok(Message::Ok(Default::default()))
}

/// The bytes of the chunks that a `PutChunks`' deltas apply to: chunks of this user, at most
/// one message's worth of them.
async fn delta_bases(shared: &Shared, a: &Authed, mut wanted: Vec<Hash>) -> Reply<HashMap<Hash, Bytes>> {
    wanted.sort_unstable();
    wanted.dedup();
    if wanted.is_empty() {
        return Ok(HashMap::new());
    }
    let sizes = shared.meta.chunk_sizes(a.user_id, &wanted).await.map_err(store_err)?;
    let total: usize = sizes.iter().flatten().map(|s| *s as usize).sum();
    if wanted.len() > limits::MAX_SIGNATURES_PER_REQUEST || total > limits::MAX_CHUNK_BYTES_PER_MESSAGE {
        return Err(err(ErrorCode::TooLarge, "the deltas of one PutChunks apply to too many chunk bytes"));
    }
    let mut out = HashMap::with_capacity(wanted.len());
    for (h, size) in wanted.iter().zip(sizes) {
        let data = match size {
            Some(_) => shared.chunks.get(a.user_id, h).await.ok().flatten(),
            None => None,
        };
        let Some(data) = data else {
            return Err(err(ErrorCode::NotFound, format!("the server has no chunk {h} to apply a delta to")));
        };
        out.insert(*h, data);
    }
    Ok(out)
}

/// Relays an upload in progress to the user's other devices (section 8.19): checked, then
/// handed to the hub; nothing is stored.
async fn announce_chunks(shared: &Shared, a: &Authed, mut u: filesync_proto::UploadProgress) -> Reply<Message> {
    let bad = |why: String| err(ErrorCode::BadRequest, why);
    path_from_wire(&u.path).map_err(|e| bad(e.to_string()))?;
    let chunks = filesync_proto::convert::chunks_from_wire(&u.chunks).map_err(|e| bad(e.to_string()))?;
    if chunks.is_empty() || chunks.len() > limits::MAX_ANNOUNCED_CHUNKS {
        return Err(bad(format!("announce 1 to {} chunks at once", limits::MAX_ANNOUNCED_CHUNKS)));
    }
    if u64::from(u.first) + chunks.len() as u64 > u64::from(u.total) {
        return Err(bad(format!(
            "chunks {}..{} of a file of {} chunks",
            u.first,
            u.first as usize + chunks.len(),
            u.total
        )));
    }
    if chunks.iter().any(|c| c.len == 0 || c.len > MAX_CHUNK) {
        return Err(bad(format!("a chunk is empty or longer than {MAX_CHUNK} bytes")));
    }
    owned_folder(shared, a, u.folder_id).await?;
    u.device_id = a.device.id;
    shared.hub.publish(a.user_id, HubEvent::ChunksAnnounced(std::sync::Arc::new(u)));
    Ok(Message::Ok(Default::default()))
}

/// Signatures of chunks this user has, for a client to send deltas from (section 8.18).
async fn get_signatures(shared: &Shared, a: &Authed, g: filesync_proto::GetSignatures) -> Reply<Message> {
    if g.hashes.len() > limits::MAX_SIGNATURES_PER_REQUEST {
        return Err(err(
            ErrorCode::TooLarge,
            format!("at most {} hashes per GetSignatures", limits::MAX_SIGNATURES_PER_REQUEST),
        ));
    }
    let hashes = parse_hashes(&g.hashes)?;
    let sizes = shared.meta.chunk_sizes(a.user_id, &hashes).await.map_err(store_err)?;
    let mut signatures = Vec::with_capacity(hashes.len());
    for (h, size) in hashes.iter().zip(sizes) {
        // A chunk the user does not have, or whose bytes are damaged, gets no signature: the
        // client then sends the whole chunk, which repairs it.
        let data = match size {
            Some(_) => shared.chunks.get(a.user_id, h).await.ok().flatten(),
            None => None,
        };
        signatures.push(match data {
            Some(d) => tokio::task::spawn_blocking(move || delta::signature(&d))
                .await
                .map_err(|_| err(ErrorCode::Internal, "computing a signature failed"))?,
            None => Bytes::new(),
        });
    }
    Ok(Message::Signatures(Signatures { signatures }))
}

async fn get_chunks(shared: &Shared, a: &Authed, g: filesync_proto::GetChunks) -> Reply<Message> {
    let hashes = parse_hashes(&g.hashes)?;
    if g.similar.len() > limits::MAX_SIGNATURES_PER_REQUEST {
        return Err(err(
            ErrorCode::TooLarge,
            format!("at most {} similar chunks per GetChunks", limits::MAX_SIGNATURES_PER_REQUEST),
        ));
    }
    // What the client offers to receive deltas against: (base hash, its signature) by index.
    let mut similar: HashMap<usize, (Vec<u8>, Bytes)> = HashMap::with_capacity(g.similar.len());
    for s in g.similar {
        if s.index as usize >= hashes.len() || s.base.len() != 32 {
            return Err(err(ErrorCode::BadRequest, "a similar chunk names no requested chunk, or has no valid hash"));
        }
        similar.insert(s.index as usize, (s.base, s.signature));
    }
    let sizes = shared.meta.chunk_sizes(a.user_id, &hashes).await.map_err(store_err)?;
    let mut total = 0usize;
    for (h, s) in hashes.iter().zip(&sizes) {
        match s {
            Some(s) => total += *s as usize,
            None => {
                return Err(err(
                    ErrorCode::NotFound,
                    format!(
                        "the server has no chunk {h}: it was never uploaded, or it was lost on the server and no \
                         device that has the file has uploaded it again yet"
                    ),
                ));
            }
        }
    }
    if total > limits::MAX_CHUNK_BYTES_PER_MESSAGE {
        return Err(err(
            ErrorCode::TooLarge,
            format!("requested {total} bytes; at most {} per GetChunks", limits::MAX_CHUNK_BYTES_PER_MESSAGE),
        ));
    }
    let mut out = Vec::with_capacity(hashes.len());
    for h in &hashes {
        let data = match shared.chunks.get(a.user_id, h).await {
            Ok(Some(data)) => data,
            Ok(None) => return Err(chunk_lost(shared, a, h, "is recorded but missing from the chunk store").await),
            Err(StoreError::ChunkDamaged { moved_to, .. }) => {
                let why = format!("was damaged on disk (its bytes no longer match its hash); set aside as {moved_to}");
                return Err(chunk_lost(shared, a, h, &why).await);
            }
            Err(e) => return Err(store_err(e)),
        };
        out.push((*h, data));
    }
    // Each compressed (packed together from version 5), or sent as a delta, where that pays; on
    // a blocking thread.
    let pack = a.version >= PROTOCOL_VERSION_PACKED;
    let reply = tokio::task::spawn_blocking(move || {
        let mut chunks: Vec<ChunkData> = out
            .into_iter()
            .enumerate()
            .map(|(i, (h, data))| {
                let (encoding, sent) =
                    if pack { compression::encode_packable(&data) } else { compression::encode_chunk(&data) };
                let mut c = ChunkData { hash: h.as_bytes().to_vec(), data: sent, encoding, ..Default::default() };
                // A signature the server cannot use (damaged, other parameters) only costs the
                // shortcut: the chunk goes as it would have.
                if let Some((base, signature)) = similar.remove(&i)
                    && let Ok(d) = delta::diff(&signature, &data, MAX_CHUNK as usize)
                    && delta::pays(d.len(), c.data.len())
                {
                    c = ChunkData { hash: c.hash, data: d, encoding: compression::ENCODING_DELTA, base, size: 0 };
                }
                c
            })
            .collect();
        let packed = if pack { compression::pack(&mut chunks) } else { Bytes::new() };
        Chunks { chunks, packed }
    })
    .await
    .map_err(|_| err(ErrorCode::Internal, "compressing chunks failed"))?;
    Ok(Message::Chunks(reply))
}

/// A chunk the user has, by the index, but whose bytes the chunk store cannot give back intact:
/// logged, and forgotten from the index so that `QueryChunks` asks for it again and the next
/// upload of that content repairs it. The reply names the chunk; the client fails only the
/// files that need it.
async fn chunk_lost(shared: &Shared, a: &Authed, h: &Hash, why: &str) -> ErrorMsg {
    error!(user = %a.user_name, user_id = a.user_id, chunk = %h, "chunk {why}; forgetting it until it is uploaded again");
    if let Err(e) = shared.meta.forget_chunks(a.user_id, &[*h]).await {
        error!(user = %a.user_name, chunk = %h, "could not forget the lost chunk: {e}");
    }
    err(
        ErrorCode::NotFound,
        format!(
            "chunk {h} was lost on the server (damaged on its disk) and is missing until a device that has \
             the file uploads it again; files that need it cannot be downloaded until then"
        ),
    )
}

async fn commit(shared: &Shared, a: &Authed, c: filesync_proto::Commit) -> Reply<Message> {
    let folder = owned_folder(shared, a, c.folder_id).await?;
    if c.changes.len() > limits::MAX_CHANGES_PER_COMMIT {
        return Err(err(ErrorCode::TooLarge, format!("at most {} changes per commit", limits::MAX_CHANGES_PER_COMMIT)));
    }
    let mut changes = Vec::with_capacity(c.changes.len());
    for ch in &c.changes {
        let w = ch.entry.as_ref().ok_or_else(|| err(ErrorCode::BadRequest, "a change without an entry"))?;
        let path = path_from_wire(&w.path).map_err(|e| err(ErrorCode::InvalidPath, e.to_string()))?;
        let meta = meta_from_wire(w).map_err(|e| err(ErrorCode::BadRequest, format!("{path}: {e}")))?;
        // A new version must be at a path every computer can hold; deleting an old one is fine.
        if meta.is_some()
            && let Err(e) = path.check_syncable()
        {
            let short: String = path.as_str().chars().take(80).collect();
            return Err(err(ErrorCode::InvalidPath, format!("{short}…: {e}")));
        }
        if let Some(m) = &meta
            && m.chunks.iter().any(|c| c.len > MAX_CHUNK)
        {
            return Err(err(ErrorCode::BadRequest, format!("{path}: a chunk exceeds {MAX_CHUNK} bytes")));
        }
        changes.push(ProposedChange { path, base_rev: ch.base_rev, meta });
    }
    check_chunk_lengths(shared, a, &changes).await?;
    let out = shared
        .meta
        .commit(a.user_id, folder.id, &a.device, &changes, shared.clock.now_unix())
        .await
        .map_err(store_err)?;
    if out.folder_seq > folder.seq {
        shared.hub.publish(a.user_id, HubEvent::FolderChanged { folder_id: folder.id, seq: out.folder_seq });
    }
    Ok(commit_result(&out))
}

/// The wire form of a store's commit (or restore) output.
pub(crate) fn commit_result(out: &filesync_store::CommitOutput) -> Message {
    let outcomes = out
        .outcomes
        .iter()
        .map(|o| match o {
            Outcome::Accepted(e) => CommitOutcome { accepted: true, current: e.as_ref().map(entry_to_wire) },
            Outcome::Conflict(e) => CommitOutcome { accepted: false, current: e.as_ref().map(entry_to_wire) },
        })
        .collect();
    Message::CommitResult(CommitResult { outcomes, folder_seq: out.folder_seq })
}

/// A chunk list must state each chunk's true length, or other devices would rebuild a wrong
/// file. Chunks the user lacks are left to the store, which refuses the commit as a whole.
async fn check_chunk_lengths(shared: &Shared, a: &Authed, changes: &[ProposedChange]) -> Reply<()> {
    let mut claimed: std::collections::HashMap<Hash, u32> = std::collections::HashMap::new();
    for c in changes.iter().filter_map(|c| c.meta.as_ref()).flat_map(|m| m.chunks.iter()) {
        if let Some(prev) = claimed.insert(c.hash, c.len)
            && prev != c.len
        {
            return Err(err(ErrorCode::BadRequest, format!("chunk {} is listed with two different lengths", c.hash)));
        }
    }
    let hashes: Vec<Hash> = claimed.keys().copied().collect();
    for batch in hashes.chunks(limits::MAX_HASHES_PER_REQUEST) {
        let sizes = shared.meta.chunk_sizes(a.user_id, batch).await.map_err(store_err)?;
        for (h, s) in batch.iter().zip(sizes) {
            if let Some(s) = s
                && s != claimed[h]
            {
                return Err(err(
                    ErrorCode::BadRequest,
                    format!("chunk {h} is {s} bytes long, but the commit says {}", claimed[h]),
                ));
            }
        }
    }
    Ok(())
}
