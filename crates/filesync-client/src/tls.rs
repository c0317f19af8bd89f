//! Certificate pinning: the client trusts exactly one server certificate, identified by the
//! SHA-256 fingerprint pinned at first login (trust on first use), not a CA hierarchy.
//! The TLS handshake signature is still verified, so only the holder of the pinned
//! certificate's private key can complete the handshake.

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use std::sync::{Arc, Mutex};

/// What the client trusts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trust {
    /// Only the certificate with this fingerprint (`SHA256:…`).
    Pinned(String),
    /// Any certificate; its fingerprint is reported so that a person can confirm it before
    /// anything secret is sent. Only for the first contact with a server.
    FirstUse,
}

/// The TLS client configuration FileSync uses: TLS 1.3 only, trusting what `trust` says. Also
/// the way tests and tools reach a server at the TLS level without a [`crate::Connection`].
pub fn client_config(trust: Trust) -> Result<rustls::ClientConfig, rustls::Error> {
    config_with_verifier(trust).map(|(config, _)| config)
}

/// [`client_config`], and the verifier that reports the fingerprint the server presented.
pub(crate) fn config_with_verifier(trust: Trust) -> Result<(rustls::ClientConfig, Arc<PinVerifier>), rustls::Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = Arc::new(PinVerifier::new(trust, provider.clone()));
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    Ok((config, verifier))
}

#[derive(Debug)]
pub(crate) struct PinVerifier {
    trust: Trust,
    provider: Arc<CryptoProvider>,
    /// The fingerprint the server presented, for reporting.
    pub seen: Mutex<Option<String>>,
}

impl PinVerifier {
    pub fn new(trust: Trust, provider: Arc<CryptoProvider>) -> PinVerifier {
        PinVerifier { trust, provider, seen: Mutex::new(None) }
    }
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let fp = filesync_proto::cert_fingerprint(end_entity);
        *self.seen.lock().expect("verifier lock") = Some(fp.clone());
        match &self.trust {
            Trust::FirstUse => Ok(ServerCertVerified::assertion()),
            Trust::Pinned(p) if *p == fp => Ok(ServerCertVerified::assertion()),
            Trust::Pinned(_) => Err(rustls::Error::General("server certificate fingerprint mismatch".into())),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
