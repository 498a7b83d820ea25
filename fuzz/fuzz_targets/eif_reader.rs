//! Arbitrary bytes through the EIF reader: open, section listing and loading, ramdisk
//! streaming, CRC, measurements, signature parsing and verification. None may panic, and no
//! allocation may follow a size read from the input unchecked.
//!
//! The body is `enclave_image::eif::fuzz::fuzz_one`, which a normal test also runs over seed
//! inputs (`crates/enclave-image/tests/eif_errors.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    enclave_image::eif::fuzz::fuzz_one(data);
});
