//! What the server settles once, before anything else: its TLS identity and the start-up
//! document that binds it (and the file-attestation VRF key). The document's hash is the boot
//! [`Epoch`] every file proof names, so it must exist before the first file is proven: the
//! caller fetches it ([`Startup::fetch`]), builds its `FileStore` with [`Startup::epoch`], then
//! binds the server with both.

use enclave_attest::vrf::{self, Epoch};
use enclave_attest::AttestationDocument;

use super::source::AttestationSource;
use super::tls::TlsIdentity;
use super::{Binding, ServerError};

/// The TLS identity and the start-up document of one boot of the server. No `Debug`: it holds
/// the TLS key.
pub struct Startup {
    pub(crate) identity: TlsIdentity,
    pub(crate) binding: Binding,
    pub(crate) user_data: Vec<u8>,
    pub(crate) document: Vec<u8>,
    pub(crate) parsed: AttestationDocument,
    epoch: Epoch,
}

impl Startup {
    /// Makes the TLS key and asks `source` for a document binding it and, with file
    /// attestation, `vrf_public_key` (blocking: one NSM call). Refuses a document that does
    /// not carry both, since no client could verify this server.
    pub fn fetch(
        source: &dyn AttestationSource,
        vrf_public_key: Option<vrf::PublicKey>,
    ) -> Result<Startup, ServerError> {
        let identity = TlsIdentity::generate()?;
        let binding = Binding { vrf_public_key };
        let user_data = binding.encode();
        let document = source.attest(None, Some(&user_data), Some(&identity.spki))?;
        let (_, parsed) = enclave_attest::parse_unverified(&document)?;
        if parsed.public_key.as_ref() != Some(&identity.spki)
            || parsed.user_data.as_ref() != Some(&user_data)
        {
            return Err(ServerError::Unbound);
        }
        Ok(Startup {
            epoch: Epoch::of_startup_document(&document),
            identity,
            binding,
            user_data,
            document,
            parsed,
        })
    }

    /// SHA-256 of the start-up document: the epoch every file proof of this boot names.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// The start-up document (raw COSE_Sign1).
    pub fn document(&self) -> &[u8] {
        &self.document
    }

    /// What the document's user_data says.
    pub fn binding(&self) -> Binding {
        self.binding
    }
}
