//! Bytes read from /dev/cuse (the kernel's FUSE requests, carrying what a process in the enclave
//! passed to /dev/nsm) into enclave-init's CUSE decoder and the NSM ioctl's retry steps: must
//! never panic, and every reply must be well formed. The body is
//! `enclave_init::cuse::fuzz_message`, also run by `cargo test` over seeds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    enclave_init::cuse::fuzz_message(data);
});
