//! Where an image's files live: a directory, or an uncompressed tar read in place.
//!
//! A tar archive is scanned once to index its members (offset and size of each regular file);
//! members are then read by seeking into the archive, so nothing is extracted to disk. Paths
//! come from the image, so they are normalised lexically and never used to open a host file
//! outside the directory or archive.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::SourceError;

/// Cap on JSON documents (index, manifest, config): large enough for configs with long
/// histories, small enough that a hostile archive cannot make us allocate much.
pub(crate) const MAX_JSON: u64 = 16 * 1024 * 1024;

/// Symlinks followed when resolving an archive member (docker save links duplicate layers).
const MAX_LINK_HOPS: usize = 8;

/// A blob reader handed out by a store.
pub(crate) type BlobReader = Box<dyn Read + Send>;

#[derive(Debug)]
pub(crate) enum BlobStore {
    Dir(PathBuf),
    Tar(TarIndex),
}

#[derive(Debug)]
pub(crate) struct TarIndex {
    archive: PathBuf,
    members: HashMap<String, Member>,
}

#[derive(Debug)]
enum Member {
    File {
        offset: u64,
        size: u64,
    },
    /// A symlink or hard link, already resolved to an archive path.
    Link(String),
    /// Directories and other members we never read.
    Other,
}

impl BlobStore {
    pub(crate) fn dir(dir: &Path) -> Result<Self, SourceError> {
        let meta = std::fs::metadata(dir).map_err(|e| SourceError::io(dir, e))?;
        if !meta.is_dir() {
            return Err(SourceError::NotADirectory(dir.to_owned()));
        }
        Ok(Self::Dir(dir.to_owned()))
    }

    pub(crate) fn tar(archive: &Path) -> Result<Self, SourceError> {
        let mut file = File::open(archive).map_err(|e| SourceError::io(archive, e))?;
        let mut magic = [0u8; 4];
        let n = read_up_to(&mut file, &mut magic).map_err(|e| SourceError::io(archive, e))?;
        let compression = match &magic[..n] {
            [0x1f, 0x8b, ..] => Some("gzip"),
            [0x28, 0xb5, 0x2f, 0xfd] => Some("zstd"),
            _ => None,
        };
        if let Some(compression) = compression {
            return Err(SourceError::CompressedArchive {
                archive: archive.to_owned(),
                compression,
            });
        }
        file.rewind().map_err(|e| SourceError::io(archive, e))?;
        let members = index_tar(file).map_err(|source| SourceError::Archive {
            archive: archive.to_owned(),
            source,
        })?;
        Ok(Self::Tar(TarIndex {
            archive: archive.to_owned(),
            members,
        }))
    }

    /// Opens the file at `path` (relative, `/`-separated) for streaming.
    pub(crate) fn open(&self, path: &str) -> Result<BlobReader, SourceError> {
        let rel = normalize(path).ok_or_else(|| SourceError::UnsafePath(path.to_owned()))?;
        match self {
            Self::Dir(dir) => {
                let host = dir.join(&rel);
                match File::open(&host) {
                    Ok(f) => Ok(Box::new(BufReader::new(f))),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Err(SourceError::Missing(rel)),
                    Err(e) => Err(SourceError::io(&host, e)),
                }
            }
            Self::Tar(index) => index.open(&rel),
        }
    }

    /// Reads the whole file at `path`, refusing more than `limit` bytes.
    pub(crate) fn read_capped(&self, path: &str, limit: u64) -> Result<Vec<u8>, SourceError> {
        let reader = self.open(path)?;
        let mut buf = Vec::new();
        reader
            .take(limit + 1)
            .read_to_end(&mut buf)
            .map_err(|e| SourceError::io(Path::new(path), e))?;
        if buf.len() as u64 > limit {
            return Err(SourceError::TooLarge {
                what: path.to_owned(),
                limit,
            });
        }
        Ok(buf)
    }

    /// Whether `path` exists in the store.
    pub(crate) fn contains(&self, path: &str) -> bool {
        match (self, normalize(path)) {
            (Self::Dir(dir), Some(rel)) => dir.join(rel).is_file(),
            (Self::Tar(index), Some(rel)) => index.resolve(&rel).is_some(),
            (_, None) => false,
        }
    }
}

impl TarIndex {
    fn resolve(&self, path: &str) -> Option<(u64, u64)> {
        let mut path = path.to_owned();
        for _ in 0..=MAX_LINK_HOPS {
            match self.members.get(&path)? {
                Member::File { offset, size } => return Some((*offset, *size)),
                Member::Link(target) => path = target.clone(),
                Member::Other => return None,
            }
        }
        None
    }

    fn open(&self, path: &str) -> Result<BlobReader, SourceError> {
        let (offset, size) = self
            .resolve(path)
            .ok_or_else(|| SourceError::Missing(path.to_owned()))?;
        let io_err = |e| SourceError::io(&self.archive, e);
        let mut file = File::open(&self.archive).map_err(io_err)?;
        file.seek(SeekFrom::Start(offset)).map_err(io_err)?;
        Ok(Box::new(BufReader::new(file).take(size)))
    }
}

/// Scans a tar archive and records where each member's data starts.
fn index_tar(file: File) -> io::Result<HashMap<String, Member>> {
    let mut archive = tar::Archive::new(BufReader::new(file));
    let mut members = HashMap::new();
    for entry in archive.entries()? {
        let entry = entry?;
        let raw = entry.path_bytes();
        let Some(path) = std::str::from_utf8(&raw).ok().and_then(normalize) else {
            // A member we could never be asked for (non-UTF-8 or escaping): ignore it.
            continue;
        };
        let header = entry.header();
        let member = match header.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => Member::File {
                offset: entry.raw_file_position(),
                size: entry.size(),
            },
            tar::EntryType::Symlink => match link_target(&entry, &path, true) {
                Some(target) => Member::Link(target),
                None => continue,
            },
            tar::EntryType::Link => match link_target(&entry, &path, false) {
                Some(target) => Member::Link(target),
                None => continue,
            },
            _ => Member::Other,
        };
        members.insert(path, member);
    }
    Ok(members)
}

/// A link member's target as an archive path: symlinks are relative to their own directory,
/// hard links to the archive root.
fn link_target<R: Read>(entry: &tar::Entry<'_, R>, path: &str, symlink: bool) -> Option<String> {
    let raw = entry.link_name_bytes()?;
    let target = std::str::from_utf8(&raw).ok()?;
    if !symlink || target.starts_with('/') {
        return normalize(target);
    }
    let dir = path.rsplit_once('/').map_or("", |(dir, _)| dir);
    normalize(&format!("{dir}/{target}"))
}

/// Lexically normalises a relative archive path (`./a//b/../c` → `a/c`); `None` if it is empty,
/// absolute or climbs above the root.
pub(crate) fn normalize(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    if path.starts_with('/') {
        // Docker save writes relative paths; an absolute one cannot name a member we look up.
        return None;
    }
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            part => parts.push(part),
        }
    }
    if parts.is_empty() {
        return None;
    }
    Some(parts.join("/"))
}

/// Reads until `buf` is full or the reader ends.
fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn normalize_paths() {
        assert_eq!(normalize("./a//b/../c").as_deref(), Some("a/c"));
        assert_eq!(normalize("a/../../b"), None);
        assert_eq!(normalize("/etc/x"), None);
        assert_eq!(normalize("."), None);
    }
}
