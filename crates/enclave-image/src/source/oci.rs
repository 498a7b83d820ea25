//! OCI image layouts (`oci:` directories and `oci-archive:` tars): index → manifest → config.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::store::BlobStore;
use super::{
    blob_path, parse_config, read_small, Digest, LayerDescriptor, ParsedImage, SourceError,
};

const REF_NAME: &str = "org.opencontainers.image.ref.name";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// How many index levels we follow below index.json (an image index inside it).
const MAX_INDEX_DEPTH: usize = 2;

#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    #[serde(default)]
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize, Clone)]
struct Platform {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
}

#[derive(Deserialize)]
struct Index {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    #[serde(default)]
    media_type: Option<String>,
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

/// Reads the image tagged `tag` (or the only one) from an OCI layout.
pub(super) fn read(store: &BlobStore, tag: Option<&str>) -> Result<ParsedImage, SourceError> {
    let index: Index = parse_json(&read_small(store, "index.json")?, "index.json")?;
    let mut desc = select_by_tag(&index.manifests, tag)?;
    let mut depth = 0;
    let manifest_bytes = loop {
        let digest = Digest::parse(&desc.digest)?;
        let bytes = read_blob(store, &desc, &digest, "manifest")?;
        if desc.media_type != OCI_INDEX && desc.media_type != DOCKER_LIST {
            break bytes;
        }
        depth += 1;
        if depth > MAX_INDEX_DEPTH {
            return Err(SourceError::NestingTooDeep);
        }
        let nested: Index = parse_json(&bytes, &format!("image index {digest}"))?;
        desc = select_platform(&nested.manifests)?;
    };
    let manifest_digest = Digest::parse(&desc.digest)?;
    let what = format!("manifest {manifest_digest}");
    let manifest: Manifest = parse_json(&manifest_bytes, &what)?;
    let media_type = manifest.media_type.as_deref().unwrap_or(&desc.media_type);
    if ![OCI_MANIFEST, DOCKER_MANIFEST, ""].contains(&media_type) {
        return Err(SourceError::UnsupportedMediaType {
            what,
            media_type: media_type.to_owned(),
        });
    }

    let config_digest = Digest::parse(&manifest.config.digest)?;
    let config_bytes = read_blob(store, &manifest.config, &config_digest, "config")?;
    let (config, raw_config, diff_ids) =
        parse_config(&config_bytes, &format!("config {config_digest}"))?;
    if diff_ids.len() != manifest.layers.len() {
        return Err(SourceError::LayerCountMismatch {
            layers: manifest.layers.len(),
            diff_ids: diff_ids.len(),
        });
    }
    let layers = manifest
        .layers
        .iter()
        .zip(diff_ids)
        .map(|(layer, diff_id)| {
            let digest = Digest::parse(&layer.digest)?;
            Ok(LayerDescriptor {
                location: blob_path(&digest),
                blob_digest: Some(digest.clone()),
                digest,
                media_type: layer.media_type.clone(),
                size: Some(layer.size),
                diff_id: Some(diff_id),
            })
        })
        .collect::<Result<Vec<_>, SourceError>>()?;
    Ok(ParsedImage {
        config,
        raw_config,
        manifest_digest: Some(manifest_digest),
        config_digest,
        layers,
    })
}

/// Picks the manifest named `tag`, or the only manifest when no tag is given.
fn select_by_tag(manifests: &[Descriptor], tag: Option<&str>) -> Result<Descriptor, SourceError> {
    let tags: Vec<String> = manifests
        .iter()
        .filter_map(|d| d.annotations.get(REF_NAME).cloned())
        .collect();
    let found = match tag {
        Some(tag) => manifests
            .iter()
            .find(|d| d.annotations.get(REF_NAME).map(String::as_str) == Some(tag))
            .ok_or_else(|| SourceError::TagNotFound {
                tag: tag.to_owned(),
                available: tags.clone(),
            })?,
        None => match manifests {
            [only] => only,
            [] => return Err(SourceError::Missing("a manifest in index.json".into())),
            _ => return Err(SourceError::AmbiguousTag { available: tags }),
        },
    };
    Ok(found.clone())
}

/// The OCI name of the architecture we build for (enclaves run on the host's architecture).
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// In a multi-platform index, picks linux on the host's architecture.
fn select_platform(manifests: &[Descriptor]) -> Result<Descriptor, SourceError> {
    if let [only] = manifests {
        return Ok(only.clone());
    }
    let arch = host_arch();
    manifests
        .iter()
        .find(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == arch)
        })
        .cloned()
        .ok_or_else(|| SourceError::NoMatchingPlatform {
            arch,
            available: manifests
                .iter()
                .filter_map(|d| d.platform.as_ref())
                .map(|p| format!("{}/{}", p.os, p.architecture))
                .collect(),
        })
}

/// Reads a small blob and checks it against its descriptor's digest and size.
fn read_blob(
    store: &BlobStore,
    desc: &Descriptor,
    digest: &Digest,
    kind: &str,
) -> Result<Vec<u8>, SourceError> {
    let what = format!("{kind} {digest}");
    let bytes = read_small(store, &blob_path(digest))?;
    if bytes.len() as u64 != desc.size {
        return Err(SourceError::SizeMismatch {
            what,
            expected: desc.size,
            actual: bytes.len() as u64,
        });
    }
    digest.verify(&bytes, &what)?;
    Ok(bytes)
}

fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, SourceError> {
    serde_json::from_slice(bytes).map_err(|source| SourceError::Json {
        what: what.to_owned(),
        source,
    })
}
