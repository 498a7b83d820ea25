//! Lexical checks of paths and symlink targets coming from layers or a `dir:` input.

use super::EntryProblem;

/// Longest entry path accepted. The kernel refuses cpio names over PATH_MAX (4096 with the
/// NUL); we keep room for the `rootfs/` prefix. It also bounds the tree's depth, which keeps the
/// recursive drop of the tree far from the stack limit.
pub(crate) const MAX_PATH: usize = 4000;

/// Splits a tar entry path into its components: `./a//b/` → `[a, b]`, `./` → `[]` (the root).
pub(crate) fn split(raw: &[u8]) -> Result<Vec<&[u8]>, EntryProblem> {
    if raw.starts_with(b"/") {
        return Err(EntryProblem::Absolute);
    }
    if raw.len() > MAX_PATH {
        return Err(EntryProblem::PathTooLong);
    }
    let mut parts = Vec::new();
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err(EntryProblem::DotDot),
            part => parts.push(part),
        }
    }
    Ok(parts)
}

/// Checks a symlink target stored at depth `depth` (number of directories between the root and
/// the link). Absolute targets are fine: at run time they resolve inside the enclave's root.
/// A relative target must not climb above the root when resolved from the link's directory.
pub(crate) fn check_symlink(depth: usize, target: &[u8]) -> Result<(), EntryProblem> {
    if target.is_empty() {
        return Err(EntryProblem::EmptySymlink);
    }
    if target.len() > MAX_PATH {
        return Err(EntryProblem::PathTooLong);
    }
    if target.starts_with(b"/") {
        return Ok(());
    }
    let mut level = depth;
    for part in target.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                level = level
                    .checked_sub(1)
                    .ok_or_else(|| EntryProblem::SymlinkEscapes(lossy(target)))?;
            }
            _ => level += 1,
        }
    }
    Ok(())
}

pub(crate) fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Joins components with `/` for messages.
pub(crate) fn join(parts: &[&[u8]]) -> String {
    lossy(&parts.join(&b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_paths() {
        assert_eq!(split(b"./etc//x/").unwrap(), vec![&b"etc"[..], b"x"]);
        assert!(split(b"./").unwrap().is_empty());
        assert_eq!(split(b"/etc/x"), Err(EntryProblem::Absolute));
        assert_eq!(split(b"a/../b"), Err(EntryProblem::DotDot));
    }

    #[test]
    fn symlink_targets() {
        assert!(check_symlink(1, b"busybox").is_ok());
        assert!(check_symlink(1, b"../etc").is_ok());
        assert!(check_symlink(0, b"/bin/busybox").is_ok());
        assert!(check_symlink(1, b"../../etc").is_err());
        assert!(check_symlink(0, b"a/../../x").is_err());
        assert!(check_symlink(2, b"a/../../x").is_ok());
        assert_eq!(check_symlink(0, b""), Err(EntryProblem::EmptySymlink));
    }
}
