//! Proxies between the host's TCP world and an enclave's vsock, both ways, with allow-lists.
//!
//! - [`header`]: the request each proxied connection starts with and the one-byte reply.
//! - [`stream`]: TCP, Unix and vsock streams behind one type, and the readiness-based relay.
//!
//! Everything runs on a tokio runtime (one thread is enough); no connection gets a thread.
#![deny(unsafe_code)]

pub mod header;
mod reactor_unsafe;
pub mod stream;
