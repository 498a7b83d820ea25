//! [`scan`]: lists a source as `cp` entries without following a symlink below it, and
//! [`open_checked`], the one way both the scan and [`super::send_tree`] open what they read.
//!
//! The source's parent directory is opened as its path says (following symlinks: that path is
//! the caller's choice, and is resolved once); from there every entry is reached by `openat`,
//! `statat` and `readlinkat` relative to the file descriptor of its directory with
//! `O_NOFOLLOW`/`AT_SYMLINK_NOFOLLOW`, so a symlink planted below the source is read as a link,
//! never walked through, whatever happens to the tree meanwhile.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{self as rfs, AtFlags, Dir, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;

use super::{FileId, SourceEntry, SourceKind, SourceLink, SourceTree, TreeError};
use crate::wire::path::{check_symlink, safe_relative};

/// Lists `src` (a file, a symlink, or a directory and everything below it) as entries named
/// relative to its parent: parents first, depth first, siblings sorted by name. `link` says
/// whether a symlink given as `src` itself is followed; symlinks below it are entries of their
/// own, never followed, and must stay inside the tree ([`check_symlink`]).
pub fn scan(src: &Path, link: SourceLink) -> Result<SourceTree, TreeError> {
    let (base, top_name, wire_name) = locate(src)?;
    safe_relative(&wire_name)?;
    let follow = link == SourceLink::Follow;
    let flags = if follow {
        AtFlags::empty()
    } else {
        AtFlags::SYMLINK_NOFOLLOW
    };
    let st = rfs::statat(&base, top_name.as_str(), flags)
        .map_err(|e| TreeError::io(src.display(), e.into()))?;
    let top = entry_of(base.as_fd(), &top_name, wire_name, &st)?;
    let mut entries = vec![top];
    if entries[0].kind == SourceKind::Dir {
        let fd = open_checked(base.as_fd(), &top_name, follow, &entries[0])?;
        walk(fd, &mut entries)?;
    }
    Ok(SourceTree {
        base: Arc::new(base),
        top_name,
        link,
        entries,
    })
}

/// The directory holding `src` (an `O_PATH` descriptor: it is only a starting point), the
/// source's name in it and the name it is sent as. `/`, `..` and the like are named after what
/// they resolve to; `/` itself is `.` in itself, sent as `root`.
fn locate(src: &Path) -> Result<(OwnedFd, String, String), TreeError> {
    let canonical;
    let path = if src.file_name().is_some() {
        src
    } else {
        canonical = std::fs::canonicalize(src).map_err(|e| TreeError::io(src.display(), e))?;
        &canonical
    };
    let open_dir = |dir: &Path| {
        rfs::open(
            dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| TreeError::io(src.display(), e.into()))
    };
    let Some(name) = path.file_name() else {
        return Ok((open_dir(path)?, ".".into(), "root".into()));
    };
    let name = name
        .to_str()
        .ok_or_else(|| TreeError::NotUtf8(path.to_owned()))?
        .to_owned();
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Ok((open_dir(parent)?, name.clone(), name))
}

/// Opens `name` in `dir` for reading, without following a symlink unless `follow`, and checks
/// that it is still the file `entry` was scanned as (device, inode, type). `O_NONBLOCK` so that
/// a FIFO swapped in cannot block the open: it fails the check instead.
pub(super) fn open_checked(
    dir: BorrowedFd<'_>,
    name: &str,
    follow: bool,
    entry: &SourceEntry,
) -> Result<OwnedFd, TreeError> {
    let mut flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK;
    if !follow {
        flags |= OFlags::NOFOLLOW;
    }
    if entry.kind == SourceKind::Dir {
        flags |= OFlags::DIRECTORY;
    }
    let fd = rfs::openat(dir, name, flags, Mode::empty()).map_err(|e| match e {
        // A symlink where a file or directory was, or a file where a directory was, or gone.
        Errno::LOOP | Errno::NOTDIR | Errno::NOENT => TreeError::Replaced(entry.rel.clone()),
        e => TreeError::io(&entry.rel, e.into()),
    })?;
    let st = rfs::fstat(&fd).map_err(|e| TreeError::io(&entry.rel, e.into()))?;
    if FileId::of(&st) != entry.id {
        return Err(TreeError::Replaced(entry.rel.clone()));
    }
    Ok(fd)
}

/// The entry for `name` in `dir`, stated as `st`.
fn entry_of(
    dir: BorrowedFd<'_>,
    name: &str,
    rel: String,
    st: &Stat,
) -> Result<SourceEntry, TreeError> {
    let kind = match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => SourceKind::Dir,
        FileType::RegularFile => SourceKind::File {
            size: u64::try_from(st.st_size).unwrap_or(0),
        },
        FileType::Symlink => {
            let target = rfs::readlinkat(dir, name, Vec::new())
                .map_err(|e| TreeError::io(&rel, e.into()))?
                .into_string()
                .map_err(|_| TreeError::NotUtf8(PathBuf::from(&rel)))?;
            check_symlink(&safe_relative(&rel)?, &target)?;
            SourceKind::Symlink(target)
        }
        _ => return Err(TreeError::Unsupported(PathBuf::from(rel))),
    };
    Ok(SourceEntry {
        rel,
        mode: st.st_mode & 0o7777,
        kind,
        id: FileId::of(st),
    })
}

/// The names in directory `fd`, sorted.
fn list(fd: &OwnedFd, rel: &str) -> Result<Vec<String>, TreeError> {
    let io = |e: Errno| TreeError::io(rel, e.into());
    let mut names = Vec::new();
    for item in Dir::read_from(fd).map_err(io)? {
        let item = item.map_err(io)?;
        let name = item.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let name = std::str::from_utf8(name).map_err(|_| {
            TreeError::NotUtf8(Path::new(rel).join(String::from_utf8_lossy(name).as_ref()))
        })?;
        names.push(name.to_owned());
    }
    names.sort_unstable();
    Ok(names)
}

/// A directory being listed: its descriptor, entry path and the names still to visit.
struct Frame {
    fd: OwnedFd,
    rel: String,
    names: std::vec::IntoIter<String>,
}

/// Adds everything below the top directory `fd` (the last entry of `out`) to `out`, depth
/// first. At most one descriptor per level is open.
fn walk(fd: OwnedFd, out: &mut Vec<SourceEntry>) -> Result<(), TreeError> {
    let rel = out.last().map(|e| e.rel.clone()).unwrap_or_default();
    let names = list(&fd, &rel)?.into_iter();
    let mut stack = vec![Frame { fd, rel, names }];
    while let Some(frame) = stack.last_mut() {
        let Some(name) = frame.names.next() else {
            stack.pop();
            continue;
        };
        let rel = format!("{}/{name}", frame.rel);
        safe_relative(&rel)?;
        let st = rfs::statat(&frame.fd, name.as_str(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| TreeError::io(&rel, e.into()))?;
        let entry = entry_of(frame.fd.as_fd(), &name, rel, &st)?;
        if entry.kind == SourceKind::Dir {
            let fd = open_checked(frame.fd.as_fd(), &name, false, &entry)?;
            let names = list(&fd, &entry.rel)?.into_iter();
            let rel = entry.rel.clone();
            out.push(entry);
            stack.push(Frame { fd, rel, names });
        } else {
            out.push(entry);
        }
    }
    Ok(())
}
