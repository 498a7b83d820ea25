//! The daemon's TCP listener is mutual TLS only: the server's certificate and key, and a CA
//! every client certificate must chain to (rustls, ring; TLS 1.2 and 1.3).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use tokio_rustls::TlsAcceptor;

use super::TcpOptions;
use crate::error::{EngineError, Result};

fn bad(path: &Path, what: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::Invalid(format!("{} ({what}): {e}", path.display()))
}

fn certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(path, what, e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad(path, what, e))?;
    if certs.is_empty() {
        return Err(bad(path, what, "no certificate in it"));
    }
    Ok(certs)
}

/// The acceptor of `opts`: every file read and checked now, so a mistake stops the start.
pub fn acceptor(opts: &TcpOptions) -> Result<TlsAcceptor> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in certs(&opts.client_ca, "--client-ca")? {
        roots
            .add(cert)
            .map_err(|e| bad(&opts.client_ca, "--client-ca", e))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| bad(&opts.client_ca, "--client-ca", e))?;
    let key =
        PrivateKeyDer::from_pem_file(&opts.key).map_err(|e| bad(&opts.key, "--tls-key", e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| EngineError::Invalid(format!("TLS: {e}")))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(&opts.cert, "--tls-cert")?, key)
        .map_err(|e| bad(&opts.cert, "--tls-cert and --tls-key", e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
