//! `kube generate`: a Deployment (and a Service for the spec's ingress ports) that runs an
//! enclave in a pod, the way the rest of the toolchain expects it:
//!
//! - the container image is made by `enclave-ctl package`: Entrypoint
//!   `["/usr/local/bin/enclave-ctl", "run"]`, the EIF at [`EIF_IN_IMAGE`]; the container's args
//!   are `run`'s flags and that path;
//! - health is `enclave-ctl health [--live] NAME`, as exec probes: no network listener needed;
//! - on `nitro`, the enclave device and its memory (hugepages) come from AWS's Nitro Enclaves
//!   device plugin and the node's reserved hugepages; the parent's own processes get a small
//!   memory request of their own. On `emulated`, QEMU's guest memory is ordinary pod memory.
//!
//! The inputs (an EIF, or an enclave.yaml) are read by [`load`]; [`deployment`] is pure.

use std::path::{Path, PathBuf};

use enclave_engine::memory::MemoryMib;
use enclave_image::eif::app_spec::{read_spec, AppSpecError};
use enclave_image::eif::{EifReader, Measurements, ReadError};
use enclave_spec::{EnclaveSpec, SpecError};

use super::manifest::{
    Container, ContainerPort, DeploymentSpec, EmptyDir, ExecAction, LabelSelector, Manifest, Map,
    ObjectMeta, PodSpec, PodTemplate, Probe, Resources, SecurityContext, Service, ServicePort,
    ServiceSpec, Volume, VolumeMount, Workload,
};
use super::{nitro_placement, HugepageSize, CTL_IN_IMAGE, NAME_LABEL};

/// Where `enclave-ctl package` puts the EIF in the container image.
pub const EIF_IN_IMAGE: &str = "/enclave/app.eif";
/// The resource AWS's device plugin advertises, one per enclave (its
/// pkg/nitro_enclaves_device_plugin/device_plugin.go: `"aws.ec2.nitro/" + deviceName`, and the
/// README's example `resources`).
pub const NITRO_DEVICE: &str = "aws.ec2.nitro/nitro_enclaves";
/// Seconds between the stop timeout's end and Kubernetes' SIGKILL.
pub const GRACE_MARGIN_SECS: u64 = 15;
/// Annotation prefix of the PCRs on the pod template (`dev.enclave-engine.pcr0`, …).
pub const PCR_ANNOTATION: &str = "dev.enclave-engine.pcr";

/// Where the enclave runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// Real Nitro Enclaves (EKS/EC2 nodes with AWS's device plugin).
    Nitro,
    /// QEMU in the pod (kind, minikube, CI): no device, no hugepages.
    Emulated,
}

impl Backend {
    /// As `--backend` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Nitro => "nitro",
            Backend::Emulated => "emulated",
        }
    }

    /// The `run --backend` value.
    pub fn run_flag(self) -> &'static str {
        match self {
            Backend::Nitro => "nitro",
            Backend::Emulated => "qemu",
        }
    }
}

/// What `kube generate` reads: an EIF (spec and PCRs) or an enclave.yaml (spec only).
#[derive(Debug, Clone)]
pub enum Source {
    /// A built EIF.
    Eif(PathBuf),
    /// An enclave.yaml.
    Spec(PathBuf),
}

/// What the inputs say.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The (measured) spec; an EIF built without one has none.
    pub spec: Option<EnclaveSpec>,
    /// The PCRs, from an EIF only.
    pub pcrs: Option<Measurements>,
    /// The name to use without `--name`: the spec's, else the EIF's file stem.
    pub default_name: Option<String>,
}

/// Why manifests could not be made.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// The spec file could not be read.
    #[error("reading {}", path.display())]
    ReadSpec {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The spec file is not a valid spec.
    #[error("in {}", path.display())]
    Spec {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: SpecError,
    },
    /// The EIF could not be read or measured.
    #[error("reading the EIF {}", path.display())]
    Eif {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: ReadError,
    },
    /// The EIF's measured spec could not be read.
    #[error("reading the measured spec of {}", path.display())]
    AppSpec {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: AppSpecError,
    },
    /// Neither `--name` nor a name in the inputs.
    #[error("no name for the enclave: the spec has no `name:`; give --name")]
    NoName,
    /// Not usable as a Kubernetes object name.
    #[error("{0:?} is not a valid Kubernetes name (lower-case letters, digits and '-', starting with a letter, at most 63 characters); give --name")]
    BadName(String),
    /// Zero replicas, CPUs, or memory.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    /// `--metrics-port` is one of the enclave's ingress ports.
    #[error("--metrics-port {0} is also an ingress port of the enclave; choose another")]
    MetricsPortTaken(u16),
}

/// Reads the inputs.
pub fn load(source: &Source) -> Result<Loaded, GenerateError> {
    match source {
        Source::Spec(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| GenerateError::ReadSpec {
                path: path.clone(),
                source,
            })?;
            let spec = EnclaveSpec::from_yaml(&text).map_err(|source| GenerateError::Spec {
                path: path.clone(),
                source,
            })?;
            Ok(Loaded {
                default_name: spec.name.clone(),
                spec: Some(spec),
                pcrs: None,
            })
        }
        Source::Eif(path) => {
            let eif_err = |source| GenerateError::Eif {
                path: path.clone(),
                source,
            };
            let mut reader = EifReader::open(path).map_err(eif_err)?;
            let pcrs = reader.measure().map_err(eif_err)?;
            let spec = read_spec(&mut reader).map_err(|source| GenerateError::AppSpec {
                path: path.clone(),
                source,
            })?;
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().to_ascii_lowercase());
            Ok(Loaded {
                default_name: spec.as_ref().and_then(|s| s.name.clone()).or(stem),
                spec,
                pcrs: Some(pcrs),
            })
        }
    }
}

/// Everything a Deployment is made from.
#[derive(Debug, Clone)]
pub struct Params {
    /// Object, label and enclave name.
    pub name: String,
    /// The packaged container image.
    pub image: String,
    /// Nitro or emulated.
    pub backend: Backend,
    /// Pods.
    pub replicas: u32,
    /// The enclave's vCPUs.
    pub cpus: u32,
    /// The enclave's memory, MiB.
    pub memory_mib: u64,
    /// `run --stop-timeout`, seconds.
    pub stop_timeout: u64,
    /// The hugepages the enclave's memory comes from (nitro).
    pub hugepage_size: HugepageSize,
    /// Memory of the parent's own processes (run, supervisor, proxies), MiB.
    pub parent_memory_mib: u64,
    /// CPU request of the parent's own processes, millicores.
    pub parent_cpu_millis: u32,
    /// Namespace, when given.
    pub namespace: Option<String>,
    /// The spec's ingress ports (published on the pod's address).
    pub ingress: Vec<u16>,
    /// PCRs for the pod template's annotations.
    pub pcrs: Option<Measurements>,
    /// `--metrics-port`: the supervisor's `/metrics` on the pod's address.
    pub metrics_port: Option<u16>,
}

/// Checks a name: a DNS-1035 label, what Services need (Deployments accept more).
pub fn check_name(name: &str) -> Result<(), GenerateError> {
    let bytes = name.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_lowercase()
        && bytes[bytes.len() - 1] != b'-'
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    if ok {
        Ok(())
    } else {
        Err(GenerateError::BadName(name.to_owned()))
    }
}

/// The ingress ports of a spec, each once, in the spec's order.
pub fn ingress_ports(spec: Option<&EnclaveSpec>) -> Vec<u16> {
    let mut ports: Vec<u16> = Vec::new();
    for rule in spec.map(|s| s.ingress.as_slice()).unwrap_or_default() {
        if !ports.contains(&rule.port) {
            ports.push(rule.port);
        }
    }
    ports
}

/// The Deployment, then the Service when there are ingress ports.
pub fn deployment(p: &Params) -> Result<Vec<Manifest>, GenerateError> {
    check_name(&p.name)?;
    for (what, value) in [
        ("--replicas", u64::from(p.replicas)),
        ("--cpus", u64::from(p.cpus)),
        ("--memory", p.memory_mib),
        ("--parent-memory", p.parent_memory_mib),
    ] {
        if value == 0 {
            return Err(GenerateError::Zero(what));
        }
    }
    if let Some(port) = p.metrics_port.filter(|port| p.ingress.contains(port)) {
        return Err(GenerateError::MetricsPortTaken(port));
    }
    let labels = labels(&p.name);
    let selector = Map::from([(NAME_LABEL.to_owned(), p.name.clone())]);
    let mut annotations = Map::new();
    if let Some(port) = p.metrics_port {
        // The annotations most Prometheus setups' pod discovery looks for.
        annotations.insert("prometheus.io/scrape".into(), "true".into());
        annotations.insert("prometheus.io/port".into(), port.to_string());
        annotations.insert("prometheus.io/path".into(), "/metrics".into());
    }
    if let Some(m) = &p.pcrs {
        for (index, value) in [(0, m.pcr0_hex()), (1, m.pcr1_hex()), (2, m.pcr2_hex())]
            .into_iter()
            .chain(m.pcr8_hex().map(|v| (8, v)))
        {
            annotations.insert(format!("{PCR_ANNOTATION}{index}"), value);
        }
    }
    let mut pod = PodSpec {
        termination_grace_period_seconds: Some(p.stop_timeout + GRACE_MARGIN_SECS),
        containers: vec![container(p)],
        ..PodSpec::default()
    };
    if p.backend == Backend::Nitro {
        let (node_selector, tolerations) = nitro_placement();
        pod.node_selector = node_selector;
        pod.tolerations = tolerations;
        pod.volumes.push(Volume {
            name: "hugepages".into(),
            empty_dir: Some(EmptyDir {
                medium: "HugePages",
            }),
            host_path: None,
        });
    }
    let mut manifests = vec![Manifest::Deployment(Workload {
        api_version: "apps/v1",
        kind: "Deployment",
        metadata: meta(p, &labels),
        spec: DeploymentSpec {
            replicas: p.replicas,
            selector: LabelSelector {
                match_labels: selector.clone(),
            },
            template: PodTemplate {
                metadata: ObjectMeta {
                    labels: labels.clone(),
                    annotations,
                    ..ObjectMeta::default()
                },
                spec: pod,
            },
        },
    })];
    if !p.ingress.is_empty() {
        manifests.push(Manifest::Service(Service {
            api_version: "v1",
            kind: "Service",
            metadata: meta(p, &labels),
            spec: ServiceSpec {
                kind: "ClusterIP",
                selector,
                ports: p
                    .ingress
                    .iter()
                    .map(|&port| ServicePort {
                        name: port_name(port),
                        protocol: "TCP",
                        port,
                        target_port: port,
                    })
                    .collect(),
            },
        }));
    }
    Ok(manifests)
}

fn labels(name: &str) -> Map {
    Map::from([
        (NAME_LABEL.to_owned(), name.to_owned()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "enclave-ctl".to_owned(),
        ),
    ])
}

fn meta(p: &Params, labels: &Map) -> ObjectMeta {
    ObjectMeta {
        name: Some(p.name.clone()),
        namespace: p.namespace.clone(),
        labels: labels.clone(),
        annotations: Map::new(),
    }
}

fn port_name(port: u16) -> String {
    format!("tcp-{port}")
}

/// `run`'s arguments (after the image's Entrypoint `enclave-ctl run`).
pub fn run_args(p: &Params) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--name".into(),
        p.name.clone(),
        "--backend".into(),
        p.backend.run_flag().into(),
        "--cpus".into(),
        p.cpus.to_string(),
        "--memory".into(),
        MemoryMib(p.memory_mib).to_string(),
        "--stop-timeout".into(),
        p.stop_timeout.to_string(),
    ];
    for port in &p.ingress {
        args.push("-p".into());
        args.push(format!("0.0.0.0:{port}:{port}"));
    }
    if let Some(port) = p.metrics_port {
        args.push("--metrics-listen".into());
        args.push(format!("0.0.0.0:{port}"));
    }
    args.push(EIF_IN_IMAGE.into());
    args
}

fn container(p: &Params) -> Container {
    let health = |live: bool| {
        let mut command = vec![CTL_IN_IMAGE.to_owned(), "health".to_owned()];
        if live {
            command.push("--live".to_owned());
        }
        command.push(p.name.clone());
        ExecAction { command }
    };
    let probe = |live: bool, period_seconds, failure_threshold| Probe {
        exec: health(live),
        period_seconds,
        timeout_seconds: 5,
        failure_threshold,
    };
    let mut c = Container {
        name: "enclave".into(),
        image: p.image.clone(),
        args: run_args(p),
        ports: p
            .ingress
            .iter()
            .map(|&port| ContainerPort {
                name: port_name(port),
                container_port: port,
                protocol: "TCP",
            })
            .chain(p.metrics_port.map(|port| ContainerPort {
                name: "metrics".into(),
                container_port: port,
                protocol: "TCP",
            }))
            .collect(),
        resources: resources(p),
        security_context: SecurityContext {
            privileged: false,
            allow_privilege_escalation: false,
        },
        liveness_probe: Some(probe(true, 10, 3)),
        readiness_probe: Some(probe(false, 5, 3)),
        // A boot under TCG or a large EIF on Nitro: up to five minutes before the others start.
        startup_probe: Some(probe(false, 5, 60)),
        ..Container::default()
    };
    if p.backend == Backend::Nitro {
        c.volume_mounts.push(VolumeMount {
            name: "hugepages".into(),
            mount_path: "/dev/hugepages".into(),
            mount_propagation: None,
        });
    }
    c
}

/// Requests and limits. Nitro: the device, the enclave's hugepages and the parent's memory,
/// requests equal to limits (Kubernetes insists for devices and hugepages), plus a CPU request
/// (the enclave's vCPUs are the node's offlined CPUs, outside the pod's cgroup). Emulated: the
/// guest's memory is the pod's, on top of the parent's.
pub fn resources(p: &Params) -> Resources {
    let mut limits = Map::new();
    match p.backend {
        Backend::Nitro => {
            limits.insert(NITRO_DEVICE.into(), "1".into());
            limits.insert(
                p.hugepage_size.resource_name().into(),
                p.hugepage_size.quantity(p.memory_mib),
            );
            limits.insert("memory".into(), format!("{}Mi", p.parent_memory_mib));
        }
        Backend::Emulated => {
            limits.insert(
                "memory".into(),
                format!("{}Mi", p.parent_memory_mib + p.memory_mib),
            );
        }
    }
    let mut requests = limits.clone();
    requests.insert("cpu".into(), millicores(p.parent_cpu_millis));
    Resources { requests, limits }
}

/// `250m`, or `2` for whole CPUs.
fn millicores(m: u32) -> String {
    if m.is_multiple_of(1000) {
        (m / 1000).to_string()
    } else {
        format!("{m}m")
    }
}

/// The input's path, as given (for the header of the YAML).
pub fn describe(source: &Source) -> String {
    let path: &Path = match source {
        Source::Eif(p) | Source::Spec(p) => p,
    };
    path.display().to_string()
}
