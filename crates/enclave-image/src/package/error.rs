//! Errors of `package`.

use std::io;
use std::path::PathBuf;

use super::tarball::TarError;
use crate::eif::app_spec::AppSpecError;
use crate::eif::ReadError;
use crate::source::SourceError;

/// Everything that can go wrong while packaging an EIF as an OCI image.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// The EIF could not be read or measured (corrupt, truncated, CRC).
    #[error("{}", path.display())]
    Eif {
        /// The EIF.
        path: PathBuf,
        /// The reader's error.
        #[source]
        source: ReadError,
    },
    /// The EIF's measured spec is unreadable.
    #[error("{}: reading its measured spec", path.display())]
    Spec {
        /// The EIF.
        path: PathBuf,
        /// The spec reader's error.
        #[source]
        source: AppSpecError,
    },
    /// One of the project's binaries is not in the binaries' directory.
    #[error(
        "{} is missing: the image needs enclave-ctl, enclave-engine and enclave-proxy from one \
         directory (the running enclave-ctl's, or --bin-dir)",
        path.display()
    )]
    MissingBinary {
        /// The path looked at.
        path: PathBuf,
    },
    /// The base image is unreadable or corrupt.
    #[error("base image {reference}")]
    Base {
        /// The base as given.
        reference: String,
        /// What is wrong with it.
        #[source]
        source: SourceError,
    },
    /// A base without layers to copy (`dir:`).
    #[error("base image {0}: a dir: source has no OCI layers to copy; use an oci:, oci-archive: or docker-archive: image")]
    DirBase(String),
    /// A base layer whose media type is not a layer's.
    #[error("base image {reference}: layer {layer} has media type {media_type:?}, not a layer's")]
    LayerMediaType {
        /// The base as given.
        reference: String,
        /// The layer's digest.
        layer: String,
        /// Its media type.
        media_type: String,
    },
    /// The base's config is not a JSON object.
    #[error("base image {0}: its config is not a JSON object")]
    BaseConfig(String),
    /// A tag that OCI's ref.name grammar refuses.
    #[error("invalid tag {0:?}: use letters, digits and . _ - : / (at most 128 characters)")]
    InvalidTag(String),
    /// A name for `--name` that `enclave-ctl run` would refuse.
    #[error("invalid enclave name {0:?}: use letters, digits, . _ - (not first), at most 64")]
    InvalidName(String),
    /// A SOURCE_DATE_EPOCH past year 9999.
    #[error("source date epoch {0} is out of range")]
    InvalidEpoch(u64),
    /// An output directory that already holds something.
    #[error(
        "{}: already exists and is not empty; package writes a new OCI layout (remove it, or \
         choose another directory)",
        .0.display()
    )]
    OutputExists(PathBuf),
    /// The new layer or the archive could not be written.
    #[error(transparent)]
    Tar(#[from] TarError),
    /// A host file could not be read or written.
    #[error("{}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl PackageError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}
