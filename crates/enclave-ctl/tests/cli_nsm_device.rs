//! System test of `/dev/nsm` in an emulated enclave: a program written for Nitro (the NSM API
//! crate's own driver, crates/enclave-nsm/tests/nsm-probe) runs inside a real QEMU microvm,
//! extends and locks PCR16 and gets a document with its own nonce and public key through the
//! CUSE device enclave-init serves; the document verifies against the emulation root and shows
//! PCR16. Missing prerequisites skip (fail with CI=true).

mod common;

use common::enclaves::Env;
use common::{example_image, run, stdout};
use sha2::{Digest, Sha384};

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_nitro_program_attests_through_dev_nsm() {
    let Some((engine, init)) = common::vm_prerequisites() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let Some(oci) = example_image(tmp.path()) else {
        return;
    };
    let probe = common::build_probe();
    let eif = tmp.path().join("hello.eif");
    let built = common::build_hello(&init, &oci, &eif);
    let pcr0 = stdout(&built)
        .lines()
        .find_map(|l| l.strip_prefix("PCR0").map(|v| v.trim().to_owned()))
        .expect("build printed PCR0");
    let env = Env {
        state: tmp.path().join("state"),
        engine,
        names: &["nsmdev"],
    };
    env.ok(&[
        "run",
        "-d",
        "--cpus",
        "1",
        "--memory",
        "128",
        "--boot-timeout",
        "90",
        "--name",
        "nsmdev",
        eif.to_str().unwrap(),
    ]);

    // The kernel's default for a CUSE node, as for Nitro's misc device: root only.
    let o = run(env
        .ctl()
        .args(["exec", "-u", "0", "nsmdev", "--", "ls", "-l", "/dev/nsm"]));
    let ls = stdout(&o);
    assert!(
        ls.starts_with("crw-------"),
        "no root-only /dev/nsm ({ls}{}); a kernel cache from before fuse.ko and cuse.ko were \
         added? run scripts/fetch-kernel.sh",
        common::stderr(&o)
    );

    // No read or write, as Nitro's device; other ioctls are not its (stty's TCGETS).
    let o = run(env.ctl().args([
        "exec",
        "-u",
        "0",
        "nsmdev",
        "--",
        "sh",
        "-c",
        "cat /dev/nsm; echo x > /dev/nsm; stty -F /dev/nsm; true",
    ]));
    let e = common::stderr(&o);
    eprintln!("{e}");
    assert_eq!(e.matches("Invalid argument").count(), 2, "{e}");
    assert!(e.contains("Inappropriate ioctl"), "{e}");

    env.ok(&["cp", probe.to_str().unwrap(), "nsmdev:/tmp/nsm-probe"]);
    let nonce = hex(b"a nonce of the probe's choosing");
    let key = hex(&[0x04; 97]);
    // Root only, as on Nitro: another user of the enclave cannot open it.
    let o = run(env.ctl().args([
        "exec",
        "-u",
        "65534",
        "nsmdev",
        "--",
        "/tmp/nsm-probe",
        &nonce,
        &key,
    ]));
    assert!(!o.status.success(), "{}", stdout(&o));
    assert!(
        common::stderr(&o).contains("cannot open /dev/nsm"),
        "{}",
        common::stderr(&o)
    );
    let out = env.ok(&[
        "exec",
        "-u",
        "0",
        "nsmdev",
        "--",
        "/tmp/nsm-probe",
        &nonce,
        &key,
    ]);
    eprintln!("{out}");
    let field = |k: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {k} in {out}"))
            .to_owned()
    };
    // PCR16 starts at zero: SHA384(zero || data), as Nitro extends.
    let mut h = Sha384::new();
    h.update([0; 48]);
    h.update(b"nsm-probe");
    let pcr16 = hex(&h.finalize());
    assert_eq!(field("extended"), pcr16);
    assert_eq!(field("pcr16"), format!("true {pcr16}"));
    assert_eq!(field("extend0"), "ReadOnlyIndex");
    assert_eq!(field("oversized"), "InputTooLarge");
    assert_eq!(field("random"), "256");
    assert!(field("module").starts_with("i-"), "{out}");

    let doc = tmp.path().join("doc.hex");
    std::fs::write(&doc, field("document")).unwrap();
    let root = env.state.join("emulation-ca/root.pem");
    let report = env.ok(&[
        "verify",
        doc.to_str().unwrap(),
        "--trust-root",
        root.to_str().unwrap(),
        "--nonce",
        &nonce,
        "--public-key",
        &key,
        "--pcr",
        &format!("0={pcr0}"),
        "--pcr",
        &format!("16={pcr16}"),
        // The example grants debug.exec and debug.cp (how the probe got in and ran).
        "--allow-debug",
    ]);
    assert!(report.contains("OK: the document is genuine"), "{report}");
}
