//! `package`: an EIF and the project's binaries as an OCI image, on top of a base image, with no
//! Docker.
//!
//! The base's layers are copied as they are (same blobs, same digests, each verified while it
//! is copied); one new layer, written by [`tarball`] deterministically, holds `/enclave/app.eif`
//! and `/usr/local/bin/{enclave-ctl,enclave-engine,enclave-proxy}`. The config is the base's
//! with the contract teammates rely on (kube manifests pass arguments after the entrypoint):
//! Entrypoint `["/usr/local/bin/enclave-ctl", "run"]`, Cmd `["--name", NAME,
//! "/enclave/app.eif"]`, `ENCLAVE_ENGINE_STATE_DIR=/run/enclave-engine`, the PCRs as labels
//! (and as manifest annotations). Everything that goes into a digest is a function of the
//! inputs, so the same inputs give the same manifest digest from any directory.
//!
//! The output is assembled in a temporary directory next to it and renamed into place only when
//! complete ([`layout`]); a failure leaves nothing behind.

mod config;
mod error;
mod layout;
pub mod tarball;

use std::path::{Path, PathBuf};

pub use error::PackageError;
pub use tarball::LayerDigests;

use crate::eif::{EifReader, Measurements};
use crate::source::{Digest, Image, ImageRef};

/// Where the EIF goes in the image.
pub const EIF_PATH: &str = "/enclave/app.eif";
/// The image's entrypoint (the contract: arguments follow it).
pub const ENTRYPOINT: [&str; 2] = ["/usr/local/bin/enclave-ctl", "run"];
/// The project's binaries the image carries, in `/usr/local/bin`.
pub const BINARIES: [&str; 3] = ["enclave-ctl", "enclave-engine", "enclave-proxy"];
/// The state directory the image's environment sets.
pub const STATE_DIR_ENV: &str = "ENCLAVE_ENGINE_STATE_DIR=/run/enclave-engine";
/// Prefix of the PCR labels and annotations (`dev.enclave-engine.pcr0`, …).
pub const PCR_LABEL_PREFIX: &str = "dev.enclave-engine.pcr";
/// The tag written when the output reference names none.
pub const DEFAULT_TAG: &str = "latest";
/// The enclave name when neither `--name` nor the measured spec gives one.
pub const DEFAULT_NAME: &str = "app";

/// Where the image is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A new OCI image layout directory (`oci:DIR[:TAG]`).
    Dir {
        /// The directory; refused when it exists and is not empty.
        dir: PathBuf,
        /// The `org.opencontainers.image.ref.name`.
        tag: String,
    },
    /// An OCI layout in an uncompressed tar (`oci-archive:FILE[:TAG]`); an existing file is
    /// replaced.
    Archive {
        /// The archive.
        file: PathBuf,
        /// The `org.opencontainers.image.ref.name`.
        tag: String,
    },
}

impl Target {
    /// The target an `oci:` or `oci-archive:` reference names; `None` for other transports.
    pub fn from_ref(reference: &ImageRef) -> Option<Self> {
        let tag = |t: &Option<String>| t.clone().unwrap_or_else(|| DEFAULT_TAG.to_owned());
        match reference {
            ImageRef::Oci { dir, tag: t } => Some(Self::Dir {
                dir: dir.clone(),
                tag: tag(t),
            }),
            ImageRef::OciArchive { archive, tag: t } => Some(Self::Archive {
                file: archive.clone(),
                tag: tag(t),
            }),
            _ => None,
        }
    }

    /// The output path.
    pub fn path(&self) -> &Path {
        match self {
            Self::Dir { dir, .. } => dir,
            Self::Archive { file, .. } => file,
        }
    }

    /// The tag.
    pub fn tag(&self) -> &str {
        match self {
            Self::Dir { tag, .. } | Self::Archive { tag, .. } => tag,
        }
    }
}

/// What to package.
#[derive(Debug, Clone)]
pub struct PackageRequest {
    /// The EIF.
    pub eif: PathBuf,
    /// The base image (`oci:`, `oci-archive:` or `docker-archive:`).
    pub base: ImageRef,
    /// The output.
    pub target: Target,
    /// The directory holding [`BINARIES`].
    pub bin_dir: PathBuf,
    /// The enclave name for `run --name` (default: the measured spec's, else [`DEFAULT_NAME`]).
    pub name: Option<String>,
    /// Seconds since the epoch for every time stamp (layer mtimes, `created`).
    pub source_date_epoch: u64,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct Packaged {
    /// Digest of the image manifest (what a registry will call the image).
    pub manifest_digest: Digest,
    /// Digest of the config blob.
    pub config_digest: Digest,
    /// The new layer's blob digest, size and diff id.
    pub layer: LayerDigests,
    /// The EIF's PCRs.
    pub measurements: Measurements,
    /// The enclave name in the Cmd.
    pub name: String,
    /// The tag in index.json.
    pub tag: String,
}

/// Packages `request.eif` onto the base image and writes the result atomically.
pub fn package(request: &PackageRequest) -> Result<Packaged, PackageError> {
    check_tag(request.target.tag())?;
    let (measurements, spec_name) = measure(&request.eif)?;
    let name = match (&request.name, spec_name) {
        (Some(name), _) => name.clone(),
        (None, Some(name)) => name,
        (None, None) => DEFAULT_NAME.to_owned(),
    };
    check_name(&name)?;
    let created = config::rfc3339(request.source_date_epoch)?;
    let files = layer_files(request)?;
    let base_name = request.base.to_string();
    if matches!(request.base, ImageRef::Dir { .. }) {
        return Err(PackageError::DirBase(base_name));
    }
    let base = Image::open(&request.base).map_err(|source| PackageError::Base {
        reference: base_name.clone(),
        source,
    })?;
    layout::write(&layout::Plan {
        base: &base,
        base_name: &base_name,
        files: &files,
        measurements: &measurements,
        name: &name,
        created: &created,
        epoch: request.source_date_epoch,
        target: &request.target,
    })
    .map(|written| Packaged {
        manifest_digest: written.manifest_digest,
        config_digest: written.config_digest,
        layer: written.layer,
        measurements,
        name,
        tag: request.target.tag().to_owned(),
    })
}

/// The EIF's PCRs (CRC checked on the way) and its measured spec's name, if any.
fn measure(eif: &Path) -> Result<(Measurements, Option<String>), PackageError> {
    let eif_err = |source| PackageError::Eif {
        path: eif.to_owned(),
        source,
    };
    let mut reader = EifReader::open(eif).map_err(eif_err)?;
    let measurements = reader.measure().map_err(eif_err)?;
    let spec =
        crate::eif::app_spec::read_spec(&mut reader).map_err(|source| PackageError::Spec {
            path: eif.to_owned(),
            source,
        })?;
    Ok((measurements, spec.and_then(|s| s.name)))
}

/// The new layer's files: the EIF and the binaries, each checked to be there.
fn layer_files(request: &PackageRequest) -> Result<Vec<tarball::TarFile>, PackageError> {
    let mut files = vec![tarball::TarFile {
        path: EIF_PATH.trim_start_matches('/').to_owned(),
        source: request.eif.clone(),
        mode: 0o644,
    }];
    for binary in BINARIES {
        let source = request.bin_dir.join(binary);
        if !source.is_file() {
            return Err(PackageError::MissingBinary { path: source });
        }
        files.push(tarball::TarFile {
            path: format!("usr/local/bin/{binary}"),
            source,
            mode: 0o755,
        });
    }
    Ok(files)
}

/// OCI's grammar for `org.opencontainers.image.ref.name` components, kept to what registries and
/// skopeo take as a tag or name.
fn check_tag(tag: &str) -> Result<(), PackageError> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && tag.starts_with(|c: char| c.is_ascii_alphanumeric())
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '/'));
    if ok {
        Ok(())
    } else {
        Err(PackageError::InvalidTag(tag.to_owned()))
    }
}

/// `enclave-ctl run --name`'s rule, checked now rather than when the image first runs.
fn check_name(name: &str) -> Result<(), PackageError> {
    if enclave_spec::valid_enclave_name(name) {
        Ok(())
    } else {
        Err(PackageError::InvalidName(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_names() {
        for good in ["latest", "v1.2", "app:1", "registry/app_x-1"] {
            assert!(check_tag(good).is_ok(), "{good}");
        }
        for bad in ["", "-x", "a b", "a\n", &"a".repeat(129)] {
            assert!(check_tag(bad).is_err(), "{bad}");
        }
        assert!(check_name("hello-1.x").is_ok());
        for bad in ["", ".x", "a/b", "a b", &"a".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn targets_from_references() {
        let r: ImageRef = "oci:/tmp/out".parse().unwrap();
        assert_eq!(
            Target::from_ref(&r),
            Some(Target::Dir {
                dir: "/tmp/out".into(),
                tag: "latest".into()
            })
        );
        let r: ImageRef = "oci-archive:o.tar:v1".parse().unwrap();
        assert_eq!(
            Target::from_ref(&r).map(|t| t.tag().to_owned()),
            Some("v1".into())
        );
        let r: ImageRef = "docker-archive:o.tar".parse().unwrap();
        assert_eq!(Target::from_ref(&r), None);
    }
}
