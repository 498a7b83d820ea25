//! Hostile and broken inputs: each gives a typed error, never a panic.

#[path = "fixtures/helpers.rs"]
mod helpers;

use std::fs;

use enclave_image::rootfs::{EntryProblem, Limits, RootfsError, RootfsTree};
use enclave_image::source::{decompress, Image, ImageRef, SourceError};
use helpers::*;

fn open(reference: &str) -> Result<Image, SourceError> {
    Image::open(&reference.parse::<ImageRef>().unwrap())
}

/// Applies `bytes` as a layer, sniffing the compression as the image path does.
fn apply(bytes: &[u8]) -> Result<RootfsTree, RootfsError> {
    let (_, reader) = decompress(bytes).map_err(|source| RootfsError::Corrupt {
        layer: "test".into(),
        source,
    })?;
    let mut tree = RootfsTree::new();
    tree.apply_layer("test", reader)?;
    Ok(tree)
}

fn problem(result: Result<RootfsTree, RootfsError>) -> EntryProblem {
    match result {
        Err(RootfsError::Entry { problem, layer, .. }) => {
            assert_eq!(layer, "test");
            problem
        }
        other => panic!("expected an entry error, got {other:?}"),
    }
}

#[test]
fn missing_files() {
    for reference in [
        "oci:/nonexistent/layout",
        "oci-archive:/nonexistent.tar",
        "docker-archive:/nonexistent.tar",
        "dir:/nonexistent",
    ] {
        assert!(
            matches!(open(reference), Err(SourceError::Io { .. })),
            "{reference}"
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    let reference = format!("oci:{}", tmp.path().display());
    assert!(matches!(open(&reference), Err(SourceError::Missing(_))));
}

#[test]
fn not_a_tar() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("x.tar");
    fs::write(&path, "this is not a tar archive\n".repeat(100)).unwrap();
    for transport in ["oci-archive", "docker-archive"] {
        let result = open(&format!("{transport}:{}", path.display()));
        assert!(
            matches!(result, Err(SourceError::Archive { .. })),
            "{result:?}"
        );
    }
    // A gzip-compressed archive is refused up front rather than misread.
    fs::write(&path, gzip(&layer(&[file("a", 0o644, b"x")]))).unwrap();
    let result = open(&format!("oci-archive:{}", path.display()));
    assert!(matches!(result, Err(SourceError::CompressedArchive { .. })));
    // And as a layer, garbage is a corrupt-layer error.
    let result = apply(&b"garbage!".repeat(200));
    assert!(
        matches!(result, Err(RootfsError::Corrupt { .. })),
        "{result:?}"
    );
}

#[test]
fn truncated_gzip() {
    let payload: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let gz = gzip(&layer(&[file("big", 0o644, &payload)]));
    for cut in [gz.len() / 2, gz.len() - 4, 11] {
        let result = apply(&gz[..cut]);
        assert!(
            matches!(result, Err(RootfsError::Corrupt { .. })),
            "cut {cut}: {result:?}"
        );
    }
}

#[test]
fn bit_flipped_zstd() {
    let payload = b"some file content that is long enough to matter ".repeat(50);
    let zst = zstd(&layer(&[file("f", 0o644, &payload)]));
    assert!(apply(&zst).is_ok());
    // A flip in the frame header, one in the middle of the data (caught by the content
    // checksum if not by the decoder), and one in the checksum itself.
    // Byte 4 is the frame header descriptor, 0x04 its checksum flag: without it the checksum
    // becomes trailing garbage, which must not pass as a next frame.
    for (at, bit) in [(4, 0x04), (zst.len() / 2, 0x10), (zst.len() - 1, 0x01)] {
        let mut bad = zst.clone();
        bad[at] ^= bit;
        let result = apply(&bad);
        assert!(
            matches!(result, Err(RootfsError::Corrupt { .. })),
            "flip at {at}: {result:?}"
        );
    }
}

#[test]
fn dot_dot_entry() {
    let result = apply(&layer(&[file("../evil", 0o644, b"x")]));
    assert_eq!(problem(result), EntryProblem::DotDot);
    let result = apply(&layer(&[file("etc/../../evil", 0o644, b"x")]));
    assert_eq!(problem(result), EntryProblem::DotDot);
}

#[test]
fn absolute_entry() {
    let result = apply(&layer(&[file("/etc/passwd", 0o644, b"x")]));
    assert_eq!(problem(result), EntryProblem::Absolute);
    // `./etc/x` and `etc/x` are ordinary.
    assert!(apply(&layer(&[
        file("./etc/x", 0o644, b"x"),
        file("etc/y", 0o644, b"y")
    ]))
    .is_ok());
}

#[test]
fn escaping_symlink() {
    let result = apply(&layer(&[symlink("bin/up", "../../etc")]));
    assert!(matches!(problem(result), EntryProblem::SymlinkEscapes(_)));
    // Absolute targets and targets staying inside are fine.
    assert!(apply(&layer(&[
        symlink("bin/sh", "/bin/busybox"),
        symlink("bin/e", "../etc")
    ]))
    .is_ok());
}

#[test]
fn path_through_symlink() {
    let result = apply(&layer(&[
        symlink("etc", "/tmp"),
        file("etc/passwd", 0o644, b"x"),
    ]));
    assert!(matches!(problem(result), EntryProblem::ThroughSymlink(p) if p == "etc"));
    // A whiteout through a symlink is refused too.
    let result = apply(&layer(&[
        symlink("etc", "/tmp"),
        file("etc/.wh.passwd", 0, b""),
    ]));
    assert!(matches!(problem(result), EntryProblem::ThroughSymlink(_)));
}

#[test]
fn hardlink_to_missing_or_escaping_target() {
    let result = apply(&layer(&[hardlink("bin/x", "bin/missing")]));
    assert!(matches!(problem(result), EntryProblem::HardlinkMissing(_)));
    let result = apply(&layer(&[hardlink("bin/x", "../../etc/shadow")]));
    assert!(matches!(problem(result), EntryProblem::HardlinkEscapes(_)));
    let result = apply(&layer(&[hardlink("bin/x", "/etc/shadow")]));
    assert!(matches!(problem(result), EntryProblem::HardlinkEscapes(_)));
    let result = apply(&layer(&[symlink("d", "/etc"), hardlink("x", "d/shadow")]));
    assert!(matches!(problem(result), EntryProblem::HardlinkEscapes(_)));
}

fn one_layer_image(dir: &std::path::Path) -> Vec<u8> {
    let tar = layer(&[file("hello", 0o644, b"hello world")]);
    let config = serde_json::json!({"config": {"Cmd": ["/hello"]}});
    write_oci_layout(
        dir,
        "t",
        &config,
        &[(
            "application/vnd.oci.image.layer.v1.tar",
            tar.clone(),
            tar.clone(),
        )],
    );
    tar
}

#[test]
fn layer_digest_mismatch() {
    let tmp = tempfile::tempdir().unwrap();
    let tar = one_layer_image(tmp.path());
    let reference = format!("oci:{}:t", tmp.path().display());
    // Intact, it builds.
    let image = open(&reference).unwrap();
    RootfsTree::from_image(&image, Limits::default()).unwrap();
    // Same size, one byte of file data changed: only the digest can tell.
    let blob = tmp.path().join("blobs/sha256").join(&sha256(&tar)[7..]);
    let mut bytes = fs::read(&blob).unwrap();
    let at = bytes.windows(11).position(|w| w == b"hello world").unwrap();
    bytes[at] = b'j';
    fs::write(&blob, &bytes).unwrap();
    let result = RootfsTree::from_image(&image, Limits::default());
    assert!(
        matches!(
            result,
            Err(RootfsError::Source(SourceError::DigestMismatch { .. }))
        ),
        "{result:?}"
    );
}

#[test]
fn config_digest_mismatch() {
    let tmp = tempfile::tempdir().unwrap();
    one_layer_image(tmp.path());
    let blobs = tmp.path().join("blobs/sha256");
    for entry in fs::read_dir(&blobs).unwrap() {
        let path = entry.unwrap().path();
        let text = fs::read_to_string(&path).unwrap_or_default();
        if text.contains("/hello") {
            fs::write(&path, text.replace("/hello", "/jello")).unwrap();
        }
    }
    let result = open(&format!("oci:{}:t", tmp.path().display()));
    assert!(
        matches!(result, Err(SourceError::DigestMismatch { .. })),
        "{result:?}"
    );
}

#[test]
fn compression_must_match_a_compressed_media_type() {
    let tmp = tempfile::tempdir().unwrap();
    let tar = layer(&[file("a", 0o644, b"a")]);
    let config = serde_json::json!({});
    write_oci_layout(
        tmp.path(),
        "t",
        &config,
        &[(
            "application/vnd.oci.image.layer.v1.tar+gzip",
            tar.clone(),
            tar,
        )],
    );
    let image = open(&format!("oci:{}", tmp.path().display())).unwrap();
    let result = RootfsTree::from_image(&image, Limits::default());
    assert!(
        matches!(
            result,
            Err(RootfsError::Source(SourceError::CompressionMismatch { .. }))
        ),
        "{result:?}"
    );
}

#[test]
fn tag_selection_errors() {
    let tmp = tempfile::tempdir().unwrap();
    one_layer_image(tmp.path());
    let result = open(&format!("oci:{}:other", tmp.path().display()));
    assert!(
        matches!(result, Err(SourceError::TagNotFound { available, .. }) if available == ["t"])
    );
    // Two manifests and no tag: ambiguous, and the error lists the tags.
    let index_path = tmp.path().join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&fs::read(&index_path).unwrap()).unwrap();
    let mut second = index["manifests"][0].clone();
    second["annotations"]["org.opencontainers.image.ref.name"] = "u".into();
    index["manifests"].as_array_mut().unwrap().push(second);
    fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    let result = open(&format!("oci:{}", tmp.path().display()));
    assert!(
        matches!(result, Err(SourceError::AmbiguousTag { available }) if available == ["t", "u"])
    );
    assert!(open(&format!("oci:{}:u", tmp.path().display())).is_ok());
}
