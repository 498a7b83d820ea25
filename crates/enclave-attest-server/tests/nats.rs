//! Publishing to a NATS JetStream key-value bucket and reading it back as a relying party:
//! against a real `nats-server -js` (skipped with a message when it is not installed, a
//! failure in CI), and against fake servers that break the protocol. Records carry their
//! generation and epoch and verify with `RecordChecker`; a replayed, foreign-boot, unsigned or
//! forged record does not. TLS and credentials: nats_auth.rs.

mod common;
mod nats_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;

use common::Enclave;
use enclave_attest::files::fuzzing::record_check;
use enclave_attest::files::{Checked, KvEntry, RecordChecker, RecordError};
use enclave_attest::vrf::{file_hash, Epoch, SecretKey, VrfError};
use enclave_attest_server::files::fuzzing::nats_server_bytes;
use enclave_attest_server::files::{
    kv_key, FileMonitor, FileRecord, FileStore, NatsError, NatsOptions, NatsPublisher, RecordOp,
    STARTUP_DOCUMENT_KEY,
};
use enclave_attest_server::Startup;
use enclave_spec::FileAttestationSpec;
use nats_support::{eventually, nats_server, raw_publish, stream_info};

fn connect(url: &str, bucket: &str) -> Result<NatsPublisher, NatsError> {
    NatsPublisher::connect(&NatsOptions::new(url, bucket)?)
}

#[test]
fn bucket_is_created_and_keys_round_trip() {
    let data = tempfile::tempdir().unwrap();
    let Some(server) = nats_server(data.path(), 0, "") else {
        return;
    };
    let mut kv = connect(&server.url(), "hashes").unwrap();
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
    assert_eq!(kv.get("k1").unwrap(), Some(KvEntry::Value(b"two".to_vec())));
    // A bare delete marker, written by someone else, reads as what it is.
    raw_publish(server.port, "$KV.hashes.k1", "KV-Operation: DEL", b"");
    assert_eq!(kv.get("k1").unwrap(), Some(KvEntry::Delete));

    // A second publisher finds the bucket instead of creating it again.
    let mut again = connect(&server.url(), "hashes").unwrap();
    again.put("k2", b"x").unwrap();
    assert_eq!(kv.get("k2").unwrap(), Some(KvEntry::Value(b"x".to_vec())));

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
        connect(&server.url(), "a.b"),
        Err(NatsError::BadBucket(_))
    ));
}

/// The value under `path`'s key, when there is one.
fn entry(reader: &mut NatsPublisher, path: &str) -> Option<KvEntry> {
    reader.get(&kv_key(path)).unwrap()
}

fn record_of(entry: &KvEntry) -> FileRecord {
    match entry {
        KvEntry::Value(v) => serde_json::from_slice(v).unwrap(),
        other => panic!("not a value: {other:?}"),
    }
}

#[test]
fn records_carry_generation_and_epoch_and_old_or_forged_ones_are_refused() {
    let data = tempfile::tempdir().unwrap();
    let Some(server) = nats_server(data.path(), 0, "") else {
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
    // One boot, as `enclave-attest serve` starts it: the start-up document binds the VRF key,
    // its hash is the epoch, and it goes to the bucket first.
    let enclave = Enclave::new();
    let seed = [9; 32];
    let startup = Startup::fetch(
        &enclave.source(),
        Some(SecretKey::from_seed(seed).public_key()),
    )
    .unwrap();
    let store =
        Arc::new(FileStore::new(&spec, SecretKey::from_seed(seed), startup.epoch()).unwrap());
    let mut publisher = connect(&server.url(), "files").unwrap();
    publisher.put_startup_document(startup.document()).unwrap();
    let monitor = FileMonitor::start(store.clone(), Some(publisher)).unwrap();
    let mut reader = connect(&server.url(), "files").unwrap();
    let a = format!("{}/a.txt", root.display());
    let b = format!("{}/b.txt", root.display());

    // The relying party: verifies the start-up document from the bucket with the emulation
    // root, and from it knows the VRF key and the epoch.
    let Some(KvEntry::Value(document)) = reader.get(STARTUP_DOCUMENT_KEY).unwrap() else {
        panic!("no start-up document in the bucket");
    };
    let (mut checker, report) =
        RecordChecker::from_startup_document(&document, &enclave.options().verify).unwrap();
    assert_eq!(checker.epoch(), startup.epoch());
    assert_eq!(checker.vrf_public_key(), store.vrf_public_key());
    assert!(
        report.module_id.ends_with("0123456789abcdef"),
        "{}",
        report.module_id
    );

    // Every file is published when the monitor starts, and verifies.
    let v1 = file_hash(root.join("a.txt")).unwrap();
    let first = eventually("the initial record", || {
        entry(&mut reader, &a).filter(|e| record_of(e).sha3_512 == Some(hex::encode(v1)))
    });
    let Checked::File {
        sha3_512,
        generation: g1,
        ..
    } = checker.check(&kv_key(&a), &first).unwrap()
    else {
        panic!("not a file")
    };
    assert_eq!(sha3_512, v1);
    let rec = record_of(&first);
    assert_eq!((rec.op, rec.generation), (RecordOp::Put, g1));
    assert_eq!(rec.epoch, startup.epoch().to_hex());
    assert_eq!(rec.suite, "ECVRF-EDWARDS25519-SHA512-TAI");
    eventually("b.txt", || entry(&mut reader, &b));

    std::fs::write(root.join("a.txt"), "version 2").unwrap();
    std::fs::write(root.join("y.tmp"), "scratch").unwrap();
    std::fs::remove_file(root.join("b.txt")).unwrap();
    let v2 = file_hash(root.join("a.txt")).unwrap();
    let second = eventually("the new hash in the bucket", || {
        entry(&mut reader, &a).filter(|e| record_of(e).sha3_512 == Some(hex::encode(v2)))
    });
    let tombstone = eventually("b.txt's tombstone", || {
        entry(&mut reader, &b).filter(|e| record_of(e).op == RecordOp::Delete)
    });
    monitor.stop();
    let Checked::File { generation: g2, .. } = checker.check(&kv_key(&a), &second).unwrap() else {
        panic!("not a file")
    };
    assert!(g2 > g1, "a change is a later generation");
    assert!(matches!(
        checker.check(&kv_key(&b), &tombstone).unwrap(),
        Checked::Removed { ref path, .. } if *path == b
    ));
    // Ignored files never reach the bucket.
    for tmp in ["x.tmp", "y.tmp"] {
        assert_eq!(
            entry(&mut reader, &format!("{}/{tmp}", root.display())),
            None
        );
    }

    // Replay: the old record of a.txt, written back by anyone with publish rights, is genuine
    // but older than what the reader accepted.
    let KvEntry::Value(old_value) = &first else {
        unreachable!()
    };
    let subject = format!("$KV.files.{}", kv_key(&a));
    raw_publish(server.port, &subject, "", old_value);
    let replayed = entry(&mut reader, &a).unwrap();
    assert_eq!(replayed, first);
    assert!(matches!(
        checker.check(&kv_key(&a), &replayed),
        Err(RecordError::Replay { generation, seen, .. }) if generation == g1 && seen == g2
    ));
    // Re-reading the current record is fine.
    checker.check(&kv_key(&a), &second).unwrap();

    // A forged delete: a bare KV delete marker is refused...
    raw_publish(server.port, &subject, "KV-Operation: DEL", b"");
    let bare = entry(&mut reader, &a).unwrap();
    assert_eq!(bare, KvEntry::Delete);
    assert!(matches!(
        checker.check(&kv_key(&a), &bare),
        Err(RecordError::UnsignedDelete {
            marker: "delete",
            ..
        })
    ));
    // ...and so is a tombstone record with a made-up proof at a higher generation, or the
    // genuine tombstone of b.txt moved onto a.txt's key, or b's tombstone proof relabelled.
    let mut fake = record_of(&tombstone);
    fake.path = a.clone();
    fake.generation = g2 + 100;
    let refused = |checker: &mut RecordChecker, record: &FileRecord| {
        let value = KvEntry::Value(serde_json::to_vec(record).unwrap());
        checker.check(&kv_key(&record.path), &value).unwrap_err()
    };
    assert!(matches!(
        refused(&mut checker, &fake),
        RecordError::Proof {
            source: VrfError::VerificationFailed,
            ..
        }
    ));
    let moved = KvEntry::Value(serde_json::to_vec(&record_of(&tombstone)).unwrap());
    assert!(matches!(
        checker.check(&kv_key(&a), &moved),
        Err(RecordError::WrongKey { .. })
    ));
    // A file proof presented as a tombstone (same path, generation and epoch) fails: the
    // two are proven over different domain strings.
    let mut as_delete = record_of(&second);
    as_delete.op = RecordOp::Delete;
    as_delete.sha3_512 = None;
    assert!(matches!(
        refused(&mut checker, &as_delete),
        RecordError::Proof {
            source: VrfError::VerificationFailed,
            ..
        }
    ));
    assert_eq!(checker.seen(&a), Some(g2), "refusals change nothing");

    // Another boot: a genuine record proven by the same key in another epoch is refused, and
    // so is one under another key.
    let other_epoch = Epoch::of_startup_document(b"a previous boot's start-up document");
    let old_boot = FileStore::new(&spec, SecretKey::from_seed(seed), other_epoch).unwrap();
    let old_entry = old_boot.lookup(&a).unwrap();
    let from_old_boot = FileRecord::put(&old_entry, other_epoch, &old_boot.vrf_public_key());
    assert!(matches!(
        refused(&mut checker, &from_old_boot),
        RecordError::OtherEpoch { record, current, .. }
            if record == other_epoch && current == startup.epoch()
    ));
    let stranger = FileStore::new(&spec, SecretKey::from_seed([1; 32]), startup.epoch()).unwrap();
    let strange = FileRecord::put(
        &stranger.lookup(&a).unwrap(),
        startup.epoch(),
        &stranger.vrf_public_key(),
    );
    assert!(matches!(
        refused(&mut checker, &strange),
        RecordError::OtherKey { .. }
    ));
    // A record naming the right key but proven by another is a failed proof.
    let mut lying = strange.clone();
    lying.vrf_public_key = hex::encode(store.vrf_public_key().to_bytes());
    lying.generation = g2 + 1;
    assert!(matches!(
        refused(&mut checker, &lying),
        RecordError::Proof { .. }
    ));
    assert!(matches!(
        checker.check(STARTUP_DOCUMENT_KEY, &KvEntry::Value(document.clone())),
        Err(RecordError::NotARecord)
    ));
    // The start-up document of another enclave's trust root does not verify at all.
    let stranger_enclave = Enclave::new();
    assert!(matches!(
        RecordChecker::from_startup_document(&document, &stranger_enclave.options().verify),
        Err(RecordError::Document(_))
    ));
}

#[test]
fn publisher_reconnects_after_a_server_restart() {
    let data = tempfile::tempdir().unwrap();
    let Some(server) = nats_server(data.path(), 0, "") else {
        return;
    };
    let port = server.port;
    let mut kv = connect(&server.url(), "restart").unwrap();
    kv.put("k", b"before").unwrap();
    drop(server);
    assert!(kv.put("k", b"while down").is_err());
    let server = nats_server(data.path(), port, "").unwrap();
    // The backoff spaces attempts; the put succeeds once one is allowed.
    eventually("a put after the restart", || kv.put("k", b"after").ok());
    assert_eq!(
        kv.get("k").unwrap(),
        Some(KvEntry::Value(b"after".to_vec()))
    );
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
