//! The emulated NSM's root CA of a state root (`<root>/emulation-ca`): the supervisor signs its
//! enclaves' documents with it, `attest --print-root` and the identity checks trust it.

use std::path::Path;

use enclave_nsm::emulated::{EmulationCa, EMULATION_CA_DIR};

use crate::error::{EngineError, Result};
use crate::private_dir::check_private_dir;

/// The emulation CA of a state root (`<root>/emulation-ca`), created on first use (in a 0700
/// directory renamed into place). Refused, as every directory of the state tree, unless the
/// directory is a real one owned by this user with mode 0700 (see `private_dir.rs`).
pub fn emulation_ca(state_root: &Path) -> Result<EmulationCa> {
    let dir = state_root.join(EMULATION_CA_DIR);
    if dir.symlink_metadata().is_ok() {
        check_private_dir(&dir)?;
    }
    let ca = EmulationCa::load_or_create(&dir)
        .map_err(|e| EngineError::Backend(format!("emulation CA: {e}")))?;
    check_private_dir(&dir)?;
    Ok(ca)
}
