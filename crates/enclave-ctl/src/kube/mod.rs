//! Kubernetes: manifests that run enclaves in pods (`kube generate`), the DaemonSet that
//! prepares Nitro nodes (`kube node-setup-daemonset`), and that preparation itself
//! (`node setup`). Library-style: typed parameters in, typed manifests or step reports out;
//! `cmd/kube.rs` and `cmd/node.rs` only parse flags and print.
//!
//! The Nitro side relies on AWS's Nitro Enclaves device plugin
//! (github.com/aws/aws-nitro-enclaves-k8s-device-plugin, read at commit 62e954c): its DaemonSet
//! (aws-nitro-enclaves-k8s-ds.yaml) runs on nodes labelled `aws-nitro-enclaves-k8s-dp: enabled`
//! and advertises `aws.ec2.nitro/nitro_enclaves` (pkg/nitro_enclaves_device_plugin). It sets no
//! taint and no toleration; we add a toleration for a `NoSchedule` taint with the label's key,
//! so that an operator may keep other pods off enclave nodes.

mod allocator;
pub mod daemonset;
pub mod generate;
pub mod manifest;
pub mod node;

use std::io::Write;
use std::path::Path;

use manifest::{Map, Toleration};

/// The label every generated object and pod carries, and the selector uses.
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
/// Where `enclave-ctl package` puts enclave-ctl in the container image.
pub const CTL_IN_IMAGE: &str = "/usr/local/bin/enclave-ctl";
/// The node label AWS's device plugin DaemonSet selects (its README: `kubectl label node
/// <node-name> aws-nitro-enclaves-k8s-dp=enabled`).
pub const NITRO_NODE_LABEL: &str = "aws-nitro-enclaves-k8s-dp";
/// Its value.
pub const NITRO_NODE_LABEL_VALUE: &str = "enabled";

/// The node selector and tolerations of pods that need a Nitro node.
pub fn nitro_placement() -> (Map, Vec<Toleration>) {
    (
        Map::from([(NITRO_NODE_LABEL.into(), NITRO_NODE_LABEL_VALUE.into())]),
        vec![Toleration {
            key: NITRO_NODE_LABEL.into(),
            operator: "Exists",
            effect: "NoSchedule",
        }],
    )
}

/// The hugepage size enclave memory comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum HugepageSize {
    /// 2 MiB pages (the default: any amount, no boot-time reservation needed).
    #[default]
    #[value(name = "2Mi", alias = "2M", alias = "2m")]
    Mi2,
    /// 1 GiB pages (fewer pages for large enclaves; best reserved early, before memory fragments).
    #[value(name = "1Gi", alias = "1G", alias = "1g")]
    Gi1,
}

impl HugepageSize {
    /// The page size, MiB.
    pub fn mib(self) -> u64 {
        match self {
            HugepageSize::Mi2 => 2,
            HugepageSize::Gi1 => 1024,
        }
    }

    /// Pages that cover `memory_mib`.
    pub fn pages_for(self, memory_mib: u64) -> u64 {
        memory_mib.div_ceil(self.mib())
    }

    /// The Kubernetes resource name: `hugepages-2Mi` or `hugepages-1Gi`.
    pub fn resource_name(self) -> &'static str {
        match self {
            HugepageSize::Mi2 => "hugepages-2Mi",
            HugepageSize::Gi1 => "hugepages-1Gi",
        }
    }

    /// `memory_mib` rounded up to whole pages, as a quantity: `1000Mi`, `2Gi`.
    pub fn quantity(self, memory_mib: u64) -> String {
        let pages = self.pages_for(memory_mib);
        match self {
            HugepageSize::Mi2 => format!("{}Mi", pages * 2),
            HugepageSize::Gi1 => format!("{pages}Gi"),
        }
    }

    /// The sysfs directory name: `hugepages-2048kB` or `hugepages-1048576kB`.
    pub fn sysfs_dir(self) -> &'static str {
        match self {
            HugepageSize::Mi2 => "hugepages-2048kB",
            HugepageSize::Gi1 => "hugepages-1048576kB",
        }
    }

    /// `2M` or `1G`, as `node setup --hugepage-size` takes it.
    pub fn short(self) -> &'static str {
        match self {
            HugepageSize::Mi2 => "2M",
            HugepageSize::Gi1 => "1G",
        }
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory, renamed into
/// place: readers see the old content or the new, never half of it; on error nothing is left.
/// The file gets the mode and owner of `like` (the file it replaces), else mode 0644.
pub fn write_atomically(
    path: &Path,
    bytes: &[u8],
    like: Option<&std::fs::Metadata>,
) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".enclave-ctl-")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    let mode = like.map_or(0o644, |m| m.mode() & 0o7777);
    if let Some(m) = like {
        std::os::unix::fs::fchown(tmp.as_file(), Some(m.uid()), Some(m.gid()))?;
    }
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
