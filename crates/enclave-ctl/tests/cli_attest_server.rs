//! System test of the in-enclave attestation server on the emulated backend: an image with
//! `attestation.server` and file attestation, run in a real QEMU microvm with its HTTPS port
//! published; `enclave-ctl verify --https` fetches a document for a fresh nonce over attested
//! TLS and checks it against the emulation root and the PCRs `build` printed. Missing
//! prerequisites skip (fail with CI=true).

mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{assert_ok, example_image, run, stderr, stdout};

struct Env {
    state: PathBuf,
    engine: PathBuf,
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = self.ctl().args(["rm", "-f", "attsrv"]).output();
    }
}

impl Env {
    fn ctl(&self) -> Command {
        common::vm_ctl(&self.state, &self.engine)
    }
}

#[test]
fn the_attestation_server_is_verified_over_attested_tls() {
    let Some((engine, init)) = common::vm_prerequisites() else {
        return;
    };
    let attest_bin = init.with_file_name("enclave-attest");
    if common::require(
        attest_bin.is_file(),
        "the static enclave-attest (scripts/build-init.sh)",
    )
    .is_none()
    {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let Some(oci) = example_image(tmp.path()) else {
        return;
    };
    let spec = tmp.path().join("attsrv.yaml");
    std::fs::write(
        &spec,
        "attestation:\n  server: {port: 8443}\n  files: {roots: [/app]}\ningress:\n  - {port: 8443}\ndebug: {cp: true}\n",
    )
    .unwrap();
    let eif = tmp.path().join("attsrv.eif");
    let built = run(common::ctl(&init)
        .args(["build", "-f"])
        .arg(&spec)
        .arg("--from")
        .arg(format!("oci:{}:latest", oci.display()))
        .arg("-o")
        .arg(&eif));
    assert_ok(&built);
    let pcrs: Vec<String> = stdout(&built)
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(char::is_whitespace)?;
            Some(format!("{}={}", k.strip_prefix("PCR")?, v.trim()))
        })
        .collect();
    assert!(pcrs.len() >= 3, "{pcrs:?}");

    let env = Env {
        state: tmp.path().join("state"),
        engine,
    };
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let o = run(env
        .ctl()
        .args(["run", "-d", "--memory", "256", "--name", "attsrv", "-p"])
        .arg(format!("{port}:8443"))
        .arg(&eif));
    assert_ok(&o);
    let root = env.state.join("emulation-ca/root.pem");
    let addr = format!("127.0.0.1:{port}");
    let verify = |extra: &[&str]| {
        let mut cmd = env.ctl();
        cmd.args(["verify", "--https", &addr]).args(extra);
        run(&mut cmd)
    };
    // The spec grants debug.cp (used below to copy the file out), which PCR31 shows: accepted
    // knowingly.
    let mut with_root = vec!["--trust-root", root.to_str().unwrap(), "--allow-debug"];
    for p in &pcrs {
        with_root.extend(["--pcr", p]);
    }
    let pcr0 = pcrs.iter().find(|p| p.starts_with("0=")).unwrap();
    let doc = tmp.path().join("https.cose");
    let mut save = with_root.clone();
    save.extend(["-o", doc.to_str().unwrap(), "--file", "/app/hello.sh"]);

    // The server starts after the heartbeat (it first fetches its own binding document).
    let mut last = String::new();
    let mut ok = None;
    for _ in 0..90 {
        let o = verify(&save);
        if o.status.success() {
            ok = Some(o);
            break;
        }
        last = stderr(&o);
        std::thread::sleep(Duration::from_millis(500));
    }
    let o = ok.unwrap_or_else(|| panic!("the attestation server never verified: {last}"));
    assert!(
        stdout(&o).contains("OK: the document is genuine"),
        "{}",
        stdout(&o)
    );
    assert!(stderr(&o).contains("attested TLS"), "{}", stderr(&o));
    // The file's hash, proven under the attested VRF key, is the file's real SHA3-512.
    let copied = tmp.path().join("hello.sh");
    let copy = run(env.ctl().args(["cp", "attsrv:/app/hello.sh"]).arg(&copied));
    assert_ok(&copy);
    let want = common::sha3_512_hex(&std::fs::read(&copied).unwrap());
    assert!(
        stderr(&o).contains(&format!("file /app/hello.sh: sha3-512 {want}")),
        "{}",
        stderr(&o)
    );
    // A path outside the attested roots is refused.
    let mut outside = with_root.clone();
    outside.extend(["--file", "/etc/passwd"]);
    let o = verify(&outside);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("/etc/passwd"), "{}", stderr(&o));
    // The saved document verifies offline too.
    let offline = run(env.ctl().arg("verify").arg(&doc).args(&with_root));
    assert_ok(&offline);

    // PCR0 of another image: exit 3, naming it.
    let bad = format!("0={}", "11".repeat(48));
    let root_s = root.to_str().unwrap();
    let o = verify(&["--trust-root", root_s, "--allow-debug", "--pcr", &bad]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("PCR0 mismatch"), "{}", stderr(&o));
    // Without the emulation root: refused.
    let o = verify(&["--pcr", pcr0, "--allow-debug"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("emulation root"), "{}", stderr(&o));
    // Without an expectation: refused before connecting (exit 4); with --any-enclave accepted,
    // with a warning that prints the PCR0 `build` printed.
    let o = verify(&["--trust-root", root_s, "--allow-debug"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("--any-enclave"), "{}", stderr(&o));
    let o = verify(&["--trust-root", root_s, "--allow-debug", "--any-enclave"]);
    assert_ok(&o);
    assert!(
        stderr(&o).contains("warning: --any-enclave"),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains(&format!("  --pcr {pcr0}\n")),
        "{}",
        stderr(&o)
    );
}
