//! `kube node-setup-daemonset`: a DaemonSet that runs `enclave-ctl node setup --root /host` on
//! every node labelled for enclaves, then keeps a pause container so the pod (and its log)
//! stays. The setup runs as a privileged init container with the node's `/` at `/host` (it
//! writes the allocator's config, `/etc/group` and sysfs); the long-lived container is the
//! unprivileged pause image. So each node boot (a new pod) sets the node up again, which
//! is what sysfs hugepages need (they do not survive a reboot).

use super::manifest::{
    Container, DaemonSetSpec, HostPath, LabelSelector, Manifest, Map, ObjectMeta, PodSpec,
    PodTemplate, Resources, SecurityContext, Volume, VolumeMount, Workload,
};
use super::{nitro_placement, HugepageSize, CTL_IN_IMAGE, NAME_LABEL};

/// The pause image of Kubernetes 1.31 to 1.37 (what kubelet's sandbox uses).
pub const PAUSE_IMAGE: &str = "registry.k8s.io/pause:3.10";

/// What the DaemonSet is made from.
#[derive(Debug, Clone)]
pub struct NodeSetupParams {
    /// An image holding enclave-ctl at [`CTL_IN_IMAGE`] (any `enclave-ctl package` image).
    pub image: String,
    /// The allocator's `cpu_count`.
    pub cpus: u32,
    /// The allocator's `memory_mib`.
    pub memory_mib: u64,
    /// The hugepages reserved.
    pub hugepage_size: HugepageSize,
    /// The namespace (kube-system by default).
    pub namespace: String,
    /// The long-lived container's image.
    pub pause_image: String,
}

/// The DaemonSet's name and label.
pub const NAME: &str = "enclave-node-setup";

/// The DaemonSet.
pub fn node_setup_daemonset(p: &NodeSetupParams) -> Manifest {
    let labels = Map::from([(NAME_LABEL.to_owned(), NAME.to_owned())]);
    let (node_selector, tolerations) = nitro_placement();
    let setup = Container {
        name: "node-setup".into(),
        image: p.image.clone(),
        command: vec![
            CTL_IN_IMAGE.into(),
            "node".into(),
            "setup".into(),
            "--root".into(),
            "/host".into(),
            "--cpus".into(),
            p.cpus.to_string(),
            "--memory".into(),
            p.memory_mib.to_string(),
            "--hugepage-size".into(),
            p.hugepage_size.short().into(),
        ],
        resources: small(10, 32, 64),
        // Privileged: it writes the node's sysfs. The API refuses privileged without escalation.
        security_context: SecurityContext {
            privileged: true,
            allow_privilege_escalation: true,
        },
        volume_mounts: vec![VolumeMount {
            name: "host".into(),
            mount_path: "/host".into(),
            mount_propagation: Some("HostToContainer"),
        }],
        ..Container::default()
    };
    let pause = Container {
        name: "pause".into(),
        image: p.pause_image.clone(),
        resources: small(1, 8, 16),
        security_context: SecurityContext::default(),
        ..Container::default()
    };
    Manifest::DaemonSet(Workload {
        api_version: "apps/v1",
        kind: "DaemonSet",
        metadata: ObjectMeta {
            name: Some(NAME.into()),
            namespace: Some(p.namespace.clone()),
            labels: labels.clone(),
            ..ObjectMeta::default()
        },
        spec: DaemonSetSpec {
            selector: LabelSelector {
                match_labels: labels.clone(),
            },
            template: PodTemplate {
                metadata: ObjectMeta {
                    labels,
                    ..ObjectMeta::default()
                },
                spec: PodSpec {
                    node_selector,
                    tolerations,
                    priority_class_name: Some("system-node-critical".into()),
                    termination_grace_period_seconds: Some(5),
                    init_containers: vec![setup],
                    containers: vec![pause],
                    volumes: vec![Volume {
                        name: "host".into(),
                        empty_dir: None,
                        host_path: Some(HostPath {
                            path: "/".into(),
                            kind: "Directory",
                        }),
                    }],
                    ..PodSpec::default()
                },
            },
        },
    })
}

/// A small container's resources: a CPU request, memory request and limit.
fn small(cpu_millis: u32, memory_mib: u32, limit_mib: u32) -> Resources {
    Resources {
        requests: Map::from([
            ("cpu".to_owned(), format!("{cpu_millis}m")),
            ("memory".to_owned(), format!("{memory_mib}Mi")),
        ]),
        limits: Map::from([("memory".to_owned(), format!("{limit_mib}Mi"))]),
    }
}
