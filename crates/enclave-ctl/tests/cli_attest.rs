//! System test of `attest` on the emulated backend: one real QEMU microvm booting the example
//! EIF; a document fetched through the control channel from the supervisor's emulated NSM,
//! verified against the emulation root and the PCRs `build` printed. Missing prerequisites skip
//! (fail with CI=true).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

use common::{assert_ok, example_image, run, stderr, stdout};

struct Env {
    state: PathBuf,
    engine: PathBuf,
}

/// Removes (and so stops) the enclave even when an assertion failed.
impl Drop for Env {
    fn drop(&mut self) {
        let _ = self.ctl().args(["rm", "-f", "att"]).output();
    }
}

impl Env {
    fn ctl(&self) -> Command {
        common::vm_ctl(&self.state, &self.engine)
    }

    fn ok(&self, args: &[&str]) -> (String, String) {
        let o = run(self.ctl().args(args));
        assert_ok(&o);
        (stdout(&o), stderr(&o))
    }

    fn fails(&self, args: &[&str]) -> String {
        let o = run(self.ctl().args(args));
        assert!(!o.status.success(), "{args:?} succeeded:\n{}", stdout(&o));
        stderr(&o)
    }
}

/// `PCRn  HEX` lines of `build`'s output.
fn build_pcrs(out: &str) -> Vec<(String, String)> {
    out.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(char::is_whitespace)?;
            let n = k.strip_prefix("PCR")?;
            Some((n.to_owned(), v.trim().to_owned()))
        })
        .collect()
}

#[test]
fn an_emulated_document_verifies_only_with_the_emulation_root() {
    let Some((engine, init)) = common::vm_prerequisites() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let Some(oci) = example_image(tmp.path()) else {
        return;
    };
    let eif = tmp.path().join("hello.eif");
    let built = common::build_hello(&init, &oci, &eif);
    let pcrs = build_pcrs(&stdout(&built));
    assert!(pcrs.len() >= 3, "build printed {pcrs:?}");
    let env = Env {
        state: tmp.path().join("state"),
        engine,
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
        "att",
        eif.to_str().unwrap(),
    ]);

    // The root: created by the supervisor, key private, shown by inspect and --print-root.
    let ca = env.state.join("emulation-ca");
    let mode = std::fs::metadata(ca.join("root.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let root = ca.join("root.pem");
    let (printed, _) = env.ok(&["attest", "--print-root"]);
    assert_eq!(printed.trim(), root.to_str().unwrap());
    let (inspect, _) = env.ok(&["inspect", "att"]);
    let inspect: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(inspect["emulation_root"], root.to_str().unwrap());

    // An unprivileged user on the same host gets a clear refusal, not the enclave.
    {
        use std::os::unix::process::CommandExt;
        let o = run(env
            .ctl()
            .args(["exec", "att", "--", "true"])
            .uid(65534)
            .gid(65534));
        assert!(!o.status.success());
        let e = stderr(&o);
        assert!(
            e.contains(env.state.to_str().unwrap()) && e.contains("belongs to another user"),
            "{e}"
        );
    }

    // A document with a fresh (default) nonce, printed for verify.
    let doc = tmp.path().join("doc.cose");
    let (_, err) = env.ok(&["attest", "att", "-o", doc.to_str().unwrap()]);
    let nonce = err
        .lines()
        .find_map(|l| l.strip_prefix("nonce: "))
        .unwrap_or_else(|| panic!("no nonce printed: {err}"))
        .trim()
        .to_owned();
    assert_eq!(nonce.len(), 64);

    let doc_s = doc.to_str().unwrap();
    let root_s = root.to_str().unwrap();
    let mut args = vec!["verify", doc_s, "--trust-root", root_s, "--nonce", &nonce];
    let pcr_args: Vec<String> = pcrs.iter().map(|(n, v)| format!("{n}={v}")).collect();
    for p in &pcr_args {
        args.extend(["--pcr", p]);
    }
    // The example image grants debug.exec and debug.cp, which its PCR31 shows: accepted
    // knowingly.
    args.push("--allow-debug");
    let pcr0 = pcr_args
        .iter()
        .find(|p| p.starts_with("0="))
        .expect("build printed PCR0");
    let (report, _) = env.ok(&args);
    eprintln!("{report}");
    assert!(report.contains("OK: the document is genuine"), "{report}");
    assert!(report.contains("i-"), "module id shown: {report}");

    // A wrong PCR, a wrong nonce.
    // PCR0 of another image in place of this one's.
    let bad = format!("0={}", "11".repeat(48));
    let wrong_pcr: Vec<&str> = args
        .iter()
        .map(|a| if a == pcr0 { bad.as_str() } else { a })
        .collect();
    let e = env.fails(&wrong_pcr);
    assert!(e.contains("PCR0 mismatch"), "{e}");
    let other_nonce = "11".repeat(32);
    let mut wrong_nonce = args.clone();
    wrong_nonce[5] = &other_nonce;
    let e = env.fails(&wrong_nonce);
    assert!(e.contains("nonce mismatch"), "{e}");

    // Without the emulation root: refused, saying why and where the root is.
    let e = env.fails(&[
        "verify",
        doc_s,
        "--nonce",
        &nonce,
        "--pcr",
        pcr0,
        "--allow-debug",
    ]);
    assert!(e.contains("enclave-engine emulation root"), "{e}");
    assert!(e.contains("--trust-root"), "{e}");
    assert!(e.contains(root_s), "{e}");

    // The debug surface was recorded at boot: without --allow-debug the document is refused,
    // naming what the host may do inside.
    let strict: Vec<&str> = args
        .iter()
        .copied()
        .filter(|a| *a != "--allow-debug")
        .collect();
    let e = env.fails(&strict);
    assert!(e.contains("debug.exec") && e.contains("debug.cp"), "{e}");
    assert!(e.contains("--allow-debug"), "{e}");

    // An explicit nonce goes in as given; a key or data of the host's choosing does not: the
    // spec does not grant debug.attest.
    env.ok(&["attest", "att", "--nonce", "abcd", "-o", doc_s]);
    env.ok(&[
        "verify",
        doc_s,
        "--trust-root",
        root_s,
        "--nonce",
        "abcd",
        "--pcr",
        pcr0,
        "--allow-debug",
    ]);
    let e = env.fails(&[
        "attest",
        "att",
        "--nonce",
        "abcd",
        "--user-data",
        "0102",
        "-o",
        doc_s,
    ]);
    assert!(e.contains("debug.attest"), "{e}");
}
