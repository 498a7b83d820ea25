//! The emulated Nitro backend: a QEMU `microvm` booting the EIF's kernel, command line and
//! ramdisks, with a `vhost-user-vsock-device` served by `vhost-device-vsock` (one per enclave,
//! with the enclave's CID), the serial console on QEMU's stdout.
//!
//! The measured command line is kept and parameters are appended (not measured, as a
//! bootloader would): `enclave.parent_cid=2` (the host is CID 2 here, 3 on Nitro) and, under
//! TCG, `tsc_early_khz=<host TSC> tsc=reliable` (see [`crate::backend::accel`] and
//! docs/architecture.md, "Emulated backend").

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use enclave_proto::init::PARENT_CID_CMDLINE_PARAM;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::accel::{self, Accel};
use super::{
    which, Backend, BackendKind, Instance, InstanceExit, InstanceInfo, LaunchSpec, VsockRoute,
};
use crate::eif::{self, EifInfo};
use crate::error::{EngineError, Result};
use crate::spawn_unsafe::{prepare, Tie};

/// The QEMU binary (`ENCLAVE_ENGINE_QEMU` overrides).
pub const QEMU: &str = "qemu-system-x86_64";
/// The vhost-user vsock device (`ENCLAVE_ENGINE_VHOST_VSOCK` overrides).
pub const VHOST_VSOCK: &str = "vhost-device-vsock";

/// How long vhost-device-vsock may take to create its socket.
const VHOST_SOCKET_WAIT: Duration = Duration::from_secs(5);

/// Socket names in the enclave directory.
pub const VHOST_SOCKET: &str = "vhost.sock";
/// The hybrid vsock socket (`<it>_<port>` for guest-to-host connections); the rest of the
/// engine reaches it through [`VsockRoute`].
const VSOCK_SOCKET: &str = "vsock.sock";

/// The emulated enclave's vsock: vhost-device-vsock's hybrid socket in `sockets`.
pub(super) fn hybrid_route(cid: u32, sockets: &Path) -> VsockRoute {
    VsockRoute::hybrid(cid, sockets.join(VSOCK_SOCKET))
}

fn tool(env: &str, default: &str, hint: &str) -> Result<PathBuf> {
    let name = std::env::var(env).unwrap_or_else(|_| default.to_owned());
    which(&name)
        .or_else(|| {
            // `cargo install` puts vhost-device-vsock here, often not on root's PATH.
            let home = std::env::var_os("HOME")?;
            let p = Path::new(&home).join(".cargo/bin").join(&name);
            p.is_file().then_some(p)
        })
        .ok_or_else(|| EngineError::MissingTool {
            tool: name,
            hint: hint.to_owned(),
        })
}

/// The QEMU binary.
pub fn qemu_binary() -> Result<PathBuf> {
    tool(
        "ENCLAVE_ENGINE_QEMU",
        QEMU,
        "install qemu-system-x86 (scripts/setup.sh does)",
    )
}

/// The vhost-device-vsock binary.
pub fn vhost_vsock_binary() -> Result<PathBuf> {
    tool(
        "ENCLAVE_ENGINE_VHOST_VSOCK",
        VHOST_VSOCK,
        "run `cargo install vhost-device-vsock --locked` (scripts/setup.sh does)",
    )
}

/// The emulated backend.
pub struct QemuBackend {
    accel_cache: PathBuf,
}

impl QemuBackend {
    /// A backend caching its KVM probe under `state_root`.
    pub fn new(state_root: &Path) -> Self {
        Self {
            accel_cache: state_root.join("accel.json"),
        }
    }
}

/// The kernel parameters appended for an enclave whose parent is `parent_cid`, under `accel`.
pub fn extra_cmdline(parent_cid: u32, accel: Accel) -> String {
    let mut extra = format!("{PARENT_CID_CMDLINE_PARAM}={parent_cid}");
    if accel == Accel::Tcg {
        if let Some(khz) = crate::tsc_unsafe::host_tsc_khz() {
            extra.push_str(&format!(" tsc_early_khz={khz} tsc=reliable"));
        }
    }
    // For tests and debugging (e.g. `enclave.parent_cid=99` makes the heartbeat fail).
    if let Ok(more) = std::env::var("ENCLAVE_ENGINE_EXTRA_CMDLINE") {
        if !more.trim().is_empty() {
            extra.push(' ');
            extra.push_str(more.trim());
        }
    }
    extra
}

/// QEMU's arguments (everything but the binary).
pub fn qemu_args(
    spec: &LaunchSpec,
    accel: Accel,
    kernel: &Path,
    initrd: &Path,
    cmdline: &str,
) -> Vec<String> {
    let mem = spec.memory_mib;
    let mut args: Vec<String> = vec![
        "-M".into(),
        "microvm,memory-backend=mem,isa-serial=on,rtc=on".into(),
        "-accel".into(),
        accel.as_str().into(),
    ];
    if accel == Accel::Kvm {
        args.extend(["-cpu".into(), "host".into()]);
    }
    args.extend([
        "-smp".into(),
        spec.cpus.to_string(),
        "-m".into(),
        format!("{mem}M"),
        "-object".into(),
        format!("memory-backend-memfd,id=mem,size={mem}M,share=on"),
        "-nodefaults".into(),
        "-no-user-config".into(),
        "-display".into(),
        "none".into(),
        "-no-reboot".into(),
        "-chardev".into(),
        "stdio,id=console,signal=off".into(),
        "-serial".into(),
        "chardev:console".into(),
        "-chardev".into(),
        format!(
            "socket,id=vsock,path={}",
            spec.sockets.join(VHOST_SOCKET).display()
        ),
        "-device".into(),
        "vhost-user-vsock-device,chardev=vsock".into(),
        "-kernel".into(),
        kernel.display().to_string(),
        "-initrd".into(),
        initrd.display().to_string(),
        "-append".into(),
        cmdline.into(),
    ]);
    args
}

fn log_file(path: &Path) -> Result<File> {
    File::create(path).map_err(|e| EngineError::io(path, e))
}

fn spawn(cmd: &mut Command, what: &str) -> Result<Child> {
    prepare(cmd, Tie::DieWithParent);
    cmd.spawn().map_err(|error| EngineError::Spawn {
        what: what.to_owned(),
        error,
    })
}

impl Backend for QemuBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Qemu
    }

    fn vsock_route(&self, cid: u32, sockets: &Path) -> VsockRoute {
        hybrid_route(cid, sockets)
    }

    fn preflight(&self, spec: &LaunchSpec, eif: &EifInfo) -> Result<()> {
        qemu_binary()?;
        vhost_vsock_binary()?;
        eif.check_memory(spec.memory_mib)?;
        if spec.cpus == 0 {
            return Err(EngineError::Invalid("--cpus must be at least 1".into()));
        }
        Ok(())
    }

    fn launch(&mut self, spec: &LaunchSpec) -> Result<Box<dyn Instance>> {
        let qemu = qemu_binary()?;
        let vhost = vhost_vsock_binary()?;
        let boot = eif::boot::extract_boot_files(&spec.eif, &spec.dir, &spec.measurements)?;
        let choice = accel::choose(&qemu, &boot.kernel, &self.accel_cache);
        tracing::info!(accel = choice.accel.as_str(), reason = %choice.reason, "accelerator");
        let route = self.vsock_route(spec.cid, &spec.sockets);
        let extra = extra_cmdline(route.parent_cid(), choice.accel);
        let cmdline = format!("{} {extra}", boot.cmdline.trim_end());

        let vhost_sock = spec.sockets.join(VHOST_SOCKET);
        let vsock_sock = spec.sockets.join(VSOCK_SOCKET);
        let _ = std::fs::remove_file(&vhost_sock);
        let _ = std::fs::remove_file(&vsock_sock);
        let mut vcmd = Command::new(&vhost);
        vcmd.arg("--vm")
            .arg(format!(
                "guest-cid={},socket={},uds-path={}",
                spec.cid,
                vhost_sock.display(),
                vsock_sock.display()
            ))
            .stdin(Stdio::null())
            .stdout(log_file(&spec.dir.join("vhost-device-vsock.log"))?)
            .stderr(log_file(&spec.dir.join("vhost-device-vsock.err"))?);
        let mut vdev = spawn(&mut vcmd, "vhost-device-vsock")?;
        let deadline = Instant::now() + VHOST_SOCKET_WAIT;
        while !vhost_sock.exists() {
            if let Ok(Some(status)) = vdev.try_wait() {
                let err = std::fs::read_to_string(spec.dir.join("vhost-device-vsock.err"))
                    .unwrap_or_default();
                return Err(EngineError::Backend(format!(
                    "vhost-device-vsock exited ({status}) before creating its socket: {}",
                    err.trim()
                )));
            }
            if Instant::now() > deadline {
                let _ = vdev.kill();
                let _ = vdev.wait();
                return Err(EngineError::Timeout(format!(
                    "vhost-device-vsock did not create {} within {} s",
                    vhost_sock.display(),
                    VHOST_SOCKET_WAIT.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }

        let args = qemu_args(spec, choice.accel, &boot.kernel, &boot.initrd, &cmdline);
        tracing::debug!(?args, "starting qemu");
        let mut qcmd = Command::new(&qemu);
        qcmd.args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file(&spec.dir.join("qemu.err"))?);
        let mut qemu_child = match spawn(&mut qcmd, "qemu") {
            Ok(c) => c,
            Err(e) => {
                let _ = vdev.kill();
                let _ = vdev.wait();
                return Err(e);
            }
        };
        let console = qemu_child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>);
        Ok(Box::new(QemuInstance {
            info: InstanceInfo {
                pid: Some(qemu_child.id()),
                vsock_pid: Some(vdev.id()),
                accel: Some(choice.accel.as_str().to_owned()),
                enclave_id: None,
                extra_cmdline: Some(extra),
            },
            qemu: qemu_child,
            vdev: Some(vdev),
            console,
            err_log: spec.dir.join("qemu.err"),
        }))
    }
}

/// A running QEMU and its vsock device.
pub struct QemuInstance {
    info: InstanceInfo,
    qemu: Child,
    vdev: Option<Child>,
    console: Option<Box<dyn Read + Send>>,
    err_log: PathBuf,
}

impl QemuInstance {
    fn describe(&mut self, status: std::process::ExitStatus) -> InstanceExit {
        use std::os::unix::process::ExitStatusExt;
        if let Some(mut vdev) = self.vdev.take() {
            let _ = vdev.kill();
            let _ = vdev.wait();
        }
        let description = match (status.code(), status.signal()) {
            (Some(code), _) => format!("qemu exited with status {code}"),
            (None, Some(sig)) => format!(
                "qemu killed by {}",
                Signal::try_from(sig)
                    .map(|s| s.as_str())
                    .unwrap_or("a signal")
            ),
            _ => "qemu ended".to_owned(),
        };
        let mut description = description;
        if !status.success() {
            let err = std::fs::read_to_string(&self.err_log).unwrap_or_default();
            if let Some(line) = err.lines().rev().find(|l| !l.trim().is_empty()) {
                description.push_str(&format!(" ({})", line.trim()));
            }
        }
        InstanceExit {
            failed: !status.success(),
            description,
        }
    }
}

impl Instance for QemuInstance {
    fn info(&self) -> InstanceInfo {
        self.info.clone()
    }

    fn heartbeat_by_backend(&self) -> bool {
        false
    }

    fn take_console(&mut self) -> Option<Box<dyn Read + Send>> {
        self.console.take()
    }

    fn try_wait(&mut self) -> Result<Option<InstanceExit>> {
        match self.qemu.try_wait() {
            Ok(Some(status)) => Ok(Some(self.describe(status))),
            Ok(None) => Ok(None),
            Err(e) => Err(EngineError::Backend(format!("waiting for qemu: {e}"))),
        }
    }

    fn kill(&mut self) -> Result<InstanceExit> {
        let pid = Pid::from_raw(self.qemu.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            if let Some(status) = self
                .qemu
                .try_wait()
                .map_err(|e| EngineError::Backend(format!("waiting for qemu: {e}")))?
            {
                let mut exit = self.describe(status);
                exit.failed = true;
                return Ok(exit);
            }
            if Instant::now() > deadline {
                let _ = self.qemu.kill();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for QemuInstance {
    fn drop(&mut self) {
        if let Ok(None) = self.qemu.try_wait() {
            let _ = self.qemu.kill();
            let _ = self.qemu.wait();
        }
        if let Some(mut vdev) = self.vdev.take() {
            let _ = vdev.kill();
            let _ = vdev.wait();
        }
    }
}
