//! Typed errors: every variant names what failed, so a caller (and `enclave-ctl verify`) can tell
//! a tampered document from an expired one from a policy mismatch without parsing messages.

use std::fmt;

use time::OffsetDateTime;

/// Where a certificate sits in the path being verified.
///
/// The path runs from the document's leaf `certificate`, through `cabundle[n-1]` down to
/// `cabundle[1]`, to a configured trust root. `cabundle[0]` is never part of the path: it is the
/// document's own claim of a root and is not trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CertPosition {
    /// The document's `certificate` field (the key that signed the COSE_Sign1).
    Leaf,
    /// `cabundle[i]` of the document.
    CaBundle(usize),
    /// The configured trust root that issued the last certificate of the path.
    Root,
}

impl fmt::Display for CertPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertPosition::Leaf => f.write_str("leaf certificate"),
            CertPosition::CaBundle(i) => write!(f, "cabundle[{i}]"),
            CertPosition::Root => f.write_str("trust root"),
        }
    }
}

/// Why one link of the certificate chain does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainFault {
    /// The certificate's issuer name is not its issuer certificate's subject name.
    IssuerMismatch,
    /// The issuer's key does not verify the certificate's signature.
    BadSignature,
    /// The signature algorithm or key type is not one we verify.
    UnsupportedAlgorithm(String),
    /// An issuing certificate lacks basicConstraints CA=true.
    NotCa,
    /// An issuing certificate's pathLenConstraint is smaller than the path below it.
    PathLenExceeded {
        /// The certificate's pathLenConstraint.
        path_len: u8,
        /// CA certificates below it in the path.
        below: usize,
    },
    /// keyUsage present without the bit the certificate's role needs.
    KeyUsage(&'static str),
    /// A critical extension we do not understand (RFC 5280 requires refusing it).
    UnknownCriticalExtension(String),
    /// The same extension appears twice.
    DuplicateExtension(String),
    /// An extension we need could not be decoded.
    BadExtension(String),
}

impl fmt::Display for ChainFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChainFault::IssuerMismatch => {
                f.write_str("issuer name does not match the next certificate's subject")
            }
            ChainFault::BadSignature => {
                f.write_str("signature does not verify with the issuer's key")
            }
            ChainFault::UnsupportedAlgorithm(a) => write!(f, "unsupported algorithm {a}"),
            ChainFault::NotCa => {
                f.write_str("issuer is not a CA (basicConstraints CA=true missing)")
            }
            ChainFault::PathLenExceeded { path_len, below } => {
                write!(
                    f,
                    "pathLenConstraint {path_len} but {below} CA certificate(s) below it"
                )
            }
            ChainFault::KeyUsage(bit) => write!(f, "keyUsage lacks {bit}"),
            ChainFault::UnknownCriticalExtension(oid) => {
                write!(f, "unknown critical extension {oid}")
            }
            ChainFault::DuplicateExtension(oid) => write!(f, "duplicate extension {oid}"),
            ChainFault::BadExtension(what) => write!(f, "malformed extension: {what}"),
        }
    }
}

/// Everything that can make verification fail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input is neither a raw COSE_Sign1 nor its base64 or hex text.
    #[error("input encoding: {0}")]
    BadInput(String),
    /// The COSE_Sign1 structure (or CBOR underneath it) is malformed.
    #[error("malformed COSE_Sign1: {0}")]
    BadCose(String),
    /// The protected header names an algorithm other than ES384, or the document a digest other
    /// than SHA384.
    #[error("unsupported algorithm: {0}")]
    UnsupportedAlgorithm(String),
    /// The attestation document payload is malformed CBOR or has the wrong shape.
    #[error("malformed attestation document: {0}")]
    BadDocument(String),
    /// A required field of the attestation document is absent.
    #[error("attestation document lacks required field `{0}`")]
    MissingField(&'static str),
    /// A field is outside the limits of the AWS specification.
    #[error("field `{field}` out of limits: {detail}")]
    FieldLimit {
        /// The field name (`pcrs`, `cabundle[2]`, `nonce`, ...).
        field: String,
        /// What is wrong, with the allowed range.
        detail: String,
    },
    /// The COSE signature does not verify with the leaf certificate's key over the payload.
    #[error("COSE signature does not verify with the leaf certificate's key")]
    SignatureInvalid,
    /// A certificate of the document cannot be parsed.
    #[error("{which} cannot be parsed: {reason}")]
    BadCertificate {
        /// Which certificate.
        which: CertPosition,
        /// The parser's complaint.
        reason: String,
    },
    /// A link of the chain does not hold.
    #[error("certificate chain broken at {which}: {reason}")]
    ChainBroken {
        /// The certificate whose link to its issuer fails (or the issuer whose constraints fail).
        which: CertPosition,
        /// What fails.
        reason: ChainFault,
    },
    /// The last certificate of the path is not issued by any configured trust root.
    #[error("no configured trust root issued {which} (issuer: {issuer})")]
    UntrustedRoot {
        /// The certificate that should have been issued by a root.
        which: CertPosition,
        /// Its issuer name as the certificate states it.
        issuer: String,
    },
    /// The chain ends at an enclave-engine emulation root, which is not configured: the
    /// document comes from an emulated enclave (or claims to).
    #[error("the document is signed by an enclave-engine emulation root ({issuer}), not by AWS; pass --trust-root <state>/emulation-ca/root.pem to accept emulated enclaves")]
    EmulationRoot {
        /// The root's name as the last certificate of the path states it.
        issuer: String,
    },
    /// A certificate is past its notAfter at the verification time.
    #[error("{which} expired at {not_after} (verification time {at})")]
    Expired {
        /// Which certificate.
        which: CertPosition,
        /// Its notAfter.
        not_after: OffsetDateTime,
        /// The verification time.
        at: OffsetDateTime,
    },
    /// A certificate is before its notBefore at the verification time.
    #[error("{which} not valid before {not_before} (verification time {at})")]
    NotYetValid {
        /// Which certificate.
        which: CertPosition,
        /// Its notBefore.
        not_before: OffsetDateTime,
        /// The verification time.
        at: OffsetDateTime,
    },
    /// A trust root given by the caller cannot be used.
    #[error("trust root: {0}")]
    BadTrustRoot(String),
    /// A PCR differs from the expected value (`actual` is `None` when the document lacks it).
    #[error("PCR{index} mismatch: expected {expected}, document has {}", .actual.as_deref().unwrap_or("no such PCR"))]
    PcrMismatch {
        /// PCR index.
        index: u8,
        /// Expected value, hex.
        expected: String,
        /// The document's value, hex.
        actual: Option<String>,
    },
    /// The nonce differs from the expected one (or is absent).
    #[error("nonce mismatch: expected {expected}, document has {}", .actual.as_deref().unwrap_or("none"))]
    NonceMismatch {
        /// Expected, hex.
        expected: String,
        /// The document's, hex.
        actual: Option<String>,
    },
    /// user_data differs from the expected value (or is absent).
    #[error("user_data mismatch: expected {expected}, document has {}", .actual.as_deref().unwrap_or("none"))]
    UserDataMismatch {
        /// Expected, hex.
        expected: String,
        /// The document's, hex.
        actual: Option<String>,
    },
    /// public_key differs from the expected value (or is absent).
    #[error("public_key mismatch: expected {expected}, document has {}", .actual.as_deref().unwrap_or("none"))]
    PublicKeyMismatch {
        /// Expected, hex.
        expected: String,
        /// The document's, hex.
        actual: Option<String>,
    },
    /// PCR0, PCR1 and PCR2 are all zero: the enclave runs in Nitro debug mode, and its memory
    /// is readable by the parent instance, so its attestation proves nothing about secrecy.
    #[error("Nitro debug-mode document (PCR0..2 all zero: started with --debug-mode, the parent instance can read the enclave's memory) refused; pass --allow-debug-mode to accept it")]
    DebugMode,
    /// PCR31 carries the marker of debug capabilities the enclave's spec grants: whoever
    /// controls the parent can use them (not Nitro debug mode: PCR0..2 are normal).
    #[error("the enclave grants debug capabilities {} (PCR31 marker): whoever controls the parent instance can {}; refused, pass --allow-debug to accept it", crate::debug_caps::join(.capabilities), crate::debug_caps::consequences(.capabilities))]
    DebugCapabilities {
        /// The granted capabilities (`debug.exec`, `debug.cp`, `debug.attest`).
        capabilities: Vec<enclave_proto::wire::Capability>,
    },
    /// PCR31 is not zero and not a marker this verifier knows: something extended it, so the
    /// enclave may be debuggable in ways nobody declared.
    #[error("PCR31 is {pcr31}: not zero and not a known debug-capability marker, so the host's access to the enclave is unknown; refused, pass --allow-debug to accept it")]
    UnknownDebugMarker {
        /// PCR31's value, hex.
        pcr31: String,
    },
    /// The policy pins no enclave: no PCR0 or PCR8 expected (with a non-zero value), and
    /// "any enclave" not said explicitly. Every genuine document would pass, including one
    /// from an attacker's enclave running the same software.
    #[error("no expected measurement{}: expect PCR0 (the image) or PCR8 (its signing certificate) with a non-zero value, or accept any enclave explicitly (--pcr 0=HEX, --pcr 8=HEX or --any-enclave); other PCRs alone pin nothing", given_pcrs(.given))]
    NoExpectation {
        /// The PCR indices that were expected (none of them pins an enclave).
        given: Vec<u8>,
    },
    /// The same PCR is expected twice with different values: no document could satisfy both,
    /// and taking either would silently drop what the caller wrote.
    #[error("PCR{index} is expected twice with different values")]
    ConflictingExpectation {
        /// The PCR index.
        index: u8,
    },
    /// A policy argument (such as `--pcr N=HEX`) cannot be parsed.
    #[error("policy: {0}")]
    BadPolicy(String),
}

/// ` (given: PCR2, PCR3)`, or nothing.
fn given_pcrs(given: &[u8]) -> String {
    if given.is_empty() {
        return String::new();
    }
    let names: Vec<String> = given.iter().map(|i| format!("PCR{i}")).collect();
    format!(" (given: {})", names.join(", "))
}
