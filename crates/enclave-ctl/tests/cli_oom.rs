//! Running out of memory, in a real QEMU microvm with 128 MiB: the guest kernel's OOM killer
//! ends a process that fills a 96 MiB buffer (busybox `dd`), and enclave-init tells that from
//! another SIGKILL.
//! - a service killed by the OOM killer: an `oom` event naming it, then its `service_exit`
//!   (signal 9); a service that kills itself with SIGKILL: its `service_exit`, no `oom`;
//! - the main service killed by the OOM killer ends the enclave: `oom` (service `main`), `exit`
//!   137, `die`, as Docker reports an OOM-killed container; `inspect` says `oom_killed`, and
//!   `ps` shows `exited (137)`.
//!
//! Missing prerequisites skip (fail with CI=true).

mod common;

use std::time::Duration;

use common::enclaves::{busybox_eif, Env};
use common::net::until;
use common::{assert_ok, run, stdout};
use serde_json::Value;

/// `events --json` of the enclave, every kind.
fn events(env: &Env, name: &str) -> Vec<Value> {
    env.past_events(&[&format!("enclave={name}")])
}

fn summary(e: &Value) -> String {
    let service = e["attributes"]["service"].as_str().unwrap_or("");
    format!("{} {service}", e["type"].as_str().unwrap())
        .trim_end()
        .to_owned()
}

#[test]
fn oom_kills_are_events_and_the_main_services_ends_the_enclave_as_docker_says() {
    let Some((engine, init)) = common::vm_prerequisites() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    // Each `dd` asks for one buffer of 90% of the memory the kernel manages (within its
    // overcommit heuristic, which refuses more than all of it) and fills it from /dev/zero:
    // more than the enclave has left beside the kernel, its rootfs and init.
    let hog = "dd if=/dev/zero of=/dev/null count=1 \
               bs=$(awk '/^MemTotal/ {print int($2 * 0.9)}' /proc/meminfo)k";
    let spec = format!(
        "from: dir:rootfs\n\
         entrypoint: [/bin/sh, -c, \"sleep 8; exec {hog}\"]\n\
         services:\n\
         \x20 - name: hog\n    command: [/bin/sh, -c, \"exec {hog}\"]\n\
         \x20 - name: suicide\n    command: [/bin/sh, -c, \"sleep 1; kill -9 $$\"]\n"
    );
    let eif = busybox_eif(
        &init,
        tmp.path(),
        "oom",
        &["sh", "sleep", "dd", "kill", "awk"],
        &spec,
    );
    let env = Env {
        state: tmp.path().join("state"),
        engine,
        names: &["oom"],
    };
    env.run_detached("oom", &eif, &[]);
    until(
        "the enclave ended",
        Duration::from_secs(120),
        String::new,
        || {
            let all = events(&env, "oom");
            (!all.iter().any(|e| e["type"] == "die")).then(|| format!("{all:?}"))
        },
    );
    let all = events(&env, "oom");
    let logs = env.ok(&["logs", "oom"]);
    let seen: Vec<String> = all.iter().map(summary).collect();
    let at = |what: &str| {
        seen.iter()
            .position(|s| s == what)
            .unwrap_or_else(|| panic!("no {what:?} in {seen:?}"))
    };
    // The service: oom, then its exit by SIGKILL.
    let hog_exit = &all[at("service_exit hog")];
    assert_eq!(hog_exit["attributes"]["signal"], "9", "{hog_exit}\n{logs}");
    assert!(at("oom hog") < at("service_exit hog"), "{seen:?}");
    // A SIGKILL that is not the OOM killer's.
    let suicide = &all[at("service_exit suicide")];
    assert_eq!(suicide["attributes"]["signal"], "9", "{suicide}");
    assert!(!seen.contains(&"oom suicide".to_owned()), "{seen:?}");
    // The main service: oom, exit 137, die; one oom each.
    assert!(
        at("oom main") < at("exit") && at("exit") < at("die"),
        "{seen:?}"
    );
    assert_eq!(all[at("exit")]["attributes"]["exit_code"], "137");
    assert_eq!(
        seen.iter().filter(|s| s.starts_with("oom")).count(),
        2,
        "{seen:?}"
    );

    let o = run(env.ctl().args(["inspect", "oom"]));
    assert_ok(&o);
    let rec: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let rec = if rec.is_array() { rec[0].clone() } else { rec };
    assert_eq!(rec["oom_killed"], true, "{rec}");
    assert_eq!(rec["exit_code"], 137, "{rec}");
    let o = run(env.ctl().args(["ps", "-a", "--format", "{{.Status}}"]));
    assert_ok(&o);
    assert!(stdout(&o).contains("exited (137)"), "{}", stdout(&o));
    // The enclave's own log says what happened.
    assert!(logs.contains("OOM killer"), "enclave-init names it: {logs}");
}
