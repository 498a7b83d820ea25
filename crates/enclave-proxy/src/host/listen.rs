//! Creating the proxies' listening sockets, with errors that say where and what to do.
//!
//! All three must be called inside a tokio runtime context (`Runtime::enter` is enough): the
//! socket is registered with its reactor. Binding itself is synchronous, so "address already in
//! use" is known when the call returns.

use std::io;
use std::net::SocketAddr;
use std::path::Path;

use enclave_proto::transport::VMADDR_CID_ANY;
use tokio::net::{TcpSocket, UnixListener};

use crate::error::ProxyError;
use crate::stream::ProxyListener;

/// Pending connections the kernel queues per listener before the proxy accepts them (capped by
/// `net.core.somaxconn`). Bursts of connects must not wait for SYN retransmissions.
const BACKLOG: u32 = 4096;

/// Listens on TCP `addr` (port 0: any free port).
pub fn listen_tcp(addr: SocketAddr) -> Result<ProxyListener, ProxyError> {
    let bind = || -> io::Result<ProxyListener> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        // A restarted proxy must not wait for the previous one's TIME_WAIT connections.
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        Ok(ProxyListener::Tcp(socket.listen(BACKLOG)?))
    };
    bind().map_err(|source| ProxyError::Listen {
        addr: addr.to_string(),
        source,
    })
}

/// Listens on the Unix socket `path`. A socket file left behind by a proxy that is gone (nothing
/// accepts on it) is replaced; a live one is an error.
pub fn listen_unix(path: &Path) -> Result<ProxyListener, ProxyError> {
    let err = |source| ProxyError::Listen {
        addr: format!("unix:{}", path.display()),
        source,
    };
    match UnixListener::bind(path) {
        Ok(l) => Ok(ProxyListener::Unix(l)),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse && is_stale_socket(path) => {
            std::fs::remove_file(path).map_err(err)?;
            UnixListener::bind(path)
                .map(ProxyListener::Unix)
                .map_err(err)
        }
        Err(e) => Err(err(e)),
    }
}

fn is_stale_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    let is_socket = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
    is_socket
        && std::os::unix::net::UnixStream::connect(path)
            .is_err_and(|e| e.kind() == io::ErrorKind::ConnectionRefused)
}

/// Listens on AF_VSOCK `port` for connections to any CID (on Nitro: from the enclaves).
pub fn listen_vsock(port: u32) -> Result<ProxyListener, ProxyError> {
    ProxyListener::vsock(VMADDR_CID_ANY, port).map_err(|source| ProxyError::Listen {
        addr: format!("vsock:any:{port}"),
        source,
    })
}

/// What a listener listens on, for logs.
pub(crate) fn describe(listener: &ProxyListener) -> String {
    let unknown = || "?".to_owned();
    match listener {
        ProxyListener::Tcp(l) => l.local_addr().map_or_else(|_| unknown(), |a| a.to_string()),
        ProxyListener::Unix(l) => l
            .local_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(|p| format!("unix:{}", p.display())))
            .unwrap_or_else(unknown),
        ProxyListener::Vsock(l) => l
            .get_ref()
            .local_addr()
            .map_or_else(|_| unknown(), |(_, port)| format!("vsock:any:{port}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn errors_say_where_and_stale_sockets_are_replaced() {
        let first = listen_tcp("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = match &first {
            ProxyListener::Tcp(l) => l.local_addr().unwrap(),
            other => panic!("{other:?}"),
        };
        let err = listen_tcp(addr).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("cannot listen on {addr}: ")),
            "{err}"
        );
        assert!(err.contains("already listens there"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("egress.sock");
        let live = listen_unix(&path).unwrap();
        assert_eq!(describe(&live), format!("unix:{}", path.display()));
        let err = listen_unix(&path).unwrap_err().to_string();
        assert!(err.contains("already listens there"), "{err}");
        drop(live);
        // The file is still there, but nobody listens: replaced.
        assert!(path.exists());
        listen_unix(&path).unwrap();

        let err = listen_unix(&dir.path().join("no/such/dir.sock"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("cannot listen on unix:"), "{err}");
    }
}
