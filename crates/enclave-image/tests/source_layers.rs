//! Layer semantics (whiteouts, opaque directories, type changes, links, modes) and the cpio
//! they produce, on hand-made layers.

#[path = "fixtures/helpers.rs"]
mod helpers;

use enclave_image::cpio::CpioWriter;
use enclave_image::rootfs::{EntryKind, RootfsTree};
use helpers::*;

fn tree(layers: &[Vec<u8>]) -> RootfsTree {
    let mut tree = RootfsTree::new();
    for (i, layer) in layers.iter().enumerate() {
        tree.apply_layer(&format!("layer{i}"), &layer[..]).unwrap();
    }
    tree
}

fn paths(tree: &RootfsTree) -> Vec<String> {
    tree.entries().into_iter().map(|e| e.path).collect()
}

#[test]
fn whiteouts_and_opaque_dirs() {
    let lower = layer(&[
        file("etc/gone", 0o644, b"x"),
        file("etc/kept", 0o644, b"x"),
        file("opq/lower", 0o644, b"x"),
        file("opq/sub/deep", 0o644, b"x"),
        file("opq2/lower", 0o644, b"x"),
    ]);
    let upper = layer(&[
        file("etc/.wh.gone", 0, b""),
        file("etc/.wh.never-existed", 0, b""),
        // The marker may come before or after the layer's own entries.
        dir("opq", 0o750),
        file("opq/.wh..wh..opq", 0, b""),
        file("opq/sub/upper", 0o600, b"u"),
        file("opq2/new", 0o644, b"n"),
        file("opq2/.wh..wh..opq", 0, b""),
        // A whiteout only hides lower entries, not this layer's own.
        file("same/x", 0o644, b"x"),
        file("same/.wh.x", 0, b""),
    ]);
    let t = tree(&[lower, upper]);
    assert_eq!(
        paths(&t),
        [
            "",
            "etc",
            "etc/kept",
            "opq",
            "opq/sub",
            "opq/sub/upper",
            "opq2",
            "opq2/new",
            "same",
            "same/x"
        ]
    );
    let opq = t.entries().into_iter().find(|e| e.path == "opq").unwrap();
    assert_eq!(opq.meta.mode, 0o750);
    // Parents created for `etc/gone` got the defaults.
    let etc = t.entries().into_iter().find(|e| e.path == "etc").unwrap();
    assert_eq!((etc.meta.mode, etc.meta.uid, etc.meta.gid), (0o755, 0, 0));
}

#[test]
fn type_changes_follow_overlayfs() {
    let lower = layer(&[
        file("a/x", 0o644, b"x"),
        file("b", 0o644, b"b"),
        symlink("c", "b"),
    ]);
    let upper = layer(&[
        file("a", 0o600, b"now a file"),
        dir("b", 0o700),
        file("b/y", 0o644, b"y"),
        dir("c", 0o755),
    ]);
    let t = tree(&[lower, upper]);
    let entries = t.entries();
    let kinds: Vec<(&str, EntryKind)> = entries.iter().map(|e| (e.path.as_str(), e.kind)).collect();
    assert_eq!(
        kinds,
        [
            ("", EntryKind::Dir),
            ("a", EntryKind::File),
            ("b", EntryKind::Dir),
            ("b/y", EntryKind::File),
            ("c", EntryKind::Dir)
        ]
    );
}

#[test]
fn modes_owners_devices_kept() {
    let mut builder = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Char);
    h.set_path("dev/null").unwrap();
    h.set_mode(0o666);
    h.set_device_major(1).unwrap();
    h.set_device_minor(3).unwrap();
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(0);
    h.set_cksum();
    builder.append(&h, &b""[..]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Fifo);
    h.set_path("run/fifo").unwrap();
    h.set_mode(0o600);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(0);
    h.set_cksum();
    builder.append(&h, &b""[..]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_path("usr/bin/suid").unwrap();
    h.set_mode(0o4755);
    h.set_uid(1000);
    h.set_gid(1001);
    h.set_size(2);
    h.set_cksum();
    builder.append(&h, &b"#!"[..]).unwrap();
    let devs = builder.into_inner().unwrap();
    let t = tree(&[devs, layer(&[dir("tmp", 0o1777)])]);

    let cpio = parse_newc(&cpio_bytes(&t));
    let find = |name: &str| cpio.iter().find(|e| e.name == name).unwrap().clone();
    let null = find("rootfs/dev/null");
    assert_eq!((null.mode, null.rdev), (0o020666, (1, 3)));
    assert_eq!(find("rootfs/run/fifo").mode, 0o010600);
    let suid = find("rootfs/usr/bin/suid");
    assert_eq!(
        (suid.mode, suid.uid, suid.gid, suid.data.as_slice()),
        (0o104755, 1000, 1001, &b"#!"[..])
    );
    assert_eq!(find("rootfs/tmp").mode, 0o041777);
    assert!(cpio.iter().all(|e| e.mtime == 0));
}

#[test]
fn cpio_order_inodes_and_hardlinks() {
    let t = tree(&[
        layer(&[
            file("b/data", 0o755, b"payload"),
            hardlink("a/link", "b/data"),
            hardlink("c", "b/data"),
            file("a-b", 0o644, b"z"),
            symlink("a/sym", "../b/data"),
        ]),
        // A later layer replacing one link leaves the others sharing the old file.
        layer(&[file("c", 0o644, b"replaced")]),
    ]);
    let mut writer = CpioWriter::new(Vec::new(), 1_700_000_000);
    t.write_cpio("rootfs", &mut writer).unwrap();
    let entries = parse_newc(&writer.finish().unwrap());
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    // Component-wise order: "a" < "a/…" < "a-b" although '-' < '/' bytewise.
    assert_eq!(
        names,
        [
            "rootfs",
            "rootfs/a",
            "rootfs/a/link",
            "rootfs/a/sym",
            "rootfs/a-b",
            "rootfs/b",
            "rootfs/b/data",
            "rootfs/c"
        ]
    );
    assert!(entries.iter().all(|e| e.mtime == 1_700_000_000));
    let link = &entries[2];
    let data = &entries[6];
    assert_eq!(link.ino, data.ino);
    assert_eq!((link.nlink, data.nlink), (2, 2));
    // GNU cpio convention: the data is on the last link.
    assert!(link.data.is_empty());
    assert_eq!(data.data, b"payload");
    assert_eq!(entries[3].data, b"../b/data");
    assert_eq!(entries[7].data, b"replaced");
    let mut inos: Vec<u32> = entries.iter().map(|e| e.ino).collect();
    inos.dedup();
    inos.sort();
    inos.dedup();
    assert_eq!(
        inos.len(),
        entries.len() - 1,
        "one shared inode, all others distinct"
    );
}

#[test]
fn compressed_layers_apply_alike() {
    let tar = layer(&[
        file("x/y", 0o644, &b"content".repeat(1000)),
        symlink("x/z", "y"),
    ]);
    let plain = cpio_bytes(&tree(std::slice::from_ref(&tar)));
    for blob in [gzip(&tar), zstd(&tar)] {
        let (_, reader) = enclave_image::source::decompress(&blob[..]).unwrap();
        let mut t = RootfsTree::new();
        t.apply_layer("l", reader).unwrap();
        assert_eq!(cpio_bytes(&t), plain);
    }
}

#[test]
fn prefixless_cpio_has_no_root_entry() {
    let t = tree(&[layer(&[file("init", 0o755, b"#!")])]);
    let mut writer = CpioWriter::new(Vec::new(), 0);
    t.write_cpio("", &mut writer).unwrap();
    let entries = parse_newc(&writer.finish().unwrap());
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].name, "init");
}

/// The `layer_reader` fuzz target's body on seeds: valid layers of each compression, and
/// truncated / corrupted variants of them.
#[test]
fn fuzz_body_on_seeds() {
    let tar = layer(&[
        dir("d", 0o755),
        file("d/f", 0o644, b"data"),
        hardlink("d/g", "d/f"),
        symlink("d/s", "f"),
        file("d/.wh.f", 0, b""),
        file("d/.wh..wh..opq", 0, b""),
    ]);
    // Extension headers: PAX records, GNU long names and links, a global header, one over
    // the cap (truncated), and data past the tight limits of the fuzz body's second pass.
    let long = "l".repeat(120);
    let extended = archive(&[
        extension(tar::EntryType::XGlobalHeader, 18, b"18 comment=global\n"),
        pax(&[
            ("path", long.as_bytes()),
            ("uid", b"70000"),
            ("linkpath", b"x"),
        ]),
        entry(file("p", 0o644, &[5u8; 9000])),
        extension(
            tar::EntryType::GNULongName,
            121,
            format!("{long}\0").as_bytes(),
        ),
        extension(tar::EntryType::GNULongLink, 4, b"tgt\0"),
        entry(symlink("s", "x")),
        extension(tar::EntryType::XHeader, 1 << 30, b"truncated"),
    ]);
    let mut seeds = vec![Vec::new(), b"garbage".to_vec(), vec![0u8; 1024]];
    for blob in [
        tar.clone(),
        gzip(&tar),
        zstd(&tar),
        extended.clone(),
        gzip(&extended),
    ] {
        seeds.push(blob[..blob.len() / 2].to_vec());
        let mut flipped = blob.clone();
        let mid = flipped.len() / 3;
        flipped[mid] ^= 0x40;
        seeds.push(flipped);
        seeds.push(blob);
    }
    for seed in &seeds {
        enclave_image::rootfs::fuzz_layer(seed);
    }
}
