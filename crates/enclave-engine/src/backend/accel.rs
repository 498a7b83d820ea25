//! KVM or TCG: use KVM only when it really boots a guest.
//!
//! `/dev/kvm` existing proves little: under nested virtualisation KVM may abort QEMU ("failed
//! to set MSR") or hang the guest before its first console line. The probe boots the EIF's own
//! kernel under KVM with no ramdisk and `panic=-1`, and accepts KVM when the kernel prints its
//! banner within [`PROBE_TIMEOUT`]. The answer is cached in the state root (`accel.json`),
//! keyed by the QEMU binary. `ENCLAVE_ENGINE_ACCEL=kvm|tcg` skips the probe.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// How long the KVM probe may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(6);

/// An accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Hardware virtualisation.
    Kvm,
    /// QEMU's emulator.
    Tcg,
}

impl Accel {
    /// `kvm` or `tcg`.
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// The accelerator chosen, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccelChoice {
    /// Which.
    pub accel: Accel,
    /// Why.
    pub reason: String,
    /// The QEMU binary and its modification time, the cache key.
    pub qemu: String,
}

fn cache_key(qemu: &Path) -> String {
    let mtime = std::fs::metadata(qemu)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("{}@{mtime}", qemu.display())
}

/// Chooses the accelerator for `qemu`, probing with `kernel` when needed.
pub fn choose(qemu: &Path, kernel: &Path, cache: &Path) -> AccelChoice {
    let key = cache_key(qemu);
    match std::env::var("ENCLAVE_ENGINE_ACCEL").as_deref() {
        Ok("kvm") => return choice(Accel::Kvm, "ENCLAVE_ENGINE_ACCEL=kvm", key),
        Ok("tcg") => return choice(Accel::Tcg, "ENCLAVE_ENGINE_ACCEL=tcg", key),
        _ => {}
    }
    if let Ok(cached) = crate::util::read_json::<AccelChoice>(cache) {
        if cached.qemu == key {
            return cached;
        }
    }
    let found = probe(qemu, kernel, key);
    let _ = crate::util::write_json_atomic(cache, &found);
    found
}

fn choice(accel: Accel, reason: &str, qemu: String) -> AccelChoice {
    AccelChoice {
        accel,
        reason: reason.to_owned(),
        qemu,
    }
}

fn probe(qemu: &Path, kernel: &Path, key: String) -> AccelChoice {
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return choice(Accel::Tcg, "/dev/kvm is absent or not accessible", key);
    }
    let mut cmd = Command::new(qemu);
    cmd.args([
        "-M", "microvm", "-accel", "kvm", "-cpu", "host", "-m", "128",
    ])
    .args([
        "-nodefaults",
        "-display",
        "none",
        "-no-reboot",
        "-serial",
        "stdio",
    ])
    .arg("-kernel")
    .arg(kernel)
    .args(["-append", "console=ttyS0 panic=-1 pci=off"])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    crate::spawn_unsafe::prepare(&mut cmd, crate::spawn_unsafe::Tie::DieWithParent);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return choice(Accel::Tcg, &format!("cannot run the KVM probe: {e}"), key),
    };
    let (tx, rx) = mpsc::channel();
    let mut out = child.stdout.take();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while let Some(Ok(n @ 1..)) = out.as_mut().map(|o| o.read(&mut buf)) {
            seen.extend_from_slice(&buf[..n]);
            if seen.windows(13).any(|w| w == b"Linux version") {
                let _ = tx.send(());
                return;
            }
        }
    });
    let booted = rx.recv_timeout(PROBE_TIMEOUT).is_ok();
    let _ = child.kill();
    let status = child.wait().ok();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    if booted {
        return choice(Accel::Kvm, "KVM booted the probe kernel", key);
    }
    let detail = err.lines().find(|l| !l.contains("warning")).unwrap_or("");
    let why = match status {
        Some(s) if s.code().is_some() || detail.contains("error") => {
            format!("KVM does not work here (QEMU failed: {detail}); using TCG")
        }
        _ => format!(
            "KVM does not work here (the probe kernel printed nothing in {} s, as under broken nested virtualisation); using TCG",
            PROBE_TIMEOUT.as_secs()
        ),
    };
    choice(Accel::Tcg, &why, key)
}
