//! System tests of the conventions Docker users expect, on real QEMU microvms (TCG is fine):
//! `run` exits with the main service's exit code (125 for the engine's own errors), `ps -a`,
//! `ps --format` and `inspect` carry the code and the time, `run --rm` leaves nothing, `exec`
//! needs no `--` and runs as `-u USER`, `ps -q`, `stop --timeout`, memory with units, and
//! `--restart on-failure` restarts an enclave whose main service exited non-zero. One
//! sequential scenario keeps one VM at a time. Missing prerequisites skip (fail with CI=true).

mod common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::enclaves::Env;
use common::{assert_ok, example_image, run, stderr, stdout};
use serde_json::Value;

/// Builds the example image with `spec` (YAML) into `out`.
fn build(init: &Path, oci: &Path, dir: &Path, spec: &str, out: &Path) {
    let spec_path = dir.join(format!(
        "{}.yaml",
        out.file_stem().unwrap().to_string_lossy()
    ));
    std::fs::write(&spec_path, spec).unwrap();
    assert_ok(&run(common::ctl(init)
        .args(["build", "-q", "-f"])
        .arg(&spec_path)
        .arg("--from")
        .arg(format!("oci:{}:latest", oci.display()))
        .arg("-o")
        .arg(out)));
}

/// The record of `name` in `ps -a --format json` (JSON lines, as Docker prints), if listed.
fn listed(env: &Env, name: &str) -> Option<Value> {
    env.ok(&["ps", "-a", "--format", "json"])
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|r| r["name"] == name)
}

fn code(o: &Output) -> Option<i32> {
    o.status.code()
}

#[test]
fn docker_conventions_on_real_enclaves() {
    let Some((engine, init)) = common::vm_prerequisites() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let Some(oci) = example_image(tmp.path()) else {
        return;
    };
    // The main service (the entrypoint) says goodbye and exits 3.
    let exit3 = tmp.path().join("exit3.eif");
    build(
        &init,
        &oci,
        tmp.path(),
        "name: exit3\nentrypoint: [/bin/sh, -c, 'echo bye; exit 3']\n",
        &exit3,
    );
    // The example: runs until stopped, exec allowed.
    let hello = tmp.path().join("hello.eif");
    build(
        &init,
        &oci,
        tmp.path(),
        "name: hello\ndebug: {exec: true}\n",
        &hello,
    );
    let (exit3, hello) = (exit3.to_str().unwrap(), hello.to_str().unwrap());
    let env = Env {
        state: tmp.path().join("state"),
        engine,
        names: &["three", "gone", "gone-d", "web", "retry"],
    };
    let vm = ["--cpus", "1", "--boot-timeout", "90"];

    // The engine's own errors: 125, attached or not, nothing created.
    for detach in [&[][..], &["-d"][..]] {
        let o = run(env.ctl().arg("run").args(detach).arg("/nonexistent.eif"));
        assert_eq!(code(&o), Some(125), "{}", stderr(&o));
        assert!(stderr(&o).contains("no such EIF"), "{}", stderr(&o));
    }
    // A memory size that is no size: a clear usage error.
    let o = run(env.ctl().args(["run", "--memory", "12x", exit3]));
    assert_eq!(code(&o), Some(2));
    assert!(stderr(&o).contains("unknown unit \"x\""), "{}", stderr(&o));
    assert_eq!(env.dirs(), 0);

    // Attached run: the main service's exit code, its output on the way.
    let o = run(env
        .ctl()
        .args(["run", "--name", "three", "--memory", "128m"])
        .args(vm)
        .arg(exit3));
    assert_eq!(code(&o), Some(3), "{}\n{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("main: bye"), "{}", stdout(&o));

    // ps -a (text, JSON, templates) and inspect carry the code and the time.
    let rec = listed(&env, "three").expect("three in ps -a");
    assert_eq!(rec["status"], "exited");
    assert_eq!(rec["exit_code"], 3);
    assert_eq!(rec["memory_mib"], 128);
    let finished = rec["finished_at"].as_str().expect("finished_at").to_owned();
    // `--json` is the same records as one array (enclave-ctl's `--json`), not a line each.
    let array: Value = serde_json::from_str(&env.ok(&["ps", "-a", "--json"])).unwrap();
    assert_eq!(array.as_array().map(Vec::len), Some(1), "{array}");
    assert_eq!(array[0], rec);
    let inspect = env.inspect("three");
    assert_eq!(inspect["exit_code"], 3);
    assert_eq!(inspect["finished_at"], finished.as_str());
    let table = env.ok(&["ps", "-a"]);
    let line = table.lines().find(|l| l.contains("three")).unwrap();
    assert!(
        line.contains("exited (3) ") && line.contains(" ago"),
        "{table}"
    );
    assert_eq!(
        env.ok(&["ps", "-a", "--format", "{{.Name}} {{.ExitCode}} {{.State}}"]),
        "three 3 exited\n"
    );
    assert_eq!(
        env.ok(&["ps", "-a", "--format", "table {{.Name}}\\t{{.FinishedAt}}"]),
        format!("NAME\tFINISHEDAT\nthree\t{finished}\n")
    );
    let e = env.fails(&["ps", "--format", "{{.Bogus}}"]);
    assert!(e.contains("unknown field {{.Bogus}}"), "{e}");
    // Not running: not in plain ps.
    assert_eq!(env.ok(&["ps", "-q"]), "");
    let dirs_before = env.dirs();

    // --rm, attached: the exit code, then nothing left.
    let o = run(env
        .ctl()
        .args(["run", "--rm", "--name", "gone", "--memory", "128"])
        .args(vm)
        .arg(exit3));
    assert_eq!(code(&o), Some(3), "{}\n{}", stdout(&o), stderr(&o));
    assert!(listed(&env, "gone").is_none());
    assert_eq!(env.dirs(), dirs_before);

    // --rm, detached: the supervisor removes it once it ended.
    let id = env.ok(&[
        "run", "-d", "--rm", "--name", "gone-d", "--memory", "128m", vm[0], vm[1], vm[2], vm[3],
        exit3,
    ]);
    let dir = env.state.join("enclaves").join(id.trim());
    let deadline = Instant::now() + Duration::from_secs(60);
    while dir.exists() || listed(&env, "gone-d").is_some() {
        assert!(Instant::now() < deadline, "gone-d is still there");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(env.dirs(), dirs_before);

    // exec without `--`, as another user, ps -q.
    let id = env.ok(&[
        "run", "-d", "--name", "web", "--memory", "128m", vm[0], vm[1], vm[2], vm[3], hello,
    ]);
    assert_eq!(env.ok(&["exec", "web", "id", "-u"]), "0\n");
    assert_eq!(
        env.ok(&["exec", "web", "sh", "-c", "echo $HOME"]),
        "/root\n"
    );
    assert_eq!(
        env.ok(&["exec", "-u", "nobody", "web", "id", "-u"]),
        "65534\n"
    );
    assert_eq!(
        env.ok(&["exec", "-u", "nobody", "web", "sh", "-c", "echo $HOME"]),
        "/\n"
    );
    assert_eq!(
        env.ok(&["exec", "--user", "1234:5", "web", "id", "-u"]),
        "1234\n"
    );
    assert_eq!(env.ok(&["exec", "-u", "1234:5", "web", "id", "-g"]), "5\n");
    let o = run(env.ctl().args(["exec", "-u", "nosuch", "web", "id"]));
    assert_eq!(code(&o), Some(1), "{}", stdout(&o));
    assert!(stderr(&o).contains("no user \"nosuch\""), "{}", stderr(&o));
    assert_eq!(env.ok(&["exec", "web", "--", "ls", "-d", "/app"]), "/app\n");
    assert_eq!(env.ok(&["ps", "-q"]), format!("{}\n", &id.trim()[..12]));
    let all_q = env.ok(&["ps", "-aq"]);
    assert_eq!(all_q.lines().count(), 2, "{all_q}");

    // on-failure: a main service exiting non-zero is a failure, as for Docker.
    env.ok(&[
        "run",
        "-d",
        "--name",
        "retry",
        "--restart",
        "on-failure:1",
        "--memory",
        "128m",
        vm[0],
        vm[1],
        vm[2],
        vm[3],
        exit3,
    ]);
    let retry = env.wait_for(
        "retry",
        "one restart, then the end",
        Duration::from_secs(120),
        |v| v["status"] == "exited",
    );
    assert_eq!(
        (retry["restarts"].as_u64(), retry["exit_code"].as_i64()),
        (Some(1), Some(3))
    );

    // stop --timeout: the main service ended by SIGTERM, 128+15.
    env.ok(&["stop", "--timeout", "5", "web"]);
    let web = env.inspect("web");
    assert_eq!(web["status"], "exited");
    assert_eq!(web["exit_code"], 143, "{web:#}");
}
