//! What the engine needs from an EIF: its measurements, the memory it needs, the private copy
//! an enclave boots ([`pin`]), and what each boot hands to its backend, measured again on the
//! way ([`boot`]).

pub mod boot;
pub mod pin;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use enclave_image::eif::EifReader;

use crate::error::{EngineError, Result};

const MIB: u64 = 1 << 20;

/// The smallest enclave memory the engine accepts, in MiB.
pub const MIN_MEMORY_MIB: u64 = 64;

/// A checked EIF.
#[derive(Debug, Clone)]
pub struct EifInfo {
    /// Where it is (absolute).
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// `HashAlgorithm`, `PCR0`, `PCR1`, `PCR2` (and `PCR8` when signed), lower-case hex.
    pub measurements: BTreeMap<String, String>,
    /// Number of ramdisks.
    pub ramdisks: usize,
    /// The measured spec (`None` for an EIF not built by enclave-engine).
    pub spec: Option<enclave_spec::EnclaveSpec>,
}

impl EifInfo {
    /// Reads `path`, checks its CRC, measures it and reads its measured spec.
    pub fn load(path: &Path) -> Result<Self> {
        let eif_err = |error| EngineError::Eif {
            path: path.to_owned(),
            error,
        };
        let abs = fs::canonicalize(path).map_err(|e| EngineError::io(path, e))?;
        let mut reader = EifReader::open(&abs).map_err(eif_err)?;
        reader.check_crc().map_err(eif_err)?;
        let measurements = reader.measure().map_err(eif_err)?.to_map();
        let spec = enclave_image::eif::app_spec::read_spec(&mut reader)
            .map_err(|e| EngineError::Invalid(format!("{}: {e}", abs.display())))?;
        Ok(Self {
            spec,
            size: reader.file_len(),
            ramdisks: reader.ramdisk_count(),
            path: abs,
            measurements,
        })
    }

    /// The least memory, in MiB, an enclave booting this EIF needs: four times the EIF (the
    /// rule of nitro-cli: the compressed kernel is unpacked, the ramdisks are kept while their
    /// content is unpacked into the root tmpfs), and at least [`MIN_MEMORY_MIB`].
    pub fn min_memory_mib(&self) -> u64 {
        (self.size * 4).div_ceil(MIB).max(MIN_MEMORY_MIB)
    }

    /// Fails with [`EngineError::MemoryTooSmall`] when `memory_mib` cannot hold the EIF.
    pub fn check_memory(&self, memory_mib: u64) -> Result<()> {
        let needed = self.min_memory_mib();
        if memory_mib < needed {
            return Err(EngineError::MemoryTooSmall {
                requested: memory_mib,
                needed,
                eif_bytes: self.size,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests;
