//! Publishing to a NATS JetStream key-value bucket and reading it back as a relying party,
//! against a real `nats-server -js` (skipped with a message when it is not installed, a
//! failure in CI). Records carry their generation and epoch and verify with `RecordChecker`; a
//! replayed, foreign-boot, unsigned or forged record does not. TLS and credentials:
//! nats_auth.rs; servers that break the protocol: nats_protocol.rs.

mod common;
mod nats_support;

use std::sync::Arc;

use common::Enclave;
use enclave_attest::files::{Checked, KvEntry, RecordChecker, RecordError};
use enclave_attest::vrf::{file_hash, Epoch, SecretKey, VrfError};
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
