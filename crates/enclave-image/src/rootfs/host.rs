//! `dir:` inputs: a host directory walked without following symlinks.
//!
//! Only what the directory *means* is kept: names, types, permission bits, symlink targets,
//! device numbers and hard links. Owners are forced to 0:0 and mtimes dropped, since both are
//! accidents of where and when the directory was made. File contents stay on the host and are
//! read when the cpio is written, through `beneath`, which makes sure they are the files walked.
//! The walk itself lists each directory through a descriptor opened the same way, so a
//! directory swapped for a symlink is not followed either.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, Dir, FileType};
use rustix::io::Errno;

use super::beneath::{host_error, HostRoot, Identity};
use super::limits::LimitExceeded;
use super::path::{check_symlink, MAX_PATH};
use super::{
    Content, EntryProblem, HostChange, Kind, Limits, Node, RootfsError, RootfsTree, IMPLICIT_DIR,
};
use crate::cpio::{DeviceKind, EntryMeta};

impl RootfsTree {
    /// Builds a tree from a host directory, held to `limits` (entries, and the regular files'
    /// bytes against [`Limits::rootfs_bytes`]). The directory's own mode is not used: the root
    /// is 0755 0:0, whatever temporary directory the input happens to live in. The directory
    /// stays open in the tree: [`RootfsTree::write_cpio`] reads the files through it.
    pub fn from_dir(dir: &Path, limits: Limits) -> Result<Self, RootfsError> {
        let mut tree = Self::with_limits(limits);
        let root = HostRoot::open(dir)?;
        let over = |limit| RootfsError::Limit {
            input: format!("dir:{}", dir.display()),
            limit,
        };
        let mut hardlinks: HashMap<Identity, usize> = HashMap::new();
        // (directory below the root, components joined by `/`; what the walk saw there)
        let mut pending: Vec<(Vec<u8>, Option<Identity>)> = vec![(Vec::new(), None)];
        while let Some((rel_dir, identity)) = pending.pop() {
            let parts: Vec<Vec<u8>> = rel_dir
                .split(|&b| b == b'/')
                .filter(|p| !p.is_empty())
                .map(<[u8]>::to_vec)
                .collect();
            let fd = match identity {
                Some(identity) => root.open_walked_dir(&rel_dir, identity)?,
                None => root.open_dir(&rel_dir)?,
            };
            let list_err = |e| host_error(&root.display(&rel_dir), e);
            let mut names = Vec::new();
            for item in Dir::read_from(&fd).map_err(list_err)? {
                let name = item.map_err(list_err)?.file_name().to_bytes().to_vec();
                if name == b"." || name == b".." {
                    continue;
                }
                // Counted as listed, so that a huge directory is refused before it is held.
                tree.entries += 1;
                if tree.entries > limits.entries {
                    return Err(over(LimitExceeded::Entries {
                        limit: limits.entries,
                    }));
                }
                names.push(name);
            }
            names.sort();
            for name in names {
                let rel = if rel_dir.is_empty() {
                    name.clone()
                } else {
                    [&rel_dir[..], b"/", &name].concat()
                };
                let os_name = OsStr::from_bytes(&name);
                let stat = rustix::fs::statat(&fd, os_name, AtFlags::SYMLINK_NOFOLLOW).map_err(
                    |e| match e {
                        Errno::NOENT => root.changed(&rel, HostChange::Gone),
                        e => host_error(&root.display(&rel), e),
                    },
                )?;
                let refuse = |problem| RootfsError::HostEntry {
                    path: root.display(&rel),
                    problem,
                };
                if rel.len() > MAX_PATH {
                    return Err(refuse(EntryProblem::PathTooLong));
                }
                let entry_meta = EntryMeta::root(stat.st_mode & 0o7777);
                let identity = Identity::of(&stat);
                let kind = match FileType::from_raw_mode(stat.st_mode) {
                    FileType::Directory => {
                        pending.push((rel, Some(identity)));
                        Kind::Dir(Default::default())
                    }
                    FileType::RegularFile => {
                        let len = u64::try_from(stat.st_size).unwrap_or(0);
                        let known = (stat.st_nlink > 1)
                            .then(|| hardlinks.get(&identity).copied())
                            .flatten();
                        let id = match known {
                            Some(id) => id,
                            None => {
                                tree.bytes = tree.bytes.saturating_add(len);
                                if tree.bytes > limits.rootfs_bytes {
                                    return Err(over(LimitExceeded::RootfsBytes {
                                        limit: limits.rootfs_bytes,
                                    }));
                                }
                                tree.inodes.push(Content::Host {
                                    rel,
                                    id: identity,
                                    len,
                                });
                                let id = tree.inodes.len() - 1;
                                if stat.st_nlink > 1 {
                                    hardlinks.insert(identity, id);
                                }
                                id
                            }
                        };
                        Kind::File(id)
                    }
                    FileType::Symlink => {
                        let target = rustix::fs::readlinkat(&fd, os_name, Vec::new())
                            .map_err(|e| match e {
                                // No longer a symlink, or gone.
                                Errno::INVAL => root.changed(&rel, HostChange::Replaced),
                                Errno::NOENT => root.changed(&rel, HostChange::Gone),
                                e => host_error(&root.display(&rel), e),
                            })?
                            .into_bytes();
                        check_symlink(parts.len(), &target).map_err(refuse)?;
                        Kind::Symlink(target)
                    }
                    file_type @ (FileType::CharacterDevice | FileType::BlockDevice) => {
                        let kind = if file_type == FileType::CharacterDevice {
                            DeviceKind::Char
                        } else {
                            DeviceKind::Block
                        };
                        let (major, minor) = split_rdev(stat.st_rdev);
                        Kind::Special { kind, major, minor }
                    }
                    FileType::Fifo => Kind::Special {
                        kind: DeviceKind::Fifo,
                        major: 0,
                        minor: 0,
                    },
                    _ => {
                        // Sockets only exist while a process listens on them: nothing to copy.
                        tracing::warn!(path = %root.display(&rel).display(), "skipping socket");
                        continue;
                    }
                };
                tree.dir_mut(&parts)?
                    .insert(name, Node::new(entry_meta, kind, 0));
            }
        }
        tree.host_root = Some(root);
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
