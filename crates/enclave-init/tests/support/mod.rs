//! A fake enclave for the PID 1 tests: an initramfs directory and the unshare'd init in it.

#[allow(dead_code)] // used by the control tests only
pub mod control;

use std::fs;
use std::io::Read;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use enclave_proto::app::{AppConfig, APP_CONFIG_VERSION};
use enclave_proto::init::InitConfig;

/// A prepared initramfs directory.
pub struct Enclave {
    dir: tempfile::TempDir,
}

/// A running enclave: the unshare process and everything it printed.
pub struct Run {
    child: Child,
    output: Arc<Mutex<String>>,
    _enclave: Enclave,
}

/// Lines of `out` containing `needle`.
pub fn count(out: &str, needle: &str) -> usize {
    out.lines().filter(|l| l.contains(needle)).count()
}

/// The first line of `out` containing `needle`.
pub fn find<'a>(out: &'a str, needle: &str) -> Option<&'a str> {
    out.lines().find(|l| l.contains(needle))
}

/// The command name of a host pid.
pub fn comm(pid: i32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_owned())
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// Skips the test (prints why), or fails it under CI, where the setup must provide everything.
fn missing(what: &str) -> Option<Enclave> {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("PID 1 test prerequisite missing under CI: {what}");
    }
    eprintln!("SKIPPED: PID 1 test needs {what}");
    None
}

/// Copies the shared libraries a dynamically linked binary needs (per ldd) under `root`.
fn copy_libs(binary: &Path, root: &Path) {
    let Ok(out) = Command::new("ldd").arg(binary).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or "/lib64/ld-linux… (0x…)"
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

impl Enclave {
    /// Builds the initramfs: /init, /enclave-init/config.json, /rootfs (busybox, /etc/passwd,
    /// /etc/group, /www), /enclave/app.json and /enclave/spec.json. `None`: skipped.
    pub fn prepare(spec: &serde_json::Value, argv: &[String], user: &str) -> Option<Enclave> {
        if !nix::unistd::geteuid().is_root() {
            return missing("root");
        }
        if which("unshare").is_none() || which("chroot").is_none() {
            return missing("unshare and chroot (util-linux, coreutils)");
        }
        let Some(busybox) = which("busybox") else {
            return missing("busybox (the busybox-static package)");
        };
        let init_bin = std::env::var_os("ENCLAVE_INIT_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_enclave-init")));

        // Not in /tmp: it may be mounted noexec.
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let root = dir.path();
        for d in [
            "dev",
            "proc",
            "sys",
            "tmp",
            "run",
            "enclave-init/modules",
            "enclave",
        ] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        fs::copy(&init_bin, root.join("init")).unwrap();
        copy_libs(&init_bin, root);
        let config = InitConfig::new("emulated", vec![], None);
        fs::write(
            root.join("enclave-init/config.json"),
            serde_json::to_vec(&config).unwrap(),
        )
        .unwrap();

        let rootfs = root.join("rootfs");
        fs::create_dir_all(rootfs.join("bin")).unwrap();
        fs::create_dir_all(rootfs.join("etc")).unwrap();
        fs::create_dir_all(rootfs.join("www")).unwrap();
        fs::copy(&busybox, rootfs.join("bin/busybox")).unwrap();
        fs::set_permissions(
            rootfs.join("bin/busybox"),
            fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        let list = Command::new(&busybox).arg("--list").output().unwrap();
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            if !applet.is_empty() && applet != "busybox" {
                symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
            }
        }
        // A dynamically linked busybox cannot run in the rootfs.
        let works = Command::new("chroot")
            .arg(&rootfs)
            .args(["/bin/busybox", "true"])
            .status()
            .is_ok_and(|s| s.success());
        if !works {
            return missing("a statically linked busybox (the busybox-static package)");
        }
        fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
        )
        .unwrap();
        fs::write(
            rootfs.join("etc/group"),
            "root:x:0:\napp:x:1000:\nextra:x:2000:app\n",
        )
        .unwrap();
        fs::write(rootfs.join("www/index.html"), "hello-enclave").unwrap();

        let app = AppConfig {
            version: APP_CONFIG_VERSION,
            entrypoint: vec![],
            cmd: argv.to_vec(),
            env: vec!["PATH=/bin".into()],
            working_dir: "/".into(),
            user: user.into(),
        };
        fs::write(
            root.join("enclave/app.json"),
            serde_json::to_vec(&app).unwrap(),
        )
        .unwrap();
        fs::write(
            root.join("enclave/spec.json"),
            serde_json::to_vec(spec).unwrap(),
        )
        .unwrap();
        Some(Enclave { dir })
    }

    /// Runs /init as PID 1 of new PID, mount, UTS, network and IPC namespaces.
    /// The app's root filesystem on the host (where a test puts its sockets before the boot).
    pub fn rootfs(&self) -> std::path::PathBuf {
        self.dir.path().join("rootfs")
    }

    pub fn boot(self, env: &[(&str, &str)]) -> Run {
        let mut child = Command::new("unshare")
            // --kill-child: if this test dies, the namespace dies with it.
            .args([
                "--pid",
                "--fork",
                "--kill-child",
                "--mount",
                "--uts",
                "--net",
                "--ipc",
            ])
            .arg("chroot")
            .arg(self.dir.path())
            .arg("/init")
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run unshare");
        let output = Arc::new(Mutex::new(String::new()));
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let output = output.clone();
            std::thread::spawn(move || read_into(pipe, &output));
        }
        Run {
            child,
            output,
            _enclave: self,
        }
    }
}

fn read_into(mut pipe: Box<dyn Read + Send>, output: &Mutex<String>) {
    let mut buf = [0u8; 8192];
    while let Ok(n) = pipe.read(&mut buf) {
        if n == 0 {
            break;
        }
        output
            .lock()
            .unwrap()
            .push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

impl Run {
    /// Everything printed so far.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Waits until `done(output)` holds; false on timeout.
    pub fn wait_for(&self, limit: Duration, done: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if done(&self.output()) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// The host pid of the namespace's init: unshare's only child.
    pub fn init_host_pid(&self) -> Option<i32> {
        let pid = self.child.id();
        if let Ok(children) = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
            return children.split_whitespace().next()?.parse().ok();
        }
        // Kernels without CONFIG_PROC_CHILDREN: look for the process whose parent is unshare.
        fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
            let child: i32 = e.file_name().to_str()?.parse().ok()?;
            let stat = fs::read_to_string(e.path().join("stat")).ok()?;
            let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?;
            (ppid.parse::<u32>().ok()? == pid).then_some(child)
        })
    }

    /// Waits for unshare to exit (and lets the output readers catch up); `None` on timeout,
    /// after killing it.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Run {
    /// The initramfs directory on the host (its `rootfs/` is the enclave's `/`).
    #[allow(dead_code)] // used by the control tests only
    pub fn root(&self) -> &Path {
        self._enclave.dir.path()
    }

    /// Prints the console if the test is still running after `after` (debugging hangs).
    #[allow(dead_code)] // used by the control tests only
    pub fn watchdog(&self, after: Duration) {
        let output = self.output.clone();
        std::thread::spawn(move || {
            std::thread::sleep(after);
            eprintln!(
                "---- console after {after:?} ----\n{}",
                output.lock().unwrap()
            );
        });
    }
}
