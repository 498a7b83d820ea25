//! Seeding the kernel's RNG from the Nitro Secure Module.
//!
//! The enclave has no entropy source of its own besides RDRAND; the NSM offers `GetRandom`.
//! enclave-init mixes 256 bytes of it into the kernel pool, credited, before the network and
//! the services start, so that nothing in the enclave starts with a thin pool. On Nitro the
//! bytes come from the hardware NSM; on the emulated backend from the host's getrandom through
//! the supervisor's emulated NSM (the emulated enclave trusts its host anyway).

use std::fs::OpenOptions;
use std::os::fd::AsFd;

use enclave_proto::nsm::Nsm;

/// The NSM device node, created by the `nsm` driver (loaded as a module or built in).
pub const NSM_DEVICE: &str = "/dev/nsm";

/// Mixes NSM randomness into the kernel RNG; returns the number of bytes credited.
pub fn seed_from_nsm(nsm: &dyn Nsm) -> Result<usize, String> {
    let bytes = nsm
        .get_random()
        .map_err(|e| format!("NSM GetRandom: {e}"))?;
    if bytes.is_empty() {
        return Err("the NSM returned no random bytes".into());
    }
    let random = OpenOptions::new()
        .write(true)
        .open("/dev/random")
        .map_err(|e| format!("/dev/random: {e}"))?;
    let bits = u32::try_from(bytes.len() * 8).unwrap_or(u32::MAX);
    crate::sys_unsafe::add_entropy(random.as_fd(), &bytes, bits)
        .map_err(|e| format!("RNDADDENTROPY: {e}"))?;
    Ok(bytes.len())
}
