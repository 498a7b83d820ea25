//! enclave-cli: what the command lines of the host binaries share, so that `enclave-ctl`,
//! `enclave-engine` (the supervisor) and the standalone `enclave-proxy` behave alike.
//!
//! Where it runs: on the parent, in those three binaries; nothing of it is in the enclave.
//!
//! - [`logging`]: `-v`/`--log-level`/`--log-format json`, `RUST_LOG`, `NO_COLOR`, and how the
//!   choices reach child processes.
//! - [`docs`]: shell completions and man pages generated from a binary's clap definition.

pub mod docs;
pub mod logging;
