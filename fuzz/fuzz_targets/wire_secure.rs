//! Bytes from the host as the encrypted session's records, and genuine records it changed:
//! the record reader and the message decoder behind it must never panic. The body is
//! `enclave_proto::wire::secure::fuzzing::records`, also run by `cargo test` over seeds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    enclave_proto::wire::secure::fuzzing::records(data);
});
