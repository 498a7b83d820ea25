//! The filesystem side of `cp`, shared by both ends (enclave-ctl and enclave-init):
//!
//! - [`scan`] lists a file or directory tree as protocol entries, parents first, checking every
//!   name and symlink with the rules of [`crate::wire::path`] so that nothing is sent that the
//!   receiver would refuse;
//! - [`send_tree`] sends them, each file's content followed by its `cp_file_end` end marker;
//! - [`TreeWriter`] creates received entries below a destination directory: never following a
//!   symlink that already exists there, each file written to a temporary name, checked to have
//!   exactly its announced size, fsynced, then renamed into place; setuid, setgid (and, on
//!   files, sticky) bits are never written.
//!
//! Reading never follows a symlink either: [`scan`] and [`send_tree`] reach every entry below
//! the source by `openat(O_NOFOLLOW)` relative to the file descriptor of its directory, never
//! by a path, and [`send_tree`] checks that each directory and file it opens is the one that
//! was scanned (device, inode and type), so that a file swapped for a symlink (or a directory
//! for a link to another one) between the scan and the send fails the copy, naming it, instead
//! of sending what the link points to. The content itself is not hashed: the control channel's
//! AEAD already protects it in transit.

mod scan;
mod send;
mod write;

use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;

use crate::wire::path::{safe_relative, PathError};
use crate::wire::{CpEntry, CpKind};

pub use scan::scan;
pub use send::{read_chunk, send_tree, TreeSink};
pub use write::TreeWriter;

/// Why a tree could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// A filesystem operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The path concerned (as the entry names it, or the local path).
        path: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A name or link the protocol refuses.
    #[error(transparent)]
    Path(#[from] PathError),
    /// A file name that is not UTF-8 (the protocol's paths are strings).
    #[error("{0}: file name is not UTF-8")]
    NotUtf8(PathBuf),
    /// Something that is neither a regular file, a directory nor a symlink.
    #[error("{0}: not a regular file, directory or symlink")]
    Unsupported(PathBuf),
    /// A source entry is no longer what [`scan`] saw: replaced (by a symlink, another file, a
    /// directory...) or removed between the scan and its opening. Nothing of it was sent.
    #[error("{0}: changed since it was scanned (replaced by another file or a symlink, or removed); not copied")]
    Replaced(String),
    /// A component of a destination that must be reached without following symlinks is one.
    #[error("{path}: {link} is a symlink (to {target}); cp does not follow symlinks in its destination, name the real directory")]
    SymlinkInDestination {
        /// The destination as given.
        path: String,
        /// The component that is a symlink, as a path.
        link: String,
        /// Where it points (as stored in the link).
        target: String,
    },
    /// An entry that cannot be created where it goes (existing non-directory, symlink in the
    /// way, content out of order...).
    #[error("{path}: {reason}")]
    Refused {
        /// The entry.
        path: String,
        /// Why.
        reason: String,
    },
}

impl TreeError {
    pub(crate) fn io(path: impl std::fmt::Display, source: io::Error) -> Self {
        TreeError::Io {
            path: path.to_string(),
            source,
        }
    }

    pub(crate) fn refused(path: impl std::fmt::Display, reason: impl Into<String>) -> Self {
        TreeError::Refused {
            path: path.to_string(),
            reason: reason.into(),
        }
    }
}

/// What [`scan`] does when the source itself is a symlink. Symlinks *below* the source are
/// never followed, whatever this says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceLink {
    /// Copy what it points to (the host: the user named that path on their own machine).
    Follow,
    /// Copy the link itself, as a symlink entry (the enclave's `cp_from`).
    Keep,
}

/// What a local entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKind {
    /// A directory.
    Dir,
    /// A symlink (not followed) with this target.
    Symlink(String),
    /// A regular file of this size when it was scanned.
    File {
        /// Its size when scanned: the size announced, and exactly what is sent.
        size: u64,
    },
}

/// Which file an entry was when it was scanned: the same device, inode and type are required
/// when [`send_tree`] opens it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    dev: u64,
    ino: u64,
    file_type: rustix::fs::FileType,
}

impl FileId {
    fn of(st: &rustix::fs::Stat) -> Self {
        Self {
            dev: st.st_dev,
            ino: st.st_ino,
            file_type: rustix::fs::FileType::from_raw_mode(st.st_mode),
        }
    }
}

/// One entry of a tree to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceEntry {
    /// Path as sent, `/`-separated, valid for [`safe_relative`]: relative to the source's parent
    /// (its first component is the source's name, or the new name of
    /// [`SourceTree::renamed`]). The last component is the entry's name on disk, except for the
    /// top entry.
    pub rel: String,
    /// Permission bits.
    pub mode: u32,
    /// What it is.
    pub kind: SourceKind,
    /// What it was when scanned.
    pub id: FileId,
}

impl SourceEntry {
    /// The protocol entry.
    pub fn to_entry(&self) -> CpEntry {
        let kind = match &self.kind {
            SourceKind::Dir => CpKind::Dir,
            SourceKind::Symlink(target) => CpKind::Symlink {
                target: target.clone(),
            },
            SourceKind::File { size } => CpKind::File { size: *size },
        };
        CpEntry {
            path: self.rel.clone(),
            mode: self.mode,
            kind,
        }
    }

    /// Number of components of [`rel`](Self::rel): 1 for the top entry.
    fn depth(&self) -> usize {
        self.rel.split('/').count()
    }

    /// The entry's name on disk (not for the top entry, which may be renamed).
    fn name(&self) -> &str {
        self.rel.rsplit('/').next().unwrap_or_default()
    }
}

/// A scanned source, ready for [`send_tree`]: its entries and the directory that holds it, kept
/// open so that sending resolves no path again.
#[derive(Debug, Clone)]
pub struct SourceTree {
    /// The directory holding the source (opened as the source's path says: that path is the
    /// caller's choice), or for `/` the root itself.
    base: Arc<OwnedFd>,
    /// The source's name in `base` (`.` for `/`).
    top_name: String,
    /// Whether the top is reached following a symlink.
    link: SourceLink,
    entries: Vec<SourceEntry>,
}

impl SourceTree {
    /// The entries, parents first, depth first, siblings sorted by name.
    pub fn entries(&self) -> &[SourceEntry] {
        &self.entries
    }

    /// Total content bytes (for progress bars).
    pub fn total_bytes(&self) -> u64 {
        self.entries
            .iter()
            .map(|e| match e.kind {
                SourceKind::File { size } => size,
                _ => 0,
            })
            .sum()
    }

    /// Whether the source is a directory.
    pub fn is_dir(&self) -> bool {
        self.entries
            .first()
            .is_some_and(|e| e.kind == SourceKind::Dir)
    }

    /// The same tree sent under another top-level name (`cp SRC NEWNAME`): `name` is checked
    /// with [`check_top_name`]; the files read are the same.
    pub fn renamed(&self, name: &str) -> Result<SourceTree, TreeError> {
        check_top_name(name)?;
        let entries = self
            .entries
            .iter()
            .map(|e| SourceEntry {
                rel: rename_top(&e.rel, name),
                ..e.clone()
            })
            .collect();
        Ok(SourceTree {
            entries,
            ..self.clone()
        })
    }
}

/// Checks `name` as the new name of a copy's top-level entry (`cp SRC NEWNAME` when `NEWNAME`
/// does not exist): a single component valid for [`safe_relative`] (no `/`, `.`, `..`).
pub fn check_top_name(name: &str) -> Result<(), TreeError> {
    if safe_relative(name)?.depth() != 1 {
        return Err(PathError::NotCanonical(name.to_owned()).into());
    }
    Ok(())
}

/// The entry path `path` with its first component (the copy's top-level entry) replaced by
/// `name` (checked with [`check_top_name`]).
pub fn rename_top(path: &str, name: &str) -> String {
    match path.split_once('/') {
        Some((_, rest)) => format!("{name}/{rest}"),
        None => name.to_owned(),
    }
}
