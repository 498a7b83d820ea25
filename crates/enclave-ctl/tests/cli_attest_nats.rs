//! System test of file attestation published to NATS from inside an enclave: a real
//! `nats-server -js` on the host, reached by the enclave's attestation service through named
//! egress; the bucket gets the hash of every attested file, and the new hash of a file changed
//! inside the enclave (`cp` in, caught by the fs monitor). Missing prerequisites skip (fail with
//! CI=true).

mod common;

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{assert_ok, example_image, run};
use enclave_attest::files::{kv_key, FileRecord, NatsPublisher};

const BUCKET: &str = "enclave-files";

struct Env {
    state: PathBuf,
    engine: PathBuf,
    nats: Option<Child>,
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = common::vm_ctl(&self.state, &self.engine)
            .args(["rm", "-f", "attnats"])
            .output();
        if let Some(mut child) = self.nats.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `nats-server -js` on 127.0.0.1:`port`, storing in `dir`; waits until it accepts.
fn nats_server(dir: &Path, port: u16) -> Child {
    let mut child = Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning nats-server");
    // Keep draining its log so that it never blocks on a full pipe.
    let log = child.stderr.take().unwrap();
    std::thread::spawn(move || for _ in BufReader::new(log).lines().map_while(Result::ok) {});
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nats-server does not accept connections"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// The bucket's record for `path`, once it has the hash `want` (polled: the enclave boots and
/// publishes in its own time; the deadline is generous and not a speed test).
fn wait_for_record(url: &str, path: &str, want: &str) -> FileRecord {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let got = NatsPublisher::connect(url, BUCKET)
            .and_then(|mut p| p.get(&kv_key(path)))
            .map_err(|e| e.to_string());
        let last = match got {
            Ok(Some(value)) => {
                let record: FileRecord = serde_json::from_slice(&value).unwrap();
                if record.sha3_512 == want {
                    return record;
                }
                format!("hash {}", record.sha3_512)
            }
            Ok(None) => "no key".into(),
            Err(e) => e,
        };
        assert!(
            Instant::now() < deadline,
            "the bucket never got {want} for {path}; last: {last}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn file_hashes_reach_a_nats_bucket_through_egress() {
    let Some((engine, init)) = common::vm_prerequisites() else {
        return;
    };
    let attest_bin = init.with_file_name("enclave-attest");
    if common::require(
        attest_bin.is_file(),
        "the static enclave-attest (scripts/build-init.sh)",
    )
    .is_none()
        || common::require(common::have("nats-server"), "nats-server (apt nats-server)").is_none()
    {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let Some(oci) = example_image(tmp.path()) else {
        return;
    };
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut env = Env {
        state: tmp.path().join("state"),
        engine,
        nats: None,
    };
    std::fs::create_dir(tmp.path().join("nats")).unwrap();
    env.nats = Some(nats_server(&tmp.path().join("nats"), port));
    let url = format!("nats://127.0.0.1:{port}");

    // The enclave reaches the server by name; the host resolves the name to its loopback, which
    // only the cidr rule allows.
    let spec = tmp.path().join("attnats.yaml");
    std::fs::write(
        &spec,
        format!(
            "attestation:\n  server: {{port: 8443}}\n  files:\n    roots: [/app]\n    \
             nats: {{url: \"nats://nats.test:{port}\", bucket: {BUCKET}}}\negress:\n  \
             - {{host: nats.test, port: {port}}}\n  - {{cidr: 127.0.0.1/32, port: {port}}}\n\
             debug: {{cp: true}}\n"
        ),
    )
    .unwrap();
    let eif = tmp.path().join("attnats.eif");
    assert_ok(&run(common::ctl(&init)
        .args(["build", "--quiet", "-f"])
        .arg(&spec)
        .arg("--from")
        .arg(format!("oci:{}:latest", oci.display()))
        .arg("-o")
        .arg(&eif)));
    let ctl = || common::vm_ctl(&env.state, &env.engine);
    assert_ok(&run(ctl()
        .args(["run", "-d", "--memory", "256", "--name", "attnats"])
        .args(["--add-host", "nats.test:127.0.0.1"])
        .arg(&eif)));

    // The image's script, as published at start.
    let original = tmp.path().join("hello.sh");
    assert_ok(&run(ctl()
        .args(["cp", "attnats:/app/hello.sh"])
        .arg(&original)));
    let want = common::sha3_512_hex(&std::fs::read(&original).unwrap());
    let record = wait_for_record(&url, "/app/hello.sh", &want);
    assert_eq!(record.path, "/app/hello.sh");
    assert_eq!(record.suite, "ECVRF-EDWARDS25519-SHA512-TAI");

    // A new file and a changed one, copied in: the monitor publishes their new hashes.
    let changed = tmp.path().join("changed.sh");
    std::fs::write(&changed, b"#!/bin/sh\necho changed\n").unwrap();
    assert_ok(&run(ctl()
        .arg("cp")
        .arg(&changed)
        .arg("attnats:/app/hello.sh")));
    let want = common::sha3_512_hex(b"#!/bin/sh\necho changed\n");
    let updated = wait_for_record(&url, "/app/hello.sh", &want);
    assert_ne!(
        updated.proof, record.proof,
        "a new proof for the new content"
    );
}
