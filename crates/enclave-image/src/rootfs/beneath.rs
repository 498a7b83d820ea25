//! Opening what a `dir:` walk saw, and only that.
//!
//! A `dir:` input is walked (names, types, sizes) and its files are read later, when the cpio is
//! written. Whoever can write in the input directory can swap a walked file, or a directory on
//! the way to it, for a symlink in between; re-opening by path would then put the symlink's
//! target (a host secret) into the EIF. So every path is opened one component at a time below
//! the input directory's file descriptor, held open from the walk on, never following a
//! symlink (`O_NOFOLLOW` on each component), and the object opened is compared with what the
//! walk recorded (device, inode, type, size). A mismatch is a [`RootfsError::HostChanged`].

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;

use super::{HostChange, RootfsError};

/// Directories: no symlink, nothing but a directory.
const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Files: no symlink, and no blocking if a FIFO was swapped in (its type is refused after).
const FILE_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::NOFOLLOW)
    .union(OFlags::NONBLOCK)
    .union(OFlags::NOCTTY)
    .union(OFlags::CLOEXEC);

/// The walked input directory: its descriptor and, for messages, the path it was opened by.
#[derive(Debug)]
pub(super) struct HostRoot {
    fd: OwnedFd,
    path: PathBuf,
}

/// What identifies a walked file or directory: device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Identity {
    dev: u64,
    ino: u64,
}

impl Identity {
    pub(super) fn of(stat: &Stat) -> Self {
        Self {
            dev: stat.st_dev,
            ino: stat.st_ino,
        }
    }
}

impl HostRoot {
    /// Opens the input directory. Its own path is followed (the user named it); nothing below.
    pub(super) fn open(path: &Path) -> Result<Self, RootfsError> {
        let fd = rustix::fs::open(path, DIR_FLAGS.difference(OFlags::NOFOLLOW), Mode::empty())
            .map_err(|e| host_error(path, e))?;
        Ok(Self {
            fd,
            path: path.to_owned(),
        })
    }

    /// The host path of `rel` (components joined by `/`), for messages.
    pub(super) fn display(&self, rel: &[u8]) -> PathBuf {
        if rel.is_empty() {
            return self.path.clone();
        }
        self.path.join(OsStr::from_bytes(rel))
    }

    /// Opens the directory `rel` (empty: the root itself) one component at a time. An error
    /// names the component that is no longer what the walk saw.
    pub(super) fn open_dir(&self, rel: &[u8]) -> Result<OwnedFd, RootfsError> {
        let mut fd = rustix::io::dup(&self.fd).map_err(|e| host_error(&self.path, e))?;
        let mut end = 0;
        for part in rel.split(|&b| b == b'/') {
            end += part.len();
            if !part.is_empty() {
                fd = rustix::fs::openat(&fd, OsStr::from_bytes(part), DIR_FLAGS, Mode::empty())
                    .map_err(|e| self.open_error(fd.as_fd(), part, &rel[..end], e))?;
            }
            end += 1;
        }
        Ok(fd)
    }

    /// Opens the directory `rel` and checks it is the one the walk saw.
    pub(super) fn open_walked_dir(
        &self,
        rel: &[u8],
        expected: Identity,
    ) -> Result<OwnedFd, RootfsError> {
        let fd = self.open_dir(rel)?;
        let stat = rustix::fs::fstat(&fd).map_err(|e| host_error(&self.display(rel), e))?;
        if Identity::of(&stat) != expected {
            return Err(self.changed(rel, HostChange::Replaced));
        }
        Ok(fd)
    }

    /// Opens the file `name` of the directory `dir` (whose path is `rel`'s parent) and checks it
    /// is the regular file of `len` bytes the walk saw.
    pub(super) fn open_walked_file(
        &self,
        dir: BorrowedFd<'_>,
        rel: &[u8],
        name: &[u8],
        expected: Identity,
        len: u64,
    ) -> Result<File, RootfsError> {
        let fd = rustix::fs::openat(dir, OsStr::from_bytes(name), FILE_FLAGS, Mode::empty())
            .map_err(|e| self.open_error(dir, name, rel, e))?;
        let stat = rustix::fs::fstat(&fd).map_err(|e| host_error(&self.display(rel), e))?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile
            || Identity::of(&stat) != expected
        {
            return Err(self.changed(rel, HostChange::Replaced));
        }
        // The cpio header announces the walked size; another size would corrupt the archive.
        let now = u64::try_from(stat.st_size).unwrap_or(0);
        if now != len {
            return Err(self.changed(rel, HostChange::Resized { walked: len, now }));
        }
        Ok(File::from(fd))
    }

    pub(super) fn changed(&self, rel: &[u8], change: HostChange) -> RootfsError {
        RootfsError::HostChanged {
            path: self.display(rel),
            change,
        }
    }

    /// What a failed `openat(dir, part)` of `rel`, which the walk saw, means.
    fn open_error(
        &self,
        dir: BorrowedFd<'_>,
        part: &[u8],
        rel: &[u8],
        errno: Errno,
    ) -> RootfsError {
        let change = match errno {
            // O_NOFOLLOW met a symlink (ELOOP), or O_DIRECTORY met a symlink or a file (the
            // kernel checks O_DIRECTORY first): look at which.
            Errno::LOOP | Errno::NOTDIR => {
                let is_symlink =
                    rustix::fs::statat(dir, OsStr::from_bytes(part), AtFlags::SYMLINK_NOFOLLOW)
                        .is_ok_and(|s| FileType::from_raw_mode(s.st_mode) == FileType::Symlink);
                if is_symlink {
                    HostChange::Symlink
                } else {
                    HostChange::NotADirectory
                }
            }
            Errno::NOENT => HostChange::Gone,
            _ => return host_error(&self.display(rel), errno),
        };
        self.changed(rel, change)
    }
}

pub(super) fn host_error(path: &Path, errno: Errno) -> RootfsError {
    RootfsError::Host {
        path: path.to_owned(),
        source: errno.into(),
    }
}
