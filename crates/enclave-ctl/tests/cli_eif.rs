//! End-to-end tests of signing (PCR8), `measure`, and what `inspect` and `build` do with bad
//! input: corrupt EIFs, wrong keys, malicious layers, missing sources.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;

/// A dir: rootfs with one script to run, and a spec naming it; returns the spec.
fn rootfs(tmp: &Path) -> PathBuf {
    let root = tmp.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::write(root.join("bin/app"), b"#!/bin/sh\necho app\n").unwrap();
    let spec = tmp.join("enclave.yaml");
    std::fs::write(&spec, "from: dir:rootfs\ncmd: [/bin/app]\n").unwrap();
    spec
}

fn build(
    init: &Path,
    kernel: &Path,
    tmp: &Path,
    out: &Path,
    extra: &[&str],
) -> std::process::Output {
    run(ctl(init)
        .args(["build", "--quiet", "--json", "-f"])
        .arg(rootfs(tmp))
        .args(["--image-version", "1.0", "--name", "app"])
        .arg("-o")
        .arg(out)
        .arg("--kernel-dir")
        .arg(kernel)
        .args(extra))
}

fn openssl(args: &[&str], dir: &Path) {
    assert_ok(&run(Command::new("openssl").args(args).current_dir(dir)));
}

#[test]
fn signed_build_has_pcr8_and_verifies() {
    let Some((kernel, init)) = build_inputs() else {
        return;
    };
    let Some(()) = require(have("openssl"), "openssl") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (cert, key) = p384_signing_cert(dir, "signer", "enclave-engine test");
    let out = dir.join("signed.eif");
    let o = build(
        &init,
        &kernel,
        dir,
        &out,
        &[
            "--signing-certificate",
            cert.to_str().unwrap(),
            "--private-key",
            key.to_str().unwrap(),
        ],
    );
    assert_ok(&o);
    let built: Value = serde_json::from_slice(&o.stdout).unwrap();
    let pcr8 = built["Measurements"]["PCR8"]
        .as_str()
        .expect("PCR8 printed")
        .to_owned();

    // measure --signing-certificate computes the same PCR8 from the certificate alone.
    let o = run(ctl(&init)
        .args(["measure", "--json", "--signing-certificate"])
        .arg(&cert));
    assert_ok(&o);
    let measured: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(measured["PCR8"], pcr8.as_str());

    // measure EIF gives the build's measurements.
    let o = run(ctl(&init).args(["measure", "--json"]).arg(&out));
    assert_ok(&o);
    let measured: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(measured["Measurements"], built["Measurements"]);

    // inspect checks the signature and shows the certificate.
    let o = run(ctl(&init).args(["inspect", "--json"]).arg(&out));
    assert_ok(&o);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["IsSigned"], true);
    assert_eq!(v["SignatureCheck"], true);
    assert_eq!(v["CheckCRC"], true);
    assert_eq!(v["ImageName"], "app");
    assert_eq!(v["ImageVersion"], "1.0");
    let issuer = v["SigningCertificate"]["IssuerName"].to_string();
    assert!(issuer.contains("enclave-engine test"), "{issuer}");

    // Signing is deterministic (RFC 6979): the same inputs give the same signed bytes.
    let again = dir.join("signed-again.eif");
    assert_ok(&build(
        &init,
        &kernel,
        dir,
        &again,
        &[
            "--signing-certificate",
            cert.to_str().unwrap(),
            "--private-key",
            key.to_str().unwrap(),
        ],
    ));
    assert_eq!(sha256(&out), sha256(&again));
}

#[test]
fn wrong_signing_keys_are_refused_without_output() {
    let Some((kernel, init)) = build_inputs() else {
        return;
    };
    let Some(()) = require(have("openssl"), "openssl") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "rsa.pem",
            "-out",
            "rsa-cert.pem",
            "-subj",
            "/CN=rsa",
            "-days",
            "30",
        ],
        dir,
    );
    p384_signing_cert(dir, "other", "other");
    let out = dir.join("x.eif");
    let o = build(
        &init,
        &kernel,
        dir,
        &out,
        &[
            "--signing-certificate",
            dir.join("rsa-cert.pem").to_str().unwrap(),
            "--private-key",
            dir.join("rsa.pem").to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("P-384"), "{}", stderr(&o));
    assert!(!out.exists());

    // A P-384 key that does not match the certificate.
    let o = build(
        &init,
        &kernel,
        dir,
        &out,
        &[
            "--signing-certificate",
            dir.join("other-cert.pem").to_str().unwrap(),
            "--private-key",
            dir.join("rsa.pem").to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(!out.exists());

    // Half of the pair is a usage error.
    let o = build(
        &init,
        &kernel,
        dir,
        &out,
        &[
            "--signing-certificate",
            dir.join("other-cert.pem").to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn inspect_names_crc_failures_and_never_panics() {
    let Some((kernel, init)) = build_inputs() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let eif = tmp.path().join("good.eif");
    assert_ok(&build(&init, &kernel, tmp.path(), &eif, &[]));
    let bytes = std::fs::read(&eif).unwrap();

    // A flipped bit in the kernel, the metadata and the last ramdisk byte: CRC failure, exit 3.
    for pos in [600, bytes.len() / 2, bytes.len() - 1] {
        let mut bad = bytes.clone();
        bad[pos] ^= 0x10;
        let path = tmp.path().join("flipped.eif");
        std::fs::write(&path, &bad).unwrap();
        let o = run(ctl(&init).arg("inspect").arg(&path));
        assert_eq!(o.status.code(), Some(3), "flip at {pos}: {}", stdout(&o));
        let text = format!("{}{}", stdout(&o), stderr(&o));
        assert!(text.contains("CRC"), "flip at {pos}: {text}");
    }

    // Truncations: a clear error, exit 1 (or 3 when the structure still parses), no panic.
    for len in [0, 3, 100, 547, 548, 600, bytes.len() / 2, bytes.len() - 1] {
        let path = tmp.path().join("truncated.eif");
        std::fs::write(&path, &bytes[..len]).unwrap();
        let o = run(ctl(&init).arg("inspect").arg(&path));
        let code = o.status.code();
        assert!(
            matches!(code, Some(1) | Some(3)),
            "len {len}: {code:?} {}",
            stderr(&o)
        );
        assert!(
            !stderr(&o).contains("panicked"),
            "len {len}: {}",
            stderr(&o)
        );
    }

    let o = run(ctl(&init)
        .arg("inspect")
        .arg(tmp.path().join("missing.eif")));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("missing.eif"));
}

#[test]
fn malicious_or_missing_sources_fail_cleanly() {
    let Some((kernel, init)) = build_inputs() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let out = dir.join("out.eif");
    let try_build = |from: &str| {
        run(ctl(&init)
            .args(["build", "--quiet", "--from", from, "-o"])
            .arg(&out)
            .arg("--kernel-dir")
            .arg(&kernel))
    };

    // A docker-archive whose layer climbs out of the rootfs, made with Python's tarfile.
    let script = r#"
import io, json, tarfile, sys
layer = io.BytesIO()
with tarfile.open(fileobj=layer, mode="w") as t:
    for name in ["bin/", "../escape"]:
        info = tarfile.TarInfo(name)
        if name.endswith("/"):
            info.type = tarfile.DIRTYPE
            t.addfile(info)
        else:
            data = b"x"
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
import hashlib
diff_id = "sha256:" + hashlib.sha256(layer.getvalue()).hexdigest()
cfg = json.dumps({"config": {"Cmd": ["/bin/sh"]}, "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
man = json.dumps([{"Config": "config.json", "RepoTags": ["evil:latest"], "Layers": ["layer.tar"]}]).encode()
with tarfile.open(sys.argv[1], "w") as t:
    for name, data in [("config.json", cfg), ("manifest.json", man), ("layer.tar", layer.getvalue())]:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
"#;
    let evil = dir.join("evil.tar");
    let Some(()) = require(have("python3"), "python3") else {
        return;
    };
    assert_ok(&run(Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&evil)));
    let o = try_build(&format!("docker-archive:{}", evil.display()));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains(".."), "{}", stderr(&o));
    assert!(!out.exists());

    // Not a tar at all.
    let junk = dir.join("junk.tar");
    std::fs::write(&junk, b"this is not a tar archive").unwrap();
    let o = try_build(&format!("oci-archive:{}", junk.display()));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(!out.exists());

    // Missing sources and unknown transports.
    for from in [
        "oci:/nonexistent/layout:latest",
        "dir:/nonexistent",
        "docker://busybox",
    ] {
        let o = try_build(from);
        assert_eq!(o.status.code(), Some(1), "{from}: {}", stderr(&o));
        assert!(!stderr(&o).is_empty());
        assert!(!out.exists());
    }
    assert!(
        leftover_temp_files(dir).is_empty(),
        "{:?}",
        leftover_temp_files(dir)
    );

    // A kernel directory that is not one.
    let o = run(ctl(&init)
        .args(["build", "--quiet", "-f"])
        .arg(rootfs(dir))
        .arg("-o")
        .arg(&out)
        .args(["--kernel-dir", "/nonexistent"]));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("bzImage"), "{}", stderr(&o));
}
