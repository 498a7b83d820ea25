//! Publishing to a NATS JetStream key-value bucket: against a real `nats-server -js` (skipped
//! with a message when it is not installed, a failure in CI), and against fake servers that
//! break the protocol.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use enclave_attest::files::{kv_key, FileMonitor, FileRecord, FileStore, NatsError, NatsPublisher};
use enclave_attest::vrf::{file_hash, verify_file, FileClaim, Proof, PublicKey, SecretKey};
use enclave_proto::spec::FileAttestationSpec;

/// A `nats-server -js` child on a random port, killed on drop.
struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

/// Starts `nats-server` with JetStream, storing in `store_dir`, on `port` (0: any). `None`
/// (with the reason printed) when it is not installed, unless `CI=true`, where that fails.
fn nats_server(store_dir: &Path, port: u16) -> Option<Server> {
    if Command::new("nats-server")
        .arg("--version")
        .output()
        .is_err()
    {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        assert!(!ci, "nats-server is not installed; CI must run the NATS tests (apt-get install nats-server)");
        eprintln!("SKIPPED: nats-server is not installed (apt-get install nats-server)");
        return None;
    }
    let port_arg = if port == 0 {
        "-1".to_string()
    } else {
        port.to_string()
    };
    let mut child = Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &port_arg, "-sd"])
        .arg(store_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning nats-server");
    // The log names the port it listens on; keep draining it so the server never blocks.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(at) = line.split("Listening for client connections on ").nth(1) {
                let _ = tx.send(
                    at.rsplit(':')
                        .next()
                        .and_then(|p| p.trim().parse::<u16>().ok()),
                );
            }
        }
    });
    let mut server = Server { child, port: 0 };
    server.port = rx
        .recv_timeout(Duration::from_secs(20))
        .ok()
        .flatten()
        .expect("nats-server did not report its client port");
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", server.port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nats-server does not accept connections"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(server)
}

/// Retries `f` until it returns `Some`, failing after a generous deadline (not a speed test).
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `$JS.API.STREAM.INFO.<stream>` over a raw connection, to check what `connect` created.
fn stream_info(port: u16, stream: &str) -> serde_json::Value {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let request = format!(
        "CONNECT {{\"verbose\":false}}\r\nSUB _INBOX.t 1\r\nPUB $JS.API.STREAM.INFO.{stream} _INBOX.t 0\r\n\r\n"
    );
    conn.write_all(request.as_bytes()).unwrap();
    let mut reader = BufReader::new(conn);
    let header = expect_line(&mut reader, "MSG ");
    let len: usize = header
        .trim_end()
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let mut body = vec![0; len];
    reader.read_exact(&mut body).unwrap();
    serde_json::from_slice(&body).unwrap()
}

fn record(reader: &mut NatsPublisher, path: &str) -> Option<FileRecord> {
    let value = reader.get(&kv_key(path)).unwrap()?;
    Some(serde_json::from_slice(&value).unwrap())
}

#[test]
fn bucket_is_created_and_keys_round_trip() {
    let data = tempfile::tempdir().unwrap();
    let Some(server) = nats_server(data.path(), 0) else {
        return;
    };
    let mut kv = NatsPublisher::connect(&server.url(), "hashes").unwrap();
    assert_eq!(kv.bucket(), "hashes");
    // The stream is configured as NATS's own clients configure a KV bucket (ADR-8).
    let config = &stream_info(server.port, "KV_hashes")["config"];
    assert_eq!(config["subjects"], serde_json::json!(["$KV.hashes.>"]));
    for (field, want) in [
        ("max_msgs_per_subject", serde_json::json!(1)),
        ("discard", serde_json::json!("new")),
        ("storage", serde_json::json!("file")),
        ("num_replicas", serde_json::json!(1)),
        ("allow_rollup_hdrs", serde_json::json!(true)),
        ("deny_delete", serde_json::json!(true)),
        ("allow_direct", serde_json::json!(true)),
    ] {
        assert_eq!(config[field], want, "{field} in {config}");
    }
    assert_eq!(kv.get("missing").unwrap(), None);
    let first = kv.put("k1", b"one").unwrap();
    let second = kv.put("k1", b"two").unwrap();
    assert!(second > first);
    assert_eq!(kv.get("k1").unwrap().as_deref(), Some(&b"two"[..]));
    kv.delete("k1").unwrap();
    assert_eq!(kv.get("k1").unwrap(), None);

    // A second publisher finds the bucket instead of creating it again.
    let mut again = NatsPublisher::connect(&server.url(), "hashes").unwrap();
    again.put("k2", b"x").unwrap();
    assert_eq!(kv.get("k2").unwrap().as_deref(), Some(&b"x"[..]));

    assert!(matches!(kv.put("a b", b"x"), Err(NatsError::BadKey(_))));
    assert!(matches!(
        kv.put(&"k".repeat(4000), b"x"),
        Err(NatsError::BadKey(_))
    ));
    assert!(matches!(
        kv.put("big", &vec![0u8; 2 << 20]),
        Err(NatsError::TooLarge { .. })
    ));
    assert!(matches!(
        NatsPublisher::connect(&server.url(), "a.b"),
        Err(NatsError::BadBucket(_))
    ));
}

#[test]
fn changed_file_hash_appears_in_the_bucket() {
    let data = tempfile::tempdir().unwrap();
    let Some(server) = nats_server(data.path(), 0) else {
        return;
    };
    let conf = tempfile::tempdir().unwrap();
    std::fs::write(conf.path().join("ignore"), "*.tmp\n").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(root.join("a.txt"), "version 1").unwrap();
    std::fs::write(root.join("x.tmp"), "scratch").unwrap();
    std::fs::write(root.join("b.txt"), "to be removed").unwrap();
    let spec = FileAttestationSpec {
        roots: vec![root.to_str().unwrap().into()],
        ignore_file: Some(conf.path().join("ignore").to_str().unwrap().into()),
        nats: None,
    };
    let store = Arc::new(FileStore::new(&spec, SecretKey::from_seed([9; 32])).unwrap());
    let publisher = NatsPublisher::connect(&server.url(), "files").unwrap();
    let monitor = FileMonitor::start(store.clone(), Some(publisher)).unwrap();
    let mut reader = NatsPublisher::connect(&server.url(), "files").unwrap();
    let a = format!("{}/a.txt", root.display());
    let b = format!("{}/b.txt", root.display());

    // Every file is published when the monitor starts.
    let v1 = hex::encode(file_hash(root.join("a.txt")).unwrap());
    eventually("the initial record", || {
        record(&mut reader, &a).filter(|r| r.sha3_512 == v1)
    });
    eventually("b.txt", || record(&mut reader, &b));

    std::fs::write(root.join("a.txt"), "version 2").unwrap();
    std::fs::write(root.join("y.tmp"), "scratch").unwrap();
    std::fs::remove_file(root.join("b.txt")).unwrap();
    let v2 = file_hash(root.join("a.txt")).unwrap();
    let rec = eventually("the new hash in the bucket", || {
        record(&mut reader, &a).filter(|r| r.sha3_512 == hex::encode(v2))
    });
    eventually("b.txt's delete marker", || {
        record(&mut reader, &b).is_none().then_some(())
    });
    monitor.stop();

    // The record verifies offline with the key it names, which is the store's.
    let pk = PublicKey::from_bytes(&hex::decode(&rec.vrf_public_key).unwrap()).unwrap();
    assert_eq!(pk, store.vrf_public_key());
    assert_eq!(rec.suite, "ECVRF-EDWARDS25519-SHA512-TAI");
    let proof = Proof::from_bytes(&hex::decode(&rec.proof).unwrap()).unwrap();
    let claim = FileClaim {
        path: a.clone(),
        sha3_512: v2,
    };
    verify_file(&pk, &claim, &proof).unwrap();
    // Ignored files never reach the bucket.
    for tmp in ["x.tmp", "y.tmp"] {
        assert_eq!(
            record(&mut reader, &format!("{}/{tmp}", root.display())),
            None
        );
    }
}

#[test]
fn publisher_reconnects_after_a_server_restart() {
    let data = tempfile::tempdir().unwrap();
    let Some(server) = nats_server(data.path(), 0) else {
        return;
    };
    let port = server.port;
    let mut kv = NatsPublisher::connect(&server.url(), "restart").unwrap();
    kv.put("k", b"before").unwrap();
    drop(server);
    assert!(kv.put("k", b"while down").is_err());
    let server = nats_server(data.path(), port).unwrap();
    // The backoff spaces attempts; the put succeeds once one is allowed.
    eventually("a put after the restart", || kv.put("k", b"after").ok());
    assert_eq!(kv.get("k").unwrap().as_deref(), Some(&b"after"[..]));
    drop(server);
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
    let connect = |url: &str| NatsPublisher::connect(url, "b").unwrap_err();

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
        NatsError::Server(m) => assert_eq!(m, "Authorization Violation"),
        other => panic!("{other:?}"),
    }

    let no_headers = fake(|_, w| w.write_all(b"INFO {\"headers\":false}\r\n").unwrap());
    assert!(matches!(connect(&no_headers), NatsError::Unsupported(_)));
    let tls = fake(|_, w| {
        w.write_all(b"INFO {\"headers\":true,\"tls_required\":true}\r\n")
            .unwrap()
    });
    assert!(matches!(connect(&tls), NatsError::Unsupported("TLS")));

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
