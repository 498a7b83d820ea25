//! The deterministic tar writer of `package`: the new layer and the `oci-archive` output.
//!
//! Reproducibility is the point: the same files give the same bytes on any machine, whatever
//! the directory, umask, owner or mtimes of the inputs. Entries are sorted by path and their
//! parent directories added; every header is ustar with uid/gid 0, no user or group names, the
//! given mtime and a fixed mode. The gzip stream has a fixed header (no file name, mtime 0,
//! OS "unknown") and a fixed compression level, so its bytes depend only on the tar and the
//! compressor's version (flate2 is pinned in Cargo.lock).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::{Compression, GzBuilder};
use sha2::{Digest as _, Sha256};

use crate::source::Digest;

/// Mode of the directories the writer adds.
pub const DIR_MODE: u32 = 0o755;
/// The gzip level: fixed, since another level gives other bytes.
const GZIP_LEVEL: u32 = 6;

/// One regular file of a tar: where it goes, where its bytes come from, its mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarFile {
    /// Path in the archive, relative, `/`-separated (`usr/local/bin/enclave-ctl`).
    pub path: String,
    /// The host file holding its content.
    pub source: PathBuf,
    /// Permission bits (`0o755`, `0o644`).
    pub mode: u32,
}

/// The digests of a written layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerDigests {
    /// sha256 of the compressed blob (the manifest's digest).
    pub digest: Digest,
    /// Size of the compressed blob.
    pub size: u64,
    /// sha256 of the uncompressed tar (the config's diff id).
    pub diff_id: Digest,
}

/// Why a tar could not be written.
#[derive(Debug, thiserror::Error)]
pub enum TarError {
    /// A path that is empty, absolute, has `.`/`..` components or does not fit ustar.
    #[error("invalid path {0:?} for an archive entry")]
    InvalidPath(String),
    /// The same path twice.
    #[error("{0:?} is listed twice")]
    Duplicate(String),
    /// A source that is not a regular file.
    #[error("{}: not a regular file", .0.display())]
    NotAFile(PathBuf),
    /// A source whose size changed between its stat and its read.
    #[error("{}: changed while it was being packaged", .0.display())]
    Changed(PathBuf),
    /// Reading a source or writing the archive failed.
    #[error("{}", path.display())]
    Io {
        /// The file read or written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// Writes `files` (plus their parent directories) as a gzip-compressed tar into `out` and returns
/// its digests. `out_path` only names `out` in errors.
pub fn write_layer(
    files: &[TarFile],
    mtime: u64,
    out: impl Write,
    out_path: &Path,
) -> Result<LayerDigests, TarError> {
    let blob = HashWriter::new(out);
    let gz = GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(blob, Compression::new(GZIP_LEVEL));
    let tar = write_tar(files, mtime, HashWriter::new(gz), out_path)?;
    let out_err = |source| TarError::Io {
        path: out_path.to_owned(),
        source,
    };
    let (gz, diff_id, _) = tar.finish();
    let blob: HashWriter<_> = GzEncoder::finish(gz).map_err(out_err)?;
    let (mut out, digest, size) = blob.finish();
    out.flush().map_err(out_err)?;
    Ok(LayerDigests {
        digest,
        size,
        diff_id,
    })
}

/// Writes `files` (plus their parent directories) as a plain tar into `out`; returns `out`.
pub fn write_tar<W: Write>(
    files: &[TarFile],
    mtime: u64,
    out: W,
    out_path: &Path,
) -> Result<W, TarError> {
    let entries = plan(files)?;
    let out_err = |source| TarError::Io {
        path: out_path.to_owned(),
        source,
    };
    let mut builder = tar::Builder::new(out);
    for (path, file) in &entries {
        let mut header = tar::Header::new_ustar();
        header
            .set_path(path)
            .map_err(|_| TarError::InvalidPath(path.clone()))?;
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(mtime);
        match file {
            None => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(DIR_MODE);
                header.set_size(0);
                header.set_cksum();
                builder.append(&header, io::empty()).map_err(out_err)?;
            }
            Some(file) => {
                let io_err = |source| TarError::Io {
                    path: file.source.clone(),
                    source,
                };
                let f = File::open(&file.source).map_err(io_err)?;
                let meta = f.metadata().map_err(io_err)?;
                if !meta.is_file() {
                    return Err(TarError::NotAFile(file.source.clone()));
                }
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(file.mode);
                header.set_size(meta.len());
                header.set_cksum();
                let mut counted = CountingReader {
                    inner: f.take(meta.len()),
                    count: 0,
                };
                builder.append(&header, &mut counted).map_err(out_err)?;
                // Shorter than its stat said (truncated meanwhile): the entry would be corrupt.
                if counted.count != meta.len() {
                    return Err(TarError::Changed(file.source.clone()));
                }
            }
        }
    }
    builder.into_inner().map_err(out_err)
}

/// The archive's entries in order: every file and every parent directory, sorted by path
/// (directories end in `/`), `None` for a directory.
fn plan(files: &[TarFile]) -> Result<BTreeMap<String, Option<&TarFile>>, TarError> {
    let mut entries = BTreeMap::new();
    for file in files {
        let valid = !file.path.is_empty()
            && file
                .path
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != "..");
        if !valid {
            return Err(TarError::InvalidPath(file.path.clone()));
        }
        let mut dir = String::new();
        let components: Vec<&str> = file.path.split('/').collect();
        for component in &components[..components.len() - 1] {
            dir.push_str(component);
            if entries.contains_key(&dir) {
                // A file of that name is listed too.
                return Err(TarError::Duplicate(dir));
            }
            dir.push('/');
            entries.entry(dir.clone()).or_insert(None);
        }
        if entries.insert(file.path.clone(), Some(file)).is_some()
            || entries.contains_key(&format!("{}/", file.path))
        {
            return Err(TarError::Duplicate(file.path.clone()));
        }
    }
    Ok(entries)
}

/// Passes writes through, hashing (sha256) and counting them.
pub(crate) struct HashWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W> HashWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// The inner writer, the digest and the byte count of what went through.
    pub(crate) fn finish(self) -> (W, Digest, u64) {
        let digest = Digest::from_sha256(self.hasher.finalize().into());
        (self.inner, digest, self.count)
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

struct CountingReader<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn file(dir: &Path, name: &str, content: &[u8], host_mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(host_mode)).unwrap();
        path
    }

    fn layer(files: &[TarFile], mtime: u64) -> (Vec<u8>, LayerDigests) {
        let mut out = Vec::new();
        let digests = write_layer(files, mtime, &mut out, Path::new("mem")).unwrap();
        (out, digests)
    }

    fn inputs(dir: &Path, host_mode: u32) -> Vec<TarFile> {
        vec![
            TarFile {
                path: "usr/local/bin/tool".into(),
                source: file(dir, "tool", b"#!/bin/sh\n", host_mode),
                mode: 0o755,
            },
            TarFile {
                path: "enclave/app.eif".into(),
                source: file(dir, "app.eif", &[7u8; 5000], host_mode),
                mode: 0o644,
            },
        ]
    }

    #[test]
    fn same_files_same_bytes_whatever_their_host_metadata() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let (bytes_a, digests_a) = layer(&inputs(a.path(), 0o600), 0);
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
        let files_b = inputs(b.path(), 0o777);
        for f in &files_b {
            File::options()
                .write(true)
                .open(&f.source)
                .unwrap()
                .set_modified(later)
                .unwrap();
        }
        // Listed in another order, with other host modes and mtimes: the same layer.
        let reversed: Vec<TarFile> = files_b.into_iter().rev().collect();
        let (bytes_b, digests_b) = layer(&reversed, 0);
        assert_eq!(bytes_a, bytes_b);
        assert_eq!(digests_a, digests_b);
        assert_eq!(digests_a.digest, Digest::of(&bytes_a));
        assert_eq!(digests_a.size, bytes_a.len() as u64);
        // A fixed gzip header: magic, deflate, no flags, mtime 0, OS unknown.
        assert_eq!(&bytes_a[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
        let (_, other_epoch) = layer(&inputs(a.path(), 0o600), 1_700_000_000);
        assert_ne!(other_epoch.digest, digests_a.digest);
    }

    #[test]
    fn entries_are_sorted_with_parents_root_owned_and_fixed() {
        let dir = tempfile::tempdir().unwrap();
        let (bytes, digests) = layer(&inputs(dir.path(), 0o600), 42);
        let mut tar_bytes = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_end(&mut tar_bytes)
            .unwrap();
        assert_eq!(digests.diff_id, Digest::of(&tar_bytes));
        let mut archive = tar::Archive::new(&tar_bytes[..]);
        let seen: Vec<(String, u32, u64, u64, u64)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    h.gid().unwrap(),
                    h.mtime().unwrap(),
                )
            })
            .collect();
        let names: Vec<&str> = seen.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "enclave/",
                "enclave/app.eif",
                "usr/",
                "usr/local/",
                "usr/local/bin/",
                "usr/local/bin/tool"
            ]
        );
        for (name, mode, uid, gid, mtime) in &seen {
            let want = match name.as_str() {
                "enclave/app.eif" => 0o644,
                _ => 0o755,
            };
            assert_eq!((*mode, *uid, *gid, *mtime), (want, 0, 0, 42), "{name}");
        }
    }

    #[test]
    fn bad_paths_duplicates_and_missing_sources_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let source = file(dir.path(), "f", b"x", 0o644);
        let one = |path: &str| TarFile {
            path: path.into(),
            source: source.clone(),
            mode: 0o644,
        };
        for bad in ["", "/abs", "a/../b", "a//b", "./a", "a/"] {
            let err = write_tar(&[one(bad)], 0, Vec::new(), Path::new("mem")).unwrap_err();
            assert!(matches!(err, TarError::InvalidPath(_)), "{bad}: {err}");
        }
        let err = write_tar(&[one("a"), one("a")], 0, Vec::new(), Path::new("mem")).unwrap_err();
        assert!(matches!(err, TarError::Duplicate(_)), "{err}");
        let err = write_tar(&[one("a"), one("a/b")], 0, Vec::new(), Path::new("mem")).unwrap_err();
        assert!(matches!(err, TarError::Duplicate(_)), "{err}");
        let missing = TarFile {
            path: "x".into(),
            source: dir.path().join("absent"),
            mode: 0o644,
        };
        let err = write_tar(&[missing], 0, Vec::new(), Path::new("mem")).unwrap_err();
        assert!(err.to_string().contains("absent"), "{err}");
    }
}
