//! `docker save` archives: `manifest.json` → config + layer tars.
//!
//! Both the classic layout (`<id>/layer.tar`, `<hex>.json`) and the OCI layout that Docker 25+
//! writes inside the same archive (`blobs/sha256/<hex>`) are described by `manifest.json`, so
//! that is the only file we follow. Layers are checked against the config's diff ids, and
//! against their blob digest when the path names one.

use serde::Deserialize;

use super::store::{normalize, BlobStore};
use super::{parse_config, read_small, Digest, LayerDescriptor, ParsedImage, SourceError};

/// Docker's media type for an uncompressed layer: what `docker save` archives hold, although
/// the bytes are sniffed anyway.
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

/// Reads the image named `reference` (`name:tag` or `@index`), or the only one.
pub(super) fn read(store: &BlobStore, reference: Option<&str>) -> Result<ParsedImage, SourceError> {
    let bytes = read_small(store, "manifest.json")?;
    let entries: Vec<Entry> =
        serde_json::from_slice(&bytes).map_err(|source| SourceError::Json {
            what: "manifest.json".into(),
            source,
        })?;
    let entry = select(&entries, reference)?;

    let config_path = safe_path(&entry.config)?;
    let config_bytes = read_small(store, &config_path)?;
    let config_digest = Digest::of(&config_bytes);
    if let Some(expected) = digest_from_path(&config_path) {
        expected.verify(&config_bytes, &format!("config {config_path}"))?;
    }
    let (config, raw_config, diff_ids) =
        parse_config(&config_bytes, &format!("config {config_path}"))?;
    if diff_ids.len() != entry.layers.len() {
        return Err(SourceError::LayerCountMismatch {
            layers: entry.layers.len(),
            diff_ids: diff_ids.len(),
        });
    }
    let layers = entry
        .layers
        .iter()
        .zip(diff_ids)
        .map(|(path, diff_id)| {
            let location = safe_path(path)?;
            if !store.contains(&location) {
                return Err(SourceError::Missing(location));
            }
            let blob_digest = digest_from_path(&location);
            Ok(LayerDescriptor {
                digest: blob_digest.clone().unwrap_or_else(|| diff_id.clone()),
                media_type: DOCKER_LAYER.to_owned(),
                size: None,
                diff_id: Some(diff_id),
                location,
                blob_digest,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ParsedImage {
        config,
        raw_config,
        manifest_digest: None,
        config_digest,
        layers,
    })
}

fn select<'a>(entries: &'a [Entry], reference: Option<&str>) -> Result<&'a Entry, SourceError> {
    let tags = || -> Vec<String> {
        entries
            .iter()
            .flat_map(|e| e.repo_tags.iter().flatten().cloned())
            .collect()
    };
    let Some(reference) = reference else {
        return match entries {
            [only] => Ok(only),
            [] => Err(SourceError::Missing("an image in manifest.json".into())),
            _ => Err(SourceError::AmbiguousTag { available: tags() }),
        };
    };
    let found = match reference.strip_prefix('@') {
        Some(index) => index.parse::<usize>().ok().and_then(|i| entries.get(i)),
        None => {
            let wanted = normalize_tag(reference);
            entries.iter().find(|e| {
                e.repo_tags
                    .iter()
                    .flatten()
                    .any(|t| normalize_tag(t) == wanted)
            })
        }
    };
    found.ok_or_else(|| SourceError::TagNotFound {
        tag: reference.to_owned(),
        available: tags(),
    })
}

/// Docker's reference normalisation: `app` = `docker.io/library/app:latest`.
fn normalize_tag(reference: &str) -> String {
    let (name, tag) = match reference.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, tag),
        _ => (reference, "latest"),
    };
    let first = name.split('/').next().unwrap_or_default();
    let has_registry =
        name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let name = match (has_registry, name.contains('/')) {
        (true, _) => name.to_owned(),
        (false, true) => format!("docker.io/{name}"),
        (false, false) => format!("docker.io/library/{name}"),
    };
    format!("{name}:{tag}")
}

fn safe_path(path: &str) -> Result<String, SourceError> {
    normalize(path).ok_or_else(|| SourceError::UnsafePath(path.to_owned()))
}

/// `blobs/sha256/<hex>` and `<hex>.json` name their content's digest.
fn digest_from_path(path: &str) -> Option<Digest> {
    let hex = path
        .strip_prefix("blobs/sha256/")
        .or_else(|| path.strip_suffix(".json"))?;
    Digest::parse(&format!("sha256:{hex}")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_normalisation() {
        assert_eq!(normalize_tag("app"), "docker.io/library/app:latest");
        assert_eq!(normalize_tag("enclave/app:1"), "docker.io/enclave/app:1");
        assert_eq!(
            normalize_tag("docker.io/enclave/app:latest"),
            normalize_tag("enclave/app")
        );
        assert_eq!(normalize_tag("localhost:5000/a"), "localhost:5000/a:latest");
    }

    #[test]
    fn digests_from_paths() {
        let hex = "ab".repeat(32);
        assert!(digest_from_path(&format!("blobs/sha256/{hex}")).is_some());
        assert!(digest_from_path(&format!("{hex}.json")).is_some());
        assert!(digest_from_path(&format!("{hex}/layer.tar")).is_none());
    }
}
