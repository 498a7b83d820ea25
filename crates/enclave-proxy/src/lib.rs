//! Proxies between the host's TCP world and an enclave's vsock, both ways, with allow-lists.
//!
//! - [`header`]: the request each proxied connection starts with and the one-byte reply.
//! - [`stream`]: TCP, Unix and vsock streams behind one type, and the readiness-based relay.
//! - [`allow`]: the allow-lists as the proxies apply them, the private-range rule, the resolver
//!   and the standalone binary's allow-list file.
//! - [`host`]: the host side: ingress (published ports) and egress proxies, and [`HostProxies`]
//!   for a synchronous caller.
//! - [`error`]: the errors of the library API ([`ProxyError`]).
//!
//! Everything runs on a tokio runtime (one thread is enough); no connection gets a thread.
//!
//! Where it runs: both sides of the vsock. The host side ([`host`]) runs in each enclave's
//! supervisor and in the standalone `enclave-proxy` binary (feature `cli`, with allow-list
//! files: feature `yaml`); the enclave side (`enclave`) runs in enclave-init, which uses the
//! crate without default features, so no YAML parser or CLI code is in the enclave.
#![deny(unsafe_code)]

pub mod allow;
pub mod enclave;
pub mod error;
pub mod header;
#[cfg(test)]
mod header_fuzz;
pub mod host;
mod reactor_unsafe;
pub mod stream;

pub use error::ProxyError;
pub use host::HostProxies;
