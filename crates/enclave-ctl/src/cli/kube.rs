//! Arguments of the Kubernetes commands: `kube generate`, `kube node-setup-daemonset`,
//! `node setup`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use enclave_engine::memory::MemoryMib;

use crate::kube::generate::Backend;
use crate::kube::HugepageSize;

/// `enclave-ctl kube`.
#[derive(Debug, Args)]
pub struct KubeArgs {
    /// What to generate.
    #[command(subcommand)]
    pub command: KubeCommand,
}

/// The `kube` subcommands.
#[derive(Debug, Subcommand)]
pub enum KubeCommand {
    /// Print a Deployment (and a Service for the spec's ingress ports) that runs an enclave.
    Generate(KubeGenerateArgs),
    /// Print the DaemonSet that runs `node setup` on every node labelled for enclaves.
    NodeSetupDaemonset(NodeSetupDaemonsetArgs),
}

/// Where the manifests go, and in which form.
#[derive(Debug, Args)]
pub struct ManifestOutput {
    /// Write to FILE (atomically) instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// A JSON list of the same objects instead of YAML documents.
    #[arg(long)]
    pub json: bool,
}

/// `enclave-ctl kube generate`.
#[derive(Debug, Args)]
#[command(
    group = clap::ArgGroup::new("input").required(true).args(["eif", "spec"]),
    after_help = "The container image is made by `enclave-ctl package`: Entrypoint `enclave-ctl run`, the EIF\n\
    at /enclave/app.eif. From an EIF, the pod template carries its PCRs as annotations\n\
    (dev.enclave-engine.pcr0, pcr1, pcr2, and pcr8 when signed); from -f, there are none.\n\n\
    Examples:\n  \
    enclave-ctl kube generate app.eif --image registry.example/app:1.0 | kubectl apply -f -\n  \
    enclave-ctl kube generate -f enclave.yaml --image app:dev --backend emulated -o app.yaml"
)]
pub struct KubeGenerateArgs {
    /// The EIF: its measured spec (ingress ports, name) and PCRs.
    pub eif: Option<PathBuf>,
    /// An enclave.yaml instead of an EIF (no PCR annotations).
    #[arg(short = 'f', long = "file", value_name = "enclave.yaml")]
    pub spec: Option<PathBuf>,
    /// The container image `enclave-ctl package` made (it holds the EIF).
    #[arg(long, value_name = "REF")]
    pub image: String,
    /// nitro (EKS/EC2 with AWS's device plugin) or emulated (QEMU in the pod: kind, minikube, CI).
    #[arg(long, value_enum, default_value = "nitro")]
    pub backend: Backend,
    /// Pods.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub replicas: u32,
    /// Object and enclave name (default: the spec's name, else the EIF's file name).
    #[arg(long)]
    pub name: Option<String>,
    /// Namespace of the objects (default: none, kubectl's current one).
    #[arg(long, short = 'n', value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// The enclave's vCPUs.
    #[arg(long, default_value_t = enclave_engine::lifecycle::DEFAULT_CPUS, value_name = "N")]
    pub cpus: u32,
    /// The enclave's memory: 512m, 2g, or MiB.
    #[arg(short = 'm', long, value_name = "SIZE", default_value_t = MemoryMib(enclave_engine::lifecycle::DEFAULT_MEMORY_MIB))]
    pub memory: MemoryMib,
    /// Seconds `run` gives the enclave to stop; the pod's grace period is this plus 15.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub stop_timeout: u64,
    /// Hugepages the enclave's memory comes from (nitro).
    #[arg(long, value_enum, default_value = "2Mi", value_name = "2Mi|1Gi")]
    pub hugepage_size: HugepageSize,
    /// Memory for the parent's own processes in the pod (run, supervisor, proxies).
    #[arg(long, value_name = "SIZE", default_value_t = MemoryMib(256))]
    pub parent_memory: MemoryMib,
    /// CPU request of the parent's own processes: millicores (250m) or CPUs (1).
    #[arg(long, value_name = "CPU", default_value = "250m", value_parser = parse_millicores)]
    pub parent_cpu: u32,
    /// Serve the supervisor's Prometheus metrics on the pod's address at this port
    /// (`run --metrics-listen 0.0.0.0:PORT`), declared as the container port `metrics` and
    /// announced with the prometheus.io/scrape, /port and /path pod annotations. Off by default.
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub metrics_port: Option<u16>,
    #[command(flatten)]
    pub out: ManifestOutput,
}

/// `enclave-ctl kube node-setup-daemonset`.
#[derive(Debug, Args)]
#[command(
    after_help = "Runs `enclave-ctl node setup --root /host` in a privileged init container on nodes labelled\n\
    aws-nitro-enclaves-k8s-dp=enabled (the label of AWS's device plugin), then a pause container.\n\n\
    Example:\n  \
    enclave-ctl kube node-setup-daemonset --image registry.example/app:1.0 --cpus 2 --memory 2048 | kubectl apply -f -"
)]
pub struct NodeSetupDaemonsetArgs {
    /// An image with enclave-ctl at /usr/local/bin/enclave-ctl (any `enclave-ctl package` image).
    #[arg(long, value_name = "REF")]
    pub image: String,
    /// CPUs the allocator reserves for enclaves on each node.
    #[arg(long, value_name = "N")]
    pub cpus: u32,
    /// MiB the allocator reserves for enclaves on each node.
    #[arg(long, value_name = "MIB")]
    pub memory: u64,
    /// Hugepage size reserved.
    #[arg(long, value_enum, default_value = "2Mi", value_name = "2M|1G")]
    pub hugepage_size: HugepageSize,
    /// Namespace.
    #[arg(
        long,
        short = 'n',
        default_value = "kube-system",
        value_name = "NAMESPACE"
    )]
    pub namespace: String,
    /// The image of the long-lived container.
    #[arg(long, default_value = crate::kube::daemonset::PAUSE_IMAGE, value_name = "REF")]
    pub pause_image: String,
    #[command(flatten)]
    pub out: ManifestOutput,
}

/// `enclave-ctl node`.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: NodeCommand,
}

/// The `node` subcommands.
#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Prepare a Nitro node: allocator.yaml, hugepages, the ne group, the allocator service.
    Setup(NodeSetupArgs),
}

/// `enclave-ctl node setup`.
#[derive(Debug, Args)]
#[command(
    after_help = "One line a step: ok|changed|missing|skipped  STEP  DETAIL. Running it again changes nothing.\n\
    With --check, nothing changes; exit status 1 when a step is missing, 0 when all is in place.\n\n\
    Examples:\n  \
    sudo enclave-ctl node setup --cpus 2 --memory 2048            # EC2 user data\n  \
    enclave-ctl node setup --root /host --cpus 2 --memory 2048    # a privileged DaemonSet"
)]
pub struct NodeSetupArgs {
    /// CPUs reserved for enclaves (allocator.yaml's cpu_count).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub cpus: u32,
    /// MiB reserved for enclaves (allocator.yaml's memory_mib).
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..))]
    pub memory: u64,
    /// The node's root directory (/host in a DaemonSet that mounts the node's /).
    #[arg(long, default_value = "/", value_name = "DIR")]
    pub root: PathBuf,
    /// Change nothing: report, exit 1 when something is missing.
    #[arg(long)]
    pub check: bool,
    /// Hugepage size reserved.
    #[arg(long, value_enum, default_value = "2M", value_name = "2M|1G")]
    pub hugepage_size: HugepageSize,
    /// A JSON list of {status, step, detail} instead of lines.
    #[arg(long)]
    pub json: bool,
}

/// `250m` → 250, `1` → 1000, `0.5` → 500.
fn parse_millicores(s: &str) -> Result<u32, String> {
    let bad = || format!("{s:?} is not a CPU quantity: use millicores (250m) or CPUs (1, 0.5)");
    let millis = if let Some(m) = s.strip_suffix('m') {
        m.parse::<u32>().map_err(|_| bad())?
    } else {
        let cpus: f64 = s.parse().map_err(|_| bad())?;
        if !(cpus.is_finite() && cpus > 0.0 && cpus <= 1024.0) {
            return Err(bad());
        }
        (cpus * 1000.0).round() as u32
    };
    if millis == 0 {
        return Err(bad());
    }
    Ok(millis)
}
