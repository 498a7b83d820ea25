//! System test of file attestation published to NATS from inside an enclave: a real
//! `nats-server -js` on the host with TLS (a CA made with openssl at test time, its
//! certificate in the measured spec), reached by the enclave's attestation service through
//! named egress. A relying party on the host reads the bucket: the start-up document verifies
//! against the emulation root and the built PCRs, and gives the VRF key and epoch; the record of
//! every attested file then verifies, and so does the new record of a file changed inside the
//! enclave (`cp` in, caught by the fs monitor), at a later generation, after which the old
//! record counts as a replay. Missing prerequisites skip (fail with CI=true).

mod common;

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{assert_ok, example_image, run, stdout};
use enclave_attest::files::{
    kv_key, Checked, KvEntry, RecordChecker, RecordError, STARTUP_DOCUMENT_KEY,
};
use enclave_attest::{Policy, TrustRoot, VerifyOptions};
use enclave_attest_server::files::{NatsOptions, NatsPublisher, NatsTls};

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

/// `nats-server -js` on 127.0.0.1:`port` with TLS from `pki`, storing in `dir`; waits until
/// it accepts.
fn nats_server(dir: &Path, pki: &Path, port: u16, token: &str) -> Child {
    let conf = dir.join("server.conf");
    std::fs::write(
        &conf,
        format!(
            "host: 127.0.0.1\nport: {port}\njetstream {{ store_dir: {:?} }}\n\
             tls {{ cert_file: {:?}, key_file: {:?}, timeout: 5 }}\n\
             authorization {{ token: {token:?} }}\n",
            dir.join("js"),
            pki.join("server.pem"),
            pki.join("server.key"),
        ),
    )
    .unwrap();
    let mut child = Command::new("nats-server")
        .arg("-c")
        .arg(&conf)
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

/// A CA and a server certificate for `nats.test`, made now in `dir` (no key is committed).
fn make_pki(dir: &Path) {
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:nats.test\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    for args in [
        "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem -subj /CN=test-ca -days 2",
        "req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout server.key -out server.csr -subj /CN=nats.test",
        "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile server.ext",
    ] {
        assert_ok(&run(Command::new("openssl")
            .args(args.split(' '))
            .current_dir(dir)));
    }
}

/// Polls the bucket (over TLS) until `key` holds an entry that `accept` takes (the enclave
/// boots and publishes in its own time; the deadline is generous and not a speed test).
fn wait_for<T>(
    options: &NatsOptions,
    key: &str,
    what: &str,
    mut accept: impl FnMut(&KvEntry) -> Option<T>,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let got = NatsPublisher::connect(options)
            .and_then(|mut p| p.get(key))
            .map_err(|e| e.to_string());
        let last = match got {
            Ok(Some(entry)) => match accept(&entry) {
                Some(found) => return found,
                None => format!("{entry:?}").chars().take(200).collect(),
            },
            Ok(None) => "no key".into(),
            Err(e) => e,
        };
        assert!(
            Instant::now() < deadline,
            "the bucket never got {what}; last: {last}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn file_hashes_reach_a_nats_bucket_over_tls_through_egress() {
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
        || common::require(common::have("openssl"), "openssl").is_none()
    {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let Some(oci) = example_image(tmp.path()) else {
        return;
    };
    let pki = tmp.path().join("pki");
    std::fs::create_dir(&pki).unwrap();
    make_pki(&pki);
    let ca = std::fs::read_to_string(pki.join("ca.pem")).unwrap();
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
    // The publisher's credentials: a token made now, handed to the enclave at boot by
    // `run --secret` (never in the image or the measured spec).
    let mut random = [0u8; 16];
    use std::io::Read as _;
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut random)
        .unwrap();
    let token = hex::encode(random);
    let token_file = tmp.path().join("nats.token");
    std::fs::write(&token_file, &token).unwrap();
    env.nats = Some(nats_server(&tmp.path().join("nats"), &pki, port, &token));

    // The enclave reaches the server by name (also the TLS name, the URL's host); the host
    // resolves the name to its loopback, which only the cidr rule allows. The CA certificate
    // is public and part of the measured spec.
    let spec = tmp.path().join("attnats.yaml");
    std::fs::write(
        &spec,
        format!(
            "attestation:\n  server: {{port: 8443}}\n  files:\n    roots: [/app]\n    \
             nats: {{url: \"nats://nats.test:{port}\", bucket: {BUCKET}, tls: {{ca: {}}}, \
             credentials: {{kind: token, file: /run/enclave/secrets/nats-token}}}}\n\
             egress:\n  - {{host: nats.test, port: {port}}}\n  - {{cidr: 127.0.0.1/32, port: {port}}}\n\
             debug: {{cp: true}}\n",
            serde_json::to_string(&ca).unwrap()
        ),
    )
    .unwrap();
    let eif = tmp.path().join("attnats.eif");
    let built = run(common::ctl(&init)
        .args(["build", "-f"])
        .arg(&spec)
        .arg("--from")
        .arg(format!("oci:{}:latest", oci.display()))
        .arg("-o")
        .arg(&eif));
    assert_ok(&built);
    let mut pcrs = Vec::new();
    for line in stdout(&built).lines() {
        if let Some(pcr) = line
            .split_once(char::is_whitespace)
            .and_then(|(k, v)| Some(format!("{}={}", k.strip_prefix("PCR")?, v.trim())))
        {
            pcrs.push(Policy::parse_pcr_arg(&pcr).unwrap());
        }
    }
    assert!(pcrs.len() >= 3, "{pcrs:?}");
    let mut policy = Policy::new(enclave_attest::Expectation::pcrs(pcrs).unwrap());
    // The spec grants debug.cp (the test copies the file out), which PCR31 shows.
    policy.allow_debug_capabilities = true;
    let ctl = || common::vm_ctl(&env.state, &env.engine);
    assert_ok(&run(ctl()
        .args(["run", "-d", "--memory", "256", "--name", "attnats"])
        .args(["--add-host", "nats.test:127.0.0.1"])
        .arg("--secret")
        .arg(format!("nats-token={}", token_file.display()))
        .arg(&eif)));

    // The relying party reads the bucket over TLS, and verifies the start-up document with
    // the emulation root and the PCRs the build printed.
    let without_token = NatsOptions::new(&format!("nats://127.0.0.1:{port}"), BUCKET)
        .unwrap()
        .tls(NatsTls::new(ca.as_bytes(), "nats.test").unwrap());
    assert!(
        NatsPublisher::connect(&without_token).is_err(),
        "the server takes publishers with the token only"
    );
    let options = without_token.auth(enclave_attest_server::files::NatsAuth::Token(token.clone()));
    let document = wait_for(
        &options,
        STARTUP_DOCUMENT_KEY,
        "the start-up document",
        |e| match e {
            KvEntry::Value(v) => Some(v.clone()),
            _ => None,
        },
    );
    let root = std::fs::read(env.state.join("emulation-ca/root.pem")).unwrap();
    let mut verify = VerifyOptions::new(policy);
    verify.roots = TrustRoot::from_pem_or_der(&root).unwrap();
    let (mut checker, _) = RecordChecker::from_startup_document(&document, &verify)
        .expect("the start-up document verifies with the built PCRs");

    // The image's script, as published at start.
    let original = tmp.path().join("hello.sh");
    assert_ok(&run(ctl()
        .args(["cp", "attnats:/app/hello.sh"])
        .arg(&original)));
    let key = kv_key("/app/hello.sh");
    let want = hex::decode(common::sha3_512_hex(&std::fs::read(&original).unwrap())).unwrap();
    let mut check = |entry: &KvEntry| match checker.check(&key, entry) {
        Ok(Checked::File {
            sha3_512,
            generation,
            ..
        }) => Some((sha3_512, generation, entry.clone())),
        Ok(other) => panic!("{other:?}"),
        Err(e) => panic!("a record from the enclave does not verify: {e}"),
    };
    let (hash, first, first_entry) =
        wait_for(&options, &key, "the record of /app/hello.sh", &mut check);
    assert_eq!(hash.to_vec(), want);

    // A changed file, copied in: the monitor publishes its new hash at a later generation.
    let changed = tmp.path().join("changed.sh");
    std::fs::write(&changed, b"#!/bin/sh\necho changed\n").unwrap();
    assert_ok(&run(ctl()
        .arg("cp")
        .arg(&changed)
        .arg("attnats:/app/hello.sh")));
    let want = hex::decode(common::sha3_512_hex(b"#!/bin/sh\necho changed\n")).unwrap();
    let (_, second, _) = wait_for(&options, &key, "the new hash", |entry| {
        check(entry).filter(|(hash, _, _)| hash.to_vec() == want)
    });
    assert!(second > first, "generation {second} after {first}");
    // The old record, were it written back, is a replay to this reader.
    assert!(matches!(
        checker.check(&key, &first_entry),
        Err(RecordError::Replay { .. })
    ));
}
