//! Installing without a checkout: scripts/install.sh into a temporary prefix (reusing the
//! binaries already built), then `build`, `run`, `exec` and the Nitro self-test (`selftest
//! --backend qemu`) with the installed tools under a clean environment (`env -i` but for PATH,
//! HOME and the test's own state directory: no ENCLAVE_INIT, no ENCLAVE_ENGINE_BIN, no checkout
//! on the way), and the completions and man pages it put in place. A real QEMU enclave; prerequisites missing skip (fail with CI=true).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{assert_ok, example_image, require, run, stderr, stdout};
use serde_json::Value;

/// A command of the installed tree with nothing of the test's environment but PATH and HOME
/// (HOME: the emulated kernel in ~/.cache, vhost-device-vsock in ~/.cargo/bin).
fn clean(program: &Path, prefix: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .env(
            "PATH",
            format!("{}/bin:/usr/local/bin:/usr/bin:/bin", prefix.display()),
        )
        .env("HOME", std::env::var_os("HOME").unwrap_or_default());
    cmd
}

/// Runs the installer under a group-writable umask (it must not matter).
fn install(prefix: &Path, from: &Path, init_dir: &Path) -> std::process::Output {
    run(Command::new("sh")
        .arg("-c")
        .arg("umask 002 && exec \"$0\" \"$@\"")
        .arg(common::workspace().join("scripts/install.sh"))
        .arg("--prefix")
        .arg(prefix)
        .arg("--from")
        .arg(from)
        .arg("--init-from")
        .arg(init_dir))
}

/// Stops and removes the enclave even when an assertion failed.
struct Cleanup<'a> {
    ctl: PathBuf,
    prefix: &'a Path,
    state: &'a Path,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = clean(&self.ctl, self.prefix)
            .env("ENCLAVE_ENGINE_STATE_DIR", self.state)
            .args(["rm", "-f", "installed"])
            .output();
    }
}

#[test]
fn installed_tools_build_and_run_with_a_clean_environment() {
    let Some((engine, init)) = common::vm_prerequisites() else {
        return;
    };
    let bin_dir = engine.parent().unwrap().to_owned();
    let Some(()) = require(
        bin_dir.join("enclave-proxy").is_file(),
        "the enclave-proxy binary (cargo build --workspace)",
    ) else {
        return;
    };
    let init_dir = init.parent().unwrap().to_owned();
    let Some(()) = require(
        init_dir.join("enclave-attest").is_file() && init_dir.join("nsm-probe").is_file(),
        "the static enclave-attest and nsm-probe next to enclave-init (scripts/build-init.sh)",
    ) else {
        return;
    };
    let Some(()) = require(
        common::have("python3"),
        "python3 (the self-test's egress targets)",
    ) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let Some(oci) = example_image(tmp.path()) else {
        return;
    };
    let prefix = tmp.path().join("prefix");
    let o = install(&prefix, &bin_dir, &init_dir);
    assert_ok(&o);

    // The layout.
    for b in ["enclave-ctl", "enclave-engine", "enclave-proxy"] {
        let p = prefix.join("bin").join(b);
        assert_eq!(
            std::fs::read(&p).unwrap(),
            std::fs::read(bin_dir.join(b)).unwrap()
        );
        assert!(
            std::os::unix::fs::PermissionsExt::mode(&p.metadata().unwrap().permissions()) & 0o111
                != 0
        );
    }
    for b in ["enclave-init", "enclave-attest", "nsm-probe"] {
        let p = prefix.join("libexec/enclave-engine").join(b);
        assert_eq!(
            std::fs::read(&p).unwrap(),
            std::fs::read(init_dir.join(b)).unwrap()
        );
    }
    for b in ["enclave-ctl", "enclave-engine", "enclave-proxy"] {
        let bash = prefix.join("share/bash-completion/completions").join(b);
        assert_ok(&run(Command::new("bash").arg("-n").arg(&bash)));
        let zsh =
            std::fs::read_to_string(prefix.join(format!("share/zsh/site-functions/_{b}"))).unwrap();
        assert!(zsh.starts_with(&format!("#compdef {b}")), "{zsh}");
        let fish = prefix.join(format!("share/fish/vendor_completions.d/{b}.fish"));
        assert!(std::fs::read_to_string(fish)
            .unwrap()
            .contains(&format!("complete -c {b}")));
        let page = prefix.join(format!("share/man/man1/{b}.1"));
        let text = std::fs::read_to_string(&page).unwrap();
        assert!(
            text.contains(&format!("\n.TH {b} 1 ")),
            "{page:?}: no .TH header"
        );
    }
    let fetch = prefix.join("libexec/enclave-engine/fetch-kernel.sh");
    assert_ok(&run(Command::new("bash").arg("-n").arg(&fetch)));
    assert!(prefix.join("libexec/enclave-engine/kernel.env").is_file());
    let build_page = prefix.join("share/man/man1/enclave-ctl-build.1");
    assert!(std::fs::read_to_string(build_page)
        .unwrap()
        .contains(".TH enclave-ctl-build 1 "));
    // Nothing the caller's group or others could replace (whoever replaces enclave-init
    // chooses what every image boots).
    let writable = Command::new("find")
        .arg(&prefix)
        .args(["-perm", "/022"])
        .output()
        .unwrap();
    assert_eq!(
        stdout(&writable),
        "",
        "group- or world-writable files installed"
    );
    // Nothing half-written left behind by the renames.
    let stray = Command::new("find")
        .arg(&prefix)
        .args(["-name", ".*"])
        .output()
        .unwrap();
    assert_eq!(stdout(&stray), "", "temporary files left in the prefix");

    // build: the installed enclave-init is found with no variable, and gives the same EIF as the
    // checkout's init named explicitly.
    let ctl = prefix.join("bin/enclave-ctl");
    let spec = common::workspace().join("examples/hello/enclave.yaml");
    let source = format!("oci:{}:latest", oci.display());
    let eif = tmp.path().join("installed.eif");
    let o = run(clean(&ctl, &prefix)
        .args(["-vv", "--log-format", "json", "build", "-q", "-f"])
        .arg(&spec)
        .args(["--from", &source, "-o"])
        .arg(&eif));
    assert_ok(&o);
    // -vv shows the debug lines, each a JSON object; one names the init found.
    let logs: Vec<Value> = stderr(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    let installed_init = prefix.join("libexec/enclave-engine/enclave-init");
    assert!(
        logs.iter()
            .any(|l| l["level"] == "DEBUG"
                && l["fields"]["init"] == installed_init.to_str().unwrap()),
        "{logs:?}"
    );
    let reference = tmp.path().join("reference.eif");
    assert_ok(&run(common::ctl(&init)
        .args(["build", "-q", "-f"])
        .arg(&spec)
        .args(["--from", &source, "-o"])
        .arg(&reference)));
    assert_eq!(common::sha256(&eif), common::sha256(&reference));

    // run + exec: the installed supervisor runs the enclave.
    let state = tmp.path().join("state");
    let _cleanup = Cleanup {
        ctl: ctl.clone(),
        prefix: &prefix,
        state: &state,
    };
    let with_state = |args: &[&str]| {
        let mut c = clean(&ctl, &prefix);
        // The state directory is the test's own, not the machine's (`inspect NAME` takes no
        // --state-dir, so the variable).
        c.env("ENCLAVE_ENGINE_STATE_DIR", &state).args(args);
        c
    };
    let o = run(&mut with_state(&[
        "--log-format",
        "json",
        "run",
        "-d",
        "--name",
        "installed",
        "--cpus",
        "1",
        "--memory",
        "128",
        "--boot-timeout",
        "120",
        eif.to_str().unwrap(),
    ]));
    assert_ok(&o);
    let o = run(&mut with_state(&["inspect", "installed"]));
    assert_ok(&o);
    let rec: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(rec["status"], "running", "{rec:#}");
    let pid = rec["supervisor_pid"].as_u64().expect("a supervisor pid");
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert_eq!(
        exe,
        prefix.join("bin/enclave-engine"),
        "not the installed supervisor"
    );
    let o = run(&mut with_state(&[
        "exec",
        "installed",
        "--",
        "/bin/sh",
        "-c",
        "echo $GREETING; hostname",
    ]));
    assert_ok(&o);
    assert_eq!(stdout(&o), "hello from enclave-engine\nhello-enclave\n");
    // `--log-format json` reached the supervisor: its log is JSON lines.
    let id = rec["id"].as_str().unwrap();
    let log =
        std::fs::read_to_string(state.join("enclaves").join(id).join("supervisor.log")).unwrap();
    assert!(log.lines().count() > 0, "empty supervisor.log");
    for line in log.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
    }
    assert_ok(&run(&mut with_state(&["rm", "-f", "installed"])));

    // The Nitro self-test, installed: `enclave-ctl selftest` runs the script beside the
    // installed nsm-probe, with the installed enclave-ctl, from a directory that is no checkout.
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let o = run(with_state(&["selftest", "--backend", "qemu"]).current_dir(&elsewhere));
    eprintln!("{}{}", stdout(&o), stderr(&o));
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    let passed = |check: &str| {
        out.lines()
            .find(|l| l.split_whitespace().take(2).eq(["PASS", check]))
            .unwrap_or_else(|| panic!("no PASS {check} in {out}"))
            .to_owned()
    };
    assert!(passed("enclave-ctl").contains(ctl.to_str().unwrap()));
    let probe = prefix.join("libexec/enclave-engine/nsm-probe");
    assert!(passed("nsm-probe").contains(probe.to_str().unwrap()));
    assert!(passed("verify-dev-nsm").len() > "PASS verify-dev-nsm".len());
    assert!(
        out.ends_with("nitro-selftest: 14 passed, 0 failed (qemu backend)\n"),
        "{out}"
    );
    let o = run(&mut with_state(&["ps", "-a", "-q"]));
    assert_eq!(stdout(&o), "", "the self-test left an enclave behind");
}

#[test]
fn without_an_installed_init_build_says_where_it_looked() {
    // The kernel is loaded first: it must be there for the init to be looked for.
    let Some((_kernel, _init)) = common::build_inputs() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("lonely/bin");
    std::fs::create_dir_all(&bin).unwrap();
    let ctl = bin.join("enclave-ctl");
    std::fs::copy(env!("CARGO_BIN_EXE_enclave-ctl"), &ctl).unwrap();
    let rootfs = tmp.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    let o = run(clean(&ctl, tmp.path())
        .args(["build", "-q", "--from"])
        .arg(format!("dir:{}", rootfs.display()))
        .arg("-o")
        .arg(tmp.path().join("x.eif")));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    let expected = tmp
        .path()
        .join("lonely/libexec/enclave-engine/enclave-init");
    assert!(err.contains(&expected.display().to_string()), "{err}");
    assert!(
        err.contains("scripts/install.sh") && err.contains("--init"),
        "{err}"
    );
    assert!(!tmp.path().join("x.eif").exists());

    // The variable's old name still works, and the new one wins over it.
    let with_env = |vars: &[(&str, &str)]| {
        let mut c = clean(&ctl, tmp.path());
        c.envs(vars.iter().copied())
            .args(["build", "-q", "--from"])
            .arg(format!("dir:{}", rootfs.display()))
            .arg("-o")
            .arg(tmp.path().join("x.eif"));
        stderr(&run(&mut c))
    };
    let err = with_env(&[("ENCLAVE_INIT", "/old/name/init")]);
    assert!(err.contains("/old/name/init"), "{err}");
    let err = with_env(&[
        ("ENCLAVE_INIT", "/old/name/init"),
        ("ENCLAVE_ENGINE_INIT", "/new/name/init"),
    ]);
    assert!(
        err.contains("/new/name/init") && !err.contains("/old/"),
        "{err}"
    );
    assert!(!tmp.path().join("x.eif").exists());
}

#[test]
fn the_installer_refuses_missing_or_dynamic_inputs_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let prefix = tmp.path().join("prefix");
    let o = install(&prefix, &tmp.path().join("nowhere"), tmp.path());
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no executable enclave-ctl"),
        "{}",
        stderr(&o)
    );
    assert!(!prefix.exists());

    // A dynamic binary where the static enclave-init belongs (it would not run in the enclave).
    let fake = tmp.path().join("fake");
    std::fs::create_dir_all(&fake).unwrap();
    for b in [
        "enclave-ctl",
        "enclave-engine",
        "enclave-proxy",
        "enclave-init",
        "enclave-attest",
        "nsm-probe",
    ] {
        std::fs::copy(env!("CARGO_BIN_EXE_enclave-ctl"), fake.join(b)).unwrap();
    }
    let o = install(&prefix, &fake, &fake);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not static"), "{}", stderr(&o));
    assert!(!prefix.exists());

    let o = run(Command::new(common::workspace().join("scripts/install.sh")).arg("--bogus"));
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("--prefix"),
        "usage shown: {}",
        stderr(&o)
    );
}
