//! The EIF metadata section: nitro-cli's `EifIdentityInfo` JSON, with our provenance in
//! `CustomMetadata`.
//!
//! The field names are the official crate's, so `nitro-cli describe-eif` and the official reader
//! understand our images. Nothing here comes from the clock or the host: `BuildTime` is
//! SOURCE_DATE_EPOCH, and the provenance lists inputs by content digest only (never host paths),
//! so the section is the same on every machine for the same inputs.

use serde::{Deserialize, Serialize};

/// The build tool name recorded in the metadata.
pub const BUILD_TOOL: &str = "enclave-ctl";

/// Version of the [`Provenance`] format.
pub const PROVENANCE_VERSION: u32 = 1;

/// The metadata section (`EifIdentityInfo` in the official crate).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EifMetadata {
    /// Image name.
    #[serde(rename = "ImageName")]
    pub image_name: String,
    /// Image version.
    #[serde(rename = "ImageVersion")]
    pub image_version: String,
    /// How it was built.
    #[serde(rename = "BuildMetadata")]
    pub build: BuildMetadata,
    /// nitro-cli puts `docker inspect` output here; we put the source image's digests and config.
    #[serde(rename = "DockerInfo")]
    pub docker_info: serde_json::Value,
    /// Our provenance, under the key `enclave-engine` (see [`Provenance`]).
    #[serde(rename = "CustomMetadata")]
    pub custom: serde_json::Value,
}

/// `BuildMetadata` of the official crate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildMetadata {
    /// RFC 3339 time of SOURCE_DATE_EPOCH.
    #[serde(rename = "BuildTime")]
    pub build_time: String,
    /// [`BUILD_TOOL`].
    #[serde(rename = "BuildTool")]
    pub build_tool: String,
    /// This crate's version.
    #[serde(rename = "BuildToolVersion")]
    pub build_tool_version: String,
    /// Always `linux`.
    #[serde(rename = "OperatingSystem")]
    pub operating_system: String,
    /// The kernel's version, from its config.
    #[serde(rename = "KernelVersion")]
    pub kernel_version: String,
}

/// Every input of a build, by digest: enough to rebuild the same bytes, or to tell why two
/// builds differ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    /// [`PROVENANCE_VERSION`].
    pub version: u32,
    /// `nitro` or `emulated`.
    pub kernel_profile: String,
    /// The kernel command line.
    pub cmdline: String,
    /// SOURCE_DATE_EPOCH of the build.
    pub source_date_epoch: i64,
    /// The source image reference's transport (`oci`, `oci-archive`, `docker-archive`, `dir`).
    pub source_transport: String,
    /// Inputs in the order they enter the image.
    pub inputs: Vec<ProvenanceInput>,
}

/// One input file or blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvenanceInput {
    /// What it is: `kernel`, `kernel-config`, `module`, `init`, `image-manifest`, `image-config`,
    /// `layer`, `spec`.
    pub role: String,
    /// A name for people (`vmlinuz`, `virtio.ko`, a media type…).
    pub name: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

impl Provenance {
    /// Reads our provenance back from a metadata section's `CustomMetadata`, if it has one.
    pub fn from_custom(custom: &serde_json::Value) -> Option<Self> {
        serde_json::from_value(custom.get("enclave-engine")?.clone()).ok()
    }

    /// The `CustomMetadata` value holding this provenance.
    pub fn to_custom(&self) -> serde_json::Value {
        serde_json::json!({ "enclave-engine": self })
    }
}

/// RFC 3339 of a Unix time, in the shape chrono's `to_rfc3339` gives nitro-cli
/// (`1970-01-01T00:00:00+00:00`).
pub fn rfc3339(epoch: i64) -> Result<String, String> {
    let t = time::OffsetDateTime::from_unix_timestamp(epoch)
        .map_err(|e| format!("SOURCE_DATE_EPOCH {epoch} is out of range: {e}"))?;
    let fmt =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]+00:00");
    t.format(&fmt)
        .map_err(|e| format!("cannot format time {epoch}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_chrono_shape() {
        assert_eq!(rfc3339(0).unwrap(), "1970-01-01T00:00:00+00:00");
        assert_eq!(rfc3339(1_700_000_000).unwrap(), "2023-11-14T22:13:20+00:00");
        assert!(rfc3339(i64::MAX).is_err());
    }

    #[test]
    fn provenance_round_trips_through_custom_metadata() {
        let p = Provenance {
            version: PROVENANCE_VERSION,
            kernel_profile: "emulated".into(),
            cmdline: "console=ttyS0".into(),
            source_date_epoch: 0,
            source_transport: "oci".into(),
            inputs: vec![ProvenanceInput {
                role: "kernel".into(),
                name: "bzImage".into(),
                digest: "sha256:00".into(),
                size: Some(1),
            }],
        };
        assert_eq!(Provenance::from_custom(&p.to_custom()), Some(p));
        assert_eq!(Provenance::from_custom(&serde_json::json!({})), None);
    }
}
