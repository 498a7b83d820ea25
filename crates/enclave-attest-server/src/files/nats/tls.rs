//! TLS to the NATS server: rustls (ring, TLS 1.2 and 1.3) trusting only the CA certificates the
//! spec names, checking the server's name. The host relays the enclave's egress; this is what
//! keeps it from reading or changing records, or the credentials, in flight.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

use super::NatsError;

/// The trust anchors and the expected name of the NATS server.
#[derive(Clone)]
pub struct NatsTls {
    pub(crate) config: Arc<ClientConfig>,
    pub(crate) server_name: ServerName<'static>,
}

impl std::fmt::Debug for NatsTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl NatsTls {
    /// Trusts the PEM certificates in `ca_pem` (at least one) for a server named `server_name`
    /// (a DNS name or an IP address in its certificate).
    pub fn new(ca_pem: &[u8], server_name: &str) -> Result<NatsTls, NatsError> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem) {
            roots
                .add(cert.map_err(NatsError::CaPem)?)
                .map_err(NatsError::CaRejected)?;
        }
        if roots.is_empty() {
            return Err(NatsError::NoCaCertificate);
        }
        let server_name = ServerName::try_from(server_name.to_string())
            .map_err(|_| NatsError::BadServerName(server_name.to_string()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(NatsError::Tls)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(NatsTls {
            config: Arc::new(config),
            server_name,
        })
    }
}
