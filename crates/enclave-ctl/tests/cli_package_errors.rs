//! `enclave-ctl package` given bad input: a corrupt base fails with the reason, exit 1 and
//! nothing left behind; bad flags exit 2, missing inputs exit 1. What it makes of good input:
//! cli_package.rs.

mod common;

use std::path::Path;
use std::process::Command;

use common::package::*;
use common::*;
use serde_json::Value;

#[test]
fn a_corrupt_base_fails_with_the_reason_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((init, oci, _eif, _pcr0)) = hello(tmp.path()) else {
        return;
    };
    if bin_dir().is_none() {
        return;
    }
    type Corrupt = fn(&Path);
    let cases: [(&str, Corrupt, &str); 5] = [
        (
            "flipped",
            |l| {
                let blob = largest_blob(l);
                let mut bytes = std::fs::read(&blob).unwrap();
                let middle = bytes.len() / 2;
                bytes[middle] ^= 0x01;
                std::fs::write(&blob, bytes).unwrap();
            },
            "digest mismatch",
        ),
        (
            "truncated-blob",
            |l| {
                let blob = largest_blob(l);
                let bytes = std::fs::read(&blob).unwrap();
                std::fs::write(&blob, &bytes[..bytes.len() - 100]).unwrap();
            },
            "size mismatch",
        ),
        (
            "truncated-index",
            |l| {
                let index = l.join("index.json");
                let bytes = std::fs::read(&index).unwrap();
                std::fs::write(&index, &bytes[..bytes.len() / 2]).unwrap();
            },
            "invalid JSON in index.json",
        ),
        (
            "no-index",
            |l| std::fs::remove_file(l.join("index.json")).unwrap(),
            "index.json not found",
        ),
        (
            "bad-config",
            |l| {
                // A config blob that is not its digest's content.
                let index: Value =
                    serde_json::from_slice(&std::fs::read(l.join("index.json")).unwrap()).unwrap();
                let manifest = index["manifests"][0]["digest"].as_str().unwrap();
                let manifest: Value = serde_json::from_slice(
                    &std::fs::read(l.join("blobs/sha256").join(&manifest[7..])).unwrap(),
                )
                .unwrap();
                let config = manifest["config"]["digest"].as_str().unwrap();
                let path = l.join("blobs/sha256").join(&config[7..]);
                let mut bytes = std::fs::read(&path).unwrap();
                bytes[0] = b'[';
                std::fs::write(&path, bytes).unwrap();
            },
            "digest mismatch",
        ),
    ];
    for (name, corrupt, reason) in cases {
        let base = tmp.path().join(format!("base-{name}"));
        copy_layout(&oci, &base);
        corrupt(&base);
        let work = tmp.path().join(format!("work-{name}"));
        std::fs::create_dir(&work).unwrap();
        for output in ["oci:out:v1", "oci-archive:out.tar"] {
            let o = run(ctl(&init)
                .current_dir(&work)
                .args(["package", "../hello.eif", "--base"])
                .arg(format!("oci:{}:latest", base.display()))
                .args(["-o", output]));
            let err = stderr(&o);
            assert_eq!(o.status.code(), Some(1), "{name}: {err}");
            assert!(err.contains(reason), "{name}: {reason:?} not in {err}");
            assert!(err.contains("base image"), "{name}: {err}");
            let left: Vec<_> = std::fs::read_dir(&work).unwrap().collect();
            assert!(left.is_empty(), "{name}: left behind: {left:?}");
        }
    }
}

#[test]
fn bad_flags_exit_2_and_missing_inputs_exit_1() {
    let tmp = tempfile::tempdir().unwrap();
    let ctl = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_enclave-ctl"));
        cmd.current_dir(tmp.path()).arg("package");
        cmd
    };
    let usage: [&[&str]; 6] = [
        &["app.eif", "-o", "oci:out"],
        &["app.eif", "--base", "oci:base"],
        &[
            "app.eif",
            "--base",
            "oci:base",
            "-o",
            "docker-archive:out.tar",
        ],
        &["app.eif", "--base", "oci:base", "-o", "dir:out"],
        &["app.eif", "--base", "dir:rootfs", "-o", "oci:out"],
        &[
            "app.eif",
            "--base",
            "oci:base",
            "-o",
            "oci:out",
            "--source-date-epoch",
            "-1",
        ],
    ];
    for args in usage {
        let o = run(ctl().args(args));
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
    // Flags fine, inputs missing: exit 1 with the missing thing named, no output.
    let o = run(ctl().args(["absent.eif", "--base", "oci:base", "-o", "oci:out"]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("absent.eif"), "{}", stderr(&o));

    let Some((init, oci, _eif, _)) = hello(tmp.path()) else {
        return;
    };
    let empty = tmp.path().join("empty-bin");
    std::fs::create_dir(&empty).unwrap();
    let o = run(ctl()
        .env("ENCLAVE_INIT", &init)
        .args(["hello.eif", "--base"])
        .arg(format!("oci:{}:latest", oci.display()))
        .args(["-o", "oci:out", "--bin-dir"])
        .arg(&empty));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("enclave-ctl is missing"),
        "{}",
        stderr(&o)
    );
    assert!(!tmp.path().join("out").exists());
}
