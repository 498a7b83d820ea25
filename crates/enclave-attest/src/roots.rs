//! Trust roots: the compiled-in AWS Nitro Enclaves Root-G1, or roots the caller configures.

use der::Decode;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use x509_cert::Certificate;

use crate::cert::{ParsedCert, PublicKey};
use crate::error::CertPosition;
use crate::Error;

/// The AWS Nitro Enclaves Root-G1 certificate (CN=aws.nitro-enclaves), as AWS publishes it.
pub const AWS_NITRO_ROOT_G1_PEM: &str = include_str!("../roots/AWS_NitroEnclaves_Root-G1.pem");

/// SHA-256 of the DER of [`AWS_NITRO_ROOT_G1_PEM`], the fingerprint AWS publishes; checked by a
/// test so the pinned file cannot drift.
pub const AWS_NITRO_ROOT_G1_SHA256: &str =
    "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b";

/// The subject (RFC 4514) of enclave-engine's emulation roots, the per-host CAs that sign the
/// emulated NSM's documents (crate `enclave-nsm`, feature `emulated`). Defined here because a
/// verifier must recognise such a chain without linking the emulation: a document that ends
/// at this name fails with [`Error::EmulationRoot`] unless that host's root is configured.
pub const EMULATION_ROOT_SUBJECT: &str =
    "CN=enclave-engine emulated NSM root,OU=emulated-nsm,O=enclave-engine";
/// The common name of [`EMULATION_ROOT_SUBJECT`].
pub const EMULATION_ROOT_CN: &str = "enclave-engine emulated NSM root";

/// Whether an issuer name (as [`x509_cert::name::Name`] prints it) is an emulation root's.
pub fn is_emulation_root_name(name: &str) -> bool {
    name.split(',')
        .any(|rdn| rdn.trim() == format!("CN={EMULATION_ROOT_CN}"))
        && name.split(',').any(|rdn| rdn.trim() == "OU=emulated-nsm")
}

/// A certificate trusted by configuration. Its key and name anchor the chain; it is trusted
/// because the caller pinned it, never because a document carries it.
#[derive(Debug, Clone)]
pub struct TrustRoot {
    der: Vec<u8>,
    subject_der: Vec<u8>,
    subject: String,
    sha256: [u8; 32],
    pub(crate) key: PublicKey,
    pub(crate) not_before: OffsetDateTime,
    pub(crate) not_after: OffsetDateTime,
}

impl TrustRoot {
    /// The compiled-in AWS Nitro Enclaves Root-G1.
    pub fn aws_nitro_root_g1() -> TrustRoot {
        // The PEM is a compile-time constant checked by tests, so failure here is a build defect.
        TrustRoot::from_pem(AWS_NITRO_ROOT_G1_PEM.as_bytes())
            .ok()
            .and_then(|mut v| v.pop())
            .expect("the compiled-in AWS root parses")
    }

    /// Parses one DER certificate as a root.
    pub fn from_der(der: &[u8]) -> Result<TrustRoot, Error> {
        let parsed = ParsedCert::parse(der, CertPosition::Root)
            .map_err(|e| Error::BadTrustRoot(e.to_string()))?;
        Ok(TrustRoot {
            der: der.to_vec(),
            subject_der: parsed.subject_der(),
            subject: parsed.cert.tbs_certificate.subject.to_string(),
            sha256: Sha256::digest(der).into(),
            key: parsed.key,
            not_before: parsed.not_before,
            not_after: parsed.not_after,
        })
    }

    /// Parses every `CERTIFICATE` block of a PEM file (a file may hold several roots).
    pub fn from_pem(pem: &[u8]) -> Result<Vec<TrustRoot>, Error> {
        let certs = Certificate::load_pem_chain(pem)
            .map_err(|e| Error::BadTrustRoot(format!("PEM: {e}")))?;
        if certs.is_empty() {
            return Err(Error::BadTrustRoot("no CERTIFICATE in PEM".into()));
        }
        certs
            .iter()
            .map(|c| {
                der::Encode::to_der(c)
                    .map_err(|e| Error::BadTrustRoot(e.to_string()))
                    .and_then(|d| TrustRoot::from_der(&d))
            })
            .collect()
    }

    /// Parses a root from PEM or DER bytes, whichever they are.
    pub fn from_pem_or_der(bytes: &[u8]) -> Result<Vec<TrustRoot>, Error> {
        if Certificate::from_der(bytes).is_ok() {
            return Ok(vec![TrustRoot::from_der(bytes)?]);
        }
        TrustRoot::from_pem(bytes)
    }

    /// DER of the root certificate.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// Subject name (RFC 4514 string).
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// SHA-256 of the DER.
    pub fn sha256(&self) -> [u8; 32] {
        self.sha256
    }

    pub(crate) fn subject_der(&self) -> &[u8] {
        &self.subject_der
    }
}
