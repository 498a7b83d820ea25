//! enclave-init's configuration carried in the bootstrap ramdisk (`/enclave-init/config.json`).

use serde::{Deserialize, Serialize};

/// Version of the [`InitConfig`] format.
pub const INIT_CONFIG_VERSION: u32 = 1;

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
}

impl InitConfig {
    /// A configuration with Nitro's defaults and the given modules.
    pub fn new(kernel_profile: &str, modules: Vec<String>) -> Self {
        Self {
            version: INIT_CONFIG_VERSION,
            modules,
            parent_cid: NITRO_PARENT_CID,
            heartbeat_port: HEARTBEAT_PORT,
            kernel_profile: kernel_profile.to_owned(),
        }
    }
}
