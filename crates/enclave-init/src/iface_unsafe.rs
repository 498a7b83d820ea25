//! The ioctls that bring a network interface up (SIOCGIFFLAGS, SIOCSIFFLAGS): std and nix have
//! no safe wrapper for them. Each block says why it is sound.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;
use nix::libc;

/// Sets `IFF_UP` (and keeps the other flags) on interface `name`, through `sock` (any
/// AF_INET datagram socket).
pub fn interface_up(sock: BorrowedFd<'_>, name: &str) -> nix::Result<()> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(Errno::EINVAL);
    }
    // SAFETY: `ifreq` is a plain C struct (arrays, integers, a union of those and of raw
    // pointers that are never dereferenced here); all-zero is a valid value of it.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, &src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads `ifr_name` (NUL-terminated: the array was zeroed and the name
    // is shorter than it) and writes `ifr_ifru.ifru_flags` inside `req`, which outlives the call.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) };
    Errno::result(rc)?;
    // SAFETY: the kernel just filled the `ifru_flags` member of the union.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    req.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    // SAFETY: SIOCSIFFLAGS only reads `req`, a valid, initialised ifreq.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) };
    Errno::result(rc).map(drop)
}
