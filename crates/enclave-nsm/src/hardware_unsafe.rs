//! The NSM driver's one ioctl: `NSM_IOCTL_REQUEST` (`_IOWR(0x0A, 0, struct nsm_raw)`), whose
//! argument is two iovecs, the CBOR request and a buffer the driver fills with the response
//! (and shrinks to its length).
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

use nix::libc;

/// The driver's request and response limits.
const REQUEST_MAX: usize = 0x1000;
const RESPONSE_MAX: usize = 0x3000;

#[repr(C)]
struct NsmRaw {
    request: libc::iovec,
    response: libc::iovec,
}

const NSM_IOCTL_REQUEST: libc::c_ulong =
    nix::request_code_readwrite!(0x0A, 0, std::mem::size_of::<NsmRaw>()) as libc::c_ulong;

/// Sends `request` (CBOR) to the NSM behind `dev` and returns the CBOR response.
pub fn nsm_ioctl(dev: &File, request: &[u8]) -> io::Result<Vec<u8>> {
    if request.len() > REQUEST_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "NSM request over 4 KiB",
        ));
    }
    let mut response = vec![0u8; RESPONSE_MAX];
    let mut raw = NsmRaw {
        request: libc::iovec {
            iov_base: request.as_ptr() as *mut libc::c_void,
            iov_len: request.len(),
        },
        response: libc::iovec {
            iov_base: response.as_mut_ptr().cast(),
            iov_len: response.len(),
        },
    };
    // SAFETY: `raw` points at `request` (read by the driver only) and `response` (written by the
    // driver up to `iov_len` bytes); both outlive the call, and the fd is open for the call.
    let rc = unsafe { libc::ioctl(dev.as_raw_fd(), NSM_IOCTL_REQUEST as _, &mut raw) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    response.truncate(raw.response.iov_len.min(RESPONSE_MAX));
    Ok(response)
}
