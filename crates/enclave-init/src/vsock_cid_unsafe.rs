//! The ioctl that reads this VM's own vsock context id from `/dev/vsock`. The block says why it
//! is sound.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;
use nix::libc;

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
