//! How an enclave runs: one [`Backend`] trait, three implementations.
//!
//! What differs between backends stays here: how the host reaches an enclave's vsock ports
//! ([`VsockRoute`], from [`Backend::vsock_route`]) and who attests it
//! ([`BackendKind::attestation`]). Callers ask; they do not match on the backend.

pub mod accel;
pub mod fake;
pub mod nitro;
mod nitro_cli;
pub mod nitro_errors;
pub mod qemu;
mod route;

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use nitro_cli::{describe_error_code, NitroEnclave};
pub use route::{ParentPort, VsockRoute};

use crate::eif::EifInfo;
use crate::error::{EngineError, Result};

/// The Nitro Enclaves device; its presence makes `auto` choose [`BackendKind::Nitro`].
pub const NITRO_DEVICE: &str = "/dev/nitro_enclaves";

/// A backend, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// QEMU microvm (emulated Nitro).
    Qemu,
    /// nitro-cli.
    Nitro,
    /// The recording fake (tests).
    Fake,
}

/// Where an enclave's attestation documents come from, and so which root they chain to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attestation {
    /// The Nitro hypervisor's NSM (`/dev/nsm` in the enclave); documents chain to the AWS root.
    Nitro,
    /// The emulated NSM the supervisor serves on the parent's port 9001; documents chain to
    /// this host's emulation CA.
    Emulated,
}

impl BackendKind {
    /// Who attests the enclaves of this backend.
    pub fn attestation(self) -> Attestation {
        match self {
            BackendKind::Nitro => Attestation::Nitro,
            BackendKind::Qemu | BackendKind::Fake => Attestation::Emulated,
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::Qemu => "qemu",
            BackendKind::Nitro => "nitro",
            BackendKind::Fake => "fake",
        })
    }
}

/// What `--backend` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendChoice {
    /// Nitro where [`NITRO_DEVICE`] exists, QEMU elsewhere.
    #[default]
    Auto,
    /// A given backend.
    Kind(BackendKind),
}

impl FromStr for BackendChoice {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "auto" => Ok(BackendChoice::Auto),
            "qemu" => Ok(BackendChoice::Kind(BackendKind::Qemu)),
            "nitro" => Ok(BackendChoice::Kind(BackendKind::Nitro)),
            _ => Err(format!(
                "unknown backend {s:?}: expected auto, qemu or nitro"
            )),
        }
    }
}

/// The `--backend` word it was parsed from.
impl fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendChoice::Auto => f.write_str("auto"),
            BackendChoice::Kind(k) => write!(f, "{k}"),
        }
    }
}

impl BackendChoice {
    /// The backend to use on this host.
    pub fn resolve(self) -> BackendKind {
        match self {
            BackendChoice::Kind(k) => k,
            BackendChoice::Auto if Path::new(NITRO_DEVICE).exists() => BackendKind::Nitro,
            BackendChoice::Auto => BackendKind::Qemu,
        }
    }
}

/// What a backend needs to boot one enclave.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    /// The enclave's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The EIF to boot: the copy pinned in the enclave's directory at `run`.
    pub eif: PathBuf,
    /// The PCRs recorded at `run` (`PCR0`… as hex): a backend measures what it is about to
    /// boot and refuses to boot anything else (see [`crate::eif::boot`]).
    pub measurements: BTreeMap<String, String>,
    /// The enclave's state directory (sockets, boot files, process logs).
    pub dir: PathBuf,
    /// A short directory for Unix sockets (their paths are limited to 107 bytes).
    pub sockets: PathBuf,
    /// vCPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// The enclave CID.
    pub cid: u32,
    /// Debug mode.
    pub debug_mode: bool,
}

/// What the backend reported about the running instance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceInfo {
    /// The main process (QEMU; nitro-cli's enclave process).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// The vhost-device-vsock process (qemu backend).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vsock_pid: Option<u32>,
    /// `kvm` or `tcg` (qemu backend).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accel: Option<String>,
    /// nitro-cli's EnclaveID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enclave_id: Option<String>,
    /// Kernel parameters appended at run time (not measured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extra_cmdline: Option<String>,
}

/// How an instance ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceExit {
    /// Whether the backend saw a failure (killed, crashed, non-zero exit).
    pub failed: bool,
    /// For humans: "exit status 0", "killed by SIGKILL", "terminated".
    pub description: String,
}

/// A way to run enclaves.
pub trait Backend: Send {
    /// Which one.
    fn kind(&self) -> BackendKind;

    /// Checks made before anything is created, with actionable errors: tools, devices,
    /// memory.
    fn preflight(&self, spec: &LaunchSpec, eif: &EifInfo) -> Result<()>;

    /// How the host and the enclave of CID `cid` reach each other over vsock; `sockets` is
    /// the enclave's directory for Unix sockets.
    fn vsock_route(&self, cid: u32, sockets: &Path) -> VsockRoute;

    /// Boots one instance, after measuring what it hands to the backend against
    /// `spec.measurements` (an error for which [`EngineError::refuses_boot`] holds otherwise).
    /// Returns once it is started (nitro: once nitro-cli saw the heartbeat).
    fn launch(&mut self, spec: &LaunchSpec) -> Result<Box<dyn Instance>>;
}

/// A booted enclave.
pub trait Instance: Send {
    /// What to record about it.
    fn info(&self) -> InstanceInfo;

    /// Whether the backend already waited for the boot heartbeat (nitro-cli does); otherwise
    /// the supervisor answers it where the [`VsockRoute`] says the parent's heartbeat port is.
    fn heartbeat_by_backend(&self) -> bool;

    /// The console stream, once (None when there is none, e.g. Nitro without debug mode).
    fn take_console(&mut self) -> Option<Box<dyn Read + Send>>;

    /// Whether it ended.
    fn try_wait(&mut self) -> Result<Option<InstanceExit>>;

    /// Ends it now and waits for that.
    fn kill(&mut self) -> Result<InstanceExit>;
}

/// Makes the backend of `kind`.
pub fn make(kind: BackendKind, state_root: &Path) -> Result<Box<dyn Backend>> {
    match kind {
        BackendKind::Qemu => Ok(Box::new(qemu::QemuBackend::new(state_root))),
        BackendKind::Nitro => Ok(Box::new(nitro::NitroBackend::new())),
        BackendKind::Fake => Err(EngineError::Invalid(
            "the fake backend exists only in tests".into(),
        )),
    }
}

/// Finds `program` in `$PATH` (or takes it as a path when it has a slash).
pub fn which(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Path::new(program).is_file().then(|| PathBuf::from(program));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}
