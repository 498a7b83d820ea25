//! `kube generate` from an EIF, with the real binary: the measured spec's name and ingress
//! ports, and the PCRs (PCR8 when signed) as the pod template's annotations, equal to what
//! `enclave-ctl measure` prints. The EIFs are small ones made here (a fake kernel measures as
//! well as a real one); signing uses the real openssl and `enclave-ctl sign`.

mod common;

use std::path::Path;
use std::process::Command;

use common::kube::validate;
use common::{assert_ok, have, require, run};
use enclave_image::cpio::{CpioWriter, EntryMeta};
use enclave_image::eif::{EifOptions, EifWriter};
use serde_json::Value;

fn ctl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_enclave-ctl"))
}

/// `kube generate --json …` → the list of objects.
fn generate_json(args: &[&str]) -> Vec<Value> {
    let o = run(ctl().args(["kube", "generate", "--json"]).args(args));
    assert_ok(&o);
    serde_json::from_slice::<Vec<Value>>(&o.stdout).expect("a JSON list")
}

/// `measure --json` of an EIF: nitro-cli's form, `{"Measurements": {"PCR0": …}}`.
fn measure(eif: &Path) -> Value {
    let o = run(ctl().args(["measure", "--json"]).arg(eif));
    assert_ok(&o);
    serde_json::from_slice(&o.stdout).unwrap()
}

/// A small EIF (a fake kernel: enough to measure) whose app ramdisk holds the measured spec.
fn write_eif(path: &Path, spec_json: &[u8]) {
    let mut app = CpioWriter::new(Vec::new(), 0);
    app.add_file(
        b"enclave/spec.json",
        EntryMeta::root(0o644),
        spec_json,
        spec_json.len() as u64,
    )
    .unwrap();
    let app = app.finish().unwrap();
    let mut w =
        EifWriter::new(std::fs::File::create(path).unwrap(), EifOptions::default()).unwrap();
    w.kernel(&mut &b"kernel"[..]).unwrap();
    w.cmdline("console=ttyS0").unwrap();
    w.metadata(br#"{"ImageName":"pcrapp"}"#).unwrap();
    w.ramdisk_from(&mut &b"bootstrap"[..]).unwrap();
    w.ramdisk_from(&mut &app[..]).unwrap();
    w.finish(None).unwrap();
}

#[test]
fn from_an_eif_the_pod_carries_its_pcrs_and_the_measured_ports() {
    let dir = tempfile::tempdir().unwrap();
    let eif = dir.path().join("Signed-App.eif");
    write_eif(
        &eif,
        br#"{"name":"pcrapp","ingress":[{"port":8443},{"port":9000}]}"#,
    );
    let pcrs = measure(&eif);

    let out = dir.path().join("app.yaml");
    let o = run(ctl()
        .args(["kube", "generate", "--image", "app:1", "-o"])
        .arg(&out)
        .arg(&eif));
    assert_ok(&o);
    assert!(o.stdout.is_empty(), "-o: nothing on stdout");
    validate(&out);
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.starts_with('.')),
        "temporary files left: {names:?}"
    );

    let objects = generate_json(&["--image", "app:1", eif.to_str().unwrap()]);
    let annotations = &objects[0]["spec"]["template"]["metadata"]["annotations"];
    for i in [0, 1, 2] {
        assert_eq!(
            annotations[format!("dev.enclave-engine.pcr{i}")],
            pcrs["Measurements"][format!("PCR{i}")],
            "PCR{i}"
        );
    }
    assert!(
        annotations.get("dev.enclave-engine.pcr8").is_none(),
        "unsigned: no PCR8"
    );
    assert_eq!(
        objects[0]["metadata"]["name"], "pcrapp",
        "the measured spec's name"
    );
    let ports: Vec<&Value> = objects[1]["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["port"])
        .collect();
    assert_eq!(ports, [8443, 9000]);

    // Without a name in the spec, the file's stem (lower-cased) names it.
    let anon = dir.path().join("Anon.eif");
    write_eif(&anon, br#"{"ingress":[{"port":80}]}"#);
    let objects = generate_json(&["--image", "app:1", anon.to_str().unwrap()]);
    assert_eq!(objects[0]["metadata"]["name"], "anon");
}

#[test]
fn a_signed_eif_adds_pcr8() {
    let Some(()) = require(have("openssl"), "openssl") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = common::p384_signing_cert(dir.path(), "signer", "kube");
    let eif = dir.path().join("signed.eif");
    write_eif(&eif, br#"{"name":"signed"}"#);
    assert_ok(&run(ctl()
        .arg("sign")
        .arg(&eif)
        .arg("--signing-certificate")
        .arg(&cert)
        .arg("--private-key")
        .arg(&key)));
    let pcrs = measure(&eif);
    let objects = generate_json(&["--image", "app:1", eif.to_str().unwrap()]);
    assert_eq!(objects.len(), 1, "no ingress, no Service");
    let annotations = &objects[0]["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(
        annotations["dev.enclave-engine.pcr8"],
        pcrs["Measurements"]["PCR8"]
    );
    assert_eq!(annotations.as_object().unwrap().len(), 4, "{annotations}");
}
