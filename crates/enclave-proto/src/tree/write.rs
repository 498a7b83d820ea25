//! [`TreeWriter`]: creates received `cp` entries below a destination directory.
//!
//! Every operation is relative to a directory file descriptor reached from the destination's
//! by `openat(O_NOFOLLOW | O_DIRECTORY)` one component at a time, so a symlink that already
//! exists in the destination (or that the tree itself created) can never redirect a write:
//! walking through it fails with `ELOOP`/`ENOTDIR`. (`openat2` with `RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS` would do the walk in one call, but only from Linux 5.6; the walk works
//! on every kernel and is cached per parent.) The enclave reaches the destination itself the same
//! way from `/` ([`TreeWriter::open_no_symlinks`]); the host follows symlinks in the destination
//! path the user typed ([`TreeWriter::open`]), never below it. Files and symlinks are created
//! under a temporary name (`O_CREAT | O_EXCL | O_NOFOLLOW`) and renamed into place only once
//! complete (files: exactly their announced size, mode set, fsynced; otherwise the temporary
//! file is deleted); `rename` replaces a symlink in the way instead of following it.
//!
//! Modes are written without setuid and setgid, and files without the sticky bit (`& 0o777`
//! for files, `& 0o1777` for directories): a copy never creates a set-id program.

use std::fs::File;
use std::io::{self, IoSlice, Write};
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, CWD};
use rustix::io::Errno;

use super::TreeError;
use crate::wire::path::{check_symlink, safe_relative, RelativePath};
use crate::wire::{CpEntry, CpKind};

/// Received content is written to the file this much at a time: a `write` for every 64 KiB
/// chunk costs the receiving end of a copy about a tenth more CPU than 256 KiB writes do
/// (docs/benchmarks.md, "A fair source file, a larger socket buffer, batched writes").
const WRITE_BATCH: usize = 256 << 10;

/// A file whose content is being received.
struct Pending {
    dir: OwnedFd,
    tmp: String,
    name: String,
    rel: String,
    file: File,
    remaining: u64,
    size: u64,
    mode: u32,
    /// Received content not written yet (less than [`WRITE_BATCH`] bytes, until the file ends).
    batch: Vec<Bytes>,
}

impl Pending {
    /// Writes the batched content, in one `writev` when the file takes it whole.
    fn write_batch(&mut self) -> io::Result<()> {
        let mut slices: Vec<IoSlice<'_>> = self.batch.iter().map(|b| IoSlice::new(b)).collect();
        let mut left = &mut slices[..];
        while !left.is_empty() {
            match self.file.write_vectored(left) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => IoSlice::advance_slices(&mut left, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.batch.clear();
        Ok(())
    }
}

/// Writes a received tree below a directory. See the [module doc](self).
pub struct TreeWriter {
    root: OwnedFd,
    /// The last parent directory opened, by entry path.
    cache: Option<(String, OwnedFd)>,
    current: Option<Pending>,
    /// Directories created with more owner bits than their entry's mode (so that their
    /// children can be written without root), with that mode: set by [`finish`](Self::finish).
    deferred: Vec<(String, Mode)>,
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

/// The mode a received file gets: permission bits only, no setuid, setgid or sticky bit.
fn file_mode(bits: u32) -> Mode {
    Mode::from_bits_truncate(bits & 0o777)
}

/// The mode a received directory gets: permission bits and sticky, no setuid or setgid.
fn dir_mode(bits: u32) -> Mode {
    Mode::from_bits_truncate(bits & 0o1777)
}

impl TreeWriter {
    /// A writer below `root`, an existing directory (symlinks in `root`'s own path are
    /// followed: that path is the caller's choice; below it none is).
    pub fn open(root: &Path) -> Result<Self, TreeError> {
        let root_fd = rfs::openat(
            CWD,
            root,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| TreeError::io(root.display(), e.into()))?;
        Ok(Self::below(root_fd))
    }

    /// A writer below `root`, an absolute path of an existing directory reached from `/`
    /// without following any symlink: a `root` that is a symlink, or passes through one, is
    /// refused with [`TreeError::SymlinkInDestination`]. A component that is not a directory is
    /// an [`TreeError::Io`] of kind `NotADirectory`.
    pub fn open_no_symlinks(root: &str) -> Result<Self, TreeError> {
        let open = |dir: &OwnedFd, name: &std::ffi::OsStr, last: bool| {
            // Intermediate directories only need to be searchable (`O_PATH`); the destination
            // itself is opened for reading as [`open`](Self::open) does.
            let access = if last { OFlags::RDONLY } else { OFlags::PATH };
            let flags = access | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            rfs::openat(dir, name, flags, Mode::empty())
        };
        let path = Path::new(root);
        if !path.is_absolute() {
            let e = std::io::Error::from(std::io::ErrorKind::InvalidInput);
            return Err(TreeError::io(root, e));
        }
        let components: Vec<&std::ffi::OsStr> = path
            .components()
            .filter_map(|c| match c {
                Component::Normal(name) => Some(name),
                Component::ParentDir => Some("..".as_ref()),
                Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
            })
            .collect();
        let mut fd = rfs::open(
            "/",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| TreeError::io("/", e.into()))?;
        let mut walked = PathBuf::from("/");
        for (i, name) in components.iter().enumerate() {
            walked.push(name);
            fd = match open(&fd, name, i + 1 == components.len()) {
                Ok(next) => next,
                Err(e @ (Errno::LOOP | Errno::NOTDIR)) => {
                    // O_NOFOLLOW | O_DIRECTORY on a symlink is ENOTDIR: tell the two apart.
                    return Err(match rfs::readlinkat(&fd, *name, Vec::new()) {
                        Ok(target) => TreeError::SymlinkInDestination {
                            path: root.to_owned(),
                            link: walked.display().to_string(),
                            target: target.to_string_lossy().into_owned(),
                        },
                        Err(_) => TreeError::io(walked.display(), e.into()),
                    });
                }
                Err(e) => return Err(TreeError::io(walked.display(), e.into())),
            };
        }
        Ok(Self::below(fd))
    }

    fn below(root: OwnedFd) -> Self {
        Self {
            root,
            cache: None,
            current: None,
            deferred: Vec::new(),
            entries: 0,
            bytes: 0,
        }
    }

    /// Entries and content bytes completed so far.
    pub fn stats(&self) -> (u64, u64) {
        (self.entries, self.bytes)
    }

    /// Whether a file's content or end marker is still expected.
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
    /// [`data`](Self::data) and [`file_end`](Self::file_end) was called.
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
                // Owner rwx until the copy is complete: a read-only directory of the tree
                // must still receive its children, and the copy does not run as root.
                let final_mode = dir_mode(entry.mode);
                let for_now = final_mode | Mode::RWXU;
                rfs::fchmod(&fd, for_now).map_err(io)?;
                if for_now != final_mode {
                    self.deferred.push((rel.to_string(), final_mode));
                }
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
                    remaining: *size,
                    size: *size,
                    mode: entry.mode,
                    batch: Vec::new(),
                });
            }
        }
        Ok(())
    }

    /// Content of the current file entry (held, and written in batches: the buffer is shared,
    /// not copied). On failure the temporary file is removed.
    pub fn data(&mut self, data: Bytes) -> Result<(), TreeError> {
        let written = self.write_data(data);
        if written.is_err() {
            self.abort();
        }
        written
    }

    /// Content of the current file entry, written through the file's descriptor only: unlike
    /// [`data`](Self::data) it touches no path, so any thread may call it, whatever its
    /// credentials, while the entries, file ends and the removal after a failure
    /// ([`abort`](Self::abort)) stay with the thread that has the writer's user.
    pub fn write_data(&mut self, data: Bytes) -> Result<(), TreeError> {
        let Some(p) = &mut self.current else {
            return Err(TreeError::refused("(data)", "content without a file entry"));
        };
        if data.len() as u64 > p.remaining {
            return Err(TreeError::refused(
                p.rel.clone(),
                "more content than the entry announced",
            ));
        }
        p.remaining -= data.len() as u64;
        p.batch.push(data);
        if p.batch.iter().map(Bytes::len).sum::<usize>() >= WRITE_BATCH {
            p.write_batch()
                .map_err(|e| TreeError::io(p.rel.clone(), e))?;
        }
        Ok(())
    }

    /// End marker of the current file entry: checks that all its announced content arrived,
    /// then sets the mode, fsyncs and renames the file into place. On any failure the temporary
    /// file is removed.
    pub fn file_end(&mut self) -> Result<(), TreeError> {
        let Some(mut p) = self.current.take() else {
            return Err(TreeError::refused(
                "(cp_file_end)",
                "file end without a file entry",
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
        if let Err(e) = p.write_batch() {
            let err = TreeError::io(&p.rel, e);
            return Err(fail(&p, err));
        }
        if let Err(e) = rfs::fchmod(&p.file, file_mode(p.mode)).and_then(|()| rfs::fsync(&p.file)) {
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
                "file not ended (content or its cp_file_end missing)",
            ));
        }
        // Children before parents: a parent may lose its owner's write or search bit.
        for (rel, mode) in std::mem::take(&mut self.deferred).into_iter().rev() {
            let path = safe_relative(&rel)?;
            let name = path.components().last().unwrap_or_default().to_owned();
            let dir = self.parent_dir(&path)?;
            rfs::openat(
                &dir,
                name.as_str(),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .and_then(|fd| rfs::fchmod(&fd, mode))
            .map_err(|e| TreeError::io(&rel, e.into()))?;
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
