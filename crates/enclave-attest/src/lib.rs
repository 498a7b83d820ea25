//! Verifier for AWS Nitro Enclaves attestation documents: what a relying party needs.
//!
//! Where it runs: with whoever checks an enclave (`enclave-ctl verify`, host tools, any program
//! of a relying party), and in the host supervisor for its own document checks. It has no async
//! runtime, HTTP server or filesystem watcher (`scripts/check-deps.sh` keeps it so): the
//! document parser, COSE, the certificate chain, [`Policy`], [`Report`], the debug capabilities
//! PCR31 shows, [`vrf`] verification, file records and their check ([`files`]), what the
//! attestation server binds ([`binding`]) and the attested-TLS [`client`] (blocking std sockets
//! and rustls). The server itself is crate `enclave-attest-server`; the emulated NSM that signs
//! documents for emulated enclaves is crate `enclave-nsm`'s.
//!
//! A document is a COSE_Sign1 (tagged or not) whose payload is a CBOR map (module id, timestamp,
//! PCRs, the signing certificate, its CA bundle, optional public key / user data / nonce).
//! [`verify`] decodes it from raw bytes, base64 or hex, then checks, in this order:
//!
//! 1. structure and the AWS field limits ([`AttestationDocument::from_cbor`]);
//! 2. the ES384 signature with the leaf certificate's key, over the payload bytes exactly as
//!    received (cheapest rejection of a tampered document first);
//! 3. the chain: leaf, `cabundle[n-1]` … `cabundle[1]`, then a *configured* root (the compiled-in
//!    AWS Nitro Enclaves Root-G1 by default) by name and key; `cabundle[0]` is never trusted;
//!    every certificate valid at the chosen time, issuers CA with keyCertSign and pathLen room;
//! 4. the [`Policy`]: Nitro debug mode refused unless allowed, then the expected PCRs (a policy
//!    cannot be built without an [`Expectation`]: PCR0 or PCR8 pinned, or any enclave said
//!    explicitly), then the debug capabilities PCR31 shows ([`DebugCapabilities`]) refused
//!    unless allowed, then nonce, user_data, public_key.
//!
//! Each failure is an [`Error`] variant naming what failed. Nothing here panics on input, and
//! every allocation is bounded by the input size (itself bounded by [`MAX_DOCUMENT_LEN`]).
//!
//! ```no_run
//! use enclave_attest::{Expectation, Policy, VerifyOptions};
//!
//! let doc = std::fs::read("attestation.cose")?;
//! let pcr0 = hex::decode(std::env::var("EXPECTED_PCR0")?)?;
//! let policy = Policy::new(Expectation::pcrs([(0, pcr0)])?);
//! let report = enclave_attest::verify(&doc, &VerifyOptions::new(policy))?;
//! println!("{report}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod binding;
mod cache;
mod cbor;
mod cert;
mod chain;
pub mod client;
mod cose;
mod debug_caps;
mod document;
mod error;
pub mod files;
mod input;
#[doc(hidden)]
pub mod p384_verify;
mod policy;
mod report;
mod roots;
pub mod vrf;

use std::sync::{Arc, OnceLock};

use time::OffsetDateTime;

pub use cose::CoseSign1;
pub use debug_caps::DebugCapabilities;
pub use document::{AttestationDocument, MAX_CABUNDLE, MAX_CERT_LEN, MAX_OPTIONAL_LEN, MAX_PCRS};
pub use error::{CertPosition, ChainFault, Error};
pub use input::{decode_input, MAX_DOCUMENT_LEN};
pub use policy::{
    parse_hex_arg, parse_time, Expectation, ExpectedPcrs, Policy, VerifyOptions, PINNING_PCRS,
};
pub use report::{CertInfo, HexBytes, Report};
pub use roots::{
    is_emulation_root_name, TrustRoot, AWS_NITRO_ROOT_G1_PEM, AWS_NITRO_ROOT_G1_SHA256,
    EMULATION_ROOT_CN, EMULATION_ROOT_SUBJECT,
};

use cert::{ParsedCert, PublicKey};

/// Decodes `input` (raw, base64 or hex) and verifies it with `options`: the one call behind
/// `enclave-ctl verify`. Returns the report only when the document is genuine, chains to a
/// configured root at the chosen time, and satisfies the policy.
pub fn verify(input: &[u8], options: &VerifyOptions) -> Result<Report, Error> {
    let raw = decode_input(input)?;
    let at = options.at.unwrap_or_else(OffsetDateTime::now_utc);
    if options.roots.is_empty() {
        Verifier::aws().verify(&raw, at, &options.policy)
    } else {
        Verifier::with_roots(options.roots.clone())?.verify(&raw, at, &options.policy)
    }
}

/// Parses a raw COSE_Sign1 and its payload without verifying anything: for inspecting a
/// document that fails, never for trusting one.
pub fn parse_unverified(cose: &[u8]) -> Result<(CoseSign1<'_>, AttestationDocument), Error> {
    let cose = CoseSign1::parse(cose)?;
    let doc = AttestationDocument::from_cbor(&cose.payload)?;
    Ok((cose, doc))
}

/// A verifier with its trust roots parsed once, for verifying many documents.
#[derive(Debug, Clone)]
pub struct Verifier {
    roots: Vec<TrustRoot>,
    cache: Option<Arc<cache::LinkCache>>,
}

impl Verifier {
    /// A verifier that trusts only the compiled-in AWS Nitro Enclaves Root-G1.
    pub fn aws() -> Verifier {
        static AWS: OnceLock<TrustRoot> = OnceLock::new();
        Verifier {
            roots: vec![AWS.get_or_init(TrustRoot::aws_nitro_root_g1).clone()],
            cache: None,
        }
    }

    /// A verifier that trusts exactly `roots` (and not the AWS root unless it is among them).
    pub fn with_roots(roots: Vec<TrustRoot>) -> Result<Verifier, Error> {
        if roots.is_empty() {
            return Err(Error::BadTrustRoot("no trust roots configured".into()));
        }
        Ok(Verifier { roots, cache: None })
    }

    /// Remembers up to `capacity` certificate signatures already verified (shared by clones),
    /// so documents that repeat a CA bundle skip re-checking it. Everything else (validity at
    /// the chosen time, names, constraints, the COSE signature) is still checked every time.
    pub fn with_link_cache(mut self, capacity: usize) -> Verifier {
        self.cache = Some(Arc::new(cache::LinkCache::new(capacity)));
        self
    }

    /// The configured roots.
    pub fn roots(&self) -> &[TrustRoot] {
        &self.roots
    }

    /// Verifies a raw COSE_Sign1 document at time `at` against `policy`.
    pub fn verify(
        &self,
        cose: &[u8],
        at: OffsetDateTime,
        policy: &Policy,
    ) -> Result<Report, Error> {
        if cose.len() > MAX_DOCUMENT_LEN {
            return Err(Error::BadInput(format!(
                "{} bytes, more than the {MAX_DOCUMENT_LEN}-byte limit",
                cose.len()
            )));
        }
        let (cose, doc) = parse_unverified(cose)?;
        let leaf = ParsedCert::parse(&doc.certificate, CertPosition::Leaf)?;
        let PublicKey::P384(leaf_key) = &leaf.key else {
            return Err(Error::UnsupportedAlgorithm(
                "ES384 needs a P-384 leaf key".into(),
            ));
        };
        cose.verify(leaf_key)?;
        let chain = chain::verify(leaf, &doc.cabundle, &self.roots, at, self.cache.as_deref())?;
        policy.check(&doc)?;

        let timestamp = i128::from(doc.timestamp_ms)
            .checked_mul(1_000_000)
            .and_then(|ns| OffsetDateTime::from_unix_timestamp_nanos(ns).ok())
            .ok_or_else(|| Error::FieldLimit {
                field: "timestamp".into(),
                detail: "beyond year 9999".into(),
            })?;
        let hex = |v: Option<Vec<u8>>| v.map(HexBytes);
        Ok(Report {
            debug_mode: doc.is_debug_mode(),
            debug_capabilities: DebugCapabilities::of(&doc),
            expected_pcrs: policy
                .expectation()
                .pcr_values()
                .map(|p| p.keys().copied().collect())
                .unwrap_or_default(),
            module_id: doc.module_id,
            digest: doc.digest,
            timestamp_ms: doc.timestamp_ms,
            timestamp,
            pcrs: doc
                .pcrs
                .into_iter()
                .map(|(i, v)| (i, HexBytes(v)))
                .collect(),
            public_key: hex(doc.public_key),
            user_data: hex(doc.user_data),
            nonce: hex(doc.nonce),
            cose_tagged: cose.tagged,
            certificate: chain.path[0].clone(),
            chain: chain.path,
            root: chain.root,
            verified_at: at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn compiled_in_root_is_the_published_one() {
        let root = TrustRoot::aws_nitro_root_g1();
        assert_eq!(
            hex::encode(Sha256::digest(root.der())),
            AWS_NITRO_ROOT_G1_SHA256
        );
        assert_eq!(hex::encode(root.sha256()), AWS_NITRO_ROOT_G1_SHA256);
        assert!(
            root.subject().contains("CN=aws.nitro-enclaves"),
            "{}",
            root.subject()
        );
    }
}
