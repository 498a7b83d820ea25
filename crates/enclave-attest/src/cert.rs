//! One X.509 certificate as the chain walk needs it: parsed, with the exact TBS bytes its
//! signature covers, its key, validity and the extensions we enforce.

use const_oid::db::rfc5912::{
    ECDSA_WITH_SHA_256, ECDSA_WITH_SHA_384, ECDSA_WITH_SHA_512, ID_CE_AUTHORITY_KEY_IDENTIFIER,
    ID_CE_BASIC_CONSTRAINTS, ID_CE_CRL_DISTRIBUTION_POINTS, ID_CE_KEY_USAGE,
    ID_CE_SUBJECT_ALT_NAME, ID_CE_SUBJECT_KEY_IDENTIFIER, ID_EC_PUBLIC_KEY, SECP_256_R_1,
    SECP_384_R_1,
};
use der::{asn1::ObjectIdentifier, Decode, Encode, Reader, SliceReader};
use ecdsa::signature::hazmat::PrehashVerifier;
use sha2::{Digest, Sha256, Sha384, Sha512};
use time::OffsetDateTime;
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage};
use x509_cert::Certificate;

use crate::error::{CertPosition, ChainFault};
use crate::p384_verify::Hash;
use crate::Error;

/// A public key that can verify certificate signatures.
#[derive(Debug, Clone)]
pub(crate) enum PublicKey {
    P384(p384::ecdsa::VerifyingKey),
    P256(p256::ecdsa::VerifyingKey),
}

impl PublicKey {
    /// Verifies a DER ECDSA signature over `message` hashed with `hash`. High-S signatures are
    /// accepted: (r, s) and (r, n - s) are equally valid ECDSA and X.509 does not require low-S.
    fn verify(&self, message: &[u8], hash: Hash, sig_der: &[u8]) -> bool {
        match self {
            PublicKey::P384(k) => p384::ecdsa::Signature::from_der(sig_der)
                .is_ok_and(|s| crate::p384_verify::verify(k, message, hash, &s)),
            PublicKey::P256(k) => {
                let prehash = match hash {
                    Hash::Sha256 => Sha256::digest(message).to_vec(),
                    Hash::Sha384 => Sha384::digest(message).to_vec(),
                    Hash::Sha512 => Sha512::digest(message).to_vec(),
                };
                p256::ecdsa::Signature::from_der(sig_der)
                    .map(|s| s.normalize_s().unwrap_or(s))
                    .is_ok_and(|s| k.verify_prehash(&prehash, &s).is_ok())
            }
        }
    }
}

/// Facts from the extensions that the chain walk enforces.
#[derive(Debug, Clone, Default)]
pub(crate) struct Constraints {
    /// basicConstraints: (cA, pathLenConstraint).
    pub basic: Option<(bool, Option<u8>)>,
    /// keyUsage, when present.
    pub key_usage: Option<KeyUsage>,
}

/// A parsed certificate.
#[derive(Debug, Clone)]
pub(crate) struct ParsedCert<'a> {
    pub der: &'a [u8],
    /// The TBSCertificate bytes exactly as in `der`: signatures are checked over these, never
    /// over a re-encoding.
    tbs: &'a [u8],
    pub cert: Certificate,
    pub key: PublicKey,
    pub constraints: Constraints,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl<'a> ParsedCert<'a> {
    /// Parses `der` and decodes what we enforce; `which` names it in errors.
    pub fn parse(der: &'a [u8], which: CertPosition) -> Result<Self, Error> {
        let bad = |reason: String| Error::BadCertificate { which, reason };
        let cert = Certificate::from_der(der).map_err(|e| bad(e.to_string()))?;
        let tbs = tbs_slice(der).map_err(|e| bad(format!("locating TBSCertificate: {e}")))?;
        // RFC 5280 4.1.1.2: the outer and inner algorithm identifiers must agree.
        if cert.signature_algorithm != cert.tbs_certificate.signature {
            return Err(bad(
                "signatureAlgorithm differs from the TBSCertificate's signature field".into(),
            ));
        }
        let key = public_key(&cert).map_err(|reason| Error::ChainBroken { which, reason })?;
        let constraints =
            constraints(&cert).map_err(|reason| Error::ChainBroken { which, reason })?;
        let validity = &cert.tbs_certificate.validity;
        let not_before = to_time(validity.not_before.to_unix_duration()).map_err(bad)?;
        let not_after = to_time(validity.not_after.to_unix_duration()).map_err(bad)?;
        Ok(ParsedCert {
            der,
            tbs,
            cert,
            key,
            constraints,
            not_before,
            not_after,
        })
    }

    /// Checks `at` lies within notBefore..=notAfter.
    pub fn check_validity(&self, which: CertPosition, at: OffsetDateTime) -> Result<(), Error> {
        if at > self.not_after {
            return Err(Error::Expired {
                which,
                not_after: self.not_after,
                at,
            });
        }
        if at < self.not_before {
            return Err(Error::NotYetValid {
                which,
                not_before: self.not_before,
                at,
            });
        }
        Ok(())
    }

    /// Checks this certificate's signature with `issuer_key`.
    pub fn check_signature(&self, issuer_key: &PublicKey) -> Result<(), ChainFault> {
        let alg = self.cert.signature_algorithm.oid;
        // ecdsa-with-SHA* identifiers carry no parameters (RFC 5758 3.2).
        if self.cert.signature_algorithm.parameters.is_some() {
            return Err(ChainFault::UnsupportedAlgorithm(format!(
                "{alg} with parameters"
            )));
        }
        let hash = match alg {
            ECDSA_WITH_SHA_256 => Hash::Sha256,
            ECDSA_WITH_SHA_384 => Hash::Sha384,
            ECDSA_WITH_SHA_512 => Hash::Sha512,
            other => {
                return Err(ChainFault::UnsupportedAlgorithm(format!(
                    "signature algorithm {other}"
                )))
            }
        };
        let sig = self
            .cert
            .signature
            .as_bytes()
            .ok_or(ChainFault::BadSignature)?;
        if issuer_key.verify(self.tbs, hash, sig) {
            Ok(())
        } else {
            Err(ChainFault::BadSignature)
        }
    }

    /// The subject name's DER (names are compared byte for byte, as most verifiers do).
    pub fn subject_der(&self) -> Vec<u8> {
        self.cert
            .tbs_certificate
            .subject
            .to_der()
            .unwrap_or_default()
    }

    /// The issuer name's DER.
    pub fn issuer_der(&self) -> Vec<u8> {
        self.cert
            .tbs_certificate
            .issuer
            .to_der()
            .unwrap_or_default()
    }
}

fn to_time(d: std::time::Duration) -> Result<OffsetDateTime, String> {
    let secs = i64::try_from(d.as_secs()).map_err(|_| "validity time out of range".to_string())?;
    OffsetDateTime::from_unix_timestamp(secs).map_err(|e| format!("validity time: {e}"))
}

/// Returns the TBSCertificate element (header included) of a DER Certificate.
fn tbs_slice(der: &[u8]) -> der::Result<&[u8]> {
    let mut reader = SliceReader::new(der)?;
    let _outer = der::Header::decode(&mut reader)?;
    let start = u32::from(reader.position()) as usize;
    let header = der::Header::decode(&mut reader)?;
    let end = start + u32::from((header.encoded_len()? + header.length)?) as usize;
    der.get(start..end).ok_or_else(|| {
        der::ErrorKind::Incomplete {
            expected_len: der::Length::ZERO,
            actual_len: der::Length::ZERO,
        }
        .into()
    })
}

/// The subject's key: an EC key on P-384 or P-256.
fn public_key(cert: &Certificate) -> Result<PublicKey, ChainFault> {
    let spki = &cert.tbs_certificate.subject_public_key_info;
    if spki.algorithm.oid != ID_EC_PUBLIC_KEY {
        return Err(ChainFault::UnsupportedAlgorithm(format!(
            "key algorithm {}",
            spki.algorithm.oid
        )));
    }
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<ObjectIdentifier>().ok())
        .ok_or_else(|| ChainFault::UnsupportedAlgorithm("EC key without a named curve".into()))?;
    let point = spki
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| ChainFault::BadExtension("public key bit string".into()))?;
    let bad_point = |_| ChainFault::UnsupportedAlgorithm("invalid EC public key point".into());
    match curve {
        SECP_384_R_1 => Ok(PublicKey::P384(
            p384::ecdsa::VerifyingKey::from_sec1_bytes(point).map_err(bad_point)?,
        )),
        SECP_256_R_1 => Ok(PublicKey::P256(
            p256::ecdsa::VerifyingKey::from_sec1_bytes(point).map_err(bad_point)?,
        )),
        other => Err(ChainFault::UnsupportedAlgorithm(format!("curve {other}"))),
    }
}

/// Decodes basicConstraints and keyUsage, refusing duplicates and unknown critical extensions.
fn constraints(cert: &Certificate) -> Result<Constraints, ChainFault> {
    // Extensions we understand well enough to accept when critical: the two we enforce and
    // informational ones that cannot widen what a certificate may do.
    const KNOWN: [ObjectIdentifier; 6] = [
        ID_CE_BASIC_CONSTRAINTS,
        ID_CE_KEY_USAGE,
        ID_CE_SUBJECT_KEY_IDENTIFIER,
        ID_CE_AUTHORITY_KEY_IDENTIFIER,
        ID_CE_CRL_DISTRIBUTION_POINTS,
        ID_CE_SUBJECT_ALT_NAME,
    ];
    let mut out = Constraints::default();
    let exts = cert
        .tbs_certificate
        .extensions
        .as_deref()
        .unwrap_or_default();
    for (i, ext) in exts.iter().enumerate() {
        if exts[..i].iter().any(|e| e.extn_id == ext.extn_id) {
            return Err(ChainFault::DuplicateExtension(ext.extn_id.to_string()));
        }
        let value = ext.extn_value.as_bytes();
        match ext.extn_id {
            ID_CE_BASIC_CONSTRAINTS => {
                let bc = BasicConstraints::from_der(value)
                    .map_err(|e| ChainFault::BadExtension(format!("basicConstraints: {e}")))?;
                out.basic = Some((bc.ca, bc.path_len_constraint));
            }
            ID_CE_KEY_USAGE => {
                out.key_usage = Some(
                    KeyUsage::from_der(value)
                        .map_err(|e| ChainFault::BadExtension(format!("keyUsage: {e}")))?,
                );
            }
            id if ext.critical && !KNOWN.contains(&id) => {
                return Err(ChainFault::UnknownCriticalExtension(id.to_string()));
            }
            _ => {}
        }
    }
    Ok(out)
}
