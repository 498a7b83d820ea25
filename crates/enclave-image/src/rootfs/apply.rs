//! Applying a layer tar to the tree, within the tree's limits.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};

use tar::EntryType;

use super::extensions::{Described, ExtensionError, Extensions};
use super::limits::{LimitExceeded, Metered};
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
    /// stream's trailer and checksum are checked. What the layer may hold is capped by the
    /// tree's [`Limits`](super::Limits): going over one is a [`RootfsError::Limit`].
    pub fn apply_layer(&mut self, layer: &str, reader: impl Read) -> Result<(), RootfsError> {
        self.layers += 1;
        let mut metered = Metered::layer(reader, &self.limits, self.bytes);
        let result = self.apply_entries(layer, &mut metered);
        self.bytes += metered.read;
        // Once the meter trips, whatever error the tar reader made of it is the cap's.
        match metered.tripped {
            Some(limit) => Err(RootfsError::Limit {
                input: format!("layer {layer}"),
                limit,
            }),
            None => result,
        }
    }

    fn apply_entries(&mut self, layer: &str, reader: impl Read) -> Result<(), RootfsError> {
        let corrupt = |source| RootfsError::Corrupt {
            layer: layer.to_owned(),
            source,
        };
        let mut archive = tar::Archive::new(reader);
        let mut extensions = Extensions::default();
        // Raw: extension headers come to us as entries, see `extensions`.
        for entry in archive.entries().map_err(corrupt)?.raw(true) {
            let mut entry = entry.map_err(corrupt)?;
            let header_path = entry.path_bytes().into_owned();
            let ctx = Ctx {
                layer,
                entry: &header_path,
            };
            match extensions.take_header(&mut entry) {
                Ok(true) => continue,
                Ok(false) => {}
                Err(ExtensionError::TooLarge(limit)) => {
                    return Err(RootfsError::Limit {
                        input: format!("layer {layer}"),
                        limit,
                    })
                }
                Err(ExtensionError::Duplicate(kind)) => {
                    return Err(ctx.refuse(EntryProblem::DuplicateExtension(kind)))
                }
                Err(ExtensionError::Read(source)) => return Err(corrupt(source)),
            }
            self.entries += 1;
            if self.entries > self.limits.entries {
                return Err(RootfsError::Limit {
                    input: format!("layer {layer}"),
                    limit: LimitExceeded::Entries {
                        limit: self.limits.entries,
                    },
                });
            }
            let described = extensions.describe(&entry).map_err(|p| ctx.refuse(p))?;
            let ctx = Ctx {
                layer,
                entry: &described.path,
            };
            self.apply_entry(&ctx, &described, &mut entry)?;
        }
        if extensions.pending() {
            return Err(corrupt(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "extension headers with no entry after them",
            )));
        }
        io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(corrupt)?;
        Ok(())
    }

    fn apply_entry<R: Read>(
        &mut self,
        ctx: &Ctx<'_>,
        described: &Described,
        entry: &mut tar::Entry<'_, R>,
    ) -> Result<(), RootfsError> {
        let entry_type = entry.header().entry_type();
        let parts = split(ctx.entry).map_err(|p| ctx.refuse(p))?;
        let Some((&name, parent)) = parts.split_last() else {
            return self.set_root(ctx, described, entry);
        };
        if name.starts_with(WHITEOUT) {
            return self.whiteout(ctx, parent, name);
        }
        let meta = entry_meta(entry.header(), described).map_err(|p| ctx.refuse(p))?;
        let layer = self.layers;
        let link_target = || described.link.clone().unwrap_or_default();
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
                let target = link_target();
                check_symlink(parent.len(), &target).map_err(|p| ctx.refuse(p))?;
                Kind::Symlink(target)
            }
            EntryType::Link => {
                let target = link_target();
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
        described: &Described,
        entry: &tar::Entry<'_, R>,
    ) -> Result<(), RootfsError> {
        if entry.header().entry_type() != EntryType::Directory {
            return Err(ctx.refuse(EntryProblem::RootNotDirectory));
        }
        self.root.meta = entry_meta(entry.header(), described).map_err(|p| ctx.refuse(p))?;
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

/// Permission bits and owners from a tar header, owners overridden by a PAX header (mtimes are
/// dropped on purpose).
fn entry_meta(header: &tar::Header, described: &Described) -> Result<EntryMeta, EntryProblem> {
    let id = |pax: Option<u64>, n: io::Result<u64>, what| {
        pax.or_else(|| n.ok())
            .and_then(|n| u32::try_from(n).ok())
            .ok_or(EntryProblem::InvalidNumber(what))
    };
    Ok(EntryMeta {
        mode: header
            .mode()
            .map_err(|_| EntryProblem::InvalidNumber("mode"))?
            & 0o7777,
        uid: id(described.uid, header.uid(), "uid")?,
        gid: id(described.gid, header.gid(), "gid")?,
    })
}
