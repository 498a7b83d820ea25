//! The CBOR of the signature section, byte-compatible with the official crate.
//!
//! The official crate serializes its structs with serde through ciborium, without
//! `serde_bytes`, so byte vectors become CBOR *arrays of integers*. The COSE_Sign1 inside comes
//! from `aws-nitro-enclaves-cose`, which does use byte strings, untagged
//! (`CoseSign1::as_bytes(false)`), with an empty unprotected map. Reproducing these shapes with
//! the same serde derives and the same encoder gives the same bytes.

use ciborium::value::Value;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use thiserror::Error;

/// The COSE protected header `{1: -35}` (alg: ES384), as encoded bytes.
pub const PROTECTED_ES384: [u8; 4] = [0xa1, 0x01, 0x38, 0x22];
/// The CBOR tag of a tagged COSE_Sign1 (accepted when reading, never written).
pub const COSE_SIGN1_TAG: u64 = 18;
/// COSE algorithm identifier of ECDSA P-384 with SHA-384.
pub const ALG_ES384: i64 = -35;

/// Errors decoding the signature section or its COSE_Sign1.
#[derive(Debug, Error)]
pub enum CoseError {
    /// The bytes are not the expected CBOR shape.
    #[error("invalid CBOR in {what}: {reason}")]
    Cbor {
        /// Which structure was being decoded.
        what: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// The signature section holds no PCR signature.
    #[error("the signature section holds no PCR signature")]
    Empty,
    /// The COSE_Sign1 is tagged with something other than 18.
    #[error("COSE_Sign1 has unexpected CBOR tag {0}")]
    UnexpectedTag(u64),
    /// The protected header does not say ES384.
    #[error("COSE protected header does not select ES384 (alg -35)")]
    NotEs384,
}

/// One entry of the signature section (the official `PcrSignature`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PcrSignature {
    /// The signing certificate, as the PEM text given at build time.
    pub signing_certificate: Vec<u8>,
    /// The untagged COSE_Sign1 over a [`PcrInfo`].
    pub signature: Vec<u8>,
}

/// The signed payload (the official `PcrInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PcrInfo {
    /// PCR index (0 for the only signature EIFs carry).
    pub register_index: i32,
    /// The PCR value.
    pub register_value: Vec<u8>,
}

/// Encodes any of this module's serde structs exactly as the official crate does.
pub fn to_cbor<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail, and these structs only hold strings, integers and
    // sequences, which ciborium always encodes; an error would leave `out` empty and be caught
    // by the decoder of whoever reads it.
    let _ = ciborium::into_writer(value, &mut out);
    out
}

/// Decodes CBOR, rejecting trailing bytes (as the official crate does since 0.8).
pub fn from_cbor<T: DeserializeOwned>(
    mut bytes: &[u8],
    what: &'static str,
) -> Result<T, CoseError> {
    let value = ciborium::from_reader(&mut bytes).map_err(|e| CoseError::Cbor {
        what,
        reason: e.to_string(),
    })?;
    if !bytes.is_empty() {
        return Err(CoseError::Cbor {
            what,
            reason: format!("{} trailing byte(s)", bytes.len()),
        });
    }
    Ok(value)
}

/// The signature section bytes for these entries.
pub fn encode_signature_section(entries: &[PcrSignature]) -> Vec<u8> {
    to_cbor(&entries)
}

/// Decodes a signature section; at least one entry is required.
pub fn decode_signature_section(bytes: &[u8]) -> Result<Vec<PcrSignature>, CoseError> {
    let entries: Vec<PcrSignature> = from_cbor(bytes, "signature section")?;
    if entries.is_empty() {
        return Err(CoseError::Empty);
    }
    Ok(entries)
}

/// The `Sig_structure` (RFC 9052 §4.4) signed for a COSE_Sign1 without external AAD:
/// `["Signature1", protected, h'', payload]`.
pub fn sig_structure(protected: &[u8], payload: &[u8]) -> Vec<u8> {
    to_cbor(&Value::Array(vec![
        Value::Text("Signature1".into()),
        Value::Bytes(protected.to_vec()),
        Value::Bytes(Vec::new()),
        Value::Bytes(payload.to_vec()),
    ]))
}

/// A COSE_Sign1 as EIFs carry it.
#[derive(Debug, Clone, PartialEq)]
pub struct CoseSign1 {
    /// The serialized protected header ([`PROTECTED_ES384`] for ours).
    pub protected: Vec<u8>,
    /// The unprotected header map (empty for ours).
    pub unprotected: Vec<(Value, Value)>,
    /// The signed payload (CBOR of a [`PcrInfo`]).
    pub payload: Vec<u8>,
    /// The signature, `r ‖ s`, 48 bytes each for ES384.
    pub signature: Vec<u8>,
}

impl CoseSign1 {
    /// Untagged encoding, as `aws-nitro-enclaves-cose`'s `as_bytes(false)`.
    pub fn to_bytes(&self) -> Vec<u8> {
        to_cbor(&Value::Array(vec![
            Value::Bytes(self.protected.clone()),
            Value::Map(self.unprotected.clone()),
            Value::Bytes(self.payload.clone()),
            Value::Bytes(self.signature.clone()),
        ]))
    }

    /// Decodes a tagged (18) or untagged COSE_Sign1.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CoseError> {
        let bad = |reason: &str| CoseError::Cbor {
            what: "COSE_Sign1",
            reason: reason.to_string(),
        };
        let value: Value = from_cbor(bytes, "COSE_Sign1")?;
        let value = match value {
            Value::Tag(COSE_SIGN1_TAG, inner) => *inner,
            Value::Tag(other, _) => return Err(CoseError::UnexpectedTag(other)),
            other => other,
        };
        let Value::Array(items) = value else {
            return Err(bad("not an array"));
        };
        let Ok([protected, unprotected, payload, signature]) = <[Value; 4]>::try_from(items) else {
            return Err(bad("not a 4-element array"));
        };
        let bytes_of = |v: Value, field: &str| match v {
            Value::Bytes(b) => Ok(b),
            _ => Err(bad(&format!("{field} is not a byte string"))),
        };
        let Value::Map(unprotected) = unprotected else {
            return Err(bad("unprotected header is not a map"));
        };
        Ok(CoseSign1 {
            protected: bytes_of(protected, "protected header")?,
            unprotected,
            payload: bytes_of(payload, "payload")?,
            signature: bytes_of(signature, "signature")?,
        })
    }

    /// Checks that the protected header is a map whose `alg` (label 1) is ES384.
    pub fn require_es384(&self) -> Result<(), CoseError> {
        let header: Value = from_cbor(&self.protected, "COSE protected header")?;
        let Value::Map(entries) = header else {
            return Err(CoseError::NotEs384);
        };
        let alg = entries.iter().find_map(|(k, v)| match (k, v) {
            (Value::Integer(k), Value::Integer(v)) if i128::from(*k) == 1 => Some(i128::from(*v)),
            _ => None,
        });
        if alg == Some(i128::from(ALG_ES384)) {
            Ok(())
        } else {
            Err(CoseError::NotEs384)
        }
    }

    /// The bytes the signature covers.
    pub fn sig_structure(&self) -> Vec<u8> {
        sig_structure(&self.protected, &self.payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // From the official crate's `utils::cbor` tests (bytes of its 0.8.0 encoder).
    const PCR_INFO_0_8_0: &str = "a26e72656769737465725f696e646578006e72656769737465725f76616c75659830000102030405060708090a0b0c0d0e0f101112131415161718181819181a181b181c181d181e181f1820182118221823182418251826182718281829182a182b182c182d182e182f";
    const SIGNATURE_0_8_0: &str = "81a2737369676e696e675f6365727469666963617465983b182d182d182d182d182d1842184518471849184e182018431845185218541849184618491843184118541845182d182d182d182d182d0a184d1849184918420a182d182d182d182d182d1845184e1844182018431845185218541849184618491843184118541845182d182d182d182d182d0a697369676e61747572658a18d21884184418a1011838182218a018401840";

    #[test]
    fn pcr_info_matches_official_bytes() {
        let info = PcrInfo {
            register_index: 0,
            register_value: (0u8..48).collect(),
        };
        assert_eq!(hex::encode(to_cbor(&info)), PCR_INFO_0_8_0);
    }

    #[test]
    fn signature_section_matches_official_bytes() {
        let entries = [PcrSignature {
            signing_certificate: b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
                .to_vec(),
            signature: vec![0xd2, 0x84, 0x44, 0xa1, 0x01, 0x38, 0x22, 0xa0, 0x40, 0x40],
        }];
        let bytes = encode_signature_section(&entries);
        assert_eq!(hex::encode(&bytes), SIGNATURE_0_8_0);
        let decoded = decode_signature_section(&bytes).unwrap();
        assert_eq!(decoded, entries);
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(decode_signature_section(&trailing).is_err());
        assert!(matches!(
            decode_signature_section(&[0x80]),
            Err(CoseError::Empty)
        ));
    }

    #[test]
    fn cose_sign1_round_trip() {
        let c = CoseSign1 {
            protected: PROTECTED_ES384.to_vec(),
            unprotected: Vec::new(),
            payload: vec![1, 2, 3],
            signature: vec![9; 96],
        };
        let bytes = c.to_bytes();
        assert_eq!(&bytes[..7], &[0x84, 0x44, 0xa1, 0x01, 0x38, 0x22, 0xa0]);
        assert_eq!(CoseSign1::from_bytes(&bytes).unwrap(), c);
        assert!(c.require_es384().is_ok());
        let mut tagged = vec![0xd2];
        tagged.extend_from_slice(&bytes);
        assert_eq!(CoseSign1::from_bytes(&tagged).unwrap(), c);
        let mut wrong_tag = vec![0xd1];
        wrong_tag.extend_from_slice(&bytes);
        assert!(matches!(
            CoseSign1::from_bytes(&wrong_tag),
            Err(CoseError::UnexpectedTag(17))
        ));
        let es256 = CoseSign1 {
            protected: vec![0xa1, 0x01, 0x26],
            ..c
        };
        assert!(matches!(es256.require_es384(), Err(CoseError::NotEs384)));
    }
}
