//! What the benchmarks that run server instances in their own process share (included with
//! `#[path]` by `fanout.rs` and `commits.rs`, each an example of `filesync-server`).

use filesync_server::{Registration, Server, ServerConfig};
use filesync_store::pg::PgConfig;
use filesync_store::pg::testing::TempDatabase;

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Starts an instance on `data` (and on PostgreSQL when `db` is given); its address, its
/// fingerprint, and the sender that stops it.
pub async fn instance(
    data: &std::path::Path,
    db: Option<&TempDatabase>,
    devices: usize,
) -> Result<(String, String, tokio::sync::oneshot::Sender<()>), Error> {
    let mut config = ServerConfig::new(data);
    config.listen = "127.0.0.1:0".into();
    config.registration = Registration::Open;
    config.database = db.map(|db| PgConfig { url: db.url.clone(), password: None });
    // Every device comes from 127.0.0.1: lift the per-address limits over the whole load.
    let room = devices + 64;
    config.limits.max_connections = room;
    config.limits.max_connections_per_address = room;
    config.limits.max_unauthenticated = room;
    let server = Server::open(config).await?;
    let (addr, fingerprint) = (server.local_addr().to_string(), server.fingerprint().to_string());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    Ok((addr, fingerprint, stop))
}
