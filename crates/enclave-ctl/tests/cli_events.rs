//! `enclave-ctl events` over real QEMU microvms: the event log the supervisors, `run`, `attest`
//! and `rm` write, read back as `docker events` prints a daemon's.
//! - a main service that exits 3 under `--restart on-failure:1`: create, boot, heartbeat,
//!   exit (3), die, restart, boot, heartbeat, exit (3), die;
//! - a healthy enclave: its health status, an attestation, a stop, and `rm` seen by a follower
//!   started before it (`events` without `--until` keeps printing until SIGTERM, then exits 0);
//! - services: a steady one's start and its restart on request, a flaky one's restarts by its
//!   policy and its end as failed.
//!
//! Service events come from the supervisor's look every 2 s, so where they fall against the
//! enclave's own events is not fixed: the sequences of the enclave leave them out.
//!
//! Missing prerequisites skip (fail with CI=true).

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::enclaves::{busybox_eif, Env};
use common::net::until;
use common::{run, stderr, stdout};
use serde_json::Value;

fn build(init: &Path, dir: &Path, name: &str, spec: &str) -> PathBuf {
    busybox_eif(init, dir, name, &["sh", "sleep", "true"], spec)
}

/// `events --since 1h --until now --json` with `filters`, as JSON values, without the service
/// events (see the module's note).
fn past_events(env: &Env, filters: &[&str]) -> Vec<Value> {
    all_past_events(env, filters)
        .into_iter()
        .filter(|e| !e["type"].as_str().unwrap().starts_with("service_"))
        .collect()
}

/// The same with the service events.
fn all_past_events(env: &Env, filters: &[&str]) -> Vec<Value> {
    env.past_events(filters)
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

#[test]
fn a_failing_main_service_restarted_by_policy_gives_the_whole_sequence() {
    let Some((engine, init)) = common::vm_prerequisites() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let eif = build(
        &init,
        tmp.path(),
        "crash",
        "from: dir:rootfs\nentrypoint: [/bin/sh, -c, \"sleep 1; exit 3\"]\n",
    );
    let env = Env {
        state: tmp.path().join("state"),
        engine,
        names: &["crash"],
    };
    env.run_detached("crash", &eif, &["--restart", "on-failure:1"]);
    until(
        "it ended for good",
        Duration::from_secs(120),
        String::new,
        || {
            let s = env.ok(&["ps", "-a", "--format", "{{.Status}}"]);
            (!s.starts_with("exited (3)")).then_some(s)
        },
    );
    let events = past_events(&env, &["enclave=crash"]);
    assert_eq!(
        types(&events),
        [
            "create",
            "boot",
            "heartbeat",
            "exit",
            "die",
            "restart",
            "boot",
            "heartbeat",
            "exit",
            "die"
        ],
        "{events:#?}"
    );
    let id = events[0]["id"].as_str().unwrap();
    assert!(events.iter().all(|e| e["id"] == id && e["name"] == "crash"));
    assert_eq!(events[3]["attributes"]["exit_code"], "3");
    assert_eq!(events[4]["attributes"]["exit_code"], "3");
    assert_eq!(events[5]["attributes"]["restart"], "1");
    assert_eq!(events[6]["attributes"]["restarts"], "1");
    // Filters on different keys narrow; the id prefix works as the name does.
    let dies = past_events(&env, &[&format!("enclave={}", &id[..8]), "type=die"]);
    assert_eq!(types(&dies), ["die", "die"]);
    // The text form, as docker events prints it.
    let o = run(env.ctl().args([
        "events",
        "--since",
        "1h",
        "--until",
        "0s",
        "-f",
        "type=create",
    ]));
    let line = stdout(&o);
    assert!(
        line.contains(&format!(
            " enclave create {id} (name=crash, backend=qemu, image="
        )),
        "{line}"
    );
}

#[test]
fn health_attest_stop_and_rm_are_events_and_a_follower_sees_them_as_they_come() {
    let Some((engine, init)) = common::vm_prerequisites() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let eif = build(
        &init,
        tmp.path(),
        "web",
        "from: dir:rootfs\nentrypoint: [/bin/sh, -c, \"while true; do sleep 1; done\"]\n\
         healthcheck:\n  command: [/bin/true]\n  interval: 500ms\n",
    );
    let env = Env {
        state: tmp.path().join("state"),
        engine,
        names: &["web"],
    };
    env.run_detached("web", &eif, &[]);
    env.wait_ready("web", Duration::from_secs(60));
    // The supervisor asks every 2 s: its record (and the event) follows the enclave's answer.
    until(
        "the supervisor saw it healthy",
        Duration::from_secs(20),
        String::new,
        || {
            let s = env.ok(&["ps", "--format", "{{.Health}}"]);
            (s.trim() != "healthy").then_some(s)
        },
    );
    let doc = tmp.path().join("doc.cbor");
    env.ok(&["attest", "web", "-o", doc.to_str().unwrap()]);
    env.ok(&["stop", "web"]);

    // A follower from now on, of destroy events only.
    let mut follower = env
        .ctl()
        .args(["events", "--json", "--filter", "type=destroy"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    env.ok(&["rm", "web"]);
    let mut line = String::new();
    BufReader::new(follower.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let destroyed: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(destroyed["type"], "destroy");
    assert_eq!(destroyed["name"], "web");
    let pid = nix::unistd::Pid::from_raw(follower.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = follower.wait().unwrap();
    assert_eq!(status.code(), Some(0));

    let events = past_events(&env, &["enclave=web"]);
    let kinds = types(&events);
    let at = |t: &str| {
        kinds
            .iter()
            .position(|k| *k == t)
            .unwrap_or_else(|| panic!("no {t} in {kinds:?}"))
    };
    assert!(at("create") < at("boot") && at("boot") < at("heartbeat"));
    // Every change is an event: "starting" may come first if the supervisor asked during
    // the start period; "healthy" must come, after the first heartbeat and before the stop.
    let healthy = events
        .iter()
        .position(|e| e["type"] == "health_status" && e["attributes"]["status"] == "healthy")
        .unwrap_or_else(|| panic!("no healthy health_status in {events:?}"));
    assert!(at("heartbeat") < at("health_status") && healthy < at("stop"));
    assert!(at("attest") < at("stop") && at("stop") < at("die") && at("die") < at("destroy"));
    assert_eq!(events[at("attest")]["attributes"]["binds"], "nonce");
    assert_eq!(events[at("stop")]["attributes"]["timeout"], "10");
    assert_eq!(kinds.last(), Some(&"destroy"));

    // Bad input: an unknown type or key is a usage error; nothing is printed.
    let o = run(env
        .ctl()
        .args(["events", "--until", "0s", "-f", "type=pause"]));
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("unknown event type \"pause\""),
        "{}",
        stderr(&o)
    );
    let o = run(env
        .ctl()
        .args(["events", "--until", "0s", "-f", "colour=red"]));
    assert_eq!(o.status.code(), Some(2));
    let o = run(env.ctl().args(["events", "--since", "yesterday"]));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("invalid --since"), "{}", stderr(&o));
}

#[test]
fn service_starts_restarts_and_ends_are_events() {
    let Some((engine, init)) = common::vm_prerequisites() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let eif = build(
        &init,
        tmp.path(),
        "svc",
        "from: dir:rootfs\nentrypoint: [/bin/sh, -c, \"while true; do sleep 1; done\"]\n\
         services:\n  - name: steady\n    command: [/bin/sh, -c, \"while true; do sleep 1; done\"]\n\
         \x20 - name: flaky\n    command: [/bin/sh, -c, \"sleep 1; exit 1\"]\n    \
         restart: on-failure\n    max_restarts: 2\n",
    );
    let env = Env {
        state: tmp.path().join("state"),
        engine,
        names: &["svc"],
    };
    env.run_detached("svc", &eif, &[]);
    let service_events = |kind: &str, service: &str| -> Vec<Value> {
        all_past_events(&env, &["enclave=svc", &format!("type={kind}")])
            .into_iter()
            .filter(|e| e["attributes"]["service"] == service)
            .collect()
    };
    until(
        "flaky ended for good",
        Duration::from_secs(60),
        String::new,
        || {
            service_events("service_exit", "flaky")
                .is_empty()
                .then(|| "not yet".into())
        },
    );
    let flaky_end = &service_events("service_exit", "flaky")[0];
    assert_eq!(flaky_end["attributes"]["state"], "failed", "{flaky_end}");
    assert_eq!(flaky_end["attributes"]["exit_code"], "1", "{flaky_end}");
    let restarts = service_events("service_restart", "flaky");
    assert!(!restarts.is_empty(), "flaky's restarts by policy");
    assert!(restarts.iter().all(|e| e["attributes"]["restarts"] != "0"));

    assert_eq!(service_events("service_start", "steady").len(), 1);
    assert!(service_events("service_restart", "steady").is_empty());
    env.ok(&["services", "svc", "restart", "steady"]);
    until(
        "steady's restart seen",
        Duration::from_secs(20),
        String::new,
        || {
            service_events("service_restart", "steady")
                .is_empty()
                .then(|| "not yet".into())
        },
    );
    // In the log's order: steady started before it was restarted; flaky's restarts before
    // its end.
    let all = all_past_events(&env, &["enclave=svc"]);
    let at = |kind: &str, service: &str| {
        all.iter()
            .position(|e| e["type"] == kind && e["attributes"]["service"] == service)
            .unwrap_or_else(|| panic!("no {kind} of {service}"))
    };
    assert!(at("service_start", "steady") < at("service_restart", "steady"));
    assert!(at("service_restart", "flaky") < at("service_exit", "flaky"));
    assert!(
        at("service_start", "steady") > all.iter().position(|e| e["type"] == "heartbeat").unwrap()
    );
}
