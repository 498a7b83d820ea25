//! The NSM's one ioctl, `_IOWR(0x0A, 0, struct nsm_message)`, over CUSE's unrestricted-ioctl
//! retry protocol.
//!
//! The argument is a `struct nsm_message { struct iovec request; struct iovec response; }` whose
//! iovecs point elsewhere in the caller's memory, so the kernel cannot know what to copy; we
//! tell it, one retry at a time:
//!
//! 1. no data: ask for the 32-byte message at `arg`;
//! 2. the message: ask for it again plus the request bytes, and map the message and the
//!    response buffer (at most [`RESPONSE_MAX`] of it) for the reply;
//! 3. message and request: process, and reply with the message (its `response.iov_len` set to
//!    the response's length) and the response, which the kernel copies into the mapped ranges.
//!
//! No state is kept between the steps: the kernel sends back exactly the iovecs we named, so the
//! sizes of a call say which step it is, and a caller that changes its message between two
//! steps gets `EINVAL` rather than a response written where it no longer asked for it.

use nix::libc;

use super::proto::{IoVec, IoctlIn, Reader, FUSE_IOCTL_COMPAT, FUSE_IOCTL_UNRESTRICTED};

/// `_IOWR(0x0A, 0, struct nsm_message)` on x86_64: direction read|write, size 32, type 0x0A.
pub const NSM_IOCTL: u32 = (3 << 30) | (32 << 16) | (0x0A << 8);
/// `sizeof(struct nsm_message)`: two 16-byte iovecs.
pub const MESSAGE_LEN: usize = 32;
/// The largest request the Nitro driver takes (`NSM_REQUEST_MAX_SIZE`).
pub const REQUEST_MAX: u64 = 0x1000;
/// The largest response the Nitro driver returns (`NSM_RESPONSE_MAX_SIZE`); the NSM API
/// crate's buffer is exactly this long.
pub const RESPONSE_MAX: u64 = 0x3000;

/// `struct nsm_message`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NsmMessage {
    /// The CBOR request in the caller's memory.
    pub request: IoVec,
    /// The caller's buffer for the CBOR response.
    pub response: IoVec,
}

impl NsmMessage {
    /// Decodes the message from the first [`MESSAGE_LEN`] bytes of `b`; `None` if shorter.
    pub fn decode(b: &[u8]) -> Option<Self> {
        let mut r = Reader::new(b);
        let mut iov = || -> Option<IoVec> {
            Some(IoVec {
                base: r.u64("iov_base").ok()?,
                len: r.u64("iov_len").ok()?,
            })
        };
        Some(NsmMessage {
            request: iov()?,
            response: iov()?,
        })
    }

    /// The message's bytes.
    pub fn encode(&self) -> [u8; MESSAGE_LEN] {
        let mut out = [0; MESSAGE_LEN];
        let fields = [
            self.request.base,
            self.request.len,
            self.response.base,
            self.response.len,
        ];
        for (chunk, v) in out.chunks_exact_mut(8).zip(fields) {
            chunk.copy_from_slice(&v.to_le_bytes());
        }
        out
    }

    /// The part of the response buffer we map: never more than a response can need.
    fn response_window(&self) -> IoVec {
        IoVec {
            base: self.response.base,
            len: self.response.len.min(RESPONSE_MAX),
        }
    }
}

/// What to do with one `FUSE_IOCTL`.
#[derive(Debug, PartialEq, Eq)]
pub enum Step<'a> {
    /// Ask the kernel to copy `ins` and map `outs`, then call again.
    Retry {
        /// Ranges to copy from the caller.
        ins: Vec<IoVec>,
        /// Ranges the reply's data goes to.
        outs: Vec<IoVec>,
    },
    /// Everything is here: answer `request`, then [`finish`].
    Ready {
        /// The caller's message as copied in this call.
        message: NsmMessage,
        /// The CBOR request.
        request: &'a [u8],
    },
    /// Fail the ioctl with this errno.
    Fail(i32),
}

/// The next step of the NSM ioctl `i`.
pub fn step<'a>(i: &IoctlIn<'a>) -> Step<'a> {
    // 32-bit callers have 16-byte messages and another request code; Nitro's driver has no
    // compat ioctl either.
    if i.cmd != NSM_IOCTL || i.flags & FUSE_IOCTL_COMPAT != 0 {
        return Step::Fail(libc::ENOTTY);
    }
    // Without unrestricted mode the kernel refuses retries; we announce it, so this is a
    // kernel that ignored CUSE_INIT's flags.
    if i.flags & FUSE_IOCTL_UNRESTRICTED == 0 {
        return Step::Fail(libc::EIO);
    }
    let arg = IoVec {
        base: i.arg,
        len: 32,
    };
    match (i.data.len(), i.out_size) {
        (0, 0) => Step::Retry {
            ins: vec![arg],
            outs: vec![],
        },
        (MESSAGE_LEN, 0) => {
            let Some(message) = NsmMessage::decode(i.data) else {
                return Step::Fail(libc::EIO);
            };
            if message.request.len > REQUEST_MAX {
                return Step::Fail(libc::EMSGSIZE);
            }
            Step::Retry {
                ins: vec![arg, message.request],
                outs: vec![arg, message.response_window()],
            }
        }
        (n, out) if n >= MESSAGE_LEN && out >= 32 => {
            let Some(message) = NsmMessage::decode(i.data) else {
                return Step::Fail(libc::EIO);
            };
            let request = &i.data[MESSAGE_LEN..];
            let consistent = u64::try_from(request.len()).ok() == Some(message.request.len)
                && u64::from(out) - 32 == message.response_window().len;
            if !consistent {
                return Step::Fail(libc::EINVAL);
            }
            Step::Ready { message, request }
        }
        _ => Step::Fail(libc::EIO),
    }
}

/// The final reply's data for `response` (the kernel writes it to the message and the
/// response buffer), or `EMSGSIZE` when the caller's buffer is too small, as Nitro's driver.
pub fn finish(message: &NsmMessage, response: &[u8]) -> Result<[u8; MESSAGE_LEN], i32> {
    let len = u64::try_from(response.len()).map_err(|_| libc::EMSGSIZE)?;
    if len > message.response_window().len {
        return Err(libc::EMSGSIZE);
    }
    let updated = NsmMessage {
        request: message.request,
        response: IoVec {
            base: message.response.base,
            len,
        },
    };
    Ok(updated.encode())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARG: u64 = 0x7fff_1000;

    fn call(data: &[u8], out_size: u32) -> IoctlIn<'_> {
        IoctlIn {
            flags: FUSE_IOCTL_UNRESTRICTED,
            cmd: NSM_IOCTL,
            arg: ARG,
            data,
            out_size,
        }
    }

    fn message(req_len: u64, resp_len: u64) -> NsmMessage {
        NsmMessage {
            request: IoVec {
                base: 0x5000,
                len: req_len,
            },
            response: IoVec {
                base: 0x9000,
                len: resp_len,
            },
        }
    }

    #[test]
    fn the_request_code_is_the_nsm_api_crates() {
        assert_eq!(NSM_IOCTL, 0xC020_0A00);
    }

    #[test]
    fn three_steps_fetch_the_message_then_the_request() {
        let arg = IoVec { base: ARG, len: 32 };
        assert_eq!(
            step(&call(&[], 0)),
            Step::Retry {
                ins: vec![arg],
                outs: vec![]
            }
        );
        let m = message(5, 0x3000);
        let bytes = m.encode();
        assert_eq!(
            step(&call(&bytes, 0)),
            Step::Retry {
                ins: vec![arg, m.request],
                outs: vec![arg, m.response]
            }
        );
        let mut data = bytes.to_vec();
        data.extend_from_slice(b"hello");
        assert_eq!(
            step(&call(&data, 32 + 0x3000)),
            Step::Ready {
                message: m,
                request: b"hello"
            }
        );
        let done = finish(&m, b"resp").unwrap();
        assert_eq!(NsmMessage::decode(&done).unwrap(), message(5, 4));
    }

    #[test]
    fn large_buffers_are_bounded() {
        // A larger response buffer is mapped only as far as a response can go.
        let m = message(1, 1 << 40);
        let Step::Retry { outs, .. } = step(&call(&m.encode(), 0)) else {
            panic!()
        };
        assert_eq!(outs[1].len, RESPONSE_MAX);
        // A request over the driver's limit is refused before anything is copied.
        let m = message(REQUEST_MAX + 1, 16);
        assert_eq!(step(&call(&m.encode(), 0)), Step::Fail(libc::EMSGSIZE));
        // A response longer than the caller's buffer.
        assert_eq!(finish(&message(1, 3), b"four"), Err(libc::EMSGSIZE));
    }

    #[test]
    fn other_ioctls_and_inconsistent_calls_fail() {
        let mut c = call(&[], 0);
        c.cmd = 0x5401;
        assert_eq!(step(&c), Step::Fail(libc::ENOTTY));
        let mut c = call(&[], 0);
        c.flags |= FUSE_IOCTL_COMPAT;
        assert_eq!(step(&c), Step::Fail(libc::ENOTTY));
        let mut c = call(&[], 0);
        c.flags = 0;
        assert_eq!(step(&c), Step::Fail(libc::EIO));
        // The caller changed its message between the second and third step.
        let mut data = message(6, 16).encode().to_vec();
        data.extend_from_slice(b"hello");
        assert_eq!(step(&call(&data, 48)), Step::Fail(libc::EINVAL));
        let data = message(5, 8).encode();
        assert_eq!(step(&call(&data[..], 48)), Step::Fail(libc::EINVAL));
        // Sizes no step of ours produces.
        assert_eq!(step(&call(&[0; 7], 0)), Step::Fail(libc::EIO));
        assert_eq!(step(&call(&[0; 40], 8)), Step::Fail(libc::EIO));
    }
}
