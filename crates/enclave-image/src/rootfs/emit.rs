//! Walking the tree in cpio order: writing the archive, and listing entries.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;

use super::beneath::HostRoot;
use super::path::lossy;
use super::{Content, InodeId, Kind, Node, RootfsError, RootfsTree};
use crate::cpio::{CpioWriter, DeviceKind, EntryMeta, HardlinkGroup};

/// The type of a [`TreeEntry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// Directory.
    Dir,
    /// Regular file.
    File,
    /// Symbolic link.
    Symlink,
    /// Character device.
    CharDevice,
    /// Block device.
    BlockDevice,
    /// Named pipe.
    Fifo,
}

/// One path of the tree, as listed by [`RootfsTree::entries`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEntry {
    /// Path relative to the root, `/`-separated; empty for the root itself.
    pub path: String,
    /// Entry type.
    pub kind: EntryKind,
    /// Permission bits and owners.
    pub meta: EntryMeta,
    /// File size (regular files) or target length (symlinks).
    pub size: u64,
    /// Symlink target.
    pub link_target: Option<String>,
    /// Regular files: an id shared by the hard links of one file.
    pub inode: Option<usize>,
    /// Device numbers of character and block devices.
    pub device: Option<(u32, u32)>,
}

impl RootfsTree {
    /// Every path of the tree in cpio order (component-wise sorted, parents first), root first.
    pub fn entries(&self) -> Vec<TreeEntry> {
        let mut out = Vec::new();
        walk(&self.root, |path, node| {
            let (kind, size, link_target, inode, device) = match &node.kind {
                Kind::Dir(_) => (EntryKind::Dir, 0, None, None, None),
                Kind::File(id) => {
                    let size = self.inodes.get(*id).map_or(0, Content::len);
                    (EntryKind::File, size, None, Some(*id), None)
                }
                Kind::Symlink(t) => (
                    EntryKind::Symlink,
                    t.len() as u64,
                    Some(lossy(t)),
                    None,
                    None,
                ),
                Kind::Special { kind, major, minor } => match kind {
                    DeviceKind::Char => {
                        (EntryKind::CharDevice, 0, None, None, Some((*major, *minor)))
                    }
                    DeviceKind::Block => (
                        EntryKind::BlockDevice,
                        0,
                        None,
                        None,
                        Some((*major, *minor)),
                    ),
                    DeviceKind::Fifo => (EntryKind::Fifo, 0, None, None, None),
                },
            };
            out.push(TreeEntry {
                path: lossy(path),
                kind,
                meta: node.meta,
                size,
                link_target,
                inode,
                device,
            });
            Ok::<(), RootfsError>(())
        })
        .ok();
        out
    }

    /// Writes every entry under `prefix` (e.g. `rootfs`; empty for the archive root) in
    /// component-wise sorted order, parents first, the prefix directory itself included. The
    /// writer's mtime (SOURCE_DATE_EPOCH) applies to all entries. Hard-linked files share an
    /// inode and carry their data on the last link.
    pub fn write_cpio<W: Write>(
        &self,
        prefix: &str,
        cpio: &mut CpioWriter<W>,
    ) -> Result<(), RootfsError> {
        let prefix = prefix.trim_matches('/').as_bytes();
        let mut links: HashMap<InodeId, u32> = HashMap::new();
        walk(&self.root, |_, node| {
            if let Kind::File(id) = node.kind {
                *links.entry(id).or_default() += 1;
            }
            Ok::<(), RootfsError>(())
        })?;
        let mut groups: HashMap<InodeId, HardlinkGroup> = HashMap::new();
        let mut dirs = DirCache::default();
        walk(&self.root, |rel, node| {
            let path = match (prefix.is_empty(), rel.is_empty()) {
                // Without a prefix the root is the archive root, which has no entry.
                (true, true) => return Ok(()),
                (true, false) => rel.to_vec(),
                (false, true) => prefix.to_vec(),
                (false, false) => [prefix, b"/", rel].concat(),
            };
            match &node.kind {
                Kind::Dir(_) => cpio.add_dir(&path, node.meta)?,
                Kind::Symlink(target) => cpio.add_symlink(&path, node.meta, target)?,
                Kind::Special { kind, major, minor } => {
                    cpio.add_device(&path, node.meta, *kind, *major, *minor)?
                }
                Kind::File(id) => {
                    let content = self.content(*id)?;
                    let nlink = links.get(id).copied().unwrap_or(1);
                    if nlink <= 1 {
                        let reader = self.open_content(content, &mut dirs)?;
                        cpio.add_file(&path, node.meta, reader, content.len())?;
                    } else {
                        let group = match groups.entry(*id) {
                            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                            std::collections::hash_map::Entry::Vacant(e) => {
                                e.insert(cpio.hardlink_group(nlink)?)
                            }
                        };
                        let data = if group.next_is_last() {
                            Some((self.open_content(content, &mut dirs)?, content.len()))
                        } else {
                            None
                        };
                        cpio.add_hardlink(group, &path, node.meta, data)?;
                    }
                }
            }
            Ok(())
        })
    }

    fn content(&self, id: InodeId) -> Result<&Content, RootfsError> {
        self.inodes
            .get(id)
            .ok_or_else(|| RootfsError::Spool(io::Error::other("dangling inode")))
    }

    fn open_content(
        &self,
        content: &Content,
        dirs: &mut DirCache,
    ) -> Result<Box<dyn Read + '_>, RootfsError> {
        match content {
            Content::Spool { offset, len } => {
                let file = self
                    .spool
                    .as_ref()
                    .ok_or_else(|| RootfsError::Spool(io::Error::other("spool missing")))?;
                Ok(Box::new(SpoolReader {
                    file,
                    pos: *offset,
                    end: offset + len,
                }))
            }
            Content::Host { rel, id, len } => {
                let root = self
                    .host_root
                    .as_ref()
                    .ok_or_else(|| RootfsError::Spool(io::Error::other("dir: input not open")))?;
                let (parent, name) = match rel.iter().rposition(|&b| b == b'/') {
                    Some(slash) => (&rel[..slash], &rel[slash + 1..]),
                    None => (&rel[..0], &rel[..]),
                };
                let dir = dirs.open(root, parent)?;
                let file = root.open_walked_file(dir, rel, name, *id, *len)?;
                Ok(Box::new(io::BufReader::new(file)))
            }
        }
    }
}

/// The directory of the last `dir:` file read: files of one directory mostly come in a row in
/// cpio order, so each is opened relative to it instead of from the root.
#[derive(Default)]
struct DirCache {
    rel: Vec<u8>,
    fd: Option<OwnedFd>,
}

impl DirCache {
    /// The directory `parent` of `root`, opened as [`HostRoot::open_dir`] does.
    fn open(&mut self, root: &HostRoot, parent: &[u8]) -> Result<BorrowedFd<'_>, RootfsError> {
        let fd = match self.fd.take() {
            Some(fd) if self.rel == parent => fd,
            _ => {
                let fd = root.open_dir(parent)?;
                self.rel = parent.to_vec();
                fd
            }
        };
        let fd: &OwnedFd = self.fd.insert(fd);
        Ok(fd.as_fd())
    }
}

/// Positional reader over a slice of the spool (so several readers never share a cursor).
struct SpoolReader<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for SpoolReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = usize::try_from(self.end - self.pos).unwrap_or(usize::MAX);
        let want = buf.len().min(left);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Pre-order walk in sorted order without recursion (the tree may be a few thousand levels deep).
fn walk<E>(root: &Node, mut visit: impl FnMut(&[u8], &Node) -> Result<(), E>) -> Result<(), E> {
    let mut stack: Vec<(Vec<u8>, &Node)> = vec![(Vec::new(), root)];
    while let Some((path, node)) = stack.pop() {
        visit(&path, node)?;
        if let Kind::Dir(children) = &node.kind {
            // Reversed, so that the smallest name is popped first.
            for (name, child) in children.iter().rev() {
                let child_path = if path.is_empty() {
                    name.clone()
                } else {
                    [&path[..], b"/", name].concat()
                };
                stack.push((child_path, child));
            }
        }
    }
    Ok(())
}
