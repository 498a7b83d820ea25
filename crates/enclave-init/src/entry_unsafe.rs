//! The binary's C `main` (see the crate documentation for why std's is not used).
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int};

// SAFETY: with `#![no_main]` this is the only `main` symbol of the binary, with the signature
// the C runtime calls it with; the arguments are not touched (std reads argv on its own, from
// glibc's init hook).
#[no_mangle]
extern "C" fn main(_argc: c_int, _argv: *const *const c_char) -> c_int {
    super::run()
}
