//! Shared test support: the real fixtures with their manifest, and a forger that builds its own
//! P-384 CA chain and signs COSE_Sign1 documents with it.
#![allow(dead_code)]

pub mod forge;

pub use forge::payload_and_signature;

use std::path::PathBuf;

use enclave_attest::{Expectation, Policy};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// One entry of testdata/manifest.json.
pub struct Fixture {
    pub file: String,
    pub bytes: Vec<u8>,
    pub timestamp_ms: u64,
    pub leaf_not_after: OffsetDateTime,
    pub module_id: String,
    pub debug_mode: bool,
    pub pcrs: Vec<(u8, String)>,
    pub nonce_len: Option<usize>,
    pub user_data_len: Option<usize>,
    pub public_key_len: Option<usize>,
}

impl Fixture {
    /// The document's own creation time, when its leaf certificate is valid.
    pub fn at(&self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.timestamp_ms) * 1_000_000)
            .unwrap()
    }

    /// PCR `i` as the manifest records it.
    pub fn pcr(&self, i: u8) -> Vec<u8> {
        let (_, v) = self.pcrs.iter().find(|(n, _)| *n == i).unwrap();
        hex::decode(v).unwrap()
    }

    /// What a verifier of this document expects: its own PCR0 and PCR8, or, for a debug-mode
    /// document (PCR0..2 and PCR8 zero, which pin nothing), any enclave.
    pub fn expectation(&self) -> Expectation {
        if self.debug_mode {
            Expectation::AnyEnclave
        } else {
            Expectation::pcrs([(0, self.pcr(0)), (8, self.pcr(8))]).unwrap()
        }
    }

    /// [`Fixture::expectation`], Nitro debug mode allowed when `allow_debug_mode`.
    pub fn policy(&self, allow_debug_mode: bool) -> Policy {
        let mut policy = Policy::new(self.expectation());
        policy.allow_debug_mode = allow_debug_mode;
        policy
    }
}

pub fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

/// All fixtures of the manifest, with their bytes checked against the recorded SHA-256.
pub fn fixtures() -> Vec<Fixture> {
    use sha2::{Digest, Sha256};
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(testdata().join("manifest.json")).unwrap()).unwrap();
    let fixtures: Vec<Fixture> = manifest
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let file = e["file"].as_str().unwrap().to_string();
            let bytes = std::fs::read(testdata().join(&file)).unwrap();
            assert_eq!(
                hex::encode(Sha256::digest(&bytes)),
                e["sha256"].as_str().unwrap(),
                "{file}"
            );
            let len = |k: &str| e[k].as_u64().map(|n| n as usize);
            Fixture {
                bytes,
                timestamp_ms: e["timestamp_ms"].as_u64().unwrap(),
                leaf_not_after: OffsetDateTime::parse(
                    e["leaf_not_after"].as_str().unwrap(),
                    &Rfc3339,
                )
                .unwrap(),
                module_id: e["module_id"].as_str().unwrap().to_string(),
                debug_mode: e["debug_mode"].as_bool().unwrap(),
                pcrs: e["pcrs"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.parse().unwrap(), v.as_str().unwrap().to_string()))
                    .collect(),
                nonce_len: len("nonce_len"),
                user_data_len: len("user_data_len"),
                public_key_len: len("public_key_len"),
                file,
            }
        })
        .collect();
    assert_eq!(fixtures.len(), 7, "manifest lists the seven real documents");
    fixtures
}
