//! Arbitrary bytes as an image layer: applied to a rootfs tree (plain, and through the
//! compression sniffing) and written to a cpio. Any input must give `Ok` or a typed error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    enclave_image::rootfs::fuzz_layer(data);
});
