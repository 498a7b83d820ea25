//! Arbitrary bytes through the verifier entry point behind `enclave-ctl verify`: decoding,
//! parsing, the COSE signature, the certificate chain to the pinned AWS root and the policy.
//! It must never panic and never accept: a fuzzer cannot forge an AWS signature, so any `Ok`
//! for a document that is not one of the real seeds is a bug.
//!
//! Seeds: `cargo fuzz run attest_verify ../crates/enclave-attest/testdata` (the real documents,
//! which the verifier accepts at their own timestamps; mutations of them must fail).
#![no_main]

use enclave_attest::{Expectation, Policy, VerifyOptions};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

/// SHA-256 of the payloads of the seven real documents in crates/enclave-attest/testdata.
const REAL_PAYLOADS: [&str; 7] = [
    "911b5711fe099af2841ee19ba3587b8bfc7bfc264d19b9c13ae0d6511f8b129d",
    "bf1506d6822fdf9ac0dc5a120b0af789288fae3de66afbec9b59a72fd6c19cfd",
    "94ebf1f5bc42fc7e63df1ab63ab9aea388f6b0966d8c7105eccabd1cde2e6b34",
    "ffbf2332892c0530656af225f2813ef265ed285a6fe21e094f782d620d48eafc",
    "13064cecdcfb6236c7f52ad23c6ceefcf0f4e942a4317fd71418aca6f2109162",
    "47558568695d45cd05191d347145154434f45e97086ea3837c1a00a592e8aaa4",
    "39679983ab4ac1ffeea6c8c3db0959891cdb595115971a4d3f944815e6e52c0c",
];

fuzz_target!(|data: &[u8]| {
    // Verify at the document's own claimed time when it parses, so mutated real documents get
    // past the validity check and reach the signature checks.
    let parsed = enclave_attest::decode_input(data).ok().and_then(|raw| {
        let (cose, doc) = enclave_attest::parse_unverified(&raw).ok()?;
        Some((hex::encode(Sha256::digest(&cose.payload)), doc.timestamp_ms))
    });
    let at = parsed
        .as_ref()
        .and_then(|(_, ms)| time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(*ms) * 1_000_000).ok());
    // Any enclave, both kinds of debug allowed: the most permissive policy, so that only the
    // signature and the chain stand between a mutation and an `Ok`.
    let mut policy = Policy::new(Expectation::AnyEnclave);
    policy.allow_debug_mode = true;
    policy.allow_debug_capabilities = true;
    let options = VerifyOptions { at, ..VerifyOptions::new(policy) };
    if enclave_attest::verify(data, &options).is_ok() {
        // What may vary in an accepted document is only what the signature does not cover:
        // encoding (raw, base64, hex), tag 18, the unprotected header, and the other (high or
        // low S) form of the same signature. The payload must be a real one, byte for byte.
        let (payload, _) = parsed.expect("an accepted document parses");
        assert!(REAL_PAYLOADS.contains(&payload.as_str()), "verifier accepted a payload AWS never signed");
    }
});
