//! The server's TLS identity, made in this process at start: an ECDSA P-256 key from the OS
//! random source and a self-signed certificate for it. The key exists only in memory (handed
//! to rustls), so it never comes from the image and never leaves the enclave. Trust in the
//! certificate comes from the attestation document binding its key, not from a CA.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use der::asn1::{BitString, Ia5String, OctetString, UtcTime};
use der::Encode;
use enclave_attest::binding::CERT_NAME;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{DerSignature, SigningKey};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivateSec1KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use x509_cert::certificate::{TbsCertificate, Version};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages, SubjectAltName};
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::time::{Time, Validity};
use x509_cert::Certificate;

use super::ServerError;

/// How long the certificate is valid. Clients of this crate ignore it (the document, fetched
/// fresh per connection, is what they trust); it is there for tools that insist on one.
const CERT_LIFETIME: Duration = Duration::from_secs(30 * 86_400);
/// Backdating of notBefore, for clocks slightly behind the enclave's.
const BACKDATE: Duration = Duration::from_secs(60);

/// The TLS key and its certificate. No `Debug`: the key must not end up in a log.
pub(crate) struct TlsIdentity {
    pub(crate) cert: CertificateDer<'static>,
    /// DER SubjectPublicKeyInfo of the key: what documents carry as `public_key`.
    pub(crate) spki: Vec<u8>,
    key: PrivateKeyDer<'static>,
}

fn cert_err(e: impl std::fmt::Display) -> ServerError {
    ServerError::Tls(format!("certificate: {e}"))
}

impl TlsIdentity {
    /// A fresh key and its self-signed certificate.
    pub(crate) fn generate() -> Result<TlsIdentity, ServerError> {
        let key = loop {
            let mut seed = [0u8; 32];
            getrandom::getrandom(&mut seed)
                .map_err(|e| ServerError::Tls(format!("getrandom: {e}")))?;
            // Fails only for 0 or values >= n (probability about 2^-32).
            if let Ok(k) = SigningKey::from_slice(&seed) {
                break k;
            }
        };
        let point = key.verifying_key().to_encoded_point(false);
        let spki = SubjectPublicKeyInfoOwned {
            algorithm: AlgorithmIdentifierOwned {
                oid: const_oid::db::rfc5912::ID_EC_PUBLIC_KEY,
                parameters: Some(
                    der::Any::encode_from(&const_oid::db::rfc5912::SECP_256_R_1)
                        .map_err(cert_err)?,
                ),
            },
            subject_public_key: BitString::from_bytes(point.as_bytes()).map_err(cert_err)?,
        };
        let cert = self_signed(&key, spki.clone())?;
        let sec1 = p256::SecretKey::from(&key)
            .to_sec1_der()
            .map_err(|e| ServerError::Tls(format!("key encoding: {e}")))?;
        Ok(TlsIdentity {
            cert: CertificateDer::from(cert),
            spki: spki.to_der().map_err(cert_err)?,
            key: PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(sec1.to_vec())),
        })
    }

    /// A rustls configuration serving this identity; with `client_ca` (PEM certificates, as in
    /// the spec) clients must present a certificate chaining to one of them.
    pub(crate) fn server_config(
        &self,
        client_ca: &[String],
    ) -> Result<rustls::ServerConfig, ServerError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| ServerError::Tls(e.to_string()))?;
        let builder = if client_ca.is_empty() {
            builder.with_no_client_auth()
        } else {
            let mut roots = RootCertStore::empty();
            for (i, pem) in client_ca.iter().enumerate() {
                let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| ServerError::ClientCa(format!("entry {i}: {e}")))?;
                if certs.is_empty() {
                    return Err(ServerError::ClientCa(format!("entry {i}: no certificate")));
                }
                for cert in certs {
                    roots
                        .add(cert)
                        .map_err(|e| ServerError::ClientCa(format!("entry {i}: {e}")))?;
                }
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| ServerError::ClientCa(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        };
        let mut config = builder
            .with_single_cert(vec![self.cert.clone()], self.key.clone_key())
            .map_err(|e| ServerError::Tls(e.to_string()))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// A v3 certificate `CN=enclave-attest` for `spki`, signed by its own key (ECDSA-SHA256): not a
/// CA, digitalSignature only, SAN `DNS:enclave-attest`.
fn self_signed(key: &SigningKey, spki: SubjectPublicKeyInfoOwned) -> Result<Vec<u8>, ServerError> {
    let alg = AlgorithmIdentifierOwned {
        oid: const_oid::db::rfc5912::ECDSA_WITH_SHA_256,
        parameters: None,
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let time = |d: Duration| {
        UtcTime::from_unix_duration(Duration::from_secs(d.as_secs()))
            .map(Time::UtcTime)
            .map_err(cert_err)
    };
    let ext = |oid, critical, value: Vec<u8>| -> Result<Extension, ServerError> {
        Ok(Extension {
            extn_id: oid,
            critical,
            extn_value: OctetString::new(value).map_err(cert_err)?,
        })
    };
    let mut serial = [0u8; 16];
    getrandom::getrandom(&mut serial).map_err(|e| ServerError::Tls(format!("getrandom: {e}")))?;
    // Positive and without a leading zero byte: a canonical 16-byte INTEGER.
    serial[0] = (serial[0] & 0x7f) | 0x01;
    let name = Name::from_str(&format!("CN={CERT_NAME}")).map_err(cert_err)?;
    let san = SubjectAltName(vec![GeneralName::DnsName(
        Ia5String::new(CERT_NAME).map_err(cert_err)?,
    )]);
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: SerialNumber::new(&serial).map_err(cert_err)?,
        signature: alg.clone(),
        issuer: name.clone(),
        validity: Validity {
            not_before: time(now.saturating_sub(BACKDATE))?,
            not_after: time(now + CERT_LIFETIME)?,
        },
        subject: name,
        subject_public_key_info: spki,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(vec![
            ext(
                const_oid::db::rfc5912::ID_CE_BASIC_CONSTRAINTS,
                true,
                BasicConstraints {
                    ca: false,
                    path_len_constraint: None,
                }
                .to_der()
                .map_err(cert_err)?,
            )?,
            ext(
                const_oid::db::rfc5912::ID_CE_KEY_USAGE,
                true,
                KeyUsage(KeyUsages::DigitalSignature.into())
                    .to_der()
                    .map_err(cert_err)?,
            )?,
            ext(
                const_oid::db::rfc5912::ID_CE_SUBJECT_ALT_NAME,
                false,
                san.to_der().map_err(cert_err)?,
            )?,
        ]),
    };
    let signature: DerSignature = key.sign(&tbs.to_der().map_err(cert_err)?);
    Certificate {
        tbs_certificate: tbs,
        signature_algorithm: alg,
        signature: BitString::from_bytes(signature.as_bytes()).map_err(cert_err)?,
    }
    .to_der()
    .map_err(cert_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use enclave_attest::binding::cert_spki;

    #[test]
    fn identity_is_usable_by_rustls_and_binds_its_own_key() {
        let id = TlsIdentity::generate().unwrap();
        assert_eq!(cert_spki(&id.cert).as_deref(), Some(&id.spki[..]));
        assert_eq!(
            id.spki.len(),
            91,
            "P-256 SubjectPublicKeyInfo, as documented"
        );
        // rustls accepts the key and certificate (the handshake is tested in tests/server.rs).
        id.server_config(&[]).unwrap();
        assert_ne!(TlsIdentity::generate().unwrap().spki, id.spki, "fresh key");
    }
}
