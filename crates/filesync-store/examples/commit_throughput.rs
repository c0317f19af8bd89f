//! How fast the SQLite metadata store commits new files: 100,000 new paths in commits of 1,000,
//! as an agent's first upload of a big folder sends them (one chunk each, already stored).
//!
//! `cargo run --release -p filesync-store --example commit_throughput`

use filesync_core::{ChunkRef, EntryKind, FileMeta, Hash, RelPath};
use filesync_store::{MetaStore, ProposedChange, sqlite::SqliteMeta};

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteMeta::open(&dir.path().join("meta.db")).await.unwrap();
    let user = s.create_user("bench", "$argon2id$x", 1).await.unwrap();
    let device = s.create_device(user.id, "laptop", &[7u8; 32], 1).await.unwrap();
    let folder = s.folder_by_name(user.id, "docs", true).await.unwrap().unwrap();
    let n = 100_000;
    let metas: Vec<FileMeta> = (0..n)
        .map(|i| {
            let c = format!("file {i}");
            let chunk = ChunkRef { hash: Hash::of(c.as_bytes()), len: c.len() as u32 };
            FileMeta {
                kind: EntryKind::File,
                size: c.len() as u64,
                mtime_ns: 1,
                executable: false,
                hash: filesync_core::file_hash(&[chunk]),
                chunks: vec![chunk],
            }
        })
        .collect();
    let chunks: Vec<(Hash, u32)> = metas.iter().map(|m| (m.chunks[0].hash, m.size as u32)).collect();
    s.add_chunks(user.id, &chunks).await.unwrap();
    #[allow(clippy::disallowed_methods)] // a benchmark measures real time
    let started = std::time::Instant::now();
    for (b, batch) in metas.chunks(1000).enumerate() {
        let changes: Vec<ProposedChange> = batch
            .iter()
            .enumerate()
            .map(|(i, m)| ProposedChange {
                path: RelPath::new(format!("d{}/sub{}/f{}", b % 10, i % 10, b * 1000 + i)).unwrap(),
                base_rev: 0,
                meta: Some(m.clone()),
            })
            .collect();
        s.commit(user.id, folder.id, &device, &changes, 1).await.unwrap();
    }
    println!("{n} new files in batches of 1000: {:?}", started.elapsed());
}
