//! `enclave-ctl exec`, `cp` and `services` against a real enclave-init running as PID 1 of a
//! PID + mount namespace (`unshare`, as in enclave-init's tests/pid1.rs), its control server on
//! a Unix socket given to the CLI as `unix:PATH`.
//!
//! Needs root, unshare, a static busybox and the enclave-init binary next to enclave-ctl
//! (`cargo build -p enclave-init`, or `ENCLAVE_INIT_BIN`); skipped without them, failed under
//! CI=true.

mod common;

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{assert_ok, have, require, run, stderr, stdout};

struct Enclave {
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Enclave {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Enclave {
    fn addr(&self) -> String {
        format!(
            "unix:{}",
            self.dir.path().join("rootfs/control.sock").display()
        )
    }
}

fn init_binary() -> Option<PathBuf> {
    let next_to_ctl = Path::new(env!("CARGO_BIN_EXE_enclave-ctl")).with_file_name("enclave-init");
    let bin = std::env::var_os("ENCLAVE_INIT_BIN")
        .map(PathBuf::from)
        .unwrap_or(next_to_ctl);
    require(
        bin.is_file(),
        "the enclave-init binary (cargo build -p enclave-init)",
    )?;
    Some(bin)
}

/// The shared libraries of a dynamically linked (test) build, copied under `root`.
fn copy_libs(binary: &Path, root: &Path) {
    let Ok(out) = Command::new("ldd").arg(binary).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            let dst = root.join(p.trim_start_matches('/'));
            fs::create_dir_all(dst.parent().unwrap()).unwrap();
            fs::copy(p, &dst).unwrap();
        }
    }
}

/// A minimal initramfs (see docs/architecture.md) with a busybox rootfs, booted by unshare.
fn boot(debug: serde_json::Value) -> Option<Enclave> {
    require(nix::unistd::geteuid().is_root(), "root")?;
    require(
        have("unshare") && have("busybox"),
        "unshare and busybox-static",
    )?;
    let init = init_binary()?;
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let root = dir.path();
    let rootfs = root.join("rootfs");
    for d in [
        "dev",
        "proc",
        "sys",
        "tmp",
        "run",
        "enclave-init/modules",
        "enclave",
        "rootfs/bin",
        "rootfs/etc",
    ] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::copy(&init, root.join("init")).unwrap();
    copy_libs(&init, root);
    let busybox = Command::new("sh")
        .args(["-c", "command -v busybox"])
        .output()
        .unwrap();
    let busybox = String::from_utf8_lossy(&busybox.stdout).trim().to_owned();
    fs::copy(&busybox, rootfs.join("bin/busybox")).unwrap();
    for applet in [
        "sh", "cat", "echo", "ls", "stat", "mkdir", "sleep", "true", "tty", "readlink",
    ] {
        symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    fs::write(rootfs.join("etc/group"), "root:x:0:\n").unwrap();
    let config = serde_json::json!({"version": 1, "modules": [], "parent_cid": 3,
        "heartbeat_port": 9000, "kernel_profile": "emulated"});
    fs::write(root.join("enclave-init/config.json"), config.to_string()).unwrap();
    let app = serde_json::json!({"version": 1, "entrypoint": [], "working_dir": "/", "user": "root",
        "cmd": ["/bin/sh", "-c", "echo main-says-hi; while :; do sleep 1; done"], "env": ["PATH=/bin"]});
    fs::write(root.join("enclave/app.json"), app.to_string()).unwrap();
    fs::write(
        root.join("enclave/spec.json"),
        serde_json::json!({"debug": debug}).to_string(),
    )
    .unwrap();
    let child = Command::new("unshare")
        .args([
            "--pid",
            "--fork",
            "--kill-child",
            "--mount",
            "--uts",
            "--net",
            "--ipc",
            "chroot",
        ])
        .arg(root)
        .arg("/init")
        .env("ENCLAVE_INIT_CONTROL_ADDR", "unix:/control.sock")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let enclave = Enclave { child, dir };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !rootfs.join("control.sock").exists() {
        assert!(
            Instant::now() < deadline,
            "the control socket did not appear"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(enclave)
}

fn ctl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_enclave-ctl"))
}

#[test]
fn exec_cp_and_services_through_the_cli() {
    let Some(e) = boot(serde_json::json!({"exec": true, "cp": true})) else {
        return;
    };
    let addr = e.addr();

    // exec: streams apart, the exit status is the command's.
    let o = run(ctl().args([
        "exec",
        &addr,
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 42",
    ]));
    assert_eq!(o.status.code(), Some(42), "{}", stderr(&o));
    assert_eq!(
        (stdout(&o).as_str(), stderr(&o).as_str()),
        ("out\n", "err\n")
    );
    // -i, -e, -w.
    let mut cmd = ctl();
    cmd.args([
        "exec",
        "-i",
        "-e",
        "GREETING=hello",
        "-w",
        "/tmp",
        &addr,
        "--",
    ])
    .args(["sh", "-c", "cat; echo $GREETING from $(pwd)"])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"piped\n").unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "piped\nhello from /tmp\n"
    );
    // A signal: 128 + 9.
    let o = run(ctl().args(["exec", &addr, "--", "sh", "-c", "kill -9 $$"]));
    assert_eq!(o.status.code(), Some(137));
    // -t without a terminal here still gets a pty there.
    let o = run(ctl().args(["exec", "-t", &addr, "--", "tty"]));
    assert!(stdout(&o).starts_with("/dev/pts/"), "{}", stdout(&o));
    // --detach prints a pid.
    let o = run(ctl().args(["exec", "-d", &addr, "--", "sleep", "1"]));
    assert_ok(&o);
    assert!(
        stdout(&o).trim().parse::<u32>().is_ok_and(|p| p > 1),
        "{}",
        stdout(&o)
    );
    // Unknown program: 127.
    let o = run(ctl().args(["exec", &addr, "--", "/no/such"]));
    assert_eq!(o.status.code(), Some(127));

    // cp both ways, a tree with a symlink and modes.
    let host = tempfile::tempdir().unwrap();
    let tree = host.path().join("tree");
    fs::create_dir_all(tree.join("sub")).unwrap();
    fs::write(tree.join("sub/file"), "content").unwrap();
    fs::set_permissions(tree.join("sub/file"), fs::Permissions::from_mode(0o600)).unwrap();
    symlink("sub/file", tree.join("link")).unwrap();
    let o = run(ctl().args(["cp", tree.to_str().unwrap(), &format!("{addr}:/tmp")]));
    assert_ok(&o);
    let o = run(ctl().args([
        "exec",
        &addr,
        "--",
        "sh",
        "-c",
        "stat -c %a /tmp/tree/sub/file; readlink /tmp/tree/link",
    ]));
    assert_eq!(stdout(&o), "600\nsub/file\n");
    let back = host.path().join("back");
    fs::create_dir(&back).unwrap();
    let o = run(ctl().args(["cp", &format!("{addr}:/tmp/tree"), back.to_str().unwrap()]));
    assert_ok(&o);
    assert_eq!(
        fs::read_to_string(back.join("tree/link")).unwrap(),
        "content"
    );
    assert_eq!(
        fs::metadata(back.join("tree/sub/file"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    // services.
    let o = run(ctl().args(["services", &addr]));
    assert_ok(&o);
    assert!(
        stdout(&o).contains("main") && stdout(&o).contains("running"),
        "{}",
        stdout(&o)
    );
    let o = run(ctl().args(["services", &addr, "logs", "main"]));
    assert_eq!(stdout(&o), "main-says-hi\n");
    let o = run(ctl().args(["services", &addr, "status", "nope"]));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no service named"), "{}", stderr(&o));
}

#[test]
fn refusals_and_missing_enclaves_are_clear() {
    let Some(e) = boot(serde_json::json!({})) else {
        return;
    };
    let o = run(ctl().args(["exec", &e.addr(), "--", "true"]));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("does not allow debug.exec"),
        "{}",
        stderr(&o)
    );
    let o = run(ctl().args(["cp", "/etc/hostname", &format!("{}:/tmp", e.addr())]));
    assert!(
        stderr(&o).contains("does not allow debug.cp"),
        "{}",
        stderr(&o)
    );
    // Nothing there: retried, then a clear error.
    let gone = format!("unix:{}", e.dir.path().join("nothing.sock").display());
    let o = run(ctl().args(["exec", "--connect-timeout", "1", &gone, "--", "true"]));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no enclave answered at"),
        "{}",
        stderr(&o)
    );
}
