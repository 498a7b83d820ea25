//! Bytes from the host as the control channel's Noise handshake messages: the enclave's
//! responder, the client's initiator and the identity payload decoder must never panic, and a
//! changed message never completes a session. The body is
//! `enclave_proto::wire::secure::fuzzing::handshake`, also run by `cargo test` over seeds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    enclave_proto::wire::secure::fuzzing::handshake(data);
});
