//! `enclave-ctl verify` against real Nitro attestation documents (shared/fixtures/attestation):
//! the verdicts and their exit codes, and the refusal to verify without an expectation.

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
    assert_eq!(v["expected_pcrs"], serde_json::json!([0]));
    assert_eq!(v["debug_mode"], false);
    assert_eq!(v["debug_capabilities"]["state"], "not_measured");
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));

    // A wrong PCR (PCR0 of another image), a nonce it does not carry, and today's clock all
    // fail with exit 3.
    let wrong = format!("0={}", "11".repeat(48));
    for (at, extra) in [
        (Some(PROD_AT), vec!["--pcr", wrong.as_str()]),
        (Some(PROD_AT), vec!["--pcr", &pcr, "--nonce", "0011"]),
        (None, vec!["--pcr", &pcr]),
    ] {
        let mut args = vec![doc];
        if let Some(at) = at {
            args.extend(["--at", at]);
        }
        args.extend(extra.iter().copied());
        let o = verify(&args);
        assert_eq!(o.status.code(), Some(3), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("verification failed"), "{}", stderr(&o));
    }
    assert!(stderr(&verify(&[doc, "--pcr", &pcr])).contains("expired"));
    assert!(stderr(&verify(&[doc, "--at", PROD_AT, "--pcr", &wrong])).contains("PCR0 mismatch"));

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
        "--pcr",
        &pcr,
        "--trust-root",
        other.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
}

#[test]
fn debug_documents_need_allow_debug_mode_and_encodings_are_accepted() {
    // A Nitro debug-mode document: PCR0..2 and PCR8 are zero and pin nothing, so any enclave.
    let debug = fixtures().join("evervault_2022-10-12_debug.cose");
    let debug = debug.to_str().unwrap();
    let at = "2022-10-12T14:00:00Z";
    let o = verify(&[debug, "--at", at, "--any-enclave"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("Nitro debug-mode"), "{}", stderr(&o));
    // --allow-debug is about PCR31's debug capabilities, not Nitro debug mode.
    let o = verify(&[debug, "--at", at, "--any-enclave", "--allow-debug"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("--allow-debug-mode"), "{}", stderr(&o));
    let o = verify(&[debug, "--at", at, "--any-enclave", "--allow-debug-mode"]);
    assert_ok(&o);
    assert!(
        stdout(&o).contains("Nitro debug mode (PCR0..2 zero; allowed)"),
        "{}",
        stdout(&o)
    );
    // Its zero PCR0 pins nothing: refused as no expectation.
    let zero = format!("0={}", "00".repeat(48));
    let o = verify(&[debug, "--at", at, "--pcr", &zero, "--allow-debug-mode"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));

    // Hex on stdin.
    let bytes = std::fs::read(fixtures().join(PROD)).unwrap();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let pcr = format!("0={PROD_PCR0}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_enclave-ctl"))
        .args(["verify", "-", "--at", PROD_AT, "--pcr", &pcr])
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
    let o = verify(&["/nonexistent.cose", "--pcr", &pcr]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let doc = fixtures().join(PROD);
    let o = verify(&[doc.to_str().unwrap(), "--pcr", &pcr, "--nonce", "zz"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let o = verify(&[doc.to_str().unwrap(), "--pcr", "40=00"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
}

/// Manifest PCRs of the production document, as `--pcr N=HEX` values.
fn prod_pcrs() -> Vec<(u8, String)> {
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("manifest.json")).unwrap()).unwrap();
    let entry = manifest
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["file"] == PROD)
        .unwrap();
    entry["pcrs"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.parse().unwrap(), v.as_str().unwrap().to_owned()))
        .collect()
}

#[test]
fn verify_without_an_expectation_is_refused_before_reading_anything() {
    let doc = fixtures().join(PROD);
    let doc = doc.to_str().unwrap();
    let pcrs = prod_pcrs();
    let pcr = |i: u8| {
        let (_, v) = pcrs.iter().find(|(n, _)| *n == i).unwrap();
        format!("{i}={v}")
    };
    let (pcr1, pcr2) = (pcr(1), pcr(2));
    let zero8 = format!("8={}", "00".repeat(48));
    // Nothing, PCR2 alone (true, but it pins no image), PCR1 and PCR2, an all-zero PCR8
    // (every unsigned image): exit 4, naming the three ways out, and no verdict on stdout.
    let cases: [(Vec<&str>, &str); 5] = [
        (vec![doc, "--at", PROD_AT], ""),
        (vec![doc, "--at", PROD_AT, "--json"], ""),
        (vec![doc, "--at", PROD_AT, "--pcr", &pcr2], "(given: PCR2)"),
        (
            vec![doc, "--at", PROD_AT, "--pcr", &pcr1, "--pcr", &pcr2],
            "(given: PCR1, PCR2)",
        ),
        (vec![doc, "--at", PROD_AT, "--pcr", &zero8], "(given: PCR8)"),
    ];
    for (args, given) in cases {
        let o = verify(&args);
        assert_eq!(o.status.code(), Some(4), "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        for option in ["--pcr 0=", "--pcr 8=", "--any-enclave", given] {
            assert!(
                err.contains(option),
                "{args:?}: {option} missing from {err}"
            );
        }
        assert!(err.contains("no expected measurement"), "{err}");
        assert!(stdout(&o).is_empty(), "{}", stdout(&o));
    }
    // The same refusal before any connection with --https, with or without --file: port 1 of
    // loopback has no server, so reaching it would be a connection error (exit 1).
    for extra in [
        vec![],
        vec!["--file", "/app/hello.sh"],
        vec!["--pcr", &pcr2],
    ] {
        let mut args = vec!["--https", "127.0.0.1:1"];
        args.extend(extra.iter().copied());
        let o = verify(&args);
        assert_eq!(o.status.code(), Some(4), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("--any-enclave"), "{}", stderr(&o));
        assert!(!stderr(&o).contains("connection"), "{}", stderr(&o));
    }
    // With an expectation the same --https reaches the network, and fails there.
    let pcr0 = pcr(0);
    let o = verify(&["--https", "127.0.0.1:1", "--pcr", &pcr0]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    // --any-enclave contradicts a pinned PCR: a usage error.
    let o = verify(&[doc, "--at", PROD_AT, "--any-enclave", "--pcr", &pcr0]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn any_enclave_is_accepted_with_a_warning_listing_the_pcrs_to_pin() {
    let doc = fixtures().join(PROD);
    let doc = doc.to_str().unwrap();
    let o = verify(&[doc, "--at", PROD_AT, "--any-enclave"]);
    assert_ok(&o);
    let err = stderr(&o);
    assert!(err.contains("warning: --any-enclave"), "{err}");
    assert!(err.contains("attacker"), "{err}");
    for (i, v) in prod_pcrs() {
        assert!(err.contains(&format!("  --pcr {i}={v}\n")), "PCR{i}: {err}");
    }
    let out = stdout(&o);
    assert!(
        out.contains("expected:     any enclave (no PCR pinned)"),
        "{out}"
    );
    assert!(out.contains("no PCR was pinned (--any-enclave)"), "{out}");
    assert!(!out.contains("the policy holds"), "{out}");
    // The PCRs the warning prints pin the document next time.
    let pinned: Vec<String> = err
        .lines()
        .filter_map(|l| l.trim().strip_prefix("--pcr ").map(str::to_owned))
        .collect();
    assert_eq!(pinned.len(), 4, "{err}");
    let mut args = vec![doc, "--at", PROD_AT];
    for p in &pinned {
        args.extend(["--pcr", p.as_str()]);
    }
    let o = verify(&args);
    assert_ok(&o);
    assert!(stdout(&o).contains("expected:     PCR0, PCR1, PCR2, PCR8"));
    // JSON: the report says nothing was pinned; the warning stays on stderr.
    let o = verify(&[doc, "--at", PROD_AT, "--any-enclave", "--json"]);
    assert_ok(&o);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["expected_pcrs"], serde_json::json!([]));
    assert!(stderr(&o).contains("warning: --any-enclave"));
    // A document that fails gets no warning and no PCRs to pin.
    let o = verify(&[doc, "--any-enclave"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
}
