//! Helpers shared by the CLI's end-to-end tests: locating prerequisites (failing under CI=true,
//! skipping with a note otherwise) and running the real `enclave-ctl` binary.
#![allow(dead_code)] // each test binary uses a different subset

pub mod enclaves;
pub mod kube;
pub mod net;
pub mod package;
pub mod pidns;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// True when running in CI, where a missing prerequisite is a failure, not a skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Returns `Some(())` when `ok`, else fails (CI) or prints a skip note and returns `None`.
pub fn require(ok: bool, what: &str) -> Option<()> {
    if ok {
        return Some(());
    }
    if in_ci() {
        panic!("prerequisite missing in CI: {what} (scripts/setup.sh installs it)");
    }
    eprintln!("SKIP: {what} is missing; run scripts/setup.sh");
    None
}

/// Whether a program is on PATH.
pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The emulated kernel directory and the static init, or `None` (after `require`).
pub fn build_inputs() -> Option<(PathBuf, PathBuf)> {
    let kernel = enclave_image::kernel::KernelInputs::default_dir(
        enclave_image::kernel::KernelProfile::Emulated,
    );
    require(
        kernel.join("bzImage").is_file(),
        "the emulated kernel (scripts/fetch-kernel.sh)",
    )?;
    let init = std::env::var_os("ENCLAVE_INIT")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/enclave-init/enclave-init"));
    require(
        init.is_file(),
        "the static enclave-init (scripts/build-init.sh)",
    )?;
    Some((kernel, init))
}

/// A command running the enclave-ctl binary under test, with the init preset.
pub fn ctl(init: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_enclave-ctl"));
    cmd.env("ENCLAVE_INIT", init)
        .env_remove("SOURCE_DATE_EPOCH");
    cmd
}

/// Runs a command and returns its output, with stdout/stderr shown on failure to assert.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("spawning the command")
}

/// Stdout as a string.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Stderr as a string.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success, printing both streams otherwise.
pub fn assert_ok(o: &Output) {
    assert!(
        o.status.success(),
        "command failed ({}):\nstdout:\n{}\nstderr:\n{}",
        o.status,
        stdout(o),
        stderr(o)
    );
}

/// sha256 of a file, hex.
pub fn sha256(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    hex_encode(&Sha256::digest(std::fs::read(path).expect("reading file")))
}

/// SHA3-512 of `bytes`, hex (what file attestation publishes).
pub fn sha3_512_hex(bytes: &[u8]) -> String {
    use sha3::Digest;
    hex_encode(&sha3::Sha3_512::digest(bytes))
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Files in `dir` whose names start with `.enclave-ctl-build-` (temporary build outputs).
pub fn leftover_temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(".enclave-ctl-build-"))
                .collect()
        })
        .unwrap_or_default()
}

/// Makes the example OCI image (examples/hello/make-image.sh) in `dir`, or `None`.
pub fn example_image(dir: &Path) -> Option<PathBuf> {
    require(have("umoci"), "umoci")?;
    require(
        Path::new("/bin/busybox").exists() || have("busybox"),
        "busybox-static",
    )?;
    let out = dir.join("hello-oci");
    let o = run(Command::new(workspace().join("examples/hello/make-image.sh")).arg(&out));
    assert_ok(&o);
    Some(out)
}

/// `enclave-ctl build` of the hello example's spec (examples/hello/enclave.yaml) from `oci` (made
/// by [`example_image`]) into `eif`, checked to succeed; its stdout lists the PCRs.
pub fn build_hello(init: &Path, oci: &Path, eif: &Path) -> Output {
    let built = run(ctl(init)
        .args(["build", "-f"])
        .arg(workspace().join("examples/hello/enclave.yaml"))
        .arg("--from")
        .arg(format!("oci:{}:latest", oci.display()))
        .arg("-o")
        .arg(eif));
    assert_ok(&built);
    built
}

/// The VM system tests' prerequisites: QEMU, vhost-device-vsock, the enclave-engine binary next
/// to enclave-ctl, the emulated kernel and the static init. Returns (engine, init), or `None`
/// (after `require`).
pub fn vm_prerequisites() -> Option<(PathBuf, PathBuf)> {
    require(
        have("qemu-system-x86_64"),
        "qemu-system-x86_64 (apt qemu-system-x86)",
    )?;
    let home = std::env::var("HOME").unwrap_or_default();
    require(
        have("vhost-device-vsock")
            || Path::new(&home)
                .join(".cargo/bin/vhost-device-vsock")
                .is_file(),
        "vhost-device-vsock (cargo install vhost-device-vsock --locked)",
    )?;
    let engine = Path::new(env!("CARGO_BIN_EXE_enclave-ctl")).with_file_name("enclave-engine");
    require(
        engine.is_file(),
        "the enclave-engine binary (cargo build --workspace)",
    )?;
    let (_kernel, init) = build_inputs()?;
    Some((engine, init))
}

/// enclave-ctl with its own state directory and the workspace's enclave-engine binary.
pub fn vm_ctl(state: &Path, engine: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_enclave-ctl"));
    cmd.env("ENCLAVE_ENGINE_STATE_DIR", state)
        .env("ENCLAVE_ENGINE_BIN", engine)
        .env_remove("ENCLAVE_ENGINE_EXTRA_CMDLINE");
    cmd
}

/// Builds crates/enclave-nsm/tests/nsm-probe (a program written for Nitro, using the NSM API
/// crate's own driver), static like enclave-init and with its own lock file; returns its path.
pub fn build_probe() -> PathBuf {
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("nsm-probe");
    let manifest = workspace().join("crates/enclave-nsm/tests/nsm-probe/Cargo.toml");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let o = run(Command::new(cargo)
        .args(["build", "--release", "--locked", "--manifest-path"])
        .arg(&manifest)
        .args(["--target", "x86_64-unknown-linux-gnu"])
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env_remove("CARGO_ENCODED_RUSTFLAGS"));
    assert_ok(&o);
    target_dir.join("x86_64-unknown-linux-gnu/release/nsm-probe")
}

/// A self-signed ECDSA P-384 certificate and its key (what signs an EIF, PCR8), made now with
/// openssl as `DIR/NAME-cert.pem` and `DIR/NAME-key.pem` for the subject `/CN=CN`: (cert, key).
pub fn p384_signing_cert(dir: &Path, name: &str, cn: &str) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{name}-cert.pem"));
    let key = dir.join(format!("{name}-key.pem"));
    assert_ok(&run(Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:secp384r1", "-nodes", "-days", "30"])
        .arg("-subj")
        .arg(format!("/CN={cn}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)));
    (cert, key)
}

/// A background process (a daemon, a Prometheus server) killed and reaped on drop.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `promtool check metrics` (Debian's prometheus package) on `text`; its output.
pub fn promtool_check(text: &str) -> Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool starts");
    check
        .stdin
        .take()
        .expect("its stdin")
        .write_all(text.as_bytes())
        .expect("promtool reads the metrics");
    check.wait_with_output().expect("promtool ends")
}

/// A real Prometheus (Debian's package) on a free loopback port, scraping every second with
/// `scrape_configs` (YAML, indented as the list's items), its data and log under `dir`; the
/// server (killed when dropped) and its port.
pub fn prometheus(dir: &Path, scrape_configs: &str) -> (KillOnDrop, u16) {
    let port = net::free_port();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!("global: {{scrape_interval: 1s}}\nscrape_configs:\n{scrape_configs}"),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("starting prometheus");
    (KillOnDrop(child), port)
}

/// Waits until the Prometheus on `port` answers the instant query `query` (URL-encoded) with
/// the value `want`; fails after a minute with its log (in `dir`).
pub fn prometheus_answers(dir: &Path, port: u16, query: &str, want: &str) {
    let log = || std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default();
    net::until(
        &format!("Prometheus answers {want} to {query}"),
        std::time::Duration::from_secs(60),
        log,
        || {
            let r = net::http_get(port, &format!("/api/v1/query?query={query}"));
            (!r.contains(r#""value":["#) || !r.contains(&format!(r#","{want}"]"#))).then_some(r)
        },
    );
}
