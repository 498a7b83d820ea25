//! `enclave-ctl verify` and PCR31, the debug-capability marker enclave-init records at boot:
//! documents of the Nitro format signed under an emulation root made at test time, whose PCR31
//! is the marker of `debug.exec` (as `enclave_proto::debug_pcr::debug_pcr_value` computes it, the
//! value enclave-init leaves there), an unknown value, or zero. Refused (exit 3) unless
//! `--allow-debug`, and shown in the report in every case.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use enclave_nsm::emulated::{DocumentFields, EmulationCa};
use enclave_proto::debug_pcr::debug_pcr_value;
use enclave_proto::wire::Capability;
use serde_json::Value;

const PCR0: [u8; 48] = [0xa0; 48];

/// A temporary emulation root and documents signed under it.
struct Docs {
    dir: tempfile::TempDir,
    ca: EmulationCa,
}

impl Docs {
    fn new() -> Docs {
        let dir = tempfile::tempdir().unwrap();
        let ca = EmulationCa::load_or_create(&dir.path().join("emulation-ca")).unwrap();
        Docs { dir, ca }
    }

    /// A document of an image measuring PCR0, whose PCR31 is `pcr31` (absent for `None`).
    fn write(&self, name: &str, pcr31: Option<[u8; 48]>) -> PathBuf {
        let mut pcrs: BTreeMap<u8, Vec<u8>> = (0..16u8).map(|i| (i, vec![0; 48])).collect();
        pcrs.insert(0, PCR0.to_vec());
        pcrs.insert(1, vec![0xa1; 48]);
        pcrs.insert(2, vec![0xa2; 48]);
        if let Some(v) = pcr31 {
            pcrs.insert(31, v.to_vec());
        }
        let fields = DocumentFields {
            module_id: "i-0123456789abcdef-enc0123456789abcdef".into(),
            pcrs,
            public_key: None,
            user_data: None,
            nonce: None,
        };
        let path = self.dir.path().join(name);
        std::fs::write(&path, fields.sign(&self.ca).unwrap()).unwrap();
        path
    }

    fn root(&self) -> PathBuf {
        self.ca.root_path()
    }
}

fn verify(docs: &Docs, doc: &Path, extra: &[&str]) -> std::process::Output {
    let pcr0 = format!("0={}", hex::encode(PCR0));
    run(Command::new(env!("CARGO_BIN_EXE_enclave-ctl"))
        .arg("verify")
        .arg(doc)
        .arg("--trust-root")
        .arg(docs.root())
        .args(["--pcr", &pcr0])
        .args(extra))
}

#[test]
fn a_debug_exec_marker_is_refused_unless_allow_debug_and_always_shown() {
    let docs = Docs::new();
    let doc = docs.write("exec.cose", Some(debug_pcr_value(&[Capability::Exec])));

    let o = verify(&docs, &doc, &[]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("debug capabilities debug.exec"), "{err}");
    assert!(err.contains("run commands in it"), "{err}");
    assert!(err.contains("--allow-debug"), "{err}");
    // Allowing Nitro debug mode does not allow this.
    let o = verify(&docs, &doc, &["--allow-debug-mode"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    // --json on a refusal: the verdict and the reason.
    let o = verify(&docs, &doc, &["--json"]);
    assert_eq!(o.status.code(), Some(3));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["Verified"], false);
    assert!(v["Error"].as_str().unwrap().contains("debug.exec"), "{v}");

    let o = verify(&docs, &doc, &["--allow-debug"]);
    assert_ok(&o);
    let out = stdout(&o);
    assert!(
        out.contains("debug caps:   debug.exec (PCR31 marker); allowed"),
        "{out}"
    );
    assert!(out.contains("debug mode:   no"), "{out}");
    let o = verify(&docs, &doc, &["--allow-debug", "--json"]);
    assert_ok(&o);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["debug_capabilities"],
        serde_json::json!({"state": "granted", "capabilities": ["debug.exec"]})
    );
    assert_eq!(
        v["pcrs"]["31"],
        hex::encode(debug_pcr_value(&[Capability::Exec]))
    );

    // Several capabilities are all named.
    let all = [Capability::Exec, Capability::Cp, Capability::Attest];
    let doc = docs.write("all.cose", Some(debug_pcr_value(&all)));
    let o = verify(&docs, &doc, &[]);
    assert_eq!(o.status.code(), Some(3));
    let err = stderr(&o);
    for name in [
        "debug.exec",
        "debug.cp",
        "debug.attest",
        "binding keys of its choosing",
    ] {
        assert!(err.contains(name), "{name}: {err}");
    }
}

#[test]
fn an_unknown_pcr31_is_refused_and_a_zero_or_absent_one_accepted() {
    let docs = Docs::new();
    let unknown = docs.write("unknown.cose", Some([0x5a; 48]));
    let o = verify(&docs, &unknown, &[]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("PCR31"), "{err}");
    assert!(err.contains("not zero and not a known"), "{err}");
    let o = verify(&docs, &unknown, &["--allow-debug"]);
    assert_ok(&o);
    assert!(
        stdout(&o).contains("debug caps:   unknown (PCR31 5a5a"),
        "{}",
        stdout(&o)
    );

    let zero = docs.write("zero.cose", Some([0; 48]));
    let o = verify(&docs, &zero, &[]);
    assert_ok(&o);
    assert!(
        stdout(&o).contains("debug caps:   none (PCR31 zero)\n"),
        "{}",
        stdout(&o)
    );

    let absent = docs.write("absent.cose", None);
    let o = verify(&docs, &absent, &["--json"]);
    assert_ok(&o);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["debug_capabilities"]["state"], "not_measured");
}
