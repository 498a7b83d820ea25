//! What the commands that look at this host's enclaves share: the state directory the
//! arguments name and the emulation CA kept in it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use enclave_engine::state::{default_root, StateRoot};
use enclave_nsm::emulated::EMULATION_CA_DIR;

use crate::cli::StateArgs;

/// Opens the state directory the arguments name (checked, whoever chose it).
pub fn open(args: &StateArgs) -> Result<StateRoot> {
    let path = match &args.state_dir {
        Some(dir) => dir.clone(),
        None => default_root()?,
    };
    StateRoot::open(&path)
        .with_context(|| format!("opening the state directory {}", path.display()))
}

/// This host's emulation CA directory (`<state root>/emulation-ca`).
pub fn emulation_ca_dir(state_dir: Option<&Path>) -> Result<PathBuf> {
    let root = match state_dir {
        Some(dir) => dir.to_owned(),
        None => default_root()?,
    };
    Ok(root.join(EMULATION_CA_DIR))
}
