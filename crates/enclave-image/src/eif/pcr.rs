//! Measurements: the PCR values Nitro computes when it boots an EIF.
//!
//! Each PCR starts at 48 zero bytes and is extended once with the SHA-384 of its data:
//! `PCR = SHA384(0^48 || SHA384(data))`.

use serde::Serialize;
use sha2::{Digest, Sha384};
use thiserror::Error;

/// Size of a SHA-384 PCR.
pub const PCR_LEN: usize = 48;

/// One PCR value.
pub type Pcr = [u8; PCR_LEN];

/// What `nitro-cli build-enclave` prints as `HashAlgorithm` (the `Debug` output of sha2 0.9's
/// `Sha384`, which nitro-cli releases are built with). The official crate 0.8.1, built against
/// sha2 0.10, would print `Sha512_48 { .. }` instead; tools match the nitro-cli string.
pub const HASH_ALGORITHM: &str = "Sha384 { ... }";

/// Extends a zeroed PCR with an already computed SHA-384 `digest`.
pub fn extend(digest: &[u8; PCR_LEN]) -> Pcr {
    let mut h = Sha384::new();
    h.update([0u8; PCR_LEN]);
    h.update(digest);
    h.finalize().into()
}

/// The PCR of `data` measured alone: `extend(SHA384(data))`.
pub fn measure(data: &[u8]) -> Pcr {
    extend(&Sha384::digest(data).into())
}

/// Errors reading a certificate for PCR8.
#[derive(Debug, Error)]
pub enum CertificateError {
    /// The PEM text has no `CERTIFICATE` block or the block is malformed.
    #[error("no valid PEM CERTIFICATE block: {0}")]
    Pem(String),
    /// The DER is not an X.509 certificate.
    #[error("not an X.509 certificate: {0}")]
    Der(#[from] der::Error),
}

/// PCR8 for a signing certificate given as PEM (the first `CERTIFICATE` block is used, as
/// OpenSSL does) or DER: the extend of the SHA-384 of its DER encoding.
pub fn pcr8_of_certificate(pem_or_der: &[u8]) -> Result<Pcr, CertificateError> {
    let der = certificate_der(pem_or_der)?;
    Ok(measure(&der))
}

/// The DER of the first certificate in `pem_or_der`, checked to parse as X.509.
pub(crate) fn certificate_der(pem_or_der: &[u8]) -> Result<Vec<u8>, CertificateError> {
    use der::Decode;
    let der = if looks_like_pem(pem_or_der) {
        let (_, der) = first_pem_block(pem_or_der, &["CERTIFICATE"])
            .ok_or_else(|| CertificateError::Pem("no CERTIFICATE block found".into()))?;
        der
    } else {
        pem_or_der.to_vec()
    };
    x509_cert::Certificate::from_der(&der)?;
    Ok(der)
}

/// Whether the input starts (after whitespace) with a PEM armour line.
pub(crate) fn looks_like_pem(bytes: &[u8]) -> bool {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    bytes[start..].starts_with(b"-----BEGIN ")
}

/// Finds the first PEM block whose label is in `labels` and decodes it. Other blocks (e.g. the
/// `EC PARAMETERS` block `openssl ecparam -genkey` puts before the key) are skipped. Returns the
/// label and the DER bytes, or `None` when no such block decodes.
pub(crate) fn first_pem_block(text: &[u8], labels: &[&str]) -> Option<(String, Vec<u8>)> {
    pem_blocks(text)
        .filter(|(label, _)| labels.contains(&label.as_str()))
        .find_map(|(_, block)| {
            der::pem::decode_vec(block)
                .ok()
                .map(|(label, der)| (label.to_string(), der))
        })
}

/// Every `-----BEGIN L-----` … `-----END L-----` block in `text`, with its label.
pub(crate) fn pem_blocks(text: &[u8]) -> impl Iterator<Item = (String, &[u8])> {
    const BEGIN: &[u8] = b"-----BEGIN ";
    let mut rest = text;
    std::iter::from_fn(move || loop {
        let start = find(rest, BEGIN)?;
        let after_begin = &rest[start + BEGIN.len()..];
        let label_end = find(after_begin, b"-----")?;
        let label = String::from_utf8_lossy(&after_begin[..label_end]).into_owned();
        let end_marker = format!("-----END {label}-----");
        let Some(end) = find(after_begin, end_marker.as_bytes()) else {
            rest = after_begin;
            continue;
        };
        let block_end = start + BEGIN.len() + end + end_marker.len();
        let block = &rest[start..block_end];
        rest = &rest[block_end..];
        return Some((label, block));
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The measurements of an EIF: PCR0 (whole image), PCR1 (kernel, cmdline, bootstrap ramdisk),
/// PCR2 (app ramdisks) and, for a signed image, PCR8 (signing certificate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measurements {
    /// kernel ‖ cmdline ‖ every ramdisk.
    pub pcr0: Pcr,
    /// kernel ‖ cmdline ‖ ramdisk 0.
    pub pcr1: Pcr,
    /// ramdisk 1 ‖ ramdisk 2 ‖ ….
    pub pcr2: Pcr,
    /// The signing certificate's DER, when the image is signed.
    pub pcr8: Option<Pcr>,
}

/// The JSON `nitro-cli build-enclave` prints: `{"Measurements": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NitroCliMeasurements {
    /// The measurements, keys as nitro-cli spells them.
    #[serde(rename = "Measurements")]
    pub measurements: NitroCliPcrs,
}

/// The inner object of [`NitroCliMeasurements`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NitroCliPcrs {
    /// Always [`HASH_ALGORITHM`].
    #[serde(rename = "HashAlgorithm")]
    pub hash_algorithm: String,
    /// PCR0, lower-case hex.
    #[serde(rename = "PCR0")]
    pub pcr0: String,
    /// PCR1, lower-case hex.
    #[serde(rename = "PCR1")]
    pub pcr1: String,
    /// PCR2, lower-case hex.
    #[serde(rename = "PCR2")]
    pub pcr2: String,
    /// PCR8, lower-case hex, only for signed images.
    #[serde(rename = "PCR8", skip_serializing_if = "Option::is_none")]
    pub pcr8: Option<String>,
}

impl Measurements {
    /// PCR0 in lower-case hex.
    pub fn pcr0_hex(&self) -> String {
        hex::encode(self.pcr0)
    }
    /// PCR1 in lower-case hex.
    pub fn pcr1_hex(&self) -> String {
        hex::encode(self.pcr1)
    }
    /// PCR2 in lower-case hex.
    pub fn pcr2_hex(&self) -> String {
        hex::encode(self.pcr2)
    }
    /// PCR8 in lower-case hex, for signed images.
    pub fn pcr8_hex(&self) -> Option<String> {
        self.pcr8.map(hex::encode)
    }

    /// The nitro-cli shape, ready for `serde_json::to_string_pretty`.
    pub fn to_nitro_cli(&self) -> NitroCliMeasurements {
        NitroCliMeasurements {
            measurements: NitroCliPcrs {
                hash_algorithm: HASH_ALGORITHM.to_string(),
                pcr0: self.pcr0_hex(),
                pcr1: self.pcr1_hex(),
                pcr2: self.pcr2_hex(),
                pcr8: self.pcr8_hex(),
            },
        }
    }

    /// The flat map of the official crate's `get_pcrs` (`HashAlgorithm`, `PCR0`…), with
    /// nitro-cli's `HashAlgorithm` string.
    pub fn to_map(&self) -> std::collections::BTreeMap<String, String> {
        let mut map = std::collections::BTreeMap::new();
        map.insert("HashAlgorithm".to_string(), HASH_ALGORITHM.to_string());
        map.insert("PCR0".to_string(), self.pcr0_hex());
        map.insert("PCR1".to_string(), self.pcr1_hex());
        map.insert("PCR2".to_string(), self.pcr2_hex());
        if let Some(pcr8) = self.pcr8_hex() {
            map.insert("PCR8".to_string(), pcr8);
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measure_is_extend_of_digest() {
        let mut manual = Sha384::new();
        manual.update([0u8; 48]);
        manual.update(Sha384::digest(b"abc"));
        assert_eq!(measure(b"abc").to_vec(), manual.finalize().to_vec());
    }

    #[test]
    fn nitro_cli_json_shape() {
        let m = Measurements {
            pcr0: [0; 48],
            pcr1: [1; 48],
            pcr2: [2; 48],
            pcr8: None,
        };
        let v = serde_json::to_value(m.to_nitro_cli()).unwrap_or_default();
        let inner = &v["Measurements"];
        assert_eq!(inner["HashAlgorithm"], "Sha384 { ... }");
        assert_eq!(inner["PCR1"], "01".repeat(48));
        assert!(inner.get("PCR8").is_none());
        let signed = Measurements {
            pcr8: Some([8; 48]),
            ..m
        };
        let v = serde_json::to_value(signed.to_nitro_cli()).unwrap_or_default();
        assert_eq!(v["Measurements"]["PCR8"], "08".repeat(48));
    }

    #[test]
    fn pem_blocks_skip_other_labels() {
        let text = b"junk\n-----BEGIN EC PARAMETERS-----\nBgUrgQQAIg==\n-----END EC PARAMETERS-----\n-----BEGIN FOO-----\nAAAA\n-----END FOO-----\n";
        let labels: Vec<String> = pem_blocks(text).map(|(l, _)| l).collect();
        assert_eq!(labels, ["EC PARAMETERS", "FOO"]);
        let (label, der) = first_pem_block(text, &["FOO"]).unwrap_or_default();
        assert_eq!(label, "FOO");
        assert_eq!(der, [0, 0, 0]);
        assert!(first_pem_block(b"-----BEGIN FOO-----", &["FOO"]).is_none());
    }
}
