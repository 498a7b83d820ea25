//! The only `unsafe` of the crate: two ioctls on a network interface, the one that credits
//! entropy to the kernel RNG, the one that reads the enclave's own vsock CID, and the signal
//! mask and credential changes between fork and exec.
//! Each block says why it is sound.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::errno::Errno;
use nix::libc;
use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow};
use nix::unistd::{Gid, Uid};

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

/// `RNDADDENTROPY`: `_IOW('R', 0x03, int[2])`.
const RNDADDENTROPY: libc::c_ulong = 0x4008_5203;

/// Mixes `bytes` into the kernel's entropy pool through `random` (an open `/dev/random` or
/// `/dev/urandom`) and credits them as `bits` bits of entropy (needs CAP_SYS_ADMIN).
pub fn add_entropy(random: BorrowedFd<'_>, bytes: &[u8], bits: u32) -> nix::Result<()> {
    let size = i32::try_from(bytes.len()).map_err(|_| Errno::EINVAL)?;
    let count = i32::try_from(bits).map_err(|_| Errno::EINVAL)?;
    // struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
    let mut info = Vec::with_capacity(8 + bytes.len());
    info.extend_from_slice(&count.to_ne_bytes());
    info.extend_from_slice(&size.to_ne_bytes());
    info.extend_from_slice(bytes);
    // SAFETY: the kernel reads the two ints, then `buf_size` bytes after them, all inside
    // `info`, which lives across the call; it writes nothing back.
    let rc = unsafe { libc::ioctl(random.as_raw_fd(), RNDADDENTROPY, info.as_ptr()) };
    Errno::result(rc).map(drop)
}

/// `IOCTL_VM_SOCKETS_GET_LOCAL_CID`: `_IO(7, 0xb9)`.
const IOCTL_VM_SOCKETS_GET_LOCAL_CID: libc::c_ulong = 0x7b9;

/// This VM's own vsock context id, from the vsock device (`/dev/vsock`, open).
pub fn vsock_local_cid(vsock_dev: BorrowedFd<'_>) -> nix::Result<u32> {
    let mut cid: u32 = 0;
    // SAFETY: the ioctl writes one `unsigned int` (the CID) to the pointer, which points at
    // `cid`, alive and writable for the call.
    let rc = unsafe {
        libc::ioctl(
            vsock_dev.as_raw_fd(),
            IOCTL_VM_SOCKETS_GET_LOCAL_CID,
            &mut cid as *mut u32,
        )
    };
    Errno::result(rc).map(|_| cid)
}

/// Prepares the child started by `cmd`, right before exec: unblocks every signal (init blocks
/// the ones it reads through its signalfd, the mask survives exec, and std leaves it alone),
/// then switches to `uid`, `gid` and the supplementary `groups`.
///
/// Credentials are set here rather than with `CommandExt::uid/gid` because std clears the
/// supplementary groups and has no stable way to set them, and the order matters: groups, then
/// gid, then uid (after setuid the process may no longer change its groups).
pub fn prepare_exec(cmd: &mut Command, uid: u32, gid: u32, groups: Vec<u32>) {
    let groups: Vec<Gid> = groups.into_iter().map(Gid::from_raw).collect();
    let no_signals = SigSet::empty();
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
    // work is allowed: it allocates nothing (the group vector and the signal set were built
    // before the fork and are only borrowed) and makes four system calls through thin nix
    // wrappers.
    unsafe {
        cmd.pre_exec(move || {
            pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&no_signals), None)?;
            nix::unistd::setgroups(&groups)?;
            nix::unistd::setgid(Gid::from_raw(gid))?;
            nix::unistd::setuid(Uid::from_raw(uid))?;
            Ok(())
        });
    }
}
