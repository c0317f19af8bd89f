//! The push hub: fans out events (a folder changed, a device was revoked) to every
//! authenticated connection of the user they concern.

use filesync_store::UserId;
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::broadcast;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HubEvent {
    FolderChanged { folder_id: u64, seq: u64 },
    DeviceRevoked { device_id: u64 },
}

/// Per-user broadcast channels. A std mutex: it guards a map lookup, never an await.
#[derive(Default)]
pub struct Hub {
    users: Mutex<HashMap<UserId, broadcast::Sender<HubEvent>>>,
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
}
