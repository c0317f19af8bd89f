//! Change fan-out across server instances (issue 10): one commit, N connected devices of the
//! committing user spread evenly over two server instances that share one PostgreSQL database;
//! how long until the last device got the push. Instance A takes the commit and pushes to its
//! own devices; instance B hears of it by PostgreSQL `NOTIFY` and pushes to its devices.
//!
//! Both instances run in this process (each with its own store, connection pools, `LISTEN`
//! connection and hub), on 127.0.0.1, with their chunks in one temporary data directory; the
//! devices are real TLS connections through `filesync-client`, authenticated with tokens made
//! directly in the database (so that setting up does not cost N password hashes). The
//! database is a fresh one on the test PostgreSQL (`FILESYNC_TEST_PG`, as the tests use).
//!
//! ```sh
//! cargo run --release -p filesync-server --example fanout -- --devices 1000 --rounds 10
//! ```
//!
//! Prints, per round, the commit's round trip and the push latency (from sending the commit
//! to a device receiving `FolderChanged`) at the median and the maximum, for the devices of
//! each instance; then the medians over the rounds.
#![allow(clippy::disallowed_methods, reason = "a benchmark measures real time")]

#[path = "support.rs"]
mod support;

use filesync_client::{Connection, Push, Trust};
use filesync_proto::convert::KIND_DIR;
use filesync_proto::{CommitChange, WireEntry};
use filesync_store::MetaStore;
use filesync_store::pg::testing::TempDatabase;
use futures::StreamExt;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

use support::{Error, instance};

struct Args {
    devices: usize,
    rounds: usize,
}

fn args() -> Result<Args, Error> {
    let mut a = Args { devices: 1000, rounds: 10 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--devices" => a.devices = value.parse()?,
            "--rounds" => a.rounds = value.parse()?,
            _ => return Err(format!("unknown option {flag}; use --devices N --rounds R").into()),
        }
    }
    if a.devices < 2 || a.rounds == 0 {
        return Err("--devices must be at least 2 and --rounds at least 1".into());
    }
    Ok(a)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args = args()?;
    let Some(db) = TempDatabase::create() else {
        return Err("no PostgreSQL to run against: run scripts/setup, or set FILESYNC_TEST_PG".into());
    };
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("server");
    let (addr_a, fingerprint, stop_a) = instance(&data, Some(&db), args.devices).await?;
    let (addr_b, _, stop_b) = instance(&data, Some(&db), args.devices).await?;
    let trust = || Trust::Pinned(fingerprint.clone());

    let committer = Connection::connect(&addr_a, trust()).await?;
    committer.register("bench", "bench-password", "committer").await?;
    let folder = committer.open_folder("bench", true).await?;
    let meta = db.open().await;
    let user = meta.user_by_name("bench").await?.ok_or("the user was not created")?.id;
    let tokens: Vec<String> = (0..args.devices).map(|d| format!("bench-device-token-{d}")).collect();
    for (d, token) in tokens.iter().enumerate() {
        meta.create_device(user, &format!("device {d}"), &filesync_server::auth::token_hash(token), 0).await?;
    }

    // Connect and authenticate every device, 64 at a time; even ones on A, odd ones on B.
    let started = Instant::now();
    let (seen_tx, mut seen) = mpsc::unbounded_channel::<(usize, u64, Instant)>();
    let connected: Vec<Result<Connection, Error>> = futures::stream::iter(tokens.iter().enumerate())
        .map(|(d, token)| {
            let addr = if d % 2 == 0 { addr_a.clone() } else { addr_b.clone() };
            let (trust, seen_tx) = (trust(), seen_tx.clone());
            async move {
                let c = Connection::connect(&addr, trust).await?;
                c.auth(token).await?;
                let mut pushes = c.take_pushes().ok_or("no push channel")?;
                tokio::spawn(async move {
                    while let Some(p) = pushes.recv().await {
                        if let Push::FolderChanged { seq, .. } = p {
                            let _ = seen_tx.send((d, seq, Instant::now()));
                        }
                    }
                });
                Ok(c)
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let devices: Vec<Connection> = connected.into_iter().collect::<Result<_, _>>()?;
    println!(
        "{} devices connected and authenticated in {:.1} s ({} on each instance)",
        devices.len(),
        started.elapsed().as_secs_f64(),
        devices.len() / 2
    );

    let (mut lasts, mut lasts_b) = (Vec::new(), Vec::new());
    println!("round  commit-ms  A-p50-ms  A-max-ms  B-p50-ms  B-max-ms  last-ms");
    for round in 1..=args.rounds {
        tokio::time::sleep(Duration::from_millis(200)).await; // let the previous round settle
        while seen.try_recv().is_ok() {}
        let entry = WireEntry { path: format!("dir {round}"), kind: KIND_DIR, ..Default::default() };
        let t0 = Instant::now();
        let out = committer.commit(folder.id, vec![CommitChange { base_rev: 0, entry: Some(entry) }]).await?;
        let commit_rtt = t0.elapsed();
        let seq = out.folder_seq;
        let mut got: Vec<Option<Duration>> = vec![None; devices.len()];
        let mut missing = devices.len();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while missing > 0 {
            let Ok(Some((d, s, at))) = tokio::time::timeout_at(deadline, seen.recv()).await else {
                return Err(format!("round {round}: {missing} device(s) got no push within 60 s").into());
            };
            if s >= seq && got[d].is_none() {
                got[d] = Some(at.duration_since(t0));
                missing -= 1;
            }
        }
        let mut a: Vec<Duration> = got.iter().step_by(2).flatten().copied().collect();
        let mut b: Vec<Duration> = got.iter().skip(1).step_by(2).flatten().copied().collect();
        a.sort();
        b.sort();
        let last = a.last().max(b.last()).copied().unwrap_or_default();
        println!(
            "{round:>5}  {:>9.2}  {:>8.2}  {:>8.2}  {:>8.2}  {:>8.2}  {:>7.2}",
            ms(commit_rtt),
            ms(percentile(&a, 0.5)),
            ms(*a.last().unwrap()),
            ms(percentile(&b, 0.5)),
            ms(*b.last().unwrap()),
            ms(last)
        );
        lasts.push(last);
        lasts_b.push(*b.last().unwrap());
    }
    lasts.sort();
    lasts_b.sort();
    println!(
        "median over {} rounds: last device {:.2} ms; last device on instance B (by NOTIFY) {:.2} ms",
        args.rounds,
        ms(percentile(&lasts, 0.5)),
        ms(percentile(&lasts_b, 0.5))
    );
    drop(devices);
    drop(committer);
    let _ = stop_a.send(());
    let _ = stop_b.send(());
    meta.close().await;
    Ok(())
}
