//! The boot heartbeat: tells the parent instance that the enclave booted.
//!
//! Protocol (Nitro's): connect over vsock to the parent's port 9000, send one byte 0xB7, read
//! one byte back, which must be 0xB7 too. `nitro-cli run-enclave` waits for it; without it the
//! parent reports a boot failure after its own timeout.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use enclave_proto::init::HEARTBEAT_BYTE;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    connect, getsockopt, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, VsockAddr,
};
use nix::sys::time::TimeVal;
use std::os::fd::AsRawFd;

/// How long the connect may take. The parent listens before it starts the enclave, so a
/// healthy connect is immediate; the bound is for a parent that is not there.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the parent may take to echo the byte.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the heartbeat failed.
#[derive(Debug, thiserror::Error)]
pub enum HeartbeatError {
    /// No vsock socket could be made (no vsock transport loaded, or not in a VM).
    #[error("cannot create a vsock socket: {0}")]
    Socket(nix::Error),
    /// The parent did not accept the connection.
    #[error("cannot connect to cid {cid} port {port}: {source}")]
    Connect {
        /// Parent CID.
        cid: u32,
        /// Heartbeat port.
        port: u32,
        /// The errno (ETIMEDOUT when the bound ran out).
        source: nix::Error,
    },
    /// Sending or receiving the byte failed (including the reply timeout).
    #[error("exchange failed: {0}")]
    Io(#[from] std::io::Error),
    /// The parent answered with the wrong byte.
    #[error("parent answered 0x{0:02x}, expected 0x{HEARTBEAT_BYTE:02x}")]
    WrongByte(u8),
}

/// Sends the heartbeat to `cid:port` and waits for its echo, within bounded timeouts.
pub fn send(cid: u32, port: u32) -> Result<(), HeartbeatError> {
    let sock = connect_vsock(cid, port, CONNECT_TIMEOUT)?;
    let timeout = TimeVal::new(
        REPLY_TIMEOUT.as_secs() as _,
        REPLY_TIMEOUT.subsec_micros() as _,
    );
    // Timeouts make the blocking read and write below bounded.
    setsockopt(&sock, sockopt::ReceiveTimeout, &timeout).map_err(io_err)?;
    setsockopt(&sock, sockopt::SendTimeout, &timeout).map_err(io_err)?;
    let mut stream = File::from(sock);
    exchange(&mut stream)
}

fn io_err(e: nix::Error) -> HeartbeatError {
    HeartbeatError::Io(std::io::Error::from(e))
}

/// The byte exchange, on any stream (tested with a socket pair).
pub fn exchange(stream: &mut (impl Read + Write)) -> Result<(), HeartbeatError> {
    stream.write_all(&[HEARTBEAT_BYTE])?;
    let mut reply = [0u8; 1];
    stream.read_exact(&mut reply)?;
    match reply[0] {
        HEARTBEAT_BYTE => Ok(()),
        other => Err(HeartbeatError::WrongByte(other)),
    }
}

/// Connects a vsock stream socket with a bounded wait, and returns it in blocking mode.
fn connect_vsock(cid: u32, port: u32, timeout: Duration) -> Result<OwnedFd, HeartbeatError> {
    let sock = socket(
        AddressFamily::Vsock,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .map_err(HeartbeatError::Socket)?;
    let fail = |source| HeartbeatError::Connect { cid, port, source };
    match connect(sock.as_raw_fd(), &VsockAddr::new(cid, port)) {
        Ok(()) => {}
        Err(nix::Error::EINPROGRESS) => {
            let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(sock.as_fd(), PollFlags::POLLOUT)];
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(0) => return Err(fail(nix::Error::ETIMEDOUT)),
                Ok(_) => {}
                Err(e) => return Err(fail(e)),
            }
            match getsockopt(&sock, sockopt::SocketError) {
                Ok(0) => {}
                Ok(errno) => return Err(fail(nix::Error::from_raw(errno))),
                Err(e) => return Err(fail(e)),
            }
        }
        Err(e) => return Err(fail(e)),
    }
    let flags = fcntl(sock.as_raw_fd(), FcntlArg::F_GETFL).map_err(io_err)?;
    let blocking = OFlag::from_bits_truncate(flags) & !OFlag::O_NONBLOCK;
    fcntl(sock.as_raw_fd(), FcntlArg::F_SETFL(blocking)).map_err(io_err)?;
    Ok(sock)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn exchange_accepts_the_echo_and_rejects_anything_else() {
        for (answer, ok) in [(HEARTBEAT_BYTE, true), (0x00, false)] {
            let (mut ours, mut parent) = UnixStream::pair().unwrap();
            let t = std::thread::spawn(move || {
                let mut b = [0u8; 1];
                parent.read_exact(&mut b).unwrap();
                assert_eq!(b[0], HEARTBEAT_BYTE);
                parent.write_all(&[answer]).unwrap();
            });
            let r = exchange(&mut ours);
            t.join().unwrap();
            assert_eq!(r.is_ok(), ok, "{r:?}");
        }
    }

    #[test]
    fn exchange_fails_when_the_parent_hangs_up() {
        let (mut ours, parent) = UnixStream::pair().unwrap();
        drop(parent);
        assert!(exchange(&mut ours).is_err());
    }
}
