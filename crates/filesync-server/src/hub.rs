//! The push hub: fans out events (a folder changed) to every authenticated connection of the
//! user they concern, and closes connections — of one device when it is revoked, of every
//! device of a user when the user is disabled or logs out other devices.
//!
//! Closing does not travel on the event channel: a connection whose read loop is blocked (a
//! full reply queue, a peer that does not read) would never see it. Each connection registers
//! a [`Kick`] receiver that its session selects on beside the whole read loop, so a close
//! reaches it whatever it is doing.

use filesync_store::{DeviceId, UserId};
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{broadcast, watch};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HubEvent {
    FolderChanged { folder_id: u64, seq: u64 },
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

/// Per-user broadcast channels and the registry of authenticated connections. Std mutexes:
/// they guard map lookups, never an await.
#[derive(Default)]
pub struct Hub {
    users: Mutex<HashMap<UserId, broadcast::Sender<HubEvent>>>,
    conns: Mutex<HashMap<UserId, Vec<Conn>>>,
    next_id: AtomicU64,
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
    pub fn subscribe(&self, user: UserId) -> broadcast::Receiver<HubEvent> {
        let mut users = self.users.lock().expect("hub lock");
        users.retain(|_, tx| tx.receiver_count() > 0);
        users.entry(user).or_insert_with(|| broadcast::channel(256).0).subscribe()
    }

    pub fn publish(&self, user: UserId, event: HubEvent) {
        if let Some(tx) = self.users.lock().expect("hub lock").get(&user) {
            let _ = tx.send(event);
        }
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
