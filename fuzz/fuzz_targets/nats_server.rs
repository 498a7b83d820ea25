//! Bytes from a NATS server (or whoever relays the connection) into the file publisher's
//! protocol decoders: INFO, operation lines (MSG/HMSG sizes), header blocks. Must never panic
//! or accept a message size over the payload limit. The body is
//! `enclave_attest_server::files::fuzzing::nats_server_bytes`, also run by `cargo test` over seeds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    enclave_attest_server::files::fuzzing::nats_server_bytes(data);
});
