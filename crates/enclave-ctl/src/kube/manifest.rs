//! The pieces of Kubernetes manifests that `kube generate` and `kube node-setup-daemonset`
//! write, as typed structs: only the fields we set, named as the API names them (camelCase),
//! empty ones left out. Serialized with serde into YAML (`yaml_serde`) or JSON; the field order
//! is the struct order, so the output is stable (the golden files in deploy/kubernetes/examples
//! pin it). Every manifest written is validated against the API's schemas in the tests
//! (kubernetes-validate --strict), which catches a misspelt field here.

use std::collections::BTreeMap;

use serde::Serialize;

/// String to string maps (labels, annotations, node selectors, resource lists): sorted.
pub type Map = BTreeMap<String, String>;

/// One top-level object: what a YAML document or an element of the `--json` list holds.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Manifest {
    /// An `apps/v1` Deployment.
    Deployment(Workload<DeploymentSpec>),
    /// An `apps/v1` DaemonSet.
    DaemonSet(Workload<DaemonSetSpec>),
    /// A `v1` Service.
    Service(Service),
}

/// A Deployment or a DaemonSet: `apps/v1`, metadata and a spec holding a pod template.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Workload<S> {
    /// `apps/v1`.
    pub api_version: &'static str,
    /// `Deployment` or `DaemonSet`.
    pub kind: &'static str,
    /// Name, namespace, labels.
    pub metadata: ObjectMeta,
    /// The workload's spec.
    pub spec: S,
}

/// `metadata`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    /// The object's name (absent in a pod template).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its namespace (absent: the one `kubectl apply` uses).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Labels.
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub labels: Map,
    /// Annotations (the PCRs on the pod template).
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub annotations: Map,
}

/// A Deployment's `spec`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentSpec {
    /// Pods wanted.
    pub replicas: u32,
    /// Which pods are this Deployment's.
    pub selector: LabelSelector,
    /// The pods.
    pub template: PodTemplate,
}

/// A DaemonSet's `spec`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DaemonSetSpec {
    /// Which pods are this DaemonSet's.
    pub selector: LabelSelector,
    /// The pods.
    pub template: PodTemplate,
}

/// `selector`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    /// Labels a pod must carry.
    pub match_labels: Map,
}

/// `template`.
#[derive(Debug, Clone, Serialize)]
pub struct PodTemplate {
    /// The pods' labels and annotations.
    pub metadata: ObjectMeta,
    /// The pods' spec.
    pub spec: PodSpec,
}

/// A pod's `spec`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    /// Nodes the pod may run on (by label).
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub node_selector: Map,
    /// Taints the pod tolerates.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// `system-node-critical` for the node setup DaemonSet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// No service account token in the pod: nothing here talks to the API server.
    pub automount_service_account_token: bool,
    /// Seconds between SIGTERM and SIGKILL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub termination_grace_period_seconds: Option<u64>,
    /// Run to completion before the containers start.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub init_containers: Vec<Container>,
    /// The containers.
    pub containers: Vec<Container>,
    /// Volumes the containers mount.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
}

/// A toleration.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Toleration {
    /// The taint's key.
    pub key: String,
    /// `Exists` or `Equal`.
    pub operator: &'static str,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    pub effect: &'static str,
}

/// A container.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    /// Its name in the pod.
    pub name: String,
    /// The image reference.
    pub image: String,
    /// Replaces the image's Entrypoint.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Arguments to the Entrypoint (or `command`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Ports the container listens on (informational, and named for the Service).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ContainerPort>,
    /// Requests and limits.
    pub resources: Resources,
    /// Privileges.
    pub security_context: SecurityContext,
    /// Mounted volumes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
    /// Restarted when it fails.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Probe>,
    /// Taken out of the Service's endpoints when it fails.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Probe>,
    /// Holds the other probes off until it succeeds (the boot).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub startup_probe: Option<Probe>,
}

/// `ports[]` of a container.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort {
    /// `tcp-PORT` (at most 15 characters).
    pub name: String,
    /// The port.
    pub container_port: u16,
    /// `TCP`.
    pub protocol: &'static str,
}

/// `resources`: quantities by resource name.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Resources {
    /// What the scheduler reserves.
    pub requests: Map,
    /// What the pod may use at most.
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub limits: Map,
}

/// `securityContext` of a container.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityContext {
    /// Only the node setup DaemonSet's init container is privileged.
    pub privileged: bool,
    /// No setuid gains; false whenever `privileged` is (the API refuses the pair).
    pub allow_privilege_escalation: bool,
}

/// An exec probe.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    /// The command run in the container.
    pub exec: ExecAction,
    /// Seconds between runs.
    pub period_seconds: u32,
    /// Seconds a run may take.
    pub timeout_seconds: u32,
    /// Failures in a row that count.
    pub failure_threshold: u32,
}

/// `exec` of a probe.
#[derive(Debug, Clone, Serialize)]
pub struct ExecAction {
    /// argv.
    pub command: Vec<String>,
}

/// A volume.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    /// Its name in the pod.
    pub name: String,
    /// An emptyDir (`medium: HugePages` for the enclave's memory).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub empty_dir: Option<EmptyDir>,
    /// A directory of the node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_path: Option<HostPath>,
}

/// `emptyDir`.
#[derive(Debug, Clone, Serialize)]
pub struct EmptyDir {
    /// `HugePages`, `HugePages-2Mi`, `HugePages-1Gi` or `Memory`.
    pub medium: &'static str,
}

/// `hostPath`.
#[derive(Debug, Clone, Serialize)]
pub struct HostPath {
    /// The node's path.
    pub path: String,
    /// `Directory`: must exist.
    #[serde(rename = "type")]
    pub kind: &'static str,
}

/// `volumeMounts[]`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeMount {
    /// The volume's name.
    pub name: String,
    /// Where in the container.
    pub mount_path: String,
    /// `HostToContainer` for the host's root (mounts made later on the host show up).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mount_propagation: Option<&'static str>,
}

/// A `v1` Service.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    /// `v1`.
    pub api_version: &'static str,
    /// `Service`.
    pub kind: &'static str,
    /// Name and labels.
    pub metadata: ObjectMeta,
    /// Selector and ports.
    pub spec: ServiceSpec,
}

/// A Service's `spec`.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceSpec {
    /// `ClusterIP`: reachable from inside the cluster only.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The pods it sends to.
    pub selector: Map,
    /// The ports.
    pub ports: Vec<ServicePort>,
}

/// `ports[]` of a Service.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    /// `tcp-PORT`.
    pub name: String,
    /// `TCP`.
    pub protocol: &'static str,
    /// The Service's port.
    pub port: u16,
    /// The container's port (the one `run -p` publishes).
    pub target_port: u16,
}

/// How the manifests are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// YAML documents separated by `---`.
    Yaml,
    /// One JSON list of the objects.
    Json,
}

/// Errors serializing manifests (not expected: the types are plain data).
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// YAML.
    #[error("writing YAML: {0}")]
    Yaml(#[from] yaml_serde::Error),
    /// JSON.
    #[error("writing JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// The manifests as text: YAML documents (each opened by `---`), or a JSON list.
pub fn render(manifests: &[Manifest], format: Format, header: &str) -> Result<String, RenderError> {
    match format {
        Format::Json => {
            let mut text = serde_json::to_string_pretty(manifests)?;
            text.push('\n');
            Ok(text)
        }
        Format::Yaml => {
            let mut text = String::new();
            for line in header.lines() {
                text.push_str(if line.is_empty() { "#" } else { "# " });
                text.push_str(line);
                text.push('\n');
            }
            for manifest in manifests {
                text.push_str("---\n");
                text.push_str(&yaml_serde::to_string(manifest)?);
            }
            Ok(text)
        }
    }
}
