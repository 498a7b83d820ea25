//! Kernel modules shipped in the bootstrap ramdisk (vsock transport, NSM driver, …).

use std::ffi::CStr;
use std::fs::File;
use std::path::Path;

use nix::kmod::{finit_module, ModuleInitFlags};

use crate::error::{Error, Result};

/// Loads `dir/<name>` for each name, in order. A module that is already loaded (EEXIST, e.g.
/// built into the kernel or loaded by an earlier boot stage) is fine.
///
/// Every module is tried; the first error is returned after the rest were loaded, since later
/// modules usually do not depend on a failed one and a partly working enclave tells more than
/// an early stop.
pub fn load_all(dir: &Path, names: &[String]) -> Result<usize> {
    let mut loaded = 0;
    let mut first_err = None;
    for name in names {
        match load_one(&dir.join(name)) {
            Ok(true) => loaded += 1,
            Ok(false) => {}
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    first_err.map_or(Ok(loaded), Err)
}

/// Loads one module; `Ok(false)` when it was already loaded.
fn load_one(path: &Path) -> Result<bool> {
    // Module names come from the measured config; still, refuse to leave the modules dir.
    if path
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(Error::Config {
            path: path.to_owned(),
            reason: "module path leaves the modules directory".to_owned(),
        });
    }
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let no_params: &CStr = c"";
    match finit_module(&file, no_params, ModuleInitFlags::empty()) {
        Ok(()) => Ok(true),
        Err(nix::Error::EEXIST) => Ok(false),
        Err(e) => Err(Error::sys(format!("finit_module {}", path.display()), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_module_and_escaping_names_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let e = load_all(dir.path(), &["nope.ko".into()]).unwrap_err();
        assert!(matches!(e, Error::Io { .. }), "{e}");
        let e = load_all(dir.path(), &["../x.ko".into()]).unwrap_err();
        assert!(e.to_string().contains("leaves"), "{e}");
        assert_eq!(load_all(dir.path(), &[]).unwrap(), 0);
    }
}
