//! Signing PCR0 with an ECDSA P-384 key (PCR8), and verifying such signatures.
//!
//! Signatures are RFC 6979 deterministic ECDSA-P384-SHA384 over the COSE `Sig_structure`, so a
//! signed build is as reproducible as an unsigned one. The section bytes have the official
//! crate's shape (see [`super::cose`]); only the ECDSA value differs from what OpenSSL's
//! randomized signing would produce, and both verify the same way.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use der::asn1::ObjectIdentifier as Oid;
use der::Decode;
use p384::ecdsa::signature::{Signer, Verifier};
use p384::ecdsa::{Signature, SigningKey, VerifyingKey};
use p384::pkcs8::DecodePrivateKey;
use thiserror::Error;
use x509_cert::Certificate;

use super::cose::{self, CoseError, CoseSign1, PcrInfo, PcrSignature, PROTECTED_ES384};
use super::pcr::{self, looks_like_pem, measure, Pcr};

const OID_EC_PUBLIC_KEY: Oid = Oid::new_unwrap("1.2.840.10045.2.1");
const OID_SECP384R1: Oid = Oid::new_unwrap("1.3.132.0.34");

/// Errors loading a signer, signing, or verifying a signature section.
#[derive(Debug, Error)]
pub enum SignError {
    /// A key or certificate file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The certificate is not a (PEM or DER) X.509 certificate.
    #[error("invalid signing certificate: {0}")]
    Certificate(String),
    /// The certificate's key is not ECDSA P-384.
    #[error(
        "the certificate's public key is {found}; EIF signing needs an ECDSA P-384 certificate"
    )]
    WrongCertificateKeyType {
        /// What the key is, e.g. "RSA" or "ECDSA P-256".
        found: String,
    },
    /// The private key is not ECDSA P-384.
    #[error("the private key is {found}; EIF signing needs an ECDSA P-384 key")]
    WrongKeyType {
        /// What the key is, e.g. "RSA", "ECDSA P-256" or "Ed25519".
        found: String,
    },
    /// The private key is password-protected.
    #[error("the private key is encrypted; decrypt it first (e.g. `openssl pkey -in key.pem -out plain.pem`)")]
    EncryptedKey,
    /// The private key could not be decoded.
    #[error("invalid private key: {0}")]
    Key(String),
    /// The private key is not the one of the certificate.
    #[error("the private key does not match the certificate's public key")]
    KeyMismatch,
    /// ECDSA signing failed (practically unreachable with a valid key).
    #[error("signing failed: {0}")]
    Signing(String),
    /// The signature section or its COSE_Sign1 is malformed.
    #[error("malformed signature section: {0}")]
    Cose(#[from] CoseError),
    /// The ECDSA signature does not verify with the certificate's key.
    #[error("the PCR0 signature does not verify against the embedded certificate's public key")]
    BadSignature,
    /// The signed payload is not a PCR0 value.
    #[error("the signed payload is for PCR{0}, expected PCR0")]
    WrongRegister(i32),
    /// The signed PCR0 is not the image's PCR0.
    #[error("the signed PCR0 {signed} differs from the image's PCR0 {computed}")]
    Pcr0Mismatch {
        /// Hex of the PCR0 in the signature payload.
        signed: String,
        /// Hex of the PCR0 computed from the image.
        computed: String,
    },
    /// The certificate's validity starts after the given time.
    #[error("the signing certificate is not valid before {not_before}")]
    NotYetValid {
        /// The certificate's notBefore.
        not_before: String,
    },
    /// The certificate's validity ended before the given time.
    #[error("the signing certificate expired at {not_after}")]
    Expired {
        /// The certificate's notAfter.
        not_after: String,
    },
}

/// A certificate and its ECDSA P-384 private key, ready to sign EIFs.
#[derive(Clone)]
pub struct EifSigner {
    certificate_pem: Vec<u8>,
    certificate: Certificate,
    certificate_der: Vec<u8>,
    key: SigningKey,
}

impl std::fmt::Debug for EifSigner {
    // Never print the private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EifSigner")
            .field("subject", &self.subject())
            .finish_non_exhaustive()
    }
}

impl EifSigner {
    /// Loads a PEM certificate and a PEM private key (PKCS#8 `PRIVATE KEY` or SEC1
    /// `EC PRIVATE KEY`) from files.
    pub fn from_pem_files(certificate: &Path, key: &Path) -> Result<Self, SignError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| SignError::Io {
                path: path.to_path_buf(),
                source,
            })
        };
        Self::from_bytes(&read(certificate)?, &read(key)?)
    }

    /// Builds a signer from a certificate (PEM or DER) and a private key (PEM or DER, PKCS#8
    /// or SEC1). Checks that the key is ECDSA P-384 and belongs to the certificate.
    pub fn from_bytes(certificate: &[u8], key: &[u8]) -> Result<Self, SignError> {
        // The key first: a wrong key type is the likelier mistake and deserves its own message.
        let key = SigningKey::from(&parse_private_key(key)?);
        let certificate_der =
            pcr::certificate_der(certificate).map_err(|e| SignError::Certificate(e.to_string()))?;
        let parsed = Certificate::from_der(&certificate_der)
            .map_err(|e| SignError::Certificate(e.to_string()))?;
        let cert_key = certificate_key(&parsed)?;
        if key.verifying_key() != &cert_key {
            return Err(SignError::KeyMismatch);
        }
        // The section stores the certificate as PEM because the official reader parses it with
        // `X509::from_pem`; PEM input is kept byte for byte, as the official signer does.
        let certificate_pem = if looks_like_pem(certificate) {
            certificate.to_vec()
        } else {
            der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, &certificate_der)
                .map_err(|e| SignError::Certificate(e.to_string()))?
                .into_bytes()
        };
        Ok(EifSigner {
            certificate_pem,
            certificate: parsed,
            certificate_der,
            key,
        })
    }

    /// The certificate as stored in the signature section.
    pub fn certificate_pem(&self) -> &[u8] {
        &self.certificate_pem
    }

    /// The certificate's DER (what PCR8 measures).
    pub fn certificate_der(&self) -> &[u8] {
        &self.certificate_der
    }

    /// The certificate's subject, RFC 4514 style.
    pub fn subject(&self) -> String {
        self.certificate.tbs_certificate.subject.to_string()
    }

    /// PCR8 of images signed by this signer.
    pub fn pcr8(&self) -> Pcr {
        measure(&self.certificate_der)
    }

    /// Checks the certificate's validity period at `at`.
    pub fn check_validity(&self, at: SystemTime) -> Result<(), SignError> {
        check_validity(&self.certificate, at)
    }

    /// The signature section for an image whose PCR0 is `pcr0`.
    pub fn signature_section(&self, pcr0: &Pcr) -> Result<Vec<u8>, SignError> {
        let payload = cose::to_cbor(&PcrInfo {
            register_index: 0,
            register_value: pcr0.to_vec(),
        });
        let to_sign = cose::sig_structure(&PROTECTED_ES384, &payload);
        // `Signer` for p384 hashes with SHA-384 and derives the nonce per RFC 6979.
        let signature: Signature = self
            .key
            .try_sign(&to_sign)
            .map_err(|e| SignError::Signing(e.to_string()))?;
        let cose_sign1 = CoseSign1 {
            protected: PROTECTED_ES384.to_vec(),
            unprotected: Vec::new(),
            payload,
            signature: signature.to_bytes().to_vec(),
        };
        Ok(cose::encode_signature_section(&[PcrSignature {
            signing_certificate: self.certificate_pem.clone(),
            signature: cose_sign1.to_bytes(),
        }]))
    }
}

/// What a verified signature section tells about its signer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedSignature {
    /// PCR8 (the measured certificate).
    pub pcr8: Pcr,
    /// The certificate's subject.
    pub subject: String,
    /// The certificate's validity start.
    pub not_before: SystemTime,
    /// The certificate's validity end.
    pub not_after: SystemTime,
    /// The certificate's DER.
    pub certificate_der: Vec<u8>,
}

/// Parses a signature section's first entry and its certificate; returns the certificate, its
/// DER, and the COSE_Sign1. Shared by verification and PCR8 computation.
pub(crate) fn parse_section(
    section: &[u8],
) -> Result<(Certificate, Vec<u8>, CoseSign1), SignError> {
    let entries = cose::decode_signature_section(section)?;
    // Like the official reader, only the first entry (the PCR0 signature) is considered.
    let entry = entries.into_iter().next().ok_or(CoseError::Empty)?;
    let der = pcr::certificate_der(&entry.signing_certificate)
        .map_err(|e| SignError::Certificate(e.to_string()))?;
    let cert = Certificate::from_der(&der).map_err(|e| SignError::Certificate(e.to_string()))?;
    let cose_sign1 = CoseSign1::from_bytes(&entry.signature)?;
    Ok((cert, der, cose_sign1))
}

/// PCR8 of a signature section (the measurement of its certificate).
pub fn pcr8_of_section(section: &[u8]) -> Result<Pcr, SignError> {
    let (_, der, _) = parse_section(section)?;
    Ok(measure(&der))
}

/// Verifies a signature section for an image whose computed PCR0 is `pcr0`: the COSE signature
/// against the embedded certificate's key, the signed value against `pcr0`, and the
/// certificate's validity at `at`.
pub fn verify_signature_section(
    section: &[u8],
    pcr0: &Pcr,
    at: SystemTime,
) -> Result<VerifiedSignature, SignError> {
    let (cert, der, cose_sign1) = parse_section(section)?;
    let key = certificate_key(&cert)?;
    cose_sign1.require_es384()?;
    let signature =
        Signature::from_slice(&cose_sign1.signature).map_err(|_| SignError::BadSignature)?;
    key.verify(&cose_sign1.sig_structure(), &signature)
        .map_err(|_| SignError::BadSignature)?;
    let info: PcrInfo = cose::from_cbor(&cose_sign1.payload, "signed PCR payload")?;
    if info.register_index != 0 {
        return Err(SignError::WrongRegister(info.register_index));
    }
    if info.register_value.as_slice() != pcr0.as_slice() {
        return Err(SignError::Pcr0Mismatch {
            signed: hex::encode(&info.register_value),
            computed: hex::encode(pcr0),
        });
    }
    check_validity(&cert, at)?;
    let validity = &cert.tbs_certificate.validity;
    Ok(VerifiedSignature {
        pcr8: measure(&der),
        subject: cert.tbs_certificate.subject.to_string(),
        not_before: validity.not_before.to_system_time(),
        not_after: validity.not_after.to_system_time(),
        certificate_der: der,
    })
}

/// Checks that `at` lies within the certificate's validity period (bounds included).
pub fn check_validity(cert: &Certificate, at: SystemTime) -> Result<(), SignError> {
    let validity = &cert.tbs_certificate.validity;
    if at < validity.not_before.to_system_time() {
        return Err(SignError::NotYetValid {
            not_before: validity.not_before.to_string(),
        });
    }
    if at > validity.not_after.to_system_time() {
        return Err(SignError::Expired {
            not_after: validity.not_after.to_string(),
        });
    }
    Ok(())
}

/// The certificate's public key, which must be ECDSA P-384.
fn certificate_key(cert: &Certificate) -> Result<VerifyingKey, SignError> {
    let spki = &cert.tbs_certificate.subject_public_key_info;
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<Oid>().ok());
    if spki.algorithm.oid != OID_EC_PUBLIC_KEY || curve != Some(OID_SECP384R1) {
        return Err(SignError::WrongCertificateKeyType {
            found: describe_key(spki.algorithm.oid, curve),
        });
    }
    VerifyingKey::from_sec1_bytes(spki.subject_public_key.raw_bytes())
        .map_err(|e| SignError::Certificate(format!("invalid P-384 public key: {e}")))
}

/// Decodes a private key, naming its type when it is not ECDSA P-384.
fn parse_private_key(input: &[u8]) -> Result<p384::SecretKey, SignError> {
    const LABELS: &[&str] = &[
        "PRIVATE KEY",
        "EC PRIVATE KEY",
        "RSA PRIVATE KEY",
        "DSA PRIVATE KEY",
        "ENCRYPTED PRIVATE KEY",
        "OPENSSH PRIVATE KEY",
    ];
    if !looks_like_pem(input) {
        // DER: PKCS#8 is by far the most common; fall back to SEC1.
        return parse_pkcs8(input).or_else(|pkcs8_err| parse_sec1(input).map_err(|_| pkcs8_err));
    }
    let Some((label, block)) = pcr::pem_blocks(input).find(|(l, _)| LABELS.contains(&l.as_str()))
    else {
        return Err(SignError::Key(
            "no PRIVATE KEY or EC PRIVATE KEY PEM block found".into(),
        ));
    };
    // Legacy OpenSSL encryption puts `Proc-Type: 4,ENCRYPTED` headers inside the block.
    if label == "ENCRYPTED PRIVATE KEY" || block.windows(9).any(|w| w == b"Proc-Type") {
        return Err(SignError::EncryptedKey);
    }
    let found = match label.as_str() {
        "RSA PRIVATE KEY" => Some("RSA"),
        "DSA PRIVATE KEY" => Some("DSA"),
        "OPENSSH PRIVATE KEY" => Some("an OpenSSH-format key"),
        _ => None,
    };
    if let Some(found) = found {
        return Err(SignError::WrongKeyType {
            found: found.into(),
        });
    }
    let (_, der) = der::pem::decode_vec(block).map_err(|e| SignError::Key(e.to_string()))?;
    if label == "EC PRIVATE KEY" {
        parse_sec1(&der)
    } else {
        parse_pkcs8(&der)
    }
}

fn parse_pkcs8(der: &[u8]) -> Result<p384::SecretKey, SignError> {
    let info = p384::pkcs8::PrivateKeyInfo::try_from(der)
        .map_err(|e| SignError::Key(format!("not a PKCS#8 private key: {e}")))?;
    let curve = info.algorithm.parameters_oid().ok();
    if info.algorithm.oid != OID_EC_PUBLIC_KEY || curve != Some(OID_SECP384R1) {
        return Err(SignError::WrongKeyType {
            found: describe_key(info.algorithm.oid, curve),
        });
    }
    p384::SecretKey::from_pkcs8_der(der).map_err(|e| SignError::Key(e.to_string()))
}

fn parse_sec1(der: &[u8]) -> Result<p384::SecretKey, SignError> {
    let key = sec1::EcPrivateKey::try_from(der)
        .map_err(|e| SignError::Key(format!("not a SEC1 EC private key: {e}")))?;
    // Without explicit parameters the curve is implied; the scalar length tells P-384 apart.
    let curve = key.parameters.and_then(|p| p.named_curve());
    match curve {
        Some(oid) if oid != OID_SECP384R1 => {
            return Err(SignError::WrongKeyType {
                found: describe_key(OID_EC_PUBLIC_KEY, Some(oid)),
            })
        }
        None if key.private_key.len() != 48 => {
            return Err(SignError::WrongKeyType {
                found: format!("an EC key with a {}-byte scalar", key.private_key.len()),
            })
        }
        _ => {}
    }
    p384::SecretKey::from_sec1_der(der).map_err(|e| SignError::Key(e.to_string()))
}

/// A human name for a key algorithm (and curve, for EC keys).
fn describe_key(algorithm: Oid, curve: Option<Oid>) -> String {
    let name = match algorithm.to_string().as_str() {
        "1.2.840.113549.1.1.1" => "RSA",
        "1.2.840.113549.1.1.10" => "RSA-PSS",
        "1.2.840.10040.4.1" => "DSA",
        "1.3.101.112" => "Ed25519",
        "1.3.101.113" => "Ed448",
        "1.3.101.110" => "X25519",
        "1.3.101.111" => "X448",
        "1.2.840.10045.2.1" => {
            let curve_name = curve.map(|c| match c.to_string().as_str() {
                "1.2.840.10045.3.1.7" => "P-256".to_string(),
                "1.3.132.0.34" => "P-384".to_string(),
                "1.3.132.0.35" => "P-521".to_string(),
                "1.3.132.0.10" => "secp256k1".to_string(),
                other => format!("curve {other}"),
            });
            return match curve_name {
                Some(c) => format!("ECDSA {c}"),
                None => "an EC key without a named curve".into(),
            };
        }
        other => return format!("an unsupported key type (algorithm OID {other})"),
    };
    name.to_string()
}
