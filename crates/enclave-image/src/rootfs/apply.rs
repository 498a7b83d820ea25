//! Applying a layer tar to the tree.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};

use tar::EntryType;

use super::path::{check_symlink, join, lossy, split};
use super::{Content, EntryProblem, Kind, Node, RootfsError, RootfsTree, IMPLICIT_DIR};
use crate::cpio::{DeviceKind, EntryMeta};

const WHITEOUT: &[u8] = b".wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";

/// The error context of the entry being applied.
struct Ctx<'a> {
    layer: &'a str,
    entry: &'a [u8],
}

impl Ctx<'_> {
    fn refuse(&self, problem: EntryProblem) -> RootfsError {
        RootfsError::Entry {
            layer: self.layer.to_owned(),
            entry: lossy(self.entry),
            problem,
        }
    }
}

impl RootfsTree {
    /// Applies one layer (an uncompressed tar stream) on top of the tree. `layer` names it in
    /// errors (normally its digest). The reader is drained to its end so that a compressed
    /// stream's trailer and checksum are checked.
    pub fn apply_layer(&mut self, layer: &str, reader: impl Read) -> Result<(), RootfsError> {
        let corrupt = |source| RootfsError::Corrupt {
            layer: layer.to_owned(),
            source,
        };
        self.layers += 1;
        let mut archive = tar::Archive::new(reader);
        for entry in archive.entries().map_err(corrupt)? {
            let mut entry = entry.map_err(corrupt)?;
            let path = entry.path_bytes().into_owned();
            let ctx = Ctx {
                layer,
                entry: &path,
            };
            self.apply_entry(&ctx, &mut entry)?;
        }
        io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(corrupt)?;
        Ok(())
    }

    fn apply_entry<R: Read>(
        &mut self,
        ctx: &Ctx<'_>,
        entry: &mut tar::Entry<'_, R>,
    ) -> Result<(), RootfsError> {
        let entry_type = entry.header().entry_type();
        // Extension headers are consumed by the tar crate; a global one carries nothing we keep.
        if matches!(entry_type, EntryType::XGlobalHeader | EntryType::XHeader) {
            return Ok(());
        }
        let parts = split(ctx.entry).map_err(|p| ctx.refuse(p))?;
        let Some((&name, parent)) = parts.split_last() else {
            return self.set_root(ctx, entry);
        };
        if name.starts_with(WHITEOUT) {
            return self.whiteout(ctx, parent, name);
        }
        let meta = header_meta(entry.header()).map_err(|p| ctx.refuse(p))?;
        let layer = self.layers;
        let kind = match entry_type {
            EntryType::Directory => {
                let dir = self.walk_create(ctx, parent)?;
                match dir.get_mut(name) {
                    // An existing directory keeps its children: layers merge directories.
                    Some(
                        node @ Node {
                            kind: Kind::Dir(_), ..
                        },
                    ) => {
                        node.meta = meta;
                        node.layer = layer;
                        node.touched = layer;
                    }
                    _ => {
                        dir.insert(name.to_vec(), Node::empty_dir(meta, layer));
                    }
                }
                return Ok(());
            }
            EntryType::Regular | EntryType::Continuous => {
                let content = self.spool(ctx, entry)?;
                self.inodes.push(content);
                Kind::File(self.inodes.len() - 1)
            }
            EntryType::Symlink => {
                let target = entry.link_name_bytes().unwrap_or_default().into_owned();
                check_symlink(parent.len(), &target).map_err(|p| ctx.refuse(p))?;
                Kind::Symlink(target)
            }
            EntryType::Link => {
                let target = entry.link_name_bytes().unwrap_or_default().into_owned();
                let node = self.hardlink_target(ctx, &target)?;
                let node = Node::new(node.meta, node.kind, layer);
                self.walk_create(ctx, parent)?.insert(name.to_vec(), node);
                return Ok(());
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let header = entry.header();
                let number = |n: io::Result<Option<u32>>| n.ok().flatten().unwrap_or(0);
                let kind = match entry_type {
                    EntryType::Char => DeviceKind::Char,
                    EntryType::Block => DeviceKind::Block,
                    _ => DeviceKind::Fifo,
                };
                Kind::Special {
                    kind,
                    major: number(header.device_major()),
                    minor: number(header.device_minor()),
                }
            }
            other => {
                return Err(ctx.refuse(EntryProblem::UnsupportedType(format!("{other:?}"))));
            }
        };
        let node = Node::new(meta, kind, layer);
        self.walk_create(ctx, parent)?.insert(name.to_vec(), node);
        Ok(())
    }

    /// `./` entries set the root directory's metadata.
    fn set_root<R: Read>(
        &mut self,
        ctx: &Ctx<'_>,
        entry: &tar::Entry<'_, R>,
    ) -> Result<(), RootfsError> {
        if entry.header().entry_type() != EntryType::Directory {
            return Err(ctx.refuse(EntryProblem::RootNotDirectory));
        }
        self.root.meta = header_meta(entry.header()).map_err(|p| ctx.refuse(p))?;
        Ok(())
    }

    /// Applies `.wh.<name>` or `.wh..wh..opq` in the directory `parent`. Both affect only what
    /// lower layers put there (OCI image spec, "Whiteouts").
    fn whiteout(
        &mut self,
        ctx: &Ctx<'_>,
        parent: &[&[u8]],
        name: &[u8],
    ) -> Result<(), RootfsError> {
        let layer = self.layers;
        let dir = self.walk_create(ctx, parent)?;
        if name == OPAQUE {
            prune_lower(dir, layer);
            return Ok(());
        }
        if name.starts_with(b".wh..wh.") {
            // Other aufs metadata (`.wh..wh.plnk`, ...): meaningless here.
            return Ok(());
        }
        let hidden = &name[WHITEOUT.len()..];
        if hidden.is_empty() || hidden == b"." || hidden == b".." || hidden.contains(&b'/') {
            return Err(ctx.refuse(EntryProblem::InvalidWhiteout));
        }
        if dir.get(hidden).is_some_and(|n| n.layer < layer) {
            dir.remove(hidden);
        }
        Ok(())
    }

    /// Walks to the directory `parts`, creating missing directories (0755, 0:0), and refusing
    /// to go through symlinks or non-directories.
    fn walk_create(
        &mut self,
        ctx: &Ctx<'_>,
        parts: &[&[u8]],
    ) -> Result<&mut BTreeMap<Vec<u8>, Node>, RootfsError> {
        let layer = self.layers;
        let mut node = &mut self.root;
        for (i, &part) in parts.iter().enumerate() {
            node.touched = layer;
            let Kind::Dir(children) = &mut node.kind else {
                return Err(ctx.refuse(EntryProblem::ParentNotDirectory(join(&parts[..i]))));
            };
            node = children
                .entry(part.to_vec())
                .or_insert_with(|| Node::empty_dir(IMPLICIT_DIR, layer));
            match node.kind {
                Kind::Dir(_) => {}
                Kind::Symlink(_) => {
                    return Err(ctx.refuse(EntryProblem::ThroughSymlink(join(&parts[..=i]))))
                }
                _ => return Err(ctx.refuse(EntryProblem::ParentNotDirectory(join(&parts[..=i])))),
            }
        }
        node.touched = layer;
        match &mut node.kind {
            Kind::Dir(children) => Ok(children),
            // Unreachable: every step above checked for a directory.
            _ => Err(ctx.refuse(EntryProblem::ParentNotDirectory(join(parts)))),
        }
    }

    /// The node a hard link points at: an existing non-directory, reached without symlinks.
    fn hardlink_target(&self, ctx: &Ctx<'_>, target: &[u8]) -> Result<Node, RootfsError> {
        let escapes = || ctx.refuse(EntryProblem::HardlinkEscapes(lossy(target)));
        let parts = split(target).map_err(|_| escapes())?;
        let mut node = &self.root;
        for &part in &parts {
            let Kind::Dir(children) = &node.kind else {
                return Err(escapes());
            };
            node = children
                .get(part)
                .ok_or_else(|| ctx.refuse(EntryProblem::HardlinkMissing(lossy(target))))?;
        }
        match node.kind {
            Kind::Dir(_) => Err(escapes()),
            _ => Ok(node.clone()),
        }
    }

    /// Appends the entry's data to the spool file.
    fn spool<R: Read>(
        &mut self,
        ctx: &Ctx<'_>,
        entry: &mut tar::Entry<'_, R>,
    ) -> Result<Content, RootfsError> {
        let size = entry.size();
        let offset = self.spool_len;
        if self.spool.is_none() {
            self.spool = Some(tempfile::tempfile().map_err(RootfsError::Spool)?);
        }
        let Some(spool) = self.spool.as_mut() else {
            return Err(RootfsError::Spool(io::Error::other("spool missing")));
        };
        let mut buf = vec![0u8; 64 * 1024];
        let mut copied = 0u64;
        loop {
            let n = match entry.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(RootfsError::Corrupt {
                        layer: ctx.layer.to_owned(),
                        source,
                    })
                }
            };
            spool.write_all(&buf[..n]).map_err(RootfsError::Spool)?;
            copied += n as u64;
        }
        self.spool_len += copied;
        if copied != size {
            return Err(RootfsError::Corrupt {
                layer: ctx.layer.to_owned(),
                source: io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("entry {:?} truncated", lossy(ctx.entry)),
                ),
            });
        }
        Ok(Content::Spool { offset, len: size })
    }
}

/// Drops what lower layers put below an opaque directory, keeping this layer's entries (and the
/// directories leading to them).
fn prune_lower(children: &mut BTreeMap<Vec<u8>, Node>, layer: u32) {
    children.retain(|_, node| match &mut node.kind {
        Kind::Dir(grandchildren) => {
            prune_lower(grandchildren, layer);
            node.layer == layer || node.touched == layer
        }
        _ => node.layer == layer,
    });
}

/// Permission bits and owners from a tar header (mtimes are dropped on purpose).
fn header_meta(header: &tar::Header) -> Result<EntryMeta, EntryProblem> {
    let id = |n: io::Result<u64>, what| {
        n.ok()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or(EntryProblem::InvalidNumber(what))
    };
    Ok(EntryMeta {
        mode: header
            .mode()
            .map_err(|_| EntryProblem::InvalidNumber("mode"))?
            & 0o7777,
        uid: id(header.uid(), "uid")?,
        gid: id(header.gid(), "gid")?,
    })
}
