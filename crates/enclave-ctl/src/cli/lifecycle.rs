//! Arguments of the lifecycle commands: run, ps, logs, stop, rm, console.

use std::path::PathBuf;

use clap::Args;
use enclave_engine::backend::BackendChoice;
use enclave_engine::memory::MemoryMib;
use enclave_engine::policy::RestartPolicy;

/// Where the enclaves' state lives.
#[derive(Debug, Clone, Args)]
pub struct StateArgs {
    /// State directory (default: /run/enclave-engine as root, $XDG_RUNTIME_DIR/enclave-engine otherwise).
    #[arg(
        long,
        value_name = "DIR",
        env = "ENCLAVE_ENGINE_STATE_DIR",
        global = true
    )]
    pub state_dir: Option<PathBuf>,
}

/// `enclave-ctl run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The EIF to run.
    pub eif: PathBuf,
    /// Run in the background and print the enclave's id.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Remove the enclave and its state once it has ended (also with -d: its supervisor does
    /// it). Ended means for good: not while the restart policy boots it again.
    #[arg(long)]
    pub rm: bool,
    /// A unique name (default: <EIF name>-<4 hex digits>).
    #[arg(long)]
    pub name: Option<String>,
    /// vCPUs.
    #[arg(long, env = "ENCLAVE_ENGINE_CPUS", default_value_t = enclave_engine::lifecycle::DEFAULT_CPUS)]
    pub cpus: u32,
    /// Memory, with a unit: 512m, 2g (k, m, g, t: powers of 1024). A bare number is MiB, as
    /// before units were accepted: 1024 = 1g.
    #[arg(
        short = 'm',
        long,
        value_name = "SIZE",
        env = "ENCLAVE_ENGINE_MEMORY",
        default_value_t = MemoryMib(enclave_engine::lifecycle::DEFAULT_MEMORY_MIB)
    )]
    pub memory: MemoryMib,
    /// auto (nitro where /dev/nitro_enclaves exists, else qemu), qemu or nitro.
    #[arg(long, env = "ENCLAVE_ENGINE_BACKEND", default_value = "auto", value_parser = clap::value_parser!(BackendChoice))]
    pub backend: BackendChoice,
    /// Debug mode: the console is available (on Nitro, the PCRs read as zeros).
    #[arg(long)]
    pub debug_mode: bool,
    /// Restart policy: no, on-failure[:N], always.
    #[arg(long, default_value = "no", value_parser = clap::value_parser!(RestartPolicy))]
    pub restart: RestartPolicy,
    #[command(flatten)]
    pub boot: BootArgs,
    /// Attached: seconds a SIGTERM, SIGINT or SIGHUP gives the enclave to stop gracefully
    /// before it is killed (as `stop -t`). In a pod, keep it below the pod's
    /// terminationGracePeriodSeconds.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub stop_timeout: u64,
    /// Serve `GET /livez` and `GET /readyz` (200 or 503) from the enclave's supervisor on this
    /// address, e.g. 127.0.0.1:8081, for HTTP probes. Off by default; `enclave-ctl health` is
    /// the same check without a listener.
    #[arg(long, value_name = "IP:PORT")]
    pub health_listen: Option<std::net::SocketAddr>,
    /// Serve `GET /metrics` (Prometheus text format: state, restarts, boot durations, health,
    /// proxy connections and bytes) from the enclave's supervisor on this address, e.g.
    /// 127.0.0.1:9464, for a Prometheus that scrapes the pod. Off by default.
    #[arg(long, value_name = "IP:PORT")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Publish an enclave port on the host: [HOST_IP:]HOST_PORT:ENCLAVE_PORT (HOST_IP defaults
    /// to 127.0.0.1). The port must be in the image's measured `ingress` list. Repeatable.
    #[arg(short = 'p', long = "publish", value_name = "[IP:]HOST:ENCLAVE")]
    pub publish: Vec<enclave_engine::network::PublishedPort>,
    /// Resolve NAME to IP in the host's egress proxy, like `docker run --add-host`. The
    /// allow-list still applies to the address. Repeatable.
    #[arg(long, value_name = "NAME:IP")]
    pub add_host: Vec<enclave_engine::network::AddHost>,

    /// A file handed to the enclave at each boot as /run/enclave/secrets/NAME (root only
    /// inside; at most 8, 64 KiB each): credentials for the network services it talks to. The
    /// host knows it: never a secret the enclave must keep from its host.
    #[arg(long = "secret", value_name = "NAME=FILE", value_parser = parse_secret)]
    pub secrets: Vec<enclave_engine::control::Secret>,

    #[command(flatten)]
    pub state: StateArgs,
}

/// `enclave-ctl ps`.
#[derive(Debug, Args)]
#[command(after_help = ps_help())]
pub struct PsArgs {
    /// Show all enclaves (default: those not ended).
    #[arg(short, long)]
    pub all: bool,
    /// Only the ids (short), one a line.
    #[arg(short, long)]
    pub quiet: bool,
    /// Output: `table` (default), `json` (one record a line, as `inspect` shows it: JSON
    /// lines, as Docker prints them), or a template of field names such as
    /// '{{.Name}} {{.Status}}' (`table ` before it adds a header; \t and \n are tab and
    /// newline). The fields are listed below.
    #[arg(long, value_name = "FORMAT", conflicts_with = "json")]
    pub format: Option<String>,
    /// The records as one JSON array (as every `--json` of enclave-ctl prints).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub state: StateArgs,
}

/// `enclave-ctl logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Name or id (prefix).
    pub enclave: String,
    /// Keep printing new lines until the enclave ends.
    #[arg(short, long)]
    pub follow: bool,
    /// Only lines since this time: RFC 3339, or a duration ago (30s, 5m, 2h).
    #[arg(long)]
    pub since: Option<String>,
    /// Only the last N lines.
    #[arg(long, value_name = "N")]
    pub tail: Option<usize>,
    /// Print time stamps and sources.
    #[arg(short, long)]
    pub timestamps: bool,
    #[command(flatten)]
    pub state: StateArgs,
}

/// One `events --filter`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventFilter {
    /// `enclave=NAME|ID`.
    Enclave(String),
    /// `type=TYPE`.
    Type(enclave_engine::events::EventKind),
}

impl std::str::FromStr for EventFilter {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once('=') {
            Some(("enclave", v)) if !v.is_empty() => Ok(EventFilter::Enclave(v.to_owned())),
            Some(("type", v)) => v.parse().map(EventFilter::Type),
            _ => Err(format!(
                "invalid filter {s:?}: expected enclave=NAME|ID or type=TYPE"
            )),
        }
    }
}

/// `enclave-ctl events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Events since this time: RFC 3339, or a duration ago (30s, 5m, 2h). Default: only new
    /// events from now on.
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Events until this time (RFC 3339, or a duration ago), then exit; without it, keep
    /// printing new events until interrupted.
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
    /// Only matching events: enclave=NAME|ID (a name, or an id prefix of at least 4), or
    /// type=TYPE (create, boot, heartbeat, health_status, oom, exit, die, service_start,
    /// service_exit, service_restart, restart, stop, kill, destroy, attest). Repeatable: filters on the same key widen, on different keys narrow.
    #[arg(short, long, value_name = "KEY=VALUE")]
    pub filter: Vec<EventFilter>,
    /// One JSON object a line ({time, type, id, name, attributes}).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub state: StateArgs,
}

/// `enclave-ctl stop`.
#[derive(Debug, Args)]
pub struct StopArgs {
    /// Names or ids (prefixes).
    #[arg(required = true)]
    pub enclaves: Vec<String>,
    #[command(flatten)]
    pub grace: GraceArgs,
    #[command(flatten)]
    pub state: StateArgs,
}

/// How long a stop waits before it kills (`stop`, `restart`).
#[derive(Debug, Args)]
pub struct GraceArgs {
    /// Seconds to wait for a graceful shutdown before killing.
    #[arg(
        short = 't',
        long = "timeout",
        visible_alias = "time",
        value_name = "SECS",
        default_value_t = 10
    )]
    pub timeout: u64,
}

/// How long a boot may take (`run`, `start`, `restart`).
#[derive(Debug, Args)]
pub struct BootArgs {
    /// Seconds to wait for the boot heartbeat.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub boot_timeout: u64,
}

/// `enclave-ctl start`.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// Names or ids (prefixes).
    #[arg(required = true)]
    pub enclaves: Vec<String>,
    #[command(flatten)]
    pub boot: BootArgs,
    #[command(flatten)]
    pub state: StateArgs,
}

/// `enclave-ctl restart`.
#[derive(Debug, Args)]
pub struct RestartArgs {
    /// Names or ids (prefixes).
    #[arg(required = true)]
    pub enclaves: Vec<String>,
    #[command(flatten)]
    pub grace: GraceArgs,
    #[command(flatten)]
    pub boot: BootArgs,
    #[command(flatten)]
    pub state: StateArgs,
}

/// `enclave-ctl kill`.
#[derive(Debug, Args)]
pub struct KillArgs {
    /// Names or ids (prefixes).
    #[arg(required = true)]
    pub enclaves: Vec<String>,
    #[command(flatten)]
    pub state: StateArgs,
}

/// `enclave-ctl rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Names or ids (prefixes).
    #[arg(required = true)]
    pub enclaves: Vec<String>,
    /// Stop running enclaves first (without grace).
    #[arg(short, long)]
    pub force: bool,
    #[command(flatten)]
    pub state: StateArgs,
}

/// `enclave-ctl console`.
#[derive(Debug, Args)]
pub struct ConsoleArgs {
    /// Name or id (prefix).
    pub enclave: String,
    /// Print what is there and return instead of following.
    #[arg(long)]
    pub no_follow: bool,
    #[command(flatten)]
    pub state: StateArgs,
}

/// `ps --format`'s template fields: name, what it is (for `--help`).
pub const PS_FIELDS: [(&str, &str); 16] = [
    ("ID", "the first 12 hex digits of the id"),
    ("FullID", "the whole id"),
    ("Name", "the name"),
    ("Status", "as in the table: `exited (3) 2 minutes ago`"),
    (
        "State",
        "created, starting, running, restarting, stopping, exited or failed",
    ),
    (
        "Health",
        "the health check: starting, healthy or unhealthy (`none` without one)",
    ),
    (
        "ExitCode",
        "the main service's exit code (empty while running or unknown)",
    ),
    ("Backend", "qemu or nitro"),
    ("CID", "the vsock CID"),
    ("CPUs", "vCPUs"),
    ("Memory", "memory in MiB"),
    ("Restarts", "restarts by the restart policy"),
    ("Ports", "published ports"),
    ("EIF", "the EIF's path"),
    ("CreatedAt", "when `run` recorded it (RFC 3339)"),
    ("FinishedAt", "when it last ended (RFC 3339)"),
];

/// The `ps --help` epilogue: the template fields.
fn ps_help() -> String {
    let mut help = String::from("Template fields (--format '{{.Name}} {{.ExitCode}}'):\n");
    for (name, what) in PS_FIELDS {
        help.push_str(&format!("  {:<14}{what}\n", format!(".{name}")));
    }
    help.push_str("\nExamples:\n  enclave-ctl ps -a --format 'table {{.Name}}\\t{{.Status}}'\n  enclave-ctl ps -aq");
    help
}

fn parse_secret(arg: &str) -> Result<enclave_engine::control::Secret, String> {
    enclave_engine::control::Secret::from_arg(arg).map_err(|e| e.to_string())
}
