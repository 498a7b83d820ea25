//! The JSON documents of the packaged image: config, manifest, index.
//!
//! The config is the base's, changed only where the contract says (Entrypoint, Cmd, Env,
//! Labels, `created`, `rootfs.diff_ids`, `history`); every other field of the base (User,
//! WorkingDir, ExposedPorts, architecture, os, …) is kept as it was. serde_json's maps are
//! sorted (no `preserve_order` in the workspace), so the bytes depend only on the content.

use serde_json::{json, Map, Value};

use super::{PackageError, DEFAULT_TAG, EIF_PATH, ENTRYPOINT, PCR_LABEL_PREFIX, STATE_DIR_ENV};
use crate::eif::Measurements;
use crate::source::Digest;

pub(super) const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub(super) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(super) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(super) const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The base's PATH is kept; this one is set only when the base has none.
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What the new config says besides the base's.
pub(super) struct ConfigChanges<'a> {
    pub name: &'a str,
    pub measurements: &'a Measurements,
    pub created: &'a str,
    pub diff_id: &'a Digest,
}

/// `created` and history time stamps: RFC 3339 in UTC.
pub(super) fn rfc3339(epoch: u64) -> Result<String, PackageError> {
    let at = i64::try_from(epoch)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .filter(|t| t.year() <= 9999)
        .ok_or(PackageError::InvalidEpoch(epoch))?;
    at.format(&time::format_description::well_known::Rfc3339)
        .map_err(|_| PackageError::InvalidEpoch(epoch))
}

/// The PCR labels/annotations: `dev.enclave-engine.pcr0` … (`.pcr8` when signed), hex.
pub(super) fn pcr_labels(m: &Measurements) -> Vec<(String, String)> {
    let mut labels = vec![
        (format!("{PCR_LABEL_PREFIX}0"), m.pcr0_hex()),
        (format!("{PCR_LABEL_PREFIX}1"), m.pcr1_hex()),
        (format!("{PCR_LABEL_PREFIX}2"), m.pcr2_hex()),
    ];
    if let Some(pcr8) = m.pcr8_hex() {
        labels.push((format!("{PCR_LABEL_PREFIX}8"), pcr8));
    }
    labels
}

/// The base's config with the contract's changes. `base_name` only names the base in errors.
pub(super) fn image_config(
    base: &Value,
    changes: &ConfigChanges<'_>,
    base_name: &str,
) -> Result<Value, PackageError> {
    let not_object = || PackageError::BaseConfig(base_name.to_owned());
    let mut root = base.as_object().cloned().ok_or_else(not_object)?;
    let runtime = object_at(&mut root, "config").ok_or_else(not_object)?;

    runtime.insert("Entrypoint".into(), json!(ENTRYPOINT));
    runtime.insert("Cmd".into(), json!(["--name", changes.name, EIF_PATH]));

    let state_key = STATE_DIR_ENV.split('=').next().unwrap_or_default();
    let mut env: Vec<String> = strings(runtime.get("Env"))
        .into_iter()
        .filter(|e| e.split('=').next() != Some(state_key))
        .collect();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.to_owned());
    }
    env.push(STATE_DIR_ENV.to_owned());
    runtime.insert("Env".into(), json!(env));

    let labels = object_at(runtime, "Labels").ok_or_else(not_object)?;
    // A base that is itself a packaged image: its PCR labels (a .pcr8 among them) are not ours.
    labels.retain(|k, _| !k.starts_with(PCR_LABEL_PREFIX));
    for (key, value) in pcr_labels(changes.measurements) {
        labels.insert(key, Value::String(value));
    }

    root.insert("created".into(), json!(changes.created));
    let rootfs = object_at(&mut root, "rootfs").ok_or_else(not_object)?;
    let mut diff_ids: Vec<Value> = rootfs
        .get("diff_ids")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    diff_ids.push(json!(changes.diff_id.as_str()));
    rootfs.insert("type".into(), json!("layers"));
    rootfs.insert("diff_ids".into(), Value::Array(diff_ids));

    let mut history: Vec<Value> = root
        .get("history")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    history.push(json!({
        "created": changes.created,
        "created_by": format!(
            "enclave-ctl package (enclave-engine {}): {EIF_PATH} and /usr/local/bin/enclave-*",
            env!("CARGO_PKG_VERSION")
        ),
        "comment": format!("PCR0 {}", changes.measurements.pcr0_hex()),
    }));
    root.insert("history".into(), Value::Array(history));
    Ok(Value::Object(root))
}

/// An OCI descriptor.
pub(super) fn descriptor(media_type: &str, digest: &Digest, size: u64) -> Value {
    json!({ "mediaType": media_type, "digest": digest.as_str(), "size": size })
}

/// The image manifest, with the PCRs as annotations.
pub(super) fn manifest(config: Value, layers: Vec<Value>, m: &Measurements) -> Value {
    let annotations: Map<String, Value> = pcr_labels(m)
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config,
        "layers": layers,
        "annotations": annotations,
    })
}

/// index.json naming the manifest by its tag.
pub(super) fn index(manifest: &Digest, size: u64, tag: &str) -> Value {
    let mut desc = descriptor(OCI_MANIFEST, manifest, size);
    let tag = if tag.is_empty() { DEFAULT_TAG } else { tag };
    desc["annotations"] = json!({ REF_NAME: tag });
    json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [desc] })
}

/// The object under `key`, made when absent or null; `None` when it is something else.
fn object_at<'a>(map: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Map<String, Value>> {
    let slot = map.entry(key).or_insert(Value::Null);
    if slot.is_null() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut()
}

fn strings(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measurements(signed: bool) -> Measurements {
        Measurements {
            pcr0: [0; 48],
            pcr1: [1; 48],
            pcr2: [2; 48],
            pcr8: signed.then_some([8; 48]),
        }
    }

    #[test]
    fn config_keeps_the_base_and_applies_the_contract() {
        let base = json!({
            "architecture": "amd64", "os": "linux",
            "config": {
                "Env": ["PATH=/bin", "ENCLAVE_ENGINE_STATE_DIR=/elsewhere", "A=1"],
                "User": "1000", "WorkingDir": "/app",
                "Labels": {"keep": "x", "dev.enclave-engine.pcr8": "stale"}
            },
            "rootfs": {"type": "layers", "diff_ids": ["sha256:aa"]},
            "history": [{"created_by": "base"}]
        });
        let diff_id = Digest::of(b"layer");
        let m = measurements(false);
        let changes = ConfigChanges {
            name: "hello",
            measurements: &m,
            created: "1970-01-01T00:00:00Z",
            diff_id: &diff_id,
        };
        let c = image_config(&base, &changes, "base").unwrap();
        assert_eq!(c["config"]["Entrypoint"], json!(ENTRYPOINT));
        assert_eq!(c["config"]["Cmd"], json!(["--name", "hello", EIF_PATH]));
        assert_eq!(
            c["config"]["Env"],
            json!(["PATH=/bin", "A=1", STATE_DIR_ENV])
        );
        assert_eq!(c["config"]["User"], "1000");
        assert_eq!(c["config"]["Labels"]["keep"], "x");
        assert_eq!(
            c["config"]["Labels"]["dev.enclave-engine.pcr1"],
            "01".repeat(48)
        );
        assert!(c["config"]["Labels"]
            .get("dev.enclave-engine.pcr8")
            .is_none());
        assert_eq!(c["rootfs"]["diff_ids"][1], diff_id.as_str());
        assert_eq!(c["history"].as_array().map(Vec::len), Some(2));
        assert_eq!(c["created"], "1970-01-01T00:00:00Z");
        assert_eq!(c["architecture"], "amd64");

        // A bare base gets a PATH; a non-object base is refused.
        let c = image_config(&json!({}), &changes, "base").unwrap();
        assert_eq!(c["config"]["Env"][0], DEFAULT_PATH);
        assert!(image_config(&json!([1]), &changes, "base").is_err());
        assert!(image_config(&json!({"config": 3}), &changes, "base").is_err());
    }

    #[test]
    fn signed_images_get_pcr8_and_epochs_format() {
        let labels = pcr_labels(&measurements(true));
        assert_eq!(labels.len(), 4);
        assert_eq!(labels[3].0, "dev.enclave-engine.pcr8");
        assert_eq!(rfc3339(0).unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000).unwrap(), "2023-11-14T22:13:20Z");
        assert!(rfc3339(u64::MAX).is_err());
    }
}
