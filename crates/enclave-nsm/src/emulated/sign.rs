//! Documents of the Nitro format: a COSE_Sign1 (untagged, protected header `{1: -35}`, empty
//! unprotected header, ES384 `r || s`) over the CBOR map the NSM writes, in its field order.

use std::collections::BTreeMap;

use ciborium::Value;
use enclave_attest::MAX_OPTIONAL_LEN;
use p384::ecdsa::signature::hazmat::PrehashSigner;
use p384::ecdsa::Signature;
use sha2::{Digest, Sha384};

use super::ca::{unix_now, EmulationCa};
use super::EmulationError;

/// What goes into one document besides the certificates and the time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DocumentFields {
    /// `i-<16 hex>-enc<16 hex>`, like Nitro's.
    pub module_id: String,
    /// PCR index to its 48-byte value.
    pub pcrs: BTreeMap<u8, Vec<u8>>,
    /// Optional, up to 1024 bytes each; CBOR null when absent.
    pub public_key: Option<Vec<u8>>,
    /// See `public_key`.
    pub user_data: Option<Vec<u8>>,
    /// See `public_key`.
    pub nonce: Option<Vec<u8>>,
}

fn bytes(b: &[u8]) -> Value {
    Value::Bytes(b.to_vec())
}

fn optional(v: &Option<Vec<u8>>) -> Value {
    v.as_deref().map_or(Value::Null, bytes)
}

fn cbor(v: &Value) -> Result<Vec<u8>, EmulationError> {
    let mut out = Vec::new();
    ciborium::into_writer(v, &mut out).map_err(|e| EmulationError::Certificate(e.to_string()))?;
    Ok(out)
}

impl DocumentFields {
    /// Signs a fresh document: a new leaf under `ca`, timestamp now.
    pub fn sign(&self, ca: &EmulationCa) -> Result<Vec<u8>, EmulationError> {
        for (name, v) in [
            ("public_key", &self.public_key),
            ("user_data", &self.user_data),
            ("nonce", &self.nonce),
        ] {
            if v.as_ref().is_some_and(|v| v.len() > MAX_OPTIONAL_LEN) {
                return Err(EmulationError::Limit(format!(
                    "{name} is longer than {MAX_OPTIONAL_LEN} bytes"
                )));
            }
        }
        let (leaf, key) = ca.issue_leaf(&self.module_id)?;
        let payload = Value::Map(vec![
            (
                Value::Text("module_id".into()),
                Value::Text(self.module_id.clone()),
            ),
            (Value::Text("digest".into()), Value::Text("SHA384".into())),
            (
                Value::Text("timestamp".into()),
                Value::Integer((unix_now().as_millis() as u64).into()),
            ),
            (
                Value::Text("pcrs".into()),
                Value::Map(
                    self.pcrs
                        .iter()
                        .map(|(i, v)| (Value::Integer((*i).into()), bytes(v)))
                        .collect(),
                ),
            ),
            (Value::Text("certificate".into()), bytes(&leaf)),
            (
                Value::Text("cabundle".into()),
                Value::Array(vec![bytes(ca.root_der())]),
            ),
            (Value::Text("public_key".into()), optional(&self.public_key)),
            (Value::Text("user_data".into()), optional(&self.user_data)),
            (Value::Text("nonce".into()), optional(&self.nonce)),
        ]);
        let payload = cbor(&payload)?;
        // {1: -35}: alg ES384.
        let protected = vec![0xa1, 0x01, 0x38, 0x22];
        let sig_structure = cbor(&Value::Array(vec![
            Value::Text("Signature1".into()),
            bytes(&protected),
            bytes(&[]),
            bytes(&payload),
        ]))?;
        let sig: Signature = key
            .sign_prehash(&Sha384::digest(&sig_structure))
            .map_err(|e| EmulationError::Key(e.to_string()))?;
        cbor(&Value::Array(vec![
            bytes(&protected),
            Value::Map(vec![]),
            Value::Bytes(payload),
            bytes(&sig.to_bytes()),
        ]))
    }
}
