//! The attestation document (the COSE payload), decoded with the field limits of the AWS
//! specification ("Nitro Enclaves attestation process", section "Check content").

use std::collections::BTreeMap;

use crate::cbor::{self, Value};
use crate::Error;

/// Most PCRs a document may carry (indices 0..=31).
pub const MAX_PCRS: usize = 32;
/// Largest certificate (leaf or cabundle entry), in bytes.
pub const MAX_CERT_LEN: usize = 1024;
/// Largest `public_key`, `user_data` or `nonce`, in bytes.
pub const MAX_OPTIONAL_LEN: usize = 1024;
/// Most cabundle entries we accept. The specification sets no bound; real chains have 4, and a
/// bound keeps the chain walk (one signature check per entry) cheap for hostile input.
pub const MAX_CABUNDLE: usize = 16;

/// A decoded attestation document. Nothing in it is trusted until [`crate::verify`] says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationDocument {
    /// Issuing NSM module id (instance id and enclave id).
    pub module_id: String,
    /// Digest used for the PCRs; always `SHA384` here.
    pub digest: String,
    /// Creation time, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// PCR index to value.
    pub pcrs: BTreeMap<u8, Vec<u8>>,
    /// DER of the certificate whose key signed the document.
    pub certificate: Vec<u8>,
    /// DER of the issuing CA bundle, root first.
    pub cabundle: Vec<Vec<u8>>,
    /// Optional key supplied by the enclave; `None` when absent or CBOR null.
    pub public_key: Option<Vec<u8>>,
    /// Optional user data supplied by the enclave.
    pub user_data: Option<Vec<u8>>,
    /// Optional nonce supplied by the enclave.
    pub nonce: Option<Vec<u8>>,
}

impl AttestationDocument {
    /// True when PCR0, PCR1 and PCR2 are all present and all zero: the NSM reports a debug-mode
    /// enclave that way.
    pub fn is_debug_mode(&self) -> bool {
        (0u8..3).all(|i| self.pcrs.get(&i).is_some_and(|v| v.iter().all(|&b| b == 0)))
    }

    /// Decodes a payload, enforcing the specification's field limits.
    pub fn from_cbor(payload: &[u8]) -> Result<Self, Error> {
        let Value::Map(entries) = cbor::decode(payload).map_err(Error::BadDocument)? else {
            return Err(Error::BadDocument("payload is not a CBOR map".into()));
        };
        let mut module_id = None;
        let mut digest = None;
        let mut timestamp = None;
        let mut pcrs = None;
        let mut certificate = None;
        let mut cabundle = None;
        let mut public_key = None;
        let mut user_data = None;
        let mut nonce = None;
        let mut seen: Vec<&str> = Vec::with_capacity(entries.len().min(16));
        for (k, v) in &entries {
            let Value::Text(key) = k else {
                return Err(Error::BadDocument(format!(
                    "map key is a {}, expected text",
                    k.kind()
                )));
            };
            // A repeated key would let two readers disagree about what was signed.
            if seen.contains(&key.as_ref()) {
                return Err(Error::BadDocument(format!("field `{key}` appears twice")));
            }
            seen.push(key);
            match key.as_ref() {
                "module_id" => module_id = Some(text(v, "module_id")?),
                "digest" => digest = Some(text(v, "digest")?),
                "timestamp" => timestamp = Some(uint(v, "timestamp")?),
                "pcrs" => pcrs = Some(parse_pcrs(v)?),
                "certificate" => certificate = Some(cert(v, "certificate")?),
                "cabundle" => cabundle = Some(parse_cabundle(v)?),
                "public_key" => public_key = optional(v, "public_key")?,
                "user_data" => user_data = optional(v, "user_data")?,
                "nonce" => nonce = optional(v, "nonce")?,
                // Unknown fields are signed like the rest but mean nothing to us; refusing them
                // would break on a future NSM that adds one.
                _ => {}
            }
        }
        let module_id = module_id.ok_or(Error::MissingField("module_id"))?;
        if module_id.is_empty() {
            return Err(limit("module_id", "empty, must be non-empty".into()));
        }
        let digest = digest.ok_or(Error::MissingField("digest"))?;
        if digest != "SHA384" {
            return Err(Error::UnsupportedAlgorithm(format!(
                "document digest {digest:?}, only SHA384"
            )));
        }
        let timestamp_ms = timestamp.ok_or(Error::MissingField("timestamp"))?;
        if timestamp_ms == 0 {
            return Err(limit("timestamp", "zero, must be non-zero".into()));
        }
        Ok(AttestationDocument {
            module_id,
            digest,
            timestamp_ms,
            pcrs: pcrs.ok_or(Error::MissingField("pcrs"))?,
            certificate: certificate.ok_or(Error::MissingField("certificate"))?,
            cabundle: cabundle.ok_or(Error::MissingField("cabundle"))?,
            public_key,
            user_data,
            nonce,
        })
    }
}

fn limit(field: &str, detail: String) -> Error {
    Error::FieldLimit {
        field: field.into(),
        detail,
    }
}

fn wrong_type(field: &str, v: &Value<'_>, want: &str) -> Error {
    Error::BadDocument(format!(
        "field `{field}` is a {}, expected {want}",
        v.kind()
    ))
}

fn text(v: &Value<'_>, field: &str) -> Result<String, Error> {
    match v {
        Value::Text(t) => Ok(t.to_string()),
        other => Err(wrong_type(field, other, "text")),
    }
}

fn uint(v: &Value<'_>, field: &str) -> Result<u64, Error> {
    match v {
        Value::Uint(n) => Ok(*n),
        other => Err(wrong_type(field, other, "an unsigned integer")),
    }
}

fn cert(v: &Value<'_>, field: &str) -> Result<Vec<u8>, Error> {
    match v {
        Value::Bytes(b) if (1..=MAX_CERT_LEN).contains(&b.len()) => Ok(b.to_vec()),
        Value::Bytes(b) => Err(limit(
            field,
            format!("{} bytes, allowed 1..={MAX_CERT_LEN}", b.len()),
        )),
        other => Err(wrong_type(field, other, "a byte string")),
    }
}

fn optional(v: &Value<'_>, field: &str) -> Result<Option<Vec<u8>>, Error> {
    match v {
        Value::Null => Ok(None),
        Value::Bytes(b) if b.len() <= MAX_OPTIONAL_LEN => Ok(Some(b.to_vec())),
        Value::Bytes(b) => Err(limit(
            field,
            format!("{} bytes, allowed 0..={MAX_OPTIONAL_LEN}", b.len()),
        )),
        other => Err(wrong_type(field, other, "a byte string or null")),
    }
}

fn parse_pcrs(v: &Value<'_>) -> Result<BTreeMap<u8, Vec<u8>>, Error> {
    let Value::Map(entries) = v else {
        return Err(wrong_type("pcrs", v, "a map"));
    };
    if entries.is_empty() || entries.len() > MAX_PCRS {
        return Err(limit(
            "pcrs",
            format!("{} entries, allowed 1..={MAX_PCRS}", entries.len()),
        ));
    }
    let mut pcrs = BTreeMap::new();
    for (k, value) in entries {
        let index = match k {
            Value::Uint(i) if *i < MAX_PCRS as u64 => *i as u8,
            Value::Uint(i) => return Err(limit("pcrs", format!("index {i}, allowed 0..=31"))),
            other => return Err(wrong_type("pcrs index", other, "an unsigned integer")),
        };
        let Value::Bytes(bytes) = value else {
            return Err(wrong_type(
                &format!("pcrs[{index}]"),
                value,
                "a byte string",
            ));
        };
        if ![32, 48, 64].contains(&bytes.len()) {
            return Err(limit(
                &format!("pcrs[{index}]"),
                format!("{} bytes, allowed 32, 48 or 64", bytes.len()),
            ));
        }
        if pcrs.insert(index, bytes.to_vec()).is_some() {
            return Err(Error::BadDocument(format!("PCR{index} appears twice")));
        }
    }
    Ok(pcrs)
}

fn parse_cabundle(v: &Value<'_>) -> Result<Vec<Vec<u8>>, Error> {
    let Value::Array(items) = v else {
        return Err(wrong_type("cabundle", v, "an array"));
    };
    if items.is_empty() || items.len() > MAX_CABUNDLE {
        return Err(limit(
            "cabundle",
            format!("{} entries, allowed 1..={MAX_CABUNDLE}", items.len()),
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| cert(item, &format!("cabundle[{i}]")))
        .collect()
}
