//! Helpers of the `package` tests (cli_package, cli_package_errors): the hello EIF and its
//! base, the binaries' directory, and the real umoci and skopeo.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use super::*;

pub const BINARIES: [&str; 3] = ["enclave-ctl", "enclave-engine", "enclave-proxy"];

/// The directory of the enclave-ctl under test, which `package` takes the binaries from by
/// default; `None` (after `require`) when enclave-engine and enclave-proxy are not built there.
pub fn bin_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_BIN_EXE_enclave-ctl"))
        .parent()
        .expect("the binary's directory")
        .to_owned();
    require(
        BINARIES.iter().all(|b| dir.join(b).is_file()),
        "enclave-engine and enclave-proxy next to enclave-ctl (cargo build -p enclave-engine -p enclave-proxy)",
    )?;
    Some(dir)
}

/// The inputs every packaging test needs: the example OCI image and the hello EIF built from it,
/// in `tmp`. Returns (init, oci, eif, PCR0).
pub fn hello(tmp: &Path) -> Option<(PathBuf, PathBuf, PathBuf, String)> {
    let (_kernel, init) = build_inputs()?;
    let oci = example_image(tmp)?;
    let eif = tmp.join("hello.eif");
    let built = build_hello(&init, &oci, &eif);
    let pcr0 = stdout(&built)
        .lines()
        .find_map(|l| l.strip_prefix("PCR0").map(|v| v.trim().to_owned()))
        .expect("build prints PCR0");
    Some((init, oci, eif, pcr0))
}

/// `enclave-ctl package … --json` from `cwd`, checked to succeed; returns the JSON.
pub fn package_json(init: &Path, cwd: &Path, args: &[&str]) -> Value {
    let o = run(ctl(init)
        .current_dir(cwd)
        .arg("package")
        .args(args)
        .arg("--json"));
    assert_ok(&o);
    serde_json::from_slice(&o.stdout).expect("package --json prints JSON")
}

pub fn tool(program: &str, args: &[&str]) -> Output {
    let o = run(Command::new(program).args(args));
    assert_ok(&o);
    o
}

/// `umoci unpack --rootless` of `image` (`DIR:TAG`) into `bundle`; returns the rootfs.
pub fn unpack(image: &Path, tag: &str, bundle: &Path) -> PathBuf {
    let image = format!("{}:{tag}", image.display());
    let o = run(Command::new("umoci")
        .args(["unpack", "--rootless", "--image", &image])
        .arg(bundle));
    assert_ok(&o);
    bundle.join("rootfs")
}

pub fn assert_same_file(a: &Path, b: &Path) {
    assert!(a.is_file(), "{} is missing", a.display());
    assert_eq!(
        sha256(a),
        sha256(b),
        "{} differs from {}",
        a.display(),
        b.display()
    );
}

/// Names in `dir` left by an interrupted package (its temporaries start with this prefix).
pub fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".enclave-ctl-package-"))
        .collect()
}

/// A copy of the OCI layout `src` at `dest` (blobs are read-only for umoci's layouts).
pub fn copy_layout(src: &Path, dest: &Path) {
    assert_ok(&run(Command::new("cp").arg("-r").arg(src).arg(dest)));
    assert_ok(&run(Command::new("chmod").args(["-R", "u+w"]).arg(dest)));
}

/// The largest blob of a layout: a layer.
pub fn largest_blob(layout: &Path) -> PathBuf {
    std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap()
}
