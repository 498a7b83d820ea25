//! `enclave-ctl exec` and `services` against a real enclave-init running as PID 1 of a PID +
//! mount namespace (`common::pidns`), its control server on a Unix socket given to the CLI as
//! `unix:PATH`; `cp` is in cli_control_cp.rs.
//!
//! Needs root, unshare, a static busybox and the enclave-init binary next to enclave-ctl
//! (`cargo build -p enclave-init`, or `ENCLAVE_INIT_BIN`); skipped without them, failed under
//! CI=true.

mod common;

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::pidns::{boot, ctl, test_key};
use common::{assert_ok, have, require, run, stderr, stdout};

#[test]
fn exec_cp_and_services_through_the_cli() {
    let Some(e) = boot(serde_json::json!({"exec": true, "cp": true})) else {
        return;
    };
    let addr = e.addr();

    // exec: streams apart, the exit status is the command's.
    let o = run(ctl("exec").args([&addr, "--", "sh", "-c", "echo out; echo err >&2; exit 42"]));
    assert_eq!(o.status.code(), Some(42), "{}", stderr(&o));
    // The process's stderr, after the CLI's own warning about --any-enclave.
    let err = stderr(&o);
    let (warning, rest) = err.split_once('\n').unwrap();
    assert!(warning.starts_with("warning: --any-enclave"), "{err}");
    assert_eq!((stdout(&o).as_str(), rest), ("out\n", "err\n"));
    // -i, -e, -w.
    let mut cmd = ctl("exec");
    cmd.args(["-i", "-e", "GREETING=hello", "-w", "/tmp", &addr, "--"])
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
    let o = run(ctl("exec").args([&addr, "--", "sh", "-c", "kill -9 $$"]));
    assert_eq!(o.status.code(), Some(137));
    // -t without a terminal here still gets a pty there.
    let o = run(ctl("exec").args(["-t", &addr, "--", "tty"]));
    assert!(stdout(&o).starts_with("/dev/pts/"), "{}", stdout(&o));
    // --detach prints a pid.
    let o = run(ctl("exec").args(["-d", &addr, "--", "sleep", "1"]));
    assert_ok(&o);
    assert!(
        stdout(&o).trim().parse::<u32>().is_ok_and(|p| p > 1),
        "{}",
        stdout(&o)
    );
    // Unknown program: 127.
    let o = run(ctl("exec").args([&addr, "--", "/no/such"]));
    assert_eq!(o.status.code(), Some(127));

    // cp both ways, a tree with a symlink and modes.
    let host = tempfile::tempdir().unwrap();
    let tree = host.path().join("tree");
    fs::create_dir_all(tree.join("sub")).unwrap();
    fs::write(tree.join("sub/file"), "content").unwrap();
    fs::set_permissions(tree.join("sub/file"), fs::Permissions::from_mode(0o600)).unwrap();
    symlink("sub/file", tree.join("link")).unwrap();
    let o = run(ctl("cp").args([tree.to_str().unwrap(), &format!("{addr}:/tmp")]));
    assert_ok(&o);
    let o = run(ctl("exec").args([
        &addr,
        "--",
        "sh",
        "-c",
        "stat -c %a /tmp/tree/sub/file; readlink /tmp/tree/link",
    ]));
    assert_eq!(stdout(&o), "600\nsub/file\n");
    let back = host.path().join("back");
    fs::create_dir(&back).unwrap();
    let o = run(ctl("cp").args([&format!("{addr}:/tmp/tree"), back.to_str().unwrap()]));
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
    let o = run(ctl("services").args([&addr]));
    assert_ok(&o);
    assert!(
        stdout(&o).contains("main") && stdout(&o).contains("running"),
        "{}",
        stdout(&o)
    );
    let o = run(ctl("services").args([&addr, "logs", "main"]));
    assert_eq!(stdout(&o), "main-says-hi\n");
    let o = run(ctl("services").args([&addr, "status", "nope"]));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no service named"), "{}", stderr(&o));
}

#[test]
fn refusals_and_missing_enclaves_are_clear() {
    let Some(e) = boot(serde_json::json!({})) else {
        return;
    };
    let o = run(ctl("exec").args([&e.addr(), "--", "true"]));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("does not allow debug.exec"),
        "{}",
        stderr(&o)
    );
    let o = run(ctl("cp").args(["/etc/hostname", &format!("{}:/tmp", e.addr())]));
    assert!(
        stderr(&o).contains("does not allow debug.cp"),
        "{}",
        stderr(&o)
    );
    // By address, a key and an expectation of the enclave's identity are required.
    let bare = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_enclave-ctl"));
        c.args(["exec", &e.addr()]);
        c
    };
    let o = run(bare().args(["--any-enclave", "--", "true"]));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("needs --key"), "{}", stderr(&o));
    let o = run(bare().arg("--key").arg(&test_key().0).args(["--", "true"]));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("--enclave-pcr 0=HEX") && stderr(&o).contains("--any-enclave"),
        "{}",
        stderr(&o)
    );
    // Nothing there: retried, then a clear error.
    let gone = format!("unix:{}", e.dir.path().join("nothing.sock").display());
    let o = run(ctl("exec").args(["--connect-timeout", "1", &gone, "--", "true"]));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no enclave answered at"),
        "{}",
        stderr(&o)
    );
}

/// A tmux server on a private socket, killed on drop.
struct Tmux {
    sock: PathBuf,
}

impl Tmux {
    fn cmd(&self, args: &[&str]) -> std::process::Output {
        let o = Command::new("tmux")
            .arg("-S")
            .arg(&self.sock)
            .args(["-f", "/dev/null"])
            .args(args)
            .env_remove("TMUX")
            .output()
            .unwrap();
        assert_ok(&o);
        o
    }

    /// `rows cols` of the pane.
    fn size(&self) -> String {
        let o = self.cmd(&[
            "display-message",
            "-p",
            "-t",
            "t",
            "#{pane_height} #{pane_width}",
        ]);
        stdout(&o).trim().to_owned()
    }

    /// Captures the pane until it shows all of `what`.
    fn wait_for(&self, what: &[&str], deadline: Instant) -> String {
        loop {
            let screen = stdout(&self.cmd(&["capture-pane", "-p", "-t", "t"]));
            if what.iter().all(|w| screen.contains(w)) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "the pane never showed {what:?}:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.sock)
            .arg("kill-server")
            .output();
    }
}

#[test]
fn exec_it_in_a_real_terminal() {
    if require(have("tmux"), "tmux").is_none() {
        return;
    }
    let Some(e) = boot(serde_json::json!({"exec": true})) else {
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    let tmux = Tmux {
        sock: e.dir.path().join("tmux.sock"),
    };
    let command = format!(
        "'{}' exec --key '{}' --any-enclave -it '{}' -- /bin/sh; echo exec-ended-$?; sleep 60",
        env!("CARGO_BIN_EXE_enclave-ctl"),
        test_key().0.display(),
        e.addr()
    );
    tmux.cmd(&[
        "new-session",
        "-d",
        "-s",
        "t",
        "-x",
        "100",
        "-y",
        "30",
        &command,
    ]);
    let size = tmux.size();
    tmux.cmd(&[
        "send-keys",
        "-t",
        "t",
        "busybox stty size; tty; echo $((6*7))",
        "Enter",
    ]);
    tmux.wait_for(&["42", "/dev/pts/", &size], deadline);

    // SIGWINCH: the enclave's terminal follows the pane.
    tmux.cmd(&["resize-window", "-t", "t", "-x", "70", "-y", "20"]);
    let resized = tmux.size();
    assert_ne!(resized, size);
    tmux.cmd(&["send-keys", "-t", "t", "clear; busybox stty size", "Enter"]);
    tmux.wait_for(&[&resized], deadline);

    tmux.cmd(&["send-keys", "-t", "t", "exit", "Enter"]);
    tmux.wait_for(&["exec-ended-0"], deadline);
}
