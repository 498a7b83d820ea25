//! Writing the OCI image layout, atomically.
//!
//! Everything is assembled in a temporary directory made next to the output (same file system,
//! so the final rename is atomic); the base's blobs are verified as they are copied, so a
//! corrupt base fails before anything is renamed. An `oci:` output is that directory, renamed
//! into place; an `oci-archive:` output is a deterministic tar of it, written to a temporary file
//! and renamed over the target. On any error the temporaries are removed (tempfile's drop).
//!
//! An existing, non-empty output directory is refused rather than merged into: adding a tag to
//! a layout in place could not be atomic, and a half-updated layout is worse than an error.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::config::{self, ConfigChanges, OCI_CONFIG, OCI_LAYER_GZIP};
use super::tarball::{self, LayerDigests, TarFile};
use super::{PackageError, Target};
use crate::eif::Measurements;
use crate::source::{Compression, Digest, Image};

/// The inputs of one layout.
pub(super) struct Plan<'a> {
    pub base: &'a Image,
    pub base_name: &'a str,
    pub files: &'a [TarFile],
    pub measurements: &'a Measurements,
    pub name: &'a str,
    pub created: &'a str,
    pub epoch: u64,
    pub target: &'a Target,
}

/// What [`write`] wrote.
pub(super) struct Written {
    pub manifest_digest: Digest,
    pub config_digest: Digest,
    pub layer: LayerDigests,
}

/// Writes the image to `plan.target`, atomically.
pub(super) fn write(plan: &Plan<'_>) -> Result<Written, PackageError> {
    let target = plan.target.path();
    let parent = parent_dir(target);
    check_target(plan.target)?;
    let tmp = tempfile::Builder::new()
        .prefix(".enclave-ctl-package-")
        .tempdir_in(&parent)
        .map_err(PackageError::io(&parent))?;
    let written = fill(tmp.path(), plan)?;
    match plan.target {
        Target::Dir { dir, .. } => {
            fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755))
                .map_err(PackageError::io(tmp.path()))?;
            // Checked again: the directory may have appeared meanwhile. rename(2) replaces only
            // an empty directory, so a non-empty one that appeared is still never clobbered.
            check_target(plan.target)?;
            fs::rename(tmp.path(), dir).map_err(PackageError::io(dir))?;
            // Renamed: nothing left for the guard to remove.
            let _ = tmp.keep();
            sync_dir(&parent);
        }
        Target::Archive { file, .. } => {
            let mut out = tempfile::Builder::new()
                .prefix(".enclave-ctl-package-")
                .suffix(".tar")
                .tempfile_in(&parent)
                .map_err(PackageError::io(&parent))?;
            archive(tmp.path(), plan.epoch, out.as_file_mut(), file)?;
            out.as_file()
                .set_permissions(fs::Permissions::from_mode(0o644))
                .map_err(PackageError::io(file))?;
            out.persist(file)
                .map_err(|e| PackageError::io(file)(e.error))?;
            sync_dir(&parent);
        }
    }
    Ok(written)
}

/// Copies the base's blobs, writes the new layer, config, manifest, index.json and oci-layout
/// into `root`.
fn fill(root: &Path, plan: &Plan<'_>) -> Result<Written, PackageError> {
    let blobs = root.join("blobs/sha256");
    fs::create_dir_all(&blobs).map_err(PackageError::io(&blobs))?;
    write_file(
        &root.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;

    let mut layers = Vec::with_capacity(plan.base.layers.len() + 1);
    for (i, layer) in plan.base.layers.iter().enumerate() {
        let media_type =
            oci_layer_type(&layer.media_type).ok_or_else(|| PackageError::LayerMediaType {
                reference: plan.base_name.to_owned(),
                layer: layer.digest.to_string(),
                media_type: layer.media_type.clone(),
            })?;
        let partial = blobs.join(".partial");
        let (digest, size) = {
            let mut out = create(&partial)?;
            let copied =
                plan.base
                    .copy_layer_blob(i, &mut out)
                    .map_err(|source| PackageError::Base {
                        reference: plan.base_name.to_owned(),
                        source,
                    })?;
            finish(out, &partial)?;
            copied
        };
        let blob = blobs.join(digest.hex());
        fs::rename(&partial, &blob).map_err(PackageError::io(&blob))?;
        layers.push(config::descriptor(media_type, &digest, size));
    }

    let partial = blobs.join(".layer");
    let layer = {
        let mut out = create(&partial)?;
        let digests = tarball::write_layer(plan.files, plan.epoch, &mut out, &partial)?;
        finish(out, &partial)?;
        digests
    };
    let blob = blobs.join(layer.digest.hex());
    fs::rename(&partial, &blob).map_err(PackageError::io(&blob))?;
    layers.push(config::descriptor(
        OCI_LAYER_GZIP,
        &layer.digest,
        layer.size,
    ));

    let image_config = config::image_config(
        &plan.base.raw_config,
        &ConfigChanges {
            name: plan.name,
            measurements: plan.measurements,
            created: plan.created,
            diff_id: &layer.diff_id,
        },
        plan.base_name,
    )?;
    let (config_digest, config_size) = write_blob(&blobs, &image_config)?;
    let manifest = config::manifest(
        config::descriptor(OCI_CONFIG, &config_digest, config_size),
        layers,
        plan.measurements,
    );
    let (manifest_digest, manifest_size) = write_blob(&blobs, &manifest)?;
    let index = config::index(&manifest_digest, manifest_size, plan.target.tag());
    write_file(&root.join("index.json"), &to_json(&index))?;
    Ok(Written {
        manifest_digest,
        config_digest,
        layer,
    })
}

/// The OCI media type of a base layer: OCI types as they are, Docker's mapped to the OCI type
/// with the same meaning (the bytes, so the digest, are unchanged). `None` for anything else.
fn oci_layer_type(media_type: &str) -> Option<&str> {
    const DOCKER_FOREIGN: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
    match media_type {
        "application/vnd.docker.image.rootfs.diff.tar" => {
            Some("application/vnd.oci.image.layer.v1.tar")
        }
        "application/vnd.docker.image.rootfs.diff.tar.gzip" => Some(OCI_LAYER_GZIP),
        "application/vnd.docker.image.rootfs.diff.tar.zstd" => {
            Some("application/vnd.oci.image.layer.v1.tar+zstd")
        }
        DOCKER_FOREIGN => Some("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"),
        t if t.starts_with("application/vnd.oci.image.layer.")
            && Compression::from_media_type(t).is_ok() =>
        {
            Some(t)
        }
        _ => None,
    }
}

/// An `oci-archive:`: the layout's files as a deterministic tar.
fn archive(root: &Path, epoch: u64, out: &mut File, target: &Path) -> Result<(), PackageError> {
    let mut files = vec![
        TarFile {
            path: "oci-layout".into(),
            source: root.join("oci-layout"),
            mode: 0o644,
        },
        TarFile {
            path: "index.json".into(),
            source: root.join("index.json"),
            mode: 0o644,
        },
    ];
    let blobs = root.join("blobs/sha256");
    for entry in fs::read_dir(&blobs).map_err(PackageError::io(&blobs))? {
        let entry = entry.map_err(PackageError::io(&blobs))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        files.push(TarFile {
            path: format!("blobs/sha256/{name}"),
            source: entry.path(),
            mode: 0o644,
        });
    }
    let mut writer = BufWriter::new(out);
    tarball::write_tar(&files, epoch, &mut writer, target)?;
    let out = writer
        .into_inner()
        .map_err(|e| PackageError::io(target)(e.into_error()))?;
    out.sync_all().map_err(PackageError::io(target))
}

/// Refuses an output directory that exists and is not empty, or an output that is a directory
/// when an archive is asked for.
fn check_target(target: &Target) -> Result<(), PackageError> {
    match target {
        Target::Dir { dir, .. } => match fs::read_dir(dir) {
            Ok(mut entries) => match entries.next() {
                Some(_) => Err(PackageError::OutputExists(dir.clone())),
                None => Ok(()),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
                Err(PackageError::OutputExists(dir.clone()))
            }
            Err(e) => Err(PackageError::io(dir)(e)),
        },
        Target::Archive { file, .. } if file.is_dir() => {
            Err(PackageError::OutputExists(file.clone()))
        }
        Target::Archive { .. } => Ok(()),
    }
}

/// The directory the temporaries go in: the output's parent (`.` for a bare name).
fn parent_dir(target: &Path) -> PathBuf {
    match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// Compact JSON; serialising a `Value` cannot fail.
fn to_json(value: &Value) -> Vec<u8> {
    value.to_string().into_bytes()
}

/// Writes a JSON blob under its digest; returns digest and size.
fn write_blob(blobs: &Path, value: &Value) -> Result<(Digest, u64), PackageError> {
    let bytes = to_json(value);
    let digest = Digest::of(&bytes);
    write_file(&blobs.join(digest.hex()), &bytes)?;
    Ok((digest, bytes.len() as u64))
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), PackageError> {
    let mut out = create(path)?;
    out.write_all(bytes).map_err(PackageError::io(path))?;
    finish(out, path)
}

fn create(path: &Path) -> Result<BufWriter<File>, PackageError> {
    File::create(path)
        .map(BufWriter::new)
        .map_err(PackageError::io(path))
}

/// Flushes and syncs a written file, so that what is renamed into place is on disk.
fn finish(out: BufWriter<File>, path: &Path) -> Result<(), PackageError> {
    let file = out
        .into_inner()
        .map_err(|e| PackageError::io(path)(e.into_error()))?;
    file.sync_all().map_err(PackageError::io(path))
}

/// Best effort: the rename itself on disk.
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_media_types() {
        assert_eq!(
            oci_layer_type("application/vnd.docker.image.rootfs.diff.tar"),
            Some("application/vnd.oci.image.layer.v1.tar")
        );
        assert_eq!(
            oci_layer_type("application/vnd.oci.image.layer.v1.tar+gzip"),
            Some(OCI_LAYER_GZIP)
        );
        assert_eq!(
            oci_layer_type("application/vnd.oci.image.config.v1+json"),
            None
        );
        assert_eq!(oci_layer_type("text/plain"), None);
    }

    #[test]
    fn existing_outputs() {
        let dir = tempfile::tempdir().unwrap();
        let target = |p: PathBuf| Target::Dir {
            dir: p,
            tag: "t".into(),
        };
        assert!(check_target(&target(dir.path().join("new"))).is_ok());
        assert!(check_target(&target(dir.path().to_owned())).is_ok());
        fs::write(dir.path().join("f"), b"x").unwrap();
        assert!(matches!(
            check_target(&target(dir.path().to_owned())),
            Err(PackageError::OutputExists(_))
        ));
        let archive = Target::Archive {
            file: dir.path().to_owned(),
            tag: "t".into(),
        };
        assert!(check_target(&archive).is_err());
        assert_eq!(parent_dir(Path::new("out")), PathBuf::from("."));
    }
}
