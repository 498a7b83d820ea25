//! enclave-image-oracle: no code, only tests and a benchmark of `enclave-image` against the
//! official `aws-nitro-enclaves-image-format` crate (`tests/eif_oracle.rs`,
//! `benches/eif_build.rs`).
//!
//! Why a crate of its own: the official crate pulls in the AWS SDK and OpenSSL. As a
//! dev-dependency of enclave-image it was compiled by every `cargo test -p enclave-image`; here
//! only `cargo test --workspace` (CI) or `cargo test -p enclave-image-oracle` compiles it.
#![deny(unsafe_code)]
