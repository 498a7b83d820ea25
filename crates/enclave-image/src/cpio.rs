//! A deterministic, streaming writer of "newc" (SVR4, no CRC) cpio archives.
//!
//! Every field that a host could leak into the archive is fixed by the caller or by this writer:
//! inode numbers are assigned sequentially from 1 in the order entries are added, device numbers
//! are 0 (except the `rdev` of device nodes), and every entry gets the same mtime. File data is
//! copied through from a reader and never buffered whole.
//!
//! Hard links follow GNU cpio's convention, which the kernel's initramfs unpacker accepts too:
//! every link of a group shares one inode number and carries `nlink` = group size, and only the
//! last link written carries the data (the earlier ones have size 0).

use std::io::{self, Read, Write};

/// Errors from [`CpioWriter`].
#[derive(Debug, thiserror::Error)]
pub enum CpioError {
    /// Writing the archive failed.
    #[error("writing the cpio archive: {0}")]
    Write(#[source] io::Error),
    /// Reading an entry's data failed.
    #[error("reading the data of {path}: {source}")]
    Read {
        /// The entry's path in the archive.
        path: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A reader ended before the announced size.
    #[error("{path}: expected {expected} bytes of data, the reader gave {actual}")]
    ShortRead {
        /// The entry's path in the archive.
        path: String,
        /// The size announced in the header.
        expected: u64,
        /// What the reader gave.
        actual: u64,
    },
    /// The path cannot be stored (empty, absolute, NUL, `..`).
    #[error("invalid cpio path {0:?}")]
    InvalidPath(String),
    /// newc stores sizes and inode numbers in 32 bits.
    #[error("{path}: {what} does not fit the 32-bit newc field")]
    TooLarge {
        /// The entry's path in the archive.
        path: String,
        /// Which field overflowed.
        what: &'static str,
    },
    /// The hard link group was used inconsistently (data given on a link that is not the last).
    #[error("{path}: hard link data must be given on the last link of the group, and only there")]
    HardlinkMisuse {
        /// The entry's path in the archive.
        path: String,
    },
}

/// Owner and permission bits of an entry (file type bits are added by the writer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryMeta {
    /// Permission bits including setuid/setgid/sticky (`0o7777` mask).
    pub mode: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
}

impl EntryMeta {
    /// Root-owned entry with the given permission bits.
    pub fn root(mode: u32) -> Self {
        Self {
            mode,
            uid: 0,
            gid: 0,
        }
    }
}

/// Kind of a special file written by [`CpioWriter::add_device`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// Character device.
    Char,
    /// Block device.
    Block,
    /// Named pipe (major/minor ignored).
    Fifo,
}

const S_IFIFO: u32 = 0o010000;
const S_IFCHR: u32 = 0o020000;
const S_IFDIR: u32 = 0o040000;
const S_IFBLK: u32 = 0o060000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const PERM_MASK: u32 = 0o7777;
const TRAILER: &[u8] = b"TRAILER!!!";

/// A group of hard links sharing one inode, created by [`CpioWriter::hardlink_group`].
#[derive(Debug)]
pub struct HardlinkGroup {
    ino: u32,
    nlink: u32,
    written: u32,
}

impl HardlinkGroup {
    /// True when the next link added to this group is the last one, so it must carry the data.
    pub fn next_is_last(&self) -> bool {
        self.written + 1 == self.nlink
    }
}

/// Header fields that vary between entry kinds.
struct Header<'a> {
    path: &'a [u8],
    ino: u32,
    mode: u32,
    meta: EntryMeta,
    nlink: u32,
    size: u64,
    rdev: (u32, u32),
    trailer: bool,
}

/// Streaming deterministic newc writer. Call [`CpioWriter::finish`] to write the trailer.
pub struct CpioWriter<W: Write> {
    out: W,
    mtime: u32,
    next_ino: u32,
    /// Bytes written so far, to compute the 4-byte padding.
    offset: u64,
}

impl<W: Write> CpioWriter<W> {
    /// A writer that stamps every entry with `mtime` (SOURCE_DATE_EPOCH).
    pub fn new(out: W, mtime: u32) -> Self {
        Self {
            out,
            mtime,
            next_ino: 1,
            offset: 0,
        }
    }

    /// Adds a directory (nlink 2: the kernel and cpio ignore directory link counts).
    pub fn add_dir(&mut self, path: &[u8], meta: EntryMeta) -> Result<(), CpioError> {
        let ino = self.alloc_ino(path)?;
        self.header(&Header::new(path, ino, S_IFDIR, meta, 2, 0))
    }

    /// Adds a regular file of `size` bytes read from `data`.
    pub fn add_file(
        &mut self,
        path: &[u8],
        meta: EntryMeta,
        data: impl Read,
        size: u64,
    ) -> Result<(), CpioError> {
        let ino = self.alloc_ino(path)?;
        self.header(&Header::new(path, ino, S_IFREG, meta, 1, size))?;
        self.data(path, data, size)
    }

    /// Adds a symbolic link pointing at `target`.
    pub fn add_symlink(
        &mut self,
        path: &[u8],
        meta: EntryMeta,
        target: &[u8],
    ) -> Result<(), CpioError> {
        let ino = self.alloc_ino(path)?;
        let size = target.len() as u64;
        self.header(&Header::new(path, ino, S_IFLNK, meta, 1, size))?;
        self.data(path, target, size)
    }

    /// Adds a character/block device or a FIFO.
    pub fn add_device(
        &mut self,
        path: &[u8],
        meta: EntryMeta,
        kind: DeviceKind,
        major: u32,
        minor: u32,
    ) -> Result<(), CpioError> {
        let ino = self.alloc_ino(path)?;
        let (ftype, rdev) = match kind {
            DeviceKind::Char => (S_IFCHR, (major, minor)),
            DeviceKind::Block => (S_IFBLK, (major, minor)),
            DeviceKind::Fifo => (S_IFIFO, (0, 0)),
        };
        let mut header = Header::new(path, ino, ftype, meta, 1, 0);
        header.rdev = rdev;
        self.header(&header)
    }

    /// Reserves an inode for a group of `nlink` hard links to one regular file. Its links are
    /// then added with [`CpioWriter::add_hardlink`], in any order relative to other entries.
    pub fn hardlink_group(&mut self, nlink: u32) -> Result<HardlinkGroup, CpioError> {
        let ino = self.alloc_ino(b"<hard link group>")?;
        Ok(HardlinkGroup {
            ino,
            nlink: nlink.max(1),
            written: 0,
        })
    }

    /// Adds one link of `group`. `data` must be `Some((reader, size))` exactly for the last
    /// link ([`HardlinkGroup::next_is_last`]), `None` for the others.
    pub fn add_hardlink<R: Read>(
        &mut self,
        group: &mut HardlinkGroup,
        path: &[u8],
        meta: EntryMeta,
        data: Option<(R, u64)>,
    ) -> Result<(), CpioError> {
        if group.written >= group.nlink || group.next_is_last() != data.is_some() {
            return Err(CpioError::HardlinkMisuse { path: lossy(path) });
        }
        group.written += 1;
        let size = data.as_ref().map_or(0, |(_, size)| *size);
        let header = Header::new(path, group.ino, S_IFREG, meta, group.nlink, size);
        self.header(&header)?;
        match data {
            Some((reader, size)) => self.data(path, reader, size),
            None => Ok(()),
        }
    }

    /// Writes the `TRAILER!!!` entry and returns the inner writer (flushed).
    pub fn finish(mut self) -> Result<W, CpioError> {
        let mut header = Header::new(TRAILER, 0, 0, EntryMeta::root(0), 1, 0);
        header.trailer = true;
        self.header(&header)?;
        self.out.flush().map_err(CpioError::Write)?;
        Ok(self.out)
    }

    fn alloc_ino(&mut self, path: &[u8]) -> Result<u32, CpioError> {
        let ino = self.next_ino;
        self.next_ino = ino.checked_add(1).ok_or_else(|| CpioError::TooLarge {
            path: lossy(path),
            what: "inode number",
        })?;
        Ok(ino)
    }

    fn header(&mut self, h: &Header<'_>) -> Result<(), CpioError> {
        if !h.trailer {
            validate_path(h.path)?;
        }
        // The trailer carries no meaningful mtime; GNU cpio and gen_init_cpio write 0.
        let mtime = if h.trailer { 0 } else { self.mtime };
        let size = u32::try_from(h.size).map_err(|_| CpioError::TooLarge {
            path: lossy(h.path),
            what: "file size",
        })?;
        let namesize = u32::try_from(h.path.len() + 1).map_err(|_| CpioError::TooLarge {
            path: lossy(h.path),
            what: "name size",
        })?;
        // The device holding the entry is 0 so the archive does not depend on the build host;
        // `check` is only used by the "crc" variant of the format.
        let (dev_major, dev_minor, check) = (0, 0, 0);
        let fields = [
            h.ino, h.mode, h.meta.uid, h.meta.gid, h.nlink, mtime, size, dev_major, dev_minor,
            h.rdev.0, h.rdev.1, namesize, check,
        ];
        let mut buf = Vec::with_capacity(110 + h.path.len() + 4);
        buf.extend_from_slice(b"070701");
        for field in fields {
            buf.extend_from_slice(format!("{field:08X}").as_bytes());
        }
        buf.extend_from_slice(h.path);
        buf.push(0);
        self.write(&buf)?;
        self.pad()
    }

    fn data(&mut self, path: &[u8], data: impl Read, size: u64) -> Result<(), CpioError> {
        let mut limited = data.take(size);
        let mut buf = vec![0u8; 64 * 1024];
        let mut copied = 0u64;
        loop {
            let n = match limited.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(CpioError::Read {
                        path: lossy(path),
                        source,
                    })
                }
            };
            self.write(&buf[..n])?;
            copied += n as u64;
        }
        if copied != size {
            // The header already announced `size`: a shorter archive would be corrupt.
            return Err(CpioError::ShortRead {
                path: lossy(path),
                expected: size,
                actual: copied,
            });
        }
        self.pad()
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), CpioError> {
        self.out.write_all(bytes).map_err(CpioError::Write)?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> Result<(), CpioError> {
        let pad = (4 - (self.offset % 4) as usize) % 4;
        self.write(&[0u8; 3][..pad])
    }
}

impl<'a> Header<'a> {
    fn new(path: &'a [u8], ino: u32, ftype: u32, meta: EntryMeta, nlink: u32, size: u64) -> Self {
        Self {
            path,
            ino,
            mode: ftype | (meta.mode & PERM_MASK),
            meta,
            nlink,
            size,
            rdev: (0, 0),
            trailer: false,
        }
    }
}

fn validate_path(path: &[u8]) -> Result<(), CpioError> {
    // A member named like the trailer would end the archive early for the kernel's unpacker.
    let bad = path.is_empty()
        || path == TRAILER
        || path.starts_with(b"/")
        || path.contains(&0)
        || path.split(|&b| b == b'/').any(|c| c == b"..");
    if bad {
        return Err(CpioError::InvalidPath(lossy(path)));
    }
    Ok(())
}

fn lossy(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_newc_with_padding() {
        let mut w = CpioWriter::new(Vec::new(), 7);
        w.add_file(b"a", EntryMeta::root(0o644), &b"xyz"[..], 3)
            .unwrap();
        let out = w.finish().unwrap();
        assert!(out.starts_with(b"070701"));
        assert_eq!(out.len() % 4, 0);
        // header (110) + "a\0" padded to 112, data 3 padded to 4.
        assert_eq!(&out[112..115], b"xyz");
        assert_eq!(&out[116..122], b"070701");
        assert!(out.windows(10).any(|w| w == TRAILER));
    }

    #[test]
    fn short_reader_is_an_error() {
        let mut w = CpioWriter::new(Vec::new(), 0);
        let err = w.add_file(b"a", EntryMeta::root(0o644), &b"xy"[..], 3);
        assert!(matches!(err, Err(CpioError::ShortRead { .. })));
    }

    #[test]
    fn hardlink_data_only_on_last() {
        let mut w = CpioWriter::new(Vec::new(), 0);
        let mut g = w.hardlink_group(2).unwrap();
        let none: Option<(&[u8], u64)> = None;
        assert!(w
            .add_hardlink(&mut g, b"a", EntryMeta::root(0o644), Some((&b"x"[..], 1)))
            .is_err());
        w.add_hardlink(&mut g, b"a", EntryMeta::root(0o644), none)
            .unwrap();
        assert!(g.next_is_last());
        w.add_hardlink(&mut g, b"b", EntryMeta::root(0o644), Some((&b"x"[..], 1)))
            .unwrap();
    }

    #[test]
    fn rejects_bad_paths() {
        let mut w = CpioWriter::new(Vec::new(), 0);
        for p in [&b""[..], b"/abs", b"a/../b", b"a\0b", TRAILER] {
            assert!(matches!(
                w.add_dir(p, EntryMeta::root(0o755)),
                Err(CpioError::InvalidPath(_))
            ));
        }
    }
}
