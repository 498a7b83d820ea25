//! The attestation server and file attestation: enclave services, run inside the enclave by
//! the `enclave-attest` binary (`enclave-attest serve`, started by enclave-init when the spec
//! enables it). Relying parties need none of this: what they verify with, the client included,
//! is crate `enclave-attest`, which has no async runtime.
//!
//! At start ([`Startup::fetch`]) it makes its TLS key (ECDSA P-256, in memory only) and a
//! self-signed certificate and fetches one document from its [`AttestationSource`], the
//! start-up document (kept for `/pcrs`; its hash is the epoch of every file proof), then serves,
//! over HTTP/1.1 on rustls:
//!
//! | endpoint | answer |
//! |---|---|
//! | `GET /health` | `{"status":"ok"}` |
//! | `GET /pcrs` | `{"module_id", "digest", "pcrs": {"0": hex, …}}` from the startup document |
//! | `GET /attestation[?nonce=HEX][&encoding=base64]` | a fresh document, `application/cbor` |
//! | `GET /files/hash?path=/abs` | `{"path", "sha3_512"}` |
//! | `GET /files/proof?path=/abs` | `{"path", "sha3_512", "generation", "epoch", "proof", "suite"}` |
//! | `GET /files/vrf-key[?nonce=HEX]` | `{"public_key", "suite", "epoch", "document"}` (base64) |
//! | `GET /files/epoch` | `{"epoch", "vrf_public_key", "startup_document"}` (base64) |
//!
//! Every document it fetches carries `public_key` = the DER SubjectPublicKeyInfo of the TLS
//! key and `user_data` = a [`Binding`] (with the VRF key when files are attested), so a client
//! that verifies a document knows the TLS peer is this enclave (see [`enclave_attest::client`]).
//!
//! One task per connection on the caller's runtime (the binary uses a current-thread one, so
//! its throughput is per core). Bounds: [`Limits`].
//!
//! [`files`] keeps the attested files' hashes and proofs and publishes their changes to NATS.
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod conn;
pub mod files;
mod handlers;
mod limits;
mod proofs;
mod query;
mod source;
mod startup;
mod tls;

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use enclave_spec::AttestationServerSpec;
use hyper_util::rt::TokioTimer;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

pub use enclave_attest::binding::{
    Binding, BindingError, BINDING_MAGIC, BINDING_VERSION, CERT_NAME,
};
pub use handlers::MAX_NONCE_LEN;
pub use limits::{Limits, RateLimit};
pub use proofs::FileProofs;
pub use source::{
    AttestationSource, ControlSocketSource, EmulatedSource, SourceError, CONTROL_SOCKET,
};
pub use startup::Startup;

use handlers::State;
use limits::TokenBucket;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Making the TLS key, certificate or configuration failed.
    #[error("TLS: {0}")]
    Tls(String),
    /// A `client_ca` entry is not a usable CA certificate.
    #[error("client_ca: {0}")]
    ClientCa(String),
    /// The listening socket could not be bound.
    #[error("listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// The startup document could not be fetched.
    #[error("startup document: {0}")]
    Source(#[from] SourceError),
    /// The startup document does not parse.
    #[error("startup document: {0}")]
    Document(#[from] enclave_attest::Error),
    /// The startup document lacks the TLS key or the binding the server asked for.
    #[error("the attestation source returned a document without the requested public_key and user_data; clients could not verify this server")]
    Unbound,
    /// The file store proves under another VRF key or epoch than the start-up document binds
    /// (or the document binds a key and there is no store, or the reverse).
    #[error("the file store does not match the start-up document (VRF key or epoch); build the store with Startup::epoch and the key the document binds")]
    FilesMismatch,
    /// The server's thread or runtime could not be started.
    #[error("runtime: {0}")]
    Runtime(std::io::Error),
}

/// Where and how to serve.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Listening address.
    pub listen: SocketAddr,
    /// PEM CA certificates of accepted client certificates; empty = no client authentication.
    pub client_ca: Vec<String>,
    /// Bounds.
    pub limits: Limits,
}

impl ServerConfig {
    /// The spec's server section: `127.0.0.1:<port>`, because ingress reaches the enclave
    /// through the in-enclave forwarder on loopback and nothing else should reach the server.
    pub fn from_spec(spec: &AttestationServerSpec) -> ServerConfig {
        ServerConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, spec.port)),
            client_ca: spec.client_ca.clone(),
            limits: Limits::default(),
        }
    }
}

/// A bound server, ready to [`run`](AttestationServer::run).
pub struct AttestationServer {
    listener: TcpListener,
    addr: SocketAddr,
    shared: Arc<conn::Shared>,
    connections: Arc<Semaphore>,
    spki: Vec<u8>,
    cert: Vec<u8>,
    binding: Binding,
    startup_document: Vec<u8>,
}

impl AttestationServer {
    /// Binds `config.listen` to serve with the identity and document of `startup` (fetched
    /// from `source`, which later documents come from too) and, when the spec attests files,
    /// `files`, whose key and epoch must be the ones `startup` binds. Needs a tokio runtime
    /// with I/O and time enabled.
    pub async fn bind(
        config: ServerConfig,
        source: Arc<dyn AttestationSource>,
        startup: Startup,
        files: Option<Arc<dyn FileProofs>>,
    ) -> Result<AttestationServer, ServerError> {
        let files_match = match (&files, startup.binding.vrf_public_key) {
            (Some(f), Some(key)) => f.vrf_public_key() == key && f.epoch() == startup.epoch(),
            (None, None) => true,
            _ => false,
        };
        if !files_match {
            return Err(ServerError::FilesMismatch);
        }
        let Startup {
            identity,
            binding,
            user_data,
            document: startup_document,
            parsed: doc,
            ..
        } = startup;
        let tls = identity.server_config(&config.client_ca)?;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let addr = listener.local_addr().map_err(ServerError::Runtime)?;
        let limits = &config.limits;
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(limits.max_header_bytes.max(8192))
            .max_header_size(limits.max_header_bytes)
            .max_headers(limits.max_headers)
            .keep_alive(true);
        tracing::info!(
            listen = %addr,
            module_id = %doc.module_id,
            public_key_sha256 = %hex::encode(Sha256::digest(&identity.spki)),
            client_auth = !config.client_ca.is_empty(),
            file_attestation = files.is_some(),
            "attestation server ready"
        );
        let state = State {
            source,
            files,
            spki: identity.spki.clone(),
            user_data,
            startup_document: startup_document.clone(),
            pcrs_body: handlers::pcrs_body(&doc),
            attestation_bucket: TokenBucket::new(limits.attestation_rate),
            files_bucket: TokenBucket::new(limits.files_rate),
            blocking: Semaphore::new(limits.max_blocking.max(1)),
        };
        Ok(AttestationServer {
            shared: Arc::new(conn::Shared {
                acceptor: TlsAcceptor::from(Arc::new(tls)),
                http,
                state: Arc::new(state),
                handshake_timeout: limits.handshake_timeout,
                write_stall_timeout: limits.write_stall_timeout,
            }),
            listener,
            addr,
            connections: Arc::new(Semaphore::new(limits.max_connections)),
            spki: identity.spki,
            cert: identity.cert.to_vec(),
            binding,
            startup_document,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// DER SubjectPublicKeyInfo of the TLS key (every document's `public_key`).
    pub fn public_key(&self) -> &[u8] {
        &self.spki
    }

    /// DER of the self-signed TLS certificate.
    pub fn certificate(&self) -> &[u8] {
        &self.cert
    }

    /// What every document's `user_data` says.
    pub fn binding(&self) -> Binding {
        self.binding
    }

    /// The document fetched at start (no nonce), whose PCRs `/pcrs` serves.
    pub fn startup_document(&self) -> &[u8] {
        &self.startup_document
    }

    /// Serves forever.
    pub async fn run(self) {
        self.run_until(std::future::pending()).await
    }

    /// Serves until `shutdown` completes; connections still open are dropped with the runtime.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                () = &mut shutdown => return,
                a = self.listener.accept() => a,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = self.connections.clone().try_acquire_owned() else {
                tracing::warn!(%peer, "too many connections; closing");
                continue;
            };
            // Responses are written whole; waiting for more bytes would only add latency.
            let _ = tcp.set_nodelay(true);
            let shared = self.shared.clone();
            tokio::spawn(async move {
                let _permit = permit;
                conn::serve(shared, tcp, peer).await;
            });
        }
    }

    /// Runs the server on its own thread with a current-thread runtime (tests, benchmarks,
    /// embedding in blocking programs). Returns once it is listening.
    pub fn spawn(
        config: ServerConfig,
        source: Arc<dyn AttestationSource>,
        startup: Startup,
        files: Option<Arc<dyn FileProofs>>,
    ) -> Result<ServerHandle, ServerError> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("enclave-attest".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .enable_time()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => return drop(ready_tx.send(Err(ServerError::Runtime(e)))),
                };
                rt.block_on(async move {
                    match AttestationServer::bind(config, source, startup, files).await {
                        Ok(server) => {
                            let info = ServerInfo {
                                addr: server.local_addr(),
                                public_key: server.public_key().to_vec(),
                                certificate: server.certificate().to_vec(),
                                binding: server.binding(),
                            };
                            if ready_tx.send(Ok(info)).is_ok() {
                                server.run_until(async { drop(stop_rx.await) }).await;
                            }
                        }
                        Err(e) => drop(ready_tx.send(Err(e))),
                    }
                });
            })
            .map_err(ServerError::Runtime)?;
        let info = ready_rx
            .recv()
            .map_err(|_| ServerError::Runtime(std::io::Error::other("server thread ended")))??;
        Ok(ServerHandle {
            info,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }
}

/// What a spawned server tells its owner.
#[derive(Debug, Clone)]
struct ServerInfo {
    addr: SocketAddr,
    public_key: Vec<u8>,
    certificate: Vec<u8>,
    binding: Binding,
}

/// A server running on its own thread; dropping it stops the server and joins the thread.
#[derive(Debug)]
pub struct ServerHandle {
    info: ServerInfo,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ServerHandle {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.info.addr
    }

    /// DER SubjectPublicKeyInfo of the TLS key.
    pub fn public_key(&self) -> &[u8] {
        &self.info.public_key
    }

    /// DER of the TLS certificate.
    pub fn certificate(&self) -> &[u8] {
        &self.info.certificate
    }

    /// What every document's `user_data` says.
    pub fn binding(&self) -> Binding {
        self.info.binding
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
