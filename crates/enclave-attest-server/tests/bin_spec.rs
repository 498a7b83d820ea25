//! The enclave-attest binary reads the measured spec.json (serde_json, no YAML parser in the
//! enclave): a canonical JSON spec is understood, anything else is refused with the reason.

use std::process::Command;

use enclave_spec::EnclaveSpec;

fn serve(spec: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_enclave-attest"))
        .arg("serve")
        .arg("--spec")
        .arg(spec)
        .output()
        .expect("runs enclave-attest")
}

#[test]
fn the_server_reads_the_measured_json_spec_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A measured spec without an attestation section: parsed, then refused for what it lacks.
    let json = dir.path().join("spec.json");
    let spec = EnclaveSpec {
        cmd: Some(vec!["/bin/app".into()]),
        ..EnclaveSpec::default()
    };
    std::fs::write(&json, spec.to_canonical_json()).expect("write");
    let o = serve(&json);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("has no attestation.server section"), "{err}");

    // The same spec written as YAML is not JSON: refused, with the parser's position.
    let yaml = dir.path().join("spec.yaml");
    std::fs::write(&yaml, "cmd: [/bin/app]\nattestation: {server: {}}\n").expect("write");
    let o = serve(&yaml);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("parsing the spec") && err.contains("line 1"),
        "{err}"
    );

    // An unknown field in the JSON is refused by name.
    let unknown = dir.path().join("unknown.json");
    std::fs::write(&unknown, br#"{"cmd": ["/bin/app"], "atestation": {}}"#).expect("write");
    let o = serve(&unknown);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("atestation"), "{err}");
}
