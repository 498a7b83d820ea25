//! Bytes from the network into the frame decoder (incremental and blocking): must never panic,
//! hang or allocate beyond the frame limit. The body is
//! `enclave_proto::wire::fuzzing::frame_decoder`, also run by `cargo test` over seeds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    enclave_proto::wire::fuzzing::frame_decoder(data);
});
