//! Bytes from the other end of the boot hand-off (the supervisor's offer, the enclave's
//! identity, its exit report) into their readers: must never panic, and what they accept must
//! encode back to itself. The body is `enclave_proto::handoff::fuzz_messages`, also run by
//! `cargo test` over seeds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    enclave_proto::handoff::fuzz_messages(data);
});
