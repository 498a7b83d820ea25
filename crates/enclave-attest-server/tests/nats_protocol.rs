//! The NATS client against servers that break the protocol (what a real nats-server never
//! sends: scripted fakes on a local port), each failure a typed error; and the fuzz targets'
//! bodies over seeds. A real server: nats.rs.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};

use enclave_attest::files::fuzzing::record_check;
use enclave_attest::files::{KvEntry, RecordChecker};
use enclave_attest::vrf::{Epoch, SecretKey};
use enclave_attest_server::files::fuzzing::nats_server_bytes;
use enclave_attest_server::files::{
    kv_key, FileRecord, FileStore, NatsError, NatsOptions, NatsPublisher,
};
use enclave_spec::FileAttestationSpec;

fn connect(url: &str, bucket: &str) -> Result<NatsPublisher, NatsError> {
    NatsPublisher::connect(&NatsOptions::new(url, bucket)?)
}

/// A fake server on a free port running `script` on the first connection; returns its URL.
fn fake(script: impl FnOnce(&mut BufReader<TcpStream>, &mut TcpStream) + Send + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        if let Ok((stream, _)) = listener.accept() {
            let mut writer = stream.try_clone().unwrap();
            let mut reader = BufReader::new(stream);
            script(&mut reader, &mut writer);
            // Hold the connection until the client gives up.
            let _ = reader.read_to_end(&mut Vec::new());
        }
    });
    format!("nats://127.0.0.1:{port}")
}

const INFO: &str = "INFO {\"server_id\":\"fake\",\"version\":\"2.9.10\",\"headers\":true,\"max_payload\":1048576,\"jetstream\":true}\r\n";

/// Reads the client's lines until one starts with `prefix`; returns it.
fn expect_line(reader: &mut BufReader<TcpStream>, prefix: &str) -> String {
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return String::new();
        }
        if line.starts_with(prefix) {
            return line;
        }
    }
}

/// Plays INFO and PONG, then answers the first request with `reply(inbox_subject)`.
fn answer_first_request(reply: impl FnOnce(&str) -> Vec<u8> + Send + 'static) -> String {
    fake(move |r, w| {
        w.write_all(INFO.as_bytes()).unwrap();
        expect_line(r, "PING");
        w.write_all(b"PONG\r\n").unwrap();
        let publish = expect_line(r, "PUB ");
        let inbox = publish.split(' ').nth(2).unwrap_or("").to_string();
        w.write_all(&reply(&inbox)).unwrap();
    })
}

#[test]
fn broken_servers_give_typed_errors() {
    let connect = |url: &str| connect(url, "b").unwrap_err();

    let garbage = fake(|_, w| w.write_all(b"HELLO THERE\r\n").unwrap());
    assert!(matches!(connect(&garbage), NatsError::Protocol(_)));

    let bad_json = fake(|_, w| w.write_all(b"INFO {not json\r\n").unwrap());
    assert!(matches!(connect(&bad_json), NatsError::Protocol(_)));

    let endless = fake(|_, w| {
        let _ = w.write_all(b"INFO ");
        let _ = w.write_all(&vec![b'x'; 200 * 1024]);
    });
    assert!(matches!(connect(&endless), NatsError::Protocol(m) if m.contains("longer")));

    let refused = fake(|r, w| {
        w.write_all(INFO.as_bytes()).unwrap();
        expect_line(r, "CONNECT");
        w.write_all(b"-ERR 'Authorization Violation'\r\n").unwrap();
    });
    match connect(&refused) {
        NatsError::AuthRejected(m) => assert_eq!(m, "Authorization Violation"),
        other => panic!("{other:?}"),
    }

    let no_headers = fake(|_, w| w.write_all(b"INFO {\"headers\":false}\r\n").unwrap());
    assert!(matches!(connect(&no_headers), NatsError::Unsupported(_)));
    // A server that requires TLS or credentials the options do not configure: refused before
    // CONNECT, with what to configure.
    let tls = fake(|_, w| {
        w.write_all(b"INFO {\"headers\":true,\"tls_required\":true}\r\n")
            .unwrap()
    });
    let err = connect(&tls);
    assert!(matches!(err, NatsError::TlsRequired), "{err}");
    assert!(err.to_string().contains("files.nats.tls"));
    let auth = fake(|_, w| {
        w.write_all(b"INFO {\"headers\":true,\"auth_required\":true}\r\n")
            .unwrap()
    });
    assert!(matches!(connect(&auth), NatsError::AuthRequired));

    let hangs_up = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("nats://{}", hangs_up.local_addr().unwrap());
    std::thread::spawn(move || drop(hangs_up.accept()));
    assert!(matches!(connect(&url), NatsError::Io(_)));

    let oversize =
        answer_first_request(|inbox| format!("MSG {inbox} 1 999999999\r\n").into_bytes());
    assert!(matches!(connect(&oversize), NatsError::Protocol(m) if m.contains("limit")));

    let bad_size = answer_first_request(|inbox| format!("MSG {inbox} 1 -5\r\n").into_bytes());
    assert!(matches!(connect(&bad_size), NatsError::Protocol(_)));

    let not_json =
        answer_first_request(|inbox| format!("MSG {inbox} 1 5\r\nhello\r\n").into_bytes());
    assert!(matches!(connect(&not_json), NatsError::Protocol(m) if m.contains("JSON")));

    let bad_headers = answer_first_request(|inbox| {
        format!("HMSG {inbox} 1 12 12\r\nHTTP/1.1 200\r\n").into_bytes()
    });
    assert!(matches!(connect(&bad_headers), NatsError::Protocol(_)));

    let no_js = answer_first_request(|inbox| {
        format!("HMSG {inbox} 1 16 16\r\nNATS/1.0 503\r\n\r\n\r\n").into_bytes()
    });
    assert!(matches!(connect(&no_js), NatsError::NoResponders(_)));

    let js_error = answer_first_request(|inbox| {
        let body = r#"{"error":{"code":500,"err_code":10039,"description":"jetstream not enabled for account"}}"#;
        format!("MSG {inbox} 1 {}\r\n{body}\r\n", body.len()).into_bytes()
    });
    assert!(matches!(
        connect(&js_error),
        NatsError::JetStream {
            code: 500,
            err_code: 10039,
            ..
        }
    ));

    let unknown = answer_first_request(|_| b"WHAT\r\n".to_vec());
    assert!(matches!(connect(&unknown), NatsError::Protocol(_)));

    let nobody = TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = format!("nats://{}", nobody.local_addr().unwrap());
    drop(nobody);
    assert!(matches!(connect(&closed), NatsError::Connect { .. }));
    assert!(matches!(connect("http://x"), NatsError::BadUrl { .. }));
}

/// The fuzz targets' bodies (fuzz/fuzz_targets/nats_server.rs, file_record.rs) over seeds:
/// what a server sends, valid and broken, and records, genuine and mangled.
#[test]
fn fuzz_bodies_run_on_seeds() {
    let mut server_seeds: Vec<Vec<u8>> = vec![
        INFO.as_bytes().to_vec(),
        b"INFO {\"tls_required\":true,\"nonce\":\"abc\",\"auth_required\":true}\r\nPING\r\n"
            .to_vec(),
        b"MSG _INBOX.x.1 1 5\r\nhello\r\nPONG\r\n+OK\r\n".to_vec(),
        b"HMSG _INBOX.x.1 1 16 16\r\nNATS/1.0 503\r\n\r\n\r\n".to_vec(),
        b"NATS/1.0 404 Message Not Found\r\nKV-Operation: DEL\r\n\r\n".to_vec(),
        b"-ERR 'Authorization Violation'\r\nMSG a 1 99999999999999999999\r\nHMSG a 1 9 2\r\n"
            .to_vec(),
        vec![0xff; 64],
        Vec::new(),
    ];
    for seed in server_seeds.clone() {
        for cut in [1, seed.len() / 2] {
            server_seeds.push(seed[..cut.min(seed.len())].to_vec());
        }
    }
    for seed in &server_seeds {
        nats_server_bytes(seed);
    }

    // Records proven with the key the fuzz body checks under (seed 7, epoch [1; 32]): a
    // genuine one must pass, mangled ones must not panic.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), b"contents").unwrap();
    let spec = FileAttestationSpec {
        roots: vec![dir.path().to_str().unwrap().into()],
        ignore_file: None,
        nats: None,
    };
    let store = FileStore::new(&spec, SecretKey::from_seed([7; 32]), Epoch([1; 32])).unwrap();
    let path = format!("{}/f", dir.path().display());
    let genuine = FileRecord::put(
        &store.lookup(&path).unwrap(),
        store.epoch(),
        &store.vrf_public_key(),
    );
    let genuine = serde_json::to_vec(&genuine).unwrap();
    let mut checker = RecordChecker::new(store.vrf_public_key(), store.epoch());
    assert!(checker
        .check(&kv_key(&path), &KvEntry::Value(genuine.clone()))
        .is_ok());
    let mut record_seeds = vec![
        genuine.clone(),
        b"{}".to_vec(),
        b"{\"op\":\"delete\",\"path\":\"/x\",\"generation\":1,\"epoch\":\"00\",\"proof\":\"\",\"suite\":\"\",\"vrf_public_key\":\"\"}".to_vec(),
        b"null".to_vec(),
        vec![b'['; 10_000],
    ];
    for i in (0..genuine.len()).step_by(7) {
        let mut flipped = genuine.clone();
        flipped[i] ^= 0x01;
        record_seeds.push(flipped);
        record_seeds.push(genuine[..i].to_vec());
    }
    for seed in &record_seeds {
        record_check(seed);
    }
}
