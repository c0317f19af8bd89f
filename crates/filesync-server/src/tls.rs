//! The server's TLS identity: a self-signed certificate generated on first start (or a real
//! one supplied by the operator), and the rustls configuration (TLS 1.3 only).

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path} holds no usable {what}")]
    Pem { path: PathBuf, what: &'static str },
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("invalid certificate or key: {0}")]
    Rustls(#[from] rustls::Error),
}

pub struct TlsIdentity {
    pub certs: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl TlsIdentity {
    /// SHA-256 fingerprint of the leaf certificate, as clients pin it.
    pub fn fingerprint(&self) -> String {
        filesync_proto::cert_fingerprint(&self.certs[0])
    }

    /// Loads `cert.pem`/`key.pem` from the data directory, generating a self-signed pair on
    /// first start.
    pub fn load_or_generate(data_dir: &Path) -> Result<TlsIdentity, TlsError> {
        let cert = data_dir.join("cert.pem");
        let key = data_dir.join("key.pem");
        if !cert.exists() || !key.exists() {
            let names = vec!["localhost".to_string(), "filesync".to_string()];
            let mut params = rcgen::CertificateParams::new(names)?;
            params.distinguished_name.push(rcgen::DnType::CommonName, "FileSync server");
            params.not_before = rcgen::date_time_ymd(2024, 1, 1);
            params.not_after = rcgen::date_time_ymd(2124, 1, 1);
            let kp = rcgen::KeyPair::generate()?;
            let c = params.self_signed(&kp)?;
            write_private(&key, kp.serialize_pem().as_bytes())?;
            write_private(&cert, c.pem().as_bytes())?;
        }
        TlsIdentity::load(&cert, &key)
    }

    pub fn load(cert: &Path, key: &Path) -> Result<TlsIdentity, TlsError> {
        let read = |p: &Path| std::fs::read(p).map_err(|source| TlsError::Read { path: p.to_path_buf(), source });
        let cert_pem = read(cert)?;
        let certs: Vec<CertificateDer<'static>> =
            rustls_pemfile::certs(&mut &cert_pem[..])
                .collect::<Result<_, _>>()
                .map_err(|source| TlsError::Read { path: cert.to_path_buf(), source })?;
        if certs.is_empty() {
            return Err(TlsError::Pem { path: cert.to_path_buf(), what: "certificate" });
        }
        let key_pem = read(key)?;
        let key = match rustls_pemfile::private_key(&mut &key_pem[..])
            .map_err(|source| TlsError::Read { path: key.to_path_buf(), source })?
        {
            Some(k) => k,
            None => return Err(TlsError::Pem { path: key.to_path_buf(), what: "private key" }),
        };
        Ok(TlsIdentity { certs, key })
    }

    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(self.certs.clone(), self.key.clone_key())?;
        Ok(Arc::new(cfg))
    }
}

/// Writes a file readable by the owner only (the data directory is private; see `datadir.rs`).
fn write_private(path: &Path, data: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let err = |source| TlsError::Write { path: path.to_path_buf(), source };
    let mut f = opts.open(path).map_err(err)?;
    f.write_all(data).map_err(err)?;
    f.sync_all().map_err(err)
}
