//! Blocking AF_VSOCK stream sockets, the same shape as `std::os::unix::net`.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use nix::sys::socket::{
    self, sockopt, AddressFamily, Backlog, MsgFlags, SockFlag, SockType, VsockAddr,
};
use nix::sys::time::TimeVal;

use super::vsock_unsafe::own_accepted;

fn socket_fd() -> io::Result<OwnedFd> {
    Ok(socket::socket(
        AddressFamily::Vsock,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?)
}

fn timeval(timeout: Option<Duration>) -> io::Result<TimeVal> {
    match timeout {
        // A zero timeout means "none" to the kernel; std refuses it the same way.
        Some(d) if d.is_zero() => Err(io::Error::new(io::ErrorKind::InvalidInput, "zero timeout")),
        Some(d) => Ok(TimeVal::new(
            d.as_secs().try_into().unwrap_or(i64::MAX),
            d.subsec_micros().into(),
        )),
        None => Ok(TimeVal::new(0, 0)),
    }
}

/// A connected AF_VSOCK stream.
#[derive(Debug)]
pub struct VsockStream {
    fd: OwnedFd,
}

impl VsockStream {
    /// Connects to `port` on the VM with context id `cid`.
    pub fn connect(cid: u32, port: u32) -> io::Result<Self> {
        let fd = socket_fd()?;
        socket::connect(fd.as_raw_fd(), &VsockAddr::new(cid, port))?;
        Ok(Self { fd })
    }

    /// The peer's (cid, port).
    pub fn peer_addr(&self) -> io::Result<(u32, u32)> {
        let addr: VsockAddr = socket::getpeername(self.fd.as_raw_fd())?;
        Ok((addr.cid(), addr.port()))
    }

    /// Another handle to the same socket (e.g. one thread reads, one writes).
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(Self {
            fd: self.fd.try_clone()?,
        })
    }

    /// Shuts down the read, write or both halves.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        let how = match how {
            Shutdown::Read => socket::Shutdown::Read,
            Shutdown::Write => socket::Shutdown::Write,
            Shutdown::Both => socket::Shutdown::Both,
        };
        Ok(socket::shutdown(self.fd.as_raw_fd(), how)?)
    }

    /// Read timeout (`None`: block forever).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        Ok(socket::setsockopt(
            &self.fd,
            sockopt::ReceiveTimeout,
            &timeval(timeout)?,
        )?)
    }

    /// Write timeout (`None`: block forever).
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        Ok(socket::setsockopt(
            &self.fd,
            sockopt::SendTimeout,
            &timeval(timeout)?,
        )?)
    }
}

impl Read for VsockStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
}

impl Read for &VsockStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(socket::recv(self.fd.as_raw_fd(), buf, MsgFlags::empty())?)
    }
}

impl Write for VsockStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        (&*self).write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Write for &VsockStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // MSG_NOSIGNAL: a peer that went away is an EPIPE error here, never a SIGPIPE that
        // would kill the process (enclave-init is PID 1).
        Ok(socket::send(
            self.fd.as_raw_fd(),
            buf,
            MsgFlags::MSG_NOSIGNAL,
        )?)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        Ok(socket::sendmsg::<VsockAddr>(
            self.fd.as_raw_fd(),
            bufs,
            &[],
            MsgFlags::MSG_NOSIGNAL,
            None,
        )?)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsFd for VsockStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl From<VsockStream> for OwnedFd {
    fn from(s: VsockStream) -> OwnedFd {
        s.fd
    }
}

/// A listening AF_VSOCK socket.
#[derive(Debug)]
pub struct VsockListener {
    fd: OwnedFd,
}

impl VsockListener {
    /// Listens on `port` for connections to `cid` (`VMADDR_CID_ANY` for any).
    pub fn bind(cid: u32, port: u32) -> io::Result<Self> {
        let fd = socket_fd()?;
        socket::bind(fd.as_raw_fd(), &VsockAddr::new(cid, port))?;
        // The kernel caps this at net.core.somaxconn; proxies see bursts of connections.
        socket::listen(&fd, Backlog::MAXCONN)?;
        Ok(Self { fd })
    }

    /// The bound (cid, port); the port is the real one when bound to `VMADDR_PORT_ANY`.
    pub fn local_addr(&self) -> io::Result<(u32, u32)> {
        let addr: VsockAddr = socket::getsockname(self.fd.as_raw_fd())?;
        Ok((addr.cid(), addr.port()))
    }

    /// Waits for the next connection; returns it with the peer's (cid, port).
    pub fn accept(&self) -> io::Result<(VsockStream, (u32, u32))> {
        let raw = loop {
            match socket::accept4(self.fd.as_raw_fd(), SockFlag::SOCK_CLOEXEC) {
                Err(nix::errno::Errno::EINTR) => continue,
                other => break other?,
            }
        };
        let stream = VsockStream {
            fd: own_accepted(raw),
        };
        let peer = stream.peer_addr()?;
        Ok((stream, peer))
    }
}

impl AsRawFd for VsockListener {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

impl From<VsockListener> for OwnedFd {
    fn from(l: VsockListener) -> OwnedFd {
        l.fd
    }
}

impl AsFd for VsockListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
