//! scripts/nitro-selftest.sh, the self-test users run on a Nitro parent, run here on the emulated
//! backend as CI runs it: every check passes (a document through /dev/nsm inside the enclave and
//! one through `enclave-ctl attest`, both verified; an allowed and a refused egress) and the
//! enclave is gone afterwards. And its failures are real: on this machine the `nitro` backend's
//! pre-flight fails on the missing device, and a dynamically linked busybox is refused, each with
//! what to do and exit code 1. Missing prerequisites skip (fail with CI=true).

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{run, stdout};

fn selftest(state: &Path, engine: &Path, init: &Path, probe: &Path) -> Command {
    let mut cmd = Command::new(common::workspace().join("scripts/nitro-selftest.sh"));
    cmd.env("ENCLAVE_CTL", env!("CARGO_BIN_EXE_enclave-ctl"))
        .env("ENCLAVE_ENGINE_STATE_DIR", state)
        .env("ENCLAVE_ENGINE_BIN", engine)
        .env("ENCLAVE_INIT", init)
        .env("NSM_PROBE", probe)
        .env_remove("BUSYBOX")
        .env_remove("ENCLAVE_ENGINE_EXTRA_CMDLINE");
    cmd
}

/// The check names of the lines starting with `verdict`.
fn checks(o: &Output, verdict: &str) -> Vec<String> {
    stdout(o)
        .lines()
        .filter_map(|l| l.strip_prefix(verdict)?.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_selftest_passes_on_the_emulated_backend_and_reports_real_failures() {
    let Some((engine, init)) = common::vm_prerequisites() else {
        return;
    };
    let Some(()) = common::require(common::have("python3"), "python3") else {
        return;
    };
    let probe = common::build_probe();
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");

    let o = run(selftest(&state, &engine, &init, &probe).args(["--backend", "qemu"]));
    eprintln!("{}{}", stdout(&o), common::stderr(&o));
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(checks(&o, "FAIL"), Vec::<String>::new());
    assert_eq!(
        checks(&o, "PASS"),
        [
            "enclave-ctl",
            "qemu",
            "busybox",
            "nsm-probe",
            "egress-targets",
            "build",
            "run",
            "dev-nsm",
            "verify-dev-nsm",
            "attest",
            "verify-attest",
            "egress-allowed",
            "egress-refused",
            "stop",
        ]
    );
    assert!(
        stdout(&o).ends_with("nitro-selftest: 14 passed, 0 failed (qemu backend)\n"),
        "{}",
        stdout(&o)
    );
    let ps = run(common::vm_ctl(&state, &engine).args(["ps", "-a", "-q"]));
    assert_eq!(stdout(&ps), "", "the self-test left an enclave behind");

    // This machine is no Nitro parent: the pre-flight says so, and what to do, and stops.
    let o = run(selftest(&state, &engine, &init, &probe).args(["--backend", "nitro"]));
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert_eq!(checks(&o, "FAIL"), ["nitro-device"]);
    assert!(
        stdout(&o).contains("/dev/nitro_enclaves is absent -- launch the instance with enclave"),
        "{}",
        stdout(&o)
    );
    assert!(!stdout(&o).contains("PASS  build"), "{}", stdout(&o));

    // A busybox with shared libraries would not run in the probe's rootfs.
    let o = run(selftest(&state, &engine, &init, &probe)
        .args(["--backend", "qemu"])
        .env("BUSYBOX", "/bin/ls"));
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert_eq!(checks(&o, "FAIL"), ["busybox"]);
    assert!(stdout(&o).contains("dynamically linked"), "{}", stdout(&o));

    // Bad arguments are a usage error, not a failed check.
    let o = run(selftest(&state, &engine, &init, &probe).args(["--backend", "vmware"]));
    assert_eq!(o.status.code(), Some(2));
    assert!(checks(&o, "PASS").is_empty());
}
