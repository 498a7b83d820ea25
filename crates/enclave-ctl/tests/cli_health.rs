//! System tests of health and pod mode in real QEMU microvms:
//! - an HTTP health check run inside by enclave-init: `enclave-ctl health` (ready and `--live`),
//!   `ps`'s status and the supervisor's `/livez` and `/readyz` (`run --health-listen`) follow it
//!   from healthy to unhealthy when the page goes away;
//! - pod mode: an attached `run` (a container's entrypoint) prints the enclave's lines as JSON
//!   with `--log-format json`, gets ready by a command health check, and on SIGTERM stops the
//!   enclave gracefully and exits with the main service's exit code.
//!
//! Missing prerequisites skip (fail with CI=true).

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::enclaves::Env;
use common::net::{free_port, http_get, until};
use common::{assert_ok, ctl, run, stderr, stdout};

/// A busybox rootfs with a page to serve.
fn rootfs(dir: &Path) {
    let bin = dir.join("rootfs/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy("/bin/busybox", bin.join("busybox")).unwrap();
    for applet in ["sh", "sleep", "httpd", "rm", "test", "touch", "ls"] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    std::fs::create_dir_all(dir.join("rootfs/www")).unwrap();
    std::fs::write(dir.join("rootfs/www/ok"), "fine\n").unwrap();
}

fn build(init: &Path, dir: &Path, name: &str, spec: &str) -> PathBuf {
    let spec_path = dir.join(format!("{name}.yaml"));
    std::fs::write(&spec_path, spec).unwrap();
    let eif = dir.join(format!("{name}.eif"));
    assert_ok(&run(ctl(init)
        .args(["build", "--quiet", "-f"])
        .arg(&spec_path)
        .arg("-o")
        .arg(&eif)));
    eif
}

#[test]
fn an_http_health_check_drives_health_ps_and_the_probe_endpoints() {
    let Some((engine, init)) = common::vm_prerequisites() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    rootfs(tmp.path());
    let eif = build(
        &init,
        tmp.path(),
        "web",
        "from: dir:rootfs\nentrypoint: [/bin/httpd, -f, -p, \"127.0.0.1:8080\", -h, /www]\n\
         healthcheck:\n  http: {port: 8080, path: /ok}\n  interval: 500ms\n  timeout: 2s\n  \
         retries: 2\ndebug: {exec: true}\n",
    );
    let env = Env {
        state: tmp.path().join("state"),
        engine,
        names: &["web"],
    };
    let listen = free_port();
    env.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--memory",
        "128",
        "--boot-timeout",
        "90",
        "--health-listen",
        &format!("127.0.0.1:{listen}"),
        eif.to_str().unwrap(),
    ]);
    let health = |args: &[&str]| {
        let o = run(env.ctl().arg("health").args(args));
        (o.status.code(), format!("{}{}", stdout(&o), stderr(&o)))
    };
    until(
        "health says ready",
        Duration::from_secs(60),
        String::new,
        || {
            let (code, out) = health(&["web"]);
            (code != Some(0)).then_some(out)
        },
    );
    assert_eq!(health(&["web"]), (Some(0), "web: ready\n".into()));
    // The only enclave here: the name may be left out, as in a pod.
    assert_eq!(health(&["--live"]), (Some(0), "web: live\n".into()));
    let o = run(env.ctl().args(["health", "--json", "web"]));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["health"]["status"], "healthy", "{v}");
    assert_eq!(v["health"]["last"], "HTTP 200", "{v}");
    until(
        "ps shows healthy",
        Duration::from_secs(20),
        String::new,
        || {
            let s = env.ok(&["ps", "--format", "{{.Status}}|{{.Health}}"]);
            (!s.trim_end().ends_with("(healthy)|healthy")).then_some(s)
        },
    );
    until(
        "/readyz answers 200",
        Duration::from_secs(20),
        String::new,
        || {
            let r = http_get(listen, "/readyz");
            (!r.starts_with("HTTP/1.1 200")).then_some(r)
        },
    );
    assert!(http_get(listen, "/livez").starts_with("HTTP/1.1 200"));

    // The page goes: two failed checks make it unhealthy; alive all the same.
    env.ok(&["exec", "-u", "0", "web", "--", "rm", "/www/ok"]);
    until(
        "health says unhealthy",
        Duration::from_secs(30),
        String::new,
        || {
            let (code, out) = health(&["web"]);
            (code != Some(1) || !out.contains("health check unhealthy (HTTP 404)")).then_some(out)
        },
    );
    assert_eq!(health(&["--live", "web"]).0, Some(0));
    until(
        "/readyz answers 503",
        Duration::from_secs(20),
        String::new,
        || {
            let r = http_get(listen, "/readyz");
            (!(r.starts_with("HTTP/1.1 503") && r.contains("unhealthy (HTTP 404)"))).then_some(r)
        },
    );
    assert!(http_get(listen, "/livez").starts_with("HTTP/1.1 200"));
    until(
        "ps shows unhealthy",
        Duration::from_secs(20),
        String::new,
        || {
            let s = env.ok(&["ps", "--format", "{{.Health}}"]);
            (s.trim() != "unhealthy").then_some(s)
        },
    );

    // Stopped: neither live nor ready; the listener went with the supervisor.
    env.ok(&["stop", "web"]);
    let (code, out) = health(&["--live", "web"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("not live: it is exited"), "{out}");
    assert_eq!(http_get(listen, "/livez"), "no connection");
}

#[test]
fn pod_mode_streams_json_lines_and_stops_on_sigterm_with_the_main_exit_code() {
    let Some((engine, init)) = common::vm_prerequisites() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    rootfs(tmp.path());
    // The main service exits 7 on SIGTERM (what enclave-init sends it when stopping).
    let eif = build(
        &init,
        tmp.path(),
        "pod",
        "from: dir:rootfs\nentrypoint: [/bin/sh, -c, \"trap 'echo bye; exit 7' TERM; \
         echo started; while true; do sleep 1; done\"]\nhealthcheck:\n  command: [/bin/sh, \
         -c, \"test -f /www/ok\"]\n  interval: 500ms\n",
    );
    let state = tmp.path().join("state");
    let _cleanup = Env {
        state: state.clone(),
        engine: engine.clone(),
        names: &["pod"],
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_enclave-ctl"))
        .env("ENCLAVE_ENGINE_STATE_DIR", &state)
        .env("ENCLAVE_ENGINE_BIN", &engine)
        .args([
            "--log-format",
            "json",
            "run",
            "--name",
            "pod",
            "--memory",
            "128",
        ])
        .args(["--boot-timeout", "90", "--stop-timeout", "20"])
        .arg(&eif)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ctl = || common::vm_ctl(&state, &engine);
    until(
        "the pod is ready",
        Duration::from_secs(90),
        String::new,
        || {
            let o = run(ctl().args(["health"]));
            (!o.status.success()).then(|| stderr(&o))
        },
    );
    // SIGTERM, as the kubelet sends it.
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let stopped = Instant::now();
    let status = child.wait().unwrap();
    assert!(
        stopped.elapsed() < Duration::from_secs(20),
        "{:?}",
        stopped.elapsed()
    );
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(7), "{err}");
    // Every stdout line is a JSON object; the main service's lines are among them.
    let lines: Vec<serde_json::Value> = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).expect("a JSON line"))
        .collect();
    let main: Vec<&str> = lines
        .iter()
        .filter(|v| v["source"] == "main")
        .filter_map(|v| v["text"].as_str())
        .collect();
    assert_eq!(main, ["started", "bye"], "{lines:?}");
    assert!(lines.iter().all(|v| v["time"].is_string()));
    let o = run(ctl().args(["ps", "-a", "--format", "{{.Status}}"]));
    assert!(stdout(&o).starts_with("exited (7)"), "{}", stdout(&o));
}
