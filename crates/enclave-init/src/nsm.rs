//! The enclave's NSM, chosen once at boot: `/dev/nsm` when the device exists (Nitro), else the
//! emulated NSM served by the host supervisor when the kernel profile is `emulated`, else none.

use std::sync::OnceLock;

use enclave_proto::nsm::{EmulatedNsm, Nsm, NsmError, Request, Response};

pub use crate::entropy::NSM_DEVICE;

static DEVICE: OnceLock<Option<Box<dyn Nsm>>> = OnceLock::new();

/// The hardware NSM: each request goes through the driver's ioctl on `/dev/nsm`.
#[derive(Debug, Default, Clone, Copy)]
pub struct HardwareNsm;

impl Nsm for HardwareNsm {
    fn process(&self, request: Request) -> Result<Response, NsmError> {
        let dev = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(NSM_DEVICE)?;
        let req = enclave_proto::nsm::encode_request(&request)?;
        let resp = crate::nsm_unsafe::nsm_ioctl(&dev, &req)?;
        enclave_proto::nsm::decode_response(&resp)
    }
}

/// Which NSM an enclave with this kernel profile and parent uses (`None`: there is none).
pub fn select(kernel_profile: &str, parent_cid: u32) -> Option<Box<dyn Nsm>> {
    if std::path::Path::new(NSM_DEVICE).exists() {
        Some(Box::new(HardwareNsm))
    } else if kernel_profile == "emulated" {
        Some(Box::new(EmulatedNsm::at_parent(parent_cid)))
    } else {
        None
    }
}

/// Chooses the NSM (first call wins).
pub fn configure(kernel_profile: &str, parent_cid: u32) {
    let _ = DEVICE.set(select(kernel_profile, parent_cid));
}

/// The NSM chosen at boot.
pub fn device() -> Option<&'static dyn Nsm> {
    DEVICE.get().and_then(|d| d.as_deref())
}
