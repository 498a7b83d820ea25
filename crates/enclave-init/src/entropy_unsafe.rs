//! The ioctl that mixes bytes into the kernel's entropy pool and credits them (RNDADDENTROPY):
//! writing to /dev/random mixes without crediting. The block says why it is sound.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;
use nix::libc;

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
