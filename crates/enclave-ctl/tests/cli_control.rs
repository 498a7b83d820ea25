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

/// The `debug` section with the test key authorized.
fn with_test_key(mut debug: serde_json::Value) -> serde_json::Value {
    debug["authorized_keys"] = serde_json::json!([test_key().1]);
    debug
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
        "sh", "cat", "echo", "ls", "stat", "mkdir", "sleep", "true", "tty", "readlink", "ln",
        "chmod",
    ] {
        symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    fs::write(rootfs.join("etc/group"), "root:x:0:\n").unwrap();
    let config = enclave_proto::init::InitConfig::new("emulated", vec![], None);
    fs::write(
        root.join("enclave-init/config.json"),
        serde_json::to_string(&config).unwrap(),
    )
    .unwrap();
    let app = serde_json::json!({"version": 1, "entrypoint": [], "working_dir": "/", "user": "root",
        "cmd": ["/bin/sh", "-c", "echo main-says-hi; while :; do sleep 1; done"], "env": ["PATH=/bin"]});
    fs::write(root.join("enclave/app.json"), app.to_string()).unwrap();
    fs::write(
        root.join("enclave/spec.json"),
        serde_json::json!({"debug": with_test_key(debug)}).to_string(),
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

/// The key the test enclaves list in `debug.authorized_keys`: made once per run, never
/// committed. Returns the key file and the base64 public key.
fn test_key() -> &'static (PathBuf, String) {
    static KEY: std::sync::OnceLock<(PathBuf, String)> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        use base64ct::Encoding as _;
        let mut seed = [0u8; 32];
        use std::io::Read as _;
        fs::File::open("/dev/urandom")
            .unwrap()
            .read_exact(&mut seed)
            .unwrap();
        let key = enclave_proto::wire::auth::SigningKey::from_bytes(&seed);
        let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("cli-control-{}.key", std::process::id()));
        fs::write(&path, base64ct::Base64::encode_string(&seed)).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let public = base64ct::Base64::encode_string(&key.verifying_key().to_bytes());
        (path, public)
    })
}

/// `enclave-ctl SUB` reaching the test enclaves by address: a key of their
/// `debug.authorized_keys`, and no identity to check (they have no NSM to attest one).
fn ctl(sub: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_enclave-ctl"));
    cmd.arg(sub)
        .arg("--key")
        .arg(&test_key().0)
        .arg("--any-enclave");
    cmd
}

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
