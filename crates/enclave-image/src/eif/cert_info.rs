//! The signing certificate as `nitro-cli describe-eif` shows it (`SigningCertificate`):
//! issuer, signature algorithm, validity and signature.

use std::collections::BTreeMap;

use serde::Serialize;
use x509_cert::Certificate;

use super::sign::{parse_section, SignError};

/// `SigningCertificate` of describe-eif.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertificateInfo {
    /// Issuer attributes by long name (`commonName`, `organizationName`…).
    #[serde(rename = "IssuerName")]
    pub issuer_name: BTreeMap<String, String>,
    /// Subject, RFC 4514.
    #[serde(rename = "Subject")]
    pub subject: String,
    /// Signature algorithm, e.g. `ecdsa-with-SHA384`.
    #[serde(rename = "Algorithm")]
    pub algorithm: String,
    /// Start of validity, as OpenSSL prints it (`Nov 21 08:00:00 2026 GMT`).
    #[serde(rename = "NotBefore")]
    pub not_before: String,
    /// End of validity.
    #[serde(rename = "NotAfter")]
    pub not_after: String,
    /// The certificate's signature, upper-case hex bytes separated by colons.
    #[serde(rename = "Signature")]
    pub signature: String,
}

/// Describes the certificate of a signature section.
pub fn certificate_info(section: &[u8]) -> Result<CertificateInfo, SignError> {
    let (cert, _, _) = parse_section(section)?;
    Ok(describe(&cert))
}

fn describe(cert: &Certificate) -> CertificateInfo {
    let tbs = &cert.tbs_certificate;
    let mut issuer_name = BTreeMap::new();
    for rdn in tbs.issuer.0.iter() {
        for atv in rdn.0.iter() {
            // Display gives RFC 4514 `CN=value`; the key is replaced by OpenSSL's long name.
            let text = atv.to_string();
            let value = text.split_once('=').map_or(text.as_str(), |(_, v)| v);
            issuer_name.insert(attribute_name(&atv.oid.to_string()), value.to_owned());
        }
    }
    let signature = cert
        .signature
        .raw_bytes()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    CertificateInfo {
        issuer_name,
        subject: tbs.subject.to_string(),
        algorithm: algorithm_name(&cert.signature_algorithm.oid.to_string()),
        not_before: openssl_time(tbs.validity.not_before.to_unix_duration().as_secs()),
        not_after: openssl_time(tbs.validity.not_after.to_unix_duration().as_secs()),
        signature,
    }
}

fn attribute_name(oid: &str) -> String {
    match oid {
        "2.5.4.3" => "commonName",
        "2.5.4.6" => "countryName",
        "2.5.4.7" => "localityName",
        "2.5.4.8" => "stateOrProvinceName",
        "2.5.4.10" => "organizationName",
        "2.5.4.11" => "organizationalUnitName",
        "1.2.840.113549.1.9.1" => "emailAddress",
        other => other,
    }
    .to_owned()
}

fn algorithm_name(oid: &str) -> String {
    match oid {
        "1.2.840.10045.4.3.2" => "ecdsa-with-SHA256",
        "1.2.840.10045.4.3.3" => "ecdsa-with-SHA384",
        "1.2.840.10045.4.3.4" => "ecdsa-with-SHA512",
        "1.2.840.113549.1.1.11" => "sha256WithRSAEncryption",
        "1.2.840.113549.1.1.12" => "sha384WithRSAEncryption",
        other => other,
    }
    .to_owned()
}

/// `Nov 21 08:00:00 2026 GMT`, OpenSSL's ASN1_TIME print format.
fn openssl_time(secs: u64) -> String {
    let fmt = time::macros::format_description!(
        "[month repr:short] [day padding:space] [hour]:[minute]:[second] [year] GMT"
    );
    i64::try_from(secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| t.format(&fmt).ok())
        .unwrap_or_else(|| format!("@{secs}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_like_openssl() {
        assert_eq!(openssl_time(0), "Jan  1 00:00:00 1970 GMT");
        assert_eq!(openssl_time(1_700_000_000), "Nov 14 22:13:20 2023 GMT");
    }

    #[test]
    fn names_map_to_long_names() {
        assert_eq!(attribute_name("2.5.4.3"), "commonName");
        assert_eq!(attribute_name("1.2.3"), "1.2.3");
        assert_eq!(algorithm_name("1.2.840.10045.4.3.3"), "ecdsa-with-SHA384");
    }
}
