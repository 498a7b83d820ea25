//! Caps on what an image may make the build read, store and keep in memory.
//!
//! A layer is outside input: a few MiB of gzip can decompress to many GiB, and a tar can declare
//! any number of entries. Without caps such a layer fills the spool's disk, or the tree's memory,
//! before anything else notices. The caps are counted on the decompressed stream (so they hold
//! whatever the compression) and on the entries applied.

use std::io::{self, Read};

/// How much a root filesystem may hold. The defaults are generous for real images (see
/// docs/architecture.md, "Limits"); a build raises them explicitly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Decompressed bytes of one layer (the whole tar stream, framing and trailing data
    /// included).
    pub layer_bytes: u64,
    /// Decompressed bytes of all layers together; for `dir:` inputs, the regular files' sizes.
    pub rootfs_bytes: u64,
    /// Entries applied (all layers together, whiteouts included; not counting extension
    /// headers), or walked in a `dir:` input.
    pub entries: u64,
}

impl Limits {
    /// The defaults: 8 GiB a layer, 16 GiB in all, a million entries.
    pub const DEFAULT: Self = Self {
        layer_bytes: 8 << 30,
        rootfs_bytes: 16 << 30,
        entries: 1_000_000,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Longest tar extension header (PAX `x`/`g`, GNU `L`/`K`) accepted. Real ones carry a path, a
/// link target, a few numbers and maybe xattrs (64 KiB at most on Linux): bytes to a few KiB.
/// Fixed, not a [`Limits`] field: no real image comes near it.
pub const MAX_EXTENSION_HEADER: u64 = 1 << 20;

/// The kinds of tar extension headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtensionKind {
    /// PAX extended header (`x`), describing the next entry.
    Pax,
    /// PAX global header (`g`).
    PaxGlobal,
    /// GNU long name (`L`).
    GnuLongName,
    /// GNU long link target (`K`).
    GnuLongLink,
}

impl std::fmt::Display for ExtensionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Pax => "PAX extended",
            Self::PaxGlobal => "PAX global",
            Self::GnuLongName => "GNU long name",
            Self::GnuLongLink => "GNU long link",
        })
    }
}

/// Which cap an input went over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    /// An extension header declares more than [`MAX_EXTENSION_HEADER`] bytes.
    #[error("a {kind} header declares {declared} bytes, over the cap of {cap} bytes")]
    ExtensionHeader {
        /// The header's kind.
        kind: ExtensionKind,
        /// The size its tar header declares.
        declared: u64,
        /// [`MAX_EXTENSION_HEADER`].
        cap: u64,
    },
    /// A layer decompresses to more than [`Limits::layer_bytes`].
    #[error("decompresses to more than the layer size limit of {limit} bytes")]
    LayerBytes {
        /// The limit.
        limit: u64,
    },
    /// The layers together (or a `dir:` input's files) pass [`Limits::rootfs_bytes`].
    #[error("takes the root filesystem past its size limit of {limit} bytes")]
    RootfsBytes {
        /// The limit.
        limit: u64,
    },
    /// More entries than [`Limits::entries`].
    #[error("takes the root filesystem past its limit of {limit} entries")]
    Entries {
        /// The limit.
        limit: u64,
    },
}

/// A reader that stops with an error once more than a budget of bytes has passed through, and
/// remembers which cap it was, so that the tar reader's I/O error can be turned back into a
/// typed [`LimitExceeded`].
pub(super) struct Metered<R> {
    inner: R,
    /// Bytes read so far.
    pub(super) read: u64,
    budget: u64,
    /// What running out of `budget` means.
    cap: LimitExceeded,
    /// Set once the budget was exceeded.
    pub(super) tripped: Option<LimitExceeded>,
}

impl<R> Metered<R> {
    /// Meters a layer read after `used` bytes of earlier layers: its budget is whichever of
    /// the layer and the rootfs limits is closer.
    pub(super) fn layer(inner: R, limits: &Limits, used: u64) -> Self {
        let rootfs_left = limits.rootfs_bytes.saturating_sub(used);
        let (budget, cap) = if limits.layer_bytes <= rootfs_left {
            let limit = limits.layer_bytes;
            (limit, LimitExceeded::LayerBytes { limit })
        } else {
            let limit = limits.rootfs_bytes;
            (rootfs_left, LimitExceeded::RootfsBytes { limit })
        };
        Self {
            inner,
            read: 0,
            budget,
            cap,
            tripped: None,
        }
    }
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.tripped.is_some() {
            return Err(io::Error::other(self.cap));
        }
        // One byte past the budget is enough to know it is exceeded.
        let left = self.budget - self.read;
        let want = usize::try_from(left.saturating_add(1))
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = self.inner.read(&mut buf[..want])?;
        if n as u64 > left {
            self.tripped = Some(self.cap);
            return Err(io::Error::other(self.cap));
        }
        self.read += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(limits: Limits, used: u64, len: usize) -> (Option<LimitExceeded>, u64) {
        let data = vec![7u8; len];
        let mut m = Metered::layer(&data[..], &limits, used);
        let _ = io::copy(&mut m, &mut io::sink());
        (m.tripped, m.read)
    }

    #[test]
    fn budget_is_the_closer_limit() {
        let limits = Limits {
            layer_bytes: 100,
            rootfs_bytes: 250,
            entries: 10,
        };
        // Exactly at the limit passes; one byte more trips the layer limit.
        assert_eq!(drain(limits, 0, 100), (None, 100));
        assert_eq!(
            drain(limits, 0, 101).0,
            Some(LimitExceeded::LayerBytes { limit: 100 })
        );
        // After 200 bytes of earlier layers, 50 are left of the rootfs limit.
        assert_eq!(drain(limits, 200, 50), (None, 50));
        assert_eq!(
            drain(limits, 200, 51).0,
            Some(LimitExceeded::RootfsBytes { limit: 250 })
        );
        // Earlier layers already past the limit (cannot happen, but must not underflow).
        assert_eq!(
            drain(limits, 300, 1).0,
            Some(LimitExceeded::RootfsBytes { limit: 250 })
        );
    }
}
