//! The application's root filesystem, assembled in memory without touching the host filesystem.
//!
//! A [`RootfsTree`] holds metadata only: a tree of nodes whose directories keep their children in
//! a `BTreeMap` (so iteration order, and thus the cpio, is deterministic). Regular file contents
//! of image layers are appended to one unlinked temporary spool file and referenced by
//! (offset, length), so memory stays small whatever the image size; contents of `dir:` inputs
//! stay on the host and are read when the cpio is written.
//!
//! Layers are applied as overlayfs would stack them: `.wh.<name>` whiteouts remove a lower entry,
//! `.wh..wh..opq` drops a directory's lower children, a later entry replaces an earlier one of
//! any type. Entries that could escape the root (`..`, absolute paths, paths through symlinks,
//! symlinks climbing above the root, hard links to missing or escaping targets) are refused.
//! What a layer may hold is capped ([`Limits`]); `dir:` inputs are read so that what goes into
//! the cpio is what the walk saw (`host`, `beneath`).

mod apply;
mod beneath;
mod emit;
mod extensions;
mod fuzzing;
mod host;
mod limits;
mod path;

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::PathBuf;

use crate::cpio::{CpioError, DeviceKind, EntryMeta};
use crate::source::{Image, SourceError};

pub use emit::{EntryKind, TreeEntry};
pub use fuzzing::fuzz_layer;
pub use limits::{ExtensionKind, LimitExceeded, Limits, MAX_EXTENSION_HEADER};

use beneath::{HostRoot, Identity};

/// Why a layer entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryProblem {
    /// A `..` component.
    #[error("path has a '..' component")]
    DotDot,
    /// A path starting with `/`.
    #[error("absolute path")]
    Absolute,
    /// A parent component is a symlink in the tree.
    #[error("path goes through the symlink {0:?}")]
    ThroughSymlink(String),
    /// A parent component is a file or device.
    #[error("parent {0:?} is not a directory")]
    ParentNotDirectory(String),
    /// A relative symlink target that resolves above the root.
    #[error("symlink target {0:?} climbs above the root")]
    SymlinkEscapes(String),
    /// An empty symlink target.
    #[error("empty symlink target")]
    EmptySymlink,
    /// A hard link whose target is not in the tree.
    #[error("hard link target {0:?} does not exist")]
    HardlinkMissing(String),
    /// A hard link whose target is outside the tree, through a symlink, or a directory.
    #[error("hard link target {0:?} is not a file inside the root")]
    HardlinkEscapes(String),
    /// The root itself given as something else than a directory.
    #[error("the root must be a directory")]
    RootNotDirectory,
    /// `.wh.` with no name, `.wh..`, ...
    #[error("invalid whiteout")]
    InvalidWhiteout,
    /// Longer than the kernel's PATH_MAX allows inside the ramdisk.
    #[error("path longer than {} bytes", path::MAX_PATH)]
    PathTooLong,
    /// A mode/uid/gid field that does not parse or does not fit 32 bits.
    #[error("invalid or oversized {0} field")]
    InvalidNumber(&'static str),
    /// A tar entry type we do not store (sparse files, sockets, ...).
    #[error("unsupported tar entry type {0}")]
    UnsupportedType(String),
    /// Two extension headers of one kind for the same entry.
    #[error("two {0} headers for one entry")]
    DuplicateExtension(ExtensionKind),
    /// A PAX header whose records do not parse.
    #[error("malformed PAX record")]
    MalformedPax,
    /// A PAX `size` other than the tar header's (only files over 8 GiB need one, and a ramdisk
    /// cannot hold those).
    #[error("PAX size {pax} differs from the header's {header}")]
    PaxSize {
        /// The PAX header's size.
        pax: u64,
        /// The tar header's size.
        header: u64,
    },
}

/// How a `dir:` input changed between the walk and the read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostChange {
    /// It is now a symlink.
    #[error("it is now a symlink")]
    Symlink,
    /// A walked directory is no longer a directory.
    #[error("it is no longer a directory")]
    NotADirectory,
    /// It is gone.
    #[error("it no longer exists")]
    Gone,
    /// Another file or directory is at its path now (different device/inode or type).
    #[error("another file is at its path now")]
    Replaced,
    /// Same file, another size.
    #[error("its size went from {walked} to {now} bytes")]
    Resized {
        /// The size the walk saw.
        walked: u64,
        /// The size now.
        now: u64,
    },
}

/// Errors while assembling or writing a root filesystem.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// A layer entry was refused.
    #[error("layer {layer}: entry {entry:?}: {problem}")]
    Entry {
        /// The layer (digest, or the label given to [`RootfsTree::apply_layer`]).
        layer: String,
        /// The entry's path as written in the tar.
        entry: String,
        /// What is wrong with it.
        problem: EntryProblem,
    },
    /// The layer is not a readable tar (corrupt or truncated tar, gzip or zstd).
    #[error("layer {layer}: corrupt or truncated: {source}")]
    Corrupt {
        /// The layer.
        layer: String,
        /// The reader's error.
        #[source]
        source: io::Error,
    },
    /// A `dir:` input entry was refused (escaping symlink, ...).
    #[error("{}: {problem}", path.display())]
    HostEntry {
        /// The host path.
        path: PathBuf,
        /// What is wrong with it.
        problem: EntryProblem,
    },
    /// Reading a `dir:` input failed.
    #[error("{}: {source}", path.display())]
    Host {
        /// The host path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A `dir:` input changed between the walk and the moment it was read: what the walk saw at
    /// `path` (a file, or a directory on the way to one) is not there any more, and nothing is
    /// read in its place.
    #[error("{}: changed while the image was being built: {change}", path.display())]
    HostChanged {
        /// The host path.
        path: PathBuf,
        /// How.
        change: HostChange,
    },
    /// The input went over one of the tree's [`Limits`].
    #[error("{input}: {limit}")]
    Limit {
        /// `layer <digest or label>`, or `dir:<path>`.
        input: String,
        /// The limit.
        limit: LimitExceeded,
    },
    /// The temporary spool file failed.
    #[error("content spool: {0}")]
    Spool(#[source] io::Error),
    /// Opening the image or verifying a layer failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// Writing the cpio failed.
    #[error(transparent)]
    Cpio(#[from] CpioError),
}

/// Index into [`RootfsTree::inodes`]: paths sharing one are hard links.
type InodeId = usize;

/// Where a regular file's bytes are.
#[derive(Debug, Clone)]
enum Content {
    /// In the spool file.
    Spool { offset: u64, len: u64 },
    /// In a `dir:` input, read at cpio time: the path below the input directory (components
    /// joined by `/`) and the file the walk saw there.
    Host {
        rel: Vec<u8>,
        id: Identity,
        len: u64,
    },
}

impl Content {
    fn len(&self) -> u64 {
        match self {
            Self::Spool { len, .. } | Self::Host { len, .. } => *len,
        }
    }
}

#[derive(Debug, Clone)]
enum Kind {
    Dir(BTreeMap<Vec<u8>, Node>),
    File(InodeId),
    Symlink(Vec<u8>),
    Special {
        kind: DeviceKind,
        major: u32,
        minor: u32,
    },
}

#[derive(Debug, Clone)]
struct Node {
    meta: EntryMeta,
    kind: Kind,
    /// The layer that last declared this entry (for whiteouts and opaque directories, which
    /// only affect lower layers).
    layer: u32,
    /// For directories: the last layer with an entry below it.
    touched: u32,
}

impl Node {
    fn new(meta: EntryMeta, kind: Kind, layer: u32) -> Self {
        Self {
            meta,
            kind,
            layer,
            touched: layer,
        }
    }

    fn empty_dir(meta: EntryMeta, layer: u32) -> Self {
        Self::new(meta, Kind::Dir(BTreeMap::new()), layer)
    }
}

/// Default metadata of directories that exist only because something below them does.
const IMPLICIT_DIR: EntryMeta = EntryMeta {
    mode: 0o755,
    uid: 0,
    gid: 0,
};

/// A root filesystem: metadata in memory, contents in a spool file or on the host.
#[derive(Debug)]
pub struct RootfsTree {
    root: Node,
    inodes: Vec<Content>,
    spool: Option<File>,
    spool_len: u64,
    /// The directory of a `dir:` input, held open from the walk to the cpio.
    host_root: Option<HostRoot>,
    /// Layers applied so far; layer numbers start at 1 so that 0 means "before any layer".
    layers: u32,
    limits: Limits,
    /// Entries applied or walked so far, counted against `limits.entries`.
    entries: u64,
    /// Decompressed layer bytes (or `dir:` file bytes) so far, against `limits.rootfs_bytes`.
    bytes: u64,
}

impl Default for RootfsTree {
    fn default() -> Self {
        Self::new()
    }
}

impl RootfsTree {
    /// An empty tree with the default [`Limits`]: a root directory, mode 0755, owned by 0:0.
    pub fn new() -> Self {
        Self::with_limits(Limits::DEFAULT)
    }

    /// An empty tree whose layers are held to `limits`.
    pub fn with_limits(limits: Limits) -> Self {
        Self {
            root: Node::empty_dir(IMPLICIT_DIR, 0),
            inodes: Vec::new(),
            spool: None,
            spool_len: 0,
            host_root: None,
            layers: 0,
            limits,
            entries: 0,
            bytes: 0,
        }
    }

    /// Builds the tree of an opened image: its layers in order, verifying each layer's digests,
    /// or for `dir:` images the directory walk of [`RootfsTree::from_dir`].
    pub fn from_image(image: &Image, limits: Limits) -> Result<Self, RootfsError> {
        if let Some(dir) = image.rootfs_dir() {
            return Self::from_dir(dir, limits);
        }
        let mut tree = Self::with_limits(limits);
        for (index, layer) in image.layers.iter().enumerate() {
            let mut stream = image.open_layer(index)?;
            tracing::debug!(layer = %layer.digest, compression = ?stream.compression(), "applying layer");
            tree.apply_layer(layer.digest.as_str(), &mut stream)?;
            stream.finish()?;
        }
        Ok(tree)
    }

    /// Number of inodes (distinct regular files) stored, for diagnostics.
    pub fn file_count(&self) -> usize {
        self.inodes.len()
    }
}
