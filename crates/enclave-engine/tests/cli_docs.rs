//! enclave-engine's own man pages and completions, from the real binary (the installer puts
//! them next to enclave-ctl's).

use std::process::Command;

fn engine() -> Command {
    Command::new(env!("CARGO_BIN_EXE_enclave-engine"))
}

#[test]
fn engine_writes_man_pages_and_a_bash_completion_that_parses() {
    let dir = tempfile::tempdir().unwrap();
    let o = engine()
        .args(["man", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let page = std::fs::read_to_string(dir.path().join("enclave-engine-supervise.1")).unwrap();
    let th = page.lines().find(|l| l.starts_with(".TH ")).unwrap();
    assert!(th.starts_with(".TH enclave-engine-supervise 1 "), "{th}");
    assert!(page.contains("boot\\-timeout"), "the flags are described");
    assert!(dir.path().join("enclave-engine.1").is_file());
    assert!(
        !dir.path().join("enclave-engine-man.1").exists(),
        "hidden `man` paged"
    );

    let o = engine().args(["completion", "bash"]).output().unwrap();
    assert!(o.status.success());
    let script = dir.path().join("enclave-engine.bash");
    std::fs::write(&script, &o.stdout).unwrap();
    let check = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .status()
        .unwrap();
    assert!(check.success(), "bash -n on the completion");
    assert!(String::from_utf8_lossy(&o.stdout).contains("supervise"));
}
