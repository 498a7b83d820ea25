//! Byte streams that carry the control protocol: blocking sockets behind one [`Addr`] type.
//!
//! - `vsock:CID:PORT`: AF_VSOCK, what a real Nitro enclave offers (the parent talks to CID 16+,
//!   the enclave listens on `VMADDR_CID_ANY`).
//! - `hybrid:/path/to/uds:PORT`: the Unix socket of vhost-device-vsock or Firecracker, used when
//!   the enclave runs as a plain VM on a development host ([`hybrid`]).
//! - `unix:/path`: a plain Unix socket, for tests.
//!
//! Retrying while the enclave boots is the client's business: [`connect_with_retry`].

pub mod hybrid;
pub mod vsock;
mod vsock_unsafe;

use std::fmt;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

pub use vsock::{VsockListener, VsockStream};

/// The send buffer [`Connection::set_bulk_send_buffer`] asks for: the kernel doubles it for its
/// bookkeeping, so up to 1 MiB of records can wait in the socket.
pub const BULK_SEND_BUFFER: usize = 512 << 10;

/// The context id meaning "any" when listening.
pub const VMADDR_CID_ANY: u32 = u32::MAX;
/// The context id of the host (the parent instance, seen from an enclave).
pub const VMADDR_CID_HOST: u32 = 2;

/// Where the control protocol is served.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Addr {
    /// AF_VSOCK.
    Vsock {
        /// Context id of the VM (or [`VMADDR_CID_ANY`] to listen).
        cid: u32,
        /// Port.
        port: u32,
    },
    /// vhost-device-vsock's hybrid Unix socket.
    HybridVsock {
        /// The device's Unix socket.
        uds_path: PathBuf,
        /// The guest port.
        port: u32,
    },
    /// A plain Unix socket.
    Unix(PathBuf),
}

/// A malformed address string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid address {input:?}: {reason} (expected vsock:CID:PORT, hybrid:/path/to/uds:PORT or unix:/path)")]
pub struct AddrParseError {
    input: String,
    reason: &'static str,
}

impl FromStr for Addr {
    type Err = AddrParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| AddrParseError {
            input: s.to_owned(),
            reason,
        };
        let port = |p: &str| p.parse::<u32>().map_err(|_| err("bad port"));
        let (scheme, rest) = s.split_once(':').ok_or_else(|| err("no scheme"))?;
        match scheme {
            "vsock" => {
                let (cid, p) = rest.split_once(':').ok_or_else(|| err("no port"))?;
                let cid = match cid {
                    "any" => VMADDR_CID_ANY,
                    cid => cid.parse().map_err(|_| err("bad cid"))?,
                };
                Ok(Addr::Vsock {
                    cid,
                    port: port(p)?,
                })
            }
            "hybrid" => {
                // The port is after the last colon; the path may contain colons.
                let (path, p) = rest.rsplit_once(':').ok_or_else(|| err("no port"))?;
                if path.is_empty() {
                    return Err(err("empty path"));
                }
                Ok(Addr::HybridVsock {
                    uds_path: path.into(),
                    port: port(p)?,
                })
            }
            "unix" if rest.is_empty() => Err(err("empty path")),
            "unix" => Ok(Addr::Unix(rest.into())),
            _ => Err(err("unknown scheme")),
        }
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Vsock {
                cid: VMADDR_CID_ANY,
                port,
            } => write!(f, "vsock:any:{port}"),
            Addr::Vsock { cid, port } => write!(f, "vsock:{cid}:{port}"),
            Addr::HybridVsock { uds_path, port } => {
                write!(f, "hybrid:{}:{port}", uds_path.display())
            }
            Addr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Connecting (or binding) failed.
    #[error("{addr}: {}", describe(source))]
    Io {
        /// Where.
        addr: Addr,
        /// Why.
        source: io::Error,
    },
    /// The hybrid vsock handshake failed.
    #[error("{addr}: {source}")]
    Handshake {
        /// Where.
        addr: Addr,
        /// Why.
        source: hybrid::HandshakeError,
    },
    /// [`connect_with_retry`] gave up.
    #[error("no enclave answered at {addr} after {}: {last}", secs(*waited))]
    NoAnswer {
        /// Where.
        addr: Addr,
        /// How long it tried.
        waited: Duration,
        /// The last failure, described.
        last: String,
    },
}

/// An io error as a short lower-case phrase ("connection refused"), without "(os error 111)".
fn describe(e: &io::Error) -> String {
    let text = match e.raw_os_error() {
        Some(code) => nix::errno::Errno::from_raw(code).desc().to_owned(),
        None => e.to_string(),
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text,
    }
}

fn secs(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// A connected stream of any transport. Read and write it from two threads with
/// [`try_clone`](Connection::try_clone).
#[derive(Debug)]
pub enum Connection {
    /// Plain or hybrid Unix socket.
    Unix(UnixStream),
    /// AF_VSOCK.
    Vsock(VsockStream),
}

impl Connection {
    /// Another handle to the same connection.
    pub fn try_clone(&self) -> io::Result<Self> {
        match self {
            Connection::Unix(s) => s.try_clone().map(Connection::Unix),
            Connection::Vsock(s) => s.try_clone().map(Connection::Vsock),
        }
    }

    /// Shuts down one or both halves (e.g. `Write` after the last message, so the peer reads
    /// end of stream).
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Connection::Unix(s) => s.shutdown(how),
            Connection::Vsock(s) => s.shutdown(how),
        }
    }

    /// The peer's context id (AF_VSOCK only): the parent, on Nitro, is CID 3 for every user.
    pub fn peer_cid(&self) -> Option<u32> {
        match self {
            Connection::Unix(_) => None,
            Connection::Vsock(s) => s.peer_addr().ok().map(|(cid, _)| cid),
        }
    }

    /// Gives a Unix-socket connection the [`BULK_SEND_BUFFER`] (AF_VSOCK: nothing; its flow
    /// control is the peer's receive credit, not a send buffer). Bulk senders (`cp`) call it.
    ///
    /// With the default (about 208 KiB, under three records), two ends that cost the same per
    /// byte (a `cp` out of the enclave: its sender, the client's receiver) take turns waiting
    /// on each other instead of overlapping (docs/benchmarks.md, "A fair source file, a larger socket buffer, batched writes").
    /// The raised limit (`SO_SNDBUFFORCE` where the process may, else `SO_SNDBUF` up to
    /// `net.core.wmem_max`) is a cap on queued data, not memory taken up front.
    pub fn set_bulk_send_buffer(&self) -> io::Result<()> {
        use nix::sys::socket::{setsockopt, sockopt};
        match self {
            Connection::Unix(s) => setsockopt(s, sockopt::SndBufForce, &BULK_SEND_BUFFER)
                .or_else(|_| setsockopt(s, sockopt::SndBuf, &BULK_SEND_BUFFER))
                .map_err(io::Error::from),
            Connection::Vsock(_) => Ok(()),
        }
    }

    /// Read timeout (`None`: block forever).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Connection::Unix(s) => s.set_read_timeout(timeout),
            Connection::Vsock(s) => s.set_read_timeout(timeout),
        }
    }

    /// Write timeout (`None`: block forever).
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Connection::Unix(s) => s.set_write_timeout(timeout),
            Connection::Vsock(s) => s.set_write_timeout(timeout),
        }
    }
}

impl Read for Connection {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Connection::Unix(s) => s.read(buf),
            Connection::Vsock(s) => s.read(buf),
        }
    }
}

impl Write for Connection {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Connection::Unix(s) => s.write(buf),
            Connection::Vsock(s) => s.write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Connection::Unix(s) => s.write_vectored(bufs),
            Connection::Vsock(s) => s.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Connection::Unix(s) => s.flush(),
            Connection::Vsock(s) => s.flush(),
        }
    }
}

/// Connects once.
pub fn connect(addr: &Addr) -> Result<Connection, TransportError> {
    let io_err = |source| TransportError::Io {
        addr: addr.clone(),
        source,
    };
    match addr {
        Addr::Vsock { cid, port } => VsockStream::connect(*cid, *port)
            .map(Connection::Vsock)
            .map_err(io_err),
        Addr::Unix(path) => UnixStream::connect(path)
            .map(Connection::Unix)
            .map_err(io_err),
        Addr::HybridVsock { uds_path, port } => match hybrid::connect(uds_path, *port) {
            Ok(s) => Ok(Connection::Unix(s)),
            Err(hybrid::HandshakeError::Io(source)) => Err(io_err(source)),
            Err(source) => Err(TransportError::Handshake {
                addr: addr.clone(),
                source,
            }),
        },
    }
}

/// Whether a failed attempt may succeed later (the enclave is still booting).
fn is_transient(e: &TransportError) -> bool {
    match e {
        TransportError::Io { source, .. } => {
            matches!(
                source.kind(),
                io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::NotFound
                    | io::ErrorKind::TimedOut
            ) || matches!(
                source.raw_os_error().map(nix::errno::Errno::from_raw),
                // No such CID yet (vsock), no route to it yet.
                Some(nix::errno::Errno::ENODEV | nix::errno::Errno::EHOSTUNREACH)
            )
        }
        // The device closes the connection while nothing listens in the guest yet.
        TransportError::Handshake { source, .. } => {
            matches!(source, hybrid::HandshakeError::Closed)
        }
        TransportError::NoAnswer { .. } => false,
    }
}

/// Connects, retrying transient failures (refused, not there yet) with exponential backoff
/// (50 ms doubling to 1 s) until `deadline` has passed since the call.
pub fn connect_with_retry(addr: &Addr, deadline: Duration) -> Result<Connection, TransportError> {
    let start = Instant::now();
    let mut backoff = Duration::from_millis(50);
    loop {
        let err = match connect(addr) {
            Ok(conn) => return Ok(conn),
            Err(e) if !is_transient(&e) => return Err(e),
            Err(e) => e,
        };
        let elapsed = start.elapsed();
        if elapsed >= deadline {
            let last = match &err {
                TransportError::Io { source, .. } => describe(source),
                other => other.to_string(),
            };
            return Err(TransportError::NoAnswer {
                addr: addr.clone(),
                waited: deadline,
                last,
            });
        }
        std::thread::sleep(backoff.min(deadline - elapsed));
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// A listening socket of any transport.
#[derive(Debug)]
pub enum Listener {
    /// Plain Unix socket, or the `<uds>_<port>` socket of a hybrid address.
    Unix(UnixListener),
    /// AF_VSOCK.
    Vsock(VsockListener),
}

impl Listener {
    /// Waits for the next connection.
    pub fn accept(&self) -> io::Result<Connection> {
        match self {
            Listener::Unix(l) => l.accept().map(|(s, _)| Connection::Unix(s)),
            Listener::Vsock(l) => l.accept().map(|(s, _)| Connection::Vsock(s)),
        }
    }

    /// Waits at most `timeout` for the next connection; `None` when none came (so a thread
    /// serving the listener can look at a stop flag between waits).
    pub fn accept_timeout(&self, timeout: Duration) -> io::Result<Option<Connection>> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        let fd = match self {
            Listener::Unix(l) => l.as_fd(),
            Listener::Vsock(l) => l.as_fd(),
        };
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => Ok(None),
            Ok(_) => self.accept().map(Some),
            Err(e) => Err(e.into()),
        }
    }
}

/// Listens on `addr`. For a hybrid address this is the host side of guest-initiated
/// connections: the Unix socket `<uds_path>_<port>` ([`hybrid::listen_path`]).
pub fn listen(addr: &Addr) -> Result<Listener, TransportError> {
    let io_err = |source| TransportError::Io {
        addr: addr.clone(),
        source,
    };
    match addr {
        Addr::Vsock { cid, port } => VsockListener::bind(*cid, *port)
            .map(Listener::Vsock)
            .map_err(io_err),
        Addr::HybridVsock { uds_path, port } => {
            UnixListener::bind(hybrid::listen_path(uds_path, *port))
                .map(Listener::Unix)
                .map_err(io_err)
        }
        Addr::Unix(path) => UnixListener::bind(path).map(Listener::Unix).map_err(io_err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{getsockopt, sockopt};

    #[test]
    fn a_bulk_send_buffer_raises_a_unix_socket_s_limit() {
        let (a, _b) = UnixStream::pair().unwrap();
        let before = getsockopt(&a, sockopt::SndBuf).unwrap();
        let conn = Connection::Unix(a);
        conn.set_bulk_send_buffer().unwrap();
        let Connection::Unix(a) = &conn else {
            unreachable!()
        };
        let after = getsockopt(a, sockopt::SndBuf).unwrap();
        // The kernel doubles what it is asked for; without the privilege to force it, it caps
        // the request at wmem_max first.
        let wmem_max: usize = std::fs::read_to_string("/proc/sys/net/core/wmem_max")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let least = 2 * BULK_SEND_BUFFER.min(wmem_max);
        assert!(
            (least..=2 * BULK_SEND_BUFFER).contains(&after),
            "{before} -> {after}"
        );
    }
}
