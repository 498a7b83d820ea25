//! The attestation server's HTTP surface over real TLS: the endpoints and their errors, rate
//! limits, client certificates (mTLS), garbage input and clients that stop reading.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use base64ct::Encoding;
use common::forge::{self, Role, Window};
use common::*;
use der::{Decode, EncodePem};
use enclave_attest::client::{AttestedClient, ClientAuth, ClientError};
use enclave_attest_server::{AttestationServer, RateLimit, Startup};
use p384::pkcs8::EncodePrivateKey;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

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
    let startup = Startup::fetch(&enclave.source(), None).unwrap();
    let err = AttestationServer::spawn(bad, Arc::new(enclave.source()), startup, None).unwrap_err();
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
