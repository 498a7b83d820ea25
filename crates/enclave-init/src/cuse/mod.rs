//! `/dev/nsm` in emulated enclaves: a CUSE character device served by enclave-init, so that
//! applications written for Nitro (the NSM API crate, libnsm, the AWS SDKs) reach the emulated
//! NSM through the same ioctl and the same CBOR as on Nitro.
//!
//! Only for the emulated NSM: on Nitro, nsm.ko provides the real device and this never runs.
//! The kernel creates `/dev/nsm` (devtmpfs, mode 0600 root) when it accepts our `CUSE_INIT`,
//! so only root in the enclave can open it, as with Nitro's misc device.
//!
//! The channel is plain `read()`/`write()` of byte messages on `/dev/cuse`: one request per
//! read, one reply per write. [`proto`] has the wire format, [`ioctl`] the NSM ioctl's retry
//! steps; this file the loop, on a thread of its own. Requests are answered one at a time: the
//! emulated NSM serves one connection at a time anyway.

pub mod ioctl;
pub mod proto;

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;

use enclave_nsm::{decode_request, encode_response, ErrorCode, Nsm, Response};
use nix::libc;
use rustix::fs::{FileType, Mode, CWD};

use ioctl::Step;
use proto::{opcode, InHeader, Request};

/// The CUSE control device.
pub const CUSE_DEVICE: &str = "/dev/cuse";
/// The misc device number of `/dev/cuse` (10, 203), for when devtmpfs has not made the node.
const CUSE_MAJOR: u32 = 10;
const CUSE_MINOR: u32 = 203;
/// The name the kernel gives the device in /dev.
pub const DEVNAME: &str = "nsm";
/// The read buffer. The kernel refuses reads smaller than 8 KiB, and fails (EIO) a request
/// larger than the buffer rather than splitting it; the largest we ask for is the NSM message
/// and a 4 KiB request, with headers.
const READ_BUF: usize = 16 * 1024;

/// Why the device could not be served.
#[derive(Debug, thiserror::Error)]
pub enum CuseError {
    /// `/dev/cuse` could not be created or opened (cuse.ko not loaded?).
    #[error("{CUSE_DEVICE}: {0}")]
    Open(#[source] io::Error),
    /// Reading the next request failed.
    #[error("reading {CUSE_DEVICE}: {0}")]
    Read(#[source] io::Error),
    /// Writing a reply failed.
    #[error("replying on {CUSE_DEVICE}: {0}")]
    Write(#[source] io::Error),
    /// The kernel's first message is not a `CUSE_INIT` we can answer.
    #[error("CUSE_INIT: {0}")]
    Init(String),
    /// The kernel's message did not decode.
    #[error("message from the kernel: {0}")]
    Decode(#[from] proto::DecodeError),
}

/// Registers `/dev/nsm` and serves it on a thread, forwarding each request to `nsm` (looked up
/// for every request, so an NSM withdrawn after boot is no longer reachable this way either).
/// Returns once the device exists.
pub fn start(nsm: fn() -> Option<&'static dyn Nsm>) -> Result<(), CuseError> {
    ensure_node(Path::new(CUSE_DEVICE)).map_err(CuseError::Open)?;
    let mut dev = OpenOptions::new()
        .read(true)
        .write(true)
        .open(CUSE_DEVICE)
        .map_err(CuseError::Open)?;
    let mut buf = vec![0; READ_BUF];
    let n = read_request(&mut dev, &mut buf)?;
    let reply = init_reply(&buf[..n])?;
    write_reply(&mut dev, &reply)?;
    std::thread::Builder::new()
        .name("nsm-cuse".into())
        .spawn(move || {
            if let Err(e) = serve(&mut dev, &mut buf, nsm) {
                crate::say!("/dev/{DEVNAME}: {e}; the device no longer answers");
            }
        })
        .map_err(CuseError::Open)?;
    Ok(())
}

/// Makes `/dev/cuse` if devtmpfs did not (an older kernel, or /dev not a devtmpfs).
fn ensure_node(path: &Path) -> io::Result<()> {
    if path.exists() {
        return Ok(());
    }
    let dev = rustix::fs::makedev(CUSE_MAJOR, CUSE_MINOR);
    rustix::fs::mknodat(
        CWD,
        path,
        FileType::CharacterDevice,
        Mode::from_raw_mode(0o600),
        dev,
    )
    .map_err(io::Error::from)
}

/// The answer to the first message, which must be `CUSE_INIT` with FUSE 7.11 or later.
fn init_reply(msg: &[u8]) -> Result<Vec<u8>, CuseError> {
    match proto::decode(msg)? {
        (h, Request::Init { major, minor }) if major == proto::FUSE_MAJOR && minor >= 11 => {
            Ok(proto::reply_init(h.unique, DEVNAME))
        }
        (_, Request::Init { major, minor }) => Err(CuseError::Init(format!(
            "the kernel speaks FUSE {major}.{minor}, CUSE needs 7.11 or later"
        ))),
        (h, _) => Err(CuseError::Init(format!(
            "the first request is opcode {}",
            h.opcode
        ))),
    }
}

fn serve(
    dev: &mut File,
    buf: &mut [u8],
    nsm: fn() -> Option<&'static dyn Nsm>,
) -> Result<(), CuseError> {
    loop {
        let n = match read_request(dev, buf) {
            Ok(n) => n,
            // The kernel tore the channel down (it does not while init holds the fd).
            Err(CuseError::Read(e)) if e.raw_os_error() == Some(libc::ENODEV) => return Ok(()),
            Err(e) => return Err(e),
        };
        let reply = match proto::decode(&buf[..n]) {
            Ok((h, r)) => handle(h, r, &|req| forward(nsm(), req)),
            Err(e) => {
                // Without a header there is no one to answer; with one, fail the call rather
                // than leave the caller blocked.
                crate::say!("/dev/{DEVNAME}: {e}");
                proto::Reader::new(&buf[..n])
                    .take(16, "header")
                    .ok()
                    .and_then(|h| h.get(8..16))
                    .and_then(|u| <[u8; 8]>::try_from(u).ok())
                    .map(|u| proto::reply_error(u64::from_le_bytes(u), libc::EIO))
            }
        };
        if let Some(reply) = reply {
            match write_reply(dev, &reply) {
                // The caller was interrupted and the request is gone: nothing to answer.
                Err(CuseError::Write(e)) if e.raw_os_error() == Some(libc::ENOENT) => {}
                other => other?,
            }
        }
    }
}

fn read_request(dev: &mut File, buf: &mut [u8]) -> Result<usize, CuseError> {
    loop {
        match dev.read(buf) {
            Ok(n) => return Ok(n),
            // EINTR, or a request withdrawn between poll and read.
            Err(e)
                if e.kind() == io::ErrorKind::Interrupted
                    || e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(CuseError::Read(e)),
        }
    }
}

/// One reply is one write: the kernel takes a reply only whole.
fn write_reply(dev: &mut File, reply: &[u8]) -> Result<(), CuseError> {
    let n = dev.write(reply).map_err(CuseError::Write)?;
    if n != reply.len() {
        return Err(CuseError::Write(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("wrote {n} of {} bytes", reply.len()),
        )));
    }
    Ok(())
}

/// Answers a CBOR request with a CBOR response or an errno.
pub type Forward<'a> = &'a dyn Fn(&[u8]) -> Result<Vec<u8>, i32>;

/// The reply to one request; `None` for those that take none.
pub fn handle(h: InHeader, r: Request<'_>, nsm: Forward<'_>) -> Option<Vec<u8>> {
    let reply = match (h.opcode, r) {
        // The interrupted request is answered normally; an interrupt itself takes no reply.
        (opcode::INTERRUPT, _) => return None,
        (opcode::OPEN, _) => proto::reply_open(h.unique),
        (opcode::RELEASE, _) => proto::reply_ok(h.unique),
        // Nitro's misc device has no read or write either: the VFS says EINVAL.
        (opcode::READ | opcode::WRITE, _) => proto::reply_error(h.unique, libc::EINVAL),
        (_, Request::Ioctl(i)) => match ioctl::step(&i) {
            Step::Retry { ins, outs } => proto::reply_ioctl_retry(h.unique, &ins, &outs),
            Step::Fail(errno) => proto::reply_error(h.unique, errno),
            Step::Ready { message, request } => {
                match nsm(request).and_then(|resp| Ok((ioctl::finish(&message, &resp)?, resp))) {
                    Ok((m, resp)) => proto::reply_ioctl_done(h.unique, 0, &[&m, &resp]),
                    Err(errno) => proto::reply_error(h.unique, errno),
                }
            }
        },
        _ => proto::reply_error(h.unique, libc::ENOSYS),
    };
    Some(reply)
}

/// Answers one CBOR request with the NSM. A request that is not the NSM API's CBOR gets the
/// NSM's own `InvalidArgument` response, as the device would give; failing to reach the NSM
/// is `EIO`, which the NSM API crate reports as `InternalError`.
pub fn forward(nsm: Option<&dyn Nsm>, request: &[u8]) -> Result<Vec<u8>, i32> {
    let nsm = nsm.ok_or(libc::EIO)?;
    let response = match decode_request(request) {
        Ok(req) => nsm.process(req).map_err(|e| {
            crate::say!("/dev/{DEVNAME}: {e}");
            libc::EIO
        })?,
        Err(_) => Response::Error(ErrorCode::InvalidArgument),
    };
    encode_response(&response).map_err(|_| libc::EIO)
}

/// The fuzz body (fuzz/fuzz_targets/cuse_message.rs, and `cargo test` over seeds): any bytes
/// the kernel could hand us decode or fail without a panic, and every reply is well formed.
pub fn fuzz_message(data: &[u8]) {
    let Ok((h, r)) = proto::decode(data) else {
        return;
    };
    // An NSM that answers with the request: the reply path sees every size.
    if let Some(reply) = handle(h, r, &|req| Ok(req.to_vec())) {
        let len = reply.get(..4).map(|b| [b[0], b[1], b[2], b[3]]);
        assert_eq!(len.map(u32::from_le_bytes), u32::try_from(reply.len()).ok());
        assert_eq!(
            reply.get(8..16),
            data.get(8..16),
            "the reply names its request"
        );
    }
}

#[cfg(test)]
mod tests;
