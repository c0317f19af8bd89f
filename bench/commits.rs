//! Commit throughput (issue 10): many simulated devices commit small new files in parallel, each
//! as a real client does (`PutChunks` of the file's chunk, then `Commit`), for a fixed time;
//! prints the sustained commits per second and the errors, for SQLite on one instance and for
//! PostgreSQL on one and on two instances (devices spread evenly; the two share the database
//! and one chunk directory).
//!
//! Instances run in this process on 127.0.0.1; devices are real TLS connections through
//! `filesync-client`, four per user, each user with one folder, each device writing its own
//! paths (no conflicts). PostgreSQL is a fresh database on the test server (`FILESYNC_TEST_PG`,
//! as the tests use).
//!
//! ```sh
//! cargo run --release -p filesync-server --example commits -- --devices 32 --seconds 10
//! ```
#![allow(clippy::disallowed_methods, reason = "a benchmark measures real time")]

#[path = "support.rs"]
mod support;

use bytes::Bytes;
use filesync_client::{Connection, Trust};
use filesync_core::Chunker;
use filesync_proto::convert::{KIND_FILE, chunks_to_wire};
use filesync_proto::{CommitChange, WireEntry};
use filesync_store::pg::testing::TempDatabase;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use support::{Error, instance};

const DEVICES_PER_USER: usize = 4;

struct Args {
    devices: usize,
    seconds: u64,
}

fn args() -> Result<Args, Error> {
    let mut a = Args { devices: 32, seconds: 10 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--devices" => a.devices = value.parse()?,
            "--seconds" => a.seconds = value.parse()?,
            _ => return Err(format!("unknown option {flag}; use --devices N --seconds S").into()),
        }
    }
    if a.devices < DEVICES_PER_USER || a.seconds == 0 {
        return Err(format!("--devices must be at least {DEVICES_PER_USER} and --seconds at least 1").into());
    }
    Ok(a)
}

/// One small file's entry and chunk.
fn small_file(path: &str, content: &[u8]) -> (WireEntry, Vec<(filesync_core::Hash, Bytes)>) {
    let mut chunks = Vec::new();
    let d = Chunker::default()
        .digest_with(content, |_, c, bytes| {
            chunks.push((c.hash, Bytes::copy_from_slice(bytes)));
            Ok(())
        })
        .expect("chunking bytes in memory");
    let w = WireEntry {
        path: path.into(),
        kind: KIND_FILE,
        size: d.size,
        hash: d.hash.as_bytes().to_vec(),
        chunks: chunks_to_wire(&d.chunks),
        ..Default::default()
    };
    (w, chunks)
}

/// Runs `devices` committing devices spread over `addrs` for `seconds`; (commits, errors).
async fn load(
    addrs: &[String],
    fingerprint: &str,
    devices: usize,
    seconds: u64,
    tag: &str,
) -> Result<(u64, u64), Error> {
    let trust = || Trust::Pinned(fingerprint.to_string());
    let mut conns = Vec::new();
    for d in 0..devices {
        let addr = &addrs[d % addrs.len()];
        let c = Connection::connect(addr, trust()).await?;
        let user = format!("{tag}-user-{}", d / DEVICES_PER_USER);
        if d % DEVICES_PER_USER == 0 {
            c.register(&user, "bench-password", &format!("device {d}")).await?;
        } else {
            c.login(&user, "bench-password", &format!("device {d}")).await?;
        }
        let folder = c.open_folder("bench", true).await?;
        conns.push((c, folder.id));
    }
    let (commits, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for (d, (c, folder)) in conns.into_iter().enumerate() {
        let (commits, errors, tag) = (commits.clone(), errors.clone(), tag.to_string());
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while Instant::now() < end {
                let (entry, chunks) = small_file(&format!("d{d}/f{i}.txt"), format!("{d} {i} {tag}\n").as_bytes());
                let ok = c.put_chunks(chunks).await.is_ok()
                    && c.commit(folder, vec![CommitChange { base_rev: 0, entry: Some(entry) }])
                        .await
                        .is_ok_and(|r| r.outcomes.iter().all(|o| o.accepted));
                if ok { &commits } else { &errors }.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    Ok((commits.load(Ordering::Relaxed), errors.load(Ordering::Relaxed)))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args = args()?;
    let tmp = tempfile::tempdir()?;
    let report = |name: &str, (commits, errors): (u64, u64)| {
        println!(
            "{name}: {:.0} commits/s sustained over {} s by {} devices ({commits} commits, {errors} errors)",
            commits as f64 / args.seconds as f64,
            args.seconds,
            args.devices
        );
    };

    let (addr, fp, stop) = instance(&tmp.path().join("sqlite"), None, args.devices).await?;
    report("SQLite, one instance", load(&[addr], &fp, args.devices, args.seconds, "sqlite").await?);
    let _ = stop.send(());

    let Some(db) = TempDatabase::create() else {
        return Err("no PostgreSQL to run against: run scripts/setup, or set FILESYNC_TEST_PG".into());
    };
    let data = tmp.path().join("pg1");
    let (addr, fp, stop) = instance(&data, Some(&db), args.devices).await?;
    report("PostgreSQL, one instance", load(&[addr], &fp, args.devices, args.seconds, "pg1").await?);
    let _ = stop.send(());

    let Some(db2) = TempDatabase::create() else { return Err("no second PostgreSQL database".into()) };
    let data = tmp.path().join("pg2");
    let (a, fp, stop_a) = instance(&data, Some(&db2), args.devices).await?;
    let (b, _, stop_b) = instance(&data, Some(&db2), args.devices).await?;
    report("PostgreSQL, two instances", load(&[a, b], &fp, args.devices, args.seconds, "pg2").await?);
    let _ = stop_a.send(());
    let _ = stop_b.send(());
    Ok(())
}
