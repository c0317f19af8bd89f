//! A network that delays and reorders, for syncs that run at the same time: each computer's
//! link to the server ([`Link`], in front of its connection) carries requests only while the
//! seeded schedule lets that computer run, and stalls it again after a seeded number of the
//! requests whose order others can see — reading the journal (`changes`) and writing it
//! (`commit`, `open_folder`). While one computer's link stalls, another's runs, so one pass
//! reads the journal, another commits over it, and the first commits on a base that is no
//! longer current, as on a real network where one request is slow and another overtakes it.
//!
//! A link may also break at a seeded ordered request ([`Cut`]): the request is lost, or
//! applied with its answer lost, and every request after it fails, as when a connection drops.
//!
//! Only one link carries requests at any moment, and a link stalls only once its requests in
//! flight are answered, so the server sees the ordered requests in an order the seed alone
//! decides: the agents' own threads (SQLite's, the scan's) cannot change it. The requests that
//! only move chunks (content-addressed, so their order changes what is sent, never what a
//! folder holds) go through whenever their link runs.

use bytes::Bytes;
use filesync_agent::engine::SyncError;
use filesync_agent::engine::server::{Announced, Change, ChangesPage, ChunkRequest, ChunkUpload, Committed, ServerApi};
use filesync_client::ClientError;
use filesync_core::Hash;
use futures::future::BoxFuture;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Whose link runs, and for how many more ordered requests.
#[derive(Debug, Default)]
struct Schedule {
    runner: Option<usize>,
    budget: usize,
    /// The runner is out of budget: its link takes nothing more, and stalls once what is in
    /// flight is answered.
    stalling: bool,
    /// The runner's requests in flight.
    in_flight: usize,
}

/// The schedule the links follow; [`Net::run`] hands it from one computer to the next.
#[derive(Clone)]
pub struct Net {
    schedule: Arc<watch::Sender<Schedule>>,
}

impl Net {
    pub fn new() -> Net {
        Net { schedule: Arc::new(watch::Sender::new(Schedule::default())) }
    }

    /// Computer `who`'s link to `server`, breaking as `cut` says.
    pub fn link(&self, who: usize, server: Arc<dyn ServerApi>, cut: Option<Cut>) -> Arc<dyn ServerApi> {
        Arc::new(Link { who, server, net: self.clone(), cut: Mutex::new(cut), broken: AtomicBool::new(false) })
    }

    /// Lets computer `who`'s link run for `budget` ordered requests; it stalls at the next
    /// one (see [`Net::until_stalled`]).
    pub fn start(&self, who: usize, budget: usize) {
        self.schedule.send_modify(|s| {
            debug_assert!(s.runner.is_none() && s.in_flight == 0);
            *s = Schedule { runner: Some(who), budget, stalling: false, in_flight: 0 };
        });
    }

    /// Waits until the running link stalls.
    pub fn until_stalled(&self) -> impl Future<Output = ()> + use<> {
        let mut rx = self.schedule.subscribe();
        async move {
            let _ = rx.wait_for(|s| s.runner.is_none()).await;
        }
    }

    /// The running computer's pass finished: nobody runs.
    pub fn stop(&self) {
        self.schedule.send_modify(|s| *s = Schedule::default());
    }

    /// Waits until computer `who` may send a request (`ordered`: one others can see the order
    /// of), and counts it in flight.
    async fn enter(&self, who: usize, ordered: bool) {
        let mut rx = self.schedule.subscribe();
        loop {
            rx.borrow_and_update();
            let mut go = false;
            self.schedule.send_if_modified(|s| {
                if s.runner != Some(who) {
                    return false;
                }
                if !ordered || s.budget > 0 && !s.stalling {
                    if s.stalling {
                        return false;
                    }
                    if ordered {
                        s.budget -= 1;
                    }
                    s.in_flight += 1;
                    go = true;
                    return true;
                }
                let was_stalling = std::mem::replace(&mut s.stalling, true);
                if s.in_flight == 0 {
                    *s = Schedule::default();
                    return true;
                }
                !was_stalling
            });
            if go {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    fn leave(&self) {
        self.schedule.send_modify(|s| s.in_flight -= 1);
    }
}

/// Where a link breaks.
#[derive(Clone, Copy, Debug)]
pub struct Cut {
    /// Ordered requests that go through before it breaks.
    pub after: usize,
    /// The request it breaks at reaches the server (its answer is lost), or not.
    pub applied: bool,
}

struct Link {
    who: usize,
    server: Arc<dyn ServerApi>,
    net: Net,
    /// `None` once broken, or when it never breaks.
    cut: Mutex<Option<Cut>>,
    broken: AtomicBool,
}

fn dropped() -> SyncError {
    SyncError::Client(ClientError::Disconnected("the simulated link broke".into()))
}

impl Link {
    /// Sends the request `request` makes (the model server answers as the call is made, so
    /// it is made only once the link lets it through).
    async fn send<T, F: Future<Output = Result<T, SyncError>>>(
        &self,
        ordered: bool,
        request: impl FnOnce() -> F,
    ) -> Result<T, SyncError> {
        if self.broken.load(Ordering::Relaxed) {
            return Err(dropped());
        }
        self.net.enter(self.who, ordered).await;
        let breaks = ordered && {
            let mut cut = self.cut.lock().unwrap();
            match cut.as_mut() {
                Some(c) if c.after == 0 => true,
                Some(c) => {
                    c.after -= 1;
                    false
                }
                None => false,
            }
        };
        let answer = if !breaks {
            request().await
        } else {
            let applied = self.cut.lock().unwrap().take().is_some_and(|c| c.applied);
            self.broken.store(true, Ordering::Relaxed);
            if applied {
                let _ = request().await;
            }
            Err(dropped())
        };
        self.net.leave();
        answer
    }
}

impl ServerApi for Link {
    fn open_folder<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<u64, SyncError>> {
        Box::pin(self.send(true, move || self.server.open_folder(name)))
    }

    fn changes(&self, folder_id: u64, since: u64) -> BoxFuture<'_, Result<ChangesPage, SyncError>> {
        Box::pin(self.send(true, move || self.server.changes(folder_id, since)))
    }

    fn missing_chunks(&self, hashes: Vec<Hash>) -> BoxFuture<'_, Result<Vec<Hash>, SyncError>> {
        Box::pin(self.send(false, move || self.server.missing_chunks(hashes)))
    }

    fn put_chunks(&self, chunks: Vec<ChunkUpload>) -> BoxFuture<'_, Result<(), SyncError>> {
        Box::pin(self.send(false, move || self.server.put_chunks(chunks)))
    }

    fn get_chunks(&self, wanted: Vec<ChunkRequest>) -> BoxFuture<'_, Result<Vec<Bytes>, SyncError>> {
        Box::pin(self.send(false, move || self.server.get_chunks(wanted)))
    }

    fn commit(&self, folder_id: u64, changes: Vec<Change>) -> BoxFuture<'_, Result<Vec<Committed>, SyncError>> {
        Box::pin(self.send(true, move || self.server.commit(folder_id, changes)))
    }

    fn announce(&self, chunks: Announced) -> BoxFuture<'_, Result<(), SyncError>> {
        Box::pin(self.send(false, move || self.server.announce(chunks)))
    }

    fn announces(&self) -> bool {
        self.server.announces()
    }
}
