//! The host as a man in the middle, end to end on the emulated backend (issue 10, item 1).
//!
//! Two enclaves run real attestation servers: A, the one the client means (it pins A's PCR0),
//! and B, built from another image. The host then tries to pass for A:
//!
//! - its own TLS server on a port of the host, which terminates the client's TLS with the
//!   host's key and answers `/attestation` with what it can get from A: through the control
//!   channel (as root, with the supervisor's key) a document binding the host's key is refused
//!   without `debug.attest`, and a nonce-only document binds no key; or relayed from A's own
//!   attestation server, a document that binds A's TLS key, not the host's;
//! - B's genuine server under the right trust root.
//!
//! `enclave-ctl verify --https` with A's PCR0 must refuse all of them and accept A.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::enclaves::Env;
use common::net::free_port;
use common::{assert_ok, example_image, run, stderr, stdout};

/// Builds an image with an attestation server on 8443; returns it and its `0=HEX` PCR0.
fn build(init: &Path, oci: &Path, dir: &Path, name: &str, extra: &str) -> (PathBuf, String) {
    let spec = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &spec,
        format!("attestation:\n  server: {{port: 8443}}\ningress:\n  - {{port: 8443}}\n{extra}"),
    )
    .unwrap();
    let eif = dir.join(format!("{name}.eif"));
    let built = run(common::ctl(init)
        .args(["build", "-f"])
        .arg(&spec)
        .arg("--from")
        .arg(format!("oci:{}:latest", oci.display()))
        .arg("-o")
        .arg(&eif));
    assert_ok(&built);
    let pcr0 = stdout(&built)
        .lines()
        .find_map(|l| l.strip_prefix("PCR0").map(|v| format!("0={}", v.trim())))
        .expect("build prints PCR0");
    (eif, pcr0)
}

/// A TLS identity of the host's own: a P-256 key and a self-signed certificate made with
/// openssl now (nothing committed).
fn host_identity(dir: &Path) -> (rustls::ServerConfig, PathBuf) {
    let key = dir.join("host.key");
    let cert = dir.join("host.pem");
    let der = dir.join("host-pub.der");
    let o = run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=attested.enclave"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert));
    assert_ok(&o);
    let o = run(Command::new("openssl")
        .args(["pkey", "-pubout", "-outform", "DER", "-in"])
        .arg(&key)
        .arg("-out")
        .arg(&der));
    assert_ok(&o);
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = vec![CertificateDer::from_pem_file(&cert).unwrap()];
    let key = PrivateKeyDer::from_pem_file(&key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    (config, der)
}

/// The host's TLS server: answers one `/attestation?nonce=` request per connection with the
/// document `fetch(nonce)` gets.
fn host_server(
    config: rustls::ServerConfig,
    fetch: impl Fn(&str) -> Vec<u8> + Send + 'static,
) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = Arc::new(config);
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let conn = rustls::ServerConnection::new(config.clone()).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            let mut line = String::new();
            if BufReader::new(&mut tls).read_line(&mut line).is_err() {
                continue;
            }
            let nonce = line
                .split_whitespace()
                .nth(1)
                .and_then(|t| t.split("nonce=").nth(1))
                .map(|n| n.split('&').next().unwrap_or_default().to_owned())
                .unwrap_or_default();
            let doc = fetch(&nonce);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/cbor\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                doc.len()
            );
            let _ = tls.write_all(head.as_bytes());
            let _ = tls.write_all(&doc);
            let _ = tls.flush();
        }
    });
    port
}

#[test]
fn the_host_cannot_pass_for_the_enclave_nor_can_another_enclave() {
    let Some((engine, init)) = common::vm_prerequisites() else {
        return;
    };
    let attest_bin = init.with_file_name("enclave-attest");
    if common::require(attest_bin.is_file(), "the static enclave-attest").is_none()
        || common::require(common::have("openssl"), "openssl").is_none()
    {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let Some(oci) = example_image(tmp.path()) else {
        return;
    };
    let (eif_a, pcr0_a) = build(&init, &oci, tmp.path(), "a", "");
    let (eif_b, pcr0_b) = build(&init, &oci, tmp.path(), "b", "env: {IMAGE: b}\n");
    assert_ne!(pcr0_a, pcr0_b, "another image, another PCR0");

    let env = Env {
        state: tmp.path().join("state"),
        engine,
        names: &["mitm-a", "mitm-b"],
    };
    let (port_a, port_b) = (free_port(), free_port());
    for (name, eif, port) in [("mitm-a", &eif_a, port_a), ("mitm-b", &eif_b, port_b)] {
        let o = run(env
            .ctl()
            .args(["run", "-d", "--memory", "256", "--name", name, "-p"])
            .arg(format!("{port}:8443"))
            .arg(eif));
        assert_ok(&o);
    }
    let root = env.state.join("emulation-ca/root.pem");
    let verify = |port: u16| {
        run(env
            .ctl()
            .args(["verify", "--https", &format!("127.0.0.1:{port}")])
            .arg("--trust-root")
            .arg(&root)
            .args(["--pcr", &pcr0_a]))
    };

    // The genuine server verifies (once it is up: it starts after the heartbeat).
    let mut up = None;
    for _ in 0..120 {
        let o = verify(port_a);
        if o.status.success() {
            up = Some(o);
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let o = up.unwrap_or_else(|| panic!("A's attestation server never verified"));
    assert!(stderr(&o).contains("attested TLS"), "{}", stderr(&o));

    let (config, host_key) = host_identity(tmp.path());

    // 1. Through the control channel, as root with the supervisor's key.
    let refusals = Arc::new(Mutex::new(Vec::new()));
    let port_m = {
        // The server thread outlives the test's scope: it gets the paths, not `env` (whose
        // drop removes the enclaves).
        let (state, engine) = (env.state.clone(), env.engine.clone());
        let ctl = move || common::vm_ctl(&state, &engine);
        let (refusals, host_key) = (refusals.clone(), host_key.clone());
        let doc_path = tmp.path().join("host-doc.cose");
        host_server(config.clone(), move |nonce| {
            let keyed = run(ctl()
                .args(["attest", "mitm-a", "--nonce", nonce, "--public-key"])
                .arg(&host_key)
                .arg("-o")
                .arg(&doc_path));
            refusals
                .lock()
                .unwrap()
                .push((keyed.status.code(), stderr(&keyed)));
            let plain = run(ctl()
                .args(["attest", "mitm-a", "--nonce", nonce, "-o"])
                .arg(&doc_path));
            assert_ok(&plain);
            std::fs::read(&doc_path).unwrap()
        })
    };
    let o = verify(port_m);
    assert_eq!(o.status.code(), Some(3), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stderr(&o).contains("public_key"),
        "the nonce-only document binds no key of the host's: {}",
        stderr(&o)
    );
    let refusals = refusals.lock().unwrap().clone();
    assert_eq!(refusals.len(), 1, "one request reached the host's server");
    let (code, message) = &refusals[0];
    assert_ne!(
        *code,
        Some(0),
        "a document binding the host's key was issued"
    );
    assert!(message.contains("debug.attest"), "{message}");

    // 2. Relaying A's own attestation server: its document binds A's TLS key.
    let port_r = host_server(config, move |nonce| {
        let mut tcp = TcpStream::connect(("127.0.0.1", port_a)).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny))
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("attested.enclave").unwrap();
        let conn = rustls::ClientConnection::new(Arc::new(client), name).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, &mut tcp);
        write!(
            tls,
            "GET /attestation?nonce={nonce} HTTP/1.1\r\nHost: attested.enclave\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut resp = Vec::new();
        let _ = std::io::Read::read_to_end(&mut tls, &mut resp);
        let body = resp
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|i| resp[i + 4..].to_vec())
            .unwrap_or_default();
        assert!(!body.is_empty(), "A answered the relay");
        body
    });
    let o = verify(port_r);
    assert_eq!(o.status.code(), Some(3), "{}{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains("public_key"), "{}", stderr(&o));

    // 3. Another enclave, genuine, under the same root: not A. Its server is up once `verify`
    // gets a document from it and refuses it (3) rather than reaching nothing (1).
    let mut refused = None;
    for _ in 0..120 {
        let o = verify(port_b);
        if o.status.code() != Some(1) {
            refused = Some(o);
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let o = refused.unwrap_or_else(|| panic!("B's attestation server never answered"));
    assert_eq!(o.status.code(), Some(3), "{}{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains("PCR0 mismatch"), "{}", stderr(&o));

    // And A still verifies.
    assert_ok(&verify(port_a));
}

/// The relay trusts whatever A presents (it only wants A's document).
#[derive(Debug)]
struct AcceptAny;

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
