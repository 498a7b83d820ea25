//! The filesystem side of `cp`, shared by both ends (enclave-ctl and enclave-init):
//!
//! - [`scan`] lists a file or directory tree as protocol entries, parents first, checking every
//!   name and symlink with the rules of [`crate::wire::path`] so that nothing is sent that the
//!   receiver would refuse;
//! - [`send_tree`] sends them, hashing each file while its content is streamed (the SHA-256
//!   follows the content, in the entry's `cp_file_end` trailer);
//! - [`TreeWriter`] creates received entries below a destination directory: never following a
//!   symlink that already exists there, each file written to a temporary name, fsynced, checked
//!   against the SHA-256 of its trailer, then renamed into place.

mod write;

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::wire::path::{check_symlink, safe_relative, PathError};
use crate::wire::{CpEntry, CpKind};

pub use write::TreeWriter;

/// Read buffer used for hashing and sending file content.
pub const IO_BUF: usize = 256 << 10;

/// Why a tree could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// A filesystem operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The path concerned (as the entry names it, or the local path).
        path: String,
        /// Why.
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
    /// Received content did not match the entry's SHA-256.
    #[error("{0}: content does not match its SHA-256")]
    Checksum(String),
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

/// What a local entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKind {
    /// A directory.
    Dir,
    /// A symlink (not followed) with this target.
    Symlink(String),
    /// A regular file, read from `path`.
    File {
        /// Where to read it.
        path: PathBuf,
        /// Its size when scanned.
        size: u64,
    },
}

/// One entry of a tree to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceEntry {
    /// Path relative to the source's parent (`/`-separated), valid for [`safe_relative`].
    pub rel: String,
    /// Permission bits.
    pub mode: u32,
    /// What it is.
    pub kind: SourceKind,
}

impl SourceEntry {
    /// The protocol entry (a file's SHA-256 is sent after its content, not here).
    pub fn to_entry(&self) -> CpEntry {
        let kind = match &self.kind {
            SourceKind::Dir => CpKind::Dir,
            SourceKind::Symlink(target) => CpKind::Symlink {
                target: target.clone(),
            },
            SourceKind::File { size, .. } => CpKind::File { size: *size },
        };
        CpEntry {
            path: self.rel.clone(),
            mode: self.mode,
            kind,
        }
    }

    /// Total content bytes of a list of entries (for progress bars).
    pub fn total_bytes(entries: &[SourceEntry]) -> u64 {
        entries
            .iter()
            .map(|e| match e.kind {
                SourceKind::File { size, .. } => size,
                _ => 0,
            })
            .sum()
    }
}

fn utf8_name(path: &Path) -> Result<String, TreeError> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| TreeError::NotUtf8(path.to_owned()))
}

fn entry_of(path: &Path, rel: String, meta: &fs::Metadata) -> Result<SourceEntry, TreeError> {
    let mode = meta.permissions().mode() & 0o7777;
    let ft = meta.file_type();
    let kind = if ft.is_dir() {
        SourceKind::Dir
    } else if ft.is_file() {
        SourceKind::File {
            path: path.to_owned(),
            size: meta.size(),
        }
    } else if ft.is_symlink() {
        let target = fs::read_link(path).map_err(|e| TreeError::io(path.display(), e))?;
        let target = target
            .to_str()
            .ok_or_else(|| TreeError::NotUtf8(path.to_owned()))?
            .to_owned();
        check_symlink(&safe_relative(&rel)?, &target)?;
        SourceKind::Symlink(target)
    } else {
        return Err(TreeError::Unsupported(path.to_owned()));
    };
    Ok(SourceEntry { rel, mode, kind })
}

/// Lists `src` (a file, or a directory and everything below it) as entries named relative to
/// its parent, parents first, siblings sorted by name. A symlink given as `src` itself is
/// followed; symlinks inside a directory are entries of their own, never followed, and must
/// stay inside the tree.
pub fn scan(src: &Path) -> Result<Vec<SourceEntry>, TreeError> {
    let meta = fs::metadata(src).map_err(|e| TreeError::io(src.display(), e))?;
    let top = if src.file_name().is_some() {
        utf8_name(src)?
    } else {
        // `/`, `..`: name the tree after what it resolves to.
        let real = fs::canonicalize(src).map_err(|e| TreeError::io(src.display(), e))?;
        utf8_name(&real).unwrap_or_else(|_| "root".to_owned())
    };
    safe_relative(&top)?;
    let mut out = vec![entry_of(src, top, &meta)?];
    // Depth-first with an explicit stack of (directory, its entry path).
    let mut stack = vec![];
    if meta.is_dir() {
        stack.push((src.to_owned(), out[0].rel.clone()));
    }
    while let Some((dir, rel)) = stack.pop() {
        let mut children: Vec<_> = fs::read_dir(&dir)
            .map_err(|e| TreeError::io(dir.display(), e))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(|e| TreeError::io(dir.display(), e))?;
        children.sort();
        let mut subdirs = Vec::new();
        for child in children {
            let name = utf8_name(&child)?;
            let child_rel = format!("{rel}/{name}");
            safe_relative(&child_rel)?;
            let meta =
                fs::symlink_metadata(&child).map_err(|e| TreeError::io(child.display(), e))?;
            let entry = entry_of(&child, child_rel.clone(), &meta)?;
            if entry.kind == SourceKind::Dir {
                subdirs.push((child, child_rel));
            }
            out.push(entry);
        }
        // Reversed so that the stack pops them in name order.
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(out)
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

/// SHA-256 and size of a file's content (a separate pass; [`send_tree`] does not need it).
pub fn hash_file(path: &Path) -> Result<([u8; 32], u64), TreeError> {
    let mut file = File::open(path).map_err(|e| TreeError::io(path.display(), e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; IO_BUF];
    let mut size = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(TreeError::io(path.display(), e)),
        };
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hasher.finalize().into(), size))
}

/// Reads the next chunk of a file being sent: exactly `want` bytes unless the file ended
/// (then an error: it shrank since it was scanned).
pub fn read_chunk(file: &mut File, buf: &mut [u8], what: &str) -> Result<(), TreeError> {
    file.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            TreeError::refused(what, "file shrank while it was being copied")
        } else {
            TreeError::io(what, e)
        }
    })
}

/// Where [`send_tree`] sends: a connection with flow control, seen from either end.
pub trait TreeSink {
    /// The sink's error; local file errors convert into it.
    type Error: From<TreeError>;
    /// Sends an entry header.
    fn entry(&mut self, entry: crate::wire::CpEntry) -> Result<(), Self::Error>;
    /// Waits until content may be sent; returns how many bytes (at least 1).
    fn credit(&mut self) -> Result<usize, Self::Error>;
    /// Sends a chunk of content (at most the credit and [`crate::wire::MAX_DATA_CHUNK`]).
    fn data(&mut self, data: Vec<u8>) -> Result<(), Self::Error>;
    /// Sends the trailer of a file entry: the SHA-256 of the content just sent.
    fn file_end(&mut self, sha256: [u8; 32]) -> Result<(), Self::Error>;
}

/// Sends `entries` (from [`scan`]): each file's entry announces the size it was scanned with,
/// then its content follows in chunks within the sink's credit, hashed as it is read (one pass),
/// then its SHA-256 in the trailer. The caller sends `cp_done`.
pub fn send_tree<S: TreeSink>(entries: &[SourceEntry], sink: &mut S) -> Result<(), S::Error> {
    for entry in entries {
        let SourceKind::File { path, size } = &entry.kind else {
            sink.entry(entry.to_entry())?;
            continue;
        };
        let mut file = File::open(path).map_err(|e| TreeError::io(path.display(), e))?;
        sink.entry(entry.to_entry())?;
        let mut hasher = Sha256::new();
        let mut remaining = *size;
        while remaining > 0 {
            let credit = sink.credit()?;
            let n = (credit.min(crate::wire::MAX_DATA_CHUNK) as u64).min(remaining) as usize;
            let mut buf = vec![0u8; n];
            read_chunk(&mut file, &mut buf, &entry.rel)?;
            hasher.update(&buf);
            sink.data(buf)?;
            remaining -= n as u64;
        }
        sink.file_end(hasher.finalize().into())?;
    }
    Ok(())
}
