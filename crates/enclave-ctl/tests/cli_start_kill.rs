//! `enclave-ctl start`, `restart` and `kill`, here and through the engine API, on a real QEMU
//! microvm: each does what Docker's does (restart boots again with the same record; kill
//! powers off with no grace; start of a running enclave changes nothing; kill of an ended
//! one is an error), and the event log shows the whole sequence in order — also the part
//! done through a daemon killed with SIGKILL and started again in the middle, which replays
//! the same events as the daemonless `events`.
//!
//! Missing prerequisites skip (fail with CI=true).

mod common;

use common::enclaves::{busybox_eif, Env};
use common::{assert_ok, run, stderr, stdout};
use serde_json::Value;

fn state(env: &Env) -> String {
    env.inspect("k")["status"].as_str().unwrap().to_owned()
}

#[test]
fn start_restart_and_kill_here_and_through_a_restarted_daemon_give_the_event_sequence() {
    let Some((engine, init)) = common::vm_prerequisites() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let eif = busybox_eif(
        &init,
        tmp.path(),
        "k",
        &["sh", "sleep"],
        "from: dir:rootfs\nentrypoint: [/bin/sh, -c, \"while true; do sleep 1; done\"]\n",
    );
    let env = Env {
        state: tmp.path().join("state"),
        engine,
        names: &["k"],
    };
    env.run_detached("k", &eif, &[]);
    let first_pid = env.inspect("k")["supervisor_pid"].clone();

    // Here: restart boots again (a new supervisor), kill ends it at once, start boots again.
    assert_eq!(env.ok(&["restart", "-t", "5", "k"]), "k\n");
    assert_eq!(state(&env), "running");
    assert_ne!(env.inspect("k")["supervisor_pid"], first_pid);
    assert_eq!(env.ok(&["kill", "k"]), "k\n");
    assert_eq!(state(&env), "exited");
    let o = run(env.ctl().args(["kill", "k"]));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("enclave k is not running"),
        "{}",
        stderr(&o)
    );
    assert_eq!(env.ok(&["start", "k"]), "k\n");
    assert_eq!(state(&env), "running");
    let pid = env.inspect("k")["supervisor_pid"].clone();
    assert_eq!(env.ok(&["start", "k"]), "k\n");
    assert_eq!(
        env.inspect("k")["supervisor_pid"],
        pid,
        "start of a running enclave"
    );
    let o = run(env.ctl().args(["start", "nope"]));
    assert_eq!(o.status.code(), Some(1));

    // Through the daemon, killed with SIGKILL and started again between kill and start.
    let host = env.host();
    let daemon = env.start_daemon();
    let via = |args: &[&str]| {
        let o = run(env.ctl().args(["--host", &host]).args(args));
        assert_ok(&o);
        stdout(&o)
    };
    assert_eq!(via(&["kill", "k"]), "k\n");
    assert_eq!(state(&env), "exited");
    drop(daemon);
    let _daemon = env.start_daemon();
    assert_eq!(via(&["start", "k"]), "k\n");
    assert_eq!(state(&env), "running");
    assert_eq!(via(&["restart", "-t", "3", "k"]), "k\n");
    assert_eq!(state(&env), "running");
    let o = run(env.ctl().args(["--host", &host, "kill", "nope"]));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no such enclave"), "{}", stderr(&o));
    env.ok(&["stop", "k"]);

    // The log, as the daemon replays it and as enclave-ctl reads it: the same, in order.
    let past = ["events", "--since", "1h", "--until", "0s", "--json"];
    let here = env.ok(&past);
    assert_eq!(via(&past), here);
    let kinds: Vec<String> = here
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|e| {
            let kind = e["type"].as_str().unwrap().to_owned();
            match (kind.as_str(), e["attributes"]["by"].as_str()) {
                ("restart", Some(by)) => format!("restart by {by}"),
                ("stop", _) => format!("stop {}", e["attributes"]["timeout"].as_str().unwrap()),
                _ => kind,
            }
        })
        // The supervisor's looks at services (every 2 s) fall anywhere among these.
        .filter(|k| !matches!(k.as_str(), "exit" | "health_status") && !k.starts_with("service_"))
        .collect();
    let booted = ["boot", "heartbeat"];
    let mut want: Vec<&str> = vec!["create"];
    want.extend(booted);
    want.extend(["stop 5", "die", "restart by request"]);
    want.extend(booted);
    want.extend(["kill", "stop 0", "die"]);
    want.extend(booted);
    want.extend(["kill", "stop 0", "die"]);
    want.extend(booted);
    want.extend(["stop 3", "die", "restart by request"]);
    want.extend(booted);
    want.extend(["stop 10", "die"]);
    assert_eq!(kinds, want);
}
