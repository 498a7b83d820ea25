//! `dir:` inputs: the cpio depends only on what the directory holds, not on where it is, when
//! it was made, the umask or the host's owners.

#[path = "fixtures/helpers.rs"]
mod helpers;

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use enclave_image::rootfs::{EntryProblem, Limits, RootfsError, RootfsTree};
use enclave_image::source::{Image, ImageRef};
use helpers::*;

/// A small rootfs with the interesting kinds of entries.
fn make_rootfs(root: &Path) {
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::create_dir_all(root.join("etc/conf.d")).unwrap();
    fs::create_dir_all(root.join("tmp")).unwrap();
    fs::write(root.join("bin/tool"), b"#!/bin/sh\necho tool\n").unwrap();
    fs::hard_link(root.join("bin/tool"), root.join("bin/tool-again")).unwrap();
    fs::write(root.join("etc/conf.d/a.conf"), b"a=1\n").unwrap();
    fs::write(root.join("etc/empty"), b"").unwrap();
    symlink("tool", root.join("bin/alias")).unwrap();
    symlink("/etc/conf.d", root.join("conf")).unwrap();
    let set = |p: &str, mode| {
        fs::set_permissions(root.join(p), fs::Permissions::from_mode(mode)).unwrap()
    };
    set("bin/tool", 0o4755);
    set("etc/conf.d/a.conf", 0o600);
    set("tmp", 0o1777);
}

fn cpio_of_dir(dir: &Path) -> Vec<u8> {
    let reference: ImageRef = format!("dir:{}", dir.display()).parse().unwrap();
    let image = Image::open(&reference).unwrap();
    cpio_bytes(&RootfsTree::from_image(&image, Limits::default()).unwrap())
}

#[test]
fn copies_with_other_mtimes_and_umask_give_identical_cpio() {
    if !require_tools(&["cp", "touch", "find"]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let original = work.path().join("original");
    make_rootfs(&original);
    let (a, b) = (
        work.path().join("copy-a"),
        work.path().join("deeper/copy-b"),
    );
    sh(&format!(
        "umask 022 && cp -a {o} {a} && find {a} -exec touch -h -d '2001-01-01 00:00' {{}} +",
        o = original.display(),
        a = a.display()
    ));
    sh(&format!(
        "umask 077 && mkdir -p {p} && cp -a {o} {b} && find {b} -exec touch -h -d '2024-06-30 12:34' {{}} + && chmod 700 {b}",
        p = b.parent().unwrap().display(),
        o = original.display(),
        b = b.display()
    ));
    let (ca, cb) = (cpio_of_dir(&a), cpio_of_dir(&b));
    assert!(ca == cb, "cpio differs between copies");
    assert_eq!(ca, cpio_of_dir(&original));

    let entries = parse_newc(&ca);
    let find = |n: &str| entries.iter().find(|e| e.name == n).unwrap();
    assert_eq!(
        find("rootfs").mode,
        0o040755,
        "root is 0755 whatever the host dir"
    );
    assert_eq!(find("rootfs/bin/tool").mode, 0o104755);
    assert_eq!(find("rootfs/tmp").mode, 0o041777);
    assert_eq!(find("rootfs/conf").data, b"/etc/conf.d");
    assert_eq!(
        find("rootfs/bin/tool").ino,
        find("rootfs/bin/tool-again").ino
    );
    assert!(entries
        .iter()
        .all(|e| e.uid == 0 && e.gid == 0 && e.mtime == 0));
}

#[test]
fn escaping_symlink_in_dir_is_refused() {
    let work = tempfile::tempdir().unwrap();
    fs::create_dir(work.path().join("bin")).unwrap();
    symlink("../../../etc/shadow", work.path().join("bin/x")).unwrap();
    let result = RootfsTree::from_dir(work.path(), Limits::default());
    assert!(
        matches!(
            result,
            Err(RootfsError::HostEntry {
                problem: EntryProblem::SymlinkEscapes(_),
                ..
            })
        ),
        "{result:?}"
    );
}

#[test]
fn dir_reference_must_be_a_directory() {
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("f");
    fs::write(&file, b"x").unwrap();
    let reference: ImageRef = format!("dir:{}", file.display()).parse().unwrap();
    assert!(Image::open(&reference).is_err());
}
