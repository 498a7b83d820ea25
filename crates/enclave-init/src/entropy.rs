//! Seeding the kernel's RNG from the Nitro Secure Module.
//!
//! The enclave has no hardware entropy source of its own besides RDRAND; the NSM offers
//! `GetRandom`, and the reference init mixes it into the kernel pool early so that services
//! never start with a thin pool.

use std::path::Path;

/// The NSM device node, created by the `nsm` driver (loaded as a module or built in).
pub const NSM_DEVICE: &str = "/dev/nsm";

/// What [`seed_from_nsm`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NsmSeed {
    /// There is no `/dev/nsm` (the emulated backend, or a test): nothing was done.
    Absent,
    /// `/dev/nsm` exists but this build does not talk to it yet; nothing was done.
    NotImplemented,
}

/// Seeds the kernel RNG from the NSM when there is one; a no-op without `/dev/nsm`.
///
/// This is the seam for the NSM client: the full version sends the CBOR request `"GetRandom"`
/// through the NSM ioctl, writes the returned bytes to `/dev/random` with `RNDADDENTROPY` (so
/// they are credited), and returns how many bytes it added. Call it after the modules are
/// loaded and before any service starts.
pub fn seed_from_nsm() -> NsmSeed {
    if Path::new(NSM_DEVICE).exists() {
        NsmSeed::NotImplemented
    } else {
        NsmSeed::Absent
    }
}
