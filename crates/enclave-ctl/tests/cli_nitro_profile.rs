//! `build --kernel-profile nitro` against AWS's own files: a kernel directory laid out like
//! nitro-cli's blobs, holding the real `bzImage.config`, `cmdline`, `nsm.ko` and `init` of
//! nitro-cli 1.5.0 (crates/enclave-image/tests/fixtures/nitro-blobs).
//!
//! One substitution: AWS's bzImage (Linux 4.14) is not available here, so the emulated kernel's
//! bzImage stands in for it. That is also why nothing here boots: the fixture's nsm.ko is built
//! for 4.14 and the config says vsock is built in, which the stand-in kernel has as modules. What
//! is checked is what the image tells the kernel and enclave-init to do, read back out of the EIF
//! with the real `cpio`: the command line is AWS's byte for byte, nsm.ko is in enclave-init's
//! measured load order and in the ramdisk, the modules this config builds in are not loaded
//! again (while the same build with a config that has them as modules does load them), and the
//! profile recorded for enclave-init is `nitro`, under which it never uses the emulated NSM
//! (`enclave-init/src/nsm.rs`, `the_parent_is_an_nsm_only_for_emulated_images`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{assert_ok, build_inputs, ctl, require, run, sha256, stderr};
use enclave_image::eif::EifReader;
use serde_json::Value;

/// The fixture's blobs.
fn fixtures() -> PathBuf {
    common::workspace().join("crates/enclave-image/tests/fixtures/nitro-blobs")
}

/// A nitro-cli blobs directory: the fixture's files, the emulated kernel's bzImage in place of
/// AWS's, and the emulated kernel's module lists beside them (so that leaving modules out is the
/// build's choice, not their absence).
fn blobs_dir(tmp: &Path, emulated: &Path) -> PathBuf {
    let blobs = tmp.join("blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    for f in ["bzImage.config", "cmdline", "nsm.ko", "init"] {
        std::fs::copy(fixtures().join(f), blobs.join(f)).unwrap();
    }
    std::fs::copy(emulated.join("bzImage"), blobs.join("bzImage")).unwrap();
    let status = Command::new("cp")
        .arg("-a")
        .arg(emulated.join("modules"))
        .arg(&blobs)
        .status()
        .unwrap();
    assert!(status.success());
    blobs
}

/// A spec with transparent egress, which needs netfilter in the enclave kernel.
fn spec(tmp: &Path) -> PathBuf {
    let rootfs = tmp.join("rootfs/bin");
    std::fs::create_dir_all(&rootfs).unwrap();
    std::fs::write(rootfs.join("hello"), b"#!/bin/sh\necho hello\n").unwrap();
    let spec = tmp.join("enclave.yaml");
    std::fs::write(
        &spec,
        "from: dir:rootfs\ncmd: [/bin/hello]\negress:\n  mode: transparent\n  allow:\n    \
         - {cidr: 10.0.0.1/32, port: 443}\n",
    )
    .unwrap();
    spec
}

fn build(init: &Path, blobs: &Path, spec: &Path, out: &Path) -> std::process::Output {
    run(ctl(init)
        .args([
            "build",
            "--quiet",
            "--kernel-profile",
            "nitro",
            "--kernel-dir",
        ])
        .arg(blobs)
        .arg("-f")
        .arg(spec)
        .arg("-o")
        .arg(out))
}

/// The EIF's command line section and its bootstrap ramdisk unpacked by `cpio` into `dir`.
fn unpack(eif: &Path, dir: &Path) -> String {
    let mut reader = EifReader::open(eif).unwrap();
    let cmdline = reader.cmdline().unwrap();
    let mut ramdisk = Vec::new();
    reader.copy_ramdisk_to(0, &mut ramdisk).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let mut child = Command::new("cpio")
        .args(["-i", "-d", "--quiet", "--no-absolute-filenames"])
        .current_dir(dir)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&ramdisk).unwrap();
    assert!(child.wait().unwrap().success(), "cpio could not read it");
    cmdline
}

fn modules_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("enclave-init/modules"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn init_config(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("enclave-init/config.json")).unwrap()).unwrap()
}

#[test]
fn the_nitro_profile_builds_from_nitro_clis_own_blobs() {
    let Some((emulated, init)) = build_inputs() else {
        return;
    };
    let Some(()) = require(common::have("cpio"), "cpio") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let blobs = blobs_dir(tmp.path(), &emulated);
    let spec = spec(tmp.path());
    let eif = tmp.path().join("nitro.eif");
    assert_ok(&build(&init, &blobs, &spec, &eif));

    let unpacked = tmp.path().join("bootstrap");
    let cmdline = unpack(&eif, &unpacked);
    // AWS's command line, as nitro-cli measures it (without the file's trailing newline).
    let aws = std::fs::read_to_string(fixtures().join("cmdline")).unwrap();
    assert_eq!(cmdline, aws.trim_end());
    assert!(cmdline.contains("nomodules"), "{cmdline}");

    // enclave-init loads nsm.ko, the fixture's bytes, and nothing else: this config builds
    // vsock and the iptables NAT and REDIRECT in, so transparent egress needs no module.
    let config = init_config(&unpacked);
    assert_eq!(config["kernel_profile"], "nitro");
    assert_eq!(config["modules"], serde_json::json!(["nsm.ko"]));
    assert_eq!(config["netfilter"], "xtables");
    assert_eq!(config["parent_cid"], 3);
    assert_eq!(modules_in(&unpacked), ["nsm.ko"]);
    assert_eq!(
        sha256(&unpacked.join("enclave-init/modules/nsm.ko")),
        "48904e520db2541ca4378da29d85791749408febc81987ade56cc5c556bd90df"
    );
    // /init is enclave-init, not AWS's init from the same directory.
    assert_eq!(sha256(&unpacked.join("init")), sha256(&init));
    assert_ne!(sha256(&unpacked.join("init")), sha256(&blobs.join("init")));

    // The provenance names each of AWS's files by digest.
    let o = run(ctl(&init).arg("inspect").arg("--json").arg(&eif));
    assert_ok(&o);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let inputs = v["Provenance"]["inputs"].as_array().unwrap();
    let digest = |name: &str| {
        inputs
            .iter()
            .find(|i| i["name"] == name)
            .map(|i| i["digest"].as_str().unwrap().to_owned())
    };
    assert_eq!(
        digest("bzImage.config").as_deref(),
        Some("sha256:9378dea490ed6c698c3d23b346ed08e49dae52d74a59cee2673b8a7b1951fc5b")
    );
    assert_eq!(
        digest("nsm.ko").as_deref(),
        Some("sha256:48904e520db2541ca4378da29d85791749408febc81987ade56cc5c556bd90df")
    );
    assert_eq!(v["Provenance"]["kernel_profile"], "nitro");
}

#[test]
fn modules_the_config_builds_in_are_not_loaded_again_but_modules_are() {
    let Some((emulated, init)) = build_inputs() else {
        return;
    };
    let Some(()) = require(common::have("cpio"), "cpio") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let blobs = blobs_dir(tmp.path(), &emulated);
    // The same AWS config, but with the iptables NAT table as a module: now the build must ship
    // and load the xtables modules (after nsm.ko), from the directory's modules/xtables list.
    let config = std::fs::read_to_string(blobs.join("bzImage.config")).unwrap();
    assert!(config.contains("\nCONFIG_IP_NF_NAT=y\n"));
    std::fs::write(
        blobs.join("bzImage.config"),
        config.replace("\nCONFIG_IP_NF_NAT=y\n", "\nCONFIG_IP_NF_NAT=m\n"),
    )
    .unwrap();
    let spec = spec(tmp.path());
    let eif = tmp.path().join("nitro.eif");
    assert_ok(&build(&init, &blobs, &spec, &eif));
    let unpacked = tmp.path().join("bootstrap");
    unpack(&eif, &unpacked);
    let listed: Vec<String> = std::fs::read_to_string(emulated.join("modules/xtables"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| format!("{}.ko", l.trim()))
        .collect();
    let mut expected = vec!["nsm.ko".to_owned()];
    expected.extend(listed);
    let config = init_config(&unpacked);
    assert_eq!(config["modules"], serde_json::json!(expected));
    assert_eq!(config["netfilter"], "xtables");

    // Without nsm.ko there is no Nitro image: the build says which file is missing and writes
    // nothing.
    std::fs::remove_file(blobs.join("nsm.ko")).unwrap();
    let out = tmp.path().join("none.eif");
    let o = build(&init, &blobs, &spec, &out);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("nsm.ko"), "{}", stderr(&o));
    assert!(!out.exists());
}
