//! docker-archive layouts that skopeo does not write: Docker 25+'s OCI layout inside
//! `docker save` (`blobs/sha256/<hex>`), and classic `<id>/layer.tar` symlinks.

#[path = "fixtures/helpers.rs"]
mod helpers;

use std::path::Path;

use enclave_image::rootfs::{Limits, RootfsError, RootfsTree};
use enclave_image::source::{Image, ImageRef, SourceError};
use helpers::*;

/// Appends a regular file or a symlink to a tar being built.
fn add(builder: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8], link: Option<&str>) {
    let mut header = tar::Header::new_gnu();
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_size(if link.is_some() { 0 } else { data.len() as u64 });
    match link {
        Some(target) => {
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_link_name(target).unwrap();
        }
        None => header.set_entry_type(tar::EntryType::Regular),
    }
    header.set_path(path).unwrap();
    header.set_cksum();
    builder.append(&header, data).unwrap();
}

/// A docker-archive with one layer; `oci_layout` picks where the blobs go. Returns the layer.
fn write_archive(path: &Path, oci_layout: bool, corrupt_layer: bool) -> Vec<u8> {
    let tar = layer(&[file("etc/hostname", 0o644, b"enclave\n")]);
    let config = serde_json::json!({
        "config": {"Entrypoint": ["/bin/true"], "Env": ["A=1"]},
        "rootfs": {"type": "layers", "diff_ids": [sha256(&tar)]},
    });
    let config = serde_json::to_vec(&config).unwrap();
    let mut stored = tar.clone();
    if corrupt_layer {
        let at = stored.windows(8).position(|w| w == b"enclave\n").unwrap();
        stored[at] = b'E';
    }
    let mut builder = tar::Builder::new(Vec::new());
    let (config_path, layer_path) = if oci_layout {
        let config_path = format!("blobs/sha256/{}", &sha256(&config)[7..]);
        let layer_path = format!("blobs/sha256/{}", &sha256(&tar)[7..]);
        add(&mut builder, &config_path, &config, None);
        add(&mut builder, &layer_path, &stored, None);
        (config_path, layer_path)
    } else {
        let config_path = format!("{}.json", &sha256(&config)[7..]);
        let blob = format!("{}.tar", &sha256(&tar)[7..]);
        add(&mut builder, &config_path, &config, None);
        add(&mut builder, &blob, &stored, None);
        add(
            &mut builder,
            "0123abcd/layer.tar",
            b"",
            Some(&format!("../{blob}")),
        );
        (config_path, "0123abcd/layer.tar".to_owned())
    };
    let manifest = serde_json::json!([{
        "Config": config_path,
        "RepoTags": ["example.com/app:v1"],
        "Layers": [layer_path],
    }]);
    add(
        &mut builder,
        "manifest.json",
        &serde_json::to_vec(&manifest).unwrap(),
        None,
    );
    std::fs::write(path, builder.into_inner().unwrap()).unwrap();
    tar
}

#[test]
fn both_docker_layouts_read_alike() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cpios = Vec::new();
    for oci_layout in [false, true] {
        let path = tmp.path().join(format!("d{oci_layout}.tar"));
        write_archive(&path, oci_layout, false);
        let reference: ImageRef = format!("docker-archive:{}:example.com/app:v1", path.display())
            .parse()
            .unwrap();
        let image = Image::open(&reference).unwrap();
        assert_eq!(image.config.entrypoint, Some(vec!["/bin/true".to_owned()]));
        assert_eq!(image.config.env, ["A=1"]);
        let tree = RootfsTree::from_image(&image, Limits::default()).unwrap();
        let paths: Vec<String> = tree.entries().into_iter().map(|e| e.path).collect();
        assert_eq!(paths, ["", "etc", "etc/hostname"]);
        cpios.push(cpio_bytes(&tree));
    }
    assert_eq!(cpios[0], cpios[1]);
}

#[test]
fn docker_layer_checked_against_diff_id() {
    let tmp = tempfile::tempdir().unwrap();
    for oci_layout in [false, true] {
        let path = tmp.path().join("bad.tar");
        write_archive(&path, oci_layout, true);
        let image = Image::open(
            &format!("docker-archive:{}", path.display())
                .parse()
                .unwrap(),
        )
        .unwrap();
        let result = RootfsTree::from_image(&image, Limits::default());
        assert!(
            matches!(
                result,
                Err(RootfsError::Source(SourceError::DigestMismatch { .. }))
            ),
            "{result:?}"
        );
    }
}

#[test]
fn docker_tag_not_found_lists_tags() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("d.tar");
    write_archive(&path, false, false);
    let reference: ImageRef = format!("docker-archive:{}:other:v1", path.display())
        .parse()
        .unwrap();
    let result = Image::open(&reference);
    assert!(
        matches!(&result, Err(SourceError::TagNotFound { available, .. }) if available == &["example.com/app:v1"]),
        "{result:?}"
    );
}
