//! `enclave-ctl cp` against a real enclave-init running as PID 1 of a PID + mount namespace
//! (`common::pidns`): Docker's naming rules, and never a write through a symlink or with a
//! set-id bit kept.
//!
//! Needs root, unshare, a static busybox and the enclave-init binary next to enclave-ctl
//! (`cargo build -p enclave-init`, or `ENCLAVE_INIT_BIN`); skipped without them, failed under
//! CI=true.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::pidns::{boot, ctl};
use common::{assert_ok, run, stderr, stdout};

#[test]
fn cp_to_a_new_name_like_docker() {
    let Some(e) = boot(serde_json::json!({"exec": true, "cp": true})) else {
        return;
    };
    let addr = e.addr();
    let enc = |p: &str| format!("{addr}:{p}");
    let sh = |script: &str| stdout(&run(ctl("exec").args([&addr, "--", "sh", "-c", script])));
    let cp = |src: &str, dst: &str| run(ctl("cp").args([src, dst]));
    let host = tempfile::tempdir().unwrap();
    let h = |p: &str| host.path().join(p).to_str().unwrap().to_owned();
    fs::write(h("file"), "one").unwrap();
    fs::create_dir_all(h("dir/sub")).unwrap();
    fs::write(h("dir/sub/f"), "two").unwrap();

    // A file to a new name, both ways.
    assert_ok(&cp(&h("file"), &enc("/tmp/renamed")));
    assert_eq!(sh("cat /tmp/renamed"), "one");
    assert_ok(&cp(&enc("/tmp/renamed"), &h("back")));
    assert_eq!(fs::read_to_string(h("back")).unwrap(), "one");
    // A directory to a new name, both ways: the tree arrives AS the new name.
    assert_ok(&cp(&h("dir"), &enc("/tmp/newdir")));
    assert_eq!(sh("cat /tmp/newdir/sub/f; ls /tmp"), "twonewdir\nrenamed\n");
    assert_ok(&cp(&enc("/tmp/newdir"), &h("dirback")));
    assert_eq!(fs::read_to_string(h("dirback/sub/f")).unwrap(), "two");
    // Into an existing directory: unchanged.
    assert_ok(&cp(&h("dir"), &enc("/tmp/newdir")));
    assert_eq!(sh("cat /tmp/newdir/dir/sub/f"), "two");
    assert_ok(&cp(&enc("/tmp/newdir"), &h("dirback")));
    assert_eq!(
        fs::read_to_string(h("dirback/newdir/sub/f")).unwrap(),
        "two"
    );
    // A file onto an existing file replaces it.
    fs::write(h("file"), "uno").unwrap();
    assert_ok(&cp(&h("file"), &enc("/tmp/renamed")));
    assert_eq!(sh("cat /tmp/renamed"), "uno");

    // Refused: the destination's parent is missing.
    let o = cp(&h("file"), &enc("/no/such/name"));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("parent /no/such does not exist"),
        "{}",
        stderr(&o)
    );
    let o = cp(&enc("/tmp/renamed"), &h("no/such/name"));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
    assert!(!host.path().join("no").exists());
    // Refused: a directory onto an existing file (which stays).
    let o = cp(&h("dir"), &enc("/tmp/renamed"));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("cannot copy a directory onto it"),
        "{}",
        stderr(&o)
    );
    assert_eq!(sh("cat /tmp/renamed"), "uno");
    let o = cp(&enc("/tmp/newdir"), &h("back"));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("cannot copy a directory onto it"),
        "{}",
        stderr(&o)
    );
    assert_eq!(fs::read_to_string(h("back")).unwrap(), "one");
    // No temporary file left on either side.
    assert!(!sh("ls -a /tmp /tmp/newdir").contains(".enclave-cp"));
    let local = fs::read_dir(host.path()).unwrap();
    assert!(local
        .map(|e| e.unwrap().file_name())
        .all(|n| !n.to_string_lossy().starts_with(".enclave-cp")));
}

#[test]
fn cp_never_writes_through_a_symlink_or_a_set_id_bit() {
    let Some(e) = boot(serde_json::json!({"exec": true, "cp": true})) else {
        return;
    };
    let addr = e.addr();
    let enc = |p: &str| format!("{addr}:{p}");
    let sh = |script: &str| stdout(&run(ctl("exec").args([&addr, "--", "sh", "-c", script])));
    let host = tempfile::tempdir().unwrap();
    let file = host.path().join("payload");
    fs::write(&file, "owned").unwrap();
    let file = file.to_str().unwrap();

    // The app runs as root here: the destination check alone keeps the copy out of /etc.
    sh("mkdir /tmp/real && ln -s /etc /tmp/link");
    for dest in ["/tmp/link", "/tmp/link/passwd"] {
        let o = run(ctl("cp").args([file, &enc(dest)]));
        assert_eq!(o.status.code(), Some(1), "{dest}");
        assert!(
            stderr(&o).contains("/tmp/link is a symlink (to /etc); cp does not follow symlinks"),
            "{dest}: {}",
            stderr(&o)
        );
    }
    assert_eq!(
        sh("ls /etc; cat /etc/passwd"),
        "group\npasswd\nroot:x:0:0:root:/root:/bin/sh\n"
    );

    // A set-id file of the enclave is written without its bits on the host, and back.
    sh("echo x > /tmp/real/tool && chmod 6755 /tmp/real/tool");
    let back = host.path().join("back");
    fs::create_dir(&back).unwrap();
    assert_ok(&run(
        ctl("cp").args([&enc("/tmp/real/tool"), back.to_str().unwrap()])
    ));
    let tool = back.join("tool");
    assert_eq!(
        fs::metadata(&tool).unwrap().permissions().mode() & 0o7777,
        0o755
    );
    fs::set_permissions(&tool, fs::Permissions::from_mode(0o4755)).unwrap();
    assert_ok(&run(
        ctl("cp").args([tool.to_str().unwrap(), &enc("/tmp/real/up")])
    ));
    assert_eq!(sh("stat -c %a /tmp/real/up"), "755\n");
}
