//! How the host reaches the enclave's ingress forwarder: AF_VSOCK on Nitro, vhost-device-vsock's
//! hybrid Unix socket on the emulated backend, a plain Unix socket in tests.

use std::fmt;
use std::path::PathBuf;

use enclave_proto::transport::hybrid::HandshakeError;
use enclave_proto::transport::Addr;
use tokio::net::UnixStream;

use super::{send_request, Limits};
use crate::error::ProxyError;
use crate::header::Request;
use crate::stream::{AsyncVsock, ProxyStream};

/// Longest hybrid handshake answer accepted (`OK 4294967295\n` is 14 bytes).
const MAX_HANDSHAKE_LINE: usize = 32;

/// Where the enclave's ingress forwarder is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EnclaveConnector {
    /// AF_VSOCK `cid:port` (Nitro).
    Vsock {
        /// The enclave's context id.
        cid: u32,
        /// The forwarder's port (`enclave_proto::ports::INGRESS`).
        port: u32,
    },
    /// vhost-device-vsock's Unix socket (`<sk>/vsock.sock`) and the guest port.
    Hybrid {
        /// The device's Unix socket.
        uds_path: PathBuf,
        /// The forwarder's port in the guest.
        port: u32,
    },
    /// A plain Unix socket (tests, benchmarks).
    Unix(PathBuf),
}

impl From<Addr> for EnclaveConnector {
    fn from(addr: Addr) -> Self {
        match addr {
            Addr::Vsock { cid, port } => EnclaveConnector::Vsock { cid, port },
            Addr::HybridVsock { uds_path, port } => EnclaveConnector::Hybrid { uds_path, port },
            Addr::Unix(path) => EnclaveConnector::Unix(path),
        }
    }
}

impl fmt::Display for EnclaveConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnclaveConnector::Vsock { cid, port } => write!(f, "vsock:{cid}:{port}"),
            EnclaveConnector::Hybrid { uds_path, port } => {
                write!(f, "hybrid:{}:{port}", uds_path.display())
            }
            EnclaveConnector::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

impl EnclaveConnector {
    /// Opens a stream to the forwarder (for a hybrid socket, after the device's handshake). The
    /// caller bounds the wait.
    pub async fn connect(&self) -> Result<ProxyStream, ProxyError> {
        let io_err = |source| ProxyError::Connect {
            to: self.to_string(),
            source,
        };
        match self {
            EnclaveConnector::Vsock { cid, port } => AsyncVsock::connect(*cid, *port)
                .await
                .map(ProxyStream::Vsock)
                .map_err(io_err),
            EnclaveConnector::Unix(path) => UnixStream::connect(path)
                .await
                .map(ProxyStream::Unix)
                .map_err(io_err),
            EnclaveConnector::Hybrid { uds_path, port } => {
                let stream =
                    ProxyStream::Unix(UnixStream::connect(uds_path).await.map_err(io_err)?);
                hybrid_handshake(&stream, *port)
                    .await
                    .map_err(|source| ProxyError::Handshake {
                        to: self.to_string(),
                        source,
                    })?;
                Ok(stream)
            }
        }
    }

    /// Opens a stream to enclave port `enclave_port`: connects, sends the ingress request and
    /// waits for [`Status::Connected`](crate::header::Status::Connected), each step bounded by
    /// `limits`.
    pub async fn open(
        &self,
        enclave_port: u16,
        limits: &Limits,
    ) -> Result<ProxyStream, ProxyError> {
        let stream = tokio::time::timeout(limits.connect_timeout, self.connect())
            .await
            .map_err(|_| ProxyError::Timeout {
                what: format!("connecting to {self}"),
                after: limits.connect_timeout,
            })??;
        let request = Request::Ingress { port: enclave_port };
        let to = self.to_string();
        tokio::time::timeout(limits.header_timeout, send_request(&stream, &request, &to))
            .await
            .map_err(|_| ProxyError::Timeout {
                what: format!("{to} answering {request}"),
                after: limits.header_timeout,
            })??;
        Ok(stream)
    }
}

/// The client side of vhost-device-vsock's handshake: `CONNECT <port>\n`, answer `OK <n>\n`.
/// Reads the answer a byte at a time so that none of the guest's first bytes is consumed.
async fn hybrid_handshake(stream: &ProxyStream, port: u32) -> Result<(), HandshakeError> {
    stream
        .write_all(format!("CONNECT {port}\n").as_bytes())
        .await?;
    let mut line = Vec::with_capacity(16);
    let refused = |line: &[u8]| HandshakeError::Refused(String::from_utf8_lossy(line).into_owned());
    loop {
        let mut byte = [0u8; 1];
        match stream.read(&mut byte).await? {
            0 if line.is_empty() => return Err(HandshakeError::Closed),
            0 => return Err(refused(&line)),
            _ if byte[0] == b'\n' => break,
            _ if line.len() >= MAX_HANDSHAKE_LINE => return Err(refused(&line)),
            _ => line.push(byte[0]),
        }
    }
    let ok = line
        .strip_prefix(b"OK ")
        .is_some_and(|d| !d.is_empty() && d.len() <= 10 && d.iter().all(u8::is_ascii_digit));
    if ok {
        Ok(())
    } else {
        Err(refused(&line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::UnixListener;

    /// A fake vhost-device-vsock: checks the CONNECT line, answers (the guest's first bytes
    /// included) and closes.
    async fn fake_device(listener: UnixListener, answer: &'static [u8]) {
        let (s, _) = listener.accept().await.unwrap();
        let s = ProxyStream::Unix(s);
        let mut line = [0u8; 13];
        let mut got = 0;
        while got < line.len() {
            got += s.read(&mut line[got..]).await.unwrap();
        }
        assert_eq!(&line, b"CONNECT 5001\n");
        // The client may have given up on a bad answer already.
        let _ = s.write_all(answer).await;
        let _ = s.shutdown_write();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn hybrid_connect_handshakes_and_keeps_the_first_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vsock.sock");
        let cases: [(&[u8], Result<(), &str>); 4] = [
            (b"OK 1073741824\nhello", Ok(())),
            (b"", Err("closed by the vsock device")),
            (b"NO\n", Err("answered \"NO\"")),
            (
                b"OK 99999999999999999999999999999999999\n",
                Err("instead of `OK <port>`"),
            ),
        ];
        for (answer, want) in cases {
            let listener = UnixListener::bind(&path).unwrap();
            let device = tokio::spawn(fake_device(listener, answer));
            let conn = EnclaveConnector::Hybrid {
                uds_path: path.clone(),
                port: 5001,
            };
            match (conn.connect().await, want) {
                (Ok(s), Ok(())) => {
                    let mut buf = [0u8; 8];
                    assert_eq!(s.read(&mut buf).await.unwrap(), 5);
                    assert_eq!(&buf[..5], b"hello");
                }
                (Err(e), Err(text)) => {
                    let e = e.to_string();
                    assert!(e.contains(text) && e.contains("hybrid:"), "{e}");
                }
                (got, want) => panic!("{answer:?}: got {got:?}, want {want:?}"),
            }
            device.await.unwrap();
            std::fs::remove_file(&path).unwrap();
        }
    }

    #[test]
    fn connectors_come_from_transport_addresses() {
        for s in [
            "vsock:16:5001",
            "hybrid:/run/x:y/vsock.sock:5001",
            "unix:/tmp/s",
        ] {
            let addr: Addr = s.parse().unwrap();
            assert_eq!(EnclaveConnector::from(addr).to_string(), s);
        }
    }
}
