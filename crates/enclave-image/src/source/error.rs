//! Errors of the image sources.

use std::io;
use std::path::PathBuf;

use super::Digest;

/// Everything that can go wrong while opening an image or reading its blobs.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The reference string is not in skopeo's transport notation.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference {
        /// The reference as given.
        reference: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A host file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The host path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A `dir:` reference that is not a directory.
    #[error("{}: not a directory", .0.display())]
    NotADirectory(PathBuf),
    /// The archive is not a readable tar.
    #[error("{}: not a readable tar archive: {source}", archive.display())]
    Archive {
        /// The archive.
        archive: PathBuf,
        /// The tar reader's error.
        #[source]
        source: io::Error,
    },
    /// Archives are read in place, which needs them uncompressed.
    #[error("{}: the archive is {compression}-compressed; decompress it first", archive.display())]
    CompressedArchive {
        /// The archive.
        archive: PathBuf,
        /// The compression found.
        compression: &'static str,
    },
    /// A file the format requires is absent.
    #[error("{0} not found in the image")]
    Missing(String),
    /// A JSON document is larger than we are willing to read.
    #[error("{what} is larger than {limit} bytes")]
    TooLarge {
        /// The document.
        what: String,
        /// The cap.
        limit: u64,
    },
    /// A JSON document does not parse.
    #[error("invalid JSON in {what}: {source}")]
    Json {
        /// The document.
        what: String,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// A digest string is malformed.
    #[error("invalid digest {0:?}")]
    InvalidDigest(String),
    /// A digest uses another algorithm than sha256.
    #[error("unsupported digest {0:?}: only sha256 is supported")]
    UnsupportedDigest(String),
    /// Content does not hash to its descriptor's digest.
    #[error("{what}: digest mismatch: expected {expected}, content is {actual}")]
    DigestMismatch {
        /// The blob.
        what: String,
        /// The digest announced by the format.
        expected: Digest,
        /// The digest of what was read.
        actual: Digest,
    },
    /// Content does not have its descriptor's size.
    #[error("{what}: size mismatch: descriptor says {expected} bytes, content has {actual}")]
    SizeMismatch {
        /// The blob.
        what: String,
        /// The size announced by the format.
        expected: u64,
        /// The size read.
        actual: u64,
    },
    /// The requested tag is not in the image index / archive.
    #[error("no image tagged {tag:?}; available: {available:?}")]
    TagNotFound {
        /// The tag asked for.
        tag: String,
        /// The tags present.
        available: Vec<String>,
    },
    /// No tag given and more than one image present.
    #[error("the archive holds several images, choose one by tag: {available:?}")]
    AmbiguousTag {
        /// The tags present.
        available: Vec<String>,
    },
    /// An index lists no manifest for this machine's platform.
    #[error("no manifest for linux/{arch} in the image index (available: {available:?})")]
    NoMatchingPlatform {
        /// The architecture looked for.
        arch: &'static str,
        /// The platforms present.
        available: Vec<String>,
    },
    /// A descriptor has a media type we cannot handle.
    #[error("{what}: unsupported media type {media_type:?}")]
    UnsupportedMediaType {
        /// The blob.
        what: String,
        /// Its media type.
        media_type: String,
    },
    /// The manifest and the config disagree on the number of layers.
    #[error("the manifest lists {layers} layers but the config has {diff_ids} diff ids")]
    LayerCountMismatch {
        /// Layers in the manifest.
        layers: usize,
        /// Diff ids in the config.
        diff_ids: usize,
    },
    /// A layer's media type announces a compression its bytes do not have.
    #[error("layer {layer}: media type says {declared} but the data is {found}")]
    CompressionMismatch {
        /// The layer.
        layer: Digest,
        /// From the media type.
        declared: &'static str,
        /// From the magic bytes.
        found: &'static str,
    },
    /// A layer could not be read to the end (corrupt compression, I/O).
    #[error("layer {layer}: {source}")]
    LayerRead {
        /// The layer.
        layer: Digest,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A path inside an archive or manifest is not acceptable (absolute, escaping, ...).
    #[error("unsafe path {0:?} in the image")]
    UnsafePath(String),
    /// Index/manifest nesting deeper than we follow.
    #[error("image index nesting is too deep")]
    NestingTooDeep,
    /// [`super::Image::open_layer`] with an index past the end (or on a `dir:` image).
    #[error("the image has no layer {0}")]
    NoSuchLayer(usize),
}
