//! `enclave-proxy`: the proxies as a standalone binary (sidecar use).
fn main() {}
