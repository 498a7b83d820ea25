//! enclave-init as PID 1 of a PID + mount namespace (`unshare`, as in enclave-init's
//! tests/pid1.rs) with a busybox rootfs, its control server on a Unix socket that the CLI is
//! given as `unix:PATH`: what `cli_control` and `cli_control_cp` drive with `enclave-ctl`.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{have, require};

pub struct Enclave {
    child: Child,
    pub dir: tempfile::TempDir,
}

impl Drop for Enclave {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Enclave {
    pub fn addr(&self) -> String {
        format!(
            "unix:{}",
            self.dir.path().join("rootfs/control.sock").display()
        )
    }
}

pub fn init_binary() -> Option<PathBuf> {
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
pub fn copy_libs(binary: &Path, root: &Path) {
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
pub fn with_test_key(mut debug: serde_json::Value) -> serde_json::Value {
    debug["authorized_keys"] = serde_json::json!([test_key().1]);
    debug
}

/// A minimal initramfs (see docs/architecture.md) with a busybox rootfs, booted by unshare.
pub fn boot(debug: serde_json::Value) -> Option<Enclave> {
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
pub fn test_key() -> &'static (PathBuf, String) {
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
pub fn ctl(sub: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_enclave-ctl"));
    cmd.arg(sub)
        .arg("--key")
        .arg(&test_key().0)
        .arg("--any-enclave");
    cmd
}
