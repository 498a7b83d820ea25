//! How an enclave runs: one [`Backend`] trait, three implementations.

pub mod accel;
pub mod fake;
pub mod nitro;
mod nitro_cli;
pub mod qemu;

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use nitro_cli::{describe_error_code, NitroEnclave};

use crate::eif::EifInfo;
use crate::error::{EngineError, Result};
use crate::state::{EnclaveRecord, InstanceInfo};

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

impl LaunchSpec {
    /// The spec of a recorded enclave whose directory is `dir`: it boots the EIF pinned there
    /// (`rec.eif`, the path given to `run`, is only shown).
    pub fn from_record(rec: &EnclaveRecord, dir: PathBuf, sockets: PathBuf) -> Self {
        Self {
            sockets,
            id: rec.id.clone(),
            name: rec.name.clone(),
            eif: dir.join(crate::eif::pin::PINNED_EIF),
            measurements: rec.measurements.clone(),
            dir,
            cpus: rec.cpus,
            memory_mib: rec.memory_mib,
            cid: rec.cid,
            debug_mode: rec.debug_mode,
        }
    }
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
    /// the supervisor answers it on the hybrid vsock socket `<dir>/vsock.sock_9000`.
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

/// How long a Nitro supervisor waits for another enclave's supervisor to release a parent
/// port (the hand-off port is held only while an enclave boots).
const PARENT_PORT_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Listens on the parent's vsock `port` for the enclave of `rec` (connections the enclave
/// makes): the hybrid socket `<sockets>/vsock.sock_<port>` of the emulated backend, AF_VSOCK on
/// Nitro. Returns the CID to expect from the peer (Nitro: every enclave reaches the same
/// parent port, so the peer must be checked). Ports below 1024 need root on Nitro.
pub fn parent_listener(
    rec: &EnclaveRecord,
    sockets: &Path,
    port: u32,
) -> Result<(enclave_proto::transport::Listener, Option<u32>)> {
    use enclave_proto::transport::{listen, Addr, TransportError, VMADDR_CID_ANY};
    match rec.backend {
        BackendKind::Nitro => {
            let addr = Addr::Vsock {
                cid: VMADDR_CID_ANY,
                port,
            };
            let started = std::time::Instant::now();
            loop {
                match listen(&addr) {
                    Ok(l) => return Ok((l, Some(rec.cid))),
                    Err(TransportError::Io { source, .. })
                        if source.kind() == std::io::ErrorKind::AddrInUse
                            && started.elapsed() < PARENT_PORT_WAIT =>
                    {
                        std::thread::sleep(std::time::Duration::from_millis(200));
                    }
                    Err(e) => return Err(EngineError::Backend(e.to_string())),
                }
            }
        }
        _ => {
            let uds = sockets.join(qemu::VSOCK_SOCKET);
            let _ = std::fs::remove_file(enclave_proto::transport::hybrid::listen_path(&uds, port));
            let addr = Addr::HybridVsock {
                uds_path: uds,
                port,
            };
            listen(&addr)
                .map(|l| (l, None))
                .map_err(|e| EngineError::Backend(e.to_string()))
        }
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
