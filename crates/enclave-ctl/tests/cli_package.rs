//! End-to-end tests of `enclave-ctl package` with the real tools: the hello example's EIF
//! packaged onto the example OCI image gives the same manifest digest from two directories and
//! in both output forms; umoci unpacks it (the EIF, the binaries and the base's files all there,
//! byte for byte); skopeo reads the labels and the entrypoint; a signed EIF on a
//! docker-archive base gets its PCR8 label and keeps the base's blobs; and the emulated base
//! made by scripts/make-emulated-base.sh carries QEMU and its libraries. Bad input:
//! cli_package_errors.rs.

mod common;

use std::path::Path;
use std::process::Command;

use common::package::*;
use common::*;
use serde_json::Value;

#[test]
fn packages_reproducibly_and_umoci_and_skopeo_read_the_image() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((init, oci, eif, pcr0)) = hello(tmp.path()) else {
        return;
    };
    let Some(bins) = bin_dir() else { return };
    if require(have("skopeo"), "skopeo").is_none() {
        return;
    }

    // The same inputs from two working directories, by relative paths: the same manifest.
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b/deeper"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let first = package_json(
        &init,
        &a,
        &[
            "../hello.eif",
            "--base",
            "oci:../hello-oci:latest",
            "-o",
            "oci:out:v1",
        ],
    );
    let second = package_json(
        &init,
        &b,
        &[
            "../../hello.eif",
            "--base",
            "oci:../../hello-oci:latest",
            "-o",
            "oci:out:v1",
        ],
    );
    let digest = first["manifest_digest"].as_str().unwrap().to_owned();
    eprintln!(
        "manifest digest: {digest} and {}",
        second["manifest_digest"]
    );
    assert!(digest.starts_with("sha256:"), "{first}");
    assert_eq!(first, second, "the same inputs from two directories differ");
    assert_eq!(first["pcrs"]["PCR0"], pcr0.as_str());
    let out = a.join("out");
    let index = std::fs::read_to_string(out.join("index.json")).unwrap();
    assert!(
        index.contains(r#""org.opencontainers.image.ref.name":"v1""#),
        "{index}"
    );
    assert!(leftovers(&a).is_empty(), "{:?}", leftovers(&a));

    // skopeo: the labels, the entrypoint and cmd, the base's layers first and unchanged.
    let dir_ref = format!("oci:{}:v1", out.display());
    let inspect: Value =
        serde_json::from_slice(&tool("skopeo", &["inspect", &dir_ref]).stdout).unwrap();
    assert_eq!(inspect["Digest"], digest.as_str());
    assert_eq!(inspect["Labels"]["dev.enclave-engine.pcr0"], pcr0.as_str());
    for pcr in ["pcr1", "pcr2"] {
        assert_eq!(
            inspect["Labels"][format!("dev.enclave-engine.{pcr}")]
                .as_str()
                .map(str::len),
            Some(96)
        );
    }
    assert!(inspect["Labels"].get("dev.enclave-engine.pcr8").is_none());
    let base_ref = format!("oci:{}:latest", oci.display());
    let base: Value =
        serde_json::from_slice(&tool("skopeo", &["inspect", &base_ref]).stdout).unwrap();
    let (layers, base_layers) = (
        inspect["Layers"].as_array().unwrap(),
        base["Layers"].as_array().unwrap(),
    );
    assert_eq!(layers.len(), base_layers.len() + 1);
    assert_eq!(&layers[..base_layers.len()], &base_layers[..]);
    assert_eq!(layers.last().unwrap(), &first["layer_digest"]);
    let config: Value =
        serde_json::from_slice(&tool("skopeo", &["inspect", "--config", &dir_ref]).stdout).unwrap();
    let c = &config["config"];
    assert_eq!(
        c["Entrypoint"],
        serde_json::json!(["/usr/local/bin/enclave-ctl", "run"])
    );
    assert_eq!(
        c["Cmd"],
        serde_json::json!(["--name", "hello", "/enclave/app.eif"])
    );
    let env: Vec<&str> = c["Env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(env.contains(&"PATH=/bin"), "the base's PATH: {env:?}");
    assert!(
        env.contains(&"ENCLAVE_ENGINE_STATE_DIR=/run/enclave-engine"),
        "{env:?}"
    );
    assert_eq!(config["created"], "1970-01-01T00:00:00Z");

    // umoci: the EIF and the binaries byte for byte, and the base's files.
    let rootfs = unpack(&out, "v1", &tmp.path().join("bundle"));
    assert_same_file(&rootfs.join("enclave/app.eif"), &eif);
    for binary in BINARIES {
        assert_same_file(
            &rootfs.join("usr/local/bin").join(binary),
            &bins.join(binary),
        );
    }
    let base_rootfs = unpack(&oci, "latest", &tmp.path().join("base-bundle"));
    for file in ["bin/busybox", "app/hello.sh", "etc/passwd"] {
        assert_same_file(&rootfs.join(file), &base_rootfs.join(file));
    }

    // oci-archive output: the same image (same manifest digest), readable by skopeo.
    let archived = package_json(
        &init,
        tmp.path(),
        &[
            "hello.eif",
            "--base",
            "oci:hello-oci:latest",
            "-o",
            "oci-archive:out.tar:v1",
        ],
    );
    assert_eq!(archived["manifest_digest"], digest.as_str());
    let archive_ref = format!("oci-archive:{}:v1", tmp.path().join("out.tar").display());
    let inspect: Value =
        serde_json::from_slice(&tool("skopeo", &["inspect", &archive_ref]).stdout).unwrap();
    assert_eq!(inspect["Digest"], digest.as_str());
    assert_eq!(inspect["Labels"]["dev.enclave-engine.pcr0"], pcr0.as_str());
    assert!(
        leftovers(tmp.path()).is_empty(),
        "{:?}",
        leftovers(tmp.path())
    );

    // The packaged image is itself a base (its PCR labels replaced, not kept), and --name wins.
    let again = package_json(
        &init,
        tmp.path(),
        &[
            "hello.eif",
            "--base",
            &archive_ref,
            "-o",
            "oci:again",
            "--name",
            "web-1",
        ],
    );
    assert_ne!(again["manifest_digest"], digest.as_str());
    let config: Value = serde_json::from_slice(
        &tool(
            "skopeo",
            &[
                "inspect",
                "--config",
                &format!("oci:{}/again:latest", tmp.path().display()),
            ],
        )
        .stdout,
    )
    .unwrap();
    assert_eq!(config["config"]["Cmd"][1], "web-1");

    // An existing, non-empty output directory is refused, untouched.
    let o = run(ctl(&init).current_dir(&a).args([
        "package",
        "../hello.eif",
        "--base",
        "oci:../hello-oci:latest",
        "-o",
        "oci:out:v2",
    ]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(out.join("index.json")).unwrap(),
        index
    );
}

#[test]
fn a_signed_eif_on_a_docker_archive_base_gets_pcr8() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((init, oci, _eif, _)) = hello(tmp.path()) else {
        return;
    };
    if bin_dir().is_none()
        || require(have("skopeo") && have("openssl"), "skopeo, openssl").is_none()
    {
        return;
    }
    // A `docker save`-shaped base (uncompressed layers, classic layout), made by skopeo.
    let archive = tmp.path().join("base.tar");
    let archive_ref = format!("docker-archive:{}", archive.display());
    tool(
        "skopeo",
        &[
            "copy",
            "-q",
            &format!("oci:{}:latest", oci.display()),
            &format!("{archive_ref}:hello:latest"),
        ],
    );
    let (cert, key) = p384_signing_cert(tmp.path(), "signer", "package");
    let o = run(ctl(&init)
        .current_dir(tmp.path())
        .args([
            "sign",
            "hello.eif",
            "-o",
            "signed.eif",
            "--signing-certificate",
        ])
        .arg(&cert)
        .arg("--private-key")
        .arg(&key));
    assert_ok(&o);

    let out = package_json(
        &init,
        tmp.path(),
        &[
            "signed.eif",
            "--base",
            &archive_ref,
            "-o",
            "oci:signed-image:s1",
        ],
    );
    let pcr8 = out["pcrs"]["PCR8"]
        .as_str()
        .expect("a signed EIF has PCR8")
        .to_owned();
    let image = format!("oci:{}:s1", tmp.path().join("signed-image").display());
    let inspect: Value =
        serde_json::from_slice(&tool("skopeo", &["inspect", &image]).stdout).unwrap();
    assert_eq!(inspect["Labels"]["dev.enclave-engine.pcr8"], pcr8.as_str());
    let base: Value =
        serde_json::from_slice(&tool("skopeo", &["inspect", &archive_ref]).stdout).unwrap();
    let (layers, base_layers) = (
        inspect["Layers"].as_array().unwrap(),
        base["Layers"].as_array().unwrap(),
    );
    assert_eq!(
        &layers[..layers.len() - 1],
        &base_layers[..],
        "the base's blobs as they are"
    );
    // The manifest's annotations carry the same PCRs.
    let manifest: Value =
        serde_json::from_slice(&tool("skopeo", &["inspect", "--raw", &image]).stdout).unwrap();
    assert_eq!(
        manifest["annotations"]["dev.enclave-engine.pcr8"],
        pcr8.as_str()
    );
    assert_eq!(
        manifest["annotations"]["dev.enclave-engine.pcr0"],
        out["pcrs"]["PCR0"]
    );
}

#[test]
fn the_emulated_base_carries_qemu_and_its_libraries() {
    if require(have("qemu-system-x86_64"), "qemu-system-x86_64").is_none() {
        return;
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let vsock_ok = have("vhost-device-vsock")
        || Path::new(&home)
            .join(".cargo/bin/vhost-device-vsock")
            .is_file();
    if require(vsock_ok, "vhost-device-vsock").is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let Some((init, _oci, eif, _)) = hello(tmp.path()) else {
        return;
    };
    if bin_dir().is_none() {
        return;
    }
    let base = tmp.path().join("emulated-base");
    let script = workspace().join("scripts/make-emulated-base.sh");
    assert_ok(&run(Command::new(&script).arg(&base)));
    let again = tmp.path().join("emulated-base-2");
    assert_ok(&run(Command::new(&script).arg(&again)));
    assert_eq!(
        std::fs::read(base.join("index.json")).unwrap(),
        std::fs::read(again.join("index.json")).unwrap(),
        "make-emulated-base.sh is not reproducible"
    );

    let out = package_json(
        &init,
        tmp.path(),
        &[
            "hello.eif",
            "--base",
            "oci:emulated-base",
            "-o",
            "oci:packaged",
        ],
    );
    assert!(out["manifest_digest"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    let rootfs = unpack(
        &tmp.path().join("packaged"),
        "latest",
        &tmp.path().join("bundle"),
    );
    assert_same_file(&rootfs.join("enclave/app.eif"), &eif);
    let qemu = String::from_utf8(
        run(Command::new("sh").args(["-c", "command -v qemu-system-x86_64"])).stdout,
    )
    .unwrap();
    assert_same_file(
        &rootfs.join("usr/bin/qemu-system-x86_64"),
        Path::new(qemu.trim()),
    );
    // Every library ldd lists for QEMU, at the same path (through the image's merged /usr).
    let ldd = stdout(&tool("ldd", &[qemu.trim()]));
    let libs: Vec<&str> = ldd
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            match l.split_once("=> ") {
                Some((_, rest)) => rest.split_whitespace().next(),
                None => l.split_whitespace().next().filter(|p| p.starts_with('/')),
            }
        })
        .filter(|p| p.starts_with('/'))
        .collect();
    assert!(libs.len() > 5, "{ldd}");
    for lib in libs {
        let inside = rootfs.join(lib.trim_start_matches('/'));
        assert!(inside.is_file(), "{lib} is missing from the image");
    }
    for file in [
        "usr/share/qemu/bios-microvm.bin",
        "usr/local/bin/vhost-device-vsock",
        "usr/bin/busybox",
        "etc/passwd",
        "usr/local/bin/enclave-engine",
    ] {
        assert!(
            rootfs.join(file).is_file(),
            "{file} is missing from the image"
        );
    }
    assert!(std::fs::read_to_string(rootfs.join("etc/passwd"))
        .unwrap()
        .starts_with("root:x:0:0:"));
    let sh = std::fs::read_link(rootfs.join("usr/bin/sh")).unwrap();
    assert_eq!(sh, Path::new("busybox"));
}
