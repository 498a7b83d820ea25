//! The loopback interface, so that 127.0.0.1 works for services and readiness checks.

use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
use std::os::fd::AsFd;

use crate::error::{Error, Result};
use crate::iface_unsafe;

/// Brings `lo` up. The kernel configures 127.0.0.1/8 and ::1 on it by itself once it is up.
pub fn loopback_up() -> Result<()> {
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| Error::sys("socket(AF_INET) for interface flags", e))?;
    iface_unsafe::interface_up(sock.as_fd(), "lo").map_err(|e| Error::sys("bring lo up", e))
}
