//! Real images made by umoci and skopeo from busybox-static (tests/fixtures/make-images.sh):
//! every transport gives the expected tree and the same cpio, and GNU cpio extracts that cpio
//! into what umoci unpacked.

#[path = "fixtures/helpers.rs"]
mod helpers;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use enclave_image::rootfs::{EntryKind, Limits, RootfsTree};
use enclave_image::source::{Image, ImageRef};
use helpers::*;

const TOOLS: [&str; 5] = ["busybox", "umoci", "skopeo", "cpio", "tar"];

/// The fixture images, built once per test binary; `None` when tools are missing (skip).
fn fixtures() -> Option<&'static Path> {
    static DIR: OnceLock<Option<tempfile::TempDir>> = OnceLock::new();
    DIR.get_or_init(|| {
        if !require_tools(&TOOLS) {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/make-images.sh");
        sh(&format!("sh {} {}", script.display(), dir.path().display()));
        Some(dir)
    })
    .as_ref()
    .map(|d| d.path())
}

fn references(dir: &Path) -> Vec<String> {
    let d = dir.display();
    vec![
        format!("oci:{d}/layout:app"),
        format!("oci:{d}/layout-zstd:app"),
        format!("oci-archive:{d}/image.oci.tar:app"),
        format!("docker-archive:{d}/image.docker.tar"),
        format!("docker-archive:{d}/image.docker.tar:enclave/app:latest"),
        format!("dir:{d}/rootfs"),
    ]
}

fn build(reference: &str) -> (Image, RootfsTree) {
    let image = Image::open(&reference.parse::<ImageRef>().unwrap()).unwrap();
    let tree = RootfsTree::from_image(&image, Limits::default()).unwrap();
    (image, tree)
}

#[test]
fn every_transport_gives_the_expected_tree() {
    let Some(dir) = fixtures() else { return };
    let busybox_len = fs::metadata(dir.join("rootfs/bin/busybox")).unwrap().len();
    // (path, kind, mode, symlink target); all owned by 0:0.
    let expected: Vec<(&str, EntryKind, u32, Option<&str>)> = vec![
        ("", EntryKind::Dir, 0o755, None),
        ("bin", EntryKind::Dir, 0o755, None),
        ("bin/busybox", EntryKind::File, 0o755, None),
        ("bin/busybox.hard", EntryKind::File, 0o755, None),
        ("bin/ls", EntryKind::Symlink, 0o777, Some("/bin/busybox")),
        ("bin/sh", EntryKind::Symlink, 0o777, Some("busybox")),
        ("bin/suid-tool", EntryKind::File, 0o4755, None),
        ("data", EntryKind::Dir, 0o755, None),
        ("data/keep", EntryKind::Dir, 0o755, None),
        ("data/keep/new", EntryKind::File, 0o644, None),
        ("data/old", EntryKind::Dir, 0o755, None),
        ("data/old/c", EntryKind::File, 0o644, None),
        ("etc", EntryKind::Dir, 0o755, None),
        ("etc/motd2", EntryKind::File, 0o644, None),
        ("etc/passwd", EntryKind::File, 0o644, None),
        ("tmp", EntryKind::Dir, 0o1777, None),
    ];
    for reference in references(dir) {
        let (image, tree) = build(&reference);
        let entries = tree.entries();
        let got: Vec<_> = entries
            .iter()
            .map(|e| {
                (
                    e.path.as_str(),
                    e.kind,
                    e.meta.mode,
                    e.link_target.as_deref(),
                )
            })
            .collect();
        assert_eq!(got, expected, "{reference}");
        assert!(
            entries.iter().all(|e| (e.meta.uid, e.meta.gid) == (0, 0)),
            "{reference}"
        );
        let by_path: BTreeMap<&str, _> = entries.iter().map(|e| (e.path.as_str(), e)).collect();
        assert_eq!(by_path["bin/busybox"].size, busybox_len);
        assert_eq!(
            by_path["bin/busybox"].inode, by_path["bin/busybox.hard"].inode,
            "{reference}"
        );
        assert_ne!(by_path["bin/busybox"].inode, by_path["etc/passwd"].inode);

        if reference.starts_with("dir:") {
            assert!(image.layers.is_empty() && image.config_digest.is_none());
            continue;
        }
        let config = &image.config;
        assert_eq!(
            config.entrypoint.as_deref(),
            Some(&["/bin/sh".to_owned(), "-c".to_owned()][..])
        );
        assert_eq!(config.cmd.as_deref(), Some(&["echo hi".to_owned()][..]));
        assert!(
            config.env.contains(&"FOO=bar".to_owned()),
            "{:?}",
            config.env
        );
        assert!(config.env.contains(&"PATH=/bin".to_owned()));
        assert_eq!(config.working_dir.as_deref(), Some("/data"));
        assert_eq!(config.user.as_deref(), Some("0:0"));
        assert_eq!(image.layers.len(), 3, "{reference}");
        assert!(image.config_digest.is_some());
        assert_eq!(
            image.manifest_digest.is_some(),
            reference.starts_with("oci"),
            "{reference}"
        );
    }
}

#[test]
fn every_transport_gives_the_same_cpio() {
    let Some(dir) = fixtures() else { return };
    let mut outputs = Vec::new();
    for reference in references(dir) {
        let (_, tree) = build(&reference);
        outputs.push((reference, cpio_bytes(&tree)));
    }
    let (first_ref, first) = &outputs[0];
    for (reference, bytes) in &outputs[1..] {
        assert!(bytes == first, "{reference} differs from {first_ref}");
    }
    // The layer digests of oci and oci-archive agree; docker-archive holds the uncompressed
    // layers, identified by their diff ids, which are the same in all three.
    let oci = Image::open(&references(dir)[0].parse().unwrap()).unwrap();
    let docker = Image::open(&references(dir)[3].parse().unwrap()).unwrap();
    let diff_ids = |i: &Image| {
        i.layers
            .iter()
            .map(|l| l.diff_id.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(diff_ids(&oci), diff_ids(&docker));
    assert_eq!(oci.config_digest, docker.config_digest);
}

/// Relative path → (type and mode, content or symlink target, inode) of a host tree.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (u32, Vec<u8>, u64, u32, u32)> {
    let mut out = BTreeMap::new();
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let content = if meta.is_dir() {
                pending.push(path.clone());
                Vec::new()
            } else if meta.file_type().is_symlink() {
                fs::read_link(&path)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes()
            } else {
                fs::read(&path).unwrap()
            };
            let rel = path.strip_prefix(root).unwrap().to_owned();
            out.insert(
                rel,
                (meta.mode(), content, meta.ino(), meta.uid(), meta.gid()),
            );
        }
    }
    out
}

#[test]
fn gnu_cpio_extracts_what_umoci_unpacked() {
    let Some(dir) = fixtures() else { return };
    let (_, tree) = build(&references(dir)[2]);
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("app.cpio");
    fs::write(&archive, cpio_bytes(&tree)).unwrap();
    let out = work.path().join("out");
    fs::create_dir(&out).unwrap();
    sh(&format!(
        "cd {} && cpio -idm --quiet --no-absolute-filenames < {}",
        out.display(),
        archive.display()
    ));
    let extracted = snapshot(&out.join("rootfs"));
    let reference = snapshot(&dir.join("rootfs"));
    let as_root = fs::metadata(&out).unwrap().uid() == 0;
    assert_eq!(
        extracted.keys().collect::<Vec<_>>(),
        reference.keys().collect::<Vec<_>>()
    );
    for (path, (mode, content, _, uid, gid)) in &reference {
        let (x_mode, x_content, _, x_uid, x_gid) = &extracted[path];
        assert_eq!(x_mode, mode, "mode of {}", path.display());
        assert!(x_content == content, "content of {}", path.display());
        if as_root {
            assert_eq!((x_uid, x_gid), (uid, gid), "owner of {}", path.display());
        }
    }
    let ino = |p: &str| extracted[Path::new(p)].2;
    assert_eq!(
        ino("bin/busybox"),
        ino("bin/busybox.hard"),
        "hard link kept"
    );
    assert_ne!(ino("bin/busybox"), ino("bin/suid-tool"));
}
