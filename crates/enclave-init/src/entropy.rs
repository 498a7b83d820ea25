//! Seeding the kernel's RNG from the Nitro Secure Module.
//!
//! The enclave has no entropy source of its own besides RDRAND; the NSM offers `GetRandom`.
//! enclave-init mixes 256 bytes of it into the kernel pool before the network and the services
//! start. Only the hardware NSM's bytes are *credited* as entropy (`RNDADDENTROPY`): the emulated
//! NSM's come from the host, so they are mixed in without credit (written to `/dev/urandom`),
//! which can only add to the pool, never let the kernel count on bytes the host chose.

use std::fs::OpenOptions;
use std::os::fd::AsFd;

use enclave_nsm::Nsm;

/// What seeding did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seeded {
    /// Mixed in and credited (hardware NSM).
    Credited(usize),
    /// Mixed in without credit (emulated NSM).
    Mixed(usize),
}

/// Mixes NSM randomness into the kernel RNG, credited only when `credit` (the hardware NSM).
pub fn seed_from_nsm(nsm: &dyn Nsm, credit: bool) -> Result<Seeded, String> {
    let bytes = nsm
        .get_random()
        .map_err(|e| format!("NSM GetRandom: {e}"))?;
    if bytes.is_empty() {
        return Err("the NSM returned no random bytes".into());
    }
    if !credit {
        use std::io::Write as _;
        OpenOptions::new()
            .write(true)
            .open("/dev/urandom")
            .and_then(|mut f| f.write_all(&bytes))
            .map_err(|e| format!("/dev/urandom: {e}"))?;
        return Ok(Seeded::Mixed(bytes.len()));
    }
    let random = OpenOptions::new()
        .write(true)
        .open("/dev/random")
        .map_err(|e| format!("/dev/random: {e}"))?;
    let bits = u32::try_from(bytes.len() * 8).unwrap_or(u32::MAX);
    crate::entropy_unsafe::add_entropy(random.as_fd(), &bytes, bits)
        .map_err(|e| format!("RNDADDENTROPY: {e}"))?;
    Ok(Seeded::Credited(bytes.len()))
}
