//! `enclave-ctl build` against hostile layers, in real OCI layouts made at test time: tar
//! extension headers declaring gigabytes (really there, as zeros in a small gzip layer), layers
//! over the size and entry limits. Each build runs under a hard address-space limit (RLIMIT_AS,
//! via `prlimit`), so a failure is the limit's clean error and not an allocation failure; each
//! must exit 1 naming the layer and the limit, and leave no output and no temporary file.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use sha2::{Digest, Sha256};

/// The address space a build may use: far below the 4 GiB the headers declare.
const ADDRESS_SPACE: u64 = 1 << 30;
/// What the hostile extension headers declare and carry.
const HUGE: u64 = 4 << 30;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn digest(hasher: Sha256) -> String {
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

/// A gzip layer blob and the digest of the tar it decompresses to.
struct Layer {
    blob: Vec<u8>,
    diff_id: String,
}

impl Layer {
    fn of_tar(tar: &[u8]) -> Self {
        Self {
            blob: gzip(tar),
            diff_id: digest(Sha256::new_with_prefix(tar)),
        }
    }

    /// `head`, then `zeros` zero bytes, then `tail`: gzip members one after the other, the
    /// zeros as one compressed MiB repeated, so gigabytes take a few MiB.
    fn with_zeros(head: &[u8], zeros: u64, tail: &[u8]) -> Self {
        const MIB: usize = 1 << 20;
        assert_eq!(zeros % MIB as u64, 0);
        let zero_mib = vec![0u8; MIB];
        let zero_member = gzip(&zero_mib);
        let mut blob = gzip(head);
        let mut hasher = Sha256::new_with_prefix(head);
        for _ in 0..zeros / MIB as u64 {
            blob.extend_from_slice(&zero_member);
            hasher.update(&zero_mib);
        }
        blob.extend_from_slice(&gzip(tail));
        hasher.update(tail);
        Self {
            blob,
            diff_id: digest(hasher),
        }
    }

    fn digest(&self) -> String {
        digest(Sha256::new_with_prefix(&self.blob))
    }
}

/// Writes an OCI layout with one image tagged `t` holding `layers`, bottom first.
fn oci_layout(dir: &Path, layers: &[Layer]) -> String {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let digest = digest(Sha256::new_with_prefix(bytes));
        std::fs::write(blobs.join(&digest[7..]), bytes).unwrap();
        serde_json::json!({"digest": digest, "size": bytes.len()})
    };
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/hello"]},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| &l.diff_id).collect::<Vec<_>>()},
    });
    let mut config_desc = put(&serde_json::to_vec(&config).unwrap());
    config_desc["mediaType"] = "application/vnd.oci.image.config.v1+json".into();
    let layer_descs: Vec<_> = layers
        .iter()
        .map(|l| {
            let mut d = put(&l.blob);
            d["mediaType"] = "application/vnd.oci.image.layer.v1.tar+gzip".into();
            d
        })
        .collect();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_desc,
        "layers": layer_descs,
    });
    let mut manifest_desc = put(&serde_json::to_vec(&manifest).unwrap());
    manifest_desc["mediaType"] = "application/vnd.oci.image.manifest.v1+json".into();
    manifest_desc["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": "t"});
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [manifest_desc]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    format!("oci:{}:t", dir.display())
}

/// A tar of regular files (name, content), with its end-of-archive blocks.
fn tar_of(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut header = tar::Header::new_ustar();
        header.set_mode(0o755);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_size(data.len() as u64);
        builder.append_data(&mut header, name, &data[..]).unwrap();
    }
    builder.into_inner().unwrap()
}

/// The header of an extension entry of `kind` declaring `size` bytes.
fn extension_header(kind: tar::EntryType, size: u64) -> Vec<u8> {
    let mut header = match kind {
        tar::EntryType::XHeader => tar::Header::new_ustar(),
        _ => tar::Header::new_gnu(),
    };
    header.set_entry_type(kind);
    header.set_path("././@LongLink").unwrap();
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_size(size);
    header.set_cksum();
    header.as_bytes().to_vec()
}

/// Runs `enclave-ctl build` of `from` into `out` under the address-space limit, with `extra`
/// options.
fn build_limited(init: &Path, kernel: &Path, from: &str, out: &Path, extra: &[&str]) -> Output {
    let mut cmd = Command::new("prlimit");
    cmd.arg(format!("--as={ADDRESS_SPACE}"))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_enclave-ctl"))
        .env("ENCLAVE_INIT", init)
        .env_remove("SOURCE_DATE_EPOCH")
        .args(["build", "--quiet", "--from", from, "-o"])
        .arg(out)
        .arg("--kernel-dir")
        .arg(kernel)
        .args(extra);
    run(&mut cmd)
}

/// Asserts a failed build: exit 1, stderr naming every one of `expected`, no output, no
/// temporary file.
fn assert_refused(o: &Output, out: &Path, expected: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "{}\n{err}", o.status);
    for e in expected {
        assert!(err.contains(e), "stderr lacks {e:?}:\n{err}");
    }
    assert!(!out.exists(), "{} was left behind", out.display());
    let dir = out.parent().unwrap();
    assert!(leftover_temp_files(dir).is_empty(), "temporary files left");
}

struct Env {
    kernel: PathBuf,
    init: PathBuf,
    tmp: tempfile::TempDir,
}

fn env() -> Option<Env> {
    let (kernel, init) = build_inputs()?;
    require(have("prlimit"), "prlimit (util-linux)")?;
    Some(Env {
        kernel,
        init,
        tmp: tempfile::tempdir().unwrap(),
    })
}

fn hello() -> Vec<(String, Vec<u8>)> {
    vec![("hello".to_owned(), b"#!/bin/sh\necho hello\n".to_vec())]
}

/// Extension headers declaring 4 GiB, with the 4 GiB really there, each in a layer of a few
/// MiB. Read whole they would need 4 GiB of memory; under a 1 GiB address space the build must
/// end with the cap's error. The same build machinery builds an ordinary image under the same
/// limit, so the limit alone does not make builds fail.
#[test]
fn huge_extension_headers_fail_cleanly_under_a_memory_limit() {
    let Some(env) = env() else {
        return;
    };
    let ok_dir = env.tmp.path().join("ok");
    let from = oci_layout(&ok_dir, &[Layer::of_tar(&tar_of(&hello()))]);
    let out = env.tmp.path().join("ok.eif");
    assert_ok(&build_limited(&env.init, &env.kernel, &from, &out, &[]));
    assert!(out.is_file());

    let file_and_end = tar_of(&hello());
    for (kind, name) in [
        (tar::EntryType::XHeader, "PAX extended"),
        (tar::EntryType::GNULongName, "GNU long name"),
    ] {
        let layer = Layer::with_zeros(&extension_header(kind, HUGE), HUGE, &file_and_end);
        assert!(layer.blob.len() < 16 << 20, "a small layer");
        let dir = env.tmp.path().join(name.replace(' ', "-"));
        let digest = layer.digest();
        let from = oci_layout(&dir, &[layer]);
        let out = env.tmp.path().join("huge.eif");
        let o = build_limited(&env.init, &env.kernel, &from, &out, &[]);
        assert_refused(
            &o,
            &out,
            &[
                &format!("layer {digest}"),
                &format!("a {name} header declares {HUGE} bytes, over the cap of 1048576 bytes"),
            ],
        );
    }
}

#[test]
fn layer_over_the_size_limit_is_refused() {
    let Some(env) = env() else {
        return;
    };
    let mut files = hello();
    files.push(("big".into(), vec![0u8; 2 << 20]));
    let layer = Layer::of_tar(&tar_of(&files));
    let digest = layer.digest();
    let from = oci_layout(&env.tmp.path().join("img"), &[layer]);
    let out = env.tmp.path().join("big.eif");
    let o = build_limited(
        &env.init,
        &env.kernel,
        &from,
        &out,
        &["--max-layer-size", "1M"],
    );
    assert_refused(
        &o,
        &out,
        &[
            &format!("layer {digest}"),
            "decompresses to more than the layer size limit of 1048576 bytes",
            "--max-layer-size",
        ],
    );
    // Raised, the same image builds.
    let o = build_limited(
        &env.init,
        &env.kernel,
        &from,
        &out,
        &["--max-layer-size", "3M"],
    );
    assert_ok(&o);
}

#[test]
fn layers_over_the_rootfs_limit_are_refused() {
    let Some(env) = env() else {
        return;
    };
    let lower = Layer::of_tar(&tar_of(&[("a".into(), vec![1u8; 600 << 10])]));
    let mut files = hello();
    files.push(("b".into(), vec![2u8; 600 << 10]));
    let upper = Layer::of_tar(&tar_of(&files));
    let upper_digest = upper.digest();
    let from = oci_layout(&env.tmp.path().join("img"), &[lower, upper]);
    let out = env.tmp.path().join("two.eif");
    let o = build_limited(
        &env.init,
        &env.kernel,
        &from,
        &out,
        &["--max-layer-size", "1M", "--max-rootfs-size", "1M"],
    );
    assert_refused(
        &o,
        &out,
        &[
            &format!("layer {upper_digest}"),
            "takes the root filesystem past its size limit of 1048576 bytes",
            "--max-rootfs-size",
        ],
    );
}

#[test]
fn layer_over_the_entry_limit_is_refused() {
    let Some(env) = env() else {
        return;
    };
    let mut files = hello();
    files.extend((0..30).map(|i| (format!("f{i}"), vec![b'x'])));
    let layer = Layer::of_tar(&tar_of(&files));
    let digest = layer.digest();
    let from = oci_layout(&env.tmp.path().join("img"), &[layer]);
    let out = env.tmp.path().join("many.eif");
    let o = build_limited(
        &env.init,
        &env.kernel,
        &from,
        &out,
        &["--max-entries", "20"],
    );
    assert_refused(
        &o,
        &out,
        &[
            &format!("layer {digest}"),
            "takes the root filesystem past its limit of 20 entries",
            "--max-entries",
        ],
    );
    let o = build_limited(
        &env.init,
        &env.kernel,
        &from,
        &out,
        &["--max-entries", "31"],
    );
    assert_ok(&o);
}
