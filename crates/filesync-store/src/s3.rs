//! [`S3Chunks`]: a [`ChunkStore`] in an S3-compatible object store (AWS S3, MinIO, Garage,
//! Ceph…), through the `object_store` crate. One object per chunk and user, named
//! `<prefix>/<user id>/<first two hex digits>/<hex hash>` like the local store's files.
//!
//! S3 makes an object durable and visible whole when its PUT returns, so a put needs no
//! temporary name and no sync. Chunks are verified against their hash when read; one whose
//! bytes no longer match is copied aside under `<prefix>/damaged/` and removed, so the next
//! upload of that content stores it afresh.

use crate::{ChunkStore, Result, StoreError, UserId};
use async_trait::async_trait;
use bytes::Bytes;
use filesync_core::Hash;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

/// How many chunk PUTs of one batch run at once.
const PUT_CONCURRENCY: usize = 16;

/// Where the chunks go: `s3://BUCKET/PREFIX`, and how to reach the service. Credentials come
/// from the standard AWS environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`), as every S3 tool reads them.
#[derive(Clone, Debug, Default)]
pub struct S3Config {
    pub bucket: String,
    /// Key prefix inside the bucket (may be empty).
    pub prefix: String,
    /// The service's URL, for anything but AWS (`http://127.0.0.1:9000`); `None`: AWS.
    pub endpoint: Option<String>,
    /// `None`: `AWS_DEFAULT_REGION`, or `us-east-1`.
    pub region: Option<String>,
    /// Address buckets as `ENDPOINT/BUCKET` (MinIO, most self-hosted services) instead of
    /// `BUCKET.ENDPOINT`.
    pub path_style: bool,
    /// Access key id and secret; `None`: the AWS environment variables (or an instance role).
    pub credentials: Option<(String, String)>,
}

impl S3Config {
    /// Parses `s3://BUCKET` or `s3://BUCKET/PREFIX`.
    pub fn from_url(url: &str) -> Option<S3Config> {
        let rest = url.strip_prefix("s3://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return None;
        }
        Some(S3Config { bucket: bucket.into(), prefix: prefix.trim_matches('/').into(), ..Default::default() })
    }

    /// Reads the access key id and secret from an AWS shared-credentials file (`[default]`
    /// profile, or the only one): `aws_access_key_id = …` and `aws_secret_access_key = …`.
    pub fn read_credentials(path: &std::path::Path) -> Result<(String, String), String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        // profile -> (key id, secret)
        let mut profiles: std::collections::BTreeMap<String, (Option<String>, Option<String>)> = Default::default();
        let mut profile = String::new();
        for line in text.lines().map(str::trim) {
            if let Some(p) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                profile = p.trim().to_string();
                continue;
            }
            let Some((k, v)) = line.split_once('=') else { continue };
            let entry = profiles.entry(profile.clone()).or_default();
            match k.trim() {
                "aws_access_key_id" => entry.0 = Some(v.trim().to_string()),
                "aws_secret_access_key" => entry.1 = Some(v.trim().to_string()),
                _ => {}
            }
        }
        let chosen = match profiles.remove("default").or_else(|| profiles.remove("")) {
            Some(p) => Some(p),
            None if profiles.len() == 1 => profiles.into_values().next(),
            None => None,
        };
        let (id, secret) = chosen.unwrap_or_default();
        match (id, secret) {
            (Some(i), Some(s)) => Ok((i, s)),
            _ => Err(format!(
                "{} does not hold aws_access_key_id and aws_secret_access_key (in a [default] section)",
                path.display()
            )),
        }
    }
}

/// Chunks as objects in a bucket.
#[derive(Debug)]
pub struct S3Chunks {
    store: AmazonS3,
    prefix: String,
    /// For error messages: `s3://bucket/prefix`.
    url: String,
}

impl S3Chunks {
    /// Connects, and checks that the bucket can be listed, so that a wrong bucket, endpoint or
    /// credential is reported at start, not at the first upload.
    pub async fn open(config: &S3Config) -> Result<S3Chunks> {
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(&config.bucket)
            .with_virtual_hosted_style_request(!config.path_style);
        if let Some(endpoint) = &config.endpoint {
            b = b.with_endpoint(endpoint).with_allow_http(endpoint.starts_with("http://"));
        }
        if let Some(region) = &config.region {
            b = b.with_region(region);
        }
        if let Some((id, secret)) = &config.credentials {
            b = b.with_access_key_id(id).with_secret_access_key(secret);
        }
        let url = format!("s3://{}/{}", config.bucket, config.prefix);
        let store = b.build().map_err(|e| StoreError::Remote(format!("cannot use the object store {url}: {e}")))?;
        let chunks = S3Chunks { store, prefix: config.prefix.clone(), url };
        let probe = Path::from(chunks.key_prefix());
        chunks.store.list_with_delimiter(Some(&probe)).await.map_err(|e| {
            StoreError::Remote(format!(
                "cannot reach the object store {}: {e}; check the bucket, the endpoint and the AWS credentials",
                chunks.url
            ))
        })?;
        Ok(chunks)
    }

    fn key_prefix(&self) -> String {
        if self.prefix.is_empty() { String::new() } else { format!("{}/", self.prefix) }
    }

    fn key(&self, user: UserId, hash: &Hash) -> Path {
        let hex = hash.to_hex();
        Path::from(format!("{}{user}/{}/{hex}", self.key_prefix(), &hex[..2]))
    }

    fn error(&self, what: &str, e: object_store::Error) -> StoreError {
        StoreError::Remote(format!("object store {}: {what}: {e}", self.url))
    }
}

#[async_trait]
impl ChunkStore for S3Chunks {
    async fn put_many(&self, user: UserId, chunks: &[(Hash, Bytes)]) -> Result<()> {
        let puts: Vec<(Path, PutPayload)> =
            chunks.iter().map(|(hash, data)| (self.key(user, hash), PutPayload::from_bytes(data.clone()))).collect();
        let store = &self.store;
        futures::stream::iter(puts)
            .map(|(key, payload)| async move { store.put(&key, payload).await })
            .buffer_unordered(PUT_CONCURRENCY)
            .try_collect::<Vec<_>>()
            .await
            .map_err(|e| self.error("storing a chunk", e))?;
        Ok(())
    }

    async fn get(&self, user: UserId, hash: &Hash) -> Result<Option<Bytes>> {
        let key = self.key(user, hash);
        let data = match self.store.get(&key).await {
            Ok(r) => r.bytes().await.map_err(|e| self.error("reading a chunk", e))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.error("reading a chunk", e)),
        };
        if Hash::of(&data) != *hash {
            let aside = Path::from(format!("{}damaged/{user}/{}", self.key_prefix(), hash.to_hex()));
            self.store.copy(&key, &aside).await.map_err(|e| self.error("setting a damaged chunk aside", e))?;
            self.delete(user, hash).await?;
            return Err(StoreError::ChunkDamaged { hash: *hash, moved_to: format!("object {aside}") });
        }
        Ok(Some(data))
    }

    async fn delete(&self, user: UserId, hash: &Hash) -> Result<()> {
        match self.store.delete(&self.key(user, hash)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error("deleting a chunk", e)),
        }
    }
}

/// A real S3-compatible server for tests: `moto_server` (Python's moto) on a free loopback
/// port, stopped when dropped.
pub mod testing {
    use super::S3Config;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::process::{Child, Command, Stdio};
    use std::time::Duration;

    pub struct Moto {
        child: Child,
        pub endpoint: String,
    }

    impl Drop for Moto {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    impl Moto {
        /// Starts `moto_server`; `None` (after saying why) when it is not installed, unless
        /// `FILESYNC_REQUIRE_S3` is set (as CI does), which makes its absence a panic.
        #[allow(clippy::disallowed_methods, reason = "test support: its job is to run moto_server")]
        pub fn start() -> Option<Moto> {
            let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let spawned = Command::new("moto_server")
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            let child = match spawned {
                Ok(c) => c,
                Err(e) if std::env::var_os("FILESYNC_REQUIRE_S3").is_none() => {
                    eprintln!("skipped: cannot run moto_server ({e}); `pip install 'moto[server]'` to run this test");
                    return None;
                }
                Err(e) => panic!("FILESYNC_REQUIRE_S3 is set but moto_server cannot run: {e}"),
            };
            let moto = Moto { child, endpoint: format!("http://127.0.0.1:{port}") };
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(tokio::time::Instant::now() < deadline, "moto_server did not start listening within a minute");
                std::thread::sleep(Duration::from_millis(100));
            }
            Some(moto)
        }

        /// Creates a bucket (moto takes unsigned requests).
        pub fn create_bucket(&self, name: &str) {
            let addr = self.endpoint.trim_start_matches("http://");
            let mut s = TcpStream::connect(addr).unwrap();
            write!(s, "PUT /{name} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut reply = String::new();
            s.read_to_string(&mut reply).unwrap();
            assert!(reply.starts_with("HTTP/1.1 200"), "creating bucket {name}: {reply}");
        }

        /// How many objects `bucket` holds (up to 1,000: one page of a listing).
        pub fn count_objects(&self, bucket: &str) -> usize {
            let addr = self.endpoint.trim_start_matches("http://");
            let mut s = TcpStream::connect(addr).unwrap();
            write!(s, "GET /{bucket}?list-type=2 HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
            let mut reply = String::new();
            s.read_to_string(&mut reply).unwrap();
            assert!(reply.starts_with("HTTP/1.1 200"), "listing bucket {bucket}: {reply}");
            reply.matches("<Key>").count()
        }

        /// A configuration for `bucket`/`prefix` on this server, with the (any) credentials
        /// moto takes.
        pub fn config(&self, bucket: &str, prefix: &str) -> S3Config {
            S3Config {
                bucket: bucket.into(),
                prefix: prefix.into(),
                endpoint: Some(self.endpoint.clone()),
                region: Some("us-east-1".into()),
                path_style: true,
                credentials: Some(("filesync-test".into(), "filesync-test-secret".into())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_bucket_and_an_optional_prefix() {
        let c = S3Config::from_url("s3://files").unwrap();
        assert_eq!((c.bucket.as_str(), c.prefix.as_str()), ("files", ""));
        let c = S3Config::from_url("s3://files/filesync/chunks/").unwrap();
        assert_eq!((c.bucket.as_str(), c.prefix.as_str()), ("files", "filesync/chunks"));
        assert!(S3Config::from_url("s3://").is_none());
        assert!(S3Config::from_url("https://files").is_none());
    }

    #[test]
    fn credentials_are_read_from_the_default_profile() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("credentials");
        std::fs::write(
            &f,
            "[other]\naws_access_key_id = X\n[default]\naws_access_key_id = AKID\naws_secret_access_key = s3cr3t\n",
        )
        .unwrap();
        assert_eq!(S3Config::read_credentials(&f).unwrap(), ("AKID".into(), "s3cr3t".into()));
        std::fs::write(&f, "aws_access_key_id=A\naws_secret_access_key=B\n").unwrap();
        assert_eq!(S3Config::read_credentials(&f).unwrap(), ("A".into(), "B".into()));
        std::fs::write(&f, "[default]\naws_access_key_id=A\n").unwrap();
        assert!(S3Config::read_credentials(&f).unwrap_err().contains("aws_secret_access_key"));
    }
}
