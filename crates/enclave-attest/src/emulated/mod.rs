//! The emulated NSM's signing side, run by the host supervisor of an emulated enclave: a
//! per-host emulation root CA ([`EmulationCa`]), documents of exactly the Nitro format signed
//! under it ([`DocumentFields::sign`]), and the NSM request handler ([`EmulatedDevice`]).
//!
//! An emulated document verifies only with the emulation root given as a trust root; against
//! the AWS root it fails with [`crate::Error::EmulationRoot`], which says so.

mod ca;
mod device;
mod sign;

use std::path::PathBuf;

pub use ca::{EmulationCa, LEAF_LIFETIME, ROOT_CERT_FILE, ROOT_KEY_FILE};
pub use device::{EmulatedDevice, LOCKED_PCRS, NSM_PCRS};
pub use sign::DocumentFields;

/// The emulation root's subject (RFC 4514). Verifiers recognise an emulated document by its
/// chain ending at this name.
pub const EMULATION_ROOT_SUBJECT: &str =
    "CN=enclave-engine emulated NSM root,OU=emulated-nsm,O=enclave-engine";
/// The common name of [`EMULATION_ROOT_SUBJECT`].
pub const EMULATION_ROOT_CN: &str = "enclave-engine emulated NSM root";
/// The CA's directory under a state root.
pub const EMULATION_CA_DIR: &str = "emulation-ca";

/// Whether an issuer name (as [`x509_cert::name::Name`] prints it) is the emulation root's.
pub fn is_emulation_root_name(name: &str) -> bool {
    name.split(',')
        .any(|rdn| rdn.trim() == format!("CN={EMULATION_ROOT_CN}"))
        && name.split(',').any(|rdn| rdn.trim() == "OU=emulated-nsm")
}

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
