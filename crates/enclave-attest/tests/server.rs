//! The attestation server and its client, over real TLS on real sockets, with documents from an
//! emulated NSM (its CA in a temporary directory): the attested connection and its refusals
//! (a man in the middle relaying the enclave's document, a wrong nonce, an untrusted root),
//! the endpoints and their errors, rate limits, client certificates, and garbage input.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use base64ct::Encoding;
use common::forge::{self, Role, Window};
use der::{Decode, EncodePem};
use enclave_attest::client::{AttestedClient, ClientAuth, ClientError, ClientOptions};
use enclave_attest::emulated::{EmulatedDevice, EmulationCa};
use enclave_attest::files::{FileEntry, FileError, FileStore};
use enclave_attest::server::{
    AttestationServer, AttestationSource, EmulatedSource, FileProofs, Limits, RateLimit,
    ServerConfig, ServerError, ServerHandle, SourceError,
};
use enclave_attest::{vrf, Error, TrustRoot, VerifyOptions};
use enclave_proto::spec::FileAttestationSpec;
use p384::pkcs8::EncodePrivateKey;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};

const PCR0: [u8; 48] = [0xa0; 48];

/// An emulated NSM with PCR0/1/2 measured, its CA in a temporary directory.
struct Enclave {
    _dir: tempfile::TempDir,
    ca: Arc<EmulationCa>,
}

impl Enclave {
    fn new() -> Enclave {
        let dir = tempfile::tempdir().unwrap();
        let ca = EmulationCa::load_or_create(&dir.path().join("emulation-ca")).unwrap();
        Enclave {
            _dir: dir,
            ca: Arc::new(ca),
        }
    }

    fn source(&self) -> EmulatedSource {
        let measured: BTreeMap<u8, [u8; 48]> = [(0, PCR0), (1, [0xa1; 48]), (2, [0xa2; 48])].into();
        EmulatedSource::new(EmulatedDevice::new(
            self.ca.clone(),
            "0123456789abcdef",
            &measured,
        ))
    }

    /// Client options trusting this enclave's emulation root.
    fn options(&self) -> ClientOptions {
        let roots = TrustRoot::from_pem_or_der(&std::fs::read(self.ca.root_path()).unwrap());
        ClientOptions::new(VerifyOptions {
            roots: roots.unwrap(),
            ..VerifyOptions::default()
        })
    }
}

fn config() -> ServerConfig {
    ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        client_ca: Vec::new(),
        limits: Limits::default(),
    }
}

fn spawn(source: impl AttestationSource + 'static, config: ServerConfig) -> ServerHandle {
    AttestationServer::spawn(config, Arc::new(source), None).unwrap()
}

/// Accepts any server certificate.
#[derive(Debug)]
struct AnyCert;

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
fn tls(addr: SocketAddr) -> StreamOwned<ClientConnection, TcpStream> {
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
fn raw(addr: SocketAddr, request: &[u8]) -> (u16, String, Vec<u8>) {
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

fn get(addr: SocketAddr, target: &str) -> (u16, String, Vec<u8>) {
    raw(
        addr,
        format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

#[test]
fn attested_connection_verifies_the_document_and_the_tls_binding() {
    let enclave = Enclave::new();
    let server = spawn(enclave.source(), config());
    let (mut client, verified) = AttestedClient::connect(server.local_addr(), &enclave.options())
        .expect("a genuine server is accepted");
    let report = &verified.report;
    assert_eq!(report.public_key.as_ref().unwrap().0, server.public_key());
    assert_eq!(verified.tls_public_key, server.public_key());
    assert_eq!(report.nonce.as_ref().unwrap().0, verified.nonce);
    assert_eq!(verified.nonce.len(), 32);
    assert_eq!(verified.binding, server.binding());
    assert_eq!(verified.binding.vrf_public_key, None);
    assert_eq!(report.pcrs[&0].0, PCR0);

    // The connection is kept alive for further requests.
    client.health().unwrap();
    let pcrs = client.get_pcrs().unwrap();
    assert_eq!(pcrs.module_id, report.module_id);
    assert_eq!(pcrs.pcrs.len(), 16);
    assert_eq!(pcrs.pcrs[&0], PCR0);
    let doc = client.attestation(b"second nonce").unwrap();
    let mut options = enclave.options().verify;
    options.policy.nonce = Some(b"second nonce".to_vec());
    options.policy.public_key = Some(server.public_key().to_vec());
    enclave_attest::verify(&doc, &options).unwrap();
    assert!(matches!(
        client.get_file_proof("/etc/hosts"),
        Err(ClientError::NoFileAttestation)
    ));

    // /pcrs lists the PCRs in numeric order.
    let (status, head, body) = get(server.local_addr(), "/pcrs");
    assert_eq!(status, 200, "{head}");
    let body = String::from_utf8(body).unwrap();
    let order: Vec<usize> = (0..16)
        .map(|i| body.find(&format!("\"{i}\":")).unwrap())
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{body}");

    // The caller's policy applies on top of the binding.
    let mut strict = enclave.options();
    strict.verify.policy.pcrs.insert(0, vec![0xb0; 48]);
    let err = AttestedClient::connect(server.local_addr(), &strict).unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Verify(Error::PcrMismatch { index: 0, .. })
        ),
        "{err}"
    );
    let untrusted = ClientOptions::new(VerifyOptions::default());
    let err = AttestedClient::connect(server.local_addr(), &untrusted).unwrap_err();
    assert!(
        matches!(err, ClientError::Verify(Error::EmulationRoot { .. })),
        "{err}"
    );
}

/// A man in the middle: its own TLS key, documents relayed from the genuine server for the
/// client's own nonce. Everything verifies except the binding. (Its startup document, which
/// only the server itself checks, comes from its own device.)
struct Relay(SocketAddr, EmulatedSource);

impl AttestationSource for Relay {
    fn attest(
        &self,
        nonce: Option<&[u8]>,
        user_data: Option<&[u8]>,
        public_key: Option<&[u8]>,
    ) -> Result<Vec<u8>, SourceError> {
        let Some(nonce) = nonce else {
            return self.1.attest(None, user_data, public_key);
        };
        let (status, head, body) = get(
            self.0,
            &format!("/attestation?nonce={}", hex::encode(nonce)),
        );
        match status {
            200 => Ok(body),
            _ => Err(SourceError::Other(head)),
        }
    }
}

/// Drops the fields the server asks for, as a control server that ignored them would.
struct Unbinding(EmulatedSource);

impl AttestationSource for Unbinding {
    fn attest(
        &self,
        nonce: Option<&[u8]>,
        _: Option<&[u8]>,
        _: Option<&[u8]>,
    ) -> Result<Vec<u8>, SourceError> {
        self.0.attest(nonce, None, None)
    }
}

#[test]
fn a_server_whose_document_binds_another_key_is_refused() {
    let enclave = Enclave::new();
    let genuine = spawn(enclave.source(), config());
    let mitm = spawn(Relay(genuine.local_addr(), enclave.source()), config());
    assert_ne!(mitm.public_key(), genuine.public_key());
    let err = AttestedClient::connect(mitm.local_addr(), &enclave.options()).unwrap_err();
    assert!(
        matches!(err, ClientError::Verify(Error::PublicKeyMismatch { .. })),
        "{err}"
    );
    // Our own server refuses to start on a source that does not bind its key.
    let err = AttestationServer::spawn(config(), Arc::new(Unbinding(enclave.source())), None)
        .unwrap_err();
    assert!(matches!(err, ServerError::Unbound), "{err}");
}

/// Answers every request with a document for another nonce.
struct WrongNonce(EmulatedSource);

impl AttestationSource for WrongNonce {
    fn attest(
        &self,
        _nonce: Option<&[u8]>,
        user_data: Option<&[u8]>,
        public_key: Option<&[u8]>,
    ) -> Result<Vec<u8>, SourceError> {
        self.0.attest(Some(b"stale nonce"), user_data, public_key)
    }
}

#[test]
fn a_document_for_another_nonce_is_refused() {
    let enclave = Enclave::new();
    let server = spawn(WrongNonce(enclave.source()), config());
    let err = AttestedClient::connect(server.local_addr(), &enclave.options()).unwrap_err();
    assert!(
        matches!(err, ClientError::Verify(Error::NonceMismatch { .. })),
        "{err}"
    );
}

#[test]
fn endpoints_refuse_what_they_do_not_serve() {
    let enclave = Enclave::new();
    let mut cfg = config();
    cfg.limits.attestation_rate = RateLimit {
        per_second: 0,
        burst: 3,
    };
    let server = spawn(enclave.source(), cfg);
    let addr = server.local_addr();
    let error_of = |body: &[u8]| -> String {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        v["error"].as_str().unwrap().to_string()
    };

    let (status, _, body) = get(addr, "/health");
    assert_eq!((status, body.as_slice()), (200, &br#"{"status":"ok"}"#[..]));
    let (status, _, body) = get(addr, "/nowhere");
    assert_eq!(status, 404);
    assert!(error_of(&body).contains("/nowhere"));
    let (status, head, _) = raw(
        addr,
        b"POST /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 405);
    assert!(head.to_ascii_lowercase().contains("allow: get"), "{head}");
    let (status, _, body) = raw(
        addr,
        b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    );
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&body));
    let (status, _, body) = raw(
        addr,
        b"GET /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    );
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&body));
    for bad in [
        "/attestation?nonce=xyz".to_string(),
        format!("/attestation?nonce={}", "ab".repeat(513)),
        "/attestation?encoding=pem".into(),
        "/attestation?nonce=ab&nonce=cd".into(),
        "/health?verbose=1".into(),
        "/pcrs?x=%zz".into(),
    ] {
        let (status, _, body) = get(addr, &bad);
        assert_eq!(status, 400, "{bad}: {}", String::from_utf8_lossy(&body));
        assert!(!error_of(&body).is_empty());
    }
    for files in [
        "/files/hash?path=/etc/hosts",
        "/files/proof?path=/x",
        "/files/vrf-key",
    ] {
        let (status, _, body) = get(addr, files);
        assert_eq!(status, 404, "{files}");
        assert!(error_of(&body).contains("not enabled"));
    }
    let (status, _, _) = raw(
        addr,
        format!(
            "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "a".repeat(9000)
        )
        .as_bytes(),
    );
    assert_eq!(status, 431);

    // The burst of 3 documents, then 429 (the bucket never refills here).
    let (status, head, body) = get(addr, "/attestation?nonce=0102&encoding=base64");
    assert_eq!(status, 200, "{head}");
    assert!(head
        .to_ascii_lowercase()
        .contains("cache-control: no-store"));
    let doc = base64ct::Base64::decode_vec(std::str::from_utf8(&body).unwrap()).unwrap();
    let (_, parsed) = enclave_attest::parse_unverified(&doc).unwrap();
    assert_eq!(parsed.nonce.as_deref(), Some(&[1u8, 2][..]));
    assert_eq!(parsed.public_key.as_deref(), Some(server.public_key()));
    let (mut client, _) = AttestedClient::connect(addr, &enclave.options()).unwrap();
    client.attestation(b"n").unwrap();
    let err = client.attestation(b"n").unwrap_err();
    assert!(
        matches!(err, ClientError::Status { status: 429, .. }),
        "{err}"
    );
    client
        .health()
        .expect("other endpoints are not rate-limited");
}

/// A PEM CA certificate and a client certificate (chain and PKCS#8 key) issued under it.
fn client_pki(name: &str) -> (String, ClientAuth) {
    let ca_key = forge::key(&format!("{name} ca"));
    let client_key = forge::key(&format!("{name} client"));
    let window = || Window(978_307_200, 2_500_000_000);
    let ca_name = format!("CN={name} CA,O=Test");
    let ca = forge::issue(
        &ca_name,
        &ca_key,
        &ca_name,
        &ca_key,
        Role::Ca(None),
        window(),
    );
    let leaf = forge::issue(
        &format!("CN={name} client,O=Test"),
        &client_key,
        &ca_name,
        &ca_key,
        Role::Leaf,
        window(),
    );
    let pem = x509_cert::Certificate::from_der(&ca)
        .unwrap()
        .to_pem(der::pem::LineEnding::LF)
        .unwrap();
    let key = client_key.to_pkcs8_der().unwrap().as_bytes().to_vec();
    let auth = ClientAuth::new(
        vec![CertificateDer::from(leaf)],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
    );
    (pem, auth)
}

#[test]
fn client_certificates_are_required_when_the_spec_names_a_ca() {
    let enclave = Enclave::new();
    let (ca_pem, auth) = client_pki("trusted");
    let (_, stranger) = client_pki("stranger");
    let mut cfg = config();
    cfg.client_ca = vec![ca_pem];
    let server = spawn(enclave.source(), cfg);

    let err = AttestedClient::connect(server.local_addr(), &enclave.options()).unwrap_err();
    assert!(matches!(err, ClientError::Tls(_)), "no certificate: {err}");
    let mut options = enclave.options();
    options.client_auth = Some(stranger);
    let err = AttestedClient::connect(server.local_addr(), &options).unwrap_err();
    assert!(matches!(err, ClientError::Tls(_)), "another CA: {err}");

    options.client_auth = Some(auth);
    let (mut client, _) = AttestedClient::connect(server.local_addr(), &options).unwrap();
    client.health().unwrap();

    let mut bad = config();
    bad.client_ca =
        vec!["-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n".into()];
    let err = AttestationServer::spawn(bad, Arc::new(enclave.source()), None).unwrap_err();
    assert!(err.to_string().contains("client_ca"), "{err}");
}

#[test]
fn garbage_is_refused_without_harm() {
    let enclave = Enclave::new();
    let server = spawn(enclave.source(), config());
    let addr = server.local_addr();
    // Not TLS at all: plain HTTP, a truncated ClientHello, and noise.
    let noise: Vec<u8> = (0u32..4096)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for bytes in [
        &b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &[0x16, 0x03, 0x01, 0xff, 0xff, 0x01, 0x00][..],
        &noise[..],
    ] {
        let mut tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // The server may close before everything is written.
        let _ = tcp.write_all(bytes);
        let _ = tcp.shutdown(std::net::Shutdown::Write);
        let _ = tcp.read_to_end(&mut Vec::new());
    }
    // TLS, then not HTTP.
    for bytes in [
        &b"\x00\x01\x02 hello\r\n\r\n"[..],
        &noise[..],
        b"GET / HTTP/9.9\r\n\r\n",
    ] {
        let (status, _, _) = raw(addr, bytes);
        assert!(status == 0 || status == 400, "{status}");
    }
    let (mut client, _) = AttestedClient::connect(addr, &enclave.options()).unwrap();
    client.health().expect("the server still serves");
}

#[test]
fn a_client_that_stops_reading_is_disconnected() {
    let enclave = Enclave::new();
    let mut cfg = config();
    cfg.limits.write_stall_timeout = Duration::from_millis(200);
    let server = spawn(enclave.source(), cfg);
    // Pipelined requests, answers never read: once the buffers are full the server's writes
    // stall, it closes the connection, and our writes fail (rather than time out).
    let mut stream = tls(server.local_addr());
    let batch = "GET /pcrs HTTP/1.1\r\nHost: x\r\n\r\n".repeat(2000);
    let err = loop {
        if let Err(e) = stream.write_all(batch.as_bytes()) {
            break e;
        }
    };
    assert!(
        !matches!(
            err.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "the server kept the stalled connection: {err}"
    );
    let (status, _, _) = get(server.local_addr(), "/health");
    assert_eq!(status, 200);
}

/// The real store with every hash replaced: the client must refuse its proofs.
struct Forged(FileStore);

impl FileProofs for Forged {
    fn lookup(&self, path: &str) -> Result<FileEntry, FileError> {
        let mut entry = self.0.lookup(path)?;
        entry.hash[0] ^= 1;
        Ok(entry)
    }
    fn vrf_public_key(&self) -> vrf::PublicKey {
        self.0.vrf_public_key()
    }
}

#[test]
fn file_proofs_verify_offline_under_the_attested_vrf_key() {
    let enclave = Enclave::new();
    let data = tempfile::tempdir().unwrap();
    let root = data.path().to_str().unwrap().to_string();
    let file = format!("{root}/model weights.bin");
    std::fs::write(&file, b"attested contents").unwrap();
    std::fs::write(format!("{root}/key.secret"), b"not attested").unwrap();
    let ignore = format!("{root}/.attestignore");
    std::fs::write(&ignore, "*.secret\n").unwrap();
    let spec = FileAttestationSpec {
        roots: vec![root.clone()],
        ignore_file: Some(ignore),
        nats: None,
    };
    let store = || FileStore::new(&spec, vrf::SecretKey::from_seed([9; 32])).unwrap();
    let key = vrf::SecretKey::from_seed([9; 32]).public_key();

    let server = AttestationServer::spawn(
        config(),
        Arc::new(enclave.source()),
        Some(Arc::new(store())),
    )
    .unwrap();
    let (mut client, verified) =
        AttestedClient::connect(server.local_addr(), &enclave.options()).unwrap();
    assert_eq!(verified.binding.vrf_public_key, Some(key));

    let proven = client.get_file_proof(&file).unwrap();
    assert_eq!(proven.sha3_512, vrf::file_hash(&file).unwrap());
    let claim = vrf::FileClaim {
        path: file.clone(),
        sha3_512: proven.sha3_512,
    };
    assert_eq!(
        vrf::verify_file(&key, &claim, &proven.proof).unwrap(),
        proven.output
    );

    let status_of = |r: Result<_, ClientError>| match r {
        Err(ClientError::Status { status, .. }) => status,
        other => panic!("{other:?}"),
    };
    assert_eq!(status_of(client.get_file_proof("/etc/passwd")), 403);
    assert_eq!(
        status_of(client.get_file_proof(&format!("{root}/../x"))),
        403
    );
    assert_eq!(
        status_of(client.get_file_proof(&format!("{root}/key.secret"))),
        403
    );
    assert_eq!(
        status_of(client.get_file_proof(&format!("{root}/missing"))),
        404
    );
    assert_eq!(status_of(client.get_file_proof(&root)), 404, "a directory");
    assert_eq!(status_of(client.get_file_proof(&"/a".repeat(3000))), 400);

    let hash = client
        .get(&format!("/files/hash?path={}", file.replace(' ', "%20")))
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&hash.body).unwrap();
    assert_eq!(v["sha3_512"], hex::encode(proven.sha3_512));
    assert_eq!(v["path"], file.as_str());
    let resp = client.get("/files/vrf-key?nonce=abcd").unwrap();
    let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(v["public_key"], hex::encode(key.to_bytes()));
    assert_eq!(v["suite"], "ECVRF-EDWARDS25519-SHA512-TAI");
    let doc = base64ct::Base64::decode_vec(v["document"].as_str().unwrap()).unwrap();
    let mut options = enclave.options().verify;
    options.policy.nonce = Some(vec![0xab, 0xcd]);
    options.policy.user_data = Some(server.binding().encode());
    enclave_attest::verify(&doc, &options).expect("the document binds the VRF key");

    let forged = AttestationServer::spawn(
        config(),
        Arc::new(enclave.source()),
        Some(Arc::new(Forged(store()))),
    )
    .unwrap();
    let (mut client, _) = AttestedClient::connect(forged.local_addr(), &enclave.options()).unwrap();
    let err = client.get_file_proof(&file).unwrap_err();
    assert!(
        matches!(err, ClientError::Proof(vrf::VrfError::VerificationFailed)),
        "{err}"
    );
}
