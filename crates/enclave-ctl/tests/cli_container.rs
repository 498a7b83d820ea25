//! The packaged image as a real container (issue 13's pod mode, end to end without Kubernetes):
//! an EIF packaged by `enclave-ctl package` on the emulated base (scripts/make-emulated-base.sh,
//! this machine's QEMU), unpacked by `umoci` into an OCI bundle and run by `runc` (crun, which the
//! issue names, refuses this machine's hybrid cgroups; runc is the OCI reference runtime), as a
//! non-root user (uid 65534) with its state on a tmpfs, as a pod would be:
//! - the emulated enclave boots, its published port answers from the host, `enclave-ctl health`
//!   run in the container (`runc exec`) is 0 when healthy and 1 once the check fails;
//! - `runc kill … TERM` stops it within the stop timeout and the container's exit status is the
//!   main service's; a SIGKILL of the container leaves no QEMU behind;
//! - the nitro backend in the same image, against a nitro-cli that replays recorded outputs:
//!   no device given to the container, then no hugepages mounted, each explained.
//!
//! The container shares the host's network namespace (as `hostNetwork: true`), so the published
//! port is on the host's loopback without a CNI. Needs root (runc), umoci, runc and what the VM
//! tests need; missing prerequisites skip (fail with CI=true).

mod common;

use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::net::{free_port, http_get};
use common::{assert_ok, ctl, have, require, run, stderr, stdout};

/// The unprivileged user the enclave runs as in the container.
const POD_UID: u32 = 65534;

/// The app: httpd serving /www as a service with an HTTP health check on its page; the main
/// process exits 7 on SIGTERM; exec allowed so the test can take the page away.
const SPEC: &str = "name: app\nfrom: dir:rootfs\n\
entrypoint: [/bin/sh, -c, \"trap 'echo bye; exit 7' TERM; echo started; while true; do sleep 1; done\"]\n\
services:\n  - name: web\n    command: [/bin/httpd, -f, -p, \"8080\", -h, /www]\n\
ingress:\n  - {port: 8080}\n\
healthcheck:\n  http: {port: 8080, path: /ok}\n  interval: 500ms\n  timeout: 2s\n  retries: 2\n\
debug: {exec: true}\n";

/// Root, runc and umoci, plus the VM prerequisites; `None` to skip.
fn prerequisites() -> Option<()> {
    require(
        nix::unistd::Uid::effective().is_root(),
        "root (runc creates the container's namespaces and cgroup)",
    )?;
    require(have("runc"), "runc (apt runc)")?;
    require(have("umoci"), "umoci (apt umoci)")?;
    common::vm_prerequisites().map(|_| ())
}

/// The packaged app image unpacked into an OCI bundle; returns the bundle directory.
fn packaged_bundle(tmp: &Path) -> PathBuf {
    let (_kernel, init) = common::build_inputs().expect("checked by prerequisites");
    let root = tmp.join("rootfs/bin");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::copy("/bin/busybox", root.join("busybox")).unwrap();
    for applet in ["sh", "sleep", "httpd", "rm", "echo"] {
        std::os::unix::fs::symlink("busybox", root.join(applet)).unwrap();
    }
    std::fs::create_dir_all(tmp.join("rootfs/www")).unwrap();
    std::fs::write(tmp.join("rootfs/www/ok"), "fine\n").unwrap();
    std::fs::write(tmp.join("app.yaml"), SPEC).unwrap();
    assert_ok(&run(ctl(&init)
        .current_dir(tmp)
        .args(["build", "--quiet", "-f", "app.yaml", "-o", "app.eif"])));
    let script = common::workspace().join("scripts/make-emulated-base.sh");
    assert_ok(&run(Command::new("bash").arg(script).arg(tmp.join("base"))));
    assert_ok(&run(ctl(&init).current_dir(tmp).args([
        "package",
        "app.eif",
        "--base",
        "oci:base:latest",
        "-o",
        "oci:image:app",
    ])));
    let bundle = tmp.join("bundle");
    let image = format!("{}:app", tmp.join("image").display());
    assert_ok(&run(Command::new("umoci")
        .args(["unpack", "--image", &image])
        .arg(&bundle)));
    bundle
}

/// Rewrites the bundle's config.json for a pod-like run of `args` (after the image's entrypoint,
/// as a pod spec's `args` would): no terminal, uid 65534, a tmpfs of that user for the state
/// directory (the image's ENCLAVE_ENGINE_STATE_DIR), the host's network namespace.
fn configure(bundle: &Path, args: &[&str], edit: impl FnOnce(&mut Value)) {
    let path = bundle.join("config.json");
    let mut config: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let entrypoint = config["process"]["args"][0].clone();
    assert_eq!(entrypoint, "/usr/local/bin/enclave-ctl", "{config}");
    let mut argv = vec![entrypoint];
    argv.extend(args.iter().map(|a| json!(a)));
    config["process"]["args"] = json!(argv);
    config["process"]["terminal"] = json!(false);
    config["process"]["user"] = json!({"uid": POD_UID, "gid": POD_UID});
    let env = config["process"]["env"].as_array().expect("env").clone();
    assert!(
        env.iter()
            .any(|e| e == "ENCLAVE_ENGINE_STATE_DIR=/run/enclave-engine"),
        "{env:?}"
    );
    // The state directory on a tmpfs of the pod's user, as an emptyDir would be. runc gives
    // a tmpfs the mode of the directory it covers, so that directory is made the same.
    let state = bundle.join("rootfs/run/enclave-engine");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    nix::unistd::chown(&state, Some(POD_UID.into()), Some(POD_UID.into())).unwrap();
    let owner = format!("uid={POD_UID},gid={POD_UID}");
    config["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/run/enclave-engine", "type": "tmpfs", "source": "tmpfs",
        "options": ["nosuid", "nodev", "mode=0700", owner]
    }));
    config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|ns| ns["type"] != "network");
    edit(&mut config);
    std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
}

/// A container started in the foreground (`runc run`), so its exit status is runc's; deleted on
/// drop whatever happened.
struct Container {
    id: String,
    child: Mutex<Child>,
    log: PathBuf,
}

impl Container {
    fn start(bundle: &Path) -> Container {
        static N: AtomicU32 = AtomicU32::new(0);
        let id = format!(
            "ee-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let log = bundle.with_file_name(format!("{id}.log"));
        let out = File::create(&log).unwrap();
        let child = Command::new("runc")
            .args(["run", "--bundle"])
            .arg(bundle)
            .arg(&id)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Container {
            id,
            child: Mutex::new(child),
            log,
        }
    }

    /// `runc exec` of `args` in the container, as the pod's user.
    fn exec(&self, args: &[&str]) -> std::process::Output {
        run(Command::new("runc").arg("exec").arg(&self.id).args(args))
    }

    fn kill(&self, signal: &str) {
        assert_ok(&run(Command::new("runc").args(["kill", &self.id, signal])));
    }

    /// The container's exit status, waiting at most `limit`.
    fn wait(&self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    fn exited(&self) -> Option<ExitStatus> {
        self.child.lock().unwrap().try_wait().unwrap()
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The host PIDs of the container's QEMU processes.
    fn qemu_pids(&self) -> Vec<i32> {
        let o = run(Command::new("runc").args(["ps", "--format", "json", &self.id]));
        assert_ok(&o);
        let pids: Vec<i32> = serde_json::from_slice(&o.stdout).unwrap();
        pids.into_iter().filter(|p| is_qemu(*p)).collect()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("runc")
            .args(["kill", &self.id, "KILL"])
            .output();
        let _ = self.wait(Duration::from_secs(10));
        let _ = Command::new("runc")
            .args(["delete", "--force", &self.id])
            .output();
    }
}

fn is_qemu(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.starts_with("qemu-system"))
}

/// Polls `f` until it holds (common::net::until), failing early once the container ended.
fn until(c: &Container, what: &str, limit: Duration, mut f: impl FnMut() -> Option<String>) {
    common::net::until(
        what,
        limit,
        || c.output(),
        || {
            if let Some(status) = c.exited() {
                panic!(
                    "the container ended ({status}) before {what}\n{}",
                    c.output()
                );
            }
            f()
        },
    );
}

/// The packaged app started as a pod, attached, published on the host's loopback; returns the
/// container and the port. `tmp` holds the bundle.
fn start_pod(tmp: &Path) -> (Container, u16) {
    let bundle = packaged_bundle(tmp);
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:8080");
    let args = [
        "run",
        "--name",
        "app",
        "--memory",
        "128",
        "--boot-timeout",
        "120",
        "--stop-timeout",
        "20",
        "-p",
        &publish,
        "/enclave/app.eif",
    ];
    configure(&bundle, &args, |_| {});
    (Container::start(&bundle), port)
}

#[test]
fn the_packaged_image_runs_as_a_container_serves_reports_health_and_stops() {
    let Some(()) = prerequisites() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (c, port) = start_pod(tmp.path());

    until(
        &c,
        "the published port answers",
        Duration::from_secs(150),
        || {
            let page = http_get(port, "/ok");
            (!page.ends_with("fine\n")).then_some(page)
        },
    );
    until(&c, "health is 0", Duration::from_secs(30), || {
        let o = c.exec(&["enclave-ctl", "health"]);
        (!o.status.success()).then(|| stderr(&o))
    });
    let o = c.exec(&["enclave-ctl", "health", "app"]);
    assert_eq!(stdout(&o), "app: ready\n");
    // The enclave runs as the pod's user: nothing of it is root's.
    let o = c.exec(&["id", "-u"]);
    assert_eq!(stdout(&o).trim(), POD_UID.to_string());
    let qemu = c.qemu_pids();
    assert_eq!(qemu.len(), 1, "one QEMU in the container");

    // The page goes: the check fails twice, health turns 1, the enclave stays live.
    assert_ok(&c.exec(&[
        "enclave-ctl",
        "exec",
        "-u",
        "0",
        "app",
        "--",
        "rm",
        "/www/ok",
    ]));
    until(&c, "health is 1", Duration::from_secs(30), || {
        let o = c.exec(&["enclave-ctl", "health", "app"]);
        let text = format!("{}{}", stdout(&o), stderr(&o));
        (o.status.code() != Some(1) || !text.contains("unhealthy (HTTP 404)")).then_some(text)
    });
    assert_ok(&c.exec(&["enclave-ctl", "health", "--live", "app"]));

    // SIGTERM, as the kubelet sends it: a graceful stop, the main service's exit code.
    let stopping = Instant::now();
    c.kill("TERM");
    let status = c
        .wait(Duration::from_secs(40))
        .unwrap_or_else(|| panic!("the container did not stop on SIGTERM\n{}", c.output()));
    let took = stopping.elapsed();
    assert!(took < Duration::from_secs(20), "stopped after {took:?}");
    assert_eq!(status.code(), Some(7), "{}", c.output());
    let out = c.output();
    assert!(out.contains("started") && out.contains("bye"), "{out}");
    assert!(qemu.iter().all(|p| !is_qemu(*p)), "QEMU left: {qemu:?}");
}

#[test]
fn a_sigkilled_container_leaves_no_qemu_behind() {
    let Some(()) = prerequisites() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (c, port) = start_pod(tmp.path());
    until(&c, "the enclave is ready", Duration::from_secs(150), || {
        let o = c.exec(&["enclave-ctl", "health"]);
        (!o.status.success()).then(|| stderr(&o))
    });
    let qemu = c.qemu_pids();
    assert_eq!(qemu.len(), 1, "one QEMU in the container");
    c.kill("KILL");
    let status = c
        .wait(Duration::from_secs(20))
        .expect("the container ended");
    assert_eq!(status.code(), Some(137), "{}", c.output());
    // The kernel ends the whole PID namespace with its init: no QEMU, no vsock device, no proxy.
    let deadline = Instant::now() + Duration::from_secs(10);
    while qemu.iter().any(|p| is_qemu(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(qemu.iter().all(|p| !is_qemu(*p)), "QEMU left: {qemu:?}");
    assert_eq!(http_get(port, "/ok"), "no connection");
}

/// A nitro-cli for the container that replays the outputs recorded on a real Nitro instance
/// (crates/enclave-engine/testdata/nitro-cli), and that instance's allocator.yaml.
fn add_fake_nitro_cli(rootfs: &Path) {
    let fx = common::workspace().join("crates/enclave-engine/testdata/nitro-cli");
    let dir = rootfs.join("usr/share/nitro-cli-recorded");
    std::fs::create_dir_all(&dir).unwrap();
    for f in [
        "run-enclave.json",
        "run-enclave-E35.stderr",
        "describe-enclaves.json",
    ] {
        std::fs::copy(fx.join(f), dir.join(f)).unwrap();
    }
    std::fs::create_dir_all(rootfs.join("etc/nitro_enclaves")).unwrap();
    std::fs::copy(
        fx.join("allocator.yaml"),
        rootfs.join("etc/nitro_enclaves/allocator.yaml"),
    )
    .unwrap();
    let cli = rootfs.join("usr/local/bin/nitro-cli");
    std::fs::write(
        &cli,
        "#!/bin/sh\nr=/usr/share/nitro-cli-recorded\ncase \"$1\" in\n\
         run-enclave) cat $r/run-enclave-E35.stderr >&2; exit 1 ;;\n\
         describe-enclaves) cat $r/describe-enclaves.json ;;\n\
         *) echo \"[ E14 ] Invalid command.\" >&2; exit 1 ;;\nesac\n",
    )
    .unwrap();
    std::fs::set_permissions(&cli, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Runs the image with `--backend nitro` to its end; (exit status, output).
fn run_nitro(bundle: &Path, edit: impl FnOnce(&mut Value)) -> (Option<i32>, String) {
    configure(
        bundle,
        &[
            "run",
            "--backend",
            "nitro",
            "--name",
            "app",
            "--memory",
            "512",
            "--cpus",
            "2",
            "/enclave/app.eif",
        ],
        edit,
    );
    let c = Container::start(bundle);
    let status = c
        .wait(Duration::from_secs(60))
        .unwrap_or_else(|| panic!("run --backend nitro hung\n{}", c.output()));
    (status.code(), c.output())
}

#[test]
fn the_nitro_backend_in_a_container_explains_a_missing_device_and_missing_hugepages() {
    let Some(()) = prerequisites() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let bundle = packaged_bundle(tmp.path());
    add_fake_nitro_cli(&bundle.join("rootfs"));

    // No device plugin: the pod was not given /dev/nitro_enclaves.
    let (code, out) = run_nitro(&bundle, |_| {});
    // 125: the engine's own error, as docker run's.
    assert_eq!(code, Some(125), "{out}");
    assert!(
        out.contains("/dev/nitro_enclaves is absent")
            && out.contains("request the aws.ec2.nitro/nitro_enclaves resource"),
        "{out}"
    );

    // The device given (a stand-in character device: only its presence is checked before
    // nitro-cli runs), but no hugepages emptyDir mounted: E35's explanation, before nitro-cli
    // would fail with it.
    let (code, out) = run_nitro(&bundle, |config| {
        config["linux"]["devices"] = json!([{
            "path": "/dev/nitro_enclaves", "type": "c", "major": 1, "minor": 3,
            "fileMode": 438, "uid": 0, "gid": 0
        }]);
        config["linux"]["resources"]["devices"]
            .as_array_mut()
            .unwrap()
            .push(json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}));
    });
    assert_eq!(code, Some(125), "{out}");
    assert!(
        out.contains("E35") && out.contains("medium HugePages at /dev/hugepages"),
        "{out}"
    );
    assert!(!out.contains("is absent"), "{out}");
}
