//! The EIF an enclave boots is its own copy, taken at `run`: `<enclave dir>/image.eif`.
//!
//! The record's PCRs are measured at `run`, and the emulated NSM signs those PCRs at every boot.
//! If each boot re-read the user's path, an EIF replaced there, or rewritten in place, would
//! boot under the old PCRs. Holding a file descriptor or making a hard link does not help
//! against the second: both name the same inode, so whoever can write the original changes what
//! they read. A copy in the enclave's 0700 directory is out of reach of everyone but this user
//! and root. It costs the room of one EIF per enclave (under /run or $XDG_RUNTIME_DIR that is
//! tmpfs, so memory) and the copy at `run` (docs/benchmarks.md, "Running enclaves"). Every
//! boot still measures what it hands to the backend ([`super::boot`]), so a modified copy is
//! refused too. `rm` removes the copy with the enclave's directory; the record keeps the
//! original path for display only.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::{EngineError, Result};
use crate::util::TempFile;

/// The pinned copy's name in the enclave directory.
pub const PINNED_EIF: &str = "image.eif";

/// Copies `eif` to `<dir>/image.eif` (mode 0400, written through a [`TempFile`], synced) and
/// returns that path.
pub fn pin(eif: &Path, dir: &Path) -> Result<PathBuf> {
    let target = dir.join(PINNED_EIF);
    let failed = |source| EngineError::Pin {
        eif: eif.to_owned(),
        target: target.clone(),
        source,
    };
    let mut src = File::open(eif).map_err(failed)?;
    let mut tmp = TempFile::new(&target, 0o400)?;
    // A `File` to `File` copy: copy_file_range where the filesystem has it.
    std::io::copy(&mut src, tmp.file()).map_err(failed)?;
    tmp.commit()?;
    Ok(target)
}
