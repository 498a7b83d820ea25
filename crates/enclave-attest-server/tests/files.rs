//! File attestation on real temporary directories: the store's scan, lookups and path rules,
//! the monitor keeping it current (a proof for a changed file fails), and the generations and
//! signed tombstones of changes.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use enclave_attest::vrf::{
    file_hash, verify_delete, verify_file, Epoch, FileClaim, SecretKey, VrfError,
};
use enclave_attest_server::files::{Change, FileError, FileMonitor, FileStore, Limits};
use enclave_spec::FileAttestationSpec;

fn spec(root: &Path, ignore_file: Option<&Path>) -> FileAttestationSpec {
    FileAttestationSpec {
        roots: vec![root.to_str().unwrap().to_string()],
        ignore_file: ignore_file.map(|p| p.to_str().unwrap().to_string()),
        nats: None,
    }
}

fn key() -> SecretKey {
    SecretKey::from_seed([7; 32])
}

fn epoch() -> Epoch {
    Epoch::of_startup_document(b"the start-up document of this test's boot")
}

fn p(root: &Path, rel: &str) -> String {
    format!("{}/{rel}", root.display())
}

fn write(root: &Path, rel: &str, contents: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, contents).unwrap();
}

/// Waits, on the store's change counter, until `done` holds; fails after a generous deadline
/// (the deadline bounds a broken monitor, it is not a speed requirement).
fn wait_until(store: &FileStore, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let version = store.version();
        if done() {
            return;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "timed out waiting for {what}");
        store.wait_for_version(version + 1, left);
    }
}

#[test]
fn initial_scan_and_lookup_proofs_verify() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "a.txt", "alpha");
    write(root, "sub/deep/b.bin", "beta");
    write(root, "empty", "");
    let store = FileStore::new(&spec(root, None), key(), epoch()).unwrap();
    assert_eq!(store.len(), 3);
    assert_eq!(
        store.paths(),
        [
            p(root, "a.txt"),
            p(root, "empty"),
            p(root, "sub/deep/b.bin")
        ]
    );
    assert_eq!(store.vrf_public_key(), key().public_key());

    let entry = store.lookup(&p(root, "sub/deep/b.bin")).unwrap();
    assert_eq!(entry.path, p(root, "sub/deep/b.bin"));
    assert_eq!(entry.hash, file_hash(root.join("sub/deep/b.bin")).unwrap());
    assert_eq!(store.epoch(), epoch());
    let claim = FileClaim {
        path: entry.path.clone(),
        sha3_512: entry.hash,
        generation: entry.generation,
        epoch: epoch(),
    };
    verify_file(&store.vrf_public_key(), &claim, &entry.proof).unwrap();
    // Every file of the initial scan has its own generation.
    let mut generations: Vec<u64> = store
        .paths()
        .iter()
        .map(|p| store.lookup(p).unwrap().generation)
        .collect();
    generations.sort();
    generations.dedup();
    assert_eq!(generations.len(), 3);
    assert!(generations
        .iter()
        .all(|g| *g >= 1 && *g <= store.generation()));

    // Lexically equivalent spellings name the same entry.
    let same = store
        .lookup(&format!("{}//sub/./deep/b.bin", root.display()))
        .unwrap();
    assert_eq!(same, entry);

    // Errors in the spec are reported as such.
    let missing = spec(&root.join("nope"), None);
    assert!(matches!(
        FileStore::new(&missing, key(), epoch()),
        Err(FileError::Spec(_))
    ));
    let no_ignore = spec(root, Some(&root.join("no-such-ignore-file")));
    assert!(matches!(
        FileStore::new(&no_ignore, key(), epoch()),
        Err(FileError::Spec(_))
    ));
}

#[test]
fn paths_outside_the_roots_are_refused() {
    let outside = tempfile::tempdir().unwrap();
    write(outside.path(), "secret", "top secret");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "a.txt", "alpha");
    write(root, "dir/b.txt", "beta");
    std::os::unix::fs::symlink(outside.path().join("secret"), root.join("leak")).unwrap();
    std::os::unix::fs::symlink(outside.path(), root.join("leakdir")).unwrap();
    std::os::unix::fs::symlink(root.join("a.txt"), root.join("alias")).unwrap();
    let store = FileStore::new(&spec(root, None), key(), epoch()).unwrap();
    assert_eq!(
        store.len(),
        2,
        "links are never followed: {:?}",
        store.paths()
    );

    let outside_cases = [
        "/etc/passwd".to_string(),
        format!("{}/../x", root.display()),
        format!("{}/dir/../a.txt", root.display()),
        "relative/a.txt".to_string(),
        p(root, "leak"),
        p(root, "leakdir/secret"),
    ];
    for path in &outside_cases {
        match store.lookup(path) {
            Err(e @ FileError::OutsideRoots { .. }) => {
                assert!(e.is_client_error());
                assert!(e.to_string().contains("outside the attested roots"), "{e}");
            }
            other => panic!("{path}: {other:?}"),
        }
    }
    assert!(matches!(
        store.lookup(&p(root, "alias")),
        Err(FileError::NotRegularFile {
            kind: "symbolic link",
            ..
        })
    ));
    assert!(matches!(
        store.lookup(&p(root, "dir")),
        Err(FileError::NotRegularFile {
            kind: "directory",
            ..
        })
    ));
    assert!(matches!(
        store.lookup(&format!("{}/{}", root.display(), "x".repeat(5000))),
        Err(FileError::InvalidPath { .. })
    ));
    assert!(matches!(
        store.update(Path::new("/etc/passwd")),
        Err(FileError::OutsideRoots { .. })
    ));
    // A link inside the root does not become an entry when the watcher reports it.
    assert_eq!(store.update(&root.join("leak")).unwrap(), []);
    assert_eq!(store.len(), 2);
}

#[test]
fn ignored_paths_are_not_attested() {
    let conf = tempfile::tempdir().unwrap();
    let ignore = conf.path().join("attestignore");
    std::fs::write(&ignore, "# scratch\n*.tmp\ncache/\n").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "keep.txt", "kept");
    write(root, "x.tmp", "scratch");
    write(root, "cache/c.txt", "cached");
    write(root, "sub/cache/d.txt", "cached too");
    let store = FileStore::new(&spec(root, Some(&ignore)), key(), epoch()).unwrap();
    assert_eq!(store.paths(), [p(root, "keep.txt")]);
    for rel in [
        "x.tmp",
        "cache/c.txt",
        "sub/cache/d.txt",
        "cache/never-created",
    ] {
        match store.lookup(&p(root, rel)) {
            Err(e @ FileError::Ignored { .. }) => assert!(e.to_string().contains("ignore file")),
            other => panic!("{rel}: {other:?}"),
        }
    }
    assert!(matches!(
        store.update(&root.join("x.tmp")),
        Err(FileError::Ignored { .. })
    ));

    // The monitor does not attest new ignored files either.
    let store = Arc::new(store);
    let monitor = FileMonitor::start(store.clone(), None).unwrap();
    write(root, "y.tmp", "scratch");
    write(root, "cache/new.txt", "cached");
    write(root, "z.txt", "attested");
    wait_until(&store, "z.txt", || {
        store.paths().contains(&p(root, "z.txt"))
    });
    monitor.stop();
    assert_eq!(store.paths(), [p(root, "keep.txt"), p(root, "z.txt")]);
}

#[test]
fn a_proof_for_a_changed_file_fails() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "config.json", "{\"version\": 1}");
    let store = Arc::new(FileStore::new(&spec(root, None), key(), epoch()).unwrap());
    let path = p(root, "config.json");
    let old = store.lookup(&path).unwrap();
    let pk = store.vrf_public_key();
    verify_file(&pk, &old.claim(epoch()), &old.proof).unwrap();

    let monitor = FileMonitor::start(store.clone(), None).unwrap();
    write(root, "config.json", "{\"version\": 2}");
    let new_hash = file_hash(root.join("config.json")).unwrap();
    assert_ne!(new_hash, old.hash);
    wait_until(&store, "the new hash", || {
        store.lookup(&path).is_ok_and(|e| e.hash == new_hash)
    });
    monitor.stop();

    // The store's new entry has a later generation and verifies...
    let new = store.lookup(&path).unwrap();
    assert!(new.generation > old.generation);
    let now = new.claim(epoch());
    assert_eq!(now.sha3_512, new_hash);
    assert_ne!(new.proof, old.proof);
    verify_file(&pk, &now, &new.proof).unwrap();
    // ...while the old proof verifies neither the file as it is now nor the old hash at the
    // new generation.
    assert_eq!(
        verify_file(&pk, &now, &old.proof),
        Err(VrfError::VerificationFailed)
    );
    let old_hash_now = FileClaim {
        sha3_512: old.hash,
        ..now.clone()
    };
    assert_eq!(
        verify_file(&pk, &old_hash_now, &old.proof),
        Err(VrfError::VerificationFailed)
    );
}

#[test]
fn monitor_follows_creates_renames_and_removals() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "a.txt", "alpha");
    write(root, "gone/x.txt", "x");
    write(root, "gone/y/z.txt", "z");
    let store = Arc::new(FileStore::new(&spec(root, None), key(), epoch()).unwrap());
    // A change made after the initial scan but before the monitor starts is caught by the
    // monitor's first rescan.
    write(root, "a.txt", "alpha, edited before the monitor");
    let edited = file_hash(root.join("a.txt")).unwrap();
    let monitor = FileMonitor::start(store.clone(), None).unwrap();
    wait_until(&store, "the early edit", || {
        store
            .lookup(&p(root, "a.txt"))
            .is_ok_and(|e| e.hash == edited)
    });

    std::fs::rename(root.join("a.txt"), root.join("b.txt")).unwrap();
    write(root, "new/dir/c.txt", "gamma");
    std::fs::remove_dir_all(root.join("gone")).unwrap();
    let want = [p(root, "b.txt"), p(root, "new/dir/c.txt")];
    wait_until(&store, "rename, create, removal", || store.paths() == want);
    monitor.stop();

    let b = store.lookup(&p(root, "b.txt")).unwrap();
    assert_eq!(b.hash, edited);
    verify_file(&store.vrf_public_key(), &b.claim(epoch()), &b.proof).unwrap();
    for rel in ["a.txt", "gone/x.txt", "gone/y/z.txt"] {
        assert!(
            matches!(store.lookup(&p(root, rel)), Err(FileError::NotFound { .. })),
            "{rel}"
        );
    }
}

#[test]
fn update_and_remove_without_a_monitor() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "a.txt", "alpha");
    let store = FileStore::new(&spec(root, None), key(), epoch()).unwrap();

    // A file the store has not seen yet is hashed on demand, under a generation of its own,
    // but not stored.
    write(root, "late.txt", "late");
    let late = store.lookup(&p(root, "late.txt")).unwrap();
    let pk = store.vrf_public_key();
    verify_file(&pk, &late.claim(epoch()), &late.proof).unwrap();
    assert_eq!(store.len(), 1);
    assert_eq!(late.generation, store.generation());

    let version = store.version();
    let changes = store.update(&root.join("late.txt")).unwrap();
    let [Change::Put(stored)] = changes.as_slice() else {
        panic!("{changes:?}");
    };
    assert_eq!((&stored.path, stored.hash), (&late.path, late.hash));
    assert!(stored.generation > late.generation);
    assert_eq!(
        store.update(&root.join("late.txt")).unwrap(),
        [],
        "unchanged"
    );
    assert_eq!(
        store.wait_for_version(version + 1, Duration::ZERO),
        version + 1
    );

    // A removal is a tombstone, signed under a new generation, verifying as a delete only.
    let removed = store.remove(&root.join("a.txt")).unwrap();
    let [Change::Removed(tombstone)] = removed.as_slice() else {
        panic!("{removed:?}");
    };
    assert_eq!(tombstone.path, p(root, "a.txt"));
    assert!(tombstone.generation > stored.generation);
    verify_delete(&pk, &tombstone.claim(epoch()), &tombstone.proof).unwrap();
    // Removed from the store, still on disk: served again on demand, as it is now.
    assert!(store.lookup(&p(root, "a.txt")).is_ok());
    std::fs::remove_file(root.join("a.txt")).unwrap();
    assert!(matches!(
        store.lookup(&p(root, "a.txt")),
        Err(FileError::NotFound { .. })
    ));
    std::fs::remove_file(root.join("late.txt")).unwrap();
    let removed = store.update(&root.join("late.txt")).unwrap();
    let [Change::Removed(gone)] = removed.as_slice() else {
        panic!("{removed:?}");
    };
    assert_eq!(gone.path, p(root, "late.txt"));
    assert!(store.is_empty());

    // Created again: the new entry's generation is above the tombstone's, so a reader that
    // saw the tombstone takes the new file as newer.
    write(root, "late.txt", "back");
    let back = store.update(&root.join("late.txt")).unwrap();
    let [Change::Put(again)] = back.as_slice() else {
        panic!("{back:?}");
    };
    assert!(again.generation > gone.generation);
    verify_file(&pk, &again.claim(epoch()), &again.proof).unwrap();
}

#[test]
fn file_count_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for i in 0..5 {
        write(root, &format!("f{i}"), &format!("file {i}"));
    }
    let limits = Limits {
        max_files: 3,
        ..Limits::default()
    };
    match FileStore::with_limits(&spec(root, None), key(), epoch(), limits) {
        Err(
            e @ FileError::TooMany {
                what: "files",
                max: 3,
            },
        ) => {
            assert!(!e.is_client_error());
            assert!(e.to_string().contains("ignore file"), "{e}");
        }
        other => panic!("{other:?}"),
    }

    std::fs::remove_file(root.join("f3")).unwrap();
    std::fs::remove_file(root.join("f4")).unwrap();
    let store = FileStore::with_limits(&spec(root, None), key(), epoch(), limits).unwrap();
    assert_eq!(store.len(), 3);
    write(root, "f9", "one too many");
    assert!(matches!(
        store.update(&root.join("f9")),
        Err(FileError::TooMany { what: "files", .. })
    ));
    assert_eq!(store.len(), 3);

    let dirs = Limits {
        max_dirs: 2,
        ..Limits::default()
    };
    write(root, "d1/d2/d3/f", "deep");
    assert!(matches!(
        FileStore::with_limits(&spec(root, None), key(), epoch(), dirs),
        Err(FileError::TooMany {
            what: "directories",
            max: 2
        })
    ));
}
