//! End-to-end tests of `enclave-ctl sign`: an unsigned build signed afterwards is the build
//! signed at build time (same PCR8, same bytes), signing is reproducible and atomic, bad input
//! is refused with a clear error, and a signed EIF boots on the emulated backend.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::enclaves::Env;
use common::*;
use serde_json::Value;

/// A dir: rootfs with one script to run, and a spec naming it; returns the spec.
fn rootfs(tmp: &Path) -> PathBuf {
    let root = tmp.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::write(root.join("bin/app"), b"#!/bin/sh\necho app\n").unwrap();
    let spec = tmp.join("enclave.yaml");
    std::fs::write(&spec, "from: dir:rootfs\ncmd: [/bin/app]\n").unwrap();
    spec
}

fn build(init: &Path, kernel: &Path, tmp: &Path, out: &Path, extra: &[&str]) -> Value {
    let o = run(ctl(init)
        .args(["build", "--quiet", "--json", "-f"])
        .arg(rootfs(tmp))
        .arg("-o")
        .arg(out)
        .arg("--kernel-dir")
        .arg(kernel)
        .args(extra));
    assert_ok(&o);
    serde_json::from_slice(&o.stdout).unwrap()
}

/// A self-signed certificate and its key, made now with the real openssl (`newkey` e.g. `ec`
/// with P-384 options, or `rsa:2048`); returns (certificate, key).
fn keys(dir: &Path, name: &str, newkey: &[&str]) -> (PathBuf, PathBuf) {
    let (cert, key) = (
        dir.join(format!("{name}-cert.pem")),
        dir.join(format!("{name}-key.pem")),
    );
    let mut cmd = Command::new("openssl");
    cmd.args(["req", "-x509", "-newkey"])
        .args(newkey)
        .args(["-nodes", "-subj", &format!("/CN={name}"), "-days", "30"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert);
    assert_ok(&run(&mut cmd));
    (cert, key)
}

const P384: &[&str] = &["ec", "-pkeyopt", "ec_paramgen_curve:secp384r1"];

fn sign(
    init: &Path,
    eif: &Path,
    (cert, key): &(PathBuf, PathBuf),
    out: Option<&Path>,
) -> std::process::Output {
    let mut cmd = ctl(init);
    cmd.args(["sign", "--json"])
        .arg(eif)
        .arg("--signing-certificate")
        .arg(cert)
        .arg("--private-key")
        .arg(key);
    if let Some(out) = out {
        cmd.arg("-o").arg(out);
    }
    run(&mut cmd)
}

fn json(o: &std::process::Output) -> Value {
    assert_ok(o);
    serde_json::from_slice(&o.stdout).unwrap()
}

fn sign_args((cert, key): &(PathBuf, PathBuf)) -> [&str; 4] {
    [
        "--signing-certificate",
        cert.to_str().unwrap(),
        "--private-key",
        key.to_str().unwrap(),
    ]
}

fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".enclave-ctl-"))
        .collect()
}

#[test]
fn sign_gives_the_pcr8_and_bytes_of_a_build_signed_at_build_time() {
    let Some((kernel, init)) = build_inputs() else {
        return;
    };
    let Some(()) = require(have("openssl"), "openssl") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let a = keys(dir, "a", P384);
    let b = keys(dir, "b", P384);

    let unsigned = dir.join("unsigned.eif");
    let plain = build(&init, &kernel, dir, &unsigned, &[]);
    assert!(plain["Measurements"].get("PCR8").is_none(), "{plain:#}");
    let at_build = dir.join("at-build.eif");
    let built = build(&init, &kernel, dir, &at_build, &sign_args(&a));

    // Two runs of sign: the build-time measurements (PCR8 included), identical bytes, the same
    // bytes as the build signed at build time; the input is left alone.
    let unsigned_sha = sha256(&unsigned);
    let (one, two) = (dir.join("one.eif"), dir.join("two.eif"));
    let signed = json(&sign(&init, &unsigned, &a, Some(&one)));
    assert_eq!(signed["Measurements"], built["Measurements"]);
    json(&sign(&init, &unsigned, &a, Some(&two)));
    assert_eq!(sha256(&one), sha256(&two));
    assert_eq!(sha256(&one), sha256(&at_build));
    assert_eq!(sha256(&unsigned), unsigned_sha);

    // measure and inspect of the signed EIF: the build's PCRs, a valid signature by `a`.
    let measured = json(&run(ctl(&init).args(["measure", "--json"]).arg(&one)));
    assert_eq!(measured["Measurements"], built["Measurements"]);
    let pcr8_of_a = json(&run(ctl(&init)
        .args(["measure", "--json", "--signing-certificate"])
        .arg(&a.0)));
    assert_eq!(pcr8_of_a["PCR8"], built["Measurements"]["PCR8"]);
    let inspected = json(&run(ctl(&init).args(["inspect", "--json"]).arg(&one)));
    assert_eq!(inspected["IsSigned"], true);
    assert_eq!(inspected["SignatureCheck"], true);
    assert_eq!(inspected["CheckCRC"], true);

    // Re-signing with `b` replaces the signature: PCR8 is b's, PCR0-2 unchanged.
    let by_b = dir.join("by-b.eif");
    let resigned = json(&sign(&init, &one, &b, Some(&by_b)));
    let pcr8_of_b = json(&run(ctl(&init)
        .args(["measure", "--json", "--signing-certificate"])
        .arg(&b.0)));
    assert_eq!(resigned["Measurements"]["PCR8"], pcr8_of_b["PCR8"]);
    assert_ne!(
        resigned["Measurements"]["PCR8"],
        built["Measurements"]["PCR8"]
    );
    for pcr in ["PCR0", "PCR1", "PCR2"] {
        assert_eq!(resigned["Measurements"][pcr], plain["Measurements"][pcr]);
    }
    let inspected = json(&run(ctl(&init).args(["inspect", "--json"]).arg(&by_b)));
    assert_eq!(inspected["SignatureCheck"], true);

    // Without -o the EIF is signed in place.
    let in_place = dir.join("in-place.eif");
    std::fs::copy(&unsigned, &in_place).unwrap();
    let o = run(ctl(&init).arg("sign").arg(&in_place).args(sign_args(&a)));
    assert_ok(&o);
    assert!(stdout(&o).contains("PCR8"), "{}", stdout(&o));
    assert_eq!(sha256(&in_place), sha256(&at_build));
    assert!(temp_files(dir).is_empty(), "{:?}", temp_files(dir));
}

#[test]
fn sign_refuses_bad_keys_and_corrupt_eifs_leaving_nothing() {
    let Some((kernel, init)) = build_inputs() else {
        return;
    };
    let Some(()) = require(have("openssl"), "openssl") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let a = keys(dir, "a", P384);
    let b = keys(dir, "b", P384);
    let rsa = keys(dir, "rsa", &["rsa:2048"]);
    let unsigned = dir.join("unsigned.eif");
    build(&init, &kernel, dir, &unsigned, &[]);
    let original = sha256(&unsigned);
    let out = dir.join("out.eif");

    let refused = |eif: &Path, keys: &(PathBuf, PathBuf), out: Option<&Path>, says: &str| {
        let o = sign(&init, eif, keys, out);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert!(
            stderr(&o).contains(says),
            "expected {says:?} in: {}",
            stderr(&o)
        );
        assert!(o.stdout.is_empty(), "{}", stdout(&o));
    };
    // A key that is not the certificate's, and a key of the wrong type.
    refused(
        &unsigned,
        &(a.0.clone(), b.1.clone()),
        Some(&out),
        "does not match the certificate",
    );
    refused(&unsigned, &rsa, Some(&out), "P-384");
    // A corrupt EIF (one flipped bit in the app ramdisk), to another file and in place.
    let corrupt = dir.join("corrupt.eif");
    let mut bytes = std::fs::read(&unsigned).unwrap();
    let at = bytes.len() - 100;
    bytes[at] ^= 0x01;
    std::fs::write(&corrupt, &bytes).unwrap();
    refused(&corrupt, &a, Some(&out), "CRC check failed");
    refused(&corrupt, &a, None, "CRC check failed");
    assert_eq!(std::fs::read(&corrupt).unwrap(), bytes);
    // A truncated EIF, something that is not an EIF, a missing file.
    let truncated = dir.join("truncated.eif");
    std::fs::write(&truncated, &std::fs::read(&unsigned).unwrap()[..4096]).unwrap();
    refused(&truncated, &a, Some(&out), "not a valid EIF");
    refused(&a.0, &a, Some(&out), "not a valid EIF");
    refused(&dir.join("missing.eif"), &a, Some(&out), "missing.eif");
    // An output directory that does not exist.
    refused(
        &unsigned,
        &a,
        Some(&dir.join("no/such/dir/out.eif")),
        "temporary file",
    );

    assert!(!out.exists());
    assert_eq!(sha256(&unsigned), original);
    assert!(temp_files(dir).is_empty(), "{:?}", temp_files(dir));
}

#[test]
fn a_signed_eif_boots_on_the_emulated_backend() {
    let Some((engine, init)) = vm_prerequisites() else {
        return;
    };
    let Some(()) = require(have("openssl"), "openssl") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let Some(oci) = example_image(tmp.path()) else {
        return;
    };
    let a = keys(tmp.path(), "a", P384);
    let eif = tmp.path().join("hello.eif");
    assert_ok(&run(ctl(&init)
        .args(["build", "--quiet", "-f"])
        .arg(workspace().join("examples/hello/enclave.yaml"))
        .arg("--from")
        .arg(format!("oci:{}:latest", oci.display()))
        .arg("-o")
        .arg(&eif)));
    let signed = json(&sign(&init, &eif, &a, None));
    let pcr8 = signed["Measurements"]["PCR8"].clone();
    assert!(pcr8.is_string(), "{signed:#}");

    let env = Env {
        state: tmp.path().join("state"),
        engine,
        names: &["signed"],
    };
    env.ok(&[
        "run",
        "-d",
        "--cpus",
        "1",
        "--memory",
        "128",
        "--boot-timeout",
        "120",
        "--name",
        "signed",
        eif.to_str().unwrap(),
    ]);
    let record = env.wait_for("signed", "running", Duration::from_secs(120), |v| {
        v["status"] == "running"
    });
    assert_eq!(record["measurements"]["PCR8"], pcr8, "{record:#}");
    assert_eq!(
        record["measurements"]["PCR0"],
        signed["Measurements"]["PCR0"]
    );
}
