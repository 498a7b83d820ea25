//! System tests of the lifecycle commands: real QEMU microvms (TCG is fine) booting the example
//! EIF, supervised by the real `enclave-engine` binary. One sequential scenario keeps the VM
//! count at three or fewer on small machines. Missing prerequisites skip (fail with CI=true).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::enclaves::{kill, processes_mentioning, Env};
use common::{assert_ok, example_image, run, stderr, stdout};
use serde_json::Value;

#[test]
fn enclaves_run_restart_stop_and_clean_up() {
    let Some((engine, init)) = common::vm_prerequisites() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let Some(oci) = example_image(tmp.path()) else {
        return;
    };
    let eif = tmp.path().join("hello.eif");
    let spec = common::workspace().join("examples/hello/enclave.yaml");
    assert_ok(&run(common::ctl(&init)
        .args(["build", "-f"])
        .arg(&spec)
        .arg("--from")
        .arg(format!("oci:{}:latest", oci.display()))
        .arg("-o")
        .arg(&eif)));
    let eif_s = eif.to_str().unwrap();
    let env = Env {
        state: tmp.path().join("state"),
        engine,
        names: &["a", "b", "c", "mute"],
    };

    // Bad input: a clear error, nothing created.
    let e = env.fails(&["run", "-d", "/nonexistent.eif"]);
    assert!(e.contains("no such EIF"), "{e}");
    let corrupt = tmp.path().join("corrupt.eif");
    let mut bytes = std::fs::read(&eif).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&corrupt, bytes).unwrap();
    let e = env.fails(&["run", "-d", corrupt.to_str().unwrap()]);
    assert!(e.contains("CRC"), "{e}");
    let e = env.fails(&["run", "-d", "--memory", "16", eif_s]);
    assert!(e.contains("--memory"), "{e}");
    let e = env.fails(&["stop", "nosuch"]);
    assert!(e.contains("no such enclave"), "{e}");
    assert_eq!(env.dirs(), 0);

    // Three enclaves started at once: distinct CIDs, all running (heartbeat received).
    let started = Instant::now();
    let runs: Vec<_> = [("a", "on-failure"), ("b", "no"), ("c", "no")]
        .iter()
        .map(|(name, policy)| {
            env.ctl()
                .args([
                    "run",
                    "-d",
                    "--cpus",
                    "1",
                    "--memory",
                    "128",
                    "--boot-timeout",
                    "90",
                ])
                .args(["--debug-mode", "--name", name, "--restart", policy, eif_s])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for r in runs {
        assert_ok(&r.wait_with_output().unwrap());
    }
    eprintln!(
        "three enclaves up in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let ps: Value = serde_json::from_str(&env.ok(&["ps", "--json"])).unwrap();
    let ps = ps.as_array().unwrap();
    assert_eq!(ps.len(), 3);
    let mut cids: Vec<u64> = ps.iter().map(|r| r["cid"].as_u64().unwrap()).collect();
    cids.sort_unstable();
    cids.dedup();
    assert_eq!(cids.len(), 3, "distinct CIDs");
    assert!(ps
        .iter()
        .all(|r| r["status"] == "running" && r["boot_ms"].is_u64()));
    let table = env.ok(&["ps"]);
    assert_eq!(table.lines().count(), 4, "{table}");

    // inspect: PCRs are the EIF's, ports, backend.
    let measured: Value = serde_json::from_str(&stdout(&run(
        common::ctl(&init).args(["measure", "--json", eif_s])
    )))
    .unwrap();
    let a = env.inspect("a");
    let pcr0 = measured
        .pointer("/Measurements/PCR0")
        .or(measured.get("PCR0"))
        .cloned();
    assert_eq!(
        Some(a["measurements"]["PCR0"].clone()),
        pcr0,
        "{measured:#}"
    );
    assert_eq!(a["backend"], "qemu");
    assert_eq!(a["ports"]["heartbeat"], 9000);
    assert!(a["control_addr"].as_str().unwrap().starts_with("hybrid:"));
    // Id prefixes work as names do.
    let prefix = &a["id"].as_str().unwrap()[..8];
    assert_eq!(env.inspect(prefix)["name"], "a");

    // exec and cp through the hybrid vsock path (vhost-device-vsock's Unix socket) into the VM.
    let out = env.ok(&[
        "exec",
        "b",
        "--",
        "/bin/sh",
        "-c",
        "echo $GREETING; hostname",
    ]);
    assert_eq!(out, "hello from enclave-engine\nhello-enclave\n");
    let o = run(env
        .ctl()
        .args(["exec", "b", "--", "/bin/sh", "-c", "exit 7"]));
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    let payload = tmp.path().join("payload");
    std::fs::create_dir_all(payload.join("sub")).unwrap();
    std::fs::write(payload.join("sub/data.bin"), vec![0xa5u8; 300_000]).unwrap();
    std::os::unix::fs::symlink("sub/data.bin", payload.join("link")).unwrap();
    env.ok(&["cp", payload.to_str().unwrap(), "b:/tmp"]);
    let listing = env.ok(&[
        "exec",
        "b",
        "--",
        "/bin/sh",
        "-c",
        "sha256sum /tmp/payload/sub/data.bin; readlink /tmp/payload/link",
    ]);
    let expected = common::sha256(&payload.join("sub/data.bin"));
    assert!(listing.contains(&expected), "{listing}");
    assert!(listing.contains("sub/data.bin"), "{listing}");
    let back = tmp.path().join("back");
    std::fs::create_dir_all(&back).unwrap();
    env.ok(&["cp", "b:/tmp/payload", back.to_str().unwrap()]);
    assert_eq!(common::sha256(&back.join("payload/sub/data.bin")), expected);
    assert_eq!(
        std::fs::read_link(back.join("payload/link")).unwrap(),
        Path::new("sub/data.bin")
    );

    // Logs and console.
    let logs = env.ok(&["logs", "a"]);
    assert!(logs.contains("main: hello from the enclave"), "{logs}");
    assert!(env.ok(&["logs", "--tail", "1", "a"]).lines().count() <= 1);
    let console = env.ok(&["console", "--no-follow", "a"]);
    assert!(console.contains("Run /init"), "{console}");

    // A duplicate name fails and leaves nothing behind.
    let e = env.fails(&["run", "-d", "--name", "a", "--memory", "128", eif_s]);
    assert!(e.contains("already used"), "{e}");
    assert_eq!(env.dirs(), 3);

    // Killing the VM: restarted under on-failure, dead under no.
    kill(a["instance"]["pid"].as_u64().unwrap(), "-KILL");
    let b = env.inspect("b");
    kill(b["instance"]["pid"].as_u64().unwrap(), "-KILL");
    env.wait_for("a", "a restart", Duration::from_secs(60), |v| {
        v["restarts"] == 1 && v["status"] == "running"
    });
    env.wait_for("b", "failure", Duration::from_secs(10), |v| {
        v["status"] == "failed" && v["restarts"] == 0
    });

    // Killing the supervisor leaves no QEMU or vhost-device-vsock behind.
    let c = env.inspect("c");
    let c_dir = c["state_dir"].as_str().unwrap().to_owned();
    kill(c["supervisor_pid"].as_u64().unwrap(), "-KILL");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !processes_mentioning(&c_dir).is_empty() {
        assert!(
            Instant::now() < deadline,
            "left behind: {:?}",
            processes_mentioning(&c_dir)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The lock is released when the supervisor's last thread is gone, which can be a moment
    // after its children died of PR_SET_PDEATHSIG (the thread that spawned them exits first).
    env.wait_for(
        "c",
        "failed once its supervisor died",
        Duration::from_secs(5),
        |v| v["status"] == "failed",
    );

    // stop ends it within its timeout.
    let t = Instant::now();
    env.ok(&["stop", "-t", "5", "a"]);
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "stop took {:?}",
        t.elapsed()
    );
    assert_eq!(env.inspect("a")["status"], "exited");
    let a_dir = env.inspect("a")["state_dir"].as_str().unwrap().to_owned();
    assert!(processes_mentioning(&a_dir).is_empty());
    assert!(env.ok(&["ps"]).lines().count() == 1);

    // A VM that never sends the heartbeat fails `run` with the console tail.
    let o = run(env
        .ctl()
        .env("ENCLAVE_ENGINE_EXTRA_CMDLINE", "enclave.parent_cid=99")
        .args([
            "run",
            "-d",
            "--name",
            "mute",
            "--cpus",
            "1",
            "--memory",
            "128",
            "--boot-timeout",
            "25",
            eif_s,
        ]));
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("no boot heartbeat") && e.contains("heartbeat to cid 99"),
        "{e}"
    );

    // rm: everything goes.
    env.ok(&["rm", "-f", "a", "b", "c", "mute"]);
    assert_eq!(env.dirs(), 0);
}
