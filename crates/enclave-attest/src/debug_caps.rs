//! What a document's PCR31 says about the enclave's debug capabilities.
//!
//! An enclave whose measured spec grants `debug.exec`, `debug.cp` or `debug.attest` has normal
//! PCR0..2, yet whoever controls the parent can then run code in it, copy files in and out, or
//! obtain documents binding keys of its choosing. enclave-init records the granted capabilities
//! in PCR31 at boot, before any service runs, and locks it
//! ([`enclave_proto::debug_pcr::debug_marker`]); the NSM reports locked PCRs in every document. This
//! is not Nitro's debug mode (PCR0..2 zero, `Report::debug_mode`), which is about the
//! hypervisor exposing the enclave's memory and console.

use std::fmt;

use enclave_proto::debug_pcr::{read_debug_pcr, DebugSurface, DEBUG_PCR};
use enclave_proto::wire::Capability;
use serde::Serialize;

use crate::{AttestationDocument, HexBytes};

/// The debug capabilities a document's PCR31 shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum DebugCapabilities {
    /// PCR31 is all zero: the spec grants no debug capability.
    None,
    /// PCR31 carries the marker of these capabilities (sorted).
    Granted {
        /// `debug.exec`, `debug.cp`, `debug.attest`.
        capabilities: Vec<Capability>,
    },
    /// PCR31 is neither zero nor a known marker: something else extended it, so nothing can
    /// be said of what the host may do in the enclave.
    Unknown {
        /// PCR31's value.
        pcr31: HexBytes,
    },
    /// The document has no PCR31: the enclave was not booted by enclave-engine's enclave-init
    /// (which always locks PCR31, so that the NSM reports it), or by one older than the
    /// marker. Its debug surface is not measured; the pinned PCR0 or PCR8 says which image it
    /// is.
    NotMeasured,
}

impl DebugCapabilities {
    /// Reads PCR31 of `doc`.
    pub fn of(doc: &AttestationDocument) -> DebugCapabilities {
        let index = u8::try_from(DEBUG_PCR).ok();
        match index.and_then(|i| doc.pcrs.get(&i)) {
            None => DebugCapabilities::NotMeasured,
            Some(value) => match read_debug_pcr(value) {
                DebugSurface::None => DebugCapabilities::None,
                DebugSurface::Granted(capabilities) => DebugCapabilities::Granted { capabilities },
                DebugSurface::Unknown => DebugCapabilities::Unknown {
                    pcr31: HexBytes(value.clone()),
                },
            },
        }
    }
}

impl fmt::Display for DebugCapabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DebugCapabilities::None => f.write_str("none (PCR31 zero)"),
            DebugCapabilities::Granted { capabilities } => {
                write!(f, "{} (PCR31 marker)", join(capabilities))
            }
            DebugCapabilities::Unknown { pcr31 } => write!(
                f,
                "unknown (PCR31 {} is not zero and not a known marker)",
                hex::encode(&pcr31.0)
            ),
            DebugCapabilities::NotMeasured => {
                f.write_str("not measured (no PCR31: not booted by enclave-engine's enclave-init)")
            }
        }
    }
}

/// `debug.exec, debug.cp`.
pub(crate) fn join(caps: &[Capability]) -> String {
    caps.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a capability lets the host do, for error messages.
pub(crate) fn consequences(caps: &[Capability]) -> String {
    caps.iter()
        .map(|c| match c {
            Capability::Exec => "run commands in it",
            Capability::Cp => "copy files into and out of it",
            Capability::Attest => "obtain documents binding keys of its choosing",
            Capability::Unknown => "use a capability this verifier does not know",
        })
        .collect::<Vec<_>>()
        .join(", ")
}
