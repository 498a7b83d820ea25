//! The byte streams a proxy joins (TCP, Unix, AF_VSOCK) behind one type, and the relay that
//! copies between two of them.
//!
//! The relay is readiness-based: a direction holds a buffer only while it moves bytes, taken from
//! a shared [`BufferPool`] when the source is readable and given back before it waits again. An
//! idle connection therefore costs two sockets and a task, not two buffers, which is what lets a
//! proxy hold thousands of idle connections in a few MiB. Half-close is kept: when one side
//! finishes sending, the other side's write half is shut down and the opposite direction goes on.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};

use enclave_proto::transport::{VsockListener, VsockStream};
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, VsockAddr};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

/// Size of each relay buffer. Large enough that one read drains what a socket buffers
/// (fewer syscalls than socat's 8 KiB), small enough that a few hundred busy connections fit.
pub const BUFFER_SIZE: usize = 64 * 1024;

/// A connected stream of any of the kinds a proxy joins.
#[derive(Debug)]
pub enum ProxyStream {
    /// TCP.
    Tcp(TcpStream),
    /// A Unix socket (vhost-device-vsock's hybrid sockets on the host, tests).
    Unix(UnixStream),
    /// AF_VSOCK.
    Vsock(AsyncVsock),
}

/// A non-blocking AF_VSOCK stream registered with the tokio reactor.
#[derive(Debug)]
pub struct AsyncVsock(AsyncFd<OwnedFd>);

impl AsyncVsock {
    /// Wraps a connected vsock stream (made non-blocking here). Must be called inside a tokio
    /// runtime.
    pub fn new(stream: VsockStream) -> io::Result<Self> {
        let fd = OwnedFd::from(stream);
        set_nonblocking(fd.as_raw_fd())?;
        Ok(AsyncVsock(crate::reactor_unsafe::register_fd(fd)?))
    }

    /// Connects to `cid:port` without blocking the runtime: a vsock connect is a round trip
    /// through the transport (the device, or the host's vhost-device-vsock and its Unix socket)
    /// which the kernel lets take up to its connect timeout, and the runtime thread serves every
    /// other connection meanwhile.
    pub async fn connect(cid: u32, port: u32) -> io::Result<Self> {
        let fd = socket::socket(
            AddressFamily::Vsock,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )?;
        match socket::connect(fd.as_raw_fd(), &VsockAddr::new(cid, port)) {
            Ok(()) | Err(Errno::EINPROGRESS) => {}
            Err(e) => return Err(e.into()),
        }
        let fd = crate::reactor_unsafe::register_fd(fd)?;
        // Writable once the connect is done, either way; SO_ERROR says which.
        drop(fd.writable().await?);
        match socket::getsockopt(fd.get_ref(), sockopt::SocketError)? {
            0 => Ok(AsyncVsock(fd)),
            errno => Err(io::Error::from_raw_os_error(errno)),
        }
    }
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

impl ProxyStream {
    /// Waits until a read may make progress (data, EOF or an error).
    pub async fn readable(&self) -> io::Result<()> {
        match self {
            ProxyStream::Tcp(s) => s.readable().await,
            ProxyStream::Unix(s) => s.readable().await,
            ProxyStream::Vsock(s) => s.0.readable().await.map(drop),
        }
    }

    /// Waits until a write may make progress.
    pub async fn writable(&self) -> io::Result<()> {
        match self {
            ProxyStream::Tcp(s) => s.writable().await,
            ProxyStream::Unix(s) => s.writable().await,
            ProxyStream::Vsock(s) => s.0.writable().await.map(drop),
        }
    }

    /// Reads what is there without waiting; `WouldBlock` when nothing is.
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            ProxyStream::Tcp(s) => s.try_read(buf),
            ProxyStream::Unix(s) => s.try_read(buf),
            ProxyStream::Vsock(s) => s.0.try_io(Interest::READABLE, |fd| {
                nix::unistd::read(fd.as_raw_fd(), buf).map_err(io::Error::from)
            }),
        }
    }

    /// Writes what fits without waiting; `WouldBlock` when nothing does.
    pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            ProxyStream::Tcp(s) => s.try_write(buf),
            ProxyStream::Unix(s) => s.try_write(buf),
            ProxyStream::Vsock(s) => s.0.try_io(Interest::WRITABLE, |fd| {
                nix::unistd::write(fd, buf).map_err(io::Error::from)
            }),
        }
    }

    /// Writes what fits into the socket's send buffer right now, without asking the reactor
    /// whether it is writable: a socket accepted a moment ago has an empty buffer, but the
    /// reactor has not yet seen it ready, so [`ProxyStream::try_write`] would say `WouldBlock`.
    /// For a one-byte answer to a connection that is then closed.
    pub fn write_now(&self, buf: &[u8]) -> io::Result<usize> {
        let fd = match self {
            ProxyStream::Tcp(s) => s.as_fd(),
            ProxyStream::Unix(s) => s.as_fd(),
            ProxyStream::Vsock(s) => s.0.get_ref().as_fd(),
        };
        nix::unistd::write(fd, buf).map_err(io::Error::from)
    }

    /// Reads at least one byte (or 0 at EOF), waiting as needed.
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            self.readable().await?;
            match self.try_read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return other,
            }
        }
    }

    /// Writes all of `buf`, waiting as needed (this is the relay's backpressure).
    pub async fn write_all(&self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            self.writable().await?;
            match self.try_write(buf) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => buf = &buf[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Signals end of data to the peer (`shutdown(SHUT_WR)`); reading goes on.
    pub fn shutdown_write(&self) -> io::Result<()> {
        let r = nix::sys::socket::shutdown(self.raw_fd(), nix::sys::socket::Shutdown::Write);
        match r {
            // The peer may already be gone; there is nobody left to tell.
            Err(nix::errno::Errno::ENOTCONN) => Ok(()),
            other => other.map_err(io::Error::from),
        }
    }

    /// Closes with a reset instead of an orderly FIN where the socket supports it (TCP), so a
    /// refused client sees "connection reset" rather than an empty reply.
    pub fn reset(self) {
        if let ProxyStream::Tcp(s) = &self {
            let _ = s.set_zero_linger();
        }
    }

    fn raw_fd(&self) -> RawFd {
        match self {
            ProxyStream::Tcp(s) => s.as_raw_fd(),
            ProxyStream::Unix(s) => s.as_raw_fd(),
            ProxyStream::Vsock(s) => s.0.as_raw_fd(),
        }
    }
}

/// Buffers shared by all relays of one proxy. Holds at most `keep` idle buffers; more are
/// allocated under load and freed when given back to a full pool.
#[derive(Debug, Clone)]
pub struct BufferPool {
    free: Arc<Mutex<Vec<Box<[u8]>>>>,
    keep: usize,
}

impl BufferPool {
    /// A pool keeping up to `keep` idle buffers of [`BUFFER_SIZE`].
    pub fn new(keep: usize) -> Self {
        BufferPool {
            free: Arc::new(Mutex::new(Vec::new())),
            keep,
        }
    }

    fn take(&self) -> Box<[u8]> {
        let reused = self.free.lock().map(|mut f| f.pop()).unwrap_or(None);
        reused.unwrap_or_else(|| vec![0u8; BUFFER_SIZE].into_boxed_slice())
    }

    fn give(&self, buf: Box<[u8]>) {
        if let Ok(mut free) = self.free.lock() {
            if free.len() < self.keep {
                free.push(buf);
            }
        }
    }
}

impl Default for BufferPool {
    fn default() -> Self {
        BufferPool::new(64)
    }
}

/// Bytes moved by a finished relay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Relayed {
    /// From `a` to `b`.
    pub a_to_b: u64,
    /// From `b` to `a`.
    pub b_to_a: u64,
}

/// Copies `a` to `b` and `b` to `a` until both directions have ended. A direction ends at EOF
/// (then the other side's write half is shut down) or at an error (then both directions end,
/// since a half-broken connection would otherwise linger).
pub async fn relay(a: &ProxyStream, b: &ProxyStream, pool: &BufferPool) -> io::Result<Relayed> {
    let (ab, ba) = tokio::join!(one_way(a, b, pool), one_way(b, a, pool));
    match (ab, ba) {
        (Ok(a_to_b), Ok(b_to_a)) => Ok(Relayed { a_to_b, b_to_a }),
        (Err(e), _) | (_, Err(e)) => Err(e),
    }
}

async fn one_way(from: &ProxyStream, to: &ProxyStream, pool: &BufferPool) -> io::Result<u64> {
    let mut total = 0u64;
    let result = async {
        loop {
            from.readable().await?;
            let mut buf = pool.take();
            let n = match from.try_read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    pool.give(buf);
                    continue;
                }
                Err(e) => {
                    pool.give(buf);
                    return Err(e);
                }
            };
            if n == 0 {
                pool.give(buf);
                return to.shutdown_write();
            }
            let written = to.write_all(&buf[..n]).await;
            pool.give(buf);
            written?;
            total += n as u64;
        }
    }
    .await;
    if result.is_err() {
        // Wake the other direction: with both halves shut, its read returns EOF.
        let _ = nix::sys::socket::shutdown(from.raw_fd(), nix::sys::socket::Shutdown::Both);
        let _ = nix::sys::socket::shutdown(to.raw_fd(), nix::sys::socket::Shutdown::Both);
    }
    result.map(|()| total)
}

/// A listening socket of any kind a proxy accepts on.
#[derive(Debug)]
pub enum ProxyListener {
    /// TCP.
    Tcp(TcpListener),
    /// A Unix socket.
    Unix(UnixListener),
    /// AF_VSOCK.
    Vsock(AsyncFd<VsockListener>),
}

impl ProxyListener {
    /// Listens on AF_VSOCK `cid:port`. Must be called inside a tokio runtime.
    pub fn vsock(cid: u32, port: u32) -> io::Result<Self> {
        let listener = VsockListener::bind(cid, port)?;
        set_nonblocking(std::os::fd::AsFd::as_fd(&listener).as_raw_fd())?;
        Ok(ProxyListener::Vsock(
            crate::reactor_unsafe::register_listener(listener)?,
        ))
    }

    /// Waits for the next connection. For vsock, the peer's CID comes back too (the host uses it
    /// to make sure a connection comes from its own enclave).
    pub async fn accept(&self) -> io::Result<(ProxyStream, Option<u32>)> {
        match self {
            ProxyListener::Tcp(l) => {
                let (s, _) = l.accept().await?;
                s.set_nodelay(true)?;
                Ok((ProxyStream::Tcp(s), None))
            }
            ProxyListener::Unix(l) => Ok((ProxyStream::Unix(l.accept().await?.0), None)),
            ProxyListener::Vsock(l) => loop {
                let mut guard = l.readable().await?;
                match guard.try_io(|l| l.get_ref().accept()) {
                    Ok(Ok((stream, (cid, _port)))) => {
                        return Ok((ProxyStream::Vsock(AsyncVsock::new(stream)?), Some(cid)))
                    }
                    Ok(Err(e)) => return Err(e),
                    Err(_would_block) => continue,
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn unix_pair() -> (ProxyStream, ProxyStream) {
        let (a, b) = UnixStream::pair().unwrap();
        (ProxyStream::Unix(a), ProxyStream::Unix(b))
    }

    #[tokio::test(flavor = "current_thread")]
    async fn relay_copies_both_ways_and_keeps_half_close() {
        // client <-> (a | relay | b) <-> server
        let (client, a) = unix_pair().await;
        let (b, server) = unix_pair().await;
        let pool = BufferPool::new(2);
        let relay = tokio::spawn(async move { relay(&a, &b, &pool).await });

        let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let sent = big.clone();
        let client_task = tokio::spawn(async move {
            client.write_all(&sent).await.unwrap();
            client.shutdown_write().unwrap();
            // The server answers after our EOF: the half-close got through.
            let mut reply = Vec::new();
            let mut buf = [0u8; 100];
            loop {
                let n = client.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                reply.extend_from_slice(&buf[..n]);
            }
            reply
        });
        let mut got = Vec::new();
        let mut buf = vec![0u8; 70_000];
        loop {
            let n = server.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, big);
        server.write_all(b"done").await.unwrap();
        server.shutdown_write().unwrap();
        assert_eq!(client_task.await.unwrap(), b"done");
        let moved = relay.await.unwrap().unwrap();
        assert_eq!(
            moved,
            Relayed {
                a_to_b: 1_000_000,
                b_to_a: 4
            }
        );
    }
}
