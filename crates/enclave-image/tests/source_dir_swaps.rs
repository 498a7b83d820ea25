//! `dir:` inputs changed between the walk and the read. Whoever can write in the input
//! directory can swap a walked file (or a directory on its way) for a symlink to a host secret,
//! or for a hard link to one; the build must then fail naming the path, and the secret's bytes
//! must appear in no output. The walk (`RootfsTree::from_dir`) and the read
//! (`RootfsTree::write_cpio`) are separate calls, so the swap happens between them here, as it
//! would between the two phases of a build.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use enclave_image::cpio::CpioWriter;
use enclave_image::rootfs::{HostChange, Limits, RootfsError, RootfsTree};

/// Same length as the public file it stands in for, so that a size check alone cannot tell.
const SECRET: &[u8] = b"SECRET-host-key-0123456789";
const PUBLIC: &[u8] = b"public configuration data.";

struct Setup {
    _work: tempfile::TempDir,
    rootfs: PathBuf,
    /// A directory outside the input holding `config` with the secret.
    secret_dir: PathBuf,
}

fn setup() -> Setup {
    assert_eq!(SECRET.len(), PUBLIC.len());
    let work = tempfile::tempdir().unwrap();
    let rootfs = work.path().join("rootfs");
    let secret_dir = work.path().join("host-secrets");
    fs::create_dir_all(rootfs.join("etc")).unwrap();
    fs::create_dir_all(rootfs.join("bin")).unwrap();
    fs::create_dir_all(&secret_dir).unwrap();
    fs::write(rootfs.join("etc/config"), PUBLIC).unwrap();
    fs::write(rootfs.join("bin/tool"), b"#!/bin/sh\n").unwrap();
    fs::write(secret_dir.join("config"), SECRET).unwrap();
    Setup {
        _work: work,
        rootfs,
        secret_dir,
    }
}

/// Writes the tree's cpio into memory: the result, and every byte written before it ended.
fn write(tree: &RootfsTree) -> (Result<(), RootfsError>, Vec<u8>) {
    let mut out = Vec::new();
    let mut writer = CpioWriter::new(&mut out, 0);
    let result = tree
        .write_cpio("rootfs", &mut writer)
        .and_then(|()| writer.finish().map(drop).map_err(Into::into));
    (result, out)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn assert_changed(result: Result<(), RootfsError>, path: &Path, expected: HostChange) {
    match result {
        Err(err @ RootfsError::HostChanged { .. }) => {
            let RootfsError::HostChanged { path: p, change } = &err else {
                unreachable!()
            };
            assert_eq!((p.as_path(), change), (path, &expected));
            assert!(
                err.to_string()
                    .contains("changed while the image was being built"),
                "{err}"
            );
        }
        other => panic!("expected {expected:?} at {}, got {other:?}", path.display()),
    }
}

#[test]
fn unchanged_input_is_read() {
    let s = setup();
    let tree = RootfsTree::from_dir(&s.rootfs, Limits::default()).unwrap();
    let (result, out) = write(&tree);
    result.unwrap();
    assert!(contains(&out, PUBLIC));
}

#[test]
fn file_swapped_for_a_symlink_after_the_walk_is_refused() {
    let s = setup();
    let tree = RootfsTree::from_dir(&s.rootfs, Limits::default()).unwrap();
    let config = s.rootfs.join("etc/config");
    fs::remove_file(&config).unwrap();
    symlink(s.secret_dir.join("config"), &config).unwrap();
    let (result, out) = write(&tree);
    assert_changed(result, &config, HostChange::Symlink);
    assert!(!contains(&out, SECRET));
}

#[test]
fn directory_swapped_for_a_symlink_after_the_walk_is_refused() {
    let s = setup();
    let tree = RootfsTree::from_dir(&s.rootfs, Limits::default()).unwrap();
    fs::rename(s.rootfs.join("etc"), s.rootfs.join("etc.moved")).unwrap();
    symlink(&s.secret_dir, s.rootfs.join("etc")).unwrap();
    let (result, out) = write(&tree);
    assert_changed(result, &s.rootfs.join("etc"), HostChange::Symlink);
    assert!(!contains(&out, SECRET));
}

/// A hard link is no symlink, so O_NOFOLLOW alone would let it through: the walk's inode
/// number is what refuses it.
#[test]
fn file_swapped_for_a_hard_link_to_a_secret_is_refused() {
    let s = setup();
    let tree = RootfsTree::from_dir(&s.rootfs, Limits::default()).unwrap();
    let config = s.rootfs.join("etc/config");
    fs::remove_file(&config).unwrap();
    fs::hard_link(s.secret_dir.join("config"), &config).unwrap();
    let (result, out) = write(&tree);
    assert_changed(result, &config, HostChange::Replaced);
    assert!(!contains(&out, SECRET));
}

#[test]
fn file_changed_or_removed_after_the_walk_is_refused() {
    let s = setup();
    let config = s.rootfs.join("etc/config");
    let tree = RootfsTree::from_dir(&s.rootfs, Limits::default()).unwrap();
    fs::write(&config, b"longer than it was when walked").unwrap();
    let (result, _) = write(&tree);
    assert_changed(
        result,
        &config,
        HostChange::Resized {
            walked: PUBLIC.len() as u64,
            now: 30,
        },
    );

    let tree = RootfsTree::from_dir(&s.rootfs, Limits::default()).unwrap();
    fs::remove_file(&config).unwrap();
    let (result, _) = write(&tree);
    assert_changed(result, &config, HostChange::Gone);

    // A directory replaced by a file: the files below it are gone with it.
    fs::write(&config, PUBLIC).unwrap();
    let tree = RootfsTree::from_dir(&s.rootfs, Limits::default()).unwrap();
    fs::remove_dir_all(s.rootfs.join("etc")).unwrap();
    fs::write(s.rootfs.join("etc"), b"now a file").unwrap();
    let (result, _) = write(&tree);
    assert_changed(result, &s.rootfs.join("etc"), HostChange::NotADirectory);
}

/// A FIFO swapped in for a walked file must not block the build on its open.
#[test]
fn file_swapped_for_a_fifo_is_refused_without_blocking() {
    let s = setup();
    let tree = RootfsTree::from_dir(&s.rootfs, Limits::default()).unwrap();
    let config = s.rootfs.join("etc/config");
    fs::remove_file(&config).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &config,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    let (result, _) = write(&tree);
    assert_changed(result, &config, HostChange::Replaced);
}

/// The walk itself: `etc` flips between the real directory and a symlink to the secrets while
/// the input is walked and read, over and over. Whatever each run sees, it either builds
/// (with `etc` as a directory or as a symlink) or fails with `HostChanged`; it never lists or
/// reads the secret directory through the symlink.
#[test]
fn directory_flipping_during_the_walk_is_never_followed() {
    let s = setup();
    symlink(&s.secret_dir, s.rootfs.join("etc-link")).unwrap();
    let stop = AtomicBool::new(false);
    let root = rustix::fs::open(
        &s.rootfs,
        rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::RDONLY,
        rustix::fs::Mode::empty(),
    )
    .unwrap();
    let (mut built, mut refused, mut leaked) = (0, 0, 0);
    let mut unexpected = Vec::new();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                // Atomically swaps the two names: `etc` is the directory, then the symlink.
                rustix::fs::renameat_with(
                    &root,
                    "etc",
                    &root,
                    "etc-link",
                    rustix::fs::RenameFlags::EXCHANGE,
                )
                .unwrap();
            }
        });
        for _ in 0..300 {
            let result = RootfsTree::from_dir(&s.rootfs, Limits::default()).and_then(|tree| {
                let (result, out) = write(&tree);
                leaked += usize::from(contains(&out, SECRET));
                result
            });
            match result {
                Ok(()) => built += 1,
                Err(RootfsError::HostChanged { .. }) => refused += 1,
                Err(other) => unexpected.push(other),
            }
        }
        // Before any assertion, so that a failure does not leave the flipping thread running.
        stop.store(true, Ordering::Relaxed);
    });
    eprintln!("{built} builds, {refused} refused as changed");
    assert_eq!(leaked, 0, "the secret was read in {leaked} runs");
    assert!(unexpected.is_empty(), "unexpected errors: {unexpected:?}");
}
