//! Values read from the file-attestation bucket (anyone with publish rights writes there) into
//! the reader's check (`enclave_attest::files::RecordChecker`): it may refuse, never panic.
//! The body is `enclave_attest::files::fuzzing::record_check`, also run by `cargo test` over
//! seeds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    enclave_attest::files::fuzzing::record_check(data);
});
