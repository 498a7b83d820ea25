//! Payloads of the operations: what a [`Request`] asks and what a [`Reply`] answers.

use serde::{Deserialize, Serialize};

use super::message::{Capability, EnclaveInfo};

/// What a client asks (in [`super::ClientMessage::Request`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Liveness check; answered with [`Reply::Pong`] carrying the same value.
    Ping {
        /// Echoed back.
        payload: u64,
    },
    /// Version, uptime, capabilities; answered with [`Reply::Info`].
    Info,
    /// Run a command (needs [`Capability::Exec`]).
    Exec(ExecRequest),
    /// Copy entries from the client into the enclave (needs [`Capability::Cp`]).
    CpTo {
        /// Absolute path of an existing directory in the enclave; entries are created below
        /// it, never outside.
        dest: String,
    },
    /// Copy a file or directory tree out of the enclave (needs [`Capability::Cp`]).
    CpFrom {
        /// Absolute path in the enclave; the entries sent are named relative to its parent
        /// (a file `/a/b.txt` arrives as `b.txt`, a directory `/a/d` as `d`, `d/...`).
        src: String,
    },
    /// Query or control the services of the spec.
    Services(ServiceRequest),
    /// Stop all services and power the enclave off; answered with [`Reply::Done`] first.
    Shutdown,
    /// A fresh attestation document from the enclave's NSM; answered with
    /// [`Reply::Attestation`]. With a `nonce` only it needs no capability; binding a
    /// `public_key` or `user_data` needs [`Capability::Attest`] from the host (inside the
    /// enclave, on the local socket, it is always allowed): a document binding a key of the
    /// host's choosing would let the host pass for the enclave.
    Attest(AttestRequest),
    /// The health check's state as enclave-init last saw it; answered with [`Reply::Health`].
    /// Needs an authenticated session but no capability: the check is the measured spec's,
    /// the caller only reads its result. (An enclave-init older than this op answers
    /// `bad_request`.)
    Health,
}

/// `attest`: the optional fields the document should carry (at most 1024 bytes each).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestRequest {
    /// The verifier's nonce.
    #[serde(default, with = "serde_bytes", skip_serializing_if = "Option::is_none")]
    pub nonce: Option<Vec<u8>>,
    /// Data the verifier wants bound to the document.
    #[serde(default, with = "serde_bytes", skip_serializing_if = "Option::is_none")]
    pub user_data: Option<Vec<u8>>,
    /// A public key (DER) to bind to the document.
    #[serde(default, with = "serde_bytes", skip_serializing_if = "Option::is_none")]
    pub public_key: Option<Vec<u8>>,
}

impl Request {
    /// The capability this request needs, if any.
    pub fn required_capability(&self) -> Option<Capability> {
        match self {
            Request::Exec(_) => Some(Capability::Exec),
            Request::CpTo { .. } | Request::CpFrom { .. } => Some(Capability::Cp),
            Request::Attest(a) if a.public_key.is_some() || a.user_data.is_some() => {
                Some(Capability::Attest)
            }
            _ => None,
        }
    }

    /// Whether the request, once accepted, becomes a stream ([`super::ServerMessage::Started`])
    /// rather than being answered by a single reply.
    pub fn is_streaming(&self) -> bool {
        match self {
            Request::Exec(e) => !e.detach,
            Request::CpTo { .. } | Request::CpFrom { .. } => true,
            Request::Services(ServiceRequest::Logs { .. }) => true,
            _ => false,
        }
    }
}

/// `exec`: what to run and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    /// Program and arguments; `argv[0]` is looked up in `PATH` when it has no `/`.
    pub argv: Vec<String>,
    /// Variables added to (or replacing those of) the application's environment.
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Working directory; the application's when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Run under a pseudo-terminal of this size (`-t`); stdout and stderr then arrive merged on
    /// `stdout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tty: Option<WindowSize>,
    /// Whether stdin is forwarded (`-i`); when false the process gets `/dev/null`.
    #[serde(default)]
    pub stdin: bool,
    /// Start and return the pid at once ([`Reply::Detached`]); no stream.
    #[serde(default)]
    pub detach: bool,
    /// Who to run as: `user[:group]`, names or numbers, resolved against the enclave's
    /// `/etc/passwd` and `/etc/group` (Docker's `exec -u`); the app's user when absent. An
    /// unknown name is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// A terminal size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSize {
    /// Rows.
    pub rows: u16,
    /// Columns.
    pub cols: u16,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal.
    Signal(i32),
}

/// Header of one `cp` entry. A file entry is followed by exactly `size` bytes of
/// [`super::Channel::File`] data, then its `CpFileEnd` end marker, before the next entry or
/// `CpDone`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpEntry {
    /// Path relative to the copy's root, `/`-separated; must pass
    /// [`super::path::safe_relative`]. Parents come before their children.
    pub path: String,
    /// Permission bits (`0o7777` at most); file type bits are ignored. The receiver writes no
    /// setuid or setgid bit, and no sticky bit on a file.
    pub mode: u32,
    /// What the entry is.
    pub kind: CpKind,
}

/// The type-specific part of a [`CpEntry`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum CpKind {
    /// A regular file of `size` bytes, followed by exactly that much content and `CpFileEnd`.
    File {
        /// Exact number of content bytes that follow.
        size: u64,
    },
    /// A directory.
    Dir,
    /// A symbolic link; its target must not lead outside the copy's root
    /// ([`super::path::check_symlink`]).
    Symlink {
        /// The link's target, as stored.
        target: String,
    },
}

/// `services` sub-operations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ServiceRequest {
    /// All services: [`Reply::Services`].
    List,
    /// One service: [`Reply::Service`].
    Status {
        /// Service name from the spec.
        name: String,
    },
    /// Start a stopped service: [`Reply::Done`].
    Start {
        /// Service name.
        name: String,
    },
    /// Stop a service: [`Reply::Done`].
    Stop {
        /// Service name.
        name: String,
    },
    /// Stop then start a service: [`Reply::Done`].
    Restart {
        /// Service name.
        name: String,
    },
    /// A service's output: a stream of `stdout`/`stderr` data, ended by [`Reply::Done`]
    /// (or, with `follow`, by the client's `Cancel`).
    Logs {
        /// Service name.
        name: String,
        /// Keep sending new output until cancelled.
        #[serde(default)]
        follow: bool,
        /// Only the last this many lines of the retained output.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tail: Option<u32>,
        /// Only output produced at or after this time (seconds since the Unix epoch).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<u64>,
    },
}

/// The state of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceState {
    /// Waiting for the services it depends on.
    Waiting,
    /// Started, readiness check not passed yet.
    Starting,
    /// Running (and ready, when it has a readiness check).
    Running,
    /// Being stopped.
    Stopping,
    /// Stopped on request.
    Stopped,
    /// Ended and will not be restarted.
    Exited,
    /// Ended abnormally or failed its readiness check, and will not be restarted.
    Failed,
    /// A state this version does not know.
    #[serde(other)]
    Unknown,
}

/// What the control server counted since the enclave booted (the supervisor's metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlCounts {
    /// Connections accepted.
    pub sessions: u64,
    /// Sessions refused for a key the enclave does not accept.
    pub auth_failures: u64,
}

/// Status of one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceStatus {
    /// Name from the spec.
    pub name: String,
    /// Current state.
    pub state: ServiceState,
    /// Process id while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// How many times it was restarted.
    #[serde(default)]
    pub restarts: u32,
    /// How its last run ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<ExitStatus>,
    /// Milliseconds since the current state was entered.
    #[serde(default)]
    pub since_ms: u64,
    /// How many of its processes the kernel's OOM killer ended since the enclave booted
    /// (protocol version 4; absent when none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub oom_kills: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A final, successful answer (in [`super::ServerMessage::Reply`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Reply {
    /// Answer to [`Request::Ping`].
    Pong {
        /// The ping's payload.
        payload: u64,
    },
    /// Answer to [`Request::Info`].
    Info {
        /// The enclave.
        enclave: EnclaveInfo,
        /// Protocol version in use.
        version: u16,
        /// Capabilities granted to this connection.
        capabilities: Vec<Capability>,
        /// The control server's counts since boot (protocol 3 and later).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        control: Option<ControlCounts>,
    },
    /// A detached exec started.
    Detached {
        /// Its process id.
        pid: u32,
    },
    /// Answer to [`ServiceRequest::List`].
    Services {
        /// Every service of the spec, in spec order.
        services: Vec<ServiceStatus>,
    },
    /// Answer to [`ServiceRequest::Status`].
    Service {
        /// The service.
        status: ServiceStatus,
    },
    /// A `cp` completed: every entry was written (upload: checked and renamed into place).
    CpComplete {
        /// Entries transferred.
        entries: u64,
        /// File content bytes transferred.
        bytes: u64,
    },
    /// Success without data (service control, end of logs, shutdown accepted).
    Done,
    /// Answer to [`Request::Attest`]: the NSM's COSE_Sign1 document, as the NSM returned it.
    Attestation {
        /// The document.
        #[serde(with = "serde_bytes")]
        document: Vec<u8>,
    },
    /// Answer to [`Request::Health`].
    Health {
        /// The health check's state.
        health: HealthReport,
    },
}

/// The state of the spec's health check, as Docker reports a container's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// The spec has no health check.
    None,
    /// No check has passed yet and fewer than `retries` failed (or the start period runs).
    Starting,
    /// The last check passed.
    Healthy,
    /// The last `retries` checks failed.
    Unhealthy,
    /// A state this version does not know.
    #[serde(other)]
    Unknown,
}

impl std::fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HealthStatus::None => "none",
            HealthStatus::Starting => "starting",
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
            HealthStatus::Unknown => "unknown",
        })
    }
}

/// What [`Reply::Health`] carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthReport {
    /// The state.
    pub status: HealthStatus,
    /// Consecutive failed checks.
    #[serde(default)]
    pub failing_streak: u32,
    /// What the last check said: `exit 1`, `timed out after 5000 ms`, `HTTP 503`, a connect
    /// error (at most [`MAX_HEALTH_DETAIL`] bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<String>,
    /// Milliseconds since the last check ended; `None` before the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_ms_ago: Option<u64>,
}

/// The longest [`HealthReport::last`].
pub const MAX_HEALTH_DETAIL: usize = 256;
