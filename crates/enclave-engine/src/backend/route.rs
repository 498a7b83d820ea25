//! How the host and one enclave reach each other over vsock, as its backend wires it.
//!
//! On Nitro that is AF_VSOCK: the enclave has its own CID, the parent is CID 3, and every
//! enclave of the parent reaches the same parent ports. On the emulated backend it is
//! vhost-device-vsock's hybrid Unix socket, one per enclave: the host connects to the guest's
//! port P through it (`CONNECT P`), and the guest's connections to the host's port P arrive on
//! `<socket>_P`. Only the backends know which; the rest of the engine asks a [`VsockRoute`]
//! "how do I connect to port P of this enclave", "where does the host listen for the enclave's
//! port P" and "which CID is the parent", so that a new wiring is one backend, not a `match` in
//! every module that talks to an enclave.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use enclave_proto::init::NITRO_PARENT_CID;
use enclave_proto::transport::{
    hybrid, listen, Addr, Listener, TransportError, VMADDR_CID_ANY, VMADDR_CID_HOST,
};

use crate::error::{EngineError, Result};

/// How long a Nitro supervisor waits for another enclave's supervisor to release a parent
/// port (the hand-off port is held only while an enclave boots).
const PARENT_PORT_WAIT: Duration = Duration::from_secs(30);

/// The vsock wiring between the host and one enclave; made by [`super::Backend::vsock_route`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VsockRoute {
    cid: u32,
    via: Via,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Via {
    /// AF_VSOCK, the host being the enclave's parent (Nitro).
    Vsock,
    /// vhost-device-vsock's hybrid Unix socket of this enclave (the emulated backend).
    Hybrid(PathBuf),
}

/// Where the host listens for an enclave's connections to one of the parent's ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParentPort {
    /// A Unix socket only this enclave reaches (vhost-device-vsock's `<socket>_P`): every
    /// connection on it is the enclave's.
    Unix(PathBuf),
    /// An AF_VSOCK port of the parent, which every enclave of the parent reaches: a listener
    /// accepts only `expect_cid`.
    Vsock {
        /// The port.
        port: u32,
        /// The enclave's CID.
        expect_cid: u32,
    },
}

impl VsockRoute {
    /// AF_VSOCK to the enclave of CID `cid`.
    pub(super) fn vsock(cid: u32) -> Self {
        Self {
            cid,
            via: Via::Vsock,
        }
    }

    /// Through vhost-device-vsock's hybrid socket `uds`, serving the guest of CID `cid`.
    pub(super) fn hybrid(cid: u32, uds: PathBuf) -> Self {
        Self {
            cid,
            via: Via::Hybrid(uds),
        }
    }

    /// The enclave's CID.
    pub fn cid(&self) -> u32 {
        self.cid
    }

    /// The CID the enclave reaches its parent at (vhost-vsock makes the host CID 2).
    pub fn parent_cid(&self) -> u32 {
        match self.via {
            Via::Vsock => NITRO_PARENT_CID,
            Via::Hybrid(_) => VMADDR_CID_HOST,
        }
    }

    /// The address the host connects to for the enclave's port `port`.
    pub fn enclave_addr(&self, port: u32) -> Addr {
        match &self.via {
            Via::Vsock => Addr::Vsock {
                cid: self.cid,
                port,
            },
            Via::Hybrid(uds) => Addr::HybridVsock {
                uds_path: uds.clone(),
                port,
            },
        }
    }

    /// Where the host listens for the enclave's connections to the parent's port `port`.
    pub fn parent_port(&self, port: u32) -> ParentPort {
        match &self.via {
            Via::Vsock => ParentPort::Vsock {
                port,
                expect_cid: self.cid,
            },
            Via::Hybrid(uds) => ParentPort::Unix(hybrid::listen_path(uds, port)),
        }
    }
}

impl ParentPort {
    /// Listens there. Returns the listener and the CID to expect from its peers (`None` when
    /// only the enclave reaches the socket). A stale Unix socket is replaced; an AF_VSOCK port
    /// that another enclave's supervisor holds is waited for, up to 30 s. Ports below 1024 need
    /// root on Nitro.
    pub fn listen(&self) -> Result<(Listener, Option<u32>)> {
        match self {
            ParentPort::Unix(path) => {
                let _ = std::fs::remove_file(path);
                listen(&Addr::Unix(path.clone()))
                    .map(|l| (l, None))
                    .map_err(|e| EngineError::Backend(e.to_string()))
            }
            ParentPort::Vsock { port, expect_cid } => {
                let addr = Addr::Vsock {
                    cid: VMADDR_CID_ANY,
                    port: *port,
                };
                let started = Instant::now();
                loop {
                    match listen(&addr) {
                        Ok(l) => return Ok((l, Some(*expect_cid))),
                        Err(TransportError::Io { source, .. })
                            if source.kind() == std::io::ErrorKind::AddrInUse
                                && started.elapsed() < PARENT_PORT_WAIT =>
                        {
                            std::thread::sleep(Duration::from_millis(200));
                        }
                        Err(e) => return Err(EngineError::Backend(e.to_string())),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nitro_enclaves_are_reached_over_af_vsock() {
        let route = VsockRoute::vsock(16);
        assert_eq!(route.cid(), 16);
        assert_eq!(route.parent_cid(), 3);
        assert_eq!(route.enclave_addr(5000).to_string(), "vsock:16:5000");
        assert_eq!(
            route.parent_port(900),
            ParentPort::Vsock {
                port: 900,
                expect_cid: 16
            }
        );
    }

    #[test]
    fn emulated_enclaves_are_reached_through_their_hybrid_socket() {
        let route = VsockRoute::hybrid(17, "/sk/vsock.sock".into());
        assert_eq!(route.cid(), 17);
        assert_eq!(route.parent_cid(), 2);
        assert_eq!(
            route.enclave_addr(5000).to_string(),
            "hybrid:/sk/vsock.sock:5000"
        );
        assert_eq!(
            route.parent_port(9001),
            ParentPort::Unix("/sk/vsock.sock_9001".into())
        );
    }

    #[test]
    fn a_unix_parent_port_replaces_a_stale_socket() {
        let dir = tempfile::tempdir().unwrap();
        let route = VsockRoute::hybrid(16, dir.path().join("vsock.sock"));
        let port = route.parent_port(900);
        let first = port.listen().unwrap();
        assert_eq!(first.1, None);
        // The first listener's socket is still there: a new boot binds anyway.
        let second = port.listen().unwrap();
        assert_eq!(second.1, None);
        std::os::unix::net::UnixStream::connect(dir.path().join("vsock.sock_900")).unwrap();
        assert!(second.0.accept().is_ok());
    }
}
