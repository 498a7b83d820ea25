//! enclave-init as a real PID 1: a fake initramfs (the layout of docs/architecture.md) run with
//! `unshare --pid --fork --mount --uts --net --ipc chroot DIR /init`, asserted from its console.
//!
//! Needs root, `unshare` and a static busybox (Debian's busybox-static). Without them the test
//! prints a skip note, or fails when `CI=true`.
//!
//! `ENCLAVE_INIT_BIN` runs another binary (e.g. the static one from scripts/build-init.sh)
//! instead of the one cargo built for this test.

mod support;

use std::time::{Duration, Instant};

use support::{count, find, Enclave};

const GRACE_MS: u64 = 1000;

fn sh(script: &str) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), script.into()]
}

fn spec_json() -> serde_json::Value {
    serde_json::json!({
        "hostname": "test-enclave",
        "services": [
            {"name": "fail", "command": sh("echo fail-run; exit 1"),
             "restart": "on-failure", "max_restarts": 2},
            {"name": "always0", "command": sh("echo always-run"),
             "restart": "always", "max_restarts": 2},
            {"name": "once", "command": sh("echo once-run; exit 1"), "restart": "no"},
            {"name": "server",
             "command": sh("echo server-starting; sleep 0.5; echo server-listening; \
                            exec httpd -f -p 127.0.0.1:8080 -h /www"),
             "readiness": {"tcp": 8080}},
            {"name": "client", "depends_on": ["server"],
             "command": sh("echo client-got=$(wget -q -O - http://127.0.0.1:8080/index.html)")},
            {"name": "cmdready", "command": sh("sleep 0.3; touch /tmp/ready-flag; sleep 100"),
             "readiness": {"command": ["/bin/test", "-e", "/tmp/ready-flag"]}},
            {"name": "after-cmd", "depends_on": ["cmdready"],
             "command": sh("test -e /tmp/ready-flag && echo flag-was-there")},
            {"name": "zombies", "command": sh(ZOMBIE_SCRIPT)},
            {"name": "sigmask", "command": sh("grep SigBlk /proc/self/status")},
            {"name": "lines", "command": sh(
                "echo out-line-1; echo err-line-1 >&2; head -c 5000 /dev/zero | tr '\\0' a; \
                 echo; printf no-newline-at-end")},
            {"name": "stubborn", "command": sh(
                "trap 'echo stubborn-ignores-TERM' TERM; echo stubborn-up; \
                 while :; do sleep 0.1; done")},
        ]
    })
}

/// Double-forks two orphans (one exits at once, one after 0.2 s), then counts the zombies of
/// the whole PID namespace: init must have reaped the orphans it inherited.
const ZOMBIE_SCRIPT: &str = r#"
(sh -c 'sleep 0.2; echo orphan-ppid=$(cut -d" " -f4 /proc/$$/stat)' &)
(sh -c 'exit 3' &)
sleep 1
for try in 1 2 3 4 5 6 7 8 9 10; do
  z=0
  for s in /proc/[0-9]*/stat; do
    read -r l < "$s" || continue
    set -- $l
    [ "$3" = Z ] && z=$((z+1))
  done 2>/dev/null
  [ "$z" = 0 ] && break
  sleep 0.1
done
echo zombies=$z
grep VmHWM /proc/1/status
"#;

const MAIN_SCRIPT: &str = "echo main-pid=$$ init-comm=$(cat /proc/1/comm) host=$(hostname); id; \
    trap 'echo main-got-SIGTERM; exit 0' TERM; while :; do sleep 0.1; done";

#[test]
fn enclave_init_is_a_real_pid1() {
    let Some(enclave) = Enclave::prepare(&spec_json(), &sh(MAIN_SCRIPT), "app") else {
        return;
    };
    let mut run = enclave.boot(&[("ENCLAVE_INIT_GRACE_MS", &GRACE_MS.to_string())]);

    // Everything that happens without our intervention.
    let ready = run.wait_for(Duration::from_secs(20), |out| {
        out.contains("[zombies] zombies=")
            && out.contains("[client] client-got=")
            && out.contains("fail exited (exit code 1)")
            && out.contains("giving up after 2 restarts")
            && count(out, "[always0] always-run") == 3
            && out.contains("[after-cmd]")
            && out.contains("[lines] no-newline-at-end")
            && out.contains("[stubborn] stubborn-up")
    });
    assert!(ready, "services did not get there:\n{}", run.output());
    // Let a wrong extra restart show up, if there is one.
    std::thread::sleep(Duration::from_millis(500));

    let init_pid = run.init_host_pid().expect("the namespace's init");
    assert_eq!(support::comm(init_pid).as_deref(), Some("init"));
    let sent = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(init_pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM to init");
    let status = run.wait_exit(Duration::from_secs(20));
    let took = sent.elapsed();
    let out = run.output();
    eprintln!("---- console ----\n{out}---- end ({status:?}, shutdown took {took:?}) ----");

    // PID 1, really.
    assert!(
        out.contains("enclave-init: enclave-init 0.1.0 starting as pid 1"),
        "{out}"
    );
    let main_line = find(&out, "[main] main-pid=").expect("main's first line");
    assert!(main_line.contains("init-comm=init"), "{main_line}");
    assert!(main_line.contains("host=test-enclave"), "{main_line}");
    // The app's user, with its supplementary group from /etc/group.
    assert!(
        out.contains("[main] uid=1000(app) gid=1000(app) groups=1000(app),2000(extra)"),
        "{out}"
    );
    assert!(out.contains("heartbeat"), "{out}");

    // Restart policies.
    assert_eq!(count(&out, "[fail] fail-run"), 3, "{out}");
    assert_eq!(count(&out, "[always0] always-run"), 3, "{out}");
    assert_eq!(count(&out, "[once] once-run"), 1, "{out}");
    assert!(out.contains("once exited (exit code 1)"), "{out}");
    assert!(out.contains("not restarted (restart policy)"), "{out}");
    assert!(out.contains("restart 1 of 2 in 100 ms"), "{out}");
    assert!(out.contains("restart 2 of 2 in 200 ms"), "{out}");

    // Dependency order: the client starts once the server's port is open, over lo.
    let ready_at = out
        .find("enclave-init: server is ready")
        .expect("server ready");
    let client_at = out
        .find("enclave-init: started client")
        .expect("client started");
    assert!(ready_at < client_at, "{out}");
    assert!(out.find("[server] server-listening").expect("listening") < client_at);
    assert!(out.contains("[client] client-got=hello-enclave"), "{out}");
    let cmd_ready = out
        .find("enclave-init: cmdready is ready")
        .expect("cmdready ready");
    assert!(
        cmd_ready
            < out
                .find("enclave-init: started after-cmd")
                .expect("after-cmd")
    );
    assert!(out.contains("[after-cmd] flag-was-there"), "{out}");

    // Init blocks the signals it reads through its signalfd; services must not inherit that.
    assert!(out.contains("[sigmask] SigBlk:\t0000000000000000"), "{out}");

    // Orphans reaped.
    assert!(out.contains("[zombies] orphan-ppid=1"), "{out}");
    assert!(out.contains("[zombies] zombies=0"), "{out}");

    // Line capture: streams, the long line split at 4096 bytes, the last unterminated line.
    assert!(out.contains("[lines] out-line-1\n"), "{out}");
    assert!(out.contains("[lines:err] err-line-1\n"), "{out}");
    assert!(out.contains(&format!("[lines] {}\n", "a".repeat(4096))));
    assert!(out.contains(&format!("[lines] {}\n", "a".repeat(5000 - 4096))));
    assert!(out.contains("[lines] no-newline-at-end\n"), "{out}");

    // Shutdown: SIGTERM reaches the services; the one ignoring it is killed after the grace.
    assert!(out.contains("shutting down: received SIGTERM"), "{out}");
    // One SIGTERM each, as Docker sends: a shell's TERM trap runs once.
    assert_eq!(count(&out, "[main] main-got-SIGTERM"), 1, "{out}");
    assert_eq!(count(&out, "[stubborn] stubborn-ignores-TERM"), 1, "{out}");
    assert!(
        out.contains(&format!(
            "stubborn did not stop within {GRACE_MS} ms of SIGTERM; sent SIGKILL"
        )),
        "{out}"
    );
    assert!(
        out.contains("stubborn stopped (killed by SIGKILL)"),
        "{out}"
    );
    assert!(
        out.contains("enclave-init: powering off: received SIGTERM"),
        "{out}"
    );
    assert!(status.is_some(), "init did not end");
    assert!(took >= Duration::from_millis(GRACE_MS), "{took:?}");
    assert!(took < Duration::from_millis(GRACE_MS + 5000), "{took:?}");
    if let Some(mem) = find(&out, "enclave-init: memory:") {
        eprintln!("{mem}");
    }
}

#[test]
fn main_exit_powers_off_and_a_bad_user_is_reported() {
    let spec = serde_json::json!({
        "services": [{"name": "side", "command": sh("sleep 100")}]
    });
    // Unknown user: nothing starts, the main service counts as failed, the enclave powers off.
    let Some(enclave) = Enclave::prepare(&spec, &sh("echo never"), "nosuchuser") else {
        return;
    };
    let mut run = enclave.boot(&[("ENCLAVE_INIT_GRACE_MS", "500")]);
    let status = run.wait_exit(Duration::from_secs(20));
    let out = run.output();
    assert!(status.is_some(), "init did not end:\n{out}");
    assert!(
        out.contains("no user \"nosuchuser\" in /etc/passwd"),
        "{out}"
    );
    assert!(out.contains("cannot start main"), "{out}");
    assert!(
        out.contains("powering off: the main service ended (exit code 127)"),
        "{out}"
    );
    assert!(!out.contains("[main] never"), "{out}");
}

/// The exit report: a stand-in supervisor that did the hand-off hears how the main service
/// ended (its exit code) before the enclave powers off, and the enclave waits for it to take
/// the report.
#[test]
fn the_supervisor_is_told_how_the_main_service_ended() {
    use enclave_proto::handoff::{self, SupervisorOffer, HANDOFF_VERSION};
    use enclave_proto::wire::ExitStatus;

    let spec = serde_json::json!({"services": [{"name": "side", "command": sh("sleep 100")}]});
    let Some(enclave) = Enclave::prepare(&spec, &sh("echo bye; exit 3"), "root") else {
        return;
    };
    let listener = std::os::unix::net::UnixListener::bind(enclave.rootfs().join("sv.sock"))
        .expect("bind the hand-off socket");
    let supervisor = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("the enclave connects");
        let offer = SupervisorOffer {
            version: HANDOFF_VERSION,
            supervisor_key: [7; 32],
            nonce: [1; 32],
            secrets: Default::default(),
        };
        handoff::write_offer(&mut conn, &offer).unwrap();
        handoff::read_identity(&mut conn).unwrap();
        let exit = handoff::read_exit(&mut conn).expect("the exit report");
        // Take a moment before closing: the enclave must wait for us.
        std::thread::sleep(Duration::from_millis(300));
        (exit, Instant::now())
    });
    let mut run = enclave.boot(&[
        ("ENCLAVE_INIT_SUPERVISOR_ADDR", "unix:/sv.sock"),
        ("ENCLAVE_INIT_GRACE_MS", "300"),
    ]);
    let status = run.wait_exit(Duration::from_secs(20));
    let ended = Instant::now();
    let out = run.output();
    assert!(status.is_some(), "init did not end:\n{out}");
    let (exit, closed) = supervisor.join().expect("the stand-in supervisor");
    assert_eq!(exit.main, Some(ExitStatus::Code(3)), "{out}");
    assert!(
        exit.reason.contains("the main service ended (exit code 3)"),
        "{exit:?}"
    );
    assert!(
        ended >= closed,
        "powered off before the report was taken:\n{out}"
    );
    assert!(!out.contains("reporting the exit"), "{out}");
}
