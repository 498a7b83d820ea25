//! The one `unsafe` operation of the transports: taking ownership of the descriptor that
//! `accept4(2)` returned. nix 0.29 returns it as a bare `RawFd`, and only `unsafe`
//! `FromRawFd` turns that into an `OwnedFd` that closes it.
#![allow(unsafe_code)]

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// Wraps the descriptor just returned by a successful `accept4`.
pub(super) fn own_accepted(fd: RawFd) -> OwnedFd {
    // SAFETY: `fd` comes straight from a successful accept4(2): it is a new, open descriptor
    // that nothing else owns or will close, so OwnedFd may take sole ownership of it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}
