//! A forger: a self-made P-384 root, intermediate and leaf, and COSE_Sign1 documents signed with
//! the leaf key over payloads copied from real documents. Built at test time with p384 and
//! x509-cert, independently of the crate's own CBOR and COSE code.

use std::str::FromStr;
use std::time::Duration;

use ciborium::Value;
use der::asn1::{BitString, OctetString, UtcTime};
use der::Encode;
use p384::ecdsa::signature::hazmat::PrehashSigner;
use p384::ecdsa::signature::Signer;
use p384::ecdsa::{DerSignature, Signature, SigningKey};
use sha2::{Digest, Sha384};
use x509_cert::certificate::{TbsCertificate, Version};
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages};
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::time::{Time, Validity};
use x509_cert::Certificate;

/// A deterministic P-384 key from a seed string (no RNG needed, reproducible failures).
pub fn key(seed: &str) -> SigningKey {
    SigningKey::from_slice(&Sha384::digest(seed.as_bytes())).unwrap()
}

/// Validity in seconds since the epoch.
pub struct Window(pub u64, pub u64);

/// Role of a forged certificate: CA with an optional pathLen, or leaf.
pub enum Role {
    Ca(Option<u8>),
    Leaf,
}

/// Issues a certificate for `subject`'s key, signed with `issuer_key` under `issuer` name.
pub fn issue(
    subject: &str,
    subject_key: &SigningKey,
    issuer: &str,
    issuer_key: &SigningKey,
    role: Role,
    window: Window,
) -> Vec<u8> {
    let ecdsa_sha384 = AlgorithmIdentifierOwned {
        oid: const_oid::db::rfc5912::ECDSA_WITH_SHA_384,
        parameters: None,
    };
    let time = |s: u64| Time::UtcTime(UtcTime::from_unix_duration(Duration::from_secs(s)).unwrap());
    let ext = |oid, critical, value: Vec<u8>| Extension {
        extn_id: oid,
        critical,
        extn_value: OctetString::new(value).unwrap(),
    };
    let (bc, ku) = match role {
        Role::Ca(path_len) => (
            BasicConstraints {
                ca: true,
                path_len_constraint: path_len,
            },
            KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign | KeyUsages::DigitalSignature),
        ),
        Role::Leaf => (
            BasicConstraints {
                ca: false,
                path_len_constraint: None,
            },
            KeyUsage(KeyUsages::DigitalSignature | KeyUsages::NonRepudiation),
        ),
    };
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: SerialNumber::new(&Sha384::digest(subject.as_bytes())[..8]).unwrap(),
        signature: ecdsa_sha384.clone(),
        issuer: Name::from_str(issuer).unwrap(),
        validity: Validity {
            not_before: time(window.0),
            not_after: time(window.1),
        },
        subject: Name::from_str(subject).unwrap(),
        subject_public_key_info: SubjectPublicKeyInfoOwned::from_key(*subject_key.verifying_key())
            .unwrap(),
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(vec![
            ext(
                const_oid::db::rfc5912::ID_CE_BASIC_CONSTRAINTS,
                true,
                bc.to_der().unwrap(),
            ),
            ext(
                const_oid::db::rfc5912::ID_CE_KEY_USAGE,
                true,
                ku.to_der().unwrap(),
            ),
        ]),
    };
    let sig: DerSignature = issuer_key.sign(&tbs.to_der().unwrap());
    Certificate {
        tbs_certificate: tbs,
        signature_algorithm: ecdsa_sha384,
        signature: BitString::from_bytes(sig.as_bytes()).unwrap(),
    }
    .to_der()
    .unwrap()
}

/// A forged three-certificate chain.
pub struct Chain {
    pub root: Vec<u8>,
    pub intermediate: Vec<u8>,
    pub leaf: Vec<u8>,
    pub leaf_key: SigningKey,
}

/// The AWS root's exact subject, for a forger that copies it.
pub const AWS_ROOT_NAME: &str = "CN=aws.nitro-enclaves,OU=AWS,O=Amazon,C=US";

impl Chain {
    /// A root named `root_name`, an intermediate and a leaf, valid 2001..2049.
    pub fn new(root_name: &str) -> Chain {
        let (root_key, int_key, leaf_key) = (
            key("forged root"),
            key("forged intermediate"),
            key("forged leaf"),
        );
        let w = || Window(978_307_200, 2_500_000_000);
        let (int_name, leaf_name) = ("CN=forged-intermediate,O=Forger", "CN=forged-leaf,O=Forger");
        Chain {
            root: issue(
                root_name,
                &root_key,
                root_name,
                &root_key,
                Role::Ca(None),
                w(),
            ),
            intermediate: issue(
                int_name,
                &int_key,
                root_name,
                &root_key,
                Role::Ca(Some(0)),
                w(),
            ),
            leaf: issue(leaf_name, &leaf_key, int_name, &int_key, Role::Leaf, w()),
            leaf_key,
        }
    }
}

/// Decodes a real document's payload map (with ciborium, not the crate under test).
pub fn payload_map(doc: &[u8]) -> Vec<(Value, Value)> {
    let (payload, _) = payload_and_signature(doc);
    match ciborium::from_reader::<Value, _>(&doc[payload]).unwrap() {
        Value::Map(m) => m,
        _ => panic!("payload is not a map"),
    }
}

/// Sets (or adds) a field of a payload map.
pub fn set(map: &mut Vec<(Value, Value)>, key: &str, value: Value) {
    match map.iter_mut().find(|(k, _)| k.as_text() == Some(key)) {
        Some(entry) => entry.1 = value,
        None => map.push((Value::Text(key.into()), value)),
    }
}

/// Removes a field of a payload map.
pub fn remove(map: &mut Vec<(Value, Value)>, key: &str) {
    map.retain(|(k, _)| k.as_text() != Some(key));
}

/// Replaces the certificate and cabundle of a real payload with the forged chain's.
pub fn forged_payload(doc: &[u8], chain: &Chain) -> Vec<(Value, Value)> {
    let mut map = payload_map(doc);
    set(&mut map, "certificate", Value::Bytes(chain.leaf.clone()));
    set(
        &mut map,
        "cabundle",
        Value::Array(vec![
            Value::Bytes(chain.root.clone()),
            Value::Bytes(chain.intermediate.clone()),
        ]),
    );
    map
}

/// Encodes with definite lengths (ciborium's way).
pub fn encode(map: Vec<(Value, Value)>) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(&Value::Map(map), &mut out).unwrap();
    out
}

/// Encodes with indefinite-length maps and arrays, as some NSM versions do.
pub fn encode_indefinite(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Map(m) => {
            out.push(0xbf);
            for (k, v) in m {
                encode_indefinite(k, out);
                encode_indefinite(v, out);
            }
            out.push(0xff);
        }
        Value::Array(a) => {
            out.push(0x9f);
            a.iter().for_each(|v| encode_indefinite(v, out));
            out.push(0xff);
        }
        other => ciborium::into_writer(other, &mut *out).unwrap(),
    }
}

/// Wraps bytes in a CBOR byte-string head.
fn bstr(out: &mut Vec<u8>, b: &[u8]) {
    ciborium::into_writer(&Value::Bytes(b.to_vec()), &mut *out).unwrap();
}

/// Signs `payload` as an ES384 COSE_Sign1 with `key`.
pub fn sign_cose(payload: &[u8], key: &SigningKey, tagged: bool) -> Vec<u8> {
    let protected = [0xa1, 0x01, 0x38, 0x22];
    let mut sig_structure = vec![0x84];
    ciborium::into_writer(&Value::Text("Signature1".into()), &mut sig_structure).unwrap();
    bstr(&mut sig_structure, &protected);
    bstr(&mut sig_structure, &[]);
    bstr(&mut sig_structure, payload);
    let sig: Signature = key.sign_prehash(&Sha384::digest(&sig_structure)).unwrap();
    let mut out = if tagged { vec![0xd2, 0x84] } else { vec![0x84] };
    bstr(&mut out, &protected);
    out.push(0xa0);
    bstr(&mut out, payload);
    bstr(&mut out, &sig.to_bytes());
    out
}

/// Splits a raw untagged COSE_Sign1 into (payload range, signature range) by reading the heads.
pub fn payload_and_signature(doc: &[u8]) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
    // 0x84, protected bstr, unprotected map (empty: 0xa0), payload bstr, signature bstr.
    assert_eq!(doc[0], 0x84);
    let mut pos = 1;
    let head = |pos: &mut usize| -> usize {
        let b = doc[*pos];
        *pos += 1;
        let n = match b & 0x1f {
            n @ 0..=23 => n as usize,
            24 => 1,
            25 => 2,
            26 => 4,
            _ => panic!("unexpected head"),
        };
        if b & 0x1f < 24 {
            return n;
        }
        let v = doc[*pos..*pos + n]
            .iter()
            .fold(0usize, |a, &x| (a << 8) | x as usize);
        *pos += n;
        v
    };
    let plen = head(&mut pos);
    pos += plen;
    assert_eq!(doc[pos], 0xa0, "empty unprotected header");
    pos += 1;
    let len = head(&mut pos);
    let payload = pos..pos + len;
    pos += len;
    let slen = head(&mut pos);
    assert_eq!(pos + slen, doc.len());
    (payload, pos..pos + slen)
}
