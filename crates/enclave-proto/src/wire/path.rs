//! Path rules of `cp`, applied by both sides to every entry they send or receive.
//!
//! An entry path is relative to the copy's root, `/`-separated, and has exactly one spelling:
//! no empty, `.` or `..` component, no leading or trailing `/`, no NUL, at most
//! [`MAX_PATH_LEN`] bytes and [`MAX_NAME_LEN`] per component. A symlink's target must not lead
//! outside the root ([`check_symlink`]).
//!
//! These checks are lexical. They make a well-formed tree unable to name anything outside the
//! root; the writer must still create entries without following symlinks that already exist in
//! the destination (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`, or `O_NOFOLLOW` on
//! each component), since no lexical rule can see those.

use std::fmt;
use std::path::{Path, PathBuf};

/// Longest accepted entry path or symlink target, in bytes (Linux `PATH_MAX`).
pub const MAX_PATH_LEN: usize = 4096;

/// Longest accepted path component, in bytes (Linux `NAME_MAX`).
pub const MAX_NAME_LEN: usize = 255;

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path is empty.
    #[error("empty path")]
    Empty,
    /// The path starts with `/`.
    #[error("absolute path {0:?}")]
    Absolute(String),
    /// The path has a `..` component (or, for a link target, one after a name).
    #[error("path {0:?} has a `..` component")]
    ParentDir(String),
    /// The path has an empty or `.` component (`a//b`, `a/./b`, trailing `/`).
    #[error("path {0:?} is not in canonical form")]
    NotCanonical(String),
    /// The path contains a NUL byte.
    #[error("path contains a NUL byte")]
    Nul,
    /// The path or one component is too long.
    #[error("path too long ({0} bytes)")]
    TooLong(usize),
    /// A symlink target leads outside the copy's root.
    #[error("symlink {link:?} -> {target:?} leads outside the destination")]
    Escapes {
        /// The link's path.
        link: String,
        /// Its target.
        target: String,
    },
}

/// A path that passed [`safe_relative`]: relative, canonical, inside the root.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RelativePath(String);

impl RelativePath {
    /// The path as sent on the wire.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `/`-separated components (never empty, `.` or `..`).
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// Number of components.
    pub fn depth(&self) -> usize {
        self.components().count()
    }

    /// The path below `root`. Lexically always inside `root`; see the module doc for what the
    /// writer must still do.
    pub fn under(&self, root: &Path) -> PathBuf {
        root.join(&self.0)
    }

    /// The parent entry, `None` for a top-level entry.
    pub fn parent(&self) -> Option<RelativePath> {
        self.0
            .rsplit_once('/')
            .map(|(parent, _)| RelativePath(parent.to_owned()))
    }
}

impl fmt::Display for RelativePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<Path> for RelativePath {
    fn as_ref(&self) -> &Path {
        Path::new(&self.0)
    }
}

fn check_common(path: &str) -> Result<(), PathError> {
    if path.is_empty() {
        return Err(PathError::Empty);
    }
    if path.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong(path.len()));
    }
    if path.contains('\0') {
        return Err(PathError::Nul);
    }
    if path.starts_with('/') {
        return Err(PathError::Absolute(path.to_owned()));
    }
    if let Some(long) = path.split('/').find(|c| c.len() > MAX_NAME_LEN) {
        return Err(PathError::TooLong(long.len()));
    }
    Ok(())
}

/// Checks an entry path: refuses empty, absolute, `..`, non-canonical (`a//b`, `./a`, `a/`),
/// NUL-containing and overlong paths.
pub fn safe_relative(path: &str) -> Result<RelativePath, PathError> {
    check_common(path)?;
    for component in path.split('/') {
        match component {
            ".." => return Err(PathError::ParentDir(path.to_owned())),
            "" | "." => return Err(PathError::NotCanonical(path.to_owned())),
            _ => {}
        }
    }
    Ok(RelativePath(path.to_owned()))
}

/// Checks that the symlink at `link` with `target` stays inside the copy's root.
///
/// The target must be relative; `..` components are allowed only as a leading run (e.g.
/// `../../lib/x`) and may not climb above the root from the link's directory. A `..` after a
/// name is refused even when it looks harmless (`a/../b`), because if `a` is itself a symlink
/// the kernel resolves `..` from wherever `a` points, which no lexical check can follow. With
/// that rule every link in an accepted tree resolves inside the root.
pub fn check_symlink(link: &RelativePath, target: &str) -> Result<(), PathError> {
    check_common(target)?;
    let escapes = || PathError::Escapes {
        link: link.0.clone(),
        target: target.to_owned(),
    };
    // Depth of the directory holding the link.
    let mut depth = link.depth() - 1;
    let mut seen_name = false;
    for component in target.split('/') {
        match component {
            "" | "." => {}
            ".." if seen_name => return Err(PathError::ParentDir(target.to_owned())),
            ".." => depth = depth.checked_sub(1).ok_or_else(escapes)?,
            _ => seen_name = true,
        }
    }
    Ok(())
}
