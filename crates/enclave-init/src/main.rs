//! PID 1 of the enclave. See the library for what it does.
//!
//! `no_main`: the C `main` is in [`entry_unsafe`], which skips std's runtime start-up. That
//! start-up aborts the process when fds 0-2 are closed and `/dev/null` cannot be opened, which
//! is PID 1's situation when the initramfs has no `/dev/console`; an abort of PID 1 is a
//! kernel panic. Init opens the console itself once /dev is mounted (`console::ensure_fds`).
#![no_main]
#![deny(unsafe_code)]

mod entry_unsafe;

use std::time::Instant;

/// The program, called by the C `main`.
fn run() -> i32 {
    let started = Instant::now();
    let args: Vec<String> = std::env::args().collect();
    if let Some(rest) = enclave_init::control::initctl::invoked_as(&args) {
        return enclave_init::control::initctl::main(rest);
    }
    if std::env::args().nth(1).as_deref() == Some("--version") {
        enclave_init::say!("{}", enclave_init::VERSION);
        return 0;
    }
    let pid = std::process::id();
    if pid != 1 {
        enclave_init::say!("{}", enclave_init::Error::NotPid1(pid as i32));
        return 2;
    }
    // Before any thread exists, so that every thread inherits the mask.
    if let Err(e) = enclave_init::signals::block() {
        enclave_init::say!("{e}");
    }
    enclave_init::run_pid1(started)
}
