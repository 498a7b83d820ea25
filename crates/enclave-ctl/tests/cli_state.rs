//! The state directory against other users and against changed files, through the real
//! `enclave-ctl`: squatted state roots refused with their reasons, no default root without
//! XDG_RUNTIME_DIR for a non-root user, and (with a real QEMU VM) an enclave that keeps booting
//! the EIF pinned at `run` when the original is rewritten, and refuses for good to boot a
//! modified pinned copy. Missing prerequisites skip (fail with CI=true).

mod common;

use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::enclaves::{kill, processes_mentioning, Env};
use common::{assert_ok, example_image, run, stderr, stdout};

/// The uid of `nobody`, which squats (the tests run as root, so they can chown).
const NOBODY: u32 = 65534;

fn chown_nobody(path: &Path) {
    assert_ok(&run(Command::new("chown")
        .arg(format!("{NOBODY}:{NOBODY}"))
        .arg(path)));
}

/// `enclave-ctl ARGS --state-dir DIR` fails; its stderr.
fn refused(dir: &Path, args: &[&str]) -> String {
    let o = run(Command::new(env!("CARGO_BIN_EXE_enclave-ctl"))
        .args(args)
        .arg("--state-dir")
        .arg(dir)
        .env_remove("ENCLAVE_ENGINE_STATE_DIR"));
    assert!(
        !o.status.success(),
        "{args:?} on {}: accepted",
        dir.display()
    );
    stderr(&o)
}

#[test]
fn squatted_state_roots_are_refused_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let eif = tmp.path().join("x.eif");
    std::fs::write(&eif, "not even an EIF").unwrap();
    let eif = eif.to_str().unwrap();

    // Made by another user, mode 0700 and all.
    let theirs = tmp.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o700)).unwrap();
    chown_nobody(&theirs);
    for args in [&["ps"][..], &["run", "-d", eif], &["rm", "x"]] {
        let e = refused(&theirs, args);
        assert!(
            e.contains(&format!(
                "refusing state directory {}: it is owned by uid 65534, not by you (uid 0)",
                theirs.display()
            )),
            "{args:?}: {e}"
        );
    }

    // A symlink, even to a directory of ours.
    let ours = tmp.path().join("ours");
    std::fs::create_dir(&ours).unwrap();
    std::fs::set_permissions(&ours, std::fs::Permissions::from_mode(0o700)).unwrap();
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(&ours, &link).unwrap();
    let e = refused(&link, &["run", "-d", eif]);
    assert!(
        e.contains(&format!(
            "{}: it is a symbolic link (to {})",
            link.display(),
            ours.display()
        )),
        "{e}"
    );
    assert_eq!(std::fs::read_dir(&ours).unwrap().count(), 0);

    // Group or other bits.
    for mode in [0o755, 0o770] {
        let open = tmp.path().join(format!("open{mode:o}"));
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(mode)).unwrap();
        let e = refused(&open, &["ps"]);
        assert!(
            e.contains(&format!("mode {mode:04o} has group or other bits"))
                && e.contains(&format!("chmod 0700 {}", open.display())),
            "{e}"
        );
    }
}

#[test]
fn a_user_without_xdg_runtime_dir_gets_no_default_root() {
    let Some(()) = common::require(common::have("setpriv"), "setpriv (util-linux)") else {
        return;
    };
    // A copy of the binary that `nobody` can reach and run.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = tmp.path().join("enclave-ctl");
    std::fs::copy(env!("CARGO_BIN_EXE_enclave-ctl"), &bin).unwrap();
    let o = run(Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&bin)
        .arg("ps")
        .current_dir(tmp.path())
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("ENCLAVE_ENGINE_STATE_DIR"));
    let e = stderr(&o);
    assert!(!o.status.success(), "{}", stdout(&o));
    assert!(
        e.contains("XDG_RUNTIME_DIR is not set and you are not root (uid 65534)")
            && e.contains("--state-dir or ENCLAVE_ENGINE_STATE_DIR"),
        "{e}"
    );
    assert!(
        !Path::new("/tmp/enclave-engine-65534").exists(),
        "no fallback under /tmp"
    );
}

/// Flips the last byte of `path` in place (in an unsigned EIF, the app ramdisk's last byte).
fn tamper(path: &Path) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let len = f.metadata().unwrap().len();
    let mut last = [0u8];
    f.read_exact_at(&mut last, len - 1).unwrap();
    f.write_all_at(&[last[0] ^ 0xff], len - 1).unwrap();
}

#[test]
fn an_enclave_boots_its_pinned_eif_and_refuses_a_modified_one() {
    let Some((engine, init)) = common::vm_prerequisites() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let Some(oci) = example_image(tmp.path()) else {
        return;
    };
    // The example, and the same image with another greeting: a different, valid EIF.
    let spec = common::workspace().join("examples/hello/enclave.yaml");
    let text = std::fs::read_to_string(&spec).unwrap();
    let other_spec = tmp.path().join("other.yaml");
    std::fs::write(
        &other_spec,
        text.replace(
            "hello from enclave-engine",
            "greetings from the replacement",
        ),
    )
    .unwrap();
    let build = |spec: &Path, out: &Path| {
        assert_ok(&run(common::ctl(&init)
            .args(["build", "-f"])
            .arg(spec)
            .arg("--from")
            .arg(format!("oci:{}:latest", oci.display()))
            .arg("-o")
            .arg(out)));
    };
    let eif = tmp.path().join("hello.eif");
    let other = tmp.path().join("other.eif");
    build(&spec, &eif);
    build(&other_spec, &other);
    let env = Env {
        state: tmp.path().join("state"),
        engine,
        names: &["p"],
    };
    env.ok(&[
        "run",
        "-d",
        "--name",
        "p",
        "--restart",
        "on-failure",
        "--cpus",
        "1",
        "--memory",
        "128",
        "--boot-timeout",
        "90",
        eif.to_str().unwrap(),
    ]);
    let greeting = ["exec", "p", "--", "/bin/sh", "-c", "echo $GREETING"];
    assert_eq!(env.ok(&greeting), "hello from enclave-engine\n");
    let first = env.inspect("p");
    let pcr0 = first["measurements"]["PCR0"].as_str().unwrap().to_owned();
    let dir = Path::new(first["state_dir"].as_str().unwrap()).to_owned();
    let pinned = dir.join("image.eif");
    assert_eq!(
        std::fs::read(&pinned).unwrap(),
        std::fs::read(&eif).unwrap()
    );

    // The EIF given to run, rewritten in place (same inode) with the other image; a restart.
    std::fs::write(&eif, std::fs::read(&other).unwrap()).unwrap();
    kill(first["instance"]["pid"].as_u64().unwrap(), "-KILL");
    let again = env.wait_for("p", "the restart", Duration::from_secs(120), |v| {
        v["restarts"] == 1 && v["status"] == "running"
    });
    assert_eq!(again["measurements"]["PCR0"], pcr0.as_str());
    assert_eq!(
        again["eif"],
        eif.to_str().unwrap(),
        "the original path, shown"
    );
    // The pinned bytes booted: the old greeting, and a document with the recorded PCR0.
    assert_eq!(env.ok(&greeting), "hello from enclave-engine\n");
    let doc = tmp.path().join("doc.cose");
    env.ok(&["attest", "p", "-o", doc.to_str().unwrap()]);
    let root_pem = env.state.join("emulation-ca/root.pem");
    // The example image grants debug.exec and debug.cp (PCR31 says so): accepted knowingly.
    let report = env.ok(&[
        "verify",
        doc.to_str().unwrap(),
        "--allow-debug",
        "--trust-root",
        root_pem.to_str().unwrap(),
        "--pcr",
        &format!("0={pcr0}"),
    ]);
    assert!(report.contains("OK"), "{report}");

    // The pinned copy itself modified; a restart: refused, and no restart loop.
    tamper(&pinned);
    kill(again["instance"]["pid"].as_u64().unwrap(), "-KILL");
    let failed = env.wait_for("p", "the refusal", Duration::from_secs(60), |v| {
        v["status"] == "failed"
    });
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains(&format!(
            "refusing to boot {}: it is not the EIF measured at `run` (PCR0 expected {pcr0}, found ",
            pinned.display()
        )),
        "{error}"
    );
    assert_eq!(failed["restarts"], 2, "one refused attempt: {failed:#}");
    assert_eq!(failed["supervisor_alive"], false, "{failed:#}");
    assert!(processes_mentioning(dir.to_str().unwrap()).is_empty());
    let logs = env.ok(&["logs", "p"]);
    assert!(logs.contains("boot failed: refusing to boot"), "{logs}");

    // rm removes the pinned copy with the rest.
    env.ok(&["rm", "p"]);
    assert!(!pinned.exists() && !dir.exists());
}
