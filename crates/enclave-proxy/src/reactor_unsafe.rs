//! Registering owned file descriptors (AF_VSOCK sockets) with the tokio reactor.
//!
//! tokio has no vsock type, so vsock sockets go through `AsyncFd`, whose constructor is `unsafe`
//! since tokio 1.52: it cannot know that the value keeps its descriptor open for as long as it is
//! registered. Both types registered here own their descriptor.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::OwnedFd;

use enclave_proto::transport::VsockListener;
use tokio::io::unix::AsyncFd;

/// Registers an owned stream descriptor.
pub(crate) fn register_fd(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: `OwnedFd` closes its descriptor only when dropped, and `as_raw_fd` always returns
    // that one descriptor; the AsyncFd owns it, so it stays open while registered.
    unsafe { AsyncFd::register(fd) }.map_err(|e| e.into_parts().1)
}

/// Registers a vsock listener.
pub(crate) fn register_listener(l: VsockListener) -> io::Result<AsyncFd<VsockListener>> {
    // SAFETY: `VsockListener` owns its descriptor (an `OwnedFd` field, closed on drop) and
    // `as_raw_fd` always returns it; the AsyncFd owns the listener.
    unsafe { AsyncFd::register(l) }.map_err(|e| e.into_parts().1)
}
