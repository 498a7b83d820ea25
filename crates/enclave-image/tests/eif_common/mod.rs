//! Helpers shared by the `eif_*` integration tests: inputs, keys made with the real `openssl`
//! CLI, and builds with our writer. The builds with the official crate (the oracle) are in
//! `crates/enclave-image-oracle`, which includes this file too, so that a plain
//! `cargo test -p enclave-image` does not compile the AWS SDK and OpenSSL.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use enclave_image::eif::{EifOptions, EifSigner, EifWriter, Measurements};
use enclave_image::metadata::{BuildMetadata, EifMetadata};
use sha2::{Digest, Sha384};

pub const CMDLINE: &str = "reboot=k panic=30 pci=off nomodules console=ttyS0 random.trust_cpu=on";

/// Deterministic pseudo-random bytes (xorshift), so failures are reproducible.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// The metadata of the test images. Same field names and order as the official
/// `EifIdentityInfo`, so the official builder given the same values writes the same bytes (the
/// oracle crate checks that).
pub fn metadata() -> EifMetadata {
    EifMetadata {
        image_name: "hello".into(),
        image_version: "1.0".into(),
        build: BuildMetadata {
            build_time: "1970-01-01T00:00:00Z".into(),
            build_tool: "enclave-engine".into(),
            build_tool_version: "0.1.0".into(),
            operating_system: "linux".into(),
            kernel_version: "6.1".into(),
        },
        docker_info: serde_json::json!({"ImageDigest": "sha256:00"}),
        custom: serde_json::json!({"kernel": "sha256:11", "layers": ["sha256:22"]}),
    }
}

/// [`metadata`] serialized.
pub fn metadata_bytes() -> Vec<u8> {
    serde_json::to_vec(&metadata()).expect("metadata serializes")
}

/// Inputs of one image.
pub struct Inputs {
    pub kernel: Vec<u8>,
    pub ramdisks: Vec<Vec<u8>>,
}

impl Inputs {
    pub fn new(kernel_len: usize, ramdisk_lens: &[usize]) -> Self {
        Inputs {
            kernel: bytes(kernel_len, 1),
            ramdisks: ramdisk_lens
                .iter()
                .enumerate()
                .map(|(i, &len)| bytes(len, 100 + i as u64))
                .collect(),
        }
    }
}

/// Builds with our writer into `dir/name`.
pub fn build_ours(
    dir: &Path,
    name: &str,
    inputs: &Inputs,
    signer: Option<&EifSigner>,
) -> (PathBuf, Measurements) {
    let path = dir.join(name);
    let out = File::create(&path).expect("create output");
    let mut w = EifWriter::new(out, EifOptions::default()).expect("writer");
    w.kernel(&mut inputs.kernel.as_slice()).expect("kernel");
    w.cmdline(CMDLINE).expect("cmdline");
    w.metadata(&metadata_bytes()).expect("metadata");
    for rd in &inputs.ramdisks {
        let mut rw = w.ramdisk().expect("ramdisk");
        // Odd write sizes exercise the chunking.
        for piece in rd.chunks(77_777) {
            std::io::Write::write_all(&mut rw, piece).expect("ramdisk write");
        }
        rw.finish().expect("ramdisk finish");
    }
    let m = w.finish(signer).expect("finish");
    (path, m)
}

/// Runs the real `openssl` CLI in `dir`.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A self-signed P-384 certificate and its key in three encodings.
pub struct P384Keys {
    pub cert: PathBuf,
    /// As `openssl req -newkey ec` writes it (PKCS#8 `PRIVATE KEY` with OpenSSL 3).
    pub key: PathBuf,
    /// Explicitly converted PKCS#8.
    pub pkcs8: PathBuf,
    /// SEC1 `EC PRIVATE KEY`.
    pub sec1: PathBuf,
}

pub fn p384_keys(dir: &Path, prefix: &str) -> P384Keys {
    let (key, cert) = (format!("{prefix}k.pem"), format!("{prefix}c.pem"));
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:secp384r1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &cert,
            "-subj",
            "/CN=test",
            "-days",
            "30",
        ],
    );
    let pkcs8 = format!("{prefix}k_pkcs8.pem");
    openssl(
        dir,
        &["pkcs8", "-topk8", "-nocrypt", "-in", &key, "-out", &pkcs8],
    );
    let sec1 = format!("{prefix}k_sec1.pem");
    openssl(dir, &["ec", "-in", &key, "-out", &sec1]);
    let sec1_text = std::fs::read_to_string(dir.join(&sec1)).expect("sec1 key");
    assert!(sec1_text.contains("BEGIN EC PRIVATE KEY"), "{sec1_text}");
    P384Keys {
        cert: dir.join(cert),
        key: dir.join(key),
        pkcs8: dir.join(pkcs8),
        sec1: dir.join(sec1),
    }
}

/// A self-signed certificate and key made with `openssl req -newkey <newkey>` plus options.
pub fn other_keys(dir: &Path, prefix: &str, newkey: &str, opts: &[&str]) -> (PathBuf, PathBuf) {
    let (key, cert) = (format!("{prefix}k.pem"), format!("{prefix}c.pem"));
    let mut args = vec!["req", "-x509", "-newkey", newkey];
    args.extend_from_slice(opts);
    args.extend_from_slice(&[
        "-nodes",
        "-keyout",
        &key,
        "-out",
        &cert,
        "-subj",
        "/CN=other",
        "-days",
        "30",
    ]);
    openssl(dir, &args);
    (dir.join(cert), dir.join(key))
}

/// Our measurements in the official map shape, without `HashAlgorithm` (see [`pcrs_only`]).
pub fn as_map(m: &Measurements) -> BTreeMap<String, String> {
    pcrs_only(m.to_map())
}

/// The PCR entries of a measurement map. `HashAlgorithm` is compared separately: the official
/// crate 0.8.1 prints its hasher's `Debug` (`Sha512_48 { .. }` with sha2 0.10) where nitro-cli
/// prints `Sha384 { ... }`, and we follow nitro-cli.
pub fn pcrs_only(mut map: BTreeMap<String, String>) -> BTreeMap<String, String> {
    if let Some(alg) = map.remove("HashAlgorithm") {
        assert!(
            alg == "Sha384 { ... }" || alg == format!("{:?}", Sha384::new()),
            "unexpected HashAlgorithm {alg}"
        );
    }
    map
}
