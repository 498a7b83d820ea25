//! enclave-init's configuration carried in the bootstrap ramdisk (`/enclave-init/config.json`).

use serde::{Deserialize, Serialize};

/// Version of the [`InitConfig`] format.
///
/// 2: `netfilter`, the backend of transparent egress's redirect.
pub const INIT_CONFIG_VERSION: u32 = 2;

/// The vsock CID of the parent instance on Nitro.
pub const NITRO_PARENT_CID: u32 = 3;

/// The vsock port the parent listens on for the boot heartbeat.
pub const HEARTBEAT_PORT: u32 = 9000;

/// The byte the enclave sends, and the parent echoes, as the boot heartbeat.
pub const HEARTBEAT_BYTE: u8 = 0xB7;

/// Kernel command-line parameter overriding the parent CID (the emulated backend sets it, since
/// there the host is CID 2).
pub const PARENT_CID_CMDLINE_PARAM: &str = "enclave.parent_cid";

/// The kernel profile of images for the emulated backend: the only ones whose enclave-init asks
/// the parent's supervisor to act as the NSM.
pub const KERNEL_PROFILE_EMULATED: &str = "emulated";

/// How transparent egress's redirect is programmed, chosen by `enclave-image` from the kernel
/// config (see docs/networking.md, "Two netfilter backends").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Netfilter {
    /// An nf_tables NAT chain over nfnetlink (kernels with `CONFIG_NF_TABLES`).
    Nftables,
    /// An iptables nat table rule through `IPT_SO_SET_REPLACE` (kernels with iptables but no
    /// nf_tables, such as AWS's enclave kernels).
    Xtables,
}

impl Netfilter {
    /// The name the config and the build's output use.
    pub fn name(self) -> &'static str {
        match self {
            Netfilter::Nftables => "nftables",
            Netfilter::Xtables => "xtables",
        }
    }
}

/// How enclave-init boots the enclave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitConfig {
    /// Format version, [`INIT_CONFIG_VERSION`].
    pub version: u32,
    /// Kernel module file names under `/enclave-init/modules`, loaded in this order.
    pub modules: Vec<String>,
    /// Parent CID for the heartbeat unless the kernel command line overrides it.
    pub parent_cid: u32,
    /// Port of the heartbeat on the parent.
    pub heartbeat_port: u32,
    /// The kernel profile the image was built for (`nitro` or `emulated`). Measured (PCR1):
    /// enclave-init uses the emulated NSM only under [`KERNEL_PROFILE_EMULATED`].
    pub kernel_profile: String,
    /// The backend transparent egress's redirect uses; `None` when the image has no transparent
    /// egress (and then no netfilter modules). Measured (PCR1) with the modules it goes with.
    pub netfilter: Option<Netfilter>,
}

impl InitConfig {
    /// A configuration with Nitro's defaults, the given modules and netfilter backend.
    pub fn new(kernel_profile: &str, modules: Vec<String>, netfilter: Option<Netfilter>) -> Self {
        Self {
            version: INIT_CONFIG_VERSION,
            modules,
            parent_cid: NITRO_PARENT_CID,
            heartbeat_port: HEARTBEAT_PORT,
            kernel_profile: kernel_profile.to_owned(),
            netfilter,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netfilter_is_spelled_and_checked() {
        let cfg = InitConfig::new("nitro", vec![], Some(Netfilter::Xtables));
        let json = serde_json::to_value(&cfg).unwrap();
        assert_eq!(json["netfilter"], "xtables");
        assert_eq!(json["version"], 2);
        let mut bad = json.clone();
        bad["netfilter"] = "iptables".into();
        assert!(serde_json::from_value::<InitConfig>(bad).is_err());
        let mut extra = json;
        extra["firewall"] = "xtables".into();
        assert!(serde_json::from_value::<InitConfig>(extra).is_err());
        let none = InitConfig::new("emulated", vec![], None);
        let back: InitConfig =
            serde_json::from_value(serde_json::to_value(&none).unwrap()).unwrap();
        assert_eq!(back.netfilter, None);
    }
}
