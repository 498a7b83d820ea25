//! `dir:` inputs: a host directory walked without following symlinks.
//!
//! Only what the directory *means* is kept: names, types, permission bits, symlink targets,
//! device numbers and hard links. Owners are forced to 0:0 and mtimes dropped, since both are
//! accidents of where and when the directory was made. File contents stay on the host and are
//! read when the cpio is written.

use std::collections::HashMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::path::{check_symlink, MAX_PATH};
use super::{Content, EntryProblem, Kind, Node, RootfsError, RootfsTree, IMPLICIT_DIR};
use crate::cpio::{DeviceKind, EntryMeta};

impl RootfsTree {
    /// Builds a tree from a host directory. The directory's own mode is not used: the root is
    /// 0755 0:0, whatever temporary directory the input happens to live in.
    pub fn from_dir(dir: &Path) -> Result<Self, RootfsError> {
        let mut tree = Self::new();
        let mut hardlinks: HashMap<(u64, u64), usize> = HashMap::new();
        // (host directory, its components in the tree)
        let mut pending: Vec<(PathBuf, Vec<Vec<u8>>)> = vec![(dir.to_owned(), Vec::new())];
        while let Some((host_dir, parts)) = pending.pop() {
            let host_err = |path: &Path| {
                let path = path.to_owned();
                move |source| RootfsError::Host { path, source }
            };
            let mut names = Vec::new();
            for item in fs::read_dir(&host_dir).map_err(host_err(&host_dir))? {
                names.push(item.map_err(host_err(&host_dir))?.file_name());
            }
            names.sort();
            for name in names {
                let path = host_dir.join(&name);
                let meta = fs::symlink_metadata(&path).map_err(host_err(&path))?;
                let refuse = |problem| RootfsError::HostEntry {
                    path: path.clone(),
                    problem,
                };
                let name = name.as_bytes().to_vec();
                let child_len: usize =
                    parts.iter().map(|p| p.len() + 1).sum::<usize>() + name.len();
                if child_len > MAX_PATH {
                    return Err(refuse(EntryProblem::PathTooLong));
                }
                let entry_meta = EntryMeta::root(meta.mode() & 0o7777);
                let file_type = meta.file_type();
                let kind = if file_type.is_dir() {
                    let mut child_parts = parts.clone();
                    child_parts.push(name.clone());
                    pending.push((path.clone(), child_parts));
                    Kind::Dir(Default::default())
                } else if file_type.is_file() {
                    let content = Content::Host {
                        path: path.clone(),
                        len: meta.len(),
                    };
                    let id = if meta.nlink() > 1 {
                        *hardlinks
                            .entry((meta.dev(), meta.ino()))
                            .or_insert_with(|| {
                                tree.inodes.push(content);
                                tree.inodes.len() - 1
                            })
                    } else {
                        tree.inodes.push(content);
                        tree.inodes.len() - 1
                    };
                    Kind::File(id)
                } else if file_type.is_symlink() {
                    let target = fs::read_link(&path).map_err(host_err(&path))?;
                    let target = target.as_os_str().as_bytes().to_vec();
                    check_symlink(parts.len(), &target).map_err(refuse)?;
                    Kind::Symlink(target)
                } else if file_type.is_char_device() || file_type.is_block_device() {
                    let kind = if file_type.is_char_device() {
                        DeviceKind::Char
                    } else {
                        DeviceKind::Block
                    };
                    let (major, minor) = split_rdev(meta.rdev());
                    Kind::Special { kind, major, minor }
                } else if file_type.is_fifo() {
                    Kind::Special {
                        kind: DeviceKind::Fifo,
                        major: 0,
                        minor: 0,
                    }
                } else {
                    // Sockets only exist while a process listens on them: nothing to copy.
                    tracing::warn!(path = %path.display(), "skipping socket");
                    continue;
                };
                tree.dir_mut(&parts)?
                    .insert(name, Node::new(entry_meta, kind, 0));
            }
        }
        Ok(tree)
    }

    /// The children of the existing directory `parts` (created by the walk before its children).
    fn dir_mut(
        &mut self,
        parts: &[Vec<u8>],
    ) -> Result<&mut std::collections::BTreeMap<Vec<u8>, Node>, RootfsError> {
        let out_of_step = || {
            // Unreachable: the walk inserts a directory before visiting it.
            RootfsError::Spool(std::io::Error::other("directory walk out of step"))
        };
        let Kind::Dir(children) = &mut self.root.kind else {
            return Err(out_of_step());
        };
        let mut children = children;
        for part in parts {
            let node = children
                .entry(part.clone())
                .or_insert_with(|| Node::empty_dir(IMPLICIT_DIR, 0));
            let Kind::Dir(next) = &mut node.kind else {
                return Err(out_of_step());
            };
            children = next;
        }
        Ok(children)
    }
}

/// glibc's encoding of `dev_t`: 12-bit major and 20-bit minor split across the 64 bits.
fn split_rdev(rdev: u64) -> (u32, u32) {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    (major as u32, minor as u32)
}

#[cfg(test)]
mod tests {
    #[test]
    fn rdev_split() {
        // /dev/null is 1:3, /dev/sda1 8:1, and a large minor.
        assert_eq!(super::split_rdev(0x103), (1, 3));
        assert_eq!(super::split_rdev(0x801), (8, 1));
        assert_eq!(
            super::split_rdev((0x12345 & 0xff) | ((0x12345 & !0xff) << 12) | (4 << 8)),
            (4, 0x12345)
        );
    }
}
