//! What PCR31 says about an enclave's debug surface: the marker enclave-init extends it with at
//! boot (writer) and how a verifier reads it back (reader). Both sides share this definition, so
//! it lives here rather than with the NSM itself (crate `enclave-nsm`) or the verifier
//! (`enclave-attest`), neither of which the other side should link.

use crate::wire::Capability;

/// The PCR that records the enclave's debug surface: at boot, before any service runs,
/// enclave-init extends it with [`debug_marker`] of the capabilities the measured spec grants
/// (not at all when it grants none) and locks it. A verifier reads it with [`read_debug_pcr`].
/// PCR16 to PCR30 stay free for applications.
pub const DEBUG_PCR: u16 = 31;

/// Domain string of the PCR31 marker.
pub const DEBUG_MARKER_DOMAIN: &str = "enclave-engine debug capabilities v1:";

/// What PCR31 is extended with when `caps` is not empty: the domain followed by the
/// capabilities' names sorted and joined by commas, e.g.
/// `enclave-engine debug capabilities v1:debug.cp,debug.exec`. `None` for no capability (PCR31
/// then stays zero). Unknown capabilities are left out.
pub fn debug_marker(caps: &[Capability]) -> Option<Vec<u8>> {
    let mut names: Vec<String> = caps
        .iter()
        .filter(|c| **c != Capability::Unknown)
        .map(ToString::to_string)
        .collect();
    names.sort_unstable();
    names.dedup();
    if names.is_empty() {
        return None;
    }
    Some(format!("{DEBUG_MARKER_DOMAIN}{}", names.join(",")).into_bytes())
}

/// The value PCR31 has after boot when the spec grants `caps`: zero for none, otherwise
/// `SHA384(0^48 || debug_marker(caps))` (one NSM extension of a zero register).
pub fn debug_pcr_value(caps: &[Capability]) -> [u8; 48] {
    use sha2::{Digest, Sha384};
    match debug_marker(caps) {
        None => [0; 48],
        Some(marker) => {
            let mut h = Sha384::new();
            h.update([0u8; 48]);
            h.update(&marker);
            h.finalize().into()
        }
    }
}

/// What a document's PCR31 says about the enclave's debug surface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DebugSurface {
    /// All zero: no debug capability.
    None,
    /// The marker of these capabilities (sorted).
    Granted(Vec<Capability>),
    /// Not zero and no known marker: something else extended PCR31; treat it as debug.
    Unknown,
}

/// Reads PCR31's value (any length; Nitro's registers are 48 bytes).
pub fn read_debug_pcr(value: &[u8]) -> DebugSurface {
    if value.iter().all(|b| *b == 0) {
        return DebugSurface::None;
    }
    let all = [Capability::Exec, Capability::Cp, Capability::Attest];
    for mask in 1u32..(1 << all.len()) {
        let caps: Vec<Capability> = (0..all.len())
            .filter(|i| mask & (1 << i) != 0)
            .map(|i| all[i])
            .collect();
        if debug_pcr_value(&caps)[..] == *value {
            let mut caps = caps;
            caps.sort_unstable();
            return DebugSurface::Granted(caps);
        }
    }
    DebugSurface::Unknown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_is_canonical_and_readable() {
        assert_eq!(debug_marker(&[]), None);
        assert_eq!(debug_pcr_value(&[]), [0; 48]);
        let a = debug_pcr_value(&[Capability::Exec, Capability::Cp]);
        let b = debug_pcr_value(&[Capability::Cp, Capability::Exec, Capability::Exec]);
        assert_eq!(a, b, "order and repeats do not matter");
        assert_eq!(
            debug_marker(&[Capability::Exec, Capability::Cp]).unwrap(),
            b"enclave-engine debug capabilities v1:debug.cp,debug.exec"
        );
        assert_eq!(
            read_debug_pcr(&a),
            DebugSurface::Granted(vec![Capability::Exec, Capability::Cp])
        );
        assert_eq!(read_debug_pcr(&[0; 48]), DebugSurface::None);
        let mut other = a;
        other[0] ^= 1;
        assert_eq!(read_debug_pcr(&other), DebugSurface::Unknown);
        assert_eq!(
            read_debug_pcr(&debug_pcr_value(&[Capability::Attest])),
            DebugSurface::Granted(vec![Capability::Attest])
        );
    }
}
