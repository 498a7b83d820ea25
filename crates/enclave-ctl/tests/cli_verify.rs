//! `enclave-ctl verify` against real Nitro attestation documents (shared/fixtures/attestation).

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::*;
use serde_json::Value;

fn fixtures() -> PathBuf {
    workspace().join("crates/enclave-attest/testdata")
}

fn verify(args: &[&str]) -> std::process::Output {
    run(Command::new(env!("CARGO_BIN_EXE_enclave-ctl"))
        .arg("verify")
        .args(args))
}

const PROD: &str = "evervault_2022-10-13_prod.cose";
const PROD_AT: &str = "2022-10-13T09:00:00Z";
const PROD_PCR0: &str = "f4d48b81a460c9916d1e685119074bf24660afd3e34fae9fca0a0d28d9d5599936332687e6f66fc890ac8cf150142d8b";

#[test]
fn genuine_document_passes_and_policy_is_enforced() {
    let doc = fixtures().join(PROD);
    let doc = doc.to_str().unwrap();
    let pcr = format!("0={PROD_PCR0}");
    let o = verify(&[doc, "--at", PROD_AT, "--pcr", &pcr, "--json"]);
    assert_ok(&o);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["Verified"], true);
    assert_eq!(v["module_id"], "i-020b6af9246d90e92-enc0183d09086c24190");

    // A wrong PCR, a nonce it does not carry, and today's clock all fail with exit 3.
    let wrong = format!("0={}", "00".repeat(48));
    for extra in [
        vec!["--pcr", wrong.as_str()],
        vec!["--nonce", "0011"],
        vec![],
    ] {
        let mut args = vec![doc];
        if !extra.is_empty() {
            args.extend(["--at", PROD_AT]);
        }
        args.extend(extra.iter().copied());
        let o = verify(&args);
        assert_eq!(o.status.code(), Some(3), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("verification failed"), "{}", stderr(&o));
    }
    assert!(stderr(&verify(&[doc])).contains("expired"));
    assert!(stderr(&verify(&[doc, "--at", PROD_AT, "--pcr", &wrong])).contains("PCR0"));

    // Not trusting the AWS root (another root given instead) fails.
    let tmp = tempfile::tempdir().unwrap();
    let other = tmp.path().join("other.pem");
    let Some(()) = require(have("openssl"), "openssl") else {
        return;
    };
    assert_ok(&run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:secp384r1",
            "-nodes",
            "-keyout",
            "/dev/null",
            "-subj",
            "/CN=aws.nitro-enclaves",
            "-days",
            "1",
            "-out",
        ])
        .arg(&other)));
    let o = verify(&[
        doc,
        "--at",
        PROD_AT,
        "--trust-root",
        other.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
}

#[test]
fn debug_documents_need_allow_debug_and_encodings_are_accepted() {
    let debug = fixtures().join("evervault_2022-10-12_debug.cose");
    let debug = debug.to_str().unwrap();
    let at = "2022-10-12T14:00:00Z";
    let o = verify(&[debug, "--at", at]);
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("debug"), "{}", stderr(&o));
    assert_ok(&verify(&[debug, "--at", at, "--allow-debug"]));

    // Hex on stdin.
    let bytes = std::fs::read(fixtures().join(PROD)).unwrap();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_enclave-ctl"))
        .args(["verify", "-", "--at", PROD_AT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(hex.as_bytes())
        .unwrap();
    assert_ok(&child.wait_with_output().unwrap());

    // Unreadable input and bad arguments: exit 1, not a verification verdict.
    assert_eq!(verify(&["/nonexistent.cose"]).status.code(), Some(1));
    let doc = fixtures().join(PROD);
    let o = verify(&[doc.to_str().unwrap(), "--nonce", "zz"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let o = verify(&[doc.to_str().unwrap(), "--pcr", "40=00"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
}
