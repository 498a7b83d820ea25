//! The verifying side of the attestation server (blocking; for `enclave-ctl` and host tools).
//!
//! [`AttestedClient::connect`] opens a TLS connection whose server certificate is accepted only
//! provisionally (the handshake proves the server holds the certificate's key), asks
//! `/attestation?nonce=<32 fresh random bytes>`, and verifies the document with the caller's
//! [`VerifyOptions`] plus two expectations of its own: the nonce is the one just sent, and the
//! document's `public_key` is the DER SubjectPublicKeyInfo of the certificate this very
//! connection was made with. Only then is the connection returned, so every later request on
//! it goes to the attested enclave.
//!
//! The caller's policy says *which* enclave (its [`crate::Expectation`]: PCR0 or PCR8 pinned,
//! or any enclave said explicitly); without PCR0 or PCR8 an attacker's own enclave running
//! this same server passes. Debug capabilities in PCR31 are refused unless the policy allows
//! them. A man in the middle with its own key cannot pass with a document it relays: that
//! binds the enclave's key, not the one it negotiated with. This rests on nobody outside the
//! enclave obtaining a document that binds a key of their choosing; for the host that holds
//! only if its control channel serves such documents under `debug.attest` alone (which PCR31
//! then shows): see docs/attestation.md, "How a client verifies".
//!
//! File proofs ([`AttestedClient::get_file_proof`]) verify offline under the VRF key bound in
//! the verified document's `user_data` ([`Binding`]), in the boot ([`vrf::Epoch`]) the server's
//! start-up document names ([`AttestedClient::file_epoch`]).

mod http;
mod verifier;

use std::collections::BTreeMap;
use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use base64ct::{Base64, Encoding};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, StreamOwned};

pub use http::HttpResponse;

use crate::binding::{cert_spki, Binding, BindingError, CERT_NAME};
use crate::files::VRF_SUITE;
use crate::{vrf, Report, VerifyOptions};

/// Why connecting, verifying or a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting, reading or writing failed.
    #[error("connection: {0}")]
    Io(io::Error),
    /// The TLS handshake or a TLS record failed (including a refused client certificate).
    #[error("TLS: {0}")]
    Tls(String),
    /// The server's answer is not the HTTP this client reads.
    #[error("HTTP: {0}")]
    Http(String),
    /// The server answered with an error status.
    #[error("server answered {status}: {message}")]
    Status {
        /// HTTP status.
        status: u16,
        /// The server's `error` message, or its body.
        message: String,
    },
    /// The document does not verify (signature, chain, policy, nonce, or a `public_key` that
    /// is not this connection's TLS key: [`crate::Error::PublicKeyMismatch`]).
    #[error("attestation: {0}")]
    Verify(#[from] crate::Error),
    /// The document's user_data is not a binding.
    #[error(transparent)]
    Binding(#[from] BindingError),
    /// A file proof was asked of an enclave whose document binds no VRF key.
    #[error("the attested enclave has no file attestation (no VRF key in its document)")]
    NoFileAttestation,
    /// A file proof does not verify.
    #[error("file proof: {0}")]
    Proof(#[from] vrf::VrfError),
    /// An answer contradicts itself or the verified document.
    #[error("inconsistent answer: {0}")]
    Inconsistent(String),
    /// The server closed the connection.
    #[error("the server closed the connection")]
    Closed,
    /// Client key material or the random source is unusable.
    #[error("{0}")]
    Setup(String),
}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> Self {
        // rustls reports TLS failures (alerts, bad records) through io::Error.
        match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            Some(tls) => ClientError::Tls(tls.to_string()),
            None => ClientError::Io(e),
        }
    }
}

/// A client certificate for servers whose spec sets `client_ca`.
pub struct ClientAuth {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAuth")
            .field("certificates", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl ClientAuth {
    /// A certificate chain (leaf first) and its key (PKCS#8, SEC1 or PKCS#1 DER).
    pub fn new(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Self {
        ClientAuth { chain, key }
    }

    /// From PEM: certificates (leaf first) and a private key.
    pub fn from_pem(certs: &[u8], key: &[u8]) -> Result<Self, ClientError> {
        let chain = CertificateDer::pem_slice_iter(certs)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ClientError::Setup(format!("client certificate: {e}")))?;
        if chain.is_empty() {
            return Err(ClientError::Setup(
                "no client certificate in the PEM".into(),
            ));
        }
        let key = PrivateKeyDer::from_pem_slice(key)
            .map_err(|e| ClientError::Setup(format!("client key: {e}")))?;
        Ok(ClientAuth { chain, key })
    }
}

/// How to connect and what to require of the enclave.
#[derive(Debug)]
pub struct ClientOptions {
    /// Roots, time and policy for the document (the policy's expectation says which enclave
    /// is acceptable). The client sets `policy.nonce` (its fresh nonce) and
    /// `policy.public_key` (the connection's TLS key) itself, replacing any value.
    pub verify: VerifyOptions,
    /// A client certificate, for servers that require one.
    pub client_auth: Option<ClientAuth>,
    /// Connect, read and write timeout.
    pub timeout: Duration,
}

impl ClientOptions {
    /// `verify`, no client certificate, 10 s timeouts.
    pub fn new(verify: VerifyOptions) -> Self {
        ClientOptions {
            verify,
            client_auth: None,
            timeout: Duration::from_secs(10),
        }
    }
}

/// What [`AttestedClient::connect`] established.
#[derive(Debug, Clone)]
pub struct VerifiedReport {
    /// The verified document's report.
    pub report: Report,
    /// Its user_data, decoded.
    pub binding: Binding,
    /// The raw document.
    pub document: Vec<u8>,
    /// The nonce the client sent (and the document carries).
    pub nonce: Vec<u8>,
    /// DER SubjectPublicKeyInfo of the server's TLS key (the document's `public_key`).
    pub tls_public_key: Vec<u8>,
}

/// `/pcrs`, checked against the verified document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pcrs {
    /// NSM module id.
    pub module_id: String,
    /// PCR digest (`SHA384`).
    pub digest: String,
    /// Index to value.
    pub pcrs: BTreeMap<u8, Vec<u8>>,
}

/// A file proof that verified under the attested VRF key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedFile {
    /// The path.
    pub path: String,
    /// SHA3-512 of the file, as attested.
    pub sha3_512: [u8; 64],
    /// The enclave's change counter for this proof.
    pub generation: u64,
    /// The boot the proof names (the one [`AttestedClient::file_epoch`] returns).
    pub epoch: vrf::Epoch,
    /// The proof (keep it to re-verify offline with [`vrf::verify_file`]).
    pub proof: vrf::Proof,
    /// The VRF output of the proof.
    pub output: vrf::Output,
}

/// The attested enclave's boot, from its start-up document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEpoch {
    /// SHA-256 of the start-up document.
    pub epoch: vrf::Epoch,
    /// The start-up document (raw COSE_Sign1): it binds the same TLS and VRF keys as the
    /// document verified at connect.
    pub startup_document: Vec<u8>,
}

/// A keep-alive HTTPS connection to an attested enclave.
pub struct AttestedClient {
    stream: StreamOwned<ClientConnection, TcpStream>,
    buf: Vec<u8>,
    verified: VerifiedReport,
    closed: bool,
    epoch: Option<FileEpoch>,
}

impl std::fmt::Debug for AttestedClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttestedClient")
            .field("module_id", &self.verified.report.module_id)
            .finish_non_exhaustive()
    }
}

impl AttestedClient {
    /// Connects to the server at `addr`, fetches a document for a fresh nonce over the new
    /// connection and verifies it, binding included. Returns the connection only when all of
    /// it holds.
    pub fn connect(
        addr: impl ToSocketAddrs,
        options: &ClientOptions,
    ) -> Result<(AttestedClient, VerifiedReport), ClientError> {
        let mut nonce = vec![0u8; 32];
        getrandom::getrandom(&mut nonce)
            .map_err(|e| ClientError::Setup(format!("getrandom: {e}")))?;
        let tcp = tcp_connect(addr, options.timeout)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Setup(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier::AttestedCertVerifier {
                provider,
            }));
        let mut config = match &options.client_auth {
            None => builder.with_no_client_auth(),
            Some(auth) => builder
                .with_client_auth_cert(auth.chain.clone(), auth.key.clone_key())
                .map_err(|e| ClientError::Setup(format!("client certificate: {e}")))?,
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let name =
            ServerName::try_from(CERT_NAME).map_err(|e| ClientError::Setup(e.to_string()))?;
        let conn = ClientConnection::new(Arc::new(config), name)
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        let mut stream = StreamOwned::new(conn, tcp);
        let mut buf = Vec::new();

        let target = format!("/attestation?nonce={}", hex::encode(&nonce));
        let resp = expect_ok(http::get(&mut stream, &mut buf, CERT_NAME, &target)?)?;
        let tls_public_key = stream
            .conn
            .peer_certificates()
            .and_then(|certs| certs.first())
            .and_then(|cert| cert_spki(cert))
            .ok_or_else(|| ClientError::Tls("no server certificate".into()))?;
        let mut verify = options.verify.clone();
        verify.policy.nonce = Some(nonce.clone());
        verify.policy.public_key = Some(tls_public_key.clone());
        let report = crate::verify(&resp.body, &verify)?;
        let binding = Binding::decode(report.user_data.as_ref().ok_or(BindingError::Missing)?)?;
        let verified = VerifiedReport {
            report,
            binding,
            document: resp.body,
            nonce,
            tls_public_key,
        };
        let client = AttestedClient {
            stream,
            buf,
            verified: verified.clone(),
            closed: resp.close,
            epoch: None,
        };
        Ok((client, verified))
    }

    /// What `connect` verified.
    pub fn verified(&self) -> &VerifiedReport {
        &self.verified
    }

    /// `GET target` (path and query) on the attested connection; any status.
    pub fn get(&mut self, target: &str) -> Result<HttpResponse, ClientError> {
        if self.closed {
            return Err(ClientError::Closed);
        }
        let resp = http::get(&mut self.stream, &mut self.buf, CERT_NAME, target);
        self.closed = resp.as_ref().map_or(true, |r| r.close);
        resp
    }

    /// `GET /health`.
    pub fn health(&mut self) -> Result<(), ClientError> {
        self.get("/health").and_then(expect_ok).map(drop)
    }

    /// `GET /pcrs`, which must agree with the verified document.
    pub fn get_pcrs(&mut self) -> Result<Pcrs, ClientError> {
        let v = json(self.get("/pcrs").and_then(expect_ok)?)?;
        let text = |k: &str| {
            v.get(k)
                .and_then(|s| s.as_str())
                .map(str::to_string)
                .ok_or_else(|| inconsistent(format!("/pcrs has no {k}")))
        };
        let mut pcrs = BTreeMap::new();
        let map = v
            .get("pcrs")
            .and_then(|p| p.as_object())
            .ok_or_else(|| inconsistent("/pcrs has no pcrs map".into()))?;
        for (k, value) in map {
            let index = k.parse::<u8>().ok();
            let value = value.as_str().and_then(|s| hex::decode(s).ok());
            match (index, value) {
                (Some(i), Some(bytes)) => pcrs.insert(i, bytes),
                _ => return Err(inconsistent(format!("/pcrs entry {k:?} is not N: hex"))),
            };
        }
        let got = Pcrs {
            module_id: text("module_id")?,
            digest: text("digest")?,
            pcrs,
        };
        let report = &self.verified.report;
        let attested: BTreeMap<u8, Vec<u8>> =
            report.pcrs.iter().map(|(i, v)| (*i, v.0.clone())).collect();
        if got.pcrs != attested || got.module_id != report.module_id {
            return Err(inconsistent(
                "/pcrs differs from the verified document".into(),
            ));
        }
        Ok(got)
    }

    /// A fresh raw document for `nonce` (unverified: verify it with [`crate::verify`]).
    pub fn attestation(&mut self, nonce: &[u8]) -> Result<Vec<u8>, ClientError> {
        let target = format!("/attestation?nonce={}", hex::encode(nonce));
        Ok(self.get(&target).and_then(expect_ok)?.body)
    }

    /// `GET /files/epoch`, once per connection: the boot whose proofs this enclave serves.
    /// The start-up document must hash to the epoch and bind this connection's TLS key and the
    /// verified binding, so it is this very server's; its signature is not re-checked (it came
    /// over the attested connection) and its certificates may have expired since the start.
    pub fn file_epoch(&mut self) -> Result<FileEpoch, ClientError> {
        if let Some(epoch) = &self.epoch {
            return Ok(epoch.clone());
        }
        let v = json(self.get("/files/epoch").and_then(expect_ok)?)?;
        let field = |k: &str| {
            v.get(k)
                .and_then(|s| s.as_str())
                .ok_or_else(|| inconsistent(format!("/files/epoch has no {k}")))
        };
        let epoch = vrf::Epoch::from_hex(field("epoch")?)
            .ok_or_else(|| inconsistent("epoch is not 32 bytes of hex".into()))?;
        let document = Base64::decode_vec(field("startup_document")?)
            .map_err(|_| inconsistent("startup_document is not base64".into()))?;
        if vrf::Epoch::of_startup_document(&document) != epoch {
            return Err(inconsistent(
                "the epoch is not the hash of the start-up document".into(),
            ));
        }
        let (_, doc) = crate::parse_unverified(&document)?;
        let verified = &self.verified;
        if doc.public_key.as_ref() != Some(&verified.tls_public_key)
            || doc.user_data.as_ref() != Some(&verified.binding.encode())
            || doc.module_id != verified.report.module_id
        {
            return Err(inconsistent(
                "the start-up document binds other keys than the verified document".into(),
            ));
        }
        let found = FileEpoch {
            epoch,
            startup_document: document,
        };
        self.epoch = Some(found.clone());
        Ok(found)
    }

    /// `GET /files/proof?path=…`, verified offline under the attested VRF key, in this
    /// enclave's boot ([`AttestedClient::file_epoch`]).
    pub fn get_file_proof(&mut self, path: &str) -> Result<VerifiedFile, ClientError> {
        let key = self
            .verified
            .binding
            .vrf_public_key
            .ok_or(ClientError::NoFileAttestation)?;
        let epoch = self.file_epoch()?.epoch;
        let target = format!("/files/proof?path={}", http::percent_encode(path));
        let v = json(self.get(&target).and_then(expect_ok)?)?;
        let field = |k: &str| {
            v.get(k)
                .and_then(|s| s.as_str())
                .ok_or_else(|| inconsistent(format!("file proof has no {k}")))
        };
        if field("path")? != path {
            return Err(inconsistent("file proof is for another path".into()));
        }
        if field("suite")? != VRF_SUITE {
            return Err(inconsistent(format!("file proof suite is not {VRF_SUITE}")));
        }
        if vrf::Epoch::from_hex(field("epoch")?) != Some(epoch) {
            return Err(inconsistent(
                "file proof names another epoch than the enclave's start-up document".into(),
            ));
        }
        let generation = v
            .get("generation")
            .and_then(|g| g.as_u64())
            .ok_or_else(|| inconsistent("file proof has no generation".into()))?;
        let sha3_512: [u8; 64] = hex::decode(field("sha3_512")?)
            .ok()
            .and_then(|h| h.try_into().ok())
            .ok_or_else(|| inconsistent("sha3_512 is not 64 hex bytes".into()))?;
        let proof =
            hex::decode(field("proof")?).map_err(|_| inconsistent("proof is not hex".into()))?;
        let proof = vrf::Proof::from_bytes(&proof)?;
        let claim = vrf::FileClaim {
            path: path.to_string(),
            sha3_512,
            generation,
            epoch,
        };
        let output = vrf::verify_file(&key, &claim, &proof)?;
        Ok(VerifiedFile {
            path: claim.path,
            sha3_512,
            generation,
            epoch,
            proof,
            output,
        })
    }
}

fn tcp_connect(addr: impl ToSocketAddrs, timeout: Duration) -> Result<TcpStream, ClientError> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address to connect to");
    for a in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(tcp) => {
                tcp.set_read_timeout(Some(timeout))?;
                tcp.set_write_timeout(Some(timeout))?;
                tcp.set_nodelay(true)?;
                return Ok(tcp);
            }
            Err(e) => last = e,
        }
    }
    Err(ClientError::Io(last))
}

fn expect_ok(resp: HttpResponse) -> Result<HttpResponse, ClientError> {
    if resp.status == 200 {
        Ok(resp)
    } else {
        Err(ClientError::Status {
            status: resp.status,
            message: resp.error_message(),
        })
    }
}

fn json(resp: HttpResponse) -> Result<serde_json::Value, ClientError> {
    serde_json::from_slice(&resp.body).map_err(|e| ClientError::Http(format!("bad JSON: {e}")))
}

fn inconsistent(msg: String) -> ClientError {
    ClientError::Inconsistent(msg)
}
