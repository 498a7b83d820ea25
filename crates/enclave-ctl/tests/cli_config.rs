//! The optional config file, through the real binary: its keys become the defaults (a flag or
//! a variable still wins), the user's file replaces the system file's keys, and a bad file is a
//! clear error naming the file and the line. The system file (/etc/enclave-engine) is whatever
//! the machine has; these tests use the user's file only, under a temporary XDG_CONFIG_HOME.

mod common;

use std::path::Path;
use std::process::Command;

use common::{run, stderr};

/// enclave-ctl with `config` as the user's config file and none of the variables it fills.
fn ctl(config_home: &Path, config: &str) -> Command {
    let dir = config_home.join("enclave-engine");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.toml"), config).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_enclave-ctl"));
    cmd.env("XDG_CONFIG_HOME", config_home);
    use enclave_engine::config::*;
    for name in [
        ENV_BACKEND,
        ENV_STATE_DIR,
        ENV_CPUS,
        ENV_MEMORY,
        ENV_KERNEL_DIR_EMULATED,
        ENV_KERNEL_DIR_NITRO,
    ] {
        cmd.env_remove(name);
    }
    cmd
}

#[test]
fn the_state_dir_comes_from_the_config_unless_a_flag_says_otherwise() {
    let tmp = tempfile::tempdir().unwrap();
    let from_config = tmp.path().join("state-from-config");
    let config = format!("state_dir = {:?}\n", from_config.display().to_string());
    let o = run(ctl(tmp.path(), &config).args(["ps", "-a"]));
    common::assert_ok(&o);
    assert!(
        from_config.join("enclaves").is_dir(),
        "the config's state dir was not used"
    );

    let from_flag = tmp.path().join("state-from-flag");
    let o = run(ctl(tmp.path(), &config)
        .args(["ps", "-a", "--state-dir"])
        .arg(&from_flag));
    common::assert_ok(&o);
    assert!(from_flag.join("enclaves").is_dir());
}

#[test]
fn the_kernel_dir_and_backend_come_from_the_config() {
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = tmp.path().join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    let o = run(ctl(
        tmp.path(),
        "[kernel_dir]\nemulated = \"/nonexistent/kernel-from-config\"\n",
    )
    .args(["build", "-q", "--from"])
    .arg(format!("dir:{}", rootfs.display()))
    .arg("-o")
    .arg(tmp.path().join("x.eif")));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("/nonexistent/kernel-from-config"),
        "{}",
        stderr(&o)
    );

    // clap checks the config's value as it would the flag's.
    let o = run(ctl(tmp.path(), "backend = \"vmware\"\n").args(["run", "x.eif"]));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("vmware"), "{}", stderr(&o));
    // A variable wins over the file.
    let o = run(ctl(tmp.path(), "backend = \"vmware\"\n")
        .env("ENCLAVE_ENGINE_BACKEND", "qemu")
        .args(["run", "--state-dir"])
        .arg(tmp.path().join("s"))
        .arg(tmp.path().join("missing.eif")));
    assert!(!stderr(&o).contains("vmware"), "{}", stderr(&o));
    assert!(stderr(&o).contains("missing.eif"), "{}", stderr(&o));
}

#[test]
fn a_bad_config_file_is_an_error_with_its_path_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let o = run(ctl(tmp.path(), "cpus = 2\nmemroy = 512\n").args(["ps"]));
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("config.toml") && err.contains("memroy"),
        "{err}"
    );
    assert!(err.contains("line 2"), "{err}");
}
