//! The emulated NSM's host side (feature `emulated`), run by the supervisor of an emulated
//! enclave: a per-host emulation root CA ([`EmulationCa`]), documents of exactly the Nitro
//! format signed under it ([`DocumentFields::sign`]), the NSM request handler
//! ([`EmulatedDevice`]), and the socket server that answers the enclave's [`crate::EmulatedNsm`]
//! ([`NsmServer`]).
//!
//! An emulated document verifies only with the emulation root given as a trust root; against
//! the AWS root it fails with `enclave_attest::Error::EmulationRoot`, which says so. The root's
//! name is the verifier's to define (it must recognise it without this crate), so it is
//! re-exported from there.

mod ca;
mod device;
mod server;
mod sign;

use std::path::PathBuf;

pub use ca::{EmulationCa, LEAF_LIFETIME, ROOT_CERT_FILE, ROOT_KEY_FILE};
pub use device::{EmulatedDevice, LOCKED_PCRS, NSM_PCRS};
pub use enclave_attest::{is_emulation_root_name, EMULATION_ROOT_CN, EMULATION_ROOT_SUBJECT};
pub use server::NsmServer;
pub use sign::DocumentFields;

/// The CA's directory under a state root.
pub const EMULATION_CA_DIR: &str = "emulation-ca";

/// Why the emulation CA could not be loaded, created or used.
#[derive(Debug, thiserror::Error)]
pub enum EmulationError {
    /// Reading or writing a CA file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The root key file is readable by group or others.
    #[error("{}: mode {mode:o}, the emulation root key must be 0600", path.display())]
    KeyPermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key cannot be generated, read or used.
    #[error("emulation root key: {0}")]
    Key(String),
    /// A certificate cannot be built or read.
    #[error("emulation certificate: {0}")]
    Certificate(String),
    /// A document field is out of the NSM's limits.
    #[error("{0}")]
    Limit(String),
}
