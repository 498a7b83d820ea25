//! Where the server's documents come from: the enclave's control server (which asks the NSM,
//! hardware or emulated) or, on the host, an in-process emulated NSM.

use std::sync::Mutex;

use enclave_nsm::{ErrorCode, Request, Response};
use enclave_proto::client::{Client, ClientError, ConnectOptions};
use enclave_proto::transport::Addr;
use enclave_proto::wire::AttestRequest;

use enclave_nsm::emulated::EmulatedDevice;

/// The control server's socket inside the enclave (enclave-init's `LOCAL_SOCKET`).
pub const CONTROL_SOCKET: &str = "/run/enclave/control.sock";

/// Why a document could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The control server could not be reached or refused the request.
    #[error("control server: {0}")]
    Control(#[from] ClientError),
    /// The NSM answered with an error code.
    #[error("the NSM refused the request: {0:?}")]
    Refused(ErrorCode),
    /// The NSM answered with a response of another kind.
    #[error("unexpected NSM response")]
    Unexpected,
    /// Another source's failure (sources outside this crate).
    #[error("{0}")]
    Other(String),
}

/// Something that returns a fresh attestation document (raw COSE_Sign1 bytes) with the given
/// optional fields. Blocking: the server calls it on a blocking thread.
pub trait AttestationSource: Send + Sync {
    /// A fresh document carrying exactly these fields.
    fn attest(
        &self,
        nonce: Option<&[u8]>,
        user_data: Option<&[u8]>,
        public_key: Option<&[u8]>,
    ) -> Result<Vec<u8>, SourceError>;
}

/// Inside the enclave: the control server's `attest` request on its local Unix socket. That
/// socket needs no capability or key for `attest` (a document is public), and it is root-only.
pub struct ControlSocketSource {
    addr: Addr,
    options: ConnectOptions,
    /// One session, reused: a fresh handshake per document would double the round trips.
    client: Mutex<Option<Client>>,
}

impl std::fmt::Debug for ControlSocketSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlSocketSource")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl ControlSocketSource {
    /// A source talking to the control server at `addr` (normally `unix:`[`CONTROL_SOCKET`]).
    pub fn new(addr: Addr) -> Self {
        ControlSocketSource {
            addr,
            options: ConnectOptions {
                client: format!("enclave-attest {}", env!("CARGO_PKG_VERSION")),
                ..ConnectOptions::default()
            },
            client: Mutex::new(None),
        }
    }

    /// The source for the enclave's own control server.
    pub fn local() -> Self {
        ControlSocketSource::new(Addr::Unix(CONTROL_SOCKET.into()))
    }
}

impl AttestationSource for ControlSocketSource {
    fn attest(
        &self,
        nonce: Option<&[u8]>,
        user_data: Option<&[u8]>,
        public_key: Option<&[u8]>,
    ) -> Result<Vec<u8>, SourceError> {
        let request = AttestRequest {
            nonce: nonce.map(<[u8]>::to_vec),
            user_data: user_data.map(<[u8]>::to_vec),
            public_key: public_key.map(<[u8]>::to_vec),
        };
        let mut slot = self.client.lock().unwrap_or_else(|p| p.into_inner());
        // A kept session may have been closed by the server since; one retry on a fresh one.
        let reused = slot.is_some();
        for attempt in 0..2 {
            let client = match slot.as_mut() {
                Some(c) => c,
                None => slot.insert(Client::connect(&self.addr, &self.options)?),
            };
            match client.attest(request.clone()) {
                Ok(doc) => return Ok(doc),
                // The server answered: the session is fine, the request is not.
                Err(e) if e.code().is_some() => return Err(e.into()),
                Err(e) => {
                    *slot = None;
                    if !(reused && attempt == 0) {
                        return Err(e.into());
                    }
                    tracing::debug!(error = %e, "control session lost; reconnecting");
                }
            }
        }
        Err(SourceError::Unexpected)
    }
}

/// On the host (tests, benchmarks): an in-process emulated NSM.
#[derive(Debug)]
pub struct EmulatedSource {
    device: Mutex<EmulatedDevice>,
}

impl EmulatedSource {
    /// Wraps a device.
    pub fn new(device: EmulatedDevice) -> Self {
        EmulatedSource {
            device: Mutex::new(device),
        }
    }
}

impl AttestationSource for EmulatedSource {
    fn attest(
        &self,
        nonce: Option<&[u8]>,
        user_data: Option<&[u8]>,
        public_key: Option<&[u8]>,
    ) -> Result<Vec<u8>, SourceError> {
        // The NSM API's byte buffers, by inference (their crate is not a dependency of ours).
        let request = Request::Attestation {
            user_data: user_data.map(|b| b.to_vec().into()),
            nonce: nonce.map(|b| b.to_vec().into()),
            public_key: public_key.map(|b| b.to_vec().into()),
        };
        let response = self
            .device
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .handle(request);
        match response {
            Response::Attestation { document } => Ok(document),
            Response::Error(code) => Err(SourceError::Refused(code)),
            _ => Err(SourceError::Unexpected),
        }
    }
}
