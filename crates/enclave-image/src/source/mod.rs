//! Image sources: where the application's root filesystem comes from.
//!
//! References use skopeo's transport notation: `oci:<dir>[:<tag>]`,
//! `oci-archive:<tar>[:<tag>]`, `docker-archive:<tar>[:<name:tag>|@<index>]` and `dir:<rootfs>`.
//! [`Image::open`] reads the index/manifest/config (each verified against its sha256 digest where
//! the format gives one) and [`Image::open_layer`] streams a layer decompressed; the layer's
//! digests are checked by [`LayerStream::finish`] once it has been read.

mod digest;
mod docker;
mod error;
mod layer;
mod oci;
mod reference;
mod store;

use std::io::Read as _;
use std::path::{Path, PathBuf};

pub use digest::Digest;
pub use error::SourceError;
pub use layer::{decompress, Compression, Decompressor, LayerStream};
pub use reference::ImageRef;

use store::BlobStore;

/// The runtime configuration of an image (the `config` object of an OCI/Docker image config).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    /// `Entrypoint`, if set.
    pub entrypoint: Option<Vec<String>>,
    /// `Cmd`, if set.
    pub cmd: Option<Vec<String>>,
    /// `Env`, `KEY=value` strings in image order.
    pub env: Vec<String>,
    /// `WorkingDir`, if set and non-empty.
    pub working_dir: Option<String>,
    /// `User`, if set and non-empty.
    pub user: Option<String>,
}

/// One layer of an image, bottom first in [`Image::layers`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerDescriptor {
    /// The layer's identity: the blob digest from the manifest, or for docker-archive layers
    /// stored without one, the diff id (digest of the uncompressed tar).
    pub digest: Digest,
    /// The media type from the manifest; docker-archive layers without one get Docker's
    /// uncompressed layer type.
    pub media_type: String,
    /// The blob size from the manifest, when it gives one.
    pub size: Option<u64>,
    /// The config's `rootfs.diff_ids` entry: sha256 of the uncompressed tar.
    pub diff_id: Option<Digest>,
    /// Where the blob is in the store.
    location: String,
    /// Expected sha256 of the stored blob, when the format gives one.
    blob_digest: Option<Digest>,
}

/// An opened image: its configuration, digests and layers.
#[derive(Debug)]
pub struct Image {
    /// The reference it was opened from.
    pub reference: ImageRef,
    /// Entrypoint, Cmd, Env, WorkingDir, User.
    pub config: ImageConfig,
    /// The whole config JSON (`Value::Null` for `dir:`), for provenance metadata.
    pub raw_config: serde_json::Value,
    /// Digest of the manifest (OCI transports only).
    pub manifest_digest: Option<Digest>,
    /// Digest of the config blob (not for `dir:`).
    pub config_digest: Option<Digest>,
    /// Layers, bottom first (empty for `dir:`).
    pub layers: Vec<LayerDescriptor>,
    store: Option<BlobStore>,
}

impl Image {
    /// Opens the image named by `reference`, reading and verifying its metadata.
    pub fn open(reference: &ImageRef) -> Result<Self, SourceError> {
        let (store, parsed) = match reference {
            ImageRef::Oci { dir, tag } => {
                let store = BlobStore::dir(dir)?;
                let parsed = oci::read(&store, tag.as_deref())?;
                (store, parsed)
            }
            ImageRef::OciArchive { archive, tag } => {
                let store = BlobStore::tar(archive)?;
                let parsed = oci::read(&store, tag.as_deref())?;
                (store, parsed)
            }
            ImageRef::DockerArchive { archive, reference } => {
                let store = BlobStore::tar(archive)?;
                let parsed = docker::read(&store, reference.as_deref())?;
                (store, parsed)
            }
            ImageRef::Dir { path } => {
                let meta = std::fs::metadata(path).map_err(|e| SourceError::io(path, e))?;
                if !meta.is_dir() {
                    return Err(SourceError::NotADirectory(path.clone()));
                }
                return Ok(Self {
                    reference: reference.clone(),
                    config: ImageConfig::default(),
                    raw_config: serde_json::Value::Null,
                    manifest_digest: None,
                    config_digest: None,
                    layers: Vec::new(),
                    store: None,
                });
            }
        };
        Ok(Self {
            reference: reference.clone(),
            config: parsed.config,
            raw_config: parsed.raw_config,
            manifest_digest: parsed.manifest_digest,
            config_digest: Some(parsed.config_digest),
            layers: parsed.layers,
            store: Some(store),
        })
    }

    /// For `dir:` images, the directory holding the root filesystem.
    pub fn rootfs_dir(&self) -> Option<&Path> {
        match &self.reference {
            ImageRef::Dir { path } => Some(path),
            _ => None,
        }
    }

    /// Streams layer `index` (bottom = 0) decompressed. Read it to the end, then call
    /// [`LayerStream::finish`] to verify its digests.
    pub fn open_layer(&self, index: usize) -> Result<LayerStream, SourceError> {
        let (Some(store), Some(layer)) = (&self.store, self.layers.get(index)) else {
            return Err(SourceError::NoSuchLayer(index));
        };
        let raw = store.open(&layer.location)?;
        LayerStream::new(raw, layer)
    }
    /// Copies layer `index`'s blob as stored (still compressed, byte for byte) into `out`,
    /// hashing it on the way: the copy is refused when its sha256 or size differs from what the
    /// manifest announces (for docker-archive layers stored without a blob digest, the diff id,
    /// which is the blob's own digest since `docker save` writes plain tars). Returns the blob's
    /// digest and size.
    pub fn copy_layer_blob(
        &self,
        index: usize,
        out: &mut impl std::io::Write,
    ) -> Result<(Digest, u64), SourceError> {
        use sha2::Digest as _;
        let (Some(store), Some(layer)) = (&self.store, self.layers.get(index)) else {
            return Err(SourceError::NoSuchLayer(index));
        };
        let mut raw = store.open(&layer.location)?;
        let mut hasher = sha2::Sha256::new();
        let mut size = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        let read_err = |source| SourceError::LayerRead {
            layer: layer.digest.clone(),
            source,
        };
        loop {
            let n = match raw.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_err(e)),
            };
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(read_err)?;
            size += n as u64;
        }
        let what = format!("layer {}", layer.digest);
        if let Some(expected) = layer.size {
            if expected != size {
                return Err(SourceError::SizeMismatch {
                    what,
                    expected,
                    actual: size,
                });
            }
        }
        let actual = Digest::from_sha256(hasher.finalize().into());
        let expected = layer.blob_digest.as_ref().unwrap_or(&layer.digest);
        if &actual != expected {
            return Err(SourceError::DigestMismatch {
                what,
                expected: expected.clone(),
                actual,
            });
        }
        Ok((actual, size))
    }
}

/// What the OCI and Docker readers extract; [`Image::open`] assembles it into an [`Image`].
struct ParsedImage {
    config: ImageConfig,
    raw_config: serde_json::Value,
    manifest_digest: Option<Digest>,
    config_digest: Digest,
    layers: Vec<LayerDescriptor>,
}

/// The subset of an OCI/Docker image config that we read.
#[derive(serde::Deserialize, Default)]
struct ConfigFile {
    #[serde(default)]
    config: Option<RuntimeConfig>,
    #[serde(default)]
    rootfs: Option<RootfsSection>,
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct RuntimeConfig {
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    user: Option<String>,
}

#[derive(serde::Deserialize, Default)]
struct RootfsSection {
    #[serde(default)]
    diff_ids: Vec<String>,
}

/// Parses a config blob into the runtime config, the raw JSON and the diff ids.
fn parse_config(
    bytes: &[u8],
    what: &str,
) -> Result<(ImageConfig, serde_json::Value, Vec<Digest>), SourceError> {
    let json = |source| SourceError::Json {
        what: what.to_owned(),
        source,
    };
    let raw: serde_json::Value = serde_json::from_slice(bytes).map_err(json)?;
    let file: ConfigFile = serde_json::from_value(raw.clone()).map_err(json)?;
    let rc = file.config.unwrap_or_default();
    let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
    let config = ImageConfig {
        entrypoint: rc.entrypoint,
        cmd: rc.cmd,
        env: rc.env.unwrap_or_default(),
        working_dir: non_empty(rc.working_dir),
        user: non_empty(rc.user),
    };
    let diff_ids = file
        .rootfs
        .unwrap_or_default()
        .diff_ids
        .iter()
        .map(|d| Digest::parse(d))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((config, raw, diff_ids))
}

/// Reads `path` from the store, capped at [`store::MAX_JSON`].
fn read_small(store: &BlobStore, path: &str) -> Result<Vec<u8>, SourceError> {
    store.read_capped(path, store::MAX_JSON)
}

/// Path of a blob in an OCI layout (the digest is validated hex, so the path cannot escape).
fn blob_path(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm(), digest.hex())
}

impl SourceError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        SourceError::Io {
            path: PathBuf::from(path),
            source,
        }
    }
}
