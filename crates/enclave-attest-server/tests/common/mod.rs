//! The attestation server tests' support: an emulated enclave (NSM with its CA in a temporary
//! directory), a server on a free port, and a TLS client that verifies nothing, for poking at
//! the server without the client library. Certificates of its own (client CAs) come from the
//! verifier's forger, shared by path rather than copied.
#![allow(dead_code)]

#[path = "../../../enclave-attest/tests/common/forge.rs"]
pub mod forge;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use enclave_attest::client::ClientOptions;
use enclave_attest::{Expectation, Policy, TrustRoot, VerifyOptions};
use enclave_attest_server::{
    AttestationServer, AttestationSource, EmulatedSource, Limits, ServerConfig, ServerHandle,
    Startup,
};
use enclave_nsm::emulated::{EmulatedDevice, EmulationCa};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};

pub const PCR0: [u8; 48] = [0xa0; 48];

/// An emulated NSM with PCR0/1/2 measured, its CA in a temporary directory.
pub struct Enclave {
    _dir: tempfile::TempDir,
    pub ca: Arc<EmulationCa>,
}

impl Enclave {
    pub fn new() -> Enclave {
        let dir = tempfile::tempdir().unwrap();
        let ca = EmulationCa::load_or_create(&dir.path().join("emulation-ca")).unwrap();
        Enclave {
            _dir: dir,
            ca: Arc::new(ca),
        }
    }

    pub fn source(&self) -> EmulatedSource {
        self.source_of_image(PCR0)
    }

    /// Another enclave under the same root (the same emulated host, as every Nitro enclave is
    /// under the AWS root), whose image measures `pcr0`.
    pub fn source_of_image(&self, pcr0: [u8; 48]) -> EmulatedSource {
        let measured: BTreeMap<u8, [u8; 48]> = [(0, pcr0), (1, [0xa1; 48]), (2, [0xa2; 48])].into();
        EmulatedSource::new(EmulatedDevice::new(
            self.ca.clone(),
            "0123456789abcdef",
            &measured,
        ))
    }

    /// Client options trusting this enclave's emulation root and expecting its PCR0.
    pub fn options(&self) -> ClientOptions {
        self.options_expecting(Expectation::pcrs([(0, PCR0.to_vec())]).unwrap())
    }

    /// Client options trusting this enclave's emulation root and expecting `expectation`.
    pub fn options_expecting(&self, expectation: Expectation) -> ClientOptions {
        let roots = TrustRoot::from_pem_or_der(&std::fs::read(self.ca.root_path()).unwrap());
        ClientOptions::new(VerifyOptions {
            roots: roots.unwrap(),
            ..VerifyOptions::new(Policy::new(expectation))
        })
    }
}

pub fn config() -> ServerConfig {
    ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        client_ca: Vec::new(),
        limits: Limits::default(),
    }
}

/// A server without file attestation.
pub fn spawn(source: impl AttestationSource + 'static, config: ServerConfig) -> ServerHandle {
    let startup = Startup::fetch(&source, None).unwrap();
    AttestationServer::spawn(config, Arc::new(source), startup, None).unwrap()
}

/// Accepts any server certificate.
#[derive(Debug)]
pub struct AnyCert;

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A TLS connection that verifies nothing: for poking at the server without the client library.
pub fn tls(addr: SocketAddr) -> StreamOwned<ClientConnection, TcpStream> {
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert))
            .with_no_client_auth();
    let conn =
        ClientConnection::new(Arc::new(config), "enclave-attest".try_into().unwrap()).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    // Guards against a hang if the server misbehaves; never reached when it does not.
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    tcp.set_write_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    StreamOwned::new(conn, tcp)
}

/// Sends `request` bytes over TLS and returns everything the server sends until it closes:
/// status, head and body, parsed loosely.
pub fn raw(addr: SocketAddr, request: &[u8]) -> (u16, String, Vec<u8>) {
    let mut tls = tls(addr);
    tls.write_all(request).unwrap();
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    // Until the server closes (with or without close_notify).
    while let Ok(n @ 1..) = tls.read(&mut chunk) {
        out.extend_from_slice(&chunk[..n]);
    }
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(out.len());
    let head = String::from_utf8_lossy(&out[..split]).into_owned();
    let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = out.get(split + 4..).unwrap_or_default().to_vec();
    (status, head, body)
}

pub fn get(addr: SocketAddr, target: &str) -> (u16, String, Vec<u8>) {
    raw(
        addr,
        format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}
