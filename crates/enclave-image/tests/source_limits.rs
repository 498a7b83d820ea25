//! Tar extension headers (PAX, GNU long names) as the layer reader applies them, and the caps on
//! what a layer may make the build read: extension header size, decompressed bytes, entries.
//! Every cap exceeded is a typed `RootfsError::Limit` naming the layer and the limit.

#[path = "fixtures/helpers.rs"]
mod helpers;

use std::fs;

use enclave_image::rootfs::{
    EntryKind, EntryProblem, ExtensionKind, LimitExceeded, Limits, RootfsError, RootfsTree,
    TreeEntry, MAX_EXTENSION_HEADER,
};
use enclave_image::source::{decompress, Image, ImageRef};
use helpers::*;
use tar::EntryType;

/// Applies `bytes` (sniffed for compression) as the layer `test` of a tree with `limits`.
fn apply_with(limits: Limits, bytes: &[u8]) -> Result<RootfsTree, RootfsError> {
    let (_, reader) = decompress(bytes).unwrap();
    let mut tree = RootfsTree::with_limits(limits);
    tree.apply_layer("test", reader)?;
    Ok(tree)
}

fn apply(bytes: &[u8]) -> Result<RootfsTree, RootfsError> {
    apply_with(Limits::default(), bytes)
}

fn limit_of(result: Result<RootfsTree, RootfsError>) -> (String, LimitExceeded) {
    match result {
        Err(RootfsError::Limit { input, limit }) => (input, limit),
        other => panic!("expected a limit error, got {other:?}"),
    }
}

fn problem_of(result: Result<RootfsTree, RootfsError>) -> EntryProblem {
    match result {
        Err(RootfsError::Entry { problem, .. }) => problem,
        other => panic!("expected an entry error, got {other:?}"),
    }
}

fn find<'a>(entries: &'a [TreeEntry], path: &str) -> &'a TreeEntry {
    entries
        .iter()
        .find(|e| e.path == path)
        .unwrap_or_else(|| panic!("{path} not in {entries:?}"))
}

#[test]
fn pax_records_set_path_link_and_owners() {
    let long_dir = "d".repeat(150);
    let long_path = format!("{long_dir}/file");
    let long_target = format!("{}/file", "t".repeat(200));
    let tar = archive(&[
        entry(dir(&long_dir[..90], 0o755)),
        pax(&[("path", long_dir.as_bytes())]),
        entry(dir("placeholder-dir", 0o755)),
        pax(&[
            ("path", long_path.as_bytes()),
            ("uid", b"3000000"),
            ("gid", b"42"),
            // Ignored: times, xattrs, comments.
            ("mtime", b"1700000000.5"),
            ("SCHILY.xattr.user.note", b"a=b\nc"),
            ("size", b"4"),
        ]),
        entry(file("placeholder", 0o640, b"data")),
        pax(&[("linkpath", long_target.as_bytes())]),
        entry(symlink(&long_dir[..10], "placeholder")),
    ]);
    let tree = apply(&gzip(&tar)).unwrap();
    let entries = tree.entries();
    let f = find(&entries, &long_path);
    assert_eq!((f.kind, f.size), (EntryKind::File, 4));
    assert_eq!(
        (f.meta.uid, f.meta.gid, f.meta.mode),
        (3_000_000, 42, 0o640)
    );
    let link = find(&entries, &long_dir[..10]);
    assert_eq!(link.link_target.as_deref(), Some(&long_target[..]));
    assert!(entries.iter().all(|e| !e.path.contains("placeholder")));
}

#[test]
fn gnu_long_names_and_links_apply() {
    let long_path = format!("{}/file", "n".repeat(300));
    let long_target = format!("/{}", "l".repeat(300));
    let mut name = long_path.clone().into_bytes();
    name.push(0); // GNU tar writes a C string
    let tar = archive(&[
        extension(EntryType::GNULongName, name.len() as u64, &name),
        entry(file("placeholder", 0o600, b"x")),
        extension(
            EntryType::GNULongLink,
            long_target.len() as u64,
            long_target.as_bytes(),
        ),
        entry(symlink("link", "placeholder")),
        // A GNU long name wins over a PAX path, as in the tar crate.
        pax(&[("path", b"from-pax")]),
        extension(EntryType::GNULongName, 8, b"from-gnu"),
        entry(file("placeholder2", 0o600, b"y")),
    ]);
    let entries = apply(&zstd(&tar)).unwrap().entries();
    assert_eq!(find(&entries, &long_path).size, 1);
    assert_eq!(
        find(&entries, "link").link_target.as_deref(),
        Some(&long_target[..])
    );
    find(&entries, "from-gnu");
    assert!(entries.iter().all(|e| e.path != "from-pax"));
}

/// Archives written by GNU tar itself, in its GNU and POSIX (PAX) formats, with a path and a
/// link target over the 100 bytes of a plain header and an owner over the 7 octal digits.
#[test]
fn gnu_tar_archives_with_long_names_read_alike() {
    if !require_tools(&["tar"]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let deep = src.join("a".repeat(120)).join("b".repeat(120));
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("file"), b"long path content").unwrap();
    let target = format!("{}/{}/file", "a".repeat(120), "b".repeat(120));
    std::os::unix::fs::symlink(&target, src.join("link")).unwrap();
    let mut trees = Vec::new();
    for format in ["gnu", "posix"] {
        let out = work.path().join(format!("{format}.tar"));
        sh(&format!(
            "tar --format={format} --owner=app:3000000 --group=app:7 --sort=name -C {} -cf {} .",
            src.display(),
            out.display()
        ));
        let tree = apply(&fs::read(&out).unwrap()).unwrap();
        let entries = tree.entries();
        let f = find(&entries, &target);
        assert_eq!(f.size, 17, "{format}");
        assert_eq!((f.meta.uid, f.meta.gid), (3_000_000, 7), "{format}");
        assert_eq!(
            find(&entries, "link").link_target.as_deref(),
            Some(&target[..])
        );
        trees.push(cpio_bytes(&tree));
    }
    assert!(
        trees[0] == trees[1],
        "GNU and PAX archives give different cpio"
    );
}

/// Each kind of extension header declaring one byte over the cap is refused from its tar header
/// alone: only a few bytes of it follow, so a reader that tried to read it first would report a
/// truncation instead.
#[test]
fn oversized_extension_headers_are_refused_before_their_data() {
    for (kind, expected) in [
        (EntryType::XHeader, ExtensionKind::Pax),
        (EntryType::XGlobalHeader, ExtensionKind::PaxGlobal),
        (EntryType::GNULongName, ExtensionKind::GnuLongName),
        (EntryType::GNULongLink, ExtensionKind::GnuLongLink),
    ] {
        let tar = extension(kind, MAX_EXTENSION_HEADER + 1, b"12 path=abc\n");
        let (input, limit) = limit_of(apply(&gzip(&tar)));
        assert_eq!(input, "layer test");
        assert_eq!(
            limit,
            LimitExceeded::ExtensionHeader {
                kind: expected,
                declared: MAX_EXTENSION_HEADER + 1,
                cap: MAX_EXTENSION_HEADER,
            }
        );
    }
}

#[test]
fn extension_headers_at_the_cap_are_read() {
    // A PAX header of exactly the cap: a path and a comment filling the rest.
    let overhead = pax_records(&[("path", b"big-pax"), ("comment", b"")]).len();
    let mut filler = vec![b'c'; MAX_EXTENSION_HEADER as usize - overhead];
    let mut records = pax_records(&[("path", b"big-pax"), ("comment", &filler)]);
    // The comment's length prefix may have gained a digit.
    while records.len() > MAX_EXTENSION_HEADER as usize {
        filler.pop();
        records = pax_records(&[("path", b"big-pax"), ("comment", &filler)]);
    }
    assert_eq!(records.len() as u64, MAX_EXTENSION_HEADER);
    let global = vec![b'\n'; MAX_EXTENSION_HEADER as usize];
    let tar = archive(&[
        extension(EntryType::XGlobalHeader, MAX_EXTENSION_HEADER, &global),
        extension(EntryType::XHeader, MAX_EXTENSION_HEADER, &records),
        entry(file("placeholder", 0o644, b"z")),
    ]);
    let entries = apply(&gzip(&tar)).unwrap().entries();
    assert_eq!(find(&entries, "big-pax").size, 1);
}

#[test]
fn malformed_or_conflicting_extension_headers_are_refused() {
    let f = || entry(file("f", 0o644, b"data"));
    let two_names = archive(&[
        extension(EntryType::GNULongName, 2, b"a\0"),
        extension(EntryType::GNULongName, 2, b"b\0"),
        f(),
    ]);
    assert_eq!(
        problem_of(apply(&two_names)),
        EntryProblem::DuplicateExtension(ExtensionKind::GnuLongName)
    );
    let two_pax = archive(&[pax(&[("path", b"a")]), pax(&[("path", b"b")]), f()]);
    assert_eq!(
        problem_of(apply(&two_pax)),
        EntryProblem::DuplicateExtension(ExtensionKind::Pax)
    );
    // The record says 8 bytes but has 9.
    let malformed = archive(&[extension(EntryType::XHeader, 9, b"8 path=a\n"), f()]);
    assert_eq!(problem_of(apply(&malformed)), EntryProblem::MalformedPax);
    // A PAX size the header does not share would desynchronise the reader.
    let resized = archive(&[pax(&[("size", b"5000000000")]), f()]);
    assert_eq!(
        problem_of(apply(&resized)),
        EntryProblem::PaxSize {
            pax: 5_000_000_000,
            header: 4
        }
    );
    let sparse = archive(&[pax(&[("GNU.sparse.major", b"1")]), f()]);
    assert!(matches!(
        problem_of(apply(&sparse)),
        EntryProblem::UnsupportedType(_)
    ));
    let bad_uid = archive(&[pax(&[("uid", b"5000000000")]), f()]);
    assert_eq!(
        problem_of(apply(&bad_uid)),
        EntryProblem::InvalidNumber("uid")
    );
    // An extension header with no entry after it: a truncated layer.
    let dangling = archive(&[pax(&[("path", b"a")])]);
    assert!(
        matches!(apply(&dangling), Err(RootfsError::Corrupt { .. })),
        "{:?}",
        apply(&dangling)
    );
}

#[test]
fn layer_size_is_capped_on_the_decompressed_stream() {
    let payload = vec![7u8; 200_000];
    let tar = layer(&[file("big", 0o644, &payload)]);
    let gz = gzip(&tar);
    assert!(gz.len() < 5_000, "the compressed layer is small");
    let exact = tar.len() as u64;
    let limits = |layer_bytes| Limits {
        layer_bytes,
        ..Limits::default()
    };
    assert!(apply_with(limits(exact), &gz).is_ok());
    let (input, limit) = limit_of(apply_with(limits(exact - 1), &gz));
    assert_eq!(input, "layer test");
    assert_eq!(limit, LimitExceeded::LayerBytes { limit: exact - 1 });
    // Bytes after the end of the archive count too (they are read to check the trailer).
    let mut padded = tar.clone();
    padded.extend_from_slice(&[0; 4096]);
    let (_, limit) = limit_of(apply_with(limits(exact), &gzip(&padded)));
    assert_eq!(limit, LimitExceeded::LayerBytes { limit: exact });
}

#[test]
fn rootfs_size_counts_every_layer() {
    let tar = layer(&[file("f", 0o644, &[1u8; 30_000])]);
    let size = tar.len() as u64;
    let limits = Limits {
        layer_bytes: size,
        rootfs_bytes: 2 * size - 1,
        entries: 100,
    };
    let mut tree = RootfsTree::with_limits(limits);
    tree.apply_layer("one", &tar[..]).unwrap();
    let err = tree.apply_layer("two", &tar[..]).unwrap_err();
    assert!(
        matches!(
            &err,
            RootfsError::Limit {
                input,
                limit: LimitExceeded::RootfsBytes { limit },
            } if input == "layer two" && *limit == 2 * size - 1
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "layer two: takes the root filesystem past its size limit of {} bytes",
            2 * size - 1
        )
    );
}

#[test]
fn entries_are_capped_across_layers_without_counting_extension_headers() {
    let one = archive(&[
        pax(&[("path", b"a")]),
        entry(file("x", 0o644, b"1")),
        entry(dir("d", 0o755)),
        entry(file("d/b", 0o644, b"2")),
    ]);
    let limits = |entries| Limits {
        entries,
        ..Limits::default()
    };
    assert!(apply_with(limits(3), &one).is_ok());
    let (input, limit) = limit_of(apply_with(limits(2), &one));
    assert_eq!(input, "layer test");
    assert_eq!(limit, LimitExceeded::Entries { limit: 2 });

    let mut tree = RootfsTree::with_limits(limits(5));
    tree.apply_layer("lower", &one[..]).unwrap();
    let upper = layer(&[file("d/.wh.b", 0, b""), file("c", 0o644, b"3")]);
    tree.apply_layer("upper", &upper[..]).unwrap();
    let err = tree.apply_layer("top", &upper[..]).unwrap_err();
    assert!(
        matches!(&err, RootfsError::Limit { input, limit: LimitExceeded::Entries { limit: 5 } } if input == "layer top"),
        "{err:?}"
    );
}

/// Through a real OCI layout, the error names the layer by its digest.
#[test]
fn an_image_layer_over_a_limit_is_named_by_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let tar = layer(&[file("big", 0o644, &vec![0u8; 1 << 20])]);
    let blob = gzip(&tar);
    write_oci_layout(
        tmp.path(),
        "t",
        &serde_json::json!({"config": {"Cmd": ["/big"]}}),
        &[(
            "application/vnd.oci.image.layer.v1.tar+gzip",
            blob.clone(),
            tar,
        )],
    );
    let reference: ImageRef = format!("oci:{}:t", tmp.path().display()).parse().unwrap();
    let image = Image::open(&reference).unwrap();
    let limits = Limits {
        layer_bytes: 512 * 1024,
        ..Limits::default()
    };
    let (input, limit) = limit_of(RootfsTree::from_image(&image, limits));
    assert_eq!(input, format!("layer {}", sha256(&blob)));
    assert_eq!(limit, LimitExceeded::LayerBytes { limit: 512 * 1024 });
    assert!(RootfsTree::from_image(&image, Limits::default()).is_ok());
}

#[test]
fn dir_inputs_are_held_to_the_entry_and_size_limits() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path();
    fs::create_dir(root.join("d")).unwrap();
    fs::write(root.join("d/a"), [0u8; 1000]).unwrap();
    fs::write(root.join("b"), [0u8; 1000]).unwrap();
    // A hard link's bytes are stored once, so they count once.
    fs::hard_link(root.join("b"), root.join("c")).unwrap();
    let limits = |entries, rootfs_bytes| Limits {
        layer_bytes: 0,
        rootfs_bytes,
        entries,
    };
    assert!(RootfsTree::from_dir(root, limits(4, 2000)).is_ok());
    let input = format!("dir:{}", root.display());
    for (limits, expected) in [
        (limits(3, 2000), LimitExceeded::Entries { limit: 3 }),
        (limits(4, 1999), LimitExceeded::RootfsBytes { limit: 1999 }),
    ] {
        match RootfsTree::from_dir(root, limits) {
            Err(RootfsError::Limit { input: i, limit }) => {
                assert_eq!((i, limit), (input.clone(), expected));
            }
            other => panic!("{other:?}"),
        }
    }
}
