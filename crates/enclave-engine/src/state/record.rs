//! `state.json`: everything known about one enclave.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use enclave_proto::wire::HealthStatus;
use serde::{Deserialize, Serialize};

use crate::backend::{BackendKind, InstanceInfo};
use crate::policy::RestartPolicy;

/// The life of an enclave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Recorded; the supervisor has not started it yet.
    Created,
    /// Booting; no heartbeat yet.
    Starting,
    /// The heartbeat came.
    Running,
    /// Ended; waiting to boot again under the restart policy.
    Restarting,
    /// `stop` asked for it to end.
    Stopping,
    /// Ended and will not be restarted.
    Exited,
    /// Could not boot, or the supervisor died.
    Failed,
}

impl Status {
    /// Whether a supervisor should be alive in this state.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            Status::Created
                | Status::Starting
                | Status::Running
                | Status::Restarting
                | Status::Stopping
        )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Created => "created",
            Status::Starting => "starting",
            Status::Running => "running",
            Status::Restarting => "restarting",
            Status::Stopping => "stopping",
            Status::Exited => "exited",
            Status::Failed => "failed",
        })
    }
}

/// The health as the record keeps it (`ps`, `inspect`), as the supervisor's monitor
/// (crate::health) last found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthRecord {
    /// The health check's status (`none` without one).
    pub status: HealthStatus,
    /// Consecutive failed checks.
    #[serde(default)]
    pub failing_streak: u32,
    /// What the last check said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<String>,
    /// Ready: services ready and the check passing.
    pub ready: bool,
}

/// The vsock ports the enclave uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ports {
    /// Boot heartbeat (on the parent).
    pub heartbeat: u32,
    /// enclave-init's control server (in the enclave).
    pub control: u32,
}

impl Default for Ports {
    fn default() -> Self {
        Self {
            heartbeat: enclave_proto::ports::HEARTBEAT,
            control: enclave_proto::ports::CONTROL,
        }
    }
}

/// One enclave, as stored in `<state>/enclaves/<id>/state.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnclaveRecord {
    /// 64 hex digits.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// When `run` recorded it.
    pub created: String,
    /// The EIF (absolute path).
    pub eif: PathBuf,
    /// The backend.
    pub backend: BackendKind,
    /// vCPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Debug mode (console available; PCRs read as zero on Nitro).
    pub debug_mode: bool,
    /// The restart policy.
    pub restart: RestartPolicy,
    /// The enclave's vsock CID.
    pub cid: u32,
    /// Where it is in its life.
    pub status: Status,
    /// The supervisor process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supervisor_pid: Option<u32>,
    /// The current (or last) instance.
    #[serde(default)]
    pub instance: InstanceInfo,
    /// When the current (or last) boot started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// When the last boot ended (the time it exited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// The exit code of the last boot's main service (the image's entrypoint and cmd, as the
    /// spec amends them), as enclave-init reported it just before powering off: its code, or
    /// 128+N when signal N killed it (Docker's convention). 137 when `stop` had to kill an
    /// enclave that sent no report. Absent while running, and when nothing reported it (no
    /// main service, or the enclave crashed or was killed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The kernel's OOM killer ended the main service (as the enclave reported it), as
    /// Docker's `State.OOMKilled`. Cleared at every boot.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub oom_killed: bool,
    /// `run --rm`: the supervisor removes the enclave and its state once it ended for good.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auto_remove: bool,
    /// Milliseconds from starting the backend to the heartbeat, last boot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_ms: Option<u64>,
    /// How many times the supervisor booted it again.
    #[serde(default)]
    pub restarts: u32,
    /// How the last boot ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<String>,
    /// Why it failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The EIF's measurements (the PCRs of the enclave; all zero on Nitro in debug mode).
    pub measurements: BTreeMap<String, String>,
    /// vsock ports.
    #[serde(default)]
    pub ports: Ports,
    /// Published ports and egress (run by the supervisor).
    #[serde(
        default,
        skip_serializing_if = "crate::network::NetworkRecord::is_empty"
    )]
    pub network: crate::network::NetworkRecord,
    /// The control server's address for `exec`/`cp` (`hybrid:…:5000` or `vsock:CID:5000`).
    pub control_addr: String,
    /// `run --health-listen`: where the supervisor serves `/livez` and `/readyz`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_listen: Option<std::net::SocketAddr>,
    /// `run --metrics-listen`: where the supervisor serves `/metrics`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// The enclave's health as the supervisor last asked it (while it runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthRecord>,
}

impl EnclaveRecord {
    /// The first 12 hex digits of the id.
    pub fn short_id(&self) -> &str {
        &self.id[..self.id.len().min(12)]
    }
}

/// The measured PCRs of a record (`PCR0` … `PCR8` as hex) as the NSM's registers.
pub fn measured_pcrs(measurements: &BTreeMap<String, String>) -> BTreeMap<u8, [u8; 48]> {
    measurements
        .iter()
        .filter_map(|(k, v)| {
            let index = k.strip_prefix("PCR")?.parse::<u8>().ok()?;
            let bytes: [u8; 48] = hex::decode(v).ok()?.try_into().ok()?;
            Some((index, bytes))
        })
        .collect()
}
