//! The COSE_Sign1 envelope (RFC 9052) as the NSM writes it: `[protected, unprotected, payload,
//! signature]`, optionally under tag 18, protected header `{1: -35}` (ES384), signature `r || s`.

use std::borrow::Cow;

use p384::ecdsa::{Signature, VerifyingKey};

use crate::cbor::{self, Value};
use crate::p384_verify::Hash;
use crate::Error;

/// COSE tag for COSE_Sign1.
const TAG_COSE_SIGN1: u64 = 18;
/// COSE header label `alg`.
const LABEL_ALG: u64 = 1;
/// COSE header label `crit`.
const LABEL_CRIT: u64 = 2;
/// ES384 is COSE algorithm -35, encoded as negative integer n = 34.
const ES384_NINT: u64 = 34;

/// A parsed COSE_Sign1 whose byte strings borrow from the input.
#[derive(Debug, Clone)]
pub struct CoseSign1<'a> {
    /// The serialized protected header, exactly as received.
    pub protected: Cow<'a, [u8]>,
    /// The payload (the attestation document's CBOR), exactly as received.
    pub payload: Cow<'a, [u8]>,
    /// The raw `r || s` signature (96 bytes for ES384).
    pub signature: Cow<'a, [u8]>,
    /// Whether the input carried COSE tag 18.
    pub tagged: bool,
}

impl<'a> CoseSign1<'a> {
    /// Parses a tagged or untagged COSE_Sign1 and checks its protected header says ES384.
    pub fn parse(input: &'a [u8]) -> Result<Self, Error> {
        let top = cbor::decode(input).map_err(Error::BadCose)?;
        let (tagged, body) = match top {
            Value::Tag(TAG_COSE_SIGN1, inner) => (true, *inner),
            Value::Tag(t, _) => {
                return Err(Error::BadCose(format!(
                    "tag {t}, expected 18 (COSE_Sign1) or none"
                )))
            }
            other => (false, other),
        };
        let Value::Array(items) = body else {
            return Err(Error::BadCose(format!(
                "expected a 4-element array, found {}",
                body.kind()
            )));
        };
        let Ok::<[Value<'a>; 4], _>([protected, unprotected, payload, signature]) =
            items.try_into()
        else {
            return Err(Error::BadCose("expected a 4-element array".into()));
        };
        let protected = bytes(protected, "protected header")?;
        let Value::Map(unprotected) = unprotected else {
            return Err(Error::BadCose(format!(
                "unprotected header is a {}, expected a map",
                unprotected.kind()
            )));
        };
        let payload = match payload {
            Value::Null => {
                return Err(Error::BadCose(
                    "detached payload (null) is not supported".into(),
                ))
            }
            other => bytes(other, "payload")?,
        };
        let signature = bytes(signature, "signature")?;
        check_headers(&protected, &unprotected)?;
        if signature.len() != 96 {
            return Err(Error::BadCose(format!(
                "ES384 signature is {} bytes, expected 96 (r || s)",
                signature.len()
            )));
        }
        Ok(CoseSign1 {
            protected,
            payload,
            signature,
            tagged,
        })
    }

    /// The Sig_structure `["Signature1", protected, h'', payload]`, the bytes the signature
    /// covers.
    ///
    /// Only this outer array is encoded here; the protected header and payload go in as the
    /// byte strings received, never re-encoded from a decoded form, so the signature is checked
    /// over what the NSM signed whether its maps were definite or indefinite length.
    pub fn sig_structure(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.protected.len() + self.payload.len() + 32);
        let mut put = |b: &[u8]| out.extend_from_slice(b);
        put(&[0x84, 0x6a]);
        put(b"Signature1");
        cbor::write_head(&mut put, 2, self.protected.len() as u64);
        put(&self.protected);
        put(&[0x40]);
        cbor::write_head(&mut put, 2, self.payload.len() as u64);
        put(&self.payload);
        out
    }

    /// Verifies the signature with `key` (the leaf certificate's P-384 key).
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), Error> {
        // Rejects r or s of zero or not below the group order.
        let sig = Signature::from_slice(&self.signature).map_err(|_| Error::SignatureInvalid)?;
        // COSE does not require low-S and the NSM does not produce it: (r, s) and (r, n - s)
        // are the same ECDSA signature, and this verifier accepts both forms.
        if crate::p384_verify::verify(key, &self.sig_structure(), Hash::Sha384, &sig) {
            Ok(())
        } else {
            Err(Error::SignatureInvalid)
        }
    }
}

fn bytes<'a>(v: Value<'a>, what: &str) -> Result<Cow<'a, [u8]>, Error> {
    match v {
        Value::Bytes(b) => Ok(b),
        other => Err(Error::BadCose(format!(
            "{what} is a {}, expected a byte string",
            other.kind()
        ))),
    }
}

/// The protected header must be a map whose `alg` is ES384; labels must not repeat, `crit` (which
/// would oblige us to understand more) is refused, and `alg` may not be overridden unprotected.
fn check_headers(protected: &[u8], unprotected: &[(Value<'_>, Value<'_>)]) -> Result<(), Error> {
    if protected.is_empty() {
        return Err(Error::UnsupportedAlgorithm(
            "no protected header, so no algorithm".into(),
        ));
    }
    let Value::Map(entries) =
        cbor::decode(protected).map_err(|e| Error::BadCose(format!("protected header: {e}")))?
    else {
        return Err(Error::BadCose("protected header is not a map".into()));
    };
    let mut alg = None;
    for (i, (k, v)) in entries.iter().enumerate() {
        if entries[..i].iter().any(|(seen, _)| seen == k) {
            return Err(Error::BadCose("protected header repeats a label".into()));
        }
        match k {
            Value::Uint(LABEL_ALG) => alg = Some(v),
            Value::Uint(LABEL_CRIT) => {
                return Err(Error::BadCose(
                    "critical headers (crit) are not supported".into(),
                ))
            }
            _ => {}
        }
    }
    if unprotected
        .iter()
        .any(|(k, _)| matches!(k, Value::Uint(LABEL_ALG | LABEL_CRIT)))
    {
        return Err(Error::BadCose(
            "alg or crit in the unprotected header".into(),
        ));
    }
    match alg {
        Some(Value::Nint(ES384_NINT)) => Ok(()),
        Some(Value::Nint(n)) => Err(Error::UnsupportedAlgorithm(format!(
            "COSE alg {}, only ES384 (-35)",
            -1 - i128::from(*n)
        ))),
        Some(other) => Err(Error::UnsupportedAlgorithm(format!(
            "COSE alg is a {}, only ES384 (-35)",
            other.kind()
        ))),
        None => Err(Error::UnsupportedAlgorithm(
            "protected header has no alg".into(),
        )),
    }
}
