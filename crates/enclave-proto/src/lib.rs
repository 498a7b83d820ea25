//! Types shared by the host tools and the code running inside the enclave.
//!
//! Where it runs: everywhere the control protocol is spoken. On the parent in `enclave-ctl` (the
//! client) and in the supervisor (the boot hand-off); in the enclave in enclave-init (the server,
//! and initctl's client) and in the attestation server. It holds the wire protocol, its
//! transports, the host client and the configuration files both sides read; no policy of either
//! side.
//!
//! - the enclave spec (`enclave.yaml`, measured into PCR2) is the `enclave-spec` crate's.
//! - [`app`]: the application configuration stored in the app ramdisk.
//! - [`debug_pcr`]: what PCR31 says about an enclave's debug capabilities.
//! - [`init`]: the configuration of `enclave-init` stored in the bootstrap ramdisk.
//! - [`wire`]: the control protocol, its frames, messages and encrypted session, for both ends.
//! - [`tree`]: the filesystem side of `cp`, for both ends (the sender scans and sends a tree,
//!   the receiver writes one).
//! - [`client`]: the blocking client of the control protocol (enclave-ctl, and initctl in the
//!   enclave).
//! - [`transport`]: vsock and the emulated backend's Unix-socket route to it.
//!
//! Everything here is plain data with serde derives; unknown fields are rejected everywhere, so a
//! typo in a spec or a newer file read by an older init is an error, not a silent default.
#![deny(unsafe_code)]

pub mod app;
pub mod client;
pub mod debug_pcr;
pub mod handoff;
pub mod init;
pub mod transport;
pub mod tree;
pub mod wire;

/// vsock ports of the enclave (guest side) and of the parent (host side).
pub mod ports {
    /// enclave-init's control server, in the enclave.
    pub const CONTROL: u32 = 5000;
    /// The boot heartbeat, on the parent.
    pub const HEARTBEAT: u32 = crate::init::HEARTBEAT_PORT;
    /// The emulated NSM, on the parent (served by the supervisor of an emulated enclave).
    pub const NSM_EMULATION: u32 = 9001;
    /// The supervisor's boot hand-off ([`crate::handoff`]), on the parent. Below 1024: on a
    /// Nitro parent only root (`CAP_NET_BIND_SERVICE`) can listen on it, so no unprivileged
    /// user can hand an enclave a key of theirs.
    pub const SUPERVISOR: u32 = 900;
    /// The ingress forwarder, in the enclave: the host connects here for each published port's
    /// connection and names the enclave port in an `enclave-proxy` header.
    pub const INGRESS: u32 = 5001;
    /// Base of the egress proxy's port, on the parent: see [`egress`].
    pub const EGRESS_BASE: u32 = 0x4000_0000;

    /// The egress proxy's port for the enclave with context id `cid`, on the parent: the
    /// enclave's forwarders connect here and name the destination in an `enclave-proxy` header.
    /// One port per enclave, because every enclave of a Nitro parent reaches the same host CID
    /// and each enclave's supervisor runs its own proxy. Nitro CIDs are small; the mask keeps
    /// the result clear of `VMADDR_PORT_ANY` whatever the CID.
    pub fn egress(cid: u32) -> u32 {
        EGRESS_BASE | (cid & 0x3fff_ffff)
    }
}

/// Paths inside the enclave's initramfs. The build writes them; enclave-init reads them.
pub mod paths {
    /// The app root filesystem (app ramdisk), switched into by enclave-init.
    pub const ROOTFS: &str = "/rootfs";
    /// The application configuration (app ramdisk).
    pub const APP_CONFIG: &str = "/enclave/app.json";
    /// The normalised enclave spec (app ramdisk).
    pub const SPEC: &str = "/enclave/spec.json";
    /// enclave-init's configuration (bootstrap ramdisk).
    pub const INIT_CONFIG: &str = "/enclave-init/config.json";
    /// The attestation server binary, when the spec enables it (bootstrap ramdisk).
    pub const ATTEST_SERVER: &str = "/enclave-init/enclave-attest";
    /// Directory holding the kernel modules that enclave-init loads (bootstrap ramdisk).
    pub const MODULES_DIR: &str = "/enclave-init/modules";
}
