//! What the server lets in and how much it holds: connection slots per address, for
//! connections that have not authenticated yet, and for authenticated devices; and the bytes of
//! requests and replies kept in memory, per address and in all.
//!
//! One address (an IPv4 address, or the /64 prefix of an IPv6 address, the block one customer
//! usually gets) can hold only its share of each, so one client or one address cannot take the
//! server from everyone: its connections beyond the limit are closed as soon as they are
//! accepted, and its unread replies stop its own requests, not other people's.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The server's connection and memory limits (`ServerConfig::limits`).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Authenticated connections, server-wide.
    pub max_connections: usize,
    /// Connections of any kind from one address.
    pub max_connections_per_address: usize,
    /// Connections between accept and authentication (TLS handshake, `Hello`, login),
    /// server-wide. A crowd that never authenticates waits at most the handshake deadline and
    /// cannot take the slots of authenticated devices.
    pub max_unauthenticated: usize,
    /// Bytes of requests being received or handled and of replies waiting to be sent,
    /// server-wide.
    pub memory: usize,
    /// The same, for all connections from one address.
    pub memory_per_address: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 4096,
            max_connections_per_address: 128,
            max_unauthenticated: 512,
            memory: 512 << 20,
            memory_per_address: 64 << 20,
        }
    }
}

/// Raises this process's open-file limit to what `limits` needs (every connection is a file
/// descriptor, and chunks and the database need some), as far as the hard limit allows; says
/// in the log when that is not enough.
pub(crate) fn raise_open_file_limit(limits: &Limits) {
    #[cfg(unix)]
    {
        let wanted = (limits.max_connections + limits.max_unauthenticated + 1024) as libc::rlim_t;
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit and setrlimit only read and write the struct we pass.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 || lim.rlim_cur >= wanted {
                return;
            }
            let old = lim.rlim_cur;
            lim.rlim_cur = wanted.min(lim.rlim_max);
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                lim.rlim_cur = old;
            }
        }
        if lim.rlim_cur < wanted {
            tracing::warn!(
                open_files = lim.rlim_cur,
                wanted,
                "the open-file limit is below what the connection limits need; raise it (LimitNOFILE= in a systemd unit) or lower --max-connections"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = limits;
}

/// Why a connection was not let in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Its address already holds `max_connections_per_address`.
    Address,
    /// `max_unauthenticated` connections are still authenticating.
    Unauthenticated,
    /// `max_connections` devices are connected.
    Full,
}

/// The admission state shared by every connection.
pub(crate) struct Admission {
    limits: Limits,
    /// A std mutex: it guards a counter update, never an await.
    addresses: Mutex<HashMap<AddressKey, Address>>,
    unauthenticated: Arc<Semaphore>,
    authenticated: Arc<Semaphore>,
    memory: Budget,
}

struct Address {
    connections: usize,
    memory: Budget,
}

/// What limits are counted by: an IPv4 address, or the /64 network of an IPv6 one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct AddressKey(IpAddr);

impl AddressKey {
    fn of(ip: IpAddr) -> AddressKey {
        match ip {
            IpAddr::V4(_) => AddressKey(ip),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddressKey(IpAddr::V4(v4)),
                None => {
                    let mut octets = v6.octets();
                    octets[8..].fill(0);
                    AddressKey(IpAddr::V6(octets.into()))
                }
            },
        }
    }
}

impl Admission {
    /// The server-wide memory budget, to watch.
    pub(crate) fn gauge(&self) -> MemoryGauge {
        MemoryGauge(self.memory.clone())
    }

    pub(crate) fn new(limits: Limits) -> Arc<Admission> {
        Arc::new(Admission {
            unauthenticated: Arc::new(Semaphore::new(limits.max_unauthenticated.max(1))),
            authenticated: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            memory: Budget::new(limits.memory),
            addresses: Mutex::new(HashMap::new()),
            limits,
        })
    }

    /// Lets a just-accepted connection from `ip` in as unauthenticated, or says why not.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Ticket, Refused> {
        let key = AddressKey::of(ip);
        let unauthenticated = self.unauthenticated.clone().try_acquire_owned().map_err(|_| Refused::Unauthenticated)?;
        let mut addresses = self.addresses.lock().expect("admission lock");
        let per_address_memory = self.limits.memory_per_address;
        let entry =
            addresses.entry(key).or_insert_with(|| Address { connections: 0, memory: Budget::new(per_address_memory) });
        if entry.connections >= self.limits.max_connections_per_address {
            return Err(Refused::Address);
        }
        entry.connections += 1;
        let memory = Memory { address: entry.memory.clone(), total: self.memory.clone() };
        Ok(Ticket { admission: self.clone(), key, memory, unauthenticated: Some(unauthenticated), authenticated: None })
    }
}

/// A connection's place: its count against its address, and its slot (unauthenticated, then
/// authenticated). Dropping it gives everything back.
pub(crate) struct Ticket {
    admission: Arc<Admission>,
    key: AddressKey,
    memory: Memory,
    unauthenticated: Option<OwnedSemaphorePermit>,
    authenticated: Option<OwnedSemaphorePermit>,
}

impl Ticket {
    /// Moves the connection from the unauthenticated slots to the authenticated ones.
    pub(crate) fn authenticated(&mut self) -> Result<(), Refused> {
        let permit = self.admission.authenticated.clone().try_acquire_owned().map_err(|_| Refused::Full)?;
        self.authenticated = Some(permit);
        self.unauthenticated = None;
        Ok(())
    }

    /// The memory budgets this connection draws on.
    pub(crate) fn memory(&self) -> &Memory {
        &self.memory
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut addresses = self.admission.addresses.lock().expect("admission lock");
        if let Some(entry) = addresses.get_mut(&self.key) {
            entry.connections -= 1;
            if entry.connections == 0 {
                addresses.remove(&self.key);
            }
        }
    }
}

/// A number of bytes that may be held at once, taken by `reserve` and given back when the
/// `Reservation` is dropped.
#[derive(Clone)]
pub(crate) struct Budget {
    bytes: Arc<Semaphore>,
    capacity: usize,
    /// The most ever held at once.
    peak: Arc<AtomicUsize>,
}

impl Budget {
    pub(crate) fn new(capacity: usize) -> Budget {
        let capacity = capacity.clamp(1, Semaphore::MAX_PERMITS);
        Budget { bytes: Arc::new(Semaphore::new(capacity)), capacity, peak: Arc::default() }
    }

    /// Waits until `n` bytes (at most the whole budget) are free and takes them.
    pub(crate) async fn reserve(&self, n: usize) -> Reservation {
        let n = n.min(self.capacity).min(u32::MAX as usize) as u32;
        self.bytes.acquire_many(n).await.expect("budget semaphores are never closed").forget();
        self.peak.fetch_max(self.in_use(), Ordering::Relaxed);
        Reservation { bytes: self.bytes.clone(), n }
    }

    /// Bytes free now.
    #[cfg(test)]
    fn available(&self) -> usize {
        self.bytes.available_permits()
    }

    fn in_use(&self) -> usize {
        self.capacity.saturating_sub(self.bytes.available_permits())
    }
}

/// How much of the server's memory budget for requests and replies is held (`Server::memory`).
#[derive(Clone)]
pub struct MemoryGauge(Budget);

impl MemoryGauge {
    /// Bytes held now.
    pub fn in_use(&self) -> usize {
        self.0.in_use()
    }

    /// The most bytes ever held at once.
    pub fn peak(&self) -> usize {
        self.0.peak.load(Ordering::Relaxed)
    }

    /// The budget.
    pub fn capacity(&self) -> usize {
        self.0.capacity
    }
}

/// Bytes taken from a `Budget`.
pub(crate) struct Reservation {
    bytes: Arc<Semaphore>,
    n: u32,
}

impl Reservation {
    /// Gives back what is held beyond `n` bytes.
    fn shrink_to(&mut self, n: usize) {
        if (n as u64) < self.n as u64 {
            self.bytes.add_permits((self.n - n as u32) as usize);
            self.n = n as u32;
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.bytes.add_permits(self.n as usize);
    }
}

/// The two budgets a connection's bytes count against: its address's and the server's.
#[derive(Clone)]
pub(crate) struct Memory {
    address: Budget,
    total: Budget,
}

impl Memory {
    /// Takes `n` bytes from the address's budget, then from the server's: a connection that
    /// does not read what it asked for waits on its own address first.
    pub(crate) async fn reserve(&self, n: usize) -> Held {
        let address = self.address.reserve(n).await;
        let total = self.total.reserve(n).await;
        Held { address: Some(address), total: Some(total) }
    }
}

/// Bytes held against both budgets of a connection; `Held::default()` holds none.
#[derive(Default)]
pub(crate) struct Held {
    address: Option<Reservation>,
    total: Option<Reservation>,
}

impl Held {
    /// Adds what `other` holds (taken from the same budgets) to this.
    pub(crate) fn absorb(&mut self, other: Held) {
        for (mine, theirs) in [(&mut self.address, other.address), (&mut self.total, other.total)] {
            match (mine.as_mut(), theirs) {
                (Some(m), Some(mut t)) => {
                    m.n += std::mem::take(&mut t.n);
                }
                (None, t) => *mine = t,
                (Some(_), None) => {}
            }
        }
    }

    /// Keeps `n` bytes (or what is held, if less) and gives back the rest.
    pub(crate) fn shrink_to(&mut self, n: usize) {
        for r in [&mut self.address, &mut self.total].into_iter().flatten() {
            r.shrink_to(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_address: usize, unauthenticated: usize, authenticated: usize) -> Limits {
        Limits {
            max_connections: authenticated,
            max_connections_per_address: per_address,
            max_unauthenticated: unauthenticated,
            ..Limits::default()
        }
    }

    #[test]
    fn one_address_gets_only_its_share_of_connections() {
        let a = Admission::new(limits(2, 10, 10));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let first = a.admit(ip).unwrap();
        let _second = a.admit(ip).unwrap();
        assert_eq!(a.admit(ip).err(), Some(Refused::Address));
        assert!(a.admit("192.0.2.2".parse().unwrap()).is_ok(), "other addresses are not affected");
        drop(first);
        assert!(a.admit(ip).is_ok(), "a closed connection gives its place back");
    }

    #[test]
    fn ipv6_addresses_count_by_their_64_bit_prefix() {
        let a = Admission::new(limits(1, 10, 10));
        let _t = a.admit("2001:db8:1:2::1".parse().unwrap()).unwrap();
        assert_eq!(a.admit("2001:db8:1:2:ffff::9".parse().unwrap()).err(), Some(Refused::Address));
        assert!(a.admit("2001:db8:1:3::1".parse().unwrap()).is_ok());
        let _v4 = a.admit("192.0.2.7".parse().unwrap()).unwrap();
        assert_eq!(a.admit("::ffff:192.0.2.7".parse().unwrap()).err(), Some(Refused::Address));
    }

    #[test]
    fn authenticating_frees_an_unauthenticated_slot_and_takes_a_device_slot() {
        let a = Admission::new(limits(10, 1, 1));
        let mut first = a.admit("192.0.2.1".parse().unwrap()).unwrap();
        assert_eq!(a.admit("192.0.2.2".parse().unwrap()).err(), Some(Refused::Unauthenticated));
        first.authenticated().unwrap();
        let mut second = a.admit("192.0.2.2".parse().unwrap()).unwrap();
        assert_eq!(second.authenticated().err(), Some(Refused::Full));
        drop(first);
        assert!(second.authenticated().is_ok());
    }

    #[tokio::test]
    async fn memory_is_held_until_released_and_shrinks_to_what_is_used() {
        let m = Memory { address: Budget::new(100), total: Budget::new(150) };
        let mut held = m.reserve(80).await;
        assert_eq!((m.address.available(), m.total.available()), (20, 70));
        held.shrink_to(30);
        assert_eq!((m.address.available(), m.total.available()), (70, 120));
        let waiting = tokio::spawn({
            let m = m.clone();
            async move { m.reserve(100).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "the address's budget is spent");
        drop(held);
        let all = waiting.await.unwrap();
        assert_eq!(m.address.available(), 0);
        drop(all);
        assert_eq!((m.address.available(), m.total.available()), (100, 150));
        // A request larger than the whole budget takes the whole budget, not forever.
        let big = tokio::time::timeout(std::time::Duration::from_secs(5), m.reserve(1000)).await.unwrap();
        assert_eq!(m.address.available(), 0);
        drop(big);
    }
}
