//! The control channel through the engine API (`POST /v1/enclaves/{e}/control`, upgraded), in
//! a real QEMU microvm: `enclave-ctl --host` runs `run -d` (the options a daemonless run
//! records), exec (exit status, stdin), cp (both ways),
//! services, health and attest with the output and exit status it gives without the daemon;
//! `logs -f` streams through it until the enclave stops; the relay grants nothing of its own (a key the enclave does not know gets no exec through
//! it); the route's errors are JSON (426 without the upgrade, 404, 409 once stopped).
//! An attached `run` through it (with `--rm` and `--secret`) prints the main service's lines
//! and exits with its code as a daemonless one does, and SIGTERM stops it the same way.
//!
//! Missing prerequisites skip (fail with CI=true).

mod common;

use std::io::{BufRead, BufReader, Write};

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::enclaves::{busybox_eif, curl_unix, Env};
use common::net::until;
use common::{assert_ok, run, stderr, stdout};

/// (exit status, stdout, stderr) of `args`, with `stdin` fed when given.
fn outcome(mut cmd: Command, stdin: Option<&[u8]>) -> (Option<i32>, String, String) {
    let o: Output = match stdin {
        None => run(&mut cmd),
        Some(input) => {
            let mut child = cmd
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            child.stdin.take().unwrap().write_all(input).unwrap();
            child.wait_with_output().unwrap()
        }
    };
    (o.status.code(), stdout(&o), stderr(&o))
}

/// `POST path` with `headers` on the daemon's socket.
fn curl(env: &Env, path: &str, headers: &[&str]) -> (u16, serde_json::Value) {
    curl_unix(&env.state.join("engine.sock"), "POST", path, headers, None)
}

#[test]
fn exec_cp_services_health_and_attest_through_the_daemon_match_the_daemonless_cli() {
    let Some((engine, init)) = common::vm_prerequisites() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("rootfs/tmp")).unwrap();
    let eif = busybox_eif(
        &init,
        tmp.path(),
        "r",
        &["sh", "sleep", "cat", "true", "wc"],
        "from: dir:rootfs\nentrypoint: [/bin/sh, -c, \"i=0; while true; do i=$((i+1)); echo tick $i; sleep 1; done\"]\n\
         healthcheck:\n  command: [/bin/true]\n  interval: 500ms\n\
         debug: {exec: true, cp: true}\n",
    );
    let env = Env {
        state: tmp.path().join("state"),
        engine,
        names: &["r"],
    };
    let _daemon = env.start_daemon();
    let host = env.host();

    // An --add-host the image's egress never asks for (it has none) is refused, through the
    // daemon as without it, and nothing is created.
    for through in [false, true] {
        let mut cmd = env.ctl();
        if through {
            cmd.args(["--host", &host]);
        }
        let o = run(cmd
            .args(["run", "-d", "--name", "r", "--memory", "128"])
            .args(["--add-host", "db.internal:10.0.0.5"])
            .arg(&eif));
        assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
        assert!(
            stderr(&o).contains("--add-host db.internal:10.0.0.5: the image may not connect"),
            "{}",
            stderr(&o)
        );
    }
    assert_eq!(stdout(&run(env.ctl().args(["ps", "-a", "-q"]))), "");

    // run -d through the daemon: the id, and the options as a daemonless run records them.
    let o = run(env
        .ctl()
        .args([
            "--host", &host, "run", "-d", "--name", "r", "--memory", "128",
        ])
        .args(["--restart", "on-failure:2"])
        .args(["--boot-timeout", "90"])
        .arg(&eif));
    assert_ok(&o);
    let rec = env.inspect("r");
    assert_eq!(stdout(&o).trim(), rec["id"].as_str().unwrap());
    assert_eq!(rec["status"], "running");
    assert_eq!(rec["restart"], "on-failure:2");
    assert_eq!(rec["memory_mib"], 128);
    // The serial console stays daemonless: a usage error.
    let o = run(env.ctl().args(["--host", &host, "console", "r"]));
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("`console` does not go through"),
        "{}",
        stderr(&o)
    );
    env.wait_ready("r", Duration::from_secs(60));
    let local = |args: &[&str], stdin: Option<&[u8]>| {
        let mut cmd = env.ctl();
        cmd.args(args);
        outcome(cmd, stdin)
    };
    let through = |args: &[&str], stdin: Option<&[u8]>| {
        let mut cmd = env.ctl();
        cmd.args(["--host", &host]).args(args);
        outcome(cmd, stdin)
    };

    // exec: the command's output and exit status, stdin forwarded.
    for (args, stdin) in [
        (
            &[
                "exec",
                "r",
                "sh",
                "-c",
                "echo $((6 * 7)); echo oops >&2; exit 3",
            ][..],
            None,
        ),
        (
            &["exec", "-i", "r", "cat"][..],
            Some(&b"through the relay\n"[..]),
        ),
    ] {
        let want = local(args, stdin);
        assert_eq!(through(args, stdin), want, "{args:?}");
        assert_ne!(want.0, None);
    }
    assert_eq!(
        through(&["exec", "r", "sh", "-c", "exit 3"], None).0,
        Some(3)
    );

    // cp in through the daemon, read back without it; out through the daemon, byte for byte.
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let src = tmp.path().join("payload.bin");
    std::fs::write(&src, &payload).unwrap();
    let (code, _, err) = through(&["cp", src.to_str().unwrap(), "r:/tmp"], None);
    assert_eq!(code, Some(0), "{err}");
    let (_, size, _) = local(&["exec", "r", "sh", "-c", "wc -c < /tmp/payload.bin"], None);
    assert_eq!(size.trim(), "300000");
    let out = tmp.path().join("back");
    std::fs::create_dir(&out).unwrap();
    let (code, _, err) = through(&["cp", "r:/tmp/payload.bin", out.to_str().unwrap()], None);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(std::fs::read(out.join("payload.bin")).unwrap(), payload);

    // services and health: the same text and status.
    until(
        "the health check passed",
        Duration::from_secs(30),
        String::new,
        || {
            let s = env.ok(&["ps", "--format", "{{.Health}}"]);
            (s.trim() != "healthy").then_some(s)
        },
    );
    for args in [
        &["services", "r", "ls"][..],
        &["health", "r"],
        &["health", "--live", "r"],
        &["health"],
        &["health", "nope"],
        &["exec", "nope", "true"],
    ] {
        assert_eq!(through(args, None), local(args, None), "{args:?}");
    }
    // The JSON report, but for how long ago the last check ran.
    let report = |(code, out, _): (Option<i32>, String, String)| {
        let mut v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["health"]["checked_ms_ago"].take();
        (code, v)
    };
    let args = ["health", "--json", "r"];
    assert_eq!(report(through(&args, None)), report(local(&args, None)));

    // attest through the daemon: a document binding our nonce that verifies.
    let doc = tmp.path().join("doc.cbor");
    let nonce = "a1b2c3d4";
    let (code, _, err) = through(
        &["attest", "r", "--nonce", nonce, "-o", doc.to_str().unwrap()],
        None,
    );
    assert_eq!(code, Some(0), "{err}");
    let inspected = env.inspect("r");
    let root_pem = inspected["emulation_root"].as_str().unwrap();
    let pcr0 = inspected["measurements"]["PCR0"].as_str().unwrap();
    let v = run(env.ctl().args([
        "verify",
        doc.to_str().unwrap(),
        "--trust-root",
        root_pem,
        "--nonce",
        nonce,
        "--pcr",
        &format!("0={pcr0}"),
        "--allow-debug",
    ]));
    assert_ok(&v);

    // The relay grants nothing of its own: a key the enclave does not know gets no exec.
    let stranger = tmp.path().join("stranger.key");
    std::fs::write(&stranger, "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n").unwrap();
    let (code, _, err) = through(
        &["exec", "--key", stranger.to_str().unwrap(), "r", "true"],
        None,
    );
    assert_ne!(code, Some(0));
    assert!(err.contains("key is not authorized"), "{err}");

    // logs -f through the daemon: lines as they come, until the enclave stops.
    let mut follower = env
        .ctl()
        .args(["--host", &host, "logs", "-f", "--tail", "1", "r"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follower.stdout.take().unwrap()).lines();
    // The next `tick N` of the main service (enclave-init's own lines come between).
    let mut tick = || -> u64 {
        loop {
            let line = lines.next().expect("logs -f ended early").unwrap();
            if let Some((_, n)) = line.split_once("tick ") {
                return n.trim().parse().unwrap_or_else(|_| panic!("{line:?}"));
            }
        }
    };
    let first = tick();
    let later = tick();
    assert!(later > first, "{first} then {later}");

    // The route's own errors: JSON with a code.
    let (code, body) = curl(&env, "/v1/enclaves/r/control", &[]);
    assert_eq!(
        (code, body["code"].as_str()),
        (426, Some("upgrade_required"))
    );
    let upgrade = ["Connection: Upgrade", "Upgrade: enclave-control"];
    let (code, body) = curl(&env, "/v1/enclaves/nope/control", &upgrade);
    assert_eq!(
        (code, body["code"].as_str()),
        (404, Some("no_such_enclave"))
    );
    env.ok(&["stop", "r"]);
    until(
        "logs -f ended",
        Duration::from_secs(30),
        String::new,
        || {
            follower
                .try_wait()
                .unwrap()
                .is_none()
                .then(|| "still following".into())
        },
    );
    assert_eq!(follower.wait().unwrap().code(), Some(0));
    let (code, body) = curl(&env, "/v1/enclaves/r/control", &upgrade);
    assert_eq!((code, body["code"].as_str()), (409, Some("not_running")));
    let (code, _, err) = through(&["exec", "r", "true"], None);
    assert_eq!(code, Some(1));
    assert!(err.contains("is exited"), "{err}");
}

/// The main service's lines of an attached run's stdout (the rest carries timings).
fn main_lines(out: &str) -> Vec<&str> {
    out.lines().filter(|l| l.starts_with("main: ")).collect()
}

#[test]
fn an_attached_run_through_the_daemon_prints_and_exits_as_a_daemonless_one() {
    let Some((engine, init)) = common::vm_prerequisites() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let once = busybox_eif(
        &init,
        tmp.path(),
        "once",
        &["sh", "sleep", "cat"],
        "from: dir:rootfs\nentrypoint: [/bin/sh, -c, \"cat /run/enclave/secrets/token; echo; \
         echo second line; sleep 1; exit 3\"]\n",
    );
    let steady = busybox_eif(
        &init,
        tmp.path(),
        "steady",
        &[],
        "from: dir:rootfs\nentrypoint: [/bin/sh, -c, \"echo up; while true; do sleep 1; done\"]\n",
    );
    let env = Env {
        state: tmp.path().join("state"),
        engine,
        names: &["local-once", "api-once", "local-steady", "api-steady"],
    };
    let _daemon = env.start_daemon();
    let host = env.host();
    let token = tmp.path().join("token");
    std::fs::write(&token, "s3cret-from-the-operator").unwrap();
    let secret = format!("token={}", token.display());

    // Ends by itself: the same lines, exit 3, removed (--rm) either way.
    let attached = |host: Option<&str>, name: &str| {
        let mut cmd = env.ctl();
        if let Some(h) = host {
            cmd.args(["--host", h]);
        }
        cmd.args(["run", "--rm", "--name", name, "--memory", "128"])
            .args(["--boot-timeout", "90", "--secret", &secret])
            .arg(&once);
        run(&mut cmd)
    };
    let local = attached(None, "local-once");
    let through = attached(Some(&host), "api-once");
    assert_eq!(local.status.code(), Some(3), "{}", stderr(&local));
    assert_eq!(through.status.code(), Some(3), "{}", stderr(&through));
    let local_out = stdout(&local);
    let want = main_lines(&local_out);
    assert_eq!(
        want,
        ["main: s3cret-from-the-operator", "main: second line"]
    );
    assert_eq!(main_lines(&stdout(&through)), want, "{}", stdout(&through));
    assert!(
        stderr(&through).contains("enclave api-once ("),
        "{}",
        stderr(&through)
    );
    let all = env.ok(&["ps", "-a", "--format", "{{.Name}}"]);
    assert!(!all.contains("once"), "--rm removed both: {all}");

    // Stopped by SIGTERM: the same exit status either way.
    let stopped = |host: Option<&str>, name: &str| -> (Option<i32>, Vec<String>) {
        let mut cmd = env.ctl();
        if let Some(h) = host {
            cmd.args(["--host", h]);
        }
        let mut child = cmd
            .args([
                "run",
                "--name",
                name,
                "--memory",
                "128",
                "--stop-timeout",
                "5",
            ])
            .args(["--boot-timeout", "90"])
            .arg(&steady)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut seen = Vec::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            let up = line == "main: up";
            seen.push(line);
            if up {
                break;
            }
        }
        assert!(seen.iter().any(|l| l == "main: up"), "{seen:?}");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        seen.extend(lines.map_while(Result::ok));
        let status = child.wait().unwrap();
        (status.code(), seen)
    };
    let (local_code, _) = stopped(None, "local-steady");
    let (through_code, _) = stopped(Some(&host), "api-steady");
    assert!(local_code.is_some(), "a status, not a signal");
    assert_eq!(through_code, local_code);
    assert_eq!(env.inspect("api-steady")["status"], "exited");
}
