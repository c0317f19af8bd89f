//! The push hub: fans out events (a folder changed) to every authenticated connection of the
//! user they concern, and closes connections — of one device when it is revoked, of every
//! device of a user when the user is disabled or logs out other devices.
//!
//! Where changes come from is the [`ChangeHub`] trait: [`LocalChanges`], in process, when this
//! server is the store's only writer (SQLite); [`SharedChanges`] when several instances share
//! the store (PostgreSQL): it also follows the store's commit notices
//! ([`filesync_store::MetaStore::commit_notices`], one `NOTIFY` per commit transaction), so a
//! commit accepted by another instance reaches this one's devices. Either way a push is a
//! hint: a device's cursor is the truth, and a lost notice delays a change only until the
//! device's next pull. A folder's event is passed on only if its seq is above the last one
//! passed on, so this instance's own commits, echoed back by the store, are pushed once.
//!
//! Closing does not travel on the event channel: a connection whose read loop is blocked (a
//! full reply queue, a peer that does not read) would never see it. Each connection registers
//! a [`Kick`] receiver that its session selects on beside the whole read loop, so a close
//! reaches it whatever it is doing.

use filesync_store::{DeviceId, FolderId, Notice, UserId};
use futures::stream::{BoxStream, StreamExt};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, watch};

#[derive(Clone, Debug, PartialEq)]
pub enum HubEvent {
    FolderChanged {
        folder_id: u64,
        seq: u64,
    },
    /// Changes may have been missed (the store's notices were interrupted): every folder may
    /// have changed.
    EverythingChanged,
    /// Chunks of a file that one of the user's devices is uploading are on the server now
    /// (`device_id` set). Passed on by this instance only: devices connected to another one
    /// download the file once it is committed, as they would anyway.
    ChunksAnnounced(Arc<filesync_proto::UploadProgress>),
}

/// Why a connection is being closed from outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kick {
    /// The connection's device was revoked (or logged out).
    DeviceRevoked,
    /// The operator disabled the user.
    UserDisabled,
}

/// One registered connection.
struct Conn {
    id: u64,
    device: DeviceId,
    kick: watch::Sender<Option<Kick>>,
}

/// Where a server's connections learn that a folder of their user changed.
pub trait ChangeHub: Send + Sync + 'static {
    /// Events for `user`'s folders from now on.
    fn subscribe(&self, user: UserId) -> broadcast::Receiver<HubEvent>;
    /// A commit of this server: tells the user's connections.
    fn publish(&self, user: UserId, event: HubEvent);
}

/// One user's channel, and the highest seq passed on per folder.
struct UserChannel {
    tx: broadcast::Sender<HubEvent>,
    latest: HashMap<FolderId, u64>,
}

/// In-process fan-out: per-user broadcast channels. A std mutex: it guards map lookups, never
/// an await.
#[derive(Default)]
pub struct LocalChanges {
    users: Mutex<HashMap<UserId, UserChannel>>,
}

impl ChangeHub for LocalChanges {
    fn subscribe(&self, user: UserId) -> broadcast::Receiver<HubEvent> {
        let mut users = self.users.lock().expect("hub lock");
        users.retain(|_, c| c.tx.receiver_count() > 0);
        users
            .entry(user)
            .or_insert_with(|| UserChannel { tx: broadcast::channel(256).0, latest: HashMap::new() })
            .tx
            .subscribe()
    }

    fn publish(&self, user: UserId, event: HubEvent) {
        let mut users = self.users.lock().expect("hub lock");
        let Some(channel) = users.get_mut(&user) else { return };
        let HubEvent::FolderChanged { folder_id, seq } = event else {
            let _ = channel.tx.send(event);
            return;
        };
        let latest = channel.latest.entry(folder_id).or_default();
        // An older seq says nothing a device pulling up to the newer one would miss.
        if seq > *latest {
            *latest = seq;
            let _ = channel.tx.send(event);
        }
    }
}

impl LocalChanges {
    /// `event` to every connection of every user.
    fn tell_everyone(&self, event: HubEvent) {
        for channel in self.users.lock().expect("hub lock").values() {
            let _ = channel.tx.send(event.clone());
        }
    }
}

/// Fan-out for a store shared by several instances: [`LocalChanges`], fed also by the store's
/// notices of every instance's commits. Stops following them when dropped.
pub struct SharedChanges {
    local: Arc<LocalChanges>,
    follower: tokio::task::JoinHandle<()>,
}

impl SharedChanges {
    /// Follows `notices` on a task of the current runtime.
    pub fn follow(notices: BoxStream<'static, Notice>) -> SharedChanges {
        let local = Arc::new(LocalChanges::default());
        let target = local.clone();
        let follower = tokio::spawn(async move {
            let mut notices = notices;
            while let Some(n) = notices.next().await {
                match n {
                    Notice::Commit(n) => {
                        target.publish(n.user, HubEvent::FolderChanged { folder_id: n.folder, seq: n.seq })
                    }
                    // Every connected device pulls: what was committed meanwhile waits no longer.
                    Notice::MayHaveMissed => target.tell_everyone(HubEvent::EverythingChanged),
                }
            }
        });
        SharedChanges { local, follower }
    }
}

impl Drop for SharedChanges {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

impl ChangeHub for SharedChanges {
    fn subscribe(&self, user: UserId) -> broadcast::Receiver<HubEvent> {
        self.local.subscribe(user)
    }

    /// At once to this instance's connections; the other instances hear of the commit from
    /// the store, which notified them in the commit's transaction.
    fn publish(&self, user: UserId, event: HubEvent) {
        self.local.publish(user, event);
    }
}

/// The change fan-out and the registry of authenticated connections. A std mutex: it guards
/// map lookups, never an await.
pub struct Hub {
    changes: Box<dyn ChangeHub>,
    conns: Mutex<HashMap<UserId, Vec<Conn>>>,
    next_id: AtomicU64,
}

impl Default for Hub {
    /// A hub for a single instance: changes in process.
    fn default() -> Hub {
        Hub::new(Box::new(LocalChanges::default()))
    }
}

/// A connection's place in the registry; dropping it unregisters the connection.
pub struct Registration<'a> {
    hub: &'a Hub,
    user: UserId,
    id: u64,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let mut conns = self.hub.conns.lock().expect("hub lock");
        if let Some(list) = conns.get_mut(&self.user) {
            list.retain(|c| c.id != self.id);
            if list.is_empty() {
                conns.remove(&self.user);
            }
        }
    }
}

impl Hub {
    pub fn new(changes: Box<dyn ChangeHub>) -> Hub {
        Hub { changes, conns: Mutex::default(), next_id: AtomicU64::new(0) }
    }

    pub fn subscribe(&self, user: UserId) -> broadcast::Receiver<HubEvent> {
        self.changes.subscribe(user)
    }

    pub fn publish(&self, user: UserId, event: HubEvent) {
        self.changes.publish(user, event);
    }

    /// Registers an authenticated connection of `device`; `kick` is told when it must close.
    pub fn register(&self, user: UserId, device: DeviceId, kick: watch::Sender<Option<Kick>>) -> Registration<'_> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.conns.lock().expect("hub lock").entry(user).or_default().push(Conn { id, device, kick });
        Registration { hub: self, user, id }
    }

    /// Closes every connection of one device of `user`.
    pub fn close_device(&self, user: UserId, device: DeviceId) {
        self.close_where(user, |d| d == device, Kick::DeviceRevoked);
    }

    /// Closes every connection of `user`'s devices in `devices`.
    pub fn close_devices(&self, user: UserId, devices: &[DeviceId]) {
        self.close_where(user, |d| devices.contains(&d), Kick::DeviceRevoked);
    }

    /// Closes every connection of `user`.
    pub fn close_user(&self, user: UserId) {
        self.close_where(user, |_| true, Kick::UserDisabled);
    }

    fn close_where(&self, user: UserId, which: impl Fn(DeviceId) -> bool, why: Kick) {
        if let Some(list) = self.conns.lock().expect("hub lock").get(&user) {
            for c in list.iter().filter(|c| which(c.device)) {
                c.kick.send_if_modified(|k| {
                    let first = k.is_none();
                    if first {
                        *k = Some(why);
                    }
                    first
                });
            }
        }
    }

    /// Every connected (user, device) pair, each once: what a check after an admin change
    /// looks at.
    pub fn connected(&self) -> Vec<(UserId, DeviceId)> {
        let conns = self.conns.lock().expect("hub lock");
        let mut out: Vec<(UserId, DeviceId)> =
            conns.iter().flat_map(|(u, list)| list.iter().map(move |c| (*u, c.device))).collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changed(folder_id: u64, seq: u64) -> HubEvent {
        HubEvent::FolderChanged { folder_id, seq }
    }

    #[test]
    fn a_folder_event_is_passed_on_once_per_new_seq_and_only_to_its_user() {
        let hub = Hub::default();
        let mut ann = hub.subscribe(1);
        let mut bob = hub.subscribe(2);
        hub.publish(1, changed(10, 5));
        hub.publish(1, changed(10, 5)); // the store's echo of the same commit
        hub.publish(1, changed(10, 4)); // an older commit, published late
        hub.publish(1, changed(11, 1));
        hub.publish(1, changed(10, 6));
        let got: Vec<HubEvent> = std::iter::from_fn(|| ann.try_recv().ok()).collect();
        assert_eq!(got, vec![changed(10, 5), changed(11, 1), changed(10, 6)]);
        assert!(bob.try_recv().is_err(), "other users hear nothing");
    }

    use filesync_store::CommitNotice;

    #[tokio::test]
    async fn shared_changes_pass_on_the_stores_notices_and_dedup_the_echo_of_their_own() {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let notices = tokio_stream_from(rx);
        let hub = Hub::new(Box::new(SharedChanges::follow(notices)));
        let mut ann = hub.subscribe(1);
        hub.publish(1, changed(10, 1)); // committed here
        let commit = |user, folder, seq| Notice::Commit(CommitNotice { user, folder, seq });
        tx.send(commit(1, 10, 1)).unwrap(); // its echo
        tx.send(commit(1, 10, 2)).unwrap(); // another instance's
        tx.send(commit(2, 20, 1)).unwrap(); // another user's
        assert_eq!(ann.recv().await.unwrap(), changed(10, 1));
        assert_eq!(ann.recv().await.unwrap(), changed(10, 2));
        drop(tx);
        tokio::task::yield_now().await;
        assert!(ann.try_recv().is_err(), "the echo was not pushed again: {:?}", ann.try_recv());
    }

    /// When the store's notices were interrupted, every connection of every user is told that
    /// anything may have changed, so each device pulls at once instead of waiting for a push
    /// that was lost.
    #[tokio::test]
    async fn interrupted_notices_make_every_device_pull() {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let hub = Hub::new(Box::new(SharedChanges::follow(tokio_stream_from(rx))));
        let (mut ann, mut bob) = (hub.subscribe(1), hub.subscribe(2));
        tx.send(Notice::MayHaveMissed).unwrap();
        assert_eq!(ann.recv().await.unwrap(), HubEvent::EverythingChanged);
        assert_eq!(bob.recv().await.unwrap(), HubEvent::EverythingChanged);
    }

    fn tokio_stream_from<T: Send + 'static>(mut rx: tokio::sync::mpsc::UnboundedReceiver<T>) -> BoxStream<'static, T> {
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
    }

    #[test]
    fn closing_a_device_kicks_only_its_connections_and_a_dropped_registration_is_forgotten() {
        let hub = Hub::default();
        let (a_tx, a_rx) = watch::channel(None);
        let (b_tx, b_rx) = watch::channel(None);
        let (c_tx, c_rx) = watch::channel(None);
        let _a = hub.register(1, 10, a_tx);
        let _b = hub.register(1, 11, b_tx);
        let c = hub.register(2, 20, c_tx);
        hub.close_device(1, 10);
        assert_eq!((*a_rx.borrow(), *b_rx.borrow()), (Some(Kick::DeviceRevoked), None));
        hub.close_user(1);
        assert_eq!(*a_rx.borrow(), Some(Kick::DeviceRevoked), "the first reason stays");
        assert_eq!(*b_rx.borrow(), Some(Kick::UserDisabled));
        assert_eq!(*c_rx.borrow(), None, "other users are untouched");
        assert_eq!(hub.connected(), vec![(1, 10), (1, 11), (2, 20)]);
        drop(c);
        assert_eq!(hub.connected(), vec![(1, 10), (1, 11)]);
    }
}
