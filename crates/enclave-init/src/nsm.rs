//! The enclave's NSM, chosen once at boot: `/dev/nsm` when the device exists (Nitro), else the
//! emulated NSM served by the host supervisor when (and only when) the image's kernel profile is
//! `emulated`, else none. On Nitro the parent is the untrusted host: an image built for Nitro
//! never asks its parent to act as its NSM, whatever happens to `/dev/nsm`.
//!
//! [`disable`] withdraws the NSM for the rest of the boot: enclave-init does that when it cannot
//! record the debug surface in PCR31, so that no document is ever issued without it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use enclave_nsm::{EmulatedNsm, HardwareNsm, Nsm, NSM_DEVICE};

static DEVICE: OnceLock<Option<(NsmSource, Box<dyn Nsm>)>> = OnceLock::new();
static DISABLED: AtomicBool = AtomicBool::new(false);

/// Where the NSM is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NsmSource {
    /// `/dev/nsm`: Nitro's hardware module.
    Hardware,
    /// The host supervisor's emulation (emulated kernel profile only). Its random bytes come
    /// from the host, so they are never credited as entropy.
    Emulated,
}

/// Which NSM an enclave with this kernel profile and parent uses (`None`: there is none).
pub fn select(kernel_profile: &str, parent_cid: u32) -> Option<(NsmSource, Box<dyn Nsm>)> {
    select_with(
        std::path::Path::new(NSM_DEVICE).exists(),
        kernel_profile,
        parent_cid,
    )
}

/// [`select`] with the device's presence given (tests).
pub fn select_with(
    device_present: bool,
    kernel_profile: &str,
    parent_cid: u32,
) -> Option<(NsmSource, Box<dyn Nsm>)> {
    if device_present {
        Some((NsmSource::Hardware, Box::new(HardwareNsm)))
    } else if kernel_profile == enclave_proto::init::KERNEL_PROFILE_EMULATED {
        Some((
            NsmSource::Emulated,
            Box::new(EmulatedNsm::at_parent(parent_cid)),
        ))
    } else {
        None
    }
}

/// Chooses the NSM (first call wins).
pub fn configure(kernel_profile: &str, parent_cid: u32) {
    let _ = DEVICE.set(select(kernel_profile, parent_cid));
}

/// The NSM chosen at boot, unless withdrawn.
pub fn device() -> Option<&'static dyn Nsm> {
    if DISABLED.load(Ordering::SeqCst) {
        return None;
    }
    DEVICE
        .get()
        .and_then(|d| d.as_ref())
        .map(|(_, d)| d.as_ref())
}

/// Where the NSM chosen at boot is.
pub fn source() -> Option<NsmSource> {
    DEVICE.get().and_then(|d| d.as_ref()).map(|(s, _)| *s)
}

/// Withdraws the NSM for the rest of the boot.
pub fn disable() {
    DISABLED.store(true, Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parent_is_an_nsm_only_for_emulated_images() {
        // An image for Nitro without /dev/nsm (the module failed to load, or a host that boots
        // it as a plain VM) never talks to its parent as if it were the NSM.
        assert!(select_with(false, "nitro", 3).is_none());
        assert!(select_with(false, "custom", 3).is_none());
        assert_eq!(
            select_with(false, "emulated", 2).map(|(s, _)| s),
            Some(NsmSource::Emulated)
        );
        assert_eq!(
            select_with(true, "emulated", 2).map(|(s, _)| s),
            Some(NsmSource::Hardware)
        );
        assert_eq!(
            select_with(true, "nitro", 3).map(|(s, _)| s),
            Some(NsmSource::Hardware)
        );
    }
}
