//! The FUSE/CUSE wire format, as much of it as a character device needs: the kernel's requests
//! are decoded from the bytes one `read()` of `/dev/cuse` returns, replies are encoded into the
//! bytes of one `write()`. Everything is little-endian (x86_64, the only enclave architecture)
//! and every length is checked against the buffer, so a malformed message is an error, never a
//! panic. The layouts are `include/uapi/linux/fuse.h`'s.

/// The FUSE major version the kernel and we speak.
pub const FUSE_MAJOR: u32 = 7;
/// The minor version we announce: CUSE needs at least 11 (unrestricted ioctls); 31 is what
/// Linux 5.4+ speaks and asks nothing of us that 11 does not.
pub const FUSE_MINOR: u32 = 31;
/// `struct fuse_in_header`.
pub const IN_HEADER_LEN: usize = 40;
/// `struct fuse_out_header`.
pub const OUT_HEADER_LEN: usize = 16;
/// `struct fuse_ioctl_in`.
const IOCTL_IN_LEN: usize = 32;
/// `struct cuse_init_out` (eight u32 and ten spare).
const CUSE_INIT_OUT_LEN: usize = 72;
/// `CUSE_UNRESTRICTED_IOCTL`: the kernel passes `ioctl`'s argument as an address and lets us
/// name the user memory to copy (the retry protocol), which the NSM's pointer-carrying
/// message needs.
pub const CUSE_UNRESTRICTED_IOCTL: u32 = 1;
/// The kernel rounds smaller values up to this; we never need more (ioctl data is not bounded
/// by it).
const MAX_READ_WRITE: u32 = 4096;

/// `fuse_ioctl_in.flags`: the caller is a 32-bit process.
pub const FUSE_IOCTL_COMPAT: u32 = 1;
/// `fuse_ioctl_in.flags`: the ioctl is unrestricted (CUSE with `CUSE_UNRESTRICTED_IOCTL`).
pub const FUSE_IOCTL_UNRESTRICTED: u32 = 1 << 1;
/// `fuse_ioctl_out.flags`: copy the named iovecs and ask again.
pub const FUSE_IOCTL_RETRY: u32 = 1 << 2;
/// The kernel's limit on iovecs in a retry (`FUSE_IOCTL_MAX_IOV`).
pub const FUSE_IOCTL_MAX_IOV: usize = 256;

/// The opcodes a CUSE device receives (`enum fuse_opcode`).
pub mod opcode {
    /// `open(2)` of the device.
    pub const OPEN: u32 = 14;
    /// `read(2)`.
    pub const READ: u32 = 15;
    /// `write(2)`.
    pub const WRITE: u32 = 16;
    /// The last close of an open file.
    pub const RELEASE: u32 = 18;
    /// A signal interrupted a pending request; it takes no reply.
    pub const INTERRUPT: u32 = 36;
    /// `ioctl(2)`.
    pub const IOCTL: u32 = 39;
    /// The first request on a CUSE channel.
    pub const CUSE_INIT: u32 = 4096;
}

/// Why a message from the kernel could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The message ends before a field.
    #[error("{what}: needs {need} bytes, the message has {have}")]
    Short {
        /// The field.
        what: &'static str,
        /// Bytes needed.
        need: usize,
        /// Bytes left.
        have: usize,
    },
    /// The header's length is not the length read.
    #[error("the header says {header} bytes, the read returned {read}")]
    Length {
        /// `fuse_in_header.len`.
        header: u32,
        /// Bytes read.
        read: usize,
    },
    /// The ioctl's data is not as long as `in_size` says.
    #[error("ioctl in_size {in_size}, {have} bytes follow")]
    IoctlData {
        /// `fuse_ioctl_in.in_size`.
        in_size: u32,
        /// Bytes after `fuse_ioctl_in`.
        have: usize,
    },
}

/// A bounds-checked little-endian cursor.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Short {
                what,
                need: n,
                have: self.buf.len(),
            });
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let b = self.take(8, what)?;
        let mut a = [0; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    pub(crate) fn rest(&self) -> &'a [u8] {
        self.buf
    }
}

/// `struct fuse_in_header`, the fields we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InHeader {
    /// What the kernel asks.
    pub opcode: u32,
    /// Names the request; the reply carries it back.
    pub unique: u64,
    /// The calling process (for the log).
    pub pid: u32,
}

/// `struct fuse_ioctl_in` and the data the kernel copied from the iovecs we named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoctlIn<'a> {
    /// `FUSE_IOCTL_*`.
    pub flags: u32,
    /// The ioctl's request code.
    pub cmd: u32,
    /// Its argument: with unrestricted ioctls, the caller's address.
    pub arg: u64,
    /// The bytes of the in-iovecs of the last retry, concatenated (empty on the first call).
    pub data: &'a [u8],
    /// Total length of the out-iovecs of the last retry: how much the reply may carry.
    pub out_size: u32,
}

/// One request from the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request<'a> {
    /// `CUSE_INIT` with the kernel's FUSE version.
    Init {
        /// Its major version.
        major: u32,
        /// Its minor version.
        minor: u32,
    },
    /// `FUSE_IOCTL`.
    Ioctl(IoctlIn<'a>),
    /// Anything else, answered by opcode alone.
    Other,
}

/// Decodes one message read from `/dev/cuse`.
pub fn decode(buf: &[u8]) -> Result<(InHeader, Request<'_>), DecodeError> {
    let mut r = Reader::new(buf);
    let len = r.u32("fuse_in_header.len")?;
    let opcode = r.u32("fuse_in_header.opcode")?;
    let unique = r.u64("fuse_in_header.unique")?;
    let _nodeid = r.u64("fuse_in_header.nodeid")?;
    let _uid = r.u32("fuse_in_header.uid")?;
    let _gid = r.u32("fuse_in_header.gid")?;
    let pid = r.u32("fuse_in_header.pid")?;
    r.take(4, "fuse_in_header padding")?;
    if usize::try_from(len).ok() != Some(buf.len()) {
        return Err(DecodeError::Length {
            header: len,
            read: buf.len(),
        });
    }
    let header = InHeader {
        opcode,
        unique,
        pid,
    };
    let request = match opcode {
        opcode::CUSE_INIT => Request::Init {
            major: r.u32("cuse_init_in.major")?,
            minor: r.u32("cuse_init_in.minor")?,
        },
        opcode::IOCTL => {
            let mut i = Reader::new(r.take(IOCTL_IN_LEN, "fuse_ioctl_in")?);
            let _fh = i.u64("fuse_ioctl_in.fh")?;
            let flags = i.u32("fuse_ioctl_in.flags")?;
            let cmd = i.u32("fuse_ioctl_in.cmd")?;
            let arg = i.u64("fuse_ioctl_in.arg")?;
            let in_size = i.u32("fuse_ioctl_in.in_size")?;
            let out_size = i.u32("fuse_ioctl_in.out_size")?;
            let data = r.rest();
            if usize::try_from(in_size).ok() != Some(data.len()) {
                return Err(DecodeError::IoctlData {
                    in_size,
                    have: data.len(),
                });
            }
            Request::Ioctl(IoctlIn {
                flags,
                cmd,
                arg,
                data,
                out_size,
            })
        }
        _ => Request::Other,
    };
    Ok((header, request))
}

/// A reply: `fuse_out_header` (its length filled in) followed by `parts`.
fn reply(unique: u64, error: i32, parts: &[&[u8]]) -> Vec<u8> {
    let body: usize = parts.iter().map(|p| p.len()).sum();
    let len = OUT_HEADER_LEN + body;
    let mut out = Vec::with_capacity(len);
    // Replies are bounded by what we build (at most the NSM's response and a few iovecs), far
    // below 4 GiB; saturate rather than wrap if that ever changes, and the kernel refuses it.
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(&error.to_le_bytes());
    out.extend_from_slice(&unique.to_le_bytes());
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

/// A reply with no data.
pub fn reply_ok(unique: u64) -> Vec<u8> {
    reply(unique, 0, &[])
}

/// An error reply: the caller's system call fails with `errno`.
pub fn reply_error(unique: u64, errno: i32) -> Vec<u8> {
    reply(unique, errno.saturating_neg(), &[])
}

/// The reply to `FUSE_OPEN`: `struct fuse_open_out` with no file handle and no flags (one
/// device, no per-open state).
pub fn reply_open(unique: u64) -> Vec<u8> {
    reply(unique, 0, &[&[0; 16]])
}

/// The reply to `CUSE_INIT`: our version, unrestricted ioctls, a dynamic major/minor (0, 0),
/// and the device info `DEVNAME=<name>`, from which the kernel names the node in /dev.
pub fn reply_init(unique: u64, devname: &str) -> Vec<u8> {
    let mut init = Vec::with_capacity(CUSE_INIT_OUT_LEN);
    for v in [
        FUSE_MAJOR,
        FUSE_MINOR,
        0,
        CUSE_UNRESTRICTED_IOCTL,
        MAX_READ_WRITE,
        MAX_READ_WRITE,
        0,
        0,
    ] {
        init.extend_from_slice(&v.to_le_bytes());
    }
    init.resize(CUSE_INIT_OUT_LEN, 0);
    let info = format!("DEVNAME={devname}\0");
    reply(unique, 0, &[&init, info.as_bytes()])
}

/// A user-memory range of the ioctl's caller (`struct fuse_ioctl_iovec`, and the iovecs of
/// the NSM's message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoVec {
    /// The caller's address.
    pub base: u64,
    /// Its length.
    pub len: u64,
}

impl IoVec {
    fn encode(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.base.to_le_bytes());
        out.extend_from_slice(&self.len.to_le_bytes());
    }
}

/// The reply asking the kernel to copy `ins` from the caller and make room for `outs`, then
/// send the ioctl again.
pub fn reply_ioctl_retry(unique: u64, ins: &[IoVec], outs: &[IoVec]) -> Vec<u8> {
    let mut body = Vec::with_capacity(16 + 16 * (ins.len() + outs.len()));
    // The counts are ours and small (at most two each); see FUSE_IOCTL_MAX_IOV.
    let count = |v: &[IoVec]| u32::try_from(v.len()).unwrap_or(u32::MAX);
    for v in [0, FUSE_IOCTL_RETRY, count(ins), count(outs)] {
        body.extend_from_slice(&v.to_le_bytes());
    }
    for iov in ins.iter().chain(outs) {
        iov.encode(&mut body);
    }
    reply(unique, 0, &[&body])
}

/// The final reply to an ioctl: it returns `result` and the kernel copies `data` into the
/// out-iovecs of the last retry, in order.
pub fn reply_ioctl_done(unique: u64, result: i32, data: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    out.extend_from_slice(&result.to_le_bytes());
    out.extend_from_slice(&[0; 12]);
    let mut parts = vec![out.as_slice()];
    parts.extend_from_slice(data);
    reply(unique, 0, &parts)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A request as the kernel writes it.
    pub(crate) fn message(op: u32, unique: u64, body: &[u8]) -> Vec<u8> {
        let len = u32::try_from(IN_HEADER_LEN + body.len()).unwrap();
        let mut m = Vec::new();
        m.extend_from_slice(&len.to_le_bytes());
        m.extend_from_slice(&op.to_le_bytes());
        m.extend_from_slice(&unique.to_le_bytes());
        m.extend_from_slice(&1u64.to_le_bytes());
        m.extend_from_slice(&[0; 8]); // uid, gid
        m.extend_from_slice(&77u32.to_le_bytes());
        m.extend_from_slice(&[0; 4]);
        m.extend_from_slice(body);
        m
    }

    pub(crate) fn ioctl(flags: u32, cmd: u32, arg: u64, data: &[u8], out_size: u32) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&9u64.to_le_bytes());
        b.extend_from_slice(&flags.to_le_bytes());
        b.extend_from_slice(&cmd.to_le_bytes());
        b.extend_from_slice(&arg.to_le_bytes());
        b.extend_from_slice(&u32::try_from(data.len()).unwrap().to_le_bytes());
        b.extend_from_slice(&out_size.to_le_bytes());
        b.extend_from_slice(data);
        message(opcode::IOCTL, 5, &b)
    }

    #[test]
    fn init_is_decoded_and_answered() {
        let mut body = Vec::new();
        for v in [7u32, 37, 0, 0] {
            body.extend_from_slice(&v.to_le_bytes());
        }
        let m = message(opcode::CUSE_INIT, 1, &body);
        let (h, r) = decode(&m).unwrap();
        assert_eq!((h.opcode, h.unique, h.pid), (opcode::CUSE_INIT, 1, 77));
        assert_eq!(
            r,
            Request::Init {
                major: 7,
                minor: 37
            }
        );
        let reply = reply_init(1, "nsm");
        assert_eq!(reply.len(), OUT_HEADER_LEN + 72 + "DEVNAME=nsm\0".len());
        assert_eq!(
            reply[..4],
            u32::try_from(reply.len()).unwrap().to_le_bytes()
        );
        assert_eq!(reply[4..8], [0; 4]);
        assert_eq!(reply[8..16], 1u64.to_le_bytes());
        // flags: unrestricted ioctls; dev_major/dev_minor 0: allocated by the kernel.
        assert_eq!(reply[16 + 12..16 + 16], 1u32.to_le_bytes());
        assert_eq!(reply[16 + 24..16 + 32], [0; 8]);
        assert!(reply.ends_with(b"DEVNAME=nsm\0"));
    }

    #[test]
    fn ioctl_is_decoded_with_its_data() {
        let m = ioctl(
            FUSE_IOCTL_UNRESTRICTED,
            0xC020_0A00,
            0x7fff_0000,
            b"abc",
            40,
        );
        let (h, r) = decode(&m).unwrap();
        assert_eq!(h.unique, 5);
        let Request::Ioctl(i) = r else {
            panic!("{r:?}")
        };
        assert_eq!(
            (i.flags, i.cmd, i.arg, i.data, i.out_size),
            (2, 0xC020_0A00, 0x7fff_0000, &b"abc"[..], 40)
        );
    }

    #[test]
    fn malformed_messages_are_errors() {
        let m = ioctl(0, 1, 2, b"abcd", 0);
        // Every truncation is refused (the header's length no longer matches, or a field is
        // missing), never a panic.
        for n in 0..m.len() {
            assert!(decode(&m[..n]).is_err(), "{n}");
        }
        let mut long = m.clone();
        long.push(0);
        assert!(matches!(decode(&long), Err(DecodeError::Length { .. })));
        // in_size says 4 bytes; claim 5.
        let mut bad = m.clone();
        bad[IN_HEADER_LEN + 24] = 5;
        assert_eq!(
            decode(&bad),
            Err(DecodeError::IoctlData {
                in_size: 5,
                have: 4
            })
        );
        let short_init = message(opcode::CUSE_INIT, 1, &[7, 0, 0]);
        assert!(matches!(
            decode(&short_init),
            Err(DecodeError::Short { .. })
        ));
    }

    #[test]
    fn replies_carry_their_length_error_and_unique() {
        let e = reply_error(3, 22);
        assert_eq!(e.len(), 16);
        assert_eq!(e[..4], 16u32.to_le_bytes());
        assert_eq!(e[4..8], (-22i32).to_le_bytes());
        assert_eq!(e[8..], 3u64.to_le_bytes());
        assert_eq!(reply_open(3).len(), 32);
        let ins = [IoVec { base: 1, len: 32 }];
        let outs = [IoVec { base: 2, len: 8 }, IoVec { base: 3, len: 9 }];
        let r = reply_ioctl_retry(4, &ins, &outs);
        assert_eq!(r.len(), 16 + 16 + 3 * 16);
        assert_eq!(r[16 + 4..16 + 16], [4, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0]);
        assert_eq!(r[32..40], 1u64.to_le_bytes());
        assert_eq!(r[72..80], 9u64.to_le_bytes());
        let d = reply_ioctl_done(4, 0, &[b"xy", b"z"]);
        assert_eq!(d.len(), 16 + 16 + 3);
        assert!(d.ends_with(b"xyz"));
    }
}
