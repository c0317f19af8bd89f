//! The server's bounds under hostile load, over real TLS: how much password hashing runs at
//! once, how many password guesses get checked, that every connection deadline holds even
//! against a client that does not read, how many connections one address or a crowd that
//! never authenticates may hold, and how much memory a client that does not read may take. Clients connect from several loopback addresses
//! (127.0.0.x, Linux), since the server throttles per address.
#![cfg(target_os = "linux")]

mod support;

use filesync_client::ErrorCode;
use filesync_core::Hash;
use filesync_proto::{ChunkData, Frame, GetChunks, Message, PutChunks, RevokeDevice};
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Fails a test that waits longer than this for something that should happen in seconds.
const GUARD: Duration = Duration::from_secs(60);

/// Runs every future at once (after all were set up) and collects their outputs in order.
async fn all_at_once<T: Send + 'static>(
    tasks: impl IntoIterator<Item = impl Future<Output = T> + Send + 'static>,
) -> Vec<T> {
    let handles: Vec<_> = tasks.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forty_parallel_logins_never_run_more_argon2_hashes_at_once_than_the_bound() {
    let s = start_with(|c| c.password_concurrency = 2).await;
    let ann = s.connect().await;
    ann.register("ann", "password123", "laptop").await.unwrap();
    // One client per address, so that the login throttle stays out of the way.
    let mut clients = Vec::new();
    for i in 0..40 {
        clients.push(s.raw_from(&format!("127.0.1.{}", i + 1)).await);
    }
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(clients.len()));
    let replies = all_at_once(clients.into_iter().enumerate().map(|(i, mut c)| {
        let barrier = barrier.clone();
        async move {
            barrier.wait().await;
            let password = if i % 2 == 0 { "password123" } else { "wrong password" };
            (i, c.login("ann", password).await)
        }
    }))
    .await;
    for (i, reply) in &replies {
        if i % 2 == 0 {
            assert!(matches!(reply, Message::Session(_)), "login {i}: {reply:?}");
        } else {
            assert_eq!(reply_code(reply), Some(ErrorCode::BadCredentials), "login {i}");
        }
    }
    assert_eq!(s.passwords.verifications(), 40, "every login was checked");
    let peak = s.passwords.peak_concurrency();
    assert!((1..=2).contains(&peak), "{peak} Argon2 runs overlapped; the bound is 2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forty_concurrent_wrong_passwords_reach_the_check_three_times_and_do_not_lock_the_user_out() {
    let s = start_server(true).await;
    s.connect().await.register("ann", "password123", "laptop").await.unwrap();
    let mut attackers = Vec::new();
    for _ in 0..40 {
        attackers.push(s.raw_from("127.0.0.1").await);
    }
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(attackers.len()));
    let replies = all_at_once(attackers.into_iter().map(|mut c| {
        let barrier = barrier.clone();
        async move {
            barrier.wait().await;
            c.login("ann", "guess").await
        }
    }))
    .await;
    let codes: Vec<_> = replies.iter().map(reply_code).collect();
    let wrong = codes.iter().filter(|c| **c == Some(ErrorCode::BadCredentials)).count();
    let limited = codes.iter().filter(|c| **c == Some(ErrorCode::RateLimited)).count();
    assert_eq!((wrong, limited), (3, 37), "{codes:?}");
    assert_eq!(s.passwords.verifications(), 3, "refused attempts must not reach the password check");
    // The attacker's address is slowed down, for this user and any other.
    let mut again = s.raw_from("127.0.0.1").await;
    assert_eq!(reply_code(&again.login("ann", "password123").await), Some(ErrorCode::RateLimited));
    // The real user, elsewhere, logs in at once.
    let mut real = s.raw_from("127.0.0.2").await;
    let reply = real.login("ann", "password123").await;
    assert!(matches!(reply, Message::Session(_)), "{reply:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn registrations_are_throttled_per_address_before_hashing() {
    let s = start_server(true).await;
    let mut clients = Vec::new();
    for _ in 0..25 {
        clients.push(s.raw_from("127.0.2.1").await);
    }
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(clients.len()));
    let replies = all_at_once(clients.into_iter().enumerate().map(|(i, mut c)| {
        let barrier = barrier.clone();
        async move {
            barrier.wait().await;
            c.register(&format!("user{i}"), "password123").await
        }
    }))
    .await;
    let created = replies.iter().filter(|r| matches!(r, Message::Session(_))).count();
    let limited = replies.iter().filter(|r| reply_code(r) == Some(ErrorCode::RateLimited)).count();
    assert_eq!((created, limited), (10, 15));
    assert_eq!(s.passwords.hashes(), 10, "refused registrations must not be hashed");
    let mut elsewhere = s.raw_from("127.0.2.2").await;
    assert!(matches!(elsewhere.register("someone", "password123").await, Message::Session(_)));
}

/// Writes until the server has closed the connection (a write fails); panics after `GUARD`.
/// `next` gives the bytes of each write, sent `pause` apart; nothing is ever read.
async fn write_until_closed(
    mut stream: impl tokio::io::AsyncWrite + Unpin,
    pause: Duration,
    mut next: impl FnMut() -> Vec<u8>,
) {
    let closed = tokio::time::timeout(GUARD, async {
        loop {
            tokio::time::sleep(pause).await;
            let bytes = next();
            if stream.write_all(&bytes).await.is_err() || stream.flush().await.is_err() {
                return;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server kept the connection open for {GUARD:?}");
}

fn pings(n: u32) -> Vec<u8> {
    let mut out = Vec::new();
    for id in 1..=n {
        out.extend_from_slice(&Frame::new(id, Message::Ping(Default::default())).to_bytes().unwrap());
    }
    out
}

#[tokio::test]
async fn pings_sent_without_reading_the_answers_do_not_outlive_the_handshake_deadline() {
    let s = start_with(|c| c.handshake_timeout = Duration::from_secs(3)).await;
    let stream = s.tls_from("127.0.0.1").await;
    let batch = pings(1000);
    write_until_closed(stream, Duration::ZERO, || batch.clone()).await;
}

/// A client that has logged in, talking raw frames.
async fn authenticated(s: &TestServer, user: &str) -> RawClient {
    let mut c = s.raw_from("127.0.0.1").await;
    assert!(matches!(c.register(user, "password123").await, Message::Session(_)));
    c
}

#[tokio::test]
async fn an_authenticated_client_that_never_reads_is_closed() {
    let s = start_with(|c| c.idle_timeout = Duration::from_secs(2)).await;
    let c = authenticated(&s, "ann").await;
    let batch = pings(1000);
    write_until_closed(c.stream, Duration::ZERO, || batch.clone()).await;
}

#[tokio::test]
async fn a_frame_sent_a_byte_at_a_time_does_not_keep_an_authenticated_connection_alive() {
    let s = start_with(|c| c.idle_timeout = Duration::from_secs(2)).await;
    let c = authenticated(&s, "ann").await;
    // The start of a 1000-byte frame, then one byte every 300 ms: each read is well within
    // the idle timeout, but no request ever completes.
    let mut bytes = vec![0u8, 0, 3, 232].into_iter();
    write_until_closed(c.stream, Duration::from_millis(300), || vec![bytes.next().unwrap_or(0)]).await;
}

/// Whether the server has closed `tcp` (an end of stream or a reset), looking for `wait`.
async fn closed_by_server(tcp: &mut tokio::net::TcpStream, wait: Duration) -> bool {
    let mut byte = [0u8; 1];
    matches!(tokio::time::timeout(wait, tcp.read(&mut byte)).await, Ok(Ok(0)) | Ok(Err(_)))
}

/// Waits until `f` holds, panicking after `GUARD`.
async fn eventually(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + GUARD;
    while !f().await {
        assert!(tokio::time::Instant::now() < deadline, "not within {GUARD:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_holding_hundreds_of_idle_connections_takes_only_its_share_and_others_are_served() {
    let s = start_with(|c| c.limits.max_connections_per_address = 32).await;
    let ann = s.connect().await;
    ann.register("ann", "password123", "laptop").await.unwrap();
    let mut flood = Vec::new();
    for _ in 0..600 {
        flood.push(s.tcp_from("127.0.3.1").await);
    }
    // All but the address's share are closed as soon as they are accepted.
    let mut open = Vec::new();
    for mut tcp in flood {
        if !closed_by_server(&mut tcp, Duration::from_millis(20)).await {
            open.push(tcp);
        }
    }
    eventually("the flood's connections beyond its share are closed", async || {
        let mut still = Vec::new();
        for mut tcp in open.drain(..) {
            if !closed_by_server(&mut tcp, Duration::from_millis(5)).await {
                still.push(tcp);
            }
        }
        open = still;
        open.len() <= 32
    })
    .await;
    assert_eq!(open.len(), 32, "the address keeps its share");
    // A device already connected, and a new one elsewhere, are served all the same.
    ann.ping().await.unwrap();
    let bob = s.connect().await;
    bob.register("bob", "password123", "desktop").await.unwrap();
    assert_eq!(bob.list_devices().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_that_never_authenticates_cannot_take_the_slots_of_connected_devices() {
    let s = start_with(|c| {
        c.limits.max_unauthenticated = 8;
        c.handshake_timeout = Duration::from_secs(2);
    })
    .await;
    let ann = s.connect().await;
    ann.register("ann", "password123", "laptop").await.unwrap();
    // Eight addresses, one silent connection each: every unauthenticated slot is taken.
    let mut crowd = Vec::new();
    for i in 1..=8 {
        let mut tcp = s.tcp_from(&format!("127.0.4.{i}")).await;
        assert!(!closed_by_server(&mut tcp, Duration::from_millis(100)).await);
        crowd.push(tcp);
    }
    let mut ninth = s.tcp_from("127.0.4.9").await;
    assert!(closed_by_server(&mut ninth, Duration::from_secs(5)).await, "the ninth must not get a slot");
    // The device that is in keeps working; its slot is not the crowd's.
    ann.ping().await.unwrap();
    ann.list_devices().await.unwrap();
    // The crowd is gone at its handshake deadline, and newcomers get in again.
    for mut tcp in crowd {
        assert!(closed_by_server(&mut tcp, GUARD).await);
    }
    let bob = s.connect().await;
    bob.register("bob", "password123", "desktop").await.unwrap();
}

/// A client of `s` from `ip` with one stored chunk of `size` random bytes.
async fn with_stored_chunk(s: &TestServer, ip: &str, user: &str, size: usize) -> (RawClient, Hash) {
    let mut c = s.raw_from(ip).await;
    assert!(matches!(c.register(user, "password123").await, Message::Session(_)));
    let data: Vec<u8> = (0..size).map(|i| (i as u32).wrapping_mul(2654435761).to_le_bytes()[3]).collect();
    let hash = Hash::of(&data);
    let put = PutChunks { chunks: vec![ChunkData::plain(&hash, data.into())], packed: Default::default() };
    assert!(matches!(c.request(Message::PutChunks(put)).await, Message::Ok(_)));
    (c, hash)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_asks_for_gigabytes_and_never_reads_holds_no_more_than_its_address_budget() {
    let s = start_with(|c| {
        c.limits.memory_per_address = 20 << 20;
        c.idle_timeout = Duration::from_secs(3);
    })
    .await;
    let (mut flooder, hash) = with_stored_chunk(&s, "127.0.5.1", "ann", 4 << 20).await;
    let get = || Message::GetChunks(GetChunks { hashes: vec![hash.as_bytes().to_vec(); 2], similar: vec![] });
    // 300 requests for 8 MiB each: 2.4 GB of replies, none of them read.
    for _ in 0..300 {
        flooder.send(get()).await;
    }
    // Meanwhile another address downloads the same amount, and is served.
    let (mut other, other_hash) = with_stored_chunk(&s, "127.0.5.2", "bob", 4 << 20).await;
    for _ in 0..3 {
        let reply = other
            .request(Message::GetChunks(GetChunks { hashes: vec![other_hash.as_bytes().to_vec(); 2], similar: vec![] }))
            .await;
        assert!(matches!(reply, Message::Chunks(_)), "{}", reply.name());
    }
    // The flooder is cut off once it has taken nothing for the idle timeout.
    write_until_closed(flooder.stream, Duration::from_millis(200), || pings(1)).await;
    // The flooder's address may hold 20 MiB; bob asks for one 8 MiB reply at a time, but his
    // next request can be reserved just before the writer gives the last one back.
    let peak = s.memory.peak();
    assert!(peak <= (20 << 20) + (17 << 20), "held {peak} bytes at once; one address may hold 20 MiB, bob 2 × 8 MiB");
    eventually("everything is given back once the connection has ended", async || s.memory.in_use() == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_device_that_stops_reading_is_closed_at_once() {
    let s = start_with(|c| c.idle_timeout = Duration::from_secs(600)).await;
    let mut laptop = s.raw_from("127.0.6.1").await;
    let Message::Session(session) = laptop.register("ann", "password123").await else { panic!("register") };
    // The laptop sends requests and reads nothing, until the server stops taking them: its
    // reader now waits for room in the reply queue.
    let batch = pings(2000);
    loop {
        let sent = tokio::time::timeout(Duration::from_secs(1), laptop.stream.write_all(&batch)).await;
        if sent.is_err() {
            break;
        }
    }
    let mut phone = s.raw_from("127.0.6.2").await;
    assert!(matches!(phone.login("ann", "password123").await, Message::Session(_)));
    let revoke = Message::RevokeDevice(RevokeDevice { device_id: session.device_id, remove: false });
    assert!(matches!(phone.request(revoke).await, Message::Ok(_)));
    // Closed now, not after the ten-minute idle timeout.
    write_until_closed(laptop.stream, Duration::from_millis(100), || pings(1)).await;
}
