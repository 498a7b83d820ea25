//! Arbitrary bytes through the attestation document parsers: input decoding (raw, base64, hex),
//! the COSE_Sign1 envelope, and the payload with its field limits. None may panic, and no
//! allocation may follow a length read from the input unchecked.
//!
//! Seeds: `cargo fuzz run attest_document ../crates/enclave-attest/testdata`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(raw) = enclave_attest::decode_input(data) {
        let _ = enclave_attest::parse_unverified(&raw);
    }
    // The payload parser on its own, for inputs that are not a COSE envelope.
    let _ = enclave_attest::AttestationDocument::from_cbor(data);
    if let Ok(cose) = enclave_attest::CoseSign1::parse(data) {
        let _ = cose.sig_structure();
    }
});
