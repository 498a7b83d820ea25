//! Walking the roots and hashing one file, without ever following a symbolic link.

use std::fs::{File, FileType, Metadata};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use sha3::{Digest, Sha3_512};

use super::path::{Located, Root, Roots};
use super::{FileError, Limits};

/// Largest ignore file read (a gitignore of a few thousand lines is a few hundred KiB).
const MAX_IGNORE_FILE: u64 = 1 << 20;

/// How far before hashing a change must be for an unchanged [`Stamp`] to prove an unchanged
/// file. Linux timestamps come from a coarse clock (one tick, up to 10 ms), so a write just
/// after hashing can leave size and times as they were; ctime cannot be set by the writer.
const STAMP_MARGIN: Duration = Duration::from_secs(1);

/// The gitignore-style ignore file. Patterns are matched against paths relative to each root,
/// so `/build` means `<root>/build` for every root and `cache/` a directory `cache` anywhere.
#[derive(Debug)]
pub(crate) struct Ignore {
    matcher: Gitignore,
    /// The ignore file as named in the spec (for messages).
    pub file: String,
}

impl Ignore {
    pub fn load(file: Option<&str>) -> Result<Ignore, FileError> {
        let Some(file) = file else {
            return Ok(Ignore {
                matcher: Gitignore::empty(),
                file: "(none)".into(),
            });
        };
        let bad = |m: String| FileError::Spec(format!("ignore_file {file:?}: {m}"));
        let mut text = String::new();
        File::open(file)
            .and_then(|f| f.take(MAX_IGNORE_FILE + 1).read_to_string(&mut text))
            .map_err(|e| bad(e.to_string()))?;
        if text.len() as u64 > MAX_IGNORE_FILE {
            return Err(bad(format!("larger than {MAX_IGNORE_FILE} bytes")));
        }
        // The builder's own root is irrelevant: candidates are always root-relative paths.
        let mut builder = GitignoreBuilder::new("/");
        for line in text.lines() {
            builder
                .add_line(None, line)
                .map_err(|e| bad(e.to_string()))?;
        }
        let matcher = builder.build().map_err(|e| bad(e.to_string()))?;
        Ok(Ignore {
            matcher,
            file: file.to_string(),
        })
    }

    /// Whether `rel` (relative to its root) or one of its parent directories is ignored.
    pub fn is_ignored(&self, rel: &Path, is_dir: bool) -> bool {
        // A relative candidate is what keeps `matched_path_or_any_parents` from asserting.
        rel.is_relative()
            && !rel.as_os_str().is_empty()
            && self
                .matcher
                .matched_path_or_any_parents(rel, is_dir)
                .is_ignore()
    }
}

/// Lists the regular files under `start` (a directory), skipping ignored paths, symbolic
/// links, special files, non-UTF-8 names and names longer than the limit. Errors on more than
/// `limits.max_files` files or `limits.max_dirs` directories; an unreadable subdirectory is
/// logged and skipped (it may have vanished since it was listed).
pub(crate) fn walk<'a>(
    start: &Located<'a>,
    ignore: &Ignore,
    limits: &Limits,
) -> Result<Vec<Located<'a>>, FileError> {
    let root: &'a Root = start.root;
    let mut found = Vec::new();
    let mut dirs = 0usize;
    let mut stack = vec![start.rel.clone()];
    while let Some(rel) = stack.pop() {
        let dir = root.real.join(&rel);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(source) if rel == start.rel => return Err(FileError::Io { path: dir, source }),
            Err(error) => {
                tracing::warn!(dir = %dir.display(), %error, "file attestation: skipping unreadable directory");
                continue;
            }
        };
        for entry in entries {
            let entry = entry.map_err(|source| FileError::Io {
                path: dir.clone(),
                source,
            })?;
            let child = rel.join(entry.file_name());
            let name = root.name.join(&child);
            let Some(name) = name.to_str().filter(|n| n.len() <= limits.max_path_len) else {
                tracing::warn!(path = %entry.path().display(), "file attestation: skipping a path that is not UTF-8 or too long");
                continue;
            };
            // DirEntry::file_type does not follow symbolic links.
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if ignore.is_ignored(&child, kind.is_dir()) {
                continue;
            }
            if kind.is_dir() {
                dirs += 1;
                if dirs > limits.max_dirs {
                    return Err(FileError::TooMany {
                        what: "directories",
                        max: limits.max_dirs,
                    });
                }
                stack.push(child);
            } else if kind.is_file() {
                if found.len() >= limits.max_files {
                    return Err(FileError::TooMany {
                        what: "files",
                        max: limits.max_files,
                    });
                }
                found.push(Located {
                    root,
                    name: name.to_string(),
                    rel: child,
                });
            }
        }
    }
    Ok(found)
}

/// Size, identity and change time of a file: equal stamps taken at least [`STAMP_MARGIN`]
/// after the last change mean the contents were not rewritten in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    pub fn of(meta: &Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// The stamp if it can vouch for the contents hashed from `hashed_at` on, else `None`.
    fn settled(self, hashed_at: SystemTime) -> Option<Stamp> {
        let changed = SystemTime::UNIX_EPOCH.checked_add(Duration::new(
            u64::try_from(self.ctime.0).ok()?,
            u32::try_from(self.ctime.1).ok()?,
        ))?;
        (changed + STAMP_MARGIN < hashed_at).then_some(self)
    }
}

/// Checks that `loc` names a regular file reached through plain directories only, and says
/// precisely what it is otherwise (missing, a directory, a link out of the roots, ...).
pub(crate) fn inspect(loc: &Located<'_>, roots: &Roots) -> Result<Metadata, FileError> {
    let mut cur = loc.root.real.clone();
    let mut parts = loc.rel.components().peekable();
    let not_found = || FileError::NotFound {
        path: loc.name.clone(),
    };
    let not_regular = |kind| FileError::NotRegularFile {
        path: loc.name.clone(),
        kind,
    };
    if parts.peek().is_none() {
        return Err(not_regular("directory"));
    }
    while let Some(part) = parts.next() {
        cur.push(part);
        let meta = match std::fs::symlink_metadata(&cur) {
            Ok(meta) => meta,
            Err(e) if is_missing(&e) => return Err(not_found()),
            Err(source) => return Err(FileError::Io { path: cur, source }),
        };
        let kind = meta.file_type();
        if kind.is_symlink() {
            let escapes = match std::fs::canonicalize(loc.real()) {
                Ok(target) => !roots.contains_real(&target),
                // A dangling link: whatever it names is not attested; say so without
                // revealing where it points.
                Err(_) => false,
            };
            return Err(if escapes {
                FileError::OutsideRoots {
                    path: loc.name.clone(),
                    reason: "a symbolic link on the way leads out of the roots",
                    roots: roots.describe(),
                }
            } else {
                not_regular("symbolic link")
            });
        }
        match parts.peek() {
            Some(_) if kind.is_dir() => {}
            Some(_) => return Err(not_found()),
            None if kind.is_file() => return Ok(meta),
            None => return Err(not_regular(kind_name(kind))),
        }
    }
    Err(not_found())
}

fn kind_name(kind: FileType) -> &'static str {
    if kind.is_dir() {
        "directory"
    } else if kind.is_symlink() {
        "symbolic link"
    } else {
        "special file"
    }
}

fn is_missing(e: &std::io::Error) -> bool {
    // NotADirectory: a path component that used to be a directory is now a file.
    matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory)
}

/// A file's SHA3-512 and, when it can vouch for it, its stamp.
pub(crate) struct Hashed {
    pub hash: [u8; 64],
    pub stamp: Option<Stamp>,
}

/// Hashes the file `loc` names, refusing anything but a regular file reached without links.
///
/// The checks bracket the open so that swapping the file or a directory on its path for a
/// link between check and open is caught: the opened file must be the one inspected (same
/// device and inode), and the kernel's name for the open descriptor must be the expected path.
pub(crate) fn hash_file(loc: &Located<'_>, roots: &Roots) -> Result<Hashed, FileError> {
    let before = inspect(loc, roots)?;
    let real = loc.real();
    let hashed_at = SystemTime::now();
    let io = |source: std::io::Error| {
        if is_missing(&source) {
            FileError::NotFound {
                path: loc.name.clone(),
            }
        } else {
            FileError::Io {
                path: real.clone(),
                source,
            }
        }
    };
    let mut file = File::open(&real).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    let swapped = || FileError::NotRegularFile {
        path: loc.name.clone(),
        kind: "file replaced while being opened",
    };
    if !meta.is_file() || meta.dev() != before.dev() || meta.ino() != before.ino() {
        return Err(swapped());
    }
    if !opened_at(&file, &real) {
        return Err(swapped());
    }
    let mut hasher = Sha3_512::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(io(e)),
        }
    }
    Ok(Hashed {
        hash: hasher.finalize().into(),
        stamp: Stamp::of(&meta).settled(hashed_at),
    })
}

/// Whether the open `file` is reached by `expected` with no link on the way: the kernel's
/// name for the descriptor (`/proc/self/fd`) when procfs is mounted, else the resolved path.
fn opened_at(file: &File, expected: &Path) -> bool {
    use std::os::fd::AsRawFd;
    let by_fd = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()));
    match by_fd {
        Ok(name) => name == expected,
        Err(_) => std::fs::canonicalize(expected).is_ok_and(|p| p == expected),
    }
}

/// The stamp a file has now, to compare with a stored one without opening it.
pub(crate) fn stamp_now(real: &Path) -> Option<Stamp> {
    std::fs::symlink_metadata(real)
        .ok()
        .filter(|m| m.is_file())
        .map(|m| Stamp::of(&m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignore_patterns_are_relative_to_each_root() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ignore");
        std::fs::write(&file, "*.tmp\n!keep.tmp\ncache/\n/build\n").unwrap();
        let ignore = Ignore::load(file.to_str()).unwrap();
        let ignored = |rel: &str, is_dir| ignore.is_ignored(Path::new(rel), is_dir);
        assert!(ignored("a.tmp", false));
        assert!(ignored("x/y/a.tmp", false));
        assert!(!ignored("keep.tmp", false));
        assert!(ignored("cache", true));
        assert!(!ignored("cache", false), "cache/ matches directories only");
        assert!(ignored("x/cache/f", false));
        assert!(ignored("build", false));
        assert!(!ignored("x/build", false), "/build is anchored at the root");
        assert!(!ignored("", true), "a root is never ignored");
        assert!(!ignored("/abs", false));
        assert!(!Ignore::load(None)
            .unwrap()
            .is_ignored(Path::new("a.tmp"), false));
    }
}
