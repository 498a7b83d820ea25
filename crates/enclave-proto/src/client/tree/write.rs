//! [`TreeWriter`]: creates received `cp` entries below a destination directory.
//!
//! Every operation is relative to a directory file descriptor reached from the destination's
//! by `openat(O_NOFOLLOW | O_DIRECTORY)` one component at a time, so a symlink that already
//! exists in the destination (or that the tree itself created) can never redirect a write:
//! walking through it fails with `ELOOP`/`ENOTDIR`. Files and symlinks are created under a
//! temporary name (`O_CREAT | O_EXCL | O_NOFOLLOW`) and renamed into place only once complete
//! (files: fsynced and their SHA-256 checked against the `cp_file_end` trailer that follows
//! their content; a mismatch deletes the temporary file); `rename` replaces a symlink in the way instead of
//! following it.

use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, CWD};
use rustix::io::Errno;
use sha2::{Digest, Sha256};

use super::TreeError;
use crate::wire::path::{check_symlink, safe_relative, RelativePath};
use crate::wire::{CpEntry, CpKind};

/// A file whose content is being received.
struct Pending {
    dir: OwnedFd,
    tmp: String,
    name: String,
    rel: String,
    file: File,
    hasher: Sha256,
    remaining: u64,
    size: u64,
    mode: u32,
}

/// Writes a received tree below a directory. See the [module doc](self).
pub struct TreeWriter {
    root: OwnedFd,
    /// The last parent directory opened, by entry path.
    cache: Option<(String, OwnedFd)>,
    current: Option<Pending>,
    entries: u64,
    bytes: u64,
}

fn tmp_name() -> String {
    let mut r = [0u8; 8];
    // A weak name only costs an EEXIST, which is reported.
    let _ = getrandom::getrandom(&mut r);
    let hex: String = r.iter().map(|b| format!("{b:02x}")).collect();
    format!(".enclave-cp-{hex}")
}

fn mode(bits: u32) -> Mode {
    Mode::from_bits_truncate(bits & 0o7777)
}

impl TreeWriter {
    /// A writer below `root`, an existing directory (symlinks in `root`'s own path are
    /// followed: that path is the caller's choice).
    pub fn open(root: &Path) -> Result<Self, TreeError> {
        let root_fd = rfs::openat(
            CWD,
            root,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| TreeError::io(root.display(), e.into()))?;
        Ok(Self {
            root: root_fd,
            cache: None,
            current: None,
            entries: 0,
            bytes: 0,
        })
    }

    /// Entries and content bytes completed so far.
    pub fn stats(&self) -> (u64, u64) {
        (self.entries, self.bytes)
    }

    /// Whether a file's content or trailer is still expected.
    pub fn in_file(&self) -> bool {
        self.current.is_some()
    }

    /// The directory holding `rel`, reached without following any symlink.
    fn parent_dir(&mut self, rel: &RelativePath) -> Result<OwnedFd, TreeError> {
        let Some(parent) = rel.parent() else {
            return self.root.try_clone().map_err(|e| TreeError::io(rel, e));
        };
        if let Some((path, fd)) = &self.cache {
            if path == parent.as_str() {
                return fd.try_clone().map_err(|e| TreeError::io(rel, e));
            }
        }
        let mut fd = self.root.try_clone().map_err(|e| TreeError::io(rel, e))?;
        for component in parent.components() {
            fd = rfs::openat(
                &fd,
                component,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| match e {
                Errno::LOOP | Errno::NOTDIR => TreeError::refused(
                    rel,
                    format!("{component:?} on the way is a symlink or not a directory"),
                ),
                e => TreeError::io(rel, e.into()),
            })?;
        }
        let copy = fd.try_clone().map_err(|e| TreeError::io(rel, e))?;
        self.cache = Some((parent.as_str().to_owned(), copy));
        Ok(fd)
    }

    /// Starts an entry. A file entry is complete once its content was given to
    /// [`data`](Self::data) and its trailer to [`file_end`](Self::file_end).
    pub fn entry(&mut self, entry: &CpEntry) -> Result<(), TreeError> {
        if let Some(p) = &self.current {
            return Err(TreeError::refused(
                &entry.path,
                format!("entry before {} was ended", p.rel),
            ));
        }
        let rel = safe_relative(&entry.path)?;
        let name = rel.components().last().unwrap_or_default().to_owned();
        let dir = self.parent_dir(&rel)?;
        let io = |e: Errno| TreeError::io(&rel, e.into());
        match &entry.kind {
            CpKind::Dir => {
                match rfs::mkdirat(&dir, name.as_str(), Mode::from_bits_truncate(0o700)) {
                    Ok(()) => {}
                    Err(Errno::EXIST) => {
                        let st = rfs::statat(&dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW)
                            .map_err(io)?;
                        if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                            return Err(TreeError::refused(&rel, "exists and is not a directory"));
                        }
                    }
                    Err(e) => return Err(io(e)),
                }
                let fd = rfs::openat(
                    &dir,
                    name.as_str(),
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(io)?;
                rfs::fchmod(&fd, mode(entry.mode)).map_err(io)?;
                self.entries += 1;
            }
            CpKind::Symlink { target } => {
                check_symlink(&rel, target)?;
                let tmp = tmp_name();
                rfs::symlinkat(target.as_str(), &dir, tmp.as_str()).map_err(io)?;
                if let Err(e) = rfs::renameat(&dir, tmp.as_str(), &dir, name.as_str()) {
                    let _ = rfs::unlinkat(&dir, tmp.as_str(), AtFlags::empty());
                    return Err(io(e));
                }
                self.entries += 1;
            }
            CpKind::File { size } => {
                let tmp = tmp_name();
                let fd = rfs::openat(
                    &dir,
                    tmp.as_str(),
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(io)?;
                self.current = Some(Pending {
                    dir,
                    tmp,
                    name,
                    rel: rel.to_string(),
                    file: File::from(fd),
                    hasher: Sha256::new(),
                    remaining: *size,
                    size: *size,
                    mode: entry.mode,
                });
            }
        }
        Ok(())
    }

    /// Content of the current file entry.
    pub fn data(&mut self, data: &[u8]) -> Result<(), TreeError> {
        let Some(p) = &mut self.current else {
            return Err(TreeError::refused("(data)", "content without a file entry"));
        };
        if data.len() as u64 > p.remaining {
            let rel = p.rel.clone();
            self.abort();
            return Err(TreeError::refused(
                rel,
                "more content than the entry announced",
            ));
        }
        if let Err(e) = p.file.write_all(data) {
            let rel = p.rel.clone();
            self.abort();
            return Err(TreeError::io(rel, e));
        }
        p.hasher.update(data);
        p.remaining -= data.len() as u64;
        Ok(())
    }

    /// Trailer of the current file entry: checks the content's SHA-256 against `sha256`, then
    /// sets the mode, fsyncs and renames the file into place. On any failure the temporary file
    /// is removed.
    pub fn file_end(&mut self, sha256: &[u8; 32]) -> Result<(), TreeError> {
        let Some(p) = self.current.take() else {
            return Err(TreeError::refused(
                "(cp_file_end)",
                "file trailer without a file entry",
            ));
        };
        let fail = |p: &Pending, err: TreeError| {
            let _ = rfs::unlinkat(&p.dir, p.tmp.as_str(), AtFlags::empty());
            err
        };
        if p.remaining > 0 {
            let err = TreeError::refused(&p.rel, "content shorter than the entry announced");
            return Err(fail(&p, err));
        }
        let digest: [u8; 32] = p.hasher.clone().finalize().into();
        if digest != *sha256 {
            return Err(fail(&p, TreeError::Checksum(p.rel.clone())));
        }
        if let Err(e) = rfs::fchmod(&p.file, mode(p.mode)).and_then(|()| rfs::fsync(&p.file)) {
            return Err(fail(&p, TreeError::io(&p.rel, e.into())));
        }
        if let Err(e) = rfs::renameat(&p.dir, p.tmp.as_str(), &p.dir, p.name.as_str()) {
            return Err(fail(&p, TreeError::io(&p.rel, e.into())));
        }
        self.entries += 1;
        self.bytes += p.size;
        Ok(())
    }

    /// Checks that no file is left incomplete; returns (entries, bytes).
    pub fn finish(&mut self) -> Result<(u64, u64), TreeError> {
        if let Some(p) = &self.current {
            let rel = p.rel.clone();
            self.abort();
            return Err(TreeError::refused(
                rel,
                "file not ended (content or trailer missing)",
            ));
        }
        Ok(self.stats())
    }

    /// Removes the temporary file of an incomplete entry.
    pub fn abort(&mut self) {
        if let Some(p) = self.current.take() {
            let _ = rfs::unlinkat(&p.dir, p.tmp.as_str(), AtFlags::empty());
        }
    }
}

impl Drop for TreeWriter {
    fn drop(&mut self) {
        self.abort();
    }
}
