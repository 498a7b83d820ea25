//! Bytes from the network, framed, into the message decoder and both session state machines:
//! must never panic, and whatever decodes must re-encode to itself. The body is
//! `enclave_proto::wire::fuzzing::message_session`, also run by `cargo test` over seeds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    enclave_proto::wire::fuzzing::message_session(data);
});
